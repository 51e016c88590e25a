"""`make audit`: remove each defence the README lists, one at a time, and check a test notices.

The README promises that each attack test fails if its defence is removed. This keeps the
promise checked: every entry of ``scripts/audit.toml`` is one defence, one small source
edit that removes it (an exact ``old`` text, found exactly once in one file, replaced by
``new``), and the tests expected to catch it. Each entry runs in a scratch copy of the
tree (the tracked files and any new ones, as they are in the working tree) with its edit
applied, and pytest runs its tests there (``-x``: the first failure is the catch). The
scratch copy comes first on ``PYTHONPATH`` and is the working directory, so what runs, in
this process and in any ``python -m graphql_api`` a test starts, is the edited code.

Alongside, a baseline runs every selected test on the unedited copy: a test that fails
there catches nothing. The table says, per defence, which test caught its removal, or
SURVIVED. The exit status is 1 when any defence survived, any entry is stale (its ``old``
text is not found exactly once, or its tests do not exist), any edit does not compile, or
the baseline fails a test that an entry counts on.

    scripts/audit.py [--jobs 2] [--only ID ...] [--list] [--no-baseline] [--keep]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ROOT / "scripts" / "audit.toml"
DEFAULT_TIMEOUT = 300.0  # seconds per entry: a hang is reported, not waited out
PYTEST = ["-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Edit:
    old: str
    new: str


@dataclass(frozen=True)
class Entry:
    id: str
    defence: str  # the README's Security bullet (or issue) it guards
    removes: str  # what the edit takes away, in words
    file: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT


@dataclass
class Outcome:
    entry: Entry
    status: str  # CAUGHT, SURVIVED, STALE, BROKEN, TIMEOUT, ERROR
    caught_by: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "CAUGHT"


def load_entries(path: Path = ENTRIES) -> list[Entry]:
    document = tomllib.loads(path.read_text())
    entries: list[Entry] = []
    for raw in document.get("entry", []):
        missing = [k for k in ("id", "defence", "removes", "file", "tests") if k not in raw]
        if missing:
            raise SystemExit(f"{path}: entry {raw.get('id', '?')}: missing {', '.join(missing)}")
        if "edits" in raw:
            edits = tuple(Edit(e["old"], e["new"]) for e in raw["edits"])
        elif "old" in raw and "new" in raw:
            edits = (Edit(raw["old"], raw["new"]),)
        else:
            raise SystemExit(f"{path}: entry {raw['id']}: needs old and new, or edits")
        entries.append(
            Entry(
                id=raw["id"],
                defence=raw["defence"],
                removes=raw["removes"],
                file=raw["file"],
                edits=edits,
                tests=tuple(raw["tests"]),
                timeout=float(raw.get("timeout", DEFAULT_TIMEOUT)),
            )
        )
    ids = [e.id for e in entries]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise SystemExit(f"{path}: repeated ids: {', '.join(repeated)}")
    return entries


def tree_files() -> list[str]:
    """The files of the tree: tracked ones and new ones git does not ignore, as they are
    in the working tree (a file deleted there is left out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def make_template(files: list[str], into: Path) -> Path:
    template = into / "template"
    for name in files:
        target = template / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    # Tests that run `make` in the tree (or its venv's tools) find the same venv.
    venv = ROOT / ".venv"
    if venv.exists():
        (template / ".venv").symlink_to(venv)
    return template


def scratch_copy(template: Path, into: Path) -> Path:
    # Real copies, not links: a test may write into the tree it runs in.
    shutil.copytree(template, into, symlinks=True)
    return into


def edited(entry: Entry, source: str) -> str | None:
    """``source`` with the entry's edits applied; None when an old text is not found
    exactly once (a stale entry)."""
    for edit in entry.edits:
        if source.count(edit.old) != 1:
            return None
        source = source.replace(edit.old, edit.new)
    return source


def stale_reason(entry: Entry) -> str | None:
    path = ROOT / entry.file
    if not path.is_file():
        return f"{entry.file} does not exist"
    source = path.read_text()
    for number, edit in enumerate(entry.edits, 1):
        found = source.count(edit.old)
        if found != 1:
            which = f"old text {number}" if len(entry.edits) > 1 else "old text"
            return f"{which} found {found} times in {entry.file}, not once"
        source = source.replace(edit.old, edit.new)
    return None


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The scratch tree's code first, here and in any `python -m graphql_api` a test starts
    # (the venv's editable install points at the real checkout).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass
class PytestRun:
    returncode: int | None  # None: timed out
    failed: list[str]
    passed: int
    skipped: int
    output: str


def run_pytest(tree: Path, tests: list[str], *, stop_first: bool, timeout: float) -> PytestRun:
    report = tree / ".audit-report.xml"
    command = [sys.executable, *PYTEST, f"--junitxml={report}"]
    if stop_first:
        command.append("-x")
    command += tests
    try:
        done = subprocess.run(  # noqa: S603 - our own test suite
            command,
            cwd=tree,
            env=environment(tree),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return PytestRun(None, [], 0, 0, output)
    failed, passed, skipped = _read_report(report)
    return PytestRun(done.returncode, failed, passed, skipped, done.stdout + done.stderr)


def _read_report(report: Path) -> tuple[list[str], int, int]:
    if not report.exists():
        return [], 0, 0
    failed: list[str] = []
    passed = skipped = 0
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - pytest's own file
        name = _test_name(case.get("classname", ""), case.get("name", ""))
        if case.find("failure") is not None:
            failed.append(name)
        elif case.find("error") is not None:
            failed.append(f"{name} (error)")
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return failed, passed, skipped


def _test_name(classname: str, name: str) -> str:
    """``tests.security.test_abuse`` + ``test_x`` -> ``security/test_abuse::test_x``."""
    parts = classname.split(".")
    if parts and parts[0] == "tests":
        parts = parts[1:]
    modules = [p for p in parts if not p[:1].isupper()]
    classes = [p for p in parts if p[:1].isupper()]
    return "::".join(["/".join(modules) + ".py", *classes, name])


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def audit_entry(entry: Entry, template: Path, workdir: Path) -> Outcome:
    started = time.monotonic()
    reason = stale_reason(entry)
    if reason is not None:
        return Outcome(entry, "STALE", detail=reason)
    tree = scratch_copy(template, workdir / entry.id)
    path = tree / entry.file
    source = edited(entry, path.read_text())
    if source is None:  # the file changed since the copy was made
        return Outcome(entry, "STALE", detail=f"{entry.file} changed during the audit")
    path.write_text(source)
    if path.suffix == ".py":
        try:
            compile(source, str(path), "exec")
        except SyntaxError as exc:
            return Outcome(entry, "BROKEN", detail=f"the edit does not compile: {exc}")
    run = run_pytest(tree, list(entry.tests), stop_first=True, timeout=entry.timeout)
    outcome = Outcome(entry, "ERROR", seconds=time.monotonic() - started)
    if run.returncode is None:
        outcome.status = "TIMEOUT"
        outcome.detail = f"no verdict within {entry.timeout:.0f} s\n{_tail(run.output)}"
    elif run.returncode == 0 and not run.passed:
        outcome.status = "SURVIVED"
        outcome.detail = "every selected test was skipped"
    elif run.returncode == 0:
        outcome.status = "SURVIVED"
    elif run.returncode == 1 and run.failed:
        outcome.status = "CAUGHT"
        outcome.caught_by = run.failed
    elif run.returncode in (4, 5):
        outcome.status = "STALE"
        outcome.detail = f"the tests do not run (pytest exit {run.returncode})\n{_tail(run.output)}"
    else:
        outcome.detail = f"pytest exit {run.returncode}\n{_tail(run.output)}"
    return outcome


def baseline(entries: list[Entry], template: Path, workdir: Path) -> PytestRun:
    tests = list(dict.fromkeys(test for entry in entries for test in entry.tests))
    tree = scratch_copy(template, workdir / "_baseline")
    timeout = max(DEFAULT_TIMEOUT, sum(e.timeout for e in entries) / 4)
    return run_pytest(tree, tests, stop_first=False, timeout=timeout)


def print_table(outcomes: list[Outcome]) -> None:
    rows = [("defence removed", "README defence", "result", "caught by", "s")]
    for o in outcomes:
        rows.append(
            (
                o.entry.id,
                o.entry.defence,
                o.status,
                ", ".join(o.caught_by) if o.caught_by else "-",
                f"{o.seconds:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for number, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])), row[4])
        if number == 0:
            print("  ".join("-" * w for w in widths), "--")


def check(entries: list[Entry]) -> int:
    """What an integrator runs after changing the code: no pytest run but collection."""
    problems = []
    for entry in entries:
        reason = stale_reason(entry)
        if reason is None and entry.file.endswith(".py"):
            source = edited(entry, (ROOT / entry.file).read_text())
            try:
                compile(source or "", entry.file, "exec")
            except SyntaxError as exc:
                reason = f"the edit does not compile: {exc}"
        if reason is not None:
            problems.append(f"{entry.id}: {reason}")
    tests = list(dict.fromkeys(test for entry in entries for test in entry.tests))
    collected = subprocess.run(  # noqa: S603 - our own test suite
        [sys.executable, *PYTEST, "--collect-only", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if collected.returncode != 0:
        problems.append(
            f"the tests do not all exist:\n{_tail(collected.stdout + collected.stderr)}"
        )
    for problem in problems:
        print(problem)
    print(f"audit --check: {len(entries)} entries, {len(problems)} problem(s)")
    return 1 if problems else 0


def select(entries: list[Entry], patterns: list[str] | None) -> list[Entry]:
    if not patterns:
        return entries
    chosen = [e for e in entries if any(fnmatch.fnmatch(e.id, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"no entry matches {' '.join(patterns)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2, help="entries run at once (default 2)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="only these ids (globs)")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the entries: old texts found once, edits compile, tests exist",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run of the unedited tree"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch trees")
    args = parser.parse_args(argv)

    entries = select(load_entries(), args.only)
    if args.list:
        for entry in entries:
            print(f"{entry.id:34} {entry.defence:22} {entry.file}: {entry.removes}")
        return 0

    if args.check:
        return check(entries)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="graphql-api-audit-"))
    try:
        template = make_template(tree_files(), workdir)
        print(f"audit: {len(entries)} defences, {args.jobs} at a time, in {workdir}", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            base = None if args.no_baseline else pool.submit(baseline, entries, template, workdir)
            futures = [pool.submit(audit_entry, e, template, workdir) for e in entries]
            outcomes = []
            for future in futures:
                outcome = future.result()
                outcomes.append(outcome)
                print(
                    f"  {outcome.status:8} {outcome.entry.id} ({outcome.seconds:.0f} s)", flush=True
                )
            base_run = base.result() if base is not None else None
    finally:
        if args.keep:
            print(f"scratch trees kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if base_run is not None:
        broken = set(base_run.failed)
        if base_run.returncode is None:
            print(f"\nbaseline: no verdict in time\n{_tail(base_run.output)}")
        elif broken:
            print(f"\nbaseline: {len(broken)} test(s) fail on the unedited tree:")
            for name in sorted(broken):
                print(f"  {name}")
        for outcome in outcomes:
            if outcome.status == "CAUGHT" and (
                base_run.returncode is None or set(outcome.caught_by) & broken
            ):
                outcome.status = "UNSURE"
                outcome.detail = "the catching test fails on the unedited tree too"

    print()
    print_table(outcomes)
    problems = [o for o in outcomes if not o.ok]
    for outcome in problems:
        print(
            f"\n{outcome.status}: {outcome.entry.id} ({outcome.entry.file}): "
            f"{outcome.entry.removes}"
        )
        if outcome.detail:
            print(outcome.detail)
    elapsed = time.monotonic() - started
    caught = sum(o.ok for o in outcomes)
    print(
        f"\naudit: {caught} of {len(outcomes)} defences caught, {len(problems)} not "
        f"({elapsed / 60:.1f} min)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
