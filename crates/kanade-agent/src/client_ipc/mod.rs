//! The agent's side of kanade-client's local IPC (`kanade_shared::client_ipc` is the protocol): the listener, the
//! check of who connects, and one task per client, each bounded so that nothing a client sends can stop the agent or
//! hold up another client. What the clients see of the agent lives in the [`ClientDesk`], which the agent updates
//! and whose changes are pushed to every greeted client.

pub mod session;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use kanade_shared::PcId;
use kanade_shared::client_ipc::{
    self as ipc, AckParams, AgentStatus, CATALOGUE_LIST, CATALOGUE_RUN, DeferParams, FinishedRun, FromAgent,
    HELLO_WITHIN, Hello, MAINTENANCE_CHANGED, MAINTENANCE_DEFER, MAINTENANCE_LIST, MAINTENANCE_RUN_NOW, MAX_CLIENTS,
    MAX_LINE_BYTES, MAX_PENDING_PUSHES, MaintenanceList, NOTIFICATION_NEW, NOTIFICATIONS_ACK, NOTIFICATIONS_LIST,
    NoticeList, Push, RUN_FINISHED, Request, Response, RpcError, RunNowParams, RunParams, STATUS, STATUS_CHANGED,
    ShownNotice,
};
use kanade_shared::subject::{self, SelfService};
use kanade_shared::wire::{CatalogueReply, ExecResult, Notice, SelfServiceAnswer, SelfServiceRun, SelfServiceStarted};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consent::ConsentBook;
use crate::notices::{Held, Notices};
use crate::platform::{self, ClientListener, ClientStream, LocalUser, Peer};
use session::{LineFault, Session, Step};

/// How long one write to a client may take before the client counts as gone.
const WRITE_PATIENCE: Duration = Duration::from_secs(5);
/// How long a self-service request waits for the backend.
const BACKEND_PATIENCE: Duration = Duration::from_secs(5);

/// What the clients see of the agent: its status now, its notifications, and the pushes that tell them what changed.
pub struct ClientDesk {
    status: Mutex<AgentStatus>,
    notices: Arc<Notices>,
    /// Runs held for this PC's user's consent.
    consents: Arc<ConsentBook>,
    /// What the clients were last shown of them.
    shown_pending: Mutex<Option<MaintenanceList>>,
    pushes: broadcast::Sender<Push>,
    /// The agent's connection, once it has one: self-service requests go to the backend through it.
    nats: Mutex<Option<async_nats::Client>>,
}

impl ClientDesk {
    pub fn new(pc_id: PcId, hostname: String, notices: Arc<Notices>, consents: Arc<ConsentBook>) -> Arc<Self> {
        let (pushes, _) = broadcast::channel(MAX_PENDING_PUSHES);
        Arc::new(Self {
            status: Mutex::new(AgentStatus {
                pc_id,
                hostname,
                agent_version: crate::version().to_owned(),
                connected: false,
                running: Vec::new(),
                unread_notifications: 0,
                pending_maintenance: 0,
            }),
            notices,
            consents,
            shown_pending: Mutex::new(None),
            pushes,
            nats: Mutex::new(None),
        })
    }

    /// The connection self-service requests go through (each `serve` of the agent gives its own).
    pub fn attach(&self, client: async_nats::Client) {
        *self.nats.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(client);
    }

