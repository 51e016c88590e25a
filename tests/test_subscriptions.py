"""Subscriptions over a real WebSocket (the `websockets` client) to a real `graphql-api serve`.

What the contract promises: graphql-transport-ws only; a socket is authenticated by its
connection_init payload and never by a cookie; it lives no longer than its access token
(4403 "Token expired") and its session (4403 "Session ended" within a second of a logout,
a revoked session, a reused refresh token or a deleted user); each event is resolved with
the subscriber's own permissions; and every limit (subscriptions per connection,
connections per user, message size, query limits, trusted documents, a subscriber too far
behind) holds without slowing anyone else.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from graphql_api.auth.keys import load_key_set
from graphql_api.auth.tokens import AccessTokenCodec
from tests.conftest import ADMIN_EMAIL, FakeClock
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import LiveServer

PROTOCOL = "graphql-transport-ws"
LOGIN = """mutation($t: String!) {
  googleLogin(idToken: $t) { accessToken refreshToken user { id } }
}"""
EVENTS = """subscription($owner: ID) { categoryEvents(ownerId: $owner) {
  kind categoryId category { id name description owner { id email } } } }"""
CREATE = (
    "mutation($n: String!, $d: String) "
    "{ createCategory(input: {name: $n, description: $d}) { id } }"
)
ANSWER = 5.0  # seconds: the bound on waiting for something that should come at once


@dataclass
class Account:
    token: str
    refresh: str
    user_id: str
    session_id: str


@dataclass
class Server:
    live: LiveServer
    google: FakeGoogle
    # Where only trusted documents run: the ids of the texts this test sends.
    trusted: dict[str, str] | None = None

    @property
    def ws_url(self) -> str:
        return self.live.url.replace("http://", "ws://") + "/graphql"

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        request: dict[str, Any] = {"query": query, "variables": variables}
        if self.trusted is not None:
            request = {"documentId": f"sha256:{self.trusted[query]}", "variables": variables}
        async with httpx.AsyncClient(base_url=self.live.url, timeout=30) as http:
            response = await http.post("/graphql", json=request, headers=headers)
        body: dict[str, Any] = response.json()
        return body

    async def sign_in(self, sub: str, email: str | None = None) -> Account:
        body = await self.gql(
            LOGIN, {"t": self.google.mint(sub=sub, email=email or f"{sub}@example.com")}
        )
        assert body.get("data"), body
        payload = body["data"]["googleLogin"]
        sessions = await self.gql("{ mySessions { id current } }", token=payload["accessToken"])
        current = next(s["id"] for s in sessions["data"]["mySessions"] if s["current"])
        return Account(
            payload["accessToken"], payload["refreshToken"], payload["user"]["id"], current
        )

    async def create(self, account: Account, name: str, description: str | None = None) -> str:
        body = await self.gql(CREATE, {"n": name, "d": description}, account.token)
        assert "errors" not in body, body
        category_id: str = body["data"]["createCategory"]["id"]
        return category_id


@pytest.fixture
def serve(fake_google: FakeGoogle, keys_file: Path, tmp_path: Path) -> Iterator[Any]:
    """``serve(**settings)`` -> a development `graphql-api serve` on its own SQLite file."""
    started: list[LiveServer] = []

    def _serve(arguments: tuple[str, ...] = (), **overrides: str) -> Server:
        settings = {
            "ENV": "development",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/ws-{len(started)}.db",
            "JWT_KEYS_FILE": str(keys_file),
            "GOOGLE_CLIENT_IDS": CLIENT_ID,
            "GOOGLE_CERTS_URL": fake_google.jwks_url,
            "GOOGLE_CERTS_TIMEOUT": "15",  # a loaded machine, not a slow Google
            "ADMIN_EMAILS": ADMIN_EMAIL,
            "LOGIN_RATE_LIMIT": "1000/minute",
            "REFRESH_RATE_LIMIT": "1000/minute",
            **overrides,
        }
        live = LiveServer.start(settings=settings, log_dir=tmp_path, arguments=arguments)
        started.append(live)
        return Server(live, fake_google)

    yield _serve
    for live in started:
        live.stop()


@pytest.fixture
def server(serve: Any) -> Server:
    served: Server = serve()
    return served


@asynccontextmanager
async def connected(
    server: Server,
    token: str | None,
    *,
    payload: Any = None,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    sock: socket.socket | None = None,
    ack: bool = True,
    compression: bool = True,
) -> AsyncIterator[ClientConnection]:
    """An initialised socket (``ack``: and acknowledged)."""
    init_payload = (
        payload if payload is not None else ({"authorization": f"Bearer {token}"} if token else {})
    )
    kwargs: dict[str, Any] = {"subprotocols": [PROTOCOL], "additional_headers": headers or {}}
    if origin is not None:
        kwargs["origin"] = origin
    if sock is not None:
        kwargs["sock"] = sock
    if not compression:
        kwargs["compression"] = None
    async with websockets.connect(server.ws_url, **kwargs) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": init_payload}))
        if ack:
            message = json.loads(await asyncio.wait_for(ws.recv(), ANSWER))
            assert message == {"type": "connection_ack"}, message
        yield ws


async def subscribe(
    ws: ClientConnection, operation_id: str = "1", owner: str | None = None, query: str = EVENTS
) -> None:
    payload: dict[str, Any] = {"query": query, "variables": {"owner": owner}}
    await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), ANSWER))
    return message


async def closed_with(ws: ClientConnection, within: float = ANSWER) -> tuple[int, str]:
    """The close code and reason, with at most ``within`` seconds between messages."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None, closed
        return closed.rcvd.code, closed.rcvd.reason


