"""The fault proxy itself, against an echo server: each mode does what the fault tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import FaultProxy, Mode


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    fault_proxy = FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1]).start()
    yield fault_proxy
    fault_proxy.stop()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.05)  # the echo handlers see their connections end


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(proxy.host, proxy.port)


async def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), 2) == b"hello"
    writer.close()


async def test_stall_holds_every_byte_until_pass_then_delivers_them(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await asyncio.to_thread(proxy.set_mode, Mode.STALL)
    late_reader, late_writer = await connect(proxy)  # still accepted, as by a frozen server
    writer.write(b"held")
    late_writer.write(b"late")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    await asyncio.to_thread(proxy.set_mode, Mode.PASS)
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
    assert await asyncio.wait_for(late_reader.readexactly(4), 2) == b"late"
    writer.close()
    late_writer.close()


async def test_drop_cuts_open_connections_and_refuses_new_ones_until_pass(
    proxy: FaultProxy,
) -> None:
    reader, writer = await connect(proxy)
    await asyncio.to_thread(proxy.set_mode, Mode.DROP)
    with contextlib.suppress(ConnectionResetError):  # cut, abruptly
        assert await asyncio.wait_for(reader.read(10), 2) == b""  # or cut, closed
    writer.close()
    with pytest.raises(OSError):
        await connect(proxy)
    await asyncio.to_thread(proxy.set_mode, Mode.PASS)
    reader, writer = await connect(proxy)  # the same port again
    writer.write(b"back")
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"back"
    writer.close()


async def test_trickle_forwards_a_few_bytes_per_interval(proxy: FaultProxy) -> None:
    proxy.trickle_bytes, proxy.trickle_interval = 2, 0.1
    await asyncio.to_thread(proxy.set_mode, Mode.TRICKLE)
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(b"12345678")
    assert await asyncio.wait_for(reader.readexactly(8), 5) == b"12345678"
    # 4 chunks of 2 bytes, an interval apart (each echoed as it comes).
    assert time.monotonic() - started >= 0.3
    writer.close()
