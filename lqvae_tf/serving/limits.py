"""What one client may cost the server, and the HTTP protocol that holds clients to it.

uvicorn has no deadline for reading a request, no limit on header size, keeps a connection open
after answering a request whose body it never read, and answers its own connection limit and
malformed HTTP in plain text. The guarded protocols (over httptools' C parser, or h11 where
httptools is missing) add what a server facing the open network needs:

- a read deadline per request, headers included (408, then the connection is closed);
- a header size limit (431), counted on the raw bytes before the parser has buffered them, so a
  huge header costs a bounded amount of parsing;
- after any answer sent before its request's body has all arrived (404 for an unknown model,
  413 for a body over the limit), the connection is closed *lingering*, as nginx does: the
  answer is flushed, the sending side shut, and what the client still sends is read and dropped
  for at most `linger_s` seconds and `linger_bytes` bytes, so the client reads its answer instead
  of a reset and no connection outlives its request;
- at `max_connections`, a new connection takes the place of the connection that has waited
  longest without a request in progress (lingering first, then idle or still sending its
  request); only when every connection has a request being answered is the newcomer refused
  (503). A client that holds connections open and drips bytes cannot lock anyone out.

Every answer these protocols write themselves has TF Serving's `{"error": ...}` body.
"""

from __future__ import annotations

import dataclasses
import functools
import time

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
    """Per-request and per-server limits, all with safe defaults (`lqvae serve` has a flag for each).

    Args:
        max_body_bytes: larger request bodies get 413, from `Content-Length` or while streaming.
        max_images_per_request: requests with more examples get 413 (counted before the JSON is
            parsed where the body's format allows it, else before conversion).
        request_read_timeout_s: a request whose headers and body have not all arrived this long
            after the connection opened or went idle gets 408 and its connection is closed.
        max_connections: open connections; beyond it a new connection replaces the one waiting
            longest without a request in progress, or gets 503 if every one has a request.
        max_header_bytes: a request line and headers larger than this get 431.
        linger_s: after an answer sent before its request body arrived, how long what the client
            still sends is read and dropped before the connection is closed.
        linger_bytes: the most bytes read and dropped so.
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images_per_request: int = 1024
    request_read_timeout_s: float = 30.0
    max_connections: int = 256
    max_header_bytes: int = 64 * 1024
    linger_s: float = 2.0
    linger_bytes: int = 1024 * 1024

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


class _LingeringTransport:
    """The transport as uvicorn's protocol and request cycles see it: `close()` lingers while a
    request's bytes are still arriving (see the module docstring); all else is the real one's."""

    def __init__(self, transport, protocol: _Guard):
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol._close(graceful=True)

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._transport.is_closing()


class _Guard:
    """What both HTTP parsers add to uvicorn's protocol: the connection limit with eviction, the
    read deadline, the header limit, lingering close and `{"error": ...}` bodies."""

    limits: ServingLimits = ServingLimits()
    _read_deadline = None
    _linger_timer = None
    _lingering = False
    _in_request = False  # bytes of a request have arrived and its last byte has not
    _header_bytes = 0
    _lingered_bytes = 0
    _waiting_since = 0.0  # when this connection last had no request in progress

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport) -> None:
        self._raw_transport = transport
        self._waiting_since = time.monotonic()
        super().connection_made(_LingeringTransport(transport, self))
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            transport.write(
                _raw_error(
                    503,
                    "Service Unavailable",
                    f"all {self.limits.max_connections} connections have a request in progress",
                )
            )
            self._close(graceful=False)
            return
        self._arm_read_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_read_deadline()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def eof_received(self):
        if self._lingering:
            self._raw_transport.close()
            return None
        return super().eof_received()

    def _busy(self) -> bool:
        """A request has been received whole and is being answered."""
        cycle = getattr(self, "cycle", None)
        if self._lingering or cycle is None or cycle.response_complete:
            return False
        return not self._in_request or cycle.response_started

    def _evict_one(self) -> bool:
        """Closes the connection waiting longest without a request in progress; False if none is."""
        candidates = [c for c in self.connections if c is not self and isinstance(c, _Guard) and not c._busy()]
        if not candidates:
            return False
        victim = min(candidates, key=lambda c: (not c._lingering, c._waiting_since))
        if victim._in_request and not victim._lingering:
            victim._raw_transport.write(
                _raw_error(503, "Service Unavailable", "the server needed this connection for a newer one")
            )
        victim._close(graceful=False)
        return True

    def _close(self, graceful: bool) -> None:
        """Closes now, or lingering while the request's bytes are still arriving (`graceful`)."""
        self._disarm_read_deadline()
        if self._raw_transport.is_closing():
            return
        if not graceful or not self._in_request or self._lingering or not self._raw_transport.can_write_eof():
            self._lingering = False
            self._raw_transport.close()
            return
        self._lingering = True
        self._raw_transport.resume_reading()
        self._raw_transport.write_eof()  # flushes the answer, then shuts the sending side
        self._linger_timer = self.loop.call_later(self.limits.linger_s, self._raw_transport.close)

    def _linger_received(self, size: int) -> None:
        self._lingered_bytes += size
        if self._lingered_bytes > self.limits.linger_bytes:
            self._raw_transport.close()

    # ------------------------------------------------------------------ deadlines
    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.limits.request_read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self._raw_transport.is_closing() or self._lingering:
            return
        cycle = getattr(self, "cycle", None)
        if cycle is None or not cycle.response_started:
            message = f"the request was not received within {self.limits.request_read_timeout_s:g} s"
            self._raw_transport.write(_raw_error(408, "Request Timeout", message))
        self._close(graceful=False)

    def _request_done(self) -> None:
        """The last byte of a request arrived."""
        self._in_request = False
        self._header_bytes = 0
        self._disarm_read_deadline()

    def _request_answered(self) -> None:
        """The answer to a request was written whole: idle (or lingering, if it came early)."""
        self._waiting_since = time.monotonic()
        if self._in_request and not self._lingering:
            self._close(graceful=True)  # answered before its body arrived: nothing more to read
        elif not self._lingering:
            self._arm_read_deadline()

    # ------------------------------------------------------------------ answers
    _headers_over_limit = False

    def send_400_response(self, msg: str) -> None:
        if self._headers_over_limit:  # the parser stopped because a callback found the headers too large
            self._headers_too_large()
            return
        self._raw_transport.write(_raw_error(400, "Bad Request", msg))
        self._close(graceful=True)

    def _headers_too_large(self) -> None:
        message = f"the request line and headers exceed the limit of {self.limits.max_header_bytes} bytes"
        self._raw_transport.write(_raw_error(431, "Request Header Fields Too Large", message))
        self._close(graceful=True)


