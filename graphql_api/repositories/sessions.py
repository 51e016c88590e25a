"""Sessions, their refresh tokens and the revocation log. Never commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from graphql_api.db.engine import Executor
from graphql_api.db.models import RefreshToken, Revocation, Session, UsedGoogleToken


async def get(*, session: AsyncSession, session_id: str, lock: bool = False) -> Session | None:
    """``lock`` takes the row lock (PostgreSQL) so that every change to one session's
    tokens happens in the same order: session first, then its refresh tokens."""
    if not lock:
        return await session.get(Session, session_id)
    return await session.scalar(select(Session).where(Session.id == session_id).with_for_update())


async def live_for_user(*, session: Executor, user_id: int, now: datetime) -> list[Any]:
    """The user's sessions not revoked nor past their lifetime, newest first (rows with
    ``id``, ``created_at``, ``last_used_at``, ``user_agent``)."""
    table = Session.__table__
    query = (
        select(table.c.id, table.c.created_at, table.c.last_used_at, table.c.user_agent)
        .where(table.c.user_id == user_id, table.c.revoked_at.is_(None), table.c.expires_at > now)
        .order_by(table.c.created_at.desc(), table.c.id)
    )
    return list(await session.execute(query))


async def find_refresh_token(*, session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))


async def user_of_unused_refresh_token(*, session: Executor, token_hash: str) -> int | None:
    """The user whose not yet rotated refresh token this is, if any (no lock)."""
    found: int | None = await session.scalar(
        select(Session.user_id)
        .join(RefreshToken, RefreshToken.session_id == Session.id)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.rotated_at.is_(None))
    )
    return found


async def mark_rotated(*, session: AsyncSession, token_id: int, now: datetime) -> bool:
    """Compare-and-set: true for exactly one caller, however many race on the same token."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def revoke(
    *, session: AsyncSession, session_ids: list[str], user_id: int, now: datetime, reason: str
) -> list[str]:
    """End the given sessions (those still live) and log them; returns the ones ended."""
    if not session_ids:
        return []
    live = list(
        await session.scalars(
            select(Session.id).where(Session.id.in_(session_ids), Session.revoked_at.is_(None))
        )
    )
    if not live:
        return []
    await session.execute(
        update(Session)
        .where(Session.id.in_(live), Session.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(live)))
    session.add_all(
        Revocation(session_id=sid, user_id=user_id, revoked_at=now, reason=reason) for sid in live
    )
    return live


async def ids_for_user(*, session: AsyncSession, user_id: int) -> list[str]:
    return list(await session.scalars(select(Session.id).where(Session.user_id == user_id)))


async def revocations_since(*, session: Executor, since: datetime) -> list[tuple[str, datetime]]:
    rows = await session.execute(
        select(Revocation.session_id, Revocation.revoked_at).where(Revocation.revoked_at >= since)
    )
    return [(sid, at) for sid, at in rows]


async def prune(
    *, session: AsyncSession, revoked_before: datetime, ended_before: datetime, now: datetime
) -> dict[str, int]:
    """Delete what no longer matters; how many rows of each kind went."""
    revocations = await session.execute(
        delete(Revocation).where(Revocation.revoked_at < revoked_before)
    )
    tokens = await session.execute(delete(UsedGoogleToken).where(UsedGoogleToken.expires_at < now))
    sessions = await session.execute(
        delete(Session).where(
            (Session.revoked_at < ended_before) | (Session.expires_at < ended_before)
        )
    )
    return {
        "revocations": revocations.rowcount,  # type: ignore[attr-defined]
        "used_google_tokens": tokens.rowcount,  # type: ignore[attr-defined]
        "sessions": sessions.rowcount,  # type: ignore[attr-defined]
    }


async def remember_google_token(
    *, session: AsyncSession, token_id: str, expires_at: datetime
) -> bool:
    """Record a Google ID token as used; false if it was used before (a replay)."""
    existing = await session.get(UsedGoogleToken, token_id)
    if existing is not None:
        return False
    session.add(UsedGoogleToken(token_id=token_id, expires_at=expires_at))
    await session.flush()
    return True
