//! What the smoke resolves while planning, with read-only look-ups only:
//! the target (embedded cluster or server), the client programs, the work
//! directory and run id, the profile's SQL, and what is missing to run it.
//! [`Setup`] also builds every command line the plan and its actions run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::report::Checkpoint;
use super::sql;
use super::target::{self, Conn, Embedded};
use super::workload;
use crate::audit::Log;
use crate::flags::{BackupSmoke, Format, Profile};
use crate::plan::{Command, Effect};

/// Everything the plan and its actions need, resolved while planning.
#[derive(Debug, Clone)]
pub struct Setup {
    pub profile: Profile,
    pub rows: u32,
    /// `--dump FILE`: verify this dump instead of making one.
    pub dump: Option<PathBuf>,
    /// `FILE.manifest.json` beside that dump, if there is one.
    pub dump_manifest: Option<PathBuf>,
    /// The checkpoint the restored chain must still hold (`--checkpoint`,
    /// or with `--dump` the environment's last recorded one).
    pub checkpoint: Option<Checkpoint>,
    pub embedded: Option<Embedded>,
    /// The embedded superuser's password (random per run).
    pub password: Option<String>,
    pub conn: Conn,
    pub psql: String,
    pub pg_dump: String,
    pub pg_restore: String,
    /// Work directory: dump, manifest, scripts (and the embedded cluster).
    pub dir: PathBuf,
    pub run_id: String,
    /// `deployments/sql` or `deployments/sql/certctl`.
    pub sql_dir: PathBuf,
    pub destructive: bool,
    pub leftover_dirs: Vec<PathBuf>,
    /// Where a passing run is recorded: (log, tag).
    pub evidence: Option<(Log, String)>,
    pub verbose: bool,
    pub format: Format,
    /// Print no report (the benchmark runs the smoke in process and reads it).
    pub quiet: bool,
    /// What is missing to run (each with how to get it): a dry run warns,
    /// a real run stops at its first step with exit 2.
    pub missing: Vec<String>,
}

