//! The live stream of one PC, read from the backend's `GET /api/agents/{pc}/perf/live` (server-sent events) and
//! handed on as [`LiveEvent`]s: every sample decoded leniently and bounded, a malformed event counted and skipped,
//! a stalled or dropped connection made again a few times before giving up with the reason.

use std::time::Duration;

use anyhow::anyhow;
use kanade_shared::api::PerfLiveState;
use kanade_shared::perf::{HostSample, ProcSample};
use tokio::sync::mpsc;

use super::view::{Input, LiveEvent};
use crate::backend::{Backend, Refused};
use crate::sse::{SseItem, SseParser};

/// How the stream is read and kept up.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// No byte (not even a keep-alive comment) for this long and the connection counts as dead.
    pub stall: Duration,
    /// Reconnections in a row before giving up; a connection that delivered an event starts the count again.
    pub reconnects: u32,
    /// The wait before the first reconnection, doubled before each further one.
    pub backoff: Duration,
    /// The longest event (and line) read; longer ones are skipped as malformed.
    pub max_event_bytes: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            // The backend sends a keep-alive well within this; a stream silent this long is not coming back.
            stall: Duration::from_secs(45),
            reconnects: 3,
            backoff: Duration::from_secs(1),
            // A history of 480 samples of a machine with 1024 cores and 64 disks and interfaces, bounded as
            // `kanade_shared::perf` bounds it, stays under 10 MiB.
            max_event_bytes: 16 << 20,
        }
    }
}

/// An event of the stream as the view takes it; `None` for an event this CLI does not know (a newer backend's),
/// which is read past. Samples are bounded here: the CLI trusts the backend no more than the backend the agent.
pub fn decode(name: &str, data: &str) -> Option<LiveEvent> {
    let event = match name {
        "state" => serde_json::from_str::<PerfLiveState>(data).map(LiveEvent::State),
        "history" => serde_json::from_str::<kanade_shared::api::PerfHistoryEvent>(data).map(|mut history| {
            history.samples.truncate(kanade_shared::perf::MAX_HISTORY);
            for sample in &mut history.samples {
                sample.bound();
            }
            if let Some(processes) = &mut history.processes {
                processes.bound();
            }
            LiveEvent::History { samples: history.samples, processes: history.processes }
        }),
        "host" => serde_json::from_str::<HostSample>(data).map(|mut sample| {
            sample.bound();
            LiveEvent::Host(Box::new(sample))
        }),
        "proc" => serde_json::from_str::<ProcSample>(data).map(|mut sample| {
            sample.bound();
            LiveEvent::Proc(Box::new(sample))
        }),
        _ => return None,
    };
    Some(event.unwrap_or(LiveEvent::Malformed))
}

/// Why one connection ended.
enum End {
    /// The view went away: nothing more to do.
    Unwatched,
    /// The connection is gone; the reason, for the message.
    Lost(String),
}

