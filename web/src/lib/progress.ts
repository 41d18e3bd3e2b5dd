// An execution's progress as the bars show it: every target in exactly one of five buckets, so the segments add
// up to the whole and the text says the same as the colours.

export type Bucket = "ok" | "failed" | "running" | "pending" | "skipped";

export const BUCKETS: readonly Bucket[] = ["ok", "failed", "running", "skipped", "pending"];

/// Which bucket a target's state falls in. Unknown states count as failed: a new status the dashboard does not
/// know yet must not look like success.
export function bucketOf(state: string): Bucket {
  switch (state) {
    case "ok":
      return "ok";
    case "running":
      return "running";
    case "pending":
      return "pending";
    case "skipped":
      return "skipped";
    default:
      return "failed";
  }
}

export interface Progress {
  total: number;
  counts: Record<Bucket, number>;
  /// Targets with a final result, in percent of all (0 when there are no targets).
  done_pct: number;
  /// Each bucket's share of the bar, in percent, rounded so they add up to exactly 100 (or 0 without targets).
  widths: Record<Bucket, number>;
}

/// Folds `by_status` (status → count, as the API sends it) into the five buckets.
export function progress(byStatus: Record<string, number>, targetCount?: number): Progress {
  const counts: Record<Bucket, number> = { ok: 0, failed: 0, running: 0, pending: 0, skipped: 0 };
  for (const [state, n] of Object.entries(byStatus)) {
    if (Number.isFinite(n) && n > 0) counts[bucketOf(state)] += n;
  }
  const counted = BUCKETS.reduce((sum, b) => sum + counts[b], 0);
  // Targets the API counts but has not listed by status are still waiting.
  if (targetCount !== undefined && targetCount > counted) counts.pending += targetCount - counted;
  const total = BUCKETS.reduce((sum, b) => sum + counts[b], 0);
  const finished = counts.ok + counts.failed + counts.skipped;
  return {
    total,
    counts,
    done_pct: total === 0 ? 0 : Math.floor((finished * 100) / total),
    widths: widths(counts, total),
  };
}

/// Largest-remainder rounding, so the segments fill the bar exactly.
function widths(counts: Record<Bucket, number>, total: number): Record<Bucket, number> {
  const out: Record<Bucket, number> = { ok: 0, failed: 0, running: 0, pending: 0, skipped: 0 };
  if (total === 0) return out;
  const exact = BUCKETS.map((b) => ({ b, v: (counts[b] * 100) / total }));
  let left = 100;
  for (const { b, v } of exact) {
    out[b] = Math.floor(v);
    left -= out[b];
  }
  const byRemainder = [...exact].sort((x, y) => y.v - Math.floor(y.v) - (x.v - Math.floor(x.v)));
  for (const { b } of byRemainder) {
    if (left <= 0) break;
    if (counts[b] > 0) {
      out[b] += 1;
      left -= 1;
    }
  }
  return out;
}

/// The bar's words: "3 of 5 done: 2 ok, 1 failed, 2 running".
export function summary(p: Progress): string {
  if (p.total === 0) return "no targets";
  const finished = p.counts.ok + p.counts.failed + p.counts.skipped;
  const parts = BUCKETS.filter((b) => p.counts[b] > 0).map((b) => `${p.counts[b]} ${b}`);
  return `${finished} of ${p.total} done: ${parts.join(", ")}`;
}

/// Whether runs of it may still be going: not settled, or settled with waves already sent still running (a halted
/// or superseded rollout stops sending, not what it sent). Whether it is settled is the backend's to say
/// (`settled` in the API), so the dashboard, the CLI and the `status` filter agree.
export function mayBeRunning(exec: { status: string; settled: boolean; by_status: Record<string, number> }): boolean {
  if (exec.status === "pending_approval" || exec.status === "rejected") return false;
  return !exec.settled || (exec.by_status.running ?? 0) > 0;
}
