"""The JSON API's settings: the TOML file of ``xdr-edge api serve --config`` (flags override it), and
:func:`build_api`, which opens the registry database, checks the credential store, takes this process's spool
directory (sweeping what stopped processes left) and assembles the app on the receiver's cheroot server.

Strict as the receiver's file (unknown keys and wrong types name the file and the dotted key; relative paths
resolve against the file's directory); the ``[server]`` table has the receiver's keys, read by the same code,
plus ``require_client_cert``. Example::

    [server]
    host = "0.0.0.0"
    port = 9443
    cert = "certs/api.pem"             # HTTPS (TLS >= 1.2) certificate and key
    key = "certs/api.key"
    client_ca = "certs/clients-ca.pem" # optional: client certificates from this CA ...
    require_client_cert = true         # ... are required (default when client_ca is set); false: optional

    [api]
    registry = "registry.db"           # the receiver's registry database (xdr-edge registry init)
    credentials = "credentials"        # practices' sending keys (encrypted PKCS#12, mode 0700)
    credential_passphrase_file = "credential.pass"  # mode 0600, kept apart from backups of credentials/
    spool = "spool"                    # multipart uploads while they are sent
    max_json_bytes = 33554432          # larger MessageSend JSON bodies: 413 (send large documents as multipart)
    max_documents = 100
    allow_domain_bindings = false      # AddressBind of a whole domain (@example.org)
    body_timeout = 60                  # seconds for what is read before the caller is known; slower: 408
    max_requests_per_address = 5       # calls in progress at once per client address (default: half the threads)
    max_requests_per_application = 5  # ... per application (default: half the threads)
    max_requests_per_account = 3       # ... per account (default: half of the per-application limit)

    [sender]                           # where MessageSend sends (without it, MessageSend answers 503)
    endpoint = "https://hisp.example.org/xdr"
    ca_bundle = "certs/hisp-ca.pem"
    timeout_seconds = 120
    metadata_level = "minimal"         # or "XDS"
"""

from __future__ import annotations

__all__ = ["ApiSettings", "BuiltApi", "build_api", "check_registry_private", "load_api_settings"]

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xdr_edge.api.app import ApiApp, ApiOptions
from xdr_edge.api.auth import Authenticator
from xdr_edge.api.calls import AccountCalls
from xdr_edge.api.credentials import CredentialVault
from xdr_edge.api.forms import UploadSpool
from xdr_edge.api.messaging import DEFAULT_LEASE_SECONDS, MessageCalls
from xdr_edge.api.passwords import PasswordHasher
from xdr_edge.api.schema import API_PREFIX
from xdr_edge.api.throttle import FailureThrottle
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import MetadataLevel
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.receiver.settings import (
    SERVER_KEYS,
    SettingsTable,
    read_settings_file,
    server_config,
    server_values,
)
from xdr_edge.registry import Registry
from xdr_edge.registry.accounts import SqlAccountStore, open_accounts
from xdr_edge.registry.database import is_postgresql_url, parse_registry_url
from xdr_edge.sender.client import XdrClient

