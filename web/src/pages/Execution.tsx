// One execution: its progress and waves, every target's state, and one target's output — the stored result when
// it has finished, the live stream while it runs.

import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { FullOutput } from "../FullOutput";
import {
  ErrorNote,
  ExecActions,
  ExecBadge,
  Loading,
  LoadMore,
  PageTitle,
  PcLink,
  ProgressBar,
  Stamp,
  StateBadge,
  When,
} from "../components";
import { took } from "../lib/format";
import { keys } from "../lib/live";
import { LiveOutput } from "../lib/output";
import { nextCursor, rowsOf } from "../lib/paging";
import { progress } from "../lib/progress";
import { follow } from "../lib/sse";
import type { OutputChunk, ResultRow, TargetState } from "../lib/types";
import { Waves } from "./Activity";

/// Targets per page.
const TARGET_ROWS = 200;

export function ExecutionPage() {
  const { exec = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const pc = params.get("pc");
  const { api } = useAuth();
  const execution = useQuery({ queryKey: keys.execution(exec), queryFn: () => api.execution(exec) });
  // A page of targets at a time, by pc id: an execution at 10,000 agents shows its first rows at once.
  const targets = useInfiniteQuery({
    queryKey: keys.targets(exec),
    queryFn: ({ pageParam }) => api.targets(exec, { cursor: pageParam, limit: TARGET_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
  });
  const targetRows = targets.data ? rowsOf(targets.data.pages, (t) => t.pc_id) : undefined;
  const e = execution.data;
  return (
    <section aria-labelledby="page-title">
      <PageTitle>
        {e ? (
          <>
            {e.job_id} <span className="muted">v{e.version}</span> <ExecBadge status={e.status} />
          </>
        ) : (
          exec
        )}
      </PageTitle>
      <p>
        <Link to="/activity">← All activity</Link> <span className="muted small">execution {exec}</span>
      </p>
      {execution.isPending ? <Loading what="the execution" /> : null}
      {execution.isError ? <ErrorNote error={execution.error} what="load the execution" /> : null}
      {e ? (
        <>
          <p className="muted small">
            {e.requested_by ? `Requested by ${e.requested_by} ` : ""}
            <When at={e.created_at ?? e.started_at} />
            {e.decided_by ? `; ${e.status === "rejected" ? "rejected" : "approved"} by ${e.decided_by}` : ""}
            {e.status_reason ? `; ${e.status_reason}` : ""}
          </p>
          <ProgressBar progress={progress(e.by_status, e.target_count)} label="Progress" />
          {e.waves.length > 0 ? <Waves exec={e} /> : null}
          <ExecActions exec={e} />
        </>
      ) : null}
      <div className="split wide-right">
        <section aria-labelledby="targets-title" className="panel">
          <h2 id="targets-title">Targets</h2>
          {targets.isError ? <ErrorNote error={targets.error} what="load the targets" /> : null}
          {targetRows ? (
            <TargetTable targets={targetRows} selected={pc} onSelect={(p) => setParams({ pc: p })} />
          ) : null}
          <LoadMore pages={targets} what="targets" />
        </section>
        {pc ? (
          <ResultPanel exec={exec} pc={pc} target={targetRows?.find((t) => t.pc_id === pc)} />
        ) : (
          <p className="muted">Choose a target to read its output.</p>
        )}
      </div>
    </section>
  );
}

/// Where a run held on its PC for the user's consent stands (a job's `client.consent`).
function Held({ held }: { held: NonNullable<TargetState["held"]> }) {
  const said =
    held.state === "deferred"
      ? `deferred by ${held.by ?? "the user"} until`
      : held.state === "quiet"
        ? "quiet hours on the PC until"
        : "waiting for the user's consent until";
  return (
    <span className="muted small" data-testid="held">
      {" "}
      {said} <Stamp at={held.until} />
    </span>
  );
}

function TargetTable(props: { targets: TargetState[]; selected: string | null; onSelect: (pc: string) => void }) {
  if (props.targets.length === 0) return <p className="muted">No targets.</p>;
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">PC</th>
            <th scope="col">State</th>
            <th scope="col">Exit</th>
            <th scope="col">Took</th>
            <th scope="col">
              <span className="visually-hidden">Output</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {props.targets.map((t) => (
            <tr key={t.pc_id} aria-current={t.pc_id === props.selected ? "true" : undefined} className={t.pc_id === props.selected ? "selected" : undefined}>
              <td>
                <PcLink pc={t.pc_id} />
                {t.wave ? <span className="muted small"> wave {t.wave}</span> : null}
              </td>
              <td>
                <StateBadge state={t.state} />
                {t.reason ? <span className="muted small"> {t.reason}</span> : null}
                {t.held ? <Held held={t.held} /> : null}
              </td>
              <td>{t.exit_code ?? "—"}</td>
              <td>{took(t.started_at, t.finished_at)}</td>
              <td>
                {t.state !== "pending" ? (
                  <button
                    type="button"
                    className="link"
                    onClick={() => props.onSelect(t.pc_id)}
                    aria-label={t.state === "running" ? `Watch output of ${t.pc_id}` : `Output of ${t.pc_id}`}
                  >
                    {t.state === "running" ? "Watch" : "Output"}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function ResultPanel({ exec, pc, target }: { exec: string; pc: string; target: TargetState | undefined }) {
  const { api } = useAuth();
  const running = target?.state === "running" || target?.state === "pending";
  const result = useQuery({
    queryKey: [...keys.execResults(exec), pc],
    queryFn: async () => (await api.results({ exec_id: exec, pc_id: pc, limit: 1 })).items[0] ?? null,
  });
  return (
    <section aria-labelledby="result-title" className="panel result">
      <h2 id="result-title">
        Output of <PcLink pc={pc} />
      </h2>
      {result.isError ? <ErrorNote error={result.error} what="load the result" /> : null}
      {result.data ? <StoredResult result={result.data} /> : null}
      {result.isSuccess && !result.data && running ? <Live exec={exec} pc={pc} /> : null}
      {result.isSuccess && !result.data && !running ? <p className="muted">No result from this PC yet.</p> : null}
    </section>
  );
}

function StoredResult({ result }: { result: ResultRow }) {
  return (
    <>
      <p>
        <StateBadge state={result.status} />
        {result.exit_code !== null ? ` exit code ${result.exit_code}` : ""}
        {result.reason ? ` (${result.reason})` : ""} · took {took(result.started_at, result.finished_at)} · finished{" "}
        <When at={result.finished_at} />
      </p>
      <h3>stdout</h3>
      <pre className="code output" tabIndex={0} aria-label="Standard output" data-testid="stdout">
        {result.stdout || <span className="muted">(empty)</span>}
      </pre>
      <FullOutput result={result} stream="stdout" />
      <h3>stderr</h3>
      <pre className="code output" tabIndex={0} aria-label="Standard error" data-testid="stderr">
        {result.stderr || <span className="muted">(empty)</span>}
      </pre>
      <FullOutput result={result} stream="stderr" />
    </>
  );
}

function Live({ exec, pc }: { exec: string; pc: string }) {
  const { authority } = useAuth();
  const [output] = useState(() => new LiveOutput());
  const [, setVersion] = useState(0);
  const [state, setState] = useState("connecting");
  useEffect(() => {
    const abort = new AbortController();
    void follow(
      {
        path: `/api/executions/${encodeURIComponent(exec)}/output?pc_id=${encodeURIComponent(pc)}`,
        auth: authority,
        onEvent: (event) => {
          if (event.event !== "chunk") return;
          try {
            if (output.add(JSON.parse(event.data) as OutputChunk)) setVersion((v) => v + 1);
          } catch {
            // A chunk that is not JSON is not shown; the stored result will have the output.
          }
        },
        onState: (s) => setState(s),
      },
      abort.signal,
    );
    return () => abort.abort();
  }, [exec, pc, authority, output]);
  return (
    <>
      <p role="status" className="small">
        {state === "live" ? "Running; output appears as it is written." : "Connecting to the live output…"}
        {output.missed > 0 ? ` ${output.missed} chunk(s) were missed; the stored result will have everything.` : ""}
      </p>
      <pre className="code output" tabIndex={0} aria-label="Live output" aria-live="off" data-testid="live-output">
        {output.text() || <span className="muted">(nothing yet)</span>}
      </pre>
    </>
  );
}
