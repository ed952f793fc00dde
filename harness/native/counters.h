/* What the client counts, the same way in every loop: requests sent,
 * answered, lost; the statuses of the answers and the operations answered
 * (as the reply names them); and the round trips of those
 * answered OK, in a log-linear histogram. Only requests first sent inside
 * the measured window count (harness/loadgen.py sets it). */
#ifndef NATIVE_COUNTERS_H
#define NATIVE_COUNTERS_H

#include "common.h"

/* Latency histogram: exact below 2^11 ns, then 1024 buckets per power of
 * two (relative error under 1/2048) up to 2^40 ns. */
#define HIST_SUB_BITS 10
#define HIST_EXACT (1u << (HIST_SUB_BITS + 1))
#define HIST_MAX_SHIFT 29
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_SHIFT) * (1u << HIST_SUB_BITS))

struct counts {
	uint64_t win_from, win_until; /* a request first sent in [from, until) is recorded */
	uint64_t sent, send_failed, retransmits, replies, ok, err_status, lost, stray, rec_started, busy;
	uint64_t wait_ns;
	uint64_t status_counts[256];
	uint64_t op_counts[256]; /* answered (any status), by operation: answered_by_op */
	uint64_t *hist; /* round trips of recorded requests answered OK */
};

static inline int in_window(const struct counts *c, uint64_t t)
{
	return t >= c->win_from && t < c->win_until;
}

static inline uint32_t hist_index(uint64_t v)
{
	if (v < HIST_EXACT)
		return (uint32_t)v;
	uint32_t shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return (shift << HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

static inline uint64_t hist_value(uint32_t idx)
{
	if (idx < HIST_EXACT)
		return idx;
	uint32_t shift = (idx >> HIST_SUB_BITS) - 1;
	uint64_t base = (uint64_t)(idx - (shift << HIST_SUB_BITS)) << shift;
	return base + (1ull << (shift - 1)); /* bucket midpoint */
}

/* An empty histogram; NULL with MemoryError set. */
uint64_t *hist_new(void);

/* Counts the answer (status) to a request (op) first sent at first_ns. */
static inline void count_answer(struct counts *c, int recorded, uint8_t op, uint8_t status, uint64_t first_ns,
				uint64_t t)
{
	if (!recorded)
		return;
	c->status_counts[status]++;
	c->op_counts[op]++;
	if (status == DINT_ST_OK) {
		c->ok++;
		c->hist[hist_index(t - first_ns)]++;
	} else {
		c->err_status++;
	}
}

/* set_window(from_ns, until_ns) of every loop. */
PyObject *counts_set_window(struct counts *c, PyObject *args);

/* d[key] = v, taking the reference to v, which may be NULL (an exception
 * set by what made it): -1 then, or if the dict refuses it. */
int dict_put(PyObject *d, const char *key, PyObject *v);

/* {i: counts[i]} of the nonzero ones. */
PyObject *counts_dict(const uint64_t *counts, int n);

/* The counters as a dict; the caller adds its own. */
PyObject *counts_stats(const struct counts *c, uint32_t inflight, int gso);

/* [(latency_ns, count)] of the nonempty buckets; [] for no histogram. */
PyObject *hist_pairs(const uint64_t *hist);

#endif
