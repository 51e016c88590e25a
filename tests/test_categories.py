"""Categories: who may create, change and delete them, and what a refusal leaves behind."""

from __future__ import annotations

from typing import Any

import pytest

from graphql_api.container import Container
from graphql_api.repositories import categories as categories_repo
from tests.conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

CREATE = """
mutation($input: CreateCategoryInput!) {
  createCategory(input: $input) { id name description owner { id } createdAt updatedAt }
}"""
UPDATE = """
mutation($id: ID!, $input: UpdateCategoryInput!) {
  updateCategory(id: $id, input: $input) { id name description }
}"""
DELETE = "mutation($id: ID!) { deleteCategory(id: $id) }"


async def create(
    client: GraphQLClient, name: str, description: str | None = None
) -> dict[str, Any]:
    data = await client.data(CREATE, {"input": {"name": name, "description": description}})
    category: dict[str, Any] = data["createCategory"]
    return category


async def stored(container: Container, category_id: str) -> tuple[str, str | None] | None:
    async with container.db.reader() as connection:
        rows = await categories_repo.get_by_ids(session=connection, ids=[int(category_id)])
    return (rows[0].name, rows[0].description) if rows else None


async def test_created_category_belongs_to_the_caller(user: GraphQLClient) -> None:
    category = await create(user, "  Books  ", "Paper ones")
    assert category["name"] == "Books"
    assert category["description"] == "Paper ones"
    assert category["owner"]["id"] == user.user_id


async def test_duplicate_name_ignoring_case_is_bad_input_and_creates_nothing(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    await create(user, "Books")
    for name in ("books", "BOOKS", " Books "):
        body = await other_user.gql(CREATE, {"input": {"name": name}})
        assert error_codes(body) == ["BAD_USER_INPUT"]
    page = await user.data("{ categories { edges { node { name } } } }")
    assert [e["node"]["name"] for e in page["categories"]["edges"]] == ["Books"]


@pytest.mark.parametrize("who", ["owner", "admin"])
async def test_owner_and_admin_can_update_and_delete(
    who: str, user: GraphQLClient, admin: GraphQLClient, container: Container
) -> None:
    category = await create(user, "Old name")
    actor = user if who == "owner" else admin
    updated = await actor.data(
        UPDATE, {"id": category["id"], "input": {"name": "New name", "description": "d"}}
    )
    assert updated["updateCategory"]["name"] == "New name"
    assert await stored(container, category["id"]) == ("New name", "d")
    assert (await actor.data(DELETE, {"id": category["id"]}))["deleteCategory"] is True
    assert await stored(container, category["id"]) is None


@pytest.mark.parametrize("missing_id", ["999999", "0", "-1", "abc", "1e3", "99999999999999999999"])
async def test_missing_category_is_not_found(user: GraphQLClient, missing_id: str) -> None:
    body = await user.gql(UPDATE, {"id": missing_id, "input": {"name": "x"}})
    assert error_codes(body) == ["NOT_FOUND"]
    body = await user.gql(DELETE, {"id": missing_id})
    assert error_codes(body) == ["NOT_FOUND"]
    assert (await user.data("query($id: ID!) { category(id: $id) { id } }", {"id": missing_id}))[
        "category"
    ] is None


async def test_partial_update_changes_only_what_is_given(
    user: GraphQLClient, container: Container
) -> None:
    category = await create(user, "Name", "Description")
    await user.data(UPDATE, {"id": category["id"], "input": {"description": None}})
    assert await stored(container, category["id"]) == ("Name", None)
    await user.data(UPDATE, {"id": category["id"], "input": {"name": "Renamed"}})
    assert await stored(container, category["id"]) == ("Renamed", None)


async def test_renaming_onto_another_name_is_refused_and_changes_nothing(
    user: GraphQLClient, container: Container
) -> None:
    await create(user, "Taken")
    category = await create(user, "Free", "keep")
    body = await user.gql(
        UPDATE, {"id": category["id"], "input": {"name": "TAKEN", "description": "x"}}
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert await stored(container, category["id"]) == ("Free", "keep")


async def test_renaming_to_its_own_name_in_another_case_is_allowed(user: GraphQLClient) -> None:
    category = await create(user, "books")
    renamed = await user.data(UPDATE, {"id": category["id"], "input": {"name": "Books"}})
    assert renamed["updateCategory"]["name"] == "Books"


async def test_categories_can_be_filtered_by_owner(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    await create(user, "A")
    await create(other_user, "B")
    query = "query($o: ID) { categories(ownerId: $o) { edges { node { name owner { id } } } } }"
    data = await user.data(query, {"o": other_user.user_id})
    assert [e["node"]["name"] for e in data["categories"]["edges"]] == ["B"]


async def test_user_categories_field_lists_only_their_categories(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    await create(user, "Mine 1")
    await create(other_user, "Theirs")
    await create(user, "Mine 2")
    data = await other_user.data(
        "query($id: ID!) { user(id: $id) { categories { edges { node { name } } } } }",
        {"id": user.user_id},
    )
    names = [e["node"]["name"] for e in data["user"]["categories"]["edges"]]
    assert names == ["Mine 1", "Mine 2"]
