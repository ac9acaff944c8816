"""What one client may cost the server, and the HTTP protocol that holds clients to it.

uvicorn has no deadline for reading a request and answers its own connection limit and malformed
HTTP in plain text; the guarded protocols (over httptools' C parser, or h11 where httptools is
missing) add the deadline (408) and answer all of them with TF Serving's `{"error": ...}` body, so
a slow or greedy client costs a bounded amount and learns why.
"""

from __future__ import annotations

import dataclasses
import functools

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional: h11 serves the same API, slower
    HttpToolsProtocol = None

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """Per-request and per-server limits, all with safe defaults.

    Args:
        max_body_bytes: larger request bodies get 413.
        max_images_per_request: requests with more examples get 413 (checked before conversion).
        request_read_timeout_s: a request whose headers and body have not all arrived this long
            after it started gets 408 and its connection is closed.
        max_connections: connections beyond this many open ones get 503 and are closed.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images_per_request: int = 1024
    request_read_timeout_s: float = 30.0
    max_connections: int = 256

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if getattr(self, field.name) <= 0:
                raise ValueError(f"{field.name} must be positive, got {getattr(self, field.name)!r}")


def _raw_error(status: int, reason: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Guard:
    """What both HTTP parsers add to uvicorn's protocol: the connection limit, the read deadline
    and TF Serving's `{"error": ...}` bodies where uvicorn answers in plain text."""

    limits: ServingLimits = ServingLimits()
    _read_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(
                _raw_error(503, "Service Unavailable", f"more than {self.limits.max_connections} open connections")
            )
            transport.close()
            return
        self._arm_read_deadline()

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.limits.request_read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def connection_lost(self, exc) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_raw_error(400, "Bad Request", msg))
        self.transport.close()

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            message = f"the request was not received within {self.limits.request_read_timeout_s:g} s"
            self.transport.write(_raw_error(408, "Request Timeout", message))
        self.transport.close()


class GuardedH11Protocol(_Guard, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the guard (used where httptools is not installed)."""

    def data_received(self, data: bytes) -> None:
        if self._read_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_read_deadline()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm_read_deadline()


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
        """uvicorn's httptools (C parser) protocol with the guard: the fast path, used when present."""

        def on_message_begin(self) -> None:
            if self._read_deadline is None:
                self._arm_read_deadline()  # the next request on a kept-alive connection
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self._disarm_read_deadline()
            super().on_message_complete()


def protocol_for(limits: ServingLimits, parser: str = "auto"):
    """The uvicorn `http=` protocol class enforcing `limits`.

    Args:
        limits: the limits to enforce.
        parser: "httptools" (C, several times faster per request), "h11" (pure Python), or
            "auto" (httptools when installed).
    """
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"unknown HTTP parser {parser!r}; choose auto, httptools or h11")
    if parser == "httptools" and HttpToolsProtocol is None:
        raise ValueError("the httptools parser is not installed")
    fast = parser != "h11" and HttpToolsProtocol is not None
    base = GuardedHttpToolsProtocol if fast else GuardedH11Protocol
    return functools.partial(type(f"Limited{base.__name__}", (base,), {"limits": limits}))
