//! The rollout rules as pure functions: whom a fire reaches, when a wave is due, when a rollout halts or is done,
//! which executions a newer version supersedes, and when an execution is settled.
//!
//! Nothing here touches the database or the broker. The engine reads rows, asks [`next_step`] (or
//! [`supersedes`]) what to do, and performs the answer with its compare-and-sets, sends, audit events and change
//! notes; the API asks [`ShownStatus`] what to show. So every rule is tested here, on plain data, and the engine,
//! the API and the SQL filter cannot each grow their own version of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kanade_shared::manifest::{Targets, Wave};
use kanade_shared::subject::Target;
use kanade_shared::{GroupName, PcId};
use serde::Serialize;

use crate::db::{ExecStatus, ExecutionRow, WaveRow, WaveState};

/// Result statuses that count against a wave's `max_failure_pct`. A kill or a skip is an operator's or the gate's
/// decision, not the script failing.
pub const FAILURES: &[&str] = &["failed", "timeout"];

/// Statuses in which an execution still has something to send, so that firing a newer version stops it.
pub const SUPERSEDABLE: &[ExecStatus] = &[ExecStatus::RollingOut, ExecStatus::Starting];

/// What the rollout rules read of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execution {
    pub status: ExecStatus,
    /// When it was fired or approved; the first wave is due its delay after this.
    pub started_at: Option<DateTime<Utc>>,
}

impl From<&ExecutionRow> for Execution {
    fn from(row: &ExecutionRow) -> Self {
        Self { status: row.status, started_at: row.started_at }
    }
}

/// The one thing the engine does next with a rollout, on this tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The execution is not rolling out: nothing to drive.
    Nothing,
    /// A sent wave failed more than it may: `rolling_out` -> `halted` with this reason; later waves are not sent.
    Halt { reason: String },
    /// Every wave is sent: `rolling_out` -> `running`.
    Finish,
    /// `wave` is due: claim it (`pending` -> `sending`), send its command to `group`, then mark it `sent`.
    SendWave { wave: i64, group: GroupName },
    /// `wave` was claimed and never marked sent (a backend stopped mid-send): send again, then mark it `sent`. The
    /// broker de-duplicates the second send by message id.
    ResumeSending { wave: i64, group: GroupName },
    /// The next wave is due at `until`; `None` when there is no send time to count from yet.
    Wait { until: Option<DateTime<Utc>> },
}

/// What a rollout does next: halt if a sent wave fails too much, else send the next wave once it is due, else
/// finish once every wave is sent. The failure check comes first and runs on every tick, so a wave that fails
/// before the next one is due stops the rollout (waves are time-based: ARCHITECTURE.md).
pub fn next_step(execution: &Execution, waves: &[WaveRow], counts: &WaveCounts, now: DateTime<Utc>) -> Step {
    if execution.status != ExecStatus::RollingOut {
        return Step::Nothing;
    }
    // Only waves marked sent are judged: one still `sending` has not been sent to everyone yet.
    let halt = waves.iter().filter(|w| w.state == WaveState::Sent).find_map(|w| halt_reason(w, &counts.wave(w.wave)));
    if let Some(reason) = halt {
        return Step::Halt { reason };
    }
    let Some(next) = waves.iter().find(|w| w.state != WaveState::Sent) else { return Step::Finish };
    if next.state == WaveState::Sending {
        return Step::ResumeSending { wave: next.wave, group: next.group.clone() };
    }
    match due_at(execution.started_at, waves, next) {
        Some(due) if now >= due => Step::SendWave { wave: next.wave, group: next.group.clone() },
        until => Step::Wait { until },
    }
}

/// Why `wave` halts its rollout, if it does: more than `max_failure_pct` of its targets failed (strictly more, so
/// a wave exactly at its limit goes on). A wave with no targets never halts.
pub fn halt_reason(wave: &WaveRow, tally: &Tally) -> Option<String> {
    let failed = tally.failures();
    let pct = tally.failure_pct();
    (tally.targets > 0 && pct > wave.max_failure_pct).then(|| {
        format!(
            "wave {} (group `{}`): {failed} of {} runs failed ({pct:.1}% > max_failure_pct {})",
            wave.wave, wave.group, tally.targets, wave.max_failure_pct
        )
    })
}

