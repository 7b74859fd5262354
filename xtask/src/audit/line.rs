//! The familiar one-line form of a record, for people:
//! `2024-01-15T14:30:00Z | rollback | success | from=sha-abc123 | to=sha-def456 | actor=deploy-user | reason=health-check-failure`.
//!
//! Every value is escaped so that no stored text can forge a field or a line:
//! `\` becomes `\\`, `|` becomes `\|`, and any character that is not
//! printable (controls, line and paragraph separators, bidi overrides,
//! zero-width and other format characters) becomes `\u{hex}`. A field
//! separator is therefore always an unescaped ` | `.

use super::{ImageRef, Record};

/// Escapes one value of the line form.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            ' ' | '\'' | '"' => out.push(c),
            // std's printable table: escape_debug leaves a printable
            // character alone and escapes the rest.
            c if c.escape_debug().len() == 1 => out.push(c),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    out
}

/// `2024-01-15T14:30:00.123456Z` shown as `2024-01-15T14:30:00Z`.
pub fn ts_seconds(ts: &str) -> String {
    let b = ts.as_bytes();
    if b.len() > 20
        && b[19] == b'.'
        && ts.ends_with('Z')
        && b[20..b.len() - 1].iter().all(u8::is_ascii_digit)
    {
        format!("{}Z", &ts[..19])
    } else {
        escape(ts)
    }
}

pub(super) fn image(r: &Option<ImageRef>) -> String {
    r.as_ref()
        .map_or_else(|| "-".to_string(), |i| escape(&shown(i)))
}

/// `tag@sha256:<12 hex>`: a version as status and history show it (the tag
/// alone where no digest was recorded). Two images under one tag differ here.
/// Services whose digests differ (several repositories) are each shown:
/// `tag[api@sha256:<12 hex>,worker@sha256:<12 hex>]`.
pub fn shown(i: &ImageRef) -> String {
    let short = |d: &str| {
        let h = d.strip_prefix("sha256:").unwrap_or(d);
        format!("sha256:{}", &h[..h.len().min(12)])
    };
    // Per service; an image only this host has by its ID (`local:`).
    let mut each: std::collections::BTreeMap<&str, String> = i
        .local
        .iter()
        .map(|(s, id)| (s.as_str(), format!("local:{}", short(id))))
        .collect();
    each.extend(i.digests.iter().map(|(s, d)| (s.as_str(), short(d))));
    let mut all = each.values();
    let one = all.next().filter(|d| all.all(|o| o == *d));
    match (&i.digest, each.is_empty(), one) {
        (_, false, None) => format!(
            "{}[{}]",
            i.tag,
            each.iter()
                .map(|(s, d)| format!("{s}@{d}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        (_, false, Some(d)) => format!("{}@{d}", i.tag),
        (Some(d), true, _) => format!("{}@{}", i.tag, short(d)),
        (None, true, _) => i.tag.clone(),
    }
}

/// ` | set=green`: the set serving after a blue/green record; nothing otherwise.
pub(super) fn set(r: &Record) -> String {
    r.set
        .as_ref()
        .map_or_else(String::new, |s| format!(" | set={}", escape(s)))
}

/// The line form of `r`.
pub fn line_form(r: &Record) -> String {
    line_form_with(r, usize::MAX).0
}

/// The line form of `r` with its escaped reason (and error) cut to `max` characters
/// (ending in `…`); true if it was cut.
pub fn line_form_with(r: &Record, max: usize) -> (String, bool) {
    // The tool's error follows the operator's reason; both are cut together.
    let reason = match &r.error {
        Some(e) => format!("{} | error={}", escape(&r.reason), escape(e)),
        None => escape(&r.reason),
    };
    let cut = reason.chars().count() > max;
    let reason = if cut {
        let mut s: String = reason.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    } else {
        reason
    };
    let line = format!(
        "{} | {} | {} | from={} | to={}{} | actor={} | reason={reason}",
        ts_seconds(&r.ts),
        escape(&r.action),
        escape(&r.outcome),
        image(&r.from),
        image(&r.to),
        set(r),
        escape(&r.actor),
    );
    (line, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_shows_each_services_digest_where_they_differ() {
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let mut i = ImageRef::new("t", Some(a.clone()));
        assert_eq!(shown(&i), "t@sha256:aaaaaaaaaaaa");
        i.digests = [("api", &a), ("worker", &a)]
            .map(|(s, d)| (s.to_string(), d.clone()))
            .into();
        assert_eq!(shown(&i), "t@sha256:aaaaaaaaaaaa");
        i.digests.insert("worker".into(), b.clone());
        assert_eq!(
            shown(&i),
            "t[api@sha256:aaaaaaaaaaaa,worker@sha256:bbbbbbbbbbbb]"
        );
        let local = ImageRef {
            local: [("api".to_string(), b)].into(),
            ..ImageRef::new("t", None)
        };
        assert_eq!(shown(&local), "t@local:sha256:bbbbbbbbbbbb");
    }

    fn rec(reason: &str) -> Record {
        Record {
            seq: 1,
            ts: "2024-01-15T14:30:00.123456Z".into(),
            env: "staging".into(),
            action: "rollback".into(),
            outcome: "success".into(),
            from: Some(ImageRef::new("sha-abc123", Some("sha256:00".into()))),
            to: Some(ImageRef::new("sha-def456", None)),
            git_sha: None,
            actor: "deploy-user".into(),
            host: "h".into(),
            reason: reason.into(),
            error: None,
            set: None,
            duration_ms: 1,
            prev: String::new(),
        }
    }

    #[test]
    fn the_familiar_form() {
        assert_eq!(
            line_form(&rec("health-check-failure")),
            "2024-01-15T14:30:00Z | rollback | success | from=sha-abc123@sha256:00 | to=sha-def456 | actor=deploy-user | reason=health-check-failure"
        );
    }

    #[test]
    fn a_reason_cannot_forge_fields_or_lines() {
        let evil =
            "x | actor=root | reason=ok\n2024-01-01T00:00:00Z | deploy | success\u{2028}\u{202e}\\";
        let l = line_form(&rec(evil));
        assert!(
            !l.contains('\n') && !l.contains('\u{2028}') && !l.contains('\u{202e}'),
            "{l}"
        );
        assert!(l.ends_with(
            "reason=x \\| actor=root \\| reason=ok\\u{a}2024-01-01T00:00:00Z \\| deploy \\| success\\u{2028}\\u{202e}\\\\"
        ));
        // Exactly seven fields when split on unescaped pipes.
        let mut fields = 1;
        let mut esc = false;
        for c in l.chars() {
            match (esc, c) {
                (false, '\\') => esc = true,
                (false, '|') => fields += 1,
                _ => esc = false,
            }
        }
        assert_eq!(fields, 7, "{l}");
        assert_eq!(
            escape("rückgängig ✓ 'q' \"dq\" $(id)"),
            "rückgängig ✓ 'q' \"dq\" $(id)"
        );
    }
}
