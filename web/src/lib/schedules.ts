// The Schedules pages in words, without the DOM: a schedule's timing (`cron */10 * * * * * (Europe/Berlin)`,
// `every 10m`), its state and its fires' outcomes as badges, when it runs next ("in 9 s"), and each list row and
// fire as the pages show them. Everything reads the API's JSON leniently: a field that is missing or of a kind this
// dashboard does not know yet is shown as such, never thrown on.

import { millis, span } from "./format";
import { describeTargets } from "./targets";
import type { Schedule, ScheduleView, Targets, Wave } from "./types";
import { badge, fields, number, text } from "./values";
import type { Badge } from "./values";

export type { Badge, Tone } from "./values";

/// A name from the API (`skipped_overlap`, `rolling_out`) read with its underscores as spaces, cut to a length a
/// table cell holds.
function words(value: string): string {
  const shown = value.replace(/_/g, " ");
  return shown.length > 60 ? `${shown.slice(0, 59)}…` : shown;
}

/// Milliseconds as a schedule file writes them: `10m`, `1h30m`, `45s`, `1d`, `250ms`.
export function compactDuration(ms: unknown): string {
  const value = number(ms);
  if (value === null || value < 0) return "?";
  if (value === 0) return "0s";
  const parts: string[] = [];
  let rest = Math.round(value);
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000], ["ms", 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join("");
}

const pad = (n: number) => String(n).padStart(2, "0");

