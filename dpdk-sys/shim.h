/* Out-of-line entry points for DPDK's static inline functions, macros and
 * thread-local rte_errno, which bindgen cannot bind directly. */
#ifndef SEQD_DPDK_SHIM_H
#define SEQD_DPDK_SHIM_H
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

int seqd_rte_errno(void);
unsigned seqd_rte_lcore_id(void);
uint64_t seqd_rte_rdtsc(void);
uint64_t seqd_rte_get_tsc_hz(void);
uint16_t seqd_rte_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t seqd_rte_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *seqd_rte_pktmbuf_alloc(struct rte_mempool *mp);
void seqd_rte_pktmbuf_free(struct rte_mbuf *m);
void seqd_rte_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned n);
struct rte_mbuf *seqd_rte_pktmbuf_clone(struct rte_mbuf *m, struct rte_mempool *mp);
char *seqd_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *seqd_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *seqd_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int seqd_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
unsigned seqd_rte_mempool_avail_count(const struct rte_mempool *mp);
void seqd_rte_prefetch0(const void *p);
#endif
