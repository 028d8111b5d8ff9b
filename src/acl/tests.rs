//! ACL semantics, errors, and a property test against a naive linear
//! first-match written only here.

use proptest::prelude::*;

use super::lanes::{MAX_ID as MAX_LANE_ID, MAX_RULES as MAX_LANE_RULES};
use super::tss::{port_blocks, GroupPolicy, MAX_ENTRIES_PER_RULE, MAX_PORT_BLOCKS};
use super::*;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const SYN: u8 = TcpFlagsMatch::SYN;
const ACK: u8 = TcpFlagsMatch::ACK;

fn a(x: [u8; 4]) -> u32 {
    u32::from_be_bytes(x)
}

/// An allow-any rule to start from.
fn rule(id: u32, priority: u32, action: Action) -> Rule {
    Rule {
        id,
        priority,
        src: SrcPrefix::ANY,
        protocol: Protocol::Any,
        dst_ports: PortRange::ANY,
        src_ports: PortRange::ANY,
        tcp_flags: None,
        action,
    }
}

fn src(mut r: Rule, addr: u32, len: u8) -> Rule {
    r.src = SrcPrefix { addr, len };
    r
}

fn proto(mut r: Rule, p: Protocol) -> Rule {
    r.protocol = p;
    r
}

fn dports(mut r: Rule, lo: u16, hi: u16) -> Rule {
    r.dst_ports = PortRange { lo, hi };
    r
}

fn sports(mut r: Rule, lo: u16, hi: u16) -> Rule {
    r.src_ports = PortRange { lo, hi };
    r
}

fn flags(mut r: Rule, mask: u8, value: u8) -> Rule {
    r.tcp_flags = Some(TcpFlagsMatch { mask, value });
    r
}

fn tcp(s: u32, sport: u16, dport: u16, fl: u8) -> PacketFields {
    PacketFields {
        src: s,
        protocol: TCP,
        src_port: sport,
        dst_port: dport,
        has_ports: true,
        tcp_flags: fl,
    }
}

fn udp(s: u32, sport: u16, dport: u16) -> PacketFields {
    PacketFields {
        src: s,
        protocol: UDP,
        src_port: sport,
        dst_port: dport,
        has_ports: true,
        tcp_flags: 0,
    }
}

fn icmp(s: u32) -> PacketFields {
    PacketFields {
        src: s,
        protocol: ICMP,
        ..PacketFields::default()
    }
}

fn set(rules: &[Rule], default: Action) -> RuleSet {
    RuleSet::compile(&[], rules, default).unwrap()
}

fn hit(id: u32, action: Action) -> Verdict {
    Verdict {
        action,
        rule: Some(id),
    }
}

fn default(action: Action) -> Verdict {
    Verdict { action, rule: None }
}

use Action::{Allow, Deny};

// ---------------------------------------------------------------- semantics

#[test]
fn first_match_by_priority_not_by_order() {
    let h = a([10, 0, 0, 1]);
    let rules = [
        src(rule(1, 30, Allow), h, 32),
        src(rule(2, 10, Deny), a([10, 0, 0, 0]), 24),
        rule(3, 20, Allow),
    ];
    let s = set(&rules, Allow);
    // Rule 2 (priority 10) wins over rule 1 and 3 for 10.0.0.1.
    assert_eq!(s.lookup(&tcp(h, 1, 80, 0)), hit(2, Deny));
    // Outside the /24: rule 3 (priority 20) before nothing else.
    assert_eq!(s.lookup(&tcp(a([10, 0, 1, 1]), 1, 80, 0)), hit(3, Allow));
    assert_eq!(s.len(), 3);
}

#[test]
fn more_specific_but_later_rule_loses() {
    let rules = [
        src(rule(1, 1, Allow), a([10, 0, 0, 0]), 8),
        src(rule(2, 2, Deny), a([10, 1, 2, 3]), 32),
    ];
    let s = set(&rules, Deny);
    assert_eq!(s.lookup(&udp(a([10, 1, 2, 3]), 5, 5)), hit(1, Allow));
    assert_eq!(s.lookup(&udp(a([11, 1, 2, 3]), 5, 5)), default(Deny));
}

#[test]
fn provider_rules_come_before_customer_rules_whatever_their_priority() {
    let provider = [src(rule(100, 1000, Deny), a([192, 0, 2, 0]), 24)];
    let customer = [rule(1, 1, Allow)];
    let s = RuleSet::compile(&provider, &customer, Allow).unwrap();
    assert_eq!(s.lookup(&tcp(a([192, 0, 2, 7]), 1, 2, 0)), hit(100, Deny));
    assert_eq!(s.lookup(&tcp(a([192, 0, 3, 7]), 1, 2, 0)), hit(1, Allow));

    // The same through the table, where provider and customer sets are
    // stored apart.
    let svc = a([203, 0, 113, 10]);
    let mut b = AclTable::builder();
    b.add_provider(3, provider.to_vec(), Allow);
    b.add_customer(3, svc, customer.to_vec(), Deny);
    let t = b.build().unwrap();
    assert_eq!(
        t.lookup(3, svc, &tcp(a([192, 0, 2, 7]), 1, 2, 0)),
        Some(hit(100, Deny))
    );
    assert_eq!(
        t.lookup(3, svc, &tcp(a([192, 0, 3, 7]), 1, 2, 0)),
        Some(hit(1, Allow))
    );
}

