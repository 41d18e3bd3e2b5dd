//! The agent's inventory: each kind (`hardware`, `software`, `status`) is collected on a blocking thread, bounded,
//! hashed, and published on `inventory.<pc>.<kind>` (stream `INVENTORY`, the newest per subject) only when its
//! hash differs from the last one the broker acknowledged — or when someone asked for a full report, or when the
//! broker no longer holds the last one (a purged or re-created stream). The acknowledged hashes are kept in the
//! data dir (`inventory.json`), so a restart does not resend what did not change.
//!
//! Collection runs in the main loop's background tracker and never holds up a command: one collection at a time,
//! a request that arrives meanwhile is folded into one more round after it.

pub mod collect;
pub mod parse;
pub mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_nats::Client;
use chrono::Utc;
use kanade_shared::inventory::{
    Bounded, Hardware, InventoryReport, KIND_HARDWARE, KIND_SOFTWARE, KIND_STATUS, KINDS, MAX_REPORT_BYTES, RefreshAck,
    RefreshRequest, SoftwareList, Status,
};
use kanade_shared::resources::STREAM_INVENTORY;
use kanade_shared::{InventoryKind, PcId, subject};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::catchup;
use crate::inventory::collect::{Collected, HostRoot};

/// How long one whole collection may take before its reports are abandoned (the blocking thread finishes on its
/// own: each helper program it runs is killed at `collect::COMMAND_TIMEOUT`).
const COLLECT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a report may wait for the broker's ack.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(10);
/// The waits before each retry of a report the broker did not acknowledge (each spread over half to all of it).
const RETRY_WAITS: [Duration; 6] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(180),
];

/// Where an agent's inventory comes from: the host it runs on, or the fleet simulator's made-up PCs.
pub enum Source {
    Host(HostRoot),
    Synthetic(synthetic::SyntheticPc),
}

/// Collects every kind of the host (blocking).
fn collect_host(root: &HostRoot) -> Kinds {
    Kinds {
        hardware: crate::platform::collect_hardware(root),
        software: crate::platform::collect_software(root),
        status: crate::platform::collect_status(root),
    }
}

/// One collection of every kind.
pub struct Kinds {
    pub hardware: Collected<Hardware>,
    pub software: Collected<SoftwareList>,
    pub status: Collected<Status>,
}

/// One kind, ready to publish: its subject, the message, and its content's hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub kind: &'static str,
    pub hash: String,
    pub body: Vec<u8>,
}

