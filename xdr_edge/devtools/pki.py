"""The demo PKI that ``xdr-edge demo``, ``xdr-edge certs demo-pki`` and the tests write: a CA, a server
certificate, two practices (PEM and PKCS#12), and the bad material a receiver must refuse (a certificate from an
untrusted CA, an expired one) plus a CRL. Minting itself is :mod:`xdr_edge.minting`; this module only decides what
a demo needs and where the files go. Never for production: the CA key lives only in memory.
"""

from __future__ import annotations

__all__ = ["DEFAULT_DEMO_PRACTICES", "DemoPki", "DemoPractice", "write_demo_pki"]

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from xdr_edge.durable import write_atomic
from xdr_edge.minting import CertificateAuthority

DEFAULT_DEMO_PRACTICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("practice-a", ("dr.smith@direct.practice-a.org",)),
    ("practice-b", ("dr.jones@direct.practice-b.org",)),
)


@dataclass(frozen=True)
class DemoPractice:
    """The files written for one demo practice."""

    id: str
    addresses: tuple[str, ...]
    cert: Path
    key: Path
    p12: Path
    p12_password_file: Path
    fingerprint_sha256: str


@dataclass(frozen=True)
class DemoPki:
    """Paths written by :func:`write_demo_pki`; ``ca`` stays in memory (its key is never written)."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    practices: dict[str, DemoPractice]
    untrusted_ca_cert: Path
    untrusted_client_cert: Path
    untrusted_client_key: Path
    expired_client_cert: Path
    expired_client_key: Path
    crl: Path
    ca: CertificateAuthority = field(repr=False, compare=False)


def write_demo_pki(
    directory: Path,
    *,
    practices: Sequence[tuple[str, Sequence[str]]] = DEFAULT_DEMO_PRACTICES,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
) -> DemoPki:
    """Write a complete demo PKI into ``directory`` (created if needed) and return the paths.

    Files: ``ca.pem`` (trust anchor for both sides), ``server.pem``/``server.key``, per practice
    ``<id>.pem``, ``<id>.key``, ``<id>.p12`` and its random password in ``<id>.p12.pass`` (mode 0600);
    ``untrusted-ca.pem`` with ``untrusted-client.pem``/``.key`` issued by it (ETT tests 9/19, Direct Edge Protocols IG §1.1, ETT tests 6-9);
    ``expired-client.pem``/``.key`` (first practice's identity, already expired); ``crl.pem`` (an empty,
    current CRL of the CA). The CA key is not written. Keys are generated afresh on every call.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not practices:
        raise ValueError("the demo PKI needs at least one practice")
    ca = CertificateAuthority.create("xdr-edge demo CA")
    ca_cert = directory / "ca.pem"
    write_atomic(ca_cert, ca.cert_pem, mode=0o644)

    server = ca.issue_server(hostnames)
    server_cert, server_key = directory / "server.pem", directory / "server.key"
    server.write_pem(server_cert, server_key)

    written = {
        pid: _write_demo_practice(ca, directory, pid, tuple(addresses)) for pid, addresses in practices
    }
    first_id, first_addresses = practices[0][0], tuple(practices[0][1])

    untrusted_ca = CertificateAuthority.create("xdr-edge untrusted CA")
    untrusted_ca_cert = directory / "untrusted-ca.pem"
    write_atomic(untrusted_ca_cert, untrusted_ca.cert_pem, mode=0o644)
    untrusted = untrusted_ca.issue_client("untrusted client", practice_id=first_id, emails=first_addresses)
    untrusted_cert, untrusted_key = directory / "untrusted-client.pem", directory / "untrusted-client.key"
    untrusted.write_pem(untrusted_cert, untrusted_key)

    now = datetime.now(UTC)
    expired = ca.issue_client(
        f"{first_id} (expired)",
        practice_id=first_id,
        emails=first_addresses,
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    expired_cert, expired_key = directory / "expired-client.pem", directory / "expired-client.key"
    expired.write_pem(expired_cert, expired_key)

    crl_path = directory / "crl.pem"
    write_atomic(crl_path, ca.crl().public_bytes(serialization.Encoding.PEM), mode=0o644)
    return DemoPki(
        directory=directory,
        ca_cert=ca_cert,
        server_cert=server_cert,
        server_key=server_key,
        practices=written,
        untrusted_ca_cert=untrusted_ca_cert,
        untrusted_client_cert=untrusted_cert,
        untrusted_client_key=untrusted_key,
        expired_client_cert=expired_cert,
        expired_client_key=expired_key,
        crl=crl_path,
        ca=ca,
    )


def _write_demo_practice(
    ca: CertificateAuthority, directory: Path, practice_id: str, addresses: tuple[str, ...]
) -> DemoPractice:
    issued = ca.issue_client(f"{practice_id} edge client", practice_id=practice_id, emails=addresses)
    cert, key = directory / f"{practice_id}.pem", directory / f"{practice_id}.key"
    issued.write_pem(cert, key)
    password = secrets.token_urlsafe(18)
    p12, pass_file = directory / f"{practice_id}.p12", directory / f"{practice_id}.p12.pass"
    write_atomic(pass_file, password.encode() + b"\n", mode=0o600)
    issued.write_p12(p12, password.encode())
    return DemoPractice(
        id=practice_id,
        addresses=addresses,
        cert=cert,
        key=key,
        p12=p12,
        p12_password_file=pass_file,
        fingerprint_sha256=issued.fingerprint_sha256,
    )
