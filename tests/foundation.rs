//! The foundation through the real binary on DPDK net_pcap ports: ARP replies
//! byte for byte, counted drops, clean shutdown on a signal, and config
//! errors that start nothing.

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use harness::{assert_frames_eq, wait_timeout, Iface, Topology, SEQD};

const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
const HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x01];
const DEVICE_HOST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0xbb, 0x02];

/// An Ethernet/IPv4 ARP frame, by hand (RFC 826 layout).
fn arp(
    op: u16,
    eth_dst: [u8; 6],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
    pad_to: usize,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f.resize(f.len().max(pad_to), 0);
    f
}

fn who_has(asker_mac: [u8; 6], asker_ip: [u8; 4], target: [u8; 4], pad_to: usize) -> Vec<u8> {
    arp(1, [0xff; 6], asker_mac, asker_ip, [0; 6], target, pad_to)
}

fn reply(
    from_mac: [u8; 6],
    from_ip: [u8; 4],
    to_mac: [u8; 6],
    to_ip: [u8; 4],
    len: usize,
) -> Vec<u8> {
    let mut f = arp(2, to_mac, from_mac, from_ip, to_mac, to_ip, len);
    // arp() put from_mac as the Ethernet source already (sha); nothing else to fix.
    f.truncate(len.max(42));
    f
}

fn udp(dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOST_MAC, CLIENT_MAC)
        .ipv4([192, 0, 2, 10], dst, 64)
        .udp(40000, 53);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn mac_from_str(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn arp_replies_and_counted_drops() {
    let client_in = vec![
        who_has(HOST_MAC, [192, 0, 2, 10], [192, 0, 2, 1], 42),
        // A minimum-size (padded) request: the reply keeps the size, zero padded.
        who_has(HOST_MAC, [192, 0, 2, 11], [192, 0, 2, 1], 60),
        // Not our address.
        who_has(HOST_MAC, [192, 0, 2, 10], [192, 0, 2, 77], 60),
        // An ARP reply to us: nothing to answer.
        arp(
            2,
            CLIENT_MAC,
            HOST_MAC,
            [192, 0, 2, 10],
            CLIENT_MAC,
            [192, 0, 2, 1],
            60,
        ),
        udp([203, 0, 113, 5], b"hello"),
        // Unicast to some other host's MAC.
        {
            let mut f = udp([192, 0, 2, 1], b"hello");
            f[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x99, 0x99, 0x99]);
            f
        },
        // IPv4 frame cut inside the UDP header.
        udp([203, 0, 113, 5], b"hello")[..14 + 20 + 3].to_vec(),
        // Runt: not even an Ethernet header.
        vec![0xff; 10],
        // IPv6 ethertype.
        {
            let mut f = udp([203, 0, 113, 5], b"x");
            f[12] = 0x86;
            f[13] = 0xdd;
            f
        },
    ];
    let devices_in = vec![
        who_has(DEVICE_HOST_MAC, [198, 51, 100, 20], [198, 51, 100, 1], 42),
        // The client interface's address asked on the devices interface.
        who_has(DEVICE_HOST_MAC, [198, 51, 100, 20], [192, 0, 2, 1], 42),
    ];
    let topo = Topology::new(vec![
        Iface::new("client", "192.0.2.1/24")
            .mac("02:00:00:00:01:01")
            .input(client_in.clone()),
        Iface::new("devices", "198.51.100.1/24").input(devices_in.clone()),
    ]);
    let out = topo.run();
    assert!(
        out.status.success(),
        "seqd failed: {}\n{}",
        out.status,
        out.stderr
    );

    assert_frames_eq(
        out.sent("client"),
        &[
            reply(CLIENT_MAC, [192, 0, 2, 1], HOST_MAC, [192, 0, 2, 10], 42),
            reply(CLIENT_MAC, [192, 0, 2, 1], HOST_MAC, [192, 0, 2, 11], 60),
        ],
        "client",
    );
    // Without an override the port keeps the MAC DPDK gave it.
    let dev_mac = mac_from_str(out.interface("devices")["mac"].as_str().unwrap());
    assert_ne!(dev_mac, CLIENT_MAC);
    assert_frames_eq(
        out.sent("devices"),
        &[reply(
            dev_mac,
            [198, 51, 100, 1],
            DEVICE_HOST_MAC,
            [198, 51, 100, 20],
            42,
        )],
        "devices",
    );

    assert_eq!(out.drops("arp_not_ours"), 2, "{}", out.stats);
    assert_eq!(out.drops("arp_ignored"), 1);
    assert_eq!(out.drops("no_service"), 1);
    assert_eq!(out.drops("truncated"), 2);
    assert_eq!(out.drops("unsupported_ethertype"), 1);
    assert_eq!(out.drops("not_our_mac"), 1);
    assert_eq!(out.drops("tx_full"), 0);
    assert_eq!(out.total_drops(), 8);
    assert_eq!(
        out.interface("client")["port"]["rx_packets"],
        client_in.len() as u64
    );
    assert_eq!(out.interface("client")["port"]["tx_packets"], 2);
    assert_eq!(
        out.interface("devices")["port"]["rx_packets"],
        devices_in.len() as u64
    );
    let w = &out.stats["workers"][0];
    assert_eq!(w["rx_packets"], (client_in.len() + devices_in.len()) as u64);
    assert_eq!(w["tx_packets"], 3);
}

