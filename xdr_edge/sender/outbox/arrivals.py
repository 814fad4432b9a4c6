"""Finding drops in ``incoming/``, by polling (inotify does not see changes made on a network share by another
host, and a poll is a directory listing: cheap at any realistic backlog).

What counts as a drop:

- a folder ``incoming/<name>/`` (the writer builds it as ``incoming/.<name>/`` and renames it: one atomic step,
  so the drop appears whole);
- an entry of ``incoming/<practice id>/`` for a configured practice: a file (written as ``.<name>`` and renamed;
  sent with the practice's outbox defaults) or a folder (its manifest may leave out what the defaults give);
- anything else at the top of ``incoming/`` (a stray file, a symbolic link) is claimed too and fails as a bad drop
  with the reason, rather than lying there unexplained;
- names starting with ``.`` are never touched: that is work in progress.

Settling: a writer that does not rename (a copy onto a share, a folder made in place) would be caught half
written. A drop is therefore claimed only once its :func:`fingerprint` (latest modification time, total size,
number of entries) has stayed the same for ``settle_seconds`` by the outbox's own clock. Comparing what the outbox
saw, not the files' times with its clock, keeps this right when the share's clock (or the writer's) differs from
ours, in either direction; size and count catch writes within a filesystem's coarse time steps (2 s on FAT/SMB).

The fingerprint cannot see everything: an SMB copy may set a file's full size first and its time only when it
closes the file, so a file being copied can look unchanged. A folder at the top of ``incoming/`` needs its
manifest, so the manifest is the writer's "done" (write it last): a top-level folder without one must look the
same for :data:`MANIFEST_WAIT_FACTOR` times ``settle_seconds`` before it is claimed (then it fails as a drop
without a manifest, rather than being sent half-written).
"""

from __future__ import annotations

__all__ = ["MANIFEST_WAIT_FACTOR", "Arrival", "Settling", "find_arrivals", "fingerprint"]

import os
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.sender.outbox.layout import MANIFEST_NAMES

#: How many times ``settle_seconds`` a top-level folder without a manifest must look unchanged before it is
#: claimed (a minute with the default 5 s).
MANIFEST_WAIT_FACTOR = 12


@dataclass(frozen=True)
class Arrival:
    """A drop seen in ``incoming/``, not yet claimed. ``name`` is its path under ``incoming/`` ("order-7",
    "practice-a/ccd.xml"); ``kind`` is ``folder`` or ``file`` (any other entry is handled as a file)."""

    name: str
    path: Path
    kind: str
    practice_folder: str | None


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _arrival(entry: os.DirEntry[str], name: str, practice_folder: str | None) -> Arrival:
    kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
    return Arrival(name, Path(entry.path), kind, practice_folder)


def find_arrivals(incoming: Path, practice_folders: frozenset[str]) -> list[Arrival]:
    """Every drop in ``incoming`` now, in name order (within a practice folder, too)."""
    found: list[Arrival] = []
    for entry in _entries(incoming):
        if entry.name.startswith("."):
            continue
        if entry.name in practice_folders and entry.is_dir(follow_symlinks=False):
            for inner in _entries(Path(entry.path)):
                if not inner.name.startswith("."):
                    found.append(_arrival(inner, f"{entry.name}/{inner.name}", entry.name))
            continue
        found.append(_arrival(entry, entry.name, None))
    return found


def fingerprint(path: Path) -> tuple[float, int, int]:
    """``(latest modification time, total size, entries)`` of ``path`` and, for a folder, of everything in it
    (links not followed): what changes while a writer is still at work."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return (0.0, 0, 0)
    newest, size, count = info.st_mtime, info.st_size, 1
    if path.is_dir() and not path.is_symlink():
        for directory, subdirs, files in os.walk(path, followlinks=False):
            for name in (*subdirs, *files):
                try:
                    entry = os.lstat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue
                newest, size, count = max(newest, entry.st_mtime), size + entry.st_size, count + 1
    return (newest, size, count)


class Settling:
    """Which drops have stayed unchanged for ``settle_seconds`` (one instance per run; not thread-safe: the
    run's loop alone uses it)."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._seen: dict[str, tuple[tuple[float, int, int], float]] = {}

    def settled(self, arrival: Arrival, now: float) -> bool:
        """True once ``arrival`` looked the same for ``settle_seconds`` (``now`` is the outbox's monotonic clock);
        for a top-level folder without a manifest, :data:`MANIFEST_WAIT_FACTOR` times as long."""
        if self.settle_seconds <= 0:
            return True
        current = fingerprint(arrival.path)
        seen = self._seen.get(arrival.name)
        if seen is None or seen[0] != current:
            self._seen[arrival.name] = (current, now)
            return False
        needed = self.settle_seconds
        if arrival.kind == "folder" and arrival.practice_folder is None and not _has_manifest(arrival.path):
            needed *= MANIFEST_WAIT_FACTOR
        return now - seen[1] >= needed

    def forget(self, present: set[str]) -> None:
        """Drop what is no longer in ``incoming/`` (claimed, or taken back by its writer)."""
        for name in [n for n in self._seen if n not in present]:
            del self._seen[name]


def _has_manifest(folder: Path) -> bool:
    return any(os.path.lexists(folder / name) for name in MANIFEST_NAMES)
