//! Deploy history, derived from the chain: the one source of truth. There is
//! no second deployment log that could disagree with it.

use anyhow::{bail, Result};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::Record;

/// Actions that change what runs.
pub const RUN_CHANGING: [&str; 3] = ["deploy", "rollback", "promote"];

/// The records of one environment, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub records: Vec<Record>,
}

fn to_tag(r: &Record) -> Option<&str> {
    r.to.as_ref().map(|t| t.tag.as_str())
}

impl History {
    pub fn new(records: Vec<Record>) -> History {
        History { records }
    }

    /// Run-changing records (deploy, rollback, promote) of every outcome, oldest first.
    pub fn attempts(&self) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(|r| RUN_CHANGING.contains(&r.action.as_str()))
    }

    /// Successful run-changing records, oldest first.
    pub fn deployments(&self) -> impl Iterator<Item = &Record> {
        self.attempts().filter(|r| r.outcome == "success")
    }

    /// The tag running now: the target of the last successful deploy, promote or rollback.
    pub fn current(&self) -> Option<&str> {
        self.deployments().last().and_then(to_tag)
    }

    /// The versions that could still be rolled back to, oldest first; the
    /// last is the current one. The rule (docs/audit-log.md, "History"):
    /// a successful deploy or promote of X moves X to the top (removing an
    /// older entry of X); a successful rollback to X drops the version rolled
    /// back from (the top) and every version above X's entry, since a
    /// rollback undoes them; if X is not on the stack (a forced rollback to
    /// a tag rolled back from before) it is pushed.
    pub fn stack(&self) -> Vec<&str> {
        let mut st: Vec<&str> = Vec::new();
        for r in self.deployments() {
            let Some(x) = to_tag(r) else { continue };
            if r.action == "rollback" {
                st.pop();
                match st.iter().rposition(|t| *t == x) {
                    Some(i) => st.truncate(i + 1),
                    None => st.push(x),
                }
            } else {
                st.retain(|t| *t != x);
                st.push(x);
            }
        }
        st
    }

    /// The rollback target: the version below the current one on [`History::stack`].
    /// After a rollback from v2 to v1 this is what ran before v1, never v2.
    pub fn previous_good(&self) -> Option<&str> {
        let st = self.stack();
        st.len().checked_sub(2).map(|i| st[i])
    }

    /// Was `tag` ever deployed successfully here?
    pub fn deployed_ok(&self, tag: &str) -> bool {
        self.deployments().any(|r| to_tag(r) == Some(tag))
    }

    /// The image running now, per the chain: the `to` of the last successful
    /// deploy, promote or rollback, with its digest where it was recorded.
    pub fn current_ref(&self) -> Option<&super::ImageRef> {
        self.deployments().last().and_then(|r| r.to.as_ref())
    }

    /// The digest `tag` ran with here, per its last successful deploy,
    /// promote or rollback that recorded one: what a rollback to `tag` runs.
    pub fn digest_of(&self, tag: &str) -> Option<&str> {
        self.deployments()
            .filter_map(|r| r.to.as_ref())
            .filter(|t| t.tag == tag)
            .filter_map(|t| t.digest.as_deref())
            .last()
    }

    /// The image `tag` ran with here, per its last successful deploy,
    /// promote or rollback that recorded a digest: what a rollback to `tag`
    /// runs, per service where the record names several.
    pub fn ref_of(&self, tag: &str) -> Option<&super::ImageRef> {
        self.deployments()
            .filter_map(|r| r.to.as_ref())
            .filter(|t| {
                t.tag == tag && (t.digest.is_some() || !t.digests.is_empty() || !t.local.is_empty())
            })
            .last()
    }

    /// The images of `tag`'s successful deploys here, oldest first.
    pub fn deployed_refs(&self, tag: &str) -> Vec<&super::ImageRef> {
        self.deployments()
            .filter_map(|r| r.to.as_ref())
            .filter(|t| t.tag == tag)
            .collect()
    }

    /// Passing `action` records for `tag`, as their images.
    pub fn evidence_refs(&self, action: &str, tag: &str) -> Vec<&super::ImageRef> {
        self.records
            .iter()
            .filter(|r| r.action == action && r.outcome == "success")
            .filter_map(|r| r.to.as_ref())
            .filter(|t| t.tag == tag)
            .collect()
    }

    /// Is there a passing `action` record (e.g. security-modes-test) for `tag`?
    pub fn has_evidence(&self, action: &str, tag: &str) -> bool {
        self.records
            .iter()
            .any(|r| r.action == action && r.outcome == "success" && to_tag(r) == Some(tag))
    }
}

