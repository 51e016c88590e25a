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

Cost. The SDK spends tens of microseconds on every span it makes, sampled or not, and the
OTLP encoder as much again per exported span. So a request the sampler leaves out makes
none: with the standard ``parentbased_*`` samplers (the default included) a request
without a ``traceparent`` is drawn here, at the sampler's ratio, before any span exists,
and the SDK's sampler (``ParentBased(ALWAYS_ON)``) then keeps the drawn ones and follows
the caller's decision for the others; the hooks below find out whether the request is
traced from one context variable.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from graphql_api.observability.recorder import OperationOutcome

DEFAULT_SERVICE_NAME = "graphql-api"
SERVER_SPAN = "GraphQL Operation"  # until the operation is known (semantic conventions)
_MAX_NAME = 100  # a free-form operation name is the client's text: keep it short

Facts = TypeVar("Facts")
Built = TypeVar("Built")

# True inside a request whose server span records: the hooks' one look.
_TRACED: ContextVar[bool] = ContextVar("graphql_api_traced", default=False)


class _Resource(Resource):
    """A resource that hashes once: the OTLP encoder hashes it for every span it exports,
    and each hash is a JSON dump of the attributes (a quarter of the encoding's cost)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _resource() -> Resource:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return _Resource(resource)


def root_ratio(environ: Mapping[str, str] = os.environ) -> float | None:
    """The share of requests without a ``traceparent`` that the configured standard
    ``parentbased_*`` sampler traces; None for any other sampler (the SDK decides alone)."""
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name == "parentbased_always_on":
        return 1.0
    if name == "parentbased_always_off":
        return 0.0
    if name != "parentbased_traceidratio":
        return None
    try:
        ratio = float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        return None  # the SDK says so and falls back to its default
    return ratio if 0.0 <= ratio <= 1.0 else None


class Tracing:
    """The tracer provider of one process and the hooks that make its spans."""

    def __init__(
        self,
        *,
        processor: SpanProcessor | None = None,
        sampler: Sampler | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        """By default spans go to the OTLP/HTTP exporter the ``OTEL_*`` variables
        describe, in batches, sampled as they say; tests hand in a processor (and a
        sampler) of their own."""
        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter())
        # The root draw is made here (``server``) for the standard parent-based samplers;
        # any other sampler, or none given and none standard, is the SDK's alone (it reads
        # OTEL_TRACES_SAMPLER(_ARG) itself).
        self.root_ratio = root_ratio(environ) if sampler is None else None
        if self.root_ratio is not None:
            sampler = ParentBased(ALWAYS_ON)
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
        ``traceparent`` when it sends one.

        A request the sampler leaves out runs with no span made current: every hook below
        then finds nothing recording and costs one look at the context (see README:
        tracing at 10 % costs little more than off)."""
        tracer = self.tracer
        propagator = self.propagator
        carried = frozenset(name.encode("latin-1") for name in self._carried)
        ratio = self.root_ratio
        draw = random.random

        async def traced(scope: Scope, receive: Receive, send: Send) -> None:
            carrier: dict[str, str] | None = None
            for key, value in scope["headers"]:  # ASGI header names are lowercase
                if key in carried:
                    carrier = carrier or {}
                    carrier[key.decode("latin-1")] = value.decode("latin-1")
            if carrier is None and ratio is not None and (ratio == 0.0 or draw() >= ratio):
                await app(scope, receive, send)  # a root the sampler leaves out: no span
                return
            parent = propagator.extract(carrier) if carrier else None
            span = tracer.start_span(
                SERVER_SPAN,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": scope["path"]},
            )
            if not span.is_recording():
                await app(scope, receive, send)
                return
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            traced_token = _TRACED.set(True)
            try:
                await app(scope, receive, send)
            finally:
                _TRACED.reset(traced_token)
                otel_context.detach(token)
                span.end()

        return traced

    def request(self, outcome: OperationOutcome | None, status: int, seconds: float) -> None:
        """Name the server span after the operation the engine ran (the endpoint calls
        this inside the span, once the answer is known)."""
        if not _TRACED.get():
            return
        span = trace.get_current_span()
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        if outcome is None:
            span.set_attribute("http.response.status_code", status)
            return
        kind = outcome.operation_type
        name = outcome.operation_name
        codes = outcome.codes
        attributes: dict[str, str | int] = {
            "http.response.status_code": status,
            "graphql_api.outcome": codes[0] if codes else "ok",
        }
        if outcome.document_id is not None:
            attributes["graphql.document.id"] = f"sha256:{outcome.document_id}"
        if kind is not None:
            attributes["graphql.operation.type"] = kind
            if name is not None:
                attributes["graphql.operation.name"] = name[:_MAX_NAME]
            # Span names must be few: only a trusted document's name is part of it.
            span.update_name(f"{kind} {name}" if outcome.trusted and name else kind)
        span.set_attributes(attributes)

    # --- child spans ------------------------------------------------------------------

    @contextmanager
    def span(self, name: str) -> Iterator[object]:
        """A child of the current span, made current; nothing outside a sampled trace."""
        if not _TRACED.get():
            yield None
            return
        span = self.tracer.start_span(name)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        finally:
            otel_context.detach(token)
            span.end()

    def authentication(
        self, getter: Callable[[Facts], Awaitable[Built]]
    ) -> Callable[[Facts], Awaitable[Built]]:
        """The context getter inside an ``authenticate`` span."""
        span = self.span

        async def traced(facts: Facts) -> Built:
            if not _TRACED.get():
                return await getter(facts)
            with span("authenticate"):
                return await getter(facts)

        return traced

    def instrument_databases(self, engines: Iterable[AsyncEngine]) -> None:
        """A client span per statement, only inside a sampled trace (a statement of a
        background task, or of a request left out, starts none).

        The dialect's execution events, not the engine's cursor events: with a cursor
        listener SQLAlchemy takes its slower, event-dispatching path for every statement,
        which cost an unsampled W2 request about a tenth more instructions; a dialect
        listener costs one call that finds nothing recording and lets the default run."""
        for engine in engines:
            statements = _Statements(self.tracer, engine)
            sync_engine = engine.sync_engine
            event.listen(sync_engine, "do_execute", statements.execute)
            event.listen(sync_engine, "do_execute_no_params", statements.execute_no_params)
            event.listen(sync_engine, "do_executemany", statements.executemany)


