//! The standard NATS `.creds` file: a user JWT and the user's nkey seed, in the decorated blocks every NATS client
//! (async-nats, nats-py, the `nats` CLI) reads.

use nkeys::KeyPair;

const JWT_BEGIN: &str = "-----BEGIN NATS USER JWT-----";
const JWT_END: &str = "------END NATS USER JWT------";
const SEED_BEGIN: &str = "-----BEGIN USER NKEY SEED-----";
const SEED_END: &str = "------END USER NKEY SEED------";

/// A `.creds` file is a few hundred bytes to a few KiB; anything this large is not one.
pub const MAX_CREDS_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("the credentials are {0} bytes, over the {MAX_CREDS_BYTES}-byte limit")]
    TooLong(usize),
    #[error("no `{JWT_BEGIN}` block in the credentials")]
    NoJwt,
    #[error("no `{SEED_BEGIN}` block in the credentials")]
    NoSeed,
    #[error("the credentials' seed is not a user nkey seed")]
    Seed(#[source] nkeys::error::Error),
    #[error("the credentials' JWT is for `{jwt}`, but its seed is the key of `{seed}`")]
    Mismatch { jwt: String, seed: String },
    #[error("the credentials' JWT is not valid")]
    Jwt(#[source] super::jwt::JwtError),
}

/// The file text for `jwt` and `seed`.
pub fn format(jwt: &str, seed: &str) -> String {
    format!(
        "{JWT_BEGIN}\n{jwt}\n{JWT_END}\n\n************************* IMPORTANT *************************\nNKEY Seed printed \
         below can be used to sign and prove identity.\nNKEYs are sensitive and should be treated as \
         secrets.\n\n{SEED_BEGIN}\n{seed}\n{SEED_END}\n\n*************************************************************\n"
    )
}

/// A parsed `.creds` file.
pub struct Creds {
    pub jwt: String,
    pub key: KeyPair,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds").field("user", &self.key.public_key()).finish_non_exhaustive()
    }
}

/// Reads a `.creds` file's text: the JWT must be a user JWT for the seed's own key.
pub fn parse(text: &str) -> Result<Creds, CredsError> {
    if text.len() > MAX_CREDS_BYTES {
        return Err(CredsError::TooLong(text.len()));
    }
    let jwt = block(text, JWT_BEGIN, JWT_END).ok_or(CredsError::NoJwt)?;
    let seed = block(text, SEED_BEGIN, SEED_END).ok_or(CredsError::NoSeed)?;
    let key = KeyPair::from_seed(seed).map_err(CredsError::Seed)?;
    if !matches!(key.key_pair_type(), nkeys::KeyPairType::User) {
        return Err(CredsError::Seed(nkeys::error::Error::new(nkeys::error::ErrorKind::InvalidPrefix, None)));
    }
    let claims = super::jwt::decode::<super::jwt::User>(jwt).map_err(CredsError::Jwt)?;
    if claims.sub != key.public_key() {
        return Err(CredsError::Mismatch { jwt: claims.sub, seed: key.public_key() });
    }
    Ok(Creds { jwt: jwt.to_owned(), key })
}

impl Creds {
    /// The JWT and the signature of `nonce` a client sends in its CONNECT (the broker checks the signature
    /// against the JWT's subject).
    pub fn answer(&self, nonce: &[u8]) -> Result<(String, Vec<u8>), CredsError> {
        let signature = self.key.sign(nonce).map_err(CredsError::Seed)?;
        Ok((self.jwt.clone(), signature))
    }
}

/// Reads the `.creds` file at `path` (bounded) and answers `nonce` with it: what a connection's auth callback does
/// at every (re)connect, so a credential renewed on disk is used from the next reconnect on.
pub fn answer_file(path: &std::path::Path, nonce: &[u8]) -> Result<(String, Vec<u8>), String> {
    use std::io::Read as _;
    let fail = |err: &dyn std::fmt::Display| format!("NATS credentials `{}`: {err}", path.display());
    let file = std::fs::File::open(path).map_err(|err| fail(&err))?;
    let mut text = String::new();
    file.take(MAX_CREDS_BYTES as u64 + 1).read_to_string(&mut text).map_err(|err| fail(&err))?;
    parse(&text).and_then(|creds| creds.answer(nonce)).map_err(|err| fail(&err))
}

/// The one non-empty line between `begin` and `end`.
fn block<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let after = &text[text.find(begin)? + begin.len()..];
    let inside = &after[..after.find(end)?];
    let mut lines = inside.lines().map(str::trim).filter(|l| !l.is_empty());
    let value = lines.next()?;
    lines.next().is_none().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::super::jwt::{self, Claims, User};
    use super::*;

    fn creds_for(user: &KeyPair) -> String {
        let account = KeyPair::new_account();
        let claims =
            Claims::new(user.public_key(), "pc-1", 1_700_000_000, None, User::scoped(account.public_key(), vec![]));
        format(&jwt::encode(&claims, &account).unwrap(), &user.seed().unwrap())
    }

    #[test]
    fn a_formatted_file_parses_back_to_its_key() {
        let user = KeyPair::new_user();
        let creds = parse(&creds_for(&user)).unwrap();
        assert_eq!(creds.key.public_key(), user.public_key());
        assert!(creds.jwt.starts_with("eyJ"));
    }

    #[test]
    fn the_file_has_the_blocks_other_nats_clients_look_for() {
        let text = creds_for(&KeyPair::new_user());
        for marker in [JWT_BEGIN, JWT_END, SEED_BEGIN, SEED_END] {
            assert!(text.lines().any(|l| l == marker), "{marker}");
        }
    }

    #[test]
    fn a_seed_of_another_key_or_kind_and_broken_files_are_refused() {
        let user = KeyPair::new_user();
        let text = creds_for(&user);
        let other = KeyPair::new_user().seed().unwrap();
        let swapped = text.replace(&user.seed().unwrap(), &other);
        assert!(matches!(parse(&swapped), Err(CredsError::Mismatch { .. })));
        let account_seed = text.replace(&user.seed().unwrap(), &KeyPair::new_account().seed().unwrap());
        assert!(matches!(parse(&account_seed), Err(CredsError::Seed(_))));
        assert!(matches!(parse(""), Err(CredsError::NoJwt)));
        assert!(matches!(parse(&text.replace(SEED_BEGIN, "")), Err(CredsError::NoSeed)));
        assert!(matches!(parse(&" ".repeat(MAX_CREDS_BYTES + 1)), Err(CredsError::TooLong(_))));
        let two_lines = text.replacen(JWT_BEGIN, &format!("{JWT_BEGIN}\nextra"), 1);
        assert!(matches!(parse(&two_lines), Err(CredsError::NoJwt)));
    }
}
