// An agent's performance as the Performance tab shows it: the live stream's events read leniently into plain
// points, the last two minutes kept in order, the series the charts draw (live, and a history's averages and
// maxima), the top-processes table's order, and every figure in words. Pure, so each rule is unit-tested; the tab
// only renders what these return.

import { bytes } from "./format";
import type { SseEvent } from "./sse";
import type { PerfHistory, PerfPoint, PerfStat, ProcSummary } from "./types";

// --- The live stream's events, as `kanade_shared::perf` and `kanade_shared::api` send them ---
// (`PerfLiveState`, `PerfHistoryEvent`, `HostSample`, `ProcSample`; to become `Schemas[...]` names in `types.ts`
// once the OpenAPI document carries all four.) Only the fields read here are named.

type PerfLiveState = { state: string; interval_ms?: number; message?: string };
type PerfHistoryEvent = { samples?: HostSample[]; processes?: ProcSample | null };
type DiskRate = { name: string; read_bytes_per_sec: number; write_bytes_per_sec: number };
type NetRate = { name: string; rx_bytes_per_sec: number; tx_bytes_per_sec: number };
type HostSample = {
  at: string;
  span_ms: number;
  cpu_percent: number;
  cores?: number[];
  mem_total_bytes: number;
  mem_used_bytes: number;
  disks?: DiskRate[];
  nets?: NetRate[];
  processes: number;
};
/// What a process's read/write figures count: `all_io` (Windows) is files, network and devices, not only disk.
export type IoScope = "disk" | "all_io" | "none" | "unknown";
type ProcRow = {
  pid: number;
  name: string;
  user?: string;
  cpu_percent: number;
  rss_bytes: number;
  read_bytes_per_sec?: number | null;
  write_bytes_per_sec?: number | null;
};
type ProcSample = { at: string; span_ms: number; io: IoScope; total: number; processes: ProcRow[] };

// --- Limits: what one event can cost the page, whatever a broken or hostile agent sends ---

/// How much live history the tab keeps and draws: what the agent keeps and sends with the stream's start.
export const LIVE_WINDOW_MS = 120_000;
/// Samples kept at most (two minutes at the agent's shortest interval, 250 ms, is 480).
export const MAX_SAMPLES = 600;
/// Cores, disks and interfaces read from one sample, as the server bounds them.
export const MAX_CORES = 1024;
export const MAX_DEVICES = 64;
/// Processes read from one process sample (the server sends the top N by CPU and by memory, N at most 100).
export const MAX_PROCESSES = 200;
/// History points read from one answer (the server gives at most 5,000).
export const MAX_POINTS = 5000;
/// Processes read from each of a history point's top lists (the server keeps five).
export const MAX_POINT_PROCESSES = 20;
/// Per-core lines drawn at most: past this a chart of cores is a blur.
export const MAX_CORE_LINES = 64;
/// The largest figure kept: 2^53, past which numbers stop being whole; nothing real comes near it.
const MAX_FIGURE = Number.MAX_SAFE_INTEGER;
/// Longest process, user, disk or interface name kept, in characters.
const MAX_NAME_CHARS = 128;

// --- What the charts and tables work with ---

/// One host sample as the charts use it: its time in ms since the epoch, and every figure finite and in range.
export interface HostPoint {
  t: number;
  spanMs: number;
  cpu: number;
  cores: number[];
  memUsed: number;
  memTotal: number;
  /// All disks together, and all interfaces together, bytes per second.
  diskRead: number;
  diskWrite: number;
  netRx: number;
  netTx: number;
  processes: number;
}

export interface ProcessRow {
  pid: number;
  name: string;
  user: string;
  /// Share of the whole machine, 0-100.
  cpu: number;
  rss: number;
  /// Bytes per second, or null where the platform gives none.
  read: number | null;
  write: number | null;
}

export interface ProcessSample {
  t: number;
  io: IoScope;
  /// Processes running on the host (the table shows only the busiest).
  total: number;
  rows: ProcessRow[];
}

export interface Stat {
  avg: number;
  max: number;
}

