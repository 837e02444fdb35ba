//! Staff tools (issue 13 §5): members with a phone and the integrator's external id (and
//! the API finding them by it), the member list with filters, search and paging, and its
//! CSV export.

use member_portal::service::accounts;
use member_portal::service::members::NewMember;
use serde_json::{Value, json};

use crate::harness::earn_req;
use crate::web_harness::*;

#[tokio::test]
async fn the_api_keeps_a_phone_and_an_external_id_and_finds_the_member_by_it() {
    let app = spawn_app().await;
    let key = accounts::create_api_key(&app.s.ctx, "shop", None)
        .await
        .unwrap();
    let post = |body: Value| {
        app.client
            .post(app.url("/api/v1/members"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let r = post(json!({"email": "ann@example.com", "display_name": "Ann", "phone": "+86 138-0000-0000", "external_id": "CRM-1"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        (p["phone"].clone(), p["external_id"].clone()),
        (json!("+86 138-0000-0000"), json!("CRM-1"))
    );
    let r =
        post(json!({"email": "bob@example.com", "display_name": "Bob", "external_id": "CRM-1"}))
            .await
            .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "external_id");
    let bob_exists: i64 =
        sqlx::query_scalar("select count(*) from users where email = 'bob@example.com'")
            .fetch_one(&app.s.ctx.pool)
            .await
            .unwrap();
    assert_eq!(bob_exists, 0, "a refused sign-up writes nothing");
    let r = post(json!({"email": "eve@example.com", "display_name": "Eve", "phone": "call me"}))
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "phone");
    let r = app
        .client
        .get(app.url("/api/v1/members/by-external-id/CRM-1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "ann@example.com");
    let r = app
        .client
        .get(app.url("/api/v1/members/by-external-id/CRM-2"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn staff_narrow_the_member_list_page_through_it_and_export_it() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    app.login("boss@example.com", PASSWORD).await;
    // 55 members; some with points, one with a name a spreadsheet would run
    for i in 0..55 {
        let new = NewMember::parse(
            &format!("shopper{i:02}@example.com"),
            &format!("Shopper {i:02}"),
            None,
        )
        .unwrap()
        .with_identity(None, Some(&format!("EXT-{i:02}")))
        .unwrap();
        let m = app.s.members.create_member(new).await.unwrap();
        if i % 10 == 0 {
            app.s
                .points
                .earn_points(earn_req(m.user_id, 100 + i, &format!("O{i}"), Some("1500")))
                .await
                .unwrap();
        }
    }
    let formula = NewMember::parse("calc@example.com", "=HYPERLINK(\"x\")", None).unwrap();
    app.s.members.create_member(formula).await.unwrap();

    let html = app.text("/admin/members").await;
    assert_eq!(html.matches("<tr>").count(), 51, "header + 50 rows");
    let next = html
        .split("id=\"members-next\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .to_owned();
    let next = next.split('"').next().unwrap().replace("&amp;", "&");
    let page2 = app.text(&next).await;
    assert_eq!(page2.matches("<tr>").count(), 7, "header + the last 6");
    assert!(!page2.contains("members-next"));

    // part of an email, part of a name, an external id
    assert_eq!(
        app.text("/admin/members?q=pper07")
            .await
            .matches("<tr>")
            .count(),
        2
    );
    assert_eq!(
        app.text("/admin/members?q=shopper%201")
            .await
            .matches("<tr>")
            .count(),
        11
    );
    assert!(
        app.text("/admin/members?q=EXT-42")
            .await
            .contains("shopper42@example.com")
    );
    // points range and level (spend 1500: 银牌会员)
    let silver = app.s.levels.list().await.unwrap()[1].id;
    let html = app
        .text(&format!("/admin/members?level={silver}&min_points=130"))
        .await;
    assert_eq!(html.matches("<tr>").count(), 4, "130, 140, 150: {html}");
    let html = app
        .text("/admin/members?min_points=100&max_points=120")
        .await;
    assert_eq!(html.matches("<tr>").count(), 4, "100, 110, 120");
    let r = app.get("/admin/members?min_points=-1").await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        app.text("/admin/members?joined_from=2025-09-19")
            .await
            .matches("<tr>")
            .count(),
        0
    );
    assert_eq!(
        app.text("/admin/members?joined_to=2025-09-18&q=shopper")
            .await
            .matches("<tr>")
            .count(),
        51
    );

    let r = app
        .get(&format!("/admin/members/export.csv?level={silver}"))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "user_id,member_code,email,display_name,level,available_points,phone,external_id,joined_at"
    );
    assert_eq!(lines.len(), 7, "header + the 6 silver members: {csv}");
    assert!(lines[1].contains("shopper50@example.com") && lines[1].contains(",150,"));
    let all = app.text("/admin/members/export.csv").await;
    assert_eq!(all.lines().count(), 57, "every member, past one page");
    assert!(
        all.contains("\"'=HYPERLINK(\"\"x\"\")\""),
        "a formula is defused and quoted: {all}"
    );
}

#[tokio::test]
async fn the_member_page_lists_every_batch_paged_with_what_became_of_it() {
    let app = spawn_app_with(|c| c.points_expiry_days = 30).await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    // the oldest batch expires, the next is used up, 23 more stay live
    app.s
        .points
        .earn_points(earn_req(ann, 7, "OLD", None))
        .await
        .unwrap();
    app.clock.advance(time::Duration::days(31));
    app.s.points.expire_points().await.unwrap();
    app.s
        .points
        .earn_points(earn_req(ann, 10, "SPENT", None))
        .await
        .unwrap();
    app.s
        .points
        .use_points(crate::harness::use_req(ann, 10, "U1"))
        .await
        .unwrap();
    for i in 0..23 {
        app.s
            .points
            .earn_points(earn_req(ann, 5, &format!("L{i}"), None))
            .await
            .unwrap();
    }
    assert_eq!(app.login("boss@example.com", PASSWORD).await.status(), 303);
    let page = app.text(&format!("/admin/members/{ann}")).await;
    let table = page.split("id=\"member-batches\"").nth(1).unwrap();
    let table = table.split("</table>").next().unwrap();
    assert_eq!(
        table.matches("<tr>").count(),
        1 + 20,
        "header and a page of 20"
    );
    let older = page
        .split("id=\"batches-older\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&#x3d;", "=")
        .replace("&amp;", "&");
    assert!(older.contains("batches_before="), "{older}");
    let rest = app.text_in("en", &older).await;
    let table = rest.split("id=\"member-batches\"").nth(1).unwrap();
    let table = table.split("</table>").next().unwrap();
    assert_eq!(table.matches("<tr>").count(), 1 + 5);
    assert!(
        table.contains("past its expiry") && table.contains("used up"),
        "{table}"
    );
    assert!(!rest.contains("id=\"batches-older\""));
}

#[tokio::test]
async fn staff_leave_notes_on_a_member_that_the_member_never_sees() {
    let app = spawn_app().await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    let ann = app.member("ann@example.com").await;
    assert_eq!(app.login("boss@example.com", PASSWORD).await.status(), 303);
    let r = app
        .post(
            &format!("/admin/members/{ann}/notes"),
            &[(
                "note",
                "Called about a late parcel; <b>promised</b> a coupon",
            )],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = app.text(&format!("/admin/members/{ann}")).await;
    let notes = page.split("id=\"member-notes\"").nth(1).unwrap();
    assert!(notes.contains("Called about a late parcel; &#60;b&#62;promised&#60;/b&#62; a coupon"));
    assert!(!notes.contains("<b>promised"), "a note is text, not markup");
    assert!(notes.contains("boss@example.com"));
    let r = app
        .post(&format!("/admin/members/{ann}/notes"), &[("note", "   ")])
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("id=\"note-error\""));
    let r = app
        .post("/admin/members/999999/notes", &[("note", "x")])
        .await;
    assert_eq!(r.status(), 404);
    // the member's own pages and data download do not carry it
    let member = app.another_browser();
    assert_eq!(
        member.login("ann@example.com", PASSWORD).await.status(),
        303
    );
    for path in ["/profile", "/account/export"] {
        let body = member.text(path).await;
        assert!(!body.contains("late parcel"), "{path}");
    }
}
