"""Private dependencies the fault tests may break: a ``redis-server`` of their own (the shared
one is never touched) and a tmpfs of a few hundred kilobytes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.live_server import free_port


def unavailable(reason: str) -> None:
    """Skip for lack of a tool, except under CI=true, where that is a failure."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def ensure_redis_server() -> str:
    """The ``redis-server`` executable; under CI=true installed with apt-get when missing."""
    found = shutil.which("redis-server")
    if found is None and IN_CI:
        subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=300)  # noqa: S607
        subprocess.run(  # noqa: S603
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],  # noqa: S607
            check=False,
            timeout=600,
        )
        found = shutil.which("redis-server")
    if found is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    assert found is not None
    return found


class RedisServer:
    """A ``redis-server`` on a free port, without persistence, that a test may kill and start
    again on the same port (a Redis restart: every connection to it is gone)."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return self
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to any client."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class Tmpfs:
    """A tmpfs of ``size`` mounted on ``path`` (root only), unmounted by ``close``."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    def mount(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            mounted = subprocess.run(  # noqa: S603
                ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],  # noqa: S607
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError as exc:
            unavailable(f"cannot mount a tmpfs: {exc}")
        if mounted.returncode != 0:
            unavailable(f"cannot mount a tmpfs (root and CAP_SYS_ADMIN needed): {mounted.stderr}")
        return self

    def fill(self) -> Path:
        """Take every free byte with a file (returned); deleting it frees them again."""
        filler = self.path / "filler"
        descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for block in (b"\0" * 65536, b"\0" * 512, b"\0"):
                with contextlib.suppress(OSError):  # ENOSPC: full at this block size
                    while os.write(descriptor, block):
                        pass
        finally:
            os.close(descriptor)
        return filler

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, timeout=30)  # noqa: S603,S607
