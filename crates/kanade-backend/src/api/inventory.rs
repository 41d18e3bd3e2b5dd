//! Inventory: `GET /api/agents/{pc_id}/inventory` (one PC's hardware, status and software), `GET
//! /api/inventory/titles` (the fleet's software titles with their versions and installs), `GET
//! /api/inventory/software` (which PCs have a title, optionally in a version range), `GET /api/inventory/changes`
//! (the change log), `GET /api/inventory/hardware[/summary]` (hardware filtered, and counted by value), and `POST
//! /api/inventory/refresh` (ask agents to report now). Every list pages with a keyset cursor, and answers
//! `format=csv` with the whole list as one CSV download (up to `MAX_CSV_ROWS` rows). A caller scoped to groups sees the
//! inventory of the PCs in them only, and may ask only those to report.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kanade_shared::api::{
    AgentInventory, ChangeRow, ChangesQuery, ErrorBody, FactSummary, HardwareQuery, HardwareRow, HardwareSummaryQuery,
    JobFactsQuery, JobFactsView, KeyPart, MAX_CSV_ROWS, MAX_PAGE_LIMIT, Page, RefreshBody, RefreshView, SoftwareQuery,
    SoftwareRow, TitleRow, TitlesQuery, ValueCount,
};
use kanade_shared::inventory::version::VersionRange;
use kanade_shared::inventory::{KIND_HARDWARE, KIND_SOFTWARE, RefreshRequest};
use kanade_shared::{GroupName, JobId, PcId, subject};
use serde::Serialize;

use super::agent_events::{shown, time};
use super::{ApiError, ApiJson, ApiQuery, AppState, ErrorCode, PathId, paging};
use crate::caller::Caller;
use crate::db::{ChangeFilter, HardwareFilter, NameMatch, Paged, SUMMARY_FIELDS, SoftwareFilter};

/// The longest name or search an inventory query takes.
const MAX_NAME_CHARS: usize = 256;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, message)
}

/// A filter value: empty is absent; over [`MAX_NAME_CHARS`] or holding NUL is refused (nothing stored is longer).
fn text(field: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw.filter(|v| !v.is_empty()) {
        Some(raw) if raw.chars().count() > MAX_NAME_CHARS || raw.contains('\0') => {
            Err(bad(format!("{field} `{}` is longer than {MAX_NAME_CHARS} characters or holds NUL", shown(&raw))))
        }
        other => Ok(other),
    }
}

/// Whether the caller wants the whole list as CSV.
pub(super) fn csv_wanted(format: Option<&str>) -> Result<bool, ApiError> {
    match format.filter(|f| !f.is_empty()) {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(bad(format!("format `{}` is not `json` or `csv`", shown(other)))),
    }
}

/// How one list answers: JSON pages of `limit`, or (`csv`) the whole list as the download `<file>.csv`; `list` names
/// its cursors.
struct Answer<'a> {
    csv: bool,
    file: &'a str,
    list: &'a str,
    limit: usize,
}

/// One list, as JSON pages or as one CSV file: `fetch` reads a page after a key, `rows` turns a page's items into
/// the CSV's rows, `next` makes a page's key a cursor.
async fn respond<T, K, R, F, Fut>(
    answer: Answer<'_>,
    after: Option<K>,
    mut fetch: F,
    rows: impl Fn(&T) -> Vec<R>,
    next: impl Fn(K) -> Vec<KeyPart>,
) -> Result<Response, ApiError>
where
    T: Serialize,
    R: Serialize,
    F: FnMut(Option<K>, usize) -> Fut,
    Fut: Future<Output = Result<Paged<T, K>, crate::db::DbError>>,
{
    let Answer { csv, file, list, limit } = answer;
    if !csv {
        let page = fetch(after, limit).await?;
        let next = paging::next_key(list, page.next.map(next));
        return Ok(Json(Page { items: page.items, next }).into_response());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut after = after;
    let mut written = 0;
    loop {
        let page = fetch(after, MAX_PAGE_LIMIT as usize).await?;
        for item in &page.items {
            for row in rows(item) {
                written += 1;
                if written > MAX_CSV_ROWS {
                    return Err(ApiError::bad_request(
                        ErrorCode::InvalidQuery,
                        format!("more than {MAX_CSV_ROWS} rows: narrow the query"),
                    ));
                }
                writer.serialize(row).map_err(|err| ApiError::internal(&err))?;
            }
        }
        match page.next {
            Some(key) => after = Some(key),
            None => break,
        }
    }
    download(file, writer)
}

/// A finished CSV as the download `<file>.csv`.
pub(super) fn download(file: &str, writer: csv::Writer<Vec<u8>>) -> Result<Response, ApiError> {
    let body = writer.into_inner().map_err(|err| ApiError::internal(err.error()))?;
    let disposition = format!("attachment; filename=\"{file}.csv\"");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        body,
    )
        .into_response())
}

