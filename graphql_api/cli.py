"""The operator's command line: ``graphql-api serve|migrate|export-schema|keys|users|dev-token``."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from graphql_api.settings import ConfigurationError, Settings, describe_invalid_settings

if TYPE_CHECKING:
    from types import FrameType

    from graphql_api.app import App

SCHEMA_FILE = Path("schema/schema.graphql")


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.check_production()
    except ConfigurationError as exc:
        sys.exit(f"graphql-api: {exc}")
    except ValidationError as exc:
        sys.exit(f"graphql-api: {describe_invalid_settings(exc)}")
    return settings


def serving_app() -> App:
    """``create_app()`` plus what only a serving process does.

    - Once started, move the long-lived heap (schema, mappers, caches: ~135k objects) out
      of the garbage collector's generations. Otherwise every full collection walks all
      of it, which cost ~0.5 ms per request of 100 categories. Still freed when no longer
      referenced.
    - At SIGTERM, /readyz turns 503 at once and the process keeps serving for
      SHUTDOWN_DELAY seconds, so that a load balancer stops sending before the drain
      rather than finding the port closed; then the server's own handler runs the drain.
    """
    import gc

    from graphql_api.app import create_app

    def freeze_heap() -> None:
        gc.collect()
        gc.freeze()

    def unready_at_sigterm() -> None:
        import asyncio

        container = app.state.container
        readiness = container.readiness
        delay = container.settings.shutdown_delay
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, frame: FrameType | None) -> None:
            if callable(previous):
                previous(signum, frame)
            else:  # nobody else handles it: the default, as if we had not been here
                signal.signal(signal.SIGTERM, previous)
                os.kill(os.getpid(), signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if readiness.draining:  # a second SIGTERM: stop now
                stop(signum, frame)
                return
            readiness.draining = True
            loop.call_soon_threadsafe(loop.call_later, delay, stop, signum, None)

        signal.signal(signal.SIGTERM, on_sigterm)

    app = create_app(on_started=[freeze_heap, unready_at_sigterm])
    return app


def _token_command() -> str:
    """A dev-token command that works as printed: the venv is not on PATH after `make run`,
    and dev-token must run where the server runs (its files are relative to it)."""
    makefile = Path("Makefile")
    if makefile.is_file() and re.search(r"^token:", makefile.read_text(), re.MULTILINE):
        command = "make token EMAIL=you@example.com"
    else:
        executable = Path(sys.executable).with_name("graphql-api")
        program = str(executable) if executable.exists() else f"{sys.executable} -m graphql_api"
        command = f"cd {shlex.quote(str(Path.cwd()))} && {program} dev-token you@example.com"
    # The settings a token depends on (where the user is, how it is signed and checked):
    # dev-token in another shell has none of this one's environment.
    needed = [
        f"GRAPHQL_API_{name}"
        for name in ("DATABASE_URL", "JWT_KEYS_FILE", "JWT_ISSUER", "JWT_AUDIENCE")
        if f"GRAPHQL_API_{name}" in os.environ
    ]
    if needed:
        command += f"  (with the same {', '.join(needed)})"
    return command


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()  # first: a misconfiguration is answered before the slow imports
    if args.reload and not settings.is_development:
        sys.exit("graphql-api: --reload is for development only (GRAPHQL_API_ENV=production)")
    if args.reload and args.workers > 1:
        sys.exit("graphql-api: --reload runs one process: leave out --workers")

    import uvicorn
    from uvicorn.supervisors import ChangeReload, Multiprocess

    from graphql_api.auth.keys import KeyFileError, check_private
    from graphql_api.container import load_signing_keys, signing_keys_file
    from graphql_api.logging_config import configure_logging, logging_config
    from graphql_api.web.connections import http_protocol
    from graphql_api.web.listener import ListenError, listen

    configure_logging(settings)  # before the keys: generating one is logged
    if settings.metrics:
        # Before anything imports prometheus_client and before uvicorn starts the workers.
        from graphql_api.observability.multiprocess import prepare_directory

        prepare_directory()
    try:
        setting = "GRAPHQL_API_JWT_KEYS_FILE" if settings.jwt_keys_file else "the development key"
        check_private(
            signing_keys_file(settings), strict=not settings.is_development, setting=setting
        )
        load_signing_keys(settings)
    except KeyFileError as exc:
        problem = str(exc)
        if settings.jwt_keys_file is not None and "GRAPHQL_API_JWT_KEYS_FILE" not in problem:
            problem = f"GRAPHQL_API_JWT_KEYS_FILE: {problem}"
        sys.exit(f"graphql-api: {problem}")
    try:
        sockets = listen(args.host, args.port)
    except ListenError as exc:
        sys.exit(f"graphql-api: {exc}")
    _check_trusted_documents(settings)
    # The workers read it with their settings: with several processes and no Redis, a
    # category event could not reach every subscriber, so subscriptions are off.
    os.environ["GRAPHQL_API_SERVE_WORKERS"] = str(args.workers)
    if settings.is_development:
        # A development convenience only: production schema changes are an operator's step.
        from graphql_api.db.migrate import migrate

        asyncio.run(migrate(settings.database_url))
    config = uvicorn.Config(
        "graphql_api.cli:serving_app",
        factory=True,
        workers=args.workers,
        reload=args.reload,
        reload_dirs=[str(Path(__file__).parent)] if args.reload else None,
        # Header deadline and connection cap (HEADER_TIMEOUT, MAX_CONNECTIONS).
        http=http_protocol(),
        # Applied again in each worker process: without it, workers log nothing below WARNING.
        log_config=logging_config(settings),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
        access_log=False,
    )
    server = uvicorn.Server(config)
    if not config.should_reload and config.workers == 1:
        config.load()  # built before it is announced; workers build their own
    _print_banner(settings, args.host, args.port)
    _print_subscriptions(settings, args.workers)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=sockets).run()
        elif config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in sockets:
            sock.close()
    if not config.should_reload and config.workers == 1 and not server.started:
        return 1  # uvicorn logged why
    return 0


def _print_banner(settings: Settings, host: str, port: int) -> None:
    from graphql_api.web.listener import browser_host

    base = f"http://{browser_host(host)}:{port}"
    lines = [f"graphql_api ({settings.env}) listening on {host}:{port}"]
    lines.append(f"  GraphQL endpoint: {base}/graphql (POST, application/json)")
    if settings.is_development:
        lines.append(f"  GraphiQL:         {base}/graphql")
        lines.append(f"  Reference client: {base}/")
        lines.append(f"  Access token:     {_token_command()}")
        lines.append("                    then in GraphiQL's Headers tab:")
        lines.append('                    {"Authorization": "Bearer <token>"}')
    lines.append(f"  Health:           {base}/healthz  {base}/readyz")
    print("\n".join(lines), flush=True)


def _print_subscriptions(settings: Settings, workers: int) -> None:
    if workers > 1 and not settings.redis_url:
        print(
            f"graphql-api: subscriptions are off: {workers} worker processes and no "
            "GRAPHQL_API_REDIS_URL to share events between them",
            flush=True,
        )


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    from graphql_api.db import revisions
    from graphql_api.db.location import display_url

    url = settings.database_url
    try:
        if args.migrate_command == "new":
            return _new_revision(url, args)
        if args.migrate_command == "history":
            current = asyncio.run(revisions.current_revision(url))
            for revision in revisions.history(url):
                print(f"{revision}{'  <- the database is here' if revision.id == current else ''}")
            return 0
        if args.status:
            status = asyncio.run(revisions.revision_status(url))
            print(f"database: {display_url(url)}")
            print(f"current:  {status.current or 'none (no tables yet)'}")
            print(f"latest:   {status.head}")
            if status.at_head:
                print("up to date")
                return 0
            if not status.known:
                print("the database is at a revision this code does not have")
            else:
                pending = ", ".join(str(revision) for revision in status.pending)
                print(f"behind by {len(status.pending)}: {pending}; run graphql-api migrate")
            return 1
        before, after = asyncio.run(revisions.upgrade(url))
    except revisions.MigrationError as exc:
        sys.exit(f"graphql-api: {exc}")
    if before.at_head:
        print(f"{display_url(url)}: already at {after.head}, the latest migration")
    else:
        applied = ", ".join(str(revision) for revision in before.pending)
        print(
            f"{display_url(url)}: upgraded from {before.current or 'an empty database'} "
            f"to {after.head}; applied {applied}"
        )
    return 0


def _new_revision(url: str, args: argparse.Namespace) -> int:
    from graphql_api.db import revisions

    path = asyncio.run(
        revisions.new_revision(
            url, args.message, versions_dir=Path(args.versions_dir), empty=args.empty
        )
    )
    if path is None:
        print(
            "the models match the latest migration: nothing written (--empty writes one to fill in)"
        )
        return 0
    revisions.tidy(path, keep_imports=args.empty)  # an empty one is about to use them
    print(f"wrote {path}: read it, then apply it with graphql-api migrate")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from graphql_api.api.schema import sdl

    text = sdl()
    path = Path(args.path)
    if args.check:
        if not path.is_file():
            # Not "out of date": most likely run outside the repository.
            print(
                f"graphql-api: {path} does not exist in {Path.cwd()}: run this in the "
                "repository root, or pass --path",
                file=sys.stderr,
            )
            return 1
        current = path.read_text()
        if current != text:
            print(f"{path} is out of date: run graphql-api export-schema", file=sys.stderr)
            return 1
        print(f"{path} matches the code")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from graphql_api.auth.keys import KeyFileError, generate_key_file, rotate_key_file

    path = Path(args.file)
    try:
        if args.action == "generate":
            kid = generate_key_file(path, algorithm=args.algorithm, overwrite=args.force)
            print(f"wrote {path} with signing key {kid}")
        else:
            kid = rotate_key_file(path, algorithm=args.algorithm, keep=args.keep)
            kept = "older keys still verify"
            if args.keep is not None:
                kept = f"kept the newest {args.keep} key(s)"
            print(f"{path}: {kid} now signs; {kept}. Running services reload it within seconds.")
    except KeyFileError as exc:
        print(f"graphql-api: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_prune(_args: argparse.Namespace) -> int:
    settings = _settings()
    from graphql_api.container import Container

    async def run() -> dict[str, int]:
        container = Container(settings)
        try:
            return await container.pruner.prune()
        finally:
            await container.close()

    pruned = asyncio.run(run())
    print(
        "pruned " + ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in pruned.items())
    )
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    settings = _settings()
    from graphql_api.container import Container
    from graphql_api.errors import NotFound
    from graphql_api.records import Role

    role = Role[args.role]

    async def run() -> int:
        container = Container(settings)
        try:
            users = await container.users.set_role(email=args.email, role=role)
        except NotFound as exc:
            print(f"graphql-api: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await container.close()
        for user in users:
            print(f"user {user.id} <{user.email}> is now {role.value}")
        return 0

    return asyncio.run(run())


def _missing_development_file(settings: Settings) -> str | None:
    """Why dev-token cannot use the files ``serve`` uses from here, or None.

    Development files are relative to the current directory (a SQLite path, the generated
    key), so dev-token run elsewhere used to create a second database and key there and
    print a token the server refuses. It could instead look in a fixed place, but a server
    is found by its directory and environment, which dev-token cannot know; so it only
    uses files that exist, creates none (``serve`` does), and otherwise says which file is
    missing and how to get it."""
    from graphql_api.container import DEV_KEYS_FILE
    from graphql_api.db.location import is_in_memory, sqlite_file

    fix = "start the server first (make run), then run this where it runs (make token does)"
    if is_in_memory(settings.database_url):
        return (
            "GRAPHQL_API_DATABASE_URL is an in-memory SQLite database, which the server "
            "does not share: dev-token cannot sign in to it"
        )
    database = sqlite_file(settings.database_url)
    if database is not None and not database.exists():
        return f"no development database at {database} (GRAPHQL_API_DATABASE_URL): {fix}"
    if settings.jwt_keys_file is None and not DEV_KEYS_FILE.exists():
        return f"no development signing key at {DEV_KEYS_FILE.resolve()}: {fix}"
    return None


def cmd_dev_token(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.is_development:
        print("graphql-api: dev-token works only with GRAPHQL_API_ENV=development", file=sys.stderr)
        return 1
    if problem := _missing_development_file(settings):
        sys.exit(f"graphql-api: {problem}")

    from graphql_api.auth.keys import KeyFileError
    from graphql_api.container import Container
    from graphql_api.services.auth import Client

    async def run() -> str:
        from graphql_api.db.migrate import migrate

        await migrate(settings.database_url)
        try:
            container = Container(settings)
        except KeyFileError as exc:
            sys.exit(f"graphql-api: GRAPHQL_API_JWT_KEYS_FILE: {exc}")
        try:
            signed_in = await container.auth.dev_sign_in(
                email=args.email, client=Client(ip="cli", user_agent="graphql-api dev-token")
            )
        finally:
            await container.close()
        return signed_in.access.token

    print(asyncio.run(run()))
    return 0


# --- documents: trusted-documents manifests ------------------------------------------


def _check_trusted_documents(settings: Settings) -> None:
    """Load and check the manifests before uvicorn starts, so that a bad entry is one
    line here rather than a traceback from the app factory in every worker."""
    from graphql_api.app import build_engine

    try:
        build_engine(settings)
    except ConfigurationError as exc:
        sys.exit(f"graphql-api: {exc}")


def cmd_documents(args: argparse.Namespace) -> int:
    """``check``: a frontend's CI proves its manifests would load here (schema and limits
    from the current settings). ``build``: a manifest from ``.graphql`` files."""
    if args.documents_command == "build":
        return _documents_build(args.paths, args.out)
    return _documents_check(args.files)


def _documents_check(files: list[Path]) -> int:
    from graphql_api.app import build_engine
    from graphql_api.engine import TrustedDocuments, TrustMode
    from graphql_api.engine.trusted import ManifestError, read_manifests

    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"graphql-api: {describe_invalid_settings(exc)}")
    # No documents of its own: each entry is checked on its own, to report every problem.
    engine = build_engine(settings, trusted=TrustedDocuments(TrustMode.ALLOW))
    entries, problems = read_manifests(files)
    for entry in entries.values():
        try:
            engine.verify(entry)
        except ManifestError as exc:
            problems.append(exc)
    for problem in problems:
        print(f"graphql-api: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"{len(entries)} trusted documents in {len(files)} manifest(s) pass the schema and "
        f"the query limits ({settings.env} settings)"
    )
    return 0


def _documents_build(paths: list[Path], out: Path) -> int:
    import json

    from graphql_api.engine.manifest_builder import BuildError, build_manifest

    try:
        manifest = build_manifest(paths)
    except BuildError as exc:
        for problem in exc.problems:
            print(f"graphql-api: {problem}", file=sys.stderr)
        return 1
    out.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} with {len(manifest)} documents")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Every option shows its default (argparse's own formatter also shows "None" and
    "False", which say nothing); descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def _email(text: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an email address")
    return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graphql-api")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


DESCRIPTION = """Serve and operate the graphql_api GraphQL service.

