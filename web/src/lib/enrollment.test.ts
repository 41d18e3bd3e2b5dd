import { afterEach, describe, expect, it, vi } from "vitest";
import { Api, ApiError } from "./api";
import {
  ENROLLMENT_OFF,
  MAX_GROUPS,
  TOKEN_OWN_GROUPS,
  approvePrompt,
  checkGroups,
  checkTokenForm,
  checkTtl,
  checkUses,
  copyText,
  createdToken,
  credentialBadge,
  credentialNote,
  credentialRow,
  credentialRows,
  enrollmentApi,
  enrollmentKeys,
  groupsText,
  isEnrollmentOff,
  retryEnrollment,
  revokePrompt,
  revokeTokenPrompt,
  shortKey,
  tokenBadge,
  tokenRow,
  tokenRows,
  ttlMillis,
  type EnrollTokenView,
  type EnrollmentView,
} from "./enrollment";

const KEY = "UC6GJTWHVTWUYC2LNYHNX66KJDTA7GXUJXPVKZV7HUOJTRNVNVUVEIYT";

function enrollment(over: Partial<EnrollmentView> = {}): EnrollmentView {
  return {
    pc_id: "pc-1",
    status: "pending",
    groups: ["lab"],
    hostname: "PC-1.test",
    os: "linux",
    public_key: KEY,
    token_id: "abcdefghij",
    requested_at: "2026-12-08T10:00:00Z",
    ...over,
  };
}

function token(over: Partial<EnrollTokenView> = {}): EnrollTokenView {
  return {
    id: "abcdefghij",
    groups: ["kiosk", "lab"],
    uses: 5,
    uses_left: 4,
    state: "active",
    expires_at: "2026-12-09T10:00:00Z",
    created_at: "2026-12-08T10:00:00Z",
    created_by: "dora",
    enrolled: ["pc-1"],
    ...over,
  };
}

/// Shapes the API never sends on purpose: what a newer, older or broken backend (or a proxy) might.
const HOSTILE: unknown[] = [
  undefined,
  null,
  0,
  "",
  "string",
  [],
  [1, 2],
  {},
  { pc_id: 5, status: [], groups: "lab", hostname: null, public_key: 7 },
  { id: {}, groups: [null, 3, "ok"], uses: "5", uses_left: NaN, state: 9, enrolled: "pc-1" },
  { items: "none" },
  { items: [null, 1, "x"] },
];

