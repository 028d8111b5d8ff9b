#!/usr/bin/env bash
# /metrics scrape time and size with N services, through the real binary.
#
#   bash benches/scrape.sh [SERVICES] [ROUNDS]      # default 100000 5
#   SEQD=/path/to/other/seqd bash benches/scrape.sh # compare another build
#   PORT=19464 OUT=/tmp/seqd-scrape                 # control port, work dir
#
# Writes the gen-traffic.py config for SERVICES services (its pcap replays
# forever, so the worker is busy and the counters move), gives it a unique
# file_prefix and a [control] listen address, starts seqd, waits for
# /healthz, then times ROUNDS scrapes with curl and prints each and the
# median. It also times GET /healthz while a scrape is in flight (the REST
# side must not wait for the scrape), and prints seqd's peak RSS. seqd and
# /var/run/dpdk/<prefix> are removed on exit, whatever happened. Assumes
# scripts/setup.sh has run and seqd is built (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
ROUNDS=${2:-5}
PORT=${PORT:-19464}
SEQD=${SEQD:-target/release/seqd}
OUT=${OUT:-/tmp/seqd-scrape}
PREFIX="seqd-scrape-$$"
URL="http://127.0.0.1:$PORT"

pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "/var/run/dpdk/$PREFIX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 scripts/gen-traffic.py --services "$N" --packets 8192 --out "$OUT"
sed -i "s/^file_prefix = .*/file_prefix = \"$PREFIX\"/" "$OUT/seqd.toml"
printf '\n[control]\nlisten = "127.0.0.1:%s"\n' "$PORT" >>"$OUT/seqd.toml"

echo "scrape: $SEQD ($("$SEQD" --version 2>/dev/null || echo '?')), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$SEQD" --config "$OUT/seqd.toml" 2>"$OUT/seqd.log" &
pid=$!
for _ in $(seq 1200); do
  curl -sf "$URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "seqd exited:" >&2; tail -5 "$OUT/seqd.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf "$URL/healthz" >/dev/null || { echo "seqd did not answer on $URL" >&2; exit 1; }

# One scrape kept for inspection (and promtool), not timed.
curl -s -o "$OUT/metrics.txt" "$URL/metrics"
times=()
for r in $(seq "$ROUNDS"); do
  t=$(curl -s -o /dev/null -w '%{time_total} %{size_download}' "$URL/metrics")
  echo "scrape $r: ${t% *} s, ${t#* } bytes"
  times+=("$t")
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { printf "median: %s s, %s bytes (%d services)\n", $1, $2, '"$N"' }'

# /healthz while a scrape is in flight.
curl -s -o /dev/null "$URL/metrics" &
scrape=$!
sleep 0.05
curl -s -o /dev/null -w 'healthz during a scrape: %{time_total} s\n' "$URL/healthz"
wait "$scrape"
grep VmHWM "/proc/$pid/status" | awk '{ printf "seqd peak RSS: %d MB\n", $2 / 1024 }'