/// One point of a history: the rollups of one step merged.
export interface HistoryPoint {
  t: number;
  rollups: number;
  cpu: Stat;
  memUsed: Stat;
  memTotal: number;
  diskRead: Stat;
  diskWrite: Stat;
  netRx: Stat;
  netTx: Stat;
  topCpu: ProcessRow[];
  topMemory: ProcessRow[];
}

export interface History {
  since: number;
  until: number;
  stepSecs: number;
  points: HistoryPoint[];
}

// --- Reading what arrives: never trusted, never NaN ---

/// An API type's fields, each of which may hold anything: what arrived is read by the API's field names (so a renamed
/// field fails the type check), and every value is checked before it is used.
type Loosely<T> = { [K in keyof T]?: unknown };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/// `value` as `T`'s fields, or no fields when it is not an object.
const fields = <T>(value: unknown): Loosely<T> => (isObject(value) ? (value as Loosely<T>) : {});

/// A finite, non-negative number up to 2^53; anything else is 0.
export function figure(value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return 0;
  return Math.min(value, MAX_FIGURE);
}

/// A percentage within 0-100; anything that is not a number is 0.
export function share(value: unknown): number {
  return Math.min(100, figure(value));
}

/// A figure that may be absent: null stays null (the platform gives none), anything else is read as a figure.
function optionalFigure(value: unknown): number | null {
  return value === null || value === undefined ? null : figure(value);
}

/// Text cut to a name's length, without control characters.
function text(value: unknown): string {
  if (typeof value !== "string") return "";
  return [...value.replace(/[\u0000-\u001f\u007f-\u009f]/g, "")].slice(0, MAX_NAME_CHARS).join("");
}

/// An RFC 3339 time as ms since the epoch, or null when it is not one.
function time(value: unknown): number | null {
  if (typeof value !== "string") return null;
  const t = Date.parse(value);
  return Number.isFinite(t) ? t : null;
}

const list = (value: unknown, max: number): unknown[] => (Array.isArray(value) ? value.slice(0, max) : []);

function sum<T>(items: unknown[], field: keyof T): number {
  let total = 0;
  for (const item of items) total += figure(fields<T>(item)[field]);
  return Math.min(total, MAX_FIGURE);
}

/// A `HostSample` (an event's data, parsed) as a chart point; null when it has no time to be drawn at.
export function hostPoint(value: unknown): HostPoint | null {
  if (!isObject(value)) return null;
  const raw = fields<HostSample>(value);
  const t = time(raw.at);
  if (t === null) return null;
  const disks = list(raw.disks, MAX_DEVICES);
  const nets = list(raw.nets, MAX_DEVICES);
  const memTotal = figure(raw.mem_total_bytes);
  return {
    t,
    spanMs: figure(raw.span_ms),
    cpu: share(raw.cpu_percent),
    cores: list(raw.cores, MAX_CORES).map(share),
    // More in use than there is cannot be: a chart of "used of total" stays within its total.
    memUsed: memTotal > 0 ? Math.min(figure(raw.mem_used_bytes), memTotal) : figure(raw.mem_used_bytes),
    memTotal,
    diskRead: sum<DiskRate>(disks, "read_bytes_per_sec"),
    diskWrite: sum<DiskRate>(disks, "write_bytes_per_sec"),
    netRx: sum<NetRate>(nets, "rx_bytes_per_sec"),
    netTx: sum<NetRate>(nets, "tx_bytes_per_sec"),
    processes: figure(raw.processes),
  };
}

const IO_SCOPES: readonly IoScope[] = ["disk", "all_io", "none"];

/// A live sample's process (`ProcRow`) or a history point's (`ProcSummary`, which has no read or write).
function processRow(value: unknown): ProcessRow | null {
  if (!isObject(value)) return null;
  const raw = fields<ProcRow & ProcSummary>(value);
  return {
    pid: Math.floor(figure(raw.pid)),
    name: text(raw.name),
    user: text(raw.user),
    cpu: share(raw.cpu_percent),
    rss: figure(raw.rss_bytes),
    read: optionalFigure(raw.read_bytes_per_sec),
    write: optionalFigure(raw.write_bytes_per_sec),
  };
}

function processRows(value: unknown, max: number): ProcessRow[] {
  return list(value, max)
    .map(processRow)
    .filter((row): row is ProcessRow => row !== null);
}

