"""C-CDA header extraction: DocumentEntry metadata from the head of a ClinicalDocument (pure, no I/O).

Why: a sender composing a submission from a C-CDA file should not make its user type what the document already
says (patient, author, type, confidentiality, language, dates), and the values must be the XDS forms of
ITI TF-3 4.2.3 (CX, XCN, XON, UTC DTM, ``sourcePatientInfo`` ``PID-n|...``).

Only the header is read. It precedes the first ``component`` child of ``ClinicalDocument``, so callers pass
the document's head (``Document.head()``, 64 KiB by default) and the parser stops at ``component``: a 500 MB
C-CDA is never parsed whole, and a head cut off mid-header still yields what it holds. Parsing is incremental
(:class:`lxml.etree.XMLPullParser`) with the same hardening as :mod:`xdr_edge.protocol.xml` (no DTD loading, no entity
resolution, no network), and a DOCTYPE is refused as it is everywhere else in xdr-edge.

Nothing here logs: every value is PHI.
"""

from __future__ import annotations

__all__ = ["CdaHeader", "cda_ts_to_dtm", "read_cda_header"]

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, cast

from lxml import etree

from xdr_edge.protocol import ns
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.model import Author, Code, DirectAddress, Dtm, Organization, Patient, Person, Telecom
from xdr_edge.protocol.xml import qname

CONFIDENTIALITY_SYSTEM: Final = "2.16.840.1.113883.5.25"  # HL7 v3 Confidentiality
LOINC: Final = "2.16.840.1.113883.6.1"

_CHUNK: Final = 8 * 1024
_CONFIDENTIALITY_NAMES: Final = {"N": "Normal", "R": "Restricted", "V": "Very Restricted"}
# HL7 v3 AdministrativeGender -> HL7 v2 table 0001 (PID-8, ITI TF-3 4.2.3).
_PID8: Final = {"M": "M", "F": "F", "UN": "U"}
_TS: Final = re.compile(r"^(\d{4,14})(?:\.\d{1,4})?([+-]\d{4})?$", re.ASCII)  # \d: 0-9 only


@dataclass(frozen=True)
class CdaHeader:
    """What a C-CDA header says, in XDS forms. Every field is None (or empty) when the header lacks it."""

    patient_id: Patient | None = None
    patient_name: tuple[str, str] | None = None  # (family, given)
    birth_time: str | None = None  # YYYYMMDD: a calendar date, never shifted to UTC
    gender: str | None = None  # HL7 v3 administrativeGenderCode as written (M, F, UN)
    title: str | None = None
    type_code: Code | None = None
    author: Author | None = None
    confidentiality: Code | None = None
    language_code: str | None = None
    effective_time: Dtm | None = None
    service_start_time: Dtm | None = None
    service_stop_time: Dtm | None = None
    legal_authenticator: Person | None = None
    source_patient_info: tuple[str, ...] = ()


def cda_ts_to_dtm(value: str) -> Dtm | None:
    """An HL7 v3 TS (``YYYYMMDDhhmmss[.ffff][+/-ZZzz]``) as a UTC DTM of the same precision, or None.

    XDS times are UTC (ITI TF-3 4.2.3) while CDA times carry the author's offset, e.g. ``20240102103000-0500`` is
    ``20240102153000``. Values without an offset, or coarser than an hour, are kept as written: there is
    nothing to convert them with, and shifting a bare date would change the day.
    """
    match = _TS.match(value.strip())
    if match is None:
        return None
    digits, offset = match.groups()
    local = Dtm(digits)
    if local.format_problems():
        return None
    if offset is None or len(digits) < 10:
        return local
    sign = 1 if offset[0] == "+" else -1
    shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return Dtm((local.to_datetime() - sign * shift).strftime("%Y%m%d%H%M%S")[: len(digits)])


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit() alone accepts "²" and other Unicode digits


def _v3(local: str) -> str:
    return qname(ns.CDA, local)


_ROOT: Final = _v3("ClinicalDocument")
_COMPONENT: Final = _v3("component")


def _pull(head: bytes) -> Iterator[tuple[str, etree._Element]]:
    """Start/end events over ``head`` fed in chunks; stops quietly where the bytes end or stop being XML."""
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    for offset in range(0, len(head), _CHUNK):
        try:
            parser.feed(head[offset : offset + _CHUNK])
            events = list(parser.read_events())
        except etree.XMLSyntaxError:
            # Malformed (or not XML at all): use what was read before the error, then stop.
            yield from _elements(_drain(parser))
            return
        yield from _elements(events)


def _drain(parser: etree.XMLPullParser) -> list[tuple[str, object]]:
    try:
        return list(parser.read_events())
    except etree.XMLSyntaxError:
        return []


def _elements(events: Iterable[tuple[str, object]]) -> Iterator[tuple[str, etree._Element]]:
    for event, item in events:
        if event in ("start", "end") and isinstance(item, etree._Element):
            yield event, item


def _header_root(head: bytes) -> etree._Element | None:
    """The ClinicalDocument element with its header children, or None when ``head`` is not a CDA document."""
    root: etree._Element | None = None
    depth = 0
    for event, element in _pull(head):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        if root is None:
            _refuse_doctype(element)
            if element.tag != _ROOT:
                return None
            root = element
        elif depth == 2 and element.tag == _COMPONENT:
            break
    return root


def _refuse_doctype(root: etree._Element) -> None:
    docinfo = root.getroottree().docinfo
    # libxml2 records an internal subset node for every DOCTYPE, with or without declarations in it.
    # (lxml-stubs wrongly declare internalDTD as never None.)
    internal = cast("etree.DTD | None", docinfo.internalDTD)
    if internal is not None:
        raise RemoteProtocolError(
            "the document contains a DOCTYPE declaration, which xdr-edge does not parse",
            code="doctype-forbidden",
            location="ClinicalDocument",
        )