#[test]
fn priorities_may_repeat_across_provider_and_customer() {
    let provider = [proto(rule(1, 5, Deny), Protocol::Udp)];
    let customer = [proto(rule(2, 5, Allow), Protocol::Tcp)];
    let s = RuleSet::compile(&provider, &customer, Deny).unwrap();
    assert_eq!(s.lookup(&udp(1, 1, 1)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1, 1, 0)), hit(2, Allow));
    assert_eq!(s.lookup(&icmp(1)), default(Deny));
}

#[test]
fn prefix_lengths_0_to_32_at_their_edges() {
    let base = 0x8bad_f00du32;
    for len in 0..=32u8 {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let first = base & mask;
        let last = first | !mask;
        let s = set(&[src(rule(7, 1, Allow), first, len)], Deny);
        let check = |addr: u32, inside: bool| {
            let want = if inside { hit(7, Allow) } else { default(Deny) };
            assert_eq!(
                s.lookup(&tcp(addr, 1000, 80, 0)),
                want,
                "/{len} addr {addr:#x}"
            );
            assert_eq!(s.lookup(&icmp(addr)), want, "/{len} icmp addr {addr:#x}");
        };
        check(first, true);
        check(last, true);
        if first > 0 {
            check(first - 1, false);
        }
        if last < u32::MAX {
            check(last + 1, false);
        }
    }
}

#[test]
fn prefix_zero_and_thirty_two_at_the_ends_of_the_space() {
    let s = set(
        &[
            src(rule(1, 1, Deny), 0, 32),
            src(rule(2, 2, Deny), u32::MAX, 32),
            src(rule(3, 3, Allow), 0, 0),
        ],
        Deny,
    );
    assert_eq!(s.lookup(&icmp(0)), hit(1, Deny));
    assert_eq!(s.lookup(&icmp(1)), hit(3, Allow));
    assert_eq!(s.lookup(&icmp(u32::MAX)), hit(2, Deny));
    assert_eq!(s.lookup(&icmp(u32::MAX - 1)), hit(3, Allow));
}

#[test]
fn port_ranges_at_their_edges() {
    let ranges = [
        (0, 0),
        (0, 1023),
        (1, 65534),
        (22, 22),
        (1024, 65535),
        (8000, 8080),
        (65535, 65535),
        (1000, 2000),
        (4097, 4351),
    ];
    for (lo, hi) in ranges {
        for dst in [true, false] {
            let r = proto(rule(9, 1, Allow), Protocol::Tcp);
            let r = if dst {
                dports(r, lo, hi)
            } else {
                sports(r, lo, hi)
            };
            let s = set(&[r], Deny);
            let check = |port: u16, inside: bool| {
                let p = if dst {
                    tcp(1, 4242, port, 0)
                } else {
                    tcp(1, port, 4242, 0)
                };
                let want = if inside { hit(9, Allow) } else { default(Deny) };
                assert_eq!(s.lookup(&p), want, "{lo}-{hi} dst={dst} port {port}");
            };
            check(lo, true);
            check(hi, true);
            check(lo + (hi - lo) / 2, true);
            if lo > 0 {
                check(lo - 1, false);
            }
            if hi < u16::MAX {
                check(hi + 1, false);
            }
        }
    }
}

#[test]
fn both_port_ranges_together() {
    let r = sports(
        dports(proto(rule(4, 1, Deny), Protocol::Udp), 53, 53),
        1024,
        65535,
    );
    let s = set(&[r], Allow);
    assert_eq!(s.lookup(&udp(1, 1024, 53)), hit(4, Deny));
    assert_eq!(s.lookup(&udp(1, 65535, 53)), hit(4, Deny));
    assert_eq!(s.lookup(&udp(1, 1023, 53)), default(Allow));
    assert_eq!(s.lookup(&udp(1, 2000, 54)), default(Allow));
    assert_eq!(s.lookup(&tcp(1, 2000, 53, 0)), default(Allow));
}

#[test]
fn protocol_any_matches_every_protocol_and_exact_ones_only_theirs() {
    let s = set(
        &[proto(rule(1, 1, Deny), Protocol::Udp), rule(2, 2, Allow)],
        Deny,
    );
    assert_eq!(s.lookup(&udp(1, 1, 1)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1, 1, 0)), hit(2, Allow));
    assert_eq!(s.lookup(&icmp(1)), hit(2, Allow));
    let gre = PacketFields {
        src: 1,
        protocol: 47,
        ..PacketFields::default()
    };
    assert_eq!(s.lookup(&gre), hit(2, Allow));

    let s = set(&[proto(rule(1, 1, Allow), Protocol::Icmp)], Deny);
    assert_eq!(s.lookup(&icmp(5)), hit(1, Allow));
    assert_eq!(s.lookup(&tcp(5, 1, 1, 0)), default(Deny));
}

