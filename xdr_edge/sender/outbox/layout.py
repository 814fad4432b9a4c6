"""The outbox folder, and the file operations that make its moves survive a crash or a power cut.

Layout of an outbox ``DIR``::

    DIR/
      incoming/                 drops arrive here (names starting with "." are ignored: work in progress)
        <name>/                 a folder drop: documents and message.toml or message.json
        <practice id>/<file>    a single-file drop, for a practice with outbox defaults
      sent/<name>/              delivered: the original files, result.json, response.mime
      failed/<name>/            not delivered: the original files, result.json, error.txt, response.mime
      .state/
        journal.db              SQLite (WAL): every drop and every change of its state
        runner.lock             held (flock) by the one running ``xdr-edge outbox run``
        claimed/<drop id>/      drops taken out of incoming/ and being worked on

Every move is a ``rename`` inside ``DIR``, so it is atomic (POSIX ``rename(2)``): a drop is at one place or the
other, never half-moved. A rename is durable only once the directories on both sides are flushed, so each one
here is followed by ``fsync`` of both parent directories, and each file we write is written to a temporary name,
flushed, renamed into place and its directory flushed. Claimed drops live under ``DIR/.state`` so that claiming is
a rename on the same filesystem as ``incoming/`` (a network share included).
"""

from __future__ import annotations

__all__ = [
    "MANIFEST_NAMES",
    "OUTPUT_NAMES",
    "TEMP_PREFIX",
    "OutboxLayout",
    "RunnerLock",
    "fsync_dir",
    "remove_temporaries",
    "rename_durably",
    "set_aside",
    "write_durably",
]

import errno
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.protocol.errors import ConfigurationError

log = logging.getLogger("xdr_edge.sender.outbox")

#: The manifest of a folder drop, in TOML or JSON.
MANIFEST_NAMES = ("message.toml", "message.json")
#: What the outbox writes into a finished drop. A drop's own file of the same name is set aside first
#: (``result.json`` becomes ``result.previous.json``), so nothing a practice system wrote is overwritten.
OUTPUT_NAMES = ("result.json", "error.txt", "response.mime")
#: Our temporary files: hidden (never a document) and recognisable (removed when found after a crash).
TEMP_PREFIX = ".xdr-edge-tmp-"


@dataclass(frozen=True)
class OutboxLayout:
    """The paths of one outbox folder."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def sent(self) -> Path:
        return self.root / "sent"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def state(self) -> Path:
        return self.root / ".state"

    @property
    def claimed(self) -> Path:
        return self.state / "claimed"

    @property
    def journal_path(self) -> Path:
        return self.state / "journal.db"

    @property
    def lock_path(self) -> Path:
        return self.state / "runner.lock"

    def claimed_dir(self, drop_id: str) -> Path:
        return self.claimed / drop_id

    def exists(self) -> bool:
        return self.incoming.is_dir() and self.state.is_dir()

    def create(self, practice_folders: tuple[str, ...] = ()) -> None:
        """Make the folders that are missing (and ``incoming/<practice id>/`` for practices taking single
        files); durable, so a drop claimed right after is not claimed into a folder a crash forgets."""
        made = False
        for path in (
            self.root,
            self.incoming,
            self.sent,
            self.failed,
            self.state,
            self.claimed,
            *(self.incoming / p for p in practice_folders),
        ):
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                made = True
        if made:
            for path in (self.root, self.incoming, self.state):
                fsync_dir(path)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk.

    Some network filesystems refuse ``fsync`` on a directory (EINVAL): they commit metadata operations on the
    server as they happen, so there is nothing more to do there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, *, flush_directory: bool = True) -> None:
    """Write ``path`` whole or not at all: temporary file, fsync, rename over ``path``, fsync the directory (left
    to the caller with ``flush_directory=False``, to flush once after several files)."""
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        with tmp.open("xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if flush_directory:
        fsync_dir(path.parent)


def rename_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, refusing to replace anything, and flush both parent directories.

    ``rename(2)`` silently replaces an empty directory (and any file) at ``target``; the outbox never means to,
    so an existing target is an error (FileExistsError) rather than a lost drop."""
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def set_aside(directory: Path, name: str) -> str | None:
    """Rename the drop's own ``name`` (one of :data:`OUTPUT_NAMES`) to a free ``<stem>.previous[-n]<suffix>``
    before the outbox writes its own; returns the new name, or None when there was nothing to set aside."""
    path = directory / name
    if not (path.exists() or path.is_symlink()):
        return None
    stem, dot, suffix = name.rpartition(".")
    for number in range(1, 1000):
        tag = "previous" if number == 1 else f"previous-{number}"
        candidate = f"{stem}.{tag}{dot}{suffix}"
        if not (directory / candidate).exists():
            os.rename(path, directory / candidate)
            return candidate
    raise FileExistsError(errno.EEXIST, "no free name to set the drop's own file aside", str(path))


def remove_temporaries(directory: Path) -> int:
    """Remove our temporary files left in ``directory`` by a crash; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


class RunnerLock:
    """The one-runner-per-outbox lock: ``flock`` on ``.state/runner.lock``, holding the runner's pid.

    Two runners would each recover the other's drops in flight as crashed ones. The kernel drops the lock when its
    process dies, however it dies, so a killed runner never leaves the outbox locked."""

    def __init__(self, layout: OutboxLayout) -> None:
        self.path = layout.lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            who = f" (pid {holder})" if holder else ""
            raise ConfigurationError(
                f"{self.path.parent.parent} is being run by another `xdr-edge outbox run`{who}; "
                "one runner per outbox folder",
                code="outbox-busy",
                location=str(self.path),
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunnerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def holder(self) -> int | None:
        """The pid of the running runner (0 when it cannot be read), or None when no runner holds the lock."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
