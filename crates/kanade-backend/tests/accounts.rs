//! Operator accounts against a real backend and broker, on SQLite and PostgreSQL: the first admin from the one-time
//! setup token (never a default password), sign-in with the failed attempts slowed down, session tokens refreshed
//! and revoked, the dashboard's refresh cookie with its CSRF header, TOTP, API tokens capped at their owner's role;
//! disabling, removing, demoting a user or changing a password takes effect at the next request; the last admin
//! stays; and hostile input — forged, unsigned, foreign-key and expired JWTs, revoked tokens, oversized and
//! malformed bodies — gets a clear error, never a panic.

use base64::Engine as _;
use kanade_backend::accounts::{self, Claims};
use kanade_shared::access::{GroupScope, Role};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row as _;

mod support;

use support::accounts::{Accounts, PASSWORD, add_user, call, login, sign_in, start_backend};
use support::postgres;

fn bearer_of(tokens: &Value) -> String {
    tokens["access_token"].as_str().expect("a session token").to_owned()
}

/// The key the backend signs session tokens with, as it keeps it in its database.
async fn session_key(accounts: &Accounts) -> Vec<u8> {
    let row = sqlx::query("SELECT value FROM backend_settings WHERE key = 'jwt_secret'")
        .fetch_one(accounts.backend.db.pool())
        .await
        .expect("the stored key");
    let value: String = row.try_get("value").unwrap();
    base64::engine::general_purpose::STANDARD.decode(value).expect("base64")
}

fn claims_for(name: &str, role: Role, sid: &str, exp_in: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: name.into(),
        role,
        scope: GroupScope::Fleet,
        sid: sid.into(),
        iat: now,
        exp: now + exp_in,
        iss: accounts::ISSUER.into(),
    }
}

