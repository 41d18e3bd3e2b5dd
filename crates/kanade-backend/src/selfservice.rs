//! kanade-client's self-service catalogue, answered for the agents: `selfservice.<pc>.catalogue` lists the jobs
//! whose manifest has a `client:` block and whose own targets include that PC; `selfservice.<pc>.run` starts one
//! of them on that PC alone, through the engine like any other execution (signed with the backend's key, approval
//! when the job asks for it), audited as self-service by the PC's user. The broker lets an agent publish only its
//! own PC's subjects, so the PC a request names is the one that sent it; the user is the one the agent saw on its
//! socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt as _;
use kanade_ops::catalogue::Catalogue;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::manifest::{Job, StoredJob, Targets};
use kanade_shared::resources::BACKEND_QUEUE_GROUP;
use kanade_shared::subject::{self, SelfService};
use kanade_shared::wire::{CatalogueItem, CatalogueReply, SelfServiceAnswer, SelfServiceRun, SelfServiceStarted};
use kanade_shared::{Actor, GroupName, PcId};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::AppState;
use crate::caller::Caller;
use crate::engine::{ExecError, ExecRequest};

/// Requests answered at once by one backend.
const CONCURRENT_ANSWERS: usize = 16;
/// How long the jobs with a `client:` block are reused before the catalogue is read again: a fleet whose users all
/// sign in at nine does not become a catalogue read per PC.
const CATALOGUE_FRESH_FOR: Duration = Duration::from_secs(30);
/// The largest request body read.
const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// The one actor self-service executions are requested by; the user and PC are in each one's audit record.
pub const SELF_SERVICE_ACTOR: &str = "self-service";

/// Whether `job` is in the self-service catalogue of `pc` (in `groups`): it has a `client:` block and its own
/// targets include the PC. A job whose targets are named at each fire reaches no PC of its own, so it is in none.
pub fn offered(job: &Job, pc: &PcId, groups: &[GroupName]) -> bool {
    job.client.is_some()
        && job
            .targets
            .as_ref()
            .is_some_and(|t| t.all || t.pcs.contains(pc) || t.groups.iter().any(|g| groups.contains(g)))
}

/// Subscribed at bind, so requests are answered as soon as the backend serves.
pub async fn subscribe(client: &Client) -> Result<Subscriber, async_nats::SubscribeError> {
    client.queue_subscribe(subject::SELFSERVICE_ALL, BACKEND_QUEUE_GROUP.to_owned()).await
}

/// The jobs with a `client:` block, read at most every [`CATALOGUE_FRESH_FOR`].
#[derive(Default)]
struct Offer {
    read: tokio::sync::Mutex<Option<(Instant, Arc<Vec<StoredJob>>)>>,
}

impl Offer {
    async fn jobs(&self, nats: &Client) -> Result<Arc<Vec<StoredJob>>, kanade_ops::OpsError> {
        let mut read = self.read.lock().await;
        if let Some((at, jobs)) = read.as_ref()
            && at.elapsed() < CATALOGUE_FRESH_FOR
        {
            return Ok(jobs.clone());
        }
        let (jobs, _unreadable) = Catalogue::open(nats).await?.list().await?;
        let jobs: Arc<Vec<StoredJob>> = Arc::new(jobs.into_iter().filter(|s| s.job.client.is_some()).collect());
        *read = Some((Instant::now(), jobs.clone()));
        Ok(jobs)
    }
}

/// Answers self-service requests until `shutdown`.
pub async fn answer_requests(state: Arc<AppState>, requests: Subscriber, shutdown: CancellationToken) {
    let offer = Arc::new(Offer::default());
    requests
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(CONCURRENT_ANSWERS, |message| {
            let (state, offer) = (state.clone(), offer.clone());
            async move { answer(&state, &offer, message).await }
        })
        .await;
}

fn refused<T>(code: &str, message: impl Into<String>) -> SelfServiceAnswer<T> {
    SelfServiceAnswer::Error { code: code.to_owned(), message: message.into() }
}

