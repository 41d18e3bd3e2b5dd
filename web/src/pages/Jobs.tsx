// Jobs: the catalogue, each manifest as written, and the dialog that fires one after showing whom it will hit.

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useEffect, useRef, useState } from "react";
import { Link, useLocation, useNavigate, useParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, PageTitle, When } from "../components";
import { type ExecForm, type Handoff, type WaveRow, EMPTY_WAVE, MAX_WAVES, check, formFor, handoffOf } from "../lib/execform";
import { millis } from "../lib/format";
import { keys } from "../lib/live";
import { describeTargets } from "../lib/targets";
import type { StoredJob } from "../lib/types";

export function JobsPage() {
  const { job: selected } = useParams();
  const { api } = useAuth();
  const location = useLocation();
  const navigate = useNavigate();
  // PCs handed over from another page (an inventory query's): the Run dialog opens on them, whichever job is chosen.
  const handoff = handoffOf(location.state);
  const jobs = useQuery({ queryKey: keys.jobs, queryFn: api.jobs });
  const current = jobs.data?.find((j) => j.job.id === selected);
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Jobs</PageTitle>
      {handoff ? (
        <div className="handoff" role="status" data-testid="handoff">
          <p>
            <strong>
              {handoff.pcs.length} PC{handoff.pcs.length === 1 ? "" : "s"}
            </strong>{" "}
            from {handoff.from} {handoff.pcs.length === 1 ? "is" : "are"} ready as targets: choose a job and Run… opens on{" "}
            {handoff.pcs.length === 1 ? "it" : "them"}.{" "}
            <button type="button" className="link" onClick={() => void navigate(location.pathname, { replace: true, state: null })}>
              Drop them
            </button>
          </p>
          <p className="small muted">
            {handoff.pcs.slice(0, 10).join(", ")}
            {handoff.pcs.length > 10 ? ` and ${handoff.pcs.length - 10} more` : ""}
          </p>
        </div>
      ) : null}
      {jobs.isPending ? <Loading what="jobs" /> : null}
      {jobs.isError ? <ErrorNote error={jobs.error} what="load the job catalogue" /> : null}
      {jobs.data && jobs.data.length === 0 ? (
        <p className="muted">
          The catalogue is empty. Register a manifest with <code>kanade job create jobs/echo.yaml</code>.
        </p>
      ) : null}
      <div className="split">
        {jobs.data && jobs.data.length > 0 ? (
          <nav aria-label="Jobs" className="job-list">
            <ul className="plain">
              {jobs.data.map((j) => (
                <li key={j.job.id}>
                  <Link
                    to={`/jobs/${encodeURIComponent(j.job.id)}`}
                    state={location.state}
                    aria-current={j.job.id === selected ? "page" : undefined}
                    className={j.job.id === selected ? "selected" : undefined}
                  >
                    <strong>{j.job.id}</strong> <span className="muted">v{j.job.version}</span>
                    {j.revoked ? <span className="badge badge-failed"> revoked</span> : null}
                    {j.job.require_approval ? <span className="badge badge-pending"> needs approval</span> : null}
                    <br />
                    <span className="muted small">{j.job.description || describeTargets(j.job.targets)}</span>
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
        ) : null}
        {current ? <JobDetail stored={current} handoff={handoff} /> : null}
        {jobs.data && selected && !current ? <p className="error">No job `{selected}` in the catalogue.</p> : null}
        {jobs.data && jobs.data.length > 0 && !selected ? <p className="muted">Choose a job to see its manifest.</p> : null}
      </div>
    </section>
  );
}

function JobDetail({ stored, handoff }: { stored: StoredJob; handoff: Handoff | null }) {
  const { api, may, session } = useAuth();
  const client = useQueryClient();
  const [open, setOpen] = useState(false);
  const job = stored.job;
  const revoke = useMutation({
    mutationFn: (revoked: boolean) => api.revoke(job.id, revoked),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.jobs }),
  });
  return (
    <article className="job-detail" aria-labelledby="job-title">
      <div className="page-title">
        <h2 id="job-title">
          {job.id} <span className="muted">v{job.version}</span>
        </h2>
        {may.operate ? (
          <div className="actions">
            <button type="button" className="primary" onClick={() => setOpen(true)} disabled={stored.revoked}>
              Run…
            </button>
            {stored.revoked ? (
              <button type="button" onClick={() => revoke.mutate(false)} disabled={revoke.isPending}>
                Allow again
              </button>
            ) : (
              <button
                type="button"
                className="danger"
                onClick={() => {
                  if (window.confirm(`Revoke ${job.id}? Runs that have not started are skipped on every agent.`)) revoke.mutate(true);
                }}
                disabled={revoke.isPending}
              >
                Revoke
              </button>
            )}
          </div>
        ) : (
          <p className="muted small" data-testid="role-note">
            Your role ({session.role}) may look but not run or revoke jobs.
          </p>
        )}
      </div>
      {revoke.isError ? <ErrorNote error={revoke.error} what="change the job" /> : null}
      {stored.revoked ? (
        <p className="warn">Revoked: agents skip its runs that have not started. Allow it again to run it.</p>
      ) : null}
      {job.description ? <p>{job.description}</p> : null}
      <dl className="facts">
        <dt>Targets</dt>
        <dd>{describeTargets(job.targets)}</dd>
        <dt>Waves</dt>
        <dd>
          {job.waves.length === 0
            ? "none: all at once"
            : job.waves.map((w, i) => `${i + 1}. ${w.group} after ${millis(w.delay)} (halt over ${w.max_failure_pct}% failed)`).join("; ")}
        </dd>
        <dt>Shell</dt>
        <dd>{job.shell}</dd>
        <dt>Timeout</dt>
        <dd>{millis(job.timeout)}</dd>
        <dt>Approval</dt>
        <dd>{job.require_approval ? "a second operator must approve each run" : "not needed"}</dd>
        <dt>Stored</dt>
        <dd>
          <When at={stored.created_at} /> by {stored.created_by}
        </dd>
      </dl>
      <h3>Manifest</h3>
      <pre className="code" tabIndex={0} aria-label={`Manifest of ${job.id}`}>
        {stored.manifest}
      </pre>
      {open ? <ExecDialog stored={stored} handoff={handoff} onClose={() => setOpen(false)} /> : null}
    </article>
  );
}

