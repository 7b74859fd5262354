//! The one executor: applies a [`Plan`] step by step.
//!
//! Outcomes and exit codes are decided here, once, for every task:
//! - every step passes: `success`, exit 0;
//! - a lock or gate refuses before anything was touched: `refused`, exit 5;
//! - a step fails before the stack was touched: `failure`, the step's code;
//! - a step fails after a [`Step::Recreate`] began: the plan's
//!   [`OnFailure`] runs; recovered is `rolled-back`, exit 3; a failed recovery
//!   is `failure`, exit 4; advice only is `failure`, exit 3.
//!
//! The plan's audit record is appended on every one of those paths, and the
//! new chain head is the last line printed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::audit::{Entry, ImageRef, Log};
use crate::exit::{code_of, fail, Code};
use crate::lock::LockGuard;
use crate::plan::{Command, OnFailure, Plan, Step};

/// The head appended by a plan that then failed, for `main` to print after the error.
pub static LAST_HEAD: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Task-specific steps ([`Step::Action`]) are run by the task.
pub trait Actions {
    fn run(&mut self, id: &str) -> Result<()>;
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

/// Runs one command; a failure is one line naming the command, its exit
/// status and the last line it printed on stderr.
pub fn run_command(c: &Command, verbose: bool) -> Result<String> {
    let mut e = duct::cmd(&c.program, &c.args)
        .stderr_capture()
        .stdout_capture()
        .unchecked();
    for v in &c.env {
        e = e.env(&v.name, v.value.expose());
    }
    if let Some(dir) = &c.cwd {
        e = e.dir(dir);
    }
    if verbose {
        eprintln!("$ {}", c.display());
    }
    let out = e
        .run()
        .with_context(|| format!("starting `{}`", c.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if verbose {
        eprint!("{stdout}{stderr}");
    }
    if !out.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no error output)")
            .trim();
        let status = out
            .status
            .code()
            .map_or("a signal".to_string(), |c| c.to_string());
        anyhow::bail!("`{}` exited with {status}: {last}", c.display());
    }
    Ok(stdout)
}

/// Is `image` (repo:tag) in the local image store?
pub fn image_present(image: &str) -> bool {
    duct::cmd!("docker", "image", "inspect", "--format", "{{.Id}}", image)
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success())
}

/// The registry digest of a local image (`repo@sha256:...`), where it has one.
pub fn image_digest(image: &str) -> Option<String> {
    let out = duct::cmd!(
        "docker",
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        image
    )
    .stdout_capture()
    .stderr_null()
    .unchecked()
    .run()
    .ok()?;
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(repo))
        .and_then(|l| l.split_once('@'))
        .map(|(_, d)| d.to_string())
}

struct Run<'a> {
    verbose: bool,
    actions: &'a mut dyn Actions,
    lock: Option<LockGuard>,
}

impl Run<'_> {
    fn step(&mut self, s: &Step) -> Result<()> {
        match s {
            Step::Run { why, command } => {
                eprintln!("{why}");
                run_command(command, self.verbose).map(drop)
            }
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
                        return Err(fail(
                            Code::Refused,
                            format!("the audit log of `{env}` changed while this task waited for the lock (head {now}); re-run to plan from the new state"),
                        ));
                    }
                }
                Ok(())
            }
            Step::Require { what, missing } => {
                if missing.is_empty() {
                    return Ok(());
                }
                Err(fail(
                    Code::Refused,
                    format!("refused: {what} not met: missing {}", missing.join("; ")),
                ))
            }
            Step::EnsureImages { target } => {
                for r in target.image_refs() {
                    if image_present(&r) {
                        continue;
                    }
                    eprintln!("pulling {r} (not present locally)");
                    let pull = Command::new("docker", crate::plan::Effect::Mutating).args([
                        "pull",
                        "--quiet",
                        r.as_str(),
                    ]);
                    run_command(&pull, self.verbose)
                        .with_context(|| format!("image {r} is neither present nor pullable"))?;
                }
                Ok(())
            }
            Step::CopyFile { from, to } => {
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
                std::fs::copy(from, to)
                    .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
                Ok(())
            }
            Step::Pull { target }
            | Step::Recreate { target }
            | Step::Stop { target }
            | Step::StartStateful { target } => {
                match s {
                    Step::Pull { .. } => {
                        eprintln!("pulling {} on {}", target.services.join(", "), target.tag)
                    }
                    Step::Recreate { .. } => eprintln!(
                        "recreating {} on {}",
                        target.services.join(", "),
                        target.tag
                    ),
                    Step::Stop { .. } => eprintln!("stopping {}", target.services.join(", ")),
                    _ => eprintln!("starting {} where not running", target.stateful.join(", ")),
                }
                for c in s.commands() {
                    run_command(&c, self.verbose)?;
                }
                Ok(())
            }
            Step::Converge {
                target,
                timeout_secs,
            } => {
                eprintln!(
                    "waiting for swarm to run {} on {}",
                    target.services.join(", "),
                    target.tag
                );
                crate::engine::swarm::wait(target, *timeout_secs, self.verbose)
            }
            Step::HealthGate(g) => crate::health::wait(g).map(drop),
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
            Step::Action { id, what, .. } => {
                eprintln!("{what}");
                self.actions.run(id)
            }
        }
    }
}

