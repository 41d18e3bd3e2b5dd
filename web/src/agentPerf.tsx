// An agent's Performance tab: a range picker (in the URL as `range=`); Live follows `/api/agents/{pc}/perf/live`
// while the tab is shown and the browser tab is visible (leaving either closes the stream, so the backend's watch of
// the agent lapses) and draws the last two minutes with the busiest processes; 1 h, 24 h and 7 d draw the rollups'
// averages and maxima, and a chosen point's top processes ("what was using the CPU at 03:12"). What is shown is
// decided in `lib/perf.ts`; this file renders it.

import { useQuery } from "@tanstack/react-query";
import { memo, useEffect, useMemo, useReducer, useState } from "react";

import { useAuth } from "./auth";
import { Chart, COLOUR, DASH, type Line } from "./chart";
import { ErrorNote, Loading, useSearchText } from "./components";
import { type ApiError } from "./lib/api";
import { bytes, span } from "./lib/format";
import { keys } from "./lib/live";
import {
  busiestPoint,
  chartLabel,
  clock,
  EMPTY_LIVE,
  history,
  type HistoryPoint,
  historySeries,
  type HostPoint,
  ioNote,
  last,
  liveReducer,
  livePath,
  liveSeries,
  liveStatus,
  LIVE_WINDOW_MS,
  memory,
  nextSort,
  percent,
  PERF_RANGES,
  type PerfRange,
  type ProcessRow,
  type ProcessSample,
  type ProcessSortKey,
  rangeOf,
  rangeWords,
  rate,
  type SortDirection,
  sortProcesses,
  when,
} from "./lib/perf";
import { follow } from "./lib/sse";

export function PerformanceTab({ pc }: { pc: string }) {
  // The radio follows a click at once (a radio drawn from the URL alone springs back until the router's
  // transition commits the new URL, and Playwright's check() saw it unchecked).
  const [inUrl, setInUrl] = useSearchText("range");
  const range = rangeOf(inUrl);
  const choose = (next: PerfRange) => setInUrl(next === "live" ? "" : next);
  return (
    <>
      <fieldset className="segmented">
        <legend>Show</legend>
        <div className="segmented-options">
          {PERF_RANGES.map(([id, text]) => (
            <label key={id} className={id === range ? "chosen" : undefined}>
              <input type="radio" name="perf-range" value={id} checked={id === range} onChange={() => choose(id)} />
              {text}
            </label>
          ))}
        </div>
      </fieldset>
      {range === "live" ? <LivePerf key={pc} pc={pc} /> : <HistoryPerf pc={pc} range={range} />}
    </>
  );
}

/// Whether the browser tab is shown: a stream nobody can see is closed.
function usePageVisible(): boolean {
  const [visible, setVisible] = useState(() => document.visibilityState !== "hidden");
  useEffect(() => {
    const update = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", update);
    return () => document.removeEventListener("visibilitychange", update);
  }, []);
  return visible;
}

const STATE_SYMBOL = { live: "●", waiting: "◌", connecting: "◌", reconnecting: "◌", unreachable: "○" } as const;

function LivePerf({ pc }: { pc: string }) {
  const { authority } = useAuth();
  const visible = usePageVisible();
  const [view, dispatch] = useReducer(liveReducer, EMPTY_LIVE);
  const [refused, setRefused] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!visible) return;
    const abort = new AbortController();
    void follow(
      {
        path: livePath(pc),
        auth: authority,
        onEvent: (event) => dispatch({ type: "event", event }),
        onState: (state, detail) => dispatch({ type: "connection", state, detail }),
        // No such agent: asking again will not make one.
        fatal: (error) => {
          if (error.status !== 404) return false;
          setRefused(error);
          return true;
        },
      },
      abort.signal,
    );
    // Leaving the tab, the range or the page, or hiding the browser tab, ends the request: the stream closes.
    return () => {
      abort.abort();
      dispatch({ type: "connection", state: "closed" });
    };
  }, [pc, authority, visible]);
  if (refused) return <ErrorNote error={refused} what="follow this agent's performance" />;
  const status = liveStatus(view);
  return (
    <>
      <p className={`perf-state perf-state-${status.word}`} role="status" data-testid="perf-state" data-state={status.word}>
        <span aria-hidden="true">{STATE_SYMBOL[status.word]} </span>
        {status.text}
      </p>
      <LiveCharts samples={view.samples} intervalMs={view.intervalMs} />
      <ProcessTable pc={pc} sample={view.processes} />
    </>
  );
}

