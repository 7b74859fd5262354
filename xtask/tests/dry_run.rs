//! `--dry-run` renders the plan and touches nothing. The proof runs every
//! task with a PATH whose `docker`, `docker-compose`, `pg_dump`, `pg_restore`,
//! `psql`, `curl`, `initdb`, `pg_ctl` and `cargo` only record that they were
//! called, then checks the record holds read-only look-ups at most, and that
//! no state file was created. The plans of the deploy tasks are snapshot-
//! tested (set UPDATE_SNAPSHOTS=1 to rewrite them after a deliberate change).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const RECORDED: [&str; 11] = [
    "docker",
    "docker-compose",
    "pg_dump",
    "pg_restore",
    "psql",
    "curl",
    "initdb",
    "pg_ctl",
    "cargo",
    "apt-get",
    "runuser",
];

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("calls.log");
        for tool in RECORDED {
            // Answers the version look-ups preflight makes, records everything.
            let script = format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\ncase \"$*\" in\n  'compose version --short') echo 2.40.3 ;;\n  'info --format {{{{.ServerVersion}}}}') echo 28.2.2 ;;\nesac\nexit 0\n",
                log.display()
            );
            let p = bin.join(tool);
            std::fs::write(&p, script).unwrap();
            std::os::unix::fs::PermissionsExt::set_mode(
                &mut std::fs::metadata(&p).unwrap().permissions(),
                0o755,
            );
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&p, perm).unwrap();
        }
        // git and python3 stay real: reading HEAD and locating site-packages are read-only.
        for real in ["git", "python3", "sh"] {
            if let Ok(p) = which::which(real) {
                std::os::unix::fs::symlink(p, bin.join(real)).unwrap();
            }
        }
        Sandbox { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, config: &Path, args: &[&str]) -> std::process::Output {
        self.run_with(config, args, &[])
    }

    fn run_with(
        &self,
        config: &Path,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(self.state())
            .arg("--dry-run")
            .args(args)
            .env("PATH", self.dir.path().join("bin"))
            .env("USER", "dry-run-test")
            // Piped output is not wrapped (plan.rs's unit tests cover wrapping).
            .env_remove("COLUMNS")
            .env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .envs(vars.iter().copied())
            .current_dir(root())
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Look-ups a dry run may make: versions, daemon reachability, image
/// presence locally and in the registry, what runs, and the compose
/// files' render.
fn read_only(call: &str) -> bool {
    let render = call.starts_with("docker compose -p ") && call.ends_with(" config --format json");
    render
        || [
            "docker compose version --short",
            "docker-compose version --short",
            "docker version --format",
            "docker image inspect",
            // the tag's images in the registry
            "docker manifest inspect",
            // what runs now, per the engine
            "docker ps --filter label=com.docker.compose.project=",
            "docker ps --all --filter label=com.docker.compose.project=",
            "docker inspect --format",
            "docker service ls --filter label=com.docker.stack.namespace=",
            // a tag's digest in a registry reached over TLS
            "docker manifest inspect --verbose",
        ]
        .iter()
        .any(|p| call.starts_with(p))
}

fn testbed() -> PathBuf {
    root().join("deployments/testbed/deploy.toml")
}

#[test]
fn every_task_dry_run_touches_nothing() {
    let sb = Sandbox::new();
    let cfg = testbed();
    let cases: &[&[&str]] = &[
        &["build", "--tag", "sha-0123456789ab", "--push"],
        &["deploy-staging", "--tag", "sha-0123456789ab"],
        &["deploy-prod", "--tag", "sha-0123456789ab"],
        &["security-modes-test", "--tag", "sha-0123456789ab"],
        &["backup-smoke"],
        &["backup-smoke", "--rows", "1000"],
        &["setup"],
        &["lint"],
        &["bench"],
    ];
    for args in cases {
        let o = sb.run(&cfg, args);
        // deploy-prod of a tag with no staging evidence: the real run would
        // refuse, so its dry run prints the plan and exits 5 too.
        let want = if args[0] == "deploy-prod" { 5 } else { 0 };
        assert_eq!(exit_code(&o), want, "dry run of {args:?}:\n{}", text(&o));
        let out = stdout(&o);
        assert!(
            !out.trim().is_empty(),
            "dry run of {args:?} printed no plan"
        );
        let bad: Vec<String> = sb.calls().into_iter().filter(|c| !read_only(c)).collect();
        assert!(bad.is_empty(), "dry run of {args:?} called {bad:?}");
        assert!(
            !sb.state().exists(),
            "dry run of {args:?} created {}",
            sb.state().display()
        );
    }
}

#[test]
fn dry_run_json_is_the_same_plan_and_redacts_nothing_secret_into_it() {
    let sb = Sandbox::new();
    let o = sb.run(
        &testbed(),
        &[
            "--format",
            "json",
            "deploy-staging",
            "--tag",
            "sha-0123456789ab",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (doc["task"].as_str(), doc["outcome"].as_str()),
        (Some("deploy-staging"), Some("planned"))
    );
    let plan = &doc["plan"];
    assert_eq!(plan["task"], "deploy-staging");
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "lock",
            "pull",
            "start-stateful",
            "proxy-ready",
            "start-beside",
            "gate-set",
            "switch",
            "health-gate"
        ]
    );
    assert_eq!(plan["record"]["action"], "deploy");
    assert_eq!(plan["on_failure"]["kind"], "recover");
}

