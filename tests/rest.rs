//! The provisioner's REST path through the real binary, under steady
//! traffic: a whole-table PUT is applied whole or not at all, validate is a
//! dry run, every accepted change gets a version, and no packet that both
//! versions forward is lost.

mod harness;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use harness::{file_prefix, http, wait_timeout, write_pcap, SEQD};
use serde_json::{json, Value};

const WIRE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];

fn tables(acl: Value) -> Value {
    json!({
        "client": { "interface": "wire", "gateway": "10.0.255.254", "gateway_mac": "02:00:00:00:fe:fe" },
        "device": [
            { "name": "web1", "interface": "wire", "mac": "52:54:00:00:00:31" },
            { "name": "web2", "interface": "wire", "mac": "52:54:00:00:00:32" }
        ],
        "service": [
            { "name": "stays", "ip": "100.64.0.1", "port": [ { "port": 80, "hops": ["web1"] } ] },
            { "name": "closes", "ip": "100.64.0.2", "port": [ { "port": 80, "hops": ["web2"] } ] }
        ],
        "acl": acl
    })
}

#[test]
fn whole_table_put_under_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [100, 64, 0, 1]
            } else {
                [100, 64, 0, 2]
            };
            let b = PacketBuilder::ethernet2(GW_MAC, WIRE_MAC)
                .ipv4([198, 18, 0, (i % 200) as u8 + 1], dst, 64)
                .udp(40000 + i, 80);
            let mut f = Vec::new();
            b.write(&mut f, b"x").unwrap();
            f
        })
        .collect();
    write_pcap(&input, &frames);
    let prefix = file_prefix();
    // The file has no services: everything comes over REST.
    let conf = dir.path().join("seqd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[eal]
cores = "0-1"
memory_mb = 256
mbufs = 4095
file_prefix = "{prefix}"
[[interface]]
name = "wire"
device = "net_pcap0,rx_pcap={},infinite_rx=1"
ipv4 = "10.0.0.1/16"
mac = "02:00:00:00:00:01"
[workers]
lcores = [1]
[control]
listen = "127.0.0.1:0"
"#,
            input.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("seqd.log");
    let stats = dir.path().join("stats.json");
    let mut child = Command::new(SEQD)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "--stats-file",
            stats.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let _guard = harness::KillOnPanic::new(&child, &prefix);
    let addr = harness::control_addr(&log);
    // A sequence naming a device that does not exist: refused, naming the
    // JSON path; then a body of the wrong type.
    let mut bad = tables(json!([]));
    bad["service"][0]["port"][0]["hops"] = json!(["web9"]);
    let (code, body) = http(&addr, None, "PUT", "/v1/tables", &bad.to_string());
    assert_eq!(code, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["key"], "service[0].port[0].hops[0]", "{body}");
    assert!(err["error"].as_str().unwrap().contains("web9"), "{body}");
    let (code, body) = http(
        &addr,
        None,
        "PUT",
        "/v1/tables",
        r#"{"service": [{"name": 5}]}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("service[0].name"), "{body}");

    // Version 2: both services, UDP.
    let mut v2 = tables(json!([]));
    for s in 0..2 {
        v2["service"][s]["port"][0]["protocol"] = json!("udp");
    }
    let (code, body) = http(&addr, None, "POST", "/v1/validate", &v2.to_string());
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&addr, None, "GET", "/v1/versions", "");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "validate publishes nothing"
    );
    let (code, body) = http(&addr, None, "PUT", "/v1/tables", &v2.to_string());
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 2);
    // From the reply to every worker running version 2 (reported, not asserted).
    let replied = Instant::now();
    loop {
        let (_, m) = http(&addr, None, "GET", "/metrics", "");
        if m.contains(r#"seqd_worker_table_version{lcore="1"} 2"#) {
            break;
        }
        assert!(
            replied.elapsed() < Duration::from_secs(10),
            "the worker never took version 2"
        );
    }
    eprintln!("reply to all workers on version 2: {:?}", replied.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    // Version 3: "closes" gets a deny-all ACL; "stays" must lose nothing.
    let mut v3 = v2.clone();
    v3["acl"] = json!([{ "interface": "wire", "service": "closes", "default": "deny" }]);
    let (code, body) = http(&addr, None, "PUT", "/v1/tables", &v3.to_string());
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 3);
    std::thread::sleep(Duration::from_millis(300));
    let (_, body) = http(&addr, None, "GET", "/v1/versions", "");
    let versions: Value = serde_json::from_str(&body).unwrap();
    let origins: Vec<_> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["origin"].clone())
        .collect();
    assert_eq!(origins, vec![json!("config"), json!("rest"), json!("rest")]);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd exits");
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(s["table_version"], 3);
    let drops = &s["drops"];
    let denied = drops["acl_deny"].as_u64().unwrap();
    let no_service = drops["no_service"].as_u64().unwrap();
    assert!(denied > 0, "version 3 never took effect: {drops}");
    for (reason, n) in drops.as_object().unwrap() {
        if reason != "acl_deny" && reason != "no_service" {
            assert_eq!(n, 0, "{reason}: {drops}");
        }
    }
    let rx = s["workers"][0]["rx_packets"].as_u64().unwrap();
    let tx = s["workers"][0]["tx_packets"].as_u64().unwrap();
    assert_eq!(rx, tx + denied + no_service);
    let service = |name: &str| {
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["service"] == name)
            .unwrap()["packets_in"]
            .as_u64()
            .unwrap()
    };
    // Before version 2 nothing was a service (no_service); from version 2 on,
    // "stays" was forwarded by every version: its packets plus the
    // no_service drops of its turn in the replay account for every one of
    // its frames. Half the frames are its, in a fixed order.
    let stays_frames = rx.div_ceil(2);
    assert!(service("stays") > 0);
    assert!(service("stays") <= stays_frames);
    assert_eq!(
        service("stays") + service("closes") + denied + no_service,
        rx
    );
}

