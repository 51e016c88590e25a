"""The reference client's live categories in Chromium: graphql-ws over the real socket.

The server runs as in production (only the page's trusted documents, the page served by
the test as ``conftest`` explains), with the shortest access-token lifetime. Changes come
from a second client, plain HTTP as the same user (another device of theirs), and must
show in the page without a reload; the socket must outlive its access token by
reconnecting with a refreshed one, and must not outlive its session.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import ACCESS_TOKEN_TTL, DOCUMENTS, by_id, page_errors
from tests.fake_google import FakeGoogle
from tests.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.async_api import Page, Request, WebSocket

SIGNED_OUT = "You are signed out: your session ended or was revoked. Please sign in again."


class Sockets:
    """The page's WebSockets to /graphql, with the connection_init each one sent."""

    def __init__(self, page: Page) -> None:
        self.opened: list[WebSocket] = []
        self.tokens: list[str | None] = []  # the bearer token of each connection_init
        self.subscribes: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        if not socket.url.endswith("/graphql"):
            return
        self.opened.append(socket)
        socket.on("framesent", self._sent)
        socket.on("close", lambda _: self.closed.set())

    def _sent(self, payload: str | bytes) -> None:
        message = json.loads(payload)
        if message["type"] == "connection_init":
            authorization = (message.get("payload") or {}).get("authorization", "")
            self.tokens.append(authorization.removeprefix("Bearer ") or None)
        elif message["type"] == "subscribe":
            self.subscribes.append(message["payload"])


class Requests:
    """The page's POST /graphql operations, by name, with their answers' bodies."""

    def __init__(self, page: Page) -> None:
        self.finished: list[Request] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Request) -> None:
        if request.url.endswith("/graphql") and request.method == "POST":
            self.finished.append(request)

    def names(self) -> list[str]:
        return [str((r.post_data_json or {}).get("operationName")) for r in self.finished]


class Device:
    """Another client of the same user: HTTP with a bearer token, trusted documents only."""

    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self.http = http
        self.token = token

    async def run(self, operation: str, **variables: object) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql",
            json=by_id(operation, variables),
            headers={"authorization": f"Bearer {self.token}"},
        )
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
async def device(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"user-agent": "the same user's phone (e2e)"}
    ) as http:
        yield http


async def sign_in(page: Page, google: FakeGoogle, who: dict[str, Any]) -> float:
    """Sign ``who`` in in the page; when the page got its access token (monotonic)."""
    from playwright.async_api import expect

    await page.expose_function("mintGoogleIdToken", lambda nonce: google.mint(**who, nonce=nonce))
    await page.goto("/")
    async with page.expect_response(
        lambda r: r.url.endswith("/graphql") and "Login" in (r.request.post_data or "")
    ):
        await page.get_by_role("button", name="Sign in with Google (test stub)").click()
    issued_at = time.monotonic()
    await expect(page.locator("#user-name")).to_have_text(who["name"])
    return issued_at


async def other_device(http: httpx.AsyncClient, google: FakeGoogle, who: dict[str, Any]) -> Device:
    login = await http.post("/graphql", json=by_id("Login", {"idToken": google.mint(**who)}))
    return Device(http, login.json()["data"]["googleLogin"]["accessToken"])


def who(name: str) -> dict[str, Any]:
    slug = name.lower().replace(" ", "-")
    return {"sub": f"e2e-live-{slug}", "email": f"{slug}@example.com", "name": name}


async def test_categories_changed_by_another_client_appear_change_and_disappear_live(
    page: Page, device: httpx.AsyncClient, fake_google: FakeGoogle
) -> None:
    from playwright.async_api import expect

    errors = page_errors(page)
    sockets = Sockets(page)
    requests = Requests(page)
    grace = who("Grace Hopper")
    await sign_in(page, fake_google, grace)
    live = page.locator("#live-state")
    await expect(live).to_have_attribute("data-state", "live")
    await expect(live).to_have_text("live")
    items = page.locator("#category-list li.category")
    await expect(page.locator("#category-list")).to_have_text("No categories yet.")
    loaded = requests.names().count("Categories")
    phone = await other_device(device, fake_google, grace)

    # Created elsewhere: it appears, without a reload or a refetch.
    created = await phone.run("CreateCategory", input={"name": "From the phone"})
    category_id = created["createCategory"]["id"]
    item = items.filter(has_text="From the phone")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("yours")
    await expect(item).to_have_attribute("data-id", category_id)

    # Changed elsewhere: it changes in place.
    await phone.run("RenameCategory", id=category_id, name="Renamed on the phone")
    await expect(items.locator(".name")).to_have_text(["Renamed on the phone"])

    # Deleted elsewhere: it disappears.
    await phone.run("DeleteCategory", id=category_id)
    await expect(items).to_have_count(0)
    await expect(page.locator("#category-list")).to_have_text("No categories yet.")

    # Another user's category arrives too, resolved as this user may see it.
    ursula = await other_device(device, fake_google, who("Ursula Franklin"))
    await ursula.run("CreateCategory", input={"name": "Ursula's notes"})
    await expect(items.filter(has_text="Ursula's notes")).to_contain_text("by Ursula Franklin")

    # All of it over one socket, by trusted-document id, with the page's own token.
    assert requests.names().count("Categories") == loaded
    assert len(sockets.opened) == 1
    assert sockets.subscribes == [
        {
            "query": "",
            "documentId": DOCUMENTS["CategoryEvents"],
            "operationName": "CategoryEvents",
            "variables": {},
        }
    ]
    assert sockets.tokens[0] and sockets.tokens[0] != phone.token
    assert errors == []


