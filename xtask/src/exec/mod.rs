//! The one executor: applies a [`Plan`] step by step.
//!
//! Outcomes and exit codes are decided here, once, for every task:
//! - every step passes: `success`, exit 0;
//! - a lock or gate refuses before anything was touched: `refused`, exit 5;
//! - a step fails before the stack was touched: `failure`, the step's code;
//! - a step fails after a recreate began: the plan's [`OnFailure`] runs;
//!   recovered is `rolled-back`, exit 3; a failed recovery is `failure`,
//!   exit 4; advice only is `failure`, exit 3;
//! - a signal (SIGTERM, SIGINT, SIGHUP) stops the running command's whole
//!   process group and starts no new step. Nothing touched: `interrupted`.
//!   Touched: the recovery runs as for a failure (`rolled-back`), unless a
//!   second signal arrives, which skips it (`failure`, the stack as it is).
//!   The exit is 128 + the signal, or 4 when the stack could not be put back.
//!
//! Before the first step, the executor checks that the plan's audit record
//! can be written (log and sink); if not, nothing runs. The record is
//! appended on every path above, the lock released after it, and the new
//! chain head is the last line printed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::audit::Log;
use crate::cmd::{self, Command, Effect, Interrupted};
use crate::engine::docker::image_present;
use crate::engine::slots::Slot;
use crate::exit::{code_of, fail, refuse, Code, Refusal};
use crate::lock::LockGuard;
mod phase;
mod record;

use crate::plan::{AppStep, OnFailure, Plan, RecordSpec, Step};
use phase::{app_phase_of, phase_of, shown};
use record::{append, bound, log_of};

/// The head appended by a plan that then failed, for `main` to print after the error.
pub static LAST_HEAD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Task-specific steps ([`Step::Action`]) are run by the task.
pub trait Actions {
    fn run(&mut self, id: &str) -> Result<()>;
    /// Undo what the actions started (scratch clusters, compose projects);
    /// runs on every exit path, a signal included.
    fn cleanup(&mut self) {}
    /// The task's own report once the plan was applied (never in a dry run).
    fn report(&mut self, _result: std::result::Result<&Applied, &anyhow::Error>) {}
    /// What the run found that its audit record should carry, appended to
    /// the plan's reason (backup-smoke: the chain's checkpoint).
    fn record_note(&self) -> Option<String> {
        None
    }
}

/// For plans without actions.
pub struct NoActions;
impl Actions for NoActions {
    fn run(&mut self, id: &str) -> Result<()> {
        anyhow::bail!("action `{id}` is not implemented yet")
    }
}

/// How a plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: &'static str,
    pub head: Option<String>,
}

struct Run<'a> {
    verbose: bool,
    actions: &'a mut dyn Actions,
    lock: Option<LockGuard>,
    /// When the proxy last switched: a retired set's drain runs from it.
    switched_at: Option<Instant>,
    /// The set the last set gate passed on, with the containers it reached.
    gated: Option<crate::engine::slots::Set>,
    /// The set the last set gate passed on: a later gate's failure
    /// shows its containers' logs only.
    under_test: Option<crate::engine::slots::Set>,
    /// The slots of the sets this run started beside the others, and of
    /// those it pointed a proxy route at: on a failure path a started set
    /// is removed even when the proxy is gone, unless it may have had traffic.
    started: Vec<Slot>,
    pointed: Vec<Slot>,
}

