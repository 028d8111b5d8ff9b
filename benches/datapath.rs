//! Per-packet cost of the pure datapath core: parse, classify (sender,
//! service port), ACL, rewrite with checksum, Ethernet rewrite and
//! counters — what a worker does between rx and tx, without DPDK.
//!
//! The tables are those `scripts/gen-traffic.py` configures: N service
//! ports on N/2 service IPs (443/tcp and 53/udp), 64 devices, every 4th IP
//! behind a firewall, and 10 ACL rules per service IP behind one provider
//! rule. The frames are its mix too (90% steered over every step of each
//! chain in both directions, 5% to no service, 5% denied by the ACL), 64
//! bytes, over 65,536 frames picked at random among all services, so the
//! table and counter misses are real at large N.
//!
//! Each burst of 32 is first copied from the pristine frames into the
//! worker's buffers (what `net_pcap` with `infinite_rx` does per rx), then
//! processed in the worker's three passes ([`Datapath::prepare`],
//! [`Datapath::lookup_burst`], [`Datapath::finish`]) with the worker's
//! rewrite and counting. `copy only` is that copy alone: subtract it.
//!
//! A summary is printed first: ns and TSC cycles per packet (the TSC rate
//! is calibrated against the clock), and the table bytes per service.
//!
//! Run: `cargo bench --bench datapath` (BENCH_SERVICES="1000 100000" to
//! choose N; default 1,000, 100,000 and 1,000,000; BENCH_BURSTS for the
//! summary's run length, default 200,000 bursts).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use seqd::acl::{AclTable, Action, PortRange, Protocol, Rule, SrcPrefix, TcpFlagsMatch};
use seqd::datapath::counters::{Counters, DropReason, Sizes, WorkerCounters};
use seqd::datapath::dpdk::rdtsc;
use seqd::datapath::neighbor::Neighbors;
use seqd::datapath::packet::{EtherType, IpProtocol, MacAddr};
use seqd::datapath::pipeline::{self, Datapath, Interface, Prepared, Verdict};
use seqd::datapath::tables::{
    ClientSide, Copies, Device, DeviceMode, Hop, Leg, NextMac, ServicePort, Tables,
};
use seqd::datapath::worker::{count_acl, count_arrival, count_departure, prefetch_counters};

const BURST: usize = 32;
const FRAMES: usize = 65536;
const FRAME_LEN: usize = 60;
const IFACE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0xfe, 0xfe];
const N_SERVERS: usize = 48;
const N_FIREWALLS: usize = 16;
const SERVICE_BASE: u32 = 0x6440_0001; // 100.64.0.1
const UNKNOWN_BASE: u32 = 0x6470_0000; // 100.112.0.0
const CLIENT_BASE: u32 = 0xc612_0000; // 198.18.0.0/15
const DENIED_BASE: u32 = 0x0a80_0000; // 10.128.0.0: a /28 per service IP

/// splitmix64: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn device_mac(d: usize) -> [u8; 6] {
    if d < N_SERVERS {
        [0x52, 0x54, 0, 0, 1, d as u8]
    } else {
        [0x52, 0x54, 0, 0, 2, (d - N_SERVERS) as u8]
    }
}

fn hops_of(s: usize, rng: &mut Rng) -> Vec<usize> {
    let server = rng.below(N_SERVERS as u64) as usize;
    if s % 4 == 3 {
        vec![N_SERVERS + rng.below(N_FIREWALLS as u64) as usize, server]
    } else {
        vec![server]
    }
}

fn rule(
    id: &mut u32,
    prio: u32,
    src: (u32, u8),
    proto: Protocol,
    dst: PortRange,
    action: Action,
) -> Rule {
    *id += 1;
    Rule {
        id: *id - 1,
        priority: prio,
        src: SrcPrefix {
            addr: src.0,
            len: src.1,
        },
        protocol: proto,
        dst_ports: dst,
        src_ports: PortRange::ANY,
        tcp_flags: None,
        action,
    }
}

