"""Trusted documents: the operations the service knows ahead of time, by SHA-256 of their text.

Modes (``TRUSTED_DOCUMENTS``): ``off`` runs free-form queries only, ``allow`` runs ids and
free-form queries, ``require`` runs ids only. Documents are never registered at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class TrustMode(StrEnum):
    OFF = "off"
    ALLOW = "allow"
    REQUIRE = "require"


class TrustedDocuments:
    """The known documents, by id (lowercase hex SHA-256 of the exact text)."""

    def __init__(self, mode: TrustMode, documents: Mapping[str, str] | None = None) -> None:
        self.mode = mode
        self.documents = dict(documents or {})

    def get(self, document_id: str) -> str | None:
        return self.documents.get(document_id)

    def __len__(self) -> int:
        return len(self.documents)
