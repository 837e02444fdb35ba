//! Sessions, login, throttling, CSRF, redirects, language: over HTTP.

use member_portal::service::accounts::{MAX_CLIENT_LOGIN_FAILURES, MAX_LOGIN_FAILURES};
use time::Duration;

use crate::web_harness::*;

#[tokio::test]
async fn login_then_logout() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    let r = app.get("/profile").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login?next=%2Fprofile");
    let r = app.login("Ann@Example.com", PASSWORD).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/profile");
    let page = app.text("/profile").await;
    assert!(page.contains("id=\"member-code\""), "{page}");
    let r = app.post("/logout", &[]).await;
    assert_eq!(
        (r.status().as_u16(), location(&r).as_str()),
        (303, "/login")
    );
    assert_eq!(app.get("/profile").await.status(), 303, "logged out");
}

#[tokio::test]
async fn an_idle_session_expires_and_a_login_ends_after_twelve_hours() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    assert_eq!(app.get("/profile").await.status(), 200);
    // 30 minutes without a request: the stored session has expired, and the cached copy
    // (which carries the same expiry) with it
    let pool = app.s.ctx.pool.clone();
    sqlx::query("update tower_sessions.session set expiry_date = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    forget_cached_sessions(&app).await;
    assert_eq!(app.get("/profile").await.status(), 303);
    // absolute: however active, a login lasts 12 hours
    app.login("ann@example.com", PASSWORD).await;
    assert_eq!(app.get("/profile").await.status(), 200);
    app.clock
        .advance(Duration::hours(11) + Duration::minutes(59));
    assert_eq!(app.get("/profile").await.status(), 200);
    app.clock.advance(Duration::minutes(1));
    assert_eq!(app.get("/profile").await.status(), 303);
}

/// Drops the cached copies of every stored session, as the passing of their expiry would.
async fn forget_cached_sessions(app: &TestApp) {
    let ids: Vec<String> = sqlx::query_scalar("select id from tower_sessions.session")
        .fetch_all(&app.s.ctx.pool)
        .await
        .unwrap();
    app.s.ctx.cache.invalidate_sessions(&ids).await;
}

async fn stored_expiry_minutes(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select floor(max(extract(epoch from expiry_date - now())) / 60)::bigint from tower_sessions.session",
    )
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn activity_keeps_a_session_alive_with_at_most_one_write_a_minute() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    app.login("ann@example.com", PASSWORD).await;
    assert_eq!(stored_expiry_minutes(&app).await, 29);
    // 25 minutes later as far as the store is concerned
    sqlx::query("update tower_sessions.session set expiry_date = now() + interval '5 minutes'")
        .execute(&app.s.ctx.pool)
        .await
        .unwrap();
    // within the minute of the last move, a page view writes nothing
    assert_eq!(app.get("/profile").await.status(), 200);
    assert_eq!(stored_expiry_minutes(&app).await, 4);
    // a minute on, it moves the idle expiry to 30 minutes from now
    app.clock.advance(Duration::minutes(1));
    assert_eq!(app.get("/profile").await.status(), 200);
    assert_eq!(stored_expiry_minutes(&app).await, 29);
}

#[tokio::test]
async fn a_logout_on_one_instance_ends_the_session_on_another_at_once() {
    let app = spawn_app_with(|c| c.redis_url = Some(crate::harness::REDIS.to_owned())).await;
    app.member("ann@example.com").await;
    let cookie = session_cookie(&app.login("ann@example.com", PASSWORD).await).unwrap();
    let other = app.another_instance().await;
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let on_other = || {
        bare.get(format!("{other}/profile"))
            .header("cookie", &cookie)
            .send()
    };
    // the other instance reads the session once, then serves it from the cache
    assert_eq!(on_other().await.unwrap().status(), 200);
    assert_eq!(on_other().await.unwrap().status(), 200);
    assert_eq!(app.post("/logout", &[]).await.status(), 303);
    // a copy of the old cookie is dead everywhere
    assert_eq!(on_other().await.unwrap().status(), 303);
}

fn login_error(html: &str) -> String {
    let start = html
        .find("id=\"login-error\">")
        .map(|i| i + 17)
        .unwrap_or(0);
    html[start..].split('<').next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_reply() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    let wrong = app.login("ann@example.com", "not the password").await;
    let unknown = app.login("nobody@example.com", "not the password").await;
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(wrong.status(), 401);
    let (a, b) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(login_error(&a), login_error(&b));
    assert!(!login_error(&a).is_empty());
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_a_clear_message_for_known_and_unknown_emails() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    for email in ["ann@example.com", "ghost@example.com"] {
        for _ in 0..MAX_LOGIN_FAILURES {
            assert_eq!(app.login(email, "wrong").await.status(), 401);
        }
        // even the right password is refused while throttled
        let r = app.login(email, PASSWORD).await;
        assert_eq!(r.status(), 401);
        let msg = login_error(&r.text().await.unwrap());
        assert!(msg.contains("15"), "says when to retry: {msg}");
    }
    app.clock.advance(Duration::minutes(15));
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status(),
        303,
        "the window ends"
    );
}