fn start(conf: &Path, log: &Path) -> (std::process::Child, String) {
    let child = Command::new(SEQD)
        .args(["--config", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let addr = harness::control_addr(log);
    (child, addr)
}

/// Version `n` of the provisioner's table: services s0..=s{n}.
fn numbered_tables(n: usize) -> Value {
    let services: Vec<Value> = (0..=n)
        .map(|i| {
            json!({ "name": format!("s{i}"), "ip": format!("100.64.{}.{}", i / 200, i % 200 + 1),
                    "port": [ { "port": 80, "hops": ["web1"] } ] })
        })
        .collect();
    json!({
        "client": { "interface": "wire", "gateway": "10.0.255.254", "gateway_mac": "02:00:00:00:fe:fe" },
        "device": [ { "name": "web1", "interface": "wire", "mac": "52:54:00:00:00:31" } ],
        "service": services
    })
}

#[test]
fn every_acknowledged_change_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, &[vec![0xff; 60]]);
    let prefix = file_prefix();
    let state = dir.path().join("state");
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
device = "net_pcap0,rx_pcap={}"
ipv4 = "10.0.0.1/16"
mac = "02:00:00:00:00:01"
[workers]
lcores = [1]
[control]
listen = "127.0.0.1:0"
state_dir = "{}"
"#,
            input.display(),
            state.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("seqd.log");
    let (mut child, addr) = start(&conf, &log);
    let _guard = harness::KillOnPanic::new(&child, &prefix);
    // A stream of updates; remember the last one acknowledged.
    let pusher = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut last_ok = None;
            for n in 0..10_000 {
                let body = numbered_tables(n).to_string();
                let Ok(mut s) = TcpStream::connect(&addr) else {
                    break;
                };
                let req = format!(
                    "PUT /v1/tables HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(req.as_bytes()).is_err() {
                    break;
                }
                let mut out = String::new();
                if s.read_to_string(&mut out).is_err()
                    || out.split_whitespace().nth(1) != Some("200")
                {
                    break;
                }
                let v: Value = serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap();
                last_ok = Some((n, v["version"].as_u64().unwrap()));
            }
            last_ok
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_timeout(&mut child, Duration::from_secs(30)).expect("killed");
    let (n, version) = pusher
        .join()
        .unwrap()
        .expect("some updates were acknowledged");
    // A killed primary leaves its runtime directory: ours to clean.
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));

    let log2 = dir.path().join("seqd2.log");
    let (mut child, addr) = start(&conf, &log2);
    let _guard2 = harness::KillOnPanic::new(&child, &prefix);
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.contains("restored the last accepted version"),
        "{text}"
    );
    let (_, body) = http(&addr, None, "GET", "/v1/versions", "");
    let versions: Value = serde_json::from_str(&body).unwrap();
    let versions = versions.as_array().unwrap();
    let restored = versions.last().unwrap()["version"].as_u64().unwrap();
    // The acknowledged version, or one more whose reply the kill cut off.
    assert!(
        restored == version || restored == version + 1,
        "acked {version}, restored {restored}"
    );
    // The versions before it are listed again, each once, in order, and the
    // acknowledged one can be read back.
    assert!(versions.len() > 1, "{versions:?}");
    assert!(versions
        .windows(2)
        .all(|w| w[0]["version"].as_u64() < w[1]["version"].as_u64()));
    let (status, _) = http(&addr, None, "GET", &format!("/v1/versions/{version}"), "");
    assert_eq!(status, 200);
    let (_, body) = http(&addr, None, "GET", "/v1/stats", "");
    let stats: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    for i in 0..=n {
        assert!(
            names.contains(&format!("s{i}").as_str()),
            "s{i} (acknowledged) is missing after restart"
        );
    }
    // Roll back, from the state directory, to the version before.
    let earlier = versions[versions.len() - 2]["version"].as_u64().unwrap();
    let (status, kept) = http(&addr, None, "GET", &format!("/v1/versions/{earlier}"), "");
    assert_eq!(status, 200, "{kept}");
    let (status, body) = http(
        &addr,
        None,
        "POST",
        &format!("/v1/versions/{earlier}/rollback"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (_, now) = http(&addr, None, "GET", "/v1/tables", "");
    assert_eq!(
        serde_json::from_str::<Value>(&now).unwrap()["tables"],
        serde_json::from_str::<Value>(&kept).unwrap()["tables"]
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("exits");
    assert!(status.success());
}

#[test]
fn tokens_scope_what_tenants_see_and_change() {
    const ADMIN: &str = "admin-token-0123456789";
    const ACME: &str = "tenant-acme-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, &[vec![0xff; 60]]);
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
device = "net_pcap0,rx_pcap={}"
ipv4 = "10.0.0.1/16"
mac = "02:00:00:00:00:01"
[workers]
lcores = [1]
[client]
interface = "wire"
gateway = "10.0.255.254"
gateway_mac = "02:00:00:00:fe:fe"
[[device]]
name = "web1"
interface = "wire"
mac = "52:54:00:00:00:31"
[[service]]
name = "stays"
ip = "100.64.0.1"
[[service.port]]
port = 80
hops = ["web1"]
[[service]]
name = "closes"
ip = "100.64.0.2"
[[service.port]]
port = 80
hops = ["web1"]
[control]
listen = "127.0.0.1:0"
admin_tokens = ["{ADMIN}"]
[[control.tenant]]
name = "acme"
token = "{ACME}"
services = ["stays"]
"#,
            input.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("seqd.log");
    let (mut child, addr) = start(&conf, &log);
    let _guard = harness::KillOnPanic::new(&child, &prefix);

    let rules = json!([{ "interface": "wire", "default": "deny",
                         "rule": [{ "priority": 10, "src": "198.18.0.0/16", "action": "allow" }] }]);
    assert_eq!(http(&addr, None, "GET", "/v1/stats", "").0, 401);
    assert_eq!(
        http(
            &addr,
            Some("wrong-token-0123456789"),
            "GET",
            "/v1/stats",
            ""
        )
        .0,
        401
    );
    assert_eq!(http(&addr, Some(ACME), "GET", "/v1/versions", "").0, 403);
    assert_eq!(http(&addr, Some(ACME), "PUT", "/v1/tables", "{}").0, 403);
    assert_eq!(http(&addr, Some(ACME), "POST", "/v1/validate", "{}").0, 403);
    assert_eq!(
        http(
            &addr,
            Some(ACME),
            "PUT",
            "/v1/services/closes/acl",
            &rules.to_string()
        )
        .0,
        403
    );
    assert_eq!(
        http(
            &addr,
            None,
            "PUT",
            "/v1/services/stays/acl",
            &rules.to_string()
        )
        .0,
        401
    );
    assert_eq!(
        http(&addr, Some(ADMIN), "PUT", "/v1/services/nope/acl", "[]").0,
        404
    );
    // The tenant edits its own service's rules.
    let (code, body) = http(
        &addr,
        Some(ACME),
        "PUT",
        "/v1/services/stays/acl",
        &rules.to_string(),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 2);
    let mut bad = rules.clone();
    bad[0]["rule"][0]["src"] = json!("198.18.0.0/33");
    let (code, body) = http(
        &addr,
        Some(ACME),
        "PUT",
        "/v1/services/stays/acl",
        &bad.to_string(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("198.18.0.0/33"), "{body}");
    let mut other = rules.clone();
    other[0]["service"] = json!("closes");
    assert_eq!(
        http(
            &addr,
            Some(ACME),
            "PUT",
            "/v1/services/stays/acl",
            &other.to_string()
        )
        .0,
        400
    );
    // The tenant lists and reads its own service only, and its rules.
    let (code, body) = http(&addr, Some(ACME), "GET", "/v1/services", "");
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(listed[0]["name"], "stays");
    assert_eq!(
        http(&addr, Some(ACME), "GET", "/v1/services/stays", "").0,
        200
    );
    assert_eq!(
        http(&addr, Some(ACME), "GET", "/v1/services/closes", "").0,
        403
    );
    let (code, body) = http(&addr, Some(ACME), "GET", "/v1/services/stays/acl", "");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["rule"][0]["src"],
        "198.18.0.0/16"
    );
    assert_eq!(
        http(&addr, Some(ACME), "GET", "/v1/services/closes/acl", "").0,
        403
    );
    // Everything else about the tables is the admin's.
    for (method, path) in [
        ("GET", "/v1/devices"),
        ("POST", "/v1/devices"),
        ("DELETE", "/v1/services/stays"),
        ("PUT", "/v1/services/stays"),
        ("POST", "/v1/services/stays/replicate"),
        ("GET", "/v1/interfaces"),
        ("POST", "/v1/versions/1/rollback"),
    ] {
        assert_eq!(
            http(&addr, Some(ACME), method, path, "{}").0,
            403,
            "{method} {path}"
        );
        assert_eq!(
            http(&addr, None, method, path, "{}").0,
            401,
            "{method} {path}"
        );
    }
    assert_eq!(http(&addr, Some(ADMIN), "GET", "/v1/services", "").0, 200);
    // The tenant sees its own service and rules only.
    let (code, body) = http(&addr, Some(ACME), "GET", "/v1/stats", "");
    assert_eq!(code, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<_> = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service"].clone())
        .collect();
    assert_eq!(names, vec![json!("stays")]);
    assert_eq!(s["acl_defaults"].as_array().unwrap().len(), 1);
    assert!(s["devices"].as_array().unwrap().is_empty());
    let (_, body) = http(&addr, Some(ADMIN), "GET", "/v1/stats", "");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["services"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, body) = http(&addr, Some(ADMIN), "GET", "/v1/versions", "");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(wait_timeout(&mut child, Duration::from_secs(30))
        .expect("exits")
        .success());
}