fn one<T: Clone>(item: &T) -> Vec<T> {
    vec![item.clone()]
}

#[utoipa::path(get, path = "/api/inventory", tag = "inventory", operation_id = "inventory_job_facts", params(JobFactsQuery), responses((status = 200, description = "a job's facts: its display columns with a page of PCs, its summary fields counted across the fleet (`format=csv`: a row per PC and fact row, a column per display field)", body = JobFactsView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`; `job_not_found`, or `invalid_query` for a job without an `inventory:` block", body = ErrorBody)))]
pub(super) async fn job_facts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<JobFactsQuery>,
) -> Result<Response, ApiError> {
    let csv = csv_wanted(query.format.as_deref())?;
    let raw =
        text("app", query.app)?.ok_or_else(|| bad("app is required: the id of a job with an `inventory:` block"))?;
    let job = JobId::new(&raw).map_err(|err| bad(format!("app: {err}")))?;
    let catalogue = kanade_ops::catalogue::Catalogue::open(&state.nats).await.map_err(super::ops_error)?;
    let stored = catalogue.get(&job).await.map_err(super::ops_error)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::JobNotFound, format!("no job `{job}` in the catalogue"))
    })?;
    let Some(inventory) = stored.job.inventory else {
        return Err(bad(format!("job `{job}` has no `inventory:` block: its output is not kept as facts")));
    };
    let after = paging::after_id(paging::JOB_FACTS, query.cursor.as_deref(), PcId::new)?.map(|pc| pc.to_string());
    let limit = paging::limit(query.limit)? as usize;
    if csv {
        let mut header = vec!["pc_id".to_owned(), "row".to_owned()];
        header.extend(inventory.display.iter().map(|f| f.label().to_owned()));
        header.push("error".to_owned());
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&header).map_err(|err| ApiError::internal(&err))?;
        let mut after = after;
        let mut written = 0;
        loop {
            let page =
                state.db.job_facts(job.as_str(), after.as_deref(), MAX_PAGE_LIMIT as usize, &caller.scope).await?;
            for pc in &page.items {
                let rows = if pc.rows.is_empty() { vec![Default::default()] } else { pc.rows.clone() };
                for (n, row) in rows.iter().enumerate() {
                    let mut record = vec![pc.pc_id.clone(), n.to_string()];
                    record.extend(inventory.display.iter().map(|f| row.get(&f.field).cloned().unwrap_or_default()));
                    record.push(pc.error.clone().unwrap_or_default());
                    written += 1;
                    if written > MAX_CSV_ROWS {
                        return Err(bad(format!("more than {MAX_CSV_ROWS} rows: narrow the query")));
                    }
                    writer.write_record(&record).map_err(|err| ApiError::internal(&err))?;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        return download(&format!("{job}-facts"), writer);
    }
    let page = state.db.job_facts(job.as_str(), after.as_deref(), limit, &caller.scope).await?;
    let mut summary = Vec::with_capacity(inventory.summary.len());
    for field in &inventory.summary {
        let counts = state.db.fact_counts(job.as_str(), &field.field, &caller.scope).await?;
        summary.push(FactSummary {
            field: field.field.clone(),
            label: field.label().to_owned(),
            counts: counts.into_iter().map(|(value, pcs)| ValueCount { value, pcs }).collect(),
        });
    }
    Ok(Json(JobFactsView {
        job_id: job.to_string(),
        display: inventory.display,
        summary,
        items: page.items,
        next: paging::next_id(paging::JOB_FACTS, page.next),
    })
    .into_response())
}

#[utoipa::path(get, path = "/api/agents/{pc_id}/inventory", tag = "inventory", operation_id = "agents_inventory", params(("pc_id" = String, Path, description = "the agent's pc id")), responses((status = 200, description = "the PC's latest report of each kind and its software", body = AgentInventory), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`; `agent_not_found` when the PC never reported inventory", body = ErrorBody)))]
pub(super) async fn of_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    PathId(pc): PathId<PcId>,
) -> Result<Json<AgentInventory>, ApiError> {
    let missing = || {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::AgentNotFound, format!("`{pc}` has not reported any inventory"))
    };
    // Outside the caller's scope: as if it had never reported.
    if !state.db.pc_in_scope(&pc, &caller.scope).await? {
        return Err(missing());
    }
    state.db.agent_inventory(pc.as_str()).await?.map(Json).ok_or_else(missing)
}

