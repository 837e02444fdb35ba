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
    /// whether this process owns it (and so stops it)
    started: bool,
    pub origin: Origin,
}

/// How this process came to use the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// started it now
    Started,
    /// found it running, left behind by a portal process that has ended (killed, say):
    /// this process takes it over and stops it on exit
    Adopted { stale_owner: u32 },
    /// found it running for a portal process that is still running (a CLI command while
    /// `serve` runs): used as it is and left running
    Shared { owner: u32 },
}

/// The file in the data directory naming the portal process that owns the cluster.
const OWNER_FILE: &str = "member-portal.owner";

/// Whether `pid` is another running process of this program (`member-portal`, or the
/// very executable this process runs).
fn is_portal_process(pid: u32) -> bool {
    let exe = |p: &str| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    let Some(theirs) = exe(&pid.to_string()) else {
        return false;
    };
    pid != std::process::id()
        && (Some(&theirs) == exe("self").as_ref()
            || theirs
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("member-portal")))
}

impl Embedded {
    /// Names `pid` as the owner (tests: a portal process that has ended, or another one).
    pub fn set_owner_for_tests(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.data.join(OWNER_FILE), pid.to_string())
    }
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
            origin: Origin::Started,
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
            match pg.owner() {
                Some(owner) if is_portal_process(owner) => {
                    pg.origin = Origin::Shared { owner };
                }
                stale => {
                    pg.origin = Origin::Adopted {
                        stale_owner: stale.unwrap_or(0),
                    };
                    pg.started = true;
                    pg.claim()?;
                }
            }
            return Ok(pg);
        }
        pg.port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        pg.launch()?;
        pg.started = true;
        pg.claim()?;
        Ok(pg)
    }

    /// The portal process named as the cluster's owner, if any.
    fn owner(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join(OWNER_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Names this process as the owner.
    fn claim(&self) -> anyhow::Result<()> {
        std::fs::write(self.data.join(OWNER_FILE), std::process::id().to_string())
            .with_context(|| format!("writing {}", self.data.join(OWNER_FILE).display()))
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

    /// Stops the cluster if this process owns it.
    pub fn stop(&self) {
        if !self.started {
            return;
        }
        let _ = std::fs::remove_file(self.data.join(OWNER_FILE));
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
    let dir = pg.data_dir().display().to_string();
    match pg.origin {
        Origin::Started => tracing::info!(
            port = pg.port,
            data = %dir,
            "started a private PostgreSQL cluster (no DATABASE_URL, nothing on 127.0.0.1:5432); its data is kept in {dir}, and it stops when this process ends"
        ),
        Origin::Adopted { stale_owner } => tracing::warn!(
            port = pg.port,
            data = %dir,
            stale_owner,
            "found the private PostgreSQL cluster in {dir} still running for a portal process that has ended; this process takes it over and stops it on exit"
        ),
        Origin::Shared { owner } => tracing::info!(
            port = pg.port,
            data = %dir,
            owner,
            "using the private PostgreSQL cluster in {dir} of the portal running as process {owner} (left running)"
        ),
    }
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
