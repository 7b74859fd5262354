//! A scratch testbed environment for the deploy benchmarks: its own config,
//! compose project (or swarm stack), loopback ports and state directory,
//! taken down on drop (its own project and volumes only).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::cmd::{Command, Effect};

/// How long the old set drains after a switch, in the benchmarks' config
/// and in the hand procedure alike.
pub const DRAIN_SECS: u64 = 2;

pub struct Bed {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub project: String,
    /// The compose file (or the swarm stack file).
    pub file: PathBuf,
    pub swarm: bool,
    /// The proxy's loopback ports: the api's front, and the admin API.
    pub port: u16,
    pub admin: u16,
}

impl Bed {
    /// `name` tells benchmarks apart in temp dirs and project names; `engine` is compose or swarm.
    pub fn new(name: &str, engine: &str) -> Result<Bed> {
        Self::with_replicas(name, engine, 1)
    }

    /// [`Bed::new`] with `replicas` of each app service (`APP_REPLICAS`).
    pub fn with_replicas(name: &str, engine: &str, replicas: u32) -> Result<Bed> {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("xtask-bench-{name}-{engine}-{pid}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let [port, admin] = crate::repo::free_ports(2)?[..] else {
            unreachable!("asked for two ports")
        };
        let project = format!("xt{name}-{engine}-{pid}");
        let swarm = engine == "swarm";
        let file = crate::repo::workspace_root().join(if swarm {
            "deployments/testbed/docker-stack.yml"
        } else {
            "deployments/testbed/docker-compose.yml"
        });
        let config = dir.join("deploy.toml");
        std::fs::write(
            &config,
            format!(
                r#"[env.staging]
engine = "{engine}"
project = "{project}"
compose_files = ["{}"]
app_services = ["api", "worker"]
stateful_services = ["redis"]
images = {{ api = "127.0.0.1:5000/fetchml/testbed", worker = "127.0.0.1:5000/fetchml/testbed" }}
health_urls = ["http://127.0.0.1:{port}/health"]
compliance_mode = "standard"
health_timeout_secs = {gate}
rollback_timeout_secs = 30
vars = {{ API_PORT = "{port}", PROXY_ADMIN_PORT = "{admin}", COMPLIANCE_MODE = "standard", APP_REPLICAS = "{replicas}" }}
proxy = {{ service = "proxy", {admin_dir}routes = {{ api = 8080 }}, probe_ports = {{ worker = {worker_port} }}, drain_secs = {DRAIN_SECS} }}
"#,
                file.display(),
                // A broken version fails its gate after this long.
                gate = if swarm { 30 } else { 5 },
                // The stack file keeps the worker on 8080; the compose file moves it.
                worker_port = if swarm { 8080 } else { 8081 },
                admin_dir = if swarm {
                    String::new()
                } else {
                    "admin_dir = \"proxy-admin\", ".to_string()
                },
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Ok(Bed {
            dir,
            config,
            project,
            file,
            swarm,
            port,
            admin,
        })
    }

    /// This binary, run as an operator would, against the scratch config and state.
    fn command(&self, args: &[&str]) -> Result<Command> {
        Ok(Command::new(&exe()?, Effect::Mutating)
            .arg("--config")
            .arg(self.config.display().to_string())
            .arg("--state-dir")
            .arg(self.dir.join("state").display().to_string())
            .args(args.iter().copied())
            .env("USER", "bench")
            .timeout(600))
    }

    /// Runs [`Bed::command`]; anything but success is an error.
    pub fn xtask(&self, args: &[&str]) -> Result<()> {
        crate::cmd::run(&self.command(args)?, false)
            .map(drop)
            .with_context(|| format!("xtask {args:?} failed"))
    }

    /// [`Bed::xtask`], returning the exit code and the last line of stderr
    /// instead of judging them.
    pub fn xtask_exit(&self, args: &[&str]) -> Result<(i32, String)> {
        let c = self.command(args)?;
        let o = crate::cmd::output(&c).with_context(|| format!("running xtask {args:?}"))?;
        let last = o.stderr.lines().rev().find(|l| !l.trim().is_empty());
        Ok((o.code.unwrap_or(-1), last.unwrap_or_default().to_string()))
    }

    /// `docker compose` on the scratch project, with the config's variables (the hand procedure).
    pub fn compose(&self, tag: &str, args: &[&str]) -> Result<()> {
        let c = Command::new("docker", Effect::Mutating)
            .args(["compose", "-p", &self.project, "-f"])
            .arg(self.file.display().to_string())
            .args(args.iter().copied())
            .env("FETCHML_TAG", tag)
            .env("API_PORT", self.port.to_string())
            .env("PROXY_ADMIN_PORT", self.admin.to_string())
            .env("COMPLIANCE_MODE", "standard");
        crate::cmd::run(&c, false)
            .map(drop)
            .with_context(|| format!("docker compose {args:?}"))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if self.swarm {
            crate::engine::cluster::remove_stack(&self.project);
        } else {
            let _ = self.compose("x", &["down", "-v", "--timeout", "2"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds and pushes testbed image `tag` (a `broken` one fails its
/// health) unless it is already present.
pub fn ensure_image(tag: &str, broken: bool) -> Result<()> {
    if crate::engine::docker::image_present(&format!("127.0.0.1:5000/fetchml/testbed:{tag}")) {
        return Ok(());
    }
    let c = Command::new(&exe()?, Effect::Mutating)
        .args([
            "--config",
            "deployments/testbed/deploy.toml",
            "build",
            "--push",
            "--tag",
            tag,
        ])
        .args(broken.then_some("--broken"))
        .cwd(crate::repo::workspace_root())
        .timeout(1800);
    crate::cmd::run(&c, false)
        .map(drop)
        .with_context(|| format!("building {tag}"))
}

/// This binary's path, as a program name for [`Command`].
pub fn exe() -> Result<String> {
    Ok(std::env::current_exe()
        .context("finding the xtask binary")?
        .display()
        .to_string())
}
