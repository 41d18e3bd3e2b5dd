// The Agents list and the Fleet page's counts: what the Agents page asks the server for (it searches, filters, sorts
// and pages there), and summing agents for the Fleet, without the DOM.

import type { Agent } from "./types";

/// An agent's status as the API reports it.
export type AgentStatus = "online" | "offline" | "stale";
export const AGENT_STATUSES: readonly AgentStatus[] = ["online", "offline", "stale"];

/// The server's limits on `search` (`GET /api/agents`): longer or wordier searches are refused, so they are cut.
export const MAX_SEARCH_CHARS = 200;
export const MAX_SEARCH_WORDS = 8;

/// The query `GET /api/agents` is asked with for what the operator typed and picked: the words trimmed, collapsed
/// and cut to the server's limits (every word must be in some field, or name a status: "offline win"), and the
/// status filter when one is picked. Equal inputs give equal queries, so the query can key the cache.
export function agentQuery(search: string, status: string): { search?: string; status?: AgentStatus } {
  const words = search.trim().split(/\s+/).filter(Boolean).slice(0, MAX_SEARCH_WORDS);
  let text = words.join(" ");
  if (text.length > MAX_SEARCH_CHARS) text = text.slice(0, MAX_SEARCH_CHARS).trimEnd();
  const query: { search?: string; status?: AgentStatus } = {};
  if (text) query.search = text;
  if ((AGENT_STATUSES as readonly string[]).includes(status)) query.status = status as AgentStatus;
  return query;
}

/// The orders the server sorts the agents list in (`sort=`): by pc id (A to Z, the default), or by the host's CPU
/// or memory in use in its latest heartbeat (highest first, agents without the figure last).
export type AgentSort = "pc_id" | "cpu" | "memory";
export const AGENT_SORTS: readonly AgentSort[] = ["pc_id", "cpu", "memory"];

/// The order a URL's `sort=` names; the default for anything else.
export function agentSort(raw: string | null | undefined): AgentSort {
  return AGENT_SORTS.find((s) => s === raw) ?? "pc_id";
}

/// The `sort` to ask the server for: nothing for the default, so the default's URL and cache key stay as they were.
export function sortQuery(sort: AgentSort): { sort?: AgentSort } {
  return sort === "pc_id" ? {} : { sort };
}

/// A column header's `aria-sort` under an order: the pc id is A to Z, the figures highest first.
export function ariaSort(column: AgentSort, sort: AgentSort): "ascending" | "descending" | "none" {
  if (column !== sort) return "none";
  return column === "pc_id" ? "ascending" : "descending";
}

/// The host's CPU and memory in use (0-100) from the agent's latest heartbeat; null where it sent none (an older
/// agent, or one that has not sampled yet) or sent something that is not a percentage.
export function hostFigures(agent: Agent): { cpu: number | null; memory: number | null } {
  const read = (value: unknown) =>
    typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.min(100, value) : null;
  return { cpu: read(agent.host_cpu_percent), memory: read(agent.host_mem_percent) };
}

/// What the operator confirms before an agent is forgotten (`DELETE /api/agents/{pc}`): what goes, what stays,
/// and that an agent still running comes back at its next heartbeat.
export function forgetPrompt(pc: string, status: AgentStatus): string {
  const back =
    status === "online"
      ? ` It is online: unless it is uninstalled first, it comes back as a new agent at its next heartbeat.`
      : ` If it ever heartbeats again, it comes back as a new agent.`;
  return `Forget ${pc}? It leaves the agent lists and target counts; its results and the audit stay.${back}`;
}

/// The status an agent shows: the API's, or from `online` for a backend that does not report one.
export function statusOf(agent: Agent): AgentStatus {
  const status = (agent as { status?: string }).status;
  if ((AGENT_STATUSES as readonly string[]).includes(status ?? "")) return status as AgentStatus;
  return agent.online ? "online" : "offline";
}

/// Compares dotted versions numerically where they are numbers: 0.10.0 sorts after 0.9.1.
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const nx = Number(x);
    const ny = Number(y);
    const c = x !== "" && y !== "" && !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

export interface FleetSummary {
  total: number;
  online: number;
  offline: number;
  /// Agent version → how many run it, newest first.
  versions: { version: string; count: number; online: number }[];
  /// OS → how many.
  os: { os: string; count: number }[];
  /// Agents whose outbox is over its cap: their results arrive without output.
  outboxFull: string[];
}

export function summarize(agents: readonly Agent[]): FleetSummary {
  const versions = new Map<string, { count: number; online: number }>();
  const os = new Map<string, number>();
  let online = 0;
  const outboxFull: string[] = [];
  for (const agent of agents) {
    if (agent.online) online++;
    const version = agent.agent_version || "unknown";
    const v = versions.get(version) ?? { count: 0, online: 0 };
    v.count++;
    if (agent.online) v.online++;
    versions.set(version, v);
    const name = agent.os || "unknown";
    os.set(name, (os.get(name) ?? 0) + 1);
    if (agent.outbox_full) outboxFull.push(agent.pc_id);
  }
  return {
    total: agents.length,
    online,
    offline: agents.length - online,
    versions: [...versions.entries()]
      .map(([version, v]) => ({ version, ...v }))
      // Agents that report no version are not the newest: they come last.
      .sort(
        (a, b) => Number(a.version === "unknown") - Number(b.version === "unknown") || compareVersions(b.version, a.version),
      ),
    os: [...os.entries()].map(([name, count]) => ({ os: name, count })).sort((a, b) => b.count - a.count),
    outboxFull: outboxFull.sort(),
  };
}
