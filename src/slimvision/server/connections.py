"""What uvicorn does not bound per connection: how long a client may take to send a request, and
how many connections one client may hold.

uvicorn reads requests as they come: a connection that sends nothing, half its headers, or a
few bytes of a large body and then goes silent stays open for good, and with
``limit_concurrency`` such connections used up every slot, so other clients got a plain-text
503. :func:`guarded_protocol` makes uvicorn's h11 protocol class with these rules instead:

* **Headers** must be complete within ``header_timeout_s`` of the server being ready for them
  (a fresh connection, or the end of the previous response); partial headers then get a JSON
  408, a connection that sent nothing is closed silently (browsers open spare connections).
* **A body** may not fall silent for longer than ``body_timeout_s`` (the longest pause, so a slow
  but steady upload is fine), and once the answer is sent, an unread body gets only that long.
* **Per client address** at most ``per_client`` connections, and ``total`` in all. A new one over
  a cap closes the connection of that client (or of anyone, for the total) that has waited
  longest for its client to send something, with a JSON 503; connections whose requests are
  being worked on are never closed. Only if none is waiting is the new one refused. So a client
  that stalls many connections cannot hold more than its cap, nor lock out the next request
  from its own address, while a browser's 6-8 parallel requests are never refused.
* uvicorn's own answers to bytes that are not HTTP are JSON too.

Everything here runs on the server's event loop thread, so nothing needs a lock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from slimvision.server.errors import json_error_bytes

#: After an error answer, how long the client may go on sending before the socket is closed.
#: Closing at once while its bytes are still arriving makes the kernel send a reset, and the
#: client would never read the answer (nginx's "lingering close", in short).
LINGER_S = 2.0

@dataclass(frozen=True)
class ConnectionLimits:
    """Attributes:
        header_timeout_s: time to send a request's headers, from when the server is ready for them.
        body_timeout_s: longest silence while a request body arrives.
        per_client: connections one client address may hold.
        total: connections the server holds in all.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    per_client: int = 16
    total: int = 512


