"""The application factory: ``graphql_api.app:create_app``.

Wiring only: the container's services become the context getter's, the settings become
the engine's, and plain ASGI apps are composed: middleware (listed once: CORS, the
request bounds, the security headers) around a dispatcher that sends POST /graphql to
its endpoint and everything else to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import State
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from graphql_api.api.context import ContextGetter, Services
from graphql_api.api.schema import build_schema
from graphql_api.container import Container
from graphql_api.engine import Engine, EngineConfig, TrustedDocuments, TrustMode
from graphql_api.engine.trusted import ManifestError, load_manifests
from graphql_api.settings import ConfigurationError, Settings
from graphql_api.web.client_ip import parse_proxies
from graphql_api.web.client_page import CLIENT_MANIFEST, add_client_page
from graphql_api.web.dev_sign_in import add_dev_sign_in
from graphql_api.web.dispatch import Dispatcher
from graphql_api.web.graphql_endpoint import TRANSPORT_HEADER, GraphQLEndpoint, RequestObserver
from graphql_api.web.graphql_ws import GraphQLWebSocket
from graphql_api.web.limits import limit_middleware
from graphql_api.web.security_headers import SecurityHeaders

logger = logging.getLogger("graphql_api")


def build_engine(settings: Settings, *, trusted: TrustedDocuments | None = None) -> Engine:
    """The engine for ``settings``, with the trusted documents their manifests list
    (``trusted`` instead, to check other manifests). A manifest that does not load, or an
    entry that fails, is a ``ConfigurationError``: one line, and the service does not start."""
    config = EngineConfig(
        max_depth=settings.max_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_cost=settings.max_cost,
        max_duplicate_fields=settings.max_duplicate_fields,
        max_directives=settings.max_directives,
        introspection=settings.is_development,
        hide_hints=not settings.is_development,
        compiled=settings.compiled_execution,
        strict=settings.engine_strict,
    )
    schema = build_schema(development=settings.is_development)
    try:
        if trusted is None:
            trusted = _trusted_documents(settings)
        return Engine(schema, config, trusted=trusted)
    except ManifestError as exc:
        raise ConfigurationError(f"GRAPHQL_API_TRUSTED_DOCUMENTS_FILES: {exc}") from exc


def _trusted_documents(settings: Settings) -> TrustedDocuments:
    mode = TrustMode(settings.trusted_documents_mode)
    if mode is TrustMode.OFF:
        return TrustedDocuments(mode)  # ids are refused: no manifest is read
    files = list(settings.trusted_documents_files)
    if settings.is_development:
        # Development serves the reference client at /, which sends its operations by id.
        files.append(CLIENT_MANIFEST)
    return TrustedDocuments(mode, load_manifests(files))


class App:
    """The service as one ASGI app; ``state`` and ``lifespan()`` for tests and the CLI."""

    def __init__(self, asgi: ASGIApp, routes: FastAPI) -> None:
        self.asgi = asgi
        self.routes = routes

    @property
    def state(self) -> State:
        return self.routes.state

    def lifespan(self) -> AbstractAsyncContextManager[Any]:
        """Start-up and shut-down, as a server runs them (for in-process tests)."""
        return self.routes.router.lifespan_context(self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    container: Container | None = None,
    on_started: Sequence[Callable[[], None]] = (),
) -> App:
    """``on_started`` run once start-up is complete (e.g. freezing the GC's heap)."""
    settings = settings or (container.settings if container else Settings())
    settings.check_production()
    if container is None:
        container = Container(settings)
    engine = build_engine(settings)
    proxies = parse_proxies(settings.trusted_proxies)
    observers: list[RequestObserver] = []
    if container.prometheus is not None:
        engine.stats.listeners.append(container.metrics.fallback)
        observers.append(container.prometheus)
    tracing = container.tracing
    if tracing is not None:
        engine.tracer = tracing
        observers.append(tracing)
    context_getter = ContextGetter(
        services=Services(
            auth=container.auth,
            users=container.users,
            categories=container.categories,
            events=container.events,
        ),
        authenticator=container.authenticator,
        trusted_origins=settings.cors_origins,
        public_origin=settings.public_origin,
        development=settings.is_development,
    )
    graphql = GraphQLEndpoint(
        engine=engine,
        context_getter=tracing.authentication(context_getter) if tracing else context_getter,
        max_body=settings.max_body_bytes,
        proxies=proxies,
        development=settings.is_development,
        observers=observers,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.is_development:
            logger.warning(
                "DEVELOPMENT MODE: GraphiQL and introspection are on and cookies are not "
                "Secure. Set GRAPHQL_API_ENV=production for real deployments.",
                extra={"event": "development_mode"},
            )
        await container.start()
        for started in on_started:
            started()
        try:
            yield
        finally:
            await container.close()

    routes = FastAPI(
        title="graphql_api", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    routes.state.container = container
    routes.state.engine = engine
    routes.add_route("/graphql", graphql.get, methods=["GET"])

    @routes.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        # Answered within a second whatever the dependencies do (services/health.py).
        problems = await container.readiness.problems(within=0.9)
        if problems:
            return JSONResponse(
                {"status": "unavailable", "reasons": problems},
                status_code=503,
                headers={"cache-control": "no-store", "retry-after": "2"},
            )
        return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})

    @routes.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks() -> Response:
        return JSONResponse(
            container.keys.public_jwks(), headers={"cache-control": "public, max-age=300"}
        )

    prometheus = container.prometheus
    if prometheus is not None:

        @routes.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            body = prometheus.exposition()  # this worker's counts, then every worker's files
            return Response(
                body, media_type=prometheus.content_type, headers={"cache-control": "no-store"}
            )

    if settings.is_development:
        add_client_page(routes, settings)
        add_dev_sign_in(routes, graphql)  # never registered in production

    graphql_ws = GraphQLWebSocket(
        engine=engine,
        context_getter=context_getter,
        max_message=settings.max_body_bytes,
        max_subscriptions=settings.ws_max_subscriptions,
        max_connections_per_user=settings.ws_max_connections_per_user,
        init_timeout=settings.ws_init_timeout,
        trusted_origins=tuple(settings.cors_origins),
        public_origin=settings.public_origin,
        proxies=proxies,
        metrics=container.metrics,
    )
    graphql_post: ASGIApp = tracing.server(graphql) if tracing else graphql
    asgi: ASGIApp = Dispatcher(
        graphql_post=graphql_post, graphql_websocket=graphql_ws, fallback=routes
    )
    # The middleware, once for every path (innermost first).
    if settings.cors_origins:
        asgi = CORSMiddleware(
            asgi,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["POST"],
            allow_headers=["authorization", "content-type", TRANSPORT_HEADER],
            max_age=600,
        )
    # Slow bodies and overload (web/limits.py): outside CORS, so turning a request away
    # stays cheap; inside the security headers, which every answer carries.
    asgi = limit_middleware(asgi, settings)
    asgi = SecurityHeaders(asgi)
    return App(asgi, routes)
