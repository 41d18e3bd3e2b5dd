//! What an agent binary says about itself: its version, OS and architecture, read from the file on any OS, so
//! `kanade agent publish` never takes a label's word for it.
//!
//! - OS and architecture come from the executable's headers (ELF, Mach-O, PE) through the `object` crate.
//! - The version comes from the marker every kanade agent embeds (`\0KANADE-AGENT-VERSION:<version>\0`, see
//!   `kanade_agent::VERSION_MARKER`), and for a Windows `.exe` also from its `VERSIONINFO` resource
//!   (`VS_FIXEDFILEINFO`). When both are there they must agree. Parsing `VS_FIXEDFILEINFO` is done here by hand:
//!   `object` finds the resource but does not decode version blocks, and the fixed part is four little-endian words
//!   behind a signature.

use object::LittleEndian as LE;
use object::read::pe::{ImageNtHeaders, PeFile32, PeFile64, ResourceDirectory};
use object::{Architecture, BinaryFormat, FileKind, Object};

use crate::OpsError;

pub use kanade_shared::release::MARKER_PREFIX;

/// An agent binary's own account of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    pub version: String,
    /// `linux`, `macos` or `windows`.
    pub os: &'static str,
    /// `x86_64`, `aarch64`, `x86`, `arm`.
    pub arch: &'static str,
}

impl BinaryInfo {
    /// The `<os>-<arch>` half of its key in `agent_releases`.
    pub fn platform(&self) -> String {
        format!("{}-{}", self.os, self.arch)
    }
}

fn invalid(message: impl Into<String>) -> OpsError {
    OpsError::Invalid(message.into())
}

/// Reads version, OS and architecture from an executable's bytes.
pub fn inspect(bytes: &[u8]) -> Result<BinaryInfo, OpsError> {
    let file = object::File::parse(bytes).map_err(|e| invalid(format!("not an executable kanade can read: {e}")))?;
    let os = match file.format() {
        BinaryFormat::Elf => "linux",
        BinaryFormat::MachO => "macos",
        BinaryFormat::Pe => "windows",
        other => return Err(invalid(format!("a {other:?} file is not an agent binary for any supported OS"))),
    };
    let arch = match file.architecture() {
        Architecture::X86_64 => "x86_64",
        Architecture::Aarch64 => "aarch64",
        Architecture::I386 => "x86",
        Architecture::Arm => "arm",
        other => return Err(invalid(format!("architecture {other:?} is not supported"))),
    };
    let marked = marker_version(bytes)?;
    let version = if os == "windows" {
        let resource = pe_file_version(bytes)?;
        match (resource, marked) {
            (Some(resource), Some(marked)) if !same_version(&resource, &marked) => {
                return Err(invalid(format!(
                    "the VERSIONINFO resource says {resource} but the embedded marker says {marked}"
                )));
            }
            (_, Some(marked)) => marked,
            // Every agent checks the marker of what it is asked to run as (`kanade_agent::version`): without one,
            // every agent would refuse this binary after it was published.
            (Some(resource), None) => {
                return Err(invalid(format!(
                    "a Windows executable with VERSIONINFO {resource} but no kanade version marker: not a kanade \
                     agent (every agent would refuse it)"
                )));
            }
            (None, None) => {
                return Err(invalid("no VERSIONINFO resource and no kanade version marker: not a kanade agent"));
            }
        }
    } else {
        marked.ok_or_else(|| invalid("no kanade version marker: not a kanade agent (or built without one)"))?
    };
    kanade_shared::manifest::Version::new(&version)
        .map_err(|e| invalid(format!("embedded version `{version}`: {e}")))?;
    Ok(BinaryInfo { version, os, arch })
}

/// Whether the VERSIONINFO file version `resource` is the one the agent's build embeds for `marked`
/// (`kanade_shared::file_version`: `1.2.3` as 1.2.3.0, `1.4.0-rc.2` as 1.4.0.0, flagged pre-release).
fn same_version(resource: &str, marked: &str) -> bool {
    kanade_shared::file_version::file_version(marked).is_some_and(|embedded| embedded.to_string() == resource)
}

