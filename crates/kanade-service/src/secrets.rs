//! Secrets an installer put aside for a component, outside its config file. On Windows the deploy scripts write
//! them as REG_SZ values of `HKLM\SOFTWARE\Kanade\<role>` (a key whose ACL grants SYSTEM and Administrators only),
//! each named after the environment variable the component reads (`KANADE_NATS_TOKEN`, `KANADE_AUTH_STATIC_TOKEN`,
//! `KANADE_ENROLL_TOKEN`, ...). Elsewhere there are none to read: systemd's `EnvironmentFile=` (a root-owned file
//! of mode 0640) puts them into the environment itself.
//!
//! They fill variables the environment leaves unset, never replace one it sets: an operator's explicit environment
//! is the override, as it is for the config file.

/// The longest value kept: a token, a database URL or a key is far shorter; anything longer is not ours.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// What was found for a role: the values kept, and the names of those left out with the reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Secrets {
    pub values: Vec<(String, String)>,
    pub refused: Vec<(String, String)>,
}

impl Secrets {
    /// Adds one value read from the store, or says why it is left out.
    pub fn offer(&mut self, name: &str, value: Result<String, String>) {
        match value.and_then(|value| check(name, &value).map(|()| value)) {
            Ok(value) => self.values.push((name.to_owned(), value)),
            Err(reason) => self.refused.push((name.to_owned(), reason)),
        }
    }
}

/// A value is kept when its name is a kanade variable (`KANADE_` and upper-case letters, digits, underscores) and
/// it is a short text without NULs; a value the component would not read, or cannot be one of ours, is refused.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    let tail = name.strip_prefix("KANADE_").unwrap_or_default();
    if tail.is_empty()
        || name.len() > 64
        || !tail.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("not a kanade variable (KANADE_ and A-Z, 0-9, _)".to_owned());
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(format!("longer than {MAX_SECRET_BYTES} bytes"));
    }
    if value.contains('\0') {
        return Err("holds a NUL".to_owned());
    }
    Ok(())
}

/// The secrets kept for `role` (`agent`, `backend`) on this machine. A store that does not exist or cannot be read
/// gives none; the reason is in `refused` under the name `*`.
pub fn machine_secrets(role: &str) -> Secrets {
    #[cfg(windows)]
    {
        read_registry(role)
    }
    #[cfg(not(windows))]
    {
        let _ = role;
        Secrets::default()
    }
}

/// Reads the REG_SZ values of `HKLM\SOFTWARE\Kanade\<role>` through `winreg` 0.56 (`open_subkey_with_flags` with
/// KEY_READ, `enum_values`, `String::from_reg_value`). Written against that crate's API; runs on Windows only.
#[cfg(windows)]
fn read_registry(role: &str) -> Secrets {
    use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, REG_SZ};
    use winreg::types::FromRegValue as _;

    let mut secrets = Secrets::default();
    let path = format!(r"SOFTWARE\Kanade\{role}");
    let key = match winreg::RegKey::predef(HKEY_LOCAL_MACHINE).open_subkey_with_flags(&path, KEY_READ) {
        Ok(key) => key,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return secrets,
        Err(err) => {
            secrets.refused.push(("*".to_owned(), format!(r"cannot open HKLM\{path}: {err}")));
            return secrets;
        }
    };
    for entry in key.enum_values() {
        match entry {
            Ok((name, value)) if value.vtype == REG_SZ => {
                secrets.offer(&name, String::from_reg_value(&value).map_err(|err| err.to_string()));
            }
            Ok((name, _)) => secrets.offer(&name, Err("not a REG_SZ value".to_owned())),
            Err(err) => {
                secrets.refused.push(("*".to_owned(), format!(r"cannot read HKLM\{path}: {err}")));
                break;
            }
        }
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_kanade_variables_are_kept() {
        let mut secrets = Secrets::default();
        secrets.offer("KANADE_NATS_TOKEN", Ok("s3cret".into()));
        secrets.offer("KANADE_AUTH_STATIC_TOKEN", Ok("x".repeat(MAX_SECRET_BYTES)));
        for name in ["PATH", "KANADE_", "kanade_nats_token", "KANADE_NATS-TOKEN", "KANADE_Ä", &"KANADE_X".repeat(9)] {
            secrets.offer(name, Ok("v".into()));
        }
        secrets.offer("KANADE_BIG", Ok("x".repeat(MAX_SECRET_BYTES + 1)));
        secrets.offer("KANADE_NUL", Ok("a\0b".into()));
        secrets.offer("KANADE_DWORD", Err("not a REG_SZ value".into()));
        assert_eq!(secrets.values[0], ("KANADE_NATS_TOKEN".to_owned(), "s3cret".to_owned()));
        assert_eq!(secrets.values.len(), 2);
        let refused: Vec<&str> = secrets.refused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(refused.len(), 9, "{refused:?}");
        assert!(secrets.refused.iter().any(|(n, r)| n == "KANADE_DWORD" && r.contains("REG_SZ")));
    }

    #[cfg(not(windows))]
    #[test]
    fn elsewhere_there_is_no_store() {
        assert_eq!(machine_secrets("backend"), Secrets::default());
    }
}