async def test_at_token_expiry_the_page_reconnects_with_a_refreshed_token(
    page: Page, device: httpx.AsyncClient, fake_google: FakeGoogle
) -> None:
    from playwright.async_api import expect

    errors = page_errors(page)
    sockets = Sockets(page)
    requests = Requests(page)
    hedy = who("Hedy Lamarr")
    issued_at = await sign_in(page, fake_google, hedy)
    live = page.locator("#live-state")
    await expect(live).to_have_attribute("data-state", "live")

    # The server closes the socket at the token's exp (4403 "Token expired"); nothing in
    # the page asked for it.
    async with asyncio.timeout(ACCESS_TOKEN_TTL + 5):
        await sockets.closed.wait()
    assert time.monotonic() - issued_at >= ACCESS_TOKEN_TTL - 1

    # The page refreshes the token at once and connects again with the new one.
    await expect(live).to_have_attribute("data-state", "live", timeout=5000)
    assert len(sockets.opened) == 2
    assert not sockets.opened[1].is_closed()
    refresh = next(r for r in reversed(requests.finished) if "Refresh" in (r.post_data or ""))
    response = await refresh.response()
    assert response is not None
    refreshed = (await response.json())["data"]["refreshToken"]["accessToken"]
    assert sockets.tokens == [sockets.tokens[0], refreshed]
    assert sockets.tokens[0] != refreshed

    # And it still receives events.
    phone = await other_device(device, fake_google, hedy)
    await phone.run("CreateCategory", input={"name": "After the reconnection"})
    await expect(page.locator("#category-list li.category").first).to_contain_text(
        "After the reconnection"
    )
    assert errors == []


async def test_a_session_ended_elsewhere_signs_the_page_out_without_reconnecting(
    page: Page, device: httpx.AsyncClient, fake_google: FakeGoogle
) -> None:
    from playwright.async_api import expect

    errors = page_errors(page)
    sockets = Sockets(page)
    requests = Requests(page)
    alan = who("Alan Turing")
    await sign_in(page, fake_google, alan)
    await expect(page.locator("#live-state")).to_have_attribute("data-state", "live")

    # From another device of the same user: revoke the page's session.
    phone = await other_device(device, fake_google, alan)
    sessions = (await phone.run("MySessions"))["mySessions"]
    [browser_session] = [s for s in sessions if not s["current"]]
    sent = len(requests.finished)
    await phone.run("RevokeSession", id=browser_session["id"])

    # The socket closes (4403 "Session ended") and the page signs out, without a request.
    await expect(page.get_by_role("button", name="Sign in with Google (test stub)")).to_be_visible(
        timeout=3000
    )
    await expect(page.locator("#notice")).to_have_text(SIGNED_OUT)
    await expect(page.locator("#signed-in")).to_be_hidden()
    await expect(page.locator("#live-state")).to_be_hidden()
    assert sockets.opened[0].is_closed()

    # No reconnection, and no refresh, however long it waits.
    await asyncio.sleep(4)
    assert len(sockets.opened) == 1
    assert requests.names()[sent:] == []
    assert errors == []


async def test_tabs_refreshing_at_once_keep_the_session(
    page: Page, fake_google: FakeGoogle
) -> None:
    """Two tabs share the refresh cookie; when both refresh at the same moment (their live
    sockets reach the token's expiry together), the second exchange must use the cookie the
    first left, not the same refresh token (reuse, which ends the session everywhere)."""
    from playwright.async_api import expect

    ada = who("Ada Byron")
    await sign_in(page, fake_google, ada)
    other = await page.context.new_page()
    await other.goto("/")  # signed in from the shared cookie
    await expect(other.locator("#user-name")).to_have_text(ada["name"])

    refresh = """() => import('/static/graphql-client.js')
        .then((client) => client.refreshAccessToken())
        .then((tokens) => tokens.accessToken.length > 0, (error) => String(error))"""
    for _ in range(3):
        both = await asyncio.gather(page.evaluate(refresh), other.evaluate(refresh))
        assert list(both) == [True, True]
    # Both tabs' sessions still answer (a reuse would have ended the one session).
    sessions = """() => import('/static/graphql-client.js')
        .then((client) => client.graphql('MySessions'))
        .then((data) => data.mySessions.length, (error) => String(error))"""
    assert [await page.evaluate(sessions), await other.evaluate(sessions)] == [1, 1]
