#!/usr/bin/env bash
# Throughput of one seqd worker with many services and ACLs, beside
# dpdk-testpmd on the same input in the same run.
#
#   bash benches/throughput.sh ["N1 N2 ..."] [SECONDS]   (defaults "1000 10000 100000" 5)
#
# Environment: FRAME_SIZES (default "64 imix"), PACKETS (frames in the pcap,
# default 32768), ROUNDS (default 3), ACL_RULES (per service IP, default 10),
# SEQD (the binary; default: cargo build --release, target/release/seqd).
#
# Assumes the machine is set up (scripts/setup.sh: DPDK 22.11, dpdk-testpmd).
# For each frame size and N, writes /tmp/seqd-bench/<fs>-<N>/{traffic.pcap,
# seqd.toml,traffic.json} with scripts/gen-traffic.py, then runs ROUNDS
# rounds of, in turn:
#   (a) seqd on one worker (lcore 1), net_pcap replaying the pcap forever
#       (infinite_rx=1; no tx_pcap, so the PMD's tx frees the mbufs, like
#       net_null), for SECONDS:
#       Mpps = workers[0].rx_packets / (workers[0].total_cycles / tsc_hz);
#       own cycles/packet = work_cycles / rx_packets (seqd's code: TSC
#       around each burst's processing less the PMD's tx bursts in it);
#       total cycles/packet = busy_cycles / rx_packets (with the PMD's rx,
#       tx and frees); peak RSS (VmHWM) from /proc while it runs;
#   (b) dpdk-testpmd --forward-mode=macswap on the same vdev and pcap, one
#       forwarding core (lcore 1), stopped by SIGINT after SECONDS:
#       Mpps = the median of its Rx-pps readings after the first (the first
#       has no previous reading and shows 0). With --stats-period=1, 22.11
#       prints one about every 2 s here;
#   (c) the same with --forward-mode=io.
# and prints each round, the medians and seqd / testpmd-macswap per N and
# frame size, then one summary table. It checks that seqd dropped only
# no_service and acl_deny frames, in the proportions gen-traffic wrote, so
# the figure is for steering, not for dropping.
#
# Nothing is left in /var/run/dpdk/seqd-bench* afterwards, pass or fail.
# These machines are shared and noisy: compare figures within one run only.
set -euo pipefail
cd "$(dirname "$0")/.."

N_LIST=${1:-"1000 10000 100000"}
SECONDS_RUN=${2:-5}
FRAME_SIZES=${FRAME_SIZES:-"64 imix"}
PACKETS=${PACKETS:-32768}
ROUNDS=${ROUNDS:-3}
ACL_RULES=${ACL_RULES:-10}
BASE=/tmp/seqd-bench
TP_PREFIX=seqd-bench-tp

for n in $N_LIST; do
    case "$n" in '' | *[!0-9]*) echo "N must be numbers: $N_LIST" >&2; exit 2 ;; esac
done
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

if [ -z "${SEQD:-}" ]; then
    echo "== build"
    cargo build --release
    SEQD=target/release/seqd
fi

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== seqd: $SEQD ($(git log -1 --format='%h %s' 2>/dev/null | cut -c1-60))"
# Another DPDK process or a build on these 2 CPUs skews the figures: say so.
warn_others() {
    local others
    others=$(ps -eo pid=,comm= | awk '$2 ~ /^(seqd|dpdk-testpmd|cargo|rustc)$/ {printf "%s(%s) ", $2, $1}')
    if [ -n "$others" ]; then
        echo "  WARNING: other DPDK or build processes are running: ${others}- expect noise"
    fi
}

rm -rf "$BASE" /var/run/dpdk/seqd-bench*
mkdir -p "$BASE"
SUMMARY=$BASE/summary.tsv
: >"$SUMMARY"
FAILED=0

