//! The default store when `DATABASE_URL` is unset: a local PostgreSQL if one answers on
//! the default address, otherwise a private cluster under `./var/postgres` started with
//! the installed PostgreSQL binaries and stopped on exit. Without either, start-up says
//! exactly what to install or set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{ConnectOptions, Connection};

use crate::config::Config;

/// A private cluster this process started (or found running in its data directory).
#[derive(Debug)]
pub struct Embedded {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    run_as: Option<&'static str>,
    /// whether this process started it (and so stops it)
    started: bool,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: on PATH, or the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    candidates.extend(versions.into_iter().map(|(_, p)| p));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    // wrappers on PATH (Debian's pg_wrapper) do not carry `postgres`; real bin dirs do
    candidates.into_iter().find(|d| has_all(d))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Embedded {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        c.stdin(Stdio::null());
        c
    }

    /// Initialises `data` if needed and starts PostgreSQL on a free loopback port (or
    /// reuses the server already running there).
    pub fn start(data: &Path) -> anyhow::Result<Self> {
        let bin = find_binaries().context(
            "no PostgreSQL found: set DATABASE_URL to a PostgreSQL server, start one on 127.0.0.1:5432, \
             or install PostgreSQL's server binaries (Debian: apt-get install postgresql) for a private cluster",
        )?;
        // PostgreSQL refuses to run as root; as root, run it as the `postgres` user
        let run_as = running_as_root().then_some("postgres");
        let mut data = prepare(data, run_as)?;
        if let Some(user) = run_as {
            if !reachable(user, &data) {
                // e.g. a checkout inside a directory only root may enter
                let fallback = std::env::temp_dir()
                    .join(format!("member-portal-postgres-{:016x}", fnv(&data)));
                tracing::warn!(
                    wanted = %data.display(),
                    using = %fallback.display(),
                    "the {user} user cannot reach the data directory; using another"
                );
                data = prepare(&fallback, run_as)?;
                anyhow::ensure!(
                    reachable(user, &data),
                    "the {user} user cannot reach {}",
                    data.display()
                );
            }
        }
        let mut pg = Self {
            bin,
            data,
            port: 0,
            run_as,
            started: false,
        };
        if !pg.data.join("PG_VERSION").exists() {
            let out = pg
                .command("initdb")
                .arg("-D")
                .arg(&pg.data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
                .output()
                .context("running initdb")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        if let Some(port) = pg.running_port() {
            pg.port = port;
            return Ok(pg);
        }
        pg.port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        pg.launch()?;
        pg.started = true;
        Ok(pg)
    }

    /// `pg_ctl start` on this cluster's port, waiting until it accepts connections.
    fn launch(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.data.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start (see {}): {}",
                self.data.join("server.log").display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the server in immediate mode (as a crash would: no checkpoint, clients cut
    /// off), for fault tests; [`Self::start_again`] brings it back on the same port.
    pub fn stop_immediately(&self) -> anyhow::Result<()> {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_ctl stop")?;
        anyhow::ensure!(status.success(), "pg_ctl stop -m immediate failed");
        Ok(())
    }

    pub fn start_again(&self) -> anyhow::Result<()> {
        self.launch()
    }

    /// Where the cluster keeps its data.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The port of a server already running on this data directory.
    fn running_port(&self) -> Option<u16> {
        let running = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        if !running {
            return None;
        }
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        pid.lines().nth(3)?.trim().parse().ok()
    }

    /// Stops the cluster if this process started it.
    pub fn stop(&self) {
        if !self.started {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates the data directory and, when PostgreSQL runs as another user, gives it to them.
fn prepare(data: &Path, run_as: Option<&str>) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let data = data.canonicalize()?;
    if let Some(user) = run_as {
        let status = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(&data)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "cannot give {} to the {user} user",
            data.display()
        );
    }
    Ok(data)
}

/// Whether `user` can enter `dir` (every directory above it must let them through).
fn reachable(user: &str, dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "test", "-x"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn fnv(path: &Path) -> u64 {
    path.to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
}

/// Where the database comes from when `DATABASE_URL` is not set: the default local
/// server if it answers, else a private cluster in `data`.
pub async fn resolve(config: &mut Config, data: &Path) -> anyhow::Result<Option<Embedded>> {
    if answers(&config.database_url).await {
        return Ok(None);
    }
    let data = data.to_owned();
    let pg = tokio::task::spawn_blocking(move || Embedded::start(&data)).await??;
    tracing::info!(port = pg.port, "started a private PostgreSQL cluster");
    config.database_url = pg.url("member_portal");
    Ok(Some(pg))
}

async fn answers(url: &str) -> bool {
    let Ok(options) = url.parse::<sqlx::postgres::PgConnectOptions>() else {
        return false;
    };
    let options = options
        .database("postgres")
        .log_statements(tracing::log::LevelFilter::Off);
    matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            sqlx::PgConnection::connect_with(&options)
        )
        .await,
        Ok(Ok(_))
    )
}
