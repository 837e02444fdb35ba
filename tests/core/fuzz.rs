//! Hostile JSON against every writing API route, and hostile forms against every page
//! route that takes a POST (issue 5 #7): valid bodies mutated with wrong types, signs,
//! zero, 2^63, long decimals, huge and odd unicode strings, missing, extra, repeated and
//! misspelt fields, broken JSON or form encoding, deep nesting, bad UTF-8, bad path ids and
//! content types. Every answer must be below 500 with a code and a message (an error page
//! for forms), and every refused request must leave the database exactly as it was.
//!
//! `FUZZ_CASES` sets the number of requests (2000 by default; the long mode is
//! `FUZZ_CASES=100000`), `FUZZ_SEED` replays a run (the seed is printed on failure).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use member_portal::service::accounts;

use crate::harness::fingerprint;
use crate::security::FORM;
use crate::web_harness::*;

/// Values that do not belong where a field expects them, or only barely do.
fn hostile(rng: &mut StdRng) -> Value {
    let long = |n: usize, s: &str| s.repeat(n);
    let pick = rng.random_range(0..40);
    match pick {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(1),
        5 => json!(i64::MAX),
        6 => json!(i64::MIN),
        7 => json!(9_223_372_036_854_775_808u64), // 2^63
        8 => json!(u64::MAX),
        9 => json!(1e308),
        10 => json!(1.5),
        11 => json!(-0.0),
        12 => json!(0.001),
        13 => json!("10"),
        14 => json!(""),
        15 => json!("   "),
        16 => json!("1.123456789"),
        17 => json!("99999999999999999999.99"),
        18 => json!("-5.00"),
        19 => json!("NaN"),
        20 => json!("Infinity"),
        21 => json!("1e5"),
        22 => json!("积分订单"),
        23 => json!(long(60, "😀")),
        24 => json!("\u{202e}gnp.exe"),
        25 => json!("a\u{0000}b"),
        26 => json!("line\nbreak"),
        27 => json!("<script>alert(1)</script>"),
        28 => json!("' or 1=1 --"),
        29 => json!(long(300, "x")),
        30 => json!(long(5000, "é")),
        31 => json!([]),
        32 => json!([1, 2]),
        33 => json!({}),
        34 => json!({"nested": {"points": 1}}),
        35 => json!(rng.random::<i64>()),
        36 => json!(rng.random::<f64>() * 1e6),
        37 => json!(format!("{}.{}", rng.random::<u32>(), rng.random::<u32>())),
        38 => json!(format!("{:.2}", rng.random::<f64>() * 1000.0)),
        _ => json!(long(rng.random_range(1..80), "\u{fffd}")),
    }
}

/// The body after 1–3 mutations of its fields.
fn mutate(rng: &mut StdRng, valid: &Map<String, Value>) -> Value {
    let mut body = valid.clone();
    for _ in 0..rng.random_range(1..=3) {
        let fields: Vec<String> = body.keys().cloned().collect();
        match rng.random_range(0..10) {
            0..=5 if !fields.is_empty() => {
                let f = &fields[rng.random_range(0..fields.len())];
                body.insert(f.clone(), hostile(rng));
            }
            6 if !fields.is_empty() => {
                let f = &fields[rng.random_range(0..fields.len())];
                body.remove(f);
            }
            7 if !fields.is_empty() => {
                // a misspelt field
                let f = fields[rng.random_range(0..fields.len())].clone();
                let v = body.remove(&f).unwrap_or(Value::Null);
                body.insert(format!("{f}s"), v);
            }
            _ => {
                let extra = [
                    "amout",
                    "user_id",
                    "id",
                    "points_change",
                    "balance_after",
                    "__proto__",
                ];
                body.insert(extra[rng.random_range(0..extra.len())].into(), hostile(rng));
            }
        }
    }
    if rng.random_range(0..8) == 0 {
        // a whole body of the wrong kind
        return hostile(rng);
    }
    Value::Object(body)
}

/// The body as bytes, sometimes broken on the way.
fn to_bytes(rng: &mut StdRng, body: &Value) -> Vec<u8> {
    let text = body.to_string().into_bytes();
    match rng.random_range(0..24) {
        0 => text[..rng.random_range(0..=text.len())].to_vec(),
        1 => {
            let mut t = text;
            let at = rng.random_range(0..=t.len());
            t.insert(at, rng.random());
            t
        }
        2 => [text.as_slice(), b" trailing"].concat(),
        3 => [b"[".repeat(5000), b"]".repeat(5000)].concat(),
        4 => vec![0xff, 0xfe, b'{', 0xc3, b'}'],
        5 => Vec::new(),
        6 => {
            // duplicate keys, as text
            let t = String::from_utf8_lossy(&text).into_owned();
            t.replacen('{', "{\"points\":1,\"points\":2,", 1)
                .into_bytes()
        }
        7 => vec![b' '; 70 * 1024], // over the 64 KiB limit
        _ => text,
    }
}

struct Target {
    path: &'static str,
    valid: Value,
}

