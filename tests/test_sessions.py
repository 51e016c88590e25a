"""The token lifecycle: refresh rotation, reuse detection, lifetimes, logout and revocation."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from graphql_api.container import Container
from graphql_api.db.models import Base
from graphql_api.repositories import sessions as sessions_repo
from tests.conftest import FakeClock, GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

REFRESH = """
mutation($t: String) {
  refreshToken(refreshToken: $t) { accessToken refreshToken expiresIn user { id email } }
}"""
SESSIONS = "{ mySessions { id current userAgent createdAt lastUsedAt } }"


async def refresh(client: GraphQLClient, token: str | None) -> dict[str, Any]:
    return await client.gql(REFRESH, {"t": token})


async def rotate(client: GraphQLClient) -> None:
    """Refresh ``client``'s tokens in place; the refresh must succeed."""
    body = await refresh(client, client.refresh)
    assert "errors" not in body, body
    client.token = body["data"]["refreshToken"]["accessToken"]
    client.refresh = body["data"]["refreshToken"]["refreshToken"]


def session_of(client: GraphQLClient) -> str:
    assert client.token is not None
    sid: str = jwt.decode(client.token, options={"verify_signature": False})["sid"]
    return sid


async def is_signed_in(client: GraphQLClient) -> bool:
    body = await client.gql("{ me { id } }")
    return "errors" not in body


async def test_refresh_rotates_and_the_old_token_dies(user: GraphQLClient) -> None:
    old = user.refresh
    await rotate(user)
    assert user.refresh != old
    assert await is_signed_in(user)
    assert error_codes(await refresh(user, old)) == ["UNAUTHENTICATED"]


async def test_refresh_payload_shows_the_users_own_email(user: GraphQLClient) -> None:
    body = await refresh(user, user.refresh)
    assert body["data"]["refreshToken"]["user"]["email"] == "user@example.com"


async def test_reused_refresh_token_revokes_the_whole_session(user: GraphQLClient) -> None:
    stolen = user.refresh
    await rotate(user)  # the victim rotates; the thief still holds the old token
    assert error_codes(await refresh(user, stolen)) == ["UNAUTHENTICATED"]
    # The newest refresh token and the current access token died with the session.
    assert error_codes(await refresh(user, user.refresh)) == ["UNAUTHENTICATED"]
    assert not await is_signed_in(user)


async def test_ten_concurrent_refreshes_with_one_token_succeed_exactly_once(
    user: GraphQLClient,
) -> None:
    token = user.refresh
    bodies = await asyncio.gather(*(refresh(user, token) for _ in range(10)))
    successes = [b for b in bodies if "errors" not in b]
    assert len(successes) == 1
    assert all(error_codes(b) == ["UNAUTHENTICATED"] for b in bodies if "errors" in b)


async def test_unknown_and_malformed_refresh_tokens_are_unauthenticated(
    anonymous: GraphQLClient,
) -> None:
    for token in ("rt_unknown", "", "x" * 5000, None):
        assert error_codes(await refresh(anonymous, token)) == ["UNAUTHENTICATED"]


async def test_logout_ends_access_and_refresh_tokens_immediately(
    user: GraphQLClient, sign_in: Any
) -> None:
    second = await sign_in("user@example.com", "sub-user")
    assert (await user.data("mutation { logout }"))["logout"] is True
    assert not await is_signed_in(user)
    assert error_codes(await refresh(user, user.refresh)) == ["UNAUTHENTICATED"]
    assert await is_signed_in(second)  # other sessions of the same user live on


async def test_logout_all_ends_every_session_and_counts_them(
    user: GraphQLClient, sign_in: Any, other_user: GraphQLClient
) -> None:
    second = await sign_in("user@example.com", "sub-user")
    third = await sign_in("user@example.com", "sub-user")
    assert (await user.data("mutation { logoutAll }"))["logoutAll"] == 3
    for client in (user, second, third):
        assert not await is_signed_in(client)
        assert error_codes(await refresh(client, client.refresh)) == ["UNAUTHENTICATED"]
    assert await is_signed_in(other_user)


