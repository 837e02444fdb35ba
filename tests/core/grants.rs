//! Bulk grants (issue 13 §5): points for every member a filter finds, one audited
//! operation, idempotent by its key, resumable without granting anyone twice.

use member_portal::db::admin::MemberFilter;
use member_portal::service::accounts;

use crate::harness::*;
use crate::web_harness::*;

#[tokio::test]
async fn a_grant_reaches_every_member_the_filter_finds_once() {
    let h = Harness::new().await;
    let mut silver = Vec::new();
    for i in 0..1203 {
        let u = h.member().await;
        if i % 2 == 0 {
            sqlx::query("update member_profiles set level_id = 2 where user_id = $1")
                .bind(u)
                .execute(&h.pool)
                .await
                .unwrap();
            silver.push(u);
        }
    }
    let filter = MemberFilter {
        level_id: Some(2),
        ..Default::default()
    };
    assert_eq!(h.s.grants.count(&filter).await.unwrap(), 602);
    let started =
        h.s.grants
            .start(&filter, 50, "Double 11 thank-you", "key-0000001", None)
            .await
            .unwrap();
    assert!(started.run);
    // the same form again: the same grant, not a second one
    let again =
        h.s.grants
            .start(&filter, 50, "Double 11 thank-you", "key-0000001", None)
            .await
            .unwrap();
    assert_eq!((again.id, again.run), (started.id, false));
    // two runs at once (a resumed grant while the first still runs): each member once
    let (a, b) = tokio::join!(h.s.grants.run(started.id), h.s.grants.run(started.id));
    assert_eq!(a.unwrap() + b.unwrap(), 602);
    assert_eq!(
        h.s.grants.run(started.id).await.unwrap(),
        0,
        "done: nothing more"
    );
    let g = h.s.grants.get(started.id).await.unwrap();
    assert_eq!(
        (g.status.as_str(), g.members_done, g.members_expected),
        ("done", 602, 602)
    );
    for u in [silver[0], silver[300], silver[601]] {
        assert_eq!(h.available(u).await, 50);
    }
    assert_eq!(
        h.count("select count(*) from point_transactions where reference_type = 'bulk_grant'")
            .await,
        602
    );
    assert_eq!(
        h.count("select count(*) from notifications where kind = 'points.granted'")
            .await,
        602
    );
    assert_eq!(
        h.count("select count(*) from audit_log where action = 'points.bulk_grant'")
            .await,
        1,
        "one audited operation"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_grant_is_refused_without_members_points_or_reason() {
    let h = Harness::new().await;
    h.member().await;
    let nobody = MemberFilter {
        q: Some("nobody-here".into()),
        ..Default::default()
    };
    let all = MemberFilter::default();
    for (filter, points, reason, key) in [
        (&nobody, 10, "why", "key-aaaaaaa1"),
        (&all, 0, "why", "key-aaaaaaa2"),
        (&all, 100_001, "why", "key-aaaaaaa3"),
        (&all, 10, " ", "key-aaaaaaa4"),
        (&all, 10, "why", "short"),
    ] {
        let e =
            h.s.grants
                .start(filter, points, reason, key, None)
                .await
                .unwrap_err();
        assert_eq!(e.code(), "VALIDATION_ERROR", "{points} {reason:?} {key}");
    }
    assert_eq!(h.count("select count(*) from bulk_grants").await, 0);
}

#[tokio::test]
async fn staff_confirm_a_grant_from_the_member_list_and_follow_it() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    let bob = app.member("bob@example.com").await;
    app.s
        .points
        .earn_points(earn_req(bob, 500, "B1", None))
        .await
        .unwrap();
    assert_eq!(app.login("boss@example.com", PASSWORD).await.status(), 303);
    // members with at most 100 points: Ann only
    let list = app.text("/admin/members?max_points=100").await;
    assert!(list.contains("id=\"grant-form\""));
    let key = list
        .split("name=\"key\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let form = [
        ("max_points", "100"),
        ("points", "30"),
        ("reason", "Welcome back"),
        ("key", key.as_str()),
    ];
    let r = app.post("/admin/grants", &form).await;
    assert_eq!(r.status(), 200);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("id=\"confirm-yes\""), "{confirm}");
    assert!(confirm.contains("<dd>1</dd>"), "one member: {confirm}");
    let grants = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from bulk_grants")
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap()
    };
    assert_eq!(grants().await, 0, "nothing before confirming");
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "yes"));
    let r = app.post("/admin/grants", &confirmed).await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.starts_with("/admin/grants/"), "{to}");
    // the same confirmed form again (a double click): the same grant
    let r = app.post("/admin/grants", &confirmed).await;
    assert_eq!(location(&r), to);
    let mut page = String::new();
    for _ in 0..100 {
        page = app.text(&to).await;
        if page.contains("id=\"grant-progress\" max=\"100\" value=\"100\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(page.contains("value=\"100\""), "{page}");
    assert!(
        !page.contains("hx-trigger"),
        "a finished grant stops polling"
    );
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 30);
    assert_eq!(app.s.points.summary(bob).await.unwrap().available, 500);
    let list = app.text("/admin/grants").await;
    assert!(list.contains("Welcome back"));
    let audit = app.text("/admin/audit?action=points.bulk_grant").await;
    assert!(audit.contains(&format!("href=\"{to}\"")), "{audit}");
    // a bad form comes back to the list with the message
    let r = app
        .post(
            "/admin/grants",
            &[("points", "lots"), ("reason", "x"), ("key", "key-bbbbbbbb")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"grant-error\""));
    assert_eq!(grants().await, 1);
}