impl Run<'_> {
    fn step(&mut self, s: &Step) -> Result<()> {
        shown(phase_of(s, self.verbose), || self.step_inner(s))
    }

    fn app(&mut self, a: &AppStep) -> Result<()> {
        shown(app_phase_of(a), || self.app_inner(a))
    }

    fn step_inner(&mut self, s: &Step) -> Result<()> {
        match s {
            Step::Run { command, .. } => cmd::run(command, self.verbose).map(drop),
            Step::Lock {
                env,
                path,
                wait_secs,
                task,
                planned_head,
            } => {
                self.lock = Some(crate::lock::acquire(
                    path,
                    env,
                    task,
                    Duration::from_secs(*wait_secs),
                )?);
                if let Some((log, planned)) = planned_head {
                    let log = Log {
                        env: env.clone(),
                        path: log.clone(),
                        sink: None,
                    };
                    let now = log.verify()?.head;
                    if &now != planned {
                        return Err(refuse(
                            Refusal::StalePlan,
                            format!("the audit log of `{env}` changed while this task waited for the lock (head {now}); re-run to plan from the new state"),
                        ));
                    }
                }
                Ok(())
            }
            Step::Require { .. } | Step::Refuse { .. } | Step::Confirm { .. } => decided(s),
            Step::CopyFile { from, to } => {
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
                std::fs::copy(from, to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
                Ok(())
            }
            Step::StartStateful { target } => {
                if let Some(d) = target.proxy_admin_dir() {
                    crate::engine::proxy::prepare_dir(d)?;
                }
                self.commands(s.commands())
            }
            Step::ProxyReady { target, wait_secs } => {
                target.proxy_ready(*wait_secs).map_err(proxy_refusal)
            }
            Step::App(a) => self.app(a),
            Step::WriteFile {
                path,
                contents,
                what,
            } => {
                eprintln!("writing {what} to {}", path.display());
                if let Some(d) = path.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
                std::fs::write(path, contents)
                    .with_context(|| format!("writing {}", path.display()))
            }
            Step::Action { id, .. } => self.actions.run(id),
        }
    }

    fn app_inner(&mut self, a: &AppStep) -> Result<()> {
        match a {
            AppStep::EnsureImages { target } => {
                for r in target.image_refs() {
                    if image_present(&r) {
                        continue;
                    }
                    eprintln!("pulling {r} (not present locally)");
                    let pull = Command::new("docker", Effect::Mutating)
                        .args(["pull", "--quiet", r.as_str()])
                        .timeout(target.limits().pull_secs);
                    cmd::run(&pull, self.verbose)
                        .with_context(|| format!("image {r} is neither present nor pullable"))?;
                }
                Ok(())
            }
            // The phase (exec/phase.rs) already says what runs.
            AppStep::Pull { .. } | AppStep::Recreate { .. } | AppStep::Stop { .. } => {
                self.commands(a.commands())
            }
            AppStep::Converge {
                target,
                timeout_secs,
            } => crate::engine::swarm::wait(target, *timeout_secs, self.verbose),
            // After a switch, the set just switched to is what is under
            // test: a failure shows its containers' logs only.
            AppStep::HealthGate(g) => match &self.under_test {
                Some(set) => crate::health::wait(&crate::health::Gate {
                    logs: set.logs_commands(crate::health::LOG_LINES),
                    images: g
                        .images
                        .as_ref()
                        .map(|p| p.of_set(set.slot().filter(), set.services())),
                    ..g.clone()
                })
                .map(drop),
                None => crate::health::wait(g).map(drop),
            },
            AppStep::Discard { set, .. } if self.started.contains(&set.slot()) => {
                set.discard_started(self.pointed.contains(&set.slot()), self.verbose)
            }
            AppStep::Discard { set, .. } => set.discard(self.verbose),
            AppStep::StartBeside { set, scale } => {
                self.started.push(set.slot());
                set.start_beside(scale, self.verbose)
            }
            AppStep::Start { set, .. } => set.start(self.verbose),
            AppStep::GateSet { set, gate } => {
                let (urls, passed) = set.probed()?;
                let gate = crate::health::Gate {
                    urls,
                    logs: passed.logs_commands(crate::health::LOG_LINES),
                    images: gate
                        .images
                        .as_ref()
                        .map(|p| p.of_set(passed.slot().filter(), passed.services())),
                    ..gate.clone()
                };
                crate::health::wait(&gate)?;
                self.under_test = Some(passed.clone());
                self.gated = Some(passed);
                Ok(())
            }
            AppStep::Switch { set } => {
                let t = Instant::now();
                // To the containers the gate just passed, when it gated
                // this set's HTTP services (it never gates workers first).
                let gated = self.gated.take().filter(|g| {
                    g.slot() == set.slot()
                        && set
                            .part(true)
                            .services()
                            .iter()
                            .all(|s| g.services().contains(s))
                });
                let mut routes = 0;
                let switched = match gated {
                    Some(g) => g.switch_counted(&mut routes),
                    None => set.switch_counted(&mut routes),
                };
                if routes > 0 {
                    self.pointed.push(set.slot());
                }
                switched?;
                self.switched_at = Some(Instant::now());
                eprintln!(
                    "switched the proxy to {} in {:.0} ms",
                    set.describe(),
                    t.elapsed().as_secs_f64() * 1000.0
                );
                Ok(())
            }
            AppStep::Retire { set, .. } => set.retire(self.switched_at, self.verbose),
        }
    }

    fn commands(&mut self, cmds: Vec<Command>) -> Result<()> {
        for c in cmds {
            cmd::run(&c, self.verbose)?;
        }
        Ok(())
    }
}

