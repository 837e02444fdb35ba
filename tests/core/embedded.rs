//! The default store when DATABASE_URL is unset.

use std::path::PathBuf;

use member_portal::config::Config;
use member_portal::embedded;

use crate::web_harness::client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_server_answering_a_private_cluster_starts_and_the_portal_answers() {
    if embedded::find_binaries().is_none() {
        eprintln!(
            "SKIPPED: PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed here"
        );
        return;
    }
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
    let mut config = Config {
        // the "default" address, with nothing listening
        database_url: "postgres://postgres@127.0.0.1:1/member_portal".into(),
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let pg = embedded::resolve(&mut config, &data)
        .await
        .unwrap()
        .expect("a private cluster");
    assert_eq!(
        config.database_url,
        format!("postgres://postgres@127.0.0.1:{}/member_portal", pg.port)
    );
    // under `data`, or, when the postgres user may not enter it (a root-only checkout), a
    // directory of its own under the system temp dir
    assert!(pg.data_dir().join("PG_VERSION").exists(), "initialised");
    let app = member_portal::app::Application::build(config)
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let r = client().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        client()
            .get(format!("{base}/login"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    pg.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err(),
        "stopped on exit"
    );
    let _ = std::fs::remove_dir_all(pg.data_dir());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn a_local_server_that_answers_is_used_as_it_is() {
    let mut config = Config::default();
    let before = config.database_url.clone();
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("never-created");
    assert!(
        embedded::resolve(&mut config, &data)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(config.database_url, before);
    assert!(!data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_left_running_by_a_killed_portal_is_taken_over_and_one_in_use_is_shared() {
    if embedded::find_binaries().is_none() {
        eprintln!("SKIPPED: PostgreSQL's server binaries are not installed here");
        return;
    }
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
    let first = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || embedded::Embedded::start(&data))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(first.origin, embedded::Origin::Started);
    // the portal that started it is killed (kill -9): its cluster keeps running
    first.set_owner_for_tests(4_000_000).unwrap(); // no such process
    let port = first.port;
    drop(first); // ends without stopping it
    let adopted = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || embedded::Embedded::start(&data))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(adopted.port, port, "the same cluster");
    assert_eq!(
        adopted.origin,
        embedded::Origin::Adopted {
            stale_owner: 4_000_000
        }
    );
    // another portal process owns it now: a CLI command uses it and leaves it running
    let db = crate::harness::TestDb::new().await;
    let owner = crate::serve_process::ServeProcess::start(&db.url, &[]).await;
    adopted.set_owner_for_tests(owner.pid()).unwrap();
    let shared = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || embedded::Embedded::start(&data))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        shared.origin,
        embedded::Origin::Shared { owner: owner.pid() }
    );
    shared.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "a shared cluster is left running"
    );
    drop(owner);
    // the owner has ended: whoever comes next takes over, and stops it on exit
    let last = tokio::task::spawn_blocking({
        let data = data.clone();
        move || embedded::Embedded::start(&data)
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        matches!(last.origin, embedded::Origin::Adopted { .. }),
        "{:?}",
        last.origin
    );
    last.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "stopped on exit"
    );
    let _ = std::fs::remove_dir_all(last.data_dir());
    let _ = std::fs::remove_dir_all(&data);
}
