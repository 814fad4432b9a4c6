"""Throwaway PostgreSQL and nginx servers for the cluster tests: real binaries, temporary directories, loopback.

Each context manager starts the server as a child process, waits until it is ready by polling (never a blind
sleep), and stops it when the block ends (politely, then SIGKILL to its whole process group). Children get
``PR_SET_PDEATHSIG`` on Linux, so a killed test run leaves no server behind.

Root (CI) and ordinary users both work. PostgreSQL refuses to run as root: with euid 0 it runs as the
``postgres`` system user (``nobody`` if absent) through ``subprocess``'s ``user=``/``group=``, so the Popen pid
is the postmaster itself. nginx's master stays root (it reads the key and binds) and its workers run as
``nobody``. pytest's base temp directory is 0700 as root, so what those users must reach goes to a
``/tmp/xdr-*`` directory, removed afterwards.

A missing binary raises :class:`MissingBinaryError` naming the Debian package; the fixtures in
``conftest.py`` turn it into a skip. Lookup: ``$XDR_PG_BINDIR`` (holding ``initdb`` and ``postgres``), else
``initdb`` on ``$PATH``, else the newest ``/usr/lib/postgresql/*/bin``; ``$XDR_NGINX_BIN``, else ``nginx``
on ``$PATH``, else ``/usr/sbin/nginx``.

nginx runs the configuration the repository ships, ``deploy/nginx/xdr-edge.conf``, with only its lines
marked EDIT changed (:func:`render_shipped_nginx_conf`), inside a minimal main configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
SHIPPED_NGINX_CONF = REPO / "deploy" / "nginx" / "xdr-edge.conf"


class MissingBinaryError(FileNotFoundError):
    """A server binary a test needs is not installed."""

    def __init__(self, binary: str, hint: str) -> None:
        super().__init__(f"{binary} is not installed; {hint}")
        self.binary = binary


class ServerStartError(RuntimeError):
    """The server did not start (the message has the tail of its log)."""


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _pdeathsig(sig: int) -> Callable[[], None]:
    """A preexec_fn: the kernel sends ``sig`` to the child when the thread that started it dies (subprocess
    runs it after switching uid, so the setting survives the switch)."""

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str
    group: str


def _unprivileged(candidates: Sequence[str]) -> _RunAs | None:
    """When running as root, the account a server drops to; None for an ordinary user."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(entry.pw_uid, entry.pw_gid, name, grp.getgrgid(entry.pw_gid).gr_name)
    raise ServerStartError(f"running as root, but none of the users {list(candidates)} exists")


def _reachable(path: Path, who: _RunAs) -> bool:
    """Whether ``who`` may traverse ``path`` and every parent (mode bits: enough for pytest's 0700 base)."""
    groups = {who.gid, *os.getgrouplist(who.name, who.gid)}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == who.uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _short_tmp() -> str:
    """A temp directory short enough for a unix socket path (at most 107 bytes)."""
    directory = tempfile.gettempdir()
    return directory if len(directory) <= 60 else "/tmp"


def _work_dir(parent: Path, prefix: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent.resolve()))
    work.chmod(0o755)
    return work


def _owned_dir(stack: contextlib.ExitStack, work: Path, name: str, owner: _RunAs | None) -> Path:
    """``work/name``, or a ``/tmp`` directory removed on exit when ``owner`` cannot reach ``work``."""
    if owner is None or _reachable(work, owner):
        directory = work / name
        directory.mkdir(mode=0o700)
    else:
        directory = Path(tempfile.mkdtemp(prefix=f"xdr-{name}-", dir=_short_tmp()))
        stack.callback(shutil.rmtree, directory, True)
    if owner is not None:
        os.chown(directory, owner.uid, owner.gid)
    return directory


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (a server that loses the race is restarted on another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """``sig``, a wait, then SIGKILL to the process group (start_new_session=True) for whatever outlived it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, what: str, logs: Sequence[Path]
) -> None:
    """Poll ``ready`` (5 ms doubling to 100 ms) until true; fail at once, with the logs, if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        status = proc.poll()
        if status is not None:
            tails = "\n".join(f"--- {p}:\n{_tail(p)}" for p in logs)
            raise ServerStartError(f"{what} exited with status {status} while starting\n{tails}")
        if ready():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}:\n{_tail(p)}" for p in logs)
            raise ServerStartError(f"{what} not ready after {timeout:.0f} s\n{tails}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# ----------------------------------------------------------------------------------------------------------
# PostgreSQL

#: Durability off (a crash loses only the throwaway cluster), small and quiet.
PG_TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "archive_mode": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "log_min_messages": "warning",
    "logging_collector": "off",
}
_PG_HINT = "apt-get install postgresql-15 (or set XDR_PG_BINDIR to the folder holding initdb and postgres)"


