"""``xdr-edge pack`` and ``xdr-edge inspect``: build a request to a file, and read any stored message back."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import click

from xdr_edge.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, echo_json, handle_errors
from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import ConfigurationError, ValidationFailed
from xdr_edge.protocol.findings import Finding
from xdr_edge.protocol.inspection import Inspection, inspect_stream
from xdr_edge.protocol.model import Author, MetadataLevel, Organization, Person, Submission
from xdr_edge.protocol.soap import LevelPlacement
from xdr_edge.protocol.validate import check_outgoing
from xdr_edge.protocol.wire import build_request

DEFAULT_ENDPOINT = "https://hisp.invalid/xdr"


@dataclass(frozen=True)
class ContentOptions:
    """What the :func:`metadata_options` of ``pack`` and ``send`` say about the submission, as one value."""

    files: tuple[Path, ...]
    sender: str
    recipients: tuple[str, ...]
    level: str | None
    patient_id: str | None
    uid_root: str | None
    source_id: str | None
    title: str | None
    final_delivery: bool
    level_placement: str
    author_person: str | None
    author_institutions: tuple[str, ...]
    author_roles: tuple[str, ...]
    author_specialties: tuple[str, ...]

    @property
    def placement(self) -> LevelPlacement:
        return _PLACEMENTS[self.level_placement]

    @property
    def author(self) -> Author | None:
        """The ``--author-*`` options as one author (of the SubmissionSet, and of each document without its
        own), or None when none is given."""
        if not (
            self.author_person or self.author_institutions or self.author_roles or self.author_specialties
        ):
            return None
        return Author(
            person=Person(self.author_person) if self.author_person else None,
            institutions=tuple(Organization(i) for i in self.author_institutions),
            roles=self.author_roles,
            specialties=self.author_specialties,
        )

    @contextlib.contextmanager
    def explaining(self) -> Iterator[None]:
        """Re-raise a metadata validation failure with the options that supply what is missing."""
        try:
            yield
        except ValidationFailed as exc:
            hint = option_hints(exc.findings)
            if hint is None:
                raise
            raise ValidationFailed(exc.findings, message=f"{exc.message}\n{hint}") from None

    def compose(self, default_level: MetadataLevel) -> Submission:
        """The submission; without ``--metadata`` the level is ``default_level`` (minimal for ``pack``, the
        configuration file's for ``send``)."""
        return compose(
            list(self.files),
            sender=self.sender,
            recipients=list(self.recipients),
            level=MetadataLevel.parse(self.level) if self.level else default_level,
            patient_id=self.patient_id,
            uid_root=self.uid_root,
            source_id=self.source_id,
            title=self.title,
            final_destination_delivery=self.final_delivery,
            author=self.author,
        )


#: What a missing attribute's ``*-missing-<name>`` rule is supplied by on the command line.
_SUPPLIED_BY: dict[str, tuple[str, str]] = {
    "patient-id": ("--patient-id", "patientId"),
    "source-patient-id": ("--patient-id", "sourcePatientId"),
    "author": ("--author-person", "author"),
    "author-person": ("--author-person", "authorPerson"),
    "author-institution": ("--author-institution", "authorInstitution"),
    "author-role": ("--author-role", "authorRole"),
    "author-specialty": ("--author-specialty", "authorSpecialty"),
}


def option_hints(findings: Sequence[Finding]) -> str | None:
    """Which options supply the attributes the metadata errors say are missing, or None when none does.

    A C-CDA's header supplies patient and author; a PDF or an image has no header, so at the XDS level
    (ITI TF-3 4.3.1) they must come from the command line."""
    wanted: dict[str, list[str]] = {}
    for finding in findings:
        if not finding.is_error or "-missing-" not in finding.rule:
            continue
        option, attribute = _SUPPLIED_BY.get(finding.rule.split("-missing-", 1)[1], ("", ""))
        if option and attribute not in wanted.setdefault(option, []):
            wanted[option].append(attribute)
    if not wanted:
        return None
    parts = [f"{option} (for {', '.join(attributes)})" for option, attributes in wanted.items()]
    extra = [o for o in ("--author-institution", "--author-role", "--author-specialty") if o not in wanted]
    optional = f", optionally with {', '.join(extra)}" if "--author-person" in wanted else ""
    return (
        "A document without a C-CDA header (a PDF, an image, text) carries no patient or author: give "
        + " and ".join(parts)
        + optional
        + ". Examples: --patient-id '8273^^^&1.3.6.1.4.1.21367.2005.3.7&ISO' --author-person '^Smith^John^^^Dr.' "
        "--author-institution 'Riverside Clinic^^^^^^^^^1.2.3.4.5'. Or send minimal metadata (--metadata minimal), "
        "which needs neither."
    )


_PLACEMENTS = {
    "top-level": LevelPlacement.TOP_LEVEL,
    "in-block": LevelPlacement.IN_BLOCK,
    "both": LevelPlacement.BOTH,
}
_CONTENT_FIELDS = tuple(f.name for f in fields(ContentOptions))


def metadata_options(func: Any) -> Any:
    """Options shared by ``pack`` and ``send``: the submission's content, handed to the command as one
    ``content: ContentOptions`` argument."""
    options = [
        click.argument(
            "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
        ),
        click.option("--from", "sender", required=True, help="Sender Direct address (direct:from)."),
        click.option(
            "--to", "recipients", multiple=True, required=True, help="Recipient Direct address; repeat."
        ),
        click.option(
            "--metadata",
            "level",
            type=click.Choice(["minimal", "xds"], case_sensitive=False),
            default=None,
            help="Metadata level (pack: minimal; send: the config file's metadata_level, else minimal).",
        ),
        click.option("--patient-id", help="Patient id as CX: ID^^^&OID&ISO (overrides the C-CDA header)."),
        click.option("--uid-root", help="OID root for generated uniqueIds (default 2.25.<uuid>)."),
        click.option(
            "--source-id", help="SubmissionSet sourceId OID (default derived from the sender's domain)."
        ),
        click.option("--title", help="SubmissionSet title (e.g. the mail Subject)."),
        click.option(
            "--author-person",
            metavar="XCN",
            help="Author as HL7 XCN, e.g. '^Smith^John^^^Dr.' (XDS level: required unless a C-CDA names one).",
        ),
        click.option(
            "--author-institution",
            "author_institutions",
            multiple=True,
            metavar="XON",
            help="Author's institution as HL7 XON, e.g. 'Riverside Clinic^^^^^^^^^1.2.3.4.5'; repeat.",
        ),
        click.option("--author-role", "author_roles", multiple=True, help="Author's role; repeat."),
        click.option(
            "--author-specialty", "author_specialties", multiple=True, help="Author's specialty; repeat."
        ),
        click.option(
            "--final-delivery-notification",
            "final_delivery",
            is_flag=True,
            help="Ask for a notification once the message reaches its final destination "
            "(X-DIRECT-FINAL-DESTINATION-DELIVERY in the address block).",
        ),
        click.option(
            "--level-placement",
            type=click.Choice(list(_PLACEMENTS)),
            default="top-level",
            show_default=True,
            help="Where the direct:metadata-level header goes (XDR and XDM for Direct Messaging §6.1.1).",
        ),
    ]

    @functools.wraps(func)
    def command(**kwargs: Any) -> Any:
        content = ContentOptions(**{name: kwargs.pop(name) for name in _CONTENT_FIELDS})
        return func(content=content, **kwargs)

    for option in reversed(options):
        command = option(command)
    return command


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, and paths that resolve differently to one file
    except OSError:
        return False  # one of them does not exist (yet): not the same file


def check_output_path(path: Path, *, option: str, inputs: Sequence[Path] = (), nothing: str) -> None:
    """Refuse an output path that cannot be written, or that is one of the inputs, *before* the work is done.

    Found only when writing, such a path costs the work (a submission already sent and maybe stored, a whole
    conformance run) or destroys an input document. ``nothing`` says what was spared ("nothing was sent")."""
    directory = path.parent
    if not directory.is_dir():
        raise ConfigurationError(
            f"{option} {path}: the directory {directory} does not exist; {nothing}", location=option
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"{option} {path}: the directory {directory} is not writable; {nothing}", location=option
        )
    if path.is_dir():
        raise ConfigurationError(f"{option} {path} is a directory; {nothing}", location=option)
    for source in inputs:
        if _same_file(path, source):
            raise ConfigurationError(
                f"{option} {path} is the input file {source}: writing it would destroy the input; {nothing}",
                location=option,
            )


@click.command("pack")
@metadata_options
@click.option("--endpoint", default=DEFAULT_ENDPOINT, show_default=True, help="Value of wsa:To.")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output file."
)
@handle_errors
def pack(content: ContentOptions, endpoint: str, output: Path) -> None:
    """Write one MIME entity: the Content-Type header, a blank line, then the body exactly as sent."""
    check_output_path(output, option="--output", inputs=content.files, nothing="nothing was written")
    submission = content.compose(MetadataLevel.MINIMAL)
    findings = check_outgoing(submission)  # what a send's pre-flight checks, empty documents included
    if any(f.is_error for f in findings):
        with content.explaining():
            raise ValidationFailed(findings)
    request = build_request(submission, endpoint=endpoint, placement=content.placement)
    tmp = output.with_name(output.name + ".part")
    with tmp.open("wb") as out:
        size = request.write_entity(out)
    tmp.replace(output)
    for finding in findings:
        click.echo(f"  {finding}", err=True)
    click.echo(
        f"wrote {output}: {len(submission.document_entries)} document(s), {size} body bytes, "
        f"message {request.message_id}, submission set {submission.submission_set.unique_id}"
    )