/// gen-traffic.py's ten rules of service IP number `s`.
fn acl_rules(s: u32, id: &mut u32) -> Vec<Rule> {
    let host = 0x0ac8_0000 + (s * 7) % 65536;
    let any = PortRange::ANY;
    let mut v = vec![
        rule(
            id,
            10,
            (DENIED_BASE + 16 * s, 28),
            Protocol::Any,
            any,
            Action::Deny,
        ),
        rule(id, 20, (host, 32), Protocol::Tcp, any, Action::Deny),
        rule(
            id,
            30,
            (host + 1, 32),
            Protocol::Udp,
            PortRange::exact(53),
            Action::Deny,
        ),
        rule(
            id,
            40,
            (0xc612_0000, 16),
            Protocol::Tcp,
            PortRange::exact(443),
            Action::Allow,
        ),
        rule(
            id,
            50,
            (0xc613_0000, 16),
            Protocol::Tcp,
            PortRange::exact(443),
            Action::Allow,
        ),
        rule(
            id,
            60,
            (0xc612_0000, 15),
            Protocol::Udp,
            PortRange::exact(53),
            Action::Allow,
        ),
        rule(id, 70, (0xcb00_7100, 24), Protocol::Any, any, Action::Deny),
        rule(
            id,
            80,
            (0xc000_0200, 24),
            Protocol::Tcp,
            PortRange { lo: 8000, hi: 8999 },
            Action::Allow,
        ),
        rule(id, 90, (0xc633_6400, 24), Protocol::Tcp, any, Action::Deny),
        rule(id, 100, (0, 0), Protocol::Tcp, any, Action::Allow),
    ];
    v[8].tcp_flags = Some(TcpFlagsMatch::OPENING);
    v[9].src_ports = PortRange {
        lo: 1024,
        hi: 65535,
    };
    v
}

struct Setup {
    dp: Datapath,
    tables: Tables,
    counters: Counters,
    frames: Vec<[u8; FRAME_LEN]>,
}

fn frame(
    src_mac: [u8; 6],
    udp: bool,
    src: u32,
    sport: u16,
    dst: u32,
    dport: u16,
) -> [u8; FRAME_LEN] {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, IFACE_MAC).ipv4(
        src.to_be_bytes(),
        dst.to_be_bytes(),
        64,
    );
    let mut out = Vec::new();
    if udp {
        b.udp(sport, dport).write(&mut out, &[]).unwrap();
    } else {
        b.tcp(sport, dport, 1, 65535)
            .ack(2)
            .psh()
            .write(&mut out, &[])
            .unwrap();
    }
    let mut f = [0u8; FRAME_LEN];
    f[..out.len()].copy_from_slice(&out);
    f
}

