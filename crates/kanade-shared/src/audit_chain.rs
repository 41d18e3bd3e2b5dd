//! The audit trail's hash chain: every [`AuditEvent`] carries the hash of the event before it in stream `AUDIT`, so
//! an edited, deleted, reordered or inserted event shows as a break when the chain is recomputed. One chain per
//! stream: the publisher links to whatever is the stream's last message and publishes only if it still is
//! (`kanade_ops::audit`), so concurrent writers (every CLI, every backend replica) still form one line.
//!
//! This module is pure: the hash ([`hash_of`] over [`canonical_bytes`]), the link a new event takes
//! ([`next_link`]), a verifier that folds over events in stream order and reports the first break ([`Verifier`]),
//! and the cross-check of the database's copy against the stream's ([`CrossCheck`]).
//!
//! The chain proves order and completeness to anyone who keeps a copy, not authorship: whoever may publish on
//! `audit.>` can compute a valid hash. What it catches is a copy (the stream, or the backend's table) that was
//! changed after the fact without the other being changed the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::subject;
use crate::wire::AuditEvent;

/// What the hash input starts with, so an audit hash can never be mistaken for the hash of anything else, and a
/// future encoding gets a new name.
pub const DOMAIN: &str = "kanade-audit-v1";

/// The `prev_hash` of the first event of a chain: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest event id an event may carry, in bytes: what a list cursor can hold (the backend's pages are keyed
/// by it).
pub const MAX_EVENT_ID_BYTES: usize = 256;

/// How long `AUDIT` keeps an event (its `max_age`). When the stream has held nothing for this long, the next
/// event starts the chain over at [`GENESIS`]; a verifier accepts such a restart where the events on either side
/// are at least this far apart.
pub fn stream_max_age() -> std::time::Duration {
    crate::resources::STREAMS
        .iter()
        .find(|spec| spec.name == crate::resources::STREAM_AUDIT)
        .map(|spec| spec.max_age)
        .unwrap_or(std::time::Duration::from_secs(365 * 24 * 60 * 60))
}

/// `at` cut to whole milliseconds: what the database keeps (`at_ms`) and what the hash covers, so the event as
/// published and the event as stored are the same.
pub fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(3)
}

/// The fields of an event the chain covers, as either copy holds them: the stream's JSON or the database's row. Plain
/// strings, since an edited row need not hold valid ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Chained {
    pub event_id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    pub at_ms: i64,
    pub source: String,
    /// Empty in an event from before the chain existed.
    pub prev_hash: String,
    /// Empty in an event from before the chain existed.
    pub hash: String,
}

impl From<&AuditEvent> for Chained {
    fn from(event: &AuditEvent) -> Self {
        Self {
            event_id: event.event_id.clone(),
            actor: event.actor.to_string(),
            action: event.action.to_string(),
            target: event.target.clone(),
            details: event.details.clone(),
            at_ms: event.at.timestamp_millis(),
            source: event.source.clone(),
            prev_hash: event.prev_hash.clone(),
            hash: event.hash.clone(),
        }
    }
}

/// The bytes an event's hash is taken over, version 1. In order, separated by one NUL byte (0x00):
///
/// 1. [`DOMAIN`] (`kanade-audit-v1`)
/// 2. `event_id`
/// 3. `actor`
/// 4. `action`
/// 5. `target`
/// 6. `details` as [`canonical_json`]: serde_json's compact encoding with every object's keys sorted by their bytes
/// 7. `at` as Unix milliseconds in decimal ASCII (`-` first when negative)
/// 8. `source`
/// 9. `prev_hash`
///
/// Every text is UTF-8 with each NUL replaced by U+FFFD: the database stores text that way (PostgreSQL refuses NUL),
/// and with no NUL inside a field the separators are unambiguous. The canonical JSON has no raw NUL either (JSON
/// escapes control characters).
pub fn canonical_bytes(event: &Chained) -> Vec<u8> {
    let at = event.at_ms.to_string();
    let details = canonical_json(&event.details);
    let fields: [&str; 9] = [
        DOMAIN,
        &event.event_id,
        &event.actor,
        &event.action,
        &event.target,
        &details,
        &at,
        &event.source,
        &event.prev_hash,
    ];
    let mut bytes = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            bytes.push(0);
        }
        if field.contains('\0') {
            bytes.extend_from_slice(field.replace('\0', "\u{fffd}").as_bytes());
        } else {
            bytes.extend_from_slice(field.as_bytes());
        }
    }
    bytes
}

/// SHA-256 of [`canonical_bytes`], lowercase hex: what `hash` must hold.
pub fn hash_of(event: &Chained) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(canonical_bytes(event)))
}

/// `value` as serde_json writes it compactly, with every object's keys sorted by their UTF-8 bytes (serde_json's
/// own order without `preserve_order`; written out here so the hash does not depend on a cargo feature).
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `details` as it will read back from the stream and from the database: through its own JSON text once, so the
/// writer hashes exactly what a reader will decode. (serde_json's `float_roundtrip`, which this crate turns on, makes
/// a float read back as the same number; without it a float could come back one unit in the last place off.)
pub fn normalise_details(details: serde_json::Value) -> serde_json::Value {
    serde_json::from_str(&details.to_string()).unwrap_or(details)
}

/// Whether `text` is a hash as the chain writes them: 64 lowercase hex digits.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Links `event` after `prev_hash` and sets its `hash`. `at` should already be whole milliseconds
/// ([`truncate_to_millis`]), so the stored event shows the time the hash covers.
pub fn seal(event: &mut AuditEvent, prev_hash: &str) {
    event.prev_hash = prev_hash.to_owned();
    event.hash = String::new();
    event.hash = hash_of(&Chained::from(&*event));
}

