"""The container image: built from the Containerfile, deployed as the README says, used for real.

The image is built on a local Debian base (no registry here), migrates a throwaway
PostgreSQL database with ``graphql-api migrate``, then serves on a read-only root
filesystem as uid 10001 with production settings: a Google sign-in through the fake
issuer and a ``me`` query with the access token it returns, the health endpoints, the
image's HEALTHCHECK, and a clean exit on SIGTERM.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from graphql_api.db.migrate import alembic_config
from tests.conftest import LOGIN, PG_ADMIN_DSN
from tests.deploy.conftest import UID, Container, Podman
from tests.fake_google import FakeGoogle

DRAIN_SECONDS = 20  # uvicorn's graceful-shutdown timeout in `graphql-api serve`
ME = "{ me { id email } }"

# Run inside the image as its own user: what is (not) installed, and where from.
PROBE = """
import importlib.metadata, importlib.util, json, os, pathlib, shutil, sys
import graphql_api
package = pathlib.Path(graphql_api.__file__).parent
modules = sorted(package.rglob("*.py"))
dist = importlib.metadata.distribution("graphql-api")
print(json.dumps({
    "uid": os.getuid(),
    "gid": os.getgid(),
    "compilers": [c for c in ("gcc", "cc", "c++", "g++", "clang", "tcc") if shutil.which(c)],
    "pip": importlib.util.find_spec("pip") is not None,
    "package": str(package),
    "direct_url": json.loads(dist.read_text("direct_url.json") or "{}"),
    "installer": (dist.read_text("INSTALLER") or "").strip(),
    "modules": len(modules),
    "without_bytecode": [
        str(m) for m in modules if not os.path.exists(importlib.util.cache_from_source(str(m)))
    ],
    "source_tree": os.path.exists("/src"),
    "dont_write_bytecode": sys.dont_write_bytecode,
}))
"""


def _graphql(container: Container, query: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.post(f"{container.url}/graphql", json={"query": query, **kwargs}, timeout=30)
    if response.status_code != 200:
        container.fail(f"POST /graphql answered {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        container.fail(f"POST /graphql answered errors: {body['errors']}")
    return body


@pytest.fixture(scope="module")
def migrated(run_once: Callable[..., Any]) -> str:
    result = run_once("migrate")
    return str(result.stdout)


@pytest.fixture(scope="module")
def server(migrated: str, start_container: Callable[[], Container]) -> Container:
    return start_container()


def test_image_runs_graphql_api_serve_as_uid_10001_in_production(
    image: str, podman: Podman
) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["graphql-api"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["GRAPHQL_API_ENV"] == "production"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert not any(name.startswith("GRAPHQL_API_") and name != "GRAPHQL_API_ENV" for name in env)
    # podman keeps the HEALTHCHECK beside the config (docker: in it); only in docker format.
    healthcheck = inspected.get("Healthcheck") or config.get("Healthcheck")
    assert healthcheck, "no HEALTHCHECK: build with --format docker"
    assert "/healthz" in " ".join(healthcheck["Test"])


def test_image_holds_the_built_wheel_without_compilers_pip_or_source(
    image: str, podman: Podman
) -> None:
    probe = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--entrypoint",
        "python",
        image,
        "-c",
        PROBE,
    )
    found = json.loads(probe.stdout)
    assert (found["uid"], found["gid"]) == (UID, UID)
    assert found["compilers"] == []
    assert found["pip"] is False
    assert re.fullmatch(r"/opt/venv/lib/python3\.\d+/site-packages/graphql_api", found["package"])
    # Installed from a wheel file, not from a directory (an editable or source install).
    assert "archive_info" in found["direct_url"], found["direct_url"]
    assert found["direct_url"]["url"].endswith(".whl")
    assert found["source_tree"] is False
    # Compiled at build time: nothing needs writing on a read-only root.
    assert found["modules"] > 10
    assert found["without_bytecode"] == []
    assert found["dont_write_bytecode"] is True


async def test_migrate_in_the_image_brings_the_database_to_the_latest_revision(
    migrated: str, database: str
) -> None:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert f"upgraded from an empty database to {head}" in migrated, migrated
    name = database.rsplit("/", 1)[1]
    conn = await asyncpg.connect(f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}", timeout=5)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
    finally:
        await conn.close()


def test_serves_production_as_uid_10001_on_a_read_only_root(server: Container) -> None:
    host_config = server.inspect()["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True
    status = server.exec("cat", "/proc/1/status").stdout
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if ":" in line}
    assert ids["Uid"] == [str(UID)] * 4, ids["Uid"]
    assert ids["Gid"] == [str(UID)] * 4, ids["Gid"]
    assert "graphql-api" in server.exec("cat", "/proc/1/cmdline").stdout
    # Not even root can write outside the tmpfs.
    written = server.podman("exec", "--user", "0", server.name, "touch", "/written", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written
    server.exec("touch", "/tmp/written")  # noqa: S108 - the container's tmpfs
    assert "graphql_api (production)" in server.logs()


def _published_kids(container: Container) -> list[str]:
    jwks = httpx.get(f"{container.url}/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200, jwks.text
    keys = jwks.json()["keys"]
    assert not any("d" in key for key in keys), "a private key is published"
    return [key["kid"] for key in keys]


def _kids_in(keys_dir: Path) -> list[str]:
    return [key["kid"] for key in json.loads((keys_dir / "jwks.json").read_text())["keys"]]


def test_health_endpoints_and_jwks_answer(server: Container, keys_dir: Path) -> None:
    healthz = httpx.get(f"{server.url}/healthz", timeout=10)
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    readyz = httpx.get(f"{server.url}/readyz", timeout=10)
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ok"})
    assert _published_kids(server) == _kids_in(keys_dir)


def test_the_image_health_check_passes(server: Container) -> None:
    result = server.podman("healthcheck", "run", server.name, check=False)
    if result.returncode != 0:
        server.fail(f"podman healthcheck run: {result.returncode} {result.stdout}{result.stderr}")
    health = server.inspect()["State"]["Health"]
    assert health["Status"] == "healthy", health


def test_google_sign_in_then_me_with_the_access_token(
    server: Container, fake_google: FakeGoogle
) -> None:
    sub = str(secrets.randbelow(10**12))
    email = f"container-{sub}@example.com"
    login = _graphql(server, LOGIN, variables={"idToken": fake_google.mint(sub=sub, email=email)})
    payload = login["data"]["googleLogin"]
    assert payload["user"]["email"] == email
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {payload['accessToken']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"me": {"id": payload["user"]["id"], "email": email}}}


def test_keys_rotated_in_the_mounted_directory_reach_the_running_container(
    server: Container, keys_dir: Path, keys_tool: Callable[..., None]
) -> None:
    before = _kids_in(keys_dir)
    keys_tool("rotate")
    after = _kids_in(keys_dir)
    assert after[1:] == before
    deadline = time.monotonic() + 15  # the file is polled every 2 s
    while _published_kids(server) != after:
        if time.monotonic() > deadline:
            server.fail(f"still publishing {_published_kids(server)}, not {after}")
        time.sleep(0.25)


def test_sigterm_stops_it_cleanly_within_the_drain_time(
    migrated: str, start_container: Callable[[], Container]
) -> None:
    container = start_container()
    started = time.monotonic()
    container.podman("stop", "--time", str(DRAIN_SECONDS + 30), container.name, timeout=120)
    elapsed = time.monotonic() - started
    state = container.inspect()["State"]
    if state["ExitCode"] != 0:
        container.fail(f"exit code {state['ExitCode']} after SIGTERM")
    if elapsed >= DRAIN_SECONDS:
        container.fail(f"took {elapsed:.1f} s to stop, more than the {DRAIN_SECONDS} s drain")
    assert "Traceback" not in container.logs()
