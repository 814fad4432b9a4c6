"""Reading our TOML configuration files (the sender's and the receiver's): loading with errors that name the
file, and tables whose errors name the file and the dotted key. Each file's own readers add its value rules."""

from __future__ import annotations

__all__ = ["TableReader", "load_toml"]

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdr_edge.protocol.errors import ConfigurationError


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
    """One table of a file: its errors say ``<file>: <prefix><key>: <problem>``."""

    def __init__(self, source: Path | str, table: Mapping[str, Any], prefix: str) -> None:
        self.source = source
        self.table = table
        self.prefix = prefix

    def error(self, key: str, message: str) -> ConfigurationError:
        where = f"{self.prefix}{key}"
        return ConfigurationError(f"{self.source}: {where}: {message}", location=f"{self.source}:{where}")

    def refuse_unknown(self, allowed: frozenset[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.error(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
