//! Validated identifier newtypes. Every subject token is built from one of these, never from a raw string.
//!
//! The rule (DESIGN.md, Identity): lowercase `[a-z0-9_-]`, 1 to 64 characters. That keeps every id safe as a
//! NATS subject token (no `.`, `*`, `>` or whitespace), as a file name and as a KV key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest id accepted, in bytes (all valid characters are ASCII).
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} `{value}` is longer than {MAX_ID_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    /// For an id kind shorter than the common rule (a schedule id).
    #[error("{kind} `{value}` is longer than {max} characters")]
    LongerThan { kind: &'static str, value: String, max: usize },
    #[error("{kind} `{value}` contains `{ch}`: only lowercase a-z, 0-9, `_` and `-` are allowed")]
    InvalidChar { kind: &'static str, value: String, ch: char },
    #[error("{kind} `{value}` is not of the form `<exec_id>.<pc_id>`")]
    Malformed { kind: &'static str, value: String },
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

pub(crate) fn validate(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    // Report the bad character before the length so a pasted sentence gets the more useful message.
    if let Some(ch) = value.chars().find(|c| !is_id_char(*c)) {
        return Err(IdError::InvalidChar { kind, value: shorten(value), ch });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, value: shorten(value) });
    }
    Ok(())
}

/// Keeps error messages bounded when someone passes a megabyte as an id.
pub(crate) fn shorten(value: &str) -> String {
    const SHOWN: usize = 80;
    if value.chars().count() <= SHOWN {
        value.to_owned()
    } else {
        let head: String = value.chars().take(SHOWN).collect();
        format!("{head}...")
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Human name of this kind of id, used in error messages.
            pub const KIND: &'static str = $kind;

            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" })
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                id_schema()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The OpenAPI schema of every validated id: what [`validate`] accepts.
fn id_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some("^[a-z0-9_-]{1,64}$"))
        .into()
}

id_type!(
    /// An agent's id. Derived from the hostname by [`PcId::from_hostname`] unless configured.
    PcId,
    "pc_id"
);
id_type!(
    /// A group of agents, from the agent's config or operator assignments.
    GroupName,
    "group name"
);
id_type!(
    /// A job's id; ad-hoc runs use `adhoc-<id>`.
    JobId,
    "job id"
);
id_type!(
    /// One firing of a job at a set of targets.
    ExecId,
    "exec id"
);

id_type!(
    /// A notification an operator sent to PCs' users (`kanade notify`).
    NoticeId,
    "notice id"
);

id_type!(
    /// The kind of an inventory record (`hardware`, `software`, ...).
    InventoryKind,
    "inventory kind"
);
id_type!(
    /// Who did something, in the audit trail (an operator name or a service).
    Actor,
    "actor"
);
id_type!(
    /// What was done, in the audit trail (`exec`, `revoke`, ...).
    Action,
    "action"
);

impl PcId {
    /// Normalises a raw hostname into a pc id: lowercase, every character outside `[a-z0-9_-]` becomes `-`, cut
    /// to 64 characters. `None` when nothing usable is left (an empty hostname).
    pub fn from_hostname(raw: &str) -> Option<Self> {
        // A fully-qualified name identifies the machine by its first label; the rest is the network it sits in.
        let short = raw.trim().split('.').next().unwrap_or_default();
        let normalised: String = short
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if is_id_char(c) { c } else { '-' })
            .take(MAX_ID_LEN)
            .collect();
        let trimmed = normalised.trim_matches('-');
        Self::new(trimmed).ok()
    }
}

impl Actor {
    /// An actor from a login name, normalised like a hostname (`Jane.Doe` -> `jane-doe`); `unknown` when nothing
    /// usable is left.
    pub fn from_login(raw: &str) -> Self {
        let normalised: String = raw
            .trim()
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if is_id_char(c) { c } else { '-' })
            .take(MAX_ID_LEN)
            .collect();
        Self::new(normalised.trim_matches('-')).unwrap_or_else(|_| Self("unknown".to_owned()))
    }
}

impl ExecId {
    /// A fresh, time-ordered exec id (a UUIDv7 in lowercase hex with dashes).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }
}

impl NoticeId {
    /// A fresh, time-ordered notice id (a UUIDv7, as exec ids are).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }
}

