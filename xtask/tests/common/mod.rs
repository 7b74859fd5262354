//! Shared fixtures for the end-to-end tests: the real engines (started
//! through `cargo xtask setup`, the same code path as CI), the testbed images
//! (built once per source hash behind a file lock, shared by every test
//! binary), and a [`Stack`]: a temp config with its own compose projects,
//! loopback ports and state dirs, taken down (its own projects only) on drop.
#![allow(dead_code)]

pub mod follow;
pub mod receiver;
pub mod schema;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use xtask::audit::{History, Log, Record};

pub fn root() -> PathBuf {
    xtask::workspace_root()
}

pub fn xtask_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

/// Text of an output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts the engines through `cargo xtask setup`; a failure fails the test with setup's output.
pub fn engines() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let o = xtask_bin()
            .arg("setup")
            .output()
            .expect("running xtask setup");
        assert!(
            o.status.success(),
            "the engines are needed and `cargo xtask setup` failed:\n{}",
            text(&o)
        );
    });
}

/// The testbed image tags every test shares.
pub struct Images {
    pub v1: String,
    pub v2: String,
    /// Health never turns ok.
    pub bad: String,
}

fn source_hash() -> String {
    let mut files = Vec::new();
    let tb = root().join("deployments/testbed");
    for f in ["Cargo.toml", "Dockerfile", "src/main.rs"] {
        files.push(tb.join(f));
    }
    let mut src: Vec<PathBuf> = std::fs::read_dir(tb.join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    src.sort();
    files.extend(src);
    let mut all = Vec::new();
    for f in files {
        all.extend(f.display().to_string().into_bytes());
        all.extend(std::fs::read(&f).unwrap());
    }
    xtask::audit::sha_hex(&all)[..10].to_string()
}

/// Builds and pushes v1, v2 and a broken version once per source hash.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        engines();
        let h = source_hash();
        let imgs = Images {
            v1: format!("tb-{h}-v1"),
            v2: format!("tb-{h}-v2"),
            bad: format!("tb-{h}-bad"),
        };
        let dir = root().join("target/testbed-images");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = File::create(dir.join("build.lock")).unwrap();
        lock.lock().unwrap();
        let marker = dir.join(&h);
        // Present locally and in the registry: a deploy checks the
        // registry before it starts, and a registry can be reset.
        let present = |t: &str| {
            let r = format!("127.0.0.1:5000/fetchml/testbed:{t}");
            [["image", "inspect"], ["manifest", "inspect"]]
                .iter()
                .all(|a| {
                    Command::new("docker")
                        .args(a)
                        .arg(&r)
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
        };
        if !(marker.exists() && [&imgs.v1, &imgs.v2, &imgs.bad].iter().all(|t| present(t))) {
            for (tag, broken) in [(&imgs.v1, false), (&imgs.v2, false), (&imgs.bad, true)] {
                let mut c = xtask_bin();
                c.args([
                    "--config",
                    "deployments/testbed/deploy.toml",
                    "build",
                    "--push",
                    "--tag",
                    tag,
                ]);
                if broken {
                    c.arg("--broken");
                }
                let o = c.current_dir(root()).output().expect("running xtask build");
                assert!(
                    o.status.success(),
                    "building testbed image {tag}:\n{}",
                    text(&o)
                );
            }
            std::fs::write(&marker, b"").unwrap();
        }
        imgs
    })
}

/// A free loopback port (asked of the OS).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options for a test stack's config.
#[derive(Clone)]
pub struct Opts {
    pub staging_mode: &'static str,
    pub prod_mode: &'static str,
    pub gate_secs: u64,
    pub registry: String,
    pub require_evidence: &'static str,
    /// Deploy blue/green behind the proxy (`[env.NAME.proxy]`).
    pub blue_green: bool,
    pub drain_secs: u64,
    pub keep_previous: &'static str,
    /// The api's and the worker's repositories, when they differ (else both
    /// run the testbed's).
    pub repos: Option<(String, String)>,
    /// Every environment's `pull` key, when set.
    pub pull: Option<&'static str>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            staging_mode: "standard",
            prod_mode: "hipaa",
            gate_secs: 8,
            registry: "127.0.0.1:5000".into(),
            require_evidence: "",
            blue_green: false,
            drain_secs: 1,
            keep_previous: "warm",
            repos: None,
            pull: None,
        }
    }
}

