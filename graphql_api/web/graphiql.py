"""The GraphiQL page served in development, with an example of the Authorization header."""

from __future__ import annotations

import json
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

# GraphiQL loads from unpkg; everything else stays as strict as anywhere else.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data: https:; "
    "font-src https://unpkg.com data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


@lru_cache(maxsize=1)
def graphiql_html() -> str:
    html = get_graphql_ide_html("graphiql")
    start = html.index("const EXAMPLE_QUERY = `")
    end = html.index("`;", start)
    html = html[:start] + "const EXAMPLE_QUERY = " + json.dumps(WELCOME) + html[end + 1 :]
    headers = json.dumps(json.dumps({"Authorization": "Bearer <paste a dev-token here>"}))
    html = html.replace("parameters.headers", f"(parameters.headers || {headers})")
    # A pasted token stays in the tab's memory, not in localStorage for any script to read.
    return html.replace("shouldPersistHeaders: true", "shouldPersistHeaders: false")
