"""Authorization attacks: anonymous access, other people's objects, nested data, mass assignment.

The lists of fields come from the schema itself, so a field added later without a
guard fails here instead of being forgotten.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)
from strawberry.permission import PermissionExtension

from graphql_api.api.permissions import IsAuthenticated
from graphql_api.api.schema import build_schema
from tests.conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

SCHEMA = build_schema()._schema
assert SCHEMA.query_type is not None and SCHEMA.mutation_type is not None
QUERY_FIELDS = SCHEMA.query_type.fields
MUTATION_FIELDS = SCHEMA.mutation_type.fields
OBJECT_LEVEL_MUTATIONS = sorted(
    name for name, field in MUTATION_FIELDS.items() if "id" in field.args
)

CATEGORY = (
    "mutation($input: CreateCategoryInput!) "
    "{ createCategory(input: $input) { id name description owner { id } } }"
)
READ_USER = "query($id: ID!) { user(id: $id) { id name pictureUrl role } }"


def literal(type_: GraphQLInputType) -> str:
    """A value for a required argument: the smallest thing that passes validation."""
    named = get_named_type(type_)
    if isinstance(named, GraphQLInputObjectType):
        required = [
            f"{name}: {literal(field.type)}"
            for name, field in named.fields.items()
            if isinstance(field.type, GraphQLNonNull)
        ]
        return "{" + ", ".join(required) + "}"
    if isinstance(named, GraphQLEnumType):
        return str(next(iter(named.values)))
    assert isinstance(named, GraphQLScalarType)
    return {"ID": '"1"', "String": '"x"', "Int": "1", "Boolean": "true"}[named.name]


def call(name: str, field: GraphQLField) -> str:
    args = [
        f"{arg}: {literal(spec.type)}"
        for arg, spec in field.args.items()
        if isinstance(spec.type, GraphQLNonNull)
    ]
    selection = (
        " { __typename }" if isinstance(get_named_type(field.type), GraphQLObjectType) else ""
    )
    return f"{name}{'(' + ', '.join(args) + ')' if args else ''}{selection}"


async def create_category(
    client: GraphQLClient, name: str, description: str = "d"
) -> dict[str, Any]:
    data = await client.data(CATEGORY, {"input": {"name": name, "description": description}})
    category: dict[str, Any] = data["createCategory"]
    return category


# --- anonymous -------------------------------------------------------------------


def authenticated_guard(field: GraphQLField) -> bool:
    """Whether the field's permission extensions include ``IsAuthenticated``."""
    definition = field.extensions["strawberry-definition"]
    return any(
        isinstance(permission, IsAuthenticated)
        for extension in definition.extensions
        if isinstance(extension, PermissionExtension)
        for permission in extension.permissions
    )


def test_every_root_field_but_sign_in_has_an_authenticated_guard() -> None:
    # The anonymous calls below cannot see a missing guard on a mutation whose resolver
    # calls ``require_user()``: it answers UNAUTHENTICATED just the same. Read the guards.
    roots = [SCHEMA.query_type, SCHEMA.mutation_type, SCHEMA.subscription_type]
    unguarded = [
        f"{root.name}.{name}"
        for root in roots
        if root is not None
        for name, field in root.fields.items()
        if not authenticated_guard(field)
    ]
    # They take credentials (a Google ID token, a refresh token) instead of a signed-in caller.
    assert unguarded == ["Mutation.googleLogin", "Mutation.refreshToken"]


@pytest.mark.parametrize("name", sorted(QUERY_FIELDS))
async def test_every_query_field_refuses_anonymous_callers(
    anonymous: GraphQLClient, name: str
) -> None:
    body = await anonymous.gql("{ " + call(name, QUERY_FIELDS[name]) + " }")
    # Nullable fields answer null beside the error; nothing else comes back.
    assert body["data"] is None or set(body["data"].values()) == {None}, body
    assert error_codes(body) == ["UNAUTHENTICATED"], body


@pytest.mark.parametrize("name", sorted(MUTATION_FIELDS))
async def test_every_mutation_refuses_anonymous_callers(
    anonymous: GraphQLClient, user: GraphQLClient, name: str
) -> None:
    category = await create_category(user, "Anonymous target")
    before = await user.data("{ me { id name } categories { edges { node { id name } } } }")
    mutation = (
        "mutation { "
        + call(name, MUTATION_FIELDS[name]).replace('"1"', f'"{category["id"]}"')
        + " }"
    )
    body = await anonymous.gql(mutation)
    # googleLogin and refreshToken are public, but without valid credentials they too
    # answer UNAUTHENTICATED.
    assert body["data"] is None, body
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    after = await user.data("{ me { id name } categories { edges { node { id name } } } }")
    assert after == before


