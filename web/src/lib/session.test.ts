import { afterEach, describe, expect, it, vi } from "vitest";

import { Api, ApiError, type Credentials } from "./api";
import {
  CSRF_HEADER,
  SESSION_ENDED,
  SessionKeeper,
  type SessionTransport,
  TOKEN_REFUSED,
  type TokenStore,
  httpTransport,
  refreshAt,
  secondsLeft,
  signInProblem,
  throttledMessage,
} from "./session";
import type { LoginBody, Session, SessionTokens } from "./types";

const MINUTE = 60_000;

function tokens(access: string, expiresIn = 900, user = "ada"): SessionTokens {
  return {
    access_token: access,
    token_type: "Bearer",
    expires_at: "2030-01-01T00:00:00Z",
    expires_in: expiresIn,
    refresh_expires_at: "2030-01-08T00:00:00Z",
    user,
    role: "admin",
    scope: "fleet",
  };
}

const SESSION: Session = { actor: "ada", verified: true, auth: "token", version: "0.1.0", role: "admin" };
const refused = (code = "unauthorized") => new ApiError(401, code, "no");
const down = () => new ApiError(0, "unreachable", "the backend cannot be reached (Failed to fetch)");

/// A promise and the hands that settle it, for a transport call the test answers when it chooses.
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/// A fake backend: each route a queue of answers (a value, an error to throw, or a deferred), and every call kept.
class FakeTransport implements SessionTransport {
  logins: LoginBody[] = [];
  refreshes = 0;
  logouts: Record<string, string>[] = [];
  sessions: Record<string, string>[] = [];
  loginAnswers: (SessionTokens | ApiError)[] = [];
  refreshAnswers: (SessionTokens | ApiError | Promise<SessionTokens>)[] = [];
  logoutAnswers: (ApiError | undefined)[] = [];
  sessionAnswers: (Session | ApiError)[] = [];

  private static answer<T>(queue: (T | ApiError | Promise<T>)[], what: string): Promise<T> {
    if (queue.length === 0) throw new Error(`unexpected ${what}`);
    const next = queue.shift() as T | ApiError | Promise<T>;
    return next instanceof ApiError ? Promise.reject(next) : Promise.resolve(next);
  }

  login = (body: LoginBody) => {
    this.logins.push(body);
    return FakeTransport.answer(this.loginAnswers, "login");
  };
  refresh = () => {
    this.refreshes++;
    return FakeTransport.answer(this.refreshAnswers, "refresh");
  };
  logout = async (headers: Record<string, string>) => {
    this.logouts.push(headers);
    const next = this.logoutAnswers.shift();
    if (next) throw next;
  };
  session = (headers: Record<string, string>) => {
    this.sessions.push(headers);
    return FakeTransport.answer(this.sessionAnswers, "session");
  };
}

class MemoryStore implements TokenStore {
  saved: { credentials: Credentials; remember: boolean } | null = null;
  load = () => this.saved?.credentials ?? null;
  save = (credentials: Credentials, remember: boolean) => {
    this.saved = { credentials, remember };
  };
  clear = () => {
    this.saved = null;
  };
}

function setup(now = { t: 1_000_000 }) {
  const transport = new FakeTransport();
  const store = new MemoryStore();
  const keeper = new SessionKeeper({ transport, store, now: () => now.t });
  return { transport, store, keeper, now };
}

async function signedIn(expiresIn = 900) {
  const world = setup();
  world.transport.loginAnswers.push(tokens("t1", expiresIn));
  await world.keeper.signIn({ name: "ada", password: "correct horse battery staple" });
  return world;
}

describe("refreshAt", () => {
  it("is a minute before expiry for the usual 15 minutes", () => {
    expect(refreshAt(0, 15 * MINUTE)).toBe(14 * MINUTE);
  });

  it("is a quarter of the life before expiry for a short-lived token, so it is not refreshed at once", () => {
    expect(refreshAt(1000, MINUTE)).toBe(1000 + 45_000);
    expect(refreshAt(0, 2 * MINUTE)).toBe(90_000);
  });
});

