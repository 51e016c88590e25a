"""What a client of the running service sees: each request's answer and how long it took,
a steady load of reads and writes, and the service's log lines."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LOGIN
from tests.fake_google import FakeGoogle

ME = "{ me { id } }"
READ = "{ categories(first: 5) { edges { node { id name } } } }"
WRITE = "mutation($name: String!) { createCategory(input: {name: $name}) { id name } }"
REFRESH = "mutation($t: String) { refreshToken(refreshToken: $t) { accessToken refreshToken } }"
# Answers a client may get while a dependency is down: "retry later", never a 500.
UNAVAILABLE = "SERVICE_UNAVAILABLE"


def fresh_ip() -> str:
    """A client address of its own (TRUSTED_PROXIES=127.0.0.1): its own rate-limit counters."""
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | secrets.randbits(96)))


@dataclass
class Outcome:
    """One request as the client saw it; ``status`` is None when no answer came back."""

    kind: str
    started: float  # time.monotonic()
    seconds: float
    status: int | None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    transport_error: str | None = None
    name: str | None = None  # a write's category name, to look for it afterwards

    @property
    def codes(self) -> list[str]:
        return [e.get("extensions", {}).get("code") for e in (self.body or {}).get("errors", [])]

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.codes

    @property
    def unavailable(self) -> bool:
        """SERVICE_UNAVAILABLE and nothing else, with a Retry-After header."""
        return (
            bool(self.codes) and set(self.codes) == {UNAVAILABLE} and "retry-after" in self.headers
        )

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    def describe(self) -> str:
        if self.status is None:
            return f"{self.kind}: no answer ({self.transport_error}) after {self.seconds:.2f} s"
        return f"{self.kind}: {self.status} {self.codes} after {self.seconds:.2f} s"


class Caller:
    """Requests to one running service (``url``), each timed."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url

    async def graphql(
        self,
        kind: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        ip: str | None = None,
        name: str | None = None,
    ) -> Outcome:
        headers = {"x-forwarded-for": ip or fresh_ip()}
        if token:
            headers["authorization"] = f"Bearer {token}"
        payload = {"query": query, "variables": variables or {}}
        return await self._send(kind, "POST", "/graphql", payload, headers, name)

    async def readyz(self) -> Outcome:
        return await self._send("readyz", "GET", "/readyz", None, {}, None)

    async def _send(
        self,
        kind: str,
        method: str,
        path: str,
        payload: Any,
        headers: dict[str, str],
        name: str | None,
    ) -> Outcome:
        started = time.monotonic()
        try:
            response = await self.http.request(
                method, f"{self.url}{path}", json=payload, headers=headers
            )
        except httpx.TransportError as exc:
            return Outcome(
                kind,
                started,
                time.monotonic() - started,
                None,
                transport_error=f"{exc.__class__.__name__}: {exc}",
                name=name,
            )
        try:
            body = response.json()
        except ValueError:
            body = {"raw": response.text}
        return Outcome(
            kind,
            started,
            time.monotonic() - started,
            response.status_code,
            body,
            dict(response.headers),
            name=name,
        )

    async def login(self, google: FakeGoogle, *, ip: str | None = None) -> Outcome:
        sub = f"fault-{secrets.token_hex(6)}"
        id_token = google.mint(sub=sub, email=f"{sub}@example.com")
        return await self.graphql("login", LOGIN, {"idToken": id_token}, ip=ip)

    async def signed_in(self, google: FakeGoogle) -> dict[str, Any]:
        """A fresh user's ``googleLogin`` payload (tokens and user), or the test fails."""
        outcome = await self.login(google)
        assert outcome.ok, outcome.describe() + f" {outcome.body}"
        assert outcome.body is not None
        payload: dict[str, Any] = outcome.body["data"]["googleLogin"]
        return payload

    async def write(self, token: str, *, kind: str = "write") -> Outcome:
        name = f"w-{secrets.token_hex(8)}"
        return await self.graphql(kind, WRITE, {"name": name}, token=token, name=name)

    async def read(self, token: str, *, kind: str = "read") -> Outcome:
        return await self.graphql(kind, READ, token=token)


def acknowledged(outcomes: list[Outcome]) -> dict[str, str]:
    """The writes that answered success: category id -> name."""
    done: dict[str, str] = {}
    for outcome in outcomes:
        if outcome.name is not None and outcome.ok and outcome.body is not None:
            category = outcome.body["data"]["createCategory"]
            done[category["id"]] = category["name"]
    return done


class Load:
    """``concurrency`` clients, each sending a read then a write, again and again, until the
    block ends; ``outcomes`` holds every answer (or its absence)."""

    def __init__(self, caller: Caller, token: str, *, concurrency: int = 6) -> None:
        self.caller = caller
        self.token = token
        self.concurrency = concurrency
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self) -> None:
        while not self._stop.is_set():
            for send in (self.caller.read, self.caller.write):
                outcome = await send(self.token)
                self.outcomes.append(outcome)
                if outcome.status is None or outcome.status >= 500:
                    await asyncio.sleep(0.05)  # as a client would, before trying again
                if self._stop.is_set():
                    return


def log_entries(log: Path, *, since: int = 0) -> list[dict[str, Any]]:
    """The service's JSON log lines from byte ``since`` of its log (other lines skipped)."""
    with log.open("rb") as stream:
        stream.seek(since)
        text = stream.read().decode(errors="replace")
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry.get("event") == name]


async def until(check: Any, *, within: float, interval: float = 0.1) -> tuple[float, Any]:
    """Await ``check()`` every ``interval`` until it returns something truthy; returns
    (seconds it took, that value), or (``within``, the last value) when it never did."""
    started = time.monotonic()
    value = None
    while time.monotonic() - started < within:
        value = await check()
        if value:
            return time.monotonic() - started, value
        await asyncio.sleep(interval)
    return within, value
