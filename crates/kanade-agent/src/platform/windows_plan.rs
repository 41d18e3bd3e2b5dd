//! Windows' runs in the console session, decided over plain data: who `run_as` names, the command line and the
//! environment block `CreateProcessAsUserW` is given, and the access rule that opens a run's staging dir to the
//! user. Compiled and tested on every OS; only Windows acts on it (`windows.rs`, `windows_session.rs`).
#![cfg_attr(not(windows), allow(dead_code))]

use kanade_shared::wire::{Reason, RunAs};

use super::{PROTECTED_DIR_SDDL, Unavailable};

/// Who a script runs as on Windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The agent's own account (LocalSystem) in the services' session, with the agent's environment (`system`).
    Agent,
    /// The user signed in at the PC's console, with that user's token, desktop and own environment (`user`).
    SessionUser(ConsoleUser),
    /// The agent's account (LocalSystem) in the console's session, on its desktop, with the agent's environment
    /// (`system_gui`).
    AgentInSession { session: u32 },
}

/// The user signed in at the PC's console when a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    /// The console's session id (`WTSGetActiveConsoleSessionId`).
    pub session: u32,
    /// The user's SID as a string (`S-1-5-21-...`): the staging dir is opened to it, and the token taken when the
    /// script starts must still be its.
    pub sid: String,
}

/// What `WTSGetActiveConsoleSessionId` answers when no session is attached to the console (during a session
/// switch, say).
const NO_CONSOLE_SESSION: u32 = 0xFFFF_FFFF;

/// The console's session, from `WTSGetActiveConsoleSessionId`'s answer: `None` when none is attached. Session 0 is
/// the services' own and never has anyone at the screen.
pub fn attached_session(answer: u32) -> Option<u32> {
    (answer != NO_CONSOLE_SESSION && answer != 0).then_some(answer)
}

/// Resolves `run_as` for a run starting now. `system` is the agent's own account. `user` is whoever is signed in at
/// the PC's console; a configured account (`agent.run_as_user`) is refused, since starting a named account takes
/// its password (`LogonUserW`), which the agent does not have. `system_gui` is the agent's account in the console
/// user's session. Nobody signed in at the console: [`Reason::NoUserSession`]. `console_user` (blocking: it asks
/// the session manager) is asked only when `run_as` needs it.
pub fn decide(
    run_as: &RunAs,
    configured: Option<&str>,
    console_user: impl FnOnce() -> Result<Option<ConsoleUser>, String>,
) -> Result<Identity, Unavailable> {
    let no_session = |message: String| Unavailable { reason: Reason::NoUserSession, message };
    match run_as {
        RunAs::System => return Ok(Identity::Agent),
        RunAs::Unknown => {
            return Err(Unavailable {
                reason: Reason::UnsupportedRunAs,
                message: "this agent does not know the identity the command asks for".to_owned(),
            });
        }
        RunAs::User => {
            if let Some(name) = configured {
                return Err(Unavailable {
                    reason: Reason::UnsupportedRunAs,
                    message: format!(
                        "`agent.run_as_user` (`{name}`) cannot be used on Windows: starting a named account needs its \
                         password (LogonUserW), which the agent does not have; unset it and `user` runs as whoever \
                         is signed in at the PC's screen"
                    ),
                });
            }
        }
        RunAs::SystemGui => {}
    }
    let user = match console_user() {
        Ok(Some(user)) => user,
        Ok(None) => return Err(no_session("nobody is signed in at this PC's screen".to_owned())),
        Err(err) => return Err(no_session(format!("cannot tell who is signed in at this PC's screen: {err}"))),
    };
    if !is_sid(&user.sid) {
        return Err(no_session(format!("the user signed in at this PC's screen has an unexpected SID `{}`", user.sid)));
    }
    Ok(match run_as {
        RunAs::SystemGui => Identity::AgentInSession { session: user.session },
        _ => Identity::SessionUser(user),
    })
}

