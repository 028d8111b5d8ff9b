/* The DPDK headers seqd binds. Kept narrow: binding everything fails on AMX
 * types, packed ARP structs and rte_flow (see shared/DPDK-NOTES.md). */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_version.h>

#include "shim.h"