async def settle() -> None:
    """Give the server a moment to register a subscription before an event is made."""
    await asyncio.sleep(0.3)


def event(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next", message
    data: dict[str, Any] = message["payload"]["data"]["categoryEvents"]
    return data


# --- authentication ----------------------------------------------------------------


async def test_the_init_payload_authenticates_the_socket(server: Server) -> None:
    account = await server.sign_in("ws-ok")
    async with connected(server, account.token) as ws:
        await subscribe(ws)
        await settle()
        await server.create(account, "First")
        assert event(await next_message(ws))["kind"] == "CREATED"


def expired_token(keys_file: Path, account: Account) -> str:
    clock = FakeClock()
    clock.advance(-3600)
    codec = AccessTokenCodec(
        keys=load_key_set(keys_file),
        issuer="graphql-api",
        audience="graphql-api",
        ttl=900,
        leeway=5,
        clock=clock,
    )
    return codec.issue(user_id=int(account.user_id), session_id=account.session_id).token


@pytest.mark.parametrize(
    "case", ["no-payload", "no-authorization", "not-bearer", "garbage", "expired", "revoked"]
)
async def test_a_socket_without_a_valid_live_token_is_closed_4401(
    server: Server, keys_file: Path, case: str
) -> None:
    account = await server.sign_in(f"ws-refused-{case}")
    payloads: dict[str, Any] = {
        "no-payload": None,
        "no-authorization": {"token": account.token},
        "not-bearer": {"authorization": f"Basic {account.token}"},
        "garbage": {"authorization": "Bearer not.a.token"},
        "expired": {"authorization": f"Bearer {expired_token(keys_file, account)}"},
        "revoked": {"authorization": f"Bearer {account.token}"},
    }
    if case == "revoked":
        await server.gql("mutation { logout }", token=account.token)
    payload = payloads[case]
    async with connected(server, None, payload=payload or {}, ack=False) as ws:
        assert await closed_with(ws) == (4401, "Unauthorized")


async def test_a_cookie_never_authenticates_a_socket(server: Server) -> None:
    account = await server.sign_in("ws-cookie")
    cookie = {"cookie": f"graphql_api_refresh={account.refresh}"}
    async with connected(server, None, headers=cookie, ack=False) as ws:
        assert await closed_with(ws) == (4401, "Unauthorized")


async def test_no_init_in_time_is_4408_and_a_second_init_is_4429(serve: Any) -> None:
    server: Server = serve(WS_INIT_TIMEOUT="0.5")
    async with websockets.connect(server.ws_url, subprotocols=[Subprotocol(PROTOCOL)]) as ws:
        started = time.monotonic()
        code, _ = await closed_with(ws)
        assert code == 4408 and time.monotonic() - started < 3
    account = await server.sign_in("ws-twice")
    async with connected(server, account.token) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {account.token}"}}
        await ws.send(json.dumps(init))
        assert (await closed_with(ws))[0] == 4429


async def test_only_graphql_transport_ws_is_spoken(server: Server) -> None:
    async with websockets.connect(server.ws_url, subprotocols=[Subprotocol("graphql-ws")]) as ws:
        assert ws.subprotocol is None
        assert (await closed_with(ws))[0] == 4406


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (None, True),
        ("own", True),
        ("https://app.example", True),
        ("https://evil.example", False),
        ("null", False),
    ],
)
async def test_the_handshake_origin_is_the_services_own_or_a_cors_origin(
    serve: Any, origin: str | None, accepted: bool
) -> None:
    server: Server = serve(CORS_ORIGINS="https://app.example")
    sent = server.live.url.replace("127.0.0.1", "127.0.0.1") if origin == "own" else origin
    kwargs: dict[str, Any] = {"subprotocols": [Subprotocol(PROTOCOL)]}
    if sent is not None:
        kwargs["origin"] = sent
    if accepted:
        async with websockets.connect(server.ws_url, **kwargs) as ws:
            assert ws.subprotocol == PROTOCOL
    else:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(server.ws_url, **kwargs):
                pass
        assert refused.value.response.status_code == 403


