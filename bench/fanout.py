"""Fan-out (issue 12): one ``createCategory`` delivered to many open ``categoryEvents``
subscriptions on one process, beside a bare ``websockets`` broadcast of the same JSON.

Two commands, each a process of its own so that ``run.py`` can pin it to a core:

- ``python -m bench.fanout client --mode ours|bare ...``: opens ``--subscribers``
  graphql-transport-ws connections from one asyncio loop (authenticated by the
  ``connection_init`` payload, one ``categoryEvents`` subscription each), then per round
  notes the time, triggers one event (ours: ``createCategory`` over HTTP; bare: the JSON
  sent on a control socket) and the time each subscriber's message arrives. Every
  message is checked (a ``next`` with a CREATED event of the category just made). Prints
  one ``FANOUT_RESULT {json}`` line.
- ``python -m bench.fanout serve --port P``: the limit: a bare ``websockets`` server that
  sends whatever its ``/control`` socket sends to every other connection with
  ``websockets.broadcast`` (no parsing, no context, no per-subscriber execution).

Latency is from just before the trigger is sent to the arrival, so ours' figure includes
its HTTP request and insert; events per second is subscribers over the time the last one
took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.typing import Subprotocol

PROTOCOL = Subprotocol("graphql-transport-ws")
SUBSCRIPTION = "subscription { categoryEvents { kind categoryId category { id name } } }"
CREATE = "mutation($input: CreateCategoryInput!) { createCategory(input: $input) { id name } }"
CONNECT_BATCH = 50  # handshakes in flight at once: the server's accept queue stays short
ROUND_TIMEOUT = 30.0


@dataclass
class FanoutResult:
    """What the client measured (latencies in milliseconds, over every round)."""

    mode: str
    subscribers: int
    rounds: int
    delivered: int = 0
    wrong: int = 0
    missing: int = 0
    connect_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    # Per round: subscribers / (last arrival - trigger); the median round.
    events_per_s: float = 0.0
    sample: str = ""  # one message as received, for the bare server to send verbatim
    round_ms: list[float] = field(default_factory=list)


class Round:
    """Arrival times of the current round's messages, and who is still awaited."""

    def __init__(self, expected: int, name: str) -> None:
        self.expected = expected
        self.name = name
        self.arrivals: list[float] = []
        self.wrong = 0
        self.done = asyncio.Event()

    def arrive(self, at: float, ok: bool) -> None:
        if not ok:
            self.wrong += 1
        self.arrivals.append(at)
        if len(self.arrivals) >= self.expected:
            self.done.set()


class Subscribers:
    """Many subscriber connections read by one loop; each message lands in ``current``."""

    def __init__(self, mode: str, payload: str = "") -> None:
        self.mode = mode
        self.payload = payload
        self.current: Round | None = None
        self.sample = ""
        self.readers: list[asyncio.Task[None]] = []
        self.sockets: list[ClientConnection] = []

    def check(self, message: str | bytes) -> bool:
        if self.mode == "bare":
            return message == self.payload
        try:
            body = orjson.loads(message)
            event = body["payload"]["data"]["categoryEvents"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return False
        current = self.current
        return (
            body["type"] == "next"
            and event["kind"] == "CREATED"
            and current is not None
            and event["category"]["name"] == current.name
        )

    async def read(self, socket: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in socket:
                at = time.perf_counter()
                current = self.current
                if current is None:
                    continue
                if not self.sample:
                    self.sample = message if isinstance(message, str) else message.decode()
                current.arrive(at, self.check(message))

    async def open_one(self, url: str, token: str) -> None:
        socket = await connect(
            url,
            subprotocols=[PROTOCOL],
            compression=None,
            ping_interval=None,
            open_timeout=30,
            max_queue=None,
        )
        if self.mode == "ours":
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"authorization": token}})
            )
            ack = json.loads(await asyncio.wait_for(socket.recv(), 30))
            if ack.get("type") != "connection_ack":
                raise RuntimeError(f"no connection_ack: {ack}")
            await socket.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
            )
        self.sockets.append(socket)
        self.readers.append(asyncio.create_task(self.read(socket)))

    async def open(self, url: str, token: str, count: int) -> None:
        for start in range(0, count, CONNECT_BATCH):
            batch = min(CONNECT_BATCH, count - start)
            await asyncio.gather(*(self.open_one(url, token) for _ in range(batch)))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


