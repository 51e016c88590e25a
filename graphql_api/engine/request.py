"""A GraphQL request as every transport hands it to the engine, read from its JSON form.

One shape for POST bodies and WebSocket ``subscribe`` payloads: a ``query``, or a trusted
document named by ``documentId: "sha256:<hex>"`` or Apollo's
``extensions.persistedQuery.sha256Hash``, plus ``variables`` and ``operationName``.
Anything else about the payload is the client's mistake: ``RequestError``, answered 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from graphql_api.engine.trusted import document_id as hash_of

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DOCUMENT_ID_PREFIX = "sha256:"


class RequestError(Exception):
    """The request cannot be run at all; answered with ``status`` and one error."""

    def __init__(self, message: str, *, code: str = "BAD_USER_INPUT", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    query: str | None = None
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    # The SHA-256 (lowercase hex) of a trusted document's text, without the prefix.
    document_id: str | None = None

    @classmethod
    def from_payload(cls, payload: object) -> GraphQLRequest:
        if isinstance(payload, list):
            raise RequestError("Batched requests are not supported.")
        if not isinstance(payload, dict):
            raise RequestError("Request body must be a JSON object.")
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        if query is not None and not isinstance(query, str):
            raise RequestError("query must be a string.")
        if variables is not None and not isinstance(variables, dict):
            raise RequestError("variables must be a JSON object.")
        if operation_name is not None and not isinstance(operation_name, str):
            raise RequestError("operationName must be a string.")
        document_id = _document_id(payload)
        if document_id is None and (query is None or not query.strip()):
            raise RequestError("The request has no query.")
        if document_id is not None and query and hash_of(query) != document_id:
            # Otherwise logs and metrics would name one document while another ran.
            raise RequestError("query is not the document its id names (SHA-256 of the text).")
        return cls(
            query=query if query else None,
            variables=variables,
            operation_name=operation_name,
            document_id=document_id,
        )


def _document_id(payload: dict[str, Any]) -> str | None:
    """The trusted document the payload names, from either form; None when it names none."""
    named: list[str] = []
    document_id = payload.get("documentId")
    if document_id is not None:
        if not isinstance(document_id, str) or not document_id.startswith(DOCUMENT_ID_PREFIX):
            raise RequestError('documentId must be "sha256:" followed by 64 hex digits.')
        named.append(document_id.removeprefix(DOCUMENT_ID_PREFIX))
    extensions = payload.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError("extensions must be a JSON object.")
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is not None:
        if (
            not isinstance(persisted, dict)
            or persisted.get("version") != 1
            or not isinstance(persisted.get("sha256Hash"), str)
        ):
            raise RequestError(
                "extensions.persistedQuery must be {version: 1, sha256Hash: <64 hex digits>}."
            )
        named.append(persisted["sha256Hash"])
    if not named:
        return None
    if any(not _SHA256.match(value) for value in named):
        raise RequestError("A document id is 64 lowercase hex digits (a SHA-256).")
    if len(set(named)) > 1:
        raise RequestError("documentId and extensions.persistedQuery name different documents.")
    return named[0]
