"""compose.yaml, the example deployment, keeps the rules the image is built for.

It cannot be run here (its PostgreSQL, Redis and Caddy images come from a registry), so
these read it: every service of our image runs on a read-only root with a tmpfs /tmp and
read-only mounts, the replicas start only after the migration succeeded, and the proxy
is the one address whose X-Forwarded-For is believed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"
IMAGE = "graphql-api"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(document["services"])


def ours(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def test_two_replicas_and_a_migration_run_the_image(services: dict[str, Any]) -> None:
    assert sorted(ours(services)) == ["api1", "api2", "migrate"]
    assert services["migrate"]["command"] == ["migrate"]
    assert "command" not in services["api1"] and "command" not in services["api2"]


def test_every_service_of_the_image_runs_read_only_with_read_only_mounts(
    services: dict[str, Any],
) -> None:
    for name, service in ours(services).items():
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name  # noqa: S108 - a tmpfs in the container
        assert service["stop_grace_period"] == "30s", "longer than the 20 s drain"
        mounts = [volume.split(":") for volume in service["volumes"]]
        assert mounts and all(mode == "ro" for _source, _target, mode in mounts), name
        env = service["environment"]
        assert "GRAPHQL_API_ENV" not in env, "production comes from the image"
        assert env["GRAPHQL_API_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["GRAPHQL_API_GOOGLE_CLIENT_IDS"]
        # The keys file and the manifest sit in mounted directories (rotation replaces
        # the keys file; a single-file mount would keep the old one).
        targets = [target for _source, target, _mode in mounts]
        for setting in ("GRAPHQL_API_JWT_KEYS_FILE", "GRAPHQL_API_TRUSTED_DOCUMENTS_FILES"):
            assert str(Path(env[setting]).parent) in targets, (name, setting)


def test_replicas_start_after_the_migration_succeeded(services: dict[str, Any]) -> None:
    for name in ("api1", "api2"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
        assert depends_on["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_the_proxy_spreads_over_both_replicas_and_is_the_one_trusted_proxy(
    services: dict[str, Any],
) -> None:
    proxy = services["proxy"]
    command = proxy["command"]
    upstreams = [command[i + 1] for i, arg in enumerate(command) if arg == "--to"]
    assert upstreams == ["api1:8000", "api2:8000"]
    address = proxy["networks"]["backend"]["ipv4_address"]
    for name in ("api1", "api2"):
        assert services[name]["environment"]["GRAPHQL_API_TRUSTED_PROXIES"] == address
