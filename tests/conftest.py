"""Shared fixtures. PKI fixtures (xdr_edge.devtools.pki): a fresh CA and a demo PKI written to a temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdr_edge.devtools.pki import DemoPki, write_demo_pki
from xdr_edge.minting import CertificateAuthority


@pytest.fixture(scope="session")
def pki_ca() -> CertificateAuthority:
    """A root CA shared by a test session (EC keys are cheap; certificates issued from it are per test)."""
    return CertificateAuthority.create("xdr-edge test CA")


@pytest.fixture
def demo_pki(tmp_path: Path) -> DemoPki:
    """The demo PKI of ``xdr-edge certs demo-pki`` in ``tmp_path/pki`` (CA, server, 2 practices)."""
    return write_demo_pki(tmp_path / "pki")
