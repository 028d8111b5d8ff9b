#!/usr/bin/env python3
"""Benchmark traffic for seqd: a pcap and the seqd config it is meant for.

    gen-traffic.py --services N --packets P --out DIR [--frame-size 64|imix]
                   [--acl-rules K]

writes DIR/traffic.pcap, DIR/seqd.toml and DIR/traffic.json (what the pcap
holds, for the benchmark's checks), then prints a one-line summary. Python 3
standard library only; the same arguments always give the same bytes (fixed
seed, fixed timestamps).

The config has ONE interface, "wire" (net_pcap0 replaying traffic.pcap
forever with infinite_rx=1; with no tx_pcap the pcap PMD's tx frees what it
is given, a sink like net_null's), which is both the client side and where
every device is (seqd knows a device by the interface a frame arrives on,
so its output leaves on that interface too):

  - 64 devices, alias mode, static MACs: srv00..srv47 (servers) and
    fw00..fw15 (firewalls);
  - N service ports over ceil(N/2) service IPs taken in order from
    100.64.0.1 (100.64.0.0/10): each IP has 443/tcp and 53/udp (the last
    IP only 443/tcp when N is odd); about 3/4 of the IPs have
    hops = [a server], every 4th hops = [a firewall, a server] (both ports);
  - K ACL rules per service IP (default 10; 0: no ACL) behind one provider
    rule, default allow: the first denies the service's own /28 of
    10.128.0.0/9, the others are /32, /24, /16 and /15 rules on TCP and UDP
    with exact ports, a port range and a SYN-only test (see acl_rules()).

Frames (all addressed to the wire interface's MAC; exact proportions, then
shuffled; each picks a service port at random):
  - 90% steered: one step of the service's chain, in either direction with
    equal weight. One-hop: client -> server (from the gateway's MAC) and
    server -> client. Two-hop: client -> firewall, firewall -> server,
    server -> firewall, firewall -> client. Clients are random addresses in
    198.18.0.0/15 with random ports; TCP for 443, UDP for 53;
  - 5% to no service: client -> an IP in 100.112.0.0/12 (no_service);
  - 5% denied: client in the service's denied /28 -> the service
    (acl_deny; with --acl-rules 0 these are ordinary client -> service).

Frame sizes: "64" = 64-byte frames on the wire (60 bytes in the pcap, no FCS;
zero padded); "imix" = 64/594/1518-byte frames 7:4:1 (60/590/1514 bytes in
the pcap, payload pseudo-random). IPv4 header, TCP and UDP checksums are
valid.
"""

import argparse
import ipaddress
import json
import os
import random
import struct
import sys

SEED = 20240229

IFACE_MAC = "02:00:00:00:00:01"
IFACE_IPV4 = "10.0.0.1/16"
GATEWAY = "10.0.255.254"
GATEWAY_MAC = "02:00:00:00:fe:fe"
FILE_PREFIX = "seqd-bench"

N_SERVERS = 48
N_FIREWALLS = 16  # 64 devices in all

SERVICE_BASE = int(ipaddress.IPv4Address("100.64.0.1"))
SERVICE_LIMIT = int(ipaddress.IPv4Address("100.111.255.255"))  # below UNKNOWN_NET
UNKNOWN_NET = ipaddress.IPv4Network("100.112.0.0/12")  # inside 100.64/10, no service
CLIENT_NET = ipaddress.IPv4Network("198.18.0.0/15")
DENIED_BASE = int(ipaddress.IPv4Address("10.128.0.0"))  # a /28 per service IP
PORTS = [(443, "tcp"), (53, "udp")]
MAX_ACL_RULES = 10

FCS = 4


