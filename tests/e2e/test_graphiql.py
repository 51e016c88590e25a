"""GraphiQL in a real browser, on exactly the files it would load from unpkg.com.

The GraphiQL page (``web/graphiql.py``, from Strawberry's) loads React, GraphiQL and the
explorer plugin from unpkg, each pinned by URL and SRI ``integrity`` hash.
``scripts/ensure-graphiql-assets`` fetches those pinned packages from the npm registry
(``npm pack``, cached in ``.cache/unpkg/``); the test checks that each file's SHA-384 is the
page's hash, so the browser runs the very bytes the CDN would send, and answers the CDN's
URLs from them. Nothing else leaves the machine. A person's first hour is then replayed:
a token from ``graphql-api dev-token``, typed into the Headers tab; a query and a mutation
typed into the editor, with autocompletion; the docs and the explorer opened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import IN_CI
from tests.e2e.conftest import page_errors, results_dir
from tests.e2e.unpkg import CACHE, ROOT, Asset, page_assets, sri
from tests.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page, Route

CDN = "https://unpkg.com/"
OUTSIDE = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@pytest.fixture(scope="module")
def unpkg_cache() -> Path:
    """The page's pinned packages, fetched once (``scripts/ensure-graphiql-assets``)."""
    result = subprocess.run(  # noqa: S603 - our own script
        [ROOT / "scripts" / "ensure-graphiql-assets"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        reason = f"GraphiQL's assets are not available: {result.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return CACHE


@pytest.fixture(scope="module")
def server(serve: Callable[..., LiveServer]) -> LiveServer:
    # Development (GraphiQL is served), with tokens that outlast the typing.
    return serve(ACCESS_TOKEN_TTL="900")


@pytest.fixture(scope="module")
def assets(server: LiveServer) -> dict[str, Asset]:
    """What the served page loads from unpkg, by URL."""
    html = httpx.get(f"{server.url}/graphql").text
    return {asset.url: asset for asset in page_assets(html)}


class Network:
    """The context's requests that leave 127.0.0.1: the CDN's, answered as the test
    says, and any other, refused and remembered."""

    def __init__(self) -> None:
        self.cdn: list[str] = []
        self.elsewhere: list[str] = []

    async def install(
        self, context: BrowserContext, answer: Callable[[Route], Awaitable[None]] | None = None
    ) -> None:
        async def outside(route: Route) -> None:
            self.elsewhere.append(route.request.url)
            await route.abort("internetdisconnected")

        async def cdn(route: Route) -> None:
            self.cdn.append(route.request.url)
            await (answer or outside)(route)

        await context.route(OUTSIDE, outside)
        await context.route(f"{CDN}**", cdn)


@pytest.fixture
async def context(browser: Browser, server: LiveServer) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1400, "height": 800}
    )
    try:
        yield context
    finally:
        await context.close()


def editor(page: Page, css: str) -> Locator:
    """A CodeMirror editor of GraphiQL's (the one inside the element ``css`` finds)."""
    return page.locator(f"{css} .CodeMirror").first


async def replace_text(page: Page, code_mirror: Locator, text: str) -> None:
    """Type ``text`` over the editor's contents, key by key, as a person would."""
    await code_mirror.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.type(text)


async def text_of(code_mirror: Locator) -> str:
    value: str = await code_mirror.evaluate("node => node.CodeMirror.getValue()")
    return value


async def run(page: Page) -> dict[str, object]:
    """Press run and read the result pane once the answer is in."""
    from playwright.async_api import expect

    result = editor(page, ".graphiql-response")
    await result.evaluate("node => node.CodeMirror.setValue('')")
    await page.get_by_role("button", name=re.compile(r"^Execute query")).click()
    await expect(result).to_contain_text('"data"')
    body: dict[str, object] = json.loads(await text_of(result))
    return body


