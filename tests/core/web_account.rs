//! A member's account: a forgotten password by a one-time link (hashed, 30 minutes, once),
//! "set your password" for members created through the API, the data download, and
//! closing the account (anonymised, the ledger kept).

use member_portal::service::accounts;
use serde_json::{Value, json};
use time::Duration;

use crate::harness::earn_req;
use crate::web_harness::*;

/// The token of the newest password link sent to `user`, from its outbox message.
async fn link_token(app: &TestApp, user: i64) -> (String, String) {
    let (purpose, link): (String, String) = sqlx::query_as(
        "select payload->>'purpose', payload->>'link' from notifications
          where user_id = $1 and kind = 'member.password_reset' order by id desc limit 1",
    )
    .bind(user)
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    let token = link.split("token=").nth(1).unwrap().to_owned();
    (purpose, token)
}

#[tokio::test]
async fn a_forgotten_password_is_reset_once_by_a_link_that_works_for_thirty_minutes() {
    let app = spawn_app().await;
    let ann = app.member("ann@example.com").await;
    let r = app
        .post("/password/forgot", &[("email", "ANN@example.com")])
        .await;
    assert_eq!(r.status(), 200);
    let sent = r.text().await.unwrap();
    assert!(sent.contains("id=\"forgot-sent\""));
    // an unknown email gets the same page
    let other = app.another_browser();
    let unknown = other
        .post("/password/forgot", &[("email", "nobody@example.com")])
        .await;
    assert!(unknown.text().await.unwrap().contains("id=\"forgot-sent\""));
    let (purpose, token) = link_token(&app, ann).await;
    assert_eq!(purpose, "reset");
    assert_eq!(token.len(), 64);
    let stored: String =
        sqlx::query_scalar("select token_hash from account_tokens where user_id = $1")
            .bind(ann)
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap();
    assert_ne!(stored, token, "only the hash is stored");
    // the member's own notification list says a link was sent, never the link
    app.login("ann@example.com", PASSWORD).await;
    assert_eq!(app.get("/profile").await.status(), 200);
    let notes = app.text("/notifications").await;
    assert!(notes.contains("已发送设置密码的链接") && !notes.contains(&token));

    let form = other.text(&format!("/password/reset?token={token}")).await;
    assert!(form.contains(&format!("value=\"{token}\"")));
    let r = other
        .post(
            "/password/reset",
            &[("token", &token), ("password", "password")],
        )
        .await;
    assert_eq!(r.status(), 422, "a common password is refused");
    let r = other
        .post(
            "/password/reset",
            &[("token", &token), ("password", "a brand new secret")],
        )
        .await;
    assert_eq!(location(&r), "/login?done=password");
    assert!(
        other
            .text("/login?done=password")
            .await
            .contains("新密码已保存")
    );
    let again = other
        .post(
            "/password/reset",
            &[("token", &token), ("password", "another new secret")],
        )
        .await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("该链接已过期或已使用"));
    // the new password ends the account's sessions on every browser: here `app`, which
    // was logged in as ann (its cached copy too: it was read a moment ago)
    assert_eq!(
        location(&app.get("/profile").await),
        "/login?next=%2Fprofile",
        "a browser logged in before the reset is logged out"
    );
    let fresh = app.another_browser();
    assert_eq!(fresh.login("ann@example.com", PASSWORD).await.status(), 401);
    assert_eq!(
        location(&fresh.login("ann@example.com", "a brand new secret").await),
        "/profile"
    );
    assert_eq!(fresh.get("/profile").await.status(), 200);

    // a link older than 30 minutes does nothing
    accounts::request_password_link(&app.s.ctx, "ann@example.com")
        .await
        .unwrap();
    let (_, late) = link_token(&app, ann).await;
    app.clock.advance(Duration::minutes(31));
    let r = other
        .post(
            "/password/reset",
            &[("token", &late), ("password", "too late a secret")],
        )
        .await;
    assert_eq!(r.status(), 422);
    // at most three links an hour
    for _ in 0..5 {
        accounts::request_password_link(&app.s.ctx, "ann@example.com")
            .await
            .unwrap();
    }
    let n: i64 = sqlx::query_scalar(
        "select count(*) from account_tokens where user_id = $1 and created_at >= $2",
    )
    .bind(ann)
    .bind(member_portal::clock::Clock::now(&app.clock) - Duration::hours(1))
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn a_member_created_through_the_api_without_a_password_gets_a_link_to_set_one() {
    let app = spawn_app().await;
    let key = accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/api/v1/members"))
        .bearer_auth(&key)
        .json(&json!({"email": "new@example.com", "display_name": "New"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let user = r.json::<Value>().await.unwrap()["user_id"]
        .as_i64()
        .unwrap();
    let (purpose, token) = link_token(&app, user).await;
    assert_eq!(purpose, "set");
    // still good after a day (a welcome link lasts a week)
    app.clock.advance(Duration::days(1));
    let r = app
        .post(
            "/password/reset",
            &[("token", &token), ("password", "my first secret")],
        )
        .await;
    assert_eq!(location(&r), "/login?done=password");
    assert_eq!(
        location(&app.login("new@example.com", "my first secret").await),
        "/profile"
    );
}

#[tokio::test]
async fn a_member_downloads_their_data_and_closes_the_account_which_keeps_the_ledger_anonymous() {
    let app = spawn_app().await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 120, "O1", Some("50")))
        .await
        .unwrap();
    app.s
        .points
        .use_points(crate::harness::use_req(ann, 20, "P1"))
        .await
        .unwrap();
    sqlx::query("update member_profiles set phone = '+86 138-0000-0009', external_id = 'CRM-9' where user_id = $1")
        .bind(ann)
        .execute(&app.s.ctx.pool)
        .await
        .unwrap();
    app.s
        .members
        .add_note(ann, "prefers calls after 6pm", None)
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let phone_browser = app.another_browser();
    phone_browser.login("ann@example.com", PASSWORD).await;
    assert_eq!(phone_browser.get("/profile").await.status(), 200);
    let r = app.get("/account/export").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let data: Value = r.json().await.unwrap();
    assert_eq!(data["member"]["email"], "ann@example.com");
    assert_eq!(data["transactions"].as_array().unwrap().len(), 2);
    assert_eq!(data["points"]["available"], 100);

    let r = app
        .post(
            "/account/close",
            &[("password", "not it"), ("understood", "yes")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = app.post("/account/close", &[("password", PASSWORD)]).await;
    assert_eq!(r.status(), 422, "the box is not ticked");
    let r = app
        .post(
            "/account/close",
            &[("password", PASSWORD), ("understood", "yes")],
        )
        .await;
    assert_eq!(location(&r), "/login?done=closed");
    assert_eq!(
        location(&app.get("/profile").await),
        "/login?next=%2Fprofile",
        "logged out"
    );
    assert_eq!(
        location(&phone_browser.get("/profile").await),
        "/login?next=%2Fprofile",
        "the account's other browser is logged out too"
    );
    let tracked: i64 = sqlx::query_scalar("select count(*) from user_sessions where user_id = $1")
        .bind(ann)
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(tracked, 0);
    let fresh = app.another_browser();
    assert_eq!(fresh.login("ann@example.com", PASSWORD).await.status(), 401);
    let (email, name, closed): (String, String, bool) = sqlx::query_as(
        "select email, display_name, closed_at is not null from users where id = $1",
    )
    .bind(ann)
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!(
        (email.as_str(), name.as_str(), closed),
        (
            format!("closed-{ann}@closed.invalid").as_str(),
            "closed",
            true
        )
    );
    let (phone, external, notes): (Option<String>, Option<String>, i64) = sqlx::query_as(
        "select phone, external_id, (select count(*) from member_notes where user_id = $1)
           from member_profiles where user_id = $1",
    )
    .bind(ann)
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!(
        (phone, external, notes),
        (None, None, 0),
        "nothing left that names her"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("select count(*) from point_transactions where user_id = $1")
            .bind(ann)
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap(),
        2,
        "the ledger keeps its rows"
    );
    // the email may sign up again as a new member
    app.member("ann@example.com").await;
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}
