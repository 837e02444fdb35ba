//! Earning campaigns (issue 13 §2): bonus lines on earns inside a campaign's window, the
//! caps, reversal with the order, sign-up and birthday bonuses, and the program rate.

use member_portal::clock::Clock;
use member_portal::domain::Reference;
use member_portal::domain::campaigns::{CampaignFields, CampaignInput};
use member_portal::service::points::ReverseRequest;
use time::{Duration, OffsetDateTime};

use crate::harness::*;

fn campaign(
    kind: &str,
    multiplier: &str,
    bonus: &str,
    from: OffsetDateTime,
    days: i64,
) -> CampaignInput {
    CampaignInput::parse(&CampaignFields {
        name: match kind {
            "multiplier" => "双倍积分周",
            "bonus" => "满额奖励",
            "signup" => "注册礼",
            _ => "生日礼",
        },
        kind,
        multiplier,
        bonus_points: bonus,
        starts_at: Some(from),
        ends_at: Some(from + Duration::days(days)),
        ..Default::default()
    })
    .unwrap()
}

async fn lines(h: &Harness, user: i64) -> Vec<(String, i64, Option<String>)> {
    sqlx::query_as(
        "select transaction_type, points_change, reference_type from point_transactions
          where user_id = $1 order by id",
    )
    .bind(user)
    .fetch_all(&h.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn double_points_week_pays_a_bonus_line_of_its_own_and_a_replay_pays_nothing_more() {
    let h = Harness::new().await;
    let now = h.clock.now();
    h.s.campaigns
        .create(
            None,
            campaign("multiplier", "2", "", now - Duration::days(1), 7),
        )
        .await
        .unwrap();
    let user = h.member().await;
    let o = h.earn(user, 300, "O1").await.unwrap();
    assert_eq!(o.transaction.points_change, 300);
    assert_eq!(o.bonuses.len(), 1);
    let bonus = &o.bonuses[0];
    assert_eq!((bonus.points_change, bonus.balance_after), (300, 600));
    assert_eq!(bonus.reference_type.as_deref(), Some("campaign"));
    assert_eq!(bonus.description, "双倍积分周");
    assert_eq!(h.available(user).await, 600);
    let again = h.earn(user, 300, "O1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        again.bonuses.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![bonus.id]
    );
    assert_eq!(h.available(user).await, 600);
    // each line has its own batch, expiring with the order's
    assert_eq!(
        h.count(&format!(
            "select count(distinct expires_at) from point_batches where user_id = {user}"
        ))
        .await,
        1
    );
    assert_eq!(
        h.count(&format!(
            "select count(*) from point_batches where user_id = {user}"
        ))
        .await,
        2
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn campaigns_pay_only_inside_their_window_and_for_their_source_category_and_amount() {
    let h = Harness::new().await;
    let now = h.clock.now();
    // starts tomorrow, for one week
    h.s.campaigns
        .create(
            None,
            campaign("multiplier", "2", "", now + Duration::days(1), 7),
        )
        .await
        .unwrap();
    let mut shoes = campaign("bonus", "", "50", now - Duration::days(1), 30);
    shoes.category = Some("shoes".into());
    shoes.min_amount = Some(dec("100"));
    h.s.campaigns.create(None, shoes).await.unwrap();
    let user = h.member().await;
    let earn = |id: &str, category: Option<&str>, amount: Option<&str>| {
        let mut r = earn_req(user, 100, id, amount);
        r.category = category.map(|c| Reference::parse("category", c).unwrap());
        h.s.points.earn_points(r)
    };
    assert!(
        earn("A", None, None).await.unwrap().bonuses.is_empty(),
        "not started, no category"
    );
    assert!(
        earn("B", Some("hats"), Some("200"))
            .await
            .unwrap()
            .bonuses
            .is_empty()
    );
    assert!(
        earn("C", Some("shoes"), Some("99.99"))
            .await
            .unwrap()
            .bonuses
            .is_empty()
    );
    assert_eq!(
        earn("D", Some("shoes"), Some("100")).await.unwrap().bonuses[0].points_change,
        50
    );
    h.clock.advance(Duration::days(1));
    let both = earn("E", Some("shoes"), Some("150")).await.unwrap();
    let mut paid: Vec<i64> = both.bonuses.iter().map(|b| b.points_change).collect();
    paid.sort();
    assert_eq!(
        paid,
        vec![50, 100],
        "the bonus and double points, each a line"
    );
    h.clock.advance(Duration::days(7));
    assert_eq!(
        earn("F", None, None).await.unwrap().bonuses.len(),
        0,
        "ended"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_bonus_is_trimmed_to_the_daily_limit_and_never_refuses_the_order() {
    let h = Harness::new().await;
    let now = h.clock.now();
    h.s.campaigns
        .create(
            None,
            campaign("multiplier", "3", "", now - Duration::days(1), 7),
        )
        .await
        .unwrap();
    let user = h.member().await;
    // 3000 of the 5000 a day; ×3 would add 6000: 2000 is left today
    let o = h.earn(user, 3000, "BIG").await.unwrap();
    assert_eq!(
        o.bonuses
            .iter()
            .map(|b| b.points_change)
            .collect::<Vec<_>>(),
        vec![2000]
    );
    assert_eq!(h.available(user).await, 5000);
    // the day is full: the next order earns as the limit says, bonus or not
    match h.earn(user, 1, "MORE").await {
        Err(member_portal::error::Error::DailyPointsLimitExceeded { .. }) => {}
        x => panic!("{x:?}"),
    }
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn returning_the_order_takes_back_its_bonus_too_in_proportion() {
    let h = Harness::new().await;
    let now = h.clock.now();
    h.s.campaigns
        .create(
            None,
            campaign("multiplier", "2", "", now - Duration::days(1), 7),
        )
        .await
        .unwrap();
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 400, "O1", Some("400")))
        .await
        .unwrap();
    assert_eq!(h.available(user).await, 800);
    let reverse = |refund: Option<&str>, amount: Option<&str>| {
        h.s.points.reverse_points(ReverseRequest {
            user_id: user,
            source_type: Reference::parse("source_type", "order_complete").unwrap(),
            source_id: Reference::parse("source_id", "O1").unwrap(),
            refund_id: refund.map(|r| Reference::parse("refund_id", r).unwrap()),
            amount: amount.map(|a| member_portal::domain::Money::parse("amount", dec(a)).unwrap()),
        })
    };
    // a quarter returned: a quarter of 800
    let part = reverse(Some("R1"), Some("100")).await.unwrap();
    assert_eq!(part.transaction.points_change, -200);
    let rest = reverse(None, None).await.unwrap();
    assert_eq!(rest.transaction.points_change, -600);
    assert_eq!(h.available(user).await, 0);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_new_member_gets_the_sign_up_bonus_in_the_same_transaction_as_the_account() {
    let h = Harness::new().await;
    let now = h.clock.now();
    let before = h.member().await;
    h.s.campaigns
        .create(
            None,
            campaign("signup", "", "200", now - Duration::days(1), 30),
        )
        .await
        .unwrap();
    let user = h.member().await;
    assert_eq!(h.available(user).await, 200);
    assert_eq!(
        lines(&h, user).await,
        vec![("earn".into(), 200, Some("campaign".into()))]
    );
    assert_eq!(
        h.available(before).await,
        0,
        "only members who sign up while it runs"
    );
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_birthday_bonus_is_paid_once_a_year_on_the_day_and_on_28_february_for_29() {
    let h = Harness::new().await;
    let now = h.clock.now(); // 2025-09-18 10:00 in Shanghai
    h.s.campaigns
        .create(
            None,
            campaign("birthday", "", "88", now - Duration::days(1), 800),
        )
        .await
        .unwrap();
    let today = h.member().await;
    let tomorrow = h.member().await;
    let leap = h.member().await;
    h.s.members.set_birthday(today, "1990-09-18").await.unwrap();
    h.s.members
        .set_birthday(tomorrow, "1990-09-19")
        .await
        .unwrap();
    h.s.members.set_birthday(leap, "2000-02-29").await.unwrap();
    match h.s.members.set_birthday(today, "1991-01-01").await {
        Err(member_portal::error::Error::Validation {
            field: "birthday", ..
        }) => {}
        x => panic!("entered once: {x:?}"),
    }
    for bad in ["2030-01-01", "1850-01-01", "18/09/1990", ""] {
        assert!(h.s.members.set_birthday(leap, bad).await.is_err(), "{bad}");
    }
    assert_eq!(h.s.campaigns.pay_birthdays().await.unwrap(), 1);
    assert_eq!(
        h.s.campaigns.pay_birthdays().await.unwrap(),
        0,
        "once a year"
    );
    assert_eq!(h.available(today).await, 88);
    assert_eq!(h.available(tomorrow).await, 0);
    h.clock.advance(Duration::days(1));
    assert_eq!(h.s.campaigns.pay_birthdays().await.unwrap(), 1);
    assert_eq!(h.available(tomorrow).await, 88);
    // 2026-02-28: not a leap year, so the 29 February birthday is today
    h.clock.set(time::macros::datetime!(2026-02-28 02:00 UTC));
    assert_eq!(h.s.campaigns.pay_birthdays().await.unwrap(), 1);
    assert_eq!(h.available(leap).await, 88);
    // next year on the day: again
    h.clock.set(time::macros::datetime!(2026-09-18 02:00 UTC));
    assert_eq!(h.s.campaigns.pay_birthdays().await.unwrap(), 1);
    h.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_ended_campaign_pays_nothing_more_and_what_it_paid_stays() {
    let h = Harness::new().await;
    let now = h.clock.now();
    let id =
        h.s.campaigns
            .create(
                None,
                campaign("bonus", "", "30", now - Duration::days(1), 7),
            )
            .await
            .unwrap();
    let user = h.member().await;
    assert_eq!(h.earn(user, 10, "O1").await.unwrap().bonuses.len(), 1);
    h.s.campaigns.end(None, id).await.unwrap();
    assert!(h.earn(user, 10, "O2").await.unwrap().bonuses.is_empty());
    assert_eq!(h.available(user).await, 50);
    assert!(h.s.campaigns.end(None, id).await.is_err(), "it has ended");
    assert_eq!(
        h.count("select count(*) from audit_log where action like 'campaign.%'")
            .await,
        2
    );
    // verify-ledger sees a bonus that the earn does not account for
    sqlx::query("update point_transactions set bonus_points = 0 where parent_id is null and transaction_type = 'earn'")
        .execute(&h.pool)
        .await
        .unwrap();
    let v = member_portal::service::ledger::verify_ledger(&h.pool, None)
        .await
        .unwrap();
    assert!(
        v.iter().any(|v| v.invariant.contains("bonus_points")),
        "{v:#?}"
    );
}