/// Debounces a value: typing in the dialog asks for one preview, not one per key.
function useSettled<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

function ExecDialog({ stored, handoff, onClose }: { stored: StoredJob; handoff: Handoff | null; onClose: () => void }) {
  const { api } = useAuth();
  const navigate = useNavigate();
  const dialog = useRef<HTMLDialogElement>(null);
  const job = stored.job;
  const [form, setForm] = useState<ExecForm>(() => formFor(job.targets, handoff));
  const checked = check(form, !!job.targets);
  const bodyText = checked.ok ? JSON.stringify(checked.body) : "";
  const settledBody = useSettled(bodyText, 250);
  const preview = useQuery({
    queryKey: keys.preview(job.id, settledBody),
    queryFn: () => api.preview(job.id, JSON.parse(settledBody)),
    enabled: checked.ok && settledBody === bodyText,
  });
  const fire = useMutation({
    mutationFn: () => (checked.ok ? api.exec(job.id, checked.body) : Promise.reject(new Error("fix the form first"))),
    onSuccess: (exec) => navigate(`/activity/${encodeURIComponent(exec.exec_id)}`),
  });
  useEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
  }, []);
  const set = (patch: Partial<ExecForm>) => setForm((f) => ({ ...f, ...patch }));
  const errors = checked.ok ? {} : checked.errors;
  const p = preview.data && settledBody === bodyText ? preview.data : null;
  return (
    <dialog ref={dialog} className="exec-dialog" aria-labelledby="exec-title" onClose={onClose} onCancel={onClose}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          fire.mutate();
        }}
      >
        <h2 id="exec-title">Run {job.id}</h2>
        <fieldset>
          <legend>Targets</legend>
          {(
            [
              ...(job.targets
                ? ([["job", `The job's own: ${describeTargets(job.targets)}${job.waves.length ? `, in ${job.waves.length} waves` : ""}`]] as const)
                : []),
              ["all", job.targets || !job.waves.length ? "Every agent, at once" : `Every agent, in the job's ${job.waves.length} waves`],
              ["groups", job.targets || !job.waves.length ? "Groups, at once" : `Groups, in the job's ${job.waves.length} waves`],
              ["pcs", "PCs, at once"],
              ["waves", "Groups, in waves of your own"],
            ] as const
          ).map(([mode, label]) => (
            <label key={mode} className="check">
              <input type="radio" name="mode" value={mode} checked={form.mode === mode} onChange={() => set({ mode })} /> {label}
            </label>
          ))}
          {errors.mode ? (
            <p className="error" role="alert" data-testid="choose-targets">
              {errors.mode}
            </p>
          ) : null}
          {form.mode === "groups" ? (
            <Field id="exec-groups" label="Groups (comma-separated)" error={errors.groups}>
              <input id="exec-groups" value={form.groups} onChange={(e) => set({ groups: e.target.value })} autoFocus />
            </Field>
          ) : null}
          {form.mode === "pcs" ? (
            <Field id="exec-pcs" label="PC ids (comma-separated)" error={errors.pcs}>
              <textarea id="exec-pcs" rows={3} value={form.pcs} onChange={(e) => set({ pcs: e.target.value })} autoFocus />
            </Field>
          ) : null}
          {form.mode === "waves" ? <WaveEditor waves={form.waves} onChange={(waves) => set({ waves })} error={errors.waves} /> : null}
        </fieldset>
        <div className="inline-fields">
          <Field id="exec-jitter" label="Jitter" error={errors.jitter} help={`Spread starts over this long (job: ${millis(job.jitter)})`}>
            <input id="exec-jitter" value={form.jitter} placeholder="e.g. 5m" onChange={(e) => set({ jitter: e.target.value })} />
          </Field>
          <Field id="exec-deadline" label="Deadline" error={errors.deadline} help={`Agents offline longer skip it (job: ${millis(job.deadline)})`}>
            <input id="exec-deadline" value={form.deadline} placeholder="e.g. 24h" onChange={(e) => set({ deadline: e.target.value })} />
          </Field>
        </div>
        <section className="preview" aria-live="polite" aria-labelledby="preview-title">
          <h3 id="preview-title">Who it will hit</h3>
          {!checked.ok ? <p className="muted">{errors.mode ? "Choose the targets to see who it will hit." : "Fix the form to see the targets."}</p> : null}
          {checked.ok && !p && !preview.isError ? <p className="muted">Counting…</p> : null}
          {preview.isError ? <ErrorNote error={preview.error} what="count the targets" /> : null}
          {p ? (
            <>
              <p data-testid="preview-count">
                <strong>
                  {p.target_count} agent{p.target_count === 1 ? "" : "s"}
                </strong>{" "}
                will be hit ({p.online} online now
                {p.target_count > p.online ? "; the others run it when they reconnect, before its deadline" : ""}).
              </p>
              {p.waves.length > 0 ? (
                <ol>
                  {p.waves.map((w) => (
                    <li key={w.wave}>
                      {w.group}: {w.targets}
                    </li>
                  ))}
                </ol>
              ) : null}
              {p.pcs.length > 0 ? (
                <details>
                  <summary>Which PCs</summary>
                  <p className="small">
                    {p.pcs.join(", ")}
                    {p.target_count > p.pcs.length ? ` and ${p.target_count - p.pcs.length} more` : ""}
                  </p>
                </details>
              ) : null}
              {p.require_approval ? <p className="warn">A second operator must approve this run before it is sent.</p> : null}
            </>
          ) : null}
        </section>
        {fire.isError ? <ErrorNote error={fire.error} what="run the job" /> : null}
        <div className="actions">
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={!checked.ok || !p || p.target_count === 0 || fire.isPending}>
            {fire.isPending ? "Sending…" : p ? `Run on ${p.target_count} agent${p.target_count === 1 ? "" : "s"}` : "Run"}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/// The waves of a rollout chosen in the dialog: one row per wave, in order.
