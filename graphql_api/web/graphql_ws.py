"""/graphql over WebSocket: subscriptions with graphql-transport-ws (the graphql-ws protocol).

Built on Strawberry's own protocol handler (``BaseGraphQLTransportWSHandler``), extended at
its seams: the ``connection_init`` payload authenticates the socket through the same
context getter as HTTP (never a cookie), and ``subscribe`` runs through the same engine
(trusted documents, query limits). What Strawberry's handler does not know, this adds:

- the Origin of the handshake is checked first (403 for a foreign one);
- 4401 for a missing, bad, expired or revoked token at init (Strawberry's own 4408 for no
  init in time and 4429 for a second one stay);
- the connection lives no longer than its token (4403 "Token expired" at ``exp``) and its
  session (4403 "Session ended" within the revocation poll interval of a logout, on every
  process: the context watches the session);
- limits: subscriptions per connection (an ``error`` message, RATE_LIMITED), connections
  per user (4429), message size (1009), and a subscriber too far behind (1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from json import JSONDecodeError
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)

from graphql_api.api.context import Context, RequestFacts
from graphql_api.engine import Engine, GraphQLRequest, RequestError, Result
from graphql_api.web.client_ip import Network, client_ip
from graphql_api.web.graphql_endpoint import request_id_of

logger = logging.getLogger("graphql_api.ws")

ContextGetter = Callable[[RequestFacts], Awaitable[Context]]

# Close codes (graphql-ws's, and RFC 6455's).
UNAUTHORIZED = 4401
FORBIDDEN = 4403
TOO_MANY = 4429
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013


class SocketMetrics(Protocol):
    def ws_opened(self) -> None: ...
    def ws_closed(self, code: int) -> None: ...


class _NoMetrics:
    def ws_opened(self) -> None:
        return

    def ws_closed(self, code: int) -> None:
        return


class UserConnections:
    """Open sockets per user, in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[int] = Counter()

    def admit(self, user_id: int) -> bool:
        if self._open[user_id] >= self.limit:
            return False
        self._open[user_id] += 1
        return True

    def release(self, user_id: int) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]


class _SizedAdapter(ASGIWebSocketAdapter):
    """Strawberry's adapter, closing with 1009 on a message over the size limit, and
    remembering how the socket closed (the code sent or received; metrics count them)."""

    view: GraphQLWebSocket
    close_code: int | None = None

    async def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
        await super().close(code, reason)

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if len(text) > self.view.max_message or (
                    len(text.encode("utf-8", "surrogatepass")) > self.view.max_message
                ):
                    await self.close(TOO_BIG, "Message too big")
                    return
                try:
                    yield self.view.decode_json(text)
                except JSONDecodeError as exc:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from exc
        except KeyError as exc:
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect as disconnect:
            if self.close_code is None:
                self.close_code = disconnect.code


