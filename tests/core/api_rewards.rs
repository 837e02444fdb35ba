//! Rewards and coupons through the JSON API: the catalogue, redemptions, and checkout's
//! validate, consume, release and cancel; 200 redemptions racing for 50 in stock across
//! two instances.

use member_portal::service::accounts;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::rewards::reward_input;
use crate::web_harness::*;

async fn call(
    app: &TestApp,
    base: &str,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method.parse().unwrap(), format!("{base}/api/v1{path}"))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}")),
    )
}

#[tokio::test]
async fn an_integration_redeems_and_checkout_validates_consumes_releases_and_cancels() {
    let app = spawn_app().await;
    let key = accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    let api = |m: &'static str, p: String, b: Option<Value>| {
        let (app, key) = (&app, &key);
        async move { call(app, &app.base, key, m, &p, b).await }
    };
    let user = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(crate::harness::earn_req(user, 1000, "O1", None))
        .await
        .unwrap();
    let reward = app
        .s
        .rewards
        .create(None, reward_input("¥10 off", "400", "3"))
        .await
        .unwrap();

    let (s, list) = api("GET", "/rewards".into(), None).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "¥10 off");
    assert_eq!(list[0]["value"], "10.00");
    assert_eq!(list[0]["stock"], 3);
    assert_eq!(list[0]["kind"], "amount");

    let body = json!({"reward_id": reward.id, "redemption_id": "APP-1"});
    let (s, r) = api(
        "POST",
        format!("/members/{user}/redemptions"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["transaction"]["points_change"], -400);
    assert_eq!(r["transaction"]["reference_type"], "reward");
    assert_eq!(r["coupon"]["status"], "issued");
    let code = r["coupon"]["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 19, "{code}");
    let (s, again) = api("POST", format!("/members/{user}/redemptions"), Some(body)).await;
    assert_eq!(s, 200);
    assert_eq!(again["coupon"]["code"], code.as_str());

    let (s, page) = api("GET", format!("/members/{user}/coupons?limit=1"), None).await;
    assert_eq!(s, 200);
    assert_eq!(page["items"][0]["code"], code.as_str());
    assert_eq!(page["next_cursor"], Value::Null);

    let (s, check) = api(
        "POST",
        "/coupons/validate".into(),
        Some(json!({"code": code, "amount": "6.50"})),
    )
    .await;
    assert_eq!(s, 200, "{check}");
    assert_eq!(
        (check["usable"].clone(), check["discount"].clone()),
        (json!(true), json!("6.50"))
    );

    let consume = json!({"code": code.replace('-', "").to_lowercase(), "order_id": "SO-1"});
    let (s, used) = api("POST", "/coupons/consume".into(), Some(consume.clone())).await;
    assert_eq!(s, 200, "{used}");
    assert_eq!(
        (used["replayed"].clone(), used["coupon"]["status"].clone()),
        (json!(false), json!("consumed"))
    );
    let (_, used) = api("POST", "/coupons/consume".into(), Some(consume)).await;
    assert_eq!(used["replayed"], true);
    let (s, e) = api(
        "POST",
        "/coupons/consume".into(),
        Some(json!({"code": code, "order_id": "SO-2"})),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(
        (e["code"].clone(), e["status"].clone()),
        (json!("COUPON_NOT_USABLE"), json!("consumed"))
    );
    let (s, e) = api(
        "POST",
        "/coupons/cancel".into(),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(
        (s, e["code"].clone()),
        (StatusCode::CONFLICT, json!("COUPON_NOT_USABLE"))
    );

    let (s, back) = api(
        "POST",
        "/coupons/release".into(),
        Some(json!({"code": code, "order_id": "SO-1"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(back["coupon"]["status"], "issued");
    let (s, gone) = api(
        "POST",
        "/coupons/cancel".into(),
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(s, 200, "{gone}");
    assert_eq!(gone["coupon"]["status"], "cancelled");
    assert_eq!(gone["refund"]["points_change"], 400);
    assert_eq!(app.s.points.summary(user).await.unwrap().available, 1000);

    // refusals, each with its code and nothing changed
    let (s, e) = api(
        "POST",
        format!("/members/{user}/redemptions"),
        Some(json!({"reward_id": 999, "redemption_id": "X"})),
    )
    .await;
    assert_eq!(
        (s, e["code"].clone()),
        (StatusCode::NOT_FOUND, json!("REWARD_NOT_FOUND"))
    );
    let big = app
        .s
        .rewards
        .create(None, reward_input("Big", "5000", ""))
        .await
        .unwrap();
    let (s, e) = api(
        "POST",
        format!("/members/{user}/redemptions"),
        Some(json!({"reward_id": big.id, "redemption_id": "Y"})),
    )
    .await;
    assert_eq!(
        (s, e["code"].clone(), e["required"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("INSUFFICIENT_POINTS"),
            json!(5000)
        )
    );
    let (s, e) = api(
        "POST",
        format!("/members/{user}/redemptions"),
        Some(json!({"reward_id": reward.id, "redemption_id": "Z", "points": 1})),
    )
    .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("points"))
    );
    let (s, e) = api(
        "POST",
        "/coupons/validate".into(),
        Some(json!({"code": "0000-0000-0000-0000"})),
    )
    .await;
    assert_eq!(
        (s, e["code"].clone()),
        (StatusCode::NOT_FOUND, json!("COUPON_NOT_FOUND"))
    );
    let (s, e) = api(
        "POST",
        "/coupons/validate".into(),
        Some(json!({"code": "not a code"})),
    )
    .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("code"))
    );
    let (s, e) = api(
        "POST",
        "/members/1/points/use".into(),
        Some(json!({"points": 1, "usage_type": "reward", "reference_id": "APP-9"})),
    )
    .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("usage_type"))
    );
    let r = app
        .client
        .get(app.url("/api/v1/rewards"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}

#[tokio::test]
async fn two_hundred_redemptions_of_fifty_in_stock_across_two_instances_issue_exactly_fifty() {
    let app = spawn_app_with(|c| {
        c.redis_url = Some(crate::harness::REDIS.to_owned());
        c.db_pool_size = 8;
    })
    .await;
    let other = app.another_instance().await;
    let key = accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    let reward = app
        .s
        .rewards
        .create(None, reward_input("Limited", "100", "50"))
        .await
        .unwrap();
    // 40 members with points for 5 each, 5 requests each: 200 in all
    let mut users = Vec::new();
    for i in 0..40 {
        let u = app.member(&format!("m{i}@example.com")).await;
        app.s
            .points
            .earn_points(crate::harness::earn_req(u, 500, &format!("S{i}"), None))
            .await
            .unwrap();
        users.push(u);
    }
    let bases = vec![app.base.clone(), other.clone()];
    let mut tasks = Vec::new();
    for (n, u) in users
        .iter()
        .flat_map(|u| std::iter::repeat_n(*u, 5))
        .enumerate()
    {
        // as an integration would: a request told to try again (the member busy past the
        // lock wait, or no connection free on a loaded machine) is sent again with the same
        // redemption id, which must not issue a second coupon
        let (client, bases, key) = (app.client.clone(), bases.clone(), key.clone());
        let body = json!({"reward_id": reward.id, "redemption_id": format!("RACE-{n}")});
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/v1/members/{u}/redemptions");
            post_until_final(&client, &bases, n, &key, &path, &body).await
        }));
    }
    let (mut created, mut out_of_stock) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match (r.status, r.body["code"].as_str()) {
            (201, _) => created += 1,
            (422, Some("REWARD_OUT_OF_STOCK")) => out_of_stock += 1,
            other => panic!("unexpected {other:?}: {}", r.body),
        }
    }
    assert_eq!((created, out_of_stock), (50, 150));
    let pool = &app.s.ctx.pool;
    let n = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    assert_eq!(n("select count(*) from coupons").await, 50);
    assert_eq!(n("select count(distinct code) from coupons").await, 50);
    assert_eq!(
        n("select count(*) from point_transactions where reference_type = 'reward'").await,
        50
    );
    assert_eq!(n("select coalesce(sum(-points_change), 0)::bigint from point_transactions where reference_type = 'reward'").await, 5000);
    let r = app.s.rewards.get(reward.id).await.unwrap();
    assert_eq!((r.stock, r.issued), (Some(0), 50));
    app.assert_ledger_clean_via(pool).await;
}
