//! Importing members from the staff pages (issue 13 §5): a CSV file uploaded, imported in
//! the background by the code the CLI uses, and followed on the import's page while it
//! runs; bad files refused with their lines, or failed with the reason; an import whose
//! process stopped shown as failed, with nothing imported.

use member_portal::domain::StaffRole;
use member_portal::service::accounts;

use crate::web_harness::*;

async fn staff_app_with(tweak: impl FnOnce(&mut member_portal::config::Config)) -> TestApp {
    let app = spawn_app_with(tweak).await;
    accounts::create_staff(&app.s.ctx, "boss@example.com", PASSWORD, Some("Boss"))
        .await
        .unwrap();
    assert_eq!(
        location(&app.login("boss@example.com", PASSWORD).await),
        "/admin"
    );
    app
}

/// Uploads `csv` as the import form does (htmx, the CSRF token in its header).
async fn upload(app: &TestApp, name: &str, csv: &str, skip: bool) -> reqwest::Response {
    let token = app.csrf().await;
    upload_with(app, &token, name, csv, skip).await
}

/// [`upload`] with a CSRF token already read.
async fn upload_with(
    app: &TestApp,
    token: &str,
    name: &str,
    csv: &str,
    skip: bool,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    if skip {
        form = form.text("skip_bad_rows", "yes");
    }
    let part = reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
        .file_name(name.to_owned())
        .mime_str("text/csv")
        .unwrap();
    form = form.part("file", part);
    app.client
        .post(app.url("/admin/imports"))
        .header("x-csrf-token", token)
        .header("hx-request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// The import the upload's answer sends the browser to.
fn import_path(r: &reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    let to = r
        .headers()
        .get("hx-redirect")
        .expect("the browser is sent to the import's page")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(to.starts_with("/admin/imports/"), "{to}");
    to
}

/// The import's page once it no longer runs (it asks to be polled while it does).
async fn finished(app: &TestApp, path: &str) -> String {
    for _ in 0..300 {
        let html = app.text_in("en", path).await;
        if !html.contains("hx-trigger=\"every 1s\"") {
            return html;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the import at {path} did not finish");
}

async fn users(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from users where role = 'member'")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn staff_upload_a_member_file_and_follow_the_import_while_it_runs() {
    let app = staff_app_with(|_| {}).await;
    let list = app.text_in("en", "/admin/imports").await;
    assert!(list.contains("id=\"import-form\"") && list.contains("id=\"imports-none\""));
    assert!(
        list.contains("<code>email</code>,<wbr><code>display_name</code>")
            && list.contains("<code>total_spent</code></p>")
    );

    // making the members waits behind a lock, so the page is caught while it runs
    let mut blocker = app.s.ctx.pool.begin().await.unwrap();
    sqlx::query("lock table users in share mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let r = upload(
        &app,
        "crm-export.csv",
        "email,display_name,points,total_spent\n\
         wang@example.com,Wang Fang,500,1200\n\
         \"li@example.com\",\"Li, Lei\",0,99.50\n\
         zhao@example.com,Zhao,30,\n",
        false,
    )
    .await;
    let path = import_path(&r);
    let mut running = String::new();
    for _ in 0..300 {
        running = app.text_in("en", &path).await;
        if running.contains("Creating the members") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        running.contains("Creating the members") && running.contains("hx-trigger=\"every 1s\""),
        "the page polls while the members are made: {running}"
    );
    assert!(running.contains("id=\"import-progress\""));
    assert!(
        running.contains("id=\"import-rows\">3<"),
        "rows read so far"
    );
    assert_eq!(users(&app).await, 0, "nothing is visible before it commits");
    blocker.rollback().await.unwrap();

    let done = finished(&app, &path).await;
    assert!(
        done.contains("Done: 3 members imported (3 rows read, 0 bad)."),
        "{done}"
    );
    assert!(done.contains("id=\"import-file-name\">crm-export.csv<"));
    assert!(done.contains("boss@example.com"), "who started it");
    assert!(!done.contains("id=\"import-progress\""));
    assert_eq!(users(&app).await, 3);
    let (points, spent): (i64, String) = sqlx::query_as(
        "select p.available_points, p.total_spent::text from member_profiles p
           join users u on u.id = p.user_id where u.email = 'wang@example.com'",
    )
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!((points, spent.as_str()), (500, "1200.00"));
    app.assert_ledger_clean_via(&app.s.ctx.pool).await;

    // listed, and in the audit log as the staff member's
    let list = app.text_in("en", "/admin/imports").await;
    assert!(list.contains(&format!("href=\"{path}\"")) && list.contains("crm-export.csv"));
    let (action, actor): (String, String) = sqlx::query_as(
        "select a.action, u.email from audit_log a join users u on u.id = a.actor_user_id
          where a.action = 'members.import'",
    )
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!(
        (action.as_str(), actor.as_str()),
        ("members.import", "boss@example.com")
    );
    let audit = app.text_in("en", "/admin/audit").await;
    assert!(audit.contains("Members imported") && audit.contains(&format!("href=\"{path}\"")));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("member_system_member_imports_total{result=\"done\"}")
            && metrics.contains("member_system_members_imported_total"),
        "{metrics}"
    );
    // the staging rows are gone
    let staged: i64 = sqlx::query_scalar("select count(*) from member_import_rows")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(staged, 0);
}

#[tokio::test]
async fn a_bad_file_is_refused_with_its_lines_or_fails_saying_why() {
    let app = staff_app_with(|_| {}).await;
    let csv = "email,display_name\n\
               ann@example.com,Ann\n\
               not-an-email,Nobody\n\
               bob@example.com,Bob\n";
    // all or nothing: one bad line, nobody imported, the line named
    let refused = finished(&app, &import_path(&upload(&app, "a.csv", csv, false).await)).await;
    assert!(
        refused.contains("Nobody was imported: 1 bad rows."),
        "{refused}"
    );
    assert!(refused.contains("id=\"import-errors\""));
    assert!(refused.contains("<td class=\"num\">3</td><td class=\"reason\">email"));
    assert_eq!(users(&app).await, 0);

    // the same file with bad rows skipped
    let skipped = finished(&app, &import_path(&upload(&app, "a.csv", csv, true).await)).await;
    assert!(
        skipped.contains("Done: 2 members imported (3 rows read, 1 bad)."),
        "{skipped}"
    );
    assert!(skipped.contains("Skip bad rows"));
    assert_eq!(users(&app).await, 2);

    // a header the importer does not know: failed, with the reason
    let failed = finished(
        &app,
        &import_path(&upload(&app, "b.csv", "mail,name\nx@example.com,X\n", false).await),
    )
    .await;
    assert!(failed.contains("The import failed"), "{failed}");
    assert!(
        failed.contains("id=\"import-failure\"") && failed.contains("is not one of"),
        "{failed}"
    );
    assert_eq!(users(&app).await, 2);

    // no file at all: the form again, saying so, as a 422 (the layout tells htmx to swap
    // error answers)
    let r = upload(&app, "empty.csv", "", false).await;
    assert_eq!(r.status(), 422);
    assert!(r.headers().get("hx-redirect").is_none());
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"import-error\""), "{html}");
    // a form that is not a file upload: the page, saying the upload did not arrive
    let r = app
        .post("/admin/imports", &[("file", "email,display_name")])
        .await;
    assert_eq!(r.status(), 400);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"import-error\"") && html.contains("上传未完成"),
        "{html}"
    );
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_before_anything_is_imported() {
    let app = staff_app_with(|c| c.import_max_bytes = 1024 * 1024).await;
    let mut csv = String::from("email,display_name\n");
    for i in 0..40_000 {
        csv.push_str(&format!("m{i}@example.com,Member {i}\n"));
    }
    assert!(csv.len() > 1024 * 1024);
    let r = upload(&app, "big.csv", &csv, false).await;
    assert_eq!(r.status(), 413);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"import-error\"") && html.contains("1 MB"),
        "{html}"
    );
    let imports: i64 = sqlx::query_scalar("select count(*) from member_imports")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(imports, 0);
    assert_eq!(users(&app).await, 0);
}

