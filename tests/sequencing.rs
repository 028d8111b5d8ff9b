//! Service sequencing through the real binary on DPDK net_pcap ports, against
//! the contract in docs/sequencing.md: steering client requests through a
//! service's hops and the replies back, NAT and port translation, dynamic
//! ports, copies and alerts, proxies, VLAN legs, ARP, counted drops, and the
//! config compile errors.
//!
//! Every input and every expected frame is built here (etherparse for the
//! IPv4/TCP/UDP headers and their checksums, hand-made bytes for Ethernet,
//! 802.1Q and ARP), never with seqd's code. After NAT the expected packet is
//! built from scratch with the rewritten addresses and ports, so its
//! checksums are etherparse's full computation, independent of seqd's
//! incremental (RFC 1624) update.
//!
//! Readings of the contract where it leaves room (an operator's reading; see
//! the comments at each use):
//! - A port with `protocol = "both"` has two `services` entries, one with
//!   `protocol = "tcp"` and one with `"udp"`: the counters are keyed by the
//!   packet's protocol (one entry per (service, protocol, port)).
//! - Packets of a dynamic port are counted in the entry of the port that
//!   owns the range.
//! - Port translation (`translate_to`) to an end device that is not NAT
//!   (loopback/alias) rewrites the destination port only; its replies come
//!   from (service IP, TP) and leave with source port P.
//! - A passive device does not get a copy of its own alert when the alert is
//!   sent to the hop it watches (that would loop its output back to it), and
//!   an alert is not a client packet: it is not in `packets_in`.
//! - seqd's ARP requests may be 42 bytes or zero-padded to the 60-byte
//!   Ethernet minimum: both are the same frame on the wire.
//! - ARP replies keep the request's size, zero padded (as the foundation does
//!   for its own addresses).
//! - The sender is classified before any key is looked up: a frame from an
//!   unknown MAC on a device interface is `source_not_verified` even when it
//!   matches no service (not `no_service`).
//! - A learnt ARP reply may or may not count as a drop (`arp_ignored`); and
//!   whether a frame from a device that is then dropped counts in its
//!   `packets_from`: neither is asserted.
//! - seqd may learn an unsolicited ARP reply before it has asked, so its ARP
//!   requests are checked in a run where nothing answers.

mod harness;

use std::path::Path;

use etherparse::{IpFragOffset, IpNumber, Ipv4Header, TcpHeader, TcpOptionElement, UdpHeader};
use harness::{
    assert_frames_eq, assert_frames_multiset_eq, check_config_file, check_config_text, Iface,
    Outcome, Topology,
};

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

type Mac = [u8; 6];
type Ip = [u8; 4];

/// seqd's interfaces (MACs set in the config, so frames are deterministic).
const CLIENT_IF_MAC: Mac = [0x02, 0, 0, 0, 0x01, 0x01];
const DEV_IF_MAC: Mac = [0x02, 0, 0, 0, 0x02, 0x02];
const SRV_IF_MAC: Mac = [0x02, 0, 0, 0, 0x03, 0x03];
const CLIENT_IF_IP: Ip = [192, 0, 2, 1];
const DEV_IF_IP: Ip = [198, 51, 100, 1];

/// The router in front of seqd: it sends the clients' traffic in and is the
/// gateway the replies go to.
const GW_MAC: Mac = [0x02, 0, 0, 0, 0xfe, 0xfe];
const GW_IP: Ip = [192, 0, 2, 254];

/// A remote client, somewhere behind the router.
const CLIENT_IP: Ip = [100, 64, 0, 7];

/// Service IPs.
const SVC_IP: Ip = [203, 0, 113, 10];
const SVC2_IP: Ip = [203, 0, 113, 20];
const SVC3_IP: Ip = [203, 0, 113, 30];

/// Devices.
const FW1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x10];
const FW1_SRV_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x11];
const VPN1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x20];
const WEB1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x30];
const WEB1_IP: Ip = [198, 51, 100, 30];
const MAIL1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x31];
const IDS1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x40];
const FTP1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x50];
const FTP1_IP: Ip = [198, 51, 100, 50];
const PROXY1_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x60];
const PROXY1_IP: Ip = [198, 51, 100, 60];
const WEB2_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x70];
const STRANGER_MAC: Mac = [0x52, 0x54, 0, 0x99, 0x99, 0x99];

fn client_iface() -> Iface {
    Iface::new("client", "192.0.2.1/24").mac("02:00:00:00:01:01")
}

fn devices_iface() -> Iface {
    Iface::new("devices", "198.51.100.1/24").mac("02:00:00:00:02:02")
}

fn servers_iface() -> Iface {
    Iface::new("servers", "198.18.0.1/24").mac("02:00:00:00:03:03")
}

/// The client side with a static gateway MAC (no ARP needed).
const CLIENT_TOML: &str = r#"
[client]
interface = "client"
gateway = "192.0.2.254"
gateway_mac = "02:00:00:00:fe:fe"
"#;

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flags {
    Syn,
    SynAck,
    Rst,
    PshAck,
}

/// One IPv4 TCP or UDP packet, as fields; [`Pkt::ip`] serializes it with
/// correct checksums.
#[derive(Debug, Clone)]
struct Pkt {
    udp: bool,
    flags: Flags,
    src: Ip,
    sport: u16,
    dst: Ip,
    dport: u16,
    ttl: u8,
    id: u16,
    dont_fragment: bool,
    ip_options: Vec<u8>,
    payload: Vec<u8>,
    /// UDP without a checksum (field 0).
    udp_no_checksum: bool,
}

fn tcp(src: Ip, sport: u16, dst: Ip, dport: u16, flags: Flags) -> Pkt {
    Pkt {
        udp: false,
        flags,
        src,
        sport,
        dst,
        dport,
        ttl: 57,
        id: 0x1c46,
        dont_fragment: true,
        ip_options: Vec::new(),
        payload: Vec::new(),
        udp_no_checksum: false,
    }
}

fn udp(src: Ip, sport: u16, dst: Ip, dport: u16, payload: &[u8]) -> Pkt {
    Pkt {
        udp: true,
        flags: Flags::PshAck,
        src,
        sport,
        dst,
        dport,
        ttl: 61,
        id: 0x2b01,
        dont_fragment: false,
        ip_options: Vec::new(),
        payload: payload.to_vec(),
        udp_no_checksum: false,
    }
}

impl Pkt {
    fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// The same packet with another destination (what NAT / port translation
    /// should make of it).
    fn to(mut self, ip: Ip, port: u16) -> Self {
        self.dst = ip;
        self.dport = port;
        self
    }

    /// The same packet with another source (reverse NAT / translation).
    fn from(mut self, ip: Ip, port: u16) -> Self {
        self.src = ip;
        self.sport = port;
        self
    }

    fn no_udp_checksum(mut self) -> Self {
        self.udp_no_checksum = true;
        self
    }

    fn ip_options(mut self, o: &[u8]) -> Self {
        self.ip_options = o.to_vec();
        self
    }

    /// The IPv4 header for an L4 segment of `l4_len` bytes (checksum set).
    fn header(&self, l4_len: usize) -> Ipv4Header {
        let proto = if self.udp {
            IpNumber::UDP
        } else {
            IpNumber::TCP
        };
        let mut h = Ipv4Header::new(0, self.ttl, proto, self.src, self.dst).unwrap();
        h.identification = self.id;
        h.dont_fragment = self.dont_fragment;
        h.options = self.ip_options.as_slice().try_into().unwrap();
        h.set_payload_len(l4_len).unwrap();
        h.header_checksum = h.calc_header_checksum();
        h
    }