# --- events ------------------------------------------------------------------------


async def test_every_kind_of_event_arrives_with_the_subscribers_own_permissions(
    server: Server,
) -> None:
    owner, other, admin = (
        await server.sign_in("ws-owner"),
        await server.sign_in("ws-other"),
        await server.sign_in("ws-admin", ADMIN_EMAIL),
    )
    async with (
        connected(server, owner.token) as owner_ws,
        connected(server, other.token) as other_ws,
        connected(server, admin.token) as admin_ws,
    ):
        for ws in (owner_ws, other_ws, admin_ws):
            await subscribe(ws)
        await settle()
        category_id = await server.create(owner, "Books", "paper")
        await server.gql(
            'mutation($id: ID!) { updateCategory(id: $id, input: {name: "Novels"}) { id } }',
            {"id": category_id},
            owner.token,
        )
        await server.gql(
            "mutation($id: ID!) { deleteCategory(id: $id) }", {"id": category_id}, admin.token
        )
        seen = {}
        for name, ws in (("owner", owner_ws), ("other", other_ws), ("admin", admin_ws)):
            seen[name] = [event(await next_message(ws)) for _ in range(3)]
    for name, events in seen.items():
        assert [e["kind"] for e in events] == ["CREATED", "UPDATED", "DELETED"], name
        assert {e["categoryId"] for e in events} == {category_id}
        assert events[0]["category"]["name"] == "Books"
        assert events[1]["category"]["name"] == "Novels"
        assert events[2]["category"] is None
        email = events[0]["category"]["owner"]["email"]
        assert email == (None if name == "other" else "ws-owner@example.com"), name


async def test_an_owner_filter_sees_that_owners_categories_only(server: Server) -> None:
    mine, theirs = await server.sign_in("ws-mine"), await server.sign_in("ws-theirs")
    async with connected(server, mine.token) as ws:
        await subscribe(ws, owner=theirs.user_id)
        await settle()
        await server.create(mine, "Not for the filter")
        wanted = await server.create(theirs, "For the filter")
        assert event(await next_message(ws))["categoryId"] == wanted


async def test_a_role_change_applies_from_the_next_event(server: Server) -> None:
    owner, watcher = await server.sign_in("ws-role-owner"), await server.sign_in("ws-watcher")
    admin = await server.sign_in("ws-role-admin", ADMIN_EMAIL)
    async with connected(server, watcher.token) as ws:
        await subscribe(ws)
        await settle()
        await server.create(owner, "Before")
        assert event(await next_message(ws))["category"]["owner"]["email"] is None
        promoted = await server.gql(
            "mutation($id: ID!) { updateUser(id: $id, input: {role: ADMIN}) { role } }",
            {"id": watcher.user_id},
            admin.token,
        )
        assert promoted["data"]["updateUser"]["role"] == "ADMIN", promoted
        await server.create(owner, "After")
        after = event(await next_message(ws))
        assert after["category"]["owner"]["email"] == "ws-role-owner@example.com"


