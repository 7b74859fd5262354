//! The per-environment deploy lock: an OS advisory lock (`flock`) on a file in
//! the environment's state directory, plus an optional maintenance hold.
//!
//! The kernel drops the lock when the holder dies, even on `kill -9`, so a
//! crashed deploy never leaves a stale lock. The file's contents name the
//! holder (pid, host, start time, task) for the refusal message; they are
//! informational only and never decide who holds the lock.
//!
//! A maintenance hold (`cargo xtask lock acquire ENV -m MESSAGE`) must outlive
//! the process that took it, which a `flock` cannot. It is a small file next
//! to the lock, `maintenance.json`, written and removed only while the
//! `flock` is held, and read by [`acquire`] under the `flock`: while it
//! exists, every task that takes the lock is refused (exit 5) with the
//! holder and the message, except those in [`PASSES_HOLD`]. Only
//! `lock acquire` writes it and only `lock release` removes it, so a
//! crashed deploy still leaves nothing behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exit::{refuse, Refusal};

/// The lock file's name in an environment's state directory.
pub const LOCK_FILE: &str = "deploy.lock";
/// The maintenance hold's name, next to the lock file.
pub const HOLD_FILE: &str = "maintenance.json";
/// Tasks that take the lock during a maintenance hold: its own release, and
/// the repair of a torn audit log (which the holder may need in the window).
pub const PASSES_HOLD: [&str; 2] = [RELEASE_TASK, "audit repair"];
/// The task that ends a hold.
pub const RELEASE_TASK: &str = "lock release";

/// A held lock; released when dropped (or when the process dies).
pub struct LockGuard {
    file: File,
    pub path: PathBuf,
    /// The same lock on the environment's host, for an environment kept
    /// there: a process on the host holding it while our pipe is open.
    host: Option<crate::cmd::Held>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("path", &self.path)
            .field("on_host", &self.host.is_some())
            .finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(h) = self.host.take() {
            h.release();
        }
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// A maintenance hold: who took it, where, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub message: String,
    pub actor: String,
    pub host: String,
    pub since: String,
}

impl Hold {
    /// A hold by this process's actor, on this host, from now.
    pub fn new(message: &str) -> Hold {
        Hold {
            message: message.into(),
            actor: crate::audit::actor(),
            host: crate::audit::hostname(),
            since: crate::audit::now_rfc3339(),
        }
    }

    /// `ACTOR on HOST since TS: "MESSAGE"`, every value escaped to one line.
    pub fn describe(&self) -> String {
        use crate::audit::{escape_value as esc, ts_seconds};
        format!(
            "{} on {} since {}: \"{}\"",
            esc(&self.actor),
            esc(&self.host),
            ts_seconds(&self.since),
            esc(&self.message)
        )
    }
}

/// The maintenance hold that belongs to the lock at `lock`.
pub fn hold_path(lock: &Path) -> PathBuf {
    lock.with_file_name(HOLD_FILE)
}

/// The hold on the lock at `lock`, if any. An unreadable hold is an error,
/// which [`acquire`] treats as held: a hold fails closed.
pub fn read_hold(lock: &Path) -> Result<Option<Hold>> {
    let p = hold_path(lock);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("reading maintenance hold {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading maintenance hold {}", p.display())),
    }
}

/// Writes the hold for the lock at `lock` durably (temp file, fsync,
/// rename, fsync of the directory). Only while holding that lock.
pub fn write_hold(lock: &Path, hold: &Hold) -> Result<()> {
    let p = hold_path(lock);
    let tmp = p.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(hold).context("encoding the maintenance hold")?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&body)
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &p).with_context(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(&p)
}

