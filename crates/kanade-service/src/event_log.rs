//! A service's warnings, errors, start and stop in the Windows Application Event Log, where operators look for a
//! service's trouble: a `tracing` layer beside the log file. What goes there, and as what text, is decided here on
//! every OS; only the writing (`event_source`: `RegisterEventSourceW`, `ReportEventW`) is Windows code.
//!
//! # The event source the layer expects
//!
//! The layer writes as the event source named after the service (`kanade-agent`, `kanade-backend`) in the
//! Application log, every record with event id [`EVENT_ID`] (1) and the text as its one insertion string. The
//! install scripts register that source, as an administrator, under
//! `HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\<name>` with:
//!
//! - `EventMessageFile` (REG_EXPAND_SZ) = `%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll`:
//!   the .NET Framework 4 message file every Windows since 8 / Server 2012 has, whose message for every event id
//!   (0 to 65535) is just `%1`, so Event Viewer shows the text as it was written;
//! - `TypesSupported` (REG_DWORD) = 7 (error, warning and information).
//!
//! and remove the key on uninstall. Without the key the records are still written (to the Application log), but
//! Event Viewer opens each with "The description for Event ID 1 from source kanade-agent cannot be found" before
//! the text.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

#[cfg(windows)]
#[allow(unsafe_code)]
mod event_source;

/// The event id of every record: the message file's `%1` shows the text whatever the id, so one id says "a line of
/// kanade's log" and the record's type says how bad it is.
pub const EVENT_ID: u32 = 1;

/// The longest insertion string `ReportEventW` takes, in UTF-16 units ("each string is limited to 31,839
/// characters").
pub const MAX_MESSAGE_UTF16: usize = 31_839;

/// What ends a text cut to [`MAX_MESSAGE_UTF16`] (the whole line is in the log file).
const CUT_MARK: &str = " …";

/// The target of this crate's own events: the service's start and stop lines.
const SERVICE_TARGET: &str = "kanade_service";

/// A record's type in the Event Log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Error,
    Warning,
    Information,
}

/// Which events go to the Event Log, and as what: every error and warning; of the rest only the service's own
/// lines (this crate's: started, stopped), so a busy service does not flood the log every other program on the
/// machine shares. The process's log level still applies first: what it filters out reaches no layer.
pub fn event_kind(level: &Level, target: &str) -> Option<EventKind> {
    let ours = target == SERVICE_TARGET || target.starts_with("kanade_service::");
    match *level {
        Level::ERROR => Some(EventKind::Error),
        Level::WARN => Some(EventKind::Warning),
        Level::INFO if ours => Some(EventKind::Information),
        _ => None,
    }
}

/// A record's text: `target: message field=value ...` as the log file has it, less the time and the level the
/// Event Log shows on its own, cut to what the Event Log takes ([`cut_to_utf16`]). Spans are left out.
pub fn event_message(event: &Event<'_>) -> String {
    let mut visitor = MessageVisitor::default();
    event.record(&mut visitor);
    if visitor.secret {
        return format!("{}: {WITHHELD}", event.metadata().target());
    }
    let body = format!("{}{}", visitor.message, visitor.fields);
    let mut text = format!("{}: {}", event.metadata().target(), body.trim());
    cut_to_utf16(&mut text, MAX_MESSAGE_UTF16);
    text
}

/// Cuts `text` to at most `max` UTF-16 units, at a character boundary (a surrogate pair is never split), ending it
/// with an ellipsis when anything was cut.
pub fn cut_to_utf16(text: &mut String, max: usize) {
    if text.encode_utf16().count() <= max {
        return;
    }
    let room = max.saturating_sub(CUT_MARK.encode_utf16().count());
    let mut units = 0;
    let mut end = 0;
    for (at, ch) in text.char_indices() {
        if units + ch.len_utf16() > room {
            break;
        }
        units += ch.len_utf16();
        end = at + ch.len_utf8();
    }
    text.truncate(end);
    if max >= CUT_MARK.encode_utf16().count() {
        text.push_str(CUT_MARK);
    }
}

/// The text of a record that carries a secret: any user of the machine may read the Application log, while the
/// service's log file is readable by SYSTEM and Administrators only.
pub const WITHHELD: &str =
    "a message holding a secret (such as the one-time setup token) is in the service's log file only";

/// Whether a field's name says its value is a secret (`setup_token`, `secret`, `*_token`, `*_secret`): an event with
/// one never goes to the Event Log as it is (the backend logs its one-time setup token that way).
pub fn is_secret_field(name: &str) -> bool {
    let name = name.strip_prefix("r#").unwrap_or(name);
    name == "secret" || name == "token" || name.ends_with("_token") || name.ends_with("_secret")
}

/// Gathers an event's message and its other fields (`key=value`, values as the log file writes them).
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
    /// A field named as a secret was there ([`is_secret_field`]).
    secret: bool,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if is_secret_field(field.name()) {
            self.secret = true;
            return;
        }
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            // The `log` crate's records carry their origin as fields; the target says it already.
            name if name.starts_with("log.") => {}
            name => {
                let _ = write!(self.fields, " {}={value:?}", name.strip_prefix("r#").unwrap_or(name));
            }
        }
    }
}

/// Where the layer's records go: the Event Log on Windows, a list in tests.
type Report = Box<dyn Fn(EventKind, &str) + Send + Sync>;

/// The layer: each event [`event_kind`] picks, as [`event_message`], handed to its [`Report`].
pub struct EventLogLayer {
    report: Report,
}

impl EventLogLayer {
    /// A layer that hands each record to `report` (the Event Log on Windows; a list in tests). `report` must not log
    /// through `tracing` itself.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn new(report: impl Fn(EventKind, &str) + Send + Sync + 'static) -> Self {
        Self { report: Box::new(report) }
    }
}

