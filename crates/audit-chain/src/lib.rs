//! The audit chain's record format and its walk: the canonical scanner, the
//! streaming verifier and the diagnosis of a break.
//!
//! A crate of its own so that it is compiled optimized even in the dev
//! build that `cargo xtask` runs (`[profile.dev.package.audit-chain]` in the
//! workspace manifest): verifying a million-record chain is bound by this
//! code and SHA-256, and at opt-level 0 it ran at 2.4x the time of
//! `sha256sum` over the same file. The xtask crate itself stays cheap to build.

pub mod chain;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An image reference in a record: the tag, and the digest where known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub tag: String,
    /// The first app service's digest (every service's, when they share
    /// one repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Per app service, when the services' images are in several
    /// repositories (so one tag names several digests); absent otherwise
    /// and in older records, which read and verify as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
    /// Per app service, the image ID of an image this host had and that no
    /// registry digest names (built here, never pushed; `pull = "missing"`
    /// or `"never"`); absent otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub local: BTreeMap<String, String>,
}

impl ImageRef {
    /// The tag with one digest (or none), as every record before
    /// per-service digests had it.
    pub fn new(tag: impl Into<String>, digest: Option<String>) -> ImageRef {
        ImageRef {
            tag: tag.into(),
            digest,
            digests: BTreeMap::new(),
            local: BTreeMap::new(),
        }
    }
}

/// One record, fields in their fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub ts: String,
    pub env: String,
    pub action: String,
    pub outcome: String,
    pub from: Option<ImageRef>,
    pub to: Option<ImageRef>,
    pub git_sha: Option<String>,
    pub actor: String,
    pub host: String,
    /// The operator's words (`--reason`), verbatim.
    pub reason: String,
    /// The tool's own account of what went wrong, kept apart from the
    /// operator's reason; absent on success and in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Blue/green: the set of containers (`blue`, `green`) serving when the
    /// record was written; absent for in-place stacks and older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    pub duration_ms: u64,
    pub prev: String,
}
