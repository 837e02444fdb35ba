//! Delivery of notifications to NOTIFY_WEBHOOK_URL.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use member_portal::config::Webhook;
use member_portal::service::outbox::{
    DELIVERY_HEADER, DeliveryReport, SIGNATURE_HEADER, signature,
};
use time::Duration;

use crate::harness::*;

const SECRET: &str = "0123456789abcdef-test-secret";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, String, Bytes)>>>,
    fail_first: Arc<AtomicUsize>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    r.got
        .lock()
        .unwrap()
        .push((h(SIGNATURE_HEADER), h(DELIVERY_HEADER), body));
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver(fail_first: usize) -> (String, Receiver) {
    let r = Receiver {
        fail_first: Arc::new(AtomicUsize::new(fail_first)),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

fn report(delivered: usize, retrying: usize) -> DeliveryReport {
    DeliveryReport {
        delivered,
        retrying,
    }
}

#[tokio::test]
async fn notifications_are_posted_signed_and_retried_with_backoff_until_delivered() {
    let (url, r) = receiver(2).await;
    let h = Harness::with(Backend::Local, |c| {
        c.notify_webhook = Some(Webhook {
            url,
            secret: SECRET.into(),
        })
    })
    .await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("1000")))
        .await
        .unwrap(); // level_upgraded
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(0, 1),
        "first try: 500"
    );
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(0, 0),
        "not due again yet"
    );
    h.clock.advance(Duration::seconds(30));
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(0, 1),
        "second try after 30 s: 500"
    );
    h.clock.advance(Duration::seconds(59));
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(0, 0),
        "backoff doubled to 60 s"
    );
    h.clock.advance(Duration::seconds(1));
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(1, 0),
        "third try delivered"
    );
    h.clock.advance(Duration::days(1));
    assert_eq!(
        h.s.outbox.deliver_due().await.unwrap(),
        report(0, 0),
        "delivered once"
    );

    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    for (sig, delivery, body) in &got {
        assert_eq!(sig, &signature(SECRET, body), "signed with the secret");
        assert_eq!(delivery, &got[0].1, "the same delivery id on every retry");
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["kind"], "level_upgraded");
        assert_eq!(json["user_id"], user);
        assert_eq!(json["payload"]["new_level"], "银牌会员");
    }
    let (attempts, delivered): (i32, bool) = sqlx::query_as(
        "select attempts, delivered_at is not null from notifications where user_id = $1",
    )
    .bind(user)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!((attempts, delivered), (3, true));
}

#[tokio::test]
async fn an_unreachable_webhook_is_retried_later_and_nothing_fails() {
    let h = Harness::with(Backend::Local, |c| {
        c.notify_webhook = Some(Webhook {
            url: "http://127.0.0.1:1/hook".into(),
            secret: SECRET.into(),
        })
    })
    .await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("1000")))
        .await
        .unwrap();
    assert_eq!(h.s.outbox.deliver_due().await.unwrap(), report(0, 1));
    assert!(
        h.s.notifications.list(user, 10).await.unwrap().len() == 1,
        "still shown in the portal"
    );
}

#[tokio::test]
async fn without_a_webhook_nothing_is_posted() {
    let h = Harness::new().await;
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("1000")))
        .await
        .unwrap();
    assert!(!h.s.outbox.is_configured());
    assert_eq!(h.s.outbox.deliver_due().await.unwrap(), report(0, 0));
}
