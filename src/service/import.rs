//! Importing members from CSV (issue 13 §5; `member-portal import-members`): the file is
//! read a line at a time, each row checked here and the good ones streamed into PostgreSQL
//! by COPY; the database's own checks (emails, external ids and codes taken) follow, then
//! one transaction makes the members with their opening balances and spend (migration
//! 0022). All or nothing by default: any bad row and nothing is imported; or the bad rows
//! are skipped. Either way the report names each bad line and why.

use rust_decimal::Decimal;
use time::Duration;
use tokio::io::AsyncBufReadExt;

use super::Ctx;
use crate::domain::{Email, Reference, parse_display_name, parse_phone};
use crate::error::{Error, Result};

/// The columns a file may have (a header row names them, in any order).
pub const COLUMNS: [&str; 7] = [
    "email",
    "display_name",
    "phone",
    "external_id",
    "member_code",
    "points",
    "total_spent",
];

/// Bad lines the report lists (every one is counted).
const REPORTED: usize = 1000;

/// Bytes of COPY data sent at a time.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub import_id: i64,
    /// data rows read (the header not counted)
    pub rows_read: u64,
    pub rows_bad: u64,
    pub imported: u64,
    /// all or nothing, and a row was bad: nothing was imported
    pub refused: bool,
    /// (line of the file, what is wrong), the first [`REPORTED`] in line order
    pub errors: Vec<(u64, String)>,
}

/// Splits one CSV record (RFC 4180: fields in double quotes may hold commas, doubled
/// quotes and line breaks). None while a quoted field is still open at the end.
pub fn split_record(text: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
        } else {
            match c {
                '"' if at_start => {
                    quoted = true;
                    at_start = false;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    at_start = true;
                }
                '\r' | '\n' if chars.peek().is_none() || c == '\r' => {}
                _ => {
                    field.push(c);
                    at_start = false;
                }
            }
        }
    }
    if quoted {
        return None;
    }
    fields.push(field);
    Some(fields)
}

/// A value as COPY's CSV format reads it: quoted (so an empty text stays empty), or
/// nothing at all for NULL.
fn copy_field(out: &mut String, value: Option<&str>) {
    if let Some(v) = value {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

/// One data row checked: the columns as the staging table takes them.
struct Row {
    email: String,
    display_name: String,
    phone: Option<String>,
    external_id: Option<String>,
    member_code: Option<String>,
    points: i64,
    total_spent: Decimal,
}

fn check_row(cells: &[String], at: &[Option<usize>; 7], max_points: i64) -> Result<Row> {
    let cell = |i: usize| -> &str { at[i].and_then(|c| cells.get(c)).map_or("", |s| s.trim()) };
    let optional = |i: usize| Some(cell(i)).filter(|s| !s.is_empty());
    let email = Email::parse(cell(0))?;
    let display_name = parse_display_name(cell(1))?;
    let phone = optional(2).map(parse_phone).transpose()?;
    let external_id = optional(3)
        .map(|e| Reference::parse("external_id", e).map(|r| r.as_str().to_owned()))
        .transpose()?;
    let member_code = match optional(4) {
        Some(c)
            if c.len() <= 32
                && c.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '-') =>
        {
            Some(c.to_owned())
        }
        Some(_) => {
            return Err(Error::validation(
                "member_code",
                "up to 32 capital letters, digits and dashes, or empty for a new code",
            ));
        }
        None => None,
    };
    let points = match optional(5) {
        None => 0,
        Some(p) => p
            .parse::<i64>()
            .ok()
            .filter(|n| (0..=max_points).contains(n))
            .ok_or_else(|| {
                Error::validation("points", format!("a whole number from 0 to {max_points}"))
            })?,
    };
    let total_spent = match optional(6) {
        None => Decimal::ZERO,
        Some(s) => s
            .parse::<Decimal>()
            .ok()
            .filter(|d| {
                *d >= Decimal::ZERO && d.scale() <= 2 && *d < Decimal::from(10_000_000_000i64)
            })
            .ok_or_else(|| {
                Error::validation("total_spent", "an amount such as 1200 or 99.50, 0 or more")
            })?,
    };
    Ok(Row {
        email: email.as_str().to_owned(),
        display_name,
        phone,
        external_id,
        member_code,
        points,
        total_spent,
    })
}

fn reason(e: &Error) -> String {
    match e {
        Error::Validation { field, message, .. } => format!("{field}: {message}"),
        other => other.to_string(),
    }
}

/// Where an import's file is, the name it is shown by and who started it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a std::path::Path,
    /// an upload's own name, or the path the CLI was given
    pub file_name: &'a str,
    pub actor: Option<i64>,
}

