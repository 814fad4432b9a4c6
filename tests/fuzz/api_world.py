"""The JSON API in-process for the fuzz harness: the API assembled by the product's own :func:`build_api` on a
demo edge's registry (:func:`xdr_edge.devtools.lab.build_edge`), one application with one account that can send
(an enrolled certificate with its key, a bound address) and one login, and the WSGI app called without a socket.

What differs from production is what makes a fuzz execution cheap and repeatable, not what the readers see:

- passwords are fixed strings (the seeds must be the same bytes on every run), hashed with real scrypt at a
  lower cost (the tests' ``log2_n`` 10);
- the failure throttles never make anyone wait: a fuzzer fails authentication thousands of times from one
  address, and a 429 before the password is even checked would hide every reader behind it;
- MessageSend goes through a real :class:`~xdr_edge.sender.client.XdrClient` to a loopback port nothing listens
  on, with one attempt: compose, the pre-flight and the credential are real, the send fails at once
  (``TransportError``) and is recorded as such.

The registry changes as the fuzzer runs (a mutated PracticeSave may rename the account, a LoginSave may reset
the login's password): a crash is replayed against a fresh world, which is what ``replay`` does.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.servers import free_port
from xdr_edge.api.passwords import PasswordHasher
from xdr_edge.api.settings import ApiSettings, BuiltApi, build_api
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Edge, build_edge
from xdr_edge.minting import IssuedCert
from xdr_edge.receiver.server import ServerConfig
from xdr_edge.registry.accounts import ApplicationRecord
from xdr_edge.registry.records import AuditEvent
from xdr_edge.sender.client import RetryPolicy, XdrClient

APPLICATION = "fuzz-app"
APPLICATION_PASSWORD = "fuzz-application-password-0123456789abcd"
ACCOUNT = "1042"
OTHER_ACCOUNT = "1043"
SENDER = "dr.fuzz@direct.fuzz-clinic.example"
SPARE_ADDRESS = "spare@direct.fuzz-clinic.example"  # bound, for the AddressUnbind seed
RECIPIENT = "records@direct.hospital.example"
LOGIN_NAME = "frontdesk"
LOGIN_ID = f"{APPLICATION}.{LOGIN_NAME}"
LOGIN_PASSWORD = "fuzz-login-password-0123456789abcdefghij"
PASSPHRASE = "fuzz credential passphrase 7d1e"
CLIENT_ADDRESS = "127.0.0.1"

#: Application authentication naming the account, and the login's individual authentication, as seeds use them.
APP_AUTH: dict[str, str] = {
    "applicationId": APPLICATION,
    "applicationPassword": APPLICATION_PASSWORD,
    "accountId": ACCOUNT,
}
LOGIN_AUTH: dict[str, str] = {"loginId": LOGIN_ID, "loginPassword": LOGIN_PASSWORD}


@dataclass(frozen=True)
class ApiReply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


def _never_waits() -> FailureThrottle:
    return FailureThrottle(free=1 << 40, base=0.0, cap=0.0)


class ApiWorld:
    """One API under ``directory``; not thread-safe (a fuzzer runs one input at a time)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.edge: Edge = build_edge(directory / "edge")
        passphrase = directory / "credential.pass"
        passphrase.write_text(PASSPHRASE + "\n")
        passphrase.chmod(0o600)
        self.hasher = PasswordHasher(log2_n=10)
        settings = ApiSettings(
            registry=str(self.edge.directory / "registry.db"),
            credentials=directory / "credentials",
            credential_passphrase_file=passphrase,
            spool=directory / "spool",
            # a port nothing listens on (bound and released): a send is refused at once
            endpoint=f"https://127.0.0.1:{free_port()}/xdr",
            ca_bundle=self.edge.pki.ca_cert,
            timeout_seconds=5,
        )
        server = ServerConfig(
            host="127.0.0.1",
            port=0,
            cert=self.edge.pki.server_cert,
            key=self.edge.pki.server_key,
            require_client_cert=False,
        )
        self.built: BuiltApi = build_api(
            server,
            settings,
            hasher=self.hasher,
            identity_throttle=_never_waits(),
            pair_throttle=_never_waits(),
            address_throttle=_never_waits(),
        )
        assert settings.endpoint is not None
        self.client = XdrClient(
            endpoint=settings.endpoint,
            ca_bundle=self.edge.pki.ca_cert,
            timeout=(2.0, 5.0),
            retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0),
        )
        self.app = self.built.app
        self.app.messages.client = self.client
        self.issued: dict[str, IssuedCert] = {}
        self._excused: set[str] = set()
        self._populate()

    @property
    def spool_dir(self) -> Path:
        return self.app.options.spool.directory

    @property
    def secrets(self) -> tuple[str, ...]:
        """What no answer may ever contain, unless the caller put it in a field of its own (see below)."""
        keys = tuple(i.key_pem.decode().splitlines()[1] for i in self.issued.values())
        return (APPLICATION_PASSWORD, LOGIN_PASSWORD, PASSPHRASE, *keys)

    def note_own_values(self, values: Iterable[str]) -> None:
        """Remember which secrets a caller has sent outside a credential field (a practice's name, a recipient).
        The registry keeps such a name, and later answers repeat it (PracticeGet, the next PracticeSave): the
        caller's own text, not a leak. From then on this world no longer watches that secret (a fresh world
        does), so the rule costs precision only after a fuzzer has made such a value."""
        secrets = self.secrets
        for value in values:
            self._excused.update(secret for secret in secrets if secret in value)

    @property
    def unexcused_secrets(self) -> tuple[str, ...]:
        return tuple(secret for secret in self.secrets if secret not in self._excused)

    def close(self) -> None:
        self.client.close()
        self.app.close()
        self.built.store.close()

    def _populate(self) -> None:
        now = datetime.now(UTC)
        record = ApplicationRecord(
            id=APPLICATION,
            name="Fuzz application",
            password_hash=self.hasher.hash(APPLICATION_PASSWORD),
            active=True,
            created_at=now,
            password_changed_at=now,
        )
        self.built.store.add_application(
            record, AuditEvent(now, "fuzz", "application.add", APPLICATION, {"name": record.name})
        )
        ca = self.edge.pki.ca
        self.issued["sender"] = ca.issue_client("fuzz sender", emails=(SENDER, SPARE_ADDRESS))
        self.issued["spare"] = ca.issue_client("fuzz spare", emails=(SPARE_ADDRESS,))
        self.expect(200, "PracticeSave", {"auth": APP_AUTH, "name": "Fuzz Clinic"})
        for issued in self.issued.values():
            self.expect(200, "CertificateEnroll", self.enrol_body(issued))
        for address in (SENDER, SPARE_ADDRESS):
            self.expect(200, "AddressBind", {"auth": APP_AUTH, "address": address})
        login = {"loginId": LOGIN_NAME, "password": LOGIN_PASSWORD}
        self.expect(200, "LoginSave", {"auth": APP_AUTH, "login": login})
        document = {"content": base64.b64encode(sample_ccda()).decode(), "name": "ccd.xml"}
        sent = self.expect(
            200, "MessageSend", {"auth": APP_AUTH, "from": SENDER, "to": [RECIPIENT], "documents": [document]}
        )
        self.last_message_id: str = sent["message"]["messageId"]

    @staticmethod
    def enrol_body(issued: IssuedCert) -> dict[str, Any]:
        return {
            "auth": APP_AUTH,
            "certificate": issued.cert_pem.decode(),
            "privateKey": issued.key_pem.decode(),
        }

    def expect(self, status: int, call: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.post(f"/api/v1/{call}", "application/json", json.dumps(body).encode())
        if reply.status != status:
            raise AssertionError(f"{call}: {reply.status} {reply.body[:500]!r}")
        answer: dict[str, Any] = json.loads(reply.body)
        return answer

    def post(self, path: str, content_type: str, body: bytes, *, method: str = "POST") -> ApiReply:
        """Call the app as our server would, past TLS: the body in wsgi.input with its length."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": CLIENT_ADDRESS,
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
        }
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            started.append((status, headers))

        data = b"".join(self.app(environ, start_response))
        status, headers = started[0]
        named = {k.lower(): v for k, v in headers}
        return ApiReply(int(status.split()[0]), named.get("content-type", ""), data, named)