/// The refusals decided while planning: an unmet requirement, a refusal,
/// a missing confirmation. Both modes refuse on them with these words.
fn decided(s: &Step) -> Result<()> {
    match s {
        Step::Require {
            refusal,
            what,
            missing,
            ..
        } if !missing.is_empty() => Err(refuse(
            *refusal,
            format!("refused: {what} not met: missing {}", missing.join("; ")),
        )),
        Step::Refuse { refusal, why } => Err(refuse(*refusal, format!("refused: {why}"))),
        Step::Confirm { given: false, how } => Err(refuse(
            Refusal::NotConfirmed,
            format!("refused: not confirmed; pass {how} once the plan is what you want (--dry-run shows it)"),
        )),
        _ => Ok(()),
    }
}

fn proxy_refusal(e: anyhow::Error) -> anyhow::Error {
    refuse(
        Refusal::ProxyDown,
        format!("refused before any app container was touched: {e:#}"),
    )
}

fn record_refusal(e: anyhow::Error) -> anyhow::Error {
    refuse(
        Refusal::RecordUnwritable,
        format!("refused before touching anything: {e:#}; nothing was changed and no record could be written"),
    )
}

/// The record's room, asked read-only: the first check of both modes.
fn record_room(r: &crate::plan::RecordSpec) -> Result<()> {
    log_of(r).room_for(bound(r)).map_err(record_refusal)
}

/// The dry run's twin of [`apply`]: every check the real run makes before
/// it touches anything, in the same order and read-only, refusing with the
/// same error as the real run would. It stops where the real run would
/// touch the stack. A proxy that an earlier step starts cannot be asked
/// yet; the real run waits for it.
pub fn preview(plan: &Plan) -> Result<()> {
    if let Some(r) = &plan.record {
        record_room(r)?;
    }
    let mut starts_proxy = false;
    for s in &plan.steps {
        match s {
            Step::Lock {
                env, path, task, ..
            } => crate::lock::peek(path, env, task)?,
            Step::Require { .. } | Step::Refuse { .. } | Step::Confirm { .. } => decided(s)?,
            Step::StartStateful { target } => starts_proxy = target.starts_proxy(),
            Step::ProxyReady { target, .. } if !starts_proxy => {
                target.proxy_ready(0).map_err(proxy_refusal)?
            }
            Step::App(a) if a.touches() => break,
            _ => {}
        }
    }
    Ok(())
}

fn noted(r: &RecordSpec, note: Option<String>) -> RecordSpec {
    let mut r = r.clone();
    if let Some(n) = note {
        r.reason = format!("{}; {n}", r.reason);
    }
    r
}

/// How the steps ended, before the record is written.
struct Ending {
    outcome: &'static str,
    error: Option<anyhow::Error>,
}

fn is_interrupt(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some())
}

/// Applies `plan`. Returns the outcome on success; on failure, an error whose
/// exit code follows the table above, after the audit record was appended.
pub fn apply(plan: &Plan, verbose: bool, actions: &mut dyn Actions) -> Result<Applied> {
    // From here on a signal is ours to handle: it is recorded, not fatal.
    let _guard = cmd::Guard::new();
    let started = Instant::now();
    if let Some(r) = &plan.record {
        record_room(r)?;
        log_of(r).probe_writable(bound(r)).map_err(record_refusal)?;
    }
    let since = cmd::interrupts();
    let mut run = Run {
        verbose,
        actions,
        lock: None,
        switched_at: None,
        gated: None,
        under_test: None,
        started: Vec::new(),
        pointed: Vec::new(),
    };
    let ending = {
        // Every piece of work in the steps (and their recovery) measures
        // from here: a signal between two commands of a step is not lost.
        let _since = cmd::Since::new(since);
        steps(plan, &mut run, since)
    };
    run.actions.cleanup();
    let Ending { outcome, error } = ending;
    crate::out::set("outcome", outcome);

    let head = match &plan.record {
        None => None,
        Some(r) => match append(
            &noted(r, run.actions.record_note()),
            outcome,
            error.as_ref(),
            started,
        ) {
            Ok(head) => Some(head),
            Err(ae) => {
                drop(run.lock.take());
                let msg = match &error {
                    Some(e) => format!("{e:#}; and the audit record could not be appended: {ae:#}"),
                    None => format!(
                        "the task succeeded but its audit record could not be appended: {ae:#}"
                    ),
                };
                let code = error.as_ref().map_or(code_of(&ae), code_of);
                return Err(fail(code, msg));
            }
        },
    };
    drop(run.lock.take());
    crate::out::set("audit_head", head.clone());
    // After the lock is released: a slow receiver holds up no other task.
    if let (Some(r), Some(h)) = (&plan.record, &head) {
        let code = error.as_ref().map_or(0, |e| code_of(e) as i32);
        record::notify(&plan.task, r, outcome, code, h);
    }
    if let (Some(h), Some(_)) = (&head, &error) {
        *LAST_HEAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
    }
    match error {
        Some(e) => Err(e),
        None => Ok(Applied { outcome, head }),
    }
}

