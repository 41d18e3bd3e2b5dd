//! Operator accounts' decisions and formats, without I/O: the password rule and its Argon2id hash, the shapes of the
//! secrets the backend hands out (API, refresh and setup tokens, kept only as SHA-256 hashes), the session token (an
//! HS256 JWT), the roles an API token may carry, TOTP codes, the slowdown of failed sign-ins, the last-admin rule and
//! the refresh cookie. `api::login`, `api::users`, `api::tokens` and `api::auth` do the I/O around them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kanade_shared::access::{GroupScope, Role};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// Fewest characters a password has: long enough that guessing it online, at the pace [`LoginThrottle`] allows, is
/// hopeless.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes a password has: Argon2 takes any length, but a megabyte of "password" is an attack, not a password.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is {0} characters; use at least {MIN_PASSWORD_CHARS}")]
    TooShort(usize),
    #[error("the password is {0} bytes; use at most {MAX_PASSWORD_BYTES}")]
    TooLong(usize),
    #[error("the password is the account's name")]
    IsTheName,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Whether `password` may be `name`'s password.
pub fn check_password(name: &str, password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong(password.len()));
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if password.eq_ignore_ascii_case(name) {
        return Err(PasswordError::IsTheName);
    }
    Ok(())
}

/// `password` hashed with Argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, as OWASP recommends) and a
/// fresh salt, as a PHC string. Takes tens of milliseconds on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Hash(err.to_string()))
}

/// Whether `password` is the one `phc` was made from. The comparison inside is constant-time; a stored hash that
/// does not parse matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(hash) => argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows, checked against when the name is unknown, so that a sign-in with a wrong name
/// takes as long as one with a wrong password and does not tell which names exist.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 32] = rand::random();
        hash_password(&hex(&random)).unwrap_or_default()
    })
}

// ---- Secrets handed out ------------------------------------------------------------------------------------------

/// What a secret token is for; its text starts with the kind's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `kanade_api_<id>_<secret>`: an API token for automation.
    Api,
    /// `kanade_refresh_<id>_<secret>`: trades for a new session token; `<id>` is the session's.
    Refresh,
    /// `kanade_setup_<secret>`: creates the first admin, once.
    Setup,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Api => "kanade_api_",
            TokenKind::Refresh => "kanade_refresh_",
            TokenKind::Setup => "kanade_setup_",
        }
    }
}

/// Characters of a token's id: 80 random bits in base32.
pub const TOKEN_ID_LEN: usize = 16;
/// Characters of a token's secret: 160 random bits in base32.
pub const TOKEN_SECRET_LEN: usize = 32;

/// A secret token as printed: its kind, its public id (empty for a setup token) and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken {
    pub kind: TokenKind,
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretToken").field("kind", &self.kind).field("id", &self.id).finish_non_exhaustive()
    }
}

fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

