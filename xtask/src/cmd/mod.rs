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
use std::time::Duration;

use serde::Serialize;

/// The limit of a command that names none: generous, but finite.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);

pub mod redact;
pub mod remote;
mod run;
mod signal;

pub use run::{
    explain, hold, lines, output, probe, run, run_to_file, spawn_detached, start, stream, Held,
    Output, Running,
};
pub use signal::{
    check_interrupt, install_signal_handlers, interrupts, last_signal, signal_exit_code, since_now,
    Guard, Interrupted, Shield, Since,
};

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

impl Serialize for Secretable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
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
    /// Files the command reads that the tool renders (a compose override):
    /// written, owner-only, just before it starts, so a plan that never
    /// runs (a dry run) writes nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Rendered>,
}

/// A file a command reads, rendered by the tool: its path and contents.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub path: PathBuf,
    pub contents: String,
}

impl Rendered {
    /// Writes it, mode 0600 whatever the umask, through a temporary file
    /// and a rename: a command started beside another that writes the same
    /// file never reads half of it.
    fn write(&self) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let tmp = self.path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(self.contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Command {
    /// A docker command runs against the environment's engine
    /// ([`remote::set_target`]), named in its env so the plan shows it.
    pub fn new(program: &str, effect: Effect) -> Self {
        let env = remote::docker_env_for(program)
            .map(|(name, value)| EnvVar {
                name: name.into(),
                value: Secretable::Plain(value),
            })
            .into_iter()
            .collect();
        Command {
            program: program.into(),
            args: Vec::new(),
            env,
            cwd: None,
            effect,
            timeout_secs: None,
            files: Vec::new(),
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
    /// A variable whose value never appears in dry-run output or logs:
    /// shown as `***`, and registered so that [`redact::redact`] takes it
    /// out of whatever else quotes it.
    pub fn secret_env(self, name: &str, value: impl Into<String>) -> Self {
        self.env_value(name, Secretable::Secret(value.into()))
    }

    /// A variable that is secret or not as `value` says.
    pub fn env_value(mut self, name: &str, value: Secretable) -> Self {
        if let Secretable::Secret(v) = &value {
            redact::register(v);
        }
        self.env.push(EnvVar {
            name: name.into(),
            value,
        });
        self
    }
    /// A file the command reads, written just before it starts.
    pub fn file(mut self, path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        self.files.push(Rendered {
            path: path.into(),
            contents: contents.into(),
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
        if !self.files.is_empty() {
            let files = self.files.clone();
            e = e.before_spawn(move |_| files.iter().try_for_each(Rendered::write));
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

/// An error and its sources on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

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
        // SIGKILL is delivered when the loaded machine next schedules the
        // grandchild, so it is given a bounded moment to die.
        let running = || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            stat.is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        };
        let killed = Instant::now();
        while running() && killed.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !running(),
            "the grandchild {} outlived the kill",
            pid.trim()
        );
    }

    #[test]
    fn a_held_child_runs_until_let_go_and_one_that_ends_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done");
        let c = Command::new("sh", Effect::ReadOnly)
            .args([
                "-c",
                &format!("echo ready; cat >/dev/null; touch {}", done.display()),
            ])
            .timeout(10);
        let (held, line) = hold(&c).unwrap().ok().expect("it printed a line");
        assert_eq!(line, "ready");
        assert!(!held.finished(), "it ended before its stdin closed");
        assert!(!done.exists());
        held.release();
        assert!(done.exists(), "released before it saw end-of-file");
        let c = Command::new("sh", Effect::ReadOnly)
            .args(["-c", "echo nope >&2; exit 3"])
            .timeout(10);
        let o = hold(&c).unwrap().err().expect("it printed no line");
        assert_eq!(o.code, Some(3));
        assert!(o.stderr.contains("nope"), "{}", o.stderr);
    }

    #[test]
    fn probe_reads_stdout_and_says_no_on_failure() {
        assert_eq!(probe("echo", &["a", "b c"], None).as_deref(), Some("a b c"));
        assert_eq!(probe("false", &[], None), None);
        assert_eq!(probe("no-such-program-xtask", &[], None), None);
    }
}