/// When `wave` is due: its delay after the previous wave was sent, the first wave's after the execution started.
/// `None` while there is no time to count from (the previous wave is not sent, or the execution has not started).
pub fn due_at(started_at: Option<DateTime<Utc>>, waves: &[WaveRow], wave: &WaveRow) -> Option<DateTime<Utc>> {
    let base = match waves.iter().rev().find(|w| w.wave < wave.wave) {
        Some(previous) => previous.fired_at?,
        None => started_at?,
    };
    Some(base + chrono::Duration::milliseconds(wave.delay_ms))
}

/// Whether starting `newer` supersedes `older`: another execution of the same job, at another version, that still
/// has something to send. What it already sent goes on; the broker's one-message-per-subject `EXEC` replaces it
/// for agents that have not picked it up yet.
pub fn supersedes(newer: &ExecutionRow, older: &ExecutionRow) -> bool {
    older.job_id == newer.job_id
        && older.exec_id != newer.exec_id
        && older.version != newer.version
        && SUPERSEDABLE.contains(&older.status)
}

/// The reason a superseded execution is stored with.
pub fn superseded_reason(newer: &ExecutionRow) -> String {
    format!("superseded by `{}` (version {})", newer.exec_id, newer.version)
}

/// The subjects that reach `targets` when they are sent all at once.
pub fn subjects(targets: &Targets) -> Vec<Target> {
    if targets.all {
        return vec![Target::All];
    }
    let groups = targets.groups.iter().cloned().map(Target::Group);
    groups.chain(targets.pcs.iter().cloned().map(Target::Pc)).collect()
}

/// The known agents `targets` reach, each with the 1-based wave that reaches it first (0 without waves). With
/// waves, an agent is reached only through a wave's group; an agent whose id is not a valid pc id is left out.
pub fn resolve<'a>(
    targets: &Targets,
    waves: &[Wave],
    agents: impl Iterator<Item = (&'a str, &'a [String])>,
) -> Vec<(String, i64)> {
    let mut reached = Vec::new();
    for (pc, groups) in agents {
        let in_group = |g: &GroupName| groups.iter().any(|mine| mine == g.as_str());
        let wave = if waves.is_empty() {
            let hit =
                targets.all || targets.groups.iter().any(in_group) || targets.pcs.iter().any(|p| p.as_str() == pc);
            hit.then_some(0)
        } else {
            waves.iter().position(|w| in_group(&w.group)).map(|i| i64::try_from(i + 1).unwrap_or(i64::MAX))
        };
        if let (Some(wave), Ok(pc)) = (wave, PcId::new(pc)) {
            reached.push((pc.to_string(), wave));
        }
    }
    reached
}

/// How many targets have a result of each status, plus `running` (begun, no result yet) and `pending` (neither).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Tally {
    pub targets: i64,
    pub by_status: BTreeMap<String, i64>,
}

impl Tally {
    fn count(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    /// Targets whose result counts against `max_failure_pct` ([`FAILURES`]).
    pub fn failures(&self) -> i64 {
        FAILURES.iter().map(|s| self.count(s)).sum()
    }

    /// Failures in percent of the targets; 0 without targets.
    pub fn failure_pct(&self) -> f64 {
        if self.targets == 0 { 0.0 } else { self.failures() as f64 * 100.0 / self.targets as f64 }
    }

    /// Targets not begun.
    pub fn pending(&self) -> i64 {
        self.count("pending")
    }

    /// Targets not begun, when `running_later` of them were found running by a read made after this tally. A run
    /// that began between the two reads would otherwise count as pending here and as running there; bounded by what
    /// the later read leaves unanswered, it does not, and the count never falls below the true one at the later
    /// read (unanswered targets only become fewer).
    pub fn pending_given_running(&self, running_later: i64) -> i64 {
        self.pending().min((self.unanswered() - running_later).max(0))
    }

    /// Targets without a result: not begun, or begun and not finished. The same targets `status=running` and
    /// `status=completed` look for in SQL (`db::executions`, `HAS_PENDING`): a target row with no result row.
    pub fn unanswered(&self) -> i64 {
        self.pending() + self.count("running")
    }
}

/// Per wave (0 without waves), the tally of its targets.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WaveCounts(BTreeMap<i64, Tally>);

impl WaveCounts {
    /// From `Db::target_counts`: (wave, status or `None` for not begun, how many).
    pub fn from_rows(rows: Vec<(i64, Option<String>, i64)>) -> Self {
        let mut out: BTreeMap<i64, Tally> = BTreeMap::new();
        for (wave, status, n) in rows {
            let tally = out.entry(wave).or_default();
            tally.targets += n;
            *tally.by_status.entry(status.unwrap_or_else(|| "pending".into())).or_default() += n;
        }
        Self(out)
    }

