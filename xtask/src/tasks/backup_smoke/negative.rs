//! Negative controls: each one damages a scratch copy of the restored
//! database in one way a real incident (or an attacker) could, and the
//! smoke passes only if the verifiers notice and name it. They prove, on
//! every run and on the very data that was restored, that the checks are
//! not vacuous: a smoke that cannot fail proves nothing.

use serde::Serialize;

use crate::flags::Profile;

/// One way to damage a chain.
#[derive(Debug, Clone, Serialize)]
pub struct Tamper {
    pub name: &'static str,
    /// What is done, in words (named in the report).
    pub what: String,
    /// SQL run in the scratch copy, after its guard triggers are disabled.
    #[serde(skip)]
    pub sql: Vec<String>,
    /// Must the checks catch it? (false only where the profile's canonical form cannot.)
    pub expect_detected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_undetectable: Option<&'static str>,
}

/// The rows a tamper refers to, by chain position.
pub use super::verify::{Landmarks, Mark as ChainRow};

/// How the report names a row: by seq where the profile has one.
fn label(r: &ChainRow) -> String {
    match r.seq {
        Some(s) => format!("seq {s} (id {})", r.id),
        None => format!("id {}", r.id),
    }
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether a restored chain's landmarks are enough for [`controls`].
pub fn enough(lm: &Landmarks) -> bool {
    lm.first.is_some() && lm.middle.len() >= 2 && lm.last.len() == 3 && lm.n >= 6
}

/// The controls for `profile` on a restored chain, given by the rows they
/// need (see [`enough`]): the oldest, the middle (from position n/2 - 1),
/// and the three newest.
pub fn controls(profile: Profile, lm: &Landmarks) -> Vec<Tamper> {
    let first = lm.first.as_ref().expect("checked by enough()");
    let mid = &lm.middle[1];
    let id = |r: &ChainRow| q(&r.id);
    // Neighbours with different timestamps (swapping equal ones changes nothing in certctl).
    let k = (0..lm.middle.len() - 1)
        .find(|&k| lm.middle[k].ts_micros != lm.middle[k + 1].ts_micros)
        .unwrap_or(0);
    let (a, b) = (&lm.middle[k], &lm.middle[k + 1]);
    let kept = &lm.last[0];
    let chain = &lm.last;
    let n = chain.len();
    let t = |name, what: String, sql: Vec<String>| Tamper {
        name,
        what,
        sql,
        expect_detected: true,
        why_undetectable: None,
    };
    let head_to = |r: &ChainRow| match profile {
        Profile::Default => format!(
            "UPDATE audit_chain_head SET seq = {}, row_hash = {} WHERE id = 1",
            r.seq.unwrap_or_default(),
            q(&r.row_hash)
        ),
        Profile::Certctl => format!(
            "UPDATE audit_chain_head SET row_hash = {} WHERE id = 1",
            q(&r.row_hash)
        ),
    };
    let newest: Vec<String> = chain[n - 2..].iter().map(id).collect();
    let mut v = vec![
        t(
            "modify-row",
            format!("change the actor of the row at {}", label(mid)),
            vec![format!("UPDATE audit_events SET actor = actor || ' (edited)' WHERE id = {}", id(mid))],
        ),
        t(
            "delete-middle-row",
            format!("delete the row at {} from the middle of the chain", label(mid)),
            vec![format!("DELETE FROM audit_events WHERE id = {}", id(mid))],
        ),
        t(
            "delete-oldest-row",
            format!("delete the oldest row, at {}", label(first)),
            vec![format!("DELETE FROM audit_events WHERE id = {}", id(first))],
        ),
        t(
            "delete-newest-rows",
            format!("delete the two newest rows, at {} and {}", label(&chain[n - 2]), label(&chain[n - 1])),
            vec![format!("DELETE FROM audit_events WHERE id IN ({})", newest.join(", "))],
        ),
        match profile {
            Profile::Default => t(
                "swap-order",
                format!("swap the seq of the rows at {} and {}", label(a), label(b)),
                vec![
                    format!("UPDATE audit_events SET seq = -1 WHERE id = {}", id(a)),
                    format!("UPDATE audit_events SET seq = {} WHERE id = {}", a.seq.unwrap_or_default(), id(b)),
                    format!("UPDATE audit_events SET seq = {} WHERE id = {}", b.seq.unwrap_or_default(), id(a)),
                ],
            ),
            Profile::Certctl => t(
                "swap-order",
                format!("swap the timestamps (the published order) of the rows at {} and {}", label(a), label(b)),
                vec![format!(
                    "UPDATE audit_events e SET \"timestamp\" = o.\"timestamp\" FROM audit_events o \
                     WHERE (e.id, o.id) IN (({0}, {1}), ({1}, {0}))",
                    id(a),
                    id(b)
                )],
            ),
        },
        t("truncate", "TRUNCATE audit_events (the head row is left as it was)".into(), vec!["TRUNCATE audit_events".into()]),
        t(
            "roll-back-head",
            format!("set the head back to the row at {}, leaving the newer rows in place", label(kept)),
            vec![head_to(kept)],
        ),
        t(
            "cut-tail-and-head",
            format!("delete the two newest rows and move the head back to the row at {} to match: a consistent rewrite only the outside manifest can catch", label(kept)),
            vec![format!("DELETE FROM audit_events WHERE id IN ({})", newest.join(", ")), head_to(&chain[n - 3])],
        ),
    ];
    let mut sep = t(
        "move-separator",
        "move the '|' between actor and actor_type of the first row whose actor holds one ('a|b','c' becomes 'a','b|c')".into(),
        vec!["UPDATE audit_events SET actor = split_part(actor, '|', 1), \
              actor_type = substr(actor, strpos(actor, '|') + 1) || '|' || actor_type \
              WHERE id = (SELECT id FROM audit_events WHERE strpos(actor, '|') > 0 ORDER BY id LIMIT 1)"
            .into()],
    );
    if profile == Profile::Certctl {
        sep.expect_detected = false;
        sep.why_undetectable = Some(
            "the published form joins fields with a bare '|', so 'a|b','c' and 'a','b|c' hash alike: only a length-prefixed form (the default profile) can tell them apart",
        );
    }
    v.push(sep);
    // Disable the triggers of the copy first: the guards (ours, or certctl's
    // WORM trigger, which refuses UPDATE and DELETE) would rightly refuse
    // every one of these. Only this scratch copy loses them.
    for c in &mut v {
        c.sql.insert(
            0,
            "ALTER TABLE audit_chain_head DISABLE TRIGGER USER".into(),
        );
        c.sql
            .insert(0, "ALTER TABLE audit_events DISABLE TRIGGER USER".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Landmarks {
        let rows: Vec<ChainRow> = (1..=n)
            .map(|s| ChainRow {
                id: s.to_string(),
                seq: Some(s),
                ts_micros: s / 2,
                row_hash: format!("{s:064x}"),
            })
            .collect();
        let at = Landmarks::middle_for(n as u64) as usize;
        Landmarks {
            n: n as u64,
            first: rows.first().cloned(),
            middle_at: at as u64,
            middle: rows[at..].iter().take(64).cloned().collect(),
            last: rows[rows.len() - 3..].to_vec(),
            ..Landmarks::default()
        }
    }

    #[test]
    fn every_control_is_expected_to_be_caught_in_the_default_profile() {
        let c = controls(Profile::Default, &chain(24));
        let names: Vec<&str> = c.iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "modify-row",
                "delete-middle-row",
                "delete-oldest-row",
                "delete-newest-rows",
                "swap-order",
                "truncate",
                "roll-back-head",
                "cut-tail-and-head",
                "move-separator"
            ]
        );
        assert!(c.iter().all(|t| t.expect_detected));
        assert!(
            c[3].sql.last().unwrap().ends_with("IN ('23', '24')"),
            "{:?}",
            c[3].sql
        );
        let certctl = controls(Profile::Certctl, &chain(8));
        assert!(
            !certctl
                .iter()
                .find(|t| t.name == "move-separator")
                .unwrap()
                .expect_detected
        );
    }
}
