//! Where an environment's engine lives, and the way there.
//!
//! A task names its environment's engine once ([`set_target`]), before it
//! plans; from then on every `docker`/`docker-compose` [`Command`] made in
//! this process carries `DOCKER_HOST=ssh://...` (or `DOCKER_CONTEXT`), so
//! the plan shows it and no engine command can reach another engine. A
//! process runs one task on one environment, so one target per process.
//!
//! For an environment on an SSH host, [`open`] starts one SSH master
//! connection for the operation (ControlMaster on a socket in a private
//! temporary directory). The health gate's URLs and the proxy's admin
//! socket are then reached through forwards that the master adds on demand
//! ([`reach_url`], [`reach_socket`]): `127.0.0.1:9201` in a URL is the
//! host's loopback, never ours. [`close`] ends the master (`ssh -O exit`,
//! then the process group). Every ssh here is a [`Command`] with a time
//! limit; the user's own ssh configuration (keys, known hosts) applies, as
//! it does to docker's own SSH transport.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Command, Effect, Running};

/// Where an environment's engine runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Where {
    /// The machine the tool runs on (the default socket).
    #[default]
    Local,
    /// `host = "ssh://user@host[:port]"`: docker's own SSH transport.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// `context = "NAME"`: a docker context.
    Context(String),
}

impl Where {
    /// Parses `ssh://[user@]host[:port]`; anything else is refused in one line.
    pub fn parse_host(s: &str) -> Result<Where> {
        let rest = s.strip_prefix("ssh://").with_context(|| {
            format!("host `{s}` is not ssh://user@host[:port] (use `context` for other transports)")
        })?;
        let (user, hostport) = match rest.split_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .with_context(|| format!("host `{s}`: the port `{p}` is not a number"))?,
                ),
            ),
            None => (hostport, None),
        };
        let word = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !word(host) || user.as_deref().is_some_and(|u| !word(u)) || rest.contains('/') {
            bail!("host `{s}` is not ssh://user@host[:port]");
        }
        Ok(Where::Ssh {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// What docker is told: `DOCKER_HOST` or `DOCKER_CONTEXT`, or nothing.
    pub fn docker_env(&self) -> Option<(&'static str, String)> {
        match self {
            Where::Local => None,
            Where::Ssh { .. } => Some(("DOCKER_HOST", self.to_string())),
            Where::Context(c) => Some(("DOCKER_CONTEXT", c.clone())),
        }
    }

    /// `user@host` and `-p port`, as ssh takes them.
    fn ssh_args(&self) -> Option<(Vec<String>, String)> {
        let Where::Ssh { user, host, port } = self else {
            return None;
        };
        let dest = match user {
            Some(u) => format!("{u}@{host}"),
            None => host.clone(),
        };
        let opts = port.map_or(Vec::new(), |p| vec!["-p".into(), p.to_string()]);
        Some((opts, dest))
    }
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Local => f.write_str("this machine"),
            Where::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                f.write_str(host)?;
                match port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
            Where::Context(c) => write!(f, "docker context {c}"),
        }
    }
}

/// The default local socket: an inherited `DOCKER_HOST` naming it names
/// this machine's engine.
const LOCAL_SOCKET: &str = "unix:///var/run/docker.sock";

/// Why the inherited `DOCKER_HOST`/`DOCKER_CONTEXT` names another engine
/// than the environment declares, if it does. For a local environment any
/// engine but the local socket is another engine: its gate and proxy are
/// reached on this machine's loopback, so a stack elsewhere would be
/// judged by whatever listens here.
pub fn inherited_conflict(
    env: &str,
    declared: &Where,
    docker_host: Option<&str>,
    docker_context: Option<&str>,
) -> Option<String> {
    let host = docker_host.filter(|h| !h.is_empty());
    let context = docker_context.filter(|c| !c.is_empty());
    let same_host = |h: &str| match declared {
        Where::Local => h == LOCAL_SOCKET || h == "unix:///run/docker.sock",
        Where::Ssh { .. } => Where::parse_host(h).is_ok_and(|w| &w == declared),
        Where::Context(_) => false,
    };
    let same_context = |c: &str| match declared {
        Where::Local => c == "default",
        Where::Context(d) => c == d,
        Where::Ssh { .. } => false,
    };
    let what = if let Some(h) = host.filter(|h| !same_host(h)) {
        format!("DOCKER_HOST={h}")
    } else if let Some(c) = context.filter(|c| !same_context(c)) {
        format!("DOCKER_CONTEXT={c}")
    } else {
        return None;
    };
    Some(format!(
        "the inherited {what} names another engine than environment `{env}` declares ({declared}): unset it (the environment's `host`/`context` in the config says where it lives)"
    ))
}

