//! Slow and idle clients: a header-read timeout and a cap on connections served at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::web_harness::*;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_headers_slowly_is_disconnected_at_the_timeout() {
    let app = spawn_app_with(|c| c.header_read_timeout = Duration::from_secs(3)).await;
    let addr = addr(&app);
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let started = Instant::now();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        let mut buf = [0u8; 256];
        loop {
            // one more header line every second, never the blank line that ends them
            if s.write_all(b"X-Slow: yes\r\n").is_err() {
                return started.elapsed();
            }
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                match s.read(&mut buf) {
                    Ok(0) => return started.elapsed(),
                    Ok(_) => {} // a 408 before closing is fine
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return started.elapsed(),
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never closed");
        }
    })
    .await
    .unwrap();
    assert!(
        closed_after >= Duration::from_secs(2) && closed_after < Duration::from_secs(6),
        "closed after {closed_after:?}"
    );
    // the server still answers others
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_is_free() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let addr = addr(&app);
    tokio::task::spawn_blocking(move || {
        // two idle clients hold both places
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut third = TcpStream::connect(&addr).unwrap();
        third
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut buf = [0u8; 64];
        assert!(third.read(&mut buf).is_err(), "answered past the cap");
        drop(idle);
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        third.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn metrics_are_served_where_the_operator_says_and_nowhere_else() {
    // a separate listener: the member-facing one has no /metrics
    let app = spawn_app_with(|c| c.metrics_bind_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    let metrics = app.metrics_base.clone().expect("a metrics listener");
    let r = client()
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("member_system_"));
    assert_eq!(
        client()
            .get(format!("{metrics}/profile"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "nothing but metrics there"
    );
    // a token: the member-facing listener serves it to whoever has it
    let token = "0123456789abcdef-metrics";
    let app = spawn_app_with(|c| c.metrics_token = Some(token.into())).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("0123456789abcdef-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    // neither, on an address others can reach: not served at all
    let app = spawn_app_with(|c| c.bind_addr = "0.0.0.0:0".parse().unwrap()).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let r = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
