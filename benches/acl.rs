//! ACL lookup cost per packet.
//!
//! - One service with 1, 10, 100 and 1,000 customer rules behind a few
//!   provider rules: `RuleSet::lookup` per packet and `AclTable::lookup_burst`
//!   on bursts of 32.
//! - 1,000,000 customer rules across 100,000 services (10 each) on one
//!   interface, each packet to a random service so the cache misses are
//!   real: `lookup_burst` on bursts of 32, and `lookup` one at a time.
//!
//! Every iteration looks up [`PER_ITER`] packets, so criterion's time per
//! iteration divided by 1,024 is the cost per packet (the throughput line
//! reads in packets per second). A summary in ns/packet and the memory per
//! rule of the big table are printed first.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/acl-target cargo bench --bench acl`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use seqd::acl::{
    AclTable, Action, PacketFields, PortRange, Protocol, Rule, RuleSet, SrcPrefix, TcpFlagsMatch,
};

const BURST: usize = 32;
/// Packets per criterion iteration: 32 bursts of 32.
const PER_ITER: usize = 1024;
const IFACE: u16 = 1;

/// splitmix64: a small deterministic generator, enough for test data.
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
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

const SERVICE_PORTS: [u16; 10] = [80, 443, 22, 25, 53, 8080, 3306, 5432, 6379, 9000];

fn prefix(addr: u32, len: u8) -> SrcPrefix {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    SrcPrefix {
        addr: addr & mask,
        len,
    }
}

/// `n` customer rules of one service: mostly /32 and /24 client prefixes
/// (some /16, a few /0), TCP and UDP, exact destination ports and a few
/// ranges, some SYN-only rules.
fn customer_rules(rng: &mut Rng, n: usize, first_id: u32) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            // Clients in 100.64.0.0/10.
            let client = 0x6440_0000 | (rng.next() as u32 & 0x003f_ffff);
            let len = match rng.below(100) {
                0..=54 => 32,
                55..=89 => 24,
                90..=97 => 16,
                _ => 0,
            };
            let tcp = rng.pct(70);
            let dst_ports = match rng.below(100) {
                0..=84 => PortRange::exact(SERVICE_PORTS[rng.below(10) as usize]),
                85..=92 => PortRange::ANY,
                93..=96 => PortRange { lo: 8000, hi: 8999 },
                _ => PortRange {
                    lo: 30000,
                    hi: 32767,
                },
            };
            let src_ports = if rng.pct(5) {
                PortRange {
                    lo: 1024,
                    hi: 65535,
                }
            } else {
                PortRange::ANY
            };
            Rule {
                id: first_id + i as u32,
                priority: (i as u32 + 1) * 10,
                src: prefix(client, len),
                protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
                dst_ports,
                src_ports,
                tcp_flags: (tcp && rng.pct(10)).then_some(TcpFlagsMatch::OPENING),
                action: if rng.pct(80) {
                    Action::Allow
                } else {
                    Action::Deny
                },
            }
        })
        .collect()
}

/// The interface's provider rules: bogon /8 and /16 denies, a /0 UDP
/// chargen deny, a /0 ICMP allow.
fn provider_rules() -> Vec<Rule> {
    let r = |id, priority, src, protocol, dst_ports, action| Rule {
        id,
        priority,
        src,
        protocol,
        dst_ports,
        src_ports: PortRange::ANY,
        tcp_flags: None,
        action,
    };
    vec![
        r(
            1,
            1,
            prefix(0x0a00_0000, 8),
            Protocol::Any,
            PortRange::ANY,
            Action::Deny,
        ),
        r(
            2,
            2,
            prefix(0xc0a8_0000, 16),
            Protocol::Any,
            PortRange::ANY,
            Action::Deny,
        ),
        r(
            3,
            3,
            prefix(0xa9fe_0000, 16),
            Protocol::Any,
            PortRange::ANY,
            Action::Deny,
        ),
        r(
            4,
            4,
            SrcPrefix::ANY,
            Protocol::Udp,
            PortRange::exact(19),
            Action::Deny,
        ),
        r(
            5,
            5,
            SrcPrefix::ANY,
            Protocol::Icmp,
            PortRange::ANY,
            Action::Allow,
        ),
    ]
}