impl Setup {
    pub fn db(&self, what: &str) -> String {
        format!("{}{}_{what}", target::PREFIX, self.run_id)
    }
    pub fn dump_file(&self) -> PathBuf {
        self.dump
            .clone()
            .unwrap_or_else(|| self.dir.join("audit.dump"))
    }
    pub fn manifest_file(&self) -> PathBuf {
        self.dir.join("audit.dump.manifest.json")
    }
    pub fn chain_sql(&self) -> PathBuf {
        self.sql_dir.join("audit_chain.sql")
    }
    pub fn events_sql(&self) -> PathBuf {
        self.sql_dir.join("audit_events.sql")
    }
    pub fn kat_sql(&self) -> PathBuf {
        self.sql_dir.join("known_answer.sql")
    }
    /// The time limit of every client command, whose work (a workload, a
    /// dump, a restore, an export, a scratch copy) grows with the table:
    /// the default for up to 100k rows, then a millisecond more a row (10M
    /// rows: about 3 hours, for a loaded machine). With `--dump`, the rows
    /// are counted as about one per 100 bytes of the dump.
    pub fn limit_secs(&self) -> u64 {
        let rows = match &self.dump {
            Some(d) => std::fs::metadata(d).map_or(0, |m| m.len() / 100),
            None => u64::from(self.rows),
        };
        crate::cmd::DEFAULT_LIMIT.as_secs() + rows.saturating_sub(100_000) / 1000
    }
    /// psql running statements in `db` under session TimeZone `tz`.
    pub fn psql_tz(&self, db: &str, tz: &str, effect: Effect, sql: &[&str]) -> Command {
        self.conn
            .psql(&self.psql, db, effect, sql)
            .env("PGTZ", tz)
            .timeout(self.limit_secs())
    }
    pub fn psql(&self, db: &str, effect: Effect, sql: &[&str]) -> Command {
        self.psql_tz(db, "UTC", effect, sql)
    }
    pub fn files(&self, db: &str, files: &[PathBuf]) -> Command {
        self.files_tz(db, "UTC", files)
    }
    pub fn files_tz(&self, db: &str, tz: &str, files: &[PathBuf]) -> Command {
        self.conn
            .psql_files(&self.psql, db, files)
            .env("PGTZ", tz)
            .timeout(self.limit_secs())
    }
    pub fn create_db(&self, name: &str) -> Command {
        let sql = format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        );
        self.psql(&self.conn.maintenance_db, Effect::Mutating, &[&sql])
    }
    pub fn drop_db(&self, name: &str) -> Command {
        self.psql(
            &self.conn.maintenance_db,
            Effect::Mutating,
            &[&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")],
        )
    }
    pub fn pg_dump(&self, db: &str) -> Command {
        self.conn
            .cmd(&self.pg_dump, db, Effect::Mutating)
            .args(["--format=custom", "--no-owner", "--no-acl", "--file"])
            .arg(self.dump_file().display().to_string())
            .timeout(self.limit_secs())
    }
    pub fn pg_restore_list(&self) -> Command {
        Command::new(&self.pg_restore, Effect::ReadOnly)
            .arg("--list")
            .arg(self.dump_file().display().to_string())
    }
    pub fn pg_restore(&self, db: &str) -> Command {
        self.conn
            .cmd(&self.pg_restore, db, Effect::Mutating)
            .args(["--exit-on-error", "--no-owner", "--no-acl"])
            .arg(self.dump_file().display().to_string())
            .timeout(self.limit_secs())
    }
    /// The dump's database as SQL, its collation included (no data read).
    pub fn source_ddl(&self) -> Command {
        Command::new(&self.pg_restore, Effect::ReadOnly)
            .args([
                "--create",
                "--schema-only",
                "--section=pre-data",
                "--file=-",
            ])
            .arg(self.dump_file().display().to_string())
    }
    /// certctl's published order in `db` under `collation` (see [`sql::certctl_order`]).
    pub fn certctl_order(&self, db: &str, collation: &str) -> Command {
        self.psql(db, Effect::ReadOnly, &[&sql::certctl_order(collation)])
    }
    /// `default` or `certctl`, as `--profile` spells it.
    pub fn profile_name(&self) -> String {
        format!("{:?}", self.profile).to_lowercase()
    }
    fn with_preflight(mut self) -> Setup {
        self.missing = preflight(&self);
        self
    }
    pub fn writer_sql(&self, i: usize) -> PathBuf {
        self.dir.join(format!("writer-{i}.sql"))
    }
    /// The Rust verifier's two exports: the rows, then the head.
    pub fn exports(&self, db: &str, tz: &str) -> [Command; 2] {
        [
            sql::export_rows(self.profile),
            sql::export_head(self.profile),
        ]
        .map(|q| self.psql_tz(db, tz, Effect::ReadOnly, &[q]))
    }
    /// The SQL verifier function, called in `db` under session TimeZone `tz`.
    pub fn sql_verifier(&self, db: &str, tz: &str) -> Command {
        self.psql_tz(db, tz, Effect::ReadOnly, &[sql::sql_verifier(self.profile)])
    }
    /// The server's version and whether the role may create databases.
    pub fn server_lookup(&self) -> Command {
        self.psql(&self.conn.maintenance_db, Effect::ReadOnly, &[sql::SERVER])
    }
    /// The names of every scratch database on the server (this task's prefix).
    pub fn list_scratch(&self) -> Command {
        self.psql(
            &self.conn.maintenance_db,
            Effect::ReadOnly,
            &[&sql::scratch_databases()],
        )
    }
    /// A scratch copy of `from`; FILE_COPY (PostgreSQL 15+) copies the files,
    /// where 15's default WAL_LOG writes every page through the WAL, which
    /// was slower here at every size tried.
    pub fn create_copy(&self, name: &str, from: &str, file_copy: bool) -> Command {
        let strategy = if file_copy { " STRATEGY FILE_COPY" } else { "" };
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{from}\"{strategy}");
        self.psql(&self.conn.maintenance_db, Effect::Mutating, &[&sql])
    }
    /// Every scratch database this run may have made, dropped (a server target's teardown).
    pub fn drop_all(&self) -> Command {
        let stmts: Vec<String> = ["kat", "src", "restored"]
            .iter()
            .map(|n| n.to_string())
            .chain((1..=12).map(|i| format!("n{i}")))
            .map(|n| format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db(&n)))
            .collect();
        let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
        self.psql(&self.conn.maintenance_db, Effect::Mutating, &refs)
    }
    pub fn target_label(&self) -> String {
        match (&self.embedded, &self.conn.host) {
            (Some(e), _) => format!("embedded cluster on 127.0.0.1:{}", e.port),
            (None, Some(h)) => {
                format!("server {h}:{}", self.conn.port.as_deref().unwrap_or("5432"))
            }
            (None, None) => "server from the PG* environment".into(),
        }
    }
}

