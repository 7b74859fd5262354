//! `lock status|acquire|release <env>`: look at the environment's deploy
//! lock, and hold it across processes for a maintenance window.
//!
//! - `status` says whether a deploy or rollback holds the lock right now
//!   (read from the kernel's lock table, so it never takes the lock even
//!   briefly) and shows any maintenance hold. Read-only.
//! - `acquire -m MESSAGE` takes the lock, writes the maintenance hold next
//!   to it (`maintenance.json`) and records `lock-acquire`. Until
//!   `release`, every deploy and rollback is refused (exit 5) naming the
//!   holder and the message (`crate::lock::acquire` reads the hold).
//! - `release` takes the lock, removes the hold and records `lock-release`.
//!
//! Both writers refuse a chain that does not verify (exit 6) before doing
//! anything, and undo their change if the record cannot be appended, so a
//! hold and the audit chain never disagree.
//!
//! Needs: the config and the state directory; no engine.
//! Never touches: containers, images, and any running deploy (a held lock
//! refuses `acquire` with exit 5 instead of waiting, unless --lock-wait).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::json;

use crate::audit::Log;
use crate::ctx::Ctx;
use crate::exec::{Actions, Applied};
use crate::flags::{Format, LockCmd};
use crate::lock::{self, Hold, RELEASE_TASK};
use crate::plan::{Effect, Plan, RecordSpec, Step};

const ACQUIRE_TASK: &str = "lock acquire";

pub fn run(ctx: &Ctx, cmd: LockCmd) -> Result<()> {
    match cmd {
        LockCmd::Status { env } => status(ctx, &env),
        LockCmd::Acquire {
            env,
            message,
            lock_wait,
        } => acquire(ctx, &env, &message, lock_wait),
        LockCmd::Release { env, message } => release(ctx, &env, message.as_deref()),
    }
}

/// A message for a hold: said, bounded, one line (it is shown in refusals).
pub fn message(m: &str) -> Result<()> {
    if m.trim().is_empty() {
        bail!("--message is empty: say why the environment is held, e.g. -m \"db migration until 15:00\"");
    }
    if m.len() > 1024 {
        bail!(
            "--message is {} bytes: it can be at most 1024 bytes",
            m.len()
        );
    }
    if m.chars().any(char::is_control) {
        bail!(
            "--message contains a control character (newline, tab, escape): write it on one line"
        );
    }
    Ok(())
}

fn lock_path(log: &Log) -> PathBuf {
    log.path.with_file_name(lock::LOCK_FILE)
}

pub fn status(ctx: &Ctx, env: &str) -> Result<()> {
    let cfg = ctx.config()?;
    let path = lock_path(&ctx.log(&cfg, env)?);
    let running = lock::running(&path);
    let hold = lock::read_hold(&path);
    match ctx.global.format {
        Format::Json => crate::out::merge(json!({
            "env": env,
            "lock": path,
            "running": running,
            "maintenance": hold.as_ref().ok().cloned().flatten(),
            "maintenance_error": hold.as_ref().err().map(|e| format!("{e:#}")),
        })),
        Format::Text => {
            println!("env: {env}");
            let (run, held) = lock::describe(env, &running, &hold);
            println!("{run}");
            for l in held {
                println!("{l}");
            }
        }
    }
    Ok(())
}

/// Writes or removes the hold, under the lock the plan took.
struct Window {
    lock: PathBuf,
    hold: Hold,
    changed: bool,
    /// Said once the change is applied and recorded (never in a dry run).
    done: Option<String>,
}

impl Actions for Window {
    fn run(&mut self, id: &str) -> Result<()> {
        match id {
            "hold" => lock::write_hold(&self.lock, &self.hold)?,
            "release" => {
                if !lock::remove_hold(&self.lock)? {
                    bail!("the maintenance hold is gone: another `lock release` ran meanwhile");
                }
            }
            _ => bail!("lock has no action `{id}`"),
        }
        self.changed = true;
        Ok(())
    }
    fn report(&mut self, result: std::result::Result<&Applied, &anyhow::Error>) {
        if let (Ok(_), Some(done)) = (result, &self.done) {
            eprintln!("{done}");
        }
    }
}

/// The plan both writers share: the facts, the lock, one action, the record.
fn plan(log: &Log, task: &str, wait: u64, action: (&str, String)) -> Result<Plan> {
    let env = log.env.as_str();
    let v = log.verify()?;
    let mut plan = Plan::new(task, Some(env));
    let path = log.path.display().to_string();
    plan.fact(
        "audit chain",
        format!("{} records, head {}", v.count, v.head),
        &path,
    );
    let lock = lock_path(log);
    let hold = lock::hold_path(&lock).display().to_string();
    match lock::read_hold(&lock) {
        Ok(None) => plan.fact("maintenance hold", "none", &hold),
        Ok(Some(h)) => plan.fact(
            "maintenance hold",
            format!("held by {}", h.describe()),
            &hold,
        ),
        Err(e) => plan.fact("maintenance hold", format!("unreadable: {e:#}"), &hold),
    }
    plan.step(Step::Lock {
        env: env.into(),
        path: lock,
        wait_secs: wait,
        task: task.into(),
        planned_head: None,
    });
    plan.step(Step::action(action.0, action.1, Effect::Mutating));
    Ok(plan)
}