    /// The TCP/UDP header and payload, checksum computed in full.
    fn l4(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.udp {
            let h = if self.udp_no_checksum {
                UdpHeader::without_ipv4_checksum(self.sport, self.dport, self.payload.len())
                    .unwrap()
            } else {
                let ip = self.header(8 + self.payload.len());
                UdpHeader::with_ipv4_checksum(self.sport, self.dport, &ip, &self.payload).unwrap()
            };
            out.extend_from_slice(&h.to_bytes());
        } else {
            let (seq, ack) = match self.flags {
                Flags::Syn => (0x1000_0000, 0),
                Flags::SynAck => (0x2000_0000, 0x1000_0001),
                Flags::Rst => (0x1000_0001, 0),
                Flags::PshAck => (0x1000_0001, 0x2000_0001),
            };
            let mut h = TcpHeader::new(self.sport, self.dport, seq, 64240);
            h.acknowledgment_number = ack;
            match self.flags {
                Flags::Syn => h.syn = true,
                Flags::SynAck => {
                    h.syn = true;
                    h.ack = true
                }
                Flags::Rst => h.rst = true,
                Flags::PshAck => {
                    h.psh = true;
                    h.ack = true
                }
            }
            if matches!(self.flags, Flags::Syn | Flags::SynAck) {
                h.set_options(&[TcpOptionElement::MaximumSegmentSize(1460)])
                    .unwrap();
            }
            let ip = self.header(h.header_len() + self.payload.len());
            h.checksum = h.calc_checksum_ipv4(&ip, &self.payload).unwrap();
            out.extend_from_slice(&h.to_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// The whole IPv4 packet.
    fn ip(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut out = self.header(l4.len()).to_bytes().to_vec();
        out.extend_from_slice(&l4);
        out
    }

    /// The packet split in two IPv4 fragments after `split` bytes of its
    /// TCP/UDP segment (a multiple of 8). The first fragment carries the
    /// segment's header with the checksum of the whole datagram.
    fn fragments(&self, split: usize) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(split % 8, 0);
        let l4 = self.l4();
        let frag = |part: &[u8], offset: usize, more: bool| {
            let mut h = self.header(part.len());
            h.more_fragments = more;
            h.fragment_offset = IpFragOffset::try_new((offset / 8) as u16).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut out = h.to_bytes().to_vec();
            out.extend_from_slice(part);
            out
        };
        (
            frag(&l4[..split], 0, true),
            frag(&l4[split..], split, false),
        )
    }
}

/// An Ethernet II frame, with an 802.1Q tag (PCP 0, DEI 0) when `vlan` is set.
fn eth(dst: Mac, src: Mac, vlan: Option<u16>, ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + body.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// An untagged IPv4 frame.
fn frame(dst: Mac, src: Mac, p: &Pkt) -> Vec<u8> {
    eth(dst, src, None, 0x0800, &p.ip())
}

/// A tagged IPv4 frame.
fn tagged(dst: Mac, src: Mac, vlan: u16, p: &Pkt) -> Vec<u8> {
    eth(dst, src, Some(vlan), 0x0800, &p.ip())
}

/// An Ethernet/IPv4 ARP frame, by hand (RFC 826 layout), zero padded to `pad_to`.
#[allow(clippy::too_many_arguments)]
fn arp(op: u16, eth_dst: Mac, sha: Mac, spa: Ip, tha: Mac, tpa: Ip, pad_to: usize) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, 0x08, 0x00, 6, 4];
    body.extend_from_slice(&op.to_be_bytes());
    body.extend_from_slice(&sha);
    body.extend_from_slice(&spa);
    body.extend_from_slice(&tha);
    body.extend_from_slice(&tpa);
    let mut f = eth(eth_dst, sha, None, 0x0806, &body);
    f.resize(f.len().max(pad_to), 0);
    f
}

fn who_has(asker_mac: Mac, asker_ip: Ip, target: Ip, pad_to: usize) -> Vec<u8> {
    arp(1, [0xff; 6], asker_mac, asker_ip, [0; 6], target, pad_to)
}

/// "`ip` is at `mac`", sent to `to_mac`/`to_ip`.
fn is_at(mac: Mac, ip: Ip, to_mac: Mac, to_ip: Ip, pad_to: usize) -> Vec<u8> {
    arp(2, to_mac, mac, ip, to_mac, to_ip, pad_to)
}

fn total_len(frames: &[&Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// Asserts a `services` entry: packets and bytes in (as received from the
/// client side) and out (as sent to the client side).
fn assert_service(
    out: &Outcome,
    name: &str,
    proto: &str,
    port: u16,
    ins: &[&Vec<u8>],
    outs: &[&Vec<u8>],
) {
    let s = out.service(name, proto, port);
    let what = format!("services ({name}, {proto}, {port}): {s}");
    assert_eq!(s["packets_in"], ins.len() as u64, "{what}");
    assert_eq!(s["bytes_in"], total_len(ins), "{what}");
    assert_eq!(s["packets_out"], outs.len() as u64, "{what}");
    assert_eq!(s["bytes_out"], total_len(outs), "{what}");
}

/// Asserts a `devices` entry: every frame sent to it (copies included) and
/// every frame received from it.
fn assert_device(out: &Outcome, name: &str, to: &[&Vec<u8>], from: &[&Vec<u8>]) {
    let d = out.device(name);
    let what = format!("devices {name}: {d}");
    assert_eq!(d["packets_to"], to.len() as u64, "{what}");
    assert_eq!(d["bytes_to"], total_len(to), "{what}");
    assert_eq!(d["packets_from"], from.len() as u64, "{what}");
    assert_eq!(d["bytes_from"], total_len(from), "{what}");
}

fn assert_no_drops(out: &Outcome) {
    assert_eq!(out.total_drops(), 0, "drops: {}", out.stats["drops"]);
}

fn assert_drops(out: &Outcome, expected: &[(&str, u64)]) {
    for (reason, n) in expected {
        assert_eq!(
            out.drops(reason),
            *n,
            "drop reason {reason}: {}",
            out.stats["drops"]
        );
    }
    let sum: u64 = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(
        out.total_drops(),
        sum,
        "total drops: {}",
        out.stats["drops"]
    );
}

fn run(ifaces: Vec<Iface>, toml: &str) -> Outcome {
    let mut topo = Topology::new(ifaces);
    topo.extra_toml = toml.to_string();
    let out = topo.run();
    out.assert_success();
    out
}

// ---------------------------------------------------------------------------
// 1. One service, one server: loopback, alias, nat
// ---------------------------------------------------------------------------

/// A client's TCP SYN, a UDP datagram and a UDP datagram without checksum to
/// port 53 (`protocol = "both"`) reach the one server web1; its replies leave
/// toward the gateway with the service IP as source.
/// The `[[device]]` web1 on the devices interface in `mode` (with its own
/// address when that is "nat").
fn web1_device(mode: &str) -> String {
    let ipv4 = if mode == "nat" {
        "ipv4 = \"198.51.100.30\"\n"
    } else {
        ""
    };
    format!(
        "[[device]]\nname = \"web1\"\nmode = \"{mode}\"\ninterface = \"devices\"\nmac = \"52:54:00:00:00:30\"\n{ipv4}"
    )
}

fn one_server(mode: &str) {
    let nat = mode == "nat";
    let server_ip = if nat { WEB1_IP } else { SVC_IP };
    let web1 = web1_device(mode);
    let toml = format!(
        r#"{CLIENT_TOML}
{web1}
[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 53
protocol = "both"
hops = ["web1"]
"#
    );
    let syn = tcp(CLIENT_IP, 40000, SVC_IP, 53, Flags::Syn);
    let query = udp(
        CLIENT_IP,
        40001,
        SVC_IP,
        53,
        b"\x4a\x11\x01\x00\x00\x01example",
    );
    let query0 = udp(CLIENT_IP, 40002, SVC_IP, 53, b"no checksum").no_udp_checksum();
    let synack = tcp(server_ip, 53, CLIENT_IP, 40000, Flags::SynAck);
    let answer = udp(server_ip, 53, CLIENT_IP, 40001, b"\x4a\x11\x81\x80answer");
    let answer0 = udp(server_ip, 53, CLIENT_IP, 40002, b"no checksum back").no_udp_checksum();

    let client_in = vec![
        frame(CLIENT_IF_MAC, GW_MAC, &syn),
        frame(CLIENT_IF_MAC, GW_MAC, &query),
        frame(CLIENT_IF_MAC, GW_MAC, &query0),
    ];
    let devices_in = vec![
        frame(DEV_IF_MAC, WEB1_MAC, &synack),
        frame(DEV_IF_MAC, WEB1_MAC, &answer),
        frame(DEV_IF_MAC, WEB1_MAC, &answer0),
    ];
    // Only the Ethernet header changes; in nat mode the destination IP too
    // (a checksum of 0 stays 0).
    let to_web1 = vec![
        frame(WEB1_MAC, DEV_IF_MAC, &syn.clone().to(server_ip, 53)),
        frame(WEB1_MAC, DEV_IF_MAC, &query.clone().to(server_ip, 53)),
        frame(WEB1_MAC, DEV_IF_MAC, &query0.clone().to(server_ip, 53)),
    ];
    let to_client = vec![
        frame(GW_MAC, CLIENT_IF_MAC, &synack.clone().from(SVC_IP, 53)),
        frame(GW_MAC, CLIENT_IF_MAC, &answer.clone().from(SVC_IP, 53)),
        frame(GW_MAC, CLIENT_IF_MAC, &answer0.clone().from(SVC_IP, 53)),
    ];
    if !nat {
        assert_eq!(to_web1[0][14..], client_in[0][14..]);
        assert_eq!(to_client[0][14..], devices_in[0][14..]);
    }

    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_eq(&out.sent_ip("devices"), &to_web1, "devices (to web1)");
    assert_frames_eq(&out.sent_ip("client"), &to_client, "client (to gateway)");
    // protocol = "both": one entry per protocol.
    assert_service(&out, "acme", "tcp", 53, &[&client_in[0]], &[&to_client[0]]);
    assert_service(
        &out,
        "acme",
        "udp",
        53,
        &[&client_in[1], &client_in[2]],
        &[&to_client[1], &to_client[2]],
    );
    assert_device(
        &out,
        "web1",
        &to_web1.iter().collect::<Vec<_>>(),
        &devices_in.iter().collect::<Vec<_>>(),
    );
    assert_no_drops(&out);
}

#[test]
fn one_server_loopback() {
    one_server("loopback");
}

#[test]
fn one_server_alias() {
    one_server("alias");
}

#[test]
fn one_server_nat() {
    one_server("nat");
}

// ---------------------------------------------------------------------------
// 2. One service IP, two ports, two servers
// ---------------------------------------------------------------------------

#[test]
fn two_ports_two_servers() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:30"

[[device]]
name = "mail1"
interface = "devices"
mac = "52:54:00:00:00:31"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]

[[service.port]]
port = 25
hops = ["mail1"]
"#
    );
    let web_syn = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let mail_syn = tcp(CLIENT_IP, 40001, SVC_IP, 25, Flags::Syn);
    let web_get =
        tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::PshAck).payload(b"GET / HTTP/1.1\r\n\r\n");
    let mail_ehlo = tcp(CLIENT_IP, 40001, SVC_IP, 25, Flags::PshAck).payload(b"EHLO c\r\n");
    let web_synack = tcp(SVC_IP, 80, CLIENT_IP, 40000, Flags::SynAck);
    let mail_synack = tcp(SVC_IP, 25, CLIENT_IP, 40001, Flags::SynAck);
    let client_in: Vec<_> = [&web_syn, &mail_syn, &web_get, &mail_ehlo]
        .iter()
        .map(|p| frame(CLIENT_IF_MAC, GW_MAC, p))
        .collect();
    let devices_in = vec![
        frame(DEV_IF_MAC, WEB1_MAC, &web_synack),
        frame(DEV_IF_MAC, MAIL1_MAC, &mail_synack),
        // mail1 answering as port 80: that is web1's return key, and mail1
        // is not the hop it comes from.
        frame(DEV_IF_MAC, MAIL1_MAC, &web_synack),
    ];
    let to_devices = vec![
        frame(WEB1_MAC, DEV_IF_MAC, &web_syn),
        frame(MAIL1_MAC, DEV_IF_MAC, &mail_syn),
        frame(WEB1_MAC, DEV_IF_MAC, &web_get),
        frame(MAIL1_MAC, DEV_IF_MAC, &mail_ehlo),
    ];
    let to_client = vec![
        frame(GW_MAC, CLIENT_IF_MAC, &web_synack),
        frame(GW_MAC, CLIENT_IF_MAC, &mail_synack),
    ];
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_eq(&out.sent_ip("devices"), &to_devices, "devices");
    assert_frames_eq(&out.sent_ip("client"), &to_client, "client");
    assert_service(
        &out,
        "acme",
        "tcp",
        80,
        &[&client_in[0], &client_in[2]],
        &[&to_client[0]],
    );
    assert_service(
        &out,
        "acme",
        "tcp",
        25,
        &[&client_in[1], &client_in[3]],
        &[&to_client[1]],
    );
    assert_device(
        &out,
        "web1",
        &[&to_devices[0], &to_devices[2]],
        &[&devices_in[0]],
    );
    // mail1's misdirected frame is dropped before it is steered; whether it
    // counts as received from mail1 is not part of the contract, so only
    // what went to mail1 is checked exactly.
    let mail1 = out.device("mail1");
    assert_eq!(mail1["packets_to"], 2, "{mail1}");
    assert_eq!(
        mail1["bytes_to"],
        total_len(&[&to_devices[1], &to_devices[3]]),
        "{mail1}"
    );
    assert_drops(&out, &[("source_not_verified", 1)]);
}

