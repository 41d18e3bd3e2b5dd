//! Pure parsers of what each platform's sources print or store, compiled and tested on every OS: the platform
//! collectors (`crate::platform::inventory_*`) only read the files and run the programs.

pub mod dpkg;
pub mod flatpak;
pub mod linux;
pub mod macos;
pub mod rpm;
pub mod snap;
pub mod windows;
