// Small pieces every page uses. Status is always said in words (and a symbol), never by colour alone.

import type { ReactNode } from "react";
import { Link } from "react-router";

import { ApiError } from "./lib/api";
import { ago, stamp } from "./lib/format";
import { BUCKETS, type Progress, bucketOf, summary } from "./lib/progress";

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

export function PcLink({ pc }: { pc: string }) {
  return <Link to={`/agents/${encodeURIComponent(pc)}`}>{pc}</Link>;
}

export function ExecLink({ exec, children }: { exec: string; children?: ReactNode }) {
  return <Link to={`/activity/${encodeURIComponent(exec)}`}>{children ?? exec}</Link>;
}
