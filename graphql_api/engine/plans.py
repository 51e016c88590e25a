"""Cached execution plans: validated queries run without graphql-core's per-field machinery.

graphql-core resolves every field of every object through a generic path (field lookup,
resolve info, awaitable checks, completion), which costs far more than the data itself
for a page of 100 objects. For a *validated* query document we compile, once per query
text, a plan of the fields to read, then run it level by level: plain attributes are read
directly, every other field (roots, permission-guarded fields, loaders) is called
through its real Strawberry resolver, so permission classes and loaders run unchanged.
A field whose definition names a *prefetched attribute* (``metadata={"prefetched": ...}``,
see ``prefetched_attribute``; never a field with extensions) first reads that attribute
and uses it when it is not None; only otherwise is its resolver called.

Fields are collected exactly as graphql-core collects them: a fragment spread twice into
one merged selection counts once, so a document that spreads the same fragment 20 times
at each of six levels compiles to the same small plan as one that spreads it once.
Compiling is bounded all the same (``max_nodes`` selections visited per plan): a plan
over the budget is not built, and the document runs through graphql-core. Plans are
cached by weight (their size), least recently used out.

Response paths exist only for resolvers' ``info.path``: objects below which no resolver can
be called get none, and the others a cheap reference that becomes a ``Path`` only when a
resolver is actually called.

``@include`` and ``@skip`` are decided while compiling, from the request's variables: a
document whose conditions use variables has one plan per combination of their values.

The plan covers the happy path of read-only queries only. Anything it does not know
(other directives, abstract types, introspection) is not compiled, and any error while
running (an error to report, a null in a non-null field) makes the engine run the same
request through graphql-core, which produces the errors. Queries have no side effects,
so running the resolvers a second time changes nothing. Every such fallback has a reason
from a closed set (``FallbackReason``), counted by the engine.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from threading import Lock
from typing import Any

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
)
from graphql.execution.values import VariableValues, get_argument_values
from graphql.pyutils import Path

DEFAULT_MAX_NODES = 2000


class FallbackReason(StrEnum):
    """Why a request ran through graphql-core instead of a plan (a closed set: these are
    metric labels)."""

    DISABLED = "disabled"  # plans are off (setting, or schema extensions plans cannot run)
    NOT_QUERY = "not_query"  # mutations and subscriptions always take graphql-core
    DIRECTIVES = "directives"
    ABSTRACT_TYPES = "abstract_types"
    INTROSPECTION = "introspection"
    OPERATION = "operation"  # operationName missing, ambiguous or unknown
    TOO_LARGE = "too_large"  # over the compile budget
    UNSUPPORTED = "unsupported"  # a shape the compiler does not handle (e.g. nested lists)
    VARIABLES = "variables"  # the variables do not coerce: graphql-core says why
    LIMITS = "limits"  # over a query limit for these variables: graphql-core says why
    ERROR = "error"  # a resolver raised: graphql-core reports the error
    NULL = "null"  # a null where the schema says non-null
    UNEXPECTED = "unexpected"  # anything else: a bug in the plan machinery


class Fallback(Exception):
    """This request must run through the normal executor."""

    def __init__(self, reason: FallbackReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class NotCompilable(Exception):
    def __init__(self, reason: FallbackReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(slots=True, eq=False)
class PlanField:
    key: str
    name: str
    nodes: list[FieldNode]
    definition: GraphQLField | None  # None for __typename
    parent: GraphQLObjectType
    nullable: bool
    is_list: bool
    item_nullable: bool
    object_type: GraphQLObjectType | None  # None for leaves
    serialize: Callable[[Any], Any] | None
    attribute: str | None  # set for plain attributes: read directly
    has_arguments: bool
    prefetched: str | None = None  # read first; the resolver runs only when it is None
    children: list[PlanField] = field(default_factory=list)
    # Whether a resolver may be called at or below this field's children: only then do
    # the objects it produces carry a response path.
    needs_path: bool = False


def _unwrap(type_: GraphQLOutputType) -> tuple[bool, bool, bool, Any]:
    nullable = not isinstance(type_, GraphQLNonNull)
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLList):
        item = type_.of_type
        item_nullable = not isinstance(item, GraphQLNonNull)
        if isinstance(item, GraphQLNonNull):
            item = item.of_type
        if isinstance(item, GraphQLList | GraphQLNonNull):
            raise NotCompilable(FallbackReason.UNSUPPORTED)
        return nullable, True, item_nullable, item
    return nullable, False, False, type_


class Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        attributes: Callable[[str, str], str | None],
        prefetched: Callable[[str, str], str | None] | None = None,
        *,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> None:
        self.schema = schema
        self.attributes = attributes
        self.prefetched = prefetched
        self.max_nodes = max_nodes

    def compile(
        self,
        document: DocumentNode,
        operation_name: str | None,
        variables: VariableValues | None = None,
    ) -> Plan:
        """The plan of one operation; ``variables`` (coerced) decide ``@include``/``@skip``."""
        operation = select_operation(document, operation_name)
        if operation is None:
            raise NotCompilable(FallbackReason.OPERATION)
        if operation.operation is not OperationType.QUERY:
            raise NotCompilable(FallbackReason.NOT_QUERY)
        if operation.directives:
            raise NotCompilable(FallbackReason.DIRECTIVES)
        for definition in operation.variable_definitions or ():
            if definition.directives:
                raise NotCompilable(FallbackReason.DIRECTIVES)
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        root = self.schema.query_type
        assert root is not None  # noqa: S101 - every schema has a query type
        build = _Build(self, fragments, variables)
        fields = build.fields([operation.selection_set], root)
        return Plan(operation, fragments, fields, document=document, weight=build.weight)


class _Build:
    """One compilation: its fragments and what it has spent of the node budget."""

    def __init__(
        self,
        compiler: Compiler,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues | None,
    ) -> None:
        self.compiler = compiler
        self.fragments = fragments
        self.variables = variables
        self.budget = compiler.max_nodes
        self.weight = 0

    def included(self, directives: tuple[DirectiveNode, ...]) -> bool:
        """graphql-core's ``should_include_node``: ``@skip`` first, then ``@include``."""
        by_name = {directive.name.value: directive for directive in directives}
        if set(by_name) - {"skip", "include"} or len(by_name) != len(directives):
            raise NotCompilable(FallbackReason.DIRECTIVES)
        if self.variables is None and any(
            isinstance(argument.value, VariableNode)
            for directive in directives
            for argument in directive.arguments or ()
        ):
            raise NotCompilable(FallbackReason.DIRECTIVES)
        variables: Any = self.variables
        if "skip" in by_name:
            skip = get_argument_values(GraphQLSkipDirective, by_name["skip"], variables)
            if skip.get("if") is True:
                return False
        if "include" in by_name:
            include = get_argument_values(GraphQLIncludeDirective, by_name["include"], variables)
            if include.get("if") is False:
                return False
        return True

    def _spend(self) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise NotCompilable(FallbackReason.TOO_LARGE)

    def collect(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLObjectType,
        visited: set[str],
        into: dict[str, list[FieldNode]],
    ) -> None:
        """graphql-core's ``collect_fields``: each fragment once per merged selection."""
        for selection in selection_set.selections:
            self._spend()
            if selection.directives and not self.included(selection.directives):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                into.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is not None and condition.name.value != parent.name:
                    raise NotCompilable(FallbackReason.ABSTRACT_TYPES)
                self.collect(selection.selection_set, parent, visited, into)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments.get(name)
                if fragment is None:
                    raise NotCompilable(FallbackReason.UNSUPPORTED)
                if fragment.directives:
                    raise NotCompilable(FallbackReason.DIRECTIVES)
                if fragment.type_condition.name.value != parent.name:
                    raise NotCompilable(FallbackReason.ABSTRACT_TYPES)
                self.collect(fragment.selection_set, parent, visited, into)

    def fields(
        self, selection_sets: Sequence[SelectionSetNode], parent: GraphQLObjectType
    ) -> list[PlanField]:
        """The plan of the merged ``selection_sets`` (all the nodes of one response key)."""
        collected: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for selection_set in selection_sets:
            self.collect(selection_set, parent, visited, collected)
        compiler = self.compiler
        plan: list[PlanField] = []
        for key, nodes in collected.items():
            self.weight += 1
            name = nodes[0].name.value
            if name == "__typename":
                plan.append(
                    PlanField(
                        key, name, nodes, None, parent, False, False, False, None, None, None, False
                    )
                )
                continue
            if name.startswith("__"):
                raise NotCompilable(FallbackReason.INTROSPECTION)
            definition = parent.fields.get(name)
            if definition is None:
                raise NotCompilable(FallbackReason.UNSUPPORTED)  # validation would refuse it
            attribute = None if definition.args else compiler.attributes(parent.name, name)
            prefetched = None
            if attribute is None and not definition.args and compiler.prefetched is not None:
                prefetched = compiler.prefetched(parent.name, name)
            nullable, is_list, item_nullable, named = _unwrap(definition.type)
            object_type = named if isinstance(named, GraphQLObjectType) else None
            if object_type is None and not hasattr(named, "serialize"):
                raise NotCompilable(FallbackReason.ABSTRACT_TYPES)
            entry = PlanField(
                key=key,
                name=name,
                nodes=nodes,
                definition=definition,
                parent=parent,
                nullable=nullable,
                is_list=is_list,
                item_nullable=item_nullable,
                object_type=object_type,
                serialize=None if object_type else named.serialize,
                attribute=attribute,
                has_arguments=bool(definition.args),
                prefetched=prefetched,
            )
            if object_type is not None:
                selections = []
                for node in nodes:
                    if node.selection_set is None:
                        raise NotCompilable(FallbackReason.UNSUPPORTED)
                    selections.append(node.selection_set)
                entry.children = self.fields(selections, object_type)
                entry.needs_path = any(
                    (child.definition is not None and child.attribute is None) or child.needs_path
                    for child in entry.children
                )
            plan.append(entry)
        return plan