describe("SessionKeeper: signing in and out", () => {
  it("signs in with the cookie asked for, sends the session token, and keeps no password", async () => {
    const { keeper, transport } = await signedIn();
    expect(transport.logins).toEqual([{ name: "ada", password: "correct horse battery staple", cookie: true }]);
    expect(keeper.status()).toMatchObject({ state: "signed-in", via: "password" });
    expect(keeper.user).toBe("ada");
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t1" });
    // The keeper's own state (not the fake backend it was handed) holds no password.
    const { deps: _backend, ...own } = keeper as unknown as Record<string, unknown>;
    expect(JSON.stringify(own)).not.toContain("correct horse");
  });

  it("sends the TOTP code without spaces only when there is one, and trims the name", async () => {
    const { keeper, transport } = setup();
    transport.loginAnswers.push(tokens("t1"), tokens("t2"));
    await keeper.signIn({ name: " ada ", password: "pw", totp: "" });
    await keeper.signIn({ name: "ada", password: "pw", totp: "123 456" });
    expect(transport.logins).toEqual([
      { name: "ada", password: "pw", cookie: true },
      { name: "ada", password: "pw", cookie: true, totp: "123456" },
    ]);
  });

  it("throws the backend's refusal and stays signed out", async () => {
    const { keeper, transport } = setup();
    transport.loginAnswers.push(new ApiError(401, "login_failed", "wrong name or password"));
    await expect(keeper.signIn({ name: "ada", password: "nope" })).rejects.toMatchObject({ code: "login_failed" });
    expect(keeper.status()).toEqual({ state: "starting" });
    expect(await keeper.headers()).toEqual({});
  });

  it("signs out: the backend is told with the session token, the token is forgotten, listeners hear it", async () => {
    const { keeper, transport } = await signedIn();
    const heard = vi.fn();
    keeper.subscribe(heard);
    await keeper.signOut();
    expect(transport.logouts).toEqual([{ Authorization: "Bearer t1" }]);
    expect(keeper.status()).toEqual({ state: "signed-out", notice: null });
    expect(heard).toHaveBeenCalled();
    expect(await keeper.headers()).toEqual({});
    expect(keeper.user).toBeNull();
  });

  it("signs out here even when the backend cannot be told, and says so", async () => {
    const { keeper, transport } = await signedIn();
    transport.logoutAnswers.push(down());
    await keeper.signOut();
    const status = keeper.status();
    expect(status.state).toBe("signed-out");
    expect(status.state === "signed-out" && status.notice).toMatch(/could not be told/);
    expect(await keeper.headers()).toEqual({});
  });

  it("says nothing when the session had already ended on the backend", async () => {
    const { keeper, transport } = await signedIn();
    transport.logoutAnswers.push(refused());
    await keeper.signOut();
    expect(keeper.status()).toEqual({ state: "signed-out", notice: null });
  });

  it("waits for a refresh under way before logging out, so the logout ends the newest session", async () => {
    const { keeper, transport, now } = await signedIn();
    const pending = deferred<SessionTokens>();
    transport.refreshAnswers.push(pending.promise);
    now.t += 15 * MINUTE;
    const request = keeper.headers();
    const out = keeper.signOut();
    pending.resolve(tokens("t2"));
    await out;
    await request;
    expect(transport.logouts).toHaveLength(1);
    expect(keeper.status().state).toBe("signed-out");
    expect(await keeper.headers()).toEqual({});
  });

  it("notifies subscribers until they unsubscribe", async () => {
    const { keeper, transport } = setup();
    const heard = vi.fn();
    const stop = keeper.subscribe(heard);
    transport.loginAnswers.push(tokens("t1"));
    await keeper.signIn({ name: "ada", password: "pw" });
    stop();
    await keeper.signOut();
    expect(heard).toHaveBeenCalledTimes(1);
  });
});