/// Drawn again only when a sample arrives, not at each process sample.
const LiveCharts = memo(function LiveCharts({ samples, intervalMs }: { samples: HostPoint[]; intervalMs: number }) {
  const [eachCore, setEachCore] = useState(false);
  const series = useMemo(() => liveSeries(samples, intervalMs), [samples, intervalMs]);
  const latest = samples[samples.length - 1];
  const latestAt = latest ? new Date(latest.t).toISOString() : undefined;
  // The window scrolls: the newest sample at the right edge, two minutes before it at the left.
  const xRange: [number, number] | undefined = latest ? [(latest.t - LIVE_WINDOW_MS) / 1000, latest.t / 1000] : undefined;
  const period = rangeWords("live");
  const cores: Line[] = eachCore
    ? series.cores.map((column, i) => ({
        label: `Core ${i}`,
        column,
        colour: COLOUR.grey,
        dash: DASH.dotted,
        width: 1,
        text: percent(last(column)),
        unlisted: true,
      }))
    : [];
  const coreNow = latest?.cores ?? [];
  const busiestCore = coreNow.length > 0 ? Math.max(...coreNow) : null;
  const cpu: Line[] = [
    { label: "All cores", column: series.cpu, colour: COLOUR.blue, dash: DASH.solid, width: 2.5, text: percent(latest?.cpu), value: latest?.cpu },
    ...cores,
  ];
  const mem: Line[] = [
    {
      label: "In use",
      column: series.memUsed,
      colour: COLOUR.blue,
      dash: DASH.solid,
      text: latest ? memory(latest.memUsed, latest.memTotal) : "—",
      value: latest?.memUsed,
    },
    { label: "Total", column: series.memTotal, colour: COLOUR.grey, dash: DASH.dashed, text: latest ? bytes(latest.memTotal) : "—", value: latest?.memTotal },
  ];
  const disk: Line[] = [
    { label: "Read", column: series.diskRead, colour: COLOUR.blue, dash: DASH.solid, text: rate(latest?.diskRead), value: latest?.diskRead },
    { label: "Write", column: series.diskWrite, colour: COLOUR.orange, dash: DASH.dashed, text: rate(latest?.diskWrite), value: latest?.diskWrite },
  ];
  const net: Line[] = [
    { label: "Received", column: series.netRx, colour: COLOUR.green, dash: DASH.solid, text: rate(latest?.netRx), value: latest?.netRx },
    { label: "Sent", column: series.netTx, colour: COLOUR.purple, dash: DASH.dashed, text: rate(latest?.netTx), value: latest?.netTx },
  ];
  const labelled = (lines: Line[]) => lines.filter((l) => !l.unlisted).map((l) => ({ ...l, latest: l.value ?? null }));
  const coreWords = busiestCore === null ? "" : ` The busiest of ${coreNow.length} cores is at ${percent(busiestCore)}.`;
  return (
    <>
      {samples.length === 0 ? <p className="muted">No sample yet: the first arrives once the agent streams.</p> : null}
      <div className="charts">
        <Chart
          title="CPU"
          kind="percent"
          yMax={100}
          x={series.x}
          xRange={xRange}
          lines={cpu}
          latestAt={latestAt}
          testId="perf-cpu"
          label={chartLabel("CPU busy, all cores", period, "percent", labelled(cpu)) + coreWords}
          extraLegend={
            eachCore && series.cores.length > 0
              ? [{ label: `Each core (${series.cores.length})`, colour: COLOUR.grey, dash: DASH.dotted, text: `busiest ${percent(busiestCore)}` }]
              : []
          }
        />
        <Chart
          title="Memory"
          kind="bytes"
          x={series.x}
          xRange={xRange}
          lines={mem}
          latestAt={latestAt}
          testId="perf-memory"
          label={chartLabel("Memory in use and total", period, "bytes", labelled(mem))}
        />
        <Chart
          title="Disk"
          kind="rate"
          x={series.x}
          xRange={xRange}
          lines={disk}
          latestAt={latestAt}
          testId="perf-disk"
          label={chartLabel("Disk read and write per second, all disks", period, "rate", labelled(disk))}
        />
        <Chart
          title="Network"
          kind="rate"
          x={series.x}
          xRange={xRange}
          lines={net}
          latestAt={latestAt}
          testId="perf-network"
          label={chartLabel("Network received and sent per second, all interfaces", period, "rate", labelled(net))}
        />
      </div>
      {series.cores.length > 0 ? (
        <label className="check">
          <input type="checkbox" checked={eachCore} onChange={(e) => setEachCore(e.target.checked)} /> Draw each core on the
          CPU chart
        </label>
      ) : null}
    </>
  );
});

