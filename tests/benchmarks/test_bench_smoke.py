"""`make bench` in miniature: every server answers every workload correctly (no wrk, no timing).

Runs in-process over ASGI on both databases, on the benchmark's own data set and token,
so that a broken server or workload fails `make test` instead of a ten-minute bench run.
raw (the limit) is held to the same answers as ours, byte for byte where the JSON is the
same; ours-trusted is ours with TRUSTED_DOCUMENTS=require and the workloads' manifest.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection
from starlette.types import ASGIApp

from bench.apps import floor, rest, strawberry_default
from bench.data import USERS, Caller, seed, sign_in
from bench.raw import RawApp
from bench.tokens import TokenDecoder
from bench.workloads import SERVERS, W2, W3, W4, WORKLOADS, Workload, manifest
from graphql_api.container import Container
from graphql_api.repositories import categories as categories_repo
from tests.conftest import AppClient

pytestmark = pytest.mark.both_databases

CASES = [
    (server, workload)
    for workload in WORKLOADS
    for server in SERVERS
    if workload.request_for(server) is not None
]


@pytest.fixture
def settings_overrides(keys_file: Path) -> dict[str, Any]:
    # "ours" as `make bench` runs it: production, every defence on (free-form queries, as
    # the other servers get them).
    return {"env": "production", "jwt_keys_file": keys_file, "trusted_documents": "off"}


@pytest.fixture
async def caller(container: Container) -> Caller:
    await seed(container.db)
    return await sign_in(container)


@pytest.fixture
async def clients(
    app: ASGIApp,
    app_client: AppClient,
    container: Container,
    database_url: str,
    keys_file: Path,
    tmp_path: Path,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    decoder = TokenDecoder(keys_file)
    raw = RawApp(database_url=database_url, decoder=decoder)
    apps: dict[str, ASGIApp] = {
        "raw": raw,
        "floor": floor(),
        "rest": rest(db=container.db, decoder=decoder),
        "strawberry-default": strawberry_default(db=container.db, decoder=decoder),
        "ours": app,
    }
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://bench")
        for name, a in apps.items()
    }
    documents = tmp_path / "bench.manifest.json"
    documents.write_bytes(orjson.dumps(manifest()))
    trusted = await app_client(
        env="production",
        jwt_keys_file=keys_file,
        trusted_documents="require",
        trusted_documents_files=[documents],
    )
    clients["ours-trusted"] = trusted.http
    yield clients
    for client in clients.values():
        await client.aclose()
    if raw.store is not None:
        await raw.store.close()


async def run(
    clients: dict[str, httpx.AsyncClient], server: str, workload: Workload, caller: Caller
) -> httpx.Response:
    request = workload.request_for(server)
    assert request is not None
    if workload.unique_names:
        request = request.with_name(f"smoke-{server}-{secrets.token_hex(4)}")
    headers = {"content-type": "application/json"}
    if workload.authenticated:
        headers["authorization"] = f"Bearer {caller.token}"
    return await clients[server].request(
        request.method, request.path, content=request.body, headers=headers
    )


def expected_w3_edges() -> list[dict[str, Any]]:
    # seed() gives category n to user number n % USERS + 1, in id order.
    return [
        {"name": f"Category {n:03d}", "owner": {"name": f"Bench User {n % USERS + 1}"}}
        for n in range(100)
    ]


@pytest.mark.parametrize(("server", "workload"), CASES, ids=[f"{s}-{w.key}" for s, w in CASES])
async def test_every_server_answers_every_workload_with_200_and_no_errors(
    clients: dict[str, httpx.AsyncClient], caller: Caller, server: str, workload: Workload
) -> None:
    response = await run(clients, server, workload, caller)

    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    data = body["data"]
    if workload.key == "W1":
        assert data == {"__typename": "Query"}
    elif workload.key == "W2":
        assert data["me"] == {
            "id": str(caller.user_id),
            "name": "Bench User 1",
            "email": caller.email,
        }
    elif workload.key == "W3":
        edges = data["categories"]["edges"]
        assert [
            {"name": e["node"]["name"], "owner": {"name": e["node"]["owner"]["name"]}}
            for e in edges
        ] == expected_w3_edges()
    else:
        created = data["createCategory"]
        assert created["name"].startswith(f"smoke-{server}-") and created["id"].isdigit()


@pytest.mark.parametrize("workload", [W2, W3], ids=["W2", "W3"])
async def test_raw_rest_twin_and_default_strawberry_return_the_same_json_as_ours(
    clients: dict[str, httpx.AsyncClient], caller: Caller, workload: Workload
) -> None:
    bodies = {
        server: orjson.loads((await run(clients, server, workload, caller)).content)
        for server in ("raw", "rest", "strawberry-default", "ours", "ours-trusted")
    }

    for server in ("raw", "rest", "strawberry-default", "ours-trusted"):
        assert bodies[server] == bodies["ours"], server


async def test_raw_refuses_what_it_does_not_know_with_errors(
    clients: dict[str, httpx.AsyncClient], caller: Caller
) -> None:
    raw = clients["raw"]
    auth = {"authorization": f"Bearer {caller.token}"}

    unknown = await raw.post("/graphql", json={"query": "{ me { id } }"}, headers=auth)
    anonymous = await raw.post("/graphql", json={"query": W2.document})
    forged = await raw.post(
        "/graphql", json={"query": W2.document}, headers={"authorization": "Bearer x.y.z"}
    )

    assert unknown.status_code == 400 and "errors" in unknown.json()
    assert anonymous.status_code == 401 and "errors" in anonymous.json()
    assert forged.status_code == 401 and "errors" in forged.json()


async def test_raw_commits_what_it_creates(
    clients: dict[str, httpx.AsyncClient], container: Container, caller: Caller
) -> None:

    response = await run(clients, "raw", W4, caller)
    created = response.json()["data"]["createCategory"]

    async with container.db.reader() as session:
        rows = await categories_repo.get_by_ids(session=session, ids=[int(created["id"])])
    assert [(r.name, r.owner_id) for r in rows] == [(created["name"], caller.user_id)]


class StatementLog:
    """Every SQL statement sent through the given engines' connections."""

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


