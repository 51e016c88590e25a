"""The request bounds as ASGI middleware: the body deadline and the in-flight cap."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from graphql_api.settings import Settings
from graphql_api.web.limits import BodyDeadline, InFlightLimit, limit_middleware


def http_scope(path: str = "/graphql") -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}


class Exchange:
    """One request as the server sees it: body parts to deliver, then silence (or a
    disconnect), and what the application sent back."""

    def __init__(self, *parts: bytes, complete: bool = True) -> None:
        self.parts = list(parts)
        self.complete = complete
        self.sent: list[Message] = []
        self.disconnect = asyncio.Event()

    async def receive(self) -> Message:
        if self.parts:
            body = self.parts.pop(0)
            return {
                "type": "http.request",
                "body": body,
                "more_body": bool(self.parts) or not self.complete,
            }
        await self.disconnect.wait()  # a client that stops sending and never leaves
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


class BodyReader:
    """Reads the body as Starlette (and our GraphQL endpoint) do, then answers 200."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = b"".join([chunk async for chunk in Request(scope, receive).stream()])
        except ClientDisconnect:
            self.seen.append("disconnect")
            return
        self.seen.append(body.decode())
        await JSONResponse({"ok": True})(scope, receive, send)


async def test_a_body_that_stops_arriving_is_answered_408_and_the_connection_closed() -> None:
    reader = BodyReader()
    exchange = Exchange(b'{"query": "{ me', complete=False)
    started = time.monotonic()
    await asyncio.wait_for(
        BodyDeadline(reader, timeout=0.3)(http_scope(), exchange.receive, exchange.send), 10
    )
    assert 0.25 <= time.monotonic() - started < 5
    assert exchange.status == 408
    assert exchange.headers()[b"connection"] == b"close"
    assert exchange.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # The application saw the client go, as for any client that leaves mid-body.
    assert reader.seen == ["disconnect"]


async def test_the_deadline_covers_the_whole_body_not_each_part() -> None:
    class Trickle(Exchange):
        async def receive(self) -> Message:
            await asyncio.sleep(0.1)  # every part in time, the whole never
            return {"type": "http.request", "body": b"x", "more_body": True}

    reader = BodyReader()
    exchange = Trickle()
    await asyncio.wait_for(
        BodyDeadline(reader, timeout=0.5)(http_scope(), exchange.receive, exchange.send), 10
    )
    assert exchange.status == 408 and reader.seen == ["disconnect"]


async def test_a_body_in_time_passes_and_waiting_for_a_disconnect_is_not_timed() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["type"])
        await JSONResponse({"ok": True})(scope, receive, send)
        seen.append((await receive())["type"])  # long after the deadline: the client left

    exchange = Exchange(b"{}")
    asyncio.get_running_loop().call_later(0.5, exchange.disconnect.set)
    await BodyDeadline(app, timeout=0.2)(http_scope(), exchange.receive, exchange.send)
    assert exchange.status == 200 and seen == ["http.request", "http.disconnect"]


class Blocking:
    """An application whose requests hang until released."""

    def __init__(self) -> None:
        self.running = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.running += 1
        try:
            await self.release.wait()
            await JSONResponse({"ok": True})(scope, receive, send)
        finally:
            self.running -= 1


async def test_requests_beyond_the_in_flight_limit_get_503_without_running_the_app() -> None:
    app = Blocking()
    limited = InFlightLimit(app, limit=2)
    hung = [Exchange(b"{}") for _ in range(2)]
    tasks = [asyncio.create_task(limited(http_scope(), e.receive, e.send)) for e in hung]
    await asyncio.sleep(0.05)
    assert app.running == 2

    turned_away = Exchange(b"{}")
    await asyncio.wait_for(limited(http_scope(), turned_away.receive, turned_away.send), 5)
    assert app.running == 2  # the third never reached the application
    assert turned_away.status == 503
    assert turned_away.headers()[b"retry-after"] == b"1"
    assert turned_away.headers()[b"content-type"] == b"application/json"
    assert turned_away.json() == {
        "errors": [
            {
                "message": "The server is busy: retry shortly.",
                "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": 1},
            }
        ]
    }

    # Liveness answers while the process is full.
    health = Exchange(b"")
    health_task = asyncio.create_task(limited(http_scope("/healthz"), health.receive, health.send))
    await asyncio.sleep(0.05)
    assert app.running == 3

    app.release.set()
    await asyncio.gather(*tasks, health_task)
    assert [e.status for e in hung] == [200, 200] and health.status == 200
    again = Exchange(b"{}")
    await limited(http_scope(), again.receive, again.send)
    assert again.status == 200 and limited.in_flight == 0


async def test_a_failing_request_gives_its_slot_back() -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    limited = InFlightLimit(failing, limit=1)
    for _ in range(3):
        exchange = Exchange(b"{}")
        with pytest.raises(RuntimeError):
            await limited(http_scope(), exchange.receive, exchange.send)
    assert limited.in_flight == 0


async def test_limit_middleware_applies_the_settings() -> None:
    app = Blocking()
    wrapped = limit_middleware(app, Settings(max_in_flight=1, body_timeout=0.5))
    assert isinstance(wrapped, InFlightLimit) and wrapped.limit == 1
    assert isinstance(wrapped.app, BodyDeadline) and wrapped.app.timeout == 0.5
