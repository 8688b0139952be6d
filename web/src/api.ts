/**
 * The TaskFlow API as the browser sees it (DESIGN §3–§4), through the gateway at `/api/v1`.
 *
 * Tokens: the access token lives in this module's memory only (never in storage, so nothing
 * another page or an extension reads keeps it). The refresh token is kept in `sessionStorage`
 * (this tab only, gone when it closes) so that a reload stays signed in; every refresh rotates it
 * (auth spends the old one) a minute before the access token expires, and once more when an
 * answer is 401, so the user never sees an expiry. One refresh runs at a time: a rotated refresh
 * token presented twice would revoke the whole sign-in (DESIGN §4). For the same reason a
 * duplicated tab (which gets a copy of `sessionStorage`) never uses the copy while the tab that
 * stored it is open: each page has an id of its own, the token is stored with its page's id, and a
 * page holds a Web Lock named by its id while it keeps a token, which a new page looks for before it
 * resumes. The browser answers for the lock, so a busy or frozen page still counts as open; outside
 * a secure context (no Web Locks) the new page asks over a `BroadcastChannel` whether that page
 * still answers instead.
 *
 * A page closed or reloaded while its refresh is on the way loses the answer, while auth may have
 * rotated the token already: the token left in storage may be spent, and presenting it again ends
 * the sign-in. Nothing on the page can get the lost token back, so it cannot be avoided here;
 * each refresh notes its token in storage before it is sent, so that the next page, finding the
 * note, tries the token once and, refused, says why the user must sign in again.
 */

const API = "/api/v1";
const REFRESH_KEY = "taskflow.refresh_token";
/** How long to wait before refreshing again after auth was busy or away without a Retry-After. */
const RETRY_SECONDS = 30;
const REFRESH_MARGIN_SECONDS = 60;
const OWNER_KEY = "taskflow.refresh_token.page";
/** The refresh token whose rotation was sent and not yet answered (see the module). */
const PENDING_KEY = "taskflow.refresh_token.pending";
const INTERRUPTED =
  "Your session was being renewed when this tab was reloaded or lost its connection, so the renewal's " +
  "answer never arrived and, for your safety, the session has ended. Please sign in again.";
/** How long a page waits for the page that stored its refresh token to say it is still open. */
const OWNER_ANSWER_MS = 300;
/** This page's id (a copy of the tab copies `sessionStorage`, never this). */
const PAGE = Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
const pages = new BroadcastChannel("taskflow.session");

/** The account as auth returns it (`user` of DESIGN §4). */
export interface User {
  id: string;
  email: string;
  name: string;
  role: "user" | "admin";
  active: boolean;
  email_verified: boolean;
  created_at: string;
}

