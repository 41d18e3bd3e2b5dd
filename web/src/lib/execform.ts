// The exec dialog's form, checked the way the backend checks it, so a typo is caught before anything is fired.

import type { ExecBody, Targets } from "./types";

/// `job`: the job's own targets; `none`: nothing chosen yet (where a job without a target of its own starts).
export type TargetMode = "job" | "none" | "all" | "groups" | "pcs" | "waves";

/// One wave as typed: a group, how long after the previous wave, the failure percentage that halts the rollout.
export interface WaveRow {
  group: string;
  delay: string;
  maxFailurePct: string;
}

export interface ExecForm {
  mode: TargetMode;
  /// Comma- or whitespace-separated names.
  groups: string;
  pcs: string;
  /// For mode `waves`, in order.
  waves: WaveRow[];
  jitter: string;
  deadline: string;
}

export const EMPTY_WAVE: WaveRow = { group: "", delay: "", maxFailurePct: "" };
export const EMPTY_FORM: ExecForm = { mode: "job", groups: "", pcs: "", waves: [EMPTY_WAVE], jitter: "", deadline: "" };
/// What the operator is told when nothing is chosen for a job that has no target of its own.
export const CHOOSE_TARGETS = "This job has no target of its own: choose every agent, groups, PCs or waves.";

/// The form a Run dialog opens with: the job's own targets when it has some, else none chosen.
export function initialForm(targets: Targets | null | undefined): ExecForm {
  return { ...EMPTY_FORM, mode: targets ? "job" : "none" };
}

/// As many waves as the backend takes in one request.
export const MAX_WAVES = 50;

const ID = /^[a-z0-9_-]{1,64}$/;
/// The shape of a humantime duration, one or more `<number><unit>` parts; which units exist is the backend's to say.
const DURATION = /^(\d+(\.\d+)?\s*[a-zµ]+\s*)+$/i;

export function splitNames(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

export type Checked = { ok: true; body: ExecBody } | { ok: false; errors: Partial<Record<keyof ExecForm, string>> };

function durationError(value: string): string | null {
  return value.length > 64 || !DURATION.test(value) ? `\`${value.slice(0, 40)}\` is not a duration (like 30s, 5m, 2h)` : null;
}

/// The waves as `POST /api/exec` takes them, or what is wrong with the first bad one.
function checkWaves(rows: readonly WaveRow[]): { waves: NonNullable<ExecBody["waves"]> } | { error: string } {
  if (rows.length === 0) return { error: "add at least one wave" };
  if (rows.length > MAX_WAVES) return { error: `${rows.length} waves; the limit is ${MAX_WAVES}` };
  const waves: NonNullable<ExecBody["waves"]> = [];
  for (const [index, row] of rows.entries()) {
    const n = index + 1;
    const group = row.group.trim();
    if (!ID.test(group)) return { error: `wave ${n}: \`${group.slice(0, 70)}\` is not a group name (a-z, 0-9, _ and -, up to 64)` };
    if (waves.some((w) => w.group === group)) return { error: `wave ${n}: group \`${group}\` has a wave already` };
    const wave: NonNullable<ExecBody["waves"]>[number] = { group };
    const delay = row.delay.trim();
    if (delay) {
      const bad = durationError(delay);
      if (bad) return { error: `wave ${n}: ${bad}` };
      wave.delay = delay;
    }
    const pct = row.maxFailurePct.trim();
    if (pct) {
      const value = Number(pct);
      if (!/^\d+(\.\d+)?$/.test(pct) || value > 100) return { error: `wave ${n}: the failure percentage must be a number from 0 to 100` };
      wave.max_failure_pct = value;
    }
    waves.push(wave);
  }
  return { waves };
}

/// `jobHasTargets`: whether the job has a target of its own; without one the operator must choose.
export function check(form: ExecForm, jobHasTargets = true): Checked {
  const errors: Partial<Record<keyof ExecForm, string>> = {};
  const body: ExecBody = {};
  if (form.mode === "none" || (form.mode === "job" && !jobHasTargets)) errors.mode = CHOOSE_TARGETS;
  if (form.mode === "all") body.all = true;
  if (form.mode === "groups") {
    const groups = splitNames(form.groups);
    const bad = groups.find((g) => !ID.test(g));
    if (groups.length === 0) errors.groups = "name at least one group";
    else if (bad !== undefined) errors.groups = `\`${bad.slice(0, 70)}\` is not a group name (a-z, 0-9, _ and -, up to 64)`;
    else body.groups = groups;
  }
  if (form.mode === "pcs") {
    const pcs = splitNames(form.pcs);
    const bad = pcs.find((p) => !ID.test(p));
    if (pcs.length === 0) errors.pcs = "name at least one PC";
    else if (pcs.length > 10_000) errors.pcs = `${pcs.length} PCs named; the limit is 10000 (target a group)`;
    else if (bad !== undefined) errors.pcs = `\`${bad.slice(0, 70)}\` is not a PC id (a-z, 0-9, _ and -, up to 64)`;
    else body.pcs = pcs;
  }
  if (form.mode === "waves") {
    const checked = checkWaves(form.waves);
    if ("error" in checked) errors.waves = checked.error;
    else body.waves = checked.waves;
  }
  for (const field of ["jitter", "deadline"] as const) {
    const value = form[field].trim();
    if (!value) continue;
    const bad = durationError(value);
    if (bad) errors[field] = bad;
    else body[field] = value;
  }
  return Object.keys(errors).length > 0 ? { ok: false, errors } : { ok: true, body };
}

/// PCs handed to the Run dialog from another page (an inventory query's PCs), with where they came from. Carried in
/// the navigation's state, never the URL: a query can name thousands of PCs.
export interface Handoff {
  pcs: string[];
  from: string;
}

/// The hand-off in a navigation's state, if it holds a well-formed one (state survives reloads and comes from
/// `history`, so it is checked like any input).
export function handoffOf(state: unknown): Handoff | null {
  if (typeof state !== "object" || state === null) return null;
  const handoff = (state as { handoff?: unknown }).handoff;
  if (typeof handoff !== "object" || handoff === null) return null;
  const { pcs, from } = handoff as { pcs?: unknown; from?: unknown };
  if (!Array.isArray(pcs)) return null;
  const names = [...new Set(pcs.filter((p): p is string => typeof p === "string" && p !== ""))];
  if (names.length === 0) return null;
  return { pcs: names, from: typeof from === "string" ? from : "another page" };
}

/// The form a Run dialog opens with when PCs were handed to it: those PCs, at once; else [`initialForm`].
export function formFor(targets: Targets | null | undefined, handoff: Handoff | null): ExecForm {
  if (!handoff) return initialForm(targets);
  return { ...EMPTY_FORM, mode: "pcs", pcs: handoff.pcs.join(", ") };
}
