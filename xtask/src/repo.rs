//! Facts about this checkout and this machine that every layer may need:
//! the workspace root, HEAD's commit, free loopback ports, whether we are root.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The workspace root (where Cargo.toml with `[workspace]` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `n` distinct free loopback ports. Every listener is held until all are
/// chosen, so one call never hands out the same port twice (asking one at a
/// time can, once the first listener is closed).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .context("asking the OS for a free loopback port")
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Are we root? Read from /proc, so no libc call is needed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// HEAD's commit, if this is a git checkout.
pub fn git_sha() -> Option<String> {
    let s = crate::cmd::probe("git", &["rev-parse", "HEAD"], Some(&workspace_root()))?;
    (s.len() == 40).then_some(s)
}

/// The default tag: `sha-<12 hex of HEAD>`.
pub fn head_tag() -> Result<String> {
    let sha =
        git_sha().ok_or_else(|| anyhow::anyhow!("cannot read HEAD's commit: pass --tag TAG"))?;
    Ok(format!("sha-{}", &sha[..12]))
}
