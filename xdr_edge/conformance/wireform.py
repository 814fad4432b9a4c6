"""The HTTP Content-Type an ITI-41 message must carry, in both directions: what the sender catalogue asks of a
request and what the receiver catalogue asks of every answer.

- A SOAP 1.2 message on HTTP is ``application/soap+xml`` (RFC 3902, SOAP 1.2 Part 2 §7); ``text/xml`` is the
  SOAP 1.1 media type, which SOAP 1.2 clients such as JAX-WS refuse for a SOAP 1.2 binding.
- An MTOM message is ``multipart/related`` with ``type="application/xop+xml"``, a ``boundary``,
  ``start-info="application/soap+xml"`` and, when present, ``start`` as a ``<Content-ID>`` (W3C SOAP 1.2 MTOM §3,
  XOP 1.0 §4.1, RFC 2387). ``type`` and ``start-info`` hold media types and are read as such: Metro writes
  ``start-info="application/soap+xml;action=\\"...\\""``, the SOAP media type with its ``action`` (RFC 3902).
- The ITI-41 request itself must be MTOM (ITI TF-2b 3.41.5); an answer may be either form.

Pure: strings in, problems out.
"""

from __future__ import annotations

__all__ = ["reply_content_type_problems", "request_content_type"]

from xdr_edge.protocol.errors import RemoteProtocolError
from xdr_edge.protocol.mediatype import MediaType

_SOAP12 = "application/soap+xml"
_MTOM = "multipart/related"


def _holds(media: MediaType, param: str, essence: str) -> bool:
    """Whether parameter ``param`` is the media type ``essence`` (its own parameters, such as ``action``, aside)."""
    try:
        value = media.param_media_type(param)
    except RemoteProtocolError:
        return False
    return value is not None and value.matches(essence)


def _mtom_parameter_problems(media: MediaType) -> list[str]:
    problems = []
    if not _holds(media, "type", "application/xop+xml"):
        problems.append(f'type parameter is {media.param("type")!r}, expected "application/xop+xml"')
    if not media.param("boundary"):
        problems.append("no boundary parameter")
    if not _holds(media, "start-info", _SOAP12):
        problems.append(
            f'start-info is {media.param("start-info")!r}, expected "{_SOAP12}" (with or without its action)'
        )
    start = media.param("start")
    if start is not None and not (start.startswith("<") and start.endswith(">")):
        problems.append(f"start {start!r} is not wrapped in < >")
    return problems


def request_content_type(content_type: str) -> tuple[list[str], dict[str, str], bool]:
    """An ITI-41 request's Content-Type: its problems, its parameters, and whether it is MTOM at all."""
    try:
        media = MediaType.parse(content_type)
    except RemoteProtocolError as exc:
        return [f"Content-Type unreadable: {exc.message}"], {}, False
    if not media.matches(_MTOM):
        return (
            [
                f"Content-Type is {media.essence}, not {_MTOM} (MTOM is required, ITI TF-2b 3.41.5, W3C MTOM/XOP)"
            ],
            {},
            False,
        )
    return _mtom_parameter_problems(media), dict(media.params), True


def reply_content_type_problems(content_type: str) -> list[str]:
    """An ITI-41 answer's Content-Type (RegistryResponse or fault alike): SOAP 1.2 or MTOM, with the MTOM
    parameters a client needs to find the envelope."""
    if not content_type.strip():
        return ["no Content-Type header (a SOAP 1.2 answer is application/soap+xml or MTOM, RFC 3902)"]
    try:
        media = MediaType.parse(content_type)
    except RemoteProtocolError as exc:
        return [f"Content-Type unreadable: {exc.message}"]
    if media.matches(_MTOM):
        return _mtom_parameter_problems(media)
    if media.matches(_SOAP12):
        return []
    if media.matches("text/xml"):
        return [
            "Content-Type text/xml is the SOAP 1.1 media type; a SOAP 1.2 answer is application/soap+xml "
            "(RFC 3902, SOAP 1.2 Part 2 §7)"
        ]
    return [
        f"Content-Type {media.essence} is not a SOAP 1.2 media type (application/soap+xml or MTOM, RFC 3902)"
    ]
