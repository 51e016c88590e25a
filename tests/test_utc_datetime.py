"""UTCDateTime hands back aware UTC datetimes whatever the driver gives it (the SQLite
result processor parses text on the hot path of every page, so it has its own fast parse)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from graphql_api.db.models import UTCDateTime

TYPE = UTCDateTime()
SQLITE = TYPE.result_processor(sqlite.dialect(), None)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        # What the bind side writes: naive UTC text, with and without microseconds.
        ("2026-11-30 04:55:07.123456", datetime(2026, 11, 30, 4, 55, 7, 123456, tzinfo=UTC)),
        ("2026-11-30 04:55:07", datetime(2026, 11, 30, 4, 55, 7, tzinfo=UTC)),
        # Text with an offset (written by something else) is converted, not relabelled.
        ("2026-11-30T06:55:07+02:00", datetime(2026, 11, 30, 4, 55, 7, tzinfo=UTC)),
    ],
)
def test_sqlite_text_reads_back_as_aware_utc(stored: str, expected: datetime) -> None:
    value = SQLITE(stored)
    assert value == expected and value.tzinfo is UTC


def test_sqlite_null_stays_null() -> None:
    assert SQLITE(None) is None


@pytest.mark.parametrize(
    "given",
    [
        datetime(2026, 11, 30, 4, 55, 7, tzinfo=UTC),
        datetime(2026, 11, 30, 4, 55, 7),
        datetime(2026, 11, 30, 6, 55, 7, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_driver_datetimes_read_back_as_aware_utc(given: datetime) -> None:
    value = TYPE.process_result_value(given, postgresql.dialect())  # type: ignore[no-untyped-call]
    assert value == datetime(2026, 11, 30, 4, 55, 7, tzinfo=UTC) and value.tzinfo is UTC
