"""The one place where failures become client errors with a contract code.

Expected failures (``AppError``) keep their message and code; GraphQL's own syntax and
validation errors become BAD_USER_INPUT (without "Did you mean" hints in production);
anything else is logged with the request id and answered "Unexpected error.".
"""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql import GraphQLError

from graphql_api.errors import UNEXPECTED_MESSAGE, AppError

logger = logging.getLogger("graphql_api.errors")

_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)
_GRAPHQL_CODE = "BAD_USER_INPUT"


def client_error(error: GraphQLError, *, request_id: str | None, hide_hints: bool) -> GraphQLError:
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    if isinstance(original, AppError):
        return _rebuild(error, original.message, original.extensions())
    # graphql-core nests its own errors (variable coercion wraps the input error): those
    # are about the request, not a crash.
    if original is None or isinstance(original, GraphQLError):
        if (error.extensions or {}).get("code") in _PASSTHROUGH:
            return error
        message = _SUGGESTION.sub("", error.message) if hide_hints else error.message
        return _rebuild(error, message, {"code": _GRAPHQL_CODE})
    logger.error(
        "unexpected error while resolving %s",
        ".".join(str(p) for p in error.path or ()) or "(operation)",
        exc_info=(type(original), original, original.__traceback__),
        extra={"event": "unexpected_error", "request_id": request_id},
    )
    return _rebuild(error, UNEXPECTED_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"})


_PASSTHROUGH = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
        "PERSISTED_QUERY_NOT_FOUND",
        "TRUSTED_DOCUMENT_REQUIRED",
    }
)


def _rebuild(error: GraphQLError, message: str, extensions: dict[str, Any]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=extensions,
    )
