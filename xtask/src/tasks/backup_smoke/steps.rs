//! The plan's steps, in order. A command that only has to succeed is a
//! `Run` step, run by the executor; an action ([`super::Smoke`]) reads what
//! its commands print and records a check, and its text names every
//! command it runs. The dry run prints exactly these.

use super::{target, workload, Setup, KAT_TZ, OTHER_TZ};
use crate::plan::{Command, Effect, Plan, Step};

/// A command in an action's text: without the connection settings every
/// database command carries (the `Run` steps and the facts show them),
/// but with its session TimeZone where that is not UTC.
fn bare(c: &Command) -> String {
    let tz = c
        .env
        .iter()
        .find(|e| e.name == "PGTZ")
        .map(|e| e.value.shown())
        .filter(|z| *z != "UTC");
    match tz {
        Some(z) => format!("PGTZ={z} {}", c.display_bare()),
        None => c.display_bare(),
    }
}

fn shown(cmds: &[Command]) -> String {
    cmds.iter().map(bare).collect::<Vec<_>>().join(" && ")
}

fn act(plan: &mut Plan, id: &str, what: String, effect: Effect) {
    plan.step(Step::action(id, what, effect));
}

fn run(plan: &mut Plan, why: &str, c: Command) {
    plan.step(Step::run(why, c));
}

pub(super) fn steps(s: &Setup, plan: &mut Plan) {
    if !s.missing.is_empty() {
        let what = format!("stop with exit 2: {}", s.missing.join("; "));
        act(plan, "preflight", what, Effect::ReadOnly);
    }
    let owner = if s.embedded.as_ref().is_some_and(|e| e.run_as.is_some()) {
        ", owned by postgres, with the superuser's password file"
    } else {
        ""
    };
    let what = format!(
        "create the work directory {} (mode 0700{owner})",
        s.dir.display()
    );
    act(plan, "prepare", what, Effect::Mutating);
    if s.destructive {
        let what = match &s.embedded {
            Some(e) => {
                let stop = |d: &std::path::PathBuf| {
                    target::Embedded { dir: d.clone(), ..e.clone() }.stop()
                };
                let stops: Vec<Command> = s.leftover_dirs.iter().map(stop).collect();
                format!("remove {} leftover work directories of interrupted runs, stopping a postmaster first where one runs: {}", s.leftover_dirs.len(), shown(&stops))
            }
            None => format!("drop scratch databases of interrupted runs ({}*, started over six hours ago): {}, then DROP DATABASE each", target::PREFIX, bare(&s.list_scratch())),
        };
        act(plan, "clean-leftovers", what, Effect::Mutating);
    }
    if let Some(e) = &s.embedded {
        run(plan, "create the throwaway cluster", e.initdb());
        run(
            plan,
            "start it on loopback and wait until it accepts connections",
            e.start(),
        );
    }
    let mut server = vec![s.server_lookup()];
    if s.embedded.is_none() {
        server.push(s.list_scratch());
    }
    let what = format!("check the server is PostgreSQL 13 or newer and the role may CREATE DATABASE; name leftover scratch databases: {}", shown(&server));
    act(plan, "server", what, Effect::ReadOnly);
    if s.dump.is_none() {
        make_and_dump(s, plan);
    } else {
        let what = format!(
            "check the dump's table of contents: {}",
            bare(&s.pg_restore_list())
        );
        act(plan, "list", what, Effect::ReadOnly);
    }
    restore_and_check(s, plan);
}

/// The known answer, the workload, verification, dump, manifest, and the data loss.
fn make_and_dump(s: &Setup, plan: &mut Plan) {
    let (kat, src) = (s.db("kat"), s.db("src"));
    let schema = [s.chain_sql(), s.events_sql()];
    run(plan, "create the known-answer database", s.create_db(&kat));
    run(plan, "load the schema into it", s.files(&kat, &schema));
    run(plan, "create the source database", s.create_db(&src));
    run(
        plan,
        "load the schema, trigger and verifier",
        s.files(&src, &schema),
    );
    let (serial_rows, concurrent_rows) = workload::split(s.rows);
    let w_writers = workload::writers(s.profile, s.rows);
    // Written by an action, a block at a time: at millions of rows the
    // script would not fit in the plan's memory.
    let what = format!(
        "write the serial workload ({serial_rows} rows) to {}",
        s.dir.join("workload.sql").display()
    );
    act(plan, "write-workload", what, Effect::Mutating);
    for (i, script) in w_writers.iter().enumerate() {
        plan.step(Step::WriteFile {
            path: s.writer_sql(i),
            contents: script.clone().into_bytes(),
            what: format!("concurrent writer {i}'s rows"),
        });
    }
    let load = s.files_tz(&kat, KAT_TZ, &[s.kat_sql()]);
    let what = format!("known answer: the file's rows must give the head written in it, and the Rust verifier the same from the exported rows: {} && {}", bare(&load), shown(&s.exports(&kat, KAT_TZ)));
    act(plan, "known-answer", what, Effect::Mutating);
    let why = format!("workload: {serial_rows} rows in one session");
    run(plan, &why, s.files(&src, &[s.dir.join("workload.sql")]));
    let writers: Vec<String> = (0..w_writers.len())
        .map(|i| format!("{} &", bare(&s.files(&src, &[s.writer_sql(i)]))))
        .collect();
    let what = format!(
        "workload: {} rows from {} sessions at once: {}",
        concurrent_rows,
        writers.len(),
        writers.join(" ")
    );
    act(plan, "concurrent-writers", what, Effect::Mutating);
    run(plan, "drop the known-answer database", s.drop_db(&kat));
    let what = format!(
        "verify the chain before the dump, in SQL and in Rust: {} && {}",
        bare(&s.sql_verifier(&src, "UTC")),
        shown(&s.exports(&src, "UTC"))
    );
    act(plan, "verify-before", what, Effect::ReadOnly);
    let what = format!(
        "dump (exit 6 if pg_dump cannot): {}",
        bare(&s.pg_dump(&src))
    );
    act(plan, "dump", what, Effect::Mutating);
    let what = format!("write the manifest (count, head, last row hash, chain digest, dump SHA-256) outside the database: {}", s.manifest_file().display());
    act(plan, "manifest", what, Effect::Mutating);
    let what = format!(
        "check the dump's table of contents: {}",
        bare(&s.pg_restore_list())
    );
    act(plan, "list", what, Effect::ReadOnly);
    run(
        plan,
        "drop the source database (the data loss)",
        s.drop_db(&src),
    );
}