describe("the New token form", () => {
  it("takes groups as a comma (or space) list, each once, in the order typed", () => {
    expect(checkGroups("")).toEqual({ groups: [] });
    expect(checkGroups(" , ")).toEqual({ groups: [] });
    expect(checkGroups("lab, office,lab  kiosk")).toEqual({ groups: ["lab", "office", "kiosk"] });
    expect(checkGroups("a_b-9")).toEqual({ groups: ["a_b-9"] });
    expect(checkGroups("g".repeat(64))).toEqual({ groups: ["g".repeat(64)] });
  });

  it("refuses a group name the backend would, naming it and the character", () => {
    expect(checkGroups("lab, Office")).toEqual({
      error: "`Office` contains `O`: a group name has only lowercase a-z, 0-9, `_` and `-`",
    });
    expect(checkGroups("lab.eu")).toMatchObject({ error: expect.stringContaining("contains `.`") });
    expect(checkGroups("ラボ")).toMatchObject({ error: expect.stringContaining("contains `ラ`") });
    expect(checkGroups("g".repeat(65))).toMatchObject({ error: expect.stringMatching(/is longer than 64 characters$/) });
    // A long bad name is cut in the message.
    const error = (checkGroups(`${"x".repeat(100)}!`) as { error: string }).error;
    expect(error.length).toBeLessThan(150);
  });

  it("takes at most 16 groups, counting each once", () => {
    const names = (n: number) => Array.from({ length: n }, (_, i) => `g${i}`);
    expect(checkGroups(names(MAX_GROUPS).join(","))).toEqual({ groups: names(16) });
    expect(checkGroups([...names(16), "g0", "g1"].join(","))).toEqual({ groups: names(16) });
    expect(checkGroups(names(17).join(","))).toEqual({ error: "more than 16 groups; a credential carries at most 16" });
    // A huge paste is refused without a bad name far down the list being reached.
    expect(checkGroups([...names(20), "BAD"].join(","))).toMatchObject({ error: expect.stringContaining("more than 16") });
  });

  it("takes uses from 1 to 100,000, or none for the backend's default", () => {
    expect(checkUses("")).toEqual({});
    expect(checkUses("  ")).toEqual({});
    expect(checkUses("1")).toEqual({ uses: 1 });
    expect(checkUses(" 250 ")).toEqual({ uses: 250 });
    expect(checkUses("100000")).toEqual({ uses: 100_000 });
    for (const bad of ["0", "100001", "-1", "1.5", "1e3", "five", "0x10", "9999999999"]) {
      expect(checkUses(bad), bad).toEqual({ error: `\`${bad}\` is not a whole number from 1 to 100,000` });
    }
  });

  it("reads a lifetime as the backend's duration parser does", () => {
    expect(ttlMillis("24h")).toBe(86_400_000);
    expect(ttlMillis("7d")).toBe(7 * 86_400_000);
    expect(ttlMillis("1h30m")).toBe(5_400_000);
    expect(ttlMillis("1h 30m")).toBe(5_400_000);
    expect(ttlMillis("2 days")).toBe(2 * 86_400_000);
    expect(ttlMillis("1w")).toBe(7 * 86_400_000);
    expect(ttlMillis("90s")).toBe(90_000);
    for (const bad of ["", "24", "h", "soon", "24H", "1M", "1y", "1.5h", "-1h", "1h-", "24h!", "1 h x"]) {
      expect(ttlMillis(bad), bad).toBeNull();
    }
  });

  it("takes a lifetime from 1m to 90d, or none for the backend's default", () => {
    expect(checkTtl("")).toEqual({});
    expect(checkTtl(" 24h ")).toEqual({ ttl: "24h" });
    expect(checkTtl("1m")).toEqual({ ttl: "1m" });
    expect(checkTtl("90d")).toEqual({ ttl: "90d" });
    expect(checkTtl("soon")).toEqual({ error: "`soon` is not a duration: write e.g. `24h`, `7d` or `1h30m`" });
    expect(checkTtl("59s")).toEqual({ error: "`59s` is shorter than the minimum of 1m" });
    expect(checkTtl("91d")).toEqual({ error: "`91d` is longer than the maximum of 90d" });
    expect(checkTtl("13w")).toEqual({ error: "`13w` is longer than the maximum of 90d" });
  });

  it("builds the body with only what was given", () => {
    expect(checkTokenForm({ groups: "", uses: "", ttl: "" })).toEqual({ ok: true, body: {} });
    expect(checkTokenForm({ groups: "kiosk, lab", uses: "5", ttl: "2h" })).toEqual({
      ok: true,
      body: { groups: ["kiosk", "lab"], uses: 5, ttl: "2h" },
    });
  });

  it("says what is wrong with every bad field at once", () => {
    const checked = checkTokenForm({ groups: "Lab", uses: "0", ttl: "soon" });
    expect(checked.ok).toBe(false);
    if (checked.ok) return;
    expect(Object.keys(checked.errors).sort()).toEqual(["groups", "ttl", "uses"]);
    expect(checkTokenForm({ groups: "lab", uses: "2", ttl: "1d!" })).toEqual({
      ok: false,
      errors: { ttl: expect.stringContaining("is not a duration") },
    });
  });
});