describe("SessionKeeper: when to refresh", () => {
  it("does not refresh a fresh token", async () => {
    const { keeper, transport, now } = await signedIn();
    now.t += 13 * MINUTE;
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t1" });
    expect(transport.refreshes).toBe(0);
  });

  it("refreshes a minute before expiry, before sending, and the next request carries the new token", async () => {
    const { keeper, transport, now } = await signedIn();
    transport.refreshAnswers.push(tokens("t2"));
    now.t += 14 * MINUTE;
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t2" });
    expect(transport.refreshes).toBe(1);
    // The new token's clock starts now.
    now.t += 13 * MINUTE;
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t2" });
    expect(transport.refreshes).toBe(1);
  });

  it("keeps the token in hand when the backend cannot be reached for a refresh", async () => {
    const { keeper, transport, now } = await signedIn();
    transport.refreshAnswers.push(down());
    now.t += 14 * MINUTE;
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t1" });
    expect(keeper.status().state).toBe("signed-in");
  });

  it("ends the sign-in when the refresh is refused (the sign-in's 7 days are over, or it was revoked)", async () => {
    const { keeper, transport, now } = await signedIn();
    transport.refreshAnswers.push(refused());
    now.t += 15 * MINUTE;
    expect(await keeper.headers()).toEqual({});
    expect(keeper.status()).toEqual({ state: "signed-out", notice: SESSION_ENDED });
  });

  it("refreshes once on a 401 and lets the request go again", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(tokens("t2"));
    expect(await keeper.renew({ Authorization: "Bearer t1" })).toBe(true);
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t2" });
    expect(transport.refreshes).toBe(1);
  });

  it("goes back to sign-in when the refresh after a 401 is refused", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(refused());
    expect(await keeper.renew({ Authorization: "Bearer t1" })).toBe(false);
    expect(keeper.status()).toEqual({ state: "signed-out", notice: SESSION_ENDED });
    // Further refusals of requests already sent change nothing and ask nothing.
    expect(await keeper.renew({ Authorization: "Bearer t1" })).toBe(false);
    expect(transport.refreshes).toBe(1);
  });

  it("stays signed in when the refresh after a 401 cannot reach the backend; the request's error stands", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(down());
    expect(await keeper.renew({ Authorization: "Bearer t1" })).toBe(false);
    expect(keeper.status().state).toBe("signed-in");
  });

  it("refreshes once for many requests refused at the same time (single flight)", async () => {
    const { keeper, transport } = await signedIn();
    const pending = deferred<SessionTokens>();
    transport.refreshAnswers.push(pending.promise);
    const renewals = [1, 2, 3, 4, 5].map(() => keeper.renew({ Authorization: "Bearer t1" }));
    pending.resolve(tokens("t2"));
    expect(await Promise.all(renewals)).toEqual([true, true, true, true, true]);
    expect(transport.refreshes).toBe(1);
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t2" });
  });

  it("refreshes once for many requests starting at once past the refresh time", async () => {
    const { keeper, transport, now } = await signedIn();
    const pending = deferred<SessionTokens>();
    transport.refreshAnswers.push(pending.promise);
    now.t += 14 * MINUTE;
    const all = Promise.all([keeper.headers(), keeper.headers(), keeper.headers()]);
    pending.resolve(tokens("t2"));
    expect(await all).toEqual(Array(3).fill({ Authorization: "Bearer t2" }));
    expect(transport.refreshes).toBe(1);
  });

  it("does not refresh again for a request refused with a token already replaced", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(tokens("t2"));
    await keeper.renew({ Authorization: "Bearer t1" });
    // A request sent with t1 before the refresh comes back 401 afterwards: it just goes again with t2.
    expect(await keeper.renew({ Authorization: "Bearer t1" })).toBe(true);
    expect(transport.refreshes).toBe(1);
  });

  it("refreshes again later, once the first refresh is done", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(tokens("t2"), tokens("t3"));
    await keeper.renew({ Authorization: "Bearer t1" });
    await keeper.renew({ Authorization: "Bearer t2" });
    expect(transport.refreshes).toBe(2);
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t3" });
  });

  it("does not let a refresh begun before signing out sign back in", async () => {
    const { keeper, transport } = await signedIn();
    const pending = deferred<SessionTokens>();
    transport.refreshAnswers.push(pending.promise);
    const renewal = keeper.renew({ Authorization: "Bearer t1" });
    // Signed out (and in as someone else) while it runs; the old refresh lands afterwards.
    transport.loginAnswers.push(tokens("b1", 900, "bob"));
    await keeper.signIn({ name: "bob", password: "pw" });
    pending.resolve(tokens("t2"));
    await renewal;
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer b1" });
    expect(keeper.user).toBe("bob");
  });

  it("takes tokens in turn through the exclusive lock, so tabs never spend the same cookie at once", async () => {
    const transport = new FakeTransport();
    const held: string[] = [];
    const keeper = new SessionKeeper({
      transport,
      store: new MemoryStore(),
      now: () => 0,
      exclusive: async (work) => {
        held.push("lock");
        try {
          return await work();
        } finally {
          held.push("unlock");
        }
      },
    });
    transport.refreshAnswers.push(tokens("t1"));
    await keeper.resume();
    expect(held).toEqual(["lock", "unlock"]);
  });
});