fn is_base32(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

impl SecretToken {
    /// A fresh token of `kind` from `random` bytes (the caller's CSPRNG).
    pub fn from_random(kind: TokenKind, random: &[u8; 30]) -> Self {
        let id = match kind {
            TokenKind::Setup => String::new(),
            _ => base32(&random[..10]),
        };
        Self { kind, id, secret: base32(&random[10..]) }
    }

    /// A fresh token of `kind`.
    pub fn generate(kind: TokenKind) -> Self {
        Self::from_random(kind, &rand::random())
    }

    /// Reads a token of `kind`; `None` when the text does not have its shape.
    pub fn parse(kind: TokenKind, text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix(kind.prefix())?;
        let (id, secret) = match kind {
            TokenKind::Setup => ("", rest),
            _ => rest.split_once('_')?,
        };
        let id_ok = if kind == TokenKind::Setup { id.is_empty() } else { is_base32(id, TOKEN_ID_LEN) };
        (id_ok && is_base32(secret, TOKEN_SECRET_LEN)).then(|| Self {
            kind,
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// What the backend stores instead of the secret: its SHA-256, hex.
    pub fn secret_hash(&self) -> String {
        hex(&sha2::Sha256::digest(self.secret.as_bytes()))
    }

    /// Whether this token's secret is the one `stored_hash` was made from, in constant time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let ours = self.secret_hash();
        ours.len() == stored_hash.len() && bool::from(ours.as_bytes().ct_eq(stored_hash.as_bytes()))
    }
}

impl std::fmt::Display for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            TokenKind::Setup => write!(f, "{}{}", self.kind.prefix(), self.secret),
            _ => write!(f, "{}{}_{}", self.kind.prefix(), self.id, self.secret),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a token id in a path has the shape of one: refused before any lookup otherwise.
pub fn is_token_id(text: &str) -> bool {
    is_base32(text, TOKEN_ID_LEN)
}

// ---- Session tokens ----------------------------------------------------------------------------------------------

/// The issuer every session token names.
pub const ISSUER: &str = "kanade";
/// The shortest key a session token is signed with (HS256: 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// What a session token says. The backend believes none of it blindly: `sid` names the session row, which every
/// request checks together with the user's current role, scope and state. `role` and `scope` are for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's name.
    pub sub: String,
    pub role: Role,
    pub scope: GroupScope,
    /// The session's id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionTokenError {
    #[error("the session token expired; refresh it (`POST /api/refresh`) or sign in again")]
    Expired,
    #[error("the session token is not valid: {0}")]
    Invalid(String),
}

/// Signs `claims` with `key` (HS256).
pub fn sign_session(claims: &Claims, key: &[u8]) -> Result<String, SessionTokenError> {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(key))
        .map_err(|err| SessionTokenError::Invalid(err.to_string()))
}

/// The claims of a session token signed with `key`, unexpired (a few seconds of clock skew allowed). Only HS256 is
/// accepted: a token saying `alg: none` or any other algorithm is refused, whatever it carries.
pub fn verify_session(token: &str, key: &[u8]) -> Result<Claims, SessionTokenError> {
    use jsonwebtoken::errors::ErrorKind;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 5;
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
    match jsonwebtoken::decode::<Claims>(token, &jsonwebtoken::DecodingKey::from_secret(key), &validation) {
        Ok(data) => Ok(data.claims),
        Err(err) if matches!(err.kind(), ErrorKind::ExpiredSignature) => Err(SessionTokenError::Expired),
        Err(err) => Err(SessionTokenError::Invalid(match err.kind() {
            ErrorKind::InvalidSignature => "its signature does not match this backend's key".to_owned(),
            ErrorKind::InvalidAlgorithm => "it is not signed with HS256".to_owned(),
            _ => err.to_string(),
        })),
    }
}

/// Whether a bearer token has a JWT's shape (three base64url parts); only such tokens are checked as sessions.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

// ---- API tokens --------------------------------------------------------------------------------------------------

/// How long an API token lives when `--ttl` is not given, and the bounds of what may be asked.
pub const DEFAULT_API_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
pub const MIN_API_TOKEN_TTL: Duration = Duration::from_secs(3600);
pub const MAX_API_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most live (unrevoked, unexpired) API tokens one user holds.
pub const MAX_API_TOKENS_PER_USER: usize = 100;
/// Longest name of an API token.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenError {
    #[error("an API token cannot have role `{asked}`, above its owner's `{owner}`")]
    RoleAboveOwner { asked: Role, owner: Role },
    #[error("ttl `{0}` is not a duration; write e.g. 90d or 12h")]
    BadTtl(String),
    #[error("ttl must be between 1h and 366d")]
    TtlOutOfRange,
    #[error("a token name is 1 to {MAX_TOKEN_NAME_CHARS} printable characters")]
    BadName,
}

/// The role a new API token carries: what was asked, else the owner's; never above the owner's.
pub fn api_token_role(asked: Option<Role>, owner: Role) -> Result<Role, ApiTokenError> {
    match asked {
        Some(asked) if !owner.allows(asked) => Err(ApiTokenError::RoleAboveOwner { asked, owner }),
        Some(asked) => Ok(asked),
        None => Ok(owner),
    }
}