/// `FUZZ_CASES` (2000 by default) and `FUZZ_SEED` (random by default).
fn fuzz_settings() -> (usize, u64) {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    (cases, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_json_on_every_writing_route_is_refused_cleanly_and_changes_nothing() {
    let (cases, seed) = fuzz_settings();
    let mut rng = StdRng::seed_from_u64(seed);
    let app = spawn_app().await;
    let key = accounts::create_api_key(&app.s.ctx, "fuzz", None)
        .await
        .unwrap();
    let member = app.member("fuzz@example.com").await;
    let fuzzer = client_without_reuse();
    let post = |path: String, body: Vec<u8>, content_type: &'static str| {
        fuzzer
            .post(app.url(&path))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (path, body) in [
        (
            "earn",
            json!({"base_points": 500, "source_type": "order", "source_id": "SEED-E", "amount": "100.00"}),
        ),
        (
            "use",
            json!({"points": 50, "usage_type": "checkout", "reference_id": "SEED-U"}),
        ),
    ] {
        let r = post(
            format!("/api/v1/members/{member}/points/{path}"),
            body.to_string().into_bytes(),
            "application/json",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let targets = [
        Target {
            path: "/api/v1/members",
            valid: json!({"email": "new@example.com", "display_name": "New", "password": "long enough password"}),
        },
        Target {
            path: "/api/v1/members/{id}/points/earn",
            valid: json!({"base_points": 10, "source_type": "order", "source_id": "F-1", "amount": "12.50"}),
        },
        Target {
            path: "/api/v1/members/{id}/points/use",
            valid: json!({"points": 5, "usage_type": "checkout", "reference_id": "F-U"}),
        },
        Target {
            path: "/api/v1/members/{id}/points/reverse",
            valid: json!({"source_type": "order", "source_id": "SEED-E", "refund_id": "R-1", "amount": "10.00"}),
        },
        Target {
            path: "/api/v1/members/{id}/points/refund",
            valid: json!({"usage_type": "checkout", "reference_id": "SEED-U"}),
        },
    ];
    let odd_ids = [
        "0",
        "-1",
        "abc",
        "1.5",
        "99999999999999999999",
        "%00",
        "9223372036854775807",
        " 1",
    ];
    let mut baseline = fingerprint(&app.s.ctx.pool).await;
    let mut refused = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for case in 0..cases {
        let t = &targets[rng.random_range(0..targets.len())];
        let id = if rng.random_range(0..10) == 0 {
            odd_ids[rng.random_range(0..odd_ids.len())].to_owned()
        } else {
            member.to_string()
        };
        let path = t.path.replace("{id}", &id);
        let Value::Object(valid) = &t.valid else {
            unreachable!()
        };
        let body = mutate(&mut rng, valid);
        let bytes = to_bytes(&mut rng, &body);
        let content_type = if rng.random_range(0..30) == 0 {
            "text/plain"
        } else {
            "application/json"
        };
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        let context = format!("case {case} (FUZZ_SEED={seed}): POST {path} {shown}");
        let oversized = bytes.len() > 64 * 1024;
        let (status, text) = match post(path.clone(), bytes, content_type).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap()),
            // The server may answer 413 and close before an oversized body is all sent;
            // the client then sees the broken pipe rather than the answer.
            Err(e) if oversized => (
                413,
                json!({"code": "VALIDATION_ERROR", "message": e.to_string()}).to_string(),
            ),
            Err(e) => panic!("{e} for {context}"),
        };
        *statuses.entry(status).or_insert(0) += 1;
        assert!(status < 500, "{status} {text} for {context}");
        if status >= 400 {
            let e: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("not JSON: {text} for {context}"));
            assert!(
                e["code"].as_str().is_some_and(|c| !c.is_empty())
                    && e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "no code and message: {text} for {context}"
            );
            refused += 1;
            let now = fingerprint(&app.s.ctx.pool).await;
            assert_eq!(now, baseline, "a refused request changed data: {context}");
        } else {
            baseline = fingerprint(&app.s.ctx.pool).await;
        }
    }
    eprintln!("fuzz: {cases} requests (seed {seed}), {refused} refused; statuses {statuses:?}");
    assert!(refused > cases / 2, "most mutations are refused");
    let v = member_portal::service::ledger::verify_ledger(&app.s.ctx.pool, None)
        .await
        .unwrap();
    assert!(v.is_empty(), "{v:?}");
}

/// A hostile value as a form field carries it: text.
fn hostile_text(rng: &mut StdRng) -> String {
    match hostile(rng) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A form body: every field of [`FORM`] with 1–3 mutations, sometimes broken on the way.
fn hostile_form(rng: &mut StdRng, token: &str) -> Vec<u8> {
    let mut fields: Vec<(String, String)> = FORM
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for _ in 0..rng.random_range(1..=3) {
        let at = rng.random_range(0..fields.len());
        match rng.random_range(0..8) {
            0..=4 => fields[at].1 = hostile_text(rng),
            5 => {
                fields.remove(at);
            }
            6 => {
                // the same field twice
                let again = (fields[at].0.clone(), hostile_text(rng));
                fields.push(again);
            }
            _ => fields.push(("user_id".into(), hostile_text(rng))),
        }
    }
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.extend_pairs(&fields);
    body.append_pair("csrf_token", token);
    let text = body.finish().into_bytes();
    match rng.random_range(0..16) {
        0 => [b"%zz=%ff%fe&".as_slice(), text.as_slice()].concat(),
        1 => [text.as_slice(), &[b'&', 0xff, 0xfe, b'=', 0xc3]].concat(),
        2 => [text.as_slice(), b"&&&=&==".as_slice()].concat(),
        3 => [text.as_slice(), b"&".as_slice(), &vec![b'x'; 70 * 1024]].concat(),
        _ => text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_forms_on_every_page_route_are_refused_cleanly_and_change_nothing() {
    use crate::security::{Visitor, World};
    use member_portal::web::{Access, page_routes};

    let (cases, seed) = fuzz_settings();
    let mut rng = StdRng::seed_from_u64(seed);
    let w = World::new().await;
    let pool = w.app.s.ctx.pool.clone();
    let ann = Visitor::fresh_connections(&w.app);
    ann.login("ann@example.com").await;
    let staff = Visitor::fresh_connections(&w.app);
    staff.login("boss@example.com").await;
    let (ann_token, staff_token) = (ann.token().await, staff.token().await);
    let routes: Vec<_> = page_routes().into_iter().filter(|r| r.post).collect();
    let odd_ids = ["0", "-1", "abc", "1.5", "99999999999999999999", "%00", " 1"];
    let mut baseline = fingerprint(&pool).await;
    let (mut refused, mut statuses) = (0, std::collections::BTreeMap::new());
    for case in 0..cases {
        let route = &routes[rng.random_range(0..routes.len())];
        let path = if route.path.contains('{') && rng.random_range(0..8) == 0 {
            let (head, rest) = route.path.split_once('{').unwrap_or_default();
            let tail = rest.split_once('}').unwrap_or_default().1;
            format!(
                "{head}{}{tail}",
                odd_ids[rng.random_range(0..odd_ids.len())]
            )
        } else {
            w.fill(route.path)
        };
        // the visitor the route is for; someone new for the public ones (a sign-up or a
        // login logs them in)
        let newcomer;
        let (visitor, token) = match route.access {
            Access::Staff => (&staff, staff_token.clone()),
            Access::User => (&ann, ann_token.clone()),
            Access::Public => {
                newcomer = Visitor::fresh_connections(&w.app);
                let t = newcomer.token().await;
                (&newcomer, t)
            }
        };
        let body = hostile_form(&mut rng, &token);
        let content_type = match rng.random_range(0..30) {
            0 => "multipart/form-data; boundary=x",
            1 => "application/json",
            _ => "application/x-www-form-urlencoded",
        };
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let context = format!("case {case} (FUZZ_SEED={seed}): POST {path} {shown}");
        let oversized = body.len() > 64 * 1024;
        let sent = visitor
            .client
            .post(w.app.url(&path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        let status = match sent {
            Ok(r) => {
                assert_security_headers(&r);
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                assert!(status < 500, "{status} {text} for {context}");
                if [400, 403, 404, 422].contains(&status) {
                    assert!(
                        text.contains("<main") && text.len() > 200,
                        "a refusal says why: {text} for {context}"
                    );
                }
                status
            }
            // the server may answer 413 and close before an oversized body is all sent
            Err(_) if oversized => 413,
            Err(e) => panic!("{e} for {context}"),
        };
        *statuses.entry(status).or_insert(0) += 1;
        if status >= 400 {
            refused += 1;
            assert_eq!(
                fingerprint(&pool).await,
                baseline,
                "a refused form changed data: {context}"
            );
        } else {
            baseline = fingerprint(&pool).await;
        }
    }
    eprintln!(
        "form fuzz: {cases} requests (seed {seed}), {refused} refused; statuses {statuses:?}"
    );
    assert!(
        refused > cases / 3,
        "most mutations are refused: {statuses:?}"
    );
    // NUL, which PostgreSQL cannot store, in a form or a query: an error page
    let anon = Visitor::new(&w.app);
    let t = anon.token().await;
    let r = anon
        .post(
            "/login",
            Some(&t),
            &[("email", "a\0b@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(staff.get("/admin/members?q=a%00").await.status(), 400);
    // a query string that does not fit gets a page too
    let r = staff.get("/admin/members?q=a&q=b").await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("<main") && page.contains("<html"), "{page}");
    // staff and member were refused or served, never logged out by a hostile form
    assert_eq!(staff.get("/admin").await.status(), 200);
    assert_eq!(ann.get("/profile").await.status(), 200);
    let v = member_portal::service::ledger::verify_ledger(&pool, None)
        .await
        .unwrap();
    assert!(v.is_empty(), "{v:?}");
}
