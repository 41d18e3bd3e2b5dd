//! Notifications to PCs' users (`kanade notify`): a [`Notice`] published into `NOTIFICATIONS` on its target's
//! subject, signed as commands are, so an agent shows only what a key in the trust list sent within its scope; and
//! the acknowledgements agents send back on `EVENTS`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures::StreamExt as _;
use kanade_shared::NoticeId;
use kanade_shared::authority::SigningKey;
use kanade_shared::resources::{STREAM_EVENTS, STREAM_NOTIFICATIONS};
use kanade_shared::subject::{self, Target};
use kanade_shared::wire::{Notice, NoticeAck};

use crate::OpsError;
use crate::signing;

/// The most acknowledgements [`acks`] reads (a fleet-wide notice on a large fleet).
pub const MAX_ACKS: usize = 100_000;

/// Publishes `notice` to `target` and waits for `NOTIFICATIONS`' ack; the notice id is the message id, so a retry
/// is stored once. Signed for as long as the notice is shown.
pub async fn publish(
    client: &async_nats::Client,
    signer: &SigningKey,
    target: &Target,
    notice: &Notice,
) -> Result<(), OpsError> {
    notice.validate().map_err(|err| OpsError::Invalid(format!("notification: {err}")))?;
    let subject = subject::notice(target, &notice.id);
    let body = serde_json::to_vec(notice).map_err(|source| OpsError::Encode { what: "notification", source })?;
    let lifetime = (notice.expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::from_secs(60));
    let headers = signing::signed_headers(signer, &subject, &body, lifetime);
    let what = || format!("cannot publish `{subject}`");
    let js = jetstream::new(client.clone());
    js.get_stream(STREAM_NOTIFICATIONS)
        .await
        .map_err(|_| OpsError::Missing { kind: "stream", name: STREAM_NOTIFICATIONS })?;
    js.send_publish(
        subject.clone(),
        PublishMessage::build().payload(body.into()).headers(headers).message_id(notice.id.as_str()),
    )
    .await
    .map_err(|e| OpsError::nats(what(), e))?
    .await
    .map_err(|e| OpsError::nats(what(), e))?;
    Ok(())
}

/// The acknowledgements of notice `id` that `EVENTS` holds, oldest first, one per PC (the first). Read with a
/// short-lived ordered consumer on that notice's subjects only: an operator's question, not an agent's.
pub async fn acks(client: &async_nats::Client, id: &NoticeId) -> Result<Vec<NoticeAck>, OpsError> {
    let stream = jetstream::new(client.clone())
        .get_stream(STREAM_EVENTS)
        .await
        .map_err(|_| OpsError::Missing { kind: "stream", name: STREAM_EVENTS })?;
    let filter = subject::notice_acks_of(id);
    let what = || format!("cannot read `{filter}`");
    let pending = stream
        .create_consumer(consumer::pull::OrderedConfig { filter_subject: filter.clone(), ..Default::default() })
        .await
        .map_err(|e| OpsError::nats(what(), e))?;
    let mut remaining = pending.cached_info().num_pending;
    let mut messages = pending.messages().await.map_err(|e| OpsError::nats(what(), e))?;
    let mut acks: Vec<NoticeAck> = Vec::new();
    while remaining > 0 && acks.len() < MAX_ACKS {
        let Some(message) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.ok().flatten() else {
            break;
        };
        let message = message.map_err(|e| OpsError::nats(what(), e))?;
        remaining -= 1;
        // An agent's message: a malformed one, or one that names another notice or PC than its subject, is skipped.
        if let Ok(ack) = serde_json::from_slice::<NoticeAck>(&message.payload)
            && ack.id == *id
            && message.subject.as_str() == subject::notice_ack(&ack.pc_id, id)
            && !acks.iter().any(|seen| seen.pc_id == ack.pc_id)
        {
            acks.push(ack);
        }
    }
    Ok(acks)
}
