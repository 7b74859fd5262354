//! Text for a terminal: records fitted to a width (`status`), numbered
//! with the break of a chain marked (`audit show`), and the column
//! arithmetic both need.

use super::line::{escape, image, line_form, line_form_with, ts_seconds};
use super::{Break, Record};

/// `r` for a terminal `width` columns wide, after `label`: one line where
/// it fits, else the head, the images and actor, and the reason on lines of
/// their own, each cut to `width` with `…`. True if anything was cut.
pub fn fitted(label: &str, r: &Record, width: usize) -> (Vec<String>, bool) {
    let one = format!("{label}{}", line_form(r));
    if fit(&one, width) == one {
        return (vec![one], false);
    }
    let lines = [
        format!(
            "{label}{} | {} | {}",
            ts_seconds(&r.ts),
            escape(&r.action),
            escape(&r.outcome)
        ),
        format!(
            "  from={} | to={}{} | actor={}",
            image(&r.from),
            image(&r.to),
            super::line::set(r),
            escape(&r.actor)
        ),
        format!("  reason={}", escape(&r.reason)),
    ];
    let out: Vec<String> = lines.iter().map(|l| fit(l, width)).collect();
    let cut = out.iter().zip(&lines).any(|(a, b)| a != b);
    (out, cut)
}

/// `audit show`'s lines: each line of the log with its number, from the
/// `skip`th on. Where the chain breaks (`brk`), the bad line is marked `!`
/// and followed by a `^` line saying why; every line after it is marked `?`
/// (unverified: the chain no longer vouches for it). A line that is not a
/// record is shown as `??` and its text, shortened. Reasons are cut to
/// `max_reason` characters; the flag is true if any was.
pub fn numbered(
    lines: &[Result<Record, String>],
    brk: Option<&Break>,
    skip: usize,
    max_reason: usize,
) -> (Vec<String>, bool) {
    let width = lines.len().to_string().len();
    let bad = brk.map_or(u64::MAX, |b| b.line);
    let mut out = Vec::new();
    let mut cut = false;
    if let Some(b) = brk.filter(|b| b.line <= skip as u64) {
        out.push(format!(
            "(the chain breaks at line {}, before these: every line below is unverified)",
            b.line
        ));
    }
    for (i, l) in lines.iter().enumerate().skip(skip) {
        let n = i as u64 + 1;
        let mark = match n.cmp(&bad) {
            std::cmp::Ordering::Less => ' ',
            std::cmp::Ordering::Equal => '!',
            std::cmp::Ordering::Greater => '?',
        };
        let body = match l {
            Ok(r) => {
                let (form, c) = line_form_with(r, max_reason);
                cut |= c;
                form
            }
            Err(text) => format!("?? not a record: {}", fit(&escape(text), 80)),
        };
        out.push(format!("{n:>width$}{mark} {body}"));
        if let Some(b) = brk.filter(|_| n == bad) {
            out.push(format!(
                "{:width$}  ^ the chain breaks here: {b}; the lines after it are unverified",
                ""
            ));
        }
    }
    (out, cut)
}

/// Terminal columns of `c`: 2 for East Asian wide characters and emoji, 0
/// for combining marks and zero-width characters, else 1. (Close enough for
/// fitting lines; the escaped line form has no controls.)
pub fn columns(c: char) -> usize {
    match c as u32 {
        0x0300..=0x036f | 0x200b..=0x200f | 0xfe00..=0xfe0f => 0,
        0x1100..=0x115f
        | 0x2e80..=0xa4cf
        | 0xac00..=0xd7a3
        | 0xf900..=0xfaff
        | 0xfe30..=0xfe4f
        | 0xff00..=0xff60
        | 0xffe0..=0xffe6
        | 0x1f300..=0x1f64f
        | 0x1f900..=0x1f9ff
        | 0x20000..=0x3fffd => 2,
        _ => 1,
    }
}

