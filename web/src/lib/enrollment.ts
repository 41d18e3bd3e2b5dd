// The Enrolment page without the DOM: the API's enrolment routes (tokens, PCs waiting for approval, credentials),
// the New token form checked the way the backend checks it (`kanade_backend::enrollment::token_order`), each token
// and credential as a row in words, the confirmations the page asks before it approves or revokes, and the note for a
// backend that has no `[security]`. Everything reads the API's JSON leniently: a field that is missing or of a kind
// this dashboard does not know yet is shown as such, never thrown on.

import { type Api, ApiError, type PageQuery, withQuery } from "./api";
import type { components } from "./api.gen";
import { badge, fields, number, strings, text } from "./values";
import type { Badge } from "./values";

export type { Badge, Tone } from "./values";

type Schemas = components["schemas"];

/// The API's enrolment shapes, generated from `schema/openapi.json` like every other (see `types.ts`).
export type EnrollTokenView = Schemas["EnrollTokenView"];
export type EnrollTokenBody = Schemas["EnrollTokenBody"];
/// `POST /api/enroll/tokens`: the token as an agent takes it, shown this once, and the token as kept.
export type CreatedEnrollToken = Schemas["CreatedEnrollToken"];
export type EnrollTokenPage = Schemas["Page_EnrollTokenView"];
export type EnrollmentView = Schemas["EnrollmentView"];
export type EnrollmentPage = Schemas["Page_EnrollmentView"];

/// A credential's state as `GET /api/enrollments?status=` filters it.
export type CredentialStatus = "pending" | "active" | "revoked";

/// The rules the backend applies (`kanade_shared::ids`, `MAX_CREDENTIAL_GROUPS`, `MAX_TOKEN_USES`, the token's
/// lifetime from `MIN_TOKEN_TTL` to `MAX_TOKEN_TTL`), so a typo is caught before anything is sent.
export const GROUP_PATTERN = /^[a-z0-9_-]{1,64}$/;
export const MAX_GROUPS = 16;
export const MAX_USES = 100_000;
export const MIN_TTL_MS = 60_000;
export const MAX_TTL_MS = 90 * 86_400_000;

/// How often the page asks again: the backend publishes no change note when a PC asks to enrol, so a new PC
/// waiting for approval shows up within this (and at once after each of the page's own actions).
export const ENROLLMENT_REFRESH_MS = 10_000;

/// The page's queries, under one prefix so that one invalidation after an action refreshes them all.
export const enrollmentKeys = {
  all: ["enrollment"] as const,
  credentials: (status: CredentialStatus) => ["enrollment", "credentials", status] as const,
  tokens: ["enrollment", "tokens"] as const,
};

const seg = encodeURIComponent;

/// The enrolment routes, through the dashboard's one client (`Api.request`): its credentials, its error shape.
export function enrollmentApi(api: Api) {
  return {
    tokens: (query: PageQuery = {}) => api.request<EnrollTokenPage>("GET", withQuery("/api/enroll/tokens", query)),
    createToken: (body: EnrollTokenBody) => api.request<CreatedEnrollToken>("POST", "/api/enroll/tokens", body),
    revokeToken: (id: string) => api.request<EnrollTokenView>("DELETE", `/api/enroll/tokens/${seg(id)}`),
    enrollments: (status: CredentialStatus, query: PageQuery = {}) =>
      api.request<EnrollmentPage>("GET", withQuery("/api/enrollments", { status, ...query })),
    approve: (pc: string) => api.request<EnrollmentView>("POST", `/api/enrollments/${seg(pc)}/approve`),
    revokeAgent: (pc: string) => api.request<EnrollmentView>("POST", `/api/agents/${seg(pc)}/revoke`),
  };
}

/// Whether an error says the backend has no `[security]`, so enrolment is off there (503 `security_not_configured`).
export function isEnrollmentOff(error: unknown): boolean {
  return error instanceof ApiError && error.status === 503 && error.code === "security_not_configured";
}

/// Whether a failed list is asked again: not when enrolment is off or the request was refused (a 4xx), which asking
/// again cannot change; twice for anything else (the backend restarting, a proxy's hiccup).
export function retryEnrollment(failures: number, error: unknown): boolean {
  if (isEnrollmentOff(error)) return false;
  if (error instanceof ApiError && error.status >= 400 && error.status < 500) return false;
  return failures < 2;
}