// ---------------------------------------------------------------------------
// 3. A chain: fw1 (two legs) → vpn1 → web1, ids1 copies and alerts
// ---------------------------------------------------------------------------

#[test]
fn chain_firewall_vpn_server_with_ids() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"
server_interface = "servers"
server_mac = "52:54:00:00:00:11"

[[device]]
name = "vpn1"
interface = "servers"
mac = "52:54:00:00:00:20"

[[device]]
name = "web1"
interface = "servers"
mac = "52:54:00:00:00:30"

[[device]]
name = "ids1"
interface = "devices"
mac = "52:54:00:00:00:40"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["fw1", "vpn1", "web1"]
copies = {{ web1 = ["ids1"] }}
alerts_to = "web1"
"#
    );
    let req = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let resp = tcp(SVC_IP, 80, CLIENT_IP, 40000, Flags::SynAck);
    // The IDS resets the connection at the server, as the client.
    let alert = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Rst);

    let client_in = vec![frame(CLIENT_IF_MAC, GW_MAC, &req)];
    let servers_in = vec![
        // fw1 passes the request out of its server leg.
        frame(SRV_IF_MAC, FW1_SRV_MAC, &req),
        // vpn1 passes it on.
        frame(SRV_IF_MAC, VPN1_MAC, &req),
        // web1 answers.
        frame(SRV_IF_MAC, WEB1_MAC, &resp),
        // vpn1 passes the answer back.
        frame(SRV_IF_MAC, VPN1_MAC, &resp),
    ];
    let devices_in = vec![
        // fw1 passes the answer out of its client leg.
        frame(DEV_IF_MAC, FW1_MAC, &resp),
        // ids1's alert.
        frame(DEV_IF_MAC, IDS1_MAC, &alert),
    ];

    let to_fw1_client_leg = frame(FW1_MAC, DEV_IF_MAC, &req);
    let to_vpn1_fwd = frame(VPN1_MAC, SRV_IF_MAC, &req);
    let to_web1 = frame(WEB1_MAC, SRV_IF_MAC, &req);
    let copy_fwd = frame(IDS1_MAC, DEV_IF_MAC, &req);
    let copy_ret = frame(IDS1_MAC, DEV_IF_MAC, &resp);
    let to_vpn1_ret = frame(VPN1_MAC, SRV_IF_MAC, &resp);
    let to_fw1_server_leg = frame(FW1_SRV_MAC, SRV_IF_MAC, &resp);
    let to_client = frame(GW_MAC, CLIENT_IF_MAC, &resp);
    let alert_to_web1 = frame(WEB1_MAC, SRV_IF_MAC, &alert);

    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
            servers_iface().input(servers_in.clone()),
        ],
        &toml,
    );
    // devices: the request to fw1 (from the client input), the two copies
    // (from the servers input). ids1 gets no copy of its own alert.
    assert_frames_multiset_eq(
        &out.sent_ip("devices"),
        &[
            to_fw1_client_leg.clone(),
            copy_fwd.clone(),
            copy_ret.clone(),
        ],
        "devices",
    );
    assert_frames_multiset_eq(
        &out.sent_ip("servers"),
        &[
            to_vpn1_fwd.clone(),
            to_web1.clone(),
            to_vpn1_ret.clone(),
            to_fw1_server_leg.clone(),
            alert_to_web1.clone(),
        ],
        "servers",
    );
    // From the devices input only: in order.
    assert_frames_eq(
        &out.sent_ip("client"),
        std::slice::from_ref(&to_client),
        "client",
    );

    assert_device(
        &out,
        "fw1",
        &[&to_fw1_client_leg, &to_fw1_server_leg],
        &[&servers_in[0], &devices_in[0]],
    );
    assert_device(
        &out,
        "vpn1",
        &[&to_vpn1_fwd, &to_vpn1_ret],
        &[&servers_in[1], &servers_in[3]],
    );
    assert_device(&out, "web1", &[&to_web1, &alert_to_web1], &[&servers_in[2]]);
    assert_device(&out, "ids1", &[&copy_fwd, &copy_ret], &[&devices_in[1]]);
    // The alert is not a client packet.
    assert_service(&out, "acme", "tcp", 80, &[&client_in[0]], &[&to_client]);
    assert_no_drops(&out);
}

// ---------------------------------------------------------------------------
// 4. Port translation
// ---------------------------------------------------------------------------

