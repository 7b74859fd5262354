//! Before a task touches anything: can its audit record be written at all?
//!
//! A deploy that recreates containers and then cannot append its record
//! leaves a running version the chain does not know. So the executor asks
//! first, in two parts:
//! - [`Log::room_for`], read-only, which the dry run asks too: the log and
//!   the sink are writable (or their directories creatable) and their
//!   filesystems have room for the largest record this task can write;
//! - [`Log::probe_writable`], the real run only: the directories are
//!   created, the files open for append, and `fallocate` (`KEEP_SIZE`: the
//!   file's length and bytes stay as they are) reserves that many bytes
//!   past their end where the filesystem allows, which also catches quotas
//!   and immutable files.
//!
//! What a record can need is bounded: [`record_bound`] adds the longest
//! error ([`MAX_ERROR`]) and actor to what the plan already knows.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Log;
use crate::exit::{refuse, Refusal};

/// The longest error a record stores, in bytes; a longer one is cut with
/// `…` (docs/audit-log.md). The whole error is printed on stderr anyway.
pub const MAX_ERROR: usize = 2048;

/// The most bytes one record can take in the log (and in the sink), given
/// what the plan knows: its reason and tags. The rest is bounded by the
/// caps: the error ([`MAX_ERROR`]), the actor (`MAX_ACTOR`), the host
/// name; every stored byte is counted twice, for JSON's escapes.
pub fn record_bound(reason: &str, tags: &[Option<&str>]) -> u64 {
    // Keys, timestamp, sequence, prev hash, git sha, digests, set, the
    // notes `--force` adds: generously.
    const FIXED: usize = 2048;
    const HOST: usize = 255;
    let tags: usize = tags.iter().flatten().map(|t| t.len()).sum();
    (FIXED + 2 * (reason.len() + tags + super::actor::MAX_ACTOR + HOST + MAX_ERROR)) as u64
}

/// `s` cut to at most [`MAX_ERROR`] bytes (on a character boundary, with `…`).
pub fn bounded_error(s: &str) -> String {
    if s.len() <= MAX_ERROR {
        return s.to_string();
    }
    let mut end = MAX_ERROR - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Log {
    /// Refuses (exit 5) a log or sink that others can write, as ssh refuses
    /// a loose key: whoever can write it can rewrite the history it proves.
    /// Asked when a task gets the log (dry and real runs alike) and again
    /// before the executor touches anything.
    pub fn refuse_loose(&self) -> Result<()> {
        for (p, what) in std::iter::once((&self.path, "audit log"))
            .chain(self.sink.as_ref().map(|s| (s, "audit sink")))
        {
            if let Some(mode) = loose_mode(p) {
                return Err(refuse(
                    Refusal::LooseLog,
                    format!(
                        "the {what} {} is group- or world-writable (mode {mode:04o}); nothing was changed: run `chmod 600 {}`",
                        p.display(),
                        p.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `Ok` when the log and its sink can take a record of `need` bytes,
    /// asked read-only (nothing is created): the refusal the dry run and
    /// the real run share.
    pub fn room_for(&self, need: u64) -> Result<()> {
        room(&self.path, "audit log", need)?;
        if let Some(sink) = &self.sink {
            room(sink, "audit sink", need)?;
        }
        Ok(())
    }

    /// `Ok` when the log and its sink can take one more record of `need`
    /// bytes; creates their directories (the real run only).
    pub fn probe_writable(&self, need: u64) -> Result<()> {
        self.refuse_loose()?;
        probe(&self.path, "audit log", need)?;
        if let Some(sink) = &self.sink {
            probe(sink, "audit sink", need)?;
        }
        Ok(())
    }
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", p.display()))
}

fn room(path: &Path, what: &str, need: u64) -> Result<()> {
    // The file, or else the nearest directory above it that exists: what
    // the real run writes into or creates under.
    let (at, exists) = match path.exists() {
        true => (path, true),
        false => {
            let mut d = path.parent().unwrap_or(Path::new("."));
            while !d.exists() {
                d = d.parent().unwrap_or(Path::new("/"));
            }
            if !d.is_dir() {
                bail!(
                    "the {what}'s directory {} cannot be created: {} is not a directory",
                    path.parent().unwrap_or(Path::new(".")).display(),
                    d.display()
                );
            }
            (d, false)
        }
    };
    let c = c_path(at)?;
    // SAFETY: access(2) on a NUL-terminated path; it reads nothing else.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(e).with_context(|| match exists {
            true => format!("the {what} {} is not writable", path.display()),
            false => format!(
                "the {what}'s directory {} cannot be created under {}",
                path.parent().unwrap_or(Path::new(".")).display(),
                at.display()
            ),
        });
    }
    // SAFETY: statvfs(2) fills the zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        // Without the figure, the real run's reservation is the check.
        return Ok(());
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    if free < need {
        bail!(
            "the {what} {} has {free} bytes free and a record of this task can need {need}: free some space",
            path.display()
        );
    }
    Ok(())
}

/// The permission bits of `path` when group or others may write it.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

fn probe(path: &Path, what: &str, need: u64) -> Result<()> {
    if !path.exists() {
        // A new chain: its directory must take a new file.
        let dir = path.parent().unwrap_or(Path::new("."));
        super::file::create_private_dir(dir).with_context(|| {
            format!("the {what}'s directory {} cannot be created", dir.display())
        })?;
        let probe = dir.join(format!(".xtask-probe-{}", std::process::id()));
        let r = std::fs::write(&probe, b"probe");
        let _ = std::fs::remove_file(&probe);
        return r
            .with_context(|| format!("the {what}'s directory {} is not writable", dir.display()));
    }
    let f = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("the {what} {} cannot be opened for append", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    // SAFETY: fallocate on an fd we own; KEEP_SIZE changes neither the
    // file's length nor its contents.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            len as libc::off_t,
            need as libc::off_t,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // Filesystems without fallocate cannot be probed this way; the
        // append-open above is the check there.
        if !matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
        ) {
            return Err(e).with_context(|| format!("the {what} {} cannot grow", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let short = "x".repeat(MAX_ERROR);
        assert_eq!(bounded_error(&short), short);
        let long = "é".repeat(MAX_ERROR);
        let cut = bounded_error(&long);
        assert!(
            cut.len() <= MAX_ERROR && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert!(record_bound("r", &[Some("sha-1")]) > (2 * MAX_ERROR) as u64);
    }
}
