"""The connection bounds in uvicorn's protocols: a header deadline and a connection cap.

Each protocol is driven as the event loop drives it (connection_made, data_received) over
a transport that records what happens, with the real uvicorn parsing underneath.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from graphql_api.web.connections import (
    BoundedH11Protocol,
    BoundedHttpToolsProtocol,
    ConnectionLimits,
    http_protocol,
)

TIMEOUT = 0.5
REQUEST = b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.written = bytearray()
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # As asyncio's transports do: the protocol hears of it on the next loop turn.
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


@pytest.fixture(params=[BoundedHttpToolsProtocol, BoundedH11Protocol], ids=["httptools", "h11"])
def protocol(request: pytest.FixtureRequest) -> type[Any]:
    class Tight(request.param):  # type: ignore[misc,name-defined]
        limits = ConnectionLimits(header_timeout=TIMEOUT, max_connections=2)

    return Tight


@pytest.fixture
def config() -> Config:
    return Config(app=hello, lifespan="off", log_config=None)


def connect(protocol: type[Any], config: Config, state: ServerState) -> RecordingTransport:
    transport = RecordingTransport()
    transport.protocol = protocol(config, state, {}, asyncio.get_running_loop())
    transport.protocol.connection_made(transport)
    return transport


def feed(transport: RecordingTransport, data: bytes) -> None:
    transport.protocol.data_received(data)


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    protocol: type[Any], config: Config
) -> None:
    transport = connect(protocol, config, ServerState())
    await asyncio.sleep(TIMEOUT / 2)
    assert not transport.closed
    await asyncio.sleep(TIMEOUT)
    assert transport.closed and transport.written == b""


async def test_headers_sent_a_byte_at_a_time_buy_no_time(
    protocol: type[Any], config: Config
) -> None:
    loop = asyncio.get_running_loop()
    opened = loop.time()
    transport = connect(protocol, config, ServerState())
    sent = 0
    while not transport.closed and sent < len(REQUEST) - 1:  # never the final byte
        feed(transport, REQUEST[sent : sent + 1])
        sent += 1
        await asyncio.sleep(TIMEOUT / 8)
    # Closed while bytes were still coming, TIMEOUT after the connection opened.
    assert transport.closed and transport.written == b""
    assert sent < len(REQUEST) - 1 and TIMEOUT <= loop.time() - opened < TIMEOUT + 2


async def test_complete_headers_stop_the_clock_and_the_next_request_gets_its_own(
    protocol: type[Any], config: Config
) -> None:
    transport = connect(protocol, config, ServerState())
    feed(transport, REQUEST)
    await asyncio.sleep(TIMEOUT * 2)
    assert not transport.closed
    assert transport.written.startswith(b"HTTP/1.1 200 OK") and transport.written.endswith(b"hello")

    # Kept alive; the second request starts its own deadline with its first byte.
    feed(transport, REQUEST[:10])
    await asyncio.sleep(TIMEOUT / 2)
    assert not transport.closed
    await asyncio.sleep(TIMEOUT)
    assert transport.closed


async def test_connections_beyond_the_cap_are_closed_when_accepted(
    protocol: type[Any], config: Config
) -> None:
    state = ServerState()
    kept = [connect(protocol, config, state) for _ in range(2)]
    refused = connect(protocol, config, state)
    assert refused.closed and refused.written == b""
    assert not any(transport.closed for transport in kept)
    # A slot freed is a slot taken again.
    kept[0].close()
    await asyncio.sleep(0)
    assert not connect(protocol, config, state).closed


def test_serve_uses_the_bounded_httptools_protocol() -> None:
    assert http_protocol() is BoundedHttpToolsProtocol