describe("SessionKeeper: resuming on load", () => {
  it("resumes with the refresh cookie, storing nothing", async () => {
    const { keeper, transport, store } = setup();
    transport.refreshAnswers.push(tokens("t1"));
    await keeper.resume();
    expect(keeper.status()).toMatchObject({ state: "signed-in", via: "password" });
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer t1" });
    expect(store.saved).toBeNull();
    expect(transport.sessions).toEqual([]);
  });

  it("shows the sign-in page when there is no sign-in to resume", async () => {
    const { keeper, transport } = setup();
    transport.refreshAnswers.push(refused());
    transport.sessionAnswers.push(refused());
    await keeper.resume();
    expect(keeper.status()).toEqual({ state: "signed-out", notice: null });
    expect(transport.sessions).toEqual([{}]);
  });

  it("enters a backend with auth disabled without a sign-in", async () => {
    const { keeper, transport } = setup();
    transport.refreshAnswers.push(refused());
    transport.sessionAnswers.push({ ...SESSION, auth: "disabled" });
    await keeper.resume();
    expect(keeper.status()).toMatchObject({ state: "signed-in", via: "open" });
    expect(await keeper.headers()).toEqual({});
  });

  it("says the backend cannot be reached, and tries again when asked", async () => {
    const { keeper, transport } = setup();
    transport.refreshAnswers.push(down(), tokens("t1"));
    await keeper.resume();
    expect(keeper.status()).toEqual({ state: "unreachable", message: "the backend cannot be reached (Failed to fetch)" });
    await keeper.resume();
    expect(keeper.status().state).toBe("signed-in");
  });

  it("resumes once however many times it is asked at once (a double-mounted effect)", async () => {
    const { keeper, transport } = setup();
    transport.refreshAnswers.push(tokens("t1"));
    await Promise.all([keeper.resume(), keeper.resume()]);
    expect(transport.refreshes).toBe(1);
  });

  it("uses an API token saved in this tab first, checked with the backend", async () => {
    const { keeper, transport, store } = setup();
    store.save({ token: "kanade_api_x_y", operator: "" }, false);
    transport.sessionAnswers.push(SESSION);
    await keeper.resume();
    expect(keeper.status()).toMatchObject({ state: "signed-in", via: "api-token" });
    expect(transport.sessions).toEqual([{ Authorization: "Bearer kanade_api_x_y" }]);
    expect(transport.refreshes).toBe(0);
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer kanade_api_x_y" });
  });

  it("forgets a saved API token the backend no longer accepts", async () => {
    const { keeper, transport, store } = setup();
    store.save({ token: "old", operator: "bob" }, true);
    transport.sessionAnswers.push(refused());
    await keeper.resume();
    expect(keeper.status()).toEqual({ state: "signed-out", notice: TOKEN_REFUSED });
    expect(store.saved).toBeNull();
  });
});