    /// One wave's tally; empty for a wave that reaches no known agent.
    pub fn wave(&self, wave: i64) -> Tally {
        self.0.get(&wave).cloned().unwrap_or_default()
    }

    /// Every wave's tallies added up.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for tally in self.0.values() {
            total.targets += tally.targets;
            for (status, n) in &tally.by_status {
                *total.by_status.entry(status.clone()).or_default() += n;
            }
        }
        total
    }
}

/// An execution's status as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownStatus {
    /// As stored; `running` only while some target has not answered.
    Stored(ExecStatus),
    /// Stored `running`, and every target has a result.
    Completed,
    /// Fired straight over NATS (`kanade run`): the backend recorded no execution, only its runs.
    External,
}

impl ShownStatus {
    /// `stored` is `None` for an execution the backend did not record; `unanswered` counts its targets without a
    /// result ([`Tally::unanswered`]).
    pub fn of(stored: Option<ExecStatus>, unanswered: i64) -> Self {
        match stored {
            None => Self::External,
            Some(ExecStatus::Running) if unanswered == 0 => Self::Completed,
            Some(status) => Self::Stored(status),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored(status) => status.as_str(),
            Self::Completed => "completed",
            Self::External => "external",
        }
    }

    /// Whether the execution is settled: nothing the backend sends or waits for is left. Completed, halted,
    /// rejected, superseded, and external (the backend sent nothing and waits for nothing; its runs are the
    /// agents'). Runs a halted or superseded rollout already sent may still be going: settled says the
    /// execution is done deciding, not that every agent is done running.
    pub fn settled(self) -> bool {
        match self {
            Self::Completed | Self::External => true,
            Self::Stored(status) => stopped(status),
        }
    }
}

/// Whether an execution stopped for good before sending everything: its pending waves will never be sent.
pub fn stopped(status: ExecStatus) -> bool {
    match status {
        ExecStatus::Halted | ExecStatus::Superseded | ExecStatus::Rejected => true,
        ExecStatus::PendingApproval | ExecStatus::Starting | ExecStatus::RollingOut | ExecStatus::Running => false,
    }
}

/// A wave's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownWaveState {
    Stored(WaveState),
    /// A pending wave of a rollout that stopped: it will never be sent.
    Cancelled,
}

impl ShownWaveState {
    pub fn of(status: ExecStatus, state: WaveState) -> Self {
        if stopped(status) && state == WaveState::Pending { Self::Cancelled } else { Self::Stored(state) }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored(state) => state.as_str(),
            Self::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use kanade_shared::{ExecId, JobId};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().expect("test time")
    }

    fn group(name: &str) -> GroupName {
        GroupName::new(name).expect("test group")
    }

    fn wave(n: i64, state: WaveState, fired_at: Option<i64>, delay_secs: i64, max_failure_pct: f64) -> WaveRow {
        WaveRow {
            wave: n,
            group: group(&format!("g{n}")),
            delay_ms: delay_secs * 1000,
            max_failure_pct,
            state,
            fired_at: fired_at.map(at),
        }
    }

    fn rolling(started: i64) -> Execution {
        Execution { status: ExecStatus::RollingOut, started_at: Some(at(started)) }
    }

