"""``xdr-edge demo``: the whole system working, end to end, on loopback, in one command.

In a temporary folder: a PKI (CA, HISP server certificate, two practices' client certificates), a registry with
bindings, the receiver on a free loopback port with mutual TLS. Then it sends a C-CDA with full (XDS) metadata,
a PDF with minimal metadata, and a message to several recipients, and shows an unbound sender and two unknown
certificates (one from an untrusted CA, one trusted but never enrolled) being refused. Prints a table of
outcomes and where the received files are; cleans up unless asked to keep the folder.
"""

from __future__ import annotations

__all__ = ["DemoStep", "run_demo"]

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.certs import load_identity
from xdr_edge.conformance.exchange import ExchangeKind, post, tls_context
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.practice import Practice
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.protocol.model import MetadataLevel
from xdr_edge.protocol.wire import build_request, parse_response
from xdr_edge.sender.client import SendResult, XdrClient
from xdr_edge.sender.sessions import PracticeSession


@dataclass(frozen=True)
class DemoStep:
    """One demo step: what was tried, what was expected, what happened."""

    name: str
    expected: str
    observed: str
    passed: bool
    detail: str = ""


def _documents(directory: Path) -> tuple[Path, Path]:
    docs = directory / "outbox"
    docs.mkdir(parents=True, exist_ok=True)
    ccda, pdf = docs / "ccd.xml", docs / "referral.pdf"
    ccda.write_bytes(sample_ccda())
    pdf.write_bytes(sample_pdf())
    return ccda, pdf


def _result_step(name: str, expected: str, result: SendResult, want_ok: bool) -> DemoStep:
    observed = result.outcome.value
    if result.errors:
        observed += f" ({result.errors[0].error_code})"
    detail = f"HTTP {result.http_status}, {result.elapsed_seconds * 1000:.0f} ms, message {result.message_id}"
    if not result.ok:
        detail = result.message
    return DemoStep(name, expected, observed, result.ok == want_ok, detail)


def _send_unchecked(lab: Lab, practice: Practice, sender: str, recipient: str, document: Path) -> DemoStep:
    """Send as an address the practice is NOT bound to, bypassing our own client's pre-flight (which would refuse
    before sending) to show that the receiver refuses it too."""
    submission = compose([document], sender=sender, recipients=[recipient], level=MetadataLevel.MINIMAL)
    request = build_request(submission, endpoint=lab.endpoint)
    assert practice.credential is not None
    with PracticeSession(practice.id, load_identity(practice.credential), lab.ca_bundle) as session:
        with session.post(lab.endpoint, data=request.body, headers=request.headers(), timeout=30) as response:
            parsed = parse_response(response.headers.get("Content-Type", ""), response.content)
    rr = parsed.registry_response
    if rr is not None and rr.is_failure and rr.errors:
        observed = f"Failure ({rr.errors[0].error_code})"
        return DemoStep(
            "unbound sender (A's certificate, B's address)",
            "Failure, nothing stored",
            observed,
            not lab.inbox.contains(submission.submission_set.unique_id),
            rr.errors[0].code_context,
        )
    return DemoStep(
        "unbound sender", "Failure", "accepted!", False, "the receiver accepted an unbound sender"
    )


def _handshake(lab: Lab, cert: Path, key: Path, name: str, expect_refused_at_tls: bool) -> DemoStep:
    """Connect with a given client certificate and report whether the TLS handshake (or the request) was refused.

    The conformance TLS cases' own client (:func:`tls_context`, :func:`post`), which tells a refusal in the
    handshake (TLS 1.3: with the first read) from an HTTP answer.
    """
    ex = post(
        lab.endpoint,
        tls_context(lab.ca_bundle, cert, key),
        "application/soap+xml",
        b"",
        message_id=None,
        timeout=10,
    )
    if ex.kind is ExchangeKind.REFUSED:
        return DemoStep(
            name, "TLS handshake refused", f"refused by the server ({ex.problem})", expect_refused_at_tls
        )
    return DemoStep(
        name,
        "TLS handshake refused" if expect_refused_at_tls else "HTTP 403 fault, body not read",
        f"HTTP {ex.http_status}" if ex.http_status is not None else ex.describe(),
        (not expect_refused_at_tls) and ex.http_status == 403,
    )