/// Clients use port 80; web1 listens on 8080. In nat mode the destination
/// IP and port change; with a loopback server only the port.
fn port_translation(mode: &str) {
    let nat = mode == "nat";
    let server_ip = if nat { WEB1_IP } else { SVC_IP };
    let web1 = web1_device(mode);
    let toml = format!(
        r#"{CLIENT_TOML}
{web1}
[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]
translate_to = 8080
"#
    );
    let syn = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let get = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::PshAck)
        .payload(b"GET /index.html HTTP/1.1\r\n\r\n");
    let synack = tcp(server_ip, 8080, CLIENT_IP, 40000, Flags::SynAck);
    let page =
        tcp(server_ip, 8080, CLIENT_IP, 40000, Flags::PshAck).payload(b"HTTP/1.1 200 OK\r\n\r\n");
    let client_in = vec![
        frame(CLIENT_IF_MAC, GW_MAC, &syn),
        frame(CLIENT_IF_MAC, GW_MAC, &get),
    ];
    let mut devices_in = vec![
        frame(DEV_IF_MAC, WEB1_MAC, &synack),
        frame(DEV_IF_MAC, WEB1_MAC, &page),
    ];
    if nat {
        // From the NAT server's port 80, not TP: no key matches.
        devices_in.push(frame(
            DEV_IF_MAC,
            WEB1_MAC,
            &synack.clone().from(WEB1_IP, 80),
        ));
    }
    let to_web1 = vec![
        frame(WEB1_MAC, DEV_IF_MAC, &syn.clone().to(server_ip, 8080)),
        frame(WEB1_MAC, DEV_IF_MAC, &get.clone().to(server_ip, 8080)),
    ];
    let to_client = vec![
        frame(GW_MAC, CLIENT_IF_MAC, &synack.clone().from(SVC_IP, 80)),
        frame(GW_MAC, CLIENT_IF_MAC, &page.clone().from(SVC_IP, 80)),
    ];
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_eq(&out.sent_ip("devices"), &to_web1, "devices (to web1)");
    assert_frames_eq(&out.sent_ip("client"), &to_client, "client");
    assert_service(
        &out,
        "acme",
        "tcp",
        80,
        &[&client_in[0], &client_in[1]],
        &[&to_client[0], &to_client[1]],
    );
    let web1 = out.device("web1");
    assert_eq!(web1["packets_to"], 2, "{web1}");
    assert_eq!(web1["bytes_to"], total_len(&[&to_web1[0], &to_web1[1]]));
    if nat {
        assert_drops(&out, &[("no_service", 1)]);
    } else {
        assert_device(
            &out,
            "web1",
            &[&to_web1[0], &to_web1[1]],
            &[&devices_in[0], &devices_in[1]],
        );
        assert_no_drops(&out);
    }
}

#[test]
fn port_translation_nat_server() {
    port_translation("nat");
}

/// Translation to a loopback server: the service IP stays, only P → TP.
/// The contract states the port rewrite in the nat paragraph; a loopback
/// server listening on another port needs the same rewrite without NAT, and
/// its replies (from service IP:TP) get TP → P back (rule 5).
#[test]
fn port_translation_loopback_server() {
    port_translation("loopback");
}

// ---------------------------------------------------------------------------
// 5. Dynamic ports
// ---------------------------------------------------------------------------

/// FTP on port 21 (translated to 2121 on a NAT server) with passive data
/// ports 50000-50100: both edges follow the sequence untranslated, the ports
/// just outside are `no_service`.
#[test]
fn dynamic_port_range() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "ftp1"
mode = "nat"
interface = "devices"
mac = "52:54:00:00:00:50"
ipv4 = "198.51.100.50"

[[service]]
name = "files"
ip = "203.0.113.30"

[[service.port]]
port = 21
hops = ["ftp1"]
translate_to = 2121
dynamic_ports = "50000-50100"
"#
    );
    let ctl = tcp(CLIENT_IP, 40000, SVC3_IP, 21, Flags::Syn);
    let low = tcp(CLIENT_IP, 40001, SVC3_IP, 50000, Flags::Syn);
    let high = tcp(CLIENT_IP, 40002, SVC3_IP, 50100, Flags::Syn);
    let below = tcp(CLIENT_IP, 40003, SVC3_IP, 49999, Flags::Syn);
    let above = tcp(CLIENT_IP, 40004, SVC3_IP, 50101, Flags::Syn);
    let client_in: Vec<_> = [&ctl, &low, &below, &high, &above]
        .iter()
        .map(|p| frame(CLIENT_IF_MAC, GW_MAC, p))
        .collect();
    let ctl_back = tcp(FTP1_IP, 2121, CLIENT_IP, 40000, Flags::SynAck);
    let low_back = tcp(FTP1_IP, 50000, CLIENT_IP, 40001, Flags::SynAck);
    let high_back = tcp(FTP1_IP, 50100, CLIENT_IP, 40002, Flags::SynAck);
    // From just outside the range: no key matches.
    let outside_back = tcp(FTP1_IP, 50101, CLIENT_IP, 40004, Flags::SynAck);
    let devices_in: Vec<_> = [&ctl_back, &low_back, &high_back, &outside_back]
        .iter()
        .map(|p| frame(DEV_IF_MAC, FTP1_MAC, p))
        .collect();
    let to_ftp1 = vec![
        frame(FTP1_MAC, DEV_IF_MAC, &ctl.clone().to(FTP1_IP, 2121)),
        // Ports in a dynamic range are never translated.
        frame(FTP1_MAC, DEV_IF_MAC, &low.clone().to(FTP1_IP, 50000)),
        frame(FTP1_MAC, DEV_IF_MAC, &high.clone().to(FTP1_IP, 50100)),
    ];
    let to_client = vec![
        frame(GW_MAC, CLIENT_IF_MAC, &ctl_back.clone().from(SVC3_IP, 21)),
        frame(
            GW_MAC,
            CLIENT_IF_MAC,
            &low_back.clone().from(SVC3_IP, 50000),
        ),
        frame(
            GW_MAC,
            CLIENT_IF_MAC,
            &high_back.clone().from(SVC3_IP, 50100),
        ),
    ];
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_eq(&out.sent_ip("devices"), &to_ftp1, "devices (to ftp1)");
    assert_frames_eq(&out.sent_ip("client"), &to_client, "client");
    // Dynamic ports count in the entry of the port that owns the range.
    assert_service(
        &out,
        "files",
        "tcp",
        21,
        &[&client_in[0], &client_in[1], &client_in[3]],
        &to_client.iter().collect::<Vec<_>>(),
    );
    let ftp1 = out.device("ftp1");
    assert_eq!(ftp1["packets_to"], 3, "{ftp1}");
    assert_eq!(
        ftp1["bytes_to"],
        total_len(&to_ftp1.iter().collect::<Vec<_>>())
    );
    assert_drops(&out, &[("no_service", 3)]);
}

// ---------------------------------------------------------------------------
// 6. A proxy entering another service
// ---------------------------------------------------------------------------

/// proxy1 is the end device of service "front"; it opens its own connection
/// to service "back" (rule 4: it enters "back" at hop 1, like a client), and
/// web2's reply, addressed to proxy1's ipv4, goes back to proxy1 (rule 7),
/// not to the gateway.
#[test]
fn proxy_output_enters_another_service() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "proxy1"
mode = "alias"
interface = "devices"
mac = "52:54:00:00:00:60"
ipv4 = "198.51.100.60"

[[device]]
name = "web2"
interface = "devices"
mac = "52:54:00:00:00:70"

[[service]]
name = "front"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["proxy1"]

[[service]]
name = "back"
ip = "203.0.113.20"

[[service.port]]
port = 80
hops = ["web2"]
"#
    );
    let client_req = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let proxy_req = tcp(PROXY1_IP, 50000, SVC2_IP, 80, Flags::Syn);
    let web2_resp = tcp(SVC2_IP, 80, PROXY1_IP, 50000, Flags::SynAck);
    let proxy_resp = tcp(SVC_IP, 80, CLIENT_IP, 40000, Flags::SynAck);
    let client_in = vec![frame(CLIENT_IF_MAC, GW_MAC, &client_req)];
    let devices_in = vec![
        frame(DEV_IF_MAC, PROXY1_MAC, &proxy_req),
        frame(DEV_IF_MAC, WEB2_MAC, &web2_resp),
        frame(DEV_IF_MAC, PROXY1_MAC, &proxy_resp),
    ];
    let to_proxy_req = frame(PROXY1_MAC, DEV_IF_MAC, &client_req);
    let to_web2 = frame(WEB2_MAC, DEV_IF_MAC, &proxy_req);
    let to_proxy_resp = frame(PROXY1_MAC, DEV_IF_MAC, &web2_resp);
    let to_client = frame(GW_MAC, CLIENT_IF_MAC, &proxy_resp);
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_multiset_eq(
        &out.sent_ip("devices"),
        &[to_proxy_req.clone(), to_web2.clone(), to_proxy_resp.clone()],
        "devices",
    );
    assert_frames_eq(
        &out.sent_ip("client"),
        std::slice::from_ref(&to_client),
        "client",
    );
    assert_service(&out, "front", "tcp", 80, &[&client_in[0]], &[&to_client]);
    // The proxy's packets count like a client's; the reply to the proxy is
    // what "back" sent to its client side.
    assert_service(
        &out,
        "back",
        "tcp",
        80,
        &[&devices_in[0]],
        &[&to_proxy_resp],
    );
    assert_device(
        &out,
        "proxy1",
        &[&to_proxy_req, &to_proxy_resp],
        &[&devices_in[0], &devices_in[2]],
    );
    assert_device(&out, "web2", &[&to_web2], &[&devices_in[1]]);
    assert_no_drops(&out);
}