fn setup(n: usize) -> Setup {
    let mut rng = Rng(20240229);
    let devices: Vec<Device> = (0..N_SERVERS + N_FIREWALLS)
        .map(|d| {
            let leg = Leg {
                iface: 0,
                vlan: None,
                mac: NextMac::Static(MacAddr(device_mac(d))),
            };
            Device {
                name: format!("dev{d}"),
                slot: d as u32,
                mode: DeviceMode::Alias,
                ipv4: None,
                client_leg: leg,
                server_leg: leg,
            }
        })
        .collect();
    let n_ips = n.div_ceil(2);
    let mut ips = Vec::with_capacity(n_ips);
    let mut ports = Vec::with_capacity(n);
    for s in 0..n_ips {
        let hops = hops_of(s, &mut rng);
        let ip = Ipv4Addr::from(SERVICE_BASE + s as u32);
        for (k, (port, protocol)) in [(443, IpProtocol::Tcp), (53, IpProtocol::Udp)]
            .into_iter()
            .enumerate()
        {
            if 2 * s + k >= n {
                break;
            }
            ports.push(ServicePort {
                slot: ports.len() as u32,
                service: format!("svc-{s:06}"),
                ip,
                protocol,
                port,
                translate_to: None,
                dynamic: None,
                hops: hops
                    .iter()
                    .map(|&d| Hop {
                        device: d as u16,
                        copies: Copies::default(),
                    })
                    .collect(),
                alerts_to: hops.len() - 1,
            });
        }
        ips.push((ip, hops));
    }
    let client = ClientSide {
        iface: 0,
        gateway: NextMac::Static(MacAddr(GW_MAC)),
    };
    let tables = Tables::build(
        1,
        Some(client),
        devices,
        ports,
        Arc::new(Neighbors::default()),
    )
    .unwrap();
    let mut b = AclTable::builder();
    let mut id = 0;
    let provider = vec![rule(
        &mut id,
        1,
        (0xf000_0000, 4),
        Protocol::Any,
        PortRange::ANY,
        Action::Deny,
    )];
    b.add_provider(0, provider, Action::Allow);
    let mut defaults = vec![((0u16, None), 0u32)];
    for (s, (ip, _)) in ips.iter().enumerate() {
        b.add_customer(
            0,
            u32::from(*ip),
            acl_rules(s as u32, &mut id),
            Action::Allow,
        );
        defaults.push(((0, Some(*ip)), s as u32 + 1));
    }
    let tables = tables.with_acl(b.build().unwrap(), defaults);
    let counters = Counters::new(
        1,
        Sizes {
            service_ports: n,
            devices: N_SERVERS + N_FIREWALLS,
            acl_rules: id as usize,
            acl_defaults: n_ips + 1,
        },
    );
    // gen-traffic.py's mix.
    let mut frames = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let k = rng.below(n as u64) as usize;
        let (s, udp) = (k / 2, k % 2 == 1);
        let dport = if udp { 53 } else { 443 };
        let (ip, hops) = &ips[s];
        let ip = u32::from(*ip);
        let client = CLIENT_BASE + 1 + rng.below((1 << 17) - 2) as u32;
        let cport = 1024 + rng.below(64512) as u16;
        let f = match i % 20 {
            0 => frame(
                GW_MAC,
                udp,
                client,
                cport,
                UNKNOWN_BASE + rng.below(1 << 20) as u32,
                dport,
            ),
            1 => frame(
                GW_MAC,
                udp,
                DENIED_BASE + 16 * s as u32 + rng.below(16) as u32,
                cport,
                ip,
                dport,
            ),
            _ => {
                let step = rng.below(2 * hops.len() as u64) as usize;
                let (h, forward) = (step / 2, step.is_multiple_of(2));
                if forward {
                    let from = if h == 0 {
                        GW_MAC
                    } else {
                        device_mac(hops[h - 1])
                    };
                    frame(from, udp, client, cport, ip, dport)
                } else {
                    frame(device_mac(hops[h]), udp, ip, dport, client, cport)
                }
            }
        };
        frames.push(f);
    }
    // Shuffle the kinds (i % 20 placed them in order).
    for i in (1..frames.len()).rev() {
        frames.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let dp = Datapath::new(vec![Interface {
        mac: MacAddr(IFACE_MAC),
        ipv4: Ipv4Addr::new(10, 0, 0, 1),
    }]);
    Setup {
        dp,
        tables,
        counters,
        frames,
    }
}

/// One burst through the worker's passes; what `Worker::process_burst`,
/// `steer` and `emit` do, with byte buffers for mbufs. Returns packets sent.
#[inline(never)]
fn run_burst(
    s: &Setup,
    c: &WorkerCounters,
    bufs: &mut [[u8; FRAME_LEN]; BURST],
    prepared: &mut [Prepared; BURST],
) -> usize {
    let t = &s.tables;
    for (p, b) in prepared.iter_mut().zip(bufs.iter()) {
        *p = s.dp.prepare(t, 0, b);
    }
    s.dp.lookup_burst_with(t, 0, prepared, |touch| prefetch_counters(c, touch));
    let mut sent = 0;
    for (p, b) in prepared.iter().zip(bufs.iter_mut()) {
        let len = FRAME_LEN as u64;
        match s.dp.finish(t, 0, b, p, 0) {
            Verdict::Steer(st) => {
                count_arrival(t, c, &st, len);
                let l3 = st.l3_offset as usize;
                pipeline::apply_rewrite(&mut b[l3..], &st.rewrite);
                let Some(dst) = t.resolve(st.to.mac) else {
                    continue;
                };
                pipeline::write_l2(
                    &mut b[..14],
                    dst,
                    MacAddr(IFACE_MAC),
                    st.to.vlan,
                    EtherType::Ipv4,
                );
                count_departure(t, c, st.to_device, st.count, len);
                sent += 1;
            }
            Verdict::Denied(hit) => {
                c.drop(DropReason::AclDeny, 1);
                count_acl(c, hit, len);
            }
            Verdict::Drop(r) => c.drop(r, 1),
            Verdict::Bounce { .. } | Verdict::Consumed => {}
        }
    }
    c.tx_packets.add(sent as u64);
    sent
}