async def client(args: argparse.Namespace, payload: str) -> FanoutResult:
    result = FanoutResult(args.mode, args.subscribers, args.rounds)
    subscribers = Subscribers(args.mode, payload)
    token = f"Bearer {args.token}"
    started = time.perf_counter()
    await subscribers.open(args.ws, token, args.subscribers)
    result.connect_s = time.perf_counter() - started
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        control = None
        if args.mode == "bare":
            control = await stack.enter_async_context(
                connect(
                    args.ws + "/control",
                    subprotocols=[PROTOCOL],
                    compression=None,
                    ping_interval=None,
                )
            )

        async def trigger(name: str) -> None:
            if control is not None:
                await control.send(payload)
                return
            answer = await http.post(
                args.http,
                json={"query": CREATE, "variables": {"input": {"name": name}}},
                headers={"authorization": token},
            )
            body = answer.json()
            if answer.status_code != 200 or "errors" in body:
                raise RuntimeError(f"createCategory failed: {answer.status_code} {body}")

        latencies: list[float] = []
        rates: list[float] = []
        # Round 0 is the warm-up: it also proves every subscription is live before timing.
        for number in range(args.rounds + 1):
            name = f"fanout-{secrets.token_hex(4)}-{number}"
            current = Round(args.subscribers, name)
            subscribers.current = current
            at = time.perf_counter()
            await trigger(name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.done.wait(), ROUND_TIMEOUT)
            subscribers.current = None
            if number == 0:
                if len(current.arrivals) < args.subscribers:
                    # Subscriptions may still be starting: one more warm-up round.
                    await asyncio.sleep(1)
                continue
            result.missing += args.subscribers - len(current.arrivals)
            result.wrong += current.wrong
            result.delivered += len(current.arrivals)
            delays = [(t - at) * 1000 for t in current.arrivals]
            latencies += delays
            if delays:
                result.round_ms.append(max(delays))
                rates.append(len(delays) / (max(delays) / 1000))
            await asyncio.sleep(args.pause)
    await subscribers.close()
    if latencies:
        latencies.sort()
        result.p50_ms = latencies[len(latencies) // 2]
        result.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        result.max_ms = latencies[-1]
        result.events_per_s = statistics.median(rates)
    result.sample = subscribers.sample
    return result


async def serve_bare(port: int) -> None:
    clients: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else ""
        if path.endswith("/control"):
            async for message in connection:
                broadcast(clients, message)
            return
        clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            clients.discard(connection)

    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=[PROTOCOL],
        compression=None,
        ping_interval=None,
        max_queue=None,
    ) as server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("client")
    run.add_argument("--mode", choices=["ours", "bare"], required=True)
    run.add_argument("--ws", required=True, help="ws://host:port/graphql")
    run.add_argument("--http", default="", help="http://host:port/graphql (ours)")
    run.add_argument("--token", default="")
    run.add_argument("--payload", default="", help="file: the message bare broadcasts")
    run.add_argument("--subscribers", type=int, default=1000)
    run.add_argument("--rounds", type=int, default=10)
    run.add_argument("--pause", type=float, default=0.3, help="seconds between rounds")
    bare = commands.add_parser("serve")
    bare.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve_bare(args.port))
        return 0
    payload = Path(args.payload).read_text() if args.payload else ""
    result = asyncio.run(client(args, payload))
    print("FANOUT_RESULT " + json.dumps(asdict(result)), flush=True)
    return 0 if result.delivered and not (result.wrong or result.missing) else 1


def parse(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("FANOUT_RESULT "):
            found: dict[str, Any] = json.loads(line.removeprefix("FANOUT_RESULT "))
            return found
    raise RuntimeError(f"no FANOUT_RESULT in: {stdout[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())
