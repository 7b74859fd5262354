//! Where the smoke runs: a throwaway embedded cluster (the default), or an
//! existing server reached through `--database-url` or the `PG*`
//! variables ([`Conn`]), where only scratch databases of this run are
//! created and dropped. The cluster's commands (initdb, pg_ctl), its work
//! directory, and the names that tell this run's leftovers from others'.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use super::conn::{db_name, parse_url, Conn};
use crate::plan::{Command, Effect};

/// The prefix of every scratch database and work directory this task makes.
pub const PREFIX: &str = "xtask_bsmoke_";
const DIR_PREFIX: &str = "xtask-backup-smoke-";

/// A throwaway cluster in a temp directory.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub dir: PathBuf,
    pub bindir: PathBuf,
    pub port: u16,
    /// `Some(user)` when running as root: initdb refuses root.
    pub run_as: Option<String>,
}

impl Embedded {
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn pwfile(&self) -> PathBuf {
        self.dir.join("pwfile")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn server_cmd(&self, tool: &str, effect: Effect) -> Command {
        let prog = self.bindir.join(tool).display().to_string();
        match &self.run_as {
            Some(u) => {
                Command::new("runuser", effect).args(["-u", u.as_str(), "--", prog.as_str()])
            }
            None => Command::new(&prog, effect),
        }
    }

    /// Creates the directory (0700; owned by `run_as` when root) and the
    /// password file initdb reads.
    pub fn prepare(&self, password: &str) -> Result<()> {
        make_private_dir(&self.dir)?;
        let pw = self.pwfile();
        std::fs::write(&pw, password).with_context(|| format!("writing {}", pw.display()))?;
        set_mode(&pw, 0o600)?;
        if let Some(u) = &self.run_as {
            let (uid, gid) = user_ids(u).with_context(|| format!("no user `{u}`"))?;
            for p in [&self.dir, &pw] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .with_context(|| format!("chown {u} {}", p.display()))?;
            }
        }
        Ok(())
    }

    pub fn initdb(&self) -> Command {
        self.server_cmd("initdb", Effect::Mutating)
            .arg("--pgdata")
            .arg(self.data().display().to_string())
            .args(["--username", "postgres", "--pwfile"])
            .arg(self.pwfile().display().to_string())
            .args(["--auth-local", "peer", "--auth-host", "scram-sha-256"])
            .args([
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ])
    }

    /// `pg_ctl -o` goes through a shell inside pg_ctl, so the directory must
    /// be plain (checked when planning). fsync is off: the cluster is thrown
    /// away, and durability is not what a dump/restore round trip tests.
    pub fn start(&self) -> Command {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        self.server_cmd("pg_ctl", Effect::Mutating)
            .arg("--pgdata")
            .arg(self.data().display().to_string())
            .arg("--log")
            .arg(self.log().display().to_string())
            .args(["--wait", "--timeout", "60", "--silent", "-o"])
            .arg(opts)
            .arg("start")
    }

    pub fn stop(&self) -> Command {
        self.server_cmd("pg_ctl", Effect::Mutating)
            .arg("--pgdata")
            .arg(self.data().display().to_string())
            .args(["--mode", "immediate", "--wait", "--silent", "stop"])
    }

    pub fn conn(&self, password: &str) -> Conn {
        Conn {
            host: Some("127.0.0.1".into()),
            port: Some(self.port.to_string()),
            user: Some("postgres".into()),
            password: Some(password.into()),
            env: vec![("PGSSLMODE".into(), "disable".into())],
            maintenance_db: "postgres".into(),
        }
    }
}

/// Creates `dir` readable by its owner only (it will hold a dump).
pub fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, 0o700)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", p.display()))
}

/// A client program (`psql`, `pg_dump`, `pg_restore`): from the server's
/// bindir when one was found (versions match), else from PATH.
pub fn client(bindir: Option<&Path>, tool: &str) -> String {
    match bindir.map(|b| b.join(tool)).filter(|p| p.exists()) {
        Some(p) => p.display().to_string(),
        None => tool.into(),
    }
}

/// A port the OS says is free on loopback now.
pub fn free_port() -> Result<u16> {
    Ok(crate::repo::free_ports(1)?[0])
}

/// The PostgreSQL server binaries (initdb, pg_ctl): the newest
/// `/usr/lib/postgresql/<v>/bin`, else wherever PATH has initdb.
pub fn find_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .or_else(|| {
            which::which("initdb")
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .filter(|b| b.join("pg_ctl").exists())
}

/// uid and gid of `user`, from /etc/passwd.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A fresh work directory name (not created) and the run id that names
/// this run's scratch databases: `<unix seconds>_<pid>_<ms><call>`. The seconds
/// let a later run tell an abandoned scratch database from a running one.
pub fn work_dir() -> (PathBuf, String) {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let pid = std::process::id();
    let (secs, ms) = (now.as_secs(), now.subsec_millis());
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{secs}-{ms:03}{n}"));
    (dir, format!("{secs}_{pid}_{ms:03}{n}"))
}

/// Scratch databases of other runs that started more than six hours ago
/// (a smoke takes minutes), from their names.
pub fn stale_scratch(names: &[String]) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    names
        .iter()
        .filter(|n| {
            let started = n
                .strip_prefix(PREFIX)
                .and_then(|r| r.split('_').next())
                .and_then(|s| s.parse::<u64>().ok());
            started.is_some_and(|s| s + 6 * 3600 < now)
        })
        .cloned()
        .collect()
}

/// Is `dir` safe to hand to pg_ctl's shell and as a socket directory?
pub fn plain_dir(dir: &Path) -> Result<()> {
    let s = dir.display().to_string();
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
        || s.len() > 80
    {
        bail!("the work directory {s} has characters pg_ctl's shell would misread (or is over 80 bytes): set TMPDIR to a plain path such as /tmp");
    }
    Ok(())
}

/// Work directories of earlier runs whose process is gone (interrupted runs).
pub fn leftover_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let pid = name
                .strip_prefix(DIR_PREFIX)?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()?;
            (pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
                .then(|| e.path())
        })
        .collect()
}

/// A random password for the embedded superuser (the cluster listens on
/// loopback, where other local users could otherwise connect).
pub fn random_secret() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("reading /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
