"""The GraphiQL page served in development, with an example of the Authorization header."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import lru_cache

from strawberry.http.ides import get_graphql_ide_html

WELCOME = """# graphql_api: GraphiQL (development only)
#
# Most fields need a signed-in user. Get an access token: in the project
# directory (where `make run` runs), run
#
#     make token EMAIL=you@example.com
#
# and paste it in the Headers tab below as
#
#     {"Authorization": "Bearer <token>"}
#
{
  me { id name email role }
}
"""

UNAVAILABLE = (
    "GraphiQL could not load its scripts from unpkg.com (offline, blocked, or not the "
    "pinned file?). This page needs unpkg.com; the API does not: POST /graphql still "
    "works from curl or your own client. Failed: "
)
# First in <head>, before the CDN's scripts: when one of them cannot load (no network, a
# blocked host, bytes that are not the ones its integrity hash pins), GraphiQL never
# starts, and "Loading..." would stay forever. The notice takes the container's place, so
# that a React that did load cannot paint over it.
NOTICE_SCRIPT = f"""<script>
      addEventListener("error", function (event) {{
        var script = event.target;
        if (window.graphiqlFailed || !(script instanceof HTMLScriptElement) || !script.src) return;
        window.graphiqlFailed = script.src;
        function show() {{
          var notice = document.createElement("p");
          notice.id = "graphiql";
          notice.setAttribute("role", "alert");
          notice.style.cssText = "margin: 1rem; font: 1rem/1.5 system-ui, sans-serif";
          notice.textContent = {json.dumps(UNAVAILABLE)} + script.src;
          document.getElementById("graphiql").replaceWith(notice);
        }}
        if (document.readyState === "loading") addEventListener("DOMContentLoaded", show);
        else show();
      }}, true);
    </script>"""
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@lru_cache(maxsize=1)
def graphiql_html() -> str:
    html = get_graphql_ide_html("graphiql")
    html = html.replace("<head>", f"<head>\n    {NOTICE_SCRIPT}", 1)
    start = html.index("const EXAMPLE_QUERY = `")
    end = html.index("`;", start)
    html = html[:start] + "const EXAMPLE_QUERY = " + json.dumps(WELCOME) + html[end + 1 :]
    headers = json.dumps(json.dumps({"Authorization": "Bearer <paste a dev-token here>"}))
    html = html.replace("parameters.headers", f"(parameters.headers || {headers})")
    # A pasted token stays in the tab's memory, not in localStorage for any script to read.
    return html.replace("shouldPersistHeaders: true", "shouldPersistHeaders: false")


@lru_cache(maxsize=1)
def graphiql_csp() -> str:
    """GraphiQL's own scripts come from unpkg (pinned by SRI hashes in the page); its inline
    scripts are allowed by their hashes, not by 'unsafe-inline'. Its styles need inline
    style attributes. Everything else stays as strict as anywhere else."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(graphiql_html())
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes} https://unpkg.com; "
        "style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data: https:; "
        "font-src https://unpkg.com data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
