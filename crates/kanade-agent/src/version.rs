//! The agent's version, and the marker that carries it inside the binary itself: `\0KANADE-AGENT-VERSION:<version>`
//! in a NUL-padded slot, read at run time, so heartbeats, `--version` and the self-update's checks tell what the file
//! on disk says and a test can relabel a build without compiling another (as the backend's `version.rs`).

use kanade_shared::release::{MARKER_PREFIX, MARKER_SLOT, slot_version};

/// The version this build was made as. A release build may set `KANADE_BUILD_VERSION`.
pub const BUILD_VERSION: &str = match option_env!("KANADE_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
const _: () = assert!(BUILD_VERSION.len() < MARKER_SLOT, "the version must fit its slot with a NUL after it");

/// The prefix's length, evaluated at compile time (see [`read`]).
const PREFIX_LEN: usize = MARKER_PREFIX.len();
const MARKER_LEN: usize = PREFIX_LEN + MARKER_SLOT;

/// Where `kanade agent publish` reads the version from (on any OS, for any target; see `kanade_ops::release`).
/// Kept by `#[used]`, and read through a black box so no linker drops it and no compiler folds the read.
#[used]
pub static VERSION_MARKER: [u8; MARKER_LEN] = kanade_shared::release::marker(MARKER_PREFIX, BUILD_VERSION);

/// The bytes in front of the fault flag.
pub const FAULT_PREFIX: &[u8] = b"\0KANADE-AGENT-FAULT:";

/// Fault injection for the self-update test: a copy of the binary with `1` after [`FAULT_PREFIX`] exits as soon as
/// it starts, the way a release that rejects the existing config file would (`0` in every build). Setting it needs
/// write access to the binary, which can do anything to it anyway; a release is checked by its SHA-256.
#[used]
pub static FAULT_FLAG: [u8; FAULT_PREFIX.len() + 2] = kanade_shared::release::marker(FAULT_PREFIX, "0");

/// The version the marker names now (the build's own when the slot holds nothing plausible).
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| read(std::hint::black_box(&VERSION_MARKER)).unwrap_or(BUILD_VERSION))
}

/// Whether this copy of the binary was made to fail on purpose (see [`FAULT_FLAG`]).
pub fn broken_on_purpose() -> bool {
    std::hint::black_box(&FAULT_FLAG)[FAULT_PREFIX.len()] == b'1'
}

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
    fn the_marker_names_the_build_and_the_build_is_not_broken() {
        assert_eq!(version(), BUILD_VERSION);
        assert!(!broken_on_purpose());
        assert_eq!(kanade_shared::release::marker_version(&VERSION_MARKER).unwrap().as_deref(), Some(BUILD_VERSION));
    }
}
