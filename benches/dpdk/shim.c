/*
 * DPDK's route tables behind plain functions, for the route-lookup baseline
 * (benches/src/dpdk.rs, `--features dpdk`). DPDK's lookups are static inline
 * (rte_lpm_lookupx4, rte_lpm_lookup_bulk) or take mutable arrays, so each
 * lookup here takes a whole batch: the call costs once per batch, as a
 * worker's burst would, and the loop inside is DPDK's own code.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

/* rte_fib's 4-byte entries hold 31 bits, so its default next hop is the largest
 * of those; lookups turn it into UINT32_MAX, the bench's "no route". */
#define FIB_MISS 0x7fffffffu

/* Starts the EAL once: no PCI scan, no telemetry, nothing left in /var/run;
 * `huge` 0 runs on ordinary pages (--no-huge) with `mem_mib` of memory. */
int shim_eal_init(int huge, unsigned mem_mib, int avx512)
{
	char mem[32];
	char *argv[16];
	int argc = 0;
	snprintf(mem, sizeof(mem), "%u", mem_mib);
	argv[argc++] = "gateway-benches";
	argv[argc++] = "--no-pci";
	argv[argc++] = "--no-telemetry";
	argv[argc++] = "--log-level=error";
	argv[argc++] = "-l";
	argv[argc++] = "0";
	argv[argc++] = "-m";
	argv[argc++] = mem;
	/* --in-memory (no files, hugepage files unlinked) is refused with --no-huge,
	 * which keeps no files anyway; --no-shconf keeps the runtime config off disk. */
	argv[argc++] = huge ? "--in-memory" : "--no-huge";
	if (!huge)
		argv[argc++] = "--no-shconf";
	if (avx512)
		argv[argc++] = "--force-max-simd-bitwidth=512";
	argv[argc] = NULL;
	int rc = rte_eal_init(argc, argv);
	return rc < 0 ? -rte_errno : 0;
}

int shim_errno(void)
{
	return rte_errno;
}

/* ---- rte_fib, DIR-24-8, 4-byte entries ---- */

void *shim_fib4_new(const char *name, uint32_t max_routes, uint32_t tbl8)
{
	struct rte_fib_conf conf;
	memset(&conf, 0, sizeof(conf));
	conf.type = RTE_FIB_DIR24_8;
	conf.default_nh = FIB_MISS;
	conf.max_routes = (int)max_routes;
	conf.dir24_8.nh_sz = RTE_FIB_DIR24_8_4B;
	conf.dir24_8.num_tbl8 = tbl8;
	return rte_fib_create(name, SOCKET_ID_ANY, &conf);
}

int shim_fib4_add(void *fib, uint32_t ip, uint8_t depth, uint32_t nh)
{
	return rte_fib_add(fib, ip, depth, nh);
}

/* kind: 0 scalar (inlined per next-hop size), 1 AVX-512 vector. */
int shim_fib4_select(void *fib, int kind)
{
	return rte_fib_select_lookup(fib, kind ? RTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512
					       : RTE_FIB_LOOKUP_DIR24_8_SCALAR_INLINE);
}

/* n <= 64; answers as u32, UINT32_MAX for no route. */
void shim_fib4_lookup(void *fib, const uint32_t *ips, uint32_t *out, int n)
{
	uint64_t nh[64];
	rte_fib_lookup_bulk(fib, (uint32_t *)ips, nh, n);
	for (int i = 0; i < n; i++)
		out[i] = nh[i] == FIB_MISS ? UINT32_MAX : (uint32_t)nh[i];
}

void shim_fib4_free(void *fib)
{
	rte_fib_free(fib);
}

/* ---- rte_fib6, trie, 4-byte entries ---- */

void *shim_fib6_new(const char *name, uint32_t max_routes, uint32_t tbl8)
{
	struct rte_fib6_conf conf;
	memset(&conf, 0, sizeof(conf));
	conf.type = RTE_FIB6_TRIE;
	conf.default_nh = FIB_MISS;
	conf.max_routes = (int)max_routes;
	conf.trie.nh_sz = RTE_FIB6_TRIE_4B;
	conf.trie.num_tbl8 = tbl8;
	return rte_fib6_create(name, SOCKET_ID_ANY, &conf);
}

int shim_fib6_add(void *fib, const uint8_t *ip, uint8_t depth, uint32_t nh)
{
	return rte_fib6_add(fib, ip, depth, nh);
}

int shim_fib6_select(void *fib, int kind)
{
	return rte_fib6_select_lookup(fib, kind ? RTE_FIB6_LOOKUP_TRIE_VECTOR_AVX512
						: RTE_FIB6_LOOKUP_TRIE_SCALAR);
}

