"""What the account calls do: practices, certificates, addresses and logins, on the registry the receiver uses.

Tenancy, the rule every call here keeps: a practice belongs to the application that created it and is known to
it by its own ``accountId``; an application names only its own accounts (another application's accountId simply
does not exist for it: 404, so that it cannot even learn that another tenant uses that id), and an individual
login acts only on its own practice (naming another account: 403). The registry's rules apply unchanged (one
practice per address, a certificate enrolled to one practice, every change audited, with the application or
login as the actor); its refusals are answered with the API's own codes and messages, which never name another
tenant's practice.

What an application may claim, since the receiver trusts the registry (it accepts a message from an address
bound to the practice its certificate maps to):

- a certificate only with its private key (``CertificateEnroll`` takes certificate and privateKey, or a
  PKCS#12): Direct certificates are public (DNS and LDAP publish them), so enrolling one without its key would
  let anyone map another organization's traffic to themselves, or revoke it for good. Enrolling a certificate
  without its key stays an operator's action (``xdr-edge registry enroll``);
- an address (or, where allowed, a domain) only when one of the practice's certificates whose key it holds
  names it (:func:`xdr_edge.certs.certificate_names`: the address, or its domain, in the SAN): the binding then
  says no more than the certificate's issuer already vouched for.

Our practice id for an account is ``<applicationId>.<accountId>``, and a login signs in as
``<applicationId>.<loginId>``: unique (an application id has no dot), readable in the receiver's logs, never
something the integrator has to store, and one application can neither take nor discover another's ids.
"""

from __future__ import annotations

__all__ = ["AccountCalls", "Target"]

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from xdr_edge.api.auth import Flavour, Principal
from xdr_edge.api.credentials import CredentialVault
from xdr_edge.api.passwords import PasswordHasher, new_secret
from xdr_edge.api.refusals import Refusal
from xdr_edge.certs import ParsedCredential, certificate_names, fingerprint_sha256, parse_credential
from xdr_edge.practice import Binding, Practice
from xdr_edge.protocol.errors import CertificateError, ConfigurationError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry import CertificateRecord, Registry, normalize_fingerprint
from xdr_edge.registry.accounts import AccountRecord, AccountStore, LoginRecord
from xdr_edge.registry.records import AuditEvent, JsonValue

GENERATED_LOGIN_PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class Target:
    """The practice a call acts on, and the caller's key for it."""

    practice_id: str
    account_id: str


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _not_found() -> Refusal:
    return Refusal(
        404,
        "account-not-found",
        "no account with this accountId for this application",
        field="auth.accountId",
    )