#[tokio::test]
async fn only_staff_who_may_change_members_upload_and_only_with_the_csrf_token() {
    let app = staff_app_with(|_| {}).await;
    // no token: refused before the body is read
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"email,display_name\nx@example.com,X\n".to_vec())
            .file_name("x.csv"),
    );
    let r = app
        .client
        .post(app.url("/admin/imports"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // a viewer reads the list but has no form, and an upload is refused
    accounts::create_staff_as(
        &app.s.ctx,
        "viewer@example.com",
        PASSWORD,
        None,
        StaffRole::Viewer,
    )
    .await
    .unwrap();
    let viewer = app.another_browser();
    viewer.login("viewer@example.com", PASSWORD).await;
    let list = viewer.text("/admin/imports").await;
    assert!(list.contains("id=\"imports") && !list.contains("id=\"import-form\""));
    let r = upload(
        &viewer,
        "x.csv",
        "email,display_name\nx@example.com,X\n",
        false,
    )
    .await;
    assert_eq!(r.status(), 403);

    // a member gets 403 too
    app.member("ann@example.com").await;
    let member = app.another_browser();
    member.login("ann@example.com", PASSWORD).await;
    assert_eq!(member.get("/admin/imports").await.status(), 403);
    let imports: i64 = sqlx::query_scalar("select count(*) from member_imports")
        .fetch_one(&app.s.ctx.pool)
        .await
        .unwrap();
    assert_eq!(imports, 0);
}

#[tokio::test]
async fn an_import_whose_process_stopped_is_shown_failed_with_nothing_imported() {
    let app = staff_app_with(|_| {}).await;
    // as a process that stopped mid-way leaves it: running, rows staged, no lock held
    let id: i64 = sqlx::query_scalar(
        "insert into member_imports (file_name, mode, created_at, status, rows_read)
         values ('gone.csv', 'all_or_nothing', now(), 'making', 2) returning id",
    )
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into member_import_rows (import_id, line, email, display_name, points, total_spent)
         values ($1, 2, 'a@example.com', 'A', 0, 0), ($1, 3, 'b@example.com', 'B', 0, 0)",
    )
    .bind(id)
    .execute(&app.s.ctx.pool)
    .await
    .unwrap();
    let list = app.text_in("en", "/admin/imports").await;
    assert!(list.contains("<td>Failed</td>"), "{list}");
    let html = app.text_in("en", &format!("/admin/imports/{id}")).await;
    assert!(html.contains("The import failed"), "{html}");
    assert!(html.contains("the portal stopped while the import ran"));
    assert!(!html.contains("hx-trigger"), "no longer polled");
    let (status, staged): (String, i64) = sqlx::query_as(
        "select status, (select count(*) from member_import_rows where import_id = $1)
           from member_imports where id = $1",
    )
    .bind(id)
    .fetch_one(&app.s.ctx.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), staged), ("failed", 0));
    assert_eq!(
        app.get("/admin/imports/999999").await.status(),
        404,
        "an import that does not exist"
    );
}