/// What the page says on a backend without `[security]`, in parts so the page can set the names as code.
export const ENROLLMENT_OFF = {
  lead: "Enrolment is off on this backend: set",
  setting: "[security] dir",
  middle: "in its config to the folder that",
  command: "kanade security init",
  end: "wrote, and restart it. Until then agents connect with the shared token, and there is nothing to approve or revoke here.",
} as const;

// ---- The New token form ----

/// The form as typed: groups as a comma list, uses and lifetime as text (empty: the backend's default).
export interface TokenForm {
  groups: string;
  uses: string;
  ttl: string;
}

export const EMPTY_TOKEN_FORM: TokenForm = { groups: "", uses: "", ttl: "" };

export type TokenFormErrors = Partial<Record<keyof TokenForm, string>>;

export type CheckedToken = { ok: true; body: EnrollTokenBody } | { ok: false; errors: TokenFormErrors };

/// A value cut to what an error message shows.
function shown(value: string, max = 40): string {
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

/// Counts with thousands separators, the same in every locale: `100,000`.
function count(n: number): string {
  return Math.trunc(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/// Group names from a comma (or space) separated list: each `[a-z0-9_-]{1,64}`, at most 16 different ones, in the
/// order typed, each once. Empty: none.
export function checkGroups(text: string): { groups: string[] } | { error: string } {
  const names = text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  const groups: string[] = [];
  for (const name of names) {
    if (!GROUP_PATTERN.test(name)) {
      const bad = [...name].find((c) => !/[a-z0-9_-]/.test(c));
      return {
        error: bad
          ? `\`${shown(name)}\` contains \`${bad}\`: a group name has only lowercase a-z, 0-9, \`_\` and \`-\``
          : `\`${shown(name)}\` is longer than 64 characters`,
      };
    }
    if (!groups.includes(name)) groups.push(name);
    // Checked as the list grows: a pasted novel is refused without reading all of it.
    if (groups.length > MAX_GROUPS) break;
  }
  if (groups.length > MAX_GROUPS) return { error: `more than ${MAX_GROUPS} groups; a credential carries at most ${MAX_GROUPS}` };
  return { groups };
}

/// How many PCs the token may enrol: a whole number from 1 to 100,000. Empty: the backend's default, 1.
export function checkUses(text: string): { uses?: number } | { error: string } {
  const value = text.trim();
  if (value === "") return {};
  const n = /^\d{1,6}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_USES)) return { error: `\`${shown(value)}\` is not a whole number from 1 to ${count(MAX_USES)}` };
  return { uses: n };
}

/// The units the backend's duration parser (humantime) reads, in milliseconds; months and years are left out (a
/// token lives at most 90 days), and so are units below a second.
const TTL_UNITS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
  w: 604_800_000,
  week: 604_800_000,
  weeks: 604_800_000,
};

/// A duration as the backend reads it (`24h`, `7d`, `1h30m`, `2 days`) in milliseconds; null for anything else.
export function ttlMillis(text: string): number | null {
  const value = text.trim();
  if (value === "" || value.length > 40) return null;
  const part = /(\d{1,9})\s*([a-z]+)\s*/y;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    part.lastIndex = at;
    const match = part.exec(value);
    const unit = match ? TTL_UNITS[match[2] ?? ""] : undefined;
    if (!match || unit === undefined) return null;
    total += Number(match[1]) * unit;
    at = part.lastIndex;
  }
  return total;
}

/// How long the token may be used: `1m` to `90d`. Empty: the backend's default, `24h`.
export function checkTtl(text: string): { ttl?: string } | { error: string } {
  const value = text.trim();
  if (value === "") return {};
  const ms = ttlMillis(value);
  if (ms === null) return { error: `\`${shown(value)}\` is not a duration: write e.g. \`24h\`, \`7d\` or \`1h30m\`` };
  if (ms < MIN_TTL_MS) return { error: `\`${shown(value)}\` is shorter than the minimum of 1m` };
  if (ms > MAX_TTL_MS) return { error: `\`${shown(value)}\` is longer than the maximum of 90d` };
  return { ttl: value };
}

/// The form as `POST /api/enroll/tokens` takes it, or what is wrong with each field.
export function checkTokenForm(form: TokenForm): CheckedToken {
  const groups = checkGroups(form.groups);
  const uses = checkUses(form.uses);
  const ttl = checkTtl(form.ttl);
  const errors: TokenFormErrors = {};
  if ("error" in groups) errors.groups = groups.error;
  if ("error" in uses) errors.uses = uses.error;
  if ("error" in ttl) errors.ttl = ttl.error;
  if ("error" in groups || "error" in uses || "error" in ttl) return { ok: false, errors };
  const body: EnrollTokenBody = {};
  if (groups.groups.length > 0) body.groups = groups.groups;
  if (uses.uses !== undefined) body.uses = uses.uses;
  if (ttl.ttl !== undefined) body.ttl = ttl.ttl;
  return { ok: true, body };
}

