//! The local single-node swarm as a shared resource: a [`Session`] that
//! initialises a swarm only where the node has none, leaves it only if it
//! initialised it, and lets one user at a time in; and the removal of a
//! stack together with the volumes it created.
//!
//! Used by the Swarm end-to-end tests, the zero-downtime benchmark and
//! `demo --engine swarm`. Never touches a swarm it did not initialise (it is
//! left as found), another stack, or a volume not labelled with the stack's
//! namespace.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{Command, Effect};

/// How long a removed stack's containers may take to go before its volumes
/// are removed anyway (a volume still in use then fails to go, and says so).
const GONE_SECS: u64 = 60;

/// One user of the local swarm at a time, across processes (test binaries,
/// benchmarks, the demo): a file lock held for the session. The swarm is
/// initialised only if the node was `inactive`, and left on drop only if
/// this session initialised it, so a swarm someone else runs is left as
/// found.
pub struct Session {
    created: bool,
    leave: bool,
    _lock: File,
}

fn docker_out(args: &[&str]) -> Result<String> {
    let c = Command::new("docker", Effect::Mutating)
        .args(args.iter().copied())
        .timeout(120);
    Ok(crate::cmd::run(&c, false)?.trim().to_string())
}

/// The session lock. The swarm belongs to the machine's engine, not to a
/// checkout, so the lock is machine-wide: every worktree and clone on this
/// host takes the same one.
pub fn lock_path() -> PathBuf {
    let dir = PathBuf::from("/run/lock");
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    dir.join("fetchml-xtask-swarm-session.lock")
}

impl Session {
    /// Waits for the session lock, then initialises a swarm on 127.0.0.1 if
    /// the node has none.
    pub fn enter() -> Result<Session> {
        let lock = hold_lock()?;
        let state = docker_out(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .context("asking the engine whether this node is in a swarm")?;
        let created = match state.as_str() {
            "inactive" => {
                docker_out(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
                    .context("initialising a single-node swarm")?;
                true
            }
            "active" => false,
            other => bail!("the local swarm is `{other}`; expected active or inactive"),
        };
        Ok(Session {
            created,
            leave: created,
            _lock: lock,
        })
    }
}

/// Waits for the machine's swarm session lock and holds it while the file
/// lives (a swarm user that makes its own swarm, like the two-node rehearsal).
pub fn hold_lock() -> Result<File> {
    let path = lock_path();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "waiting for the swarm session lock {} (another swarm user on this machine)",
                path.display()
            );
            lock.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    Ok(lock)
}

impl Session {
    /// Did this session initialise the swarm?
    pub fn created(&self) -> bool {
        self.created
    }

    /// Keeps the swarm on drop even if this session initialised it (stacks
    /// left running for a person to look at need it); `docker swarm leave
    /// --force` removes it later.
    pub fn keep_swarm(&mut self) {
        self.leave = false;
    }

    /// Ends the session now: leaves the swarm if this session initialised
    /// it (and was not told to keep it), saying so when that fails or the
    /// node is still in a swarm after it, then releases the lock. The check
    /// runs under the lock: once it is released, another user may already
    /// be initialising a swarm of its own.
    pub fn end(mut self) -> Result<()> {
        if std::mem::take(&mut self.leave) {
            docker_out(&["swarm", "leave", "--force"])
                .context("leaving the swarm this session initialised")?;
            let state = docker_out(&["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
            if state != "inactive" {
                bail!("the swarm this session initialised is still `{state}` after leaving it");
            }
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.leave {
            let _ = docker_out(&["swarm", "leave", "--force"]);
        }
    }
}

/// `docker stack rm STACK`: removes the stack's services, networks and
/// secrets (not its volumes); a stack that is not there is not an error.
pub fn stack_rm(stack: &str) -> Command {
    Command::new("docker", Effect::Mutating)
        .args(["stack", "rm", stack])
        .timeout(120)
}

/// Once the containers of a removed stack are gone (at most a minute), the
/// volumes it created (labelled with its namespace); returns their names.
/// A volume that fails to go is an error naming it, after the others went.
pub fn remove_volumes(stack: &str) -> Result<Vec<String>> {
    let label = format!("label=com.docker.stack.namespace={stack}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(GONE_SECS) {
        match docker_out(&["ps", "-aq", "--filter", &label]) {
            Ok(ids) if ids.is_empty() => break,
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
    let vols = docker_out(&["volume", "ls", "-q", "--filter", &label])
        .with_context(|| format!("listing the volumes of stack {stack}"))?;
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for v in vols.lines().filter(|v| !v.is_empty()) {
        match docker_out(&["volume", "rm", v]) {
            Ok(_) => removed.push(v.to_string()),
            Err(e) => failed.push(format!("{v}: {e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!(
            "volumes of stack {stack} not removed: {}",
            failed.join("; ")
        );
    }
    Ok(removed)
}

/// Removes a stack this process deployed, then, once its containers are
/// gone, the volumes it created. Best effort: for cleanup on drop.
pub fn remove_stack(stack: &str) {
    let _ = crate::cmd::run(&stack_rm(stack), false);
    let _ = remove_volumes(stack);
}
