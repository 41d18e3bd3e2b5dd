// Agents: every PC that has reported, a page at a time by pc id, or by the host's CPU or memory in use in its latest
// heartbeat. The search, the status filter and the order run on the server (the search box waits until typing
// pauses); all are in the URL so a view can be shared.

import { useInfiniteQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router";

import { useAuth } from "../auth";
import { ErrorNote, Loading, LoadMore, PageTitle, PcLink, useDebounced, useSearchText, When } from "../components";
import {
  AGENT_STATUSES,
  type AgentSort,
  agentQuery,
  agentSort,
  ariaSort,
  hostFigures,
  sortQuery,
  statusOf,
  type AgentStatus,
} from "../lib/agents";
import { keys } from "../lib/live";
import { nextCursor, rowsOf } from "../lib/paging";
import { percent } from "../lib/perf";

/// Rows per page: enough to fill a screen a few times, little enough that the first rows show at once.
const PAGE_ROWS = 200;
/// How long the search box waits after the last keystroke before it asks the server.
const SEARCH_PAUSE_MS = 300;

export function StatusBadge({ status }: { status: AgentStatus }) {
  const symbol = status === "online" ? "●" : status === "offline" ? "○" : "◌";
  return (
    <span className={`badge ${status === "online" ? "badge-ok" : "badge-offline"}`}>
      <span aria-hidden="true">{symbol} </span>
      {status}
    </span>
  );
}

export function AgentsPage() {
  const { api } = useAuth();
  const [params, setParams] = useSearchParams();
  const [typed, setTyped] = useSearchText("q");
  const status = params.get("status") ?? "";
  const sort = agentSort(params.get("sort"));
  const query = { ...agentQuery(useDebounced(typed, SEARCH_PAUSE_MS), status), ...sortQuery(sort) };
  const agents = useInfiniteQuery({
    queryKey: [...keys.agents, "pages", query],
    queryFn: ({ pageParam }) => api.agents({ ...query, cursor: pageParam, limit: PAGE_ROWS }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: nextCursor,
    refetchInterval: 15_000,
  });
  const shown = rowsOf(agents.data?.pages, (a) => a.pc_id);
  const set = (key: string, value: string) => {
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
  const filtered = Boolean(query.search || query.status);
  return (
    <section aria-labelledby="page-title">
      <PageTitle>Agents</PageTitle>
      <div className="toolbar">
        <label htmlFor="agent-search">Search</label>
        <input
          id="agent-search"
          type="search"
          value={typed}
          placeholder="pc, hostname, group, version, offline…"
          onChange={(e) => setTyped(e.target.value)}
          aria-describedby="agent-count"
        />
        <label htmlFor="agent-status">Status</label>
        <select id="agent-status" value={status} onChange={(e) => set("status", e.target.value)}>
          <option value="">any</option>
          {AGENT_STATUSES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        <span id="agent-count" className="muted" role="status">
          {agents.data ? `${shown.length}${agents.hasNextPage ? "+" : ""} agent${shown.length === 1 ? "" : "s"}${filtered ? " match" : ""}` : ""}
        </span>
      </div>
      {agents.isPending ? <Loading what="agents" /> : null}
      {agents.isError ? <ErrorNote error={agents.error} what="load the agents" /> : null}
      {agents.data ? (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Agents, by {SORT_WORDS[sort]}</caption>
            <thead>
              <tr>
                <SortHeader column="pc_id" sort={sort} onSort={(s) => set("sort", s === "pc_id" ? "" : s)}>
                  PC
                </SortHeader>
                <th scope="col">Hostname</th>
                <th scope="col">OS</th>
                <th scope="col">Version</th>
                <th scope="col">Groups</th>
                <SortHeader column="cpu" sort={sort} onSort={(s) => set("sort", s)}>
                  CPU
                </SortHeader>
                <SortHeader column="memory" sort={sort} onSort={(s) => set("sort", s)}>
                  Memory
                </SortHeader>
                <th scope="col">Last seen</th>
                <th scope="col">State</th>
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
                  <HostFigure value={hostFigures(a).cpu} />
                  <HostFigure value={hostFigures(a).memory} />
                  <td>
                    <When at={a.last_seen} />
                  </td>
                  <td>
                    <StatusBadge status={statusOf(a)} />
                  </td>
                </tr>
              ))}
              {shown.length === 0 ? (
                <tr>
                  <td colSpan={9} className="muted">
                    {filtered ? "No agent matches the search." : "No agent has reported yet."}
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </div>
      ) : null}
      <LoadMore pages={agents} what="agents" />
    </section>
  );
}

const SORT_WORDS: Record<AgentSort, string> = { pc_id: "PC", cpu: "CPU in use, highest first", memory: "memory in use, highest first" };

/// A column header the server sorts by: a button, with `aria-sort` saying the order in force.
function SortHeader({
  column,
  sort,
  onSort,
  children,
}: {
  column: AgentSort;
  sort: AgentSort;
  onSort: (sort: AgentSort) => void;
  children: string;
}) {
  const order = ariaSort(column, sort);
  return (
    <th scope="col" aria-sort={order === "none" ? undefined : order}>
      <button
        type="button"
        className="sort"
        onClick={() => onSort(column)}
        title={column === "pc_id" ? "Sort by PC, A to Z" : `Sort by ${children.toLowerCase()} in use, highest first`}
      >
        {children}
        <span aria-hidden="true">{order === "ascending" ? " ▲" : order === "descending" ? " ▼" : ""}</span>
      </button>
    </th>
  );
}

/// The host's CPU or memory in use from the latest heartbeat, as a meter and in words; a dash without one.
function HostFigure({ value }: { value: number | null }) {
  if (value === null) {
    return (
      <td className="muted" title="Not reported: an older agent, or none sampled yet">
        —
      </td>
    );
  }
  return <td className="nowrap">{percent(value)}</td>;
}
