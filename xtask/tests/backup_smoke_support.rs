//! Fixtures for the backup-smoke tests (included by each `backup_smoke_*.rs`
//! with `#[path]`): the real binary with a JSON report, and a throwaway
//! PostgreSQL cluster of the test's own, for the server and `--dump` modes.
//! Every test gets its own cluster, so they run in parallel. A machine
//! without PostgreSQL fails these tests with the reason; nothing is skipped.
//! Compiled on its own too, as a test crate without tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::cmd::run as run_command;
use xtask::flags::Profile;
use xtask::plan::Effect;
use xtask::tasks::backup_smoke::target::{self, Conn, Embedded};
use xtask::tasks::backup_smoke::workload;

/// The server binaries, or a failed test saying how to get them.
pub fn require_postgres() -> PathBuf {
    match target::find_bindir() {
        Some(b) => b,
        None => panic!(
            "PostgreSQL is not installed (no initdb and pg_ctl under /usr/lib/postgresql/*/bin or on PATH): \
             run `cargo xtask setup`, which installs postgresql-15; these tests do not skip"
        ),
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One run of `xtask --format json backup-smoke ...`.
pub struct Run {
    pub out: Output,
    /// The report: the `report` of stdout's one JSON document.
    pub report: serde_json::Value,
    pub pid: u32,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn text(&self) -> String {
        text(&self.out)
    }
    /// The status of assertion `name` ("pass", "fail", "skip").
    pub fn assertion(&self, name: &str) -> String {
        self.report["assertions"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .map(|x| x["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no assertion {name} in the report:\n{}", self.text()))
    }
    pub fn control(&self, name: &str) -> serde_json::Value {
        self.report["negative_controls"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no negative control {name}:\n{}", self.text()))
    }
    /// Did the run leave its work directory behind?
    pub fn left_work_dir(&self) -> Vec<PathBuf> {
        let prefix = format!("xtask-backup-smoke-{}-", self.pid);
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }
}

/// Runs the smoke with `args` (after `backup-smoke`), the PG* variables
/// removed unless `env` sets them.
pub fn smoke(global: &[&str], args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["--format", "json"])
        .args(global)
        .arg("backup-smoke")
        .args(args);
    for v in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGSERVICE",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "GITHUB_ACTIONS",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.current_dir(xtask::workspace_root());
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    // `--format json` prints one document; the smoke's report is in it.
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let report = doc["report"].clone();
    Run { out, report, pid }
}

/// A cluster of the test's own, torn down on drop.
pub struct Cluster {
    pub e: Embedded,
    pub password: String,
    pub conn: Conn,
    psql: String,
    pg_dump: String,
}

impl Cluster {
    pub fn start() -> Cluster {
        let bindir = require_postgres();
        let (dir, _) = target::work_dir();
        let dir = PathBuf::from(format!("{}-test", dir.display()));
        let run_as = xtask::is_root().then(|| "postgres".to_string());
        let e = Embedded {
            dir,
            bindir: bindir.clone(),
            port: target::free_port().unwrap(),
            run_as,
        };
        let password = target::random_secret().unwrap();
        e.prepare(&password).unwrap();
        let c = Cluster {
            conn: e.conn(&password),
            password,
            psql: target::client(Some(&bindir), "psql"),
            pg_dump: target::client(Some(&bindir), "pg_dump"),
            e,
        };
        run_command(&c.e.initdb(), false).expect("initdb");
        run_command(&c.e.start(), false).expect("pg_ctl start");
        c
    }

    /// Statements in `db`; their output (COPY ... TO STDOUT for data).
    pub fn psql(&self, db: &str, sql: &[&str]) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// [`Cluster::psql`], where failing is an answer: the error line.
    pub fn try_psql(&self, db: &str, sql: &[&str]) -> Result<String, String> {
        let cmd = self
            .conn
            .psql(&self.psql, db, Effect::Mutating, sql)
            .env("PGTZ", "UTC");
        run_command(&cmd, false).map_err(|e| format!("{e:#}"))
    }

    pub fn databases(&self) -> Vec<String> {
        let out = self.psql(
            "postgres",
            &["COPY (SELECT datname FROM pg_database ORDER BY 1) TO STDOUT"],
        );
        out.lines().map(str::to_string).collect()
    }

    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}",
            self.e.port
        )
    }

    /// A database with the profile's schema and `rows` rows of the workload.
    pub fn chain(&self, db: &str, profile: Profile, rows: u32) {
        self.create(db);
        self.fill(db, profile, rows);
    }

    /// An empty UTF8 database.
    pub fn create(&self, db: &str) {
        self.psql("postgres", &[&format!("CREATE DATABASE \"{db}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")]);
    }

    /// The profile's schema and `rows` rows of the workload, written
    /// through the chain trigger (the client never sends a hash).
    pub fn fill(&self, db: &str, profile: Profile, rows: u32) {
        let sql = match profile {
            Profile::Default => xtask::workspace_root().join("deployments/sql"),
            Profile::Certctl => xtask::workspace_root().join("deployments/sql/certctl"),
        };
        let files = [sql.join("audit_chain.sql"), sql.join("audit_events.sql")];
        run_command(&self.conn.psql_files(&self.psql, db, &files), false)
            .expect("loading the schema");
        let w = workload::build(profile, rows);
        let script = self.e.dir.join(format!("{db}.sql"));
        let all = std::iter::once(w.serial)
            .chain(w.writers)
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&script, all).unwrap();
        run_command(&self.conn.psql_files(&self.psql, db, &[script]), false)
            .expect("loading the workload");
    }

    /// `pg_dump --format=custom` of `db` into `dir`.
    pub fn dump(&self, db: &str, dir: &Path) -> PathBuf {
        let file = dir.join(format!("{db}.dump"));
        let cmd = self
            .conn
            .cmd(&self.pg_dump, db, Effect::Mutating)
            .args(["--format=custom", "--no-owner", "--no-acl", "--file"])
            .arg(file.display().to_string());
        run_command(&cmd, false).expect("pg_dump");
        file
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run_command(&self.e.stop(), false);
        let _ = std::fs::remove_dir_all(&self.e.dir);
    }
}