const PROCESS_COLUMNS: readonly (readonly [ProcessSortKey, string])[] = [
  ["pid", "PID"],
  ["name", "Name"],
  ["user", "User"],
  ["cpu", "CPU"],
  ["memory", "Memory"],
  ["read", "Read/s"],
  ["write", "Write/s"],
];

/// The busiest processes of the latest sample, sortable by any column (CPU first); drawn again only when a process
/// sample arrives.
const ProcessTable = memo(function ProcessTable({ pc, sample }: { pc: string; sample: ProcessSample | null }) {
  const [order, setOrder] = useState<{ key: ProcessSortKey; direction: SortDirection }>({ key: "cpu", direction: "descending" });
  const rows = useMemo(() => sortProcesses(sample?.rows ?? [], order.key, order.direction), [sample, order]);
  const note = sample ? ioNote(sample.io) : null;
  const withIo = sample?.io !== "none";
  const columns = PROCESS_COLUMNS.filter(([key]) => withIo || (key !== "read" && key !== "write"));
  return (
    <section className="panel" aria-labelledby="perf-processes-title">
      <h3 id="perf-processes-title">Busiest processes</h3>
      {!sample ? <p className="muted">No process sample yet.</p> : null}
      {sample ? (
        <>
          <p className="muted small" id="perf-processes-about">
            CPU is a share of the whole machine (one busy core of four is 25%). {sample.rows.length} of {sample.total}{" "}
            processes, as of {clock(sample.t)}.
          </p>
          {note ? (
            <p className="warn" id="perf-io-note" data-testid="io-note">
              <span aria-hidden="true">ⓘ </span>
              {note}
            </p>
          ) : null}
          <div className="table-wrap">
            <table aria-describedby={note ? "perf-processes-about perf-io-note" : "perf-processes-about"}>
              <caption className="visually-hidden">Busiest processes on {pc}</caption>
              <thead>
                <tr>
                  {columns.map(([key, text]) => {
                    const active = order.key === key;
                    return (
                      <th key={key} scope="col" aria-sort={active ? order.direction : undefined}>
                        <button type="button" className="sort" onClick={() => setOrder((o) => nextSort(o, key))}>
                          {text}
                          <span aria-hidden="true">{active ? (order.direction === "ascending" ? " ▲" : " ▼") : ""}</span>
                        </button>
                      </th>
                    );
                  })}
                </tr>
              </thead>
              <tbody>
                {rows.map((row, i) => (
                  <tr key={`${row.pid}:${i}`}>
                    <td>{row.pid}</td>
                    <td className="wrap">{row.name || <span className="muted">—</span>}</td>
                    <td>{row.user || <span className="muted">—</span>}</td>
                    <td className="nowrap">{percent(row.cpu)}</td>
                    <td className="nowrap">{bytes(row.rss)}</td>
                    {withIo ? (
                      <>
                        <td className="nowrap">{rate(row.read)}</td>
                        <td className="nowrap">{rate(row.write)}</td>
                      </>
                    ) : null}
                  </tr>
                ))}
                {rows.length === 0 ? (
                  <tr>
                    <td colSpan={columns.length} className="muted">
                      The sample lists no process.
                    </td>
                  </tr>
                ) : null}
              </tbody>
            </table>
          </div>
        </>
      ) : null}
    </section>
  );
});

/// How often a history is asked for again while shown: about a rollup's interval.
const HISTORY_REFRESH_MS = 60_000;

