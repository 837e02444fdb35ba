//! JSON API v1 contract: every route, status and error code of SPEC §4.2.

use member_portal::service::accounts;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::web_harness::*;

struct Api {
    app: TestApp,
    key: String,
}

async fn api() -> Api {
    let app = spawn_app().await;
    let key = accounts::create_api_key(&app.s.ctx, "orders", None)
        .await
        .unwrap();
    Api { app, key }
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = self.app.url(&format!("/api/v1{path}"));
        let mut req = self
            .app
            .client
            .request(method.parse().unwrap(), url)
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        (status, json)
    }

    async fn member(&self, email: &str) -> i64 {
        let (s, body) = self
            .call(
                "POST",
                "/members",
                Some(json!({"email": email, "display_name": "Ann"})),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        body["user_id"].as_i64().unwrap()
    }

    async fn changes(&self) -> (i64, i64, i64) {
        let pool = &self.app.s.ctx.pool;
        let n = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .unwrap()
        };
        (
            n("select count(*) from users").await,
            n("select count(*) from point_transactions").await,
            n("select coalesce(sum(available_points), 0)::bigint from member_profiles").await,
        )
    }
}

fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn members_are_created_and_read_with_the_profile_of_the_spec() {
    let a = api().await;
    let (s, p) = a.call("POST", "/members", Some(json!({"email": "ann@example.com", "display_name": "Ann", "password": "long enough"}))).await;
    assert_eq!(s, 201);
    assert_eq!(p["member_code"], "M2025091800001");
    assert_eq!(p["total_spent"], "0.00", "a string decimal");
    assert_eq!(p["level"]["level_name"], "普通会员");
    assert_eq!(p["level"]["discount_rate"], "1.000");
    assert_eq!(p["level"]["point_multiplier"], "1.00");
    assert!(p["level"]["benefits"].is_array());
    assert_eq!(
        p["points"],
        json!({"available": 0, "pending": 0, "pending_release": [], "total_earned": 0,
               "total_used": 0, "total_expired": 0, "expiring_soon": []})
    );
    assert_eq!(p["upgrade_progress"]["next_level"], "银牌会员");
    assert_eq!(p["upgrade_progress"]["remaining"], "1000.00");
    let id = p["user_id"].as_i64().unwrap();
    let (s, got) = a.call("GET", &format!("/members/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(got, p);
    let (s, e) = a
        .call(
            "POST",
            "/members",
            Some(json!({"email": "ANN@example.com", "display_name": "Again"})),
        )
        .await;
    assert_error(s, &e, 409, "EMAIL_TAKEN");
    let (s, e) = a.call("GET", "/members/999999", None).await;
    assert_error(s, &e, 404, "MEMBER_NOT_FOUND");
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let (s, e) = a.call("GET", &format!("/members/{bad}"), None).await;
        assert_error(s, &e, 400, "VALIDATION_ERROR");
        assert_eq!(e["field"], "user_id");
    }
}

#[tokio::test]
async fn earn_use_reverse_refund_answer_201_then_200_on_replay() {
    let a = api().await;
    let id = a.member("ann@example.com").await;
    let p = |path: &str| format!("/members/{id}/points/{path}");
    // the seed's example through the API
    sqlx::query("update member_profiles set total_spent = 800 where user_id = $1")
        .bind(id)
        .execute(&a.app.s.ctx.pool)
        .await
        .unwrap();
    a.app.s.ctx.cache.invalidate_members(&[id]).await;
    let earn = json!({"base_points": 300, "source_type": "order_complete", "source_id": "ORDER_001", "amount": "300.00"});
    let (s, t) = a.call("POST", &p("earn"), Some(earn.clone())).await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(
        (
            t["transaction_type"].as_str(),
            t["points_change"].as_i64(),
            t["balance_after"].as_i64()
        ),
        (Some("earn"), Some(300), Some(300))
    );
    assert_eq!(t["upgrade"]["new_level"], "银牌会员");
    assert_eq!(t["upgrade"]["upgraded"], true);
    let (s, again) = a.call("POST", &p("earn"), Some(earn)).await;
    assert_eq!(s, 200);
    assert_eq!(again["id"], t["id"]);
    assert_eq!(
        again, t,
        "a replay answers the first reply, upgrade included"
    );
    let (s, e) = a.call("POST", &p("earn"), Some(json!({"base_points": 301, "source_type": "order_complete", "source_id": "ORDER_001", "amount": 300}))).await;
    assert_error(s, &e, 409, "IDEMPOTENCY_CONFLICT");

    let spend = json!({"points": 100, "usage_type": "checkout", "reference_id": "PAY_1"});
    let (s, u) = a.call("POST", &p("use"), Some(spend.clone())).await;
    assert_eq!((s.as_u16(), u["points_change"].as_i64()), (201, Some(-100)));
    assert!(u.get("upgrade").is_none(), "only an earn carries upgrade");
    assert_eq!(a.call("POST", &p("use"), Some(spend)).await.0, 200);
    let (s, e) = a
        .call(
            "POST",
            &p("use"),
            Some(json!({"points": 1000, "usage_type": "checkout", "reference_id": "PAY_2"})),
        )
        .await;
    assert_error(s, &e, 422, "INSUFFICIENT_POINTS");
    assert_eq!(
        (e["required"].as_i64(), e["available"].as_i64()),
        (Some(1000), Some(200))
    );

    let (s, r) = a
        .call(
            "POST",
            &p("refund"),
            Some(json!({"usage_type": "checkout", "reference_id": "PAY_1"})),
        )
        .await;
    assert_eq!((s.as_u16(), r["points_change"].as_i64()), (201, Some(100)));
    assert_eq!(
        a.call(
            "POST",
            &p("refund"),
            Some(json!({"usage_type": "checkout", "reference_id": "PAY_1"}))
        )
        .await
        .0,
        200
    );

    let (s, v) = a.call("POST", &p("reverse"), Some(json!({"source_type": "order_complete", "source_id": "ORDER_001", "refund_id": "R1", "amount": 100}))).await;
    assert_eq!(
        (
            s.as_u16(),
            v["points_change"].as_i64(),
            v["unrecovered"].as_i64()
        ),
        (201, Some(-100), Some(0))
    );
    assert_eq!(a.call("POST", &p("reverse"), Some(json!({"source_type": "order_complete", "source_id": "ORDER_001", "refund_id": "R1", "amount": 100}))).await.0, 200);
    let (s, e) = a
        .call(
            "POST",
            &p("reverse"),
            Some(json!({"source_type": "order_complete", "source_id": "NOPE"})),
        )
        .await;
    assert_error(s, &e, 404, "NOT_FOUND");

    let (s, b) = a
        .call("GET", &format!("/members/{id}/points/batches"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(b[0]["available_points"], 200);
    assert_eq!(b[0]["earned_points"], 300);
    assert!(
        b[0]["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-09-18")
    );
    let (s, g) = a
        .call("GET", &format!("/members/{id}/upgrade-progress"), None)
        .await;
    assert_eq!(
        (s.as_u16(), g["next_level"].as_str()),
        (200, Some("金牌会员"))
    );
    // lifetime window (the default): the level is kept for good, nothing to review
    let (s, l) = a
        .call("GET", &format!("/members/{id}/level-status"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(l["level"]["level_name"], "银牌会员");
    assert_eq!(l["window"], "lifetime");
    assert_eq!(l["qualifying_spent"], "1000.00");
    assert_eq!(l["kept_until"], serde_json::Value::Null);
    assert_eq!(l["review"], serde_json::Value::Null);
    a.app.assert_ledger_clean_via(&a.app.s.ctx.pool).await;
}

#[tokio::test]
async fn caps_are_enforced_with_their_codes() {
    let a = api().await;
    let id = a.member("ann@example.com").await;
    let earn =
        |n: i64, key: &str| json!({"base_points": n, "source_type": "order", "source_id": key});
    let (s, e) = a
        .call(
            "POST",
            &format!("/members/{id}/points/earn"),
            Some(earn(10_001, "A")),
        )
        .await;
    assert_error(s, &e, 422, "POINTS_PER_TRANSACTION_EXCEEDED");
    assert_eq!(
        a.call(
            "POST",
            &format!("/members/{id}/points/earn"),
            Some(earn(5000, "B"))
        )
        .await
        .0,
        201
    );
    let (s, e) = a
        .call(
            "POST",
            &format!("/members/{id}/points/earn"),
            Some(earn(1, "C")),
        )
        .await;
    assert_error(s, &e, 422, "DAILY_POINTS_LIMIT_EXCEEDED");
    let (s, e) = a
        .call("POST", "/members/999999/points/earn", Some(earn(1, "D")))
        .await;
    assert_error(s, &e, 404, "MEMBER_NOT_FOUND");
}

#[tokio::test]
async fn transactions_page_by_cursor() {
    let a = api().await;
    let id = a.member("ann@example.com").await;
    for i in 0..7 {
        a.call(
            "POST",
            &format!("/members/{id}/points/earn"),
            Some(json!({"base_points": 10, "source_type": "order", "source_id": format!("O{i}")})),
        )
        .await;
    }
    let (s, first) = a
        .call(
            "GET",
            &format!("/members/{id}/points/transactions?limit=5"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 5);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = a
        .call(
            "GET",
            &format!("/members/{id}/points/transactions?limit=5&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
    assert_eq!(second["next_cursor"], Value::Null);
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=abc", "cursor=-4"] {
        let (s, e) = a
            .call(
                "GET",
                &format!("/members/{id}/points/transactions?{bad}"),
                None,
            )
            .await;
        assert_error(s, &e, 422, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn an_api_key_is_required_valid_and_unrevoked() {
    let a = api().await;
    let url = a.app.url("/api/v1/members/1");
    for auth in [
        None,
        Some("Bearer"),
        Some("Bearer mp_nope"),
        Some("Basic abc"),
    ] {
        let mut r = a.app.client.get(&url);
        if let Some(h) = auth {
            r = r.header("authorization", h);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED");
    }
    a.member("ann@example.com").await;
    let used: bool = sqlx::query_scalar("select last_used_at is not null from api_keys")
        .fetch_one(&a.app.s.ctx.pool)
        .await
        .unwrap();
    assert!(used, "last_used_at kept");
    sqlx::query("update api_keys set revoked_at = now()")
        .execute(&a.app.s.ctx.pool)
        .await
        .unwrap();
    let (s, e) = a.call("GET", "/members/1", None).await;
    assert_error(s, &e, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn me_profile_uses_the_browser_session() {
    let a = api().await;
    let r = a
        .app
        .client
        .get(a.app.url("/api/v1/me/profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let id = a.app.member("bob@example.com").await;
    a.app.login("bob@example.com", PASSWORD).await;
    let r = a
        .app
        .client
        .get(a.app.url("/api/v1/me/profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["user_id"], id);
}

/// A table of malformed requests for every route that writes: each gets a 4xx with a code
/// and a message, and nothing changes.
#[tokio::test]
async fn malformed_requests_get_a_4xx_with_a_code_and_change_nothing() {
    let a = api().await;
    let id = a.member("ann@example.com").await;
    a.call(
        "POST",
        &format!("/members/{id}/points/earn"),
        Some(json!({"base_points": 100, "source_type": "order", "source_id": "SEED"})),
    )
    .await;
    let before = a.changes().await;
    let routes = [
        (
            "/members".to_owned(),
            json!({"email": "x@example.com", "display_name": "X"}),
        ),
        (
            format!("/members/{id}/points/earn"),
            json!({"base_points": 10, "source_type": "order", "source_id": "O1", "amount": "10.00"}),
        ),
        (
            format!("/members/{id}/points/use"),
            json!({"points": 10, "usage_type": "checkout", "reference_id": "P1"}),
        ),
        (
            format!("/members/{id}/points/reverse"),
            json!({"source_type": "order", "source_id": "SEED", "refund_id": "R1", "amount": "1"}),
        ),
        (
            format!("/members/{id}/points/refund"),
            json!({"usage_type": "checkout", "reference_id": "P1"}),
        ),
    ];
    let mut cases = 0;
    for (path, good) in &routes {
        let url = a.app.url(&format!("/api/v1{path}"));
        let send_raw = |body: Vec<u8>, ct: &'static str| {
            let (client, url, key) = (a.app.client.clone(), url.clone(), a.key.clone());
            async move {
                let r = client
                    .post(url)
                    .bearer_auth(key)
                    .header("content-type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let mut raw: Vec<(Vec<u8>, &str, u16)> = vec![
            (b"{".to_vec(), "application/json", 400),
            (b"not json".to_vec(), "application/json", 400),
            (b"".to_vec(), "application/json", 400),
            (b"[]".to_vec(), "application/json", 422),
            (b"null".to_vec(), "application/json", 422),
            (serde_json::to_vec(good).unwrap(), "text/plain", 415),
            (
                serde_json::to_vec(good).unwrap(),
                "application/x-www-form-urlencoded",
                415,
            ),
            (
                format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000)).into_bytes(),
                "application/json",
                413,
            ),
            (
                [serde_json::to_vec(good).unwrap(), b" trailing".to_vec()].concat(),
                "application/json",
                400,
            ),
        ];
        // field-level damage: unknown, missing, wrong type, out of range, sign, zero
        let fields: Vec<String> = good.as_object().unwrap().keys().cloned().collect();
        let mut bodies: Vec<(Value, u16)> = vec![];
        let mut typo = good.clone();
        typo["amout"] = json!("1.00");
        bodies.push((typo, 422));
        for f in &fields {
            let mut missing = good.clone();
            missing.as_object_mut().unwrap().remove(f);
            // an earn with its amount may leave base_points out (MEMBER_POINTS_PER_YUAN)
            let optional = ["amount", "refund_id"].contains(&f.as_str())
                || (path.ends_with("/earn") && f == "base_points");
            if !optional {
                bodies.push((missing, 422));
            }
            for bad in [
                json!({"nested": 1}),
                json!([1]),
                json!(true),
                json!(9.2e18),
                json!("9223372036854775808"),
                json!(-1),
                json!(0),
                json!(""),
                json!("1.001"),
                json!("x".repeat(101)),
                json!("\u{0}"),
            ] {
                let mut b = good.clone();
                b[f.as_str()] = bad.clone();
                let numeric = ["base_points", "points", "amount"].contains(&f.as_str());
                let valid_anyway = match f.as_str() {
                    // a string where a string goes is fine when it is a valid string
                    _ if !numeric
                        && bad.is_string()
                        && !["", "\u{0}"].contains(&bad.as_str().unwrap())
                        && bad.as_str().unwrap().len() <= 100
                        && bad.as_str() != Some("9223372036854775808") =>
                    {
                        true
                    }
                    _ if !numeric && bad == json!("9223372036854775808") => true,
                    _ => false,
                };
                if !valid_anyway {
                    bodies.push((b, 422));
                }
            }
        }
        for (b, status) in bodies {
            raw.push((serde_json::to_vec(&b).unwrap(), "application/json", status));
        }
        for (body, ct, status) in raw {
            let (s, e) = send_raw(body.clone(), ct).await;
            cases += 1;
            assert!(
                s.is_client_error(),
                "{path} {}: {s} {e}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            );
            assert_eq!(
                s.as_u16(),
                status,
                "{path} {}: {e}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            );
            assert!(
                e["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{path}: {e}"
            );
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{path}: {e}"
            );
        }
        assert_eq!(
            a.changes().await,
            before,
            "{path}: a rejected request changed something"
        );
    }
    // the unknown field is named
    let (s, e) = a
        .call(
            "POST",
            &format!("/members/{id}/points/earn"),
            Some(json!({"base_points": 1, "source_type": "o", "source_id": "T", "amout": "1.00"})),
        )
        .await;
    assert_error(s, &e, 422, "VALIDATION_ERROR");
    assert_eq!(e["field"], "amout");
    assert!(e["message"].as_str().unwrap().contains("amout"));
    // unknown routes and methods answer in JSON too
    let (s, e) = a.call("GET", "/nothing-here", None).await;
    assert_error(s, &e, 404, "NOT_FOUND");
    let (s, e) = a.call("DELETE", &format!("/members/{id}"), None).await;
    assert_error(s, &e, 405, "VALIDATION_ERROR");
    assert!(cases > 150, "{cases} cases");
    eprintln!("malformed requests: {cases} cases, all 4xx with a code, no change");
}

#[tokio::test]
async fn metrics_show_the_seed_series_after_earn_use_and_upgrade() {
    let a = api().await;
    let id = a.member("ann@example.com").await;
    a.call(
        "POST",
        &format!("/members/{id}/points/earn"),
        Some(
            json!({"base_points": 300, "source_type": "order", "source_id": "M1", "amount": 1200}),
        ),
    )
    .await;
    a.call(
        "POST",
        &format!("/members/{id}/points/use"),
        Some(json!({"points": 5, "usage_type": "checkout", "reference_id": "M2"})),
    )
    .await;
    a.call("GET", &format!("/members/{id}"), None).await;
    let r = a
        .app
        .client
        .get(a.app.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for series in [
        "member_system_points_transactions_total{type=\"earn\"}",
        "member_system_points_transactions_total{type=\"use\"}",
        "member_system_points_amount_bucket{type=\"earn\",le=",
        "member_system_level_upgrades_total{from_level=\"普通会员\",to_level=\"银牌会员\"}",
        "member_system_api_response_time_seconds_bucket{endpoint=\"/api/v1/members/{user_id}/points/earn\",le=",
        "member_system_cache_hits_total",
        "member_system_cache_misses_total",
        "member_system_lock_wait_seconds_bucket",
        "member_system_db_pool_connections{state=\"idle\"}",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
    assert!(
        !text.contains("endpoint=\"/api/v1/members/1"),
        "ids never become series"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let a = api().await;
    let r = a
        .app
        .client
        .get(a.app.url("/healthz"))
        .send()
        .await
        .unwrap();
    let id = r
        .headers()
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36);
    let r = a
        .app
        .client
        .get(a.app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "trace-me-42",
        "a caller's id is kept"
    );
    // an id that is too long or could forge log lines is replaced by one of ours
    for bad in [
        "x".repeat(65),
        "a b".into(),
        "line\tbreak".into(),
        "ok;rm".into(),
    ] {
        let r = a
            .app
            .client
            .get(a.app.url("/healthz"))
            .header("x-request-id", bad.as_str())
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{bad:?} replaced: {id}");
        assert_ne!(id, bad);
    }
    let longest = "A-z.0_9".repeat(9) + "x";
    assert_eq!(longest.len(), 64);
    let r = a
        .app
        .client
        .get(a.app.url("/healthz"))
        .header("x-request-id", longest.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], longest.as_str());
}

/// The description is generated from the handlers; every documented route answers (never
/// the "no such route" 404 or a 405), and the set is exactly SPEC §4.2's.
#[tokio::test]
async fn openapi_describes_exactly_the_routes_the_server_has() {
    let a = api().await;
    let r = a
        .app
        .client
        .get(a.app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut expected: Vec<String> = [
        "POST /api/v1/members",
        "GET /api/v1/members/{user_id}",
        "POST /api/v1/members/{user_id}/points/earn",
        "POST /api/v1/members/{user_id}/points/use",
        "POST /api/v1/members/{user_id}/points/reverse",
        "POST /api/v1/members/{user_id}/points/refund",
        "GET /api/v1/members/{user_id}/points/batches",
        "GET /api/v1/members/{user_id}/points/transactions",
        "GET /api/v1/members/{user_id}/upgrade-progress",
        "GET /api/v1/members/{user_id}/level-status",
        "GET /api/v1/me/profile",
        "GET /api/v1/rewards",
        "GET /api/v1/members/by-external-id/{external_id}",
        "POST /api/v1/members/{user_id}/redemptions",
        "GET /api/v1/members/{user_id}/coupons",
        "POST /api/v1/coupons/validate",
        "POST /api/v1/coupons/consume",
        "POST /api/v1/coupons/release",
        "POST /api/v1/coupons/cancel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(documented, expected);
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let url = a.app.url(&path.replace("{user_id}", "1"));
        let r = a
            .app
            .client
            .request(method.parse().unwrap(), url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 405, "{route}");
        let body: Value = r.json().await.unwrap();
        assert_ne!(
            body["message"], "this API route not found",
            "{route} is documented but not served"
        );
        assert_eq!(
            body["code"], "UNAUTHORIZED",
            "{route}: every documented route needs its credentials"
        );
    }
    // the schemas an integrator needs are there
    for schema in [
        "ProfileView",
        "TransactionView",
        "EarnBody",
        "ErrorBody",
        "TransactionPage",
        "Batch",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // a transaction's type is one of the types, listed
    let types = &doc["components"]["schemas"]["TransactionType"]["enum"];
    assert_eq!(
        types,
        &json!([
            "earn", "use", "expire", "adjust", "reverse", "refund", "release"
        ]),
        "{}",
        doc["components"]["schemas"]["TransactionView"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert_eq!(member_portal::web::api::openapi().paths.paths.len(), 19);
}

#[tokio::test]
async fn unreadable_paths_and_query_strings_get_json_errors_and_a_keyless_caller_401_first() {
    let a = api().await;
    let user = a.member("ann@example.com").await;
    for (method, path) in [
        ("GET", "/members/%FF".to_owned()),
        ("GET", "/members/%FF/points/batches".to_owned()),
        ("POST", "/members/%FF/points/earn".to_owned()),
        ("POST", "/members/%FF/points/use".to_owned()),
        (
            "GET",
            format!("/members/{user}/points/transactions?limit=1&limit=2"),
        ),
    ] {
        let body = json!({"base_points": 1, "source_type": "o", "source_id": "X", "points": 1, "usage_type": "u", "reference_id": "R"});
        // without a key: 401, whatever else is wrong
        let r = a
            .app
            .client
            .request(
                method.parse().unwrap(),
                a.app.url(&format!("/api/v1{path}")),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let (s, e) = a.call(method, &path, Some(body)).await;
        assert_error(s, &e, 400, "VALIDATION_ERROR");
        let field = e["field"].as_str().unwrap_or_default();
        assert!(
            field == "user_id" || field == "query",
            "{method} {path}: {e}"
        );
    }
    let (s, e) = a
        .call(
            "GET",
            &format!("/members/{user}/points/transactions?limit=1&limit=2"),
            None,
        )
        .await;
    assert_error(s, &e, 400, "VALIDATION_ERROR");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("duplicate field `limit`"),
        "{e}"
    );
}

#[tokio::test]
async fn amounts_are_decimal_strings_or_whole_numbers_and_cursors_plain_digits() {
    let a = api().await;
    let user = a.member("ann@example.com").await;
    let earn = |id: &str, amount: Value| json!({"base_points": 1, "source_type": "order", "source_id": id, "amount": amount});
    let p = format!("/members/{user}/points/earn");
    for (id, amount) in [
        ("A1", json!("300.10")),
        ("A2", json!(300)),
        ("A3", json!("0.05")),
    ] {
        let (s, t) = a.call("POST", &p, Some(earn(id, amount))).await;
        assert_eq!(s, 201, "{t}");
    }
    for (id, amount) in [
        ("B1", json!(300.5)),
        ("B2", json!("300.123")),
        ("B3", json!("1e3")),
        ("B4", json!("0300")),
        ("B5", json!("0.00")),
        ("B6", json!(" 5")),
    ] {
        let (s, e) = a.call("POST", &p, Some(earn(id, amount.clone()))).await;
        assert_error(s, &e, 422, "VALIDATION_ERROR");
        assert!(e.to_string().contains("amount"), "{amount}: {e}");
    }
    let spent: String =
        sqlx::query_scalar("select total_spent::text from member_profiles where user_id = $1")
            .bind(user)
            .fetch_one(&a.app.s.ctx.pool)
            .await
            .unwrap();
    assert_eq!(spent, "600.15");
    for cursor in ["+5", "05", "-1", "1.0"] {
        let (s, e) = a
            .call(
                "GET",
                &format!("/members/{user}/points/transactions?cursor={cursor}"),
                None,
            )
            .await;
        assert_error(s, &e, 422, "VALIDATION_ERROR");
    }
    // the description says where limit and cursor go
    let doc = member_portal::web::api::openapi_json();
    let params = doc["paths"]["/api/v1/members/{user_id}/points/transactions"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    for name in ["limit", "cursor"] {
        let param = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(param["in"], "query", "{param}");
        assert_ne!(param["required"], true, "{param}");
    }
    let user_id = params.iter().find(|p| p["name"] == "user_id").unwrap();
    assert_eq!(user_id["schema"]["minimum"], 1);
}

#[tokio::test]
async fn a_key_does_what_its_scopes_allow_and_nothing_else() {
    use member_portal::service::accounts::Scope;
    let full = api().await;
    let ann = full.member("ann@example.com").await;
    let (s, _) = full
        .call(
            "POST",
            &format!("/members/{ann}/points/earn"),
            Some(json!({"base_points": 100, "source_type": "order", "source_id": "O1"})),
        )
        .await;
    assert_eq!(s, 201);
    let keyed = |scopes: &'static [Scope]| {
        let ctx = full.app.s.ctx.clone();
        async move {
            accounts::create_api_key_scoped(&ctx, "scoped", scopes, None)
                .await
                .unwrap()
        }
    };
    let as_key = |key: String| Api {
        app: full.app.another_browser(),
        key,
    };
    let reader = as_key(keyed(&[Scope::Read]).await);
    let earner = as_key(keyed(&[Scope::Earn]).await);
    let before = crate::harness::fingerprint(&full.app.s.ctx.pool).await;
    // a reader reads, and may not earn (the one-statement earn), use or redeem
    assert_eq!(
        reader.call("GET", &format!("/members/{ann}"), None).await.0,
        200
    );
    for (path, body) in [
        (
            format!("/members/{ann}/points/earn"),
            json!({"base_points": 1, "source_type": "order", "source_id": "R1"}),
        ),
        (
            format!("/members/{ann}/points/use"),
            json!({"points": 1, "usage_type": "checkout", "reference_id": "R2"}),
        ),
        (
            "/coupons/validate".to_owned(),
            json!({"code": "NOPE-NOPE-NOPE"}),
        ),
    ] {
        let (s, e) = reader.call("POST", &path, Some(body)).await;
        assert_eq!(
            (s.as_u16(), e["code"].as_str()),
            (403, Some("FORBIDDEN")),
            "{path}: {e}"
        );
        assert!(e["message"].as_str().unwrap().contains("scope"), "{e}");
    }
    // an earner earns and may not read or use
    let (s, _) = earner
        .call(
            "POST",
            &format!("/members/{ann}/points/earn"),
            Some(json!({"base_points": 1, "source_type": "order", "source_id": "E1"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        earner.call("GET", &format!("/members/{ann}"), None).await.0,
        403
    );
    let (s, _) = earner
        .call(
            "POST",
            &format!("/members/{ann}/points/use"),
            Some(json!({"points": 1, "usage_type": "checkout", "reference_id": "E2"})),
        )
        .await;
    assert_eq!(s, 403);
    // a bad key is still 401 first, whatever the route
    let nobody = as_key("mp_nobody".into());
    assert_eq!(
        nobody.call("GET", &format!("/members/{ann}"), None).await.0,
        401
    );
    let after = crate::harness::fingerprint(&full.app.s.ctx.pool).await;
    assert_ne!(before, after, "the earner's earn went through");
    assert_eq!(full.app.s.points.summary(ann).await.unwrap().available, 101);
}
