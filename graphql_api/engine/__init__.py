"""The GraphQL engine: documents, query limits, trusted documents, plans, error mapping.

Domain-free: it knows Strawberry and graphql-core, never our types, services or transports.
"""

from graphql_api.engine.engine import Engine, EngineConfig, EngineSchema, Result
from graphql_api.engine.request import GraphQLRequest, RequestError
from graphql_api.engine.trusted import TrustedDocuments, TrustMode

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineSchema",
    "GraphQLRequest",
    "RequestError",
    "Result",
    "TrustMode",
    "TrustedDocuments",
]
