"""fixed-size keys: digests for categories.name_key and used_google_tokens.token_id

A valid category name (100 characters) can fold to 1,800 under NFKC (U+FDFA), and a
Google token without a jti was keyed by its nonce, of any length: both overflowed their
columns on PostgreSQL. Both keys become SHA-256 digests (64 hex characters), computed
here for the rows that exist, so that uniqueness and replay detection carry over.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the tables and of the key functions as of this revision: a migration
# must not follow later changes to the application code.
_categories = sa.table(
    "categories",
    sa.column("id", sa.BigInteger()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
)
_used_tokens = sa.table(
    "used_google_tokens",
    sa.column("token_id", sa.String()),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def upgrade() -> None:
    # The old and the new keys share one column while rows are rewritten: a name chosen to
    # equal another row's digest would trip the unique index midway. Lift it meanwhile.
    with op.batch_alter_table("categories") as batch:
        batch.drop_constraint("uq_categories_name_key", type_="unique")
    _rekey_categories(lambda name: _digest(_folded(name)))
    with op.batch_alter_table("categories") as batch:
        batch.alter_column(
            "name_key",
            existing_type=sa.String(length=400),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
        batch.create_unique_constraint("uq_categories_name_key", ["name_key"])

    # Used tokens are read out and written back under their digests: no row is ever
    # rewritten in place, so no digest can meet another row's old id on the way.
    bind = op.get_bind()
    used: dict[str, object] = {}
    for token_id, expires_at in bind.execute(
        sa.select(_used_tokens.c.token_id, _used_tokens.c.expires_at)
    ).all():
        used[_digest(token_id)] = expires_at
    bind.execute(_used_tokens.delete())
    with op.batch_alter_table("used_google_tokens") as batch:
        batch.alter_column(
            "token_id",
            existing_type=sa.String(length=512),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
    if used:
        bind.execute(
            _used_tokens.insert(),
            [{"token_id": key, "expires_at": expires_at} for key, expires_at in used.items()],
        )


def downgrade() -> None:
    # Used token ids stay digests (they fit the wider column): tokens used before the
    # downgrade no longer count as used, which matters for at most their hour of life.
    with op.batch_alter_table("used_google_tokens") as batch:
        batch.alter_column(
            "token_id",
            existing_type=sa.String(length=64),
            type_=sa.String(length=512),
            existing_nullable=False,
        )
    # A name whose folded form outgrows 400 characters cannot go back: PostgreSQL refuses
    # it here, and the downgrade stops with nothing changed.
    with op.batch_alter_table("categories") as batch:
        batch.drop_constraint("uq_categories_name_key", type_="unique")
        batch.alter_column(
            "name_key",
            existing_type=sa.String(length=64),
            type_=sa.String(length=400),
            existing_nullable=False,
        )
    _rekey_categories(_folded)
    with op.batch_alter_table("categories") as batch:
        batch.create_unique_constraint("uq_categories_name_key", ["name_key"])


def _rekey_categories(key: Callable[[str], str]) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_categories.c.id, _categories.c.name)).all()
    if rows:
        bind.execute(
            _categories.update()
            .where(_categories.c.id == sa.bindparam("category_id"))
            .values(name_key=sa.bindparam("key")),
            [{"category_id": category_id, "key": key(name)} for category_id, name in rows],
        )
