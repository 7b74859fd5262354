//! The shape of the code, checked: one door to the outside world, and
//! layers that only point down.
//!
//! - Only `xtask/src/cmd/` may start a process: no other file names
//!   `std::process::Command`, `duct::`, `xshell::` or `CommandExt`.
//! - Every `crate::<module>` reference in a module points to a module of a
//!   strictly lower layer (so there are no cycles), and a task never names
//!   another task.
//!
//! The check reads the source text: `use crate::x` and `crate::x::y` paths,
//! comments included, so a doc link upward counts as a dependency too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    xtask::workspace_root().join("xtask/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn files() -> Vec<(String, String)> {
    let mut v = Vec::new();
    rust_files(&src(), &mut v);
    v.sort();
    v.into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src()).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

const SPAWNERS: [&str; 5] = [
    "std::process::Command",
    "process::Command",
    "duct::",
    "xshell::",
    "CommandExt",
];

/// Files that start processes other than through `cmd`, one finding each.
fn spawners(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        if path == "cmd.rs" || path.starts_with("cmd/") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if let Some(w) = SPAWNERS.iter().find(|w| line.contains(*w)) {
                out.push(format!("{path}:{}: names `{w}`", n + 1));
            }
        }
    }
    out
}

#[test]
fn only_cmd_starts_processes() {
    let found = spawners(&files());
    assert!(
        found.is_empty(),
        "processes must start through xtask/src/cmd/ only:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_spawn_check_catches_a_stray_command() {
    let fake = vec![
        (
            "tasks/x.rs".to_string(),
            "fn f() { std::process::Command::new(\"rm\"); }".to_string(),
        ),
        ("cmd.rs".to_string(), "duct::cmd!(\"ok\")".to_string()),
    ];
    assert_eq!(
        spawners(&fake),
        vec!["tasks/x.rs:1: names `std::process::Command`".to_string()]
    );
}

/// Task files that test the mode (`.dry_run`): the mode is decided in
/// `ctx` and the executor only. `tasks/scope.rs` builds contexts for its
/// enumeration and may name the field.
fn mode_tests(files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(p, _)| p.starts_with("tasks/") && p != "tasks/scope.rs")
        .flat_map(|(p, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.contains(".dry_run"))
                .map(move |(i, _)| format!("{p}:{}: tests the mode", i + 1))
        })
        .collect()
}

#[test]
fn no_task_tests_the_mode() {
    let found = mode_tests(&files());
    assert!(
        found.is_empty(),
        "let `Ctx::finish` or `Ctx::finish_with` decide dry run or real run:\n{}",
        found.join("\n")
    );
    let fake = vec![(
        "tasks/x.rs".to_string(),
        "if ctx.global.dry_run { return Ok(()) }".to_string(),
    )];
    assert_eq!(mode_tests(&fake), vec!["tasks/x.rs:1: tests the mode"]);
}

/// The module a file belongs to, as the layer table names it:
/// `tasks/deploy.rs` and `tasks/backup_smoke/run.rs` are tasks of their own.
fn module_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_end_matches(".rs").split('/').collect();
    match parts.as_slice() {
        ["tasks", "mod"] => "tasks".into(),
        ["tasks", t, ..] => format!("tasks::{t}"),
        [m, ..] => (*m).to_string(),
        [] => unreachable!(),
    }
}

/// Lower numbers are lower layers; a module may name only modules of a
/// strictly lower layer. The picture is in docs/architecture.md.
fn layer(module: &str) -> Option<u32> {
    Some(match module {
        "cmd" | "ci" => 0,
        "exit" | "repo" | "validate" | "flags" | "out" | "progress" | "secret" | "notify" => 1,
        "config" | "audit" => 2,
        // The health gate reads the contract from the config.
        "lock" | "engine" | "health" => 3,
        "preflight" | "plan" => 4,
        "exec" => 5,
        "rollout" | "ctx" => 6,
        "provision" | "nodes" => 7,
        "bench" => 8,
        m if m.starts_with("tasks::") => 9,
        "tasks" | "main" | "lib" => 10,
        _ => return None,
    })
}

/// Every `crate::name` a file refers to, with the line.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let full = if name == "tasks" {
                let after = &rest[name.len()..];
                let sub: String = after
                    .strip_prefix("::")
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if sub.is_empty() {
                    name
                } else {
                    format!("tasks::{sub}")
                }
            } else {
                name
            };
            if !full.is_empty() && full.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.push((n + 1, full));
            }
        }
    }
    out
}

/// Upward or sideways references, one finding each.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let from = module_of(path);
        // The scope test enumerates deploy's and rollback's plans; it is a
        // test of those two tasks, not a task.
        if path == "tasks/scope.rs" {
            continue;
        }
        let Some(lf) = layer(&from) else {
            out.push(format!("{path}: module `{from}` has no layer in the table"));
            continue;
        };
        for (line, to) in references(text) {
            if to == from || (from.starts_with("tasks::") && to == "tasks") {
                continue;
            }
            let Some(lt) = layer(&to) else {
                out.push(format!(
                    "{path}:{line}: `crate::{to}` has no layer in the table"
                ));
                continue;
            };
            if lt >= lf {
                out.push(format!(
                    "{path}:{line}: `{from}` (layer {lf}) names `crate::{to}` (layer {lt})"
                ));
            }
        }
    }
    out
}

#[test]
fn layers_only_point_down_and_tasks_stand_alone() {
    let found = violations(&files());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_layer_check_catches_an_upward_and_a_sideways_reference() {
    let fake = vec![
        ("plan.rs".to_string(), "use crate::exec::apply;".to_string()),
        (
            "tasks/rollback.rs".to_string(),
            "use crate::tasks::deploy::gate;\nuse crate::rollout::gate;".to_string(),
        ),
        (
            "engine/swarm.rs".to_string(),
            "crate::engine::x; crate::cmd::run".to_string(),
        ),
    ];
    let v = violations(&fake);
    assert_eq!(
        v,
        vec![
            "plan.rs:1: `plan` (layer 4) names `crate::exec` (layer 5)".to_string(),
            "tasks/rollback.rs:1: `tasks::rollback` (layer 9) names `crate::tasks::deploy` (layer 9)"
                .to_string(),
        ],
        "{v:?}"
    );
}

#[test]
fn every_module_has_a_layer() {
    let mut modules: BTreeMap<String, ()> = BTreeMap::new();
    for (path, _) in files() {
        modules.insert(module_of(&path), ());
    }
    let missing: Vec<_> = modules.keys().filter(|m| layer(m).is_none()).collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}
