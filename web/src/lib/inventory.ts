// Inventory as the dashboard asks for it and shows it: the version-range check the server makes (so a typo is caught
// before a query is sent), the queries of each list, which hardware list a summary value links to, a job's facts as
// table rows, an agent's software search and volumes, the change log in words, and CSV download names. Pure, so
// every decision is unit-tested.

import { bytes } from "./format";
import type { ChangeRow, JobFactsView, SoftwareRow, StoredJob, Volume, VolumeUsage } from "./types";

// --- Version ranges: the same syntax and the same refusals as `kanade_shared::inventory::version::VersionRange` ---

/// The longest range the server takes, in characters, and the most clauses.
export const MAX_RANGE_CHARS = 256;
export const MAX_RANGE_CLAUSES = 8;

/// Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips: unlike JavaScript's `\s` it has
/// U+0085 and lacks U+FEFF, so a range the server refuses is refused here too.
const WS = "[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const LEADING = new RegExp(`^${WS}+`, "u");
const TRAILING = new RegExp(`${WS}+$`, "u");
const rustTrim = (s: string) => s.replace(LEADING, "").replace(TRAILING, "");

/// Longest spelling first, so `<=` is not read as `<` followed by a version starting with `=`.
const OPERATORS: readonly (readonly [string, string])[] = [
  ["<=", "<="],
  [">=", ">="],
  ["==", "="],
  ["!=", "!="],
  ["<", "<"],
  [">", ">"],
  ["=", "="],
];

/// A version holds printable ASCII other than the operators' characters and the clause separator.
function isVersionChar(c: string): boolean {
  const code = c.codePointAt(0) ?? 0;
  return code >= 0x21 && code <= 0x7e && !",<>=!".includes(c);
}

/// Rust's `escape_debug`, for the few characters a range can hold that would not read as themselves.
function escapeDebug(s: string): string {
  let out = "";
  for (const c of s) {
    const code = c.codePointAt(0) ?? 0;
    if (c === "\\" || c === "'" || c === '"') out += `\\${c}`;
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (code === 0) out += "\\0";
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0xfeff) out += `\\u{${code.toString(16)}}`;
    else out += c;
  }
  return out;
}

export type RangeCheck = { ok: true; range: string } | { ok: false; error: string };

/// Checks a version range as `GET /api/inventory/software?version=` does: comma-separated clauses, each an operator
/// (`<`, `<=`, `>`, `>=`, `=`, `==`, `!=`) and a version, or a bare version (`=`). The range comes back in the
/// server's canonical spelling (`>=1.4.2,<1.5`); an error says what is wrong in the server's words.
export function checkRange(raw: string): RangeCheck {
  const chars = [...raw].length;
  if (chars > MAX_RANGE_CHARS) {
    return { ok: false, error: `version range is ${chars} characters long, more than ${MAX_RANGE_CHARS}` };
  }
  const range = rustTrim(raw);
  if (range === "") return { ok: false, error: "version range is empty" };
  const parts = range.split(",");
  if (parts.length > MAX_RANGE_CLAUSES) {
    return {
      ok: false,
      error: `version range \`${escapeDebug(range)}\` has ${parts.length} clauses, more than ${MAX_RANGE_CLAUSES}`,
    };
  }
  const clauses: string[] = [];
  for (const part of parts) {
    const clause = rustTrim(part);
    if (clause === "") return { ok: false, error: `version range \`${escapeDebug(range)}\` has an empty clause` };
    const [spelling, canonical] = OPERATORS.find(([s]) => clause.startsWith(s)) ?? ["", "="];
    const version = rustTrim(clause.slice(spelling.length));
    if (version === "") return { ok: false, error: `clause \`${clause}\` has an operator but no version` };
    const bad = [...version].find((c) => !isVersionChar(c));
    if (bad !== undefined) {
      return {
        ok: false,
        error: `version \`${escapeDebug(version)}\` contains \`${escapeDebug(bad)}\`: a version is printable ASCII without whitespace, \`,\`, \`<\`, \`>\`, \`=\` or \`!\``,
      };
    }
    clauses.push(`${canonical}${version}`);
  }
  return { ok: true, range: clauses.join(",") };
}

