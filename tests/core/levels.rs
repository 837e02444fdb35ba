use member_portal::service::levels::LevelInput;
use time::Duration;

use crate::harness::*;

fn input(name: &str, order: i64, min: i64, active: bool) -> LevelInput {
    LevelInput::parse(
        name,
        order,
        min,
        dec("0.9"),
        dec("1.5"),
        vec!["perk".into()],
        active,
    )
    .unwrap()
}

async fn refused(h: &Harness, level: LevelInput) -> member_portal::error::Error {
    h.s.levels.create(level, None).await.unwrap_err()
}

#[tokio::test]
async fn default_levels_are_created_by_the_first_migration() {
    let h = Harness::new().await;
    let levels = h.s.levels.list().await.unwrap();
    let got: Vec<_> = levels
        .iter()
        .map(|l| {
            (
                l.level_name.as_str(),
                l.min_points,
                l.discount_rate,
                l.point_multiplier,
                l.is_active,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("普通会员", 0, dec("1.000"), dec("1.00"), true),
            ("银牌会员", 1000, dec("0.980"), dec("1.20"), true),
            ("金牌会员", 5000, dec("0.950"), dec("1.50"), true),
            ("钻石会员", 20000, dec("0.900"), dec("2.00"), true),
        ]
    );
    assert!(levels.iter().all(|l| !l.benefits.is_empty()));
}

#[tokio::test]
async fn upgrade_jumps_directly_to_the_highest_qualifying_level() {
    let h = Harness::new().await;
    let user = h.member().await;
    let out =
        h.s.points
            .earn_points(earn_req(user, 100, "BIG", Some("6000")))
            .await
            .unwrap();
    let up = out.upgrade.unwrap();
    assert_eq!(
        (up.old_level.as_str(), up.new_level.as_str()),
        ("普通会员", "金牌会员")
    );
    // history row and notification were written with it
    assert_eq!(
        h.count("select count(*) from level_change_records where change_reason = 'auto_upgrade'")
            .await,
        1
    );
    assert_eq!(
        h.count("select count(*) from notifications where kind = 'level_upgraded'")
            .await,
        1
    );
}

#[tokio::test]
async fn upgrade_within_the_cooldown_is_deferred_then_applied_by_the_job() {
    let h = Harness::new().await; // cooldown 1 day
    let user = h.member().await;
    h.s.points
        .earn_points(earn_req(user, 10, "O1", Some("1000")))
        .await
        .unwrap()
        .upgrade
        .unwrap();
    h.clock.advance(Duration::hours(2));
    let out =
        h.s.points
            .earn_points(earn_req(user, 10, "O2", Some("4000")))
            .await
            .unwrap();
    assert!(out.upgrade.is_none(), "deferred by the cooldown");
    let due =
        h.s.members
            .upgrade_due_at(user)
            .await
            .unwrap()
            .expect("a deferred upgrade");
    assert_eq!(due, START + Duration::days(1));
    assert_eq!(
        h.s.members.apply_due_upgrades().await.unwrap(),
        0,
        "not before the cooldown ends"
    );
    h.clock.set(due);
    assert_eq!(h.s.members.apply_due_upgrades().await.unwrap(), 1);
    let p = h.s.members.get_member_profile(user).await.unwrap();
    assert_eq!(p.level.level_name, "金牌会员");
    assert_eq!(h.s.members.upgrade_due_at(user).await.unwrap(), None);
    assert_eq!(
        h.count("select count(*) from level_change_records").await,
        2
    );
}

#[tokio::test]
async fn auto_upgrade_disabled_leaves_the_level_alone() {
    let h = Harness::with(Backend::Local, |c| c.auto_upgrade = false).await;
    let user = h.member().await;
    let out =
        h.s.points
            .earn_points(earn_req(user, 10, "O1", Some("30000")))
            .await
            .unwrap();
    assert!(out.upgrade.is_none());
    assert!(
        h.s.members
            .check_level_upgrade(user)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        h.s.members
            .get_member_profile(user)
            .await
            .unwrap()
            .level
            .level_name,
        "普通会员"
    );
}

#[tokio::test]
async fn manual_level_change_needs_a_note_and_is_recorded_and_audited() {
    let h = Harness::new().await;
    let user = h.member().await;
    let gold = h.s.levels.list().await.unwrap()[2].id;
    assert_eq!(
        h.s.members
            .set_level(user, gold, " ", None)
            .await
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
    h.s.members
        .set_level(user, gold, "VIP customer", None)
        .await
        .unwrap();
    assert_eq!(
        h.s.members
            .get_member_profile(user)
            .await
            .unwrap()
            .level
            .level_name,
        "金牌会员"
    );
    let (reason, note): (String, Option<String>) =
        sqlx::query_as("select change_reason, note from level_change_records where user_id = $1")
            .bind(user)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        (reason.as_str(), note.as_deref()),
        ("manual", Some("VIP customer"))
    );
    assert_eq!(
        h.count("select count(*) from audit_log where action = 'member.set_level'")
            .await,
        1
    );
    assert_eq!(
        h.s.members
            .set_level(user, gold, "again", None)
            .await
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR"
    );
}

#[tokio::test]
async fn upgrade_progress_shows_next_level_threshold_remaining_and_percent() {
    let h = Harness::new().await;
    let user = h.member_with_spent("250").await;
    let p = h.s.members.upgrade_progress(user).await.unwrap();
    assert_eq!(p.next_level.as_deref(), Some("银牌会员"));
    assert_eq!(p.required, Some(1000));
    assert_eq!(p.current, dec("250.00"));
    assert_eq!(p.remaining, dec("750.00"));
    assert_eq!(p.percent, 25);
}

#[tokio::test]
async fn level_configuration_keeps_the_ladder_valid() {
    let h = Harness::new().await;
    // a valid level above diamond (orders 1–4)
    let created =
        h.s.levels
            .create(input("Platinum", 5, 50000, true), None)
            .await
            .unwrap();
    assert!(
        h.s.levels
            .list()
            .await
            .unwrap()
            .iter()
            .any(|l| l.id == created.id),
        "cache dropped after change"
    );
    // thresholds must rise with order
    let e = refused(&h, input("Odd", 6, 40000, true)).await;
    assert_eq!(
        (e.code(), e.body()["field"].as_str()),
        ("VALIDATION_ERROR", Some("min_points"))
    );
    // a second entry level
    assert_eq!(
        refused(&h, input("Zero", 0, 0, true)).await.code(),
        "VALIDATION_ERROR"
    );
    // duplicate name and order name their field
    let e = refused(&h, input("银牌会员", 7, 60000, true)).await;
    assert_eq!(e.body()["field"], "level_name");
    let e = refused(&h, input("Other", 5, 60000, true)).await;
    assert_eq!(e.body()["field"], "level_order");
    // an inactive level may sit anywhere
    h.s.levels
        .create(input("Dormant", 6, 1, false), None)
        .await
        .unwrap();
    assert_eq!(h.count("select count(*) from member_levels").await, 6);
}

#[tokio::test]
async fn a_level_with_members_or_the_entry_level_cannot_be_deactivated() {
    let h = Harness::new().await;
    let user = h.member().await;
    let levels = h.s.levels.list().await.unwrap();
    let (entry, silver, gold) = (levels[0].id, levels[1].id, levels[2].id);
    h.s.members
        .set_level(user, silver, "test", None)
        .await
        .unwrap();
    h.member().await; // stays on the entry level
    let e =
        h.s.levels
            .set_active(silver, false, None)
            .await
            .unwrap_err();
    assert_eq!(e.code(), "LEVEL_IN_USE");
    assert_eq!(e.body()["members"], 1);
    assert_eq!(
        h.s.levels
            .set_active(entry, false, None)
            .await
            .unwrap_err()
            .code(),
        "LEVEL_IN_USE"
    );
    let empty_entry = Harness::new().await;
    let entry2 = empty_entry.s.levels.list().await.unwrap()[0].id;
    assert_eq!(
        empty_entry
            .s
            .levels
            .set_active(entry2, false, None)
            .await
            .unwrap_err()
            .code(),
        "VALIDATION_ERROR",
        "the entry level stays"
    );
    let deactivated = h.s.levels.set_active(gold, false, None).await.unwrap();
    assert!(!deactivated.is_active);
    // an upgrade skips an inactive level
    let out =
        h.s.points
            .earn_points(earn_req(h.member().await, 10, "O", Some("6000")))
            .await
            .unwrap();
    assert_eq!(out.upgrade.unwrap().new_level, "银牌会员");
    assert_eq!(
        h.s.levels.get(9999).await.unwrap_err().code(),
        "LEVEL_NOT_FOUND"
    );
}
