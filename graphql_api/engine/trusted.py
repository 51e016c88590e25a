"""Trusted documents: the operations the service knows ahead of time, by SHA-256 of their text.

Modes (``TRUSTED_DOCUMENTS``): ``off`` runs free-form queries only, ``allow`` runs ids and
free-form queries, ``require`` runs ids only. Documents are never registered at run time.

Manifests come in two formats, told apart by their shape: graphql-codegen's persisted
documents, ``{"<sha256>": "<text>"}``, and Apollo's persisted query manifest,
``{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
"name", "type", "body"}]}``. Every entry is checked before the service starts: here, that
its id is the SHA-256 of its exact text (and, for Apollo, that the stated name and type
are the operation's); in ``Engine.verify``, that it parses and passes every rule and
limit of the schema. A problem is a ``ManifestError`` whose message is one line naming
the file, the entry and the reason: the operator's fix, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode

APOLLO_FORMAT = "apollo-persisted-query-manifest"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TrustMode(StrEnum):
    OFF = "off"
    ALLOW = "allow"
    REQUIRE = "require"


def document_id(text: str) -> str:
    """The id of a document: the lowercase hex SHA-256 of its exact text (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


class ManifestError(Exception):
    """A manifest, or one entry of it, cannot be trusted. The message is one line: the
    file, the entry (when the problem is one entry's) and the reason."""

    def __init__(self, source: str, reason: str, *, entry: str | None = None) -> None:
        reason = " ".join(reason.split())  # one line, whatever the reason quotes
        super().__init__(f"{source}: {entry}: {reason}" if entry else f"{source}: {reason}")
        self.source = source
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TrustedEntry:
    """One document of one manifest, as the manifest states it."""

    id: str
    text: str
    source: str  # the manifest file it came from
    label: str  # how problems name the entry within its file
    # Apollo's manifest also states the operation's name and type: both must be the text's.
    name: str | None = None
    type: str | None = None

    def problem(self, reason: str) -> ManifestError:
        return ManifestError(self.source, reason, entry=self.label)

    def check_id(self) -> None:
        """Refuse an entry whose id is not the hash of its text: a manifest edited by hand,
        or truncated, or two builds mixed up. The id is what clients send, the text is what
        runs: they must be the same document."""
        if not _SHA256.match(self.id):
            raise self.problem("the id is not 64 lowercase hex digits (a SHA-256)")
        actual = document_id(self.text)
        if actual != self.id:
            raise self.problem(f"the id is not the SHA-256 of the text (which is {actual})")

    def check_operation(self, document: DocumentNode) -> None:
        """For Apollo's entries: one operation, with the name and type the entry states
        (what Apollo's tooling and our metrics show must be what runs)."""
        if self.name is None and self.type is None:
            return
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            raise self.problem(f"holds {len(operations)} operations, not one")
        operation = operations[0]
        name = operation.name.value if operation.name else None
        if name != self.name:
            raise self.problem(f"name {self.name!r} is not the operation's ({name!r})")
        if operation.operation.value != self.type:
            raise self.problem(
                f"type {self.type!r} is not the operation's ({operation.operation.value!r})"
            )


class TrustedDocuments:
    """The known documents, by id (lowercase hex SHA-256 of the exact text)."""

    def __init__(
        self, mode: TrustMode, documents: Mapping[str, str | TrustedEntry] | None = None
    ) -> None:
        self.mode = mode
        self.entries = {
            key: value
            if isinstance(value, TrustedEntry)
            else TrustedEntry(key, value, source="(in code)", label=f"entry {key}")
            for key, value in (documents or {}).items()
        }
        self.documents = {key: entry.text for key, entry in self.entries.items()}

    def get(self, document_id: str) -> str | None:
        return self.documents.get(document_id)

    def __len__(self) -> int:
        return len(self.documents)


def load_manifests(paths: Sequence[Path]) -> dict[str, TrustedEntry]:
    """Every entry of every manifest, by id; raises the first problem (``ManifestError``)."""
    entries, problems = read_manifests(paths)
    if problems:
        raise problems[0]
    return entries


def read_manifests(
    paths: Sequence[Path],
) -> tuple[dict[str, TrustedEntry], list[ManifestError]]:
    """The entries that pass the checks needing no schema, by id, and every problem.

    Several manifests at once is how a new frontend rolls out (the old one still runs
    until its users reload), so the same id in several files is expected: the same text
    is one document; a different text is refused.
    """
    entries: dict[str, TrustedEntry] = {}
    problems: list[ManifestError] = []
    for path in paths:
        try:
            found = list(read_manifest(path))
        except ManifestError as problem:
            problems.append(problem)
            continue
        for entry in found:
            try:
                entry.check_id()
            except ManifestError as problem:
                problems.append(problem)
                continue
            known = entries.setdefault(entry.id, entry)
            if known.text != entry.text:  # only a SHA-256 collision gets past check_id
                problems.append(entry.problem(f"{known.source} has the same id, another text"))
    return entries, problems


def read_manifest(path: Path) -> Iterable[TrustedEntry]:
    """The entries of one manifest file, in either format; raises ``ManifestError``."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(source, f"cannot be read ({exc.strerror or exc})") from exc
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(source, f"is not JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(source, "is not a manifest (a JSON object)")
    if "format" in manifest:
        return _apollo_entries(source, manifest)
    return _codegen_entries(source, manifest)


def _codegen_entries(source: str, manifest: dict[str, Any]) -> list[TrustedEntry]:
    entries = []
    for key, text in manifest.items():
        entry = TrustedEntry(key, text, source=source, label=f"entry {key}")
        if not isinstance(text, str):
            raise entry.problem("the document is not a string")
        entries.append(entry)
    return entries


def _apollo_entries(source: str, manifest: dict[str, Any]) -> list[TrustedEntry]:
    if manifest["format"] != APOLLO_FORMAT:
        raise ManifestError(source, f"format {manifest['format']!r} is not {APOLLO_FORMAT!r}")
    if manifest.get("version") != 1:
        raise ManifestError(source, f"version {manifest.get('version')!r} is not 1")
    operations = manifest.get("operations")
    if not isinstance(operations, list):
        raise ManifestError(source, '"operations" is not a list')
    entries = []
    for index, operation in enumerate(operations):
        label = f"operations[{index}]"
        if not isinstance(operation, dict):
            raise ManifestError(source, "is not an object", entry=label)
        fields = {key: operation.get(key) for key in ("id", "name", "type", "body")}
        missing = [key for key, value in fields.items() if not isinstance(value, str)]
        if missing:
            raise ManifestError(source, f"{', '.join(missing)} must be strings", entry=label)
        id_, name, type_, body = (str(fields[key]) for key in ("id", "name", "type", "body"))
        entries.append(
            TrustedEntry(id_, body, source=source, label=f'{label} "{name}"', name=name, type=type_)
        )
    return entries


def error_line(error: GraphQLError) -> str:
    """A GraphQL error as one line with its position, for an operator."""
    where = ""
    if error.locations:
        location = error.locations[0]
        where = f" (line {location.line}, column {location.column})"
    return f"{error.message}{where}"
