// Who the dashboard is signed in as, and the bearer token it sends: the session keeper. A name-and-password
// sign-in (`POST /api/login` with `cookie: true`) gives a 15-minute session token, kept here in memory only, and a
// refresh token the backend sets as an HttpOnly cookie no script can read. The keeper refreshes the session token
// a little before it expires and once after a 401, one refresh at a time however many requests ask; a refresh the
// backend refuses means the sign-in is over, and the page goes back to the sign-in form. A reload starts with
// `POST /api/refresh` (the cookie), so a signed-in operator stays signed in without the token being stored.
// An API token typed in instead (`apitoken.ts`) is sent as it is and never refreshed. The network, the storage
// and the clock come in from outside, so every decision here is unit-tested; the pages only render `status()`.

import { ApiError, type Authority, type Credentials, authHeaders, errorFrom, unreachable } from "./api";
import type { LoginBody, Session, SessionTokens } from "./types";

/// The header `POST /api/refresh` and `POST /api/logout` need when they use the refresh cookie (the backend takes
/// any value): a cross-site form cannot send it, so a forged request cannot spend the cookie.
export const CSRF_HEADER = "X-Kanade-Csrf";

/// The longest a session token is refreshed ahead of its expiry.
export const REFRESH_LEAD_MS = 60_000;

/// When to refresh a session token received at `receivedAt` (this browser's clock) that lives `lifetimeMs`: a
/// minute before it expires, or a quarter of its life before for a short-lived one. Reckoned from `expires_in`
/// rather than `expires_at`, so a browser whose clock is off still refreshes in time.
export function refreshAt(receivedAt: number, lifetimeMs: number): number {
  return receivedAt + lifetimeMs - Math.min(REFRESH_LEAD_MS, lifetimeMs / 4);
}

/// What the keeper asks of the backend: `httpTransport` is the real one.
export interface SessionTransport {
  login(body: LoginBody): Promise<SessionTokens>;
  /// `POST /api/refresh` with the cookie.
  refresh(): Promise<SessionTokens>;
  /// `POST /api/logout` with the cookie, and `headers` (the session token) for a backend that finds no cookie.
  logout(headers: Record<string, string>): Promise<void>;
  /// `GET /api/session` with `headers`: whether they are accepted.
  session(headers: Record<string, string>): Promise<Session>;
}

/// Where an API token typed in is kept (`apitoken.ts`).
export interface TokenStore {
  load(): Credentials | null;
  save(credentials: Credentials, remember: boolean): void;
  clear(): void;
}

/// Runs `work` alone among this browser's tabs (a Web Lock), so two tabs never spend the same refresh cookie at
/// once: the backend replaces it at every refresh, and the second would be refused.
export type Exclusive = <T>(work: () => Promise<T>) => Promise<T>;

export interface KeeperDeps {
  transport: SessionTransport;
  store: TokenStore;
  now: () => number;
  exclusive?: Exclusive;
}

/// How the dashboard is signed in: `password` (a session from a name and password), `api-token` (a token typed
/// in), or `open` (a backend with auth disabled, on loopback only).
export type SignedInVia = "password" | "api-token" | "open";

export type SessionStatus =
  | { state: "starting" }
  | { state: "unreachable"; message: string }
  | { state: "signed-out"; notice: string | null }
  | { state: "signed-in"; via: SignedInVia; epoch: number };

type Bearer =
  | { kind: "none" }
  | { kind: "session"; token: string; refreshAt: number; user: string }
  | { kind: "api"; credentials: Credentials };

/// Said on the sign-in page when the backend ended the session (signed out elsewhere, revoked, expired).
export const SESSION_ENDED = "Your session has ended. Sign in again.";
/// Said when a saved API token stops being accepted.
export const TOKEN_REFUSED = "The saved API token is no longer accepted. Sign in again.";

function asApiError(err: unknown): ApiError {
  return err instanceof ApiError ? err : unreachable(err);
}

/// Whether a refused refresh means the sign-in is over (rather than the backend being away for a moment).
function ends(error: ApiError): boolean {
  return error.status === 401 || error.status === 403;
}

export class SessionKeeper implements Authority {
  private current: SessionStatus = { state: "starting" };
  private bearer: Bearer = { kind: "none" };
  private listeners = new Set<() => void>();
  /// The refresh under way, which every caller waiting for a token shares.
  private inflight: Promise<ApiError | null> | null = null;
  private resuming: Promise<void> | null = null;
  /// Bumped at every sign-in and sign-out: a refresh begun before one cannot bring the old session back.
  private generation = 0;
  private epoch = 0;
  private readonly exclusive: Exclusive;

  constructor(private readonly deps: KeeperDeps) {
    this.exclusive = deps.exclusive ?? ((work) => work());
  }

  /// For `useSyncExternalStore`: the same object until something changes.
  status = (): SessionStatus => this.current;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /// The account a password sign-in acts as (null otherwise).
  get user(): string | null {
    return this.bearer.kind === "session" ? this.bearer.user : null;
  }

