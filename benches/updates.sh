#!/usr/bin/env bash
# Updates under load: seqd forwards the benchmark traffic at full rate on one
# worker while a client changes one service's ACL over REST RATE times a
# second for SECONDS; then reports packets lost, the throughput dip and the
# time from a REST reply until every worker runs the new version.
#
#   bash benches/updates.sh [N_SERVICES] [SECONDS] [RATE]   (defaults 10000 30 100)
#
# Environment: SEQD (default target/release/seqd, built if missing),
# PACKETS (default 32768), ACL_RULES (default 10).
#
# Each change alternates one service's ACL between its 10 generated rules
# and the same plus a rule (priority 5, deny 203.0.113.128/25) that no
# benchmark packet matches, so both versions forward (and deny) exactly the
# same packets: every loss is a loss to the update. At the end:
#   - loss: rx - tx - no_service - acl_deny (must be 0), other drop reasons,
#     and the no_service / acl_deny shares against the pcap's;
#   - throughput: the worker's rx rate per 200 ms window (GET /v1/stats)
#     during the changes, against the 3 s before them: median and minimum;
#   - switch time: after every 10th reply, GET /v1/stats until every
#     worker's table_version is the replied version; the figure includes
#     one stats round trip (its own time is printed beside it);
#   - the control side's publish_us per change (compile, keep in
#     state_dir, publish), from seqd's log, and its compile_us and
#     persist_us parts.
# Nothing is left in /var/run/dpdk/seqd-upd*, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
SECONDS_RUN=${2:-30}
RATE=${3:-100}
PACKETS=${PACKETS:-32768}
ACL_RULES=${ACL_RULES:-10}
DIR=/tmp/seqd-updates
PREFIX=seqd-upd-$$
PORT=$((19000 + $$ % 1000))

PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -INT "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "/var/run/dpdk/$PREFIX"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${SEQD:-}" ]; then
    cargo build --release
    SEQD=target/release/seqd
fi

rm -rf "$DIR"
mkdir -p "$DIR"
python3 scripts/gen-traffic.py --services "$N" --packets "$PACKETS" --acl-rules "$ACL_RULES" --out "$DIR"
sed -i "s/^file_prefix = .*/file_prefix = \"$PREFIX\"/" "$DIR/seqd.toml"
# Every accepted change is kept in state_dir before its reply, as it is in
# production: the figures include that.
printf '\n[control]\nlisten = "127.0.0.1:%s"\nstate_dir = "%s/state"\n' "$PORT" "$DIR" >>"$DIR/seqd.toml"
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg); $(pgrep -c 'cargo|rustc' || true) cargo/rustc processes running"
"$SEQD" --config "$DIR/seqd.toml" --stats-file "$DIR/stats.json" 2>"$DIR/seqd.log" &
PID=$!

python3 - "$PORT" "$N" "$SECONDS_RUN" "$RATE" "$DIR" <<'PY'
import http.client, json, statistics, sys, time
port, n, secs, rate, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
meta = json.load(open(f"{d}/traffic.json"))

def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

c = conn()
t0 = time.time()
while True:
    try:
        c.request("GET", "/healthz"); r = c.getresponse(); r.read()
        if r.status == 200:
            break
    except OSError:
        c = conn()
    if time.time() - t0 > 300:
        sys.exit("seqd did not come up")
    time.sleep(0.2)

def stats():
    t = time.time()
    c.request("GET", "/v1/stats"); r = c.getresponse(); body = r.read()
    s = json.loads(body)
    return t, time.time() - t, s

def rx(s):
    return sum(w["rx_packets"] for w in s["workers"])

# Warm up, then the rate before any change.
time.sleep(2)
samples = []
for _ in range(15):
    t, rtt, s = stats(); samples.append((t, rx(s))); time.sleep(0.2)
before = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:])]

