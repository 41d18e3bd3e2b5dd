// Whom a job's targets reach, said in words for the job list, the job's facts and the exec dialog.

import type { Targets } from "./types";

/// What a job without a target of its own shows: its targets are chosen each time it is run.
export const NO_TARGET = "none: choose at run time";

/// `every agent`, or its groups and PCs joined with `and` (more than three PCs are counted, not listed), or
/// `nobody` when the targets name no one, or [`NO_TARGET`] for a job without targets of its own.
export function describeTargets(t: Targets | null | undefined): string {
  if (!t) return NO_TARGET;
  if (t.all) return "every agent";
  const parts = [];
  if (t.groups.length) parts.push(`group${t.groups.length > 1 ? "s" : ""} ${t.groups.join(", ")}`);
  if (t.pcs.length) parts.push(`${t.pcs.length > 3 ? `${t.pcs.length} PCs` : `PC${t.pcs.length > 1 ? "s" : ""} ${t.pcs.join(", ")}`}`);
  return parts.join(" and ") || "nobody";
}