#[tokio::test]
async fn an_import_that_fails_while_the_pool_is_busy_still_says_why() {
    // every pooled connection but one is busy: the import takes that one, and its failure
    // is written on it rather than on a second one it would wait for in vain (the page
    // would then find the import unlocked and unmarked, and call it interrupted)
    let app = staff_app_with(|_| {}).await;
    let token = app.csrf().await;
    let pool = &app.s.ctx.pool;
    let mut held = Vec::new();
    // (the background jobs' start-up may hold some for a while: wait them out)
    let mut tries = 0;
    while held.len() + 1 < pool.options().get_max_connections() as usize {
        match pool.acquire().await {
            Ok(c) => held.push(c),
            Err(e) => {
                tries += 1;
                assert!(tries < 10, "the pool gave no connection: {e}");
            }
        }
    }
    let r = upload_with(&app, &token, "b.csv", "mail,name\nx@example.com,X\n", false).await;
    let path = import_path(&r);
    // the failure is written before the import lets its connection go
    let mut status = String::new();
    for _ in 0..200 {
        status = sqlx::query_scalar::<_, String>(
            "select status || ': ' || coalesce(failure, '') from member_imports",
        )
        .fetch_one(&mut *held[0])
        .await
        .unwrap();
        if !status.starts_with("reading") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        status.starts_with("failed: file: the first line"),
        "{status}"
    );
    drop(held);
    let failed = finished(&app, &path).await;
    assert!(
        failed.contains("id=\"import-failure\"") && failed.contains("is not one of"),
        "{failed}"
    );
}
