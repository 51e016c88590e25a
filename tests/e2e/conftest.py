"""Browser-test fixtures: the service served for real, and Debian's Chromium under Playwright.

The service runs as ``python -m graphql_api serve`` in a subprocess on a free 127.0.0.1
port (development by default, SQLite, the fake Google issuer). A production server serves
no reference page: ``serve_reference_page`` has the browser context answer the page's own
URLs from the same files, with the same headers, so that the page, its origin, its
requests and its cookies are those of a real deployment. Chromium is the system package
(``/usr/bin/chromium``, installed by ``scripts/ensure-chromium``); Playwright's own browser
download is never used. Without Chromium or Playwright these tests skip, and fail under
CI=true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphql_api.web.client_page import ASSETS, CLIENT_MANIFEST, PAGE_HEADERS, STATIC_DIR
from tests.conftest import IN_CI
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import COMMAND, LiveServer, environment

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Route

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The tests answer the page's own URLs from Playwright's router (serve_reference_page),
    # so Chromium cannot tell that the page came from 127.0.0.1: Local Network Access would
    # then refuse its WebSocket to the service, which a page served by it may open.
    "--disable-features=LocalNetworkAccessChecks",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results"
ACCESS_TOKEN_TTL = 10  # the smallest the settings allow: expiry is observable in a test
# Google Identity Services, replaced by a stub (served for its real URL through Playwright's
# router) whose button hands the page an ID token minted by the fake issuer, carrying the
# nonce the page gave to ``initialize``.
GSI_CLIENT = "https://accounts.google.com/gsi/client"
GSI_STUB = """
window.google = { accounts: { id: {
  initialize(config) { window.__gsiConfig = config; },
  renderButton(parent) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Sign in with Google (test stub)";
    button.addEventListener("click", async () => {
      const config = window.__gsiConfig;
      const credential = await window.mintGoogleIdToken(config.nonce ?? null);
      config.callback({ credential, select_by: "btn" });
    });
    parent.append(button);
  },
  prompt() {}, cancel() {}, disableAutoSelect() {},
} } };
"""
AVATAR = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="16"'
    ' fill="#7c3aed"/><text x="16" y="22" font-size="16" text-anchor="middle" fill="#fff"'
    ' font-family="sans-serif">A</text></svg>'
)


OPERATION = re.compile(r"^\s*(?:query|mutation|subscription)\s+(\w+)")
# The page's operations: name -> documentId, read from its manifest as the page reads it.


def _operation_name(text: str) -> str:
    match = OPERATION.match(text)
    assert match is not None, text
    return match.group(1)


DOCUMENTS = {
    _operation_name(text): f"sha256:{key}"
    for key, text in json.loads(CLIENT_MANIFEST.read_text()).items()
}


def by_id(operation: str, variables: dict[str, object]) -> dict[str, object]:
    return {"documentId": DOCUMENTS[operation], "variables": variables}


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests cannot run: {reason}")
    pytest.skip(f"browser tests skipped: {reason} (run scripts/ensure-chromium)")


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, fake_google: FakeGoogle, keys_file: Path
) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**env)`` -> a migrated, ready server; GRAPHQL_API_<NAME> from ``env``."""
    servers: list[LiveServer] = []

    def _serve(**overrides: str) -> LiveServer:
        tmp = tmp_path_factory.mktemp("live")
        settings = {
            "ENV": "development",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/e2e.db",
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "GOOGLE_CERTS_URL": fake_google.jwks_url,
            "GOOGLE_CERTS_TIMEOUT": "15",  # a loaded machine, not a slow Google
            "JWT_KEYS_FILE": str(keys_file),
            "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
            "JWT_LEEWAY": "0",
            "LOGIN_RATE_LIMIT": "1000/minute",
            "REFRESH_RATE_LIMIT": "1000/minute",
            **overrides,
        }
        subprocess.run(  # noqa: S603 - our own CLI
            [*COMMAND, "migrate"], env=environment(settings), check=True, capture_output=True
        )
        server = LiveServer.start(settings=settings, log_dir=tmp, timeout=20)
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop(timeout=10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def results_dir() -> Path:
    RESULTS.mkdir(exist_ok=True)
    return RESULTS


def page_errors(page: Any) -> list[str]:
    """Uncaught exceptions and console errors of ``page`` (CSP violations included)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text} ({message.location['url']})")
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico")
            else None
        ),
    )
    return errors


async def serve_reference_page(
    context: BrowserContext, server: LiveServer, *, google_client_id: str | None
) -> None:
    """Answer ``/``, ``/static/<asset>`` and ``/client-config.json`` of ``server`` as
    development's ``web/client_page.py`` does; everything else reaches the server."""
    types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}

    async def index(route: Route) -> None:
        await route.fulfill(
            status=200,
            path=STATIC_DIR / "index.html",
            content_type="text/html; charset=utf-8",
            headers=PAGE_HEADERS,
        )

    async def asset(route: Route) -> None:
        name = route.request.url.rsplit("/", 1)[1]
        if name not in ASSETS:
            await route.fulfill(status=404)
            return
        await route.fulfill(
            status=200,
            path=STATIC_DIR / name,
            content_type=types[Path(name).suffix],
            headers={"cache-control": "no-cache"},
        )

    async def config(route: Route) -> None:
        await route.fulfill(
            status=200,
            content_type="application/json",
            # As production would, if it served the page: no development sign-in.
            body=json.dumps(
                {"googleClientId": google_client_id, "graphqlPath": "/graphql", "devSignIn": False}
            ),
            headers={"cache-control": "no-store"},
        )

    await context.route(f"{server.url}/", index)
    await context.route(f"{server.url}/static/*", asset)
    await context.route(f"{server.url}/client-config.json", config)


@pytest.fixture(scope="module")
def server(serve: Callable[..., LiveServer]) -> LiveServer:
    """Production, where only the page's own operations run."""
    return serve(
        ENV="production",
        TRUSTED_DOCUMENTS="require",
        TRUSTED_DOCUMENTS_FILES=str(CLIENT_MANIFEST),
    )


@pytest.fixture
async def page(browser: Browser, server: LiveServer) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=server.url)
    await serve_reference_page(context, server, google_client_id=CLIENT_ID)
    # Nothing leaves the machine: any request not for the server is refused...
    await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    # ...but the profile picture, which comes from Google's image host...
    await context.route(
        "https://lh3.googleusercontent.com/**",
        lambda route: route.fulfill(status=200, content_type="image/svg+xml", body=AVATAR),
    )
    # ...and Google Identity Services, which is the stub.
    await context.route(
        GSI_CLIENT,
        lambda route: route.fulfill(
            status=200, content_type="text/javascript; charset=utf-8", body=GSI_STUB
        ),
    )
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()
