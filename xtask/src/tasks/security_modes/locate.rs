//! Which files, and which lines, define a service: for findings and SARIF.
//!
//! Compose's rendered config no longer says where a service came from, and
//! this task parses no YAML. A light scan is enough to point a reader at the
//! service: each of the stack's files whose top-level `services:` block has
//! the service as a key (`  api:` at the block's indentation), in order. A
//! merged service (a base and an overlay) names every file that defines it,
//! since the offending value may come from any of them. A service that only
//! comes from `extends` of a file outside the stack is attributed to the
//! stack's files as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where each service of a stack is defined.
#[derive(Debug, Default)]
pub struct Locations {
    /// The stack's files as one label, for services found in none of them.
    all: String,
    found: BTreeMap<String, Vec<(String, usize)>>,
}

impl Locations {
    /// Scans `files` (unreadable ones are skipped: compose already read them).
    pub fn scan(files: &[PathBuf]) -> Locations {
        let mut found = BTreeMap::new();
        for f in files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            for (name, line) in service_keys(&text) {
                found
                    .entry(name)
                    .or_insert_with(Vec::new)
                    .push((shown(f), line));
            }
        }
        let all: Vec<String> = files.iter().map(|f| shown(f)).collect();
        Locations {
            all: all.join(" + "),
            found,
        }
    }

    /// The first file and line defining `service`, and `file:line` of the others.
    pub fn of(&self, service: &str) -> (String, Option<usize>, Vec<String>) {
        match self.found.get(service).map(Vec::as_slice) {
            Some([(f, l), rest @ ..]) => (
                f.clone(),
                Some(*l),
                rest.iter().map(|(f, l)| format!("{f}:{l}")).collect(),
            ),
            _ => (self.all.clone(), None, vec![]),
        }
    }
}

/// A path as a reader wants it: relative to the working directory when under it.
pub fn shown(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

/// The keys of the top-level `services:` mapping, with their 1-based lines.
fn service_keys(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_end();
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = body.len() - trimmed.len();
        if at == 0 {
            inside = trimmed.starts_with("services:");
            indent = None;
            continue;
        }
        if !inside || indent.is_some_and(|n| at != n) {
            continue;
        }
        indent = Some(at);
        let key = trimmed.split('#').next().unwrap_or_default().trim_end();
        if let Some(k) = key
            .strip_suffix(':')
            .or_else(|| key.split_once(": ").map(|(k, _)| k))
        {
            out.push((k.trim_matches(['"', '\'']).to_string(), i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_service_keys_only() {
        let text = "x-common: &c\n  image: a\nservices:\n  api:\n    <<: *c\n    environment:\n      db: x\n\n  # a comment\n  \"db\":\n    image: b\n  tools: {image: c}\nvolumes:\n  api:\n";
        assert_eq!(
            service_keys(text),
            [
                ("api".to_string(), 4),
                ("db".into(), 10),
                ("tools".into(), 12)
            ]
        );
    }

    #[test]
    fn every_defining_file_in_order_and_unknown_services_name_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yml"), dir.path().join("b.yml"));
        std::fs::write(&a, "services:\n  api:\n    image: x\n").unwrap();
        std::fs::write(
            &b,
            "services:\n  api:\n    read_only: true\n  worker:\n    image: y\n",
        )
        .unwrap();
        let l = Locations::scan(&[a.clone(), b.clone()]);
        assert_eq!(
            l.of("api"),
            (shown(&a), Some(2), vec![format!("{}:2", shown(&b))])
        );
        assert_eq!(l.of("worker"), (shown(&b), Some(4), vec![]));
        assert_eq!(l.of("ghost").0, format!("{} + {}", shown(&a), shown(&b)));
    }
}
