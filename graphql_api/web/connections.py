"""uvicorn's HTTP protocols with two bounds it lacks: a deadline for the request headers and
a cap on open connections.

A client that opens connections and sends its headers a byte at a time (slowloris) costs
uvicorn nothing it ever takes back: ``timeout_keep_alive`` is armed only after a response,
so a connection that has sent nothing, or half a request line, stays open for good. And
``limit_concurrency`` cannot cap them: it is checked when the headers are complete (which
these never are) and then answers 503 instead of closing, while counting the idle sockets
against every real request. So each connection here gets ``HEADER_TIMEOUT`` seconds from
its opening, and from the first byte of each later request, to complete its headers, and
a connection beyond ``MAX_CONNECTIONS`` is closed as soon as it is accepted.

These bound what one process holds; they do not tell an attacker from a slow phone. Limit
connections per client address at the reverse proxy, which sees them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from graphql_api.settings import Settings


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(header_timeout=settings.header_timeout, max_connections=settings.max_connections)


@cache
def _configured() -> ConnectionLimits:
    # uvicorn builds protocols itself, in each worker process, from a class it was given
    # (pickled by name): the worker's environment, which the app factory reads too, is
    # the only channel. serve has validated these settings before starting any worker.
    from graphql_api.settings import Settings

    return ConnectionLimits.from_settings(Settings())


class _Deadline:
    """One timer per connection: runs ``expire`` unless cancelled first."""

    __slots__ = ("_expire", "_handle", "_loop", "_timeout")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, expire: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._expire = expire
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start, unless running: a request line sent byte by byte does not buy more time."""
        if self._handle is None:
            self._handle = self._loop.call_later(self._timeout, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._expire()


class _Bounded:
    """What both protocols add; ``self`` is also a uvicorn protocol (see the subclasses)."""

    limits: ClassVar[ConnectionLimits | None] = None  # None: from the settings
    transport: asyncio.Transport
    connections: set[Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]
        self._bound()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if not self._over_capacity():
            self._header_deadline.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _bound(self) -> None:
        limits = self.limits or _configured()
        self._max_connections = limits.max_connections
        self._header_deadline = _Deadline(self.loop, limits.header_timeout, self._headers_late)

    def _over_capacity(self) -> bool:
        """Called once the connection is counted: close it now if it is one too many."""
        if len(self.connections) <= self._max_connections:
            return False
        # Closing at once is the cheapest answer: no parser work, no response to write.
        self.transport.close()
        return True

    def _headers_late(self) -> None:
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The late headers are a request pipelined behind one still being answered:
            # finish that answer, then close.
            self.cycle.keep_alive = False
            return
        self.transport.close()


class BoundedHttpToolsProtocol(_Bounded, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default) with the header deadline and the cap."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_deadline.start()  # already running for a connection's first request

    def on_headers_complete(self) -> None:
        self._header_deadline.cancel()
        super().on_headers_complete()


class BoundedH11Protocol(_Bounded, H11Protocol):
    """uvicorn's h11 protocol with the header deadline and the cap."""

    def data_received(self, data: bytes) -> None:
        # h11 has no "message begins" event: a byte arriving while it waits for a request
        # starts the clock, and leaving that state (headers parsed) stops it.
        if self.conn.their_state is h11.IDLE:
            self._header_deadline.start()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._header_deadline.cancel()


def http_protocol() -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: httptools, which uvicorn's
    "auto" chooses when installed, as uvicorn[standard] does."""
    return BoundedHttpToolsProtocol
