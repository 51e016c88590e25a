"""POST /dev/sign-in: development only; signs a development user in without Google.

A newcomer can explore the reference page (``/``) before setting up a Google client. It is
registered only in development (``app.py``): production has no such route (404), and the
schema is the same in both. It answers as ``googleLogin`` does, through the same request
facts and context getter as /graphql: the same payload, the refresh token in the HttpOnly
cookie when the request asks for cookie transport, and the same defence against requests
from other sites: JSON bodies only (a form cannot send one), and an Origin that is neither
the service's own nor one of ``CORS_ORIGINS`` is refused.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

from graphql_api.web.graphql_endpoint import (
    BodyTooLarge,
    GraphQLEndpoint,
    error_response,
    read_body,
    request_id_of,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

audit = logging.getLogger("graphql_api.audit")

PATH = "/dev/sign-in"
DEV_USER_EMAIL = "developer@example.com"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")


def add_dev_sign_in(app: FastAPI, graphql: GraphQLEndpoint) -> None:
    """Register ``POST /dev/sign-in`` (body ``{}`` or ``{"email": ...}``). Development only."""

    @app.post(PATH, include_in_schema=False)
    async def dev_sign_in(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return error_response(415, "Content-Type must be application/json.")
        request_id = request_id_of(request.headers.get("x-request-id"))
        context = await graphql.context_getter(graphql.facts(request, request_id))
        if not context.origin_trusted:
            return error_response(403, "Not allowed from this origin.", "FORBIDDEN")
        try:
            body = orjson.loads(await read_body(request, graphql.max_body))
        except BodyTooLarge:
            return error_response(413, f"Request body exceeds {graphql.max_body} bytes.")
        except orjson.JSONDecodeError:
            return error_response(400, "Request body is not valid JSON.")
        email = body.get("email", DEV_USER_EMAIL) if isinstance(body, dict) else None
        if not isinstance(email, str) or not _EMAIL.match(email):
            return error_response(400, 'Send a JSON object: {} or {"email": "<address>"}.')

        signed_in = await context.services.auth.dev_sign_in(email=email, client=context.client)
        audit.info(
            "dev_sign_in success",
            extra={
                "event": "dev_sign_in",
                "outcome": "success",
                "client_ip": context.client.ip,
                "user_id": signed_in.user.id,
            },
        )
        refresh: str | None = signed_in.refresh_token
        if context.cookie_transport:
            context.response.set_refresh_cookie(
                signed_in.refresh_token, signed_in.refresh_expires_in
            )
            refresh = None
        user = signed_in.user
        payload = {
            "accessToken": signed_in.access.token,
            "refreshToken": refresh,
            "tokenType": "Bearer",
            "expiresIn": signed_in.access.expires_in,
            "user": {
                "id": str(user.id),
                "name": user.name,
                "email": user.email,
                "role": user.role.value,
                "pictureUrl": user.picture_url,
            },
        }
        response = Response(
            orjson.dumps(payload),
            media_type="application/json",
            headers={"cache-control": "no-store", "x-request-id": request_id},
        )
        graphql.apply_cookie(response, context)
        return response
