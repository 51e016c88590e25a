"""The application factory: ``graphql_api.app:create_app``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from graphql_api.api.schema import build_schema
from graphql_api.container import Container
from graphql_api.engine import Engine, EngineConfig, TrustedDocuments, TrustMode
from graphql_api.engine.trusted import ManifestError, load_manifests
from graphql_api.settings import ConfigurationError, Settings
from graphql_api.web.client_page import CLIENT_MANIFEST, add_client_page
from graphql_api.web.graphql_endpoint import TRANSPORT_HEADER, GraphQLEndpoint
from graphql_api.web.security_headers import SecurityHeaders

logger = logging.getLogger("graphql_api")


class GraphQLApp(FastAPI):
    """FastAPI, except that POST /graphql, nearly all of the traffic, skips the router and
    FastAPI's own middleware (error pages, telemetry, body limit, exit stacks), which
    cost as much as a small query. It keeps the middleware that shape its responses:
    the security headers and CORS. Every other request goes through FastAPI."""

    graphql_post: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.graphql_post is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/graphql"
            and not scope.get("root_path")
        ):
            await self.graphql_post(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else Settings())
    settings.check_production()
    if container is None:
        container = Container(settings)
    engine = build_engine(settings)
    endpoint = GraphQLEndpoint(engine=engine, container=container)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.is_development:
            logger.warning(
                "DEVELOPMENT MODE: GraphiQL and introspection are on and cookies are not "
                "Secure. Set GRAPHQL_API_ENV=production for real deployments.",
                extra={"event": "development_mode"},
            )
        await container.start()
        try:
            yield
        finally:
            await container.close()

    app = GraphQLApp(
        title="graphql_api",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.container = container
    app.state.engine = engine
    app.add_route("/graphql", endpoint.post, methods=["POST"])
    app.add_route("/graphql", endpoint.get, methods=["GET"])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        try:
            await container.db.ping()
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("database not ready", extra={"event": "readyz_failed"})
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks() -> Response:
        return JSONResponse(
            container.keys.public_jwks(), headers={"cache-control": "public, max-age=300"}
        )

    if settings.is_development:
        add_client_page(app, settings)

    graphql_post: ASGIApp = endpoint.asgi
    if settings.cors_origins:
        cors: dict[str, Any] = {
            "allow_origins": settings.cors_origins,
            "allow_credentials": True,
            "allow_methods": ["POST"],
            "allow_headers": ["authorization", "content-type", TRANSPORT_HEADER],
            "max_age": 600,
        }
        app.add_middleware(CORSMiddleware, **cors)
        graphql_post = CORSMiddleware(graphql_post, **cors)
    app.add_middleware(SecurityHeaders)
    app.graphql_post = SecurityHeaders(graphql_post)
    return app
