#!/usr/bin/env bash
# Throughput of one seqd worker with many services, beside dpdk-testpmd on
# the same input in the same run.
#
#   bash benches/throughput.sh [N_SERVICES] [SECONDS]      (defaults 4096 5)
#
# Environment: FRAME_SIZE=64|imix (default 64), PACKETS (frames in the pcap,
# default 8192), ROUNDS (default 3).
#
# Assumes the machine is set up (scripts/setup.sh: DPDK 22.11, dpdk-testpmd).
# Builds seqd, writes /tmp/seqd-bench/{traffic.pcap,seqd.toml} with
# scripts/gen-traffic.py, then runs ROUNDS rounds of, in turn:
#   (a) seqd on one worker (lcore 1), net_pcap replaying the pcap forever
#       (infinite_rx=1; no tx_pcap, so tx frees the mbufs), for SECONDS:
#       Mpps = workers[0].rx_packets / (workers[0].total_cycles / tsc_hz),
#       cycles/packet = busy_cycles / rx_packets;
#   (b) dpdk-testpmd --forward-mode=macswap on the same vdev and pcap, one
#       forwarding core (lcore 1), stopped by SIGINT after SECONDS:
#       Mpps = the median of its Rx-pps readings after the first (the first
#       has no previous reading and shows 0). With --stats-period=1, 22.11
#       prints one about every 2 s here (its loop sleeps 1 s, then usually
#       just misses the period); each is the rate since the previous one;
#   (c) the same with --forward-mode=io.
# and prints each round, the medians and seqd / testpmd-macswap. It also
# checks that seqd dropped only no_service frames (~10% of the input), so the
# figure is for steering, not for dropping.
#
# Nothing is left in /var/run/dpdk/seqd-bench* afterwards, pass or fail.
# These machines are shared and noisy: compare figures within one run only.
set -euo pipefail
cd "$(dirname "$0")/.."

N_SERVICES=${1:-4096}
SECONDS_RUN=${2:-5}
FRAME_SIZE=${FRAME_SIZE:-64}
PACKETS=${PACKETS:-8192}
ROUNDS=${ROUNDS:-3}
DIR=/tmp/seqd-bench
TP_PREFIX=seqd-bench-tp

case "$N_SERVICES" in '' | *[!0-9]*) echo "N_SERVICES must be a number" >&2; exit 2 ;; esac
case "$SECONDS_RUN" in '' | *[!0-9]*) echo "SECONDS must be a whole number" >&2; exit 2 ;; esac
if [ "$SECONDS_RUN" -lt 3 ]; then
    echo "SECONDS must be at least 3 (testpmd 22.11 prints a rate every ~2 s here)" >&2
    exit 2
fi

