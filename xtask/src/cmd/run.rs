//! Running a [`Command`]: its own process group, its time limit, the
//! task's signals, and one line that explains a failure.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::redact::redact;
use super::{check_interrupt, since_now, Command};

/// How long a process group gets between TERM and KILL.
const GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(10);

/// The process-group leaders running now, for the signal thread.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

pub(super) fn children() -> std::sync::MutexGuard<'static, Vec<u32>> {
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
    launch(c, c.expression().stdout_capture().stderr_capture())
}

/// Starts the expression of `c`, unless a signal already arrived.
fn launch(c: &Command, e: duct::Expression) -> Result<Running> {
    let since = since_now();
    check_interrupt(since)?;
    let handle = e
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

    /// Has it ended?
    pub fn finished(&self) -> bool {
        matches!(self.handle.try_wait(), Ok(Some(_)))
    }

    /// Ends a command meant to run until told (a tunnel): TERM to its
    /// group, then KILL after a grace period.
    pub fn stop(self) {
        self.kill_group();
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
        eprint!("{}", redact(&format!("{}{}", out.stdout, out.stderr)));
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

/// [`run`] with the command's stdout written to `path` instead of kept in
/// memory (a large export, read back a block at a time).
pub fn run_to_file(c: &Command, path: &std::path::Path, verbose: bool) -> Result<()> {
    if verbose {
        eprintln!("$ {} > {}", c.display(), path.display());
    }
    let e = c.expression().stdout_path(path).stderr_capture();
    launch(c, e)?.wait(verbose).map(drop)
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
    let mut e = c.expression();
    if stdout_to_stderr {
        e = e.stdout_to_stderr();
    }
    Ok(launch(c, e)?.wait_output()?.code)
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
/// else the last non-empty line; the run's secrets redacted.
pub fn explain(stderr: &str) -> String {
    redact(&error_line(stderr))
}

fn error_line(stderr: &str) -> String {
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

/// Runs `cmds` side by side and hands each line they print (stdout and
/// stderr together) to `line`, with the index of the command that printed
/// it, as it comes: `docker logs` of several containers, or `-f`.
///
/// `bounded`: each command keeps its time limit. Unbounded (a follow),
/// they run until they end by themselves or a signal arrives. Either way
/// a signal (or an expired limit) kills every command's process group
/// (TERM, then KILL) and waits for them before this returns, so nothing
/// is left behind. A command that exits non-zero fails the whole, after
/// the others ended. `line` returns `false` when no more lines are wanted
/// (the reader closed its end of our stdout): the streams are stopped the
/// same way and the call returns `Ok`.
pub fn lines(
    cmds: &[Command],
    bounded: bool,
    mut line: impl FnMut(usize, &str) -> bool,
) -> Result<()> {
    use std::io::BufRead as _;
    // Signals are ours here: they stop the streams, which are then reaped.
    let _guard = super::Guard::new();
    let since = since_now();
    check_interrupt(since)?;
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let mut started = Vec::new();
    let mut readers = Vec::new();
    let now = Instant::now();
    for (i, c) in cmds.iter().enumerate() {
        let reader = match c
            .expression()
            .stdin_null()
            .stderr_to_stdout()
            .unchecked()
            .reader()
        {
            Ok(r) => r,
            Err(e) => {
                kill_groups(&started);
                return Err(e).with_context(|| format!("starting `{}`", c.display()));
            }
        };
        let pids = reader.pids();
        children().extend(&pids);
        started.push(pids);
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(&reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let l = String::from_utf8_lossy(&buf);
                        let l = l.strip_suffix('\n').unwrap_or(&l);
                        if tx.send((i, l.to_string())).is_err() {
                            break;
                        }
                    }
                }
            }
            drop(r);
            let code = reader.try_wait().ok().flatten().map(|o| o.status.code());
            (reader.pids(), code)
        }));
    }
    drop(tx);
    let limit = cmds.iter().map(Command::limit).max().unwrap_or_default();
    let mut enough = false;
    let stopped = loop {
        match rx.recv_timeout(POLL * 5) {
            Ok((i, l)) if line(i, &l) => continue,
            Ok(_) => {
                enough = true;
                break None;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Err(e) = check_interrupt(since) {
            break Some(e);
        }
        if bounded && now.elapsed() >= limit {
            break Some(anyhow::anyhow!(
                "the log commands did not finish within their limit of {}s; their process groups were killed",
                limit.as_secs()
            ));
        }
    };
    let stopped_early = stopped.is_some() || enough;
    if stopped_early {
        kill_groups(&started);
    }
    let mut failed = None;
    for (c, r) in cmds.iter().zip(readers) {
        let (pids, code) = r.join().unwrap_or_default();
        children().retain(|p| !pids.contains(p));
        match code {
            _ if stopped_early => {}
            Some(Some(0)) => {}
            other => {
                let status = match other {
                    Some(Some(n)) => n.to_string(),
                    _ => "a signal".into(),
                };
                failed.get_or_insert(format!("`{}` exited with {status}", c.display()));
            }
        }
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    match failed {
        Some(f) => bail!("{f}"),
        None => Ok(()),
    }
}

/// TERM to each group, KILL after the grace period to what is left.
fn kill_groups(groups: &[Vec<u32>]) {
    let signal = |sig| {
        for pid in groups.iter().flatten() {
            // SAFETY: kill(2) of a process group we created (its own group).
            unsafe { libc::kill(-(*pid as i32), sig) };
        }
    };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + GRACE;
    // SAFETY: kill(2) with signal 0 only asks whether the group exists.
    let alive = || {
        groups
            .iter()
            .flatten()
            .any(|p| unsafe { libc::kill(-(*p as i32), 0) } == 0)
    };
    while alive() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    signal(libc::SIGKILL);
}

/// A child kept running for as long as we hold it (a lock held on another
/// host): its stdin is a pipe we keep open, so it sees end-of-file when we
/// let go or die, and its whole process group is killed if it does not end
/// by itself within a grace period after that.
pub struct Held {
    running: Option<Running>,
    stdin: Option<std::io::PipeWriter>,
}

impl Held {
    /// Lets go: closes its stdin, waits (bounded) for it to end, then kills
    /// its process group.
    pub fn release(mut self) {
        self.end();
    }

    /// Has it ended on its own (the link dropped, the far side died)?
    pub fn finished(&self) -> bool {
        self.running.as_ref().is_none_or(Running::finished)
    }

    fn end(&mut self) {
        drop(self.stdin.take());
        if let Some(r) = self.running.take() {
            let deadline = Instant::now() + GRACE;
            while !r.finished() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            r.stop();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.end();
    }
}

/// Starts `c` with its stdin a pipe we hold, and waits, within the
/// command's limit, for the first line it prints. Returns the child (still
/// running, unless it ended just after) with that line, or, when it ended
/// without printing one, how it ended (`Err` of the inner result).
#[allow(clippy::type_complexity)]
pub fn hold(c: &Command) -> Result<std::result::Result<(Held, String), Output>> {
    use std::io::BufRead as _;
    let (in_r, in_w) = std::io::pipe().context("creating a pipe")?;
    let (out_r, out_w) = std::io::pipe().context("creating a pipe")?;
    let e = c
        .expression()
        .stdin_file(in_r)
        .stdout_file(out_w)
        .stderr_capture();
    let running = launch(c, e)?;
    // The line is read on a thread, so the wait stays bounded whatever the
    // child does with its stdout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out_r).read_line(&mut line);
        let _ = tx.send(line);
    });
    let limit = c.limit();
    loop {
        // After it ended, a line it printed may still be on its way.
        let wait = if running.finished() {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        };
        match rx.recv_timeout(wait) {
            Ok(line) if !line.trim().is_empty() => {
                let held = Held {
                    running: Some(running),
                    stdin: Some(in_w),
                };
                return Ok(Ok((held, line.trim_end().to_string())));
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                drop(in_w);
                return Ok(Err(running.wait_output()?));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !wait.is_zero() => {
                drop(in_w);
                return Ok(Err(running.wait_output()?));
            }
            Err(_) => {}
        }
        if let Err(e) = check_interrupt(running.since) {
            running.kill_group();
            return Err(e.context(format!("stopped `{}`", c.display())));
        }
        if running.started.elapsed() >= limit {
            running.kill_group();
            bail!(
                "`{}` printed nothing within its limit of {}s; its process group was killed",
                c.display(),
                limit.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}