# --- the connection lives no longer than its token and its session ----------------


async def test_the_socket_closes_when_its_access_token_expires(serve: Any) -> None:
    server: Server = serve(ACCESS_TOKEN_TTL="10")
    account = await server.sign_in("ws-expiring")
    async with connected(server, account.token) as ws:
        started = time.monotonic()
        await subscribe(ws)
        code, reason = await closed_with(ws, within=20)
        waited = time.monotonic() - started
    assert (code, reason) == (4403, "Token expired")
    assert 7 < waited < 13, waited


async def end_by(how: str, server: Server, account: Account) -> None:
    if how == "logout":
        await server.gql("mutation { logout }", token=account.token)
    elif how == "logoutAll":
        await server.gql("mutation { logoutAll }", token=account.token)
    elif how == "revokeSession":
        other_device = await server.sign_in(f"ws-end-{how}", f"ws-end-{how}@example.com")
        body = await server.gql(
            "mutation($id: ID!) { revokeSession(id: $id) }",
            {"id": account.session_id},
            other_device.token,
        )
        assert body["data"] == {"revokeSession": True}, body
    elif how == "refreshReuse":
        query = "mutation($t: String) { refreshToken(refreshToken: $t) { refreshToken } }"
        await server.gql(query, {"t": account.refresh})
        reused = await server.gql(query, {"t": account.refresh})
        assert reused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    elif how == "deleteUser":
        await server.gql(
            "mutation($id: ID!) { deleteUser(id: $id) }", {"id": account.user_id}, account.token
        )


@pytest.mark.parametrize(
    "how", ["logout", "logoutAll", "revokeSession", "refreshReuse", "deleteUser"]
)
async def test_the_socket_closes_within_a_second_when_its_session_ends(
    server: Server, how: str
) -> None:
    # revokeSession: the same Google account signs in again elsewhere and ends this one.
    sub = f"ws-end-{how}"
    account = await server.sign_in(sub, f"{sub}@example.com")
    async with connected(server, account.token) as ws:
        await subscribe(ws)
        await settle()
        await end_by(how, server, account)
        ended = time.monotonic()
        code, reason = await closed_with(ws)
        assert time.monotonic() - ended < 1.0
    assert (code, reason) == (4403, "Session ended")


# --- limits ------------------------------------------------------------------------


async def test_subscriptions_per_connection_are_limited(serve: Any) -> None:
    server: Server = serve(WS_MAX_SUBSCRIPTIONS="2")
    account = await server.sign_in("ws-many-subs")
    async with connected(server, account.token) as ws:
        await subscribe(ws, "1")
        await subscribe(ws, "2")
        await subscribe(ws, "3")
        refused = await next_message(ws)
        assert refused["type"] == "error" and refused["id"] == "3", refused
        assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        await settle()
        await server.create(account, "Still served")
        delivered = {(await next_message(ws))["id"] for _ in range(2)}
        assert delivered == {"1", "2"}


async def test_connections_per_user_are_limited(serve: Any) -> None:
    server: Server = serve(WS_MAX_CONNECTIONS_PER_USER="2")
    account = await server.sign_in("ws-many-sockets")
    async with (
        connected(server, account.token),
        connected(server, account.token),
        connected(server, account.token, ack=False) as third,
    ):
        assert (await closed_with(third))[0] == 4429
    # Closing one frees its place.
    async with connected(server, account.token):
        pass


async def test_a_message_over_the_body_limit_closes_the_socket_1009(serve: Any) -> None:
    server: Server = serve(MAX_BODY_BYTES="2048")
    account = await server.sign_in("ws-big")
    async with connected(server, account.token) as ws:
        padding = "#" * 3000 + "\n"
        await subscribe(ws, query=padding + EVENTS)
        assert (await closed_with(ws))[0] == 1009


