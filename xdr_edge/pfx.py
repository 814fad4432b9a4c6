"""How much work opening a PKCS#12 file will take, read from its ASN.1 before anything is decrypted.

Why: a PKCS#12 file (RFC 7292) carries its own key-derivation cost. Its integrity MAC, every encrypted
SafeContents and every shrouded private key name an iteration count, and opening the file (OpenSSL's
``PKCS12_parse``, which :func:`cryptography.hazmat.primitives.serialization.pkcs12.load_pkcs12` calls) runs
every one of them. A file from someone else with 2^31 iterations holds a CPU for many minutes, and a wrong
password is only detected after the work. So before a file that came over the network is opened, its costs
are added up here and a file above a budget is refused.

What is read, without decrypting anything:

- ``MacData.iterations`` (RFC 7292 §4; with PBMAC1, RFC 9579, the iterations of its PBKDF2);
- the ``contentEncryptionAlgorithm`` of each ``EncryptedData`` in the AuthenticatedSafe (RFC 7292 §4.1,
  RFC 5652 §8);
- the ``encryptionAlgorithm`` of each ``pkcs8ShroudedKeyBag`` (RFC 7292 §4.2.2, RFC 5208 §6) in the plain
  SafeContents, nested ``safeContentsBag`` included;

each algorithm being PKCS#12 PBE (RFC 7292 Appendix C), PBES1 (RFC 8018 §6.1) or PBES2 with PBKDF2 (RFC 8018
§6.2, Appendix A.2). Any other scheme (scrypt, whose memory cost is another matter; public-key privacy or
integrity modes) is refused as unsupported rather than opened blind.

What cannot be read: bags *inside* an encrypted SafeContents are only visible after decryption. Every tool we
know (OpenSSL, Windows, Java's keytool, macOS) puts the shrouded key in a plain SafeContents and only
certificates in the encrypted one; a file built otherwise is checked only on what it shows.

Both DER and BER (indefinite lengths, constructed OCTET STRINGs, as some older tools write) are read; the walk
is bounded in depth and in the number of elements.
"""

from __future__ import annotations

__all__ = ["Pkcs12Unreadable", "key_derivation_iterations"]

from dataclasses import dataclass

_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04
_CONSTRUCTED_OCTET_STRING = 0x24
_OID = 0x06
_EXPLICIT_0 = 0xA0

_DATA = "1.2.840.113549.1.7.1"
_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
_SAFE_CONTENTS_BAG = "1.2.840.113549.1.12.10.1.6"
_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_PBMAC1 = "1.2.840.113549.1.5.14"
#: pbeWithSHAAnd128BitRC4 ... pbewithSHAAnd40BitRC2-CBC (RFC 7292 Appendix C) and PBES1 (RFC 8018 Appendix A.3):
#: their parameters are ``SEQUENCE { salt OCTET STRING, iterations INTEGER }``.
_SALT_AND_ITERATIONS = frozenset(
    {f"1.2.840.113549.1.12.1.{n}" for n in range(1, 7)}
    | {f"1.2.840.113549.1.5.{n}" for n in (1, 3, 4, 6, 10, 11)}
)

_MAX_DEPTH = 24
_MAX_ELEMENTS = 20_000


class Pkcs12Unreadable(ValueError):
    """The data is not a PKCS#12 file this module can read, or it uses a scheme it does not know."""


@dataclass(frozen=True)
class _Element:
    tag: int
    content: bytes


