//! The report as SARIF 2.1.0, the format code-scanning tools read: one
//! result per failing finding, located at the file and line of its service.
//! A finding that every checked mode shares is one result listing the modes,
//! not one per mode. Kept to the fields those tools need.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::report::{Finding, Report};

/// (rule, file, line, service, value): what makes two findings one result.
type Key = (String, String, Option<usize>, String, String);

/// A SARIF physical location for `file:line` (or a file alone).
fn location(place: &str) -> Value {
    let (file, line) = match place.rsplit_once(':') {
        Some((f, l)) if l.parse::<usize>().is_ok() => (f, l.parse::<usize>().ok()),
        _ => (place, None),
    };
    // Relative paths are relative references; absolute ones are file URIs.
    let uri = if file.starts_with('/') {
        format!("file://{file}")
    } else {
        file.to_string()
    };
    let mut loc = json!({"artifactLocation": {"uri": uri}});
    if let Some(l) = line {
        loc["region"] = json!({"startLine": l});
    }
    json!({ "physicalLocation": loc })
}

/// The SARIF document for `report`.
pub fn document(report: &Report) -> Value {
    // The first finding of each key, and the modes it failed in.
    let mut seen: BTreeMap<Key, (&Finding, Vec<String>)> = BTreeMap::new();
    for r in report.failures() {
        for f in &r.findings {
            let key = (
                r.check.clone(),
                f.file.clone(),
                f.line,
                f.service.clone(),
                f.value.clone(),
            );
            let e = seen.entry(key).or_insert_with(|| (f, vec![]));
            if !e.1.contains(&r.mode) {
                e.1.push(r.mode.clone());
            }
        }
    }
    let mut rules: Vec<&str> = seen.keys().map(|k| k.0.as_str()).collect();
    rules.dedup();
    let results: Vec<Value> = seen
        .iter()
        .map(|((rule, ..), (f, modes))| {
            let mut result = json!({
                "ruleId": rule,
                "level": "error",
                "message": {"text": format!("{}: {} (modes: {})", f.who(), f.value, modes.join(", "))},
                "properties": {"service": f.service, "profiles": f.profiles, "modes": modes},
            });
            let places = f.places();
            if !places.is_empty() {
                result["locations"] = places.iter().map(|p| location(p)).collect();
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cargo xtask security-modes-test",
                "rules": rules.iter().map(|r| json!({"id": r})).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::super::report::{Phase, Row};
    use super::*;

    #[test]
    fn one_result_per_finding_shared_by_modes() {
        let mut r = Report::default();
        let f = Finding {
            service: "admin".into(),
            profiles: vec!["debug".into()],
            file: "compose.yml".into(),
            line: Some(7),
            also: vec!["/abs/overlay.yml:3".into()],
            value: "privileged: true".into(),
        };
        for mode in ["dev", "hipaa"] {
            r.add(Row::new(
                mode,
                Phase::Static,
                "compose.yml",
                "no-privileged",
                vec![f.clone()],
            ));
            r.add(Row::new(
                mode,
                Phase::Static,
                "compose.yml",
                "read-only",
                vec![],
            ));
        }
        let d = document(&r);
        assert_eq!(d["version"], "2.1.0");
        let results = d["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{d}");
        let res = &results[0];
        assert_eq!(res["ruleId"], "no-privileged");
        assert_eq!(
            res["message"]["text"],
            "admin (profile debug): privileged: true (modes: dev, hipaa)"
        );
        let loc = &res["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "compose.yml");
        assert_eq!(loc["region"]["startLine"], 7);
        let also = &res["locations"][1]["physicalLocation"];
        assert_eq!(also["artifactLocation"]["uri"], "file:///abs/overlay.yml");
        assert_eq!(also["region"]["startLine"], 3);
        assert_eq!(
            d["runs"][0]["tool"]["driver"]["rules"],
            json!([{"id": "no-privileged"}])
        );
    }
}
