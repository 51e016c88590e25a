"""X-Forwarded-For sent as several header lines: the client must not choose its own
rate-limit key by putting a line of its own in front of the one the proxy adds."""

from __future__ import annotations

import secrets
from pathlib import Path

from graphql_api.web.client_ip import client_ip, parse_proxies
from tests.conftest import AppClient, error_codes

BAD_LOGIN = 'mutation { googleLogin(idToken: "not-a-google-token") { accessToken } }'
# httpx.ASGITransport connects from 127.0.0.1: that is the trusted proxy here.
PROXY = "127.0.0.1/32"
PROXIES = parse_proxies(["10.0.0.0/8"])


def random_ip() -> str:
    return ".".join(str(secrets.randbelow(254) + 1) for _ in range(4))


async def test_a_forged_first_header_line_does_not_choose_the_rate_limit_key(
    app_client: AppClient, keys_file: Path
) -> None:
    settings = {
        "env": "production",
        "jwt_keys_file": keys_file,
        "trusted_documents": "off",
        "trusted_proxies": [PROXY],
        "login_rate_limit": "3/minute",
    }
    client = await app_client(**settings)
    codes = []
    for _ in range(6):
        # The attacker's own line first, then the line the proxy appended.
        headers = [("x-forwarded-for", random_ip()), ("x-forwarded-for", "198.51.100.7")]
        response = await client.http.post("/graphql", json={"query": BAD_LOGIN}, headers=headers)
        codes.extend(error_codes(response.json()))
    assert codes == ["UNAUTHENTICATED"] * 3 + ["RATE_LIMITED"] * 3


def test_every_header_line_counts_in_order_as_one_list() -> None:
    assert client_ip("10.0.0.2", ["6.6.6.6", "1.2.3.4"], PROXIES) == "1.2.3.4"
    assert client_ip("10.0.0.2", ["6.6.6.6, 7.7.7.7", "1.2.3.4, 10.0.0.9"], PROXIES) == "1.2.3.4"
    assert client_ip("10.0.0.2", ["1.2.3.4", "10.0.0.7", "10.0.0.9"], PROXIES) == "1.2.3.4"


def test_forwarded_for_from_an_untrusted_peer_is_ignored_on_every_line() -> None:
    assert client_ip("203.0.113.9", ["1.2.3.4", "5.6.7.8"], PROXIES) == "203.0.113.9"
    assert client_ip("203.0.113.9", ["1.2.3.4"], ()) == "203.0.113.9"


def test_garbage_hops_stop_the_walk_at_the_last_trusted_address() -> None:
    # Beyond an unreadable hop nothing can be trusted: the proxy's address is the key.
    assert client_ip("10.0.0.2", ["1.2.3.4", "not-an-ip"], PROXIES) == "10.0.0.2"
    assert client_ip("10.0.0.2", ["1.2.3.4", "not-an-ip, 10.0.0.3"], PROXIES) == "10.0.0.3"
    # Empty lines and empty list items are not hops.
    assert client_ip("10.0.0.2", ["", "1.2.3.4,, ", " "], PROXIES) == "1.2.3.4"
    assert client_ip("10.0.0.2", [], PROXIES) == "10.0.0.2"


def test_an_all_trusted_chain_answers_its_outermost_address() -> None:
    assert client_ip("10.0.0.2", ["10.0.0.5", "10.0.0.4"], PROXIES) == "10.0.0.5"
