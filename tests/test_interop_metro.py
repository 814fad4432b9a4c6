"""Interoperability with Metro (JAX-WS RI 2.3, the SOAP stack under many Java health-IT products), both ways, over
mutual TLS on loopback with a PKI made by the test (see tests/metro.py for the peers and tests/interop/java for
their source):

* a Metro client -> our receiver (a lab: real cheroot server, registry, inbox): the request Metro frames its own
  way (start-info with the action, ``uuid:`` MessageIDs, FaultTo) is stored byte-exact, and Metro reads our
  Success, our Failure and our faults, each with the RelatesTo it needs to show our reason;
* ``xdr-edge send`` -> a Metro ``Provider`` endpoint, with PEM and with PKCS#12 credentials: Metro decodes our
  MTOM, the bytes it decodes have the hash and size we declared, and our client reads Metro's answer.

Skipped, with the reason, where javac, java or Debian's Metro jar is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lxml import etree

from tests import metro as metro_peers
from tests.conftest import unavailable
from tests.metro import ClientRun, Endpoint, Identity, Metro
from xdr_edge.cli import main
from xdr_edge.conformance.cases import CaseStatus
from xdr_edge.conformance.recording import RecordingEndpoint, SenderEndpointConfig
from xdr_edge.conformance.samples import sample_ccda, sample_pdf
from xdr_edge.conformance.sender import judge_recorded
from xdr_edge.devtools.lab import Lab, start_lab
from xdr_edge.durable import write_atomic
from xdr_edge.protocol import ns
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.metadata import write_submit_objects
from xdr_edge.protocol.model import MetadataLevel, Submission
from xdr_edge.protocol.mtom import MtomLimits
from xdr_edge.protocol.wire import build_request
from xdr_edge.receiver.app import XdrEdgeApp
from xdr_edge.receiver.store import StoredSubmission

A_FROM = "dr.smith@direct.practice-a.org"
B_FROM = "dr.jones@direct.practice-b.org"
TO = "records@direct.hospital.example"
SOAP_FAULT = f"{{{ns.SOAP}}}"
REFUSED_FRAMING_PATH = "/refuse-framing"
LIMIT = 256 * 1024  # the lab's request size limit (documents here are a few KB)


@pytest.fixture(scope="session")
def metro(tmp_path_factory: pytest.TempPathFactory) -> Metro:
    """The Metro peers, compiled once; without a JDK or Metro the tests skip (fail when CI requires them)."""
    why = metro_peers.missing()
    if why is not None:
        unavailable(f"Metro: {why}")
    return metro_peers.compile_peers(tmp_path_factory.mktemp("metro-classes"))


@dataclass
class Stored:
    """Submissions the lab's hook saw, by SubmissionSet uniqueId."""

    by_uid: dict[str, StoredSubmission] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, stored: StoredSubmission) -> None:
        with self.lock:
            self.by_uid[str(stored.summary["submission_set_unique_id"])] = stored


