"""The typed model of an XDR submission: frozen value objects, no I/O beyond opening a document's byte source.

HL7 v2 data types (CX, XCN, XON, XTN, DTM) are kept as their wire text, with parsed accessors and a
``format_problems()`` check, rather than being forced through a parser at construction. Why: the receiver must be
able to *hold* what a peer sent, including malformed values, so that validation can name the exact problem
(ITI TF-3 4.2.3, NIST format checks) instead of the reader failing on the first oddity. Builders such as
:meth:`Patient.of` produce well-formed text for callers creating submissions.

A :class:`Document` is a byte source (a path, a seekable binary file, or small in-memory bytes), never required
to be one ``bytes`` object: MTOM writing and reading stream it in chunks (memory stays flat whatever the document size).
"""

from __future__ import annotations

__all__ = [
    "Association",
    "Author",
    "Code",
    "DirectAddress",
    "Document",
    "DocumentEntry",
    "Dtm",
    "MetadataLevel",
    "Organization",
    "Patient",
    "Person",
    "Recipient",
    "Submission",
    "SubmissionSet",
    "Telecom",
]

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import IO, BinaryIO

from xdr_edge.protocol import ns

CHUNK_SIZE = 256 * 1024

# Both are matched against what peers send (uniqueIds, patient ids, Direct addresses), so every repetition is
# possessive (``*+``, ``++``): nothing is ever backtracked into, and matching is linear in the text. (The former
# ``(\.(0|[1-9][0-9]*))+`` took quadratic time: 0.56 s for 160 KB of "1.1.1...x".)
_OID = re.compile(r"(?:0|[1-9][0-9]*+)(?:\.(?:0|[1-9][0-9]*+))++")
_ADDRESS = re.compile(
    r"[^@\s<>()\[\],;:\"]++@[A-Za-z0-9](?:[A-Za-z0-9-]*+(?<!-))?+(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*+(?<!-))?+)*+"
)


def is_oid(text: str) -> bool:
    """True for a dotted-decimal ISO OID such as ``1.2.840.10008``."""
    return _OID.fullmatch(text) is not None


class MetadataLevel(str, Enum):
    """The Direct ``metadata-level`` header values (XDR and XDM for Direct Messaging §6.1.1); case-sensitive on the wire."""

    MINIMAL = "minimal"
    XDS = "XDS"

    @classmethod
    def parse(cls, text: str) -> MetadataLevel:
        """Accepts ``minimal``/``XDS`` and, for options typed by people, ``full``/``xds``."""
        key = text.strip()
        if key == "minimal":
            return cls.MINIMAL
        if key in ("XDS", "xds", "full"):
            return cls.XDS
        raise ValueError(f"unknown metadata level {text!r}: expected 'minimal' or 'XDS'")


