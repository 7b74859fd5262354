//! The one JSON document that `--format json` prints on stdout, on every
//! exit path of every task: success, refusal, failure, a dry run, a bad
//! argument. Common fields first (`task, env, outcome, exit_code, from, to,
//! error, audit_head`), then the task's own data. The schema is
//! docs/output.schema.json.
//!
//! Tasks hand their data to [`merge`] instead of printing JSON; the executor
//! and `Ctx` fill in the common fields; `main` prints the document once, at
//! the very end, with the exit code it is about to return. In text mode
//! nothing here prints.

use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};

struct Doc {
    json: bool,
    fields: Map<String, Value>,
}

static DOC: Mutex<Option<Doc>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Doc) -> T) -> Option<T> {
    let mut g = DOC.lock().unwrap_or_else(|p| p.into_inner());
    g.as_mut().map(f)
}

/// Starts the document of `task`; `json` is whether `--format json` is on.
pub fn begin(task: &str, json: bool) {
    let mut fields = Map::new();
    for k in [
        "task",
        "env",
        "outcome",
        "exit_code",
        "from",
        "to",
        "error",
        "audit_head",
    ] {
        fields.insert(k.into(), Value::Null);
    }
    fields.insert("task".into(), Value::String(task.into()));
    *DOC.lock().unwrap_or_else(|p| p.into_inner()) = Some(Doc { json, fields });
}

/// Is the document being collected (`--format json`)?
pub fn json() -> bool {
    with(|d| d.json).unwrap_or(false)
}

/// Sets one common field (`env`, `outcome`, `from`, `to`, `audit_head`).
pub fn set(key: &str, value: impl Into<Value>) {
    let v = value.into();
    with(|d| {
        d.fields.insert(key.into(), v);
    });
}

/// Merges a task's own data (an object's fields) into the document. A
/// common field keeps the value the task gives it only while it is unset.
pub fn merge(data: Value) {
    with(|d| match data {
        Value::Object(m) => {
            for (k, v) in m {
                let common = matches!(
                    k.as_str(),
                    "task" | "outcome" | "exit_code" | "error" | "audit_head"
                );
                if !common || d.fields.get(&k).is_none_or(Value::is_null) {
                    d.fields.insert(k, v);
                }
            }
        }
        other => {
            d.fields.insert("data".into(), other);
        }
    });
}

/// The document as it would print with `exit_code` and `error`.
pub fn document(exit_code: i32, error: Option<&str>) -> Value {
    with(|d| {
        let mut f = d.fields.clone();
        f.insert("exit_code".into(), exit_code.into());
        if let Some(e) = error {
            f.insert("error".into(), Value::String(e.into()));
        }
        if f.get("outcome").is_none_or(Value::is_null) {
            let outcome = if exit_code == 0 { "success" } else { "error" };
            f.insert("outcome".into(), outcome.into());
        }
        Value::Object(f)
    })
    .unwrap_or(Value::Null)
}

/// Prints the document (JSON mode only): the last thing on stdout.
pub fn finish(exit_code: i32, error: Option<&str>) {
    if !json() {
        return;
    }
    let mut doc = document(exit_code, error);
    crate::cmd::redact::redact_json(&mut doc);
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "null".into())
    );
}

/// Writes `args` on stderr (`err`) or stdout, dropping a failed write: a
/// closed pipe (the reader stopped early) must not stop the task. The
/// crate's `println!`, `print!`, `eprintln!` and `eprint!` come here.
pub fn write(err: bool, args: std::fmt::Arguments) {
    let _ = if err {
        std::io::stderr().lock().write_fmt(args)
    } else {
        std::io::stdout().lock().write_fmt(args)
    };
}

/// [`write`], then a newline, in one write (lines of two threads do not mix).
pub fn line(err: bool, args: std::fmt::Arguments) {
    let mut s = args.to_string();
    s.push('\n');
    write(err, format_args!("{s}"));
}
