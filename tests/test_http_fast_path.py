"""POST /graphql skips FastAPI's router: the answers stay those of the full stack."""

from __future__ import annotations

import re

from tests.conftest import GraphQLClient

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = (
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "cross-origin-opener-policy",
    "content-security-policy",
)


async def test_every_response_gets_its_own_well_formed_request_id(
    anonymous: GraphQLClient,
) -> None:
    ids = [(await anonymous.post("{ __typename }")).headers["x-request-id"] for _ in range(20)]
    assert len(set(ids)) == len(ids)
    assert all(REQUEST_ID.match(request_id) for request_id in ids)


async def test_a_well_formed_client_request_id_is_kept_and_a_bad_one_replaced(
    anonymous: GraphQLClient,
) -> None:
    kept = await anonymous.post("{ __typename }", headers={"x-request-id": "trace.42-a_b"})
    assert kept.headers["x-request-id"] == "trace.42-a_b"
    replaced = await anonymous.post("{ __typename }", headers={"x-request-id": "a b\\c"})
    assert REQUEST_ID.match(replaced.headers["x-request-id"])
    assert replaced.headers["x-request-id"] != "a b\\c"


async def test_graphql_answers_carry_the_same_security_headers_as_routed_ones(
    anonymous: GraphQLClient,
) -> None:
    graphql = await anonymous.post("{ __typename }")
    routed = await anonymous.http.get("/healthz")
    for name in SECURITY_HEADERS:
        assert graphql.headers[name] == routed.headers[name], name


async def test_other_methods_and_paths_still_go_through_the_router(
    anonymous: GraphQLClient,
) -> None:
    assert (await anonymous.http.put("/graphql", json={})).status_code == 405
    trailing = await anonymous.http.post("/graphql/", json={"query": "{ __typename }"})
    assert trailing.status_code in (307, 404, 405)
    for name in SECURITY_HEADERS:
        assert name in trailing.headers, name