CHILD=""
cleanup() {
    local rc=$?
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    rm -rf /var/run/dpdk/seqd-bench*
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs "$@" in the background (so a signal reaches the trap at once) and
# waits for it; returns its exit status.
run_child() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd not found (run scripts/setup.sh)" >&2; exit 1; }

echo "== build"
cargo build --release
SEQD=target/release/seqd

echo "== traffic"
rm -rf "$DIR" /var/run/dpdk/seqd-bench*
mkdir -p "$DIR"
python3 scripts/gen-traffic.py --services "$N_SERVICES" --packets "$PACKETS" \
    --frame-size "$FRAME_SIZE" --out "$DIR"
CONF=$DIR/seqd.toml
PCAP=$DIR/traffic.pcap
"$SEQD" --check-config "$CONF" >/dev/null
# testpmd gets the same memory and pool size as seqd.
MEM_MB=$(sed -n 's/^memory_mb = \([0-9]*\)$/\1/p' "$CONF")
MBUFS=$(sed -n 's/^mbufs = \([0-9]*\)$/\1/p' "$CONF")

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# Another DPDK process or a build on these 2 CPUs skews the figures: say so.
warn_others() {
    local others
    others=$(ps -eo pid=,comm= | awk '$2 ~ /^(seqd|dpdk-testpmd|cargo|rustc)$/ {printf "%s(%s) ", $2, $1}')
    if [ -n "$others" ]; then
        echo "  WARNING: other DPDK or build processes are running: ${others}- expect noise"
    fi
}
warn_others
echo "== $ROUNDS rounds of seqd, testpmd macswap, testpmd io; ${SECONDS_RUN}s each"

RESULTS=$DIR/results.tsv
: >"$RESULTS"
FAILED=0

# seqd: prints "Mpps cycles_per_packet" and the drops check.
run_seqd() {
    local round=$1 stats=$DIR/seqd-$1.json log=$DIR/seqd-$1.log
    rm -f "$stats"
    if ! run_child "$SEQD" --config "$CONF" --duration "$SECONDS_RUN" --stats-file "$stats" 2>"$log"; then
        echo "seqd failed (round $round); last lines of $log:" >&2
        tail -20 "$log" >&2
        return 1
    fi
    python3 - "$stats" "$round" "$RESULTS" <<'PY'
import json, sys
path, rnd, results = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(path))
w = s["workers"][0]
hz = s["tsc_hz"]
rx, tx = w["rx_packets"], w["tx_packets"]
secs = w["total_cycles"] / hz
mpps = rx / secs / 1e6
cpp = w["busy_cycles"] / rx if rx else float("nan")
drops = {k: v for k, v in s["drops"].items() if v}
no_service = drops.pop("no_service", 0)
share = no_service / rx if rx else 0
services_in = sum(p["packets_in"] for p in s["services"])
services_out = sum(p["packets_out"] for p in s["services"])
from_devices = sum(d["packets_from"] for d in s["devices"])
ok = rx > 0 and not drops and 0.05 <= share <= 0.15 and tx + no_service == rx
other = " ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"
print(f"  seqd    round {rnd}: {mpps:6.2f} Mpps  {cpp:6.1f} cycles/packet  ({rx} rx, {tx} tx in {secs:.2f} s; busy {100 * w['busy_cycles'] / max(w['total_cycles'], 1):.1f}%)")
print(f"          drops: no_service={no_service} ({100 * share:.1f}% of rx), other: {other}; "
      f"steered: {services_in} client->service, {from_devices} from devices, {services_out} service->client"
      + ("" if ok else "  <-- UNEXPECTED: should be only no_service, ~10%"))
with open(results, "a") as f:
    f.write(f"{rnd}\tseqd\t{mpps:.4f}\t{cpp:.2f}\t{hz}\n")
sys.exit(0 if ok else 3)
PY
}

# testpmd in forward mode $2: appends the median Rx-pps after the first reading.
run_testpmd() {
    local round=$1 mode=$2 log=$DIR/testpmd-$2-$1.log rc=0
    # SIGINT after SECONDS: testpmd stops forwarding and prints its totals.
    run_child timeout -s INT "$SECONDS_RUN" \
        dpdk-testpmd -l 0-1 --no-huge -m "$MEM_MB" --file-prefix "$TP_PREFIX" --no-pci \
        --vdev "net_pcap0,rx_pcap=$PCAP,infinite_rx=1" -- \
        --forward-mode="$mode" --port-topology=loop --nb-cores=1 \
        --total-num-mbufs="$MBUFS" --stats-period=1 \
        </dev/null >"$log" 2>&1 || rc=$?
    rm -rf "/var/run/dpdk/$TP_PREFIX"
    # 124: timeout sent SIGINT, testpmd stopped cleanly (the normal end).
    if [ "$rc" -ne 124 ] && [ "$rc" -ne 0 ]; then
        echo "testpmd $mode failed (round $round, exit $rc); last lines of $log:" >&2
        tail -20 "$log" >&2
        return 1
    fi
    python3 - "$log" "$round" "$mode" "$RESULTS" <<'PY'
import re, statistics, sys
log, rnd, mode, results = sys.argv[1:5]
text = open(log, "rb").read().decode("utf-8", "replace")
# Its periodic screen starts with a clear-screen escape; drop escapes, then
# take every "Rx-pps: N" of the "Throughput (since last show)" blocks.
text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
readings = [int(x) for x in re.findall(r"Rx-pps:\s*(\d+)", text)]
if "Set %s packet forwarding mode" % mode not in text:
    sys.exit(f"testpmd {mode}: no 'Set {mode} packet forwarding mode' line in {log}")
if len(readings) < 2:
    sys.exit(f"testpmd {mode}: {len(readings)} Rx-pps readings in {log}; need 2 or more")
rates = readings[1:]
mpps = statistics.median(rates) / 1e6
m = re.search(r"Accumulated forward statistics.*?RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+).*?TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)", text, re.S)
total = f"; total rx {m.group(1)}, rx-dropped {m.group(2)}, tx {m.group(3)}, tx-dropped {m.group(4)}" if m else ""
print(f"  testpmd round {rnd} {mode:8s}: {mpps:6.2f} Mpps  (Rx-pps readings after the first: "
      + ", ".join(f"{r / 1e6:.2f}" for r in rates) + f"{total})")
with open(results, "a") as f:
    f.write(f"{rnd}\t{mode}\t{mpps:.4f}\t\t\n")
PY
}

