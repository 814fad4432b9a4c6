"""Reading our TOML files (the sender's configuration, a drop's manifest): loading with errors that name the
file, and tables whose errors name the file and the dotted key. Each file's own readers add its value rules."""

from __future__ import annotations

__all__ = ["TableReader", "load_toml"]

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import ConfigurationError, XdrError
from xdr_edge.protocol.model import DirectAddress, MetadataLevel


def load_toml(path: Path) -> dict[str, Any]:
    """The parsed file; a missing, unreadable or malformed file is a :class:`ConfigurationError` naming it."""
    source = str(path)
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError(f"{source}: file not found", location=source) from None
    except OSError as exc:
        raise ConfigurationError(f"{source}: cannot read: {exc.strerror or exc}", location=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}", location=source) from None


class TableReader:
    """One table of a file: its errors say ``<file>: <prefix><key>: <problem>``, and its getters check the value
    kinds our files share (text, flags, Direct addresses, the metadata level) in the same words everywhere.

    The errors are :class:`ConfigurationError`; a reader of another kind of file (a drop's manifest, whose
    mistakes make a bad drop, not a bad configuration) overrides :meth:`problem`."""

    def __init__(self, source: Path | str, table: Mapping[str, Any], prefix: str) -> None:
        self.source = source
        self.table = table
        self.prefix = prefix

    def problem(self, message: str, location: str) -> XdrError:
        """The error raised for a wrong value (``message`` already names the file and the key)."""
        return ConfigurationError(message, location=location)

    def error(self, key: str, message: str) -> XdrError:
        where = f"{self.prefix}{key}"
        return self.problem(f"{self.source}: {where}: {message}", f"{self.source}:{where}")

    def refuse_unknown(self, allowed: frozenset[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A non-empty string, stripped; None when absent (an error when ``required``)."""
        value = self.table.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty string")
        return value.strip()

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def address(self, key: str, value: object) -> DirectAddress:
        """``value`` (found at ``key``) as a Direct address (``user@domain``, RFC 5322 addr-spec)."""
        if not isinstance(value, str) or "@" not in value.lstrip("@"):
            raise self.error(key, f"not a Direct address (user@domain): {value!r}")
        try:
            return DirectAddress.parse(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def addresses(self, key: str) -> tuple[DirectAddress, ...] | None:
        """A non-empty list of Direct addresses; None when absent."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(
                key, f'must be a non-empty list of Direct addresses, e.g. {key} = ["records@hisp.example"]'
            )
        return tuple(self.address(f"{key}[{i}]", v) for i, v in enumerate(value))

    def level(self, key: str) -> MetadataLevel | None:
        """A metadata level (``minimal`` or ``XDS``); None when absent."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, "must be 'minimal' or 'XDS'")
        try:
            return MetadataLevel.parse(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