#[test]
fn packets_without_ports_match_only_rules_without_ports() {
    let s = set(
        &[
            dports(rule(1, 1, Deny), 0, 65534),
            sports(rule(2, 2, Deny), 1, 65535),
            proto(rule(3, 3, Allow), Protocol::Tcp),
        ],
        Deny,
    );
    // A non-first TCP fragment: no ports.
    let frag = PacketFields {
        has_ports: false,
        ..tcp(9, 0, 0, 0)
    };
    assert_eq!(s.lookup(&frag), hit(3, Allow));
    assert_eq!(s.lookup(&tcp(9, 0, 0, 0)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(9, 1, 65535, 0)), hit(2, Deny));
}

#[test]
fn tcp_flags_syn_only() {
    let opening = TcpFlagsMatch::OPENING;
    let s = set(
        &[flags(
            proto(rule(1, 1, Deny), Protocol::Tcp),
            opening.mask,
            opening.value,
        )],
        Allow,
    );
    assert_eq!(s.lookup(&tcp(1, 1000, 80, SYN)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1000, 80, SYN | 0x08)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1000, 80, SYN | ACK)), default(Allow));
    assert_eq!(s.lookup(&tcp(1, 1000, 80, ACK)), default(Allow));
    assert_eq!(s.lookup(&tcp(1, 1000, 80, 0)), default(Allow));
    // UDP (whatever the flags field holds) and ICMP never match.
    let mut u = udp(1, 1000, 80);
    u.tcp_flags = SYN;
    assert_eq!(s.lookup(&u), default(Allow));
    assert_eq!(s.lookup(&icmp(1)), default(Allow));
}

#[test]
fn tcp_flags_with_protocol_any_narrow_to_tcp() {
    let s = set(&[flags(rule(1, 1, Deny), ACK, 0), rule(2, 2, Allow)], Deny);
    assert_eq!(s.lookup(&tcp(1, 1, 1, SYN)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1, 1, ACK)), hit(2, Allow));
    assert_eq!(s.lookup(&udp(1, 1, 1)), hit(2, Allow));
    assert_eq!(s.lookup(&icmp(1)), hit(2, Allow));
    // A TCP fragment without its header has no flags to test.
    let frag = PacketFields {
        has_ports: false,
        ..tcp(1, 0, 0, 0)
    };
    assert_eq!(s.lookup(&frag), hit(2, Allow));
}

#[test]
fn default_actions() {
    let iface = 2;
    let svc_a = a([198, 51, 100, 1]);
    let svc_b = a([198, 51, 100, 2]);
    let svc_none = a([198, 51, 100, 3]);
    let mut b = AclTable::builder();
    b.add_provider(iface, vec![proto(rule(1, 1, Deny), Protocol::Icmp)], Deny)
        .add_customer(
            iface,
            svc_a,
            vec![proto(rule(10, 1, Deny), Protocol::Udp)],
            Allow,
        )
        .add_customer(iface, svc_b, vec![], Deny)
        // An interface with customer rules only: interface default Allow.
        .add_customer(
            5,
            svc_a,
            vec![proto(rule(20, 1, Deny), Protocol::Tcp)],
            Deny,
        );
    let t = b.build().unwrap();
    let p = tcp(1, 1, 80, 0);

    assert_eq!(
        t.lookup(iface, svc_a, &p),
        Some(default(Allow)),
        "customer default"
    );
    assert_eq!(t.lookup(iface, svc_a, &udp(1, 1, 1)), Some(hit(10, Deny)));
    assert_eq!(
        t.lookup(iface, svc_b, &p),
        Some(default(Deny)),
        "empty customer set"
    );
    assert_eq!(
        t.lookup(iface, svc_none, &p),
        Some(default(Deny)),
        "interface default"
    );
    assert_eq!(
        t.lookup(iface, svc_none, &icmp(1)),
        Some(hit(1, Deny)),
        "provider rule"
    );
    assert_eq!(
        t.lookup(iface, svc_a, &icmp(1)),
        Some(hit(1, Deny)),
        "provider first"
    );

    assert_eq!(t.lookup(5, svc_a, &p), Some(hit(20, Deny)));
    assert_eq!(t.lookup(5, svc_a, &udp(1, 1, 1)), Some(default(Deny)));
    assert_eq!(t.lookup(5, svc_b, &p), Some(default(Allow)));

    for no_acl in [0u16, 1, 3, 4, 6, 1000, u16::MAX] {
        assert!(!t.has_rules(no_acl));
        assert_eq!(t.lookup(no_acl, svc_a, &p), None, "iface {no_acl}");
    }
    assert!(t.has_rules(iface) && t.has_rules(5));
    assert!(!AclTable::empty().has_rules(0));
    assert_eq!(t.len(), 3);
    assert_eq!(t.customer_sets(), 3);
}

#[test]
fn provider_only_interface_with_allow_default() {
    let mut b = AclTable::builder();
    b.add_provider(0, vec![], Allow);
    let t = b.build().unwrap();
    assert!(t.has_rules(0));
    assert_eq!(t.lookup(0, 1, &icmp(1)), Some(default(Allow)));
}