/// A packet: half aimed at one of the rules (its prefix, its port), half
/// from random clients (mostly falling through to the default).
fn packet(rng: &mut Rng, rules: &[Rule]) -> PacketFields {
    let (src, dst_port, protocol) = if !rules.is_empty() && rng.pct(50) {
        let r = &rules[rng.below(rules.len() as u64) as usize];
        let host = rng.next() as u32 & !r.src.mask();
        let port =
            r.dst_ports.lo + (rng.below(r.dst_ports.hi as u64 - r.dst_ports.lo as u64 + 1) as u16);
        (r.src.addr | host, port, r.protocol.number().unwrap_or(6))
    } else {
        (
            0x6440_0000 | (rng.next() as u32 & 0x003f_ffff),
            SERVICE_PORTS[rng.below(10) as usize],
            if rng.pct(70) { 6 } else { 17 },
        )
    };
    let protocol = if rng.pct(3) { 1 } else { protocol };
    let has_ports = protocol != 1;
    PacketFields {
        src,
        protocol,
        src_port: if has_ports {
            1024 + rng.below(60000) as u16
        } else {
            0
        },
        dst_port: if has_ports { dst_port } else { 0 },
        has_ports,
        tcp_flags: if protocol == 6 {
            [0x02, 0x10, 0x18, 0x12][rng.below(4) as usize]
        } else {
            0
        },
    }
}

/// One service with `n` customer rules, as a rule set and as a table.
fn one_service(n: usize) -> (RuleSet, AclTable, u32, Vec<PacketFields>) {
    let mut rng = Rng(n as u64);
    let svc = 0xcb00_7101;
    let rules = customer_rules(&mut rng, n, 100);
    let set = RuleSet::compile(&provider_rules(), &rules, Action::Deny).unwrap();
    let mut b = AclTable::builder();
    b.add_provider(IFACE, provider_rules(), Action::Deny);
    b.add_customer(IFACE, svc, rules.clone(), Action::Deny);
    let table = b.build().unwrap();
    let packets = (0..PER_ITER).map(|_| packet(&mut rng, &rules)).collect();
    (set, table, svc, packets)
}

const SERVICES: u32 = 100_000;
const RULES_PER_SERVICE: usize = 10;
/// Keys cycled through by the 1M-rule benchmark (more than fit any cache).
const BIG_KEYS: usize = 1 << 16;

/// 1,000,000 rules across 100,000 services, and random (service, packet)
/// keys.
fn big_table() -> (AclTable, Vec<(u32, PacketFields)>, usize) {
    let mut rng = Rng(42);
    let mut b = AclTable::builder();
    b.add_provider(IFACE, provider_rules(), Action::Deny);
    let mut all = Vec::with_capacity(SERVICES as usize);
    for s in 0..SERVICES {
        let rules = customer_rules(&mut rng, RULES_PER_SERVICE, s * RULES_PER_SERVICE as u32);
        all.push(rules.clone());
        b.add_customer(IFACE, 0x2000_0000 + s, rules, Action::Deny);
    }
    let table = b.build().unwrap();
    let keys = (0..BIG_KEYS)
        .map(|_| {
            let s = rng.below(SERVICES as u64) as usize;
            (0x2000_0000 + s as u32, packet(&mut rng, &all[s]))
        })
        .collect();
    (table, keys, SERVICES as usize * RULES_PER_SERVICE)
}

/// A quick ns/packet figure outside criterion, for the summary.
fn ns_per_packet(mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut packets = 0usize;
    while start.elapsed() < Duration::from_millis(300) {
        packets += f();
    }
    start.elapsed().as_nanos() as f64 / packets as f64
}

