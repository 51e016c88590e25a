"""Keyset pagination at scale: on PostgreSQL with 1,000,000 categories, the page after a
cursor near the end must cost about what the first page costs (an index range scan
either way, never an OFFSET walk).

Runs in a throwaway database (created, filled with ``INSERT ... SELECT generate_series``,
dropped afterwards) and times the repository function the ``categories`` field calls.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from dataclasses import dataclass

import asyncpg
from sqlalchemy import select, text

from graphql_api.db.engine import Database
from graphql_api.db.migrate import migrate
from graphql_api.db.models import Category
from graphql_api.repositories import categories as categories_repo

PAGE = 100


@dataclass(frozen=True, slots=True)
class KeysetResult:
    rows: int
    after_id: int
    first_ms: float  # median wall time of categories_repo.page, first page
    after_ms: float  # ... and of the page after the cursor near the end
    first_exec_ms: float  # median EXPLAIN ANALYZE execution time, first page
    after_exec_ms: float
    first_plan: str
    after_plan: str
    fill_s: float

    @property
    def ratio(self) -> float:
        return self.after_ms / self.first_ms

    @property
    def exec_ratio(self) -> float:
        return self.after_exec_ms / self.first_exec_ms


FILL = [
    """INSERT INTO users (google_sub, email, name, role, created_at, updated_at)
       SELECT 'keyset-' || g, 'user' || g || '@bench.example', 'Bench User ' || g, 'USER',
              now(), now()
       FROM generate_series(1, 10) AS g""",
    """INSERT INTO categories (name, name_key, description, owner_id, created_at, updated_at)
       SELECT 'Category ' || g, 'category ' || g, NULL, (g % 10) + 1, now(), now()
       FROM generate_series(1, $1::int) AS g""",
    "ANALYZE",
]


def _plan_of(explain: object) -> tuple[str, float]:
    document = json.loads(explain) if isinstance(explain, str) else explain
    root = document[0]  # type: ignore[index]
    nodes, plan = [], root["Plan"]
    while plan is not None:
        name = plan["Node Type"] + (f" using {plan['Index Name']}" if "Index Name" in plan else "")
        nodes.append(name)
        plan = (plan.get("Plans") or [None])[0]
    return " > ".join(nodes), float(root["Execution Time"])


async def check(admin_dsn: str, *, rows: int = 1_000_000, repeats: int = 300) -> KeysetResult:
    name = f"graphql_api_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_dsn.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    try:
        await migrate(url)
        started = time.perf_counter()
        conn = await asyncpg.connect(f"{base}/{name}", timeout=5)
        try:
            await conn.execute(FILL[0])
            await conn.execute(FILL[1], rows)
            await conn.execute(FILL[2])
            max_id = await conn.fetchval("SELECT max(id) FROM categories")
        finally:
            await conn.close()
        fill_s = time.perf_counter() - started
        return await _measure(url, max_id - 2 * PAGE, rows, repeats, fill_s)
    finally:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _measure(url: str, after_id: int, rows: int, repeats: int, fill_s: float) -> KeysetResult:
    db = Database(url, pool_size=1, max_overflow=0)
    timings: dict[int | None, list[float]] = {None: [], after_id: []}
    executions: dict[int | None, list[float]] = {None: [], after_id: []}
    plans: dict[int | None, str] = {}
    try:
        async with db.reader() as session:
            for i in range(repeats + 20):  # the first 20 warm the caches and are dropped
                for cursor in (None, after_id) if i % 2 else (after_id, None):
                    started = time.perf_counter()
                    page = await categories_repo.page(
                        session=session, after_id=cursor, limit=PAGE + 1
                    )
                    elapsed = time.perf_counter() - started
                    assert len(page) == PAGE + 1, len(page)
                    if i >= 20:
                        timings[cursor].append(elapsed * 1000)
            for cursor in (None, after_id):
                # The statement categories_repo.page builds, with its bound values inlined.
                query = select(Category).order_by(Category.id).limit(PAGE + 1)
                if cursor is not None:
                    query = query.where(Category.id > cursor)
                sql = str(query.compile(db.read_engine, compile_kwargs={"literal_binds": True}))
                for _ in range(50):
                    explain = await session.scalar(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"))
                    plans[cursor], execution = _plan_of(explain)
                    executions[cursor].append(execution)
    finally:
        await db.dispose()
    return KeysetResult(
        rows=rows,
        after_id=after_id,
        first_ms=statistics.median(timings[None]),
        after_ms=statistics.median(timings[after_id]),
        first_exec_ms=statistics.median(executions[None]),
        after_exec_ms=statistics.median(executions[after_id]),
        first_plan=plans[None],
        after_plan=plans[after_id],
        fill_s=fill_s,
    )
