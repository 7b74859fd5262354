//! Interrupted and hung operations on the real engine: a signal or a stuck
//! command at each phase of deploy and rollback ends recorded, unlocked and
//! recovered, and leaves no process behind.
//!
//! A PATH stand-in for `docker` forwards every call to the real one, and
//! holds (sleeps, with its pid written down) where the test says: before a
//! `compose pull`, before or after the app services' `up`, for one tag only.
//! The test waits for the stand-in's marker, then signals the xtask process.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RECREATE: &str = "up -d --no-deps --no-build";

/// Where and how the stand-in holds (the first matching call only).
struct Hold<'a> {
    /// Words of the call to hold (`pull`, or the recreate's `up` flags).
    words: &'a str,
    /// Only calls with this FETCHML_TAG (empty: calls that carry none,
    /// as the task's own look-ups).
    tag: &'a str,
    /// Run the real command first, then hold.
    after: bool,
    /// How long to hold; the hung-command test holds "forever".
    secs: u64,
}

struct Stand {
    dir: tempfile::TempDir,
}

impl Stand {
    fn new() -> Stand {
        let dir = tempfile::tempdir().unwrap();
        let real = which::which("docker").expect("docker is needed for this test");
        let script = format!(
            r#"#!/bin/sh
# Forwards to the real docker; holds the first call that XT_WORDS and
# XT_TAG name (the words may end inside an argument).
case " $* " in
  *" $XT_WORDS"*)
    if [ -n "$XT_WORDS" ] && [ "${{FETCHML_TAG%%@*}}" = "$XT_TAG" ] && [ ! -e "$XT_MARK" ]; then
      if [ "$XT_AFTER" = 1 ]; then "{real}" "$@" || exit $?; fi
      sleep "$XT_SECS" &
      echo $! > "$XT_MARK.sleep"
      echo "$$" > "$XT_MARK"
      wait
      exit 0
    fi ;;
esac
exec "{real}" "$@"
"#,
            real = real.display()
        );
        let p = dir.path().join("docker");
        std::fs::write(&p, script).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
        Stand { dir }
    }

    fn mark(&self) -> PathBuf {
        self.dir.path().join("mark")
    }

    /// Starts `xtask args` with the stand-in first on PATH.
    fn start(&self, s: &Stack, args: &[&str], hold: &Hold) -> Child {
        let _ = std::fs::remove_file(self.mark());
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        s.cmd()
            .args(args)
            .env("PATH", path)
            .env("XT_WORDS", hold.words)
            .env("XT_TAG", hold.tag)
            .env("XT_AFTER", if hold.after { "1" } else { "0" })
            .env("XT_SECS", hold.secs.to_string())
            .env("XT_MARK", self.mark())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Waits until the stand-in holds; panics with the task's output if it never does.
    fn wait_for_hold(&self, child: &mut Child) {
        let start = Instant::now();
        while !self.mark().exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the task ended ({st}) before the hold: {}", drain(child));
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "no hold after 90s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The stand-in's sleep: gone (or a zombie) once its group was killed.
    fn held_process_gone(&self) -> bool {
        let pid = std::fs::read_to_string(self.mark().with_extension("sleep")).unwrap();
        !alive(pid.trim())
    }
}

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn drain(child: &mut Child) -> String {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(o) = child.stdout.as_mut() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(e) = child.stderr.as_mut() {
        let _ = e.read_to_string(&mut err);
    }
    format!("--- stdout\n{out}\n--- stderr\n{err}")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) of our own child.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill failed");
}

