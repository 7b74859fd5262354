//! A dry run refuses what the real run refuses, with the same exit code and
//! the same first error line. The table below has one case per refusal
//! reason in the code (`xtask::exit::Refusal`: the `match` has no wildcard,
//! so a new reason does not compile without its case), each run on a real
//! engine, first as a dry run, then for real. And the config mistakes the
//! cross-check catches each fail the dry run in one line naming the
//! service or variable.

mod common;

use std::process::{Command, Output};

use common::*;
use xtask::exit::Refusal;

/// What a case needs before its two runs.
enum Setup {
    Nothing,
    /// A maintenance hold on staging, taken with `lock acquire`.
    Hold,
    /// The test process holds staging's deploy lock.
    Lock,
    /// A successful prod deploy of v1 in prod's chain (nothing runs).
    ProdHistory,
    /// A stopped api container of the blue set, and no proxy to say which set serves.
    StrayContainer,
    /// The audit sink on a filesystem with one free page.
    FullSink,
    /// Staging's audit log writable by everyone.
    LooseLog,
}

struct Case {
    opts: Opts,
    /// Text replaced in the stack's config.
    edit: Vec<(&'static str, String)>,
    setup: Setup,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The first error line starts with this.
    starts: &'static str,
}

fn case(r: Refusal, imgs: &Images) -> Option<Case> {
    let v1 = imgs.v1.clone();
    let bg = Opts {
        blue_green: true,
        ..Opts::default()
    };
    let base = |args: &[&str], starts| Case {
        opts: Opts::default(),
        edit: Vec::new(),
        setup: Setup::Nothing,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        starts,
    };
    let deploy = ["deploy-staging", "--tag", v1.as_str()];
    Some(match r {
        Refusal::Locked => Case {
            setup: Setup::Lock,
            ..base(&deploy, "error: environment `staging` is locked by parity-test")
        },
        Refusal::Held => Case {
            setup: Setup::Hold,
            ..base(&deploy, "error: environment `staging` is held for maintenance by")
        },
        // Only a task that waited for the lock (--lock-wait) sees the head
        // move meanwhile; a dry run does not wait, so it plans from the new head.
        Refusal::StalePlan => return None,
        Refusal::NotConfirmed => Case {
            // CI=false is not CI.
            env: vec![("CI", "false".into())],
            ..base(
                &["deploy-prod", "--tag", &v1],
                "error: refused: not confirmed; pass --yes (outside CI)",
            )
        },
        Refusal::ProxyDown => Case {
            opts: bg,
            setup: Setup::ProdHistory,
            ..base(
                &["rollback", "prod", "--to", "@1", "--reason", "parity"],
                "error: refused before any app container was touched: the proxy's admin socket",
            )
        },
        Refusal::RecordUnwritable => Case {
            setup: Setup::FullSink,
            // The longest reason and a long actor: the record's room is
            // reserved for them before anything is touched.
            env: vec![("USER", "a".repeat(900))],
            ..base(
                &[&deploy[..], &["--reason", &"r".repeat(1024)]].concat(),
                "error: refused before touching anything: the audit sink",
            )
        },
        Refusal::LooseLog => Case {
            setup: Setup::LooseLog,
            ..base(&deploy, "error: the audit log ")
        },
        Refusal::Config => Case {
            edit: vec![
                ("app_services = [\"api\", \"worker\"]", "app_services = [\"api\", \"webb\"]".into()),
                ("worker = \"", "webb = \"".into()),
            ],
            ..base(&deploy, "error: refused: compose files that agree with the config not met: missing service `webb` is not in the compose files")
        },
        Refusal::Secrets => Case {
            edit: vec![("TESTBED_REGISTRY =", "API_TOKEN_FILE = \"/nonexistent/api-token\", TESTBED_REGISTRY =".into())],
            ..base(&deploy, "error: refused: the secrets files the compose files name not met: missing secret `api_token`: file /nonexistent/api-token does not exist")
        },
        Refusal::Manifest => base(
            &["deploy-staging", "--tag", "sha-0000000000aa"],
            "error: refused: the tag's images in the registry not met: missing image 127.0.0.1:5000/fetchml/testbed:sha-0000000000aa",
        ),
        // Not a manager, or (a manager) no node for the api's placement.
        Refusal::Swarm => Case {
            edit: vec![
                ("[env.staging]\n", "[env.staging]\nengine = \"swarm\"\n".into()),
                ("deployments/testbed/docker-compose.yml", "COMPOSE_UNPLACEABLE".into()),
            ],
            ..base(&deploy, "error: refused: a swarm manager, and nodes for every app service's placement not met: missing ")
        },
        Refusal::NotLocal => Case {
            edit: vec![("[env.staging]\n", "[env.staging]\npull = \"never\"\n".into())],
            ..base(
                &["deploy-staging", "--tag", "sha-0000000000ab"],
                "error: refused: the images on this host (pull = \"never\") not met: missing image 127.0.0.1:5000/fetchml/testbed:sha-0000000000ab",
            )
        },
        Refusal::Evidence => base(
            &["deploy-prod", "--yes", "--tag", &v1],
            "error: refused: promotion evidence from staging not met: missing a successful staging deploy",
        ),
        Refusal::BlueGreen => Case {
            opts: bg,
            edit: vec![("deployments/testbed/docker-compose.yml", "COMPOSE_WITHOUT_LABEL".into())],
            ..base(&deploy, "error: refused: compose files ready for blue/green not met: missing app service `api` has no label `fetchml.slot")
        },
        Refusal::UnknownSets => Case {
            opts: bg,
            setup: Setup::StrayContainer,
            ..base(&deploy, "error: refused: the engine and the proxy report which set serves not met")
        },
        Refusal::NoTarget => base(
            &["rollback", "staging", "--reason", "parity"],
            "error: refused: no previous successful version of staging to roll back to",
        ),
        // A working engine under another name than the local environment's:
        // preflight passes, and the refusal names the variable.
        Refusal::ForeignEngine => {
            let link = std::env::temp_dir().join(format!("parity-engine-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("/var/run/docker.sock", &link).unwrap();
            Case {
                env: vec![("DOCKER_HOST", format!("unix://{}", link.display()))],
                ..base(&deploy, "error: the inherited DOCKER_HOST=unix://")
            }
        }
    })
}

fn first_error(o: &Output) -> String {
    stderr(o)
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string()
}

fn run(stack: &Stack, c: &Case, dry: bool) -> Output {
    let mut cmd = stack.cmd();
    if dry {
        cmd.arg("--dry-run");
    }
    cmd.args(&c.args);
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    cmd.output().expect("running xtask")
}

/// A compose file like the testbed's, without the slot label, beside `stack`'s config.
fn without_label(stack: &Stack) -> String {
    let src = root().join("deployments/testbed/docker-compose.yml");
    let text = std::fs::read_to_string(&src)
        .unwrap()
        .replace(
            "      fetchml.slot: ${FETCHML_SLOT:-}\n",
            "      fetchml.other: x\n",
        )
        .replace(
            "./api-token.dev",
            &root()
                .join("deployments/testbed/api-token.dev")
                .display()
                .to_string(),
        )
        .replace(
            "./haproxy.cfg",
            &root()
                .join("deployments/testbed/haproxy.cfg")
                .display()
                .to_string(),
        );
    let p = stack.dir.path().join("compose-copy.yml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// Undoes a setup on drop (a mount, a container).
struct Undo(Vec<Vec<String>>);
impl Drop for Undo {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new(&c[0]).args(&c[1..]).output();
        }
    }
}

#[test]
fn every_refusal_is_the_same_in_the_dry_run_and_the_real_run() {
    let imgs = images();
    let mut failures = Vec::new();
    for r in Refusal::ALL {
        let Some(c) = case(r, imgs) else { continue };
        let stack = Stack::with(&format!("par{}", r as u8), c.opts.clone());
        let mut cfg = std::fs::read_to_string(&stack.config).unwrap();
        for (from, to) in &c.edit {
            let (from, to) = match to.as_str() {
                "COMPOSE_WITHOUT_LABEL" | "COMPOSE_UNPLACEABLE" => (
                    root().join(from).display().to_string(),
                    without_label(&stack),
                ),
                _ => (from.to_string(), to.clone()),
            };
            assert!(cfg.contains(&from), "{r:?}: the config has no {from:?}");
            cfg = cfg.replace(&from, &to);
        }
        std::fs::write(&stack.config, cfg).unwrap();
        let mut undo = Undo(Vec::new());
        let mut held = None;
        match c.setup {
            Setup::Nothing => {}
            Setup::Hold => {
                stack.ok(&["lock", "acquire", "staging", "-m", "db migration"]);
            }
            Setup::Lock => {
                let dir = stack.state.join("staging");
                std::fs::create_dir_all(&dir).unwrap();
                let f = std::fs::File::create(dir.join("deploy.lock")).unwrap();
                f.lock().unwrap();
                std::io::Write::write_all(&mut &f, b"parity-test").unwrap();
                held = Some(f);
            }
            Setup::ProdHistory => {
                seed_deploys(&stack.log("prod"), &[&imgs.v1]);
            }
            Setup::LooseLog => {
                let dir = stack.state.join("staging");
                std::fs::create_dir_all(&dir).unwrap();
                let p = dir.join("audit.jsonl");
                std::fs::write(&p, b"").unwrap();
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            Setup::StrayContainer => {
                let name = format!("{}-api-parity", stack.project("staging"));
                let o = docker(&[
                    "create",
                    "--name",
                    &name,
                    "--label",
                    &format!("com.docker.compose.project={}", stack.project("staging")),
                    "--label",
                    "com.docker.compose.service=api",
                    "--label",
                    "fetchml.slot=blue",
                    &format!("127.0.0.1:5000/fetchml/testbed:{}", imgs.v1),
                ]);
                assert!(o.status.success(), "{}", text(&o));
                undo.0
                    .push(vec!["docker".into(), "rm".into(), "-f".into(), name]);
            }
            Setup::FullSink => {
                let sink = stack.state.join("sink");
                std::fs::create_dir_all(&sink).unwrap();
                let o = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
                    .arg(&sink)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "mounting a tmpfs needs root (CI runs as root): {}",
                    text(&o)
                );
                undo.0
                    .push(vec!["umount".into(), sink.display().to_string()]);
                // Fill all but one page.
                let mut filler = std::fs::File::create(sink.join("filler")).unwrap();
                while std::io::Write::write_all(&mut filler, &[0u8; 4096]).is_ok() {}
                drop(filler);
                let len = std::fs::metadata(sink.join("filler")).unwrap().len();
                std::fs::File::options()
                    .write(true)
                    .open(sink.join("filler"))
                    .unwrap()
                    .set_len(len - 4096)
                    .unwrap();
            }
        }
        let t = std::time::Instant::now();
        let dry = run(&stack, &c, true);
        let took_dry = t.elapsed();
        let real = run(&stack, &c, false);
        eprintln!(
            "{r:?}: dry run {:.2} s, real run {:.2} s",
            took_dry.as_secs_f64(),
            (t.elapsed() - took_dry).as_secs_f64()
        );
        let (de, re) = (first_error(&dry), first_error(&real));
        let ok =
            exit_code(&dry) == 5 && exit_code(&real) == 5 && de == re && de.starts_with(c.starts);
        if !ok {
            failures.push(format!(
                "{r:?}: dry run exit {} `{de}`; real run exit {} `{re}`; want exit 5 and `{}…`\n--- dry\n{}\n--- real\n{}",
                exit_code(&dry),
                exit_code(&real),
                c.starts,
                text(&dry),
                text(&real)
            ));
        }
        if matches!(c.setup, Setup::FullSink) {
            // Refused before anything was touched: nothing runs, no record.
            assert!(
                stack.running_images("staging", "api").is_empty(),
                "{r:?}: the stack was touched"
            );
            assert!(
                !stack.state.join("staging/audit.jsonl").exists()
                    || stack.records("staging").is_empty()
            );
        }
        drop(held);
        drop(undo);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each config mistake fails the dry run (exit 5) with one line naming the
/// service, variable or port.
#[test]
fn config_mistakes_fail_the_dry_run_in_one_line() {
    let imgs = images();
    let cases: &[(&str, &str, &str)] = &[
        (
            "app_services = [\"api\", \"worker\"]",
            "app_services = [\"api\", \"worker\", \"webb\"]",
            "service `webb` is not in the compose files",
        ),
        (
            "stateful_services = [\"redis\", \"proxy\"]",
            "stateful_services = [\"redis\"]",
            "compose service `proxy` is in none of app_services, stateful_services and ignored_services",
        ),
        (
            "tag_var",
            "",
            "",
        ),
        (
            "health_urls = [\"http://127.0.0.1:",
            "health_urls = [\"http://127.0.0.1:1/health\", \"http://127.0.0.1:",
            "health url `http://127.0.0.1:1/health`: no compose service publishes port 1",
        ),
    ];
    for (from, to, want) in cases {
        let stack = Stack::new("parcfg");
        let cfg = std::fs::read_to_string(&stack.config).unwrap();
        let (cfg, want) = if *from == "tag_var" {
            // The compose files take the tag from FETCHML_TAG; a config that
            // names another variable leaves it unset.
            (
                cfg.replace("[env.staging]\n", "[env.staging]\ntag_var = \"APP_TAG\"\n"),
                "variable FETCHML_TAG",
            )
        } else {
            // webb needs an image to pass the config's own validation.
            let cfg = cfg.replacen(from, to, 1);
            let cfg = match to.contains("webb") {
                true => cfg.replacen(
                    "worker = \"127.0.0.1:5000/fetchml/testbed\"",
                    "worker = \"127.0.0.1:5000/fetchml/testbed\", webb = \"127.0.0.1:5000/fetchml/testbed\"",
                    1,
                ),
                false => cfg,
            };
            (cfg, *want)
        };
        std::fs::write(&stack.config, cfg).unwrap();
        let o = stack.run(&["--dry-run", "deploy-staging", "--tag", &imgs.v1]);
        let e = stderr(&o);
        assert_eq!(exit_code(&o), 5, "{want}: {}", text(&o));
        assert_eq!(e.lines().count(), 1, "{want}: not one line: {e}");
        assert!(e.contains(want), "{want}: {e}");
    }
}

/// Every refusal is made through `exit::refuse`, which names its reason:
/// no other file builds an exit-5 error itself.
#[test]
fn refusals_are_made_only_through_refuse() {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("exit.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // `fail(Code::Refused, ..)`, however it is wrapped.
                let flat: String = text.split_whitespace().collect();
                if flat.contains("(Code::Refused,") || flat.contains("exit::Code::Refused,") {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&root().join("xtask/src"), &mut found);
    assert!(
        found.is_empty(),
        "build refusals with exit::refuse(Refusal::..): {found:?}"
    );
}

/// The shipped production config on this machine: the dry run names what
/// the real run would refuse (the secrets files, the registry) instead of
/// exiting 0.
#[test]
fn the_shipped_config_dry_run_names_what_is_missing() {
    engines();
    let state = tempfile::tempdir().unwrap();
    let o = xtask_bin()
        .arg("--config")
        .arg(root().join("deployments/deploy.toml"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["--dry-run", "deploy-staging", "--tag", "sha-0123456789ab"])
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with(
            "error: refused: the secrets files the compose files name not met: missing secret `"
        ),
        "{e}"
    );
    let plan = stdout(&o);
    assert!(
        plan.contains("require the tag's images in the registry: NOT MET")
            && plan
                .contains("image registry.fetchml.internal/fetchml/api-server:sha-0123456789ab: "),
        "{plan}"
    );
    assert!(!state.path().join("staging").exists(), "the dry run wrote");
}
