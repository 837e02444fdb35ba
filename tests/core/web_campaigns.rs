//! Campaigns in the portal over HTTP: staff create one (with an inline error first),
//! preview an order, end one after confirming; members see "ways to earn" and enter their
//! birthday once. And the API's earn from an order amount alone, with its bonus lines.

use member_portal::service::accounts;
use serde_json::{Value, json};

use crate::harness::earn_req;
use crate::web_harness::*;

#[tokio::test]
async fn staff_create_preview_and_end_a_campaign_and_members_see_it_under_ways_to_earn() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let boss = app.another_browser();
    boss.login("boss@example.com", PASSWORD).await;
    let mut form = vec![
        ("name", "双倍积分周"),
        ("kind", "multiplier"),
        ("multiplier", "1"),
        ("bonus_points", ""),
        ("source_type", "order_complete"),
        ("category", ""),
        ("min_amount", ""),
        ("starts_on", "2025-09-15"),
        ("ends_on", "2025-09-21"),
    ];
    let r = boss.post("/admin/campaigns", &form).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"multiplier-error\"") && html.contains("倍数需大于 1"),
        "{html}"
    );
    assert!(html.contains("value=\"双倍积分周\""));
    form[2] = ("multiplier", "2");
    let r = boss.post("/admin/campaigns", &form).await;
    assert_eq!(location(&r), "/admin/campaigns?done=created");
    let html = boss.text("/admin/campaigns").await;
    assert!(
        html.contains("双倍积分周") && html.contains("积分 ×2") && html.contains("进行中"),
        "{html}"
    );
    assert!(
        html.contains("2025-09-15 – 2025-09-21"),
        "the last day included"
    );
    // "this order of ¥300 for a 银牌会员 earns …"
    let silver = app.s.levels.list().await.unwrap()[1].clone();
    let html = boss
        .text(&format!(
            "/admin/campaigns?level_id={}&amount=300&source_type=order_complete",
            silver.id
        ))
        .await;
    let result = html
        .split("id=\"preview-result\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{html}"));
    assert!(
        result.contains("银牌会员 得 300 × 等级倍率 = 360 积分，含活动共 720 积分"),
        "{result}"
    );

    // a member sees it, and the rate
    let ann = app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    let html = app.text("/earn").await;
    assert!(
        html.contains("每消费 ¥1 得 1 积分")
            && html.contains("双倍积分周")
            && html.contains("积分 ×2"),
        "{html}"
    );
    let o = app
        .s
        .points
        .earn_points(earn_req(ann, 100, "O1", None))
        .await
        .unwrap();
    assert_eq!(o.bonuses.len(), 1);
    assert!(app.text("/points").await.contains("活动奖励：双倍积分周"));

    // end it: asks first
    let id = app.s.campaigns.all().await.unwrap()[0].id;
    let ask = boss.post(&format!("/admin/campaigns/{id}/end"), &[]).await;
    assert!(ask.text().await.unwrap().contains("id=\"confirm-yes\""));
    let r = boss
        .post(&format!("/admin/campaigns/{id}/end"), &[("confirm", "yes")])
        .await;
    assert_eq!(location(&r), "/admin/campaigns?done=ended");
    assert!(
        app.s
            .points
            .earn_points(earn_req(ann, 100, "O2", None))
            .await
            .unwrap()
            .bonuses
            .is_empty()
    );
    assert!(app.text("/earn").await.contains("暂时没有积分活动"));
    let audit = boss.text("/admin/audit").await;
    assert!(audit.contains("新建活动") && audit.contains("结束活动"));
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}

#[tokio::test]
async fn a_member_enters_a_birthday_once() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    assert!(app.text("/earn").await.contains("id=\"birthday-input\""));
    let r = app
        .post("/profile/birthday", &[("birthday", "2099-01-01")])
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("请填写过去的日期"));
    let r = app
        .post("/profile/birthday", &[("birthday", "1990-05-20")])
        .await;
    assert_eq!(location(&r), "/earn?done=birthday");
    let html = app.text("/earn?done=birthday").await;
    assert!(
        html.contains("生日已保存")
            && html.contains("1990-05-20")
            && !html.contains("birthday-input")
    );
    let r = app
        .post("/profile/birthday", &[("birthday", "1991-01-01")])
        .await;
    assert_eq!(r.status(), 422);
    assert!(app.text("/earn").await.contains("1990-05-20"));
}

#[tokio::test]
async fn the_api_earns_from_the_order_amount_alone_and_reports_bonus_lines() {
    let app = spawn_app_with(|c| c.points_per_yuan = "0.5".parse().unwrap()).await;
    let key = accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    let user = app.member("ann@example.com").await;
    let post = |body: Value| {
        app.client
            .post(app.url(&format!("/api/v1/members/{user}/points/earn")))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let r = post(json!({"source_type": "order_complete", "source_id": "A1", "amount": "301.99"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["points_change"], 150, "floor(301.99 × 0.5)");
    assert_eq!(t["bonuses"], json!([]));
    let r = post(json!({"source_type": "order_complete", "source_id": "A2", "amount": "1.00"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "amount");
    let r = post(json!({"source_type": "order_complete", "source_id": "A3"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "base_points");
    // a bonus for one category
    let now = member_portal::clock::Clock::now(&app.clock);
    let mut shoes = member_portal::domain::campaigns::CampaignInput::parse(
        &member_portal::domain::campaigns::CampaignFields {
            name: "鞋类加赠",
            kind: "bonus",
            bonus_points: "40",
            starts_at: Some(now - time::Duration::days(1)),
            ends_at: Some(now + time::Duration::days(1)),
            ..Default::default()
        },
    )
    .unwrap();
    shoes.category = Some("shoes".into());
    let id = app.s.campaigns.create(None, shoes).await.unwrap();
    let body = json!({"source_type": "order_complete", "source_id": "A4", "amount": "100", "category": "shoes"});
    let r = post(body.clone()).await.unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["bonuses"][0]["points_change"], 40, "{t}");
    assert_eq!(t["bonuses"][0]["campaign_id"], id.to_string());
    assert_eq!(t["bonuses"][0]["balance_after"], 240);
    let r = post(body).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["bonuses"][0]["points_change"],
        40
    );
    assert_eq!(app.s.points.summary(user).await.unwrap().available, 240);
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}