async fn session_of(base: &str, bearer: &str) -> Value {
    let reply = call(base, Method::GET, "/api/session", Some(bearer), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn the_first_admin_comes_from_the_one_time_setup_token_only() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let token = accounts.setup_token.clone().expect("a database without users prints a setup token");
    assert!(token.starts_with("kanade_setup_"), "{token}");

    // No default password: nobody can sign in before the setup.
    for (name, password) in [("admin", "admin"), ("admin", "password1234"), ("root", "")] {
        let reply =
            call(&base, Method::POST, "/api/login", None, Some(json!({"name": name, "password": password}))).await;
        assert_eq!((reply.status, reply.code()), (401, "login_failed"), "{name}/{password}");
    }
    let setup = |body: Value| call(&base, Method::POST, "/api/setup", None, Some(body));
    let wrong = accounts::SecretToken::generate(accounts::TokenKind::Setup).to_string();
    for (body, status, code) in [
        (json!({"setup_token": wrong, "name": "root", "password": PASSWORD}), 403, "setup_refused"),
        (json!({"setup_token": "kanade_setup_", "name": "root", "password": PASSWORD}), 403, "setup_refused"),
        (json!({"setup_token": token, "name": "Root User", "password": PASSWORD}), 400, "invalid_request"),
        (json!({"setup_token": token, "name": "root", "password": "short"}), 400, "invalid_request"),
        (json!({"setup_token": token, "name": "root"}), 400, "invalid_body"),
        (json!({"setup_token": token, "name": "root", "password": PASSWORD, "role": "viewer"}), 400, "invalid_body"),
    ] {
        let reply = setup(body.clone()).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {}", reply.body);
    }
    let made = setup(json!({"setup_token": token, "name": "root", "password": PASSWORD})).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!((made.body["role"].as_str(), made.body["scope"].as_str()), (Some("admin"), Some("fleet")));
    assert!(made.body.get("password_hash").is_none(), "{}", made.body);
    // Spent: once, and only while nobody exists.
    let again = setup(json!({"setup_token": token, "name": "root2", "password": PASSWORD})).await;
    assert_eq!((again.status, again.code()), (403, "setup_refused"));

    let admin = login(&base, "root", PASSWORD).await;
    let session = session_of(&base, &admin).await;
    assert_eq!(session["role"], "admin");
    assert_eq!(session["method"], "session");
    assert_eq!(session["user"], "root");
    assert_eq!(session["verified"], true);
    // The password is stored as an Argon2id hash, and no setup token is left.
    let row = sqlx::query("SELECT password_hash FROM users WHERE name = 'root'")
        .fetch_one(accounts.backend.db.pool())
        .await
        .unwrap();
    assert!(row.try_get::<String, _>("password_hash").unwrap().starts_with("$argon2id$"));
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM setup_tokens")
        .fetch_one(accounts.backend.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(left, 0);

    // A restart with users prints no setup token.
    let data = accounts.backend.stop().await;
    let restarted = kanade_testkit::TestBackend::start_tuned(
        &accounts.nats.url(),
        data,
        None,
        |c| c,
        |b| {
            assert_eq!(b.setup_token(), None, "users exist: no setup token");
            b
        },
    )
    .await;
    login(&restarted.url(), "root", PASSWORD).await;
}

#[tokio::test]
async fn sign_in_refuses_wrong_passwords_alike_and_slows_a_name_down() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    add_user(&base, &admin, "vera", "viewer", &[]).await;
    let try_login = |name: &str, password: &str| {
        let body = json!({"name": name, "password": password});
        call(&base, Method::POST, "/api/login", None, Some(body))
    };
    // A wrong password and an unknown name read the same.
    let wrong = try_login("vera", "not her password at all").await;
    let unknown = try_login("nobody", "not her password at all").await;
    assert_eq!((wrong.status, wrong.code()), (401, "login_failed"));
    assert_eq!(wrong.body, unknown.body);
    let bad_name = try_login(&"x".repeat(10_000), PASSWORD).await;
    assert_eq!((bad_name.status, bad_name.code()), (401, "login_failed"));

    for _ in 0..accounts::FREE_ATTEMPTS {
        try_login("otto-target", "wrong password here").await;
    }
    let held = try_login("otto-target", "wrong password here").await;
    assert_eq!(held.status, 401, "the attempt after the free ones is still checked");
    let held = try_login("otto-target", "wrong password here").await;
    assert_eq!((held.status, held.code()), (429, "too_many_attempts"), "{}", held.body);
    let retry: u64 = held.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // Another name is not held up by it.
    sign_in(&base, "vera", PASSWORD).await;
}

#[tokio::test]
async fn a_session_refreshes_once_per_refresh_token_and_ends_at_logout() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    accounts.first_admin("root").await;
    let tokens = sign_in(&base, "root", PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900, "15 minutes by default");
    assert_eq!(tokens["role"], "admin");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("kanade_refresh_"));

    let next = call(&base, Method::POST, "/api/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(next.status, 200, "{}", next.body);
    let new_refresh = next.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh, "a refresh replaces the refresh token");
    session_of(&base, &bearer_of(&next.body)).await;
    session_of(&base, &bearer_of(&tokens)).await;
    // The spent one is refused; the new one works.
    let spent = call(&base, Method::POST, "/api/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!((spent.status, spent.code()), (401, "unauthorized"));
    let tampered = format!("{}x", &new_refresh[..new_refresh.len() - 1]);
    let forged = call(&base, Method::POST, "/api/refresh", None, Some(json!({"refresh_token": tampered}))).await;
    assert_eq!(forged.status, 401);
    for body in [json!({}), json!({"refresh_token": ""}), json!({"refresh_token": "garbage"}), json!({"x": 1})] {
        let reply = call(&base, Method::POST, "/api/refresh", None, Some(body.clone())).await;
        assert!([400, 401].contains(&reply.status), "{body}: {}", reply.body);
    }

    // Logging out ends the session: its session tokens stop working at once, and so does its refresh token.
    let logout = call(&base, Method::POST, "/api/logout", None, Some(json!({"refresh_token": new_refresh}))).await;
    assert_eq!(logout.status, 204);
    for bearer in [bearer_of(&tokens), bearer_of(&next.body)] {
        let reply = call(&base, Method::GET, "/api/session", Some(&bearer), None).await;
        assert_eq!((reply.status, reply.code()), (401, "unauthorized"), "{}", reply.body);
    }
    let after = call(&base, Method::POST, "/api/refresh", None, Some(json!({"refresh_token": new_refresh}))).await;
    assert_eq!(after.status, 401);
    // A logout by the session token alone.
    let other = sign_in(&base, "root", PASSWORD).await;
    let reply = call(&base, Method::POST, "/api/logout", Some(&bearer_of(&other)), None).await;
    assert_eq!(reply.status, 204);
    assert_eq!(call(&base, Method::GET, "/api/session", Some(&bearer_of(&other)), None).await.status, 401);
}

