"""The layering the README describes, read from the imports themselves.

Data flows one way: transport (web/) -> context getter and resolvers (api/) -> services ->
repositories -> models (db/); the engine knows no domain; the leaves import nothing of
ours. An import that points the wrong way fails here, including imports made only for type
checking.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "graphql_api"

# Which of our packages and modules each layer may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "errors": set(),
    "clock": set(),
    "records": set(),
    "auth": {"clock", "errors", "settings"},
    "db": {"errors", "records"},
    "repositories": {"db", "records"},
    "rate_limit": {"clock", "errors", "settings"},
    # Metrics and traces: injected into the others; they import only its recorder.
    "observability": set(),
    "services": {
        "auth",
        "clock",
        "db",
        "errors",
        "observability",
        "rate_limit",
        "records",
        "repositories",
        "settings",
    },
    "engine": {"errors"},
    "api": {"engine", "errors", "records", "services"},
    "web": {"api", "engine", "errors", "settings"},
}
# Wiring and entry points: they may import anything.
WIRING = {"app", "cli", "container", "logging_config", "__main__", "__init__"}


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> set[str]:
    """The graphql_api layers ``path`` imports (absolute imports only: we use no others)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "graphql_api" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    layer = _layer(path)
    if layer in WIRING:
        return
    assert layer in ALLOWED, f"{path}: a module outside every known layer; add it to ALLOWED"
    wrong = _imports(path) - ALLOWED[layer] - {layer}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}/) imports {sorted(wrong)}"


def test_no_resolver_reads_a_repository_or_a_model() -> None:
    for path in (PACKAGE / "api").glob("*.py"):
        assert not {"repositories", "db"} & _imports(path), path


def test_the_web_layer_only_gathers_facts() -> None:
    for path in (PACKAGE / "web").glob("*.py"):
        assert not {"auth", "services", "container", "repositories", "db"} & _imports(path), path