class _Reader:
    """A bounded ASN.1 (DER or BER) reader: elements as (tag, content) pairs."""

    def __init__(self) -> None:
        self.elements = 0

    def children(self, data: bytes, depth: int = 0) -> list[_Element]:
        """Every element of ``data`` (the content of a constructed element), in order."""
        if depth > _MAX_DEPTH:
            raise Pkcs12Unreadable("the PKCS#12 structure is nested too deeply")
        found = []
        position = 0
        while position < len(data):
            element, position = self._element(data, position, depth)
            found.append(element)
        return found

    def one(self, data: bytes, depth: int = 0) -> _Element:
        elements = self.children(data, depth)
        if len(elements) != 1:
            raise Pkcs12Unreadable("expected one ASN.1 element")
        return elements[0]

    def _element(self, data: bytes, position: int, depth: int) -> tuple[_Element, int]:
        self.elements += 1
        if self.elements > _MAX_ELEMENTS:
            raise Pkcs12Unreadable("the PKCS#12 structure has too many elements")
        if position + 2 > len(data):
            raise Pkcs12Unreadable("truncated ASN.1 element")
        tag = data[position]
        if tag & 0x1F == 0x1F:
            raise Pkcs12Unreadable("an ASN.1 tag this structure never uses")
        first = data[position + 1]
        start = position + 2
        if first == 0x80:  # BER indefinite length: the content runs to an end-of-contents pair of zero octets
            if not tag & 0x20:
                raise Pkcs12Unreadable("indefinite length on a primitive ASN.1 element")
            inner = start
            while True:
                if data[inner : inner + 2] == b"\x00\x00":
                    return _Element(tag, data[start:inner]), inner + 2
                if inner >= len(data):
                    raise Pkcs12Unreadable("unterminated indefinite-length ASN.1 element")
                _, inner = self._element(data, inner, depth + 1)
        if first & 0x80:
            count = first & 0x7F
            if count > 4 or start + count > len(data):
                raise Pkcs12Unreadable("ASN.1 length out of range")
            length = int.from_bytes(data[start : start + count], "big")
            start += count
        else:
            length = first
        end = start + length
        if end > len(data):
            raise Pkcs12Unreadable("truncated ASN.1 element")
        return _Element(tag, data[start:end]), end

    def sequence(self, element: _Element, depth: int, what: str) -> list[_Element]:
        if element.tag != _SEQUENCE:
            raise Pkcs12Unreadable(f"{what}: expected a SEQUENCE")
        return self.children(element.content, depth + 1)

    def octets(self, element: _Element, depth: int) -> bytes:
        """An OCTET STRING's bytes, a BER constructed one's pieces joined."""
        if element.tag == _OCTET_STRING:
            return element.content
        if element.tag == _CONSTRUCTED_OCTET_STRING:
            return b"".join(
                self.octets(piece, depth + 1) for piece in self.children(element.content, depth + 1)
            )
        raise Pkcs12Unreadable("expected an OCTET STRING")

    def explicit(self, element: _Element, depth: int) -> _Element:
        if element.tag != _EXPLICIT_0:
            raise Pkcs12Unreadable("expected an [0] EXPLICIT element")
        return self.one(element.content, depth + 1)


def _oid(element: _Element) -> str:
    if element.tag != _OID or not element.content:
        raise Pkcs12Unreadable("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for octet in element.content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise Pkcs12Unreadable("malformed OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(n) for n in (first, arcs[0] - 40 * first, *arcs[1:]))


def _positive(element: _Element, what: str) -> int:
    if element.tag != _INTEGER or not element.content or len(element.content) > 8:
        raise Pkcs12Unreadable(f"{what}: expected a small INTEGER")
    value = int.from_bytes(element.content, "big", signed=True)
    if value < 1:
        raise Pkcs12Unreadable(f"{what}: must be at least 1")
    return value


def key_derivation_iterations(data: bytes) -> int:
    """The iterations of every key derivation that opening the PKCS#12 ``data`` runs, added up.

    Raises :class:`Pkcs12Unreadable` (a ``ValueError``) when the data is not a PKCS#12 file, or uses a
    scheme whose cost this module cannot read.
    """
    reader = _Reader()
    pfx = reader.sequence(reader.one(data), 0, "PFX")
    if len(pfx) not in (2, 3):
        raise Pkcs12Unreadable("PFX: expected version, authSafe and an optional macData")
    total = _mac_cost(reader, pfx[2]) if len(pfx) == 3 else 0
    content_type, content = _content_info(reader, pfx[1], 1)
    if content_type != _DATA:
        raise Pkcs12Unreadable("only password integrity mode is supported (the authSafe is not data)")
    authenticated_safe = reader.one(reader.octets(content, 2), 2)
    for info in reader.sequence(authenticated_safe, 2, "AuthenticatedSafe"):
        kind, inner = _content_info(reader, info, 3)
        if kind == _DATA:
            total += _safe_contents_cost(reader, reader.one(reader.octets(inner, 4), 4), 4)
        elif kind == _ENCRYPTED_DATA:
            encrypted = reader.sequence(inner, 4, "EncryptedData")
            if len(encrypted) < 2:
                raise Pkcs12Unreadable("EncryptedData: expected version and encryptedContentInfo")
            content_info = reader.sequence(encrypted[1], 5, "EncryptedContentInfo")
            if len(content_info) < 2:
                raise Pkcs12Unreadable("EncryptedContentInfo: no contentEncryptionAlgorithm")
            total += _algorithm_cost(reader, content_info[1], 6)
        else:
            raise Pkcs12Unreadable(
                "only data and encryptedData contents are supported (no public-key privacy)"
            )
    return total


