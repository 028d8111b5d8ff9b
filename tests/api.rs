//! The REST API object by object, through the real binary under steady
//! traffic: devices, pools and services created, replaced, deleted (409
//! while in use), a device taken down (its pool takes over) and replaced
//! everywhere, a service replicated, a version rolled back; every refusal
//! leaves the running tables exactly as they were; and a loop of updates
//! loses no packet that every version forwards.

mod harness;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use harness::{file_prefix, http, wait_timeout, write_pcap, SEQD};
use serde_json::{json, Value};

const WIRE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];

/// UDP frames from clients, alternating between service IPs `a` and `b`
/// (port 80), `a` first.
fn alternating(a: [u8; 4], b: [u8; 4], n: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let dst = if i % 2 == 0 { a } else { b };
            let mut f = Vec::new();
            PacketBuilder::ethernet2(GW_MAC, WIRE_MAC)
                .ipv4([198, 18, 0, (i % 200) as u8 + 1], dst, 64)
                .udp(40000 + i, 80)
                .write(&mut f, b"x")
                .unwrap();
            f
        })
        .collect()
}

/// seqd on one net_pcap interface replaying `input` forever, with the REST
/// API on a free loopback port and `tables` as its first version.
struct Seqd {
    child: Child,
    addr: String,
    prefix: String,
    stats: std::path::PathBuf,
    log: std::path::PathBuf,
    _guard: harness::KillOnPanic,
}

const DEVICES: &str = r#"
[client]
interface = "wire"
gateway = "10.0.255.254"
gateway_mac = "02:00:00:00:fe:fe"
[[device]]
name = "web1"
interface = "wire"
mac = "52:54:00:00:00:31"
[[device]]
name = "web2"
interface = "wire"
mac = "52:54:00:00:00:32"
"#;

fn start(dir: &Path, frames: &[Vec<u8>], tables: &str) -> Seqd {
    let input = dir.join("in.pcap");
    write_pcap(&input, frames);
    let prefix = file_prefix();
    let conf = dir.join("seqd.toml");
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
{tables}"#,
            input.display()
        ),
    )
    .unwrap();
    let log = dir.join("seqd.log");
    let stats = dir.join("stats.json");
    let child = Command::new(SEQD)
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
    let guard = harness::KillOnPanic::new(&child, &prefix);
    let addr = harness::control_addr(&log);
    Seqd {
        child,
        addr,
        prefix,
        stats,
        log,
        _guard: guard,
    }
}

impl Seqd {
    /// A request; (status, JSON body).
    fn call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (code, reply) = http(&self.addr, None, method, path, &text);
        let v = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {reply:?}"));
        (code, v)
    }

    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (code, v) = self.call(method, path, body);
        assert!(code == 200 || code == 201, "{method} {path}: {code} {v}");
        v
    }

    /// Stops seqd and returns its final counters.
    fn stop(mut self) -> Value {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(30)).expect("seqd exits");
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(&self.log).unwrap()
        );
        assert!(!Path::new("/var/run/dpdk").join(&self.prefix).exists());
        serde_json::from_str(&std::fs::read_to_string(&self.stats).unwrap()).unwrap()
    }
}