async def test_graphiql_runs_a_query_and_a_mutation_with_a_dev_token(
    context: BrowserContext, server: LiveServer, assets: dict[str, Asset], unpkg_cache: Path
) -> None:
    from playwright.async_api import expect

    # The files served are the ones the page's SRI hashes name: the CDN's very bytes.
    for asset in assets.values():
        assert sri(asset.local(unpkg_cache)) == asset.integrity, asset.url

    async def from_cache(route: Route) -> None:
        asset = assets.get(route.request.url)
        if asset is None:
            await route.fulfill(status=404)
            return
        await route.fulfill(
            status=200,
            path=asset.local(unpkg_cache),
            content_type=TYPES[Path(asset.path).suffix],
            headers={"access-control-allow-origin": "*"},  # as unpkg (crossorigin + SRI)
        )

    network = Network()
    await network.install(context, from_cache)
    token = server.cli("dev-token", "ada@example.com").strip()
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto("/graphql")

    # The docs explorer, from the schema GraphiQL fetched by introspection.
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = page.locator(".graphiql-doc-explorer")
    await expect(docs).to_contain_text("Root Types")
    await docs.get_by_role("link", name="Query", exact=True).click()
    await expect(docs).to_contain_text("The caller. Needs a signed-in caller")
    await expect(docs.get_by_role("link", name="me", exact=True)).to_be_visible()

    # Autocompletion while typing the query.
    query = editor(page, ".graphiql-query-editor")
    await replace_text(page, query, "{ m")
    hints = page.locator(".CodeMirror-hints")
    await expect(hints).to_contain_text("mySessions")
    await expect(hints.get_by_text("me", exact=True)).to_be_visible()
    await page.keyboard.type("e { id name email role } }")
    assert await text_of(query) == "{ me { id name email role } }"

    # With the page's placeholder header: UNAUTHENTICATED, saying why (development).
    answer = await run(page)
    refused = answer["errors"]
    assert isinstance(refused, list)
    assert refused[0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert refused[0]["message"].startswith("Authentication required: ")

    # The token from `graphql-api dev-token`, in the Headers tab.
    await page.get_by_role("button", name="Headers", exact=True).click()
    headers = editor(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)")
    await replace_text(page, headers, json.dumps({"Authorization": f"Bearer {token}"}))
    assert json.loads(await text_of(headers)) == {"Authorization": f"Bearer {token}"}
    answer = await run(page)
    assert answer == {
        "data": {"me": {"id": "1", "name": "ada", "email": "ada@example.com", "role": "USER"}}
    }

    # A mutation, as typed.
    await replace_text(
        page,
        query,
        'mutation { createCategory(input: { name: "Made in GraphiQL" }) { name owner { email } } }',
    )
    answer = await run(page)
    assert answer == {
        "data": {
            "createCategory": {"name": "Made in GraphiQL", "owner": {"email": "ada@example.com"}}
        }
    }
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = await http.post(
            "/graphql",
            json={"query": "{ categories { edges { node { name } } } }"},
            headers={"authorization": f"Bearer {token}"},
        )
    assert listed.json()["data"]["categories"]["edges"] == [{"node": {"name": "Made in GraphiQL"}}]

    # The explorer plugin shows the operation as fields to tick, and the others to add.
    await page.get_by_role("button", name="Show GraphiQL Explorer").click()
    explorer = page.locator(".graphiql-plugin")
    await expect(explorer.get_by_role("textbox", name="Mutation Name")).to_be_visible()
    await expect(explorer.get_by_role("textbox").last).to_have_value("Made in GraphiQL")
    await expect(explorer).to_contain_text("googleLogin")
    await page.screenshot(path=str(results_dir() / "graphiql.png"))

    # Every pinned file was asked for, from the CDN only; nothing else left the machine.
    assert sorted(network.cdn) == sorted(assets)
    assert network.elsewhere == []
    assert errors == []


async def test_graphiql_says_so_when_unpkg_is_out_of_reach(context: BrowserContext) -> None:
    from playwright.async_api import expect

    network = Network()
    await network.install(context)  # offline: the CDN is refused too
    page = await context.new_page()
    await page.goto("/graphql")
    root = page.locator("#graphiql")
    await expect(root).to_contain_text("GraphiQL could not load its scripts from unpkg.com")
    await expect(root).to_contain_text("offline")
    await expect(root).not_to_contain_text("Loading...")
    await page.screenshot(path=str(results_dir() / "graphiql-offline.png"))
    assert network.cdn


async def test_graphiql_says_so_when_a_script_is_not_the_pinned_one(
    context: BrowserContext, assets: dict[str, Asset], unpkg_cache: Path
) -> None:
    """A CDN (or a proxy) that serves other bytes: the browser refuses them by the SRI
    hash, and the page says which file failed."""
    from playwright.async_api import expect

    tampered = next(url for url in reversed(assets) if url.endswith(".js"))

    async def answer(route: Route) -> None:
        asset = assets[route.request.url]
        body = asset.local(unpkg_cache).read_bytes()
        if route.request.url == tampered:
            body += b"\n/* not the pinned file */\n"
        await route.fulfill(
            status=200,
            body=body,
            content_type=TYPES[Path(asset.path).suffix],
            headers={"access-control-allow-origin": "*"},
        )

    network = Network()
    await network.install(context, answer)
    page = await context.new_page()
    await page.goto("/graphql")
    root = page.locator("#graphiql")
    await expect(root).to_contain_text("GraphiQL could not load its scripts from unpkg.com")
    await expect(root).to_contain_text(tampered)
    # ...and it stays said (GraphiQL's own start-up does not paint over it).
    await page.wait_for_timeout(500)
    await expect(root).to_contain_text(tampered)
