//! Maintenance with consent: a command that carries a `consent` block (a job's `client.consent`) is held on the PC
//! until its user runs it now or puts it off, `max_defer` times at most; at its deadline (counted from when this PC
//! first held it) it runs whatever the answer. In quiet hours the user is not asked and a put-off run does not
//! start. An agent that serves no kanade-client has nobody to ask and runs such a command at once.
//!
//! The [`ConsentBook`] keeps what each held run's user said in `consent.json` in the data dir, so a restart neither
//! forgets a deferral nor starts the deadline again. What a held run does next is [`decide`]d, a pure function of the
//! command, the book's entry and the time; the pipeline does the waiting (`Pipeline::hold`) and kanade-client the
//! asking (`maintenance.*` over the local IPC).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Timelike as _, Utc};
use kanade_shared::client_ipc::PendingRun;
use kanade_shared::wire::{Command, Consent, HeldState};
use kanade_shared::{ExecId, JobId};
use serde::{Deserialize, Serialize};

/// The file, in the data dir.
pub const CONSENT_FILE: &str = "consent.json";
/// Held runs kept at most; a command beyond them is not held (it runs when the gate says so), which is logged.
pub const MAX_HELD: usize = 256;
/// The largest book read back; a larger file is ignored (and logged).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// The longest a user may put a run off in one go (the deadline still holds).
pub const MAX_DEFER_MINUTES: u32 = 7 * 24 * 60;

/// One held run: the command's consent block and what its user said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub job_id: JobId,
    pub consent: Consent,
    /// When this PC first held it: the deadline counts from here.
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub deferrals: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_until: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_by: Option<String>,
    /// The user who said "run it now".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_now_by: Option<String>,
}

impl Held {
    /// When it runs whatever the user says.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.received_at + chrono::Duration::from_std(self.consent.deadline).unwrap_or(chrono::Duration::MAX)
    }
}

/// What a held run does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// It starts now.
    Run(RunBecause),
    /// It waits, in `state`, until `until` at the latest (an answer or a change wakes it sooner).
    Wait { state: HeldState, until: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunBecause {
    /// Its deadline came.
    Deadline,
    /// Its user said so.
    User(String),
    /// Nobody can be asked here: the agent serves no kanade-client.
    NobodyToAsk,
}

/// Decides what a held run does at `now`, the PC's local offset then being `offset`. `someone_to_ask`: the agent
/// serves kanade-client. The deadline beats everything; then the user's "now"; a deferral waits out its time; quiet
/// hours wait for their end; otherwise the user is asked until the deadline.
pub fn decide(held: &Held, now: DateTime<Utc>, offset: FixedOffset, someone_to_ask: bool) -> Hold {
    let deadline = held.deadline();
    if now >= deadline {
        return Hold::Run(RunBecause::Deadline);
    }
    if let Some(user) = &held.run_now_by {
        return Hold::Run(RunBecause::User(user.clone()));
    }
    if !someone_to_ask {
        return Hold::Run(RunBecause::NobodyToAsk);
    }
    if let Some(until) = held.deferred_until.filter(|until| now < *until) {
        return Hold::Wait { state: HeldState::Deferred, until: until.min(deadline) };
    }
    if let Some(quiet) = held.consent.quiet() {
        let local = now.with_timezone(&offset);
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0);
        if quiet.contains(minute) {
            let left = (i64::from(quiet.to) - i64::from(minute)).rem_euclid(24 * 60);
            let this_minute = now - chrono::Duration::seconds(i64::from(local.second()));
            let end = this_minute.trunc_subsecs_to_secs() + chrono::Duration::minutes(left);
            return Hold::Wait { state: HeldState::Quiet, until: end.min(deadline) };
        }
    }
    Hold::Wait { state: HeldState::Asking, until: deadline }
}

trait TruncSecs {
    fn trunc_subsecs_to_secs(self) -> Self;
}

impl TruncSecs for DateTime<Utc> {
    fn trunc_subsecs_to_secs(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 0)
    }
}

/// Why a user's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no maintenance `{0}` is waiting on this PC")]
    Unknown(ExecId),
    #[error("it was put off {0} time(s) already, as often as allowed")]
    NoDeferralsLeft(u32),
    #[error("minutes must be 1-{MAX_DEFER_MINUTES}")]
    BadMinutes,
}