/// `--since`: an RFC 3339 time, or an age before `now` (`90m`, `2h`, `3d`, `1w`).
pub fn since(when: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(when, &Rfc3339) {
        return Ok(t);
    }
    let w = when.trim();
    let split = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    let (digits, unit) = w.split_at(split);
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    match digits.parse::<i64>() {
        Ok(n) if secs > 0 => n
            .checked_mul(secs)
            .and_then(|s| now.checked_sub(Duration::seconds(s)))
            .ok_or_else(|| anyhow::anyhow!("--since {when}: too far back")),
        _ => bail!(
            "invalid --since {when:?}: give an RFC 3339 time (2024-01-15T14:30:00Z) or an age (90m, 2h, 3d, 1w)"
        ),
    }
}

/// Is the record at or after `t`? A record whose time cannot be read is
/// kept: timestamps are informational, and hiding a record is worse.
pub fn at_or_after(r: &Record, t: OffsetDateTime) -> bool {
    OffsetDateTime::parse(&r.ts, &Rfc3339).map_or(true, |ts| ts >= t)
}

#[cfg(test)]
mod tests {
    use super::super::ImageRef;
    use super::*;

    fn rec(action: &str, outcome: &str, from: Option<&str>, to: &str) -> Record {
        Record {
            seq: 0,
            ts: String::new(),
            env: "staging".into(),
            action: action.into(),
            outcome: outcome.into(),
            from: from.map(|t| ImageRef::new(t, None)),
            to: Some(ImageRef::new(to, None)),
            git_sha: None,
            actor: String::new(),
            host: String::new(),
            reason: String::new(),
            error: None,
            set: None,
            duration_ms: 0,
            prev: String::new(),
        }
    }

    fn h(steps: &[(&str, &str, &str)]) -> History {
        History::new(steps.iter().map(|(a, o, t)| rec(a, o, None, t)).collect())
    }

