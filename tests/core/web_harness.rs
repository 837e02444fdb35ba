//! A spawned portal on port 0 with a fresh database, a manual clock, and a cookie-keeping
//! client that does not follow redirects (so tests see them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use member_portal::app::Application;
use member_portal::clock::ManualClock;
use member_portal::config::Config;
use member_portal::service::Services;
use member_portal::service::members::NewMember;
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::harness::{START, TestDb};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    /// dropped with the app
    pub _db: TestDb,
    pub base: String,
    /// the metrics listener, when the config asks for one
    pub metrics_base: Option<String>,
    pub clock: ManualClock,
    pub s: Services,
    pub client: reqwest::Client,
    pub config: Config,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new().await;
    let mut config = Config {
        database_url: db.url.clone(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        redis_key_prefix: format!("{}:", db.name),
        // small pools: many tests run at once against one PostgreSQL
        db_pool_size: 6,
        ..Default::default()
    };
    tweak(&mut config);
    let clock = ManualClock::new(START);
    let app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
    let s = app.services.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        _db: db,
        base,
        metrics_base,
        clock,
        s,
        client: client(),
        config,
    }
}

pub fn client() -> reqwest::Client {
    builder().build().unwrap()
}

fn builder() -> reqwest::ClientBuilder {
    member_portal::service::outbox::install_crypto();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
}

/// A client that opens a connection per request. The server answers an oversized or
/// unreadable body at once and closes the connection; a pooled client may send its next
/// request down that closing connection and see no answer (a client-side race, not the
/// server's), so the fuzz tests use this one.
pub fn client_without_reuse() -> reqwest::Client {
    builder().pool_max_idle_per_host(0).build().unwrap()
}

impl TestApp {
    /// Another portal process on the same database (and Redis, if configured): its base
    /// URL.
    pub async fn another_instance(&self) -> String {
        let app = Application::build_with_clock(self.config.clone(), Arc::new(self.clock.clone()))
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr().unwrap());
        tokio::spawn(app.run_until(std::future::pending()));
        base
    }

    /// The same portal seen from another browser: its own cookies and session.
    pub fn another_browser(&self) -> TestApp {
        TestApp {
            _db: TestDb::borrowed(&self._db),
            base: self.base.clone(),
            metrics_base: self.metrics_base.clone(),
            clock: self.clock.clone(),
            s: self.s.clone(),
            client: client(),
            config: self.config.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn member(&self, email: &str) -> i64 {
        self.s
            .members
            .create_member(NewMember::parse(email, "Test Member", Some(PASSWORD)).unwrap())
            .await
            .unwrap()
            .user_id
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The page as a browser that prefers `lang` (Accept-Language) would get it.
    pub async fn text_in(&self, lang: &str, path: &str) -> String {
        self.client
            .get(self.url(path))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// The CSRF token of this client's session, from a form on a page (the login form,
    /// or the logout form in the navigation once logged in).
    pub async fn csrf(&self) -> String {
        let r = self.get("/login").await;
        let html = if r.status() == 303 {
            self.text("/notifications").await
        } else {
            r.text().await.unwrap()
        };
        token_in(&html).expect("a csrf token in a form")
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let token = self.csrf().await;
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf_token", &token));
        self.client
            .post(self.url(path))
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/login", &[("email", email), ("password", password)])
            .await
    }
}

pub fn token_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf_token\" value=\"")? + "name=\"csrf_token\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("mp_session="))
        .map(|c| c.split(';').next().unwrap_or("").to_owned())
}

impl TestApp {
    pub async fn assert_ledger_clean_via(&self, pool: &sqlx::PgPool) {
        let v = member_portal::service::ledger::verify_ledger(pool, None)
            .await
            .unwrap();
        assert!(v.is_empty(), "ledger violations: {v:#?}");
    }
}

/// The headers every response carries, whatever route, status or content type.
pub fn assert_security_headers(r: &reqwest::Response) {
    let what = format!("{} {}", r.status(), r.url().path());
    let h = r.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let csp = get("content-security-policy");
    for part in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    // nothing about a session or member is kept by a browser or proxy; only static files
    // that exist are cached
    let cache = get("cache-control");
    if r.url().path().starts_with("/static/") && r.status().is_success() {
        assert!(cache.contains("immutable"), "{what}: {cache}");
    } else {
        assert_eq!(cache, "no-store", "{what}");
    }
}

/// What came back for a request, after the retries a client would make.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// Posts `body` to `path`, starting at `bases[first]` and moving to the next instance after
/// each failure, until an answer that is final: a retry is what a client does on no
/// answer, 503 or CONCURRENT_OPERATION, always with the same idempotency key.
pub async fn post_until_final(
    http: &reqwest::Client,
    bases: &[String],
    first: usize,
    key: &str,
    path: &str,
    body: &Value,
) -> Reply {
    let started = Instant::now();
    let mut at = first;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no final answer for {path} {body} within 60 s"
        );
        let sent = http
            .post(format!("{}{path}", bases[at % bases.len()]))
            .bearer_auth(key)
            .json(body)
            .send()
            .await;
        if let Ok(r) = sent {
            let status = r.status().as_u16();
            if let Ok(body) = r.json::<Value>().await {
                let retry = status == 503 || body["code"] == "CONCURRENT_OPERATION";
                assert_ne!(status, 500, "internal error: {body}");
                if !retry {
                    return Reply { status, body };
                }
            }
        }
        at += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