class GuardedH11Protocol(_Guard, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the guard (used where httptools is not installed).

    h11 limits the header size itself (`h11_max_incomplete_event_size`, set to the limit), with
    a 400 instead of 431.
    """

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_received(len(data))
            return
        if not self._in_request and self.conn.their_state is h11.IDLE:
            self._in_request = True
            if self._read_deadline is None:
                self._arm_read_deadline()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._request_done()

    def on_response_complete(self) -> None:
        if self._lingering:
            return
        super().on_response_complete()
        self._request_answered()


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
        """uvicorn's httptools (C parser) protocol with the guard: the fast path, used when present."""

        _headers_complete = False
        _parsed_header_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._linger_received(len(data))
                return
            if not self._headers_complete:
                self._header_bytes += len(data)  # counted before httptools buffers them
            super().data_received(data)
            if (
                not self._headers_complete
                and self._header_bytes > self.limits.max_header_bytes
                and not self.transport.is_closing()
            ):
                self._headers_too_large()

        def on_message_begin(self) -> None:
            self._in_request = True
            self._parsed_header_bytes = 0
            if self._read_deadline is None:
                self._arm_read_deadline()  # the next request on a kept-alive connection
            super().on_message_begin()

        def _count_header(self, size: int) -> None:
            # Many small headers in one chunk: counted as httptools hands them over, and the parse
            # stopped (the exception becomes a parser error, answered 431 by send_400_response).
            self._parsed_header_bytes += size
            if self._parsed_header_bytes > self.limits.max_header_bytes:
                self._headers_over_limit = True
                raise ValueError("headers over the limit")

        def on_url(self, url: bytes) -> None:
            self._count_header(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_header(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._headers_complete = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._headers_complete = False
            self._request_done()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            if self._lingering:
                self.server_state.total_requests += 1
                return
            super().on_response_complete()
            self._request_answered()


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
