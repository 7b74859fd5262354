//! Rules about what runs and how: pinned images, the mode variable, and the
//! hipaa hardening of app services (read-only root, no new privileges, all
//! capabilities dropped, a healthcheck, a restart policy, a writable audit
//! sink). All judge the rendered service.

use serde_json::Value;

use super::{list, shown, strings, Scope};
use crate::tasks::security_modes::policy::substitute;

pub fn image(s: &Value, prefixes: &[String], allowed: &[String]) -> Option<String> {
    let Some(image) = s["image"].as_str() else {
        return Some("no image: it would be built at deploy time, so nothing pins it".into());
    };
    if let Some((_, digest)) = image.split_once('@') {
        return (!digest.starts_with("sha256:")).then(|| format!("{image}: digest is not sha256"));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        _ if allowed.iter().any(|a| a == image) && tag != Some("latest") => None,
        None => Some(format!("{image} has no tag, which means latest")),
        Some("latest") => Some(format!("{image} floats on latest")),
        Some(t) if prefixes.iter().any(|p| t.starts_with(p.as_str())) => None,
        Some(t) => Some(format!(
            "{image}: tag `{t}` is neither {} nor a digest",
            prefixes.join("/")
        )),
    }
}

pub fn env_equals(s: &Value, key: &str, value: &str, scope: &Scope) -> Vec<String> {
    let want = substitute(value, scope.mode, scope.tag);
    let got = &s["environment"][key];
    if got.as_str() == Some(want.as_str()) {
        vec![]
    } else {
        vec![format!("{key} is {}, want {want:?}", shown(got))]
    }
}

pub fn read_only(s: &Value) -> Vec<String> {
    if s["read_only"] == Value::Bool(true) {
        vec![]
    } else {
        vec![format!("read_only is {}", shown(&s["read_only"]))]
    }
}

pub fn no_new_privileges(s: &Value) -> Vec<String> {
    let opts = strings(&s["security_opt"]);
    let on = opts.iter().any(|o| {
        let o = o.replace('=', ":");
        o == "no-new-privileges" || o == "no-new-privileges:true"
    });
    if on {
        vec![]
    } else {
        vec![format!(
            "security_opt is {opts:?}, lacks no-new-privileges:true"
        )]
    }
}

pub fn cap_drop_all(s: &Value) -> Vec<String> {
    let caps = strings(&s["cap_drop"]);
    if caps.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        vec![]
    } else {
        vec![format!("cap_drop is {caps:?}, want [\"ALL\"]")]
    }
}

pub fn healthcheck(s: &Value) -> Vec<String> {
    let h = &s["healthcheck"];
    if h.is_null() {
        vec!["no healthcheck".into()]
    } else if h["disable"] == Value::Bool(true) {
        vec!["healthcheck is disabled".into()]
    } else if strings(&h["test"]).first().is_some_and(|t| t == "NONE") {
        vec!["healthcheck test is NONE".into()]
    } else {
        vec![]
    }
}

pub fn restart(s: &Value) -> Vec<String> {
    let restart = s["restart"].as_str().unwrap_or_default();
    let swarm = s["deploy"]["restart_policy"]["condition"]
        .as_str()
        .unwrap_or_default();
    let ok = matches!(restart, "always" | "unless-stopped")
        || restart.starts_with("on-failure")
        || matches!(swarm, "any" | "on-failure");
    if ok {
        vec![]
    } else {
        vec![format!("restart is {}", shown(&s["restart"]))]
    }
}

pub fn audit_sink(s: &Value, var: &str) -> Option<String> {
    let dir = match &s["environment"][var] {
        Value::String(v) if v.starts_with('/') => v.trim_end_matches('/').to_string(),
        Value::String(v) if v.is_empty() => return Some(format!("{var} is empty: no audit sink")),
        Value::Null => return Some(format!("{var} is unset: no audit sink")),
        other => return Some(format!("{var} is {other}, not an absolute path")),
    };
    let dir = if dir.is_empty() { "/".to_string() } else { dir };
    let covers = |mount: &str| {
        let m = mount.trim_end_matches('/');
        !m.is_empty() && (dir == m || dir.starts_with(&format!("{m}/")))
    };
    let tmpfs = strings(&s["tmpfs"])
        .iter()
        .any(|t| covers(t.split(':').next().unwrap_or_default()));
    let volume = list(&s["volumes"])
        .into_iter()
        .find(|v| covers(v["target"].as_str().unwrap_or_default()));
    match volume {
        Some(v) if v["read_only"] == Value::Bool(true) => {
            Some(format!("{var}={dir} is on a read-only mount"))
        }
        Some(_) => None,
        None if tmpfs => None,
        None => Some(format!(
            "{var}={dir} is not on a volume or tmpfs, so it is not writable on a read-only root"
        )),
    }
}