def _refusing_framing(app: XdrEdgeApp) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    """The lab's app, except that on one path the request's start-info is changed to SOAP 1.1's media type on
    its way in: a framing our reader refuses, sent by Metro, so that Metro's reading of that fault is tested."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == REFUSED_FRAMING_PATH:
            content_type = str(environ.get("CONTENT_TYPE", ""))
            environ["CONTENT_TYPE"] = content_type.replace(
                'start-info="application/soap+xml', 'start-info="text/xml'
            )
        return app(environ, start_response)

    return wrapped


@dataclass(frozen=True)
class Site:
    lab: Lab
    stored: Stored
    directory: Path
    documents: dict[Path, bytes]  # the files every request carries, and their bytes

    def identity(self, practice_id: str = "practice-a") -> Identity:
        demo = self.lab.pki.practices[practice_id]
        return Identity(demo.p12, demo.p12_password_file, self.lab.ca_bundle)

    def url(self, path: str = "/xdr") -> str:
        return f"https://localhost:{self.lab.server.port}{path}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("metro-site")
    stored = Stored()
    with start_lab(
        directory / "lab",
        threads=4,
        hook=stored,
        app_factory=lambda config: _refusing_framing(
            XdrEdgeApp(dataclasses.replace(config, limits=MtomLimits(max_total_bytes=LIMIT)))
        ),
    ) as lab:
        folder = directory / "documents"
        folder.mkdir()
        documents = {folder / "ccd.xml": sample_ccda(), folder / "referral.pdf": sample_pdf()}
        for path, data in documents.items():
            path.write_bytes(data)
        yield Site(lab, stored, directory, documents)


@dataclass(frozen=True)
class MetroRequest:
    """What the Metro client is given: our metadata, our Direct header blocks, the document files."""

    submission: Submission
    submit_objects: Path
    headers: tuple[Path, ...]
    documents: dict[str, Path]


def metro_request(
    site: Site, name: str, *, sender: str = A_FROM, extra_headers: Iterable[bytes] = ()
) -> MetroRequest:
    """Metadata and header blocks written by our own writers (so the receiver's rules are met), given to Metro
    as files: Metro builds the envelope, the addressing headers and the MTOM framing itself."""
    folder = site.directory / name
    folder.mkdir()
    files = list(site.documents)
    submission = compose(files, sender=sender, recipients=[TO], level=MetadataLevel.MINIMAL)
    submit_objects = folder / "submit-objects.xml"
    submit_objects.write_bytes(etree.tostring(write_submit_objects(submission)))
    envelope = etree.fromstring(build_request(submission, endpoint=site.url()).body.root)
    header = envelope.find(f"{{{ns.SOAP}}}Header")
    assert header is not None
    blocks = header.findall(f"{{{ns.DIRECT}}}*")  # the addressBlock and metadata-level, as we write them
    assert blocks
    headers: list[Path] = []
    for index, block in enumerate([*(etree.tostring(b) for b in blocks), *extra_headers]):
        path = folder / f"header-{index}.xml"
        path.write_bytes(block)
        headers.append(path)
    entries = {entry.entry_id: path for entry, path in zip(submission.document_entries, files, strict=True)}
    return MetroRequest(submission, submit_objects, tuple(headers), entries)


def send_with_metro(
    metro: Metro, site: Site, request: MetroRequest, *, path: str = "/xdr", **kwargs: Any
) -> ClientRun:
    return metro_peers.run_client(
        metro,
        url=site.url(path),
        identity=site.identity(),
        submit_objects=request.submit_objects,
        documents=request.documents,
        headers=request.headers,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------------------
# Metro client -> our receiver


def test_metro_request_is_stored_byte_exact_and_metro_reads_our_success(metro: Metro, site: Site) -> None:
    request = metro_request(site, "success")
    run = send_with_metro(metro, site, request)  # Metro makes its own MessageID ("uuid:...")
    assert run.returncode == 0, run
    assert run["outcome"] == "response", run
    assert run["http_status"] == 200
    assert run["body_element"] == f"{{{ns.RS}}}RegistryResponse"
    assert run["registry_status"] == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
    assert run["action"] == ns.ACTION_PNR_RESPONSE
    assert str(run["response_content_type"]).startswith("multipart/related")  # MTOM answer to MTOM

    uid = request.submission.submission_set.unique_id
    stored = site.stored.by_uid[uid]
    assert stored.summary["message_id"].startswith("uuid:")  # Metro's form, accepted as a URI
    assert run["relates_to"] == stored.summary["message_id"]  # Metro matched our RelatesTo to its request
    assert stored.summary["practice"] == "practice-a" and stored.summary["mtom"] is True
    records = stored.summary["documents"]
    originals = list(site.documents.values())
    assert [(stored.directory / r["file"]).read_bytes() for r in records] == originals
    for record, entry, data in zip(records, request.submission.document_entries, originals, strict=True):
        assert record["sha1"] == hashlib.sha1(data).hexdigest() == entry.hash
        assert record["size"] == len(data) == entry.size


def test_metro_reads_our_failure_for_an_unbound_sender(metro: Metro, site: Site) -> None:
    """Practice A's certificate sending as practice B's address: a RegistryResponse Failure, not a fault."""
    message_id = f"uuid:{uuid.uuid4()}"
    request = metro_request(site, "unbound", sender=B_FROM)
    run = send_with_metro(metro, site, request, message_id=message_id)
    assert run.returncode == 0, run
    assert run["outcome"] == "response" and run["http_status"] == 200
    assert run["registry_status"] == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
    assert run["relates_to"] == message_id
    assert request.submission.submission_set.unique_id not in site.stored.by_uid


UNKNOWN_MANDATORY_HEADER = (
    b'<x:Audit xmlns:x="urn:example:audit" xmlns:env="' + ns.SOAP.encode() + b'" env:mustUnderstand="true"/>'
)


@pytest.mark.parametrize(
    ("case", "code", "subcodes", "status", "reason"),
    [
        ("refused-framing", "Sender", [], 400, "start-info"),
        ("action-not-supported", "Sender", [f"{{{ns.WSA}}}ActionNotSupported"], 400, "is not supported here"),
        ("must-understand", "MustUnderstand", [], 500, "mustUnderstand"),
        ("duplicate-address-block", "Sender", [], 400, "more than once"),
    ],
)
def test_metro_reads_our_faults_with_relates_to(
    metro: Metro, site: Site, case: str, code: str, subcodes: list[str], status: int, reason: str
) -> None:
    """Metro hands the application our code, subcodes and reason, and the RelatesTo naming its request, whatever
    we refused: the MIME framing (this path's start-info is made SOAP 1.1's on the way in), the action, a
    mandatory header we do not understand, a header block given twice."""
    message_id = f"uuid:{uuid.uuid4()}"
    extra: list[bytes] = []
    kwargs: dict[str, Any] = {"message_id": message_id}
    if case == "refused-framing":
        kwargs["path"] = REFUSED_FRAMING_PATH
    elif case == "action-not-supported":
        kwargs["action"] = "urn:ihe:iti:2007:RegistryStoredQuery"
    elif case == "must-understand":
        extra.append(UNKNOWN_MANDATORY_HEADER)
    request = metro_request(site, case, extra_headers=extra)
    if case == "duplicate-address-block":
        request = dataclasses.replace(request, headers=(*request.headers, request.headers[0]))
    run = send_with_metro(metro, site, request, **kwargs)
    assert run.returncode == 0, run
    assert run["outcome"] == "fault", run
    assert run["fault_code"] == SOAP_FAULT + code
    assert run["fault_subcodes"] == subcodes
    assert reason in str(run["fault_reason"]), run["fault_reason"]
    assert "Message Addressing Property" not in str(run["fault_reason"])
    assert run["relates_to"] == message_id
    # WS-Addressing 1.0 SOAP Binding §6: a fault WS-Addressing defines carries .../addressing/fault
    assert run["action"] == (ns.ACTION_WSA_FAULT if subcodes else ns.ACTION_FAULT)
    assert run["http_status"] == status
    assert request.submission.submission_set.unique_id not in site.stored.by_uid


# ----------------------------------------------------------------------------------------------------------
# xdr-edge send -> Metro endpoint


@pytest.fixture(scope="module")
def metro_endpoint(metro: Metro, site: Site) -> Iterator[Endpoint]:
    """A Metro Provider endpoint with a server certificate from the lab's CA (so our client's CA bundle trusts
    it) that requires a client certificate from that CA."""
    folder = site.directory / "metro-endpoint"
    folder.mkdir()
    password = secrets.token_urlsafe(18)
    keystore, password_file = folder / "server.p12", folder / "server.p12.pass"
    site.lab.pki.ca.issue_server(["localhost", "127.0.0.1"]).write_p12(keystore, password.encode())
    write_atomic(password_file, password.encode() + b"\n", mode=0o600)
    endpoint = Endpoint(metro, Identity(keystore, password_file, site.lab.ca_bundle), folder / "stderr.log")
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _credential_options(site: Site, kind: str) -> list[str]:
    demo = site.lab.pki.practices["practice-a"]
    if kind == "pem":
        return ["--cert", str(demo.cert), "--key", str(demo.key)]
    return ["--p12", str(demo.p12), "--p12-password-file", str(demo.p12_password_file)]


@pytest.mark.parametrize("kind", ["pem", "pkcs12"])
def test_xdr_edge_send_is_decoded_by_metro(site: Site, metro_endpoint: Endpoint, kind: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            "send",
            *(str(path) for path in site.documents),
            "--from",
            A_FROM,
            "--to",
            TO,
            "--endpoint",
            metro_endpoint.url,
            "--ca",
            str(site.lab.ca_bundle),
            *_credential_options(site, kind),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert sent["outcome"] == "Success" and sent["http_status"] == 200
    assert sent["response_findings"] == []  # Metro's RelatesTo named our MessageID

    seen = metro_endpoint.next_request()
    assert seen.fields["message_id"] == sent["message_id"]
    assert seen.fields["action"] == ns.ACTION_PNR
    assert seen.fields["direct_block"] == "yes"
    assert seen.fields["attachments"] == "2"  # Metro received them as MTOM parts
    assert [(d["sha1"], d["size"]) for d in seen.documents] == [
        (hashlib.sha1(data).hexdigest(), str(len(data))) for data in site.documents.values()
    ]


def test_metro_reports_a_request_over_our_size_limit_by_its_http_status(metro: Metro, site: Site) -> None:
    """Metro reads a SOAP fault only from HTTP 400 and 500 (SOAP 1.2 Part 2 §7.5.2.2); our 413 carries a Sender
    fault with RelatesTo all the same, and Metro reports the status ("413: Payload Too Large")."""
    big = site.directory / "too-large.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"x" * (2 * LIMIT))
    request = metro_request(site, "too-large")
    entry_id = next(iter(request.documents))
    request = dataclasses.replace(request, documents={entry_id: big})
    run = send_with_metro(metro, site, request, message_id=f"uuid:{uuid.uuid4()}")
    assert run.returncode == 2, run
    assert run["outcome"] == "transport-error" and run["http_status"] == 413
    assert "413" in str(run["error"])
    assert str(run["response_content_type"]).startswith("multipart/related")
    assert request.submission.submission_set.unique_id not in site.stored.by_uid


def test_metro_request_passes_our_sender_conformance_suite(metro: Metro, site: Site) -> None:
    """``xdr-edge conformance sender`` judging what Metro sends: every required case passes (the framing cases
    read start-info and the root part's type as media types); the one optional case Metro fails is ReplyTo
    without mustUnderstand (ONC XDR checklist DTS 420)."""
    config = SenderEndpointConfig(
        cert=site.lab.pki.server_cert, key=site.lab.pki.server_key, client_ca=site.lab.ca_bundle
    )
    request = metro_request(site, "conformance")
    with RecordingEndpoint(config) as endpoint:
        run = metro_peers.run_client(
            metro,
            url=endpoint.url,
            identity=site.identity(),
            submit_objects=request.submit_objects,
            documents=request.documents,
            headers=request.headers,
        )
        assert run["registry_status"] == "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success", run
        assert endpoint.wait(1, timeout=60)
        report = judge_recorded(endpoint, expect=1)
    assert report.ok, [(r.case.id, r.observed) for r in report.required_failures]
    for case in ("http-content-type", "mtom-root-part", "mtom-document-parts", "hash-size"):
        assert report.result(case).status is CaseStatus.PASS, report.result(case).observed
    assert {r.case.id for r in report.results if r.failed} == {"wsa-reply-to"}
