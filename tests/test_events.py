"""Category events: fan-out that never waits, cut-off for a subscriber too far behind,
Redis across processes, and the session watch that ends sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from graphql_api.container import Container
from graphql_api.errors import ServiceUnavailable
from graphql_api.records import CategoryRecord
from graphql_api.services.events import (
    CategoryChange,
    ChangeKind,
    LocalEventBus,
    RedisEventBus,
    UnavailableEventBus,
    bus_for,
)
from tests.conftest import IN_CI

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def change(
    category_id: int, owner_id: int = 1, kind: ChangeKind = ChangeKind.CREATED
) -> CategoryChange:
    record = CategoryRecord(category_id, f"c{category_id}", "d", owner_id, NOW, NOW)
    return CategoryChange(
        kind, category_id, owner_id, None if kind is ChangeKind.DELETED else record
    )


async def drain(subscriber: AsyncIterator[CategoryChange], count: int) -> list[int]:
    return [(await asyncio.wait_for(anext(subscriber), 2)).category_id for _ in range(count)]


def test_a_change_crosses_processes_as_json_unchanged() -> None:
    for original in (change(7), change(8, kind=ChangeKind.DELETED)):
        assert CategoryChange.from_json(original.to_json()) == original


async def test_every_subscriber_gets_every_change_and_an_owner_filter_its_owners() -> None:
    bus = LocalEventBus()
    async with bus.subscribe(owner_id=None) as everyone, bus.subscribe(owner_id=2) as twos:
        for n, owner in ((1, 1), (2, 2), (3, 1)):
            await bus.publish(change(n, owner))
        assert await drain(everyone, 3) == [1, 2, 3]
        assert await drain(twos, 1) == [2]
    assert bus.subscribers == 0


async def test_a_subscriber_too_far_behind_is_cut_off_and_the_others_are_not() -> None:
    bus = LocalEventBus(max_queue=3)
    cut: list[str] = []
    async with (
        bus.subscribe(owner_id=None, on_overflow=lambda: cut.append("slow")) as slow,
        bus.subscribe(owner_id=None, on_overflow=lambda: cut.append("fast")) as fast,
    ):
        received: list[int] = []
        for n in range(10):
            await bus.publish(change(n))
            received.extend(await drain(fast, 1))  # the fast one keeps up
        assert received == list(range(10))
        assert cut == ["slow"]  # once, at the fourth change
        # Cut off: its transport closes it; nothing more is handed to it.
        with pytest.raises(StopAsyncIteration):
            await anext(slow)


async def test_several_processes_without_redis_refuse_to_subscribe() -> None:
    bus = bus_for(redis=None, processes=2, max_queue=10, database="sqlite://")
    assert isinstance(bus, UnavailableEventBus)
    with pytest.raises(ServiceUnavailable):
        bus.check_available()
    assert isinstance(bus_for(redis=None, processes=1, max_queue=10, database="x"), LocalEventBus)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no Redis here"
        if IN_CI:
            pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    yield REDIS_URL


async def test_redis_carries_a_change_to_every_process_once(redis_url: str) -> None:
    from redis.asyncio import Redis

    channel = f"graphql_api:test:{secrets.token_hex(6)}"
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    buses = [RedisEventBus(client, channel=channel) for client in clients]
    for bus in buses:
        await bus.start()
    try:
        async with (
            buses[0].subscribe(owner_id=None) as here,
            buses[1].subscribe(owner_id=None) as there,
        ):
            await buses[0].publish(change(41))
            await buses[1].publish(change(42))
            assert await drain(here, 2) == [41, 42]
            assert await drain(there, 2) == [41, 42]
    finally:
        for bus, client in zip(buses, clients, strict=True):
            await bus.close()
            await client.aclose()


async def test_without_redis_a_change_still_reaches_this_process_and_the_outage_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    bus = RedisEventBus(client, channel="graphql_api:test:down")
    try:
        with caplog.at_level(logging.WARNING, logger="graphql_api.events"):
            async with bus.subscribe(owner_id=None) as here:
                await bus.publish(change(1))
                await bus.publish(change(2))
                assert await drain(here, 2) == [1, 2]
        said = [r for r in caplog.records if getattr(r, "event", "") == "events_publish_failed"]
        assert len(said) == 1
    finally:
        await bus.close()
        await client.aclose()


async def test_a_watched_session_is_heard_of_when_it_ends_here_or_elsewhere(
    container: Container,
) -> None:
    revocations = container.revocations
    ended: list[str] = []
    stop = revocations.watch("here", lambda: ended.append("here"))
    revocations.watch("elsewhere", lambda: ended.append("elsewhere"))
    revocations.watch("never", lambda: ended.append("never"))()
    revocations.add(["here"])
    assert ended == ["here"]
    stop()  # already heard: stopping again is harmless
    # Another process ends a session: it reaches this one through the log.
    from graphql_api.db.models import Revocation

    async with container.db.writer() as session:
        session.add(
            Revocation(
                session_id="elsewhere", user_id=1, revoked_at=container.clock.now(), reason="logout"
            )
        )
        session.add(
            Revocation(
                session_id="never", user_id=1, revoked_at=container.clock.now(), reason="logout"
            )
        )
    for _ in range(40):
        if "elsewhere" in ended:
            break
        await asyncio.sleep(0.05)
    assert ended == ["here", "elsewhere"]
