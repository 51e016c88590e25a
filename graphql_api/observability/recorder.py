"""The recorder the layers report events to, and the one that does nothing (metrics off).

Services, the HTTP endpoint and the WebSocket transport get a ``Recorder`` injected; the
wiring hands them ``PrometheusMetrics`` when ``METRICS=true`` and ``NULL_RECORDER``
otherwise. Every argument is a value from a closed set (an outcome, a rule, a reason, a
close code), never a user id or a query's text: each is a metric label.
"""

from __future__ import annotations

from typing import Protocol


class OperationOutcome(Protocol):
    """What the engine answered one request (``engine.Result`` has these attributes)."""

    @property
    def operation_type(self) -> str | None: ...

    @property
    def operation_name(self) -> str | None: ...

    @property
    def document_id(self) -> str | None: ...

    @property
    def trusted(self) -> bool: ...

    @property
    def limit_rule(self) -> str | None: ...

    @property
    def codes(self) -> list[str]: ...


class Recorder(Protocol):
    def request(self, outcome: OperationOutcome | None, status: int, seconds: float) -> None:
        """One GraphQL request answered with HTTP ``status`` after ``seconds``;
        ``outcome`` is None when it was refused before the engine saw it."""

    def login(self, outcome: str) -> None:
        """success, rejected, replayed, rate_limited or unavailable."""

    def refresh(self, outcome: str) -> None:
        """success, rejected, unknown, expired, reuse, rate_limited or unavailable."""

    def revoked(self, reason: str, sessions: int) -> None:
        """``sessions`` ended for ``reason`` (logout, logout_all, revoked, refresh_reuse,
        user_deleted)."""

    def rate_limited(self, rule: str) -> None:
        """An attempt refused by a rate limit: the key's prefix (``login:ip``), never the key."""

    def fallback(self, reason: str) -> None:
        """A request the compiled plans handed to graphql-core (``FallbackReason``)."""

    def ws_opened(self) -> None:
        """A WebSocket connection was accepted."""

    def ws_closed(self, code: int) -> None:
        """A WebSocket connection that ``ws_opened`` counted closed with ``code``."""

    def start(self) -> None:
        """The process starts serving (on its event loop)."""

    def close(self) -> None:
        """The process stops recording (its worker exits)."""


class NullRecorder:
    """Metrics off: every event costs one call that does nothing."""

    def request(self, outcome: OperationOutcome | None, status: int, seconds: float) -> None:
        pass

    def login(self, outcome: str) -> None:
        pass

    def refresh(self, outcome: str) -> None:
        pass

    def revoked(self, reason: str, sessions: int) -> None:
        pass

    def rate_limited(self, rule: str) -> None:
        pass

    def fallback(self, reason: str) -> None:
        pass

    def ws_opened(self) -> None:
        pass

    def ws_closed(self, code: int) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


NULL_RECORDER: Recorder = NullRecorder()
