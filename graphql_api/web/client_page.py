"""The reference browser client at ``/``: development only, plain files from ``web/static``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import FileResponse, JSONResponse, Response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from graphql_api.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
# The page's operations, built from static/operations/*.graphql by `graphql-api documents
# build`: the page sends their ids, and development trusts them (see app.build_engine).
CLIENT_MANIFEST = STATIC_DIR / "operations.manifest.json"
ASSETS = frozenset(
    {"app.js", "graphql-client.js", "live.js", "graphql-ws.js", "style.css", CLIENT_MANIFEST.name}
)
GSI_CLIENT = "https://accounts.google.com/gsi/client"

# Only our own files run (graphql-ws is vendored: graphql-ws.js); Google Identity Services
# is the one outside script, and its button lives in an iframe under /gsi/. No inline
# script or style anywhere. connect-src 'self' covers the live WebSocket too: CSP Level 3
# matches ws: and wss: of the page's own host and port to 'self'.
CLIENT_CSP = (
    f"default-src 'none'; script-src 'self' {GSI_CLIENT}; "
    "style-src 'self' https://accounts.google.com/gsi/style; "
    "frame-src https://accounts.google.com/gsi/; "
    "connect-src 'self' https://accounts.google.com/gsi/; "
    "img-src 'self' https://*.googleusercontent.com; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CLIENT_CSP,
    "cache-control": "no-store",
    # Google's sign-in popup must be able to answer the page, and Google checks the
    # page's origin from the Referer: the strict defaults elsewhere would break both.
    "cross-origin-opener-policy": "same-origin-allow-popups",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def add_client_page(app: FastAPI, settings: Settings) -> None:
    """Serve the page, its assets and its configuration. Call only in development."""
    client_id = settings.google_client_ids[0] if settings.google_client_ids else None

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        # A fixed list, not a directory: nothing else under the package is reachable.
        if name not in ASSETS:
            return Response(status_code=404)
        return FileResponse(STATIC_DIR / name, headers={"cache-control": "no-cache"})

    @app.get("/client-config.json", include_in_schema=False)
    async def client_config() -> Response:
        return JSONResponse(
            {
                "googleClientId": client_id,
                "graphqlPath": "/graphql",
                # POST /dev/sign-in exists (web/dev_sign_in.py): offer it.
                "devSignIn": settings.is_development,
            },
            headers={"cache-control": "no-store"},
        )
