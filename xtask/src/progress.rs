//! Progress of long work on stderr, never on stdout (so `--format json`
//! stays one document):
//! - on a terminal, an indicatif spinner with the phase and its elapsed time;
//! - in CI (`CI` or `GITHUB_ACTIONS` set, no terminal), the log-folding
//!   markers `::group::`/`::endgroup::` around the phase's own output;
//! - everywhere, one line per finished phase with its duration.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One phase of a task, shown while it runs.
pub struct Phase {
    what: String,
    started: Instant,
    spinner: Option<indicatif::ProgressBar>,
    grouped: bool,
}

fn in_ci() -> bool {
    crate::ci::detected()
}

impl Phase {
    pub fn start(what: impl Into<String>) -> Phase {
        let what = crate::cmd::redact::redact(&what.into());
        let tty = std::io::stderr().is_terminal();
        let spinner = tty.then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            s.set_message(what.clone());
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
        let grouped = !tty && in_ci();
        if grouped {
            eprintln!("::group::{what}");
        } else if !tty {
            // A plain log says what started, so a hang shows where it is.
            eprintln!("{what}");
        }
        Phase {
            what,
            started: Instant::now(),
            spinner,
            grouped,
        }
    }

    /// Ends the phase: one line with its duration and how it ended.
    pub fn finish(self, ok: bool) {
        if let Some(s) = &self.spinner {
            s.finish_and_clear();
        }
        if self.grouped {
            eprintln!("::endgroup::");
        }
        eprintln!(
            "{} {} ({:.1}s)",
            if ok { "done:" } else { "failed:" },
            self.what,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Polls `ok` every 200 ms until it holds, or fails after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, ok: impl Fn() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            eprintln!("{what} is up after {:.1}s", start.elapsed().as_secs_f64());
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("{what} did not come up within {}s", timeout.as_secs())
}
