"""The four workloads of the benchmark, as GraphQL operations and as their REST twins."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

NAME_PLACEHOLDER = "@NAME@"

W3_QUERY = "{ categories(first: 100) { edges { node { id name owner { id name } } } } }"
W4_MUTATION = (
    "mutation Create($input: CreateCategoryInput!) { createCategory(input: $input) { id name } }"
)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request; ``NAME_PLACEHOLDER`` in the body is replaced by a unique name."""

    method: str
    path: str
    body: bytes | None = None

    def with_name(self, name: str) -> Request:
        if self.body is None:
            return self
        return Request(
            self.method, self.path, self.body.replace(NAME_PLACEHOLDER.encode(), name.encode())
        )


@dataclass(frozen=True, slots=True)
class Workload:
    key: str
    title: str
    graphql: Request
    rest: Request | None  # None: the workload has no REST twin
    authenticated: bool
    unique_names: bool = False

    def request_for(self, server: str) -> Request | None:
        if server == "rest":
            return self.rest
        if server == "floor":
            return self.graphql if self.key == "W1" else None
        return self.graphql


def _graphql(query: str, variables: dict[str, object] | None = None) -> Request:
    payload: dict[str, object] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return Request("POST", "/graphql", orjson.dumps(payload))


W1 = Workload("W1", "{ __typename } anonymous", _graphql("{ __typename }"), None, False)
W2 = Workload(
    "W2",
    "me { id name email } Bearer",
    _graphql("{ me { id name email } }"),
    Request("GET", "/me"),
    True,
)
W3 = Workload(
    "W3",
    "categories(first: 100) with owners",
    _graphql(W3_QUERY),
    Request("GET", "/categories?first=100"),
    True,
)
W4 = Workload(
    "W4",
    "createCategory, unique names",
    _graphql(W4_MUTATION, {"input": {"name": NAME_PLACEHOLDER}}),
    Request("POST", "/categories", orjson.dumps({"name": NAME_PLACEHOLDER})),
    True,
    unique_names=True,
)
WORKLOADS = (W1, W2, W3, W4)
SERVERS = ("floor", "rest", "strawberry-default", "ours")
