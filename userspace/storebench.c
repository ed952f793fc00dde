/* The baselines' store (store.h) driven one request at a time, for
 * `python -m harness xdpbench --systems store` (harness/xdpbench.py): the
 * very call the kernel and bypass servers make on a datagram they received
 * (dint_process on the request in place, then dint_reply_len), timed with
 * CLOCK_MONOTONIC around it, without the network. Built by the Makefile
 * into build/storebench.so and loaded with ctypes; one thread. */
#define _GNU_SOURCE
#include "server_common.h"

static uint64_t sb_stats[DINT_STAT_MAX];

static inline uint64_t sb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* An empty store of capacity records and a log of log_capacity, with
 * exactly-once state for clients client slots; -1 if out of memory. */
int sb_init(uint64_t capacity, uint64_t log_capacity, uint32_t clients)
{
	return store_init(capacity, log_capacity, clients);
}

/* Records 0..n-1 of table, live at version 1 with value (the table's size),
 * as a snapshot's load makes them; -1 if the store is full. */
int sb_fill(uint8_t table, uint64_t n, const uint8_t *value)
{
	for (uint64_t k = 0; k < n; k++) {
		struct store_entry *e = store_get(table, k, 1);

		if (!e)
			return -1;
		e->rec.live = 1;
		e->rec.ver = 1;
		memcpy(e->rec.value, value, DINT_VSIZE(table));
	}
	return 0;
}

/* Whether (table, key) has a record, live or a tombstone. */
int sb_exists(uint8_t table, uint64_t key)
{
	return store_get(table, key, 0) != NULL;
}

/* One request of len bytes at msg, answered in place as a server answers
 * it; *ns: the time it took. Returns the reply's length (0: none). */
uint32_t sb_run(uint8_t *msg, uint32_t len, uint64_t *ns)
{
	uint64_t t0 = sb_now();
	uint32_t n = dint_reply_len(dint_process((struct dint_hdr *)msg, msg + len, len), len, sb_stats);

	*ns = sb_now() - t0;
	return n;
}

static __attribute__((noinline)) uint32_t sb_nothing(uint8_t *msg, uint32_t len)
{
	__asm__ __volatile__("" : : "r"(msg) : "memory");
	return len;
}

/* The floor: sb_run's timing around a call that does nothing. */
uint32_t sb_null(uint8_t *msg, uint32_t len, uint64_t *ns)
{
	uint64_t t0 = sb_now();
	uint32_t n = sb_nothing(msg, len);

	*ns = sb_now() - t0;
	return n;
}

/* Empties the log (the servers write it out at stop). */
void sb_log_reset(void)
{
	store.log_n = 0;
}

/* Bytes the store holds per record of its capacity: its record, its id and
 * its index slots (at least two per record). */
uint64_t sb_bytes(void)
{
	return store.cap * (sizeof(*store.recs) + sizeof(*store.ids)) + (store.mask + 1) * sizeof(*store.slots);
}

void sb_free(void)
{
	store_free();
}
