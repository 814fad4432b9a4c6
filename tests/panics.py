"""A stand-in for a panic inside a Rust extension, for the tests of the last lines of defence (each WSGI app's,
the CLI's error boundary): a defect the library raises instead of an error, which is not an ``Exception``."""

from __future__ import annotations


class Panic(BaseException):
    """The shape of pyo3's ``PanicException``: it derives from ``BaseException``, so ``except Exception``
    misses it."""


#: What cryptography's PKCS#12 panic said: the debug print of the password's bytes (here "right" and a NUL).
PANIC_TEXT = "called `Result::unwrap()` on an `Err` value: NulError(5, [114, 105, 103, 104, 116, 0])"


def panics(*_: object, **__: object) -> None:
    """Put in place of a call a request makes: it panics."""
    raise Panic(PANIC_TEXT)
