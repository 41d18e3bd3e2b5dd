// The backend's JSON shapes, generated from its OpenAPI document (`schema/openapi.json`, made from the Rust types in
// `kanade_shared::api`): `npm run gen:types` writes `api.gen.ts`, and every build and type check runs it first, so the
// dashboard cannot drift from the API. Here they only get the names the pages use. Times are RFC 3339 strings.

import type { components } from "./api.gen";

type Schemas = components["schemas"];

export type Session = Schemas["Session"];
/// What a caller may do; each role includes the ones before it (viewer, operator, approver, admin).
export type Role = Schemas["Role"];
/// `POST /api/login`'s body, and what it and `POST /api/refresh` answer.
export type LoginBody = Schemas["LoginBody"];
export type SessionTokens = Schemas["SessionTokens"];
export type Agent = Schemas["AgentView"];
/// One page of a list (`{items, next}`): pass `next` back as `cursor` for the page after it.
export type AgentPage = Schemas["Page_AgentView"];
export type ResultPage = Schemas["Page_ResultRow"];
export type ExecutionPage = Schemas["Page_ExecutionView"];
export type TargetPage = Schemas["Page_TargetRow"];
export type AuditPage = Schemas["Page_AuditRow"];
export type ResultRow = Schemas["ResultRow"];
export type Targets = Schemas["Targets"];
export type Wave = Schemas["Wave"];
export type Job = Schemas["Job"];
/// A stored job and whether it is revoked now (`GET /api/jobs`).
export type StoredJob = Schemas["JobView"];
export type WaveView = Schemas["WaveView"];
export type Execution = Schemas["ExecutionView"];
export type TargetState = Schemas["TargetRow"];
export type Preview = Schemas["PreviewView"];
export type PingReply = Schemas["PingView"];
export type ConfigValue = Schemas["ConfigValue"];
export type AgentConfig = Schemas["ConfigView"];
export type KillReply = Schemas["KillView"];
export type AuditRow = Schemas["AuditRow"];
/// One entry of an agent's timeline, and a page of them (`GET /api/agents/{pc}/events`).
export type AgentEvent = Schemas["AgentEventRow"];
export type AgentEventPage = Schemas["AgentEventPage"];
export type OutputChunk = Schemas["OutputChunk"];
/// What `/api/events` says changed; the dashboard refetches what shows it.
export type Change = Schemas["ClientChange"];
/// The body of `POST /api/exec/{job}` and `POST /api/jobs/{job}/preview`.
export type ExecBody = Schemas["ExecBody"];
/// Every error code the backend answers with.
export type ErrorCode = Schemas["ErrorCode"];
/// Inventory (`/api/agents/{pc}/inventory`, `/api/inventory/...`).
export type AgentInventory = Schemas["AgentInventory"];
export type InventoryReport = Schemas["InventoryReportInfo"];
export type Hardware = Schemas["Hardware"];
export type InventoryStatus = Schemas["Status"];
export type Volume = Schemas["Volume"];
export type VolumeUsage = Schemas["VolumeUsage"];
export type SoftwareRow = Schemas["SoftwareRow"];
export type SoftwarePage = Schemas["Page_SoftwareRow"];
export type TitleRow = Schemas["TitleRow"];
export type TitlePage = Schemas["Page_TitleRow"];
export type ChangeRow = Schemas["ChangeRow"];
export type ChangePage = Schemas["Page_ChangeRow"];
export type HardwareRow = Schemas["HardwareRow"];
export type HardwarePage = Schemas["Page_HardwareRow"];
export type ValueCount = Schemas["ValueCount"];
/// A job's facts (`GET /api/inventory?app=`): its display columns, a page of PCs, its summary counts.
export type JobFactsView = Schemas["JobFactsView"];
export type JobFactRow = Schemas["JobFactRow"];
export type RefreshBody = Schemas["RefreshBody"];
export type RefreshView = Schemas["RefreshView"];

/// Performance: an agent's history of rollups (`GET /api/agents/{pc}/perf`), one point of it, and a process in a
/// point's top lists. The live stream's events are described in `lib/perf.ts`, which reads them, like these,
/// leniently from `unknown`.
export type PerfHistory = Schemas["PerfHistory"];
export type PerfPoint = Schemas["PerfPoint"];
export type PerfStat = Schemas["Stat"];
export type ProcSummary = Schemas["ProcSummary"];

/// Schedules (`/api/schedules`): one as the API shows it (as stored, its state, next times and recent fires), its
/// checked settings and timing, one fire, and the replies to creating one and to Run now.
export type ScheduleView = Schemas["ScheduleView"];
export type Schedule = Schemas["Schedule"];
export type ScheduleWhen = Schemas["When"];
export type Fire = Schemas["FireView"];
export type ScheduleBody = Schemas["ScheduleBody"];
export type ScheduleStored = Schemas["ScheduleStoredView"];
export type RunNowReply = Schemas["RunNowView"];
