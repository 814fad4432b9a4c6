"""Files that survive a crash or a power cut: whole-or-nothing writes, renames that never replace, directory
flushes, and a lock file that says who holds it.

Why one module: the outbox (its folder and journal area), the minting of certificates and keys, and the receiver's
inbox all write files that a reader must never see half-written and moves that must survive a power cut. POSIX
makes a ``rename(2)`` atomic but durable only once the directory holding the new entry is flushed (``fsync`` of
the directory, POSIX.1-2017 "fsync"; a file's own ``fsync`` does not cover its name), so every helper here says
which of the two it gives.

- :func:`write_synced`: a new file written and flushed in place (no rename): for files inside a directory that
  is itself renamed into place afterwards;
- :func:`write_atomic`: a temporary sibling (hidden, :data:`TEMP_PREFIX`), written, optionally flushed, renamed
  over the target, and the directory flushed: a reader sees the old file or the new one, never a part;
- :func:`rename_durably`: ``rename`` that refuses an existing target (``rename(2)`` silently replaces an empty
  directory or any file) and flushes both parent directories;
- :func:`fsync_dir` and :func:`remove_temporaries` (what a crash left of :func:`write_atomic`);
- :class:`LockFile`: ``flock(2)`` on a file that also holds the holder's host, pid and a heartbeat time, so that
  others can say who holds it without touching the lock (probing with a lock of one's own would make a holder
  starting at that instant fail), and a host that cannot see another host's ``flock`` on a network share can
  still see its heartbeat.
"""

from __future__ import annotations

__all__ = [
    "TEMP_PREFIX",
    "LockFile",
    "LockOwner",
    "fsync_dir",
    "remove_temporaries",
    "rename_durably",
    "write_atomic",
    "write_synced",
]

import errno
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Our temporary files: hidden (never taken for a document or a certificate) and recognisable, so that what a
#: crash left is removed (:func:`remove_temporaries`).
TEMP_PREFIX = ".xdr-edge-tmp-"


def fsync_dir(path: Path | str) -> None:
    """Flush a directory's entries (a rename into it, a new file in it) to disk.

    Some network filesystems refuse ``fsync`` on a directory (EINVAL, ENOTSUP): they commit metadata operations
    on the server as they happen, so there is nothing more to do there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_synced(path: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    """Create ``path`` (refusing an existing one), write ``data`` and flush it to disk. The file is created with
    mode 0600 and given ``mode`` before the first byte, so a key is never readable by others even for an instant;
    the directory entry is not flushed (see :func:`fsync_dir`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes, *, mode: int = 0o644, flush_directory: bool = True) -> None:
    """Write ``path`` whole or not at all: a hidden temporary sibling, written and flushed (:func:`write_synced`),
    renamed over ``path``, then the directory flushed (``flush_directory=False`` leaves that to a caller that
    writes several files and flushes once). A reader sees the old file or the new one, never a part of either."""
    target = Path(path)
    tmp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        write_synced(tmp, data, mode=mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if flush_directory:
        fsync_dir(target.parent)


def rename_durably(source: Path | str, target: Path | str) -> None:
    """Rename ``source`` to ``target``, refusing to replace anything, and flush both parent directories.

    ``rename(2)`` silently replaces an empty directory (and any file) at ``target``; we never mean to, so an
    existing target is :class:`FileExistsError` rather than something lost."""
    source, target = Path(source), Path(target)
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    os.rename(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


def remove_temporaries(directory: Path | str) -> int:
    """Remove the temporary files :func:`write_atomic` left in ``directory`` when a crash interrupted it;
    returns how many."""
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


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or last held) a :class:`LockFile`: host name, process id, and the time of its last heartbeat
    (seconds since the epoch, by the holder's clock)."""

    host: str
    pid: int
    heartbeat_at: float

    @property
    def this_host(self) -> bool:
        return self.host == socket.gethostname()

    def process_alive(self) -> bool:
        """On this host: whether its process still exists. Another host's process cannot be seen: True."""
        if not self.this_host:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, owned by another user
        return True

    def to_bytes(self) -> bytes:
        return (
            json.dumps({"host": self.host, "pid": self.pid, "heartbeat_at": self.heartbeat_at}) + "\n"
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LockOwner | None:
        """The owner written in a lock file; None for an empty file or anything else (a half-written file, the
        bare pid an older version wrote)."""
        try:
            data = json.loads(raw.decode("utf-8"))
            return cls(str(data["host"]), int(data["pid"]), float(data["heartbeat_at"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None


class LockFile:
    """An exclusive ``flock(2)`` on ``path``, whose content says who holds it (:class:`LockOwner`).

    The kernel drops a ``flock`` when its process dies, however it dies, so a killed holder never leaves the lock
    held on its own host. What the file says is for others: :meth:`owner` reads it without locking, and
    :meth:`beat` renews the heartbeat, so a reader on another host (where the ``flock`` may not be visible: it
    depends on the network filesystem and its mount options) can tell a live holder from a dead one by its age.
    Not thread-safe: one owner thread (a heartbeat thread may call :meth:`beat`).
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it. Writes nothing yet: the caller
        may look at the previous :meth:`owner` first, then call :meth:`beat`."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def beat(self) -> None:
        """Write this process as the holder, with the current time as its heartbeat."""
        if self._fd is None:
            raise RuntimeError("beat() on a lock not held")
        owner = LockOwner(socket.gethostname(), os.getpid(), self._clock())
        data = owner.to_bytes()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def release(self, *, clear: bool = True) -> None:
        """Drop the lock; with ``clear`` (what a holder does) empty the file first, so nobody is named in it.
        ``clear=False`` is for a process that took the ``flock`` but found the file naming a live holder it
        cannot see (another host): the file stays theirs."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if clear:
                os.ftruncate(fd, 0)
        except OSError:
            pass  # the lock is dropped below all the same; a stale owner has an old heartbeat
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def owner(self) -> LockOwner | None:
        """What the file says about its holder (None when empty, absent or unreadable); takes no lock."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return LockOwner.from_bytes(raw[:4096])