/// A time in UTC as `2026-12-24 18:00` (with `:05` when it has seconds); null for what is not a time.
function utcText(at: unknown): string | null {
  const raw = text(at);
  if (raw === null) return null;
  const d = new Date(raw);
  if (Number.isNaN(d.getTime())) return null;
  const seconds = d.getUTCSeconds() ? `:${pad(d.getUTCSeconds())}` : "";
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds}`;
}

/// The wall-clock time of `at` in the IANA zone `zone` as `2026-12-24 19:00`; null when either cannot be read.
function zonedText(at: string, zone: string): string | null {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return null;
  try {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    }).formatToParts(d);
    const part = (type: string) => parts.find((p) => p.type === type)?.value ?? "??";
    const seconds = part("second") === "00" ? "" : `:${part("second")}`;
    return `${part("year")}-${part("month")}-${part("day")} ${part("hour")}:${part("minute")}${seconds}`;
  } catch {
    // Not a time zone this browser knows.
    return null;
  }
}

const UTC_ZONES = new Set(["UTC", "Etc/UTC", "Etc/GMT", "GMT", "Z"]);

/// When a schedule fires, in words: `cron */10 * * * * * (Europe/Berlin)`, `every 10m`,
/// `at 2026-12-24 18:00 UTC` (with the schedule's own zone's wall clock beside it when that is not UTC),
/// `once per PC`, `once per PC and job version`; a kind this dashboard does not know is named as it is.
export function describeWhen(when: unknown, timezone?: unknown): string {
  const w = fields(when);
  const zone = text(timezone);
  const kind = text(w.kind);
  switch (kind) {
    case "cron": {
      const pattern = text(w.pattern);
      return `cron ${pattern ?? "(no pattern)"}${zone ? ` (${zone})` : ""}`;
    }
    case "every":
      return `every ${compactDuration(w.every_ms)}`;
    case "at": {
      const at = utcText(w.at);
      if (at === null) return "at an unreadable time";
      const local = zone && !UTC_ZONES.has(zone) ? zonedText(w.at as string, zone) : null;
      return `at ${at} UTC${local ? ` (${local} ${zone})` : ""}`;
    }
    case "once_per_pc":
      return "once per PC";
    case "once_per_version":
      return "once per PC and job version";
    case null:
      return "—";
    default:
      return words(kind);
  }
}

/// Whether a schedule fires once per PC (it has no times of its own, and cannot be run now).
export function firesOncePerPc(when: unknown): boolean {
  const kind = fields(when).kind;
  return kind === "once_per_pc" || kind === "once_per_version";
}

/// A schedule's state: `active` fires on time, `paused` fires nothing until resumed, `waiting` has not reached its
/// `not_before`, `ended` is past its `not_after` (or its one time). Anything else is shown as it is.
export function stateBadge(state: unknown): Badge {
  switch (state) {
    case "active":
      return badge("active", "ok");
    case "paused":
      return badge("paused", "pending");
    case "waiting":
      return badge("waiting", "pending");
    case "ended":
      return badge("ended", "skipped");
    default: {
      const raw = text(state);
      return badge(raw ? words(raw) : "unknown", "skipped");
    }
  }
}

/// Counts with thousands separators, the same in every locale: `1,000,000`.
function count(n: number): string {
  return Math.trunc(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/// What became of one occurrence: `fired`, `run now` (an operator's), `skipped (overlap)` (the run before was still
/// going), `missed` (the backend was away; `missed ×3` for one entry standing for several), `failed` (it could not
/// be fired). A new outcome is shown as it is, never as success.
export function outcomeBadge(outcome: unknown, missed?: unknown): Badge {
  switch (outcome) {
    case "fired":
      return badge("fired", "ok");
    case "run_now":
      return badge("run now", "ok");
    case "skipped_overlap":
      return badge("skipped (overlap)", "skipped");
    case "missed": {
      const n = number(missed);
      return badge(n !== null && n > 1 ? `missed ×${count(n)}` : "missed", "pending");
    }
    case "failed":
      return badge("failed", "failed");
    default: {
      const raw = text(outcome);
      return badge(raw ? words(raw) : "unknown", "failed");
    }
  }
}

/// How long until `at`: `in 9 s`, `in 4 min`; `now` once it is due. Null for what is not a time.
export function until(at: unknown, now: number): string | null {
  const raw = text(at);
  if (raw === null) return null;
  const then = Date.parse(raw);
  if (Number.isNaN(then)) return null;
  const seconds = Math.ceil((then - now) / 1000);
  return seconds <= 0 ? "now" : `in ${span(seconds)}`;
}

export interface NextRun {
  /// The next occurrence still ahead (RFC 3339), or null.
  at: string | null;
  /// `in 9 s`, or why there is none: `none: paused`, `none: ended`, `on each PC once`, `none`.
  text: string;
}

/// The schedule's next run as of `now`: the first of its `next` times not yet past (the list is as of the last
/// fetch), or why it has none.
export function nextRun(view: unknown, now: number): NextRun {
  const v = fields(view);
  const next = Array.isArray(v.next) ? v.next : [];
  for (const at of next) {
    const raw = text(at);
    const then = raw === null ? NaN : Date.parse(raw);
    if (!Number.isNaN(then) && then > now - 1000) return { at: raw, text: until(raw, now) ?? "—" };
  }
  if (v.state === "paused") return { at: null, text: "none: paused" };
  if (v.state === "ended") return { at: null, text: "none: ended" };
  if (firesOncePerPc(fields(v.schedule).when)) return { at: null, text: "on each PC once" };
  return { at: null, text: next.length > 0 ? "due now" : "none" };
}

/// One fire as a table row shows it.
export interface FireRow {
  /// A key unique in its list.
  key: string;
  at: string | null;
  outcome: Badge;
  exec: string | null;
  /// The execution's status now (`completed`, `running`, ...), or null.
  status: string | null;
  /// The agents the execution targets: `2 agents`, or null.
  targets: string | null;
  decidedBy: string;
  decidedAt: string | null;
  reason: string | null;
}

/// One fire, as its row shows it.
export function fireRow(fire: unknown, index = 0): FireRow {
  const f = fields(fire);
  const targets = number(f.target_count);
  return {
    key: `${text(f.occurrence_id) ?? "?"}#${index}`,
    at: text(f.occurrence_at),
    outcome: outcomeBadge(f.outcome, f.count),
    exec: text(f.exec_id),
    status: text(f.exec_status),
    targets: targets === null || targets < 0 ? null : `${count(targets)} agent${targets === 1 ? "" : "s"}`,
    decidedBy: text(f.decided_by) ?? "—",
    decidedAt: text(f.decided_at),
    reason: text(f.reason),
  };
}

/// A schedule's fires, newest first as the API sends them; nothing for a missing or malformed list.
export function fireRows(view: unknown): FireRow[] {
  const fires = fields(view).fires;
  return Array.isArray(fires) ? fires.map((f, i) => fireRow(f, i)) : [];
}

/// One schedule in the list.
export interface ScheduleRow {
  id: string;
  description: string;
  job: string | null;
  when: string;
  state: Badge;
  next: NextRun;
  /// Its latest fire, or null when it has none yet.
  last: FireRow | null;
}

/// One schedule as its row in the list shows it.
export function scheduleRow(view: unknown, now: number): ScheduleRow {
  const v = fields(view);
  const s = fields(v.schedule);
  const fires = fireRows(view);
  return {
    id: text(s.id) ?? "?",
    description: text(s.description) ?? "",
    job: text(s.job_id),
    when: describeWhen(s.when, s.timezone),
    state: stateBadge(v.state),
    next: nextRun(view, now),
    last: fires[0] ?? null,
  };
}