describe("credentials", () => {
  it("reads a waiting PC", () => {
    expect(credentialRow(enrollment())).toEqual({
      pc: "pc-1",
      status: { label: "waiting for approval", tone: "pending", symbol: "…" },
      pending: true,
      revocable: true,
      groups: "lab",
      hostname: "PC-1.test",
      os: "linux",
      token: "abcdefghij",
      key: "UC6G…EIYT",
      requestedAt: "2026-12-08T10:00:00Z",
      enrolledAt: null,
      issuedAt: null,
      expiresAt: null,
      revokedAt: null,
    });
  });

  it("reads an active and a revoked one", () => {
    const active = credentialRow(
      enrollment({ status: "active", groups: [], enrolled_at: "2026-12-08T10:01:00Z", expires_at: "2026-12-15T10:01:00Z" }),
    );
    expect(active).toMatchObject({ pending: false, revocable: true, groups: "none", expiresAt: "2026-12-15T10:01:00Z" });
    expect(active.status.label).toBe("active");
    const revoked = credentialRow(enrollment({ status: "revoked", revoked_at: "2026-12-08T11:00:00Z" }));
    expect(revoked).toMatchObject({ pending: false, revocable: false, revokedAt: "2026-12-08T11:00:00Z" });
    expect(revoked.status).toEqual({ label: "revoked", tone: "failed", symbol: "✗" });
  });

  it("never shows an unknown state as active", () => {
    expect(credentialBadge("suspended")).toEqual({ label: "suspended", tone: "skipped", symbol: "⤼" });
    expect(credentialBadge("on_hold")).toMatchObject({ label: "on hold" });
    expect(credentialBadge(undefined)).toMatchObject({ label: "unknown", tone: "skipped" });
    expect(credentialRow(enrollment({ status: "suspended" })).revocable).toBe(false);
  });

  it("lists the pages loaded, each PC once", () => {
    const pages = [
      { items: [enrollment({ pc_id: "pc-1" }), enrollment({ pc_id: "pc-2" })], next: "c" },
      { items: [enrollment({ pc_id: "pc-2" }), enrollment({ pc_id: "pc-3" })] },
    ];
    expect(credentialRows(pages).map((r) => r.pc)).toEqual(["pc-1", "pc-2", "pc-3"]);
    expect(credentialRows(undefined)).toEqual([]);
  });

  it("shortens a key to its ends", () => {
    expect(shortKey(KEY)).toBe("UC6G…EIYT");
    expect(shortKey("UABC")).toBe("UABC");
    expect(shortKey(null)).toBe("—");
  });
});

describe("tokens", () => {
  it("reads a token", () => {
    expect(tokenRow(token())).toEqual({
      id: "abcdefghij",
      groups: "kiosk, lab",
      uses: "4 of 5 left",
      state: { label: "active", tone: "ok", symbol: "✓" },
      revocable: true,
      expiresAt: "2026-12-09T10:00:00Z",
      createdAt: "2026-12-08T10:00:00Z",
      createdBy: "dora",
      revokedAt: null,
      enrolled: "pc-1",
    });
  });

  it("says what a token without groups grants, and who it enrolled", () => {
    expect(tokenRow(token({ groups: [] })).groups).toBe(TOKEN_OWN_GROUPS);
    expect(tokenRow(token({ enrolled: [] })).enrolled).toBe("none yet");
    expect(tokenRow(token({ enrolled: undefined })).enrolled).toBe("none yet");
    expect(tokenRow(token({ enrolled: ["a", "b", "c", "d", "e"] })).enrolled).toBe("a, b, c and 2 more");
    expect(tokenRow(token({ uses: 100_000, uses_left: 99_999 })).uses).toBe("99,999 of 100,000 left");
  });

  it("reads each state, and a revoked token cannot be revoked again", () => {
    expect(tokenBadge("expired")).toMatchObject({ label: "expired", tone: "skipped" });
    expect(tokenBadge("used_up")).toMatchObject({ label: "used up", tone: "skipped" });
    expect(tokenBadge("revoked")).toMatchObject({ label: "revoked", tone: "failed" });
    expect(tokenBadge("paused_for_audit")).toMatchObject({ label: "paused for audit", tone: "skipped" });
    const revoked = tokenRow(token({ state: "revoked", revoked_at: "2026-12-08T12:00:00Z" }));
    expect(revoked).toMatchObject({ revocable: false, revokedAt: "2026-12-08T12:00:00Z" });
    expect(tokenRow(token({ state: "expired" })).revocable).toBe(true);
  });

  it("lists the pages loaded, each token once", () => {
    const pages = [{ items: [token({ id: "a" }), token({ id: "b" })] }, { items: [token({ id: "b" }), token({ id: "c" })] }];
    expect(tokenRows(pages).map((r) => r.id)).toEqual(["a", "b", "c"]);
  });

  it("shows a created token once, with what it grants", () => {
    const reply = { ...token({ uses: 5, uses_left: 5, enrolled: [] }), token: "kanade_enroll_abcdefghij_secret" };
    expect(createdToken(reply)).toEqual({
      token: "kanade_enroll_abcdefghij_secret",
      id: "abcdefghij",
      summary: "Enrols up to 5 PCs into kiosk, lab.",
      expiresAt: "2026-12-09T10:00:00Z",
    });
    expect(createdToken({ ...token({ uses: 1, groups: [] }), token: "t" })?.summary).toBe(
      "Enrols 1 PC each with the groups its own config asks for.",
    );
    expect(createdToken(token())).toBeNull();
  });
});

