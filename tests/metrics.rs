//! The control thread through the real binary: Prometheus `/metrics` and
//! `/v1/stats` served while seqd runs, with the counters billing reads
//! (per service and direction, per device, per ACL rule and client, drops,
//! port statistics) equal to what the test sent.

mod harness;

use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use harness::{count_written, Iface, Topology};

const CLIENT_IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const DEV_IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const WEB1_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x31];

const TOML: &str = r#"
[control]
listen = "127.0.0.1:0"

[client]
interface = "client"
gateway = "192.0.2.254"
gateway_mac = "02:00:00:00:fe:fe"

[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:31"

[[service]]
name = "acme"
ip = "203.0.113.10"
[[service.port]]
port = 80
hops = ["web1"]

[[acl]]
interface = "client"
service = "acme"
default = "deny"
[[acl.rule]]
priority = 10
src = "198.18.2.7/32"
protocol = "tcp"
action = "allow"
"#;

fn tcp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1024)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// GET `path`, expecting 200; the body.
fn get(addr: &str, path: &str) -> String {
    let (code, body) = harness::http(addr, None, "GET", path, "");
    assert_eq!(code, 200, "{path}: {body}");
    body
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `promtool check metrics` (Debian package `prometheus`, installed by
/// scripts/setup.sh) on a scrape: it parses the text exposition and lints
/// it (counters end in `_total`, base units, help on every family, snake
/// case, ...). Any problem it reports fails the test; there are no
/// exceptions.
fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus: run scripts/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {} {report}\non:\n{metrics}",
        out.status
    );
}

#[test]
fn metrics_and_stats_are_served_while_running() {
    let allowed = [198, 18, 2, 7];
    let denied = [198, 18, 9, 9];
    let svc = [203, 0, 113, 10];
    let client_in = vec![
        tcp(CLIENT_IF_MAC, GW_MAC, allowed, 40000, svc, 80, b"one"),
        tcp(CLIENT_IF_MAC, GW_MAC, allowed, 40000, svc, 80, b"second"),
        tcp(CLIENT_IF_MAC, GW_MAC, denied, 40001, svc, 80, b"no"),
    ];
    let reply = tcp(DEV_IF_MAC, WEB1_MAC, svc, 80, allowed, 40000, b"reply!!");
    let mut topo = Topology::new(vec![
        Iface::new("client", "192.0.2.1/24")
            .mac("02:00:00:00:01:01")
            .input(client_in.clone()),
        Iface::new("devices", "198.51.100.1/24")
            .mac("02:00:00:00:02:02")
            .input(vec![reply.clone()]),
    ]);
    topo.extra_toml = TOML.to_string();
    let config = topo.prepare();
    let log = topo.dir.path().join("seqd.log");
    let mut cmd = topo.command(&config);
    cmd.stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let child = cmd.spawn().unwrap();
    let _guard = harness::KillOnPanic::new(&child, &topo.prefix);

    // Where the control thread listens (port 0: the kernel picked one).
    let addr = harness::control_addr(&log);
    let start = Instant::now();
    // Wait until the replay went through: 2 frames to web1, 1 to the gateway.
    while count_written(&topo.output_path("devices")) < 2
        || count_written(&topo.output_path("client")) < 1
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "traffic did not go through"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(&addr, "/healthz"), "ok\n");
    let m = get(&addr, "/metrics");
    // Every family is in this scrape: services, devices, ACL rules,
    // defaults and clients, drops, ports, workers, the histogram.
    for family in [
        "seqd_service_packets_total",
        "seqd_device_bytes_total",
        "seqd_acl_rule_packets_total",
        "seqd_acl_default_bytes_total",
        "seqd_acl_client_packets_total",
        "seqd_drops_total",
        "seqd_port_rx_nombuf_total",
        "seqd_port_link_up",
        "seqd_worker_busy_ratio",
        "seqd_table_publish_seconds",
    ] {
        assert!(m.contains(&format!("# TYPE {family} ")), "{family}:\n{m}");
    }
    promtool_check(&m);
    let svc_l = r#"ip="203.0.113.10",port="80",protocol="tcp",service="acme""#;
    let in_bytes = (client_in[0].len() + client_in[1].len()) as f64;
    assert_eq!(
        sample(
            &m,
            &format!(r#"seqd_service_packets_total{{direction="in",{svc_l}}}"#)
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"seqd_service_bytes_total{{direction="in",{svc_l}}}"#)
        ),
        in_bytes
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"seqd_service_packets_total{{direction="out",{svc_l}}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"seqd_service_bytes_total{{direction="out",{svc_l}}}"#)
        ),
        reply.len() as f64
    );
    assert_eq!(
        sample(
            &m,
            r#"seqd_device_packets_total{device="web1",direction="to"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            r#"seqd_device_packets_total{device="web1",direction="from"}"#
        ),
        1.0
    );
    assert_eq!(sample(&m, r#"seqd_drops_total{reason="acl_deny"}"#), 1.0);
    assert_eq!(sample(&m, r#"seqd_drops_total{reason="no_service"}"#), 0.0);
    assert_eq!(
        sample(
            &m,
            r#"seqd_acl_rule_packets_total{action="allow",interface="client",priority="10",service="acme"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            r#"seqd_acl_client_bytes_total{client="198.18.2.7",interface="client",service="acme"}"#
        ),
        in_bytes
    );
    assert_eq!(
        sample(
            &m,
            r#"seqd_acl_default_packets_total{action="deny",interface="client",service="acme"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&m, r#"seqd_port_rx_packets_total{interface="client"}"#),
        3.0
    );
    assert_eq!(
        sample(&m, r#"seqd_port_tx_packets_total{interface="devices"}"#),
        2.0
    );
    assert_eq!(sample(&m, "seqd_table_version"), 1.0);
    assert!(m.contains("# TYPE seqd_service_bytes_total counter"), "{m}");
    assert!(
        m.contains("# TYPE seqd_table_publish_seconds histogram"),
        "{m}"
    );

    let s: serde_json::Value = serde_json::from_str(&get(&addr, "/v1/stats")).unwrap();
    assert_eq!(s["services"][0]["packets_in"], 2);
    assert_eq!(s["drops"]["acl_deny"], 1);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = topo.finish(child);
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The control thread stopped with seqd: nothing listens any more.
    assert!(TcpStream::connect(&addr).is_err());
}

/// With `metrics_listen`, `/metrics` is served there and not on `listen`.
#[test]
fn metrics_on_their_own_address() {
    let mut topo = Topology::new(vec![Iface::new("client", "192.0.2.1/24")
        .mac("02:00:00:00:01:01")
        .input(vec![vec![0xff; 60]])]);
    topo.extra_toml =
        "[control]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n".to_string();
    let config = topo.prepare();
    let log = topo.dir.path().join("seqd.log");
    let mut cmd = topo.command(&config);
    cmd.stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let child = cmd.spawn().unwrap();
    let _guard = harness::KillOnPanic::new(&child, &topo.prefix);
    let addr = harness::control_addr(&log);
    let metrics_addr = harness::wait_for_log(&log, "metrics listening")
        .lines()
        .find(|l| l.contains("metrics listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_ne!(addr, metrics_addr);
    let m = get(&metrics_addr, "/metrics");
    assert_eq!(sample(&m, "seqd_table_version"), 1.0);
    assert_eq!(harness::http(&addr, None, "GET", "/metrics", "").0, 404);
    assert_eq!(get(&addr, "/healthz"), "ok\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = topo.finish(child);
    assert!(
        out.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        TcpStream::connect(&metrics_addr).is_err(),
        "the metrics listener stopped too"
    );
}
