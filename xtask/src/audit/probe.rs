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

impl Log {
    /// `Ok` when the log and its sink can take one more record.
    pub fn probe_writable(&self) -> Result<()> {
        probe(&self.path, "audit log")?;
        if let Some(sink) = &self.sink {
            probe(sink, "audit sink")?;
        }
        Ok(())
    }
}

fn probe(path: &Path, what: &str) -> Result<()> {
    if !path.exists() {
        // A new chain: its directory must take a new file.
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| {
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
