//! Windows: kanade-client's named pipe, `\\.\pipe\kanade-agent`. Its DACL lets SYSTEM in and interactive users
//! (`IU`: signed in at a console or over RDP) read and write data, not create instances of the pipe; network clients
//! are rejected by the pipe itself. Who is on the other end is the client process's token
//! (`GetNamedPipeClientProcessId`, then its token's user SID), and the server refuses everyone but the user signed
//! in at the console. Written against the `windows` 0.62.2 and tokio 1.54.1 sources and type-checked on Linux
//! against them (the windows crate for real, tokio's named-pipe types through copies of their signatures); it has
//! not run on Windows.
#![allow(unsafe_code)] // Every call here is Win32 FFI; each unsafe block says what it relies on.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::AsRawHandle as _;
use std::path::Path;

use kanade_shared::client_ipc::{MAX_CLIENTS, PIPE_NAME};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows::Win32::Foundation::{HANDLE, HLOCAL, LocalFree};
use windows::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, ConvertStringSidToSidW, SDDL_REVISION_1,
};
use windows::Win32::Security::{
    LookupAccountSidW, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY,
};
use windows::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows::Win32::System::Threading::{OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION};
use windows::core::{PCWSTR, PWSTR, w};

use super::windows_session::{OwnedHandle, console_user, token_user_sid};
use super::{LocalUser, Peer, UserKey};

/// A connection from a client.
pub type ClientStream = NamedPipeServer;

/// The pipe's access rule: protected (no inherited entries), SYSTEM all access, interactive users
/// `0x12019b` = FILE_GENERIC_READ | FILE_WRITE_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES. Not GENERIC_WRITE: it
/// holds FILE_APPEND_DATA, which on a pipe is FILE_CREATE_PIPE_INSTANCE (0x4), and with it any interactive user
/// (over RDP, say) could add server instances of the agent's pipe and take the console user's connections. So a
/// client opens the pipe for GENERIC_READ | FILE_WRITE_DATA (docs/CLIENT-IPC.md).
const PIPE_SDDL: PCWSTR = w!("D:P(A;;GA;;;SY)(A;;0x12019b;;;IU)");

/// A security descriptor made by `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed with `LocalFree`.
struct Descriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is an immutable block of memory once made; it is only read (by CreateNamedPipeW).
unsafe impl Send for Descriptor {}
// SAFETY: as above: shared, it is only ever read, and freed once, by the owner's drop.
unsafe impl Sync for Descriptor {}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: the block was LocalAlloc'd by the conversion and is freed once, here.
        let _ = unsafe { LocalFree(Some(HLOCAL(self.0.0))) };
    }
}

/// The listening pipe: one instance waiting for the next client.
pub struct ClientListener {
    next: NamedPipeServer,
    descriptor: Descriptor,
}

impl ClientListener {
    /// Creates the pipe (the path is for Unix sockets; Windows always uses [`PIPE_NAME`]). Fails when another
    /// process made the pipe first (`first_pipe_instance`), so nobody can sit on the name before the agent.
    pub fn bind(_path: &Path) -> io::Result<Self> {
        let mut descriptor = PSECURITY_DESCRIPTOR::default();
        // SAFETY: a constant, valid SDDL string; `descriptor` receives a LocalAlloc'd block, owned by `Descriptor`.
        unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(PIPE_SDDL, SDDL_REVISION_1, &mut descriptor, None)
        }
        .map_err(|err| io::Error::other(format!("ConvertStringSecurityDescriptorToSecurityDescriptorW: {err}")))?;
        let descriptor = Descriptor(descriptor);
        let next = create(&descriptor, true)?;
        Ok(Self { next, descriptor })
    }

    /// The next connection and who made it; a new instance waits for the one after.
    pub async fn accept(&mut self) -> io::Result<(ClientStream, Peer)> {
        self.next.connect().await?;
        let fresh = create(&self.descriptor, false)?;
        let connected = std::mem::replace(&mut self.next, fresh);
        let handle = HANDLE(connected.as_raw_handle());
        let peer = tokio::task::block_in_place(|| client_of(handle))?;
        Ok((connected, peer))
    }
}

