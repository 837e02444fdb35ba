//! The finance report and the ledger export (issue 13 §5): what the program owes by expiry
//! month and level, the months' flows with breakage, each as CSV; the ledger streamed.

use member_portal::service::accounts;
use time::Duration;

use crate::harness::{START, earn_req, use_req};
use crate::web_harness::*;

async fn staff(app: &TestApp) {
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    assert_eq!(app.login("boss@example.com", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn the_report_adds_up_what_is_owed_issued_redeemed_and_expired() {
    let app = spawn_app_with(|c| c.points_expiry_days = 30).await;
    staff(&app).await;
    // 2025-08: 100 points for Ann that expire 30 days later (before START)
    let ann = app.member("ann@example.com").await;
    app.clock.set(START - Duration::days(40));
    app.s
        .points
        .earn_points(earn_req(ann, 100, "OLD", None))
        .await
        .unwrap();
    // 2025-09: Bob earns 1000 (¥1000, so 银牌 and ×1.2 afterwards), uses 300; Ann's expire
    app.clock.set(START);
    let bob = app.member("bob@example.com").await;
    app.s
        .points
        .earn_points(earn_req(bob, 1000, "B1", Some("1000")))
        .await
        .unwrap();
    app.s
        .points
        .use_points(use_req(bob, 300, "U1"))
        .await
        .unwrap();
    app.s.points.expire_points().await.unwrap();

    let r = app.s.finance.report().await.unwrap();
    assert_eq!((r.available, r.pending), (700, 0));
    let levels: Vec<(&str, i64, i64)> = r
        .by_level
        .iter()
        .map(|l| (l.level_name.as_str(), l.members, l.available))
        .collect();
    assert_eq!(
        levels,
        [
            ("普通会员", 1, 0),
            ("银牌会员", 1, 700),
            ("金牌会员", 0, 0),
            ("钻石会员", 0, 0)
        ]
    );
    let expiry: Vec<(&str, i64)> = r
        .by_expiry
        .iter()
        .map(|m| (m.month.as_str(), m.points))
        .collect();
    assert_eq!(expiry, [("2025-10", 700)]);
    // August's points were issued in August and expired in September: all of them broke
    let months: Vec<_> = r
        .months
        .iter()
        .map(|m| {
            let flow = (m.issued, m.redeemed, m.expired, m.cohort_outstanding);
            (m.month.as_str(), flow, m.breakage_permille())
        })
        .collect();
    assert_eq!(
        months,
        [
            ("2025-08", (100, 0, 0, 0), Some(1000)),
            ("2025-09", (1000, 300, 100, 700), Some(0))
        ]
    );

    let page = app.text("/admin/finance").await;
    assert!(page.contains("id=\"chart-expiry\"") && page.contains("id=\"chart-months\""));
    assert!(page.contains("<td class=\"num\">100.0%</td>"), "{page}");
    assert!(
        page.contains("<td class=\"num\">0.0%</td>"),
        "no breakage of 2025-09's points yet"
    );
    let csv = app.text("/admin/finance.csv").await;
    assert_eq!(
        csv,
        "month,issued,redeemed,expired,reversed,adjusted,issued_then_expired,issued_still_owed,breakage_percent\n\
         2025-08,100,0,0,0,0,100,0,100.0\n\
         2025-09,1000,300,100,0,0,0,700,0.0\n"
    );
    assert_eq!(
        app.text("/admin/finance.csv?table=expiry").await,
        "expiry_month,points\n2025-10,700\n"
    );
    assert!(
        app.text("/admin/finance.csv?table=levels")
            .await
            .contains("银牌会员,1,700,0\n")
    );

    // a month on, what is left of 2025-09's points expires: breakage 70%
    app.clock.set(START + Duration::days(31));
    app.s.points.expire_points().await.unwrap();
    let r = app.s.finance.report().await.unwrap();
    let sept = r.months.iter().find(|m| m.month == "2025-09").unwrap();
    assert_eq!(
        (sept.cohort_expired, sept.breakage_permille()),
        (700, Some(700))
    );
    assert_eq!(r.available, 0);
}

#[tokio::test]
async fn the_ledger_streams_as_csv_between_two_days() {
    let app = spawn_app_with(|c| c.daily_points_limit = 1_000_000).await;
    let ann = app.member("ann@example.com").await;
    for day in 0..3 {
        app.clock.set(START + Duration::days(day));
        app.s
            .points
            .earn_points(earn_req(ann, 10, &format!("D{day}"), Some("10")))
            .await
            .unwrap();
    }
    // more lines than one page of the stream
    for i in 0..5100 {
        app.s
            .points
            .earn_points(earn_req(ann, 1, &format!("N{i}"), None))
            .await
            .unwrap();
    }
    staff(&app).await;
    let all = app.get("/admin/ledger.csv").await;
    assert_eq!(all.status(), 200);
    assert!(
        all.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("ledger.csv")
    );
    let all = all.text().await.unwrap();
    assert_eq!(all.lines().count(), 1 + 3 + 5100);
    assert!(all.starts_with("id,created_at,member_code,user_id,type,status,points_change,"));
    // START is 2025-09-18 10:00 in Asia/Shanghai: the second day is 2025-09-19
    let one = app
        .text("/admin/ledger.csv?from=2025-09-19&to=2025-09-19")
        .await;
    let lines: Vec<&str> = one.lines().collect();
    assert_eq!(lines.len(), 2, "{one}");
    assert!(lines[1].contains(",M2025091800001,") && lines[1].contains(",earn,completed,10,"));
    assert!(
        lines[1].contains(",10.00,order_complete,D1,"),
        "{}",
        lines[1]
    );

    let bad = app
        .get("/admin/ledger.csv?from=2025-09-20&to=2025-09-19")
        .await;
    assert_eq!(bad.status(), 422);
    let page = bad.text().await.unwrap();
    assert!(page.contains("id=\"ledger-error\""), "{page}");
    assert!(app.get("/admin/ledger.csv?from=soon").await.status() == 422);
}
