"""The expected failures of the service, each carrying its contract error code.

Hierarchy::

    AppError                 base; ``code`` is the contract's errors[].extensions.code
    ├── Unauthenticated      no, invalid, expired or revoked credentials
    ├── Forbidden            authenticated, but not allowed
    ├── NotFound             the object does not exist (or is not yours to see)
    ├── BadUserInput         validation failed
    ├── RateLimited          too many attempts; ``retry_after`` seconds
    └── ServiceUnavailable   a dependency the request needs is down or too slow;
                             ``retry_after`` seconds (HTTP 503 when nothing ran)

Anything that is not an ``AppError`` is unexpected: it is logged server-side and
the client only ever sees ``INTERNAL_SERVER_ERROR`` / "Unexpected error.".
"""

from __future__ import annotations

from typing import Any

UNEXPECTED_MESSAGE = "Unexpected error."


class AppError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    default_message = UNEXPECTED_MESSAGE

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def extensions(self) -> dict[str, Any]:
        return {"code": self.code}


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required."


class Forbidden(AppError):
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this."


class NotFound(AppError):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(AppError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def extensions(self) -> dict[str, Any]:
        ext = super().extensions()
        if self.field:
            ext["field"] = self.field
        return ext


class RateLimited(AppError):
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later."

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many attempts; retry after {retry_after} seconds.")
        self.retry_after = retry_after

    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, "retryAfter": self.retry_after}


class ServiceUnavailable(AppError):
    code = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def extensions(self) -> dict[str, Any]:
        return {"code": self.code, "retryAfter": self.retry_after}
