"""Sign-in and the session lifecycle: Google login, refresh rotation, logout, revocation."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.auth.google import GoogleVerifier, InvalidGoogleToken
from graphql_api.auth.tokens import (
    AccessTokenCodec,
    IssuedAccessToken,
    RefreshToken,
    hash_refresh_token,
    new_refresh_token,
)
from graphql_api.clock import Clock
from graphql_api.db.engine import Database
from graphql_api.db.models import RefreshToken as RefreshTokenRow
from graphql_api.db.models import Session, User
from graphql_api.errors import NotFound, RateLimited, ServiceUnavailable, Unauthenticated
from graphql_api.observability.recorder import NULL_RECORDER, Recorder
from graphql_api.rate_limit import RateLimiter
from graphql_api.records import Role, SessionRecord, UserRecord
from graphql_api.repositories import sessions as sessions_repo
from graphql_api.repositories import users as users_repo
from graphql_api.services.revocation import RevocationList
from graphql_api.services.validation import profile_name, profile_picture_url
from graphql_api.settings import RateLimit, Settings

audit = logging.getLogger("graphql_api.audit")

SIGN_IN_FAILED = "Google sign-in failed."
REFRESH_FAILED = "Refresh token is invalid, expired or revoked; sign in again."
MAX_REFRESH_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling, as far as the HTTP layer can tell."""

    ip: str
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class SignedIn:
    access: IssuedAccessToken
    refresh_token: RefreshToken
    user: UserRecord
    session_id: str
    # Seconds the session (and so the refresh token) has left: a cookie's max-age.
    refresh_expires_in: int


def _audit(event: str, outcome: str, client: Client, **fields: object) -> None:
    audit.info(
        f"{event} {outcome}",
        extra={"event": event, "outcome": outcome, "client_ip": client.ip, **fields},
    )


