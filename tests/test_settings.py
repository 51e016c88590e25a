"""Configuration: every malformed setting is one line naming it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphql_api.settings import Settings
from tests.conftest import IN_CI
from tests.live_server import free_port

# One malformed value per setting. A new setting without one fails
# test_every_setting_has_a_malformed_case: say what a wrong value looks like.
MALFORMED: dict[str, str] = {
    "env": "staging",
    "database_url": "mysql://root@localhost/app",
    "db_pool_size": "0",
    "db_max_overflow": "-1",
    "redis_url": "localhost:6379",
    "google_client_ids": '["a.apps.googleusercontent.com"]',
    "google_certs_url": "www.googleapis.com/oauth2/v3/certs",
    "google_hosted_domains": "@example.com",
    "admin_emails": "admin",
    "jwt_keys_file": "/",
    "jwt_issuer": " ",
    "jwt_audience": "",
    "jwt_leeway": "60",
    "access_token_ttl": "0",
    "refresh_token_ttl": "59",
    "session_idle_ttl": "1 week",
    "revocation_poll_interval": "0",
    "login_rate_limit": "10 per minute",
    "refresh_rate_limit": "lots",
    "trusted_proxies": "10.0.0.0/8, proxy.internal",
    "cors_origins": "https://app.example.com/",
    "public_origin": "api.example.com",
    "max_depth": "0",
    "max_aliases": "-1",
    "max_tokens": "9",
    "max_cost": "0",
    "max_duplicate_fields": "0",
    "max_directives": "-1",
    "compiled_execution": "sometimes",
    "max_body_bytes": "1KB",
    "header_timeout": "0",
    "body_timeout": "10s",
    "max_connections": "0",
    "max_in_flight": "none",
    "google_certs_timeout": "3 seconds",
    "engine_strict": "perhaps",
    "trusted_documents": "maybe",
    "trusted_documents_files": "/",
    "ws_init_timeout": "0",
    "ws_max_subscriptions": "0",
    "ws_max_connections_per_user": "many",
    "ws_max_queue": "-5",
    "serve_workers": "0",
    "redis_timeout": "fast",
    "db_connect_timeout": "0",
    "db_pool_timeout": "-1",
    "db_statement_timeout": "forever",
    "prune_interval": "hourly",
    "shutdown_delay": "-1",
    "metrics": "sometimes",
}
COMMANDS = {
    "serve": ["serve", "--port", str(free_port())],
    "migrate": ["migrate"],
    "dev-token": ["dev-token", "dev@example.com"],
    "users": ["users", "set-role", "dev@example.com", "ADMIN"],
}


def cli_env(settings: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_API_")}
    return {**base, **settings}


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "graphql_api", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=30,
        check=False,
    )


def test_every_setting_has_a_malformed_case() -> None:
    assert sorted(MALFORMED) == sorted(Settings.model_fields)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_a_malformed_setting_is_refused_in_one_line_naming_it(name: str, tmp_path: Path) -> None:
    if name not in MALFORMED:
        pytest.fail(f"MALFORMED has no value for the setting {name}")
    variable = f"GRAPHQL_API_{name.upper()}"
    # Every command that reads settings, at once (they are independent), run where nothing
    # of ours is, so that a value taken for good creates nothing that matters.
    processes = {
        command: subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "graphql_api", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env({variable: MALFORMED[name]}),
            cwd=tmp_path,
        )
        for command, args in COMMANDS.items()
    }
    for command, process in processes.items():
        try:
            # A value taken for good would start the server: fail, don't hang.
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"{command} accepted {variable}={MALFORMED[name]!r} and kept running")
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode != 0, (command, stdout)
        assert "Traceback" not in stderr, (command, stderr)
        assert len(lines) == 1 and variable in lines[0], (command, stderr)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db.example.com/app", "postgresql+asyncpg://u:p@db.example.com/app"),
        ("postgres://u@db.example.com:6543/app", "postgresql+asyncpg://u@db.example.com:6543/app"),
        ("postgresql+asyncpg://u@h/app", "postgresql+asyncpg://u@h/app"),
        ("postgres://u@h/app?sslmode=require", "postgresql+asyncpg://u@h/app?ssl=require"),
        ("sqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
        ("sqlite+aiosqlite:///./app.db", "sqlite+aiosqlite:///./app.db"),
    ],
)
def test_the_usual_database_url_forms_use_our_async_drivers(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


def test_a_postgresql_url_without_a_driver_connects_with_asyncpg(tmp_path: Path) -> None:
    # Port 1: refused at once. Before the driver was normalized this was a traceback
    # about psycopg2, which we do not install.
    for scheme in ("postgresql", "postgres"):
        result = run_cli(
            ["migrate"],
            {"GRAPHQL_API_DATABASE_URL": f"{scheme}://postgres@127.0.0.1:1/x"},
            tmp_path,
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "GRAPHQL_API_DATABASE_URL" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "origin",
    ["https://api.example.com/", "api.example.com", "https://API.example.com", "https://u@x.com"],
)
def test_public_origin_must_be_an_exact_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="public_origin"):
        Settings(public_origin=origin)


@pytest.mark.parametrize(
    "origin", ["https://api.example.com", "http://localhost:8000", "http://[::1]:8000"]
)
def test_exact_origins_are_accepted(origin: str) -> None:
    assert Settings(public_origin=origin, cors_origins=[origin]).public_origin == origin


def test_migrate_status_reads_postgresql_through_the_usual_url_forms(tmp_path: Path) -> None:
    # --status only reads, so the server's own "postgres" database is safe to ask.
    for scheme in ("postgresql", "postgres"):
        url = f"{scheme}://postgres@127.0.0.1:5432/postgres"
        result = run_cli(["migrate", "--status"], {"GRAPHQL_API_DATABASE_URL": url}, tmp_path)
        if "cannot use GRAPHQL_API_DATABASE_URL" in result.stderr:
            if IN_CI:
                pytest.fail(result.stderr)
            pytest.skip(f"PostgreSQL unreachable: {result.stderr}")
        assert "latest:   " in result.stdout and "current:" in result.stdout, result.stderr
        assert "database: postgresql+asyncpg://postgres@127.0.0.1:5432/postgres" in result.stdout
