// Fleet: the state of every PC at a glance — how many are online, which agent versions run, what failed lately
// and what is running now.

import { useQueries, useQuery } from "@tanstack/react-query";
import { Link } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, ExecBadge, ExecLink, Loading, OnlineBadge, PageTitle, PcLink, ProgressBar, ResultsTable } from "../components";
import { summarize } from "../lib/agents";
import { everyPage } from "../lib/paging";
import { keys } from "../lib/live";
import { mayBeRunning, progress } from "../lib/progress";

/// Statuses that count as a failure on this page.
const FAILURES = ["failed", "timeout", "killed"] as const;

export function FleetPage() {
  const { api } = useAuth();
  // The counts need every agent: page through them all (10 requests at 10,000 agents).
  const agents = useQuery({
    queryKey: keys.agents,
    queryFn: () => everyPage((cursor) => api.agents({ cursor, limit: 1000 })),
    refetchInterval: 15_000,
  });
  const failures = useQueries({
    queries: FAILURES.map((status) => ({
      queryKey: keys.results(`status=${status}&limit=10`),
      queryFn: async () => (await api.results({ status, limit: 10 })).items,
    })),
  });
  const executions = useQuery({ queryKey: keys.executions("limit=50"), queryFn: async () => (await api.executions({ limit: 50 })).items });

  const recent = failures
    .flatMap((q) => q.data ?? [])
    .sort((a, b) => b.finished_at.localeCompare(a.finished_at))
    .slice(0, 10);
  const failureError = failures.find((q) => q.isError)?.error;
  const active = (executions.data ?? []).filter((e) => mayBeRunning(e) || e.status === "pending_approval");

  return (
    <section aria-labelledby="page-title">
      <PageTitle>Fleet</PageTitle>
      {agents.isPending ? <Loading what="agents" /> : null}
      {agents.isError ? <ErrorNote error={agents.error} what="load the agents" /> : null}
      {agents.data ? <Summary agents={agents.data} /> : null}

      <div className="columns">
        <section aria-labelledby="active-title" className="panel">
          <h2 id="active-title">Running now</h2>
          {executions.isError ? <ErrorNote error={executions.error} what="load executions" /> : null}
          {executions.data && active.length === 0 ? <p className="muted">Nothing is running.</p> : null}
          <ul className="plain">
            {active.map((e) => (
              <li key={e.exec_id} className="row-item">
                <div>
                  <ExecLink exec={e.exec_id}>{e.job_id}</ExecLink> <ExecBadge status={e.status} />
                </div>
                <ProgressBar progress={progress(e.by_status, e.target_count)} label={`${e.job_id} progress`} />
              </li>
            ))}
          </ul>
          <p>
            <Link to="/activity">All activity</Link>
          </p>
        </section>

        <section aria-labelledby="failures-title" className="panel">
          <h2 id="failures-title">Recent failures</h2>
          {failureError ? <ErrorNote error={failureError} what="load recent failures" /> : null}
          {recent.length === 0 && failures.every((q) => q.isSuccess) ? <p className="muted">No failures.</p> : null}
          {recent.length > 0 ? <ResultsTable results={recent} showPc /> : null}
        </section>
      </div>
    </section>
  );
}

function Summary({ agents }: { agents: Parameters<typeof summarize>[0] }) {
  const s = summarize(agents);
  return (
    <>
      <dl className="cards">
        <div className="card">
          <dt>Online</dt>
          <dd data-testid="online-count">{s.online}</dd>
        </div>
        <div className="card">
          <dt>Offline</dt>
          <dd data-testid="offline-count">{s.offline}</dd>
        </div>
        <div className="card">
          <dt>Agents</dt>
          <dd>{s.total}</dd>
        </div>
        <div className="card">
          <dt>Versions</dt>
          <dd>{s.versions.length}</dd>
        </div>
      </dl>
      {s.total === 0 ? (
        <p className="muted">
          No agent has reported yet. Install one (see the README) and it appears here within a heartbeat.
        </p>
      ) : null}
      <div className="columns">
        <section aria-labelledby="versions-title" className="panel">
          <h2 id="versions-title">Agent versions</h2>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Agents</th>
                  <th scope="col">Online</th>
                </tr>
              </thead>
              <tbody>
                {s.versions.map((v) => (
                  <tr key={v.version}>
                    <td>
                      <Link to={`/agents?q=${encodeURIComponent(v.version)}`}>{v.version}</Link>
                    </td>
                    <td>{v.count}</td>
                    <td>{v.online}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
        <section aria-labelledby="os-title" className="panel">
          <h2 id="os-title">Operating systems</h2>
          <ul className="plain">
            {s.os.map((o) => (
              <li key={o.os}>
                {o.os}: {o.count}
              </li>
            ))}
          </ul>
          {s.outboxFull.length > 0 ? (
            <>
              <h3>Outbox full</h3>
              <p className="help">These agents cannot deliver results and send new ones without output:</p>
              <ul className="plain">
                {s.outboxFull.map((pc) => (
                  <li key={pc}>
                    <PcLink pc={pc} /> <OnlineBadge online={agents.find((a) => a.pc_id === pc)?.online ?? false} />
                  </li>
                ))}
              </ul>
            </>
          ) : null}
        </section>
      </div>
    </>
  );
}
