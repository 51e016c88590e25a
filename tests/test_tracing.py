"""OpenTelemetry traces: one server span per operation, children for authentication,
validation and each database statement, the caller's ``traceparent`` honoured, and a real
OTLP/HTTP export to a receiver on this machine. Spans are collected in memory except in
the export test."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from graphql_api.app import create_app
from graphql_api.auth.keys import KeySet
from graphql_api.container import Container, build_tracing
from graphql_api.observability.environment import tracing_enabled
from graphql_api.observability.tracing import Tracing, root_ratio
from graphql_api.settings import Settings
from graphql_api.web.client_page import CLIENT_MANIFEST
from tests.conftest import LOGIN, FakeClock
from tests.fake_google import FakeGoogle

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def traced(
    settings: Settings, clock: FakeClock, keys: KeySet, exporter: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose spans go to ``exporter``."""
    tracing = Tracing(processor=SimpleSpanProcessor(exporter))
    container = Container(settings, clock=clock, keys=keys, tracing=tracing)
    app = create_app(container=container)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            exporter.clear()  # what start-up read
            yield http


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        span
        for span in exporter.get_finished_spans()
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


def in_trace(exporter: InMemorySpanExporter, root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    trace_id = root.context.trace_id
    return [
        span
        for span in exporter.get_finished_spans()
        if span.context is not None and span.context.trace_id == trace_id
    ]


async def test_a_free_form_operation_is_one_server_span_with_its_children(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    query = "query Probe { __typename }"
    response = await traced.post("/graphql", json={"query": query})
    assert response.status_code == 200

    [server] = server_spans(exporter)
    assert server.name == "query"  # a free-form name stays out of the span's name
    attributes = dict(server.attributes or {})
    assert attributes["graphql.operation.type"] == "query"
    assert attributes["graphql.operation.name"] == "Probe"
    assert attributes["http.response.status_code"] == 200
    assert attributes["graphql_api.outcome"] == "ok"
    assert "graphql.document" not in attributes
    assert all(query not in str(value) for value in attributes.values())
    assert sorted(span.name for span in children(exporter, server)) == [
        "authenticate",
        "graphql.validate",
    ]

    exporter.clear()
    await traced.post("/graphql", json={"query": query})
    [again] = server_spans(exporter)
    # Validated once: the second request finds the verdict in the cache.
    assert [span.name for span in children(exporter, again)] == ["authenticate"]


async def test_a_trusted_document_names_its_span_and_carries_its_id(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    documents: dict[str, str] = json.loads(CLIENT_MANIFEST.read_text())
    document_id = next(k for k, text in documents.items() if text.startswith("query MySessions"))
    response = await traced.post("/graphql", json={"documentId": f"sha256:{document_id}"})
    assert response.status_code == 200

    [server] = server_spans(exporter)
    assert server.name == "query MySessions"
    attributes = dict(server.attributes or {})
    assert attributes["graphql.document.id"] == f"sha256:{document_id}"
    assert attributes["graphql.operation.name"] == "MySessions"
    assert attributes["graphql_api.outcome"] == "UNAUTHENTICATED"
    # Validated at start-up: no validation span on the request path.
    assert [span.name for span in children(exporter, server)] == ["authenticate"]


async def test_an_incoming_traceparent_is_the_parent_of_the_server_span(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    await traced.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    [server] = server_spans(exporter)
    assert server.context is not None and server.parent is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote


async def test_database_statements_are_spans_of_the_operation_without_their_values(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter, fake_google: FakeGoogle
) -> None:
    email = "traced-login@example.com"
    token = fake_google.mint(sub="traced-login", email=email)
    body = await traced.post("/graphql", json={"query": LOGIN, "variables": {"idToken": token}})
    assert "errors" not in body.json(), body.text

    [server] = server_spans(exporter)
    assert server.name == "mutation"
    statements = [span for span in in_trace(exporter, server) if span.kind is SpanKind.CLIENT]
    assert {span.name for span in statements} >= {"INSERT", "SELECT"}
    for span in statements:
        attributes = dict(span.attributes or {})
        assert attributes["db.system.name"] == "sqlite"
        assert span.name in str(attributes["db.query.text"]).upper()
        assert email not in str(attributes["db.query.text"])  # parameterized: no values
    # Every statement hangs in this operation's tree (none starts a trace of its own).
    assert all(span.parent is not None for span in statements)


async def test_a_page_of_categories_is_not_a_span_per_field(
    traced: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    query = "{ categories(first: 50) { edges { node { id name owner { id name } } } } }"
    await traced.post("/graphql", json={"query": query})
    [server] = server_spans(exporter)
    names = sorted(span.name for span in in_trace(exporter, server) if span is not server)
    assert names == ["authenticate", "graphql.validate"]  # anonymous: refused before SQL


async def test_the_sampler_comes_from_the_standard_variables(
    settings: Settings,
    clock: FakeClock,
    keys: KeySet,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    container = Container(
        settings, clock=clock, keys=keys, tracing=Tracing(processor=SimpleSpanProcessor(exporter))
    )
    app = create_app(container=container)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for _ in range(5):
                assert (await http.post("/graphql", json={"query": "{ __typename }"})).is_success
    assert exporter.get_finished_spans() == ()


async def test_parent_based_sampling_follows_the_caller_and_draws_the_rest(
    settings: Settings,
    clock: FakeClock,
    keys: KeySet,
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tracing = Tracing(processor=SimpleSpanProcessor(exporter))
    assert tracing.root_ratio == 0.0
    container = Container(settings, clock=clock, keys=keys, tracing=tracing)
    app = create_app(container=container)
    query = {"query": "{ __typename }"}
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            exporter.clear()
            for _ in range(5):  # roots: drawn at 0 %, so no span at all
                await http.post("/graphql", json=query)
            assert exporter.get_finished_spans() == ()
            # A caller that did not sample: nor do we.
            unsampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
            await http.post("/graphql", json=query, headers=unsampled)
            assert exporter.get_finished_spans() == ()
            # A caller that sampled: its trace goes on here, whatever our ratio.
            sampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            await http.post("/graphql", json=query, headers=sampled)
    [server] = server_spans(exporter)
    assert server.context is not None and format(server.context.trace_id, "032x") == TRACE_ID


@pytest.mark.parametrize(
    ("environ", "ratio"),
    [
        ({}, 1.0),  # the SDK's default: parentbased_always_on
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, 0.0),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
            0.1,
        ),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "x"}, None),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, None),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, None),
    ],
)
def test_only_the_standard_parent_based_samplers_are_drawn_before_the_sdk(
    environ: dict[str, str], ratio: float | None
) -> None:
    assert root_ratio(environ) == ratio


def test_tracing_is_on_only_with_an_otlp_endpoint() -> None:
    assert not tracing_enabled({})
    assert not tracing_enabled({"OTEL_SERVICE_NAME": "x"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_enabled(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )


async def test_off_nothing_of_tracing_is_on_the_request_path(
    app: Any, container: Container
) -> None:
    assert container.tracing is None
    assert app.state.engine.tracer is None


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, self.headers["content-type"], body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A local OTLP/HTTP receiver that records what it is sent."""
    received: list[tuple[str, str, bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


async def test_spans_are_exported_over_otlp_http(
    settings: Settings,
    clock: FakeClock,
    keys: KeySet,
    receiver: tuple[str, list[tuple[str, str, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = receiver
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    tracing = build_tracing()  # as the service builds it: from the variables
    assert tracing is not None
    container = Container(settings, clock=clock, keys=keys, tracing=tracing)
    app = create_app(container=container)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            await http.post("/graphql", json={"query": "query Exported { __typename }"})
    # Shutting down exported what the batch held.
    assert received, "nothing reached the receiver"
    path, content_type, body = received[-1]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "graphql-api"
    names = {span.name for scope in resource_spans.scope_spans for span in scope.spans}
    assert {"query", "authenticate", "graphql.validate"} <= names