/// What an API token may do now: its own role, or less if its owner's was lowered since.
pub fn effective_role(token: Role, owner: Role) -> Role {
    token.min(owner)
}

/// An API token's lifetime from `--ttl`.
pub fn api_token_ttl(raw: Option<&str>) -> Result<Duration, ApiTokenError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(DEFAULT_API_TOKEN_TTL) };
    let ttl = humantime::parse_duration(raw).map_err(|_| ApiTokenError::BadTtl(raw.chars().take(40).collect()))?;
    if !(MIN_API_TOKEN_TTL..=MAX_API_TOKEN_TTL).contains(&ttl) {
        return Err(ApiTokenError::TtlOutOfRange);
    }
    Ok(ttl)
}

/// A token's name as given (trimmed), or `default` when none.
pub fn api_token_name(raw: Option<&str>, default: &str) -> Result<String, ApiTokenError> {
    let name = raw.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(default);
    let chars = name.chars().count();
    if chars > MAX_TOKEN_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiTokenError::BadName);
    }
    Ok(name.to_owned())
}

/// `active`, `expired` or `revoked`.
pub fn api_token_state(revoked: bool, expires_at_ms: i64, now_ms: i64) -> &'static str {
    if revoked {
        "revoked"
    } else if now_ms >= expires_at_ms {
        "expired"
    } else {
        "active"
    }
}

// ---- TOTP --------------------------------------------------------------------------------------------------------

/// Digits of a code, and seconds each is valid for: what every authenticator app does by default.
const TOTP_DIGITS: usize = 6;
const TOTP_STEP_SECS: u64 = 30;

/// A fresh TOTP secret (160 bits, as RFC 4226 recommends), base32 as authenticator apps take it.
pub fn new_totp_secret(random: &[u8; 20]) -> String {
    data_encoding::BASE32_NOPAD.encode(random)
}

fn totp(secret_base32: &str, account: &str) -> Option<totp_rs::TOTP> {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).ok()?;
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        TOTP_DIGITS,
        1,
        TOTP_STEP_SECS,
        secret,
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
    .ok()
}

/// The `otpauth://` URL an authenticator app scans or takes pasted.
pub fn otpauth_url(secret_base32: &str, account: &str) -> Option<String> {
    totp(secret_base32, account).map(|t| t.get_url())
}

/// The time step whose code `code` is, at `unix_secs` give or take one step (clock drift), and later than
/// `last_step` (a code is taken once); `None` if it is no such code.
pub fn totp_step(secret_base32: &str, code: &str, unix_secs: u64, last_step: Option<u64>) -> Option<u64> {
    use subtle::ConstantTimeEq as _;
    let code = code.trim();
    if code.len() != TOTP_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret_base32, "check")?;
    let now = unix_secs / TOTP_STEP_SECS;
    [now.saturating_sub(1), now, now + 1].into_iter().filter(|step| last_step.is_none_or(|last| *step > last)).find(
        |step| {
            let expected = totp.generate(step * TOTP_STEP_SECS);
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        },
    )
}

/// The code of `secret_base32` at `unix_secs`: for tests, which play the authenticator app.
pub fn totp_code(secret_base32: &str, unix_secs: u64) -> Option<String> {
    totp(secret_base32, "check").map(|t| t.generate(unix_secs))
}

// ---- Failed sign-ins ---------------------------------------------------------------------------------------------

/// Wrong passwords a name may try without waiting.
pub const FREE_ATTEMPTS: u32 = 5;
/// The longest wait after many failures.
pub const MAX_LOGIN_DELAY: Duration = Duration::from_secs(300);
/// A name's failures are forgotten after this long without another.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(15 * 60);
/// Names whose failures one backend remembers: beyond, the stalest are forgotten first. Bounded so a flood of
/// made-up names cannot grow the map without end.
pub const MAX_THROTTLED_NAMES: usize = 10_000;