static TARGET: Mutex<Where> = Mutex::new(Where::Local);

/// Names the engine every docker command of this process runs against.
pub fn set_target(w: Where) {
    *TARGET.lock().unwrap_or_else(|p| p.into_inner()) = w;
}

/// The engine docker commands run against.
pub fn target() -> Where {
    TARGET.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The env var a docker command gets (see [`Command::new`]).
pub(super) fn docker_env_for(program: &str) -> Option<(&'static str, String)> {
    if program != "docker" && program != "docker-compose" {
        return None;
    }
    target().docker_env()
}

/// The operation's SSH master connection and its forwards.
struct Tunnel {
    to: Where,
    dir: PathBuf,
    master: Option<Running>,
    /// `host:port` on the far side -> our local port.
    tcp: BTreeMap<String, u16>,
    /// A socket path on the far side -> our local socket.
    unix: BTreeMap<PathBuf, PathBuf>,
}

static TUNNEL: Mutex<Option<Tunnel>> = Mutex::new(None);

/// How long the master may take to connect.
const CONNECT_SECS: u64 = 20;
/// The master's own limit: one operation, generously.
const OPERATION_SECS: u64 = 3600;

impl Tunnel {
    fn control(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    /// `ssh -S ctl [-p port] [extra] dest`: a command through the master.
    fn ssh(&self, extra: &[&str]) -> Command {
        let (opts, dest) = self.to.ssh_args().expect("a tunnel goes to an ssh host");
        Command::new("ssh", Effect::ReadOnly)
            .args(["-S".to_string(), self.control().display().to_string()])
            .args(opts)
            .args(extra.iter().copied())
            .arg(dest)
            .timeout(15)
    }
}

/// Opens the operation's master connection to the target's SSH host
/// (nothing for a local engine or a docker context). An unreachable host
/// is an error naming it, before anything was touched.
pub fn open() -> Result<()> {
    let to = target();
    let Some((opts, dest)) = to.ssh_args() else {
        return Ok(());
    };
    let mut slot = TUNNEL.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_some() {
        return Ok(());
    }
    let dir = private_dir()?;
    let ctl = dir.join("ctl");
    let master = Command::new("ssh", Effect::ReadOnly)
        .args(["-M", "-N", "-S"])
        .arg(ctl.display().to_string())
        .args([
            "-o",
            "ControlPersist=no",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("ConnectTimeout={CONNECT_SECS}"),
            "-o",
            "ServerAliveInterval=2",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "StreamLocalBindUnlink=yes",
        ])
        .args(opts)
        .arg(dest)
        .timeout(OPERATION_SECS);
    let running = super::start(&master, false)?;
    let t = Tunnel {
        to: to.clone(),
        dir,
        master: Some(running),
        tcp: BTreeMap::new(),
        unix: BTreeMap::new(),
    };
    let started = Instant::now();
    loop {
        if ctl.exists() {
            let check = t.ssh(&["-O", "check"]);
            if super::output(&check).is_ok_and(|o| o.success) {
                break;
            }
        }
        let gone = t.master.as_ref().is_some_and(Running::finished);
        if gone || started.elapsed() > Duration::from_secs(CONNECT_SECS + 5) {
            let why = finish(t);
            bail!("the environment's host {to} cannot be reached over SSH{why}; nothing was changed: check the host, its sshd and your ssh keys");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    *slot = Some(t);
    Ok(())
}

/// Ends the master connection, if one is open; returns the master's last
/// error line (for a failed connect).
fn finish(mut t: Tunnel) -> String {
    let _ = super::output(&t.ssh(&["-O", "exit"]).timeout(5));
    let mut why = String::new();
    if let Some(m) = t.master.take() {
        if m.finished() {
            if let Ok(o) = m.wait_output() {
                let e = super::explain(&o.stderr);
                if e != "(no error output)" {
                    why = format!(" ({e})");
                }
            }
        } else {
            m.stop();
        }
    }
    let _ = std::fs::remove_dir_all(&t.dir);
    why
}

/// Closes the operation's master connection (a no-op without one).
pub fn close() {
    let t = TUNNEL.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = t {
        finish(t);
    }
}

/// Is an SSH master connection open (the environment is on another host)?
pub fn is_open() -> bool {
    TUNNEL.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Short: a unix socket path is limited to 108 bytes.
    let d = std::env::temp_dir().join(format!("xt-ssh-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", d.display()))?;
    Ok(d)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("asking for a free local port")?;
    Ok(l.local_addr()?.port())
}

/// `url` as this process reaches it: unchanged for a local engine; for an
/// SSH host, `http://H:P/...` becomes a local port forwarded to `H:P` as
/// the host sees it (its loopback, its containers' addresses).
pub fn reach_url(url: &str) -> Result<String> {
    let mut slot = TUNNEL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(t) = slot.as_mut() else {
        return Ok(url.to_string());
    };
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are reached through the SSH tunnel, not `{url}`");
    };
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    if let Some(p) = t.tcp.get(&hostport) {
        return Ok(format!("http://127.0.0.1:{p}{path}"));
    }
    let port = free_port()?;
    let spec = format!("127.0.0.1:{port}:{hostport}");
    let c = t.ssh(&["-O", "forward", "-L", &spec]);
    super::run(&c, false)
        .with_context(|| format!("forwarding {hostport} on {} to 127.0.0.1:{port}", t.to))?;
    t.tcp.insert(hostport, port);
    Ok(format!("http://127.0.0.1:{port}{path}"))
}

/// The socket this process connects to for `path` on the environment's
/// host: `path` itself for a local engine, else a local socket that the
/// master forwards there.
pub fn reach_socket(path: &Path) -> Result<PathBuf> {
    let mut slot = TUNNEL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(t) = slot.as_mut() else {
        return Ok(path.to_path_buf());
    };
    if let Some(p) = t.unix.get(path) {
        return Ok(p.clone());
    }
    let local = t.dir.join(format!("s{}.sock", t.unix.len()));
    let spec = format!("{}:{}", local.display(), path.display());
    let c = t.ssh(&["-O", "forward", "-L", &spec]);
    super::run(&c, false).with_context(|| format!("forwarding {} on {}", path.display(), t.to))?;
    t.unix.insert(path.to_path_buf(), local.clone());
    Ok(local)
}

/// A command run on the environment's host through the master connection
/// (`ssh ... -- program args`), or `None` for a local engine.
pub fn on_host(effect: Effect, argv: &[&str], secs: u64) -> Option<Command> {
    let slot = TUNNEL.lock().unwrap_or_else(|p| p.into_inner());
    let t = slot.as_ref()?;
    // ssh hands the far side one string for its shell: each word quoted.
    let mut c = t
        .ssh(&["-T"])
        .arg("--")
        .args(argv.iter().map(|a| super::quote(a)));
    c.effect = effect;
    Some(c.timeout(secs))
}

/// An environment whose deploy lock and audit chain live on its SSH host:
/// the directory there (`host_state_dir/<env>`, relative to the SSH
/// user's home unless absolute), and what this machine keeps of it.
#[derive(Debug, Clone)]
pub struct HostState {
    pub at: Where,
    pub dir: String,
    /// The local audit sink of this machine's mirror, caught up with it.
    pub sink: Option<PathBuf>,
    /// Has this process brought its mirror up to the host's chain yet?
    pub synced: bool,
}

/// Local state directory -> the host keeping that environment's state.
static HOST_STATES: Mutex<BTreeMap<PathBuf, HostState>> = Mutex::new(BTreeMap::new());

/// Says that the environment whose local state directory is `local` keeps
/// its lock and chain on a host (`local` keeps the mirror).
pub fn keep_state_on_host(local: &Path, at: Where, dir: String, sink: Option<PathBuf>) {
    let mut m = HOST_STATES.lock().unwrap_or_else(|p| p.into_inner());
    let synced = m.get(local).is_some_and(|h| h.synced);
    m.insert(
        local.to_path_buf(),
        HostState {
            at,
            dir,
            sink,
            synced,
        },
    );
}

/// The host keeping the state whose local directory is `local`, if any.
pub fn host_state(local: &Path) -> Option<HostState> {
    HOST_STATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(local)
        .cloned()
}

/// Notes that this process's mirror of `local` matches the host now.
pub fn mark_synced(local: &Path) {
    if let Some(h) = HOST_STATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(local)
    {
        h.synced = true;
    }
}

/// The lock script: `flock` on `DIR/deploy.lock` held by a shell whose
/// stdin is ours, so it drops when we close it, die, or lose the link.
/// It prints `locked`, or `held HOLDER` with what the holder wrote.
const LOCK_SH: &str = r#"umask 077; d=$1; mkdir -p "$d" || exit 70
exec 9>>"$d/deploy.lock" || exit 70
if flock -n 9; then
  printf '%s' "$2" > "$d/deploy.lock"; echo locked
  cat >/dev/null
  : > "$d/deploy.lock"
else
  printf 'held %s\n' "$(cat "$d/deploy.lock")"
fi"#;

/// Who holds the lock, from the kernel's table (`/proc/locks`), without
/// trying it: even a brief try would refuse a deploy starting then.
const PEEK_SH: &str = r#"f=$1/deploy.lock; [ -e "$f" ] || { echo free; exit 0; }
i=$(stat -c %i "$f") || exit 70
if grep -q "FLOCK .*:$i " /proc/locks; then printf 'held %s\n' "$(cat "$f")"; else echo free; fi"#;

/// Reads the chain under a shared `flock` (never half an append).
const READ_SH: &str = r#"f=$1/audit.jsonl; [ -e "$f" ] || exit 0; exec flock -s "$f" cat "$f""#;

/// Appends one line under an exclusive `flock`, only if the chain is still
/// the length this run read (75 otherwise), then fsyncs it.
const APPEND_SH: &str = r#"umask 077; d=$1; mkdir -p "$d" || exit 70
f=$d/audit.jsonl; exec 9>>"$f" || exit 70; flock 9 || exit 70
n=$(stat -c %s "$f") || exit 70
if [ "$n" != "$2" ]; then echo "the chain there is $n bytes, this run expected $2" >&2; exit 75; fi
printf '%s\n' "$3" >&9 && sync "$f""#;

impl HostState {
    /// `ssh ... -- sh -c SCRIPT sh DIR ARGS...` through the operation's
    /// master when it goes to this host, else a connection of its own
    /// (the promotion gate reading staging's chain while working on prod).
    fn sh(&self, effect: Effect, script: &str, args: &[&str], secs: u64) -> Result<Command> {
        let mut argv = vec!["sh", "-c", script, "sh", &self.dir];
        argv.extend_from_slice(args);
        let quoted = argv.iter().map(|a| super::quote(a));
        let slot = TUNNEL.lock().unwrap_or_else(|p| p.into_inner());
        let c = match slot.as_ref() {
            Some(t) if t.to == self.at => t.ssh(&["-T"]),
            _ => {
                let (opts, dest) = self
                    .at
                    .ssh_args()
                    .with_context(|| format!("{} is not an SSH host", self.at))?;
                Command::new("ssh", effect)
                    .args(["-T", "-o", "BatchMode=yes", "-o"])
                    .arg(format!("ConnectTimeout={CONNECT_SECS}"))
                    .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
                    .args(opts)
                    .arg(dest)
            }
        };
        let mut c = c.arg("--").args(quoted);
        c.effect = effect;
        Ok(c.timeout(secs))
    }

    /// Takes the deploy lock on the host, writing `holder` into it: the
    /// held lock, or (`Err`) what the current holder wrote.
    pub fn lock(&self, holder: &str) -> Result<std::result::Result<super::Held, String>> {
        let c = self.sh(Effect::Mutating, LOCK_SH, &[holder], CONNECT_SECS + 10)?;
        match super::hold(&c)? {
            Ok((held, line)) if line == "locked" && !held.finished() => Ok(Ok(held)),
            Ok((_, line)) if line.starts_with("held") => {
                Ok(Err(line.trim_start_matches("held").trim().to_string()))
            }
            Ok((_, line)) => bail!(
                "taking the deploy lock in {} on {} answered `{line}`",
                self.dir,
                self.at
            ),
            Err(o) => bail!(
                "taking the deploy lock in {} on {} failed: {}; nothing was changed: check the host and its sshd",
                self.dir,
                self.at,
                super::explain(&o.stderr)
            ),
        }
    }

    /// The dry run's look at the host's lock: what its holder wrote, if
    /// anyone holds it.
    pub fn peek(&self) -> Result<Option<String>> {
        let c = self.sh(Effect::ReadOnly, PEEK_SH, &[], 30)?;
        let out = super::run(&c, false)
            .with_context(|| format!("asking {} who holds the lock in {}", self.at, self.dir))?;
        Ok(out
            .trim()
            .strip_prefix("held")
            .map(|h| h.trim().to_string()))
    }

    /// The chain's bytes on the host (empty when it has none yet).
    pub fn read_chain(&self) -> Result<Vec<u8>> {
        let c = self.sh(Effect::ReadOnly, READ_SH, &[], 30)?;
        let o = super::output(&c)?;
        if !o.success {
            bail!(
                "reading the audit chain in {} on {}: {}",
                self.dir,
                self.at,
                super::explain(&o.stderr)
            );
        }
        Ok(o.stdout.into_bytes())
    }

    /// Appends `line` (without its newline) to the host's chain if the
    /// chain there is still `len` bytes long. `Ok(Err(why))`: the host
    /// answered and refused (the chain moved); `Err`: it was not reached.
    pub fn append_chain(&self, len: u64, line: &str) -> Result<std::result::Result<(), String>> {
        let c = self.sh(Effect::Mutating, APPEND_SH, &[&len.to_string(), line], 30)?;
        let o = super::output(&c)?;
        match o.code {
            Some(0) => Ok(Ok(())),
            Some(75) => Ok(Err(super::explain(&o.stderr))),
            _ => bail!(
                "appending to the audit chain in {} on {}: {}",
                self.dir,
                self.at,
                super::explain(&o.stderr)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_hosts_parse_and_print_back() {
        let w = Where::parse_host("ssh://root@10.77.0.2:2222").unwrap();
        assert_eq!(w.to_string(), "ssh://root@10.77.0.2:2222");
        assert_eq!(
            w.docker_env(),
            Some(("DOCKER_HOST", "ssh://root@10.77.0.2:2222".into()))
        );
        assert_eq!(
            Where::parse_host("ssh://deploy.example")
                .unwrap()
                .to_string(),
            "ssh://deploy.example"
        );
        for bad in [
            "tcp://h:2375",
            "ssh://",
            "ssh://a b",
            "ssh://h:x",
            "ssh://h/x",
        ] {
            assert!(Where::parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_inherited_engine_other_than_the_declared_one_is_named() {
        let ssh = Where::parse_host("ssh://root@10.77.0.2:2222").unwrap();
        let c =
            |w: &Where, h: Option<&str>, x: Option<&str>| inherited_conflict("staging", w, h, x);
        assert!(c(&ssh, Some("ssh://root@10.77.0.2:2222"), None).is_none());
        let e = c(&ssh, Some("ssh://root@10.77.0.3:2222"), None).unwrap();
        assert!(e.contains("DOCKER_HOST=ssh://root@10.77.0.3:2222"), "{e}");
        assert!(e.contains("(ssh://root@10.77.0.2:2222)"), "{e}");
        assert!(c(&ssh, None, Some("other")).is_some());
        assert!(c(&Where::Local, Some("tcp://10.0.0.9:2375"), None).is_some());
        assert!(c(&Where::Local, Some(LOCAL_SOCKET), None).is_none());
        assert!(c(&Where::Local, Some(""), Some("default")).is_none());
        let ctx = Where::Context("prod-eu".into());
        assert!(c(&ctx, None, Some("prod-eu")).is_none());
        assert!(c(&ctx, None, Some("prod-us")).is_some());
    }
}
