"""The Strawberry schema of the API, and its SDL as committed in schema/schema.graphql."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from graphql_api.api.mutations import Mutation
from graphql_api.api.queries import Query
from graphql_api.api.subscriptions import Subscription
from graphql_api.engine import EngineSchema


def build_schema(*, development: bool = False) -> EngineSchema:
    """``development`` keeps GraphQL's "Did you mean" hints in validation messages."""
    return EngineSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(disable_field_suggestions=not development),
    )


def sdl() -> str:
    """The schema as SDL, as committed in schema/schema.graphql."""
    schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
    return schema.as_str() + "\n"
