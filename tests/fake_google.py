"""A fake Google issuer: a real RSA key pair and a real certificate endpoint on 127.0.0.1.

It serves the public key both as a JWKS document (``jwks_url``) and as Google's older
``{kid: PEM certificate}`` map (``pem_url``), so the service's real google-auth code path
runs end to end. ``mint`` signs ID tokens like Google's, with any claim overridable.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "test-client.apps.googleusercontent.com"
ISSUER = "https://accounts.google.com"


class SigningKey:
    def __init__(self) -> None:
        self.kid = secrets.token_hex(8)
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_jwk = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.public_jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-google")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.private, hashes.SHA256())
        )
        self.pem_cert = cert.public_bytes(serialization.Encoding.PEM).decode()


class FakeGoogle:
    def __init__(self) -> None:
        self.key = SigningKey()
        self.published = [self.key]
        self.requests = 0
        self.fail = False
        self.delay = 0.0  # seconds before each answer: a slow Google
        self.max_age = 3600
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.jwks_url = f"{self.base_url}/oauth2/v3/certs"
        self.pem_url = f"{self.base_url}/oauth2/v1/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeGoogle:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate(self) -> SigningKey:
        """Publish a new key (first), as Google does; tokens may then name it."""
        self.key = SigningKey()
        self.published = [self.key, *self.published]
        return self.key

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        google = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                google.requests += 1
                time.sleep(google.delay)
                if google.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                body: dict[str, Any]
                if self.path == "/oauth2/v3/certs":
                    body = {"keys": [key.public_jwk for key in google.published]}
                elif self.path == "/oauth2/v1/certs":
                    body = {key.kid: key.pem_cert for key in google.published}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", f"public, max-age={google.max_age}")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def mint(
        self,
        *,
        sub: str = "1001",
        email: str = "user@example.com",
        name: str | None = "Test User",
        signing_key: SigningKey | None = None,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        remove: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        now = int(time.time())
        key = signing_key or self.key
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": sub,
            "email": email,
            "email_verified": True,
            "name": name,
            "picture": "https://lh3.googleusercontent.com/a/photo.jpg",
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_hex(16),
        }
        payload.update(claims)
        for claim in remove:
            payload.pop(claim, None)
        return jwt.encode(
            payload,
            key.private,
            algorithm="RS256",
            headers={"kid": kid or key.kid, **(headers or {})},
        )
