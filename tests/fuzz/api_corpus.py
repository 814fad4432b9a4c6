"""Seeds for the JSON API's targets, made by our own code: a valid request of every call (both authentication
flavours where the call takes both), MessageSend as base64 JSON and as a multipart form, and the forms an
integration engine writes (a part without Content-Type, ``application/octet-stream``, a declared media type).

Inputs name their call on the first line (``MessageSend``, line feed, then what follows): the same corpus feeds
the body reader (the rest is the JSON body) and the whole app (the rest is an entity, ``Content-Type:`` line,
blank line, body, as the receiver's targets take it; without one it is a JSON body). The certificates of the
CertificateEnroll seeds are the world's (made at run time), so those few seeds differ from run to run; every
other seed is the same bytes on every run.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from tests.fuzz.api_world import (
    APP_AUTH,
    LOGIN_AUTH,
    OTHER_ACCOUNT,
    RECIPIENT,
    SENDER,
    SPARE_ADDRESS,
    ApiWorld,
)
from tests.fuzz.corpus import entity
from xdr_edge.conformance.samples import sample_ccda

JSON = "application/json"
FORM_BOUNDARY = "fuzz-form-0b5c2b2e"
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
_P12_PASSWORD = "fuzz pkcs12 password"


def call_input(call: str, rest: bytes) -> bytes:
    """An input of the API targets: the call's name on the first line, then the body (or an entity)."""
    return call.encode("ascii") + b"\n" + rest


def split_call(data: bytes) -> tuple[str, bytes]:
    """The inverse of :func:`call_input`; without a line feed the whole input is the body of ``PingWithAuth``."""
    head, newline, rest = data.partition(b"\n")
    if not newline:
        return "PingWithAuth", data
    return head.decode("latin-1"), rest


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, indent=1).encode("utf-8")


def form(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = FORM_BOUNDARY) -> bytes:
    """A ``multipart/form-data`` body (RFC 7578) of (name, filename, Content-Type, content) parts."""
    out = bytearray()
    for name, filename, content_type, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += disposition.encode() + b"\r\n"
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def form_content_type(boundary: str = FORM_BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


def _send_fields(**extra: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": [RECIPIENT], **extra}


_METADATA = {
    "level": "xds",
    "patientId": "8675309^^^&2.16.840.1.113883.19.5&ISO",
    "title": "Referral",
    "comments": "Referral for\r\nfollow-up\tcare",
    "finalDeliveryNotification": True,
}


def json_bodies(world: ApiWorld) -> list[tuple[str, bytes]]:
    """A valid JSON body of every call (and its variants): (call, body)."""
    app_only = {k: v for k, v in APP_AUTH.items() if k != "accountId"}
    other = {**APP_AUTH, "accountId": OTHER_ACCOUNT}
    ccda = {"content": base64.b64encode(sample_ccda()).decode(), "name": "ccd.xml", "mimeType": "text/xml"}
    pdf = {"content": base64.b64encode(_PDF).decode(), "name": "referral.pdf"}
    spare = world.issued["spare"]
    p12 = pkcs12.serialize_key_and_certificates(
        b"spare",
        spare.key,
        spare.cert,
        None,
        BestAvailableEncryption(_P12_PASSWORD.encode()),
    )
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("PingWithAuth", {"auth": {**APP_AUTH, "userId": "u-7"}}),
        ("PingWithAuth", {"auth": LOGIN_AUTH}),
        ("PingWithAuth", {"auth": app_only}),
        ("PracticeSave", {"auth": other, "name": "Other Clinic", "active": True}),
        ("PracticeGet", {"auth": APP_AUTH}),
        ("PracticeList", {"auth": app_only, "after": "1000", "limit": 10}),
        ("CertificateEnroll", world.enrol_body(spare)),
        (
            "CertificateEnroll",
            {"auth": APP_AUTH, "pkcs12": base64.b64encode(p12).decode(), "pkcs12Password": _P12_PASSWORD},
        ),
        ("CertificateRevoke", {"auth": other, "fingerprint": "ab:" * 31 + "ab", "reason": "key lost"}),
        ("AddressBind", {"auth": APP_AUTH, "address": SPARE_ADDRESS}),
        ("AddressUnbind", {"auth": other, "address": SPARE_ADDRESS}),
        ("AddressBind", {"auth": other, "address": "@direct.fuzz-clinic.example"}),
        (
            "LoginSave",
            {"auth": other, "login": {"loginId": "night.shift", "userId": "u-9", "active": False}},
        ),
        ("MessageSend", {"auth": APP_AUTH, **_send_fields(documents=[ccda])}),
        ("MessageSend", {"auth": LOGIN_AUTH, **_send_fields(documents=[ccda, pdf], metadata=_METADATA)}),
        ("MessageStatus", {"auth": LOGIN_AUTH, "messageId": "0123456789abcdef0123456789abcdef"}),
        ("MessageStatus", {"auth": APP_AUTH, "messageId": world.last_message_id}),
    ]
    return [(call, _json(body)) for call, body in bodies]


def form_bodies() -> list[bytes]:
    """MessageSend as multipart forms: entities (``Content-Type:`` line, blank line, body)."""
    ccda = sample_ccda()
    request = _json({"auth": APP_AUTH, **_send_fields(metadata=_METADATA)})
    login_request = _json({"auth": LOGIN_AUTH, **_send_fields()})
    forms = [
        form([("request", None, JSON, request), ("document", "ccd.xml", "text/xml", ccda)]),
        form(
            [
                ("request", None, None, login_request),
                ("document", "referral.pdf", "application/octet-stream", _PDF),
                ("document", None, None, ccda),
            ]
        ),
    ]
    return [entity(form_content_type(), body) for body in forms]


def app_inputs(world: ApiWorld) -> list[bytes]:
    """Inputs of the ``api`` target: every JSON body and every form."""
    out = [call_input(call, entity(JSON, body)) for call, body in json_bodies(world)]
    out += [call_input("MessageSend", data) for data in form_bodies()]
    return out


def json_strings(value: object) -> tuple[list[str], set[str]]:
    """The string values in a parsed body, and its keys (a refusal may name a key, which is what went wrong; a
    value that is part of a named key is not a value quoted)."""
    values: list[str] = []
    keys: set[str] = set()

    def walk(item: object) -> None:
        if isinstance(item, str):
            values.append(item)
        elif isinstance(item, dict):
            keys.update(item)
            for sub in item.values():
                walk(sub)
        elif isinstance(item, list):
            for sub in item:
                walk(sub)

    walk(value)
    return values, keys