/// Thousands of random and mangled frames: every one is received, none
/// crashes a worker, and each is either answered or counted as a drop.
#[test]
fn garbage_is_counted_never_fatal() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let templates = [
        who_has(HOST_MAC, [192, 0, 2, 10], [192, 0, 2, 1], 42),
        udp([192, 0, 2, 1], b"payload bytes here"),
        {
            let b = PacketBuilder::ethernet2(HOST_MAC, CLIENT_MAC)
                .single_vlan(7.try_into().unwrap())
                .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
                .tcp(1234, 80, 1, 1000);
            let mut v = Vec::new();
            b.write(&mut v, b"GET /").unwrap();
            v
        },
    ];
    let mut frames = Vec::new();
    for i in 0..6000 {
        let mut f = templates[i % templates.len()].clone();
        let len = (next() as usize) % (f.len() + 1);
        f.truncate(len.max(1));
        for _ in 0..(next() % 4) {
            let pos = (next() as usize) % f.len();
            f[pos] = next() as u8;
        }
        frames.push(f);
    }
    let topo = Topology::new(vec![
        Iface::new("client", "192.0.2.1/24").input(frames.clone())
    ]);
    let out = topo.run();
    assert!(
        out.status.success(),
        "seqd failed: {}\n{}",
        out.status,
        out.stderr
    );
    let rx = out.stats["workers"][0]["rx_packets"].as_u64().unwrap();
    let tx = out.stats["workers"][0]["tx_packets"].as_u64().unwrap();
    assert_eq!(rx, frames.len() as u64, "every frame was received");
    assert_eq!(tx, out.sent("client").len() as u64);
    assert_eq!(
        rx,
        tx + out.total_drops(),
        "every frame sent or counted: {}",
        out.stats
    );
    assert!(out.drops("truncated") > 0 && out.drops("malformed") > 0);
}

#[test]
fn sigterm_stops_cleanly_with_complete_pcaps() {
    let topo = Topology::new(vec![Iface::new("client", "192.0.2.1/24")
        .mac("02:00:00:00:01:01")
        .input(vec![
            who_has(HOST_MAC, [192, 0, 2, 10], [192, 0, 2, 1], 60);
            3
        ])]);
    let config = topo.prepare();
    let child = topo.command(&config).spawn().unwrap();
    let _guard = harness::KillOnPanic::new(&child, &topo.prefix);
    // Wait until all three replies are in the output pcap, then signal.
    let start = Instant::now();
    let out_path = topo.output_path("client");
    loop {
        if harness::count_written(&out_path) == 3 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no replies within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = topo.finish(child);
    assert!(
        out.status.success(),
        "exit status {} stderr:\n{}",
        out.status,
        out.stderr
    );
    assert_frames_eq(
        out.sent("client"),
        &vec![reply(CLIENT_MAC, [192, 0, 2, 1], HOST_MAC, [192, 0, 2, 10], 60); 3],
        "client",
    );
    assert!(out.stderr.contains("shutting down"), "{}", out.stderr);
    assert_eq!(out.stats["workers"][0]["rx_packets"], 3);
}

/// Runs `seqd --config` on a config text; returns (exit code, stderr).
fn run_config(text: &str, check_only: bool) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(SEQD)
        .arg(if check_only {
            "--check-config"
        } else {
            "--config"
        })
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status =
        wait_timeout(&mut child, Duration::from_secs(30)).expect("seqd hung on a bad config");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

fn good_config(prefix: &str) -> String {
    format!(
        r#"[eal]
cores = "0-1"
hugepages = false
memory_mb = 128
mbufs = 2047
file_prefix = "{prefix}"

[[interface]]
name = "client"
device = "net_null0"
ipv4 = "192.0.2.1/24"

[[interface]]
name = "devices"
device = "net_null1"
ipv4 = "198.51.100.1/24"

[workers]
lcores = [1]
"#
    )
}

#[test]
fn bad_configs_exit_2_with_one_line_naming_key_and_value() {
    let prefix = harness::file_prefix();
    let good = good_config(&prefix);
    let cases: Vec<(String, &[&str])> = vec![
        (
            good.replace("memory_mb = 128", "memory_mb = \"lots\""),
            &["memory_mb", "lots"],
        ),
        (
            good.replace("hugepages = false", "hugepages = false\nhugepage = true"),
            &["hugepage"],
        ),
        (
            good.replace("198.51.100.1/24", "198.51.100.300/24"),
            &["interface[1].ipv4", "198.51.100.300/24"],
        ),
        (good.replace("lcores = [1]", "lcores = [1, 977]"), &["977"]),
        (
            good.replace("cores = \"0-1\"", "cores = \"0-1,977\""),
            &["eal.cores", "977"],
        ),
        (
            good.replace("net_null1", "net_null0"),
            &["interface[1].device", "net_null0"],
        ),
        ("this is not toml".to_string(), &[":1:"]),
    ];
    for (text, needles) in cases {
        for check_only in [true, false] {
            let (code, err) = run_config(&text, check_only);
            assert_eq!(code, 2, "exit code for {needles:?}: {err}");
            let line = err.trim_end();
            assert_eq!(line.lines().count(), 1, "one line expected, got:\n{err}");
            for n in needles {
                assert!(line.contains(n), "error {line:?} does not mention {n:?}");
            }
        }
    }
    assert!(
        !Path::new("/var/run/dpdk").join(&prefix).exists(),
        "a bad config must start nothing"
    );
    let (code, err) = run_config(&good, true);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn missing_device_fails_to_start_and_cleans_up() {
    let prefix = harness::file_prefix();
    let text = good_config(&prefix).replace("net_null1", "0000:7f:1f.7");
    let (code, err) = run_config(&text, false);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("devices") && err.contains("0000:7f:1f.7"),
        "{err}"
    );
    assert!(!Path::new("/var/run/dpdk").join(&prefix).exists());
}

#[test]
fn example_configs_check() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/pcap-demo.toml");
    let out = Command::new(SEQD)
        .arg("--check-config")
        .arg(conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
