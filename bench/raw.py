"""raw: the physical limit of this stack, a bare ASGI app doing only what no server can skip.

Same uvicorn, loop and HTTP parser as ours, and per request only: read the body and parse
it with orjson, verify the bearer JWT with PyJWT (the service's key, algorithm, audience
and issuer), run the workload's SQL on the raw driver (aiosqlite or asyncpg: no
SQLAlchemy), and write the JSON ours answers with orjson. No FastAPI, no Strawberry, no
ORM, no session lookup, no limits. The operation is recognised by its exact text, or by
its trusted-document id (one dict lookup either way); anything else gets a 400 with an
``errors`` list, so the harness's response checks catch a raw that answers wrongly.

The SQL is the statements ours sends (the same columns, ``ORDER BY id LIMIT first + 1``,
owners by ``id IN (...)``), each in autocommit: a create is one committed
``INSERT ... RETURNING id``, the fewest round trips a durable write can take.

uvicorn starts it with ``bench.raw:from_env --factory`` (``BENCH_DATABASE_URL``,
``BENCH_KEYS_FILE``); the smoke test calls ``RawApp`` over ASGI directly.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg
import orjson

from bench.tokens import TokenDecoder
from bench.workloads import W1, W2, W3, W4, document_ids
from graphql_api.errors import BadUserInput
from graphql_api.services.validation import clean_name, name_key

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[dict[str, Any], int | None], Awaitable[bytes]]

PAGE = 100
# The statements ours sends, written out (placeholders differ: ? for sqlite3, $n for asyncpg).
_USERS = (
    "SELECT users.id, users.name, users.email, users.picture_url, users.role, "
    "users.created_at FROM users WHERE users.id IN ({})"
)
_PAGE = (
    "SELECT categories.id, categories.name, categories.description, categories.owner_id, "
    "categories.created_at, categories.updated_at FROM categories "
    "ORDER BY categories.id LIMIT {}"
)
_INSERT = (
    "INSERT INTO categories (name, name_key, description, owner_id, created_at, updated_at) "
    "VALUES ({}) RETURNING id"
)


def _statements(mark: Callable[[int], str]) -> tuple[dict[int, str], str, str]:
    """``users.id IN (...)`` for 1 to 100 ids (a page has at most 100 owners), the page
    and the insert, with the driver's placeholders."""
    marks = [mark(n) for n in range(1, 101)]
    users = {count: _USERS.format(", ".join(marks[:count])) for count in range(1, 101)}
    return users, _PAGE.format(marks[0]), _INSERT.format(", ".join(marks[:6]))


_SQLITE_USERS, _SQLITE_PAGE, _SQLITE_INSERT = _statements(lambda _n: "?")
_PG_USERS, _PG_PAGE, _PG_INSERT = _statements(lambda n: f"${n}")


class Store(Protocol):
    """The three statements the workloads need, on one driver."""

    async def users(self, ids: Sequence[int]) -> list[Sequence[Any]]: ...

    async def page_with_owners(
        self, limit: int
    ) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]: ...

    async def insert_category(self, *, name: str, key: str, owner_id: int) -> int: ...

    async def close(self) -> None: ...


class SQLiteStore:
    """aiosqlite: one connection for reads and one for writes, in autocommit (SQLite has one
    writer anyway), with the service's pragmas."""

    def __init__(self, reader: aiosqlite.Connection, writer: aiosqlite.Connection) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: str) -> SQLiteStore:
        connections = []
        for _ in range(2):
            connection = await aiosqlite.connect(path, isolation_level=None)
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
                await connection.execute(f"PRAGMA {pragma}")
            await connection.execute("PRAGMA busy_timeout=5000")
            connections.append(connection)
        return cls(*connections)

    async def users(self, ids: Sequence[int]) -> list[Sequence[Any]]:
        return list(await self.reader.execute_fetchall(_SQLITE_USERS[len(ids)], ids))

    async def page_with_owners(self, limit: int) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
        rows: list[Sequence[Any]] = list(await self.reader.execute_fetchall(_SQLITE_PAGE, (limit,)))
        owner_ids = sorted({row[3] for row in rows[: limit - 1]})
        return rows, await self.users(owner_ids)

    async def insert_category(self, *, name: str, key: str, owner_id: int) -> int:
        # As SQLAlchemy stores a UTC datetime in SQLite: ISO text, no zone.
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        rows = await self.writer.execute_fetchall(
            _SQLITE_INSERT, (name, key, None, owner_id, now, now)
        )
        return int(next(iter(rows))[0])

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()


