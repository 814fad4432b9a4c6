"""Hypothesis strategies for valid model objects, shared by every module's property tests.

Every strategy is built once (:func:`functools.cache`) and reused by every draw: building and validating a
strategy costs far more than drawing from it, and the composites below draw thousands of times per test.

Values are well-formed where the model has a format (CX, XCN, XON, XTN, DTM, OIDs: ITI TF-3 4.2.3) so that
validation-minded tests can rely on them; free text (titles, comments, code displays, roles) is deliberately
awkward: XML specials, non-ASCII, astral-plane characters and HL7 delimiters. Text never holds characters XML
1.0 cannot carry, nor leading/trailing whitespace (readers strip indentation around slot values).
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import TypeVar

from hypothesis import strategies as st

from xdr_edge.protocol.model import (
    Association,
    Author,
    Code,
    DirectAddress,
    Document,
    DocumentEntry,
    Dtm,
    MetadataLevel,
    Organization,
    Patient,
    Person,
    Recipient,
    Submission,
    SubmissionSet,
    Telecom,
)

T = TypeVar("T")

_XML_WS = " \t\r\n"
_AWKWARD = "&<>\"'^|~\\#%;:=]]>\u00e9\u00df\u4e2d\u05d0\U0001f600\u2028"


def _clean(text: str) -> str:
    return text.strip(_XML_WS)


# Characters XML 1.0 can carry: no controls (Cc), surrogates (Cs), unassigned/non-characters (Cn).
_xml_chars = st.characters(blacklist_categories=("Cs", "Cc", "Cn"))


@functools.cache
def awkward_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Non-empty free text with XML-special and non-ASCII characters."""
    alphabet = st.one_of(_xml_chars, st.sampled_from(_AWKWARD))
    return st.text(alphabet, min_size=1, max_size=max_size).map(_clean).filter(bool)


@functools.cache
def plain_name(max_size: int = 16) -> st.SearchStrategy[str]:
    """A name component: awkward but free of HL7 delimiters (``^ | & ~ \\``) so XCN/XON stay well-formed."""
    alphabet = st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="^|&~\\"),
        st.sampled_from("&<>\"'éßÖ中 -"),
    ).filter(lambda c: c not in "^|&~\\")
    return st.text(alphabet, min_size=1, max_size=max_size).map(_clean).filter(bool)


@functools.cache
def oids() -> st.SearchStrategy[str]:
    arcs = st.lists(st.integers(min_value=0, max_value=999_999), min_size=1, max_size=8)
    return st.builds(lambda root, rest: ".".join(map(str, [root, *rest])), st.integers(0, 2), arcs)


@functools.cache
def _optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """``None`` or a value of ``strategy``, built once per strategy."""
    return st.none() | strategy


@functools.cache
def _up_to(strategy: st.SearchStrategy[T], max_size: int) -> st.SearchStrategy[tuple[T, ...]]:
    """Tuples of 0..max_size values of ``strategy``, built once per strategy and size."""
    return st.lists(strategy, max_size=max_size).map(tuple)


_ident = st.text("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@functools.cache
def direct_addresses() -> st.SearchStrategy[DirectAddress]:
    local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,14}", fullmatch=True)
    domain = st.lists(_label, min_size=2, max_size=3).map(".".join)
    return st.builds(lambda lp, dom: DirectAddress(f"{lp}@{dom}"), local, domain)


@functools.cache
def dtms() -> st.SearchStrategy[Dtm]:
    """UTC DTM values at every HL7 precision (YYYY ... YYYYMMDDhhmmss)."""
    moments = st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    )
    precision = st.sampled_from((4, 6, 8, 10, 12, 14))
    return st.builds(lambda m, n: Dtm(Dtm.from_datetime(m).text[:n]), moments, precision)


@functools.cache
def patients() -> st.SearchStrategy[Patient]:
    return st.builds(Patient.of, _ident, oids())


@functools.cache
def persons() -> st.SearchStrategy[Person]:
    named = st.builds(lambda f, g: Person.of(family=f, given=g), plain_name(), plain_name())
    with_id = st.builds(
        lambda i, a, f: Person.of(id=i, authority=a, family=f), _ident, oids(), st.just("") | plain_name()
    )
    return named | with_id


@functools.cache
def organizations() -> st.SearchStrategy[Organization]:
    return st.builds(Organization.of, plain_name(), st.just("") | oids())


@functools.cache
def telecoms() -> st.SearchStrategy[Telecom]:
    return st.builds(Telecom.of, direct_addresses())


@functools.cache
def recipients() -> st.SearchStrategy[Recipient]:
    return st.builds(
        Recipient.of,
        direct_addresses(),
        organization=st.none() | organizations(),
        person=st.none() | persons(),
    )


@functools.cache
def codes() -> st.SearchStrategy[Code]:
    return st.builds(
        Code,
        code=awkward_text(16),
        scheme=oids() | awkward_text(16),
        display=st.just("") | awkward_text(),
    )


@functools.cache
def authors() -> st.SearchStrategy[Author]:
    return st.builds(
        Author,
        person=st.none() | persons(),
        institutions=st.lists(organizations(), max_size=2).map(tuple),
        roles=st.lists(awkward_text(12), max_size=2).map(tuple),
        specialties=st.lists(awkward_text(12), max_size=2).map(tuple),
        telecoms=st.lists(telecoms(), max_size=2).map(tuple),
    )


@functools.cache
def _extra_slots() -> st.SearchStrategy[tuple[tuple[str, tuple[str, ...]], ...]]:
    """``urn:`` extension slots (legal for any object, ITI TF-3 4.2.3) with distinct names."""
    values = st.lists(awkward_text(16), max_size=3).map(tuple)
    return st.lists(values, max_size=2).map(
        lambda vs: tuple((f"urn:example:xdr-edge:slot{i}", v) for i, v in enumerate(vs, start=1))
    )


