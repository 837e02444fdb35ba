//! Rewards and coupons in the portal over HTTP (no JavaScript): a member redeems after a
//! confirmation, sees the coupon with its QR code and cancels it; staff keep the catalogue
//! with inline errors, find a coupon by its code and cancel it with a reason.

use member_portal::service::accounts;

use crate::harness::earn_req;
use crate::rewards::reward_input;
use crate::web_harness::*;

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("no {start}"));
    let rest = &html[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[tokio::test]
async fn a_member_redeems_after_confirming_sees_the_qr_code_and_cancels_for_the_points() {
    let app = spawn_app().await;
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 500, "O1", None))
        .await
        .unwrap();
    let reward = app
        .s
        .rewards
        .create(None, reward_input("满100减10", "300", "2"))
        .await
        .unwrap();
    let big = app
        .s
        .rewards
        .create(None, reward_input("Big", "800", ""))
        .await
        .unwrap();
    app.login("ann@example.com", PASSWORD).await;

    let html = app.text("/rewards").await;
    let card = between(&html, &format!("id=\"reward-{}\"", reward.id), "</li>");
    assert!(
        card.contains("立减 ¥10.00") && card.contains("300"),
        "{card}"
    );
    assert!(card.contains(&format!("href=\"/rewards/{}/redeem\"", reward.id)));
    let short = between(&html, &format!("id=\"reward-{}\"", big.id), "</li>");
    assert!(
        short.contains("还差积分") && short.contains("300"),
        "{short}"
    );
    assert!(
        !short.contains("/redeem\""),
        "no redeem link when the points do not cover it"
    );

    let confirm = app.text(&format!("/rewards/{}/redeem", reward.id)).await;
    assert!(confirm.contains("id=\"balance-after\">200<"), "{confirm}");
    let redemption = between(&confirm, "name=\"redemption_id\" value=\"", "\"").to_owned();
    assert!(redemption.starts_with("web-"));
    let path = format!("/rewards/{}/redeem", reward.id);
    let r = app.post(&path, &[("redemption_id", &redemption)]).await;
    assert_eq!(r.status(), 303);
    let coupon_page = location(&r);
    assert!(coupon_page.ends_with("?done=redeemed"), "{coupon_page}");
    // the same form sent twice (a double click) redeems once
    let again = app.post(&path, &[("redemption_id", &redemption)]).await;
    assert_eq!(location(&again), coupon_page);
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 200);

    let html = app.text(&coupon_page).await;
    assert!(html.contains("兑换成功"));
    assert!(
        html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "a QR code"
    );
    let code = between(&html, "id=\"coupon-code\"><code>", "<").to_owned();
    assert_eq!(code.len(), 19, "{code}");
    assert!(html.contains("可使用"));
    let list = app.text("/coupons").await;
    assert!(list.contains("满100减10") && list.contains("有效期至"));

    // another member sees none of it
    let other = app.another_browser();
    other.member("bob@example.com").await;
    other.login("bob@example.com", PASSWORD).await;
    let id = coupon_page
        .trim_start_matches("/coupons/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(other.get(&format!("/coupons/{id}")).await.status(), 404);
    assert_eq!(
        other
            .post(&format!("/coupons/{id}/cancel"), &[("confirm", "yes")])
            .await
            .status(),
        404
    );
    assert!(!other.text("/coupons").await.contains("满100减10"));

    // cancel asks first, then gives the points back
    let ask = app.post(&format!("/coupons/{id}/cancel"), &[]).await;
    assert_eq!(ask.status(), 200);
    assert!(ask.text().await.unwrap().contains("id=\"confirm-yes\""));
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 200);
    let done = app
        .post(&format!("/coupons/{id}/cancel"), &[("confirm", "yes")])
        .await;
    assert_eq!(location(&done), format!("/coupons/{id}?done=cancelled"));
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 500);
    let html = app.text(&format!("/coupons/{id}")).await;
    assert!(
        html.contains("已取消") && !html.contains("<svg xmlns"),
        "no QR code for a dead coupon"
    );

    // a redemption the points do not cover: the catalogue again, with why
    let r = app
        .post(
            &format!("/rewards/{}/redeem", big.id),
            &[("redemption_id", "web-x")],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"rewards-error\""));
    // the history says what the points went on
    let history = app.text("/points").await;
    assert!(
        history.contains("兑换 满100减10") && history.contains("兑换已取消"),
        "{history}"
    );
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}

