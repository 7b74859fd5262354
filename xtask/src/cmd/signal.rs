//! Interruption: SIGTERM, SIGINT and SIGHUP become counted events that the
//! running work checks, so a mutating task stops, recovers and records
//! instead of dying mid-step.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use anyhow::{Context, Result};

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// How many parts of the task asked to handle signals themselves.
static GUARDS: AtomicUsize = AtomicUsize::new(0);

/// Installs the SIGTERM/SIGINT/SIGHUP listener (the binary does, once).
/// Outside a [`Guard`] a signal ends the process at once with 128+signal,
/// as if no handler were installed; inside one it is counted, every running
/// command's process group is killed, and the guard's owner decides.
pub fn install_signal_handlers() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                LAST_SIGNAL.store(sig, Ordering::SeqCst);
                INTERRUPTS.fetch_add(1, Ordering::SeqCst);
                if GUARDS.load(Ordering::SeqCst) == 0 {
                    // No task is handling it: end as the signal would, but
                    // take our children's process groups with us (they are
                    // not in the terminal's group, so nothing else would).
                    for pid in super::run::children().iter() {
                        // SAFETY: kill(2) of a process group we created.
                        unsafe { libc::kill(-(*pid as i32), libc::SIGTERM) };
                    }
                    std::process::exit(128 + sig);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// While alive, signals do not end the process: [`interrupted`] reports them.
pub struct Guard(());

impl Guard {
    pub fn new() -> Guard {
        GUARDS.fetch_add(1, Ordering::SeqCst);
        Guard(())
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        GUARDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Signals below this count do not stop new work (see [`Shield`]).
static FLOOR: AtomicUsize = AtomicUsize::new(0);

/// How many signals have arrived so far.
pub fn interrupts() -> usize {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// While a plan's steps run, the count they measure from (see [`Since`]);
/// `usize::MAX` when unset.
static BASE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The count new work measures interruptions from: now (or, while a plan's
/// steps run, the count when they began), or the floor a [`Shield`] set,
/// whichever is higher. Work started at this count stops when another
/// signal arrives.
pub fn since_now() -> usize {
    measured_from(
        BASE.load(Ordering::SeqCst),
        interrupts(),
        FLOOR.load(Ordering::SeqCst),
    )
}

/// [`since_now`] from its three counts: the steps' base (`usize::MAX`:
/// none), the signals so far, and a [`Shield`]'s floor.
fn measured_from(base: usize, now: usize, floor: usize) -> usize {
    match base {
        usize::MAX => now,
        b => b,
    }
    .max(floor)
}

/// While alive, work measures interruptions from `base` rather than from
/// when it starts: a signal that lands between two commands of one step
/// (after the first ended, before the second began) still stops the
/// second. Without it, such a signal was counted before the next piece of
/// work took its count, and was lost.
pub struct Since {
    prev: usize,
}

impl Since {
    pub fn new(base: usize) -> Since {
        Since {
            prev: BASE.swap(base, Ordering::SeqCst),
        }
    }
}

impl Drop for Since {
    fn drop(&mut self) {
        BASE.store(self.prev, Ordering::SeqCst);
    }
}

/// While alive, the first signal after `base` does not stop work started
/// through this module: a recovery in progress finishes, and only a
/// second signal cuts it short.
pub struct Shield {
    prev: usize,
}

impl Shield {
    pub fn absorbing_one(base: usize) -> Shield {
        Shield {
            prev: FLOOR.swap(base + 1, Ordering::SeqCst),
        }
    }
}

impl Drop for Shield {
    fn drop(&mut self) {
        FLOOR.store(self.prev, Ordering::SeqCst);
    }
}

/// The name of the last signal received (`SIGTERM`), if any.
pub fn last_signal() -> Option<&'static str> {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        1 => Some("SIGHUP"),
        2 => Some("SIGINT"),
        15 => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}

/// The exit code for the last signal: 128 + its number, as shells report it.
pub fn signal_exit_code() -> Option<i32> {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(128 + s),
    }
}

/// The error of work cut short by a signal.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: &'static str,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", self.signal)
    }
}

impl std::error::Error for Interrupted {}

/// `Err` when a signal arrived after `since` (a value of [`interrupts`]).
pub fn check_interrupt(since: usize) -> Result<()> {
    if interrupts() > since {
        return Err(Interrupted {
            signal: last_signal().unwrap_or("a signal"),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::measured_from;

    #[test]
    fn work_inside_the_steps_sees_a_signal_that_came_before_it_started() {
        // Outside a plan's steps, new work measures from now.
        assert_eq!(measured_from(usize::MAX, 1, 0), 1);
        // Inside, from the steps' start: a signal already counted (1 > 0)
        // still stops the next command or gate.
        assert_eq!(measured_from(0, 1, 0), 0);
        // A recovery's shield absorbs the first signal, not a second.
        assert_eq!(measured_from(0, 1, 1), 1);
        assert_eq!(measured_from(0, 2, 1), 1);
    }
}
