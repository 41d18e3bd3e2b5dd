// Audit: who did what, newest first, filtered by operator, action and how far back.

import { useQuery } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { Link, useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, PageTitle, When } from "../components";
import { keys } from "../lib/live";
import { auditTargetLink, detailsText } from "../lib/audit";

export function AuditPage() {
  const { api } = useAuth();
  const [params, setParams] = useSearchParams();
  const filter = { actor: params.get("actor") ?? "", action: params.get("action") ?? "", since: params.get("since") ?? "" };
  const [draft, setDraft] = useState(filter);
  const audit = useQuery({
    queryKey: keys.audit(JSON.stringify(filter)),
    queryFn: async () => (await api.audit({ ...filter, limit: 200 })).items,
  });
  const apply = (event: FormEvent) => {
    event.preventDefault();
    const next: Record<string, string> = {};
    for (const [k, v] of Object.entries(draft)) if (v.trim()) next[k] = v.trim();
    setParams(next);
  };
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Audit</PageTitle>
      <form className="toolbar" onSubmit={apply} aria-label="Filter the audit log">
        <label htmlFor="audit-actor">Operator</label>
        <input id="audit-actor" value={draft.actor} onChange={(e) => setDraft({ ...draft, actor: e.target.value })} />
        <label htmlFor="audit-action">Action</label>
        <input id="audit-action" value={draft.action} placeholder="exec, approve, kill…" onChange={(e) => setDraft({ ...draft, action: e.target.value })} />
        <label htmlFor="audit-since">Since</label>
        <input id="audit-since" value={draft.since} placeholder="1h, 7d or a time" onChange={(e) => setDraft({ ...draft, since: e.target.value })} />
        <button type="submit">Filter</button>
        <button
          type="button"
          className="link"
          onClick={() => {
            setDraft({ actor: "", action: "", since: "" });
            setParams({});
          }}
        >
          Clear
        </button>
      </form>
      {audit.isPending ? <Loading what="the audit log" /> : null}
      {audit.isError ? <ErrorNote error={audit.error} what="load the audit log" /> : null}
      {audit.data ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Audit log, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Operator</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Details</th>
                <th scope="col">From</th>
              </tr>
            </thead>
            <tbody>
              {audit.data.map((row) => {
                const link = auditTargetLink(row);
                return (
                  <tr key={row.event_id}>
                    <td>
                      <When at={row.at} />
                    </td>
                    <td>{row.actor}</td>
                    <td>
                      <code>{row.action}</code>
                    </td>
                    <td>{link ? <Link to={link}>{row.target}</Link> : row.target}</td>
                    <td className="small details">{detailsText(row.details)}</td>
                    <td className="muted small">{row.source}</td>
                  </tr>
                );
              })}
              {audit.data.length === 0 ? (
                <tr>
                  <td colSpan={6} className="muted">
                    Nothing recorded{params.toString() ? " that matches" : ""}.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}
