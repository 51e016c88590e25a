"""Attacks on trusted documents: a production service under ``require`` runs the
operations its frontends listed, and nothing an attacker writes.

Whatever document a client sends (Hypothesis generates every query and mutation the
schema allows), it is refused before it is parsed: no parse, no validation, no plan, no
context, no resolver, no SQL statement. An attacker can neither smuggle a document under
a trusted id nor register one at run time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, queries
from sqlalchemy import Connection, event

from graphql_api.app import create_app
from graphql_api.auth.keys import KeySet
from graphql_api.container import Container
from graphql_api.engine import Engine
from graphql_api.engine.trusted import document_id
from graphql_api.services.auth import Client
from tests.conftest import FakeClock, make_settings
from tests.fake_google import FakeGoogle
from tests.security.conftest import assert_no_internals

SDL = (Path(__file__).parents[2] / "schema" / "schema.graphql").read_text()
ME = "query Me {\n  me {\n    id\n    email\n  }\n}"
DELETE = "mutation Delete($id: ID!) {\n  deleteCategory(id: $id)\n}"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class StatementLog:
    """Every SQL statement the container's engines send (a spy, nothing patched)."""

    def __init__(self, container: Container) -> None:
        self.statements: list[str] = []
        self.engines = [engine.sync_engine for engine in container.db.engines]
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._record)


@dataclass
class Service:
    """A production app under ``require`` (its manifest: ME and DELETE), driven from
    synchronous Hypothesis tests on an event loop of its own."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    engine: Engine
    sql: StatementLog
    token: str

    def post(self, payload: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.loop.run_until_complete(
            self.http.post("/graphql", json=payload, headers=headers)
        )

    def untouched_by(self, text: str) -> None:
        """Proof that ``text`` was never parsed, validated, planned or run."""
        assert self.engine.documents.get(text) is None
        assert self.sql.statements == [], self.sql.statements


@pytest.fixture
def service(
    database_url: str, fake_google: FakeGoogle, keys: KeySet, keys_file: Path, tmp_path: Path
) -> Iterator[Service]:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({document_id(text): text for text in (ME, DELETE)}))
    settings_ = make_settings(
        database_url,
        fake_google,
        env="production",
        jwt_keys_file=keys_file,
        trusted_documents_files=[manifest],
    )
    assert settings_.trusted_documents_mode == "require"  # production's default
    loop = asyncio.new_event_loop()
    container = Container(settings_, clock=FakeClock(), keys=keys)
    app = create_app(container=container)
    lifespan = app.lifespan()
    loop.run_until_complete(lifespan.__aenter__())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    signed_in = loop.run_until_complete(
        container.auth.dev_sign_in(email="attacker@example.com", client=Client("127.0.0.1", None))
    )
    sql = StatementLog(container)
    try:
        yield Service(loop, http, app.state.engine, sql, signed_in.access.token)
    finally:
        sql.close()
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 400, response.text
    assert_no_internals(response.text)
    body = response.json()
    assert body.get("data") is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], body


def test_the_spy_sees_a_trusted_document_run(service: Service) -> None:
    # The control for the tests below: a document that does run is seen by the spy.
    response = service.post({"documentId": f"sha256:{document_id(ME)}"}, service.token)
    assert response.json()["data"]["me"]["email"] == "attacker@example.com"
    assert service.sql.statements


def test_fuzzed_documents_with_a_valid_token_are_refused_before_they_are_parsed(
    service: Service,
) -> None:
    @FUZZ
    @given(st.one_of(queries(SDL), mutations(SDL)))
    def run(document: str) -> None:
        assert_refused(
            service.post({"query": document}, service.token), "TRUSTED_DOCUMENT_REQUIRED"
        )
        service.untouched_by(document)

    run()


def test_a_hostile_document_is_not_even_tokenized_under_require(service: Service) -> None:
    # Nested fragments up to the body cap: under ``allow`` the cheap limits refuse it;
    # under ``require`` nothing reads it at all.
    bomb = "query { me { ...F0 } }\n" + "\n".join(
        f"fragment F{i} on User {{ id ...F{i + 1} ...F{i + 1} }}" for i in range(1200)
    )
    assert 50_000 < len(bomb) < 64 * 1024 - 100
    assert_refused(service.post({"query": bomb}, service.token), "TRUSTED_DOCUMENT_REQUIRED")
    service.untouched_by(bomb)


@pytest.mark.parametrize("form", ["documentId", "persistedQuery"])
def test_a_document_cannot_be_smuggled_under_a_trusted_id(service: Service, form: str) -> None:
    # The trusted id of a harmless query, with the attacker's document as its text.
    attack = "mutation { logoutAll }"
    payload: dict[str, Any] = {"query": attack}
    if form == "documentId":
        payload["documentId"] = f"sha256:{document_id(ME)}"
    else:
        payload["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": document_id(ME)}}
    assert_refused(service.post(payload, service.token), "BAD_USER_INPUT")
    service.untouched_by(attack)


def test_a_document_cannot_be_registered_at_run_time(service: Service) -> None:
    # Apollo's automatic persisted queries register a query sent with its hash: never here.
    attack = "mutation { logoutAll }"
    named = {"documentId": f"sha256:{document_id(attack)}"}
    for _ in range(2):
        assert_refused(
            service.post({"query": attack, **named}, service.token), "PERSISTED_QUERY_NOT_FOUND"
        )
        assert_refused(service.post(named, service.token), "PERSISTED_QUERY_NOT_FOUND")
    assert service.engine.trusted.get(document_id(attack)) is None
    service.untouched_by(attack)


def test_guessed_ids_find_nothing(service: Service) -> None:
    known = {document_id(ME), document_id(DELETE)}

    @FUZZ
    @given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
    def run(guess: str) -> None:
        response = service.post({"documentId": f"sha256:{guess}"}, service.token)
        if guess not in known:
            assert_refused(response, "PERSISTED_QUERY_NOT_FOUND")

    run()


def test_a_trusted_mutation_still_checks_who_may_run_it(service: Service) -> None:
    # Trust says which documents run, never who may run them.
    payload = {"documentId": f"sha256:{document_id(DELETE)}", "variables": {"id": "1"}}
    body = service.post(payload).json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
