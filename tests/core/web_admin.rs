//! Staff pages over HTTP: access, levels with inline errors, recalculation, members,
//! adjustments, audit log, API keys.

use member_portal::service::accounts;

use crate::harness::earn_req;
use crate::web_harness::*;

async fn staff_app() -> TestApp {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let r = app.login("boss@example.com", PASSWORD).await;
    assert_eq!(location(&r), "/admin");
    app
}

#[tokio::test]
async fn dashboard_draws_members_per_level_and_thirty_days_of_points() {
    let app = staff_app().await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 300, "O1", Some("1200")))
        .await
        .unwrap();
    let html = app.text("/admin").await;
    assert!(
        html.contains("<svg class=\"chart\"")
            && html.contains("id=\"chart-levels\"")
            && html.contains("id=\"chart-points\"")
    );
    assert!(
        html.contains("<title>银牌会员: 1</title>"),
        "a bar per level with its count"
    );
    assert!(
        html.contains("2025-09-18 发放: 300") || html.contains("2025-09-18 Earned: 300"),
        "today's earned points"
    );
    assert_eq!(
        html.matches("<tr><td>2025-").count(),
        30,
        "a row per day of the last 30"
    );
}

#[tokio::test]
async fn an_invalid_level_shows_its_error_inline_then_a_fixed_one_is_listed() {
    let app = staff_app().await;
    let bad = [
        ("level_name", "Platinum"),
        ("level_order", "5"),
        ("min_points", "100"),
        ("discount_rate", "0.85"),
        ("point_multiplier", "2.5"),
        ("benefits", "Lounge\nGifts"),
        ("is_active", "on"),
    ];
    // htmx: the form comes back as a 422 (the layout has htmx swap it) with the message
    // next to the field
    let token = app.csrf().await;
    let mut form = bad.to_vec();
    form.push(("csrf_token", &token));
    let r = app
        .client
        .post(app.url("/admin/levels"))
        .header("hx-request", "true")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(!html.contains("<html"), "a fragment");
    assert!(html.contains("id=\"min_points-error\""), "{html}");
    assert!(
        html.contains("value=\"Platinum\""),
        "what was typed is kept"
    );
    // without JavaScript: the page again, 422
    let r = app.post("/admin/levels", &bad).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"min_points-error\""));
    // not a number
    let r = app
        .post(
            "/admin/levels",
            &[
                ("level_name", "P"),
                ("level_order", "five"),
                ("min_points", "50000"),
                ("discount_rate", "x"),
                ("point_multiplier", "2"),
            ],
        )
        .await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"level_order-error\"") && html.contains("id=\"discount_rate-error\"")
    );
    // fixed: listed
    let mut good = bad.to_vec();
    good[2] = ("min_points", "50000");
    let token = app.csrf().await;
    good.push(("csrf_token", &token));
    let r = app
        .client
        .post(app.url("/admin/levels"))
        .header("hx-request", "true")
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers().get("hx-redirect").unwrap(),
        "/admin/levels?done=saved"
    );
    let list = app.text("/admin/levels?done=saved").await;
    assert!(list.contains("<strong>Platinum</strong>"));
    assert!(
        list.contains("id=\"levels-done\">等级已保存。<"),
        "says it is saved"
    );
    let level = app
        .s
        .levels
        .list()
        .await
        .unwrap()
        .iter()
        .find(|l| l.level_name == "Platinum")
        .cloned()
        .unwrap();
    assert_eq!(level.benefits, vec!["Lounge", "Gifts"]);
    // edit it
    let r = app
        .post(
            &format!("/admin/levels/{}", level.id),
            &[
                ("level_name", "Platinum+"),
                ("level_order", "5"),
                ("min_points", "60000"),
                ("discount_rate", "0.8"),
                ("point_multiplier", "3"),
                ("is_active", "on"),
            ],
        )
        .await;
    assert_eq!(location(&r), "/admin/levels?done=saved");
    assert_eq!(
        app.s.levels.get(level.id).await.unwrap().level_name,
        "Platinum+"
    );
    // audited, in words
    let audit = app.text("/admin/audit").await;
    assert!(
        audit.contains("<td class=\"action\">新建等级</td>"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_level_with_members_cannot_be_deactivated_from_the_page() {
    let app = staff_app().await;
    app.member("ann@example.com").await;
    // deactivating asks first, and changes nothing until confirmed
    let r = app
        .post("/admin/levels/4/active", &[("active", "false")])
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"confirm-yes\"") && html.contains("name=\"confirm\" value=\"yes\""),
        "{html}"
    );
    assert!(app.s.levels.get(4).await.unwrap().is_active);
    let r = app
        .post(
            "/admin/levels/1/active",
            &[("active", "false"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"levels-notice\""));
    assert!(app.s.levels.get(1).await.unwrap().is_active);
    let r = app
        .post(
            "/admin/levels/4/active",
            &[("active", "false"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(location(&r), "/admin/levels?done=active");
    assert!(!app.s.levels.get(4).await.unwrap().is_active);
}

#[tokio::test]
async fn recalculation_previews_then_moves_members_in_batches() {
    let app = staff_app().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = app.member(&format!("m{i}@example.com")).await;
        crate::harness::set_total_spent(&app.s.ctx.pool, id, "1500").await;
        ids.push(id);
    }
    // warm a cache entry that must not survive the move
    assert_eq!(
        app.s
            .members
            .get_member_profile(ids[0])
            .await
            .unwrap()
            .level
            .level_name,
        "普通会员"
    );
    let html = app.text("/admin/levels/recalculate").await;
    assert!(
        html.contains(
            "<td>普通会员</td><td>银牌会员</td><td class=\"pos\">升级</td><td class=\"num\">3</td>"
        ),
        "{html}"
    );
    let r = app.post("/admin/levels/recalculate", &[]).await;
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"recalc-done\"") && html.contains("3"),
        "{html}"
    );
    assert!(html.contains("id=\"recalc-none\""));
    for id in ids {
        assert_eq!(
            app.s
                .members
                .get_member_profile(id)
                .await
                .unwrap()
                .level
                .level_name,
            "银牌会员"
        );
    }
}

#[tokio::test]
async fn staff_find_a_member_adjust_points_with_a_reason_and_set_a_level_with_a_note() {
    let app = staff_app().await;
    let ann = app.member("ann@example.com").await;
    let code = app.s.members.record(ann).await.unwrap().member_code;
    for q in [code.as_str(), "ANN@", "ann"] {
        let html = app.text(&format!("/admin/members?q={q}")).await;
        assert!(
            html.contains(&format!("/admin/members/{ann}")),
            "search {q}"
        );
    }
    assert!(
        app.text("/admin/members?q=zzz")
            .await
            .contains("没有找到会员")
    );
    let page = format!("/admin/members/{ann}");
    // a reason is required
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[("points", "50"), ("reason", " ")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"adjust-error\""));
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[("points", "50"), ("reason", "goodwill")],
        )
        .await;
    assert_eq!(location(&r), format!("{page}?done=adjusted"));
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 50);
    // never below zero
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[("points", "-51"), ("reason", "fraud")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 50);
    // a large adjustment is confirmed first (above 1,000 points by default) ...
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[("points", "5000"), ("reason", "big order")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"confirm-yes\"") && html.contains("+5,000"),
        "{html}"
    );
    assert_eq!(
        app.s.points.summary(ann).await.unwrap().available,
        50,
        "not yet"
    );
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[
                ("points", "5000"),
                ("reason", "big order"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(location(&r), format!("{page}?done=adjusted"));
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 5050);
    // ... and none may pass the limit (100,000 by default), confirmed or not
    let r = app
        .post(
            &format!("{page}/adjust"),
            &[
                ("points", "99999999"),
                ("reason", "typo"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("STAFF_ADJUSTMENT_MAX_POINTS")
    );
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 5050);
    // a note is required to set a level
    let r = app
        .post(&format!("{page}/level"), &[("level_id", "3"), ("note", "")])
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .post(
            &format!("{page}/level"),
            &[("level_id", "3"), ("note", "VIP")],
        )
        .await;
    assert_eq!(location(&r), format!("{page}?done=level"));
    let html = app.text(&format!("{page}?done=level")).await;
    assert!(html.contains("id=\"member-level\">金牌会员<") && html.contains("goodwill"));
    assert!(
        html.contains("id=\"member-notice\">会员等级已设置。<"),
        "says it is done"
    );
    let audit = app.text("/admin/audit").await;
    assert!(
        audit.contains("<td class=\"action\">调整积分</td>")
            && audit.contains("<td class=\"action\">设置会员等级</td>")
            && audit.contains("boss@example.com"),
        "{audit}"
    );
    // the details in words, not JSON: the reason, and level names instead of ids
    assert!(audit.contains("<dt>原因</dt><dd>goodwill</dd>"), "{audit}");
    assert!(
        audit.contains("<dt>新等级</dt><dd>金牌会员</dd>"),
        "{audit}"
    );
    assert!(
        !audit.contains("{&quot;") && !audit.contains("new_level_id"),
        "{audit}"
    );
    // filtered by action, by member and by actor
    let rows = |html: &str| html.matches("<td class=\"action\">").count();
    let adjusts = app.text("/admin/audit?action=points.adjust").await;
    assert_eq!(rows(&adjusts), 2, "{adjusts}");
    let about_ann = app.text(&format!("/admin/audit?member={ann}")).await;
    assert_eq!(rows(&about_ann), 3, "{about_ann}");
    assert_eq!(
        rows(
            &app.text(&format!("/admin/audit?member={}", ann + 1000))
                .await
        ),
        0
    );
    // the staff account itself was created from the command line, by no one
    assert_eq!(
        rows(&app.text("/admin/audit?actor=BOSS@example.com").await),
        rows(&audit) - 1
    );
    assert_eq!(
        rows(&app.text("/admin/audit?actor=nobody@example.com").await),
        0
    );
    assert_eq!(
        app.get("/admin/audit?action=drop.tables").await.status(),
        422
    );
    assert_eq!(app.get("/admin/audit?member=abc").await.status(), 422);
    let english = app.text_in("en", "/admin/audit?action=points.adjust").await;
    assert!(
        english.contains("<td class=\"action\">Points adjusted</td>"),
        "{english}"
    );
    // ids that are not numbers or not members are 404 pages, never 500
    assert_eq!(app.get("/admin/members/abc").await.status(), 404);
    assert_eq!(app.get("/admin/members/999999").await.status(), 404);
}

#[tokio::test]
async fn an_api_key_is_shown_once_and_can_be_revoked() {
    let app = staff_app().await;
    let r = app
        .post("/admin/api-keys", &[("name", "order system")])
        .await;
    assert_eq!(r.status(), 201);
    let html = r.text().await.unwrap();
    let at =
        html.find("id=\"new-key\" class=\"key\">").unwrap() + "id=\"new-key\" class=\"key\">".len();
    let key = html[at..].split('<').next().unwrap().to_owned();
    assert!(key.starts_with("mp_"));
    let list = app.text("/admin/api-keys").await;
    assert!(!list.contains(&key), "shown only once");
    assert!(list.contains("order system") && list.contains(&key[..11]));
    accounts::authenticate_api_key(&app.s.ctx, &key, accounts::Scope::Read)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("select id from api_keys")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    let r = app.post(&format!("/admin/api-keys/{id}/revoke"), &[]).await;
    assert!(
        r.text().await.unwrap().contains("id=\"confirm-yes\""),
        "asks first"
    );
    accounts::authenticate_api_key(&app.s.ctx, &key, accounts::Scope::Read)
        .await
        .expect("not revoked before it is confirmed");
    let r = app
        .post(
            &format!("/admin/api-keys/{id}/revoke"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(location(&r), "/admin/api-keys?done=revoked");
    assert!(
        app.text("/admin/api-keys?done=revoked")
            .await
            .contains("id=\"keys-notice\"")
    );
    assert_eq!(
        accounts::authenticate_api_key(&app.s.ctx, &key, accounts::Scope::Read)
            .await
            .unwrap_err()
            .code(),
        "UNAUTHORIZED"
    );
    assert_eq!(
        app.post("/admin/api-keys", &[("name", "")]).await.status(),
        422
    );
}

#[tokio::test]
async fn every_staff_form_refuses_a_request_without_the_csrf_token() {
    let app = staff_app().await;
    let ann = app.member("ann@example.com").await;
    for route in [
        "/admin/levels".to_owned(),
        "/admin/levels/1".to_owned(),
        "/admin/levels/1/active".to_owned(),
        "/admin/levels/recalculate".to_owned(),
        format!("/admin/members/{ann}/adjust"),
        format!("/admin/members/{ann}/level"),
        "/admin/api-keys".to_owned(),
        "/admin/api-keys/1/revoke".to_owned(),
    ] {
        let r = app
            .client
            .post(app.url(&route))
            .form(&[
                ("points", "100"),
                ("reason", "x"),
                ("name", "k"),
                ("active", "false"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{route}");
    }
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 0);
    let keys: i64 = sqlx::query_scalar("select count(*) from api_keys")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn a_staff_user_on_a_member_page_is_led_to_the_dashboard() {
    let app = staff_app().await;
    for path in ["/profile", "/points", "/points?type=earn", "/upgrade"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), "/admin", "{path}");
    }
    // pages that need no member profile still open
    assert_eq!(app.get("/notifications").await.status(), 200);
}

#[tokio::test]
async fn a_member_refused_a_staff_page_still_sees_their_own_navigation() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    let r = app.get("/admin/levels").await;
    assert_eq!(r.status(), 403);
    let html = r.text().await.unwrap();
    assert!(html.contains("action=\"/logout\""), "logged in: {html}");
    assert!(
        !html.contains("href=\"/register\""),
        "no sign-up link: {html}"
    );
    assert!(html.contains("href=\"/profile\""));
    assert!(html.contains("rel=\"icon\" href=\"/static/favicon.svg\""));
    let icon = app.get("/static/favicon.svg").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn a_disabled_or_demoted_staff_account_loses_its_power_at_the_next_request() {
    let boss = staff_app().await;
    let deputy_id =
        accounts::create_staff(&boss.s.ctx, "deputy@example.com", PASSWORD, Some("Deputy"))
            .await
            .unwrap();
    let deputy = boss.another_browser();
    assert_eq!(
        location(&deputy.login("deputy@example.com", PASSWORD).await),
        "/admin"
    );
    assert_eq!(deputy.get("/admin/members").await.status(), 200);

    // nobody disables themselves
    let boss_id: i64 = sqlx::query_scalar("select id from users where email = 'boss@example.com'")
        .fetch_one(&boss.s.ctx.pool)
        .await
        .unwrap();
    let r = boss
        .post(
            &format!("/admin/staff/{boss_id}/disable"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"staff-error\""));

    let r = boss
        .post(&format!("/admin/staff/{deputy_id}/disable"), &[])
        .await;
    assert!(
        r.text().await.unwrap().contains("id=\"confirm-yes\""),
        "asks first"
    );
    assert_eq!(deputy.get("/admin/members").await.status(), 200, "not yet");
    let r = boss
        .post(
            &format!("/admin/staff/{deputy_id}/disable"),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(location(&r), "/admin/staff?done=disabled");
    let list = boss.text("/admin/staff?done=disabled").await;
    assert!(
        list.contains("id=\"staff-notice\""),
        "says it is done: {list}"
    );
    // the deputy's open session has no staff power any more, and cannot log in again
    let r = deputy.get("/admin/members").await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/login"), "{}", location(&r));
    let r = deputy.login("deputy@example.com", PASSWORD).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("此账号已停用"));
    // enabled again: back in
    boss.post(&format!("/admin/staff/{deputy_id}/enable"), &[])
        .await;
    assert_eq!(
        location(&deputy.login("deputy@example.com", PASSWORD).await),
        "/admin"
    );
    assert_eq!(deputy.get("/admin/members").await.status(), 200);
    // the role changed behind the portal's back: the session does not keep it
    sqlx::query("update users set role = 'member' where id = $1")
        .bind(deputy_id)
        .execute(&boss.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(deputy.get("/admin/members").await.status(), 303);
    let audit = boss.text("/admin/audit?action=staff.disable").await;
    assert!(audit.contains("停用员工账号"), "{audit}");
}

#[tokio::test]
async fn a_level_form_shows_every_fields_error_at_once_each_with_its_own_message() {
    let app = staff_app().await;
    let r = app
        .post(
            "/admin/levels",
            &[
                ("level_name", ""),
                ("level_order", "7"),
                ("min_points", "-5"),
                ("discount_rate", "1.5"),
                ("point_multiplier", "abc"),
                ("benefits", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    let error = |field: &str| {
        let at = html
            .find(&format!("id=\"{field}-error\""))
            .unwrap_or_else(|| panic!("no error for {field}: {html}"));
        let text = &html[at..];
        text[text.find('>').unwrap() + 1..text.find('<').unwrap()].to_owned()
    };
    for field in [
        "level_name",
        "min_points",
        "discount_rate",
        "point_multiplier",
    ] {
        assert!(!error(field).is_empty(), "{field}");
    }
    assert!(
        !html.contains("id=\"level_order-error\""),
        "order 7 is fine"
    );
    assert_eq!(error("min_points"), "不能为负数，需为不小于 0 的整数。");
    assert!(
        !error("min_points").contains("递增"),
        "not the ladder message"
    );
    assert_eq!(
        app.s.levels.list().await.unwrap().len(),
        4,
        "nothing was created"
    );
}

#[tokio::test]
async fn recalculation_keeps_manual_levels_and_never_moves_down_unless_asked_and_says_why() {
    let app = staff_app().await;
    let pool = app.s.ctx.pool.clone();
    let spent = |id: i64, amount: &'static str| {
        let pool = pool.clone();
        async move { crate::harness::set_total_spent(&pool, id, amount).await }
    };
    let sql = |q: &'static str, id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query(q).bind(id).execute(&pool).await.unwrap();
        }
    };
    let up = app.member("up@example.com").await;
    spent(up, "1500").await;
    let manual = app.member("manual@example.com").await;
    app.s
        .members
        .set_level(manual, 3, "VIP by hand", None)
        .await
        .unwrap();
    let down = app.member("down@example.com").await;
    spent(down, "100").await;
    sql(
        "update member_profiles set level_id = 3 where user_id = $1",
        down,
    )
    .await;
    app.clock.advance(time::Duration::days(2)); // the manual change is past the cooldown
    app.login("boss@example.com", PASSWORD).await; // and the login has ended
    let recent = app.member("recent@example.com").await;
    spent(recent, "1500").await;
    sql(
        "update member_profiles set last_level_change_at = now() where user_id = $1",
        recent,
    )
    .await;
    app.s
        .ctx
        .cache
        .invalidate_members(&[up, manual, down, recent])
        .await;
    let level = |id: i64| {
        let s = app.s.clone();
        async move {
            s.members
                .get_member_profile(id)
                .await
                .unwrap()
                .level
                .level_name
        }
    };

    // by default: only the member whose spend reaches a higher level moves up
    let r = app.get("/admin/levels/recalculate").await;
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"recalc-kept-manual\">1 "), "{html}");
    assert!(html.contains("id=\"recalc-kept-down\">1 "), "{html}");
    assert!(html.contains("id=\"recalc-cooldown\">1 "), "{html}");
    assert!(
        html.contains("消费 ¥1,500.00 达到 银牌会员 门槛 ¥1,000"),
        "says why: {html}"
    );
    assert_eq!(
        html.matches("/admin/members/").count(),
        1,
        "one member listed: {html}"
    );
    let html = app
        .post("/admin/levels/recalculate", &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"recalc-done\">已调整 1 位"), "{html}");
    assert_eq!(level(up).await, "银牌会员");
    assert_eq!(level(manual).await, "金牌会员", "kept");
    assert_eq!(level(down).await, "金牌会员", "not moved down");
    assert_eq!(level(recent).await, "普通会员", "inside the cooldown");
    // recorded with its reason, and the member is told
    let note: String = sqlx::query_scalar(
        "select note from level_change_records where user_id = $1 and change_reason = 'recalculate'",
    )
    .bind(up)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(note, "spend 1500.00 reaches 银牌会员 (1000)");
    let told: i64 = sqlx::query_scalar(
        "select count(*) from notifications where user_id = $1 and kind = 'level_changed' and payload->>'reason' = 'recalculate'",
    )
    .bind(up)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(told, 1);

    // staff tick both options: the manual level and the one above its spend come down
    let html = app
        .text("/admin/levels/recalculate?down=on&manual=on")
        .await;
    assert!(html.contains("<td class=\"neg\">降级</td>"), "{html}");
    assert!(
        html.contains("消费 ¥100.00 低于 金牌会员 门槛 ¥5,000"),
        "{html}"
    );
    let html = app
        .post(
            "/admin/levels/recalculate",
            &[("down", "on"), ("manual", "on")],
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("id=\"recalc-done\">已调整 2 位"), "{html}");
    assert_eq!(level(manual).await, "普通会员");
    assert_eq!(level(down).await, "普通会员");
    assert_eq!(level(recent).await, "普通会员", "the cooldown always holds");
}

#[tokio::test]
async fn every_table_header_has_text() {
    let app = staff_app().await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 10, "O1", None))
        .await
        .unwrap();
    accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    for path in [
        "/admin/levels".to_owned(),
        "/admin/api-keys".into(),
        "/admin/staff".into(),
        "/admin/audit".into(),
        format!("/admin/members/{ann}"),
        "/admin/members?q=ann".into(),
    ] {
        // header cells only, not <thead>
        let html = app.text(&path).await.replace("<thead", "<THEAD");
        assert!(html.contains("<th"), "{path} has a table");
        for th in html.split("<th").skip(1) {
            let inner = th.split_once('>').map(|(_, rest)| rest).unwrap_or_default();
            let text = inner.split("</th>").next().unwrap_or_default();
            assert!(!text.trim().is_empty(), "{path}: an empty header cell");
        }
    }
}