// ---- Rows ----

/// A state from the API read with its underscores as spaces, cut to what a badge holds.
function words(value: string): string {
  return shown(value.replace(/_/g, " "), 40);
}

/// A PC's credential: `pending` waits for an operator, `active` may connect and renew, `revoked` is cut off. A state
/// this dashboard does not know is shown as it is, never as active.
export function credentialBadge(status: unknown): Badge {
  switch (status) {
    case "pending":
      return badge("waiting for approval", "pending");
    case "active":
      return badge("active", "ok");
    case "revoked":
      return badge("revoked", "failed");
    default: {
      const raw = text(status);
      return badge(raw ? words(raw) : "unknown", "skipped");
    }
  }
}

/// A token's state: `active` may enrol; `expired`, `used up` and `revoked` enrol nothing more.
export function tokenBadge(state: unknown): Badge {
  switch (state) {
    case "active":
      return badge("active", "ok");
    case "expired":
      return badge("expired", "skipped");
    case "used_up":
      return badge("used up", "skipped");
    case "revoked":
      return badge("revoked", "failed");
    default: {
      const raw = text(state);
      return badge(raw ? words(raw) : "unknown", "skipped");
    }
  }
}

/// Group names as a list in words, or `none` when empty.
export function groupsText(groups: unknown, none = "none"): string {
  const names = strings(groups);
  return names.length === 0 ? none : names.join(", ");
}

