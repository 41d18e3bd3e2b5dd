import { describe, expect, it } from "vitest";
import { BUCKETS, bucketOf, mayBeRunning, progress, summary, type Bucket } from "./progress";
import { rng } from "./seeded";


const sum = (widths: Record<Bucket, number>) => BUCKETS.reduce((s, b) => s + widths[b], 0);

describe("bucketOf", () => {
  it("maps the known states to their buckets", () => {
    expect(bucketOf("ok")).toBe("ok");
    expect(bucketOf("running")).toBe("running");
    expect(bucketOf("pending")).toBe("pending");
    expect(bucketOf("skipped")).toBe("skipped");
    expect(bucketOf("failed")).toBe("failed");
  });

  it("counts anything else as failed, so it never looks like success", () => {
    for (const state of ["timeout", "killed", "error", "OK", "Ok", " ok", "ok ", "", "unknown-new-status", "__proto__", "constructor"]) {
      expect(bucketOf(state), JSON.stringify(state)).toBe("failed");
    }
  });
});

describe("progress", () => {
  it("folds statuses into the five buckets", () => {
    const p = progress({ ok: 3, failed: 1, timeout: 1, running: 2, pending: 2, skipped: 1 });
    expect(p.counts).toEqual({ ok: 3, failed: 2, running: 2, pending: 2, skipped: 1 });
    expect(p.total).toBe(10);
    expect(p.done_pct).toBe(60);
    expect(p.widths).toEqual({ ok: 30, failed: 20, running: 20, pending: 20, skipped: 10 });
  });

  it("counts unknown statuses as failed", () => {
    const p = progress({ ok: 1, exploded: 2, "": 1, kill: 1 });
    expect(p.counts.failed).toBe(4);
    expect(p.counts.ok).toBe(1);
    expect(p.total).toBe(5);
  });

  it("ignores negative, zero, NaN and infinite counts", () => {
    const p = progress({ ok: 2, failed: -5, running: Number.NaN, pending: Number.POSITIVE_INFINITY, skipped: 0, x: Number.NEGATIVE_INFINITY });
    expect(p.counts).toEqual({ ok: 2, failed: 0, running: 0, pending: 0, skipped: 0 });
    expect(p.total).toBe(2);
    expect(p.widths.ok).toBe(100);
    // Values that are not numbers at all (a broken response) are ignored too.
    const q = progress({ ok: "3", failed: null, running: {} } as unknown as Record<string, number>);
    expect(q.total).toBe(0);
  });

  it("treats targets not yet listed by status as pending", () => {
    const p = progress({ ok: 2, running: 1 }, 10);
    expect(p.counts).toEqual({ ok: 2, failed: 0, running: 1, pending: 7, skipped: 0 });
    expect(p.total).toBe(10);
    expect(p.done_pct).toBe(20);
    // Without any status yet, everything is pending.
    expect(progress({}, 4).counts.pending).toBe(4);
  });

  it("adds nothing when the target count is not larger than the counts", () => {
    expect(progress({ ok: 5 }, 3).total).toBe(5);
    expect(progress({ ok: 5 }, 5).counts.pending).toBe(0);
    expect(progress({ ok: 5 }, -1).total).toBe(5);
    expect(progress({ ok: 5 }, Number.NaN).total).toBe(5);
    expect(progress({ ok: 5 }, undefined).total).toBe(5);
  });

  it("has all-zero widths and done_pct without targets", () => {
    for (const p of [progress({}), progress({}, 0), progress({ ok: 0, failed: -1 })]) {
      expect(p.total).toBe(0);
      expect(p.done_pct).toBe(0);
      expect(p.widths).toEqual({ ok: 0, failed: 0, running: 0, pending: 0, skipped: 0 });
    }
  });

  it("rounds thirds so they still fill the bar", () => {
    const p = progress({ ok: 1, failed: 1, running: 1 });
    expect(sum(p.widths)).toBe(100);
    expect(Object.values(p.widths).sort()).toEqual([0, 0, 33, 33, 34]);
    expect(p.done_pct).toBe(66);
  });

  it("gives a tiny share a sliver only when there is rounding left to give", () => {
    const p = progress({ ok: 9999, failed: 1 });
    expect(p.widths.ok + p.widths.failed).toBe(100);
    expect(p.widths.failed).toBeLessThanOrEqual(1);
    expect(p.done_pct).toBe(100);
  });

  it("never says 100% done while something is still running", () => {
    const p = progress({ ok: 999, running: 1 });
    expect(p.done_pct).toBe(99);
  });

  it("keeps widths summing to exactly 100, each bucket in range, for many random inputs", () => {
    const random = rng(20261123);
    const states = ["ok", "failed", "running", "pending", "skipped", "timeout", "weird"];
    const violations: string[] = [];
    for (let round = 0; round < 20_000; round++) {
      const byStatus: Record<string, number> = {};
      const scale = [3, 10, 100, 10_000, 2 ** 31, Number.MAX_SAFE_INTEGER / 16][round % 6] ?? 10;
      for (const state of states) {
        const r = random();
        if (r < 0.3) continue;
        if (r < 0.35) byStatus[state] = -Math.floor(random() * 10);
        else if (r < 0.38) byStatus[state] = Number.NaN;
        else byStatus[state] = Math.floor(random() * scale);
      }
      const targetCount = random() < 0.5 ? Math.floor(random() * scale * 2) : undefined;
      const p = progress(byStatus, targetCount);
      const fail = (what: string) => violations.push(`${what}: ${JSON.stringify({ byStatus, targetCount, p })}`);
      const counted = BUCKETS.reduce((s, b) => s + p.counts[b], 0);
      if (p.total !== counted) fail("total is not the sum of the counts");
      if (targetCount !== undefined && p.total < targetCount) fail("total below the target count");
      if (!Number.isInteger(p.done_pct) || p.done_pct < 0 || p.done_pct > 100) fail("done_pct out of range");
      if (p.total === 0) {
        if (sum(p.widths) !== 0) fail("widths without targets");
        continue;
      }
      if (sum(p.widths) !== 100) fail("widths do not sum to 100");
      for (const b of BUCKETS) {
        const w = p.widths[b];
        if (!Number.isInteger(w) || w < 0) fail(`${b} width is not a whole number`);
        if (p.counts[b] === 0 && w !== 0) fail(`${b} is empty but has width`);
        // Largest-remainder rounding: never a whole point away from the exact share.
        if (Math.abs(w - (p.counts[b] * 100) / p.total) >= 1 + 1e-9) fail(`${b} width is far from its share`);
      }
    }
    expect(violations.slice(0, 5)).toEqual([]);
  });

  it("only says 100% done when everything is finished", () => {
    const random = rng(7);
    for (let round = 0; round < 2000; round++) {
      const byStatus = {
        ok: Math.floor(random() * 50),
        failed: Math.floor(random() * 50),
        skipped: Math.floor(random() * 5),
        running: Math.floor(random() * 3),
        pending: Math.floor(random() * 3),
      };
      const p = progress(byStatus);
      const unfinished = byStatus.running + byStatus.pending;
      if (p.total > 0 && unfinished === 0) expect(p.done_pct).toBe(100);
      if (unfinished > 0) expect(p.done_pct).toBeLessThan(100);
    }
  });
});

