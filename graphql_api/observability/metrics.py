"""Prometheus metrics (``METRICS=true``): the recorder that counts, and its exposition.

Every label takes its values from a closed set written down here: a value from anywhere
else becomes ``other``. A label fed from a request (a user id, a free-form query's
operation name) would let any client create series without end, and a label explosion is
a denial of service of the monitoring. Operation names are labels only for trusted
documents, which are known at start-up; every other operation is ``free-form``.

Several worker processes share their counts through prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set up by ``graphql-api serve``: see ``multiprocess.py``):
each process writes its own files and a scrape, answered by any one of them, adds them up.

A request does not write those files: an increment in multiprocess mode takes a lock, a
system call and a write to a memory-mapped file, and a request makes several. Counts
gather in plain dictionaries instead and go to the files once a second (``FLUSH_INTERVAL``),
when the process stops, and before this process answers a scrape; the pools' connections
in use are sampled then too. So a scrape may miss the last second of another worker's
counts, never more, and a request pays a few dictionary updates.
"""

from __future__ import annotations

import asyncio
import glob
import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy.ext.asyncio import AsyncEngine

from graphql_api.observability.recorder import OperationOutcome

OTHER = "other"
OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})
FREE_FORM = "free-form"  # any operation that is not a trusted document
ANONYMOUS = "anonymous"  # a trusted document's operation without a name
UNKNOWN = "unknown"  # refused before an operation was chosen
OK = "ok"
OUTCOME_CODES = frozenset(
    {
        OK,
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "RATE_LIMITED",
        "INTERNAL_SERVER_ERROR",
        "PERSISTED_QUERY_NOT_FOUND",
        "TRUSTED_DOCUMENT_REQUIRED",
        "SERVICE_UNAVAILABLE",
    }
)
TRUSTED_REFUSALS = ("PERSISTED_QUERY_NOT_FOUND", "TRUSTED_DOCUMENT_REQUIRED")
LOGIN_OUTCOMES = ("success", "rejected", "replayed", "rate_limited", "unavailable")
REFRESH_OUTCOMES = (
    "success",
    "rejected",
    "unknown",
    "expired",
    "reuse",
    "rate_limited",
    "unavailable",
)
REVOCATION_REASONS = ("logout", "logout_all", "revoked", "refresh_reuse", "user_deleted")
RATE_LIMIT_RULES = ("login:ip", "login:sub", "refresh:ip", "refresh:user")
# ``QueryLimitRule.rule`` and the token limit (engine/limits.py); a test keeps them equal.
QUERY_LIMIT_RULES = (
    "depth",
    "aliases",
    "tokens",
    "cost",
    "duplicate_fields",
    "directives",
    "directive_use",
    "introspection",
    "introspection_depth",
)
# ``FallbackReason`` (engine/plans.py); a test keeps them equal.
FALLBACK_REASONS = (
    "disabled",
    "not_query",
    "operation",
    "directives",
    "abstract_types",
    "introspection",
    "unsupported",
    "too_large",
    "variables",
    "limits",
    "error",
    "null",
    "unexpected",
)
# RFC 6455's codes and the graphql-transport-ws protocol's.
WS_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 1014}
    | {4400, 4401, 4403, 4406, 4408, 4409, 4429, 4499, 4500}
)
DB_POOLS = ("read", "write", "shared")
# Seconds: from a cached trusted query (~1 ms) to a request that waits on a timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS = (*LATENCY_BUCKETS, math.inf)
FLUSH_INTERVAL = 1.0  # seconds between writes of the gathered counts

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