class PostgresStore:
    """asyncpg: a pool the size of ours' (10), statements prepared once per connection
    (asyncpg's statement cache)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str) -> PostgresStore:
        return cls(await asyncpg.create_pool(dsn, min_size=2, max_size=10))

    async def users(self, ids: Sequence[int]) -> list[Sequence[Any]]:
        rows: list[Sequence[Any]] = await self.pool.fetch(_PG_USERS[len(ids)], *ids)
        return rows

    async def page_with_owners(self, limit: int) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(_PG_PAGE, limit)
            owner_ids = sorted({row[3] for row in rows[: limit - 1]})
            owners = await connection.fetch(_PG_USERS[len(owner_ids)], *owner_ids)
        return rows, owners

    async def insert_category(self, *, name: str, key: str, owner_id: int) -> int:
        now = datetime.now(UTC)
        category_id: int = await self.pool.fetchval(_PG_INSERT, name, key, None, owner_id, now, now)
        return category_id

    async def close(self) -> None:
        await self.pool.close()


async def open_store(database_url: str) -> Store:
    """The raw driver for a SQLAlchemy URL (``sqlite+aiosqlite:///...`` or
    ``postgresql+asyncpg://...``)."""
    if database_url.startswith("sqlite"):
        return await SQLiteStore.open(database_url.split(":///", 1)[1])
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return await PostgresStore.open(dsn)


class BadRequest(Exception):
    """Answered 400 with a GraphQL ``errors`` list (never expected in a benchmark run)."""


_HEADERS = [(b"content-type", b"application/json")]
_HEALTHY = orjson.dumps({"status": "ok"})
_TYPENAME = orjson.dumps({"data": {"__typename": "Query"}})
_UNAUTHORIZED = orjson.dumps({"errors": [{"message": "Not authenticated"}]})


class RawApp:
    """The ASGI app. The store opens at lifespan start-up (uvicorn) or on the first request
    (an ASGI transport without lifespan, as in the smoke test)."""

    def __init__(self, *, database_url: str, decoder: TokenDecoder) -> None:
        self.database_url = database_url
        self.decoder = decoder
        self.store: Store | None = None
        # The operation's exact text, and its trusted-document id, to its handler and
        # whether it needs a signed-in caller.
        self.operations: dict[str, tuple[Handler, bool]] = {}
        ids = document_ids()
        for workload, handler in (
            (W1, self.typename),
            (W2, self.me),
            (W3, self.categories),
            (W4, self.create_category),
        ):
            self.operations[workload.document] = (handler, workload.authenticated)
            self.operations[f"sha256:{ids[workload.key]}"] = (handler, workload.authenticated)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.store is not None:
                    await self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def open(self) -> Store:
        if self.store is None:
            self.store = await open_store(self.database_url)
        return self.store

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/healthz":
            await self.respond(send, 200, _HEALTHY)
            return
        if scope["method"] != "POST" or scope["path"] != "/graphql":
            await self.respond(send, 404, b'{"errors": [{"message": "Not found"}]}')
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = orjson.loads(body)
            key = payload.get("query") or payload.get("documentId")
            operation = self.operations.get(key) if isinstance(key, str) else None
            if operation is None:
                raise BadRequest("unknown operation")
            handler, authenticated = operation
            user_id = None
            if authenticated:
                user_id = self.user_id(scope)
                if user_id is None:
                    await self.respond(send, 401, _UNAUTHORIZED)
                    return
            answer = await handler(payload, user_id)
        except (
            BadRequest,
            BadUserInput,
            orjson.JSONDecodeError,
            AttributeError,
            KeyError,
            TypeError,
        ) as exc:
            await self.respond(send, 400, orjson.dumps({"errors": [{"message": str(exc)}]}))
            return
        await self.respond(send, 200, answer)

    def user_id(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return None
                return self.decoder.user_id(token)
        return None

    @staticmethod
    async def respond(send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # ------------------------------------------------------------------ the four workloads

    async def typename(self, _payload: dict[str, Any], _user_id: int | None) -> bytes:
        return _TYPENAME

    async def me(self, _payload: dict[str, Any], user_id: int | None) -> bytes:
        assert user_id is not None
        store = self.store or await self.open()
        rows = await store.users([user_id])
        if not rows:
            raise BadRequest("user not found")
        user = rows[0]
        return orjson.dumps(
            {"data": {"me": {"id": str(user[0]), "name": user[1], "email": user[2]}}}
        )

    async def categories(self, _payload: dict[str, Any], _user_id: int | None) -> bytes:
        store = self.store or await self.open()
        rows, owner_rows = await store.page_with_owners(PAGE + 1)
        owners = {row[0]: row[1] for row in owner_rows}
        edges = [
            {
                "node": {
                    "id": str(row[0]),
                    "name": row[1],
                    "owner": {"id": str(row[3]), "name": owners[row[3]]},
                }
            }
            for row in rows[:PAGE]
        ]
        return orjson.dumps({"data": {"categories": {"edges": edges}}})

    async def create_category(self, payload: dict[str, Any], user_id: int | None) -> bytes:
        assert user_id is not None
        store = self.store or await self.open()
        data = payload["variables"]["input"]
        name = clean_name(data["name"])
        try:
            category_id = await store.insert_category(
                name=name, key=name_key(name), owner_id=user_id
            )
        except (aiosqlite.IntegrityError, asyncpg.UniqueViolationError):
            raise BadRequest("Name taken") from None
        return orjson.dumps({"data": {"createCategory": {"id": str(category_id), "name": name}}})


def from_env() -> RawApp:
    return RawApp(
        database_url=os.environ["BENCH_DATABASE_URL"],
        decoder=TokenDecoder(Path(os.environ["BENCH_KEYS_FILE"])),
    )
