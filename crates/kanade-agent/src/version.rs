//! The agent's version, and the marker that carries it inside the binary itself.

use kanade_shared::release::MARKER_PREFIX;

/// The agent's version, as reported in heartbeats. A release build may set `KANADE_BUILD_VERSION`.
pub const VERSION: &str = match option_env!("KANADE_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

const MARKER_LEN: usize = MARKER_PREFIX.len() + VERSION.len() + 1;

const fn marker() -> [u8; MARKER_LEN] {
    let mut out = [0u8; MARKER_LEN];
    let mut i = 0;
    while i < MARKER_PREFIX.len() {
        out[i] = MARKER_PREFIX[i];
        i += 1;
    }
    let version = VERSION.as_bytes();
    let mut j = 0;
    while j < version.len() {
        out[i + j] = version[j];
        j += 1;
    }
    out
}

/// `\0KANADE-AGENT-VERSION:<version>\0` in the binary itself, where `kanade agent publish` reads the version
/// from (on any OS, for any target); see `kanade_ops::release`. Kept by `#[used]`, and read once at start
/// ([`version_marker`]) so no linker drops it either.
#[used]
pub static VERSION_MARKER: [u8; MARKER_LEN] = marker();

/// The embedded marker, read through a black box so it stays in the binary.
pub fn version_marker() -> &'static [u8] {
    std::hint::black_box(&VERSION_MARKER)
}
