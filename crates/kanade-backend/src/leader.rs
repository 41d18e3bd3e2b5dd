//! Leadership among backend replicas: one TTL lease in KV `leases` (key [`LEADER_KEY`]), taken with a create
//! (only when nobody holds it) and renewed by compare-and-set on its revision. Only the holder ticks rollouts and
//! fires schedules; every replica serves the API and runs the projectors.
//!
//! The bucket's `max_age` is the lease's time to live ([`LEADER_TTL`]): a holder that stops renewing (killed,
//! partitioned) loses the key that long after its last renewal reached the broker, and a follower's next try takes
//! it. The holder counts its own time from *before* it sent that renewal, and stops acting [`MARGIN`] earlier still,
//! so it stops deciding before anyone else can start: [`Leadership::leading`] turns false on its own clock, with no
//! message needed. Decisions are keyed anyway (an occurrence's execution id, a wave's compare-and-set), so even two
//! leaders would not fire anything twice; the lease keeps it to one that decides.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use chrono::{DateTime, Utc};
use kanade_shared::resources::{KV_LEASES, LEADER_KEY, LEADER_TTL};
use kanade_shared::wire::LeaderLease as Lease;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the holder renews: five renewals fit in one time to live.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How often a follower tries to take the lease.
pub const TRY_EVERY: Duration = Duration::from_secs(1);
/// The holder stops acting this long before its lease could expire at the broker: room for a decision in flight
/// and for the two clocks' rates to differ.
pub const MARGIN: Duration = Duration::from_secs(3);
/// How long one renewal or take may wait for the broker.
const PATIENCE: Duration = Duration::from_secs(2);

/// How long a lease renewed (or taken) by a request sent at `sent` lets its holder act: until `sent + ttl - margin`.
pub fn acting_until(sent: Instant, ttl: Duration, margin: Duration) -> Instant {
    sent + ttl.saturating_sub(margin)
}

#[derive(Debug, Default)]
struct State {
    /// The revision of our lease while we hold it.
    revision: Option<u64>,
    since: Option<DateTime<Utc>>,
    /// We may act until then.
    until: Option<Instant>,
    /// Who holds the lease, as last seen.
    holder: Option<String>,
}

/// This replica's view of the lease.
pub struct Leadership {
    instance: String,
    state: Mutex<State>,
}

impl Leadership {
    pub fn new(instance: impl Into<String>) -> Self {
        Self { instance: instance.into(), state: Mutex::default() }
    }

    /// This replica's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether this replica may decide now: it holds the lease and its last renewal is recent enough.
    pub fn leading(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.until.is_some_and(|until| Instant::now() < until)
    }