impl fmt::Debug for EventLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLogLayer").finish_non_exhaustive()
    }
}

impl<S: Subscriber> Layer<S> for EventLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if let Some(kind) = event_kind(metadata.level(), metadata.target()) {
            (self.report)(kind, &event_message(event));
        }
    }
}

/// The Event Log layer for the service `source` (as registered: `kanade-agent`, `kanade-backend`), for a process
/// that runs as a Windows service; `None` elsewhere (systemd's journal already has a service's stderr), and when
/// Windows refuses the event source (the process then logs as before).
pub fn event_log_layer(source: &str) -> Option<EventLogLayer> {
    #[cfg(windows)]
    {
        let source = event_source::EventSource::register(source)?;
        Some(EventLogLayer::new(move |kind, message| source.report(kind, message)))
    }
    #[cfg(not(windows))]
    {
        let _ = source;
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn errors_and_warnings_go_to_the_event_log_and_only_the_service_s_own_information() {
        assert_eq!(event_kind(&Level::ERROR, "kanade_agent::pipeline"), Some(EventKind::Error));
        assert_eq!(event_kind(&Level::WARN, "async_nats"), Some(EventKind::Warning));
        assert_eq!(event_kind(&Level::INFO, "kanade_service"), Some(EventKind::Information));
        assert_eq!(event_kind(&Level::INFO, "kanade_service::windows"), Some(EventKind::Information));
        assert_eq!(event_kind(&Level::INFO, "kanade_agent"), None);
        assert_eq!(event_kind(&Level::INFO, "kanade_service_other"), None);
        assert_eq!(event_kind(&Level::DEBUG, "kanade_service"), None);
        assert_eq!(event_kind(&Level::TRACE, "kanade_agent"), None);
    }

    /// The records `events` give through the layer, as (kind, text).
    fn records(events: impl FnOnce()) -> Vec<(EventKind, String)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let layer = EventLogLayer::new({
            let seen = Arc::clone(&seen);
            move |kind, message: &str| seen.lock().unwrap().push((kind, message.to_owned()))
        });
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), events);
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    }

    #[test]
    fn a_record_is_the_target_the_message_and_the_fields_as_the_log_file_has_them() {
        let err = std::io::Error::other("disk full");
        let seen = records(|| {
            tracing::error!(target: "kanade_agent::outbox", error = %err, pending = 3, "cannot write the outbox");
            tracing::warn!(target: "kanade_backend", name = "KANADE_NATS_TOKEN", "an installer's secret is left out");
            tracing::info!(target: "kanade_agent", "connected");
            tracing::info!(target: "kanade_service::windows", exit_code = 0, "service stopped");
            tracing::warn!(target: "kanade_agent", r#type = "x");
        });
        assert_eq!(
            seen,
            [
                (
                    EventKind::Error,
                    "kanade_agent::outbox: cannot write the outbox error=disk full pending=3".to_owned()
                ),
                (
                    EventKind::Warning,
                    r#"kanade_backend: an installer's secret is left out name="KANADE_NATS_TOKEN""#.to_owned()
                ),
                (EventKind::Information, "kanade_service::windows: service stopped exit_code=0".to_owned()),
                (EventKind::Warning, r#"kanade_agent: type="x""#.to_owned()),
            ]
        );
    }

    #[test]
    fn a_record_holding_a_secret_is_withheld() {
        let seen = records(|| {
            tracing::warn!(target: "kanade_backend", setup_token = "kanade_setup_abc", "create the first admin with ...");
            tracing::warn!(target: "kanade_backend", r#token = "t", "x");
            tracing::warn!(target: "kanade_backend", tokens = 3, "not a secret");
        });
        assert_eq!(
            seen,
            [
                (EventKind::Warning, format!("kanade_backend: {WITHHELD}")),
                (EventKind::Warning, format!("kanade_backend: {WITHHELD}")),
                (EventKind::Warning, "kanade_backend: not a secret tokens=3".to_owned()),
            ]
        );
        assert!(is_secret_field("jwt_secret") && is_secret_field("secret") && !is_secret_field("secrets_kept"));
    }

    #[test]
    fn a_long_record_is_cut_to_the_event_log_s_limit() {
        let long = "x".repeat(40_000);
        let seen = records(|| tracing::error!(target: "t", "{long}"));
        let text = &seen[0].1;
        assert_eq!(text.encode_utf16().count(), MAX_MESSAGE_UTF16);
        assert!(text.starts_with("t: xxx") && text.ends_with("x …"), "{}", &text[text.len() - 10..]);
    }

    #[test]
    fn a_cut_falls_between_characters_and_counts_utf16_units() {
        let mut short = String::from("héllo");
        cut_to_utf16(&mut short, 5);
        assert_eq!(short, "héllo", "what fits is kept whole");

        // "é" is one unit and two bytes; "😀" two units (a surrogate pair) and four bytes.
        let mut text = String::from("aé😀😀b");
        cut_to_utf16(&mut text, 6);
        assert_eq!(text, "aé😀 …", "{text:?}");
        assert!(text.encode_utf16().count() <= 6);

        let mut pair = String::from("a😀😀");
        cut_to_utf16(&mut pair, 4);
        assert_eq!(pair, "a …", "the second unit of a pair is never cut off alone");

        let mut tiny = String::from("abcdef");
        cut_to_utf16(&mut tiny, 1);
        assert_eq!(tiny, "", "no room even for the mark");
    }

    #[cfg(not(windows))]
    #[test]
    fn elsewhere_there_is_no_event_log_layer() {
        assert!(event_log_layer("kanade-test").is_none());
    }
}
