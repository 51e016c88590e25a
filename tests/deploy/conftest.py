"""Container fixtures: podman, the image built from the Containerfile, and its containers.

No container registry is reachable on the machines this runs on, so the image is built on
a Debian base made locally from Debian's archive (``scripts/debian-base-image``, made once
and kept). Under CI=true podman, runc, slirp4netns and debootstrap are installed when
missing (``scripts/ensure-podman``); elsewhere the tests skip when they cannot run.

Containers get their own network namespace (slirp4netns) in which the host's loopback is
10.0.2.2: the image's own CMD (``--host 0.0.0.0 --port 8000``) and HEALTHCHECK run as
shipped, whatever else on the machine listens on port 8000, and the container still
reaches the machine's PostgreSQL, Redis and the fake Google issuer on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import IN_CI, PG_ADMIN_DSN
from tests.fake_google import CLIENT_ID, FakeGoogle
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
BASE_IMAGE = os.environ.get("TEST_CONTAINER_BASE", "localhost/debian:bookworm")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# A TLS-intercepting proxy's CA, handed to pip inside the build as a build secret.
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
HOST_LOOPBACK = "10.0.2.2"  # the host's 127.0.0.1, seen from a slirp4netns container
NETWORK = "slirp4netns:allow_host_loopback=true"
# The keys file's directory is mounted, not the file: `keys rotate` replaces the file, and a
# bind-mounted file would stay the old one inside the container.
KEYS_DIR = "/etc/graphql-api/keys"
KEYS_FILE = f"{KEYS_DIR}/jwks.json"
UID = 10001
READY_TIMEOUT = 90.0


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"container tests cannot run: {reason}")
    pytest.skip(f"container tests skipped: {reason}")


def seen_from_container(url: str) -> str:
    """``url`` with a loopback host replaced by the host's address inside the container."""
    parts = urlsplit(url)
    if parts.hostname not in {"127.0.0.1", "localhost"}:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    hostport = hostport.replace(parts.hostname, HOST_LOOPBACK, 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hostport}"))


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Podman:
    """The podman command line; a failing command fails the test with its output."""

    command: tuple[str, ...]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(  # noqa: S603 - podman, with our own arguments
                [*self.command, *args], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"podman {' '.join(args)} did not finish within {timeout:.0f} s: {exc}")
        if check and result.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{_tail(result.stdout)}\n{_tail(result.stderr)}"
            )
        return result

    def logs(self, name: str) -> str:
        result = self("logs", name, check=False)
        return (result.stdout + result.stderr).strip() or "(no output)"


def _run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own scripts
        [str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=1200
    )


