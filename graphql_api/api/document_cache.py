"""Parse and validate each distinct query text once per process.

The validation rules (GraphQL's own plus the query limits) are built once per schema,
so a cached verdict is only ever reused for the exact same text under the same rules.
Failed parses are not cached: the token limit keeps them cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from threading import Lock

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document


@dataclass(frozen=True, slots=True)
class CachedDocument:
    document: DocumentNode
    errors: tuple[GraphQLError, ...]


class DocumentCache:
    def __init__(
        self,
        *,
        rules: Sequence[type[ASTValidationRule]],
        max_tokens: int,
        maxsize: int = 1024,
    ) -> None:
        self.rules = tuple(rules)
        self.max_tokens = max_tokens
        self.maxsize = maxsize
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
        errors = validate_document(schema, document, self.rules)
        entry = CachedDocument(document, tuple(errors))
        with self._lock:
            self._entries[query] = entry
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
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
            context.pre_execution_errors = list(entry.errors)
        yield
