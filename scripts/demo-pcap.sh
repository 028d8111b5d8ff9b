#!/usr/bin/env bash
# seqd on recorded frames instead of live hosts (scripts/demo.sh has those):
# builds seqd, writes input pcaps for the two DPDK net_pcap interfaces of
# conf/one-server-nat.toml (a client-side interface and a device-side one),
# runs seqd until the input is replayed, and shows what each interface sent,
# the service and device counters, and the drops by reason.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --bin seqd

DIR=/tmp/seqd-demo/one-server-nat
CONF=conf/one-server-nat.toml
rm -rf "$DIR"
mkdir -p "$DIR"

# Input frames, built by hand for conf/one-server-nat.toml: the router asks
# for the service IP by ARP, a client opens TCP to the service
# 203.0.113.10:80, the NAT server web1 (198.51.100.30) answers, plus a
# datagram to a port with no service and a truncated frame.
python3 - "$DIR" <<'PY'
import struct, sys, time
d = sys.argv[1]
def mac(s): return bytes(int(x, 16) for x in s.split(':'))
def ip(s): return bytes(int(x) for x in s.split('.'))
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ipv4(src, dst, proto, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, ip(src), ip(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload
def tcp(src, sport, dst, dport, flags):
    t = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0 if flags == 2 else 5001, 5 << 4, flags, 65535, 0, 0)
    pseudo = ip(src) + ip(dst) + struct.pack('!BBH', 0, 6, len(t))
    t = t[:16] + struct.pack('!H', csum(pseudo + t)) + t[18:]
    return ipv4(src, dst, 6, t)
def udp(src, sport, dst, dport, payload):
    u = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    return ipv4(src, dst, 17, u)
def eth(dst, src, etype, payload):
    return (mac(dst) + mac(src) + struct.pack('!H', etype) + payload).ljust(60, b'\0')
def arp_req(sha, spa, tpa):
    return eth('ff:ff:ff:ff:ff:ff', sha, 0x0806, b'\x00\x01\x08\x00\x06\x04\x00\x01' + mac(sha) + ip(spa) + b'\0'*6 + ip(tpa))
def pcap(path, frames):
    with open(path, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        t = int(time.time())
        for i, fr in enumerate(frames):
            f.write(struct.pack('<IIII', t, i, len(fr), len(fr)) + fr)
GW, CIF, DIF, WEB = '02:00:00:00:fe:fe', '02:00:00:00:01:01', '02:00:00:00:02:02', '52:54:00:00:00:30'
client = [
    arp_req(GW, '192.0.2.254', '203.0.113.10'),
    eth(CIF, GW, 0x0800, tcp('198.18.0.7', 40000, '203.0.113.10', 80, 0x02)),
    eth(CIF, GW, 0x0800, udp('198.18.0.7', 40001, '203.0.113.10', 53, b'query')),
    eth(CIF, GW, 0x0800, tcp('198.18.0.7', 40000, '203.0.113.10', 80, 0x02))[:30],
]
devices = [
    eth(DIF, WEB, 0x0800, tcp('198.51.100.30', 80, '198.18.0.7', 40000, 0x12)),
]
pcap(d + '/client-in.pcap', client)
pcap(d + '/devices-in.pcap', devices)
PY

echo
echo "== seqd on net_pcap ($CONF) =="
./target/release/seqd --config "$CONF" --exit-when-idle 300 --stats-file "$DIR/stats.json"

for i in client devices; do
  echo
  echo "== $i: received =="
  tcpdump -nn -e -v -r "$DIR/$i-in.pcap" 2>/dev/null
  echo "== $i: sent by seqd =="
  tcpdump -nn -e -v -r "$DIR/$i-out.pcap" 2>/dev/null
done
echo
echo "== counters (from $DIR/stats.json) =="
python3 - "$DIR/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for p in s["services"]:
    print(f"  service {p['service']} {p['protocol']}/{p['port']}: in {p['packets_in']} pkts {p['bytes_in']} B, out {p['packets_out']} pkts {p['bytes_out']} B")
for d in s["devices"]:
    print(f"  device {d['name']}: to {d['packets_to']} pkts {d['bytes_to']} B, from {d['packets_from']} pkts {d['bytes_from']} B")
print("  drops: " + ", ".join(f"{k}={v}" for k, v in s["drops"].items() if v))
PY