fn marker_version(bytes: &[u8]) -> Result<Option<String>, OpsError> {
    kanade_shared::release::marker_version(bytes).map_err(|e| invalid(e.to_string()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The file version of a PE's `VERSIONINFO` resource, if it has one.
fn pe_file_version(bytes: &[u8]) -> Result<Option<String>, OpsError> {
    match FileKind::parse(bytes).map_err(|e| invalid(e.to_string()))? {
        FileKind::Pe64 => version_resource::<object::pe::ImageNtHeaders64>(
            &PeFile64::parse(bytes).map_err(|e| invalid(format!("bad PE file: {e}")))?,
            bytes,
        ),
        FileKind::Pe32 => version_resource::<object::pe::ImageNtHeaders32>(
            &PeFile32::parse(bytes).map_err(|e| invalid(format!("bad PE file: {e}")))?,
            bytes,
        ),
        _ => Ok(None),
    }
}

fn version_resource<Pe: ImageNtHeaders>(
    file: &object::read::pe::PeFile<'_, Pe>,
    bytes: &[u8],
) -> Result<Option<String>, OpsError> {
    let bad = |e: object::read::Error| invalid(format!("bad PE resources: {e}"));
    let sections = file.section_table();
    let Some(directory): Option<ResourceDirectory<'_>> =
        file.data_directories().resource_directory(bytes, &sections).map_err(bad)?
    else {
        return Ok(None);
    };
    // type (RT_VERSION) -> name (usually 1) -> language -> data.
    let root = directory.root().map_err(bad)?;
    let Some(by_type) = root.entries.iter().find(|e| e.name_or_id().id() == Some(object::pe::RT_VERSION)) else {
        return Ok(None);
    };
    let mut entry = by_type.data(directory).map_err(bad)?;
    for _ in 0..2 {
        let Some(table) = entry.table() else { return Ok(None) };
        let Some(first) = table.entries.first() else { return Ok(None) };
        entry = first.data(directory).map_err(bad)?;
    }
    let Some(data) = entry.data() else { return Ok(None) };
    let rva = data.offset_to_data.get(LE);
    let size = data.size.get(LE) as usize;
    let block =
        sections.pe_data_at(bytes, rva).ok_or_else(|| invalid("the VERSIONINFO resource is outside the file"))?;
    Ok(fixed_file_version(&block[..size.min(block.len())]))
}

/// The file version in a `VS_VERSIONINFO` block: the four words of `VS_FIXEDFILEINFO` after its signature,
/// written `major.minor.patch` (and `.build` when it is not 0).
pub fn fixed_file_version(block: &[u8]) -> Option<String> {
    const SIGNATURE: [u8; 4] = 0xFEEF_04BD_u32.to_le_bytes();
    let at = find(block, &SIGNATURE)?;
    let word = |offset: usize| -> Option<u32> {
        let bytes = block.get(at + offset..at + offset + 4)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    };
    // Signature, struct version, then FileVersionMS and FileVersionLS.
    let (ms, ls) = (word(8)?, word(12)?);
    let parts = [ms >> 16, ms & 0xffff, ls >> 16, ls & 0xffff];
    Some(if parts[3] == 0 {
        format!("{}.{}.{}", parts[0], parts[1], parts[2])
    } else {
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[3])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_file_info_is_read_behind_its_signature() {
        let mut block = b"\x34\x03\x34\x00\x00\x00V\x00S\x00_\x00".to_vec();
        block.extend_from_slice(&0xFEEF_04BD_u32.to_le_bytes());
        block.extend_from_slice(&0x0001_0000_u32.to_le_bytes());
        block.extend_from_slice(&43_u32.to_le_bytes()); // 0.43: major 0 in the high word
        block.extend_from_slice(&(2_u32 << 16).to_le_bytes()); // .2.0
        assert_eq!(fixed_file_version(&block).as_deref(), Some("0.43.2"));
        assert_eq!(fixed_file_version(b"no signature here"), None);
        assert_eq!(fixed_file_version(&block[..block.len() - 2]), None, "cut short");
    }

    #[test]
    fn resource_versions_match_the_markers_they_were_built_from() {
        // `fixed_file_version` writes a zero build word as three parts.
        assert!(same_version("1.2.3", "1.2.3") && !same_version("1.2.4", "1.2.3"));
        assert!(same_version("1.4.0", "1.4.0-rc.2"), "a pre-release keeps its numbers");
        assert!(same_version("1.2.3.4", "1.2.3.4") && !same_version("1.2.3", "1.2.3.4"));
        assert!(!same_version("1.2.3", "not-a-version"));
    }

    /// A minimal 64-bit Windows executable with one `.rsrc` section holding a `VERSIONINFO` resource of
    /// `version` (four 16-bit parts), and `extra` bytes after it (e.g. a version marker).
    fn pe_with_version(version: [u16; 4], extra: &[u8]) -> Vec<u8> {
        use object::pe;
        use object::write::pe::{NtHeaders, Writer};
        // VS_VERSIONINFO: lengths, the key, padding, then VS_FIXEDFILEINFO.
        let mut block = Vec::new();
        let key: Vec<u8> = "VS_VERSION_INFO\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        block.extend_from_slice(&0u16.to_le_bytes()); // wLength, set below
        block.extend_from_slice(&52u16.to_le_bytes());
        block.extend_from_slice(&0u16.to_le_bytes());
        block.extend_from_slice(&key);
        while block.len() % 4 != 0 {
            block.push(0);
        }
        let words = [
            0xFEEF_04BD,
            0x0001_0000,
            (u32::from(version[0]) << 16) | u32::from(version[1]),
            (u32::from(version[2]) << 16) | u32::from(version[3]),
        ];
        for word in words.iter().chain([0u32; 9].iter()) {
            block.extend_from_slice(&word.to_le_bytes());
        }
        let length = u16::try_from(block.len()).unwrap();
        block[..2].copy_from_slice(&length.to_le_bytes());

        // Resource tree: type 16 (RT_VERSION) -> name 1 -> language 0x409 -> data entry -> block.
        let directory = |id: u32, target: u32| {
            let mut d = vec![0u8; 12];
            d.extend_from_slice(&0u16.to_le_bytes()); // named entries
            d.extend_from_slice(&1u16.to_le_bytes()); // id entries
            d.extend_from_slice(&id.to_le_bytes());
            d.extend_from_slice(&target.to_le_bytes());
            d
        };
        let (type_at, name_at, entry_at, block_at) = (24u32, 48u32, 72u32, 88u32);
        let size = block_at + u32::try_from(block.len() + extra.len()).unwrap();

        let mut out = Vec::new();
        let mut writer = Writer::new(true, 0x1000, 0x200, &mut out);
        writer.reserve_dos_header_and_stub();
        writer.reserve_nt_headers(16);
        writer.reserve_section_headers(1);
        let rsrc = writer.reserve_rsrc_section(size);
        let mut data = directory(u32::from(pe::RT_VERSION), 0x8000_0000 | type_at);
        data.extend(directory(1, 0x8000_0000 | name_at));
        data.extend(directory(0x409, entry_at));
        data.extend_from_slice(&(rsrc.virtual_address + block_at).to_le_bytes());
        data.extend_from_slice(&u32::from(length).to_le_bytes());
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&block);
        data.extend_from_slice(extra);
        writer.write_dos_header_and_stub().unwrap();
        writer.write_nt_headers(NtHeaders {
            machine: pe::IMAGE_FILE_MACHINE_AMD64,
            time_date_stamp: 0,
            characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE,
            major_linker_version: 14,
            minor_linker_version: 0,
            address_of_entry_point: 0,
            image_base: 0x1_4000_0000,
            major_operating_system_version: 6,
            minor_operating_system_version: 0,
            major_image_version: 0,
            minor_image_version: 0,
            major_subsystem_version: 6,
            minor_subsystem_version: 0,
            subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI,
            dll_characteristics: 0,
            size_of_stack_reserve: 0x10_0000,
            size_of_stack_commit: 0x1000,
            size_of_heap_reserve: 0x10_0000,
            size_of_heap_commit: 0x1000,
        });
        writer.write_section_headers();
        writer.write_section(rsrc.file_offset, &data);
        out
    }

    #[test]
    fn a_windows_exe_is_read_through_its_versioninfo_resource() {
        // VERSIONINFO alone is some other program's: every agent would refuse to run as it.
        let plain = pe_with_version([0, 43, 2, 0], b"");
        let err = inspect(&plain).unwrap_err().to_string();
        assert!(err.contains("VERSIONINFO 0.43.2 but no kanade version marker"), "{err}");
        // With the agent's own marker too: they must agree.
        let marked = pe_with_version([0, 43, 2, 0], &[MARKER_PREFIX, b"0.43.2\0"].concat());
        assert_eq!(inspect(&marked).unwrap(), BinaryInfo { version: "0.43.2".into(), os: "windows", arch: "x86_64" });
        let four = pe_with_version([1, 2, 3, 4], &[MARKER_PREFIX, b"1.2.3.4\0"].concat());
        assert_eq!(inspect(&four).unwrap().version, "1.2.3.4");
        // A pre-release's VERSIONINFO has its numbers only; the marker has the whole version.
        let rc = pe_with_version([1, 4, 0, 0], &[MARKER_PREFIX, b"1.4.0-rc.2\0"].concat());
        assert_eq!(inspect(&rc).unwrap().version, "1.4.0-rc.2");
        let mislabelled = pe_with_version([0, 43, 2, 0], &[MARKER_PREFIX, b"0.44.0\0"].concat());
        let err = inspect(&mislabelled).unwrap_err().to_string();
        assert!(err.contains("VERSIONINFO resource says 0.43.2 but the embedded marker says 0.44.0"), "{err}");
        // Cut anywhere, or with a resource pointing outside the file: an answer or an error, never a panic.
        for cut in (0..plain.len()).step_by(7) {
            let _ = inspect(&plain[..cut]);
        }
        let mut wild = plain.clone();
        let at = wild.windows(4).position(|w| w == 0xFEEF_04BD_u32.to_le_bytes()).unwrap();
        // The data entry's RVA sits 16 bytes before the block, whose signature is 40 bytes in.
        wild[at - 56..at - 52].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = inspect(&wild).unwrap_err().to_string();
        assert!(err.contains("outside the file"), "{err}");
    }

    #[test]
    fn what_is_not_an_executable_is_refused() {
        assert!(inspect(b"#!/bin/sh\necho hi\n").unwrap_err().to_string().contains("not an executable"));
        assert!(inspect(&[]).is_err());
        assert!(inspect(&[0x7f, b'E', b'L', b'F', 2, 1, 1]).is_err(), "a truncated ELF header");
    }
}
