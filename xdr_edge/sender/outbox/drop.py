"""Reading one drop: its manifest, the practice's defaults, the documents; and composing its submission with the
uniqueIds the journal recorded.

A folder drop holds the documents and ``message.toml`` or ``message.json``::

    practice = "practice-a"                       # required (implied inside incoming/<practice id>/)
    from = "dr.smith@direct.practice-a.org"       # required unless the practice has outbox defaults
    to = ["records@direct.hospital.example"]      # idem
    metadata = "xds"                              # minimal | xds (default: the practice's, else the file's)
    patient_id = "12345^^^&2.16.840.1.113883.19.5&ISO"
    title = "Referral"
    final_delivery_notification = true
    documents = ["ccd.xml", "referral.pdf"]       # default: every other file at the top, sorted
    [author]
    person = "^Smith^John^^^Dr"                   # XCN text, or a table: family, given, prefix, id, authority
    institution = "Practice A"                    # XON text; a string or a list (also role, specialty)

A single file in ``incoming/<practice id>/`` is sent with that practice's ``[practice.outbox]`` defaults; a C-CDA's
header supplies patient, author, title and codes (:func:`xdr_edge.protocol.compose.compose`).

A drop is refused ("bad drop", :class:`~xdr_edge.protocol.errors.LocalProtocolError` with a code) when it cannot
be sent as it is: an unreadable manifest or an unknown key in it, an unknown practice, a symbolic link anywhere in
it, a document path leaving the drop, a document that is not a regular file. Whatever is refused is refused
before anything is sent, and the message names the file and the key.
"""

from __future__ import annotations

__all__ = ["DropRequest", "SubmissionRecord", "compose_drop", "peek_practice", "read_drop"]

import json
import os
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from xdr_edge.protocol.compose import compose
from xdr_edge.protocol.errors import LocalProtocolError
from xdr_edge.protocol.model import (
    Author,
    DirectAddress,
    Document,
    Dtm,
    MetadataLevel,
    Organization,
    Person,
    Submission,
)
from xdr_edge.sender.config import SenderConfig
from xdr_edge.sender.outbox.layout import MANIFEST_NAMES, OUTPUT_NAMES
from xdr_edge.tomlconfig import TableReader

_MANIFEST_KEYS = frozenset(
    {
        "practice",
        "from",
        "to",
        "metadata",
        "patient_id",
        "title",
        "author",
        "final_delivery_notification",
        "documents",
    }
)
_AUTHOR_KEYS = frozenset({"person", "institution", "role", "specialty"})
_PERSON_KEYS = frozenset({"family", "given", "middle", "prefix", "suffix", "id", "authority"})
_MANIFEST_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DropRequest:
    """What a drop asks to send: the practice, the addresses, the metadata choices and the documents."""

    practice: str
    sender: DirectAddress
    recipients: tuple[DirectAddress, ...]
    level: MetadataLevel
    documents: tuple[str, ...]  # relative to the drop, "/"-separated
    root: Path
    patient_id: str | None = None
    title: str | None = None
    author: Author | None = None
    final_delivery_notification: bool = False

    def paths(self) -> list[Path]:
        return [self.root.joinpath(*PurePosixPath(name).parts) for name in self.documents]


