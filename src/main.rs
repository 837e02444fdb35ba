use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use member_portal::app::Application;
use member_portal::config::Config;
use member_portal::service::{Ctx, Services, accounts, demo, ledger};
use member_portal::{db, embedded};

/// mimalloc instead of glibc's malloc, for memory: glibc keeps a freed argon2 buffer
/// (19 MiB) in the arena of the thread that hashed, so every login on another blocking
/// thread added 19 MiB of RSS for good (three logins: 51 MB idle); mimalloc returns it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Member Portal: membership levels and points.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal (the default): creates the database and migrates it first.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Create a staff account.
    CreateStaff {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        name: Option<String>,
        /// admin (everything), operator (members, points, rewards, campaigns) or viewer
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Create an API key for an integration; prints only the key (it is stored hashed).
    CreateApiKey {
        #[arg(long)]
        name: String,
        /// what the key may do, comma-separated: earn, use, read, coupons (default: all)
        #[arg(long, default_value = "earn,use,read,coupons")]
        scopes: String,
    },
    /// Expire points past their expiry now.
    ExpirePoints,
    /// Run the level review now (MEMBER_TIER_*): keep, notify or lower levels whose
    /// retention has ended.
    ReviewLevels,
    /// Check every ledger invariant; exit 1 with a report on any violation.
    VerifyLedger,
    /// Import members from a CSV file (header: email, display_name, and any of phone,
    /// external_id, member_code, points, total_spent). Any bad row and nothing is imported,
    /// unless --skip-bad-rows; the report names each bad line.
    ImportMembers {
        file: std::path::PathBuf,
        #[arg(long)]
        skip_bad_rows: bool,
    },
    /// Create demo members with months of history, for trying the portal.
    SeedDemo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours only for a person at a terminal, not in a file or a log collector
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn services(config: Config) -> anyhow::Result<Services> {
    db::create_database_if_missing(&config).await?;
    let pool = db::connect(&config, 5).await?;
    db::migrate(&pool).await?;
    Ok(Services::new(Ctx::with_system_clock(pool, config)?))
}

/// Stops a private PostgreSQL cluster when the command is done, however it ends.
struct StopOnExit(Option<embedded::Embedded>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if let Some(pg) = &self.0 {
            pg.stop();
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<ExitCode> {
    let _cluster = StopOnExit(if config.database_url_from_env {
        None
    } else {
        embedded::resolve(&mut config, std::path::Path::new("var/postgres")).await?
    });
    match command {
        Command::Serve => {
            let app = Application::build(config).await?;
            let addr = app.local_addr()?;
            tracing::info!(%addr, "member portal listening");
            if app.services.staff.staff_count().await? == 0 {
                eprintln!(
                    "\nMember Portal is at http://{addr}/ — there is no staff login yet. Create one with:\n  \
                     member-portal create-staff --email you@example.com --password 'a long password'\n  \
                     (or: cargo run --release -- create-staff …), then log in at http://{addr}/login\n"
                );
            }
            app.run_until(shutdown_signal()).await?;
        }
        Command::Migrate => {
            services(config).await?;
            println!("migrations applied");
        }
        Command::CreateStaff {
            email,
            password,
            name,
            role,
        } => {
            let Some(role) = member_portal::domain::StaffRole::parse(&role) else {
                anyhow::bail!("--role {role:?}: expected admin, operator or viewer");
            };
            let s = services(config).await?;
            let id = accounts::create_staff_as(&s.ctx, &email, &password, name.as_deref(), role)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            println!("staff user {id} created: {email} ({})", role.as_str());
        }
        Command::CreateApiKey { name, scopes } => {
            let mut wanted = Vec::new();
            for raw in scopes.split(',').filter(|s| !s.trim().is_empty()) {
                let Some(scope) = accounts::Scope::parse(raw) else {
                    anyhow::bail!("--scopes {raw:?}: expected earn, use, read or coupons");
                };
                wanted.push(scope);
            }
            let s = services(config).await?;
            let key = accounts::create_api_key_scoped(&s.ctx, &name, &wanted, None)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            println!("{key}");
        }
        Command::ExpirePoints => {
            let s = services(config).await?;
            let report = s.points.expire_points().await.context("expiry sweep")?;
            println!(
                "expired {} points of {} members",
                report.points, report.members
            );
        }
        Command::ReviewLevels => {
            let s = services(config).await?;
            let started = std::time::Instant::now();
            let r = s.tiers.review().await.context("level review")?;
            println!(
                "read {} members in {:.1} s: {} kept, {} told of a downgrade, {} lowered",
                r.kept + r.noticed + r.dropped + r.passed,
                started.elapsed().as_secs_f64(),
                r.kept,
                r.noticed,
                r.dropped
            );
        }
        Command::ImportMembers {
            file,
            skip_bad_rows,
        } => {
            let s = services(config).await?;
            let started = std::time::Instant::now();
            let name = file.display().to_string();
            let source = member_portal::service::import::Source {
                path: &file,
                file_name: &name,
                actor: None,
            };
            let r =
                member_portal::service::import::import_members(&s.ctx, source, skip_bad_rows, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            for (line, why) in &r.errors {
                println!("line {line}: {why}");
            }
            if r.rows_bad as usize > r.errors.len() {
                println!(
                    "… and {} more bad lines",
                    r.rows_bad as usize - r.errors.len()
                );
            }
            println!(
                "import {}: {} rows read, {} bad, {} members imported in {:.1} s{}",
                r.import_id,
                r.rows_read,
                r.rows_bad,
                r.imported,
                started.elapsed().as_secs_f64(),
                if r.refused {
                    " (nothing imported: fix the lines above, or pass --skip-bad-rows)"
                } else {
                    ""
                }
            );
            if r.refused {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::VerifyLedger => {
            let s = services(config).await?;
            let violations = ledger::verify_ledger(&s.ctx.pool, None).await?;
            if violations.is_empty() {
                println!("ledger ok: every invariant holds");
            } else {
                for v in &violations {
                    println!("{v}");
                }
                println!("{} violation(s)", violations.len());
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::SeedDemo => {
            let s = services(config.clone()).await?;
            let emails = demo::seed_demo(s.ctx.pool.clone(), config).await?;
            for e in &emails {
                println!("{e}");
            }
            println!(
                "{} demo members created; password: {}",
                emails.len(),
                demo::DEMO_PASSWORD
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
