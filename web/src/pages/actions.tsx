// The buttons that change an execution — approve, reject, kill, revoke its job — shared by Activity and the
// execution page. Each asks before doing something that cannot be undone.

import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";

import { useAuth } from "../auth";
import { ErrorNote } from "../components";
import { mayBeRunning } from "../lib/progress";
import type { Execution } from "../lib/types";

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
