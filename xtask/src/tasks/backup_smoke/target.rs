//! Where the smoke runs: a throwaway embedded cluster (the default), or an
//! existing server reached through `--database-url` or the `PG*`
//! variables, where only scratch databases of this run are created and
//! dropped. Builds the `psql`, `pg_dump` and `pg_restore` command lines for
//! either; secrets travel in `PGPASSWORD`, never in argv.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::plan::{Command, Effect};

/// The prefix of every scratch database and work directory this task makes.
pub const PREFIX: &str = "xtask_bsmoke_";
const DIR_PREFIX: &str = "xtask-backup-smoke-";

/// How to reach the server: libpq parameters. What is `None` comes from
/// the environment (`PG*`), exactly as libpq would take it.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    pub host: Option<String>,
    pub port: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Other libpq settings as their environment variables (PGSSLMODE=...).
    pub env: Vec<(String, String)>,
    /// Where CREATE/DROP DATABASE are issued; never modified.
    pub maintenance_db: String,
}

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

impl Conn {
    /// A client command against database `db`. The date style is pinned, so
    /// exports parse the same way whatever the server's default.
    pub fn cmd(&self, program: &str, db: &str, effect: Effect) -> Command {
        let mut c = Command::new(program, effect);
        if let Some(h) = &self.host {
            c = c.args(["-h", h.as_str()]);
        }
        if let Some(p) = &self.port {
            c = c.args(["-p", p.as_str()]);
        }
        if let Some(u) = &self.user {
            c = c.args(["-U", u.as_str()]);
        }
        c = c.arg("-d").arg(db);
        for (k, v) in &self.env {
            c = c.env(k, v.as_str());
        }
        c = c.env("PGCLIENTENCODING", "UTF8").env("PGDATESTYLE", "ISO");
        if let Some(p) = &self.password {
            c = c.secret_env("PGPASSWORD", p.as_str());
        }
        c
    }

    /// `psql` running `sql` (one or more statements, each its own -c) in `db`.
    pub fn psql(&self, psql: &str, db: &str, effect: Effect, sql: &[&str]) -> Command {
        let mut c =
            self.cmd(psql, db, effect)
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        for s in sql {
            c = c.arg("-c").arg(*s);
        }
        c
    }

    /// `psql -f file...` in `db`, all files in one transaction.
    pub fn psql_files(&self, psql: &str, db: &str, files: &[PathBuf]) -> Command {
        let mut c = self.cmd(psql, db, Effect::Mutating).args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
        ]);
        for f in files {
            c = c.arg("-f").arg(f.display().to_string());
        }
        c
    }
}

/// Parses a `postgres://` URL into libpq parameters, so that nothing of it
/// (the password least of all) lands in argv.
pub fn parse_url(url: &str) -> Result<Conn> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .context("--database-url must start with postgres:// or postgresql://")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut c = Conn {
        maintenance_db: "postgres".into(),
        ..Conn::default()
    };
    if let Some(u) = userinfo {
        let (user, pass) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        c.user = Some(decode(user)?).filter(|s| !s.is_empty());
        c.password = pass.map(decode).transpose()?;
    }
    if hostport.contains(',') {
        bail!("--database-url: several hosts are not supported; name one");
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .context("--database-url: unterminated [ipv6] host")?;
        (h.to_string(), p.strip_prefix(':').map(str::to_string))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (decode(h)?, Some(p.to_string())),
            None => (decode(hostport)?, None),
        }
    };
    c.host = Some(host).filter(|h| !h.is_empty());
    c.port = port.filter(|p| !p.is_empty());
    if let Some(p) = &c.port {
        p.parse::<u16>()
            .with_context(|| format!("--database-url: port {p:?} is not a number"))?;
    }
    if !db.is_empty() {
        c.maintenance_db = decode(db)?;
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v)?;
        let var = match k {
            "host" => {
                c.host = Some(v);
                continue;
            }
            "port" => {
                c.port = Some(v);
                continue;
            }
            "user" => {
                c.user = Some(v);
                continue;
            }
            "password" => {
                c.password = Some(v);
                continue;
            }
            "dbname" => {
                c.maintenance_db = v;
                continue;
            }
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            "sslcrl" => "PGSSLCRL",
            "channel_binding" => "PGCHANNELBINDING",
            "connect_timeout" => "PGCONNECT_TIMEOUT",
            "application_name" => "PGAPPNAME",
            "target_session_attrs" => "PGTARGETSESSIONATTRS",
            "gssencmode" => "PGGSSENCMODE",
            other => bail!("--database-url: unsupported parameter `{other}`"),
        };
        c.env.push((var.into(), v));
    }
    db_name(&c.maintenance_db).context("--database-url: the database name")?;
    Ok(c)
}

fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .context("--database-url: a % escape is cut short")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .with_context(|| format!("--database-url: bad escape %{hex}"))?,
            );
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("--database-url: not UTF-8 after decoding")
}

/// A database name given to `-d`: a value with `=` or a URL prefix would be
/// read by libpq as a connection string.
pub fn db_name(n: &str) -> Result<()> {
    if n.is_empty() || n.contains('=') || n.contains("://") || n.len() > 63 {
        bail!("{n:?} is not a database name this task will pass to -d");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_parameters_and_the_password_stays_out_of_argv() {
        let c = parse_url(
            "postgres://smoke%40x:p%3Ass@db.example:6543/ops?sslmode=require&application_name=bs",
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("smoke@x"));
        assert_eq!(c.password.as_deref(), Some("p:ss"));
        assert_eq!(
            (c.host.as_deref(), c.port.as_deref()),
            (Some("db.example"), Some("6543"))
        );
        assert_eq!(c.maintenance_db, "ops");
        assert!(c.env.contains(&("PGSSLMODE".into(), "require".into())));
        let cmd = c.psql(
            "psql",
            "xtask_bsmoke_1_src",
            Effect::ReadOnly,
            &["SELECT 1"],
        );
        assert!(
            !cmd.args.iter().any(|a| a.contains("p:ss")),
            "{:?}",
            cmd.args
        );
        assert!(
            cmd.display().contains("PGPASSWORD='***'"),
            "{}",
            cmd.display()
        );

        let c = parse_url("postgresql://[::1]:5432").unwrap();
        assert_eq!(
            (c.host.as_deref(), c.maintenance_db.as_str()),
            (Some("::1"), "postgres")
        );
        assert!(parse_url("mysql://x").is_err());
        assert!(parse_url("postgres://h/db?weird=1").is_err());
        assert!(parse_url("postgres://h:abc/db").is_err());
        assert!(parse_url("postgres://h/host=evil").is_err());
    }
}
