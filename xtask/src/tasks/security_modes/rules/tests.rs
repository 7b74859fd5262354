//! Each rule kind on hand-written rendered services; the secret rules in
//! `tests_secrets`.

use serde_json::json;

use super::*;
use crate::tasks::security_modes::policy::Namespace;

fn stack() -> Stack {
    Stack {
        env: None,
        fixed_mode: None,
        compose_files: vec![],
        tag_var: "T".into(),
        app_services: vec!["api".into()],
        vars: Default::default(),
        public_ports: vec!["web:443".into()],
        unpinned_images: vec!["local/redis:local".into()],
        boot: None,
        direct: false,
        secret_vars: Default::default(),
    }
}

/// Checks `svc`, rendered and raw alike.
fn check(rule: Rule, name: &str, svc: Value) -> Vec<String> {
    check_raw(rule, name, svc.clone(), svc)
}

fn check_raw(rule: Rule, name: &str, rendered: Value, raw: Value) -> Vec<String> {
    let s = stack();
    let scope = Scope {
        mode: "hipaa",
        tag: "sha-1",
        stack: &s,
    };
    let svc = Service {
        name,
        rendered: &rendered,
        raw: &raw,
    };
    violations(&rule, &scope, &svc)
}

#[test]
fn namespaces_and_privilege() {
    assert_eq!(
        check(Rule::NoPrivileged, "a", json!({"privileged": true})),
        ["privileged: true"]
    );
    assert!(check(Rule::NoPrivileged, "a", json!({"privileged": false})).is_empty());
    let net = Rule::NoHostNamespace {
        namespace: Namespace::Network,
    };
    assert_eq!(
        check(net.clone(), "a", json!({"network_mode": "host"})),
        ["network_mode: host"]
    );
    assert!(check(net, "a", json!({"network_mode": "bridge"})).is_empty());
    let sock =
        json!({"volumes": [{"type": "bind", "source": "/var/run/docker.sock", "target": "/s"}]});
    assert_eq!(
        check(Rule::NoDockerSocket, "a", sock),
        ["mounts /var/run/docker.sock at /s"]
    );
    let run = json!({"volumes": [{"type": "bind", "source": "/run/", "target": "/h"}]});
    assert_eq!(check(Rule::NoDockerSocket, "a", run).len(), 1);
}

#[test]
fn ports() {
    let svc = json!({"ports": [
        {"host_ip": "127.0.0.1", "target": 8080, "published": "1"},
        {"target": 8080, "published": "2", "protocol": "tcp"},
        {"host_ip": "0.0.0.0", "target": 9, "protocol": "udp"},
    ]});
    assert_eq!(
        check(Rule::LoopbackPorts, "api", svc),
        [
            "port 0.0.0.0:2->8080/tcp is published beyond loopback",
            "port 0.0.0.0:(random port)->9/udp is published beyond loopback"
        ]
    );
    let web = json!({"ports": [{"target": 443, "published": "443"}]});
    assert!(
        check(Rule::LoopbackPorts, "web", web).is_empty(),
        "allow-listed"
    );
}

