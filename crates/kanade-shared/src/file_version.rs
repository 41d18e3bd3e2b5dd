//! The Windows file version (`VS_FIXEDFILEINFO`, four 16-bit words) of a kanade version. The agent's build script
//! embeds it in the `.exe` and `kanade agent publish` compares the embedded one with the version marker, so both
//! use this one rule. This file has no dependencies: `crates/kanade-agent/build.rs` includes it by path.

/// A version as Windows' fixed file info holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    /// major, minor, patch, build.
    pub words: [u16; 4],
    /// The version had a pre-release part (`1.4.0-rc.2`): Windows keeps only the numbers, and the file is flagged
    /// `VS_FF_PRERELEASE`; the whole version is in the `FileVersion` and `ProductVersion` strings.
    pub prerelease: bool,
}

impl FileVersion {
    /// `MAJOR << 48 | MINOR << 32 | PATCH << 16 | BUILD`, as resource compilers take it.
    pub fn packed(&self) -> u64 {
        self.words.iter().fold(0u64, |packed, word| (packed << 16) | u64::from(*word))
    }
}

impl std::fmt::Display for FileVersion {
    /// `major.minor.patch`, and `.build` when it is not 0.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [major, minor, patch, build] = self.words;
        write!(f, "{major}.{minor}.{patch}")?;
        if build != 0 {
            write!(f, ".{build}")?;
        }
        Ok(())
    }
}

/// The file version of `version`: its release part (before any `-pre-release` or `+build`) as one to four numbers,
/// each at most 65535, the missing ones 0. `None` when the release part is not that (`2026.12.6` is; `1.x` or
/// `70000.1` is not): such a version cannot be embedded, and the build says so.
pub fn file_version(version: &str) -> Option<FileVersion> {
    let (release, prerelease) = match version.find(['-', '+']) {
        Some(at) => (&version[..at], version[at..].starts_with('-')),
        None => (version, false),
    };
    let mut words = [0u16; 4];
    let mut parts = release.split('.');
    for word in &mut words {
        match parts.next() {
            Some(part) if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) => *word = part.parse().ok()?,
            Some(_) => return None,
            None => break,
        }
    }
    if release.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(FileVersion { words, prerelease })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions_keep_their_numbers() {
        let v = file_version("1.4.2").unwrap();
        assert_eq!((v.words, v.prerelease, v.to_string()), ([1, 4, 2, 0], false, "1.4.2".to_owned()));
        assert_eq!(v.packed(), 0x0001_0004_0002_0000);
        assert_eq!(file_version("2026.12.6").unwrap().words, [2026, 12, 6, 0]);
        assert_eq!(file_version("1.2.3.4").unwrap().to_string(), "1.2.3.4");
        assert_eq!(file_version("7").unwrap().to_string(), "7.0.0");
    }

    #[test]
    fn pre_releases_keep_their_numbers_and_are_flagged() {
        let rc = file_version("1.4.0-rc.2").unwrap();
        assert_eq!((rc.words, rc.prerelease, rc.to_string()), ([1, 4, 0, 0], true, "1.4.0".to_owned()));
        let built = file_version("1.4.0+git.abc").unwrap();
        assert_eq!((built.words, built.prerelease), ([1, 4, 0, 0], false));
    }

    #[test]
    fn versions_windows_cannot_hold_are_refused() {
        for bad in ["", "1.x", "70000.1", "1.2.3.4.5", "1..2", "-rc.1", ".1", "1.2.", "+1", "v1.2"] {
            assert_eq!(file_version(bad), None, "{bad:?}");
        }
    }
}
