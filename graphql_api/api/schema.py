"""The Strawberry schema and the execution settings that depend on the environment."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableValidation,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graphql_api.api.error_mapping import client_error
from graphql_api.api.mutations import Mutation
from graphql_api.api.queries import Query
from graphql_api.settings import Settings

_ = DisableValidation  # never used: validation is a security boundary here


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


def build_schema(settings: Settings | None = None) -> ApiSchema:
    settings = settings or Settings()
    development = settings.is_development
    extensions: list[type[SchemaExtension] | SchemaExtension | Any] = [
        MaxTokensLimiter(max_token_count=settings.max_tokens),
        ParserCache(maxsize=256),
        QueryDepthLimiter(max_depth=settings.max_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        ValidationCache(maxsize=256),
    ]
    if not development:
        extensions.append(DisableIntrospection())
    schema = ApiSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not development),
    )
    schema.hide_hints = not development
    return schema


def sdl() -> str:
    """The schema as SDL, as committed in schema/schema.graphql."""
    return strawberry.Schema(query=Query, mutation=Mutation).as_str() + "\n"
