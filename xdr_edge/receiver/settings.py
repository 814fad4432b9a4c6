"""The receiver's settings: the TOML file of ``xdr-edge serve --config`` and the flags that override it, turned
into a :class:`~xdr_edge.receiver.server.ServerConfig` and :class:`ReceiverOptions`; and :func:`build_server`,
which opens the registry and the inbox and assembles the running parts.

Reading is strict: unknown keys and wrong types are errors naming the file and the dotted key (``serve.toml:
server.port: must be an integer from 0 to 65535``), because a misspelt ``trusted_proxy`` silently trusting no
proxy, or a misspelt ``crls`` silently checking no revocation, would only show up in production. Relative paths
(certificates, CRLs, the inbox, a SQLite registry) are resolved against the file's directory, so the file means
the same thing whatever the working directory.

Example::

    [server]
    host = "0.0.0.0"
    port = 8443
    cert = "certs/server.pem"          # server certificate (chain allowed) and key
    key = "certs/server.key"
    client_ca = "certs/client-ca.pem"  # CA bundle client certificates must chain to
    crls = ["certs/client-ca.crl.pem"] # optional; every issuing CA then needs a current CRL
    threads = 10
    timeout_seconds = 60
    max_request_bytes = 2147483648
    linger_seconds = 5                 # after a refusal, discard what the client still sends this long
    handshake_timeout_seconds = 10     # a client that does not complete the TLS handshake is dropped
    header_timeout_seconds = 5         # the request line and headers must all arrive within this: else 408
    max_header_bytes = 65536           # larger HTTP request headers: 413
    min_upload_bytes_per_second = 500  # a body slower than this on average (after 20 s of grace): 408

    [receiver]
    registry = "registry.db"           # a path, sqlite:relative.db, sqlite:///abs/path.db or postgresql://...
    inbox = "inbox"
    name = "rx-1"                      # this receiver's working area in the inbox (default: the host name)
    hook = "mypackage.downstream:deliver"
    path = "/xdr"                      # optional: accept POSTs only on this path
    understood_headers = ["wsse:Security"]  # optional: accepted even when marked mustUnderstand
    intermediates = "certs/intermediates.pem"  # optional: CAs between client certificates and the anchors
    max_requests_per_practice = 5      # in progress at once per practice (default: half the threads): else 503
    max_envelope_bytes = 52428800      # the SOAP envelope (MTOM root part, or a plain-SOAP body): else 413
    max_xml_nodes = 200000             # elements + attributes + namespace declarations in the envelope: else 400

    [proxy]                            # plain HTTP on loopback behind a TLS-terminating proxy
    enabled = false
    trusted = ["127.0.0.1"]
    cert_header = "X-SSL-Client-Cert"
    verify_header = "X-SSL-Client-Verify"

No I/O here besides reading the file; :func:`build_server` opens the registry and inbox but binds no socket.
"""

from __future__ import annotations

__all__ = [
    "SERVER_KEYS",
    "BuiltServer",
    "ReceiverOptions",
    "SettingsTable",
    "build_server",
    "default_receiver_name",
    "load_receiver_settings",
    "read_settings_file",
    "server_config",
    "server_values",
]

import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from xdr_edge.certs import parse_certificates
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.soap import header_qname
from xdr_edge.protocol.xml import DEFAULT_XML_BUDGET
from xdr_edge.receiver.app import PeerIdentitySource, ReceiverConfig, XdrEdgeApp, load_hook
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.receiver.store import Inbox, Recovery, check_receiver_name
from xdr_edge.registry import (
    Registry,
    SubmissionIndex,
    is_postgresql_url,
    open_database,
    open_registry,
    parse_registry_url,
)
from xdr_edge.tomlconfig import TableReader, load_toml

#: The ``[server]`` keys (socket, TLS, limits): the receiver's file and the JSON API's file share them.
SERVER_KEYS = frozenset(
    {
        "host",
        "port",
        "cert",
        "key",
        "client_ca",
        "crls",
        "threads",
        "timeout_seconds",
        "max_request_bytes",
        "linger_seconds",
        "handshake_timeout_seconds",
        "header_timeout_seconds",
        "max_header_bytes",
        "min_upload_bytes_per_second",
        "upload_grace_seconds",
    }
)
_SECTIONS: dict[str, frozenset[str]] = {
    "server": SERVER_KEYS,
    "receiver": frozenset(
        {
            "registry",
            "inbox",
            "name",
            "hook",
            "path",
            "understood_headers",
            "intermediates",
            "max_requests_per_practice",
            "max_envelope_bytes",
            "max_xml_nodes",
        }
    ),
    "proxy": frozenset({"enabled", "trusted", "cert_header", "verify_header"}),
}
_DEFAULTS = ServerConfig(plain_http=True)  # only to read the defaults; never served
_LIMITS = MtomLimits()


