//! NATS JWTs in the format nats-server verifies (nats-io/jwt v2): an operator, accounts, and users, each signed by
//! an nkey.
//!
//! Written here rather than taken from a crate: the Rust JWT crates for NATS either stop at users and accounts
//! without scoped signing keys (`nats-jwt`) or are an unfinished 0.x generated from an old schema
//! (`nats-io-jwt`), and NATS's own ADR-14 recommends that programs issuing users write the few fields they need
//! with scoped signing keys carrying the permissions. What is here is only those fields: the server ignores
//! anything missing and decodes the rest with the nats-io/jwt library, which the integration tests exercise.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A JWT longer than this is refused before it is decoded (nats-io/jwt's own limit).
pub const MAX_TOKEN_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("a JWT is three base64url parts separated by dots")]
    Shape,
    #[error("the JWT is {0} bytes, over the {MAX_TOKEN_BYTES}-byte limit")]
    TooLong(usize),
    #[error("the JWT's {part} is not valid base64url")]
    Base64 { part: &'static str },
    #[error("the JWT's header is not `{{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}}`")]
    Header,
    #[error("the JWT's claims do not decode")]
    Claims(#[source] serde_json::Error),
    #[error("the JWT is a `{found}`, not a `{expected}`")]
    Kind { expected: &'static str, found: String },
    #[error("the JWT's issuer `{0}` is not a valid public key")]
    Issuer(String),
    #[error("the JWT's signature does not verify against its issuer")]
    Signature,
    #[error("cannot sign the JWT")]
    Sign(#[source] nkeys::error::Error),
}

/// The header every v2 JWT carries.
#[derive(Serialize, Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

const TYP: &str = "JWT";
const ALG: &str = "ed25519-nkey";

/// The standard claims around a body `T` (the `nats` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<T> {
    /// Unix seconds after which the server refuses the JWT; none means it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// A hash of the claims, unique per version ([`encode`] sets it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Unix seconds; a newer account JWT replaces an older one, and revocations are "issued at or before".
    pub iat: i64,
    /// The public key that signed this JWT ([`encode`] sets it).
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The public key this JWT is about.
    pub sub: String,
    pub nats: T,
}

/// `type` and `version` of a body: every v2 body carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kind {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

impl Kind {
    fn v2(kind: &str) -> Self {
        Self { kind: kind.to_owned(), version: 2 }
    }
}

/// The operator: the root every account JWT must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Keys that may sign account JWTs besides the operator's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    /// The account whose users may manage the server (push account updates).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// An account: its limits, the keys that may issue its users, and the users it revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub limits: AccountLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<SigningKey>,
    /// User public key -> unix seconds: every JWT of that user issued at or before then is refused, and its
    /// connections are closed when the account update arrives.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(flatten)]
    pub kind: Kind,
}

/// `-1` everywhere: no limit. JetStream is enabled for an account only when its storage limits are non-zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub imports: i64,
    pub exports: i64,
    pub wildcards: bool,
    pub conn: i64,
    pub leaf: i64,
    pub mem_storage: i64,
    pub disk_storage: i64,
    pub streams: i64,
    pub consumer: i64,
}

impl AccountLimits {
    /// No limits, JetStream on.
    pub fn unlimited() -> Self {
        Self {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: -1,
            disk_storage: -1,
            streams: -1,
            consumer: -1,
        }
    }

    /// The system account: no JetStream.
    pub fn system() -> Self {
        Self { mem_storage: 0, disk_storage: 0, streams: 0, consumer: 0, ..Self::unlimited() }
    }
}

/// A key that may sign an account's users: plain (the user JWT carries its own permissions) or scoped (the
/// permissions are the scope's template, whatever the user JWT says; the server refuses a scoped user that
/// carries permissions of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SigningKey {
    Plain(String),
    Scoped(Box<UserScope>),
}