/// One PC's credential as its row shows it. Times are RFC 3339 or null.
export interface CredentialRow {
  pc: string;
  status: Badge;
  pending: boolean;
  /// May still be revoked (pending or active).
  revocable: boolean;
  groups: string;
  hostname: string;
  os: string;
  token: string;
  /// The agent's public key, its start and end (`UC6G…EIYT`), to compare with what the PC says.
  key: string;
  requestedAt: string | null;
  enrolledAt: string | null;
  issuedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

/// A user public key shortened to what a table cell holds: its first and last four characters.
export function shortKey(key: unknown): string {
  const raw = text(key);
  if (raw === null) return "—";
  return raw.length > 12 ? `${raw.slice(0, 4)}…${raw.slice(-4)}` : raw;
}

export function credentialRow(view: unknown): CredentialRow {
  const v = fields(view);
  const status = text(v.status);
  return {
    pc: text(v.pc_id) ?? "?",
    status: credentialBadge(v.status),
    pending: status === "pending",
    revocable: status === "pending" || status === "active",
    groups: groupsText(v.groups),
    hostname: text(v.hostname) ?? "—",
    os: text(v.os) ?? "—",
    token: text(v.token_id) ?? "—",
    key: shortKey(v.public_key),
    requestedAt: text(v.requested_at),
    enrolledAt: text(v.enrolled_at),
    issuedAt: text(v.issued_at),
    expiresAt: text(v.expires_at),
    revokedAt: text(v.revoked_at),
  };
}

/// The rows of the pages loaded so far, each PC once, in the API's order (by pc id).
export function credentialRows(pages: readonly unknown[] | undefined): CredentialRow[] {
  const seen = new Set<string>();
  const rows: CredentialRow[] = [];
  for (const page of pages ?? []) {
    const items = fields(page).items;
    for (const item of Array.isArray(items) ? items : []) {
      const row = credentialRow(item);
      if (seen.has(row.pc)) continue;
      seen.add(row.pc);
      rows.push(row);
    }
  }
  return rows;
}

/// One enrolment token as its row shows it.
export interface TokenRow {
  id: string;
  groups: string;
  /// `4 of 5 left`.
  uses: string;
  state: Badge;
  revocable: boolean;
  expiresAt: string | null;
  createdAt: string | null;
  createdBy: string;
  revokedAt: string | null;
  /// The PCs it enrolled: `pc-1, pc-2`, `none yet`, or the first few `and 7 more`.
  enrolled: string;
}

/// What `groups` of a token means when it names none: each PC gets the groups its own config asks for.
export const TOKEN_OWN_GROUPS = "each PC's own";

export function tokenRow(view: unknown): TokenRow {
  const v = fields(view);
  const uses = number(v.uses);
  const left = number(v.uses_left);
  const enrolled = strings(v.enrolled);
  const state = text(v.state);
  return {
    id: text(v.id) ?? "?",
    groups: groupsText(v.groups, TOKEN_OWN_GROUPS),
    uses: uses === null ? "?" : `${left === null ? "?" : count(left)} of ${count(uses)} left`,
    state: tokenBadge(v.state),
    revocable: state !== "revoked",
    expiresAt: text(v.expires_at),
    createdAt: text(v.created_at),
    createdBy: text(v.created_by) ?? "—",
    revokedAt: text(v.revoked_at),
    enrolled:
      enrolled.length === 0
        ? "none yet"
        : enrolled.length <= 3
          ? enrolled.join(", ")
          : `${enrolled.slice(0, 3).join(", ")} and ${count(enrolled.length - 3)} more`,
  };
}

/// The rows of the pages loaded so far, each token once, newest first as the API sends them.
export function tokenRows(pages: readonly unknown[] | undefined): TokenRow[] {
  const seen = new Set<string>();
  const rows: TokenRow[] = [];
  for (const page of pages ?? []) {
    const items = fields(page).items;
    for (const item of Array.isArray(items) ? items : []) {
      const row = tokenRow(item);
      if (seen.has(row.id)) continue;
      seen.add(row.id);
      rows.push(row);
    }
  }
  return rows;
}

// ---- What the operator confirms, and is told afterwards ----

/// Asked before a waiting PC is approved.
export function approvePrompt(row: CredentialRow): string {
  const into = row.groups === "none" ? "with no groups" : `into ${row.groups}`;
  return `Approve ${row.pc} (${row.hostname}, ${row.os}) ${into}? Its agent gets a credential the next time it asks (within 30 s) and acts as ${row.pc} from then on.`;
}

/// Asked before a PC's credential is revoked (or a waiting PC refused).
export function revokePrompt(row: CredentialRow): string {
  if (row.pending) {
    return `Refuse ${row.pc} (${row.hostname})? It gets no credential, and to enrol it needs a new token.`;
  }
  return `Revoke ${row.pc}'s credential? The broker cuts ${row.pc} off at once: it can neither reconnect nor renew, and it needs a new token to come back.`;
}

/// Asked before a token is revoked.
export function revokeTokenPrompt(row: TokenRow): string {
  return `Revoke the enrolment token ${row.id} (${row.uses})? It enrols no more PCs; the PCs it enrolled stay enrolled.`;
}

/// What the page says after an action on a PC succeeded.
export function credentialNote(action: "approve" | "revoke", view: unknown, wasPending = false): string {
  const row = credentialRow(view);
  if (action === "approve") return `Approved ${row.pc}: its agent gets its credential the next time it asks.`;
  return wasPending ? `Refused ${row.pc}: it gets no credential.` : `Revoked ${row.pc}: the broker has cut it off.`;
}

/// The token just created, as the page shows it this once.
export interface CreatedToken {
  /// `kanade_enroll_<id>_<secret>`, as an agent takes it.
  token: string;
  id: string;
  /// `Enrols up to 5 PCs into kiosk, lab.`
  summary: string;
  expiresAt: string | null;
}

/// The reply to `POST /api/enroll/tokens`; null when it holds no token (nothing to show).
export function createdToken(reply: unknown): CreatedToken | null {
  const r = fields(reply);
  const token = text(r.token);
  if (token === null) return null;
  const row = tokenRow(reply);
  const uses = number(r.uses);
  const pcs = uses === null ? "PCs" : uses === 1 ? "1 PC" : `up to ${count(uses)} PCs`;
  const into = row.groups === TOKEN_OWN_GROUPS ? "each with the groups its own config asks for" : `into ${row.groups}`;
  return { token, id: row.id, summary: `Enrols ${pcs} ${into}.`, expiresAt: row.expiresAt };
}

/// Said beside the token shown once.
export const SHOWN_ONCE =
  "Copy it now: it is not shown again (the backend keeps only its hash). Give it to an agent as enroll_token in its config or as KANADE_ENROLL_TOKEN.";

/// Copies `value` with the browser's clipboard; false where there is none or it refuses (an insecure origin, no
/// permission), and the page then says to copy by hand.
export async function copyText(value: string, clipboard: Pick<Clipboard, "writeText"> | undefined): Promise<boolean> {
  if (!clipboard) return false;
  try {
    await clipboard.writeText(value);
    return true;
  } catch {
    return false;
  }
}