/// The `prev_hash` of an event published after `last`, the stream's last message (`None`: the stream holds no
/// message at its last sequence, being empty or having lost it). Only a chained audit event can be linked to; after
/// anything else (an unchained event from before the chain, a message that is not an audit event) the chain starts
/// at [`GENESIS`], and a verifier reports whatever was wrong with that message.
pub fn next_link(last: Option<&AuditEvent>) -> String {
    match last {
        Some(event) if is_hash(&event.hash) => event.hash.clone(),
        _ => GENESIS.to_owned(),
    }
}

/// Decodes a message of `AUDIT` and checks it: valid JSON of an [`AuditEvent`], on the subject that names its own
/// actor and action, with an id of 1 to [`MAX_EVENT_ID_BYTES`] bytes and either both hashes ([`is_hash`]) or
/// neither. What the backend projects and what a verifier accepts as an event are the same.
pub fn decode_message(subject_name: &str, payload: &[u8]) -> Result<AuditEvent, String> {
    let event: AuditEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    if subject::audit(&event.actor, &event.action) != subject_name {
        return Err(format!(
            "audit event of `{}` doing `{}` arrived on `{}`",
            event.actor,
            event.action,
            subject_name.chars().take(200).collect::<String>()
        ));
    }
    if event.event_id.is_empty() || event.event_id.len() > MAX_EVENT_ID_BYTES {
        return Err(format!("an audit event id is 1 to {MAX_EVENT_ID_BYTES} bytes, not {}", event.event_id.len()));
    }
    match (event.prev_hash.is_empty(), event.hash.is_empty()) {
        (true, true) => {}
        (false, false) if is_hash(&event.prev_hash) && is_hash(&event.hash) => {}
        _ => {
            return Err(format!(
                "audit event `{}` has a prev_hash and a hash that are not both 64 lowercase hex digits",
                event.event_id.chars().take(64).collect::<String>()
            ));
        }
    }
    Ok(event)
}

/// One entry of a copy of the chain, at its stream sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Event(Chained),
    /// Not an audit event at all (a message [`decode_message`] refused, a row that cannot be read), and why.
    Malformed(String),
}

impl Entry {
    /// A message of the stream, decoded.
    pub fn from_message(subject_name: &str, payload: &[u8]) -> Self {
        match decode_message(subject_name, payload) {
            Ok(event) => Self::Event(Chained::from(&event)),
            Err(why) => Self::Malformed(why),
        }
    }
}

impl From<&crate::api::AuditChainRow> for Entry {
    /// A row of the backend's database. Details that are not JSON make the row malformed: the projector stores
    /// only JSON, so the row was edited.
    fn from(row: &crate::api::AuditChainRow) -> Self {
        let Ok(details) = serde_json::from_str(&row.details_json) else {
            return Self::Malformed(format!(
                "the details of row `{}` are not JSON",
                row.event_id.chars().take(64).collect::<String>()
            ));
        };
        Self::Event(Chained {
            event_id: row.event_id.clone(),
            actor: row.actor.clone(),
            action: row.action.clone(),
            target: row.target.clone(),
            details,
            at_ms: row.at_ms,
            source: row.source.clone(),
            prev_hash: row.prev_hash.clone().unwrap_or_default(),
            hash: row.hash.clone().unwrap_or_default(),
        })
    }
}

/// How a chain is broken at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The event's fields do not hash to its `hash`: it was changed after it was written.
    Altered,
    /// Its `prev_hash` is not the hash of the event before it, with no gap between them: inserted, reordered, or
    /// published without linking to the chain.
    BrokenLink,
    /// Its `prev_hash` is not the hash of the event before it, and sequences are missing between them: events were
    /// removed.
    Missing,
    /// Not an audit event at all.
    Malformed,
    /// An event without hashes after the chain began.
    Unchained,
    /// An event id seen earlier in the chain.
    Duplicate,
    /// The database's row at this sequence is not the stream's event.
    Differs,
    /// The stream's event at this sequence, already projected, has no row in the database.
    MissingFromDatabase,
    /// The database has a row at a sequence where the stream has no audit event.
    NotInStream,
    /// The database has a row past the stream's last sequence.
    PastStreamEnd,
    /// The database has an event the stream should still have and does not: deleted from the stream, or gone from
    /// before its first sequence although younger than its max age.
    LostFromStream,
}

impl BreakKind {
    /// A short phrase for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Altered => "altered: its fields do not hash to its hash",
            Self::BrokenLink => "broken link: its prev_hash is not the hash of the event before it",
            Self::Missing => "missing events: sequences before it are gone and its prev_hash does not link",
            Self::Malformed => "not an audit event",
            Self::Unchained => "unchained: an event without hashes after the chain began",
            Self::Duplicate => "duplicate: an event id seen before",
            Self::Differs => "differs from the stream's event at this sequence",
            Self::MissingFromDatabase => "missing from the database: the stream's event was projected but has no row",
            Self::NotInStream => "not in the stream: the stream has no audit event at this sequence",
            Self::PastStreamEnd => "past the stream's end: the stream has no such sequence",
            Self::LostFromStream => "lost from the stream: the database holds it and the stream should still have it",
        }
    }
}

/// The first place a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The stream sequence of the event (for the database, the one its row names).
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub kind: BreakKind,
    /// What the chain says should be there (a hash, or a phrase).
    pub expected: String,
    /// What is there.
    pub found: String,
}

/// Where a check of a chain began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anchor {
    /// The first chained event checked links to [`GENESIS`]: checked from the chain's very start.
    Genesis,
    /// The first chained event checked links to an event that was not checked (aged out of the stream, before
    /// `--since`): its `prev_hash` is taken on trust.
    Trusted { prev_hash: String },
}

/// What a [`Verifier`] found in one copy of the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Entries checked.
    pub checked: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Events from before the chain began (written without hashes), ahead of its first chained event: not breaks.
    pub unchained: u64,
    pub anchor: Option<Anchor>,
    /// Times the chain started over at [`GENESIS`] after the stream had been empty for its whole max age.
    pub restarts: u64,
    pub first_break: Option<Break>,
    /// Breaks in all: after each, the check goes on from the event it broke at.
    pub breaks: u64,
    /// The hash of the last chained event checked.
    pub head: Option<String>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }
}