/// While an import runs, its connection holds this advisory lock plus the import's id:
/// an import shown as running whose lock nobody holds was stopped with its process.
const LOCK_BASE: i64 = 0x6d69 << 40;

/// How often the import's row is told how far the reading has come.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// An import as the staff pages show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImportView {
    pub id: i64,
    pub file_name: String,
    /// all_or_nothing or skip_bad_rows
    pub mode: String,
    pub rows_read: i64,
    pub rows_bad: i64,
    pub imported: i64,
    /// reading, checking, making (running); done, refused, failed
    pub status: String,
    pub failure: Option<String>,
    pub errors: sqlx::types::Json<Vec<LineError>>,
    pub file_bytes: Option<i64>,
    pub bytes_read: i64,
    pub actor: Option<String>,
    pub created_at: time::OffsetDateTime,
    pub finished_at: Option<time::OffsetDateTime>,
    /// shown as running, but no process runs it
    pub interrupted: bool,
}

impl ImportView {
    pub fn running(&self) -> bool {
        matches!(self.status.as_str(), "reading" | "checking" | "making") && !self.interrupted
    }
}

/// One bad line of a file, as kept for the import's page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineError {
    pub line: u64,
    pub error: String,
}

const VIEW: &str =
    "select i.id, i.file_name, i.mode, i.rows_read, i.rows_bad, i.imported, i.status,
        i.failure, i.errors, i.file_bytes, i.bytes_read, u.email as actor, i.created_at,
        i.finished_at,
        i.status in ('reading', 'checking', 'making') and not exists (
            select 1 from pg_locks l
             where l.locktype = 'advisory' and l.granted and l.objsubid = 1
               and l.database = (select oid from pg_database where datname = current_database())
               and ((l.classid::bigint << 32) | l.objid::bigint) = $1 + i.id
        ) as interrupted
   from member_imports i left join users u on u.id = i.actor";

/// The import with this id; one its process left unfinished is marked failed (nothing of
/// it was imported: the members are made in one transaction).
pub async fn get(ctx: &Ctx, id: i64) -> Result<ImportView> {
    let sql = format!("{VIEW} where i.id = $2");
    let mut view: ImportView = sqlx::query_as(&sql)
        .bind(LOCK_BASE)
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or(Error::NotFound { what: "import" })?;
    if view.interrupted {
        let why = "the portal stopped while the import ran; nothing was imported: start it again";
        mark_failed(&ctx.pool, ctx.clock.now(), id, why).await?;
        view.status = "failed".into();
        view.failure = Some(why.into());
        view.interrupted = false;
    }
    Ok(view)
}

/// The latest imports, newest first.
pub async fn recent(ctx: &Ctx, limit: i64) -> Result<Vec<ImportView>> {
    let sql = format!("{VIEW} order by i.id desc limit $2");
    Ok(sqlx::query_as(&sql)
        .bind(LOCK_BASE)
        .bind(limit)
        .fetch_all(&ctx.pool)
        .await?)
}