@dataclass(frozen=True, order=True)
class DirectAddress:
    """A Direct address (``user@domain``). Construct with :meth:`parse` to accept ``mailto:`` URIs.

    Domains compare case-insensitively (they are normalised to lower case); the local part is kept as written,
    since RFC 5321 leaves its case to the receiving domain. ``uri`` is the ``mailto:`` form we emit in the address
    block (XDR and XDM for Direct Messaging §4.1: emit ``mailto:``, accept both).
    """

    address: str

    def __post_init__(self) -> None:
        text = self.address.strip()
        if _ADDRESS.fullmatch(text) is None:
            raise ValueError(f"not a Direct address: {self.address!r} (expected user@domain)")
        local, _, domain = text.rpartition("@")
        object.__setattr__(self, "address", f"{local}@{domain.lower()}")

    @classmethod
    def parse(cls, text: str) -> DirectAddress:
        value = text.strip()
        if value.lower().startswith("mailto:"):
            value = value[len("mailto:") :]
        return cls(value)

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def uri(self) -> str:
        return f"mailto:{self.address}"

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True)
class Dtm:
    """An HL7 v2 DTM timestamp ``YYYY[MM[DD[hh[mm[ss]]]]]`` in UTC (ITI TF-3 4.2.3), kept as text."""

    text: str

    @classmethod
    def from_datetime(cls, moment: datetime) -> Dtm:
        if moment.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware; XDS times are UTC")
        return cls(moment.astimezone(UTC).strftime("%Y%m%d%H%M%S"))

    @classmethod
    def now(cls) -> Dtm:
        return cls.from_datetime(datetime.now(UTC))

    def format_problems(self) -> list[str]:
        if not (self.text.isascii() and self.text.isdigit()) or len(self.text) not in (4, 6, 8, 10, 12, 14):
            return [f"{self.text!r} is not an HL7 DTM (YYYY[MM[DD[hh[mm[ss]]]]], digits only)"]
        try:
            self.to_datetime()
        except ValueError as exc:
            return [f"{self.text!r} is not a real date/time: {exc}"]
        return []

    def to_datetime(self) -> datetime:
        """The earliest moment the value denotes, as an aware UTC datetime; ValueError when it is not one.

        Read by slicing, not ``strptime`` (several times per message, and ten times the cost), so only the
        lengths of :meth:`format_problems` and 14 digits are read; anything else is refused."""
        text = self.text
        if not text.isascii() or not text.isdigit() or len(text) not in (4, 6, 8, 10, 12, 14):
            raise ValueError(f"{text!r} is not YYYY[MM[DD[hh[mm[ss]]]]]")
        padded = text + "0101000000"[len(text) - 4 :]
        return datetime(
            int(padded[0:4]),
            int(padded[4:6]),
            int(padded[6:8]),
            int(padded[8:10]),
            int(padded[10:12]),
            int(padded[12:14]),
            tzinfo=UTC,
        )

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Code:
    """A coded value: ``code`` (nodeRepresentation), ``scheme`` (codingScheme slot) and ``display`` (Name)."""

    code: str
    scheme: str
    display: str = ""


def _split(text: str, sep: str, count: int) -> list[str]:
    parts = text.split(sep)
    return parts + [""] * (count - len(parts))


@dataclass(frozen=True)
class Patient:
    """A patient identifier in HL7 CX form ``ID^^^&<assigning-authority-OID>&ISO`` (ITI TF-3 4.2.3)."""

    cx: str

    @classmethod
    def of(cls, id: str, authority: str) -> Patient:
        return cls(f"{id}^^^&{authority}&ISO")

    @property
    def id(self) -> str:
        return self.cx.split("^", 1)[0]

    @property
    def authority(self) -> str:
        comps = _split(self.cx, "^", 4)
        return _split(comps[3], "&", 3)[1]

    def format_problems(self) -> list[str]:
        comps = self.cx.split("^")
        if len(comps) != 4 or comps[1] or comps[2]:
            return [f"{self.cx!r} is not a CX value of the form ID^^^&OID&ISO"]
        if not comps[0]:
            return [f"{self.cx!r} has an empty patient ID (CX.1)"]
        sub = comps[3].split("&")
        if len(sub) != 3 or sub[0] or sub[2] != "ISO" or not is_oid(sub[1]):
            return [f"{self.cx!r} has no valid assigning authority (CX.4 must be &OID&ISO)"]
        return []

    def __str__(self) -> str:
        return self.cx


@dataclass(frozen=True)
class Person:
    """A person in HL7 XCN form ``ID^Family^Given^Middle^Suffix^Prefix^^^&AA-OID&ISO`` (ITI TF-3 4.2.3)."""

    xcn: str

    @classmethod
    def of(
        cls,
        *,
        family: str = "",
        given: str = "",
        id: str = "",
        authority: str = "",
        middle: str = "",
        suffix: str = "",
        prefix: str = "",
    ) -> Person:
        fields = [id, family, given, middle, suffix, prefix, "", "", f"&{authority}&ISO" if authority else ""]
        return cls("^".join(fields).rstrip("^"))

    def _component(self, index: int) -> str:
        return _split(self.xcn, "^", index + 1)[index]

    @property
    def id(self) -> str:
        return self._component(0)

    @property
    def family(self) -> str:
        return self._component(1)

    @property
    def given(self) -> str:
        return self._component(2)

    def format_problems(self) -> list[str]:
        comps = _split(self.xcn, "^", 9)
        if not comps[0] and not (comps[1] and comps[2]):
            return [f"{self.xcn!r} is not an XCN value: it needs an ID (XCN.1) or both family and given name"]
        if comps[0] and comps[8]:
            sub = comps[8].split("&")
            if len(sub) != 3 or sub[2] != "ISO" or not is_oid(sub[1]):
                return [f"{self.xcn!r} has an invalid assigning authority (XCN.9 must be &OID&ISO)"]
        return []

    def __str__(self) -> str:
        return self.xcn


