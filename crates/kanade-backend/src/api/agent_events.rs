//! The agents' timelines: `GET /api/agents/{pc_id}/events` (one agent's, newest first) and `GET /api/agent-events`
//! (the fleet's, by kind and time; `distinct=pc` for one entry per agent). Both page with an opaque keyset cursor:
//! `next` names the last entry of a page, and the next page starts after it, so entries arriving meanwhile neither
//! repeat nor push others off a page. A caller scoped to groups sees the timelines of the PCs in them only (another
//! PC's answers as an agent that never reported).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use kanade_shared::PcId;
use kanade_shared::api::{self, AgentEventPage, AgentEventRow, AgentEventsQuery, ErrorBody, FleetEventsQuery, KeyPart};

use super::{ApiError, ApiQuery, AppState, ErrorCode, PathId};
use crate::caller::Caller;
use crate::db::EventFilter;

pub const DEFAULT_EVENT_LIMIT: u32 = 50;
pub const MAX_EVENT_LIMIT: u32 = 500;

#[utoipa::path(get, path = "/api/agents/{pc_id}/events", tag = "agents", operation_id = "agents_events", params(("pc_id" = String, Path, description = "the agent's pc id"), AgentEventsQuery), responses((status = 200, description = "the agent's timeline, newest first (empty for an agent that never reported one)", body = AgentEventPage), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn of_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
    ApiQuery(query): ApiQuery<AgentEventsQuery>,
) -> Result<Json<AgentEventPage>, ApiError> {
    super::agents::in_scope(&state, &caller, &pc).await?;
    let wanted = Wanted {
        kind: query.kind,
        since: query.since,
        until: query.until,
        limit: query.limit,
        cursor: query.cursor,
        distinct: None,
    };
    let filter = wanted.filter(Some(pc), Utc::now()).map_err(invalid)?;
    Ok(Json(page(state.db.list_agent_events(&filter, &caller.scope).await?, filter.limit)))
}

#[utoipa::path(get, path = "/api/agent-events", tag = "agents", operation_id = "agent_events_list", params(FleetEventsQuery), responses((status = 200, description = "timeline entries across the fleet, newest first", body = AgentEventPage), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn fleet(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<FleetEventsQuery>,
) -> Result<Json<AgentEventPage>, ApiError> {
    let wanted = Wanted {
        kind: query.kind,
        since: query.since,
        until: query.until,
        limit: query.limit,
        cursor: query.cursor,
        distinct: query.distinct,
    };
    let filter = wanted.filter(None, Utc::now()).map_err(invalid)?;
    Ok(Json(page(state.db.list_agent_events(&filter, &caller.scope).await?, filter.limit)))
}

/// Both queries' fields, before they are checked.
struct Wanted {
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    distinct: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, message)
}

/// What is wrong with a query, before it becomes an [`ApiError`].
type Refusal = String;

/// The first `n` characters of something a client sent, for an error message.
pub(super) fn shown(raw: &str) -> String {
    raw.chars().take(40).collect()
}

impl Wanted {
    fn filter(self, pc: Option<PcId>, now: DateTime<Utc>) -> Result<EventFilter, Refusal> {
        let present = |value: Option<String>| value.filter(|v| !v.is_empty());
        let kind = present(self.kind)
            .map(|kind| {
                let ok = kind.len() <= crate::projector::MAX_KIND_CHARS
                    && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if ok { Ok(kind) } else { Err(format!("kind `{}` is not a timeline kind", shown(&kind))) }
            })
            .transpose()?;
        let since = present(self.since).map(|raw| time("since", &raw, now)).transpose()?;
        let until = present(self.until).map(|raw| time("until", &raw, now)).transpose()?;
        let (since_ms, until_ms) =
            (since.map_or(i64::MIN, |t| t.timestamp_millis()), until.map_or(i64::MAX, |t| t.timestamp_millis()));
        if since_ms > until_ms {
            return Err("since is later than until".to_owned());
        }
        let limit = self.limit.unwrap_or(DEFAULT_EVENT_LIMIT);
        if !(1..=MAX_EVENT_LIMIT).contains(&limit) {
            return Err(format!("limit must be between 1 and {MAX_EVENT_LIMIT}"));
        }
        let after = present(self.cursor).map(|raw| decode_cursor(&raw)).transpose()?;
        let distinct_pc = match present(self.distinct).as_deref() {
            None => false,
            Some("pc") => true,
            Some(other) => return Err(format!("distinct `{}` is not `pc`", shown(other))),
        };
        Ok(EventFilter { pc_id: pc.map(|pc| pc.to_string()), kind, since_ms, until_ms, after, distinct_pc, limit })
    }
}