#[test]
fn burst_lookup_equals_single_lookups() {
    let mut b = AclTable::builder();
    b.add_provider(1, vec![src(rule(1, 1, Deny), a([10, 9, 0, 0]), 16)], Allow);
    for s in 0..100u32 {
        b.add_customer(
            1,
            0x0a00_0000 + s,
            vec![
                src(rule(1000 + s, 1, Deny), 0x0b00_0000 + s, 32),
                dports(proto(rule(2000 + s, 2, Allow), Protocol::Tcp), 80, 80),
            ],
            Deny,
        );
    }
    let t = b.build().unwrap();
    let keys: Vec<(u32, PacketFields)> = (0..77u32)
        .map(|i| {
            let svc = 0x0a00_0000 + (i * 7) % 130;
            let src = match i % 3 {
                0 => a([10, 9, 1, 1]),
                1 => 0x0b00_0000 + (i * 7) % 130,
                _ => 5,
            };
            (svc, tcp(src, 1, if i % 2 == 0 { 80 } else { 81 }, 0))
        })
        .collect();
    for iface in [0u16, 1, 2] {
        let mut out = vec![Some(default(Allow)); keys.len() + 3];
        t.lookup_burst(iface, &keys, &mut out);
        for (i, (svc, p)) in keys.iter().enumerate() {
            assert_eq!(out[i], t.lookup(iface, *svc, p), "iface {iface} packet {i}");
        }
        assert_eq!(
            out[keys.len()],
            Some(default(Allow)),
            "past the burst: untouched"
        );
    }
}

#[test]
fn port_ranges_expand_to_few_exact_blocks() {
    assert_eq!(port_blocks(PortRange::ANY), vec![(0, 0)]);
    assert_eq!(port_blocks(PortRange::exact(80)), vec![(80, 16)]);
    assert_eq!(port_blocks(PortRange { lo: 0, hi: 1023 }), vec![(0, 6)]);
    assert_eq!(
        port_blocks(PortRange {
            lo: 1024,
            hi: 65535
        })
        .len(),
        6
    );
    assert_eq!(
        port_blocks(PortRange { lo: 1, hi: 65534 }).len(),
        MAX_PORT_BLOCKS
    );
    let r = sports(
        dports(proto(rule(1, 1, Deny), Protocol::Tcp), 1, 65534),
        1,
        65534,
    );
    let s = RuleSet::compile_with(&[], &[r], Allow, GroupPolicy::Nested).unwrap();
    let st = s.stats();
    assert_eq!(st.nested_entries, MAX_ENTRIES_PER_RULE);
    // Block lengths 2..=16 on each port: 15 × 15 tuples.
    assert_eq!(st.nested_tuples, 15 * 15);
    assert_eq!(s.lookup(&tcp(1, 1, 65534, 0)), hit(1, Deny));
    assert_eq!(s.lookup(&tcp(1, 1, 65535, 0)), default(Allow));
    assert_eq!(s.lookup(&tcp(1, 0, 65534, 0)), default(Allow));
    // Scanned linearly, the same rule is one record.
    let s = RuleSet::compile_with(&[], &[r], Allow, GroupPolicy::Linear).unwrap();
    assert_eq!(s.stats().nested_groups, 0);
    assert_eq!(s.stats().max_probes, 1);
}

proptest! {
    #[test]
    fn port_blocks_cover_exactly_the_range(lo in any::<u16>(), hi in any::<u16>()) {
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let blocks = port_blocks(PortRange { lo, hi });
        prop_assert!(blocks.len() <= MAX_PORT_BLOCKS);
        let mut next = lo as u32;
        for (v, len) in blocks {
            let size = 1u32 << (16 - len);
            prop_assert_eq!(v as u32, next);
            prop_assert_eq!(v as u32 % size, 0, "aligned");
            next += size;
        }
        prop_assert_eq!(next, hi as u32 + 1);
    }
}

#[test]
fn probes_depend_on_prefix_lengths_not_on_rule_count() {
    // 10,000 host and /24 rules with exact ports: two prefix lengths, so
    // two probes and a short group scan, whatever rule matches.
    let rules: Vec<Rule> = (0..10_000u32)
        .map(|i| {
            let r = if i % 2 == 0 {
                src(rule(i, i, Allow), 0x0a00_0000 + i / 4, 32)
            } else {
                src(rule(i, i, Deny), (0x14_0000 + i / 4) << 8, 24)
            };
            let p = if i % 3 == 0 {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            dports(proto(r, p), (i % 1000) as u16, (i % 1000) as u16)
        })
        .collect();
    let s = set(&rules, Deny);
    assert_eq!(s.len(), 10_000);
    let st = s.stats();
    assert_eq!((st.lengths, st.groups, st.max_probes), (2, 5_000, 2));
    let last = &rules[9_999];
    assert_eq!(last.protocol, Protocol::Udp);
    let p = udp(last.src.addr | 0x42, 1, last.dst_ports.lo);
    assert_eq!(s.lookup(&p), hit(9_999, Deny));
    let p = tcp(last.src.addr | 0x42, 1, last.dst_ports.lo, 0);
    assert_eq!(s.lookup(&p), default(Deny));
    assert!(s.memory_bytes() < 10_000 * 64, "{} bytes", s.memory_bytes());
}

#[test]
fn a_large_group_of_one_prefix_is_nested() {
    // 2,000 provider-style rules, all from 0.0.0.0/0: one group, matched
    // through its own tuple space (protocol × exact port / range blocks).
    let rules: Vec<Rule> = (0..2_000u32)
        .map(|i| {
            let p = if i % 2 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            };
            let r = proto(rule(i, i, Deny), p);
            if i % 10 == 9 {
                dports(r, 10_000 + i as u16 * 4, 10_003 + i as u16 * 4)
            } else {
                dports(r, i as u16, i as u16)
            }
        })
        .collect();
    let s = set(&rules, Allow);
    let st = s.stats();
    assert_eq!((st.lengths, st.groups, st.nested_groups), (1, 1, 1));
    assert!(st.max_probes <= 5, "{st:?}");
    assert_eq!(s.lookup(&tcp(1, 9, 1998, 0)), hit(1998, Deny));
    assert_eq!(s.lookup(&udp(1, 9, 1999 * 4 + 10_002)), hit(1999, Deny));
    assert_eq!(s.lookup(&udp(1, 9, 1998)), default(Allow));
}