def _find(el: etree._Element | None, path: str) -> etree._Element | None:
    if el is None:
        return None
    return el.find("/".join(_v3(step) for step in path.split("/")))


def _attr(el: etree._Element | None, path: str, name: str) -> str | None:
    target = el if not path else _find(el, path)
    if target is None:
        return None
    value = target.get(name)
    return value.strip() if value is not None and value.strip() else None


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    text = " ".join("".join(str(t) for t in el.itertext()).split())
    return text or None


def _name(name: etree._Element | None) -> tuple[str, str] | None:
    """(family, given) from a PN; the first given name only (XCN.3 holds one)."""
    if name is None:
        return None
    family = _text(_find(name, "family")) or ""
    given = _text(_find(name, "given")) or ""
    return (family, given) if family or given else None


def _person(entity: etree._Element | None, person_path: str) -> Person | None:
    """An XCN from an assignedAuthor/assignedEntity: its id (extension + root) and its person's name."""
    if entity is None:
        return None
    name = _name(_find(entity, f"{person_path}/name"))
    ident = _identifier(entity)
    if name is None and ident is None:
        return None
    family, given = name or ("", "")
    ext, root = ident or ("", "")
    return Person.of(family=family, given=given, id=ext, authority=root)


def _identifier(el: etree._Element) -> tuple[str, str] | None:
    """The first ``id`` with both ``@extension`` and ``@root`` (an id without extension names no one)."""
    for ident in el.iterfind(_v3("id")):
        ext, root = ident.get("extension"), ident.get("root")
        if ext and root:
            return ext.strip(), root.strip()
    return None


def _organization(org: etree._Element | None) -> Organization | None:
    name = _text(_find(org, "name"))
    if name is None:
        return None
    return Organization.of(name, _attr(org, "id", "root") or "")


def _telecoms(entity: etree._Element) -> tuple[Telecom, ...]:
    """``mailto:`` telecoms as XTN Direct addresses (authorTelecommunication, XDR and XDM for Direct Messaging §4.2, ITI TF-3 4.2.3.3)."""
    found: list[Telecom] = []
    for tel in entity.iterfind(_v3("telecom")):
        value = (tel.get("value") or "").strip()
        if value.lower().startswith("mailto:"):
            try:
                found.append(Telecom.of(DirectAddress.parse(value)))
            except ValueError:
                continue
    return tuple(found)


def _author(root: etree._Element) -> Author | None:
    assigned = _find(root, "author/assignedAuthor")
    if assigned is None:
        return None
    org = _organization(_find(assigned, "representedOrganization"))
    return Author(
        person=_person(assigned, "assignedPerson"),
        institutions=(org,) if org else (),
        telecoms=_telecoms(assigned),
    )


def _code(el: etree._Element | None, default_system: str = "") -> Code | None:
    code = _attr(el, "", "code")
    if el is None or code is None:
        return None
    system = _attr(el, "", "codeSystem") or default_system
    return Code(code, system, _attr(el, "", "displayName") or "")


def _confidentiality(root: etree._Element) -> Code | None:
    code = _code(_find(root, "confidentialityCode"), CONFIDENTIALITY_SYSTEM)
    if code is None or code.display:
        return code
    return Code(code.code, code.scheme, _CONFIDENTIALITY_NAMES.get(code.code, ""))


def _time(el: etree._Element | None, path: str) -> Dtm | None:
    value = _attr(el, path, "value")
    return cda_ts_to_dtm(value) if value else None


def _source_patient_info(
    patient_id: Patient | None, name: tuple[str, str] | None, birth: str | None, gender: str | None
) -> tuple[str, ...]:
    info: list[str] = []
    if patient_id is not None:
        info.append(f"PID-3|{patient_id.cx}")
    if name is not None:
        info.append(f"PID-5|{name[0]}^{name[1]}^^^")
    if birth is not None:
        info.append(f"PID-7|{birth}")
    if gender is not None:
        info.append(f"PID-8|{_PID8.get(gender, 'U')}")
    return tuple(info)


def read_cda_header(head: bytes) -> CdaHeader | None:
    """The header of the C-CDA whose first bytes are ``head``; None when they are not a CDA document.

    Raises :class:`~xdr_edge.protocol.errors.RemoteProtocolError` (``doctype-forbidden``) when it has a DOCTYPE.
    """
    root = _header_root(head)
    if root is None:
        return None
    role = _find(root, "recordTarget/patientRole")
    ident = _identifier(role) if role is not None else None
    patient_id = Patient.of(*ident) if ident else None
    patient = _find(role, "patient")
    name = _name(_find(patient, "name"))
    birth_value = _attr(patient, "birthTime", "value")
    birth = (
        birth_value[:8] if birth_value and _ascii_digits(birth_value[:8]) and len(birth_value) >= 8 else None
    )
    gender = _attr(patient, "administrativeGenderCode", "code")
    event = _find(root, "documentationOf/serviceEvent/effectiveTime")
    return CdaHeader(
        patient_id=patient_id,
        patient_name=name,
        birth_time=birth,
        gender=gender,
        title=_text(_find(root, "title")),
        type_code=_code(_find(root, "code"), LOINC),
        author=_author(root),
        confidentiality=_confidentiality(root),
        language_code=_attr(root, "languageCode", "code"),
        effective_time=_time(root, "effectiveTime"),
        service_start_time=_time(event, "low"),
        service_stop_time=_time(event, "high"),
        legal_authenticator=_person(_find(root, "legalAuthenticator/assignedEntity"), "assignedPerson"),
        source_patient_info=_source_patient_info(patient_id, name, birth, gender),
    )
