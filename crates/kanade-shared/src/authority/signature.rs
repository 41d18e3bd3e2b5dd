//! The signature a command, a kill or a job-state value carries, in five NATS headers beside the untouched
//! payload. It covers the exact payload bytes, the subject the message goes to, a unique id, when it was signed
//! and when it expires, so it cannot be moved to another subject, stretched past its expiry or altered.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone as _, Utc};

use super::keys::{PublicKey, SigningKey};

/// Who signed: the signer's public key.
pub const SIGNER_HEADER: &str = "Kanade-Signer";
/// The signature's unique id.
pub const ID_HEADER: &str = "Kanade-Sig-Id";
/// When it was signed, in Unix milliseconds.
pub const ISSUED_HEADER: &str = "Kanade-Sig-Issued";
/// When it stops being valid, in Unix milliseconds.
pub const EXPIRES_HEADER: &str = "Kanade-Sig-Expires";
/// The Ed25519 signature, base64url.
pub const SIGNATURE_HEADER: &str = "Kanade-Signature";

/// Every header a signature travels in.
pub const HEADERS: [&str; 5] = [SIGNER_HEADER, ID_HEADER, ISSUED_HEADER, EXPIRES_HEADER, SIGNATURE_HEADER];

/// Longest signature id accepted.
pub const MAX_ID_LEN: usize = 64;

/// What every signed message starts with before hashing, so that a kanade signature can never be taken for a
/// signature over anything else (a trust list, another protocol's message).
const DOMAIN: &[u8] = b"kanade-message-signature-v1\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    #[error("header `{header}` is not valid: {why}")]
    Invalid { header: &'static str, why: String },
}

/// A signature as it travels: who, which, when, until when, and the 64 signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub signer: PublicKey,
    pub id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    value: [u8; 64],
}

impl Signature {
    /// Signs `payload` for `subject` with `key`, valid from `issued_at` (whole milliseconds) for `lifetime`.
    pub fn sign(
        key: &SigningKey,
        subject: &str,
        payload: &[u8],
        issued_at: DateTime<Utc>,
        lifetime: std::time::Duration,
    ) -> Self {
        let issued_at = whole_millis(issued_at);
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        let expires_at = issued_at.checked_add_signed(lifetime).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let expires_at = whole_millis(expires_at);
        let id = uuid::Uuid::now_v7().simple().to_string();
        let signer = key.public_key();
        let value = key.sign(&signed_bytes(&signer, &id, issued_at, expires_at, subject, payload));
        Signature { signer, id, issued_at, expires_at, value }
    }

    /// Whether the signature is the signer's over `payload` on `subject`. Only the cryptography: whether the signer
    /// may, and whether it is still valid, is [`super::check`]'s.
    pub fn verifies(&self, subject: &str, payload: &[u8]) -> bool {
        let message = signed_bytes(&self.signer, &self.id, self.issued_at, self.expires_at, subject, payload);
        self.signer.verifies(&message, &self.value)
    }

    /// The headers to send, as (name, value).
    pub fn headers(&self) -> [(&'static str, String); 5] {
        [
            (SIGNER_HEADER, self.signer.to_string()),
            (ID_HEADER, self.id.clone()),
            (ISSUED_HEADER, self.issued_at.timestamp_millis().to_string()),
            (EXPIRES_HEADER, self.expires_at.timestamp_millis().to_string()),
            (SIGNATURE_HEADER, URL_SAFE_NO_PAD.encode(self.value)),
        ]
    }

    /// Reads a signature from a message's headers, `get(name)` giving each one's value. `Ok(None)` when the message
    /// carries no signer at all (unsigned); an error when it carries a signature that cannot be read.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Self>, SignatureError> {
        let Some(signer) = get(SIGNER_HEADER) else {
            return Ok(None);
        };
        let invalid = |header, why: String| SignatureError::Invalid { header, why };
        let signer = signer.parse::<PublicKey>().map_err(|err| invalid(SIGNER_HEADER, err.to_string()))?;
        let id = get(ID_HEADER).ok_or(SignatureError::Missing(ID_HEADER))?;
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(ID_HEADER, format!("expected 1 to {MAX_ID_LEN} letters, digits or `-`")));
        }
        let millis = |header: &'static str| -> Result<DateTime<Utc>, SignatureError> {
            let raw = get(header).ok_or(SignatureError::Missing(header))?;
            raw.parse::<i64>()
                .ok()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                .ok_or_else(|| invalid(header, "expected Unix milliseconds".to_owned()))
        };
        let issued_at = millis(ISSUED_HEADER)?;
        let expires_at = millis(EXPIRES_HEADER)?;
        let raw = get(SIGNATURE_HEADER).ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
        let value: [u8; 64] = (raw.len() == 86)
            .then(|| URL_SAFE_NO_PAD.decode(raw).ok())
            .flatten()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| invalid(SIGNATURE_HEADER, "expected 64 bytes in base64url".to_owned()))?;
        Ok(Some(Signature { signer, id: id.to_owned(), issued_at, expires_at, value }))
    }
}