@dataclass(frozen=True)
class SubmissionRecord:
    """What the journal keeps of a composed submission so that a re-send, even after a restart, is the same
    submission: the SubmissionSet uniqueId, the submission time and, per document, its uniqueId, SHA-1 and size
    (a document whose bytes no longer match is never sent under the old uniqueId)."""

    submission_set_unique_id: str
    submission_time: str
    documents: tuple[tuple[str, str, str, int], ...]  # (name, uniqueId, sha1, size)

    def as_json(self) -> dict[str, Any]:
        return {
            "submission_set_unique_id": self.submission_set_unique_id,
            "submission_time": self.submission_time,
            "documents": [list(d) for d in self.documents],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionRecord:
        return cls(
            submission_set_unique_id=data["submission_set_unique_id"],
            submission_time=data["submission_time"],
            documents=tuple((str(n), str(u), str(h), int(s)) for n, u, h, s in data["documents"]),
        )

    @property
    def document_unique_ids(self) -> tuple[str, ...]:
        return tuple(d[1] for d in self.documents)


def _bad(message: str, code: str, location: str | None = None) -> LocalProtocolError:
    return LocalProtocolError(message, code=code, location=location)


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _load_manifest(root: Path) -> tuple[str, dict[str, Any]] | None:
    """The manifest's file name and content; None when the drop has none."""
    present = [name for name in MANIFEST_NAMES if (root / name).exists() or (root / name).is_symlink()]
    if not present:
        return None
    if len(present) > 1:
        raise _bad("the drop has both message.toml and message.json: keep one", "bad-manifest", present[1])
    name = present[0]
    info = _regular(root / name)
    if info is None:
        raise _bad(f"{name} is not a regular file", "bad-manifest", name)
    if info.st_size > _MANIFEST_MAX_BYTES:
        raise _bad(f"{name} is larger than {_MANIFEST_MAX_BYTES} bytes", "bad-manifest", name)
    raw = (root / name).read_bytes()
    try:
        if name.endswith(".toml"):
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except UnicodeDecodeError:
        raise _bad(f"{name} is not UTF-8 text", "bad-manifest", name) from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if name.endswith(".toml") else "JSON"
        raise _bad(f"{name} is not valid {kind}: {exc}", "bad-manifest", name) from None
    if not isinstance(data, dict):
        raise _bad(f"{name} must hold a table (a JSON object) of keys", "bad-manifest", name)
    return name, data


def peek_practice(path: Path, practice_folder: str | None) -> str | None:
    """The practice a drop is for, as cheaply as possible (for fair scheduling); None when it cannot be told."""
    if practice_folder is not None:
        return practice_folder
    try:
        loaded = _load_manifest(path) if path.is_dir() and not path.is_symlink() else None
    except (LocalProtocolError, OSError):
        return None
    value = loaded[1].get("practice") if loaded is not None else None
    return value if isinstance(value, str) else None


class _Manifest(TableReader):
    """A manifest's keys, read with the getters of our TOML files (:class:`TableReader`); its mistakes make a bad
    drop (``bad-manifest``), and every one names the file and the key."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        super().__init__(name, data, "")
        self.name = name
        self.data = data

    def problem(self, message: str, location: str) -> LocalProtocolError:
        return _bad(message, "bad-manifest", location)

    def texts(self, key: str, value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(i, str) and i.strip() for i in items)
        ):
            raise self.error(key, "must be a non-empty string or a list of them")
        return tuple(i.strip() for i in items)

    def author(self) -> Author | None:
        value = self.data.get("author")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error("author", "must be a table with person, institution, role, specialty")
        for key in value:
            if key not in _AUTHOR_KEYS:
                raise self.error(
                    f"author.{key}", f"unknown key (expected one of: {', '.join(sorted(_AUTHOR_KEYS))})"
                )
        person = value.get("person")
        return Author(
            person=self._person(person) if person is not None else None,
            institutions=tuple(
                Organization(t) for t in self.texts("author.institution", value["institution"])
            )
            if "institution" in value
            else (),
            roles=self.texts("author.role", value["role"]) if "role" in value else (),
            specialties=self.texts("author.specialty", value["specialty"]) if "specialty" in value else (),
        )

    def _person(self, value: Any) -> Person:
        if isinstance(value, str) and value.strip():
            return Person(value.strip())
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _PERSON_KEYS:
                    expected = ", ".join(sorted(_PERSON_KEYS))
                    raise self.error(f"author.person.{key}", f"unknown key (expected one of: {expected})")
                if not isinstance(item, str):
                    raise self.error(f"author.person.{key}", "must be a string")
            return Person.of(**{k: v.strip() for k, v in value.items()})
        raise self.error(
            "author.person", "must be XCN text (ID^Family^Given...) or a table (family, given, ...)"
        )

    def documents(self) -> list[str] | None:
        value = self.data.get("documents")
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error("documents", "must be a non-empty list of file names in the drop")
        for index, name in enumerate(value):
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
                # a NUL cannot be in a file name at all, and other control characters are never what was meant
                raise self.error(
                    f"documents[{index}]", f"{name!r} holds a control character: not a file name"
                )
        return value


def _check_tree(root: Path) -> None:
    """No symbolic link anywhere in the drop: a link could make us send a file from outside it."""
    if root.is_symlink():
        raise _bad("the drop is a symbolic link; drop the folder or file itself", "symlink-in-drop")
    for directory, subdirs, files in os.walk(root, followlinks=False):
        for name in (*subdirs, *files):
            path = Path(directory) / name
            if path.is_symlink():
                raise _bad(
                    f"the drop contains a symbolic link: {path.relative_to(root).as_posix()}",
                    "symlink-in-drop",
                    path.relative_to(root).as_posix(),
                )


def _default_documents(root: Path) -> list[str]:
    """Every other file at the top of the drop, sorted: not the manifest, not our outputs, not hidden files."""
    skipped = {*MANIFEST_NAMES, *OUTPUT_NAMES}
    names = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in skipped or _is_output_aside(entry.name):
            continue
        if entry.is_dir(follow_symlinks=False):
            continue  # files in sub-folders are sent only when the manifest lists them
        if not entry.is_file(follow_symlinks=False):
            raise _bad(f"{entry.name} is not a regular file", "not-a-file", entry.name)
        names.append(entry.name)
    return names


def _is_output_aside(name: str) -> bool:
    """``result.previous.json`` and the like: our outputs of an earlier run, set aside (layout.set_aside)."""
    for output in OUTPUT_NAMES:
        stem, _, suffix = output.rpartition(".")
        if name.startswith(f"{stem}.previous") and name.endswith(f".{suffix}"):
            return True
    return False


def _shown(name: str) -> str:
    """A file name for a message: quoted, and cut when it is absurdly long."""
    return repr(name) if len(name) <= 80 else repr(name[:60]) + f"... ({len(name)} characters)"


def _checked_documents(root: Path, names: list[str], manifest: str) -> tuple[str, ...]:
    seen: set[str] = set()
    resolved_root = root.resolve()  # the drop's own folder, already walked by _check_tree
    for index, name in enumerate(names):
        where = f"{manifest}:documents[{index}]"
        pure = PurePosixPath(name)
        if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
            raise _bad(
                f"{manifest}: documents[{index}]: {name!r} leaves the drop", "path-outside-drop", where
            )
        normal = pure.as_posix()
        if normal in (*MANIFEST_NAMES, *OUTPUT_NAMES):
            raise _bad(f"{manifest}: documents[{index}]: {name!r} is not a document", "bad-manifest", where)
        if normal in seen:
            raise _bad(f"{manifest}: documents[{index}]: {name!r} is listed twice", "bad-manifest", where)
        seen.add(normal)
        path = root.joinpath(*pure.parts)
        try:
            inside = path.resolve().is_relative_to(resolved_root)
            info = _regular(path) if inside else None
            present = info is None and inside and path.exists()  # only asked to name what is wrong
        except (OSError, ValueError) as exc:  # a name the filesystem cannot hold (too long, a loop ...)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _bad(
                f"{manifest}: documents[{index}]: {_shown(name)} cannot be read as a path ({reason})",
                "bad-manifest",
                where,
            ) from None
        if not inside:
            raise _bad(
                f"{manifest}: documents[{index}]: {name!r} leaves the drop", "path-outside-drop", where
            )
        if info is None:
            reason = "is not a regular file" if present else "is not in the drop"
            raise _bad(f"{manifest}: documents[{index}]: {name!r} {reason}", "document-not-found", where)
    return tuple(PurePosixPath(n).as_posix() for n in names)


def read_drop(root: Path, *, kind: str, practice_folder: str | None, config: SenderConfig) -> DropRequest:
    """What the drop at ``root`` (a claimed folder) asks for. ``kind`` is ``folder`` or ``file`` (a single file
    in ``root``); ``practice_folder`` is the practice whose ``incoming/<id>/`` it came from, if any."""
    _check_tree(root)
    if kind == "file":
        if practice_folder is None:
            raise _bad(
                "a single file is a drop only in incoming/<practice id>/ of a practice with outbox defaults; "
                "anything else must be a folder with message.toml or message.json",
                "not-a-drop",
            )
        files = [
            e.name for e in os.scandir(root) if not e.name.startswith(".") and e.name not in OUTPUT_NAMES
        ]
        if len(files) != 1 or _regular(root / files[0]) is None:
            raise _bad("a single-file drop must be one regular file", "not-a-file")
        loaded: tuple[str, dict[str, Any]] | None = None
    elif kind == "folder":
        loaded = _load_manifest(root)
        files = []
    else:
        raise _bad("the drop is neither a folder nor a regular file", "not-a-drop")
    if loaded is None and practice_folder is None:
        raise _bad("the drop has no message.toml or message.json (practice, from, to ...)", "no-manifest")
    manifest = _Manifest(*(loaded or ("defaults", {})))
    for key in manifest.data:
        if key not in _MANIFEST_KEYS:
            raise manifest.error(key, f"unknown key (expected one of: {', '.join(sorted(_MANIFEST_KEYS))})")
    practice = manifest.text("practice") or practice_folder
    if practice is None:
        raise manifest.error("practice", "missing: which practice's certificate to send with")
    if practice_folder is not None and practice != practice_folder:
        raise manifest.error("practice", f"{practice!r} in the folder of practice {practice_folder!r}")
    if practice not in config.practices:
        known = ", ".join(sorted(config.practices)) or "none"
        raise _bad(
            f"unknown practice {practice!r} (configured: {known})",
            "unknown-practice",
            f"{manifest.name}:practice",
        )
    defaults = config.outbox_defaults.get(practice) if practice_folder is not None else None
    if kind == "file" and defaults is None:
        raise _bad(
            f"practice {practice!r} has no outbox defaults ([practice.outbox] with from and to in the sender "
            "configuration), so a single file cannot be sent for it; drop a folder with a manifest instead",
            "no-outbox-defaults",
        )
    sender_text = manifest.text("from")
    sender = manifest.address("from", sender_text) if sender_text else (defaults.sender if defaults else None)
    recipients = manifest.addresses("to") or (defaults.recipients if defaults else None)
    if sender is None:
        raise manifest.error("from", "missing: the sender's Direct address")
    if not recipients:
        raise manifest.error("to", "missing: the recipients' Direct addresses")
    if kind == "file":
        documents: tuple[str, ...] = (files[0],)
    else:
        listed = manifest.documents()
        names = listed if listed is not None else _default_documents(root)
        if not names:
            raise _bad("the drop holds no document", "no-documents")
        documents = _checked_documents(root, names, manifest.name)
    level = manifest.level("metadata") or (defaults.level if defaults else config.metadata_level)
    return DropRequest(
        practice=practice,
        sender=sender,
        recipients=recipients,
        level=level,
        documents=documents,
        root=root,
        patient_id=manifest.text("patient_id"),
        title=manifest.text("title"),
        author=manifest.author(),
        final_delivery_notification=manifest.flag("final_delivery_notification"),
    )


def compose_drop(
    request: DropRequest, record: SubmissionRecord | None, *, renew: bool
) -> tuple[Submission, SubmissionRecord]:
    """The submission of a drop, with the recorded uniqueIds when there are some.

    ``renew`` allows new uniqueIds when the drop no longer matches the record (other documents, other bytes):
    only safe when nothing was ever sent. Otherwise such a drop is refused: the HISP may hold the recorded
    uniqueIds with the old bytes, and a document under an old uniqueId with new bytes would be refused there
    (XDSNonIdenticalHash) or, worse, taken for the old one."""
    paths = request.paths()
    if record is not None and not _matches(record, request, paths, by_content=renew):
        if not renew:
            raise _bad(
                "the drop changed after it was sent (other documents or other bytes): it cannot be sent again "
                "under the same uniqueIds; `xdr-edge outbox retry --new-ids` sends it as a new submission",
                "drop-changed",
            )
        record = None
    documents: list[Document | Path | str]
    if record is None:
        documents = list(paths)
    else:
        documents = [
            Document(path=path, name=path.name, sha1=sha1, size=size)
            for path, (_, _, sha1, size) in zip(paths, record.documents, strict=True)
        ]
    submission = compose(
        documents,
        sender=request.sender,
        recipients=list(request.recipients),
        level=request.level,
        patient_id=request.patient_id,
        title=request.title,
        author=request.author,
        submission_time=Dtm(record.submission_time).to_datetime() if record is not None else None,
        final_destination_delivery=request.final_delivery_notification,
    )
    if record is None:
        record = SubmissionRecord(
            submission_set_unique_id=submission.submission_set.unique_id,
            submission_time=(submission.submission_set.submission_time or Dtm.now()).text,
            documents=tuple(
                (name, entry.unique_id, entry.hash or "", entry.size or 0)
                for name, entry in zip(request.documents, submission.document_entries, strict=True)
            ),
        )
        return submission, record
    entries = tuple(
        replace(entry, unique_id=unique_id)
        for entry, unique_id in zip(submission.document_entries, record.document_unique_ids, strict=True)
    )
    submission = replace(
        submission,
        submission_set=replace(submission.submission_set, unique_id=record.submission_set_unique_id),
        document_entries=entries,
    )
    return submission, record


def _matches(record: SubmissionRecord, request: DropRequest, paths: list[Path], *, by_content: bool) -> bool:
    """Same documents, same sizes and, with ``by_content``, the same SHA-1. Without it a change of the same size
    is still caught, by the MTOM writer, which checks every byte against the recorded hash while sending."""
    if tuple(d[0] for d in record.documents) != request.documents:
        return False
    for path, (_, _, sha1, size) in zip(paths, record.documents, strict=True):
        info = _regular(path)
        if info is None or info.st_size != size:
            return False
        if by_content and Document(path=path).digest()[0] != sha1:
            return False
    return True