fn pg_env_target() -> bool {
    ["PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Resolves the flags into a [`Setup`] with read-only look-ups only.
/// `evidence` is where a pass is recorded (the log and the tag), if anywhere.
pub fn setup(
    args: &BackupSmoke,
    verbose: bool,
    format: Format,
    evidence: Option<(Log, String)>,
) -> Result<Setup> {
    if args.dump.is_none() && args.rows < workload::MIN_ROWS {
        bail!("--rows must be at least {} (the negative controls need an oldest, a middle and a newest row, and row 5's `|`)", workload::MIN_ROWS);
    }
    let dump = match &args.dump {
        Some(f) => {
            let f = std::path::absolute(f).with_context(|| format!("resolving {}", f.display()))?;
            if !f.is_file() {
                bail!("--dump {}: no such file", f.display());
            }
            Some(f)
        }
        None => None,
    };
    let dump_manifest = dump
        .as_ref()
        .map(|d| PathBuf::from(format!("{}.manifest.json", d.display())))
        .filter(|m| m.is_file());
    let bindir = target::find_bindir();
    let (dir, run_id) = target::work_dir();
    let (embedded, password, conn) = if args.database_url.is_none() && !pg_env_target() {
        target::plain_dir(&dir)?;
        let run_as = crate::repo::is_root().then(|| "postgres".to_string());
        let e = Embedded {
            dir: dir.clone(),
            bindir: bindir
                .clone()
                .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into()),
            port: target::free_port()?,
            run_as,
        };
        let password = target::random_secret()?;
        let conn = e.conn(&password);
        (Some(e), Some(password), conn)
    } else {
        let conn = match &args.database_url {
            Some(url) => target::parse_url(url)?,
            None => Conn {
                maintenance_db: std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into()),
                ..Conn::default()
            },
        };
        target::db_name(&conn.maintenance_db)?;
        (None, None, conn)
    };
    let sql_dir = match args.profile {
        Profile::Default => crate::repo::workspace_root().join("deployments/sql"),
        Profile::Certctl => crate::repo::workspace_root().join("deployments/sql/certctl"),
    };
    let leftover_dirs = if embedded.is_some() {
        target::leftover_dirs()
    } else {
        Vec::new()
    };
    let client = |t| target::client(bindir.as_deref(), t);
    Ok(Setup {
        profile: args.profile,
        rows: args.rows,
        dump,
        dump_manifest,
        checkpoint: None,
        embedded,
        password,
        conn,
        psql: client("psql"),
        pg_dump: client("pg_dump"),
        pg_restore: client("pg_restore"),
        dir,
        run_id,
        sql_dir,
        destructive: args.destructive,
        leftover_dirs,
        evidence,
        verbose,
        format,
        quiet: false,
        missing: Vec::new(),
    }
    .with_preflight())
}

/// The checkpoint to hold the restored chain to: `--checkpoint FILE`, else
/// (for `--dump`) the last one recorded in `log` for this profile. Reads only.
pub fn checkpoint(args: &BackupSmoke, log: Option<&Log>) -> Result<Option<Checkpoint>> {
    let profile = format!("{:?}", args.profile).to_lowercase();
    if let Some(f) = &args.checkpoint {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--checkpoint {}: cannot read it", f.display()))?;
        let mut c: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "--checkpoint {}: not a checkpoint (a JSON object with profile, rows and head)",
                f.display()
            )
        })?;
        if c.profile != profile {
            bail!(
                "--checkpoint {} is for profile {}, not {profile}: pass the matching --profile",
                f.display(),
                c.profile
            );
        }
        c.source = f.display().to_string();
        return Ok(Some(c));
    }
    let (Some(log), Some(_)) = (log, &args.dump) else {
        return Ok(None);
    };
    // Only dumps of the real database: a generated workload is a new chain each run.
    let records = log.records().context("reading the recorded checkpoints")?;
    Ok(records
        .iter()
        .rev()
        .filter(|r| r.action == "backup-smoke" && r.outcome == "success")
        .filter(|r| r.reason.contains(", dump "))
        .find_map(|r| {
            Checkpoint::from_reason(&r.reason, &profile).map(|mut c| {
                c.source = format!("the {} audit record of {}", log.env, r.ts);
                c
            })
        }))
}

/// Missing programs, each with how to get it.
fn preflight(s: &Setup) -> Vec<String> {
    let how = "run `cargo xtask setup` (Debian package postgresql-15)";
    let mut missing = Vec::new();
    for p in [&s.psql, &s.pg_dump, &s.pg_restore] {
        if !Path::new(p).is_file() && which::which(p).is_err() {
            missing.push(format!("{p} not found: {how}"));
        }
    }
    if let Some(e) = &s.embedded {
        for t in ["initdb", "pg_ctl"] {
            if !e.bindir.join(t).is_file() {
                missing.push(format!("{} not found (the embedded cluster needs the PostgreSQL server binaries): {how}", e.bindir.join(t).display()));
            }
        }
        if let Some(u) = &e.run_as {
            if target::user_ids(u).is_none() {
                missing.push(format!(
                    "no `{u}` user to run the cluster as (initdb refuses root): {how}"
                ));
            }
            if which::which("runuser").is_err() {
                missing.push("runuser not found (to run initdb as postgres when root): apt-get install util-linux".into());
            }
        }
    }
    missing
}
