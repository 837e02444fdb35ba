//! What `serve` itself must run, tested by starting the binary: every background job
//! (expiry sweep, reminders, deferred upgrades, session and login-throttle cleanup,
//! webhook delivery, birthday bonuses, password emails, the level review).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use time::{Duration, OffsetDateTime};

use crate::harness::*;
use crate::web_harness::client;

/// A `serve` process on a free port, killed when dropped.
pub struct ServeProcess {
    child: Child,
    pub base: String,
}

impl ServeProcess {
    /// Starts `serve` on `database_url` with the extra environment, and waits until it
    /// answers `/healthz`.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_logging_to(database_url, env, Stdio::null()).await
    }

    /// As [`Self::start`], with the process's log (stderr) going to `log`.
    pub async fn start_logging_to(database_url: &str, env: &[(&str, &str)], log: Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_member-portal"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env_remove("REDIS_URL")
            .env("DB_POOL_SIZE", "6")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while client()
            .get(format!("{}/healthz", process.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < StdDuration::from_secs(30),
                "serve did not start"
            );
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        process
    }
}

impl ServeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, for at most `limit`.
async fn eventually<F: Future<Output = bool>>(
    limit: StdDuration,
    what: &str,
    check: impl Fn() -> F,
) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "serve did not {what} within {limit:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_every_background_job() {
    // The harness clock is in the past (2025-09-18); the process runs on the real one.
    let h = Harness::new().await;
    let expired = h.member().await;
    h.earn(expired, 100, "OLD").await.unwrap(); // expired 365 days later, before today
    let upgraded = h.member().await;
    h.s.points
        .earn_points(earn_req(upgraded, 10, "U1", Some("1000")))
        .await
        .unwrap();
    h.clock.advance(Duration::hours(1));
    h.s.points
        .earn_points(earn_req(upgraded, 10, "U2", Some("4000")))
        .await
        .unwrap(); // 金牌 deferred by the cooldown, due a day later: long past
    let level = |user: i64| {
        sqlx::query_scalar::<_, String>(
            "select l.level_name from member_profiles p join member_levels l on l.id = p.level_id
              where p.user_id = $1",
        )
        .bind(user)
        .fetch_one(&h.pool)
    };
    assert_eq!(level(upgraded).await.unwrap(), "银牌会员");
    let reminded = h.member().await;
    // points that expire ten days from today
    h.clock
        .set(OffsetDateTime::now_utc() + Duration::days(10) - Duration::days(365));
    h.earn(reminded, 50, "SOON").await.unwrap();
    sqlx::query(
        "insert into tower_sessions.session (id, data, expiry_date)
         values ('stale-session', '\\x00', now() - interval '1 day'),
                ('live-session', '\\x00', now() + interval '1 day')",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into login_failures (throttle_key, window_start, attempts)
         values ('c:203.0.113.1', now() - interval '1 hour', 3), ('c:203.0.113.2', now(), 1)",
    )
    .execute(&h.pool)
    .await
    .unwrap();

    // points pending in a return window that ended long ago (by the process's clock)
    let pender = h.member().await;
    let pending_config = member_portal::config::Config {
        database_url: h.db.url.clone(),
        points_pending_days: 1,
        ..Default::default()
    };
    let pending_services = member_portal::service::Services::new(
        member_portal::service::Ctx::new(h.pool.clone(), pending_config, Arc::new(h.clock.clone()))
            .unwrap(),
    );
    pending_services
        .points
        .earn_points(earn_req(pender, 40, "PEND", None))
        .await
        .unwrap();
    assert_eq!(h.s.points.summary(pender).await.unwrap().pending, 40);
    // a birthday campaign live now (the process's clock) and a member born on this day
    let birthday = h.member().await;
    sqlx::query(
        "insert into campaigns (name, kind, bonus_points, starts_at, ends_at, created_at, updated_at)
         values ('生日礼', 'birthday', 88, now() - interval '1 day', now() + interval '1 day', now(), now())",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "update member_profiles
            set birthday = ((now() at time zone 'Asia/Shanghai')::date - interval '30 years')::date
          where user_id = $1",
    )
    .bind(birthday)
    .execute(&h.pool)
    .await
    .unwrap();

    // a level set by hand until a day long past, its notice sent: the review lowers it
    let reviewed = h.member().await;
    sqlx::query(
        "update member_profiles
            set level_id = 3, level_manual = true, level_kept_until = now() - interval '20 days',
                level_review_at = now() - interval '1 day',
                downgrade_notice_for = now() - interval '1 day'
          where user_id = $1",
    )
    .bind(reviewed)
    .execute(&h.pool)
    .await
    .unwrap();

    let _serve = ServeProcess::start(&h.db.url, &[]).await;

    let pool = &h.pool;
    eventually(
        StdDuration::from_secs(30),
        "pay the birthday bonus",
        || async {
            sqlx::query_scalar::<_, i64>(
                "select coalesce(sum(points_change), 0)::bigint from point_transactions
              where user_id = $1 and reference_type = 'campaign'",
            )
            .bind(birthday)
            .fetch_one(pool)
            .await
            .unwrap()
                == 88
        },
    )
    .await;
    eventually(StdDuration::from_secs(30), "review the level", || async {
        level(reviewed).await.unwrap() == "普通会员"
    })
    .await;
    eventually(StdDuration::from_secs(30), "expire the old batch", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from point_transactions where user_id = $1 and transaction_type = 'expire'",
        )
        .bind(expired)
        .fetch_one(pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    eventually(StdDuration::from_secs(30), "send the expiry reminder", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from notifications where user_id = $1 and kind = 'points_expiry_reminder'",
        )
        .bind(reminded)
        .fetch_one(pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    eventually(
        StdDuration::from_secs(30),
        "apply the deferred upgrade",
        || async { level(upgraded).await.unwrap() == "金牌会员" },
    )
    .await;
    eventually(
        StdDuration::from_secs(30),
        "delete the expired session",
        || async {
            sqlx::query_scalar::<_, Vec<String>>(
                "select coalesce(array_agg(id order by id), '{}') from tower_sessions.session",
            )
            .fetch_one(pool)
            .await
            .unwrap()
                == ["live-session"]
        },
    )
    .await;
    eventually(StdDuration::from_secs(30), "purge the ended throttle window", || async {
        sqlx::query_scalar::<_, Vec<String>>(
            "select coalesce(array_agg(throttle_key order by throttle_key), '{}') from login_failures",
        )
        .fetch_one(pool)
        .await
        .unwrap()
            == ["c:203.0.113.2"]
    })
    .await;
    assert_eq!(h.available(expired).await, 0);
    assert_eq!(h.available(reminded).await, 50, "not yet expired");
    h.assert_ledger_clean().await;
}

type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A webhook receiver on a free port: every POST it gets, with headers and body.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                got.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A fresh database with services on it (for setting up what `serve` will find), an API
/// key with every scope, and one member.
async fn database_with_a_member_and_a_key(
    email: &str,
) -> (TestDb, member_portal::service::Services, String, i64) {
    let db = TestDb::new().await;
    let config = member_portal::config::Config {
        database_url: db.url.clone(),
        ..Default::default()
    };
    let pool = member_portal::db::connect(&config, 2).await.unwrap();
    let s = member_portal::service::Services::new(
        member_portal::service::Ctx::with_system_clock(pool, config).unwrap(),
    );
    let key = member_portal::service::accounts::create_api_key(&s.ctx, "shop", None)
        .await
        .unwrap();
    let user = s
        .members
        .create_member(member_portal::service::members::NewMember::parse(email, "M", None).unwrap())
        .await
        .unwrap()
        .user_id;
    (db, s, key, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_a_signed_webhook_for_an_upgrade_made_through_the_api() {
    let (db, s, key, user) = database_with_a_member_and_a_key("hook@example.com").await;
    let (url, got) = receiver().await;
    let secret = "a webhook secret of some length";
    let serve = ServeProcess::start(
        &db.url,
        &[
            ("NOTIFY_WEBHOOK_URL", &url),
            ("NOTIFY_WEBHOOK_SECRET", secret),
        ],
    )
    .await;

    let earned = client()
        .post(format!("{}/api/v1/members/{user}/points/earn", serve.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "base_points": 10, "source_type": "order", "source_id": "BIG-1", "amount": "1500.00"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(earned.status(), 201);
    let body: serde_json::Value = earned.json().await.unwrap();
    assert_eq!(body["upgrade"]["new_level"], "银牌会员", "{body}");

    // delivery runs every 10 s
    eventually(
        StdDuration::from_secs(25),
        "deliver the webhook",
        || async { !got.lock().unwrap().is_empty() },
    )
    .await;
    let (headers, body) = got.lock().unwrap()[0].clone();
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["kind"], "level_upgraded", "{payload}");
    assert_eq!(payload["user_id"], user);
    assert_eq!(
        headers[member_portal::service::outbox::SIGNATURE_HEADER],
        member_portal::service::outbox::signature(secret, &body).as_str()
    );
    let pool = &s.ctx.pool;
    eventually(StdDuration::from_secs(10), "mark it delivered", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from notifications where user_id = $1 and delivered_at is not null",
        )
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
            == 1
    })
    .await;
}

#[tokio::test]
async fn log_lines_written_to_a_file_carry_no_terminal_colours() {
    let db = TestDb::new().await;
    let path = std::env::temp_dir().join(format!("{}.log", db.name));
    let file = std::fs::File::create(&path).unwrap();
    let serve = ServeProcess::start_logging_to(&db.url, &[("RUST_LOG", "info")], file.into()).await;
    drop(serve);
    let log = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert!(log.contains("member portal listening"), "{log}");
    assert!(!log.contains('\x1b'), "no ANSI escapes: {log:?}");
}

/// The text of a message's body, decoded from base64 or quoted-printable as its header says.
fn decoded_body(data: &str) -> String {
    let (head, body) = data.split_once("\n\n").unwrap_or((data, ""));
    let head = head.to_ascii_lowercase();
    if head.contains("content-transfer-encoding: base64") {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in body.bytes() {
            let Some(v) = alphabet.iter().position(|a| *a == c) else {
                continue;
            };
            bits = (bits << 6) | v as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    } else if head.contains("quoted-printable") {
        let joined = body.replace("=\n", "");
        let mut out = Vec::new();
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    } else {
        body.to_owned()
    }
}

/// An SMTP server on a free port that accepts every message and keeps what it was given
/// (envelope recipient and data), for `serve`'s password emails.
async fn smtp_receiver() -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 localhost ESMTP test\r\n").await;
                let (mut rcpt, mut data, mut in_data) = (String::new(), String::new(), false);
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            store
                                .lock()
                                .unwrap()
                                .push((rcpt.clone(), std::mem::take(&mut data)));
                            let _ = write.write_all(b"250 OK queued\r\n").await;
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 localhost\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt = line[8..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_emails_password_links_where_smtp_is_set() {
    let h = Harness::new().await;
    let user = h.member().await;
    let email: String = sqlx::query_scalar("select email from users where id = $1")
        .bind(user)
        .fetch_one(&h.pool)
        .await
        .unwrap();
    member_portal::service::accounts::request_password_link(&h.s.ctx, &email)
        .await
        .unwrap();
    let (port, got) = smtp_receiver().await;
    let smtp = format!("smtp://127.0.0.1:{port}");
    let _serve = ServeProcess::start(
        &h.db.url,
        &[
            ("SMTP_URL", &smtp),
            ("SMTP_FROM", "Shop <no-reply@shop.example>"),
        ],
    )
    .await;
    eventually(
        StdDuration::from_secs(30),
        "email the password link",
        || async { !got.lock().unwrap().is_empty() },
    )
    .await;
    let (rcpt, data) = got.lock().unwrap()[0].clone();
    assert!(rcpt.contains(&email), "{rcpt}");
    let link: String = sqlx::query_scalar(
        "select payload->>'link' from notifications where user_id = $1 and kind = 'member.password_reset'",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    let plain = decoded_body(&data);
    assert!(plain.contains(&link), "{plain}\n{data}");
    assert!(plain.contains("30 分钟内有效"), "{plain}");
    assert!(data.contains("no-reply@shop.example"));
    eventually(StdDuration::from_secs(10), "mark it emailed", || async {
        sqlx::query_scalar::<_, bool>(
            "select emailed_at is not null from notifications where user_id = $1 and kind = 'member.password_reset'",
        )
        .bind(user)
        .fetch_one(&h.pool)
        .await
        .unwrap()
    })
    .await;
    assert_eq!(got.lock().unwrap().len(), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_error_is_logged_once_under_the_requests_own_id() {
    let (db, s, key, user) = database_with_a_member_and_a_key("log@example.com").await;
    let pool = s.ctx.pool.clone();
    let path = std::env::temp_dir().join(format!("{}-errors.log", db.name));
    let file = std::fs::File::create(&path).unwrap();
    let serve = ServeProcess::start_logging_to(&db.url, &[("RUST_LOG", "info")], file.into()).await;
    // the store of record loses a table under the running portal
    sqlx::query("alter table point_transactions rename to point_transactions_gone")
        .execute(&pool)
        .await
        .unwrap();
    let r = client()
        .get(format!(
            "{}/api/v1/members/{user}/points/transactions",
            serve.base
        ))
        .bearer_auth(&key)
        .header("x-request-id", "trace-the-failure-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-request-id"], "trace-the-failure-7");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "INTERNAL_ERROR");
    assert_eq!(
        body["request_id"], "trace-the-failure-7",
        "the id the caller can quote"
    );
    drop(serve);
    let log = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(failures.len(), 1, "one error line: {log}");
    assert!(failures[0].contains("trace-the-failure-7"), "{log}");
    assert!(
        failures[0].contains("/api/v1/members/{user_id}/points/transactions"),
        "the span names the route, not the member: {log}"
    );
    assert!(!log.contains(&format!("/api/v1/members/{user}/")), "{log}");
}
