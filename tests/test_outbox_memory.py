"""A 1 GiB drop goes through the outbox with the same flat memory as `xdr-edge send` of the same file.

Both run as subprocesses against the lab receiver in this process; each one's peak RSS comes from ``os.wait4``.
``XDR_EDGE_BIG_DROP_MB`` makes the document smaller while iterating (default 1024)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.outbox_helpers import A_FROM, TO, results, write_config
from xdr_edge.conformance.samples import sample_pdf
from xdr_edge.devtools.lab import start_lab

MIB = 1024 * 1024
#: What the outbox may cost above `xdr-edge send` (its journal, its threads), and above itself for a tiny drop.
MARGIN_MB = 16.0


def _peak_rss_mb(args: list[str]) -> tuple[int, float, str]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    return proc.returncode, usage.ru_maxrss / 1024, proc.stderr.read().decode(errors="replace")


def _folder_drop(incoming: Path, name: str, document: Path) -> None:
    hidden = incoming / f".{name}"
    hidden.mkdir(parents=True)
    os.link(document, hidden / document.name)  # the same bytes, without another copy on disk
    (hidden / "message.toml").write_text(
        f'practice = "practice-a"\nfrom = "{A_FROM}"\nto = ["{TO}"]\nmetadata = "minimal"\n'
    )
    os.rename(hidden, incoming / name)


@pytest.mark.slow
def test_a_1_gib_drop_is_sent_with_the_flat_memory_of_xdr_edge_send(tmp_path: Path) -> None:
    size_mb = int(os.environ.get("XDR_EDGE_BIG_DROP_MB", "1024"))
    xdr_edge = [sys.executable, "-m", "xdr_edge"]
    with start_lab(tmp_path / "lab") as lab:
        try:
            config = write_config(lab, tmp_path / "sender.toml", timeout=900)
            big = tmp_path / "big.bin"
            block = os.urandom(MIB)
            with big.open("wb") as out:
                for _ in range(size_mb):
                    out.write(block)
            tiny = tmp_path / "tiny.pdf"
            tiny.write_bytes(sample_pdf())

            code, send_mb, err = _peak_rss_mb(
                [
                    *xdr_edge,
                    "send",
                    str(big),
                    "--config",
                    str(config),
                    "--practice",
                    "practice-a",
                    "--from",
                    A_FROM,
                    "--to",
                    TO,
                    "--metadata",
                    "minimal",
                ]
            )
            assert code == 0, err
            outbox = tmp_path / "outbox"
            _folder_drop(outbox / "incoming", "tiny", tiny)
            code, tiny_mb, err = _peak_rss_mb(
                [*xdr_edge, "outbox", "run", str(outbox), "--config", str(config), "--once"]
            )
            assert code == 0, err
            _folder_drop(outbox / "incoming", "big", big)
            code, big_mb, err = _peak_rss_mb(
                [*xdr_edge, "outbox", "run", str(outbox), "--config", str(config), "--once"]
            )
            assert code == 0, err

            sent = results(outbox / "sent")
            assert sent["big"]["outcome"] == "Success"
            stored = sorted(lab.inbox.root.glob("[0-9]*/*/documents/*"), key=lambda p: p.stat().st_size)
            assert [p.stat().st_size for p in stored] == [len(sample_pdf()), size_mb * MIB, size_mb * MIB]
            print(
                f"peak RSS: send {send_mb:.1f} MB, outbox tiny {tiny_mb:.1f} MB, outbox {size_mb} MiB {big_mb:.1f} MB"
            )
            assert big_mb <= send_mb + MARGIN_MB, (send_mb, big_mb)
            assert big_mb <= tiny_mb + MARGIN_MB, (tiny_mb, big_mb)  # flat: the document costs nothing
        finally:
            shutil.rmtree(lab.inbox.root, ignore_errors=True)
            shutil.rmtree(tmp_path / "outbox", ignore_errors=True)
            (tmp_path / "big.bin").unlink(missing_ok=True)
