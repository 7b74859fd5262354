//! The plan's audit record, written by the executor on every exit path:
//! the operator's reason and the tool's error kept apart, images with their
//! digests where the registry gave one.

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

pub(super) fn append(
    r: &RecordSpec,
    outcome: &str,
    err: Option<&anyhow::Error>,
    started: Instant,
) -> Result<String> {
    let entry = Entry {
        action: r.action.clone(),
        outcome: outcome.into(),
        from: r
            .from
            .clone()
            .map(|tag| image_ref(r.repository.as_deref(), tag)),
        to: r
            .to
            .clone()
            .map(|tag| image_ref(r.repository.as_deref(), tag)),
        git_sha: crate::repo::git_sha(),
        reason: one_line(&r.reason),
        error: err.map(|e| one_line(&format!("{e:#}"))),
        set: r.sets_of.as_ref().and_then(serving_set),
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

fn image_ref(repository: Option<&str>, tag: String) -> ImageRef {
    let digest = repository.and_then(|r| image_digest(&format!("{r}:{tag}")));
    ImageRef { tag, digest }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
