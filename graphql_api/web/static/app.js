// The reference client: Google sign-in, categories with cursor paging and live changes,
// sessions, logout. Every GraphQL call goes through graphql() from graphql-client.js, and
// the live changes through subscribe() from live.js, by operation name: the operations
// are in operations/*.graphql, and only their ids travel.
import {
  GraphQLRequestError,
  graphql,
  refreshAccessToken,
  setAccessToken,
} from "./graphql-client.js";
import { subscribe } from "./live.js";

const GSI_CLIENT = "https://accounts.google.com/gsi/client";
const PAGE_SIZE = 10;

const SIGNED_OUT = "You are signed out: your session ended or was revoked. Please sign in again.";

const $ = (id) => document.getElementById(id);
const state = { config: null, user: null, nonce: null, cursors: [null], page: 0, stopLive: null };

// ---- messages --------------------------------------------------------------------

/** The contract's error codes as sentences a person can act on. */
function describe(error) {
  if (!(error instanceof GraphQLRequestError)) {
    return "The service cannot be reached. Is it running?";
  }
  switch (error.code) {
    case "UNAUTHENTICATED":
      return SIGNED_OUT;
    case "FORBIDDEN":
      return "Not allowed: only its owner or an admin can change this.";
    case "NOT_FOUND":
      return "Not found: it may have been deleted meanwhile.";
    case "BAD_USER_INPUT":
      return `Please check your input: ${error.message}`;
    case "RATE_LIMITED":
      return `Too many requests. Try again in ${error.extensions.retryAfter ?? "a few"} seconds.`;
    case "PERSISTED_QUERY_NOT_FOUND":
      // The service no longer knows this page's operations: a newer version is deployed.
      return "This page is out of date. Please reload it.";
    default:
      return "Something went wrong on the server. Please try again.";
  }
}

function notify(text, kind = "info") {
  const notice = $("notice");
  notice.textContent = text;
  notice.className = kind;
  notice.hidden = false;
}

/** Show a failure; a session that cannot be refreshed sends the user back to sign-in. */
function fail(error) {
  notify(describe(error), "error");
  if (error instanceof GraphQLRequestError && error.code === "UNAUTHENTICATED") {
    showSignedOut();
  }
}

// Builds elements with textContent only: data from the API never becomes markup.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// ---- signing in and out ----------------------------------------------------------

function newNonce() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, (c) => ({ "+": "-", "/": "_", "=": "" })[c]);
}

function loadGoogleIdentityServices() {
  if (window.google?.accounts?.id) return Promise.resolve(window.google.accounts.id);
  return new Promise((resolve, reject) => {
    const script = el("script", { src: GSI_CLIENT, async: true });
    script.addEventListener("load", () => resolve(window.google.accounts.id));
    script.addEventListener("error", () => reject(new Error("Google Identity Services did not load.")));
    document.head.append(script);
  });
}

async function showSignedOut() {
  stopLive();
  state.user = null;
  setAccessToken(null);
  $("loading").hidden = true;
  $("signed-in").hidden = true;
  $("account").hidden = true;
  $("signed-out").hidden = false;
  $("dev-sign-in").hidden = !state.config?.devSignIn;
  const clientId = state.config?.googleClientId;
  if (!clientId) {
    $("page-origin").textContent = location.origin;
    $("setup").hidden = false;
    return;
  }
  try {
    const gsi = await loadGoogleIdentityServices();
    // A fresh nonce per sign-in: the ID token must carry it, so a stolen one cannot be replayed here.
    state.nonce = newNonce();
    gsi.initialize({ client_id: clientId, nonce: state.nonce, callback: onGoogleCredential });
    $("google-button").replaceChildren();
    gsi.renderButton($("google-button"), { theme: "outline", size: "large", text: "signin_with" });
  } catch (error) {
    notify(`${error.message} Check your network or content blockers.`, "error");
  }
}

async function onGoogleCredential(response) {
  try {
    const data = await graphql("Login", { idToken: response.credential, nonce: state.nonce });
    setAccessToken(data.googleLogin.accessToken);
    notify(`Signed in as ${data.googleLogin.user.email}.`);
    await showSignedIn(data.googleLogin.user);
  } catch (error) {
    notify(describe(error), "error");
  }
}

