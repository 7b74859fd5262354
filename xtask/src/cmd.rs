//! The one door to the outside world: every process the xtask starts goes
//! through this module, so redaction, time limits, process-group kills and
//! interruption have one home (a tidy test keeps it that way).
//!
//! - [`Command`] is data: a program and its arguments, each one argument
//!   (never a shell string), env vars (secret ones redacted when shown), a
//!   working directory and a time limit. Plans hold commands; dry-run renders
//!   them.
//! - Long-running and engine commands run through duct ([`run`], [`start`],
//!   [`output`], [`stream`]): the child gets its own process group, and when
//!   its limit passes or the task is interrupted the whole group is killed
//!   (TERM, then KILL), so nothing it started is left behind.
//! - Quick local look-ups that cannot hang on a daemon or the network (git,
//!   tool versions) run through xshell ([`probe`]).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// The limit of a command that names none: generous, but finite.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// How long a process group gets between TERM and KILL.
const GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(10);

/// An environment variable handed to a command; secret values are redacted when rendered.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(serialize_with = "redacted_value")]
    pub value: Secretable,
}

/// A value that may be secret.
#[derive(Debug, Clone)]
pub enum Secretable {
    Plain(String),
    Secret(String),
}

impl Secretable {
    pub fn expose(&self) -> &str {
        match self {
            Secretable::Plain(v) | Secretable::Secret(v) => v,
        }
    }
    pub fn shown(&self) -> &str {
        match self {
            Secretable::Plain(v) => v,
            Secretable::Secret(_) => "***",
        }
    }
}

fn redacted_value<S: serde::Serializer>(v: &Secretable, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.shown())
}

/// Does running the command change anything?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    ReadOnly,
    Mutating,
}

/// A program with its arguments, each one argument: never a shell string.
#[derive(Debug, Clone, Serialize)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    pub effect: Effect,
    /// The time limit in seconds; unset means [`DEFAULT_LIMIT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl Command {
    pub fn new(program: &str, effect: Effect) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            effect,
            timeout_secs: None,
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: Secretable::Plain(value.into()),
        });
        self
    }
    /// A variable whose value never appears in dry-run output or logs.
    pub fn secret_env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.push(EnvVar {
            name: name.into(),
            value: Secretable::Secret(value.into()),
        });
        self
    }
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
    /// Bound the command: past `secs` its whole process group is killed.
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }
    pub fn limit(&self) -> Duration {
        self.timeout_secs.map_or(DEFAULT_LIMIT, Duration::from_secs)
    }

    /// The command as a reader would type it, with env assignments first and
    /// secrets redacted. Arguments with shell-special characters are quoted
    /// for display only; nothing ever runs through a shell.
    pub fn display(&self) -> String {
        let mut out = String::new();
        for e in &self.env {
            let _ = write!(out, "{}={} ", e.name, quote(e.value.shown()));
        }
        out.push_str(&self.display_bare());
        out
    }

    /// The command without its env assignments.
    pub fn display_bare(&self) -> String {
        let mut out = quote(&self.program);
        for a in &self.args {
            out.push(' ');
            out.push_str(&quote(a));
        }
        out
    }

    fn expression(&self) -> duct::Expression {
        let mut e = duct::cmd(&self.program, &self.args);
        for v in &self.env {
            e = e.env(&v.name, v.value.expose());
        }
        if let Some(dir) = &self.cwd {
            e = e.dir(dir);
        }
        // Its own process group, so a timeout or an interrupt can kill
        // everything it started, and a terminal's Ctrl-C reaches only us:
        // we decide what happens to the child.
        e.before_spawn(|c| {
            use std::os::unix::process::CommandExt as _;
            c.process_group(0);
            Ok(())
        })
    }
}

/// Quote a word for display, as a POSIX shell would need it.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