/// One test's environments: staging and prod on their own projects and ports.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state: PathBuf,
    pub name: String,
    pub ports: [(u16, u16); 2],
}

impl Stack {
    pub fn new(name: &str) -> Stack {
        Self::with(name, Opts::default())
    }

    pub fn with(name: &str, o: Opts) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let unique = format!("xt-{name}-{}", std::process::id());
        let p = xtask::free_ports(4).unwrap();
        let ports = [(p[0], p[1]), (p[2], p[3])];
        let compose = root().join("deployments/testbed/docker-compose.yml");
        let mut cfg = String::new();
        for (i, (env, mode)) in [("staging", o.staging_mode), ("prod", o.prod_mode)]
            .iter()
            .enumerate()
        {
            let (api, admin) = ports[i];
            // Blue/green: the proxy is the environment's; in place, the
            // proxy is started like a stateful service and routes to the
            // service name, as before the first blue/green deploy.
            let (stateful, proxy) = if o.blue_green {
                (
                    "\"redis\"".to_string(),
                    format!("proxy = {{ service = \"proxy\", admin_dir = \"proxy-{env}\", routes = {{ api = 8080 }}, probe_ports = {{ worker = 8081 }}, drain_secs = {}, keep_previous = \"{}\" }}\n", o.drain_secs, o.keep_previous),
                )
            } else {
                ("\"redis\", \"proxy\"".to_string(), String::new())
            };
            let repo = format!("{}/fetchml/testbed", o.registry);
            let (api_repo, worker_repo) = o.repos.clone().unwrap_or((repo.clone(), repo));
            let mut extra = format!(
                "TESTBED_API_REPO = \"{api_repo}\", TESTBED_WORKER_REPO = \"{worker_repo}\", "
            );
            if o.repos.is_none() {
                extra.clear();
            }
            let pull = o
                .pull
                .map(|p| format!("pull = \"{p}\"\n"))
                .unwrap_or_default();
            let promote = if *env == "prod" {
                format!(
                    "promote_from = \"staging\"\nrequire_evidence = [{}]\n",
                    o.require_evidence
                )
            } else {
                String::new()
            };
            cfg.push_str(&format!(
                r#"
[env.{env}]
project = "{unique}-{env}"
compose_files = ["{compose}"]
app_services = ["api", "worker"]
stateful_services = [{stateful}]
images = {{ api = "{api_repo}", worker = "{worker_repo}" }}
health_urls = ["http://127.0.0.1:{api}/health"]
compliance_mode = "{mode}"
health_timeout_secs = {gate}
rollback_timeout_secs = 30
audit_sink = "sink"
vars = {{ {extra}API_PORT = "{api}", PROXY_ADMIN_PORT = "{admin}", COMPLIANCE_MODE = "{mode}", TESTBED_REGISTRY = "{registry}" }}
{pull}{proxy}{promote}"#,
                compose = compose.display(),
                gate = o.gate_secs,
                registry = o.registry,
            ));
        }
        Stack::in_dir(dir, &cfg, unique, ports)
    }

    /// The stack whose config `cfg` is written to `dir`, with its state beside it.
    fn in_dir(dir: tempfile::TempDir, cfg: &str, name: String, ports: [(u16, u16); 2]) -> Stack {
        let config = dir.path().join("deploy.toml");
        std::fs::write(&config, cfg).unwrap();
        let state = dir.path().join("state");
        Stack {
            dir,
            config,
            state,
            name,
            ports,
        }
    }

    /// Another operator's checkout of this stack: a copy of its config
    /// (its proxy's admin directory pointed at this one's, the same stack)
    /// with a state directory of its own.
    pub fn another_checkout(&self) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let cfg = std::fs::read_to_string(&self.config).unwrap().replace(
            "admin_dir = \"",
            &format!("admin_dir = \"{}/", self.dir.path().display()),
        );
        Stack::in_dir(dir, &cfg, self.name.clone(), self.ports)
    }

    /// `xtask --config C --state-dir S <args>`.
    pub fn cmd(&self) -> Command {
        let mut c = xtask_bin();
        c.arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state);
        c.env_remove("GITHUB_ACTIONS")
            .env_remove("CI")
            .env("USER", "e2e-test");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running xtask")
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(o.status.success(), "xtask {args:?} failed:\n{}", text(&o));
        o
    }

    pub fn log(&self, env: &str) -> Log {
        Log::new(
            &self.state.join(env),
            env,
            // `--state-dir ROOT` puts a configured sink at ROOT/sink.
            Some(&self.state.join("sink")),
        )
    }

    pub fn records(&self, env: &str) -> Vec<Record> {
        self.log(env).records().unwrap()
    }

    pub fn history(&self, env: &str) -> History {
        History::new(self.records(env))
    }

    pub fn project(&self, env: &str) -> String {
        format!("{}-{env}", self.name)
    }

    pub fn api(&self, env: &str) -> String {
        let p = if env == "staging" {
            self.ports[0].0
        } else {
            self.ports[1].0
        };
        format!("http://127.0.0.1:{p}")
    }

    /// `/health` of the api as JSON.
    pub fn health(&self, env: &str) -> serde_json::Value {
        let body = reqwest::blocking::get(format!("{}/health", self.api(env)))
            .unwrap()
            .text()
            .unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("health is not JSON ({e}): {body}"))
    }

    /// Where the proxy of `env` (blue/green) sends `service`'s traffic:
    /// its upstreams, as the proxy reports them.
    pub fn upstreams(&self, env: &str, service: &str) -> Vec<String> {
        let admin = self.admin_dir(env);
        xtask::engine::proxy::upstreams(&admin.display().to_string(), service)
            .unwrap_or_else(|e| panic!("asking the proxy of {env}: {e:#}"))
    }

    /// The admin directory of `env`'s proxy (blue/green): its runtime API's
    /// socket and saved server state.
    pub fn admin_dir(&self, env: &str) -> PathBuf {
        self.dir.path().join(format!("proxy-{env}"))
    }

    /// The image of each running container of `service` in `env`'s project.
    pub fn running_images(&self, env: &str, service: &str) -> Vec<String> {
        let o = Command::new("docker")
            .args(["ps", "--filter"])
            .arg(format!(
                "label=com.docker.compose.project={}",
                self.project(env)
            ))
            .arg("--filter")
            .arg(format!("label=com.docker.compose.service={service}"))
            .args(["--format", "{{.Image}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `docker compose` on this stack's project for `env` (test-side inspection).
    pub fn compose(&self, env: &str, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["compose", "-p", &self.project(env), "-f"])
            .arg(root().join("deployments/testbed/docker-compose.yml"))
            .args(args)
            .env("FETCHML_TAG", "unused")
            .output()
            .unwrap()
    }

    /// The container ID of `service` in `env`.
    pub fn container_id(&self, env: &str, service: &str) -> String {
        let o = self.compose(env, &["ps", "-q", service]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Queue jobs through the api (bearer token from the dev token file) and
    /// wait until the worker has moved them all to the done list.
    pub fn jobs(&self, env: &str, n: usize) -> serde_json::Value {
        let token =
            std::fs::read_to_string(root().join("deployments/testbed/api-token.dev")).unwrap();
        let c = reqwest::blocking::Client::new();
        for i in 0..n {
            let r = c
                .post(format!("{}/api/jobs", self.api(env)))
                .bearer_auth(token.trim())
                .body(format!("job-{i}"))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 202, "{:?}", r.text());
        }
        let start = std::time::Instant::now();
        loop {
            let v = self.queue(env);
            if v["queued"] == 0 || start.elapsed().as_secs() > 20 {
                return v;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// `GET /api/jobs`.
    pub fn queue(&self, env: &str) -> serde_json::Value {
        let token =
            std::fs::read_to_string(root().join("deployments/testbed/api-token.dev")).unwrap();
        let body = reqwest::blocking::Client::new()
            .get(format!("{}/api/jobs", self.api(env)))
            .bearer_auth(token.trim())
            .send()
            .unwrap()
            .text()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// Writes a file into the worker's artifacts volume.
    pub fn put_artifact(&self, env: &str, name: &str, contents: &str) {
        let src = self.dir.path().join(name);
        std::fs::write(&src, contents).unwrap();
        let o = self.compose(
            env,
            &[
                "cp",
                &src.display().to_string(),
                &format!("worker:/artifacts/{name}"),
            ],
        );
        assert!(o.status.success(), "docker compose cp: {}", text(&o));
    }

    /// Reads a file back from the worker's artifacts volume.
    pub fn get_artifact(&self, env: &str, name: &str) -> String {
        let dst = self.dir.path().join(format!("{name}.back"));
        let _ = std::fs::remove_file(&dst);
        let o = self.compose(
            env,
            &[
                "cp",
                &format!("worker:/artifacts/{name}"),
                &dst.display().to_string(),
            ],
        );
        assert!(o.status.success(), "docker compose cp back: {}", text(&o));
        std::fs::read_to_string(dst).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for env in ["staging", "prod"] {
            // Only this test's own projects, and their volumes, which it created.
            let _ = self.compose(env, &["down", "-v", "--remove-orphans", "--timeout", "2"]);
        }
    }
}

pub fn exit_code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last non-empty line of stdout.
pub fn last_line(o: &Output) -> String {
    stdout(o)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

impl Stack {
    /// Rewrites the config: `extra` (`K = "V", ...`) joins every
    /// environment's `vars`, and `compose` files follow the testbed's.
    pub fn edit_config(&self, extra_vars: &str, compose: &[&Path]) {
        let mut cfg = std::fs::read_to_string(&self.config).unwrap();
        if !extra_vars.is_empty() {
            cfg = cfg.replace("vars = { ", &format!("vars = {{ {extra_vars}, "));
        }
        let testbed = root().join("deployments/testbed/docker-compose.yml");
        let mut files = format!("\"{}\"", testbed.display());
        for f in compose {
            files.push_str(&format!(", \"{}\"", f.display()));
        }
        cfg = cfg.replace(&format!("\"{}\"", testbed.display()), &files);
        std::fs::write(&self.config, cfg).unwrap();
    }
}

/// Runs `testbed healthcheck URL` in a throwaway container attached to
/// `network`, as any other container of a stack could, then removes it:
/// `Ok` when the GET answered 200 with status ok, else why not (`connect
/// ...: Connection refused` when nothing listens, `unhealthy: HTTP ...`
/// when something answered).
pub fn get_from_network(network: &str, image: &str, url: &str) -> Result<(), String> {
    let mut c = Command::new("timeout");
    c.args([
        "30",
        "docker",
        "run",
        "--rm",
        "--network",
        network,
        "--entrypoint",
        "/testbed",
    ])
    .arg(image)
    .args(["healthcheck", url]);
    probe(c)
}

/// `Ok`, or the stderr of a `testbed healthcheck` run by `c`.
pub fn probe(mut c: Command) -> Result<(), String> {
    let o = c.output().expect("running docker");
    match o.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
    }
}

/// Asserts that nothing listens at `url`'s port: the connection was refused
/// (an answer of any kind, `unhealthy: HTTP ...`, fails).
pub fn assert_refused(r: Result<(), String>, url: &str) {
    match r {
        Err(e) if e.contains("connect") && e.contains("refused") => {}
        other => panic!("{url} must refuse the connection, got {other:?}"),
    }
}

/// The host sources of every bind mount of `project`'s containers, by container name.
pub fn bind_mounts(project: &str) -> Vec<(String, String)> {
    let ids = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let o = Command::new("docker")
        .args(["inspect", "--format"])
        .arg("{{.Name}}{{range .Mounts}} {{.Type}}={{.Source}}{{end}}")
        .args(&ids)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .flat_map(|l| {
            let mut f = l.split(' ');
            let name = f.next().unwrap_or("").trim_start_matches('/').to_string();
            f.filter_map(|m| m.strip_prefix("bind=").map(str::to_string))
                .map(|src| (name.clone(), src))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Appends a successful deploy of each tag in turn to `log` through the
/// library (test setup: history without running anything).
pub fn seed_deploys(log: &Log, tags: &[&str]) {
    let mut from = None;
    for t in tags {
        let to = xtask::audit::ImageRef::new(t.to_string(), None);
        log.append(
            xtask::audit::Entry {
                action: "deploy".into(),
                outcome: "success".into(),
                from: from.clone(),
                to: Some(to.clone()),
                git_sha: None,
                reason: "seed".into(),
                error: None,
                set: None,
                duration_ms: 1,
            },
            false,
        )
        .unwrap();
        from = Some(to);
    }
}

impl Stack {
    /// A request the api logs as `GET /<what> -> 404` (a 404 is logged;
    /// /health is not): a line a logs test can look for.
    pub fn mark(&self, env: &str, what: &str) {
        let r = reqwest::blocking::get(format!("{}/{what}", self.api(env))).unwrap();
        assert_eq!(r.status(), 404);
    }
}

/// Bad input: exit 1, one line on stderr starting `error: ` and naming
/// `what`, nothing on stdout.
pub fn assert_bad_input(o: &Output, what: &str) {
    assert_eq!(exit_code(o), 1, "{}", text(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "{}", text(o));
    assert!(
        err.starts_with("error: ") && err.contains(what),
        "{}",
        text(o)
    );
    assert!(stdout(o).is_empty(), "{}", text(o));
}

/// Builds `repo:tag` from the testbed's v1 image with `APP_VERSION=tag` and
/// a label that makes each variant other bytes (the health gate cannot
/// tell them apart); pushed when `push`, returning the registry's digest
/// (or an empty string for an image only this host has).
pub fn variant(repo: &str, tag: &str, variant: &str, push: bool) -> String {
    use std::io::Write as _;
    use std::process::Stdio;
    let from = format!("127.0.0.1:5000/fetchml/testbed:{}", images().v1);
    let dockerfile =
        format!("FROM {from}\nENV APP_VERSION={tag}\nLABEL digest-e2e.variant={variant}\n");
    let image = format!("{repo}:{tag}");
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let o = build.wait_with_output().unwrap();
    assert!(o.status.success(), "docker build {image}: {}", text(&o));
    if !push {
        return String::new();
    }
    let o = Command::new("docker")
        .args(["push", "--quiet", &image])
        .output()
        .unwrap();
    assert!(o.status.success(), "docker push {image}: {}", text(&o));
    xtask::engine::registry::digest(repo, tag, 10).unwrap()
}

/// `(container ID, image ID, configured image)` of the running `service`
/// container of `env` (as `docker inspect` reports it).
pub fn app_container(s: &Stack, env: &str, service: &str) -> (String, String, String) {
    let id = s.container_id(env, service);
    assert!(!id.is_empty(), "no {service} container in {env}");
    let o = Command::new("docker")
        .args(["inspect", "--format", "{{.Image}} {{.Config.Image}}", &id])
        .output()
        .unwrap();
    let t = stdout(&o);
    let (img, cfg) = t.trim().split_once(' ').unwrap();
    (id, img.to_string(), cfg.to_string())
}

/// The local image ID of `reference` (`repo@digest`, `repo:tag`).
pub fn image_id(reference: &str) -> String {
    let o = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    stdout(&o).trim().to_string()
}

/// Removes this host's `repo:tag` images a test built (the registry keeps its copy).
pub fn remove_images(refs: &[String]) {
    let _ = Command::new("docker")
        .args(["image", "rm"])
        .args(refs)
        .output();
}

/// The first `error: ` line of stderr.
pub fn first_error_line(o: &Output) -> String {
    stderr(o)
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string()
}