/// Reads the live stream of `path`, from the `first` response the caller opened (a backend that cannot be reached
/// at all, or refuses, is said so before any of this), and sends what it finds to `inputs` until the receiver is
/// dropped (`Ok`), or the backend refuses, or the stream is lost more than `options.reconnects` times in a row
/// (`Err`, with why).
pub async fn follow(
    backend: &Backend,
    path: &str,
    first: reqwest::Response,
    options: &LiveOptions,
    inputs: &mpsc::Sender<Input>,
) -> anyhow::Result<()> {
    let mut response = Some(first);
    let mut attempt = 0;
    loop {
        if let Some(response) = response.take() {
            let mut delivered = false;
            match read(response, options, inputs, &mut delivered).await {
                End::Unwatched => return Ok(()),
                End::Lost(cause) => {
                    if delivered {
                        attempt = 0;
                    }
                    if attempt == options.reconnects {
                        return Err(gave_up(backend, &cause, options.reconnects));
                    }
                    attempt += 1;
                    let notice = LiveEvent::Reconnecting { attempt, of: options.reconnects, cause };
                    if inputs.send(Input::Live(notice)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        tokio::time::sleep(options.backoff * 2_u32.saturating_pow(attempt - 1)).await;
        match backend.open_stream(path).await {
            Ok(opened) => response = Some(opened),
            // A refusal is an answer (the agent was forgotten, too many watch): asking again will not change it.
            Err(err) if err.downcast_ref::<Refused>().is_some() => return Err(err),
            Err(err) => {
                let cause = format!("{err:#}");
                if attempt == options.reconnects {
                    return Err(gave_up(backend, &cause, options.reconnects));
                }
                attempt += 1;
                let notice = LiveEvent::Reconnecting { attempt, of: options.reconnects, cause };
                if inputs.send(Input::Live(notice)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn gave_up(backend: &Backend, cause: &str, reconnects: u32) -> anyhow::Error {
    anyhow!(
        "lost the live stream from the backend at `{}`: {cause} (gave up after {reconnects} reconnections)",
        backend.base()
    )
}

/// Reads one connection until it ends; `delivered` is set once an event was handed on.
async fn read(
    mut response: reqwest::Response,
    options: &LiveOptions,
    inputs: &mpsc::Sender<Input>,
    delivered: &mut bool,
) -> End {
    let mut parser = SseParser::new(options.max_event_bytes);
    let mut items = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(options.stall, response.chunk()).await {
            Err(_) => return End::Lost(format!("nothing came for {}", humantime::format_duration(options.stall))),
            Ok(Err(err)) => return End::Lost(format!("{:#}", anyhow::Error::new(err))),
            Ok(Ok(None)) => return End::Lost("the backend ended the stream".to_owned()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        parser.feed(&chunk, &mut items);
        for item in items.drain(..) {
            let event = match item {
                SseItem::Comment => continue,
                SseItem::Spoiled => LiveEvent::Malformed,
                SseItem::Event { name, data } => match decode(&name, &data) {
                    Some(event) => event,
                    None => continue,
                },
            };
            if inputs.send(Input::Live(event)).await.is_err() {
                return End::Unwatched;
            }
            *delivered = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::Parser as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const HOST: &str = r#"{"pc_id":"pc-1","at":"2026-05-04T12:00:00Z","cpu_percent":12.5}"#;

    #[test]
    fn events_decode_bounded_and_unknown_ones_are_read_past() {
        assert_eq!(
            decode("state", r#"{"state":"live","interval_ms":1000}"#),
            Some(LiveEvent::State(PerfLiveState { state: "live".into(), interval_ms: 1000, message: String::new() }))
        );
        let Some(LiveEvent::Host(sample)) = decode("host", r#"{"pc_id":"pc-1","cpu_percent":1000,"cores":[-1]}"#)
        else {
            panic!("a host sample");
        };
        assert_eq!((sample.cpu_percent, sample.cores.as_slice()), (100.0, &[0.0][..]), "bounded");
        let history = decode("history", &format!(r#"{{"samples":[{HOST},{HOST}],"processes":null}}"#));
        assert!(matches!(history, Some(LiveEvent::History { samples, processes: None }) if samples.len() == 2));
        assert!(matches!(
            decode("proc", r#"{"pc_id":"pc-1","processes":[{"pid":1,"name":"init"}]}"#),
            Some(LiveEvent::Proc(_))
        ));
        assert_eq!(decode("newer_thing", "{}"), None);
        for (name, data) in [
            ("host", "not json"),
            ("host", r#"{"pc_id":"../etc"}"#),
            ("proc", "[]"),
            ("state", "{}"),
            ("history", r#"{"samples":7}"#),
        ] {
            assert_eq!(decode(name, data), Some(LiveEvent::Malformed), "{name}: {data}");
        }
    }

    /// A server on a free port that answers each connection with the next of `bodies`: its head, then its parts
    /// one by one (a part `None` holds the connection open without a byte for a long while), then closes.
    async fn server(bodies: Vec<Vec<Option<String>>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            for parts in bodies {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0_u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    for part in parts {
                        match part {
                            Some(text) => {
                                let _ = socket.write_all(text.as_bytes()).await;
                                let _ = socket.flush().await;
                            }
                            None => tokio::time::sleep(Duration::from_secs(30)).await,
                        }
                    }
                });
            }
            // Dropping the listener here: a further connection is refused.
        });
        (url, served)
    }

    fn backend(url: &str) -> Backend {
        let cli = crate::Cli::parse_from(["kanade", "--backend-url", url, "top", "pc-1"]);
        Backend::new(&cli).unwrap()
    }

    fn options() -> LiveOptions {
        LiveOptions {
            stall: Duration::from_millis(300),
            reconnects: 2,
            backoff: Duration::from_millis(10),
            max_event_bytes: 4096,
        }
    }

    /// Follows the stream until it gives up; returns the events and the error.
    async fn follow_all(url: &str, options: LiveOptions) -> (Vec<LiveEvent>, anyhow::Result<()>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let backend = backend(url);
        let first = backend.open_stream("/live").await.unwrap();
        let result = follow(&backend, "/live", first, &options, &tx).await;
        drop(tx);
        let mut events = Vec::new();
        while let Some(Input::Live(event)) = rx.recv().await {
            events.push(event);
        }
        (events, result)
    }

    fn host_event() -> String {
        format!("event: host\ndata: {HOST}\n\n")
    }

    #[tokio::test]
    async fn hostile_events_are_counted_and_skipped_and_the_stream_goes_on() {
        let oversized = format!("event: host\ndata: {}\n\n", "x".repeat(100_000));
        let body = vec![
            Some(": open\n\n".to_owned()),
            Some("event: host\ndata: {\"pc_id\": 5}\n\n".to_owned()),
            Some(oversized),
            Some("event: host\ndata: \u{0}\u{1b}[2J\n\n".to_owned()),
            Some("event: whatever\ndata: 1\n\n".to_owned()),
            Some(host_event()),
        ];
        let (url, _) = server(vec![body]).await;
        let (events, result) = follow_all(&url, LiveOptions { reconnects: 0, ..options() }).await;
        assert_eq!(events.iter().filter(|e| **e == LiveEvent::Malformed).count(), 3, "{events:?}");
        assert!(matches!(events.last(), Some(LiveEvent::Host(_))), "{events:?}");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("the backend ended the stream") && err.contains("gave up after 0"), "{err}");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_made_again_and_a_lost_one_is_given_up_with_the_reason() {
        // Each connection delivers an event and ends: the count of attempts starts again every time, so the stream
        // goes on for as long as the server answers; the server then stops answering and the CLI gives up.
        let (url, served) = server(vec![vec![Some(host_event())]; 4]).await;
        let (events, result) = follow_all(&url, options()).await;
        assert_eq!(served.load(Ordering::SeqCst), 4);
        assert_eq!(events.iter().filter(|e| matches!(e, LiveEvent::Host(_))).count(), 4);
        let notices: Vec<&LiveEvent> = events.iter().filter(|e| matches!(e, LiveEvent::Reconnecting { .. })).collect();
        assert_eq!(notices.len(), 4 + 1, "after each of the four, and once more when the server was gone: {events:?}");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("cannot reach the backend") && err.contains("gave up after 2 reconnections"), "{err}");
    }

    #[tokio::test]
    async fn a_stream_that_stalls_counts_as_lost() {
        let stalled = vec![Some(": open\n\n".to_owned()), None];
        let (url, served) = server(vec![stalled.clone(), stalled.clone(), stalled]).await;
        let started = std::time::Instant::now();
        let (events, result) = follow_all(&url, options()).await;
        assert_eq!(served.load(Ordering::SeqCst), 3, "the first connection and two reconnections");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(events.len(), 2, "{events:?}");
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("nothing came for 300ms"), "{err}");
    }

    #[tokio::test]
    async fn a_refusal_is_the_backends_message_and_not_an_event_stream_is_an_error() {
        let err = backend("http://127.0.0.1:1").open_stream("/live").await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot reach the backend at `http://127.0.0.1:1`"), "{err:#}");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 4096];
            let _ = socket.read(&mut request).await;
            let body = r#"{"error":{"code":"agent_not_found","message":"no agent `pc-1`"}}"#;
            let head = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
        });
        let err = backend(&url).open_stream("/live").await.unwrap_err();
        let refused = err.downcast_ref::<Refused>().expect("the backend's refusal");
        assert_eq!((refused.code.as_str(), refused.message.as_str()), ("agent_not_found", "no agent `pc-1`"));
        assert_eq!(err.to_string(), "the backend refused (404 Not Found): no agent `pc-1`");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ =
                socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\n\r\nhi").await;
        });
        let err = backend(&url).open_stream("/live").await.unwrap_err();
        assert_eq!(err.to_string(), "the backend's answer to `/live` is not an event stream (it is `text/html`)");
    }

    #[tokio::test]
    async fn a_refusal_on_reconnecting_is_final() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0_u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            let _ = socket.write_all(format!("{head}{}", host_event()).as_bytes()).await;
            drop(socket);
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.read(&mut request).await;
            let body = r#"{"error":{"code":"too_many_watches","message":"too many watch `pc-1`"}}"#;
            let head = format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = socket.write_all(format!("{head}{body}").as_bytes()).await;
        });
        let (events, result) = follow_all(&url, options()).await;
        assert_eq!(events.len(), 2, "the host event and one reconnection: {events:?}");
        let err = result.unwrap_err();
        assert_eq!(err.downcast_ref::<Refused>().map(|r| r.code.as_str()), Some("too_many_watches"));
    }

    #[tokio::test]
    async fn a_view_that_goes_away_ends_the_stream_quietly() {
        let (url, _) = server(vec![vec![Some(host_event()), None]]).await;
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let backend = backend(&url);
        let first = backend.open_stream("/live").await.unwrap();
        assert!(follow(&backend, "/live", first, &options(), &tx).await.is_ok());
    }
}
