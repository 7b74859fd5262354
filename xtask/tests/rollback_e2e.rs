//! Image-only rollback end to end, against the real engine.

mod common;

use common::*;

#[test]
fn rollback_restores_v1_and_leaves_queue_volume_and_stateful_containers_alone() {
    let img = images();
    let s = Stack::new("rb");
    // The checklist printed after the rollback is the environment's own.
    let cfg = std::fs::read_to_string(&s.config).unwrap().replacen(
        "[env.staging]\n",
        "[env.staging]\npost_rollback = [\"drain the {env} queue\", \"tell #rb-ops\"]\n",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let q = s.jobs("staging", 4);
    assert_eq!(q["done"], 4, "{q}");
    s.put_artifact("staging", "report.txt", "made by v2");
    let redis = s.container_id("staging", "redis");

    let o = s.ok(&["rollback", "staging", "--reason", "health-check-failure"]);
    assert!(last_line(&o).starts_with("audit head: "), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("after a rollback (post_rollback in the config):\n  1. drain the staging queue\n  2. tell #rb-ops\n"),
        "checklist missing: {e}"
    );
    assert!(
        !e.contains("audit verify"),
        "the generic checklist too: {e}"
    );
    let h = s.health("staging");
    assert_eq!(h["version"], img.v1.as_str());
    assert_eq!(h["compliance_mode"], "standard");
    assert_eq!(h["status"], "ok");

    assert_eq!(s.queue("staging")["done"], 4, "rollback touched the queue");
    assert_eq!(
        s.get_artifact("staging", "report.txt"),
        "made by v2",
        "rollback touched artifacts"
    );
    assert_eq!(
        s.container_id("staging", "redis"),
        redis,
        "rollback recreated redis"
    );

    let v = s.log("staging").verify().unwrap();
    let recs = s.records("staging");
    assert_eq!(v.count, 3);
    let last = recs.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("rollback", "success")
    );
    assert_eq!(
        (
            last.from.as_ref().unwrap().tag.as_str(),
            last.to.as_ref().unwrap().tag.as_str()
        ),
        (img.v2.as_str(), img.v1.as_str())
    );
    assert_eq!(last.reason, "health-check-failure");
    assert!(
        stdout(&o).contains(&v.head),
        "the printed head is not the chain's head"
    );
}

#[test]
fn nothing_to_roll_back_to_is_a_clear_refusal_with_nothing_changed() {
    let img = images();
    let s = Stack::new("rbnone");
    let o = s.run(&["rollback", "staging"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("no previous successful version of staging"),
        "{}",
        text(&o)
    );
    // Refusals are recorded, and say what was refused; the output does not
    // claim that anything ran.
    let recs = s.records("staging");
    assert_eq!(recs.len(), 1, "a refused rollback is recorded");
    assert_eq!(
        (recs[0].action.as_str(), recs[0].outcome.as_str()),
        ("rollback", "refused")
    );
    assert!(!stderr(&o).contains("after a rollback"), "{}", text(&o));

    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let o = s.run(&["rollback", "staging"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    let recs = s.records("staging");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].outcome, "refused");
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
}

#[test]
fn to_a_tag_never_deployed_is_refused_and_a_missing_image_stops_nothing() {
    let img = images();
    let s = Stack::new("rbto");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let api = s.container_id("staging", "api");

    let o = s.run(&["rollback", "staging", "--to", "sha-000000000000"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("sha-000000000000 was never deployed successfully to staging"),
        "{}",
        text(&o)
    );

    // Forced past that check, the image is neither present nor in the registry: refused before anything stops.
    let o = s.run(&[
        "rollback",
        "staging",
        "--to",
        "sha-000000000000",
        "--force",
        "--reason",
        "drill",
    ]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("the tag's images in the registry not met: missing image 127.0.0.1:5000/fetchml/testbed:sha-000000000000"),
        "{}",
        text(&o)
    );
    assert_eq!(s.container_id("staging", "api"), api, "the api was touched");
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("rollback", "refused")
    );

    // Injection attempts are refused before anything runs.
    for bad in ["sha-1; rm -rf /", "$(id)", "--help", "a\nb"] {
        let o = s.run(&["rollback", "staging", "--to", bad]);
        assert_eq!(exit_code(&o), 1, "{bad:?}: {}", text(&o));
        assert!(stderr(&o).starts_with("error: "), "{bad:?}: {}", text(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{bad:?}: {}", text(&o));
    }
}

#[test]
fn a_tampered_chain_is_refused_and_force_proceeds_and_is_recorded() {
    let img = images();
    let s = Stack::new("rbtamper");
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let path = s.state.join("staging/audit.jsonl");
    let text0 = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text0.replacen("\"reason\":\"deploy\"", "\"reason\":\"deplox\"", 1),
    )
    .unwrap();

    let o = s.run(&["rollback", "staging"]);
    assert_eq!(exit_code(&o), 6, "{}", text(&o));
    assert!(
        stderr(&o).contains("line 2"),
        "the break is not located: {}",
        text(&o)
    );
    assert_eq!(s.health("staging")["version"], img.v2.as_str());

    let o = s.run(&[
        "--format",
        "json",
        "rollback",
        "staging",
        "--force",
        "--reason",
        "chain incident INC-7, rolling back anyway",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    // No post_rollback in this config: the generic checklist, printed and
    // in the JSON document.
    assert!(
        stderr(&o).contains("  1. confirm the audit chain: cargo xtask audit verify staging\n  2. find the root cause"),
        "{}",
        text(&o)
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        doc["checklist"],
        serde_json::json!([
            "confirm the audit chain: cargo xtask audit verify staging",
            "find the root cause of the failed version before deploying it again"
        ]),
        "{doc:#}"
    );
    let lines = std::fs::read_to_string(&path).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "rollback");
    // The append also names the break it was forced past.
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.starts_with("[forced] chain incident INC-7, rolling back anyway [forced past audit break: line 1: modified"), "{reason}");
}
