//! What lint checks, looked up read-only while planning: the workflows, the
//! shell scripts (by `.sh` name or by a shell shebang, so `.ci/run` counts),
//! and how actionlint runs here.

use std::path::Path;

use anyhow::{Context, Result};

use super::{find_actionlint, Found, WORKFLOWS};

/// Directories never searched for scripts: VCS data, build output, installed
/// packages and state directories.
const SKIP_DIRS: [&str; 4] = [".git", "target", "node_modules", ".state"];
/// Interpreters shellcheck understands.
const SHELLS: [&str; 4] = ["sh", "bash", "dash", "ksh"];

/// Looks up the tools and files (read-only).
pub fn look(root: &Path) -> Result<Found> {
    let workflows = files_with(&root.join(WORKFLOWS), &["yml", "yaml"], root)?;
    let mut scripts = Vec::new();
    shell_scripts(root, root, &mut scripts)?;
    scripts.sort();
    Ok(Found {
        actionlint: find_actionlint(),
        shellcheck: which::which("shellcheck").is_ok(),
        workflows,
        scripts,
    })
}

/// Does this first line name a shell shellcheck reads? `#!/bin/sh`,
/// `#!/usr/bin/env bash`, `#!/usr/bin/env -S bash -e`, ...
pub fn shell_shebang(first_line: &str) -> bool {
    let Some(rest) = first_line.strip_prefix("#!") else {
        return false;
    };
    let mut words = rest.split_whitespace();
    let Some(mut prog) = words.next() else {
        return false;
    };
    if prog.rsplit('/').next() == Some("env") {
        match words.find(|w| !w.starts_with('-')) {
            Some(p) => prog = p,
            None => return false,
        }
    }
    SHELLS.contains(&prog.rsplit('/').next().unwrap_or(prog))
}

/// Every file under `dir` named `*.sh` or starting with a shell shebang,
/// relative to `root`.
fn shell_scripts(dir: &Path, root: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let p = e.path();
        let kind = e
            .file_type()
            .with_context(|| format!("reading {}", p.display()))?;
        let name = e.file_name();
        if kind.is_dir() {
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                shell_scripts(&p, root, out)?;
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let by_name = p.extension().is_some_and(|x| x == "sh");
        if by_name || shell_shebang(&first_line(&p)?) {
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
    Ok(())
}

/// The first line of a file, at most 256 bytes of it (lossy UTF-8).
fn first_line(p: &Path) -> Result<String> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("reading {}", p.display()))?;
    let head = &head[..n];
    let end = head.iter().position(|&b| b == b'\n').unwrap_or(n);
    Ok(String::from_utf8_lossy(&head[..end]).into_owned())
}

/// Files directly in `dir` with one of `exts`, relative to `root`, sorted.
fn files_with(dir: &Path, exts: &[&str], root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let p = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let ext_ok = p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x));
        if ext_ok && p.is_file() {
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_of_shells_count_and_others_do_not() {
        for yes in [
            "#!/bin/sh",
            "#!/bin/bash -eu",
            "#!/usr/bin/env bash",
            "#! /usr/bin/env -S bash -e",
            "#!/usr/bin/dash",
        ] {
            assert!(shell_shebang(yes), "{yes}");
        }
        for no in [
            "#!/usr/bin/env node",
            "#!/usr/bin/python3",
            "#!/usr/bin/env",
            "# bash",
            "",
            "#!/usr/bin/fish",
        ] {
            assert!(!shell_shebang(no), "{no}");
        }
    }

    #[test]
    fn scripts_are_found_by_name_or_shebang_anywhere_but_build_output() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put(".ci/run", "#!/usr/bin/env bash\necho hi\n");
        put("scripts/a.sh", "echo no shebang\n");
        put("tools/deploy", "#!/bin/sh\nexit 0\n");
        put("scripts/helper.cjs", "#!/usr/bin/env node\n");
        put("target/debug/build/x.sh", "#!/bin/sh\n");
        put("deployments/testbed/target/y", "#!/bin/sh\n");
        let found = look(root).unwrap();
        assert_eq!(found.scripts, [".ci/run", "scripts/a.sh", "tools/deploy"]);
    }
}
