// Small pieces every page uses, and the buttons that change an execution. Status is always said in words (and a
// symbol), never by colour alone.

import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useState } from "react";
import { Link } from "react-router";

import { useAuth } from "./auth";
import { ApiError } from "./lib/api";
import { ago, stamp, took } from "./lib/format";
import { BUCKETS, type Progress, bucketOf, mayBeRunning, summary } from "./lib/progress";
import type { Execution, ResultRow } from "./lib/types";

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

/// The buttons that change an execution — approve, reject, kill, revoke its job — shared by Activity and the
/// execution page. Each asks before doing something that cannot be undone.
export function ExecActions({ exec }: { exec: Execution }) {
  const { api, session } = useAuth();
  const client = useQueryClient();
  const [note, setNote] = useState<string | null>(null);
  const refresh = () => {
    void client.invalidateQueries({ queryKey: ["executions"] });
    void client.invalidateQueries({ queryKey: ["execution", exec.exec_id] });
    void client.invalidateQueries({ queryKey: ["targets", exec.exec_id] });
  };
  const approve = useMutation({ mutationFn: () => api.approve(exec.exec_id), onSuccess: refresh });
  const reject = useMutation({
    mutationFn: (reason: string) => api.reject(exec.exec_id, reason || undefined),
    onSuccess: refresh,
  });
  const kill = useMutation({
    mutationFn: () => api.kill(exec.exec_id),
    onSuccess: (reply) => {
      setNote(reply.killed.length === 0 ? "Kill sent; no agent reported a running or queued run." : `Killed ${reply.killed.length} run(s).`);
      refresh();
    },
  });
  const revoke = useMutation({
    mutationFn: () => api.revoke(exec.job_id, true),
    onSuccess: () => {
      setNote(`Revoked ${exec.job_id}: runs that have not started are skipped.`);
      void client.invalidateQueries({ queryKey: ["jobs"] });
    },
  });
  const pending = exec.status === "pending_approval";
  const ownRequest = exec.requested_by === session.actor;
  const error = approve.error ?? reject.error ?? kill.error ?? revoke.error;
  const label = `${exec.job_id} ${exec.exec_id}`;
  return (
    <div className="exec-actions">
      {pending ? (
        <>
          <button
            type="button"
            className="primary"
            onClick={() => approve.mutate()}
            disabled={approve.isPending}
            aria-label={`Approve ${label}`}
            title={ownRequest ? "You requested this run; another operator must approve it" : undefined}
          >
            Approve
          </button>
          <button
            type="button"
            onClick={() => {
              const reason = window.prompt(`Reject ${exec.job_id}? Say why (optional):`);
              if (reason !== null) reject.mutate(reason);
            }}
            disabled={reject.isPending}
            aria-label={`Reject ${label}`}
          >
            Reject
          </button>
        </>
      ) : null}
      {mayBeRunning(exec) ? (
        <button
          type="button"
          className="danger"
          onClick={() => {
            if (window.confirm(`Kill every running and queued run of ${exec.job_id} (${exec.exec_id})?`)) kill.mutate();
          }}
          disabled={kill.isPending}
          aria-label={`Kill ${label}`}
        >
          Kill
        </button>
      ) : null}
      {exec.status !== "external" ? (
        <button
          type="button"
          className="danger"
          onClick={() => {
            if (window.confirm(`Revoke the job ${exec.job_id}? Its runs that have not started are skipped on every agent.`)) revoke.mutate();
          }}
          disabled={revoke.isPending}
          aria-label={`Revoke job ${exec.job_id}`}
        >
          Revoke job
        </button>
      ) : null}
      <span role="status" className="small">
        {note}
      </span>
      {error ? <ErrorNote error={error} what="do that" /> : null}
    </div>
  );
}