fn service_packets(stats: &Value, name: &str) -> u64 {
    stats["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["service"] == name)
        .map(|s| s["packets_in"].as_u64().unwrap())
        .sum()
}

#[test]
fn objects_are_created_changed_and_deleted_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let seqd = start(
        dir.path(),
        &alternating([100, 64, 0, 1], [100, 64, 0, 2], 64),
        &format!(
            "{DEVICES}\n[[service]]\nname = \"stays\"\nip = \"100.64.0.1\"\n\
             [[service.port]]\nport = 80\nprotocol = \"udp\"\nhops = [\"web1\"]\n"
        ),
    );
    let tables = |s: &Seqd| s.ok("GET", "/v1/tables", Value::Null)["tables"].clone();

    // Interfaces with their port statistics.
    let ifaces = seqd.ok("GET", "/v1/interfaces", Value::Null);
    assert_eq!(ifaces[0]["name"], "wire");
    assert_eq!(ifaces[0]["mac"], "02:00:00:00:00:01");
    assert!(ifaces[0]["port"]["rx_packets"].is_u64(), "{ifaces}");

    // Devices: created (201), created again (409), put (201 new, 200 replaced).
    let fw1 = json!({ "name": "fw1", "interface": "wire", "mac": "52:54:00:00:00:11" });
    let (code, v) = seqd.call("POST", "/v1/devices", fw1.clone());
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["changes"]["devices"]["added"], json!(["fw1"]));
    let (code, _) = seqd.call("POST", "/v1/devices", fw1);
    assert_eq!(code, 409);
    let (code, _) = seqd.call(
        "PUT",
        "/v1/devices/fw2",
        json!({ "interface": "wire", "mac": "52:54:00:00:00:12" }),
    );
    assert_eq!(code, 201);
    let (code, v) = seqd.call(
        "PUT",
        "/v1/devices/fw2",
        json!({ "interface": "wire", "mac": "52:54:00:00:00:13" }),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["changes"]["devices"]["changed"], json!(["fw2"]));
    assert_eq!(
        seqd.ok("GET", "/v1/devices/fw2", Value::Null)["mac"],
        "52:54:00:00:00:13"
    );

    // A pool of the two firewalls, and a service through fw1.
    seqd.ok(
        "POST",
        "/v1/pools",
        json!({ "name": "firewalls", "devices": ["fw1", "fw2"] }),
    );
    let shop = json!({ "name": "shop", "ip": "100.64.0.2",
        "port": [ { "port": 80, "protocol": "udp", "hops": ["fw1", "web1"] } ] });
    let (code, _) = seqd.call("POST", "/v1/services", shop.clone());
    assert_eq!(code, 201);
    assert_eq!(seqd.ok("GET", "/v1/services/shop", Value::Null), shop);
    let with_shop = seqd.ok("GET", "/v1/versions", Value::Null);
    let with_shop = with_shop.as_array().unwrap().last().unwrap()["version"]
        .as_u64()
        .unwrap();

    // Refusals name the key (relative to the body) and change nothing.
    let before = tables(&seqd);
    let mut bad = shop.clone();
    bad["port"][0]["hops"] = json!(["fw1", "nope"]);
    let (code, v) = seqd.call("PUT", "/v1/services/shop", bad);
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["key"], "port[0].hops[1]", "{v}");
    assert_eq!(v["value"], "\"nope\"", "{v}");
    let (code, v) = seqd.call("PUT", "/v1/services/shop", json!({ "name": "other" }));
    assert_eq!((code, v["key"].clone()), (400, json!("name")), "{v}");
    let (code, v) = seqd.call(
        "POST",
        "/v1/services",
        json!({ "name": "clash", "ip": "100.64.0.2", "port": [ { "port": 80, "protocol": "udp", "hops": ["web2"] } ] }),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already used"), "{v}");
    let (code, v) = seqd.call("DELETE", "/v1/devices/fw1", Value::Null);
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["used_by"], json!(["service shop", "pool firewalls"]));
    let (code, _) = seqd.call("DELETE", "/v1/pools/nothing", Value::Null);
    assert_eq!(code, 404);
    assert_eq!(
        tables(&seqd),
        before,
        "a refused request changed the tables"
    );

    // fw1 goes down: the pool's other member takes over.
    let v = seqd.ok("PUT", "/v1/devices/fw1/state", json!({ "state": "down" }));
    assert_eq!(v["changes"]["takeovers"], json!({ "fw1": "fw2" }));
    let fw1 = seqd.ok("GET", "/v1/devices/fw1", Value::Null);
    assert_eq!(
        (fw1["state"].clone(), fw1["taken_over_by"].clone()),
        (json!("down"), json!("fw2"))
    );
    assert_eq!(fw1["used_by"], json!(["service shop", "pool firewalls"]));

    // web1 replaced by web2 everywhere: both services regenerated at once.
    let v = seqd.ok(
        "POST",
        "/v1/devices/web1/replace",
        json!({ "with": "web2" }),
    );
    assert_eq!(v["regenerated"], json!(["stays", "shop"]));
    assert_eq!(
        seqd.ok("GET", "/v1/services/shop", Value::Null)["port"][0]["hops"],
        json!(["fw1", "web2"])
    );
    // web1 is free now; it can go.
    seqd.ok("DELETE", "/v1/devices/web1", Value::Null);

    // Replicate shop under a new service IP, then delete the copy.
    let (code, v) = seqd.call(
        "POST",
        "/v1/services/shop/replicate",
        json!({ "name": "shop-eu", "ip": "100.64.0.3" }),
    );
    assert_eq!(code, 201, "{v}");
    let copy = seqd.ok("GET", "/v1/services/shop-eu", Value::Null);
    assert_eq!(copy["ip"], "100.64.0.3");
    assert_eq!(
        copy["port"],
        seqd.ok("GET", "/v1/services/shop", Value::Null)["port"]
    );
    seqd.ok("DELETE", "/v1/services/shop-eu", Value::Null);
    let (code, _) = seqd.call("GET", "/v1/services/shop-eu", Value::Null);
    assert_eq!(code, 404);

    // Roll back to the version that first had shop: its tables exactly.
    let kept = seqd.ok("GET", &format!("/v1/versions/{with_shop}"), Value::Null);
    let v = seqd.ok(
        "POST",
        &format!("/v1/versions/{with_shop}/rollback"),
        Value::Null,
    );
    assert_eq!(v["origin"], "rollback");
    assert_eq!(v["change"], format!("rollback to {with_shop}"));
    assert_eq!(tables(&seqd), kept["tables"]);
    let (code, _) = seqd.call("POST", "/v1/versions/999/rollback", Value::Null);
    assert_eq!(code, 404);

    // Routes that do not exist, and methods a route does not take.
    let (code, _) = seqd.call("GET", "/v1/nothing", Value::Null);
    assert_eq!(code, 404);
    let (code, v) = seqd.call("DELETE", "/v1/tables", Value::Null);
    assert_eq!(code, 405, "{v}");

    // Every accepted change is one version, in order, naming its request.
    let versions = seqd.ok("GET", "/v1/versions", Value::Null);
    let changes: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["change"].as_str())
        .collect();
    assert_eq!(
        changes,
        vec![
            "POST /v1/devices",
            "PUT /v1/devices/fw2",
            "PUT /v1/devices/fw2",
            "POST /v1/pools",
            "POST /v1/services",
            "PUT /v1/devices/fw1/state",
            "POST /v1/devices/web1/replace",
            "DELETE /v1/devices/web1",
            "POST /v1/services/shop/replicate",
            "DELETE /v1/services/shop-eu",
            &format!("rollback to {with_shop}"),
        ]
    );
    let stats = seqd.stop();
    assert!(service_packets(&stats, "stays") > 0);
}

