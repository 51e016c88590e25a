"""POST /graphql: the HTTP adapter between Starlette and the schema.

It owns everything HTTP: content type (JSON only: the CSRF defence), the body cap
(enforced while reading), batching refusal, the Bearer token, the refresh cookie, and
the response. GraphQL semantics stay in the schema.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult

from graphql_api.api.compiled import PlanCache
from graphql_api.api.context import Context
from graphql_api.api.schema import ApiSchema
from graphql_api.auth.tokens import InvalidToken
from graphql_api.container import Container
from graphql_api.errors import UNEXPECTED_MESSAGE
from graphql_api.services.auth import Client
from graphql_api.web.client_ip import client_ip, parse_proxies
from graphql_api.web.graphiql import GRAPHIQL_CSP, graphiql_html

logger = logging.getLogger("graphql_api.http")

REFRESH_COOKIE = "graphql_api_refresh"
COOKIE_PATH = "/graphql"
TRANSPORT_HEADER = "x-refresh-token-transport"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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


class BodyTooLarge(Exception):
    pass


def _error(status: int, message: str, code: str = "BAD_USER_INPUT") -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
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
    def __init__(self, *, schema: ApiSchema, container: Container) -> None:
        self.schema = schema
        self.container = container
        settings = container.settings
        self.development = settings.is_development
        self.max_body = settings.max_body_bytes
        self.proxies = parse_proxies(settings.trusted_proxies)
        self.trusted_origins = frozenset(settings.cors_origins)
        self.public_origin = settings.public_origin
        self.secure_cookie = not self.development
        self.graphql_schema = schema._schema
        self.plans = (
            PlanCache(
                schema=schema._schema,
                documents=schema.documents,
                attributes=schema.plain_attribute,
                prefetched=schema.prefetched_attribute,
            )
            if settings.compiled_execution and schema.documents is not None
            else None
        )

    async def get(self, request: Request) -> Response:
        # Queries never run over GET: a GET mutation is a CSRF, a GET query leaks into logs.
        if self.development and "query" not in request.query_params:
            return HTMLResponse(graphiql_html(), headers={"content-security-policy": GRAPHIQL_CSP})
        return _error(405, "Use POST with Content-Type: application/json.")

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /graphql as a bare ASGI app, without the router and its middleware."""
        try:
            response = await self.post(Request(scope, receive))
        except ClientDisconnect:
            return
        except Exception:
            logger.exception("unhandled error", extra={"event": "unhandled_error"})
            response = _error(500, UNEXPECTED_MESSAGE, "INTERNAL_SERVER_ERROR")
        await response(scope, receive, send)

    async def post(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return _error(415, "Content-Type must be application/json.")
        try:
            body = await read_body(request, self.max_body)
        except BodyTooLarge:
            return _error(413, f"Request body exceeds {self.max_body} bytes.")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "Request body is not valid JSON.")
        if isinstance(payload, list):
            return _error(400, "Batched requests are not supported.")
        if not isinstance(payload, dict):
            return _error(400, "Request body must be a JSON object.")
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return _error(400, "The request has no query.")
        if variables is not None and not isinstance(variables, dict):
            return _error(400, "variables must be a JSON object.")
        if operation_name is not None and not isinstance(operation_name, str):
            return _error(400, "operationName must be a string.")

        try:
            context = await self.context(request)
        except Exception:
            # E.g. the revocation list cannot be read: fail closed, say nothing more.
            logger.exception("cannot build the request context", extra={"event": "context_failed"})
            return _error(500, UNEXPECTED_MESSAGE, "INTERNAL_SERVER_ERROR")
        plan = self.plans.get(query, operation_name) if self.plans is not None else None
        if plan is not None and self.plans is not None:
            try:
                data = await plan.run(self.graphql_schema, context, variables)
            except Exception:  # noqa: BLE001,S110 - the normal executor reports the errors
                pass
            else:
                self.plans.hits += 1
                return self._respond(ExecutionResult(data=data, errors=None), context)
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
            )
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
            return _error(400, "The operation cannot be run (check operationName).")
        return self._respond(result, context)

    def _respond(self, result: ExecutionResult, context: Context) -> Response:
        response_body: dict[str, Any] = {"data": result.data}
        headers = {"cache-control": "no-store", "x-request-id": context.request_id}
        if result.errors:
            response_body["errors"] = [error.formatted for error in result.errors]
            retry = [
                e.extensions["retryAfter"]
                for e in result.errors
                if e.extensions and e.extensions.get("code") == "RATE_LIMITED"
            ]
            if retry:
                headers["retry-after"] = str(max(retry))
        response = Response(
            orjson.dumps(response_body), media_type="application/json", headers=headers
        )
        for change in context.cookie_changes:
            if change.value is None:
                response.delete_cookie(
                    REFRESH_COOKIE,
                    path=COOKIE_PATH,
                    secure=self.secure_cookie,
                    httponly=True,
                    samesite="strict",
                )
            else:
                response.set_cookie(
                    REFRESH_COOKIE,
                    change.value,
                    max_age=change.max_age,
                    path=COOKIE_PATH,
                    secure=self.secure_cookie,
                    httponly=True,
                    samesite="strict",
                )
        return response

    async def context(self, request: Request) -> Context:
        headers = request.headers
        request_id = headers.get("x-request-id", "")
        if not _REQUEST_ID.match(request_id):
            request_id = _request_ids.next()
        peer = request.client.host if request.client else None
        client = Client(
            ip=client_ip(peer, headers.getlist("x-forwarded-for"), self.proxies),
            user_agent=(headers.get("user-agent") or None),
        )
        context = Context(container=self.container, client=client, request_id=request_id)
        await self._authenticate(context, headers.get("authorization"))
        context.cookie_transport = headers.get(TRANSPORT_HEADER, "").lower() == "cookie"
        context.refresh_cookie = request.cookies.get(REFRESH_COOKIE)
        context.origin_trusted = self._origin_trusted(request)
        return context

    async def _authenticate(self, context: Context, authorization: str | None) -> None:
        if not authorization:
            return
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return
        try:
            claims = self.container.codec.decode(token.strip())
        except InvalidToken as exc:
            logger.info(
                "access token refused",
                extra={
                    "event": "token_refused",
                    "reason": str(exc),
                    "request_id": context.request_id,
                },
            )
            return
        if await self.container.revocations.is_revoked(claims.session_id):
            logger.info(
                "access token of an ended session",
                extra={
                    "event": "token_refused",
                    "reason": "revoked",
                    "session_id": claims.session_id,
                    "user_id": claims.user_id,
                    "request_id": context.request_id,
                },
            )
            return
        context.user_id = claims.user_id
        context.session_id = claims.session_id

    def _origin_trusted(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            # Browsers send Origin on every cross-origin POST; no Origin is not a browser CSRF.
            return True
        if origin in self.trusted_origins:
            return True
        own = self.public_origin or f"{request.url.scheme}://{request.headers.get('host', '')}"
        return origin == own