/// Removes the hold durably; false if there was none. Only while holding the lock.
pub fn remove_hold(lock: &Path) -> Result<bool> {
    let p = hold_path(lock);
    match std::fs::remove_file(&p) {
        Ok(()) => sync_dir(&p).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

fn sync_dir(p: &Path) -> Result<()> {
    let dir = p.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Takes the lock at `path`, waiting up to `wait`. A lock held by another
/// process, or a maintenance hold (unless `task` passes holds), fails with
/// exit 5 and the holder's description once `wait` is over.
pub fn acquire(path: &Path, env: &str, task: &str, wait: Duration) -> Result<LockGuard> {
    if let Some(dir) = path.parent() {
        crate::audit::create_private_dir(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
    }
    // Owner-only (0600) whatever the umask, like the audit log beside it.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let start = Instant::now();
    let since = crate::cmd::since_now();
    loop {
        // The refusal, in two parts around " after waiting Ns".
        let (why, what, then) = match file.try_lock() {
            Ok(()) => match held_for_maintenance(path, env, task) {
                None => break,
                Some(why) => {
                    file.unlock()
                        .with_context(|| format!("unlocking {}", path.display()))?;
                    why
                }
            },
            Err(TryLockError::WouldBlock) => locked(env, &holder(&mut file)),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        };
        if start.elapsed() >= wait {
            let waited = if wait.is_zero() {
                String::new()
            } else {
                format!(" after waiting {}s", wait.as_secs())
            };
            return Err(refuse(why, format!("{what}{waited}{then}")));
        }
        // A signal while waiting ends the wait: nothing was touched yet.
        crate::cmd::check_interrupt(since)
            .with_context(|| format!("waiting for the lock of `{env}`"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let who = format!(
        "pid {} on {} since {} running {task}",
        std::process::id(),
        crate::audit::hostname(),
        crate::audit::now_rfc3339()
    );
    file.set_len(0)
        .with_context(|| format!("writing lock holder to {}", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(who.as_bytes())
        .with_context(|| format!("writing lock holder to {}", path.display()))?;
    let mut guard = LockGuard {
        file,
        path: path.to_path_buf(),
        host: None,
    };
    if let Some(h) = path.parent().and_then(crate::cmd::remote::host_state) {
        guard.host = Some(acquire_on_host(&h, env, &who, wait, start)?);
        // Under the lock, the mirror catches up with the host's chain, so
        // what this task checks and appends to is the chain.
        let log = crate::audit::Log {
            env: env.to_string(),
            path: path.with_file_name("audit.jsonl"),
            sink: h.sink.clone(),
        };
        log.sync_host(true)?;
    }
    Ok(guard)
}

/// The environment's lock on its host (after ours here, so two runs on
/// this machine never both ask the host): refused as locally, exit 5,
/// naming the holder the host's lock file names, once `wait` is over.
fn acquire_on_host(
    h: &crate::cmd::remote::HostState,
    env: &str,
    who: &str,
    wait: Duration,
    start: Instant,
) -> Result<crate::cmd::Held> {
    let since = crate::cmd::since_now();
    let who = format!("{} ({who})", crate::audit::actor());
    loop {
        let holder = match h.lock(&who) {
            Ok(Ok(held)) => return Ok(held),
            Ok(Err(holder)) => holder,
            Err(e) => {
                return Err(crate::exit::fail(
                    crate::exit::Code::Preflight,
                    format!("{e:#}"),
                ))
            }
        };
        if start.elapsed() >= wait {
            let (why, what, then) = locked(env, &format!("{holder} on {}", h.at));
            let waited = if wait.is_zero() {
                String::new()
            } else {
                format!(" after waiting {}s", wait.as_secs())
            };
            return Err(refuse(why, format!("{what}{waited}{then}")));
        }
        crate::cmd::check_interrupt(since)
            .with_context(|| format!("waiting for the lock of `{env}` on {}", h.at))?;
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The dry run's twin of [`acquire`] with no wait, read-only: refuses as
/// `acquire` would now, from the kernel's lock table and the hold file,
/// without opening the lock (which could refuse a deploy starting now).
pub fn peek(path: &Path, env: &str, task: &str) -> Result<()> {
    let on_host = match path.parent().and_then(crate::cmd::remote::host_state) {
        Some(h) => h.peek()?.map(|holder| format!("{holder} on {}", h.at)),
        None => None,
    };
    let (why, what, then) = match running(path) {
        Running::Held { holder, .. } => locked(env, &holder),
        _ if on_host.is_some() => locked(env, on_host.as_deref().unwrap_or_default()),
        // Free, or the table unreadable: the hold decides, as it would
        // once `acquire` has the lock.
        _ => match held_for_maintenance(path, env, task) {
            None => return Ok(()),
            Some(why) => why,
        },
    };
    Err(refuse(why, format!("{what}{then}")))
}

/// The refusal of a lock held by `holder`, in two parts around " after waiting Ns".
fn locked(env: &str, holder: &str) -> (Refusal, String, String) {
    let holder = match holder.trim() {
        "" => "another process (holder not yet written)",
        h => h,
    };
    (
        Refusal::Locked,
        format!("environment `{env}` is locked"),
        format!(" by {holder}; retry later or pass --lock-wait SECS"),
    )
}

/// The refusal for a maintenance hold on `path`, if one applies to `task`.
fn held_for_maintenance(path: &Path, env: &str, task: &str) -> Option<(Refusal, String, String)> {
    if PASSES_HOLD.contains(&task) {
        return None;
    }
    let release = format!("`cargo xtask lock release {env}` ends it");
    match read_hold(path) {
        Ok(None) => None,
        Ok(Some(h)) => Some((
            Refusal::Held,
            format!("environment `{env}` is held for maintenance"),
            format!(" by {}; {release}, or pass --lock-wait SECS", h.describe()),
        )),
        Err(e) => Some((
            Refusal::Held,
            format!("environment `{env}` has a maintenance hold that cannot be read"),
            format!(" ({e:#}); {release}"),
        )),
    }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut s));
    s
}

/// Who holds the lock at `path` right now, looked up without touching it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Running {
    /// No process holds it.
    Free,
    /// A process holds it: its pid and the holder text it wrote.
    Held { pid: u32, holder: String },
    /// The kernel's lock table (/proc/locks) could not be read.
    Unknown { error: String },
}

/// The `running:` line and the `maintenance:` lines (`lock status` and `status`).
pub fn describe(
    env: &str,
    running: &Running,
    hold: &Result<Option<Hold>>,
) -> (String, Vec<String>) {
    let run = match running {
        Running::Free => "running: nothing (no deploy or rollback holds the lock)".to_string(),
        Running::Held { pid, holder } if holder.is_empty() => format!("running: pid {pid}"),
        Running::Held { holder, .. } => format!("running: {holder}"),
        Running::Unknown { error } => format!("running: unknown ({error})"),
    };
    let release = format!("`cargo xtask lock release {env}`");
    let held = match hold {
        Ok(None) => vec!["maintenance: none".to_string()],
        Ok(Some(h)) => vec![
            format!("maintenance: HELD by {}", h.describe()),
            format!("  deploys and rollbacks are refused until {release}"),
        ],
        Err(e) => vec![
            format!("maintenance: HELD (unreadable: {e:#})"),
            format!("  deploys and rollbacks are refused until {release} removes it"),
        ],
    };
    (run, held)
}

/// Looks the lock up in the kernel's table (/proc/locks) instead of trying
/// it: even a brief try would refuse a deploy starting at that moment.
pub fn running(path: &Path) -> Running {
    use std::os::unix::fs::MetadataExt as _;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Running::Free,
        Err(e) => {
            return Running::Unknown {
                error: format!("reading {}: {e}", path.display()),
            }
        }
    };
    let table = match std::fs::read_to_string("/proc/locks") {
        Ok(t) => t,
        Err(e) => {
            return Running::Unknown {
                error: format!("reading /proc/locks: {e}"),
            }
        }
    };
    match flock_pid(&table, meta.dev(), meta.ino()) {
        None => Running::Free,
        Some(pid) => Running::Held {
            pid,
            holder: std::fs::read_to_string(path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        },
    }
}

/// The pid of the `flock` holder of device `dev`, inode `ino` in a
/// /proc/locks table (`1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`,
/// major and minor in hex); waiters (`->`) are skipped.
pub fn flock_pid(table: &str, dev: u64, ino: u64) -> Option<u32> {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    table.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 6 || w[1] != "FLOCK" {
            return None;
        }
        let mut id = w[5].split(':');
        let (ma, mi, i) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        same.then(|| w[4].parse().ok()).flatten()
    })
}
