//! The FetchML operations task-runner, as a library so that tests and
//! benchmarks reach the same code the `cargo xtask` binary runs.

pub mod audit;
pub mod bench;
pub mod config;
pub mod engine;
pub mod exec;
pub mod exit;
pub mod flags;
pub mod health;
pub mod lock;
pub mod plan;
pub mod preflight;
pub mod tasks;
pub mod validate;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::Config;
use crate::engine::ComposeCli;
use crate::exec::Actions;
use crate::flags::{Format, Global};
use crate::plan::Plan;
use crate::preflight::Tool;

/// The workspace root (where Cargo.toml with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `n` distinct free loopback ports. Every listener is held until all are
/// chosen, so one call never hands out the same port twice (asking one at a
/// time can, once the first listener is closed).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    use anyhow::Context as _;
    let listeners = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .context("asking the OS for a free loopback port")
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Are we root? Read from /proc, so no libc call is needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// HEAD's commit, if this is a git checkout.
pub fn git_sha() -> Option<String> {
    let out = duct::cmd!("git", "rev-parse", "HEAD")
        .dir(workspace_root())
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && s.len() == 40).then_some(s)
}

/// The default tag: `sha-<12 hex of HEAD>`.
pub fn head_tag() -> Result<String> {
    let sha =
        git_sha().ok_or_else(|| anyhow::anyhow!("cannot read HEAD's commit: pass --tag TAG"))?;
    Ok(format!("sha-{}", &sha[..12]))
}

/// What every task gets: the global flags and the config, loaded on demand.
pub struct Ctx {
    pub global: Global,
}

impl Ctx {
    /// The config path: as given if it exists (relative to the working
    /// directory), else relative to the workspace root.
    pub fn config_path(&self) -> PathBuf {
        let p = &self.global.config;
        if p.is_absolute() || p.exists() {
            p.clone()
        } else {
            workspace_root().join(p)
        }
    }

    pub fn config(&self) -> Result<Config> {
        Config::load(&self.config_path())
    }

    /// The audit log of `env`. With `--state-dir ROOT`, a configured sink
    /// moves to `ROOT/sink`, so an isolated run (a test, a rehearsal) never
    /// mirrors into, or compares against, the real environment's sink.
    pub fn log(&self, cfg: &Config, env: &str) -> Result<audit::Log> {
        let e = cfg.env(env)?;
        let dir = e.state_dir(cfg, env, self.global.state_dir.as_deref());
        let sink = e.audit_sink.as_ref().map(|s| match &self.global.state_dir {
            Some(root) => root.join("sink"),
            None => cfg.resolve(s),
        });
        Ok(audit::Log::new(&dir, env, sink.as_deref()))
    }

    /// Preflight for `tools`: a real run fails with exit 2; a dry run warns.
    pub fn preflight(&self, plan: &mut Plan, tools: &[Tool], daemon: bool) -> Result<ComposeCli> {
        let (cli, warnings) = preflight::check(tools, daemon).enforce(self.global.dry_run)?;
        plan.warnings
            .extend(warnings.into_iter().map(|w| format!("preflight: {w}")));
        Ok(cli)
    }

    /// Dry run: print the plan and stop. Otherwise apply it and print the
    /// outcome, with the new audit head as the last line.
    pub fn finish(&self, plan: &Plan, actions: &mut dyn Actions) -> Result<()> {
        if self.global.dry_run {
            match self.global.format {
                Format::Text => print!("{}", plan.render()),
                Format::Json => println!("{}", serde_json::to_string_pretty(plan)?),
            }
            return Ok(());
        }
        let applied = exec::apply(plan, self.global.verbose, actions)?;
        match self.global.format {
            Format::Text => {
                println!("{}: {}", plan.task, applied.outcome);
                if let Some(h) = &applied.head {
                    println!("audit head: {h}");
                }
            }
            Format::Json => println!(
                "{}",
                serde_json::json!({"task": plan.task, "env": plan.env, "outcome": applied.outcome, "audit_head": applied.head})
            ),
        }
        Ok(())
    }
}
