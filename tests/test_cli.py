"""The operator's command line, run as a real process."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_api.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "graphql_api" / "web" / "static"


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_API_")}
    base.update(env or {})
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "graphql_api", *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only non-blank line on stderr (fails if there are more, or a traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_every_option_says_what_it_does_and_shows_its_default() -> None:
    for parser in parsers(build_parser()):
        for action in parser._actions:
            assert action.help, f"{parser.prog} {action.dest} has no help"
            formatter: Any = parser.formatter_class(prog=parser.prog)
            shown = formatter._get_help_string(action) or ""
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "(default: %(default)s)" in shown, f"{parser.prog} {action.dest}"


def test_help_is_plain_text_and_version_is_the_package_version() -> None:
    top = run("--help")
    assert top.returncode == 0 and "``" not in top.stdout and "serve" in top.stdout
    assert "(default: 8000)" in run("serve", "--help").stdout
    version = run("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"graphql-api {metadata.version('graphql-api')}"


def test_keys_rotate_refuses_to_keep_no_key(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    assert run("keys", "generate", "--file", str(path)).returncode == 0
    before = path.read_text()
    result = run("keys", "rotate", "--file", str(path), "--keep", "0")
    assert result.returncode == 2 and "--keep: must be at least 1" in one_line(result)
    assert path.read_text() == before


def test_dev_token_refuses_what_is_not_an_email(tmp_path: Path) -> None:
    env = {"GRAPHQL_API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db"}
    result = run("dev-token", "notanemail", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "'notanemail' is not an email address" in one_line(result)
    assert result.stdout == "" and not (tmp_path / "cli.db").exists()


def test_export_schema_check_tells_a_missing_file_from_an_outdated_one(tmp_path: Path) -> None:
    result = run("export-schema", "--check", cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result)
    assert "does not exist" in line and "out of date" not in line
    assert not (tmp_path / "schema").exists()


def test_committed_schema_matches_the_code() -> None:
    result = run("export-schema", "--check")
    assert result.returncode == 0, result.stderr


def test_export_schema_check_fails_on_drift(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: Int }\n")
    assert run("export-schema", "--check", "--path", str(stale)).returncode == 1
    assert run("export-schema", "--path", str(stale)).returncode == 0
    assert run("export-schema", "--check", "--path", str(stale)).returncode == 0


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"GRAPHQL_API_GOOGLE_CLIENT_IDS": "x"}, "GRAPHQL_API_JWT_KEYS_FILE"),
        ({"GRAPHQL_API_JWT_KEYS_FILE": "/nonexistent"}, "GRAPHQL_API_GOOGLE_CLIENT_IDS"),
        (
            {"GRAPHQL_API_JWT_KEYS_FILE": "/nonexistent", "GRAPHQL_API_GOOGLE_CLIENT_IDS": "x"},
            "set GRAPHQL_API_TRUSTED_DOCUMENTS=off to serve free-form queries",
        ),
    ],
)
def test_production_refuses_to_start_and_names_the_missing_setting(
    env: dict[str, str], missing: str
) -> None:
    result = run("serve", "--port", "1", env={"GRAPHQL_API_ENV": "production", **env})
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and missing in lines[0]


def test_keys_generate_and_rotate(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    assert run("keys", "generate", "--file", str(path)).returncode == 0
    assert run("keys", "generate", "--file", str(path)).returncode == 1  # never overwrites
    assert run("keys", "rotate", "--file", str(path)).returncode == 0
    assert len(json.loads(path.read_text())["keys"]) == 2


def test_migrate_set_role_and_dev_token(tmp_path: Path) -> None:
    env = {
        "GRAPHQL_API_ENV": "development",
        "GRAPHQL_API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "GRAPHQL_API_JWT_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    assert run("keys", "generate", "--file", str(tmp_path / "keys.json")).returncode == 0
    assert run("migrate", env=env).returncode == 0
    missing = run("users", "set-role", "nobody@example.com", "ADMIN", env=env)
    assert missing.returncode == 1 and "nobody@example.com" in missing.stderr
    token = run("dev-token", "dev@example.com", env=env)
    assert token.returncode == 0 and token.stdout.count(".") == 2
    promoted = run("users", "set-role", "dev@example.com", "ADMIN", env=env)
    assert promoted.returncode == 0 and "ADMIN" in promoted.stdout
    assert run("users", "set-role", "dev@example.com", "KING", env=env).returncode == 2


def test_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"  # dev-token refuses earlier without a key to sign with
    assert run("keys", "generate", "--file", str(keys)).returncode == 0
    # Port 1: nothing listens there, so the connection is refused at once.
    env = {
        "GRAPHQL_API_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none",
        "GRAPHQL_API_JWT_KEYS_FILE": str(keys),
    }
    for command in (["migrate"], ["dev-token", "dev@example.com"]):
        result = run(*command, env=env)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "GRAPHQL_API_DATABASE_URL" in lines[0], result.stderr


def test_dev_token_is_refused_in_production(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    run("keys", "generate", "--file", str(keys))
    env = {
        "GRAPHQL_API_ENV": "production",
        "GRAPHQL_API_JWT_KEYS_FILE": str(keys),
        "GRAPHQL_API_GOOGLE_CLIENT_IDS": "x",
        "GRAPHQL_API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db",
        "GRAPHQL_API_TRUSTED_DOCUMENTS": "off",
    }
    result = run("dev-token", "a@example.com", env=env)
    assert result.returncode == 1 and result.stdout == ""


def test_serve_with_workers_writes_structured_log_lines_from_each_worker(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    assert run("keys", "generate", "--file", str(keys)).returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_API_")}
    env.update(
        # Production: JSON lines (development writes lines for people).
        GRAPHQL_API_ENV="production",
        GRAPHQL_API_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        GRAPHQL_API_JWT_KEYS_FILE=str(keys),
        GRAPHQL_API_GOOGLE_CLIENT_IDS="test-client.apps.googleusercontent.com",
        GRAPHQL_API_TRUSTED_DOCUMENTS="off",
    )
    assert run("migrate", env=env).returncode == 0  # production never migrates on its own
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "graphql_api", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        for _ in range(4):
            httpx.post(
                f"{url}/graphql",
                json={"query": "{ me { id } }"},
                headers={"authorization": "Bearer not.a.token"},
            )
        deadline = time.monotonic() + 5
        while '"event":"token_refused"' not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    refused = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"event":"token_refused"' in line
    ]
    assert refused and all(entry["level"] == "INFO" for entry in refused)


# --- documents: trusted-documents manifests ------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_committed_reference_client_manifest_is_what_documents_build_writes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "operations.manifest.json"
    result = run("documents", "build", str(STATIC / "operations"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    committed = STATIC / "operations.manifest.json"
    assert out.read_text() == committed.read_text(), (
        "run: graphql-api documents build graphql_api/web/static/operations "
        "--out graphql_api/web/static/operations.manifest.json"
    )


def test_documents_build_writes_each_operation_with_the_fragments_it_uses(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "me.graphql").write_text(
        "# comments and layout do not change an id\nquery Me { me { ...UserBits } }\n"
        "mutation Bye {\n\n  logout }\n"
    )
    (source / "nested" / "fragments.graphql").write_text(
        "fragment UserBits on User { id ...More }\n"
        "fragment More on User { name }\n"
        "fragment Unused on User { email }\n"
    )
    (source / "notes.txt").write_text("not a document")
    out = tmp_path / "manifest.json"

    result = run("documents", "build", str(source), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out} with 2 documents\n"
    manifest = json.loads(out.read_text())
    assert list(manifest) == sorted(manifest)
    assert all(key == sha256(text) for key, text in manifest.items())
    assert sorted(manifest.values()) == [
        "mutation Bye {\n  logout\n}",
        "query Me {\n  me {\n    ...UserBits\n  }\n}\n\n"
        "fragment UserBits on User {\n  id\n  ...More\n}\n\n"
        "fragment More on User {\n  name\n}",
    ]
    check = run("documents", "check", str(out))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        "2 trusted documents in 1 manifest(s) pass the schema and the query limits "
        "(development settings)"
    ]


def test_documents_build_refuses_what_cannot_become_a_trusted_document(tmp_path: Path) -> None:
    first, second = tmp_path / "a.graphql", tmp_path / "b.graphql"
    first.write_text("query Me { me { id } }\n{ me { name } }\nquery Page { me { ...Missing } }\n")
    second.write_text("query Me { me { email } }\n")
    out = tmp_path / "manifest.json"

    result = run("documents", "build", str(first), str(second), "--out", str(out))

    assert result.returncode == 1 and not out.exists()
    assert result.stderr.splitlines() == [
        f"graphql-api: {first}: an anonymous query (line 2): every operation needs a name",
        f"graphql-api: {second}: operation Me (line 1) is also defined in {first}",
        f"graphql-api: {first}: operation Page uses fragment Missing, which no file defines",
    ]


def test_documents_check_names_every_problem_on_its_own_line(tmp_path: Path) -> None:
    good = "query Me { me { id } }"
    tampered = "query Name { me { name } }"
    unknown_field = "query Secret { me { passwordHash } }"
    too_deep = "query Deep { me { categories { edges { node { id } } } } }"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                sha256(good): good,
                sha256(tampered): tampered.replace("name", "email"),
                sha256(unknown_field): unknown_field,
                sha256(too_deep): too_deep,
            }
        )
    )
    missing = tmp_path / "missing.json"

    result = run(
        "documents", "check", str(manifest), str(missing), env={"GRAPHQL_API_MAX_DEPTH": "3"}
    )

    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    assert lines[0].startswith(f"graphql-api: {manifest}: entry {sha256(tampered)}: the id is not")
    assert lines[1] == f"graphql-api: {missing}: cannot be read (No such file or directory)"
    assert lines[2].startswith(f"graphql-api: {manifest}: entry {sha256(unknown_field)}: Cannot")
    assert lines[3].startswith(f"graphql-api: {manifest}: entry {sha256(too_deep)}: ")


def test_serve_refuses_a_manifest_that_does_not_load_with_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    assert run("keys", "generate", "--file", str(keys)).returncode == 0
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({sha256("query A { me { id } }"): "query A { me { nope } }"}))
    env = {
        "GRAPHQL_API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "GRAPHQL_API_JWT_KEYS_FILE": str(keys),
        "GRAPHQL_API_TRUSTED_DOCUMENTS_FILES": str(manifest),
    }
    result = run("serve", "--port", "1", env=env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"graphql-api: GRAPHQL_API_TRUSTED_DOCUMENTS_FILES: {manifest}: ")
    assert "the id is not the SHA-256 of the text" in lines[0]


def test_keys_generate_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    result = run("keys", "generate", "--file", str(tmp_path / "missing" / "jwks.json"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert f"{tmp_path / 'missing'} does not exist" in lines[0]


def head_revision() -> str:
    """The latest revision as `migrate` names it: "0002 (what it does)"."""
    from graphql_api.db.revisions import history

    return str(history("sqlite://")[-1])


def test_migrate_says_what_it_did_and_status_exits_1_when_behind(tmp_path: Path) -> None:
    env = {"GRAPHQL_API_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
    head = head_revision()
    behind = run("migrate", "--status", env=env)
    assert behind.returncode == 1, behind.stderr
    assert "current:  none" in behind.stdout and f"latest:   {head}" in behind.stdout
    assert not (tmp_path / "m.db").exists()  # asking changes nothing

    first = run("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from an empty database to {head}" in first.stdout
    again = run("migrate", env=env)
    assert f"already at {head}" in again.stdout
    status = run("migrate", "--status", env=env)
    assert status.returncode == 0 and "up to date" in status.stdout
    history = run("migrate", "history", env=env)
    assert f"{head}  <- the database is here" in history.stdout


def test_migrate_new_writes_a_revision_for_what_the_models_changed(tmp_path: Path) -> None:
    import sqlite3

    env = {"GRAPHQL_API_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
    versions = tmp_path / "versions"
    versions.mkdir()
    assert run("migrate", env=env).returncode == 0
    unchanged = run("migrate", "new", "nothing", "--versions-dir", str(versions), env=env)
    assert unchanged.returncode == 0 and "nothing written" in unchanged.stdout
    assert list(versions.iterdir()) == []

    # The models have an index the database lacks: as if a model had just gained it.
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("DROP INDEX ix_revocations_revoked_at")
    wrote = run("migrate", "new", "index revoked_at", "--versions-dir", str(versions), env=env)
    assert wrote.returncode == 0, wrote.stderr
    (path,) = versions.iterdir()
    latest = head_revision().split()[0]
    following = f"{int(latest) + 1:04d}"
    assert path.name == f"{following}_index_revoked_at.py" and str(path) in wrote.stdout
    source = path.read_text()
    assert f'revision = "{following}"' in source and f'down_revision = "{latest}"' in source
    assert "create_index" in source and "ix_revocations_revoked_at" in source


def test_migrate_new_writes_timestamp_columns_without_importing_the_application(
    tmp_path: Path,
) -> None:
    import sqlite3

    env = {"GRAPHQL_API_DATABASE_URL": f"sqlite:///{tmp_path}/m.db"}
    versions = tmp_path / "versions"
    versions.mkdir()
    assert run("migrate", env=env).returncode == 0
    # The models have a table the database lacks, with a UTCDateTime column (revoked_at).
    with sqlite3.connect(tmp_path / "m.db") as db:
        db.execute("DROP TABLE revocations")
    wrote = run("migrate", "new", "revocations", "--versions-dir", str(versions), env=env)
    assert wrote.returncode == 0, wrote.stderr
    assert "loaded twice" not in wrote.stderr
    (path,) = versions.iterdir()
    source = path.read_text()
    assert "create_table" in source and "revoked_at" in source
    # The type the column is, not the application's converter (a NameError on upgrade).
    assert "sa.DateTime(timezone=True)" in source and "graphql_api" not in source
    compile(source, str(path), "exec")


def test_the_package_revisions_are_loaded_once_when_a_new_one_goes_beside_them() -> None:
    import warnings

    from graphql_api.db.revisions import VERSIONS, _scripts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripts = _scripts("sqlite:///unused.db", VERSIONS)
        assert scripts.get_current_head() == head_revision().split()[0]
    assert not [w for w in caught if "loaded twice" in str(w.message)]


def test_dev_token_away_from_the_server_files_refuses_and_creates_nothing(
    tmp_path: Path,
) -> None:
    # Development defaults: ./graphql_api.db and ./.dev-jwt-keys.json, which serve creates.
    result = run(
        "dev-token", "dev@example.com", env={"GRAPHQL_API_ENV": "development"}, cwd=tmp_path
    )
    assert result.returncode == 1 and result.stdout == ""
    assert f"no development database at {tmp_path / 'graphql_api.db'}" in one_line(result)
    assert list(tmp_path.iterdir()) == []

    assert run("migrate", cwd=tmp_path).returncode == 0  # the database, not yet the key
    result = run("dev-token", "dev@example.com", cwd=tmp_path)
    assert result.returncode == 1
    assert f"no development signing key at {tmp_path / '.dev-jwt-keys.json'}" in one_line(result)

    assert run("keys", "generate", "--file", ".dev-jwt-keys.json", cwd=tmp_path).returncode == 0
    token = run("dev-token", "dev@example.com", cwd=tmp_path)
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr


def test_make_token_prints_a_token_and_says_how_to_call_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    env = {
        "GRAPHQL_API_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "GRAPHQL_API_JWT_KEYS_FILE": str(keys),
    }
    assert run("keys", "generate", "--file", str(keys)).returncode == 0
    assert run("migrate", env=env).returncode == 0

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_API_")}
        return subprocess.run(  # noqa: S603 - our own Makefile
            ["make", "--no-print-directory", "-s", "-C", str(ROOT), *args],  # noqa: S607
            capture_output=True,
            text=True,
            env={**base, **env},
            timeout=60,
            check=False,
        )

    token = make("token", "EMAIL=dev@example.com")
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2 and len(token.stdout.splitlines()) == 1
    usage = make("token")
    assert usage.returncode != 0 and "usage: make token EMAIL=you@example.com" in usage.stderr
