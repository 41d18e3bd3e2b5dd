//! Windows: scripts in the console's session (`run_as: user | system_gui`). The session's user token
//! (`WTSQueryUserToken`), or the agent's own token moved into that session (`system_gui`), starts the script with
//! `CreateProcessAsUserW` on the session's desktop: suspended, put into its run's Job Object, then resumed, so
//! nothing it starts can escape the tree. The job is the agent's, in session 0, and Microsoft documents that a job's
//! processes must all run in its session: if Windows refuses the assignment, the script runs without a tree, and a
//! kill or timeout ends only its first process (see [`spawn`]). Its output comes through anonymous pipes whose child
//! ends are the only handles it inherits; its exit code is read once the process handle is signalled.
//!
//! This file cannot be compiled for Windows on the Linux machines the project is built on. It is written against
//! `windows` 0.62 as locked, and was type-checked on Linux against that crate's sources with their `cfg(windows)`
//! gates lifted (`windows.rs` holds the few lines that need `std::os::windows`); it has never run.
#![allow(unsafe_code)] // Every call here is Win32 FFI; each unsafe block says what it relies on.

use std::ffi::c_void;
use std::io;
use std::path::Path;
use std::sync::Arc;

use windows::Win32::Foundation::{
    CloseHandle, ERROR_NO_TOKEN, GENERIC_READ, HANDLE, HANDLE_FLAG_INHERIT, HLOCAL, LocalFree, SetHandleInformation,
    WAIT_OBJECT_0,
};
use windows::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows::Win32::Security::{
    DuplicateTokenEx, GetTokenInformation, SecurityImpersonation, SetTokenInformation, TOKEN_ADJUST_DEFAULT,
    TOKEN_ADJUST_SESSIONID, TOKEN_ASSIGN_PRIMARY, TOKEN_DUPLICATE, TOKEN_QUERY, TOKEN_USER, TokenPrimary,
    TokenSessionId, TokenUser,
};
use windows::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows::Win32::System::Pipes::CreatePipe;
use windows::Win32::System::RemoteDesktop::{WTSGetActiveConsoleSessionId, WTSQueryUserToken};
use windows::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetCurrentProcess, GetExitCodeProcess, INFINITE,
    InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST, OpenProcessToken,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    STARTUPINFOW, TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};
use windows::core::{HRESULT, HSTRING, PWSTR, w};

use super::windows_plan::{
    ConsoleUser, Identity, WideVar, attached_session, command_line, environment_block, parse_environment_block,
};
use super::{Launch, Process, ProcessKind, Spawned};

/// The desktop a session script's windows appear on: the interactive window station's default desktop.
const DESKTOP: &str = "winsta0\\default";

/// Bytes each output pipe holds before the script's writes wait for the agent to read them.
const PIPE_BUFFER: u32 = 64 * 1024;

/// A kernel handle this code owns, closed when dropped.
#[derive(Debug)]
pub(super) struct OwnedHandle(HANDLE);

// SAFETY: a handle is an index into the process's handle table, valid from any of its threads; nothing here reaches
// memory through it. (The exit waiter uses the process handle on tokio's blocking pool.)
unsafe impl Send for OwnedHandle {}
// SAFETY: as above; every use of a shared one is a kernel call that the kernel serialises.
unsafe impl Sync for OwnedHandle {}

impl OwnedHandle {
    /// # Safety
    /// `handle` is open, owned by the caller, and closed by nothing else.
    pub(super) unsafe fn new(handle: HANDLE) -> Self {
        Self(handle)
    }

    pub(super) fn raw(&self) -> HANDLE {
        self.0
    }

    /// Gives the handle up without closing it: the caller owns it now.
    fn into_raw(self) -> HANDLE {
        let handle = self.0;
        std::mem::forget(self);
        handle
    }
}

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        if !self.0.is_invalid() {
            // SAFETY: the handle is open and ours (`new`'s contract); it is closed once, here.
            let _ = unsafe { CloseHandle(self.0) };
        }
    }
}

/// An error of the Win32 call `call`, saying which.
fn failed(call: &'static str) -> impl FnOnce(windows::core::Error) -> io::Error {
    move |err| io::Error::other(format!("{call}: {err}"))
}