fn create(descriptor: &Descriptor, first: bool) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(u32::MAX),
        lpSecurityDescriptor: descriptor.0.0,
        bInheritHandle: false.into(),
    };
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor lives as long as the listener; the call
    // only reads it.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .max_instances(MAX_CLIENTS + 2)
            .create_with_security_attributes_raw(PIPE_NAME, (&raw mut attributes).cast::<c_void>())
    }
}

/// Who the client on `pipe` is: its process's token's user.
fn client_of(pipe: HANDLE) -> io::Result<Peer> {
    let mut pid = 0u32;
    // SAFETY: `pipe` is a connected server end; `pid` is a live local the call writes.
    unsafe { GetNamedPipeClientProcessId(pipe, &mut pid) }
        .map_err(|err| io::Error::other(format!("GetNamedPipeClientProcessId: {err}")))?;
    // SAFETY: plain call; a handle it returns is ours, owned by `OwnedHandle`.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }
        .map_err(|err| io::Error::other(format!("OpenProcess({pid}): {err}")))?;
    // SAFETY: the handle was just opened and is ours.
    let process = unsafe { OwnedHandle::new(process) };
    let mut token = HANDLE::default();
    // SAFETY: `process` is open with query rights; `token` receives a new handle, ours.
    unsafe { OpenProcessToken(process.raw(), TOKEN_QUERY, &mut token) }
        .map_err(|err| io::Error::other(format!("OpenProcessToken: {err}")))?;
    // SAFETY: the handle was just opened and is ours.
    let token = unsafe { OwnedHandle::new(token) };
    let sid = token_user_sid(&token)?;
    let name = account_name(&sid).unwrap_or_else(|| sid.clone());
    Ok(Peer { key: UserKey::sid(&sid), name, pid: Some(pid) })
}

/// `DOMAIN\name` of a SID, if Windows can say.
fn account_name(sid: &str) -> Option<String> {
    let wide: Vec<u16> = sid.encode_utf16().chain(std::iter::once(0)).collect();
    let mut psid = PSID::default();
    // SAFETY: `wide` is NUL-terminated; `psid` receives a LocalAlloc'd SID, freed below.
    unsafe { ConvertStringSidToSidW(PCWSTR(wide.as_ptr()), &mut psid) }.ok()?;
    let (mut name, mut domain) = (vec![0u16; 256], vec![0u16; 256]);
    let (mut name_len, mut domain_len) = (256u32, 256u32);
    let mut kind = SID_NAME_USE::default();
    // SAFETY: both buffers hold as many u16s as their lengths say; `psid` is the valid SID made above.
    let found = unsafe {
        LookupAccountSidW(
            PCWSTR::null(),
            psid,
            Some(PWSTR(name.as_mut_ptr())),
            &mut name_len,
            Some(PWSTR(domain.as_mut_ptr())),
            &mut domain_len,
            &mut kind,
        )
    };
    // SAFETY: `psid` was LocalAlloc'd by ConvertStringSidToSidW and is freed once, here.
    let _ = unsafe { LocalFree(Some(HLOCAL(psid.0))) };
    found.ok()?;
    let name = String::from_utf16_lossy(&name[..name_len as usize]);
    let domain = String::from_utf16_lossy(&domain[..domain_len as usize]);
    Some(if domain.is_empty() { name } else { format!("{domain}\\{name}") })
}

/// The user a client must be: whoever is signed in at the console (a configured account does not apply on
/// Windows). Blocking.
pub fn signed_in_user(_configured: Option<&str>) -> Result<Option<LocalUser>, String> {
    Ok(console_user()?.map(|user| {
        let name = account_name(&user.sid).unwrap_or_else(|| user.sid.clone());
        LocalUser { key: UserKey::sid(&user.sid), name }
    }))
}
