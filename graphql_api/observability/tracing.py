"""OpenTelemetry traces: a server span per GraphQL operation, with what it waited on.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set (``environment.py``); configured by the standard variables, which the SDK reads
itself: ``OTEL_SERVICE_NAME`` (default ``graphql-api``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` (default: every trace, or as the
caller's ``traceparent`` decided), ``OTEL_EXPORTER_OTLP_*`` (OTLP over HTTP/protobuf),
``OTEL_BSP_*`` (batching), ``OTEL_PROPAGATORS`` (default W3C trace context). Off, none of
this module is imported and nothing is added to the request path.

Spans (following OpenTelemetry's GraphQL, HTTP and database conventions):

- the server span of ``POST /graphql``, a child of the caller's ``traceparent``, named
  ``query Me`` for a trusted document and ``query`` for a free-form one (span names must
  stay few), with ``graphql.operation.type``, ``graphql.operation.name``,
  ``graphql.document.id`` (trusted documents), the outcome code and the HTTP status. The
  document's text is never recorded: a free-form query may carry anything;
- ``authenticate``: the context getter (token, session, revocation list);
- ``graphql.validate``: parse and validation of a document not validated before;
- one span per database statement, with its parameterized SQL (never the values).

Not one span per field: a page of 100 categories is one plan, and a span per field would
cost more than the query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from graphql_api.observability.recorder import OperationOutcome

DEFAULT_SERVICE_NAME = "graphql-api"
SERVER_SPAN = "GraphQL Operation"  # until the operation is known (semantic conventions)
_SPAN_ATTRIBUTE = "_graphql_api_span"
_MAX_NAME = 100  # a free-form operation name is the client's text: keep it short

Facts = TypeVar("Facts")
Built = TypeVar("Built")


def _resource() -> Resource:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class Tracing:
    """The tracer provider of one process and the hooks that make its spans."""

    def __init__(
        self,
        *,
        processor: SpanProcessor | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        """By default spans go to the OTLP/HTTP exporter the ``OTEL_*`` variables
        describe, in batches; tests hand in a processor of their own."""
        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter())
        # No sampler given: the SDK reads OTEL_TRACES_SAMPLER(_ARG) itself.
        self.provider = TracerProvider(resource=_resource(), sampler=sampler)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("graphql_api")
        self.propagator = propagate.get_global_textmap()
        self._carried = frozenset(self.propagator.fields)
        self._shut_down = False

    def shutdown(self) -> None:
        """Export what is left (the process is stopping); once."""
        if not self._shut_down:
            self._shut_down = True
            self.provider.shutdown()

    # --- the server span ----------------------------------------------------------------

    def server(self, app: ASGIApp) -> ASGIApp:
        """``app`` (POST /graphql) inside a server span, a child of the caller's
        ``traceparent`` when it sends one."""
        tracer = self.tracer
        propagator = self.propagator
        carried = self._carried

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            carrier = {
                name: value.decode("latin-1")
                for key, value in scope.get("headers", ())
                if (name := key.decode("latin-1").lower()) in carried
            }
            parent = propagator.extract(carrier) if carrier else None
            with tracer.start_as_current_span(
                SERVER_SPAN,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": scope.get("path", "")},
            ):
                await app(scope, receive, send)

        return traced

    def request(self, outcome: OperationOutcome | None, status: int, seconds: float) -> None:
        """Name the server span after the operation the engine ran (the endpoint calls
        this inside the span, once the answer is known)."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        if outcome is None:
            return
        kind = outcome.operation_type
        name = outcome.operation_name
        codes = outcome.codes
        span.set_attribute("graphql_api.outcome", codes[0] if codes else "ok")
        if outcome.document_id is not None:
            span.set_attribute("graphql.document.id", f"sha256:{outcome.document_id}")
        if kind is None:
            return
        span.set_attribute("graphql.operation.type", kind)
        if name is not None:
            span.set_attribute("graphql.operation.name", name[:_MAX_NAME])
        # Span names must be few: only a trusted document's name is part of it.
        span.update_name(f"{kind} {name}" if outcome.trusted and name else kind)

    # --- child spans ------------------------------------------------------------------

    @contextmanager
    def span(self, name: str) -> Iterator[object]:
        with self.tracer.start_as_current_span(name) as span:
            yield span

    def authentication(
        self, getter: Callable[[Facts], Awaitable[Built]]
    ) -> Callable[[Facts], Awaitable[Built]]:
        """The context getter inside an ``authenticate`` span."""
        tracer = self.tracer

        async def traced(facts: Facts) -> Built:
            with tracer.start_as_current_span("authenticate"):
                return await getter(facts)

        return traced

    def instrument_databases(self, engines: Iterable[AsyncEngine]) -> None:
        """A client span per statement, from SQLAlchemy's cursor events; only inside a
        sampled trace (a statement of a background task starts none)."""
        tracer = self.tracer
        for engine in engines:
            system = engine.dialect.name
            sync_engine = engine.sync_engine

            def before(
                _conn: Any,
                _cursor: Any,
                statement: str,
                _parameters: Any,
                context: Any,
                _executemany: bool,
                system: str = system,
            ) -> None:
                if context is None or not trace.get_current_span().is_recording():
                    return
                span = tracer.start_span(
                    _statement_name(statement),
                    kind=SpanKind.CLIENT,
                    attributes={"db.system.name": system, "db.query.text": statement},
                )
                setattr(context, _SPAN_ATTRIBUTE, span)

            event.listen(sync_engine, "before_cursor_execute", before)
            event.listen(sync_engine, "after_cursor_execute", _after)
            event.listen(sync_engine, "handle_error", _failed)


def _after(
    _conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool
) -> None:
    span = getattr(context, _SPAN_ATTRIBUTE, None)
    if span is not None:
        setattr(context, _SPAN_ATTRIBUTE, None)
        span.end()


def _failed(exception_context: Any) -> None:
    context = exception_context.execution_context
    span = getattr(context, _SPAN_ATTRIBUTE, None) if context is not None else None
    if span is not None:
        setattr(context, _SPAN_ATTRIBUTE, None)
        # The type only: a database's message can quote the row's values.
        error = type(exception_context.original_exception).__name__
        span.set_status(Status(StatusCode.ERROR, error))
        span.set_attribute("error.type", error)
        span.end()


def _statement_name(statement: str) -> str:
    """The statement's first keyword (SELECT, INSERT, BEGIN...): a span name of few values."""
    head = statement.lstrip().split(None, 1)
    return head[0].upper()[:16] if head else "SQL"