describe("whatever the API sends", () => {
  it("never throws, and shows what it cannot read as unknown", () => {
    for (const value of HOSTILE) {
      expect(() => credentialRow(value)).not.toThrow();
      expect(() => tokenRow(value)).not.toThrow();
      expect(() => createdToken(value)).not.toThrow();
      expect(() => credentialRows([value])).not.toThrow();
      expect(() => tokenRows([value])).not.toThrow();
      expect(() => groupsText(value)).not.toThrow();
    }
    expect(credentialRow({}).pc).toBe("?");
    expect(credentialRow({}).revocable).toBe(false);
    expect(tokenRow({}).uses).toBe("?");
    expect(tokenRow({ uses: 3 }).uses).toBe("? of 3 left");
    expect(groupsText([null, 3, "ok"])).toBe("ok");
  });
});

describe("what the operator confirms and is told", () => {
  it("asks before approving, naming the PC, its host and its groups", () => {
    expect(approvePrompt(credentialRow(enrollment({ groups: ["lab", "office"] })))).toBe(
      "Approve pc-1 (PC-1.test, linux) into lab, office? Its agent gets a credential the next time it asks (within 30 s) and acts as pc-1 from then on.",
    );
    expect(approvePrompt(credentialRow(enrollment({ groups: [] })))).toContain("(PC-1.test, linux) with no groups?");
  });

  it("says that a revoked PC is cut off at once and needs a new token", () => {
    const active = credentialRow(enrollment({ status: "active" }));
    expect(revokePrompt(active)).toBe(
      "Revoke pc-1's credential? The broker cuts pc-1 off at once: it can neither reconnect nor renew, and it needs a new token to come back.",
    );
    expect(revokePrompt(credentialRow(enrollment()))).toBe(
      "Refuse pc-1 (PC-1.test)? It gets no credential, and to enrol it needs a new token.",
    );
  });

  it("says that revoking a token leaves its PCs enrolled", () => {
    expect(revokeTokenPrompt(tokenRow(token()))).toBe(
      "Revoke the enrolment token abcdefghij (4 of 5 left)? It enrols no more PCs; the PCs it enrolled stay enrolled.",
    );
  });

  it("says what was done", () => {
    expect(credentialNote("approve", enrollment({ status: "active" }))).toBe(
      "Approved pc-1: its agent gets its credential the next time it asks.",
    );
    expect(credentialNote("revoke", enrollment({ status: "revoked" }))).toBe("Revoked pc-1: the broker has cut it off.");
    expect(credentialNote("revoke", enrollment({ status: "revoked" }), true)).toBe("Refused pc-1: it gets no credential.");
  });
});

