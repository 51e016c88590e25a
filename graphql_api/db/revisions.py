"""The database's migration state: which revision it is at, what is pending, new revisions."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from graphql_api.db.location import sqlite_file
from graphql_api.db.migrate import MIGRATIONS, alembic_config, migrate

VERSIONS = MIGRATIONS / "versions"
T = TypeVar("T")


class MigrationError(Exception):
    """The database cannot be moved as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Revision:
    id: str
    message: str

    def __str__(self) -> str:
        return f"{self.id} ({self.message})" if self.message else self.id


@dataclass(frozen=True, slots=True)
class RevisionStatus:
    current: Revision | None  # None: no revision yet (an empty database)
    head: Revision
    # Oldest first; empty when the database is at head (or at a revision we do not know).
    pending: tuple[Revision, ...]
    known: bool  # false when the database is at a revision this code does not have

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def _scripts(url: str, versions_dir: Path | None = None) -> ScriptDirectory:
    config = alembic_config(url)
    if versions_dir is not None:
        _locations(config, versions_dir)
    return ScriptDirectory.from_config(config)


def _locations(config: Config, versions_dir: Path) -> None:
    """The package's revisions and, when it is elsewhere, the folder a new one goes to (the
    new revision follows the package's head). Never one folder twice: alembic would warn
    that every revision in it is "loaded twice"."""
    config.set_main_option("version_path_separator", "os")
    same = versions_dir.resolve() == VERSIONS.resolve()
    config.set_main_option(
        "version_locations", str(VERSIONS) if same else f"{VERSIONS}:{versions_dir}"
    )


def _revision(script: Script) -> Revision:
    return Revision(script.revision, (script.doc or "").strip())


def history(url: str) -> list[Revision]:
    """Every revision of the code, oldest first."""
    return [_revision(script) for script in reversed(list(_scripts(url).walk_revisions()))]


async def _with_connection(url: str, work: Callable[[Connection], T]) -> T:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(url: str) -> str | None:
    """The database's revision; None when it has none, or is a SQLite file not yet created
    (which is not created by asking)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    return await _with_connection(url, _current)


async def revision_status(url: str) -> RevisionStatus:
    scripts = _scripts(url)
    head = scripts.get_revision(scripts.get_current_head() or "head")
    current_id = await current_revision(url)
    script = None
    if current_id is not None:
        with contextlib.suppress(CommandError):  # a revision this code does not have
            script = scripts.get_revision(current_id)
    current = None if current_id is None else Revision(current_id, "")
    if script is not None:
        current = _revision(script)
    known = current_id is None or script is not None
    pending: tuple[Revision, ...] = ()
    if known and current_id != head.revision:
        pending = tuple(
            _revision(script)
            for script in reversed(list(scripts.iterate_revisions(head.revision, current_id)))
        )
    return RevisionStatus(current=current, head=_revision(head), pending=pending, known=known)


async def upgrade(url: str) -> tuple[RevisionStatus, RevisionStatus]:
    """Upgrade to head; the status before and after."""
    before = await revision_status(url)
    if not before.known:
        raise MigrationError(
            f"the database is at revision {before.current}, which this version of the code "
            "does not have (newer code migrated it?)"
        )
    if not before.at_head:
        await migrate(url)
    return before, await revision_status(url)


def _next_id(head: str | None) -> str | None:
    # Our revisions are numbered 0001, 0002...: keep it so, they sort by age.
    if head is not None and head.isdigit():
        return f"{int(head) + 1:0{len(head)}d}"
    return None


async def new_revision(
    url: str, message: str, *, versions_dir: Path = VERSIONS, empty: bool = False
) -> Path | None:
    """Write a revision for what the models changed since the database's revision (which
    must be head), or an empty one to fill in by hand. None: the models did not change."""
    if not message.strip():
        raise MigrationError("the revision needs a message")
    status = await revision_status(url)
    if not status.at_head:
        raise MigrationError(
            f"the database is at {status.current or 'no revision'}, not at the latest "
            f"({status.head.id}): run graphql-api migrate first, so that only your model "
            "changes end up in the new revision"
        )
    from graphql_api.db.models import Base

    scripts = _scripts(url, versions_dir)
    rev_id = _next_id(scripts.get_current_head())

    def write(connection: Connection) -> Path | None:
        if not versions_dir.is_dir():
            raise MigrationError(f"{versions_dir} is not a directory")
        if not empty and not compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        ):
            return None
        config = alembic_config(url)
        _locations(config, versions_dir)
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        config.attributes["connection"] = connection
        config.cmd_opts = argparse.Namespace(quiet=True)  # no "Generating ..." on stdout
        script = command.revision(
            config,
            message=message.strip(),
            autogenerate=not empty,
            rev_id=rev_id,
            version_path=str(versions_dir),
        )
        assert isinstance(script, Script)  # noqa: S101 - one head, one script
        return Path(script.path)

    return await _with_connection(url, write)


def tidy(path: Path, *, keep_imports: bool = False) -> None:
    """Format a written revision like the project's code (alembic writes single quotes and
    long lines) and, unless asked to keep them, drop the imports it does not use. Skipped
    without ruff."""
    if importlib.util.find_spec("ruff") is None:
        return
    steps = [["format", "--quiet"]]
    if not keep_imports:
        steps.insert(0, ["check", "--fix-only", "--quiet", "--select", "F401,I"])
    for args in steps:
        subprocess.run(  # noqa: S603 - ruff from this environment, on our own file
            [sys.executable, "-m", "ruff", *args, str(path)], capture_output=True, check=False
        )
