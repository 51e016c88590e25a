"""What ``graphql-api serve`` runs: the app, with the long-lived heap frozen once started."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest

from graphql_api.cli import serving_app


async def test_the_serving_app_freezes_the_heap_once_started_and_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the development key file and database land here
    monkeypatch.setenv("GRAPHQL_API_ENV", "development")
    monkeypatch.setenv("GRAPHQL_API_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/serve.db")
    app = serving_app()
    gc.unfreeze()
    try:
        async with app.lifespan():
            assert gc.get_freeze_count() > 0
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post("/graphql", json={"query": "{ __typename }"})
            assert response.json() == {"data": {"__typename": "Query"}}
    finally:
        gc.unfreeze()
