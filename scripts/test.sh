#!/usr/bin/env bash
# Sets itself up and runs every test of seqd: format, lints, unit tests and
# the integration tests that run the real seqd binary on DPDK net_pcap ports.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# The end-to-end tests (tests/e2e) remove their network namespaces
# themselves, pass or fail; a test killed outright cannot. Remove the labs of
# test processes that are gone, now and whatever way this script ends.
bash scripts/e2e-topology.sh reap
trap 'bash scripts/e2e-topology.sh reap' EXIT

start=$(date +%s)
cargo fmt --all -- --check
# One release build serves clippy's checks, the unit tests and the
# integration tests (which run target/release/seqd).
cargo build --release --workspace --all-targets
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace -- --test-threads=2
echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
