"""The front door: POST /graphql (nearly all traffic) straight to its endpoint, WebSockets
on /graphql to theirs, everything else (and the lifespan) to the FastAPI routes.

FastAPI's router and per-route machinery cost as much as a small query; the GraphQL
endpoint needs none of it. Middleware (security headers, CORS, limits) wraps this
dispatcher once, in ``app.py``, so every path gets the same. Paths are matched below the
deployment's root path (``--root-path``), the way Starlette's router matches them.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

GRAPHQL_PATH = "/graphql"


class Dispatcher:
    def __init__(
        self, *, graphql_post: ASGIApp, graphql_websocket: ASGIApp, fallback: ASGIApp
    ) -> None:
        self.graphql_post = graphql_post
        self.graphql_websocket = graphql_websocket
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["method"] == "POST" and get_route_path(scope) == GRAPHQL_PATH:
            await self.graphql_post(scope, receive, send)
        elif kind == "websocket" and get_route_path(scope) == GRAPHQL_PATH:
            await self.graphql_websocket(scope, receive, send)
        else:
            await self.fallback(scope, receive, send)