fn whole_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at.timestamp_millis()).single().unwrap_or(at)
}

/// The bytes signed: the domain, then each field and the payload, each field ended by a NUL (none can hold one: the
/// key and numbers are ASCII, the id is checked, and a NATS subject has no NUL).
fn signed_bytes(
    signer: &PublicKey,
    id: &str,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    subject: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 160 + subject.len() + payload.len());
    out.extend_from_slice(DOMAIN);
    for field in [
        signer.to_string().as_bytes(),
        id.as_bytes(),
        issued_at.timestamp_millis().to_string().as_bytes(),
        expires_at.timestamp_millis().to_string().as_bytes(),
        subject.as_bytes(),
    ] {
        out.extend_from_slice(field);
        out.push(0);
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn read(headers: &HashMap<&'static str, String>) -> Result<Option<Signature>, SignatureError> {
        Signature::from_headers(|name| headers.get(name).map(String::as_str))
    }

    #[test]
    fn a_signature_travels_in_headers_and_covers_subject_and_payload() {
        let key = SigningKey::generate();
        let signed = Signature::sign(&key, "commands.all.patch", b"{}", Utc::now(), Duration::from_secs(60));
        let headers: HashMap<_, _> = signed.headers().into_iter().collect();
        let back = read(&headers).unwrap().unwrap();
        assert_eq!(back, signed);
        assert!(back.verifies("commands.all.patch", b"{}"));
        assert!(!back.verifies("commands.all.other", b"{}"), "moved to another subject");
        assert!(!back.verifies("commands.all.patch", b"{ }"), "payload changed");
        let mut stretched = back.clone();
        stretched.expires_at += chrono::Duration::days(1);
        assert!(!stretched.verifies("commands.all.patch", b"{}"), "expiry stretched");
        let mut other = back;
        other.signer = SigningKey::generate().public_key();
        assert!(!other.verifies("commands.all.patch", b"{}"), "signer swapped");
    }

    #[test]
    fn an_unsigned_message_reads_as_none_and_a_damaged_one_as_an_error() {
        assert_eq!(read(&HashMap::new()).unwrap(), None);
        let key = SigningKey::generate();
        let good: HashMap<_, _> =
            Signature::sign(&key, "kill.x", b"", Utc::now(), Duration::from_secs(60)).headers().into_iter().collect();
        for (header, value) in [
            (ID_HEADER, "has space".to_owned()),
            (ID_HEADER, "a".repeat(65)),
            (ISSUED_HEADER, "yesterday".to_owned()),
            (EXPIRES_HEADER, i64::MAX.to_string()),
            (SIGNATURE_HEADER, "AAAA".to_owned()),
            (SIGNATURE_HEADER, "!".repeat(86)),
            (SIGNER_HEADER, "ed25519:nope".to_owned()),
        ] {
            let mut damaged = good.clone();
            damaged.insert(header, value);
            assert!(read(&damaged).is_err(), "{header}");
        }
        for header in [ID_HEADER, ISSUED_HEADER, EXPIRES_HEADER, SIGNATURE_HEADER] {
            let mut missing = good.clone();
            missing.remove(header);
            assert_eq!(read(&missing).unwrap_err(), SignatureError::Missing(header));
        }
    }
}