impl AnswerError {
    /// The reason code the IPC answers with.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_maintenance",
            Self::NoDeferralsLeft(_) => "no_deferrals_left",
            Self::BadMinutes => "invalid_params",
        }
    }
}

/// The runs held on this PC for their user's consent.
pub struct ConsentBook {
    file: Option<PathBuf>,
    held: Mutex<BTreeMap<ExecId, Held>>,
    someone_to_ask: bool,
    /// Counts changes: a held run waits on it for its user's answer, kanade-client's desk to push the list.
    changes: tokio::sync::watch::Sender<u64>,
}

impl ConsentBook {
    /// The book kept in `data_dir` (`None`: in memory only). `someone_to_ask`: the agent serves kanade-client.
    pub fn open(data_dir: Option<&Path>, someone_to_ask: bool) -> Arc<Self> {
        let file = data_dir.map(|dir| dir.join(CONSENT_FILE));
        let held = file.as_deref().map(read_book).unwrap_or_default();
        Arc::new(Self { file, held: Mutex::new(held), someone_to_ask, changes: tokio::sync::watch::channel(0).0 })
    }

    pub fn someone_to_ask(&self) -> bool {
        self.someone_to_ask
    }

    fn with<T>(&self, change: impl FnOnce(&mut BTreeMap<ExecId, Held>) -> T) -> T {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut held)
    }

    /// Keeps the book and tells whoever waits on it.
    fn changed(&self) {
        if let Some(file) = &self.file {
            let bytes = self.with(|held| serde_json::to_vec(&*held).unwrap_or_default());
            if let Err(err) = crate::platform::write_private(file, &bytes) {
                tracing::warn!(file = %file.display(), error = %err, "cannot keep what users said of held runs");
            }
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The entry of `command` (which carries `consent`), made now if it has none. `None` when the book is full.
    pub fn hold(&self, command: &Command, consent: &Consent, now: DateTime<Utc>) -> Option<Held> {
        let (held, new) = self.with(|book| {
            if let Some(held) = book.get(&command.exec_id) {
                return (Some(held.clone()), false);
            }
            if book.len() >= MAX_HELD {
                return (None, false);
            }
            let held = Held {
                job_id: command.job_id.clone(),
                consent: consent.clone(),
                received_at: now,
                deferrals: 0,
                deferred_until: None,
                deferred_by: None,
                run_now_by: None,
            };
            book.insert(command.exec_id.clone(), held.clone());
            (Some(held), true)
        });
        if new {
            self.changed();
        }
        held
    }

    pub fn get(&self, exec: &ExecId) -> Option<Held> {
        self.with(|book| book.get(exec).cloned())
    }

    /// `user` puts `exec` off for `minutes` (to its deadline at most).
    pub fn defer(&self, exec: &ExecId, user: &str, minutes: u32, now: DateTime<Utc>) -> Result<Held, AnswerError> {
        if minutes == 0 || minutes > MAX_DEFER_MINUTES {
            return Err(AnswerError::BadMinutes);
        }
        let held = self.with(|book| {
            let held = book.get_mut(exec).ok_or_else(|| AnswerError::Unknown(exec.clone()))?;
            if held.deferrals >= held.consent.max_defer {
                return Err(AnswerError::NoDeferralsLeft(held.deferrals));
            }
            held.deferrals += 1;
            held.deferred_until = Some((now + chrono::Duration::minutes(i64::from(minutes))).min(held.deadline()));
            held.deferred_by = Some(user.to_owned());
            Ok(held.clone())
        })?;
        self.changed();
        Ok(held)
    }

    /// `user` says run `exec` now.
    pub fn run_now(&self, exec: &ExecId, user: &str) -> Result<Held, AnswerError> {
        let held = self.with(|book| {
            let held = book.get_mut(exec).ok_or_else(|| AnswerError::Unknown(exec.clone()))?;
            held.run_now_by = Some(user.to_owned());
            Ok(held.clone())
        })?;
        self.changed();
        Ok(held)
    }

    /// The run is no longer held (it started, or ended without starting).
    pub fn forget(&self, exec: &ExecId) {
        if self.with(|book| book.remove(exec)).is_some() {
            self.changed();
        }
    }

    /// What the user is shown: every held run still waiting, soonest first.
    pub fn pending(&self, now: DateTime<Utc>, offset: FixedOffset) -> Vec<PendingRun> {
        let mut pending: Vec<PendingRun> = self.with(|book| {
            book.iter()
                .filter_map(|(exec, held)| match decide(held, now, offset, self.someone_to_ask) {
                    Hold::Wait { state, until } => Some(PendingRun {
                        exec_id: exec.clone(),
                        job_id: held.job_id.clone(),
                        title: held.consent.title.clone(),
                        message: held.consent.message.clone(),
                        state,
                        until,
                        deadline: held.deadline(),
                        deferrals_left: held.consent.max_defer.saturating_sub(held.deferrals),
                    }),
                    Hold::Run(_) => None,
                })
                .collect()
        });
        pending.sort_by(|a, b| a.until.cmp(&b.until).then(a.exec_id.cmp(&b.exec_id)));
        pending
    }
}

/// The PC's offset from UTC now.
pub fn local_offset() -> FixedOffset {
    *chrono::Local::now().offset()
}

/// How long a held run sleeps before it looks again at most, whatever it waits for: the clock may be set, or the
/// local offset change.
pub const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(30);

fn read_book(path: &Path) -> BTreeMap<ExecId, Held> {
    let read = || -> Result<Option<BTreeMap<ExecId, Held>>, String> {
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.to_string()),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{} bytes; at most {MAX_FILE_BYTES} are read", meta.len()));
        }
        let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
        serde_json::from_slice(&bytes).map(Some).map_err(|err| err.to_string())
    };
    match read() {
        Ok(book) => book.unwrap_or_default(),
        Err(err) => {
            // What users said is lost: a held run read back again is held afresh, its deadline counted from now.
            tracing::warn!(file = %path.display(), error = %err, "ignoring what users said of held runs");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn consent(quiet: Option<&str>) -> Consent {
        Consent {
            title: "Updates".into(),
            message: "The PC restarts.".into(),
            max_defer: 2,
            deadline: Duration::from_secs(48 * 3600),
            quiet_hours: quiet.map(str::to_owned),
        }
    }

    fn utc(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).single().unwrap()
    }

    fn held(quiet: Option<&str>) -> Held {
        Held {
            job_id: JobId::new("updates").unwrap(),
            consent: consent(quiet),
            received_at: utc(10, 0),
            deferrals: 0,
            deferred_until: None,
            deferred_by: None,
            run_now_by: None,
        }
    }

    fn command(consent: Consent) -> Command {
        Command {
            exec_id: ExecId::new("e").unwrap(),
            job_id: JobId::new("updates").unwrap(),
            version: String::new(),
            shell: kanade_shared::wire::Shell::Sh,
            script: "true".into(),
            timeout: Duration::from_secs(1),
            issued_at: utc(10, 0),
            deadline: None,
            jitter: None,
            run_as: kanade_shared::wire::RunAs::System,
            cwd: None,
            consent: Some(consent),
        }
    }

    const UTC: FixedOffset = FixedOffset::east_opt(0).unwrap();

    #[test]
    fn the_user_is_asked_until_the_deadline_and_then_it_runs() {
        let held = held(None);
        let deadline = utc(10, 0) + chrono::Duration::hours(48);
        assert_eq!(decide(&held, utc(10, 1), UTC, true), Hold::Wait { state: HeldState::Asking, until: deadline });
        assert_eq!(decide(&held, deadline, UTC, true), Hold::Run(RunBecause::Deadline));
        assert_eq!(decide(&held, utc(10, 1), UTC, false), Hold::Run(RunBecause::NobodyToAsk));
    }

    #[test]
    fn a_deferral_waits_its_time_and_the_deadline_beats_it() {
        let mut held = held(None);
        held.deferred_until = Some(utc(12, 0));
        assert_eq!(decide(&held, utc(11, 0), UTC, true), Hold::Wait { state: HeldState::Deferred, until: utc(12, 0) });
        assert_eq!(
            decide(&held, utc(12, 0), UTC, true).clone(),
            Hold::Wait { state: HeldState::Asking, until: held.deadline() }
        );
        held.deferred_until = Some(held.deadline() + chrono::Duration::hours(1));
        assert_eq!(decide(&held, held.deadline(), UTC, true), Hold::Run(RunBecause::Deadline));
        held.run_now_by = Some("ann".into());
        assert_eq!(decide(&held, utc(11, 0), UTC, true), Hold::Run(RunBecause::User("ann".into())));
    }

    #[test]
    fn quiet_hours_in_local_time_hold_it_to_their_end_even_across_midnight() {
        let held = held(Some("22:00-07:00"));
        let tokyo = FixedOffset::east_opt(9 * 3600).unwrap();
        // 14:30 UTC is 23:30 in Tokyo: quiet until 07:00 there, 22:00 UTC.
        assert_eq!(decide(&held, utc(14, 30), tokyo, true), Hold::Wait { state: HeldState::Quiet, until: utc(22, 0) });
        // 13:00 UTC is 22:00 in Tokyo: the first quiet minute.
        assert!(matches!(decide(&held, utc(13, 0), tokyo, true), Hold::Wait { state: HeldState::Quiet, .. }));
        // 22:00 UTC is 07:00 in Tokyo: asked again.
        assert!(matches!(decide(&held, utc(22, 0), tokyo, true), Hold::Wait { state: HeldState::Asking, .. }));
        // A deferral that ends in quiet hours waits for their end.
        let mut deferred = held.clone();
        deferred.deferred_until = Some(utc(14, 0));
        assert_eq!(
            decide(&deferred, utc(14, 1), tokyo, true),
            Hold::Wait { state: HeldState::Quiet, until: utc(22, 0) }
        );
        // Quiet hours never pass the deadline.
        let mut late = held.clone();
        late.received_at = utc(14, 0) - chrono::Duration::hours(48) + chrono::Duration::minutes(40);
        assert_eq!(
            decide(&late, utc(14, 30), tokyo, true),
            Hold::Wait { state: HeldState::Quiet, until: late.deadline() }
        );
    }

    #[test]
    fn deferrals_are_counted_bounded_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let book = ConsentBook::open(Some(dir.path()), true);
        let command = command(consent(None));
        let first = book.hold(&command, command.consent.as_ref().unwrap(), utc(10, 0)).unwrap();
        assert_eq!(first.received_at, utc(10, 0));
        let again = book.hold(&command, command.consent.as_ref().unwrap(), utc(11, 0)).unwrap();
        assert_eq!(again.received_at, utc(10, 0), "held once: the deadline counts from the first time");
        let exec = &command.exec_id;
        assert_eq!(book.defer(exec, "ann", 0, utc(10, 5)), Err(AnswerError::BadMinutes));
        let once = book.defer(exec, "ann", 60, utc(10, 5)).unwrap();
        assert_eq!((once.deferrals, once.deferred_until), (1, Some(utc(11, 5))));
        // A deferral past the deadline ends at it.
        let twice = book.defer(exec, "ann", MAX_DEFER_MINUTES, utc(10, 10)).unwrap();
        assert_eq!(twice.deferred_until, Some(twice.deadline()));
        assert_eq!(book.defer(exec, "ann", 60, utc(10, 15)), Err(AnswerError::NoDeferralsLeft(2)));
        assert_eq!(book.pending(utc(10, 20), UTC)[0].deferrals_left, 0);

        let reopened = ConsentBook::open(Some(dir.path()), true);
        assert_eq!(reopened.get(exec).unwrap().deferrals, 2, "what the user said survives a restart");
        reopened.forget(exec);
        assert!(ConsentBook::open(Some(dir.path()), true).get(exec).is_none());
        let unknown = ExecId::new("nope").unwrap();
        assert_eq!(reopened.run_now(&unknown, "ann"), Err(AnswerError::Unknown(unknown.clone())));
    }

    #[test]
    fn a_damaged_or_oversized_book_is_ignored_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONSENT_FILE), b"{not json").unwrap();
        assert!(ConsentBook::open(Some(dir.path()), true).pending(utc(10, 0), UTC).is_empty());
        let big = vec![b' '; usize::try_from(MAX_FILE_BYTES).unwrap() + 1];
        std::fs::write(dir.path().join(CONSENT_FILE), big).unwrap();
        assert!(ConsentBook::open(Some(dir.path()), true).pending(utc(10, 0), UTC).is_empty());
    }

    #[test]
    fn the_book_holds_a_bounded_number_of_runs() {
        let book = ConsentBook::open(None, true);
        for n in 0..MAX_HELD {
            let mut command = command(consent(None));
            command.exec_id = ExecId::new(format!("e{n}")).unwrap();
            assert!(book.hold(&command, command.consent.as_ref().unwrap(), utc(10, 0)).is_some());
        }
        let mut one_more = command(consent(None));
        one_more.exec_id = ExecId::new("one-more").unwrap();
        assert!(book.hold(&one_more, one_more.consent.as_ref().unwrap(), utc(10, 0)).is_none());
    }
}
