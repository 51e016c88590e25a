"""GET /metrics: every series the contract lists appears, and moves when its event happens.

The app runs in development with METRICS=true (one process: the aggregation over worker
processes is tested against a real `graphql-api serve --workers 2` in
test_metrics_multiprocess.py). Each test reads the series before and after its event.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from graphql_api.container import Container
from graphql_api.engine.limits import (
    TOKENS_RULE,
    IntrospectionDepthRule,
    NoIntrospectionRule,
    QueryLimitRule,
)
from graphql_api.engine.plans import FallbackReason
from graphql_api.observability import metrics as metrics_module
from graphql_api.observability.metrics import (
    FALLBACK_REASONS,
    QUERY_LIMIT_RULES,
    PrometheusMetrics,
    forget_dead_workers,
)
from graphql_api.web.client_page import CLIENT_MANIFEST
from tests.conftest import LOGIN, AppClient, GraphQLClient, error_codes
from tests.fake_google import FakeGoogle

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REFRESH = "mutation($t: String) { refreshToken(refreshToken: $t) { refreshToken } }"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"metrics": True}


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (found, labels) in samples if found == name]


class Watch:
    """The series before an event; ``moved(name, **labels)`` is how much it grew since."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.before: Samples = {}
        self.after: Samples = {}

    async def __aenter__(self) -> Watch:
        self.before = await scrape(self.http)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.after = await scrape(self.http)

    def moved(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


def manifest_id(operation: str) -> str:
    """The reference client's trusted document for ``operation`` (development trusts it)."""
    documents: dict[str, str] = json.loads(CLIENT_MANIFEST.read_text())
    return next(key for key, text in documents.items() if text.startswith(operation))


async def test_metrics_are_not_served_when_off(app_client: AppClient) -> None:
    client = await app_client(metrics=False)
    assert (await client.http.get("/metrics")).status_code == 404


async def test_every_series_is_there_from_the_start(http: httpx.AsyncClient) -> None:
    samples = await scrape(http)
    names = {name for name, _ in samples}
    for name in (
        "graphql_api_logins_total",
        "graphql_api_refreshes_total",
        "graphql_api_refresh_token_reuse_total",
        "graphql_api_revoked_sessions_total",
        "graphql_api_rate_limited_total",
        "graphql_api_query_limit_rejections_total",
        "graphql_api_plan_fallbacks_total",
        "graphql_api_trusted_documents_total",
        "graphql_api_websocket_connections",
        "graphql_api_db_connections_checked_out",
        "graphql_api_request_duration_seconds_count",
    ):
        assert name in names, name
    assert value(samples, "graphql_api_logins_total", outcome="success") == 0


async def test_a_request_is_counted_by_type_name_and_outcome_with_its_latency(
    http: httpx.AsyncClient, anonymous: GraphQLClient
) -> None:
    async with Watch(http) as watch:
        await anonymous.data("query Anything { __typename }")
        await anonymous.gql("{ me { id } }")
        await anonymous.gql("{ nope }")
    requests = "graphql_api_requests_total"
    assert watch.moved(requests, operation_type="query", operation_name="free-form", outcome="ok")
    assert watch.moved(
        requests, operation_type="query", operation_name="free-form", outcome="UNAUTHENTICATED"
    )
    assert watch.moved(
        requests, operation_type="unknown", operation_name="unknown", outcome="BAD_USER_INPUT"
    )
    assert watch.moved("graphql_api_request_duration_seconds_count", operation_type="query") == 2
    assert watch.moved("graphql_api_request_duration_seconds_sum", operation_type="query") > 0


async def test_a_request_refused_before_the_engine_is_counted(http: httpx.AsyncClient) -> None:
    async with Watch(http) as watch:
        response = await http.post("/graphql", content=b"{", headers={"content-type": "text/plain"})
        assert response.status_code == 415
    assert watch.moved(
        "graphql_api_requests_total",
        operation_type="unknown",
        operation_name="unknown",
        outcome="BAD_USER_INPUT",
    )


async def test_free_form_operation_names_never_become_labels(
    http: httpx.AsyncClient, anonymous: GraphQLClient
) -> None:
    # A label value per name would let any client create series without end.
    await anonymous.data("query First { __typename }")
    before = series(await scrape(http), "graphql_api_requests_total")
    for n in range(50):
        await anonymous.data(f"query Probe{n} {{ __typename }}")
        await anonymous.data("query Q { __typename }", {"v": n})
    after = series(await scrape(http), "graphql_api_requests_total")
    assert after == before
    assert {labels["operation_name"] for labels in after} == {"free-form"}


async def test_trusted_documents_are_counted_as_hits_and_refusals(
    http: httpx.AsyncClient, anonymous: GraphQLClient
) -> None:
    known = {"documentId": f"sha256:{manifest_id('query MySessions')}"}
    unknown = {"documentId": "sha256:" + "0" * 64}
    async with Watch(http) as watch:
        assert (await http.post("/graphql", json=known)).status_code == 200
        assert (await http.post("/graphql", json=unknown)).status_code == 400
    trusted = "graphql_api_trusted_documents_total"
    assert watch.moved(trusted, outcome="hit") == 1
    assert watch.moved(trusted, outcome="PERSISTED_QUERY_NOT_FOUND") == 1
    # A trusted document's operation name is a label: the manifests bound them.
    assert watch.moved(
        "graphql_api_requests_total",
        operation_type="query",
        operation_name="MySessions",
        outcome="UNAUTHENTICATED",
    )


async def test_a_free_form_query_where_only_trusted_documents_run_is_counted(
    app_client: AppClient,
) -> None:
    client = await app_client(metrics=True, trusted_documents="require")
    async with Watch(client.http) as watch:
        response = await client.post("{ me { id } }")
        assert response.status_code == 400
        assert error_codes(response.json()) == ["TRUSTED_DOCUMENT_REQUIRED"]
    assert watch.moved("graphql_api_trusted_documents_total", outcome="TRUSTED_DOCUMENT_REQUIRED")


async def test_logins_are_counted_by_outcome(
    http: httpx.AsyncClient, anonymous: GraphQLClient, fake_google: FakeGoogle
) -> None:
    token = fake_google.mint(sub="metrics-login", email="metrics-login@example.com")
    async with Watch(http) as watch:
        assert not error_codes(await anonymous.gql(LOGIN, {"idToken": token}))
        assert error_codes(await anonymous.gql(LOGIN, {"idToken": token})) == ["UNAUTHENTICATED"]
        assert error_codes(await anonymous.gql(LOGIN, {"idToken": "garbage"})) == [
            "UNAUTHENTICATED"
        ]
    logins = "graphql_api_logins_total"
    assert watch.moved(logins, outcome="success") == 1
    assert watch.moved(logins, outcome="replayed") == 1
    assert watch.moved(logins, outcome="rejected") == 1


async def test_refreshes_and_reuse_detections_are_counted(
    http: httpx.AsyncClient, anonymous: GraphQLClient, user: GraphQLClient
) -> None:
    async with Watch(http) as watch:
        first = await anonymous.data(REFRESH, {"t": user.refresh})
        assert first["refreshToken"]["refreshToken"]
        again = await anonymous.gql(REFRESH, {"t": user.refresh})  # the rotated one: theft
        assert error_codes(again) == ["UNAUTHENTICATED"]
        unknown = await anonymous.gql(REFRESH, {"t": "not-a-token"})
        assert error_codes(unknown) == ["UNAUTHENTICATED"]
    refreshes = "graphql_api_refreshes_total"
    assert watch.moved(refreshes, outcome="success") == 1
    assert watch.moved(refreshes, outcome="reuse") == 1
    assert watch.moved(refreshes, outcome="unknown") == 1
    assert watch.moved("graphql_api_refresh_token_reuse_total") == 1
    assert watch.moved("graphql_api_revoked_sessions_total", reason="refresh_reuse") == 1


async def test_rate_limit_rejections_are_counted_by_rule(
    app_client: AppClient, fake_google: FakeGoogle
) -> None:
    client = await app_client(metrics=True, login_rate_limit="1/minute")
    async with Watch(client.http) as watch:
        for n in range(2):
            token = fake_google.mint(sub=f"metrics-rl-{n}", email=f"rl{n}@example.com")
            await client.gql(LOGIN, {"idToken": token})
    assert watch.moved("graphql_api_rate_limited_total", rule="login:ip") == 1
    assert watch.moved("graphql_api_logins_total", outcome="rate_limited") == 1
    assert watch.moved(
        "graphql_api_requests_total",
        operation_type="mutation",
        operation_name="free-form",
        outcome="RATE_LIMITED",
    )


async def test_query_limit_rejections_are_counted_by_rule(
    http: httpx.AsyncClient, anonymous: GraphQLClient
) -> None:
    deep = "{ me " + "{ categories { edges { node { owner " * 3 + "{ id }" + " } } } }" * 3 + " }"
    async with Watch(http) as watch:
        for _ in range(2):  # a cached verdict counts again
            assert set(error_codes(await anonymous.gql(deep))) == {"BAD_USER_INPUT"}
        await anonymous.gql("{ " + " ".join(f"a{n}: __typename" for n in range(20)) + " }")
    rejections = "graphql_api_query_limit_rejections_total"
    # One refusal per request, named after the first limit it broke (depth, then cost).
    assert watch.moved(rejections, rule="depth") == 2
    assert watch.moved(rejections, rule="cost") == 0
    assert watch.moved(rejections, rule="aliases") == 1


async def test_plan_fallbacks_are_counted_by_reason(
    http: httpx.AsyncClient, anonymous: GraphQLClient
) -> None:
    async with Watch(http) as watch:
        await anonymous.gql("mutation { logout }")
        await anonymous.gql("{ __schema { queryType { name } } }")
    fallbacks = "graphql_api_plan_fallbacks_total"
    assert watch.moved(fallbacks, reason="not_query") == 1
    assert watch.moved(fallbacks, reason="introspection") == 1


async def test_revocations_are_counted_by_reason(
    http: httpx.AsyncClient, sign_in: Any, admin: GraphQLClient
) -> None:
    one = await sign_in("one@example.com", "sub-one")
    two = await sign_in("two@example.com", "sub-two")
    await sign_in("two@example.com", "sub-two")  # a second session
    three = await sign_in("three@example.com", "sub-three")
    sessions = await three.data("{ mySessions { id } }")
    async with Watch(http) as watch:
        assert (await one.data("mutation { logout }"))["logout"] is True
        assert (await two.data("mutation { logoutAll }"))["logoutAll"] == 2
        session_id = sessions["mySessions"][0]["id"]
        await three.data("mutation($id: ID!) { revokeSession(id: $id) }", {"id": session_id})
        deleted = await sign_in("gone@example.com", "sub-gone")
        await admin.data("mutation($id: ID!) { deleteUser(id: $id) }", {"id": deleted.user_id})
    revoked = "graphql_api_revoked_sessions_total"
    assert watch.moved(revoked, reason="logout") == 1
    assert watch.moved(revoked, reason="logout_all") == 2
    assert watch.moved(revoked, reason="revoked") == 1
    assert watch.moved(revoked, reason="user_deleted") == 1


async def test_database_connections_in_use_are_counted_per_pool(
    http: httpx.AsyncClient, container: Container
) -> None:
    name = "graphql_api_db_connections_checked_out"
    pools = {labels["pool"] for labels in series(await scrape(http), name)}
    assert pools == ({"shared"} if len(container.db.engines) == 1 else {"read", "write"})
    async with container.db.read_engine.connect():
        held = await scrape(http)
    pool = "shared" if len(container.db.engines) == 1 else "read"
    # The scrape itself holds no connection: only the one held here.
    assert value(held, name, pool=pool) == 1
    assert value(await scrape(http), name, pool=pool) == 0


def test_websocket_connections_and_closes_are_counted_by_code() -> None:
    metrics = PrometheusMetrics()
    metrics.ws_opened()
    metrics.ws_opened()
    metrics.ws_opened()
    metrics.ws_closed(4401)
    metrics.ws_closed(1000)
    samples = parse(metrics.exposition().decode())
    assert value(samples, "graphql_api_websocket_connections") == 1
    assert value(samples, "graphql_api_websocket_closes_total", code="4401") == 1
    assert value(samples, "graphql_api_websocket_closes_total", code="1000") == 1


def test_a_value_outside_its_closed_set_is_counted_as_other() -> None:
    metrics = PrometheusMetrics()
    for n in range(20):
        metrics.ws_opened()
        metrics.ws_closed(3000 + n)
        metrics.login(f"made-up-{n}")
        metrics.rate_limited(f"login:ip:10.0.0.{n}")
        metrics.fallback(f"reason-{n}")
    samples = parse(metrics.exposition().decode())
    assert {labels["code"] for labels in series(samples, "graphql_api_websocket_closes_total")} == {
        "other"
    }
    assert value(samples, "graphql_api_websocket_closes_total", code="other") == 20
    assert value(samples, "graphql_api_logins_total", outcome="other") == 20
    assert value(samples, "graphql_api_rate_limited_total", rule="other") == 20
    assert value(samples, "graphql_api_plan_fallbacks_total", reason="other") == 20


def _subclasses(cls: type[QueryLimitRule]) -> Iterable[type[QueryLimitRule]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_the_closed_label_sets_are_the_engines_own() -> None:
    assert set(FALLBACK_REASONS) == {reason.value for reason in FallbackReason}
    rules = {rule.rule for rule in _subclasses(QueryLimitRule) if rule.rule}
    rules |= {NoIntrospectionRule.rule, IntrospectionDepthRule.rule, TOKENS_RULE}
    assert set(QUERY_LIMIT_RULES) == rules
    assert {"ok", "RATE_LIMITED", "SERVICE_UNAVAILABLE"} <= metrics_module.OUTCOME_CODES


def test_a_worker_that_died_unannounced_leaves_the_live_sums_at_the_next_scrape(
    tmp_path: Path,
) -> None:
    dead = tmp_path / "gauge_livesum_999999999.db"  # beyond any pid_max: no such process
    alive = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    counted = tmp_path / "counter_999999999.db"  # its counts stay: they happened
    for path in (dead, alive, counted):
        path.write_bytes(b"")
    forget_dead_workers(str(tmp_path))
    assert not dead.exists()
    assert alive.exists() and counted.exists()
