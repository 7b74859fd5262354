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
//!
//! How it runs: [`plan`] lists every step. Fixed commands (initdb, pg_ctl,
//! CREATE/DROP DATABASE, loading SQL, the serial workload) are `Run` steps
//! the executor runs itself; the checks are actions ([`Smoke`]) whose
//! commands go through [`crate::cmd`] and are named in the step's text.
//! With `--tag`, the plan's audit record appends the run's outcome; only a
//! pass is the promotion gate's evidence.

mod append;
mod checks;
mod conn;
mod controls;
pub mod negative;
mod phases;
pub mod report;
mod run;
mod setup;
pub mod sql;
mod steps;
pub mod target;
pub mod verify;
pub mod workload;

pub use backup_verify::copy;

use anyhow::Result;

use crate::audit::Log;
use crate::ctx::Ctx;
use crate::flags::{BackupSmoke, Format};
use crate::plan::{Plan, RecordSpec};
pub use run::Smoke;
pub use setup::{setup, Setup};

/// The zone of the TimeZone check: a +05:45 offset, far from UTC and not whole hours.
pub const OTHER_TZ: &str = "Asia/Kathmandu";
/// The zone the known answer is loaded under (+13:45 in January).
pub const KAT_TZ: &str = "Pacific/Chatham";

pub fn run(ctx: &Ctx, args: BackupSmoke) -> Result<()> {
    let (plan, mut smoke) = plan(ctx, &args)?;
    ctx.finish(&plan, &mut smoke)
}

/// Builds the plan. Reads the filesystem and asks the OS for a free port; changes nothing.
pub fn plan(ctx: &Ctx, args: &BackupSmoke) -> Result<(Plan, Smoke)> {
    let evidence = match &args.tag {
        Some(tag) => {
            crate::validate::tag(tag)?;
            let cfg = ctx.config()?;
            let env = args.env.as_deref().unwrap_or("staging");
            Some((ctx.log(&cfg, env)?, tag.clone()))
        }
        None => None,
    };
    let (mut plan, smoke) = build(args, ctx.global.verbose, ctx.global.format, evidence)?;
    // Evidence for bytes, not a name: the digest the tag points to now.
    if let (Some(tag), Some(rec)) = (&args.tag, plan.record.as_mut()) {
        let cfg = ctx.config()?;
        let env = cfg.env(&rec.env)?;
        let each = crate::engine::registry::each_of_env(env, tag);
        match crate::engine::registry::of_env(env, tag).and_then(|d| Ok((d, each?))) {
            Ok((d, each)) => {
                rec.to_digest = d.clone();
                rec.to_digests = each.clone();
                for (s, d) in &each {
                    plan.fact(
                        "digest under test",
                        format!("{s}: {d}"),
                        "the registry (read-only)",
                    );
                }
                if let Some(d) = d.filter(|_| each.is_empty()) {
                    plan.fact("digest under test", d, "the registry (read-only)");
                }
            }
            Err(e) => plan.fact(
                "digest under test",
                format!("unknown ({e:#}): the record names no digest"),
                "the registry",
            ),
        }
    }
    Ok((plan, smoke))
}

fn build(
    args: &BackupSmoke,
    verbose: bool,
    format: Format,
    evidence: Option<(Log, String)>,
) -> Result<(Plan, Smoke)> {
    let mut s = setup(args, verbose, format, evidence)?;
    s.checkpoint = setup::checkpoint(args, s.evidence.as_ref().map(|(l, _)| l))?;
    // `--env` names the environment whose chain takes the evidence.
    let mut plan = Plan::new("backup-smoke", args.env.as_deref());
    plan.warnings
        .extend(s.missing.iter().map(|w| format!("preflight: {w}")));
    facts(&s, &mut plan);
    steps::steps(&s, &mut plan);
    if let Some((log, tag)) = &s.evidence {
        // The promotion gate's evidence: `success` only when every check passed.
        plan.env = Some(log.env.clone());
        plan.record = Some(RecordSpec {
            env: log.env.clone(),
            log: log.path.clone(),
            sink: log.sink.clone(),
            action: "backup-smoke".into(),
            from: None,
            to: Some(tag.clone()),
            reason: match &s.dump {
                Some(d) => format!("profile {}, dump {}", s.profile_name(), d.display()),
                None => format!(
                    "profile {}, {} rows dumped and restored",
                    s.profile_name(),
                    s.rows
                ),
            },
            from_digest: None,
            to_digest: None,
            from_digests: Default::default(),
            to_digests: Default::default(),
            to_local: Default::default(),
            repository: None,
            force: false,
            sets_of: None,
            notify: None,
        });
    }
    let smoke = Smoke::new(s);
    Ok((plan, smoke))
}

/// What planning looked up, shown by the dry run.
fn facts(s: &Setup, plan: &mut Plan) {
    plan.fact("target", s.target_label(), "flags and PG* environment");
    let env: Vec<String> = s
        .server_lookup()
        .env
        .iter()
        .filter(|e| e.name != "PGTZ")
        .map(|e| format!("{}={}", e.name, crate::cmd::quote(e.value.shown())))
        .collect();
    plan.fact(
        "every database command's environment",
        format!("{} PGTZ=UTC (or as named)", env.join(" ")),
        "flags and PG* environment",
    );
    plan.fact("profile", s.profile_name(), "--profile");
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
            if s.dump_manifest.is_none() {
                plan.fact(
                    "manifest to write",
                    format!("{}.manifest.json, if the chain verifies", d.display()),
                    "--dump",
                );
            }
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
    let cp = s.checkpoint.as_ref().map_or_else(
        || "none".to_string(),
        |c| format!("{} rows, head {} (from {})", c.rows, c.head, c.source),
    );
    plan.fact(
        "checkpoint to hold",
        cp,
        "--checkpoint, or the environment's last record",
    );
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
}