#[derive(Debug, Clone)]
struct Prev {
    seq: u64,
    hash: String,
    at_ms: i64,
}

/// Folds over one copy of the chain in stream order ([`Verifier::push`] each entry with its sequence) and reports
/// its first break. Each event's own hash is checked first, then its link to the event before it.
#[derive(Debug)]
pub struct Verifier {
    report: ChainReport,
    /// The last chained event, to link the next to; `None` at the start and after an entry with nothing to link
    /// to (the next event is then taken as a new anchor).
    prev: Option<Prev>,
    began: bool,
    restart_after_ms: i64,
    ids: HashMap<String, u64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Self::with_restart_after(stream_max_age())
    }

    /// A verifier that accepts a restart at [`GENESIS`] after a silence of `restart_after` (the stream's max age).
    pub fn with_restart_after(restart_after: std::time::Duration) -> Self {
        Self {
            report: ChainReport::default(),
            prev: None,
            began: false,
            restart_after_ms: i64::try_from(restart_after.as_millis()).unwrap_or(i64::MAX),
            ids: HashMap::new(),
        }
    }

    pub fn push(&mut self, seq: u64, entry: &Entry) {
        let report = &mut self.report;
        report.checked += 1;
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        let event = match entry {
            Entry::Malformed(why) => {
                self.fail(Break {
                    seq,
                    event_id: None,
                    kind: BreakKind::Malformed,
                    expected: "an audit event".into(),
                    found: why.clone(),
                });
                // The publisher starts over at genesis after such a message; take whatever follows as an anchor.
                self.prev = None;
                return;
            }
            Entry::Event(event) => event,
        };
        let event_id = Some(event.event_id.clone());
        if let Some(first) = self.ids.insert(event.event_id.clone(), seq) {
            self.fail(Break {
                seq,
                event_id,
                kind: BreakKind::Duplicate,
                expected: "an event id not seen before".into(),
                found: format!("the id of seq {first}"),
            });
            self.link_to(seq, event);
            return;
        }
        if event.hash.is_empty() {
            if self.began {
                self.fail(Break {
                    seq,
                    event_id,
                    kind: BreakKind::Unchained,
                    expected: "a prev_hash and a hash".into(),
                    found: "none".into(),
                });
            } else {
                self.report.unchained += 1;
            }
            self.prev = None;
            return;
        }
        self.began = true;
        let computed = hash_of(event);
        if computed != event.hash {
            self.fail(Break { seq, event_id, kind: BreakKind::Altered, expected: computed, found: event.hash.clone() });
            self.link_to(seq, event);
            return;
        }
        match self.prev.clone() {
            None => {
                // Whether events before this one aged out or were removed, the chain alone cannot tell (the one
                // before may be old while this one is young); the database's copy can (`CrossCheck`).
                if self.report.anchor.is_none() {
                    self.report.anchor = Some(if event.prev_hash == GENESIS {
                        Anchor::Genesis
                    } else {
                        Anchor::Trusted { prev_hash: event.prev_hash.clone() }
                    });
                }
            }
            Some(prev) if prev.hash == event.prev_hash => {}
            Some(prev) => {
                let silence = event.at_ms.saturating_sub(prev.at_ms);
                // A writer starts over when the event before its own aged out of the stream: after a long enough
                // silence, and at the very next sequence (the stream's sequences carry on), so a restart cannot
                // hide removed events.
                if event.prev_hash == GENESIS && silence >= self.restart_after_ms && seq == prev.seq.saturating_add(1) {
                    self.report.restarts += 1;
                } else {
                    let kind =
                        if seq > prev.seq.saturating_add(1) { BreakKind::Missing } else { BreakKind::BrokenLink };
                    self.fail(Break { seq, event_id, kind, expected: prev.hash, found: event.prev_hash.clone() });
                }
            }
        }
        self.link_to(seq, event);
    }

    /// A sequence this copy lacks by right: the stream holds no audit event there (a message that is not one), so
    /// the database has no row for it. The writer after such a message starts over at [`GENESIS`], so the next event
    /// is taken as a new anchor, as the stream's own check takes it after the message.
    pub fn skip(&mut self) {
        self.prev = None;
    }

    /// The next event links to this one's `hash` as written, whether or not this one was sound: one tampered event
    /// is one break.
    fn link_to(&mut self, seq: u64, event: &Chained) {
        if event.hash.is_empty() {
            self.prev = None;
        } else {
            self.prev = Some(Prev { seq, hash: event.hash.clone(), at_ms: event.at_ms });
            self.report.head = Some(event.hash.clone());
        }
    }

    fn fail(&mut self, found: Break) {
        self.report.breaks += 1;
        if self.report.first_break.is_none() {
            self.report.first_break = Some(found);
        }
    }

    pub fn finish(self) -> ChainReport {
        self.report
    }
}

/// Verifies a whole copy at once: [`Verifier`] over `entries` in the order given.
pub fn verify<'a>(entries: impl IntoIterator<Item = (u64, &'a Entry)>) -> ChainReport {
    let mut verifier = Verifier::new();
    for (seq, entry) in entries {
        verifier.push(seq, entry);
    }
    verifier.finish()
}

/// What the cross-check keeps of one event of the stream: enough to tell whether a row is the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub event_id: String,
    /// [`hash_of`] the event's fields as they are (whatever its `hash` says).
    pub content: String,
    /// Its `hash` as written.
    pub hash: String,
}

impl Fingerprint {
    pub fn of(event: &Chained) -> Self {
        Self { event_id: event.event_id.clone(), content: hash_of(event), hash: event.hash.clone() }
    }
}

