//! `backup-smoke`: prove that a PostgreSQL backup restores with its audit
//! hash chain byte-exact, and that the checks would notice if it did not.
//!
//! What it does: boots a throwaway cluster (or uses a server through
//! `--database-url` / `PG*`), loads the audit schema from `deployments/sql/`,
//! checks a known answer, writes a varied workload (serial and concurrent),
//! verifies the chain, writes a manifest outside the database, dumps with
//! `pg_dump --format=custom`, checks the dump with `pg_restore --list`, drops
//! the database, restores into a fresh one with `pg_restore --exit-on-error`,
//! and asserts: count, head byte-exact, head = last row, the SQL verifier
//! clean over every row, an independent Rust verifier agrees, the manifest
//! matches, triggers enabled, the same results under a non-UTC TimeZone,
//! and a new row chains onto the old head. Negative controls then damage
//! scratch copies in nine ways and must be caught. `--dump FILE` restores
//! and verifies an existing dump instead of making one.
//!
//! What it needs: psql, pg_dump and pg_restore; for the default embedded
//! cluster also initdb and pg_ctl (`cargo xtask setup` installs
//! postgresql-15). As root, the cluster runs as the `postgres` user.
//!
//! What it never touches: on a server, only databases named
//! `xtask_bsmoke_<run>_*` that this run creates (it drops them again; the
//! database in the URL is only connected to). Leftovers of interrupted runs
//! are named in the plan and removed only with `--destructive`. The
//! embedded cluster lives in its own temp directory, removed even on failure.

pub mod canon;
mod checks;
pub mod copy;
pub mod negative;
mod phases;
pub mod report;
mod run;
pub mod sql;
mod steps;
pub mod target;
pub mod verify;
pub mod workload;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::audit::Log;
use crate::ctx::Ctx;
use crate::engine::ComposeCli;
use crate::flags::{BackupSmoke, Format, Profile};
use crate::plan::{Command, Effect, Plan};
pub use run::Smoke;
use target::{Conn, Embedded};

/// The zone of the TimeZone check: a +05:45 offset, far from UTC and not whole hours.
pub const OTHER_TZ: &str = "Asia/Kathmandu";
/// The zone the known answer is loaded under (+13:45 in January).
pub const KAT_TZ: &str = "Pacific/Chatham";

/// Everything the plan and its actions need, resolved while planning.
#[derive(Debug, Clone)]
pub struct Setup {
    pub profile: Profile,
    pub rows: u32,
    /// `--dump FILE`: verify this dump instead of making one.
    pub dump: Option<PathBuf>,
    /// `FILE.manifest.json` beside that dump, if there is one.
    pub dump_manifest: Option<PathBuf>,
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
    /// psql running statements in `db` under session TimeZone `tz`.
    pub fn psql_tz(&self, db: &str, tz: &str, effect: Effect, sql: &[&str]) -> Command {
        self.conn.psql(&self.psql, db, effect, sql).env("PGTZ", tz)
    }
    pub fn psql(&self, db: &str, effect: Effect, sql: &[&str]) -> Command {
        self.psql_tz(db, "UTC", effect, sql)
    }
    pub fn files(&self, db: &str, files: &[PathBuf]) -> Command {
        self.files_tz(db, "UTC", files)
    }
    pub fn files_tz(&self, db: &str, tz: &str, files: &[PathBuf]) -> Command {
        self.conn.psql_files(&self.psql, db, files).env("PGTZ", tz)
    }
    pub fn create_db(&self, name: &str, template: Option<&str>) -> Command {
        let sql = match template {
            None => format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ),
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        };
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

pub fn run(ctx: &Ctx, args: BackupSmoke) -> Result<()> {
    let (plan, mut smoke) = plan(ctx, &args)?;
    let result = ctx.finish(&plan, &mut smoke);
    if !ctx.global.dry_run {
        smoke.print_report(result.as_ref().err());
    }
    result
}

/// Runs the smoke in this process on the embedded default with `rows`
/// rows, printing nothing, and returns its report (the benchmark's entry
/// point). A failed smoke is an error that carries the report's failures.
pub fn measure(rows: u32) -> Result<report::Report> {
    let rows = rows.to_string();
    let flags = crate::flags::Xtask::try_parse_from([
        "xtask",
        "--format",
        "json",
        "backup-smoke",
        "--rows",
        &rows,
    ])?;
    let crate::flags::Task::BackupSmoke(args) = flags.task else {
        unreachable!("parsed backup-smoke")
    };
    let ctx = Ctx {
        global: flags.global,
    };
    let (plan, mut smoke) = plan(&ctx, &args)?;
    smoke.s.quiet = true;
    let applied = crate::exec::apply(&plan, false, &mut smoke);
    smoke.print_report(applied.as_ref().err());
    applied.with_context(|| format!("backup-smoke with {rows} rows"))?;
    Ok(smoke.report.clone())
}

fn pg_env_target() -> bool {
    ["PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Resolves the flags into a [`Setup`] with read-only look-ups only.
pub fn setup(ctx: &Ctx, args: &BackupSmoke) -> Result<Setup> {
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
    let evidence = match &args.tag {
        Some(tag) => {
            crate::validate::tag(tag)?;
            let cfg = ctx.config()?;
            let env = args.env.clone().unwrap_or_else(|| "staging".into());
            Some((ctx.log(&cfg, &env)?, tag.clone()))
        }
        None => None,
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
        verbose: ctx.global.verbose,
        format: ctx.global.format,
        quiet: false,
    })
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

/// Builds the plan. Reads the filesystem and asks the OS for a free port; changes nothing.
pub fn plan(ctx: &Ctx, args: &BackupSmoke) -> Result<(Plan, Smoke)> {
    let s = setup(ctx, args)?;
    let mut plan = Plan::new("backup-smoke", None);
    let problems = preflight(&s);
    let (_, warnings) = crate::preflight::Report {
        problems,
        compose: ComposeCli::V2Plugin,
    }
    .enforce(ctx.global.dry_run)?;
    plan.warnings
        .extend(warnings.into_iter().map(|w| format!("preflight: {w}")));
    plan.fact("target", s.target_label(), "flags and PG* environment");
    plan.fact(
        "profile",
        format!("{:?}", s.profile).to_lowercase(),
        "--profile",
    );
    match &s.dump {
        Some(d) => {
            plan.fact("dump to verify", d.display().to_string(), "--dump");
            let m = s
                .dump_manifest
                .as_ref()
                .map_or("none (count and head cannot be compared)".into(), |m| {
                    m.display().to_string()
                });
            plan.fact("manifest beside the dump", m, "file check");
        }
        None => plan.fact("workload", format!("{} rows", s.rows), "--rows"),
    }
    if let Some(e) = &s.embedded {
        plan.fact("free loopback port", e.port.to_string(), "asked the OS");
        plan.fact(
            "server binaries",
            e.bindir.display().to_string(),
            "/usr/lib/postgresql or PATH",
        );
        if let Some(u) = &e.run_as {
            plan.fact(
                "cluster runs as",
                u.clone(),
                "running as root: initdb refuses root",
            );
        }
    }
    plan.fact("work directory", s.dir.display().to_string(), "temp dir");
    if !s.leftover_dirs.is_empty() {
        let list = s
            .leftover_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let what = if s.destructive {
            "will be removed (--destructive)"
        } else {
            "left alone; pass --destructive to remove them"
        };
        plan.fact(
            "leftovers of interrupted runs",
            format!("{list}: {what}"),
            "temp dir",
        );
    }
    steps::steps(&s, &mut plan);
    let smoke = Smoke::new(s);
    Ok((plan, smoke))
}
