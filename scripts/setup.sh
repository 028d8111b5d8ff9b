#!/usr/bin/env bash
# Installs what seqd needs to build, test and run its demo on a Debian 12
# machine with the Rust toolchain. Idempotent: installs only what is missing.
set -euo pipefail

PKGS=(
  dpdk dpdk-dev libdpdk-dev   # DPDK 22.11 runtime, PMDs (net_pcap, net_null, net_af_packet, net_tap), headers
  pkg-config clang libclang-dev  # bindgen finds libdpdk with pkg-config and parses it with libclang
  gcc                         # the C shim for DPDK's static inline functions
  python3 tcpdump             # the demo writes its input pcap with python and prints outputs with tcpdump
  prometheus                  # promtool: tests/metrics.rs checks a real /metrics scrape with `promtool check metrics`
  iproute2 procps nftables ethtool curl  # the end-to-end lab (scripts/e2e-topology.sh, tests/e2e; it also runs prometheus)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pkg-config --exists libdpdk; then
  echo "setup: pkg-config cannot find libdpdk after install" >&2
  exit 1
fi

# seqd's tests and demo run DPDK with --no-huge (see conf/pcap-demo.toml), so
# no hugepages are reserved here. A production config with hugepages = true
# needs them reserved and hugetlbfs mounted by the operator.
mkdir -p /var/run/dpdk
echo "setup: ok (DPDK $(pkg-config --modversion libdpdk), $(cargo --version))"