def run_demo(
    *, keep: Path | None = None, echo: Callable[[str], None] = print
) -> tuple[list[DemoStep], Path | None]:
    """Run the demo; returns the steps and, when ``keep`` is given, where everything was left.

    ``keep`` must be a new or empty directory: the demo writes a fresh PKI and registry there, and over an earlier
    demo's files it would replace the certificates that the kept registry pins, then fail half-way."""
    if keep is not None:
        _check_keep(Path(keep))
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="xdr-edge-demo-")) if keep is None else Path(keep)
    steps: list[DemoStep] = []
    try:
        echo(f"making a PKI, a registry and an inbox in {base} ...")
        with start_lab(base) as lab:
            echo(f"receiver listening on {lab.endpoint} (mutual TLS; client CA {lab.ca_bundle.name})")
            ccda, pdf = _documents(base)
            prac_a, prac_b = lab.practices["practice-a"], lab.practices["practice-b"]
            a_from = str(prac_a.bindings[0])
            b_from = str(prac_b.bindings[0])
            with XdrClient(endpoint=lab.endpoint, ca_bundle=lab.ca_bundle, practices=lab.practices) as client:
                full = compose([ccda], sender=a_from, recipients=[b_from], level=MetadataLevel.XDS)
                steps.append(
                    _result_step(
                        "C-CDA, full (XDS) metadata, practice A",
                        "Success",
                        client.send(full, practice=prac_a),
                        True,
                    )
                )
                minimal = compose([pdf], sender=b_from, recipients=[a_from], level=MetadataLevel.MINIMAL)
                steps.append(
                    _result_step(
                        "PDF, minimal metadata, practice B",
                        "Success",
                        client.send(minimal, practice=prac_b),
                        True,
                    )
                )
                many = compose(
                    [ccda, pdf],
                    sender=a_from,
                    recipients=[b_from, "care.team@direct.hospital.example", "records@direct.clinic.example"],
                    level=MetadataLevel.MINIMAL,
                )
                steps.append(
                    _result_step(
                        "2 documents to 3 recipients, practice A",
                        "Success",
                        client.send(many, practice=prac_a),
                        True,
                    )
                )
                try:
                    client.preflight(compose([pdf], sender=b_from, recipients=[a_from]), prac_a)
                    steps.append(DemoStep("pre-flight: unbound sender", "refused", "allowed", False))
                except Exception as exc:  # NotBound
                    steps.append(
                        DemoStep(
                            "unbound sender, our client's pre-flight",
                            "refused before sending",
                            "refused",
                            True,
                            str(exc),
                        )
                    )
            steps.append(_send_unchecked(lab, prac_a, b_from, a_from, pdf))
            pki = lab.pki
            steps.append(
                _handshake(
                    lab,
                    pki.untrusted_client_cert,
                    pki.untrusted_client_key,
                    "certificate from an untrusted CA",
                    True,
                )
            )
            steps.append(
                _handshake(
                    lab, pki.expired_client_cert, pki.expired_client_key, "expired client certificate", True
                )
            )
            stranger = pki.ca.issue_client("never enrolled", emails=("x@direct.unknown.example",))
            stranger.write_pem(base / "pki" / "stranger.pem", base / "pki" / "stranger.key")
            steps.append(
                _handshake(
                    lab,
                    base / "pki" / "stranger.pem",
                    base / "pki" / "stranger.key",
                    "trusted CA, certificate not enrolled",
                    False,
                )
            )
            stored = sorted(
                p for p in lab.inbox.root.glob("*/*") if p.is_dir() and not p.parent.name.startswith(".")
            )
        _print_table(steps, echo)
        echo("")
        echo(f"received submissions ({len(stored)}), one directory each under {base / 'inbox'}:")
        for directory in stored:
            files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
            echo(f"  {directory.relative_to(base / 'inbox')}/  {', '.join(files)}")
        echo(
            f"\ndone in {time.monotonic() - started:.1f} s; "
            + (
                f"files kept in {base}"
                if keep is not None
                else "temporary folder removed (use --keep DIR to keep it)"
            )
        )
        return steps, (base if keep is not None else None)
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


def _check_keep(keep: Path) -> None:
    """Refuse a ``--keep`` folder that is a file or already holds something, before anything is written."""
    if keep.exists() and not keep.is_dir():
        raise ConfigurationError(f"--keep {keep} is not a directory; nothing was written", location="--keep")
    if keep.is_dir():
        entries = sorted(p.name for p in keep.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ConfigurationError(
                f"--keep {keep} is not empty (it holds {shown}): the demo makes a new PKI and registry there "
                "and would overwrite an earlier run's; give a new or empty directory (nothing was written)",
                location="--keep",
            )


def _print_table(steps: list[DemoStep], echo: Callable[[str], None]) -> None:
    width = max(len(s.name) for s in steps)
    exp = max(len(s.expected) for s in steps)
    echo("")
    echo(f"{'step'.ljust(width)}  {'expected'.ljust(exp)}  result")
    echo(f"{'-' * width}  {'-' * exp}  {'-' * 30}")
    for step in steps:
        mark = "ok  " if step.passed else "FAIL"
        echo(f"{step.name.ljust(width)}  {step.expected.ljust(exp)}  {mark} {step.observed}")
        if step.detail and not step.passed:
            echo(f"{''.ljust(width)}  {''.ljust(exp)}       {step.detail}")
