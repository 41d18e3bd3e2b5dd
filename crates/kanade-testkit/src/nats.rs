//! A real `nats-server` child process with JetStream, on a free loopback port, killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The oldest server kanade supports: batch direct get (DESIGN.md) arrived in 2.11.
pub const MIN_VERSION: (u32, u32) = (2, 11);

/// The binary a program obtained for itself ([`use_nats_server_binary`]), over every other place.
static CHOSEN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes every server this process starts run `binary`: for a program, such as the benchmark, that obtained its
/// broker itself. The first call wins.
pub fn use_nats_server_binary(binary: PathBuf) {
    let _ = CHOSEN.set(binary);
}

/// Finds a usable `nats-server`, or panics saying how to get one.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = CHOSEN.get() {
        return path.clone();
    }
    if let Some(path) = std::env::var_os("KANADE_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = root.join(".tools/nats/bin/nats-server");
    if local.exists() {
        return local;
    }
    if let Some(version) = version_of(Path::new("nats-server"))
        && version >= MIN_VERSION
    {
        return PathBuf::from("nats-server");
    }
    panic!(
        "no nats-server >= {}.{} found: run `cargo xtask nats` (installs the pinned one into .tools/) or set \
         KANADE_NATS_SERVER",
        MIN_VERSION.0, MIN_VERSION.1
    );
}

