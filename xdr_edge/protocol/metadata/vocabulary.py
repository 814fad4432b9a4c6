"""The ebRIM vocabulary of XDS metadata the writer and the reader share (ITI TF-3 4.2.3, 4.2.5): slot names,
classification schemes, external identifier names and rim element names."""

from __future__ import annotations

__all__ = [
    "ASSOCIATION",
    "AUTHOR_MULTI",
    "AUTHOR_SINGLE",
    "CLASSIFICATION",
    "DE_CODE_SCHEMES",
    "DE_MODELLED_SLOTS",
    "DE_OTHER_LEGAL_SLOTS",
    "EXTERNAL_ID",
    "EXTRINSIC",
    "EXT_ID_NAMES",
    "ID_NAMESPACE",
    "KNOWN_OBJECT_TYPES",
    "PACKAGE",
    "SLOT",
    "SS_MODELLED_SLOTS",
    "rim",
]

import uuid
from typing import Final

from xdr_edge.protocol import ns
from xdr_edge.protocol.xml import qname

# Namespace for the deterministic ids of Classifications and ExternalIdentifiers: the same Submission always
# produces the same bytes (reproducible output, stable fixtures), and every id is a valid urn:uuid (XD 104).
ID_NAMESPACE: Final = uuid.UUID("6f1d4a0e-8a57-4b0e-9a53-0c3a5e1f2d77")
# ITI TF-3 4.2.3: DocumentEntry slots the model maps to fields, and the other legal names it keeps in ``extra_slots``.
DE_MODELLED_SLOTS: Final = frozenset(
    {
        "creationTime",
        "hash",
        "size",
        "languageCode",
        "legalAuthenticator",
        "serviceStartTime",
        "serviceStopTime",
        "sourcePatientId",
        "sourcePatientInfo",
    }
)
DE_OTHER_LEGAL_SLOTS: Final = frozenset({"URI", "repositoryUniqueId", "documentAvailability"})
SS_MODELLED_SLOTS: Final = frozenset({"submissionTime", "intendedRecipient"})
AUTHOR_SINGLE: Final = "authorPerson"
AUTHOR_MULTI: Final = ("authorInstitution", "authorRole", "authorSpecialty", "authorTelecommunication")
# ITI TF-3 4.2.5: coded DocumentEntry classifications, in the order the writer emits them.
DE_CODE_SCHEMES: Final = {
    ns.DE_CLASS_CODE: "classCode",
    ns.DE_CONFIDENTIALITY_CODE: "confidentialityCode",
    ns.DE_EVENT_CODE: "eventCodeList",
    ns.DE_FORMAT_CODE: "formatCode",
    ns.DE_HEALTHCARE_FACILITY_TYPE_CODE: "healthcareFacilityTypeCode",
    ns.DE_PRACTICE_SETTING_CODE: "practiceSettingCode",
    ns.DE_TYPE_CODE: "typeCode",
}
KNOWN_OBJECT_TYPES: Final = frozenset({ns.DOC_ENTRY_STABLE, ns.DOC_ENTRY_ON_DEMAND})
EXT_ID_NAMES: Final = {
    ns.DE_PATIENT_ID: "XDSDocumentEntry.patientId",
    ns.DE_UNIQUE_ID: "XDSDocumentEntry.uniqueId",
    ns.SS_UNIQUE_ID: "XDSSubmissionSet.uniqueId",
    ns.SS_SOURCE_ID: "XDSSubmissionSet.sourceId",
    ns.SS_PATIENT_ID: "XDSSubmissionSet.patientId",
}


def rim(local: str) -> str:
    """Clark name of an ebRIM 3.0 element."""
    return qname(ns.RIM, local)


EXTRINSIC: Final = rim("ExtrinsicObject")
PACKAGE: Final = rim("RegistryPackage")
CLASSIFICATION: Final = rim("Classification")
EXTERNAL_ID: Final = rim("ExternalIdentifier")
ASSOCIATION: Final = rim("Association")
SLOT: Final = rim("Slot")
