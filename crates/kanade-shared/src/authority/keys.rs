//! Ed25519 keys as kanade writes them: a public key is `ed25519:<base64url>` (short enough for a header and a
//! trust-list line), a private key is a PKCS#8 PEM file, the standard form `openssl pkey` reads too.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("`{0}` is not a public key: expected `ed25519:` and 43 base64url characters")]
    PublicKey(String),
    #[error("not an Ed25519 private key in PKCS#8 PEM form: {0}")]
    PrivateKey(String),
}

/// An Ed25519 public key: who signed. Kept as its 32 bytes (checked to be a valid, strong key when parsed) so that
/// errors naming one stay small; the point is decompressed when a signature is verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `signature` is this key's over `message`. Strict: a weak key or a malleable signature is refused.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .is_ok_and(|key| key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).is_ok())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::PublicKey(crate::ids::shorten(text));
        let encoded = text.trim().strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(bad)?;
        if encoded.len() != 43 {
            return Err(bad());
        }
        let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(encoded).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        // A key of small order verifies signatures it never made; nobody's real key is one.
        if key.is_weak() {
            return Err(bad());
        }
        Ok(PublicKey(bytes))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 private key: an operator's, the backend's or the trust root's.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new key from the operating system's random source (through rand's thread generator, seeded from it).
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        seed.fill(0);
        SigningKey(key)
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.0.sign(message).to_bytes()
    }

    /// The key as a PKCS#8 PEM document.
    pub fn to_pem(&self) -> String {
        // Encoding a valid key into PEM cannot fail; the error type covers decoding too.
        self.0
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default()
    }

    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim())
            .map(SigningKey)
            .map_err(|err| KeyError::PrivateKey(err.to_string()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let key = SigningKey::generate();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let text = key.public_key().to_string();
        assert_eq!(text.len(), PUBLIC_KEY_PREFIX.len() + 43);
        assert_eq!(text.parse::<PublicKey>().unwrap(), key.public_key());
        let signature = key.sign(b"hello");
        assert!(key.public_key().verifies(b"hello", &signature));
        assert!(!key.public_key().verifies(b"hellO", &signature));
    }

    #[test]
    fn hostile_key_text_is_refused_with_a_bounded_message() {
        for bad in ["", "ed25519:", "ed25519:!!!", "rsa:AAAA", "ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
        let huge = format!("ed25519:{}", "A".repeat(1 << 20));
        assert!(huge.parse::<PublicKey>().unwrap_err().to_string().len() < 200);
        assert!(SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(SigningKey::from_pem("").is_err());
    }
}