class AccountCalls:
    """The application-only calls and tenancy resolution; thread-safe (no state besides its collaborators)."""

    def __init__(
        self,
        registry: Registry,
        store: AccountStore,
        vault: CredentialVault,
        hasher: PasswordHasher,
        *,
        allow_domain_bindings: bool = False,
    ) -> None:
        self.registry = registry
        self.store = store
        self.vault = vault
        self.hasher = hasher
        self.allow_domain_bindings = allow_domain_bindings

    # -- tenancy ---------------------------------------------------------------------------------------

    def target(self, principal: Principal) -> Target:
        """The account the call acts on: the login's own, or the application's account ``auth.accountId``."""
        if principal.flavour is Flavour.INDIVIDUAL:
            assert principal.practice_id is not None
            return Target(principal.practice_id, principal.account_id or principal.practice_id)
        if principal.account_id is None:
            raise Refusal(
                400, "missing-field", "auth.accountId is required for this call", field="auth.accountId"
            )
        assert principal.application_id is not None
        account = self.store.account(principal.application_id, principal.account_id)
        if account is None:
            raise _not_found()
        return Target(account.practice_id, account.account_id)

    def check_named_account(self, principal: Principal, auth: dict[str, Any]) -> None:
        """An individual login that names an account other than its own is refused (403)."""
        named = auth.get("accountId")
        if principal.flavour is Flavour.INDIVIDUAL and named is not None and named != principal.account_id:
            raise Refusal(
                403, "account-forbidden", "a login acts only on its own account", field="auth.accountId"
            )

    def _event(
        self, principal: Principal, action: str, subject: str, detail: dict[str, JsonValue]
    ) -> AuditEvent:
        return AuditEvent(datetime.now(UTC), principal.actor, action, subject, detail)

    # -- answers ---------------------------------------------------------------------------------------

    def sending_certificates(self, practice_id: str) -> list[CertificateRecord]:
        """The practice's certificates it can send with now: unrevoked, valid, with the key kept."""
        now = datetime.now(UTC)
        return [
            record
            for record in self.registry.certificates(practice_id)
            if not record.revoked
            and record.not_before <= now < record.not_after
            and self.vault.has(record.fingerprint_sha256)
        ]

    def certificate_view(self, record: CertificateRecord) -> dict[str, Any]:
        """A certificate as the API shows it (never its key)."""
        view: dict[str, Any] = {
            "fingerprint": record.fingerprint_sha256,
            "subject": record.subject,
            "issuer": record.issuer,
            "serial": record.serial,
            "notBefore": _iso(record.not_before),
            "notAfter": _iso(record.not_after),
            "revoked": record.revoked,
            "canSend": not record.revoked and self.vault.has(record.fingerprint_sha256),
        }
        if record.revoked:
            view["revokedAt"] = _iso(record.revoked_at)
            view["revokedReason"] = record.revoked_reason
        return view

    @staticmethod
    def login_view(login: LoginRecord) -> dict[str, Any]:
        """A login as the API shows it: the id it signs in with, never a password or its hash."""
        view: dict[str, Any] = {
            "loginId": login.login_id,
            "active": login.active,
            "createdAt": _iso(login.created_at),
            "updatedAt": _iso(login.updated_at),
        }
        if login.user_id is not None:
            view["userId"] = login.user_id
        return view

    def practice_view(self, target: Target) -> dict[str, Any]:
        """A practice with its addresses, certificates and logins."""
        practice = self.registry.practice(target.practice_id)
        certificates = self.registry.certificates(target.practice_id)
        if practice is None:  # pragma: no cover - ownership rows reference practices
            raise _not_found()
        return {
            "accountId": target.account_id,
            "name": practice.name,
            "active": practice.active,
            "addresses": [str(b) for b in practice.bindings],
            "certificates": [self.certificate_view(c) for c in certificates],
            "logins": [self.login_view(login) for login in self.store.logins(target.practice_id)],
        }

    # -- calls -----------------------------------------------------------------------------------------

    def ping(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """PingWithAuth: who was authenticated."""
        answer: dict[str, Any] = {"flavour": principal.flavour.value}
        for key, value in (
            ("applicationId", principal.application_id),
            ("loginId", principal.login_id),
            ("accountId", principal.account_id),
            ("userId", principal.user_id),
        ):
            if value is not None:
                answer[key] = value
        return answer

    def practice_save(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """PracticeSave: create the account's practice, or rename it and change its state."""
        assert principal.application_id is not None and principal.account_id is not None  # needs_account
        name = body["name"].strip()
        if not name:
            raise Refusal(400, "invalid-field", "name: must not be blank", field="name")
        active = body.get("active")
        account = self.store.account(principal.application_id, principal.account_id)
        created = False
        if account is None:
            created = self._create(principal, name, True if active is None else active)
        target = self.target(principal)
        if not created:
            self.store.rename_practice(
                target.practice_id,
                name,
                self._event(principal, "practice.rename", target.practice_id, {"name": name}),
            )
            if active is not None:
                self.registry.set_active(target.practice_id, active, actor=principal.actor)
        return {"practice": self.practice_view(target), "created": created}

    def _create(self, principal: Principal, name: str, active: bool) -> bool:
        assert principal.application_id is not None and principal.account_id is not None
        practice_id = f"{principal.application_id}.{principal.account_id}"
        now = datetime.now(UTC)
        record = AccountRecord(principal.application_id, principal.account_id, practice_id, now)
        detail: dict[str, JsonValue] = {
            "application_id": principal.application_id,
            "account_id": principal.account_id,
        }
        try:
            self.store.create_account(
                record,
                Practice(id=practice_id, name=name, active=active),
                self._event(principal, "practice.add", practice_id, {"name": name, "active": active}),
                self._event(principal, "account.add", practice_id, detail),
            )
        except ConfigurationError as exc:
            if self.store.account(principal.application_id, principal.account_id) is not None:
                return False  # a concurrent PracticeSave created it first: this one updates it
            if exc.code == "practice-exists":
                raise Refusal(
                    409,
                    "practice-id-taken",
                    f"the registry already has a practice {practice_id!r} not created through the API; "
                    "ask the operator to remove or rename it",
                    field="auth.accountId",
                ) from None
            raise
        return True

    def practice_get(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """PracticeGet: the account's practice."""
        return {"practice": self.practice_view(self.target(principal))}

    def practice_list(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """PracticeList: the application's accounts, a page at a time."""
        assert principal.application_id is not None
        limit = int(body.get("limit", 100))
        accounts = self.store.accounts(principal.application_id, after=body.get("after"), limit=limit + 1)
        page = accounts[:limit]
        practices = []
        for account in page:
            practice = self.registry.practice(account.practice_id)
            if practice is not None:
                practices.append(
                    {"accountId": account.account_id, "name": practice.name, "active": practice.active}
                )
        answer: dict[str, Any] = {"practices": practices}
        if len(accounts) > limit and page:
            answer["next"] = page[-1].account_id
        return answer

    def certificate_enroll(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """CertificateEnroll: pin the certificate to the practice and keep its key (proof of possession)."""
        target = self.target(principal)
        credential = _enrolment_material(body)
        cert, chain = credential.cert, credential.chain
        now = datetime.now(UTC)
        if cert.not_valid_after_utc <= now:
            raise Refusal(400, "certificate-expired", "the certificate has expired", field=_cert_field(body))
        fingerprint = fingerprint_sha256(cert)
        existing = self.registry.certificate(fingerprint)
        if existing is not None and existing.practice_id not in (None, target.practice_id):
            raise _enrol_refusal("certificate-enrolled-elsewhere", body)
        try:
            record = self.registry.enroll(target.practice_id, cert, actor=principal.actor, chain=chain)
        except (CertificateError, ConfigurationError) as exc:
            if exc.code in _ENROL_REFUSALS:
                raise _enrol_refusal(exc.code, body) from None
            raise
        self.vault.store(fingerprint, cert, _usable_key(credential.key, _key_field(body)), chain)
        return {"certificate": self.certificate_view(record), "created": existing is None}

    def certificate_revoke(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """CertificateRevoke: refused by the receiver at once; its kept key is deleted."""
        target = self.target(principal)
        try:
            fingerprint = normalize_fingerprint(body["fingerprint"])
        except ConfigurationError:
            raise Refusal(
                400,
                "invalid-field",
                "fingerprint: expected 64 hex digits (colons allowed)",
                field="fingerprint",
            ) from None
        existing = self.registry.certificate(fingerprint)
        if existing is None or existing.practice_id != target.practice_id:
            raise Refusal(
                404,
                "certificate-not-found",
                "no such certificate enrolled to this account",
                field="fingerprint",
            )
        record = self.registry.revoke(
            fingerprint, body.get("reason") or "revoked through the API", actor=principal.actor
        )
        self.vault.remove(fingerprint)
        return {"certificate": self.certificate_view(record)}

    def _binding(self, text: str) -> Binding:
        try:
            binding = Binding.parse(text)
            if binding.domain is not None:
                DirectAddress(f"postmaster@{binding.domain}")
        except ValueError:
            raise Refusal(
                400,
                "invalid-field",
                "address: not a Direct address (user@domain) or domain (@domain)",
                field="address",
            ) from None
        return binding

    def address_bind(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """AddressBind: the practice may send from an address (or domain) its own certificate names."""
        target = self.target(principal)
        binding = self._binding(body["address"])
        if binding.domain is not None and not self.allow_domain_bindings:
            raise Refusal(
                403,
                "domain-binding-not-allowed",
                "binding a whole domain is not allowed on this server; bind each address",
                field="address",
            )
        if not any(
            certificate_names(x509.load_pem_x509_certificate(record.pem.encode("ascii")), binding)
            for record in self.sending_certificates(target.practice_id)
        ):
            raise Refusal(
                403,
                "address-not-covered",
                f"no valid certificate of this account with a kept key names this "
                f"{'domain' if binding.domain is not None else 'address (or its domain)'}; enrol the "
                "certificate issued for it first (CertificateEnroll, with its key)",
                field="address",
            )
        practice = self.registry.practice(target.practice_id)
        already = practice is not None and binding in practice.bindings
        try:
            self.registry.bind(target.practice_id, binding, actor=principal.actor)
        except ConfigurationError as exc:
            if exc.code in ("binding-conflict", "binding-case-conflict"):
                raise Refusal(
                    409,
                    "address-taken",
                    "this address (or its domain) is already bound to another practice, or to this one with "
                    "different letter case; an address belongs to one practice",
                    field="address",
                ) from None
            raise
        return {"address": str(binding), "created": not already}

    def address_unbind(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """AddressUnbind: the practice no longer sends from this address (or domain)."""
        target = self.target(principal)
        binding = self._binding(body["address"])
        try:
            self.registry.unbind(target.practice_id, binding, actor=principal.actor)
        except ConfigurationError as exc:
            if exc.code == "binding-not-found":
                raise Refusal(
                    404, "address-not-bound", "this address is not bound to this account", field="address"
                ) from None
            raise
        return {"address": str(binding)}

    def login_save(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """LoginSave: create or reset the account's login ``<applicationId>.<loginId>``."""
        target = self.target(principal)
        spec = body["login"]
        login_id = f"{principal.application_id}.{spec['loginId'].lower()}"
        given = spec.get("password")
        password = given if given is not None else new_secret(GENERATED_LOGIN_PASSWORD_LENGTH)
        now = datetime.now(UTC)
        existing = self.store.login(login_id)
        record = LoginRecord(
            login_id=login_id,
            practice_id=target.practice_id,
            user_id=spec.get("userId"),
            password_hash=self.hasher.hash(password),
            active=spec.get("active", True),
            created_at=existing.created_at if existing is not None else now,
            updated_at=now,
        )
        detail: dict[str, JsonValue] = {
            "practice_id": target.practice_id,
            "user_id": record.user_id,
            "active": record.active,
            "password": "generated" if given is None else "given",
        }
        try:
            created = self.store.save_login(record, self._event(principal, "login.save", login_id, detail))
        except ConfigurationError as exc:
            if exc.code == "login-taken":
                raise Refusal(
                    409,
                    "login-taken",
                    "this application already uses this loginId for another of its accounts; choose another",
                    field="login.loginId",
                ) from None
            raise
        answer: dict[str, Any] = {"login": self.login_view(record), "created": created}
        if given is None:
            answer["loginPassword"] = password  # generated: shown this once, never stored in clear
        return answer


#: The registry's refusals of an enrolment, by its error code, as the caller sees them: (status, code, message).
_ENROL_REFUSALS: dict[str, tuple[int, str, str]] = {
    "certificate-not-anchored": (
        400,
        "certificate-not-anchored",
        "the certificate does not chain to a CA this HISP trusts (give its intermediate CAs if it has any)",
    ),
    "certificate-revoked": (
        409,
        "certificate-revoked",
        "this certificate was revoked; it cannot be enrolled again",
    ),
    "certificate-enrolled-elsewhere": (
        409,
        "certificate-taken",
        "this certificate is enrolled to another practice",
    ),
}


def _enrol_refusal(registry_code: str, body: dict[str, Any]) -> Refusal:
    status, code, message = _ENROL_REFUSALS[registry_code]
    return Refusal(status, code, message, field=_cert_field(body))


def _cert_field(body: dict[str, Any]) -> str:
    return "pkcs12" if "pkcs12" in body else "certificate"


def _key_field(body: dict[str, Any]) -> str:
    return "pkcs12" if "pkcs12" in body else "privateKey"


#: How each reason :func:`xdr_edge.certs.parse_credential` gives is answered (``invalid-field``): field, message.
_CREDENTIAL_REFUSALS: dict[str, tuple[str, str]] = {
    "certificate-unreadable": ("certificate", "certificate: not a PEM certificate"),
    "key-encrypted": (
        "privateKey",
        "privateKey: encrypted keys are not accepted; send it unencrypted over this TLS connection, or as pkcs12",
    ),
    "key-unreadable": ("privateKey", "privateKey: not a PEM private key"),
    "key-unsupported": (
        "privateKey",
        "privateKey: a key algorithm or curve this server does not support (use RSA, or EC on P-256/P-384)",
    ),
    "pkcs12-unreadable": ("pkcs12", "pkcs12: wrong password or not a PKCS#12 file"),
    "pkcs12-incomplete": ("pkcs12", "pkcs12: no certificate with its key in it"),
}


def _enrolment_material(body: dict[str, Any]) -> ParsedCredential:
    """The certificate, its key (checked to match) and its chain, from PEM fields or a PKCS#12."""
    if "pkcs12" in body:
        if "certificate" in body or "privateKey" in body:
            raise Refusal(
                400,
                "invalid-field",
                "pkcs12: give either pkcs12, or certificate and privateKey, not both",
                field="pkcs12",
            )
        try:
            raw = base64.b64decode(body["pkcs12"], validate=True)
        except (binascii.Error, ValueError):
            raise Refusal(400, "invalid-field", "pkcs12: not base64", field="pkcs12") from None
        password = body.get("pkcs12Password")
        arguments: dict[str, Any] = {
            "pkcs12_data": raw,
            "password": password.encode("utf-8") if password else None,
        }
    else:
        if "pkcs12Password" in body:
            raise Refusal(
                400, "invalid-field", "pkcs12Password: given without pkcs12", field="pkcs12Password"
            )
        for name in ("certificate", "privateKey"):
            if name not in body:
                raise Refusal(
                    400,
                    "missing-field",
                    f"{name} is required: a certificate is enrolled through the API only with its private key "
                    "(certificate and privateKey, or pkcs12); ask the operator to enrol one without it",
                    field=name,
                )
        try:
            arguments = {
                "certificate": body["certificate"].encode("ascii"),
                "key": body["privateKey"].encode("ascii"),
            }
        except UnicodeEncodeError:
            raise Refusal(400, "invalid-field", "certificate and privateKey must be PEM (ASCII)") from None
    try:
        return parse_credential(**arguments)
    except CertificateError as exc:
        if exc.code == "key-mismatch":
            field = _key_field(body)
            raise Refusal(
                400, "key-mismatch", f"{field}: the key does not belong to the certificate", field=field
            ) from None
        if exc.code == "certificate-field-unreadable":  # our words: the certificate and the field (RFC 5280)
            field = _cert_field(body)
            raise Refusal(400, "invalid-field", f"{field}: {exc.message}", field=field) from None
        if exc.code == "pkcs12-too-costly":
            raise Refusal(400, "pkcs12-too-costly", f"pkcs12: {exc.message}", field="pkcs12") from None
        field, message = _CREDENTIAL_REFUSALS.get(
            exc.code, (_cert_field(body), f"{_cert_field(body)}: unreadable")
        )
        raise Refusal(400, "invalid-field", message, field=field) from None


def _usable_key(key: object, field: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """TLS client certificates are RSA or EC (RFC 8446 §4.2.3 as deployed); the vault keeps only those."""
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise Refusal(
            400,
            "invalid-field",
            f"{field}: only RSA and EC keys are used for TLS client certificates",
            field=field,
        )
    return key