#[tokio::test]
async fn staff_keep_the_catalogue_with_inline_errors_and_cancel_a_coupon_with_a_reason() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    app.login("boss@example.com", PASSWORD).await;
    let mut form = vec![
        ("name", "8.5折券"),
        ("description", "全场通用"),
        ("kind", "percent"),
        ("value", "150"),
        ("points_cost", "200"),
        ("stock", "10"),
        ("per_member_limit", "1"),
        ("min_level_id", ""),
        ("starts_on", "2025-09-18"),
        ("ends_on", "2025-12-31"),
        ("coupon_valid_days", "30"),
        ("is_active", "on"),
    ];
    let r = app.post("/admin/rewards", &form).await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"value-error\""), "{html}");
    assert!(
        html.contains("折扣券填大于 0 小于 100 的百分比"),
        "the message is Chinese"
    );
    assert!(html.contains("value=\"8.5折券\""), "what was typed is kept");
    form[3] = ("value", "15");
    let r = app.post("/admin/rewards", &form).await;
    assert_eq!(location(&r), "/admin/rewards?done=created");
    let html = app.text("/admin/rewards").await;
    assert!(
        html.contains("8.5折券") && html.contains("8.5折") && html.contains("2025-12-31"),
        "{html}"
    );
    let reward = app.s.rewards.all().await.unwrap().remove(0);
    // the last day is included: the window ends at the next midnight in Shanghai
    assert_eq!(
        reward.ends_at,
        Some(time::macros::datetime!(2026-01-01 00:00 +8))
    );
    // edit: the form shows what is stored, the end day included
    let edit = app.text(&format!("/admin/rewards/{}", reward.id)).await;
    assert!(
        edit.contains("value=\"2025-12-31\"") && edit.contains("value=\"15\""),
        "{edit}"
    );
    form[4] = ("points_cost", "250");
    form[9] = ("ends_on", "2025-09-01");
    let r = app
        .post(&format!("/admin/rewards/{}", reward.id), &form)
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"ends_on-error\""));
    form[9] = ("ends_on", "2025-12-31");
    let r = app
        .post(&format!("/admin/rewards/{}", reward.id), &form)
        .await;
    assert_eq!(location(&r), "/admin/rewards?done=saved");
    assert_eq!(app.s.rewards.get(reward.id).await.unwrap().points_cost, 250);

    // a member redeems; staff find the coupon by its code as typed and cancel it
    let ann = app.member("ann@example.com").await;
    app.s
        .points
        .earn_points(earn_req(ann, 400, "O1", None))
        .await
        .unwrap();
    let coupon = app
        .s
        .rewards
        .redeem(member_portal::service::rewards::RedeemRequest {
            user_id: ann,
            reward_id: reward.id,
            redemption_id: member_portal::domain::Reference::parse("r", "APP-1").unwrap(),
        })
        .await
        .unwrap()
        .coupon;
    let member_page = app.text(&format!("/admin/members/{ann}")).await;
    assert!(member_page.contains(&coupon.display_code()));
    let typed = coupon.display_code().to_lowercase().replace('-', " ");
    let r = app
        .get(&format!("/admin/coupons?code={}", typed.replace(' ', "+")))
        .await;
    assert_eq!(location(&r), format!("/admin/coupons/{}", coupon.id));
    let missing = app.get("/admin/coupons?code=0000-0000-0000-0000").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("没有这个券码"));
    let cancel = format!("/admin/coupons/{}/cancel", coupon.id);
    let r = app.post(&cancel, &[("reason", " ")]).await;
    assert_eq!(r.status(), 422);
    let r = app.post(&cancel, &[("reason", "顾客退券")]).await;
    assert!(r.text().await.unwrap().contains("id=\"confirm-yes\""));
    let r = app
        .post(&cancel, &[("reason", "顾客退券"), ("confirm", "yes")])
        .await;
    assert_eq!(
        location(&r),
        format!("/admin/coupons/{}?done=cancelled", coupon.id)
    );
    assert_eq!(app.s.points.summary(ann).await.unwrap().available, 400);
    let audit = app.text("/admin/audit").await;
    assert!(audit.contains("取消兑换") && audit.contains("新建礼品") && audit.contains("修改礼品"));
    assert!(audit.contains("顾客退券"));
    // members are sent to their own pages, and staff to theirs
    assert_eq!(location(&app.get("/rewards").await), "/admin/rewards");
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;
}
