"""Per-practice HTTPS sessions: one urllib3 connection pool and ``SSLContext`` per practice.

One TLS identity per session: a practice's connection is never reused for another practice (requests before
2.32 did exactly that, CVE-2024-35195). The pool is keyed by practice id and certificate fingerprint, and a
session is rebuilt when its credential files change. Server certificates are verified against one explicit CA
bundle, the only trust the practice's context holds; nothing is read from the environment (no proxy variables,
no ``.netrc``, no CA bundle variable) and redirects are never followed.

Why urllib3 and not requests: requests adds about 0.4 ms of CPU per request (preparing it, merging session
settings, cookies, hooks, runtime protocol checks), which for a 100 KB message was as much as the rest of the
send; none of it is anything a sender of ITI-41 requests uses. urllib3 is what requests sends with.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CONNECTIONS", "PracticeResponse", "PracticeSession", "SessionPool"]

import ssl
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3

from xdr_edge._version import __version__
from xdr_edge.certs import ClientIdentity, load_identity
from xdr_edge.practice import Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.tls import client_ssl_context

_USER_AGENT = f"xdr-edge/{__version__}"

#: Connections one practice's session keeps at most (``XdrClient(connections_per_practice=...)``).
DEFAULT_CONNECTIONS = 10


class PracticeResponse:
    """An answer whose body has not been read yet: the caller reads it within its own cap (:meth:`iter_content`)
    and must close it (``with response:``). Closing a response whose body was not read to the end closes its
    connection (the rest of the body is never read for nobody); one read to the end leaves the connection
    for the next request."""

    def __init__(self, raw: urllib3.BaseHTTPResponse) -> None:
        self._raw = raw

    @property
    def status_code(self) -> int:
        return self._raw.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers; names compare case-insensitively."""
        return self._raw.headers

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        """The body (decoded from any Content-Encoding) in pieces of at most ``chunk_size`` bytes."""
        yield from self._raw.stream(chunk_size, decode_content=True)

    @property
    def content(self) -> bytes:
        """The whole body. Unbounded: for answers known to be small (tests, the demo); a sender reads with
        :meth:`iter_content` and a cap."""
        return b"".join(self.iter_content(65536))

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def close(self) -> None:
        raw = self._raw
        if not raw.closed:
            raw.close()  # not read to the end: the connection is closed, never reused mid-answer
        raw.release_conn()  # the connection's place in the pool is free again (a closed one is reopened)

    def __enter__(self) -> PracticeResponse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PracticeSession:
    """One practice's HTTPS connections: its own ``SSLContext`` and, per host, its own connection pool.

    Only ``https://`` URLs are accepted. Each pool holds at most ``connections`` connections and *blocks* when
    they are all busy: a thread waits for one to come back rather than opening one more (a pool that does not
    block opens a connection for every request beyond its size and closes it after that request: with more
    threads than pooled connections, a TLS handshake per message and no bound on connections). A connection is
    made only when none is free, so a sender never has more connections than sends in progress.
    """

    def __init__(
        self,
        practice_id: str,
        identity: ClientIdentity,
        ca_bundle: Path,
        *,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self.practice_id = practice_id
        self.identity = identity
        self.ca_bundle = Path(ca_bundle)
        self.connections = connections
        self._context = client_ssl_context(identity, self.ca_bundle)
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, int], urllib3.HTTPSConnectionPool] = {}

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context every connection of this session uses (for inspection; do not modify it)."""
        return self._context

    @property
    def key(self) -> tuple[str, str]:
        """``(practice id, certificate fingerprint)``: the identity this session's connections carry."""
        return (self.practice_id, self.identity.fingerprint_sha256)

    def _pool(self, host: str, port: int) -> urllib3.HTTPSConnectionPool:
        with self._lock:
            pool = self._pools.get((host, port))
            if pool is None:
                # The context carries the client identity and the only trust anchors; urllib3 loads no other
                # certificates into a context it is given, and verifies the host name with it.
                pool = urllib3.HTTPSConnectionPool(
                    host,
                    port,
                    maxsize=self.connections,
                    block=True,
                    retries=False,
                    ssl_context=self._context,
                )
                self._pools[(host, port)] = pool
            return pool

    def post(
        self,
        url: str,
        data: Any,
        headers: Mapping[str, str],
        timeout: float | tuple[float, float],
    ) -> PracticeResponse:
        """POST ``data`` (bytes, or a re-iterable body with ``__len__`` and a ``Content-Length`` header) without
        following redirects, and return the answer with its body unread (the caller reads it within its own cap
        and closes it: ``with response:``).

        urllib3 exceptions propagate unchanged: the caller (``client.py``) classifies them, because whether a
        failure may be retried depends on whether any byte was sent (docs/design.md, "Retries").
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ConfigurationError(f"endpoint must be an https:// URL, got {url!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        sent_headers = {
            "User-Agent": _USER_AGENT,
            "Accept": "*/*",
            # An ITI-41 answer is a few KB: nothing to gain from compression, and a compressed answer is one
            # whose size says nothing about what it decodes to.
            "Accept-Encoding": "identity",
            **headers,
        }
        if parts.username is not None:  # credentials in the endpoint URL go as Basic authentication
            user, password = unquote(parts.username), unquote(parts.password or "")
            sent_headers.update(urllib3.make_headers(basic_auth=f"{user}:{password}"))
        raw = self._pool(parts.hostname, parts.port or 443).urlopen(
            "POST",
            target,
            body=data,
            headers=sent_headers,
            retries=False,
            redirect=False,
            timeout=urllib3.Timeout(connect=connect, read=read),
            preload_content=False,
            release_conn=False,
            chunked=False,
        )
        return PracticeResponse(raw)

    def close(self) -> None:
        """Close every idle connection; one in use is closed when its answer is. (A thread that took this
        session just before :class:`SessionPool` replaced it may still send with it: it gets a new pool.)"""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def __enter__(self) -> PracticeSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SessionPool:
    """Thread-safe ``PracticeSession`` per practice, rebuilt when the practice's credential files change.

    Each call to :meth:`session_for` re-checks the size and mtime of the credential files (two ``stat``
    calls); when they changed, the identity is reloaded and a new session replaces the old one, which is
    closed. So a renewed certificate is used from the next send on, without a restart, and pooled connections
    made with the old certificate are never reused. A session belongs to exactly one practice id; the lock
    makes sure two threads never build two sessions for one.
    """

    def __init__(self, ca_bundle: Path, *, connections_per_practice: int = DEFAULT_CONNECTIONS) -> None:
        self.ca_bundle = Path(ca_bundle)
        self.connections_per_practice = connections_per_practice
        self._lock = threading.Lock()
        self._sessions: dict[str, PracticeSession] = {}

    def session_for(self, practice: Practice) -> PracticeSession:
        credential = practice.credential
        if credential is None:
            raise ConfigurationError(f"practice {practice.id!r} has no client certificate configured")
        # The usual case, without the lock: the files are checked (two system calls) while other threads send.
        current = self._sessions.get(practice.id)
        if (
            current is not None
            and current.identity.credential == credential
            and current.identity.is_current()
        ):
            return current
        with self._lock:
            current = self._sessions.get(practice.id)
            if (
                current is not None
                and current.identity.credential == credential
                and current.identity.is_current()
            ):
                return current  # another thread renewed it meanwhile
            session = PracticeSession(
                practice.id,
                load_identity(credential),
                self.ca_bundle,
                connections=self.connections_per_practice,
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