    /// Who holds the lease, as this replica last saw it.
    pub fn holder(&self) -> Option<String> {
        if self.leading() {
            return Some(self.instance.clone());
        }
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.holder.clone().filter(|h| *h != self.instance || state.until.is_some())
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state);
    }

    fn held(&self) -> Option<u64> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).revision
    }

    fn lease(&self, now: DateTime<Utc>) -> Lease {
        let since = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).since.unwrap_or(now);
        Lease { holder: self.instance.clone(), since, renewed_at: now }
    }

    /// Takes, holds and renews the lease until `shutdown`, then gives it up (so a follower takes over at once).
    pub async fn run(&self, nats: async_nats::Client, shutdown: CancellationToken) {
        let js = async_nats::jetstream::new(nats);
        let mut bucket: Option<kv::Store> = None;
        loop {
            let wait = match &bucket {
                None => match js.get_key_value(KV_LEASES).await {
                    Ok(kv) => {
                        bucket = Some(kv);
                        Duration::ZERO
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "no `leases` bucket: run `kanade jetstream setup`; not leading");
                        Duration::from_secs(5)
                    }
                },
                Some(kv) => match self.held() {
                    Some(revision) => {
                        self.renew(kv, revision).await;
                        RENEW_EVERY
                    }
                    None => {
                        self.try_take(kv).await;
                        if self.held().is_some() { RENEW_EVERY } else { TRY_EVERY }
                    }
                },
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
        if let (Some(kv), Some(revision)) = (&bucket, self.held()) {
            self.update(|s| *s = State::default());
            match tokio::time::timeout(PATIENCE, kv.delete_expect_revision(LEADER_KEY, Some(revision))).await {
                Ok(Ok(())) => tracing::info!(instance = %self.instance, "leadership given up"),
                _ => tracing::info!(instance = %self.instance, "leadership not given up; it lapses on its own"),
            }
        }
    }

    async fn try_take(&self, kv: &kv::Store) {
        let sent = Instant::now();
        let now = Utc::now();
        let value = Lease { holder: self.instance.clone(), since: now, renewed_at: now };
        let Ok(body) = serde_json::to_vec(&value) else { return };
        match tokio::time::timeout(PATIENCE, kv.create(LEADER_KEY, body.into())).await {
            Ok(Ok(revision)) => {
                self.update(|s| {
                    *s = State {
                        revision: Some(revision),
                        since: Some(now),
                        until: Some(acting_until(sent, LEADER_TTL, MARGIN)),
                        holder: Some(self.instance.clone()),
                    }
                });
                tracing::info!(instance = %self.instance, revision, "leadership taken: this backend ticks rollouts and schedules");
            }
            Ok(Err(_)) | Err(_) => {
                // Held by someone else (or the broker is away): learn who, for `/health`.
                let holder = match tokio::time::timeout(PATIENCE, kv.entry(LEADER_KEY)).await {
                    Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => {
                        serde_json::from_slice::<Lease>(&entry.value).ok().map(|l| l.holder)
                    }
                    Ok(Ok(_)) => None,
                    _ => return,
                };
                self.update(|s| s.holder = holder);
            }
        }
    }

    async fn renew(&self, kv: &kv::Store, revision: u64) {
        let sent = Instant::now();
        let Ok(body) = serde_json::to_vec(&self.lease(Utc::now())) else { return };
        match tokio::time::timeout(PATIENCE, kv.update(LEADER_KEY, body.into(), revision)).await {
            Ok(Ok(revision)) => {
                self.update(|s| {
                    s.revision = Some(revision);
                    s.until = Some(acting_until(sent, LEADER_TTL, MARGIN));
                });
            }
            Ok(Err(err)) if err.kind() == UpdateErrorKind::WrongLastRevision => {
                // Either an earlier renewal of ours was stored after we stopped waiting for its answer (the lease
                // is still ours, at a newer revision: carry on from that one), or someone else holds it now (ours
                // lapsed, or was taken away: stop at once).
                let current = tokio::time::timeout(PATIENCE, kv.entry(LEADER_KEY)).await;
                let since = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).since;
                let ours = match &current {
                    Ok(Ok(Some(entry))) if entry.operation == kv::Operation::Put => {
                        serde_json::from_slice::<Lease>(&entry.value)
                            .is_ok_and(|lease| lease.holder == self.instance && Some(lease.since) == since)
                            .then_some(entry.revision)
                    }
                    _ => None,
                };
                match ours {
                    Some(revision) => {
                        self.update(|s| s.revision = Some(revision));
                        tracing::info!(instance = %self.instance, revision, "a late renewal of ours was stored; renewing from it");
                    }
                    None => {
                        self.update(|s| *s = State::default());
                        tracing::warn!(instance = %self.instance, "leadership lost: the lease has another revision");
                    }
                }
            }
            failed => {
                // The broker did not answer: keep trying with the revision we hold, but act only until the last
                // renewal's time runs out.
                let reason = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => "no answer in time".into(),
                };
                let lapsed = !self.leading();
                if lapsed {
                    self.update(|s| *s = State::default());
                    tracing::warn!(instance = %self.instance, %reason, "leadership lost: cannot renew the lease");
                } else {
                    tracing::warn!(instance = %self.instance, %reason, "cannot renew the leadership lease; retrying");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_stops_before_its_lease_can_lapse_at_the_broker() {
        let sent = Instant::now();
        let until = acting_until(sent, LEADER_TTL, MARGIN);
        // The broker counts the time to live from when the renewal arrived, which is after `sent`.
        assert!(until < sent + LEADER_TTL);
        assert_eq!(until - sent, LEADER_TTL - MARGIN);
        assert!(RENEW_EVERY * 3 < LEADER_TTL - MARGIN, "several renewals may fail before it stops acting");
        assert_eq!(acting_until(sent, Duration::from_secs(1), Duration::from_secs(5)), sent, "never negative");
    }

    #[test]
    fn a_new_replica_does_not_lead() {
        let leadership = Leadership::new("a");
        assert!(!leadership.leading());
        assert_eq!(leadership.holder(), None);
        assert_eq!(leadership.instance(), "a");
    }
}