/// How long `name` has to wait after `failures` wrong passwords in a row: nothing after the first
/// [`FREE_ATTEMPTS`], then 1 s, 2 s, 4 s, ... up to [`MAX_LOGIN_DELAY`].
pub fn login_delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE_ATTEMPTS + 1) {
        None => Duration::ZERO,
        Some(over) => Duration::from_secs(1u64 << over.min(20)).min(MAX_LOGIN_DELAY),
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed sign-ins per name, in this backend's memory (each replica counts its own; a restart forgets them).
#[derive(Debug)]
pub struct LoginThrottle {
    failures: HashMap<String, Failures>,
    capacity: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::with_capacity(MAX_THROTTLED_NAMES)
    }
}

impl LoginThrottle {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { failures: HashMap::new(), capacity: capacity.max(1) }
    }

    fn key(name: &str) -> String {
        name.chars().take(kanade_shared::ids::MAX_ID_LEN + 1).collect::<String>().to_lowercase()
    }

    /// `Err(wait)` while `name` must wait before trying again.
    pub fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        let Some(f) = self.failures.get(&Self::key(name)) else { return Ok(()) };
        let ready = f.last + login_delay(f.count);
        if now < ready { Err(ready - now) } else { Ok(()) }
    }

    /// Checks `name` as [`Self::check`] does and, when it may try, counts the attempt as failed until
    /// [`Self::succeeded`] says otherwise: parallel guesses are each counted before any of them is checked.
    pub fn attempt(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        self.check(name, now)?;
        self.failed(name, now);
        Ok(())
    }

    pub fn failed(&mut self, name: &str, now: Instant) {
        let key = Self::key(name);
        if !self.failures.contains_key(&key) && self.failures.len() >= self.capacity {
            self.failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_FAILURES_AFTER);
            if self.failures.len() >= self.capacity
                && let Some(stalest) = self.failures.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone())
            {
                self.failures.remove(&stalest);
            }
        }
        let entry = self.failures.entry(key).or_insert(Failures { count: 0, last: now });
        if now.saturating_duration_since(entry.last) >= FORGET_FAILURES_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// An attempt counted by [`Self::attempt`] was answered as a failure: the wait runs from the answer, not from
    /// when the attempt began, so a password check that is slow (a loaded server) does not use up the wait.
    pub fn refused(&mut self, name: &str, now: Instant) {
        if let Some(entry) = self.failures.get_mut(&Self::key(name)) {
            entry.last = entry.last.max(now);
        }
    }

    pub fn succeeded(&mut self, name: &str) {
        self.failures.remove(&Self::key(name));
    }

    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

// ---- Admins ------------------------------------------------------------------------------------------------------

/// Whether a change leaves no enabled admin: `enabled_admins` there are now, whether the changed user is one of
/// them, and whether it still is after the change. Refused: nobody could manage users any more.
pub fn removes_last_admin(enabled_admins: u64, target_is_enabled_admin: bool, stays_enabled_admin: bool) -> bool {
    target_is_enabled_admin && !stays_enabled_admin && enabled_admins <= 1
}

// ---- The refresh cookie ------------------------------------------------------------------------------------------

/// The cookie the dashboard's refresh token travels in: HttpOnly (scripts never see it), SameSite=Strict (no other
/// site's page sends it), for `/api` only.
pub const REFRESH_COOKIE: &str = "kanade_refresh";
/// The header a request that uses the refresh cookie must carry (any value): a cross-site form cannot send a custom
/// header, and a cross-site script may not without a CORS preflight the backend never grants.
pub const CSRF_HEADER: &str = "x-kanade-csrf";

/// `Set-Cookie` for the refresh token, for `max_age`; `secure` when the dashboard is served over HTTPS.
pub fn refresh_cookie(token: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{REFRESH_COOKIE}={token}; Path=/api; HttpOnly; SameSite=Strict; Max-Age={}{secure}", max_age.as_secs())
}

