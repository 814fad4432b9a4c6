"""Tests for xdr_edge.protocol.cda: C-CDA header extraction from a document's head, stopping before the body."""

from __future__ import annotations

import pytest

from xdr_edge.protocol.cda import CdaHeader, cda_ts_to_dtm, read_cda_header
from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.model import Author, Code, DirectAddress, Dtm, Organization, Patient, Person, Telecom

# A small, realistic C-CDA R2.1 CCD written for these tests (fictional patient and providers).
HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:sdtc="urn:hl7-org:sdtc">
  <realmCode code="US"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.1" extension="2015-08-01"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/>
  <id root="2.16.840.1.113883.19.5.99999.1" extension="TT988"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC"
        displayName="Summarization of Episode Note"/>
  <title>Continuity of Care Document &amp; Summary</title>
  <effectiveTime value="20240102103000-0500"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="en-US"/>
  <recordTarget>
    <patientRole>
      <id root="2.16.840.1.113883.4.1" nullFlavor="MSK"/>
      <id extension="MRN-998877" root="2.16.840.1.113883.19.5.99999.2"/>
      <addr use="HP"><streetAddressLine>1357 Amber Dr</streetAddressLine><city>Beaverton</city>
        <state>OR</state><postalCode>97006</postalCode><country>US</country></addr>
      <telecom value="tel:+1(555)555-2003" use="HP"/>
      <patient>
        <name use="L"><given>Isabella</given><given>Isa</given><family>Jones</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1" displayName="Female"/>
        <birthTime value="19750501"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="20240102101500-0500"/>
    <assignedAuthor>
      <id extension="1234567893" root="2.16.840.1.113883.4.6"/>
      <code code="207Q00000X" codeSystem="2.16.840.1.113883.6.101" displayName="Family Medicine"/>
      <telecom use="WP" value="tel:+1(555)555-1002"/>
      <telecom use="WP" value="mailto:dr.wel@direct.getwell.example"/>
      <assignedPerson><name><prefix>Dr</prefix><given>Marcus</given><family>Wel</family></name></assignedPerson>
      <representedOrganization>
        <id root="1.2.3.4.5.6.7.8.9.1789"/>
        <name>Get Well Clinic</name>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.3.4.5.6.7.8.9.1789"/><name>Get Well Clinic</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <legalAuthenticator>
    <time value="20240102103000-0500"/>
    <signatureCode code="S"/>
    <assignedEntity>
      <id extension="5555555555" root="2.16.840.1.113883.4.6"/>
      <assignedPerson><name><given>Jane</given><family>Doe</family></name></assignedPerson>
    </assignedEntity>
  </legalAuthenticator>
  <documentationOf>
    <serviceEvent classCode="PCPR">
      <effectiveTime><low value="20231201"/><high value="202401021030-0500"/></effectiveTime>
    </serviceEvent>
  </documentationOf>
"""
BODY = """  <component>
    <structuredBody>
      <component><section><title>Problems</title><text>Hypertension</text></section></component>
    </structuredBody>
  </component>
