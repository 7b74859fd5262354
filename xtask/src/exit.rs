//! Exit codes: one meaning each, documented in README.md.
//!
//! Task code returns `anyhow::Error`; where the failure has a meaning other
//! than "error" it wraps an [`Exit`], and `main` maps it to the process status.

use std::fmt;

/// The process exit codes, one meaning each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Bad input, config or I/O.
    Error = 1,
    /// A required tool or engine is missing or unreachable.
    Preflight = 2,
    /// The deploy failed its gate and was rolled back to the previous version.
    RolledBack = 3,
    /// The deploy failed and the rollback failed too: the environment needs a human.
    RollbackFailed = 4,
    /// Refused by a gate or a held lock; nothing was changed.
    Refused = 5,
    /// A verification failed: audit chain, backup smoke, security mode.
    Verify = 6,
    /// `status`: what the engine runs differs from what the audit chain says.
    Drift = 7,
    /// `status`: the serving version fails its health check, or the proxy
    /// in front of it is down.
    Unhealthy = 8,
    /// A check could not run, so nothing was judged: a compose file that
    /// does not render (security-modes-test). Not "insecure" (6).
    NotChecked = 9,
    /// Stopped by SIGHUP (128 + 1), SIGINT (128 + 2) or SIGTERM (128 + 15);
    /// the work was recorded, the lock released, and a touched stack put back.
    Hangup = 129,
    Interrupt = 130,
    Terminate = 143,
}

impl Code {
    /// The code for work stopped by the last signal received.
    pub fn of_signal() -> Code {
        match crate::cmd::signal_exit_code() {
            Some(129) => Code::Hangup,
            Some(130) => Code::Interrupt,
            _ => Code::Terminate,
        }
    }
}

/// Every reason a task refuses (exit 5) before it touches anything. Each
/// is a check that the dry run evaluates the same way, read-only, with the
/// same first error line (`exec::preview`); `tests/parity.rs` runs every
/// one in both modes. A refusal is made only through [`refuse`], so a new
/// one is a new variant here, and that test does not compile without its
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// Another process holds the environment's deploy lock.
    Locked,
    /// A maintenance hold (`lock acquire`), readable or not.
    Held,
    /// The audit head moved while the task waited for the lock
    /// (`--lock-wait`); a dry run does not wait, so it sees the new head.
    StalePlan,
    /// `deploy-prod` without `--yes`, outside CI.
    NotConfirmed,
    /// Blue/green: the proxy's admin API does not answer, or lacks a route.
    ProxyDown,
    /// The audit log or its sink cannot take the record: the state
    /// directory or the sink is not creatable or writable, or has no room.
    RecordUnwritable,
    /// The audit log or its sink is writable by group or others.
    LooseLog,
    /// The config contradicts itself or its compose files.
    Config,
    /// A secrets file that the compose files name is missing.
    Secrets,
    /// The tag's image is neither in the registry nor (for a rollback) present.
    Manifest,
    /// Swarm: this host is no manager, or no ready node can take a service.
    Swarm,
    /// The promotion gate: evidence from the source environment is missing.
    Evidence,
    /// The compose files lack what blue/green needs (slot label, no app port).
    BlueGreen,
    /// The engine or the proxy could not say which set serves.
    UnknownSets,
    /// Rollback: no version to roll back to, or the one asked for is not one.
    NoTarget,
    /// `pull = "never"`: an app service's image is not on this host.
    NotLocal,
    /// The inherited `DOCKER_HOST`/`DOCKER_CONTEXT` names another engine
    /// than the environment declares (`host`/`context`, or this machine).
    ForeignEngine,
}

impl Refusal {
    pub const ALL: [Refusal; 17] = [
        Refusal::Locked,
        Refusal::Held,
        Refusal::StalePlan,
        Refusal::NotConfirmed,
        Refusal::ProxyDown,
        Refusal::RecordUnwritable,
        Refusal::LooseLog,
        Refusal::Config,
        Refusal::Secrets,
        Refusal::Manifest,
        Refusal::Swarm,
        Refusal::Evidence,
        Refusal::BlueGreen,
        Refusal::UnknownSets,
        Refusal::NoTarget,
        Refusal::NotLocal,
        Refusal::ForeignEngine,
    ];
}

/// The error of a refusal: exit 5, nothing was changed. The reason is
/// named at every call so that each refusal site maps to a [`Refusal`].
pub fn refuse(_why: Refusal, message: impl Into<String>) -> anyhow::Error {
    fail(Code::Refused, message)
}

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Builds an error that exits with `code`.
pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        message: message.into(),
    })
}

/// The exit code an error maps to: the innermost [`Exit`] in its chain, else 1.
pub fn code_of(err: &anyhow::Error) -> Code {
    err.chain()
        .find_map(|e| e.downcast_ref::<Exit>())
        .map(|e| e.code)
        .unwrap_or(Code::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn code_survives_context() {
        let err = Err::<(), _>(fail(Code::Refused, "lock held"))
            .context("deploying staging")
            .unwrap_err();
        assert_eq!(code_of(&err), Code::Refused);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), Code::Error);
    }
}