fn record(log: &Log, action: &str, reason: String) -> RecordSpec {
    RecordSpec {
        env: log.env.clone(),
        log: log.path.clone(),
        sink: log.sink.clone(),
        action: action.into(),
        from: None,
        to: None,
        reason,
        from_digest: None,
        to_digest: None,
        from_digests: Default::default(),
        to_digests: Default::default(),
        to_local: Default::default(),
        repository: None,
        force: false,
        sets_of: None,
        notify: None,
    }
}

pub fn acquire(ctx: &Ctx, env: &str, msg: &str, wait: u64) -> Result<()> {
    message(msg)?;
    let cfg = ctx.config()?;
    if let Some((at, _)) = cfg.env(env)?.host_state(env)? {
        // The hold is a file beside this machine's lock: another
        // operator's deploy, locking on the host, would never see it.
        return Err(crate::exit::refuse(
            crate::exit::Refusal::Config,
            format!("`{env}` keeps its deploy lock on {at}, and maintenance holds are kept on this machine only, so another operator would not see one; not supported for an environment on an SSH host yet (nothing was changed)"),
        ));
    }
    let log = ctx.log(&cfg, env)?;
    let lock = lock_path(&log);
    let what = format!(
        "write the maintenance hold {}: deploys and rollbacks of {env} are refused until `cargo xtask lock release {env}`",
        lock::hold_path(&lock).display()
    );
    let mut plan = plan(&log, ACQUIRE_TASK, wait, ("hold", what))?;
    plan.record = Some(record(&log, "lock-acquire", msg.into()));
    let mut w = Window {
        lock,
        hold: Hold::new(msg),
        changed: false,
        done: Some(format!("{env} is held for maintenance: deploys and rollbacks are refused until `cargo xtask lock release {env}`")),
    };
    let result = ctx.finish(&plan, &mut w);
    if let (Err(e), true) = (&result, w.changed) {
        // The hold was written but not recorded: take it back.
        undo(&w.lock, env, |p| lock::remove_hold(p).map(drop)).with_context(|| format!("{e:#}"))?;
        return result
            .context("the maintenance hold was removed again, as it could not be recorded");
    }
    result
}

pub fn release(ctx: &Ctx, env: &str, msg: Option<&str>) -> Result<()> {
    if let Some(m) = msg {
        message(m)?;
    }
    let cfg = ctx.config()?;
    let log = ctx.log(&cfg, env)?;
    let lock = lock_path(&log);
    let held = match lock::read_hold(&lock) {
        Ok(Some(h)) => h,
        Ok(None) => {
            eprintln!("{env} has no maintenance hold: nothing to release");
            if ctx.global.format == Format::Json {
                crate::out::set("env", env);
                crate::out::set("outcome", "nothing to release");
            }
            return Ok(());
        }
        // Unreadable: remove it all the same (the record says so).
        Err(e) => Hold {
            message: format!("unreadable hold: {e:#}"),
            actor: "unknown".into(),
            host: "unknown".into(),
            since: "unknown".into(),
        },
    };
    let what = format!(
        "remove the maintenance hold {} of {}",
        lock::hold_path(&lock).display(),
        held.describe()
    );
    // A deploy polling with --lock-wait takes the lock for an instant to
    // read the hold: wait out such blips rather than fail.
    let mut plan = plan(&log, RELEASE_TASK, 10, ("release", what))?;
    let reason = format!(
        "{} (ends the hold of {})",
        msg.unwrap_or("released"),
        held.describe()
    );
    plan.record = Some(record(&log, "lock-release", reason));
    let mut w = Window {
        lock,
        hold: held,
        changed: false,
        done: None,
    };
    let result = ctx.finish(&plan, &mut w);
    if let (Err(e), true) = (&result, w.changed) {
        let hold = w.hold.clone();
        undo(&w.lock, env, |p| lock::write_hold(p, &hold)).with_context(|| format!("{e:#}"))?;
        return result
            .context("the maintenance hold was put back, as its release could not be recorded");
    }
    result
}

/// Runs `f` on the hold under the lock again, after a plan whose record failed.
fn undo(lock: &Path, env: &str, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let _guard = lock::acquire(lock, env, RELEASE_TASK, Duration::from_secs(10))
        .context("taking the lock again to undo the maintenance hold change")?;
    f(lock).context(
        "undoing the maintenance hold change (the hold file and the audit chain now disagree)",
    )
}
