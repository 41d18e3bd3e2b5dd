import { describe, expect, it } from "vitest";

import {
  appendSample,
  busiestPoint,
  chartLabel,
  clock,
  EMPTY_LIVE,
  extent,
  figure,
  gapMs,
  history,
  historySeries,
  hostPoint,
  type HostPoint,
  ioNote,
  LIVE_WINDOW_MS,
  liveConnection,
  liveEvent,
  livePath,
  liveSeries,
  liveStatus,
  type LiveView,
  MAX_PROCESSES,
  MAX_SAMPLES,
  memory,
  mergeSamples,
  nearestPoint,
  nextSort,
  percent,
  processSample,
  type ProcessRow,
  rangeOf,
  rate,
  share,
  sortProcesses,
  timeTick,
} from "./perf";
import { rng } from "./seeded";

const T0 = Date.parse("2026-12-06T03:12:00Z");
const iso = (t: number) => new Date(t).toISOString();

/// A host sample as the server sends it, `ms` after T0.
function wireSample(ms: number, over: Record<string, unknown> = {}) {
  return {
    pc_id: "pc-1",
    at: iso(T0 + ms),
    span_ms: 1000,
    cpu_percent: 12.5,
    cores: [10, 15],
    mem_total_bytes: 8e9,
    mem_used_bytes: 2e9,
    mem_available_bytes: 6e9,
    swap_total_bytes: 0,
    swap_used_bytes: 0,
    disks: [
      { name: "sda", read_bytes_per_sec: 100, write_bytes_per_sec: 2000 },
      { name: "sdb", read_bytes_per_sec: 50, write_bytes_per_sec: 0, read_iops: 3 },
    ],
    nets: [{ name: "eth0", rx_bytes_per_sec: 1500, tx_bytes_per_sec: 300 }],
    processes: 321,
    uptime_secs: 5000,
    ...over,
  };
}

const point = (ms: number, cpu = 1): HostPoint => ({ ...(hostPoint(wireSample(ms, { cpu_percent: cpu })) as HostPoint) });
const event = (name: string, data: unknown) => ({ event: name, data: typeof data === "string" ? data : JSON.stringify(data) });

describe("reading samples", () => {
  it("reads a host sample into a point, adding every disk and interface", () => {
    expect(hostPoint(wireSample(0))).toEqual({
      t: T0,
      spanMs: 1000,
      cpu: 12.5,
      cores: [10, 15],
      memUsed: 2e9,
      memTotal: 8e9,
      diskRead: 150,
      diskWrite: 2000,
      netRx: 1500,
      netTx: 300,
      processes: 321,
    });
  });

  it("turns NaN, negative, huge and missing figures into figures a chart can draw", () => {
    const p = hostPoint({
      at: iso(T0),
      cpu_percent: "NaN",
      cores: [NaN, -5, 250, null, "7"],
      mem_total_bytes: 1e400,
      mem_used_bytes: -1,
      disks: [{ read_bytes_per_sec: Infinity, write_bytes_per_sec: 1e300 }, null, "sda", { write_bytes_per_sec: 1e300 }],
      nets: "eth0",
    }) as HostPoint;
    expect(p.cpu).toBe(0);
    expect(p.cores).toEqual([0, 0, 100, 0, 0]);
    expect(p.memTotal).toBe(0);
    expect(p.memUsed).toBe(0);
    expect(p.diskRead).toBe(0);
    expect(p.diskWrite).toBe(Number.MAX_SAFE_INTEGER);
    expect(p.netRx).toBe(0);
    for (const value of Object.values(p)) {
      if (typeof value === "number") expect(Number.isFinite(value)).toBe(true);
    }
  });

  it("keeps memory in use within the total", () => {
    expect(hostPoint(wireSample(0, { mem_used_bytes: 9e9 }))?.memUsed).toBe(8e9);
  });

  it("drops samples without a time, and what is not a sample", () => {
    for (const raw of [null, undefined, 5, "x", [], {}, { at: "yesterday" }, { at: 12 }]) expect(hostPoint(raw)).toBeNull();
  });

  it("cuts lists to the server's bounds", () => {
    const p = hostPoint(wireSample(0, { cores: new Array(5000).fill(50), disks: new Array(500).fill({ read_bytes_per_sec: 1 }) }));
    expect(p?.cores.length).toBe(1024);
    expect(p?.diskRead).toBe(64);
  });

  it("figure and share clamp", () => {
    expect([figure(-1), figure(NaN), figure(Infinity), figure("3"), figure(2.5)]).toEqual([0, 0, 0, 0, 2.5]);
    expect([share(101), share(-3), share(42)]).toEqual([100, 0, 42]);
  });

  it("reads a process sample, its I/O scope and rows without control characters", () => {
    const s = processSample({
      pc_id: "pc-1",
      at: iso(T0),
      io: "all_io",
      total: 412,
      processes: [
        { pid: 42, name: "burn\u0000\u001b[31m", user: "root", cpu_percent: 49.5, rss_bytes: 1024, read_bytes_per_sec: 5, write_bytes_per_sec: null },
        { pid: 7.9, name: "x".repeat(500), cpu_percent: 1000 },
        "nonsense",
      ],
    });
    expect(s?.io).toBe("all_io");
    expect(s?.total).toBe(412);
    expect(s?.rows).toEqual([
      { pid: 42, name: "burn[31m", user: "root", cpu: 49.5, rss: 1024, read: 5, write: null },
      { pid: 7, name: "x".repeat(128), user: "", cpu: 100, rss: 0, read: null, write: null },
    ]);
    expect(processSample({ at: iso(T0), io: "quantum" })?.io).toBe("unknown");
    expect(processSample({ at: iso(T0) })?.io).toBe("disk");
    expect(processSample({ io: "disk" })).toBeNull();
  });

  it("reads 10,000 processes as the server's bound of them, quickly", () => {
    const processes = Array.from({ length: 10_000 }, (_, i) => ({ pid: i + 1, name: `p${i}`, cpu_percent: (i % 100) / 3, rss_bytes: i * 4096 }));
    const started = performance.now();
    const s = processSample({ at: iso(T0), processes });
    const sorted = sortProcesses(s?.rows ?? [], "cpu", "descending");
    expect(performance.now() - started).toBeLessThan(500);
    expect(s?.rows.length).toBe(MAX_PROCESSES);
    expect(sorted[0]?.cpu).toBe(33);
  });
});