function HistoryPerf({ pc, range }: { pc: string; range: Exclude<PerfRange, "live"> }) {
  const { api } = useAuth();
  const query = useQuery({
    queryKey: keys.agentPerf(pc, range),
    queryFn: () => api.agentPerf(pc, { since: range }),
    refetchInterval: HISTORY_REFRESH_MS,
  });
  const h = useMemo(() => history(query.data), [query.data]);
  const series = useMemo(() => historySeries(h), [h]);
  // The chosen point is kept by its time, so a refetch that adds points keeps it chosen.
  const [pickedAt, setPickedAt] = useState<number | null>(null);
  if (query.isPending) return <Loading what="the history" />;
  if (query.isError) return <ErrorNote error={query.error} what="load the history" />;
  const busiest = busiestPoint(h.points);
  const picked = h.points.findIndex((p) => p.t === pickedAt);
  const index = picked >= 0 ? picked : busiest;
  const point = index === null ? undefined : h.points[index];
  const pick = (i: number | null | undefined) => {
    const chosen = i === null || i === undefined ? undefined : h.points[i];
    if (chosen) setPickedAt(chosen.t);
  };
  const words = rangeWords(range);
  const xRange: [number, number] | undefined = h.until > h.since ? [h.since / 1000, h.until / 1000] : undefined;
  const common = { x: series.x, xRange, mark: point ? point.t / 1000 : null, onPick: (i: number) => pick(series.point[i]) };
  const at = (get: (p: HistoryPoint) => number, say: (v: number) => string) => (point ? say(get(point)) : "—");
  const value = (get: (p: HistoryPoint) => number) => (point ? get(point) : null);
  const cpu: Line[] = [
    { label: "Average", column: series.cpuAvg, colour: COLOUR.blue, dash: DASH.solid, text: at((p) => p.cpu.avg, percent), value: value((p) => p.cpu.avg) },
    { label: "Highest", column: series.cpuMax, colour: COLOUR.orange, dash: DASH.dashed, text: at((p) => p.cpu.max, percent), value: value((p) => p.cpu.max) },
  ];
  const mem: Line[] = [
    { label: "Average in use", column: series.memAvg, colour: COLOUR.blue, dash: DASH.solid, text: at((p) => p.memUsed.avg, bytes) },
    { label: "Highest in use", column: series.memMax, colour: COLOUR.orange, dash: DASH.dashed, text: at((p) => p.memUsed.max, bytes) },
    { label: "Total", column: series.memTotal, colour: COLOUR.grey, dash: DASH.dotted, text: at((p) => p.memTotal, bytes) },
  ];
  const disk: Line[] = [
    { label: "Read, average", column: series.diskReadAvg, colour: COLOUR.blue, dash: DASH.solid, text: at((p) => p.diskRead.avg, rate) },
    { label: "Read, highest", column: series.diskReadMax, colour: COLOUR.blue, dash: DASH.dotted, text: at((p) => p.diskRead.max, rate) },
    { label: "Write, average", column: series.diskWriteAvg, colour: COLOUR.orange, dash: DASH.dashed, text: at((p) => p.diskWrite.avg, rate) },
    { label: "Write, highest", column: series.diskWriteMax, colour: COLOUR.orange, dash: DASH.dashDot, text: at((p) => p.diskWrite.max, rate) },
  ];
  const net: Line[] = [
    { label: "Received, average", column: series.netRxAvg, colour: COLOUR.green, dash: DASH.solid, text: at((p) => p.netRx.avg, rate) },
    { label: "Received, highest", column: series.netRxMax, colour: COLOUR.green, dash: DASH.dotted, text: at((p) => p.netRx.max, rate) },
    { label: "Sent, average", column: series.netTxAvg, colour: COLOUR.purple, dash: DASH.dashed, text: at((p) => p.netTx.avg, rate) },
    { label: "Sent, highest", column: series.netTxMax, colour: COLOUR.purple, dash: DASH.dashDot, text: at((p) => p.netTx.max, rate) },
  ];
  const period = `${words}, ${h.points.length} point${h.points.length === 1 ? "" : "s"}`;
  return (
    <>
      <p className="muted" data-testid="perf-history-about">
        {h.points.length === 0
          ? "No rollups in this range yet. Each agent sends one every host_perf_interval (1 min unless its config says otherwise; 0s sends none)."
          : `${h.points.length} point${h.points.length === 1 ? "" : "s"}, one per ${stepWords(h.stepSecs)}, each the average and the highest of the rollups within it. Choose a point on a chart, or in the table below, to see its busiest processes.`}
      </p>
      <div className="charts">
        <Chart {...common} title="CPU" kind="percent" yMax={100} lines={cpu} testId="perf-cpu" label={chartLabel("CPU busy, all cores", period, "percent", cpu)} />
        <Chart {...common} title="Memory" kind="bytes" lines={mem} testId="perf-memory" label={chartLabel("Memory in use", period, "bytes", mem)} />
        <Chart {...common} title="Disk" kind="rate" lines={disk} testId="perf-disk" label={chartLabel("Disk read and write per second, all disks", period, "rate", disk)} />
        <Chart {...common} title="Network" kind="rate" lines={net} testId="perf-network" label={chartLabel("Network received and sent per second", period, "rate", net)} />
      </div>
      {point ? <PointDetail point={point} stepSecs={h.stepSecs} busiest={index === busiest} /> : null}
      {h.points.length > 0 ? <PointsTable points={h.points} chosen={index} onPick={pick} /> : null}
    </>
  );
}

