// The exec dialog's form, checked the way the backend checks it, so a typo is caught before anything is fired.

import type { ExecBody } from "./types";

export type TargetMode = "job" | "all" | "groups" | "pcs";

export interface ExecForm {
  mode: TargetMode;
  /// Comma- or whitespace-separated names.
  groups: string;
  pcs: string;
  jitter: string;
  deadline: string;
}

export const EMPTY_FORM: ExecForm = { mode: "job", groups: "", pcs: "", jitter: "", deadline: "" };

const ID = /^[a-z0-9_-]{1,64}$/;
/// The shape of a humantime duration, one or more `<number><unit>` parts; which units exist is the backend's to say.
const DURATION = /^(\d+(\.\d+)?\s*[a-zµ]+\s*)+$/i;

export function splitNames(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

export type Checked = { ok: true; body: ExecBody } | { ok: false; errors: Partial<Record<keyof ExecForm, string>> };

export function check(form: ExecForm): Checked {
  const errors: Partial<Record<keyof ExecForm, string>> = {};
  const body: ExecBody = {};
  if (form.mode === "all") body.all = true;
  if (form.mode === "groups") {
    const groups = splitNames(form.groups);
    const bad = groups.find((g) => !ID.test(g));
    if (groups.length === 0) errors.groups = "name at least one group";
    else if (bad !== undefined) errors.groups = `\`${bad.slice(0, 70)}\` is not a group name (a-z, 0-9, _ and -, up to 64)`;
    else body.groups = groups;
  }
  if (form.mode === "pcs") {
    const pcs = splitNames(form.pcs);
    const bad = pcs.find((p) => !ID.test(p));
    if (pcs.length === 0) errors.pcs = "name at least one PC";
    else if (pcs.length > 10_000) errors.pcs = `${pcs.length} PCs named; the limit is 10000 (target a group)`;
    else if (bad !== undefined) errors.pcs = `\`${bad.slice(0, 70)}\` is not a PC id (a-z, 0-9, _ and -, up to 64)`;
    else body.pcs = pcs;
  }
  for (const field of ["jitter", "deadline"] as const) {
    const value = form[field].trim();
    if (!value) continue;
    if (value.length > 64 || !DURATION.test(value)) errors[field] = `\`${value.slice(0, 40)}\` is not a duration (like 30s, 5m, 2h)`;
    else body[field] = value;
  }
  return Object.keys(errors).length > 0 ? { ok: false, errors } : { ok: true, body };
}
