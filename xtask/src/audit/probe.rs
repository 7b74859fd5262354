//! Before a task touches anything: can its audit record be written at all?
//!
//! A deploy that recreates containers and then cannot append its record
//! leaves a running version the chain does not know. So the executor asks
//! first: the log and the sink open for append, and a probe reserves one
//! block past their end (`fallocate` with `KEEP_SIZE`: the file's length and
//! bytes stay as they are) where the filesystem allows, which catches a full
//! disk as well as an immutable file or a read-only mount.

use std::fs::OpenOptions;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};

use super::Log;
use crate::exit::{fail, Code};

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
                return Err(fail(
                    Code::Refused,
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

    /// `Ok` when the log and its sink can take one more record.
    pub fn probe_writable(&self) -> Result<()> {
        self.refuse_loose()?;
        probe(&self.path, "audit log")?;
        if let Some(sink) = &self.sink {
            probe(sink, "audit sink")?;
        }
        Ok(())
    }
}

/// The permission bits of `path` when group or others may write it.
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

fn probe(path: &Path, what: &str) -> Result<()> {
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
            4096,
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
