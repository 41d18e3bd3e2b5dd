// Small pieces every page uses. Status is always said in words (and a symbol), never by colour alone.

import type { ReactNode } from "react";
import { Link } from "react-router";

import { ApiError } from "./lib/api";
import { ago, stamp, took } from "./lib/format";
import { BUCKETS, type Progress, bucketOf, summary } from "./lib/progress";
import type { ResultRow } from "./lib/types";

const SYMBOL: Record<string, string> = {
  ok: "✓",
  failed: "✗",
  running: "▶",
  pending: "…",
  skipped: "⤼",
};

/// A result or target state: `ok`, `failed`, `timeout`, `killed`, `skipped`, `running`, `pending`.
export function StateBadge({ state }: { state: string }) {
  const bucket = bucketOf(state);
  return (
    <span className={`badge badge-${bucket}`}>
      <span aria-hidden="true">{SYMBOL[bucket]} </span>
      {state}
    </span>
  );
}

const EXEC_TONE: Record<string, string> = {
  pending_approval: "pending",
  rejected: "failed",
  starting: "running",
  rolling_out: "running",
  running: "running",
  completed: "ok",
  halted: "failed",
  superseded: "skipped",
  external: "ok",
};

/// An execution's status, with underscores read as spaces.
export function ExecBadge({ status }: { status: string }) {
  const tone = EXEC_TONE[status] ?? "failed";
  return (
    <span className={`badge badge-${tone}`}>
      <span aria-hidden="true">{SYMBOL[tone]} </span>
      {status.replace(/_/g, " ")}
    </span>
  );
}

export function OnlineBadge({ online }: { online: boolean }) {
  return (
    <span className={`badge ${online ? "badge-ok" : "badge-offline"}`}>
      <span aria-hidden="true">{online ? "●" : "○"} </span>
      {online ? "online" : "offline"}
    </span>
  );
}

/// A stacked bar of ok / failed / running / skipped / pending with the same counts in words beside it.
export function ProgressBar({ progress, label }: { progress: Progress; label: string }) {
  const text = summary(progress);
  return (
    <div className="progress">
      <div
        className="progress-bar"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={progress.done_pct}
        aria-valuetext={text}
      >
        {BUCKETS.map((b) =>
          progress.widths[b] > 0 ? (
            <span key={b} className={`segment segment-${b}`} style={{ width: `${progress.widths[b]}%` }} />
          ) : null,
        )}
      </div>
      <span className="progress-text">
        <strong>{progress.done_pct}%</strong> · {text}
      </span>
    </div>
  );
}

export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <span>—</span>;
  return (
    <time dateTime={at} title={stamp(at)}>
      {ago(at)}
    </time>
  );
}

export function ErrorNote({ error, what }: { error: unknown; what: string }) {
  const message =
    error instanceof ApiError ? `${error.message} (${error.code})` : error instanceof Error ? error.message : String(error);
  return (
    <p className="error" role="alert">
      Cannot {what}: {message}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}

export function PageTitle({ children, actions }: { children: ReactNode; actions?: ReactNode }) {
  return (
    <div className="page-title">
      <h1 id="page-title" tabIndex={-1}>
        {children}
      </h1>
      {actions ? <div className="actions">{actions}</div> : null}
    </div>
  );
}

/// Results as a table: (the PC,) the job linking to the result, its status and exit code, how long it took, when.
export function ResultsTable({ results, showPc = false }: { results: ResultRow[]; showPc?: boolean }) {
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            {showPc ? <th scope="col">PC</th> : null}
            <th scope="col">Job</th>
            <th scope="col">Status</th>
            <th scope="col">Took</th>
            <th scope="col">Finished</th>
          </tr>
        </thead>
        <tbody>
          {results.map((r) => (
            <tr key={r.result_id}>
              {showPc ? (
                <td>
                  <PcLink pc={r.pc_id} />
                </td>
              ) : null}
              <td>
                <Link to={`/activity/${encodeURIComponent(r.exec_id)}?pc=${encodeURIComponent(r.pc_id)}`}>{r.job_id}</Link>
              </td>
              <td>
                <StateBadge state={r.status} />
                {r.exit_code !== null ? <span className="muted"> exit {r.exit_code}</span> : null}
              </td>
              <td>{took(r.started_at, r.finished_at)}</td>
              <td>
                <When at={r.finished_at} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function PcLink({ pc }: { pc: string }) {
  return <Link to={`/agents/${encodeURIComponent(pc)}`}>{pc}</Link>;
}

export function ExecLink({ exec, children }: { exec: string; children?: ReactNode }) {
  return <Link to={`/activity/${encodeURIComponent(exec)}`}>{children ?? exec}</Link>;
}
