//! The second node as the kernel sees it: the processes in its network
//! namespace and its cgroups (to stop it, or crash it), its registry probed
//! from inside the namespace, its engine's API over the unix socket, and
//! the files it leaves. No process is started here.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{netns_path, CGROUP_PARENT, DATA_DIR, RUN_DIR};

/// Every process whose network namespace is the second node's, with its
/// command line: the engine, its containerd and shims, the registry.
pub fn node_pids() -> Vec<(i32, String)> {
    let Ok(meta) = std::fs::metadata(netns_path()) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", meta.ino());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let ns = std::fs::read_link(e.path().join("ns/net"));
        if ns.is_ok_and(|l| l.as_os_str() == want.as_str()) {
            let cmdline = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push((pid, cmdline.trim().to_string()));
        }
    }
    out
}

/// The pids in the cgroups the second engine put its containers in.
fn cgroup_pids() -> Vec<i32> {
    let mut out = Vec::new();
    for d in cgroup_dirs() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Every cgroup directory under the node's parent, in every hierarchy,
/// deepest first.
fn cgroup_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    for h in hier.flatten() {
        let d = h.path().join(CGROUP_PARENT);
        if d.is_dir() {
            walk(&d, &mut out);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn signal(pids: &[i32], sig: i32) {
    for &pid in pids {
        // SAFETY: kill(2) on a pid we just read from /proc; the worst case
        // of a reused pid is a signal to a process that is also in the
        // node's namespace or cgroups.
        unsafe { libc::kill(pid, sig) };
    }
}

fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if !pids.iter().any(|&p| alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn is_registry(cmdline: &str) -> bool {
    cmdline.contains("docker-registry")
}

/// Crashes the second node as a host that lost power would: SIGKILL to its
/// engine, containerd, shims and every container process, at once, with
/// no chance to tell the manager. The namespace's registry stays (it plays
/// the network's registry, not part of the node). [`super::restart_node`]
/// starts the engine again.
pub fn kill_node() -> Result<()> {
    let mut pids: Vec<i32> = node_pids()
        .into_iter()
        .filter(|(_, c)| !is_registry(c))
        .map(|(p, _)| p)
        .collect();
    if pids.is_empty() {
        bail!("no second engine runs in the namespace: nothing to kill");
    }
    pids.extend(cgroup_pids());
    signal(&pids, libc::SIGKILL);
    if !wait_gone(&pids, Duration::from_secs(10)) {
        bail!("processes of the second node outlived SIGKILL for 10s");
    }
    Ok(())
}

/// Stops the second node cleanly: TERM to the engine (it stops its
/// containers and containerd), then, after at most 20 s, KILL to whatever
/// is left in the namespace (the registry included) and the node's cgroups.
pub fn stop_node() -> Result<()> {
    let pid_file = Path::new(RUN_DIR).join("docker.pid");
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| alive(p))
    {
        signal(&[pid], libc::SIGTERM);
        if !wait_gone(&[pid], Duration::from_secs(20)) {
            eprintln!("the second engine ignored SIGTERM for 20s; killing it");
        }
    }
    let registry: Vec<i32> = node_pids()
        .into_iter()
        .filter(|(_, c)| is_registry(c))
        .map(|(p, _)| p)
        .collect();
    signal(&registry, libc::SIGTERM);
    wait_gone(&registry, Duration::from_secs(5));
    let mut rest: Vec<i32> = node_pids().into_iter().map(|(p, _)| p).collect();
    rest.extend(cgroup_pids());
    signal(&rest, libc::SIGKILL);
    if !wait_gone(&rest, Duration::from_secs(10)) {
        bail!("processes of the second node outlived SIGKILL for 10s");
    }
    let _ = std::fs::remove_file(pid_file);
    Ok(())
}

/// Removes the node's data root (unmounting what a killed engine left
/// mounted there first), its runtime directory and its cgroups. The logs
/// in [`DATA_DIR`] stay.
pub fn remove_files() -> Result<()> {
    let data = Path::new(DATA_DIR).join("data");
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .context("reading /proc/self/mountinfo")?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(&data) || Path::new(m).starts_with(RUN_DIR))
        .collect();
    // Deepest first, so a mount inside another goes before it.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mounts {
        let c = std::ffi::CString::new(m.as_str())?;
        // SAFETY: umount2 on a path read from mountinfo, detached lazily.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    for d in [data.as_path(), Path::new(RUN_DIR)] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    for d in cgroup_dirs() {
        // A cgroup directory goes with rmdir once it holds no process.
        let _ = std::fs::remove_dir(&d);
    }
    Ok(())
}

/// Runs `f` on a thread that entered the node's network namespace, so
/// 127.0.0.1 is the namespace's loopback (network namespaces are per thread).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = netns_path();
    std::thread::spawn(move || -> Result<T> {
        use std::os::fd::AsRawFd as _;
        let ns =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on an fd we hold open; it changes this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("entering {}", path.display()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace probe thread panicked"))?
}

/// Does the registry in the namespace answer `GET /v2/` with 200?
pub fn registry_answers() -> bool {
    in_netns(|| {
        let t = Duration::from_secs(2);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5000));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, t) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(t));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:5000\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200")
    })
    .unwrap_or(false)
}

/// `POST path` with a JSON body to an engine's API over its unix socket;
/// an answer other than 2xx is an error with the engine's message. Used
/// where the body carries a secret (a join token) that must not be argv.
pub fn api_post(sock: &Path, path: &str, body: &str, timeout: Duration) -> Result<()> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .with_context(|| format!("connecting to {}", sock.display()))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .with_context(|| format!("writing to {}", sock.display()))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).with_context(|| {
        format!(
            "reading the answer to POST {path} (limit {}s)",
            timeout.as_secs()
        )
    })?;
    let status = resp.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        let msg = resp.split("\r\n\r\n").nth(1).unwrap_or(&resp).trim();
        bail!("POST {path} answered {status}: {msg}");
    }
    Ok(())
}