def mac_bytes(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip_str(n):
    return str(ipaddress.IPv4Address(n))


def checksum(data):
    """The Internet checksum: one's-complement of the one's-complement sum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(dst_mac, src_mac, proto, src_ip, sport, dst_ip, dport, seq, ack, frame_len, rng):
    """An Ethernet/IPv4/TCP-or-UDP frame of frame_len bytes (zero padded)."""
    src = struct.pack("!I", src_ip)
    dst = struct.pack("!I", dst_ip)
    l4_hdr = 20 if proto == "tcp" else 8
    pay_len = max(0, frame_len - 14 - 20 - l4_hdr)
    payload = rng.randbytes(pay_len) if frame_len > 60 else b""
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x18, 65535, 0, 0) + payload
        csum_at, pnum = 16, 6
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        csum_at, pnum = 6, 17
    pseudo = src + dst + struct.pack("!BBH", 0, pnum, len(l4))
    c = checksum(pseudo + l4)
    if proto == "udp" and c == 0:
        c = 0xFFFF
    l4 = l4[:csum_at] + struct.pack("!H", c) + l4[csum_at + 2 :]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), seq & 0xFFFF, 0x4000, 64, pnum, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    fr = dst_mac + src_mac + b"\x08\x00" + ip + l4
    assert len(fr) <= frame_len
    return fr.ljust(frame_len, b"\0")


def write_pcap(path, frames):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        # Classic microsecond pcap, Ethernet link type.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t0 = 1_700_000_000
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", t0 + i // 1_000_000, i % 1_000_000, len(fr), len(fr)))
            f.write(fr)
    os.replace(tmp, path)


def denied_net(s):
    """The /28 the ACL of service IP number s denies."""
    return DENIED_BASE + 16 * s


def acl_rules(s, k):
    """K rules of service IP number s, as TOML lines: varied shapes, so the
    ACL's tuple-space search sees /28, /32, /24, /16 and /15 prefixes, TCP and
    UDP, exact ports, a range and a flag test. Clients (198.18.0.0/15) are
    allowed by rules 4-6; the service's denied /28 matches rule 1."""
    host = 0x0AC8_0000 + (s * 7) % 65536  # 10.200.x.y
    rules = [
        (f"{ip_str(denied_net(s))}/28", None, None, None, None, "deny"),
        (f"{ip_str(host)}/32", "tcp", None, None, None, "deny"),
        (f"{ip_str(host + 1)}/32", "udp", "53", None, None, "deny"),
        ("198.18.0.0/16", "tcp", "443", None, None, "allow"),
        ("198.19.0.0/16", "tcp", "443", None, None, "allow"),
        ("198.18.0.0/15", "udp", "53", None, None, "allow"),
        ("203.0.113.0/24", None, None, None, None, "deny"),
        ("192.0.2.0/24", "tcp", "8000-8999", None, None, "allow"),
        ("198.51.100.0/24", "tcp", None, None, '{ set = ["syn"], clear = ["ack"] }', "deny"),
        ("0.0.0.0/0", "tcp", None, "1024-65535", None, "allow"),
    ]
    out = []
    for i, (src, proto, dports, sports, flags, action) in enumerate(rules[:k]):
        out.append("[[acl.rule]]")
        out.append(f"priority = {10 * (i + 1)}")
        out.append(f'src = "{src}"')
        if proto:
            out.append(f'protocol = "{proto}"')
        if dports:
            out.append(f'dst_ports = "{dports}"')
        if sports:
            out.append(f'src_ports = "{sports}"')
        if flags:
            out.append(f"tcp_flags = {flags}")
        out.append(f'action = "{action}"')
    return out


def config_text(pcap_path, ips, n_ports, devices, mbufs, memory_mb, n_packets, frame_size, k_acl):
    out = []
    w = out.append
    w("# Generated by scripts/gen-traffic.py: do not edit; rerun it instead.")
    w(f"# {n_ports} service ports on {len(ips)} IPs, {len(devices)} devices, {k_acl} ACL rules per")
    w(f"# service IP; {n_packets} frames ({frame_size}) in {pcap_path},")
    w("# replayed forever on one interface. Run with --duration.")
    w("")
    w("[eal]")
    w('cores = "0-1"')
    w("hugepages = false")
    w("# infinite_rx loads the whole pcap into mbufs at queue setup: the pool")
    w("# holds the file plus what is in flight; memory_mb >= 2 x mbufs x 2.4 KB.")
    w(f"memory_mb = {memory_mb}")
    w(f"mbufs = {mbufs}")
    w(f'file_prefix = "{FILE_PREFIX}"')
    w("")
    w("[[interface]]")
    w('name = "wire"')
    w(f'device = "net_pcap0,rx_pcap={pcap_path},infinite_rx=1"')
    w(f'ipv4 = "{IFACE_IPV4}"')
    w(f'mac = "{IFACE_MAC}"')
    w("")
    w("[workers]")
    w("lcores = [1]")
    w("")
    w("[client]")
    w('interface = "wire"')
    w(f'gateway = "{GATEWAY}"')
    w(f'gateway_mac = "{GATEWAY_MAC}"')
    for name, mac in devices:
        w("")
        w("[[device]]")
        w(f'name = "{name}"')
        w('mode = "alias"')
        w('interface = "wire"')
        w(f'mac = "{mac}"')
    for s, (ip, hops, ports) in enumerate(ips):
        w("")
        w("[[service]]")
        w(f'name = "svc-{s:06d}"')
        w(f'ip = "{ip_str(ip)}"')
        for port, proto in ports:
            w("[[service.port]]")
            w(f"port = {port}")
            w(f'protocol = "{proto}"')
            w("hops = [" + ", ".join(f'"{devices[h][0]}"' for h in hops) + "]")
    if k_acl > 0:
        w("")
        w("[[acl]]")
        w('interface = "wire"')
        w('default = "allow"')
        w("[[acl.rule]]")
        w("priority = 1")
        w('src = "240.0.0.0/4"')
        w('action = "deny"')
        for s in range(len(ips)):
            w("")
            w("[[acl]]")
            w('interface = "wire"')
            w(f'service = "svc-{s:06d}"')
            w('default = "allow"')
            out.extend(acl_rules(s, k_acl))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, required=True, help="number of service ports (2 per IP)")
    ap.add_argument("--packets", type=int, default=32768, help="frames in the pcap (default 32768)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--frame-size", choices=["64", "imix"], default="64")
    ap.add_argument("--acl-rules", type=int, default=10, help=f"ACL rules per service IP, 0-{MAX_ACL_RULES} (default 10)")
    a = ap.parse_args()
    n_ips = (a.services + 1) // 2
    if a.services < 1 or SERVICE_BASE + n_ips - 1 > SERVICE_LIMIT:
        ap.error(f"--services must be 1..{2 * (SERVICE_LIMIT - SERVICE_BASE + 1)}")
    if n_ips > (1 << 19):
        ap.error("--services: at most 2^20 (the denied /28s fill 10.128.0.0/9)")
    if a.packets < 20:
        ap.error("--packets must be at least 20")
    if not 0 <= a.acl_rules <= MAX_ACL_RULES:
        ap.error(f"--acl-rules must be 0..{MAX_ACL_RULES}")

    rng = random.Random(SEED)
    os.makedirs(a.out, exist_ok=True)
    out_dir = os.path.abspath(a.out)
    pcap_path = os.path.join(out_dir, "traffic.pcap")

    # Devices: servers first, then firewalls. MAC 52:54:00:00:<kind>:<index>.
    devices = [(f"srv{i:02d}", f"52:54:00:00:01:{i:02x}") for i in range(N_SERVERS)]
    devices += [(f"fw{i:02d}", f"52:54:00:00:02:{i:02x}") for i in range(N_FIREWALLS)]
    dev_mac = [mac_bytes(m) for _, m in devices]

    # Service IPs: every 4th is firewall -> server; 443/tcp and 53/udp each.
    ips = []
    for s in range(n_ips):
        server = rng.randrange(N_SERVERS)
        hops = [N_SERVERS + rng.randrange(N_FIREWALLS), server] if s % 4 == 3 else [server]
        ports = PORTS if 2 * s + 1 < a.services else PORTS[:1]
        ips.append((SERVICE_BASE + s, hops, ports))
    service_ports = [(s, p) for s, (_, _, ports) in enumerate(ips) for p in ports]
    assert len(service_ports) == a.services
    service_ips = {ip for ip, _, _ in ips}

    # Exact proportions, then shuffled.
    n_none = round(a.packets * 0.05)
    n_denied = round(a.packets * 0.05)
    n_steer = a.packets - n_none - n_denied
    kinds = ["steer"] * n_steer + ["none"] * n_none + ["denied"] * n_denied
    rng.shuffle(kinds)
    if a.frame_size == "64":
        sizes = [64] * a.packets
    else:
        # IMIX 7:4:1 of 64/594/1518-byte frames, in exact proportion.
        sizes = [(64, 594, 1518)[0 if i % 12 < 7 else 1 if i % 12 < 11 else 2] for i in range(a.packets)]
        rng.shuffle(sizes)

    our_mac = mac_bytes(IFACE_MAC)
    gw_mac = mac_bytes(GATEWAY_MAC)
    client_base, client_n = int(CLIENT_NET.network_address), CLIENT_NET.num_addresses
    unknown_base, unknown_n = int(UNKNOWN_NET.network_address), UNKNOWN_NET.num_addresses

    frames = []
    counts = {"to_service": 0, "between_hops": 0, "to_client": 0, "no_service": 0, "acl_deny": 0, "tcp": 0, "udp": 0}
    for kind, size in zip(kinds, sizes):
        frame_len = size - FCS
        client_ip = client_base + 1 + rng.randrange(client_n - 2)
        client_port = rng.randrange(1024, 65536)
        seq, ack = rng.getrandbits(32), rng.getrandbits(32)
        s, (port, proto) = service_ports[rng.randrange(len(service_ports))]
        ip, hops, _ = ips[s]
        counts[proto] += 1
        if kind == "none":
            while True:
                dst = unknown_base + rng.randrange(unknown_n)
                if dst not in service_ips:
                    break
            fr = frame(our_mac, gw_mac, proto, client_ip, client_port, dst, port, seq, ack, frame_len, rng)
            counts["no_service"] += 1
        elif kind == "denied" and a.acl_rules > 0:
            src = denied_net(s) + rng.randrange(16)
            fr = frame(our_mac, gw_mac, proto, src, client_port, ip, port, seq, ack, frame_len, rng)
            counts["acl_deny"] += 1
        else:
            # One step of the chain, one direction: 2 x len(hops) choices.
            step = rng.randrange(2 * len(hops))
            k, forward = step // 2, step % 2 == 0
            if forward:
                # Into hop k: from the client side (k = 0) or hop k-1.
                src_mac = gw_mac if k == 0 else dev_mac[hops[k - 1]]
                fr = frame(our_mac, src_mac, proto, client_ip, client_port, ip, port, seq, ack, frame_len, rng)
                counts["to_service" if k == 0 else "between_hops"] += 1
            else:
                # Out of hop k: to hop k-1, or the client side from hop 0.
                fr = frame(our_mac, dev_mac[hops[k]], proto, ip, port, client_ip, client_port, seq, ack, frame_len, rng)
                counts["to_client" if k == 0 else "between_hops"] += 1
        frames.append(fr)

    write_pcap(pcap_path, frames)

    # The pool holds every replayed frame plus what is in flight (bursts, tx
    # buffers, per-lcore mempool caches): a power of two minus one.
    mbufs = 1
    while mbufs - 1 < a.packets + 4096:
        mbufs *= 2
    mbufs -= 1
    memory_mb = max(256, -(-(2 * mbufs * 2400) // 1_000_000) + 64)
    conf = config_text(pcap_path, ips, a.services, devices, mbufs, memory_mb, a.packets, a.frame_size, a.acl_rules)
    conf_path = os.path.join(out_dir, "seqd.toml")
    with open(conf_path + ".tmp", "w") as f:
        f.write(conf)
    os.replace(conf_path + ".tmp", conf_path)

    n_bytes = sum(len(f) for f in frames)
    meta = {
        "services": a.services,
        "service_ips": n_ips,
        "acl_rules_per_service_ip": a.acl_rules,
        "packets": a.packets,
        "frame_size": a.frame_size,
        "pcap_bytes": n_bytes,
        "mbufs": mbufs,
        "memory_mb": memory_mb,
        **counts,
    }
    with open(os.path.join(out_dir, "traffic.json"), "w") as f:
        json.dump(meta, f, indent=1)
    two_hop = sum(1 for _, h, _ in ips if len(h) == 2)
    print(
        f"gen-traffic: {a.services} service ports on {n_ips} IPs ({two_hop} two-hop), {a.acl_rules} ACL rules "
        f"per IP, {len(devices)} devices, {a.packets} packets ({counts['to_service']} client->service, "
        f"{counts['between_hops']} between hops, {counts['to_client']} ->client, {counts['no_service']} no service, "
        f"{counts['acl_deny']} denied; {counts['tcp']} tcp {counts['udp']} udp), {n_bytes} bytes in pcap "
        f"(frame size {a.frame_size}; mbufs {mbufs}, memory_mb {memory_mb}) -> {out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
