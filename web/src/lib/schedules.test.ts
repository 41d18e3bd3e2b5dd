import { describe, expect, it } from "vitest";
import {
  compactDuration,
  deletePrompt,
  describeWhen,
  fireRow,
  fireRows,
  firesOncePerPc,
  nextRun,
  outcomeBadge,
  runNowNote,
  scheduleFacts,
  scheduleOfExecution,
  scheduleRow,
  scheduleRows,
  stateBadge,
  until,
} from "./schedules";
import type { Fire, ScheduleView } from "./types";

const NOW = Date.parse("2026-11-23T12:00:00Z");
const later = (ms: number) => new Date(NOW + ms).toISOString();

function fire(over: Partial<Fire> = {}): Fire {
  return {
    occurrence_id: "echo-every-10s-20261123t115950z",
    occurrence_at: "2026-11-23T11:59:50Z",
    outcome: "fired",
    exec_id: "echo-every-10s-20261123t115950z",
    decided_by: "backend-1",
    decided_at: "2026-11-23T11:59:50.120Z",
    exec_status: "completed",
    target_count: 2,
    ...over,
  };
}

function view(over: Partial<ScheduleView> = {}, schedule: Partial<ScheduleView["schedule"]> = {}): ScheduleView {
  return {
    schedule: {
      id: "echo-every-10s",
      description: "echo on every agent every 10 seconds",
      job_id: "echo",
      when: { kind: "cron", pattern: "*/10 * * * * *" },
      timezone: "UTC",
      targets: { all: true, groups: [], pcs: [] },
      deadline: 10_000,
      enabled: true,
      misfire: "skip",
      grace: 60_000,
      overlap: "skip",
      ...schedule,
    },
    source: "id: echo-every-10s\n",
    created_at: "2026-11-23T11:00:00Z",
    created_by: "dora",
    updated_at: "2026-11-23T11:00:00Z",
    updated_by: "dora",
    state: "active",
    next: [later(9_000), later(19_000)],
    fires: [fire()],
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
  { schedule: null },
  { schedule: "x", state: 7, next: "soon", fires: "none" },
  { schedule: { id: 5, when: "cron", timezone: [] }, next: [null, 5, "not a time"], fires: [null, 7, "x", []] },
  { schedule: { when: { kind: "cron" } }, state: "paused" },
  { schedule: { when: { kind: "every", every_ms: -1 } } },
  { schedule: { when: { kind: "every", every_ms: Number.MAX_SAFE_INTEGER } } },
  { schedule: { when: { kind: "at", at: "yesterday" }, timezone: "Not/A_Zone" } },
  { schedule: { when: { kind: "lunar", phase: "full" } } },
  { schedule: { when: { kind: { nested: true } } } },
  { schedule: { targets: "all", waves: "many", jitter: "1m", grace: null, misfire: 3, overlap: {} } },
  { schedule: { targets: { groups: [1, null, "lab"], pcs: "pc-1" }, waves: [null, { group: 3, delay: "x" }] } },
  { fires: [{ outcome: "missed", count: 1e300 }, { outcome: "missed", count: -4 }, { outcome: "exploded" }, { count: "NaN" }] },
  { fires: Array.from({ length: 1000 }, (_, i) => ({ occurrence_id: "same", outcome: i % 2 ? "fired" : "missed" })) },
  { __proto__: { schedule: { id: "inherited" } } },
];

describe("describeWhen", () => {
  it("says each kind of timing", () => {
    expect(describeWhen({ kind: "cron", pattern: "*/10 * * * * *" }, "Europe/Berlin")).toBe("cron */10 * * * * * (Europe/Berlin)");
    expect(describeWhen({ kind: "cron", pattern: "0 3 * * 1-5" }, "UTC")).toBe("cron 0 3 * * 1-5 (UTC)");
    expect(describeWhen({ kind: "every", every_ms: 600_000 }, "UTC")).toBe("every 10m");
    expect(describeWhen({ kind: "every", every_ms: 10_000 })).toBe("every 10s");
    expect(describeWhen({ kind: "at", at: "2026-12-24T18:00:00Z" }, "UTC")).toBe("at 2026-12-24 18:00 UTC");
    expect(describeWhen({ kind: "once_per_pc" }, "UTC")).toBe("once per PC");
    expect(describeWhen({ kind: "once_per_version" })).toBe("once per PC and job version");
  });

  it("gives an `at` in another zone its wall clock there too", () => {
    expect(describeWhen({ kind: "at", at: "2026-12-24T18:00:00Z" }, "Europe/Berlin")).toBe(
      "at 2026-12-24 18:00 UTC (2026-12-24 19:00 Europe/Berlin)",
    );
    expect(describeWhen({ kind: "at", at: "2026-07-01T03:30:15+02:00" }, "America/New_York")).toBe(
      "at 2026-07-01 01:30:15 UTC (2026-06-30 21:30:15 America/New_York)",
    );
    // A zone this browser does not know: the UTC time alone.
    expect(describeWhen({ kind: "at", at: "2026-12-24T18:00:00Z" }, "Mars/Olympus_Mons")).toBe("at 2026-12-24 18:00 UTC");
  });

  it("names what it cannot read instead of throwing", () => {
    expect(describeWhen(undefined)).toBe("—");
    expect(describeWhen(null, "UTC")).toBe("—");
    expect(describeWhen("cron")).toBe("—");
    expect(describeWhen({})).toBe("—");
    expect(describeWhen({ kind: "cron" }, 42)).toBe("cron (no pattern)");
    expect(describeWhen({ kind: "every" })).toBe("every ?");
    expect(describeWhen({ kind: "every", every_ms: "10m" })).toBe("every ?");
    expect(describeWhen({ kind: "at", at: "Christmas" })).toBe("at an unreadable time");
    expect(describeWhen({ kind: "at" })).toBe("at an unreadable time");
    expect(describeWhen({ kind: "lunar_phase" })).toBe("lunar phase");
    expect(describeWhen({ kind: "x".repeat(10_000) }).length).toBeLessThanOrEqual(60);
    expect(describeWhen({ kind: 5 })).toBe("—");
  });
});

describe("compactDuration", () => {
  it("writes milliseconds as a schedule file does", () => {
    expect(compactDuration(0)).toBe("0s");
    expect(compactDuration(250)).toBe("250ms");
    expect(compactDuration(45_000)).toBe("45s");
    expect(compactDuration(600_000)).toBe("10m");
    expect(compactDuration(5_400_000)).toBe("1h30m");
    expect(compactDuration(86_400_000)).toBe("1d");
    expect(compactDuration(90_061_001)).toBe("1d1h1m1s1ms");
  });

  it("says `?` for what is not a duration, and copes with huge ones", () => {
    for (const bad of [-1, NaN, Infinity, "1m", null, undefined, {}]) expect(compactDuration(bad), String(bad)).toBe("?");
    expect(compactDuration(Number.MAX_SAFE_INTEGER)).toMatch(/^\d+d/);
  });
});

describe("stateBadge and outcomeBadge", () => {
  it("give each state words, a tone and a symbol", () => {
    expect(stateBadge("active")).toEqual({ label: "active", tone: "ok", symbol: "✓" });
    expect(stateBadge("paused")).toMatchObject({ label: "paused", tone: "pending" });
    expect(stateBadge("waiting")).toMatchObject({ label: "waiting", tone: "pending" });
    expect(stateBadge("ended")).toMatchObject({ label: "ended", tone: "skipped" });
  });

  it("show an unknown state as it is, and a missing one as unknown", () => {
    expect(stateBadge("half_asleep")).toMatchObject({ label: "half asleep", tone: "skipped" });
    for (const bad of [undefined, null, "", 3, {}, []]) expect(stateBadge(bad).label, String(bad)).toBe("unknown");
  });

  it("say each outcome", () => {
    expect(outcomeBadge("fired")).toEqual({ label: "fired", tone: "ok", symbol: "✓" });
    expect(outcomeBadge("run_now")).toMatchObject({ label: "run now", tone: "ok" });
    expect(outcomeBadge("skipped_overlap")).toMatchObject({ label: "skipped (overlap)", tone: "skipped" });
    expect(outcomeBadge("missed")).toMatchObject({ label: "missed", tone: "pending" });
    expect(outcomeBadge("missed", 1)).toMatchObject({ label: "missed" });
    expect(outcomeBadge("missed", 3)).toMatchObject({ label: "missed ×3" });
    expect(outcomeBadge("failed")).toMatchObject({ label: "failed", tone: "failed" });
  });

  it("count huge misses readably and ignore nonsense counts", () => {
    expect(outcomeBadge("missed", 1_234_567).label).toBe("missed ×1,234,567");
    expect(outcomeBadge("missed", Number.MAX_SAFE_INTEGER).label).toBe("missed ×9,007,199,254,740,991");
    expect(outcomeBadge("missed", 1e300).label).toMatch(/^missed ×1/);
    for (const bad of [-5, 0, NaN, Infinity, "7", null]) expect(outcomeBadge("missed", bad).label, String(bad)).toBe("missed");
  });

  it("never show an unknown outcome as success", () => {
    expect(outcomeBadge("teleported")).toMatchObject({ label: "teleported", tone: "failed" });
    for (const bad of [undefined, null, "", 1, {}]) expect(outcomeBadge(bad)).toMatchObject({ label: "unknown", tone: "failed" });
  });
});

describe("until and nextRun", () => {
  it("count down to a time", () => {
    expect(until(later(9_000), NOW)).toBe("in 9 s");
    expect(until(later(8_200), NOW)).toBe("in 9 s");
    expect(until(later(4 * 60_000), NOW)).toBe("in 4 min");
    expect(until(later(3 * 86_400_000), NOW)).toBe("in 3 d");
    expect(until(later(0), NOW)).toBe("now");
    expect(until(later(-5_000), NOW)).toBe("now");
    for (const bad of [undefined, null, "", "soon", 5]) expect(until(bad, NOW)).toBeNull();
  });

  it("is the first time still ahead", () => {
    expect(nextRun(view(), NOW)).toEqual({ at: later(9_000), text: "in 9 s" });
    // The list is as of the last fetch: times passed since are skipped.
    expect(nextRun(view({ next: [later(-11_000), later(-1_000), later(9_000)] }), NOW)).toEqual({ at: later(9_000), text: "in 9 s" });
    expect(nextRun(view({ next: [later(-500)] }), NOW)).toEqual({ at: later(-500), text: "now" });
  });

  it("says why there is none", () => {
    expect(nextRun(view({ state: "paused", next: [] }), NOW).text).toBe("none: paused");
    expect(nextRun(view({ state: "ended", next: [] }), NOW).text).toBe("none: ended");
    expect(nextRun(view({ next: [] }, { when: { kind: "once_per_pc" } }), NOW).text).toBe("on each PC once");
    expect(nextRun(view({ next: [] }), NOW)).toEqual({ at: null, text: "none" });
    expect(nextRun(view({ next: [later(-60_000)] }), NOW)).toEqual({ at: null, text: "due now" });
  });
});

describe("fireRow", () => {
  it("shows a fire with its execution, status and targets", () => {
    expect(fireRow(fire())).toEqual({
      key: "echo-every-10s-20261123t115950z#0",
      at: "2026-11-23T11:59:50Z",
      outcome: { label: "fired", tone: "ok", symbol: "✓" },
      exec: "echo-every-10s-20261123t115950z",
      status: "completed",
      targets: "2 agents",
      decidedBy: "backend-1",
      decidedAt: "2026-11-23T11:59:50.120Z",
      reason: null,
    });
    expect(fireRow(fire({ target_count: 1 })).targets).toBe("1 agent");
    expect(fireRow(fire({ target_count: 12_000 })).targets).toBe("12,000 agents");
  });

  it("shows a miss without an execution, with its reason", () => {
    const row = fireRow(fire({ outcome: "missed", exec_id: null, exec_status: null, target_count: null, count: 42, reason: "the backend was away" }));
    expect(row).toMatchObject({ exec: null, status: null, targets: null, reason: "the backend was away" });
    expect(row.outcome.label).toBe("missed ×42");
  });

  it("gives rows keys unique in their list even when ids repeat", () => {
    const rows = fireRows({ fires: [fire(), fire(), fire()] });
    expect(new Set(rows.map((r) => r.key)).size).toBe(3);
  });

  it("reads anything without throwing", () => {
    for (const bad of [undefined, null, 7, "x", [], {}, { target_count: -1, decided_by: 9 }]) {
      const row = fireRow(bad);
      expect(row.decidedBy).toBe("—");
      expect(row.targets).toBeNull();
      expect(row.outcome.tone).toBe("failed");
    }
    expect(fireRows(undefined)).toEqual([]);
    expect(fireRows({ fires: "lots" })).toEqual([]);
    expect(fireRows({ fires: [] })).toEqual([]);
  });
});

describe("scheduleRow and scheduleRows", () => {
  it("shows a schedule as its list row", () => {
    expect(scheduleRow(view(), NOW)).toEqual({
      id: "echo-every-10s",
      description: "echo on every agent every 10 seconds",
      job: "echo",
      when: "cron */10 * * * * * (UTC)",
      state: { label: "active", tone: "ok", symbol: "✓" },
      next: { at: later(9_000), text: "in 9 s" },
      last: fireRow(fire()),
    });
  });

  it("shows a schedule that has not fired yet", () => {
    expect(scheduleRow(view({ fires: [] }), NOW).last).toBeNull();
  });

  it("orders the list by id, and an empty or broken list is empty", () => {
    const rows = scheduleRows([view({}, { id: "b" }), view({}, { id: "a" }), view({}, { id: "c" })], NOW);
    expect(rows.map((r) => r.id)).toEqual(["a", "b", "c"]);
    expect(scheduleRows([], NOW)).toEqual([]);
    for (const bad of [undefined, null, {}, "[]", 3]) expect(scheduleRows(bad, NOW)).toEqual([]);
  });

  it("renders hostile data without throwing", () => {
    for (const bad of HOSTILE) {
      const row = scheduleRow(bad, NOW);
      expect(typeof row.id, JSON.stringify(bad)?.slice(0, 80)).toBe("string");
      expect(typeof row.when).toBe("string");
      expect(typeof row.state.label).toBe("string");
      expect(typeof row.next.text).toBe("string");
      scheduleFacts((bad as { schedule?: unknown } | null)?.schedule);
      fireRows(bad);
    }
    expect(scheduleRows(HOSTILE, NOW)).toHaveLength(HOSTILE.length);
  });
});

describe("scheduleFacts", () => {
  it("says the settings in words", () => {
    const facts = Object.fromEntries(scheduleFacts(view().schedule).map((f) => [f.term, f.text]));
    expect(facts).toEqual({
      Job: "echo",
      When: "cron */10 * * * * * (UTC)",
      "Time zone": "UTC",
      Targets: "every agent",
      Waves: "the job's own",
      Jitter: "the job's own",
      Deadline: "10 s",
      "Missed occurrences": "skip what was missed",
      Grace: "1 min",
      Overlap: "skip while its last run is still going",
    });
    expect(scheduleFacts(view().schedule)[0]).toEqual({ term: "Job", text: "echo", job: "echo" });
  });

  it("says the schedule's own targets, waves and window", () => {
    const facts = Object.fromEntries(
      scheduleFacts(
        view({}, {
          targets: { all: false, groups: ["lab"], pcs: [] },
          waves: [
            { group: "lab", delay: 0, max_failure_pct: 10 },
            { group: "office", delay: 3_600_000, max_failure_pct: 5 },
          ],
          jitter: 300_000,
          misfire: "run_once",
          overlap: "allow",
          not_before: "2026-12-01T00:00:00Z",
          not_after: "2027-01-01T00:00:00Z",
        }).schedule,
      ).map((f) => [f.term, f.text]),
    );
    expect(facts).toMatchObject({
      Targets: "group lab",
      Waves: "1. lab after 0 ms (halt over 10% failed); 2. office after 1 h (halt over 5% failed)",
      Jitter: "5 min",
      "Missed occurrences": "run once for what was missed",
      Overlap: "fire even while its last run is still going",
      "Not before": "2026-12-01 00:00",
      "Not after": "2027-01-01 00:00",
    });
    expect(Object.fromEntries(scheduleFacts(view({}, { waves: [] }).schedule).map((f) => [f.term, f.text])).Waves).toBe("none: all at once");
  });

  it("reads a broken schedule without throwing", () => {
    for (const bad of [undefined, null, {}, "x", { misfire: "sometimes", overlap: "never", grace: -1 }]) {
      const facts = scheduleFacts(bad);
      expect(facts.length).toBeGreaterThanOrEqual(10);
      for (const fact of facts) expect(typeof fact.text).toBe("string");
    }
    expect(scheduleFacts({ misfire: "sometimes" }).find((f) => f.term === "Missed occurrences")?.text).toBe("sometimes");
    expect(scheduleFacts({}).find((f) => f.term === "Job")).toEqual({ term: "Job", text: "—" });
  });
});

describe("Run now, Delete and once-per-PC", () => {
  it("says what Run now started", () => {
    expect(runNowNote({ occurrence_id: "e", exec_id: "e", outcome: "fired" })).toEqual({ exec: "e", text: "Fired now:" });
    expect(runNowNote({ exec_id: "e", outcome: "already_fired" })).toEqual({ exec: "e", text: "This second's occurrence had fired already:" });
    expect(runNowNote({}).exec).toBeNull();
    expect(runNowNote(null).exec).toBeNull();
  });

  it("asks before deleting, saying more for a once-per-PC schedule", () => {
    expect(deletePrompt(view(), "echo-every-10s")).toMatch(/^Delete the schedule echo-every-10s\? Nothing more fires; runs already going go on/);
    expect(deletePrompt(view({}, { when: { kind: "once_per_pc" } }), "w")).toContain("PCs that have not run it yet never will");
    expect(deletePrompt(undefined, "gone")).toContain("gone");
  });

  it("knows the once-per-PC kinds", () => {
    expect(firesOncePerPc({ kind: "once_per_pc" })).toBe(true);
    expect(firesOncePerPc({ kind: "once_per_version" })).toBe(true);
    for (const other of [{ kind: "cron" }, {}, null, undefined, "once_per_pc"]) expect(firesOncePerPc(other)).toBe(false);
  });
});

describe("scheduleOfExecution", () => {
  it("finds the schedule an occurrence's execution belongs to", () => {
    expect(scheduleOfExecution("echo-every-10s-20261123t120010z")).toBe("echo-every-10s");
    expect(scheduleOfExecution("a-20261123t120010z")).toBe("a");
    expect(scheduleOfExecution("nightly_backup-20260101t000000z")).toBe("nightly_backup");
  });

  it("finds none in other executions", () => {
    for (const exec of ["0190c0de-7a11-7000-8000-000000000001", "", "-20261123t120010z", "echo-20261123t120010", "Echo-20261123t120010z", `${"a".repeat(41)}-20261123t120010z`]) {
      expect(scheduleOfExecution(exec), exec).toBeNull();
    }
  });
});
