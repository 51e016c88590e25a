"""Users: who sees an email, who may change a profile or a role, and what deletion does."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from graphql_api.container import Container
from graphql_api.db.models import User
from graphql_api.errors import Forbidden
from graphql_api.records import Role
from graphql_api.repositories import users as users_repo
from graphql_api.services.users import UserChanges
from tests.conftest import AppClient, GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

UPDATE = """
mutation($id: ID!, $input: UpdateUserInput!) {
  updateUser(id: $id, input: $input) { id name pictureUrl role email }
}"""
DELETE = "mutation($id: ID!) { deleteUser(id: $id) }"


async def stored(container: Container, user_id: str | None) -> tuple[str, str | None, Role] | None:
    assert user_id is not None
    async with container.db.reader() as connection:
        rows = await users_repo.records_by_ids(session=connection, ids=[int(user_id)])
    return (rows[0].name, rows[0].picture_url, rows[0].role) if rows else None


async def test_absent_user_is_null(user: GraphQLClient) -> None:
    for missing in ("424242", "x", "-5"):
        data = await user.data("query($id: ID!) { user(id: $id) { id } }", {"id": missing})
        assert data["user"] is None


@pytest.mark.parametrize("who", ["self", "admin"])
async def test_self_and_admin_can_update_a_profile(
    who: str, user: GraphQLClient, admin: GraphQLClient, container: Container
) -> None:
    actor = user if who == "self" else admin
    data = await actor.data(
        UPDATE,
        {
            "id": user.user_id,
            "input": {"name": "Renamed", "pictureUrl": "https://img.example/p.png"},
        },
    )
    assert data["updateUser"]["name"] == "Renamed"
    assert await stored(container, user.user_id) == (
        "Renamed",
        "https://img.example/p.png",
        Role.USER,
    )


async def test_role_change_by_admin_takes_effect_at_once(
    user: GraphQLClient, admin: GraphQLClient, other_user: GraphQLClient
) -> None:
    promote = await admin.data(UPDATE, {"id": user.user_id, "input": {"role": "ADMIN"}})
    assert promote["updateUser"]["role"] == "ADMIN"
    # The promoted user's existing token now carries admin rights...
    query = "query($id: ID!) { user(id: $id) { email } }"
    assert (await user.data(query, {"id": other_user.user_id}))["user"][
        "email"
    ] == "other@example.com"
    await admin.data(UPDATE, {"id": user.user_id, "input": {"role": "USER"}})
    # ...and loses them the moment they are taken away.
    assert (await user.data(query, {"id": other_user.user_id}))["user"]["email"] is None


async def test_invalid_profile_input_is_bad_user_input_and_changes_nothing(
    user: GraphQLClient, container: Container
) -> None:
    before = await stored(container, user.user_id)
    for patch in (
        {"name": "   "},
        {"name": "x" * 101},
        {"name": None},
        {"pictureUrl": "http://insecure.example/p.png"},
        {"pictureUrl": "javascript:alert(1)"},
        {"pictureUrl": "https://" + "a" * 2050 + ".example"},
    ):
        body = await user.gql(UPDATE, {"id": user.user_id, "input": patch})
        assert error_codes(body) == ["BAD_USER_INPUT"], patch
    assert await stored(container, user.user_id) == before


async def test_deleting_yourself_ends_your_tokens_and_categories_at_once(
    user: GraphQLClient, other_user: GraphQLClient, container: Container
) -> None:
    await user.data('mutation { createCategory(input: {name: "Gone soon"}) { id } }')
    assert (await user.data(DELETE, {"id": user.user_id}))["deleteUser"] is True
    assert await stored(container, user.user_id) is None
    assert error_codes(await user.gql("{ me { id } }")) == ["UNAUTHENTICATED"]
    listed = await other_user.data("{ categories { edges { node { name } } } }")
    assert listed["categories"]["edges"] == []
    refreshed = await user.gql(
        "mutation($t: String) { refreshToken(refreshToken: $t) { accessToken } }",
        {"t": user.refresh},
    )
    assert error_codes(refreshed) == ["UNAUTHENTICATED"]


# Fields that read no user row: only the revocation check can refuse the deleted user.
SIGNED_IN_ONLY = ("{ mySessions { id } }", "{ categories { edges { cursor } } }")


async def test_another_process_refuses_a_deleted_users_token_within_one_second(
    user: GraphQLClient, app_client: AppClient
) -> None:
    other_process = await app_client()
    other_process.token = user.token
    assert "errors" not in await other_process.gql(SIGNED_IN_ONLY[0])
    assert (await user.data(DELETE, {"id": user.user_id}))["deleteUser"] is True
    started = time.monotonic()
    while error_codes(await other_process.gql(SIGNED_IN_ONLY[0])) != ["UNAUTHENTICATED"]:
        assert time.monotonic() - started < 1.0, "still accepted after one second"
        await asyncio.sleep(0.05)
    for query in SIGNED_IN_ONLY:
        assert error_codes(await other_process.gql(query)) == ["UNAUTHENTICATED"], query


async def test_the_user_service_itself_refuses_to_change_another_account(
    user: GraphQLClient, other_user: GraphQLClient, container: Container
) -> None:
    # The rule is the service's, decided in its own transaction: a caller that skips the
    # API's permission classes (the CLI, a job) cannot skip it.
    actor, target = int(str(other_user.user_id)), int(str(user.user_id))
    before = await stored(container, user.user_id)
    rename = UserChanges(name="Mallory", set_name=True)
    with pytest.raises(Forbidden):
        await container.users.update(actor_id=actor, user_id=target, changes=rename)
    with pytest.raises(Forbidden):
        await container.users.delete(actor_id=actor, user_id=target)
    assert await stored(container, user.user_id) == before


async def test_admin_can_delete_another_user(
    user: GraphQLClient, admin: GraphQLClient, container: Container
) -> None:
    assert (await admin.data(DELETE, {"id": user.user_id}))["deleteUser"] is True
    assert await stored(container, user.user_id) is None
    assert error_codes(await user.gql("{ me { id } }")) == ["UNAUTHENTICATED"]


async def test_one_id_reads_the_same_record_as_a_batch(container: Container) -> None:
    """``records_by_ids`` has a statement of its own for one id (no expanding IN): held to
    the batch statement's answer, a missing id included."""
    async with container.db.writer() as session:
        now = datetime.now(UTC)
        rows = [
            User(
                google_sub=f"one-{n}",
                email=f"one{n}@example.com",
                name=f"One {n}",
                role=Role.ADMIN if n else Role.USER,
                created_at=now,
                updated_at=now,
            )
            for n in range(2)
        ]
        session.add_all(rows)
        await session.flush()
        ids = [row.id for row in rows]
    async with container.db.reader() as connection:
        batch = await users_repo.records_by_ids(session=connection, ids=[*ids, 424242])
        for record in batch:
            assert await users_repo.records_by_ids(session=connection, ids=[record.id]) == [record]
        assert await users_repo.records_by_ids(session=connection, ids=[424242]) == []
    assert sorted(r.id for r in batch) == sorted(ids)