def find_postgres_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; :class:`MissingBinaryError` when there is none."""
    configured = os.environ.get("XDR_PG_BINDIR")
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = []
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)

        def version(folder: str) -> tuple[int, ...]:
            return tuple(int(x) for x in Path(folder).parent.name.split(".") if x.isdigit())

        candidates += [
            Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
        ]
        candidates.append(Path("/usr/local/pgsql/bin"))
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise MissingBinaryError("PostgreSQL (initdb)", _PG_HINT)


def _pg_env() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # PGDATA, PGHOST ...
    environment.pop("LANG", None)
    environment["LC_ALL"] = "C.UTF-8"
    return environment


def _pg_ready(pidfile: Path) -> bool:
    # line 8 of postmaster.pid is the postmaster's status, "ready" once it accepts connections (pg_ctl -w)
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


class PostgresServer:
    """A running throwaway PostgreSQL cluster (:func:`running_postgres`): its libpq URI, and a restart."""

    def __init__(
        self, arguments: Sequence[str], popen: Mapping[str, object], pidfile: Path, log: Path, timeout: float
    ) -> None:
        self._arguments = list(arguments)
        self._popen = dict(popen)
        self._pidfile = pidfile
        self._log = log
        self._timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.dsn = ""

    def start(self) -> None:
        self.process = subprocess.Popen(self._arguments, **self._popen)  # type: ignore[call-overload]
        wait_until(lambda: _pg_ready(self._pidfile), self.process, self._timeout, "postgres", [self._log])

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT, 10.0)  # SIGINT: "fast" shutdown
            self.process = None

    def restart(self) -> None:
        """Stop (every client connection is closed by the server) and start again on the same socket: what a
        client sees of a server restart or a fail-over to a standby at the same address."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_postgres(
    tmp_dir: Path, *, settings: Mapping[str, str] | None = None, startup_timeout: float = 60.0
) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster listening on a private unix socket only (:class:`PostgresServer`).

    ``settings`` override :data:`PG_TEST_SETTINGS` (a benchmark turns durability back on). Authentication is
    ``trust`` for the superuser ``postgres``; the log is ``tmp_dir/postgres-*/postgres.log``.
    """
    bindir = find_postgres_bindir()
    run_as = _unprivileged(("postgres", "nobody"))
    uid = run_as.uid if run_as is not None else None
    gid = run_as.gid if run_as is not None else None
    groups: list[int] | None = [] if run_as is not None else None
    environment = _pg_env()
    work = _work_dir(Path(tmp_dir), "postgres-")
    log = work / "postgres.log"
    with contextlib.ExitStack() as stack:
        base = _owned_dir(stack, work, "pgdata", run_as)
        sockets = Path(tempfile.mkdtemp(prefix="xdr-pgsock-", dir=_short_tmp()))
        stack.callback(shutil.rmtree, sockets, True)
        if run_as is not None:
            os.chown(sockets, run_as.uid, run_as.gid)
        data = base / "data"
        logfile: IO[bytes] = stack.enter_context(log.open("ab"))  # opened by us: the server needs no access
        try:
            subprocess.run(
                [
                    *(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"),
                    *("-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=str(base),
                check=True,
                timeout=startup_timeout,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise ServerStartError(f"initdb failed ({exc}); {log}:\n{_tail(log)}") from exc
        server_settings = {
            **PG_TEST_SETTINGS,
            **(settings or {}),
            "unix_socket_directories": str(sockets),
            "listen_addresses": "",
        }
        arguments = [str(bindir / "postgres"), "-D", str(data)]
        for key, value in server_settings.items():
            arguments += ["-c", f"{key}={value}"]
        popen = {
            "stdin": subprocess.DEVNULL,
            "stdout": logfile,
            "stderr": subprocess.STDOUT,
            "env": environment,
            "cwd": str(base),
            "start_new_session": True,
            "preexec_fn": _pdeathsig(signal.SIGQUIT),
            "user": uid,
            "group": gid,
            "extra_groups": groups,
        }
        server = PostgresServer(arguments, popen, data / "postmaster.pid", log, startup_timeout)
        stack.callback(server.stop)
        server.start()
        server.dsn = f"postgresql://postgres@/postgres?host={sockets}&port=5432"
        yield server


@contextlib.contextmanager
def postgres_server(
    tmp_dir: Path, *, settings: Mapping[str, str] | None = None, startup_timeout: float = 60.0
) -> Iterator[str]:
    """:func:`running_postgres`, yielding only its libpq URI."""
    with running_postgres(tmp_dir, settings=settings, startup_timeout=startup_timeout) as server:
        yield server.dsn


# ----------------------------------------------------------------------------------------------------------
# nginx

_NGINX_HINT = "apt-get install --no-install-recommends nginx (or set XDR_NGINX_BIN)"


def find_nginx() -> Path:
    configured = os.environ.get("XDR_NGINX_BIN")
    for candidate in [configured] if configured else [shutil.which("nginx"), "/usr/sbin/nginx"]:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise MissingBinaryError("nginx", _NGINX_HINT)


def render_shipped_nginx_conf(
    *, port: int, upstreams: Sequence[tuple[str, int]], ca_file: Path, cert_file: Path, key_file: Path
) -> str:
    """``deploy/nginx/xdr-edge.conf`` with its EDIT lines pointed at the test's servers and files.

    Each replacement must match exactly once, so a change to the shipped file that the tests would silently
    stop covering fails here instead.
    """
    text = SHIPPED_NGINX_CONF.read_text()
    servers = "".join(f"    server {host}:{p} max_fails=1 fail_timeout=5s;\n" for host, p in upstreams)
    edits = [
        (r"(?:    server 127\.0\.0\.1:808\d [^\n]*\n)+", servers),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        (r"server_name hisp\.example\.org;", "server_name localhost;"),
        (r"ssl_certificate        /etc/xdr-edge/tls/server\.pem;", f"ssl_certificate {cert_file};"),
        (r"ssl_certificate_key    /etc/xdr-edge/tls/server\.key;", f"ssl_certificate_key {key_file};"),
        (r"ssl_client_certificate /etc/xdr-edge/tls/client-ca\.pem;", f"ssl_client_certificate {ca_file};"),
    ]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement.replace("\\", "\\\\"), text)
        if count != 1:
            raise AssertionError(f"{SHIPPED_NGINX_CONF}: {pattern!r} matched {count} times, expected once")
    return text


def _nginx_main_conf(*, site: Path, run: Path, logs: Path, worker: _RunAs | None) -> str:
    user = f"user {worker.name} {worker.group};" if worker is not None else ""
    temp = "\n".join(
        f"    {kind}_temp_path {run}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
worker_processes 1;
pid {run}/nginx.pid;
error_log {logs}/error.log info;
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    access_log {logs}/access.log;
{temp}
    include {site};
}}
"""


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def nginx_proxy(
    tmp_dir: Path,
    upstreams: Sequence[tuple[str, int]],
    *,
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    startup_timeout: float = 20.0,
) -> Iterator[int]:
    """nginx running the shipped configuration in front of ``upstreams``; yields its (mutual TLS) port.

    Files: ``tmp_dir/nginx-*/{nginx.conf,xdr-edge.conf,error.log,access.log,stderr.log}``.
    """
    nginx = find_nginx()
    worker = _unprivileged(("nobody",))
    work = _work_dir(Path(tmp_dir), "nginx-")
    early_log = work / "stderr.log"
    site = work / "xdr-edge.conf"
    main = work / "nginx.conf"
    with contextlib.ExitStack() as stack:
        run = _owned_dir(stack, work, "run", worker)
        pidfile = run / "nginx.pid"
        logfile: IO[bytes] = stack.enter_context(early_log.open("ab"))
        for attempt in range(1, 4):
            port = free_port()
            site.write_text(
                render_shipped_nginx_conf(
                    port=port, upstreams=upstreams, ca_file=ca_file, cert_file=cert_file, key_file=key_file
                )
            )
            main.write_text(_nginx_main_conf(site=site, run=run, logs=work, worker=worker))
            pidfile.unlink(missing_ok=True)
            proc = subprocess.Popen(
                [str(nginx), "-p", str(run), "-c", str(main), "-e", str(early_log), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pdeathsig(signal.SIGTERM),
            )
            stack.callback(stop_process, proc, signal.SIGTERM, 5.0)  # SIGTERM: fast shutdown

            def ready(pid: str = str(proc.pid), port: int = port) -> bool:
                # nginx writes its pid file after binding: a foreign process on the port cannot look ready
                try:
                    if pidfile.read_text().strip() != pid:
                        return False
                except OSError:
                    return False
                return _connectable(port)

            try:
                wait_until(ready, proc, startup_timeout, "nginx", [early_log, work / "error.log"])
                break
            except ServerStartError:
                lost_race = proc.poll() is not None and "in use" in _tail(early_log, 2000)
                if attempt == 3 or not lost_race:
                    raise
        yield port
