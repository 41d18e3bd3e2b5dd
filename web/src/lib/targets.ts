// Whom a job's targets reach, said in words for the job list, the job's facts and the exec dialog.

import type { Targets } from "./types";

/// `every agent`, or its groups and PCs joined with `and` (more than three PCs are counted, not listed), or
/// `nobody` when the targets name no one.
export function describeTargets(t: Targets): string {
  if (t.all) return "every agent";
  const parts = [];
  if (t.groups.length) parts.push(`group${t.groups.length > 1 ? "s" : ""} ${t.groups.join(", ")}`);
  if (t.pcs.length) parts.push(`${t.pcs.length > 3 ? `${t.pcs.length} PCs` : `PC${t.pcs.length > 1 ? "s" : ""} ${t.pcs.join(", ")}`}`);
  return parts.join(" and ") || "nobody";
}