/// The stream's side of a cross-check: the sequences one read of `AUDIT` covered and the audit events in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCopy {
    /// The stream's first sequence when it was read (everything before is gone from it).
    pub first_seq: u64,
    /// The first sequence the read covered: `first_seq`, or the first at `--since`.
    pub from_seq: u64,
    /// The last sequence the read covered: the stream's last when the read began. Every sequence from `from_seq`
    /// to it was read, so one that holds neither an event nor a malformed message was deleted from the stream.
    pub last_seq: u64,
    /// The audit events read.
    pub events: BTreeMap<u64, Fingerprint>,
    /// The sequences read that hold no audit event ([`Entry::Malformed`]): the database cannot have them.
    pub malformed: BTreeSet<u64>,
}

impl StreamCopy {
    /// Keeps what a cross-check needs of one entry of the stream.
    pub fn add(&mut self, seq: u64, entry: &Entry) {
        match entry {
            Entry::Event(event) => {
                self.events.insert(seq, Fingerprint::of(event));
            }
            Entry::Malformed(_) => {
                self.malformed.insert(seq);
            }
        }
    }
}

/// What the cross-check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CrossReport {
    /// Rows compared with the stream's event at their sequence.
    pub compared: u64,
    /// Rows not compared: older than what the read of the stream covered, or newer (written while checking).
    pub not_compared: u64,
    /// Events of the stream the backend's projector has not stored yet (past its acknowledged floor).
    pub unprojected: u64,
    /// The first break of the database's side.
    pub first_break: Option<Break>,
    pub breaks: u64,
    /// The first event the database holds that the stream should still keep and does not: a break of the
    /// stream's side.
    pub stream_break: Option<Break>,
    pub stream_breaks: u64,
}

/// Compares the database's rows (pushed in stream order) with one read of the stream. The database is wrong where
/// a row differs from the stream's event at its sequence, where it has a row where the stream has a message that is
/// no audit event (or past the stream's end), and where an event the projector has acknowledged (at or below
/// `projected_to`) has no row. The stream is wrong where the database has a row at a sequence whose message is gone
/// from the stream: deleted from the range the read covered, or before it although younger than the max age.
#[derive(Debug)]
pub struct CrossCheck {
    stream: StreamCopy,
    projected_to: u64,
    keep_from_ms: i64,
    matched: BTreeSet<u64>,
    /// Rows past the end of the read of the stream: written while checking, or past the stream's end (told apart
    /// in [`CrossCheck::finish`]).
    later: Vec<(u64, Option<String>)>,
    report: CrossReport,
}

impl CrossCheck {
    /// `projected_to`: the projector's acknowledged floor (every event up to it is stored). `keep_from_ms`: the
    /// oldest `at` the stream must still hold (now minus its max age, less a margin for clocks).
    pub fn new(stream: StreamCopy, projected_to: u64, keep_from_ms: i64) -> Self {
        Self {
            stream,
            projected_to,
            keep_from_ms,
            matched: BTreeSet::new(),
            later: Vec::new(),
            report: CrossReport::default(),
        }
    }

    pub fn push(&mut self, seq: u64, row: &Entry) {
        let event_id = match row {
            Entry::Event(event) => Some(event.event_id.clone()),
            Entry::Malformed(_) => None,
        };
        if seq < self.stream.from_seq {
            if let Entry::Event(event) = row
                && seq < self.stream.first_seq
                && event.at_ms >= self.keep_from_ms
            {
                let expected = format!("the stream to hold it (its first sequence is {})", self.stream.first_seq);
                self.lost(Break { seq, event_id, kind: BreakKind::LostFromStream, expected, found: "gone".into() });
            } else {
                self.report.not_compared += 1;
            }
            return;
        }
        if seq > self.stream.last_seq {
            self.later.push((seq, event_id));
            return;
        }
        self.report.compared += 1;
        let Some(expected) = self.stream.events.get(&seq) else {
            if self.stream.malformed.contains(&seq) {
                self.fail(Break {
                    seq,
                    event_id,
                    kind: BreakKind::NotInStream,
                    expected: "no row: the stream's message there is not an audit event".into(),
                    found: "a row".into(),
                });
            } else {
                let expected = "the stream to hold it".to_owned();
                self.lost(Break { seq, event_id, kind: BreakKind::LostFromStream, expected, found: "deleted".into() });
            }
            return;
        };
        self.matched.insert(seq);
        let found = match row {
            Entry::Event(event) => Fingerprint::of(event),
            Entry::Malformed(why) => {
                let found = format!("a row that is not an audit event: {why}");
                let expected = expected.content.clone();
                self.fail(Break { seq, event_id, kind: BreakKind::Differs, expected, found });
                return;
            }
        };
        if &found != expected {
            let (expected, found) = if found.event_id != expected.event_id {
                (format!("event `{}`", expected.event_id), format!("event `{}`", found.event_id))
            } else if found.content != expected.content {
                (expected.content.clone(), found.content)
            } else {
                (expected.hash.clone(), found.hash)
            };
            self.fail(Break { seq, event_id, kind: BreakKind::Differs, expected, found });
        }
    }

    fn fail(&mut self, found: Break) {
        self.report.breaks += 1;
        match &self.report.first_break {
            Some(first) if first.seq <= found.seq => {}
            _ => self.report.first_break = Some(found),
        }
    }

    fn lost(&mut self, found: Break) {
        self.report.stream_breaks += 1;
        if self.report.stream_break.is_none() {
            self.report.stream_break = Some(found);
        }
    }

    /// `end_seq`: the stream's last sequence read after the database was (a row past it cannot have come from the
    /// stream).
    pub fn finish(mut self, end_seq: u64) -> CrossReport {
        for (seq, event_id) in std::mem::take(&mut self.later) {
            if seq > end_seq {
                self.fail(Break {
                    seq,
                    event_id,
                    kind: BreakKind::PastStreamEnd,
                    expected: format!("a sequence up to {end_seq}"),
                    found: seq.to_string(),
                });
            } else {
                self.report.not_compared += 1;
            }
        }
        let unmatched: Vec<(u64, String)> = self
            .stream
            .events
            .iter()
            .filter(|(seq, _)| !self.matched.contains(seq))
            .map(|(seq, fp)| (*seq, fp.event_id.clone()))
            .collect();
        for (seq, event_id) in unmatched {
            if seq <= self.projected_to {
                self.fail(Break {
                    seq,
                    event_id: Some(event_id),
                    kind: BreakKind::MissingFromDatabase,
                    expected: "a row".into(),
                    found: "no row".into(),
                });
            } else {
                self.report.unprojected += 1;
            }
        }
        self.report
    }
}

