"""The reference client page in a real browser: what a person sees and what the page sends.

The server runs as in production, under ``TRUSTED_DOCUMENTS=require`` with the page's
own manifest (``web/static/operations.manifest.json``): the page works by sending ids
only. Production serves no page, so the test serves the page's files (``conftest``).
Google Identity Services is replaced by a stub script (served for its real URL through
Playwright's router) whose button hands the page an ID token minted by the fake issuer,
carrying the nonce the page gave to ``initialize``. Everything else is real: the served
app, the HTTP requests, the HttpOnly cookie, token expiry.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import (
    ACCESS_TOKEN_TTL,
    DOCUMENTS,
    by_id,
    page_errors,
    results_dir,
)
from tests.fake_google import FakeGoogle
from tests.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Request

ADA: dict[str, Any] = {"sub": "e2e-ada", "email": "ada@example.com", "name": "Ada Lovelace"}
OLIVIA: dict[str, Any] = {
    "sub": "e2e-olivia",
    "email": "olivia@example.com",
    "name": "Olivia Other",
}
OTHER_DEVICE = "Ada's phone (e2e)"
PER_USER = 12  # with a page size of 10: three pages of categories in all


async def _seed_user(
    server: LiveServer, google: FakeGoogle, who: dict[str, Any], user_agent: str
) -> str:
    """Sign ``who`` in over HTTP (bearer mode) and give them PER_USER categories."""
    first_name = who["name"].split()[0]
    async with httpx.AsyncClient(base_url=server.url, headers={"user-agent": user_agent}) as http:
        login = await http.post("/graphql", json=by_id("Login", {"idToken": google.mint(**who)}))
        token: str = login.json()["data"]["googleLogin"]["accessToken"]
        for n in range(1, PER_USER + 1):
            response = await http.post(
                "/graphql",
                json=by_id("CreateCategory", {"input": {"name": f"{first_name}'s {n:02}"}}),
                headers={"authorization": f"Bearer {token}"},
            )
            assert "errors" not in response.json(), response.text
    return token


@pytest.fixture(scope="module")
def development(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve()


def _body(request: Request) -> dict[str, Any]:
    body = request.post_data_json
    assert isinstance(body, dict), body
    return body


def _operation(request: Request) -> str:
    return str(_body(request).get("operationName", "?"))


class GraphQLLog:
    """Every POST /graphql of the page: its operation name and the codes it got back."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self._arrived = asyncio.Event()
        # When the page last got an access token (an upper bound: the response has arrived).
        self.token_issued_at = time.monotonic()
        page.on("requestfinished", self._finished)

    def _finished(self, request: Request) -> None:
        if request.url.endswith("/graphql") and request.method == "POST":
            self.requests.append(request)
            if _operation(request) in ("Login", "Refresh"):
                self.token_issued_at = time.monotonic()
            self._arrived.set()

    def mark(self) -> int:
        return len(self.requests)

    async def since(self, mark: int, count: int) -> list[tuple[str, list[str]]]:
        """The first ``count`` operations after ``mark`` as (name, error codes)."""
        async with asyncio.timeout(10):
            while len(self.requests) < mark + count:
                self._arrived.clear()
                await self._arrived.wait()
        result = []
        for request in self.requests[mark : mark + count]:
            response = await request.response()
            assert response is not None
            body = await response.json()
            codes = [e["extensions"]["code"] for e in body.get("errors", [])]
            result.append((_operation(request), codes))
        return result