/// Waits for the task to end within `limit`; returns its exit code and output.
fn finish(mut child: Child, limit: Duration) -> (i32, String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code().unwrap_or(-1), drain(&mut child), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "the task did not end within {limit:?}: {}",
                drain(&mut child)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lock of `env` can be taken: nobody holds it.
fn lock_free(s: &Stack, env: &str) -> bool {
    let p = s.state.join(env).join("deploy.lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    f.try_lock().is_ok()
}

fn name(sig: i32) -> &'static str {
    if sig == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}

/// Deploys v1 and returns a stack ready for the interrupted deploy of v2.
fn on_v1(name: &str) -> Stack {
    let img = images();
    let s = Stack::with(
        name,
        Opts {
            gate_secs: 60,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    s
}

/// One interrupted run: what the record, the lock, the stack and the
/// process table must show afterwards.
struct Expect<'a> {
    code: i32,
    outcome: &'a str,
    serving: &'a str,
    reason_has: &'a str,
}

fn check(s: &Stack, stand: &Stand, before: usize, got: (i32, String, Duration), want: &Expect) {
    let (code, out, _) = got;
    assert_eq!(code, want.code, "{out}");
    let recs = s.records("staging");
    assert_eq!(recs.len(), before + 1, "one record appended: {out}");
    let last = recs.last().unwrap();
    assert_eq!(last.outcome, want.outcome, "{last:?}\n{out}");
    let error = last.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(want.reason_has),
        "error {error:?} lacks {:?}",
        want.reason_has
    );
    assert!(lock_free(s, "staging"), "the lock is still held: {out}");
    assert_eq!(s.health("staging")["version"], want.serving, "{out}");
    assert!(
        stand.held_process_gone(),
        "a process of the task outlived it: {out}"
    );
    s.ok(&["audit", "verify", "--env", "staging"]);
}

#[test]
fn a_signal_during_pull_or_recreate_stops_records_and_puts_v1_back() {
    let img = images();
    let s = on_v1("sig-early");
    let stand = Stand::new();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // During the pull: nothing was touched.
        let before = s.records("staging").len();
        let mut c = stand.start(
            &s,
            &["deploy-staging", "--tag", &img.v2],
            &Hold {
                words: "pull",
                tag: &img.v2,
                after: false,
                secs: 600,
            },
        );
        stand.wait_for_hold(&mut c);
        signal(&c, sig);
        let got = finish(c, Duration::from_secs(30));
        check(
            &s,
            &stand,
            before,
            got,
            &Expect {
                code: 128 + sig,
                outcome: "interrupted",
                serving: &img.v1,
                reason_has: name(sig),
            },
        );

        // During the recreate: touched, so v1 is put back.
        let before = s.records("staging").len();
        let mut c = stand.start(
            &s,
            &["deploy-staging", "--tag", &img.v2],
            &Hold {
                words: RECREATE,
                tag: &img.v2,
                after: false,
                secs: 600,
            },
        );
        stand.wait_for_hold(&mut c);
        signal(&c, sig);
        let got = finish(c, Duration::from_secs(60));
        check(
            &s,
            &stand,
            before,
            got,
            &Expect {
                code: 128 + sig,
                outcome: "rolled-back",
                serving: &img.v1,
                reason_has: name(sig),
            },
        );
    }
}

#[test]
fn a_signal_mid_gate_puts_the_previous_version_back_fast() {
    let img = images();
    let s = on_v1("sig-gate");
    let stand = Stand::new();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let before = s.records("staging").len();
        // The broken version is up; its gate would wait 60s.
        let mut c = stand.start(
            &s,
            &["deploy-staging", "--tag", &img.bad],
            &Hold {
                words: RECREATE,
                tag: &img.bad,
                after: true,
                secs: 1,
            },
        );
        stand.wait_for_hold(&mut c);
        std::thread::sleep(Duration::from_millis(1500));
        signal(&c, sig);
        let got = finish(c, Duration::from_secs(60));
        eprintln!("{}: signal to v1 serving again: {:?}", name(sig), got.2);
        check(
            &s,
            &stand,
            before,
            got,
            &Expect {
                code: 128 + sig,
                outcome: "rolled-back",
                serving: &img.v1,
                reason_has: name(sig),
            },
        );
    }
}