/// The user signed in at the PC's console, if any. Blocking; needs the agent's SeTcbPrivilege (LocalSystem has it).
pub fn console_user() -> Result<Option<ConsoleUser>, String> {
    // SAFETY: no arguments; it reads which session the console is attached to.
    let answer = unsafe { WTSGetActiveConsoleSessionId() };
    let Some(session) = attached_session(answer) else { return Ok(None) };
    let Some(token) = session_user_token(session).map_err(|err| err.to_string())? else { return Ok(None) };
    let sid = token_user_sid(&token).map_err(|err| err.to_string())?;
    Ok(Some(ConsoleUser { session, sid }))
}

/// The primary token of the user signed in at `session`; `None` when nobody is (the sign-in screen).
fn session_user_token(session: u32) -> io::Result<Option<OwnedHandle>> {
    let mut token = HANDLE::default();
    // SAFETY: `token` is a live local the call writes a new handle into, ours to close. Without SeTcbPrivilege the
    // call fails, and says so.
    match unsafe { WTSQueryUserToken(session, &mut token) } {
        // SAFETY: the call succeeded: `token` is a new handle, ours.
        Ok(()) => Ok(Some(unsafe { OwnedHandle::new(token) })),
        Err(err) if err.code() == HRESULT::from_win32(ERROR_NO_TOKEN.0) => Ok(None),
        Err(err) => Err(failed("WTSQueryUserToken")(err)),
    }
}

/// The SID of the user `token` belongs to, as a string (`S-1-5-21-...`).
pub(super) fn token_user_sid(token: &OwnedHandle) -> io::Result<String> {
    let mut size = 0u32;
    // SAFETY: no buffer, only its size asked for; `size` is a live local. The call fails by design
    // (ERROR_INSUFFICIENT_BUFFER) and sets `size`.
    let _ = unsafe { GetTokenInformation(token.raw(), TokenUser, None, 0, &mut size) };
    if size == 0 {
        return Err(io::Error::other("GetTokenInformation(TokenUser) gave no size"));
    }
    // u64s: TOKEN_USER holds a pointer and must be aligned for one.
    let mut buffer = vec![0u64; (size as usize).div_ceil(size_of::<u64>())];
    // SAFETY: `buffer` holds at least `size` bytes, aligned for TOKEN_USER; the call writes at most `size` bytes.
    unsafe { GetTokenInformation(token.raw(), TokenUser, Some(buffer.as_mut_ptr().cast()), size, &mut size) }
        .map_err(failed("GetTokenInformation(TokenUser)"))?;
    // SAFETY: the call filled `buffer` with a TOKEN_USER, whose SID points into `buffer`, alive until the end.
    let user = unsafe { &*buffer.as_ptr().cast::<TOKEN_USER>() };
    let mut text = PWSTR::null();
    // SAFETY: `user.User.Sid` is the valid SID inside `buffer`; `text` receives a LocalAlloc'd string, freed below.
    unsafe { ConvertSidToStringSidW(user.User.Sid, &mut text) }.map_err(failed("ConvertSidToStringSidW"))?;
    // SAFETY: `text` is the NUL-terminated string the call made.
    let sid = unsafe { text.to_string() };
    // SAFETY: `text` was allocated with LocalAlloc by ConvertSidToStringSidW and is not used after this.
    unsafe { LocalFree(Some(HLOCAL(text.0.cast()))) };
    sid.map_err(io::Error::other)
}

/// A primary token for the new process, with the rights CreateProcessAsUserW and CreateEnvironmentBlock need
/// (query, duplicate, assign) and those to move it to another session and set its defaults.
fn duplicate_primary(token: &OwnedHandle) -> io::Result<OwnedHandle> {
    let rights = TOKEN_QUERY | TOKEN_DUPLICATE | TOKEN_ASSIGN_PRIMARY | TOKEN_ADJUST_DEFAULT | TOKEN_ADJUST_SESSIONID;
    let mut copy = HANDLE::default();
    // SAFETY: `token` is open with TOKEN_DUPLICATE; `copy` receives a new handle, ours. No security attributes: the
    // default descriptor, and not inheritable.
    unsafe { DuplicateTokenEx(token.raw(), rights, None, SecurityImpersonation, TokenPrimary, &mut copy) }
        .map_err(failed("DuplicateTokenEx"))?;
    // SAFETY: the call succeeded: `copy` is a new handle, ours.
    Ok(unsafe { OwnedHandle::new(copy) })
}