// ---------------------------------------------------------------------------
// 7. Bad cases: dropped, counted, never fatal
// ---------------------------------------------------------------------------

/// Sets the IPv4 total length of an IPv4 packet and recomputes its header
/// checksum by hand.
fn set_total_len(ip: &mut [u8], len: u16) {
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    fix_ip_checksum(ip);
}

fn fix_ip_checksum(ip: &mut [u8]) {
    let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, ip.len());
    ip[10] = 0;
    ip[11] = 0;
    let mut sum: u32 = 0;
    for c in ip[..ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

#[test]
fn bad_packets_are_dropped_and_counted() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "web1"
mode = "nat"
interface = "devices"
mac = "52:54:00:00:00:30"
ipv4 = "198.51.100.30"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]

[[service.port]]
port = 53
protocol = "udp"
hops = ["web1"]

[[device]]
name = "web2"
interface = "devices"
mac = "52:54:00:00:00:70"

[[service]]
name = "plain"
ip = "203.0.113.20"

[[service.port]]
port = 80
hops = ["web2"]
"#
    );
    let from_gw = |p: &Pkt| frame(CLIENT_IF_MAC, GW_MAC, p);
    let syn = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let dns = udp(CLIENT_IP, 40001, SVC_IP, 53, b"query");

    // IP options (Router Alert) on a packet to the NAT server: steered,
    // options carried through.
    let with_options =
        tcp(CLIENT_IP, 40002, SVC_IP, 80, Flags::Syn).ip_options(&[0x94, 0x04, 0, 0]);
    // A big UDP datagram in two fragments; the first carries the UDP header.
    let big = udp(CLIENT_IP, 40003, SVC_IP, 53, &[0x5a; 100]);
    let (first_frag, later_frag) = big.fragments(48);

    let mut truncated_tcp_in_ip = syn.ip()[..30].to_vec();
    set_total_len(&mut truncated_tcp_in_ip, 30);
    let mut longer_than_frame = dns.ip();
    let l = longer_than_frame.len() as u16;
    set_total_len(&mut longer_than_frame, l + 20);
    let mut bad_ihl = syn.ip();
    bad_ihl[0] = 0x44;
    fix_ip_checksum(&mut bad_ihl);
    let mut bad_version = syn.ip();
    bad_version[0] = 0x65;
    fix_ip_checksum(&mut bad_version);

    let client_in = vec![
        // no_service: unknown service IP, unknown port, UDP to a TCP port.
        from_gw(&tcp(CLIENT_IP, 40000, [203, 0, 113, 99], 80, Flags::Syn)),
        from_gw(&tcp(CLIENT_IP, 40000, SVC_IP, 443, Flags::Syn)),
        from_gw(&udp(CLIENT_IP, 40000, SVC_IP, 80, b"x")),
        // source_not_verified: a client sending as a service (an alias-mode
        // one, whose return key is the service IP and P), and as a NAT
        // server (return key: the server's IP and port).
        from_gw(&tcp(SVC2_IP, 80, CLIENT_IP, 40000, Flags::SynAck)),
        from_gw(&tcp(WEB1_IP, 80, CLIENT_IP, 40000, Flags::SynAck)),
        // truncated: cut in the IPv4 header, in the TCP header, in the UDP
        // header; a TCP header cut inside a consistent IPv4 packet; an IPv4
        // total length beyond the frame.
        from_gw(&syn)[..14 + 12].to_vec(),
        from_gw(&syn)[..14 + 20 + 10].to_vec(),
        from_gw(&dns)[..14 + 20 + 4].to_vec(),
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &truncated_tcp_in_ip),
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &longer_than_frame),
        // malformed: IHL 4, version 6 under the IPv4 ethertype.
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &bad_ihl),
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &bad_version),
        // Steered.
        from_gw(&with_options),
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &first_frag),
        // fragment_no_port.
        eth(CLIENT_IF_MAC, GW_MAC, None, 0x0800, &later_frag),
        // unsupported_ethertype: IPv6, PPPoE discovery.
        eth(
            CLIENT_IF_MAC,
            GW_MAC,
            None,
            0x86dd,
            &[0x60, 0, 0, 0, 0, 0, 59, 64],
        ),
        eth(
            CLIENT_IF_MAC,
            GW_MAC,
            None,
            0x8863,
            &[0x11, 0x09, 0, 0, 0, 0],
        ),
    ];
    let devices_in = vec![
        // source_not_verified: an unknown MAC on a device interface, to the
        // service and to nothing at all (the sender is classified first:
        // "otherwise it is dropped: source_not_verified", before any key is
        // looked up); the end device sending forward.
        frame(DEV_IF_MAC, STRANGER_MAC, &syn),
        frame(
            DEV_IF_MAC,
            STRANGER_MAC,
            &tcp(WEB1_IP, 1234, [203, 0, 113, 99], 80, Flags::Syn),
        ),
        frame(
            DEV_IF_MAC,
            WEB1_MAC,
            &tcp(WEB1_IP, 1234, SVC_IP, 80, Flags::Syn),
        ),
    ];
    let expected_first_frag = big.clone().to(WEB1_IP, 53).fragments(48).0;
    let to_web1 = vec![
        frame(WEB1_MAC, DEV_IF_MAC, &with_options.clone().to(WEB1_IP, 80)),
        eth(WEB1_MAC, DEV_IF_MAC, None, 0x0800, &expected_first_frag),
    ];
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_eq(&out.sent_ip("devices"), &to_web1, "devices (to web1)");
    assert_frames_eq(&out.sent_ip("client"), &[], "client");
    assert_drops(
        &out,
        &[
            ("no_service", 3),
            ("source_not_verified", 5),
            ("truncated", 5),
            ("malformed", 2),
            ("fragment_no_port", 1),
            ("unsupported_ethertype", 2),
        ],
    );
    assert_service(&out, "acme", "tcp", 80, &[&client_in[12]], &[]);
    assert_service(&out, "acme", "udp", 53, &[&client_in[13]], &[]);
    assert_service(&out, "plain", "tcp", 80, &[], &[]);
    let w = &out.stats["workers"][0];
    assert_eq!(
        w["rx_packets"],
        (client_in.len() + devices_in.len()) as u64,
        "{w}"
    );
}

// ---------------------------------------------------------------------------
// 8. VLANs
// ---------------------------------------------------------------------------

/// web1 on VLAN 100 of the devices interface; fw1, a router-on-a-stick
/// firewall with one MAC, has its client leg on VLAN 200 and its server leg
/// on VLAN 201 of the same interface.
#[test]
fn vlan_device_legs() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:30"
vlan = 100

[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"
vlan = 200
server_interface = "devices"
server_mac = "52:54:00:00:00:10"
server_vlan = 201

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]

[[service]]
name = "secure"
ip = "203.0.113.20"

[[service.port]]
port = 443
hops = ["fw1", "web1"]
"#
    );
    let req1 = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let resp1 = tcp(SVC_IP, 80, CLIENT_IP, 40000, Flags::SynAck);
    let req2 = tcp(CLIENT_IP, 40001, SVC2_IP, 443, Flags::Syn);
    let resp2 = tcp(SVC2_IP, 443, CLIENT_IP, 40001, Flags::SynAck);
    let client_in = vec![
        frame(CLIENT_IF_MAC, GW_MAC, &req1),
        frame(CLIENT_IF_MAC, GW_MAC, &req2),
        // unknown_vlan: no device uses a VLAN on the client interface.
        tagged(CLIENT_IF_MAC, GW_MAC, 7, &req1),
    ];
    let devices_in = vec![
        tagged(DEV_IF_MAC, WEB1_MAC, 100, &resp1),
        tagged(DEV_IF_MAC, FW1_MAC, 201, &req2),
        tagged(DEV_IF_MAC, WEB1_MAC, 100, &resp2),
        tagged(DEV_IF_MAC, FW1_MAC, 200, &resp2),
        // source_not_verified: web1's MAC untagged; web1's VLAN from another MAC.
        frame(DEV_IF_MAC, WEB1_MAC, &resp1),
        tagged(DEV_IF_MAC, STRANGER_MAC, 100, &resp1),
        // unknown_vlan: a VLAN nothing uses.
        tagged(DEV_IF_MAC, WEB1_MAC, 300, &resp1),
    ];
    let to_web1_1 = tagged(WEB1_MAC, DEV_IF_MAC, 100, &req1);
    let to_fw1_fwd = tagged(FW1_MAC, DEV_IF_MAC, 200, &req2);
    let to_web1_2 = tagged(WEB1_MAC, DEV_IF_MAC, 100, &req2);
    let to_fw1_ret = tagged(FW1_MAC, DEV_IF_MAC, 201, &resp2);
    let to_client = vec![
        frame(GW_MAC, CLIENT_IF_MAC, &resp1),
        frame(GW_MAC, CLIENT_IF_MAC, &resp2),
    ];
    // The tag is [0x81, 0x00, 0x00, 100] right after the MACs.
    assert_eq!(to_web1_1[12..18], [0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in.clone()),
        ],
        &toml,
    );
    assert_frames_multiset_eq(
        &out.sent_ip("devices"),
        &[
            to_web1_1.clone(),
            to_fw1_fwd.clone(),
            to_web1_2.clone(),
            to_fw1_ret.clone(),
        ],
        "devices",
    );
    assert_frames_eq(&out.sent_ip("client"), &to_client, "client");
    assert_device(
        &out,
        "web1",
        &[&to_web1_1, &to_web1_2],
        &[&devices_in[0], &devices_in[2]],
    );
    assert_device(
        &out,
        "fw1",
        &[&to_fw1_fwd, &to_fw1_ret],
        &[&devices_in[1], &devices_in[3]],
    );
    assert_service(&out, "acme", "tcp", 80, &[&client_in[0]], &[&to_client[0]]);
    assert_service(
        &out,
        "secure",
        "tcp",
        443,
        &[&client_in[1]],
        &[&to_client[1]],
    );
    assert_drops(&out, &[("unknown_vlan", 2), ("source_not_verified", 2)]);
}

