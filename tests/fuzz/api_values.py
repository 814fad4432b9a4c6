"""Structure-aware inputs for the JSON API (the ``api-values`` target): the fuzzer's bytes are read as choices,
which valid request to start from (every call, both authentication flavours), which of its values to change and
into what. Every execution is a well-formed JSON request with the right authentication whose values are hostile.

Why: byte-level mutation of a JSON body seldom keeps it well-formed with a password that still matches, so it
rarely gets past the reader and the schema into the handlers and the libraries they call. Fuzzing the values
found in a minute what over half an hour of byte mutation had not: a PKCS#12 password holding a NUL made
``cryptography`` panic (a pyo3 ``PanicException``, which is not an ``Exception``) and the call went unanswered.

The choices are read from the input in order, one byte each; when the input runs out every further choice is 0,
which keeps a value as it is, so a short input changes little and the empty input is the valid request itself.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fuzz.api_corpus import call_input, json_strings
from tests.fuzz.api_world import ApiWorld
from tests.fuzz.choices import HOSTILE, TEXT_EDITS, Choices, edit_text
from tests.fuzz.corpus import entity

_NON_STRINGS: tuple[object, ...] = (None, True, False, 0, -1, 2**63, 1.5e308, [], {}, [""], {"": ""})
_KEEP = 192  # a choice below this keeps the value (and looks inside it)


class ValueMutator:
    """Mutates a parsed request's values as the choices say; the pool is every string value of the seeds."""

    def __init__(self, bodies: list[tuple[str, dict[str, Any]]]) -> None:
        self.bodies = bodies
        self.pool: tuple[str, ...] = (
            *HOSTILE,
            *sorted({s for _, body in bodies for s in json_strings(body)[0]}),
        )

    def input_for(self, data: bytes) -> bytes:
        """The API input (call name, entity) the bytes choose."""
        choices = Choices(data)
        call, body = self.bodies[choices.byte() % len(self.bodies)]
        mutated = self._object(body, choices)  # the body stays an object: the values are what is fuzzed
        text = json.dumps(mutated, indent=1)  # ASCII: a lone surrogate goes as its \\u escape
        return call_input(call, entity("application/json", text.encode("ascii")))

    def _value(self, value: object, choices: Choices) -> object:
        choice = choices.byte()
        if choice < _KEEP:
            if isinstance(value, dict):
                return self._object(value, choices)
            if isinstance(value, list):
                return [self._value(item, choices) for item in value]
            return value
        kind = choice % 8
        text = value if isinstance(value, str) else ""
        if kind < TEXT_EDITS:
            return edit_text(kind, text, choices, self.pool)
        if kind == TEXT_EDITS:
            return choices.pick(_NON_STRINGS)
        return [value, choices.pick(self.pool)]

    def _object(self, value: dict[str, Any], choices: Choices) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if choices.byte() == 255:  # drop the field
                continue
            out[key] = self._value(item, choices)
        if choices.byte() == 255:  # add one
            out[choices.pick(self.pool)] = choices.pick(self.pool)
        return out


def value_mutator(world: ApiWorld) -> ValueMutator:
    from tests.fuzz.api_corpus import json_bodies

    return ValueMutator([(call, json.loads(body)) for call, body in json_bodies(world)])


def value_seeds(mutator: ValueMutator) -> list[bytes]:
    """Each valid request as it is (one byte: its index), and each with every value changed once."""
    seeds = [bytes([i]) for i in range(len(mutator.bodies))]
    seeds += [
        bytes([i]) + bytes([1, _KEEP + k, 0, 0] * 16) for i in range(len(mutator.bodies)) for k in range(8)
    ]
    return seeds
