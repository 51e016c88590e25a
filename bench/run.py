"""`make bench`: ours beside the physical limit of its stack (raw), on SQLite and PostgreSQL.

Per database (a SQLite file, a throwaway PostgreSQL database; 10 users, 200 categories and
one real session each), starts each server with uvicorn pinned to core 0 (``taskset -c
0``) and drives it from core 1 with ``wrk`` (``taskset -c 1``) through ``workload.lua``,
which checks every response (200, no ``"errors"``). Per workload and server: a warm-up, a
run at full speed (requests/s, p50, p99), and a run at half that rate (p99 at half load).
Then the memory of ours across 100,000 W3 requests (SQLite), the keyset pagination check
on PostgreSQL, and the fan-out of one event to 1,000 subscriptions beside a bare
``websockets`` broadcast (``fanout.py``). Prints the table and the issue's target lines
(MET or MISSED, with the ratio), and writes ``bench-results/bench.md``, ``bench.json`` and
``bench.png``; exits 1 if any response was wrong, so a fast but broken server never wins.

The servers (``workloads.SERVERS``): raw (``raw.py``, the limit), floor (a constant from
FastAPI), ours-trusted (ours, TRUSTED_DOCUMENTS=require, the workloads sent by document
id), ours (free-form queries, TRUSTED_DOCUMENTS=off), rest and strawberry-default
(``apps.py``).

Run: ``make bench`` (or ``.venv/bin/python -m bench.run --help``; ``--quick`` for a
short run of everything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import fanout, observability
from bench.data import CLIENT_ID, Caller, production_settings, seed, sign_in
from bench.workloads import SERVERS, W3, WORKLOADS, Workload, manifest
from graphql_api.auth.keys import generate_key_file
from graphql_api.container import Container
from graphql_api.db.migrate import migrate
from graphql_api.db.models import Revocation
from graphql_api.services.revocation import RevocationList

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("workload.lua")
BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_CORE, CLIENT_CORE = "0", "1"

DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Issue 16's targets: ours (trusted documents) / raw per workload; ours / rest.
RAW_TARGETS = {"W1": 0.5, "W2": 0.5, "W3": 0.5, "W4": 0.3}
REST_TARGET = 1.2
OURS = ("ours-trusted", "ours")
MEMORY_CHECKPOINTS = (20_000, 100_000)
MEMORY_TOLERANCE = 0.10
KEYSET_TARGET = 1.2


@dataclass
class Cell:
    """What wrk measured for one server on one workload (latencies in microseconds)."""

    requests: int
    duration_us: int
    responses: int
    bad_status: int
    graphql_errors: int
    non2xx: int
    socket_errors: int
    timeouts: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def wrong(self) -> int:
        return self.bad_status + self.graphql_errors + self.non2xx


@dataclass
class Result:
    db: str
    server: str
    workload: str
    full: Cell
    half: Cell | None = None
    half_target_rps: float = 0.0


@dataclass
class Report:
    started: str
    machine: dict[str, str]
    settings: dict[str, object]
    results: list[Result] = field(default_factory=list)
    dbs: list[str] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    fanout: dict[str, dict[str, Any]] | None = None
    keyset: dict[str, object] | None = None
    revocation: dict[str, float] | None = None
    observability: dict[str, object] | None = None
    observability_markdown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cell(self, db: str, server: str, workload: str) -> Result | None:
        for result in self.results:
            if result.db == db and result.server == server and result.workload == workload:
                return result
        return None


# ---------------------------------------------------------------------------- setup


def _apt_install(program: str, *, required: bool) -> str | None:
    """``program`` from PATH, installed from the Debian packages when missing (None: it
    could not be; with ``required``, a failed install stops the run)."""
    found = shutil.which(program)
    if found:
        return found
    print(f"{program} not found: installing it from the Debian packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", program]
    if subprocess.run(install, check=False).returncode != 0:  # noqa: S603
        subprocess.run([*sudo, "apt-get", "update"], check=required)  # noqa: S603
        subprocess.run(install, check=required)  # noqa: S603
    return shutil.which(program)


def ensure_wrk() -> str:
    found = _apt_install("wrk", required=True)
    if not found:
        sys.exit("bench: wrk is not installed and could not be installed")
    return found


def ensure_valgrind() -> bool:
    """valgrind counts instructions for the observability comparison; installed from the
    Debian packages when missing (False: it could not be, and the count is skipped)."""
    return _apt_install("valgrind", required=False) is not None


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "strawberry-graphql": version("strawberry-graphql"),
        "graphql-core": version("graphql-core"),
        "fastapi": version("fastapi"),
        "starlette": version("starlette"),
        "uvicorn": version("uvicorn"),
        "sqlalchemy": version("sqlalchemy"),
    }


async def prepare(database_url: str, keys_file: Path) -> Caller:
    await migrate(database_url)
    container = Container(production_settings(database_url, keys_file))
    try:
        await seed(container.db)
        return await sign_in(container)
    finally:
        await container.close()


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of that kind: a file in ``tmp``, or a
    throwaway PostgreSQL database (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    import asyncpg

    name = f"graphql_api_bench_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- servers


class Server:
    """One server process pinned to the server core, logging into the results folder.
    Names starting with "ours" are ours (with ``env`` added: the observability copies);
    ours-trusted reads the workloads' manifest written beside the key file."""

    def __init__(
        self,
        name: str,
        database_url: str,
        keys_file: Path,
        logs: Path,
        env_extra: dict[str, str] | None = None,
        *,
        log_name: str | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(BENCH_DATABASE_URL=database_url, BENCH_KEYS_FILE=str(keys_file))
        env.update(env_extra or {})
        if name.startswith("ours"):
            env.update(
                GRAPHQL_API_ENV="production",
                GRAPHQL_API_DATABASE_URL=database_url,
                GRAPHQL_API_JWT_KEYS_FILE=str(keys_file),
                GRAPHQL_API_GOOGLE_CLIENT_IDS=CLIENT_ID,
                # The workloads send free-form queries, as to the other servers.
                GRAPHQL_API_TRUSTED_DOCUMENTS="off",
            )
            if name == "ours-trusted":
                env.update(
                    GRAPHQL_API_TRUSTED_DOCUMENTS="require",
                    GRAPHQL_API_TRUSTED_DOCUMENTS_FILES=str(manifest_file(keys_file)),
                )
            env.update(env_extra or {})
            command = [str(BIN / "graphql-api"), "serve", "--port", str(self.port)]
        else:
            factory = {
                "raw": "bench.raw:from_env",
                "floor": "bench.apps:floor",
                "rest": "bench.apps:rest_from_env",
                "strawberry-default": "bench.apps:strawberry_default_from_env",
            }[name]
            command = [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                factory,
                "--factory",
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        self.log = (logs / f"{log_name or name}.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            ["taskset", "-c", SERVER_CORE, *command],  # noqa: S607
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout} s")

    def cpu_seconds(self) -> float:
        """CPU time the server has used (every thread): a cost that other load on the
        machine does not inflate the way it does requests/s."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# ---------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Load:
    connections: int
    duration: int
    warmup: int
    half_duration: int
    memory_budget: int


def manifest_file(keys_file: Path) -> Path:
    return keys_file.with_name("bench.manifest.json")


def wrk(
    wrk_path: str,
    server: Server,
    workload: Workload,
    caller: Caller,
    *,
    connections: int,
    seconds: int,
    rate: float = 0.0,
    service_ms: float = 0.0,
) -> Cell:
    request = workload.request_for(server.name)
    assert request is not None
    env = dict(os.environ)
    env.update(
        BENCH_METHOD=request.method,
        BENCH_PATH=request.path,
        BENCH_BODY=(request.body or b"").decode(),
        BENCH_TOKEN=caller.token if workload.authenticated else "",
        BENCH_UNIQUE=f"b-{server.name}-{secrets.token_hex(4)}" if workload.unique_names else "",
        BENCH_RATE=str(rate),
        BENCH_CONNECTIONS=str(connections),
        BENCH_SERVICE_MS=str(service_ms),
    )
    command = [
        "taskset",
        "-c",
        CLIENT_CORE,
        wrk_path,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        server.url,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return Cell(**json.loads(line.removeprefix("BENCH_RESULT ")))
    raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")


def bench_server(
    wrk_path: str,
    server: Server,
    db: str,
    caller: Caller,
    load: Load,
    report: Report,
    workloads: list[Workload],
    *,
    memory: bool,
) -> None:
    """The workloads of one server, in order; ours also runs the memory check after W3."""
    served: dict[str, int] = {}
    for workload in workloads:
        if workload.request_for(server.name) is None:
            continue
        warm = wrk(
            wrk_path,
            server,
            workload,
            caller,
            connections=load.connections,
            seconds=load.warmup,
        )
        full = wrk(
            wrk_path,
            server,
            workload,
            caller,
            connections=load.connections,
            seconds=load.duration,
        )
        result = Result(db, server.name, workload.key, full)
        if load.half_duration:
            result.half_target_rps = full.rps / 2
            result.half = wrk(
                wrk_path,
                server,
                workload,
                caller,
                connections=load.connections,
                seconds=load.half_duration,
                rate=full.rps / 2,
                service_ms=1000 / full.rps,
            )
        report.results.append(result)
        served[workload.key] = sum(c.requests for c in (warm, full, result.half) if c is not None)
        half = f"  p99 at half rate {result.half.p99_us / 1000:7.2f} ms" if result.half else ""
        print(
            f"  {DATABASES[db]:10} {server.name:19} {workload.key}  {full.rps:8.0f} req/s  "
            f"p50 {full.p50_us / 1000:6.2f} ms  p99 {full.p99_us / 1000:7.2f} ms{half}"
            + (f"  WRONG: {full.wrong}" if full.wrong else ""),
            flush=True,
        )
        if memory and workload.key == "W3" and server.name == "ours":
            report.memory = memory_run(wrk_path, server, caller, load, served["W3"], full.rps)


def memory_run(
    wrk_path: str, server: Server, caller: Caller, load: Load, served: int, rps: float
) -> dict[str, int]:
    """Resident memory of ours once it has answered 20,000 and then 100,000 W3 requests.

    When ours is too slow to reach 100,000 within ``load.memory_budget`` seconds, the
    checkpoints shrink in proportion (the report says so) instead of blowing the time limit.
    """
    low, high = MEMORY_CHECKPOINTS
    reachable = served + int(load.memory_budget * rps)
    if reachable < high:
        low, high = max(served, reachable // 5), reachable
    memory: dict[str, int] = {"checkpoint_low": low, "checkpoint_high": high}
    for label, checkpoint in (("low", low), ("high", high)):
        while served < checkpoint:
            seconds = max(1, math.ceil((checkpoint - served) / rps))
            cell = wrk(wrk_path, server, W3, caller, connections=load.connections, seconds=seconds)
            if cell.wrong:
                raise RuntimeError(f"ours answered {cell.wrong} W3 requests wrongly")
            served += cell.requests
        memory[f"requests_{label}"] = served
        memory[f"rss_kib_{label}"] = server.rss_kib()
        print(
            f"  ours memory after {served:,} W3 requests: "
            f"{memory[f'rss_kib_{label}'] / 1024:.1f} MiB",
            flush=True,
        )
    return memory


# ---------------------------------------------------------------------------- report


def ratio(report: Report, db: str, numerator: str, denominator: str, workload: str) -> float | None:
    top = report.cell(db, numerator, workload)
    bottom = report.cell(db, denominator, workload)
    if top is None or bottom is None:
        return None
    return top.full.rps / bottom.full.rps


Target = tuple[str, str, str, bool | None]  # what, measured, wanted, met (None: reported)


def targets(report: Report) -> list[Target]:
    """Every target of the issue that this run measures, and the figures reported beside
    them (ours with free-form queries against raw)."""
    rows: list[Target] = []
    for db in report.dbs:
        title = DATABASES[db]
        for key, want in RAW_TARGETS.items():
            for server in OURS:
                value = ratio(report, db, server, "raw", key)
                if value is None:
                    continue
                trusted = server == "ours-trusted"
                rows.append(
                    (
                        f"{title} {key} {server} / raw",
                        f"{value:.3f}",
                        f">= {want}" if trusted else "(beside it)",
                        value >= want if trusted else None,
                    )
                )
        for key in ("W2", "W3", "W4"):
            for server in OURS:
                value = ratio(report, db, server, "rest", key)
                if value is not None:
                    rows.append(
                        (
                            f"{title} {key} {server} / rest",
                            f"{value:.2f}x",
                            f">= {REST_TARGET}x",
                            value >= REST_TARGET,
                        )
                    )
        for key in ("W2", "W3", "W4"):
            rest = report.cell(db, "rest", key)
            for server in OURS:
                ours = report.cell(db, server, key)
                if ours and rest and ours.half and rest.half:
                    rows.append(
                        (
                            f"{title} {key} p99 at half max rate, {server} vs rest",
                            f"{ours.half.p99_us / 1000:.2f} vs {rest.half.p99_us / 1000:.2f} ms",
                            "ours <= rest",
                            ours.half.p99_us <= rest.half.p99_us,
                        )
                    )
        value = ratio(report, db, "ours", "strawberry-default", "W3")
        if value is not None:
            rows.append(
                (f"{title} W3 ours / strawberry-default", f"{value:.2f}x", ">= 5x", value >= 5)
            )
    if report.memory:
        m = report.memory
        low, high = m["rss_kib_low"], m["rss_kib_high"]
        growth = (high - low) / low
        rows.append(
            (
                f"ours RSS after {m['requests_high']:,} W3 requests vs after {m['requests_low']:,}",
                f"{low / 1024:.1f} -> {high / 1024:.1f} MiB ({growth:+.1%})",
                f"within {MEMORY_TOLERANCE:.0%}",
                abs(growth) <= MEMORY_TOLERANCE,
            )
        )
    if report.keyset:
        k = report.keyset
        value = float(k["ratio"])  # type: ignore[arg-type]
        rows.append(
            (
                "keyset: page near the end / first page (1M rows, PostgreSQL)",
                f"{value:.2f}x ({k['after_ms']:.2f} / {k['first_ms']:.2f} ms)",
                f"<= {KEYSET_TARGET}x",
                value <= KEYSET_TARGET,
            )
        )
    return rows


def verdict(met: bool | None) -> str:
    return "-" if met is None else "MET" if met else "MISSED"


def rps_table(report: Report) -> list[str]:
    """Requests/s per server (rows) per database and workload (columns)."""
    columns = [
        (db, w.key)
        for db in report.dbs
        for w in WORKLOADS
        if any(r.db == db and r.workload == w.key for r in report.results)
    ]
    lines = [
        "| server | " + " | ".join(f"{DATABASES[db]} {key}" for db, key in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for server in SERVERS:
        cells = [report.cell(db, server, key) for db, key in columns]
        if any(cells):
            lines.append(
                f"| {server} | "
                + " | ".join(f"{c.full.rps:,.0f}" if c else "-" for c in cells)
                + " |"
            )
    return lines


def fanout_markdown(found: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| fan-out (one event) | subscribers | p50 ms | p99 ms | max ms | deliveries/s "
        "| connect s | checked |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, result in found.items():
        checked = f"{result['delivered']:,} ok" + (
            f", {result['wrong']} wrong, {result['missing']} missing"
            if result["wrong"] or result["missing"]
            else ""
        )
        lines.append(
            f"| {label} | {result['subscribers']:,} | {result['p50_ms']:.1f} | "
            f"{result['p99_ms']:.1f} | {result['max_ms']:.1f} | {result['events_per_s']:,.0f} | "
            f"{result['connect_s']:.1f} | {checked} |"
        )
    return lines


def markdown(report: Report) -> str:
    dbs = " and ".join(DATABASES[db] for db in report.dbs)
    lines = [
        f"Run {report.started} on {report.machine['cpu']} ({report.machine['cores']} cores, "
        f"shared), Python {report.machine['python']}, strawberry-graphql "
        f"{report.machine['strawberry-graphql']}, uvicorn {report.machine['uvicorn']}. "
        f"Servers on core {SERVER_CORE}, wrk on core {CLIENT_CORE}, "
        f"{report.settings['connections']} connections, {report.settings['duration']} s per "
        f"cell after a {report.settings['warmup']} s warm-up; {dbs}, 10 users, 200 categories.",
        "",
        "Requests/s:",
        "",
        *rps_table(report),
        "",
        "| db | workload | server | req/s | p50 ms | p99 ms "
        "| p99 ms at half rate (offered / got req/s) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for db in report.dbs:
        for workload in WORKLOADS:
            for server in SERVERS:
                result = report.cell(db, server, workload.key)
                if result is None:
                    continue
                full, half = result.full, result.half
                half_text = (
                    f"{half.p99_us / 1000:.2f} ({result.half_target_rps:.0f} / {half.rps:.0f})"
                    if half
                    else "-"
                )
                lines.append(
                    f"| {DATABASES[db]} | {workload.key} | {server} | {full.rps:,.0f} | "
                    f"{full.p50_us / 1000:.2f} | {full.p99_us / 1000:.2f} | {half_text} |"
                )
    lines += ["", "| target | measured | wanted | |", "|---|---|---|---|"]
    for what, measured, wanted, met in targets(report):
        lines.append(f"| {what} | {measured} | {wanted} | {verdict(met)} |")
    if report.fanout:
        lines += ["", *fanout_markdown(report.fanout)]
    if report.keyset:
        k = report.keyset
        lines += [
            "",
            f"Keyset plans: first page `{k['first_plan']}`, after id {k['after_id']:,} "
            f"`{k['after_plan']}`; EXPLAIN ANALYZE execution {k['first_exec_ms']:.3f} ms vs "
            f"{k['after_exec_ms']:.3f} ms.",
        ]
    if report.revocation:
        lines += ["", *revocation_markdown(report.revocation)]
    if report.observability_markdown:
        lines += ["", *report.observability_markdown, ""]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def revocation_markdown(cost: dict[str, float]) -> list[str]:
    lines = [
        f"Revocation check (issue 3), in-process on the bench database: "
        f"`RevocationList.is_revoked` with a fresh set costs {cost['check_ns']:.0f} ns per "
        f"request; one poll of the revocation log (every {cost['poll_interval_s']:g} s per "
        f"process) takes {cost['poll_ms']:.2f} ms (median; {cost['poll_1k_ms']:.2f} ms with "
        f"1,000 recent revocations in the log).",
    ]
    if cost.get("request_rate"):
        lines[0] += (
            f" At ours' W2 rate ({cost['request_rate']:,.0f} req/s) the poll adds "
            f"{cost['amortised_ns']:.0f} ns per request ({cost['amortised_1k_ns']:.0f} ns "
            f"with 1,000 revocations), so the whole check costs about "
            f"{cost['check_ns'] + cost['amortised_1k_ns']:.0f} ns of a "
            f"{1e9 / cost['request_rate'] / 1000:,.0f} us request."
        )
    return lines


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "raw": "#000000",
        "floor": "#9e9e9e",
        "rest": "#1f77b4",
        "strawberry-default": "#ff7f0e",
        "ours": "#98df8a",
        "ours-trusted": "#2ca02c",
    }
    workloads = [w for w in WORKLOADS if any(r.workload == w.key for r in report.results)]
    if not workloads or not report.dbs:
        return
    figure, axes = plt.subplots(
        len(report.dbs),
        len(workloads),
        figsize=(4 * len(workloads), 4 * len(report.dbs)),
        squeeze=False,
    )
    for row, db in zip(axes, report.dbs, strict=True):
        for axis, workload in zip(row, workloads, strict=True):
            names, values = [], []
            for server in SERVERS:
                result = report.cell(db, server, workload.key)
                if result is not None:
                    names.append(server)
                    values.append(result.full.rps)
            bars = axis.bar(names, values, color=[colors[n] for n in names])
            axis.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
            axis.set_title(f"{DATABASES[db]} {workload.key}: {workload.title}", fontsize=9)
            axis.tick_params(axis="x", labelrotation=30, labelsize=8)
            axis.set_ylabel("requests/s")
    figure.suptitle(f"graphql_api benchmark, {report.started} (one core per server)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per measured cell")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per cell")
    parser.add_argument(
        "--half-duration", type=int, default=4, help="seconds at half rate (0: skip)"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dbs", default=",".join(DATABASES), help="comma list of sqlite, postgres")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list")
    parser.add_argument(
        "--workloads", default=",".join(w.key for w in WORKLOADS), help="comma list: W1,W2"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run of everything: 2 s cells, 1 s at half rate, 100 subscribers; "
        "no memory, keyset or observability runs",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the 100k W3 memory run")
    parser.add_argument(
        "--memory-budget", type=int, default=200, help="max seconds for the memory run"
    )
    parser.add_argument("--no-keyset", action="store_true", help="skip the PostgreSQL check")
    parser.add_argument("--keyset-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--fanout-only", action="store_true", help="run only the fan-out (about a minute)"
    )
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out")
    parser.add_argument("--subscribers", type=int, default=1000, help="fan-out subscriptions")
    parser.add_argument("--fanout-rounds", type=int, default=10, help="events measured")
    parser.add_argument(
        "--observability-only",
        action="store_true",
        help="run only the cost of metrics and tracing (W2, W3; a few minutes)",
    )
    parser.add_argument(
        "--no-observability", action="store_true", help="skip the metrics and tracing cost"
    )
    parser.add_argument(
        "--observability-rounds", type=int, default=3, help="rounds per copy and workload"
    )
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="skip counting instructions per request under valgrind (observability)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.half_duration = 2, 1, 1
        args.no_memory = args.no_keyset = args.no_observability = True
        args.subscribers, args.fanout_rounds = min(args.subscribers, 100), 3
    if args.fanout_only:
        args.no_memory = args.no_keyset = args.no_observability = True
    dbs = [db for db in args.dbs.split(",") if db]
    servers = [name for name in args.servers.split(",") if name]
    workloads = [w for w in WORKLOADS if w.key in args.workloads.split(",")]
    unknown = (set(dbs) - set(DATABASES)) | (set(servers) - set(SERVERS))
    if unknown or not workloads:
        parser.error(f"unknown databases, servers or workloads: {sorted(unknown)}")

    wrk_path = "" if args.fanout_only else ensure_wrk()
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    load = Load(
        args.connections, args.duration, args.warmup, args.half_duration, args.memory_budget
    )
    report = Report(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        settings={
            "connections": load.connections,
            "duration": load.duration,
            "warmup": load.warmup,
            "half_duration": load.half_duration,
            "subscribers": args.subscribers,
            "fanout_rounds": args.fanout_rounds,
        },
    )
    print(f"bench: {report.machine['cpu']}, {report.machine['cores']} cores", flush=True)

    with tempfile.TemporaryDirectory(prefix="graphql-api-bench-") as tmp:
        keys_file = Path(tmp) / "jwks.json"
        generate_key_file(keys_file)
        manifest_file(keys_file).write_text(json.dumps(manifest(), indent=2))
        for db in dbs:
            with database(db, Path(tmp)) as database_url:
                caller = asyncio.run(prepare(database_url, keys_file))
                print(f"bench: {DATABASES[db]} database and session ready", flush=True)
                if db == "sqlite" and not args.no_observability:
                    run_observability(args, report, wrk_path, database_url, keys_file, caller)
                    if args.observability_only:
                        return finish_observability_only(report, args.out, started)
                if not args.fanout_only:
                    report.dbs.append(db)
                    for name in servers:
                        server = Server(
                            name, database_url, keys_file, logs, log_name=f"{name}-{db}"
                        )
                        try:
                            bench_server(
                                wrk_path,
                                server,
                                db,
                                caller,
                                load,
                                report,
                                workloads,
                                memory=db == "sqlite" and not args.no_memory,
                            )
                        finally:
                            server.stop()
                        if server.process.returncode not in (0, -signal.SIGTERM):
                            report.notes.append(
                                f"{name} ({db}) exited with {server.process.returncode}"
                            )
                if db == dbs[0] and not args.no_fanout:
                    report.fanout = fanout_run(
                        database_url, keys_file, caller, logs, args, Path(tmp)
                    )
                    report.notes.append(
                        f"Fan-out on {DATABASES[db]}, one process, no Redis: "
                        f"{args.fanout_rounds} events, each to {args.subscribers:,} "
                        f"categoryEvents subscriptions of one asyncio client on core "
                        f"{CLIENT_CORE}; latency from just before the trigger (ours: the "
                        f"createCategory POST) to each arrival; deliveries/s is subscribers "
                        f"over the last arrival's latency (median event)."
                    )
                w2 = report.cell(db, "ours", "W2")
                if db == "sqlite" and not args.fanout_only:
                    report.revocation = asyncio.run(
                        revocation_cost(database_url, keys_file, w2.full.rps if w2 else None)
                    )
                    print("  " + revocation_markdown(report.revocation)[0], flush=True)

    if report.memory and report.memory["checkpoint_high"] < MEMORY_CHECKPOINTS[1]:
        report.notes.append(
            f"Memory: ours answers W3 too slowly to reach {MEMORY_CHECKPOINTS[1]:,} requests "
            f"within {load.memory_budget} s, so the checkpoints were scaled down to "
            f"{report.memory['requests_low']:,} and {report.memory['requests_high']:,}."
        )
    if not args.no_keyset:
        report.keyset = keyset(args.keyset_rows)

    elapsed = time.monotonic() - started
    report.notes.append(
        f"Half rate: wrk (not wrk2, which Debian does not package) with a random think time "
        f"per connection so that about half the measured maximum is offered; closed loop, so "
        f"p99 under a stall is understated (coordinated omission). Whole run {elapsed:.0f} s."
    )
    text = markdown(report)
    (args.out / "bench.md").write_text(text)
    (args.out / "bench.json").write_text(json.dumps(asdict(report), indent=2, default=str))
    chart(report, args.out / "bench.png")
    print()
    print(text)
    print(f"bench: wrote {args.out / 'bench.md'}, bench.json and bench.png")

    wrong = [r for r in report.results if r.full.wrong or (r.half and r.half.wrong)]
    for r in wrong:
        cells = [c for c in (r.full, r.half) if c is not None]
        print(
            f"bench: FAILED: {DATABASES[r.db]} {r.server} {r.workload}: "
            f"{sum(c.bad_status for c in cells)} non-200, "
            f"{sum(c.graphql_errors for c in cells)} with errors, "
            f"{sum(c.non2xx for c in cells)} non-2xx (wrk)",
            file=sys.stderr,
        )
    fanout_failed = [
        label
        for label, found in (report.fanout or {}).items()
        if found["wrong"] or found["missing"] or not found["delivered"]
    ]
    for label in fanout_failed:
        print(f"bench: FAILED: fan-out {label}: {report.fanout and report.fanout[label]}")
    return 1 if wrong or fanout_failed else 0


def run_observability(
    args: argparse.Namespace,
    report: Report,
    wrk_path: str,
    database_url: str,
    keys_file: Path,
    caller: Caller,
) -> None:
    logs = args.out / "logs"
    print("bench: the cost of metrics and tracing (ours, W2 and W3)", flush=True)
    comparison = observability.compare(
        start=lambda name, env: Server(name, database_url, keys_file, logs, env),
        measure=lambda server, workload, seconds: wrk(
            wrk_path,
            server,
            workload,
            caller,
            connections=args.connections,
            seconds=seconds,
        ),
        sink_port=free_port(),
        client_core=CLIENT_CORE,
        logs=logs,
        rounds=args.observability_rounds,
        duration=args.duration,
        warmup=args.warmup,
        count_instructions=not args.no_instructions and ensure_valgrind(),
    )
    report.observability = observability.as_json(comparison)
    report.observability_markdown = observability.markdown(comparison)
    if comparison.wrong:
        report.notes.append(f"observability: {comparison.wrong} wrong responses")


# ---------------------------------------------------------------------------- fan-out


def fanout_client(arguments: list[str], timeout: float) -> dict[str, Any]:
    """One fan-out client process on the client core; its FANOUT_RESULT."""
    done = subprocess.run(  # noqa: S603
        ["taskset", "-c", CLIENT_CORE, str(BIN / "python"), "-m", "bench.fanout", "client"]  # noqa: S607
        + arguments,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"fan-out client failed ({done.returncode}): {done.stderr[-3000:]}")
    return fanout.parse(done.stdout)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the bare broadcast server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def fanout_run(
    database_url: str,
    keys_file: Path,
    caller: Caller,
    logs: Path,
    args: argparse.Namespace,
    tmp: Path,
) -> dict[str, dict[str, Any]]:
    """One createCategory to ``args.subscribers`` subscriptions of ours, then the same JSON
    from a bare websockets broadcast server; both servers on the server core."""
    subscribers, rounds = args.subscribers, args.fanout_rounds
    common = ["--subscribers", str(subscribers), "--rounds", str(rounds)]
    timeout = 120 + rounds * 40 + subscribers / 10
    print(f"bench: fan-out of one event to {subscribers:,} subscriptions", flush=True)
    # One user holds every subscription: its per-user and per-process socket limits are
    # raised for the benchmark (every other defence stays on).
    limits = {
        "GRAPHQL_API_WS_MAX_CONNECTIONS_PER_USER": str(subscribers + 10),
        "GRAPHQL_API_MAX_CONNECTIONS": str(subscribers + 100),
    }
    server = Server("ours", database_url, keys_file, logs, limits, log_name="ours-fanout")
    try:
        ws = server.url.replace("http://", "ws://") + "/graphql"
        ours = fanout_client(
            ["--mode", "ours", "--ws", ws, "--http", f"{server.url}/graphql"]
            + ["--token", caller.token, *common],
            timeout,
        )
    finally:
        server.stop()
    print(
        f"  ours: p50 {ours['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms, "
        f"{ours['events_per_s']:,.0f} deliveries/s ({ours['delivered']:,} checked, "
        f"{ours['wrong']} wrong, {ours['missing']} missing)",
        flush=True,
    )
    payload = tmp / "fanout-message.json"
    payload.write_text(ours["sample"] or json.dumps({"type": "next", "id": "1"}))
    port = free_port()
    with (logs / "bare-broadcast.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            ["taskset", "-c", SERVER_CORE, str(BIN / "python"), "-m", "bench.fanout"]  # noqa: S607
            + ["serve", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process)
            bare = fanout_client(
                ["--mode", "bare", "--ws", f"ws://127.0.0.1:{port}", "--payload", str(payload)]
                + common,
                timeout,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        f"  bare websockets broadcast: p50 {bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} "
        f"ms, {bare['events_per_s']:,.0f} deliveries/s",
        flush=True,
    )
    return {"ours": ours, "bare websockets broadcast": bare}


def finish_observability_only(report: Report, out: Path, started: float) -> int:
    text = "\n".join(report.observability_markdown) + "\n"
    (out / "observability.md").write_text(text)
    (out / "observability.json").write_text(json.dumps(report.observability, indent=2))
    print()
    print(text)
    print(f"bench: wrote {out / 'observability.md'} ({time.monotonic() - started:.0f} s)")
    return 1 if report.notes else 0


async def revocation_cost(
    database_url: str, keys_file: Path, request_rate: float | None, *, calls: int = 200_000
) -> dict[str, float]:
    """What the per-request revocation check of ours costs: the set lookup on every
    request, plus one poll query per process every ``poll_interval``, spread over the
    requests of that interval."""
    container = Container(production_settings(database_url, keys_file))
    try:
        revocations = container.revocations
        interval = revocations.poll_interval
        # A list that never goes stale during the loop: the lookup alone.
        fresh = RevocationList(
            db=container.db, clock=container.clock, poll_interval=3600, retention=3600
        )
        await fresh.refresh(force=True)
        for _ in range(1000):
            await fresh.is_revoked("bench-not-revoked")
        started = time.perf_counter()
        for _ in range(calls):
            await fresh.is_revoked("bench-not-revoked")
        check_ns = (time.perf_counter() - started) / calls * 1e9

        async def poll_ms(repeats: int = 200) -> float:
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                await revocations.refresh(force=True)
                timings.append((time.perf_counter() - started) * 1000)
            return sorted(timings)[len(timings) // 2]

        await revocations.refresh(force=True)
        poll = await poll_ms()
        now = container.clock.now()
        async with container.db.writer() as session:
            session.add_all(
                Revocation(session_id=f"bench-{n}", user_id=0, revoked_at=now, reason="bench")
                for n in range(1000)
            )
        poll_1k = await poll_ms()
    finally:
        await container.close()
    cost = {
        "check_ns": check_ns,
        "poll_ms": poll,
        "poll_1k_ms": poll_1k,
        "poll_interval_s": interval,
    }
    if request_rate:
        per_interval = request_rate * interval
        cost["request_rate"] = request_rate
        cost["amortised_ns"] = poll * 1e6 / per_interval
        cost["amortised_1k_ns"] = poll_1k * 1e6 / per_interval
    return cost


def keyset(rows: int) -> dict[str, object] | None:
    from bench import keyset as keyset_check

    print(f"bench: keyset pagination over {rows:,} categories on PostgreSQL", flush=True)
    try:
        result = asyncio.run(keyset_check.check(PG_ADMIN_DSN, rows=rows))
    except OSError as exc:
        print(f"bench: PostgreSQL unreachable at {PG_ADMIN_DSN}, keyset check skipped: {exc}")
        return None
    print(
        f"  filled in {result.fill_s:.1f} s; first page {result.first_ms:.2f} ms, "
        f"after id {result.after_id:,} {result.after_ms:.2f} ms",
        flush=True,
    )
    return {**asdict(result), "ratio": result.ratio, "exec_ratio": result.exec_ratio}


if __name__ == "__main__":
    sys.exit(main())
