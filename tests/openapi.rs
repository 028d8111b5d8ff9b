//! docs/openapi.json is the REST API: every route it documents is served by
//! a running seqd, and every route seqd serves (its route table) is in it.

mod harness;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{file_prefix, http, wait_timeout, SEQD};
use seqd::control::api::{PLAIN_ROUTES, ROUTES};
use serde_json::Value;

fn documented() -> BTreeSet<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_document_and_the_route_table_agree() {
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .chain(
            PLAIN_ROUTES
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string())),
        )
        .collect();
    let documented = documented();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

/// Each documented route, called on a running seqd, reaches a handler: no
/// "no such route" 404 and no 405 — whatever the handler then answers.
#[test]
fn every_documented_route_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = file_prefix();
    let conf = dir.path().join("seqd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[eal]
cores = "0-1"
memory_mb = 128
mbufs = 2047
file_prefix = "{prefix}"
[[interface]]
name = "wire"
device = "net_null0"
ipv4 = "10.0.0.1/16"
mac = "02:00:00:00:00:01"
[workers]
lcores = [1]
[control]
listen = "127.0.0.1:0"
"#
        ),
    )
    .unwrap();
    let log = dir.path().join("seqd.log");
    let mut child = Command::new(SEQD)
        .args(["--config", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let _guard = harness::KillOnPanic::new(&child, &prefix);
    let addr = harness::control_addr(&log);
    let unrouted =
        |code: u16, body: &str| code == 405 || (code == 404 && body.contains("no such route"));
    // The check can tell: a route nobody serves is caught by it.
    let (code, body) = http(&addr, None, "GET", "/v1/unknown", "");
    assert!(unrouted(code, &body), "{code} {body}");
    let (code, body) = http(&addr, None, "PATCH", "/v1/tables", "");
    assert!(unrouted(code, &body), "{code} {body}");
    for (method, path) in documented() {
        let concrete = path
            .replace("{version}", "1")
            .replace("{device}", "d1")
            .replace("{pool}", "p1")
            .replace("{service}", "s1");
        let (code, body) = http(&addr, None, &method, &concrete, "{}");
        assert!(!unrouted(code, &body), "{method} {path}: {code} {body}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd exits");
    assert!(status.success());
}
