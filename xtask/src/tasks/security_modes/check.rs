//! The static check of one rendered stack in one mode: every rule of the
//! mode on every service (of every profile), the app rules on the stack's
//! app services, each finding located at its service's file and profiles.

use serde_json::Value;

use super::locate::Locations;
use super::policy::{Mode, Policy};
use super::report::{Finding, Phase, Row};
use super::rules::{self, Scope, Service};

/// A stack as compose rendered it: interpolated, and raw (`--no-interpolate`).
pub(super) struct Rendered {
    pub config: Value,
    pub raw: Value,
}

/// The rows of `mode` on stack `stack_name`.
pub(super) fn rows(
    policy: &Policy,
    mode: &Mode,
    stack_name: &str,
    tag: &str,
    rendered: &Rendered,
) -> Vec<Row> {
    let Some(stack) = policy.stacks.get(stack_name) else {
        return vec![];
    };
    let scope = Scope {
        mode: &mode.name,
        tag,
        stack,
    };
    let files: Vec<_> = stack
        .compose_files
        .iter()
        .map(|f| policy.resolve(f))
        .chain(stack.takes_overlay().then(|| policy.resolve(&mode.overlay)))
        .collect();
    let places = Locations::scan(&files);
    let empty = serde_json::Map::new();
    let services = rendered.config["services"].as_object().unwrap_or(&empty);
    let raw = &rendered.raw["services"];
    let finding = |svc: &str, value: String| {
        let (file, line, also) = places.of(svc);
        Finding {
            service: svc.into(),
            profiles: services
                .get(svc)
                .map(|s| rules_strings(&s["profiles"]))
                .unwrap_or_default(),
            file,
            line,
            also,
            value,
        }
    };
    let check = |rule: &str, name: &str, svc: &Value| -> Vec<Finding> {
        let s = Service {
            name,
            rendered: svc,
            raw: &raw[name],
        };
        let Some(rule) = policy.rules.get(rule) else {
            return vec![]; // the policy was validated: every named rule exists
        };
        rules::violations(rule, &scope, &s)
            .into_iter()
            .map(|v| finding(name, v))
            .collect()
    };
    let row =
        |rule: &String, findings| Row::new(&mode.name, Phase::Static, stack_name, rule, findings);
    let mut out: Vec<Row> = mode
        .rules
        .iter()
        .map(|rule| {
            let findings = services
                .iter()
                .flat_map(|(n, s)| check(rule, n, s))
                .collect();
            row(rule, findings)
        })
        .collect();
    // No app services (a `--compose` file without --app-service): the app
    // rules have nothing to apply to, and the plan says so.
    if stack.app_services.is_empty() {
        return out;
    }
    out.extend(mode.app_rules.iter().map(|rule| {
        let findings = stack
            .app_services
            .iter()
            .flat_map(|n| match services.get(n) {
                Some(s) => check(rule, n, s),
                None => vec![finding(
                    n,
                    "app service is not in the rendered config".into(),
                )],
            })
            .collect();
        row(rule, findings)
    }));
    out
}

fn rules_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
