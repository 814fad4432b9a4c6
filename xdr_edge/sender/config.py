"""The sender's configuration file (TOML): the HISP endpoint, its CA bundle, and the practices with their
certificates and bound Direct addresses.

Owns reading and checking that file; it opens no connection and loads no key (that is :mod:`xdr_edge.tls`,
when a practice first sends). Every problem is a :class:`~xdr_edge.protocol.errors.ConfigurationError` naming the file
and the key, e.g. ``config.toml: practice[1].cert: file not found: certs/x.pem`` (practice indexes count from
0, in file order). Relative paths are resolved against the directory of the configuration file, so the
configuration means the same thing whatever the working directory.

Example::

    endpoint = "https://hisp.example.org/xdr"
    ca_bundle = "certs/hisp-ca.pem"
    metadata_level = "minimal"            # or "XDS"
    timeout_seconds = 60

    [[practice]]
    id = "practice-a"
    name = "Practice A"
    cert = "certs/practice-a.pem"
    key = "certs/practice-a.key"          # or: p12 = "...", p12_password_env = "PRACTICE_A_P12_PASS"
    addresses = ["dr.smith@direct.practice-a.org"]
    domains = ["direct.practice-a.org"]

Unknown keys are errors: a misspelt ``adresses`` silently binding nothing would only show up as refused
submissions later (our practice-binding rule: a sender address must be bound to the practice whose certificate is used).
"""

from __future__ import annotations

__all__ = ["SenderConfig", "load_sender_config"]

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.tomlconfig import TableReader, load_toml

_TOP_KEYS = frozenset({"endpoint", "ca_bundle", "metadata_level", "timeout_seconds", "practice"})
_PRACTICE_KEYS = frozenset(
    {
        "id",
        "name",
        "active",
        "cert",
        "key",
        "p12",
        "p12_password_env",
        "p12_password_file",
        "addresses",
        "domains",
    }
)
_PASSWORD_KEYS = frozenset({"p12_password", "password", "key_password"})


@dataclass(frozen=True)
class SenderConfig:
    """A loaded sender configuration; paths are absolute, practices keyed by id (file order kept)."""

    endpoint: str
    ca_bundle: Path
    metadata_level: MetadataLevel
    timeout_seconds: float
    practices: dict[str, Practice]

    def practice(self, practice_id: str) -> Practice:
        """The practice ``practice_id``; the error lists the configured ids."""
        try:
            return self.practices[practice_id]
        except KeyError:
            known = ", ".join(sorted(self.practices)) or "none"
            raise ConfigurationError(
                f"unknown practice {practice_id!r} (configured: {known})", code="unknown-practice"
            ) from None

    def practice_for_address(self, address: DirectAddress) -> Practice | None:
        """The active practice that binds ``address``: an address binding wins over a domain binding.

        The same address or domain bound to two practices is refused at load time, so the answer is unique.
        """
        active = [p for p in self.practices.values() if p.active]
        for practice in active:
            if any(b.address == address for b in practice.bindings):
                return practice
        for practice in active:
            if practice.binds(address):
                return practice
        return None


class _Reader(TableReader):
    """A sender configuration table: values required unless said otherwise, files that must exist."""

    source: Path

    def check_keys(self, allowed: frozenset[str]) -> None:
        for key in self.table:
            if key in _PASSWORD_KEYS:
                raise self.error(
                    key,
                    "passwords do not belong in the config file; use p12_password_env or p12_password_file",
                )
        self.refuse_unknown(allowed)

    def string(self, key: str, *, required: bool = True) -> str | None:
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def strings(self, key: str) -> list[str]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return value

    def path(self, key: str, *, required: bool = True) -> Path | None:
        text = self.string(key, required=required)
        if text is None:
            return None
        path = Path(text).expanduser()
        resolved = path if path.is_absolute() else self.source.parent / path
        if not resolved.is_file():
            reason = "not a file" if resolved.exists() else "file not found"
            raise self.error(key, f"{reason}: {text}")
        return resolved.resolve()


def _endpoint(reader: _Reader) -> str:
    endpoint = reader.string("endpoint")
    assert endpoint is not None
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise reader.error(
            "endpoint",
            f"must be an https:// URL (mutual TLS, Direct Edge Protocols IG §1.1, ETT tests 6-9), got {endpoint!r}",
        )
    return endpoint


