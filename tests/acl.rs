//! Interface-scoped ACLs through the real binary on net_pcap ports: two
//! customers sharing the client interface, a provider rule before both,
//! per-rule, per-default and per-client counters, and config errors that
//! name the rule. Frames are built with etherparse.

mod harness;

use etherparse::PacketBuilder;
use harness::{assert_frames_multiset_eq, check_config_text, Iface, Topology};

const CLIENT_IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const DEV_IF_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0xfe];
const WEB1_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x31];
const WEB2_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x32];
const ACME: [u8; 4] = [203, 0, 113, 10];
const GLOBEX: [u8; 4] = [203, 0, 113, 20];

const TOPOLOGY: &str = r#"
[client]
interface = "client"
gateway = "192.0.2.254"
gateway_mac = "02:00:00:00:fe:fe"

[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:31"

[[device]]
name = "web2"
interface = "devices"
mac = "52:54:00:00:00:32"

[[service]]
name = "acme"
ip = "203.0.113.10"
[[service.port]]
port = 80
hops = ["web1"]

[[service]]
name = "globex"
ip = "203.0.113.20"
[[service.port]]
port = 80
hops = ["web2"]
"#;

const ACLS: &str = r#"
# The provider's rule, before every customer's: a blocked network.
[[acl]]
interface = "client"
default = "allow"
[[acl.rule]]
priority = 1
src = "10.66.0.0/16"
action = "deny"

# acme: only its two client networks may reach it.
[[acl]]
interface = "client"
service = "acme"
default = "deny"
[[acl.rule]]
priority = 10
src = "198.18.1.0/24"
protocol = "tcp"
dst_ports = 80
action = "allow"
[[acl.rule]]
priority = 20
src = "198.18.2.7/32"
protocol = "tcp"
dst_ports = "80-80"
action = "allow"

# globex: everyone, but 198.18.1.0/24 may not open connections.
[[acl]]
interface = "client"
service = "globex"
default = "allow"
[[acl.rule]]
priority = 10
src = "198.18.1.0/24"
protocol = "tcp"
tcp_flags = { set = ["syn"], clear = ["ack"] }
action = "deny"
"#;

#[derive(Clone, Copy)]
enum Seg {
    Syn,
    Ack,
}

fn tcp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seg: Seg,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 8192);
    let b = match seg {
        Seg::Syn => b.syn(),
        Seg::Ack => b.ack(77),
    };
    let payload: &[u8] = match seg {
        Seg::Syn => b"",
        Seg::Ack => b"GET / HTTP/1.0\r\n\r\n",
    };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// From the router to seqd.
fn from_client(src: [u8; 4], dst: [u8; 4], seg: Seg) -> Vec<u8> {
    tcp(CLIENT_IF_MAC, GW_MAC, src, 40000, dst, 80, seg)
}

/// The same packet as seqd hands it to a server (alias mode: Ethernet only).
fn to_server(mac: [u8; 6], src: [u8; 4], dst: [u8; 4], seg: Seg) -> Vec<u8> {
    tcp(mac, DEV_IF_MAC, src, 40000, dst, 80, seg)
}