for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    warn_others
    run_seqd "$round" || { rc=$?; [ "$rc" -eq 3 ] && FAILED=1 || exit 1; }
    run_testpmd "$round" macswap || exit 1
    run_testpmd "$round" io || exit 1
done

echo
python3 - "$RESULTS" "$N_SERVICES" "$FRAME_SIZE" "$PACKETS" "$SECONDS_RUN" <<'PY'
import statistics, sys
results, n, frame, packets, secs = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
by = {}
cpp = {}
hz = None
for rnd, what, mpps, c, h in rows:
    by.setdefault(rnd, {})[what] = float(mpps)
    if what == "seqd":
        cpp[rnd] = float(c)
        hz = int(h)
def cyc(mpps):
    # Cycles per packet of a core that polls at 100% (infinite_rx: every
    # burst is full), from its rate.
    return hz / (mpps * 1e6) if hz and mpps else float("nan")
frames = "64-byte frames" if frame == "64" else "IMIX frames (64/594/1518 bytes, 7:4:1)"
print(f"seqd throughput, 1 worker, {n} services, {frames}, {packets} in the pcap, {secs} s per run")
print(f"{'round':>6}  {'seqd Mpps':>10}  {'seqd cyc/pkt':>12}  {'macswap Mpps':>12}  {'io Mpps':>8}  {'seqd/macswap':>12}")
for rnd in sorted(by, key=int):
    r = by[rnd]
    print(f"{rnd:>6}  {r['seqd']:>10.2f}  {cpp[rnd]:>12.1f}  {r['macswap']:>12.2f}  {r['io']:>8.2f}  {r['seqd'] / r['macswap']:>12.2f}")
med = {k: statistics.median(by[r][k] for r in by) for k in ("seqd", "macswap", "io")}
mcpp = statistics.median(cpp.values())
print(f"{'median':>6}  {med['seqd']:>10.2f}  {mcpp:>12.1f}  {med['macswap']:>12.2f}  {med['io']:>8.2f}  {med['seqd'] / med['macswap']:>12.2f}")
print(f"cycles/packet at tsc_hz {hz / 1e9:.2f} GHz (from the medians): seqd {cyc(med['seqd']):.0f}, "
      f"testpmd macswap {cyc(med['macswap']):.0f}, testpmd io {cyc(med['io']):.0f}")
print(f"seqd / testpmd-macswap = {med['seqd'] / med['macswap']:.2f}   seqd / testpmd-io = {med['seqd'] / med['io']:.2f}")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FAILED" -ne 0 ]; then
    echo "FAIL: seqd dropped more than no_service frames (see the drops lines above)" >&2
    exit 1
fi
