"""A real ``graphql-api serve`` subprocess on a free 127.0.0.1 port, for tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "graphql_api"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without our settings, plus ``GRAPHQL_API_<NAME>``s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_API_")}
    env.update({f"GRAPHQL_API_{name}": value for name, value in settings.items()})
    return env


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    settings: dict[str, str]

    @classmethod
    def start(
        cls,
        *,
        settings: dict[str, str],
        log_dir: Path,
        timeout: float = 30,
        arguments: tuple[str, ...] = (),
    ) -> LiveServer:
        """Start ``serve`` with ``settings`` (and more ``arguments``, e.g. ``--workers``)
        and wait until /readyz answers 200. Production never migrates on its own: its
        database is migrated first, as an operator would."""
        if settings.get("ENV") == "production":
            migrated = subprocess.run(  # noqa: S603 - our own CLI
                [*COMMAND, "migrate"],
                cwd=ROOT,
                env=environment(settings),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if migrated.returncode != 0:
                pytest.fail(f"graphql-api migrate failed:\n{migrated.stderr}")
        port = free_port()
        log = log_dir / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own CLI
                [*COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), *arguments],
                cwd=ROOT,
                env=environment(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = cls(f"http://127.0.0.1:{port}", process, log, dict(settings))
        server.wait_ready(timeout)
        return server

    def cli(self, *args: str) -> str:
        """``graphql-api ARGS`` with this server's settings (its database): the output."""
        result = subprocess.run(  # noqa: S603 - our own CLI
            [*COMMAND, *args],
            cwd=ROOT,
            env=environment(self.settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"graphql-api serve exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"graphql-api serve did not become ready:\n{self.output()}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (uvicorn drains in-flight requests), then SIGKILL after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