async def test_subscribe_documents_pass_the_same_query_limits(server: Server) -> None:
    account = await server.sign_in("ws-deep")
    deep = "subscription { categoryEvents { category { owner { categories { edges { node { owner { categories { edges { node { owner { categories { edges { node { id } } } } } } } } } } } } } } }"  # noqa: E501
    async with connected(server, account.token) as ws:
        await subscribe(ws, query=deep)
        refused = await next_message(ws)
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await subscribe(ws, "2", query="subscription { categoryEvents { kind @aa @aa } }")
        assert (await next_message(ws))["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_only_trusted_documents_subscribe_where_they_are_required(
    serve: Any, tmp_path: Path
) -> None:
    import hashlib

    document = "subscription Live { categoryEvents { kind categoryId } }"
    digest = hashlib.sha256(document.encode()).hexdigest()
    sessions = "{ mySessions { id current } }"
    trusted = {
        text: hashlib.sha256(text.encode()).hexdigest() for text in (LOGIN, sessions, CREATE)
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({digest: document, **{v: k for k, v in trusted.items()}}))
    server: Server = serve(
        ENV="production", TRUSTED_DOCUMENTS="require", TRUSTED_DOCUMENTS_FILES=str(manifest)
    )
    server.trusted = trusted
    account = await server.sign_in("ws-trusted")
    async with connected(server, account.token) as ws:
        await subscribe(ws, "free", query=document)
        refused = await next_message(ws)
        assert refused["payload"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
        await ws.send(
            json.dumps(
                {"id": "byid", "type": "subscribe", "payload": {"documentId": f"sha256:{digest}"}}
            )
        )
        apollo = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
        await ws.send(json.dumps({"id": "apollo", "type": "subscribe", "payload": apollo}))
        unknown = {"documentId": "sha256:" + "0" * 64}
        await ws.send(json.dumps({"id": "unknown", "type": "subscribe", "payload": unknown}))
        refused = await next_message(ws)
        assert refused["id"] == "unknown"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        await settle()
        await server.create(account, "Trusted")
        delivered = {(await next_message(ws))["id"] for _ in range(2)}
        assert delivered == {"byid", "apollo"}


def slow_socket() -> socket.socket:
    """A client socket with a tiny receive buffer: a consumer that falls behind quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_slow_subscriber_is_closed_1013_and_slows_nobody_else(serve: Any) -> None:
    server: Server = serve(WS_MAX_QUEUE="5", MAX_ALIASES="100", MAX_TOKENS="5000")
    account = await server.sign_in("ws-slow")
    sock = slow_socket()
    host, port = server.live.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    count = 120
    # Each event the slow one asks for weighs ~100 KB (and is not compressed): its buffers,
    # the kernel's included, fill within a few dozen.
    aliases = " ".join(f"d{n}: description" for n in range(100))
    heavy = f"subscription {{ categoryEvents {{ category {{ {aliases} }} }} }}"
    async with (
        connected(server, account.token, sock=sock, compression=False) as slow,
        connected(server, account.token) as fast,
    ):
        await subscribe(slow, query=heavy)
        await subscribe(fast)
        await settle()
        received = 0

        async def read_fast() -> None:
            nonlocal received
            while received < count:
                assert event(await next_message(fast))["kind"] == "CREATED"
                received += 1

        reader = asyncio.create_task(read_fast())
        description = "x" * 1000
        for n in range(count):
            await server.create(account, f"Slow {n}", description)
        await asyncio.wait_for(reader, 30)
        assert received == count
        # The slow one never read: it was cut off instead of holding anyone up.
        code, reason = await closed_with(slow, within=30)
    assert (code, reason) == (1013, "Subscriber too slow")


async def test_several_processes_without_redis_refuse_subscriptions(
    serve: Any, tmp_path: Path
) -> None:
    server: Server = serve(("--workers", "2"))
    assert "subscriptions are off" in server.live.output()
    account = await server.sign_in("ws-no-redis")
    async with connected(server, account.token) as ws:
        await subscribe(ws)
        refused = await next_message(ws)
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