@dataclass(frozen=True)
class Organization:
    """An organization in HL7 XON form ``Name^^^^^^^^^<OID>`` (ITI TF-3 4.2.3)."""

    xon: str

    @classmethod
    def of(cls, name: str, oid: str = "") -> Organization:
        return cls(f"{name}^^^^^^^^^{oid}" if oid else name)

    @property
    def name(self) -> str:
        return self.xon.split("^", 1)[0]

    @property
    def id(self) -> str:
        return _split(self.xon, "^", 10)[9]

    def format_problems(self) -> list[str]:
        comps = _split(self.xon, "^", 10)
        if not comps[0]:
            return [f"{self.xon!r} is not an XON value: the organization name (XON.1) is empty"]
        if comps[9] and not is_oid(comps[9]):
            sub = _split(comps[5], "&", 3)
            if not sub[1] or sub[2] != "ISO":
                return [f"{self.xon!r}: XON.10 is not an OID, so XON.6 must name an ISO assigning authority"]
        return []

    def __str__(self) -> str:
        return self.xon


@dataclass(frozen=True)
class Telecom:
    """A telecommunication address in HL7 XTN form; for Direct ``^^Internet^user@domain`` (XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3)."""

    xtn: str

    @classmethod
    def of(cls, address: DirectAddress) -> Telecom:
        return cls(f"^^Internet^{address.address}")

    @property
    def address(self) -> DirectAddress | None:
        comps = _split(self.xtn, "^", 4)
        if comps[2] != "Internet":
            return None
        try:
            return DirectAddress.parse(comps[3])
        except ValueError:
            return None

    def format_problems(self) -> list[str]:
        comps = _split(self.xtn, "^", 4)
        if comps[2] != "Internet":
            return [f"{self.xtn!r} is not an e-mail XTN: XTN.3 must be 'Internet'"]
        if "@" not in comps[3]:
            return [f"{self.xtn!r} has no e-mail address in XTN.4"]
        if self.address is None:
            return [f"{self.xtn!r}: XTN.4 {comps[3]!r} is not a valid Direct address"]
        return []

    def __str__(self) -> str:
        return self.xtn


@dataclass(frozen=True)
class Recipient:
    """A SubmissionSet ``intendedRecipient`` value ``XON|XCN|XTN`` (XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3); the XTN may not be omitted."""

    value: str

    @classmethod
    def of(
        cls, address: DirectAddress, *, organization: Organization | None = None, person: Person | None = None
    ) -> Recipient:
        org = organization.xon if organization else ""
        per = person.xcn if person else ""
        return cls(f"{org}|{per}|{Telecom.of(address).xtn}")

    @property
    def telecom(self) -> Telecom | None:
        parts = self.value.split("|")
        return Telecom(parts[2]) if len(parts) >= 3 and parts[2] else None

    @property
    def address(self) -> DirectAddress | None:
        tel = self.telecom
        return tel.address if tel else None

    def format_problems(self) -> list[str]:
        parts = self.value.split("|")
        if len(parts) != 3:
            return [f"{self.value!r} is not an intendedRecipient value of the form XON|XCN|XTN"]
        problems: list[str] = []
        if parts[0]:
            problems += Organization(parts[0]).format_problems()
        if parts[1]:
            problems += Person(parts[1]).format_problems()
        if not parts[2]:
            problems.append(f"{self.value!r} has no XTN address; Direct requires one (DTS 434)")
        else:
            problems += Telecom(parts[2]).format_problems()
        return problems