    /// Asks the backend `what` for this PC's user; its answer, or why there is none.
    async fn ask_backend<T: serde::de::DeserializeOwned>(
        &self,
        what: SelfService,
        body: Vec<u8>,
    ) -> Result<T, RpcError> {
        let unavailable = |why: String| RpcError::refused("catalogue_unavailable", why);
        let client = self.nats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(client) = client else { return Err(unavailable("the agent is not connected yet".into())) };
        let pc = self.status().pc_id;
        let asked = client.request(subject::selfservice(&pc, what), body.into());
        let reply = match tokio::time::timeout(BACKEND_PATIENCE, asked).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(err)) => return Err(unavailable(format!("the backend did not answer: {err}"))),
            Err(_) => return Err(unavailable(format!("the backend did not answer within {BACKEND_PATIENCE:?}"))),
        };
        match serde_json::from_slice::<SelfServiceAnswer<T>>(&reply.payload) {
            Ok(SelfServiceAnswer::Ok(answer)) => Ok(answer),
            Ok(SelfServiceAnswer::Error { code, message }) => {
                let code: String = code.chars().filter(|c| c.is_ascii_lowercase() || *c == '_').take(40).collect();
                Err(RpcError::refused(&code, message.chars().take(500).collect::<String>()))
            }
            Err(err) => Err(unavailable(format!("the backend's answer cannot be read: {err}"))),
        }
    }

    /// The notifications this PC's user is shown.
    pub fn notices(&self) -> &Arc<Notices> {
        &self.notices
    }

    /// The runs held for this PC's user's consent.
    pub fn consents(&self) -> &Arc<ConsentBook> {
        &self.consents
    }

    /// The maintenance waiting for the user now.
    pub fn pending(&self) -> MaintenanceList {
        MaintenanceList { items: self.consents.pending(chrono::Utc::now(), crate::consent::local_offset()) }
    }

    /// Pushes the maintenance list when it changed since the clients last saw it, and its count in the status.
    pub fn pending_changed(&self) {
        let list = self.pending();
        let count = list.items.len();
        let changed = {
            let mut shown = self.shown_pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = shown.as_ref() != Some(&list);
            *shown = Some(list.clone());
            changed
        };
        if changed {
            self.push(Push::new(MAINTENANCE_CHANGED, list));
        }
        self.update_status(|status| status.pending_maintenance = count);
    }

    /// A run on this PC ended: the clients are told.
    pub fn run_finished(&self, result: &ExecResult) {
        self.push(Push::new(
            RUN_FINISHED,
            FinishedRun {
                exec_id: result.exec_id.clone(),
                job_id: result.job_id.clone(),
                status: result.status,
                exit_code: result.exit_code,
                reason: result.reason.clone(),
                finished_at: result.finished_at,
            },
        ));
    }

    /// A new notification is shown: pushed to the clients (the status's unread count follows).
    pub fn notice_shown(&self, notice: &Notice) {
        self.push(Push::new(NOTIFICATION_NEW, shown(Held { notice: notice.clone(), acknowledged: None })));
        let unread = self.notices.unread(chrono::Utc::now());
        self.update_status(|status| status.unread_notifications = unread);
    }

    pub fn status(&self) -> AgentStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Sets what changed of the status; the clients are told when anything did.
    pub fn update_status(&self, change: impl FnOnce(&mut AgentStatus)) {
        let changed = {
            let mut status = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = status.clone();
            change(&mut status);
            (*status != before).then(|| status.clone())
        };
        if let Some(status) = changed {
            self.push(Push::new(STATUS_CHANGED, status));
        }
    }

    /// Sends `push` to every greeted client (none listening is fine).
    pub fn push(&self, push: Push) {
        let _ = self.pushes.send(push);
    }

    fn pushes(&self) -> broadcast::Receiver<Push> {
        self.pushes.subscribe()
    }
}

/// Whether `peer` may use the IPC, given who is signed in at the screen (or why that is unknown).
pub fn authorise(peer: &Peer, signed_in: &Result<Option<LocalUser>, String>) -> Result<(), RpcError> {
    match signed_in {
        Ok(Some(user)) if user.key == peer.key => Ok(()),
        Ok(Some(user)) => Err(RpcError::refused(
            "not_the_signed_in_user",
            format!(
                "only {}, who is signed in at this PC, may use kanade-client here; this is {}",
                user.name, peer.name
            ),
        )),
        Ok(None) => Err(RpcError::refused("nobody_signed_in", "nobody is signed in at this PC's screen")),
        Err(why) => Err(RpcError::refused(
            "nobody_signed_in",
            format!("cannot tell who is signed in at this PC's screen: {why}"),
        )),
    }
}

