"""Parse and validate each distinct query text once per process.

The validation rules (GraphQL's own plus the query limits) are built once per schema,
so a cached verdict is only ever reused for the exact same text under the same rules.
Failed parses are not cached: the token limit keeps them cheap.

The query limits run first and alone: a hostile document is refused by cheap, linear
rules before GraphQL's own rules (some quadratic) see it. The cache is bounded by the
total length of the texts it holds as well as by count, because a parsed document
weighs about a hundred times its text. Pinned entries (trusted documents, validated at
start-up) are never evicted.

Limits whose verdict depends on the variables (a page size given as a variable) are
checked per request on the variables as GraphQL coerces them (``check_variables``),
on both execution paths.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    validate,
)
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from graphql_api.engine.limits import QueryLimitRule
from graphql_api.engine.plans import select_operation

if TYPE_CHECKING:
    pass

MULTIPLE_OPERATIONS = "Must provide operationName if the query contains multiple operations."


@dataclass(frozen=True, slots=True)
class CachedDocument:
    document: DocumentNode
    errors: tuple[GraphQLError, ...]
    # Limits whose verdict also depends on the variables of each request.
    request_checks: tuple[type[QueryLimitRule], ...] = ()


class DocumentCache:
    def __init__(
        self,
        *,
        rules: Sequence[type[ASTValidationRule]],
        max_tokens: int,
        maxsize: int = 1024,
        max_chars: int = 1024 * 1024,
    ) -> None:
        self.rules = tuple(rules)
        self.limits = tuple(
            rule
            for rule in self.rules
            if isinstance(rule, type) and issubclass(rule, QueryLimitRule)
        )
        self.max_tokens = max_tokens
        self.maxsize = maxsize
        self.max_chars = max_chars
        self._chars = 0
        self._entries: OrderedDict[str, CachedDocument] = OrderedDict()
        self._pinned: dict[str, CachedDocument] = {}
        self._lock = Lock()

    def get(self, query: str) -> CachedDocument | None:
        pinned = self._pinned.get(query)
        if pinned is not None:
            return pinned
        entry = self._entries.get(query)
        if entry is not None:
            with self._lock:
                if query in self._entries:
                    self._entries.move_to_end(query)
        return entry

    def check(self, schema: GraphQLSchema, document: DocumentNode) -> CachedDocument:
        """The verdict of every rule on ``document``, without caching it."""
        errors = validate(schema, document, self.limits)
        if not errors:
            errors = validate_document(schema, document, self.rules)
        checks = tuple(rule for rule in self.limits if rule.needs_request_check(document))
        return CachedDocument(document, tuple(errors), () if errors else checks)

    def validate(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> CachedDocument:
        entry = self.check(schema, document)
        if len(query) > self.max_chars // 8:
            return entry  # one huge text must not flush the cache
        with self._lock:
            previous = self._entries.pop(query, None)
            if previous is not None:
                self._chars -= len(query)
            self._entries[query] = entry
            self._chars += len(query)
            while len(self._entries) > self.maxsize or self._chars > self.max_chars:
                evicted, _ = self._entries.popitem(last=False)
                self._chars -= len(evicted)
        return entry

    def pin(self, query: str, entry: CachedDocument) -> None:
        """Keep ``entry`` for the life of the process (a trusted document)."""
        self._pinned[query] = entry


def check_variables(
    schema: GraphQLSchema,
    entry: CachedDocument,
    operation: OperationDefinitionNode,
    inputs: Mapping[str, Any] | None,
) -> tuple[Any, list[GraphQLError]]:
    """The operation's variables coerced (graphql-core's ``VariableValues``), and the
    errors of the limits that depend on them. Variables that do not coerce give
    ``(None, [])``: graphql-core refuses the request itself, before any resolver runs."""
    variables = get_variable_values(
        schema, operation.variable_definitions or (), dict(inputs or {})
    )
    if isinstance(variables, list):
        return None, []
    errors: list[GraphQLError] = []
    name = operation.name.value if operation.name else None
    for rule in entry.request_checks:
        errors.extend(rule.check_request(schema, entry.document, variables.coerced, name))
    return variables, errors


class CachedValidation(SchemaExtension):
    """Serves parse and validation from a ``DocumentCache`` on Strawberry's path (pass a
    factory per schema), and checks the per-request limits."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache
        self.entry: CachedDocument | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        self.entry = self.cache.get(context.query) if context.query else None
        if self.entry is not None:
            context.graphql_document = self.entry.document
        else:
            context.parse_options["max_tokens"] = self.cache.max_tokens
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        entry = self.entry
        if entry is None and context.graphql_document is not None and context.query:
            entry = self.cache.validate(
                context.schema._schema, context.query, context.graphql_document
            )
        if entry is not None:
            # A fresh list: error processing rewrites it in place.
            errors = list(entry.errors)
            provided = context._provided_operation_name  # the public property guesses
            if not errors and provided is None and _several_operations(entry.document):
                # Strawberry would silently run the first operation; the spec says refuse.
                errors.append(GraphQLError(MULTIPLE_OPERATIONS))
            operation = select_operation(entry.document, provided) if not errors else None
            if operation is not None and entry.request_checks:
                _, more = check_variables(
                    context.schema._schema, entry, operation, context.variables
                )
                errors.extend(more)
            context.pre_execution_errors = errors
        yield


def _several_operations(document: DocumentNode) -> bool:
    operations = (d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return next(operations, None) is not None and next(operations, None) is not None
