//! Running the demo's acts: each one its own `cargo xtask` process against
//! the demo's config and state, its exit code a row of the summary; and the
//! swarm session the acts run in.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use super::{Act, ACT_SECS};
use crate::bench::stream::{Stream, Tally};
use crate::cmd::{stream, Command, Effect};
use crate::engine::cluster::{self, Session};
use crate::exec::Actions;

/// One row of the summary.
pub(super) struct Row {
    pub(super) what: String,
    pub(super) expect: i32,
    pub(super) exit: i32,
    pub(super) secs: f64,
    /// Requests sent and failed while the act ran, where it was watched.
    pub(super) requests: Option<(usize, usize)>,
    /// The same by client kind, with the kind of each failure.
    pub(super) clients: Vec<Tally>,
}

pub(super) struct Acts {
    pub(super) acts: Vec<Act>,
    /// Each environment's front port, for the watched acts.
    pub(super) ports: Vec<(&'static str, u16)>,
    pub(super) exe: PathBuf,
    pub(super) config: PathBuf,
    pub(super) state: PathBuf,
    pub(super) rows: Vec<Row>,
    pub(super) keep: bool,
    /// Held from the `swarm` action to the `leave` action (or the end).
    pub(super) session: Option<Session>,
    /// What happens to the swarm, for the summary.
    pub(super) swarm: Option<&'static str>,
    /// The plan's own teardown (the `take_down` steps), run by `cleanup`
    /// when a signal stopped the plan before it got there.
    pub(super) teardown: Vec<crate::plan::Step>,
}

impl Acts {
    fn enter(&mut self) -> Result<()> {
        let mut s = Session::enter().context("entering the swarm session")?;
        self.swarm = Some(match (s.created(), self.keep) {
            (true, true) => {
                "initialised by the demo and kept (--keep): \
`docker swarm leave --force` removes it and its stacks"
            }
            (true, false) => {
                "initialised by the demo, left on the way out (the demo stopped early)"
            }
            (false, _) => "active before the demo: left as found",
        });
        if self.keep {
            s.keep_swarm();
        }
        self.session = Some(s);
        Ok(())
    }

    fn leave(&mut self) -> Result<()> {
        let s = self
            .session
            .take()
            .context("the demo holds no swarm session")?;
        if s.created() {
            s.end()?;
            self.swarm = Some("initialised by the demo, left at the end");
        }
        Ok(())
    }

    /// Runs one act as its own `cargo xtask` process; a wrong exit code is
    /// a row of the summary, not a stop, so every act is shown.
    fn act(&mut self, id: &str) -> Result<()> {
        let a = id
            .parse::<usize>()
            .ok()
            .and_then(|i| self.acts.get(i))
            .with_context(|| format!("demo has no act {id}"))?;
        eprintln!("\n== demo: {} ==", a.what);
        let start = Instant::now();
        let c = Command::new(&self.exe.display().to_string(), Effect::Mutating)
            .arg("--config")
            .arg(self.config.display().to_string())
            .arg("--state-dir")
            .arg(self.state.display().to_string())
            .args(a.args.iter().cloned())
            .timeout(ACT_SECS);
        let port = a
            .watch
            .and_then(|env| self.ports.iter().find(|(e, _)| *e == env))
            .map(|(_, p)| *p);
        let watching = port.map(Stream::start);
        let code = stream(&c, crate::out::json());
        let seen = watching.map(Stream::stop);
        self.rows.push(Row {
            what: a.what.clone(),
            expect: a.expect,
            exit: code?.unwrap_or(-1),
            secs: start.elapsed().as_secs_f64(),
            requests: seen.as_ref().map(|s| (s.sent(), s.failed())),
            clients: seen.map(|s| s.tallies()).unwrap_or_default(),
        });
        Ok(())
    }
}

impl Actions for Acts {
    /// Stopped by a signal, the demo still takes its stacks down (unless
    /// `--keep`); the swarm session then leaves a swarm it created.
    fn cleanup(&mut self) {
        if crate::cmd::interrupts() == 0 {
            return;
        }
        // Twice: a container that an interrupted `up` had asked the daemon
        // for can appear after the first pass took the stack down.
        let teardown = std::mem::take(&mut self.teardown);
        for pass in 0..2 {
            if pass == 1 {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            for s in &teardown {
                let r = match s {
                    crate::plan::Step::Run { command, .. } => {
                        crate::cmd::run(command, false).map(drop)
                    }
                    crate::plan::Step::Action { id, .. } => self.run(id),
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    eprintln!("demo teardown after the signal: {e:#}");
                }
            }
        }
    }

    fn run(&mut self, id: &str) -> Result<()> {
        match id {
            "swarm" => self.enter(),
            "leave" => self.leave(),
            _ => match id.strip_prefix("volumes ") {
                Some(stack) => {
                    let gone = cluster::remove_volumes(stack)?;
                    eprintln!("removed volumes: {}", gone.join(" "));
                    Ok(())
                }
                None => self.act(id),
            },
        }
    }
}
