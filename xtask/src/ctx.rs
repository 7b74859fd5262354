//! The one context every task gets: the global flags, the config on demand,
//! preflight, and the finish of a plan (render it, or apply it and report).

use std::path::PathBuf;

use anyhow::Result;

use crate::audit;
use crate::cmd::remote;
use crate::config::Config;
use crate::engine::ComposeCli;
use crate::exec::{self, Actions};
use crate::exit::Refusal;
use crate::flags::{Format, Global};
use crate::plan::Plan;
use crate::preflight::{self, Tool};
use crate::repo::workspace_root;

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
        let log = audit::Log::new(&dir, env, sink.as_deref());
        log.refuse_loose()?;
        if let Some((at, host_dir)) = e.host_state(env)? {
            // The chain lives on the environment's host; this process
            // reads it from there once (and again under the lock).
            remote::keep_state_on_host(&dir, at, host_dir, log.sink.clone());
            if !remote::host_state(&dir).is_some_and(|h| h.synced) {
                log.sync_host(false)?;
            }
        }
        Ok(log)
    }

    /// Points every engine command of this process at `env`'s engine
    /// (its `host` or `context`), shown as a fact of `plan`. Called before
    /// preflight, so preflight asks that engine.
    pub fn locate(&self, cfg: &Config, env: &str, plan: &mut Plan) -> Result<()> {
        let at = cfg.env(env)?.location()?;
        plan.fact("engine", at.to_string(), "config host/context");
        remote::set_target(at);
        Ok(())
    }

    /// After preflight: refuses (exit 5, both modes) an inherited
    /// `DOCKER_HOST`/`DOCKER_CONTEXT` that names another engine than `env`
    /// declares, and opens the SSH tunnel to a remote host (exit 2 when it
    /// cannot be reached). Nothing is touched before either.
    pub fn reach(&self, env: &str) -> Result<()> {
        let var = |n: &str| std::env::var(n).ok();
        let at = remote::target();
        if let Some(why) = remote::inherited_conflict(
            env,
            &at,
            var("DOCKER_HOST").as_deref(),
            var("DOCKER_CONTEXT").as_deref(),
        ) {
            return Err(crate::exit::refuse(Refusal::ForeignEngine, why));
        }
        remote::open()
            .map_err(|e| crate::exit::fail(crate::exit::Code::Preflight, format!("{e:#}")))
    }

    /// Preflight for `tools`: a real run fails with exit 2; a dry run warns.
    pub fn preflight(&self, plan: &mut Plan, tools: &[Tool], daemon: bool) -> Result<ComposeCli> {
        self.enforce(plan, preflight::check(tools, daemon))
    }

    /// A preflight report, as the mode wants it: the real run refuses
    /// (exit 2) on anything missing; a dry run shows it as warnings.
    pub fn enforce(&self, plan: &mut Plan, report: preflight::Report) -> Result<ComposeCli> {
        let (cli, warnings) = report.enforce(self.global.dry_run)?;
        plan.warnings
            .extend(warnings.into_iter().map(|w| format!("preflight: {w}")));
        Ok(cli)
    }

    /// [`Ctx::finish`] for a task that applies its plan its own way (its
    /// report is the whole output): a dry run renders and checks the plan
    /// as `finish` does; the real run calls `apply`. The mode is still
    /// decided here, not in the task.
    pub fn finish_with(
        &self,
        plan: &Plan,
        actions: &mut dyn Actions,
        apply: impl FnOnce(&Plan, &mut dyn Actions) -> Result<()>,
    ) -> Result<()> {
        match self.global.dry_run {
            true => self.finish(plan, actions),
            false => apply(plan, actions),
        }
    }

    /// Dry run: print the plan and stop. Otherwise apply it and print the
    /// outcome, with the new audit head as the last line.
    ///
    /// This and the executor are the only places that know the mode: a dry
    /// run evaluates the real run's checks read-only ([`exec::preview`]) and
    /// refuses as the real run would, with the same code and first error
    /// line, after printing the plan; an applied plan ends with the task's
    /// own report ([`Actions::report`]).
    pub fn finish(&self, plan: &Plan, actions: &mut dyn Actions) -> Result<()> {
        let mut plan = std::borrow::Cow::Borrowed(plan);
        let created = plan
            .record
            .as_ref()
            .map(created_by_record)
            .unwrap_or_default();
        if !created.is_empty() {
            plan.to_mut().warnings.extend(created);
        }
        let plan = plan.as_ref();
        if !self.global.dry_run {
            // The dry run shows them with the plan.
            for w in &plan.warnings {
                eprintln!("warning: {w}");
            }
        }
        if let Some(env) = &plan.env {
            crate::out::set("env", env.as_str());
        }
        if let Some(r) = &plan.record {
            crate::out::set("from", r.from.clone());
            crate::out::set("to", r.to.clone());
        }
        if self.global.dry_run {
            match self.global.format {
                Format::Text => print!("{}", plan.render()),
                Format::Json => {
                    crate::out::set("outcome", "planned");
                    crate::out::merge(serde_json::json!({ "plan": plan }));
                }
            }
            return exec::preview(plan);
        }
        let started = std::time::Instant::now();
        let result = exec::apply(plan, self.global.verbose, actions);
        actions.report(result.as_ref());
        let applied = result?;
        match self.global.format {
            Format::Text => {
                println!(
                    "{}: {}",
                    plan.task,
                    change(plan, applied.outcome, started.elapsed())
                );
                if let Some(h) = &applied.head {
                    println!("audit head: {h}");
                }
            }
            // The executor set the outcome and the head; main prints the document.
            Format::Json => {}
        }
        Ok(())
    }
}

/// The directories the record's first append creates: not a refusal (the
/// real run creates them), but worth a look when a sink should be a
/// mount of its own. Said the same way by both modes.
fn created_by_record(r: &crate::plan::RecordSpec) -> Vec<String> {
    let dirs = [
        ("state directory", Some(&r.log)),
        ("audit sink", r.sink.as_ref()),
    ];
    dirs.into_iter()
        .filter_map(|(what, p)| {
            let dir = p?.parent()?;
            (!dir.exists()).then(|| {
                format!(
                    "the {what} {} does not exist: the first record creates it (mount it first if it should be a disk of its own)",
                    dir.display()
                )
            })
        })
        .collect()
}

/// The success line's words: what changed for a deploy, promote or
/// rollback (`staging sha-a -> sha-b (1.2 s)`), else the outcome.
fn change(plan: &Plan, outcome: &str, took: std::time::Duration) -> String {
    match &plan.record {
        Some(r) if outcome == "success" && audit::RUN_CHANGING.contains(&r.action.as_str()) => {
            format!(
                "{} {} \u{2192} {} ({:.1} s)",
                r.env,
                r.from.as_deref().unwrap_or("nothing"),
                r.to.as_deref().unwrap_or("-"),
                took.as_secs_f64()
            )
        }
        _ => outcome.to_string(),
    }
}
