//! Member pages over HTTP: content, htmx fragments, isolation, escaping, headers.

use crate::harness::{earn_req, use_req};
use crate::web_harness::*;

#[tokio::test]
async fn profile_shows_code_level_benefits_balance_and_expiring_points() {
    let app = spawn_app().await;
    let user = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(user, 300, "O1", Some("1200")))
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let html = app.text("/profile").await;
    for expected in [
        "M2025091800001",
        "银牌会员",
        "98折",
        "积分1.2倍",
        "id=\"points-available\">300<",
        "金牌会员",
    ] {
        assert!(html.contains(expected), "{expected} missing");
    }
    let en = app
        .client
        .post(app.url("/lang"))
        .form(&[("lang", "en"), ("csrf_token", &app.csrf().await)])
        .send()
        .await
        .unwrap();
    assert_eq!(en.status(), 303);
    let html = app.text("/profile").await;
    assert!(
        html.contains("2% off") && html.contains("Points available"),
        "English profile"
    );
}

#[tokio::test]
async fn points_history_loads_more_by_cursor_and_htmx_gets_only_the_rows() {
    let app = spawn_app().await;
    let user = app.member("ann@example.com").await;
    for i in 0..25 {
        app.s
            .points
            .earn_points(earn_req(user, 10, &format!("O{i}"), None))
            .await
            .unwrap();
    }
    app.s
        .points
        .use_points(use_req(user, 5, "PAY"))
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let page = app.text("/points").await;
    assert!(page.starts_with("<!doctype html>"));
    assert_eq!(page.matches("<tr class=\"tx").count(), 20);
    let at = page
        .find("hx-get=\"/points?cursor=")
        .expect("a load-more link")
        + "hx-get=\"".len();
    let more = page[at..].split('"').next().unwrap().to_owned();
    // without JavaScript the link is a whole page
    let full = app.text(&more).await;
    assert!(full.starts_with("<!doctype html>"));
    // htmx gets the remaining rows only, with no further link
    let frag = app
        .client
        .get(app.url(&more))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!frag.contains("<html") && !frag.contains("<body"), "{frag}");
    assert_eq!(frag.matches("<tr class=\"tx").count(), 6);
    assert!(!frag.contains("load-more"));
    // filtering by type: a whole page, or for htmx the rows alone
    let uses = app.text("/points?type=use").await;
    assert_eq!(uses.matches("<tr class=\"tx").count(), 1);
    let htmx = |path: &'static str, restore: bool| {
        let mut r = app.client.get(app.url(path)).header("hx-request", "true");
        if restore {
            r = r.header("hx-history-restore-request", "true");
        }
        async move { r.send().await.unwrap() }
    };
    let r = htmx("/points?type=use", false).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("HX-Request")),
        "{:?}",
        r.headers()
    );
    let frag = r.text().await.unwrap();
    assert!(!frag.contains("<html"), "{frag}");
    assert_eq!(frag.matches("<tr class=\"tx").count(), 1);
    let none = htmx("/points?type=expire", false)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        none.contains("<tr class=\"empty\">"),
        "says there is nothing: {none}"
    );
    let restore = htmx("/points?type=use", true).await.text().await.unwrap();
    assert!(
        restore.starts_with("<!doctype html>"),
        "history restore gets the page"
    );
    // a malformed cursor is a clear 4xx, not a 500
    assert_eq!(app.get("/points?cursor=abc").await.status(), 422);
}

#[tokio::test]
async fn upgrade_page_shows_progress_remaining_and_the_ladder() {
    let app = spawn_app().await;
    let user = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(user, 10, "O1", Some("250")))
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let html = app.text("/upgrade").await;
    assert!(
        html.contains("<progress id=\"upgrade-progress\" max=\"100\" value=\"25\""),
        "{html}"
    );
    assert!(html.contains("id=\"remaining\">¥750.00<"));
    for level in ["普通会员", "银牌会员", "金牌会员", "钻石会员"] {
        assert!(html.contains(level));
    }
}

#[tokio::test]
async fn notifications_show_unread_count_and_mark_read_only_ones_own() {
    let app = spawn_app().await;
    let ann = app.member("ann@example.com").await;
    let bob = app.member("bob@example.com").await;
    for u in [ann, bob] {
        app.s
            .points
            .earn_points(earn_req(u, 10, &format!("BIG{u}"), Some("1000")))
            .await
            .unwrap();
    }
    let bobs: i64 = sqlx::query_scalar("select id from notifications where user_id = $1")
        .bind(bob)
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let html = app.text("/notifications").await;
    assert!(html.contains("id=\"unread-count\">1"), "unread badge");
    assert!(html.contains("恭喜！您已升级为 银牌会员。"));
    // ann cannot touch bob's notification through its id
    let r = app.post(&format!("/notifications/{bobs}/read"), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.s.notifications.unread_count(bob).await.unwrap(),
        1,
        "bob's stays unread"
    );
    assert_eq!(
        app.post("/notifications/not-a-number/read", &[])
            .await
            .status(),
        404
    );
    app.post("/notifications/read-all", &[]).await;
    assert_eq!(app.s.notifications.unread_count(ann).await.unwrap(), 0);
    assert_eq!(app.s.notifications.unread_count(bob).await.unwrap(), 1);
    assert!(
        !app.text("/profile").await.contains("unread-count"),
        "badge gone"
    );
    // a reminder queued by the sweep shows in the badge at once (the cached count is
    // dropped with it)
    app.clock.advance(time::Duration::days(350));
    app.login("ann@example.com", PASSWORD).await;
    assert!(!app.text("/profile").await.contains("unread-count"));
    assert!(app.s.points.send_expiry_reminders().await.unwrap() >= 1);
    assert!(
        app.text("/profile").await.contains("id=\"unread-count\">1"),
        "reminder counted"
    );
}

