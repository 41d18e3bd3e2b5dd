//! The version marker every kanade agent binary embeds, `\0KANADE-AGENT-VERSION:<version>\0`: how
//! `kanade agent publish` and an updating agent read a binary's version from its bytes, on any OS.

/// The bytes in front of the version.
pub const MARKER_PREFIX: &[u8] = b"\0KANADE-AGENT-VERSION:";

/// Two markers in one binary that name different versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two version markers disagree: {0} and {1}")]
pub struct MarkerConflict(pub String, pub String);

/// The version the markers in `bytes` name (`None`: no marker). A prefix not followed by a short, plausible,
/// NUL-terminated version (as in a program that searches for markers) does not count.
pub fn marker_version(bytes: &[u8]) -> Result<Option<String>, MarkerConflict> {
    let mut found: Option<String> = None;
    // memchr's searcher: an agent binary is tens of MB, and a byte-window scan of that is seconds in a debug build.
    for at in memchr::memmem::find_iter(bytes, MARKER_PREFIX) {
        let tail = &bytes[at + MARKER_PREFIX.len()..];
        if let Some(end) = tail.iter().take(65).position(|b| *b == 0)
            && let Ok(text) = std::str::from_utf8(&tail[..end])
            && !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        {
            match &found {
                Some(seen) if seen != text => return Err(MarkerConflict(seen.clone(), text.to_owned())),
                _ => found = Some(text.to_owned()),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_and_must_agree() {
        let one = [b"junk".as_slice(), MARKER_PREFIX, b"1.2.3\0more"].concat();
        assert_eq!(marker_version(&one).unwrap().as_deref(), Some("1.2.3"));
        let two = [one.as_slice(), MARKER_PREFIX, b"1.2.4\0"].concat();
        assert_eq!(marker_version(&two).unwrap_err().to_string(), "two version markers disagree: 1.2.3 and 1.2.4");
        assert_eq!(marker_version(&[MARKER_PREFIX, b"\xff\xfe"].concat()).unwrap(), None);
        assert_eq!(marker_version(b"").unwrap(), None);
    }
}