/// A `ProcSample` as the table's rows; null when it is not an object with a time.
export function processSample(value: unknown): ProcessSample | null {
  if (!isObject(value)) return null;
  const raw = fields<ProcSample>(value);
  const t = time(raw.at);
  if (t === null) return null;
  const io = IO_SCOPES.find((scope) => scope === raw.io) ?? (raw.io === undefined ? "disk" : "unknown");
  return { t, io, total: figure(raw.total), rows: processRows(raw.processes, MAX_PROCESSES) };
}

function stat(raw: unknown, cap = MAX_FIGURE): Stat {
  const value = fields<PerfStat>(raw);
  const avg = Math.min(cap, figure(value.avg));
  // An average above its maximum is a broken rollup: the maximum is at least the average.
  return { avg, max: Math.max(avg, Math.min(cap, figure(value.max))) };
}

/// A `PerfHistory` as points in time order; points without a time are left out.
export function history(raw: unknown): History {
  const value = fields<PerfHistory>(raw);
  const points: HistoryPoint[] = [];
  for (const entry of list(value.points, MAX_POINTS)) {
    const item = fields<PerfPoint>(entry);
    const t = time(item.at);
    if (t === null) continue;
    points.push({
      t,
      rollups: Math.floor(figure(item.rollups)),
      cpu: stat(item.cpu_percent, 100),
      memUsed: stat(item.mem_used_bytes),
      memTotal: figure(item.mem_total_bytes),
      diskRead: stat(item.disk_read_bytes_per_sec),
      diskWrite: stat(item.disk_write_bytes_per_sec),
      netRx: stat(item.net_rx_bytes_per_sec),
      netTx: stat(item.net_tx_bytes_per_sec),
      topCpu: processRows(item.top_cpu, MAX_POINT_PROCESSES),
      topMemory: processRows(item.top_memory, MAX_POINT_PROCESSES),
    });
  }
  points.sort((a, b) => a.t - b.t);
  const first = points[0]?.t ?? 0;
  const last = points[points.length - 1]?.t ?? 0;
  return {
    since: time(value.since) ?? first,
    until: time(value.until) ?? last,
    stepSecs: figure(value.step_secs),
    points,
  };
}

// --- The last two minutes ---

/// `samples` (in time order) with `incoming` merged in: in time order, one sample per time (the later arrival
/// wins), none older than `windowMs` before the newest, at most `max`.
export function mergeSamples(
  samples: readonly HostPoint[],
  incoming: readonly HostPoint[],
  windowMs = LIVE_WINDOW_MS,
  max = MAX_SAMPLES,
): HostPoint[] {
  const byTime = new Map<number, HostPoint>();
  for (const s of samples) byTime.set(s.t, s);
  for (const s of incoming) byTime.set(s.t, s);
  const merged = [...byTime.values()].sort((a, b) => a.t - b.t);
  const newest = merged[merged.length - 1]?.t ?? 0;
  const kept = merged.filter((s) => s.t >= newest - windowMs);
  return kept.length > max ? kept.slice(kept.length - max) : kept;
}

/// One live sample added. One that arrives late but within the window takes its place in time; one older than the
/// whole window means the agent's clock went back (or the stream restarted on another clock), and the chart starts
/// over from it rather than freezing until the clock catches up.
export function appendSample(samples: readonly HostPoint[], sample: HostPoint, windowMs = LIVE_WINDOW_MS): HostPoint[] {
  const newest = samples[samples.length - 1]?.t;
  if (newest !== undefined && sample.t < newest - windowMs) return [sample];
  if (newest === undefined || sample.t > newest) {
    // The usual case, a sample after the last: no sort needed.
    const start = samples.findIndex((s) => s.t >= sample.t - windowMs);
    const kept = start === -1 ? [] : samples.slice(start);
    kept.push(sample);
    return kept.length > MAX_SAMPLES ? kept.slice(kept.length - MAX_SAMPLES) : kept;
  }
  return mergeSamples(samples, [sample], windowMs);
}

// --- The live stream, event by event ---

export type ServerState = "waiting" | "live" | "unreachable";
const SERVER_STATES: readonly ServerState[] = ["waiting", "live", "unreachable"];