def _metadata_level(reader: _Reader) -> MetadataLevel:
    text = reader.string("metadata_level", required=False)
    if text is None:
        return MetadataLevel.MINIMAL
    try:
        return MetadataLevel.parse(text)
    except ValueError as exc:
        raise reader.error("metadata_level", str(exc)) from None


def _timeout(reader: _Reader) -> float:
    value = reader.table.get("timeout_seconds", 60)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise reader.error("timeout_seconds", f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _credential(reader: _Reader) -> ClientCredential | None:
    cert = reader.path("cert", required=False)
    key = reader.path("key", required=False)
    p12 = reader.path("p12", required=False)
    password_env = reader.string("p12_password_env", required=False)
    password_file = reader.path("p12_password_file", required=False)
    if p12 is None and (password_env or password_file):
        raise reader.error("p12_password_env" if password_env else "p12_password_file", "given without p12")
    if p12 is not None and (cert or key):
        raise reader.error("p12", "give either cert and key, or p12, not both")
    if password_env and password_file:
        raise reader.error("p12_password_file", "give either p12_password_env or p12_password_file, not both")
    if (cert is None) != (key is None):
        raise reader.error("key" if key is None else "cert", "cert and key must be given together")
    if cert is None and p12 is None:
        return None
    return ClientCredential(
        cert=cert, key=key, p12=p12, p12_password_env=password_env, p12_password_file=password_file
    )


def _bindings(reader: _Reader) -> tuple[Binding, ...]:
    bindings: list[Binding] = []
    for index, text in enumerate(reader.strings("addresses")):
        if "@" not in text.lstrip("@"):
            raise reader.error(f"addresses[{index}]", f"not a Direct address (user@domain): {text!r}")
        try:
            bindings.append(Binding(address=DirectAddress.parse(text)))
        except ValueError as exc:
            raise reader.error(f"addresses[{index}]", str(exc)) from None
    for index, text in enumerate(reader.strings("domains")):
        domain = text.strip().lstrip("@")
        if not domain or "@" in domain or "." not in domain:
            raise reader.error(f"domains[{index}]", f"not a Direct domain: {text!r}")
        bindings.append(Binding(domain=domain))
    return tuple(bindings)


def _practice(reader: _Reader) -> Practice:
    reader.check_keys(_PRACTICE_KEYS)
    practice_id = reader.string("id")
    assert practice_id is not None
    active = reader.table.get("active", True)
    if not isinstance(active, bool):
        raise reader.error("active", "must be true or false")
    return Practice(
        id=practice_id,
        name=reader.string("name", required=False) or practice_id,
        active=active,
        bindings=_bindings(reader),
        credential=_credential(reader),
    )


def _practices(reader: _Reader, source: Path) -> dict[str, Practice]:
    tables = reader.table.get("practice", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise reader.error("practice", "must be an array of tables ([[practice]])")
    if not tables:
        raise reader.error("practice", "at least one [[practice]] is required")
    practices: dict[str, Practice] = {}
    owner: dict[Binding, str] = {}
    for index, table in enumerate(tables):
        sub = _Reader(source, table, f"practice[{index}].")
        practice = _practice(sub)
        if practice.id in practices:
            raise sub.error("id", f"duplicate practice id {practice.id!r}")
        if practice.credential is None:
            raise sub.error("cert", "missing: a sending practice needs cert+key or p12")
        for binding in practice.bindings:
            if binding in owner:
                key = "addresses" if binding.address is not None else "domains"
                raise sub.error(key, f"{binding} is already bound to practice {owner[binding]!r}")
            owner[binding] = practice.id
        practices[practice.id] = practice
    return practices


def load_sender_config(path: Path) -> SenderConfig:
    """Read and check a sender configuration file; see the module docstring for the format."""
    source = Path(path)
    reader = _Reader(source, load_toml(source), "")
    reader.check_keys(_TOP_KEYS)
    ca_bundle = reader.path("ca_bundle")
    assert ca_bundle is not None
    return SenderConfig(
        endpoint=_endpoint(reader),
        ca_bundle=ca_bundle,
        metadata_level=_metadata_level(reader),
        timeout_seconds=_timeout(reader),
        practices=_practices(reader, source),
    )