/// Serves clients on `listener` until `shutdown`; every client task ends with it.
pub async fn serve(
    mut listener: ClientListener,
    desk: Arc<ClientDesk>,
    configured_user: Option<String>,
    shutdown: CancellationToken,
) {
    let clients = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "cannot accept a kanade-client connection");
                // A persistent accept error (out of descriptors) must not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let configured = configured_user.clone();
        let desk = desk.clone();
        let shutdown = shutdown.clone();
        let full = clients.len() >= MAX_CLIENTS;
        clients.spawn(async move {
            if full {
                tracing::warn!(user = %peer.name, pid = ?peer.pid, "kanade-client refused: {MAX_CLIENTS} clients are connected already");
                let error = RpcError::refused("too_many_clients", format!("{MAX_CLIENTS} clients are connected already"));
                refuse(stream, error).await;
                return;
            }
            let signed_in = tokio::task::spawn_blocking(move || platform::signed_in_user(configured.as_deref()))
                .await
                .unwrap_or_else(|err| Err(format!("the check failed: {err}")));
            if let Err(error) = authorise(&peer, &signed_in) {
                tracing::warn!(user = %peer.name, pid = ?peer.pid, reason = error.reason(), "kanade-client refused");
                refuse(stream, error).await;
                return;
            }
            tracing::info!(user = %peer.name, pid = ?peer.pid, "kanade-client connected");
            connection(stream, &peer, &desk, shutdown).await;
            tracing::info!(user = %peer.name, pid = ?peer.pid, "kanade-client disconnected");
        });
    }
    clients.close();
    clients.wait().await;
}

/// Sends `error` as the only message and closes.
async fn refuse(stream: ClientStream, error: RpcError) {
    let mut out = FramedWrite::new(stream, LinesCodec::new());
    let line = serde_json::to_string(&Response::error(None, error)).unwrap_or_default();
    let _ = tokio::time::timeout(WRITE_PATIENCE, out.send(line)).await;
}

/// One greeted or greeting client, until it leaves, breaks a bound, or the agent stops.
async fn connection(stream: ClientStream, peer: &Peer, desk: &ClientDesk, shutdown: CancellationToken) {
    let (read, write) = tokio::io::split(stream);
    // The codec's bound excludes the newline.
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE_BYTES - 1));
    // Everything to the client goes through one bounded queue and one writer, which gives up on a client that does
    // not read: its queue fills and the connection ends.
    let (out, queue) = mpsc::channel::<FromAgent>(MAX_PENDING_PUSHES);
    let writer = tokio::spawn(write_to(write, queue));
    let mut session = Session::new(Instant::now());
    let mut pushes: Option<broadcast::Receiver<Push>> = None;
    let hello_by = tokio::time::Instant::now() + HELLO_WITHIN;
    let last: Option<Response> = loop {
        let next_push = async {
            match pushes.as_mut() {
                Some(pushes) => pushes.recv().await,
                None => std::future::pending().await,
            }
        };
        let greeted = session.protocol().is_some();
        tokio::select! {
            () = shutdown.cancelled() => {
                break Some(Response::error(None, RpcError::refused("agent_stopping", "the agent is stopping")));
            }
            () = tokio::time::sleep_until(hello_by), if !greeted => {
                break Some(Response::error(None, RpcError::refused("hello_first", format!("no `hello` within {HELLO_WITHIN:?}"))));
            }
            push = next_push => match push {
                Ok(push) => {
                    if out.try_send(FromAgent::Push(push)).is_err() {
                        break None;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    break Some(Response::error(None, RpcError::refused("too_slow", "the client does not read what it is sent")));
                }
                Err(broadcast::error::RecvError::Closed) => break None,
            },
            line = lines.next() => {
                let line = match &line {
                    None => break None,
                    Some(Ok(line)) => Ok(line.as_str()),
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => Err(LineFault::TooLong),
                    Some(Err(LinesCodecError::Io(err))) if err.kind() == std::io::ErrorKind::InvalidData => {
                        Err(LineFault::NotText)
                    }
                    Some(Err(LinesCodecError::Io(_))) => break None,
                };
                let answer = match session.on_line(line, Instant::now()) {
                    Step::Answer(response) => response,
                    Step::Close(response) => break Some(response),
                    Step::Greet { id, protocol } => {
                        pushes = Some(desk.pushes());
                        let status = desk.status();
                        Response::ok(id, Hello {
                            protocol,
                            agent_version: status.agent_version,
                            pc_id: status.pc_id,
                            hostname: status.hostname,
                            user: peer.name.clone(),
                        })
                    }
                    Step::Call(request) => call(&request, peer, desk).await,
                };
                if out.try_send(FromAgent::Response(answer)).is_err() {
                    break Some(Response::error(None, RpcError::refused("too_slow", "the client does not read its answers")));
                }
            }
        }
    };
    if let Some(last) = last {
        tracing::debug!(user = %peer.name, reason = ?last.outcome, "closing a kanade-client connection");
        // The queue may be full (a client that does not read): the last word is then lost with the client.
        let _ = out.try_send(FromAgent::Response(last));
    }
    drop(out);
    let _ = writer.await;
}