/// What a range box asks the server for: nothing when it is blank, the canonical range when it checks, or why not.
export function rangeFilter(raw: string): { version?: string; error?: string } {
  if (rustTrim(raw) === "") return {};
  const checked = checkRange(raw);
  return checked.ok ? { version: checked.range } : { error: checked.error };
}

// --- Queries ---

/// The server's limits on a title search (`GET /api/inventory/titles`): longer or wordier searches are refused.
export const MAX_SEARCH_CHARS = 256;
export const MAX_SEARCH_WORDS = 8;

/// The title search as asked: words trimmed, collapsed and cut to the server's limits; equal inputs give equal
/// queries, so the query can key the cache.
export function titlesQuery(search: string): { search?: string } {
  const words = search.trim().split(/\s+/).filter(Boolean).slice(0, MAX_SEARCH_WORDS);
  let text = words.join(" ");
  if ([...text].length > MAX_SEARCH_CHARS) text = [...text].slice(0, MAX_SEARCH_CHARS).join("").trimEnd();
  return text ? { search: text } : {};
}

/// `GET /api/inventory/software`: which PCs have a title (`*` matches any run of characters), in a version range.
export interface SoftwareFilter {
  name: string;
  version?: string;
  source?: string;
  pc_id?: string;
}

/// The hardware list's filters (`GET /api/inventory/hardware`), as the URL and the API both carry them.
export interface HardwareFilter {
  os?: string;
  os_build?: string;
  manufacturer?: string;
  model?: string;
  memory_below?: string;
  memory_at_least?: string;
}

export const HARDWARE_FILTER_KEYS = ["os", "os_build", "manufacturer", "model", "memory_below", "memory_at_least"] as const;

/// The hardware filters a URL's query holds; anything else in it is left out.
export function hardwareFilterOf(params: URLSearchParams): HardwareFilter {
  const filter: HardwareFilter = {};
  for (const key of HARDWARE_FILTER_KEYS) {
    const value = params.get(key);
    if (value !== null && value !== "") filter[key] = value;
  }
  return filter;
}

/// The fields `GET /api/inventory/hardware/summary` counts, with their headings.
export const SUMMARY_FIELDS = [
  ["os", "Operating systems"],
  ["os_build", "OS builds"],
  ["manufacturer", "Manufacturers"],
  ["model", "Models"],
  ["memory", "Memory"],
] as const;

export type SummaryField = (typeof SUMMARY_FIELDS)[number][0];

/// How a summary value reads: memory (counted in bytes) as a size, an empty value as "unknown".
export function summaryValue(field: SummaryField, value: string): string {
  if (value === "") return "unknown";
  if (field === "memory") {
    const n = Number(value);
    return Number.isFinite(n) ? bytes(n) : value;
  }
  return value;
}

/// The hardware list a summary value links to: the PCs with exactly that value. Memory is counted in bytes, so its
/// value is the range `[value, value + 1)`. `null` for a value the list cannot be filtered by: an empty one (the API
/// reads an empty filter as none) or a memory size that is not a number.
export function filterForSummary(field: SummaryField, value: string): HardwareFilter | null {
  if (value === "") return null;
  switch (field) {
    case "memory": {
      if (!/^\d+$/.test(value)) return null;
      return { memory_at_least: value, memory_below: (BigInt(value) + 1n).toString() };
    }
    default:
      return { [field]: value };
  }
}

/// The filter in words, for the list's heading and a download's name: `OS build 6.1.0-21-amd64, memory 8.0 GiB`.
export function describeHardwareFilter(filter: HardwareFilter): string {
  const parts: string[] = [];
  const size = (raw: string) => (/^\d+$/.test(raw) ? bytes(Number(raw)) : raw);
  if (filter.os !== undefined) parts.push(`OS ${filter.os || "unknown"}`);
  if (filter.os_build !== undefined) parts.push(`OS build ${filter.os_build || "unknown"}`);
  if (filter.manufacturer !== undefined) parts.push(`manufacturer ${filter.manufacturer || "unknown"}`);
  if (filter.model !== undefined) parts.push(`model ${filter.model || "unknown"}`);
  const { memory_at_least: least, memory_below: below } = filter;
  if (least !== undefined && below !== undefined && /^\d+$/.test(least) && /^\d+$/.test(below) && BigInt(below) === BigInt(least) + 1n) {
    parts.push(`memory ${size(least)}`);
  } else {
    if (least !== undefined) parts.push(`memory at least ${size(least)}`);
    if (below !== undefined) parts.push(`memory below ${size(below)}`);
  }
  return parts.join(", ");
}

