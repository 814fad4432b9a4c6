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

The folder-drop sender (:mod:`xdr_edge.sender.outbox`) reads two more tables, both optional::

    [outbox]                              # how `xdr-edge outbox run` works (defaults shown)
    workers = 4                           # 1 to 64
    poll_seconds = 2                      # how often incoming/ is scanned (polling works on network shares)
    settle_seconds = 5                    # a drop is claimed once it looked unchanged this long
    retry_base_seconds = 5                # first wait after a transient failure, doubled each time ...
    retry_max_seconds = 300               # ... up to this (with jitter)
    give_up_after_hours = 72              # then a drop still not delivered is failed
    keep_finished_days = 30               # the journal forgets sent and failed drops after this
    state_dir = "/var/lib/xdr-edge/outbox-a"   # optional: the journal on a local disk (DIR on a share)

    [[practice]]
    id = "practice-a"
    ...
    [practice.outbox]                     # a single file in incoming/practice-a/ is a drop sent with these
    from = "dr.smith@direct.practice-a.org"   # must be bound to the practice
    to = ["records@direct.hospital.example"]
    metadata = "XDS"                      # default: metadata_level
"""

from __future__ import annotations

__all__ = ["MAX_OUTBOX_WORKERS", "OutboxDefaults", "OutboxSettings", "SenderConfig", "load_sender_config"]

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import DirectAddress, MetadataLevel
from xdr_edge.tomlconfig import TableReader, load_toml

_TOP_KEYS = frozenset({"endpoint", "ca_bundle", "metadata_level", "timeout_seconds", "practice", "outbox"})
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
        "outbox",
    }
)
_DEFAULTS_KEYS = frozenset({"from", "to", "metadata"})
_PASSWORD_KEYS = frozenset({"p12_password", "password", "key_password"})


@dataclass(frozen=True)
class OutboxDefaults:
    """What a single file dropped into ``incoming/<practice id>/`` of an outbox is sent with; a C-CDA's header
    supplies the rest (patient, author, title, codes)."""

    sender: DirectAddress
    recipients: tuple[DirectAddress, ...]
    level: MetadataLevel


#: The most workers an outbox runs: each is a thread and, at the HISP, a connection; past a few dozen a HISP is
#: more likely to refuse or slow down than to answer faster.
MAX_OUTBOX_WORKERS = 64


def _outbox_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, rule)`` for every value of ``values`` (OutboxSettings field names) that breaks its rule.

    The one statement of the rules, worded without units so that it reads right for the file's hours and days
    as for the keywords' seconds: :class:`OutboxSettings` raises the first problem, the file reader names the
    file and its key."""
    problems: list[tuple[str, str]] = []
    workers = values.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_OUTBOX_WORKERS:
        problems.append(("workers", f"must be a whole number from 1 to {MAX_OUTBOX_WORKERS}"))
    for name in ("poll_seconds", "retry_base_seconds", "give_up_after_seconds", "keep_finished_seconds"):
        value = values.get(name, 1.0)
        if not _finite(value) or value <= 0:
            problems.append((name, "must be a number above 0"))
    for name in ("settle_seconds", "retry_max_seconds"):
        value = values.get(name, 0.0)
        if not _finite(value) or value < 0:
            problems.append((name, "must be a number 0 or more"))
    base, top = values.get("retry_base_seconds"), values.get("retry_max_seconds")
    if isinstance(base, int | float) and isinstance(top, int | float) and _finite(base) and _finite(top):
        if 0 < base and 0 <= top < base:
            problems.append(("retry_max_seconds", "must not be below retry_base_seconds"))
    state_dir = values.get("state_dir")
    if state_dir is not None and not isinstance(state_dir, Path):
        problems.append(("state_dir", "must be a path"))
    return problems


@dataclass(frozen=True)
class OutboxSettings:
    """How the folder-drop sender runs; the ``[outbox]`` table (in hours and days there) or keywords.

    ``state_dir``: where the journal lives when not in ``DIR/.state`` (a local disk, for an outbox folder on a
    network share: SQLite's WAL needs every process that opens it on one host, and a network filesystem's
    locking cannot be trusted with it)."""

    workers: int = 4
    poll_seconds: float = 2.0
    settle_seconds: float = 5.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    give_up_after_seconds: float = 72 * 3600.0
    keep_finished_seconds: float = 30 * 86400.0
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        # The same rules as the file reader's (_outbox_problems): a library caller gets the same refusal.
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        for name, rule in _outbox_problems(values)[:1]:
            raise ConfigurationError(f"outbox {name} {rule}, got {values[name]!r}", location=f"outbox.{name}")


@dataclass(frozen=True)
class SenderConfig:
    """A loaded sender configuration; paths are absolute, practices keyed by id (file order kept).

    ``outbox_defaults`` holds the practices that take single-file drops (``[practice.outbox]``)."""

    endpoint: str
    ca_bundle: Path
    metadata_level: MetadataLevel
    timeout_seconds: float
    practices: dict[str, Practice]
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    outbox_defaults: dict[str, OutboxDefaults] = field(default_factory=dict)

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

    def strings(self, key: str) -> list[str]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return value

    def path(self, key: str, *, required: bool = True) -> Path | None:
        text = self.text(key, required=required)
        if text is None:
            return None
        path = Path(text).expanduser()
        resolved = path if path.is_absolute() else self.source.parent / path
        if not resolved.is_file():
            reason = "not a file" if resolved.exists() else "file not found"
            raise self.error(key, f"{reason}: {text}")
        return resolved.resolve()


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _endpoint(reader: _Reader) -> str:
    endpoint = reader.text("endpoint", required=True)
    assert endpoint is not None
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname:
        raise reader.error(
            "endpoint",
            f"must be an https:// URL (mutual TLS, Direct Edge Protocols IG §1.1, ETT tests 6-9), got {endpoint!r}",
        )
    return endpoint