def select_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation a request runs: the named one, or the only one; None if ambiguous."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    named = [o for o in operations if o.name and o.name.value == operation_name]
    return named[0] if len(named) == 1 else None


@dataclass(slots=True, eq=False)
class Plan:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    fields: list[PlanField]
    document: DocumentNode
    weight: int = 1  # how much of the plan cache it takes (its fields)

    async def run(
        self, schema: GraphQLSchema, context: Any, variables: VariableValues
    ) -> dict[str, Any]:
        """The data of this plan for ``variables`` (already coerced and checked against
        the query limits); raises ``Fallback`` when graphql-core must answer instead."""
        run = _Run(schema, self, context, variables)
        data: dict[str, Any] = {}
        await run.level(self.fields, [(None, data, None)])
        return data


# Where an object sits in the response, built into a ``Path`` only when a resolver needs
# it: None (the root, or an object below which no resolver is called), or (the parent
# object's reference, the field that produced the object, its position in that field's
# list or None).
PathRef = tuple["PathRef", PlanField, int | None] | None

# (source object, the dict its fields go into, its response path reference)
Item = tuple[Any, dict[str, Any], PathRef]


def _path(ref: PathRef) -> Path | None:
    """The response path of the object ``ref`` refers to."""
    if ref is None:
        return None
    parent, entry, position = ref
    if position is None:
        assert entry.object_type is not None  # noqa: S101 - only objects have references
        return Path(_path(parent), entry.key, entry.object_type.name)
    return Path(Path(_path(parent), entry.key, None), position, None)