/// Builds the message for one kind: bounds the content (counting what was cut), hashes it, and wraps it in the
/// envelope. A software list too large for one message loses items from its end until it fits (counted in
/// `dropped`), so the broker never refuses it.
pub fn prepare<T: Serialize + Bounded>(
    pc: &PcId,
    kind: &'static str,
    mut collected: Collected<T>,
    full: bool,
    shrink: impl Fn(&mut T) -> bool,
) -> Prepared {
    let mut cuts = collected.data.bound();
    let error_cuts = kanade_shared::inventory::bound_errors(&mut collected.errors);
    cuts.items += error_cuts.items;
    cuts.fields += error_cuts.fields;
    if cuts.any() {
        tracing::warn!(kind, items = cuts.items, fields = cuts.fields, "inventory cut to its limits");
    }
    let collected_at = Utc::now();
    loop {
        let data = serde_json::to_vec(&collected.data).unwrap_or_default();
        let hash = hex(&sha2::Sha256::digest(&data));
        let report = InventoryReport {
            pc_id: pc.clone(),
            kind: InventoryKind::new(kind).unwrap_or_else(|_| unreachable!("kinds are valid ids")),
            collected_at,
            hash: hash.clone(),
            full,
            errors: collected.errors.clone(),
            data: &collected.data,
        };
        let body = serde_json::to_vec(&report).unwrap_or_default();
        if body.len() <= MAX_REPORT_BYTES || !shrink(&mut collected.data) {
            return Prepared { kind, hash, body };
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops the last tenth of a software list (at least one item), counting them; false when nothing is left to drop.
fn shrink_software(list: &mut SoftwareList) -> bool {
    if list.items.is_empty() {
        return false;
    }
    let keep = list.items.len() - (list.items.len() / 10).max(1);
    list.dropped += (list.items.len() - keep) as u64;
    list.items.truncate(keep);
    true
}

/// Which kinds to publish: every kind when `full`; otherwise each whose hash differs from the acknowledged one, or
/// whose subject the broker no longer holds (`held`, when it could be asked; `None` trusts the acknowledged
/// hashes).
pub fn to_send<'a>(
    prepared: &'a [Prepared],
    acked: &BTreeMap<String, String>,
    held: Option<&BTreeSet<String>>,
    full: bool,
) -> Vec<&'a Prepared> {
    prepared
        .iter()
        .filter(|p| full || acked.get(p.kind) != Some(&p.hash) || held.is_some_and(|held| !held.contains(p.kind)))
        .collect()
}

/// The acknowledged hash per kind, as kept in `inventory.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Acked {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// A collection asked for while another runs: none, changes only, or full.
const AGAIN_NONE: u8 = 0;
const AGAIN_CHANGES: u8 = 1;
const AGAIN_FULL: u8 = 2;

/// One agent's inventory reporter.
pub struct Inventory {
    pc: PcId,
    client: Client,
    source: Source,
    enabled: bool,
    state_path: PathBuf,
    acked: Mutex<Acked>,
    busy: tokio::sync::Mutex<()>,
    again: AtomicU8,
    /// The last round left a kind unsent (no ack from the broker): the next reconnect tries again rather than the
    /// next interval, a day later.
    unsent: std::sync::atomic::AtomicBool,
}

impl Inventory {
    /// `enabled` is `[inventory] enabled`: when false the agent neither collects on its schedule nor on request.
    pub fn new(pc: PcId, client: Client, source: Source, data_dir: &std::path::Path, enabled: bool) -> Self {
        let state_path = data_dir.join("inventory.json");
        let acked = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %state_path.display(), error = %err, "inventory state unreadable; reporting all");
                Acked::default()
            }),
            Err(_) => Acked::default(),
        };
        Self {
            pc,
            client,
            source,
            enabled,
            state_path,
            acked: Mutex::new(acked),
            busy: tokio::sync::Mutex::new(()),
            again: AtomicU8::new(AGAIN_NONE),
            unsent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the last round left something unsent; true once per such round (the caller starts a round).
    pub fn take_unsent(&self) -> bool {
        self.unsent.swap(false, Ordering::SeqCst)
    }

    /// Answers `agents.<pc>.inventory`; says whether a collection should be started (`Some(full)`).
    pub fn request(&self, payload: &[u8]) -> (RefreshAck, Option<bool>) {
        // An empty body is a request with defaults; a body that is not a request is treated the same way, since
        // the worst it can cause is one collection.
        let request: RefreshRequest = serde_json::from_slice(payload).unwrap_or_default();
        let mut ack = RefreshAck { pc_id: self.pc.clone(), accepted: self.enabled, already_running: false };
        if !self.enabled {
            return (ack, None);
        }
        ack.already_running = self.busy.try_lock().is_err();
        (ack, Some(request.full))
    }

    /// Collects and reports; when another collection is under way, asks it for one more round instead (a full
    /// one when `full`). Returns once the reports are acknowledged, abandoned, or `shutdown` is cancelled.
    pub async fn report(&self, full: bool, shutdown: &tokio_util::sync::CancellationToken) {
        if !self.enabled {
            return;
        }
        let mut full = full;
        loop {
            let Ok(busy) = self.busy.try_lock() else {
                self.again.fetch_max(if full { AGAIN_FULL } else { AGAIN_CHANGES }, Ordering::SeqCst);
                return;
            };
            loop {
                tokio::select! {
                    () = self.round(full) => {}
                    () = shutdown.cancelled() => return,
                }
                match self.again.swap(AGAIN_NONE, Ordering::SeqCst) {
                    AGAIN_NONE => break,
                    again => full = again == AGAIN_FULL,
                }
            }
            drop(busy);
            // A request that came after the last look but before the release found the collection busy and left
            // it for this one: look once more now that anyone may take it.
            match self.again.swap(AGAIN_NONE, Ordering::SeqCst) {
                AGAIN_NONE => return,
                again => full = again == AGAIN_FULL,
            }
        }
    }

    async fn round(&self, full: bool) {
        let started = std::time::Instant::now();
        let prepared = match self.collect(full).await {
            Some(prepared) => prepared,
            None => return,
        };
        let acked = self.acked.lock().map(|a| a.hashes.clone()).unwrap_or_default();
        // One request per collection (a day, by default) tells whether the broker still holds what it acknowledged;
        // a full report sends everything anyway.
        let held = if full { None } else { self.held().await };
        let sending = to_send(&prepared, &acked, held.as_ref(), full);
        let mut sent = Vec::new();
        for report in &sending {
            if self.publish_with_retries(report).await {
                sent.push(report.kind);
            }
        }
        if !sent.is_empty() {
            self.remember(&prepared, &sent);
        }
        self.unsent.store(sent.len() < sending.len(), Ordering::SeqCst);
        tracing::info!(
            full,
            sent = ?sent,
            unchanged = prepared.len() - sending.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "inventory collected"
        );
    }

    /// Collects on a blocking thread, bounded in time.
    async fn collect(&self, full: bool) -> Option<Vec<Prepared>> {
        let pc = self.pc.clone();
        let kinds = match &self.source {
            // Made up in memory, in microseconds: no thread of its own.
            Source::Synthetic(pc) => pc.collect(),
            Source::Host(root) => {
                let root = root.clone();
                let task = tokio::task::spawn_blocking(move || collect_host(&root));
                match tokio::time::timeout(COLLECT_TIMEOUT, task).await {
                    Ok(Ok(kinds)) => kinds,
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "inventory collection failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::error!(timeout = ?COLLECT_TIMEOUT, "inventory collection took too long; abandoned");
                        return None;
                    }
                }
            }
        };
        Some(vec![
            prepare(&pc, KIND_HARDWARE, kinds.hardware, full, |_| false),
            prepare(&pc, KIND_SOFTWARE, normalised(kinds.software), full, shrink_software),
            prepare(&pc, KIND_STATUS, kinds.status, full, |_| false),
        ])
    }

    /// Which of this agent's kinds the broker holds now; `None` when it cannot tell (then the acknowledged hashes
    /// are trusted). One direct get of the last report per kind (`$JS.API.DIRECT.GET.INVENTORY.inventory.<pc>.<kind>`):
    /// the form an agent's permissions allow, and only on its own subjects (no stream info, which they refuse).
    async fn held(&self) -> Option<BTreeSet<String>> {
        let asked = async {
            let mut held = BTreeSet::new();
            for &kind in KINDS {
                let on = subject::inventory(&self.pc, &InventoryKind::new(kind)?);
                if catchup::last_for_subject(&self.client, STREAM_INVENTORY, &on).await?.is_some() {
                    held.insert(kind.to_owned());
                }
            }
            Ok::<_, async_nats::Error>(held)
        };
        match tokio::time::timeout(PUBLISH_PATIENCE, asked).await {
            Ok(Ok(held)) => Some(held),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "cannot ask the broker which inventory it holds");
                None
            }
            Err(_) => None,
        }
    }

    /// Publishes, and when the broker does not acknowledge (a whole fleet reporting at once meets JetStream's
    /// limit of pending requests, `429 too many requests`, or an ack timeout) tries again after a growing, spread
    /// wait: [`RETRY_WAITS`], about five minutes in all. False when every try failed (the next reconnect or
    /// interval tries again).
    async fn publish_with_retries(&self, report: &Prepared) -> bool {
        for (attempt, wait) in std::iter::once(Duration::ZERO).chain(RETRY_WAITS.iter().copied()).enumerate() {
            if !wait.is_zero() {
                // Spread over half to all of the wait, so the agents refused together do not come back together.
                tokio::time::sleep(wait / 2 + rand::random_range(Duration::ZERO..=wait / 2)).await;
            }
            match self.publish(report).await {
                Ok(()) => return true,
                Err(err) => tracing::debug!(kind = report.kind, attempt, error = %err, "inventory not acknowledged"),
            }
        }
        tracing::warn!(
            kind = report.kind,
            "inventory not acknowledged after retries; tried again at the next reconnect"
        );
        false
    }

    async fn publish(&self, report: &Prepared) -> Result<(), async_nats::Error> {
        let kind = InventoryKind::new(report.kind)?;
        let js = async_nats::jetstream::new(self.client.clone());
        let sent = async {
            js.publish(subject::inventory(&self.pc, &kind), report.body.clone().into()).await?.await?;
            Ok::<(), async_nats::Error>(())
        };
        tokio::time::timeout(PUBLISH_PATIENCE, sent).await.map_err(|_| "no ack from the broker in time")?
    }

    /// Keeps the hashes of the kinds the broker acknowledged, on disk (write, then rename: never a torn file).
    fn remember(&self, prepared: &[Prepared], sent: &[&str]) {
        let Ok(mut acked) = self.acked.lock() else { return };
        for p in prepared.iter().filter(|p| sent.contains(&p.kind)) {
            acked.hashes.insert(p.kind.to_owned(), p.hash.clone());
        }
        let tmp = self.state_path.with_extension("json.tmp");
        let written = serde_json::to_vec(&*acked)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(err) = written {
            tracing::warn!(path = %self.state_path.display(), error = %err, "cannot keep inventory state");
        }
    }
}

