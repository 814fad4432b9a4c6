"""Finding drops in incoming/ and settling them: what counts as a drop, work in progress, practice folders, and
how long a drop must look unchanged before it is claimed (longer for a folder still without its manifest)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.outbox_helpers import drop, valid_manifest
from xdr_edge.conformance.samples import sample_ccda
from xdr_edge.sender.outbox.arrivals import (
    MANIFEST_WAIT_FACTOR,
    Arrival,
    Settling,
    find_arrivals,
    fingerprint,
)


def test_find_arrivals_ignores_work_in_progress_and_knows_practice_folders(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    drop(incoming, "order-1", manifest=valid_manifest())
    (incoming / ".order-2").mkdir()  # being built
    (incoming / "practice-a").mkdir()
    (incoming / "practice-a" / "x.xml").write_bytes(sample_ccda())
    (incoming / "practice-a" / ".y.xml").write_bytes(sample_ccda())
    (incoming / "stray.txt").write_text("?")
    found = {a.name: (a.kind, a.practice_folder) for a in find_arrivals(incoming, frozenset({"practice-a"}))}
    assert found == {
        "order-1": ("folder", None),
        "practice-a/x.xml": ("file", "practice-a"),
        "stray.txt": ("file", None),
    }
    # a folder not named after a configured practice is an ordinary folder drop
    assert "practice-a" in {a.name for a in find_arrivals(incoming, frozenset())}


def test_settling_waits_until_a_drop_looked_the_same_long_enough(tmp_path: Path) -> None:
    folder = tmp_path / "order-1"
    folder.mkdir()
    (folder / "message.toml").write_text('practice = "practice-a"\n')
    document = folder / "ccd.xml"
    document.write_bytes(b"<ClinicalDocument")
    arrival = Arrival("order-1", folder, "folder", None)
    settling = Settling(2.0)
    assert not settling.settled(arrival, 100.0)  # first seen
    assert not settling.settled(arrival, 101.0)
    stamp = os.stat(document).st_mtime
    with document.open("ab") as out:
        out.write(b"/>")  # the same second (coarse time steps), but the size tells
    os.utime(document, (stamp, stamp))
    assert fingerprint(folder)[0] == stamp
    assert not settling.settled(arrival, 102.5)  # changed: the clock starts again
    assert not settling.settled(arrival, 104.0)
    assert settling.settled(arrival, 104.6)
    settling.forget(set())
    assert not settling.settled(arrival, 200.0)  # forgotten once gone from incoming/
    assert Settling(0).settled(arrival, 0.0)


def test_a_folder_without_its_manifest_must_look_unchanged_much_longer(tmp_path: Path) -> None:
    """A copy onto a share can look unchanged while a file is still being written (an SMB copy sets the size
    first and the time at the end): the manifest, written last, is what says a top-level folder is complete."""
    folder = tmp_path / "order-2"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 preallocated")
    arrival = Arrival("order-2", folder, "folder", None)
    settling = Settling(5.0)
    assert not settling.settled(arrival, 100.0)
    assert not settling.settled(arrival, 106.0)  # settled by the fingerprint, but there is no manifest yet
    assert not settling.settled(arrival, 100.0 + 5.0 * MANIFEST_WAIT_FACTOR - 1)
    assert settling.settled(arrival, 100.0 + 5.0 * MANIFEST_WAIT_FACTOR)  # then it fails as no-manifest
    # the manifest arrives: a change, then the ordinary settling time
    (folder / "message.toml").write_text('practice = "practice-a"\n')
    assert not settling.settled(arrival, 200.0)
    assert settling.settled(arrival, 205.0)
    # inside a practice folder no manifest is needed: the ordinary settling time
    inner = Arrival("practice-a/order-3", folder, "folder", "practice-a")
    assert not settling.settled(inner, 300.0) and settling.settled(inner, 305.0)