class _Run:
    __slots__ = ("context", "plan", "schema", "variables")

    def __init__(
        self, schema: GraphQLSchema, plan: Plan, context: Any, variables: VariableValues
    ) -> None:
        self.schema = schema
        self.plan = plan
        self.context = context
        self.variables = variables

    def _info(self, entry: PlanField, parent: PathRef) -> GraphQLResolveInfo[Any]:
        assert entry.definition is not None  # noqa: S101 - never called for __typename
        return GraphQLResolveInfo(
            entry.name,
            entry.nodes,
            entry.definition.type,
            entry.parent,
            Path(_path(parent), entry.key, entry.parent.name),
            self.schema,
            self.plan.fragments,
            None,
            self.plan.operation,
            self.variables.coerced,  # type: ignore[arg-type] # what Strawberry passes too
            self.context,
            _is_awaitable,  # type: ignore[arg-type]
            None,
            None,  # type: ignore[arg-type]
        )

    async def level(self, fields: Sequence[PlanField], items: list[Item]) -> None:
        """Resolve ``fields`` on every item, then each object field's children in one go."""
        columns: list[list[Any]] = []
        pending: list[tuple[list[Any], int, Awaitable[Any]]] = []
        for entry in fields:
            column: list[Any]
            if entry.definition is None:
                column = [entry.parent.name] * len(items)
            elif entry.attribute is not None:
                attribute = entry.attribute
                column = [getattr(source, attribute) for source, _out, _ref in items]
            else:
                column = []
                resolve = entry.definition.resolve
                assert resolve is not None  # noqa: S101 - Strawberry sets every resolver
                arguments: dict[str, Any] = {}
                if entry.has_arguments:
                    arguments = get_argument_values(
                        entry.definition, entry.nodes[0], self.variables
                    )
                prefetched = entry.prefetched
                for index, (source, _out, ref) in enumerate(items):
                    if prefetched is not None:
                        value = getattr(source, prefetched)
                        if value is not None:
                            column.append(value)
                            continue
                    try:
                        value = resolve(source, self._info(entry, ref), **arguments)
                    except Exception:  # noqa: BLE001 - the resolver's error: graphql-core reports it
                        raise Fallback(FallbackReason.ERROR) from None
                    if _is_awaitable(value):
                        pending.append((column, index, value))
                        column.append(None)
                    else:
                        column.append(value)
            columns.append(column)
        if pending:
            # Coroutines run concurrently so that their loader calls share one batch.
            results = await asyncio.gather(
                *(value for _, _, value in pending), return_exceptions=True
            )
            for result in results:
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BaseException):
                    # The resolver's own error (expected or not): graphql-core reports it.
                    raise Fallback(FallbackReason.ERROR)
            for (column, index, _), result in zip(pending, results, strict=True):
                column[index] = result

        for entry, column in zip(fields, columns, strict=True):
            key = entry.key
            if entry.object_type is None and not entry.is_list:
                if entry.serialize is None:  # __typename
                    for (_source, out, _ref), value in zip(items, column, strict=True):
                        out[key] = value
                    continue
                serialize, nullable = entry.serialize, entry.nullable
                for (_source, out, _ref), value in zip(items, column, strict=True):
                    if value is None:
                        if not nullable:
                            raise Fallback(FallbackReason.NULL)
                        out[key] = None
                        continue
                    out[key] = _serialize(serialize, value)
                continue
            children: list[Item] = []
            for (_source, out, ref), value in zip(items, column, strict=True):
                out[key] = self._complete(entry, value, ref, children)
            if children:
                await self.level(entry.children, children)

    def _complete(self, entry: PlanField, value: Any, ref: PathRef, children: list[Item]) -> Any:
        if value is None:
            if not entry.nullable:
                raise Fallback(FallbackReason.NULL)
            return None
        needs_path = entry.needs_path
        if entry.is_list:
            completed: list[Any] = []
            for position, item in enumerate(value):
                if item is None:
                    if not entry.item_nullable:
                        raise Fallback(FallbackReason.NULL)
                    completed.append(None)
                elif entry.object_type is not None:
                    child: dict[str, Any] = {}
                    children.append((item, child, (ref, entry, position) if needs_path else None))
                    completed.append(child)
                else:
                    completed.append(self._leaf(entry, item))
            return completed
        if entry.object_type is not None:
            child = {}
            children.append((value, child, (ref, entry, None) if needs_path else None))
            return child
        return self._leaf(entry, value)

    @staticmethod
    def _leaf(entry: PlanField, value: Any) -> Any:
        if entry.serialize is None:
            return value  # __typename
        return _serialize(entry.serialize, value)