async def test_a_person_signs_in_manages_categories_and_sessions_and_signs_out(
    page: Page, server: LiveServer, fake_google: FakeGoogle
) -> None:
    from playwright.async_api import expect

    # Only trusted documents run: a free-form query is refused before it is read.
    async with httpx.AsyncClient(base_url=server.url) as http:
        free_form = await http.post("/graphql", json={"query": "{ __typename }"})
    assert free_form.status_code == 400
    assert free_form.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    await _seed_user(server, fake_google, OLIVIA, "Olivia's laptop (e2e)")
    other_device_token = await _seed_user(server, fake_google, ADA, OTHER_DEVICE)
    nonces: list[str | None] = []

    def mint(nonce: str | None) -> str:
        nonces.append(nonce)
        return fake_google.mint(**ADA, nonce=nonce)

    await page.expose_function("mintGoogleIdToken", mint)
    errors = page_errors(page)
    log = GraphQLLog(page)
    # This test is about HTTP. The page's live socket would refresh the access token at its
    # expiry itself (test_live_updates.py), so here it reaches a stand-in that never answers.
    await page.route_web_socket(re.compile(r"/graphql$"), lambda socket: None)

    # Signed out at first: the Google button (stubbed) is offered.
    await page.goto("/")
    sign_in = page.get_by_role("button", name="Sign in with Google (test stub)")
    await sign_in.click()

    # Signed in: the user is shown, and the ID token carried the page's fresh nonce.
    await expect(page.locator("#user-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#user-email")).to_have_text("ada@example.com")
    await expect(page.locator("#notice")).to_have_text("Signed in as ada@example.com.")
    assert len(nonces) == 1 and nonces[0] and len(nonces[0]) >= 16
    login = [r for r in log.requests if _operation(r) == "Login"]
    assert _body(login[0])["variables"]["nonce"] == nonces[0]
    assert login[0].headers["x-refresh-token-transport"] == "cookie"

    # Cursor paging through 24 categories, 10 a page.
    items = page.locator("#category-list li.category")
    names = items.locator(".name")
    await expect(items).to_have_count(10)
    await expect(names.first).to_have_text("Olivia's 01")
    await expect(page.locator("#previous-page")).to_be_disabled()
    await page.get_by_role("button", name="Next").click()
    await expect(page.locator("#page-label")).to_have_text("Page 2")
    await expect(names.first).to_have_text("Olivia's 11")
    await expect(names.nth(2)).to_have_text("Ada's 01")
    await page.get_by_role("button", name="Next").click()
    await expect(items).to_have_count(4)
    await expect(names.last).to_have_text("Ada's 12")
    await expect(page.locator("#next-page")).to_be_disabled()
    await page.get_by_role("button", name="Previous").click()
    await expect(page.locator("#page-label")).to_have_text("Page 2")
    await page.get_by_role("button", name="Previous").click()
    await expect(page.locator("#page-label")).to_have_text("Page 1")
    await expect(names.first).to_have_text("Olivia's 01")

    # Create, then rename and delete it.
    notice = page.locator("#notice")
    await page.get_by_label("New category name").fill("Reading list")
    await page.get_by_label("New category description").fill("Books to read")
    await page.get_by_role("button", name="Create").click()
    await expect(notice).to_have_text("Created “Reading list”.")
    created = items.filter(has_text="Reading list")
    await expect(created).to_contain_text("yours")
    await created.get_by_role("button", name="Rename").click()
    await page.get_by_label("New name").fill("Reading list 2025")
    await page.get_by_role("button", name="Save").click()
    await expect(notice).to_have_text("Renamed “Reading list” to “Reading list 2025”.")
    renamed = items.filter(has_text="Reading list 2025")
    await renamed.get_by_role("button", name="Delete").click()
    await expect(notice).to_have_text("Deleted “Reading list 2025”.")
    await expect(items.filter(has_text="Reading list")).to_have_count(0)

    # A duplicate name is BAD_USER_INPUT, shown with the service's reason.
    await page.get_by_label("New category name").fill("Ada's 01")
    await page.get_by_role("button", name="Create").click()
    await expect(notice).to_have_class("error")
    await expect(notice).to_contain_text("Please check your input:")

    # Someone else's category: FORBIDDEN, as a readable message; nothing changes.
    olivias = items.filter(has_text="Olivia's 02")
    await expect(olivias).to_contain_text("by Olivia Other")
    await olivias.get_by_role("button", name="Delete").click()
    await expect(notice).to_have_text("Not allowed: only its owner or an admin can change this.")
    await expect(notice).to_have_class("error")
    await expect(olivias).to_have_count(1)
    await olivias.get_by_role("button", name="Rename").click()
    await page.get_by_label("New name").fill("Mine now")
    await notice.evaluate("node => { node.textContent = '' }")
    await page.get_by_role("button", name="Save").click()
    await expect(notice).to_have_text("Not allowed: only its owner or an admin can change this.")
    await page.get_by_role("button", name="Cancel").click()
    await expect(items.filter(has_text="Olivia's 02")).to_have_count(1)

    # Two sessions: this browser, and the other device signed in beforehand.
    sessions = page.locator("#session-list li")
    await expect(sessions).to_have_count(2)
    await expect(sessions.filter(has_text="This browser")).to_have_count(1)
    await expect(sessions.filter(has_text=OTHER_DEVICE)).to_have_count(1)
    results = results_dir()
    await page.screenshot(path=str(results / "reference-client-signed-in.png"), full_page=True)

    # The refresh token is in an HttpOnly cookie: present, but not readable by scripts.
    cookies = {c["name"]: c for c in await page.context.cookies()}
    refresh_cookie = cookies["graphql_api_refresh"]
    assert refresh_cookie["httpOnly"] is True
    assert refresh_cookie["sameSite"] == "Strict"
    assert refresh_cookie["path"] == "/graphql"
    assert await page.evaluate("document.cookie") == ""

    # The access token expires. Two calls leave at once and both are refused; the page
    # refreshes once (one refresh shared by both), retries each, and shows no error.
    expired_at = log.token_issued_at + ACCESS_TOKEN_TTL + 1.5
    await asyncio.sleep(max(0.0, expired_at - time.monotonic()))
    await notice.evaluate("node => { node.hidden = true }")
    mark = log.mark()
    await page.evaluate(
        "() => { document.getElementById('next-page').click();"
        " document.getElementById('reload-sessions').click(); }"
    )
    await expect(page.locator("#page-label")).to_have_text("Page 2")
    await expect(names.first).to_have_text("Olivia's 11")
    calls = await log.since(mark, 5)
    assert sorted(calls) == [
        ("Categories", []),
        ("Categories", ["UNAUTHENTICATED"]),
        ("MySessions", []),
        ("MySessions", ["UNAUTHENTICATED"]),
        ("Refresh", []),
    ]
    assert len(log.requests) == mark + 5
    await expect(notice).to_be_hidden()
    await expect(sessions).to_have_count(2)
    assert "Revoke" not in (await sessions.filter(has_text="This browser").inner_text())

    # Revoke the other device: its access token stops working at once.
    await sessions.filter(has_text=OTHER_DEVICE).get_by_role("button", name="Revoke").click()
    await expect(notice).to_have_text("Session revoked: that device is signed out.")
    await expect(sessions).to_have_count(1)
    async with httpx.AsyncClient(base_url=server.url) as http:
        me = (
            await http.post(
                "/graphql",
                json=by_id("MySessions", {}),
                headers={"authorization": f"Bearer {other_device_token}"},
            )
        ).json()
    assert me["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # A reload forgets the access token; the cookie resumes the session.
    await page.reload()
    await expect(page.locator("#user-name")).to_have_text("Ada Lovelace")
    await expect(sessions).to_have_count(1)

    # Log out: back to the sign-in button, the cookie is gone and stays gone on reload.
    await page.get_by_role("button", name="Log out").click()
    await expect(notice).to_have_text("Signed out.")
    await expect(sign_in).to_be_visible()
    await expect(page.locator("#signed-in")).to_be_hidden()
    assert "graphql_api_refresh" not in {c["name"] for c in await page.context.cookies()}
    storage = await page.evaluate(
        "({local: localStorage.length, session: sessionStorage.length, cookie: document.cookie})"
    )
    assert storage == {"local": 0, "session": 0, "cookie": ""}
    await page.reload()
    await expect(sign_in).to_be_visible()
    assert errors == []
    # Every call named a trusted document by id; no GraphQL text ever left the page.
    bodies = [_body(request) for request in log.requests]
    assert len(bodies) > 20
    for body in bodies:
        assert set(body) == {"documentId", "variables", "operationName"}, body
        assert body["documentId"] == DOCUMENTS[body["operationName"]]


async def test_signed_out_the_page_offers_sign_in_and_no_account(page: Page) -> None:
    from playwright.async_api import expect

    errors = page_errors(page)
    await page.goto("/")
    await expect(page.get_by_role("button", name="Sign in with Google (test stub)")).to_be_visible()
    # The account bar (name, role badge, Log out) is for a signed-in user only.
    await expect(page.locator("#account")).to_be_hidden()
    await expect(page.locator("#logout")).to_be_hidden()
    await expect(page.locator("#user-role")).to_be_hidden()
    await expect(page.locator("#signed-in")).to_be_hidden()
    await expect(page.locator("#notice")).to_be_hidden()
    await page.screenshot(path=str(results_dir() / "reference-client-signed-out.png"))
    assert errors == []


async def test_in_production_the_page_offers_no_development_sign_in(
    page: Page, server: LiveServer
) -> None:
    from playwright.async_api import expect

    await page.goto("/")
    await expect(page.get_by_role("button", name="Sign in with Google (test stub)")).to_be_visible()
    await expect(page.locator("#dev-sign-in")).to_be_hidden()
    # Nor does the service have the route, whatever a page would send.
    status = await page.evaluate(
        """() => fetch("/dev/sign-in", {
             method: "POST", body: "{}", credentials: "same-origin",
             headers: {"content-type": "application/json", "x-refresh-token-transport": "cookie"},
           }).then((response) => response.status)"""
    )
    assert status == 404
    assert "graphql_api_refresh" not in {c["name"] for c in await page.context.cookies()}


async def test_in_development_a_newcomer_signs_in_without_google(
    browser: Browser, serve: Callable[..., LiveServer]
) -> None:
    from playwright.async_api import expect

    server = serve(GOOGLE_CLIENT_IDS="")  # the first run: no Google client yet
    context = await browser.new_context(base_url=server.url)
    await context.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    try:
        page = await context.new_page()
        errors = page_errors(page)
        await page.goto("/")
        await expect(page.locator("#setup")).to_be_visible()
        await page.get_by_role("button", name="Sign in as a development user").click()

        # Signed in: the user, their (empty) categories and this one session.
        await expect(page.locator("#user-name")).to_have_text("developer")
        await expect(page.locator("#user-email")).to_have_text("developer@example.com")
        await expect(page.locator("#user-role")).to_have_text("USER")
        await expect(page.locator("#notice")).to_have_text(
            "Signed in as developer@example.com (development user)."
        )
        await expect(page.locator("#category-list")).to_have_text("No categories yet.")
        sessions = page.locator("#session-list li")
        await expect(sessions).to_have_count(1)
        await expect(sessions).to_contain_text("This browser")

        await page.get_by_label("New category name").fill("First steps")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("#notice")).to_have_text("Created “First steps”.")
        await page.screenshot(path=str(results_dir() / "reference-client-dev-sign-in.png"))

        # A session like any other: the HttpOnly cookie resumes it after a reload.
        await page.reload()
        await expect(page.locator("#user-name")).to_have_text("developer")
        await expect(page.locator("#category-list li.category .name")).to_have_text(["First steps"])
        await page.get_by_role("button", name="Log out").click()
        await expect(
            page.get_by_role("button", name="Sign in as a development user")
        ).to_be_visible()
        assert errors == []
    finally:
        await context.close()


