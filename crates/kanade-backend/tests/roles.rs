//! Every route with every role, taken from the router's own table (`kanade_backend::api::routes`), so a route added
//! tomorrow is walked too: with no token every non-public route is 401; a caller below the route's role gets 403
//! `forbidden`; a caller at or above it is let through (whatever the handler then says of the made-up ids, it is
//! never 401 or 403). The callers are real sessions of a viewer, an operator, an approver and an admin who signed
//! in, an admin's API token cut down to `viewer`, and the static token (an admin, for bootstrap).

use std::time::Duration;

use kanade_backend::api::{Need, RouteSpec, routes};
use kanade_shared::access::Role;
use kanade_testkit::TEST_TOKEN;
use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::accounts::{Accounts, add_user, call, login};

/// A made-up value for each path parameter: valid where the handler checks the shape, pointing at nothing.
fn concrete(path: &str) -> String {
    path.replace("{pc_id}", "pc-1")
        .replace("{job_id}", "job-1")
        .replace("{exec_id}", "never-fired")
        .replace("{result_id}", "never-fired.pc-1")
        .replace("{schedule_id}", "sched-1")
        .replace("{token_id}", "aaaaaaaaaaaaaaaa")
        .replace("{id}", "aaaaaaaaaaaaaaaa")
        .replace("{name}", "nobody")
        .replace("{version}", "1.0.0")
}

struct Answer {
    status: u16,
    code: String,
    message: String,
}

/// One request as the walk makes it: `{}` as the body of a POST, PUT or PATCH; an event stream's body is not read.
async fn ask(base: &str, route: &RouteSpec, bearer: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .request(route.method.clone(), format!("{base}{}", concrete(&route.path)))
        .timeout(Duration::from_secs(20));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if [Method::POST, Method::PUT, Method::PATCH].contains(&route.method) {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap_or_else(|err| panic!("{} {}: {err}", route.method, route.path));
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body: Value = if json && route.method != Method::HEAD {
        tokio::time::timeout(Duration::from_secs(10), response.json())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    } else {
        Value::Null
    };
    Answer {
        status,
        code: body["error"]["code"].as_str().unwrap_or_default().to_owned(),
        message: body["error"]["message"].as_str().unwrap_or_default().to_owned(),
    }
}

#[tokio::test]
async fn every_route_lets_in_exactly_the_roles_it_declares() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    let mut callers: Vec<(String, Role, String)> = vec![("admin session".into(), Role::Admin, admin.clone())];
    for (name, role) in [("vera", Role::Viewer), ("otto", Role::Operator), ("anna", Role::Approver)] {
        add_user(&base, &admin, name, role.as_str(), &[]).await;
        callers.push((format!("{role} session"), role, login(&base, name, support::accounts::PASSWORD).await));
    }
    let cut = call(&base, Method::POST, "/api/tokens", Some(&admin), Some(json!({ "role": "viewer" }))).await;
    assert_eq!(cut.status, 201, "{}", cut.body);
    callers.push(("an admin's viewer API token".into(), Role::Viewer, cut.body["token"].as_str().unwrap().to_owned()));
    callers.push(("the static token".into(), Role::Admin, TEST_TOKEN.to_owned()));

    let table = routes();
    assert!(table.len() > 60, "the whole table: {}", table.len());
    let mut walked = 0;
    for route in &table {
        let what = format!("{} {}", route.method, route.path);
        let needed = match route.need {
            Need::Public => {
                let answer = ask(&base, route, None).await;
                assert!(
                    answer.code != "forbidden" && !answer.message.contains("missing `Authorization"),
                    "{what} is public: {} {}",
                    answer.status,
                    answer.message
                );
                continue;
            }
            Need::Role(role) => role,
        };
        let anonymous = ask(&base, route, None).await;
        assert_eq!(anonymous.status, 401, "{what} without a token");
        for (who, role, token) in &callers {
            let answer = ask(&base, route, Some(token)).await;
            if role.allows(needed) {
                assert!(
                    answer.status != 401 && answer.status != 403,
                    "{what} needs {needed}: {who} ({role}) was refused: {} {} {}",
                    answer.status,
                    answer.code,
                    answer.message
                );
            } else {
                assert_eq!(answer.status, 403, "{what} needs {needed}: {who} ({role}) got in");
                if route.method != Method::HEAD {
                    assert_eq!(answer.code, "forbidden", "{what}: {who}");
                    assert!(answer.message.contains(needed.as_str()), "{what}: {}", answer.message);
                }
            }
            walked += 1;
        }
    }
    assert!(walked > 300, "every route with every caller: {walked}");
}

#[test]
fn the_table_gives_the_roles_the_issue_names() {
    let need = |method: Method, path: &str| {
        routes()
            .into_iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not routed"))
            .need
    };
    assert_eq!(need(Method::GET, "/api/agents"), Need::Role(Role::Viewer));
    assert_eq!(need(Method::GET, "/api/audit"), Need::Role(Role::Viewer));
    assert_eq!(need(Method::POST, "/api/exec/{job_id}"), Need::Role(Role::Operator));
    assert_eq!(need(Method::POST, "/api/executions/{exec_id}/kill"), Need::Role(Role::Operator));
    assert_eq!(need(Method::POST, "/api/jobs"), Need::Role(Role::Operator));
    assert_eq!(need(Method::POST, "/api/schedules"), Need::Role(Role::Operator));
    assert_eq!(need(Method::POST, "/api/executions/{exec_id}/approve"), Need::Role(Role::Approver));
    assert_eq!(need(Method::POST, "/api/executions/{exec_id}/reject"), Need::Role(Role::Approver));
    assert_eq!(need(Method::POST, "/api/users"), Need::Role(Role::Admin));
    assert_eq!(need(Method::POST, "/api/enroll/tokens"), Need::Role(Role::Admin));
    assert_eq!(need(Method::POST, "/api/agents/{pc_id}/revoke"), Need::Role(Role::Admin));
    assert_eq!(need(Method::PUT, "/api/agents/{pc_id}/groups"), Need::Role(Role::Admin));
    assert_eq!(need(Method::POST, "/api/tokens"), Need::Role(Role::Viewer), "own tokens: any role");
    assert_eq!(need(Method::POST, "/api/login"), Need::Public);
    // Every route is in the table once.
    let mut seen = std::collections::BTreeSet::new();
    for route in routes() {
        assert!(seen.insert((route.method.to_string(), route.path.clone())), "{} {} twice", route.method, route.path);
    }
}
