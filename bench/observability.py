"""`make bench`'s observability comparison: what metrics and tracing cost "ours".

Five copies of ours serve the same database at once, each pinned to the server core:
everything off, METRICS=true (as `serve` runs it, in multiprocess mode), tracing with 10 %
sampling, both, and tracing with every request sampled. The tracing copies export over
OTLP/HTTP to ``otlp_sink`` on the client's core, which discards it. Each workload is run
on every copy in turn, ``rounds`` times in a rotating order (a noisy neighbour then
weighs on every copy alike), and each copy's median is compared with the copy that has
everything off. The same configurations are then counted in instructions per request
under valgrind (``instructions.py``), which no neighbour moves.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bench import instructions
from bench.workloads import W2, W3, Workload


class Measured(Protocol):
    """What run.py's ``Cell`` tells of one run."""

    @property
    def rps(self) -> float: ...

    @property
    def wrong(self) -> int: ...

    requests: int
    p50_us: int
    p99_us: int


class Served(Protocol):
    """What run.py's ``Server`` offers."""

    name: str
    url: str

    def cpu_seconds(self) -> float: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=Served)


@dataclass(frozen=True)
class Variant:
    server: str
    label: str
    metrics: bool
    sampled: float | None  # the share of requests traced; None: tracing off
    goal: float | None  # the largest acceptable loss of throughput against "off"

    def environment(self, sink_url: str) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.metrics:
            env["GRAPHQL_API_METRICS"] = "true"
        if self.sampled is not None:
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=sink_url,
                OTEL_SERVICE_NAME="graphql-api-bench",
                OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                OTEL_TRACES_SAMPLER_ARG=str(self.sampled),
            )
        return env


OFF = Variant("ours", "off", metrics=False, sampled=None, goal=None)
VARIANTS = (
    OFF,
    Variant("ours+metrics", "metrics", metrics=True, sampled=None, goal=0.05),
    Variant("ours+trace10", "tracing 10 %", metrics=False, sampled=0.1, goal=0.05),
    Variant("ours+metrics+trace10", "metrics + tracing 10 %", metrics=True, sampled=0.1, goal=0.05),
    Variant("ours+trace100", "tracing 100 %", metrics=False, sampled=1.0, goal=0.15),
)
WORKLOADS = (W2, W3)


@dataclass
class Comparison:
    rounds: int
    duration: int
    # workload -> variant label -> req/s of each round
    rps: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    p99_ms: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # The server's CPU time per request (microseconds), each round.
    cpu_us: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # Instructions per request (callgrind), when counted.
    instructions: dict[str, dict[str, float]] = field(default_factory=dict)
    exported: dict[str, int] = field(default_factory=dict)
    scraped_requests: float = 0.0
    wrong: int = 0

    def median(self, workload: str, label: str) -> float:
        return statistics.median(self.rps[workload][label])

    def loss(self, workload: str, label: str) -> float:
        return 1 - self.median(workload, label) / self.median(workload, OFF.label)

    def cpu(self, workload: str, label: str) -> float:
        return statistics.median(self.cpu_us[workload][label])

    def cpu_loss(self, workload: str, label: str) -> float:
        """The throughput lost on a core kept busy, from CPU time per request."""
        return 1 - self.cpu(workload, OFF.label) / self.cpu(workload, label)

    def instruction_loss(self, workload: str, label: str) -> float | None:
        counted = self.instructions.get(workload)
        if not counted:
            return None
        return 1 - counted[OFF.label] / counted[label]


