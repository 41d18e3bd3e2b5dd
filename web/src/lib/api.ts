// The one way the dashboard talks to the backend: JSON over fetch, with the caller's bearer token on every request
// (an `Authority` says which, and gets a new one when the backend refuses it: `session.ts`), and every failure
// turned into an `ApiError` that carries the backend's `{error: {code, message}}`.

import type { HardwareFilter, SoftwareFilter } from "./inventory";
import type {
  AgentConfig,
  AgentEventPage,
  Agent,
  AgentInventory,
  AgentPage,
  AuditPage,
  ChangePage,
  Execution,
  ExecutionPage,
  ExecBody,
  HardwarePage,
  JobFactsView,
  KillReply,
  PerfHistory,
  PingReply,
  Preview,
  RefreshBody,
  RefreshView,
  ResultPage,
  RunNowReply,
  ScheduleBody,
  ScheduleStored,
  ScheduleView,
  Session,
  SoftwarePage,
  StoredJob,
  TargetPage,
  TitlePage,
  ValueCount,
} from "./types";

/// Where a list's page starts (the `next` of the page before) and how many rows it holds (1..1000, default 100).
export type PageQuery = {
  cursor?: string;
  limit?: number;
};

export interface Credentials {
  token: string;
  operator: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /// Seconds to wait before asking again, from a 429's or 503's `Retry-After`; null when it said none.
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }

  get unauthorized(): boolean {
    return this.status === 401;
  }
}

/// The headers that say who is calling. The operator name is believed by the backend only with the shared token.
export function authHeaders(credentials: Credentials | null): Record<string, string> {
  const headers: Record<string, string> = {};
  if (credentials?.token) headers["Authorization"] = `Bearer ${credentials.token}`;
  if (credentials?.operator) headers["X-Kanade-Operator"] = credentials.operator;
  return headers;
}

/// Who the dashboard acts as: the headers for the next request, and what to do when the backend refuses them.
/// `session.ts` keeps a signed-in session (refreshed as it expires); `fixedAuthority` a token typed in.
export interface Authority {
  headers(): Promise<Record<string, string>>;
  /// A request sent with `sent` was answered 401: true when new headers are worth one more try.
  renew(sent: Record<string, string>): Promise<boolean>;
}

/// The same credentials on every request, never renewed (an API token, the static token, or none).
export function fixedAuthority(credentials: Credentials | null): Authority {
  const headers = authHeaders(credentials);
  return { headers: async () => headers, renew: async () => false };
}

function isAuthority(value: Authority | Credentials | null): value is Authority {
  return value !== null && "renew" in value;
}

/// An `Authority` as it is, or fixed credentials (or none) made into one.
export function asAuthority(value: Authority | Credentials | null): Authority {
  return isAuthority(value) ? value : fixedAuthority(value);
}

/// `Retry-After` in seconds (the delay form; a date is read as no advice).
export function retryAfterSeconds(header: string | null): number | null {
  if (header === null || !/^\s*\d+\s*$/.test(header)) return null;
  return Number(header.trim());
}

/// Turns a failed response's body into the error it reports, whatever shape it arrived in.
export function errorFrom(status: number, body: string, retryAfter: string | null = null): ApiError {
  const wait = retryAfterSeconds(retryAfter);
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    const { code, message } = parsed.error ?? {};
    if (typeof code === "string" && typeof message === "string") return new ApiError(status, code, message, wait);
  } catch {
    // Not JSON: a proxy's page, or a backend that is not kanade's.
  }
  const text = body.trim().slice(0, 200);
  return new ApiError(status, "http_error", text ? `HTTP ${status}: ${text}` : `HTTP ${status}`, wait);
}

/// The error for a request that never got an answer.
export function unreachable(err: unknown): ApiError {
  return new ApiError(0, "unreachable", `the backend cannot be reached (${(err as Error).message})`);
}

