//! Real unprivileged accounts for tests that need another user on the machine (`run_as: user`, who may use
//! kanade-client's socket): made with `useradd`, so the test needs root, as the agent's service runs; removed when
//! dropped. Unix only.

/// A throwaway account and a group of its own it is a supplementary member of.
pub struct TestAccount {
    pub name: String,
    pub group: String,
}

impl TestAccount {
    /// Creates `kt-<tag>-<pid>` (and its group): `tag` tells a test's accounts apart, the process id the processes
    /// that run tests side by side. At most 32 characters, as `useradd` takes them.
    pub fn create(tag: &str) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test creates a real account with useradd and needs root (as the agent's service runs)"
        );
        let suffix = format!("{:06x}", std::process::id() % 0xff_ffff);
        let (name, group) = (format!("kt-{tag}-{suffix}"), format!("kg-{tag}-{suffix}"));
        assert!(name.len() <= 32, "account name `{name}` is too long for useradd");
        let account = TestAccount { name, group };
        account.drop_leftovers();
        run("groupadd", &[&account.group]);
        run("useradd", &["--no-create-home", "--shell", "/bin/sh", "--groups", &account.group, &account.name]);
        account
    }

    fn drop_leftovers(&self) {
        let _ = std::process::Command::new("userdel").arg(&self.name).output();
        let _ = std::process::Command::new("groupdel").arg(&self.group).output();
    }

    pub fn gid_of_group(&self) -> u32 {
        nix::unistd::Group::from_name(&self.group).unwrap().expect("the test group exists").gid.as_raw()
    }

    pub fn uid(&self) -> u32 {
        nix::unistd::User::from_name(&self.name).unwrap().expect("the test user exists").uid.as_raw()
    }

    /// The account's primary group id.
    pub fn gid(&self) -> u32 {
        nix::unistd::User::from_name(&self.name).unwrap().expect("the test user exists").gid.as_raw()
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        self.drop_leftovers();
    }
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("`{program}` cannot run ({err}); this test needs shadow's useradd and root"));
    assert!(output.status.success(), "`{program} {}`: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// An agent with kanade-client's socket, on which `user` counts as the one signed in at its screen (the agent's
/// `run_as_user`); the socket lives in a folder of its own, open for `user` to reach, kept as long as this is.
pub struct ClientAgent {
    pub agent: crate::TestAgent,
    pub socket: std::path::PathBuf,
    _sockets: tempfile::TempDir,
}

impl ClientAgent {
    pub async fn start(url: &str, pc: &str, groups: &[&str], user: &TestAccount) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let sockets = tempfile::tempdir().expect("socket dir");
        std::fs::set_permissions(sockets.path(), std::fs::Permissions::from_mode(0o755)).expect("socket dir mode");
        let socket = sockets.path().join("client.sock");
        let data_dir = tempfile::tempdir().expect("data dir");
        let mut config = crate::agent_config(url, pc, groups, data_dir.path());
        config.run_as_user = Some(user.name.clone());
        config.client_socket = Some(socket.clone());
        let agent = crate::TestAgent::start_with(config, data_dir).await;
        Self { agent, socket, _sockets: sockets }
    }
}