/// The same query as a whole CSV file: `format=csv`, without the page's cursor and size.
export function csvPath(path: string, query: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (key === "cursor" || key === "limit" || key === "format") continue;
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  params.set("format", "csv");
  return `${path}?${params.toString()}`;
}

/// A download's file name: the list, what it was filtered by, and the day, with nothing a file system refuses:
/// `software-libc6-lt2.37-2026-05-01.csv`.
export function csvName(list: string, filter: readonly (string | undefined)[] = [], now: Date = new Date()): string {
  const slug = (s: string) =>
    s
      .toLowerCase()
      .replace(/<=/g, "le")
      .replace(/>=/g, "ge")
      .replace(/!=/g, "ne")
      .replace(/</g, "lt")
      .replace(/>/g, "gt")
      .replace(/=/g, "eq")
      .replace(/\*/g, "any")
      .replace(/[^a-z0-9._]+/g, "_")
      .replace(/^[._]+|[._]+$/g, "");
  const parts = [slug(list) || "list", ...filter.filter((f): f is string => !!f).map(slug).filter(Boolean)];
  const pad = (n: number) => String(n).padStart(2, "0");
  const day = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
  return `${parts.join("-").slice(0, 100)}-${day}.csv`;
}

// --- Handing a query's PCs to the Run dialog ---

/// As many PCs as one run names (`POST /api/exec` refuses more: target a group).
export const MAX_HANDOFF_PCS = 10_000;

/// The distinct PCs of a list's rows, in order, at most [`MAX_HANDOFF_PCS`]; `more` counts those left out.
export function distinctPcs(rows: readonly { pc_id: string }[]): { pcs: string[]; more: number } {
  const seen = new Set<string>();
  for (const row of rows) seen.add(row.pc_id);
  const all = [...seen];
  return { pcs: all.slice(0, MAX_HANDOFF_PCS), more: Math.max(0, all.length - MAX_HANDOFF_PCS) };
}

// --- A job's facts ---

/// The jobs whose manifest has an `inventory:` block (their output is kept as facts), by id.
export function factJobs(jobs: readonly StoredJob[]): StoredJob[] {
  return jobs.filter((j) => j.job.inventory).sort((a, b) => a.job.id.localeCompare(b.job.id));
}

export interface FactColumn {
  field: string;
  label: string;
}

/// One line of the facts table: a PC's fact row (a PC whose script printed an array has several, `first` marks the
/// one that names it), its cells in column order (`null` where the row lacks the field), and the PC's error.
export interface FactLine {
  key: string;
  pc_id: string;
  result_id: string;
  at: string;
  error: string | null;
  first: boolean;
  cells: (string | null)[];
}

/// The facts table's columns and lines: the job's `display` fields with their labels (a field's own name when it has
/// none); a job that displays nothing shows every field its rows hold, by name. A PC without rows (its only run's
/// output could not be read) still gets a line, for its error.
export function factTable(view: Pick<JobFactsView, "display" | "items">): { columns: FactColumn[]; lines: FactLine[] } {
  let columns: FactColumn[] = view.display.map((f) => ({ field: f.field, label: f.label || f.field }));
  if (columns.length === 0) {
    const fields = new Set<string>();
    for (const item of view.items) for (const row of item.rows) for (const field of Object.keys(row)) fields.add(field);
    columns = [...fields].sort().map((field) => ({ field, label: field }));
  }
  const lines: FactLine[] = [];
  for (const item of view.items) {
    const rows = item.rows.length > 0 ? item.rows : [{}];
    rows.forEach((row, index) => {
      lines.push({
        key: `${item.pc_id}:${index}`,
        pc_id: item.pc_id,
        result_id: item.result_id,
        at: item.at,
        error: item.error ?? null,
        first: index === 0,
        cells: columns.map((c) => (Object.hasOwn(row, c.field) ? (row[c.field] ?? null) : null)),
      });
    });
  }
  return { columns, lines };
}

