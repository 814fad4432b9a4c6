"""Per-practice HTTPS sessions: one ``requests.Session``, adapter and ``SSLContext`` per practice.

One TLS identity per session: a practice's connection is never reused for another practice (requests before
2.32 did exactly that, CVE-2024-35195). The pool is keyed by practice id and certificate fingerprint, and a
session is rebuilt when its credential files change. Server certificates are verified against one explicit CA
bundle; requests' habit of loading certifi (``verify=True``) or the environment (``trust_env``) is switched off.
"""

from __future__ import annotations

__all__ = ["PracticeSession", "SessionPool"]

import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from xdr_edge._version import __version__
from xdr_edge.certs import ClientIdentity, load_identity
from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.tls import client_ssl_context

_USER_AGENT = f"xdr-edge/{__version__}"


class _PracticeAdapter(HTTPAdapter):
    """An adapter whose every connection (direct or through a proxy) uses one practice's ``SSLContext``.

    ``send`` forces ``verify`` to the CA bundle path whatever the caller passed: with a custom context and
    ``verify=True`` requests would load certifi's ~145 public CAs into it (``HTTPAdapter.cert_verify`` sets
    ``conn.ca_certs`` to certifi, urllib3 then calls ``load_verify_locations`` on our context), and with
    ``verify=False`` urllib3 would set ``CERT_NONE`` on it. With the bundle path, urllib3 loads only that
    bundle, which the context already trusts. ``cert`` is forced to ``None``: the identity is in the context.
    """

    def __init__(self, ssl_context: ssl.SSLContext, ca_bundle: str, connections: int = 4) -> None:
        self._ssl_context = ssl_context
        self._ca_bundle = ca_bundle
        super().__init__(pool_connections=1, pool_maxsize=connections, max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request, stream=stream, timeout=timeout, verify=self._ca_bundle, cert=None, proxies=proxies
        )


class PracticeSession:
    """One practice's HTTPS session: its own ``requests.Session``, adapter and ``SSLContext``.

    Only ``https://`` is mounted (a plain ``http://`` URL fails); ``trust_env`` is off so that
    ``REQUESTS_CA_BUNDLE``, proxy variables and ``.netrc`` from the environment cannot change trust or
    routing; redirects are never followed (a redirected PnR would resend PHI to another host).
    """

    def __init__(
        self, practice_id: str, identity: ClientIdentity, ca_bundle: Path, *, connections: int = 4
    ) -> None:
        self.practice_id = practice_id
        self.identity = identity
        self.ca_bundle = Path(ca_bundle)
        self._verify = str(self.ca_bundle)
        context = client_ssl_context(identity, self.ca_bundle)
        session = requests.Session()
        session.trust_env = False
        session.verify = self._verify
        # Redirects are refused by allow_redirects=False in post(). max_redirects stays 1, not 0: with
        # allow_redirects=False requests still prepares the next request lazily (Session.send sets
        # ``r._next``), and 0 would make that raise TooManyRedirects, hiding the 3xx the caller must report.
        session.max_redirects = 1
        session.headers["User-Agent"] = _USER_AGENT
        # An ITI-41 answer is a few KB: nothing to gain from compression, and a compressed answer is one whose
        # size says nothing about what it decodes to.
        session.headers["Accept-Encoding"] = "identity"
        session.adapters.clear()
        session.mount("https://", _PracticeAdapter(context, self._verify, connections))
        self._session = session
        self._context = context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context every connection of this session uses (for inspection; do not modify it)."""
        return self._context

    @property
    def key(self) -> tuple[str, str]:
        """``(practice id, certificate fingerprint)``: the identity this session's connections carry."""
        return (self.practice_id, self.identity.fingerprint_sha256)

    def post(
        self,
        url: str,
        data: Any,
        headers: Mapping[str, str],
        timeout: float | tuple[float, float],
    ) -> requests.Response:
        """POST ``data`` (bytes or a re-iterable body with ``__len__``) without following redirects.

        The response body is not read here (``stream=True``): the caller reads it within its own cap and must
        close the response (``with response:``), which closes a connection whose answer was not read to the end.

        requests exceptions propagate unchanged: the caller (``client.py``) classifies them, because whether a
        failure may be retried depends on whether any byte was sent (docs/design.md, "Retries").
        """
        if not url.lower().startswith("https://"):
            raise ConfigurationError(f"endpoint must be an https:// URL, got {url!r}")
        return self._session.post(
            url,
            data=data,
            headers=dict(headers),
            timeout=timeout,
            allow_redirects=False,
            verify=self._verify,
            stream=True,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PracticeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SessionPool:
    """Thread-safe ``PracticeSession`` per practice, rebuilt when the practice's credential files change.

    Each call to :meth:`session_for` re-checks the size and mtime of the credential files (two ``stat``
    calls); when they changed, the identity is reloaded and a new session replaces the old one, which is
    closed. So a renewed certificate is used from the next send on, without a restart, and pooled connections
    made with the old certificate are never reused (requests keys its pools by certificate *path*,
    a known requests behaviour). A session belongs to exactly one practice id; the lock makes sure two threads never build
    two sessions for one.
    """

    def __init__(self, ca_bundle: Path, *, connections: int = 4) -> None:
        """``connections``: how many connections per practice are kept open for reuse; threads sending for one
        practice at once beyond that open and close connections of their own."""
        self.ca_bundle = Path(ca_bundle)
        self.connections = connections
        self._lock = threading.Lock()
        self._sessions: dict[str, PracticeSession] = {}

    def session_for(self, practice: Practice) -> PracticeSession:
        credential = practice.credential
        if credential is None:
            raise ConfigurationError(f"practice {practice.id!r} has no client certificate configured")
        with self._lock:
            current = self._sessions.get(practice.id)
            if (
                current is not None
                and current.identity.credential == credential
                and current.identity.is_current()
            ):
                return current
            session = PracticeSession(
                practice.id, load_identity(credential), self.ca_bundle, connections=self.connections
            )
            self._sessions[practice.id] = session
        if current is not None:
            current.close()
        return session

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
