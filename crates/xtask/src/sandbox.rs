//! `cargo xtask sandbox`: the whole local system on fixed loopback ports — nats-server with JetStream on 4223,
//! `kanade jetstream setup`, the backend on 8081 serving the dashboard, and one agent named after the host — with
//! state and logs under `.sandbox/`. `--agents N` starts a dev fleet instead: `dev-pc-1` ... `dev-pc-N`, each with
//! its own data dir (`.sandbox/agents/dev-pc-<i>/`) and log (`.sandbox/agent-dev-pc-<i>.log`). The dashboard is
//! built first when Node.js is installed; without it the backend serves a page that says how to build it.
//! Everything runs as production does (issue #18): `kanade security init` makes the fleet's identities in
//! `.sandbox/security/`, the broker runs in operator mode with TLS, the backend and the CLI use their own
//! credentials, and each agent enrols with a token from `kanade enroll create` for a credential of its own.
//! `--smoke` checks it the way a new user would (`echo hello`, `exit 3`, both results and the agent online in the
//! API, `kanade deploy jobs/echo.yaml --wait`; with a fleet, a ping from every agent) and stops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use kanade_shared::PcId;

use crate::{cargo, nats_server, workspace_root};

const NATS_PORT: u16 = 4223;
const BACKEND_PORT: u16 = 8081;
/// The largest dev fleet: each agent is a real process, and this is one developer's machine.
const MAX_AGENTS: usize = 50;

/// What `cargo xtask sandbox` was asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    smoke: bool,
    /// `Some(n)`: a dev fleet of `n` agents named `dev-pc-1` ... `dev-pc-n`; `None`: one agent named after the host.
    agents: Option<usize>,
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        match flag {
            "--smoke" if inline.is_none() => options.smoke = true,
            "--agents" => {
                let value =
                    inline.or_else(|| args.next().cloned()).context("--agents needs a number, e.g. --agents 3")?;
                let count = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_AGENTS).contains(n))
                    .with_context(|| format!("--agents `{value}` is not a number from 1 to {MAX_AGENTS}"))?;
                ensure!(options.agents.is_none(), "--agents is given twice");
                options.agents = Some(count);
            }
            _ => bail!("unknown sandbox option `{arg}` (known: --smoke, --agents N)"),
        }
    }
    Ok(options)
}

/// One agent of the sandbox: its id, data dir and log file.
struct SandboxAgent {
    pc: PcId,
    data_dir: PathBuf,
    log: String,
}

/// The agents to start: one named after the host in `.sandbox/agent`, or the dev fleet.
fn sandbox_agents(dir: &Path, agents: Option<usize>) -> Vec<SandboxAgent> {
    match agents {
        None => {
            let pc = gethostname::gethostname()
                .to_str()
                .and_then(PcId::from_hostname)
                .unwrap_or_else(|| PcId::new("sandbox-pc").expect("valid id"));
            vec![SandboxAgent { pc, data_dir: dir.join("agent"), log: "agent.log".to_owned() }]
        }
        Some(count) => (1..=count)
            .map(|i| {
                let pc = PcId::new(format!("dev-pc-{i}")).expect("valid id");
                SandboxAgent { data_dir: dir.join("agents").join(pc.as_str()), log: format!("agent-{pc}.log"), pc }
            })
            .collect(),
    }
}

struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        // Ask nicely first so the agent and backend flush, then make sure.
        for (_, child) in &self.0 {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (name, child) in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("xtask: {name} did not stop; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs the sandbox; with `--smoke`, returns how many smoke checks passed.
pub fn run(args: &[String]) -> anyhow::Result<usize> {
    let Options { smoke, agents } = parse_options(args)?;
    let nats = nats_server()?;
    let root = workspace_root();
    let dashboard = crate::web::node_available();
    if dashboard {
        crate::web::build()?;
    } else {
        eprintln!("xtask: Node.js 20.19+ not found; the backend will serve a page saying how to build the dashboard");
    }
    cargo(&["build", "--workspace", "--bins", "--locked"], &nats)?;
    let bin = root.join("target/debug");
    let dir = root.join(".sandbox");
    if smoke {
        // A check starts from nothing: agents an earlier run left in the database (another fleet, another host
        // name) would be targets that never answer `deploy --wait`, and their credentials would skip enrolment.
        for sub in ["nats", "backend", "agent", "agents", "security"] {
            let stale = dir.join(sub);
            if stale.exists() {
                std::fs::remove_dir_all(&stale).with_context(|| format!("cannot clear {}", stale.display()))?;
            }
        }
    }
    let fleet = sandbox_agents(&dir, agents);
    for sub in [dir.join("nats"), dir.join("backend")].iter().chain(fleet.iter().map(|agent| &agent.data_dir)) {
        std::fs::create_dir_all(sub).with_context(|| format!("cannot create {}", sub.display()))?;
    }
    for port in [NATS_PORT, BACKEND_PORT] {
        TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("port {port} is in use: is another sandbox running?"))?;
    }

    let nats_url = format!("nats://127.0.0.1:{NATS_PORT}");
    let backend_url = format!("http://127.0.0.1:{BACKEND_PORT}");
    let token = sandbox_token(&dir.join("token"))?;
    // The person starting the sandbox is its admin: an account of their name, and a signing key of their own that
    // the first trust list trusts (issue #19), so the commands they send are signed as production's are.
    let operator = operator_name();
    let signing_key = dir.join("signing.key");
    // The fleet's identities, made once by the real `kanade security init` and kept: the broker runs in operator
    // mode with TLS, the backend and the CLI have credentials of their own, and each agent enrols for its own.
    let security = dir.join("security");
    if !security.join("operator.nk").exists() {
        let created = Command::new(bin.join("kanade"))
            .args(["key", "create", "--force", "--out"])
            .arg(&signing_key)
            .stdin(Stdio::null())
            .output()
            .context("cannot run kanade key create")?;
        ensure!(created.status.success(), "kanade key create failed:\n{}", String::from_utf8_lossy(&created.stderr));
        let public = String::from_utf8_lossy(&created.stdout).trim().to_owned();
        let init = Command::new(bin.join("kanade"))
            .args(["security", "init", "--admin-key", &public, "--admin-name", &operator, "--dir"])
            .arg(&security)
            .stdin(Stdio::null())
            .output()
            .context("cannot run kanade security init")?;
        ensure!(init.status.success(), "kanade security init failed:\n{}", String::from_utf8_lossy(&init.stderr));
    }
    ensure!(
        security.join("trust-root.pub").exists() && signing_key.exists(),
        "{} was made before commands were signed (issue #19): remove {} and start again",
        security.display(),
        dir.display()
    );
    let trust_root = std::fs::read_to_string(security.join("trust-root.pub"))?.trim().to_owned();
    let ca = security.join("ca.pem");

    let mut children = Children(Vec::new());
    let nats_log = log_file(&dir, "nats-server.log")?;
    children.0.push((
        "nats-server",
        Command::new(&nats)
            .arg("-c")
            .arg(nats_config(&dir, &security)?)
            .stdout(nats_log.try_clone()?)
            .stderr(nats_log)
            .spawn()
            .with_context(|| format!("cannot start {}", nats.display()))?,
    ));
    wait_for_port(NATS_PORT, Duration::from_secs(15), &mut children)?;

    let kanade = |args: &[&str]| -> anyhow::Result<Output> {
        Command::new(bin.join("kanade"))
            .args(args)
            .env("KANADE_NATS_URL", &nats_url)
            .env("KANADE_NATS_CREDS", security.join("cli.creds"))
            .env("KANADE_NATS_CA", &ca)
            .env("KANADE_BACKEND_URL", &backend_url)
            .env("KANADE_AUTH_TOKEN", &token)
            .env("KANADE_SIGNING_KEY", &signing_key)
            .stdin(Stdio::null())
            .output()
            .context("cannot run kanade")
    };
    let setup = kanade(&["jetstream", "setup"])?;
    ensure!(setup.status.success(), "jetstream setup failed:\n{}", String::from_utf8_lossy(&setup.stderr));
    // The first trust list, once: the backend's key and the operator's. A restarted sandbox keeps the stored one.
    let root_file = security.join("trust-root.pub").display().to_string();
    if !kanade(&["trust", "show", "--root-file", &root_file])?.status.success() {
        let list = security.join("trust-list.json").display().to_string();
        let pushed = kanade(&["trust", "push", &list, "--root-file", &root_file])?;
        ensure!(pushed.status.success(), "kanade trust push failed:\n{}", String::from_utf8_lossy(&pushed.stderr));
    }

    let backend_log = log_file(&dir, "backend.log")?;
    children.0.push((
        "kanade-backend",
        Command::new(bin.join("kanade-backend"))
            .env("KANADE_LISTEN_ADDR", format!("127.0.0.1:{BACKEND_PORT}"))
            .env("KANADE_NATS_URL", &nats_url)
            .env("KANADE_NATS_CREDS", security.join("backend.creds"))
            .env("KANADE_NATS_CA", &ca)
            .env("KANADE_SECURITY_DIR", &security)
            .env("KANADE_AUTH_STATIC_TOKEN", &token)
            .env("KANADE_BACKEND_DATA_DIR", dir.join("backend"))
            .stdout(backend_log.try_clone()?)
            .stderr(backend_log)
            .spawn()
            .context("cannot start kanade-backend")?,
    ));
    // Agents after the backend listens, so their first heartbeat (core NATS, not stored) finds its projector.
    wait_for_port(BACKEND_PORT, Duration::from_secs(30), &mut children)?;
    let password = sandbox_admin(&bin, &dir, &operator, &signing_key, &backend_url, &token)?;
    // One enrolment token for the agents that have no credential yet, as an operator would hand it to installers.
    let enrolling = fleet.iter().filter(|agent| !agent.data_dir.join("agent.creds").exists()).count();
    let enroll_token = if enrolling == 0 {
        String::new()
    } else {
        let created =
            kanade(&["enroll", "create", "--groups", "sandbox", "--uses", &enrolling.to_string(), "--ttl", "1h"])?;
        ensure!(created.status.success(), "kanade enroll create failed:\n{}", String::from_utf8_lossy(&created.stderr));
        String::from_utf8_lossy(&created.stdout).trim().to_owned()
    };
    for agent in &fleet {
        let agent_log = log_file(&dir, &agent.log)?;
        children.0.push((
            "kanade-agent",
            Command::new(bin.join("kanade-agent"))
                .env("KANADE_AGENT_ID", agent.pc.as_str())
                .env("KANADE_AGENT_GROUPS", "sandbox")
                .env("KANADE_NATS_URL", &nats_url)
                .env("KANADE_NATS_CA", &ca)
                .env("KANADE_ENROLL_TOKEN", &enroll_token)
                .env("KANADE_BOOTSTRAP_CREDS", security.join("bootstrap.creds"))
                .env("KANADE_AGENT_DATA_DIR", &agent.data_dir)
                .env("KANADE_TRUST_ROOT", &trust_root)
                // kanade-client's socket, one per sandbox agent, beside its data dir.
                .env("KANADE_CLIENT_SOCKET", dir.join(format!("{}.sock", agent.pc)))
                .stdout(agent_log.try_clone()?)
                .stderr(agent_log)
                .spawn()
                .context("cannot start kanade-agent")?,
        ));
    }
    let started = Instant::now();
    for agent in &fleet {
        while !kanade(&["ping", agent.pc.as_str()])?.status.success() {
            children.check()?;
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not answer a ping; see .sandbox/{}",
                agent.pc,
                agent.log
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let pc = fleet[0].pc.clone();
    let names: Vec<&str> = fleet.iter().map(|agent| agent.pc.as_str()).collect();
    // Inventory now rather than after the agents' start-up jitter (up to 10 minutes), so the dashboard has it.
    let refresh = kanade(&["inventory", "refresh", "--all"])?;
    ensure!(
        refresh.status.success(),
        "`kanade inventory refresh --all` failed: {}",
        String::from_utf8_lossy(&refresh.stderr)
    );

    if smoke {
        let mut passed = smoke_test(&kanade, pc.as_str(), &token, &root.join("jobs/echo.yaml"), dashboard)?;
        passed += sign_in_smoke(&operator, &password)?;
        if fleet.len() > 1 {
            passed += fleet_smoke(&kanade, &names)?;
        }
        println!("sandbox smoke: {passed} passed, 0 failed");
        return Ok(passed);
    }

    println!(
        "\nkanade sandbox is up (state and logs in {dir}):\n\
         \x20 nats-server  {nats_url}\n\
         \x20 backend      {backend_url}\n\
         \x20 dashboard    {backend_url}/  (sign in as {operator}, password {password}; also in .sandbox/admin-password)\n\
         \x20 agents       {agents}\n\n\
         In another terminal:\n\
         \x20 export PATH=\"{bin}:$PATH\" KANADE_NATS_URL={nats_url} KANADE_BACKEND_URL={backend_url}\n\
         \x20 export KANADE_NATS_CREDS={security}/cli.creds KANADE_NATS_CA={security}/ca.pem\n\
         \x20 export KANADE_CONFIG_DIR={dir}/operator KANADE_SIGNING_KEY={dir}/signing.key\n\
         \x20 kanade login --name {operator}      # the password above; or KANADE_AUTH_TOKEN={token} (bootstrap)\n\
         \x20 kanade whoami\n\
         \x20 kanade run {pc} -- 'echo hello'\n\
         \x20 kanade run {pc} -- 'exit 3'; echo \"exit code $?\"\n\
         \x20 kanade ping {pc}\n\
         \x20 kanade deploy jobs/echo.yaml --wait\n\
         \x20 kanade executions\n\
         \x20 kanade jetstream status\n\
         \x20 curl -H \"Authorization: Bearer {token}\" {backend_url}/api/results\n\
         \x20 curl -H \"Authorization: Bearer {token}\" {backend_url}/api/agents\n\n\
         Ctrl-C stops everything.",
        dir = dir.display(),
        bin = bin.display(),
        security = security.display(),
        agents = names.join(", "),
    );
    let stop = Arc::new(AtomicBool::new(false));
    ctrlc::set_handler({
        let stop = stop.clone();
        move || stop.store(true, Ordering::SeqCst)
    })
    .context("cannot install the Ctrl-C handler")?;
    while !stop.load(Ordering::SeqCst) {
        children.check()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nxtask: stopping the sandbox");
    Ok(0)
}

fn smoke_test(
    kanade: &dyn Fn(&[&str]) -> anyhow::Result<Output>,
    pc: &str,
    token: &str,
    echo_job: &std::path::Path,
    dashboard: bool,
) -> anyhow::Result<usize> {
    let mut passed = 0;
    let (status, page) = http_get(BACKEND_PORT, "/agents", "")?;
    let expected = if dashboard { "id=\"root\"" } else { "cargo xtask web" };
    ensure!(status == 200 && page.contains(expected), "the dashboard at /agents: {status} {page}");
    passed += 1;
    let hello = kanade(&["run", pc, "--", "echo hello"])?;
    ensure!(
        hello.status.code() == Some(0),
        "`echo hello` exited {:?}: {}",
        hello.status,
        String::from_utf8_lossy(&hello.stderr)
    );
    ensure!(hello.stdout == b"hello\n", "`echo hello` printed {:?}", String::from_utf8_lossy(&hello.stdout));
    passed += 1;
    let three = kanade(&["run", pc, "--", "exit 3"])?;
    ensure!(three.status.code() == Some(3), "`exit 3` exited {:?}", three.status);
    passed += 1;

    let started = Instant::now();
    let results = loop {
        let (status, body) = http_get(BACKEND_PORT, &format!("/api/results?pc_id={pc}&limit=2"), token)?;
        ensure!(status == 200, "/api/results answered {status}: {body}");
        if body.contains("\"status\":\"ok\"") && body.contains("\"exit_code\":3") {
            break body;
        }
        ensure!(started.elapsed() < Duration::from_secs(20), "results did not reach /api/results: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(results.contains("hello"), "the ok result lacks its output: {results}");
    passed += 1;
    // Within one heartbeat interval (30 s) of the agent's start, even if its first heartbeat was missed.
    let started = Instant::now();
    loop {
        let (status, agents) = http_get(BACKEND_PORT, &format!("/api/agents/{pc}"), token)?;
        if status == 200 && agents.contains("\"online\":true") {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(45), "agent not online in /api/agents: {status} {agents}");
        std::thread::sleep(Duration::from_millis(200));
    }
    passed += 1;
    let (status, _) = http_get(BACKEND_PORT, "/api/agents", "wrong-token")?;
    ensure!(status == 401, "a wrong token got {status}");
    passed += 1;
    let echo = echo_job.to_string_lossy();
    let deploy = kanade(&["deploy", echo.as_ref(), "--wait"])?;
    ensure!(
        deploy.status.code() == Some(0),
        "`kanade deploy jobs/echo.yaml --wait` exited {:?}: {}",
        deploy.status,
        String::from_utf8_lossy(&deploy.stderr)
    );
    let exec = String::from_utf8_lossy(&deploy.stdout).trim().to_owned();
    let (status, body) = http_get(BACKEND_PORT, &format!("/api/executions/{exec}/results"), token)?;
    ensure!(status == 200 && body.contains("hello from"), "the deployed job's result: {status} {body}");
    passed += 1;
    // This machine's inventory, asked for at start, reaches the API and the CLI.
    let started = Instant::now();
    loop {
        let (status, body) = http_get(BACKEND_PORT, &format!("/api/agents/{pc}/inventory"), token)?;
        if status == 200 && body.contains("\"software\":[{") {
            break;
        }
        ensure!(started.elapsed() < Duration::from_secs(60), "no inventory of {pc}: {status} {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let shown = kanade(&["-o", "json", "inventory", "show", pc])?;
    let inventory: Option<serde_json::Value> = serde_json::from_slice(&shown.stdout).ok();
    ensure!(
        shown.status.success()
            && inventory.as_ref().is_some_and(|i| i["hardware"]["os"]["name"].as_str().is_some_and(|n| !n.is_empty())),
        "`kanade inventory show {pc}` has no OS name: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    passed += 1;
    Ok(passed)
}

/// A dev fleet's check: every agent answers a ping as itself (one check per agent).
fn fleet_smoke(kanade: &dyn Fn(&[&str]) -> anyhow::Result<Output>, names: &[&str]) -> anyhow::Result<usize> {
    for name in names {
        let ping = kanade(&["-o", "json", "ping", name])?;
        let answer: Option<serde_json::Value> = serde_json::from_slice(&ping.stdout).ok();
        ensure!(
            ping.status.success() && answer.as_ref().is_some_and(|a| a["pc_id"] == *name),
            "{name} did not answer a ping as itself: {:?} {} {}",
            ping.status,
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr)
        );
    }
    Ok(names.len())
}

/// A bare HTTP/1.1 GET; the sandbox check needs nothing more and xtask stays free of an HTTP stack.
/// The sandbox admin's name: the OS account's, normalised as kanade names are (`Jane.Doe` -> `jane-doe`).
fn operator_name() -> String {
    let raw = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    kanade_shared::Actor::from_login(&raw).to_string()
}

/// Makes the person starting the sandbox its admin, once: an account `operator` with a random password (kept in
/// `.sandbox/admin-password`) made through the bootstrap token, with their signing key registered. Returns the
/// password.
fn sandbox_admin(
    bin: &Path,
    dir: &Path,
    operator: &str,
    signing_key: &Path,
    backend_url: &str,
    token: &str,
) -> anyhow::Result<String> {
    let password = sandbox_token(&dir.join("admin-password"))?;
    let (status, _) = http_get(BACKEND_PORT, &format!("/api/users/{operator}"), token)?;
    if status == 200 {
        return Ok(password);
    }
    let cli = |args: &[&str], input: &str| -> anyhow::Result<()> {
        let mut child = Command::new(bin.join("kanade"))
            .args(args)
            .env("KANADE_BACKEND_URL", backend_url)
            .env("KANADE_AUTH_TOKEN", token)
            .env("KANADE_SIGNING_KEY", signing_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kanade")?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{input}")?;
        }
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "kanade {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    cli(&["user", "add", operator, "--role", "admin", "--password-stdin"], &password)?;
    let public = Command::new(bin.join("kanade"))
        .args(["key", "show", "--key"])
        .arg(signing_key)
        .stdin(Stdio::null())
        .output()
        .context("cannot run kanade key show")?;
    ensure!(public.status.success(), "kanade key show failed:\n{}", String::from_utf8_lossy(&public.stderr));
    let public = String::from_utf8_lossy(&public.stdout).trim().to_owned();
    cli(&["user", "key", operator, &public], "")?;
    Ok(password)
}

/// The admin signs in with name and password, as the dashboard does, and the session says who they are.
fn sign_in_smoke(operator: &str, password: &str) -> anyhow::Result<usize> {
    let body = format!("{{\"name\":\"{operator}\",\"password\":\"{password}\"}}");
    let (status, answer) = http_request(BACKEND_PORT, "POST", "/api/login", None, Some(&body))?;
    ensure!(status == 200, "signing in as {operator} got {status}: {answer}");
    let session: serde_json::Value = serde_json::from_str(&answer).context("the sign-in answer is not JSON")?;
    let access = session["access_token"].as_str().context("no access_token in the sign-in answer")?;
    let (status, who) = http_get(BACKEND_PORT, "/api/session", access)?;
    ensure!(status == 200 && who.contains("\"admin\""), "the session of {operator}: {status} {who}");
    let (status, _) = http_request(
        BACKEND_PORT,
        "POST",
        "/api/login",
        None,
        Some(&format!("{{\"name\":\"{operator}\",\"password\":\"wrong-password-0\"}}")),
    )?;
    ensure!(status == 401, "a wrong password got {status}");
    Ok(2)
}

fn http_get(port: u16, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    http_request(port, "GET", path, Some(token), None)
}

fn http_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("cannot reach the backend")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = json.unwrap_or_default();
    let kind = if json.is_some() { "Content-Type: application/json\r\n" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

impl Children {
    /// Fails if any child has exited: a sandbox with a dead part is no sandbox.
    fn check(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.0 {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{name} exited ({status}); see its log in .sandbox/");
            }
        }
        Ok(())
    }
}

fn wait_for_port(port: u16, patience: Duration, children: &mut Children) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        children.check()?;
        ensure!(
            started.elapsed() < patience,
            "nothing listens on {addr} after {patience:?}; see the logs in .sandbox/"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The sandbox's nats-server config: loopback only, JetStream in the sandbox dir, and every acknowledged write
/// synced to disk before the ack, as docs/RELIABILITY.md asks of any kanade broker (`deploy/nats-server.conf`).
fn nats_config(dir: &Path, security: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("nats-server.conf");
    let store = dir.join("nats");
    // nats-server reads an include relative to the including file: `security/nats-security.conf` beside it.
    let include = security.strip_prefix(dir).unwrap_or(security).join("nats-security.conf");
    let conf = format!(
        "listen: \"127.0.0.1:{NATS_PORT}\"\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n\
         # Operator mode and TLS, written by `kanade security init`.\ninclude {:?}\n",
        store.display().to_string(),
        include.display().to_string(),
    );
    std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path: PathBuf = dir.join(name);
    std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))
}

/// The sandbox's backend token: made once from the OS's random source and kept in `.sandbox/token`.
fn sandbox_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path)
        && token.trim().len() >= 16
    {
        return Ok(token.trim().to_owned());
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the sandbox token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_options(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        assert_eq!(parse(&[]).unwrap(), Options { smoke: false, agents: None });
        assert_eq!(parse(&["--agents", "3", "--smoke"]).unwrap(), Options { smoke: true, agents: Some(3) });
        assert_eq!(parse(&["--agents=50"]).unwrap().agents, Some(50));
        for (args, want) in [
            (&["--agents"][..], "--agents needs a number"),
            (&["--agents", "0"][..], "--agents `0` is not a number from 1 to 50"),
            (&["--agents", "51"][..], "`51`"),
            (&["--agents", "-1"][..], "`-1`"),
            (&["--agents", "three"][..], "`three`"),
            (&["--agents", "99999999999999999999999"][..], "is not a number"),
            (&["--agents", "2", "--agents", "3"][..], "given twice"),
            (&["--smoke=1"][..], "unknown sandbox option `--smoke=1`"),
            (&["--agent", "3"][..], "unknown sandbox option `--agent`"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_dev_fleet_has_its_own_names_state_and_logs() {
        let dir = Path::new("/s");
        let fleet = sandbox_agents(dir, Some(3));
        let names: Vec<&str> = fleet.iter().map(|a| a.pc.as_str()).collect();
        assert_eq!(names, ["dev-pc-1", "dev-pc-2", "dev-pc-3"]);
        assert_eq!(fleet[1].data_dir, Path::new("/s/agents/dev-pc-2"));
        assert_eq!(fleet[2].log, "agent-dev-pc-3.log");
        let single = sandbox_agents(dir, None);
        assert_eq!(single.len(), 1);
        assert_eq!((single[0].data_dir.as_path(), single[0].log.as_str()), (Path::new("/s/agent"), "agent.log"));
    }
}