class Sink:
    """``otlp_sink`` in a process of its own, on the client's core."""

    def __init__(self, port: int, core: str, logs: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = (logs / "otlp-sink.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            ["taskset", "-c", core, sys.executable, "-m", "bench.otlp_sink"]  # noqa: S607
            + ["--port", str(port)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the OTLP sink did not start") from None
                time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=1) as answer:  # noqa: S310
            stats: dict[str, int] = json.loads(answer.read())
            return stats

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def compare(
    *,
    start: Callable[[str, dict[str, str]], S],
    measure: Callable[[S, Workload, int], Measured],
    sink_port: int,
    client_core: str,
    logs: Path,
    rounds: int,
    duration: int,
    warmup: int,
    count_instructions: bool = True,
    workloads: Sequence[Workload] = WORKLOADS,
) -> Comparison:
    """``start(name, env)`` a server, ``measure(server, workload, seconds)`` one wrk run."""
    result = Comparison(rounds=rounds, duration=duration)
    sink = Sink(sink_port, client_core, logs)
    servers: dict[str, S] = {}
    try:
        for variant in VARIANTS:
            servers[variant.label] = start(variant.server, variant.environment(sink.url))
        for workload in workloads:
            rps = result.rps.setdefault(workload.key, {v.label: [] for v in VARIANTS})
            p99 = result.p99_ms.setdefault(workload.key, {v.label: [] for v in VARIANTS})
            cpu = result.cpu_us.setdefault(workload.key, {v.label: [] for v in VARIANTS})
            for turn in range(rounds):
                order = VARIANTS[turn % len(VARIANTS) :] + VARIANTS[: turn % len(VARIANTS)]
                for variant in order:
                    server = servers[variant.label]
                    if warmup:
                        measure(server, workload, warmup)
                    used = server.cpu_seconds()
                    cell = measure(server, workload, duration)
                    used = server.cpu_seconds() - used
                    result.wrong += cell.wrong
                    rps[variant.label].append(cell.rps)
                    p99[variant.label].append(cell.p99_us / 1000)
                    cpu[variant.label].append(used / max(cell.requests, 1) * 1e6)
                    print(
                        f"  {workload.key} round {turn + 1}  {variant.label:24} "
                        f"{cell.rps:8.0f} req/s  p99 {cell.p99_us / 1000:7.2f} ms  "
                        f"{cpu[variant.label][-1]:6.0f} us CPU/request",
                        flush=True,
                    )
        result.exported = sink.stats()
        result.scraped_requests = _requests_counted(servers["metrics"].url)
        for server in servers.values():
            server.stop()
        servers.clear()
        if count_instructions:
            for workload in workloads:
                requests = INSTRUCTION_REQUESTS[workload.key]
                counted = result.instructions.setdefault(workload.key, {})
                for variant in VARIANTS:
                    counted[variant.label] = instructions.count(
                        variant.environment(sink.url), variant.metrics, workload.key, requests
                    )
                    print(
                        f"  {workload.key} {variant.label:24} "
                        f"{counted[variant.label]:>12,.0f} instructions/request (valgrind)",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
        sink.stop()
    return result


# Requests counted per configuration under valgrind (about 50 times slower than native).
INSTRUCTION_REQUESTS = {"W2": 400, "W3": 120}


def _requests_counted(url: str) -> float:
    """graphql_api_requests_total summed over its series: metrics were really on."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("graphql_api_requests_total{")
    )


def markdown(result: Comparison) -> list[str]:
    labels = [v.label for v in VARIANTS]
    lines = [
        f"Observability cost: ours with each of these on, {result.rounds} rounds of "
        f"{result.duration} s per workload in rotating order: median req/s (p99 ms, loss "
        "against everything off), then the server's median CPU time per request (and the "
        "throughput that costs on a busy core). CPU time is the steadier figure on a shared "
        "machine: another process's load slows requests/s but not the CPU a request uses. "
        "Tracing exports over OTLP/HTTP to a local receiver that discards (on the client's "
        "core).",
        "",
        "| workload | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for workload, by_label in result.rps.items():
        cells = []
        for label in labels:
            median = statistics.median(by_label[label])
            p99 = statistics.median(result.p99_ms[workload][label])
            loss = "" if label == OFF.label else f", {result.loss(workload, label):+.1%}"
            cells.append(f"{median:,.0f} ({p99:.2f} ms{loss})")
        lines.append(f"| {workload} | " + " | ".join(cells) + " |")
        cpu_cells = []
        for label in labels:
            loss = "" if label == OFF.label else f", {result.cpu_loss(workload, label):+.1%}"
            cpu_cells.append(f"{result.cpu(workload, label):,.0f} us CPU{loss}")
        lines.append(f"| {workload} CPU/request | " + " | ".join(cpu_cells) + " |")
        counted = result.instructions.get(workload)
        if counted:
            cells = []
            for label in labels:
                counted_loss = result.instruction_loss(workload, label)
                shown = (
                    "" if label == OFF.label or counted_loss is None else f", {counted_loss:+.1%}"
                )
                cells.append(f"{counted[label] / 1e6:.2f} M{shown}")
            lines.append(f"| {workload} instructions/request | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| target | loss in req/s | from CPU/request | from instructions | wanted | met "
        "(req/s, CPU, instructions) |",
        "|---|---|---|---|---|---|",
    ]
    for what, measured, cpu, counted_text, wanted, met in targets(result):
        lines.append(
            f"| {what} | {measured} | {cpu} | {counted_text} | {wanted} | "
            + ", ".join(_yes(m) if m is not None else "-" for m in met)
            + " |"
        )
    lines += [
        "",
        f"The receiver took {result.exported.get('posts', 0):,} export requests "
        f"({result.exported.get('bytes', 0) / 1e6:.1f} MB); the metrics copy counted "
        f"{result.scraped_requests:,.0f} requests in graphql_api_requests_total.",
    ]
    return lines


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def targets(
    result: Comparison,
) -> list[tuple[str, str, str, str, str, tuple[bool | None, ...]]]:
    rows: list[tuple[str, str, str, str, str, tuple[bool | None, ...]]] = []
    for workload in result.rps:
        for variant in VARIANTS:
            if variant.goal is None:
                continue
            loss = result.loss(workload, variant.label)
            cpu_loss = result.cpu_loss(workload, variant.label)
            counted = result.instruction_loss(workload, variant.label)
            rows.append(
                (
                    f"{workload} {variant.label}",
                    f"{loss:.1%} ({result.median(workload, OFF.label):,.0f} -> "
                    f"{result.median(workload, variant.label):,.0f} req/s)",
                    f"{cpu_loss:.1%} ({result.cpu(workload, OFF.label):,.0f} -> "
                    f"{result.cpu(workload, variant.label):,.0f} us)",
                    "-" if counted is None else f"{counted:.1%}",
                    f"< {variant.goal:.0%}",
                    (
                        loss < variant.goal,
                        cpu_loss < variant.goal,
                        None if counted is None else counted < variant.goal,
                    ),
                )
            )
    return rows


def as_json(result: Comparison) -> dict[str, Any]:
    return {
        "rounds": result.rounds,
        "duration": result.duration,
        "rps": result.rps,
        "p99_ms": result.p99_ms,
        "cpu_us": result.cpu_us,
        "instructions": result.instructions,
        "cpu_loss": {
            w: {label: result.cpu_loss(w, label) for label in result.cpu_us[w]}
            for w in result.cpu_us
        },
        "loss": {w: {label: result.loss(w, label) for label in result.rps[w]} for w in result.rps},
        "exported": result.exported,
        "scraped_requests": result.scraped_requests,
    }