impl SigningKey {
    pub fn public_key(&self) -> &str {
        match self {
            Self::Plain(key) => key,
            Self::Scoped(scope) => &scope.key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserScope {
    /// Always `user_scope`.
    pub kind: String,
    pub key: String,
    pub role: String,
    /// Permissions and limits; `{{name()}}` and `{{tag(<name>)}}` in a subject are the user JWT's name and the
    /// values of its `<name>:<value>` tags (one subject per value; none when the user has no such tag).
    pub template: UserLimits,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl UserScope {
    pub fn new(key: String, role: &str, template: UserLimits, description: &str) -> Self {
        Self {
            kind: "user_scope".to_owned(),
            key,
            role: role.to_owned(),
            template,
            description: description.to_owned(),
        }
    }
}

/// What a user may publish and subscribe to, and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserLimits {
    #[serde(rename = "pub", default)]
    pub publish: Permission,
    #[serde(rename = "sub", default)]
    pub subscribe: Permission,
    /// Replies allowed to requests the user received, whatever `pub` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
    /// At most this many subscriptions (`-1`: no limit).
    pub subs: i64,
    /// At most this many bytes outstanding (`-1`: no limit).
    pub data: i64,
    /// The largest message the user may publish (`-1`: the server's).
    pub payload: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Permission {
    pub fn allow<I: IntoIterator<Item = S>, S: Into<String>>(subjects: I) -> Self {
        Self { allow: subjects.into_iter().map(Into::into).collect(), deny: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponsePermission {
    /// Replies per request received.
    pub max: i64,
    /// For how long after the request, in nanoseconds (0: the server's default).
    pub ttl: i64,
}

/// A user: either with permissions of its own (`limits`), or none when signed by a scoped key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<UserLimits>,
    /// The account the issuing signing key belongs to (set when a signing key, not the account, signs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    /// `<name>:<value>` pairs; the scoped templates read them (`group:office`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub kind: Kind,
}

/// A body that knows its `type`.
pub trait Body: Serialize + DeserializeOwned + Clone {
    const KIND: &'static str;
}

impl Body for Operator {
    const KIND: &'static str = "operator";
}
impl Body for Account {
    const KIND: &'static str = "account";
}
impl Body for User {
    const KIND: &'static str = "user";
}

impl Operator {
    pub fn new(signing_keys: Vec<String>, system_account: String) -> Self {
        Self { signing_keys, system_account, kind: Kind::v2(Self::KIND) }
    }
}

impl Account {
    pub fn new(limits: AccountLimits, signing_keys: Vec<SigningKey>) -> Self {
        Self { limits, signing_keys, revocations: BTreeMap::new(), kind: Kind::v2(Self::KIND) }
    }
}

impl User {
    /// A user of a scoped signing key: no permissions of its own.
    pub fn scoped(issuer_account: String, tags: Vec<String>) -> Self {
        Self { limits: None, issuer_account, tags, kind: Kind::v2(Self::KIND) }
    }

    /// A user with its own permissions, signed by a plain signing key of `issuer_account`.
    pub fn with_limits(limits: UserLimits, issuer_account: String) -> Self {
        Self { limits: Some(limits), issuer_account, tags: Vec::new(), kind: Kind::v2(Self::KIND) }
    }
}

impl<T: Body> Claims<T> {
    /// Claims about `subject`, issued now (`iat` in unix seconds), expiring at `exp` if given.
    pub fn new(subject: String, name: &str, iat: i64, exp: Option<i64>, body: T) -> Self {
        Self { exp, jti: String::new(), iat, iss: String::new(), name: name.to_owned(), sub: subject, nats: body }
    }
}

/// Signs `claims` with `signer`: sets `iss` to its public key and `jti` to a hash of the claims, and returns the
/// compact JWT.
///
/// The hash covers the whole body (nats-io/jwt hashes only the standard claims): two versions of an account
/// issued within the same second then still differ in `jti`, which the server's resolver compares to skip
/// an update it already holds.
pub fn encode<T: Body>(claims: &Claims<T>, signer: &KeyPair) -> Result<String, JwtError> {
    let mut claims = claims.clone();
    claims.iss = signer.public_key();
    claims.jti = String::new();
    let unsigned = serde_json::to_vec(&claims).map_err(JwtError::Claims)?;
    let hash = sha2::Sha512_256::digest(&unsigned);
    claims.jti = data_encoding::BASE32_NOPAD.encode(&hash);
    let header = serde_json::to_vec(&Header { typ: TYP.to_owned(), alg: ALG.to_owned() }).map_err(JwtError::Claims)?;
    let body = serde_json::to_vec(&claims).map_err(JwtError::Claims)?;
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(body));
    let signature = signer.sign(signing_input.as_bytes()).map_err(JwtError::Sign)?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Decodes a JWT of kind `T` and verifies its signature against its own issuer. Whether that issuer is trusted is
/// the caller's question.
pub fn decode<T: Body>(token: &str) -> Result<Claims<T>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong(token.len()));
    }
    let mut parts = token.trim().split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let header_bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Base64 { part: "header" })?;
    match serde_json::from_slice::<Header>(&header_bytes) {
        Ok(h) if h.typ.eq_ignore_ascii_case(TYP) && h.alg == ALG => {}
        _ => return Err(JwtError::Header),
    }
    let body_bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| JwtError::Base64 { part: "claims" })?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Base64 { part: "signature" })?;
    let kind: Claims<Kind> = serde_json::from_slice(&body_bytes).map_err(JwtError::Claims)?;
    if kind.nats.kind != T::KIND {
        return Err(JwtError::Kind { expected: T::KIND, found: kind.nats.kind });
    }
    let issuer = KeyPair::from_public_key(&kind.iss).map_err(|_| JwtError::Issuer(kind.iss.clone()))?;
    let signed = &token.trim()[..header.len() + 1 + body.len()];
    issuer.verify(signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
    serde_json::from_slice(&body_bytes).map_err(JwtError::Claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_claims() -> Claims<User> {
        let user = KeyPair::new_user();
        let account = KeyPair::new_account();
        Claims::new(
            user.public_key(),
            "pc-1",
            1_700_000_000,
            Some(1_700_086_400),
            User::scoped(account.public_key(), vec!["group:office".to_owned()]),
        )
    }

    #[test]
    fn a_signed_jwt_decodes_to_the_same_claims_with_issuer_and_hash_set() {
        let signer = KeyPair::new_account();
        let claims = user_claims();
        let token = encode(&claims, &signer).unwrap();
        let back: Claims<User> = decode(&token).unwrap();
        assert_eq!(back.iss, signer.public_key());
        assert_eq!(back.jti.len(), 52, "base32 of 32 bytes without padding");
        assert_eq!(Claims { iss: String::new(), jti: String::new(), ..back }, claims);
    }

    #[test]
    fn the_body_is_what_nats_server_reads() {
        let signer = KeyPair::new_account();
        let token = encode(&user_claims(), &signer).unwrap();
        let body = token.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert_eq!(json["nats"]["type"], "user");
        assert_eq!(json["nats"]["version"], 2);
        assert_eq!(json["nats"]["tags"][0], "group:office");
        // A scoped user must carry no permissions or limits, or the server refuses it.
        for field in ["pub", "sub", "subs", "data", "payload", "resp"] {
            assert!(json["nats"].get(field).is_none(), "{field} must be absent");
        }
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"}));
    }

    #[test]
    fn two_account_versions_in_one_second_have_different_ids() {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let mut claims = Claims::new(
            account.public_key(),
            "KANADE",
            1_700_000_000,
            None,
            Account::new(AccountLimits::unlimited(), vec![]),
        );
        let first: Claims<Account> = decode(&encode(&claims, &operator).unwrap()).unwrap();
        claims.nats.revocations.insert(KeyPair::new_user().public_key(), 1_700_000_000);
        let second: Claims<Account> = decode(&encode(&claims, &operator).unwrap()).unwrap();
        assert_ne!(first.jti, second.jti);
    }

    #[test]
    fn tampered_wrong_kind_and_malformed_tokens_are_refused() {
        let signer = KeyPair::new_account();
        let token = encode(&user_claims(), &signer).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut claims = user_claims();
        claims.name = "pc-2".to_owned();
        claims.iss = signer.public_key();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert!(matches!(decode::<User>(&parts.join(".")), Err(JwtError::Signature)));
        assert!(matches!(decode::<Account>(&token), Err(JwtError::Kind { .. })));
        for bad in ["", "a.b", "a.b.c.d", "!!.??.**", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(decode::<User>(bad).is_err(), "{bad:.20}");
        }
    }

    #[test]
    fn signing_keys_serialise_plain_or_scoped_as_nats_expects() {
        let scoped =
            SigningKey::Scoped(Box::new(UserScope::new("AKEY".to_owned(), "agent", UserLimits::default(), "")));
        let json = serde_json::to_value([SigningKey::Plain("APLAIN".to_owned()), scoped]).unwrap();
        assert_eq!(json[0], "APLAIN");
        assert_eq!(json[1]["kind"], "user_scope");
        assert_eq!(json[1]["role"], "agent");
        let back: Vec<SigningKey> = serde_json::from_value(json).unwrap();
        assert_eq!(back[0].public_key(), "APLAIN");
        assert_eq!(back[1].public_key(), "AKEY");
    }
}
