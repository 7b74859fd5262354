//! The per-environment deploy lock: an OS advisory lock (`flock`) on a file in
//! the environment's state directory.
//!
//! The kernel drops the lock when the holder dies, even on `kill -9`, so a
//! crashed deploy never leaves a stale lock. The file's contents name the
//! holder (pid, host, start time, task) for the refusal message; they are
//! informational only and never decide who holds the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exit::{fail, Code};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    pub path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Takes the lock at `path`, waiting up to `wait`. A held lock fails with
/// exit 5 and the holder's description.
pub fn acquire(path: &Path, env: &str, task: &str, wait: Duration) -> Result<LockGuard> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if start.elapsed() >= wait {
                    let holder = holder(&mut file);
                    let waited = if wait.is_zero() {
                        String::new()
                    } else {
                        format!(" after waiting {}s", wait.as_secs())
                    };
                    return Err(fail(
                        Code::Refused,
                        format!("environment `{env}` is locked{waited} by {holder}; retry later or pass --lock-wait SECS"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
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
    Ok(LockGuard {
        file,
        path: path.to_path_buf(),
    })
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "another process (holder not yet written)".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::code_of;

    #[test]
    fn second_taker_is_refused_with_holder_and_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("staging/deploy.lock");
        let g = acquire(&p, "staging", "deploy-staging", Duration::ZERO).unwrap();
        let e = acquire(&p, "staging", "rollback", Duration::ZERO).unwrap_err();
        assert_eq!(code_of(&e), Code::Refused);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("running deploy-staging"), "{msg}");
        drop(g);
        acquire(&p, "staging", "rollback", Duration::ZERO).unwrap();
    }
}
