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
    /// A check could not run, so nothing was judged: a compose file that
    /// does not render (security-modes-test). Not "insecure" (6).
    NotChecked = 8,
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