# seqd: one round; appends "round seqd Mpps own_cpp total_cpp hz rss_kb hwm_kb".
run_seqd() {
    local dir=$1 round=$2 stats=$1/seqd-$2.json log=$1/seqd-$2.log rc=0 rss=0 hwm=0
    rm -f "$stats"
    "$SEQD" --config "$dir/seqd.toml" --duration "$SECONDS_RUN" --stats-file "$stats" 2>"$log" &
    CHILD=$!
    # Sample its memory while it runs (the last reading before exit).
    while kill -0 "$CHILD" 2>/dev/null; do
        if [ -r "/proc/$CHILD/status" ]; then
            rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$CHILD/status" 2>/dev/null || echo "$rss")
            hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$CHILD/status" 2>/dev/null || echo "$hwm")
        fi
        sleep 0.5
    done
    wait "$CHILD" || rc=$?
    CHILD=""
    rm -rf /var/run/dpdk/seqd-bench
    if [ "$rc" -ne 0 ]; then
        echo "seqd failed (round $round, exit $rc); last lines of $log:" >&2
        tail -20 "$log" >&2
        return 1
    fi
    python3 - "$stats" "$round" "$dir/results.tsv" "$dir/traffic.json" "$log" "${rss:-0}" "${hwm:-0}" <<'PY'
import json, re, sys
path, rnd, results, meta_path, log, rss, hwm = sys.argv[1:8]
s = json.load(open(path))
meta = json.load(open(meta_path))
w = s["workers"][0]
hz = s["tsc_hz"]
rx, tx = w["rx_packets"], w["tx_packets"]
secs = w["total_cycles"] / hz
mpps = rx / secs / 1e6
cpp = w["busy_cycles"] / rx if rx else float("nan")
own = w.get("work_cycles", 0) / rx if rx else float("nan")
drops = {k: v for k, v in s["drops"].items() if v}
no_service = drops.pop("no_service", 0)
denied = drops.pop("acl_deny", 0)
want_ns = meta["no_service"] / meta["packets"]
want_deny = meta["acl_deny"] / meta["packets"]
near = lambda got, want: abs(got / rx - want) < 0.01 if rx else False
ok = rx > 0 and not drops and near(no_service, want_ns) and near(denied, want_deny) and tx + no_service + denied == rx
m = re.search(r"table_bytes=(\d+)", open(log, errors="replace").read())
table_bytes = int(m.group(1)) if m else 0
other = " ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "none"
print(f"  seqd    round {rnd}: {mpps:6.2f} Mpps  own {own:6.1f} / total {cpp:6.1f} cycles/packet  ({rx} rx, {tx} tx in {secs:.2f} s; "
      f"busy {100 * w['busy_cycles'] / max(w['total_cycles'], 1):.1f}%; RSS {int(rss) / 1024:.0f} MiB, peak {int(hwm) / 1024:.0f} MiB; "
      f"tables {table_bytes / meta['services']:.0f} B/service)")
print(f"          drops: no_service={no_service} ({100 * no_service / max(rx, 1):.1f}%), acl_deny={denied} ({100 * denied / max(rx, 1):.1f}%), other: {other}"
      + ("" if ok else f"  <-- UNEXPECTED: want only no_service ~{100 * want_ns:.1f}% and acl_deny ~{100 * want_deny:.1f}%"))
with open(results, "a") as f:
    f.write(f"{rnd}\tseqd\t{mpps:.4f}\t{own:.2f}\t{cpp:.2f}\t{hz}\t{rss}\t{hwm}\t{table_bytes}\n")
sys.exit(0 if ok else 3)
PY
}

# testpmd in forward mode $3: appends the median Rx-pps after the first reading.
run_testpmd() {
    local dir=$1 round=$2 mode=$3 log=$1/testpmd-$3-$2.log rc=0
    local mem_mb mbufs
    mem_mb=$(sed -n 's/^memory_mb = \([0-9]*\)$/\1/p' "$dir/seqd.toml")
    mbufs=$(sed -n 's/^mbufs = \([0-9]*\)$/\1/p' "$dir/seqd.toml")
    # SIGINT after SECONDS: testpmd stops forwarding and prints its totals.
    run_child timeout -s INT "$SECONDS_RUN" \
        dpdk-testpmd -l 0-1 --no-huge -m "$mem_mb" --file-prefix "$TP_PREFIX" --no-pci \
        --vdev "net_pcap0,rx_pcap=$dir/traffic.pcap,infinite_rx=1" -- \
        --forward-mode="$mode" --port-topology=loop --nb-cores=1 \
        --total-num-mbufs="$mbufs" --stats-period=1 \
        </dev/null >"$log" 2>&1 || rc=$?
    rm -rf "/var/run/dpdk/$TP_PREFIX"
    # 124: timeout sent SIGINT, testpmd stopped cleanly (the normal end).
    if [ "$rc" -ne 124 ] && [ "$rc" -ne 0 ]; then
        echo "testpmd $mode failed (round $round, exit $rc); last lines of $log:" >&2
        tail -20 "$log" >&2
        return 1
    fi
    python3 - "$log" "$round" "$mode" "$dir/results.tsv" <<'PY'
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
print(f"  testpmd round {rnd} {mode:8s}: {mpps:6.2f} Mpps  (Rx-pps readings after the first: "
      + ", ".join(f"{r / 1e6:.2f}" for r in rates) + ")")
with open(results, "a") as f:
    f.write(f"{rnd}\t{mode}\t{mpps:.4f}\t\t\t\t\t\t\n")
PY
}