describe("the last two minutes", () => {
  it("keeps samples in time order whatever order they arrive in", () => {
    let samples: HostPoint[] = [];
    for (const ms of [0, 2000, 1000, 4000, 3000]) samples = appendSample(samples, point(ms));
    expect(samples.map((s) => s.t - T0)).toEqual([0, 1000, 2000, 3000, 4000]);
  });

  it("keeps one sample per time, the later arrival", () => {
    let samples = [point(0, 1), point(1000, 1)];
    samples = appendSample(samples, point(1000, 77));
    expect(samples.map((s) => s.cpu)).toEqual([1, 77]);
  });

  it("drops what is older than two minutes before the newest", () => {
    let samples: HostPoint[] = [];
    for (let s = 0; s <= 200; s++) samples = appendSample(samples, point(s * 1000));
    expect(samples.length).toBe(121);
    expect(samples[0]?.t).toBe(T0 + 80_000);
  });

  it("starts over when the agent's clock goes back by more than the window, instead of freezing", () => {
    let samples = [point(500_000), point(501_000)];
    samples = appendSample(samples, point(0));
    expect(samples.map((s) => s.t)).toEqual([T0]);
    samples = appendSample(samples, point(1000));
    expect(samples.length).toBe(2);
  });

  it("keeps at most MAX_SAMPLES, however fast they come", () => {
    let samples: HostPoint[] = [];
    for (let i = 0; i < 2000; i++) samples = appendSample(samples, point(i * 10));
    expect(samples.length).toBe(MAX_SAMPLES);
    expect(samples[samples.length - 1]?.t).toBe(T0 + 19_990);
  });

  it("merges a history into what is already drawn (a reconnect sends it again)", () => {
    const drawn = [point(60_000), point(61_000)];
    const merged = mergeSamples(drawn, [point(58_000), point(59_000), point(60_000, 50)]);
    expect(merged.map((s) => [s.t - T0, s.cpu])).toEqual([
      [58_000, 1],
      [59_000, 1],
      [60_000, 50],
      [61_000, 1],
    ]);
  });

  it("shuffled arrivals give the same chart as ordered ones (property)", () => {
    const random = rng(16);
    for (let round = 0; round < 50; round++) {
      const times = Array.from({ length: 40 }, (_, i) => i * 1000);
      const shuffled = [...times].sort(() => random() - 0.5);
      let samples: HostPoint[] = [];
      for (const ms of shuffled) samples = appendSample(samples, point(ms));
      // Whatever came first, what is kept is in order and within the window of the newest.
      const kept = samples.map((s) => s.t - T0);
      expect(kept).toEqual([...kept].sort((a, b) => a - b));
      expect(kept[kept.length - 1]).toBe(39_000);
    }
  });
});

