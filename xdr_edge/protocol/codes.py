"""The XDS ``errorCode`` values of a RegistryResponse (ITI TF-3 Table 4.2.4.1-2), and what each class of them tells
a sender. The one home for these strings: readers, writers, the receiver, the client and the conformance suite
all name codes from here, so "which codes mean duplicate" has one answer.
"""

from __future__ import annotations

__all__ = [
    "ALREADY_STORED",
    "DOCUMENT_QUEUED",
    "DUPLICATE_IN_MESSAGE",
    "DUPLICATE_IN_REGISTRY",
    "INFORMATIONAL",
    "METADATA_ERROR",
    "METADATA_ERRORS",
    "MISSING_DOCUMENT",
    "MISSING_DOCUMENT_METADATA",
    "NON_IDENTICAL_HASH",
    "NON_IDENTICAL_SIZE",
    "PATIENT_ID_MISMATCH",
    "REPOSITORY_DUPLICATE_IN_MESSAGE",
    "REPOSITORY_ERROR",
    "REPOSITORY_METADATA_ERROR",
    "TRANSIENT",
]

from typing import Final

#: A metadata error found by a registry or a document recipient: the catch-all for metadata validation.
METADATA_ERROR: Final = "XDSRegistryMetadataError"
#: A metadata error found against the documents (declared hash or size differ from the bytes), or an unusable
#: Direct address block.
REPOSITORY_METADATA_ERROR: Final = "XDSRepositoryMetadataError"
METADATA_ERRORS: Final = (METADATA_ERROR, REPOSITORY_METADATA_ERROR)
#: A DocumentEntry without its document (no MTOM part, no ``xdsb:Document``).
MISSING_DOCUMENT: Final = "XDSMissingDocument"
#: A document (MIME part or ``xdsb:Document``) that no DocumentEntry describes.
MISSING_DOCUMENT_METADATA: Final = "XDSMissingDocumentMetadata"
#: The same uniqueId twice in one submission.
DUPLICATE_IN_MESSAGE: Final = "XDSRegistryDuplicateUniqueIdInMessage"
REPOSITORY_DUPLICATE_IN_MESSAGE: Final = "XDSRepositoryDuplicateUniqueIdInMessage"
#: A SubmissionSet (or Folder) uniqueId already received.
DUPLICATE_IN_REGISTRY: Final = "XDSDuplicateUniqueIdInRegistry"
#: A DocumentEntry uniqueId already received for other bytes.
NON_IDENTICAL_HASH: Final = "XDSNonIdenticalHash"
NON_IDENTICAL_SIZE: Final = "XDSNonIdenticalSize"
PATIENT_ID_MISMATCH: Final = "XDSPatientIdDoesNotMatch"
#: An internal error of the recipient; xdr-edge also answers an unbound sender with it (there is no standard
#: code for an authorization refusal, so the one that blames neither the metadata nor the documents is used).
REPOSITORY_ERROR: Final = "XDSRepositoryError"
DOCUMENT_QUEUED: Final = "DocumentQueued"

#: What a sender may read as "this submission is already there" when it re-sends after an attempt whose outcome
#: was unknown: the standard answer is XDSDuplicateUniqueIdInRegistry; some recipients answer a resubmission with
#: the in-message codes instead. Our client accepts all three, and only when every error names our uniqueIds.
ALREADY_STORED: Final = frozenset(
    {DUPLICATE_IN_REGISTRY, DUPLICATE_IN_MESSAGE, REPOSITORY_DUPLICATE_IN_MESSAGE}
)

#: "Retry later": the recipient is busy or cannot reach its registry.
TRANSIENT: Final = frozenset(
    {
        "XDSRegistryBusy",
        "XDSRepositoryBusy",
        "XDSRegistryOutOfResources",
        "XDSRepositoryOutOfResources",
        "XDSRegistryNotAvailable",
    }
)

#: "Accepted with remarks": an XDR Document Recipient's PartialSuccess codes (ITI TF-2b 3.41.4.1.3) and warnings.
INFORMATIONAL: Final = frozenset(
    {
        "PartialFolderContentNotProcessed",
        "PartialReplaceContentNotProcessed",
        "PartialTransformNotProcessed",
        "PartialAppendContentNotProcessed",
        "PartialRelationshipContentNotProcessed",
        "PartialTransformReplaceNotProcessed",
        DOCUMENT_QUEUED,
        "XDSExtraMetadataNotSaved",
    }
)