/// What a facts line warns of: its PC's last successful run printed no facts (the line then holds the run before's,
/// if any); `null` when nothing is wrong.
export function factWarning(line: Pick<FactLine, "error" | "cells">): string | null {
  if (!line.error) return null;
  return line.cells.some((c) => c !== null)
    ? `The last run gave no facts (${line.error}); these are from the run before.`
    : `The run gave no facts: ${line.error}`;
}

// --- One agent's inventory ---

/// The agent's software whose name, version, publisher, source or id holds every word typed (case-insensitively),
/// by name and then version.
export function searchSoftware(rows: readonly SoftwareRow[], search: string): SoftwareRow[] {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const matching = rows.filter((row) => {
    if (words.length === 0) return true;
    const text = `${row.name}\n${row.version}\n${row.publisher}\n${row.source}\n${row.id}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
  return matching.sort(
    (a, b) => a.name.localeCompare(b.name, undefined, { sensitivity: "base" }) || a.version.localeCompare(b.version) || a.source.localeCompare(b.source),
  );
}

/// A volume as mounted, with its free space from the status report where it has one.
export interface VolumeLine {
  mount: string;
  file_system: string;
  label: string;
  size_bytes: number;
  free_bytes: number | null;
  /// Used, in whole percent; `null` without a size or free space.
  used_pct: number | null;
}

/// The hardware report's volumes joined with the status report's free space, by mount point; a mount only the status
/// report knows is listed too.
export function volumeLines(volumes: readonly Volume[], usage: readonly VolumeUsage[]): VolumeLine[] {
  const free = new Map(usage.map((u) => [u.mount, u]));
  const lines: VolumeLine[] = volumes.map((v) => {
    const u = free.get(v.mount);
    free.delete(v.mount);
    const size = v.size_bytes || u?.size_bytes || 0;
    return { mount: v.mount, file_system: v.file_system, label: v.label, size_bytes: size, free_bytes: u ? u.free_bytes : null, used_pct: usedPct(size, u?.free_bytes) };
  });
  for (const u of free.values()) {
    lines.push({ mount: u.mount, file_system: "", label: "", size_bytes: u.size_bytes, free_bytes: u.free_bytes, used_pct: usedPct(u.size_bytes, u.free_bytes) });
  }
  return lines;
}

function usedPct(size: number, free: number | undefined): number | null {
  if (!size || free === undefined || free > size) return null;
  return Math.round(((size - free) / size) * 100);
}

// --- The change log ---

const CHANGE_WORDS: Record<string, string> = {
  installed: "Installed",
  removed: "Removed",
  version_changed: "Version changed",
  changed: "Changed",
  first_report: "First report",
};

/// A change kind in words; one a newer backend adds reads as its own name.
export function changeWords(change: string): string {
  const known = CHANGE_WORDS[change];
  if (known) return known;
  const spaced = change.replace(/_+/g, " ").trim();
  return spaced ? spaced.charAt(0).toUpperCase() + spaced.slice(1) : "Changed";
}

/// What changed, in one line: `1.0 → 1.1`, the version installed or removed; a hardware field counted in bytes
/// reads as a size.
export function changeDetail(row: Pick<ChangeRow, "kind" | "name" | "old" | "new">): string {
  const sized = row.kind === "hardware" && /bytes$/.test(row.name);
  const show = (v: string | null | undefined) => {
    if (v === null || v === undefined) return null;
    if (sized && /^\d+$/.test(v)) return bytes(Number(v));
    return v === "" ? "(empty)" : v;
  };
  const [old, now] = [show(row.old), show(row.new)];
  if (old !== null && now !== null) return `${old} → ${now}`;
  // One side alone: the version installed or removed, or a first report's summary (none for hardware).
  const alone = now ?? old;
  return alone === null || alone === "(empty)" ? "" : alone;
}
