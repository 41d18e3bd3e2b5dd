//! Maintenance with consent: a command that carries a `consent` block (a job's `client.consent`) is held on the PC
//! until its user runs it now or puts it off, `max_defer` times at most; at its deadline (counted from when this PC
//! first held it) it runs whatever the answer. In quiet hours the user is not asked and a put-off run does not
//! start. An agent that serves no kanade-client has nobody to ask and runs such a command at once.
//!
//! The [`ConsentBook`] keeps what each held run's user said in `consent.json` in the data dir, so a restart neither
//! forgets a deferral nor starts the deadline again. What a held run does next is [`decide`]d, a pure function of the
//! command, the book's entry and the time; the pipeline does the waiting (`Pipeline::hold`) and kanade-client the
//! asking (`maintenance.*` over the local IPC).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SubsecRound as _, Timelike as _, Utc};
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
/// How long after its deadline an entry no run holds any more is kept (a run handed back at a stop whose command
/// never came back: expired, or replaced by a newer version), before it is dropped.
const KEEP_PAST_DEADLINE: chrono::TimeDelta = chrono::TimeDelta::days(1);

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
        chrono::Duration::from_std(self.consent.deadline)
            .ok()
            .and_then(|deadline| self.received_at.checked_add_signed(deadline))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
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
            let end = this_minute.trunc_subsecs(0) + chrono::Duration::minutes(left);
            return Hold::Wait { state: HeldState::Quiet, until: end.min(deadline) };
        }
    }
    Hold::Wait { state: HeldState::Asking, until: deadline }
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
    #[error("it is not waiting for an answer any more (it runs now)")]
    NotWaiting,
}

impl AnswerError {
    /// The reason code the IPC answers with.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown_maintenance",
            Self::NoDeferralsLeft(_) => "no_deferrals_left",
            Self::BadMinutes => "invalid_params",
            Self::NotWaiting => "not_waiting",
        }
    }
}

/// Who can be asked on this PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Nobody: the agent serves no kanade-client.
    Nobody,
    /// Whoever is signed in at the screen (or `configured`, `agent.run_as_user`); with nobody signed in there is
    /// nobody to ask.
    Screen { configured: Option<String> },
    /// Always someone (the fleet simulator's agents stand for PCs with a user at them).
    Always,
}

/// The book, and which of its runs a task holds now.
#[derive(Default)]
struct Book {
    held: BTreeMap<ExecId, Held>,
    /// Runs a pipeline task is holding in this process; only these are shown and answered.
    live: HashSet<ExecId>,
}

/// The runs held on this PC for their user's consent.
pub struct ConsentBook {
    file: Option<PathBuf>,
    book: Mutex<Book>,
    presence: Presence,
    /// Counts changes: a held run waits on it for its user's answer, kanade-client's desk to push the list.
    changes: tokio::sync::watch::Sender<u64>,
}

impl ConsentBook {
    /// The book kept in `data_dir` (`None`: in memory only), asking whom `presence` says.
    pub fn open(data_dir: Option<&Path>, presence: Presence) -> Arc<Self> {
        let file = data_dir.map(|dir| dir.join(CONSENT_FILE));
        let held = file.as_deref().map(read_book).unwrap_or_default();
        let book = Book { held, live: HashSet::new() };
        Arc::new(Self { file, book: Mutex::new(book), presence, changes: tokio::sync::watch::channel(0).0 })
    }

    /// Whether anybody here may be asked at all (the agent serves kanade-client).
    pub fn may_ask(&self) -> bool {
        self.presence != Presence::Nobody
    }

    /// Whether somebody can be asked now: someone is signed in at the screen (an error finding out counts as yes,
    /// logged: asking in vain costs a wait up to the deadline, running unasked may cost the user their work).
    pub async fn someone_to_ask(&self) -> bool {
        match &self.presence {
            Presence::Nobody => false,
            Presence::Always => true,
            Presence::Screen { configured } => {
                let configured = configured.clone();
                let signed_in =
                    tokio::task::spawn_blocking(move || crate::platform::signed_in_user(configured.as_deref()))
                        .await
                        .unwrap_or_else(|err| Err(format!("the check failed: {err}")));
                match signed_in {
                    Ok(user) => user.is_some(),
                    Err(why) => {
                        tracing::debug!(%why, "cannot tell who is signed in; asking as if someone were");
                        true
                    }
                }
            }
        }
    }