/// Runs the steps and, where they fail after touching the stack, the recovery.
fn steps(plan: &Plan, run: &mut Run, since: usize) -> Ending {
    let mut touched = false;
    for s in &plan.steps {
        let result = cmd::check_interrupt(since).and_then(|()| {
            if matches!(s, Step::App(a) if a.touches()) {
                touched = true;
            }
            run.step(s)
        });
        let Err(e) = result else { continue };
        let interrupted = is_interrupt(&e);
        let code = if interrupted {
            Code::of_signal()
        } else {
            code_of(&e)
        };
        if !touched {
            let outcome = match code {
                Code::Refused => "refused",
                _ if interrupted => "interrupted",
                _ => "failure",
            };
            let error = if interrupted {
                fail(code, format!("{e:#}; nothing was changed"))
            } else {
                e
            };
            return Ending {
                outcome,
                error: Some(error),
            };
        }
        // The error itself is printed once, at the end, with what was done about it.
        eprintln!("a step failed after the stack was touched");
        return recover(plan, run, e, code, interrupted, since);
    }
    Ending {
        outcome: "success",
        error: None,
    }
}

fn recover(
    plan: &Plan,
    run: &mut Run,
    e: anyhow::Error,
    code: Code,
    interrupted: bool,
    since: usize,
) -> Ending {
    let env = plan.env.as_deref().unwrap_or("the environment");
    let (outcome, code, msg) = match &plan.on_failure {
        OnFailure::Nothing => ("failure", code, format!("{e:#}")),
        OnFailure::Advise { message } => {
            eprintln!("{message}");
            let code = if interrupted { code } else { Code::RolledBack };
            (
                "failure",
                code,
                format!("{e:#}; left as is (no automatic rollback)"),
            )
        }
        OnFailure::Recover { .. } if cmd::interrupts() > since + 1 => {
            eprintln!("!!! a second signal: recovery skipped; {env} is left as it is and needs a human !!!");
            (
                "failure",
                Code::RollbackFailed,
                format!("{e:#}; recovery skipped by a second signal: {env} is left as it is"),
            )
        }
        OnFailure::Recover { steps, to } => {
            let back = to.as_deref().unwrap_or("nothing running");
            eprintln!("putting {env} back on {back}");
            // A signal now (the first, or the first since an interrupted
            // step) lets the recovery finish; a second one stops it.
            let shield = cmd::Shield::absorbing_one(since);
            let mut recovered = Ok(());
            for r in steps {
                match &recovered {
                    Ok(()) => recovered = run.app(r),
                    // A failed set goes on every path: when an earlier
                    // recovery step failed (the proxy is gone, the old
                    // set's gate failed), its discard still runs. It asks
                    // the proxy first and refuses a set that has traffic.
                    Err(_) if matches!(r, AppStep::Discard { .. }) => {
                        if let Err(de) = run.app(r) {
                            eprintln!("{de:#}");
                        }
                    }
                    Err(_) => {}
                }
            }
            drop(shield);
            let held = if !interrupted && cmd::interrupts() > since {
                format!(
                    " ({} during the recovery was held until it finished)",
                    cmd::last_signal().unwrap_or("a signal")
                )
            } else {
                String::new()
            };
            match recovered {
                Ok(()) => (
                    "rolled-back",
                    if interrupted { code } else { Code::RolledBack },
                    format!("{e:#}; rolled back to {back}{held}"),
                ),
                Err(re) => {
                    eprintln!("!!! ROLLBACK FAILED: the environment needs a human now !!!");
                    (
                        "failure",
                        Code::RollbackFailed,
                        format!("{e:#}; and the rollback to {back} failed too: {re:#}"),
                    )
                }
            }
        }
    };
    Ending {
        outcome,
        error: Some(fail(code, msg)),
    }
}