#[test]
fn proxy_admin_listeners_in_the_config_files() {
    use super::proxy::{caddy_admin, haproxy_admin};
    // HAProxy: a unix socket or the container's loopback passes.
    let ok = "global\n    stats socket /run/fetchml-proxy/admin.sock mode 600 level admin\n    stats socket unix@/run/x.sock\n    stats socket ipv4@127.0.0.1:9999 level admin\n    # stats socket *:9999\n";
    assert!(haproxy_admin(ok).is_empty(), "{:?}", haproxy_admin(ok));
    let bad = "global\n  stats socket ipv4@0.0.0.0:9999 level admin\n  stats socket *:9998\n  stats socket :9997\n  stats socket ipv6@:::9996\n  stats socket 10.0.0.5:9995\n  stats socket abns@admin\nlisten stats\n  stats admin if TRUE\n";
    let v = haproxy_admin(bad);
    assert_eq!(v.len(), 7, "{v:?}");
    assert!(v[0].contains("`ipv4@0.0.0.0:9999`"), "{v:?}");
    assert!(v[6].contains("stats admin"), "{v:?}");
    // The testbed's committed config passes.
    let testbed = std::fs::read_to_string(
        crate::repo::workspace_root().join("deployments/testbed/haproxy.cfg"),
    )
    .unwrap();
    assert!(haproxy_admin(&testbed).is_empty());
    let prod =
        std::fs::read_to_string(crate::repo::workspace_root().join("deployments/haproxy.cfg"))
            .unwrap();
    assert!(haproxy_admin(&prod).is_empty());
    // Swarm's Caddy has its admin API disabled (nothing switches it there).
    let swarm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::repo::workspace_root().join("deployments/testbed/proxy.swarm.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(swarm["admin"]["disabled"], true);
    assert!(caddy_admin(&swarm).is_empty());
    // Caddy: a unix socket, loopback, the default or disabled passes.
    for ok in [
        json!({"admin": {"listen": "unix//run/caddy/admin.sock"}}),
        json!({"admin": {"listen": "localhost:2019"}}),
        json!({"admin": {"listen": "127.0.0.1:2019"}}),
        json!({"admin": {"disabled": true}}),
        json!({"apps": {}}),
    ] {
        assert!(caddy_admin(&ok).is_empty(), "{ok}");
    }
    for bad in [
        json!({"admin": {"listen": "0.0.0.0:2019"}}),
        json!({"admin": {"listen": ":2019"}}),
        json!({"admin": {"listen": "tcp/10.1.2.3:2019"}}),
    ] {
        assert_eq!(caddy_admin(&bad).len(), 1, "{bad}");
    }
    // The rule reads the files the proxy bind-mounts.
    let dir = tempfile::tempdir().unwrap();
    let caddy = dir.path().join("caddy.json");
    std::fs::write(&caddy, r#"{"admin": {"listen": "0.0.0.0:2019"}}"#).unwrap();
    let hap = dir.path().join("haproxy.cfg");
    std::fs::write(&hap, ok).unwrap();
    let rule = || Rule::ProxyAdminLoopback {
        service: "proxy".into(),
        admin_port: 2019,
    };
    let svc = |src: &std::path::Path| json!({"volumes": [{"type": "bind", "source": src.display().to_string(), "target": "/etc/x"}]});
    assert_eq!(
        check(rule(), "proxy", svc(&caddy)),
        ["caddy.json: the admin API listens on `0.0.0.0:2019`, which other containers can reach: use a unix socket in a directory only the proxy mounts, or disable it"]
    );
    assert!(check(rule(), "proxy", svc(&hap)).is_empty());
}

#[test]
fn proxy_admin_port_only_on_127_0_0_1_or_1() {
    let rule = || Rule::ProxyAdminLoopback {
        service: "proxy".into(),
        admin_port: 2019,
    };
    let svc = json!({"ports": [
        {"host_ip": "127.0.0.1", "target": 8080, "published": "18080"},
        {"host_ip": "127.0.0.1", "target": 2019, "published": "18090"},
        {"host_ip": "::1", "target": 2019, "published": "18091"},
        {"target": 2019, "published": "18092"},
        {"host_ip": "0.0.0.0", "target": 2019, "published": "18093"},
        {"host_ip": "::", "target": 2019},
        {"host_ip": "10.0.0.5", "target": 2019, "published": "18094"},
        {"host_ip": "127.0.0.2", "target": 2019, "published": "18095"},
    ]});
    assert_eq!(
        check(rule(), "proxy", svc.clone()),
        [
            "admin port 2019 is published on every interface (no host ip, host port 18092): publish it on 127.0.0.1 only",
            "admin port 2019 is published on every interface (0.0.0.0:18093): publish it on 127.0.0.1 only",
            "admin port 2019 is published on every interface (:::(random port)): publish it on 127.0.0.1 only",
            "admin port 2019 is published on 10.0.0.5:18094, not on 127.0.0.1 or ::1",
            "admin port 2019 is published on 127.0.0.2:18095, not on 127.0.0.1 or ::1",
        ]
    );
    // Only the service the rule names is the proxy.
    assert!(check(rule(), "api", svc).is_empty());
    // The allow-list does not open the admin port.
    let web = json!({"ports": [{"target": 2019, "published": "2019"}]});
    let as_web = Rule::ProxyAdminLoopback {
        service: "web".into(),
        admin_port: 2019,
    };
    assert_eq!(check(as_web, "web", web).len(), 1);
    // Another admin port, as the rule declares it.
    let other = Rule::ProxyAdminLoopback {
        service: "proxy".into(),
        admin_port: 9000,
    };
    let svc =
        json!({"ports": [{"target": 2019, "published": "1"}, {"target": 9000, "published": "2"}]});
    assert_eq!(
        check(other, "proxy", svc),
        ["admin port 9000 is published on every interface (no host ip, host port 2): publish it on 127.0.0.1 only"]
    );
}

#[test]
fn no_published_ports_even_on_loopback() {
    let svc = json!({"ports": [
        {"host_ip": "127.0.0.1", "target": 9101, "published": "9201"},
        {"target": 9102, "published": "9202", "protocol": "tcp"},
    ]});
    assert_eq!(
        check(Rule::NoPublishedPorts, "web", svc),
        [
            "port 127.0.0.1:9201->9101/tcp is published: only the proxy publishes ports",
            "port 0.0.0.0:9202->9102/tcp is published: only the proxy publishes ports",
        ]
    );
    let none = json!({"expose": ["9101"]});
    assert!(check(Rule::NoPublishedPorts, "api", none).is_empty());
}

#[test]
fn images() {
    let rule = || Rule::PinnedImages {
        tag_prefixes: vec!["sha-".into()],
    };
    let img = |i: &str| check(rule(), "a", json!({"image": i}));
    assert!(img("127.0.0.1:5000/fetchml/api:sha-0123456789ab").is_empty());
    assert!(img("repo/x@sha256:abcd").is_empty());
    assert!(img("local/redis:local").is_empty(), "allow-listed");
    assert_eq!(
        img("127.0.0.1:5000/busybox"),
        ["127.0.0.1:5000/busybox has no tag, which means latest"]
    );
    assert_eq!(img("busybox:latest"), ["busybox:latest floats on latest"]);
    assert_eq!(
        img("busybox:1.36"),
        ["busybox:1.36: tag `1.36` is neither sha- nor a digest"]
    );
    assert_eq!(check(rule(), "a", json!({"build": {}})).len(), 1);
}

#[test]
fn hardening() {
    let good = json!({
        "read_only": true, "security_opt": ["no-new-privileges:true"], "cap_drop": ["ALL"],
        "healthcheck": {"test": ["CMD", "x"]}, "restart": "unless-stopped",
        "environment": {"AUDIT_SINK_DIR": "/audit", "COMPLIANCE_MODE": "hipaa"},
        "tmpfs": ["/audit:uid=1"]
    });
    let rules = [
        Rule::ReadOnly,
        Rule::NoNewPrivileges,
        Rule::CapDropAll,
        Rule::Healthcheck,
        Rule::RestartPolicy,
        Rule::AuditSink {
            env: "AUDIT_SINK_DIR".into(),
        },
        Rule::EnvEquals {
            key: "COMPLIANCE_MODE".into(),
            value: "{mode}".into(),
        },
    ];
    for r in &rules {
        assert!(check(r.clone(), "api", good.clone()).is_empty(), "{r:?}");
        let empty = check(r.clone(), "api", json!({}));
        assert_eq!(
            empty.len(),
            1,
            "{r:?} must fail on a bare service: {empty:?}"
        );
    }
    let off = json!({"security_opt": ["no-new-privileges:false"], "healthcheck": {"disable": true}, "restart": "no"});
    assert_eq!(check(Rule::NoNewPrivileges, "a", off.clone()).len(), 1);
    assert_eq!(
        check(Rule::Healthcheck, "a", off.clone()),
        ["healthcheck is disabled"]
    );
    assert_eq!(check(Rule::RestartPolicy, "a", off), ["restart is \"no\""]);
    let ro = json!({"environment": {"S": "/audit/x"}, "volumes": [{"target": "/audit", "read_only": true}]});
    assert_eq!(
        check(Rule::AuditSink { env: "S".into() }, "a", ro),
        ["S=/audit/x is on a read-only mount"]
    );
    let bare = json!({"environment": {"S": "/var/log"}, "tmpfs": ["/audit"]});
    assert_eq!(
        check(Rule::AuditSink { env: "S".into() }, "a", bare).len(),
        1
    );
    let wrong = json!({"environment": {"COMPLIANCE_MODE": "standard"}});
    let mode = Rule::EnvEquals {
        key: "COMPLIANCE_MODE".into(),
        value: "{mode}".into(),
    };
    assert_eq!(
        check(mode, "a", wrong),
        ["COMPLIANCE_MODE is \"standard\", want \"hipaa\""]
    );
}

#[test]
fn host_mounts() {
    let rule = || Rule::NoHostMounts {
        paths: crate::tasks::security_modes::policy::rule::default_host_paths(),
        allowed: crate::tasks::security_modes::policy::rule::default_allowed_host_paths(),
    };
    let bind = |src: &str, ro: bool| json!({"volumes": [{"type": "bind", "source": src, "target": "/h", "read_only": ro}]});
    assert_eq!(
        check(rule(), "a", bind("/", true)),
        ["mounts host / at /h (read-only)"]
    );
    assert_eq!(
        check(rule(), "a", bind("/proc", false)),
        ["mounts host /proc at /h"]
    );
    assert_eq!(
        check(rule(), "a", bind("/var/lib/docker/volumes", false)),
        ["mounts host /var/lib/docker/volumes at /h, which is under /var/lib/docker"]
    );
    assert_eq!(check(rule(), "a", bind("/sys/fs/cgroup/", true)).len(), 1);
    // Below `/` is everything: only `/` itself counts, and look-alikes do not.
    for ok in [
        "/srv/data",
        "/proc-like",
        "/etc/localtime",
        "/etc/timezone",
        "/home/app/sys",
        "/devices",
        "/etcetera",
        "/runner",
    ] {
        assert!(check(rule(), "a", bind(ok, true)).is_empty(), "{ok}");
    }
    // A writable time zone file is not the allowed read-only one.
    assert_eq!(
        check(rule(), "a", bind("/etc/localtime", false)),
        ["mounts host /etc/localtime at /h, which is under /etc"]
    );
    let named = json!({"volumes": [{"type": "volume", "source": "sys", "target": "/sys"}]});
    assert!(
        check(rule(), "a", named).is_empty(),
        "a named volume is not a host path"
    );
}

#[test]
fn issue_27_host_mounts_of_dev_usb_and_lib_modules() {
    let rule = Rule::NoHostMounts {
        paths: crate::tasks::security_modes::policy::rule::default_host_paths(),
        allowed: crate::tasks::security_modes::policy::rule::default_allowed_host_paths(),
    };
    let svc = json!({"volumes": [
        {"type": "bind", "source": "/dev/bus/usb", "target": "/dev/bus/usb"},
        {"type": "bind", "source": "/lib/modules", "target": "/lib/modules", "read_only": true},
        {"type": "bind", "source": "/etc/ssl/certs", "target": "/etc/ssl/certs", "read_only": true},
        {"type": "bind", "source": "/root/.ssh", "target": "/k"},
        {"type": "bind", "source": "/run/udev", "target": "/run/udev", "read_only": true},
        {"type": "bind", "source": "/dev", "target": "/dev"}
    ]});
    assert_eq!(
        check(rule, "a", svc),
        [
            "mounts host /dev/bus/usb at /dev/bus/usb, which is under /dev",
            "mounts host /lib/modules at /lib/modules (read-only)",
            "mounts host /etc/ssl/certs at /etc/ssl/certs (read-only), which is under /etc",
            "mounts host /root/.ssh at /k, which is under /root",
            "mounts host /run/udev at /run/udev (read-only), which is under /run",
            "mounts host /dev at /dev",
        ]
    );
}

#[test]
fn issue_27_security_opt_that_lifts_a_confinement() {
    // immich's hardware-acceleration file, and the other two.
    let svc = json!({"security_opt": [
        "apparmor=unconfined", "systempaths=unconfined", "seccomp:unconfined",
        "label=disable", "no-new-privileges:true", "apparmor=docker-default", "label=type:svirt_apache_t"
    ]});
    assert_eq!(
        check(Rule::NoUnconfined, "a", svc),
        [
            "security_opt: apparmor=unconfined (no AppArmor profile)",
            "security_opt: systempaths=unconfined (the host's masked /proc and /sys paths exposed)",
            "security_opt: seccomp:unconfined (no seccomp filter: every system call is allowed)",
            "security_opt: label=disable (no SELinux labelling)",
        ]
    );
    assert!(check(Rule::NoUnconfined, "a", json!({})).is_empty());
}

#[test]
fn devices_and_capabilities() {
    let dev = json!({
        "devices": [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"}, "/dev/kvm"],
        "device_cgroup_rules": ["c 1:3 mr"]
    });
    assert_eq!(
        check(Rule::NoDevices, "a", dev),
        [
            "device /dev/fuse:/dev/fuse",
            "device /dev/kvm",
            "device_cgroup_rules: c 1:3 mr"
        ]
    );
    assert!(check(Rule::NoDevices, "a", json!({})).is_empty());
    let caps = |allowed: &[&str]| Rule::NoAddedCapabilities {
        allowed: allowed.iter().map(|s| s.to_string()).collect(),
    };
    let svc = json!({"cap_add": ["SYS_ADMIN", "cap_net_admin", "ALL", "NET_BIND_SERVICE"]});
    assert_eq!(
        check(caps(&["CAP_NET_BIND_SERVICE"]), "a", svc),
        [
            "cap_add: SYS_ADMIN",
            "cap_add: NET_ADMIN",
            "cap_add: ALL (every capability)"
        ]
    );
    assert!(check(caps(&[]), "a", json!({"cap_drop": ["ALL"]})).is_empty());
}

#[test]
fn every_host_namespace() {
    for (ns, key) in [
        (Namespace::Pid, "pid"),
        (Namespace::Ipc, "ipc"),
        (Namespace::Uts, "uts"),
        (Namespace::Userns, "userns_mode"),
        (Namespace::Cgroup, "cgroup"),
    ] {
        let rule = Rule::NoHostNamespace { namespace: ns };
        assert_eq!(
            check(rule.clone(), "a", json!({ key: "host" })),
            [format!("{key}: host")]
        );
        assert!(check(rule, "a", json!({ key: "service:db" })).is_empty());
    }
}
