//! `status` is live, on the real engine behind the real proxy: it probes
//! the serving version with the gate's contract, shows the warm standby
//! with its version in full as the rollback target, and exits 8 naming the
//! failing check when the serving containers are unhealthy (their Redis
//! is gone, so `/health` says so) or the proxy is down.

mod common;

use common::*;

fn status(s: &Stack) -> (i32, String, serde_json::Value) {
    let o = s.run(&["status", "staging"]);
    let j = s.run(&["--format", "json", "status", "staging"]);
    assert_eq!(exit_code(&j), exit_code(&o), "{}", text(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    (exit_code(&o), text(&o), v)
}

#[test]
fn status_probes_health_names_the_standby_and_fails_on_an_unhealthy_version_or_a_down_proxy() {
    engines();
    let img = images();
    let s = Stack::with(
        "live",
        Opts {
            blue_green: true,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);

    let (code, out, v) = status(&s);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("health: ok ({} in standard mode", img.v2)),
        "{out}"
    );
    assert!(out.contains("proxy: up: a route for each of api"), "{out}");
    assert!(
        out.contains(&format!("standby: {} (the blue set: ", img.v1)),
        "{out}"
    );
    assert!(
        out.contains(&format!("rollback target: {}@sha256:", img.v1))
            && out.contains(": the blue standby, a switch"),
        "{out}"
    );
    assert_eq!(v["health"]["healthy"], true, "{v}");
    assert_eq!(v["proxy"]["up"], true, "{v}");
    assert_eq!(v["standby"][0]["version"], img.v1.as_str(), "{v}");
    assert_eq!(v["standby"][0]["rollback_target"], true, "{v}");
    assert_eq!(v["standby"][0]["healthy"], true, "{v}");
    assert_eq!(v["audit_head"], v["head"], "{v}");
    assert_eq!(v["outcome"], "success");
    println!("status with live probes: {} ms of checks", v["live_ms"]);

    // After a rollback to v1 the history has no earlier version; the warm
    // v2 standby is named with the `--to` that reaches it.
    s.ok(&["rollback", "staging", "--reason", "status test"]);
    let (code, out, v) = status(&s);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "rollback target: none in the history; `--to {}` switches to the green standby",
            img.v2
        )),
        "{out}"
    );
    assert!(v["rollback_target"].is_null(), "{v}");
    assert_eq!(v["standby"][0]["version"], img.v2.as_str(), "{v}");
    assert_eq!(v["standby"][0]["rollback_target"], false, "{v}");
    let serving = img.v1.clone();

    // Redis gone: the serving containers answer, but their health is not ok.
    let o = s.compose("staging", &["stop", "redis"]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, out, v) = status(&s);
    assert_eq!(code, 8, "{out}");
    let err = out.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        err.contains(&format!(
            "staging: health check: the serving version {serving} is unhealthy: http://127.0.0.1:"
        )),
        "{out}"
    );
    assert!(out.contains("health: FAILING: "), "{out}");
    assert_eq!(v["outcome"], "unhealthy");
    assert_eq!(v["health"]["healthy"], false, "{v}");
    assert!(
        v["failed_check"]
            .as_str()
            .is_some_and(|f| f.starts_with("health check: ")),
        "{v}"
    );
    let o = s.compose("staging", &["start", "redis"]);
    assert!(o.status.success(), "{}", text(&o));

    // The proxy down: named as the failing check.
    let o = s.compose("staging", &["stop", "proxy"]);
    assert!(o.status.success(), "{}", text(&o));
    let (code, out, v) = status(&s);
    assert_eq!(code, 8, "{out}");
    let err = out.lines().find(|l| l.starts_with("error: ")).unwrap();
    assert!(
        err.starts_with("error: staging: proxy check: the proxy is down: "),
        "{out}"
    );
    assert!(out.contains("proxy: DOWN: "), "{out}");
    assert_eq!(v["proxy"]["up"], false, "{v}");
}