/// The database's side of a verification: its own chain ([`Verifier`]) and its comparison with the stream
/// ([`CrossCheck`]), fed its rows in stream order.
#[derive(Debug)]
pub struct DatabaseCheck {
    chain: Verifier,
    cross: CrossCheck,
    last_seq: Option<u64>,
}

impl DatabaseCheck {
    /// See [`CrossCheck::new`].
    pub fn new(stream: StreamCopy, projected_to: u64, keep_from_ms: i64) -> Self {
        Self { chain: Verifier::new(), cross: CrossCheck::new(stream, projected_to, keep_from_ms), last_seq: None }
    }

    pub fn push(&mut self, seq: u64, row: &Entry) {
        let from = self.last_seq.map_or(seq, |last| last.saturating_add(1));
        if from < seq && self.cross.stream.malformed.range(from..seq).next().is_some() {
            self.chain.skip();
        }
        self.chain.push(seq, row);
        self.cross.push(seq, row);
        self.last_seq = Some(seq);
    }

    /// The database's own chain and the cross-check; `end_seq` as for [`CrossCheck::finish`].
    pub fn finish(self, end_seq: u64) -> (ChainReport, CrossReport) {
        (self.chain.finish(), self.cross.finish(end_seq))
    }
}

/// The earlier of two breaks by sequence (`a` on a tie): the first break of a side that two checks looked at.
pub fn earliest(a: Option<Break>, b: Option<Break>) -> Option<Break> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.seq < a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Action, Actor};
    use proptest::prelude::*;

    fn event(n: u64, prev: &str) -> AuditEvent {
        let mut event = AuditEvent {
            event_id: format!("e-{n}"),
            actor: Actor::new("alice").unwrap(),
            action: Action::new("revoke").unwrap(),
            target: format!("job-{n}"),
            details: serde_json::json!({"n": n, "why": "test"}),
            at: DateTime::from_timestamp_millis(1_800_000_000_000 + n as i64 * 1000).unwrap(),
            source: "cli".into(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        seal(&mut event, prev);
        event
    }

    /// A chain of `n` events at sequences 1..=n.
    fn chain(n: u64) -> Vec<(u64, Entry)> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|i| {
                let event = event(i, &prev);
                prev = event.hash.clone();
                (i, Entry::Event(Chained::from(&event)))
            })
            .collect()
    }

    fn check(entries: &[(u64, Entry)]) -> ChainReport {
        verify(entries.iter().map(|(seq, entry)| (*seq, entry)))
    }

    fn chained(entry: &mut Entry) -> &mut Chained {
        match entry {
            Entry::Event(event) => event,
            Entry::Malformed(_) => panic!("an event"),
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        // Changing the encoding breaks every stored chain: this pins version 1 byte for byte.
        let event = Chained {
            event_id: "e1".into(),
            actor: "alice".into(),
            action: "revoke".into(),
            target: "patch".into(),
            details: serde_json::json!({"b": [1, 2.5, null], "a": "x\u{0}y"}),
            at_ms: -5,
            source: "cli".into(),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let expected = format!(
            "kanade-audit-v1\0e1\0alice\0revoke\0patch\0{}\0-5\0cli\0{GENESIS}",
            r#"{"a":"x\u0000y","b":[1,2.5,null]}"#
        );
        assert_eq!(String::from_utf8(canonical_bytes(&event)).unwrap(), expected);
        assert_eq!(hash_of(&event), data_encoding::HEXLOWER.encode(&Sha256::digest(expected.as_bytes())));
        assert_eq!(hash_of(&event), "3e0f7cf3c229f28d2088e6404a8db9e624ea445af51063a6c5a1a3d2440f2a27");
    }

    #[test]
    fn a_nul_in_a_field_hashes_as_the_database_stores_it_and_cannot_shift_fields() {
        let base = Chained::from(&event(1, GENESIS));
        let with_nul = Chained { target: "a\0b".into(), ..base.clone() };
        let as_stored = Chained { target: "a\u{fffd}b".into(), ..base.clone() };
        assert_eq!(hash_of(&with_nul), hash_of(&as_stored));
        // Moving text between neighbouring fields changes the hash.
        let a = Chained { target: "ab".into(), source: "c".into(), ..base.clone() };
        let b = Chained { target: "a".into(), source: "bc".into(), ..base };
        assert_ne!(hash_of(&a), hash_of(&b));
    }

    #[test]
    fn details_hash_the_same_in_any_key_order_and_after_a_trip_through_text() {
        let one: serde_json::Value = serde_json::from_str(r#"{"z":1,"a":{"y":[3,{"k":true}],"b":null}}"#).unwrap();
        let two: serde_json::Value = serde_json::from_str(r#"{"a":{"b":null,"y":[3,{"k":true}]},"z":1}"#).unwrap();
        assert_eq!(canonical_json(&one), canonical_json(&two));
        assert_eq!(canonical_json(&one), r#"{"a":{"b":null,"y":[3,{"k":true}]},"z":1}"#);
        // serde_json's own compact encoding, when its maps are sorted (no preserve_order).
        assert_eq!(canonical_json(&one), one.to_string());
        // A float survives its JSON text exactly (serde_json parses what it writes back to the same value).
        for x in [0.1 + 0.2, 1e300 / 3.0, -0.0, 5e-324, 123_456.789_012_345_67, f64::MAX] {
            let value = normalise_details(serde_json::json!({ "x": x }));
            let back: serde_json::Value = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(canonical_json(&back), canonical_json(&value), "{x}");
        }
    }

    #[test]
    fn an_intact_chain_from_genesis() {
        let report = check(&chain(5));
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.checked, report.first_seq, report.last_seq), (5, Some(1), Some(5)));
        assert_eq!(report.anchor, Some(Anchor::Genesis));
        let entries = chain(5);
        let Entry::Event(last) = &entries[4].1 else { unreachable!() };
        assert_eq!(report.head.as_deref(), Some(last.hash.as_str()));
    }

    #[test]
    fn a_check_that_starts_mid_chain_takes_its_first_link_on_trust() {
        let entries = chain(5);
        let report = check(&entries[2..]);
        assert!(report.intact());
        let Entry::Event(second) = &entries[1].1 else { unreachable!() };
        assert_eq!(report.anchor, Some(Anchor::Trusted { prev_hash: second.hash.clone() }));
    }

    #[test]
    fn an_altered_field_is_reported_at_its_event() {
        for alter in [
            (|e: &mut Chained| e.target = "other".into()) as fn(&mut Chained),
            |e| e.actor = "mallory".into(),
            |e| e.action = "unrevoke".into(),
            |e| e.details = serde_json::json!({"n": 3, "why": "changed"}),
            |e| e.at_ms += 1,
            |e| e.source = "backend".into(),
            |e| e.event_id = "e-other".into(),
        ] {
            let mut entries = chain(5);
            alter(chained(&mut entries[2].1));
            let report = check(&entries);
            let found = report.first_break.clone().expect("a break");
            assert_eq!((found.seq, found.kind), (3, BreakKind::Altered), "{found:?}");
            assert_eq!(report.breaks, 1, "one edit, one break: the next event still links to the hash as written");
        }
    }

    #[test]
    fn an_event_rehashed_after_an_edit_breaks_the_next_link() {
        let mut entries = chain(5);
        let edited = chained(&mut entries[2].1);
        edited.target = "other".into();
        edited.hash = hash_of(edited);
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (4, BreakKind::BrokenLink));
    }

    #[test]
    fn a_deleted_event_is_missing() {
        let mut entries = chain(5);
        entries.remove(2);
        let report = check(&entries);
        let found = report.first_break.unwrap();
        assert_eq!((found.seq, found.kind), (4, BreakKind::Missing));
        let Entry::Event(second) = &entries[1].1 else { unreachable!() };
        assert_eq!(found.expected, second.hash);
    }

    #[test]
    fn reordered_events_break_the_chain() {
        let mut entries = chain(5);
        // Swap what sequences 2 and 3 hold (as an edit of the database's stream_seq would).
        let (a, b) = (entries[1].1.clone(), entries[2].1.clone());
        entries[1].1 = b;
        entries[2].1 = a;
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (2, BreakKind::BrokenLink));
    }

    #[test]
    fn an_inserted_forged_event_breaks_the_link() {
        let mut entries = chain(5);
        // Forged with a valid hash of its own but a made-up prev_hash, inserted at 3 (the rest shifted).
        let forged = event(99, &"ab".repeat(32));
        for (seq, _) in entries.iter_mut().skip(2) {
            *seq += 1;
        }
        entries.insert(2, (3, Entry::Event(Chained::from(&forged))));
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind, found.found.as_str()), (3, BreakKind::BrokenLink, "ab".repeat(32).as_str()));
        // Linked properly to its predecessor, it still breaks its successor's link.
        let mut entries = chain(5);
        let Entry::Event(second) = &entries[1].1 else { unreachable!() };
        let linked = event(99, &second.hash.clone());
        for (seq, _) in entries.iter_mut().skip(2) {
            *seq += 1;
        }
        entries.insert(2, (3, Entry::Event(Chained::from(&linked))));
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (4, BreakKind::BrokenLink));
    }

    #[test]
    fn events_from_before_the_chain_are_unchained_not_broken() {
        let mut old = event(0, GENESIS);
        old.prev_hash.clear();
        old.hash.clear();
        let mut entries: Vec<(u64, Entry)> = (1..=3)
            .map(|seq| {
                let mut e = old.clone();
                e.event_id = format!("old-{seq}");
                (seq, Entry::Event(Chained::from(&e)))
            })
            .collect();
        for (seq, entry) in chain(2) {
            entries.push((seq + 3, entry));
        }
        let report = check(&entries);
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.unchained, report.anchor.clone()), (3, Some(Anchor::Genesis)));
        // An unchained event after the chain began is a break.
        let mut late = old.clone();
        late.event_id = "late".into();
        entries.push((6, Entry::Event(Chained::from(&late))));
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (6, BreakKind::Unchained));
    }

    #[test]
    fn a_malformed_message_is_a_break_and_the_chain_goes_on_after_it() {
        let mut entries = chain(2);
        entries.push((3, Entry::Malformed("not json".into())));
        // The next publisher starts over at genesis after it.
        let mut after = event(4, GENESIS);
        after.event_id = "e-after".into();
        seal(&mut after, GENESIS);
        entries.push((4, Entry::Event(Chained::from(&after))));
        let report = check(&entries);
        let found = report.first_break.unwrap();
        assert_eq!((found.seq, found.kind), (3, BreakKind::Malformed));
        assert_eq!(report.breaks, 1);
    }

    #[test]
    fn a_duplicate_event_id_is_a_break() {
        let mut entries = chain(3);
        let Entry::Event(third) = &entries[2].1 else { unreachable!() };
        let mut again = event(1, &third.hash.clone());
        seal(&mut again, &third.hash.clone());
        entries.push((4, Entry::Event(Chained::from(&again))));
        let found = check(&entries).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (4, BreakKind::Duplicate));
    }

    #[test]
    fn a_restart_after_a_silent_max_age_is_not_a_break() {
        let mut entries = chain(2);
        let mut later = event(3, GENESIS);
        later.at += chrono::Duration::days(400);
        seal(&mut later, GENESIS);
        entries.push((3, Entry::Event(Chained::from(&later))));
        let report = check(&entries);
        assert!(report.intact(), "{report:?}");
        assert_eq!(report.restarts, 1);
        // The same link a day later is a break.
        let mut soon = event(3, GENESIS);
        soon.at += chrono::Duration::days(1);
        seal(&mut soon, GENESIS);
        entries[2] = (3, Entry::Event(Chained::from(&soon)));
        assert_eq!(check(&entries).first_break.unwrap().kind, BreakKind::BrokenLink);
        // A long silence cannot cover removed events: the restart must come at the very next sequence.
        let mut after_removed = event(5, GENESIS);
        after_removed.at += chrono::Duration::days(400);
        seal(&mut after_removed, GENESIS);
        entries[2] = (5, Entry::Event(Chained::from(&after_removed)));
        assert_eq!(check(&entries).first_break.unwrap().kind, BreakKind::Missing);
    }

    #[test]
    fn the_next_link_follows_only_a_chained_event() {
        let chained = event(1, GENESIS);
        assert_eq!(next_link(Some(&chained)), chained.hash);
        assert_eq!(next_link(None), GENESIS);
        let mut old = chained.clone();
        old.hash.clear();
        old.prev_hash.clear();
        assert_eq!(next_link(Some(&old)), GENESIS);
    }

    #[test]
    fn messages_are_checked_before_they_count_as_events() {
        let good = event(1, GENESIS);
        let body = serde_json::to_vec(&good).unwrap();
        assert_eq!(decode_message("audit.alice.revoke", &body).unwrap(), good);
        assert!(decode_message("audit.bob.revoke", &body).unwrap_err().contains("arrived on"));
        assert!(decode_message("audit.alice.revoke", b"{not json").is_err());
        assert!(decode_message("audit.alice.revoke", b"\xff\xfe").is_err());
        assert!(decode_message("audit.alice.revoke", &vec![b'['; 100_000]).is_err());
        let mut long = good.clone();
        long.event_id = "x".repeat(MAX_EVENT_ID_BYTES + 1);
        assert!(decode_message("audit.alice.revoke", &serde_json::to_vec(&long).unwrap()).is_err());
        let mut half = good.clone();
        half.prev_hash.clear();
        assert!(decode_message("audit.alice.revoke", &serde_json::to_vec(&half).unwrap()).is_err());
        let mut upper = good.clone();
        upper.hash = upper.hash.to_uppercase();
        assert!(decode_message("audit.alice.revoke", &serde_json::to_vec(&upper).unwrap()).is_err());
        // An event from before the chain decodes, and so does one with fields this version does not know.
        let old = br#"{"event_id":"e","actor":"alice","action":"revoke","at":"2026-01-01T00:00:00Z","new":1}"#;
        let old = decode_message("audit.alice.revoke", old).unwrap();
        assert_eq!((old.prev_hash.as_str(), old.hash.as_str()), ("", ""));
        // An old event does not grow empty hash fields when written again.
        assert!(!serde_json::to_string(&old).unwrap().contains("hash"));
    }

    #[test]
    fn a_database_row_is_the_same_entry_as_the_streams_event() {
        let event = event(1, GENESIS);
        let row = crate::api::AuditChainRow {
            stream_seq: 1,
            event_id: event.event_id.clone(),
            actor: event.actor.to_string(),
            action: event.action.to_string(),
            target: event.target.clone(),
            details_json: event.details.to_string(),
            source: event.source.clone(),
            at_ms: event.at.timestamp_millis(),
            prev_hash: Some(event.prev_hash.clone()),
            hash: Some(event.hash.clone()),
        };
        assert_eq!(Entry::from(&row), Entry::Event(Chained::from(&event)));
        let edited = crate::api::AuditChainRow { details_json: "{oops".into(), ..row.clone() };
        assert!(matches!(Entry::from(&edited), Entry::Malformed(why) if why.contains("not JSON")));
        // A row from before the chain: no hashes, unchained.
        let old = crate::api::AuditChainRow { prev_hash: None, hash: None, ..row };
        assert!(matches!(Entry::from(&old), Entry::Event(e) if e.hash.is_empty() && e.prev_hash.is_empty()));
    }

    fn stream_copy(entries: &[(u64, Entry)]) -> StreamCopy {
        let mut copy = StreamCopy {
            first_seq: entries.first().map_or(1, |(seq, _)| *seq),
            from_seq: entries.first().map_or(1, |(seq, _)| *seq),
            last_seq: entries.last().map_or(0, |(seq, _)| *seq),
            ..Default::default()
        };
        for (seq, entry) in entries {
            copy.add(*seq, entry);
        }
        copy
    }

    #[test]
    fn junk_in_the_stream_is_no_break_of_the_database_which_could_not_store_it() {
        let mut stream = chain(2);
        stream.push((3, Entry::Malformed("junk".into())));
        stream.push((4, Entry::Malformed("more junk".into())));
        let after = event(5, GENESIS);
        stream.push((5, Entry::Event(Chained::from(&after))));
        let db: Vec<(u64, Entry)> = stream.iter().filter(|(_, e)| matches!(e, Entry::Event(_))).cloned().collect();
        let mut database = DatabaseCheck::new(stream_copy(&stream), 5, 0);
        for (seq, row) in &db {
            database.push(*seq, row);
        }
        let (chain, cross) = database.finish(5);
        assert!(chain.intact(), "{chain:?}");
        assert_eq!((cross.compared, cross.breaks), (3, 0));
        // Without the stream's word for it, the gap is missing events.
        assert_eq!(check(&db).first_break.map(|b| b.kind), Some(BreakKind::Missing));
    }

    fn cross(stream: &[(u64, Entry)], db: &[(u64, Entry)], projected_to: u64) -> CrossReport {
        let end = stream.last().map_or(0, |(seq, _)| *seq);
        let mut check = CrossCheck::new(stream_copy(stream), projected_to, 0);
        for (seq, row) in db {
            check.push(*seq, row);
        }
        check.finish(end)
    }

    #[test]
    fn a_faithful_database_matches_the_stream() {
        let entries = chain(5);
        let report = cross(&entries, &entries, 5);
        assert_eq!((report.compared, report.breaks, report.first_break), (5, 0, None));
        // Not yet projected: neither missing nor a break.
        let report = cross(&entries, &entries[..3], 3);
        assert_eq!((report.unprojected, report.breaks), (2, 0));
    }

    #[test]
    fn the_database_is_wrong_where_it_differs_lacks_or_invents_a_row() {
        let stream = chain(5);
        // A row edited and re-hashed so its own chain looks fine at that row.
        let mut db = stream.clone();
        let row = chained(&mut db[1].1);
        row.target = "other".into();
        row.hash = hash_of(row);
        let found = cross(&stream, &db, 5).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (2, BreakKind::Differs));
        // A projected row deleted.
        let mut db = stream.clone();
        db.remove(3);
        let found = cross(&stream, &db, 5).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (4, BreakKind::MissingFromDatabase));
        // A row at a sequence deleted from the stream: the stream lost it.
        let mut gappy = stream.clone();
        gappy.remove(2);
        let report = cross(&gappy, &stream, 5);
        assert_eq!(
            (report.first_break, report.stream_break.map(|b| (b.seq, b.kind))),
            (None, Some((3, BreakKind::LostFromStream)))
        );
        // A row at a sequence where the stream has a malformed message, and one past the stream's end.
        let mut with_junk = stream.clone();
        with_junk.push((6, Entry::Malformed("junk".into())));
        let mut db = stream.clone();
        db.push((6, stream[0].1.clone()));
        let found = cross(&with_junk, &db, 6).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (6, BreakKind::NotInStream));
        let mut db = stream.clone();
        db.push((9, stream[0].1.clone()));
        let found = cross(&stream, &db, 5).first_break.unwrap();
        assert_eq!((found.seq, found.kind), (9, BreakKind::PastStreamEnd));
        // A row written after the stream was read but before the database was: not compared, not a break.
        let mut check = CrossCheck::new(stream_copy(&stream), 5, 0);
        for (seq, row) in &db {
            check.push(*seq, row);
        }
        let report = check.finish(9);
        assert_eq!((report.breaks, report.not_compared, report.compared), (0, 1, 5));
    }

    #[test]
    fn a_young_row_the_stream_no_longer_has_is_the_streams_loss() {
        let all = chain(5);
        // The stream was purged of its first three events: the read starts at 4.
        let mut check = CrossCheck::new(stream_copy(&all[3..]), 5, 0);
        for (seq, row) in &all {
            check.push(*seq, row);
        }
        let report = check.finish(5);
        assert_eq!(report.stream_break.map(|b| (b.seq, b.kind)), Some((1, BreakKind::LostFromStream)));
        assert_eq!(report.first_break, None);
        // Old enough to have aged out: nothing wrong.
        let mut check = CrossCheck::new(stream_copy(&all[3..]), 5, i64::MAX);
        for (seq, row) in &all {
            check.push(*seq, row);
        }
        let report = check.finish(5);
        assert_eq!((report.stream_break, report.not_compared, report.compared), (None, 3, 2));
    }

    #[test]
    fn earliest_picks_the_lower_sequence() {
        let at = |seq| {
            Some(Break { seq, event_id: None, kind: BreakKind::Altered, expected: String::new(), found: String::new() })
        };
        assert_eq!(earliest(at(3), at(2)).unwrap().seq, 2);
        assert_eq!(earliest(at(3), None).unwrap().seq, 3);
        assert_eq!(earliest(None, at(4)).unwrap().seq, 4);
        assert_eq!(earliest(None, None), None);
    }

    proptest! {
        /// Any single edit, deletion, swap or insertion in a chain of any length is found, at or right after the
        /// place it was made.
        #[test]
        fn every_single_tampering_is_found(len in 2u64..40, at in 0usize..40, how in 0u8..4, text in "[a-z]{1,8}") {
            let mut entries = chain(len);
            let at = at % entries.len();
            match how {
                0 => chained(&mut entries[at].1).target.push_str(&text),
                1 => { entries.remove(at); }
                2 => {
                    let other = (at + 1) % entries.len();
                    let (a, b) = (entries[at].1.clone(), entries[other].1.clone());
                    entries[at].1 = b;
                    entries[other].1 = a;
                }
                _ => {
                    let forged = Chained { target: text.clone(), ..chained(&mut entries[at].1.clone()).clone() };
                    let mut forged = forged;
                    forged.event_id = format!("forged-{text}");
                    forged.hash = hash_of(&forged);
                    let seq = entries[at].0;
                    for (s, _) in entries.iter_mut().skip(at) {
                        *s += 1;
                    }
                    entries.insert(at, (seq, Entry::Event(forged)));
                }
            }
            let report = check(&entries);
            // Removing the first or the last event is the change a chain cannot show by itself: the first looks as if
            // it aged out, the last as if it was never written (the database's copy shows both: `CrossCheck`).
            let end_removed = how == 1 && (at == 0 || at == entries.len());
            prop_assert!(end_removed || !report.intact(), "{how} at {at} of {len}: {report:?}");
        }

        /// Details of any shape hash the same after a trip through their JSON text, and once normalised, again.
        #[test]
        fn details_survive_their_json_text(x in any::<f64>().prop_filter("finite", |x| x.is_finite()), n in any::<i64>(), s in ".{0,20}") {
            let details = normalise_details(serde_json::json!({"x": x, "n": n, "s": s, "list": [x, n]}));
            let back: serde_json::Value = serde_json::from_str(&details.to_string()).unwrap();
            prop_assert_eq!(canonical_json(&back), canonical_json(&details));
        }
    }
}