/// The token `identity`'s script starts with: the console user's own, checked to be still the user the run was
/// resolved (and its staging dir opened) for; or the agent's own moved into the console's session.
fn primary_token(identity: &Identity) -> io::Result<OwnedHandle> {
    match identity {
        Identity::SessionUser(user) => {
            let token = session_user_token(user.session)?.ok_or_else(|| {
                io::Error::other(format!("nobody is signed in at the console session {} any more", user.session))
            })?;
            let now = token_user_sid(&token)?;
            if now != user.sid {
                return Err(io::Error::other(format!(
                    "the console session {} changed hands since the run started: `{now}` is signed in, not `{}`",
                    user.session, user.sid
                )));
            }
            duplicate_primary(&token)
        }
        Identity::AgentInSession { session } => {
            let mut own = HANDLE::default();
            // SAFETY: GetCurrentProcess is a pseudo-handle that needs no closing; `own` receives a new handle, ours.
            unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_DUPLICATE | TOKEN_QUERY, &mut own) }
                .map_err(failed("OpenProcessToken"))?;
            // SAFETY: the call succeeded: `own` is a new handle, ours.
            let own = unsafe { OwnedHandle::new(own) };
            let token = duplicate_primary(&own)?;
            // SAFETY: `token` is a primary token opened with TOKEN_ADJUST_SESSIONID; the value is the u32 `session`,
            // read for its 4 bytes during the call. Changing a token's session needs SeTcbPrivilege, which
            // LocalSystem holds enabled.
            unsafe {
                SetTokenInformation(
                    token.raw(),
                    TokenSessionId,
                    std::ptr::from_ref(session).cast(),
                    size_of::<u32>() as u32,
                )
            }
            .map_err(failed("SetTokenInformation(TokenSessionId)"))?;
            Ok(token)
        }
        Identity::Agent => Err(io::Error::other("the agent's own runs are started through tokio")),
    }
}

/// The environment a session script starts from: the user's own (as Windows builds it at sign-in, nothing of the
/// agent's), or for `system_gui` the agent's own, as its `system` runs get.
fn base_environment(identity: &Identity, token: &OwnedHandle) -> io::Result<Vec<WideVar>> {
    match identity {
        Identity::SessionUser(_) => {
            let mut block: *mut c_void = std::ptr::null_mut();
            // SAFETY: `token` is the user's primary token with TOKEN_QUERY and TOKEN_DUPLICATE; `block` receives a
            // block the call allocates, destroyed below. Not inheriting the agent's environment.
            unsafe { CreateEnvironmentBlock(&mut block, Some(token.raw()), false) }
                .map_err(failed("CreateEnvironmentBlock"))?;
            // SAFETY: the call made `block` a Unicode environment block, alive until destroyed below.
            let vars = unsafe { read_environment_block(block.cast_const().cast()) };
            // SAFETY: `block` came from CreateEnvironmentBlock and is not used after this.
            let _ = unsafe { DestroyEnvironmentBlock(block) };
            Ok(vars)
        }
        _ => Ok(super::imp::agent_environment()),
    }
}

/// The variables of the Unicode environment block at `block`.
///
/// # Safety
/// `block` points at a Unicode environment block: NUL-terminated strings ended by an empty one, so two NULs in a
/// row mark its end; all of it is readable.
unsafe fn read_environment_block(block: *const u16) -> Vec<WideVar> {
    let mut len = 0;
    // SAFETY: the unit after a NUL is read only while that NUL is not the end, so it is inside the block.
    while unsafe { *block.add(len) != 0 || *block.add(len + 1) != 0 } {
        len += 1;
    }
    // SAFETY: `len + 2` units, up to and including the closing pair of NULs, are inside the block.
    parse_environment_block(unsafe { std::slice::from_raw_parts(block, len + 2) })
}

/// An anonymous pipe (read end, write end), neither end inheritable.
fn output_pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let (mut read, mut write) = (HANDLE::default(), HANDLE::default());
    // SAFETY: the out-pointers are live locals; no security attributes, so neither end is inheritable (the child's
    // end is made so just before the child is created, and named in its handle list).
    unsafe { CreatePipe(&mut read, &mut write, None, PIPE_BUFFER) }.map_err(failed("CreatePipe"))?;
    // SAFETY: the call succeeded: both are new handles, ours.
    Ok(unsafe { (OwnedHandle::new(read), OwnedHandle::new(write)) })
}

