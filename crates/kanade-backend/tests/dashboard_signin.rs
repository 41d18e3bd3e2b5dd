//! Signing in to the dashboard with a name and password, end to end: the real backend (with the dashboard embedded)
//! with operator accounts — the first admin made with the setup token, a viewer, and an operator with TOTP — a real
//! nats-server and agent, and a rollout left running and a run waiting for approval so there is something to kill
//! and approve; driven in headless Chromium by `web/e2e/signin.test.mjs` (playwright-core): a wrong password, a
//! throttled name, an unreachable backend, signing in (the session token in memory, the refresh token in an
//! HttpOnly cookie), a reload that stays signed in, a refused token renewed once, the TOTP step, signing out for
//! good, and a viewer who is offered no fire, kill or approve buttons. Screenshots land in
//! `target/dashboard-artifacts/signin-*.png`.
//!
//! It needs Node.js, `web/node_modules` and Chromium, as `tests/dashboard.rs` does: `cargo xtask web` obtains them.
//! Without them the test fails and says so; it never passes without having run the browser.

use std::collections::BTreeSet;
use std::time::Duration;

use kanade_testkit::{TEST_TOKEN, TestAgent, eventually};
use reqwest::Method;
use serde_json::json;

mod support;

use support::accounts::{Accounts, PASSWORD, add_user, call};
use support::browser;

const PC: &str = "pc-signin";
const ADMIN: &str = "ada";
const VIEWER: &str = "vera";
/// An operator whose sign-in needs a TOTP code.
const TOTP_USER: &str = "tess";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_name_and_password_works_in_a_real_browser() {
    browser::require_prerequisites();
    let accounts = Accounts::start(None).await;
    let backend = &accounts.backend;
    let page = reqwest::get(format!("{}/", accounts.url())).await.expect("GET /").text().await.expect("page");
    assert!(
        page.contains("id=\"root\""),
        "the backend serves no built dashboard (was kanade-backend compiled before `cargo xtask web`?):\n{page}"
    );
    let admin = accounts.first_admin(ADMIN).await;
    add_user(&accounts.url(), &admin, VIEWER, "viewer", &[]).await;
    add_user(&accounts.url(), &admin, TOTP_USER, "operator", &[]).await;
    let totp = call(&accounts.url(), Method::POST, &format!("/api/users/{TOTP_USER}/totp"), Some(&admin), None).await;
    assert_eq!(totp.status, 200, "enable TOTP: {}", totp.body);
    let secret = totp.body["secret"].as_str().expect("a TOTP secret").to_owned();

    let _agent = TestAgent::start(&accounts.nats.url(), PC, &["lab"]).await;
    backend.wait_for_agents(1).await;
    // Two waves, the second an hour away: the execution stays unsettled, so the page offers Kill to those who may.
    let rolling = "id: rolling\nversion: \"1.0\"\ndescription: two waves (sign-in test)\ntarget:\n  all: true\n\
                   execute:\n  shell: sh\n  script: 'echo rolled'\n  timeout: 60s\nrollout:\n  strategy: wave\n  \
                   waves:\n    - group: lab\n    - group: later\n      delay: 1h\n";
    let guarded = "id: guarded\nversion: \"1.0\"\ntarget:\n  all: true\nexecute:\n  shell: sh\n  script: 'echo ok'\n  \
                   timeout: 60s\nrequire_approval: true\n";
    for manifest in [rolling, guarded] {
        let (status, body) = backend.post("/api/jobs", &json!({ "manifest": manifest })).await;
        assert!(status == 201 || status == 200, "job create: {status} {body}");
    }
    let (status, fired) = backend.post("/api/exec/rolling", &json!({})).await;
    assert_eq!(status, 201, "exec rolling: {fired}");
    let (status, pending) = backend.post("/api/exec/guarded", &json!({})).await;
    assert_eq!((status, pending["status"].as_str()), (201, Some("pending_approval")), "exec guarded: {pending}");

    let env = [
        ("KANADE_URL", accounts.url()),
        ("KANADE_TOKEN", TEST_TOKEN.to_owned()),
        ("KANADE_PASSWORD", PASSWORD.to_owned()),
        ("KANADE_ADMIN", ADMIN.to_owned()),
        ("KANADE_VIEWER", VIEWER.to_owned()),
        ("KANADE_TOTP_USER", TOTP_USER.to_owned()),
        ("KANADE_TOTP_SECRET", secret),
        ("KANADE_ROLLING_EXEC", fired["exec_id"].as_str().expect("exec id").to_owned()),
        ("KANADE_PENDING_EXEC", pending["exec_id"].as_str().expect("exec id").to_owned()),
    ];
    browser::run("e2e/signin.test.mjs", &env).await;

    // What the browser did, as the backend recorded it: each account signed in with the cookie, and ada's
    // sign-out ended her session on the backend (not only in the page).
    let actors = |action: &'static str| async move {
        let (_, audit) = backend.get(&format!("/api/audit?action={action}&limit=200")).await;
        let items = audit["items"].as_array()?;
        Some(items.iter().filter_map(|e| e["actor"].as_str().map(str::to_owned)).collect::<BTreeSet<String>>())
    };
    let wanted: BTreeSet<String> = [ADMIN, VIEWER, TOTP_USER].into_iter().map(str::to_owned).collect();
    eventually("every account's sign-in audited", Duration::from_secs(10), || async {
        actors("login").await.filter(|seen| seen.is_superset(&wanted))
    })
    .await;
    eventually("ada's sign-out audited", Duration::from_secs(10), || async {
        actors("logout").await.filter(|seen| seen.contains(ADMIN))
    })
    .await;
}