#[tokio::test]
async fn the_dashboard_keeps_its_refresh_token_in_an_http_only_cookie_that_needs_the_csrf_header() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    accounts.first_admin("root").await;
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{base}/api/login"))
        .json(&json!({"name": "root", "password": PASSWORD, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["kanade_refresh=kanade_refresh_", "HttpOnly", "SameSite=Strict", "Path=/api", "Max-Age="] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert_eq!(login.headers()["cache-control"], "no-store");
    let body: Value = login.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "no script sees the refresh token: {body}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    // Without the CSRF header the cookie is not taken; with it, it is, and a new cookie replaces it.
    let refused = client.post(format!("{base}/api/refresh")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "csrf_header_missing");
    let refreshed = client
        .post(format!("{base}/api/refresh"))
        .header("cookie", &pair)
        .header("x-kanade-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let next_cookie = refreshed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(next_cookie.starts_with("kanade_refresh=") && !next_cookie.starts_with(&pair), "{next_cookie}");
    let body: Value = refreshed.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    session_of(&base, &bearer_of(&body)).await;
    // Logout clears the cookie.
    let next_pair = next_cookie.split(';').next().unwrap().to_owned();
    let out = client
        .post(format!("{base}/api/logout"))
        .header("cookie", &next_pair)
        .header("x-kanade-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(call(&base, Method::GET, "/api/session", Some(&bearer_of(&body)), None).await.status, 401);
}

#[tokio::test]
async fn disabling_removing_demoting_and_new_passwords_take_effect_at_the_next_request() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    add_user(&base, &admin, "otto", "operator", &["office"]).await;
    let otto = login(&base, "otto", PASSWORD).await;
    let session = session_of(&base, &otto).await;
    assert_eq!((session["role"].as_str(), session["scope"].clone()), (Some("operator"), json!(["office"])));
    let token = call(&base, Method::POST, "/api/tokens", Some(&otto), Some(json!({"ttl": "2h"}))).await;
    assert_eq!(token.status, 201, "{}", token.body);
    let api = token.body["token"].as_str().unwrap().to_owned();
    assert_eq!(session_of(&base, &api).await["method"], "api_token");

    // Demoted: the same session token now gets 403 where it got in before.
    let refresh = call(&base, Method::POST, "/api/inventory/refresh", Some(&otto), Some(json!({}))).await;
    assert_ne!(refresh.status, 403, "{}", refresh.body);
    let patch = call(&base, Method::PATCH, "/api/users/otto", Some(&admin), Some(json!({"role": "viewer"}))).await;
    assert_eq!(patch.status, 200, "{}", patch.body);
    for bearer in [&otto, &api] {
        let refused = call(&base, Method::POST, "/api/inventory/refresh", Some(bearer), Some(json!({}))).await;
        assert_eq!((refused.status, refused.code()), (403, "forbidden"), "{}", refused.body);
        assert_eq!(session_of(&base, bearer).await["role"], "viewer");
    }

    // Disabled: its session and API token stop at once, and it cannot sign in; enabled again, it can.
    let patch = call(&base, Method::PATCH, "/api/users/otto", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!((patch.status, patch.body["disabled"].as_bool()), (200, Some(true)));
    for bearer in [&otto, &api] {
        let refused = call(&base, Method::GET, "/api/agents", Some(bearer), None).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    let denied =
        call(&base, Method::POST, "/api/login", None, Some(json!({"name": "otto", "password": PASSWORD}))).await;
    assert_eq!((denied.status, denied.code()), (401, "login_failed"));
    assert!(denied.body["error"]["message"].as_str().unwrap().contains("disabled"));
    call(&base, Method::PATCH, "/api/users/otto", Some(&admin), Some(json!({"disabled": false}))).await;
    assert_eq!(session_of(&base, &api).await["user"], "otto", "an API token outlives a disable/enable");
    assert_eq!(call(&base, Method::GET, "/api/agents", Some(&otto), None).await.status, 401, "the session ended");
    let otto = login(&base, "otto", PASSWORD).await;

    // An admin's new password (the answer to a stolen account) ends every session and every API token.
    let new_password = "another long passphrase";
    let set =
        call(&base, Method::POST, "/api/users/otto/password", Some(&admin), Some(json!({"password": new_password})))
            .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(call(&base, Method::GET, "/api/agents", Some(&otto), None).await.status, 401);
    assert_eq!(call(&base, Method::GET, "/api/agents", Some(&api), None).await.status, 401, "the API token ended");
    let otto = login(&base, "otto", new_password).await;
    let token = call(&base, Method::POST, "/api/tokens", Some(&otto), Some(json!({"ttl": "2h"}))).await;
    assert_eq!(token.status, 201, "{}", token.body);
    let api = token.body["token"].as_str().unwrap().to_owned();
    // Their own change keeps the session that made it and ends the others.
    let first = login(&base, "otto", new_password).await;
    let second = login(&base, "otto", new_password).await;
    let own = json!({"current_password": new_password, "password": PASSWORD});
    let wrong = json!({"current_password": "not the current one", "password": PASSWORD});
    let refused = call(&base, Method::POST, "/api/session/password", Some(&first), Some(wrong)).await;
    assert_eq!((refused.status, refused.code()), (403, "login_failed"));
    let changed = call(&base, Method::POST, "/api/session/password", Some(&first), Some(own.clone())).await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    session_of(&base, &first).await;
    assert_eq!(call(&base, Method::GET, "/api/agents", Some(&second), None).await.status, 401);
    let by_token = call(&base, Method::POST, "/api/session/password", Some(&api), Some(own)).await;
    assert_eq!((by_token.status, by_token.code()), (409, "no_account"), "not with an API token");

    // Removed: everything of it stops.
    let removed = call(&base, Method::DELETE, "/api/users/otto", Some(&admin), None).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    for bearer in [&first, &api] {
        assert_eq!(call(&base, Method::GET, "/api/agents", Some(bearer), None).await.status, 401);
    }
    let gone = call(&base, Method::GET, "/api/users/otto", Some(&admin), None).await;
    assert_eq!((gone.status, gone.code()), (404, "user_not_found"));
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_disabled_demoted_or_removed() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    for (method, path, body) in [
        (Method::PATCH, "/api/users/root", Some(json!({"disabled": true}))),
        (Method::PATCH, "/api/users/root", Some(json!({"role": "approver"}))),
        (Method::DELETE, "/api/users/root", None),
    ] {
        let reply = call(&base, method.clone(), path, Some(&admin), body).await;
        assert_eq!((reply.status, reply.code()), (409, "last_admin"), "{method} {path}: {}", reply.body);
    }
    add_user(&base, &admin, "second", "admin", &[]).await;
    let reply = call(&base, Method::PATCH, "/api/users/root", Some(&admin), Some(json!({"role": "approver"}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // An admin is always fleet-wide; a scoped user must name real group names.
    let second = login(&base, "second", PASSWORD).await;
    for body in [
        json!({"name": "scoped", "role": "admin", "groups": ["office"], "password": PASSWORD}),
        json!({"name": "bad", "role": "viewer", "groups": ["Not A Group"], "password": PASSWORD}),
        json!({"name": "bad", "role": "root", "password": PASSWORD}),
        json!({"name": "bad", "role": "viewer", "password": "x"}),
        json!({"name": "bad", "role": "viewer", "password": "x".repeat(2000)}),
    ] {
        let reply = call(&base, Method::POST, "/api/users", Some(&second), Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    add_user(&base, &second, "vera", "viewer", &["office", "lab"]).await;
    let dup = call(
        &base,
        Method::POST,
        "/api/users",
        Some(&second),
        Some(json!({"name": "vera", "role": "viewer", "password": PASSWORD})),
    )
    .await;
    assert_eq!((dup.status, dup.code()), (409, "user_exists"));
    let listed = call(&base, Method::GET, "/api/users?limit=2", Some(&second), None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    let cursor = listed.body["next"].as_str().unwrap().to_owned();
    let rest = call(&base, Method::GET, &format!("/api/users?cursor={cursor}"), Some(&second), None).await;
    assert_eq!(rest.body["items"][0]["name"], "vera", "{}", rest.body);
    assert_eq!(rest.body["items"][0]["scope"], json!(["lab", "office"]));
}

#[tokio::test]
async fn api_tokens_carry_at_most_their_owners_role_and_stop_when_revoked() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    add_user(&base, &admin, "otto", "operator", &[]).await;
    let otto = login(&base, "otto", PASSWORD).await;
    let create = |bearer: String, body: Value| {
        let base = base.clone();
        async move { call(&base, Method::POST, "/api/tokens", Some(&bearer), Some(body)).await }
    };

    let above = create(otto.clone(), json!({"role": "admin"})).await;
    assert_eq!((above.status, above.code()), (403, "forbidden"), "{}", above.body);
    assert!(above.body["error"]["message"].as_str().unwrap().contains("above its owner"), "{}", above.body);
    for body in [json!({"ttl": "30m"}), json!({"ttl": "2y"}), json!({"ttl": "soon"}), json!({"role": "root"})] {
        let reply = create(otto.clone(), body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
    }
    let made = create(otto.clone(), json!({"role": "operator", "ttl": "90d", "name": "ci deploy"})).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.body["token"].as_str().unwrap().to_owned();
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&format!("kanade_api_{id}_")), "{token}");
    assert_eq!((made.body["role"].as_str(), made.body["state"].as_str()), (Some("operator"), Some("active")));
    // Stored as a hash only.
    let stored: String = sqlx::query("SELECT secret_hash FROM api_tokens WHERE id = $1")
        .bind(&id)
        .fetch_one(accounts.backend.db.pool())
        .await
        .unwrap()
        .try_get("secret_hash")
        .unwrap();
    assert!(!token.contains(&stored) && stored.len() == 64);

    let session = session_of(&base, &token).await;
    assert_eq!((session["role"].as_str(), session["user"].as_str()), (Some("operator"), Some("otto")));
    assert!(session["expires_at"].is_string());
    // A token does not make tokens; a person does.
    let nested = create(token.clone(), json!({})).await;
    assert_eq!((nested.status, nested.code()), (409, "no_account"));
    // The static token is no account.
    let static_token = create(kanade_testkit::TEST_TOKEN.to_owned(), json!({})).await;
    assert_eq!((static_token.status, static_token.code()), (409, "no_account"));

    let mine = call(&base, Method::GET, "/api/tokens", Some(&otto), None).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1, "{}", mine.body);
    assert!(mine.body["items"][0].get("token").is_none(), "never the secret again");
    let all = call(&base, Method::GET, "/api/tokens?all=true", Some(&otto), None).await;
    assert_eq!((all.status, all.code()), (403, "forbidden"));
    let all = call(&base, Method::GET, "/api/tokens?all=true", Some(&admin), None).await;
    assert_eq!(all.body["items"][0]["user"], "otto");
    // Another user's token is not theirs to revoke; a malformed id is refused.
    add_user(&base, &admin, "vera", "viewer", &[]).await;
    let vera = login(&base, "vera", PASSWORD).await;
    let not_hers = call(&base, Method::DELETE, &format!("/api/tokens/{id}"), Some(&vera), None).await;
    assert_eq!((not_hers.status, not_hers.code()), (404, "api_token_not_found"));
    for bad in ["UPPER", "short", &"a".repeat(300)] {
        let reply = call(&base, Method::DELETE, &format!("/api/tokens/{bad}"), Some(&otto), None).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_token_id"), "{bad}");
    }
    let revoked = call(&base, Method::DELETE, &format!("/api/tokens/{id}"), Some(&otto), None).await;
    assert_eq!((revoked.status, revoked.body["state"].as_str()), (200, Some("revoked")), "{}", revoked.body);
    let refused = call(&base, Method::GET, "/api/session", Some(&token), None).await;
    assert_eq!((refused.status, refused.code()), (401, "unauthorized"));
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("revoked"), "{}", refused.body);
    // A token with the right id and a wrong secret says nothing about the token.
    let forged = format!("kanade_api_{id}_{}", "a".repeat(32));
    let reply = call(&base, Method::GET, "/api/session", Some(&forged), None).await;
    assert_eq!(reply.body["error"]["message"], "invalid bearer token");

    // An expired token is refused.
    let made = create(otto.clone(), json!({"ttl": "1h"})).await;
    let expired_id = made.body["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE api_tokens SET expires_at_ms = 1 WHERE id = $1")
        .bind(&expired_id)
        .execute(accounts.backend.db.pool())
        .await
        .unwrap();
    let reply = call(&base, Method::GET, "/api/session", Some(made.body["token"].as_str().unwrap()), None).await;
    assert_eq!(reply.status, 401);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn sign_in_with_totp_needs_a_fresh_code_each_time() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    add_user(&base, &admin, "anna", "approver", &[]).await;
    let enabled = call(&base, Method::POST, "/api/users/anna/totp", Some(&admin), None).await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let secret = enabled.body["secret"].as_str().unwrap().to_owned();
    let url = enabled.body["otpauth_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/kanade:anna?") && url.contains(&secret), "{url}");
    assert_eq!(call(&base, Method::GET, "/api/users/anna", Some(&admin), None).await.body["totp"], true);

    let login = |totp: Option<String>| {
        let mut body = json!({"name": "anna", "password": PASSWORD});
        if let Some(code) = totp {
            body["totp"] = json!(code);
        }
        call(&base, Method::POST, "/api/login", None, Some(body))
    };
    let needs = login(None).await;
    assert_eq!((needs.status, needs.code()), (401, "totp_required"));
    let wrong = login(Some("000000".into())).await;
    // A wrong code is refused (the real one may be 000000 once in a million times: then the next step's is used).
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    let code = accounts::totp_code(&secret, now).unwrap();
    if code != "000000" {
        assert_eq!((wrong.status, wrong.code()), (401, "login_failed"));
    }
    let ok = login(Some(code.clone())).await;
    if ok.status != 200 {
        // The step changed between reading the clock and the check: the next code is good.
        let next = accounts::totp_code(&secret, now + 30).unwrap();
        assert_eq!(login(Some(next)).await.status, 200);
    } else {
        let replay = login(Some(code)).await;
        assert_eq!((replay.status, replay.code()), (401, "login_failed"), "a code is taken once");
    }
    // Without the password, the code alone is nothing.
    let body =
        json!({"name": "anna", "password": "wrong password here", "totp": accounts::totp_code(&secret, now).unwrap()});
    assert_eq!(call(&base, Method::POST, "/api/login", None, Some(body)).await.status, 401);
    let off = call(&base, Method::DELETE, "/api/users/anna/totp", Some(&admin), None).await;
    assert_eq!(off.body["totp"], false);
    sign_in(&base, "anna", PASSWORD).await;
}

#[tokio::test]
async fn a_users_signing_key_is_checked_before_it_is_registered() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    add_user(&base, &admin, "otto", "operator", &[]).await;
    for bad in
        ["", "ed25519:", "ed25519:abc", "ssh-ed25519 AAAA", &format!("ed25519:{}", "A".repeat(43)), &"x".repeat(5000)]
    {
        let reply =
            call(&base, Method::PUT, "/api/users/otto/key", Some(&admin), Some(json!({"public_key": bad}))).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_request"), "{bad:.40}: {}", reply.body);
    }
    let key = kanade_shared::authority::SigningKey::generate().public_key().to_string();
    let set = call(&base, Method::PUT, "/api/users/otto/key", Some(&admin), Some(json!({"public_key": key}))).await;
    assert_eq!((set.status, set.body["signing_key"].as_str()), (200, Some(key.as_str())), "{}", set.body);
    let missing =
        call(&base, Method::PUT, "/api/users/nobody/key", Some(&admin), Some(json!({"public_key": key}))).await;
    assert_eq!((missing.status, missing.code()), (404, "user_not_found"));
    let cleared = call(&base, Method::DELETE, "/api/users/otto/key", Some(&admin), None).await;
    assert_eq!(cleared.body["signing_key"], Value::Null);
}

#[tokio::test]
async fn hostile_session_tokens_and_bodies_get_clear_errors() {
    let accounts = Accounts::start(None).await;
    let base = accounts.url();
    let admin = accounts.first_admin("root").await;
    let sid = session_of(&base, &admin).await;
    assert_eq!(sid["method"], "session");
    let key = session_key(&accounts).await;
    let real = accounts::verify_session(&admin, &key).expect("the backend's own token verifies with its stored key");

    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = serde_json::to_value(claims_for("root", Role::Admin, &real.sid, 600)).unwrap();
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    let foreign = accounts::sign_session(&claims_for("root", Role::Admin, &real.sid, 600), &[7u8; 32]).unwrap();
    let expired = accounts::sign_session(&claims_for("root", Role::Admin, &real.sid, -120), &key).unwrap();
    let no_session = accounts::sign_session(&claims_for("root", Role::Admin, "made-up", 600), &key).unwrap();
    let other_user = accounts::sign_session(&claims_for("mallory", Role::Admin, &real.sid, 600), &key).unwrap();
    let mut parts: Vec<&str> = admin.split('.').collect();
    let escalated = b64(&serde_json::to_value(claims_for("root", Role::Admin, &real.sid, 99_999)).unwrap());
    parts[1] = &escalated;
    let tampered = parts.join(".");
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned, "unauthorized"),
        ("signed with another key", foreign, "unauthorized"),
        ("expired", expired, "token_expired"),
        ("a session that never was", no_session, "unauthorized"),
        ("another user's name in a real session", other_user, "unauthorized"),
        ("a tampered payload", tampered, "unauthorized"),
        ("three dots of nothing", "a.b.c".into(), "unauthorized"),
        ("a huge token", format!("{}.{}.{}", "a".repeat(100_000), "b".repeat(10), "c"), "unauthorized"),
        (
            "a refresh token as bearer",
            "kanade_refresh_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            "unauthorized",
        ),
        ("a made-up API token", format!("kanade_api_{}_{}", "a".repeat(16), "b".repeat(32)), "unauthorized"),
    ];
    for (what, token, code) in cases {
        let reply = call(&base, Method::GET, "/api/agents", Some(&token), None).await;
        assert!([401, 431].contains(&reply.status), "{what}: {} {}", reply.status, reply.body);
        if reply.status == 401 {
            assert_eq!(reply.code(), code, "{what}: {}", reply.body);
        }
    }
    // The real one still works: nothing above broke anything.
    session_of(&base, &admin).await;

    // Bodies: oversized, not JSON, wrong shapes.
    let huge = json!({"name": "root", "password": "p".repeat(64 * 1024)});
    let reply = call(&base, Method::POST, "/api/login", None, Some(huge)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.code(), "invalid_body");
    let not_json = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .header("content-type", "text/plain")
        .body("name=root&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    for body in [json!([]), json!({"name": 1, "password": 2}), json!({"name": "root"}), json!("root")] {
        let reply = call(&base, Method::POST, "/api/login", None, Some(body.clone())).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_body"), "{body}");
    }
    let long_password = json!({"name": "root", "password": "p".repeat(2000)});
    let reply = call(&base, Method::POST, "/api/login", None, Some(long_password)).await;
    assert_eq!((reply.status, reply.code()), (401, "login_failed"));
}

/// Two backends on one PostgreSQL database: the first makes the session key and the second reads the same, so a
/// session token from one works on the other; a logout on one ends the session on both at once.
#[tokio::test]
async fn replicas_on_one_postgres_database_share_the_key_and_the_sessions() {
    let database = postgres::TestDatabase::create().await;
    let accounts = Accounts::start(Some(database.url.clone())).await;
    let admin = accounts.first_admin("root").await;
    let (replica, setup) = start_backend(&accounts.nats.url(), Some(database.url.clone())).await;
    assert_eq!(setup, None, "users exist: the second backend prints no setup token");
    let (a, b) = (accounts.url(), replica.url());
    add_user(&b, &admin, "vera", "viewer", &[]).await;
    let tokens = sign_in(&a, "vera", PASSWORD).await;
    let vera = bearer_of(&tokens);
    assert_eq!(session_of(&b, &vera).await["user"], "vera");
    let next =
        call(&b, Method::POST, "/api/refresh", None, Some(json!({"refresh_token": tokens["refresh_token"]}))).await;
    assert_eq!(next.status, 200, "{}", next.body);
    let disabled = call(&a, Method::PATCH, "/api/users/vera", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200);
    for base in [&a, &b] {
        assert_eq!(call(base, Method::GET, "/api/agents", Some(&bearer_of(&next.body)), None).await.status, 401);
    }
    let refused = call(&b, Method::PATCH, "/api/users/root", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!((refused.status, refused.code()), (409, "last_admin"));
    drop(replica);
}

/// Two backends with no user, each with its own setup token, make one first admin between them.
#[tokio::test]
async fn two_setup_tokens_at_once_make_one_first_admin_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    let accounts = Accounts::start(Some(database.url.clone())).await;
    let (replica, second) = start_backend(&accounts.nats.url(), Some(database.url.clone())).await;
    let (first, second) = (accounts.setup_token.clone().unwrap(), second.expect("a second setup token"));
    assert_ne!(first, second);
    let (url_a, url_b) = (accounts.url(), replica.url());
    let a = call(
        &url_a,
        Method::POST,
        "/api/setup",
        None,
        Some(json!({"setup_token": first, "name": "alpha", "password": PASSWORD})),
    );
    let b = call(
        &url_b,
        Method::POST,
        "/api/setup",
        None,
        Some(json!({"setup_token": second, "name": "beta", "password": PASSWORD})),
    );
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert!(statuses[0] == 201 && [403, 500].contains(&statuses[1]), "one admin: {} {}", a.body, b.body);
    let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(accounts.backend.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(users, 1);
}