class AuthService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        codec: AccessTokenCodec,
        google: GoogleVerifier,
        revocations: RevocationList,
        limiter: RateLimiter,
        metrics: Recorder = NULL_RECORDER,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.codec = codec
        self.google = google
        self.revocations = revocations
        self.limiter = limiter
        self.metrics = metrics

    async def _hit(self, rule: str, subject: object, rate: RateLimit) -> None:
        """One attempt against the limit ``rule`` (the key's prefix: a metric label)."""
        try:
            await self.limiter.hit(f"{rule}:{subject}", rate)
        except RateLimited:
            self.metrics.rate_limited(rule)
            raise

    async def google_login(self, *, id_token: str, nonce: str | None, client: Client) -> SignedIn:
        try:
            return await self._google_login(id_token=id_token, nonce=nonce, client=client)
        except (RateLimited, ServiceUnavailable) as exc:
            self.metrics.login(_failure(exc))
            raise

    async def _google_login(self, *, id_token: str, nonce: str | None, client: Client) -> SignedIn:
        await self._hit("login:ip", client.ip, self.settings.login_rate)
        try:
            identity = await self.google.verify(id_token, nonce=nonce)
        except InvalidGoogleToken as exc:
            _audit("login", "rejected", client, reason=str(exc))
            self.metrics.login("rejected")
            raise Unauthenticated(SIGN_IN_FAILED) from None
        await self._hit("login:sub", identity.sub, self.settings.login_rate)
        now = self.clock.now()
        email = identity.email.lower()
        try:
            async with self.db.writer() as session:
                fresh = await sessions_repo.remember_google_token(
                    session=session,
                    token_id=identity.token_id,
                    expires_at=datetime.fromtimestamp(identity.expires_at, now.tzinfo),
                )
                if not fresh:
                    raise _Replay
                user = await users_repo.get_by_sub(session=session, google_sub=identity.sub)
                if user is None:
                    user = User(google_sub=identity.sub, role=Role.USER, created_at=now)
                    session.add(user)
                user.email = email
                # The profile obeys the rules of one edited through the API, cleaned
                # rather than refused: Google lets its users type anything into a name.
                user.name = profile_name(identity.name) or profile_name(email.split("@")[0])
                user.picture_url = profile_picture_url(identity.picture)
                user.updated_at = now
                if email in self.settings.admin_emails:
                    user.role = Role.ADMIN
                await session.flush()
                row, refresh = self._new_session(user.id, now, client)
                session.add(row)
                await session.flush()
                session.add(self._refresh_row(row.id, refresh, now))
        except (_Replay, IntegrityError):
            _audit("login", "replayed", client, reason="id token already used")
            self.metrics.login("replayed")
            raise Unauthenticated(SIGN_IN_FAILED) from None
        access = self.codec.issue(
            user_id=user.id, session_id=row.id, not_after=row.expires_at.timestamp()
        )
        _audit("login", "success", client, user_id=user.id, session_id=row.id)
        self.metrics.login("success")
        return SignedIn(access, refresh, users_repo.record(user), row.id, self._remaining(row, now))

    async def refresh(self, *, refresh_token: str, client: Client) -> SignedIn:
        try:
            return await self._refresh(refresh_token=refresh_token, client=client)
        except (RateLimited, ServiceUnavailable) as exc:
            self.metrics.refresh(_failure(exc))
            raise

    async def _refresh(self, *, refresh_token: str, client: Client) -> SignedIn:
        await self._hit("refresh:ip", client.ip, self.settings.refresh_rate)
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            _audit("refresh", "rejected", client, reason="malformed")
            self.metrics.refresh("rejected")
            raise Unauthenticated(REFRESH_FAILED)
        token_hash = hash_refresh_token(refresh_token)
        # Per user too, not only per IP, and before the transaction: a rate limiter (Redis)
        # is never waited on while the session row is locked. Raised here: nothing rotates.
        async with self.db.reader() as session:
            user_id = await sessions_repo.user_of_unused_refresh_token(
                session=session, token_hash=token_hash
            )
        if user_id is not None:
            await self._hit("refresh:user", user_id, self.settings.refresh_rate)
        async with self.db.writer() as session:
            rotation = await self._rotate(session, token_hash, client)
        row = rotation.row
        fields = {"user_id": row.user_id, "session_id": row.id} if row is not None else {}
        _audit("refresh", rotation.outcome, client, **fields)
        self.metrics.refresh(rotation.outcome)
        self.metrics.revoked("refresh_reuse", len(rotation.ended))
        self.revocations.add(rotation.ended)
        if rotation.outcome != "success" or row is None or rotation.user is None:
            raise Unauthenticated(REFRESH_FAILED)
        assert rotation.refresh is not None  # noqa: S101 - set on success
        access = self.codec.issue(
            user_id=row.user_id, session_id=row.id, not_after=row.expires_at.timestamp()
        )
        return SignedIn(
            access,
            rotation.refresh,
            users_repo.record(rotation.user),
            row.id,
            self._remaining(row, self.clock.now()),
        )

    async def _rotate(self, session: AsyncSession, token_hash: str, client: Client) -> _Rotation:
        """One refresh inside one write transaction; the outcome is committed either way."""
        now = self.clock.now()
        found = await sessions_repo.find_refresh_token(session=session, token_hash=token_hash)
        # Lock the session before its tokens, as every revocation does: concurrent
        # refreshes of one session queue here instead of deadlocking on the token rows.
        row = (
            await sessions_repo.get(session=session, session_id=found.session_id, lock=True)
            if found
            else None
        )
        if found is None or row is None:
            return _Rotation("unknown")
        if not self._alive(row, now):
            return _Rotation("expired", row)
        if found.rotated_at is not None or not await sessions_repo.mark_rotated(
            session=session, token_id=found.id, now=now
        ):
            # A rotated token came back: a thief or the victim holds a copy. End the whole
            # session, newest token included, so that neither can keep it alive.
            ended = await sessions_repo.revoke(
                session=session,
                session_ids=[row.id],
                user_id=row.user_id,
                now=now,
                reason="refresh_reuse",
            )
            return _Rotation("reuse", row, ended=ended)
        user = await users_repo.get_by_id(session=session, user_id=row.user_id)
        if user is None:
            return _Rotation("unknown", row)
        refresh = new_refresh_token()
        session.add(self._refresh_row(row.id, refresh, now))
        row.last_used_at = now
        if client.user_agent:
            row.user_agent = client.user_agent[:512]
        row.ip = client.ip[:64]
        return _Rotation("success", row, user, refresh)

    async def logout(self, *, user_id: int, session_id: str, client: Client) -> bool:
        ended = await self._revoke(user_id, [session_id], "logout")
        _audit("logout", "success", client, user_id=user_id, session_id=session_id)
        return bool(ended)

    async def logout_all(self, *, user_id: int, client: Client) -> int:
        async with self.db.writer() as session:
            live = await sessions_repo.live_for_user(
                session=session, user_id=user_id, now=self.clock.now()
            )
            ended = await sessions_repo.revoke(
                session=session,
                session_ids=[s.id for s in live],
                user_id=user_id,
                now=self.clock.now(),
                reason="logout_all",
            )
        self.metrics.revoked("logout_all", len(ended))
        self.revocations.add(ended)
        _audit("logout_all", "success", client, user_id=user_id, sessions=len(ended))
        return len(ended)

    async def revoke_session(self, *, user_id: int, session_id: str, client: Client) -> bool:
        """End one of the caller's own sessions (checked in the transaction that ends it)."""
        async with self.db.writer() as session:
            row = await sessions_repo.get(session=session, session_id=session_id, lock=True)
            # Someone else's session and a missing one look the same: nothing to probe.
            if row is None or row.user_id != user_id or not self._alive(row, self.clock.now()):
                raise NotFound("Session not found.")
            ended = await sessions_repo.revoke(
                session=session,
                session_ids=[session_id],
                user_id=user_id,
                now=self.clock.now(),
                reason="revoked",
            )
        self.metrics.revoked("revoked", len(ended))
        self.revocations.add(ended)
        _audit("revoke_session", "success", client, user_id=user_id, session_id=session_id)
        return bool(ended)

    async def sessions(self, *, user_id: int) -> list[SessionRecord]:
        """The caller's live sessions, newest first."""
        now = self.clock.now()
        async with self.db.reader() as session:
            rows = await sessions_repo.live_for_user(session=session, user_id=user_id, now=now)
        idle = timedelta(seconds=self.settings.session_idle_ttl)
        return [
            SessionRecord(row.id, row.created_at, row.last_used_at, row.user_agent)
            for row in rows
            if row.last_used_at + idle > now
        ]

    async def _revoke(self, user_id: int, session_ids: list[str], reason: str) -> list[str]:
        async with self.db.writer() as session:
            ended = await sessions_repo.revoke(
                session=session,
                session_ids=session_ids,
                user_id=user_id,
                now=self.clock.now(),
                reason=reason,
            )
        self.metrics.revoked(reason, len(ended))
        self.revocations.add(ended)
        return ended

    @staticmethod
    def _remaining(row: Session, now: datetime) -> int:
        return max(0, int((row.expires_at - now).total_seconds()))

    def _alive(self, row: Session, now: datetime) -> bool:
        idle = timedelta(seconds=self.settings.session_idle_ttl)
        return row.revoked_at is None and row.expires_at > now and row.last_used_at + idle > now

    def _new_session(
        self, user_id: int, now: datetime, client: Client
    ) -> tuple[Session, RefreshToken]:
        row = Session(
            id=secrets.token_urlsafe(18),
            user_id=user_id,
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl),
            user_agent=(client.user_agent or None) and client.user_agent[:512],
            ip=client.ip[:64],
        )
        return row, new_refresh_token()

    @staticmethod
    def _refresh_row(session_id: str, token: RefreshToken, now: datetime) -> RefreshTokenRow:
        return RefreshTokenRow(
            session_id=session_id, token_hash=hash_refresh_token(token), created_at=now
        )

    async def dev_sign_in(self, *, email: str, client: Client) -> SignedIn:
        """Development only (the CLI checks): a session for an existing user, no Google."""
        now = self.clock.now()
        async with self.db.writer() as session:
            users = await users_repo.get_by_email(session=session, email=email.lower())
            if users:
                user = users[0]
            else:
                user = User(
                    google_sub=f"dev:{email.lower()}",
                    email=email.lower(),
                    name=email.split("@")[0][:100] or "dev",
                    role=Role.ADMIN if email.lower() in self.settings.admin_emails else Role.USER,
                    created_at=now,
                    updated_at=now,
                )
                session.add(user)
                await session.flush()
            row, refresh = self._new_session(user.id, now, client)
            session.add(row)
            await session.flush()
            session.add(self._refresh_row(row.id, refresh, now))
        access = self.codec.issue(
            user_id=user.id, session_id=row.id, not_after=row.expires_at.timestamp()
        )
        return SignedIn(access, refresh, users_repo.record(user), row.id, self._remaining(row, now))


def _failure(exc: RateLimited | ServiceUnavailable) -> str:
    """The outcome of a sign-in or refresh that ended before it was judged."""
    return "rate_limited" if isinstance(exc, RateLimited) else "unavailable"


class _Replay(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Rotation:
    outcome: str
    row: Session | None = None
    user: User | None = None
    refresh: RefreshToken | None = None
    ended: list[str] = field(default_factory=list)
