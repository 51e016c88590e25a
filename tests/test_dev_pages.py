"""The pages for people: GraphiQL and the reference client in development, nothing in production."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from graphql_api.web.client_page import CLIENT_CSP, CLIENT_MANIFEST, STATIC_DIR
from graphql_api.web.graphiql import graphiql_csp
from tests.conftest import GraphQLClient
from tests.fake_google import CLIENT_ID
from tests.live_server import LiveServer

VENDOR_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "vendor-graphql-ws"


async def test_development_serves_graphiql_with_the_header_example(
    anonymous: GraphQLClient,
) -> None:
    response = await anonymous.http.get("/graphql")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp == graphiql_csp()
    # Its inline scripts run by their hashes; no other inline script would.
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert script_src.count("'sha256-") == 2
    # A command that works as printed: the venv's graphql-api is not on PATH.
    assert "make token EMAIL=you@example.com" in response.text
    assert "graphql-api dev-token" not in response.text
    assert "Bearer <paste a dev-token here>" in response.text
    # The pasted token is not written to localStorage.
    assert "shouldPersistHeaders: false" in response.text
    assert "shouldPersistHeaders: true" not in response.text


async def test_development_still_runs_no_query_over_get(anonymous: GraphQLClient) -> None:
    response = await anonymous.http.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_development_serves_the_reference_client_with_its_own_csp(
    anonymous: GraphQLClient,
) -> None:
    response = await anonymous.http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp == CLIENT_CSP
    assert "script-src 'self' https://accounts.google.com/gsi/client;" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/static/app.js"></script>' in response.text


def test_the_reference_client_has_no_inline_script_or_style() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.search(r"\sstyle=|\son[a-z]+=|<style", html) is None


def test_the_reference_client_never_stores_a_token() -> None:
    for name in ("app.js", "graphql-client.js", "live.js"):
        source = (STATIC_DIR / name).read_text()
        assert (
            re.search(r"localStorage\.|sessionStorage\.|document\.cookie|indexedDB", source) is None
        )


def test_the_vendored_graphql_ws_client_names_its_version_source_and_licence() -> None:
    vendored = (STATIC_DIR / "graphql-ws.js").read_text()
    header = vendored[: vendored.index("*/")]
    version = re.search(r'^VERSION = "(.+)"$', VENDOR_SCRIPT.read_text(), re.M)
    assert version is not None
    assert header.startswith(f"/*! graphql-ws {version[1]} ")
    assert "npm integrity sha512-" in header
    assert "MIT License" in header and "Copyright (c) 2020 Denis Badurina" in header
    # One module with no imports: the page loads nothing else for it.
    assert re.search(r"^import ", vendored, re.M) is None
    assert "export { CloseCode, GRAPHQL_TRANSPORT_WS_PROTOCOL" in vendored


async def test_the_client_page_assets_and_config_are_served(anonymous: GraphQLClient) -> None:
    for name in ("app.js", "graphql-client.js", "live.js", "graphql-ws.js"):
        response = await anonymous.http.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "application/javascript",
        }
    assert (await anonymous.http.get("/static/style.css")).status_code == 200
    # The page's trusted documents: it maps its operation names to their ids.
    manifest = await anonymous.http.get("/static/operations.manifest.json")
    assert manifest.headers["content-type"] == "application/json"
    assert manifest.json() == json.loads(CLIENT_MANIFEST.read_text())
    config = await anonymous.http.get("/client-config.json")
    assert config.json() == {
        "googleClientId": CLIENT_ID,
        "graphqlPath": "/graphql",
        "devSignIn": True,
    }
    assert config.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",
        "/static/..%2fclient_page.py",
        "/static/nothing.js",
        "/static/operations/auth.graphql",
    ],
)
async def test_only_the_listed_assets_are_reachable(anonymous: GraphQLClient, path: str) -> None:
    assert (await anonymous.http.get(path)).status_code == 404


async def test_without_google_client_ids_the_config_says_so(app_client: Any) -> None:
    client: GraphQLClient = await app_client(google_client_ids=[])
    response = await client.http.get("/client-config.json")
    assert response.json()["googleClientId"] is None


class TestInProduction:
    @pytest.fixture
    async def production(self, app_client: Any, keys_file: Path) -> GraphQLClient:
        client: GraphQLClient = await app_client(
            env="production", jwt_keys_file=keys_file, trusted_documents="off"
        )
        return client

    async def test_get_graphql_serves_no_graphiql(self, production: GraphQLClient) -> None:
        response = await production.http.get("/graphql", headers={"accept": "text/html"})
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/json"
        assert "graphiql" not in response.text.lower()

    @pytest.mark.parametrize("path", ["/", "/client-config.json", "/static/app.js"])
    async def test_the_reference_client_is_absent(
        self, production: GraphQLClient, path: str
    ) -> None:
        assert (await production.http.get(path)).status_code == 404


def test_serve_prints_no_graphiql_or_dev_token_in_production(
    tmp_path: Path, keys_file: Path
) -> None:
    server = LiveServer.start(
        settings={
            "ENV": "production",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/prod.db",
            "JWT_KEYS_FILE": str(keys_file),
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "TRUSTED_DOCUMENTS": "off",
        },
        log_dir=tmp_path,
    )
    server.stop()
    output = server.output()
    assert "graphql_api (production)" in output
    assert "GraphiQL" not in output
    assert "dev-token" not in output
    assert "Reference client" not in output
