"""The JSON API's settings: the TOML file of ``xdr-edge api serve --config`` (flags override it), and
:func:`build_api`, which opens the registry database, checks the credential store and assembles the app on the
receiver's cheroot server.

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
    max_json_bytes = 33554432          # larger JSON bodies: 413 (send large documents as multipart)
    max_documents = 100
    allow_domain_bindings = false      # AddressBind of a whole domain (@example.org)

    [sender]                           # where MessageSend sends (without it, MessageSend answers 503)
    endpoint = "https://hisp.example.org/xdr"
    ca_bundle = "certs/hisp-ca.pem"
    timeout_seconds = 120
    metadata_level = "minimal"         # or "XDS"
"""

from __future__ import annotations

__all__ = ["ApiSettings", "BuiltApi", "build_api", "load_api_settings"]

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xdr_edge.api.app import ApiApp, ApiOptions
from xdr_edge.api.auth import Authenticator
from xdr_edge.api.calls import AccountCalls
from xdr_edge.api.credentials import CredentialVault
from xdr_edge.api.messaging import MessageCalls
from xdr_edge.api.passwords import PasswordHasher
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
        "endpoint": sender.string("endpoint"),
        "ca_bundle": sender.path("ca_bundle"),
        "timeout_seconds": sender.number("timeout_seconds"),
        "metadata_level": sender.string("metadata_level"),
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
        return self.server.url.removesuffix("/xdr") + "/api/v1"

    def stop(self) -> None:
        self.server.stop()
        if self.client is not None:
            self.client.close()
        self.store.close()


def build_api(
    server: ServerConfig,
    settings: ApiSettings,
    *,
    hasher: PasswordHasher | None = None,
    identity_throttle: FailureThrottle | None = None,
    address_throttle: FailureThrottle | None = None,
) -> BuiltApi:
    """Open the registry database (which must exist), check the credential store, and assemble the app and
    its server. The hasher and throttles are parameters so that tests can make them cheaper and quicker."""
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
    app = ApiApp(
        Authenticator(
            store, hasher=hasher, identity_throttle=identity_throttle, address_throttle=address_throttle
        ),
        accounts,
        MessageCalls(accounts, client, level=settings.metadata_level),
        ApiOptions(
            spool=settings.spool,
            max_json_bytes=settings.max_json_bytes,
            max_documents=settings.max_documents,
        ),
    )
    return BuiltApi(XdrServer(app, server), app, store, client)
