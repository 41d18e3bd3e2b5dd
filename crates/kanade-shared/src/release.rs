//! The version marker every kanade agent binary embeds, `\0KANADE-AGENT-VERSION:<version>\0`: how
//! `kanade agent publish` and an updating agent read a binary's version from its bytes, on any OS.

/// The bytes in front of the version.
pub const MARKER_PREFIX: &[u8] = b"\0KANADE-AGENT-VERSION:";

/// The prefix in two halves, joined only at run time by the search: a binary that contains the search (every agent,
/// which checks the binary it updates to) must not carry a bare copy of the whole prefix besides its marker. It did:
/// the linker put the string "Error" right after the bare copy in one debug build, which then read as a second,
/// conflicting version ("two version markers disagree: 0.1.0 and Error").
const PREFIX_HEAD: &[u8] = b"\0KANADE-AGENT-";
const PREFIX_TAIL: &[u8] = b"VERSION:";
const _: () = assert!(PREFIX_HEAD.len() + PREFIX_TAIL.len() == MARKER_PREFIX.len());

/// Two markers in one binary that name different versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two version markers disagree: {0} and {1}")]
pub struct MarkerConflict(pub String, pub String);

/// The version the markers in `bytes` name (`None`: no marker). A prefix not followed by a short, plausible,
/// NUL-terminated version (as in a program that searches for markers) does not count.
pub fn marker_version(bytes: &[u8]) -> Result<Option<String>, MarkerConflict> {
    let mut found: Option<String> = None;
    let prefix = [std::hint::black_box(PREFIX_HEAD), std::hint::black_box(PREFIX_TAIL)].concat();
    // memchr's searcher: an agent binary is tens of MB, and a byte-window scan of that is seconds in a debug build.
    for at in memchr::memmem::find_iter(bytes, &prefix) {
        let tail = &bytes[at + prefix.len()..];
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
    fn the_halves_make_the_prefix() {
        assert_eq!([PREFIX_HEAD, PREFIX_TAIL].concat(), MARKER_PREFIX);
    }

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
