//! `lint` runs every check and reports each one, even after an earlier
//! check failed, and shellcheck covers scripts by shebang (`.ci/run`), not
//! only `*.sh`. Shown on a temporary repository with a bad script: with a
//! stand-in runner (every check fails or passes as told), and with the real
//! tools, where `cargo fmt` and clippy fail (no Cargo.toml) and shellcheck
//! still runs and finds the bad script.

use std::path::Path;

use xtask::plan::Command;
use xtask::tasks::lint::{self, check_all, report_line, verdict, Actionlint, Found};

/// A repository with a shell script that shellcheck flags (SC2086, an
/// unquoted variable) in `.ci/run`, which has no `.sh` to find it by.
fn bad_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ci = dir.path().join(".ci");
    std::fs::create_dir_all(&ci).unwrap();
    std::fs::write(ci.join("run"), "#!/usr/bin/env bash\nrm -rf $1/tmp\n").unwrap();
    let wf = dir.path().join(".forgejo/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(wf.join("ci.yml"), "name: ci\n").unwrap();
    dir
}

fn found(root: &Path) -> Found {
    Found {
        actionlint: Some(Actionlint::Native("/bin/actionlint".into())),
        shellcheck: true,
        ..lint::look(root).unwrap()
    }
}

#[test]
fn look_finds_ci_run_by_its_shebang() {
    let repo = bad_repo();
    assert_eq!(lint::look(repo.path()).unwrap().scripts, [".ci/run"]);
    // And in this repository, every shell script, not only the *.sh ones.
    let here = lint::look(&xtask::workspace_root()).unwrap().scripts;
    assert!(here.contains(&".ci/run".to_string()), "{here:?}");
    assert!(
        here.contains(&"scripts/check-audit-sink.sh".to_string()),
        "{here:?}"
    );
}

#[test]
fn every_check_runs_after_a_failure_and_each_is_reported() {
    let repo = bad_repo();
    let (plan, problems) = lint::plan(repo.path(), &found(repo.path()));
    assert!(problems.is_empty(), "{problems:?}");
    let mut ran = Vec::new();
    // The first and third checks fail; the others pass.
    let results = check_all(&plan, &mut |c: &Command| {
        ran.push(c.display());
        match ran.len() {
            1 | 3 => anyhow::bail!("`{}` exited with 1: finding", c.display()),
            _ => Ok(String::new()),
        }
    });
    assert_eq!(ran.len(), 4, "every check runs: {ran:?}");
    assert!(ran[2].starts_with("shellcheck .ci/run"), "{ran:?}");
    let ok: Vec<bool> = results.iter().map(|c| c.ok).collect();
    assert_eq!(ok, [false, true, false, true]);
    let lines: Vec<String> = results.iter().map(report_line).collect();
    assert!(
        lines[0].starts_with("FAILED check formatting ("),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("exited with 1: finding"), "{lines:?}");
    assert!(
        lines[1].starts_with("ok     actionlint the workflows ("),
        "{lines:?}"
    );
    let e = verdict(&results).unwrap_err();
    assert_eq!(xtask::exit::code_of(&e), xtask::exit::Code::Error);
    assert_eq!(
        e.to_string(),
        "lint: 2 of 4 checks failed: check formatting, shellcheck the scripts (their findings are above)"
    );
    let all_ok = check_all(&plan, &mut |_: &Command| Ok(String::new()));
    verdict(&all_ok).unwrap();
}

/// With the real tools: fmt and clippy fail in a directory without a
/// Cargo.toml, and shellcheck still runs and flags `.ci/run`.
#[test]
fn real_tools_report_every_failure() {
    which::which("shellcheck").expect("shellcheck is needed: run `cargo xtask setup`");
    let repo = bad_repo();
    let mut f = found(repo.path());
    f.actionlint = None; // actionlint is proved in tidy.rs; here shellcheck matters
    let (plan, _) = lint::plan(repo.path(), &f);
    let results = check_all(&plan, &mut |c: &Command| xtask::cmd::run(c, false));
    let names: Vec<(&str, bool)> = results.iter().map(|c| (c.check.as_str(), c.ok)).collect();
    assert_eq!(
        names,
        [
            ("check formatting", false),
            ("shellcheck the scripts", false),
            ("clippy, warnings are errors", false),
        ]
    );
    let e = verdict(&results).unwrap_err().to_string();
    assert!(e.starts_with("lint: 3 of 3 checks failed"), "{e}");
    let sc = results[1].error.as_deref().unwrap();
    assert!(sc.contains("`shellcheck .ci/run` exited with 1"), "{sc}");
    // The finding is the script's: quoted, the same check passes.
    std::fs::write(
        repo.path().join(".ci/run"),
        "#!/usr/bin/env bash\nrm -rf \"$1/tmp\"\n",
    )
    .unwrap();
    let again = check_all(&plan, &mut |c: &Command| {
        if c.program == "shellcheck" {
            xtask::cmd::run(c, false)
        } else {
            Ok(String::new())
        }
    });
    assert!(again.iter().all(|c| c.ok), "{again:?}");
}