#[test]
fn two_customers_share_an_interface() {
    let c1 = [198, 18, 1, 5];
    let c2 = [198, 18, 2, 7];
    let stranger = [198, 18, 3, 3];
    let blocked = [10, 66, 1, 1];
    let other = [198, 18, 9, 9];
    let client_in = vec![
        from_client(c1, ACME, Seg::Syn),        // 0 acme rule 10: allow
        from_client(c2, ACME, Seg::Syn),        // 1 acme rule 20 (/32): allow
        from_client(c2, ACME, Seg::Ack),        // 2 acme rule 20 (/32): allow
        from_client(stranger, ACME, Seg::Syn),  // 3 acme default: deny
        from_client(blocked, GLOBEX, Seg::Syn), // 4 provider rule: deny
        from_client(c1, GLOBEX, Seg::Syn),      // 5 globex rule 10 (SYN): deny
        from_client(c1, GLOBEX, Seg::Ack),      // 6 globex default: allow
        from_client(other, GLOBEX, Seg::Syn),   // 7 globex default: allow
        from_client(blocked, ACME, Seg::Ack),   // 8 provider rule: deny
    ];
    // web1's answer comes back on the devices interface, which has no ACL.
    let web1_reply = tcp(DEV_IF_MAC, WEB1_MAC, ACME, 80, c2, 40000, Seg::Ack);
    let mut topo = Topology::new(vec![
        Iface::new("client", "192.0.2.1/24")
            .mac("02:00:00:00:01:01")
            .input(client_in.clone()),
        Iface::new("devices", "198.51.100.1/24")
            .mac("02:00:00:00:02:02")
            .input(vec![web1_reply]),
    ]);
    topo.extra_toml = format!("{TOPOLOGY}{ACLS}");
    let out = topo.run();
    out.assert_success();

    assert_frames_multiset_eq(
        &out.sent_ip("devices"),
        &[
            to_server(WEB1_MAC, c1, ACME, Seg::Syn),
            to_server(WEB1_MAC, c2, ACME, Seg::Syn),
            to_server(WEB1_MAC, c2, ACME, Seg::Ack),
            to_server(WEB2_MAC, c1, GLOBEX, Seg::Ack),
            to_server(WEB2_MAC, other, GLOBEX, Seg::Syn),
        ],
        "devices",
    );
    assert_frames_multiset_eq(
        &out.sent_ip("client"),
        &[tcp(GW_MAC, CLIENT_IF_MAC, ACME, 80, c2, 40000, Seg::Ack)],
        "client",
    );
    assert_eq!(out.drops("acl_deny"), 4, "{}", out.stats["drops"]);

    let len = |i: usize| client_in[i].len() as u64;
    let rule = |service: Option<&str>, priority: u64| -> (u64, u64) {
        let r = out.stats["acl_rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"].as_str() == service && r["priority"] == priority)
            .unwrap_or_else(|| {
                panic!("no rule {service:?}/{priority}: {}", out.stats["acl_rules"])
            });
        (r["packets"].as_u64().unwrap(), r["bytes"].as_u64().unwrap())
    };
    assert_eq!(rule(None, 1), (2, len(4) + len(8)));
    assert_eq!(rule(Some("acme"), 10), (1, len(0)));
    assert_eq!(rule(Some("acme"), 20), (2, len(1) + len(2)));
    assert_eq!(rule(Some("globex"), 10), (1, len(5)));
    let default = |service: Option<&str>| -> (u64, u64) {
        let d = out.stats["acl_defaults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["service"].as_str() == service)
            .unwrap();
        (d["packets"].as_u64().unwrap(), d["bytes"].as_u64().unwrap())
    };
    assert_eq!(default(Some("acme")), (1, len(3)));
    assert_eq!(default(Some("globex")), (2, len(6) + len(7)));
    assert_eq!(default(None), (0, 0));
    // The /32 rule's client is accounted on its own.
    let clients = out.stats["acl_clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0]["client"], "198.18.2.7");
    assert_eq!(clients[0]["service"], "acme");
    assert_eq!(clients[0]["bytes"], len(1) + len(2));
    // Billing still counts what entered each service.
    assert_eq!(out.service("acme", "tcp", 80)["packets_in"], 3);
    assert_eq!(out.service("globex", "tcp", 80)["packets_in"], 2);
}

fn base_config() -> String {
    format!(
        r#"[eal]
cores = "0-1"
[workers]
lcores = [1]
[[interface]]
name = "client"
device = "net_null0"
ipv4 = "192.0.2.1/24"
[[interface]]
name = "devices"
device = "net_null1"
ipv4 = "198.51.100.1/24"
{TOPOLOGY}{ACLS}"#
    )
}

#[test]
fn bad_rules_are_rejected_naming_the_rule() {
    let base = base_config();
    assert_eq!(
        check_config_text(&base).0,
        0,
        "{}",
        check_config_text(&base).1
    );
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "priority = 20",
            "priority = 10",
            &["acl[1].rule[1].priority", "10", "same priority"],
        ),
        (
            "src = \"198.18.2.7/32\"",
            "src = \"198.18.2.7/33\"",
            &["acl[1].rule[1].src", "198.18.2.7/33"],
        ),
        (
            "src = \"198.18.2.7/32\"",
            "src = \"198.18.2.x/32\"",
            &["acl[1].rule[1].src", "198.18.2.x/32"],
        ),
        (
            "src = \"198.18.1.0/24\"\nprotocol = \"tcp\"\ndst_ports = 80",
            "src = \"198.18.1.1/24\"\nprotocol = \"tcp\"\ndst_ports = 80",
            &["acl[1].rule[0].src", "198.18.1.1/24", "host bits"],
        ),
        (
            "dst_ports = \"80-80\"",
            "dst_ports = \"90-80\"",
            &["acl[1].rule[1].dst_ports", "90-80", "upside down"],
        ),
        (
            "service = \"globex\"",
            "service = \"globexx\"",
            &["acl[2].service", "globexx", "no [[service]]"],
        ),
        (
            "service = \"globex\"",
            "service = \"acme\"",
            &["acl[2].service", "acme", "already"],
        ),
        (
            "clear = [\"ack\"]",
            "clear = [\"akc\"]",
            &["acl[2].rule[0].tcp_flags", "akc"],
        ),
        (
            "action = \"deny\"",
            "action = \"drop\"",
            &["acl[0].rule[0].action", "drop"],
        ),
    ];
    for (from, to, needles) in cases {
        assert!(base.contains(from), "{from}");
        let (code, err) = check_config_text(&base.replacen(from, to, 1));
        assert_eq!(code, 2, "{to}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for n in *needles {
            assert!(err.contains(n), "{err:?} does not mention {n:?}");
        }
    }
}
