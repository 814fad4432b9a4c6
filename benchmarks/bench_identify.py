"""Cost of the receiver's per-request certificate decision (``Registry.identify``) with a large CRL loaded,
against the same decision with an empty CRL measured in the same run.

Usage: ``.venv/bin/python benchmarks/bench_identify.py [--revoked 20000] [--rounds 300]``

Every request of the receiver calls ``identify`` (chain, validity, revocation, mapping to a practice). A HISP's
CA can list tens of thousands of revoked certificates; what a large CRL costs per request is what this shows.
The CA key is RSA-2048 (RSA signature checks are what a large CRL's cost is made of; the demo PKI is EC).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from xdr_edge.minting import CertificateAuthority
from xdr_edge.registry import open_registry


def _big_crl(ca: CertificateAuthority, revoked: int) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + timedelta(days=7))
    )
    for serial in range(revoked):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(10_000 + serial).revocation_date(now).build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(Encoding.DER)


def _time_identify(directory: Path, crl_der: bytes, rounds: int) -> tuple[float, str]:
    ca = _CA
    registry = open_registry(str(directory / "registry.db"))
    registry.init(actor="bench")
    registry.add_trust_anchor(ca.cert.public_bytes(Encoding.PEM), actor="bench")
    registry.add_practice("practice-a", "Practice A", actor="bench")
    issued = ca.issue_client("edge.practice-a", emails=("dr.smith@direct.practice-a.org",))
    registry.enroll("practice-a", issued.cert, actor="bench")
    registry.load_crl(crl_der, actor="bench")
    registry.identify(issued.cert)  # warm-up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        ident = registry.identify(issued.cert)
        samples.append(time.perf_counter() - started)
    assert ident.practice is not None, ident.reason
    return statistics.median(samples) * 1000, ident.reason


_CA = CertificateAuthority.create("Bench CA", key_type="rsa")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--revoked", type=int, default=20_000, help="entries in the large CRL")
    parser.add_argument("--rounds", type=int, default=300, help="identify calls per case (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-identify-") as tmp:
        root = Path(tmp)
        (root / "empty").mkdir()
        (root / "large").mkdir()
        large = _big_crl(_CA, args.revoked)
        base_ms, _ = _time_identify(root / "empty", _big_crl(_CA, 0), args.rounds)
        large_ms, _ = _time_identify(root / "large", large, args.rounds)
    print(f"{'CRL':<28}{'bytes':>10}{'identify median ms':>22}")
    print(f"{'empty (baseline)':<28}{'':>10}{base_ms:>22.2f}")
    print(f"{f'{args.revoked} revoked entries':<28}{len(large):>10,}{large_ms:>22.2f}")
    print(f"large / empty: {large_ms / base_ms:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
