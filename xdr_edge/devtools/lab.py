"""An edge lab: a complete, self-contained HISP edge on loopback (PKI, certificate registry with bindings,
inbox, mutual-TLS receiver) plus the sending side's practices. Used by ``xdr-edge demo``, the conformance
suite's self-tests and the project's own end-to-end tests, so all three exercise the same real parts.

Everything lives under one directory; keys are generated afresh for every lab and never leave it.
"""

from __future__ import annotations

__all__ = ["Edge", "Lab", "LabSite", "build_edge", "prepare_lab", "start_lab"]

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xdr_edge.devtools.pki import DEFAULT_DEMO_PRACTICES, DemoPki, write_demo_pki
from xdr_edge.practice import Binding, ClientCredential, Practice
from xdr_edge.protocol.errors import ConfigurationError
from xdr_edge.receiver.app import PeerIdentitySource, ReceiverConfig, XdrEdgeApp
from xdr_edge.receiver.server import ServerConfig, XdrServer
from xdr_edge.receiver.store import Inbox, StoredSubmission
from xdr_edge.registry import Registry, SqliteDatabase, SubmissionIndex, open_registry


def _actor() -> str:
    try:
        return f"{getpass.getuser()} (xdr-edge lab)"
    except (KeyError, OSError):
        return "xdr-edge lab"


@dataclass
class Lab:
    """A running lab. ``practices`` carry client credentials (the sending side's view)."""

    directory: Path
    pki: DemoPki
    registry: Registry
    inbox: Inbox
    server: XdrServer
    practices: dict[str, Practice]
    app: XdrEdgeApp = field(repr=False)

    @property
    def endpoint(self) -> str:
        return self.server.url

    @property
    def ca_bundle(self) -> Path:
        return self.pki.ca_cert

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _refuse_existing_lab(directory: Path) -> None:
    """A lab is made afresh: over an existing one, new keys would replace the certificates its registry pins and
    the registry set-up would then fail on the practices already there, leaving both inconsistent."""
    found = [name for name in ("pki", "registry.db", "inbox") if (directory / name).exists()]
    if found:
        raise ConfigurationError(
            f"{directory} already holds a lab ({', '.join(found)}); start a lab in a new or empty directory",
            location=str(directory),
        )


@dataclass(frozen=True)
class LabSite:
    """What a lab is made of before anything runs: the PKI, the registry with its practices, the sending side's
    practices (with client credentials). Benchmarks start their own receivers (``xdr-edge serve``) on it."""

    directory: Path
    pki: DemoPki
    database: SqliteDatabase
    registry: Registry
    practices: dict[str, Practice]

    @property
    def registry_path(self) -> Path:
        return self.database.path


def prepare_lab(
    directory: Path, *, practices: Sequence[tuple[str, Sequence[str]]] = DEFAULT_DEMO_PRACTICES
) -> LabSite:
    """Make the PKI and the registry (trust anchor, practices, enrolled certificates, bound addresses) under
    ``directory``, which must not hold a lab already."""
    directory = Path(directory)
    _refuse_existing_lab(directory)
    pki = write_demo_pki(directory / "pki", practices=practices)
    database = SqliteDatabase(directory / "registry.db")
    registry = open_registry(database)
    actor = _actor()
    registry.init(actor=actor)
    registry.add_trust_anchor(pki.ca_cert.read_bytes(), actor=actor)
    sending: dict[str, Practice] = {}
    for practice_id, addresses in practices:
        demo = pki.practices[practice_id]
        registry.add_practice(practice_id, f"Demo {practice_id}", actor=actor)
        registry.enroll(practice_id, demo.cert.read_bytes(), actor=actor)
        for address in addresses:
            registry.bind(practice_id, address, actor=actor)
        sending[practice_id] = Practice(
            id=practice_id,
            name=f"Demo {practice_id}",
            bindings=tuple(Binding.parse(a) for a in addresses),
            credential=ClientCredential(cert=demo.cert, key=demo.key),
        )
    return LabSite(directory, pki, database, registry, sending)


@dataclass
class Edge:
    """A HISP edge's parts without a server: PKI, registry (anchor, practices, enrolments, bindings), inbox and
    the receiver configuration. What :func:`start_lab` serves, and what a caller runs the WSGI app over
    in-process (the fuzz harness calls it with a client certificate in the environ, no socket)."""

    directory: Path
    pki: DemoPki
    registry: Registry
    inbox: Inbox
    practices: dict[str, Practice]
    config: ReceiverConfig


def build_edge(
    directory: Path,
    *,
    practices: Sequence[tuple[str, Sequence[str]]] = DEFAULT_DEMO_PRACTICES,
    hook: Callable[[StoredSubmission], None] | None = None,
) -> Edge:
    """Make the PKI, the registry (trust anchor, practices, enrolled certificates, bound addresses) and the
    inbox under ``directory``, and the receiver configuration that uses them (identity from TLS)."""
    site = prepare_lab(directory, practices=practices)
    inbox = Inbox(site.directory / "inbox", SubmissionIndex(site.database), receiver="lab")
    config = ReceiverConfig(
        registry=site.registry,
        inbox=inbox,
        identity_source=PeerIdentitySource.TLS,
        hook=hook,
        health_checks=(("registry", site.registry.ping),),
    )
    return Edge(site.directory, site.pki, site.registry, inbox, site.practices, config)


def start_lab(
    directory: Path,
    *,
    practices: Sequence[tuple[str, Sequence[str]]] = DEFAULT_DEMO_PRACTICES,
    threads: int = 8,
    hook: Callable[[StoredSubmission], None] | None = None,
    app_factory: Callable[[ReceiverConfig], object] | None = None,
) -> Lab:
    """Build the edge (:func:`build_edge`) under ``directory`` and start the receiver on a free loopback port
    with mutual TLS.

    ``app_factory`` replaces the WSGI app (the conformance suite's tests use it to run deliberately broken
    endpoints on the same real server)."""
    edge = build_edge(directory, practices=practices, hook=hook)
    config, pki = edge.config, edge.pki
    app = app_factory(config) if app_factory is not None else XdrEdgeApp(config)
    server = XdrServer(
        app,
        ServerConfig(
            host="127.0.0.1",
            port=0,
            cert=pki.server_cert,
            key=pki.server_key,
            client_ca=pki.ca_cert,
            threads=threads,
            socket_timeout=30,
        ),
    ).start()
    return Lab(
        directory=edge.directory,
        pki=pki,
        registry=edge.registry,
        inbox=edge.inbox,
        server=server,
        practices=edge.practices,
        app=app,  # type: ignore[arg-type]
    )
