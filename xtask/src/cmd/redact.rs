//! The run's secret values, and the one function that takes them out of
//! text before it leaves the process or enters a record.
//!
//! Every value the tool hands a command as a secret (a `${NAME}` config var
//! read from the environment, `PGPASSWORD`, ...) is registered here when
//! it is read. [`redact`] replaces each occurrence with `***`; it is
//! applied where text leaves the process (the error line, the JSON
//! document, progress and plan lines, a command's failure message and its
//! echoed output) and where audit records are built, so a child that
//! prints its environment, or an error that quotes a value, carries none.

use std::sync::Mutex;

/// Shorter values are hidden where they are shown as values (`NAME='***'`)
/// but not searched for in free text, where they would blank out words.
pub const MIN_LEN: usize = 4;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn secrets() -> std::sync::MutexGuard<'static, Vec<String>> {
    SECRETS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers `value` as a secret of this run.
pub fn register(value: &str) {
    if value.chars().count() < MIN_LEN {
        return;
    }
    let mut s = secrets();
    if !s.iter().any(|v| v == value) {
        s.push(value.to_string());
        // Longest first, so a secret that contains another goes whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let s = secrets();
    let mut out = text.to_string();
    for v in s.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "***");
        }
    }
    out
}

/// [`redact`] on every string of a JSON value, keys included.
pub fn redact_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    if secrets().is_empty() {
        return;
    }
    match v {
        Value::String(s) => *s = redact(s),
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        Value::Object(o) => {
            let old = std::mem::take(o);
            for (k, mut val) in old {
                redact_json(&mut val);
                o.insert(redact(&k), val);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_leave_text_and_json() {
        register("zq-redact-test-9f3");
        register("zq-redact-test-9f3-longer");
        register("abc");
        assert_eq!(
            redact("a zq-redact-test-9f3-longer and zq-redact-test-9f3, abc"),
            "a *** and ***, abc"
        );
        let mut j = serde_json::json!({"e": ["x zq-redact-test-9f3"], "zq-redact-test-9f3": 1});
        redact_json(&mut j);
        assert_eq!(j, serde_json::json!({"e": ["x ***"], "***": 1}));
    }
}