/// Applies `plan`. Returns the outcome on success; on failure, an error whose
/// exit code follows the table above, after the audit record was appended.
pub fn apply(plan: &Plan, verbose: bool, actions: &mut dyn Actions) -> Result<Applied> {
    let started = Instant::now();
    let mut run = Run {
        verbose,
        actions,
        lock: None,
    };
    let mut touched = false;
    let mut failure: Option<(anyhow::Error, &'static str, Code)> = None;

    for s in &plan.steps {
        if matches!(s, Step::Recreate { .. }) {
            touched = true;
        }
        if let Err(e) = run.step(s) {
            let code = code_of(&e);
            if !touched {
                let outcome = if code == Code::Refused {
                    "refused"
                } else {
                    "failure"
                };
                failure = Some((e, outcome, code));
                break;
            }
            eprintln!("error: {e:#}");
            failure = Some(match &plan.on_failure {
                OnFailure::Nothing => (e, "failure", code),
                OnFailure::Advise { message } => {
                    eprintln!("{message}");
                    (
                        fail(
                            Code::RolledBack,
                            format!("{e:#}; left as is (no automatic rollback)"),
                        ),
                        "failure",
                        Code::RolledBack,
                    )
                }
                OnFailure::Recover { steps, to } => {
                    let back = to.as_deref().unwrap_or("nothing running");
                    eprintln!(
                        "putting {} back on {back}",
                        plan.env.as_deref().unwrap_or("the environment")
                    );
                    match steps.iter().try_for_each(|r| run.step(r)) {
                        Ok(()) => (
                            fail(Code::RolledBack, format!("{e:#}; rolled back to {back}")),
                            "rolled-back",
                            Code::RolledBack,
                        ),
                        Err(re) => {
                            eprintln!("!!! ROLLBACK FAILED: the environment needs a human now !!!");
                            (
                                fail(
                                    Code::RollbackFailed,
                                    format!("{e:#}; and the rollback to {back} failed too: {re:#}"),
                                ),
                                "failure",
                                Code::RollbackFailed,
                            )
                        }
                    }
                }
            });
            break;
        }
    }

    let (outcome, err) = match failure {
        None => ("success", None),
        Some((e, outcome, _)) => (outcome, Some(e)),
    };
    let head = match &plan.record {
        None => None,
        Some(r) => {
            let reason = match &err {
                Some(e) if r.reason == "manual" || r.reason.is_empty() => format!("{e:#}"),
                Some(e) => format!("{}; {e:#}", r.reason),
                None => r.reason.clone(),
            };
            let entry = Entry {
                action: r.action.clone(),
                outcome: outcome.into(),
                from: r
                    .from
                    .clone()
                    .map(|tag| image_ref(r.repository.as_deref(), tag)),
                to: r
                    .to
                    .clone()
                    .map(|tag| image_ref(r.repository.as_deref(), tag)),
                git_sha: crate::git_sha(),
                reason: one_line(&reason),
                duration_ms: started.elapsed().as_millis() as u64,
            };
            let log = Log {
                env: r.env.clone(),
                path: r.log.clone(),
                sink: r.sink.clone(),
            };
            match log.append(entry, r.force) {
                Ok(head) => Some(head),
                Err(ae) => {
                    let msg = match err {
                        Some(e) => {
                            format!("{e:#}; and the audit record could not be appended: {ae:#}")
                        }
                        None => format!(
                            "the task succeeded but its audit record could not be appended: {ae:#}"
                        ),
                    };
                    return Err(fail(code_of(&ae), msg));
                }
            }
        }
    };
    drop(run.lock.take());
    if let (Some(h), Some(_)) = (&head, &err) {
        *LAST_HEAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(h.clone());
    }
    match err {
        Some(e) => Err(e),
        None => Ok(Applied { outcome, head }),
    }
}

fn image_ref(repository: Option<&str>, tag: String) -> ImageRef {
    let digest = repository.and_then(|r| image_digest(&format!("{r}:{tag}")));
    ImageRef { tag, digest }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
