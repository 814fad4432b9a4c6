"""The reference material beside the project in ``../shared``: the official XSDs and messages written by others
(``conformance/``), and inputs that once broke our readers (``fuzz-findings/``). CI has it; a plain clone does
not, and then the tests that need it skip, naming the file.

One home for where it lives and how a missing file is reported, so that every test reads it the same way.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from lxml import etree

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"
SCHEMAS = CONFORMANCE / "schemas"
SAMPLES = CONFORMANCE / "samples"
FUZZ_FINDINGS = SHARED / "fuzz-findings"

_SCHEMA_CACHE: dict[Path, etree.XMLSchema] = {}


def reference_file(path: Path, what: str = "reference file") -> Path:
    """``path`` when it exists; otherwise the calling test is skipped with the reason."""
    if not path.is_file():
        pytest.skip(f"{what} {path} is absent (../shared is not beside the project)")
    return path


def sample_path(relative: str) -> Path:
    """A sample message of ``../shared/conformance/samples`` (see its SOURCES.md)."""
    return reference_file(SAMPLES / relative, "reference sample")


def official_schema(relative: str) -> etree.XMLSchema:
    """An official XSD of ``../shared/conformance/schemas``, compiled once per test session."""
    path = reference_file(SCHEMAS / relative, "official schema")
    if path not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[path] = etree.XMLSchema(etree.parse(str(path)))
    return _SCHEMA_CACHE[path]


def fuzz_finding(name: str) -> bytes:
    """An input of ``../shared/fuzz-findings`` (see its README: each once broke a reader); ``.gz`` files are
    returned decompressed."""
    data = reference_file(FUZZ_FINDINGS / name, "fuzz finding").read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data