class _Histogram(Histogram):
    """A histogram that takes a batch of observations at once: their count per bucket
    (``_BOUNDS``) and their sum."""

    def add(self, counts: Sequence[int], total: float) -> None:
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class PrometheusMetrics:
    """The ``Recorder`` that counts. Label children are looked up once and kept, and
    counts gather in memory until the next flush (see the module's docstring)."""

    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` this process writes to
        (prometheus-client reads the variable itself when it is imported); None when this
        process counts alone."""
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "graphql_api_requests",
            "GraphQL requests by operation type, operation name (trusted documents only; "
            "free-form otherwise) and outcome (the first error code, or ok).",
            ["operation_type", "operation_name", "outcome"],
            registry=registry,
        )
        self.latency = _Histogram(
            "graphql_api_request_duration_seconds",
            "Time from receiving a GraphQL request to its answer, by operation type.",
            ["operation_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.logins = Counter(
            "graphql_api_logins", "googleLogin attempts by outcome.", ["outcome"], registry=registry
        )
        self.refreshes = Counter(
            "graphql_api_refreshes",
            "refreshToken attempts by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.reuse = Counter(
            "graphql_api_refresh_token_reuse",
            "Rotated refresh tokens presented again (each ended its session).",
            registry=registry,
        )
        self.revocations = Counter(
            "graphql_api_revoked_sessions",
            "Sessions ended, by reason.",
            ["reason"],
            registry=registry,
        )
        self.rate_limits = Counter(
            "graphql_api_rate_limited",
            "Attempts refused by a rate limit, by rule (the key's prefix).",
            ["rule"],
            registry=registry,
        )
        self.query_limits = Counter(
            "graphql_api_query_limit_rejections",
            "Documents refused by a query limit, by rule.",
            ["rule"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "graphql_api_plan_fallbacks",
            "Queries the compiled plans handed to graphql-core's executor, by reason.",
            ["reason"],
            registry=registry,
        )
        self.trusted = Counter(
            "graphql_api_trusted_documents",
            "Requests naming a trusted document (hit) and refusals by error code.",
            ["outcome"],
            registry=registry,
        )
        self.ws_connections = Gauge(
            "graphql_api_websocket_connections",
            "Open WebSocket connections (every live worker's, added up).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.ws_closes = Counter(
            "graphql_api_websocket_closes",
            "WebSocket connections closed, by close code.",
            ["code"],
            registry=registry,
        )
        self.db_checked_out = Gauge(
            "graphql_api_db_connections_checked_out",
            "Database connections in use, by pool (every live worker's, added up).",
            ["pool"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._requests: dict[tuple[str, str, str], Any] = {}
        # Counts not yet written: by label child, and the latencies by operation type.
        self._pending: dict[Any, int] = {}
        self._latencies = {kind: [0] * len(_BOUNDS) for kind in (*OPERATION_TYPES, UNKNOWN)}
        self._latency_sums = dict.fromkeys(self._latencies, 0.0)
        self._pools: list[tuple[Any, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._latency = {kind: self.latency.labels(kind) for kind in (*OPERATION_TYPES, UNKNOWN)}
        self._logins = _children(self.logins, LOGIN_OUTCOMES)
        self._refreshes = _children(self.refreshes, REFRESH_OUTCOMES)
        self._revocations = _children(self.revocations, REVOCATION_REASONS)
        self._rate_limits = _children(self.rate_limits, RATE_LIMIT_RULES)
        self._query_limits = _children(self.query_limits, QUERY_LIMIT_RULES)
        self._fallbacks = _children(self.fallbacks, FALLBACK_REASONS)
        self._trusted = _children(self.trusted, ("hit", *TRUSTED_REFUSALS))
        self._ws_closes: dict[int, Any] = {}
        self.reuse.inc(0)
        self.ws_connections.set(0)

    # --- the recorder ---------------------------------------------------------------

    def request(self, outcome: OperationOutcome | None, status: int, seconds: float) -> None:
        if outcome is None:
            kind, name, code = UNKNOWN, UNKNOWN, _status_code(status)
        else:
            codes = outcome.codes
            code = codes[0] if codes else OK
            if code not in OUTCOME_CODES:
                code = OTHER
            kind = outcome.operation_type or UNKNOWN
            if kind not in OPERATION_TYPES:
                kind = UNKNOWN
            if outcome.trusted:
                # A trusted document's own name: the manifests bound these at start-up.
                name = outcome.operation_name or ANONYMOUS
                self._add(self._trusted["hit"])
            else:
                name = FREE_FORM if kind != UNKNOWN else UNKNOWN
                if code in TRUSTED_REFUSALS:
                    self._add(self._trusted[code])
            if outcome.limit_rule is not None:
                self._count(self._query_limits, self.query_limits, outcome.limit_rule)
        key = (kind, name, code)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(*key)
        pending = self._pending
        pending[child] = pending.get(child, 0) + 1
        self._latencies[kind][bisect_left(_BOUNDS, seconds)] += 1
        self._latency_sums[kind] += seconds

    def login(self, outcome: str) -> None:
        self._count(self._logins, self.logins, outcome)

    def refresh(self, outcome: str) -> None:
        self._count(self._refreshes, self.refreshes, outcome)
        if outcome == "reuse":
            self._add(self.reuse)

    def revoked(self, reason: str, sessions: int) -> None:
        if sessions > 0:
            self._add(self._child(self._revocations, self.revocations, reason), sessions)

    def rate_limited(self, rule: str) -> None:
        self._count(self._rate_limits, self.rate_limits, rule)

    def fallback(self, reason: str) -> None:
        self._count(self._fallbacks, self.fallbacks, reason)

    def ws_opened(self) -> None:
        self.ws_connections.inc()

    def ws_closed(self, code: int) -> None:
        self.ws_connections.dec()
        child = self._ws_closes.get(code)
        if child is None:
            label = str(code) if code in WS_CLOSE_CODES else OTHER
            child = self._ws_closes[code] = self.ws_closes.labels(label)
        self._add(child)

    def start(self) -> None:
        """Write the gathered counts every ``FLUSH_INTERVAL`` seconds (on the running loop)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._tick)

    def flush(self) -> None:
        """Write what was counted since the last flush, and sample the pools."""
        pending, self._pending = self._pending, {}
        for child, amount in pending.items():
            child.inc(amount)
        for kind, counts in self._latencies.items():
            if any(counts):
                self._latencies[kind] = [0] * len(_BOUNDS)
                total, self._latency_sums[kind] = self._latency_sums[kind], 0.0
                self._latency[kind].add(counts, total)
        for gauge, pool in self._pools:
            gauge.set(pool.checkedout())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        if self.multiprocess_dir is not None:
            # This worker's gauges (open sockets, connections in use) leave the sums.
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    # --- database pools ---------------------------------------------------------------

    def watch_pools(self, engines: Iterable[AsyncEngine]) -> None:
        """Sample the checked-out connections of these engines' pools at every flush:
        every worker keeps its own value current, so a scrape answered by one worker sees
        them all (a second late at most). A pool event per checkout would cost every
        request."""
        engines = list(engines)
        names = ("shared",) if len(engines) == 1 else ("read", "write")
        for name, engine in zip(names, engines, strict=False):
            pool = engine.sync_engine.pool
            if callable(getattr(pool, "checkedout", None)):
                gauge = self.db_checked_out.labels(name)
                gauge.set(0)
                self._pools.append((gauge, pool))

    # --- exposition -------------------------------------------------------------------

    content_type = CONTENT_TYPE_LATEST

    def exposition(self) -> bytes:
        """The text format: every worker's series added up in multiprocess mode (call it
        on the event loop's thread: it flushes this process's counts first)."""
        self.flush()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _child(children: dict[str, Any], metric: Counter, value: str) -> Any:
        child = children.get(value)
        if child is None:
            child = children[OTHER] = children.get(OTHER) or metric.labels(OTHER)
        return child

    def _count(self, children: dict[str, Any], metric: Counter, value: str) -> None:
        self._add(self._child(children, metric, value))

    def _add(self, child: Any, amount: int = 1) -> None:
        pending = self._pending
        pending[child] = pending.get(child, 0) + amount


def _children(metric: Counter, values: Iterable[str]) -> dict[str, Any]:
    """A child per allowed value, created now so that each series starts at 0."""
    return {value: metric.labels(value) for value in values}


def _status_code(status: int) -> str:
    """The contract's code of a request refused before the engine (by HTTP status)."""
    if status == 503:
        return "SERVICE_UNAVAILABLE"
    if status >= 500:
        return "INTERNAL_SERVER_ERROR"
    return "BAD_USER_INPUT"


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that died without saying so (a crash, a kill):
    a worker that exits cleanly does it itself (``close``)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.match(os.path.basename(path))
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's
