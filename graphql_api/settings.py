"""Configuration read from the environment (prefix ``GRAPHQL_API_``)."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
CommaList = Annotated[list[str], NoDecode]
PathList = Annotated[list[Path], NoDecode]
TrustedDocumentsMode = Literal["off", "allow", "require"]
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The drivers we ship, under every name people write them with. `postgres://` is what
# Heroku, Render and Fly hand out; SQLAlchemy itself no longer accepts it.
_DATABASE_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigurationError(Exception):
    """The settings cannot run the service; the message names the setting."""


class RateLimit:
    """A parsed ``"10/minute"`` limit."""

    __slots__ = ("limit", "period")

    def __init__(self, limit: int, period: int) -> None:
        self.limit = limit
        self.period = period

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE.match(text)
        if not match:
            raise ValueError(f"rate limit {text!r} is not like '10/minute'")
        return cls(int(match.group(1)), _PERIODS[match.group(2)])


def normalize_database_url(value: str) -> str:
    """The URL with an async driver we ship: ``postgresql://`` and ``postgres://`` use
    asyncpg, ``sqlite://`` aiosqlite. Anything else is refused (ValueError)."""
    scheme, separator, rest = value.partition("://")
    if not separator:
        raise ValueError("is not a URL like postgresql://user@host/db or sqlite:///./file.db")
    driver = _DATABASE_DRIVERS.get(scheme.lower())
    if driver is None:
        raise ValueError(
            f"{scheme}:// is not supported: use postgresql://user@host/db (asyncpg) "
            "or sqlite+aiosqlite:///./file.db"
        )
    normalized = f"{driver}://{rest}"
    # Imported here: SQLAlchemy doubles the start-up time of a CLI that only fails.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(normalized)
    except (ArgumentError, ValueError):
        raise ValueError("is not a valid database URL") from None
    if driver == "postgresql+asyncpg" and "sslmode" in url.query:
        # libpq's sslmode (in most hosted URLs) is asyncpg's ssl, with the same values;
        # passed through it would fail on the first connection.
        query = dict(url.query)
        query["ssl"] = query.pop("sslmode")
        normalized = url.set(query=query).render_as_string(hide_password=False)
    return normalized


