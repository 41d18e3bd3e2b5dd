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

/// A version marker of `N` bytes, built at compile time: `prefix`, then `version`, then NULs to the end (at least
/// one). The agent's is `\0KANADE-AGENT-VERSION:<version>\0`; the backend's keeps room for a longer version.
pub const fn marker<const N: usize>(prefix: &[u8], version: &str) -> [u8; N] {
    let version = version.as_bytes();
    assert!(prefix.len() + version.len() < N, "the marker has no room for the version and its NUL");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < prefix.len() {
        out[i] = prefix[i];
        i += 1;
    }
    let mut j = 0;
    while j < version.len() {
        out[i + j] = version[j];
        j += 1;
    }
    out
}

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
        if let Some(text) = slot_version(&bytes[at + prefix.len()..]) {
            match &found {
                Some(seen) if seen != text => return Err(MarkerConflict(seen.clone(), text.to_owned())),
                _ => found = Some(text.to_owned()),
            }
        }
    }
    Ok(found)
}

/// Room for the version in a marker, NUL-padded: a test or a release tool may relabel a build with a version longer
/// than the one it was built as.
pub const MARKER_SLOT: usize = 64;

/// The version at the start of a marker's slot (the bytes after its prefix): up to the first NUL within
/// [`MARKER_SLOT`] bytes, 1-63 characters of letters, digits and `.-+_`.
pub fn slot_version(slot: &[u8]) -> Option<&str> {
    let end = slot.iter().take(MARKER_SLOT).position(|b| *b == 0)?;
    let text = std::str::from_utf8(&slot[..end]).ok()?;
    let plausible =
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    plausible.then_some(text)
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

    #[test]
    fn a_slot_holds_a_short_plausible_version_ended_by_a_nul() {
        assert_eq!(slot_version(b"2.0.0-rc.1+build_7\0\0junk"), Some("2.0.0-rc.1+build_7"));
        let longest = [[b'9'; MARKER_SLOT - 1].as_slice(), b"\0"].concat();
        assert_eq!(slot_version(&longest).map(str::len), Some(MARKER_SLOT - 1));
        for bad in [b"\0".as_slice(), b"1.0 beta\0", b"\xff\xfe\0", b"1.0.0", &[b'9'; MARKER_SLOT + 1]] {
            assert_eq!(slot_version(bad), None, "{bad:?}");
        }
    }
}
