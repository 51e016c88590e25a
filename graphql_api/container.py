"""Builds the service's collaborators once per process and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from graphql_api.auth.google import (
    CertificateCache,
    CertsFetcher,
    GoogleVerifier,
    HttpxCertsFetcher,
)
from graphql_api.auth.keys import KeyFileWatcher, KeySet, generate_key_file, load_key_set
from graphql_api.auth.tokens import AccessTokenCodec
from graphql_api.clock import Clock, SystemClock
from graphql_api.db.engine import Database, Timeouts
from graphql_api.db.migrate import head_revision
from graphql_api.observability.environment import tracing_enabled
from graphql_api.observability.recorder import NULL_RECORDER, Recorder
from graphql_api.rate_limit import (
    FallbackRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from graphql_api.services.auth import AuthService
from graphql_api.services.authentication import Authenticator
from graphql_api.services.categories import CategoryService
from graphql_api.services.events import bus_for
from graphql_api.services.health import Readiness
from graphql_api.services.maintenance import Pruner
from graphql_api.services.revocation import RevocationList
from graphql_api.services.users import UserService
from graphql_api.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from graphql_api.observability.metrics import PrometheusMetrics
    from graphql_api.observability.tracing import Tracing

logger = logging.getLogger("graphql_api")

DEV_KEYS_FILE = Path(".dev-jwt-keys.json")


def signing_keys_file(settings: Settings) -> Path:
    return settings.jwt_keys_file if settings.jwt_keys_file is not None else DEV_KEYS_FILE


def load_signing_keys(settings: Settings) -> KeySet:
    if settings.jwt_keys_file is not None:
        return load_key_set(settings.jwt_keys_file)
    settings.check_production()  # production never invents keys
    if not DEV_KEYS_FILE.exists():
        generate_key_file(DEV_KEYS_FILE)
        logger.warning(
            "DEVELOPMENT MODE: generated a signing key into %s. Never use it in production; "
            "set GRAPHQL_API_JWT_KEYS_FILE (graphql-api keys generate --file FILE).",
            DEV_KEYS_FILE.resolve(),
            extra={"event": "dev_key_generated"},
        )
    return load_key_set(DEV_KEYS_FILE)


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        certs_fetcher: CertsFetcher | None = None,
        keys: KeySet | None = None,
        limiter: RateLimiter | None = None,
        metrics: PrometheusMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        settings.check_production()
        self.settings = settings
        # Built only when on: off, neither prometheus_client nor the OpenTelemetry SDK is imported.
        self.prometheus = metrics if metrics is not None else build_metrics(settings)
        self.metrics: Recorder = self.prometheus or NULL_RECORDER
        self.tracing = tracing if tracing is not None else build_tracing()
        self.clock = clock or SystemClock()
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            timeouts=Timeouts(
                connect=settings.db_connect_timeout,
                checkout=settings.db_pool_timeout,
                statement=settings.db_statement_timeout,
            ),
        )
        # Keys handed in (tests) are fixed; keys from a file follow the file.
        self.key_watcher: KeyFileWatcher | None = None
        if keys is None:
            keys = load_signing_keys(settings)
            self.key_watcher = KeyFileWatcher(signing_keys_file(settings), self._use_keys)
        self.keys = keys
        self._key_task: asyncio.Task[None] | None = None
        self.codec = AccessTokenCodec(
            keys=self.keys,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
            leeway=settings.jwt_leeway,
            clock=self.clock,
        )
        self.google = GoogleVerifier(
            client_ids=settings.google_client_ids,
            hosted_domains=settings.google_hosted_domains,
            certs=CertificateCache(
                url=settings.google_certs_url,
                fetcher=certs_fetcher or HttpxCertsFetcher(timeout=settings.google_certs_timeout),
                clock=self.clock,
                deadline=settings.google_certs_timeout,
            ),
            clock=self.clock,
        )
        self.redis: Redis | None = None
        self.redis_pubsub: Redis | None = None
        if settings.redis_url:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # A pooled connection that died with a restarted Redis is retried once, at once,
            # on a new connection. Without a retry (what from_url gives) every dead
            # connection left in the pool fails one command after Redis is back, and each
            # such failure costs a second of in-process counting (tests/faults).
            def retry() -> Retry:
                return Retry(NoBackoff(), 1)

            # Requests never wait on Redis longer than this (rate limits fall back in-process);
            # the event listener blocks on its own connection, without a read timeout.
            self.redis = Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.redis_timeout,
                socket_connect_timeout=settings.redis_timeout,
                health_check_interval=10,
                retry=retry(),
            )
            self.redis_pubsub = Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=settings.redis_timeout,
                health_check_interval=10,
                retry=retry(),
            )
        if limiter is None and self.redis is not None:
            limiter = FallbackRateLimiter(
                RedisRateLimiter(self.redis, clock=self.clock),
                MemoryRateLimiter(clock=self.clock),
                timeout=settings.redis_timeout,
                clock=self.clock,
            )
        self.limiter = limiter or MemoryRateLimiter(clock=self.clock)
        self.events = bus_for(
            redis=self.redis_pubsub,
            processes=settings.serve_workers,
            max_queue=settings.ws_max_queue,
            database=settings.database_url,
        )
        self.revocations = RevocationList(
            db=self.db,
            clock=self.clock,
            poll_interval=settings.revocation_poll_interval,
            retention=settings.access_token_ttl + settings.jwt_leeway + 60,
        )
        self.auth = AuthService(
            settings=settings,
            db=self.db,
            clock=self.clock,
            codec=self.codec,
            google=self.google,
            revocations=self.revocations,
            limiter=self.limiter,
            metrics=self.metrics,
        )
        self.users = UserService(
            db=self.db,
            clock=self.clock,
            revocations=self.revocations,
            events=self.events,
            metrics=self.metrics,
        )
        self.categories = CategoryService(db=self.db, clock=self.clock, events=self.events)
        self.authenticator = Authenticator(codec=self.codec, revocations=self.revocations)
        self.readiness = Readiness(db=self.db, head=head_revision(), redis=self.redis)
        self.pruner = Pruner(
            db=self.db, clock=self.clock, revocation_retention=self.revocations.retention
        )
        self._prune_task: asyncio.Task[None] | None = None
        if self.prometheus is not None:
            self.prometheus.watch_pools(self.db.engines)
        if self.tracing is not None:
            self.tracing.instrument_databases(self.db.engines)

    def _use_keys(self, keys: KeySet) -> None:
        self.keys = keys
        self.codec.replace_keys(keys)

    async def start(self) -> None:
        if self.key_watcher is not None:
            self._key_task = asyncio.create_task(self.key_watcher.run())
        await self.events.start()
        if self.settings.prune_interval > 0:
            self._prune_task = asyncio.create_task(
                self.pruner.run(every=self.settings.prune_interval)
            )
        self.metrics.start()
        try:
            await self.revocations.refresh(force=True)
        except Exception:  # noqa: BLE001 - start anyway; /readyz reports the database
            # Requests with a token retry the read and fail closed while it fails.
            logger.warning(
                "database unavailable at start-up", extra={"event": "startup_db_unavailable"}
            )

    async def close(self) -> None:
        for task in (self._key_task, self._prune_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.events.close()
        await self.revocations.close()
        await self.db.dispose()
        for client in (self.redis, self.redis_pubsub):
            if client is not None:
                await client.aclose()
        self.metrics.close()
        if self.tracing is not None:
            self.tracing.shutdown()


def build_metrics(settings: Settings) -> PrometheusMetrics | None:
    """Prometheus metrics when ``METRICS=true``, in multiprocess mode under ``serve``."""
    if not settings.metrics:
        return None
    from graphql_api.observability.metrics import PrometheusMetrics
    from graphql_api.observability.multiprocess import multiprocess_dir

    return PrometheusMetrics(multiprocess_dir=multiprocess_dir())


def build_tracing() -> Tracing | None:
    """OpenTelemetry tracing when an OTLP endpoint is set (``OTEL_*`` variables)."""
    if not tracing_enabled():
        return None
    from graphql_api.observability.tracing import Tracing

    return Tracing()