def _print_inspection(result: Inspection) -> None:
    click.echo(
        f"{result.kind} ({'MTOM' if result.mtom else 'plain SOAP'}) Content-Type: {result.content_type}"
    )
    summary = dict(result.summary)
    documents = summary.pop("documents", [])
    submission_set = summary.pop("submission_set", None)
    for key, value in summary.items():
        if value is True:
            click.echo(f"  {key.replace('_', ' ')}: requested")
        elif value is not False and value not in (None, [], ""):
            click.echo(
                f"  {key.replace('_', ' ')}: {value if not isinstance(value, list) else ', '.join(map(str, value))}"
            )
    if submission_set:
        click.echo("  submission set:")
        for key, value in submission_set.items():
            if value not in (None, [], ""):
                click.echo(f"    {key.replace('_', ' ')}: {value}")
    for doc in documents:
        click.echo(f"  document {doc['entry_id']}:")
        for key, value in doc.items():
            if key != "entry_id" and value not in (None, [], ""):
                click.echo(f"    {key.replace('_', ' ')}: {value}")
    errors = [f for f in result.findings if f.is_error]
    warnings = [f for f in result.findings if not f.is_error]
    click.echo(f"findings: {len(errors)} error(s), {len(warnings)} warning(s)")
    for finding in errors + warnings:
        click.echo(f"  {finding}")


