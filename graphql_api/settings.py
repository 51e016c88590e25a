"""Configuration read from the environment (prefix ``GRAPHQL_API_``)."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
CommaList = Annotated[list[str], NoDecode]
PathList = Annotated[list[Path], NoDecode]
TrustedDocumentsMode = Literal["off", "allow", "require"]
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$")
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRAPHQL_API_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./graphql_api.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    redis_url: str | None = None

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

    @field_validator("login_rate_limit", "refresh_rate_limit")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @model_validator(mode="after")
    def _cors_origins_are_origins(self) -> Settings:
        for origin in self.cors_origins:
            if origin == "*" or not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"CORS_ORIGINS entry {origin!r} must be an exact origin")
        return self

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

    # --- observability (tracing is configured by the standard OTEL_* variables) ---
    # GET /metrics in Prometheus' text format, added up over every worker process.
    metrics: bool = False