/* ips: n addresses of 16 bytes in network order; n <= 64. */
void shim_fib6_lookup(void *fib, const uint8_t *ips, uint32_t *out, int n)
{
	uint64_t nh[64];
	rte_fib6_lookup_bulk(fib, (uint8_t(*)[RTE_FIB6_IPV6_ADDR_SIZE])ips, nh, n);
	for (int i = 0; i < n; i++)
		out[i] = nh[i] == FIB_MISS ? UINT32_MAX : (uint32_t)nh[i];
}

void shim_fib6_free(void *fib)
{
	rte_fib6_free(fib);
}

/* ---- rte_lpm (l3fwd's table) ---- */

void *shim_lpm4_new(const char *name, uint32_t max_rules, uint32_t tbl8)
{
	struct rte_lpm_config conf = { .max_rules = max_rules, .number_tbl8s = tbl8, .flags = 0 };
	return rte_lpm_create(name, SOCKET_ID_ANY, &conf);
}

int shim_lpm4_add(void *lpm, uint32_t ip, uint8_t depth, uint32_t nh)
{
	return rte_lpm_add(lpm, ip, depth, nh);
}

/* l3fwd's path: four addresses a call to rte_lpm_lookupx4; n is a multiple of 4. */
void shim_lpm4_lookupx4(void *lpm, const uint32_t *ips, uint32_t *out, int n)
{
	for (int i = 0; i + 4 <= n; i += 4) {
		xmm_t v = _mm_loadu_si128((const __m128i *)(ips + i));
		rte_lpm_lookupx4(lpm, v, out + i, UINT32_MAX);
	}
}

int shim_lpm4_delete(void *lpm, uint32_t ip, uint8_t depth)
{
	return rte_lpm_delete(lpm, ip, depth);
}

void shim_lpm4_free(void *lpm)
{
	rte_lpm_free(lpm);
}

/* ---- RCU (QSBR): rte_lpm's mode for lookups while the table is written ---- */

/* A QSBR variable for `readers` reader threads, attached to `lpm` in the
 * defer-queue mode (tbl8 groups a delete frees are reused once every reader
 * has reported a quiescent state; the writer never waits). */
void *shim_lpm4_rcu(void *lpm, uint32_t readers)
{
	size_t size = rte_rcu_qsbr_get_memsize(readers);
	struct rte_rcu_qsbr *v = rte_zmalloc("lpm4-qsbr", size, RTE_CACHE_LINE_SIZE);
	if (v == NULL)
		return NULL;
	struct rte_lpm_rcu_config cfg = { .v = v, .mode = RTE_LPM_QSBR_MODE_DQ };
	if (rte_rcu_qsbr_init(v, readers) != 0 || rte_lpm_rcu_qsbr_add(lpm, &cfg) != 0) {
		rte_free(v);
		return NULL;
	}
	return v;
}

int shim_qsbr_online(void *v, unsigned int id)
{
	int rc = rte_rcu_qsbr_thread_register(v, id);
	if (rc == 0)
		rte_rcu_qsbr_thread_online(v, id);
	return rc;
}

void shim_qsbr_quiescent(void *v, unsigned int id)
{
	rte_rcu_qsbr_quiescent(v, id);
}

void shim_qsbr_offline(void *v, unsigned int id)
{
	rte_rcu_qsbr_thread_offline(v, id);
	rte_rcu_qsbr_thread_unregister(v, id);
}

/* ---- rte_lpm6 ---- */

void *shim_lpm6_new(const char *name, uint32_t max_rules, uint32_t tbl8)
{
	struct rte_lpm6_config conf = { .max_rules = max_rules, .number_tbl8s = tbl8, .flags = 0 };
	return rte_lpm6_create(name, SOCKET_ID_ANY, &conf);
}

int shim_lpm6_add(void *lpm, const uint8_t *ip, uint8_t depth, uint32_t nh)
{
	return rte_lpm6_add(lpm, ip, depth, nh);
}

/* Misses come back as UINT32_MAX (rte_lpm6 writes -1). */
void shim_lpm6_lookup(void *lpm, const uint8_t *ips, uint32_t *out, int n)
{
	int32_t nh[64];
	rte_lpm6_lookup_bulk_func(lpm, (uint8_t(*)[RTE_LPM6_IPV6_ADDR_SIZE])ips, nh, n);
	for (int i = 0; i < n; i++)
		out[i] = (uint32_t)nh[i];
}

void shim_lpm6_free(void *lpm)
{
	rte_lpm6_free(lpm);
}