/// A title's row per version, for CSV.
#[derive(Serialize)]
struct TitleCsv {
    name: String,
    version: String,
    installs: i64,
}

#[utoipa::path(get, path = "/api/inventory/titles", tag = "inventory", operation_id = "inventory_titles", params(TitlesQuery), responses((status = 200, description = "software titles by name, each with its versions and installs (`format=csv`: one row per title and version)", body = Page<TitleRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn titles(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<TitlesQuery>,
) -> Result<Response, ApiError> {
    let csv = csv_wanted(query.format.as_deref())?;
    let search = text("search", query.search)?.unwrap_or_default();
    let words: Vec<String> = search.split_whitespace().take(9).map(str::to_owned).collect();
    if words.len() > 8 {
        return Err(bad("search has more than 8 words"));
    }
    let after = match paging::key_parts(paging::SOFTWARE_TITLES, query.cursor.as_deref(), 1)?.as_deref() {
        None => None,
        Some([KeyPart::Text(key)]) => Some(key.clone()),
        Some(_) => return Err(paging::wrong()),
    };
    let limit = paging::limit(query.limit)? as usize;
    let (db, scope) = (&state.db, &caller.scope);
    respond(
        Answer { csv, file: "software-titles", list: paging::SOFTWARE_TITLES, limit },
        after,
        |after: Option<String>, limit| {
            let words = words.clone();
            async move { db.list_titles(&words, after.as_deref(), limit, scope).await }
        },
        |title: &TitleRow| {
            title
                .versions
                .iter()
                .map(|v| TitleCsv { name: title.name.clone(), version: v.version.clone(), installs: v.installs })
                .collect::<Vec<_>>()
        },
        |key| vec![KeyPart::Text(crate::db::name_key(&key))],
    )
    .await
}

#[utoipa::path(get, path = "/api/inventory/software", tag = "inventory", operation_id = "inventory_software", params(SoftwareQuery), responses((status = 200, description = "the installs of a title, by PC, in the version range", body = Page<SoftwareRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn software(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SoftwareQuery>,
) -> Result<Response, ApiError> {
    let csv = csv_wanted(query.format.as_deref())?;
    let name = text("name", query.name)?.ok_or_else(|| bad("name is required: the title to look for (`*` for any)"))?;
    let version = text("version", query.version)?
        .map(|raw| VersionRange::parse(&raw))
        .transpose()
        .map_err(|err| bad(format!("version: {err}")))?;
    let pc_id = text("pc_id", query.pc_id)?
        .map(|pc| PcId::new(&pc).map(|pc| pc.to_string()))
        .transpose()
        .map_err(|err| bad(format!("pc_id: {err}")))?;
    let after = match paging::key_parts(paging::SOFTWARE, query.cursor.as_deref(), 3)?.as_deref() {
        None => None,
        Some([KeyPart::Text(pc), KeyPart::Text(source), KeyPart::Text(id)]) => {
            Some((pc.clone(), source.clone(), id.clone()))
        }
        Some(_) => return Err(paging::wrong()),
    };
    let filter = SoftwareFilter {
        name: NameMatch::parse(&name),
        source: text("source", query.source)?,
        pc_id,
        version,
        after: None,
        limit: paging::limit(query.limit)? as usize,
    };
    let (db, scope) = (&state.db, &caller.scope);
    respond(
        Answer { csv, file: "software", list: paging::SOFTWARE, limit: filter.limit },
        after,
        |after, limit| {
            let filter = SoftwareFilter { after, limit, ..filter.clone() };
            async move { db.list_software(&filter, scope).await }
        },
        one::<SoftwareRow>,
        |(pc, source, id)| vec![KeyPart::Text(pc), KeyPart::Text(source), KeyPart::Text(id)],
    )
    .await
}

