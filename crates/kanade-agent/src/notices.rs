//! Operators' notifications for this PC's user (`kanade notify`): taken from `notifications.{all,group,pc}.<id>`
//! live (core subscriptions) and read back after every (re)connect from `NOTIFICATIONS` by batch direct get (no
//! consumer, as commands are), checked as commands are (signed by a key in the trust list whose scope covers this
//! PC and that subject), kept in the data dir until they expire (`notices.json`, the newest [`MAX_HELD`]), shown
//! to kanade-client, and their acknowledgements sent back on `events.notice_ack.<pc>.<id>` until the broker has
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, HeaderMap};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use kanade_shared::authority::Act;
use kanade_shared::resources::STREAM_NOTIFICATIONS;
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Notice, NoticeAck};
use kanade_shared::{GroupName, NoticeId, PcId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::authority::Authority;
use crate::catchup;
use crate::connection::Connects;

/// The file, in the data dir.
pub const NOTICES_FILE: &str = "notices.json";
/// Notifications kept at most (the newest); an older one still unexpired is dropped.
pub const MAX_HELD: usize = 200;
/// The largest file read back: [`MAX_HELD`] notices of 2,000 characters, with room.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Messages asked for per batch when reading back.
const BATCH: u64 = 64;
/// Messages read back per filter per (re)connect at most.
const MAX_READ_BACK: usize = 5_000;
/// How often unsent acknowledgements are tried again.
const ACK_RETRY: Duration = Duration::from_secs(30);

/// A notification this PC holds, and whether its user acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub notice: Notice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub by: String,
    pub at: DateTime<Utc>,
    /// Whether the broker has the acknowledgement.
    #[serde(default)]
    pub sent: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Kept {
    #[serde(default)]
    notices: Vec<Held>,
    /// How far each filter was read back: the stream sequence of the last message seen.
    #[serde(default)]
    positions: BTreeMap<String, u64>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no notification `{0}` is shown on this PC")]
    Unknown(NoticeId),
}

/// This PC's notifications.
pub struct Notices {
    file: Option<PathBuf>,
    kept: Mutex<Kept>,
    /// Wakes the sender of acknowledgements.
    ack_ready: tokio::sync::Notify,
}

impl Notices {
    /// The notifications kept in `data_dir` (none when the file is missing or unreadable, which is logged);
    /// `None`: in memory only (the simulator).
    pub fn open(data_dir: Option<&Path>) -> Arc<Self> {
        let file = data_dir.map(|dir| dir.join(NOTICES_FILE));
        let kept = file.as_deref().map(read_kept).unwrap_or_default();
        Arc::new(Self { file, kept: Mutex::new(kept), ack_ready: tokio::sync::Notify::new() })
    }

    fn with<T>(&self, change: impl FnOnce(&mut Kept) -> T) -> T {
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut kept)
    }

    fn save(&self) {
        let Some(file) = &self.file else { return };
        let bytes = self.with(|kept| serde_json::to_vec(kept).unwrap_or_default());
        if let Err(err) = crate::platform::write_private(file, &bytes) {
            tracing::warn!(file = %file.display(), error = %err, "cannot keep the notifications");
        }
    }

    /// Takes `notice` (already checked); `true` when it is new and shown now. Expired ones are dropped, and the
    /// newest [`MAX_HELD`] kept.
    pub fn add(&self, notice: Notice, now: DateTime<Utc>) -> bool {
        let added = self.with(|kept| {
            if notice.expires_at <= now || kept.notices.iter().any(|held| held.notice.id == notice.id) {
                return false;
            }
            kept.notices.push(Held { notice, acknowledged: None });
            prune(&mut kept.notices, now);
            true
        });
        if added {
            self.save();
        }
        added
    }

    /// The notifications shown now, newest first.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<Held> {
        self.with(|kept| {
            let mut shown: Vec<Held> =
                kept.notices.iter().filter(|held| held.notice.expires_at > now).cloned().collect();
            shown.sort_by(|a, b| b.notice.sent_at.cmp(&a.notice.sent_at).then(b.notice.id.cmp(&a.notice.id)));
            shown
        })
    }

    /// How many shown notifications wait for their user.
    pub fn unread(&self, now: DateTime<Utc>) -> usize {
        self.list(now).iter().filter(|held| held.acknowledged.is_none()).count()
    }

    /// `user` read notification `id`: kept, and sent to the broker as soon as it can be. Again is no change.
    pub fn acknowledge(&self, id: &NoticeId, user: &str, now: DateTime<Utc>) -> Result<Held, AckError> {
        let held = self.with(|kept| {
            let held = kept.notices.iter_mut().find(|held| held.notice.id == *id && held.notice.expires_at > now)?;
            if held.acknowledged.is_none() {
                held.acknowledged = Some(Acknowledged { by: user.to_owned(), at: now, sent: false });
            }
            Some(held.clone())
        });
        let held = held.ok_or_else(|| AckError::Unknown(id.clone()))?;
        self.save();
        self.ack_ready.notify_one();
        Ok(held)
    }

    /// The acknowledgements the broker does not have yet.
    fn unsent(&self, pc: &PcId) -> Vec<NoticeAck> {
        self.with(|kept| {
            kept.notices
                .iter()
                .filter_map(|held| {
                    let ack = held.acknowledged.as_ref().filter(|ack| !ack.sent)?;
                    Some(NoticeAck {
                        id: held.notice.id.clone(),
                        pc_id: pc.clone(),
                        user: ack.by.clone(),
                        acknowledged_at: ack.at,
                    })
                })
                .collect()
        })
    }

    fn mark_sent(&self, id: &NoticeId) {
        self.with(|kept| {
            if let Some(ack) =
                kept.notices.iter_mut().find(|h| h.notice.id == *id).and_then(|h| h.acknowledged.as_mut())
            {
                ack.sent = true;
            }
        });
        self.save();
    }

    fn position(&self, filter: &str) -> u64 {
        self.with(|kept| kept.positions.get(filter).copied().unwrap_or(0))
    }

    fn set_position(&self, filter: &str, seq: u64, filters: &[String]) {
        self.with(|kept| {
            kept.positions.insert(filter.to_owned(), seq);
            // A group the agent left is forgotten.
            kept.positions.retain(|f, _| filters.contains(f));
        });
        self.save();
    }
}