@pytest.mark.parametrize(
    "ending", ["logout", "logoutAll", "revokeSession", "reused-refresh-token", "deleteUser"]
)
async def test_the_process_that_ends_a_session_refuses_its_tokens_before_any_poll(
    user: GraphQLClient, sign_in: Any, clock: FakeClock, ending: str
) -> None:
    # Other processes hear of it at their next read of the revocation log; this one must
    # not wait for that. With the clock held still, no read comes due after this request.
    await user.data(SESSIONS)
    clock.hold_monotonic()
    ended = user
    if ending == "logout":
        await user.data("mutation { logout }")
    elif ending == "logoutAll":
        await user.data("mutation { logoutAll }")
    elif ending == "revokeSession":
        ended = await sign_in("user@example.com", "sub-user")
        revoke = "mutation($id: ID!) { revokeSession(id: $id) }"
        await user.data(revoke, {"id": session_of(ended)})
    elif ending == "reused-refresh-token":
        stolen = user.refresh
        await rotate(user)
        assert error_codes(await refresh(user, stolen)) == ["UNAUTHENTICATED"]
    else:
        await user.data("mutation($id: ID!) { deleteUser(id: $id) }", {"id": user.user_id})
    # mySessions reads no user row: only the revocation check can refuse it.
    assert error_codes(await ended.gql(SESSIONS)) == ["UNAUTHENTICATED"]


async def test_revoke_session_ends_one_of_your_own_sessions(
    user: GraphQLClient, sign_in: Any
) -> None:
    phone = await sign_in("user@example.com", "sub-user")
    sessions = (await user.data(SESSIONS))["mySessions"]
    assert len(sessions) == 2
    assert sum(s["current"] for s in sessions) == 1
    other = next(s for s in sessions if not s["current"])
    revoked = await user.data("mutation($id: ID!) { revokeSession(id: $id) }", {"id": other["id"]})
    assert revoked["revokeSession"] is True
    assert not await is_signed_in(phone)
    assert await is_signed_in(user)
    assert [s["current"] for s in (await user.data(SESSIONS))["mySessions"]] == [True]


