//! Enrolment and renewal of agent credentials (DESIGN.md, Identity): the bootstrap token's shape, the messages an
//! agent and the backend exchange over NATS, and the pure decisions around them. The backend keeps the state; the
//! agent keeps its key.
//!
//! - An operator creates a token (`kanade enroll create`): `kanade_enroll_<id>_<secret>`. The backend stores the
//!   id and a SHA-256 of the secret, never the secret.
//! - A new agent makes its own key pair, connects with the bootstrap credential (which may only publish
//!   [`crate::subject::ENROLL_REQUEST`]) and asks with an [`EnrollRequest`]; the backend answers [`EnrollReply`]:
//!   a JWT for that key and that PC only, `pending` while an operator has to approve, or why not.
//! - An enrolled agent renews over its own connection ([`crate::subject::enroll_renew`], which only it may
//!   publish) before its credential expires, and at once when told its groups changed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::ids::{GroupName, PcId};

/// The prefix of every enrolment token.
pub const TOKEN_PREFIX: &str = "kanade_enroll_";
/// Characters of a token's public id (base32, lowercase).
pub const TOKEN_ID_LEN: usize = 10;
/// Characters of a token's secret (base32 of 20 random bytes: 160 bits).
pub const TOKEN_SECRET_LEN: usize = 32;

/// The default lifetime of an agent credential; the agent renews it halfway through.
pub const DEFAULT_CREDENTIAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest and longest credential lifetime a backend may be configured with.
pub const MIN_CREDENTIAL_TTL: Duration = Duration::from_secs(60);
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The default lifetime of an enrolment token, and the longest allowed.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// The most PCs one token may enrol.
pub const MAX_TOKEN_USES: u32 = 100_000;
/// An enrolment or renewal request larger than this is refused unread.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// A token as printed: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("an enrolment token looks like `{TOKEN_PREFIX}<id>_<secret>`")]
    Shape,
}

impl Token {
    /// A fresh token from `random` bytes (the caller's CSPRNG: 30 bytes).
    pub fn from_random(random: &[u8; 30]) -> Self {
        let encode = |bytes: &[u8]| data_encoding::BASE32_NOPAD.encode(bytes).to_ascii_lowercase();
        Self { id: encode(&random[..10])[..TOKEN_ID_LEN].to_owned(), secret: encode(&random[10..]) }
    }

    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let rest = text.trim().strip_prefix(TOKEN_PREFIX).ok_or(TokenError::Shape)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Shape)?;
        let base32 = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        };
        if !base32(id, TOKEN_ID_LEN) || !base32(secret, TOKEN_SECRET_LEN) {
            return Err(TokenError::Shape);
        }
        Ok(Self { id: id.to_owned(), secret: secret.to_owned() })
    }

    /// What the backend stores instead of the secret.
    pub fn secret_hash(&self) -> String {
        hex(&sha2::Sha256::digest(self.secret.as_bytes()))
    }

    /// Whether this token's secret is the one `stored_hash` was made from (in constant time).
    pub fn matches(&self, stored_hash: &str) -> bool {
        let ours = self.secret_hash();
        ours.len() == stored_hash.len()
            && ours.bytes().zip(stored_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TOKEN_PREFIX}{}_{}", self.id, self.secret)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An agent asking to enrol (on [`crate::subject::ENROLL_REQUEST`], with the bootstrap credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    pub pc_id: PcId,
    /// The agent's own user public key (`U...`); its seed never leaves the PC.
    pub public_key: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub os: String,
    /// The groups the agent's config names; a token with groups of its own grants those instead.
    #[serde(default)]
    pub groups: Vec<GroupName>,
}

/// An enrolled agent asking for a fresh credential (on [`crate::subject::enroll_renew`], over its own connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    pub pc_id: PcId,
    pub public_key: String,
}

/// The backend's answer to either request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EnrollReply {
    /// The credential: a user JWT for the asking key, naming this PC.
    Issued { jwt: String },
    /// An operator has to approve this PC first (`kanade enroll approve <pc>`); ask again later.
    Pending,
    /// Not now and not with this token: `reason` says why, for the agent's log.
    Refused { reason: String },
}

/// When an agent asks for a new credential: halfway through its life, so a broker or backend outage shorter than
/// half the lifetime never lets it lapse.
pub fn renew_at(issued_at: i64, expires_at: i64) -> i64 {
    issued_at + (expires_at - issued_at).max(0) / 2
}

/// What an enrolment token stored by the backend says, as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub expires_at_ms: i64,
    pub uses_left: u32,
    pub revoked: bool,
    /// PCs this token already enrolled (a token enrols a PC once: re-enrolling a revoked PC needs a new token).
    pub used_by: Vec<PcId>,
}

/// Why a token cannot enrol a PC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the enrolment token is unknown or its secret does not match")]
    Unknown,
    #[error("the enrolment token was revoked")]
    Revoked,
    #[error("the enrolment token expired")]
    Expired,
    #[error("the enrolment token has no uses left")]
    UsedUp,
    #[error("this enrolment token already enrolled this PC; enrolling it again needs a new token")]
    AlreadyUsedByThisPc,
}

/// May `token` enrol `pc` now?
pub fn check_token(token: &TokenState, pc: &PcId, now_ms: i64) -> Result<(), TokenRefusal> {
    if token.revoked {
        return Err(TokenRefusal::Revoked);
    }
    if now_ms >= token.expires_at_ms {
        return Err(TokenRefusal::Expired);
    }
    if token.used_by.contains(pc) {
        return Err(TokenRefusal::AlreadyUsedByThisPc);
    }
    if token.uses_left == 0 {
        return Err(TokenRefusal::UsedUp);
    }
    Ok(())
}

