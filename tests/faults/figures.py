"""The measured figures of each fault (answer times, recovery, writes lost), printed as
they are taken (``pytest -s``) and once more in the run's summary."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

_taken: list[tuple[str, str, str]] = []


def record(fault: str, **figures: object) -> None:
    """Keep and print ``figures`` of ``fault``: one line per figure."""
    for name, value in figures.items():
        _taken.append((fault, name, str(value)))
        print(f"[fault figures] {fault}: {name} = {value}", flush=True)


def taken() -> list[tuple[str, str, str]]:
    return list(_taken)


def seconds(values: Sequence[float]) -> str:
    """``p50 0.012 s, max 0.300 s (n=40)``."""
    if not values:
        return "none"
    return f"p50 {statistics.median(values):.3f} s, max {max(values):.3f} s (n={len(values)})"
