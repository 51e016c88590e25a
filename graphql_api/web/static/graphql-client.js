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
//
// Trusted documents: the page never sends GraphQL text. Its operations live in
// operations/*.graphql; `graphql-api documents build operations --out
// operations.manifest.json` lists them by SHA-256, the service loads that manifest
// (GRAPHQL_API_TRUSTED_DOCUMENTS_FILES) and, in production, runs nothing else. Calls
// name an operation; the request carries its id: {documentId: "sha256:<hex>"}.

// Another origin? Use its full URL, list your origin in the service's CORS_ORIGINS, and
// set CREDENTIALS to "include" (the cookie is SameSite=Strict: same site only).
const ENDPOINT = "/graphql";
const CREDENTIALS = "same-origin";
const MANIFEST = "/static/operations.manifest.json"; // or import it, with a bundler
const OPERATION = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/;

let accessToken = null;
let refreshing = null; // the one refresh in flight, shared by every caller
let documentIds = null; // operation name -> "sha256:<hex>", from the manifest, loaded once

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
 * Run the operation named `operationName` (from operations/*.graphql) and resolve to its
 * `data`; reject with GraphQLRequestError. An UNAUTHENTICATED answer to a signed-in call
 * refreshes the access token once (a single refresh shared by concurrent callers) and
 * retries the call once.
 */
export async function graphql(operationName, variables = {}) {
  const sentWith = accessToken;
  let body = await post(operationName, variables, sentWith);
  if (sentWith && isUnauthenticated(body)) {
    // Someone else may have refreshed while this call was in flight: then just retry.
    if (accessToken === sentWith) await refreshAccessToken();
    body = await post(operationName, variables, accessToken);
  }
  if (body.errors?.length) throw new GraphQLRequestError(body.errors);
  return body.data;
}

// The tabs of one browser share the refresh cookie, and two exchanges of one refresh token
// at once count as reuse, which ends the session: one exchange at a time across tabs
// (Web Locks), each with the cookie the one before it left.
function oneTabAtATime(exchange) {
  const locks = globalThis.navigator?.locks;
  return locks ? locks.request("graphql-api-refresh", exchange) : exchange();
}

/** Exchange the refresh cookie for a new access token: one request however many callers,
 * in this tab and in the browser's other tabs. */
export function refreshAccessToken() {
  refreshing ??= oneTabAtATime(() => post("Refresh", {}, null))
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

/** The access token in use now (a WebSocket's connectionParams hands it over). */
export function currentAccessToken() {
  return accessToken;
}

/** The trusted document id of `operationName`: "sha256:<hex>", from the manifest. */
export async function documentIdOf(operationName) {
  const documentId = (await loadDocumentIds()).get(operationName);
  if (!documentId) throw new Error(`${operationName} is not in ${MANIFEST}: rebuild it.`);
  return documentId;
}

function isUnauthenticated(body) {
  return (body.errors ?? []).some((e) => e.extensions?.code === "UNAUTHENTICATED");
}

/** The manifest's ids by operation name: each document starts with its operation. */
function loadDocumentIds() {
  documentIds ??= fetch(MANIFEST, { credentials: "same-origin" })
    .then((response) => {
      if (!response.ok) throw new Error(`${MANIFEST}: HTTP ${response.status}`);
      return response.json();
    })
    .then((manifest) => {
      const ids = new Map();
      for (const [hash, text] of Object.entries(manifest)) {
        const name = OPERATION.exec(text)?.[1];
        if (name) ids.set(name, `sha256:${hash}`);
      }
      return ids;
    })
    .catch((error) => {
      documentIds = null; // try again on the next call
      throw error;
    });
  return documentIds;
}

async function post(operationName, variables, token) {
  const documentId = await documentIdOf(operationName);
  const headers = {
    "content-type": "application/json", // JSON only: the service refuses anything else
    "x-refresh-token-transport": "cookie",
  };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers,
    credentials: CREDENTIALS,
    body: JSON.stringify({ documentId, variables, operationName }),
  });
  if (!(response.headers.get("content-type") ?? "").includes("application/json")) {
    const code = response.status === 429 ? "RATE_LIMITED" : "INTERNAL_SERVER_ERROR";
    return { errors: [{ message: `HTTP ${response.status}`, extensions: { code } }] };
  }
  return response.json();
}