describe("the live stream's events", () => {
  const fold = (events: { event: string; data: string }[], from: LiveView = EMPTY_LIVE) => events.reduce(liveEvent, from);

  it("draws the history first, then appends each host sample", () => {
    const view = fold([
      event("state", { state: "live", interval_ms: 1000 }),
      event("history", { samples: [wireSample(0), wireSample(1000)], processes: { at: iso(T0 + 1000), io: "disk", total: 3, processes: [{ pid: 1, name: "init" }] } }),
      event("host", wireSample(2000, { cpu_percent: 90 })),
    ]);
    expect(view.state).toBe("live");
    expect(view.intervalMs).toBe(1000);
    expect(view.samples.map((s) => s.cpu)).toEqual([12.5, 12.5, 90]);
    expect(view.processes?.rows[0]?.name).toBe("init");
  });

  it("shows the newest process sample, not a late older one", () => {
    const view = fold([
      event("proc", { at: iso(T0 + 5000), processes: [{ pid: 2, name: "new" }] }),
      event("history", { samples: [], processes: { at: iso(T0), processes: [{ pid: 1, name: "old" }] } }),
      event("proc", { at: iso(T0 + 1000), processes: [{ pid: 3, name: "late" }] }),
    ]);
    expect(view.processes?.rows[0]?.name).toBe("new");
  });

  it("ignores malformed and unknown events", () => {
    const before = fold([event("host", wireSample(0))]);
    for (const e of [
      event("host", "{not json"),
      event("host", "null"),
      event("state", { state: "exploded" }),
      event("state", "[]"),
      event("history", "7"),
      event("proc", { processes: [] }),
      event("message", "hello"),
    ]) {
      expect(liveEvent(before, e)).toBe(before);
    }
  });

  it("keeps the last interval when a state says none", () => {
    const view = fold([event("state", { state: "live", interval_ms: 500 }), event("state", { state: "unreachable", message: "no reply in 2 s" })]);
    expect(view.intervalMs).toBe(500);
    expect(liveStatus({ ...view, connection: "open" })).toEqual({ word: "unreachable", text: "The agent does not answer (no reply in 2 s); still asking." });
  });

  it("says how the stream stands in words", () => {
    let view = liveConnection(EMPTY_LIVE, "connecting");
    expect(liveStatus(view).word).toBe("connecting");
    view = liveConnection(view, "live");
    expect(liveStatus(view).word).toBe("waiting");
    view = liveEvent(view, event("state", { state: "live", interval_ms: 1000 }));
    expect(liveStatus(view)).toEqual({ word: "live", text: "Live, a sample every 1 s." });
    expect(liveStatus({ ...view, intervalMs: 250 }).text).toBe("Live, a sample every 0.25 s.");
    // The connection drops: reconnecting (not "connecting") until it is open again, whatever `follow` says between.
    view = liveConnection(view, "retrying", "HTTP 502");
    view = liveConnection(view, "connecting");
    expect(liveStatus(view)).toEqual({ word: "reconnecting", text: "The stream dropped; reconnecting (HTTP 502)…" });
    view = liveConnection(view, "live");
    expect(liveStatus(view).word).toBe("waiting");
    expect(view.message).toBe("");
    // The server ends the stream: `follow` connects again at once, and that is a drop too.
    view = liveConnection(liveEvent(view, event("state", { state: "live" })), "connecting");
    expect(liveStatus(view)).toEqual({ word: "reconnecting", text: "The stream dropped; reconnecting (the stream ended)…" });
    // Closed by the page (its browser tab hidden) and opened again: a fresh start, not a drop.
    view = liveConnection(liveConnection(liveConnection(view, "live"), "closed"), "connecting");
    expect(liveStatus(view).word).toBe("connecting");
    // Samples drawn before the drop stay drawn.
    expect(liveConnection({ ...view, samples: [point(0)] }, "retrying").samples.length).toBe(1);
  });
});