#[test]
fn covered_rules_are_dropped() {
    // By the tuple space (a short list like this one is matched by lanes,
    // which keep every rule).
    let s = RuleSet::compile_with(
        &[],
        &[
            dports(proto(rule(1, 1, Deny), Protocol::Tcp), 1, 1000),
            dports(proto(rule(2, 2, Allow), Protocol::Tcp), 80, 80),
            flags(
                dports(proto(rule(3, 3, Allow), Protocol::Tcp), 10, 20),
                SYN,
                SYN,
            ),
            dports(proto(rule(4, 4, Allow), Protocol::Udp), 80, 80),
        ],
        Allow,
        GroupPolicy::Linear,
    )
    .unwrap();
    assert_eq!(s.stats().kept, 2);
    assert_eq!(s.lookup(&tcp(1, 1, 80, SYN)), hit(1, Deny));
    assert_eq!(s.lookup(&udp(1, 1, 80)), hit(4, Allow));
}

#[test]
fn short_lists_are_matched_in_blocks_of_eight() {
    // Rule k denies host 10.0.0.k; the last one allows everything.
    let list = |n: u32, id0: u32| -> Vec<Rule> {
        let mut v: Vec<Rule> = (0..n - 1)
            .map(|k| src(rule(id0 + k, 10 + k, Deny), 0x0a00_0000 + k, 32))
            .collect();
        v.push(rule(id0 + n - 1, 1000, Allow));
        v
    };
    for (n, blocks) in [(1, 1), (8, 1), (9, 2), (20, 3), (32, 4), (33, 0)] {
        let s = set(&list(n, 0), Deny);
        assert_eq!(s.stats().lane_blocks, blocks, "{n} rules");
        assert_eq!(s.len(), n as usize);
        for k in 0..n - 1 {
            assert_eq!(s.lookup(&tcp(0x0a00_0000 + k, 1, 2, 0)), hit(k, Deny));
        }
        assert_eq!(s.lookup(&tcp(0x0b00_0000, 1, 2, 0)), hit(n - 1, Allow));
    }
    assert_eq!(MAX_LANE_RULES, 32);
    // An id above what a lane's tag holds: the tuple space, same answers.
    let s = set(&list(9, MAX_LANE_ID - 4), Deny);
    assert_eq!(s.stats().lane_blocks, 0);
    assert_eq!(
        s.lookup(&tcp(0x0a00_0005, 1, 2, 0)),
        hit(MAX_LANE_ID + 1, Deny)
    );
    // An empty list: no block, the default decides.
    let s = set(&[], Deny);
    assert_eq!(s.stats().lane_blocks, 0);
    assert_eq!(s.lookup(&tcp(1, 1, 2, 0)), default(Deny));
}

#[test]
fn a_default_decision_carries_the_tag_of_its_default() {
    let mut b = AclTable::builder();
    b.add_provider(2, vec![src(rule(1, 1, Deny), a([10, 9, 0, 0]), 16)], Allow);
    // A short set and one long enough for the tuple space.
    b.add_customer(2, 100, vec![dports(rule(2, 1, Allow), 80, 80)], Deny);
    let long: Vec<Rule> = (0..40)
        .map(|k| src(rule(100 + k, k, Allow), 0x0b00_0000 + k, 32))
        .collect();
    b.add_customer(2, 200, long, Deny);
    let mut t = b.build().unwrap();
    t.set_default_tags(|iface, ip| match (iface, ip) {
        (2, None) => Some(7),
        (2, Some(100)) => Some(8),
        (2, Some(200)) => Some(9),
        _ => None,
    });
    let decide = |svc: u32, p: PacketFields| t.decide(2, t.locate(2, svc), &p).unwrap();
    let d = |action, rule, default_tag| Decision {
        action,
        rule,
        default_tag,
    };
    assert_eq!(decide(100, tcp(5, 1, 80, 0)), d(Allow, Some(2), None));
    assert_eq!(decide(100, tcp(5, 1, 81, 0)), d(Deny, None, Some(8)));
    assert_eq!(
        decide(200, tcp(0x0b00_0003, 1, 81, 0)),
        d(Allow, Some(103), None)
    );
    assert_eq!(decide(200, tcp(5, 1, 81, 0)), d(Deny, None, Some(9)));
    assert_eq!(decide(300, tcp(5, 1, 81, 0)), d(Allow, None, Some(7)));
    assert_eq!(
        decide(100, tcp(a([10, 9, 3, 3]), 1, 80, 0)),
        d(Deny, Some(1), None)
    );
    assert_eq!(t.decide(3, t.locate(3, 100), &tcp(5, 1, 80, 0)), None);
    // The same tags asked for directly (the service's set, else the interface's).
    assert_eq!(
        [100, 200, 300].map(|svc| t.default_tag(2, svc)),
        [Some(8), Some(9), Some(7)]
    );
    assert_eq!(t.default_tag(3, 100), None);
    assert_eq!(t.len(), 42);
}

