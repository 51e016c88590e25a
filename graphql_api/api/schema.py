"""The Strawberry schema and the execution settings that depend on the environment."""

from __future__ import annotations

import strawberry
from graphql import (
    ASTValidationRule,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_api.api.document_cache import CachedValidation, DocumentCache
from graphql_api.api.error_mapping import client_error
from graphql_api.api.mutations import Mutation
from graphql_api.api.queries import Query
from graphql_api.settings import Settings


class ApiSchema(strawberry.Schema):
    """Maps every error, on every path through ``execute``, to a contract error."""

    hide_hints: bool = True

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
    """GraphQL's own rules plus the query limits, built once per schema."""
    rules: list[type[ASTValidationRule]] = list(specified_rules)
    rules.extend(QueryDepthLimiter(max_depth=settings.max_depth).validation_rules)
    rules.extend(MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules)
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
    return schema


def sdl() -> str:
    """The schema as SDL, as committed in schema/schema.graphql."""
    return strawberry.Schema(query=Query, mutation=Mutation).as_str() + "\n"
