"""The outbox folder, where its journal lives, and the one-runner lock.

Layout of an outbox ``DIR``::

    DIR/
      incoming/                 drops arrive here (names starting with "." are ignored: work in progress)
        <name>/                 a folder drop: documents and message.toml or message.json
        <practice id>/<file>    a single-file drop, for a practice with outbox defaults
      sent/<name>/              delivered: the original files, result.json, response.mime
      failed/<name>/            not delivered: the original files, result.json, error.txt, response.mime
      .state/
        journal.db              SQLite (WAL): every drop and every change of its state (or in ``state_dir``)
        journal-location.json   where the journal is, when a ``state_dir`` on a local disk holds it
        runner.lock             held by the one running ``xdr-edge outbox run``: flock, host, pid, heartbeat
        claimed/<drop id>/      drops taken out of incoming/ and being worked on

Every move is a ``rename`` inside ``DIR`` (POSIX ``rename(2)``: atomic, a drop is at one place or the other),
made durable by flushing both directories (:mod:`xdr_edge.durable`). Claimed drops live under ``DIR/.state`` so
that claiming is a rename on the same filesystem as ``incoming/`` (a network share included); a ``rename`` across
filesystems fails (EXDEV), so a run refuses to start when ``incoming/`` (or a practice folder in it) and
``.state/`` are on different filesystems.

The journal may live elsewhere (``state_dir``, a local disk) when ``DIR`` is a network share: SQLite in WAL mode
needs every process that opens it on one host and locks a network filesystem may not honour. The runner lock stays
in ``DIR``: it is what a runner on another host sees.
"""

from __future__ import annotations

__all__ = [
    "MANIFEST_NAMES",
    "OUTPUT_NAMES",
    "OutboxLayout",
    "RunnerLock",
    "filesystem_type",
    "set_aside",
]

import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xdr_edge.durable import LockFile, LockOwner, fsync_dir, write_atomic
from xdr_edge.protocol.errors import ConfigurationError

log = logging.getLogger("xdr_edge.sender.outbox")

#: The manifest of a folder drop, in TOML or JSON.
MANIFEST_NAMES = ("message.toml", "message.json")
#: What the outbox writes into a finished drop. A drop's own file of the same name is set aside first
#: (``result.json`` becomes ``result.previous.json``), so nothing a practice system wrote is overwritten.
OUTPUT_NAMES = ("result.json", "error.txt", "response.mime")
#: How often a runner renews its heartbeat in the lock file, and after how long without one another host may
#: take the outbox over (a runner that died without releasing: power cut, network partition).
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
#: Filesystems on which SQLite's WAL (shared memory between the processes of one host) cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "fuse.sshfs", "davfs", "ncpfs"}
)