@click.command("inspect")
@click.argument("file", type=click.Path(allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: always one JSON document.")
@click.option("--show-phi", is_flag=True, help="Also print patient names and document titles.")
@handle_errors
def inspect_cmd(file: Path, as_json: bool, show_phi: bool) -> None:
    """Read a stored message (request or response; MTOM, plain SOAP or a raw HTTP capture): print every finding.

    Exit status 1 when the message has errors, or is not a message xdr-edge recognises (the findings say why);
    2 when the file cannot be read at all (missing, unreadable, empty). With --json, standard output is one
    JSON document in every case; when there was nothing to inspect its "kind" is "none" and "error" says why."""
    name = "standard input" if str(file) == "-" else str(file)
    try:
        if str(file) == "-":
            _inspect_open(sys.stdin.buffer, name, as_json, show_phi)
        else:
            with file.open("rb") as fh:
                _inspect_open(fh, name, as_json, show_phi)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            _no_message(as_json, "file-not-found", f"{name} does not exist")
        _no_message(as_json, "file-unreadable", f"{name} cannot be read: {exc.strerror or exc}")


def _no_message(as_json: bool, code: str, message: str) -> NoReturn:
    """Nothing to inspect: one line on stderr, the JSON document when asked for, exit status 2."""
    if as_json:
        echo_json(_nothing_inspected(code, message))
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _nothing_inspected(code: str, message: str) -> dict[str, Any]:
    document = Inspection(kind="none", content_type="", mtom=False).as_dict()
    document["error"] = {"code": code, "message": message}
    return document


def _inspect_open(stream: BinaryIO, name: str, as_json: bool, show_phi: bool) -> None:
    stream = _peekable(stream)
    if not stream.peek(1):
        # Without this an empty file reads as "no blank line after the headers", an error *in* a message (exit
        # 1), when there is no message at all.
        _no_message(as_json, "file-empty", f"{name} is empty: there is no message to inspect")
    try:
        result = inspect_stream(stream, show_phi=show_phi)
    except (
        Exception
    ) as exc:  # a bug (inspect_stream turns what a message holds into findings): still one JSON
        if as_json and not isinstance(exc, OSError):
            echo_json(_nothing_inspected("internal-error", f"internal error ({type(exc).__name__})"))
        raise
    if as_json:
        echo_json(result.as_dict())
    else:
        _print_inspection(result)
    if result.kind == "unknown" or result.has_errors:
        sys.exit(EXIT_FAILURE)


def _peekable(stream: BinaryIO) -> io.BufferedReader:
    """The stream as one whose next bytes can be looked at without consuming them (files and pipes already are;
    a test harness's in-memory stdin is not)."""
    if isinstance(stream, io.BufferedReader):
        return stream
    return io.BufferedReader(stream)  # type: ignore[arg-type]


COMMANDS = [pack, inspect_cmd]