#[tokio::test]
async fn pages_have_no_inline_script_or_style_and_serve_htmx_themselves() {
    let app = spawn_app().await;
    let page = app.text("/login").await;
    assert!(
        !page.contains("<script>") && !page.contains(" style="),
        "no inline script or style"
    );
    assert!(
        page.contains("/static/htmx-2.0.11.min.js"),
        "htmx served from static/"
    );
    assert_eq!(app.get("/static/htmx-2.0.11.min.js").await.status(), 200);
}

#[tokio::test]
async fn an_expired_session_on_an_htmx_request_is_sent_to_login() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/points?cursor=5"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers().get("hx-redirect").unwrap(),
        "/login?next=%2Fpoints%3Fcursor%3D5"
    );
}

#[tokio::test]
async fn unknown_pages_get_a_readable_404_page() {
    let app = spawn_app().await;
    let r = app.get("/does-not-exist").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("页面不存在"));
}

#[tokio::test]
async fn an_unexpected_error_shows_a_request_id_and_no_internals() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    // the store of record loses a table under the running portal
    sqlx::query("alter table notifications rename to notifications_gone")
        .execute(&app.s.ctx.pool)
        .await
        .unwrap();
    let r = app.get("/notifications").await;
    assert_eq!(r.status(), 500);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let html = r.text().await.unwrap();
    assert!(
        html.contains("请求编号") && html.contains(&format!("<code>{id}</code>")),
        "the page quotes the request's own id, the one in the log: {html}"
    );
    for leak in ["notifications", "relation", "sqlx", "does not exist"] {
        assert!(
            !html.contains(leak) || html.contains(&format!("href=\"/{leak}")),
            "leaks {leak}"
        );
    }
}

#[tokio::test]
async fn an_htmx_request_that_fails_gets_its_message_in_the_message_area() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    // the redeem button of a reward that is gone: htmx asks for its confirmation
    let press = || {
        app.client
            .get(app.url("/rewards/999/redeem"))
            .header("hx-request", "true")
            .header("accept-language", "en")
            .send()
    };
    let r = press().await.unwrap();
    assert_eq!(r.status(), 404, "the status stays the error's");
    assert_eq!(r.headers()["hx-retarget"], "#flash");
    assert_eq!(r.headers()["hx-reswap"], "innerHTML");
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"flash-message\""), "{html}");
    assert!(!html.contains("<html"), "a fragment, not a page: {html}");
    // the session's language, not the browser's, once the reader chose one
    app.post("/lang", &[("lang", "zh"), ("next", "/")]).await;
    let r = press().await.unwrap();
    assert!(r.text().await.unwrap().contains("这个奖励已下架"));
    // the layout has the area it is retargeted to, and htmx is told to swap errors
    let page = app.text("/profile").await;
    assert!(page.contains("<div id=\"flash\""), "{page}");
    assert!(
        page.contains(r#"{"code":"[45]..","swap":true,"error":true}"#),
        "{page}"
    );
}

#[tokio::test]
async fn profile_totals_add_up_to_the_balance_with_adjustments_returns_and_refunds() {
    let app = spawn_app().await;
    let user = app.member("ann@example.com").await;
    let points = &app.s.points;
    points
        .earn_points(earn_req(user, 1200, "O1", None))
        .await
        .unwrap();
    points.use_points(use_req(user, 300, "PAY1")).await.unwrap();
    points
        .adjust_points(
            member_portal::service::points::AdjustRequest::parse(user, 250, "goodwill", None)
                .unwrap(),
        )
        .await
        .unwrap();
    points
        .refund_points(member_portal::service::points::RefundRequest {
            user_id: user,
            usage_type: member_portal::domain::Reference::parse("usage_type", "checkout").unwrap(),
            reference_id: member_portal::domain::Reference::parse("reference_id", "PAY1").unwrap(),
        })
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;
    let html = app.text("/profile").await;
    let figure = |id: &str| -> i64 {
        let at = html
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no {id}: {html}"));
        let text = &html[at + id.len() + 6..];
        text[..text.find('<').unwrap()]
            .replace([',', '+'], "")
            .parse()
            .unwrap()
    };
    // earned 1,200 − used 300 + adjusted 250 + returned 300 = 1,450
    assert_eq!(figure("points-available"), 1450);
    assert!(html.contains("1,200"), "thousands separators: {html}");
    assert_eq!(figure("total-adjusted"), 250);
    assert_eq!(figure("total-refunded"), 300);
    assert!(
        !html.contains("id=\"total-reversed\""),
        "a zero total is not listed"
    );
}
