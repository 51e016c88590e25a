"""The Strawberry schema and the execution settings that depend on the environment."""

from __future__ import annotations

import strawberry
from graphql import (
    ASTValidationRule,
    GraphQLError,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_api.api.document_cache import CachedValidation, DocumentCache
from graphql_api.api.error_mapping import client_error
from graphql_api.api.mutations import Mutation
from graphql_api.api.queries import Query
from graphql_api.api.query_limits import (
    MaxAliasesRule,
    MaxCostRule,
    MaxDepthRule,
    MaxDirectivesRule,
    MaxDuplicateFieldsRule,
)
from graphql_api.settings import Settings


class ApiSchema(strawberry.Schema):
    """Maps every error, on every path through ``execute``, to a contract error."""

    hide_hints: bool = True
    documents: DocumentCache | None = None

    def plain_attribute(self, type_name: str, field_name: str) -> str | None:
        """The Python attribute behind a field without resolver or extensions, if any."""
        field = self.get_field_for_type(field_name, type_name)
        if field is None or field.base_resolver is not None or field.extensions:
            return None
        return field.python_name

    def prefetched_attribute(self, type_name: str, field_name: str) -> str | None:
        """The attribute a resolver field's value may already be on (its ``prefetched``
        metadata): when it is not None it is the field's value, else the resolver runs.

        Never for a field with extensions (e.g. permissions), whose resolver must run.
        """
        field = self.get_field_for_type(field_name, type_name)
        if field is None or field.extensions or field.base_resolver is None:
            return None
        attribute = field.metadata.get("prefetched") if field.metadata else None
        return attribute if isinstance(attribute, str) else None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context = execution_context.context if execution_context else None
        request_id = getattr(context, "request_id", None)
        errors[:] = [
            client_error(error, request_id=request_id, hide_hints=self.hide_hints)
            for error in errors
        ]


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The query limits, then GraphQL's own rules, built once per schema.

    The limits replace Strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter``,
    which walk every fragment spread path (exponential in a 1 KiB document).
    """
    rules: list[type[ASTValidationRule]] = [
        MaxDepthRule.with_limit(settings.max_depth),
        MaxAliasesRule.with_limit(settings.max_aliases),
        MaxDuplicateFieldsRule.with_limit(settings.max_duplicate_fields),
        MaxDirectivesRule.with_limit(settings.max_directives),
        MaxCostRule.with_limit(settings.max_cost),
    ]
    rules.extend(specified_rules)
    # Circular introspection (types { fields { type { fields ... ) in development.
    rules.append(MaxIntrospectionDepthRule)
    if not settings.is_development:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def build_schema(settings: Settings | None = None) -> ApiSchema:
    settings = settings or Settings()
    cache = DocumentCache(rules=validation_rules(settings), max_tokens=settings.max_tokens)
    schema = ApiSchema(
        query=Query,
        mutation=Mutation,
        # A factory: each request gets a fresh extension; the cache is shared.
        extensions=[lambda: CachedValidation(cache)],
        config=StrawberryConfig(disable_field_suggestions=not settings.is_development),
    )
    schema.hide_hints = not settings.is_development
    schema.documents = cache
    return schema


def sdl() -> str:
    """The schema as SDL, as committed in schema/schema.graphql."""
    return strawberry.Schema(query=Query, mutation=Mutation).as_str() + "\n"