describe("series", () => {
  it("gives uPlot columns in seconds, with a break where samples are missing", () => {
    const s = liveSeries([point(0, 1), point(1000, 2), point(10_000, 3)], 1000);
    expect(s.x).toEqual([T0 / 1000, T0 / 1000 + 1, T0 / 1000 + 5.5, T0 / 1000 + 10]);
    expect(s.cpu).toEqual([1, 2, null, 3]);
    expect(s.cores).toEqual([
      [10, 10, null, 10],
      [15, 15, null, 15],
    ]);
    expect(s.diskWrite).toEqual([2000, 2000, null, 2000]);
    expect(gapMs(0)).toBe(3000);
    expect(gapMs(250)).toBe(2500);
  });

  it("draws as many core lines as the widest sample has, up to its limit", () => {
    const few = { ...point(0), cores: [1] };
    const many = { ...point(1000), cores: new Array(300).fill(5) };
    const s = liveSeries([few, many]);
    expect(s.cores.length).toBe(64);
    expect(s.cores[1]).toEqual([null, 5]);
  });

  it("reads a history and draws its averages and maxima, with breaks over empty steps", () => {
    const h = history({
      pc_id: "pc-1",
      since: iso(T0),
      until: iso(T0 + 3_600_000),
      step_secs: 60,
      points: [
        { at: iso(T0 + 120_000), rollups: 6, cpu_percent: { avg: 20, max: 90 }, mem_used_bytes: { avg: 1, max: 2 }, mem_total_bytes: 8, top_cpu: [{ pid: 9, name: "burn", cpu_percent: 49 }] },
        { at: iso(T0), rollups: 6, cpu_percent: { avg: 10, max: 15 } },
        { at: iso(T0 + 60_000), rollups: 6, cpu_percent: { avg: 250, max: NaN }, disk_write_bytes_per_sec: { avg: 5, max: 1 } },
        { at: "not a time", rollups: 1 },
      ],
    });
    expect(h.points.map((p) => p.t - T0)).toEqual([0, 60_000, 120_000]);
    expect(h.points[1]?.cpu).toEqual({ avg: 100, max: 100 });
    expect(h.points[1]?.diskWrite).toEqual({ avg: 5, max: 5 });
    expect(h.points[2]?.topCpu[0]).toMatchObject({ pid: 9, name: "burn", cpu: 49 });
    const s = historySeries({ ...h, points: [...h.points, { ...(h.points[0] as (typeof h.points)[0]), t: T0 + 600_000 }] });
    expect(s.cpuMax).toEqual([15, 100, 90, null, 15]);
    expect(s.point).toEqual([0, 1, 2, null, 3]);
    expect(busiestPoint(h.points)).toBe(1);
    expect(nearestPoint(h.points, (T0 + 100_000) / 1000)).toBe(2);
    expect(nearestPoint([], 5)).toBeNull();
    expect(nearestPoint(h.points, NaN)).toBeNull();
  });

  it("reads anything at all as a history without throwing", () => {
    for (const raw of [null, 3, "x", [], { points: "no" }, { points: [null, 1, []] }]) {
      expect(history(raw).points).toEqual([]);
    }
  });
});