/// A duration back from `now` (`1h`, `7d`) or an RFC 3339 time.
pub(super) fn time(name: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Refusal> {
    if let Ok(ago) = humantime::parse_duration(raw) {
        let too_long = || format!("{name} `{}` is too long ago", shown(raw));
        let ago = chrono::Duration::from_std(ago).map_err(|_| too_long())?;
        return now.checked_sub_signed(ago).ok_or_else(too_long);
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{name} `{}` is neither a duration (`7d`) nor an RFC 3339 time", shown(raw)))
}

/// The page's entries (the query read one more than `limit`, to know whether another page follows) and the
/// cursor that continues after its last.
fn page(mut rows: Vec<AgentEventRow>, limit: u32) -> AgentEventPage {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(encode_cursor)).flatten();
    AgentEventPage { items: rows, next }
}

/// Which list a timeline cursor belongs to, in the one cursor format every list uses (`kanade_shared::api`).
const CURSOR_LIST: &str = "agent_events";

fn encode_cursor(row: &AgentEventRow) -> String {
    api::encode_cursor(CURSOR_LIST, vec![KeyPart::Int(row.at.timestamp_millis()), KeyPart::Text(row.event_id.clone())])
}

fn decode_cursor(raw: &str) -> Result<(i64, String), Refusal> {
    let refused = || format!("cursor `{}` is not one this API gave out", shown(raw));
    match api::decode_cursor(CURSOR_LIST, raw).map_err(|_| refused())?.as_slice() {
        [KeyPart::Int(at), KeyPart::Text(id)] if !id.is_empty() && id.len() <= 64 => Ok((*at, id.clone())),
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn row(at_ms: i64, id: &str) -> AgentEventRow {
        let at = DateTime::from_timestamp_millis(at_ms).unwrap();
        AgentEventRow {
            event_id: id.to_owned(),
            pc_id: "pc-1".to_owned(),
            kind: "agent_started".to_owned(),
            at,
            recorded_at: at,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let cursor = encode_cursor(&row(1_764_547_200_000, "0190-ab:c"));
        assert_eq!(decode_cursor(&cursor).unwrap(), (1_764_547_200_000, "0190-ab:c".to_owned()));
        for forged in
            ["", "!!!", "bm9jb2xvbg", &"A".repeat(5000), &URL_SAFE_NO_PAD.encode("x:y"), &URL_SAFE_NO_PAD.encode("1:")]
        {
            assert!(decode_cursor(forged).is_err(), "{forged:?}");
        }
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])).is_err());
    }

    #[test]
    fn a_page_says_whether_another_follows() {
        let rows = vec![row(3, "c"), row(2, "b"), row(1, "a")];
        let full = page(rows.clone(), 2);
        assert_eq!(full.items.len(), 2);
        assert_eq!(decode_cursor(full.next.as_deref().unwrap()).unwrap(), (2, "b".to_owned()));
        assert_eq!(page(rows, 3).next, None);
    }

    #[test]
    fn hostile_filters_are_refused_with_the_offending_value() {
        let now = Utc::now();
        let wanted = |kind: &str, since: &str, until: &str, limit: u32, distinct: &str| Wanted {
            kind: Some(kind.to_owned()),
            since: Some(since.to_owned()),
            until: Some(until.to_owned()),
            limit: Some(limit),
            cursor: None,
            distinct: Some(distinct.to_owned()),
        };
        let message = |w: Wanted| w.filter(None, now).err().unwrap_or_default();
        assert!(wanted("agent_started", "7d", "", 50, "pc").filter(None, now).unwrap().distinct_pc);
        assert!(message(wanted("Agent Started", "", "", 50, "")).contains("`Agent Started`"));
        assert!(message(wanted("", "yesterday", "", 50, "")).contains("`yesterday`"));
        assert!(message(wanted("", "1h", "7d", 50, "")).contains("later than until"));
        assert!(message(wanted("", "", "", 0, "")).contains("limit"));
        assert!(message(wanted("", "", "", 501, "")).contains("limit"));
        assert!(message(wanted("", "", "", 50, "kind")).contains("`kind`"));
        assert!(message(wanted("", "100000000000y", "", 50, "")).contains("too long ago"));
        assert!(message(wanted(&"x".repeat(10_000), "", "", 50, "")).contains("not a timeline kind"));
    }
}