/// `Set-Cookie` that removes the refresh cookie.
pub fn clear_refresh_cookie(secure: bool) -> String {
    refresh_cookie("", Duration::ZERO, secure)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_long_enough_not_huge_and_not_the_name() {
        assert!(check_password("alice", "correct horse battery").is_ok());
        assert_eq!(check_password("alice", "short"), Err(PasswordError::TooShort(5)));
        // Characters, not bytes: twelve kana are twelve characters.
        assert!(check_password("alice", "かなでかなでかなでかなで").is_ok());
        assert_eq!(check_password("alice", "かなでかなで"), Err(PasswordError::TooShort(6)));
        assert!(matches!(check_password("alice", &"x".repeat(MAX_PASSWORD_BYTES + 1)), Err(PasswordError::TooLong(_))));
        assert_eq!(check_password("administrator", "Administrator"), Err(PasswordError::IsTheName));
    }

    #[test]
    fn a_password_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("", &hash));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "a fresh salt each time");
        assert!(!verify_password("anything", "not a phc string"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn tokens_print_parse_and_match_only_their_own_secret() {
        for kind in [TokenKind::Api, TokenKind::Refresh, TokenKind::Setup] {
            let token = SecretToken::from_random(kind, &[7; 30]);
            let text = token.to_string();
            assert!(text.starts_with(kind.prefix()), "{text}");
            let parsed = SecretToken::parse(kind, &format!(" {text}\n")).unwrap();
            assert_eq!(parsed, token);
            assert!(parsed.matches(&token.secret_hash()));
            let other = SecretToken::from_random(kind, &[8; 30]);
            assert!(!parsed.matches(&other.secret_hash()));
            assert!(!parsed.matches(""));
            assert!(!format!("{token:?}").contains(&token.secret), "Debug hides the secret");
        }
        let api = SecretToken::from_random(TokenKind::Api, &[7; 30]).to_string();
        assert!(SecretToken::parse(TokenKind::Refresh, &api).is_none(), "another kind");
        for bad in
            ["", "kanade_api_", "kanade_api_x_y", &format!("{api}x"), &api.to_uppercase(), &api.replace('_', "-")]
        {
            assert!(SecretToken::parse(TokenKind::Api, bad).is_none(), "{bad}");
        }
        assert!(is_token_id(&SecretToken::from_random(TokenKind::Api, &[1; 30]).id));
        assert!(!is_token_id("UPPERCASE0000000") && !is_token_id("short"));
    }

    fn claims(exp_in: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "alice".into(),
            role: Role::Operator,
            scope: GroupScope::parse_list("office").unwrap(),
            sid: "s1".into(),
            iat: now,
            exp: now + exp_in,
            iss: ISSUER.into(),
        }
    }

    #[test]
    fn a_session_token_verifies_with_its_key_only_and_not_once_expired() {
        let key = [1u8; 32];
        let token = sign_session(&claims(600), &key).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(verify_session(&token, &key).unwrap(), claims(600));
        assert!(
            matches!(verify_session(&token, &[2u8; 32]), Err(SessionTokenError::Invalid(m)) if m.contains("signature"))
        );
        let expired = sign_session(&claims(-60), &key).unwrap();
        assert_eq!(verify_session(&expired, &key), Err(SessionTokenError::Expired));
        // A token that says it needs no signature is refused whatever it claims.
        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let payload = serde_json::to_value(claims(600)).unwrap();
        let none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&payload));
        assert!(verify_session(&none, &key).is_err());
        let hs512 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims(600),
            &jsonwebtoken::EncodingKey::from_secret(&key),
        )
        .unwrap();
        assert!(verify_session(&hs512, &key).is_err(), "another algorithm, even with the right key");
        let mut foreign = claims(600);
        foreign.iss = "someone-else".into();
        assert!(verify_session(&sign_session(&foreign, &key).unwrap(), &key).is_err());
        for bad in ["", "a.b", "a.b.c.d", "not a jwt", "kanade_api_x"] {
            assert!(verify_session(bad, &key).is_err());
        }
        assert!(!looks_like_jwt("kanade_api_abc_def") && !looks_like_jwt("a..b"));
    }

    #[test]
    fn an_api_token_never_carries_more_than_its_owner() {
        assert_eq!(api_token_role(None, Role::Approver), Ok(Role::Approver));
        assert_eq!(api_token_role(Some(Role::Viewer), Role::Approver), Ok(Role::Viewer));
        assert_eq!(
            api_token_role(Some(Role::Admin), Role::Operator),
            Err(ApiTokenError::RoleAboveOwner { asked: Role::Admin, owner: Role::Operator })
        );
        // An admin token of an owner demoted since acts as the owner is now.
        assert_eq!(effective_role(Role::Admin, Role::Viewer), Role::Viewer);
        assert_eq!(effective_role(Role::Viewer, Role::Admin), Role::Viewer);
    }

    #[test]
    fn api_token_lifetimes_and_names_are_bounded() {
        assert_eq!(api_token_ttl(None), Ok(DEFAULT_API_TOKEN_TTL));
        assert_eq!(api_token_ttl(Some("12h")), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(api_token_ttl(Some("59m")), Err(ApiTokenError::TtlOutOfRange));
        assert_eq!(api_token_ttl(Some("400d")), Err(ApiTokenError::TtlOutOfRange));
        assert!(matches!(api_token_ttl(Some("soon")), Err(ApiTokenError::BadTtl(_))));
        assert_eq!(api_token_name(None, "token").unwrap(), "token");
        assert_eq!(api_token_name(Some("  ci deploy "), "token").unwrap(), "ci deploy");
        assert_eq!(api_token_name(Some(&"n".repeat(65)), "token"), Err(ApiTokenError::BadName));
        assert_eq!(api_token_name(Some("a\nb"), "token"), Err(ApiTokenError::BadName));
        assert_eq!(api_token_state(false, 10, 5), "active");
        assert_eq!(api_token_state(false, 10, 10), "expired");
        assert_eq!(api_token_state(true, 10, 5), "revoked");
    }

    #[test]
    fn a_totp_code_is_taken_within_a_step_of_now_and_only_once() {
        let secret = new_totp_secret(&[3; 20]);
        let now = 1_800_000_000;
        let code = totp_code(&secret, now).unwrap();
        let step = now / 30;
        assert_eq!(totp_step(&secret, &code, now, None), Some(step));
        assert_eq!(totp_step(&secret, &format!(" {code} "), now + 25, None), Some(step), "drift within a step");
        assert_eq!(totp_step(&secret, &code, now, Some(step)), None, "the same code twice");
        assert_eq!(totp_step(&secret, &code, now + 300, None), None, "long past");
        let next = totp_code(&secret, now + 30).unwrap();
        assert_eq!(totp_step(&secret, &next, now, Some(step)), Some(step + 1), "the next step's code, early");
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(totp_step(&secret, bad, now, None), None, "{bad:?}");
        }
        assert_eq!(totp_step("not base32!", &code, now, None), None);
        let url = otpauth_url(&secret, "alice").unwrap();
        assert!(url.starts_with("otpauth://totp/kanade:alice?") && url.contains(&format!("secret={secret}")), "{url}");
    }

    #[test]
    fn failed_sign_ins_slow_a_name_down_and_success_forgets_them() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..FREE_ATTEMPTS {
            assert!(throttle.check("alice", start).is_ok());
            throttle.failed("alice", start);
        }
        assert!(throttle.check("alice", start).is_ok(), "the first failures cost nothing");
        throttle.failed("Alice", start);
        assert_eq!(throttle.check("alice", start), Err(Duration::from_secs(1)), "names are counted case-blind");
        assert!(throttle.check("bob", start).is_ok(), "other names are not held up");
        assert!(throttle.check("alice", start + Duration::from_secs(1)).is_ok());
        throttle.failed("alice", start + Duration::from_secs(1));
        assert_eq!(throttle.check("alice", start + Duration::from_secs(1)), Err(Duration::from_secs(2)));
        throttle.succeeded("alice");
        assert!(throttle.check("alice", start).is_ok());
        assert_eq!(login_delay(FREE_ATTEMPTS + 30), MAX_LOGIN_DELAY);
        // Quiet long enough, the count starts again.
        let later = start + FORGET_FAILURES_AFTER + Duration::from_secs(1);
        for _ in 0..=FREE_ATTEMPTS {
            throttle.failed("carol", start);
        }
        throttle.failed("carol", later);
        assert!(throttle.check("carol", later).is_ok());
    }

    #[test]
    fn the_wait_runs_from_the_refusal_not_from_the_start_of_a_slow_check() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..=FREE_ATTEMPTS {
            throttle.attempt("dora", start).unwrap();
        }
        // The last check took two seconds; the one-second wait starts when it was answered.
        let answered = start + Duration::from_secs(2);
        throttle.refused("dora", answered);
        assert_eq!(throttle.check("dora", answered), Err(Duration::from_secs(1)));
        assert!(throttle.check("dora", answered + Duration::from_secs(1)).is_ok());
        // A refusal for a name never counted adds nothing.
        throttle.refused("eve", answered);
        assert!(throttle.check("eve", answered).is_ok());
    }

    #[test]
    fn attempts_in_flight_are_counted_before_any_is_checked() {
        let mut throttle = LoginThrottle::default();
        let start = Instant::now();
        // A hundred guesses sent at once: only the free ones get to a password check; a success forgets them.
        let let_through = (0..100).filter(|_| throttle.attempt("alice", start).is_ok()).count();
        assert_eq!(let_through, usize::try_from(FREE_ATTEMPTS).unwrap() + 1);
        throttle.succeeded("alice");
        assert!(throttle.attempt("alice", start).is_ok());
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_names() {
        let mut throttle = LoginThrottle::with_capacity(3);
        let start = Instant::now();
        for i in 0..10u64 {
            throttle.failed(&format!("name-{i}"), start + Duration::from_secs(i));
            assert!(throttle.len() <= 3);
        }
        // The newest are kept.
        for _ in 0..FREE_ATTEMPTS {
            throttle.failed("name-9", start + Duration::from_secs(9));
        }
        assert!(throttle.check("name-9", start + Duration::from_secs(9)).is_err());
        assert!(throttle.check(&"x".repeat(100_000), start).is_ok(), "a huge name is only a key");
    }

    #[test]
    fn the_last_enabled_admin_stays() {
        assert!(removes_last_admin(1, true, false));
        assert!(!removes_last_admin(2, true, false));
        assert!(!removes_last_admin(1, true, true));
        assert!(!removes_last_admin(1, false, false));
        assert!(!removes_last_admin(0, false, false));
    }

    #[test]
    fn the_refresh_cookie_is_http_only_strict_and_for_the_api() {
        let cookie = refresh_cookie("kanade_refresh_a_b", Duration::from_secs(60), false);
        assert_eq!(cookie, "kanade_refresh=kanade_refresh_a_b; Path=/api; HttpOnly; SameSite=Strict; Max-Age=60");
        assert!(refresh_cookie("t", Duration::ZERO, true).ends_with("; Secure"));
        assert!(
            clear_refresh_cookie(false).contains("kanade_refresh=;")
                && clear_refresh_cookie(false).contains("Max-Age=0")
        );
        assert_eq!(cookie_value("a=1; kanade_refresh=xyz; b=2", REFRESH_COOKIE), Some("xyz"));
        assert_eq!(cookie_value("kanade_refreshx=1", REFRESH_COOKIE), None);
        assert_eq!(cookie_value("", REFRESH_COOKIE), None);
    }
}