/// `NUL` opened for reading: the script's input, as `Stdio::null()` gives the agent's own runs.
fn null_input() -> io::Result<OwnedHandle> {
    // SAFETY: a literal NUL-terminated path; no security attributes (not inheritable yet); no template.
    let handle = unsafe {
        CreateFileW(
            w!("NUL"),
            GENERIC_READ.0,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            None,
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            None,
        )
    }
    .map_err(failed("CreateFileW(NUL)"))?;
    // SAFETY: the call succeeded: `handle` is a new handle, ours.
    Ok(unsafe { OwnedHandle::new(handle) })
}

fn make_inheritable(handle: &OwnedHandle) -> io::Result<()> {
    // SAFETY: `handle` is open; only its inherit flag changes.
    unsafe { SetHandleInformation(handle.raw(), HANDLE_FLAG_INHERIT.0, HANDLE_FLAG_INHERIT) }
        .map_err(failed("SetHandleInformation"))
}

/// A process attribute list naming the only handles the child inherits (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`):
/// anything else the agent holds inheritable stays out of it.
struct InheritOnly {
    list: LPPROC_THREAD_ATTRIBUTE_LIST,
    /// The list's memory, pointer-aligned.
    _memory: Vec<usize>,
    /// The attribute's value: the list points at it until deleted.
    handles: Box<[HANDLE]>,
}

impl InheritOnly {
    fn new(handles: Box<[HANDLE]>) -> io::Result<Self> {
        let mut size = 0usize;
        // SAFETY: no list, only the size of one with one attribute asked for; `size` is a live local. The call fails
        // by design (ERROR_INSUFFICIENT_BUFFER) and sets `size`.
        let _ = unsafe { InitializeProcThreadAttributeList(None, 1, None, &mut size) };
        if size == 0 {
            return Err(io::Error::other("InitializeProcThreadAttributeList gave no size"));
        }
        let mut memory = vec![0usize; size.div_ceil(size_of::<usize>())];
        let list = LPPROC_THREAD_ATTRIBUTE_LIST(memory.as_mut_ptr().cast());
        // SAFETY: `memory` holds at least `size` bytes, pointer-aligned; its heap block does not move when the Vec
        // moves into `Self`, and lives until after the list is deleted in `drop`.
        unsafe { InitializeProcThreadAttributeList(Some(list), 1, None, &mut size) }
            .map_err(failed("InitializeProcThreadAttributeList"))?;
        let this = Self { list, _memory: memory, handles };
        // SAFETY: the list is initialised for one attribute; the value is the boxed handle array, which stays in
        // place (in `this`) until the list is deleted.
        unsafe {
            UpdateProcThreadAttribute(
                this.list,
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                Some(this.handles.as_ptr().cast()),
                size_of_val::<[HANDLE]>(&this.handles),
                None,
                None,
            )
        }
        .map_err(failed("UpdateProcThreadAttribute(PROC_THREAD_ATTRIBUTE_HANDLE_LIST)"))?;
        Ok(this)
    }
}

impl Drop for InheritOnly {
    fn drop(&mut self) {
        // SAFETY: the list was initialised in `new` (a `Self` exists only then) and is deleted once, here, before its
        // memory and value are freed.
        unsafe { DeleteProcThreadAttributeList(self.list) };
    }
}

