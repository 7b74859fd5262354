//! The plan's audit record, written by the executor on every exit path:
//! the operator's reason and the tool's error kept apart, images with their
//! digests as planned (what ran or was tested), else the local store's.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;

use crate::audit::{Entry, ImageRef, Log};
use crate::engine::docker::image_digest;
use crate::plan::RecordSpec;

pub(super) fn log_of(r: &RecordSpec) -> Log {
    Log {
        env: r.env.clone(),
        path: r.log.clone(),
        sink: r.sink.clone(),
    }
}

/// The most bytes `r`'s record can take (reserved before the first step).
pub(super) fn bound(r: &RecordSpec) -> u64 {
    crate::audit::record_bound(&r.reason, &[r.from.as_deref(), r.to.as_deref()])
}

pub(super) fn append(
    r: &RecordSpec,
    outcome: &str,
    err: Option<&anyhow::Error>,
    started: Instant,
) -> Result<String> {
    // The look-ups are independent and each asks a process or the proxy:
    // asked side by side, the record waits for the slowest alone.
    let image = |tag: &Option<String>,
                 planned: &Option<String>,
                 each: &BTreeMap<String, String>,
                 local: &BTreeMap<String, String>| {
        let (tag, planned, each, local) =
            (tag.clone(), planned.clone(), each.clone(), local.clone());
        // An image known by its local ID has no digest to look up.
        let known = !local.is_empty();
        move || {
            tag.map(|t| ImageRef {
                digests: each,
                local,
                ..match known {
                    true => ImageRef::new(t, planned),
                    false => image_ref(r.repository.as_deref(), t, planned),
                }
            })
        }
    };
    let none = BTreeMap::new();
    let (from, to, git_sha, set) = std::thread::scope(|s| {
        let from = s.spawn(image(&r.from, &r.from_digest, &r.from_digests, &none));
        let to = s.spawn(image(&r.to, &r.to_digest, &r.to_digests, &r.to_local));
        let set = s.spawn(|| r.sets_of.as_ref().and_then(serving_set));
        let git_sha = crate::repo::git_sha();
        let join = |h: std::thread::ScopedJoinHandle<'_, Option<ImageRef>>| h.join().ok().flatten();
        (join(from), join(to), git_sha, set.join().ok().flatten())
    });
    let entry = Entry {
        action: r.action.clone(),
        outcome: outcome.into(),
        from,
        to,
        git_sha,
        reason: one_line(&r.reason),
        // Bounded, so the room reserved before the first step is enough.
        error: err.map(|e| crate::audit::bounded_error(&one_line(&format!("{e:#}")))),
        set,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    log_of(r).append(entry, r.force)
}

/// The set the proxy sends traffic to as the record is written; a
/// look-up that fails leaves the field out rather than the record.
fn serving_set(t: &crate::engine::Target) -> Option<String> {
    let containers = t.containers().ok()?;
    t.live_slot(&containers)
        .ok()
        .flatten()
        .map(|s| s.name().to_string())
}

/// The planned digest is the one that ran (or was tested); only a record
/// planned without one asks the local image store, as records did before.
fn image_ref(repository: Option<&str>, tag: String, planned: Option<String>) -> ImageRef {
    let digest = planned.or_else(|| repository.and_then(|r| image_digest(&format!("{r}:{tag}"))));
    ImageRef::new(tag, digest)
}

/// Tells the record's webhook, if it has one, of the record just
/// appended (read back as written) and the new head. A notification that
/// was not delivered changes nothing about the outcome: it is a warning,
/// a line in the state directory, and `notify` in the JSON document.
pub(super) fn notify(task: &str, r: &RecordSpec, outcome: &str, exit_code: i32, head: &str) {
    let Some(hook) = &r.notify else { return };
    let record = log_of(r)
        .lines()
        .ok()
        .and_then(|l| l.into_iter().last())
        .and_then(|l| l.ok())
        .and_then(|rec| serde_json::to_value(rec).ok())
        .unwrap_or(serde_json::Value::Null);
    let payload = serde_json::json!({
        "kind": "fetchml-xtask.notify/1",
        "task": task,
        "env": r.env,
        "action": r.action,
        "outcome": outcome,
        "exit_code": exit_code,
        "record": record,
        "head": head,
    });
    let started = Instant::now();
    let sent = hook.post(&payload);
    let took_ms = started.elapsed().as_millis() as u64;
    let failed = match sent {
        Ok(attempts) => {
            crate::out::set(
                "notify",
                serde_json::json!({ "sent": true, "attempts": attempts, "url_env": hook.url_env }),
            );
            return;
        }
        Err(f) => f,
    };
    let dir = r.log.parent().unwrap_or(std::path::Path::new("."));
    let note = serde_json::json!({
        "ts": crate::audit::now_rfc3339(),
        "env": r.env,
        "task": task,
        "action": r.action,
        "outcome": outcome,
        "head": head,
        "url_env": hook.url_env,
        "attempts": failed.attempts,
        "took_ms": took_ms,
        "error": failed.error,
    });
    let noted = match crate::notify::note_failure(dir, &note) {
        Ok(p) => format!("noted in {}", p.display()),
        Err(e) => format!("and it could not be noted in {}: {e}", dir.display()),
    };
    eprintln!(
        "warning: notify: the webhook in ${} was not told ({} attempt(s), {took_ms} ms): {}; the {} stands as recorded; {noted}",
        hook.url_env, failed.attempts, failed.error, r.action
    );
    crate::out::set(
        "notify",
        serde_json::json!({
            "sent": false,
            "attempts": failed.attempts,
            "url_env": hook.url_env,
            "error": failed.error,
        }),
    );
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