def _serialize(serialize: Callable[[Any], Any], value: Any) -> Any:
    """A leaf's value as GraphQL serializes it; graphql-core reports what cannot be."""
    try:
        result = serialize(value)
    except (GraphQLError, ValueError, TypeError):
        raise Fallback(FallbackReason.ERROR) from None
    if result is None:
        raise Fallback(FallbackReason.NULL)
    return result


def _is_awaitable(value: Any) -> bool:
    return isinstance(value, Awaitable) and not isinstance(value, type)


# A cached "no plan", with the reason every request for that document falls back.
CacheEntry = Plan | FallbackReason


class PlanCache:
    """Plans by (query text, operation name), for documents that passed validation.

    Bounded by weight (the sum of the plans' sizes), least recently used out, so that a
    flood of distinct large documents cannot grow memory without end.
    """

    def __init__(self, compiler: Compiler, *, max_weight: int = 200_000) -> None:
        self.compiler = compiler
        self.max_weight = max_weight
        self._weight = 0
        self._entries: OrderedDict[tuple[str, str | None, tuple[Any, ...]], CacheEntry] = (
            OrderedDict()
        )
        # Per document: the variables its @include/@skip conditions read.
        self._conditions: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._lock = Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        return self._weight

    def get(
        self,
        query: str,
        operation_name: str | None,
        document: DocumentNode,
        variables: VariableValues | None = None,
    ) -> CacheEntry:
        """The plan for ``document`` (the validated parse of ``query``) and the values of
        its condition variables, compiled on first use; a ``FallbackReason`` when it has
        none. Raises what the compiler raises unexpectedly (the engine counts it as a bug)."""
        names = self._conditions.get((query, operation_name))
        if names is None:
            names = condition_variables(document)
            if len(self._conditions) > self.max_weight:
                self._conditions.clear()  # bounded; recomputing is cheap
            self._conditions[(query, operation_name)] = names
        coerced = variables.coerced if variables is not None else {}
        key = (query, operation_name, tuple(coerced.get(name) for name in names))
        entry = self._entries.get(key)
        if entry is not None:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry
        try:
            entry = self.compiler.compile(document, operation_name, variables)
        except NotCompilable as exc:
            entry = exc.reason
        weight = entry.weight if isinstance(entry, Plan) else 1
        if weight > self.max_weight // 8:
            return entry  # one huge plan must not flush the cache
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._weight -= previous.weight if isinstance(previous, Plan) else 1
            self._entries[key] = entry
            self._weight += weight
            while self._weight > self.max_weight and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._weight -= evicted.weight if isinstance(evicted, Plan) else 1
        return entry


