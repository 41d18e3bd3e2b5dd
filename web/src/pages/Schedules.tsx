// Schedules: the list with each one's timing, state, next run and last fire; one schedule's settings, file as
// written, next times and recent fires, with Pause / Resume, Run now and Delete; and the New schedule form, which
// the backend checks as `kanade schedule create` does. The words come from `lib/schedules.ts`.

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, type ReactNode, useEffect, useState } from "react";
import { Link, useLocation, useNavigate, useParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Stamp, ToneBadge, ExecBadge, ExecLink, Loading, PageTitle, When } from "../components";
import { ApiError } from "../lib/api";
import { stamp } from "../lib/format";
import { keys } from "../lib/live";
import {
  type FireRow,
  SCHEDULE_PLACEHOLDER,
  deletePrompt,
  fireRows,
  firesOncePerPc,
  nextRun,
  runNowNote,
  scheduleFacts,
  scheduleRows,
  stateBadge,
  until,
} from "../lib/schedules";
import type { RunNowReply } from "../lib/types";

/// The current time, moving on every `ms`: "next run in 9 s" counts down between fetches.
function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/// What a page was handed when it was navigated to: the schedule just deleted, or what creating one did.
function noteOf(state: unknown): { deleted?: string; stored?: string } {
  const s = typeof state === "object" && state !== null ? (state as Record<string, unknown>) : {};
  return {
    deleted: typeof s.deleted === "string" ? s.deleted : undefined,
    stored: typeof s.stored === "string" ? s.stored : undefined,
  };
}

