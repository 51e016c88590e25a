"""Cached execution plans: validated queries run without graphql-core's per-field machinery.

graphql-core resolves every field of every object through a generic path (field lookup,
resolve info, awaitable checks, completion), which costs far more than the data itself
for a page of 100 objects. For a *validated* query document we compile, once per query
text, a plan of the fields to read, then run it level by level: plain attributes are read
directly, every other field (roots, permission-guarded fields, loaders) is called
through its real Strawberry resolver, so permission classes and loaders run unchanged.
A field whose definition names a *prefetched attribute* (``metadata={"prefetched": ...}``,
see ``ApiSchema.prefetched_attribute``; never a field with extensions) first reads that
attribute and uses it when it is not None; only otherwise is its resolver called.

Response paths exist only for resolvers' ``info.path``: objects below which no resolver can
be called get none, and the others a cheap reference that becomes a ``Path`` only when a
resolver is actually called.

The plan covers the happy path of read-only queries only. Anything it does not know
(directives, abstract types, introspection) is not compiled, and any exception while
running (an error to report, a null in a non-null field) makes the caller run the same
request through the normal executor, which produces the errors. Queries have no side
effects, so running the resolvers a second time changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.pyutils import Path

from graphql_api.api.document_cache import DocumentCache
from graphql_api.api.query_limits import QueryLimitRule


class Fallback(Exception):
    """This request must run through the normal executor."""


class NotCompilable(Exception):
    pass


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
            raise NotCompilable("nested lists")
        return nullable, True, item_nullable, item
    return nullable, False, False, type_


class Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        attributes: Callable[[str, str], str | None],
        prefetched: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.schema = schema
        self.attributes = attributes
        self.prefetched = prefetched

    def compile(self, document: DocumentNode, operation_name: str | None) -> Plan:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        if operation_name is None:
            if len(operations) != 1:
                raise NotCompilable("operation")
            operation = operations[0]
        else:
            named = [o for o in operations if o.name and o.name.value == operation_name]
            if len(named) != 1:
                raise NotCompilable("operation")
            operation = named[0]
        if operation.operation is not OperationType.QUERY or operation.directives:
            raise NotCompilable("not a plain query")
        for definition in operation.variable_definitions or ():
            if definition.directives:
                raise NotCompilable("variable directives")
        root = self.schema.query_type
        assert root is not None  # noqa: S101 - every schema has a query type
        fields = self._fields(operation.selection_set, root, fragments, set())
        return Plan(operation, fragments, fields)

    def _collect(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLObjectType,
        fragments: dict[str, FragmentDefinitionNode],
        visiting: set[str],
        into: OrderedDict[str, list[FieldNode]],
    ) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise NotCompilable("directives")
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                into.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is not None and condition.name.value != parent.name:
                    raise NotCompilable("abstract types")
                self._collect(selection.selection_set, parent, fragments, visiting, into)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in visiting:
                    raise NotCompilable("fragment")
                if fragment.type_condition.name.value != parent.name or fragment.directives:
                    raise NotCompilable("abstract types")
                self._collect(fragment.selection_set, parent, fragments, visiting | {name}, into)

    def _fields(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLObjectType,
        fragments: dict[str, FragmentDefinitionNode],
        visiting: set[str],
    ) -> list[PlanField]:
        collected: OrderedDict[str, list[FieldNode]] = OrderedDict()
        self._collect(selection_set, parent, fragments, visiting, collected)
        plan: list[PlanField] = []
        for key, nodes in collected.items():
            name = nodes[0].name.value
            if name == "__typename":
                plan.append(
                    PlanField(
                        key, name, nodes, None, parent, False, False, False, None, None, None, False
                    )
                )
                continue
            if name.startswith("__"):
                raise NotCompilable("introspection")
            definition = parent.fields[name]
            attribute = None if definition.args else self.attributes(parent.name, name)
            prefetched = None
            if attribute is None and not definition.args and self.prefetched is not None:
                prefetched = self.prefetched(parent.name, name)
            nullable, is_list, item_nullable, named = _unwrap(definition.type)
            object_type = named if isinstance(named, GraphQLObjectType) else None
            if object_type is None and not hasattr(named, "serialize"):
                raise NotCompilable("abstract types")
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
                sub = OrderedDict[str, list[FieldNode]]()
                for node in nodes:
                    if node.selection_set is None:
                        raise NotCompilable("object without selection")
                    self._collect(node.selection_set, object_type, fragments, visiting, sub)
                merged = SelectionSetNode(
                    selections=tuple(n for group in sub.values() for n in group)
                )
                entry.children = self._fields(merged, object_type, fragments, visiting)
                entry.needs_path = any(
                    (child.definition is not None and child.attribute is None) or child.needs_path
                    for child in entry.children
                )
            plan.append(entry)
        return plan


@dataclass(slots=True, eq=False)
class Plan:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    fields: list[PlanField]
    document: DocumentNode | None = None
    # Query limits that depend on each request's variables (e.g. a variable `first`).
    request_checks: tuple[type[QueryLimitRule], ...] = ()

    async def run(
        self, schema: GraphQLSchema, context: Any, inputs: dict[str, Any] | None
    ) -> dict[str, Any]:
        for rule in self.request_checks:
            if self.document is None or rule.check_request(
                schema,
                self.document,
                inputs,
                self.operation.name.value if self.operation.name else None,
            ):
                raise Fallback  # over a limit: the normal path reports it
        variables = get_variable_values(
            schema, self.operation.variable_definitions or (), inputs or {}
        )
        if not isinstance(variables, VariableValues):
            raise Fallback
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
                    value = resolve(source, self._info(entry, ref), **arguments)
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
            if any(isinstance(result, BaseException) for result in results):
                raise Fallback
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
                            raise Fallback
                        out[key] = None
                        continue
                    result = serialize(value)
                    if result is None:
                        raise Fallback
                    out[key] = result
                continue
            children: list[Item] = []
            for (_source, out, ref), value in zip(items, column, strict=True):
                out[key] = self._complete(entry, value, ref, children)
            if children:
                await self.level(entry.children, children)

    def _complete(self, entry: PlanField, value: Any, ref: PathRef, children: list[Item]) -> Any:
        if value is None:
            if not entry.nullable:
                raise Fallback
            return None
        needs_path = entry.needs_path
        if entry.is_list:
            completed: list[Any] = []
            for position, item in enumerate(value):
                if item is None:
                    if not entry.item_nullable:
                        raise Fallback
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
        result = entry.serialize(value)
        if result is None:
            raise Fallback
        return result


def _is_awaitable(value: Any) -> bool:
    return isinstance(value, Awaitable) and not isinstance(value, type)


class PlanCache:
    """Plans by (query text, operation name), for documents that passed validation."""

    def __init__(
        self,
        *,
        schema: GraphQLSchema,
        documents: DocumentCache,
        attributes: Callable[[str, str], str | None],
        prefetched: Callable[[str, str], str | None] | None = None,
        maxsize: int = 1024,
    ) -> None:
        self.schema = schema
        self.documents = documents
        self.compiler = Compiler(schema, attributes, prefetched)
        self.maxsize = maxsize
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()
        self._lock = Lock()
        self.hits = 0  # requests answered from a plan (an operational counter)

    def get(self, query: str, operation_name: str | None) -> Plan | None:
        key = (query, operation_name)
        if key in self._plans:
            return self._plans[key]
        entry = self.documents.get(query)
        if entry is None or entry.errors:
            return None  # not validated yet, or invalid: the normal path says why
        try:
            plan: Plan | None = self.compiler.compile(entry.document, operation_name)
            if plan is not None:
                plan.document = entry.document
                plan.request_checks = entry.request_checks
        except (NotCompilable, KeyError):
            plan = None
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.maxsize:
                self._plans.popitem(last=False)
        return plan
