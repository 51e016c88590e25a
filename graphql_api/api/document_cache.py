"""Parse and validate each distinct query text once per process.

The validation rules (GraphQL's own plus the query limits) are built once per schema,
so a cached verdict is only ever reused for the exact same text under the same rules.
Failed parses are not cached: the token limit keeps them cheap.

The query limits run first and alone: a hostile document is refused by cheap, linear
rules before GraphQL's own rules (some quadratic) see it. The cache is bounded by the
total length of the texts it holds as well as by count, because a parsed document
weighs about a hundred times its text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    validate,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from graphql_api.api.query_limits import QueryLimitRule

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext


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
        self._lock = Lock()

    def get(self, query: str) -> CachedDocument | None:
        entry = self._entries.get(query)
        if entry is not None:
            with self._lock:
                if query in self._entries:
                    self._entries.move_to_end(query)
        return entry

    def validate(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> CachedDocument:
        errors = validate(schema, document, self.limits)
        if not errors:
            errors = validate_document(schema, document, self.rules)
        checks = tuple(rule for rule in self.limits if rule.needs_request_check(document))
        entry = CachedDocument(document, tuple(errors), () if errors else checks)
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


class CachedValidation(SchemaExtension):
    """Serves parse and validation from a ``DocumentCache`` (pass a factory per schema)."""

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
            for rule in entry.request_checks:
                errors.extend(
                    rule.check_request(
                        context.schema._schema,
                        entry.document,
                        context.variables,
                        context.operation_name,
                    )
                )
            if not errors and _needs_operation_name(context, entry.document):
                errors.append(GraphQLError(MULTIPLE_OPERATIONS))
            context.pre_execution_errors = errors
        yield


MULTIPLE_OPERATIONS = "Must provide operationName if the query contains multiple operations."


def _needs_operation_name(context: ExecutionContext, document: DocumentNode) -> bool:
    # Strawberry would silently run the first operation; the GraphQL spec says refuse.
    if context._provided_operation_name is not None:  # the public property guesses
        return False
    operations = (d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return next(operations, None) is not None and next(operations, None) is not None