for fs in $FRAME_SIZES; do
    for n in $N_LIST; do
        dir=$BASE/$fs-$n
        echo
        echo "== N=$n services, frames $fs, $ACL_RULES ACL rules per service IP"
        mkdir -p "$dir"
        python3 scripts/gen-traffic.py --services "$n" --packets "$PACKETS" \
            --frame-size "$fs" --acl-rules "$ACL_RULES" --out "$dir"
        sed -i "s|^file_prefix = .*|file_prefix = \"seqd-bench\"|" "$dir/seqd.toml"
        : >"$dir/results.tsv"
        loads=""
        for round in $(seq 1 "$ROUNDS"); do
            load=$(cut -d' ' -f1 /proc/loadavg)
            loads="$loads $load"
            echo "-- round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
            warn_others
            run_seqd "$dir" "$round" || { rc=$?; [ "$rc" -eq 3 ] && FAILED=1 || exit 1; }
            run_testpmd "$dir" "$round" macswap || exit 1
            run_testpmd "$dir" "$round" io || exit 1
        done
        python3 - "$dir/results.tsv" "$n" "$fs" "$SUMMARY" "$loads" <<'PY'
import statistics, sys
results, n, fs, summary, loads = sys.argv[1:6]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
by, extra = {}, {}
for r in rows:
    by.setdefault(r[0], {})[r[1]] = float(r[2])
    if r[1] == "seqd":
        extra[r[0]] = dict(own=float(r[3]), cpp=float(r[4]), hz=int(r[5]), rss=int(r[6] or 0), hwm=int(r[7] or 0), tb=int(r[8] or 0))
hz = next(iter(extra.values()))["hz"]
print(f"{'round':>6}  {'seqd Mpps':>10}  {'own cyc/pkt':>11}  {'total cyc/pkt':>13}  {'macswap Mpps':>12}  {'io Mpps':>8}  {'seqd/macswap':>12}")
for rnd in sorted(by, key=int):
    r = by[rnd]
    print(f"{rnd:>6}  {r['seqd']:>10.2f}  {extra[rnd]['own']:>11.1f}  {extra[rnd]['cpp']:>13.1f}  {r['macswap']:>12.2f}  {r['io']:>8.2f}  {r['seqd'] / r['macswap']:>12.2f}")
med = {k: statistics.median(by[r][k] for r in by) for k in ("seqd", "macswap", "io")}
own = statistics.median(e["own"] for e in extra.values())
cpp = statistics.median(e["cpp"] for e in extra.values())
hwm = max(e["hwm"] for e in extra.values())
tb = statistics.median(e["tb"] for e in extra.values())
ratio = med["seqd"] / med["macswap"]
print(f"{'median':>6}  {med['seqd']:>10.2f}  {own:>11.1f}  {cpp:>13.1f}  {med['macswap']:>12.2f}  {med['io']:>8.2f}  {ratio:>12.2f}")
print(f"N={n} {fs}: seqd / testpmd-macswap = {ratio:.2f}, seqd / testpmd-io = {med['seqd'] / med['io']:.2f}; "
      f"testpmd cycles/packet: macswap {hz / med['macswap'] / 1e6:.0f}, io {hz / med['io'] / 1e6:.0f}; "
      f"peak RSS {hwm / 1024:.0f} MiB, tables {tb / int(n):.0f} B/service; load{loads}")
with open(summary, "a") as f:
    f.write("\t".join(map(str, [n, fs, f"{med['seqd']:.2f}", f"{own:.0f}", f"{cpp:.0f}", f"{med['macswap']:.2f}", f"{med['io']:.2f}", f"{ratio:.2f}", f"{hwm / 1024:.0f}", f"{tb / int(n):.0f}", loads.strip()])) + "\n")
PY
    done
done

echo
echo "== summary (medians of $ROUNDS rounds, ${SECONDS_RUN} s each, $PACKETS frames per pcap, $ACL_RULES ACL rules per service IP)"
python3 - "$SUMMARY" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ["N", "frames", "seqd Mpps", "own cyc/pkt", "total cyc/pkt", "macswap Mpps", "io Mpps", "seqd/macswap", "peak RSS MiB", "table B/service", "load (per round)"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---:|" * len(hdr))
for r in rows:
    print("| " + " | ".join(r) + " |")
# Throughput from the smallest to the largest N, per frame size.
by = {}
for r in rows:
    by.setdefault(r[1], []).append((int(r[0]), float(r[2])))
for fs, v in by.items():
    v.sort()
    if len(v) > 1:
        print(f"frames {fs}: N {v[0][0]} -> {v[-1][0]}: seqd {v[0][1]:.2f} -> {v[-1][1]:.2f} Mpps ({100 * (v[-1][1] / v[0][1] - 1):+.1f}%)")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FAILED" -ne 0 ]; then
    echo "FAIL: seqd dropped other frames than no_service and acl_deny, or not in the expected share (see the drops lines above)" >&2
    exit 1
fi
