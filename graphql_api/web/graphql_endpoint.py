"""/graphql over HTTP: the adapter between ASGI and the engine.

It owns everything HTTP and nothing else: content type (JSON only: the CSRF defence), the
body cap (enforced while reading), the request's facts for the context getter (headers,
cookie, client address, request id), and the response (status, headers, the refresh
cookie a resolver asked for). GraphQL semantics stay in the engine; who the caller is,
in the context getter.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Protocol

import orjson
from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from graphql_api.api.context import Context, RequestFacts
from graphql_api.engine import Engine, GraphQLRequest, RequestError, Result
from graphql_api.errors import UNEXPECTED_MESSAGE, ServiceUnavailable
from graphql_api.web.client_ip import Network, client_ip
from graphql_api.web.graphiql import graphiql_csp, graphiql_html

logger = logging.getLogger("graphql_api.http")
# One line per request (request id, operation, document id, user, outcome, duration).
access = logging.getLogger("graphql_api.access")

REFRESH_COOKIE = "graphql_api_refresh"
COOKIE_PATH = "/graphql"
TRANSPORT_HEADER = "x-refresh-token-transport"
_TRANSPORT = TRANSPORT_HEADER.encode()
# The request headers the context is built from (ASGI header names are lowercase).
_FACT_HEADERS = frozenset({b"user-agent", b"authorization", b"origin", b"host", _TRANSPORT})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

ContextGetter = Callable[[RequestFacts], Awaitable[Context]]


class RequestObserver(Protocol):
    """Hears of every answered request (metrics, the trace's server span)."""

    def request(self, outcome: Result | None, status: int, seconds: float) -> None: ...


class _RequestIds:
    """Request ids are for correlating logs: unique, not secret. A random prefix per
    process (drawn again in a forked child) and a counter cost far less than a random
    id per request."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = secrets.token_hex(6)
        self._numbers = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._numbers):x}"


_request_ids = _RequestIds()


def request_id_of(given: str | None) -> str:
    """The client's own request id when it is well formed, else a new one."""
    if given is not None and _REQUEST_ID.match(given):
        return given
    return _request_ids.next()


class BodyTooLarge(Exception):
    pass


def error_response(
    status: int,
    message: str,
    code: str = "BAD_USER_INPUT",
    *,
    request_id: str | None = None,
    retry_after: int | None = None,
) -> Response:
    extensions: dict[str, object] = {"code": code}
    headers = {"cache-control": "no-store"}
    if retry_after is not None:
        extensions["retryAfter"] = retry_after
        headers["retry-after"] = str(retry_after)
    if request_id is not None:
        headers["x-request-id"] = request_id
    body = {"errors": [{"message": message, "extensions": extensions}]}
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes before holding them in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class GraphQLEndpoint:
    def __init__(
        self,
        *,
        engine: Engine,
        context_getter: ContextGetter,
        max_body: int,
        proxies: tuple[Network, ...] = (),
        development: bool = False,
        observers: Sequence[RequestObserver] = (),
    ) -> None:
        self.engine = engine
        self.observers = tuple(observers)
        self.context_getter = context_getter
        self.max_body = max_body
        self.proxies = proxies
        self.development = development
        self.secure_cookie = not development

    async def get(self, request: Request) -> Response:
        # Queries never run over GET: a GET mutation is a CSRF, a GET query leaks into logs.
        if self.development and "query" not in request.query_params:
            return HTMLResponse(
                graphiql_html(), headers={"content-security-policy": graphiql_csp()}
            )
        return error_response(405, "Use POST with Content-Type: application/json.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /graphql as a bare ASGI app."""
        started = perf_counter()
        request = Request(scope, receive)
        request_id = request_id_of(request.headers.get("x-request-id"))
        result: Result | None = None
        context: Context | None = None
        try:
            response, result, context = await self.post(request, request_id)
        except ClientDisconnect:
            return
        except Exception:
            logger.exception(
                "unhandled error", extra={"event": "unhandled_error", "request_id": request_id}
            )
            response = error_response(
                500, UNEXPECTED_MESSAGE, "INTERNAL_SERVER_ERROR", request_id=request_id
            )
        response.headers.setdefault("x-request-id", request_id)
        await response(scope, receive, send)
        seconds = perf_counter() - started
        for observer in self.observers:
            observer.request(result, response.status_code, seconds)
        if access.isEnabledFor(logging.INFO):
            _access_line(request_id, result, context, response.status_code, seconds)

    async def post(
        self, request: Request, request_id: str
    ) -> tuple[Response, Result | None, Context | None]:
        """The response, the engine's result when the engine answered, and the context
        when one was built."""
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return error_response(415, "Content-Type must be application/json."), None, None
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge:
            return error_response(413, f"Request body exceeds {self.max_body} bytes."), None, None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error_response(400, "Request body is not valid JSON."), None, None
        try:
            graphql_request = GraphQLRequest.from_payload(payload)
        except RequestError as exc:
            return error_response(exc.status, exc.message, exc.code), None, None
        refused = self.engine.admit(graphql_request)
        if refused is not None:
            return self._respond(refused, request_id, None), refused, None
        try:
            context = await self.context_getter(self.facts(request, request_id))
        except ServiceUnavailable as unavailable:
            # The revocation list cannot be read: fail closed, and say to retry.
            return (
                error_response(
                    503,
                    unavailable.message,
                    unavailable.code,
                    request_id=request_id,
                    retry_after=unavailable.retry_after,
                ),
                None,
                None,
            )
        except Exception:
            logger.exception(
                "cannot build the request context",
                extra={"event": "context_failed", "request_id": request_id},
            )
            return (
                error_response(
                    500, UNEXPECTED_MESSAGE, "INTERNAL_SERVER_ERROR", request_id=request_id
                ),
                None,
                None,
            )
        result = await self.engine.execute(graphql_request, context)
        return self._respond(result, request_id, context), result, context

    def facts(self, request: Request, request_id: str) -> RequestFacts:
        # One pass over the raw headers (each ``request.headers.get`` is a scan of its own;
        # a header sent twice counts by its first line, as there).
        first: dict[bytes, str] = {}
        forwarded: list[str] = []
        cookies: dict[str, str] = {}  # every Cookie line, a later name winning
        for key, value in request.scope["headers"]:
            if key == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
            elif key == b"cookie":
                cookies.update(cookie_parser(value.decode("latin-1")))
            elif key in _FACT_HEADERS and key not in first:
                first[key] = value.decode("latin-1")
        peer = request.client.host if request.client else None
        return RequestFacts(
            request_id=request_id,
            client_ip=client_ip(peer, forwarded, self.proxies),
            user_agent=first.get(b"user-agent"),
            authorization=first.get(b"authorization"),
            refresh_cookie=cookies.get(REFRESH_COOKIE),
            cookie_transport=first.get(_TRANSPORT, "").lower() == "cookie",
            origin=first.get(b"origin"),
            # The scope's scheme, not request.url: building the URL costs more than the rest.
            addressed_origin=f"{request.scope.get('scheme', 'http')}://{first.get(b'host', '')}",
        )

    def _respond(self, result: Result, request_id: str, context: Context | None) -> Response:
        headers = {"cache-control": "no-store", "x-request-id": request_id}
        retry = [
            e.extensions["retryAfter"]
            for e in result.errors
            if e.extensions and "retryAfter" in e.extensions
        ]
        if retry:
            headers["retry-after"] = str(max(retry))
        response = Response(
            orjson.dumps(result.formatted()),
            status_code=503 if _unavailable(result) else result.status,
            media_type="application/json",
            headers=headers,
        )
        if context is not None:
            self.apply_cookie(response, context)
        return response

    def apply_cookie(self, response: Response, context: Context) -> None:
        """Set or clear the refresh cookie as a resolver asked (``context.response``)."""
        change = context.response.refresh_cookie
        if change is not None and change.value is None:
            response.delete_cookie(
                REFRESH_COOKIE,
                path=COOKIE_PATH,
                secure=self.secure_cookie,
                httponly=True,
                samesite="strict",
            )
        elif change is not None:
            response.set_cookie(
                REFRESH_COOKIE,
                change.value or "",
                max_age=change.max_age,
                path=COOKIE_PATH,
                secure=self.secure_cookie,
                httponly=True,
                samesite="strict",
            )


def _unavailable(result: Result) -> bool:
    """The whole request failed because a dependency is down: nothing but
    SERVICE_UNAVAILABLE errors, and no data (or only nulls at the top)."""
    if not result.errors or any(code != ServiceUnavailable.code for code in result.codes):
        return False
    return result.data is None or all(value is None for value in result.data.values())


def _access_line(
    request_id: str, result: Result | None, context: Context | None, status: int, seconds: float
) -> None:
    codes = result.codes if result is not None else []
    name = result.operation_name if result is not None else None
    access.info(
        "%s %s %s %d %.1f ms",
        (result.operation_type if result is not None else None) or "-",
        (name or "-")[:100],
        codes[0] if codes else "ok" if status < 400 else "refused",
        status,
        seconds * 1000,
        extra={
            "event": "request",
            "request_id": request_id,
            "operation_type": result.operation_type if result is not None else None,
            "operation_name": name[:100] if name else None,
            "document_id": result.document_id if result is not None else None,
            "user_id": context.user_id if context is not None else None,
            "outcome": codes[0] if codes else "ok" if status < 400 else "refused",
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
