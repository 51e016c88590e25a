"""Cursor connections over keyset pagination (ordered by id)."""

from __future__ import annotations

import base64
import binascii

from graphql_api.errors import BadUserInput

MAX_PAGE = 100
_PREFIX = "c1:"


def page_size(first: int | None) -> int:
    if first is None:
        return 20
    if first < 0 or first > MAX_PAGE:
        raise BadUserInput(f"first must be between 0 and {MAX_PAGE}.", field="first")
    return first


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{row_id}".encode()).decode("ascii")


def decode_cursor(cursor: object) -> int | None:
    """The id after which a page starts; None for the first page (no or null cursor)."""
    if not isinstance(cursor, str):
        return None
    try:
        if len(cursor) > 64:
            raise ValueError
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("after is not a valid cursor.", field="after") from None
    value = text.removeprefix(_PREFIX)
    if value == text or not value.isdigit() or len(value) > 18:
        raise BadUserInput("after is not a valid cursor.", field="after")
    return int(value)


def parse_id(value: str) -> int | None:
    """A database id from a GraphQL ID; None when it cannot name any row."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    number = int(value)
    return number if number > 0 else None