/// Everything the live view shows, folded from the stream's events and its connection's changes.
export interface LiveView {
  /// The event stream's own connection: opening, open, or dropped and being retried.
  connection: "connecting" | "open" | "retrying";
  /// What the server says of the agent; null until it says.
  state: ServerState | null;
  /// The server's words about the state, or why the connection dropped.
  message: string;
  intervalMs: number;
  samples: HostPoint[];
  processes: ProcessSample | null;
}

export const EMPTY_LIVE: LiveView = {
  connection: "connecting",
  state: null,
  message: "",
  intervalMs: 0,
  samples: [],
  processes: null,
};

function parse(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/// A process sample replaces the one shown unless it is older (a late arrival, or the history's after a live one).
function newerProcesses(current: ProcessSample | null, next: ProcessSample | null): ProcessSample | null {
  if (!next) return current;
  return current && current.t > next.t ? current : next;
}

/// The view after one event of `/api/agents/{pc}/perf/live`; malformed and unknown events change nothing.
export function liveEvent(view: LiveView, event: SseEvent): LiveView {
  const data = parse(event.data);
  switch (event.event) {
    case "state": {
      if (!isObject(data)) return view;
      const given = fields<PerfLiveState>(data);
      const state = SERVER_STATES.find((s) => s === given.state);
      if (!state) return view;
      const interval = figure(given.interval_ms);
      return { ...view, state, message: text(given.message), intervalMs: interval > 0 ? interval : view.intervalMs };
    }
    case "history": {
      if (!isObject(data)) return view;
      const kept = fields<PerfHistoryEvent>(data);
      const points = list(kept.samples, MAX_SAMPLES)
        .map(hostPoint)
        .filter((p): p is HostPoint => p !== null);
      return {
        ...view,
        samples: mergeSamples(view.samples, points),
        processes: newerProcesses(view.processes, processSample(kept.processes)),
      };
    }
    case "host": {
      const point = hostPoint(data);
      return point ? { ...view, samples: appendSample(view.samples, point) } : view;
    }
    case "proc": {
      const sample = processSample(data);
      return sample ? { ...view, processes: newerProcesses(view.processes, sample) } : view;
    }
    default:
      return view;
  }
}

/// The view after the event stream's connection changed: `follow`'s states, and `closed` when the page closed it.
export function liveConnection(view: LiveView, state: string, detail?: string): LiveView {
  // (Re)opened: the server says the agent's state again first thing; until it does, the view is waiting.
  if (state === "live") return { ...view, connection: "open", state: null, message: "" };
  if (state === "retrying") return { ...view, connection: "retrying", message: detail ?? "" };
  // Connecting again after the stream was open: the server ended it (a restart, a proxy's timeout), and that is a
  // drop too. After a failure it stays "retrying", with the failure's words, until the stream opens.
  if (state === "connecting" && view.connection === "open") return { ...view, connection: "retrying", message: "the stream ended" };
  // The page closed the stream itself (its browser tab hidden): opening it again is a fresh start, not a drop.
  if (state === "closed") return { ...view, connection: "connecting", state: null, message: "" };
  return view;
}

export type LiveAction = { type: "event"; event: SseEvent } | { type: "connection"; state: string; detail?: string };

/// The live view's reducer: events and connection changes, in the order they happened.
export function liveReducer(view: LiveView, action: LiveAction): LiveView {
  return action.type === "event" ? liveEvent(view, action.event) : liveConnection(view, action.state, action.detail);
}

/// The indicator: one word (never only a colour) and a sentence.
export function liveStatus(view: LiveView): { word: "live" | "waiting" | "unreachable" | "connecting" | "reconnecting"; text: string } {
  if (view.connection === "retrying") {
    return { word: "reconnecting", text: `The stream dropped; reconnecting${view.message ? ` (${view.message})` : ""}…` };
  }
  if (view.connection === "connecting") return { word: "connecting", text: "Connecting to the stream…" };
  const every = view.intervalMs > 0 ? `, a sample every ${seconds(view.intervalMs)}` : "";
  switch (view.state) {
    case "live":
      return { word: "live", text: `Live${every}.` };
    case "unreachable":
      return {
        word: "unreachable",
        text: `The agent does not answer${view.message ? ` (${view.message})` : ""}; still asking.`,
      };
    default:
      return { word: "waiting", text: `Asking the agent to stream${view.message ? ` (${view.message})` : ""}…` };
  }
}

const seconds = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(2).replace(/0+$/, "")} s`);

// --- Series for the charts (uPlot's columns: x in seconds, then one array per line; null breaks a line) ---

export type Column = (number | null)[];

export interface LiveSeries {
  /// Seconds since the epoch.
  x: number[];
  cpu: Column;
  /// One column per core, up to [`MAX_CORE_LINES`].
  cores: Column[];
  memUsed: Column;
  memTotal: Column;
  diskRead: Column;
  diskWrite: Column;
  netRx: Column;
  netTx: Column;
}

/// The gap past which two samples are not joined by a line: the agent was unreachable between them.
export function gapMs(intervalMs: number): number {
  return Math.max(3 * (intervalMs > 0 ? intervalMs : 1000), 2500);
}

/// The live charts' columns, with a break where samples are missing.
export function liveSeries(samples: readonly HostPoint[], intervalMs = 0): LiveSeries {
  const coreCount = Math.min(MAX_CORE_LINES, samples.reduce((n, s) => Math.max(n, s.cores.length), 0));
  const series: LiveSeries = {
    x: [],
    cpu: [],
    cores: Array.from({ length: coreCount }, () => []),
    memUsed: [],
    memTotal: [],
    diskRead: [],
    diskWrite: [],
    netRx: [],
    netTx: [],
  };
  const columns = [series.cpu, ...series.cores, series.memUsed, series.memTotal, series.diskRead, series.diskWrite, series.netRx, series.netTx];
  const gap = gapMs(intervalMs);
  let previous: number | null = null;
  for (const s of samples) {
    if (previous !== null && s.t - previous > gap) {
      // A point between the two with every line empty: uPlot draws no line across it.
      series.x.push((previous + s.t) / 2000);
      for (const column of columns) column.push(null);
    }
    previous = s.t;
    series.x.push(s.t / 1000);
    series.cpu.push(s.cpu);
    series.cores.forEach((column, i) => column.push(s.cores[i] ?? null));
    series.memUsed.push(s.memUsed);
    series.memTotal.push(s.memTotal);
    series.diskRead.push(s.diskRead);
    series.diskWrite.push(s.diskWrite);
    series.netRx.push(s.netRx);
    series.netTx.push(s.netTx);
  }
  return series;
}

export interface HistorySeries {
  x: number[];
  /// Which point each x is (null for a break), so a click on the chart finds its point.
  point: (number | null)[];
  cpuAvg: Column;
  cpuMax: Column;
  memAvg: Column;
  memMax: Column;
  memTotal: Column;
  diskReadAvg: Column;
  diskReadMax: Column;
  diskWriteAvg: Column;
  diskWriteMax: Column;
  netRxAvg: Column;
  netRxMax: Column;
  netTxAvg: Column;
  netTxMax: Column;
}

/// A history's columns: averages and maxima, with a break where steps hold no rollup.
export function historySeries(h: History): HistorySeries {
  const series: HistorySeries = {
    x: [],
    point: [],
    cpuAvg: [],
    cpuMax: [],
    memAvg: [],
    memMax: [],
    memTotal: [],
    diskReadAvg: [],
    diskReadMax: [],
    diskWriteAvg: [],
    diskWriteMax: [],
    netRxAvg: [],
    netRxMax: [],
    netTxAvg: [],
    netTxMax: [],
  };
  const { x, point, ...columns } = series;
  const all = Object.values(columns);
  // A step with no rollup is not in the answer; more than one step and a half between points is such a gap.
  const gap = h.stepSecs > 0 ? h.stepSecs * 1500 : Infinity;
  let previous: number | null = null;
  h.points.forEach((p, i) => {
    if (previous !== null && p.t - previous > gap) {
      x.push((previous + p.t) / 2000);
      point.push(null);
      for (const column of all) column.push(null);
    }
    previous = p.t;
    x.push(p.t / 1000);
    point.push(i);
    series.cpuAvg.push(p.cpu.avg);
    series.cpuMax.push(p.cpu.max);
    series.memAvg.push(p.memUsed.avg);
    series.memMax.push(p.memUsed.max);
    series.memTotal.push(p.memTotal);
    series.diskReadAvg.push(p.diskRead.avg);
    series.diskReadMax.push(p.diskRead.max);
    series.diskWriteAvg.push(p.diskWrite.avg);
    series.diskWriteMax.push(p.diskWrite.max);
    series.netRxAvg.push(p.netRx.avg);
    series.netRxMax.push(p.netRx.max);
    series.netTxAvg.push(p.netTx.avg);
    series.netTxMax.push(p.netTx.max);
  });
  return series;
}

/// The point nearest to `tSeconds` (a click on a history chart), or null without points.
export function nearestPoint(points: readonly HistoryPoint[], tSeconds: number): number | null {
  if (points.length === 0 || !Number.isFinite(tSeconds)) return null;
  const t = tSeconds * 1000;
  let best = 0;
  for (let i = 1; i < points.length; i++) {
    if (Math.abs((points[i] as HistoryPoint).t - t) < Math.abs((points[best] as HistoryPoint).t - t)) best = i;
  }
  return best;
}

/// The point whose CPU peaked highest (the first of equals): what the tab shows first, "what was busy".
export function busiestPoint(points: readonly HistoryPoint[]): number | null {
  let best: number | null = null;
  points.forEach((p, i) => {
    if (best === null || p.cpu.max > (points[best] as HistoryPoint).cpu.max) best = i;
  });
  return best;
}

// --- The processes table ---

export type ProcessSortKey = "cpu" | "memory" | "pid" | "name" | "user" | "read" | "write";
export type SortDirection = "ascending" | "descending";

/// The direction a column sorts in when first chosen: figures busiest first, names A to Z.
export function firstDirection(key: ProcessSortKey): SortDirection {
  return key === "pid" || key === "name" || key === "user" ? "ascending" : "descending";
}

/// The order after a column header is chosen: the same column again turns the order round.
export function nextSort(
  current: { key: ProcessSortKey; direction: SortDirection },
  key: ProcessSortKey,
): { key: ProcessSortKey; direction: SortDirection } {
  if (current.key !== key) return { key, direction: firstDirection(key) };
  return { key, direction: current.direction === "ascending" ? "descending" : "ascending" };
}

const collator = new Intl.Collator("en", { sensitivity: "base", numeric: true });

/// The rows in the chosen order; rows without the figure (no read/write on this platform) last either way, and
/// equal rows by pid, so the order is stable from one sample to the next.
export function sortProcesses(rows: readonly ProcessRow[], key: ProcessSortKey, direction: SortDirection): ProcessRow[] {
  const sign = direction === "ascending" ? 1 : -1;
  const value = (row: ProcessRow): number | string | null => {
    switch (key) {
      case "cpu":
        return row.cpu;
      case "memory":
        return row.rss;
      case "pid":
        return row.pid;
      case "name":
        return row.name;
      case "user":
        return row.user || null;
      case "read":
        return row.read;
      case "write":
        return row.write;
    }
  };
  return [...rows].sort((a, b) => {
    const va = value(a);
    const vb = value(b);
    if (va === null || vb === null) {
      if (va !== vb) return va === null ? 1 : -1;
    } else {
      const c = typeof va === "string" ? collator.compare(va, vb as string) : va - (vb as number);
      if (c !== 0) return sign * c;
    }
    return a.pid - b.pid;
  });
}

/// What the read/write columns count, when it needs saying.
export function ioNote(io: IoScope): string | null {
  switch (io) {
    case "all_io":
      return "Read and write per second count all of a process's I/O (files, network and devices), not only disk: that is what Windows measures per process.";
    case "none":
      return "This platform gives no per-process read and write figures.";
    case "unknown":
      return "The agent measures per-process read and write in a way this dashboard does not know; read the figures with care.";
    default:
      return null;
  }
}

// --- Figures in words ---

/// A rate in decimal units: "512 B/s", "12.3 kB/s", "12.3 MB/s"; "—" for what is not a figure.
export function rate(bytesPerSec: number | null | undefined): string {
  if (bytesPerSec === null || bytesPerSec === undefined || !Number.isFinite(bytesPerSec) || bytesPerSec < 0) return "—";
  if (bytesPerSec < 1000) return `${Math.round(bytesPerSec)} B/s`;
  const units = ["kB/s", "MB/s", "GB/s", "TB/s", "PB/s", "EB/s"];
  let value = bytesPerSec / 1000;
  let unit = 0;
  while (value >= 999.95 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  // Past the largest unit the figure is nonsense anyway: it is said as more than the largest one.
  if (value >= 1000) return `> 999 ${units[units.length - 1]}`;
  return `${value.toFixed(1)} ${units[unit]}`;
}

/// A percentage: "43.2%"; "—" for none.
export function percent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${Math.min(100, Math.max(0, value)).toFixed(1)}%`;
}