/// POST /login with this session's token, as the client at `ip` (believed only behind a
/// trusted proxy): the status and the error message shown.
async fn login_from(
    client: reqwest::Client,
    url: String,
    token: String,
    ip: &str,
    email: &str,
    password: &str,
) -> (u16, String) {
    let r = client
        .post(url)
        .header("x-forwarded-for", ip)
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, login_error(&r.text().await.unwrap()))
}

const INVALID: &str = "邮箱或密码不正确。";
const THROTTLED: &str = "登录失败次数过多";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_logins_are_counted_before_any_password_is_checked() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    let token = app.csrf().await;
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url, token) = (app.client.clone(), app.url("/login"), token.clone());
        guesses.spawn(async move {
            login_from(
                client,
                url,
                token,
                "192.0.2.1",
                "ann@example.com",
                "wrong guess",
            )
            .await
        });
    }
    let replies = guesses.join_all().await;
    assert!(replies.iter().all(|(s, _)| *s == 401), "{replies:?}");
    let checked = replies.iter().filter(|(_, m)| m == INVALID).count();
    let throttled = replies
        .iter()
        .filter(|(_, m)| m.starts_with(THROTTLED))
        .count();
    assert_eq!(checked, MAX_LOGIN_FAILURES as usize, "{replies:?}");
    assert_eq!(throttled, 40 - checked, "{replies:?}");
}

#[tokio::test]
async fn a_strangers_guesses_do_not_lock_the_owner_out_and_one_client_cannot_spray_accounts() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = member_portal::client_ip::parse_ranges("127.0.0.1").unwrap()
    })
    .await;
    app.member("ann@example.com").await;
    let token = app.csrf().await;
    let login = async |ip: &str, email: String, password: &str| {
        let url = app.url("/login");
        login_from(app.client.clone(), url, token.clone(), ip, &email, password).await
    };
    let attacker = "203.0.113.9";
    for _ in 0..MAX_LOGIN_FAILURES {
        assert_eq!(
            login(attacker, "ann@example.com".into(), "guess").await.1,
            INVALID
        );
    }
    let (status, msg) = login(attacker, "ann@example.com".into(), PASSWORD).await;
    assert_eq!(status, 401);
    assert!(
        msg.starts_with(THROTTLED),
        "the attacker is held back: {msg}"
    );

    // one client, a few guesses on each of many accounts
    let sprayer = "203.0.113.50";
    for i in 0..MAX_CLIENT_LOGIN_FAILURES {
        let (_, msg) = login(sprayer, format!("user{i}@example.com"), "guess").await;
        assert_eq!(msg, INVALID, "attempt {i}");
    }
    let (_, msg) = login(sprayer, "fresh@example.com".into(), "guess").await;
    assert!(msg.starts_with(THROTTLED), "{msg}");
    // the owner, from her own address, is not
    let (status, msg) = login("198.51.100.7", "ann@example.com".into(), PASSWORD).await;
    assert_eq!(status, 303, "{msg}");
    // without a trusted proxy the header is the client's own claim and counts for nothing
    let plain = spawn_app().await;
    plain.member("ann@example.com").await;
    let token = plain.csrf().await;
    let login = async |ip: &str, password: &str| {
        let url = plain.url("/login");
        login_from(
            plain.client.clone(),
            url,
            token.clone(),
            ip,
            "ann@example.com",
            password,
        )
        .await
    };
    for i in 0..MAX_LOGIN_FAILURES {
        login(&format!("198.51.100.{i}"), "guess").await;
    }
    let (_, msg) = login("198.51.100.99", PASSWORD).await;
    assert!(msg.starts_with(THROTTLED), "all from 127.0.0.1: {msg}");
}

#[tokio::test]
async fn an_email_of_any_length_gets_an_answer_not_an_error() {
    let app = spawn_app().await;
    let long = format!("{}@example.com", "x".repeat(3000));
    let r = app.login(&long, "whatever password").await;
    assert_eq!(r.status(), 401);
    assert_eq!(login_error(&r.text().await.unwrap()), INVALID);
}