#[test]
fn a_signal_during_recovery_is_held_until_it_ends_and_a_second_one_skips_it() {
    let img = images();
    let s = Stack::with(
        "sig-recover",
        Opts {
            gate_secs: 2,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let stand = Stand::new();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let before = s.records("staging").len();
        // The gate of the broken version fails; the recovery's recreate of v1 holds 3s.
        let mut c = stand.start(
            &s,
            &["deploy-staging", "--tag", &img.bad],
            &Hold {
                words: RECREATE,
                tag: &img.v1,
                after: true,
                secs: 3,
            },
        );
        stand.wait_for_hold(&mut c);
        signal(&c, sig);
        let got = finish(c, Duration::from_secs(60));
        check(
            &s,
            &stand,
            before,
            got,
            &Expect {
                code: 3,
                outcome: "rolled-back",
                serving: &img.v1,
                reason_has: "held until it finished",
            },
        );
    }
    // Two signals: the recovery stops; recorded, unlocked, and exit 4 says a
    // person is needed.
    let before = s.records("staging").len();
    let mut c = stand.start(
        &s,
        &["deploy-staging", "--tag", &img.bad],
        &Hold {
            words: RECREATE,
            tag: &img.v1,
            after: false,
            secs: 600,
        },
    );
    stand.wait_for_hold(&mut c);
    signal(&c, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    signal(&c, libc::SIGTERM);
    let (code, out, _) = finish(c, Duration::from_secs(30));
    assert_eq!(code, 4, "{out}");
    let recs = s.records("staging");
    assert_eq!(recs.len(), before + 1, "{out}");
    assert_eq!(recs.last().unwrap().outcome, "failure");
    assert!(lock_free(&s, "staging"));
    assert!(stand.held_process_gone(), "{out}");
    // What to do next is a rollback to the last good version, which runs.
    s.ok(&["rollback", "staging", "--reason", "after two signals"]);
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
}

#[test]
fn a_signal_during_a_rollback_puts_back_what_served_before() {
    let img = images();
    let s = on_v1("sig-rollback");
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    let stand = Stand::new();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        for (words, after) in [(RECREATE, false), (RECREATE, true)] {
            // Before the recreate, or after it (the gate phase).
            let before = s.records("staging").len();
            let mut c = stand.start(
                &s,
                &["rollback", "staging", "--to", &img.v1, "--reason", "drill"],
                &Hold {
                    words,
                    tag: &img.v1,
                    after,
                    secs: 600,
                },
            );
            stand.wait_for_hold(&mut c);
            signal(&c, sig);
            let got = finish(c, Duration::from_secs(60));
            check(
                &s,
                &stand,
                before,
                got,
                &Expect {
                    code: 128 + sig,
                    outcome: "rolled-back",
                    serving: &img.v2,
                    reason_has: name(sig),
                },
            );
        }
    }
}

#[test]
fn a_hung_compose_up_is_killed_at_its_limit_and_recovered() {
    let img = images();
    let s = on_v1("hung");
    limit_recreate(&s.config, 5);
    let stand = Stand::new();
    let before = s.records("staging").len();
    let c = stand.start(
        &s,
        &["deploy-staging", "--tag", &img.v2],
        &Hold {
            words: RECREATE,
            tag: &img.v2,
            after: false,
            secs: 3600,
        },
    );
    let t = Instant::now();
    let (code, out, _) = finish(c, Duration::from_secs(90));
    eprintln!(
        "hung recreate given up and recovered after {:?}",
        t.elapsed()
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("did not finish within its limit of 5s"),
        "{out}"
    );
    let recs = s.records("staging");
    assert_eq!(recs.len(), before + 1);
    assert_eq!(recs.last().unwrap().outcome, "rolled-back");
    assert!(lock_free(&s, "staging"));
    assert!(
        stand.held_process_gone(),
        "the hung command's process outlived it"
    );
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
}

/// A blue/green deploy whose new set fails where no gate can see it: a
/// hung start of the new set killed at its time limit, then a proxy that
/// went away mid-deploy and cannot be started again. Each time no
/// container of the failed version remains and the proxy serves the
/// previous one.
#[test]
fn a_blue_green_deploy_that_hangs_or_cannot_switch_leaves_no_container_of_it() {
    let img = images();
    let s = Stack::with(
        "bg-hung",
        Opts {
            blue_green: true,
            gate_secs: 60,
            ..Opts::default()
        },
    );
    s.ok(&["deploy-staging", "--tag", &img.v1]);
    let serving = s.upstreams("staging", "api");
    let stand = Stand::new();
    let no_v2 = |what: &str| {
        let left = app_containers(&s)
            .into_iter()
            .filter(|i| i.ends_with(&format!(":{}", img.v2)))
            .collect::<Vec<_>>();
        assert!(left.is_empty(), "{what}: left {left:?}");
    };

    // The new set's containers start, then the `docker start` hangs past
    // its limit (`stop_secs`, which bounds the container commands).
    let original = std::fs::read_to_string(&s.config).unwrap();
    limit(&s.config, "stop_secs", 5);
    let c = stand.start(
        &s,
        &["deploy-staging", "--tag", &img.v2],
        &Hold {
            words: &format!("start {}-", s.project("staging")),
            tag: "",
            after: true,
            secs: 3600,
        },
    );
    let (code, out, t) = finish(c, Duration::from_secs(120));
    eprintln!("hung start of the new set: exit {code} after {t:?}");
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("did not finish within its limit of 5s"),
        "{out}"
    );
    assert!(stand.held_process_gone(), "the hung command outlived it");
    no_v2("hung start");
    assert_eq!(s.upstreams("staging", "api"), serving, "{out}");
    assert_eq!(s.health("staging")["version"], img.v1.as_str(), "{out}");
    assert_eq!(s.records("staging").pop().unwrap().outcome, "rolled-back");
    std::fs::write(&s.config, original).unwrap();

    // The proxy stops while the deploy looks containers up (the held
    // `inspect`), and cannot be started again.
    let mut c = stand.start(
        &s,
        &["deploy-staging", "--tag", &img.v2],
        &Hold {
            words: "inspect --format {{.Name}}",
            tag: "",
            after: true,
            secs: 600,
        },
    );
    stand.wait_for_hold(&mut c);
    let proxy = format!("{}-proxy-1", s.project("staging"));
    let o = Command::new("docker")
        .args(["stop", &proxy])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The recovery would start a lost proxy again; this one cannot be (a
    // file stands where its admin directory was), so the switch fails.
    let admin = s.admin_dir("staging");
    let aside = admin.with_extension("aside");
    std::fs::rename(&admin, &aside).unwrap();
    std::fs::write(&admin, b"not a directory").unwrap();
    let sleep = std::fs::read_to_string(stand.mark().with_extension("sleep")).unwrap();
    // SAFETY: kill(2) of the stand-in's sleep, which this test started.
    unsafe { libc::kill(sleep.trim().parse::<i32>().unwrap(), libc::SIGKILL) };
    let (code, out, _) = finish(c, Duration::from_secs(120));
    eprintln!("switch failed with the proxy gone: exit {code}");
    // The held look-up comes before the stateful services are started, so
    // the deploy finds the proxy down there and cannot start it again:
    // it fails before any container of v2 exists.
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("proxy-staging"), "{out}");
    no_v2("proxy lost and not startable");
    std::fs::remove_file(&admin).unwrap();
    std::fs::rename(&aside, &admin).unwrap();
    // The proxy, started again (if the recovery did not), routes where it
    // routed before the deploy.
    let o = Command::new("docker")
        .args(["start", &proxy])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let start = Instant::now();
    let health = loop {
        match reqwest::blocking::get(format!("{}/health", s.api("staging"))) {
            Ok(r) if r.status().is_success() => break r.json::<serde_json::Value>().unwrap(),
            _ if start.elapsed() > Duration::from_secs(30) => {
                panic!("the proxy never answered again")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(health["version"], img.v1.as_str(), "{out}");
    assert_eq!(s.upstreams("staging", "api"), serving, "{out}");
    assert!(lock_free(&s, "staging"));
}

/// The image of every app container of staging, running or not.
fn app_containers(s: &Stack) -> Vec<String> {
    let o = Command::new("docker")
        .args(["ps", "--all", "--filter"])
        .arg(format!(
            "label=com.docker.compose.project={}",
            s.project("staging")
        ))
        .args(["--format", "{{.Image}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Sets `[env.staging.timeouts] recreate_secs` in a stack's config.
fn limit_recreate(config: &Path, secs: u64) {
    limit(config, "recreate_secs", secs);
}

/// Sets one of `[env.staging.timeouts]` in a stack's config.
fn limit(config: &Path, key: &str, secs: u64) {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replacen(
        "[env.prod]",
        &format!("[env.staging.timeouts]\n{key} = {secs}\n\n[env.prod]"),
        1,
    );
    std::fs::write(config, text).unwrap();
}

#[test]
fn unwritable_audit_log_or_sink_refuses_before_touching_the_containers() {
    let img = images();
    let s = on_v1("ro-log");
    let ids = (
        s.container_id("staging", "api"),
        s.container_id("staging", "worker"),
    );
    let log = s.state.join("staging/audit.jsonl");
    let o = Command::new("chattr").arg("+i").arg(&log).output();
    let immutable = o.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        immutable,
        "this test needs `chattr +i` on the state directory's filesystem: {o:?}"
    );
    let dry = s.run(&["deploy-staging", "--tag", &img.v2, "--dry-run"]);
    let r = s.run(&["deploy-staging", "--tag", &img.v2]);
    let _ = Command::new("chattr").arg("-i").arg(&log).output();
    assert_eq!(exit_code(&r), 5, "{}", text(&r));
    assert!(
        stderr(&r).contains(&format!("the audit log {} is not writable", log.display())),
        "{}",
        text(&r)
    );
    // The preview refuses with the same line.
    assert_eq!(exit_code(&dry), 5, "{}", text(&dry));
    assert_eq!(stderr(&dry), stderr(&r));
    assert_eq!(
        (
            s.container_id("staging", "api"),
            s.container_id("staging", "worker")
        ),
        ids,
        "containers were touched"
    );
    assert_eq!(s.health("staging")["version"], img.v1.as_str());

    // The same for an unwritable sink: nothing runs, and the log gets nothing.
    let sink = s.state.join("sink/staging.audit.jsonl");
    assert!(sink.exists(), "the stack's sink is configured");
    let before = s.records("staging").len();
    let o = Command::new("chattr")
        .arg("+i")
        .arg(&sink)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let r = s.run(&["deploy-staging", "--tag", &img.v2]);
    let _ = Command::new("chattr").arg("-i").arg(&sink).output();
    assert_eq!(exit_code(&r), 5, "{}", text(&r));
    assert!(stderr(&r).contains("audit sink"), "{}", text(&r));
    assert_eq!(
        (
            s.container_id("staging", "api"),
            s.container_id("staging", "worker")
        ),
        ids,
        "containers were touched"
    );
    assert_eq!(s.records("staging").len(), before);
}

#[test]
fn a_self_contradicting_config_is_refused_before_anything_is_touched() {
    let img = images();
    let s = Stack::new("contradict");
    // The gate expects standard; the vars would start hipaa.
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    let cfg = cfg.replacen(
        "COMPLIANCE_MODE = \"standard\"",
        "COMPLIANCE_MODE = \"hipaa\"",
        1,
    );
    std::fs::write(&s.config, cfg).unwrap();
    let t = Instant::now();
    let o = s.run(&["deploy-staging", "--tag", &img.v1]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stderr(&o).contains("COMPLIANCE_MODE=\"hipaa\""),
        "{}",
        text(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        s.container_id("staging", "api").is_empty(),
        "something started"
    );
    let recs = s.records("staging");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].outcome, "refused");
}

#[test]
fn after_a_failure_that_touched_nothing_rollback_targets_the_previous_good_version() {
    let img = images();
    let s = on_v1("target");
    s.ok(&["deploy-staging", "--tag", &img.v2]);
    // A tag that does not exist: refused (not in the registry), nothing is touched.
    let o = s.run(&["deploy-staging", "--tag", "sha-000000000000"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    let o = s.ok(&["rollback", "staging", "--dry-run"]);
    assert!(
        stdout(&o).contains(&format!("rollback target: {} (from audit history)", img.v1)),
        "{}",
        text(&o)
    );
    // `--to @N`: the version the record at line N put in place.
    let o = s.ok(&["rollback", "staging", "--to", "@1", "--dry-run"]);
    assert!(
        stdout(&o).contains(&format!(
            "rollback target: {}, from the record at line 1",
            img.v1
        )),
        "{}",
        text(&o)
    );
    let o = s.run(&["rollback", "staging", "--to", "@3", "--dry-run"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(
        stdout(&o).contains("sha-000000000000 was never deployed successfully"),
        "{}",
        text(&o)
    );
    let o = s.run(&["rollback", "staging", "--to", "@99"]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(stderr(&o).contains("has no line 99"), "{}", text(&o));
    s.ok(&["rollback", "staging", "--reason", "target check"]);
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    // The running version is refused as a target unless forced.
    let o = s.run(&["rollback", "staging", "--to", &img.v1]);
    assert_eq!(exit_code(&o), 5, "{}", text(&o));
    assert!(stderr(&o).contains("already running"), "{}", text(&o));
}

#[test]
fn drift_after_kill_9_mid_recreate_is_seen_and_rollback_puts_back_the_chain_version() {
    let img = images();
    let s = on_v1("drift");
    let stand = Stand::new();
    let mut c = stand.start(
        &s,
        &["deploy-staging", "--tag", &img.v2],
        &Hold {
            words: RECREATE,
            tag: &img.v2,
            after: true,
            secs: 600,
        },
    );
    stand.wait_for_hold(&mut c);
    // kill -9: the one case that cannot record. v2 runs; the chain says v1.
    c.kill().unwrap();
    let _ = c.wait();
    let pid = std::fs::read_to_string(stand.mark()).unwrap();
    // SAFETY: the stand-in's group, which the dead task can no longer kill.
    unsafe { libc::kill(-pid.trim().parse::<i32>().unwrap(), libc::SIGKILL) };
    assert_eq!(s.health("staging")["version"], img.v2.as_str());
    assert_eq!(s.history("staging").current(), Some(img.v1.as_str()));

    // status shows the drift plainly, in text and JSON, with its own exit code.
    let o = s.run(&["status", "staging"]);
    assert_eq!(exit_code(&o), 7, "{}", text(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "running now: api={v2}, worker={v2} (the engine)",
            v2 = img.v2
        )),
        "{out}"
    );
    assert!(out.contains("DRIFT: the audit chain says"), "{out}");
    assert!(
        // The version with the digest it ran with here (status shows 12 hex).
        out.lines().any(
            |l| l.starts_with(&format!("rollback target: {}@sha256:", img.v1))
                && l.ends_with(" (relative to what runs)")
        ),
        "{out}"
    );
    let o = s.run(&["--format", "json", "status", "staging"]);
    assert_eq!(exit_code(&o), 7, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["engine"]["tag"], img.v2.as_str());
    assert_eq!(v["rollback_target"], img.v1.as_str());
    assert!(
        v["drift"]
            .as_str()
            .is_some_and(|d| d.contains("the engine reports")),
        "{v}"
    );

    let o = s.ok(&["rollback", "staging", "--dry-run"]);
    let out = stdout(&o);
    assert!(out.contains("DRIFT: the audit chain says"), "{out}");
    assert!(
        out.contains(&format!("rollback target: {} (from audit history)", img.v1)),
        "{out}"
    );
    s.ok(&["rollback", "staging", "--reason", "drift after kill -9"]);
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    let last = s.records("staging").pop().unwrap();
    assert_eq!(
        last.from.as_ref().map(|f| f.tag.as_str()),
        Some(img.v2.as_str()),
        "{last:?}"
    );
}

#[test]
fn a_signal_while_waiting_for_the_lock_ends_the_wait() {
    let img = images();
    let s = on_v1("sig-lockwait");
    s.ok(&["lock", "acquire", "staging", "-m", "maintenance drill"]);
    let before = s.records("staging").len();
    let c = s
        .cmd()
        .args(["deploy-staging", "--tag", &img.v2, "--lock-wait", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(&c, libc::SIGTERM);
    let (code, out, took) = finish(c, Duration::from_secs(30));
    assert_eq!(code, 143, "{out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let recs = s.records("staging");
    assert_eq!(recs.len(), before + 1, "{out}");
    assert_eq!(recs.last().unwrap().outcome, "interrupted");
    assert_eq!(s.health("staging")["version"], img.v1.as_str());
    s.ok(&["lock", "release", "staging", "-m", "drill over"]);
}
