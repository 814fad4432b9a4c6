"""The layout is the architecture: which part may import which, checked on the source.

Each package's ``__init__`` docstring states its rule; these tests make a change that breaks one fail. Imports are
read with ``ast`` (module level and inside functions alike), so a lazy import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xdr_edge"

#: Modules at the top of the package that both sides share.
SHARED = {"xdr_edge._version", "xdr_edge.certs", "xdr_edge.minting", "xdr_edge.practice", "xdr_edge.tls"}
SHARED |= {"xdr_edge.tomlconfig", "xdr_edge.wsdl", "xdr_edge.logsafe", "xdr_edge.pfx", "xdr_edge.durable"}

#: Which parts of xdr_edge each part may import (besides itself). ``protocol`` is the pure core.
ALLOWED: dict[str, set[str]] = {
    "protocol": {"protocol", "wsdl"},
    "shared": {"protocol", "shared"},
    "sender": {"protocol", "shared", "sender"},
    "registry": {"protocol", "shared", "registry"},
    "receiver": {"protocol", "shared", "registry", "receiver"},
    "conformance": {"protocol", "shared", "registry", "receiver", "conformance"},
    "api": {"protocol", "shared", "sender", "registry", "receiver", "api"},
    "devtools": {"protocol", "shared", "sender", "registry", "receiver", "conformance", "api", "devtools"},
    "cli": {"protocol", "shared", "sender", "registry", "receiver", "conformance", "api", "devtools", "cli"},
    "root": {"protocol", "shared", "sender", "root"},  # xdr_edge/__init__.py re-exports the public API
}

#: Libraries that do network I/O: the pure core must not import them.
NETWORK_MODULES = {"socket", "ssl", "requests", "urllib3", "http", "cheroot", "asyncio", "selectors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str:
    if module == "xdr_edge":
        return "root"
    if module == "xdr_edge.__main__":
        return "cli"
    if module in SHARED:
        return "shared"
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute names, with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            if base == "xdr_edge" or base.startswith("xdr_edge."):
                # ``from xdr_edge.protocol import ns`` imports the submodule xdr_edge.protocol.ns
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_part_imports_only_what_its_layer_allows(path: Path) -> None:
    module = _module_name(path)
    part = _part(module)
    allowed = ALLOWED[part]
    wrong = []
    for line, name in _imports(path):
        if not name.startswith("xdr_edge.") or not _is_module(name):
            continue
        target = _part(name)
        if target not in allowed and target != part:
            wrong.append(f"line {line}: {name} ({target})")
    assert not wrong, f"{module} ({part}) may import only {sorted(allowed)}; it imports {wrong}"


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "protocol").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_protocol_core_does_no_network_io(path: Path) -> None:
    wrong = [f"line {line}: {name}" for line, name in _imports(path) if name.split(".")[0] in NETWORK_MODULES]
    assert not wrong, f"{_module_name(path)} is in the pure core and must not import {wrong}"


def test_the_layer_test_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a protocol module importing the sender or ssl is caught."""
    bad = PACKAGE / "protocol" / "_layout_probe.py"
    bad.write_text("import ssl\nfrom xdr_edge.sender.client import XdrClient\n", encoding="utf-8")
    try:
        names = [name for _, name in _imports(bad)]
        assert "ssl" in names and "xdr_edge.sender.client" in names
        with pytest.raises(AssertionError, match="may import only"):
            test_each_part_imports_only_what_its_layer_allows(bad)
        with pytest.raises(AssertionError, match="must not import"):
            test_the_protocol_core_does_no_network_io(bad)
    finally:
        bad.unlink()


def test_every_package_folder_ships_in_the_wheel() -> None:
    """pyproject lists packages explicitly (for the wsdl/ mapping); a new folder must be listed too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {_module_name(p) for p in PACKAGE.rglob("__init__.py")} | {"xdr_edge.wsdl"}
    assert listed == on_disk
    assert config["tool"]["setuptools"]["package-dir"] == {"xdr_edge.wsdl": "wsdl"}


def test_every_package_says_what_it_owns_and_may_import() -> None:
    missing = [
        _module_name(init)
        for init in PACKAGE.rglob("__init__.py")
        if not (ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert not missing


def test_the_readme_and_docs_import_only_names_that_exist() -> None:
    import importlib

    pattern = re.compile(r"^from (xdr_edge[\w.]*) import ([\w, ]+)$", re.MULTILINE)
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    seen = 0
    for doc in texts:
        for module, names in pattern.findall(doc.read_text(encoding="utf-8")):
            imported = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert hasattr(imported, name), f"{doc.name}: {module} has no {name}"
                seen += 1
    assert seen >= 5  # the README's library example alone imports four names


def test_the_wsdl_exists_once_and_ships_as_package_data() -> None:
    from xdr_edge.protocol.soap.request_writer import wsdl_path

    assert wsdl_path().resolve() == (ROOT / "wsdl" / "iti41.wsdl").resolve()
    copies = [p for p in PACKAGE.rglob("*") if p.suffix in (".wsdl", ".xsd") or p.name == "wsdl"]
    assert not copies, f"a second copy of the WSDL/XSDs: {copies}"