    #[test]
    fn deploys_stack_up() {
        let hist = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("deploy", "success", "v3"),
        ]);
        assert_eq!(hist.current(), Some("v3"));
        assert_eq!(hist.previous_good(), Some("v2"));
        assert_eq!(h(&[("deploy", "success", "v1")]).previous_good(), None);
        assert_eq!(h(&[]).current(), None);
    }

    #[test]
    fn after_a_rollback_from_v2_to_v1_the_target_is_not_v2() {
        let hist = h(&[
            ("deploy", "success", "v0"),
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("rollback", "success", "v1"),
        ]);
        assert_eq!(hist.current(), Some("v1"));
        assert_eq!(hist.previous_good(), Some("v0"));
        // And again: nothing older than v0 is left.
        let mut again = hist.clone();
        again
            .records
            .push(rec("rollback", "success", Some("v1"), "v0"));
        assert_eq!(again.current(), Some("v0"));
        assert_eq!(again.previous_good(), None);
        // Only v1 and v2 ever ran: after rolling back from v2 there is no target.
        let two = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("rollback", "success", "v1"),
        ]);
        assert_eq!(two.previous_good(), None);
    }

    #[test]
    fn a_rollback_past_several_versions_undoes_them_all() {
        let hist = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("deploy", "success", "v3"),
            ("rollback", "success", "v1"),
        ]);
        assert_eq!(hist.stack(), vec!["v1"]);
        assert_eq!(hist.previous_good(), None);
    }

    #[test]
    fn failures_change_nothing_and_redeploys_move_to_the_top() {
        let hist = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("deploy", "rolled-back", "v3"),
            ("deploy", "failure", "v4"),
            ("rollback", "failure", "v1"),
            ("security-modes-test", "success", "v9"),
        ]);
        assert_eq!(hist.current(), Some("v2"));
        assert_eq!(hist.previous_good(), Some("v1"));
        let re = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("deploy", "success", "v1"),
        ]);
        assert_eq!(re.stack(), vec!["v2", "v1"]);
        assert_eq!(re.previous_good(), Some("v2"));
        // A new deploy after a rollback stacks on the version rolled back to.
        let after = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("rollback", "success", "v1"),
            ("deploy", "success", "v3"),
        ]);
        assert_eq!(after.previous_good(), Some("v1"));
        // A forced rollback to a version not on the stack is pushed.
        let forced = h(&[
            ("deploy", "success", "v1"),
            ("deploy", "success", "v2"),
            ("rollback", "success", "v1"),
            ("deploy", "success", "v3"),
            ("rollback", "success", "v2"),
        ]);
        assert_eq!(forced.stack(), vec!["v1", "v2"]);
        assert_eq!(forced.previous_good(), Some("v1"));
    }

    #[test]
    fn evidence_and_deployed_ok() {
        let hist = h(&[
            ("deploy", "success", "v1"),
            ("security-modes-test", "success", "v2"),
            ("deploy", "failure", "v3"),
        ]);
        assert!(hist.deployed_ok("v1"));
        assert!(!hist.deployed_ok("v3"));
        assert!(hist.has_evidence("security-modes-test", "v2"));
        assert!(!hist.has_evidence("backup-smoke", "v2"));
    }

    #[test]
    fn digests_come_from_the_records_that_name_them() {
        let at = |action: &str, tag: &str, d: Option<&str>| {
            let mut r = rec(action, "success", None, tag);
            r.to.as_mut().unwrap().digest = d.map(Into::into);
            r
        };
        let hist = History::new(vec![
            at("deploy", "v1", None),
            at("deploy", "v1", Some("sha256:a")),
            at("security-modes-test", "v1", Some("sha256:a")),
            at("deploy", "v2", Some("sha256:b")),
        ]);
        assert_eq!(hist.digest_of("v1"), Some("sha256:a"));
        assert_eq!(
            hist.ref_of("v1").unwrap().digest.as_deref(),
            Some("sha256:a")
        );
        assert_eq!(hist.deployed_refs("v1").len(), 2);
        assert_eq!(
            hist.current_ref().unwrap().digest.as_deref(),
            Some("sha256:b")
        );
        let ev = hist.evidence_refs("security-modes-test", "v1");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].digest.as_deref(), Some("sha256:a"));
        assert_eq!(hist.digest_of("v3"), None);
    }

    #[test]
    fn since_takes_a_time_or_an_age() {
        let now = OffsetDateTime::parse("2024-01-15T14:30:00Z", &Rfc3339).unwrap();
        let utc = time::UtcOffset::UTC;
        let ago = |w: &str| {
            since(w, now)
                .unwrap()
                .to_offset(utc)
                .format(&Rfc3339)
                .unwrap()
        };
        assert_eq!(ago("2h"), "2024-01-15T12:30:00Z");
        assert_eq!(ago("3d"), "2024-01-12T14:30:00Z");
        assert_eq!(ago("90m"), "2024-01-15T13:00:00Z");
        assert_eq!(ago("2024-01-01T00:00:00+01:00"), "2023-12-31T23:00:00Z");
        for bad in ["", "h", "2x", "-2h", "yesterday", "2024-01-01"] {
            let e = since(bad, now).unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{bad:?}: {e}");
        }
        let t = since("1h", now).unwrap();
        let at = |ts: &str| {
            let mut r = rec("deploy", "success", None, "v1");
            r.ts = ts.into();
            r
        };
        assert!(at_or_after(&at("2024-01-15T14:00:00.000001Z"), t));
        assert!(!at_or_after(&at("2024-01-15T13:00:00.000000Z"), t));
        assert!(
            at_or_after(&at("not a time"), t),
            "unreadable times are kept"
        );
    }
}