describe("a backend without [security]", () => {
  it("is told apart from other failures", () => {
    expect(isEnrollmentOff(new ApiError(503, "security_not_configured", "enrolment is not configured"))).toBe(true);
    expect(isEnrollmentOff(new ApiError(503, "revocation_pending", "stored"))).toBe(false);
    expect(isEnrollmentOff(new ApiError(500, "security_not_configured", "?"))).toBe(false);
    expect(isEnrollmentOff(new Error("security_not_configured"))).toBe(false);
    expect(isEnrollmentOff(undefined)).toBe(false);
  });

  it("is not asked again, nor is a refused request; anything else twice", () => {
    expect(retryEnrollment(0, new ApiError(503, "security_not_configured", "off"))).toBe(false);
    expect(retryEnrollment(0, new ApiError(400, "invalid_query", "bad"))).toBe(false);
    expect(retryEnrollment(0, new ApiError(503, "broker_unavailable", "down"))).toBe(true);
    expect(retryEnrollment(1, new ApiError(0, "unreachable", "down"))).toBe(true);
    expect(retryEnrollment(2, new ApiError(0, "unreachable", "down"))).toBe(false);
  });

  it("names the setting and the command that turn enrolment on", () => {
    expect(ENROLLMENT_OFF.setting).toBe("[security] dir");
    expect(ENROLLMENT_OFF.command).toBe("kanade security init");
    expect(ENROLLMENT_OFF.lead).toMatch(/^Enrolment is off on this backend/);
  });
});

describe("the enrolment routes", () => {
  afterEach(() => vi.unstubAllGlobals());

  function stub(body = "{}") {
    const fetch = vi.fn(async (_url: string, _init?: RequestInit) => new Response(body, { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }

  const calls = (fetch: ReturnType<typeof stub>) =>
    fetch.mock.calls.map(([url, init]) => `${init?.method} ${url}${init?.body ? ` ${String(init.body)}` : ""}`);

  it("asks each route with the method and path the backend serves, ids encoded", async () => {
    const fetch = stub();
    const api = enrollmentApi(new Api({ token: "t", operator: "dora" }, "http://b"));
    await api.tokens({ limit: 50, cursor: "c1" });
    await api.createToken({ groups: ["lab"], uses: 2 });
    await api.revokeToken("abc/../x");
    await api.enrollments("pending");
    await api.enrollments("revoked", { cursor: "n" });
    await api.approve("pc 1");
    await api.revokeAgent("pc-1/..");
    expect(calls(fetch)).toEqual([
      "GET http://b/api/enroll/tokens?limit=50&cursor=c1",
      'POST http://b/api/enroll/tokens {"groups":["lab"],"uses":2}',
      "DELETE http://b/api/enroll/tokens/abc%2F..%2Fx",
      "GET http://b/api/enrollments?status=pending",
      "GET http://b/api/enrollments?status=revoked&cursor=n",
      "POST http://b/api/enrollments/pc%201/approve",
      "POST http://b/api/agents/pc-1%2F../revoke",
    ]);
    expect(fetch.mock.calls[0]?.[1]?.headers).toMatchObject({ Authorization: "Bearer t", "X-Kanade-Operator": "dora" });
  });

  it("turns enrolment being off into an error the page recognises", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => new Response('{"error":{"code":"security_not_configured","message":"add [security]"}}', { status: 503 })),
    );
    const err = await enrollmentApi(new Api(null)).enrollments("pending").catch((e: unknown) => e);
    expect(isEnrollmentOff(err)).toBe(true);
  });

  it("keeps every query under one prefix, so one invalidation refreshes the page", () => {
    for (const key of [enrollmentKeys.tokens, enrollmentKeys.credentials("pending"), enrollmentKeys.credentials("active")]) {
      expect(key.slice(0, 1)).toEqual(enrollmentKeys.all);
    }
  });
});

describe("copying", () => {
  it("says whether the clipboard took it", async () => {
    const writeText = vi.fn(async () => {});
    expect(await copyText("kanade_enroll_x", { writeText })).toBe(true);
    expect(writeText).toHaveBeenCalledWith("kanade_enroll_x");
    expect(await copyText("x", undefined)).toBe(false);
    expect(await copyText("x", { writeText: async () => Promise.reject(new Error("denied")) })).toBe(false);
  });
});
