//! The backend's version, carried inside the binary as `\0KANADE-BACKEND-VERSION:<version>` in a NUL-padded slot
//! and read from there at run time: `/health`, `/api/session` and `--version` tell what the file on disk says, so a
//! package an installer job swapped in reports itself, and a test can relabel a build without compiling another.

use kanade_shared::release::{MARKER_SLOT, slot_version};

/// The bytes in front of the version.
pub const MARKER_PREFIX: &[u8] = b"\0KANADE-BACKEND-VERSION:";

/// The version this build was made as. A release build may set `KANADE_BUILD_VERSION`.
pub const BUILD_VERSION: &str = match option_env!("KANADE_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
const _: () = assert!(BUILD_VERSION.len() < MARKER_SLOT, "the version must fit its slot with a NUL after it");

/// The prefix's length, evaluated at compile time (see [`read`]).
const PREFIX_LEN: usize = MARKER_PREFIX.len();
const MARKER_LEN: usize = PREFIX_LEN + MARKER_SLOT;

/// The marker; `#[used]` and read through a black box, so neither the linker drops it nor the compiler folds the
/// read into the build's constant.
#[used]
pub static VERSION_MARKER: [u8; MARKER_LEN] = kanade_shared::release::marker(MARKER_PREFIX, BUILD_VERSION);

/// The version the marker names now (the build's own when the slot holds nothing plausible).
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| read(std::hint::black_box(&VERSION_MARKER)).unwrap_or(BUILD_VERSION))
}

/// The version in a marker's slot.
fn read(marker: &'static [u8]) -> Option<&'static str> {
    // Skipped by its length, not compared: comparing would put a bare copy of the whole prefix in the binary, which
    // `kanade_shared::release::marker_version` may then read as a second marker with whatever the linker placed
    // after it ("two version markers disagree: 0.1.0 and QWV" in one debug build).
    slot_version(marker.get(PREFIX_LEN..)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_names_the_build_and_a_relabelled_slot_names_its_own() {
        assert_eq!(version(), BUILD_VERSION);
        let relabel = |text: &[u8]| -> &'static [u8] {
            let mut marker = MARKER_PREFIX.to_vec();
            marker.extend_from_slice(text);
            marker.resize(MARKER_LEN, 0);
            Box::leak(marker.into_boxed_slice())
        };
        assert_eq!(read(relabel(b"2.0.0-rc.1+build_7")), Some("2.0.0-rc.1+build_7"));
        for bad in [b"".as_slice(), b"1.0 beta", b"\xff\xfe", &[b'9'; MARKER_SLOT]] {
            assert_eq!(read(relabel(bad)), None, "{bad:?}");
        }
        // The prefix is skipped by its length, not compared (see `read`): it only ever reads this build's marker.
    }
}
