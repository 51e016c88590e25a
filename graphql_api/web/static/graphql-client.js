// graphql-client.js: every GraphQL call of the page goes through graphql() below.
// Copy this file into your own app as it is; it needs no library and no build step.
//
// Where the tokens live:
// - the access token only in this module's memory (a variable): never localStorage,
//   sessionStorage or a script-readable cookie, where any injected script could take it;
// - the refresh token in an HttpOnly, SameSite=Strict cookie scoped to /graphql, which
//   the service sets because every request says "x-refresh-token-transport: cookie".
//   Scripts cannot read it; the browser sends it only to /graphql.
// Reloading the page forgets the access token; refreshAccessToken() gets a new one from
// the cookie (that is how the page resumes a session).

// Another origin? Use its full URL, list your origin in the service's CORS_ORIGINS, and
// set CREDENTIALS to "include" (the cookie is SameSite=Strict: same site only).
const ENDPOINT = "/graphql";
const CREDENTIALS = "same-origin";
const REFRESH = `mutation Refresh {
  refreshToken { accessToken expiresIn user { id name email role pictureUrl } }
}`;

let accessToken = null;
let refreshing = null; // the one refresh in flight, shared by every caller

/** A GraphQL error answer; `code` is the contract's errors[0].extensions.code. */
export class GraphQLRequestError extends Error {
  constructor(errors) {
    super(errors[0]?.message ?? "Request failed.");
    this.name = "GraphQLRequestError";
    this.errors = errors;
    this.extensions = errors[0]?.extensions ?? {};
    this.code = this.extensions.code ?? "INTERNAL_SERVER_ERROR";
  }
}

/**
 * Run a query or mutation and resolve to its `data`; reject with GraphQLRequestError.
 * An UNAUTHENTICATED answer to a signed-in call refreshes the access token once (a single
 * refresh shared by concurrent callers) and retries the call once.
 */
export async function graphql(query, variables = {}) {
  const sentWith = accessToken;
  let body = await post(query, variables, sentWith);
  if (sentWith && isUnauthenticated(body)) {
    // Someone else may have refreshed while this call was in flight: then just retry.
    if (accessToken === sentWith) await refreshAccessToken();
    body = await post(query, variables, accessToken);
  }
  if (body.errors?.length) throw new GraphQLRequestError(body.errors);
  return body.data;
}

/** Exchange the refresh cookie for a new access token: one request however many callers. */
export function refreshAccessToken() {
  refreshing ??= post(REFRESH, {}, null)
    .then((body) => {
      if (body.errors?.length) {
        accessToken = null; // the session is over: sign in again
        throw new GraphQLRequestError(body.errors);
      }
      accessToken = body.data.refreshToken.accessToken;
      return body.data.refreshToken;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Keep the access token from googleLogin; null after logout. */
export function setAccessToken(token) {
  accessToken = token;
}

function isUnauthenticated(body) {
  return (body.errors ?? []).some((e) => e.extensions?.code === "UNAUTHENTICATED");
}

async function post(query, variables, token) {
  const headers = {
    "content-type": "application/json", // JSON only: the service refuses anything else
    "x-refresh-token-transport": "cookie",
  };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers,
    credentials: CREDENTIALS,
    body: JSON.stringify({ query, variables }),
  });
  if (!(response.headers.get("content-type") ?? "").includes("application/json")) {
    const code = response.status === 429 ? "RATE_LIMITED" : "INTERNAL_SERVER_ERROR";
    return { errors: [{ message: `HTTP ${response.status}`, extensions: { code } }] };
  }
  return response.json();
}
