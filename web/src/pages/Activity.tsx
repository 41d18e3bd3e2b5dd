// Activity: every execution, newest first, with live progress, its waves, and what an operator may do to it.

import { useQuery } from "@tanstack/react-query";

import { useAuth } from "../auth";
import { ErrorNote, ExecActions, ExecBadge, ExecLink, Loading, PageTitle, ProgressBar, useSearchText, When } from "../components";
import { keys } from "../lib/live";
import { progress } from "../lib/progress";
import type { Execution } from "../lib/types";

const STATUSES = ["pending_approval", "rolling_out", "running", "completed", "halted", "rejected", "superseded"];

export function ActivityPage() {
  const { api } = useAuth();
  const [status, setStatus] = useSearchText("status");
  const executions = useQuery({
    queryKey: keys.executions(`status=${status}&limit=100`),
    queryFn: async () => (await api.executions({ status: status || undefined, limit: 100 })).items,
  });
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Activity</PageTitle>
      <div className="toolbar">
        <label htmlFor="status-filter">Show</label>
        <select id="status-filter" value={status} onChange={(e) => setStatus(e.target.value)}>
          <option value="">every execution</option>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s.replace(/_/g, " ")}
            </option>
          ))}
        </select>
      </div>
      {executions.isPending ? <Loading what="executions" /> : null}
      {executions.isError ? <ErrorNote error={executions.error} what="load executions" /> : null}
      {executions.data && executions.data.length === 0 ? <p className="muted">No executions{status ? " with that status" : ""}.</p> : null}
      <ol className="plain exec-list">
        {executions.data?.map((e) => (
          <li key={e.exec_id}>
            <ExecutionCard exec={e} />
          </li>
        ))}
      </ol>
    </section>
  );
}

export function ExecutionCard({ exec }: { exec: Execution }) {
  return (
    <article className="exec-card" aria-labelledby={`exec-${exec.exec_id}`}>
      <header>
        <h2 id={`exec-${exec.exec_id}`}>
          <ExecLink exec={exec.exec_id}>
            {exec.job_id} <span className="muted">v{exec.version}</span>
          </ExecLink>
        </h2>
        <ExecBadge status={exec.status} />
        <span className="muted small">
          {exec.requested_by ? `by ${exec.requested_by}, ` : ""}
          <When at={exec.created_at ?? exec.started_at} />
          {exec.decided_by ? `, ${exec.status === "rejected" ? "rejected" : "approved"} by ${exec.decided_by}` : ""}
        </span>
      </header>
      {exec.status_reason ? <p className="small">{exec.status_reason}</p> : null}
      <ProgressBar progress={progress(exec.by_status, exec.target_count)} label={`Progress of ${exec.job_id}`} />
      {exec.waves.length > 0 ? <Waves exec={exec} /> : null}
      <ExecActions exec={exec} />
    </article>
  );
}

export function Waves({ exec }: { exec: Execution }) {
  return (
    <ol className="waves" aria-label="Waves">
      {exec.waves.map((w) => (
        <li key={w.wave} className={`wave wave-${w.state}`}>
          <span>
            <strong>
              {w.wave}. {w.group}
            </strong>{" "}
            {w.state}
            {w.state === "pending" && w.due_at ? (
              <>
                {" "}
                (due <When at={w.due_at} />)
              </>
            ) : null}
          </span>
          <ProgressBar progress={progress(w.by_status, w.targets)} label={`Wave ${w.wave} (${w.group})`} />
        </li>
      ))}
    </ol>
  );
}
