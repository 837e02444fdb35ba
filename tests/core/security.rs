//! The security set, enumerated from the router: every page route comes from
//! `web::page_routes()` (the table the router is built from) and every API operation from
//! the OpenAPI description the API router is built with, so a new route is covered the
//! day it is added. Every response any of these tests receives is checked for the
//! security headers.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use member_portal::service::accounts;
use member_portal::web::api::openapi;
use member_portal::web::{Access, page_routes};

use crate::harness::{earn_req, fingerprint};
use crate::web_harness::*;

/// A browser: its own cookie jar, and every response checked for the security headers.
pub struct Visitor<'a> {
    app: &'a TestApp,
    pub client: reqwest::Client,
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: client(),
        }
    }

    /// One that opens a connection per request (see `client_without_reuse`).
    pub fn fresh_connections(app: &'a TestApp) -> Self {
        Self {
            app,
            client: client_without_reuse(),
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> Response {
        let r = request.send().await.unwrap();
        assert_security_headers(&r);
        assert!(
            r.status().as_u16() < 500,
            "{} {}",
            r.status(),
            r.url().path()
        );
        r
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.client.get(self.app.url(path))).await
    }

    async fn htmx_get(&self, path: &str) -> Response {
        self.send(
            self.client
                .get(self.app.url(path))
                .header("hx-request", "true"),
        )
        .await
    }

    /// This session's CSRF token, from the login form or, once logged in, the logout form.
    pub async fn token(&self) -> String {
        let r = self.get("/login").await;
        let html = if r.status() == 303 {
            self.get("/notifications").await.text().await.unwrap()
        } else {
            r.text().await.unwrap()
        };
        token_in(&html).expect("a csrf token in a form")
    }

    /// A POST with a form any route would accept, and `token` as its CSRF field.
    pub async fn post(&self, path: &str, token: Option<&str>, form: &[(&str, &str)]) -> Response {
        let mut fields = form.to_vec();
        if let Some(t) = token {
            fields.push(("csrf_token", t));
        }
        self.send(self.client.post(self.app.url(path)).form(&fields))
            .await
    }

    pub async fn login(&self, email: &str) {
        let token = self.token().await;
        let r = self
            .post(
                "/login",
                Some(&token),
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(r.status(), 303, "login {email}");
    }
}

/// Fields for every form in the portal, valid for each: were a refused request let
/// through, it would change something.
pub const FORM: &[(&str, &str)] = &[
    ("level_name", "Sneaky"),
    ("level_order", "9"),
    ("min_points", "99999"),
    ("discount_rate", "0.5"),
    ("point_multiplier", "3"),
    ("benefits", "everything"),
    ("is_active", "on"),
    ("active", "false"),
    ("points", "1000"),
    ("reason", "self-service"),
    ("note", "promoted myself"),
    ("name", "my own key"),
    ("email", "new@example.com"),
    ("password", PASSWORD),
    ("confirm", PASSWORD),
    ("display_name", "New"),
    ("lang", "en"),
];

/// A portal with staff, two members (Ann, who visits, and Bob, whose things she must not
/// reach), Bob's history and notification, and an API key.
pub struct World {
    pub app: TestApp,
    ann: i64,
    bob: i64,
    bob_note: i64,
    level: i32,
    key_id: i64,
    key: String,
    /// a second staff account, which a request let through could disable
    deputy: i64,
    /// a reward not offered (members cannot see it)
    hidden_reward: i32,
    /// Bob's coupon
    bob_coupon: i64,
    /// a reward members see, and Ann's coupon of it
    offered_reward: i32,
    ann_coupon: i64,
    /// a campaign scheduled for next year
    campaign: i32,
    /// a bulk grant recorded (not run)
    grant: i64,
    /// a member import, finished
    import: i64,
}

impl World {
    pub async fn new() -> Self {
        let app = spawn_app().await;
        accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
            .await
            .unwrap();
        let deputy =
            accounts::create_staff(&app.s.ctx, "deputy@example.com", PASSWORD, Some("Deputy"))
                .await
                .unwrap();
        let ann = app.member("ann@example.com").await;
        let bob = app.member("bob@example.com").await;
        app.s
            .points
            .earn_points(earn_req(bob, 500, "bob-secret-order", None))
            .await
            .unwrap();
        let bob_note: i64 = sqlx::query_scalar(
            "insert into notifications (user_id, kind, payload, created_at)
             values ($1, 'level_changed', '{}', now()) returning id",
        )
        .bind(bob)
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
        sqlx::query("update member_profiles set external_id = 'bob-external' where user_id = $1")
            .bind(bob)
            .execute(&app.s.ctx.pool)
            .await
            .unwrap();
        let level = app.s.levels.list().await.unwrap()[1].id;
        let key = accounts::create_api_key(&app.s.ctx, "orders", None)
            .await
            .unwrap();
        let key_id = sqlx::query_scalar("select max(id) from api_keys")
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap();
        let offered = app
            .s
            .rewards
            .create(None, crate::rewards::reward_input("Offered", "100", "5"))
            .await
            .unwrap();
        let mut hidden = crate::rewards::reward_input("Hidden", "100", "");
        hidden.is_active = false;
        let hidden_reward = app.s.rewards.create(None, hidden).await.unwrap().id;
        let redeem = |user_id: i64, key: &'static str| {
            app.s
                .rewards
                .redeem(member_portal::service::rewards::RedeemRequest {
                    user_id,
                    reward_id: offered.id,
                    redemption_id: member_portal::domain::Reference::parse("r", key).unwrap(),
                })
        };
        let bob_coupon = redeem(bob, "bob-r").await.unwrap().coupon.id;
        app.s
            .points
            .earn_points(earn_req(ann, 100, "ann-order", None))
            .await
            .unwrap();
        let ann_coupon = redeem(ann, "ann-r").await.unwrap().coupon.id;
        let next_year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        let campaign = app
            .s
            .campaigns
            .create(
                None,
                member_portal::domain::campaigns::CampaignInput::parse(
                    &member_portal::domain::campaigns::CampaignFields {
                        name: "Later",
                        kind: "bonus",
                        bonus_points: "5",
                        starts_at: Some(next_year),
                        ends_at: Some(next_year + time::Duration::days(7)),
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let grant = app
            .s
            .grants
            .start(
                &member_portal::db::admin::MemberFilter {
                    q: Some("ann@".into()),
                    ..Default::default()
                },
                5,
                "world",
                "world-grant",
                None,
            )
            .await
            .unwrap()
            .id;
        let import: i64 = sqlx::query_scalar(
            "insert into member_imports (file_name, mode, created_at, status, finished_at)
             values ('world.csv', 'all_or_nothing', now(), 'done', now()) returning id",
        )
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
        Self {
            app,
            ann,
            bob,
            bob_note,
            level,
            key_id,
            key,
            deputy,
            hidden_reward,
            bob_coupon,
            offered_reward: offered.id,
            ann_coupon,
            campaign,
            grant,
            import,
        }
    }

    /// The route with its id filled in with something of the visitor's own where it has
    /// one (Ann's coupon, a reward she sees), else as [`Self::fill`].
    pub fn fill_own(&self, path: &str) -> String {
        let id = if path.starts_with("/rewards/{id}") {
            self.offered_reward.to_string()
        } else if path.starts_with("/coupons/{id}") {
            self.ann_coupon.to_string()
        } else {
            return self.fill(path);
        };
        let (head, rest) = path.split_once('{').unwrap();
        let (_, tail) = rest.split_once('}').unwrap();
        format!("{head}{id}{tail}")
    }

    /// The route with each id filled in with something that is not the visitor's (Bob's,
    /// or staff-only). A route with an id this does not know fails the test: say here
    /// what its id names.
    pub fn fill(&self, path: &str) -> String {
        if !path.contains('{') {
            return path.to_owned();
        }
        let id = if path.starts_with("/notifications/{id}") {
            self.bob_note.to_string()
        } else if path.starts_with("/admin/levels/{id}") {
            self.level.to_string()
        } else if path.starts_with("/admin/members/{id}") {
            self.bob.to_string()
        } else if path.starts_with("/admin/staff/{id}") {
            self.deputy.to_string()
        } else if path.starts_with("/admin/api-keys/{id}") {
            self.key_id.to_string()
        } else if path.starts_with("/rewards/{id}") || path.starts_with("/admin/rewards/{id}") {
            self.hidden_reward.to_string()
        } else if path.starts_with("/coupons/{id}") || path.starts_with("/admin/coupons/{id}") {
            self.bob_coupon.to_string()
        } else if path.starts_with("/admin/campaigns/{id}") {
            self.campaign.to_string()
        } else if path.starts_with("/admin/grants/{id}") {
            self.grant.to_string()
        } else if path.starts_with("/admin/imports/{id}") {
            self.import.to_string()
        } else if path.starts_with("/api/v1/members/by-external-id/{external_id}") {
            "bob-external".to_owned()
        } else if path.starts_with("/api/v1/members/{user_id}") {
            self.bob.to_string()
        } else {
            panic!(
                "{path}: the security tests do not know what its id names; add it to World::fill"
            )
        };
        let (head, rest) = path.split_once('{').unwrap();
        let (_, tail) = rest.split_once('}').unwrap();
        format!("{head}{id}{tail}")
    }

    async fn fingerprint(&self) -> Vec<i64> {
        fingerprint(&self.app.s.ctx.pool).await
    }
}

#[tokio::test]
async fn every_page_route_refuses_whoever_its_access_excludes() {
    let w = World::new().await;
    let anon = Visitor::new(&w.app);
    let ann = Visitor::new(&w.app);
    ann.login("ann@example.com").await;
    let staff = Visitor::new(&w.app);
    staff.login("boss@example.com").await;
    let (anon_token, ann_token, staff_token) =
        (anon.token().await, ann.token().await, staff.token().await);
    let before = w.fingerprint().await;
    let routes = page_routes();
    assert!(routes.len() >= 20, "the table lists every page route");
    for route in &routes {
        let path = w.fill_own(route.path);
        assert!(route.get || route.post, "{path} answers nothing");
        if route.path.starts_with("/admin") {
            assert_eq!(route.access, Access::Staff, "{path} is a staff page");
        }
        if route.access != Access::Public {
            if route.get {
                let r = anon.get(&path).await;
                assert_eq!(r.status(), 303, "anonymous GET {path}");
                assert!(location(&r).starts_with("/login?next="), "{path}");
                let r = anon.htmx_get(&path).await;
                assert_eq!(r.status(), 401, "anonymous htmx GET {path}");
                assert!(r.headers().contains_key("hx-redirect"), "{path}");
            }
            if route.post {
                let r = anon.post(&path, Some(&anon_token), FORM).await;
                assert_eq!(r.status(), 303, "anonymous POST {path}");
                assert!(location(&r).starts_with("/login"), "{path}");
            }
        }
        if route.access == Access::Staff {
            if route.get {
                assert_eq!(ann.get(&path).await.status(), 403, "member GET {path}");
            }
            if route.post {
                let r = ann.post(&path, Some(&ann_token), FORM).await;
                assert_eq!(r.status(), 403, "member POST {path}");
            }
        }
        // the table is the router: a method it does not list is not answered, one it
        // lists is (by someone the route is for)
        let (owner, owner_token) = match route.access {
            Access::Public => (&anon, &anon_token),
            Access::User => (&ann, &ann_token),
            Access::Staff => (&staff, &staff_token),
        };
        let r = owner.get(&path).await;
        if route.get {
            assert!(
                ![404, 405].contains(&r.status().as_u16()),
                "GET {path}: {}",
                r.status()
            );
        } else {
            assert_eq!(r.status(), 405, "GET {path}");
        }
        if !route.post {
            let r = owner.post(&path, Some(owner_token), FORM).await;
            assert_eq!(r.status(), 405, "POST {path}");
        }
    }
    assert_eq!(
        w.fingerprint().await,
        before,
        "refused requests and GETs changed nothing"
    );
    // the member was refused, not logged out
    assert_eq!(ann.get("/profile").await.status(), 200);
}

#[tokio::test]
async fn every_state_changing_page_route_needs_this_sessions_csrf_token() {
    let w = World::new().await;
    let staff = Visitor::new(&w.app);
    staff.login("boss@example.com").await;
    let other = Visitor::new(&w.app);
    let others_token = other.token().await;
    let own_token = staff.token().await;
    let before = w.fingerprint().await;
    let mut posts = 0;
    for route in page_routes().iter().filter(|r| r.post) {
        posts += 1;
        let path = w.fill(route.path);
        let forged = "f".repeat(own_token.len());
        for token in [None, Some(""), Some(forged.as_str()), Some(&others_token)] {
            let r = staff.post(&path, token, FORM).await;
            assert_eq!(r.status(), 403, "POST {path} with token {token:?}");
        }
        // the right token in the query string, or a wrong one in the header, is refused
        let in_query = format!("{path}?csrf_token={own_token}");
        assert_eq!(
            staff.post(&in_query, None, FORM).await.status(),
            403,
            "{in_query}"
        );
        let r = staff
            .send(
                staff
                    .client
                    .post(w.app.url(&path))
                    .header("x-csrf-token", &others_token)
                    .form(&[("csrf_token", own_token.as_str())]),
            )
            .await;
        assert_eq!(r.status(), 403, "{path}: a wrong header outranks the form");
    }
    assert!(posts >= 10, "every POST route was tried");
    assert_eq!(w.fingerprint().await, before, "nothing changed");
    assert_eq!(staff.get("/admin").await.status(), 200, "still logged in");
    // and with the token the same request works (htmx sends it as a header)
    let r = staff
        .send(
            staff
                .client
                .post(w.app.url("/admin/api-keys"))
                .header("x-csrf-token", &own_token)
                .form(&[("name", "with the token")]),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_ne!(w.fingerprint().await, before);
}

/// A body each writing operation would accept, so that a refusal is about credentials.
fn body_for(path: &str) -> Value {
    match path.rsplit('/').next().unwrap_or_default() {
        "members" => json!({"email": "new@example.com", "display_name": "New"}),
        "earn" => json!({"base_points": 100, "source_type": "order", "source_id": "sec-1"}),
        "use" => json!({"points": 10, "usage_type": "order", "reference_id": "bob-u"}),
        "reverse" => json!({"source_type": "order", "source_id": "bob-secret-order"}),
        "refund" => json!({"usage_type": "order", "reference_id": "bob-u"}),
        "redemptions" => json!({"reward_id": 1, "redemption_id": "sec-r"}),
        "validate" | "cancel" => json!({"code": "0000-0000-0000-0000"}),
        "consume" | "release" => json!({"code": "0000-0000-0000-0000", "order_id": "sec-o"}),
        _ => panic!("{path}: no body for this operation; add one to body_for"),
    }
}

#[tokio::test]
async fn every_api_operation_refuses_a_request_without_its_credentials() {
    let w = World::new().await;
    let revoked = accounts::create_api_key(&w.app.s.ctx, "old", None)
        .await
        .unwrap();
    sqlx::query("update api_keys set revoked_at = now() where name = 'old'")
        .execute(&w.app.s.ctx.pool)
        .await
        .unwrap();
    w.app
        .s
        .points
        .use_points(crate::harness::use_req(w.bob, 10, "bob-u"))
        .await
        .unwrap();
    let anon = Visitor::new(&w.app);
    let ann = Visitor::new(&w.app);
    ann.login("ann@example.com").await;
    let doc = serde_json::to_value(openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let before = w.fingerprint().await;
    let mut operations = 0;
    for (template, item) in paths {
        let path = w.fill(template);
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            operations += 1;
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {template} declares no security"))
                .iter()
                .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                .collect();
            assert!(!schemes.is_empty(), "{method} {template}");
            let by_session = schemes == ["session"];
            let request = |v: &Visitor, auth: Option<&str>| {
                let mut rb = v.client.request(method.clone(), w.app.url(&path));
                if method == Method::POST {
                    rb = rb.json(&body_for(&path));
                }
                if let Some(a) = auth {
                    rb = rb.header("authorization", a);
                }
                rb
            };
            let bearer = format!("Bearer {}", w.key);
            let revoked = format!("Bearer {revoked}");
            let wrong_key = format!("Bearer {}x", w.key);
            let basic = format!("Basic {}", w.key);
            let mut refused = vec![
                (&anon, None),
                (&anon, Some("Bearer ")),
                (&anon, Some(wrong_key.as_str())),
                (&anon, Some(revoked.as_str())),
                (&anon, Some(basic.as_str())),
            ];
            if by_session {
                // a key is not a login
                refused.push((&anon, Some(bearer.as_str())));
            } else {
                // a member's browser session is not a key
                refused.push((&ann, None));
            }
            for (visitor, auth) in refused {
                let r = anon.send(request(visitor, auth)).await;
                assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["code"], "UNAUTHORIZED", "{method} {path}");
                assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            // and the right credential gets in (reads only: nothing may change)
            if method == Method::GET {
                let r = if by_session {
                    ann.send(request(&ann, None)).await
                } else {
                    anon.send(request(&anon, Some(&bearer))).await
                };
                assert_eq!(r.status(), 200, "{method} {path} with its credential");
            }
        }
    }
    assert!(operations >= 10, "every operation was tried: {operations}");
    assert_eq!(w.fingerprint().await, before, "nothing changed");
}

#[tokio::test]
async fn a_member_reaches_no_one_elses_data_by_id() {
    let w = World::new().await;
    let ann = Visitor::new(&w.app);
    ann.login("ann@example.com").await;
    let token = ann.token().await;
    let before = w.fingerprint().await;
    let bob_code = w
        .app
        .s
        .members
        .get_member_profile(w.bob)
        .await
        .unwrap()
        .member_code;
    let secrets = ["bob@example.com", bob_code.as_str(), "bob-secret-order"];
    let mut with_id = 0;
    for route in page_routes().iter().filter(|r| r.path.contains('{')) {
        with_id += 1;
        let bobs = w.fill(route.path);
        // the same route with an id that names nothing
        let nothing = {
            let (head, rest) = route.path.split_once('{').unwrap();
            format!("{head}999999999{}", rest.split_once('}').unwrap().1)
        };
        let answers = |r: Response| async move {
            let status = r.status().as_u16();
            let location = location(&r);
            let body = r.text().await.unwrap();
            for s in secrets {
                assert!(!body.contains(s), "{} shows {s}", route.path);
            }
            (status, location)
        };
        if route.get {
            let theirs = answers(ann.get(&bobs).await).await;
            let none = answers(ann.get(&nothing).await).await;
            assert!(
                [403, 404].contains(&theirs.0) && theirs == none,
                "GET {bobs}: {theirs:?} vs {none:?}"
            );
        }
        if route.post {
            let theirs = answers(ann.post(&bobs, Some(&token), FORM).await).await;
            let none = answers(ann.post(&nothing, Some(&token), FORM).await).await;
            // refused, or answered exactly as for an id that names nothing
            assert_eq!(theirs, none, "POST {bobs}");
            assert_ne!(theirs.0, 200, "POST {bobs}");
        }
    }
    assert!(with_id >= 5, "{with_id}");
    assert_eq!(w.fingerprint().await, before, "nothing of Bob's changed");
    // his note and his coupon's, both still unread
    assert_eq!(w.app.s.notifications.unread_count(w.bob).await.unwrap(), 2);
    // her own pages, whatever she adds to the address, show only her
    for route in page_routes()
        .iter()
        .filter(|r| r.get && r.access == Access::User)
    {
        let path = format!("{}?user_id={}&id={}", route.path, w.bob, w.bob);
        let body = ann.get(&path).await.text().await.unwrap();
        for s in secrets {
            assert!(!body.contains(s), "{path} shows {s}");
        }
    }
    // the API's "me" is the session's member, whoever's id the client mentions
    let me: Value = ann
        .get(&format!("/api/v1/me/profile?user_id={}", w.bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], w.ann);
}

async fn marked_level(w: &World) -> String {
    let id: i32 =
        sqlx::query_scalar("select id from member_levels where level_name like '%xlevel'")
            .fetch_one(&w.app.s.ctx.pool)
            .await
            .unwrap();
    id.to_string()
}

/// Markup that would run were it rendered raw, in an element or inside a double-quoted
/// attribute, tagged with the field it was put in (at most 50 characters: a level name's
/// limit).
fn payload(field: &str) -> String {
    let p = format!("\"onfocus=alert(1)<script>alert(1)</script>x{field}");
    assert!(p.chars().count() <= 50, "{p}");
    p
}

fn assert_escaped(where_: &str, html: &str) {
    for raw in ["<script>alert", "\"onfocus=alert"] {
        assert!(!html.contains(raw), "{where_} renders {raw} raw");
    }
}

#[tokio::test]
async fn markup_in_every_text_field_is_rendered_escaped() {
    let w = World::new().await;
    let staff = Visitor::new(&w.app);
    staff.login("boss@example.com").await;
    let token = staff.token().await;
    let api = |path: &str, body: Value| {
        staff
            .client
            .post(w.app.url(&format!("/api/v1{path}")))
            .bearer_auth(&w.key)
            .json(&body)
    };
    // a member who signs up with markup as her name
    let mallory = Visitor::new(&w.app);
    let t = mallory.token().await;
    let name = payload("name");
    let r = mallory
        .post(
            "/register",
            Some(&t),
            &[
                ("email", "mallory@example.com"),
                ("display_name", &name),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "signed up");
    let mallory_id: i64 =
        sqlx::query_scalar("select id from users where email = 'mallory@example.com'")
            .fetch_one(&w.app.s.ctx.pool)
            .await
            .unwrap();
    // every other text field, through the forms and the API
    let stored: Vec<(&str, Response)> = vec![
        (
            "level_name",
            staff
                .post(
                    "/admin/levels",
                    Some(&token),
                    &[
                        ("level_name", &payload("level")),
                        ("level_order", "99"),
                        ("min_points", "999999"),
                        ("discount_rate", "0.9"),
                        ("point_multiplier", "1.5"),
                        ("benefits", &payload("benefit")),
                        ("is_active", "on"),
                    ],
                )
                .await,
        ),
        (
            "api_member",
            staff
                .send(api(
                    "/members",
                    json!({"email": "eve@example.com", "display_name": payload("apiname")}),
                ))
                .await,
        ),
        (
            "earn",
            staff
                .send(api(
                    &format!("/members/{mallory_id}/points/earn"),
                    json!({"base_points": 50, "source_type": "order", "source_id": payload("source"), "amount": "100.00"}),
                ))
                .await,
        ),
        (
            "use",
            staff
                .send(api(
                    &format!("/members/{mallory_id}/points/use"),
                    json!({"points": 5, "usage_type": "order", "reference_id": payload("usage")}),
                ))
                .await,
        ),
        (
            "reverse",
            staff
                .send(api(
                    &format!("/members/{mallory_id}/points/reverse"),
                    json!({"source_type": "order", "source_id": payload("source"), "refund_id": payload("refund"), "amount": "10.00"}),
                ))
                .await,
        ),
        (
            "adjust",
            staff
                .post(
                    &format!("/admin/members/{mallory_id}/adjust"),
                    Some(&token),
                    &[("points", "7"), ("reason", &payload("reason"))],
                )
                .await,
        ),
        (
            "set_level",
            // Mallory is put on the level with markup in its name, so her own pages show it
            staff
                .post(
                    &format!("/admin/members/{mallory_id}/level"),
                    Some(&token),
                    &[("level_id", &marked_level(&w).await), ("note", &payload("note"))],
                )
                .await,
        ),
        (
            "api_key",
            staff
                .post("/admin/api-keys", Some(&token), &[("name", &payload("keyname"))])
                .await,
        ),
    ];
    for (field, r) in stored {
        let status = r.status().as_u16();
        let json = r
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/json");
        let body = r.text().await.unwrap();
        assert!(
            [200, 201, 303].contains(&status),
            "{field}: {status} {body}"
        );
        // JSON answers carry the value as it was sent (nosniff keeps them from being
        // read as HTML); pages escape it
        if !json {
            assert_escaped(field, &body);
        }
    }
    // values echoed back into a form that is shown again
    let anon = Visitor::new(&w.app);
    let t = anon.token().await;
    let echoed = [
        anon.post(
            "/login",
            Some(&t),
            &[("email", &payload("login")), ("password", "x")],
        )
        .await,
        anon.post(
            "/register",
            Some(&t),
            &[
                ("email", &payload("regmail")),
                ("display_name", &payload("regname")),
            ],
        )
        .await,
    ];
    for r in echoed {
        let body = r.text().await.unwrap();
        assert_escaped("echoed form", &body);
        assert!(
            body.contains("xlogin") || body.contains("xregname"),
            "{body}"
        );
    }
    // every page, as staff and as Mallory, plain and as an htmx partial, with markup in
    // every query parameter a page reads
    let query = payload("query");
    let query = form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>();
    let mut seen = String::new();
    let mut pages = 0;
    for visitor in [&staff, &mallory] {
        for route in page_routes().iter().filter(|r| r.get) {
            let path = if route.path.starts_with("/admin/members/{id}") {
                route.path.replace("{id}", &mallory_id.to_string())
            } else {
                w.fill(route.path)
            };
            for url in [
                path.clone(),
                format!("{path}?q={query}&type={query}&cursor={query}&next={query}&lang={query}"),
                format!("{path}?q=mallory"),
                format!("{path}?q=eve"),
            ] {
                for htmx in [false, true] {
                    let r = if htmx {
                        visitor.htmx_get(&url).await
                    } else {
                        visitor.get(&url).await
                    };
                    let kind = r
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned());
                    if kind
                        .as_deref()
                        .is_some_and(|k| k == "application/json" || k.starts_with("text/csv"))
                    {
                        // data, not a page: a download a browser never renders
                        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}");
                        assert!(
                            r.headers()["content-disposition"]
                                .to_str()
                                .unwrap()
                                .starts_with("attachment"),
                            "{url}"
                        );
                        continue;
                    }
                    let html = r.text().await.unwrap();
                    assert_escaped(&url, &html);
                    seen.push_str(&html);
                    pages += 1;
                }
            }
        }
    }
    assert!(pages >= 100, "{pages}");
    // every field a page shows was rendered somewhere, so each was checked (a refund id
    // is stored with the reversal but shown on no page)
    for field in [
        "name", "level", "benefit", "apiname", "source", "usage", "reason", "note", "keyname",
        "query",
    ] {
        assert!(
            seen.contains(&format!("x{field}")),
            "{field} is shown on no page"
        );
    }
}

#[tokio::test]
async fn responses_of_every_kind_carry_the_security_headers() {
    let w = World::new().await;
    let v = Visitor::new(&w.app);
    let mut statuses = std::collections::BTreeSet::new();
    let statics: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
        .unwrap()
        .map(|e| format!("/static/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let mut paths = vec![
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/nope",
        "/api/v1/nope",
        "/static/nope.css",
        "/login?next=%2F%2Fevil",
        "/",
    ];
    paths.extend(statics.iter().map(String::as_str));
    for path in paths {
        statuses.insert(v.get(path).await.status().as_u16());
    }
    let big = "x".repeat(200 * 1024);
    let t = v.token().await;
    for r in [
        v.post("/login", Some(&t), &[("email", &big)]).await,
        v.post("/login", None, &[]).await,
        v.send(v.client.delete(w.app.url("/api/v1/members/1")))
            .await,
    ] {
        statuses.insert(r.status().as_u16());
    }
    // broken JSON, a body that is not JSON by its type, an oversized body
    for (content_type, body) in [
        ("application/json", "{".to_owned()),
        ("text/plain", "{}".to_owned()),
        ("application/json", big),
    ] {
        let r = v
            .send(
                v.client
                    .post(w.app.url("/api/v1/members"))
                    .bearer_auth(&w.key)
                    .header("content-type", content_type)
                    .body(body),
            )
            .await;
        statuses.insert(r.status().as_u16());
    }
    // success, redirect, and the client errors a visitor can cause
    for s in [200, 303, 400, 403, 404, 405, 413, 415] {
        assert!(statuses.contains(&s), "no {s} among {statuses:?}");
    }
}

#[tokio::test]
async fn the_session_cookie_is_flagged_renewed_at_login_and_dead_after_logout() {
    let secure = spawn_app_with(|c| c.cookie_secure = true).await;
    let r = Visitor::new(&secure).get("/login").await;
    let raw = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(raw.contains(flag), "{flag} in {raw}");
    }

    let w = World::new().await;
    let v = Visitor::new(&w.app);
    let r = v.get("/login").await;
    let raw = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Lax") && !raw.contains("Secure"));
    let before = session_cookie(&r).unwrap();
    let old_token = token_in(&r.text().await.unwrap()).unwrap();
    let r = v
        .post(
            "/login",
            Some(&old_token),
            &[("email", "ann@example.com"), ("password", PASSWORD)],
        )
        .await;
    let after = session_cookie(&r).expect("a new session id at login");
    assert_ne!(before, after);
    // a bare client replaying a cookie, as an attacker who knew it would
    let replay = |cookie: String, path: &'static str| {
        let bare = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let url = w.app.url(path);
        async move {
            let r = bare.get(url).header("cookie", cookie).send().await.unwrap();
            assert_security_headers(&r);
            r.status().as_u16()
        }
    };
    assert_eq!(
        replay(before.clone(), "/profile").await,
        303,
        "the pre-login id is dead"
    );
    assert_eq!(
        replay(after.clone(), "/profile").await,
        200,
        "the new one is logged in"
    );
    assert_eq!(replay("mp_session=forged".into(), "/profile").await, 303);
    // the token from before the login no longer works; the new one does
    let new_token = v.token().await;
    assert_ne!(new_token, old_token);
    let r = v
        .post("/notifications/read-all", Some(&old_token), &[])
        .await;
    assert_eq!(r.status(), 403);
    let r = v.post("/logout", Some(&new_token), &[]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        replay(after, "/profile").await,
        303,
        "logged out on the server, not only in the browser"
    );
}

#[tokio::test]
async fn staff_roles_refuse_what_the_role_does_not_allow_and_change_nothing() {
    use member_portal::domain::StaffRole;
    let w = World::new().await;
    for (email, role) in [
        ("viewer@example.com", StaffRole::Viewer),
        ("operator@example.com", StaffRole::Operator),
    ] {
        accounts::create_staff_as(&w.app.s.ctx, email, PASSWORD, None, role)
            .await
            .unwrap();
    }
    let viewer = Visitor::new(&w.app);
    viewer.login("viewer@example.com").await;
    let operator = Visitor::new(&w.app);
    operator.login("operator@example.com").await;
    let before = w.fingerprint().await;
    let mut refused = (0, 0);
    for route in page_routes()
        .iter()
        .filter(|r| r.post && r.path.starts_with("/admin"))
    {
        let path = w.fill(route.path);
        let token = viewer.token().await;
        let r = viewer.post(&path, Some(&token), FORM).await;
        assert_eq!(r.status(), 403, "a viewer posts {path}");
        refused.0 += 1;
        let operator_may = ["/admin/levels", "/admin/staff", "/admin/api-keys"]
            .iter()
            .all(|p| !path.starts_with(p));
        if !operator_may {
            let token = operator.token().await;
            let r = operator.post(&path, Some(&token), FORM).await;
            assert_eq!(r.status(), 403, "an operator posts {path}");
            refused.1 += 1;
        }
    }
    assert!(refused.0 >= 15 && refused.1 >= 8, "{refused:?}");
    assert_eq!(
        w.fingerprint().await,
        before,
        "refused posts changed nothing"
    );
    // both read every staff page
    for route in page_routes()
        .iter()
        .filter(|r| r.get && r.path.starts_with("/admin") && !r.path.contains('{'))
    {
        assert_eq!(
            viewer.get(route.path).await.status(),
            200,
            "a viewer reads {}",
            route.path
        );
    }
    let dashboard = viewer.get("/admin").await.text().await.unwrap();
    assert!(
        dashboard.contains("id=\"read-only\""),
        "a viewer is told the role reads only"
    );
    let dashboard = operator.get("/admin").await.text().await.unwrap();
    assert!(!dashboard.contains("id=\"read-only\""));
    // an operator does what operators do: adjust a member's points
    let token = operator.token().await;
    let r = operator
        .post(
            &format!("/admin/members/{}/adjust", w.bob),
            Some(&token),
            &[("points", "5"), ("reason", "goodwill")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        w.app.s.points.summary(w.bob).await.unwrap().available % 10,
        5
    );
    // an admin changes a role; the account has it at its next request
    let boss = Visitor::new(&w.app);
    boss.login("boss@example.com").await;
    let viewer_id: i64 =
        sqlx::query_scalar("select id from users where email = 'viewer@example.com'")
            .fetch_one(&w.app.s.ctx.pool)
            .await
            .unwrap();
    let token = boss.token().await;
    let r = boss
        .post(
            &format!("/admin/staff/{viewer_id}/role"),
            Some(&token),
            &[("role", "operator")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let token = viewer.token().await;
    let r = viewer
        .post(
            &format!("/admin/members/{}/adjust", w.bob),
            Some(&token),
            &[("points", "5"), ("reason", "now allowed")],
        )
        .await;
    assert_eq!(r.status(), 303, "the new role applies at once");
}
