"""The JSON API on real HTTPS on loopback, for the API's tests: a lab (PKI, registry, mutual-TLS receiver) and the
API on the lab's registry database, called with requests (or http.client, to choose the client address).

Every world ends by reading every log record for the secrets its test used. The throttles run on a clock the
test moves; the password hasher is real scrypt (cheaper than production) that counts its verifications, so
that "the same work for every failure" is checked by counting work, not by timing it.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from xdr_edge.api.applications import add_application
from xdr_edge.api.passwords import PasswordHasher
from xdr_edge.api.settings import ApiSettings, BuiltApi, build_api
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.minting import IssuedCert
from xdr_edge.receiver.server import ServerConfig

PASSPHRASE = "a passphrase only this test knows 3f9c"


@dataclass(frozen=True)
class CountingHasher(PasswordHasher):
    """Real scrypt (``log2_n`` 10: cheaper, the tests check many passwords) that records every verification;
    ``pause[0]`` seconds before each widens the window in which simultaneous attempts overlap."""

    log2_n: int = 10
    verified: list[str] = field(default_factory=list, compare=False, repr=False)
    pause: list[float] = field(default_factory=lambda: [0.0], compare=False, repr=False)

    def verify(self, password: str, encoded: str) -> bool:
        self.verified.append(encoded)
        if self.pause[0]:
            time.sleep(self.pause[0])
        return super().verify(password, encoded)


class ManualClock:
    """The throttles' clock, moved by the test (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ApiWorld:
    lab: Lab
    built: BuiltApi
    clock: ManualClock
    hasher: CountingHasher
    tmp: Path
    secrets: set[str] = field(default_factory=set)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.built.url

    @property
    def verify(self) -> str:
        return str(self.lab.ca_bundle)

    def call(self, name: str, body: Any, *, timeout: float = 60, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}/{name}", json=body, verify=self.verify, timeout=timeout, **kwargs)

    def post_raw(self, name: str, data: bytes, content_type: str = "application/json") -> requests.Response:
        return requests.post(
            f"{self.url}/{name}",
            data=data,
            headers={"Content-Type": content_type},
            verify=self.verify,
            timeout=60,
        )

    def call_from(self, address: str, name: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST from another loopback address (127.0.0.0/8 is all ours on Linux): (status, JSON, headers)."""
        context = ssl.create_default_context(cafile=self.verify)
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.built.server.port, context=context, source_address=(address, 0), timeout=60
        )
        try:
            connection.request(
                "POST", f"/api/v1/{name}", json.dumps(body), {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            data = json.loads(response.read() or b"{}")
            return response.status, data, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def application(self, application_id: str) -> dict[str, str]:
        password = add_application(
            self.built.store, application_id, application_id.title(), actor="test", hasher=self.hasher
        )
        self.secrets.add(password)
        self.passwords[application_id] = password
        return {"applicationId": application_id, "applicationPassword": password}

    def issue(self, name: str, address: str) -> IssuedCert:
        return self.lab.pki.ca.issue_client(name, emails=(address,))

    def practice(self, auth: dict[str, str], account: str, address: str) -> IssuedCert:
        """An account with a certificate for ``address`` (and its key) from the lab's CA, and the address bound."""
        auth = {**auth, "accountId": account}
        assert self.call("PracticeSave", {"auth": auth, "name": f"Clinic {account}"}).status_code == 200
        issued = self.issue(f"{account} sender", address)
        self.enrol(auth, issued)
        answer = self.call("AddressBind", {"auth": auth, "address": address})
        assert answer.status_code == 200, answer.text
        return issued

    def enrol(self, auth: dict[str, str], issued: IssuedCert) -> dict[str, Any]:
        body = {"auth": auth, "certificate": issued.cert_pem.decode(), "privateKey": issued.key_pem.decode()}
        self.secrets.add(issued.key_pem.decode().splitlines()[1])
        answer = self.call("CertificateEnroll", body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["certificate"]["canSend"] is True
        result: dict[str, Any] = answer.json()
        return result

    def login(self, auth: dict[str, str], account: str, login_name: str) -> dict[str, str]:
        """A new login of the account; its credentials as the individual presents them."""
        answer = self.call(
            "LoginSave", {"auth": {**auth, "accountId": account}, "login": {"loginId": login_name}}
        )
        assert answer.status_code == 200, answer.text
        password = answer.json()["loginPassword"]
        assert len(password) >= 32
        self.secrets.add(password)
        return {"loginId": answer.json()["login"]["loginId"], "loginPassword": password}

    def stored_summaries(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in self.lab.inbox.root.glob("*/*/summary.json")]


def error(response: requests.Response) -> dict[str, str]:
    found: dict[str, str] = response.json()["error"]
    return found


def ccda_document() -> dict[str, str]:
    return {"content": base64.b64encode(sample_ccda()).decode(), "name": "ccd.xml"}


def send_body(auth: dict[str, str], sender: str, **extra: Any) -> dict[str, Any]:
    return {
        "auth": auth,
        "from": sender,
        "to": ["records@direct.hospital.example"],
        "documents": [ccda_document()],
        **extra,
    }


@contextlib.contextmanager
def api_world(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    *,
    threads: int = 4,
    lab: Lab | None = None,
    endpoint: str | None = None,
    lease_seconds: float = 90.0,
    **settings: Any,
) -> Iterator[ApiWorld]:
    """A lab (or the given one) with the API on its registry; ``settings`` override :class:`ApiSettings`."""
    caplog.set_level(logging.DEBUG)
    own_lab = lab is None
    lab = lab or start_lab(tmp_path / "lab")
    passphrase = tmp_path / "credential.pass"
    if not passphrase.exists():
        passphrase.write_text(PASSPHRASE + "\n")
        passphrase.chmod(0o600)
    values: dict[str, Any] = {
        "registry": str(lab.directory / "registry.db"),
        "credentials": tmp_path / "credentials",
        "credential_passphrase_file": passphrase,
        "spool": tmp_path / "spool",
        "endpoint": endpoint or lab.endpoint,
        "ca_bundle": lab.ca_bundle,
        "timeout_seconds": 30,
        **settings,
    }
    clock = ManualClock()
    hasher = CountingHasher()
    server = ServerConfig(
        host="127.0.0.1",
        port=0,
        cert=lab.pki.server_cert,
        key=lab.pki.server_key,
        require_client_cert=False,
        threads=threads,
        socket_timeout=30,
    )
    try:
        built = build_api(
            server,
            ApiSettings(**values),
            hasher=hasher,
            identity_throttle=FailureThrottle(free=10, base=2.0, cap=60.0, clock=clock),
            pair_throttle=FailureThrottle(free=3, base=2.0, cap=60.0, clock=clock),
            address_throttle=FailureThrottle(free=50, base=1.0, cap=30.0, clock=clock),
            message_lease_seconds=lease_seconds,
        )
    except BaseException:
        if own_lab:
            lab.stop()
        raise
    built.server.start()
    state = ApiWorld(lab, built, clock, hasher, tmp_path, secrets={PASSPHRASE})
    try:
        yield state
    finally:
        built.stop()
        if own_lab:
            lab.stop()
    # No secret in any log line, whatever the test did (formatted messages and tracebacks alike).
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    for record in records:
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        for secret in state.secrets:
            assert secret not in text, f"a secret appeared in a log line of {record.name}"
    assert any(r.name == "xdr_edge.api" and r.getMessage().startswith("api call=") for r in records)


WorldFactory = Callable[..., ApiWorld]


class BlackHole:
    """A TLS endpoint on loopback (the lab's server certificate) that reads requests and never answers: a HISP
    that hangs. :meth:`close` drops every connection and stops listening (later attempts are refused)."""

    def __init__(self, lab: Lab) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(lab.pki.server_cert, lab.pki.server_key)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.accepted = 0
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}/xdr"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._swallow, args=(raw,), daemon=True).start()

    def _swallow(self, raw: socket.socket) -> None:
        try:
            conn = self._context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        self._connections.append(conn)
        self.accepted += 1
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(timeout=5)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "the condition") -> Any:
    """Poll ``condition`` until it returns something true (generous bounds: the machine may be busy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
