"""Instructions per request of ours, counted by valgrind (callgrind): the observability
comparison's steady figure on a shared machine.

Requests per second and even CPU time move with whatever else the machine runs; the
number of instructions a request executes does not (within a percent or two: the
revocation poll and the batch exports run on timers). ``count()`` runs this module under
``valgrind --tool=callgrind --instr-atstart=no``: it builds the app in-process (SQLite,
the benchmark's data and token, production settings, free-form queries), warms it up,
and counts only while it sends ``requests`` requests straight to the ASGI app (no
network, no server loop), then flushes the spans still batched so that their export is
counted too. Run: ``python -m bench.instructions VARIANT W2|W3 N`` (under
valgrind; ``count()`` does that).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from bench.workloads import W2, W3

_COLLECTED = re.compile(r"Collected : (\d+)")


def count(environment: dict[str, str], metrics: bool, workload: str, requests: int) -> float:
    """Instructions per request of ours with ``environment`` (``OTEL_*``) and ``metrics``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    env.update(environment)
    with tempfile.TemporaryDirectory(prefix="graphql-api-instructions-") as tmp:
        if metrics:
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp  # as serve sets it up
        done = subprocess.run(  # noqa: S603
            [  # noqa: S607
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                "-m",
                "bench.instructions",
                "metrics" if metrics else "-",
                workload,
                str(requests),
            ],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1)) / requests


def _instrument(on: bool) -> None:
    subprocess.run(  # noqa: S603
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],  # noqa: S607
        check=True,
        capture_output=True,
    )


async def _run(metrics: bool, workload: str, requests: int) -> None:
    from bench.data import production_settings, seed, sign_in
    from graphql_api.app import create_app
    from graphql_api.auth.keys import generate_key_file
    from graphql_api.container import Container
    from graphql_api.db.migrate import migrate

    with tempfile.TemporaryDirectory(prefix="graphql-api-instructions-db-") as tmp:
        keys = Path(tmp) / "jwks.json"
        generate_key_file(keys)
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await migrate(url)
        settings = production_settings(url, keys, metrics=metrics)
        container = Container(settings)
        await seed(container.db)
        caller = await sign_in(container)
        app = create_app(container=container)
        body = (W2 if workload == "W2" else W3).graphql.body
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/graphql",
            "raw_path": b"/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {caller.token}".encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }

        async def one() -> None:
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.Event().wait()  # no disconnect while answering
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            statuses: list[int] = []

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(dict(scope), receive, send)
            if statuses != [200]:
                raise RuntimeError(f"answered {statuses}")

        async with app.lifespan():
            for _ in range(100):
                await one()
            _instrument(True)
            for _ in range(requests):
                await one()
            if container.tracing is not None:
                container.tracing.provider.force_flush()
            _instrument(False)


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1] == "metrics", sys.argv[2], int(sys.argv[3])))