Settings come from GRAPHQL_API_* environment variables (see the README's Settings);
a misconfiguration is answered with one line naming the setting."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="graphql-api", description=DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument(
        "--version", action="version", version=f"graphql-api {_version()}", help="print the version"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="graphql-api COMMAND --help for more"
    )

    def command(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", **kwargs
        )
        sub.formatter_class = _Formatter
        return sub

    serve = command("serve", "serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port to listen on")
    serve.add_argument(
        "--workers", type=_at_least_one, default=1, help="worker processes sharing the port"
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart when the code changes (development only)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = command(
        "migrate",
        "apply database migrations",
        epilog="Without a COMMAND: upgrade the database to the latest migration.",
    )
    migrate.add_argument(
        "--status",
        action="store_true",
        help="change nothing: print the current and latest revisions; exit 1 when behind",
    )
    migrate_commands = migrate.add_subparsers(
        dest="migrate_command", metavar="COMMAND", help="for developers"
    )
    history = migrate_commands.add_parser(
        "history",
        help="list every revision, marking the database's",
        description="List every revision, oldest first, marking the database's.",
        formatter_class=_Formatter,
    )
    history.set_defaults(func=cmd_migrate)
    new_revision = migrate_commands.add_parser(
        "new",
        help="write a new revision for what the models changed",
        description=(
            "Compare the models (graphql_api/db/models.py) with the database, which must be "
            "at the latest migration, and write what changed as a new revision."
        ),
        formatter_class=_Formatter,
    )
    new_revision.add_argument("message", help='what the revision does, e.g. "add tags"')
    new_revision.add_argument(
        "--empty", action="store_true", help="write an empty revision to fill in by hand"
    )
    new_revision.add_argument(
        "--versions-dir",
        default=str(Path(__file__).parent / "db" / "migrations" / "versions"),
        help="where to write it",
    )
    new_revision.set_defaults(func=cmd_migrate)
    migrate.set_defaults(func=cmd_migrate)

    export = command("export-schema", "write the GraphQL schema (SDL) to a file")
    export.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file differs"
    )
    export.add_argument("--path", default=str(SCHEMA_FILE), help="the SDL file")
    export.set_defaults(func=cmd_export_schema)

    keys = command("keys", "manage the JWT signing keys file")
    keys.add_argument(
        "action",
        choices=["generate", "rotate"],
        help="generate: a new file with one key; rotate: a new signing key first",
    )
    keys.add_argument("--file", required=True, help="the JWKS file (written 0600)")
    keys.add_argument(
        "--algorithm", choices=["EdDSA", "HS256"], default="EdDSA", help="of the new key"
    )
    keys.add_argument("--force", action="store_true", help="generate: overwrite an existing file")
    keys.add_argument(
        "--keep",
        type=_at_least_one,
        default=None,
        help="rotate: keep only the newest N keys (default: every key)",
    )
    keys.set_defaults(func=cmd_keys)

    users = command("users", "manage users")
    users_commands = users.add_subparsers(
        dest="users_command", required=True, metavar="COMMAND", help="what to change"
    )
    set_role = users_commands.add_parser(
        "set-role",
        help="set the role of a user by email",
        description="Set the role of a user by email.",
        formatter_class=_Formatter,
    )
    set_role.add_argument("email", type=_email, help="the user's email address")
    set_role.add_argument("role", type=str.upper, choices=["USER", "ADMIN"], help="the new role")
    set_role.set_defaults(func=cmd_users)

    prune = command(
        "prune",
        "delete expired rows now (revocations, used Google tokens, sessions ended a week ago)",
    )
    prune.set_defaults(func=cmd_prune)

    dev_token = command("dev-token", "print an access token (development only)")
    dev_token.add_argument("email", type=_email, help="signs in (or creates) this user")
    dev_token.set_defaults(func=cmd_dev_token)

    documents = command("documents", "check or build trusted-documents manifests")
    documents_commands = documents.add_subparsers(
        dest="documents_command", required=True, metavar="COMMAND", help="what to do"
    )
    check = documents_commands.add_parser(
        "check",
        help="validate manifests against the schema and the query limits",
        description="Validate manifests against the schema and the query limits of the "
        "current settings; one line per problem, exit 1 if any.",
        formatter_class=_Formatter,
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="manifest files")
    check.set_defaults(func=cmd_documents)
    build = documents_commands.add_parser(
        "build",
        help="write a manifest from .graphql files",
        description="Write a manifest ({sha256: document}) with one document per operation "
        "(the operation and the fragments it uses) from .graphql files.",
        formatter_class=_Formatter,
    )
    build.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help=".graphql files or directories"
    )
    build.add_argument("--out", required=True, type=Path, metavar="FILE", help="the manifest")
    build.set_defaults(func=cmd_documents)
    return parser


def main(argv: list[str] | None = None) -> int:
    from socket import gaierror

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except Exception as exc:
        # Imported only now: SQLAlchemy is most of the start-up time of a command that
        # fails on its settings, and those never get here.
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError | ConnectionError | TimeoutError | gaierror):
            raise
        # A database that is down or misnamed is an operator's fix: one line, no traceback.
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        sys.exit(f"graphql-api: cannot use GRAPHQL_API_DATABASE_URL: {detail}")
    return result


if __name__ == "__main__":
    sys.exit(main())