def _metadata_level(reader: _Reader) -> MetadataLevel:
    return reader.level("metadata_level") or MetadataLevel.MINIMAL


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
    password_env = reader.text("p12_password_env", required=False)
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
        bindings.append(Binding(address=reader.address(f"addresses[{index}]", text)))
    for index, text in enumerate(reader.strings("domains")):
        domain = text.strip().lstrip("@")
        if not domain or "@" in domain or "." not in domain:
            raise reader.error(f"domains[{index}]", f"not a Direct domain: {text!r}")
        bindings.append(Binding(domain=domain))
    return tuple(bindings)


def _practice(reader: _Reader) -> Practice:
    reader.check_keys(_PRACTICE_KEYS)
    practice_id = reader.text("id", required=True)
    assert practice_id is not None
    active = reader.flag("active", True)
    return Practice(
        id=practice_id,
        name=reader.text("name", required=False) or practice_id,
        active=active,
        bindings=_bindings(reader),
        credential=_credential(reader),
    )


def _outbox_defaults(reader: _Reader, practice: Practice, level: MetadataLevel) -> OutboxDefaults | None:
    """``[practice.outbox]``: the sender must be bound to the practice now, not refused drop by drop later."""
    table = reader.table.get("outbox")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise reader.error("outbox", "must be a table ([practice.outbox])")
    sub = _Reader(reader.source, table, f"{reader.prefix}outbox.")
    sub.refuse_unknown(_DEFAULTS_KEYS)
    if "from" not in table:
        raise sub.error("from", "missing")
    sender = sub.address("from", table["from"])
    if not practice.binds(sender):
        bound = ", ".join(str(b) for b in practice.bindings) or "nothing"
        raise sub.error("from", f"{sender} is not bound to practice {practice.id!r} (bound: {bound})")
    recipients = sub.addresses("to")
    if recipients is None:
        raise sub.error("to", "missing")
    return OutboxDefaults(sender=sender, recipients=recipients, level=sub.level("metadata") or level)


#: The ``[outbox]`` keys: OutboxSettings field, and the factor from the file's unit to seconds.
_OUTBOX_KEYS: dict[str, tuple[str, float]] = {
    "workers": ("workers", 1),
    "poll_seconds": ("poll_seconds", 1),
    "settle_seconds": ("settle_seconds", 1),
    "retry_base_seconds": ("retry_base_seconds", 1),
    "retry_max_seconds": ("retry_max_seconds", 1),
    "give_up_after_hours": ("give_up_after_seconds", 3600),
    "keep_finished_days": ("keep_finished_seconds", 86400),
    "state_dir": ("state_dir", 1),
}


def _outbox_settings(reader: _Reader) -> OutboxSettings:
    table = reader.table.get("outbox", {})
    if not isinstance(table, dict):
        raise reader.error("outbox", "must be a table ([outbox])")
    sub = _Reader(reader.source, table, "outbox.")
    sub.refuse_unknown(frozenset(_OUTBOX_KEYS))
    values: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for key, raw in table.items():
        name, factor = _OUTBOX_KEYS[key]
        keys[name] = key
        if name == "state_dir":
            text = sub.text(key, required=True)
            assert text is not None
            path = Path(text).expanduser()
            values[name] = (path if path.is_absolute() else reader.source.parent / path).resolve()
        else:
            values[name] = raw * factor if factor != 1 and _finite(raw) else raw
    for name, rule in _outbox_problems(values)[:1]:
        raise sub.error(keys.get(name, name), f"{rule}, got {table.get(keys.get(name, name))!r}")
    return OutboxSettings(**values)


def _practices(
    reader: _Reader, source: Path, level: MetadataLevel
) -> tuple[dict[str, Practice], dict[str, OutboxDefaults]]:
    tables = reader.table.get("practice", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise reader.error("practice", "must be an array of tables ([[practice]])")
    if not tables:
        raise reader.error("practice", "at least one [[practice]] is required")
    practices: dict[str, Practice] = {}
    defaults: dict[str, OutboxDefaults] = {}
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
        drop_defaults = _outbox_defaults(sub, practice, level)
        if drop_defaults is not None:
            defaults[practice.id] = drop_defaults
    return practices, defaults


def load_sender_config(path: Path) -> SenderConfig:
    """Read and check a sender configuration file; see the module docstring for the format."""
    source = Path(path)
    reader = _Reader(source, load_toml(source), "")
    reader.check_keys(_TOP_KEYS)
    ca_bundle = reader.path("ca_bundle")
    assert ca_bundle is not None
    level = _metadata_level(reader)
    practices, defaults = _practices(reader, source, level)
    return SenderConfig(
        endpoint=_endpoint(reader),
        ca_bundle=ca_bundle,
        metadata_level=level,
        timeout_seconds=_timeout(reader),
        practices=practices,
        outbox=_outbox_settings(reader),
        outbox_defaults=defaults,
    )