async fn answer(state: &AppState, offer: &Offer, message: Message) {
    let Some(reply) = message.reply.clone() else { return };
    let Some((pc, what)) = subject::selfservice_of(message.subject.as_str()) else { return };
    let body = match what {
        SelfService::Catalogue => encode(&catalogue(state, offer, &pc).await),
        SelfService::Run => encode(&run(state, offer, &pc, &message.payload).await),
    };
    if let Err(err) = state.nats.publish(reply, body.into()).await {
        tracing::warn!(pc = %pc, error = %err, "cannot answer a self-service request");
    }
}

fn encode<T: Serialize>(answer: &SelfServiceAnswer<T>) -> Vec<u8> {
    serde_json::to_vec(answer).unwrap_or_default()
}

/// The PC's groups as the backend knows them (its credential's, else what it reported).
async fn groups_of(state: &AppState, pc: &PcId) -> Result<Vec<GroupName>, String> {
    let groups = state.db.pc_groups(std::slice::from_ref(pc)).await.map_err(|err| err.to_string())?;
    Ok(groups.get(pc).cloned().unwrap_or_default())
}

async fn catalogue(state: &AppState, offer: &Offer, pc: &PcId) -> SelfServiceAnswer<CatalogueReply> {
    let (jobs, groups) = match (offer.jobs(&state.nats).await, groups_of(state, pc).await) {
        (Ok(jobs), Ok(groups)) => (jobs, groups),
        (Err(err), _) => {
            tracing::error!(error = %err, "cannot read the catalogue for self-service");
            return refused("unavailable", "the catalogue cannot be read now");
        }
        (_, Err(err)) => {
            tracing::error!(error = %err, "cannot read a PC's groups for self-service");
            return refused("unavailable", "the catalogue cannot be read now");
        }
    };
    let mut items: Vec<CatalogueItem> = jobs
        .iter()
        .filter(|stored| offered(&stored.job, pc, &groups))
        .filter_map(|stored| {
            let client = stored.job.client.as_ref()?;
            Some(CatalogueItem {
                job_id: stored.job.id.clone(),
                version: stored.job.version.clone(),
                title: client.title.trim().to_owned(),
                description: client.description.clone(),
                category: client.category.clone(),
                require_approval: stored.job.require_approval,
            })
        })
        .collect();
    items.sort_by(|a, b| (&a.category, &a.title, &a.job_id).cmp(&(&b.category, &b.title, &b.job_id)));
    SelfServiceAnswer::Ok(CatalogueReply { items })
}

