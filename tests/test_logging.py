"""Log lines: readable in development, JSON in production, with every ``extra`` field."""

from __future__ import annotations

import json
import logging
import sys
import time

from graphql_api.logging_config import JsonFormatter, ReadableFormatter, logging_config
from graphql_api.settings import Settings

EXTRA = {"event": "request", "operation": "query Me", "status": 200, "duration_ms": 1.25}


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "graphql_api.http", logging.INFO, __file__, 1, "POST %s", ("/graphql",), None
    )
    made.__dict__.update(extra)
    return made


def test_development_lines_read_as_time_level_logger_message_and_fields() -> None:
    entry = record(**EXTRA, user_id=None, tags=["a", "b"])
    line = ReadableFormatter().format(entry)
    clock = time.strftime("%H:%M:%S", time.localtime(entry.created))
    assert line == (
        f"{clock} INFO graphql_api.http  POST /graphql  event=request "
        'operation="query Me" status=200 duration_ms=1.25 user_id=null tags=["a","b"]'
    )


def test_a_readable_line_carries_its_traceback_below() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record(event="unhandled_error")
        entry.exc_info = sys.exc_info()
    first, *rest = ReadableFormatter().format(entry).splitlines()
    assert first.endswith("POST /graphql  event=unhandled_error")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_production_lines_are_json_objects_with_the_fields() -> None:
    entry = json.loads(JsonFormatter().format(record(**EXTRA)))
    assert entry["message"] == "POST /graphql" and entry["logger"] == "graphql_api.http"
    assert {key: entry[key] for key in EXTRA} == EXTRA


def test_the_formatter_follows_the_environment() -> None:
    def formatter(settings: Settings | None) -> str:
        return str(logging_config(settings)["formatters"]["lines"]["()"])

    assert formatter(Settings(env="development")).endswith(".ReadableFormatter")
    assert formatter(Settings(env="production")).endswith(".JsonFormatter")
    assert formatter(None).endswith(".JsonFormatter")
