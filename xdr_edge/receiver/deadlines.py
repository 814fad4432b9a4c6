"""Reading from a client connection against a deadline, not only a per-read timeout.

Why: a socket timeout bounds one read. A client that sends one byte every few seconds never trips it, and holds
the worker thread that reads from it for as long as it likes (the "slowloris" attack: one byte a second keeps a
request's headers, or its body, arriving forever). Each stream here bounds the *total* time instead, the way
Apache's mod_reqtimeout (``header=...``, ``body=...,MinRate=...``) and nginx's ``client_header_timeout`` do:

* :class:`HeaderStream`: the request line and the header fields must all arrive within ``header_timeout``
  seconds of the server starting to read them (RFC 9110 §15.5.9, 408 Request Timeout, is the answer);
* :class:`PacedStream`: byte ``n`` of the body must arrive within ``grace + n / min_rate`` seconds of the
  headers, so a large upload may take as long as it needs at a sane rate, and a trickle is cut off; an
  application may add a total deadline for the part of the body it reads before it knows who is calling
  (:meth:`PacedStream.limit_total`, offered to it as the WSGI environ entry ``xdr_edge.body_deadline``), since
  a stranger's body should not hold a worker for hours at the minimum rate.

Every read waits at most until the deadline (and never longer than ``idle``, the usual socket timeout), and
returns what is available (``read1``/``peek``) instead of waiting for a full buffer, so the deadline is checked
as bytes trickle in: a buffered ``readline`` would wait a whole socket timeout per byte. Bytes not consumed stay
in the connection's own buffer, so a stream can be dropped at any time without losing any.
"""

from __future__ import annotations

__all__ = ["BODY_DEADLINE_KEY", "HeaderStream", "HeadersTooSlow", "PacedStream", "UploadTooSlow"]

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

_PIECE = 64 * 1024  # the most one read asks of the connection when the caller did not say

#: The WSGI environ key under which the server offers :meth:`PacedStream.limit_total` to the application.
BODY_DEADLINE_KEY = "xdr_edge.body_deadline"


class UploadTooSlow(TimeoutError):
    """The request body fell behind the minimum average rate (a slow-client attack, or a dying link)."""


class HeadersTooSlow(TimeoutError):
    """The request line and headers did not all arrive within the header deadline."""


class _DeadlineStream:
    """The connection's read side with a deadline per read, computed by :meth:`_deadline`."""

    def __init__(self, rfile: Any, sock: Any, *, idle: float) -> None:
        self._rfile = rfile
        self._sock = sock
        self._idle = idle
        self._started = time.monotonic()
        self.received = 0

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end of the stream (as a file's read, which WSGI apps expect);
        the deadline is checked at every piece that arrives, however small."""
        if size is None or size < 0:
            size = _PIECE
        pieces: list[bytes] = []
        got = 0
        while got < size:
            data = self._within_deadline(functools.partial(self._rfile.read1, size - got))
            if not data:
                break
            self.received += len(data)
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to ``size`` bytes), read in pieces so that the deadline is checked as bytes trickle
        in: a buffered ``readline`` waits the whole socket timeout per byte, a day for a 4 KiB line."""
        limit = sys.maxsize if size is None or size < 0 else size
        pieces: list[bytes] = []
        got = 0
        while got < limit:
            buffered = self._within_deadline(functools.partial(self._rfile.peek, 1))
            if not buffered:
                break  # end of stream
            end = buffered.find(b"\n")
            take = min(limit - got, len(buffered) if end < 0 else end + 1)
            data = self._rfile.read1(take)  # from the buffer that peek filled: no wait
            self.received += len(data)
            pieces.append(data)
            got += len(data)
            if data.endswith(b"\n"):
                break
        return b"".join(pieces)

    def _deadline(self) -> float:
        raise NotImplementedError

    def _too_slow(self) -> TimeoutError:
        raise NotImplementedError

    def _within_deadline(self, read: Callable[[], bytes]) -> bytes:
        deadline = self._deadline()
        wait = min(self._idle, deadline - time.monotonic())
        if wait <= 0:
            raise self._too_slow()
        self._sock.settimeout(wait)
        try:
            data: bytes = read()
        except TimeoutError as exc:
            if time.monotonic() >= deadline:
                raise self._too_slow() from exc
            raise
        return data


class PacedStream(_DeadlineStream):
    """A request body that must keep up an average rate: ``grace`` seconds, then ``min_rate`` bytes a second."""

    def __init__(self, rfile: Any, sock: Any, *, grace: float, min_rate: int, idle: float) -> None:
        super().__init__(rfile, sock, idle=idle)
        self._grace = grace
        self._min_rate = min_rate
        self._total: tuple[float, float] | None = None  # (deadline, seconds it was set to)

    def limit_total(self, seconds: float | None) -> None:
        """From now on, what is still read must arrive within ``seconds`` in all (as well as at the minimum
        rate); ``None`` lifts that total deadline again."""
        self._total = None if seconds is None else (time.monotonic() + seconds, seconds)

    def _deadline(self) -> float:
        paced = self._started + self._grace + (self.received + 1) / self._min_rate
        return paced if self._total is None else min(paced, self._total[0])

    def _too_slow(self) -> UploadTooSlow:
        if self._total is not None and time.monotonic() >= self._total[0]:
            return UploadTooSlow(
                f"the request body did not arrive within {self._total[1]:g} s ({self.received} bytes received)"
            )
        elapsed = max(time.monotonic() - self._started, 0.001)
        return UploadTooSlow(
            f"the request body is arriving too slowly ({self.received} bytes in {elapsed:.0f} s; this endpoint "
            f"needs {self._min_rate} bytes/s after {self._grace:g} s)"
        )


class HeaderStream(_DeadlineStream):
    """A request line and header section that must be complete within ``timeout`` seconds."""

    def __init__(self, rfile: Any, sock: Any, *, timeout: float, idle: float) -> None:
        super().__init__(rfile, sock, idle=idle)
        self.timeout = timeout

    def _deadline(self) -> float:
        return self._started + self.timeout

    def _too_slow(self) -> HeadersTooSlow:
        return HeadersTooSlow(
            f"the request line and headers did not arrive within {self.timeout:g} s "
            f"({self.received} bytes received)"
        )