/// The list's rows, by schedule id; nothing for what is not a list.
export function scheduleRows(views: unknown, now: number): ScheduleRow[] {
  if (!Array.isArray(views)) return [];
  return views.map((v) => scheduleRow(v, now)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/// One line of a schedule's facts; `job` marks the line that names its job (the page links it).
export interface Fact {
  term: string;
  text: string;
  job?: string;
}

const THE_JOBS_OWN = "the job's own";

function wavesText(waves: unknown): string {
  if (waves === null || waves === undefined) return THE_JOBS_OWN;
  if (!Array.isArray(waves)) return "?";
  if (waves.length === 0) return "none: all at once";
  return waves
    .map((raw, i) => {
      const w = fields(raw) as Partial<Wave>;
      const pct = number(w.max_failure_pct);
      return `${i + 1}. ${text(w.group) ?? "?"} after ${millis(number(w.delay))}${pct !== null ? ` (halt over ${pct}% failed)` : ""}`;
    })
    .join("; ");
}

function targetsText(targets: unknown): string {
  if (targets === null || targets === undefined) return THE_JOBS_OWN;
  const t = fields(targets);
  return describeTargets({
    all: t.all === true,
    groups: Array.isArray(t.groups) ? t.groups.filter((g): g is string => typeof g === "string") : [],
    pcs: Array.isArray(t.pcs) ? t.pcs.filter((p): p is string => typeof p === "string") : [],
  } as Targets);
}

const MISFIRE: Record<string, string> = {
  skip: "skip what was missed",
  run_once: "run once for what was missed",
};

const OVERLAP: Record<string, string> = {
  skip: "skip while its last run is still going",
  allow: "fire even while its last run is still going",
};

/// A schedule's settings in words, in the order the detail page lists them.
export function scheduleFacts(schedule: unknown): Fact[] {
  const s = fields(schedule) as Partial<Record<keyof Schedule, unknown>>;
  const orOwn = (ms: unknown) => (ms === null || ms === undefined ? THE_JOBS_OWN : millis(number(ms)));
  const job = text(s.job_id);
  const facts: Fact[] = [
    { term: "Job", text: job ?? "—", ...(job ? { job } : {}) },
    { term: "When", text: describeWhen(s.when, s.timezone) },
    { term: "Time zone", text: text(s.timezone) ?? "—" },
    { term: "Targets", text: targetsText(s.targets) },
    { term: "Waves", text: wavesText(s.waves) },
    { term: "Jitter", text: orOwn(s.jitter) },
    { term: "Deadline", text: orOwn(s.deadline) },
    { term: "Missed occurrences", text: MISFIRE[text(s.misfire) ?? ""] ?? text(s.misfire) ?? "—" },
    { term: "Grace", text: millis(number(s.grace)) },
    { term: "Overlap", text: OVERLAP[text(s.overlap) ?? ""] ?? text(s.overlap) ?? "—" },
  ];
  if (text(s.not_before)) facts.push({ term: "Not before", text: utcText(s.not_before) ?? "—" });
  if (text(s.not_after)) facts.push({ term: "Not after", text: utcText(s.not_after) ?? "—" });
  return facts;
}

/// What the page says after Run now: the execution it started, or that this second's occurrence had fired before
/// (the same execution, not a second one).
export function runNowNote(reply: unknown): { exec: string | null; text: string } {
  const r = fields(reply);
  const exec = text(r.exec_id);
  if (exec === null) return { exec: null, text: "Run now answered without an execution." };
  return r.outcome === "already_fired"
    ? { exec, text: "This second's occurrence had fired already:" }
    : { exec, text: "Fired now:" };
}

/// What the operator confirms before a schedule is deleted.
export function deletePrompt(view: ScheduleView | undefined, id: string): string {
  const once = firesOncePerPc(view?.schedule?.when);
  return `Delete the schedule ${id}? Nothing more fires${once ? ", and PCs that have not run it yet never will" : ""}; runs already going go on, and its fires stay on record.`;
}

/// The file the New schedule form offers as a start.
export const SCHEDULE_PLACEHOLDER = `id: echo-every-10s
description: echo on every agent every 10 seconds
job: echo
cron: "*/10 * * * * *"
target:
  all: true`;

/// The schedule id an execution of one of its occurrences has (`<schedule>-<YYYYMMDD>t<HHMMSS>z`), or null for any
/// other execution.
export function scheduleOfExecution(exec: string): string | null {
  const match = /^([a-z0-9_-]{1,40})-\d{8}t\d{6}z$/.exec(exec);
  return match?.[1] ?? null;
}