class _Statements:
    """Runs a statement inside its span (the dialect's own method does the work)."""

    def __init__(self, tracer: trace.Tracer, engine: AsyncEngine) -> None:
        self.tracer = tracer
        self.dialect = engine.dialect
        self.system = engine.dialect.name

    def execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        if not _TRACED.get():
            return False  # SQLAlchemy runs it as usual
        with self._span(statement):
            self.dialect.do_execute(cursor, statement, parameters, context)
        return True

    def execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        if not _TRACED.get():
            return False
        with self._span(statement):
            self.dialect.do_execute_no_params(cursor, statement, context)
        return True

    def executemany(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        if not _TRACED.get():
            return False
        with self._span(statement):
            self.dialect.do_executemany(cursor, statement, parameters, context)
        return True

    @contextmanager
    def _span(self, statement: str) -> Iterator[None]:
        span = self.tracer.start_span(
            _statement_name(statement),
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": self.system, "db.query.text": statement},
        )
        try:
            yield
        except BaseException as exc:
            # The type only: a database's message can quote the row's values.
            error = type(exc).__name__
            span.set_status(Status(StatusCode.ERROR, error))
            span.set_attribute("error.type", error)
            raise
        finally:
            span.end()


def _statement_name(statement: str) -> str:
    """The statement's first keyword (SELECT, INSERT, BEGIN...): a span name of few values."""
    head = statement.lstrip().split(None, 1)
    return head[0].upper()[:16] if head else "SQL"