/// `s` cut to at most `max` terminal columns, ending in `…` when cut.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().map(columns).sum::<usize>() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = columns(c);
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::super::ImageRef;
    use super::*;

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
    fn show_numbers_lines_and_marks_the_break_and_what_follows() {
        let lines: Vec<Result<Record, String>> = (0..11)
            .map(|i| {
                if i == 2 {
                    Err("{\"not\": 1}".into())
                } else {
                    Ok(rec("r"))
                }
            })
            .collect();
        let (good, _) = numbered(&lines, None, 9, 200);
        assert_eq!(good.len(), 2);
        assert!(
            good[0].starts_with("10  2024-01-15T14:30:00Z | rollback"),
            "{good:?}"
        );
        let brk = Break {
            line: 3,
            kind: super::super::Kind::NotARecord,
            detail: "expected `{\"seq\":`".into(),
            offset: 0,
            tail_len: 0,
            lines: 11,
        };
        let (out, _) = numbered(&lines, Some(&brk), 0, 200);
        assert_eq!(out.len(), 12, "{out:?}");
        assert!(out[1].starts_with(" 2  2024"), "{}", out[1]);
        assert_eq!(out[2], " 3! ?? not a record: {\"not\": 1}");
        assert!(
            out[3].starts_with("    ^ the chain breaks here: line 3: not a record"),
            "{}",
            out[3]
        );
        assert!(
            out[4].starts_with(" 4? 2024") && out[11].starts_with("11? 2024"),
            "{out:?}"
        );
        // A window after the break says so first.
        let (late, _) = numbered(&lines, Some(&brk), 9, 200);
        assert!(
            late[0].contains("breaks at line 3") && late[1].starts_with("10? "),
            "{late:?}"
        );
        // Long reasons are cut unless asked for whole.
        let long = vec![Ok(rec(&"z".repeat(300)))];
        let (short, cut) = numbered(&long, None, 0, 200);
        assert!(cut && short[0].ends_with(&format!("reason={}…", "z".repeat(199))));
        let (whole, cut) = numbered(&long, None, 0, usize::MAX);
        assert!(!cut && whole[0].ends_with(&"z".repeat(300)));
    }

    #[test]
    fn fitted_splits_a_long_record_and_cuts_each_part() {
        let short = rec("ok");
        assert_eq!(
            fitted("e: ", &short, 200),
            (vec![format!("e: {}", line_form(&short))], false)
        );
        let (l, cut) = fitted("last event: ", &rec(&"w ".repeat(200)), 100);
        assert!(cut);
        assert_eq!(
            l[0],
            "last event: 2024-01-15T14:30:00Z | rollback | success"
        );
        assert_eq!(
            l[1],
            "  from=sha-abc123@sha256:00 | to=sha-def456 | actor=deploy-user"
        );
        assert!(
            l[2].starts_with("  reason=w w w")
                && l[2].ends_with('…')
                && l[2].chars().count() == 100
        );
        // Long, but nothing had to be cut: split, not shortened.
        let (l, cut) = fitted("last event: ", &rec(&"v".repeat(60)), 100);
        assert!(!cut && l.len() == 3, "{l:?}");
    }

    #[test]
    fn fit_cuts_at_columns_with_an_ellipsis() {
        assert_eq!(fit("short", 100), "short");
        let long = format!("reason={}", "x".repeat(300));
        let f = fit(&long, 100);
        assert_eq!(f.chars().count(), 100);
        assert!(f.ends_with("x…"), "{f}");
        // Wide characters take two columns each.
        let wide = fit(&"界".repeat(80), 100);
        assert_eq!(wide.chars().map(columns).sum::<usize>(), 99);
        assert!(wide.ends_with('…'));
        let (l, cut) = line_form_with(&rec(&"y".repeat(500)), 10);
        assert!(cut && l.ends_with("reason=yyyyyyyyy…"), "{l}");
        assert_eq!(
            line_form_with(&rec("ok"), 10),
            (line_form(&rec("ok")), false)
        );
    }
}