async def test_without_google_client_ids_the_page_says_what_to_set(
    browser: Browser, serve: Callable[..., LiveServer]
) -> None:
    from playwright.async_api import expect

    server = serve(GOOGLE_CLIENT_IDS="")  # development: the service serves the page itself
    context = await browser.new_context(base_url=server.url)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        page = await context.new_page()
        errors = page_errors(page)
        graphql = page.expect_request_finished(lambda request: request.url.endswith("/graphql"))
        async with graphql as first_call:
            await page.goto("/")
        setup = page.locator("#setup")
        await expect(setup).to_be_visible()
        await expect(setup).to_contain_text("GRAPHQL_API_GOOGLE_CLIENT_IDS")
        await expect(setup).to_contain_text("make token EMAIL=you@example.com")
        await expect(page.locator("#page-origin")).to_have_text(server.url)
        assert not any("accounts.google.com" in url for url in requested)
        assert errors == []
        # Development trusts the page's manifest: its id is known (no refresh cookie yet).
        refresh = await first_call.value
        assert _operation(refresh) == "Refresh"
        response = await refresh.response()
        assert response is not None
        answer = await response.json()
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["UNAUTHENTICATED"]
    finally:
        await context.close()


def test_serve_prints_the_reference_page_graphiql_and_the_dev_token_command(
    development: LiveServer,
) -> None:
    output = development.output()
    # Printed as localhost (the same site as a frontend on http://localhost:5173).
    url = development.url.replace("127.0.0.1", "localhost")
    assert f"Reference client: {url}/" in output
    assert f"GraphiQL:         {url}/graphql" in output
    assert "make token EMAIL=you@example.com" in output