@dataclass(frozen=True)
class OutboxLayout:
    """The paths of one outbox folder; ``state_dir`` holds the journal when it is not ``DIR/.state``."""

    root: Path
    state_dir: Path | None = None

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
    def journal_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.state

    @property
    def journal_path(self) -> Path:
        return self.journal_dir / "journal.db"

    @property
    def location_path(self) -> Path:
        """Where a journal kept in a ``state_dir`` is, for ``outbox status`` and ``outbox retry``."""
        return self.state / "journal-location.json"

    @property
    def lock_path(self) -> Path:
        return self.state / "runner.lock"

    def claimed_dir(self, drop_id: str) -> Path:
        return self.claimed / drop_id

    def exists(self) -> bool:
        return self.incoming.is_dir() and self.state.is_dir()

    def create(self, practice_folders: tuple[str, ...] = ()) -> None:
        """Make the folders that are missing (and ``incoming/<practice id>/`` for practices taking single
        files); durable, so a drop claimed right after is not claimed into a folder a crash forgets. Refuses
        (:class:`ConfigurationError`) when ``incoming/`` or a practice folder is on another filesystem than the
        working area: every claim would fail (EXDEV) and the drops would lie there unexplained."""
        made = False
        for path in (
            self.root,
            self.incoming,
            self.sent,
            self.failed,
            self.state,
            self.claimed,
            *((self.state_dir,) if self.state_dir is not None else ()),
            *(self.incoming / p for p in practice_folders),
        ):
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                made = True
        if made:
            for path in (self.root, self.incoming, self.state):
                fsync_dir(path)
        self.check_one_filesystem(practice_folders)
        if self.state_dir is not None:
            where = {"host": socket.gethostname(), "journal": str(self.journal_path)}
            if self.journal_location() != where:
                write_atomic(self.location_path, (json.dumps(where) + "\n").encode())
        elif self.location_path.exists():
            self.location_path.unlink()

    def check_one_filesystem(self, practice_folders: tuple[str, ...] = ()) -> None:
        device = self.claimed.stat().st_dev
        for path in (self.incoming, *(self.incoming / p for p in practice_folders)):
            if path.is_dir() and path.stat().st_dev != device:
                raise ConfigurationError(
                    f"{path} is on another filesystem than the outbox's working area {self.claimed}: drops are "
                    "claimed by renaming them, which cannot cross filesystems; keep incoming/ and .state/ in the "
                    "same folder of one filesystem (a symbolic link or a mount inside the outbox breaks this)",
                    code="outbox-filesystems",
                    location=str(path),
                )

    def journal_location(self) -> dict[str, str] | None:
        """What ``.state/journal-location.json`` says (host and path of a journal kept in a ``state_dir``)."""
        try:
            data = json.loads(self.location_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if (
            isinstance(data, dict)
            and isinstance(data.get("host"), str)
            and isinstance(data.get("journal"), str)
        ):
            return {"host": data["host"], "journal": data["journal"]}
        return None


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (``ext4``, ``nfs4``, ``cifs`` ...) as the kernel lists its
    mounts (Linux ``/proc/self/mounts``); None where that cannot be read."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        target = os.path.realpath(path)
    except OSError:
        return None
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


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


class RunnerLock:
    """The one-runner-per-outbox lock, ``.state/runner.lock`` in the outbox folder (:class:`LockFile`).

    Two runners would each recover the other's drops in flight as crashed ones. On one host the ``flock`` decides
    (the kernel drops it when its process dies, however it dies). Across hosts sharing the folder a ``flock`` is
    only as good as the network filesystem and its mount options make it, so the runner also writes its host,
    pid and a heartbeat every :data:`HEARTBEAT_SECONDS`: a runner from another host whose heartbeat is fresher
    than :data:`STALE_AFTER_SECONDS` is refused even when the ``flock`` was granted, and a runner that finds
    another one's heartbeat in the file while it holds the outbox calls ``on_lost`` (the engine stops)."""

    def __init__(
        self,
        layout: OutboxLayout,
        *,
        clock: Callable[[], float] = time.time,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.path = layout.lock_path
        self._outbox = layout.root
        self._clock = clock
        self._on_lost = on_lost
        self._file = LockFile(self.path, clock=clock)
        self._me: tuple[str, int] = (socket.gethostname(), os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        if not self._file.try_acquire():
            raise self._busy(self._file.owner())
        previous = self._file.owner()
        if previous is not None and not previous.this_host and self._fresh(previous):
            self._file.release(clear=False)  # the file is the other host's: leave it as it is
            raise self._busy(previous)
        self._file.beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="xdr-edge-outbox-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._file.release()

    def __enter__(self) -> RunnerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _fresh(self, owner: LockOwner) -> bool:
        return self._clock() - owner.heartbeat_at < STALE_AFTER_SECONDS

    def _busy(self, owner: LockOwner | None) -> ConfigurationError:
        if owner is None:
            who = ""
        elif owner.this_host:
            who = f" (pid {owner.pid})"
        else:
            age = max(0.0, self._clock() - owner.heartbeat_at)
            who = f" (host {owner.host}, pid {owner.pid}, heartbeat {age:.0f} s ago)"
        return ConfigurationError(
            f"{self._outbox} is being run by another `xdr-edge outbox run`{who}; one runner per outbox folder",
            code="outbox-busy",
            location=str(self.path),
        )

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                owner = self._file.owner()
                if owner is not None and (owner.host, owner.pid) != self._me and self._fresh(owner):
                    message = (
                        f"another `xdr-edge outbox run` (host {owner.host}, pid {owner.pid}) wrote itself into "
                        f"{self.path} while this run held it: the network filesystem does not enforce the lock"
                    )
                    log.error("%s; this run stops", message)
                    if self._on_lost is not None:
                        self._on_lost(message)
                    return
                self._file.beat()
            except OSError as exc:
                log.warning("could not renew the outbox heartbeat in %s: %s", self.path, exc.strerror or exc)

    @staticmethod
    def holder(layout: OutboxLayout, *, clock: Callable[[], float] = time.time) -> LockOwner | None:
        """The runner holding the outbox now, from what it wrote in the lock file (no lock is taken, so a runner
        starting at this instant is never disturbed); None when none does: the file is empty, the heartbeat is
        stale, or (on this host) its process is gone."""
        owner = LockFile(layout.lock_path).owner()
        if owner is None or clock() - owner.heartbeat_at >= STALE_AFTER_SECONDS:
            return None
        return owner if owner.process_alive() else None
