#!/usr/bin/env bash
# The seqd demo on real hosts: builds seqd, creates the lab of
# scripts/e2e-topology.sh (clients behind a router, Linux firewalls, an IDS
# and servers in network namespaces), runs seqd with conf/e2e.toml on
# net_af_packet ports, sends traffic through two customers' chains, and
# shows what went where: each chain, seqd's counters, what the IDS and the
# firewalls saw, and a Prometheus query of the services' bytes. Then removes
# everything it made, also when interrupted or when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --bin seqd

TAG=demo
ns() { echo "sqe-$TAG-$1"; }
WORK=$(mktemp -d /tmp/sqe-demo.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash scripts/e2e-topology.sh down "$TAG"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# In the background inside a namespace; `ip netns exec` execs, so $! is the
# process itself and cleanup can stop it by its pid.
bg() {
  local role=$1 log=$2
  shift 2
  ip netns exec "$(ns "$role")" "$@" >"$WORK/$log" 2>&1 &
  PIDS+=($!)
}
wait_for() {
  local what=$1
  shift
  for _ in $(seq 100); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "demo: $what did not come up" >&2
  exit 1
}
ctl() { ip netns exec "$(ns seqd)" curl -sf "http://127.0.0.1:8080$1"; }

echo "== lab: network namespaces sqe-$TAG-* (scripts/e2e-topology.sh) =="
bash scripts/e2e-topology.sh down "$TAG" # what an earlier, killed demo left
bash scripts/e2e-topology.sh up "$TAG"
ip netns list | grep -E "^sqe-$TAG-" | awk '{printf "%s ", $1} END {print ""}'

echo
echo "== seqd (conf/e2e.toml) in sqe-$TAG-seqd on net_af_packet =="
bg seqd seqd.log target/release/seqd --config conf/e2e.toml
wait_for "seqd's control API" ctl /healthz
grep -E "port started|seqd ready" "$WORK/seqd.log" | sed 's/^[^ ]* *//'

# The servers, the IDS's capture and Prometheus.
mkdir -p "$WORK/www"
head -c $((2 << 20)) /dev/urandom >"$WORK/www/big.bin"
echo "hello from behind seqd" >"$WORK/www/hello.txt"
bg weblo weblo.log python3 scripts/e2e-tool.py serve --dir "$WORK/www" --http 80 8080 --ready "$WORK/weblo.ready"
bg udp1 udp1.log python3 scripts/e2e-tool.py serve --dir "$WORK/www" --udp 5353 --ready "$WORK/udp1.ready"
bg ids1 ids.log tcpdump -p -i eth0 -nn -U -Z root -w "$WORK/ids.pcap" ether dst 52:54:00:00:04:10
IDS=$!
cat >"$WORK/prometheus.yml" <<'YML'
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: seqd
    static_configs:
      - targets: ['127.0.0.1:8080']
YML
bg seqd prometheus.log prometheus --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/prometheus" --web.listen-address=127.0.0.1:9090
wait_for "the web server" test -e "$WORK/weblo.ready"
wait_for "the UDP server" test -e "$WORK/udp1.ready"
wait_for "the IDS capture" grep -q "listening on" "$WORK/ids.log"
wait_for "Prometheus" ip netns exec "$(ns seqd)" curl -sf http://127.0.0.1:9090/-/ready

echo
echo "== the chains (conf/e2e.toml) =="
python3 - <<'PY'
import tomllib
c = tomllib.load(open("conf/e2e.toml", "rb"))
for s in c["service"]:
    for p in s["port"]:
        chain = " -> ".join(["client"] + p["hops"])
        extra = "".join(f", copies of {h}'s link to {', '.join(d)}" for h, d in p.get("copies", {}).items())
        if "translate_to" in p:
            extra += f", port {p['port']} -> {p['translate_to']}"
        print(f"  {s['name']:<11} {s['ip']}:{p['port']}/{p.get('protocol', 'tcp')}: {chain}{extra}")
PY

echo
echo "== traffic =="
cl() { ip netns exec "$(ns "$1")" "${@:2}"; }
echo "acme, client 198.18.1.2: GET http://203.0.113.10/big.bin (2 MB through fw1 to weblo)"
cl cl1 curl -sS --fail -o "$WORK/big.down" http://203.0.113.10/big.bin
echo "  sha256 $(sha256sum <"$WORK/big.down" | cut -c1-16)... sent $(sha256sum <"$WORK/www/big.bin" | cut -c1-16)..."
echo "acme, client 198.18.1.2: 20 GETs of http://203.0.113.10:8080/hello.txt (ids1 watches weblo's link)"
cl cl1 python3 scripts/e2e-tool.py get-many http://203.0.113.10:8080/hello.txt 20 --expect "$WORK/www/hello.txt" | sed 's/^/  /'
echo "acme, client 198.18.1.2: http://203.0.113.10:8081/ (fw1's nftables drops port 8081)"
cl cl1 curl -sS --connect-timeout 2 -o /dev/null http://203.0.113.10:8081/hello.txt 2>&1 | sed 's/^/  /' || true
echo "acme, client 198.18.2.2: http://203.0.113.10/ (acme's ACL in seqd denies 198.18.2.0/24)"
cl cl2 curl -sS --connect-timeout 2 -o /dev/null http://203.0.113.10/hello.txt 2>&1 | sed 's/^/  /' || true
echo "globex, client 198.18.2.2: 50 UDP questions to 203.0.113.20:53 (udp1 answers on 5353)"
cl cl2 python3 scripts/e2e-tool.py udp-ask 203.0.113.20 53 50 | sed 's/^/  /'

echo
echo "== what went where: seqd's counters (GET /v1/stats) =="
ctl /v1/stats >"$WORK/stats.json"
python3 - "$WORK/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("  service port           from clients          to clients")
for p in s["services"]:
    print(f"  {p['service']:<11} {p['protocol']}/{p['port']:<5} {p['packets_in']:>6} pkts {p['bytes_in']:>9} B"
          f"  {p['packets_out']:>6} pkts {p['bytes_out']:>9} B")
print("  device                 sent to it            steered from it")
for d in s["devices"]:
    print(f"  {d['name']:<21}  {d['packets_to']:>6} pkts {d['bytes_to']:>9} B"
          f"  {d['packets_from']:>6} pkts {d['bytes_from']:>9} B")
for r in s["acl_rules"]:
    if r["packets"]:
        print(f"  ACL {r['service'] or 'provider'} rule {r['priority']} ({r['action']}): {r['packets']} packets")
print("  drops: " + (", ".join(f"{k}={v}" for k, v in s["drops"].items() if v) or "none"))
PY
echo
echo "== what the hosts saw =="
kill "$IDS" && wait "$IDS" 2>/dev/null || true
echo "  ids1 captured $(tcpdump -nn -r "$WORK/ids.pcap" 2>/dev/null | wc -l) copies, all of port 8080: $(tcpdump -nn -r "$WORK/ids.pcap" 'not port 8080' 2>/dev/null | wc -l) of other ports"
for fw in fw1 fw2; do
  echo "  $fw nftables: $(ip netns exec "$(ns "$fw")" nft list counters | awk '/counter/ {n=$2} /packets/ {printf "%s %s packets  ", n, $2}')"
done

echo
echo "== Prometheus (scraping seqd every second) =="
sleep 2
Q='sum by (service, direction) (seqd_service_bytes_total)'
echo "  query: $Q"
ip netns exec "$(ns seqd)" curl -sf http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$Q" >"$WORK/query.json"
python3 - "$WORK/query.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["data"]["result"]
for r in sorted(rows, key=lambda r: (r["metric"]["service"], r["metric"]["direction"])):
    m = r["metric"]
    print(f"  {m['service']:<11} {m['direction']:<3} {r['value'][1]:>9} bytes")
PY

echo
echo "== done: removing the lab =="