@functools.cache
def _source_patient_info() -> st.SearchStrategy[tuple[str, ...]]:
    fields = st.tuples(
        patients().map(lambda p: f"PID-3|{p.cx}"),
        st.builds(lambda f, g: f"PID-5|{f}^{g}^^^", plain_name(), plain_name()),
        dtms().map(lambda d: f"PID-7|{d.text[:8]}"),
        st.sampled_from("MFOU").map(lambda g: f"PID-8|{g}"),
    )
    return st.just(()) | fields


@functools.cache
def documents() -> st.SearchStrategy[Document]:
    return st.builds(Document.from_bytes, st.binary(max_size=256))


_DOCUMENT_BYTES = st.binary(max_size=256)
_BOOLEANS = st.booleans()
_MIME_TYPES = st.sampled_from(("text/xml", "application/pdf", "text/plain", "application/xml"))
_LANGUAGES = st.none() | st.sampled_from(("en-us", "en-US", "es", "fr-CA"))
_TITLES = st.none() | st.just("") | awkward_text()
_LEVELS = st.sampled_from(MetadataLevel)
_DIRECT_TO = st.lists(direct_addresses(), max_size=2, unique=True)


@functools.cache
def _counts(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@st.composite
def document_entries(
    draw: st.DrawFn, entry_id: str = "Document01", unique_id: str | None = None
) -> DocumentEntry:
    """A DocumentEntry whose optional attributes are each sometimes set; hash/size, when present, match
    its document's bytes."""
    data = draw(_DOCUMENT_BYTES)
    document = Document.from_bytes(data, name=f"{entry_id}.bin")
    sha1, size = hashlib.sha1(data).hexdigest(), len(data)
    with_digest = draw(_BOOLEANS)
    return DocumentEntry(
        entry_id=entry_id,
        unique_id=unique_id if unique_id is not None else draw(oids()),
        mime_type=draw(_MIME_TYPES),
        document=document,
        hash=sha1 if with_digest else None,
        size=size if with_digest else None,
        creation_time=draw(_optional(dtms())),
        class_code=draw(_optional(codes())),
        type_code=draw(_optional(codes())),
        format_code=draw(_optional(codes())),
        confidentiality_codes=draw(_up_to(codes(), 2)),
        healthcare_facility_type_code=draw(_optional(codes())),
        practice_setting_code=draw(_optional(codes())),
        language_code=draw(_LANGUAGES),
        patient_id=draw(_optional(patients())),
        source_patient_id=draw(_optional(patients())),
        source_patient_info=draw(_source_patient_info()),
        authors=draw(_up_to(authors(), 2)),
        title=draw(_TITLES),
        comments=draw(_optional(awkward_text(40))),
        event_codes=draw(_up_to(codes(), 2)),
        service_start_time=draw(_optional(dtms())),
        service_stop_time=draw(_optional(dtms())),
        legal_authenticator=draw(_optional(persons())),
        limited_metadata=draw(_BOOLEANS),
        extra_slots=draw(_extra_slots()),
    )


@functools.cache
def _object_id(symbolic: str) -> st.SearchStrategy[str]:
    return st.just(symbolic) | st.uuids().map(lambda u: f"urn:uuid:{u}")


@st.composite
def submission_sets(
    draw: st.DrawFn, entry_id: str = "SubmissionSet01", unique_id: str | None = None
) -> SubmissionSet:
    return SubmissionSet(
        entry_id=entry_id,
        unique_id=unique_id if unique_id is not None else draw(oids()),
        source_id=draw(oids()),
        submission_time=draw(_optional(dtms())),
        title=draw(_optional(awkward_text())),
        comments=draw(_optional(awkward_text(40))),
        content_type_code=draw(_optional(codes())),
        authors=draw(_up_to(authors(), 2)),
        intended_recipients=draw(_up_to(recipients(), 3)),
        patient_id=draw(_optional(patients())),
        limited_metadata=draw(_BOOLEANS),
        extra_slots=draw(_extra_slots()),
    )


@st.composite
def submissions(draw: st.DrawFn, min_entries: int = 1, max_entries: int = 3) -> Submission:
    """A Submission with 1-3 DocumentEntries, distinct ids and uniqueIds, one HasMember association per entry
    (SubmissionSetStatus Original, ITI TF-3 4.3.1, XDR Limited Metadata), a level, and sometimes the Direct address block."""
    count = draw(_counts(min_entries, max_entries))
    base = draw(oids())
    entry_ids = [draw(_object_id(f"Document{i:02d}")) for i in range(1, count + 1)]
    entries = tuple(
        draw(document_entries(entry_id=eid, unique_id=f"{base}.{i}")) for i, eid in enumerate(entry_ids, 1)
    )
    ss = draw(submission_sets(entry_id=draw(_object_id("SubmissionSet01")), unique_id=f"{base}.0"))
    associations = tuple(
        Association(entry_id=f"as{i:02d}", source=ss.entry_id, target=e.entry_id)
        for i, e in enumerate(entries, 1)
    )
    return Submission(
        submission_set=ss,
        document_entries=entries,
        associations=associations,
        level=draw(_LEVELS),
        direct_from=draw(_optional(direct_addresses())),
        direct_to=tuple(draw(_DIRECT_TO)),
    )


__all__ = [
    "authors",
    "awkward_text",
    "codes",
    "direct_addresses",
    "document_entries",
    "documents",
    "dtms",
    "oids",
    "organizations",
    "patients",
    "persons",
    "plain_name",
    "recipients",
    "submission_sets",
    "submissions",
    "telecoms",
]