fn read_kept(path: &Path) -> Kept {
    match crate::platform::read_kept(path, MAX_FILE_BYTES) {
        Ok(kept) => kept.unwrap_or_default(),
        Err(err) => {
            // What was shown is lost; every unexpired notification is read back from the broker at the next connect.
            tracing::warn!(file = %path.display(), error = %err, "ignoring the kept notifications");
            Kept::default()
        }
    }
}

/// Drops expired notifications and all but the newest [`MAX_HELD`].
fn prune(notices: &mut Vec<Held>, now: DateTime<Utc>) {
    notices.retain(|held| held.notice.expires_at > now);
    if notices.len() > MAX_HELD {
        notices.sort_by_key(|held| std::cmp::Reverse(held.notice.sent_at));
        notices.truncate(MAX_HELD);
    }
}

/// Why a message on a notification subject is not shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unshown {
    #[error("not a notification: {0}")]
    Malformed(String),
    #[error("the notification's id is not its subject's")]
    WrongSubject,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
}

/// Reads and checks one message: a notification this PC's user may be shown, or why not.
pub fn receive(
    authority: &Authority,
    subject_name: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Notice, Unshown> {
    let notice: Notice = serde_json::from_slice(payload).map_err(|err| Unshown::Malformed(err.to_string()))?;
    if subject::target_of_notice(subject_name).is_none() || !subject_name.ends_with(&format!(".{}", notice.id)) {
        return Err(Unshown::WrongSubject);
    }
    notice.validate().map_err(|err| Unshown::Invalid(err.to_string()))?;
    authority.check(Act::Notice, subject_name, headers, payload).map_err(|refusal| {
        authority.refuse(Act::Notice, subject_name, &refusal);
        Unshown::Refused(refusal.to_string())
    })?;
    Ok(notice)
}

/// The subjects this agent takes notifications on: all, its groups, itself.
pub fn filters(pc: &PcId, groups: &[GroupName]) -> Vec<String> {
    let mut filters = vec![subject::notices_for(&Target::All), subject::notices_for(&Target::Pc(pc.clone()))];
    filters.extend(groups.iter().map(|g| subject::notices_for(&Target::Group(g.clone()))));
    filters
}

/// What the notification task is given.
pub struct Parts {
    pub notices: Arc<Notices>,
    pub client: Client,
    pub authority: Arc<Authority>,
    pub pc: PcId,
    pub groups: Vec<GroupName>,
    pub connects: Connects,
    /// Called with each new notification shown (kanade-client's push).
    pub shown: Box<dyn Fn(&Notice) + Send + Sync>,
    pub shutdown: CancellationToken,
}

/// Takes notifications until `shutdown`: live, and read back at start and after every reconnect; sends the
/// acknowledgements the broker does not have yet.
pub async fn run(parts: Parts) {
    let Parts { notices, client, authority, pc, groups, mut connects, shown, shutdown } = parts;
    let filters = filters(&pc, &groups);
    let mut live = Vec::with_capacity(filters.len());
    for filter in &filters {
        match client.subscribe(filter.clone()).await {
            Ok(subscriber) => live.push(subscriber),
            Err(err) => tracing::warn!(filter = %filter, error = %err, "cannot subscribe to notifications"),
        }
    }
    let mut live = futures::stream::select_all(live);
    let take = |subject_name: &str, headers: Option<&HeaderMap>, payload: &[u8]| match receive(
        &authority,
        subject_name,
        headers,
        payload,
    ) {
        Ok(notice) => {
            if notices.add(notice.clone(), Utc::now()) {
                tracing::info!(id = %notice.id, from = %notice.from, level = notice.level.as_str(), "notification shown");
                shown(&notice);
            }
        }
        Err(Unshown::Refused(_)) => {}
        Err(why) => tracing::warn!(subject = subject_name, error = %why, "notification not shown"),
    };
    connects.mark_changed();
    let mut ack_retry = tokio::time::interval(ACK_RETRY);
    ack_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(message) = live.next() => take(message.subject.as_str(), message.headers.as_ref(), &message.payload),
            Ok(()) = connects.changed() => {
                for filter in &filters {
                    read_back(&client, &notices, filter, &filters, &take).await;
                }
                send_acks(&client, &notices, &pc).await;
            }
            () = notices.ack_ready.notified() => send_acks(&client, &notices, &pc).await,
            _ = ack_retry.tick() => send_acks(&client, &notices, &pc).await,
        }
    }
}

