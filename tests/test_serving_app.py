"""What ``graphql-api serve`` runs: the app, with the long-lived heap frozen once started."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from graphql_api.cli import serving_app


@asynccontextmanager
async def started(app: ASGIApp) -> AsyncIterator[None]:
    """The ASGI lifespan protocol, as uvicorn runs it, around the block."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: Any) -> None:
        await outbox.put(message)

    async def run() -> None:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    task = asyncio.create_task(run())
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


async def test_the_serving_app_freezes_the_heap_once_started_and_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the development key file and database land here
    monkeypatch.setenv("GRAPHQL_API_ENV", "development")
    monkeypatch.setenv("GRAPHQL_API_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/serve.db")
    app = serving_app()
    gc.unfreeze()
    try:
        async with started(app):
            assert gc.get_freeze_count() > 0
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/graphql", json={"query": "{ __typename }"})
            assert response.json() == {"data": {"__typename": "Query"}}
    finally:
        gc.unfreeze()