/// The restore, every assertion on it, the negative controls, the append, teardown and verdict.
fn restore_and_check(s: &Setup, plan: &mut Plan) {
    let restored = s.db("restored");
    run(
        plan,
        "create a fresh database to restore into",
        s.create_db(&restored),
    );
    let what = format!(
        "restore (exit 6 if it does not): {}",
        bare(&s.pg_restore(&restored))
    );
    act(plan, "restore", what, Effect::Mutating);
    let why = "install the verifier from the repository (a dump never vouches for itself)";
    run(plan, why, s.files(&restored, &[s.chain_sql()]));
    let triggers = s.psql(&restored, Effect::ReadOnly, &[super::sql::TRIGGERS]);
    let what = format!(
        "assert: count equal, head byte-exact, head = last row, SQL verifier clean over \
         every row, Rust verifier agrees, manifest matches, triggers enabled: {} && {} && {}",
        bare(&s.sql_verifier(&restored, "UTC")),
        shown(&s.exports(&restored, "UTC")),
        bare(&triggers)
    );
    // certctl: what its own verifier would report, in the source's collation.
    let what = match (s.profile, &s.dump) {
        (crate::flags::Profile::Certctl, Some(_)) => format!(
            "{what} && {} && {}",
            bare(&s.source_ddl()),
            bare(&s.certctl_order(&restored, "<the source's collation>"))
        ),
        _ => what,
    };
    act(plan, "assert-restored", what, Effect::ReadOnly);
    let what = format!(
        "assert: the same results under session TimeZone {OTHER_TZ}: {} && {}",
        bare(&s.sql_verifier(&restored, OTHER_TZ)),
        shown(&s.exports(&restored, OTHER_TZ))
    );
    act(plan, "assert-timezone", what, Effect::ReadOnly);
    if s.dump.is_none() {
        let copy = s.db("n<N>");
        let damage = s.psql(
            &copy,
            Effect::Mutating,
            &[
                "ALTER TABLE audit_events DISABLE TRIGGER USER",
                "ALTER TABLE audit_chain_head DISABLE TRIGGER USER",
                "<the damage>",
            ],
        );
        let what = format!(
            "negative controls: damage 9 scratch copies of the restored database (modify, \
             delete middle/oldest/newest, swap, truncate, roll back the head, cut tail and \
             head, move a separator), each with its triggers disabled in that copy only; the \
             verifiers and the manifest must catch each. Per copy: {} && {} && the verifiers && {}",
            bare(&s.create_copy(&copy, &restored, false)),
            bare(&damage),
            bare(&s.drop_db(&copy))
        );
        act(plan, "negative-controls", what, Effect::Mutating);
    }
    let columns = s.psql(&restored, Effect::ReadOnly, &[super::sql::COLUMNS]);
    let insert = "COPY (INSERT INTO public.audit_events (<columns>) SELECT <the newest row's, \
                  a fresh id> ... RETURNING seq, prev_hash, row_hash) TO STDOUT";
    let append = s.psql(&restored, Effect::Mutating, &[insert]);
    let what = format!(
        "assert: a new row (the newest row's fields under a fresh id, which the table's own \
         constraints accept) chains onto the old head and the chain still verifies; no row is \
         updated or deleted: {} && {} && {}",
        bare(&columns),
        bare(&append),
        bare(&s.sql_verifier(&restored, "UTC"))
    );
    act(plan, "assert-append", what, Effect::Mutating);
    let stop = match &s.embedded {
        Some(e) => e.stop(),
        None => s.drop_all(),
    };
    let what = format!(
        "teardown (also on failure or interruption): {} and remove {}",
        bare(&stop),
        s.dir.display()
    );
    act(plan, "teardown", what, Effect::Mutating);
    let what = "fail with exit 6 if any check failed or a negative control went unnoticed";
    act(plan, "verdict", what.into(), Effect::ReadOnly);
}
