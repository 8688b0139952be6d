/**
 * The TaskFlow API as the browser sees it (DESIGN §3–§4), through the gateway at `/api/v1`.
 *
 * Tokens: the access token lives in this module's memory only (never in storage, so nothing
 * another page or an extension reads keeps it). The refresh token is kept in `sessionStorage`
 * (this tab only, gone when it closes) so that a reload stays signed in; every refresh rotates it
 * (auth spends the old one) a minute before the access token expires, and once more when an
 * answer is 401, so the user never sees an expiry. One refresh runs at a time: a rotated refresh
 * token presented twice would revoke the whole sign-in (DESIGN §4).
 */

const API = "/api/v1";
const REFRESH_KEY = "taskflow.refresh_token";
/** How long to wait before refreshing again after auth was busy or away without a Retry-After. */
const RETRY_SECONDS = 30;
const REFRESH_MARGIN_SECONDS = 60;

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

/** An RFC 9457 problem: every error the API (or the network) gives, with its `detail` to show. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors: { field: string; message: string }[] = [],
  ) {
    super(detail || title);
  }

  /** The text a person reads: the detail, then each field's message. */
  get text(): string {
    const fields = this.errors.map((error) => `${error.field}: ${error.message}`);
    return [this.detail || this.title, ...fields].join(" ");
  }
}

type SessionListener = (user: User | null, reason?: string) => void;

let accessToken: string | null = null;
let refreshTimer: number | undefined;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<SessionListener>();

/** Call `listener` on every sign-in and sign-out (with the reason a session ended, if any). */
export function onSession(listener: SessionListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function announce(user: User | null, reason?: string): void {
  for (const listener of listeners) listener(user, reason);
}

async function problemOf(response: Response): Promise<Problem> {
  try {
    const body = await response.json();
    return new Problem(response.status, body.title ?? response.statusText, body.detail ?? "", body.errors ?? []);
  } catch {
    return new Problem(response.status, response.statusText, `The server answered ${response.status} ${response.statusText}.`);
  }
}

function keep(pair: TokenPair): void {
  accessToken = pair.access_token;
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  window.clearTimeout(refreshTimer);
  const delay = Math.max(5, pair.expires_in - REFRESH_MARGIN_SECONDS) * 1000;
  refreshTimer = window.setTimeout(() => void refresh(), delay);
}

function forget(): void {
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
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
    let response: Response;
    try {
      response = await post("/auth/refresh", { refresh_token: token });
    } catch {
      return accessToken !== null;  // offline: keep the session, the next call tries again
    }
    if (response.status === 401) {
      const problem = await problemOf(response);
      forget();
      announce(null, problem.detail || "Your session has ended. Please sign in again.");
      return false;
    }
    if (!response.ok) {
      // busy (429) or not answering (5xx): the token is still good, so keep it and try again later
      const seconds = Number(response.headers.get("Retry-After")) || RETRY_SECONDS;
      window.clearTimeout(refreshTimer);
      refreshTimer = window.setTimeout(() => void refresh(), seconds * 1000);
      return false;
    }
    keep(await response.json());
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

/** JSON of a bearer call; `body` is sent as JSON. */
export async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const response = await request(path, init);
  return response.status === 204 ? (undefined as T) : ((await response.json()) as T);
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

/** Resume the tab's session after a reload: rotate the stored refresh token and read the account. */
export async function resume(): Promise<User | null> {
  if (!sessionStorage.getItem(REFRESH_KEY) || !(await refresh())) return null;
  const user = await call<User>("GET", "/auth/me");
  announce(user);
  return user;
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
