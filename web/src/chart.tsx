// One time-series chart: uPlot (a canvas, so nothing inside it is text) in an element with `role="img"` whose
// `aria-label` says what the chart shows with its figures, and a legend beside it that names each line, draws its
// dash pattern (the lines differ by pattern as well as colour, so they read without colour) and gives its figure
// in words. uPlot styles its elements through the CSSOM and its stylesheet comes through the bundler, so the
// backend's CSP (no inline styles) holds.

import { useEffect, useId, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { bytes } from "./lib/format";
import { type Column, type Figure, rate, timeTick } from "./lib/perf";

/// Dash patterns, in CSS pixels of line and gap.
export const DASH = {
  solid: [] as number[],
  dashed: [8, 4],
  dotted: [2, 3],
  dashDot: [10, 3, 2, 3],
};

/// Colours with at least 3:1 contrast on the panel's white (WCAG's for graphics), each paired with a pattern.
export const COLOUR = {
  blue: "#1f4f8a",
  orange: "#a14a00",
  green: "#1a6b35",
  purple: "#6b2fa1",
  grey: "#6f7885",
};

export interface Line {
  label: string;
  column: Column;
  colour: string;
  dash: number[];
  width?: number;
  /// The figure the legend gives for this line (the latest, or the chosen point's), in words and as a number.
  text: string;
  value?: number | null;
  /// Drawn, but left out of the legend (each core's line: the legend has one entry for all of them).
  unlisted?: boolean;
}

const HEIGHT = 180;

function axisValue(kind: Figure, v: number): string {
  if (kind === "percent") return `${Math.round(v)}%`;
  return kind === "bytes" ? bytes(v) : rate(v);
}

export function Chart(props: {
  title: string;
  /// The full description for `aria-label`.
  label: string;
  kind: Figure;
  x: number[];
  lines: readonly Line[];
  /// The top of the y scale when it is fixed (100 for percentages); otherwise it follows the data.
  yMax?: number;
  /// The x range drawn (seconds), when it is not just the data's (a history's whole range).
  xRange?: [number, number];
  /// A vertical mark at this x (seconds): the chosen point of a history.
  mark?: number | null;
  /// Called with the index into `x` of a click on the chart.
  onPick?: (index: number) => void;
  /// Exposed as `data-latest-at`: when the newest figure is from (RFC 3339).
  latestAt?: string;
  testId?: string;
  /// Legend entries beyond the lines (each core's lines, told once).
  extraLegend?: readonly { label: string; colour: string; dash: number[]; text: string }[];
}) {
  const id = useId();
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // What the chart's hooks read without it being built again.
  const live = useRef({ onPick: props.onPick, mark: props.mark, xRange: props.xRange });
  live.current = { onPick: props.onPick, mark: props.mark, xRange: props.xRange };
  const data = [props.x, ...props.lines.map((l) => l.column)] as uPlot.AlignedData;
  // The chart is built again only when its lines change, not when their figures do.
  const shape = JSON.stringify([props.kind, props.yMax ?? null, props.lines.map((l) => [l.label, l.colour, l.dash, l.width])]);

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const kind = props.kind;
    const yMax = props.yMax;
    const options: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      select: { show: false, left: 0, top: 0, width: 0, height: 0 },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => live.current.xRange ?? [min, max],
        },
        y: {
          range: (_u, _min, max) => [0, yMax ?? (max > 0 ? max * 1.1 : 1)],
        },
      },
      axes: [
        {
          stroke: "#55606e",
          grid: { stroke: "#e5e8ec", width: 1 },
          ticks: { stroke: "#d5dae1", width: 1 },
          values: (_u, splits, _axis, _space, incr) => splits.map((t) => timeTick(t, incr)),
        },
        {
          stroke: "#55606e",
          size: kind === "percent" ? 48 : 84,
          grid: { stroke: "#e5e8ec", width: 1 },
          ticks: { stroke: "#d5dae1", width: 1 },
          values: (_u, splits) => splits.map((v) => axisValue(kind, v)),
        },
      ],
      series: [
        {},
        ...props.lines.map((line) => ({
          label: line.label,
          stroke: line.colour,
          dash: line.dash,
          width: line.width ?? 2,
          // uPlot marks each point while they are few enough to tell apart (a history of a few points), in the
          // line's colour: a lone point is seen even without a line to it.
          points: { size: 6, stroke: line.colour, fill: "#ffffff" },
          spanGaps: false,
        })),
      ],
      hooks: {
        ready: [
          (u) => {
            u.over.addEventListener("click", () => {
              const index = u.cursor.idx;
              if (index !== null && index !== undefined) live.current.onPick?.(index);
            });
          },
        ],
        draw: [
          (u) => {
            const mark = live.current.mark;
            if (mark === null || mark === undefined) return;
            const left = u.valToPos(mark, "x", true);
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "#1b1f24";
            ctx.lineWidth = 2 * uPlot.pxRatio;
            ctx.setLineDash([4 * uPlot.pxRatio, 2 * uPlot.pxRatio]);
            ctx.beginPath();
            ctx.moveTo(left, u.bbox.top);
            ctx.lineTo(left, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.restore();
          },
        ],
      },
    };
    const chart = new uPlot(options, data, el);
    plot.current = chart;
    const resize = new ResizeObserver(() => {
      const width = Math.max(200, el.clientWidth);
      if (width !== chart.width) chart.setSize({ width, height: HEIGHT });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // The figures are set by the effect below at every render; only a change of the lines builds the chart again.
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  });

  const listed = props.lines.filter((l) => !l.unlisted);
  // Points drawn: breaks (null) are not points.
  const points = props.lines[0]?.column.filter((v) => v !== null).length ?? 0;
  return (
    <section className="panel chart" aria-labelledby={`${id}-title`} data-testid={props.testId}>
      <h3 id={`${id}-title`}>{props.title}</h3>
      <div
        ref={host}
        className="chart-plot"
        role="img"
        aria-label={props.label}
        data-latest-at={props.latestAt}
        data-points={points}
      />
      <dl className="chart-legend">
        {listed.map((line) => (
          <div key={line.label}>
            <dt>
              <LineKey colour={line.colour} dash={line.dash} /> {line.label}
            </dt>
            <dd data-value={line.value ?? ""}>{line.text}</dd>
          </div>
        ))}
        {props.extraLegend?.map((entry) => (
          <div key={entry.label}>
            <dt>
              <LineKey colour={entry.colour} dash={entry.dash} /> {entry.label}
            </dt>
            <dd>{entry.text}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}

/// A short stretch of a line in its colour and pattern, for the legend. Presentation attributes, not styles.
function LineKey({ colour, dash }: { colour: string; dash: number[] }) {
  return (
    <svg className="line-key" width="28" height="10" viewBox="0 0 28 10" aria-hidden="true" focusable="false">
      <line x1="0" y1="5" x2="28" y2="5" stroke={colour} strokeWidth="2.5" strokeDasharray={dash.length ? dash.join(" ") : undefined} />
    </svg>
  );
}
