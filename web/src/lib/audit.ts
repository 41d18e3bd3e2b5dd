// How an audit row reads: its details in one line, and where its target lives in the dashboard.

import type { AuditRow } from "./types";

/// `key: value` pairs in one line; nested values as compact JSON; capped so one row cannot flood the table.
export function detailsText(details: unknown, max = 300): string {
  if (details === null || details === undefined) return "";
  let text: string;
  if (typeof details === "object" && !Array.isArray(details)) {
    text = Object.entries(details as Record<string, unknown>)
      .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(", ");
  } else {
    text = typeof details === "string" ? details : JSON.stringify(details);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const EXEC_ACTIONS = new Set(["exec", "approve", "reject", "kill", "run"]);
const JOB_ACTIONS = new Set(["job-create", "job-delete", "revoke", "unrevoke", "kill-job"]);

/// The page about what an action was done to, if the dashboard has one.
export function auditTargetLink(row: Pick<AuditRow, "action" | "target">): string | null {
  if (!/^[a-z0-9_-]{1,64}$/.test(row.target)) return null;
  if (EXEC_ACTIONS.has(row.action)) return `/activity/${row.target}`;
  if (JOB_ACTIONS.has(row.action) && row.action !== "job-delete") return `/jobs/${row.target}`;
  return null;
}
