//! Real browser tests: Debian's headless Chromium driven through chromedriver. Each saves
//! screenshots of the pages it visits under `target/screenshots/` (desktop, and phone
//! width through Chromium's mobile emulation).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use member_portal::service::accounts;
use serde_json::json;

use crate::harness::earn_req;
use crate::web_harness::*;

struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Chromium in a fresh profile; `phone` emulates a 375 px wide screen.
async fn browser(phone: bool, lang: &str) -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver is needed: apt-get install chromium chromium-driver (bash .ci/run does)",
        );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile =
        std::env::temp_dir().join(format!("mp-chromium-{}", uuid::Uuid::new_v4().simple()));
    let mut options = json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1280,1000",
            format!("--lang={lang}"),
            format!("--user-data-dir={}", profile.display()),
        ],
        "prefs": { "intl.accept_languages": lang },
    });
    if phone {
        options["mobileEmulation"] =
            json!({ "deviceMetrics": { "width": 375, "height": 800, "pixelRatio": 2.0 } });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    Browser {
        client,
        driver,
        profile,
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 1000, "{name}: an empty screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(e) => panic!("{css} never appeared: {e}\n{}", where_it_was(c).await),
    }
}

/// Where the browser is and what its page says: for a failure the test could not foresee.
async fn where_it_was(c: &Client) -> String {
    let url = c.current_url().await.map(|u| u.to_string());
    let text = match c.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(e) => format!("(no body: {e})"),
    };
    let text: String = text.chars().take(600).collect();
    format!("at {url:?}, showing: {text}")
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let field = wait_css(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn log_in(c: &Client, app: &TestApp, email: &str) {
    c.goto(&app.url("/login")).await.unwrap();
    type_into(c, "#email", email).await;
    type_into(c, "#password", PASSWORD).await;
    c.find(Locator::Css("button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // logged in once the login's redirect has landed
    let started = std::time::Instant::now();
    while c.current_url().await.unwrap().path() == "/login" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "login did not land"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_logs_in_sees_profile_loads_more_history_and_opens_upgrade_progress() {
    let app = spawn_app().await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 300, "ORDER-1", Some("1200")))
        .await
        .unwrap();
    for i in 0..24 {
        app.s
            .points
            .earn_points(earn_req(ann, 10, &format!("O{i}"), None))
            .await
            .unwrap();
    }
    let b = browser(false, "zh-CN").await;
    let c = &b.client;
    c.goto(&app.url("/login")).await.unwrap();
    shot(c, "login").await;
    log_in(c, &app, "ann@example.com").await;
    let code = wait_css(c, "#member-code").await.text().await.unwrap();
    assert_eq!(code, "M2025091800001");
    assert_eq!(
        wait_css(c, "#points-available").await.text().await.unwrap(),
        "588"
    );
    assert_eq!(
        wait_css(c, "#level-name").await.text().await.unwrap(),
        "银牌会员"
    );
    shot(c, "member-profile").await;

    c.find(Locator::Css("a[href='/points']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#history").await;
    assert_eq!(count(c, "#history tr.tx").await, 20);
    shot(c, "member-points").await;
    // htmx appends the next page in place: same page, more rows, no further link
    c.find(Locator::Css("#load-more a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#history tr.tx:nth-child(25)"))
        .await
        .expect("the next rows were loaded");
    assert_eq!(count(c, "#history tr.tx").await, 25);
    assert_eq!(count(c, "#load-more").await, 0);
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/points",
        "no navigation: htmx swapped the rows"
    );

    c.find(Locator::Css("a[href='/upgrade']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let progress = wait_css(c, "#upgrade-progress").await;
    assert_eq!(progress.attr("value").await.unwrap().as_deref(), Some("24"));
    shot(c, "member-upgrade").await;
    c.goto(&app.url("/notifications")).await.unwrap();
    wait_css(c, "#notifications").await;
    shot(c, "member-notifications").await;
    b.client.clone().close().await.unwrap();

    // the same pages at phone width
    let phone = browser(true, "zh-CN").await;
    let c = &phone.client;
    log_in(c, &app, "ann@example.com").await;
    wait_css(c, "#member-code").await;
    let width = c
        .execute("return document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert_eq!(width, json!(375));
    let scroll = c
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert_eq!(scroll, json!(375), "nothing wider than the phone");
    shot(c, "member-profile-375").await;
    c.goto(&app.url("/points")).await.unwrap();
    wait_css(c, "#history").await;
    shot(c, "member-points-375").await;
    c.execute(
        "document.getElementById('history').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(c, "member-points-history-375").await;
    // one card per line: the type and the change each on one line, nothing wider
    // than the phone
    let tallest = c
        .execute(
            "return Math.max(...[...document.querySelectorAll('#history td.type, #history td.change')]
                .map(td => td.getBoundingClientRect().height))",
            vec![],
        )
        .await
        .unwrap();
    assert!(tallest.as_f64().unwrap() < 30.0, "a cell wraps: {tallest}");
    assert_eq!(
        c.execute("return document.documentElement.scrollWidth", vec![])
            .await
            .unwrap(),
        json!(375)
    );
    // the type filter swaps the rows in place (htmx) and keeps the address
    c.find(Locator::Css("#type option[value=use]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while c.current_url().await.unwrap().query() != Some("type=use") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the filter's address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        c.find_all(Locator::Css("#history tr.tx"))
            .await
            .unwrap()
            .len()
            <= 1
    );
    phone.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_create_a_level_see_the_error_fix_it_see_it_listed_and_switch_language() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 300, "ORDER-1", Some("1200")))
        .await
        .unwrap();
    let b = browser(false, "zh-CN").await;
    let c = &b.client;
    log_in(c, &app, "boss@example.com").await;
    wait_css(c, "#chart-levels").await;
    wait_css(c, "#chart-points").await;
    shot(c, "admin-dashboard").await;

    c.goto(&app.url("/admin/levels")).await.unwrap();
    type_into(c, "#level_name", "铂金会员").await;
    type_into(c, "#level_order", "5").await;
    type_into(c, "#min_points", "15000").await; // below 钻石会员's 20000: the ladder must rise
    type_into(c, "#discount_rate", "0.85").await;
    type_into(c, "#point_multiplier", "2.5").await;
    type_into(c, "#benefits", "贵宾休息室\n生日双倍积分").await;
    c.find(Locator::Css("#level-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait_css(c, "#min_points-error").await;
    assert!(
        error
            .text()
            .await
            .unwrap()
            .contains("消费门槛需随等级顺序递增"),
        "the message is in the page's language"
    );
    assert_eq!(c.current_url().await.unwrap().path(), "/admin/levels");
    assert_eq!(
        wait_css(c, "#level_name")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("铂金会员"),
        "what was typed is kept"
    );
    shot(c, "admin-level-error").await;

    type_into(c, "#min_points", "50000").await;
    c.find(Locator::Css("#level-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//table[@id='levels']//strong[text()='铂金会员']",
        ))
        .await
        .expect("the new level is listed");
    assert_eq!(count(c, "#min_points-error").await, 0);
    shot(c, "admin-levels").await;

    // switch language: the same page in English, remembered on the next page
    c.find(Locator::Css("form.lang button[value=en]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//h1[text()='Levels']"))
        .await
        .expect("English");
    shot(c, "admin-levels-en").await;
    c.goto(&app.url(&format!("/admin/members/{ann}")))
        .await
        .unwrap();
    assert_eq!(
        wait_css(c, "#member-level").await.text().await.unwrap(),
        "银牌会员"
    );
    assert!(c.source().await.unwrap().contains("Adjust points"));
    shot(c, "admin-member").await;
    c.goto(&app.url("/admin/api-keys")).await.unwrap();
    type_into(c, "#key-name", "order system").await;
    c.find(Locator::Css("form.filters button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#new-key").await;
    shot(c, "admin-api-keys").await;
    // revoking asks first
    c.find(Locator::Css("#keys form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#confirm-yes").await;
    shot(c, "admin-confirm").await;
    c.goto(&app.url("/admin/audit")).await.unwrap();
    wait_css(c, "#audit").await;
    shot(c, "admin-audit").await;
    c.goto(&app.url("/admin/staff")).await.unwrap();
    wait_css(c, "#staff").await;
    shot(c, "admin-staff").await;
    // a member whose spend reaches a level she is not on, for the recalculation preview
    sqlx::query(
        "update member_profiles set level_id = 1, last_level_change_at = null where user_id = $1",
    )
    .bind(ann)
    .execute(&app.s.ctx.pool)
    .await
    .unwrap();
    c.goto(&app.url("/admin/levels/recalculate")).await.unwrap();
    wait_css(c, "#move-members").await;
    shot(c, "admin-recalculate").await;
    b.client.clone().close().await.unwrap();

    // staff pages on a phone: tables scroll sideways rather than squeeze words
    let phone = browser(true, "zh-CN").await;
    let c = &phone.client;
    log_in(c, &app, "boss@example.com").await;
    for (path, name, table, cells) in [
        (
            "/admin/levels",
            "admin-levels-375",
            "#levels",
            "#levels td strong",
        ),
        (
            "/admin/audit",
            "admin-audit-375",
            "#audit",
            "#audit td:not(.details)",
        ),
    ] {
        c.goto(&app.url(path)).await.unwrap();
        wait_css(c, table).await;
        let tallest = c
            .execute(
                &format!(
                    "return Math.max(...[...document.querySelectorAll('{cells}')].map(e => {{
                        const r = document.createRange(); r.selectNodeContents(e);
                        return r.getBoundingClientRect().height; }}))"
                ),
                vec![],
            )
            .await
            .unwrap();
        let tallest = tallest.as_f64().unwrap_or_else(|| {
            panic!("{path}: no {cells}: {tallest}");
        });
        assert!(tallest < 45.0, "{path}: a cell wraps ({tallest})");
        assert_eq!(
            c.execute("return document.documentElement.scrollWidth", vec![])
                .await
                .unwrap(),
            json!(375),
            "{path}: only the table scrolls"
        );
        shot(c, name).await;
    }
    phone.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_sees_ways_to_earn_redeems_a_reward_and_shows_the_coupon_at_checkout() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 2000, "ORDER-1", None))
        .await
        .unwrap();
    let rewards = &app.s.rewards;
    let mut ten = crate::rewards::reward_input("满100减10元券", "500", "20");
    ten.description = "全场通用，结账时出示".into();
    let ten = rewards.create(None, ten).await.unwrap();
    let mut pct = crate::rewards::reward_input("会员专享85折券", "1200", "");
    pct.kind = member_portal::domain::rewards::RewardKind::Percent;
    pct.value = Some("15".parse().unwrap());
    pct.per_member_limit = Some(1);
    rewards.create(None, pct).await.unwrap();
    let mut cup = crate::rewards::reward_input("免费咖啡一杯", "3000", "5");
    cup.kind = member_portal::domain::rewards::RewardKind::Item;
    cup.value = None;
    rewards.create(None, cup).await.unwrap();
    let mut gold = crate::rewards::reward_input("金卡生日礼盒", "800", "");
    gold.kind = member_portal::domain::rewards::RewardKind::Item;
    gold.value = None;
    gold.min_level_id = Some(3);
    rewards.create(None, gold).await.unwrap();
    let now = member_portal::clock::Clock::now(&app.clock);
    for (name, kind, m, b, from, days) in [
        (
            "国庆双倍积分周",
            "multiplier",
            "2",
            "",
            now - time::Duration::days(1),
            7,
        ),
        (
            "鞋类满300加赠",
            "bonus",
            "",
            "100",
            now - time::Duration::days(1),
            30,
        ),
        (
            "生日礼",
            "birthday",
            "",
            "88",
            now - time::Duration::days(10),
            365,
        ),
        (
            "双十一三倍积分",
            "multiplier",
            "3",
            "",
            now + time::Duration::days(50),
            3,
        ),
    ] {
        let mut c = member_portal::domain::campaigns::CampaignInput::parse(
            &member_portal::domain::campaigns::CampaignFields {
                name,
                kind,
                multiplier: m,
                bonus_points: b,
                starts_at: Some(from),
                ends_at: Some(from + time::Duration::days(days)),
                ..Default::default()
            },
        )
        .unwrap();
        if kind == "bonus" {
            c.category = Some("鞋类".into());
            c.min_amount = Some("300".parse().unwrap());
        }
        app.s.campaigns.create(None, c).await.unwrap();
    }

    for (phone, suffix) in [(false, ""), (true, "-375")] {
        let b = browser(phone, "zh-CN").await;
        let c = &b.client;
        log_in(c, &app, "ann@example.com").await;
        c.goto(&app.url("/earn")).await.unwrap();
        wait_css(c, "#campaigns").await;
        shot(c, &format!("member-earn{suffix}")).await;
        c.goto(&app.url("/rewards")).await.unwrap();
        wait_css(c, "#rewards").await;
        shot(c, &format!("member-rewards{suffix}")).await;
        if phone {
            assert_eq!(
                c.execute("return document.documentElement.scrollWidth", vec![])
                    .await
                    .unwrap(),
                json!(375),
                "nothing wider than the phone"
            );
        }
        // htmx opens the confirmation inside the card
        c.find(Locator::Css(&format!("#redeem-{} a.button", ten.id)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_css(c, "#redeem-yes").await;
        assert_eq!(c.current_url().await.unwrap().path(), "/rewards");
        shot(c, &format!("member-redeem-confirm{suffix}")).await;
        c.find(Locator::Css("#redeem-yes"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let qr = wait_css(c, ".qr-box svg.qr").await;
        let size = qr.rectangle().await.unwrap();
        assert!(
            size.2 >= 150.0 && (size.2 - size.3).abs() < 1.0,
            "a square QR code big enough to scan: {size:?}"
        );
        assert!(
            wait_css(c, "#coupon-notice")
                .await
                .text()
                .await
                .unwrap()
                .contains("兑换成功")
        );
        shot(c, &format!("member-coupon{suffix}")).await;
        c.goto(&app.url("/coupons")).await.unwrap();
        wait_css(c, "#coupons").await;
        shot(c, &format!("member-coupons{suffix}")).await;
        b.client.clone().close().await.unwrap();
    }
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 1000);

    // in English, the same catalogue; a reward withdrawn while the page is open says so
    // in the message area when its button is pressed
    for (phone, suffix) in [(false, ""), (true, "-375")] {
        let b = browser(phone, "en").await;
        let c = &b.client;
        log_in(c, &app, "ann@example.com").await;
        c.goto(&app.url("/rewards")).await.unwrap();
        wait_css(c, "#rewards").await;
        assert!(c.source().await.unwrap().contains("15% off"));
        shot(c, &format!("member-rewards-en{suffix}")).await;
        let set_active = |active: bool| {
            sqlx::query("update rewards set is_active = $1 where id = $2")
                .bind(active)
                .bind(ten.id)
                .execute(&app.s.ctx.pool)
        };
        set_active(false).await.unwrap();
        c.find(Locator::Css(&format!("#redeem-{} a.button", ten.id)))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = wait_css(c, "#flash #flash-message").await;
        assert!(
            flash.text().await.unwrap().contains("no longer offered"),
            "{}",
            c.source().await.unwrap()
        );
        assert_eq!(
            count(c, "#redeem-yes").await,
            0,
            "no confirmation for a withdrawn reward"
        );
        assert!(flash.is_displayed().await.unwrap());
        shot(c, &format!("member-flash-en{suffix}")).await;
        set_active(true).await.unwrap();
        b.client.clone().close().await.unwrap();
    }

    // staff: the catalogue and a coupon
    for (phone, suffix) in [(false, ""), (true, "-375")] {
        let b = browser(phone, "zh-CN").await;
        let c = &b.client;
        log_in(c, &app, "boss@example.com").await;
        c.goto(&app.url("/admin/rewards")).await.unwrap();
        wait_css(c, "#reward-table").await;
        shot(c, &format!("admin-rewards{suffix}")).await;
        let silver = app.s.levels.list().await.unwrap()[1].id;
        c.goto(&app.url(&format!(
            "/admin/campaigns?level_id={silver}&amount=300&category=%E9%9E%8B%E7%B1%BB"
        )))
        .await
        .unwrap();
        wait_css(c, "#preview-result").await;
        shot(c, &format!("admin-campaigns{suffix}")).await;
        c.goto(&app.url("/admin/members?q=ann")).await.unwrap();
        wait_css(c, "#found").await;
        shot(c, &format!("admin-members{suffix}")).await;
        let (coupons, _) = app.s.rewards.member_coupons(ann, None, 1).await.unwrap();
        c.goto(&app.url(&format!("/admin/coupons/{}", coupons[0].id)))
            .await
            .unwrap();
        wait_css(c, "#coupon-code").await;
        shot(c, &format!("admin-coupon{suffix}")).await;
        b.client.clone().close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_resets_a_password_by_link_sees_pending_points_and_opens_the_account_page() {
    let app = spawn_app_with(|c| c.points_pending_days = 7).await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 300, "ORDER-1", Some("300")))
        .await
        .unwrap();
    for (phone, suffix) in [(false, ""), (true, "-375")] {
        let b = browser(phone, "zh-CN").await;
        let c = &b.client;
        c.goto(&app.url("/login")).await.unwrap();
        c.find(Locator::Css("#forgot-link"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        type_into(c, "#email", "ann@example.com").await;
        c.find(Locator::Css("#forgot-send"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_css(c, "#forgot-sent").await;
        shot(c, &format!("password-forgot{suffix}")).await;
        let link: String = sqlx::query_scalar(
            "select payload->>'link' from notifications where user_id = $1
              and kind = 'member.password_reset' order by id desc limit 1",
        )
        .bind(ann)
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
        let token = link.split("token=").nth(1).unwrap();
        c.goto(&app.url(&format!("/password/reset?token={token}")))
            .await
            .unwrap();
        let new_password = format!("brand new secret {suffix}");
        type_into(c, "#password", &new_password).await;
        shot(c, &format!("password-reset{suffix}")).await;
        c.find(Locator::Css("#reset-save"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_css(c, "#login-notice").await;
        type_into(c, "#email", "ann@example.com").await;
        type_into(c, "#password", &new_password).await;
        c.find(Locator::Css("button.primary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let pending = wait_css(c, "#points-pending").await;
        assert!(pending.text().await.unwrap().contains("300"));
        shot(c, &format!("member-profile-pending{suffix}")).await;
        c.goto(&app.url("/account")).await.unwrap();
        wait_css(c, "#account-close").await;
        shot(c, &format!("member-account{suffix}")).await;
        b.client.clone().close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_sees_what_keeps_their_level_and_staff_set_a_level_until_a_date() {
    let app = spawn_app_with(|c| {
        c.tiers.window = member_portal::config::TierWindow::CalendarYear;
        c.tiers.retention = member_portal::config::TierRetention::NextCalendarYear;
    })
    .await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 100, "BIG-2025", Some("6000")))
        .await
        .unwrap();
    app.clock.set(time::macros::datetime!(2026-03-01 04:00 UTC));
    app.s
        .points
        .earn_points(earn_req(ann, 50, "SMALL-2026", Some("1200")))
        .await
        .unwrap();
    app.clock.set(time::macros::datetime!(2026-12-20 04:00 UTC));
    assert_eq!(app.s.tiers.review().await.unwrap().noticed, 1);

    for (phone, suffix) in [(false, ""), (true, "-phone")] {
        let b = browser(phone, "zh-CN").await;
        let c = &b.client;
        log_in(c, &app, "ann@example.com").await;
        c.goto(&app.url("/upgrade")).await.unwrap();
        assert_eq!(
            wait_css(c, "#qualifying-spend").await.text().await.unwrap(),
            "¥1,200.00"
        );
        assert_eq!(
            wait_css(c, "#kept-until").await.text().await.unwrap(),
            "金牌会员 保级至 2026-12-31。"
        );
        let keep = wait_css(c, "#keep-level").await.text().await.unwrap();
        assert_eq!(
            keep,
            "在 2026-12-31 前再消费 ¥3,800.00 即可保留 金牌会员；否则评审后将调整为 银牌会员。"
        );
        shot(c, &format!("member-upgrade-keep{suffix}")).await;
        c.goto(&app.url("/notifications")).await.unwrap();
        let list = wait_css(c, "#notifications").await.text().await.unwrap();
        assert!(
            list.contains("2026-12-31 前再消费 ¥3,800.00 可保留 金牌会员"),
            "{list}"
        );
        b.client.clone().close().await.unwrap();
    }

    // staff: a level by hand until a date, then its history
    let b = browser(false, "en").await;
    let c = &b.client;
    log_in(c, &app, "boss@example.com").await;
    c.goto(&app.url(&format!("/admin/members/{ann}")))
        .await
        .unwrap();
    assert!(
        wait_css(c, "#member-tier")
            .await
            .text()
            .await
            .unwrap()
            .contains("2026-12-31"),
    );
    c.find(Locator::Css("#level_id option[value='4']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_into(c, "#level-note", "launch partner").await;
    // a date field takes the keys of its locale's order: set the value as a form would
    c.execute(
        "document.getElementById('level-until').value = '2027-06-30'",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#level-until ~ button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // the page after the form (the history table is on the one before it too)
    wait_css(c, "#member-notice").await;
    let history = wait_css(c, "#level-history").await.text().await.unwrap();
    assert!(history.contains("金牌会员 → 钻石会员"), "{history}");
    assert!(history.contains("launch partner"), "{history}");
    assert!(history.contains("Set by hand"), "{history}");
    assert_eq!(
        wait_css(c, "#member-tier").await.text().await.unwrap(),
        "Set by hand, kept until 2027-06-30 · moves to 普通会员 at the review unless ¥20,000.00 more is spent"
    );
    shot(c, "admin-member-level-history").await;
    type_into(c, "#note-body", "Asked for paper receipts from now on").await;
    c.find(Locator::Css("#note-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notes = wait_css(c, "#member-notes").await.text().await.unwrap();
    assert!(
        notes.contains("paper receipts") && notes.contains("boss@example.com"),
        "{notes}"
    );
    c.execute("document.getElementById('notes').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot(c, "admin-member-notes").await;
    c.execute(
        "document.getElementById('batches').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(count(c, "#member-batches tbody tr").await, 2);
    shot(c, "admin-member-batches").await;
    c.goto(&app.url("/admin/finance")).await.unwrap();
    wait_css(c, "#chart-months").await;
    assert_eq!(
        wait_css(c, "#finance-owed").await.text().await.unwrap(),
        "75"
    );
    shot(c, "admin-finance").await;
    // a bulk grant from the member list: confirm, then follow it
    c.goto(&app.url("/admin/members?q=ann")).await.unwrap();
    type_into(c, "#grant-points", "88").await;
    type_into(c, "#grant-reason", "Thank you for 2026").await;
    shot(c, "admin-members-grant").await;
    c.find(Locator::Css("#grant-form button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#confirm-yes").await;
    shot(c, "admin-grant-confirm").await;
    c.find(Locator::Css("#confirm-yes"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#grant-progress[value='100']"))
        .await
        .expect("the grant finished and the page showed it");
    assert_eq!(
        wait_css(c, "#grant-members").await.text().await.unwrap(),
        "1"
    );
    shot(c, "admin-grant").await;
    // an API key that may only read
    c.goto(&app.url("/admin/api-keys")).await.unwrap();
    type_into(c, "#key-name", "BI dashboard").await;
    for scope in ["earn", "use", "coupons"] {
        c.find(Locator::Css(&format!("#scope-{scope}")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    c.find(Locator::Css("fieldset.scopes ~ button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(c, "#new-key").await;
    let keys = wait_css(c, "#keys").await.text().await.unwrap();
    assert!(keys.contains("BI dashboard"), "{keys}");
    shot(c, "admin-api-keys-scopes").await;
    b.client.clone().close().await.unwrap();
    let phone = browser(true, "en").await;
    log_in(&phone.client, &app, "boss@example.com").await;
    phone
        .client
        .goto(&app.url(&format!("/admin/members/{ann}")))
        .await
        .unwrap();
    wait_css(&phone.client, "#level-history").await;
    shot(&phone.client, "admin-member-level-history-phone").await;
    phone.client.goto(&app.url("/admin/finance")).await.unwrap();
    wait_css(&phone.client, "#chart-months").await;
    shot(&phone.client, "admin-finance-phone").await;
    phone.client.goto(&app.url("/admin/grants")).await.unwrap();
    wait_css(&phone.client, "#grants").await;
    shot(&phone.client, "admin-grants-phone").await;
    phone.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_upload_a_member_file_see_its_bad_lines_then_import_the_good_ones() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mp-upload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("crm-members-2026.csv");
    std::fs::write(
        &file,
        "email,display_name,phone,external_id,points,total_spent\n\
         wang@example.com,Wang Fang,+86 138-0000-0001,CRM-1,500,1200\n\
         not-an-email,Nobody,,,,\n\
         \"li@example.com\",\"Li, Lei\",,CRM-2,0,99.50\n\
         zhao@example.com,Zhao Min,,CRM-3,-5,\n",
    )
    .unwrap();
    let upload = |c: Client, skip: bool| {
        let file = file.clone();
        async move {
            let input = wait_css(&c, "#import-file").await;
            input.send_keys(file.to_str().unwrap()).await.unwrap();
            if skip {
                c.find(Locator::Css("#import-skip"))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap();
            }
            c.find(Locator::Css("#import-form button.primary"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
    };
    let b = browser(false, "en").await;
    let c = &b.client;
    log_in(c, &app, "boss@example.com").await;
    c.goto(&app.url("/admin/members")).await.unwrap();
    wait_css(c, "#members-import").await.click().await.unwrap();
    wait_css(c, "#import-form").await;
    shot(c, "admin-imports").await;
    // all or nothing: two bad lines, nobody imported, each line named
    upload(c.clone(), false).await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#import-status.alert"))
        .await
        .expect("the import was refused and the page said so");
    let errors = wait_css(c, "#import-errors").await.text().await.unwrap();
    assert!(
        errors.contains("3") && errors.contains("email") && errors.contains("points"),
        "{errors}"
    );
    shot(c, "admin-import-refused").await;
    // the same file, skipping the bad lines
    c.goto(&app.url("/admin/imports")).await.unwrap();
    upload(c.clone(), true).await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#import-status.notice"))
        .await
        .expect("the import finished and the page said so");
    assert_eq!(
        wait_css(c, "#import-status").await.text().await.unwrap(),
        "Done: 2 members imported (4 rows read, 2 bad)."
    );
    shot(c, "admin-import-done").await;
    c.goto(&app.url("/admin/members?q=CRM-2")).await.unwrap();
    let found = wait_css(c, "#found").await.text().await.unwrap();
    assert!(found.contains("Li, Lei"), "{found}");
    c.goto(&app.url("/admin/imports")).await.unwrap();
    assert_eq!(count(c, "#imports tbody tr").await, 2);
    shot(c, "admin-imports-list").await;
    b.client.clone().close().await.unwrap();

    let phone = browser(true, "zh-CN").await;
    log_in(&phone.client, &app, "boss@example.com").await;
    phone.client.goto(&app.url("/admin/imports")).await.unwrap();
    wait_css(&phone.client, "#imports").await;
    shot(&phone.client, "admin-imports-phone").await;
    // followed rather than clicked: with mobile emulation a click is a touch, and on a
    // loaded machine a touch held past the long-press threshold opens no link
    wait_css(&phone.client, "#imports tbody tr:first-child a")
        .await
        .follow()
        .await
        .unwrap();
    wait_css(&phone.client, "#import-status.notice").await;
    shot(&phone.client, "admin-import-done-phone").await;
    phone.client.clone().close().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