async fn mark_failed<'c>(
    db: impl sqlx::PgExecutor<'c>,
    now: time::OffsetDateTime,
    id: i64,
    why: &str,
) -> Result<()> {
    sqlx::query(
        "with d as (delete from member_import_rows where import_id = $1)
         update member_imports set status = 'failed', failure = $2, finished_at = $3
          where id = $1 and status in ('reading', 'checking', 'making')",
    )
    .bind(id)
    .bind(why)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// How long a failed import waits on its own connection to be marked failed.
const MARK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn progress(
    ctx: &Ctx,
    id: i64,
    status: &str,
    report: &ImportReport,
    bytes_read: u64,
) -> Result<()> {
    sqlx::query(
        "update member_imports set status = $2, rows_read = $3, rows_bad = $4, bytes_read = $5
          where id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(report.rows_read as i64)
    .bind(report.rows_bad as i64)
    .bind(bytes_read as i64)
    .execute(&ctx.pool)
    .await?;
    Ok(())
}

/// Imports the members of the CSV file at `source.path`. The import's id goes to
/// `started` as soon as its row exists (a page follows it there); the file's own faults
/// (a header that names no known columns, a read error) leave the import failed and
/// come back as the error.
pub async fn import_members(
    ctx: &Ctx,
    source: Source<'_>,
    skip_bad_rows: bool,
    started: Option<tokio::sync::oneshot::Sender<i64>>,
) -> Result<ImportReport> {
    let path = source.path;
    let file = tokio::fs::File::open(path).await.map_err(|e| {
        Error::validation("file", format!("{} cannot be read: {e}", source.file_name))
    })?;
    let file_bytes = file.metadata().await.ok().map(|m| m.len() as i64);
    let now = ctx.clock.now();
    let mode = if skip_bad_rows {
        "skip_bad_rows"
    } else {
        "all_or_nothing"
    };
    let mut conn = ctx.pool.acquire().await?;
    // the row and the lock in one statement: nobody sees the import without its lock
    let import_id: i64 = sqlx::query_scalar(
        "with i as (
             insert into member_imports (file_name, mode, created_at, actor, file_bytes)
             values ($1, $2, $3, $4, $5) returning id
         )
         select id from i where pg_try_advisory_lock($6 + id)",
    )
    .bind(source.file_name)
    .bind(mode)
    .bind(now)
    .bind(source.actor)
    .bind(file_bytes)
    .bind(LOCK_BASE)
    .fetch_one(&mut *conn)
    .await?;
    if let Some(tx) = started {
        let _ = tx.send(import_id);
    }
    let result = run(ctx, &mut conn, import_id, file, skip_bad_rows, source.actor).await;
    let outcome = match &result {
        Ok(r) if r.refused => "refused",
        Ok(_) => "done",
        Err(_) => "failed",
    };
    metrics::counter!("member_system_member_imports_total", "result" => outcome).increment(1);
    if let Ok(r) = &result {
        metrics::counter!("member_system_members_imported_total").increment(r.imported);
    }
    if let Err(e) = &result {
        // Marked on the import's own connection, which still holds the lock, so that no
        // page sees the import unlocked before it is marked (and calls it interrupted); a
        // connection broken mid-COPY answers with an error, and the pool marks it instead.
        let (why, now) = (reason(e), ctx.clock.now());
        let own = tokio::time::timeout(MARK_WITHIN, mark_failed(&mut *conn, now, import_id, &why));
        if !matches!(own.await, Ok(Ok(()))) {
            mark_failed(&ctx.pool, now, import_id, &why).await.ok();
        }
        // a connection that failed mid-COPY is not given back; closing it ends the lock
        conn.close().await.ok();
    } else {
        sqlx::query("select pg_advisory_unlock($1)")
            .bind(LOCK_BASE + import_id)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn run(
    ctx: &Ctx,
    conn: &mut sqlx::PgConnection,
    import_id: i64,
    file: tokio::fs::File,
    skip_bad_rows: bool,
    actor: Option<i64>,
) -> Result<ImportReport> {
    let now = ctx.clock.now();
    let mut lines = tokio::io::BufReader::new(file).lines();
    let mut report = ImportReport {
        import_id,
        ..Default::default()
    };

    // the header
    let (header, mut bytes_read) = match lines.next_line().await {
        Ok(Some(h)) => (
            split_record(h.trim_start_matches('\u{feff}')).unwrap_or_default(),
            h.len() as u64 + 1,
        ),
        _ => (Vec::new(), 0),
    };
    let mut at: [Option<usize>; 7] = [None; 7];
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(c) => at[c] = Some(i),
            None => {
                return Err(Error::validation(
                    "file",
                    format!(
                        "the first line names the columns; {name:?} is not one of {}",
                        COLUMNS.join(", ")
                    ),
                ));
            }
        }
    }
    if at[0].is_none() || at[1].is_none() {
        return Err(Error::validation(
            "file",
            "the first line names the columns, at least email and display_name",
        ));
    }

    let max_points = ctx.config.adjustment_max_points;
    let mut copy = conn
        .copy_in_raw(
            "copy member_import_rows (import_id, line, email, display_name, phone, external_id,
                                      member_code, points, total_spent) from stdin (format csv)",
        )
        .await?;
    let mut buffer = String::with_capacity(CHUNK + 4096);
    let mut line_no: u64 = 1;
    let mut record = String::new();
    let mut record_line = 0;
    let mut read_error = None;
    let mut told = std::time::Instant::now();
    loop {
        let next = match lines.next_line().await {
            Ok(l) => l,
            Err(e) => {
                read_error = Some(e.to_string());
                None
            }
        };
        let Some(text) = next else { break };
        line_no += 1;
        bytes_read += text.len() as u64 + 1;
        if record.is_empty() {
            record_line = line_no;
        } else {
            record.push('\n');
        }
        record.push_str(&text);
        let Some(cells) = split_record(&record) else {
            continue; // a quoted field goes on on the next line
        };
        record.clear();
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        report.rows_read += 1;
        match check_row(&cells, &at, max_points) {
            Ok(r) => {
                buffer.push_str(&format!("{import_id},{record_line},"));
                copy_field(&mut buffer, Some(&r.email));
                buffer.push(',');
                copy_field(&mut buffer, Some(&r.display_name));
                buffer.push(',');
                copy_field(&mut buffer, r.phone.as_deref());
                buffer.push(',');
                copy_field(&mut buffer, r.external_id.as_deref());
                buffer.push(',');
                copy_field(&mut buffer, r.member_code.as_deref());
                buffer.push_str(&format!(",{},{}\n", r.points, r.total_spent));
                if buffer.len() >= CHUNK {
                    copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
                    buffer.reserve(CHUNK + 4096);
                    if told.elapsed() >= PROGRESS_EVERY {
                        progress(ctx, import_id, "reading", &report, bytes_read).await?;
                        told = std::time::Instant::now();
                    }
                }
            }
            Err(e) => {
                report.rows_bad += 1;
                if report.errors.len() < REPORTED {
                    report.errors.push((record_line, reason(&e)));
                }
            }
        }
    }
    if !record.is_empty() {
        report.rows_read += 1;
        report.rows_bad += 1;
        report
            .errors
            .push((record_line, "a quoted field is never closed".into()));
    }
    if let Some(e) = read_error {
        copy.abort("the file could not be read").await.ok();
        return Err(Error::validation(
            "file",
            format!("reading stopped at line {line_no}: {e}"),
        ));
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    copy.finish().await?;
    progress(ctx, import_id, "checking", &report, bytes_read).await?;

    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    // a file of a million members takes longer than DB_QUERY_TIMEOUT_SECS, which is
    // there for requests; this transaction alone goes without it
    sqlx::query("set local statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    // what only the database can tell
    let db_bad: i64 = sqlx::query_scalar("select import_members_check($1)")
        .bind(import_id)
        .fetch_one(&mut *tx)
        .await?;
    if db_bad > 0 {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "select line, error from member_import_rows
              where import_id = $1 and error is not null order by line limit $2",
        )
        .bind(import_id)
        .bind(REPORTED as i64)
        .fetch_all(&mut *tx)
        .await?;
        report.rows_bad += db_bad as u64;
        report
            .errors
            .extend(rows.into_iter().map(|(l, e)| (l as u64, e)));
        report.errors.sort_by_key(|(l, _)| *l);
        report.errors.truncate(REPORTED);
    }

    let refused = report.rows_bad > 0 && !skip_bad_rows;
    if !refused {
        progress(ctx, import_id, "making", &report, bytes_read).await?;
        let (window, _) = ctx.config.tiers.window_sql();
        let (retention, retention_months) = ctx.config.tiers.retention_sql();
        let expires = now + Duration::days(ctx.config.points_expiry_days);
        let imported: i64 = sqlx::query_scalar(
            "select import_members_finish($1, $2, $3, $4, $5, $6, $7, make_interval(secs => $8))",
        )
        .bind(import_id)
        .bind(now)
        .bind(&ctx.config.member_timezone)
        .bind(expires)
        .bind(window)
        .bind(retention)
        .bind(retention_months)
        .bind(ctx.config.tiers.grace.whole_seconds() as f64)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| crate::error::on_constraint(e, |c| match c {
            c if c.contains("member_code_counters") => Some(Error::validation(
                "member_code",
                "more than 99999 new member codes in one day: give the members their codes in the member_code column",
            )),
            "users_email_key" => Some(Error::validation(
                "email",
                "an email was taken while the file was read; run the import again",
            )),
            _ => None,
        }))?;
        report.imported = imported as u64;
    }
    report.refused = refused;
    let errors: Vec<LineError> = report
        .errors
        .iter()
        .map(|(line, error)| LineError {
            line: *line,
            error: error.clone(),
        })
        .collect();
    sqlx::query("delete from member_import_rows where import_id = $1")
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "update member_imports set rows_read = $2, rows_bad = $3, imported = $4, status = $5,
                finished_at = $6, errors = $7, bytes_read = $8 where id = $1",
    )
    .bind(import_id)
    .bind(report.rows_read as i64)
    .bind(report.rows_bad as i64)
    .bind(report.imported as i64)
    .bind(if refused { "refused" } else { "done" })
    .bind(ctx.clock.now())
    .bind(sqlx::types::Json(&errors))
    .bind(bytes_read as i64)
    .execute(&mut *tx)
    .await?;
    crate::db::members::audit(
        &mut tx,
        actor,
        "members.import",
        "import",
        &import_id.to_string(),
        &serde_json::json!({
            "rows_read": report.rows_read,
            "rows_bad": report.rows_bad,
            "imported": report.imported,
            "refused": refused,
        }),
        ctx.clock.now(),
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_as_rfc_4180_says() {
        assert_eq!(split_record("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_record(r#""Wang, Fang","say ""hi""",x"#).unwrap(),
            ["Wang, Fang", r#"say "hi""#, "x"]
        );
        assert_eq!(split_record("a,b\r").unwrap(), ["a", "b"]);
        assert_eq!(
            split_record("\"open,").map(|_| ()),
            None,
            "a quote left open"
        );
        assert_eq!(
            split_record("\"two\nlines\",z").unwrap(),
            ["two\nlines", "z"]
        );
        assert_eq!(split_record("").unwrap(), [""]);
    }

    #[test]
    fn copy_fields_keep_empty_apart_from_null() {
        let mut out = String::new();
        copy_field(&mut out, Some("a\"b"));
        out.push(',');
        copy_field(&mut out, Some(""));
        out.push(',');
        copy_field(&mut out, None);
        assert_eq!(out, "\"a\"\"b\",\"\",");
    }
}