  private set(status: SessionStatus): void {
    this.current = status;
    for (const listener of [...this.listeners]) listener();
  }

  private signedIn(via: SignedInVia): void {
    this.set({ state: "signed-in", via, epoch: ++this.epoch });
  }

  private signedOut(notice: string | null): void {
    this.generation++;
    this.bearer = { kind: "none" };
    this.set({ state: "signed-out", notice });
  }

  private take(tokens: SessionTokens): void {
    const now = this.deps.now();
    this.bearer = {
      kind: "session",
      token: tokens.access_token,
      refreshAt: refreshAt(now, tokens.expires_in * 1000),
      user: tokens.user,
    };
  }

  private headersOf(bearer: Bearer): Record<string, string> {
    switch (bearer.kind) {
      case "session":
        return { Authorization: `Bearer ${bearer.token}` };
      case "api":
        return authHeaders(bearer.credentials);
      case "none":
        return {};
    }
  }

  /// Trades the refresh cookie for a new session token, one refresh at a time: null when it worked, else why not.
  /// Its tokens are dropped if the operator signed in or out meanwhile; callers compare `generation` for that.
  private refresh(): Promise<ApiError | null> {
    if (this.inflight) return this.inflight;
    const generation = this.generation;
    this.inflight = this.exclusive(() => this.deps.transport.refresh())
      .then(
        (tokens) => {
          if (generation === this.generation) this.take(tokens);
          return null;
        },
        (err: unknown) => asApiError(err),
      )
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  /// On load: a saved API token if this tab has one, else the refresh cookie, else a backend that needs no
  /// sign-in; otherwise the sign-in page. Calls made while one is under way share it.
  resume(): Promise<void> {
    this.resuming ??= this.resumeOnce().finally(() => {
      this.resuming = null;
    });
    return this.resuming;
  }

  private async resumeOnce(): Promise<void> {
    this.set({ state: "starting" });
    const { transport, store } = this.deps;
    try {
      const saved = store.load();
      if (saved) {
        try {
          await transport.session(authHeaders(saved));
        } catch (err) {
          if (asApiError(err).status !== 401) throw err;
          store.clear();
          this.signedOut(TOKEN_REFUSED);
          return;
        }
        this.generation++;
        this.bearer = { kind: "api", credentials: saved };
        this.signedIn("api-token");
        return;
      }
      const refused = await this.refresh();
      if (refused === null) {
        this.signedIn("password");
        return;
      }
      if (!ends(refused)) throw refused;
      // No sign-in to resume. A backend with auth disabled answers without a token.
      try {
        await transport.session({});
      } catch (err) {
        if (asApiError(err).status !== 401) throw err;
        this.signedOut(null);
        return;
      }
      this.generation++;
      this.bearer = { kind: "none" };
      this.signedIn("open");
    } catch (err) {
      this.set({ state: "unreachable", message: asApiError(err).message });
    }
  }

  /// Signs in with a name and password (and TOTP code); throws the backend's `ApiError` for the page to describe.
  /// The password goes to the backend and nowhere else.
  async signIn(form: { name: string; password: string; totp?: string }): Promise<void> {
    const body: LoginBody = { name: form.name.trim(), password: form.password, cookie: true };
    const totp = form.totp?.replace(/\s+/g, "");
    if (totp) body.totp = totp;
    const tokens = await this.deps.transport.login(body);
    this.generation++;
    this.deps.store.clear();
    this.take(tokens);
    this.signedIn("password");
  }

  /// Signs in with an API token (and, for the shared static token, a name): checked with the backend first.
  async useApiToken(credentials: Credentials, remember: boolean): Promise<void> {
    await this.deps.transport.session(authHeaders(credentials));
    this.generation++;
    this.deps.store.save(credentials, remember);
    this.bearer = { kind: "api", credentials };
    this.signedIn("api-token");
  }

  /// Signs out: ends the session on the backend (which clears the cookie, so a reload stays signed out) and
  /// forgets everything here. Returns what to say if the backend could not be told.
  async signOut(): Promise<void> {
    // A refresh under way would replace the cookie after the logout read it: let it land first.
    await this.inflight;
    const bearer = this.bearer;
    this.deps.store.clear();
    let notice: string | null = null;
    if (bearer.kind === "session") {
      try {
        await this.deps.transport.logout(this.headersOf(bearer));
      } catch (err) {
        const error = asApiError(err);
        // Already ended on the backend: nothing left to end.
        if (error.status !== 401) notice = `Signed out in this tab, but the backend could not be told (${error.message}).`;
      }
    }
    this.signedOut(notice);
  }

  /// A request was refused even after a renewal: the sign-in is over.
  ended(): void {
    if (this.current.state !== "signed-in" || this.current.via === "open") return;
    const notice = this.bearer.kind === "api" ? TOKEN_REFUSED : SESSION_ENDED;
    if (this.bearer.kind === "api") this.deps.store.clear();
    this.signedOut(notice);
  }

  // ---- Authority: what `Api` and `follow` ask -------------------------------------------------------------------

  async headers(): Promise<Record<string, string>> {
    if (this.bearer.kind === "session" && this.deps.now() >= this.bearer.refreshAt) {
      const generation = this.generation;
      const refused = await this.refresh();
      // Refused: the sign-in is over. Not reached: the token in hand may still be good; the request will tell.
      if (refused !== null && ends(refused) && generation === this.generation) this.signedOut(SESSION_ENDED);
    }
    return this.headersOf(this.bearer);
  }

  async renew(sent: Record<string, string>): Promise<boolean> {
    if (this.current.state !== "signed-in") return false;
    const bearer = this.bearer;
    if (bearer.kind !== "session") {
      this.ended();
      return false;
    }
    // Another request refreshed it since this one was sent: try again with the new token.
    if (sent["Authorization"] !== `Bearer ${bearer.token}`) return true;
    const generation = this.generation;
    const refused = await this.refresh();
    // Signed out, or in as someone else, meanwhile: this request was the old session's.
    if (generation !== this.generation) return false;
    if (refused === null) return true;
    if (ends(refused)) this.signedOut(SESSION_ENDED);
    return false;
  }
}

/// The backend's sign-in routes over `fetch`, same-origin, with the CSRF header on every call (the cookie's
/// routes need it; the others ignore it).
export function httpTransport(base = ""): SessionTransport {
  async function post<T>(path: string, headers: Record<string, string>, body?: unknown): Promise<T> {
    const sent: Record<string, string> = { Accept: "application/json", [CSRF_HEADER]: "1", ...headers };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(base + path, {
        method: "POST",
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (err) {
      throw unreachable(err);
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text, response.headers.get("retry-after"));
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, "bad_response", "the backend answered with something that is not JSON");
    }
  }
  return {
    login: (body) => post<SessionTokens>("/api/login", {}, body),
    refresh: () => post<SessionTokens>("/api/refresh", {}),
    logout: (headers) => post<void>("/api/logout", headers),
    session: async (headers) => {
      let response: Response;
      try {
        response = await fetch(`${base}/api/session`, { headers: { Accept: "application/json", ...headers } });
      } catch (err) {
        throw unreachable(err);
      }
      const text = await response.text();
      if (!response.ok) throw errorFrom(response.status, text, response.headers.get("retry-after"));
      return JSON.parse(text) as Session;
    },
  };
}

/// A Web Lock when the browser has them; else `work` as it is.
export function browserExclusive(): Exclusive {
  const locks = typeof navigator === "undefined" ? undefined : navigator.locks;
  if (!locks) return (work) => work();
  // The lock is held until `work` settles; `request` resolves with what it resolved with.
  return <T>(work: () => Promise<T>) => locks.request("kanade-session-refresh", () => work()) as unknown as Promise<T>;
}

// ---- The sign-in form's messages ------------------------------------------------------------------------------

/// What the sign-in form shows after a refusal: the message, whether the TOTP field is needed now, and how long
/// to wait before trying again (a throttled name).
export interface SignInProblem {
  message: string;
  totp: boolean;
  waitSeconds: number | null;
}

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/// "Try again in …" for a wait of `seconds`.
export function waitText(seconds: number): string {
  if (seconds >= 90) return `${Math.ceil(seconds / 60)} min`;
  return `${seconds} s`;
}

/// The seconds left until `until` (ms), rounded up; 0 once it has passed.
export function secondsLeft(until: number, now: number): number {
  return Math.max(0, Math.ceil((until - now) / 1000));
}

export function throttledMessage(seconds: number): string {
  return seconds > 0
    ? `Too many failed sign-ins for this name. Try again in ${waitText(seconds)}.`
    : "Too many failed sign-ins for this name. You may try again now.";
}

/// Describes why a sign-in with a name and password failed. `totpShown`: the form already asks for the code.
export function signInProblem(err: unknown, totpShown: boolean): SignInProblem {
  const error = asApiError(err);
  switch (error.code) {
    case "totp_required":
      return { message: "This account needs the 6-digit code from its authenticator app.", totp: true, waitSeconds: null };
    case "login_failed":
      return { message: sentence(error.message), totp: totpShown, waitSeconds: null };
    case "too_many_attempts": {
      const fromText = /in (\d+) s\b/.exec(error.message)?.[1];
      const wait = error.retryAfter ?? (fromText ? Number(fromText) : 1);
      return { message: throttledMessage(wait), totp: totpShown, waitSeconds: wait };
    }
    case "unreachable":
      return {
        message: `The backend cannot be reached (${error.message.replace(/^the backend cannot be reached \((.*)\)$/, "$1")}). Check that it is running, then try again.`,
        totp: totpShown,
        waitSeconds: null,
      };
    default:
      return {
        message: error.status >= 500 ? `The backend could not sign you in: ${error.message}` : sentence(error.message),
        totp: totpShown,
        waitSeconds: null,
      };
  }
}
