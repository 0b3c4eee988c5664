"""The uvicorn settings ``maskrcnn serve`` runs with: a deadline for headers, keep-alive, a connection cap.

``uvicorn_config(app, upload_timeout_s=S, keep_alive_s=K, max_connections=C)`` returns the
``uvicorn.Config`` to run ``app`` with:

- headers: uvicorn closes an idle connection ``K`` seconds after an answer, but only until its next
  byte arrives, and never arms that timer on a new connection. A client that connects and sends
  nothing, or sends a request's first bytes and then trickles its headers one byte every few seconds
  (slowloris), holds the connection and its buffers for ever. Here the headers of each request must be
  complete within ``S`` seconds of the connection or of the first byte after the previous answer (an
  idle kept-alive connection is keep-alive's to close, not counted as slow headers); past that the client gets
  ``408`` with a one-line JSON ``{"detail": ...}`` and the connection is closed. (The body's own deadline,
  from the headers on, is the application's: ``maskrcnn.serve.app``.)
- ``timeout_keep_alive=K``: an idle connection is closed ``K`` seconds after its last answer.
- ``limit_concurrency=C``: with ``C`` connections open (or ``C`` requests in the application), a new
  request gets uvicorn's plain-text ``503 Service Unavailable`` (file descriptors and buffers stay
  bounded).

The header deadline wraps uvicorn's HTTP protocol class (``h11``, or ``httptools`` where installed): it
relies on what both have had for years (``connection_made``, ``connection_lost``,
``on_response_complete``, ``cycle``, ``transport``, ``loop``, ``client``). A connection closed for slow
headers adds to the application's ``/health`` counter ``header_timeouts`` and is logged as a warning on
the ``maskrcnn.serve`` logger.
"""

from __future__ import annotations

import json
import logging
from typing import Callable, Optional

__all__ = ["header_deadline_protocol", "uvicorn_config"]

log = logging.getLogger("maskrcnn.serve")

# the methods of uvicorn's HTTP protocol classes the header deadline extends
_PROTOCOL_HOOKS = ("connection_made", "connection_lost", "on_response_complete", "data_received")
# after a 408 for slow headers, how long the connection drops what the client still sends before closing
LINGER_S = 2.0


def _timeout_response(timeout_s: float) -> bytes:
    body = json.dumps(
        {
            "detail": f"the request headers were not received within {timeout_s:g} s (--upload-timeout); "
            "the connection is closed"
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_deadline_protocol(base: type, timeout_s: float, on_timeout: Optional[Callable[[], None]] = None):
    """A subclass of uvicorn's HTTP protocol class ``base`` whose connections must send each request's
    headers within ``timeout_s`` seconds (of connecting, or of the request's first byte after the previous
    answer); ``on_timeout()``
    is called for each connection closed for being too slow."""
    missing = [name for name in _PROTOCOL_HOOKS if not callable(getattr(base, name, None))]
    if missing:  # a uvicorn whose protocol class changed: serve without the header deadline, say so
        log.warning("uvicorn's %s lacks %s: request headers get no deadline (--upload-timeout still "
                    "limits bodies)", base.__name__, ", ".join(missing))
        return base
    answer = _timeout_response(timeout_s)

    class HeaderDeadlineProtocol(base):
        _header_timer = None
        _waiting_after = None  # the request cycle that was current when the deadline was armed
        _lingering = False  # answered 408, closing
        _idle_after_answer = False  # answered; no byte of the next request yet (keep-alive's time)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Idle after an answer is keep-alive, not slow headers: uvicorn closes the connection
            # --keep-alive-timeout seconds on (a browser or a pool keeps it open meanwhile, and was
            # counted as a header timeout when --upload-timeout was the shorter). The next request's
            # headers are due within the deadline of its first byte, when uvicorn's timer stops.
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            self._idle_after_answer = True

        def data_received(self, data: bytes) -> None:
            if self._lingering:  # answered 408 and closing: what the client still sends is dropped
                return
            if self._idle_after_answer:  # the next request's first bytes: its headers are due in time
                self._idle_after_answer = False
                self._arm_header_deadline()  # before parsing: the cycle is still the answered one
            super().data_received(data)

        def _close_lingering(self) -> None:
            # Closing a socket with unread bytes in it sends a reset, which may reach the client before
            # it has read the 408 (a slow client is still sending): end the writing side first, drop
            # what still comes in for a moment, then close (nginx's "lingering close").
            self._lingering = True
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._waiting_after = self.cycle
            self._header_timer = self.loop.call_later(timeout_s, self._header_deadline_passed)

        def _header_deadline_passed(self) -> None:
            self._header_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not self._waiting_after or (cycle is not None and not cycle.response_complete):
                # a request's headers came in (its body is the application's business), or one is
                # still being answered (a pipelined request); on_response_complete arms the next deadline
                return
            self.transport.write(answer)
            self._close_lingering()
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.warning("%s: closed: no complete request headers within %g s (--upload-timeout)", client,
                        timeout_s)  # fmt: skip
            if on_timeout is not None:
                on_timeout()

    HeaderDeadlineProtocol.__name__ = HeaderDeadlineProtocol.__qualname__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadlineProtocol


def uvicorn_config(
    app,
    *,
    upload_timeout_s: float,
    keep_alive_s: float,
    max_connections: int,
    log_level: str = "info",
    **kwargs,
):
    """The ``uvicorn.Config`` to serve ``app`` (a ``create_app`` application) with; see the module
    docstring. ``kwargs`` go to ``uvicorn.Config`` as they are."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    stats = getattr(getattr(app, "state", None), "stats", None)

    def count() -> None:
        if stats is not None:
            stats["header_timeouts"] = stats.get("header_timeouts", 0) + 1

    return uvicorn.Config(
        app,
        http=header_deadline_protocol(AutoHTTPProtocol, upload_timeout_s, count),
        timeout_keep_alive=keep_alive_s,
        limit_concurrency=max_connections,
        log_level=log_level,
        **kwargs,
    )