</ClinicalDocument>
"""

EXPECTED = CdaHeader(
    patient_id=Patient.of("MRN-998877", "2.16.840.1.113883.19.5.99999.2"),
    patient_name=("Jones", "Isabella"),
    birth_time="19750501",
    gender="F",
    title="Continuity of Care Document & Summary",
    type_code=Code("34133-9", "2.16.840.1.113883.6.1", "Summarization of Episode Note"),
    author=Author(
        person=Person.of(id="1234567893", authority="2.16.840.1.113883.4.6", family="Wel", given="Marcus"),
        institutions=(Organization.of("Get Well Clinic", "1.2.3.4.5.6.7.8.9.1789"),),
        telecoms=(Telecom.of(DirectAddress("dr.wel@direct.getwell.example")),),
    ),
    confidentiality=Code("N", "2.16.840.1.113883.5.25", "Normal"),
    language_code="en-US",
    effective_time=Dtm("20240102153000"),
    service_start_time=Dtm("20231201"),
    service_stop_time=Dtm("202401021530"),
    legal_authenticator=Person.of(
        id="5555555555", authority="2.16.840.1.113883.4.6", family="Doe", given="Jane"
    ),
    source_patient_info=(
        "PID-3|MRN-998877^^^&2.16.840.1.113883.19.5.99999.2&ISO",
        "PID-5|Jones^Isabella^^^",
        "PID-7|19750501",
        "PID-8|F",
    ),
)


def test_reads_every_header_field() -> None:
    assert read_cda_header((HEADER + BODY).encode()) == EXPECTED


def test_extracted_values_are_well_formed_xds_values() -> None:
    header = read_cda_header((HEADER + BODY).encode())
    assert header is not None and header.patient_id is not None and header.author is not None
    assert header.patient_id.format_problems() == []
    assert header.author.person is not None and header.author.person.format_problems() == []
    assert [i.format_problems() for i in header.author.institutions] == [[]]
    assert header.effective_time is not None and header.effective_time.format_problems() == []


def test_stops_before_the_body() -> None:
    """Bytes after the first component are never parsed: a broken body cannot affect the header."""
    garbage_body = "  <component><<< not xml at all & \x00\x01"
    assert read_cda_header((HEADER + garbage_body).encode("utf-8")) == EXPECTED


def test_head_of_a_large_document_is_enough() -> None:
    section = "<component><section><text>" + "x" * 1000 + "</text></section></component>"
    big = (
        HEADER
        + "<component><structuredBody>"
        + section * 2000
        + "</structuredBody></component></ClinicalDocument>"
    )
    data = big.encode()
    assert len(data) > 2_000_000
    assert read_cda_header(data[: 64 * 1024]) == EXPECTED


def test_header_spanning_many_parser_chunks() -> None:
    padded = HEADER.replace("<recordTarget>", "<!--" + "pad " * 10_000 + "--><recordTarget>")
    assert read_cda_header((padded + BODY).encode()) == EXPECTED


def test_head_cut_inside_the_header_keeps_what_it_holds() -> None:
    cut = HEADER.index("<legalAuthenticator>")
    header = read_cda_header(HEADER[:cut].encode())
    assert header is not None
    assert header.patient_id == EXPECTED.patient_id
    assert header.author == EXPECTED.author
    assert header.legal_authenticator is None
    assert header.service_start_time is None


def test_utf16_document() -> None:
    text = (HEADER + BODY).replace('encoding="UTF-8"', 'encoding="UTF-16"')
    assert read_cda_header(text.encode("utf-16")) == EXPECTED


@pytest.mark.parametrize(
    "head",
    [
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"",
        b"<html><body>hello</body></html>",
        b'<ClinicalDocument xmlns="urn:hl7-org:v2"><title>x</title></ClinicalDocument>',
        b"\xff\xfe\x00garbage",
    ],
    ids=["pdf", "empty", "html", "wrong-namespace", "binary"],
)
def test_non_cda_is_none(head: bytes) -> None:
    assert read_cda_header(head) is None


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE ClinicalDocument>",
        '<!DOCTYPE ClinicalDocument SYSTEM "http://example.invalid/cda.dtd">',
        '<!DOCTYPE ClinicalDocument [<!ENTITY name "Jones">]>',
    ],
)
def test_doctype_is_refused(doctype: str) -> None:
    text = HEADER.replace("<ClinicalDocument ", doctype + "\n<ClinicalDocument ", 1) + BODY
    with pytest.raises(RemoteProtocolError) as info:
        read_cda_header(text.encode())
    assert info.value.code == "doctype-forbidden"
    assert "Jones" not in str(info.value)


def test_minimal_header_and_unknown_gender() -> None:
    text = """<ClinicalDocument xmlns="urn:hl7-org:v3">
      <code code="11488-4"/>
      <confidentialityCode code="R"/>
      <recordTarget><patientRole><id extension="42" root="1.2.3"/>
        <patient><administrativeGenderCode code="UN"/></patient></patientRole></recordTarget>
      <author><assignedAuthor><id root="1.2.3.4"/><assignedAuthoringDevice>
        <softwareName>EHR 9</softwareName></assignedAuthoringDevice></assignedAuthor></author>
      <component/></ClinicalDocument>"""
    header = read_cda_header(text.encode())
    assert header is not None
    assert header.type_code == Code("11488-4", "2.16.840.1.113883.6.1")
    assert header.confidentiality == Code("R", "2.16.840.1.113883.5.25", "Restricted")
    assert header.source_patient_info == ("PID-3|42^^^&1.2.3&ISO", "PID-8|U")
    assert header.author == Author()  # a device without id extension names no person
    assert header.patient_name is None and header.title is None and header.effective_time is None


@pytest.mark.parametrize(
    ("ts", "dtm"),
    [
        ("20240102103000-0500", "20240102153000"),
        ("202401021030+0100", "202401020930"),
        ("20231231233000-0130", "20240101010000"),
        ("20240102103000.1234-0500", "20240102153000"),
        ("2024010210+0000", "2024010210"),
        ("20240102103000", "20240102103000"),
        ("20240102-0500", "20240102"),
        ("2024", "2024"),
    ],
)
def test_cda_ts_to_utc_dtm(ts: str, dtm: str) -> None:
    assert cda_ts_to_dtm(ts) == Dtm(dtm)


@pytest.mark.parametrize("ts", ["2024-01-02", "20241302", "202401021", "", "20240102103000-05"])
def test_invalid_cda_ts_is_none(ts: str) -> None:
    assert cda_ts_to_dtm(ts) is None