#[tokio::test]
async fn a_redirect_after_login_goes_only_to_a_same_site_path() {
    let app = spawn_app().await;
    app.member("ann@example.com").await;
    for (next, expected) in [
        ("/points?type=use", "/points?type=use"),
        ("//evil.example/x", "/profile"),
        ("https://evil.example", "/profile"),
    ] {
        let r = app
            .post(
                "/login",
                &[
                    ("email", "ann@example.com"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(location(&r), expected, "next={next}");
        app.post("/logout", &[]).await;
    }
}

#[tokio::test]
async fn language_follows_accept_language_and_can_be_switched_for_the_session() {
    let app = spawn_app().await;
    let en = app
        .client
        .get(app.url("/login"))
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .unwrap();
    let html = en.text().await.unwrap();
    assert!(
        html.contains("lang=\"en\"") && html.contains("Log in"),
        "{html}"
    );
    let zh = app
        .client
        .get(app.url("/login"))
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap();
    assert!(zh.text().await.unwrap().contains("登录"));
    let r = app
        .post("/lang", &[("lang", "en"), ("next", "/register")])
        .await;
    assert_eq!(location(&r), "/register");
    let html = app.text_in("zh-CN", "/register").await;
    assert!(
        html.contains("Become a member"),
        "the choice beats Accept-Language"
    );
}

#[tokio::test]
async fn sign_up_refuses_common_passwords_blank_ones_and_the_email_itself() {
    let app = spawn_app().await;
    // each refused for its own reason, said in the reader's language (Chinese by default)
    for (password, why) in [
        ("        ", "除空格外，密码至少需要 8 个字符"),
        ("password", "这个密码太常见"),
        ("12345678", "这个密码太常见"),
        ("Qwerty123", "这个密码太常见"),
        ("ann@example.com", "密码不能与邮箱相同"),
    ] {
        let r = app
            .post(
                "/register",
                &[
                    ("email", "ann@example.com"),
                    ("display_name", "Ann"),
                    ("password", password),
                    ("confirm", password),
                ],
            )
            .await;
        assert_eq!(r.status(), 422, "{password:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("id=\"password-error\""), "{password:?}");
        assert!(html.contains(why), "{password:?}: {html}");
    }
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "no account was made");
}

#[tokio::test]
async fn sign_up_shows_errors_next_to_fields_then_logs_the_member_in() {
    let app = spawn_app().await;
    app.member("taken@example.com").await;
    let r = app
        .post(
            "/register",
            &[
                ("email", "not-an-email"),
                ("display_name", ""),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    for id in ["email-error", "display_name-error", "password-error"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    let r = app
        .post(
            "/register",
            &[
                ("email", "taken@example.com"),
                ("display_name", "X"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert!(r.text().await.unwrap().contains("id=\"email-error\""));
    let r = app
        .post(
            "/register",
            &[
                ("email", "new@example.com"),
                ("display_name", "New"),
                ("password", PASSWORD),
                ("confirm", "different!!"),
            ],
        )
        .await;
    assert!(r.text().await.unwrap().contains("id=\"confirm-error\""));
    let r = app
        .post(
            "/register",
            &[
                ("email", "new@example.com"),
                ("display_name", "New"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(
        (r.status().as_u16(), location(&r).as_str()),
        (303, "/profile")
    );
    let html = app.text("/profile").await;
    assert!(
        html.contains("M2025091800002"),
        "member code of the second sign-up of the day"
    );
}

#[tokio::test]
async fn a_visitor_gets_a_session_only_when_a_page_has_a_form_for_them() {
    let app = spawn_app().await;
    let sessions = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from tower_sessions.session")
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap()
    };
    for path in [
        "/nope",
        "/",
        "/profile",
        "/static/app.css",
        "/api/v1/me/profile",
        "/healthz",
    ] {
        let r = client().get(app.url(path)).send().await.unwrap();
        assert!(session_cookie(&r).is_none(), "{path} set a session cookie");
    }
    assert_eq!(
        sessions().await,
        0,
        "nothing stored for pages without a form"
    );
    let r = client().get(app.url("/login")).send().await.unwrap();
    assert!(
        session_cookie(&r).is_some(),
        "the login form's token needs a session"
    );
    assert!(token_in(&r.text().await.unwrap()).is_some_and(|t| !t.is_empty()));
    assert_eq!(sessions().await, 1);
    // and that visitor can log in and switch language as before
    app.member("ann@example.com").await;
    assert_eq!(app.login("ann@example.com", PASSWORD).await.status(), 303);
    assert_eq!(
        app.post("/lang", &[("lang", "en"), ("next", "/profile")])
            .await
            .status(),
        303
    );
    assert!(app.text("/profile").await.contains("Log out"));
}
