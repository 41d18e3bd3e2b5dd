//! A real `nats-server` child process with JetStream, on a free loopback port, killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The oldest server kanade supports: batch direct get (DESIGN.md) arrived in 2.11.
pub const MIN_VERSION: (u32, u32) = (2, 11);

/// Finds a usable `nats-server`, or panics saying how to get one.
pub fn nats_server_binary() -> PathBuf {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a JetStream-enabled server on a free port with a fresh store.
    pub fn start() -> Self {
        let binary = nats_server_binary();
        let store = tempfile::tempdir().expect("temp dir");
        let mut server = Self { binary, port: free_port(), store, child: None };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let store = self.store.path().join("js");
        let log = self.store.path().join("nats.log");
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(&store)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{}`: {err}", self.binary.display()));
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while !greets(addr) {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("nats-server exited with {status} at start:\n{log}");
            }
            assert!(started.elapsed() < Duration::from_secs(15), "nats-server did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL): the harshest stop, as a crash would be.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