    /// Tallies from (wave, status, count) with `None` written as "pending".
    fn counts(rows: &[(i64, &str, i64)]) -> WaveCounts {
        WaveCounts::from_rows(rows.iter().map(|&(w, s, n)| (w, (s != "pending").then(|| s.to_owned()), n)).collect())
    }

    use WaveState::{Pending, Sending, Sent};

    #[test]
    fn next_step_table() {
        struct Case {
            name: &'static str,
            execution: Execution,
            waves: Vec<WaveRow>,
            counts: WaveCounts,
            now: i64,
            want: Step,
        }
        let two = |first: WaveState, fired: Option<i64>, max: f64| {
            vec![wave(1, first, fired, 0, max), wave(2, Pending, None, 60, 100.0)]
        };
        let cases = [
            Case {
                name: "over max_failure_pct halts",
                execution: rolling(0),
                waves: two(Sent, Some(0), 20.0),
                counts: counts(&[(1, "ok", 7), (1, "failed", 3)]),
                now: 10,
                want: Step::Halt {
                    reason: "wave 1 (group `g1`): 3 of 10 runs failed (30.0% > max_failure_pct 20)".into(),
                },
            },
            Case {
                name: "exactly at max_failure_pct goes on: the rule is `>`",
                execution: rolling(0),
                waves: two(Sent, Some(0), 20.0),
                counts: counts(&[(1, "ok", 8), (1, "failed", 2)]),
                now: 10,
                want: Step::Wait { until: Some(at(60)) },
            },
            Case {
                name: "timeouts count as failures",
                execution: rolling(0),
                waves: two(Sent, Some(0), 20.0),
                counts: counts(&[(1, "ok", 7), (1, "timeout", 3)]),
                now: 10,
                want: Step::Halt {
                    reason: "wave 1 (group `g1`): 3 of 10 runs failed (30.0% > max_failure_pct 20)".into(),
                },
            },
            Case {
                name: "kills and skips are not failures",
                execution: rolling(0),
                waves: two(Sent, Some(0), 0.0),
                counts: counts(&[(1, "killed", 5), (1, "skipped", 4), (1, "ok", 1)]),
                now: 10,
                want: Step::Wait { until: Some(at(60)) },
            },
            Case {
                name: "not begun and running are not failures",
                execution: rolling(0),
                waves: two(Sent, Some(0), 0.0),
                counts: counts(&[(1, "pending", 5), (1, "running", 5)]),
                now: 10,
                want: Step::Wait { until: Some(at(60)) },
            },
            Case {
                name: "a wave with zero targets never halts and the next one follows",
                execution: rolling(0),
                waves: two(Sent, Some(0), 0.0),
                counts: counts(&[]),
                now: 60,
                want: Step::SendWave { wave: 2, group: group("g2") },
            },
            Case {
                name: "a later wave's failures halt too",
                execution: rolling(0),
                waves: vec![wave(1, Sent, Some(0), 0, 50.0), wave(2, Sent, Some(60), 60, 10.0)],
                counts: counts(&[(1, "ok", 2), (2, "failed", 1), (2, "ok", 1)]),
                now: 70,
                want: Step::Halt {
                    reason: "wave 2 (group `g2`): 1 of 2 runs failed (50.0% > max_failure_pct 10)".into(),
                },
            },
            Case {
                name: "a wave still sending is not judged yet",
                execution: rolling(0),
                waves: two(Sending, Some(0), 0.0),
                counts: counts(&[(1, "failed", 3)]),
                now: 10,
                want: Step::ResumeSending { wave: 1, group: group("g1") },
            },
            Case {
                name: "a failing wave halts even when the next one is due",
                execution: rolling(0),
                waves: two(Sent, Some(0), 0.0),
                counts: counts(&[(1, "failed", 1)]),
                now: 3600,
                want: Step::Halt {
                    reason: "wave 1 (group `g1`): 1 of 1 runs failed (100.0% > max_failure_pct 0)".into(),
                },
            },
            Case {
                name: "the first wave is due its delay after the start",
                execution: rolling(100),
                waves: vec![wave(1, Pending, None, 30, 100.0)],
                counts: counts(&[(1, "pending", 2)]),
                now: 129,
                want: Step::Wait { until: Some(at(130)) },
            },
            Case {
                name: "a wave due later waits for its due time",
                execution: rolling(0),
                waves: two(Sent, Some(5), 100.0),
                counts: counts(&[(1, "ok", 1), (2, "pending", 3)]),
                now: 10,
                want: Step::Wait { until: Some(at(65)) },
            },
            Case {
                name: "a wave due now is sent",
                execution: rolling(0),
                waves: two(Sent, Some(5), 100.0),
                counts: counts(&[(1, "ok", 1), (2, "pending", 3)]),
                now: 65,
                want: Step::SendWave { wave: 2, group: group("g2") },
            },
            Case {
                name: "a wave past due is sent",
                execution: rolling(0),
                waves: two(Sent, Some(5), 100.0),
                counts: counts(&[]),
                now: 9999,
                want: Step::SendWave { wave: 2, group: group("g2") },
            },
            Case {
                name: "a wave left sending by a crashed backend is sent again",
                execution: rolling(0),
                waves: vec![wave(1, Sent, Some(0), 0, 100.0), wave(2, Sending, Some(60), 60, 100.0)],
                counts: counts(&[]),
                now: 61,
                want: Step::ResumeSending { wave: 2, group: group("g2") },
            },
            Case {
                name: "every wave sent: the rollout finishes",
                execution: rolling(0),
                waves: vec![wave(1, Sent, Some(0), 0, 100.0), wave(2, Sent, Some(60), 60, 100.0)],
                counts: counts(&[(1, "ok", 1), (2, "running", 1)]),
                now: 61,
                want: Step::Finish,
            },
            Case {
                name: "no waves at all: the rollout finishes",
                execution: rolling(0),
                waves: vec![],
                counts: counts(&[]),
                now: 0,
                want: Step::Finish,
            },
            Case {
                name: "no start time: wait without a due time",
                execution: Execution { status: ExecStatus::RollingOut, started_at: None },
                waves: vec![wave(1, Pending, None, 0, 100.0)],
                counts: counts(&[]),
                now: 0,
                want: Step::Wait { until: None },
            },
        ];
        for case in cases {
            let got = next_step(&case.execution, &case.waves, &case.counts, at(case.now));
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn next_step_drives_only_rolling_out_executions() {
        let waves = vec![wave(1, Pending, None, 0, 100.0)];
        for status in ExecStatus::ALL.into_iter().filter(|s| *s != ExecStatus::RollingOut) {
            let execution = Execution { status, started_at: Some(at(0)) };
            assert_eq!(next_step(&execution, &waves, &counts(&[]), at(10)), Step::Nothing, "{status}");
        }
    }

    #[test]
    fn due_at_counts_from_the_previous_send_or_the_start() {
        let waves = vec![wave(1, Sent, Some(10), 5, 100.0), wave(2, Pending, None, 60, 100.0)];
        assert_eq!(due_at(Some(at(0)), &waves, &waves[0]), Some(at(5)));
        assert_eq!(due_at(Some(at(0)), &waves, &waves[1]), Some(at(70)), "from wave 1's send, not the start");
        assert_eq!(due_at(None, &waves, &waves[0]), None, "not started");
        let unsent = vec![wave(1, Pending, None, 0, 100.0), wave(2, Pending, None, 60, 100.0)];
        assert_eq!(due_at(Some(at(0)), &unsent, &unsent[1]), None, "the previous wave is not sent");
        let claimed = vec![wave(1, Sending, Some(3), 0, 100.0), wave(2, Pending, None, 60, 100.0)];
        assert_eq!(due_at(Some(at(0)), &claimed, &claimed[1]), Some(at(63)), "a claimed wave has its send time");
    }

    #[test]
    fn tallies_fold_rows_per_wave_and_overall() {
        let counts = WaveCounts::from_rows(vec![
            (1, Some("ok".into()), 3),
            (1, None, 2),
            (2, Some("failed".into()), 1),
            (2, Some("timeout".into()), 1),
            (2, Some("killed".into()), 4),
            (2, Some("running".into()), 2),
        ]);
        let one = counts.wave(1);
        assert_eq!(one.targets, 5);
        assert_eq!(one.by_status, BTreeMap::from([("ok".into(), 3), ("pending".into(), 2)]));
        assert_eq!((one.failures(), one.pending(), one.unanswered()), (0, 2, 2));
        let two = counts.wave(2);
        assert_eq!((two.targets, two.failures(), two.unanswered()), (8, 2, 2), "killed is not a failure");
        assert_eq!(two.failure_pct(), 25.0);
        assert_eq!(counts.wave(3), Tally::default(), "a wave nobody is in");
        assert_eq!(counts.wave(3).failure_pct(), 0.0, "no targets, no division");
        let total = counts.total();
        assert_eq!((total.targets, total.failures(), total.pending(), total.unanswered()), (13, 2, 2, 4));
        assert_eq!(total.by_status["ok"], 3);
        assert_eq!(total.by_status["killed"], 4);
        assert_eq!(WaveCounts::from_rows(vec![]).total(), Tally::default());
    }

    fn targets(all: bool, groups: &[&str], pcs: &[&str]) -> Targets {
        Targets {
            all,
            groups: groups.iter().map(|g| group(g)).collect(),
            pcs: pcs.iter().map(|p| PcId::new(*p).expect("test pc")).collect(),
        }
    }

    #[test]
    fn resolve_finds_each_agent_s_first_wave() {
        let agents: Vec<(&str, Vec<String>)> = vec![
            ("pc-a", vec!["canary".into()]),
            ("pc-b", vec!["wave1".into(), "canary".into()]),
            ("pc-c", vec!["wave1".into()]),
            ("pc-d", vec!["other".into()]),
            ("Not A Pc", vec!["canary".into()]),
        ];
        let iter = || agents.iter().map(|(pc, groups)| (*pc, groups.as_slice()));
        let at_once = resolve(&targets(false, &["wave1"], &["pc-d"]), &[], iter());
        assert_eq!(at_once, vec![("pc-b".into(), 0), ("pc-c".into(), 0), ("pc-d".into(), 0)]);
        let everyone = resolve(&targets(true, &[], &[]), &[], iter());
        assert_eq!(everyone.len(), 4, "every valid pc id, and no other: {everyone:?}");
        let waves = [
            Wave { group: group("canary"), delay: std::time::Duration::ZERO, max_failure_pct: 100.0 },
            Wave { group: group("wave1"), delay: std::time::Duration::from_secs(60), max_failure_pct: 100.0 },
        ];
        let rolled = resolve(&targets(true, &[], &[]), &waves, iter());
        assert_eq!(
            rolled,
            vec![("pc-a".into(), 1), ("pc-b".into(), 1), ("pc-c".into(), 2)],
            "the first wave an agent is in reaches it; an agent in no wave is not reached"
        );
    }

    #[test]
    fn subjects_send_all_or_each_group_and_pc() {
        assert_eq!(subjects(&targets(true, &["canary"], &["pc-a"])), vec![Target::All]);
        assert_eq!(
            subjects(&targets(false, &["canary"], &["pc-a"])),
            vec![Target::Group(group("canary")), Target::Pc(PcId::new("pc-a").expect("pc"))]
        );
    }

    fn execution(exec: &str, job: &str, version: &str, status: ExecStatus) -> ExecutionRow {
        ExecutionRow {
            exec_id: ExecId::new(exec).expect("exec id"),
            job_id: JobId::new(job).expect("job id"),
            version: version.into(),
            status,
            status_reason: None,
            targets: serde_json::Value::Null,
            command_json: String::new(),
            deadline_ms: None,
            ends_at_ms: None,
            target_count: 0,
            requested_by: "alice".into(),
            decided_by: None,
            decided_at: None,
            created_at: at(0),
            started_at: Some(at(0)),
            updated_at: at(0),
        }
    }

    #[test]
    fn a_newer_version_supersedes_unfinished_executions_of_another_version_only() {
        let newer = execution("e-new", "patch", "2.0", ExecStatus::Starting);
        let cases = [
            ("rolling out, older version", execution("e-1", "patch", "1.0", ExecStatus::RollingOut), true),
            ("starting, older version", execution("e-2", "patch", "1.0", ExecStatus::Starting), true),
            ("same version", execution("e-3", "patch", "2.0", ExecStatus::RollingOut), false),
            ("another job", execution("e-4", "other", "1.0", ExecStatus::RollingOut), false),
            ("itself", execution("e-new", "patch", "1.0", ExecStatus::RollingOut), false),
            ("everything sent", execution("e-5", "patch", "1.0", ExecStatus::Running), false),
            ("halted", execution("e-6", "patch", "1.0", ExecStatus::Halted), false),
            ("awaiting approval", execution("e-7", "patch", "1.0", ExecStatus::PendingApproval), false),
            ("rejected", execution("e-8", "patch", "1.0", ExecStatus::Rejected), false),
            ("already superseded", execution("e-9", "patch", "1.0", ExecStatus::Superseded), false),
        ];
        for (name, older, want) in cases {
            assert_eq!(supersedes(&newer, &older), want, "{name}");
        }
        assert_eq!(superseded_reason(&newer), "superseded by `e-new` (version 2.0)");
    }

    #[test]
    fn settled_means_nothing_left_to_send_or_wait_for() {
        use ExecStatus::*;
        let cases = [
            (Some(PendingApproval), 0, "pending_approval", false),
            (Some(Starting), 0, "starting", false),
            (Some(RollingOut), 0, "rolling_out", false),
            (Some(Running), 1, "running", false),
            (Some(Running), 0, "completed", true),
            (Some(Halted), 3, "halted", true),
            (Some(Superseded), 3, "superseded", true),
            (Some(Rejected), 0, "rejected", true),
            (None, 0, "external", true),
            (None, 5, "external", true),
        ];
        for (stored, unanswered, shown, settled) in cases {
            let status = ShownStatus::of(stored, unanswered);
            assert_eq!(status.as_str(), shown, "{stored:?} with {unanswered} unanswered");
            assert_eq!(status.settled(), settled, "{shown}");
        }
    }

    #[test]
    fn pending_waves_of_a_stopped_rollout_show_cancelled() {
        for status in ExecStatus::ALL {
            for state in WaveState::ALL {
                let shown = ShownWaveState::of(status, state).as_str();
                let cancelled = state == Pending && stopped(status);
                assert_eq!(shown, if cancelled { "cancelled" } else { state.as_str() }, "{status} {state}");
            }
        }
        assert_eq!(ShownWaveState::of(ExecStatus::Halted, Pending), ShownWaveState::Cancelled);
        assert_eq!(ShownWaveState::of(ExecStatus::Halted, Sent), ShownWaveState::Stored(Sent));
        assert_eq!(ShownWaveState::of(ExecStatus::RollingOut, Pending), ShownWaveState::Stored(Pending));
    }

    #[test]
    fn a_run_that_began_between_two_reads_is_not_counted_pending_and_running() {
        let tally = |pending: i64, running: i64, ok: i64| Tally {
            targets: pending + running + ok,
            by_status: [("pending", pending), ("running", running), ("ok", ok)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (s.to_owned(), n))
                .collect(),
        };
        // Read as not begun, then found running.
        assert_eq!(tally(1, 0, 0).pending_given_running(1), 0);
        // Three not begun and one running; by the later read two run: at most two are still not begun.
        assert_eq!(tally(3, 1, 5).pending_given_running(2), 2);
        // Nothing began in between, or a run finished in between: the tally's own count.
        assert_eq!(tally(3, 1, 5).pending_given_running(1), 3);
        assert_eq!(tally(3, 1, 5).pending_given_running(0), 3);
        // More running later than were unanswered (results read in between): never negative.
        assert_eq!(tally(0, 1, 0).pending_given_running(4), 0);
    }
}
