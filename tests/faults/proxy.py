"""A TCP proxy whose faults are switched at run time: one listener on 127.0.0.1 forwarding
to one upstream host:port, on its own thread and event loop (so that a test blocked in
synchronous code, such as starting a server, does not stall it by accident).

Modes, as a dependency fails in production:

- ``PASS``: forward everything.
- ``DROP``: a killed or restarting server. Every open connection is cut (RST) and new ones
  are refused, because nothing listens; back to ``PASS`` listens again on the same port.
- ``STALL``: a frozen server (SIGSTOP). Connections stay open and new ones are accepted,
  but no byte moves either way; what was sent meanwhile is delivered on ``PASS``, as a
  resumed process would read it from its socket buffers.
- ``TRICKLE``: a congested link. ``trickle_bytes`` bytes per ``trickle_interval`` seconds,
  each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from typing import Any


class Mode(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    STALL = "stall"
    TRICKLE = "trickle"


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        trickle_bytes: int = 4,
        trickle_interval: float = 0.1,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.trickle_bytes = trickle_bytes
        self.trickle_interval = trickle_interval
        self.host = "127.0.0.1"
        self.port = 0  # chosen at the first listen, kept across DROP
        self.accepted = 0  # connections accepted since start (a fetch count, for HTTP/1.0-ish)
        self.mode = Mode.PASS
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._connections: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()  # the pumps
        self._handlers: set[asyncio.Task[Any]] = set()  # one per connection

    # --- the test's side (any thread) ----------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode``; returns once it applies (connections cut, listener closed)."""
        self._call(self._set_mode(mode))

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # --- the proxy's loop -------------------------------------------------------------

    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode: Mode) -> None:
        assert self._flowing is not None
        previous, self.mode = self.mode, mode
        if mode is Mode.DROP:
            if self._server is not None:
                self._server.close()
                self._server = None
            self._cut_all()
        elif previous is Mode.DROP:
            await self._listen()
        if mode is Mode.STALL:
            self._flowing.clear()
        else:
            self._flowing.set()

    def _cut_all(self) -> None:
        for client, upstream in list(self._connections):
            for writer in (client, upstream):
                writer.transport.abort()
        self._connections.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut_all()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        if self.mode is Mode.DROP:  # accepted just before the listener closed
            client.transport.abort()
            client.close()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.transport.abort()
            client.close()
            return
        if self.mode is Mode.DROP:  # dropped while the upstream connection was opening
            for writer in (client, upstream):
                writer.transport.abort()
            return
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        pair = (client, upstream)
        self._connections.add(pair)
        pumps = [
            asyncio.create_task(self._pump(client_reader, upstream)),
            asyncio.create_task(self._pump(upstream_reader, client)),
        ]
        self._tasks.update(pumps)
        try:
            # Either side closing closes both: what a client sees of a proxied server.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            self._connections.discard(pair)
            for writer in pair:
                writer.close()
            self._handlers.discard(handler)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                while data:
                    await self._flowing.wait()  # STALL holds the bytes here
                    if self.mode is Mode.TRICKLE:
                        chunk, data = data[: self.trickle_bytes], data[self.trickle_bytes :]
                        sink.write(chunk)
                        await sink.drain()
                        await asyncio.sleep(self.trickle_interval)
                    else:
                        sink.write(data)
                        data = b""
                        await sink.drain()
