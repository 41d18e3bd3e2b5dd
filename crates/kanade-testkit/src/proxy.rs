//! A loopback TCP proxy a test can cut: a process connected through it loses its peer at once (a network
//! partition) while both ends stay up, and gets it back on [`Proxy::restore`].
//!
//! Hand-written on purpose: it is a few lines of tokio (`copy_bidirectional` per connection), and the proxies
//! offered as crates (toxiproxy and its kin) are separate servers driven over HTTP, or forward bytes without a way
//! to drop every live connection on demand, which is the one thing a partition test needs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Forwards every connection made to [`Proxy::addr`] to its target, until [`Proxy::cut`]. Dropping it stops the
/// listener and closes every connection.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    links: Arc<Mutex<Links>>,
    listener: JoinHandle<()>,
}

/// The live connections, and whether the proxy is cut. One lock over both, so that a connection accepted while
/// [`Proxy::cut`] runs is either closed by the cut or turned away by the flag, never left open.
struct Links {
    cut: bool,
    tasks: JoinSet<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`. Call it inside a tokio runtime: the proxy's
    /// tasks run there.
    pub fn start(target: SocketAddr) -> Self {
        // Bound here, not on a port picked earlier: the port is ours from the first moment.
        let std_listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy on a loopback port");
        std_listener.set_nonblocking(true).expect("make the proxy's listener non-blocking");
        let addr = std_listener.local_addr().expect("the proxy's address");
        let listener = TcpListener::from_std(std_listener).expect("the proxy's listener in tokio");
        let links = Arc::new(Mutex::new(Links { cut: false, tasks: JoinSet::new() }));
        let listener = tokio::spawn(accept(listener, target, links.clone()));
        Self { addr, target, links, listener }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// `<scheme>://127.0.0.1:<port>`, e.g. `url("nats")` for a NATS client.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// The partition: closes every live connection at once, and closes each new one as soon as it is accepted,
    /// until [`Proxy::restore`]. Both ends see their peer go away (EOF or a reset); neither process is touched.
    pub fn cut(&self) {
        let mut links = lock(&self.links);
        links.cut = true;
        // Aborting a connection's task drops both of its sockets, which closes them.
        links.tasks.abort_all();
    }

    /// Ends the partition: new connections are forwarded again. Connections closed by the cut stay closed; the
    /// clients reconnect as they would after any network fault.
    pub fn restore(&self) {
        lock(&self.links).cut = false;
    }

    /// Whether the proxy is cut right now.
    pub fn is_cut(&self) -> bool {
        lock(&self.links).cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
        lock(&self.links).tasks.abort_all();
    }
}

/// A panic while the lock was held (in a test's assertion) leaves the data as valid as it was.
fn lock(links: &Mutex<Links>) -> MutexGuard<'_, Links> {
    links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, target: SocketAddr, links: Arc<Mutex<Links>>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(_) => {
                // Out of file descriptors, most likely: give the system a moment rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut guard = lock(&links);
        // Reap the connections that ended, so the set holds only live ones.
        while guard.tasks.try_join_next().is_some() {}
        if guard.cut {
            // Dropped here: the client is accepted and closed at once, as if the network had eaten the handshake.
            continue;
        }
        guard.tasks.spawn(forward(inbound, target));
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::eventually;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A server that echoes every connection back until its peer closes.
    async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut echoes = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                echoes.spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        (addr, server)
    }

    /// Writes `message` and reads it back through the echo; `None` if the connection fails or closes on the way.
    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(message).await.ok()?;
        let mut back = vec![0; message.len()];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut back)).await.ok()?.ok()?;
        Some(back)
    }

    /// Whether the peer is gone: the socket turns readable with an EOF or an error (a reset), not with bytes.
    async fn peer_gone(stream: &TcpStream) -> bool {
        if tokio::time::timeout(Duration::from_millis(100), stream.readable()).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match stream.try_read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
        }
    }

    /// A fresh connection through the proxy echoes: the proxy forwards.
    async fn forwards(proxy: &Proxy) -> bool {
        let Ok(mut stream) = TcpStream::connect(proxy.addr()).await else { return false };
        round_trip(&mut stream, b"ping").await.as_deref() == Some(b"ping")
    }

    #[tokio::test]
    async fn bytes_pass_both_ways() {
        let (echo, _server) = echo_server().await;
        let proxy = Proxy::start(echo);
        assert_eq!(proxy.target(), echo);
        assert_eq!(proxy.url("nats"), format!("nats://127.0.0.1:{}", proxy.addr().port()));
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&mut stream, b"hello").await.as_deref(), Some(&b"hello"[..]));
        assert_eq!(round_trip(&mut stream, &big).await, Some(big));
    }

    #[tokio::test]
    async fn a_cut_closes_live_connections_and_turns_new_ones_away() {
        let (echo, _server) = echo_server().await;
        let proxy = Proxy::start(echo);
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut live, b"before").await.as_deref(), Some(&b"before"[..]));

        proxy.cut();
        assert!(proxy.is_cut());
        eventually("the live connection sees its peer gone", PATIENCE, || async {
            peer_gone(&live).await.then_some(())
        })
        .await;
        // A connection made during the cut is accepted and closed at once (or refused): nothing comes back.
        match TcpStream::connect(proxy.addr()).await {
            Ok(mut during) => {
                assert_eq!(round_trip(&mut during, b"lost").await, None, "a connection made during the cut echoed");
            }
            Err(refused) => assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}"),
        }

        proxy.restore();
        assert!(!proxy.is_cut());
        eventually("a new connection is forwarded after restore", PATIENCE, || async {
            forwards(&proxy).await.then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_everything_without_hanging() {
        let (echo, _server) = echo_server().await;
        let proxy = Proxy::start(echo);
        let addr = proxy.addr();
        let mut live = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut live, b"x").await.as_deref(), Some(&b"x"[..]));
        tokio::time::timeout(PATIENCE, async move { drop(proxy) }).await.expect("dropping the proxy hung");
        eventually("the live connection sees its peer gone", PATIENCE, || async {
            peer_gone(&live).await.then_some(())
        })
        .await;
        eventually("the listener is closed", PATIENCE, || async {
            TcpStream::connect(addr).await.is_err().then_some(())
        })
        .await;
    }
}