// ---------------------------------------------------------------------------
// 9. ARP
// ---------------------------------------------------------------------------

fn arp_op(f: &[u8]) -> Option<u16> {
    if harness::inner_ethertype(f) != Some(0x0806) {
        return None;
    }
    let off = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
    Some(u16::from_be_bytes([*f.get(off + 6)?, *f.get(off + 7)?]))
}

/// seqd answers ARP for a service IP on the client interface (as the client
/// interface's MAC), not on a device interface.
#[test]
fn arp_for_service_ips_on_client_side_only() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:30"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]
"#
    );
    let client_in = vec![
        who_has(GW_MAC, GW_IP, SVC_IP, 60),
        who_has(GW_MAC, GW_IP, SVC_IP, 42),
        who_has(GW_MAC, GW_IP, CLIENT_IF_IP, 60),
        // Not a service IP: arp_not_ours.
        who_has(GW_MAC, GW_IP, [203, 0, 113, 99], 60),
    ];
    let devices_in = vec![
        // A service IP asked on a device interface: arp_not_ours.
        who_has(WEB1_MAC, WEB1_IP, SVC_IP, 60),
        // seqd's own address there is answered.
        who_has(WEB1_MAC, WEB1_IP, DEV_IF_IP, 60),
    ];
    let out = run(
        vec![
            client_iface().input(client_in),
            devices_iface().input(devices_in),
        ],
        &toml,
    );
    let replies = |iface: &str| -> Vec<Vec<u8>> {
        out.sent(iface)
            .iter()
            .filter(|f| arp_op(f) != Some(1))
            .cloned()
            .collect()
    };
    assert_frames_eq(
        &replies("client"),
        &[
            is_at(CLIENT_IF_MAC, SVC_IP, GW_MAC, GW_IP, 60),
            is_at(CLIENT_IF_MAC, SVC_IP, GW_MAC, GW_IP, 42),
            is_at(CLIENT_IF_MAC, CLIENT_IF_IP, GW_MAC, GW_IP, 60),
        ],
        "client",
    );
    assert_frames_eq(
        &replies("devices"),
        &[is_at(DEV_IF_MAC, DEV_IF_IP, WEB1_MAC, WEB1_IP, 60)],
        "devices",
    );
    assert_drops(&out, &[("arp_not_ours", 2)]);
}

/// Asserts `frames` holds at least one ARP request and that each is `want`
/// (42 bytes), possibly zero padded to the 60-byte Ethernet minimum.
fn assert_arp_requests(frames: &[Vec<u8>], want: &[u8], what: &str) {
    assert!(!frames.is_empty(), "{what}: no ARP request sent");
    let mut padded = want.to_vec();
    padded.resize(60, 0);
    for f in frames {
        assert!(
            f.as_slice() == want || *f == padded,
            "{what}: unexpected ARP frame\n got: {}\nwant: {}",
            harness::hex(f),
            harness::hex(want)
        );
    }
}

/// A NAT server given only by ipv4 (no mac) and a client side without
/// gateway_mac.
const ARP_TOML: &str = r#"
[client]
interface = "client"
gateway = "192.0.2.254"

[[device]]
name = "web1"
mode = "nat"
interface = "devices"
ipv4 = "198.51.100.30"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["web1"]
"#;

/// Nothing answers: seqd asks for the server and the gateway at start and
/// retries; the client's request cannot be delivered, waits at most 1 s and
/// is dropped as `no_arp_entry`. seqd runs until 1.5 s without input so its
/// queue timeout has passed.
#[test]
fn arp_requests_for_unresolved_server_and_gateway() {
    let req = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let mut topo = Topology::new(vec![
        client_iface().input(vec![frame(CLIENT_IF_MAC, GW_MAC, &req)]),
        devices_iface(),
    ]);
    topo.extra_toml = ARP_TOML.to_string();
    let out = topo.run_idle(1500);
    out.assert_success();
    // Ethernet broadcast, sender = seqd's interface MAC and IP, target MAC zero.
    assert_arp_requests(
        &out.sent_arp("devices"),
        &who_has(DEV_IF_MAC, DEV_IF_IP, WEB1_IP, 0),
        "devices",
    );
    assert_arp_requests(
        &out.sent_arp("client"),
        &who_has(CLIENT_IF_MAC, CLIENT_IF_IP, GW_IP, 0),
        "client",
    );
    assert_frames_eq(&out.sent_ip("devices"), &[], "devices (nothing resolved)");
    assert_frames_eq(&out.sent_ip("client"), &[], "client");
    assert_drops(&out, &[("no_arp_entry", 1)]);
}

/// The server's and the gateway's ARP replies come in (in the devices and
/// the client input): the client's request, which waited for the server's
/// reply, is delivered NAT'd to the learnt MAC, and the server's reply goes
/// to the learnt gateway MAC. Unsolicited replies are learnt for addresses
/// seqd resolves, so the replies may even beat seqd's requests; the
/// requests themselves are checked above.
#[test]
fn arp_resolves_nat_server_and_gateway() {
    let req = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn);
    let resp = tcp(WEB1_IP, 80, CLIENT_IP, 40000, Flags::SynAck);
    let client_in = vec![
        frame(CLIENT_IF_MAC, GW_MAC, &req),
        is_at(GW_MAC, GW_IP, CLIENT_IF_MAC, CLIENT_IF_IP, 60),
    ];
    // Two bursts of ARP requests for an address seqd does not answer delay
    // the server's reply, so the client's request (one burst on the client
    // port) is seen first and has to wait for it.
    let filler = who_has(STRANGER_MAC, [198, 51, 100, 99], [198, 51, 100, 98], 60);
    let mut devices_in = vec![filler; 64];
    devices_in.push(is_at(WEB1_MAC, WEB1_IP, DEV_IF_MAC, DEV_IF_IP, 60));
    devices_in.push(frame(DEV_IF_MAC, WEB1_MAC, &resp));
    let to_web1 = frame(WEB1_MAC, DEV_IF_MAC, &req.clone().to(WEB1_IP, 80));
    let to_client = frame(GW_MAC, CLIENT_IF_MAC, &resp.clone().from(SVC_IP, 80));
    let out = run(
        vec![
            client_iface().input(client_in.clone()),
            devices_iface().input(devices_in),
        ],
        ARP_TOML,
    );
    assert_frames_eq(&out.sent_ip("devices"), &[to_web1], "devices (to web1)");
    assert_frames_eq(
        &out.sent_ip("client"),
        std::slice::from_ref(&to_client),
        "client",
    );
    // Whatever ARP seqd sent is its request for the address it resolves there.
    for (iface, want) in [
        ("devices", who_has(DEV_IF_MAC, DEV_IF_IP, WEB1_IP, 0)),
        ("client", who_has(CLIENT_IF_MAC, CLIENT_IF_IP, GW_IP, 0)),
    ] {
        let sent = out.sent_arp(iface);
        if !sent.is_empty() {
            assert_arp_requests(&sent, &want, iface);
        }
    }
    // Learnt replies are not checked against a drop reason: the contract
    // does not say whether a consumed reply counts as `arp_ignored`.
    assert_eq!(out.drops("arp_not_ours"), 64, "{}", out.stats["drops"]);
    assert_eq!(out.drops("no_arp_entry"), 0, "{}", out.stats["drops"]);
    assert_service(&out, "acme", "tcp", 80, &[&client_in[0]], &[&to_client]);
}

