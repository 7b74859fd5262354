//! Helpers shared by the security-modes-test test binaries (included with
//! `#[path]`; on its own it is an empty test binary): policies written to
//! temp dirs from the shipped one, and readers of the JSON report.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn root() -> PathBuf {
    xtask::workspace_root()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The shipped policy with absolute paths, edited by `edit`, written to `dir`.
pub fn policy_in(dir: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let deployments = root().join("deployments");
    let text = std::fs::read_to_string(deployments.join("security-modes.toml")).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    let abs = |v: &mut toml::Value| {
        let p = deployments.join(v.as_str().unwrap());
        *v = toml::Value::String(p.display().to_string());
    };
    for (_, stack) in t["stack"].as_table_mut().unwrap().iter_mut() {
        // Stacks naming a deploy environment have no files of their own.
        if let Some(files) = stack.get_mut("compose_files") {
            files.as_array_mut().unwrap().iter_mut().for_each(abs);
        }
        if let Some(boot) = stack.get_mut("boot") {
            if let Some(tf) = boot.get_mut("token_file") {
                abs(tf);
            }
        }
    }
    for mode in t["mode"].as_array_mut().unwrap() {
        abs(&mut mode["overlay"]);
    }
    edit(&mut t);
    let path = dir.join("security-modes.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

pub fn fixture(name: &str) -> String {
    root()
        .join("xtask/tests/fixtures/insecure")
        .join(name)
        .display()
        .to_string()
}

/// stdout as exactly one JSON document (`--format json` prints no other),
/// and the report it carries.
pub fn one_document(o: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not exactly one JSON document ({e}):\n{}",
            text(o)
        )
    });
    assert_eq!(doc["task"], "security-modes-test", "{doc}");
    assert_eq!(doc["exit_code"], o.status.code().unwrap_or(-1), "{doc}");
    doc["report"].clone()
}

/// One failing finding: (rule, service, profiles, value).
pub type Found = (String, String, Vec<String>, String);

/// Every failing finding of a report, sorted.
pub fn found(r: &Value) -> Vec<Found> {
    let mut out: Vec<Found> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row["findings"].as_array().unwrap().iter().map(move |f| {
                let profiles = f["profiles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                (
                    row["check"].as_str().unwrap().to_string(),
                    f["service"].as_str().unwrap().to_string(),
                    profiles,
                    f["value"].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

pub fn f(rule: &str, service: &str, profiles: &[&str], value: &str) -> Found {
    (
        rule.into(),
        service.into(),
        profiles.iter().map(|p| p.to_string()).collect(),
        value.into(),
    )
}

/// A file of `xtask/tests/fixtures/compose/`.
pub fn compose_fixture(name: &str) -> String {
    root()
        .join("xtask/tests/fixtures/compose")
        .join(name)
        .display()
        .to_string()
}

/// Points `mode`'s overlay at `path`.
pub fn set_overlay(t: &mut toml::Table, mode: &str, path: &str) {
    let modes = t["mode"].as_array_mut().unwrap();
    let m = modes
        .iter_mut()
        .find(|m| m["name"].as_str() == Some(mode))
        .unwrap();
    m["overlay"] = toml::Value::String(path.into());
}

/// The report of a `--format json` run (its one document's `report`).
pub fn report(o: &Output) -> Value {
    one_document(o)
}

/// The testbed's row of `mode`, `phase` and `check`.
pub fn row<'a>(r: &'a Value, mode: &str, phase: &str, check: &str) -> &'a Value {
    row_of(r, "testbed", mode, phase, check)
}

/// The row of `stack`, `mode`, `phase` and `check`.
pub fn row_of<'a>(r: &'a Value, stack: &str, mode: &str, phase: &str, check: &str) -> &'a Value {
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["stack"] == stack && x["mode"] == mode && x["phase"] == phase && x["check"] == check
        })
        .unwrap_or_else(|| panic!("no {stack} {mode} {phase} row for {check} in {r}"))
}

/// Drops the stacks that name a deploy environment (tests about the testbed alone).
pub fn testbed_only(t: &mut toml::Table) {
    t["stack"]
        .as_table_mut()
        .unwrap()
        .retain(|_, s| s.get("env").is_none());
}

/// The findings of a row for `service`, as "value" strings.
pub fn findings(row: &Value, service: &str) -> Vec<String> {
    row["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["service"] == service)
        .map(|f| f["value"].as_str().unwrap().to_string())
        .collect()
}
