#!/usr/bin/env bash
# The end-to-end lab: real Linux hosts in network namespaces around one seqd.
#
#   e2e-topology.sh up TAG     create the lab sqe-TAG-* (tears down what it made if it fails)
#   e2e-topology.sh down TAG   remove it again: its processes, namespaces (and so
#                              their veths) and /var/run/dpdk/sqe-TAG
#   e2e-topology.sh reap       remove every lab whose TAG starts with the pid of a
#                              process that no longer runs (left by a killed test)
#
# conf/e2e.toml mirrors this file: every address and MAC below is named there.
#
#   cl1 198.18.1.2 ─┐                       ┌─ seqd ──────────────────────────┐
#   cl2 198.18.2.2 ─┴─ router ── 192.0.2.0/24 ── client   devices    servers  │
#                     .254           (seqd .1)└───────────┬──────────┬────────┘
#                                                         │          │
#                         switch namespace:   br-dev 198.51.100.0/24 │  br-srv 198.51.101.0/24
#                                               fw1 .10 (client leg) │   fw1 .10 (server leg)
#                                               fw2 .20 (client leg) │   fw2 .20 (server leg)
#                                               ids1 (no address,    │   weblo .30  (203.0.113.10 on lo)
#                                                     only copies)   │   webalias .31 (203.0.113.11 alias, no ARP)
#                                                                    │   webnat .32 (own address only)
#                                                                    │   udp1 .33   (own address only)
#
# seqd runs in sqe-TAG-seqd with net_af_packet on its veth ends "client",
# "devices" and "servers"; those carry no kernel address there, so only seqd
# answers on them. Names of namespaces are unique per TAG; veths are created
# directly inside their namespaces, so their short names never collide with
# another lab's or the host's.
set -euo pipefail

ROLES=(seqd sw router cl1 cl2 fw1 fw2 ids1 weblo webalias webnat udp1)

ns() { echo "sqe-$TAG-$1"; }
# Runs a command inside a role's namespace.
inns() {
  local r=$1
  shift
  ip netns exec "$(ns "$r")" "$@"
}

# A veth pair from role A (name a) to role B (name b), with a fixed MAC on
# each end (empty: the kernel's), up, and without checksum or segmentation
# offloads: af_packet hands seqd frames exactly as the sender's kernel left
# them, so a checksum left to "hardware" would stay wrong through seqd.
veth() {
  local ra=$1 a=$2 maca=$3 rb=$4 b=$5 macb=$6
  ip link add "$a" netns "$(ns "$ra")" type veth peer name "$b" netns "$(ns "$rb")"
  [ -z "$maca" ] || ip -n "$(ns "$ra")" link set "$a" address "$maca"
  [ -z "$macb" ] || ip -n "$(ns "$rb")" link set "$b" address "$macb"
  for end in "$ra:$a" "$rb:$b"; do
    inns "${end%%:*}" ethtool -K "${end#*:}" tx off rx off tso off gso off gro off >/dev/null 2>&1 || {
      echo "e2e-topology: cannot turn offloads off on ${end#*:} in $(ns "${end%%:*}")" >&2
      return 1
    }
    ip -n "$(ns "${end%%:*}")" link set "${end#*:}" up
  done
}

# A host on one of seqd's device subnets: one leg into a bridge of the switch.
to_switch() {
  local role=$1 dev=$2 mac=$3 bridge=$4 port=$5
  veth "$role" "$dev" "$mac" sw "$port" ""
  ip -n "$(ns sw)" link set "$port" master "$bridge"
}