describe("SessionKeeper: API tokens", () => {
  it("checks the token, keeps it as asked, and never refreshes it", async () => {
    const { keeper, transport, store } = setup();
    transport.sessionAnswers.push(SESSION);
    await keeper.useApiToken({ token: "static-token-0123456789", operator: "bob" }, true);
    expect(store.saved).toEqual({ credentials: { token: "static-token-0123456789", operator: "bob" }, remember: true });
    expect(await keeper.headers()).toEqual({ Authorization: "Bearer static-token-0123456789", "X-Kanade-Operator": "bob" });
    // A 401 with it ends the sign-in (the token was revoked): no refresh, the saved token forgotten.
    expect(await keeper.renew({ Authorization: "Bearer static-token-0123456789" })).toBe(false);
    expect(transport.refreshes).toBe(0);
    expect(keeper.status()).toEqual({ state: "signed-out", notice: TOKEN_REFUSED });
    expect(store.saved).toBeNull();
  });

  it("refuses a token the backend refuses, keeping nothing", async () => {
    const { keeper, transport, store } = setup();
    transport.sessionAnswers.push(refused());
    await expect(keeper.useApiToken({ token: "nope", operator: "" }, true)).rejects.toMatchObject({ status: 401 });
    expect(store.saved).toBeNull();
  });

  it("a password sign-in replaces a saved API token", async () => {
    const { keeper, transport, store } = setup();
    store.save({ token: "t", operator: "" }, true);
    transport.loginAnswers.push(tokens("s1"));
    await keeper.signIn({ name: "ada", password: "pw" });
    expect(store.saved).toBeNull();
  });

  it("signing out forgets the saved token and tells the backend nothing", async () => {
    const { keeper, transport, store } = setup();
    transport.sessionAnswers.push(SESSION);
    await keeper.useApiToken({ token: "t", operator: "" }, false);
    await keeper.signOut();
    expect(store.saved).toBeNull();
    expect(transport.logouts).toEqual([]);
    expect(keeper.status()).toEqual({ state: "signed-out", notice: null });
  });
});

describe("SessionKeeper with Api", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("sends a request again once with the refreshed token after a 401, and gives up after the second", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(tokens("t2"));
    const seen: (string | undefined)[] = [];
    vi.stubGlobal("fetch", async (_url: string, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>)["Authorization"];
      seen.push(auth);
      return auth === "Bearer t2" ? new Response("[]") : new Response('{"error":{"code":"token_expired","message":"expired"}}', { status: 401 });
    });
    await expect(new Api(keeper).jobs()).resolves.toEqual([]);
    expect(seen).toEqual(["Bearer t1", "Bearer t2"]);
  });

  it("lets the 401 through when the refresh is refused, and the keeper is signed out", async () => {
    const { keeper, transport } = await signedIn();
    transport.refreshAnswers.push(refused());
    const fetch = vi.fn(async () => new Response('{"error":{"code":"unauthorized","message":"the session ended"}}', { status: 401 }));
    vi.stubGlobal("fetch", fetch);
    await expect(new Api(keeper).jobs()).rejects.toMatchObject({ status: 401 });
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(keeper.status()).toEqual({ state: "signed-out", notice: SESSION_ENDED });
  });

  it("refreshes once when several requests are refused at once, and each goes again", async () => {
    const { keeper, transport } = await signedIn();
    const pending = deferred<SessionTokens>();
    transport.refreshAnswers.push(pending.promise);
    vi.stubGlobal("fetch", async (_url: string, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>)["Authorization"];
      return auth === "Bearer t2" ? new Response("[]") : new Response("{}", { status: 401 });
    });
    const api = new Api(keeper);
    const all = Promise.all([api.jobs(), api.schedules(), api.jobs()]);
    // Let all three reach their 401 before the refresh answers.
    await new Promise((r) => setTimeout(r, 0));
    pending.resolve(tokens("t2"));
    expect(await all).toEqual([[], [], []]);
    expect(transport.refreshes).toBe(1);
  });
});