// ------------------------------------------------------------------- errors

fn compile_err(provider: &[Rule], customer: &[Rule]) -> AclError {
    RuleSet::compile(provider, customer, Allow).unwrap_err()
}

#[test]
fn duplicate_priority_names_both_rules() {
    let e = compile_err(
        &[],
        &[rule(1, 5, Allow), rule(2, 6, Allow), rule(3, 5, Deny)],
    );
    assert_eq!(e.rule(), Some(3));
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::DuplicatePriority {
                priority: 5,
                other_rule: 1
            },
            list: RuleList::Customer { .. },
            ..
        }
    ));
    let msg = e.to_string();
    assert!(msg.contains("rule 3") && msg.contains("rule 1"), "{msg}");

    let e = compile_err(&[rule(8, 1, Allow), rule(9, 1, Allow)], &[]);
    assert_eq!(e.rule(), Some(9));
    assert!(matches!(
        e,
        AclError::Rule {
            list: RuleList::Provider { .. },
            ..
        }
    ));
}

#[test]
fn bad_prefix_length_and_host_bits() {
    let e = compile_err(&[], &[src(rule(11, 1, Allow), 0, 33)]);
    assert_eq!(e.rule(), Some(11));
    assert!(e.to_string().contains("rule 11"), "{e}");
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::PrefixTooLong { len: 33 },
            ..
        }
    ));

    let e = compile_err(&[], &[src(rule(12, 1, Allow), a([10, 0, 0, 1]), 24)]);
    assert_eq!(e.rule(), Some(12));
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::HostBitsSet { len: 24, .. },
            ..
        }
    ));
    assert!(e.to_string().contains("10.0.0.0/24"), "{e}");

    let e = compile_err(&[], &[src(rule(13, 1, Allow), 1, 0)]);
    assert_eq!(e.rule(), Some(13));
    // /32 takes any address; /31 with the last bit set does not.
    assert!(RuleSet::compile(&[], &[src(rule(14, 1, Allow), u32::MAX, 32)], Allow).is_ok());
    assert_eq!(
        compile_err(&[], &[src(rule(15, 1, Allow), 3, 31)]).rule(),
        Some(15)
    );
}

#[test]
fn port_range_upside_down() {
    let e = compile_err(&[], &[dports(rule(21, 1, Allow), 80, 79)]);
    assert_eq!(e.rule(), Some(21));
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::PortRangeReversed {
                field: PortField::Dst,
                lo: 80,
                hi: 79
            },
            ..
        }
    ));
    let e = compile_err(&[], &[sports(rule(22, 1, Allow), 2, 1)]);
    assert_eq!(e.rule(), Some(22));
    assert!(
        e.to_string().contains("rule 22") && e.to_string().contains("source"),
        "{e}"
    );
}

#[test]
fn tcp_flags_on_other_protocols() {
    let e = compile_err(
        &[],
        &[flags(proto(rule(31, 1, Allow), Protocol::Udp), SYN, SYN)],
    );
    assert_eq!(e.rule(), Some(31));
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::TcpFlagsWithoutTcp {
                protocol: Protocol::Udp
            },
            ..
        }
    ));
    assert!(e.to_string().contains("rule 31"), "{e}");
    let e = compile_err(
        &[],
        &[flags(proto(rule(32, 1, Allow), Protocol::Icmp), SYN, SYN)],
    );
    assert_eq!(e.rule(), Some(32));
    let e = compile_err(
        &[],
        &[flags(proto(rule(33, 1, Allow), Protocol::Tcp), SYN, ACK)],
    );
    assert!(matches!(
        e,
        AclError::Rule {
            rule: 33,
            problem: RuleProblem::TcpFlagsValueOutsideMask { .. },
            ..
        }
    ));
}

#[test]
fn ports_on_icmp() {
    let e = compile_err(
        &[],
        &[dports(proto(rule(41, 1, Allow), Protocol::Icmp), 8, 8)],
    );
    assert_eq!(e.rule(), Some(41));
    assert!(matches!(
        e,
        AclError::Rule {
            problem: RuleProblem::PortsWithoutPorts { .. },
            ..
        }
    ));
}