/**
 * Development only (the service says so in client-config.json): sign in without Google.
 * POST /dev/sign-in answers like googleLogin, with the refresh token in the HttpOnly
 * cookie; production has no such route.
 */
async function devSignIn() {
  try {
    const response = await fetch("/dev/sign-in", {
      method: "POST",
      headers: { "content-type": "application/json", "x-refresh-token-transport": "cookie" },
      credentials: "same-origin",
      body: "{}",
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const payload = await response.json();
    setAccessToken(payload.accessToken);
    notify(`Signed in as ${payload.user.email} (development user).`);
    await showSignedIn(payload.user);
  } catch {
    notify("Development sign-in failed. Is the service running in development?", "error");
  }
}

async function showSignedIn(user) {
  state.user = user;
  $("loading").hidden = true;
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("account").hidden = false;
  $("user-name").textContent = user.name;
  $("user-email").textContent = user.email ?? "";
  $("user-role").textContent = user.role;
  const avatar = $("avatar");
  avatar.hidden = !user.pictureUrl;
  if (user.pictureUrl) avatar.src = user.pictureUrl;
  state.cursors = [null];
  state.page = 0;
  startLive();
  await Promise.all([loadCategories(), loadSessions()]);
}

async function logout() {
  stopLive(); // before the session ends: its "Session ended" close is expected here
  try {
    await graphql("Logout"); // ends the session and clears the refresh cookie
    window.google?.accounts?.id?.disableAutoSelect();
    notify("Signed out.");
  } catch (error) {
    notify(describe(error), "error");
  }
  await showSignedOut();
}

// ---- categories ------------------------------------------------------------------

async function loadCategories() {
  try {
    const data = await graphql("Categories", { first: PAGE_SIZE, after: state.cursors[state.page] });
    const { edges, pageInfo } = data.categories;
    if (pageInfo.hasNextPage) state.cursors[state.page + 1] = pageInfo.endCursor;
    else state.cursors.length = state.page + 1;
    $("category-list").replaceChildren(...edges.map(({ node }) => categoryItem(node)));
    if (edges.length === 0) $("category-list").append(el("li", { className: "empty" }, "No categories yet."));
    $("page-label").textContent = `Page ${state.page + 1}`;
    $("previous-page").disabled = state.page === 0;
    $("next-page").disabled = !pageInfo.hasNextPage;
  } catch (error) {
    fail(error);
  }
}

function categoryItem(category, { fresh = false } = {}) {
  const mine = category.owner.id === state.user?.id;
  const item = el("li", { className: fresh ? "category new" : "category", "data-id": category.id });
  const rename = el("button", { type: "button" }, "Rename");
  const remove = el("button", { type: "button" }, "Delete");
  rename.addEventListener("click", () => editCategory(item, category));
  remove.addEventListener("click", () => deleteCategory(item, category));
  item.append(
    el(
      "div",
      { className: "text" },
      el("span", { className: "name" }, category.name),
      category.description ? el("span", { className: "description" }, category.description) : null,
      el("span", { className: "owner" }, mine ? "yours" : `by ${category.owner.name}`),
    ),
    el("div", { className: "actions" }, rename, remove),
  );
  return item;
}

function editCategory(item, category) {
  const input = el("input", { value: category.name, required: true, maxLength: 100, "aria-label": "New name" });
  const cancel = el("button", { type: "button" }, "Cancel");
  const form = el("form", { className: "rename" }, input, el("button", { type: "submit" }, "Save"), cancel);
  cancel.addEventListener("click", () => item.replaceWith(categoryItem(category)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const data = await graphql("RenameCategory", { id: category.id, name: input.value });
      item.replaceWith(categoryItem(data.updateCategory));
      notify(`Renamed “${category.name}” to “${data.updateCategory.name}”.`);
    } catch (error) {
      fail(error);
    }
  });
  item.replaceChildren(form);
  input.focus();
}

async function deleteCategory(item, category) {
  try {
    await graphql("DeleteCategory", { id: category.id });
    removeCategory(category.id);
    notify(`Deleted “${category.name}”.`);
  } catch (error) {
    fail(error);
  }
}

async function createCategory(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const description = $("new-description").value.trim();
  try {
    const data = await graphql("CreateCategory", {
      input: { name: $("new-name").value, description: description || null },
    });
    showCategory(data.createCategory, { fresh: true });
    form.reset();
    notify(`Created “${data.createCategory.name}”.`);
  } catch (error) {
    fail(error);
  }
}

function listed(id) {
  return $("category-list").querySelector(`li.category[data-id="${CSS.escape(id)}"]`);
}

/** Show a new category on top of the current page (new ones sort last) until the next load. */
function showCategory(category, { fresh = false } = {}) {
  const shown = listed(category.id);
  if (shown) {
    // Already there: the live event and the mutation's answer may come in either order.
    if (!shown.querySelector("form")) shown.replaceWith(categoryItem(category, { fresh: shown.classList.contains("new") }));
    return;
  }
  $("category-list").querySelector(".empty")?.remove();
  $("category-list").prepend(categoryItem(category, { fresh }));
}

function removeCategory(id) {
  listed(id)?.remove();
  if (!$("category-list").children.length) $("category-list").append(el("li", { className: "empty" }, "No categories yet."));
}

function turnPage(step) {
  state.page = Math.max(0, state.page + step);
  return loadCategories();
}

// ---- live changes ----------------------------------------------------------------

const LIVE_STATES = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
  off: "",
};