/// `nats-server --version` prints `nats-server: v2.15.1`.
fn version_of(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.rsplit('v').next()?;
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// True when a nats-server answers on `addr`: it sends `INFO` first thing. A bare TCP connect is not proof: with
/// nothing listening on a port in the ephemeral range, a connect can pick that same port as its source and connect
/// to itself, which once let a test go on before its server was up.
fn greets(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).is_ok() && &first == b"INFO"
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// How a server is started: its ports, and whether it is one node of a cluster.
#[derive(Debug, Clone)]
struct Node {
    port: u16,
    /// `jetstream.sync_interval: always`: every acknowledged write is on disk (docs/RELIABILITY.md).
    sync_always: bool,
    /// Server name, cluster name, this node's route port, and every node's route port.
    cluster: Option<(String, String, u16, Vec<u16>)>,
    /// `jetstream.max_file_store`, in bytes: the most the server lets its streams reserve (by default 75% of the
    /// disk that is free when it starts).
    max_store: Option<u64>,
}

pub struct NatsServer {
    binary: PathBuf,
    node: Node,
    store: TempDir,
    child: Option<Running>,
}

/// A server process, reaped by a thread of its own as soon as it exits (as a service manager would), so that a
/// server stopped by someone else — a job's script — is gone rather than a zombie that still answers `kill -0`.
struct Running {
    pid: u32,
    exited: std::sync::Arc<std::sync::Mutex<Option<std::process::ExitStatus>>>,
    reaper: std::thread::JoinHandle<()>,
}

impl Running {
    fn new(mut child: Child) -> Self {
        let exited = std::sync::Arc::new(std::sync::Mutex::new(None));
        let pid = child.id();
        let reaper = std::thread::spawn({
            let exited = exited.clone();
            move || {
                let status = child.wait().ok();
                if let Ok(mut slot) = exited.lock() {
                    *slot = status;
                }
            }
        });
        Self { pid, exited, reaper }
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.exited.lock().ok().and_then(|s| *s)
    }

    fn kill(self) {
        if self.exit_status().is_none() {
            let _ = Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        }
        let _ = self.reaper.join();
    }
}

impl NatsServer {
    /// Starts a JetStream-enabled server on a free port with a fresh store.
    pub fn start() -> Self {
        Self::launch(Node { port: free_port(), sync_always: false, cluster: None, max_store: None })
    }

    /// Like [`NatsServer::start`], configured as docs/RELIABILITY.md asks of a production server: every
    /// acknowledged JetStream write is synced to disk before the ack.
    pub fn start_durable() -> Self {
        Self::launch(Node { port: free_port(), sync_always: true, cluster: None, max_store: None })
    }

    /// Like [`NatsServer::start`], with a store of at most `bytes`, as on a broker with a small or full disk.
    pub fn start_with_max_store(bytes: u64) -> Self {
        Self::launch(Node { port: free_port(), sync_always: false, cluster: None, max_store: Some(bytes) })
    }

    fn launch(node: Node) -> Self {
        let mut server =
            Self { binary: nats_server_binary(), node, store: tempfile::tempdir().expect("temp dir"), child: None };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.node.port)
    }

    pub fn port(&self) -> u16 {
        self.node.port
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// The config file the server runs from.
    pub fn config_file(&self) -> PathBuf {
        self.store.path().join("nats.conf")
    }

    /// Where the server writes its pid (a server started again from [`NatsServer::config_file`] by someone else,
    /// such as a job's script, writes its own there too).
    pub fn pid_file(&self) -> PathBuf {
        self.store.path().join("nats.pid")
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs this server from a copy of its binary at `binary` from now on (effective at the next start).
    pub fn use_binary(&mut self, binary: PathBuf) {
        self.binary = binary;
    }

    fn write_config(&self) {
        let store = self.store.path();
        let quote = |p: &Path| format!("{:?}", p.display().to_string());
        let mut conf = format!(
            "listen: \"127.0.0.1:{port}\"\npid_file: {pid}\nlog_file: {log}\njetstream {{\n  store_dir: {js}\n{sync}}}\n",
            port = self.node.port,
            pid = quote(&self.pid_file()),
            log = quote(&store.join("nats.log")),
            js = quote(&store.join("js")),
            sync = if self.node.sync_always { "  sync_interval: always\n" } else { "" },
        );
        if let Some(bytes) = self.node.max_store {
            let end = conf.rfind("}\n").expect("the jetstream block");
            conf.insert_str(end, &format!("  max_file_store: {bytes}\n"));
        }
        // Operator mode and TLS, as a production broker runs: the test fleet's include (copied beside this config,
        // since nats-server reads includes relative to the including file), with this server's own resolver
        // folder for the account updates it receives (a revocation, say).
        let include = crate::security::fleet().server_include();
        std::fs::copy(&include, store.join("nats-security.conf")).expect("copy the fleet's server include");
        conf.push_str(&format!(
            "include \"nats-security.conf\"\nresolver: {{\n  type: full\n  dir: {}\n  allow_delete: false\n  interval: \"2m\"\n  timeout: \"5s\"\n}}\n",
            quote(&store.join("jwt"))
        ));
        if let Some((server, cluster, route_port, routes)) = &self.node.cluster {
            let routes: Vec<String> = routes.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
            conf.push_str(&format!(
                "server_name: {server}\ncluster {{\n  name: {cluster}\n  listen: \"127.0.0.1:{route_port}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            ));
        }
        std::fs::write(self.config_file(), conf).expect("write nats.conf");
    }

    fn spawn(&mut self) {
        self.write_config();
        let log = self.store.path().join("nats.log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", self.binary.display()));
        self.child = Some(Running::new(child));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.node.port));
        let started = Instant::now();
        while !greets(addr) {
            if let Some(status) = self.child.as_ref().and_then(Running::exit_status) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("nats-server exited with {status} at start:\n{log}");
            }
            assert!(started.elapsed() < Duration::from_secs(15), "nats-server did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL): the harshest stop, as a crash would be. A server someone else started
    /// from this config (its pid is in the pid file) is killed too.
    pub fn kill(&mut self) {
        let own = self.child.take().map(|child| {
            let pid = child.pid;
            child.kill();
            pid
        });
        if let Some(other) = std::fs::read_to_string(self.pid_file()).ok().and_then(|p| p.trim().parse::<u32>().ok())
            && Some(other) != own
        {
            let _ = Command::new("kill").args(["-KILL", &other.to_string()]).status();
        }
    }

    /// The running server's process id (for measuring its memory and CPU).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.pid)
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the server again after [`NatsServer::kill`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is still running");
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of nodes on loopback ports, each with its own store, synced as [`NatsServer::start_durable`].
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and returns once they have elected a JetStream meta leader.
    pub fn start(size: usize) -> Self {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes: Vec<NatsServer> = (0..size)
            .map(|i| {
                let others: Vec<u16> = route_ports.iter().copied().filter(|p| *p != route_ports[i]).collect();
                let cluster = Some((format!("n{}", i + 1), "kanade-test".to_owned(), route_ports[i], others));
                NatsServer::launch(Node { port: free_port(), sync_always: true, cluster, max_store: None })
            })
            .collect();
        Self { nodes }
    }

    /// Every node's URL, comma-separated, as agents, backend and CLI take them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }
}