/// Builds `path?k=v&...`, leaving out empty values.
export function withQuery(path: string, query: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

const seg = encodeURIComponent;

export class Api {
  private readonly auth: Authority;

  constructor(
    auth: Authority | Credentials | null,
    private readonly base = "",
  ) {
    this.auth = asAuthority(auth);
  }

  /// Sends with the authority's headers; a 401 lets it renew them, and the request goes once more if it did.
  private async send(path: string, init: RequestInit & { headers: Record<string, string> }): Promise<Response> {
    const attempt = async () => {
      const sent = await this.auth.headers();
      try {
        return { sent, response: await fetch(this.base + path, { ...init, headers: { ...init.headers, ...sent } }) };
      } catch (err) {
        throw unreachable(err);
      }
    };
    const first = await attempt();
    if (first.response.status !== 401 || !(await this.auth.renew(first.sent))) return first.response;
    return (await attempt()).response;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await this.send(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text, response.headers.get("retry-after"));
    if (!text) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(response.status, "bad_response", `the backend answered with something that is not JSON`);
    }
  }

  /// A non-JSON body (a run's whole output) as text, or as a Blob for a download; `range` asks for part of it.
  async raw(path: string, range: string | null, as: "text"): Promise<{ body: string; complete: boolean }>;
  async raw(path: string, range: string | null, as: "blob"): Promise<{ body: Blob; complete: boolean }>;
  async raw(path: string, range: string | null, as: "text" | "blob"): Promise<{ body: string | Blob; complete: boolean }> {
    const headers: Record<string, string> = {};
    if (range) headers["Range"] = range;
    const response = await this.send(path, { headers });
    if (!response.ok) throw errorFrom(response.status, await response.text(), response.headers.get("retry-after"));
    const complete = response.headers.get("x-kanade-output-complete") !== "false";
    return { body: as === "text" ? await response.text() : await response.blob(), complete };
  }

  session = () => this.request<Session>("GET", "/api/session");
  agents = (
    query: { status?: string; group?: string; os?: string; version?: string; search?: string; sort?: string } & PageQuery = {},
  ) =>
    this.request<AgentPage>("GET", withQuery("/api/agents", query));
  agent = (pc: string) => this.request<Agent>("GET", `/api/agents/${seg(pc)}`);
  agentConfig = (pc: string) => this.request<AgentConfig>("GET", `/api/agents/${seg(pc)}/config`);
  ping = (pc: string) => this.request<PingReply>("POST", `/api/agents/${seg(pc)}/ping`);
  agentEvents = (pc: string, query: { kind?: string; limit?: number; cursor?: string } = {}) =>
    this.request<AgentEventPage>("GET", withQuery(`/api/agents/${seg(pc)}/events`, query));
  results = (query: { pc_id?: string; exec_id?: string; status?: string } & PageQuery) =>
    this.request<ResultPage>("GET", withQuery("/api/results", query));
  jobs = () => this.request<StoredJob[]>("GET", "/api/jobs");
  preview = (job: string, body: ExecBody) => this.request<Preview>("POST", `/api/jobs/${seg(job)}/preview`, body);
  exec = (job: string, body: ExecBody) => this.request<Execution>("POST", `/api/exec/${seg(job)}`, body);
  revoke = (job: string, revoked: boolean) =>
    this.request<{ job_id: string; revoked: boolean }>("POST", `/api/jobs/${seg(job)}/${revoked ? "revoke" : "unrevoke"}`);
  executions = (query: { job_id?: string; status?: string } & PageQuery = {}) =>
    this.request<ExecutionPage>("GET", withQuery("/api/executions", query));
  execution = (exec: string) => this.request<Execution>("GET", `/api/executions/${seg(exec)}`);
  targets = (exec: string, query: { status?: string } & PageQuery = {}) =>
    this.request<TargetPage>("GET", withQuery(`/api/executions/${seg(exec)}/targets`, query));
  execResults = (exec: string, query: PageQuery = {}) =>
    this.request<ResultPage>("GET", withQuery(`/api/executions/${seg(exec)}/results`, query));
  removeAgent = (pc: string, purge: boolean) =>
    this.request<{ pc_id: string; purged: boolean }>("DELETE", withQuery(`/api/agents/${seg(pc)}`, { purge: purge ? "true" : undefined }));
  approve = (exec: string) => this.request<Execution>("POST", `/api/executions/${seg(exec)}/approve`);
  reject = (exec: string, reason?: string) =>
    this.request<Execution>("POST", `/api/executions/${seg(exec)}/reject`, reason ? { reason } : undefined);
  kill = (exec: string) => this.request<KillReply>("POST", `/api/executions/${seg(exec)}/kill`);
  audit = (query: { actor?: string; action?: string; since?: string } & PageQuery) =>
    this.request<AuditPage>("GET", withQuery("/api/audit", query));

  /// An agent's performance rollups: `since` is `1h`, `24h`, `7d` or an RFC 3339 time (the live stream is
  /// `lib/perf.ts`'s `livePath`, followed with `lib/sse.ts`).
  agentPerf = (pc: string, query: { since?: string; until?: string; step?: string } = {}) =>
    this.request<PerfHistory>("GET", withQuery(`/api/agents/${seg(pc)}/perf`, query));

  agentInventory = (pc: string) => this.request<AgentInventory>("GET", `/api/agents/${seg(pc)}/inventory`);
  inventoryTitles = (query: { search?: string } & PageQuery) =>
    this.request<TitlePage>("GET", withQuery("/api/inventory/titles", query));
  inventorySoftware = (query: SoftwareFilter & PageQuery) =>
    this.request<SoftwarePage>("GET", withQuery("/api/inventory/software", { ...query }));
  inventoryChanges = (query: { since?: string; until?: string; pc_id?: string; name?: string; kind?: string; change?: string } & PageQuery) =>
    this.request<ChangePage>("GET", withQuery("/api/inventory/changes", query));
  inventoryHardware = (query: HardwareFilter & PageQuery) =>
    this.request<HardwarePage>("GET", withQuery("/api/inventory/hardware", { ...query }));
  hardwareSummary = (field: string) =>
    this.request<ValueCount[]>("GET", withQuery("/api/inventory/hardware/summary", { field }));
  jobFacts = (app: string, query: PageQuery = {}) =>
    this.request<JobFactsView>("GET", withQuery("/api/inventory", { app, ...query }));
  refreshInventory = (body: RefreshBody) => this.request<RefreshView>("POST", "/api/inventory/refresh", body);

  /// Schedules: each with its latest fire in the list, with up to 50 fires alone; created (or updated) from a
  /// schedule file's YAML as written, checked as `kanade schedule create` checks it.
  schedules = () => this.request<ScheduleView[]>("GET", "/api/schedules");
  schedule = (id: string) => this.request<ScheduleView>("GET", `/api/schedules/${seg(id)}`);
  createSchedule = (yaml: string) => this.request<ScheduleStored>("POST", "/api/schedules", { schedule: yaml } satisfies ScheduleBody);
  deleteSchedule = (id: string) => this.request<void>("DELETE", `/api/schedules/${seg(id)}`);
  pauseSchedule = (id: string, paused: boolean) =>
    this.request<ScheduleView>("POST", `/api/schedules/${seg(id)}/${paused ? "pause" : "resume"}`);
  runScheduleNow = (id: string) => this.request<RunNowReply>("POST", `/api/schedules/${seg(id)}/run-now`);
}
