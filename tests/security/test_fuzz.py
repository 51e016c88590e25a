"""Property-based fuzzing from the committed SDL (hypothesis + hypothesis-graphql).

Whatever valid query or mutation the schema allows, with whatever argument values:
never a 5xx, never a traceback or INTERNAL_SERVER_ERROR, and without a token never any
protected data (every root field answers null) and never a change to any table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries

from graphql_api.app import create_app
from graphql_api.auth.keys import KeySet
from graphql_api.container import Container
from graphql_api.db.models import Base
from graphql_api.services.auth import Client
from tests.conftest import FakeClock, make_settings
from tests.fake_google import FakeGoogle
from tests.security.conftest import assert_no_internals

SDL = (Path(__file__).parents[2] / "schema" / "schema.graphql").read_text()
EXAMPLES = 60
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Harness:
    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    token: str
    container: Container

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: what "changes nothing" is measured against."""

        async def read() -> dict[str, list[tuple[Any, ...]]]:
            async with self.container.db.reader() as session:
                return {
                    table.name: sorted(map(tuple, await session.execute(table.select())), key=repr)
                    for table in Base.metadata.sorted_tables
                }

        return self.loop.run_until_complete(read())

    def post(self, query: str, token: str | None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.loop.run_until_complete(
            self.http.post("/graphql", json={"query": query}, headers=headers)
        )


@pytest.fixture
def harness(database_url: str, fake_google: FakeGoogle, keys: KeySet) -> Iterator[Harness]:
    # Hypothesis drives a synchronous test, so the app gets an event loop of its own.
    loop = asyncio.new_event_loop()
    container = Container(make_settings(database_url, fake_google), clock=FakeClock(), keys=keys)
    app = create_app(container=container)
    lifespan = app.lifespan()
    loop.run_until_complete(lifespan.__aenter__())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    signed_in = loop.run_until_complete(
        container.auth.dev_sign_in(email="fuzz@example.com", client=Client("127.0.0.1", None))
    )
    try:
        yield Harness(loop, http, signed_in.access.token, container)
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def check(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    assert_no_internals(response.text)
    body: dict[str, Any] = response.json()
    codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, body
    assert None not in codes, body
    return body


def assert_nothing_protected(body: dict[str, Any]) -> None:
    data = body.get("data")
    assert data is None or all(value is None for value in data.values()), body


def test_fuzzed_queries_without_a_token_reveal_nothing(harness: Harness) -> None:
    @FUZZ
    @given(queries(SDL))
    def run(query: str) -> None:
        assert_nothing_protected(check(harness.post(query, None)))

    run()


def test_fuzzed_mutations_without_a_token_change_nothing(harness: Harness) -> None:
    before = harness.tables()
    assert before["users"] and before["sessions"]  # there is something to change

    @FUZZ
    @given(mutations(SDL))
    def run(mutation: str) -> None:
        assert_nothing_protected(check(harness.post(mutation, None)))
        assert harness.tables() == before, mutation

    run()


def test_fuzzed_operations_with_a_token_never_crash(harness: Harness) -> None:
    @FUZZ
    @given(st.one_of(queries(SDL), mutations(SDL)))
    def run(document: str) -> None:
        check(harness.post(document, harness.token))

    run()