#[utoipa::path(get, path = "/api/inventory/changes", tag = "inventory", operation_id = "inventory_changes", params(ChangesQuery), responses((status = 200, description = "the change log, newest first", body = Page<ChangeRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn changes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Response, ApiError> {
    let csv = csv_wanted(query.format.as_deref())?;
    let now = Utc::now();
    let since = text("since", query.since)?.map(|raw| time("since", &raw, now)).transpose().map_err(bad)?;
    let until = text("until", query.until)?.map(|raw| time("until", &raw, now)).transpose().map_err(bad)?;
    let (since_ms, until_ms) =
        (since.map_or(i64::MIN, |t| t.timestamp_millis()), until.map_or(i64::MAX, |t| t.timestamp_millis()));
    if since_ms > until_ms {
        return Err(bad("since is later than until"));
    }
    let kind = text("kind", query.kind)?;
    if let Some(kind) = kind.as_deref().filter(|k| ![KIND_SOFTWARE, KIND_HARDWARE].contains(k)) {
        return Err(bad(format!("kind `{}` is not `software` or `hardware`", shown(kind))));
    }
    let change = text("change", query.change)?;
    const CHANGES: [&str; 5] = ["installed", "removed", "version_changed", "changed", "first_report"];
    if let Some(change) = change.as_deref().filter(|c| !CHANGES.contains(c)) {
        return Err(bad(format!("change `{}` is not one of {}", shown(change), CHANGES.join(", "))));
    }
    let pc_id = text("pc_id", query.pc_id)?
        .map(|pc| PcId::new(&pc).map(|pc| pc.to_string()))
        .transpose()
        .map_err(|err| bad(format!("pc_id: {err}")))?;
    let before = match paging::key_parts(paging::INVENTORY_CHANGES, query.cursor.as_deref(), 4)?.as_deref() {
        None => None,
        Some([KeyPart::Int(at), KeyPart::Text(pc), KeyPart::Text(kind), KeyPart::Int(n)]) => {
            Some((*at, pc.clone(), kind.clone(), *n))
        }
        Some(_) => return Err(paging::wrong()),
    };
    let filter = ChangeFilter {
        since_ms,
        until_ms,
        pc_id,
        name: text("name", query.name)?.map(|name| NameMatch::parse(&name)),
        kind,
        change,
        before: None,
        limit: paging::limit(query.limit)? as usize,
    };
    let (db, scope) = (&state.db, &caller.scope);
    respond(
        Answer { csv, file: "inventory-changes", list: paging::INVENTORY_CHANGES, limit: filter.limit },
        before,
        |before, limit| {
            let filter = ChangeFilter { before, limit, ..filter.clone() };
            async move { db.list_changes(&filter, scope).await }
        },
        one::<ChangeRow>,
        |(at, pc, kind, n)| vec![KeyPart::Int(at), KeyPart::Text(pc), KeyPart::Text(kind), KeyPart::Int(n)],
    )
    .await
}

/// A size as an operator writes it: bytes, or with a unit (`16GiB`, `8 GB`, `512MiB`).
fn size(field: &str, raw: Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = text(field, raw)? else { return Ok(None) };
    let parsed: bytesize::ByteSize = raw
        .trim()
        .parse()
        .map_err(|_| bad(format!("{field} `{}` is not a size (`16GiB`, `8 GB`, bytes)", shown(&raw))))?;
    Ok(Some(i64::try_from(parsed.as_u64()).unwrap_or(i64::MAX)))
}

#[utoipa::path(get, path = "/api/inventory/hardware", tag = "inventory", operation_id = "inventory_hardware", params(HardwareQuery), responses((status = 200, description = "each PC's hardware summary, by pc id", body = Page<HardwareRow>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn hardware(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HardwareQuery>,
) -> Result<Response, ApiError> {
    let csv = csv_wanted(query.format.as_deref())?;
    let after = paging::after_id(paging::HARDWARE, query.cursor.as_deref(), PcId::new)?.map(|pc| pc.to_string());
    let filter = HardwareFilter {
        os: text("os", query.os)?,
        os_build: text("os_build", query.os_build)?,
        manufacturer: text("manufacturer", query.manufacturer)?,
        model: text("model", query.model)?,
        memory_below: size("memory_below", query.memory_below)?,
        memory_at_least: size("memory_at_least", query.memory_at_least)?,
        after: None,
        limit: paging::limit(query.limit)? as usize,
    };
    let (db, scope) = (&state.db, &caller.scope);
    respond(
        Answer { csv, file: "hardware", list: paging::HARDWARE, limit: filter.limit },
        after,
        |after, limit| {
            let filter = HardwareFilter { after, limit, ..filter.clone() };
            async move { db.list_hardware(&filter, scope).await }
        },
        one::<HardwareRow>,
        |pc| vec![KeyPart::Text(pc)],
    )
    .await
}

