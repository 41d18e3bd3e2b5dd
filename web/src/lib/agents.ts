// The Agents table and the Fleet page's counts: searching, sorting and summing agents, without the DOM.

import type { Agent } from "./types";

export type AgentColumn = "pc_id" | "hostname" | "os" | "agent_version" | "groups" | "last_seen" | "online";
export type Direction = "asc" | "desc";

export interface AgentSort {
  column: AgentColumn;
  direction: Direction;
}

/// Every whitespace-separated word must appear in one of the agent's fields (case-insensitive). `online` and
/// `offline` as words match the state, so "offline win" finds offline Windows PCs.
export function matches(agent: Agent, search: string): boolean {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const fields = [agent.pc_id, agent.hostname, agent.os, agent.os_version, agent.agent_version, ...agent.groups].map(
    (f) => f.toLowerCase(),
  );
  return words.every((word) => {
    if (word === "online") return agent.online;
    if (word === "offline") return !agent.online;
    return fields.some((f) => f.includes(word));
  });
}

function key(agent: Agent, column: AgentColumn): string | number {
  switch (column) {
    case "groups":
      return agent.groups.join(",");
    case "last_seen":
      return Date.parse(agent.last_seen) || 0;
    case "online":
      return agent.online ? 1 : 0;
    case "agent_version":
      return agent.agent_version;
    default:
      return agent[column].toLowerCase();
  }
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

/// Sorted copy; ties keep pc id order, so the table does not shuffle as heartbeats arrive.
export function sortAgents(agents: readonly Agent[], sort: AgentSort): Agent[] {
  const sign = sort.direction === "asc" ? 1 : -1;
  return [...agents].sort((a, b) => {
    let c: number;
    if (sort.column === "agent_version") c = compareVersions(a.agent_version, b.agent_version);
    else {
      const x = key(a, sort.column);
      const y = key(b, sort.column);
      c = x < y ? -1 : x > y ? 1 : 0;
    }
    return c !== 0 ? c * sign : a.pc_id.localeCompare(b.pc_id);
  });
}

/// Clicking a column's header: sort by it ascending, or flip the direction if it is already the sort.
export function toggle(sort: AgentSort, column: AgentColumn): AgentSort {
  if (sort.column === column) return { column, direction: sort.direction === "asc" ? "desc" : "asc" };
  // Newest first is what one wants from "last seen"; online first from "online".
  const direction: Direction = column === "last_seen" || column === "online" ? "desc" : "asc";
  return { column, direction };
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
