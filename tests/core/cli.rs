//! The binary: CLI commands and `serve`, as an operator runs them.

use std::io::{Read, Write};
use std::process::Command;

use crate::harness::*;

fn cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_member-portal"))
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn verify_ledger_exits_1_with_a_report_on_a_broken_invariant() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.earn(user, 100, "O1").await.unwrap();
    let (code, out) = cli(&h.db.url, &["verify-ledger"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ledger ok"), "{out}");
    // someone edits a balance by hand
    sqlx::query("update member_profiles set available_points = 90 where user_id = $1")
        .bind(user)
        .execute(&h.pool)
        .await
        .unwrap();
    let (code, out) = cli(&h.db.url, &["verify-ledger"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("member {user}")) && out.contains("available 90"),
        "{out}"
    );
}

#[tokio::test]
async fn cli_commands_do_what_they_say() {
    let h = Harness::new().await;
    let (code, key) = cli(&h.db.url, &["create-api-key", "--name", "shop"]);
    assert_eq!(code, 0, "{key}");
    let key = key.trim();
    assert!(
        key.starts_with("mp_") && !key.contains(' '),
        "prints only the key: {key}"
    );
    assert_eq!(h.count("select count(*) from api_keys").await, 1);
    let (code, out) = cli(
        &h.db.url,
        &[
            "create-staff",
            "--email",
            "ops@example.com",
            "--password",
            "a strong one",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        h.count("select count(*) from users where role = 'staff'")
            .await,
        1
    );
    let (code, out) = cli(&h.db.url, &["seed-demo"]);
    assert_eq!(code, 0, "{out}");
    assert!(h.count("select count(*) from member_profiles").await >= 5);
    assert!(
        h.count("select count(distinct level_id) from member_profiles")
            .await
            >= 3,
        "across levels"
    );
    assert!(
        h.count("select count(*) from point_transactions").await >= 20,
        "with history"
    );
    assert!(
        h.count("select count(*) from point_batches where available_points > 0 and expires_at < now() + interval '30 days'").await > 0,
        "some points expiring soon"
    );
    let (code, out) = cli(&h.db.url, &["verify-ledger"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&h.db.url, &["expire-points"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("expired 0 points"), "{out}");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_member-portal"))
        .arg("migrate")
        .env("MEMBER_POINTS_EXPIRY_DAYS", "a year")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MEMBER_POINTS_EXPIRY_DAYS") && err.contains("whole number"),
        "{err}"
    );
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn serve_creates_a_missing_database_migrates_and_answers_health_checks() {
    let name = format!("mp_test_serve_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{SERVER}/{name}");
    let config = member_portal::config::Config {
        database_url: url.clone(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let app = member_portal::app::Application::build(config)
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let pool = app.services.ctx.pool.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let health = tokio::task::spawn_blocking(move || {
        (http_get(addr, "/healthz"), http_get(addr, "/readyz"))
    })
    .await
    .unwrap();
    assert!(health.0.starts_with("HTTP/1.1 200"), "{}", health.0);
    assert!(health.1.starts_with("HTTP/1.1 200"), "{}", health.1);
    assert!(
        health.1.contains(r#""postgres":"up""#) && health.1.contains(r#""redis":"not configured""#),
        "{}",
        health.1
    );
    let levels: i64 = sqlx::query_scalar("select count(*) from member_levels")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(levels, 4, "migrated with the default levels");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{SERVER}/postgres"))
            .await
            .unwrap();
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_member_timezone_stops_serve_naming_the_variable() {
    let db = TestDb::new().await;
    let config = member_portal::config::Config {
        database_url: db.url.clone(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        member_timezone: "Mars/Olympus_Mons".into(),
        ..Default::default()
    };
    let err = member_portal::app::Application::build(config)
        .await
        .err()
        .expect("must not start");
    assert!(err.to_string().contains("MEMBER_TIMEZONE"), "{err:#}");
}

#[tokio::test]
async fn import_members_checks_every_row_and_imports_all_or_the_good_ones() {
    let h = Harness::new().await;
    let dir = std::env::temp_dir().join(format!("mp-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("members.csv");
    std::fs::write(
        &file,
        "email,display_name,phone,external_id,member_code,points,total_spent\n\
         wang@example.com,Wang Fang,+86 138-0000-0001,CRM-1,,500,1200\n\
         not-an-email,Nobody,,,,,\n\
         \"li@example.com\",\"Li, Lei\",,CRM-2,LEGACY-1,0,99.50\n\
         WANG@example.com,Twice,,,,,\n\
         \n\
         zhao@example.com,Zhao,,,,,\n\
         qian@example.com,Qian,,,,-5,\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let users = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from users")
            .fetch_one(&h.pool)
            .await
            .unwrap()
    };
    let before = users().await;

    // all or nothing: three bad lines, nothing imported
    let (code, out) = cli(&h.db.url, &["import-members", path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("line 3: email:"), "{out}");
    assert!(
        out.contains("line 5: email: another line of the file has this email"),
        "{out}"
    );
    assert!(out.contains("line 8: points:"), "{out}");
    assert!(
        out.contains("6 rows read, 3 bad, 0 members imported"),
        "{out}"
    );
    assert_eq!(users().await, before);

    // the good ones
    let (code, out) = cli(&h.db.url, &["import-members", path, "--skip-bad-rows"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("6 rows read, 3 bad, 3 members imported"),
        "{out}"
    );
    let row: (
        String,
        String,
        i64,
        rust_decimal::Decimal,
        String,
        Option<String>,
    ) = sqlx::query_as(
        "select u.display_name, p.member_code, p.available_points, p.total_spent, l.level_name,
                p.external_id
           from users u join member_profiles p on p.user_id = u.id
           join member_levels l on l.id = p.level_id
          where u.email = 'wang@example.com'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "Wang Fang");
    assert!(row.1.starts_with("M2") && row.1.len() == 14, "{}", row.1);
    assert_eq!((row.2, row.4.as_str()), (500, "银牌会员"));
    assert_eq!(row.3, dec("1200.00"));
    assert_eq!(row.5.as_deref(), Some("CRM-1"));
    let li: (String, String) = sqlx::query_as(
        "select u.display_name, p.member_code from users u join member_profiles p on p.user_id = u.id
          where u.email = 'li@example.com'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(li, ("Li, Lei".to_owned(), "LEGACY-1".to_owned()));
    assert_eq!(users().await, before + 3);
    // the opening balance is a ledger line with its batch
    let (code, out) = cli(&h.db.url, &["verify-ledger"]);
    assert_eq!(code, 0, "{out}");
    let id: i64 = sqlx::query_scalar("select id from users where email = 'wang@example.com'")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(h.available(id).await, 500);

    // the same file again: every member is there already
    let (code, out) = cli(&h.db.url, &["import-members", path, "--skip-bad-rows"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 members imported"), "{out}");
    assert!(
        out.contains("line 2: email: a member or staff account has this email"),
        "{out}"
    );
    assert_eq!(users().await, before + 3);
    // a file without the columns it needs is refused as a whole
    std::fs::write(&file, "name,points\nx,1\n").unwrap();
    let (code, out) = cli(&h.db.url, &["import-members", path]);
    assert_ne!(code, 0);
    assert!(out.contains("\"name\" is not one of"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}