#[test]
fn table_errors_name_interface_service_and_rule() {
    let mut b = AclTable::builder();
    b.add_provider(1, vec![rule(1, 1, Allow)], Allow)
        .add_customer(
            1,
            a([192, 0, 2, 1]),
            vec![rule(5, 1, Allow), rule(6, 1, Allow)],
            Allow,
        );
    let e = b.build().unwrap_err();
    assert_eq!(
        e,
        AclError::Rule {
            list: RuleList::Customer {
                iface: Some(1),
                service_ip: Some(a([192, 0, 2, 1]))
            },
            rule: 6,
            problem: RuleProblem::DuplicatePriority {
                priority: 1,
                other_rule: 5
            }
        }
    );
    assert!(e.to_string().contains("192.0.2.1"), "{e}");

    let mut b = AclTable::builder();
    b.add_provider(4, vec![src(rule(7, 1, Allow), 1, 8)], Allow);
    let e = b.build().unwrap_err();
    assert!(matches!(
        e,
        AclError::Rule {
            list: RuleList::Provider { iface: Some(4) },
            rule: 7,
            ..
        }
    ));

    let mut b = AclTable::builder();
    b.add_provider(1, vec![], Allow)
        .add_provider(1, vec![], Deny);
    assert_eq!(
        b.build().unwrap_err(),
        AclError::DuplicateProviderSet { iface: 1 }
    );

    let mut b = AclTable::builder();
    b.add_customer(1, 9, vec![], Allow)
        .add_customer(1, 9, vec![], Deny);
    assert_eq!(
        b.build().unwrap_err(),
        AclError::DuplicateCustomerSet {
            iface: 1,
            service_ip: 9
        }
    );
}

// ------------------------------------------------- property: naive reference

/// Does `r` match `p`? The definition, written independently of the engine.
fn naive_matches(r: &Rule, p: &PacketFields) -> bool {
    let mask = if r.src.len == 0 {
        0
    } else {
        (!0u64 << (32 - r.src.len as u32)) as u32
    };
    if p.src & mask != r.src.addr {
        return false;
    }
    let want_proto = match r.protocol {
        Protocol::Any => None,
        Protocol::Tcp => Some(6),
        Protocol::Udp => Some(17),
        Protocol::Icmp => Some(1),
    };
    if want_proto.is_some_and(|n| n != p.protocol) {
        return false;
    }
    let any = |pr: PortRange| pr.lo == 0 && pr.hi == 65535;
    if !p.has_ports {
        return any(r.dst_ports) && any(r.src_ports) && r.tcp_flags.is_none();
    }
    if !(r.dst_ports.lo <= p.dst_port && p.dst_port <= r.dst_ports.hi) {
        return false;
    }
    if !(r.src_ports.lo <= p.src_port && p.src_port <= r.src_ports.hi) {
        return false;
    }
    match r.tcp_flags {
        Some(f) => p.protocol == 6 && p.tcp_flags & f.mask == f.value,
        None => true,
    }
}

/// Linear first match: provider rules by priority, then customer rules.
fn naive_lookup(
    provider: &[Rule],
    customer: &[Rule],
    default: Action,
    p: &PacketFields,
) -> Verdict {
    for list in [provider, customer] {
        let mut sorted: Vec<&Rule> = list.iter().collect();
        sorted.sort_by_key(|r| r.priority);
        if let Some(r) = sorted.into_iter().find(|r| naive_matches(r, p)) {
            return Verdict {
                action: r.action,
                rule: Some(r.id),
            };
        }
    }
    Verdict {
        action: default,
        rule: None,
    }
}

const ADDR_POOL: [u32; 6] = [
    0x0a00_0000,
    0x0a00_0001,
    0x0a00_01ff,
    0xc0a8_0101,
    0,
    0xffff_ffff,
];
const PORT_POOL: [u16; 12] = [0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 8080, 65535];

fn addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => prop::sample::select(&ADDR_POOL[..]),
        // Near the pool: the low bits moved.
        4 => (prop::sample::select(&ADDR_POOL[..]), 0u32..1024).prop_map(|(a, d)| a ^ d),
        1 => any::<u32>(),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => prop::sample::select(&PORT_POOL[..]),
        2 => (prop::sample::select(&PORT_POOL[..]), 0u16..4).prop_map(|(p, d)| p.wrapping_add(d)),
        1 => any::<u16>(),
    ]
}

fn range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        3 => Just(PortRange::ANY),
        2 => port().prop_map(PortRange::exact),
        2 => (port(), port()).prop_map(|(x, y)| PortRange { lo: x.min(y), hi: x.max(y) }),
    ]
}

fn flag_bits() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(&[0u8, SYN, ACK, SYN | ACK, 0x01, 0x04, 0x11][..]),
        any::<u8>(),
    ]
}

/// Mostly a few common lengths, so rules share tuples; any length too.
fn prefix_len() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(&[0u8, 8, 16, 22, 24, 32][..]),
        2 => 0u8..=32,
    ]
}