class _Clients:
    """The open connections, in all and by client address."""

    def __init__(self) -> None:
        self.every: set[GuardedH11Protocol] = set()
        self.by_address: dict[str, set[GuardedH11Protocol]] = defaultdict(set)

    def add(self, connection: GuardedH11Protocol) -> None:
        self.every.add(connection)
        self.by_address[connection.address].add(connection)

    def discard(self, connection: GuardedH11Protocol) -> None:
        self.every.discard(connection)
        same = self.by_address.get(connection.address)
        if same is not None:
            same.discard(connection)
            if not same:
                del self.by_address[connection.address]

    def over_cap(self, connection: GuardedH11Protocol, limits: ConnectionLimits) -> set[GuardedH11Protocol] | None:
        """The group ``connection`` makes too large (its address's, or everyone's), or None."""
        same = self.by_address[connection.address]
        if len(same) > limits.per_client:
            return same
        if len(self.every) > limits.total:
            return self.every
        return None


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and connection caps (see the module docstring).

    Make one class per server with :func:`guarded_protocol`; the class holds that server's limits
    and its table of open connections.
    """

    limits: ClassVar[ConnectionLimits]
    clients: ClassVar[_Clients]

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else "unknown"
        now = self.loop.time()
        self._ready_since = now       # when the server became ready for the next request's headers
        self._last_bytes = now        # when the client last sent anything
        self._answered_at: float | None = None  # when our answer went out with the body still unread
        self._answered_cycle: Any = None          # ... to that request (a later one has its own body)
        self._deadline_timer: Any = None
        self._linger_timer: Any = None
        self.clients.add(self)
        crowded = self._make_room()
        if crowded is not None:
            whose = "this address" if crowded is not self.clients.every else "the server"
            self._close(503, "too_many_connections", f"{whose} already has {len(crowded) - 1} connections busy with "
                                                     "requests; try again when one is answered", ("retry-after: 1",))
            return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.clients.discard(self)
        for timer in (self._deadline_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._deadline_timer = self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # answered and closing: what still comes is dropped
        self._last_bytes = self.loop.time()
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        now = self.loop.time()
        self._ready_since = now
        # A body the app never read: the client may finish or stop sending it, within one timeout.
        self._answered_at = now if self.conn.their_state is h11.SEND_BODY else None
        self._answered_cycle = self.cycle
        super().on_response_complete()
        self._watch()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes h11 cannot parse (plain text there), as JSON."""
        self._close(400, "bad_request", "the request is not valid HTTP/1.1")

    # ------------------------------------------------------------------ deadlines
    def _deadline(self) -> float | None:
        """When the client must have sent more, or None while it is not the client's turn."""
        if self.transport.is_closing() or self._linger_timer is not None:
            return None
        state = self.conn.their_state
        if state is h11.IDLE:
            return self._ready_since + self.limits.header_timeout_s
        if state is not h11.SEND_BODY:
            return None  # the request is in, or the connection is closing
        if self._answered_at is not None and self.cycle is self._answered_cycle:
            return self._answered_at + self.limits.body_timeout_s
        if self.flow.read_paused or self._responding():
            # Waiting on the app (it has not read the buffered body yet, or is sending its answer):
            # the client's silence starts counting only when we read again.
            self._last_bytes = self.loop.time()
        return self._last_bytes + self.limits.body_timeout_s

    def _responding(self) -> bool:
        return self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete

    def _watch(self) -> None:
        """Make sure a timer checks the current deadline. Deadlines only move later (or stay), so
        one timer suffices: when it fires early it re-reads the deadline and waits again."""
        if self._deadline_timer is None and self._deadline() is not None:
            self._deadline_timer = self.loop.call_at(self._deadline(), self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        deadline = self._deadline()
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._watch()
            return
        self._expire()

    def _expire(self) -> None:
        if self.conn.their_state is h11.IDLE:
            if self.conn.trailing_data[0]:  # part of a request's headers came
                self._close(408, "request_timeout",
                            f"the request headers did not arrive within {self.limits.header_timeout_s:g} s")
            else:
                self._close()  # an idle or spare connection: nobody is waiting for an answer
        elif (self._answered_at is not None and self.cycle is self._answered_cycle) or self._responding():
            self._close()
        else:
            self._close(408, "request_timeout",
                        f"the request body stopped arriving (nothing for {self.limits.body_timeout_s:g} s)")

    # ------------------------------------------------------------------ caps
    def _waiting_for_client(self) -> bool:
        """Waiting for the client to send (headers, a body, or the next request), not for the app."""
        state = self.conn.their_state
        if self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            return False
        return not self._responding() and not (state is h11.SEND_BODY and self.flow.read_paused)

    def _make_room(self) -> set[GuardedH11Protocol] | None:
        """Close the longest-waiting connections of whichever group this one overfills; that group
        if none of them is waiting for its client (all are busy with requests), else None."""
        while (group := self.clients.over_cap(self, self.limits)) is not None:
            waiting = [other for other in group if other is not self and other._waiting_for_client()]
            if not waiting:
                return group
            oldest = min(waiting, key=lambda other: other._last_bytes)
            oldest._close(503, "too_many_connections",
                          "closed to make room: too many connections were waiting for their clients")
        return None

    def _close(self, status: int | None = None, code: str = "", message: str = "",
               extra_headers: tuple[str, ...] = ()) -> None:
        """Answer with a JSON error (unless ``status`` is None or an answer has begun) and close.
        The app, if it is reading this request, sees the client disconnect and its answer is dropped."""
        self.clients.discard(self)
        answered = self.cycle is not None and self.cycle.response_started
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if status is None or answered or self.transport.is_closing() or self._linger_timer is not None:
            self.transport.close()
            return
        self.transport.write(json_error_bytes(status, code, message, extra_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then our side's end; the client's end closes it
        self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one server (uvicorn's ``Config(http=...)``), with its own connection table."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "clients": _Clients()})
