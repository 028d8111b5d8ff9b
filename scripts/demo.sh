#!/usr/bin/env bash
# The seqd demo on virtual devices: builds seqd, writes input pcaps for two
# DPDK net_pcap interfaces, runs seqd on them (conf/pcap-demo.toml) until the
# input is replayed, and shows what each interface sent and what was dropped.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --bin seqd

DIR=/tmp/seqd-demo
rm -rf "$DIR"
mkdir -p "$DIR"

# Input frames, built by hand: ARP requests for seqd's addresses, an ARP
# request for someone else, a UDP datagram to an address with no service,
# a truncated frame and an IPv6 frame.
python3 - "$DIR" <<'PY'
import struct, sys, time
d = sys.argv[1]
def mac(s): return bytes(int(x, 16) for x in s.split(':'))
def ip(s): return bytes(int(x) for x in s.split('.'))
def arp_req(sha, spa, tpa):
    return (b'\xff'*6 + mac(sha) + b'\x08\x06' + b'\x00\x01\x08\x00\x06\x04\x00\x01'
            + mac(sha) + ip(spa) + b'\x00'*6 + ip(tpa)).ljust(60, b'\x00')
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def udp(src_mac, dst_mac, src, dst, sport, dport, payload):
    u = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(u), 1, 0x4000, 64, 17, 0, ip(src), ip(dst))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return mac(dst_mac) + mac(src_mac) + b'\x08\x00' + h + u
def pcap(path, frames):
    with open(path, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        t = int(time.time())
        for i, fr in enumerate(frames):
            f.write(struct.pack('<IIII', t, i, len(fr), len(fr)) + fr)
client = [
    arp_req('52:54:00:aa:bb:01', '192.0.2.10', '192.0.2.1'),
    arp_req('52:54:00:aa:bb:01', '192.0.2.10', '192.0.2.99'),
    udp('52:54:00:aa:bb:01', '02:00:00:00:01:01', '192.0.2.10', '203.0.113.5', 40000, 80, b'hello'),
    udp('52:54:00:aa:bb:01', '02:00:00:00:01:01', '192.0.2.10', '203.0.113.5', 40000, 80, b'hello')[:30],
]
devices = [
    arp_req('52:54:00:aa:bb:02', '198.51.100.20', '198.51.100.1'),
]
pcap(d + '/client-in.pcap', client)
pcap(d + '/devices-in.pcap', devices)
PY

echo
echo "== seqd on net_pcap (conf/pcap-demo.toml) =="
./target/release/seqd --config conf/pcap-demo.toml --exit-when-idle 300 --stats-file "$DIR/stats.json"

for i in client devices; do
  echo
  echo "== $i: received =="
  tcpdump -nn -e -r "$DIR/$i-in.pcap" 2>/dev/null
  echo "== $i: sent by seqd =="
  tcpdump -nn -e -r "$DIR/$i-out.pcap" 2>/dev/null
done
echo
echo "== drops by reason (from $DIR/stats.json) =="
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["drops"]; [print(f"  {k:24} {v}") for k,v in d.items() if v]' "$DIR/stats.json"