/// `dense`: the source is one of three prefixes, so groups are large.
fn arb_rule(dense: bool) -> impl Strategy<Value = Rule> {
    let source = if dense {
        prop::sample::select(&[(0u32, 0u8), (0x0a00_0000, 24), (0x0a00_0000, 8)][..]).boxed()
    } else {
        (addr(), prefix_len()).boxed()
    };
    (
        // Mostly ids lanes can hold, sometimes one that sends the list to
        // the tuple space.
        (
            prop_oneof![9 => 0u32..=MAX_LANE_ID, 1 => any::<u32>()],
            0u32..256,
        ),
        source,
        0..4u8,
        (range(), range()),
        prop::option::weighted(0.25, (flag_bits(), flag_bits())),
        any::<bool>(),
    )
        .prop_map(
            |((id, priority), (addr, len), proto, (dst, src_r), fl, allow)| {
                let mask = if len == 0 {
                    0
                } else {
                    (!0u64 << (32 - len as u32)) as u32
                };
                let protocol =
                    [Protocol::Any, Protocol::Tcp, Protocol::Udp, Protocol::Icmp][proto as usize];
                let icmp = protocol == Protocol::Icmp;
                Rule {
                    id,
                    priority,
                    src: SrcPrefix {
                        addr: addr & mask,
                        len,
                    },
                    protocol,
                    dst_ports: if icmp { PortRange::ANY } else { dst },
                    src_ports: if icmp { PortRange::ANY } else { src_r },
                    tcp_flags: match (fl, protocol) {
                        (Some((m, v)), Protocol::Any | Protocol::Tcp) => Some(TcpFlagsMatch {
                            mask: m,
                            value: v & m,
                        }),
                        _ => None,
                    },
                    action: if allow { Allow } else { Deny },
                }
            },
        )
}

/// A rule list with unique priorities (later duplicates dropped).
fn arb_rules(max: usize, dense: bool) -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(arb_rule(dense), 0..max).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|r| seen.insert(r.priority));
        v
    })
}

fn arb_packet() -> impl Strategy<Value = PacketFields> {
    (
        addr(),
        prop::sample::select(&[TCP, TCP, UDP, UDP, ICMP, 47, 132][..]),
        (port(), port()),
        flag_bits(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(src, protocol, (sp, dp), fl, ports)| {
            let has_ports = ports && matches!(protocol, TCP | UDP | 132);
            PacketFields {
                src,
                protocol,
                src_port: if has_ports { sp } else { 0 },
                dst_port: if has_ports { dp } else { 0 },
                has_ports,
                tcp_flags: if has_ports && protocol == TCP { fl } else { 0 },
            }
        })
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Allow), Just(Deny)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rule_set_agrees_with_naive_first_match(
        provider in arb_rules(12, false),
        customer in arb_rules(48, false),
        default in arb_action(),
        packets in prop::collection::vec(arb_packet(), 1..64),
    ) {
        for policy in [GroupPolicy::Auto, GroupPolicy::Linear, GroupPolicy::Nested] {
            let s = RuleSet::compile_with(&provider, &customer, default, policy).unwrap();
            for p in &packets {
                let want = naive_lookup(&provider, &customer, default, p);
                prop_assert_eq!(s.lookup(p), want, "{:?} {:?}", policy, p);
            }
        }
    }

    /// Few distinct prefixes: large groups, which Auto nests.
    #[test]
    fn dense_rule_set_agrees_with_naive_first_match(
        provider in arb_rules(40, true),
        customer in arb_rules(120, true),
        default in arb_action(),
        packets in prop::collection::vec(arb_packet(), 1..64),
    ) {
        for policy in [GroupPolicy::Auto, GroupPolicy::Nested] {
            let s = RuleSet::compile_with(&provider, &customer, default, policy).unwrap();
            for p in &packets {
                let want = naive_lookup(&provider, &customer, default, p);
                prop_assert_eq!(s.lookup(p), want, "{:?} {:?}", policy, p);
            }
        }
    }

    #[test]
    fn table_agrees_with_naive_first_match(
        provider in arb_rules(8, false),
        iface_default in arb_action(),
        customers in prop::collection::vec((arb_rules(24, false), arb_action()), 1..5),
        packets in prop::collection::vec((0usize..6, arb_packet()), 1..48),
    ) {
        let iface = 7;
        let svc = |i: usize| 0xcb00_7100 + i as u32;
        let mut b = AclTable::builder();
        b.add_provider(iface, provider.clone(), iface_default);
        for (i, (rules, d)) in customers.iter().enumerate() {
            // Half of them compiled ahead (the control plane's cache), packed
            // after the provider rules at build.
            if i % 2 == 0 {
                b.add_customer(iface, svc(i), rules.clone(), *d);
            } else {
                let set = AclTableBuilder::compile_customer(iface, svc(i), rules, *d).unwrap();
                b.add_compiled_customer(iface, svc(i), std::sync::Arc::new(set));
            }
        }
        let t = b.build().unwrap();
        let keys: Vec<(u32, PacketFields)> = packets.iter().map(|&(i, p)| (svc(i), p)).collect();
        let mut out = vec![None; keys.len()];
        t.lookup_burst(iface, &keys, &mut out);
        for (j, &(i, p)) in packets.iter().enumerate() {
            let want = match customers.get(i) {
                Some((rules, d)) => naive_lookup(&provider, rules, *d, &p),
                None => naive_lookup(&provider, &[], iface_default, &p),
            };
            prop_assert_eq!(t.lookup(iface, svc(i), &p), Some(want), "service {} {:?}", i, p);
            prop_assert_eq!(out[j], Some(want), "burst, service {} {:?}", i, p);
            prop_assert_eq!(t.lookup(iface + 1, svc(i), &p), None);
        }
    }
}