function showLiveState(name) {
  const badge = $("live-state");
  badge.dataset.state = name;
  badge.textContent = LIVE_STATES[name];
  badge.hidden = name === "off";
  badge.title = name === "offline" ? "Live updates stopped: reload the page to resume them." : "";
}

/** Categories appear, change and disappear as they change anywhere (another tab, another client). */
function onCategoryEvent({ categoryEvents: event }) {
  if (event.kind === "DELETED") removeCategory(event.categoryId);
  else if (event.kind === "CREATED") showCategory(event.category, { fresh: true });
  else if (listed(event.categoryId)) showCategory(event.category); // not shown: on another page
}

function startLive() {
  stopLive();
  state.stopLive = subscribe(
    "CategoryEvents",
    {},
    {
      next: onCategoryEvent,
      state: showLiveState,
      resync: loadCategories,
      signedOut: () => {
        notify(SIGNED_OUT, "error");
        showSignedOut();
      },
      failed: (error) => notify(`Live updates are off: ${describe(error)}`, "error"),
    },
  );
}

function stopLive() {
  state.stopLive?.();
  state.stopLive = null;
  showLiveState("off");
}

// ---- sessions --------------------------------------------------------------------

async function loadSessions() {
  try {
    const data = await graphql("MySessions");
    $("session-list").replaceChildren(...data.mySessions.map(sessionItem));
  } catch (error) {
    fail(error);
  }
}

function sessionItem(session) {
  const when = (iso) => new Date(iso).toLocaleString();
  const item = el(
    "li",
    { className: session.current ? "session current" : "session", "data-id": session.id },
    el(
      "div",
      { className: "text" },
      el("span", { className: "name" }, session.current ? "This browser" : session.userAgent || "Unknown device"),
      el("span", { className: "description" }, `signed in ${when(session.createdAt)}, last used ${when(session.lastUsedAt)}`),
    ),
  );
  if (!session.current) {
    const revoke = el("button", { type: "button" }, "Revoke");
    revoke.addEventListener("click", async () => {
      try {
        await graphql("RevokeSession", { id: session.id });
        notify("Session revoked: that device is signed out.");
        await loadSessions();
      } catch (error) {
        fail(error);
      }
    });
    item.append(el("div", { className: "actions" }, revoke));
  }
  return item;
}

// ---- start -----------------------------------------------------------------------

async function start() {
  $("logout").addEventListener("click", logout);
  $("dev-sign-in-button").addEventListener("click", devSignIn);
  $("create-category").addEventListener("submit", createCategory);
  $("previous-page").addEventListener("click", () => turnPage(-1));
  $("next-page").addEventListener("click", () => turnPage(1));
  $("reload-sessions").addEventListener("click", loadSessions);
  try {
    state.config = await (await fetch("/client-config.json")).json();
  } catch {
    notify("The service cannot be reached. Is it running?", "error");
    return;
  }
  try {
    // A refresh cookie from an earlier visit resumes the session without signing in again.
    const resumed = await refreshAccessToken();
    await showSignedIn(resumed.user);
  } catch {
    await showSignedOut();
  }
}

start();