fn normalise(s: &str, sb: &Sandbox) -> String {
    let s = s
        .replace(&sb.state().display().to_string(), "$STATE")
        .replace(&root().display().to_string(), "$ROOT");
    // The proxy runs as the tool's user (nobody when the tool is root).
    let (uid, gid) = xtask::engine::proxy::user();
    s.replace(
        &format!("FETCHML_PROXY_USER={uid}:{gid}"),
        "FETCHML_PROXY_USER=<uid:gid>",
    )
}

fn snapshot(name: &str, actual: &str) {
    let path = root()
        .join("xtask/tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual, want,
        "plan of {name} changed; if deliberate, rerun with UPDATE_SNAPSHOTS=1"
    );
}

/// Appends records to a sandbox's log through the library (test setup, not a dry run).
fn seed(sb: &Sandbox, env: &str, tags: &[&str]) {
    seed_deploys(
        &xtask::audit::Log::new(&sb.state().join(env), env, None),
        tags,
    );
}

#[test]
fn plan_snapshots() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "build",
            &["build", "--tag", "sha-0123456789ab", "--push"],
            &[],
        ),
        (
            "deploy-staging-first",
            &["deploy-staging", "--tag", "sha-0123456789ab"],
            &[],
        ),
        (
            "deploy-staging",
            &[
                "deploy-staging",
                "--tag",
                "sha-bbbbbbbbbbbb",
                "--lock-wait",
                "30",
            ],
            &["sha-aaaaaaaaaaaa"],
        ),
        (
            "deploy-prod-refused",
            &["deploy-prod", "--tag", "sha-cccccccccccc"],
            &[],
        ),
        // Nothing runs in the sandbox, so the proxy does not answer: the
        // real run would refuse, and so does the preview.
        (
            "rollback-staging-refused",
            &["rollback", "staging", "--reason", "health-check-failure"],
            &["sha-aaaaaaaaaaaa", "sha-bbbbbbbbbbbb"],
        ),
    ];
    for (name, args, history) in cases {
        let sb = Sandbox::new();
        seed(&sb, "staging", history);
        let o = sb.run(&testbed(), args);
        // A dry run of a plan the real run refuses exits as it would (5).
        let want = if name.ends_with("-refused") { 5 } else { 0 };
        assert_eq!(exit_code(&o), want, "{name}: {}", text(&o));
        let out = normalise(&stdout(&o), &sb);
        // The audit head depends on timestamps; mask it.
        let out: String = out
            .lines()
            .map(|l| match l.find("head ") {
                Some(i) if l.contains("audit chain") => {
                    format!("{}head <HEAD>{}", &l[..i], &l[i + 5 + 64..])
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        snapshot(name, &(out + "\n"));
    }
}

#[test]
fn injection_attempts_are_refused_before_anything_runs() {
    let sb = Sandbox::new();
    let bad_tags = [
        "sha-1; rm -rf /",
        "$(id)",
        "`id`",
        "a\nb",
        "--help",
        "-x",
        "../../etc",
        "a b",
    ];
    for tag in bad_tags {
        for task in ["deploy-staging", "deploy-prod", "build"] {
            let o = sb.run(&testbed(), &[task, "--tag", tag]);
            assert_eq!(exit_code(&o), 1, "{task} --tag {tag:?}: {}", text(&o));
            let e = stderr(&o);
            assert_eq!(
                e.lines().count(),
                1,
                "{task} --tag {tag:?}: not one line: {e}"
            );
        }
    }
    for reason in ["two\nlines", "esc\u{1b}[2J", ""] {
        let o = sb.run(
            &testbed(),
            &[
                "deploy-staging",
                "--tag",
                "sha-0123456789ab",
                "--reason",
                reason,
            ],
        );
        assert_eq!(exit_code(&o), 1, "reason {reason:?}: {}", text(&o));
    }
    // A reason full of shell syntax is inert: carried as one argument into the record, never run.
    let o = sb.run(
        &testbed(),
        &[
            "deploy-staging",
            "--tag",
            "sha-0123456789ab",
            "--reason",
            "x; rm -rf / $(id) `id` | tee",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(stdout(&o).contains("reason=x; rm -rf / $(id) `id` | tee"));
    let bad: Vec<String> = sb.calls().into_iter().filter(|c| !read_only(c)).collect();
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn bad_environment_config_and_compose_file_get_one_line_errors() {
    let sb = Sandbox::new();
    let o = sb.run(&testbed(), &["rollback", "production"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    assert_eq!(
        stderr(&o).trim(),
        "error: unknown environment `production`: valid environments are prod, staging"
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("deploy.toml");
    std::fs::write(
        &broken,
        "[env.staging]\nproject = \"x\"\napp_services = [\"api\"\n",
    )
    .unwrap();
    let o = sb.run(&broken, &["deploy-staging", "--tag", "sha-0123456789ab"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!("error: {}:4:1: ", broken.display())),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");

    let o = sb.run(&dir.path().join("missing.toml"), &["status", "staging"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    assert!(stderr(&o).contains("missing.toml"), "{}", text(&o));

    let cfg = std::fs::read_to_string(testbed())
        .unwrap()
        .replace("\"docker-compose.yml\"", "\"no-such-compose.yml\"");
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, cfg).unwrap();
    let o = sb.run(&moved, &["deploy-staging", "--tag", "sha-0123456789ab"]);
    assert_eq!(exit_code(&o), 1, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no-such-compose.yml") && e.contains("compose file"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn preflight_names_every_missing_tool_at_once_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--config"])
        .arg(testbed())
        .arg("--state-dir")
        .arg(dir.path())
        .args(["rollback", "staging"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 2, "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("docker not found: run `cargo xtask setup`"),
        "{e}"
    );
    assert!(
        e.contains("docker compose v2 (or docker-compose v1) not found"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // A dry run on a laptop without Docker previews anyway, with warnings.
    let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["--config"])
        .arg(testbed())
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--dry-run", "deploy-staging", "--tag", "sha-0123456789ab"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("warning: preflight: docker not found"),
        "{}",
        text(&o)
    );
}

/// Only a true CI variable confirms deploy-prod, and the plan says what
/// confirmed it.
#[test]
fn the_plan_says_what_confirmed_a_production_deploy() {
    let sb = Sandbox::new();
    let args = ["deploy-prod", "--tag", "sha-0123456789ab"];
    // (variables, extra arguments, what the plan says)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (
            &[("CI", "true")],
            &[],
            "operator confirmation: given (running in CI: CI is set)",
        ),
        (
            &[("GITHUB_ACTIONS", "true")],
            &[],
            "given (running in CI: GITHUB_ACTIONS is set)",
        ),
        (&[], &["--yes"], "operator confirmation: given (--yes)"),
        (&[("CI", "false")], &[], "operator confirmation: NOT GIVEN"),
        (&[("CI", "")], &[], "operator confirmation: NOT GIVEN"),
    ];
    for (vars, extra, want) in cases {
        let all: Vec<&str> = args.iter().chain(extra.iter()).copied().collect();
        let o = sb.run_with(&testbed(), &all, vars);
        let out = stdout(&o);
        assert!(out.contains(want), "{vars:?} {extra:?}: {}", text(&o));
        assert!(!out.contains("given (--yes (outside CI))"), "{}", text(&o));
        if want.contains("NOT GIVEN") {
            assert!(
                stderr(&o).starts_with("error: refused: not confirmed; pass --yes (outside CI)"),
                "{vars:?}: {}",
                text(&o)
            );
        }
    }
}