const stepWords = (secs: number) => (secs > 0 ? span(secs) : "step");

/// One point of a history: its figures and what was busiest then.
function PointDetail({ point, stepSecs, busiest }: { point: HistoryPoint; stepSecs: number; busiest: boolean }) {
  return (
    <section className="panel" aria-labelledby="perf-point-title" data-testid="perf-point">
      <h3 id="perf-point-title" aria-live="polite">
        At {when(point.t)}
        {busiest ? <span className="muted"> (the busiest point)</span> : null}
      </h3>
      <p>
        {point.rollups} rollup{point.rollups === 1 ? "" : "s"} over {stepWords(stepSecs)}. CPU {percent(point.cpu.avg)} on average,{" "}
        {percent(point.cpu.max)} at the highest; memory in use up to {memory(point.memUsed.max, point.memTotal)}; disk read up to{" "}
        {rate(point.diskRead.max)}, write up to {rate(point.diskWrite.max)}; network received up to {rate(point.netRx.max)}, sent up to{" "}
        {rate(point.netTx.max)}.
      </p>
      <div className="columns">
        <SummaryTable caption={`Busiest processes by CPU at ${when(point.t)}`} title="By CPU" rows={point.topCpu} testId="perf-point-cpu" />
        <SummaryTable caption={`Processes using the most memory at ${when(point.t)}`} title="By memory" rows={point.topMemory} testId="perf-point-memory" />
      </div>
    </section>
  );
}

function SummaryTable({ caption, title, rows, testId }: { caption: string; title: string; rows: ProcessRow[]; testId: string }) {
  return (
    <div>
      <h4>{title}</h4>
      {rows.length === 0 ? (
        <p className="muted">None recorded.</p>
      ) : (
        <div className="table-wrap">
          <table data-testid={testId}>
            <caption className="visually-hidden">{caption}</caption>
            <thead>
              <tr>
                <th scope="col">PID</th>
                <th scope="col">Name</th>
                <th scope="col">User</th>
                <th scope="col">CPU</th>
                <th scope="col">Memory</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row, i) => (
                <tr key={`${row.pid}:${i}`}>
                  <td>{row.pid}</td>
                  <td className="wrap">{row.name || <span className="muted">—</span>}</td>
                  <td>{row.user || <span className="muted">—</span>}</td>
                  <td className="nowrap">{percent(row.cpu)}</td>
                  <td className="nowrap">{bytes(row.rss)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/// Every point as a row, for choosing one by keyboard and for reading the figures as text; drawn once opened.
function PointsTable({ points, chosen, onPick }: { points: HistoryPoint[]; chosen: number | null; onPick: (i: number) => void }) {
  const [open, setOpen] = useState(false);
  return (
    <details className="panel" onToggle={(e) => setOpen(e.currentTarget.open)} data-testid="perf-points">
      <summary>Every point as a table ({points.length})</summary>
      {open ? (
        <div className="table-wrap points-table">
          <table>
            <caption className="visually-hidden">Performance history, one row per point, oldest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">CPU average</th>
                <th scope="col">CPU highest</th>
                <th scope="col">Memory highest</th>
                <th scope="col">Disk read highest</th>
                <th scope="col">Disk write highest</th>
                <th scope="col">Received highest</th>
                <th scope="col">Sent highest</th>
                <th scope="col">Busiest process</th>
              </tr>
            </thead>
            <tbody>
              {points.map((p, i) => (
                <tr key={p.t} className={i === chosen ? "selected" : undefined}>
                  <td className="nowrap">
                    <button type="button" className="link" aria-pressed={i === chosen} onClick={() => onPick(i)}>
                      {when(p.t)}
                    </button>
                  </td>
                  <td>{percent(p.cpu.avg)}</td>
                  <td>{percent(p.cpu.max)}</td>
                  <td className="nowrap">{bytes(p.memUsed.max)}</td>
                  <td className="nowrap">{rate(p.diskRead.max)}</td>
                  <td className="nowrap">{rate(p.diskWrite.max)}</td>
                  <td className="nowrap">{rate(p.netRx.max)}</td>
                  <td className="nowrap">{rate(p.netTx.max)}</td>
                  <td className="wrap">
                    {p.topCpu[0] ? `${p.topCpu[0].name} (${percent(p.topCpu[0].cpu)})` : <span className="muted">—</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </details>
  );
}