/// Reads back what `filter` holds past its position (a bounded number per call).
async fn read_back(
    client: &Client,
    notices: &Notices,
    filter: &str,
    filters: &[String],
    take: &impl Fn(&str, Option<&HeaderMap>, &[u8]),
) {
    let mut from = notices.position(filter) + 1;
    let mut read = 0;
    while read < MAX_READ_BACK {
        let batch = match catchup::fetch_batch(client, STREAM_NOTIFICATIONS, filter, from, BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                // The next reconnect (or start) tries again from the same position.
                tracing::warn!(filter, error = %err, "cannot read back notifications");
                return;
            }
        };
        let Some(last) = batch.messages.last().map(|m| m.seq) else { return };
        for message in &batch.messages {
            take(&message.subject, message.headers.as_ref(), &message.payload);
        }
        read += batch.messages.len();
        notices.set_position(filter, last, filters);
        from = last + 1;
        if batch.nothing_more || batch.pending == Some(0) {
            return;
        }
    }
}

/// Sends the acknowledgements the broker does not have, each once it is stored (`Nats-Msg-Id`: id and PC).
async fn send_acks(client: &Client, notices: &Notices, pc: &PcId) {
    let js = jetstream::new(client.clone());
    for ack in notices.unsent(pc) {
        let Ok(body) = serde_json::to_vec(&ack) else { continue };
        let message_id = format!("{}.{}", ack.id, ack.pc_id);
        let sent = js
            .send_publish(
                subject::notice_ack(pc, &ack.id),
                jetstream::message::PublishMessage::build().payload(body.into()).message_id(message_id.as_str()),
            )
            .await;
        let stored = match sent {
            Ok(pending) => tokio::time::timeout(Duration::from_secs(10), pending).await.is_ok_and(|r| r.is_ok()),
            Err(_) => false,
        };
        if !stored {
            // Kept unsent; tried again on the next reconnect or retry tick.
            return;
        }
        notices.mark_sent(&ack.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, sent_minutes_ago: i64, ttl_minutes: i64, now: DateTime<Utc>) -> Notice {
        let sent_at = now - chrono::Duration::minutes(sent_minutes_ago);
        Notice {
            id: NoticeId::new(id).unwrap(),
            level: Default::default(),
            text: format!("notice {id}"),
            from: kanade_shared::Actor::new("ops").unwrap(),
            sent_at,
            expires_at: sent_at + chrono::Duration::minutes(ttl_minutes),
        }
    }

    #[test]
    fn notices_are_kept_once_newest_first_until_they_expire_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let notices = Notices::open(Some(dir.path()));
        assert!(notices.add(notice("a", 10, 60, now), now));
        assert!(!notices.add(notice("a", 10, 60, now), now), "the same id again is no news");
        assert!(notices.add(notice("b", 5, 60, now), now));
        assert!(!notices.add(notice("old", 120, 60, now), now), "expired before it arrived");
        let ids = |list: Vec<Held>| list.into_iter().map(|h| h.notice.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(notices.list(now)), ["b", "a"]);
        assert_eq!(notices.unread(now), 2);

        let held = notices.acknowledge(&NoticeId::new("a").unwrap(), "ann", now).unwrap();
        assert_eq!(held.acknowledged.as_ref().map(|a| a.by.as_str()), Some("ann"));
        assert_eq!(notices.unread(now), 1);
        assert_eq!(
            notices.acknowledge(&NoticeId::new("zz").unwrap(), "ann", now),
            Err(AckError::Unknown(NoticeId::new("zz").unwrap()))
        );
        let pc = PcId::new("pc-1").unwrap();
        assert_eq!(notices.unsent(&pc).len(), 1);

        // A restart keeps them, the acknowledgement and whether it was sent.
        let again = Notices::open(Some(dir.path()));
        assert_eq!(ids(again.list(now)), ["b", "a"]);
        assert_eq!(again.unsent(&pc).len(), 1);
        again.mark_sent(&NoticeId::new("a").unwrap());
        assert!(again.unsent(&pc).is_empty());
        // 52 minutes on, `a` (sent 10 minutes ago for an hour) has expired and cannot be acknowledged; `b` has not.
        let later = now + chrono::Duration::minutes(52);
        assert_eq!(ids(again.list(later)), ["b"]);
        assert!(again.acknowledge(&NoticeId::new("a").unwrap(), "ann", later).is_err());
    }

    #[test]
    fn at_most_the_newest_are_kept_and_a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let notices = Notices::open(Some(dir.path()));
        for i in 0..(MAX_HELD + 20) {
            let minutes_ago = i64::try_from(MAX_HELD + 20 - i).unwrap();
            notices.add(notice(&format!("n{i}"), minutes_ago, 24 * 60, now), now);
        }
        let list = notices.list(now);
        assert_eq!(list.len(), MAX_HELD);
        assert_eq!(list[0].notice.id.as_str(), format!("n{}", MAX_HELD + 19));
        std::fs::write(dir.path().join(NOTICES_FILE), b"{ not json").unwrap();
        assert!(Notices::open(Some(dir.path())).list(now).is_empty());
        std::fs::write(dir.path().join(NOTICES_FILE), vec![b' '; usize::try_from(MAX_FILE_BYTES).unwrap() + 1])
            .unwrap();
        assert!(Notices::open(Some(dir.path())).list(now).is_empty());
    }

    #[test]
    fn positions_are_kept_per_filter_and_a_left_group_is_forgotten() {
        let notices = Notices::open(None);
        let filters = vec!["notifications.all.*".to_owned(), "notifications.group.lab.*".to_owned()];
        notices.set_position(&filters[1], 7, &filters);
        assert_eq!(notices.position(&filters[1]), 7);
        assert_eq!(notices.position(&filters[0]), 0);
        notices.set_position(&filters[0], 9, &filters[..1]);
        assert_eq!(notices.position(&filters[1]), 0, "no longer a filter of this agent");
    }
}