def default_receiver_name() -> str:
    """The host's short name, as a receiver name: stable across restarts (so recovery finds its own working
    area) and distinct between hosts. Two receivers on one host sharing an inbox need names of their own."""
    short = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "-", short).strip("._-")[:64]
    return name or "default"


@dataclass(frozen=True)
class ReceiverOptions:
    """What the endpoint needs besides its socket: where the registry and inbox are, the hook, proxy mode."""

    registry: str
    inbox: Path
    receiver_name: str = field(default_factory=default_receiver_name)
    hook: str | None = None
    path: str | None = None
    identity_source: PeerIdentitySource = PeerIdentitySource.TLS
    trusted_proxies: tuple[str, ...] = ()
    proxy_cert_header: str = "X-SSL-Client-Cert"
    proxy_verify_header: str = "X-SSL-Client-Verify"
    max_request_bytes: int = _DEFAULTS.max_request_bytes
    max_envelope_bytes: int = _LIMITS.max_root_bytes
    max_xml_nodes: int = DEFAULT_XML_BUDGET.max_nodes
    # None: half the server's worker threads (at least one), so that one practice never takes them all
    max_requests_per_practice: int | None = None
    understood_headers: frozenset[str] = frozenset()  # Clark names
    intermediates: Path | None = (
        None  # PEM bundle of intermediate CAs (besides those in the client CA bundle)
    )

    @property
    def behind_proxy(self) -> bool:
        return self.identity_source is PeerIdentitySource.PROXY