def origin_problem(value: str) -> str | None:
    """Why ``value`` is not an exact browser origin (what an Origin header carries), or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "needs a scheme and a host, like https://app.example.com"
    if parts.path or parts.query or parts.fragment or value.endswith(("?", "#")):
        return "must be an origin only: no path, not even a trailing slash"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if value != value.lower():
        # Browsers send origins in lowercase, and they are compared as exact strings.
        return "must be lowercase"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRAPHQL_API_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./graphql_api.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Seconds: a database that is down or stalls costs at most this (SERVICE_UNAVAILABLE).
    db_connect_timeout: float = Field(default=3.0, gt=0, le=60)
    db_pool_timeout: float = Field(default=3.0, gt=0, le=60)
    db_statement_timeout: float = Field(default=5.0, gt=0, le=300)
    redis_url: str | None = None
    # Seconds a request may wait on Redis before rate limits are counted in-process.
    redis_timeout: float = Field(default=0.2, gt=0, le=5)

    google_client_ids: CommaList = []
    google_certs_url: str = GOOGLE_CERTS_URL
    google_certs_timeout: float = Field(default=3.0, gt=0, le=60)  # whole fetch, seconds
    google_hosted_domains: CommaList = []
    admin_emails: CommaList = []

    jwt_keys_file: Path | None = None
    jwt_issuer: str = "graphql-api"
    jwt_audience: str = "graphql-api"
    jwt_leeway: int = Field(default=5, ge=0, le=5)
    access_token_ttl: int = Field(default=900, ge=10, le=86400)
    refresh_token_ttl: int = Field(default=30 * 86400, ge=60)
    session_idle_ttl: int = Field(default=7 * 86400, ge=60)
    revocation_poll_interval: float = Field(default=0.5, gt=0, le=1.0)
    # Seconds /readyz says 503 after SIGTERM while requests are still served, before the
    # drain: time for a load balancer to stop sending.
    shutdown_delay: float = Field(default=1.0, ge=0, le=60)
    # GET /metrics in Prometheus' text format, added up over every worker process
    # (tracing is configured by the standard OTEL_* variables).
    metrics: bool = False
    # Seconds between automatic prunes of expired rows (0: only `graphql-api prune`).
    prune_interval: float = Field(default=3600, ge=0)

    login_rate_limit: str = "10/minute"
    refresh_rate_limit: str = "30/minute"
    trusted_proxies: CommaList = []
    cors_origins: CommaList = []
    public_origin: str | None = None

    max_depth: int = Field(default=10, ge=1)
    max_aliases: int = Field(default=15, ge=0)
    max_tokens: int = Field(default=2000, ge=10)
    max_cost: int = Field(default=5000, ge=1)
    max_duplicate_fields: int = Field(default=20, ge=1)
    max_directives: int = Field(default=50, ge=0)
    # Validated queries run from a cached plan; off runs everything through graphql-core.
    compiled_execution: bool = True
    # Tests: a plan that fails in a way the plan machinery did not expect fails the request.
    engine_strict: bool = False
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Unset: ``allow`` in development (GraphiQL's free-form queries), ``require`` in
    # production (only the operations the frontends listed ahead of time run).
    trusted_documents: TrustedDocumentsMode | None = None
    trusted_documents_files: PathList = []
    # Slow clients and overload, per process (web/connections.py, web/limits.py): a client
    # holds a connection or a request slot for a bounded time, and only so many at once.
    header_timeout: float = Field(default=10.0, ge=0.5, le=300)
    body_timeout: float = Field(default=10.0, ge=0.5, le=300)
    max_connections: int = Field(default=1000, ge=1)
    max_in_flight: int = Field(default=256, ge=1)
    # Subscriptions (WebSocket, graphql-transport-ws): see web/graphql_ws.py.
    ws_init_timeout: float = Field(default=5.0, gt=0, le=60)
    ws_max_subscriptions: int = Field(default=20, ge=1)
    ws_max_connections_per_user: int = Field(default=10, ge=1)
    ws_max_queue: int = Field(default=100, ge=1)
    # Set by `graphql-api serve --workers N` for its workers: with several processes and
    # no REDIS_URL, events cannot reach every subscriber, so subscriptions are off.
    serve_workers: int = Field(default=1, ge=1)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        from redis.connection import parse_url

        try:
            parse_url(value)  # type: ignore[no-untyped-call]
        except ValueError:
            # redis' message may quote the URL, password included: say what is expected.
            raise ValueError(
                "is not a Redis URL like redis://host:6379/0, rediss://... or unix:///path"
            ) from None
        return value

    @field_validator("google_certs_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("is not an http(s) URL")
        return value

    @field_validator("jwt_keys_file")
    @classmethod
    def _a_file(cls, value: Path | None) -> Path | None:
        # Only the shape here: whether the file loads is checked where keys are loaded.
        if value is not None and (str(value) in ("", ".") or value.is_dir()):
            raise ValueError(f"{value} is a directory; name the JWKS file")
        return value

    @field_validator("jwt_issuer", "jwt_audience")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator(
        "google_client_ids",
        "google_hosted_domains",
        "admin_emails",
        "trusted_proxies",
        "cors_origins",
        "trusted_documents_files",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_documents_files")
    @classmethod
    def _files(cls, value: list[Path]) -> list[Path]:
        # Only the shape here: whether each one loads is checked at start-up, with the
        # file, the entry and the reason (engine/trusted.py).
        for path in value:
            if path.is_dir():
                raise ValueError(f"{path} is a directory; name the manifest files")
        return value

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _mode_or_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("admin_emails", "google_hosted_domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [item.lower() for item in value]

    @field_validator("google_client_ids")
    @classmethod
    def _client_ids(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _CLIENT_ID.match(entry):
                raise ValueError(
                    f"entry {entry!r} is not an OAuth client id "
                    "(like 1234-abc.apps.googleusercontent.com; separate them with commas)"
                )
        return value

    @field_validator("google_hosted_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _DOMAIN.match(entry):
                raise ValueError(f"entry {entry!r} is not a domain like example.com")
        return value

    @field_validator("admin_emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _EMAIL.match(entry):
                raise ValueError(f"entry {entry!r} is not an email address")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"entry {entry!r} is not an IP address or network like 10.0.0.0/8"
                ) from None
        return value

    @field_validator("login_rate_limit", "refresh_rate_limit")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            problem = "is a wildcard" if origin == "*" else origin_problem(origin)
            if problem:
                raise ValueError(f"entry {origin!r} {problem}; list exact origins")
        return value

    @field_validator("public_origin")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        # Compared as an exact string with the Origin of cookie refreshes: "https://x/" or
        # "x" would refuse every one of them, so refuse the setting instead.
        if not value:
            return None
        if problem := origin_problem(value):
            raise ValueError(f"{value!r} {problem}")
        return value

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def trusted_documents_mode(self) -> TrustedDocumentsMode:
        if self.trusted_documents is not None:
            return self.trusted_documents
        return "allow" if self.is_development else "require"

    @cached_property
    def login_rate(self) -> RateLimit:
        return RateLimit.parse(self.login_rate_limit)

    @cached_property
    def refresh_rate(self) -> RateLimit:
        return RateLimit.parse(self.refresh_rate_limit)

    def check_production(self) -> None:
        """Refuse to run production without the settings it cannot invent."""
        if self.is_development:
            return
        if self.jwt_keys_file is None:
            raise ConfigurationError(
                "GRAPHQL_API_JWT_KEYS_FILE is required in production "
                "(create one with: graphql-api keys generate --file FILE)"
            )
        if not self.google_client_ids:
            raise ConfigurationError("GRAPHQL_API_GOOGLE_CLIENT_IDS is required in production")
        if self.trusted_documents_mode == "require" and not self.trusted_documents_files:
            # Refusing beats starting a service that answers every request with an error.
            raise ConfigurationError(
                "GRAPHQL_API_TRUSTED_DOCUMENTS_FILES is required in production, where only "
                "trusted documents run by default (set GRAPHQL_API_TRUSTED_DOCUMENTS=off to "
                "serve free-form queries)"
            )


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming the (first) setting that failed and why; never its value, which may
    hold a password."""
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    name = f"GRAPHQL_API_{str(first['loc'][0]).upper()}" if first["loc"] else "the settings"
    reason = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"invalid {name}: {reason}{more}"