async def test_w4_is_one_statement_with_no_transaction_around_it(
    clients: dict[str, httpx.AsyncClient], container: Container, caller: Caller
) -> None:
    await run(clients, "ours", W4, caller)  # warm-up: the write connection opened
    log = StatementLog(container)
    try:
        names = []
        for _ in range(3):
            response = await run(clients, "ours", W4, caller)
            assert response.status_code == 200 and "errors" not in response.json()
            names.append(response.json()["data"]["createCategory"]["name"])
    finally:
        log.close()
    per_request = [s for s in log.statements if "revocations" not in s]
    # No BEGIN IMMEDIATE on SQLite (asyncpg's BEGIN/COMMIT are not cursor statements):
    # the INSERT alone, committed by itself.
    assert len(per_request) == 3, per_request
    assert all(s.lstrip().upper().startswith("INSERT INTO CATEGORIES") for s in per_request)
    async with container.db.reader() as connection:  # committed: another connection sees it
        found = await categories_repo.page(session=connection, after_id=None, limit=10_000)
    assert set(names) <= {record.name for record in found}


@pytest.mark.parametrize("server", ["rest", "strawberry-default", "ours"])
async def test_w3_issues_exactly_two_sql_statements_per_request(
    clients: dict[str, httpx.AsyncClient], container: Container, caller: Caller, server: str
) -> None:
    await run(clients, server, W3, caller)  # warm-up: connections opened, revocations polled
    log = StatementLog(container)
    try:
        for _ in range(3):
            response = await run(clients, server, W3, caller)
            assert response.status_code == 200 and "errors" not in response.json()
    finally:
        log.close()

    # The revocation poll is one statement per process every 0.5 s, not per request.
    per_request = [s for s in log.statements if "revocations" not in s]
    assert len(per_request) == 2 * 3, per_request
    for categories, owners in zip(per_request[::2], per_request[1::2], strict=True):
        assert "FROM categories" in categories
        assert "FROM users" in owners
