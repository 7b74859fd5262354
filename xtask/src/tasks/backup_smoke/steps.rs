//! The plan's steps, in order: every command with its arguments, and every
//! action with what it does. The dry run prints exactly these.

use std::path::PathBuf;

use super::{target, workload, Setup, KAT_TZ, OTHER_TZ};
use crate::plan::{Effect, Plan, Step};

pub(super) fn steps(s: &Setup, plan: &mut Plan) {
    let act = |plan: &mut Plan, id: &str, what: String, effect| {
        plan.step(Step::action(id, what, effect));
    };
    let files = |db: &str, f: &[PathBuf]| s.files(db, f);
    act(
        plan,
        "prepare",
        format!(
            "create the work directory {} (mode 0700{})",
            s.dir.display(),
            if s.embedded.as_ref().is_some_and(|e| e.run_as.is_some()) {
                ", owned by postgres, with the superuser's password file"
            } else {
                ""
            }
        ),
        Effect::Mutating,
    );
    if s.destructive {
        let what = match &s.embedded {
            Some(_) => format!("remove leftovers of interrupted runs: {} work directories (stop their postmaster first)", s.leftover_dirs.len()),
            None => format!("drop leftover scratch databases of interrupted runs ({}*)", target::PREFIX),
        };
        act(plan, "clean-leftovers", what, Effect::Mutating);
    }
    if let Some(e) = &s.embedded {
        plan.step(Step::run("create the throwaway cluster", e.initdb()));
        plan.step(Step::run(
            "start it on loopback and wait until it accepts connections",
            e.start(),
        ));
    }
    act(
        plan,
        "server",
        format!(
            "look up the server version{} and leftover scratch databases",
            if s.embedded.is_none() {
                ", check the role may CREATE DATABASE,"
            } else {
                ""
            }
        ),
        Effect::ReadOnly,
    );
    let restored = s.db("restored");
    if s.dump.is_none() {
        let kat = s.db("kat");
        plan.step(Step::run(
            "create the known-answer database",
            s.create_db(&kat, None),
        ));
        plan.step(Step::run(
            "load the schema into it",
            files(&kat, &[s.chain_sql(), s.events_sql()]),
        ));
        act(plan, "known-answer", format!("known answer: {} under TimeZone {KAT_TZ} must give the head written in the file; the Rust verifier must agree from the exported rows", s.kat_sql().display()), Effect::Mutating);
        plan.step(Step::run("drop the known-answer database", s.drop_db(&kat)));
        let src = s.db("src");
        plan.step(Step::run(
            "create the source database",
            s.create_db(&src, None),
        ));
        plan.step(Step::run(
            "load the schema, trigger and verifier",
            files(&src, &[s.chain_sql(), s.events_sql()]),
        ));
        let w = workload::build(s.profile, s.rows);
        plan.step(Step::WriteFile {
            path: s.dir.join("workload.sql"),
            contents: w.serial.clone().into_bytes(),
            what: format!("the serial workload ({} rows)", w.serial_rows),
        });
        for (i, script) in w.writers.iter().enumerate() {
            plan.step(Step::WriteFile {
                path: s.dir.join(format!("writer-{i}.sql")),
                contents: script.clone().into_bytes(),
                what: format!("concurrent writer {i}'s rows"),
            });
        }
        let serial = s.files(&src, &[s.dir.join("workload.sql")]);
        act(plan, "workload", format!("workload: {} rows in one session ({}), then {} rows from {} sessions at once (psql ... -f {}/writer-N.sql)", w.serial_rows, serial.display(), w.concurrent_rows, w.writers.len(), s.dir.display()), Effect::Mutating);
        act(
            plan,
            "verify-before",
            "verify the chain before the dump: SQL verifier and Rust verifier".into(),
            Effect::ReadOnly,
        );
        act(
            plan,
            "dump",
            format!("dump: {}", s.pg_dump(&src).display()),
            Effect::Mutating,
        );
        act(plan, "manifest", format!("write the manifest (count, head, last row hash, chain digest, dump SHA-256) outside the database: {}", s.manifest_file().display()), Effect::Mutating);
        act(
            plan,
            "list",
            format!(
                "check the dump's table of contents: {}",
                s.pg_restore_list().display()
            ),
            Effect::ReadOnly,
        );
        plan.step(Step::run(
            "drop the source database (the data loss)",
            s.drop_db(&src),
        ));
    } else {
        act(
            plan,
            "list",
            format!(
                "check the dump's table of contents: {}",
                s.pg_restore_list().display()
            ),
            Effect::ReadOnly,
        );
    }
    plan.step(Step::run(
        "create a fresh database to restore into",
        s.create_db(&restored, None),
    ));
    act(
        plan,
        "restore",
        format!("restore: {}", s.pg_restore(&restored).display()),
        Effect::Mutating,
    );
    plan.step(Step::run(
        "install the verifier from the repository (a dump never vouches for itself)",
        files(&restored, &[s.chain_sql()]),
    ));
    act(plan, "assert-restored", "assert: count equal, head byte-exact, head = last row, SQL verifier clean over every row, Rust verifier agrees, manifest matches, triggers enabled".into(), Effect::ReadOnly);
    act(
        plan,
        "assert-timezone",
        format!("assert: the same results under session TimeZone {OTHER_TZ}"),
        Effect::ReadOnly,
    );
    if s.dump.is_none() {
        act(plan, "negative-controls", "negative controls: damage 9 scratch copies of the restored database (modify, delete middle/oldest/newest, swap, truncate, roll back the head, cut tail and head, move a separator); each must be caught".into(), Effect::Mutating);
    }
    act(plan, "assert-append", "assert: a row appended after the restore chains onto the old head, and the chain still verifies".into(), Effect::Mutating);
    let teardown = match &s.embedded {
        Some(e) => format!(
            "teardown: {} and remove {} (also on failure)",
            e.stop().display(),
            s.dir.display()
        ),
        None => format!(
            "teardown: drop this run's scratch databases ({}*) and remove {} (also on failure)",
            s.db(""),
            s.dir.display()
        ),
    };
    act(plan, "teardown", teardown, Effect::Mutating);
    act(
        plan,
        "report",
        "report every check; fail with exit 6 if any failed".into(),
        Effect::ReadOnly,
    );
    if let Some((log, tag)) = &s.evidence {
        act(
            plan,
            "record-evidence",
            format!(
                "append `backup-smoke | success | to={tag}` to {} (the promotion gate's evidence)",
                log.path.display()
            ),
            Effect::Mutating,
        );
    }
}
