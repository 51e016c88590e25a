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
import socket
import struct
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
        # A plain listening socket read by a loop callback, not asyncio.Server: closing a
        # Server while it accepts leaks the accepted socket (CPython 3.11's
        # _accept_connection2 fails on the closed Server and keeps the socket open), so a
        # connection made just before DROP would hang instead of being cut.
        self._listener: socket.socket | None = None
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
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(512)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        asyncio.get_running_loop().add_reader(listener.fileno(), self._on_readable, listener)

    def _on_readable(self, listener: socket.socket) -> None:
        while listener is self._listener:
            try:
                conn, _ = listener.accept()
            except OSError:  # nothing more to accept (or closed meanwhile)
                return
            conn.setblocking(False)
            self.accepted += 1
            if self.mode is Mode.DROP:
                _reset(conn)
                continue
            handler = asyncio.get_running_loop().create_task(self._serve(conn))
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()

    async def _set_mode(self, mode: Mode) -> None:
        assert self._flowing is not None
        previous, self.mode = self.mode, mode
        if mode is Mode.DROP:
            self._close_listener()
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
        self._close_listener()
        self._cut_all()
        await asyncio.gather(*self._tasks, *self._handlers, return_exceptions=True)

    def _dropped(self) -> bool:
        return self.mode is Mode.DROP

    async def _serve(self, conn: socket.socket) -> None:
        client_reader, client = await asyncio.open_connection(sock=conn)
        if self._dropped():  # dropped before this connection's first step
            client.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            client.transport.abort()
            client.close()
            return
        if self._dropped():  # dropped while the upstream connection was opening
            for writer in (client, upstream):
                writer.transport.abort()
            return
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


def _reset(conn: socket.socket) -> None:
    """Close with RST, as a killed process's socket is."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
