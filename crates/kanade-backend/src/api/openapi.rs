//! The OpenAPI document of the HTTP API, generated from the handlers' `#[utoipa::path]` annotations and the
//! contract types in `kanade_shared::api`. It is committed as `schema/openapi.json` (a test fails when it is
//! stale), served at `GET /api/openapi.json`, and the dashboard's TypeScript types are generated from it.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    agent_events, agents, audit, enrollment, executions, inventory, jobs, login, output, packages, perf, results,
    schedules, session, streams, tokens, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kanade backend",
        description = "The HTTP API of kanade-backend. Every `/api` route but the sign-in ones needs \
                       `Authorization: Bearer <token>` unless auth is disabled: a session token from `POST /api/login`, \
                       an API token, a per-operator token or the static token (with which `x-kanade-operator` names \
                       the operator). Every route needs a role (viewer < operator < approver < admin); below it the \
                       answer is 403 `forbidden`. Every error has the same body: `{\"error\": {\"code\", \
                       \"message\"}}`, with `code` one of `ErrorCode`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        login::setup,
        login::login,
        login::refresh,
        login::logout,
        session::session,
        users::own_password,
        users::create,
        users::list,
        users::get,
        users::update,
        users::delete,
        users::set_password,
        users::enable_totp,
        users::disable_totp,
        users::set_key,
        users::clear_key,
        tokens::create,
        tokens::list,
        tokens::revoke,
        session::health,
        agents::list,
        agents::get,
        agents::remove,
        agents::ping,
        agents::config,
        agent_events::of_agent,
        agent_events::fleet,
        inventory::job_facts,
        inventory::of_agent,
        inventory::titles,
        inventory::software,
        inventory::changes,
        inventory::hardware,
        inventory::hardware_summary,
        inventory::refresh,
        results::list,
        jobs::list,
        jobs::create,
        jobs::get,
        jobs::delete,
        jobs::revoke,
        jobs::unrevoke,
        executions::preview,
        executions::exec,
        executions::deploy,
        executions::list,
        executions::get,
        executions::results,
        executions::targets,
        streams::output,
        perf::live,
        perf::history,
        executions::approve,
        executions::reject,
        executions::kill,
        streams::events,
        audit::list,
        audit::chain,
        schedules::list,
        schedules::create,
        schedules::get,
        schedules::delete,
        schedules::pause,
        schedules::resume,
        schedules::run_now,
        enrollment::create_token,
        enrollment::list_tokens,
        enrollment::revoke_token,
        enrollment::list_enrollments,
        enrollment::approve,
        enrollment::revoke_agent,
        enrollment::set_groups,
        packages::serve,
        output::output,
        openapi_json,
    ),
    components(schemas(
        kanade_shared::api::ErrorCode,
        kanade_shared::api::ExecutionView,
        kanade_shared::api::PerfLiveState,
        kanade_shared::api::PerfHistoryEvent,
        kanade_shared::perf::HostSample,
        kanade_shared::perf::ProcSample
    ))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|err| {
        // The document is built from types, not input: failing to encode it is a bug, reported in the body.
        tracing::error!(error = %err, "cannot encode the OpenAPI document");
        String::from("{}")
    });
    text.push('\n');
    text
}

/// `GET /api/openapi.json`: the API's contract. Public, like `/health`: it describes the API, it holds no data.
#[utoipa::path(get, path = "/api/openapi.json", tag = "session", operation_id = "openapi_json", security(), responses((status = 200, description = "this document", content_type = "application/json")))]
pub(super) async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(document).clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_committed_openapi_document_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != document() {
            if std::env::var_os("KANADE_BLESS").is_some() {
                std::fs::write(&path, document()).unwrap();
            } else {
                panic!(
                    "schema/openapi.json is stale: run `KANADE_BLESS=1 cargo test -p kanade-backend --lib` and commit it"
                );
            }
        }
    }

    #[test]
    fn every_error_code_is_in_the_document() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let expected: Vec<&str> = kanade_shared::api::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(*codes, serde_json::json!(expected));
    }
}