/// The groups a newly enrolled PC gets: the token's when it names any (the token is scoped to them; what the
/// agent's config asks beyond them is not granted), else what the agent asked for.
pub fn granted_groups(token_groups: &[GroupName], asked: &[GroupName]) -> Vec<GroupName> {
    let mut groups = if token_groups.is_empty() { asked.to_vec() } else { token_groups.to_vec() };
    groups.sort();
    groups.dedup();
    groups
}

/// Whether `key` is an nkey user public key (`U...`: the user prefix, base32, and its CRC-16), as nats-server reads a
/// JWT's subject.
pub fn is_user_public_key(key: &str) -> bool {
    key.len() == 56
        && nkeys::KeyPair::from_public_key(key)
            .is_ok_and(|pair| matches!(pair.key_pair_type(), nkeys::KeyPairType::User))
}

/// A revoked agent key as the backend remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub public_key: String,
    /// Unix seconds: every JWT of this key issued at or before is refused.
    pub revoked_at: i64,
    /// Unix seconds: when the last JWT issued for this key expires.
    pub expires_at: i64,
}

/// The fleet account's revocation list: every revoked key whose last credential has not expired yet. Once it has,
/// the broker refuses the credential on its own and the entry only makes the account JWT longer.
pub fn account_revocations(revoked: &[Revoked], now: i64) -> std::collections::BTreeMap<String, i64> {
    revoked.iter().filter(|r| r.expires_at > now).map(|r| (r.public_key.clone(), r.revoked_at)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_prints_parses_and_matches_only_its_own_hash() {
        let token = Token::from_random(&[7; 30]);
        let text = token.to_string();
        assert!(text.starts_with(TOKEN_PREFIX));
        let back = Token::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(back, token);
        assert!(back.matches(&token.secret_hash()));
        let other = Token::from_random(&[8; 30]);
        assert!(!back.matches(&other.secret_hash()));
        assert!(!back.matches(""));
        assert!(!format!("{token:?}").contains(&token.secret), "Debug never shows the secret");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = Token::from_random(&[1; 30]).to_string();
        for bad in [
            "",
            "kanade_enroll_",
            "kanade_enroll_abc_def",
            &good.replace(TOKEN_PREFIX, "other_"),
            &good.to_uppercase(),
            &format!("{good}x"),
            &good.replacen('_', "-", 3),
            &format!("{good}\u{0}"),
        ] {
            assert_eq!(Token::parse(bad), Err(TokenError::Shape), "{bad:?}");
        }
    }

    fn state() -> TokenState {
        TokenState { expires_at_ms: 2_000, uses_left: 1, revoked: false, used_by: vec![] }
    }

    #[test]
    fn tokens_expire_run_out_can_be_revoked_and_enrol_a_pc_once() {
        let pc = PcId::new("pc-1").unwrap();
        assert_eq!(check_token(&state(), &pc, 1_000), Ok(()));
        assert_eq!(check_token(&state(), &pc, 2_000), Err(TokenRefusal::Expired));
        assert_eq!(check_token(&TokenState { uses_left: 0, ..state() }, &pc, 1_000), Err(TokenRefusal::UsedUp));
        assert_eq!(check_token(&TokenState { revoked: true, ..state() }, &pc, 1_000), Err(TokenRefusal::Revoked));
        let used = TokenState { used_by: vec![pc.clone()], uses_left: 5, ..state() };
        assert_eq!(check_token(&used, &pc, 1_000), Err(TokenRefusal::AlreadyUsedByThisPc));
    }

    #[test]
    fn a_scoped_token_grants_its_groups_and_an_open_one_what_is_asked() {
        let g = |n: &str| GroupName::new(n).unwrap();
        assert_eq!(granted_groups(&[g("office")], &[g("lab"), g("office")]), [g("office")]);
        assert_eq!(granted_groups(&[], &[g("lab"), g("lab"), g("canary")]), [g("canary"), g("lab")]);
    }

    #[test]
    fn revocations_outlive_the_credential_and_no_longer() {
        let r = |key: &str, expires_at| Revoked { public_key: key.into(), revoked_at: 100, expires_at };
        let list = account_revocations(&[r("UA", 500), r("UB", 150)], 200);
        assert_eq!(list.into_iter().collect::<Vec<_>>(), [("UA".to_owned(), 100)]);
    }

    #[test]
    fn only_user_public_keys_are_user_keys() {
        let user = nkeys::KeyPair::new_user().public_key();
        assert!(is_user_public_key(&user));
        assert!(!is_user_public_key(&nkeys::KeyPair::new_account().public_key()));
        assert!(!is_user_public_key(&nkeys::KeyPair::new_user().seed().unwrap()));
        let mut flipped = user.clone().into_bytes();
        flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
        assert!(!is_user_public_key(std::str::from_utf8(&flipped).unwrap()));
        for bad in ["", "U", &user[..55], &format!("{user}A"), &user.to_lowercase()] {
            assert!(!is_user_public_key(bad), "{bad}");
        }
    }

    #[test]
    fn renewal_is_halfway() {
        assert_eq!(renew_at(100, 300), 200);
        assert_eq!(renew_at(100, 50), 100);
    }

    #[test]
    fn replies_are_tagged_by_status() {
        let json = serde_json::to_value(EnrollReply::Issued { jwt: "x".into() }).unwrap();
        assert_eq!(json, serde_json::json!({"status": "issued", "jwt": "x"}));
        let back: EnrollReply = serde_json::from_str(r#"{"status":"refused","reason":"no"}"#).unwrap();
        assert_eq!(back, EnrollReply::Refused { reason: "no".into() });
        assert!(serde_json::from_str::<EnrollReply>(r#"{"status":"other"}"#).is_err());
    }
}