async fn run(state: &AppState, offer: &Offer, pc: &PcId, payload: &[u8]) -> SelfServiceAnswer<SelfServiceStarted> {
    if payload.len() > MAX_REQUEST_BYTES {
        return refused("malformed", format!("a request over {MAX_REQUEST_BYTES} bytes"));
    }
    let asked: SelfServiceRun = match serde_json::from_slice(payload) {
        Ok(asked) => asked,
        Err(err) => return refused("malformed", format!("not a self-service request: {err}")),
    };
    if !kanade_shared::config::is_account_name(&asked.user) && !is_windows_account(&asked.user) {
        return refused("malformed", "the user is not an account name");
    }
    let groups = match groups_of(state, pc).await {
        Ok(groups) => groups,
        Err(err) => {
            tracing::error!(error = %err, "cannot read a PC's groups for self-service");
            return refused("unavailable", "the catalogue cannot be read now");
        }
    };
    // Read fresh: what runs is the catalogue's job as it is now, not as it was when the list was shown.
    let stored = match Catalogue::open(&state.nats).await {
        Ok(catalogue) => catalogue.get(&asked.job_id).await,
        Err(err) => Err(err),
    };
    let mut stored = match stored {
        Ok(Some(stored)) if offered(&stored.job, pc, &groups) => stored,
        Ok(_) => {
            return refused("not_offered", format!("`{}` is not in this PC's self-service catalogue", asked.job_id));
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot read the catalogue for self-service");
            return refused("unavailable", "the catalogue cannot be read now");
        }
    };
    offer.read.lock().await.take();
    // The user asked for this run: it is not held to ask them again.
    if let Some(client) = stored.job.client.as_mut() {
        client.consent = None;
    }
    let caller = Caller {
        actor: Actor::new(SELF_SERVICE_ACTOR).unwrap_or_else(|_| Actor::from_login(SELF_SERVICE_ACTOR)),
        verified: true,
        role: Role::Operator,
        scope: GroupScope::Fleet,
    };
    // This PC alone, at once: no rollout of the job's own.
    let request = ExecRequest {
        targets: Some(Targets { all: false, groups: Vec::new(), pcs: vec![pc.clone()] }),
        waves: Some(Vec::new()),
        jitter: None,
        deadline: None,
    };
    let job = stored.job.id.clone();
    let pending_approval = stored.job.require_approval;
    match state.engine.exec(stored, request, &caller).await {
        Ok(exec_id) => {
            let details = serde_json::json!({
                "job_id": job, "pc_id": pc, "user": asked.user,
                "said": format!("self-service by {} on {pc}", asked.user),
            });
            caller.auditor(&state.nats).record("self-service", exec_id.as_str(), details).await;
            tracing::info!(exec_id = %exec_id, job = %job, pc = %pc, user = %asked.user, "self-service run started");
            SelfServiceAnswer::Ok(SelfServiceStarted { exec_id, pending_approval })
        }
        Err(ExecError::Revoked(job)) => refused("revoked", format!("`{job}` is revoked")),
        Err(err @ (ExecError::Db(_) | ExecError::Ops(_))) => {
            tracing::error!(error = %err, job = %job, pc = %pc, "self-service run not started");
            refused("unavailable", "the run could not be started now")
        }
        Err(err) => refused("refused", err.to_string()),
    }
}

/// A Windows account as the agent names it (`DOMAIN\name`, or a SID when the name cannot be found): letters,
/// digits and `.-_$ \` within 256 characters, no control characters.
fn is_windows_account(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 256
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '$' | ' ' | '\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml_tail: &str) -> Job {
        let yaml = format!("id: tool\nversion: \"1\"\nexecute: {{shell: sh, script: \"true\"}}\n{yaml_tail}");
        Job::from_yaml(&yaml).unwrap()
    }

    #[test]
    fn a_job_is_offered_to_the_pcs_its_own_targets_include_and_only_with_a_client_block() {
        let pc = PcId::new("pc-1").unwrap();
        let office = [GroupName::new("office").unwrap()];
        let client = "client: {title: Tool}\n";
        assert!(offered(&job(&format!("target: {{groups: [office]}}\n{client}")), &pc, &office));
        assert!(offered(&job(&format!("target: {{all: true}}\n{client}")), &pc, &[]));
        assert!(offered(&job(&format!("target: {{pcs: [pc-1]}}\n{client}")), &pc, &[]));
        assert!(!offered(&job(&format!("target: {{groups: [lab]}}\n{client}")), &pc, &office), "another group");
        assert!(!offered(&job(client), &pc, &office), "no targets of its own");
        assert!(!offered(&job("target: {all: true}\n"), &pc, &office), "no client block");
    }

    #[test]
    fn users_are_account_names_as_either_os_gives_them() {
        for ok in ["ann", "kt-ann-00ab12", r"CORP\ann", r"PC-0042\Local Admin", "S-1-5-21-1-2-3-1001"] {
            assert!(kanade_shared::config::is_account_name(ok) || is_windows_account(ok), "{ok}");
        }
        for bad in ["", "ann\n", "a\u{7}", "<script>", &"a".repeat(300)] {
            assert!(!kanade_shared::config::is_account_name(bad) && !is_windows_account(bad), "{bad}");
        }
    }
}