/// `bursts` bursts starting at frame `at`; returns packets sent.
fn run(s: &Setup, at: &mut usize, bursts: usize, copy_only: bool) -> usize {
    let c = s.counters.worker(0);
    let mut bufs = [[0u8; FRAME_LEN]; BURST];
    let mut prepared = [Prepared::default(); BURST];
    let mut sent = 0;
    for _ in 0..bursts {
        bufs.copy_from_slice(&s.frames[*at..*at + BURST]);
        *at = (*at + BURST) % FRAMES;
        if copy_only {
            black_box(&mut bufs);
        } else {
            sent += run_burst(s, c, &mut bufs, &mut prepared);
        }
    }
    sent
}

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SERVICES")
        .ok()
        .map(|v| {
            v.split_whitespace()
                .map(|n| n.parse().expect("BENCH_SERVICES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000])
}

/// Nanoseconds this thread has run on a CPU (the kernel's schedstat):
/// unlike the wall clock, it leaves out the time other processes had the
/// CPU, which matters on a shared machine.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// TSC ticks per nanosecond, against the monotonic clock.
fn tsc_per_ns() -> f64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(200));
    let (t1, c1) = (Instant::now(), rdtsc());
    (c1 - c0) as f64 / (t1 - t0).as_nanos() as f64
}

fn bench(cr: &mut Criterion) {
    let ghz = tsc_per_ns();
    let setups: Vec<(usize, Setup)> = sizes()
        .into_iter()
        .map(|n| {
            let t0 = Instant::now();
            let s = setup(n);
            eprintln!("setup N={n}: {:.1} s", t0.elapsed().as_secs_f64());
            (n, s)
        })
        .collect();
    println!("datapath core, bursts of {BURST}, 64-byte frames, 10 ACL rules per service IP; TSC {ghz:.3} GHz");
    println!(
        "{:>9}  {:>10}  {:>13}  {:>10}  {:>14}  {:>15}  {:>15}  {:>6}",
        "services",
        "ns/packet",
        "cycles/packet",
        "wall ns",
        "copy ns/packet",
        "copy cyc/packet",
        "table B/service",
        "sent"
    );
    for (n, s) in &setups {
        // BENCH_BURSTS: fewer for valgrind (callgrind counts instructions).
        let bursts = std::env::var("BENCH_BURSTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let mut at = 0;
        run(s, &mut at, bursts, false); // warm up
        let mut best = (f64::MAX, f64::MAX, f64::MAX);
        let mut sent = 0;
        for copy_only in [false, true] {
            for _ in 0..5 {
                let (t0, c0) = (Instant::now(), cpu_ns());
                let x = run(s, &mut at, bursts, copy_only);
                let pkts = (bursts * BURST) as f64;
                let ns = (cpu_ns() - c0) as f64 / pkts;
                let wall = t0.elapsed().as_nanos() as f64 / pkts;
                if copy_only {
                    // Too short for the scheduler's CPU-time accounting
                    // (updated at ticks): the wall clock, best of five.
                    best.1 = best.1.min(wall);
                } else {
                    best.0 = best.0.min(ns);
                    best.2 = best.2.min(wall);
                    sent = x;
                }
            }
        }
        println!(
            "{:>9}  {:>10.1}  {:>13.1}  {:>10.1}  {:>14.1}  {:>15.1}  {:>15.0}  {:>6.1}%",
            n,
            best.0,
            best.0 * ghz,
            best.2,
            best.1,
            best.1 * ghz,
            s.tables.memory_bytes() as f64 / *n as f64,
            100.0 * sent as f64 / (bursts * BURST) as f64
        );
    }
    let mut g = cr.benchmark_group("datapath");
    g.throughput(Throughput::Elements((32 * BURST) as u64));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for (n, s) in &setups {
        let mut at = 0;
        g.bench_with_input(BenchmarkId::new("burst32", n), s, |b, s| {
            b.iter(|| run(s, &mut at, 32, false))
        });
    }
    if let Some((n, s)) = setups.first() {
        let mut at = 0;
        g.bench_with_input(BenchmarkId::new("copy only", n), s, |b, s| {
            b.iter(|| run(s, &mut at, 32, true))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