up() {
  for r in "${ROLES[@]}"; do
    ip netns add "$(ns "$r")"
    # No IPv6: its router solicitations and neighbour discovery would only
    # be counted as drops by seqd and blur the counters the tests read.
    inns "$r" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$(ns "$r")" link set lo up
  done

  # The switch: one bridge per seqd device interface.
  for br in br-dev br-srv; do
    ip -n "$(ns sw)" link add "$br" type bridge
    ip -n "$(ns sw)" link set "$br" up
  done

  # seqd's three interfaces. The MACs are what conf/e2e.toml expects
  # (net_af_packet ports take their veth's MAC).
  veth seqd client 02:00:00:00:01:01 router r-seqd 02:00:00:00:fe:fe
  veth seqd devices 02:00:00:00:02:02 sw seqd-dev ""
  veth seqd servers 02:00:00:00:03:03 sw seqd-srv ""
  ip -n "$(ns sw)" link set seqd-dev master br-dev
  ip -n "$(ns sw)" link set seqd-srv master br-srv

  # The router: clients behind it, seqd (the service IPs) in front.
  ip -n "$(ns router)" addr add 192.0.2.254/24 dev r-seqd
  inns router sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  for i in 1 2; do
    veth router "r-cl$i" "" "cl$i" eth0 ""
    ip -n "$(ns router)" addr add "198.18.$i.1/24" dev "r-cl$i"
    ip -n "$(ns "cl$i")" addr add "198.18.$i.2/24" dev eth0
    ip -n "$(ns "cl$i")" route add default via "198.18.$i.1"
    # A receive window of at most 1 MB: one download's packets in flight
    # then always fit seqd's 4096-frame af_packet rings, whose overflow
    # nobody counts, so the tests can hold counters of adjacent hops equal.
    inns "cl$i" sysctl -q -w net.ipv4.tcp_rmem="4096 131072 1048576"
  done
  # seqd answers ARP for its own address and for every service IP.
  ip -n "$(ns router)" route add 203.0.113.0/24 via 192.0.2.1
  # What the router forwards to and from the services (IP bytes, at the
  # forward hook): the tests compare seqd's service counters with these.
  inns router nft -f - <<'NFT'
table ip acct {
  counter to_acme_lo {}
  counter from_acme_lo {}
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip daddr 203.0.113.10 counter name to_acme_lo
    ip saddr 203.0.113.10 counter name from_acme_lo
  }
}
NFT

  # Two firewalls with two legs each: forward between them, drop TCP 8081.
  for i in 1 2; do
    local fw="fw$i"
    to_switch "$fw" eth0 "52:54:00:00:0$i:10" br-dev "$fw-c"
    to_switch "$fw" eth1 "52:54:00:00:0$i:11" br-srv "$fw-s"
    ip -n "$(ns "$fw")" addr add "198.51.100.${i}0/24" dev eth0
    ip -n "$(ns "$fw")" addr add "198.51.101.${i}0/24" dev eth1
    # Toward the services through seqd's servers interface, toward the
    # clients through its devices interface: seqd picks up from there.
    ip -n "$(ns "$fw")" route add 203.0.113.0/24 via 198.51.101.1 dev eth1
    ip -n "$(ns "$fw")" route add 198.18.0.0/15 via 198.51.100.1 dev eth0
    inns "$fw" sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
      net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0
    inns "$fw" nft -f - <<'NFT'
table inet fw {
  counter forwarded {}
  counter blocked {}
  chain forward {
    type filter hook forward priority 0; policy accept;
    tcp dport 8081 counter name blocked drop
    counter name forwarded
  }
}
NFT
  done

  # The IDS: only a leg, no address; it receives copies and sends nothing.
  # Its MAC is never learnt by the bridge (it never sends), so it is static.
  to_switch ids1 eth0 52:54:00:00:04:10 br-dev ids1
  ip netns exec "$(ns sw)" bridge fdb add 52:54:00:00:04:10 dev ids1 master static

  # Application servers on the servers subnet; replies go back through seqd.
  local name ip mac
  for spec in weblo:30 webalias:31 webnat:32 udp1:33; do
    name=${spec%%:*}
    ip=198.51.101.${spec#*:}
    mac=52:54:00:00:00:${spec#*:}
    to_switch "$name" eth0 "$mac" br-srv "$name"
    ip -n "$(ns "$name")" addr add "$ip/24" dev eth0
    ip -n "$(ns "$name")" route add default via 198.51.101.1
  done
  # Loopback mode: the service IP on lo; the usual direct-routing sysctls so
  # the server never answers ARP for it or uses it as an ARP source.
  ip -n "$(ns weblo)" addr add 203.0.113.10/32 dev lo
  inns weblo sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  # Alias mode: the service IP on eth0 itself, ARP for it disabled.
  ip -n "$(ns webalias)" addr add 203.0.113.11/32 dev eth0
  inns webalias sysctl -q -w net.ipv4.conf.all.arp_announce=2
  inns webalias nft -f - <<'NFT'
table arp noarp {
  chain input {
    type filter hook input priority 0; policy accept;
    arp operation request arp daddr ip 203.0.113.11 drop
  }
}
NFT
  # webnat and udp1 (NAT mode) hold only their own address.
}

down() {
  local n
  for n in $(ip netns list | awk '{print $1}' | grep -E "^sqe-$TAG-" || true); do
    # The lab's processes (servers, captures, seqd, prometheus) die with it:
    # a namespace with a process left in it would outlive `ip netns del`.
    for pid in $(ip netns pids "$n" 2>/dev/null); do
      kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "/var/run/dpdk/sqe-$TAG"
}

case "${1:-}" in
  up)
    TAG=${2:?usage: e2e-topology.sh up TAG}
    # Half a lab is no use to anyone: remove what was made if a step fails.
    trap 'rc=$?; [ "$rc" -eq 0 ] || down; exit "$rc"' EXIT
    up
    ;;
  down)
    TAG=${2:?usage: e2e-topology.sh down TAG}
    down
    ;;
  reap)
    for t in $(ip netns list | awk '{print $1}' | sed -nE 's/^sqe-([0-9]+[a-z]*)-.*/\1/p' | sort -u); do
      pid=${t%%[a-z]*}
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "e2e-topology: removing lab $t (its process $pid is gone)"
        TAG=$t down
      fi
    done
    for d in /var/run/dpdk/sqe-[0-9]*; do
      [ -e "$d" ] || continue
      t=${d#/var/run/dpdk/sqe-}
      pid=${t%%[a-z]*}
      kill -0 "$pid" 2>/dev/null || rm -rf "$d"
    done
    ;;
  *)
    echo "usage: e2e-topology.sh up TAG | down TAG | reap" >&2
    exit 2
    ;;
esac
