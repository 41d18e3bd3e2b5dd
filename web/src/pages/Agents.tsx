// Agents: every PC that has reported, searchable and sortable; the search is in the URL so it can be shared.

import { useQuery } from "@tanstack/react-query";
import { useMemo, useState } from "react";
import { useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, OnlineBadge, PageTitle, PcLink, When } from "../components";
import { type AgentColumn, type AgentSort, matches, sortAgents, toggle } from "../lib/agents";
import { keys } from "../lib/live";

const COLUMNS: [AgentColumn, string][] = [
  ["pc_id", "PC"],
  ["hostname", "Hostname"],
  ["os", "OS"],
  ["agent_version", "Version"],
  ["groups", "Groups"],
  ["last_seen", "Last seen"],
  ["online", "State"],
];

export function AgentsPage() {
  const { api } = useAuth();
  const [params, setParams] = useSearchParams();
  const search = params.get("q") ?? "";
  const [sort, setSort] = useState<AgentSort>({ column: "pc_id", direction: "asc" });
  const agents = useQuery({ queryKey: keys.agents, queryFn: api.agents, refetchInterval: 15_000 });
  const shown = useMemo(
    () => sortAgents((agents.data ?? []).filter((a) => matches(a, search)), sort),
    [agents.data, search, sort],
  );
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Agents</PageTitle>
      <div className="toolbar">
        <label htmlFor="agent-search">Search</label>
        <input
          id="agent-search"
          type="search"
          value={search}
          placeholder="pc, hostname, group, version, online…"
          onChange={(e) => setParams(e.target.value ? { q: e.target.value } : {}, { replace: true })}
          aria-describedby="agent-count"
        />
        <span id="agent-count" className="muted" role="status">
          {agents.data ? `${shown.length} of ${agents.data.length} agents` : ""}
        </span>
      </div>
      {agents.isPending ? <Loading what="agents" /> : null}
      {agents.isError ? <ErrorNote error={agents.error} what="load the agents" /> : null}
      {agents.data ? (
        <div className="table-wrap">
          <table className="sortable">
            <caption className="visually-hidden">Agents, sorted by {COLUMNS.find(([c]) => c === sort.column)?.[1]}</caption>
            <thead>
              <tr>
                {COLUMNS.map(([column, label]) => (
                  <th
                    key={column}
                    scope="col"
                    aria-sort={sort.column === column ? (sort.direction === "asc" ? "ascending" : "descending") : "none"}
                  >
                    <button type="button" className="sort" onClick={() => setSort(toggle(sort, column))}>
                      {label}
                      <span aria-hidden="true">
                        {sort.column === column ? (sort.direction === "asc" ? " ▲" : " ▼") : ""}
                      </span>
                    </button>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {shown.map((a) => (
                <tr key={a.pc_id}>
                  <td>
                    <PcLink pc={a.pc_id} />
                  </td>
                  <td>{a.hostname}</td>
                  <td>
                    {a.os}
                    {a.os_version ? <span className="muted"> {a.os_version}</span> : null}
                  </td>
                  <td>{a.agent_version}</td>
                  <td>{a.groups.join(", ") || <span className="muted">none</span>}</td>
                  <td>
                    <When at={a.last_seen} />
                  </td>
                  <td>
                    <OnlineBadge online={a.online} />
                  </td>
                </tr>
              ))}
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={COLUMNS.length} className="muted">
                    {agents.data.length === 0 ? "No agent has reported yet." : "No agent matches the search."}
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
