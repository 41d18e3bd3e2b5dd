//! Linux: who sits at the machine, from systemd-logind through `loginctl` (its documented command-line face;
//! logind's files under `/run/systemd` are not a stable interface). The active session of `seat0`, when it is a
//! graphical user session, names the user a `run_as: user` script runs as and the display a `system_gui` one gets.

use std::time::Duration;

use crate::inventory::collect;

/// The user of the machine's active graphical session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    /// The X11 display (`:0`), when logind knows one.
    pub display: Option<String>,
    /// `x11` or `wayland` (or `mir`).
    pub kind: String,
}

/// How long `loginctl` may take (a wedged D-Bus must not hold a run up for long).
const LOGINCTL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most output read from one `loginctl` call.
const LOGINCTL_MAX_BYTES: u64 = 64 * 1024;

/// The user of `seat0`'s active graphical session, if there is one. Blocking.
pub fn active_user() -> Result<Option<SessionUser>, String> {
    let run = |args: &[&str]| {
        collect::run("loginctl", args, LOGINCTL_TIMEOUT, LOGINCTL_MAX_BYTES).map_err(|err| err.to_string())
    };
    // No logind, or no seat (a server, a container): an error that says so, which the run's skip reason shows.
    let seat = run(&["show-seat", "seat0", "--property=ActiveSession", "--no-pager"])?;
    let Some(session) = properties(&seat).find(|(key, _)| *key == "ActiveSession").map(|(_, v)| v.to_owned()) else {
        return Ok(None);
    };
    if session.is_empty() || !session.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Ok(None);
    }
    let shown = run(&[
        "show-session",
        &session,
        "--property=Name",
        "--property=Type",
        "--property=Class",
        "--property=State",
        "--property=Active",
        "--property=Remote",
        "--property=Display",
        "--no-pager",
    ])?;
    Ok(graphical_user(&shown))
}

/// `Key=Value` lines, as `loginctl show-*` prints them.
fn properties(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| line.split_once('='))
}

/// The session `loginctl show-session` described, if it is a local, active, graphical user session.
pub fn graphical_user(show_session: &str) -> Option<SessionUser> {
    let get = |key: &str| properties(show_session).find(|(k, _)| *k == key).map(|(_, v)| v.trim());
    let graphical = matches!(get("Type"), Some("x11" | "wayland" | "mir"));
    let user_class = get("Class") == Some("user");
    let active = get("Active") == Some("yes") && get("State") == Some("active");
    let local = get("Remote") != Some("yes");
    let name = get("Name").filter(|n| kanade_shared::config::is_account_name(n))?;
    (graphical && user_class && active && local).then(|| SessionUser {
        name: name.to_owned(),
        display: get("Display").filter(|d| !d.is_empty()).map(str::to_owned),
        kind: get("Type").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GNOME: &str = "Name=alice\nType=wayland\nClass=user\nState=active\nActive=yes\nRemote=no\nDisplay=\n";

    #[test]
    fn the_active_local_graphical_session_names_its_user() {
        let user = graphical_user(GNOME).unwrap();
        assert_eq!((user.name.as_str(), user.kind.as_str(), user.display), ("alice", "wayland", None));
        let x11 = GNOME.replace("Type=wayland", "Type=x11").replace("Display=\n", "Display=:0\n");
        assert_eq!(graphical_user(&x11).unwrap().display.as_deref(), Some(":0"));
    }

    #[test]
    fn other_sessions_name_nobody() {
        for (from, to) in [
            ("Type=wayland", "Type=tty"),
            ("Class=user", "Class=greeter"),
            ("State=active", "State=online"),
            ("Active=yes", "Active=no"),
            ("Remote=no", "Remote=yes"),
            ("Name=alice", "Name=-rf"),
            ("Name=alice", "Name=a/b"),
            ("Name=alice", "Name="),
        ] {
            assert_eq!(graphical_user(&GNOME.replace(from, to)), None, "{to}");
        }
        assert_eq!(graphical_user(""), None);
        assert_eq!(graphical_user("garbage\n\u{0}\n===\n"), None);
    }
}