def _content_info(reader: _Reader, element: _Element, depth: int) -> tuple[str, _Element]:
    parts = reader.sequence(element, depth, "ContentInfo")
    if len(parts) != 2:
        raise Pkcs12Unreadable("ContentInfo: expected contentType and content")
    return _oid(parts[0]), reader.explicit(parts[1], depth + 1)


def _mac_cost(reader: _Reader, element: _Element) -> int:
    parts = reader.sequence(element, 1, "MacData")
    if not 2 <= len(parts) <= 3:
        raise Pkcs12Unreadable("MacData: expected mac, macSalt and iterations")
    digest_info = reader.sequence(parts[0], 2, "DigestInfo")
    algorithm = reader.sequence(digest_info[0], 3, "AlgorithmIdentifier") if digest_info else []
    if algorithm and _oid(algorithm[0]) == _PBMAC1:
        if len(algorithm) != 2:
            raise Pkcs12Unreadable("PBMAC1: no parameters")
        parameters = reader.sequence(algorithm[1], 4, "PBMAC1-params")
        if not parameters:
            raise Pkcs12Unreadable("PBMAC1: no key derivation function")
        return _pbkdf2_cost(reader, parameters[0], 5)
    return _positive(parts[2], "MacData.iterations") if len(parts) == 3 else 1


def _safe_contents_cost(reader: _Reader, element: _Element, depth: int) -> int:
    total = 0
    for bag in reader.sequence(element, depth, "SafeContents"):
        parts = reader.sequence(bag, depth + 1, "SafeBag")
        if len(parts) < 2:
            raise Pkcs12Unreadable("SafeBag: expected bagId and bagValue")
        kind = _oid(parts[0])
        if kind == _SHROUDED_KEY_BAG:
            encrypted_key = reader.sequence(
                reader.explicit(parts[1], depth + 2), depth + 3, "EncryptedPrivateKeyInfo"
            )
            if not encrypted_key:
                raise Pkcs12Unreadable("EncryptedPrivateKeyInfo: no encryptionAlgorithm")
            total += _algorithm_cost(reader, encrypted_key[0], depth + 4)
        elif kind == _SAFE_CONTENTS_BAG:
            total += _safe_contents_cost(reader, reader.explicit(parts[1], depth + 2), depth + 3)
    return total


def _algorithm_cost(reader: _Reader, element: _Element, depth: int) -> int:
    parts = reader.sequence(element, depth, "AlgorithmIdentifier")
    if len(parts) != 2:
        raise Pkcs12Unreadable("an encryption algorithm without parameters")
    kind = _oid(parts[0])
    if kind == _PBES2:
        parameters = reader.sequence(parts[1], depth + 1, "PBES2-params")
        if len(parameters) != 2:
            raise Pkcs12Unreadable("PBES2-params: expected keyDerivationFunc and encryptionScheme")
        return _pbkdf2_cost(reader, parameters[0], depth + 2)
    if kind in _SALT_AND_ITERATIONS:
        parameters = reader.sequence(parts[1], depth + 1, "PBE parameters")
        if len(parameters) != 2:
            raise Pkcs12Unreadable("PBE parameters: expected salt and iterations")
        return _positive(parameters[1], "PBE iterations")
    raise Pkcs12Unreadable(f"an encryption scheme whose cost is unknown ({kind})")


def _pbkdf2_cost(reader: _Reader, element: _Element, depth: int) -> int:
    parts = reader.sequence(element, depth, "keyDerivationFunc")
    if len(parts) != 2 or _oid(parts[0]) != _PBKDF2:
        raise Pkcs12Unreadable("a key derivation function other than PBKDF2")
    parameters = reader.sequence(parts[1], depth + 1, "PBKDF2-params")
    if len(parameters) < 2:
        raise Pkcs12Unreadable("PBKDF2-params: expected salt and iterationCount")
    return _positive(parameters[1], "PBKDF2 iterationCount")