/// NUL-terminated UTF-16, for the calls that take a mutable wide string.
fn wide_nul(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// Starts `launch` as `identity` (the console's user, or the agent in the console's session) in `cwd` with `env`
/// set over its environment: suspended, in its own Job Object where Windows allows it (else `tree: Err`, saying
/// why), then resumed. Blocking: run on tokio's blocking pool.
pub fn spawn(launch: &Launch, cwd: &Path, env: &[(&str, &str)], identity: &Identity) -> io::Result<Spawned> {
    let token = primary_token(identity)?;
    let environment = environment_block(base_environment(identity, &token)?, env).map_err(io::Error::other)?;
    let program = launch
        .program
        .to_str()
        .ok_or_else(|| io::Error::other(format!("the program path `{}` is not Unicode", launch.program.display())))?;
    let mut line = wide_nul(&command_line(program, &launch.args).map_err(io::Error::other)?);
    let mut desktop = wide_nul(DESKTOP);
    let application = HSTRING::from(launch.program.as_os_str());
    let directory = HSTRING::from(cwd.as_os_str());

    let (stdout_read, stdout_write) = output_pipe()?;
    let (stderr_read, stderr_write) = output_pipe()?;
    let input = null_input()?;
    let inherit = InheritOnly::new(Box::new([input.raw(), stdout_write.raw(), stderr_write.raw()]))?;
    let startup = STARTUPINFOEXW {
        StartupInfo: STARTUPINFOW {
            cb: size_of::<STARTUPINFOEXW>() as u32,
            lpDesktop: PWSTR(desktop.as_mut_ptr()),
            dwFlags: STARTF_USESTDHANDLES,
            hStdInput: input.raw(),
            hStdOutput: stdout_write.raw(),
            hStdError: stderr_write.raw(),
            ..STARTUPINFOW::default()
        },
        lpAttributeList: inherit.list,
    };
    let flags = CREATE_SUSPENDED | CREATE_NO_WINDOW | CREATE_UNICODE_ENVIRONMENT | EXTENDED_STARTUPINFO_PRESENT;
    let mut created = PROCESS_INFORMATION::default();
    // Inheritable only from here until they are closed below, a few calls later, and only under the agent's spawn
    // lock: a process the agent started through the standard library meanwhile (which inherits every inheritable
    // handle) would hold a copy of a pipe's write end, and this run's output would then end only when that process
    // does (or its drain grace runs out). Every other spawn of the agent takes the same lock.
    let spawning = super::spawn_lock();
    let result = [&input, &stdout_write, &stderr_write].into_iter().try_for_each(make_inheritable).and_then(|()| {
        // SAFETY: every pointer is to a live local that outlives the call: `token` a primary token with
        // TOKEN_QUERY, TOKEN_DUPLICATE and TOKEN_ASSIGN_PRIMARY; `application` and `directory` NUL-terminated;
        // `line` a mutable NUL-terminated buffer (the call may write into it); `environment` a Unicode block ending
        // in two NULs (hence CREATE_UNICODE_ENVIRONMENT); `startup` a whole STARTUPINFOEXW, passed as a pointer to
        // its first field as the call's type wants it, whose `cb` says it is the extended one
        // (EXTENDED_STARTUPINFO_PRESENT: Windows reads `lpAttributeList` after the STARTUPINFOW), with `desktop`
        // NUL-terminated and an attribute list naming the three inheritable handles it passes; `created` receives
        // two new handles, ours. LocalSystem holds the privileges the call needs.
        unsafe {
            CreateProcessAsUserW(
                Some(token.raw()),
                &application,
                Some(PWSTR(line.as_mut_ptr())),
                None,
                None,
                true,
                flags,
                Some(environment.as_ptr().cast()),
                &directory,
                std::ptr::from_ref(&startup).cast::<STARTUPINFOW>(),
                &mut created,
            )
        }
        .map_err(failed("CreateProcessAsUserW"))
    });
    // The child holds its own copies now (or was not made): the agent's copies of its ends close here, before the
    // lock is let go.
    drop((input, stdout_write, stderr_write, inherit));
    drop(spawning);
    result?;
    // SAFETY: the call succeeded: both are new handles, ours.
    let (process, thread) = unsafe { (OwnedHandle::new(created.hProcess), OwnedHandle::new(created.hThread)) };

    // Suspended, it has not run a single instruction: in its Job Object before it does, nothing can escape. But the
    // job is the agent's, made in session 0, and the process is in the console's session: Microsoft documents that
    // "all processes within a job must run within the same session as the job", and the Windows Research Kernel's
    // AssignProcessToJobObject answers a mismatch with access denied. Whether current Windows still does is not
    // known here (this code has not run on Windows). The run must not fail for it: the script is resumed without a
    // tree, and the executor, given `tree: Err`, warns once for the run (with this reason) and on a kill or timeout
    // ends only the script's first process; what that process started then runs on. (Starting a helper in the
    // user's session to own the job would close that gap; it is not done.)
    let tree = super::imp::ProcessTree::contain(process.raw().0 as isize).map_err(|err| {
        io::Error::other(format!(
            "cannot put the script, in the console's session {}, in a Job Object of the agent's session: {err} \
             (Windows keeps a job's processes in its own session); it runs without one, and a kill or timeout ends \
             only its first process, not what that process started",
            identity_session(identity),
        ))
    });
    // SAFETY: `thread` is the creator's handle (full access) to the suspended main thread.
    if unsafe { ResumeThread(thread.raw()) } == u32::MAX {
        let err = io::Error::last_os_error();
        if let Ok(tree) = &tree {
            tree.kill();
        } else {
            // SAFETY: `process` is the creator's handle (full access) to a process that has not run.
            let _ = unsafe { TerminateProcess(process.raw(), 1) };
        }
        return Err(io::Error::other(format!("ResumeThread: {err}")));
    }
    drop(thread);

    // SAFETY: the read ends are open pipe handles, given up here to the readers, which close them.
    let (stdout, stderr) =
        unsafe { (super::imp::pipe_reader(stdout_read.into_raw()), super::imp::pipe_reader(stderr_read.into_raw())) };
    Ok(Spawned { stdout, stderr, tree, process: Process(ProcessKind::Native(SessionProcess::watch(process))) })
}

/// The console session a session run starts in, for messages.
fn identity_session(identity: &Identity) -> u32 {
    match identity {
        Identity::SessionUser(user) => user.session,
        Identity::AgentInSession { session } => *session,
        // Never started here (`primary_token` refuses it); the services' session.
        Identity::Agent => 0,
    }
}

/// A script started in the console's session: its exit is waited for on tokio's blocking pool (one thread per such
/// running script, as tokio itself reads a child's pipes on Windows). Closing its Job Object ends the process, and
/// with it the wait.
pub struct SessionProcess {
    process: Arc<OwnedHandle>,
    waiter: Option<tokio::task::JoinHandle<io::Result<u32>>>,
    ended: Option<Result<u32, String>>,
}

impl SessionProcess {
    fn watch(process: OwnedHandle) -> Self {
        let process = Arc::new(process);
        let watched = Arc::clone(&process);
        let waiter = tokio::task::spawn_blocking(move || wait_for_exit(&watched));
        Self { process, waiter: Some(waiter), ended: None }
    }

    /// Its exit code, once it has ended. Cancel-safe: the wait goes on in its own task.
    pub async fn wait(&mut self) -> io::Result<Option<i32>> {
        if let Some(waiter) = &mut self.waiter {
            let joined = waiter.await;
            self.waiter = None;
            self.ended = Some(match joined {
                Ok(Ok(code)) => Ok(code),
                Ok(Err(err)) => Err(err.to_string()),
                Err(err) => Err(format!("the wait for the script's end failed: {err}")),
            });
        }
        match &self.ended {
            // As the standard library reads a Windows exit code: its 32 bits as an i32 (NTSTATUS codes negative).
            Some(Ok(code)) => Ok(Some(*code as i32)),
            Some(Err(err)) => Err(io::Error::other(err.clone())),
            None => Err(io::Error::other("the script's end was never waited for")),
        }
    }

    /// Terminates the first process alone (its tree is killed by closing its Job Object).
    pub fn start_kill(&mut self) {
        // SAFETY: `process` is open (kept by `self`) with the creator's full access; terminating a process that has
        // ended already fails, harmlessly.
        let _ = unsafe { TerminateProcess(self.process.raw(), 1) };
    }
}

impl Drop for SessionProcess {
    /// A run dropped before its script ended (the agent stopping) kills it, as tokio's `kill_on_drop` does for the
    /// agent's own runs: its Job Object does the same for the tree, but a script Windows kept out of one would
    /// otherwise run on, and its waiter with it. The handle is still open here, so it names the same process.
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.start_kill();
        }
    }
}

/// Blocks until `process` ends, and returns its exit code.
fn wait_for_exit(process: &OwnedHandle) -> io::Result<u32> {
    // SAFETY: `process` is an open process handle with SYNCHRONIZE, kept open by the caller for the call.
    let event = unsafe { WaitForSingleObject(process.raw(), INFINITE) };
    if event != WAIT_OBJECT_0 {
        return Err(io::Error::other(format!("WaitForSingleObject: {}", io::Error::last_os_error())));
    }
    let mut code = 0u32;
    // SAFETY: `process` is open with PROCESS_QUERY_INFORMATION (the creator's full access); `code` is a live local.
    unsafe { GetExitCodeProcess(process.raw(), &mut code) }.map_err(failed("GetExitCodeProcess"))?;
    Ok(code)
}