@pytest.fixture(scope="session")
def podman() -> Podman:
    if IN_CI:
        installed = _run_script("ensure-podman")
        if installed.returncode != 0:
            _unavailable(f"scripts/ensure-podman failed:\n{installed.stderr}")
    for tool in ("podman", "slirp4netns"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (scripts/ensure-podman installs it)")
    # crun, podman's default, fails on cgroups on these VMs; runc works.
    command = ("podman", "--runtime", "runc") if shutil.which("runc") else ("podman",)
    podman = Podman(command)
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            _unavailable(
                f"no base image {BASE_IMAGE}; scripts/debian-base-image makes it "
                "(as root, with debootstrap)"
            )
        made = _run_script("debian-base-image", BASE_IMAGE)
        if made.returncode != 0:
            _unavailable(f"scripts/debian-base-image failed:\n{_tail(made.stderr)}")
    return podman


@pytest.fixture(scope="session")
def image(podman: Podman) -> Iterator[str]:
    """The image, built from the working tree; removed afterwards (the base is kept).

    ``--layers=false`` leaves no intermediate images behind, so removing the tag removes
    everything the build made. TEST_CONTAINER_IMAGE=TAG tests an image built already
    (and keeps it): quicker while working on the tests.
    """
    given = os.environ.get("TEST_CONTAINER_IMAGE")
    if given:
        podman("image", "exists", given)
        yield given
        return
    tag = f"localhost/graphql-api-test:{secrets.token_hex(4)}"
    build = ["build", "--format", "docker", "--layers=false", "--network", "host"]
    build += ["--build-arg", f"BASE={BASE_IMAGE}", "--file", "Containerfile", "--tag", tag]
    if CA_BUNDLE.is_file():
        build += ["--secret", f"id=ca-certificates,src={CA_BUNDLE}"]
    try:
        podman(*build, str(ROOT), timeout=1800)
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[str]:
    """A throwaway, empty PostgreSQL database (dropped afterwards): its URL for containers."""
    import asyncpg

    name = f"graphql_api_test_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable(f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield seen_from_container(f"{base}/{name}")
    finally:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def redis_url() -> str:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        _unavailable(f"Redis unreachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return seen_from_container(REDIS_URL)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="module")
def keys_tool(image: str, podman: Podman, keys_dir: Path) -> Callable[..., None]:
    """``keys_tool("rotate")`` -> ``graphql-api keys rotate --file /keys/jwks.json`` in the
    image, with ``keys_dir`` mounted read-write at /keys, as the README says."""
    mount = ["--rm", "--network", "none", "--volume", f"{keys_dir}:/keys"]

    def _keys(action: str) -> None:
        podman("run", *mount, image, "keys", action, "--file", "/keys/jwks.json")

    # The directory belongs to the image's user, which writes (and replaces) the file.
    podman("run", *mount, "--user", "0", "--entrypoint", "chown", image, str(UID), "/keys")
    _keys("generate")
    return _keys


@pytest.fixture(scope="module")
def app_env(
    database: str, redis_url: str, keys_tool: Callable[..., None], fake_google: FakeGoogle
) -> dict[str, str]:
    """The production settings a container runs with (GRAPHQL_API_ENV comes from the image),
    once the keys file exists."""
    return {
        "GRAPHQL_API_DATABASE_URL": database,
        "GRAPHQL_API_REDIS_URL": redis_url,
        "GRAPHQL_API_JWT_KEYS_FILE": KEYS_FILE,
        "GRAPHQL_API_GOOGLE_CLIENT_IDS": CLIENT_ID,
        "GRAPHQL_API_GOOGLE_CERTS_URL": seen_from_container(fake_google.jwks_url),
        "GRAPHQL_API_GOOGLE_CERTS_TIMEOUT": "15",
        # Free-form queries: no trusted-documents manifest in this test.
        "GRAPHQL_API_TRUSTED_DOCUMENTS": "off",
        "GRAPHQL_API_LOGIN_RATE_LIMIT": "100/minute",
    }


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


@pytest.fixture(scope="module")
def run_once(
    image: str, podman: Podman, app_env: dict[str, str], keys_dir: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_once(*args)`` -> a one-shot ``graphql-api ARGS`` in the image, as deployed."""

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return podman(
            "run",
            "--rm",
            "--network",
            NETWORK,
            "--read-only",
            "--volume",
            f"{keys_dir}:{KEYS_DIR}:ro",
            *_env_args(app_env),
            image,
            *args,
            timeout=300,
        )

    return _run


@dataclass
class Container:
    name: str
    url: str
    podman: Podman

    def logs(self) -> str:
        return self.podman.logs(self.name)

    def inspect(self) -> dict[str, Any]:
        result = self.podman("inspect", "--type", "container", self.name)
        document: dict[str, Any] = json.loads(result.stdout)[0]
        return document

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.podman("exec", self.name, *args, check=check)

    def fail(self, message: str) -> NoReturn:
        pytest.fail(f"{message}\n--- logs of container {self.name} ---\n{_tail(self.logs())}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            state = self.inspect()["State"]
            if not state["Running"]:
                self.fail(f"the container exited early (exit code {state['ExitCode']})")
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.25)
        self.fail(f"/readyz did not answer 200 within {READY_TIMEOUT:.0f} s (last: {last})")


@pytest.fixture(scope="module")
def start_container(
    image: str, podman: Podman, app_env: dict[str, str], keys_dir: Path
) -> Iterator[Callable[[], Container]]:
    """``start_container()`` -> a ready container, deployed as the README says: read-only
    root, a tmpfs /tmp, the keys' directory mounted read-only, the image's own command."""
    names: list[str] = []

    def _start() -> Container:
        name = f"graphql-api-test-{secrets.token_hex(4)}"
        port = free_port()
        names.append(name)
        podman(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            NETWORK,
            "--publish",
            f"127.0.0.1:{port}:8000",
            "--read-only",
            "--tmpfs",
            "/tmp",  # noqa: S108 - the container's own tmpfs
            "--volume",
            f"{keys_dir}:{KEYS_DIR}:ro",
            *_env_args(app_env),
            image,
        )
        container = Container(name, f"http://127.0.0.1:{port}", podman)
        container.wait_ready()
        return container

    try:
        yield _start
    finally:
        for name in names:
            podman("rm", "--force", "--time", "0", name, check=False)
