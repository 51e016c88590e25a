"""``graphql-api serve`` as a process: what it announces, when, and what it refuses."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.fake_google import CLIENT_ID
from tests.live_server import COMMAND, ROOT, environment, free_port


@pytest.fixture
def development(tmp_path: Path) -> dict[str, str]:
    return {
        "ENV": "development",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "JWT_KEYS_FILE": str(tmp_path / "keys.json"),
    }


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    return {
        "ENV": "production",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "JWT_KEYS_FILE": str(tmp_path / "keys.json"),
        "GOOGLE_CLIENT_IDS": CLIENT_ID,
        "TRUSTED_DOCUMENTS": "off",
    }


@pytest.fixture(autouse=True)
def keys_and_database(tmp_path: Path) -> None:
    env = environment({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db"})
    for args in (["keys", "generate", "--file", str(tmp_path / "keys.json")], ["migrate"]):
        subprocess.run([*COMMAND, *args], env=env, cwd=ROOT, check=True, capture_output=True)  # noqa: S603


def serve_once(*args: str, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A serve that is expected to refuse to start."""
    return subprocess.run(  # noqa: S603 - our own CLI
        [*COMMAND, "serve", *args],
        env=environment(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextmanager
def serving(*args: str, settings: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            [*COMMAND, "serve", *args],
            env=environment(settings),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in (output := log.read_text(errors="replace")):
        assert process.poll() is None, output
        assert time.monotonic() < deadline, output
        time.sleep(0.02)
    return output


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_the_banner_prints_localhost_urls_once_the_port_listens(
    development: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with serving("--port", str(port), settings=development, log=log) as process:
        output = wait_for(log, "Health:", process)
        # Printed means listening: a connection made right now is accepted (and answered
        # once the application has started), never refused.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert httpx.get(f"http://localhost:{port}/healthz", timeout=30).status_code == 200
        logged = wait_for(log, "event=development_mode", process)
    # Development logs are lines for people, not JSON.
    assert re.search(
        r"^\d\d:\d\d:\d\d WARNING graphql_api  DEVELOPMENT MODE: .* event=development_mode$",
        logged,
        re.MULTILINE,
    ), logged
    assert not any(line.startswith("{") for line in logged.splitlines()), logged
    base = f"http://localhost:{port}"
    # localhost, not 127.0.0.1: a frontend on http://localhost:5173 is then the same site,
    # and the SameSite=Strict refresh cookie reaches it.
    assert f"GraphiQL:         {base}/graphql" in output
    assert f"Reference client: {base}/" in output
    assert f"Health:           {base}/healthz  {base}/readyz" in output
    assert "127.0.0.1:" not in output.split("listening on", 1)[1].split("\n", 1)[1]
    # A command that works as printed from here (the venv is not on PATH).
    assert "Access token:     make token EMAIL=you@example.com" in output


def test_a_port_in_use_is_one_line_and_announces_nothing(development: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve_once("--port", str(port), settings=development)
    assert result.returncode != 0 and result.stdout == ""
    line = one_line(result)
    assert f"127.0.0.1:{port}" in line and "already in use" in line


@pytest.mark.parametrize("port", ["0", "99999", "http"])
def test_a_port_that_is_not_a_port_is_refused(development: dict[str, str], port: str) -> None:
    result = serve_once("--port", port, settings=development)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --port" in one_line(result)


def test_reload_is_for_development_only(
    development: dict[str, str], production: dict[str, str], tmp_path: Path
) -> None:
    refused = serve_once("--reload", "--port", str(free_port()), settings=production)
    assert refused.returncode == 1 and "--reload is for development only" in one_line(refused)

    port = free_port()
    log = tmp_path / "reload.log"
    with serving("--reload", "--port", str(port), settings=development, log=log) as process:
        wait_for(log, "Health:", process)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200


def test_a_key_file_others_can_read_stops_production(
    production: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "keys.json").chmod(0o644)
    result = serve_once("--port", str(free_port()), settings=production)
    assert result.returncode == 1 and result.stdout == ""
    line = one_line(result)
    assert "GRAPHQL_API_JWT_KEYS_FILE" in line and "(mode 0644)" in line
    assert f"chmod 600 {tmp_path / 'keys.json'}" in line


def test_a_key_file_others_can_read_is_one_warning_in_development(
    development: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "keys.json").chmod(0o640)
    log = tmp_path / "serve.log"
    with serving("--port", str(free_port()), settings=development, log=log) as process:
        output = wait_for(log, "Health:", process)
    warnings = [line for line in output.splitlines() if "chmod 600" in line]
    assert len(warnings) == 1 and " WARNING graphql_api.keys  " in warnings[0], output
    assert "GRAPHQL_API_JWT_KEYS_FILE" in warnings[0] and "(mode 0640)" in warnings[0]


def test_a_missing_key_file_names_the_setting(production: dict[str, str], tmp_path: Path) -> None:
    result = serve_once(
        "--port", str(free_port()), settings={**production, "JWT_KEYS_FILE": str(tmp_path / "no")}
    )
    assert result.returncode == 1 and "GRAPHQL_API_JWT_KEYS_FILE" in one_line(result)
