//! Secrets kept out of the config, and the state files kept to their owner,
//! without engines: a secret-looking literal in `vars` is refused when the
//! config is loaded, a `${NAME}` var that is not set is refused alike by the
//! dry and the real run, the audit log, sink, lock and hold are created
//! owner-only whatever the umask, and a loose audit log is refused.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use common::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// One line on stderr, and the code.
fn refused(o: &Output, code: i32, has: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(exit_code(o), code, "{}", text(o));
    assert_eq!(err.trim().lines().count(), 1, "one line: {}", text(o));
    for h in has {
        assert!(err.contains(h), "stderr lacks {h:?}: {}", text(o));
    }
    err
}

#[test]
fn a_secret_looking_literal_in_vars_is_refused_when_the_config_is_loaded() {
    let cases = [
        (
            "DB_PASSWORD = \"zq-literal-5d1f\"",
            "vars.DB_PASSWORD has a secret name",
        ),
        (
            "PGPASSWORD = \"zq-literal-5d1f\"",
            "vars.PGPASSWORD has a secret name",
        ),
        (
            "UPSTREAM = \"https://app:zq-literal-5d1f@db.example/x\"",
            "vars.UPSTREAM holds a URL with a password",
        ),
        (
            "SENTRY_DSN = \"https://zq-literal-5d1f@sentry.example/1\"",
            "vars.SENTRY_DSN is a DSN with a key in it",
        ),
    ];
    for (var, want) in cases {
        let s = Stack::new("sec-literal");
        s.edit_config(var, &[]);
        for args in [
            &["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"][..],
            &["deploy-staging", "--tag", "sha-0123456789ab"],
            &["status", "staging"],
        ] {
            let o = s.run(args);
            let err = refused(
                &o,
                1,
                &[want, "secrets file", "from the environment at run time"],
            );
            assert!(
                !err.contains("zq-literal-5d1f"),
                "the value is never shown: {err}"
            );
            assert!(!s.state.exists(), "{args:?} created state");
        }
    }
    // A setting about a secret, a reference and a location load fine.
    let s = Stack::new("sec-settings");
    s.edit_config(
        "TOKEN_TTL = \"3600\", PASSWORD_ACCESS = \"true\", PASSWORD_MIN_LENGTH = \"12\", FETCHML_SECRETS_DIR = \"/etc/x\"",
        &[],
    );
    let o = s.run(&[
        "--format",
        "json",
        "deploy-staging",
        "--tag",
        "sha-0123456789ab",
        "--dry-run",
    ]);
    assert!(!stderr(&o).contains("vars."), "{}", text(&o));
}

#[test]
fn a_missing_environment_reference_is_refused_by_the_dry_and_the_real_run() {
    let s = Stack::new("sec-missing");
    s.edit_config("DB_PASSWORD = \"${XT_SECRETS_TEST_NEVER_SET}\"", &[]);
    let want = "vars.DB_PASSWORD reads ${XT_SECRETS_TEST_NEVER_SET} from the environment, and XT_SECRETS_TEST_NEVER_SET is not set (or empty): export XT_SECRETS_TEST_NEVER_SET and run again";
    let dry = s.run(&["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"]);
    let real = s.run(&["deploy-staging", "--tag", "sha-0123456789ab"]);
    let a = refused(&dry, 1, &[want]);
    let b = refused(&real, 1, &[want]);
    assert_eq!(a, b);
}

/// Runs xtask under `umask 000`.
fn under_umask_000(s: &Stack, args: &[&str]) -> Output {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .arg("--config")
        .arg(&s.config)
        .arg("--state-dir")
        .arg(&s.state)
        .args(args)
        .env("USER", "e2e-test")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("CI");
    c.output().unwrap()
}

#[test]
fn state_files_are_owner_only_whatever_the_umask_and_a_loose_log_is_refused() {
    let s = Stack::new("sec-perms");
    let o = under_umask_000(&s, &["lock", "acquire", "staging", "-m", "perm test"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = s.state.join("staging/audit.jsonl");
    let sink = s.state.join("sink/staging.audit.jsonl");
    let lock = s.state.join("staging/deploy.lock");
    for f in [&log, &sink, &lock] {
        assert_eq!(mode(f), 0o600, "{} under umask 000", f.display());
    }
    let hold = std::fs::read_dir(s.state.join("staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the maintenance hold");
    assert_eq!(mode(&hold), 0o600, "{}", hold.display());
    for d in [
        s.state.join("staging"),
        s.state.join("sink"),
        s.state.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{} under umask 000", d.display());
    }
    s.ok(&["lock", "release", "staging", "-m", "done"]);

    // Loose: refused like ssh refuses a loose key, dry and real alike.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = std::fs::read(&log).unwrap();
    let fix = format!("run `chmod 600 {}`", log.display());
    let dry = s.run(&["deploy-staging", "--tag", "sha-0123456789ab", "--dry-run"]);
    let real = s.run(&["lock", "acquire", "staging", "-m", "again"]);
    for o in [&dry, &real] {
        refused(o, 5, &["group- or world-writable (mode 0666)", &fix]);
    }
    assert_eq!(std::fs::read(&log).unwrap(), before, "nothing was appended");
    // The fix it names works.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.ok(&["lock", "acquire", "staging", "-m", "again"]);
    s.ok(&["lock", "release", "staging", "-m", "done"]);
    // A group-writable sink is refused the same way.
    std::fs::set_permissions(&sink, std::fs::Permissions::from_mode(0o620)).unwrap();
    let o = s.run(&["lock", "acquire", "staging", "-m", "again"]);
    refused(&o, 5, &["the audit sink", "(mode 0620)"]);
}
