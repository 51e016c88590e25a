"""`make bench`: GraphQL at the cost of REST, measured side by side in one run.

Prepares one SQLite file (10 users, 200 categories) and one real session, then starts each
server with uvicorn pinned to core 0 (``taskset -c 0``) and drives it from core 1 with
``wrk`` (``taskset -c 1``) through ``workload.lua``, which checks every response (200, no
``"errors"``). Per workload and server: a warm-up, a run at full speed (requests/s, p50,
p99), and a run at half that rate (p99 at half load). Then the memory of "ours" across
100,000 W3 requests and the keyset pagination check on PostgreSQL. Writes
``bench-results/bench.md``, ``bench.json`` and ``bench.png``; exits 1 if any response was
wrong, so a fast but broken server never wins.

Run: ``make bench`` (or ``.venv/bin/python -m bench.run --help``).
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import observability
from bench.data import CLIENT_ID, Caller, production_settings, seed, sign_in
from bench.workloads import SERVERS, W3, WORKLOADS, Workload
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

# (label, numerator server, denominator server, workload, target)
RATIOS = [
    ("W1 ours / floor", "ours", "floor", "W1", 0.5),
    ("W2 ours / rest", "ours", "rest", "W2", 1.0),
    ("W3 ours / rest", "ours", "rest", "W3", 0.8),
    ("W3 ours / strawberry-default", "ours", "strawberry-default", "W3", 5.0),
    ("W4 ours / rest", "ours", "rest", "W4", 0.9),
]
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
    memory: dict[str, int] = field(default_factory=dict)
    keyset: dict[str, object] | None = None
    revocation: dict[str, float] | None = None
    observability: dict[str, object] | None = None
    observability_markdown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cell(self, server: str, workload: str) -> Result | None:
        for result in self.results:
            if result.server == server and result.workload == workload:
                return result
        return None


# ---------------------------------------------------------------------------- setup


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it from the Debian packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, check=False).returncode != 0:  # noqa: S603
        subprocess.run([*sudo, "apt-get", "update"], check=True)  # noqa: S603
        subprocess.run(install, check=True)  # noqa: S603
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is not installed and could not be installed")
    return found


def ensure_valgrind() -> bool:
    """valgrind counts instructions for the observability comparison; installed from the
    Debian packages when missing (False: it could not be, and the count is skipped)."""
    if shutil.which("valgrind"):
        return True
    print("valgrind not found: installing it from the Debian packages", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "valgrind"]
    if subprocess.run(install, check=False).returncode != 0:  # noqa: S603
        subprocess.run([*sudo, "apt-get", "update"], check=False)  # noqa: S603
        subprocess.run(install, check=False)  # noqa: S603
    return shutil.which("valgrind") is not None


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------- servers


class Server:
    """One server process pinned to the server core, logging into the results folder.
    Names starting with "ours" are ours (with ``env`` added: the observability copies)."""

    def __init__(
        self,
        name: str,
        database_url: str,
        keys_file: Path,
        logs: Path,
        env_extra: dict[str, str] | None = None,
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
            command = [str(BIN / "graphql-api"), "serve", "--port", str(self.port)]
        else:
            factory = {
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
        self.log = (logs / f"{name}.log").open("wb")
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
        BENCH_UNIQUE=f"bench-{server.name}-{secrets.token_hex(4)}" if workload.unique_names else "",
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
    wrk_path: str, server: Server, caller: Caller, load: Load, report: Report, *, memory: bool
) -> None:
    """All workloads of one server, in order; ours also runs the memory check after W3."""
    served: dict[str, int] = {}
    for workload in WORKLOADS:
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
        result = Result(server.name, workload.key, full)
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
            f"  {server.name:19} {workload.key}  {full.rps:8.0f} req/s  "
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


def ratio(report: Report, numerator: str, denominator: str, workload: str) -> float | None:
    top, bottom = report.cell(numerator, workload), report.cell(denominator, workload)
    if top is None or bottom is None:
        return None
    return top.full.rps / bottom.full.rps


def targets(report: Report) -> list[tuple[str, str, str, bool]]:
    """(what, measured, target, met) for every target of the issue that this run measures."""
    rows = []
    for label, top, bottom, workload, target in RATIOS:
        value = ratio(report, top, bottom, workload)
        if value is not None:
            rows.append((label, f"{value:.2f}x", f">= {target}x", value >= target))
    for workload in ("W2", "W3", "W4"):
        ours, rest = report.cell("ours", workload), report.cell("rest", workload)
        if ours and rest and ours.half and rest.half:
            rows.append(
                (
                    f"{workload} p99 at half max rate, ours vs rest",
                    f"{ours.half.p99_us / 1000:.2f} ms vs {rest.half.p99_us / 1000:.2f} ms",
                    "ours <= rest",
                    ours.half.p99_us <= rest.half.p99_us,
                )
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


def markdown(report: Report) -> str:
    lines = [
        f"Run {report.started} on {report.machine['cpu']} ({report.machine['cores']} cores), "
        f"Python {report.machine['python']}, strawberry-graphql "
        f"{report.machine['strawberry-graphql']}, uvicorn {report.machine['uvicorn']}. "
        f"Servers on core {SERVER_CORE}, wrk on core {CLIENT_CORE}, "
        f"{report.settings['connections']} connections, {report.settings['duration']} s per "
        f"cell after a {report.settings['warmup']} s warm-up; SQLite, 10 users, 200 categories.",
        "",
        "| workload | server | req/s | p50 ms | p99 ms "
        "| p99 ms at half rate (offered / got req/s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        for server in SERVERS:
            result = report.cell(server, workload.key)
            if result is None:
                continue
            full, half = result.full, result.half
            half_text = (
                f"{half.p99_us / 1000:.2f} ({result.half_target_rps:.0f} / {half.rps:.0f})"
                if half
                else "-"
            )
            lines.append(
                f"| {workload.key} | {server} | {full.rps:,.0f} | {full.p50_us / 1000:.2f} | "
                f"{full.p99_us / 1000:.2f} | {half_text} |"
            )
    lines += ["", "| target | measured | wanted | met |", "|---|---|---|---|"]
    for what, measured, wanted, met in targets(report):
        lines.append(f"| {what} | {measured} | {wanted} | {'yes' if met else '**no**'} |")
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
        "floor": "#9e9e9e",
        "rest": "#1f77b4",
        "strawberry-default": "#ff7f0e",
        "ours": "#2ca02c",
    }
    figure, axes = plt.subplots(1, len(WORKLOADS), figsize=(14, 4))
    for axis, workload in zip(axes, WORKLOADS, strict=True):
        names, values = [], []
        for server in SERVERS:
            result = report.cell(server, workload.key)
            if result is not None:
                names.append(server)
                values.append(result.full.rps)
        bars = axis.bar(names, values, color=[colors[n] for n in names])
        axis.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        axis.set_title(f"{workload.key}: {workload.title}", fontsize=9)
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
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list")
    parser.add_argument("--no-memory", action="store_true", help="skip the 100k W3 memory run")
    parser.add_argument(
        "--memory-budget", type=int, default=200, help="max seconds for the memory run"
    )
    parser.add_argument("--no-keyset", action="store_true", help="skip the PostgreSQL check")
    parser.add_argument("--keyset-rows", type=int, default=1_000_000)
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

    wrk_path = ensure_wrk()
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
        },
    )
    print(f"bench: {report.machine['cpu']}, {report.machine['cores']} cores", flush=True)

    with tempfile.TemporaryDirectory(prefix="graphql-api-bench-") as tmp:
        keys_file = Path(tmp) / "jwks.json"
        generate_key_file(keys_file)
        database_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        caller = asyncio.run(prepare(database_url, keys_file))
        print(f"bench: database and session ready ({database_url})", flush=True)
        if not args.no_observability:
            print("bench: the cost of metrics and tracing (ours, W2 and W3)", flush=True)
            comparison = observability.compare(
                start=lambda name, env: Server(name, database_url, keys_file, logs, env),
                measure=lambda server, workload, seconds: wrk(
                    wrk_path,
                    server,
                    workload,
                    caller,
                    connections=load.connections,
                    seconds=seconds,
                ),
                sink_port=free_port(),
                client_core=CLIENT_CORE,
                logs=logs,
                rounds=args.observability_rounds,
                duration=load.duration,
                warmup=load.warmup,
                count_instructions=not args.no_instructions and ensure_valgrind(),
            )
            report.observability = observability.as_json(comparison)
            report.observability_markdown = observability.markdown(comparison)
            if comparison.wrong:
                report.notes.append(f"observability: {comparison.wrong} wrong responses")
        if args.observability_only:
            return finish_observability_only(report, args.out, started)
        for name in args.servers.split(","):
            server = Server(name, database_url, keys_file, logs)
            try:
                bench_server(wrk_path, server, caller, load, report, memory=not args.no_memory)
            finally:
                server.stop()
            if server.process.returncode not in (0, -signal.SIGTERM):
                report.notes.append(f"{name} exited with {server.process.returncode}")

        w2 = report.cell("ours", "W2")
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
            f"bench: FAILED: {r.server} {r.workload}: "
            f"{sum(c.bad_status for c in cells)} non-200, "
            f"{sum(c.graphql_errors for c in cells)} with errors, "
            f"{sum(c.non2xx for c in cells)} non-2xx (wrk)",
            file=sys.stderr,
        )
    return 1 if wrong else 0


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