#[utoipa::path(get, path = "/api/inventory/hardware/summary", tag = "inventory", operation_id = "inventory_hardware_summary", params(HardwareSummaryQuery), responses((status = 200, description = "how many PCs have each value of the field, most first (at most 1,000 values)", body = Vec<ValueCount>), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn hardware_summary(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HardwareSummaryQuery>,
) -> Result<Json<Vec<ValueCount>>, ApiError> {
    let field = query.field.unwrap_or_default();
    let Some((_, column)) = SUMMARY_FIELDS.iter().find(|(name, _)| *name == field) else {
        let known: Vec<&str> = SUMMARY_FIELDS.iter().map(|(name, _)| *name).collect();
        return Err(bad(format!("field `{}` is not one of {}", shown(&field), known.join(", "))));
    };
    let counts = state.db.hardware_summary(column, &caller.scope).await?;
    Ok(Json(counts.into_iter().map(|(value, pcs)| ValueCount { value, pcs }).collect()))
}

#[utoipa::path(post, path = "/api/inventory/refresh", tag = "inventory", operation_id = "inventory_refresh", request_body = RefreshBody, responses((status = 200, description = "the agents asked to report now; each answers in the background", body = RefreshView), (status = "default", description = "an error: `{\"error\": {\"code\", \"message\"}}`", body = ErrorBody)))]
pub(super) async fn refresh(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<RefreshView>, ApiError> {
    let invalid = |m: String| ApiError::bad_request(ErrorCode::InvalidRequest, m);
    let pcs: Vec<PcId> =
        body.pcs.iter().map(PcId::new).collect::<Result<_, _>>().map_err(|e| invalid(format!("pcs: {e}")))?;
    let groups: Vec<GroupName> = body
        .groups
        .iter()
        .map(GroupName::new)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("groups: {e}")))?;
    if pcs.is_empty() && groups.is_empty() && !body.all {
        return Err(ApiError::bad_request(ErrorCode::TargetsRequired, "name pcs, groups or all"));
    }
    // Checked as a fire is: `all` needs the fleet, each group and PC the caller's scope.
    let named = kanade_shared::manifest::Targets { all: body.all, groups: groups.clone(), pcs: pcs.clone() };
    state.engine.check_scope(&caller.scope, &named, []).await.map_err(super::executions::exec_error)?;
    // Named PCs are asked whether or not they ever reported; groups and `all` reach the known agents.
    let mut asked: std::collections::BTreeSet<String> = pcs.iter().map(|p| p.to_string()).collect();
    if body.all || !groups.is_empty() {
        for agent in state.db.known_agents().await? {
            let in_group = groups.iter().any(|g| agent.groups.iter().any(|mine| mine == g.as_str()));
            if body.all || in_group {
                asked.insert(agent.pc_id);
            }
        }
    }
    let request = serde_json::to_vec(&RefreshRequest { full: body.full }).unwrap_or_default();
    for pc in &asked {
        let Ok(pc) = PcId::new(pc) else { continue };
        // Core NATS, no reply awaited: an agent that is away reports at its next start or interval.
        if let Err(err) = state.nats.publish(subject::inventory_refresh(&pc), request.clone().into()).await {
            tracing::warn!(pc_id = %pc, error = %err, "inventory refresh not sent");
        }
    }
    let target = if body.all { "all".to_owned() } else { format!("{} pcs", asked.len()) };
    let details = serde_json::json!({ "pcs": body.pcs, "groups": body.groups, "all": body.all, "full": body.full });
    caller.auditor(&state.nats).record("inventory-refresh", &target, details).await;
    Ok(Json(RefreshView { asked: asked.len() as u64, full: body.full }))
}