# The service ACLs as seqd has them now.
svc_names = [f"svc-{i:06d}" for i in range(meta["service_ips"])]
orig = {}
upd = conn()
def put_acl(name, extra):
    if name not in orig:
        upd.request("GET", f"/v1/services/{name}/acl"); r = upd.getresponse(); orig[name] = json.loads(r.read())
    body = json.loads(json.dumps(orig[name]))
    if extra:
        body[0]["rule"].insert(0, {"priority": 5, "src": "203.0.113.128/25", "action": "deny"})
    data = json.dumps(body)
    t = time.time()
    upd.request("PUT", f"/v1/services/{name}/acl", body=data, headers={"Content-Type": "application/json"})
    r = upd.getresponse(); out = r.read()
    if r.status != 200:
        sys.exit(f"PUT {name}: {r.status} {out[:300]!r}")
    return t, time.time(), json.loads(out)

replies, switches, rtts, during = [], [], [], []
last = (time.time(), rx(stats()[2]))
start = time.time()
k = 0
while time.time() - start < secs:
    due = start + k / rate
    if time.time() < due:
        time.sleep(due - time.time())
    name = svc_names[(k // 2) % len(svc_names)]
    t_req, t_rep, out = put_acl(name, k % 2 == 0)
    replies.append(t_rep - t_req)
    version = out.get("record", out).get("version") if isinstance(out, dict) else None
    if k % 10 == 0 and version is not None:
        while True:
            t, rtt, s = stats()
            if all(w["table_version"] >= version for w in s["workers"]):
                switches.append(t + rtt - t_rep); rtts.append(rtt)
                break
        now = (t + rtt, rx(s))
        during.append((now[1] - last[1]) / (now[0] - last[0])); last = now
    k += 1
elapsed = time.time() - start
med = lambda v: statistics.median(v) if v else float("nan")
print(f"changes: {k} in {elapsed:.1f} s ({k / elapsed:.0f}/s); REST reply median {1e3 * med(replies):.1f} ms, max {1e3 * max(replies):.1f} ms")
print(f"throughput before: median {med(before) / 1e6:.2f} Mpps; during changes (per ~100 ms window): median {med(during) / 1e6:.2f}, "
      f"min {min(during) / 1e6:.2f} Mpps -> dip {100 * (1 - min(during) / med(before)):.1f}% (median {100 * (1 - med(during) / med(before)):.1f}%)")
print(f"reply -> all workers on the new version: median {1e3 * med(switches):.1f} ms, max {1e3 * max(switches):.1f} ms "
      f"(includes one GET /v1/stats: median {1e3 * med(rtts):.1f} ms)")
PY

kill -INT "$PID"
wait "$PID" || true
PID=""
rm -rf "/var/run/dpdk/$PREFIX"
python3 - "$DIR" <<'PY'
import json, re, statistics, sys
d = sys.argv[1]
s = json.load(open(f"{d}/stats.json")); meta = json.load(open(f"{d}/traffic.json"))
w = s["workers"][0]
rx, tx = w["rx_packets"], w["tx_packets"]
drops = {k: v for k, v in s["drops"].items() if v}
ns, deny = drops.pop("no_service", 0), drops.pop("acl_deny", 0)
lost = rx - tx - ns - deny
print(f"packets: rx {rx}, tx {tx}, no_service {ns} ({100 * ns / rx:.3f}%, pcap {100 * meta['no_service'] / meta['packets']:.3f}%), "
      f"acl_deny {deny} ({100 * deny / rx:.3f}%, pcap {100 * meta['acl_deny'] / meta['packets']:.3f}%), other drops {drops or 'none'}")
print(f"LOST to updates: {lost + sum(drops.values())}")
pub = [int(x) for x in re.findall(r"publish_us=(\d+)", open(f"{d}/seqd.log", errors="replace").read())]
if pub:
    print(f"control side per change (compile, keep, publish): median {statistics.median(pub) / 1e3:.1f} ms, max {max(pub) / 1e3:.1f} ms over {len(pub)} changes")
    log = open(f"{d}/seqd.log", errors="replace").read()
    for part in ("compile_us", "persist_us"):
        v = [int(x) for x in re.findall(part + r"=(\d+)", log)]
        if v:
            print(f"  of which {part[:-3]}: median {statistics.median(v) / 1e3:.1f} ms, max {max(v) / 1e3:.1f} ms")
sys.exit(1 if lost or drops else 0)
PY