/// Memory in use and of how much: "3.1 GiB of 7.8 GiB (40.0%)".
export function memory(used: number, total: number): string {
  if (total <= 0) return bytes(used);
  return `${bytes(used)} of ${bytes(total)} (${percent((used / total) * 100)})`;
}

/// A local time of day, "03:12:09" (with seconds) or "03:12".
export function clock(t: number, withSeconds = true): string {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withSeconds ? `${hm}:${pad(d.getSeconds())}` : hm;
}

/// A time axis's tick at `t` seconds when ticks are `incrSecs` apart: "03:12:09" under a minute apart, "03:12" under
/// a day apart, "12-06" for days.
export function timeTick(t: number, incrSecs: number): string {
  const ms = t * 1000;
  if (incrSecs < 60) return clock(ms);
  if (incrSecs < 86_400) return clock(ms, false);
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "—";
  return `${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/// A local date and time, "2026-12-06 03:12", for history points that may be days apart.
export function when(t: number): string {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return "—";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(t, false)}`;
}

/// The lowest and highest of a column, leaving out breaks; null when it has no figure.
export function extent(column: Column): { min: number; max: number } | null {
  let min = Infinity;
  let max = -Infinity;
  for (const v of column) {
    if (v === null) continue;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return min === Infinity ? null : { min, max };
}

export type Figure = "percent" | "bytes" | "rate";

/// One figure in words, as its kind reads.
export function say(kind: Figure, value: number): string {
  return kind === "percent" ? percent(value) : kind === "bytes" ? bytes(value) : rate(value);
}

/// What a chart shows, said in full for its `aria-label`: its title, its span, and each line's latest, lowest and
/// highest figure.
export function chartLabel(
  title: string,
  span: string,
  kind: Figure,
  lines: readonly { label: string; column: Column; latest?: number | null }[],
): string {
  const parts = lines.map((line) => {
    const range = extent(line.column);
    if (!range) return `${line.label}: no data`;
    const latest = line.latest ?? null;
    const now = latest === null ? "" : `now ${say(kind, latest)}, `;
    return `${line.label}: ${now}lowest ${say(kind, range.min)}, highest ${say(kind, range.max)}`;
  });
  return `${title}, ${span}. ${parts.join("; ")}.`;
}

/// A column's last figure, or null (the last entry of a series is never a break).
export function last(column: Column): number | null {
  return column.length === 0 ? null : (column[column.length - 1] ?? null);
}

// --- The range picker ---

export const PERF_RANGES = [
  ["live", "Live"],
  ["1h", "1 h"],
  ["24h", "24 h"],
  ["7d", "7 d"],
] as const;
export type PerfRange = (typeof PERF_RANGES)[number][0];

/// The range a URL's `range=` names; Live for anything else.
export function rangeOf(raw: string | null | undefined): PerfRange {
  return PERF_RANGES.find(([id]) => id === raw)?.[0] ?? "live";
}

/// How a range is said in a chart's label.
export function rangeWords(range: PerfRange): string {
  return { live: "the last 2 minutes", "1h": "the last hour", "24h": "the last 24 hours", "7d": "the last 7 days" }[range];
}

/// The live stream of one agent.
export function livePath(pc: string): string {
  return `/api/agents/${encodeURIComponent(pc)}/perf/live`;
}