class SettingsTable(TableReader):
    """One section of a settings file: absent values are None; relative paths resolve against ``base``."""

    def __init__(self, source: str, name: str, table: Mapping[str, Any], base: Path) -> None:
        super().__init__(source, table, f"{name}.")
        self.name = name
        self.base = base

    def check_keys(self, allowed: frozenset[str] | None = None) -> None:
        self.refuse_unknown(_SECTIONS[self.name] if allowed is None else allowed)

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(key, "must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def integer(self, key: str, low: int, high: int | None = None) -> int | None:
        value = self.table.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise self.error(key, f"must be an integer {bound}")
        return value

    def number(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(key, "must be a positive number of seconds")
        return float(value)

    def boolean(self, key: str) -> bool | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def path(self, key: str) -> Path | None:
        text = self.text(key)
        return None if text is None else self.resolve(text)

    def paths(self, key: str) -> tuple[Path, ...] | None:
        texts = self.strings(key)
        return None if texts is None else tuple(self.resolve(t) for t in texts)

    def resolve(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base / path

    def registry(self, key: str) -> str | None:
        """A registry URL; a relative SQLite file is made absolute against the file's directory."""
        text = self.text(key)
        if text is None or is_postgresql_url(text):
            return text
        try:
            database = parse_registry_url(text)
        except ConfigurationError as exc:
            raise self.error(key, exc.message) from None
        return str(database if database.is_absolute() else self.base / database)


def read_settings_file(
    path: Path, sections: Mapping[str, frozenset[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """The file's tables by section name; a section not in ``sections`` (the receiver's by default) is an
    error naming the file."""
    source = str(path)
    known = _SECTIONS if sections is None else sections
    data = load_toml(path)
    out: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if name not in known:
            raise ConfigurationError(
                f"{source}: {name}: unknown section (expected: {', '.join(sorted(known))})",
                location=f"{source}:{name}",
            )
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"{source}: {name}: must be a table ([{name}])", location=f"{source}:{name}"
            )
        out[name] = table
    return out


def _values_from_file(path: Path) -> dict[str, Any]:
    """The file's settings as flat option names (the same names as the overrides)."""
    base = path.resolve().parent
    data = read_settings_file(path)
    server = SettingsTable(str(path), "server", data.get("server", {}), base)
    receiver = SettingsTable(str(path), "receiver", data.get("receiver", {}), base)
    proxy = SettingsTable(str(path), "proxy", data.get("proxy", {}), base)
    for table in (server, receiver, proxy):
        table.check_keys()
    values: dict[str, Any] = {
        **server_values(server),
        "max_requests_per_practice": receiver.integer("max_requests_per_practice", 1),
        "max_envelope_bytes": receiver.integer("max_envelope_bytes", 1024),
        "max_xml_nodes": receiver.integer("max_xml_nodes", 100),
        "registry": receiver.registry("registry"),
        "inbox": receiver.path("inbox"),
        "receiver_name": receiver.text("name"),
        "hook": receiver.text("hook"),
        "path": receiver.text("path"),
        "understood_headers": receiver.strings("understood_headers"),
        "intermediates": receiver.path("intermediates"),
        "behind_proxy": proxy.boolean("enabled"),
        "trusted_proxies": proxy.strings("trusted"),
        "proxy_cert_header": proxy.text("cert_header"),
        "proxy_verify_header": proxy.text("verify_header"),
    }
    if values["path"] is not None and not values["path"].startswith("/"):
        raise receiver.error("path", "must start with '/'")
    return {k: v for k, v in values.items() if v is not None}


def server_values(server: SettingsTable) -> dict[str, Any]:
    """The ``[server]`` table as override names (None where absent)."""
    return {
        "host": server.text("host"),
        "port": server.integer("port", 0, 65535),
        "cert": server.path("cert"),
        "key": server.path("key"),
        "client_ca": server.path("client_ca"),
        "crls": server.paths("crls"),
        "threads": server.integer("threads", 1, 1000),
        "socket_timeout": server.number("timeout_seconds"),
        "max_request_bytes": server.integer("max_request_bytes", 1),
        "linger_seconds": server.number("linger_seconds"),
        "handshake_timeout": server.number("handshake_timeout_seconds"),
        "header_timeout": server.number("header_timeout_seconds"),
        "max_header_bytes": server.integer("max_header_bytes", 1024),
        "min_upload_bytes_per_second": server.integer("min_upload_bytes_per_second", 1),
        "upload_grace_seconds": server.number("upload_grace_seconds"),
    }


def server_config(
    values: Mapping[str, Any], *, plain_http: bool = False, require_client_cert: bool = True
) -> ServerConfig:
    """A :class:`ServerConfig` from override names (:func:`server_values` and flags); defaults elsewhere."""
    return replace(
        _DEFAULTS,
        host=values.get("host", _DEFAULTS.host),
        port=int(values.get("port", _DEFAULTS.port)),
        cert=values.get("cert"),
        key=values.get("key"),
        client_ca=values.get("client_ca"),
        require_client_cert=require_client_cert,
        crls=tuple(values.get("crls", ())),
        threads=int(values.get("threads", _DEFAULTS.threads)),
        socket_timeout=float(values.get("socket_timeout", _DEFAULTS.socket_timeout)),
        max_request_bytes=int(values.get("max_request_bytes", _DEFAULTS.max_request_bytes)),
        linger_seconds=float(values.get("linger_seconds", _DEFAULTS.linger_seconds)),
        handshake_timeout=float(values.get("handshake_timeout", _DEFAULTS.handshake_timeout)),
        header_timeout=float(values.get("header_timeout", _DEFAULTS.header_timeout)),
        max_header_bytes=int(values.get("max_header_bytes", _DEFAULTS.max_header_bytes)),
        min_upload_bytes_per_second=int(
            values.get("min_upload_bytes_per_second", _DEFAULTS.min_upload_bytes_per_second)
        ),
        upload_grace_seconds=float(values.get("upload_grace_seconds", _DEFAULTS.upload_grace_seconds)),
        plain_http=plain_http,
    )  # ServerConfig checks that TLS has its certificate and key (and client CA when required)


def load_receiver_settings(
    path: Path | None, *, overrides: Mapping[str, Any] | None = None
) -> tuple[ServerConfig, ReceiverOptions]:
    """Read ``path`` (when given), apply ``overrides`` (command-line flags; None values are ignored) and check
    the result as a whole.

    Override names: host, port, cert, key, client_ca, crls, threads, socket_timeout, max_request_bytes,
    linger_seconds, handshake_timeout, header_timeout, max_header_bytes, min_upload_bytes_per_second,
    upload_grace_seconds, max_requests_per_practice, max_envelope_bytes, max_xml_nodes, registry, inbox,
    receiver_name, hook, path, understood_headers, intermediates, behind_proxy, trusted_proxies, proxy_cert_header,
    proxy_verify_header.
    """
    values = _values_from_file(Path(path)) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None and value != ():
            values[key] = value
    where = str(path) if path is not None else "command line"
    for required in ("registry", "inbox"):
        if required not in values:
            raise ConfigurationError(
                f"{where}: no {required} given (--{required}, or receiver.{required} in the config file)",
                location=required,
            )
    behind_proxy = bool(values.get("behind_proxy", False))
    max_bytes = int(values.get("max_request_bytes", _DEFAULTS.max_request_bytes))
    server = server_config(values, plain_http=behind_proxy)
    options = ReceiverOptions(
        registry=str(values["registry"]),
        inbox=Path(values["inbox"]),
        receiver_name=check_receiver_name(values.get("receiver_name") or default_receiver_name()),
        hook=values.get("hook"),
        path=values.get("path"),
        identity_source=PeerIdentitySource.PROXY if behind_proxy else PeerIdentitySource.TLS,
        trusted_proxies=tuple(values.get("trusted_proxies", ())),
        proxy_cert_header=values.get("proxy_cert_header", ReceiverOptions.proxy_cert_header),
        proxy_verify_header=values.get("proxy_verify_header", ReceiverOptions.proxy_verify_header),
        max_request_bytes=max_bytes,
        max_envelope_bytes=int(values.get("max_envelope_bytes", _LIMITS.max_root_bytes)),
        max_xml_nodes=int(values.get("max_xml_nodes", DEFAULT_XML_BUDGET.max_nodes)),
        max_requests_per_practice=int(values.get("max_requests_per_practice", max(1, server.threads // 2))),
        understood_headers=_understood(values.get("understood_headers", ()), where),
        intermediates=values.get("intermediates"),
    )
    if behind_proxy and not options.trusted_proxies:
        raise ConfigurationError(
            f"{where}: proxy mode needs the proxy's address (--trusted-proxy, or proxy.trusted)",
            location="trusted_proxies",
        )
    if not behind_proxy and options.trusted_proxies:
        raise ConfigurationError(
            f"{where}: trusted proxies are given but proxy mode is off (--behind-proxy, or proxy.enabled = true)",
            location="trusted_proxies",
        )
    return server, options


def _understood(names: Sequence[str], where: str) -> frozenset[str]:
    try:
        return frozenset(header_qname(name) for name in names)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{where}: understood_headers: {exc.message}", location=exc.location
        ) from exc


def load_intermediates(server: ServerConfig, options: ReceiverOptions) -> tuple[x509.Certificate, ...]:
    """The CA certificates that are not self-signed from the client CA bundle (mutual TLS mode) and from the
    ``intermediates`` file: what the registry may chain a client certificate through (see
    :attr:`ReceiverConfig.intermediates`). Self-signed ones are roots: trusting them is the registry's
    anchors' job, never this list's (it is only used to build paths)."""
    files = [
        f for f in (None if server.plain_http else server.client_ca, options.intermediates) if f is not None
    ]
    found: dict[bytes, x509.Certificate] = {}
    for path in files:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read CA certificates {path}: {exc.strerror or exc}", location=str(path)
            ) from exc
        for cert in parse_certificates(data, location=str(path)):
            if cert.issuer != cert.subject:
                found.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return tuple(found.values())


@dataclass(frozen=True)
class BuiltServer:
    """The assembled receiver, not yet listening: the server, and what start-up found."""

    server: XdrServer
    registry: Registry
    inbox: Inbox
    recovered: Recovery  # what start-up recovery did with this receiver's leftovers of interrupted writes

    def close(self) -> None:
        """After the server stopped: release the inbox's working area and the database connections."""
        self.inbox.close()
        self.registry.close()


def build_server(server: ServerConfig, options: ReceiverOptions) -> BuiltServer:
    """Open the registry (which must exist: ``xdr-edge registry init``) and the inbox, finish or undo this
    receiver's interrupted writes (:meth:`Inbox.recover`, before any request can be in flight), load the hook,
    and assemble the WSGI app on its cheroot server.

    The inbox index lives in the registry database, so receivers sharing that database (PostgreSQL for
    several hosts) agree on which submissions are stored; its connection pool is sized to the worker threads.
    """
    if not is_postgresql_url(options.registry) and not parse_registry_url(options.registry).is_file():
        raise ConfigurationError(
            f"registry {options.registry} does not exist; create it with 'xdr-edge registry init'",
            location="registry",
        )
    database = open_database(options.registry, max_connections=server.threads + 2)
    registry = open_registry(database)
    inbox: Inbox | None = None
    try:
        registry.ping()  # an uninitialized or unreachable database is a start-up error, not a first-request one
        inbox = Inbox(options.inbox, SubmissionIndex(database), receiver=options.receiver_name)
        recovered = inbox.recover()
        inbox.start_upkeep()
        config = ReceiverConfig(
            registry=registry,
            inbox=inbox,
            limits=replace(
                _LIMITS, max_total_bytes=options.max_request_bytes, max_root_bytes=options.max_envelope_bytes
            ),
            xml_budget=replace(DEFAULT_XML_BUDGET, max_nodes=options.max_xml_nodes),
            max_requests_per_practice=options.max_requests_per_practice,
            identity_source=options.identity_source,
            trusted_proxies=options.trusted_proxies,
            proxy_cert_header=options.proxy_cert_header,
            proxy_verify_header=options.proxy_verify_header,
            hook=load_hook(options.hook) if options.hook else None,
            path=options.path,
            understood_headers=options.understood_headers,
            health_checks=(("registry", registry.ping),),
            intermediates=load_intermediates(server, options),
        )
        return BuiltServer(XdrServer(XdrEdgeApp(config), server), registry, inbox, recovered)
    except BaseException:
        if inbox is not None:
            inbox.close()
        registry.close()
        raise