@dataclass(frozen=True)
class Author:
    """An author classification: person (XCN), institutions (XON), roles, specialties, telecommunication (XTN)."""

    person: Person | None = None
    institutions: tuple[Organization, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[Telecom, ...] = ()

    @property
    def addresses(self) -> tuple[DirectAddress, ...]:
        return tuple(a for a in (t.address for t in self.telecoms) if a is not None)


class Document:
    """The bytes of one document, read on demand and never required to sit in memory as one object.

    Sources: a file path (re-opened for every read, so a retry re-sends from the start), a seekable binary file
    object (rewound to where it stood when wrapped), or in-memory bytes for small documents and tests.
    ``sha1``/``size`` may be given when already known (the receiver computes them while spooling a part);
    otherwise :meth:`digest` streams the source once. ``mime_type``, when the sender declared one (a form part's
    Content-Type, an API field), is the DocumentEntry mimeType instead of a guess from the content.
    """

    __slots__ = ("_data", "_fileobj", "_known", "_path", "_start", "mime_type", "name")

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        fileobj: BinaryIO | IO[bytes] | None = None,
        data: bytes | None = None,
        name: str | None = None,
        sha1: str | None = None,
        size: int | None = None,
        mime_type: str | None = None,
    ) -> None:
        if sum(x is not None for x in (path, fileobj, data)) != 1:
            raise ValueError("a Document needs exactly one of path, fileobj or data")
        self._path = Path(path) if path is not None else None
        self._fileobj = fileobj
        self._data = data
        self._start = 0
        if fileobj is not None:
            if not fileobj.seekable():
                raise ValueError("a Document file object must be seekable so that a retry can re-send it")
            self._start = fileobj.tell()
        self.name = name if name is not None else (self._path.name if self._path else None)
        self.mime_type = mime_type
        self._known = (sha1.lower(), size) if sha1 is not None and size is not None else None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Document:
        return cls(path=path)

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None, mime_type: str | None = None) -> Document:
        return cls(data=data, name=name, mime_type=mime_type)

    @classmethod
    def from_file(cls, fileobj: BinaryIO | IO[bytes], name: str | None = None) -> Document:
        return cls(fileobj=fileobj, name=name)

    @property
    def path(self) -> Path | None:
        return self._path

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """A binary stream positioned at the first byte of the document."""
        if self._path is not None:
            with self._path.open("rb") as fh:
                yield fh
        elif self._fileobj is not None:
            self._fileobj.seek(self._start)
            yield self._fileobj
        else:
            assert self._data is not None
            yield io.BytesIO(self._data)

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self.open() as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def head(self, limit: int = 64 * 1024) -> bytes:
        """The first ``limit`` bytes (for content sniffing and CDA header extraction)."""
        with self.open() as fh:
            return fh.read(limit)

    def digest(self) -> tuple[str, int]:
        """``(sha1_hex, size)`` over the exact bytes; computed by streaming unless given at construction.

        Remembered for in-memory bytes, which cannot change (an inline document is checked, claimed and stored:
        three callers, one hash); a file or file object is hashed each time, since it can change on disk."""
        if self._known is not None:
            return self._known
        sha1 = hashlib.sha1()  # noqa: S324 - SHA-1 is what XDS `hash` is defined as, not a security use
        size = 0
        for chunk in self.chunks():
            sha1.update(chunk)
            size += len(chunk)
        if self._data is not None:
            self._known = (sha1.hexdigest(), size)
        return sha1.hexdigest(), size

    def read_all(self) -> bytes:
        """All bytes at once: only for small documents, tests and CDA parsing."""
        return b"".join(self.chunks())

    def __repr__(self) -> str:
        if self._path is not None:
            return f"Document(path={str(self._path)!r})"
        if self._fileobj is not None:
            return f"Document(fileobj={self.name or '?'})"
        return f"Document(<{len(self._data or b'')} bytes>)"


