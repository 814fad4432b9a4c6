"""Which sender addresses each client certificate may use, as the sender catalogue's ``practice-binding`` case
needs to know it: the central rule of the XDR edge (our practice-binding rule, docs/receiver.md) is that a request's
sender, ``direct:from`` and every SubmissionSet ``authorTelecommunication`` (XDR and XDM for Direct Messaging §4.1,
§4.2), is bound to the practice whose client certificate carried it (Direct Edge Protocols IG §1.1: the edge is
authenticated by that certificate). A sender that presents practice B's certificate with practice A's address
looks perfectly well formed; only someone who knows the bindings can catch it.

Two sources of that knowledge, one interface (:class:`SenderBindings`):

- :class:`RegistryBindings`: the receiver's own certificate registry (:func:`xdr_edge.registry.open_registry`),
  asked exactly what a receiver asks it (:meth:`~xdr_edge.registry.Registry.identify`, then
  :meth:`~xdr_edge.registry.Registry.authorize_sender`);
- :class:`DeclaredBindings`: pairs given on the command line (``--practice CERT_OR_FINGERPRINT
  ADDRESS_OR_DOMAIN``), one practice per certificate.
"""

from __future__ import annotations

__all__ = ["DeclaredBindings", "RegistryBindings", "SenderBindings", "certificate_label"]

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509

from xdr_edge.certs import fingerprint_sha256, load_certificates
from xdr_edge.practice import Binding
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress
from xdr_edge.registry import Registry, normalize_fingerprint


def certificate_label(cert: x509.Certificate) -> str:
    """``UID=practice-b,CN=... (sha256 1f2e3d4c...)``: enough to tell two practices' certificates apart."""
    return f"{cert.subject.rfc4514_string()} (sha256 {fingerprint_sha256(cert)[:16]}...)"


class SenderBindings(Protocol):
    """What the ``practice-binding`` case asks: may this certificate send from these addresses?"""

    def describe(self) -> str:
        """Where the bindings come from, for the report (``registry sqlite:///...``, ``3 --practice pairs``)."""
        ...

    def problems(
        self,
        cert: x509.Certificate,
        senders: Sequence[tuple[str, DirectAddress]],
        *,
        at: datetime,
    ) -> list[str]:
        """Why ``cert`` may not send from each of ``senders`` (``(where, address)`` pairs), at ``at``; empty when
        it may send from all of them."""
        ...


@dataclass(frozen=True)
class RegistryBindings:
    """The receiver's registry decides, as it would for a request arriving at the receiver.

    ``intermediates`` are the certificates a client certificate may chain through (the recording endpoint's
    ``--client-ca`` bundle): the registry checks the chain to its own trust anchors.
    """

    registry: Registry
    intermediates: tuple[x509.Certificate, ...] = ()

    def describe(self) -> str:
        return f"registry {self.registry.location}"

    def problems(
        self,
        cert: x509.Certificate,
        senders: Sequence[tuple[str, DirectAddress]],
        *,
        at: datetime,
    ) -> list[str]:
        identification = self.registry.identify(cert, self.intermediates, at=at)
        if identification.practice is None:
            return [
                f"the registry maps the client certificate {certificate_label(cert)} to no practice: "
                f"{identification.reason}"
            ]
        found = []
        for where, address in senders:
            decision = self.registry.authorize_sender(identification.practice, address)
            if not decision.allowed:
                found.append(
                    f"{where} {address} is not bound to practice {identification.practice.id!r} of the client "
                    f"certificate {certificate_label(cert)}: {decision.reason}"
                )
        return found


@dataclass(frozen=True)
class _DeclaredPractice:
    fingerprint: str
    label: str
    bindings: tuple[Binding, ...]

    def binds(self, address: DirectAddress) -> bool:
        return any(b.covers(address) for b in self.bindings)


class DeclaredBindings:
    """``--practice CERT_OR_FINGERPRINT ADDRESS_OR_DOMAIN`` pairs: every pair naming the same certificate binds one
    more address (``user@domain``) or domain (``domain``, ``@domain``) to that certificate's practice."""

    def __init__(self, practices: Sequence[_DeclaredPractice]) -> None:
        self._practices = {p.fingerprint: p for p in practices}

    @classmethod
    def parse(cls, pairs: Sequence[tuple[str, str]]) -> DeclaredBindings:
        """Read the pairs: a certificate file (PEM or DER; its first certificate) or a SHA-256 fingerprint
        (``openssl x509 -fingerprint -sha256`` spelling accepted), then an address or a domain. Raises
        :class:`ConfigurationError` naming the pair that cannot be read."""
        grouped: dict[str, tuple[str, list[Binding]]] = {}
        for index, (cert_or_fingerprint, address_or_domain) in enumerate(pairs, start=1):
            where = f"--practice #{index}"
            fingerprint, label = _certificate(cert_or_fingerprint, where)
            try:
                binding = Binding.parse(address_or_domain)
            except ValueError as exc:
                raise ConfigurationError(
                    f"{address_or_domain!r} is not a Direct address or domain: {exc}", location=where
                ) from exc
            if binding.domain is not None and "." not in binding.domain:
                raise ConfigurationError(
                    f"{address_or_domain!r} is not a Direct address (user@domain) or domain", location=where
                )
            grouped.setdefault(fingerprint, (label, []))[1].append(binding)
        return cls(
            [_DeclaredPractice(fp, label, tuple(bindings)) for fp, (label, bindings) in grouped.items()]
        )

    def __len__(self) -> int:
        return len(self._practices)

    def describe(self) -> str:
        count = sum(len(p.bindings) for p in self._practices.values())
        return f"{count} --practice binding(s) for {len(self._practices)} certificate(s)"

    def problems(
        self,
        cert: x509.Certificate,
        senders: Sequence[tuple[str, DirectAddress]],
        *,
        at: datetime,
    ) -> list[str]:
        practice = self._practices.get(fingerprint_sha256(cert))
        if practice is None:
            return [
                f"the client certificate {certificate_label(cert)} is not one of the --practice certificates, "
                "so no address is bound to it"
            ]
        found = []
        for where, address in senders:
            if practice.binds(address):
                continue
            owners = [p.label for p in self._practices.values() if p.binds(address)]
            elsewhere = f"; it is bound to the certificate {' and '.join(owners)}" if owners else ""
            found.append(
                f"{where} {address} is not bound to the practice of the client certificate "
                f"{certificate_label(cert)} (bound: {', '.join(str(b) for b in practice.bindings)}){elsewhere}"
            )
        return found


def _certificate(value: str, where: str) -> tuple[str, str]:
    """A fingerprint and a label from a certificate file or a fingerprint."""
    path = Path(value).expanduser()
    if path.is_file():
        cert = load_certificates(path)[0]  # CertificateError names the file when it holds none
        return fingerprint_sha256(cert), certificate_label(cert)
    try:
        fingerprint = normalize_fingerprint(value)
    except ConfigurationError:
        raise ConfigurationError(
            f"{value!r} is neither a certificate file nor a SHA-256 fingerprint (64 hex digits)",
            location=where,
        ) from None
    return fingerprint, f"sha256 {fingerprint[:16]}..."