# --- other people's objects ---------------------------------------------------------


def test_the_object_level_mutations_are_the_ones_tested_below() -> None:
    assert OBJECT_LEVEL_MUTATIONS == [
        "deleteCategory",
        "deleteUser",
        "revokeSession",
        "updateCategory",
        "updateUser",
    ]


def _owned_mutations() -> list[str]:
    """``update<T>``/``delete<T>`` for every type ``T`` that ``create<T>`` gives its caller."""
    owned = [name.removeprefix("create") for name in MUTATION_FIELDS if name.startswith("create")]
    return [
        f"{verb}{type_name}"
        for type_name in owned
        for verb in ("update", "delete")
        if f"{verb}{type_name}" in MUTATION_FIELDS
    ]


OWNED_MUTATIONS = _owned_mutations()


def every_field(type_: GraphQLInputType, text: str) -> str:
    """A value for an input with every field set (strings to ``text``): a real change."""
    named = get_named_type(type_)
    if isinstance(named, GraphQLInputObjectType):
        fields = [
            f"{name}: {every_field(field.type, text)}" for name, field in named.fields.items()
        ]
        return "{" + ", ".join(fields) + "}"
    if isinstance(named, GraphQLScalarType) and named.name == "String":
        return f'"{text}"'
    return literal(type_)


def read_query(type_name: str) -> str:
    """The query reading one ``type_name`` by id, with every leaf field."""
    object_type = SCHEMA.type_map[type_name]
    assert isinstance(object_type, GraphQLObjectType)
    leaves = " ".join(
        name
        for name, field in object_type.fields.items()
        if not isinstance(get_named_type(field.type), GraphQLObjectType) and not field.args
    )
    root = type_name[0].lower() + type_name[1:]
    assert root in QUERY_FIELDS, f"no query field {root}(id:) to read a {type_name} back"
    return f"query($id: ID!) {{ {root}(id: $id) {{ {leaves} }} }}"


def test_every_owned_type_is_covered() -> None:
    assert OWNED_MUTATIONS == ["updateCategory", "deleteCategory"]


@pytest.mark.parametrize("mutation", OWNED_MUTATIONS)
async def test_another_user_cannot_change_or_delete_what_they_do_not_own(
    user: GraphQLClient, other_user: GraphQLClient, mutation: str
) -> None:
    verb = "update" if mutation.startswith("update") else "delete"
    type_name = mutation.removeprefix(verb)
    create = MUTATION_FIELDS[f"create{type_name}"]
    created = await user.data(
        f"mutation {{ create{type_name}(input: {every_field(create.args['input'].type, 'Mine')}) "
        "{ id } }"
    )
    object_id = created[f"create{type_name}"]["id"]
    read = read_query(type_name)
    before = await user.data(read, {"id": object_id})
    field = MUTATION_FIELDS[mutation]
    arguments = "id: $id"
    if "input" in field.args:
        arguments += f", input: {every_field(field.args['input'].type, 'Stolen')}"
    selection = (
        " { __typename }" if isinstance(get_named_type(field.type), GraphQLObjectType) else ""
    )
    body = await other_user.gql(
        f"mutation($id: ID!) {{ {mutation}({arguments}){selection} }}", {"id": object_id}
    )
    assert error_codes(body) == ["FORBIDDEN"] and body["data"] is None, body
    assert await user.data(read, {"id": object_id}) == before


