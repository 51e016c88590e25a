"""Per-request bounds as pure ASGI middleware: a deadline for the request body, and a cap
on requests in flight that answers 503 without running the application.

The connection-level bounds (the header deadline, the connection cap) live in the HTTP
protocol (``web/connections.py``): by the time an ASGI app sees a request its headers
are complete. Wrap the final ASGI app with ``limit_middleware(app, settings)``, outermost,
so that a request turned away costs no more than this.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from graphql_api.settings import Settings

RETRY_AFTER = 1  # seconds: in-flight requests usually finish well within one
EXEMPT_PATHS = frozenset({"/healthz"})  # liveness must answer while the process is busy


def _json_response(
    status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]]
) -> tuple[Message, Message]:
    content = orjson.dumps(body)
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": content}


class BodyDeadline:
    """The whole request body must arrive within ``timeout`` seconds of the application's
    first read, else the client gets 408 and the connection is closed.

    The application's pending ``receive()`` then returns ``http.disconnect``, as if the
    client had gone, so whatever reads the body (Starlette's ``Request.stream()``, our
    GraphQL endpoint) stops the way it already does for a client that left. Anything it
    sends afterwards is dropped: the client has its answer. Reads after the body is
    complete (waiting for a disconnect) are not timed.
    """

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        body_complete = False
        response_started = False
        timed_out = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_complete, timed_out
            if timed_out:
                return {"type": "http.disconnect"}
            if body_complete:
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                if not response_started:
                    for part in _json_response(
                        408,
                        {
                            "errors": [
                                {
                                    "message": "The request body did not arrive in time.",
                                    "extensions": {"code": "BAD_USER_INPUT"},
                                }
                            ]
                        },
                        # The rest of the body may still come: nothing more is read here.
                        [(b"connection", b"close")],
                    ):
                        await send(part)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception:
            if not timed_out:
                raise
            # The application failed on the disconnect we made up; the client has its 408.


class InFlightLimit:
    """At most ``limit`` HTTP requests run at once in this process; beyond that each is
    answered 503 with ``Retry-After`` at once, without running the application. Hung or
    slow requests then cost a bounded amount of memory and database connections, and
    clients are told to come back instead of queueing behind them. WebSockets are not
    requests (their own limits apply); ``/healthz`` is exempt."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        retry_after: int = RETRY_AFTER,
        exempt_paths: frozenset[str] = EXEMPT_PATHS,
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt_paths = exempt_paths
        self.in_flight = 0
        self._busy = _json_response(
            503,
            {
                "errors": [
                    {
                        "message": "The server is busy: retry shortly.",
                        "extensions": {"code": "SERVICE_UNAVAILABLE", "retryAfter": retry_after},
                    }
                ]
            },
            [(b"retry-after", str(retry_after).encode())],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            for part in self._busy:
                await send(part)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def limit_middleware(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` under the request bounds of ``settings``: the in-flight cap outermost (the
    cheapest refusal), then the body deadline, which counts against the cap while it runs."""
    return InFlightLimit(
        BodyDeadline(app, timeout=settings.body_timeout), limit=settings.max_in_flight
    )