impl JobId {
    /// The job id of an ad-hoc run fired by `kanade run`.
    pub fn adhoc(exec: &ExecId) -> Self {
        // `adhoc-` plus a 36-character UUID stays within the 64-character limit.
        Self::new(format!("adhoc-{exec}")).unwrap_or_else(|_| Self("adhoc".to_owned()))
    }

    pub fn is_adhoc(&self) -> bool {
        self.0.starts_with("adhoc")
    }
}

/// One run's result id: `<exec_id>.<pc_id>`, deterministic in (exec, pc), so a re-published result
/// de-duplicates at the broker (`Nats-Msg-Id`) and lands on one row in the backend (the first stored stays). It is never used as a
/// subject token; the `.` cannot occur in either part, so the pair is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ResultId(String);

impl ResultId {
    pub fn for_run(exec: &ExecId, pc: &PcId) -> Self {
        Self(format!("{exec}.{pc}"))
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let (exec, pc) =
            value.split_once('.').ok_or_else(|| IdError::Malformed { kind: "result id", value: shorten(value) })?;
        Ok(Self::for_run(&ExecId::new(exec)?, &PcId::new(pc)?))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResultId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_id_alphabet() {
        assert!(PcId::new("host-1_a").is_ok());
        assert!(PcId::new("a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_bad_ids_with_clear_messages() {
        assert_eq!(PcId::new("").unwrap_err().to_string(), "pc_id must not be empty");
        assert_eq!(
            PcId::new("Host").unwrap_err().to_string(),
            "pc_id `Host` contains `H`: only lowercase a-z, 0-9, `_` and `-` are allowed"
        );
        assert_eq!(
            GroupName::new("a.b").unwrap_err().to_string(),
            "group name `a.b` contains `.`: only lowercase a-z, 0-9, `_` and `-` are allowed"
        );
        assert!(PcId::new("a".repeat(65)).unwrap_err().to_string().contains("longer than 64"));
        for hostile in ["*", ">", "a b", "a\n", "commands.>", "ü"] {
            assert!(JobId::new(hostile).is_err(), "{hostile:?} must be rejected");
        }
    }

    #[test]
    fn oversized_input_gives_a_bounded_message() {
        let err = PcId::new("x".repeat(1_000_000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{}", err.len());
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<PcId>("\"ok-1\"").is_ok());
        let err = serde_json::from_str::<PcId>("\"no.dots\"").unwrap_err().to_string();
        assert!(err.contains("no.dots"), "{err}");
    }

    #[test]
    fn hostnames_normalise() {
        assert_eq!(PcId::from_hostname("DESKTOP-AB12.corp.example").unwrap().as_str(), "desktop-ab12");
        assert_eq!(PcId::from_hostname("My PC").unwrap().as_str(), "my-pc");
        assert_eq!(PcId::from_hostname(""), None);
        assert_eq!(PcId::from_hostname("..."), None);
    }

    #[test]
    fn result_ids_parse_back() {
        let exec = ExecId::generate();
        let pc = PcId::new("pc-1").unwrap();
        let id = ResultId::for_run(&exec, &pc);
        assert_eq!(ResultId::parse(id.as_str()).unwrap(), id);
        assert!(ResultId::parse("nodot").is_err());
        assert!(ResultId::parse("a.b.c").is_err());
    }

    #[test]
    fn actors_come_from_logins() {
        assert_eq!(Actor::from_login("Jane.Doe").as_str(), "jane-doe");
        assert_eq!(Actor::from_login("CORP\\admin").as_str(), "corp-admin");
        assert_eq!(Actor::from_login("").as_str(), "unknown");
    }

    #[test]
    fn adhoc_job_ids_are_valid() {
        let exec = ExecId::generate();
        let job = JobId::adhoc(&exec);
        assert!(job.is_adhoc());
        assert!(JobId::new(job.as_str()).is_ok());
    }

    proptest! {
        #[test]
        fn any_hostname_normalises_to_a_valid_id_or_none(raw in ".{0,200}") {
            if let Some(id) = PcId::from_hostname(&raw) {
                prop_assert!(PcId::new(id.as_str()).is_ok());
            }
        }

        #[test]
        fn valid_ids_round_trip_through_json(raw in "[a-z0-9_-]{1,64}") {
            let id = PcId::new(raw).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<PcId>(&json).unwrap(), id);
        }
    }
}
