"""Input rules shared by the services: lengths, characters and URL schemes."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urlsplit

from graphql_api.errors import BadUserInput

NAME_MAX = 100
DESCRIPTION_MAX = 1000
URL_MAX = 2048


# Invisible format characters are refused (bidi overrides spoof text), except the
# joiners that real text needs: emoji sequences (ZWJ) and Persian or Indic words (ZWNJ).
_JOINERS = "\u200c\u200d"


# Lone surrogates (Cs) too: no database can store them, and Google's JSON can carry them.
_REFUSED = ("Cc", "Cf", "Cs")
_WHITESPACE = re.compile(r"\s+")


def _refused(ch: str, allowed: str = "") -> bool:
    return unicodedata.category(ch) in _REFUSED and ch not in allowed


def _has_control(text: str, allowed: str = "") -> bool:
    return any(_refused(ch, allowed) for ch in text)


def clean_name(value: str, *, field: str = "name") -> str:
    name = value.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise BadUserInput(f"{field} must be 1 to {NAME_MAX} characters.", field=field)
    if _has_control(name, allowed=_JOINERS):
        raise BadUserInput(f"{field} must not contain control characters.", field=field)
    return name


def clean_description(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > DESCRIPTION_MAX:
        raise BadUserInput(
            f"description must be at most {DESCRIPTION_MAX} characters.", field="description"
        )
    if _has_control(value, allowed="\n\t\r" + _JOINERS):
        raise BadUserInput("description must not contain control characters.", field="description")
    return value


def clean_picture_url(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > URL_MAX:
        raise BadUserInput(f"pictureUrl must be at most {URL_MAX} characters.", field="pictureUrl")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadUserInput("pictureUrl must be an https URL.", field="pictureUrl") from None
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or any(ch.isspace() for ch in value)
        or _has_control(value)
    ):
        raise BadUserInput("pictureUrl must be an https URL.", field="pictureUrl")
    return value


def profile_name(value: object) -> str:
    """A display name from an identity provider, made to pass ``clean_name`` rather than
    refused (sign-in must not fail over it): each run of whitespace becomes one space,
    invisible and control characters go, and the rest is trimmed and cut to length.
    Empty when nothing is left."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in _WHITESPACE.sub(" ", value) if not _refused(ch, _JOINERS))
    # Removing a character can bring two spaces together: collapse once more.
    return _WHITESPACE.sub(" ", text).strip()[:NAME_MAX].rstrip()


def profile_picture_url(value: object) -> str | None:
    """A picture URL from an identity provider: kept if ``clean_picture_url`` accepts it."""
    if not isinstance(value, str):
        return None
    try:
        return clean_picture_url(value)
    except BadUserInput:
        return None


def name_key(name: str) -> str:
    """The form in which two category names count as the same: their NFKC casefold.

    Stored as a SHA-256 digest (64 hex characters): NFKC can turn one character into
    eighteen (U+FDFA), so the folded form of a valid name has no useful length bound.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return hashlib.sha256(folded.encode()).hexdigest()