class _Handler(BaseGraphQLTransportWSHandler[Any, None]):
    """One connection: Strawberry's protocol handling, with our authentication, lifetime
    and limits. ``self.context`` is the connection's ``Context`` once acknowledged."""

    view: GraphQLWebSocket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._user_id: int | None = None
        self._stop_watching: Callable[[], None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._closing = False

    # --- lifetime ---------------------------------------------------------------------

    async def handle(self) -> None:
        metrics = self.view.metrics
        metrics.ws_opened()
        try:
            await super().handle()
        finally:
            adapter = self.websocket
            code = adapter.close_code if isinstance(adapter, _SizedAdapter) else None
            # 1006: the client went away without a close frame.
            metrics.ws_closed(code if code is not None else 1006)

    def _close_soon(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        self.view.background.add(task)
        task.add_done_callback(self.view.background.discard)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code=code, reason=reason)

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._stop_watching is not None:
            self._stop_watching()
        if self._user_id is not None:
            self.view.connections.release(self._user_id)
            self._user_id = None
        await super().shutdown()

    # --- protocol ---------------------------------------------------------------------

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=TOO_MANY, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        authorization = payload.get("authorization", payload.get("Authorization"))
        context = await self.view.context_for(
            self.view.current_socket(self),
            authorization if isinstance(authorization, str) else None,
        )
        caller = context.caller
        if caller is None or context.watch_session is None:
            await self.websocket.close(code=UNAUTHORIZED, reason="Unauthorized")
            return
        if not self.view.connections.admit(caller.user_id):
            await self.websocket.close(code=TOO_MANY, reason="Too many connections for this user")
            return
        self._user_id = caller.user_id
        self.context = replace(
            context, on_overflow=lambda: self._close_soon(TRY_AGAIN_LATER, "Subscriber too slow")
        )
        self._stop_watching = context.watch_session(
            lambda: self._close_soon(FORBIDDEN, "Session ended")
        )
        remaining = max(0.0, caller.expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            remaining, self._close_soon, FORBIDDEN, "Token expired"
        )
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged:
            await self.websocket.close(code=UNAUTHORIZED, reason="Unauthorized")
            return
        operation_id = message["id"]
        if operation_id in self.operations:
            await self.websocket.close(
                code=4409, reason=f"Subscriber for {operation_id} already exists"
            )
            return
        if len(self.operations) >= self.view.max_subscriptions:
            await self._refuse(
                operation_id,
                f"At most {self.view.max_subscriptions} subscriptions per connection.",
                "RATE_LIMITED",
            )
            return
        try:
            request = GraphQLRequest.from_payload(message.get("payload"))
        except RequestError as exc:
            await self._refuse(operation_id, exc.message, exc.code)
            return
        refused = self.view.engine.admit(request)
        if refused is not None:
            await self.send_message(
                {
                    "id": operation_id,
                    "type": "error",
                    "payload": [e.formatted for e in refused.errors],
                }
            )
            return
        operation: Operation[Any, None] = Operation(
            self, operation_id, request.query or "", request.variables, request.operation_name
        )
        operation.task = asyncio.create_task(self._run(operation, request))
        operation.task.add_done_callback(self._task_done)
        self.operations[operation_id] = operation

    async def _refuse(self, operation_id: str, message: str, code: str) -> None:
        await self.send_message(
            {
                "id": operation_id,
                "type": "error",
                "payload": [{"message": message, "extensions": {"code": code}}],
            }
        )

    async def _run(self, operation: Operation[Any, None], request: GraphQLRequest) -> None:
        try:
            outcome = await self.view.engine.subscribe(request, self.context)
            if isinstance(outcome, Result):
                if outcome.data is None and outcome.errors:
                    await operation.send_initial_errors(outcome.errors)
                    return
                await self._next(operation, outcome)
            else:
                async with contextlib.aclosing(outcome):
                    async for result in outcome:
                        await self._next(operation, result)
            if not self._closing:
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except WebSocketDisconnected:
            return
        except Exception:
            logger.exception(
                "subscription failed",
                extra={"event": "subscription_failed", "request_id": self.context.request_id},
            )
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
        finally:
            self.operations.pop(operation.id, None)

    @staticmethod
    async def _next(operation: Operation[Any, None], result: Result) -> None:
        message: Any = {"id": operation.id, "type": "next", "payload": result.formatted()}
        await operation.send_operation_message(message)


class GraphQLWebSocket(GraphQL[Any, None]):
    """The WebSocket side of /graphql: Strawberry's view, graphql-transport-ws only."""

    graphql_transport_ws_handler_class = _Handler
    websocket_adapter_class = _SizedAdapter

    def __init__(
        self,
        *,
        engine: Engine,
        context_getter: ContextGetter,
        max_message: int,
        max_subscriptions: int,
        max_connections_per_user: int,
        init_timeout: float,
        trusted_origins: tuple[str, ...] = (),
        public_origin: str | None = None,
        proxies: tuple[Network, ...] = (),
        metrics: SocketMetrics | None = None,
    ) -> None:
        schema: BaseSchema = engine.schema
        allowed = [*trusted_origins, *([public_origin] if public_origin else [])]
        super().__init__(
            schema,
            graphql_ide=None,
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=init_timeout),
            max_subscriptions_per_connection=max_subscriptions,
            allowed_origins=allowed,
        )
        self.engine = engine
        self.context_getter = context_getter
        self.max_message = max_message
        self.max_subscriptions = max_subscriptions
        self.connections = UserConnections(max_connections_per_user)
        self.trusted_origins = frozenset(trusted_origins)
        self.public_origin = public_origin
        self.proxies = proxies
        self.metrics: SocketMetrics = metrics or _NoMetrics()
        self.background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        socket = WebSocket(scope, receive=receive, send=send)
        if not self._origin_allowed(socket.headers):
            # Closing before accepting answers the handshake with 403.
            await socket.close(code=1008)
            return
        await super().__call__(scope, receive, send)

    def _origin_allowed(self, headers: Mapping[str, str]) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser: it carries no ambient credentials to abuse
        if origin in self.trusted_origins:
            return True
        if self.public_origin is not None:
            return origin == self.public_origin
        scheme = "https" if headers.get("x-forwarded-proto") == "https" else "http"
        host = headers.get("host", "")
        return origin in (f"{scheme}://{host}", f"http://{host}", f"https://{host}")

    async def get_context(self, request: Any, response: Any) -> Any:
        return None  # the real context comes with connection_init (the token is in it)

    def current_socket(self, handler: _Handler) -> WebSocket:
        socket: WebSocket = handler.websocket.ws  # type: ignore[attr-defined]
        return socket

    async def context_for(self, socket: WebSocket, authorization: str | None) -> Context:
        peer = socket.client.host if socket.client else None
        facts = RequestFacts(
            request_id=request_id_of(socket.headers.get("x-request-id")),
            client_ip=client_ip(peer, socket.headers.getlist("x-forwarded-for"), self.proxies),
            user_agent=socket.headers.get("user-agent"),
            authorization=authorization,
            origin=socket.headers.get("origin"),
        )
        return await self.context_getter(facts)