_SECTIONS: dict[str, frozenset[str]] = {
    "server": SERVER_KEYS | {"require_client_cert"},
    "api": frozenset(
        {
            "registry",
            "credentials",
            "credential_passphrase_file",
            "spool",
            "max_json_bytes",
            "max_documents",
            "allow_domain_bindings",
            "body_timeout",
            "max_requests_per_address",
            "max_requests_per_application",
            "max_requests_per_account",
        }
    ),
    "sender": frozenset({"endpoint", "ca_bundle", "timeout_seconds", "metadata_level"}),
}


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API needs besides its socket."""

    registry: str
    credentials: Path
    credential_passphrase_file: Path
    spool: Path
    max_json_bytes: int = ApiOptions.max_json_bytes
    max_documents: int = ApiOptions.max_documents
    allow_domain_bindings: bool = False
    body_timeout: float = ApiOptions.body_timeout
    max_requests_per_address: int | None = None  # None: half the server's threads
    max_requests_per_application: int | None = None  # None: half the server's threads
    max_requests_per_account: int | None = None  # None: half the per-application limit
    endpoint: str | None = None
    ca_bundle: Path | None = None
    timeout_seconds: float = 120.0
    metadata_level: MetadataLevel = MetadataLevel.MINIMAL


def _values(path: Path) -> dict[str, Any]:
    base = path.resolve().parent
    data = read_settings_file(path, _SECTIONS)
    tables = {name: SettingsTable(str(path), name, data.get(name, {}), base) for name in _SECTIONS}
    for name, table in tables.items():
        table.check_keys(_SECTIONS[name])
    server, api, sender = tables["server"], tables["api"], tables["sender"]
    values: dict[str, Any] = {
        **server_values(server),
        "require_client_cert": server.boolean("require_client_cert"),
        "registry": api.registry("registry"),
        "credentials": api.path("credentials"),
        "credential_passphrase_file": api.path("credential_passphrase_file"),
        "spool": api.path("spool"),
        "max_json_bytes": api.integer("max_json_bytes", 1024),
        "max_documents": api.integer("max_documents", 1, 1000),
        "allow_domain_bindings": api.boolean("allow_domain_bindings"),
        "body_timeout": api.number("body_timeout"),
        "max_requests_per_address": api.integer("max_requests_per_address", 1),
        "max_requests_per_application": api.integer("max_requests_per_application", 1),
        "max_requests_per_account": api.integer("max_requests_per_account", 1),
        "endpoint": sender.text("endpoint"),
        "ca_bundle": sender.path("ca_bundle"),
        "timeout_seconds": sender.number("timeout_seconds"),
        "metadata_level": sender.text("metadata_level"),
    }
    if values["metadata_level"] is not None:
        try:
            values["metadata_level"] = MetadataLevel.parse(values["metadata_level"])
        except ValueError as exc:
            raise sender.error("metadata_level", str(exc)) from None
    return {k: v for k, v in values.items() if v is not None}


def load_api_settings(
    path: Path | None, *, overrides: Mapping[str, Any] | None = None
) -> tuple[ServerConfig, ApiSettings]:
    """Read ``path`` (when given), apply ``overrides`` (None values ignored) and check the whole."""
    values = _values(Path(path)) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None and value != ():
            values[key] = value
    where = str(path) if path is not None else "command line"
    for required in ("registry", "credentials", "credential_passphrase_file", "spool", "cert", "key"):
        if required not in values:
            section = "server" if required in ("cert", "key") else "api"
            raise ConfigurationError(f"{where}: no {section}.{required} given", location=required)
    require = values.get("require_client_cert")
    if require is None:
        require = "client_ca" in values
    if require and "client_ca" not in values:
        raise ConfigurationError(
            f"{where}: server.require_client_cert needs server.client_ca", location="client_ca"
        )
    endpoint = values.get("endpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigurationError(f"{where}: sender.endpoint must be an https:// URL", location="endpoint")
        if "ca_bundle" not in values:
            raise ConfigurationError(f"{where}: sender.endpoint needs sender.ca_bundle", location="ca_bundle")
    settings = ApiSettings(
        registry=str(values["registry"]),
        credentials=Path(values["credentials"]),
        credential_passphrase_file=Path(values["credential_passphrase_file"]),
        spool=Path(values["spool"]),
        max_json_bytes=int(values.get("max_json_bytes", ApiSettings.max_json_bytes)),
        max_documents=int(values.get("max_documents", ApiSettings.max_documents)),
        allow_domain_bindings=bool(values.get("allow_domain_bindings", False)),
        body_timeout=float(values.get("body_timeout", ApiSettings.body_timeout)),
        max_requests_per_address=values.get("max_requests_per_address"),
        max_requests_per_application=values.get("max_requests_per_application"),
        max_requests_per_account=values.get("max_requests_per_account"),
        endpoint=endpoint,
        ca_bundle=values.get("ca_bundle"),
        timeout_seconds=float(values.get("timeout_seconds", ApiSettings.timeout_seconds)),
        metadata_level=values.get("metadata_level", MetadataLevel.MINIMAL),
    )
    return server_config(values, require_client_cert=bool(require)), settings


@dataclass(frozen=True)
class BuiltApi:
    """The assembled API, not yet listening."""

    server: XdrServer
    app: ApiApp
    store: SqlAccountStore
    client: XdrClient | None

    @property
    def url(self) -> str:
        """The base URL of the calls (``.../api/v1``)."""
        return self.server.origin + API_PREFIX

    def stop(self) -> None:
        """Stop serving, then release the client's sessions, the spool directory and the database."""
        self.server.stop()
        self.app.close()
        if self.client is not None:
            self.client.close()
        self.store.close()


def check_registry_private(registry: str) -> None:
    """Refuse an SQLite registry database other users may read: it holds the API's password hashes (slow
    hashes, but an offline guess at a login password needs no throttle). A PostgreSQL database is protected
    by its own roles."""
    if is_postgresql_url(registry):
        return
    path = parse_registry_url(registry)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return  # opening it says how to create it
    if mode & 0o044:
        raise ConfigurationError(
            f"registry database {path} is readable by other users (mode {mode:o}); it holds the API's password "
            f"hashes: chmod 600 {path}",
            location=str(path),
        )


def _half(value: int) -> int:
    return max(1, value // 2)


def build_api(
    server: ServerConfig,
    settings: ApiSettings,
    *,
    hasher: PasswordHasher | None = None,
    identity_throttle: FailureThrottle | None = None,
    pair_throttle: FailureThrottle | None = None,
    address_throttle: FailureThrottle | None = None,
    message_lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> BuiltApi:
    """Open the registry database (which must exist), check the credential store, take a spool directory, and
    assemble the app and its server. The hasher, throttles and lease are parameters so that tests can make
    them cheaper and quicker."""
    store = open_accounts(settings.registry, max_connections=server.threads + 2)
    vault = CredentialVault(settings.credentials, settings.credential_passphrase_file)
    vault.check()
    hasher = hasher or PasswordHasher()
    client = None
    if settings.endpoint is not None:
        assert settings.ca_bundle is not None
        client = XdrClient(
            endpoint=settings.endpoint,
            ca_bundle=settings.ca_bundle,
            timeout=(10.0, settings.timeout_seconds),
        )
    accounts = AccountCalls(
        Registry(store), store, vault, hasher, allow_domain_bindings=settings.allow_domain_bindings
    )
    per_application = settings.max_requests_per_application or _half(server.threads)
    app = ApiApp(
        Authenticator(
            store,
            hasher=hasher,
            identity_throttle=identity_throttle,
            pair_throttle=pair_throttle,
            address_throttle=address_throttle,
        ),
        accounts,
        MessageCalls(accounts, client, level=settings.metadata_level, lease_seconds=message_lease_seconds),
        ApiOptions(
            spool=UploadSpool(settings.spool),
            max_json_bytes=settings.max_json_bytes,
            max_documents=settings.max_documents,
            body_timeout=settings.body_timeout,
            max_requests_per_address=settings.max_requests_per_address or _half(server.threads),
            max_requests_per_application=per_application,
            max_requests_per_account=settings.max_requests_per_account or _half(per_application),
        ),
    )
    return BuiltApi(XdrServer(app, server), app, store, client)
