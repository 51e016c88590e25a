"""A trusted-documents manifest built from ``.graphql`` files (``graphql-api documents build``).

Each operation becomes one document: the operation, then the fragments it uses
(transitively, from any of the files) in the order it first uses them, printed by
graphql-core's ``print_ast``. Canonical printing means the same operations give the same
ids whatever the files' layout, comments or formatting. The manifest is graphql-codegen's
format, ``{"<sha256>": "<text>"}``, sorted by id, so a rebuild changes only what changed.

No schema here: a frontend builds its manifest on its own; ``documents check`` (or the
service's start) validates it against the schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from graphql import (
    DefinitionNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    get_location,
    parse,
    print_ast,
)

from graphql_api.engine.trusted import document_id, error_line

SUFFIX = ".graphql"


class BuildError(Exception):
    """The files do not make a manifest; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def graphql_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The files ``paths`` name (directories searched recursively for ``*.graphql``),
    each once, and one problem per path that names none."""
    files: dict[Path, None] = {}
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob(f"*{SUFFIX}"))
            if not found:
                problems.append(f"{path}: no {SUFFIX} files in this directory")
            files.update(dict.fromkeys(found))
        elif path.is_file():
            files[path] = None
        else:
            problems.append(f"{path}: no such file or directory")
    return list(files), problems


def build_manifest(paths: Sequence[Path]) -> dict[str, str]:
    """The manifest of every operation in ``paths``; raises ``BuildError``."""
    files, problems = graphql_files(paths)
    operations: dict[str, tuple[OperationDefinitionNode, Path]] = {}
    fragments: dict[str, tuple[FragmentDefinitionNode, Path]] = {}
    for file in files:
        try:
            document = parse(Source(file.read_text(encoding="utf-8"), str(file)))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: cannot be read ({exc})")
            continue
        except GraphQLSyntaxError as error:
            problems.append(f"{file}: does not parse: {error_line(error)}")
            continue
        for definition in document.definitions:
            problems.extend(_collect(definition, file, operations, fragments))
    manifest: dict[str, str] = {}
    unknown: dict[str, str] = {}
    for name, (operation, file) in operations.items():
        used: list[FragmentDefinitionNode] = []
        for spread in _spreads(operation.selection_set, fragments, seen=set()):
            if spread in fragments:
                used.append(fragments[spread][0])
            else:
                unknown.setdefault(spread, f"{file}: operation {name} uses fragment {spread}")
        text = print_ast(DocumentNode(definitions=(operation, *used)))
        manifest[document_id(text)] = text
    problems.extend(f"{where}, which no file defines" for where in unknown.values())
    if problems:
        raise BuildError(problems)
    return dict(sorted(manifest.items()))


def _collect(
    definition: DefinitionNode,
    file: Path,
    operations: dict[str, tuple[OperationDefinitionNode, Path]],
    fragments: dict[str, tuple[FragmentDefinitionNode, Path]],
) -> list[str]:
    line = _line(definition)
    if isinstance(definition, OperationDefinitionNode):
        kind = definition.operation.value
        if definition.name is None:
            # The name is how the client asks for it and how metrics and logs show it.
            return [f"{file}: an anonymous {kind} ({line}): every operation needs a name"]
        name = definition.name.value
        if name in operations:
            return [f"{file}: operation {name} ({line}) is also defined in {operations[name][1]}"]
        operations[name] = (definition, file)
        return []
    if isinstance(definition, FragmentDefinitionNode):
        name = definition.name.value
        if name in fragments:
            return [f"{file}: fragment {name} ({line}) is also defined in {fragments[name][1]}"]
        fragments[name] = (definition, file)
        return []
    return [f"{file}: {line}: only operations and fragments belong in a document file"]


def _line(definition: DefinitionNode) -> str:
    location = definition.loc
    return f"line {get_location(location.source, location.start).line}" if location else "?"


def _spreads(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, tuple[FragmentDefinitionNode, Path]],
    *,
    seen: set[str],
) -> Iterator[str]:
    """The fragments a selection set uses, transitively, each once, in order of first use."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen:
                continue
            seen.add(name)
            yield name
            if name in fragments:  # a cycle stops at ``seen``; validation reports it
                yield from _spreads(fragments[name][0].selection_set, fragments, seen=seen)
        elif isinstance(selection, FieldNode | InlineFragmentNode):
            yield from _spreads(selection.selection_set, fragments, seen=seen)