// ---- interruption -------------------------------------------------------

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
                    for pid in children().iter() {
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

/// The count new work measures interruptions from: now, or the floor a
/// [`Shield`] set, whichever is higher. Work started at this count stops
/// when another signal arrives.
pub fn since_now() -> usize {
    interrupts().max(FLOOR.load(Ordering::SeqCst))
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

// ---- running ------------------------------------------------------------

/// The process-group leaders running now, for the signal thread.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started command.
pub struct Running {
    command: Command,
    handle: duct::Handle,
    started: Instant,
    since: usize,
}

impl Running {
    fn new(command: &Command, handle: duct::Handle, since: usize) -> Running {
        children().extend(handle.pids());
        Running {
            command: command.clone(),
            handle,
            started: Instant::now(),
            since,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pids = self.handle.pids();
        children().retain(|p| !pids.contains(p));
    }
}

/// What a finished command printed, and how it ended.
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Starts `c` with its output captured; [`Running::wait`] bounds it.
pub fn start(c: &Command, verbose: bool) -> Result<Running> {
    if verbose {
        eprintln!("$ {}", c.display());
    }
    let since = since_now();
    check_interrupt(since)?;
    let handle = c
        .expression()
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .start()
        .with_context(|| format!("starting `{}`", c.display()))?;
    Ok(Running::new(c, handle, since))
}

impl Running {
    /// Waits for the command within its limit. On expiry or a signal the
    /// whole process group is killed and the error says which.
    pub fn wait_output(self) -> Result<Output> {
        let limit = self.command.limit();
        loop {
            match self.handle.try_wait() {
                Ok(Some(out)) => {
                    return Ok(Output {
                        success: out.status.success(),
                        code: out.status.code(),
                        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("waiting for `{}`", self.command.display()))
                }
            }
            if let Err(e) = check_interrupt(self.since) {
                self.kill_group();
                return Err(e.context(format!("stopped `{}`", self.command.display())));
            }
            if self.started.elapsed() >= limit {
                self.kill_group();
                bail!(
                    "`{}` did not finish within its limit of {}s; its process group was killed",
                    self.command.display(),
                    limit.as_secs()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Running::wait_output`], failing on a non-zero exit.
    pub fn wait(self, verbose: bool) -> Result<String> {
        let display = self.command.display();
        let out = self.wait_output()?;
        checked(&display, out, verbose)
    }

    /// TERM to the group, then KILL after a grace period; reaps the child.
    fn kill_group(&self) {
        for pid in self.handle.pids() {
            let pg = -(pid as i32);
            // SAFETY: kill(2) with a negative pid signals a process group we
            // created (process_group(0) made the child its leader).
            unsafe { libc::kill(pg, libc::SIGTERM) };
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if matches!(self.handle.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(POLL);
        }
        for pid in self.handle.pids() {
            // SAFETY: as above; KILL for whatever ignored TERM.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let _ = self.handle.kill();
    }
}

fn checked(display: &str, out: Output, verbose: bool) -> Result<String> {
    if verbose {
        eprint!("{}{}", out.stdout, out.stderr);
    }
    if !out.success {
        let status = out.code.map_or("a signal".to_string(), |c| c.to_string());
        bail!("`{display}` exited with {status}: {}", explain(&out.stderr));
    }
    Ok(out.stdout)
}

/// Runs `c` within its limit; a failure is one line naming the command, its
/// exit status and the error line it printed.
pub fn run(c: &Command, verbose: bool) -> Result<String> {
    start(c, verbose)?.wait(verbose)
}

/// Runs `c` within its limit without judging its exit status (a look-up
/// whose "no" is an answer, like `docker image inspect`).
pub fn output(c: &Command) -> Result<Output> {
    start(c, false)?.wait_output()
}

/// Runs `c` with its output going straight to ours (a build, the test
/// suite, a sub-task), within its limit; returns its exit code (`None`
/// when a signal ended it). With `stdout_to_stderr`, its stdout joins our
/// stderr, so ours stays one JSON document.
pub fn stream(c: &Command, stdout_to_stderr: bool) -> Result<Option<i32>> {
    let since = since_now();
    let mut e = c.expression();
    if stdout_to_stderr {
        e = e.stdout_to_stderr();
    }
    let handle = e
        .unchecked()
        .start()
        .with_context(|| format!("starting `{}`", c.display()))?;
    Ok(Running::new(c, handle, since).wait_output()?.code)
}

/// Starts `c` detached in its own process group, so it outlives this
/// process and a Ctrl-C here (a daemon); its output is appended to `log`.
pub fn spawn_detached(c: &Command, log: &std::path::Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    c.expression()
        .stdin_null()
        .stdout_file(out.try_clone()?)
        .stderr_file(out)
        .unchecked()
        .start()
        .with_context(|| format!("starting `{}`", c.display()))?;
    Ok(())
}

/// The stderr line that explains a failure: PostgreSQL's `ERROR:`/`FATAL:`
/// with its `DETAIL:`/`HINT:`, or the first `error` line docker prints,
/// else the last non-empty line.
pub fn explain(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let is_error = |l: &str| {
        let lower = l.to_ascii_lowercase();
        let body = lower
            .strip_prefix("psql:")
            .map(|r| r.split_once(": ").map_or(r, |(_, b)| b))
            .unwrap_or(&lower)
            .trim_start();
        body.starts_with("error")
            || body.starts_with("fatal:")
            || body.starts_with("pg_restore: error")
            || body.starts_with("pg_dump: error")
    };
    if let Some(i) = lines.iter().position(|l| is_error(l)) {
        let mut out = lines[i].to_string();
        for l in &lines[i + 1..] {
            if l.starts_with("DETAIL:") || l.starts_with("HINT:") {
                out.push(' ');
                out.push_str(l);
            } else if !l.starts_with("LINE ") && !l.starts_with('^') && !l.starts_with("CONTEXT:") {
                break;
            }
        }
        return out;
    }
    lines
        .last()
        .map_or("(no error output)".to_string(), |l| l.to_string())
}

/// A quick local look-up (git, a tool's version): its trimmed stdout when it
/// exits 0. Only for programs that answer at once without a daemon or the
/// network; anything that can hang goes through [`output`].
pub fn probe(program: &str, args: &[&str], dir: Option<&std::path::Path>) -> Option<String> {
    let sh = xshell::Shell::new().ok()?;
    if let Some(d) = dir {
        sh.change_dir(d);
    }
    let out = xshell::cmd!(sh, "{program} {args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    Some(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_redacts() {
        let c = Command::new("docker", Effect::Mutating)
            .args(["tag", "sha-1; rm -rf /", "it's"])
            .env("TAG", "v1")
            .secret_env("PGPASSWORD", "hunter2");
        let d = c.display();
        assert_eq!(
            d,
            "TAG=v1 PGPASSWORD='***' docker tag 'sha-1; rm -rf /' 'it'\\''s'"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains("\"***\""), "{json}");
    }

    #[test]
    fn explain_prefers_the_error_line_and_its_detail() {
        let pg = "psql:/tmp/x.sql:3: ERROR:  new row for relation \"audit_events\" violates check constraint \"c\"\nDETAIL:  Failing row contains (1, backup).\nCONTEXT:  SQL statement\n";
        assert_eq!(
            explain(pg),
            "psql:/tmp/x.sql:3: ERROR:  new row for relation \"audit_events\" violates check constraint \"c\" DETAIL:  Failing row contains (1, backup)."
        );
        let col = "ERROR:  column \"seq\" does not exist\nLINE 1: select seq from t\n               ^\nCONTEXT:  PL/pgSQL function f()\n";
        assert_eq!(explain(col), "ERROR:  column \"seq\" does not exist");
        let docker = "Error response from daemon: manifest unknown\nsome trailer\n";
        assert_eq!(
            explain(docker),
            "Error response from daemon: manifest unknown"
        );
        assert_eq!(explain("just this\nand the last\n"), "and the last");
        assert_eq!(explain(""), "(no error output)");
    }

    #[test]
    fn a_hung_command_is_killed_with_its_group_at_its_limit() {
        // sh starts a grandchild (sleep) in the same group; both must go.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let c = Command::new("sh", Effect::ReadOnly)
            .args([
                "-c",
                &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
            ])
            .timeout(1);
        let t = Instant::now();
        let e = run(&c, false).unwrap_err().to_string();
        assert!(e.contains("within its limit of 1s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        // Gone, or a zombie waiting for whoever inherited it to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        let running = stat.is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        });
        assert!(!running, "the grandchild {} outlived the kill", pid.trim());
    }

    #[test]
    fn probe_reads_stdout_and_says_no_on_failure() {
        assert_eq!(probe("echo", &["a", "b c"], None).as_deref(), Some("a b c"));
        assert_eq!(probe("false", &[], None), None);
        assert_eq!(probe("no-such-program-xtask", &[], None), None);
    }
}
