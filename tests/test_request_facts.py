"""The GraphQL endpoint reads the request's facts in one pass over the raw headers; this
holds that fast path to what Starlette's own ``request.headers`` / ``request.cookies``
give (the slow path it replaced), header by header, on awkward requests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from graphql_api.api.context import RequestFacts
from graphql_api.web.client_ip import client_ip, parse_proxies
from graphql_api.web.graphql_endpoint import REFRESH_COOKIE, TRANSPORT_HEADER, GraphQLEndpoint

PROXIES = parse_proxies(["10.0.0.0/8"])


def reference(request: Request, request_id: str) -> RequestFacts:
    """The facts as Starlette's header and cookie accessors read them."""
    headers = request.headers
    peer = request.client.host if request.client else None
    return RequestFacts(
        request_id=request_id,
        client_ip=client_ip(peer, headers.getlist("x-forwarded-for"), PROXIES),
        user_agent=headers.get("user-agent"),
        authorization=headers.get("authorization"),
        refresh_cookie=request.cookies.get(REFRESH_COOKIE),
        cookie_transport=headers.get(TRANSPORT_HEADER, "").lower() == "cookie",
        origin=headers.get("origin"),
        addressed_origin=f"{request.url.scheme}://{headers.get('host', '')}",
    )


def request_with(headers: list[tuple[bytes, bytes]], scheme: str = "http") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "scheme": scheme,
        "server": ("api.example", 443 if scheme == "https" else 80),
        "client": ("10.1.2.3", 5555),
        "headers": headers,
    }
    return Request(scope)


def fast(request: Request) -> RequestFacts:
    return GraphQLEndpoint.facts(SimpleNamespace(proxies=PROXIES), request, "rid")  # type: ignore[arg-type]


CASES = {
    "none": [],
    "everything": [
        (b"host", b"api.example"),
        (b"user-agent", b"curl/8"),
        (b"authorization", b"Bearer abc.def.ghi"),
        (b"cookie", f"a=1; {REFRESH_COOKIE}=rt_xyz; b=2".encode()),
        (TRANSPORT_HEADER.encode(), b"Cookie"),
        (b"origin", b"https://app.example"),
        (b"x-forwarded-for", b"203.0.113.9"),
    ],
    "repeated lines": [
        (b"authorization", b"Bearer first"),
        (b"authorization", b"Bearer second"),
        (b"x-forwarded-for", b"198.51.100.1"),
        (b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
        (b"host", b"one.example"),
        (b"host", b"two.example"),
        (b"cookie", b"x=1"),
        (b"cookie", f"{REFRESH_COOKIE}=rt_second".encode()),
    ],
    "latin-1 bytes": [(b"user-agent", "caf\xe9".encode("latin-1")), (b"origin", b"null")],
    "empty values": [(b"cookie", b""), (b"authorization", b""), (TRANSPORT_HEADER.encode(), b"")],
}


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("case", CASES)
def test_the_one_pass_reads_what_starlette_reads(case: str, scheme: str) -> None:
    request = request_with(CASES[case], scheme)
    assert fast(request) == reference(request, "rid")


NAMES = st.sampled_from(
    [
        b"host",
        b"user-agent",
        b"authorization",
        b"cookie",
        b"origin",
        b"x-forwarded-for",
        TRANSPORT_HEADER.encode(),
        b"x-other",
    ]
)
VALUES = st.binary(max_size=40).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_any_headers_read_the_same_both_ways(headers: list[tuple[bytes, bytes]]) -> None:
    request = request_with(headers)
    assert fast(request) == reference(request, "rid")