export function SchedulesPage() {
  const { api, may } = useAuth();
  const location = useLocation();
  const now = useNow(1000);
  const [creating, setCreating] = useState(false);
  const schedules = useQuery({ queryKey: keys.schedules, queryFn: api.schedules });
  const rows = schedules.data ? scheduleRows(schedules.data, now) : undefined;
  const { deleted } = noteOf(location.state);
  return (
    <section aria-labelledby="page-title">
      <PageTitle
        actions={
          may.operate ? (
            <button type="button" className="primary" onClick={() => setCreating((c) => !c)} aria-expanded={creating} aria-controls="new-schedule">
              New schedule
            </button>
          ) : null
        }
      >
        Schedules
      </PageTitle>
      {deleted ? (
        <p className="ok-note" role="status">
          Deleted the schedule {deleted}.
        </p>
      ) : null}
      {creating ? <NewSchedule onCancel={() => setCreating(false)} /> : null}
      {schedules.isPending ? <Loading what="schedules" /> : null}
      {schedules.isError ? <ErrorNote error={schedules.error} what="load the schedules" /> : null}
      {rows && rows.length === 0 ? (
        <p className="muted">
          No schedules. Create one with New schedule, or with <code>kanade schedule create schedules/echo-every-10s.yaml</code>.
        </p>
      ) : null}
      {rows && rows.length > 0 ? (
        <div className="table-wrap">
          <table aria-label="Schedules">
            <thead>
              <tr>
                <th scope="col">Schedule</th>
                <th scope="col">Job</th>
                <th scope="col">When</th>
                <th scope="col">State</th>
                <th scope="col">Next run</th>
                <th scope="col">Last fire</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.id} data-schedule={row.id}>
                  <td>
                    <Link to={`/schedules/${encodeURIComponent(row.id)}`}>{row.id}</Link>
                    {row.description ? (
                      <>
                        <br />
                        <span className="muted small">{row.description}</span>
                      </>
                    ) : null}
                  </td>
                  <td>{row.job ? <Link to={`/jobs/${encodeURIComponent(row.job)}`}>{row.job}</Link> : "—"}</td>
                  <td>{row.when}</td>
                  <td>
                    <ToneBadge badge={row.state} />
                  </td>
                  <td>{row.next.at ? <time dateTime={row.next.at} title={stamp(row.next.at)}>{row.next.text}</time> : <span className="muted">{row.next.text}</span>}</td>
                  <td>{row.last ? <LastFire fire={row.last} schedule={row.id} /> : <span className="muted">none yet</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function LastFire({ fire, schedule }: { fire: FireRow; schedule: string }) {
  return (
    <>
      <ToneBadge badge={fire.outcome} /> <span className="small"><When at={fire.at} /></span>
      {fire.exec ? (
        <>
          <br />
          {/* Named in full for a screen reader's list of links; not with a visually hidden span, whose absolute
              position would escape the table's scrolling box and widen a narrow page. */}
          <Link to={`/activity/${encodeURIComponent(fire.exec)}`} aria-label={`execution of ${schedule}'s last fire`}>
            execution
          </Link>{" "}
          {fire.status ? <ExecBadge status={fire.status} /> : null}
        </>
      ) : null}
    </>
  );
}

function NewSchedule({ onCancel }: { onCancel: () => void }) {
  const { api } = useAuth();
  const client = useQueryClient();
  const navigate = useNavigate();
  const [yaml, setYaml] = useState("");
  const create = useMutation({
    mutationFn: (text: string) => api.createSchedule(text),
    onSuccess: (stored) => {
      const id = stored.schedule.schedule.id;
      client.setQueryData(keys.schedule(id), stored.schedule);
      void client.invalidateQueries({ queryKey: keys.schedules });
      void navigate(`/schedules/${encodeURIComponent(id)}`, { state: { stored: stored.action } });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate(yaml);
  };
  const refused = create.error instanceof ApiError && create.error.status === 400 ? create.error : null;
  return (
    <form id="new-schedule" className="panel" onSubmit={submit} aria-labelledby="new-schedule-title">
      <h2 id="new-schedule-title">New schedule</h2>
      <div className="field">
        <label htmlFor="schedule-yaml">Schedule file (YAML)</label>
        <textarea
          id="schedule-yaml"
          name="schedule"
          rows={12}
          spellCheck={false}
          value={yaml}
          placeholder={SCHEDULE_PLACEHOLDER}
          onChange={(e) => setYaml(e.target.value)}
          aria-describedby={refused ? "schedule-yaml-help schedule-error" : "schedule-yaml-help"}
          aria-invalid={refused ? true : undefined}
          autoFocus
        />
        <p id="schedule-yaml-help" className="help">
          As for <code>kanade schedule create</code>: <code>id</code>, <code>job</code> (a job in the catalogue, or its
          manifest), one of <code>cron</code>, <code>every</code>, <code>at</code> or <code>once</code>, and the
          targets. A schedule with the id of one that exists replaces it.
        </p>
      </div>
      {refused ? (
        <div id="schedule-error" className="error" role="alert" data-testid="schedule-error">
          <p>The backend refused the schedule:</p>
          <pre data-testid="schedule-error-message">{refused.message}</pre>
        </div>
      ) : create.isError ? (
        <ErrorNote error={create.error} what="store the schedule" />
      ) : null}
      <div className="actions">
        <button type="submit" className="primary" disabled={create.isPending || yaml.trim() === ""}>
          {create.isPending ? "Creating…" : "Create"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export function SchedulePage() {
  const { id = "" } = useParams();
  const { api, may } = useAuth();
  const client = useQueryClient();
  const navigate = useNavigate();
  const location = useLocation();
  const now = useNow(1000);
  const [ran, setRan] = useState<RunNowReply | null>(null);
  const remove = useMutation({
    mutationFn: () => api.deleteSchedule(id),
    onSuccess: () => {
      client.removeQueries({ queryKey: keys.schedule(id) });
      void client.invalidateQueries({ queryKey: keys.schedules });
      void navigate("/schedules", { state: { deleted: id } });
    },
  });
  // Not asked for again while it is being deleted: the change note of the deletion would ask for it, and find it gone.
  const view = useQuery({
    queryKey: keys.schedule(id),
    queryFn: () => api.schedule(id),
    enabled: remove.isIdle || remove.isError,
  });
  const refresh = () => {
    void client.invalidateQueries({ queryKey: keys.schedule(id) });
    void client.invalidateQueries({ queryKey: keys.schedules });
  };
  const pause = useMutation({
    mutationFn: (paused: boolean) => api.pauseSchedule(id, paused),
    onSuccess: (next) => {
      client.setQueryData(keys.schedule(id), next);
      refresh();
    },
  });
  const runNow = useMutation({
    mutationFn: () => api.runScheduleNow(id),
    onSuccess: (reply) => {
      setRan(reply);
      refresh();
    },
  });
  const v = view.data;
  const paused = v ? !v.schedule.enabled : false;
  const once = v ? firesOncePerPc(v.schedule.when) : false;
  const { stored } = noteOf(location.state);
  const note = ran ? runNowNote(ran) : null;
  const error = pause.error ?? runNow.error ?? remove.error;
  const next = v ? nextRun(v, now) : null;
  return (
    <section aria-labelledby="page-title">
      <PageTitle
        actions={
          v && may.operate ? (
            <>
              <button type="button" onClick={() => pause.mutate(!paused)} disabled={pause.isPending}>
                {paused ? "Resume" : "Pause"}
              </button>
              <button
                type="button"
                onClick={() => runNow.mutate()}
                disabled={runNow.isPending || once}
                title={once ? "A once-per-PC schedule reaches every PC on its own" : undefined}
              >
                {runNow.isPending ? "Running…" : "Run now"}
              </button>
              <button type="button" className="danger" onClick={() => window.confirm(deletePrompt(v, id)) && remove.mutate()} disabled={!remove.isIdle && !remove.isError}>
                {remove.isPending ? "Deleting…" : "Delete…"}
              </button>
            </>
          ) : null
        }
      >
        {id} {v ? <ToneBadge badge={stateBadge(v.state)} testId="schedule-state" /> : null}
      </PageTitle>
      <p>
        <Link to="/schedules">← All schedules</Link>
      </p>
      {stored ? (
        <p className="ok-note" role="status">
          {stored === "created" ? "Created." : stored === "updated" ? "Updated: it replaces the schedule stored under this id." : "Unchanged: the same schedule was stored already."}
        </p>
      ) : null}
      {note ? (
        <p className="ok-note" role="status" data-testid="run-now-note">
          {note.text} {note.exec ? <ExecLink exec={note.exec} /> : null}
        </p>
      ) : null}
      {error ? <ErrorNote error={error} what="do that" /> : null}
      {view.isPending && view.fetchStatus !== "idle" ? <Loading what="the schedule" /> : null}
      {view.isError ? <ErrorNote error={view.error} what="load the schedule" /> : null}
      {v ? (
        <>
          {v.schedule.description ? <p>{v.schedule.description}</p> : null}
          <div className="columns">
            <section className="panel" aria-labelledby="settings-title">
              <h2 id="settings-title">Settings</h2>
              <dl className="facts">
                {scheduleFacts(v.schedule).map((fact) => (
                  <Fact key={fact.term} term={fact.term}>
                    {fact.job ? <Link to={`/jobs/${encodeURIComponent(fact.job)}`}>{fact.text}</Link> : fact.text}
                  </Fact>
                ))}
                <Fact term="Created">
                  <When at={v.created_at} /> by {v.created_by}
                </Fact>
                <Fact term="Changed">
                  <When at={v.updated_at} /> by {v.updated_by}
                </Fact>
              </dl>
            </section>
            <section className="panel" aria-labelledby="next-title">
              <h2 id="next-title">Next runs</h2>
              <p data-testid="next-run">
                {next?.at ? (
                  <>
                    Next run <time dateTime={next.at}>{next.text}</time>
                  </>
                ) : (
                  <span className="muted">{next?.text}</span>
                )}
              </p>
              {v.next.length > 0 ? (
                <ol aria-label="Next occurrences" data-testid="next-list">
                  {v.next.map((at) => (
                    <li key={at}>
                      <Stamp at={at} /> <span className="muted small">({until(at, now) ?? "—"})</span>
                    </li>
                  ))}
                </ol>
              ) : null}
            </section>
          </div>
          <Fires view={v} />
          <section aria-labelledby="source-title" className="section-gap">
            <h2 id="source-title">File as written</h2>
            <pre className="code" tabIndex={0} aria-label={`File of ${id}`} data-testid="schedule-source">
              {v.source}
            </pre>
          </section>
        </>
      ) : null}
    </section>
  );
}

function Fact({ term, children }: { term: string; children: ReactNode }) {
  return (
    <>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </>
  );
}

function Fires({ view }: { view: unknown }) {
  const rows = fireRows(view);
  return (
    <section aria-labelledby="fires-title" className="section-gap">
      <h2 id="fires-title">Recent fires</h2>
      {rows.length === 0 ? (
        <p className="muted">No fires yet.</p>
      ) : (
        <div className="table-wrap">
          <table aria-labelledby="fires-title">
            <thead>
              <tr>
                <th scope="col">Occurrence</th>
                <th scope="col">Outcome</th>
                <th scope="col">Execution</th>
                <th scope="col">Status</th>
                <th scope="col">Decided by</th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((f) => (
                <tr key={f.key}>
                  <td>
                    <Stamp at={f.at} />
                  </td>
                  <td>
                    <ToneBadge badge={f.outcome} />
                  </td>
                  <td>{f.exec ? <ExecLink exec={f.exec} /> : "—"}</td>
                  <td>
                    {f.status ? <ExecBadge status={f.status} /> : "—"}
                    {f.targets ? <span className="muted small"> {f.targets}</span> : null}
                  </td>
                  <td>
                    {f.decidedBy}
                    {f.decidedAt ? (
                      <span className="muted small">
                        {" "}
                        <When at={f.decidedAt} />
                      </span>
                    ) : null}
                  </td>
                  <td className="details">{f.reason ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