/// Bounded first (cutting ids can make two equal), then sorted and made unique by key.
fn normalised(mut software: Collected<SoftwareList>) -> Collected<SoftwareList> {
    software.data.bound();
    let duplicates = software.data.normalise();
    if duplicates > 0 {
        tracing::debug!(duplicates, "software items with the same source and id dropped");
    }
    software
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::inventory::Software;

    fn pc() -> PcId {
        PcId::new("pc-1").unwrap()
    }

    #[test]
    fn only_changed_kinds_are_sent_unless_full_or_lost() {
        let p = |kind: &'static str, hash: &str| Prepared { kind, hash: hash.into(), body: Vec::new() };
        let prepared = [p("hardware", "h1"), p("software", "s2"), p("status", "t1")];
        let acked: BTreeMap<String, String> =
            [("hardware", "h1"), ("software", "s1"), ("status", "t1")].map(|(k, v)| (k.into(), v.into())).into();
        let kinds = |sent: Vec<&Prepared>| sent.iter().map(|p| p.kind).collect::<Vec<_>>();
        assert_eq!(kinds(to_send(&prepared, &acked, None, false)), ["software"]);
        assert_eq!(kinds(to_send(&prepared, &acked, None, true)), ["hardware", "software", "status"]);
        let held: BTreeSet<String> = ["software".to_owned(), "status".to_owned()].into();
        assert_eq!(kinds(to_send(&prepared, &acked, Some(&held), false)), ["hardware", "software"]);
        assert_eq!(kinds(to_send(&prepared, &BTreeMap::new(), None, false)).len(), 3, "nothing acked yet");
    }

    #[test]
    fn an_oversized_software_list_is_cut_to_fit_one_message() {
        let item = |i: usize| Software {
            source: "dpkg".into(),
            id: format!("package-{i:06}"),
            name: "n".repeat(200),
            version: "1.0".into(),
            ..Default::default()
        };
        let list = SoftwareList { items: (0..9_000).map(item).collect(), ..Default::default() };
        let prepared = prepare(&pc(), KIND_SOFTWARE, Collected::new(list), false, shrink_software);
        assert!(prepared.body.len() <= MAX_REPORT_BYTES, "{}", prepared.body.len());
        let report: InventoryReport<SoftwareList> = serde_json::from_slice(&prepared.body).unwrap();
        assert!(report.data.dropped > 0);
        assert_eq!(report.data.items.len() as u64 + report.data.dropped, 9_000, "every cut item is counted");
        assert_eq!(report.hash, prepared.hash);
    }

    #[test]
    fn equal_content_hashes_equal_whatever_the_time() {
        let hw = || Collected::new(Hardware { hostname: "pc-1".into(), ..Default::default() });
        let a = prepare(&pc(), KIND_HARDWARE, hw(), false, |_| false);
        let b = prepare(&pc(), KIND_HARDWARE, hw(), true, |_| false);
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.hash.len(), 64);
        let c = prepare(
            &pc(),
            KIND_HARDWARE,
            Collected::new(Hardware { hostname: "pc-2".into(), ..Default::default() }),
            false,
            |_| false,
        );
        assert_ne!(a.hash, c.hash);
    }
}
