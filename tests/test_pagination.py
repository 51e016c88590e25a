"""Cursor connections: keyset walks with no gaps or duplicates, and page-size rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graphql_api.container import Container
from graphql_api.db.models import Category, User
from tests.conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

PAGE = """
query($first: Int, $after: String) {
  categories(first: $first, after: $after) {
    edges { cursor node { id name } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def seed(container: Container, owner_id: int, count: int, prefix: str = "c") -> None:
    now = datetime.now(UTC)
    async with container.db.writer() as session:
        session.add_all(
            Category(
                name=f"{prefix}{n}",
                name_key=f"{prefix}{n}",
                owner_id=owner_id,
                created_at=now,
                updated_at=now,
            )
            for n in range(count)
        )


async def walk(
    client: GraphQLClient,
    first: int,
    *,
    query: str = PAGE,
    path: tuple[str, ...] = ("categories",),
    field: str = "name",
) -> list[str]:
    """Follow ``endCursor`` until ``hasNextPage`` is false; the ``field`` of every node."""
    values: list[str] = []
    after = None
    for _ in range(100):
        page = await client.data(query, {"first": first, "after": after})
        for key in path:
            page = page[key]
        values += [e["node"][field] for e in page["edges"]]
        if page["edges"] and "cursor" in page["edges"][-1]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return values
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize("first", [1, 7, 45, 100])
async def test_walking_all_pages_visits_every_category_once(
    user: GraphQLClient, container: Container, first: int
) -> None:
    assert user.user_id is not None
    await seed(container, int(user.user_id), 45)
    names = await walk(user, first)
    assert sorted(names) == sorted(f"c{n}" for n in range(45))
    assert len(names) == len(set(names))


async def test_rows_deleted_during_a_walk_leave_no_gap_in_the_rest(
    user: GraphQLClient, container: Container
) -> None:
    assert user.user_id is not None
    await seed(container, int(user.user_id), 10)
    page = (await user.data(PAGE, {"first": 4}))["categories"]
    first_ids = [e["node"]["id"] for e in page["edges"]]
    for category_id in first_ids:
        await user.data("mutation($id: ID!) { deleteCategory(id: $id) }", {"id": category_id})
    rest = await user.data(PAGE, {"first": 100, "after": page["pageInfo"]["endCursor"]})
    assert len(rest["categories"]["edges"]) == 6


@pytest.mark.parametrize("first", [-1, 101, 1000, 2**31, -(2**31) - 1, 10**30])
async def test_page_size_outside_0_to_100_is_bad_user_input(
    user: GraphQLClient, first: int
) -> None:
    for query in (
        "query($f: Int) { categories(first: $f) { edges { cursor } } }",
        "query($f: Int) { users(first: $f) { edges { cursor } } }",
        "query($f: Int) { me { categories(first: $f) { edges { cursor } } } }",
    ):
        assert error_codes(await user.gql(query, {"f": first})) == ["BAD_USER_INPUT"]


async def test_first_zero_returns_no_edges_but_says_whether_more_exist(
    user: GraphQLClient, container: Container
) -> None:
    assert user.user_id is not None
    await seed(container, int(user.user_id), 2)
    page = (await user.data(PAGE, {"first": 0}))["categories"]
    assert page["edges"] == [] and page["pageInfo"] == {"hasNextPage": True, "endCursor": None}


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "YzE6",
        "Yzg6MQ==",
        "x" * 100,
        "x" * 1000,
        "%%%",
        "YzE6LTE=",
        "YzE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ==",
    ],
)
async def test_malformed_cursor_is_bad_user_input(user: GraphQLClient, cursor: str) -> None:
    body = await user.gql(PAGE, {"first": 5, "after": cursor})
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_users_and_user_categories_paginate_the_same_way(
    user: GraphQLClient, container: Container
) -> None:
    now = datetime.now(UTC)
    async with container.db.writer() as session:
        session.add_all(
            User(
                google_sub=f"g{n}", email=f"{n}@x.org", name=f"u{n}", created_at=now, updated_at=now
            )
            for n in range(12)
        )
    users = (
        "query($first: Int, $after: String) { users(first: $first, after: $after) "
        "{ edges { node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    seen = await walk(user, 5, query=users, path=("users",), field="id")
    assert len(seen) == 13 == len(set(seen))

    assert user.user_id is not None
    await seed(container, int(user.user_id), 9, prefix="own")
    own = (
        "query($first: Int, $after: String) { me { categories(first: $first, after: $after) "
        "{ edges { node { name } } pageInfo { hasNextPage endCursor } } } }"
    )
    names = await walk(user, 4, query=own, path=("me", "categories"))
    assert names == [f"own{n}" for n in range(9)]
