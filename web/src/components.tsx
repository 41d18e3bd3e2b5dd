// Small pieces every page uses, and the buttons that change an execution. Status is always said in words (and a
// symbol), never by colour alone.

import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type KeyboardEvent, type ReactNode, useEffect, useRef, useState } from "react";
import { Link, useSearchParams } from "react-router";

import { useAuth } from "./auth";
import { ApiError } from "./lib/api";
import { ago, stamp, took } from "./lib/format";
import { BUCKETS, type Progress, bucketOf, mayBeRunning, summary } from "./lib/progress";
import { seenInUrl } from "./lib/searchtext";
import type { Badge } from "./lib/values";
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
  return (
    <Link to={`/agents/${encodeURIComponent(pc)}`} className="pc-link">
      {pc}
    </Link>
  );
}

export function ExecLink({ exec, children }: { exec: string; children?: ReactNode }) {
  return <Link to={`/activity/${encodeURIComponent(exec)}`}>{children ?? exec}</Link>;
}

/// The buttons that change an execution — approve, reject, kill, revoke its job — shared by Activity and the
/// execution page. Each asks before doing something that cannot be undone.
export function ExecActions({ exec }: { exec: Execution }) {
  const { api, session, may } = useAuth();
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
      {pending && may.approve ? (
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
      {mayBeRunning(exec) && may.operate ? (
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
      {exec.status !== "external" && may.operate ? (
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

/// A value that follows `value` once it has stopped changing for `ms`: a search box asks the server once typing
/// pauses, not at every key.
/** The "Load more …" button under a paged list, while another page follows. */
export function LoadMore({
  pages,
  what,
}: {
  pages: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown };
  what: string;
}) {
  if (!pages.hasNextPage) return null;
  return (
    <p>
      <button type="button" onClick={() => void pages.fetchNextPage()} disabled={pages.isFetchingNextPage}>
        {pages.isFetchingNextPage ? "Loading…" : `Load more ${what}`}
      </button>
    </p>
  );
}

export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/// A row of tabs (the WAI-ARIA tabs pattern: arrow keys, Home and End move between them); the caller renders the
/// chosen one's panel in a [`TabPanel`] with the same `prefix`.
export function Tabs(props: {
  label: string;
  prefix: string;
  tabs: readonly (readonly [string, string])[];
  current: string;
  onSelect: (id: string) => void;
}) {
  const buttons = useRef<(HTMLButtonElement | null)[]>([]);
  const move = (event: KeyboardEvent, index: number) => {
    const last = props.tabs.length - 1;
    const next =
      event.key === "ArrowRight" ? (index === last ? 0 : index + 1)
      : event.key === "ArrowLeft" ? (index === 0 ? last : index - 1)
      : event.key === "Home" ? 0
      : event.key === "End" ? last
      : null;
    const tab = next === null ? undefined : props.tabs[next];
    if (next === null || !tab) return;
    event.preventDefault();
    props.onSelect(tab[0]);
    buttons.current[next]?.focus();
  };
  return (
    <div role="tablist" aria-label={props.label} className="tabs">
      {props.tabs.map(([id, text], index) => {
        const selected = id === props.current;
        return (
          <button
            key={id}
            ref={(el) => {
              buttons.current[index] = el;
            }}
            type="button"
            role="tab"
            id={`${props.prefix}-tab-${id}`}
            aria-selected={selected}
            aria-controls={selected ? `${props.prefix}-panel-${id}` : undefined}
            tabIndex={selected ? 0 : -1}
            onClick={() => props.onSelect(id)}
            onKeyDown={(e) => move(e, index)}
          >
            {text}
          </button>
        );
      })}
    </div>
  );
}

export function TabPanel({ prefix, id, children }: { prefix: string; id: string; children: ReactNode }) {
  return (
    <div role="tabpanel" id={`${prefix}-panel-${id}`} aria-labelledby={`${prefix}-tab-${id}`} className="tab-panel">
      {children}
    </div>
  );
}

/// A text box (or a radio group, a select) kept in the URL's query (`?key=`), so a view can be shared: the box
/// follows what is typed or chosen at once and the URL follows the box. Navigation applies a new URL in a transition, later than the keystroke; a box
/// bound to the URL alone would lose what is typed in between (typed fast, `libc6` arrived as `ibc6`). A URL that
/// changes for another reason (a link, the back button) is followed (`lib/searchtext.ts` tells which is which).
export function useSearchText(key: string): [string, (value: string) => void] {
  const [params, setParams] = useSearchParams();
  const inUrl = params.get(key) ?? "";
  const [text, setText] = useState(inUrl);
  // The values written here and not yet seen back in the URL, oldest first.
  const written = useRef<string[]>([]);
  useEffect(() => {
    const seen = seenInUrl(written.current, inUrl);
    written.current = seen.written;
    if (seen.follow) setText(inUrl);
  }, [inUrl]);
  const set = (value: string) => {
    setText(value);
    written.current.push(value);
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        if (value) next.set(key, value);
        else next.delete(key);
        return next;
      },
      { replace: true },
    );
  };
  return [text, set];
}

/// A status badge of one of the stylesheet's tones, with its symbol so it never reads by colour alone.
export function ToneBadge({ badge, testId }: { badge: Badge; testId?: string }) {
  return (
    <span className={`badge badge-${badge.tone}`} data-testid={testId}>
      <span aria-hidden="true">{badge.symbol} </span>
      {badge.label}
    </span>
  );
}

/// A time as the local date and time.
export function Stamp({ at }: { at: string | null }) {
  if (!at) return <span>—</span>;
  return <time dateTime={at}>{stamp(at)}</time>;
}
