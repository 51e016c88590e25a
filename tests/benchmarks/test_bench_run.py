"""`make bench` run for real at a tiny scale: wrk against raw, a fan-out to five subscribers.

What the in-process smoke test cannot show: that the harness starts each server, that
wrk's script counts every response it checks (and counts a wrong one as wrong), and that
the fan-out client delivers, checks and times every event. Needs ``wrk`` (``make bench``
installs it); skipped without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workloads import Workload

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")


def bench(out: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench.run", "--out", str(out), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_tiny_run_checks_every_response_of_raw_and_times_the_fan_out(tmp_path: Path) -> None:
    done = bench(
        tmp_path,
        *("--dbs", "sqlite", "--servers", "raw", "--connections", "2"),
        *("--duration", "1", "--warmup", "1", "--half-duration", "1"),
        *("--no-memory", "--no-keyset", "--no-observability"),
        *("--subscribers", "5", "--fanout-rounds", "2"),
    )

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    cells = {r["workload"]: r for r in report["results"] if r["server"] == "raw"}
    assert sorted(cells) == ["W1", "W2", "W3", "W4"]
    for result in cells.values():
        for cell in (result["full"], result["half"]):
            # Every response was seen by the script's check, and none was wrong.
            assert cell["requests"] > 0 and cell["responses"] == cell["requests"]
            assert cell["bad_status"] == cell["graphql_errors"] == cell["non2xx"] == 0
    for found in report["fanout"].values():
        assert found["delivered"] == 5 * 2 and found["wrong"] == found["missing"] == 0
        assert 0 < found["p50_ms"] <= found["p99_ms"]
    assert (tmp_path / "bench.md").read_text().count("raw") >= 4


def test_wrk_counts_a_wrong_answer_as_wrong(tmp_path: Path) -> None:
    from bench.data import Caller
    from bench.run import Server, wrk
    from graphql_api.auth.keys import generate_key_file

    keys = tmp_path / "jwks.json"
    generate_key_file(keys)
    # raw answers an operation it does not know with 400 and an "errors" list.
    unknown = Workload("WX", "unknown to raw", "{ nothing }", None, None, False)
    server = Server("raw", f"sqlite+aiosqlite:///{tmp_path}/none.db", keys, tmp_path)
    try:
        cell = wrk(
            shutil.which("wrk") or "wrk",
            server,
            unknown,
            Caller(0, "", ""),
            connections=1,
            seconds=1,
        )
    finally:
        server.stop()

    assert cell.requests > 0 and cell.wrong >= cell.requests