interface TokenPair {
  user?: User;
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

/**
 * How a form names the fields of a problem's `errors`: by path (`due_date`), and the items of a
 * list by the list's path and `.*` (`"tags.*": "Tag"` names `tags.0` "Tag 1").
 */
export type FieldLabels = Record<string, string>;

/** The name of the field at `path`: the form's label, else the path in words (`due_date` → "Due date"). */
function fieldName(path: string, labels: FieldLabels): string {
  const item = /^(.+)\.(\d+)$/.exec(path);
  const label = labels[path] ?? (item && labels[`${item[1]}.*`] ? `${labels[`${item[1]}.*`]} ${Number(item[2]) + 1}` : null);
  if (label) return label;
  const words = path.split(/[._]/).map((part) => (/^\d+$/.test(part) ? String(Number(part) + 1) : part)).join(" ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** An RFC 9457 problem: every error the API (or the network) gives, with its `detail` to show. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors: { field: string; message: string }[] = [],
    readonly requestId: string | null = null,
  ) {
    super(detail || title);
  }

  /**
   * The text a person reads: each field's message, named as `labels` (the form) names it, else
   * the detail; and for a server error the request's id (`X-Request-ID`), which finds its log
   * lines and trace. With field messages the detail is left out: it only says that the request
   * was invalid ("The request body is invalid."), which the messages say better.
   */
  text(labels: FieldLabels = {}): string {
    const fields = this.errors.map(({ field, message }) => `${fieldName(field, labels)}: ${message}${/[.!?]$/.test(message) ? "" : "."}`);
    const reference = this.status >= 500 && this.requestId ? [`(Request ${this.requestId})`] : [];
    return [...(fields.length ? fields : [this.detail || this.title]), ...reference].join(" ");
  }
}

type SessionListener = (user: User | null, reason?: string) => void;

let accessToken: string | null = null;
let account: User | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<SessionListener>();

/** Call `listener` on every sign-in and sign-out (with the reason a session ended, if any). */
export function onSession(listener: SessionListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function announce(user: User | null, reason?: string): void {
  account = user;
  for (const listener of listeners) listener(user, reason);
}

async function problemOf(response: Response): Promise<Problem> {
  const requestId = response.headers.get("X-Request-ID");
  try {
    const body = await response.json();
    return new Problem(response.status, body.title ?? response.statusText, body.detail ?? "", body.errors ?? [], requestId);
  } catch {
    const detail = `The server answered ${response.status} ${response.statusText}.`;
    return new Problem(response.status, response.statusText, detail, [], requestId);
  }
}

pages.addEventListener("message", (event: MessageEvent) => {
  if (event.data?.open === PAGE && accessToken !== null) pages.postMessage({ stillOpen: PAGE });
});

/** The name of the Web Lock page `page` holds while it keeps a refresh token. */
const ownerLock = (page: string) => `taskflow.session.${page}`;
/** Releases this page's lock; null while it holds none. */
let releaseOwnerLock: (() => void) | null = null;

/** Hold this page's lock until {@link forget} (no-op without Web Locks, or when held already). */
function holdOwnerLock(): void {
  if (!navigator.locks || releaseOwnerLock) return;
  let release!: () => void;
  const held = new Promise<void>((resolve) => { release = resolve; });
  releaseOwnerLock = release;
  void navigator.locks.request(ownerLock(PAGE), () => held);
}

/** Whether the page `owner`, which stored this tab's refresh token, is still open elsewhere. */
async function stillOpen(owner: string): Promise<boolean> {
  if (navigator.locks) {
    const { held = [] } = await navigator.locks.query();
    return held.some((lock) => lock.name === ownerLock(owner));
  }
  return new Promise((resolve) => {
    const answer = (event: MessageEvent) => {
      if (event.data?.stillOpen !== owner) return;
      window.clearTimeout(timer);
      pages.removeEventListener("message", answer);
      resolve(true);
    };
    const timer = window.setTimeout(() => {
      pages.removeEventListener("message", answer);
      resolve(false);
    }, OWNER_ANSWER_MS);
    pages.addEventListener("message", answer);
    pages.postMessage({ open: owner });
  });
}

function keep(pair: TokenPair): void {
  accessToken = pair.access_token;
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  sessionStorage.setItem(OWNER_KEY, PAGE);
  holdOwnerLock();
  window.clearTimeout(refreshTimer);
  const delay = Math.max(5, pair.expires_in - REFRESH_MARGIN_SECONDS) * 1000;
  refreshTimer = window.setTimeout(() => void refresh(), delay);
}

function forget(): void {
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
  sessionStorage.removeItem(OWNER_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  releaseOwnerLock?.();
  releaseOwnerLock = null;
  window.clearTimeout(refreshTimer);
}

async function send(path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(API + path, init);
  } catch {
    throw new Problem(0, "Network error", "The server could not be reached. Check your connection and try again.");
  }
}

async function post(path: string, body: unknown): Promise<Response> {
  return send(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

/**
 * Rotate the refresh token. False when it could not: signed out only when auth refuses the token
 * (401); a busy or unreachable auth leaves the session as it is and tries again later.
 */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    const interrupted = sessionStorage.getItem(PENDING_KEY) === token;  // an earlier page never saw its answer
    sessionStorage.setItem(PENDING_KEY, token);
    let response: Response;
    try {
      response = await post("/auth/refresh", { refresh_token: token });
    } catch {
      // offline: keep the session (and the note: auth may have rotated it), the next call tries again
      return accessToken !== null;
    }
    if (response.status === 401) {
      const problem = await problemOf(response);
      forget();
      announce(null, interrupted ? INTERRUPTED : problem.detail || "Your session has ended. Please sign in again.");
      return false;
    }
    sessionStorage.removeItem(PENDING_KEY);
    if (!response.ok) {
      // busy (429) or not answering (5xx): the token is still good, so keep it and try again later
      const seconds = Number(response.headers.get("Retry-After")) || RETRY_SECONDS;
      window.clearTimeout(refreshTimer);
      refreshTimer = window.setTimeout(() => void refresh(), seconds * 1000);
      return false;
    }
    const pair: TokenPair = await response.json();
    keep(pair);
    if (pair.user) announce(pair.user);  // a change of role or name shows at once
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/**
 * Call the API with the bearer token; a 401 refreshes once and retries. Throws a {@link Problem}
 * for every answer that is not 2xx (a 403 "deactivated" also signs out).
 */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const attempt = () =>
    send(path, { ...init, headers: { ...(init.headers as Record<string, string>), Authorization: `Bearer ${accessToken}` } });
  let response = await attempt();
  if (response.status === 401 && (await refresh())) response = await attempt();
  if (response.ok) return response;
  const problem = await problemOf(response);
  if (response.status === 401 || (response.status === 403 && /deactivated/i.test(problem.detail))) {
    forget();
    announce(null, problem.detail);
  }
  throw problem;
}

/** JSON of a bearer call (undefined for an empty answer); `body` is sent as JSON. */
export async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const text = await (await request(path, init)).text();  // empty for a 204, or a 202 of a resend
  return (text ? JSON.parse(text) : undefined) as T;
}

/** The current access token, for the notification stream (memory only). */
export function bearer(): string | null {
  return accessToken;
}

async function signedIn(response: Response): Promise<User> {
  if (!response.ok) throw await problemOf(response);
  const pair: TokenPair = await response.json();
  keep(pair);
  const user = pair.user as User;
  announce(user);
  return user;
}

export async function signUp(email: string, password: string, name: string): Promise<User> {
  return signedIn(await post("/auth/register", { email, password, name }));
}

export async function signIn(email: string, password: string): Promise<User> {
  return signedIn(await post("/auth/login", { email, password }));
}

/**
 * Resume the tab's session after a reload: rotate the stored refresh token (its answer names the account).
 * A duplicated tab whose original is still open starts signed out instead (see the module).
 */
export async function resume(): Promise<User | null> {
  if (!sessionStorage.getItem(REFRESH_KEY)) return null;
  const owner = sessionStorage.getItem(OWNER_KEY);
  if (owner && (await stillOpen(owner))) {
    sessionStorage.removeItem(REFRESH_KEY);
    sessionStorage.removeItem(OWNER_KEY);
    announce(null, "This tab is a copy of a tab that is signed in: sign in here too to use both.");
    return null;
  }
  return (await refresh()) ? account : null;
}

/**
 * Sign this tab out (its refresh token is revoked), or every session of the account with
 * `everywhere`. Throws the {@link Problem} when the server did not end them: the tab then stays
 * signed in, so a failed sign-out never looks like a done one.
 */
export async function signOut(everywhere = false): Promise<void> {
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (everywhere) await call("POST", "/auth/logout-all");
  else if (token) {
    const response = await post("/auth/logout", { refresh_token: token });
    if (!response.ok && response.status !== 401) throw await problemOf(response);
  }
  forget();
  announce(null, everywhere ? "You signed out everywhere." : "You signed out.");
}

/** Forget the tokens after the server ended them (a password change), announcing `reason`. */
export function endSession(reason: string): void {
  forget();
  announce(null, reason);
}
