"""Category events for subscriptions: published after each committed change, fanned out to
every subscriber on every process.

Each subscriber has a bounded queue. Fan-out never waits: a subscriber whose queue is full
is cut off (its ``on_overflow`` runs, and its transport closes it), so one slow consumer
slows nobody else. Within one process ``LocalEventBus`` fans out; with several processes
``RedisEventBus`` publishes to a Redis channel that every process listens to and fans out
from. Without Redis and with several processes, events could not reach every subscriber:
``UnavailableEventBus`` refuses subscriptions rather than deliver some events and not
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from graphql_api.errors import ServiceUnavailable
from graphql_api.records import CategoryRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("graphql_api.events")

CHANNEL = "graphql_api:category-events"
PUBLISH_TIMEOUT = 0.5  # seconds: a change is committed already; never hold it up longer


class ChangeKind(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class CategoryChange:
    """What happened to one category; ``record`` is the category after the change (None
    once deleted). Each subscriber resolves it with its own permissions."""

    kind: ChangeKind
    category_id: int
    owner_id: int
    record: CategoryRecord | None

    def to_json(self) -> bytes:
        record = None
        if self.record is not None:
            record = [
                *self.record[:4],
                self.record.created_at.isoformat(),
                self.record.updated_at.isoformat(),
            ]
        return json.dumps(
            {
                "kind": self.kind.value,
                "id": self.category_id,
                "owner": self.owner_id,
                "record": record,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> CategoryChange:
        document = json.loads(data)
        record = document["record"]
        return cls(
            kind=ChangeKind(document["kind"]),
            category_id=int(document["id"]),
            owner_id=int(document["owner"]),
            record=None
            if record is None
            else CategoryRecord(
                int(record[0]),
                str(record[1]),
                record[2],
                int(record[3]),
                datetime.fromisoformat(record[4]),
                datetime.fromisoformat(record[5]),
            ),
        )


class Subscriber:
    """One subscription's queue of changes, read with ``async for``."""

    def __init__(
        self,
        *,
        owner_id: int | None,
        max_queue: int,
        on_overflow: Callable[[], None] | None,
    ) -> None:
        self.owner_id = owner_id
        self._queue: asyncio.Queue[CategoryChange | None] = asyncio.Queue(max_queue)
        self._on_overflow = on_overflow
        self.overflowed = False

    def offer(self, change: CategoryChange) -> None:
        """Queue ``change`` if it is for this subscriber, without ever waiting."""
        if self.overflowed or (self.owner_id is not None and change.owner_id != self.owner_id):
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True
            if self._on_overflow is not None:
                self._on_overflow()

    def end(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> CategoryChange:
        change = await self._queue.get()
        if change is None or self.overflowed:
            raise StopAsyncIteration
        return change


class EventBus(Protocol):
    def check_available(self) -> None:
        """Raise ``ServiceUnavailable`` when subscriptions cannot be served here."""
        ...

    async def publish(self, change: CategoryChange) -> None:
        """Deliver ``change`` to every subscriber; never raises."""
        ...

    def subscribe(
        self, *, owner_id: int | None, on_overflow: Callable[[], None] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscriber]:
        """A subscriber for the changes of ``owner_id`` (every owner's if None)."""
        ...


class LocalEventBus:
    """Fan-out within this process."""

    def __init__(self, *, max_queue: int = 100) -> None:
        self.max_queue = max_queue
        self._subscribers: set[Subscriber] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def check_available(self) -> None:
        return

    async def publish(self, change: CategoryChange) -> None:
        self.deliver(change)

    def deliver(self, change: CategoryChange) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(change)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, owner_id: int | None, on_overflow: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(
            owner_id=owner_id, max_queue=self.max_queue, on_overflow=on_overflow
        )
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            subscriber.end()

    async def start(self) -> None:
        return

    async def close(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber.end()


class RedisEventBus(LocalEventBus):
    """Fan-out to every process through one Redis channel; each process listens once and
    fans out locally. A publish that Redis cannot take is delivered locally at least."""

    def __init__(self, redis: Redis, *, max_queue: int = 100, channel: str = CHANNEL) -> None:
        super().__init__(max_queue=max_queue)
        self.redis = redis
        self.channel = channel
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._outage_logged = False

    async def publish(self, change: CategoryChange) -> None:
        try:
            await asyncio.wait_for(
                self.redis.publish(self.channel, change.to_json()), PUBLISH_TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001 - the change is committed; deliver what we can
            if not self._outage_logged:
                self._outage_logged = True
                logger.warning(
                    "cannot publish a category event to Redis: other processes miss it",
                    extra={"event": "events_publish_failed", "reason": exc.__class__.__name__},
                )
            self.deliver(change)
            return
        self._outage_logged = False

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())
        # Subscribers may come at once: do not hand out events that this process would miss.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 2.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await super().close()

    async def _listen(self) -> None:
        delay = 0.1
        lost = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._listening.set()
                delay = 0.1
                if lost:
                    lost = False
                    logger.warning(
                        "category event listener has Redis again",
                        extra={"event": "events_listener_recovered"},
                    )
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.deliver(CategoryChange.from_json(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect: Redis restarts, networks blip
                if not lost:  # once per outage, not once per reconnect attempt
                    lost = True
                    logger.warning(
                        "category event listener lost Redis; reconnecting",
                        extra={"event": "events_listener_lost", "reason": exc.__class__.__name__},
                    )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class UnavailableEventBus(LocalEventBus):
    """Several processes and no Redis: changes cannot reach every subscriber."""

    REASON = "Subscriptions are off: this service runs several processes without REDIS_URL."

    def check_available(self) -> None:
        raise ServiceUnavailable(self.REASON, retry_after=60)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, owner_id: int | None, on_overflow: Callable[[], None] | None = None
    ) -> AsyncIterator[Subscriber]:
        self.check_available()
        yield Subscriber(owner_id=owner_id, max_queue=1, on_overflow=None)  # pragma: no cover


def bus_for(*, redis: Redis | None, processes: int, max_queue: int, database: str) -> LocalEventBus:
    """The event bus this deployment needs. Processes share a channel when they share a
    database (``database`` names it): events are about that database's categories."""
    if redis is not None:
        digest = hashlib.sha256(database.encode()).hexdigest()[:16]
        return RedisEventBus(redis, max_queue=max_queue, channel=f"{CHANNEL}:{digest}")
    if processes > 1:
        return UnavailableEventBus(max_queue=max_queue)
    return LocalEventBus(max_queue=max_queue)