def condition_variables(document: DocumentNode) -> tuple[str, ...]:
    """The variables that ``@include``/``@skip`` read anywhere in ``document``."""
    names: set[str] = set()
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        for directive in getattr(node, "directives", None) or ():
            for argument in directive.arguments or ():
                if isinstance(argument.value, VariableNode):
                    names.add(argument.value.name.value)
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
    return tuple(sorted(names))


def plain_attribute(schema: Any) -> Callable[[str, str], str | None]:
    """For a Strawberry schema: the Python attribute behind a field that has neither a
    resolver nor extensions, which a plan may read directly."""

    def attribute(type_name: str, field_name: str) -> str | None:
        definition = schema.get_field_for_type(field_name, type_name)
        if definition is None or definition.base_resolver is not None or definition.extensions:
            return None
        name: str = definition.python_name
        return name

    return attribute


def prefetched_attribute(schema: Any) -> Callable[[str, str], str | None]:
    """For a Strawberry schema: the attribute a resolver field's value may already be on
    (its ``prefetched`` metadata): when not None it is the field's value, else the
    resolver runs. Never for a field with extensions (e.g. permissions), which must run."""

    def attribute(type_name: str, field_name: str) -> str | None:
        definition = schema.get_field_for_type(field_name, type_name)
        if definition is None or definition.extensions or definition.base_resolver is None:
            return None
        found = definition.metadata.get("prefetched") if definition.metadata else None
        return found if isinstance(found, str) else None

    return attribute