/// 100 changes in a row — a service's sequence switched between two
/// servers, another's ACL rewritten, a third service created and deleted —
/// while traffic runs to the first two. Every version forwards every one of
/// their packets, so none may be lost.
#[test]
fn a_hundred_updates_under_traffic_lose_no_packet() {
    let dir = tempfile::tempdir().unwrap();
    let seqd = start(
        dir.path(),
        &alternating([100, 64, 0, 1], [100, 64, 0, 2], 64),
        &format!(
            "{DEVICES}\n[[service]]\nname = \"guarded\"\nip = \"100.64.0.1\"\n\
             [[service.port]]\nport = 80\nprotocol = \"udp\"\nhops = [\"web1\"]\n\
             [[service]]\nname = \"churn\"\nip = \"100.64.0.2\"\n\
             [[service.port]]\nport = 80\nprotocol = \"udp\"\nhops = [\"web1\"]\n"
        ),
    );
    let mut worst = Duration::ZERO;
    for i in 0..100u32 {
        let (method, path, body) = match i % 4 {
            0 | 2 => (
                "PUT",
                "/v1/services/churn".to_string(),
                json!({ "ip": "100.64.0.2", "port": [ { "port": 80, "protocol": "udp",
                    "hops": [if i % 4 == 0 { "web2" } else { "web1" }] } ] }),
            ),
            1 => (
                "PUT",
                "/v1/services/guarded/acl".to_string(),
                // Every version allows the clients, by a rule or by default.
                json!([{ "interface": "wire", "default": if i % 8 == 1 { "allow" } else { "deny" },
                         "rule": [ { "priority": 10 + i, "src": "198.18.0.0/16", "action": "allow" } ] }]),
            ),
            _ if i % 8 == 3 => (
                "POST",
                "/v1/services".to_string(),
                json!({ "name": "extra", "ip": "100.64.0.9",
                        "port": [ { "port": 80, "hops": ["web2"] } ] }),
            ),
            _ => ("DELETE", "/v1/services/extra".to_string(), Value::Null),
        };
        let v = seqd.ok(method, &path, body);
        let version = v["version"].as_u64().unwrap();
        // From the reply to the worker running it.
        let replied = Instant::now();
        let want = format!(r#"seqd_worker_table_version{{lcore="1"}} {version}"#);
        loop {
            let (_, m) = http(&seqd.addr, None, "GET", "/metrics", "");
            if m.contains(&want) {
                break;
            }
            assert!(
                replied.elapsed() < Duration::from_secs(10),
                "never ran {version}"
            );
        }
        worst = worst.max(replied.elapsed());
    }
    eprintln!("100 updates: worst reply-to-worker time {worst:?}");
    let stats = seqd.stop();
    assert_eq!(stats["table_version"], 101);
    for (reason, n) in stats["drops"].as_object().unwrap() {
        assert_eq!(n, 0, "{reason}: {}", stats["drops"]);
    }
    let rx = stats["workers"][0]["rx_packets"].as_u64().unwrap();
    let tx = stats["workers"][0]["tx_packets"].as_u64().unwrap();
    assert!(rx > 1000, "too little traffic to show anything: {rx}");
    assert_eq!(tx, rx);
    // The replay alternates guarded, churn, guarded, ... from the start.
    assert_eq!(service_packets(&stats, "guarded"), rx.div_ceil(2));
    assert_eq!(service_packets(&stats, "churn"), rx / 2);
}
