"""Synthetic sample documents for the demo, the conformance suite and tests: a small C-CDA (Continuity of Care
Document) with an invented patient, and a one-page PDF. No real person's data; generated, not copied."""

from __future__ import annotations

__all__ = ["sample_ccda", "sample_pdf"]

from datetime import UTC, datetime


def sample_ccda(
    *,
    patient_id: str = "TEST-0001",
    patient_authority: str = "2.16.840.1.113883.19.5",
    family: str = "Testpatient",
    given: str = "Alex",
    title: str = "Continuity of Care Document",
    effective: datetime | None = None,
) -> bytes:
    """A C-CDA R2.1 CCD header with a minimal structured body (enough for header-driven metadata)."""
    when = (effective or datetime(2026, 11, 2, 9, 30, tzinfo=UTC)).strftime("%Y%m%d%H%M%S+0000")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:sdtc="urn:hl7-org:sdtc">
  <realmCode code="US"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.1" extension="2015-08-01"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/>
  <id root="2.16.840.1.113883.19.5.99999.1" extension="doc-{patient_id}"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" codeSystemName="LOINC"
        displayName="Summarization of Episode Note"/>
  <title>{title}</title>
  <effectiveTime value="{when}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25" displayName="Normal"/>
  <languageCode code="en-US"/>
  <recordTarget>
    <patientRole>
      <id root="{patient_authority}" extension="{patient_id}"/>
      <patient>
        <name use="L"><given>{given}</given><family>{family}</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="19700101"/>
      </patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{when}"/>
    <assignedAuthor>
      <id root="2.16.840.1.113883.4.6" extension="9999999999"/>
      <assignedPerson><name><given>Sam</given><family>Smith</family><prefix>Dr</prefix></name></assignedPerson>
      <representedOrganization>
        <id root="2.16.840.1.113883.19.5"/>
        <name>Demo Family Practice</name>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="2.16.840.1.113883.19.5"/><name>Demo Family Practice</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <documentationOf><serviceEvent classCode="PCPR">
    <effectiveTime><low value="20261001"/><high value="{when}"/></effectiveTime>
  </serviceEvent></documentationOf>
  <component><structuredBody>
    <component><section>
      <templateId root="2.16.840.1.113883.10.20.22.2.5.1" extension="2015-08-01"/>
      <code code="11450-4" codeSystem="2.16.840.1.113883.6.1" displayName="Problem list"/>
      <title>Problems</title>
      <text>No known problems (synthetic demo document).</text>
    </section></component>
  </structuredBody></component>
</ClinicalDocument>
""".encode()


def sample_pdf(text: str = "xdr-edge demo document (synthetic)") -> bytes:
    """A valid one-page PDF 1.4 with one line of text, built with exact cross-reference offsets."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