@dataclass(frozen=True)
class DocumentEntry:
    """An XDS DocumentEntry (ebRIM ExtrinsicObject) with every attribute of ITI TF-3 4.2.3.

    ``entry_id`` is the ExtrinsicObject ``@id`` (symbolic like ``Document01`` or ``urn:uuid:…``) and also the
    ``xdsb:Document/@id`` of its bytes. ``document`` does not take part in equality: two entries are equal when
    their metadata is; bytes are compared through ``hash``/``size``.
    """

    entry_id: str
    unique_id: str
    mime_type: str
    document: Document | None = field(default=None, compare=False, repr=False)
    hash: str | None = None
    size: int | None = None
    creation_time: Dtm | None = None
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    confidentiality_codes: tuple[Code, ...] = ()
    healthcare_facility_type_code: Code | None = None
    practice_setting_code: Code | None = None
    language_code: str | None = None
    patient_id: Patient | None = None
    source_patient_id: Patient | None = None
    source_patient_info: tuple[str, ...] = ()
    authors: tuple[Author, ...] = ()
    title: str | None = None
    comments: str | None = None
    event_codes: tuple[Code, ...] = ()
    service_start_time: Dtm | None = None
    service_stop_time: Dtm | None = None
    legal_authenticator: Person | None = None
    limited_metadata: bool = False
    object_type: str = ns.DOC_ENTRY_STABLE
    extra_slots: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class SubmissionSet:
    """The XDS SubmissionSet (ebRIM RegistryPackage classified as ``a54d6aa5-…``)."""

    entry_id: str
    unique_id: str
    source_id: str
    submission_time: Dtm | None = None
    title: str | None = None
    comments: str | None = None
    content_type_code: Code | None = None
    authors: tuple[Author, ...] = ()
    intended_recipients: tuple[Recipient, ...] = ()
    patient_id: Patient | None = None
    limited_metadata: bool = False
    extra_slots: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Association:
    """An ebRIM Association; for a PnR the HasMember SubmissionSet -> DocumentEntry with status ``Original``."""

    entry_id: str
    source: str
    target: str
    type: str = ns.HAS_MEMBER
    submission_set_status: str | None = "Original"


@dataclass(frozen=True)
class Submission:
    """One ITI-41 submission: SubmissionSet, DocumentEntries with their documents, associations, the Direct
    address block (``direct_from``/``direct_to``) and the declared metadata level.

    ``level`` is what the ``direct:metadata-level`` header says (or will say); the XDS default when absent
    follows XDR and XDM for Direct Messaging §6.1.1. ``final_destination_delivery`` is the address block's
    ``X-DIRECT-FINAL-DESTINATION-DELIVERY`` request: the sender asks to be told when the message reached its
    final destination, not only the recipient's HISP (Delivery Notification IG §1.3, XDR and XDM for Direct Messaging §4.1).
    """

    submission_set: SubmissionSet
    document_entries: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...] = ()
    level: MetadataLevel = MetadataLevel.XDS
    direct_from: DirectAddress | None = None
    direct_to: tuple[DirectAddress, ...] = ()
    final_destination_delivery: bool = False

    def entry(self, entry_id: str) -> DocumentEntry | None:
        for entry in self.document_entries:
            if entry.entry_id == entry_id:
                return entry
        return None

    @property
    def sender(self) -> DirectAddress | None:
        """``direct:from``, else the SubmissionSet author's Direct address (XDR and XDM for Direct Messaging §5-11)."""
        if self.direct_from is not None:
            return self.direct_from
        for author in self.submission_set.authors:
            if author.addresses:
                return author.addresses[0]
        return None

    @property
    def recipients(self) -> tuple[DirectAddress, ...]:
        """``direct:to``, else every intendedRecipient XTN address (XDR and XDM for Direct Messaging §5)."""
        if self.direct_to:
            return self.direct_to
        return tuple(a for a in (r.address for r in self.submission_set.intended_recipients) if a is not None)