/// Writes what is queued, one line each, until the queue ends or the client stops reading.
async fn write_to(write: tokio::io::WriteHalf<ClientStream>, mut queue: mpsc::Receiver<FromAgent>) {
    let mut out = FramedWrite::new(write, LinesCodec::new());
    while let Some(message) = queue.recv().await {
        let Ok(line) = serde_json::to_string(&message) else { continue };
        match tokio::time::timeout(WRITE_PATIENCE, out.send(line)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

fn shown(held: Held) -> ShownNotice {
    let (acknowledged_at, acknowledged_by) = match held.acknowledged {
        Some(ack) => (Some(ack.at), Some(ack.by)),
        None => (None, None),
    };
    ShownNotice { notice: held.notice, acknowledged_at, acknowledged_by }
}

/// Carries out one request of a greeted client, acting as `peer`.
async fn call(request: &Request, peer: &Peer, desk: &ClientDesk) -> Response {
    let id = request.id.clone();
    match request.method.as_str() {
        STATUS => Response::ok(id, desk.status()),
        CATALOGUE_LIST => match desk.ask_backend::<CatalogueReply>(SelfService::Catalogue, b"{}".to_vec()).await {
            Ok(catalogue) => Response::ok(id, catalogue),
            Err(error) => Response::error(Some(id), error),
        },
        CATALOGUE_RUN => {
            let params: RunParams = match request.params() {
                Ok(params) => params,
                Err(error) => return Response::error(Some(id), error),
            };
            let asked = SelfServiceRun { job_id: params.job_id.clone(), user: peer.name.clone() };
            let body = serde_json::to_vec(&asked).unwrap_or_default();
            match desk.ask_backend::<SelfServiceStarted>(SelfService::Run, body).await {
                Ok(started) => {
                    tracing::info!(job = %params.job_id, exec_id = %started.exec_id, user = %peer.name, "self-service run asked for");
                    Response::ok(id, started)
                }
                Err(error) => Response::error(Some(id), error),
            }
        }
        MAINTENANCE_LIST => Response::ok(id, desk.pending()),
        MAINTENANCE_RUN_NOW => {
            let params: RunNowParams = match request.params() {
                Ok(params) => params,
                Err(error) => return Response::error(Some(id), error),
            };
            match desk.consents.run_now(&params.exec_id, &peer.name) {
                Ok(_) => {
                    tracing::info!(exec_id = %params.exec_id, user = %peer.name, "the user runs held maintenance now");
                    desk.pending_changed();
                    Response::ok(id, desk.pending())
                }
                Err(err) => Response::error(Some(id), RpcError::refused(err.reason(), err.to_string())),
            }
        }
        MAINTENANCE_DEFER => {
            let params: DeferParams = match request.params() {
                Ok(params) => params,
                Err(error) => return Response::error(Some(id), error),
            };
            match desk.consents.defer(&params.exec_id, &peer.name, params.minutes, chrono::Utc::now()) {
                Ok(held) => {
                    tracing::info!(exec_id = %params.exec_id, user = %peer.name, until = ?held.deferred_until, deferrals = held.deferrals, "the user put held maintenance off");
                    desk.pending_changed();
                    Response::ok(id, desk.pending())
                }
                Err(err @ crate::consent::AnswerError::BadMinutes) => {
                    Response::error(Some(id), RpcError::new(ipc::code::INVALID_PARAMS, err.reason(), err.to_string()))
                }
                Err(err) => Response::error(Some(id), RpcError::refused(err.reason(), err.to_string())),
            }
        }
        NOTIFICATIONS_LIST => {
            let notices = desk.notices.list(chrono::Utc::now()).into_iter().map(shown).collect();
            Response::ok(id, NoticeList { notices })
        }
        NOTIFICATIONS_ACK => {
            let params: AckParams = match request.params() {
                Ok(params) => params,
                Err(error) => return Response::error(Some(id), error),
            };
            match desk.notices.acknowledge(&params.id, &peer.name, chrono::Utc::now()) {
                Ok(held) => {
                    tracing::info!(id = %params.id, user = %peer.name, "notification acknowledged");
                    let unread = desk.notices.unread(chrono::Utc::now());
                    desk.update_status(|status| status.unread_notifications = unread);
                    Response::ok(id, shown(held))
                }
                Err(err) => Response::error(Some(id), RpcError::refused("unknown_notification", err.to_string())),
            }
        }
        other => {
            let shown: String = other.chars().take(64).collect();
            Response::error(
                Some(request.id.clone()),
                RpcError::new(ipc::code::METHOD_NOT_FOUND, "method_not_found", format!("no method `{shown}`")),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::UserKey;

    #[test]
    fn only_the_signed_in_user_is_served() {
        let ann = LocalUser { key: UserKey::unix(1000), name: "ann".into() };
        let peer = |uid: u32, name: &str| Peer { key: UserKey::unix(uid), name: name.into(), pid: Some(7) };
        assert_eq!(authorise(&peer(1000, "ann"), &Ok(Some(ann.clone()))), Ok(()));
        let bob = authorise(&peer(1001, "bob"), &Ok(Some(ann.clone()))).unwrap_err();
        assert_eq!(bob.reason(), "not_the_signed_in_user");
        assert!(bob.message.contains("only ann") && bob.message.contains("this is bob"), "{}", bob.message);
        // Root is not the user either: a client acts as the person at the screen, and root is not that person.
        assert_eq!(authorise(&peer(0, "root"), &Ok(Some(ann))).unwrap_err().reason(), "not_the_signed_in_user");
        assert_eq!(authorise(&peer(1000, "ann"), &Ok(None)).unwrap_err().reason(), "nobody_signed_in");
        let unknown = authorise(&peer(1000, "ann"), &Err("no logind".into())).unwrap_err();
        assert!(unknown.message.contains("no logind"));
    }

    #[test]
    fn the_desk_pushes_a_status_change_once() {
        let desk = ClientDesk::new(
            PcId::new("pc-1").unwrap(),
            "pc-1.example".into(),
            Notices::open(None),
            ConsentBook::open(None, crate::consent::Presence::Always),
        );
        let mut pushes = desk.pushes();
        desk.update_status(|s| s.connected = true);
        desk.update_status(|s| s.connected = true);
        let push = pushes.try_recv().unwrap();
        assert_eq!(push.method, STATUS_CHANGED);
        assert_eq!(push.params["connected"], true);
        assert!(pushes.try_recv().is_err(), "an update that changes nothing is not pushed");
    }
}
