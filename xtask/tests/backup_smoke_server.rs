//! `backup-smoke` against an existing server (`--database-url`, or the
//! `PG*` variables): it creates and drops only scratch databases of its
//! own, leaves every existing database as it was, keeps the password out
//! of argv and output, refuses a role that cannot create databases, and
//! removes leftovers of interrupted runs only with `--destructive`.

#[path = "backup_smoke_support.rs"]
mod support;

use support::*;
use xtask::flags::Profile;

#[test]
fn a_url_target_uses_scratch_databases_only_and_never_shows_the_password() {
    let c = Cluster::start();
    // An existing application database with its own chain, which must stay as it is.
    c.chain("app", Profile::Default, 10);
    let before_dbs = c.databases();
    let before = c.psql(
        "app",
        &["COPY (SELECT seq, row_hash FROM audit_chain_head) TO STDOUT"],
    );

    let url = c.url("postgres", &c.password, "app");
    let r = smoke(&[], &["--database-url", &url], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(
        r.report["target"]
            .as_str()
            .unwrap()
            .starts_with("server 127.0.0.1:"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.report["after_rust"]["total"], 24,
        "the smoke's own rows, not app's"
    );
    assert_eq!(
        c.databases(),
        before_dbs,
        "databases were left behind or removed"
    );
    assert_eq!(
        c.psql(
            "app",
            &["COPY (SELECT seq, row_hash FROM audit_chain_head) TO STDOUT"]
        ),
        before
    );
    assert_eq!(
        c.psql(
            "app",
            &["COPY (SELECT count(*) FROM audit_events) TO STDOUT"]
        )
        .trim(),
        "10"
    );
    assert!(
        !r.text().contains(&c.password),
        "the password leaked into the output"
    );

    // The plan shows the connection without the secret.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--dry-run", "backup-smoke", "--database-url", &url])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        plan.contains("PGPASSWORD='***'") && !plan.contains(&c.password),
        "{plan}"
    );
    assert!(
        !plan.contains("initdb"),
        "a server target boots no cluster:\n{plan}"
    );
}

#[test]
fn pg_variables_select_the_server_too() {
    let c = Cluster::start();
    let port = c.e.port.to_string();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", c.password.as_str()),
    ];
    let r = smoke(&[], &["--profile", "certctl"], &env);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert_eq!(r.report["target"], "server from the PG* environment");
    assert_eq!(c.databases(), ["postgres", "template0", "template1"]);
}

#[test]
fn a_role_without_createdb_is_refused_before_anything_is_made() {
    let c = Cluster::start();
    c.psql(
        "postgres",
        &["CREATE ROLE smoke_ro LOGIN PASSWORD 'ro-secret' NOCREATEDB"],
    );
    let r = smoke(
        &[],
        &[
            "--database-url",
            &c.url("smoke_ro", "ro-secret", "postgres"),
        ],
        &[],
    );
    assert_eq!(r.code(), Some(2), "{}", r.text());
    assert!(
        r.stderr().contains("may not CREATE DATABASE"),
        "{}",
        r.text()
    );
    assert_eq!(c.databases(), ["postgres", "template0", "template1"]);
}

#[test]
fn leftovers_of_interrupted_runs_go_only_with_destructive() {
    let c = Cluster::start();
    // One abandoned long ago, one "running" now: only the first is stale.
    let stale = "xtask_bsmoke_1000000000_4242_001_src";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let live = format!("xtask_bsmoke_{now}_4243_001_src");
    for db in [stale, live.as_str()] {
        c.psql("postgres", &[&format!("CREATE DATABASE \"{db}\"")]);
    }
    let url = c.url("postgres", &c.password, "postgres");
    let r = smoke(&[], &["--database-url", &url, "--rows", "8"], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(
        r.report["warnings"].to_string().contains(stale),
        "{}",
        r.text()
    );
    assert!(
        c.databases().contains(&stale.to_string()),
        "dropped without --destructive"
    );

    let r = smoke(
        &[],
        &["--database-url", &url, "--rows", "8", "--destructive"],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(
        !c.databases().contains(&stale.to_string()),
        "--destructive left {stale}"
    );
    assert!(
        c.databases().contains(&live),
        "a run in progress lost its database"
    );
}

#[test]
fn unsupported_urls_are_bad_input() {
    for url in [
        "mysql://h/db",
        "postgres://h/db?sslfoo=1",
        "postgres://a,b/db",
    ] {
        let r = smoke(&[], &["--database-url", url], &[]);
        assert_eq!(r.code(), Some(1), "{url}: {}", r.text());
    }
}
