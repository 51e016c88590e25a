"""The service's own signing keys: a JWKS file with private keys; the first signs, all verify."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

MIN_HMAC_KEY_BYTES = 32
logger = logging.getLogger("graphql_api.keys")


class KeyFileError(Exception):
    """The key file is missing, unreadable or holds a key we refuse to use."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key: its id, the one algorithm it may be used with, and the key material."""

    kid: str
    algorithm: str
    signing_key: Any
    verifying_key: Any

    def public_jwk(self) -> dict[str, str] | None:
        """The public half for the JWKS endpoint; None for symmetric keys (nothing is public)."""
        if self.algorithm != "EdDSA":
            return None
        raw = self.verifying_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64(raw),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyFileError("the key file holds no keys")
        kids = [key.kid for key in self.keys]
        if len(set(kids)) != len(kids):
            raise KeyFileError("the key file repeats a kid")

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def get(self, kid: str) -> SigningKey | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [jwk for key in self.keys if (jwk := key.public_jwk()) is not None]}


def _parse_jwk(jwk: dict[str, Any]) -> SigningKey:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise KeyFileError("every key needs a non-empty string kid")
    kty = jwk.get("kty")
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        if jwk.get("alg", "EdDSA") != "EdDSA" or "d" not in jwk:
            raise KeyFileError(f"key {kid}: an Ed25519 key needs alg EdDSA and its private part d")
        private = Ed25519PrivateKey.from_private_bytes(_unb64(jwk["d"]))
        return SigningKey(kid, "EdDSA", private, private.public_key())
    if kty == "oct":
        if jwk.get("alg", "HS256") != "HS256":
            raise KeyFileError(f"key {kid}: symmetric keys are HS256 only")
        secret = _unb64(jwk.get("k", ""))
        if len(secret) < MIN_HMAC_KEY_BYTES:
            raise KeyFileError(f"key {kid}: HS256 keys must be at least 32 bytes")
        return SigningKey(kid, "HS256", secret, secret)
    raise KeyFileError(f"key {kid}: unsupported key type (use OKP Ed25519 or oct HS256)")


class KeyFileExposed(KeyFileError):
    """Users other than the file's owner may read (or change) the private keys."""


def check_private(path: Path, *, strict: bool, setting: str = "GRAPHQL_API_JWT_KEYS_FILE") -> None:
    """Refuse (``strict``, production) or warn about a key file that group or others may
    read or write: whoever reads it can sign tokens for any user. Silent when the file
    does not exist; loading it says so."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if not mode & 0o077:
        return
    problem = (
        f"{setting} {path} is readable or writable by other users (mode {mode:04o}): "
        f"run chmod 600 {path}"
    )
    if strict:
        raise KeyFileExposed(problem)
    logger.warning(problem, extra={"event": "keys_file_exposed", "mode": f"{mode:04o}"})


def load_key_set(path: Path) -> KeySet:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read JWT keys file {path}: {exc.__class__.__name__}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyFileError(f"{path} is not a JWKS document")
    return KeySet(tuple(_parse_jwk(jwk) for jwk in document["keys"]))


def new_private_jwk(algorithm: str = "EdDSA") -> dict[str, str]:
    kid = secrets.token_urlsafe(12)
    if algorithm == "HS256":
        return {"kty": "oct", "k": _b64(secrets.token_bytes(32)), "kid": kid, "alg": "HS256"}
    if algorithm != "EdDSA":
        raise KeyFileError("algorithm must be EdDSA or HS256")
    private = Ed25519PrivateKey.generate()
    public: Ed25519PublicKey = private.public_key()
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "d": _b64(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
        "x": _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw)),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    }


def _write_private(path: Path, document: dict[str, Any]) -> None:
    # Written beside the target then renamed, so a reader never sees half a file, and
    # created 0600 because it holds private keys.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    if not path.parent.is_dir():
        raise KeyFileError(f"cannot write {path}: the directory {path.parent} does not exist")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def generate_key_file(path: Path, *, algorithm: str = "EdDSA", overwrite: bool = False) -> str:
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} exists; use 'keys rotate' to add a key")
    jwk = new_private_jwk(algorithm)
    _write_private(path, {"keys": [jwk]})
    return jwk["kid"]


def rotate_key_file(path: Path, *, algorithm: str = "EdDSA", keep: int | None = None) -> str:
    """Put a new signing key first; older keys stay for verification (the newest ``keep``)."""
    load_key_set(path)
    document = json.loads(path.read_text())
    jwk = new_private_jwk(algorithm)
    keys = [jwk, *document["keys"]]
    if keep is not None:
        keys = keys[: max(keep, 1)]
    _write_private(path, {**document, "keys": keys})
    return jwk["kid"]


class KeyFileWatcher:
    """Reloads the key file when it changes, so that ``keys rotate`` needs no restart.

    A file that fails to load (half-edited, a weak key) is logged and ignored: the keys
    in use stay until the file is valid again.
    """

    def __init__(
        self, path: Path, on_change: Callable[[KeySet], None], *, interval: float = 2.0
    ) -> None:
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def check(self) -> bool:
        """Reload if the file changed since the last check; true when new keys apply."""
        stamp = self._current_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            keys = load_key_set(self.path)
        except KeyFileError as exc:
            logger.error(
                "JWT keys file changed but cannot be used; keeping the current keys: %s",
                exc,
                extra={"event": "keys_reload_failed"},
            )
            return False
        self.on_change(keys)
        logger.warning(
            "JWT keys reloaded from %s: %s signs, %d key(s) verify",
            self.path,
            keys.current.kid,
            len(keys.keys),
            extra={"event": "keys_reloaded", "kids": [key.kid for key in keys.keys]},
        )
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()