function WaveEditor(props: { waves: WaveRow[]; onChange: (waves: WaveRow[]) => void; error?: string }) {
  const change = (index: number, patch: Partial<WaveRow>) =>
    props.onChange(props.waves.map((w, i) => (i === index ? { ...w, ...patch } : w)));
  return (
    <div className="wave-editor">
      <p className="help" id="waves-help">
        Wave 1 is sent at once (or after its delay), each next one its delay after the one before; a wave whose failures
        pass its percentage halts the rest.
      </p>
      <ol className="plain">
        {props.waves.map((wave, index) => {
          const n = index + 1;
          return (
            <li key={index} className="wave-row">
              <span aria-hidden="true">{n}.</span>
              <input aria-label={`Wave ${n} group`} placeholder="group" value={wave.group} onChange={(e) => change(index, { group: e.target.value })} autoFocus={index === props.waves.length - 1 && index > 0} />
              <input aria-label={`Wave ${n} delay`} placeholder={index === 0 ? "delay: 0s" : "delay, e.g. 1h"} value={wave.delay} onChange={(e) => change(index, { delay: e.target.value })} />
              <input aria-label={`Wave ${n} halts over % failed`} placeholder="halt over %" inputMode="decimal" value={wave.maxFailurePct} onChange={(e) => change(index, { maxFailurePct: e.target.value })} />
              <button type="button" className="link" onClick={() => props.onChange(props.waves.filter((_, i) => i !== index))} disabled={props.waves.length === 1} aria-label={`Remove wave ${n}`}>
                Remove
              </button>
            </li>
          );
        })}
      </ol>
      <button type="button" onClick={() => props.onChange([...props.waves, EMPTY_WAVE])} disabled={props.waves.length >= MAX_WAVES}>
        Add wave
      </button>
      {props.error ? (
        <p className="error" role="alert">
          {props.error}
        </p>
      ) : null}
    </div>
  );
}

function Field(props: { id: string; label: string; error?: string; help?: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      {props.children}
      {props.help ? <p className="help">{props.help}</p> : null}
      {props.error ? (
        <p className="error" role="alert">
          {props.error}
        </p>
      ) : null}
    </div>
  );
}
