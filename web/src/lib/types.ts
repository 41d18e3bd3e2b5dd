// The backend's JSON shapes, as crates/kanade-backend/src/api*.rs serialise them. Times are RFC 3339 strings.

export interface Session {
  actor: string;
  /// True when a per-operator token proves the name; false when it is only the client's claim.
  verified: boolean;
  auth: "token" | "disabled";
  version: string;
}

export interface Agent {
  pc_id: string;
  hostname: string;
  os: string;
  os_version: string;
  arch: string;
  agent_version: string;
  groups: string[];
  uptime_secs: number;
  rss_bytes: number;
  cpu_percent: number;
  running: number;
  outbox_pending: number;
  outbox_bytes: number;
  outbox_full: boolean;
  malformed_messages: number;
  first_seen: string;
  last_seen: string;
  online: boolean;
}

export interface ResultRow {
  result_id: string;
  exec_id: string;
  job_id: string;
  version: string;
  pc_id: string;
  status: string;
  exit_code: number | null;
  stdout: string;
  stderr: string;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  started_at: string | null;
  finished_at: string;
  reason: string | null;
  recorded_at: string;
}

export interface Targets {
  all: boolean;
  groups: string[];
  pcs: string[];
}

export interface Wave {
  group: string;
  delay: number;
  max_failure_pct: number;
}

export interface Job {
  id: string;
  version: string;
  description: string;
  targets: Targets;
  shell: string;
  timeout: number;
  jitter: number | null;
  deadline: number | null;
  waves: Wave[];
  require_approval: boolean;
}

export interface StoredJob {
  job: Job;
  manifest: string;
  script_sha256?: string;
  created_at: string;
  created_by: string;
  revoked: boolean;
}

export interface WaveView {
  wave: number;
  group: string;
  delay_ms: number;
  max_failure_pct: number;
  state: "pending" | "sending" | "sent" | "cancelled" | string;
  sent_at: string | null;
  due_at: string | null;
  targets: number;
  by_status: Record<string, number>;
  failure_pct: number;
}

export interface Execution {
  exec_id: string;
  job_id: string;
  version: string;
  status: string;
  /// The backend's word on whether nothing it sends or waits for is left (completed, halted, rejected,
  /// superseded, external). Runs a stopped rollout already sent may still be going: see `by_status.running`.
  settled: boolean;
  status_reason: string | null;
  targets: Targets | null;
  target_count: number;
  results: number;
  pending: number;
  by_status: Record<string, number>;
  requested_by: string | null;
  decided_by: string | null;
  decided_at: string | null;
  created_at: string | null;
  started_at: string | null;
  waves: WaveView[];
}

export interface TargetState {
  pc_id: string;
  /// 1-based wave, 0 without waves, null for a run fired straight over NATS.
  wave: number | null;
  /// `pending`, `running`, or the result's status.
  state: string;
  started_at: string | null;
  finished_at: string | null;
  exit_code: number | null;
  reason: string | null;
}

export interface Preview {
  job_id: string;
  version: string;
  require_approval: boolean;
  revoked: boolean;
  target_count: number;
  online: number;
  waves: { wave: number; group: string; targets: number }[];
  pcs: string[];
}

export interface PingReply {
  pc_id: string;
  hostname: string;
  os: string;
  agent_version: string;
  uptime_secs: number;
  rtt_ms: number;
}

export interface ConfigValue {
  key: string;
  value: unknown;
  from: string;
}

export interface AgentConfig {
  pc_id: string;
  groups: string[];
  values: ConfigValue[];
  conflicts: string[];
}

export interface KillReply {
  exec_id: string;
  killed: { pc_id: string; exec_id: string }[];
}

export interface AuditRow {
  event_id: string;
  actor: string;
  action: string;
  target: string;
  details: unknown;
  source: string;
  at: string;
}

export interface OutputChunk {
  seq: number;
  stream: "stdout" | "stderr";
  data: string;
}

/// What `/api/events` says changed; the dashboard refetches what shows it.
export interface Change {
  topic: "agents" | "results" | "executions" | "audit" | "jobs" | "all";
  ids: string[];
}

/// The body of `POST /api/exec/{job}` and `POST /api/jobs/{job}/preview`.
export interface ExecBody {
  pcs?: string[];
  groups?: string[];
  all?: boolean;
  jitter?: string;
  deadline?: string;
  waves?: { group: string; delay?: string; max_failure_pct?: number }[];
}