async def test_another_users_session_cannot_be_revoked(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    sessions = (await user.data(SESSIONS))["mySessions"]
    body = await other_user.gql(
        "mutation($id: ID!) { revokeSession(id: $id) }", {"id": sessions[0]["id"]}
    )
    assert error_codes(body) == ["NOT_FOUND"]
    assert await is_signed_in(user)


async def test_my_sessions_records_the_user_agent(sign_in: Any, anonymous: GraphQLClient) -> None:
    client = await sign_in("ua@example.com", "sub-ua")
    sessions = (await client.data(SESSIONS))["mySessions"]
    assert sessions[0]["userAgent"].startswith("python-httpx")


async def test_a_second_instance_refuses_a_revoked_session_within_one_second(
    user: GraphQLClient, app_client: Any
) -> None:
    other_instance: GraphQLClient = await app_client()
    other_instance.token = user.token
    assert await is_signed_in(other_instance)
    await user.data("mutation { logout }")
    started = time.monotonic()
    while await is_signed_in(other_instance):
        assert time.monotonic() - started < 1.0, "still accepted after one second"
        await asyncio.sleep(0.05)


async def test_a_revocation_committed_after_a_poll_with_an_earlier_time_is_still_read(
    user: GraphQLClient, app_client: Any, container: Container, clock: FakeClock
) -> None:
    # A transaction stamps revoked_at when it runs and commits later: another process may
    # poll in between, so every poll re-reads a while before the previous one.
    other_instance: GraphQLClient = await app_client()
    other_instance.token = user.token
    assert await is_signed_in(other_instance)  # its last poll is after the stamp below
    async with container.db.writer() as session:
        await sessions_repo.revoke(
            session=session,
            session_ids=[session_of(user)],
            user_id=int(str(user.user_id)),
            now=clock.now() - timedelta(seconds=5),
            reason="logout",
        )
    started = time.monotonic()
    while await is_signed_in(other_instance):
        assert time.monotonic() - started < 1.0, "still accepted after one second"
        await asyncio.sleep(0.05)


async def test_a_process_started_after_a_logout_refuses_the_ended_session_at_once(
    user: GraphQLClient, app_client: Any
) -> None:
    token = user.token
    await user.data("mutation { logout }")
    started_later: GraphQLClient = await app_client()
    started_later.token = token
    assert not await is_signed_in(started_later)


@pytest.mark.postgres_only
@pytest.mark.parametrize("ender", ["logout", "reused-token"])
async def test_a_session_ended_while_it_refreshes_ends_cleanly(sign_in: Any, ender: str) -> None:
    # Refresh and revocation lock the session row before its tokens, in that order: the
    # other order deadlocks (PostgreSQL then aborts one of them). Raced a few times, since
    # one race may not interleave.
    for _ in range(10):
        client: GraphQLClient = await sign_in("race@example.com", "sub-race")
        stolen = client.refresh
        await rotate(client)
        end = (
            client.gql("mutation { logout }")
            if ender == "logout"
            else refresh(client, stolen)  # a rotated token: the session ends
        )
        refreshed, ended = await asyncio.gather(refresh(client, client.refresh), end)
        assert error_codes(refreshed) in ([], ["UNAUTHENTICATED"]), refreshed
        if ender == "logout":
            assert ended == {"data": {"logout": True}}, ended
        else:
            assert error_codes(ended) == ["UNAUTHENTICATED"], ended
        newest = refreshed["data"]["refreshToken"]["refreshToken"] if refreshed["data"] else None
        assert error_codes(await refresh(client, newest or client.refresh)) == ["UNAUTHENTICATED"]
        assert not await is_signed_in(client)


async def test_access_token_expires_after_its_ttl(user: GraphQLClient, clock: FakeClock) -> None:
    clock.advance(900 + 6)
    assert error_codes(await user.gql("{ me { id } }")) == ["UNAUTHENTICATED"]
    await rotate(user)
    assert await is_signed_in(user)


async def test_session_ends_after_the_absolute_lifetime_whatever_happens(
    user: GraphQLClient, clock: FakeClock, container: Container
) -> None:
    lifetime = container.settings.refresh_token_ttl
    idle = container.settings.session_idle_ttl
    # Keep the session busy: refresh well within the idle limit, up to the absolute end.
    elapsed = 0
    while elapsed + idle // 2 < lifetime:
        clock.advance(idle // 2)
        elapsed += idle // 2
        await rotate(user)
    clock.advance(lifetime - elapsed + 1)
    assert error_codes(await refresh(user, user.refresh)) == ["UNAUTHENTICATED"]


async def test_session_ends_after_the_idle_period_without_a_refresh(
    user: GraphQLClient, clock: FakeClock, container: Container
) -> None:
    clock.advance(container.settings.session_idle_ttl + 1)
    assert error_codes(await refresh(user, user.refresh)) == ["UNAUTHENTICATED"]
    assert (await user.gql("{ __typename }"))["data"] == {"__typename": "Query"}


async def test_the_database_holds_no_raw_token(user: GraphQLClient, container: Container) -> None:
    await rotate(user)
    secrets = [user.refresh, user.token]
    async with container.db.reader() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            for row in rows:
                for value in row:
                    for secret in secrets:
                        assert secret is not None
                        assert secret not in str(value), f"{table.name} stores a raw token"
                        assert secret[3:] not in str(value), f"{table.name} stores a raw token"


async def test_each_lifecycle_step_writes_one_audit_line_without_tokens(
    sign_in: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graphql_api.audit")
    client = await sign_in("audit@example.com", "sub-audit")
    old = client.refresh
    await rotate(client)
    await refresh(client, old)  # reuse
    events = [(r.event, r.outcome) for r in caplog.records if r.name == "graphql_api.audit"]  # type: ignore[attr-defined]
    assert events == [("login", "success"), ("refresh", "success"), ("refresh", "reuse")]
    for record in caplog.records:
        assert record.client_ip  # type: ignore[attr-defined]
        assert record.session_id  # type: ignore[attr-defined]
        line = record.getMessage() + str(vars(record))
        assert old not in line and str(client.refresh) not in line and str(client.token) not in line
