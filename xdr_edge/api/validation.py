"""Checking a request against its schema in the OpenAPI document, naming the field at fault.

Why our own checker: the schemas are the ones the API publishes (:mod:`.schema`), so what is documented is what
is enforced; the subset they use (object, array, string, integer, boolean; required, additionalProperties,
length, pattern, enum, bounds) is small, and the messages must name the field (``documents[1].content``) and
never repeat the value, which may be a password or a private key. A full JSON Schema library would add a
dependency for the same result.
"""

from __future__ import annotations

__all__ = ["check"]

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from xdr_edge.api.refusals import Refusal, shown_name

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
}
_ARTICLE = {"object": "an object", "array": "an array", "integer": "an integer"}


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _bad(field: str, message: str, code: str = "invalid-field") -> Refusal:
    return Refusal(400, code, f"{field}: {message}", field=field)


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def check(value: Any, schema: Mapping[str, Any], field: str = "") -> None:
    """Raise a 400 :class:`Refusal` naming the first field of ``value`` that ``schema`` does not allow.

    JSON ``null`` is never a value (``wrong-type``): an optional field is left out, not set to null, so that
    no handler meets a None it did not expect."""
    where = field or "body"
    if value is None:
        raise _bad(where, "must not be null (leave the field out instead)", "wrong-type")
    kind = schema.get("type")
    if kind is not None:
        expected = _TYPES[kind]
        if not isinstance(value, expected) or (kind == "integer" and isinstance(value, bool)):
            raise _bad(where, f"must be {_ARTICLE.get(kind, 'a ' + kind)}", "wrong-type")
    if "enum" in schema and value not in schema["enum"]:
        raise _bad(where, "must be one of " + ", ".join(str(v) for v in schema["enum"]))
    if isinstance(value, dict):
        _check_object(value, schema, field)
    elif isinstance(value, list):
        _check_array(value, schema, field)
    elif isinstance(value, str):
        _check_string(value, schema, where)
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise _bad(where, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise _bad(where, f"must be at most {schema['maximum']}")


def _check_object(value: dict[str, Any], schema: Mapping[str, Any], field: str) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise _bad(_join(field, name), "is required", "missing-field")
    if schema.get("additionalProperties") is False:
        for name in value:
            if name not in properties:
                raise _bad(_join(field, shown_name(name)), "is not a field of this call", "unknown-field")
    for name, sub in properties.items():
        if name in value:
            check(value[name], sub, _join(field, name))


def _check_array(value: list[Any], schema: Mapping[str, Any], field: str) -> None:
    where = field or "body"
    if "minItems" in schema and len(value) < schema["minItems"]:
        raise _bad(where, f"needs at least {schema['minItems']} item(s)")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise _bad(where, f"takes at most {schema['maxItems']} items")
    items = schema.get("items")
    if items is not None:
        for index, item in enumerate(value):
            check(item, items, f"{where}[{index}]")


def _check_string(value: str, schema: Mapping[str, Any], where: str) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise _bad(
            where,
            "must not be empty"
            if schema["minLength"] == 1
            else f"needs at least {schema['minLength']} characters",
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise _bad(where, f"takes at most {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        raise _bad(where, schema.get("x-pattern-message", "is not in the expected form"))
