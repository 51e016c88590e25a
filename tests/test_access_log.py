"""One access-log line per request: request id, operation, document id, user, outcome and
duration; JSON in production, one readable line in development."""

from __future__ import annotations

import json
import logging

import pytest

from graphql_api.logging_config import JsonFormatter, ReadableFormatter
from tests.conftest import GraphQLClient


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "graphql_api.access"]


async def test_every_request_leaves_one_line_saying_who_did_what_and_how_it_ended(
    user: GraphQLClient, anonymous: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graphql_api.access")
    caplog.clear()
    answer = await user.post("query Me { me { id } }")
    await anonymous.post("{ me { id } }")
    await anonymous.http.post(
        "/graphql", content=b"not json", headers={"content-type": "application/json"}
    )
    ok, refused, malformed = lines(caplog)
    fields = vars(ok)
    assert fields["request_id"] == answer.headers["x-request-id"]
    assert (fields["operation_type"], fields["operation_name"]) == ("query", "Me")
    assert fields["user_id"] == int(user.user_id or 0)
    assert (fields["outcome"], fields["status"]) == ("ok", 200)
    assert fields["duration_ms"] > 0 and fields["document_id"] is None
    assert (vars(refused)["outcome"], vars(refused)["user_id"]) == ("UNAUTHENTICATED", None)
    assert (vars(malformed)["outcome"], vars(malformed)["status"]) == ("refused", 400)


async def test_the_line_is_json_in_production_and_readable_in_development(
    user: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graphql_api.access")
    caplog.clear()
    await user.post("query Me { me { id } }")
    (record,) = lines(caplog)
    entry = json.loads(JsonFormatter().format(record))
    assert {"request_id", "operation_type", "operation_name", "document_id", "user_id",
            "outcome", "duration_ms"} <= set(entry)  # fmt: skip
    readable = ReadableFormatter().format(record)
    assert "\n" not in readable and "query Me ok 200" in readable and "request_id=" in readable