async def test_another_user_cannot_update_a_profile(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    before = await user.data(READ_USER, {"id": user.user_id})
    for change in (
        '{name: "Pwned"}',
        '{pictureUrl: "https://evil.example/x.png"}',
        "{role: ADMIN}",
    ):
        body = await other_user.gql(
            f"mutation($id: ID!) {{ updateUser(id: $id, input: {change}) {{ id }} }}",
            {"id": user.user_id},
        )
        assert error_codes(body) == ["FORBIDDEN"], body
    assert await user.data(READ_USER, {"id": user.user_id}) == before


async def test_another_user_cannot_delete_a_user(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    body = await other_user.gql("mutation($id: ID!) { deleteUser(id: $id) }", {"id": user.user_id})
    assert error_codes(body) == ["FORBIDDEN"], body
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id


async def test_another_user_cannot_revoke_someone_elses_session(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    sessions = (await user.data("{ mySessions { id current } }"))["mySessions"]
    for session in sessions:
        body = await other_user.gql(
            "mutation($id: ID!) { revokeSession(id: $id) }", {"id": session["id"]}
        )
        # Someone else's session looks exactly like a missing one.
        assert error_codes(body) == ["NOT_FOUND"], body
    assert (await user.data("{ mySessions { id current } }"))["mySessions"] == sessions


# --- nested fields ------------------------------------------------------------------


async def test_email_is_null_for_everyone_but_the_user_and_admins(
    user: GraphQLClient, other_user: GraphQLClient, admin: GraphQLClient
) -> None:
    category = await create_category(user, "Shown")
    query = """query($id: ID!, $cat: ID!) {
      user(id: $id) { email }
      category(id: $cat) { owner { email } }
      users(first: 100) { edges { node { id email } } }
      categories(first: 100) { edges { node { owner { id email } } } }
    }"""
    variables = {"id": user.user_id, "cat": category["id"]}
    seen_by_other = await other_user.data(query, variables)
    assert seen_by_other["user"]["email"] is None
    assert seen_by_other["category"]["owner"]["email"] is None
    emails = {e["node"]["id"]: e["node"]["email"] for e in seen_by_other["users"]["edges"]}
    assert emails == {
        uid: (None if uid != other_user.user_id else "other@example.com") for uid in emails
    }
    assert {e["node"]["owner"]["email"] for e in seen_by_other["categories"]["edges"]} == {None}
    seen_by_admin = await admin.data(query, variables)
    assert seen_by_admin["user"]["email"] == "user@example.com"
    assert seen_by_admin["category"]["owner"]["email"] == "user@example.com"
    seen_by_self = await user.data(query, variables)
    assert seen_by_self["category"]["owner"]["email"] == "user@example.com"


async def test_email_of_others_is_null_through_aliases_and_fragments(
    user: GraphQLClient, other_user: GraphQLClient
) -> None:
    query = """query($id: ID!) {
      a: user(id: $id) { ...Mail }
      b: user(id: $id) { ... on User { email } }
    }
    fragment Mail on User { mail: email }"""
    data = await other_user.data(query, {"id": user.user_id})
    assert data == {"a": {"mail": None}, "b": {"email": None}}


# --- mass assignment ----------------------------------------------------------------


def test_inputs_offer_no_owner_id_or_timestamps() -> None:
    fields = {
        name: set(type_.fields)
        for name, type_ in SCHEMA.type_map.items()
        if isinstance(type_, GraphQLInputObjectType)
    }
    assert fields == {
        "CreateCategoryInput": {"name", "description"},
        "UpdateCategoryInput": {"name", "description"},
        "UpdateUserInput": {"name", "pictureUrl", "role"},
    }


@pytest.mark.parametrize("extra", ["ownerId", "owner", "id", "createdAt", "nameKey", "role"])
async def test_unknown_input_fields_are_refused(
    user: GraphQLClient, other_user: GraphQLClient, extra: str
) -> None:
    body = await user.gql(CATEGORY, {"input": {"name": "Mass", extra: other_user.user_id}})
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    literal_body = await user.gql(
        f'mutation {{ createCategory(input: {{name: "Mass", {extra}: "1"}}) {{ id }} }}'
    )
    assert error_codes(literal_body) == ["BAD_USER_INPUT"], literal_body
    assert (await user.data("{ categories { edges { node { id } } } }"))["categories"][
        "edges"
    ] == []


async def test_users_cannot_make_themselves_admin_and_the_refused_change_changes_nothing(
    user: GraphQLClient,
) -> None:
    before = await user.data(READ_USER, {"id": user.user_id})
    body = await user.gql(
        'mutation($id: ID!) { updateUser(id: $id, input: {name: "X", role: ADMIN}) { role } }',
        {"id": user.user_id},
    )
    assert error_codes(body) == ["FORBIDDEN"], body
    # Neither the role nor the name that came with it.
    assert await user.data(READ_USER, {"id": user.user_id}) == before
