// What a change pushed by `/api/events` makes stale. Query keys are prefixes: ["execution"] covers every
// ["execution", id]. Pure, so which page refreshes on which change is unit-tested.

import { scheduleOfExecution } from "./schedules";
import type { Change } from "./types";

export type QueryKey = readonly string[];

export const keys = {
  session: ["session"] as const,
  agents: ["agents"] as const,
  agent: (pc: string) => ["agent", pc] as const,
  agentConfig: (pc: string) => ["agent-config", pc] as const,
  timeline: (pc: string) => ["timeline", pc] as const,
  results: (filter: string) => ["results", filter] as const,
  jobs: ["jobs"] as const,
  preview: (job: string, body: string) => ["preview", job, body] as const,
  executions: (filter: string) => ["executions", filter] as const,
  execution: (exec: string) => ["execution", exec] as const,
  targets: (exec: string) => ["targets", exec] as const,
  execResults: (exec: string) => ["exec-results", exec] as const,
  audit: (filter: string) => ["audit", filter] as const,
  /// Fleet-wide inventory lists (titles, a title's PCs, hardware and its summaries, a job's facts): any PC's new
  /// report can change them.
  inventory: ["inventory"] as const,
  inventoryList: (list: string, query: unknown) => ["inventory", list, JSON.stringify(query)] as const,
  /// One PC's inventory, and its change log under the same prefix.
  agentInventory: (pc: string) => ["agent-inventory", pc] as const,
  agentChanges: (pc: string, filter: string) => ["agent-inventory", pc, "changes", filter] as const,
  /// One PC's performance history over a range (`1h`, `24h`, `7d`); refetched on a timer, not by change notes.
  agentPerf: (pc: string, range: string) => ["agent-perf", pc, range] as const,
  /// The schedules list (each with its latest fire), and one schedule with its recent fires.
  schedules: ["schedules"] as const,
  schedule: (id: string) => ["schedule", id] as const,
};

/// The schedule queries that show the status of these executions: a schedule's fire shows its execution's status,
/// and the execution of an occurrence is named after its schedule (`<schedule>-<YYYYMMDD>t<HHMMSS>z`). No ids:
/// every schedule's; ids of no schedule's occurrences: none.
function schedulesShowing(ids: string[]): QueryKey[] {
  if (ids.length === 0) return [["schedules"], ["schedule"]];
  const schedules = [...new Set(ids.map(scheduleOfExecution).filter((id): id is string => id !== null))];
  return schedules.length === 0 ? [] : [["schedules"], ...schedules.map((id) => ["schedule", id])];
}

/// The stale query-key prefixes for one change. An empty `ids` means "anything in this topic".
export function stale(change: Change): QueryKey[] {
  const each = (prefix: string) => (change.ids.length === 0 ? [[prefix]] : change.ids.map((id) => [prefix, id]));
  switch (change.topic) {
    case "agents":
      return [["agents"], ...each("agent")];
    case "results":
      // Results move execution progress, an agent's recent results and the Fleet page's recent failures.
      return [
        ["results"],
        ["executions"],
        ...each("execution"),
        ...each("targets"),
        ...each("exec-results"),
        ...schedulesShowing(change.ids),
      ];
    case "executions":
      return [["executions"], ...each("execution"), ...each("targets"), ...schedulesShowing(change.ids)];
    case "schedules":
      // Created, changed, paused, resumed, deleted, or one of its occurrences decided.
      return [["schedules"], ...each("schedule")];
    case "audit":
      // The CLI changes jobs and agent config straight over NATS; its audit record is the change the backend sees.
      return [["audit"], ["jobs"], ["preview"], ["agent-config"], ["inventory", "facts"]];
    case "jobs":
      // A job's manifest says which of its facts are shown and counted.
      return [["jobs"], ["preview"], ["inventory", "facts"]];
    case "timeline":
      return each("timeline");
    case "inventory":
      // A PC's report (or a job's facts from its run) was stored: the fleet's lists, and that PC's own pages.
      return [["inventory"], ...each("agent-inventory")];
    default:
      // `all` (the server dropped changes for this client) and topics this dashboard does not know yet.
      return [[]];
  }
}

/// Parses one `change` event's data; anything malformed is `null` and ignored by the caller.
export function parseChange(data: string): Change | null {
  try {
    const value = JSON.parse(data) as { topic?: unknown; ids?: unknown };
    if (typeof value.topic !== "string") return null;
    const ids = Array.isArray(value.ids) ? value.ids.filter((id): id is string => typeof id === "string") : [];
    return { topic: value.topic as Change["topic"], ids };
  } catch {
    return null;
  }
}