// ---------------------------------------------------------------------------
// 10. Config compile errors
// ---------------------------------------------------------------------------

const CFG_HEAD: &str = r#"[eal]
cores = "0-1"
hugepages = false
memory_mb = 128
mbufs = 2047
file_prefix = "seqd-check"

[[interface]]
name = "client"
device = "net_null0"
ipv4 = "192.0.2.1/24"

[[interface]]
name = "devices"
device = "net_null1"
ipv4 = "198.51.100.1/24"

[[interface]]
name = "servers"
device = "net_null2"
ipv4 = "198.18.0.1/24"

[workers]
lcores = [1]
"#;

const CFG_CLIENT: &str = r#"
[client]
interface = "client"
gateway = "192.0.2.254"
"#;

const CFG_DEVICES: &str = r#"
[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"
server_interface = "servers"
server_mac = "52:54:00:00:00:11"

[[device]]
name = "ids1"
interface = "devices"
mac = "52:54:00:00:00:40"

[[device]]
name = "web1"
mode = "nat"
interface = "servers"
mac = "52:54:00:00:00:30"
ipv4 = "198.18.0.30"
"#;

const CFG_SERVICES: &str = r#"
[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["fw1", "web1"]
copies = { web1 = ["ids1"] }
alerts_to = "web1"
translate_to = 8080

[[service.port]]
port = 21
hops = ["fw1", "web1"]
dynamic_ports = "50000-50100"
"#;

#[test]
fn config_compile_errors() {
    let cfg = |client: &str, devices: &str, services: &str| {
        format!("{CFG_HEAD}{client}{devices}{services}")
    };
    let good = cfg(CFG_CLIENT, CFG_DEVICES, CFG_SERVICES);
    let (code, err) = check_config_text(&good);
    assert_eq!(code, 0, "the base config must be valid: {err}");

    let svc = |from: &str, to: &str| {
        assert!(CFG_SERVICES.contains(from), "{from}");
        cfg(CFG_CLIENT, CFG_DEVICES, &CFG_SERVICES.replacen(from, to, 1))
    };
    let svc_plus = |more: &str| cfg(CFG_CLIENT, CFG_DEVICES, &format!("{CFG_SERVICES}{more}"));
    let dev = |from: &str, to: &str| {
        assert!(CFG_DEVICES.contains(from), "{from}");
        cfg(CFG_CLIENT, &CFG_DEVICES.replacen(from, to, 1), CFG_SERVICES)
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown device in hops",
            svc(r#"hops = ["fw1", "web1"]"#, r#"hops = ["fw1", "nope1", "web1"]"#),
            &["hops", "nope1"],
        ),
        (
            "unknown passive device in copies",
            svc(r#"web1 = ["ids1"]"#, r#"web1 = ["nope2"]"#),
            &["copies", "nope2"],
        ),
        (
            "unknown hop in copies",
            svc(r#"web1 = ["ids1"]"#, r#"nope3 = ["ids1"]"#),
            &["copies", "nope3"],
        ),
        (
            "unknown device in alerts_to",
            svc(r#"alerts_to = "web1""#, r#"alerts_to = "nope4""#),
            &["alerts_to", "nope4"],
        ),
        (
            "a device twice in one sequence",
            svc(r#"hops = ["fw1", "web1"]"#, r#"hops = ["fw1", "fw1", "web1"]"#),
            &["hops", "fw1"],
        ),
        (
            "a nat device that is not the last hop",
            svc(
                "port = 21\nhops = [\"fw1\", \"web1\"]",
                "port = 21\nhops = [\"web1\", \"fw1\"]",
            ),
            &["hops", "web1"],
        ),
        (
            "a nat device without ipv4",
            dev("ipv4 = \"198.18.0.30\"\n", ""),
            // device[2] is web1; the line names it, its mode and what is missing.
            &["device[2]", "nat", "ipv4"],
        ),
        (
            "a passive device that is also a hop",
            svc(r#"web1 = ["ids1"]"#, r#"web1 = ["fw1"]"#),
            &["copies", "fw1"],
        ),
        (
            "overlapping dynamic ranges of two ports",
            svc_plus(
                "\n[[service.port]]\nport = 2121\nhops = [\"web1\"]\ndynamic_ports = \"50050-50200\"\n",
            ),
            &["dynamic_ports", "50050-50200"],
        ),
        (
            "overlapping dynamic ranges of two services with the same IP (edge)",
            svc_plus(
                "\n[[service]]\nname = \"acme-ftp\"\nip = \"203.0.113.10\"\n\n[[service.port]]\nport = 2100\nhops = [\"web1\"]\ndynamic_ports = \"50100-50200\"\n",
            ),
            &["dynamic_ports", "50100-50200"],
        ),
        (
            "a dynamic range that contains another port of the service",
            svc_plus("\n[[service.port]]\nport = 8000\nhops = [\"web1\"]\ndynamic_ports = \"20-30\"\n"),
            &["dynamic_ports", "20-30"],
        ),
        (
            "a dynamic range upside down",
            svc(r#"dynamic_ports = "50000-50100""#, r#"dynamic_ports = "50100-50000""#),
            &["dynamic_ports", "50100-50000"],
        ),
        (
            "two services with the same (ip, protocol, port)",
            svc_plus(
                "\n[[service]]\nname = \"other\"\nip = \"203.0.113.10\"\n\n[[service.port]]\nport = 80\nhops = [\"web1\"]\n",
            ),
            &["service[1]", "80"],
        ),
        (
            "\"both\" and \"udp\" on the same ip and port",
            svc_plus(
                "\n[[service.port]]\nport = 53\nprotocol = \"both\"\nhops = [\"web1\"]\n\n[[service]]\nname = \"other\"\nip = \"203.0.113.10\"\n\n[[service.port]]\nport = 53\nprotocol = \"udp\"\nhops = [\"web1\"]\n",
            ),
            &["service[1]", "53"],
        ),
        (
            "an unknown interface of a device",
            dev("interface = \"devices\"", "interface = \"nope5\""),
            &["interface", "nope5"],
        ),
        (
            "an unknown server_interface",
            dev("server_interface = \"servers\"", "server_interface = \"nope6\""),
            &["server_interface", "nope6"],
        ),
        (
            "an unknown client interface",
            cfg(
                &CFG_CLIENT.replace("interface = \"client\"", "interface = \"nope7\""),
                CFG_DEVICES,
                CFG_SERVICES,
            ),
            &["client.interface", "nope7"],
        ),
    ];
    for (what, text, needles) in cases {
        let (code, err) = check_config_text(&text);
        assert_eq!(code, 2, "{what}: exit code; stderr: {err}");
        let line = err.trim_end();
        assert_eq!(
            line.lines().count(),
            1,
            "{what}: one line expected, got:\n{err}"
        );
        for n in needles {
            assert!(
                line.contains(n),
                "{what}: error {line:?} does not mention {n:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 11. Example configs
// ---------------------------------------------------------------------------

/// Every example config (but conf/seqd.toml, which needs three cores, and
/// the tables-only conf/tables-example.toml) passes
/// `--check-config`; the sequencing examples are all there.
#[test]
fn example_configs_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    for name in [
        "one-server-nat.toml",
        "two-ports.toml",
        "chain-fw-vpn-ids.toml",
        "port-translation.toml",
        "dynamic-ports.toml",
        "proxy.toml",
        "vlan-devices.toml",
    ] {
        assert!(dir.join(name).is_file(), "conf/{name} is missing");
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // tables-example.toml holds only tables, for `seqctl apply` (tested
        // in tests/seqctl.rs).
        if path.extension().is_none_or(|e| e != "toml")
            || path.ends_with("seqd.toml")
            || path.ends_with("tables-example.toml")
        {
            continue;
        }
        let (code, err) = check_config_file(&path);
        assert_eq!(code, 0, "{}: {err}", path.display());
        checked += 1;
    }
    assert!(checked >= 8, "checked only {checked} configs");
}

// ---------------------------------------------------------------------------
// The builders themselves (no seqd): what the expectations rest on
// ---------------------------------------------------------------------------

/// One's-complement sum of 16-bit words (odd tail padded with zero).
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// Checks the IPv4 header checksum and, for an unfragmented packet, the
/// TCP/UDP checksum over the pseudo-header, by a plain one's-complement sum.
fn assert_checksums_valid(ip: &[u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    assert_eq!(ones_sum(&ip[..ihl], 0), 0xffff, "IPv4 header checksum");
    let l4 = &ip[ihl..usize::from(u16::from_be_bytes([ip[2], ip[3]]))];
    if ip[9] == 17 && l4[6..8] == [0, 0] {
        return; // UDP without a checksum
    }
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    assert_eq!(ones_sum(l4, ones_sum(&pseudo, 0)), 0xffff, "L4 checksum");
}

#[test]
fn packet_builders_are_sound() {
    let syn = tcp(CLIENT_IP, 40000, SVC_IP, 80, Flags::Syn).ip_options(&[0x94, 4, 0, 0]);
    for p in [
        syn.clone(),
        syn.clone().to(WEB1_IP, 8080),
        tcp(SVC_IP, 80, CLIENT_IP, 1, Flags::PshAck).payload(b"odd length"),
        udp(CLIENT_IP, 1, SVC_IP, 53, b"dns"),
        udp(CLIENT_IP, 1, SVC_IP, 53, b"dns").to(WEB1_IP, 53),
        udp(CLIENT_IP, 1, SVC_IP, 53, b"zero").no_udp_checksum(),
    ] {
        let ip = p.ip();
        assert_checksums_valid(&ip);
        assert_eq!(&ip[12..16], &p.src);
        assert_eq!(&ip[16..20], &p.dst);
    }
    // Options are in the header (IHL 6) and kept by `to`.
    let ip = syn.clone().to(WEB1_IP, 80).ip();
    assert_eq!(ip[0], 0x46);
    assert_eq!(&ip[20..24], &[0x94, 4, 0, 0]);
    // Fragments: MF and offsets; the first carries the UDP header with the
    // whole datagram's checksum; reassembled they are the datagram.
    let big = udp(CLIENT_IP, 40003, SVC_IP, 53, &[0x5a; 100]);
    let whole = big.ip();
    let (a, b) = big.fragments(48);
    assert_eq!(ones_sum(&a[..20], 0), 0xffff);
    assert_eq!(ones_sum(&b[..20], 0), 0xffff);
    assert_eq!(u16::from_be_bytes([a[6], a[7]]), 0x2000, "MF, offset 0");
    assert_eq!(u16::from_be_bytes([b[6], b[7]]), 6, "offset 48/8");
    assert_eq!(a.len(), 20 + 48);
    assert_eq!([&a[20..], &b[20..]].concat(), whole[20..]);
    // A TCP SYN frame is 14 + 20 + 24 (MSS option) bytes; a tagged one 4 more.
    let f = frame(
        WEB1_MAC,
        DEV_IF_MAC,
        &tcp(CLIENT_IP, 1, SVC_IP, 80, Flags::Syn),
    );
    assert_eq!(f.len(), 58);
    assert_eq!(f[12..14], [0x08, 0x00]);
    let t = tagged(
        WEB1_MAC,
        DEV_IF_MAC,
        100,
        &tcp(CLIENT_IP, 1, SVC_IP, 80, Flags::Syn),
    );
    assert_eq!(t.len(), 62);
    assert_eq!(t[4 + 14..], f[14..]);
    // ARP request layout.
    let r = who_has(DEV_IF_MAC, DEV_IF_IP, WEB1_IP, 0);
    assert_eq!(r.len(), 42);
    assert_eq!(r[..6], [0xff; 6]);
    assert_eq!(r[6..12], DEV_IF_MAC);
    assert_eq!(r[12..14], [0x08, 0x06]);
    assert_eq!(r[20..22], [0, 1]);
    assert_eq!(r[22..28], DEV_IF_MAC);
    assert_eq!(r[28..32], DEV_IF_IP);
    assert_eq!(r[32..38], [0; 6]);
    assert_eq!(r[38..42], WEB1_IP);
}

// ---------------------------------------------------------------------------
// Failover: a device that is down is taken over by its alternate
// ---------------------------------------------------------------------------

/// fw1 is down; the pool of firewalls names fw2 as the one that is up. The
/// sequence fw1 -> web1 runs as fw2 -> web1 in both directions, and fw1
/// receives nothing.
#[test]
fn a_down_device_is_taken_over_by_its_pool() {
    const FW2_MAC: Mac = [0x52, 0x54, 0, 0, 0, 0x12];
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"
state = "down"

[[device]]
name = "fw2"
interface = "devices"
mac = "52:54:00:00:00:12"

[[device]]
name = "web1"
interface = "devices"
mac = "52:54:00:00:00:30"

[[pool]]
name = "firewalls"
devices = ["fw1", "fw2"]

[[service]]
name = "secure"
ip = "203.0.113.20"

[[service.port]]
port = 443
hops = ["fw1", "web1"]
"#
    );
    let req = tcp(CLIENT_IP, 40001, SVC2_IP, 443, Flags::Syn);
    let resp = tcp(SVC2_IP, 443, CLIENT_IP, 40001, Flags::SynAck);
    let client_in = vec![frame(CLIENT_IF_MAC, GW_MAC, &req)];
    let devices_in = vec![
        // fw2 passes the request on, web1 answers, fw2 passes the answer back.
        frame(DEV_IF_MAC, FW2_MAC, &req),
        frame(DEV_IF_MAC, WEB1_MAC, &resp),
        frame(DEV_IF_MAC, FW2_MAC, &resp),
    ];
    let out = run(
        vec![
            client_iface().input(client_in),
            devices_iface().input(devices_in),
        ],
        &toml,
    );
    assert_frames_multiset_eq(
        &out.sent_ip("devices"),
        &[
            frame(FW2_MAC, DEV_IF_MAC, &req),
            frame(WEB1_MAC, DEV_IF_MAC, &req),
            frame(FW2_MAC, DEV_IF_MAC, &resp),
        ],
        "devices",
    );
    assert_frames_eq(
        &out.sent_ip("client"),
        &[frame(GW_MAC, CLIENT_IF_MAC, &resp)],
        "client",
    );
    assert_eq!(out.device("fw1")["packets_to"], 0);
    assert_eq!(out.device("fw2")["packets_to"], 2);
    assert_eq!(out.total_drops(), 0);
}

/// Copies belong to one port of a service: with ports 80 and 8080 on the
/// same sequence and ids1 watching only 8080's server, only 8080's packets
/// are copied (the port's own record, not its neighbour's, decides).
#[test]
fn copies_follow_the_port_that_has_them() {
    let toml = format!(
        r#"{CLIENT_TOML}
[[device]]
name = "fw1"
interface = "devices"
mac = "52:54:00:00:00:10"

[[device]]
name = "web1"
interface = "servers"
mac = "52:54:00:00:00:30"

[[device]]
name = "ids1"
interface = "devices"
mac = "52:54:00:00:00:40"

[[service]]
name = "acme"
ip = "203.0.113.10"

[[service.port]]
port = 80
hops = ["fw1", "web1"]

[[service.port]]
port = 8080
hops = ["fw1", "web1"]
copies = {{ web1 = ["ids1"] }}

[[service.port]]
port = 8081
hops = ["fw1", "web1"]
"#
    );
    let mut client_in = Vec::new();
    let mut devices_in = Vec::new();
    let mut servers_in = Vec::new();
    let mut want_devices = Vec::new();
    let mut want_servers = Vec::new();
    let mut want_client = Vec::new();
    for (i, port) in [80u16, 8080, 8081].into_iter().enumerate() {
        let req = tcp(CLIENT_IP, 40000 + i as u16, SVC_IP, port, Flags::Syn);
        let resp = tcp(SVC_IP, port, CLIENT_IP, 40000 + i as u16, Flags::SynAck);
        client_in.push(frame(CLIENT_IF_MAC, GW_MAC, &req));
        devices_in.push(frame(DEV_IF_MAC, FW1_MAC, &req));
        servers_in.push(frame(SRV_IF_MAC, WEB1_MAC, &resp));
        devices_in.push(frame(DEV_IF_MAC, FW1_MAC, &resp));
        want_devices.push(frame(FW1_MAC, DEV_IF_MAC, &req));
        want_devices.push(frame(FW1_MAC, DEV_IF_MAC, &resp));
        want_servers.push(frame(WEB1_MAC, SRV_IF_MAC, &req));
        want_client.push(frame(GW_MAC, CLIENT_IF_MAC, &resp));
        if port == 8080 {
            want_devices.push(frame(IDS1_MAC, DEV_IF_MAC, &req));
            want_devices.push(frame(IDS1_MAC, DEV_IF_MAC, &resp));
        }
    }
    let out = run(
        vec![
            client_iface().input(client_in),
            devices_iface().input(devices_in),
            servers_iface().input(servers_in),
        ],
        &toml,
    );
    assert_frames_multiset_eq(&out.sent_ip("devices"), &want_devices, "devices");
    assert_frames_multiset_eq(&out.sent_ip("servers"), &want_servers, "servers");
    assert_frames_multiset_eq(&out.sent_ip("client"), &want_client, "client");
    assert_eq!(out.device("ids1")["packets_to"], 2);
    assert_eq!(out.total_drops(), 0);
}
