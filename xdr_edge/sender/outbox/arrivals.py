"""Finding drops in ``incoming/``, by polling (inotify does not see changes made on a network share by another
host, and a poll is a directory listing: cheap at any realistic backlog).

What counts as a drop:

- a folder ``incoming/<name>/`` (the writer builds it as ``incoming/.<name>/`` and renames it: one atomic step,
  so the drop appears whole);
- an entry of ``incoming/<practice id>/`` when that practice has outbox defaults: a file (written as
  ``.<name>`` and renamed) or a folder;
- anything else at the top of ``incoming/`` (a stray file, a symbolic link) is claimed too and fails as a bad drop
  with the reason, rather than lying there unexplained;
- names starting with ``.`` are never touched: that is work in progress.

Settling: a writer that does not rename (a copy onto a share, a folder made in place) would be caught half
written. A drop is therefore claimed only when nothing in it has been modified for ``settle_seconds``; a folder
built elsewhere and renamed in keeps its files' times, so it is claimed at once.
"""

from __future__ import annotations

__all__ = ["Arrival", "find_arrivals", "newest_change"]

import os
from dataclasses import dataclass
from pathlib import Path


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


def newest_change(path: Path) -> float:
    """The latest modification time of ``path`` and, for a folder, of everything in it (links not followed)."""
    try:
        newest = path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if path.is_dir() and not path.is_symlink():
        for directory, subdirs, files in os.walk(path, followlinks=False):
            for name in (*subdirs, *files):
                try:
                    newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest
