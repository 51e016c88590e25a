// live.js: subscriptions over the service's WebSocket, with the graphql-ws client
// (graphql-ws.js, vendored from npm as one ES module: no build step). Like
// graphql-client.js, copy it into your own app; it needs that file and graphql-ws.
//
// How a socket lives and ends (the contract, "Subscriptions (WebSocket)"):
// - connection_init carries {authorization: "Bearer <access token>"}, never a cookie.
//   graphql-ws calls connectionParams on every (re)connection, so each one carries the
//   token in use at that moment.
// - 4403 "Token expired": the access token reached its exp. Refresh it (the refresh the
//   HTTP calls share) and subscribe again at once, without graphql-ws's backoff.
// - 4403 "Session ended" (logout, logoutAll, revokeSession, here or elsewhere): signed
//   out. No reconnection: the session will not come back.
// - 4401: the token was refused at connection_init, for instance because it expired while
//   the tab slept. One refresh and one more try; refused again, or no refresh: signed out.
// - Anything else (the network, a restart, 1013 for a subscriber too slow): graphql-ws's
//   own retries, with exponential backoff. Events sent meanwhile are lost, so `resync`
//   runs after every reconnection: refetch what the page shows.
import { createClient } from "./graphql-ws.js";
import { GraphQLRequestError, currentAccessToken, documentIdOf, refreshAccessToken } from "./graphql-client.js";

const ENDPOINT = "/graphql"; // the same path as POST: graphql-transport-ws on ws(s)://
const UNAUTHORIZED = 4401;
const FORBIDDEN = 4403;
const TOKEN_EXPIRED = "Token expired";

const isCloseEvent = (value) => typeof value?.code === "number" && "reason" in value;

function socketUrl() {
  const url = new URL(ENDPOINT, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Subscribe to the trusted operation `operationName` until stop() (the returned function).
 * Handlers:
 * - next(data): each event's `data`;
 * - state(name): "connecting", "live", "reconnecting" or "offline" (retries exhausted);
 * - resync(): after a reconnection, when events may have been missed;
 * - signedOut(reason): the session ended; the socket is closed for good;
 * - failed(error): the service refused the subscription (a GraphQLRequestError).
 */
export function subscribe(operationName, variables, handlers) {
  let stopped = false;
  let unsubscribe = () => {};
  let everConnected = false;
  let refreshedFor401 = false; // at most one refresh per refusal: no loop on a dead session

  const client = createClient({
    url: socketUrl(),
    connectionParams: async () => ({ authorization: `Bearer ${currentAccessToken()}` }),
    // Closes about the token and the session are handled below (graphql-ws would retry
    // a 4403 with the same token after a backoff); everything else is retried.
    shouldRetry: (error) => !(isCloseEvent(error) && error.code === FORBIDDEN),
    on: {
      connecting: (retrying) => handlers.state(retrying ? "reconnecting" : "connecting"),
      connected: () => {
        refreshedFor401 = false;
        handlers.state("live");
        if (everConnected) handlers.resync();
        everConnected = true;
      },
      closed: () => {
        if (!stopped) handlers.state("reconnecting");
      },
    },
  });

  async function start() {
    let documentId;
    try {
      documentId = await documentIdOf(operationName);
    } catch (error) {
      if (!stopped) handlers.failed(error);
      return;
    }
    if (stopped) return;
    unsubscribe = client.subscribe(
      // graphql-ws insists on a `query` string; the service runs the document the id names.
      { query: "", documentId, operationName, variables },
      {
        next: (result) => {
          if (result.data) handlers.next(result.data);
        },
        error: onError,
        complete: () => {},
      },
    );
  }

  async function onError(error) {
    unsubscribe(); // releases graphql-ws's hold on the dead subscription
    unsubscribe = () => {};
    if (stopped) return;
    if (isCloseEvent(error) && error.code === FORBIDDEN && error.reason === TOKEN_EXPIRED) {
      await renew();
    } else if (isCloseEvent(error) && error.code === UNAUTHORIZED && !refreshedFor401) {
      refreshedFor401 = true;
      await renew();
    } else if (isCloseEvent(error) && (error.code === FORBIDDEN || error.code === UNAUTHORIZED)) {
      end(error.reason || "Unauthorized");
    } else if (Array.isArray(error)) {
      // An `error` message: the service refused this subscription (its GraphQL errors).
      handlers.state("offline");
      handlers.failed(new GraphQLRequestError(error));
    } else {
      handlers.state("offline"); // graphql-ws gave up retrying
    }
  }

  async function renew() {
    handlers.state("reconnecting");
    try {
      await refreshAccessToken();
    } catch (error) {
      if (error instanceof GraphQLRequestError && error.code === "UNAUTHENTICATED") {
        end("Session ended");
      } else if (!stopped) {
        handlers.state("offline");
      }
      return;
    }
    if (!stopped) await start();
  }

  function end(reason) {
    stop();
    handlers.signedOut(reason);
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    unsubscribe();
    client.dispose();
  }

  start();
  return stop;
}
