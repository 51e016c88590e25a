"""The operator's command line: ``graphql-api serve|migrate|export-schema|keys|users|dev-token``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from graphql_api.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    from graphql_api.app import App

SCHEMA_FILE = Path("schema/schema.graphql")


def _settings() -> Settings:
    try:
        settings = Settings()
        settings.check_production()
    except ConfigurationError as exc:
        sys.exit(f"graphql-api: {exc}")
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "GRAPHQL_API_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        sys.exit(f"graphql-api: invalid {name}: {first['msg']}")
    return settings


def serving_app() -> App:
    """``create_app()`` plus what only a serving process does: once started, move the
    long-lived heap (schema, mappers, caches: ~135k objects) out of the garbage
    collector's generations. Otherwise every full collection walks all of it, which
    cost ~0.5 ms per request of 100 categories. Still freed when no longer referenced."""
    import gc

    from graphql_api.app import create_app

    def freeze_heap() -> None:
        gc.collect()
        gc.freeze()

    return create_app(on_started=[freeze_heap])


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from graphql_api.auth.keys import KeyFileError
    from graphql_api.container import load_signing_keys
    from graphql_api.logging_config import configure_logging, logging_config

    settings = _settings()
    if settings.metrics:
        # Before anything imports prometheus_client and before uvicorn starts the workers.
        from graphql_api.observability.multiprocess import prepare_directory

        prepare_directory()
    try:
        load_signing_keys(settings)
    except KeyFileError as exc:
        sys.exit(f"graphql-api: {exc}")
    _check_trusted_documents(settings)
    configure_logging()
    if settings.is_development:
        # A development convenience only: production schema changes are an operator's step.
        from graphql_api.db.migrate import migrate

        asyncio.run(migrate(settings.database_url))
    base = f"http://{args.host}:{args.port}"
    print(f"graphql_api ({settings.env}) on {base}", flush=True)
    print(f"  GraphQL endpoint: {base}/graphql (POST, application/json)", flush=True)
    if settings.is_development:
        print(f"  GraphiQL:         {base}/graphql", flush=True)
        print(f"  Reference client: {base}/", flush=True)
        print("  Access token:     graphql-api dev-token you@example.com", flush=True)
        print("                    then in GraphiQL's Headers tab:", flush=True)
        print('                    {"Authorization": "Bearer <token>"}', flush=True)
    print(f"  Health:           {base}/healthz  {base}/readyz", flush=True)
    uvicorn.run(
        "graphql_api.cli:serving_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # Applied again in each worker process: without it, workers log nothing below WARNING.
        log_config=logging_config(),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=20,
        access_log=False,
    )
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from graphql_api.db.migrate import migrate

    settings = _settings()
    asyncio.run(migrate(settings.database_url))
    print("database is at the latest migration")
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from graphql_api.api.schema import sdl

    text = sdl()
    path = Path(args.path)
    if args.check:
        current = path.read_text() if path.exists() else ""
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
                kept = f"kept the newest {max(args.keep, 1)} key(s)"
            print(f"{path}: {kid} now signs; {kept}. Running services reload it within seconds.")
    except KeyFileError as exc:
        print(f"graphql-api: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from graphql_api.container import Container
    from graphql_api.errors import NotFound
    from graphql_api.records import Role

    role = Role[args.role.upper()] if args.role.upper() in Role.__members__ else None
    if role is None:
        print("graphql-api: ROLE must be USER or ADMIN", file=sys.stderr)
        return 2

    async def run() -> int:
        container = Container(_settings())
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


def cmd_dev_token(args: argparse.Namespace) -> int:
    from graphql_api.container import Container
    from graphql_api.services.auth import Client

    settings = _settings()
    if not settings.is_development:
        print("graphql-api: dev-token works only with GRAPHQL_API_ENV=development", file=sys.stderr)
        return 1

    async def run() -> str:
        from graphql_api.db.migrate import migrate

        await migrate(settings.database_url)
        container = Container(settings)
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
        first = exc.errors()[0]
        name = "GRAPHQL_API_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        sys.exit(f"graphql-api: invalid {name}: {first['msg']}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphql-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    export = commands.add_parser("export-schema", help="write schema/schema.graphql")
    export.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    export.add_argument("--path", default=str(SCHEMA_FILE))
    export.set_defaults(func=cmd_export_schema)

    keys = commands.add_parser("keys", help="manage the JWT signing keys file")
    keys.add_argument("action", choices=["generate", "rotate"])
    keys.add_argument("--file", required=True)
    keys.add_argument("--algorithm", choices=["EdDSA", "HS256"], default="EdDSA")
    keys.add_argument("--force", action="store_true", help="generate: overwrite")
    keys.add_argument("--keep", type=int, default=None, help="rotate: keep the newest N keys")
    keys.set_defaults(func=cmd_keys)

    users = commands.add_parser("users", help="manage users")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    set_role = users_commands.add_parser("set-role", help="set the role of a user by email")
    set_role.add_argument("email")
    set_role.add_argument("role")
    set_role.set_defaults(func=cmd_users)

    dev_token = commands.add_parser("dev-token", help="print an access token (development)")
    dev_token.add_argument("email")
    dev_token.set_defaults(func=cmd_dev_token)

    documents = commands.add_parser("documents", help="trusted-documents manifests")
    documents_commands = documents.add_subparsers(dest="documents_command", required=True)
    check = documents_commands.add_parser(
        "check", help="validate manifests against the schema and the query limits"
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.set_defaults(func=cmd_documents)
    build = documents_commands.add_parser("build", help="write a manifest from .graphql files")
    build.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    build.add_argument("--out", required=True, type=Path, metavar="FILE")
    build.set_defaults(func=cmd_documents)
    return parser


def main(argv: list[str] | None = None) -> int:
    from socket import gaierror

    from sqlalchemy.exc import SQLAlchemyError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except (SQLAlchemyError, ConnectionError, TimeoutError, gaierror) as exc:
        # A database that is down or misnamed is an operator's fix: one line, no traceback.
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        sys.exit(f"graphql-api: cannot use GRAPHQL_API_DATABASE_URL: {detail}")
    return result


if __name__ == "__main__":
    sys.exit(main())