describe("the processes table", () => {
  const rows: ProcessRow[] = [
    { pid: 30, name: "beta", user: "bob", cpu: 5, rss: 300, read: null, write: 10 },
    { pid: 10, name: "Alpha", user: "", cpu: 50, rss: 100, read: 5, write: null },
    { pid: 20, name: "gamma", user: "ann", cpu: 5, rss: 200, read: 1, write: 0 },
  ];
  const pids = (r: ProcessRow[]) => r.map((x) => x.pid);

  it("sorts by CPU and memory busiest first, equals by pid", () => {
    expect(pids(sortProcesses(rows, "cpu", "descending"))).toEqual([10, 20, 30]);
    expect(pids(sortProcesses(rows, "cpu", "ascending"))).toEqual([20, 30, 10]);
    expect(pids(sortProcesses(rows, "memory", "descending"))).toEqual([30, 20, 10]);
  });

  it("sorts names without regard to case and puts missing figures last either way", () => {
    expect(pids(sortProcesses(rows, "name", "ascending"))).toEqual([10, 30, 20]);
    expect(pids(sortProcesses(rows, "read", "descending"))).toEqual([10, 20, 30]);
    expect(pids(sortProcesses(rows, "read", "ascending"))).toEqual([20, 10, 30]);
    expect(pids(sortProcesses(rows, "user", "ascending"))).toEqual([20, 30, 10]);
  });

  it("leaves its input alone", () => {
    const before = pids(rows);
    sortProcesses(rows, "pid", "descending");
    expect(pids(rows)).toEqual(before);
  });

  it("turns the order round on the same column, starts a new one in its natural direction", () => {
    expect(nextSort({ key: "cpu", direction: "descending" }, "cpu")).toEqual({ key: "cpu", direction: "ascending" });
    expect(nextSort({ key: "cpu", direction: "descending" }, "name")).toEqual({ key: "name", direction: "ascending" });
    expect(nextSort({ key: "name", direction: "ascending" }, "memory")).toEqual({ key: "memory", direction: "descending" });
  });

  it("says when read and write count more than disk", () => {
    expect(ioNote("all_io")).toMatch(/all of a process's I\/O.*not only disk/);
    expect(ioNote("disk")).toBeNull();
    expect(ioNote("none")).toMatch(/no per-process/);
    expect(ioNote("unknown")).toMatch(/does not know/);
  });
});

describe("figures in words", () => {
  it("says rates in decimal units", () => {
    expect(rate(0)).toBe("0 B/s");
    expect(rate(999)).toBe("999 B/s");
    expect(rate(1000)).toBe("1.0 kB/s");
    expect(rate(12_345_678)).toBe("12.3 MB/s");
    expect(rate(999_960)).toBe("1.0 MB/s");
    expect(rate(2.5e12)).toBe("2.5 TB/s");
  });

  it("says nothing sensible about nonsense, and never NaN", () => {
    for (const v of [NaN, -1, Infinity, -Infinity, null, undefined]) expect(rate(v)).toBe("—");
    expect(rate(1e300)).toBe("> 999 EB/s");
    expect(rate(Number.MAX_SAFE_INTEGER)).toBe("9.0 PB/s");
    expect(percent(NaN)).toBe("—");
    expect(percent(undefined)).toBe("—");
    expect(percent(150)).toBe("100.0%");
    expect(percent(-2)).toBe("0.0%");
    expect(percent(43.21)).toBe("43.2%");
  });

  it("says memory as used of total", () => {
    expect(memory(2 * 1024 ** 3, 8 * 1024 ** 3)).toBe("2.0 GiB of 8.0 GiB (25.0%)");
    expect(memory(1024, 0)).toBe("1.0 KiB");
  });

  it("says a time axis's ticks as finely as they are apart", () => {
    const d = new Date(T0);
    const pad = (n: number) => String(n).padStart(2, "0");
    expect(timeTick(T0 / 1000 + 9, 5)).toBe(`${pad(d.getHours())}:${pad(d.getMinutes())}:09`);
    expect(timeTick(T0 / 1000, 600)).toBe(`${pad(d.getHours())}:${pad(d.getMinutes())}`);
    expect(timeTick(T0 / 1000, 86_400)).toBe(`${pad(d.getMonth() + 1)}-${pad(d.getDate())}`);
    expect(timeTick(NaN, 86_400)).toBe("—");
  });

  it("says a time of day", () => {
    expect(clock(T0)).toMatch(/^\d{2}:\d{2}:00$/);
    expect(clock(T0, false)).toMatch(/^\d{2}:\d{2}$/);
    expect(clock(NaN)).toBe("—");
  });

  it("labels a chart with each line's latest, lowest and highest figure", () => {
    expect(
      chartLabel("CPU", "the last 2 minutes", "percent", [
        { label: "All cores", column: [10, null, 90, 40], latest: 40 },
        { label: "Nothing", column: [null] },
      ]),
    ).toBe("CPU, the last 2 minutes. All cores: now 40.0%, lowest 10.0%, highest 90.0%; Nothing: no data.");
    expect(extent([])).toBeNull();
  });
});

describe("the range picker and the stream's path", () => {
  it("reads the range from the URL, Live for anything else", () => {
    expect(rangeOf("24h")).toBe("24h");
    expect(rangeOf("1y")).toBe("live");
    expect(rangeOf(null)).toBe("live");
  });

  it("escapes the pc id", () => {
    expect(livePath("a/b")).toBe("/api/agents/a%2Fb/perf/live");
  });

  it("the window is two minutes", () => {
    expect(LIVE_WINDOW_MS).toBe(120_000);
  });
});
