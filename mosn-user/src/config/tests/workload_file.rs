//! Tests of node-mode workload files ([`parse_workload`]).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::capture::{capture_base, capture_of, cidr, ports};
use super::*;

fn node_defaults() -> CaptureConfig {
    let mut v = capture_base();
    v["capture"]["mode"] = "node".into();
    v["capture"]["sk_msg"] = json!({ "enabled": true });
    v["capture"]["workloads_dir"] = "/etc/mosn/workloads".into();
    capture_of(&v)
}

#[test]
fn workload_file_json() {
    let defaults = node_defaults();
    let text = r#"{ "cgroup": "/sys/fs/cgroup/kubepods/pod123",
                    "include_outbound_ports": ["80", "9000-9100"],
                    "include_inbound_ports": "*", "exclude_uids": [1337] }"#;
    let w = parse_workload(
        text,
        Path::new("/etc/mosn/workloads/reviews.json"),
        &defaults,
    )
    .unwrap();
    assert_eq!(w.name, "reviews", "the file stem is the default name");
    assert_eq!(w.cgroup, PathBuf::from("/sys/fs/cgroup/kubepods/pod123"));
    assert_eq!(w.include_outbound_ports, ports(&[(80, 80), (9000, 9100)]));
    assert_eq!(w.inbound_ports, InboundPorts::All);
    assert_eq!(w.exclude_uids, vec![1337]);
    assert!(w.sk_msg, "defaults.sk_msg.enabled");

    let text = r#"{ "name": "ratings", "cgroup": "/cg/r", "sk_msg": false, "colour": 1 }"#;
    let (w, warnings) =
        parse_workload_with_warnings(text, Path::new("/etc/mosn/workloads/r.json"), &defaults)
            .unwrap();
    assert_eq!(w.name, "ratings", "an explicit name wins");
    assert!(!w.sk_msg);
    assert_eq!(
        warnings,
        vec!["/etc/mosn/workloads/r.json: ignoring unsupported key colour"]
    );
}

#[test]
fn workload_file_yaml() {
    let defaults = node_defaults();
    let text = "cgroup: /cg/details\ninclude_inbound_ports: [8080, \"9090\"]\nexclude_outbound_cidrs:\n  - 10.1.0.0/16\n";
    for ext in ["yaml", "yml"] {
        let path = PathBuf::from(format!("/etc/mosn/workloads/details.{ext}"));
        let w = parse_workload(text, &path, &defaults).unwrap();
        assert_eq!(w.name, "details");
        assert_eq!(w.inbound_ports, InboundPorts::Only(vec![8080, 9090]));
        assert_eq!(w.exclude_outbound_cidrs, vec![cidr("10.1.0.0", 16)]);
    }
}

#[test]
fn workload_file_errors_name_the_file() {
    let defaults = node_defaults();
    let file = Path::new("/etc/mosn/workloads/bad.json");
    let err = parse_workload(
        r#"{ "cgroup": "rel", "include_outbound_ports": [0] }"#,
        file,
        &defaults,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/mosn/workloads/bad.json: cgroup: \"rel\" is not an absolute path\n\
         /etc/mosn/workloads/bad.json: include_outbound_ports[0]: invalid port \"0\": port 0 \
         cannot be connected to"
    );

    // Syntax and type errors carry the file, the field and the position.
    let err = parse_workload(
        "cgroup: /cg\nexclude_uids: [root]\n",
        Path::new("/w/x.yaml"),
        &defaults,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/w/x.yaml: exclude_uids[0]: invalid type"),
        "{msg}"
    );
    assert!(msg.ends_with("(line 2, column 16)"), "{msg}");
    let err = parse_workload("{", file, &defaults)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/etc/mosn/workloads/bad.json: EOF while parsing"),
        "{err}"
    );
    let err = parse_workload(" \n", file, &defaults)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "/etc/mosn/workloads/bad.json: the workload file is empty"
    );

    // The default name must be a valid name too.
    let err = parse_workload(
        r#"{"cgroup": "/cg"}"#,
        Path::new("/w/my pod.json"),
        &defaults,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/w/my pod.json: name: workload name \"my pod\" contains ' ' (allowed: letters, \
         digits, '_', '.', '-') (taken from the file name; set \"name\")"
    );

    // Inbound capture needs an inbound listener in the running config.
    let mut outbound_only = defaults.clone();
    outbound_only.inbound_listener = None;
    let err = parse_workload(
        r#"{"cgroup": "/cg", "include_inbound_ports": ["8080"]}"#,
        file,
        &outbound_only,
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "/etc/mosn/workloads/bad.json: include_inbound_ports: inbound capture needs"
        ),
        "{err}"
    );
}
