"""The four workloads of the benchmark: as GraphQL documents (free-form, or by trusted
document id) and as their REST twins; and which server answers which."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

NAME_PLACEHOLDER = "@NAME@"

W3_QUERY = "{ categories(first: 100) { edges { node { id name owner { id name } } } } }"
W4_MUTATION = (
    "mutation Create($input: CreateCategoryInput!) { createCategory(input: $input) { id name } }"
)


# Every server of the table, in its order. "ours-trusted" is ours with
# TRUSTED_DOCUMENTS=require and the workloads' documents in a manifest, sent by id.
def document_id(text: str) -> str:
    """The contract's trusted-document id: the lowercase hex SHA-256 of the exact text
    (as ``graphql_api.engine.trusted``, without importing the engine into raw)."""
    return hashlib.sha256(text.encode()).hexdigest()


SERVERS = ("raw", "floor", "ours-trusted", "ours", "rest", "strawberry-default")


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
    document: str
    variables: dict[str, Any] | None
    rest: Request | None  # None: the workload has no REST twin
    authenticated: bool
    unique_names: bool = False

    @property
    def graphql(self) -> Request:
        """The document as a free-form query."""
        return _post({"query": self.document}, self.variables)

    @property
    def trusted(self) -> Request:
        """The document by its trusted-document id (the contract's ``documentId`` form)."""
        return _post({"documentId": f"sha256:{document_id(self.document)}"}, self.variables)

    def request_for(self, server: str) -> Request | None:
        if server == "rest":
            return self.rest
        if server == "floor":
            return self.graphql if self.key == "W1" else None
        if server == "ours-trusted":
            return self.trusted
        return self.graphql


def _post(payload: dict[str, Any], variables: dict[str, Any] | None) -> Request:
    if variables is not None:
        payload = {**payload, "variables": variables}
    return Request("POST", "/graphql", orjson.dumps(payload))


W1 = Workload("W1", "{ __typename } anonymous", "{ __typename }", None, None, False)
W2 = Workload(
    "W2",
    "me { id name email } Bearer",
    "{ me { id name email } }",
    None,
    Request("GET", "/me"),
    True,
)
W3 = Workload(
    "W3",
    "categories(first: 100) with owners",
    W3_QUERY,
    None,
    Request("GET", "/categories?first=100"),
    True,
)
W4 = Workload(
    "W4",
    "createCategory, unique names",
    W4_MUTATION,
    {"input": {"name": NAME_PLACEHOLDER}},
    Request("POST", "/categories", orjson.dumps({"name": NAME_PLACEHOLDER})),
    True,
    unique_names=True,
)
WORKLOADS = (W1, W2, W3, W4)


@cache
def document_ids() -> dict[str, str]:
    """Each workload's trusted-document id (SHA-256 of its text), by workload key."""
    return {w.key: document_id(w.document) for w in WORKLOADS}


def manifest() -> dict[str, str]:
    """The workloads' documents as a graphql-codegen manifest, for ours-trusted."""
    return {document_id(w.document): w.document for w in WORKLOADS}