fn burst_all(
    table: &AclTable,
    keys: &[(u32, PacketFields)],
    out: &mut [Option<seqd::acl::Verdict>],
) -> usize {
    let mut n = 0;
    for (k, o) in keys.chunks(BURST).zip(out.chunks_mut(BURST)) {
        table.lookup_burst(IFACE, k, o);
        n += k.len();
    }
    black_box(&out);
    n
}

fn benches(c: &mut Criterion) {
    let sizes = [1usize, 10, 100, 1000];
    let cases: Vec<_> = sizes.iter().map(|&n| (n, one_service(n))).collect();

    let (big, big_keys, big_rules) = big_table();
    let mem = big.memory_bytes();

    println!();
    println!("ACL lookup, ns/packet (quick measure; criterion's figures follow)");
    println!(
        "{:<34} {:>8} {:>8} {:>14} {:>14}",
        "case", "lengths", "probes", "RuleSet::lookup", "burst of 32"
    );
    let mut out = vec![None; PER_ITER];
    for (n, (set, table, svc, packets)) in &cases {
        let keys: Vec<(u32, PacketFields)> = packets.iter().map(|p| (*svc, *p)).collect();
        let single = ns_per_packet(|| {
            for p in packets {
                black_box(set.lookup(black_box(p)));
            }
            packets.len()
        });
        let burst = ns_per_packet(|| burst_all(table, &keys, &mut out));
        println!(
            "{:<34} {:>8} {:>8} {:>14.1} {:>14.1}",
            format!("1 service, {n} rules (+5 prov.)"),
            set.stats().lengths,
            set.stats().max_probes,
            single,
            burst
        );
    }
    let mut off = 0;
    let big_burst = ns_per_packet(|| {
        let n = burst_all(&big, &big_keys[off..off + PER_ITER], &mut out);
        off = (off + PER_ITER) % BIG_KEYS;
        n
    });
    let mut off = 0;
    let big_single = ns_per_packet(|| {
        for (svc, p) in &big_keys[off..off + PER_ITER] {
            black_box(big.lookup(IFACE, *svc, black_box(p)));
        }
        off = (off + PER_ITER) % BIG_KEYS;
        PER_ITER
    });
    println!(
        "{:<34} {:>8} {:>8} {:>14.1} {:>14.1}   (AclTable::lookup / lookup_burst)",
        "1M rules, 100k services", "-", "-", big_single, big_burst
    );
    println!(
        "1M-rule table: {} rules, {:.1} MiB, {:.1} bytes/rule",
        big.len(),
        mem as f64 / (1 << 20) as f64,
        mem as f64 / big_rules as f64
    );
    println!();

    let mut g = c.benchmark_group("acl_one_service");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(PER_ITER as u64));
    for (n, (set, table, svc, packets)) in &cases {
        g.bench_with_input(
            BenchmarkId::new("ruleset_lookup", n),
            packets,
            |b, packets| {
                b.iter(|| {
                    for p in packets {
                        black_box(set.lookup(black_box(p)));
                    }
                })
            },
        );
        let keys: Vec<(u32, PacketFields)> = packets.iter().map(|p| (*svc, *p)).collect();
        g.bench_with_input(BenchmarkId::new("table_burst32", n), &keys, |b, keys| {
            b.iter(|| burst_all(table, keys, &mut out))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("acl_1M_rules_100k_services");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(PER_ITER as u64));
    let mut off = 0;
    g.bench_function("table_burst32", |b| {
        b.iter(|| {
            burst_all(&big, &big_keys[off..off + PER_ITER], &mut out);
            off = (off + PER_ITER) % BIG_KEYS;
        })
    });
    let mut off = 0;
    g.bench_function("table_lookup", |b| {
        b.iter(|| {
            for (svc, p) in &big_keys[off..off + PER_ITER] {
                black_box(big.lookup(IFACE, *svc, black_box(p)));
            }
            off = (off + PER_ITER) % BIG_KEYS;
        })
    });
    g.finish();
}

criterion_group!(acl, benches);
criterion_main!(acl);
