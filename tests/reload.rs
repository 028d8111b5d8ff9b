//! Live updates through the real binary: under steady traffic (net_pcap
//! replaying forever), SIGHUP with a bad config changes nothing, SIGHUP with
//! a new ACL takes effect, and no packet that both versions forward is lost.

mod harness;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use etherparse::PacketBuilder;
use harness::{file_prefix, wait_timeout, write_pcap, SEQD};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WIRE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];

fn config(prefix: &str, input: &Path, acl: &str) -> String {
    format!(
        r#"[eal]
cores = "0-1"
hugepages = false
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
hops = ["web2"]
{acl}"#,
        input.display()
    )
}

#[test]
fn sighup_publishes_a_new_version_without_losing_packets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    // Alternating: "stays" (allowed by every version), then "closes".
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [100, 64, 0, 1]
            } else {
                [100, 64, 0, 2]
            };
            let b = PacketBuilder::ethernet2(GW_MAC, WIRE_MAC)
                .ipv4([198, 18, 0, (i % 200) as u8 + 1], dst, 64)
                .tcp(40000 + i, 80, 1, 1024)
                .syn();
            let mut f = Vec::new();
            b.write(&mut f, &[]).unwrap();
            f
        })
        .collect();
    write_pcap(&input, &frames);
    let prefix = file_prefix();
    let conf = dir.path().join("seqd.toml");
    let log = dir.path().join("seqd.log");
    let stats = dir.path().join("stats.json");
    std::fs::write(&conf, config(&prefix, &input, "")).unwrap();
    let mut child = Command::new(SEQD)
        .arg("--config")
        .arg(&conf)
        .arg("--stats-file")
        .arg(&stats)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let _guard = harness::KillOnPanic::new(&child, &prefix);
    let pid = Pid::from_raw(child.id() as i32);
    harness::wait_for_log(&log, "seqd ready");

    // A config that does not compile: refused, version 1 keeps running.
    std::fs::write(
        &conf,
        config(
            &prefix,
            &input,
            "[[acl]]\ninterface = \"nope\"\ndefault = \"deny\"\n",
        ),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let text = harness::wait_for_log(&log, "reload refused");
    assert!(
        text.contains("acl[0].interface") && text.contains("nope"),
        "{text}"
    );

    // Version 2 closes one service; the other must not lose a packet.
    std::fs::write(
        &conf,
        config(
            &prefix,
            &input,
            "[[acl]]\ninterface = \"wire\"\nservice = \"closes\"\ndefault = \"deny\"\n",
        ),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    harness::wait_for_log(&log, "published version 2");
    std::thread::sleep(Duration::from_millis(300));
    kill(pid, Signal::SIGTERM).unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd exits");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}\n{text}");
    assert!(!Path::new("/var/run/dpdk").join(&prefix).exists());

    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(s["table_version"], 2);
    let rx = s["workers"][0]["rx_packets"].as_u64().unwrap();
    let tx = s["workers"][0]["tx_packets"].as_u64().unwrap();
    let denied = s["drops"]["acl_deny"].as_u64().unwrap();
    for (reason, n) in s["drops"].as_object().unwrap() {
        if reason != "acl_deny" {
            assert_eq!(n, 0, "{reason}: {}", s["drops"]);
        }
    }
    assert!(denied > 0, "version 2 never took effect");
    assert_eq!(rx, tx + denied, "every packet was sent or denied");
    // The replay order is fixed, so how many of each service arrived is known.
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
    assert_eq!(
        service("stays"),
        rx.div_ceil(2),
        "a packet both versions forward was lost"
    );
    assert_eq!(service("closes") + denied, rx / 2);
    // The counters kept their slots across versions.
    assert!(service("closes") > 0);
}
