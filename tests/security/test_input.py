"""Input: lengths, schemes, literal storage of hostile text, and ids that are not ids."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GraphQLClient, error_codes

pytestmark = pytest.mark.both_databases

CREATE = (
    "mutation($input: CreateCategoryInput!) "
    "{ createCategory(input: $input) { id name description } }"
)
UPDATE_USER = (
    "mutation($id: ID!, $input: UpdateUserInput!) "
    "{ updateUser(id: $id, input: $input) { name pictureUrl } }"
)


async def create(client: GraphQLClient, **fields: Any) -> dict[str, Any]:
    return await client.gql(CREATE, {"input": {"name": "n", **fields}})


async def test_names_are_trimmed(user: GraphQLClient) -> None:
    body = await create(user, name="  \t Spaced out  ")
    assert body["data"]["createCategory"]["name"] == "Spaced out"


@pytest.mark.parametrize(
    "name", ["", "   ", "x" * 101, "bad\u0000name", "bell\u0007", "rtl\u202eevil"]
)
async def test_invalid_category_names_are_refused(user: GraphQLClient, name: str) -> None:
    body = await create(user, name=name)
    assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_name_of_100_characters_and_description_of_1000_are_accepted(
    user: GraphQLClient,
) -> None:
    body = await create(user, name="n" * 100, description="d" * 1000)
    assert "errors" not in body, body


async def test_description_over_1000_characters_is_refused(user: GraphQLClient) -> None:
    assert error_codes(await create(user, description="d" * 1001)) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    "description", ["nul\u0000", "bell\u0007", "esc\u001b[31m", "rtl\u202eevil"]
)
async def test_descriptions_with_control_characters_are_refused(
    user: GraphQLClient, description: str
) -> None:
    assert error_codes(await create(user, description=description)) == ["BAD_USER_INPUT"]


async def test_descriptions_keep_line_breaks_and_tabs(user: GraphQLClient) -> None:
    text = "Line one\r\nline two\n\tindented"
    assert (await create(user, description=text))["data"]["createCategory"]["description"] == text


@pytest.mark.parametrize(
    "text",
    [
        "Robert'); DROP TABLE categories;--",
        "' OR '1'='1",
        "%_\\ LIKE wildcards",
        '"; SELECT pg_sleep(5); --',
        "💥 ünïcödé 名前 שלום",
        # Joiners are part of real text: emoji sequences (ZWJ) and Persian words (ZWNJ).
        "Family 👨\u200d👩\u200d👧",
        "می\u200cخواهم",
        "<script>alert(1)</script>",
        "{{7*7}} ${7*7}",
    ],
)
async def test_hostile_text_is_stored_literally(user: GraphQLClient, text: str) -> None:
    body = await create(user, name=text, description=f"about {text}")
    created = body["data"]["createCategory"]
    data = await user.data(
        "query($id: ID!) { category(id: $id) { name description } }", {"id": created["id"]}
    )
    assert data["category"] == {"name": text, "description": f"about {text}"}


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "https://",
        "https://user:pass@example.com/a.png",
        "https://example.com/a b.png",
        "//example.com/a.png",
        "https://example.com/" + "a" * 2040,
    ],
)
async def test_picture_url_must_be_https_and_short(user: GraphQLClient, url: str) -> None:
    body = await user.gql(UPDATE_USER, {"id": user.user_id, "input": {"pictureUrl": url}})
    assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_user_name_rules_apply_to_profiles(user: GraphQLClient) -> None:
    ok = await user.gql(
        UPDATE_USER,
        {
            "id": user.user_id,
            "input": {"name": "  Ada  ", "pictureUrl": "https://example.com/a.png"},
        },
    )
    assert ok["data"]["updateUser"] == {"name": "Ada", "pictureUrl": "https://example.com/a.png"}
    for name in ("", "x" * 101):
        body = await user.gql(UPDATE_USER, {"id": user.user_id, "input": {"name": name}})
        assert error_codes(body) == ["BAD_USER_INPUT"], body


NOT_IDS = [
    "abc",
    "-1",
    "0",
    "1e3",
    "1.5",
    " 1",
    "１",
    "",
    "9" * 19,
    "9" * 400,
    "0x10",
    "1; DROP TABLE users",
]


@pytest.mark.parametrize("bad_id", NOT_IDS)
async def test_ids_that_are_not_ids_are_never_a_crash(user: GraphQLClient, bad_id: str) -> None:
    reads = await user.gql(
        "query($id: ID!) { user(id: $id) { id } category(id: $id) { id } "
        "categories(ownerId: $id) { edges { node { id } } } }",
        {"id": bad_id},
    )
    assert reads["data"] == {"user": None, "category": None, "categories": {"edges": []}}, reads
    for mutation in (
        'updateCategory(id: $id, input: {name: "x"}) { id }',
        "deleteCategory(id: $id)",
        'updateUser(id: $id, input: {name: "x"}) { id }',
        "deleteUser(id: $id)",
        "revokeSession(id: $id)",
    ):
        body = await user.gql(f"mutation($id: ID!) {{ {mutation} }}", {"id": bad_id})
        assert set(error_codes(body)) <= {"NOT_FOUND", "BAD_USER_INPUT", "FORBIDDEN"}, body
        assert error_codes(body), body
    assert (await user.data("{ me { id } }"))["me"]["id"] == user.user_id


# U+FDFA is one character whose NFKC form is eighteen: the longest expansion there is.
# A name the rules accept must store on both databases, whatever its key grows to.
EXPANDING = "\ufdfa"


@pytest.mark.parametrize("count", [23, 100])
async def test_names_whose_normal_form_outgrows_the_name_are_stored(
    user: GraphQLClient, count: int
) -> None:
    name = EXPANDING * count
    body = await create(user, name=name)
    assert "errors" not in body, body
    data = await user.data(
        "query($id: ID!) { category(id: $id) { name } }",
        {"id": body["data"]["createCategory"]["id"]},
    )
    assert data["category"]["name"] == name
    assert error_codes(await create(user, name=name)) == ["BAD_USER_INPUT"]


async def test_renaming_to_a_name_whose_normal_form_outgrows_it_is_stored(
    user: GraphQLClient,
) -> None:
    created = (await create(user, name="short"))["data"]["createCategory"]
    body = await user.gql(
        "mutation($id: ID!, $name: String!) "
        "{ updateCategory(id: $id, input: {name: $name}) { name } }",
        {"id": created["id"], "name": EXPANDING * 100},
    )
    assert body["data"]["updateCategory"]["name"] == EXPANDING * 100, body


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("Straße", "STRASSE", id="sharp-s"),
        pytest.param("\ufb01le", "FILE", id="fi-ligature"),
        pytest.param("Ｆｕｌｌｗｉｄｔｈ", "fullwidth", id="fullwidth"),
        pytest.param("ΣΊΣΥΦΟΣ", "σίσυφος", id="final-sigma"),
        pytest.param(EXPANDING * 23, EXPANDING * 23, id="expanding"),
    ],
)
async def test_names_equal_ignoring_case_and_compatibility_forms_are_duplicates(
    user: GraphQLClient, first: str, second: str
) -> None:
    assert "errors" not in await create(user, name=first)
    assert error_codes(await create(user, name=second)) == ["BAD_USER_INPUT"]