    /// Changes the book under its lock; `keep`: the change is kept (written under the same lock, so two writers
    /// never interleave or put an older book over a newer one) and told to whoever waits.
    fn change<T>(&self, change: impl FnOnce(&mut Book) -> (T, bool)) -> T {
        let (value, keep) = {
            let mut book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (value, keep) = change(&mut book);
            if keep && let Some(file) = &self.file {
                let bytes = serde_json::to_vec(&book.held).unwrap_or_default();
                if let Err(err) = crate::platform::write_private(file, &bytes) {
                    tracing::warn!(file = %file.display(), error = %err, "cannot keep what users said of held runs");
                }
            }
            (value, keep)
        };
        if keep {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        value
    }

    fn with<T>(&self, read: impl FnOnce(&Book) -> T) -> T {
        let book = self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&book)
    }

    /// A receiver that sees every later change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The entry of `command` (which carries `consent`), made now if it has none, and held by the caller until
    /// [`ConsentBook::forget`] or [`ConsentBook::let_go`]. `None` when the book is full.
    pub fn hold(&self, command: &Command, consent: &Consent, now: DateTime<Utc>) -> Option<Held> {
        self.change(|book| {
            book.live.insert(command.exec_id.clone());
            if let Some(held) = book.held.get(&command.exec_id) {
                return (Some(held.clone()), false);
            }
            // Entries no run holds, long past their deadline, make room first.
            let live = &book.live;
            book.held.retain(|exec, held| live.contains(exec) || held.deadline() + KEEP_PAST_DEADLINE > now);
            if book.held.len() >= MAX_HELD {
                book.live.remove(&command.exec_id);
                return (None, true);
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
            book.held.insert(command.exec_id.clone(), held.clone());
            (Some(held), true)
        })
    }

    pub fn get(&self, exec: &ExecId) -> Option<Held> {
        self.with(|book| book.held.get(exec).cloned())
    }

    /// `user` puts `exec` off for `minutes` (to its deadline at most).
    pub fn defer(&self, exec: &ExecId, user: &str, minutes: u32, now: DateTime<Utc>) -> Result<Held, AnswerError> {
        if minutes == 0 || minutes > MAX_DEFER_MINUTES {
            return Err(AnswerError::BadMinutes);
        }
        self.change(|book| {
            let Some(held) = book.held.get_mut(exec).filter(|_| book.live.contains(exec)) else {
                return (Err(AnswerError::Unknown(exec.clone())), false);
            };
            if held.run_now_by.is_some() || now >= held.deadline() {
                return (Err(AnswerError::NotWaiting), false);
            }
            if held.deferrals >= held.consent.max_defer {
                return (Err(AnswerError::NoDeferralsLeft(held.deferrals)), false);
            }
            held.deferrals += 1;
            held.deferred_until = Some((now + chrono::Duration::minutes(i64::from(minutes))).min(held.deadline()));
            held.deferred_by = Some(user.to_owned());
            (Ok(held.clone()), true)
        })
    }

    /// `user` says run `exec` now.
    pub fn run_now(&self, exec: &ExecId, user: &str) -> Result<Held, AnswerError> {
        self.change(|book| {
            let Some(held) = book.held.get_mut(exec).filter(|_| book.live.contains(exec)) else {
                return (Err(AnswerError::Unknown(exec.clone())), false);
            };
            held.run_now_by = Some(user.to_owned());
            (Ok(held.clone()), true)
        })
    }

    /// The run is no longer held (it started, or ended without starting).
    pub fn forget(&self, exec: &ExecId) {
        self.change(|book| {
            book.live.remove(exec);
            ((), book.held.remove(exec).is_some())
        });
    }

    /// The run is handed back (the agent stops before it started): what its user said is kept for when it comes
    /// back, but nobody holds it now.
    pub fn let_go(&self, exec: &ExecId) {
        self.change(|book| ((), book.live.remove(exec)));
    }

    /// What the user is shown: every run held now and still waiting, soonest first.
    pub fn pending(&self, now: DateTime<Utc>, offset: FixedOffset) -> Vec<PendingRun> {
        let mut pending: Vec<PendingRun> = self.with(|book| {
            book.held
                .iter()
                .filter(|(exec, _)| book.live.contains(*exec))
                .filter_map(|(exec, held)| match decide(held, now, offset, true) {
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
    match crate::platform::read_kept(path, MAX_FILE_BYTES) {
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
        let book = ConsentBook::open(Some(dir.path()), Presence::Always);
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

        let reopened = ConsentBook::open(Some(dir.path()), Presence::Always);
        assert_eq!(reopened.get(exec).unwrap().deferrals, 2, "what the user said survives a restart");
        reopened.forget(exec);
        assert!(ConsentBook::open(Some(dir.path()), Presence::Always).get(exec).is_none());
        let unknown = ExecId::new("nope").unwrap();
        assert_eq!(reopened.run_now(&unknown, "ann"), Err(AnswerError::Unknown(unknown.clone())));
    }

    #[test]
    fn only_runs_held_now_are_shown_and_answered_and_stale_entries_make_room() {
        let book = ConsentBook::open(None, Presence::Always);
        let command = command(consent(None));
        let exec = &command.exec_id;
        book.hold(&command, command.consent.as_ref().unwrap(), utc(10, 0)).unwrap();
        assert_eq!(book.run_now(exec, "ann").map(|h| h.run_now_by), Ok(Some("ann".into())));
        assert_eq!(book.defer(exec, "ann", 60, utc(10, 1)), Err(AnswerError::NotWaiting), "it runs now already");
        // Handed back at a stop: kept, but nobody holds it, so it is neither shown nor answered.
        book.let_go(exec);
        assert!(book.get(exec).is_some());
        assert!(book.pending(utc(10, 2), UTC).is_empty());
        assert_eq!(book.run_now(exec, "ann"), Err(AnswerError::Unknown(exec.clone())));
        // Never back: a day past its deadline it makes room for a new run when the book is full.
        let later = utc(10, 0) + chrono::Duration::hours(48) + KEEP_PAST_DEADLINE + chrono::Duration::minutes(1);
        for n in 0..MAX_HELD {
            let mut next = command.clone();
            next.exec_id = ExecId::new(format!("n{n}")).unwrap();
            assert!(book.hold(&next, next.consent.as_ref().unwrap(), later).is_some(), "room for run {n}");
        }
        assert!(book.get(exec).is_none(), "the stale entry went");
        // A deferral past its deadline is refused too.
        let fresh = ConsentBook::open(None, Presence::Always);
        fresh.hold(&command, command.consent.as_ref().unwrap(), utc(10, 0));
        assert_eq!(fresh.defer(exec, "ann", 5, later), Err(AnswerError::NotWaiting));
    }

    #[test]
    fn a_deadline_beyond_the_calendar_does_not_panic() {
        let mut held = held(None);
        held.consent.deadline = Duration::from_secs(u64::MAX / 4);
        assert_eq!(held.deadline(), DateTime::<Utc>::MAX_UTC);
        assert!(matches!(decide(&held, utc(10, 1), UTC, true), Hold::Wait { .. }));
    }

    #[test]
    fn a_damaged_or_oversized_book_is_ignored_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONSENT_FILE), b"{not json").unwrap();
        assert!(ConsentBook::open(Some(dir.path()), Presence::Always).pending(utc(10, 0), UTC).is_empty());
        let big = vec![b' '; usize::try_from(MAX_FILE_BYTES).unwrap() + 1];
        std::fs::write(dir.path().join(CONSENT_FILE), big).unwrap();
        assert!(ConsentBook::open(Some(dir.path()), Presence::Always).pending(utc(10, 0), UTC).is_empty());
    }

    #[test]
    fn the_book_holds_a_bounded_number_of_runs() {
        let book = ConsentBook::open(None, Presence::Always);
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
