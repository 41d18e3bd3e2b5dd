//! Rebuilds the backend when the web dashboard's build output changes, so `cargo xtask web` (or `npm run build` in
//! `web/`) followed by a cargo build embeds the new files. rust-embed's `include_bytes!` already makes rustc notice
//! a changed file; a file added or removed needs this.

use std::path::Path;

fn main() {
    // Cargo counts a watched path that does not exist as changed on every build, which would recompile the backend
    // (and everything above it) each time in a tree without a dashboard build. Until `web/dist` exists, watch the
    // folder it will appear in instead.
    let watched = ["../../web/dist", "../../web"].into_iter().find(|path| Path::new(path).exists());
    println!("cargo:rerun-if-changed={}", watched.unwrap_or("build.rs"));
}