describe("summary", () => {
  it("says how many are done and lists the non-empty buckets in bar order", () => {
    expect(summary(progress({ ok: 2, failed: 1, running: 2 }))).toBe("3 of 5 done: 2 ok, 1 failed, 2 running");
    expect(summary(progress({ pending: 1, skipped: 1, ok: 1 }))).toBe("2 of 3 done: 1 ok, 1 skipped, 1 pending");
    expect(summary(progress({ ok: 1 }, 4))).toBe("1 of 4 done: 1 ok, 3 pending");
  });

  it("says so when there are no targets", () => {
    expect(summary(progress({}))).toBe("no targets");
  });

  it("counts unknown statuses as failed in the words too", () => {
    expect(summary(progress({ ok: 1, vanished: 1 }))).toBe("2 of 2 done: 1 ok, 1 failed");
  });
});

// Which statuses are settled is the backend's rule now (`rollout::ShownStatus::settled`, tested there); these
// feed `settled` as the API sends it with each status.
describe("mayBeRunning", () => {
  it("is true until an execution settles, and after it while waves already sent still run", () => {
    expect(mayBeRunning({ status: "rolling_out", settled: false, by_status: {} })).toBe(true);
    expect(mayBeRunning({ status: "running", settled: false, by_status: { ok: 1 } })).toBe(true);
    expect(mayBeRunning({ status: "completed", settled: true, by_status: { ok: 3 } })).toBe(false);
    expect(mayBeRunning({ status: "halted", settled: true, by_status: { failed: 2, running: 1 } })).toBe(true);
    expect(mayBeRunning({ status: "superseded", settled: true, by_status: { running: 4 } })).toBe(true);
    expect(mayBeRunning({ status: "halted", settled: true, by_status: { failed: 2 } })).toBe(false);
  });

  it("goes by settled, not by the status's name", () => {
    // A run fired straight over NATS is settled: only its runs still going can be killed.
    expect(mayBeRunning({ status: "external", settled: true, by_status: { running: 1 } })).toBe(true);
    expect(mayBeRunning({ status: "external", settled: true, by_status: { ok: 1 } })).toBe(false);
    // A status this dashboard does not know yet is followed until the backend says it is settled.
    expect(mayBeRunning({ status: "paused", settled: false, by_status: {} })).toBe(true);
    expect(mayBeRunning({ status: "archived", settled: true, by_status: {} })).toBe(false);
  });

  it("is false for what was never sent", () => {
    expect(mayBeRunning({ status: "pending_approval", settled: false, by_status: {} })).toBe(false);
    expect(mayBeRunning({ status: "rejected", settled: true, by_status: {} })).toBe(false);
  });
});