describe("httpTransport", () => {
  afterEach(() => vi.unstubAllGlobals());

  function stub(response: () => Response) {
    const fetch = vi.fn(async (_url: string, _init?: RequestInit) => response());
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }

  it("signs in asking for the cookie, same-origin, with the CSRF header", async () => {
    const fetch = stub(() => new Response(JSON.stringify(tokens("t1"))));
    const answer = await httpTransport("http://b").login({ name: "ada", password: "pw", cookie: true });
    expect(answer.access_token).toBe("t1");
    const [url, init] = fetch.mock.calls[0] ?? [];
    expect(url).toBe("http://b/api/login");
    expect(init?.method).toBe("POST");
    expect(init?.credentials).toBe("same-origin");
    expect(JSON.parse(String(init?.body))).toEqual({ name: "ada", password: "pw", cookie: true });
    expect(init?.headers).toMatchObject({ "Content-Type": "application/json", [CSRF_HEADER]: "1" });
  });

  it("refreshes and logs out with the CSRF header and no body (the cookie carries the refresh token)", async () => {
    const fetch = stub(() => new Response(JSON.stringify(tokens("t2"))));
    const transport = httpTransport();
    await transport.refresh();
    fetch.mockImplementation(async () => new Response(null, { status: 204 }));
    await transport.logout({ Authorization: "Bearer t2" });
    const [refreshUrl, refreshInit] = fetch.mock.calls[0] ?? [];
    const [logoutUrl, logoutInit] = fetch.mock.calls[1] ?? [];
    expect([refreshUrl, logoutUrl]).toEqual(["/api/refresh", "/api/logout"]);
    expect(refreshInit?.body).toBeUndefined();
    expect(refreshInit?.headers).toMatchObject({ [CSRF_HEADER]: "1" });
    expect(refreshInit?.headers).not.toHaveProperty("Content-Type");
    expect(logoutInit?.headers).toMatchObject({ [CSRF_HEADER]: "1", Authorization: "Bearer t2" });
  });

  it("throws the backend's error with Retry-After, and unreachable when the network fails", async () => {
    stub(
      () =>
        new Response('{"error":{"code":"too_many_attempts","message":"too many failed sign-ins for `ada`; try again in 4 s"}}', {
          status: 429,
          headers: { "Retry-After": "4" },
        }),
    );
    await expect(httpTransport().login({ name: "ada", password: "x" })).rejects.toMatchObject({
      status: 429,
      code: "too_many_attempts",
      retryAfter: 4,
    });
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    await expect(httpTransport().refresh()).rejects.toMatchObject({ status: 0, code: "unreachable" });
  });
});

describe("signInProblem", () => {
  it("says wrong credentials as the backend does, as a sentence", () => {
    expect(signInProblem(new ApiError(401, "login_failed", "wrong name or password"), false)).toEqual({
      message: "Wrong name or password.",
      totp: false,
      waitSeconds: null,
    });
    expect(signInProblem(new ApiError(401, "login_failed", "account `bob` is disabled"), false).message).toBe(
      "Account `bob` is disabled.",
    );
  });

  it("asks for the TOTP code when the backend needs it, and keeps asking after a wrong one", () => {
    expect(signInProblem(new ApiError(401, "totp_required", "this account needs its TOTP code"), false)).toMatchObject({ totp: true });
    expect(signInProblem(new ApiError(401, "login_failed", "wrong TOTP code (or one used already)"), true)).toEqual({
      message: "Wrong TOTP code (or one used already).",
      totp: true,
      waitSeconds: null,
    });
  });

  it("says how long a throttled name waits, from Retry-After or else the message", () => {
    expect(signInProblem(new ApiError(429, "too_many_attempts", "try again in 9 s", 8), false)).toEqual({
      message: "Too many failed sign-ins for this name. Try again in 8 s.",
      totp: false,
      waitSeconds: 8,
    });
    expect(signInProblem(new ApiError(429, "too_many_attempts", "too many failed sign-ins for `x`; try again in 16 s"), false).waitSeconds).toBe(16);
  });

  it("says when the backend cannot be reached, and what a broken backend said", () => {
    expect(signInProblem(down(), false).message).toBe(
      "The backend cannot be reached (Failed to fetch). Check that it is running, then try again.",
    );
    expect(signInProblem(new ApiError(500, "internal", "internal error; see the backend log"), false).message).toBe(
      "The backend could not sign you in: internal error; see the backend log",
    );
    expect(signInProblem(new TypeError("boom"), false).message).toMatch(/^The backend cannot be reached \(boom\)/);
  });
});

describe("the throttle countdown", () => {
  it("rounds the seconds left up and stops at zero", () => {
    expect(secondsLeft(10_000, 0)).toBe(10);
    expect(secondsLeft(10_000, 9_001)).toBe(1);
    expect(secondsLeft(10_000, 10_000)).toBe(0);
    expect(secondsLeft(10_000, 20_000)).toBe(0);
  });

  it("says the wait in seconds, minutes for long ones, and when it is over", () => {
    expect(throttledMessage(4)).toBe("Too many failed sign-ins for this name. Try again in 4 s.");
    expect(throttledMessage(300)).toBe("Too many failed sign-ins for this name. Try again in 5 min.");
    expect(throttledMessage(0)).toBe("Too many failed sign-ins for this name. You may try again now.");
  });
});