/// A SID in its string form: `S-1-` and then dash-separated decimal numbers.
fn is_sid(text: &str) -> bool {
    text.strip_prefix("S-1-").is_some_and(|rest| {
        rest.split('-').all(|part| !part.is_empty() && part.len() <= 10 && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Read and execute, nothing more (`FILE_GENERIC_READ | FILE_GENERIC_EXECUTE`): on a directory, list it and enter
/// it; on a file, read it.
const READ_AND_EXECUTE: &str = "0x1200a9";

/// The access rule of a run's staging dir whose script runs as the user `sid`, in SDDL: the agent's own protected
/// rule ([`PROTECTED_DIR_SDDL`]: SYSTEM and Administrators, full access) and read and execute for the user,
/// inherited by the staged files. The user cannot write, rename or delete anything there. `None` for a malformed
/// SID (nothing else may reach the rule).
pub fn staging_sddl(sid: &str) -> Option<String> {
    is_sid(sid).then(|| format!("{PROTECTED_DIR_SDDL}(A;OICI;{READ_AND_EXECUTE};;;{sid})"))
}

/// The command line `CreateProcessAsUserW` is given to run `program` with `args`, quoted as the Rust standard
/// library quotes the agent's own runs, for the MSVCRT rules (`CommandLineToArgvW`, every C runtime): the program
/// always in quotes and unescaped (a path holds no `"`); an argument in quotes when it is empty or holds a space or
/// a tab; inside one, the backslashes before a `"` doubled and the `"` escaped, and the backslashes before the
/// closing quote doubled; other backslashes as they are.
pub fn command_line(program: &str, args: &[String]) -> Result<String, String> {
    if program.contains(['"', '\0']) {
        return Err(format!("the program path `{program}` holds a quote or a NUL"));
    }
    let mut line = format!("\"{program}\"");
    for arg in args {
        if arg.contains('\0') {
            return Err(format!("the argument `{}` holds a NUL", arg.escape_debug()));
        }
        line.push(' ');
        let quote = arg.is_empty() || arg.contains([' ', '\t']);
        if quote {
            line.push('"');
        }
        let mut backslashes = 0;
        for c in arg.chars() {
            match c {
                '\\' => backslashes += 1,
                '"' => {
                    // n backslashes before a quote become 2n + 1: n literal ones and the quote's own escape.
                    line.extend(std::iter::repeat_n('\\', backslashes + 1));
                    backslashes = 0;
                }
                _ => backslashes = 0,
            }
            line.push(c);
        }
        if quote {
            // Doubled before the closing quote, so that they stay backslashes and the quote closes.
            line.extend(std::iter::repeat_n('\\', backslashes));
            line.push('"');
        }
    }
    Ok(line)
}

/// One environment variable as UTF-16, as Windows holds it (not necessarily valid Unicode).
pub type WideVar = (Vec<u16>, Vec<u16>);

const NUL: u16 = 0;
const EQUALS: u16 = b'=' as u16;

/// The variables in a Unicode environment block (`CreateEnvironmentBlock`'s): `name=value` strings, each ended by a
/// NUL, the block by an empty one. A name may begin with `=` (the hidden per-drive directories, `=C:=C:\`); a
/// string without any other `=` is skipped.
pub fn parse_environment_block(block: &[u16]) -> Vec<WideVar> {
    block
        .split(|unit| *unit == NUL)
        .take_while(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let split = entry.iter().skip(1).position(|unit| *unit == EQUALS)? + 1;
            Some((entry[..split].to_vec(), entry[split + 1..].to_vec()))
        })
        .collect()
}

/// The environment block a script starts with: `base` with `extra` set over it (Windows' names are
/// case-insensitive: an `extra` replaces a base variable whatever its case), sorted by name without regard to case
/// as `CreateProcess` expects, each `name=value` ended by a NUL and the block by another. A name that is empty, holds
/// a NUL or an `=` past its first character, or a value holding a NUL, cannot be written: an error.
pub fn environment_block(base: Vec<WideVar>, extra: &[(&str, &str)]) -> Result<Vec<u16>, String> {
    let upper = |name: &[u16]| String::from_utf16_lossy(name).to_uppercase();
    let mut vars = base;
    for (name, value) in extra {
        let name: Vec<u16> = name.encode_utf16().collect();
        let key = upper(&name);
        vars.retain(|(existing, _)| upper(existing) != key);
        vars.push((name, value.encode_utf16().collect()));
    }
    vars.sort_by_cached_key(|(name, _)| upper(name));
    let mut block = Vec::new();
    for (name, value) in &vars {
        let shown = || String::from_utf16_lossy(name);
        if name.is_empty() || name.contains(&NUL) || name.iter().skip(1).any(|unit| *unit == EQUALS) {
            return Err(format!("`{}` cannot be an environment variable's name", shown().escape_debug()));
        }
        if value.contains(&NUL) {
            return Err(format!("the value of `{}` holds a NUL", shown().escape_debug()));
        }
        block.extend_from_slice(name);
        block.push(EQUALS);
        block.extend_from_slice(value);
        block.push(NUL);
    }
    if vars.is_empty() {
        // An empty Unicode block is two NULs: an empty string and the end.
        block.push(NUL);
    }
    block.push(NUL);
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> ConsoleUser {
        ConsoleUser { session: 1, sid: "S-1-5-21-1004336348-1177238915-682003330-1001".to_owned() }
    }

    fn never() -> Result<Option<ConsoleUser>, String> {
        panic!("the console was asked although the identity needs no session")
    }

    #[test]
    fn system_runs_as_the_agent_without_asking_who_is_at_the_screen() {
        assert_eq!(decide(&RunAs::System, None, never), Ok(Identity::Agent));
        assert_eq!(decide(&RunAs::System, Some("kiosk"), never), Ok(Identity::Agent));
    }

    #[test]
    fn user_is_the_console_user_and_system_gui_the_agent_in_that_session() {
        assert_eq!(decide(&RunAs::User, None, || Ok(Some(alice()))), Ok(Identity::SessionUser(alice())));
        assert_eq!(decide(&RunAs::SystemGui, None, || Ok(Some(alice()))), Ok(Identity::AgentInSession { session: 1 }));
        // The configured account concerns `user` only.
        assert_eq!(
            decide(&RunAs::SystemGui, Some("kiosk"), || Ok(Some(alice()))),
            Ok(Identity::AgentInSession { session: 1 })
        );
    }

    #[test]
    fn nobody_at_the_screen_skips_user_and_system_gui_saying_why() {
        for run_as in [RunAs::User, RunAs::SystemGui] {
            let nobody = decide(&run_as, None, || Ok(None)).unwrap_err();
            assert_eq!(nobody.reason, Reason::NoUserSession);
            assert!(nobody.message.contains("nobody is signed in"), "{}", nobody.message);
            let unknown = decide(&run_as, None, || Err("WTSQueryUserToken: access denied".to_owned())).unwrap_err();
            assert_eq!(unknown.reason, Reason::NoUserSession);
            assert!(unknown.message.contains("access denied"), "{}", unknown.message);
        }
    }

    #[test]
    fn a_configured_run_as_user_is_refused_on_windows_saying_why() {
        let refused = decide(&RunAs::User, Some("kiosk"), never).unwrap_err();
        assert_eq!(refused.reason, Reason::UnsupportedRunAs);
        assert!(refused.message.contains("`kiosk`") && refused.message.contains("password"), "{}", refused.message);
    }

    #[test]
    fn an_unknown_identity_is_unsupported() {
        assert_eq!(decide(&RunAs::Unknown, None, never).unwrap_err().reason, Reason::UnsupportedRunAs);
    }

    #[test]
    fn a_malformed_sid_never_reaches_the_staging_rule() {
        let odd = ConsoleUser { session: 1, sid: "S-1-5)(A;;FA;;;WD".to_owned() };
        assert_eq!(decide(&RunAs::User, None, || Ok(Some(odd))).unwrap_err().reason, Reason::NoUserSession);
        for sid in ["", "S-1-", "S-1-5-", "S-1-5--1", "s-1-5-18", "S-1-5-18)(A;;FA;;;WD)", "WD", "S-1-5-12345678901"] {
            assert_eq!(staging_sddl(sid), None, "{sid}");
        }
    }

    #[test]
    fn the_console_session_is_none_when_nothing_is_attached() {
        assert_eq!(attached_session(1), Some(1));
        assert_eq!(attached_session(7), Some(7));
        assert_eq!(attached_session(0xFFFF_FFFF), None);
        assert_eq!(attached_session(0), None, "session 0 is the services' own");
    }

    #[test]
    fn the_staging_rule_adds_read_and_execute_for_the_user_to_the_protected_rule() {
        let sid = alice().sid;
        assert_eq!(
            staging_sddl(&sid).unwrap(),
            format!("D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;{sid})")
        );
        // FILE_GENERIC_READ and FILE_GENERIC_EXECUTE (winnt.h), and none of the write rights.
        let (read_data, read_ea, execute, read_attributes) = (0x1, 0x8, 0x20, 0x80);
        let (read_control, synchronize) = (0x2_0000, 0x10_0000);
        let generic_read = read_control | read_data | read_attributes | read_ea | synchronize;
        let generic_execute = read_control | read_attributes | execute | synchronize;
        assert_eq!(format!("{:#x}", generic_read | generic_execute), READ_AND_EXECUTE);
        let (write_data, append_data, write_ea, delete_child, write_attributes, delete) =
            (0x2, 0x4, 0x10, 0x40, 0x100, 0x1_0000);
        let (write_dac, write_owner) = (0x4_0000, 0x8_0000);
        for write in [write_data, append_data, write_ea, delete_child, write_attributes, delete, write_dac, write_owner]
        {
            assert_eq!((generic_read | generic_execute) & write, 0, "{write:#x}");
        }
    }

    /// Splits the arguments after the (quoted) program as the MSVCRT rules do, for the tests.
    fn parse_msvcrt(line: &str) -> Vec<String> {
        let rest = line.strip_prefix('"').expect("the program is quoted");
        let end = rest.find('"').expect("the program's closing quote");
        let mut chars = rest[end + 1..].chars().peekable();
        let mut args = Vec::new();
        loop {
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_none() {
                return args;
            }
            let (mut arg, mut quoted) = (String::new(), false);
            while let Some(&c) = chars.peek() {
                if !quoted && (c == ' ' || c == '\t') {
                    break;
                }
                chars.next();
                match c {
                    '\\' => {
                        let mut count = 1;
                        while chars.peek() == Some(&'\\') {
                            chars.next();
                            count += 1;
                        }
                        if chars.peek() == Some(&'"') {
                            arg.extend(std::iter::repeat_n('\\', count / 2));
                            if count % 2 == 1 {
                                chars.next();
                                arg.push('"');
                            }
                        } else {
                            arg.extend(std::iter::repeat_n('\\', count));
                        }
                    }
                    '"' => quoted = !quoted,
                    c => arg.push(c),
                }
            }
            args.push(arg);
        }
    }

    #[test]
    fn the_command_line_quotes_as_std_does() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let program = r"C:\Program Files\PowerShell\7\pwsh.exe";
        assert_eq!(
            command_line(program, &args(&["-File", r"C:\ProgramData\kanade\staging\e 1\launcher.ps1"])).unwrap(),
            r#""C:\Program Files\PowerShell\7\pwsh.exe" -File "C:\ProgramData\kanade\staging\e 1\launcher.ps1""#
        );
        assert_eq!(
            command_line("cmd.exe", &args(&["/d", "/c", r"C:\s\script.cmd"])).unwrap(),
            r#""cmd.exe" /d /c C:\s\script.cmd"#
        );
        assert_eq!(command_line("p", &args(&[""])).unwrap(), r#""p" """#);
        assert_eq!(command_line("p", &args(&[r#"a"b"#])).unwrap(), r#""p" a\"b"#);
        assert_eq!(command_line("p", &args(&[r"a\\b c\"])).unwrap(), r#""p" "a\\b c\\""#);
        assert_eq!(command_line("p", &args(&[r#"a\"b"#])).unwrap(), r#""p" a\\\"b"#);
        assert!(command_line("a\"b", &[]).is_err());
        assert!(command_line("p", &args(&["a\0b"])).is_err());
    }

    #[test]
    fn every_argument_comes_back_whole_through_the_msvcrt_rules() {
        let tricky = [
            "",
            " ",
            "plain",
            "two words",
            "tab\there",
            r"C:\path\",
            r"C:\path with space\",
            r"\\server\share\",
            r#"say "hi""#,
            r#"\"#,
            r#"\\"#,
            r#"\""#,
            r#"\\""#,
            r#"a\\\"b"#,
            r#"""#,
            r#""""#,
            "ünïcödé ✓",
            "trailing \\\\",
        ];
        let args: Vec<String> = tricky.iter().map(|s| s.to_string()).collect();
        let line = command_line(r"C:\Windows\System32\cmd.exe", &args).unwrap();
        assert_eq!(parse_msvcrt(&line), args, "{line}");
        for arg in &args {
            let one = command_line("p", std::slice::from_ref(arg)).unwrap();
            assert_eq!(parse_msvcrt(&one), std::slice::from_ref(arg), "{one}");
        }
    }

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    fn shown(block: &[u16]) -> String {
        String::from_utf16_lossy(block).replace('\0', "|")
    }

    #[test]
    fn an_environment_block_parses_to_its_variables() {
        let block =
            wide("=C:=C:\\Users\\alice\0Path=C:\\Windows;C:\\bin\0USERNAME=alice\0EMPTY=\0junk\0\0ignored=1\0\0");
        let vars: Vec<(String, String)> = parse_environment_block(&block)
            .into_iter()
            .map(|(n, v)| (String::from_utf16_lossy(&n), String::from_utf16_lossy(&v)))
            .collect();
        let expected =
            [("=C:", "C:\\Users\\alice"), ("Path", "C:\\Windows;C:\\bin"), ("USERNAME", "alice"), ("EMPTY", "")];
        assert_eq!(vars, expected.map(|(n, v)| (n.to_owned(), v.to_owned())));
        assert!(parse_environment_block(&[0, 0]).is_empty());
        assert!(parse_environment_block(&[]).is_empty());
    }

    #[test]
    fn the_run_variables_are_set_over_the_base_case_insensitively_and_sorted() {
        let base = vec![
            (wide("windir"), wide("C:\\Windows")),
            (wide("Path"), wide("C:\\Windows")),
            (wide("kanade_exec_id"), wide("forged")),
            (wide("APPDATA"), wide("C:\\Users\\alice\\AppData\\Roaming")),
        ];
        let block = environment_block(base, &[("KANADE_EXEC_ID", "e-1"), ("KANADE_JOB_ID", "j-1")]).unwrap();
        assert_eq!(
            shown(&block),
            "APPDATA=C:\\Users\\alice\\AppData\\Roaming|KANADE_EXEC_ID=e-1|KANADE_JOB_ID=j-1|Path=C:\\Windows|\
             windir=C:\\Windows||"
        );
        // What the block says is what it parses back to.
        assert_eq!(parse_environment_block(&block).len(), 5);
        assert_eq!(shown(&environment_block(Vec::new(), &[]).unwrap()), "||");
    }

    #[test]
    fn an_environment_that_cannot_be_written_is_an_error() {
        assert!(environment_block(Vec::new(), &[("A=B", "1")]).is_err());
        assert!(environment_block(Vec::new(), &[("", "1")]).is_err());
        assert!(environment_block(Vec::new(), &[("A", "1\0")]).is_err());
        assert!(environment_block(vec![(wide("=C:"), wide("C:\\"))], &[]).is_ok(), "a hidden drive variable");
    }
}
