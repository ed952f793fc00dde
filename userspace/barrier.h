/* The checkpoint barrier (DINT_OP_CHECKPOINT, engine/dint_proto.h), as
 * every server's frontend answers it: the kernel server's workers and dint's
 * slow path in udp_server.h, the DPDK server in its poll loop. A barrier
 * request is answered here, before the engine, and counted in none of the
 * engine's counters (the clients do not count it either): only in the
 * checkpoint line's "barrier_rx".
 *
 * The clients of a point each send CHECKPOINT(e, n, index) once their
 * point is drained, and poll (send it again every few ms) until it is
 * answered OK; they start the next point only then. The server records the
 * arrivals of epoch done+1; the arrival that completes it makes the
 * frontend take the checkpoint of epoch e (barrier_complete: the stats line,
 * the files at <path>.<e>, the checkpoint line with "epoch": e), as SIGUSR2
 * takes one, and barrier_done() marks it taken once its files are written
 * (whether or not that succeeded: the line then says ok false). Until then
 * every arrival of epoch e is answered RETRY. So the checkpoint holds
 * exactly what happened before the barrier completed: every participant's
 * point was drained before it arrived, and none starts its next point
 * before its OK. */
#ifndef BARRIER_H
#define BARRIER_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dint_proto.h"

struct barrier {
	pthread_mutex_t mu;             /* the kernel server's workers answer at once */
	uint64_t done;                  /* the last epoch whose checkpoint was taken (0: none) */
	uint32_t n;                     /* participants of epoch done+1, from its first arrival (0: none yet) */
	uint32_t arrived;               /* ... how many of them have */
	uint64_t bits[DINT_BARRIER_MAX / 64]; /* ... which */
	_Atomic uint64_t pending;       /* epoch done+1 once complete, until its checkpoint is taken; else 0 */
	_Atomic uint64_t rx;            /* barrier requests answered */
	/* Called by the arrival that completes epoch e (under the mutex): asks
	 * for the checkpoint (wakes whoever takes it). NULL: the frontend
	 * polls barrier_pending(). */
	void (*complete)(uint64_t e);
};

#define BARRIER_INIT(complete_fn) { .mu = PTHREAD_MUTEX_INITIALIZER, .complete = (complete_fn) }

/* Answers the barrier request h of len bytes (dint_is_control) in place,
 * setting its status; the reply is the whole datagram. */
static inline void barrier_answer(struct barrier *b, struct dint_hdr *h, uint32_t len)
{
	uint64_t e = dint_ntohll(h->key), idx = dint_ntohll(h->txn);
	uint32_t n = dint_ntohl(h->ver);
	uint8_t st;

	atomic_fetch_add_explicit(&b->rx, 1, memory_order_relaxed);
	if (len != DINT_HDR_LEN || h->val_len) {
		h->status = DINT_ST_BAD_LENGTH;
		return;
	}
	if (!e || !n || n > DINT_BARRIER_MAX || idx >= n) {
		h->status = DINT_ST_BAD_REQUEST;
		return;
	}
	pthread_mutex_lock(&b->mu);
	if (e <= b->done) {
		st = DINT_ST_OK;
	} else if (e > b->done + 1) {
		st = DINT_ST_RETRY; /* an epoch ahead: nothing recorded */
	} else if (b->n && n != b->n) {
		st = DINT_ST_BAD_REQUEST;
	} else {
		st = DINT_ST_RETRY;
		b->n = n;
		if (!(b->bits[idx / 64] >> (idx % 64) & 1)) {
			b->bits[idx / 64] |= 1ull << (idx % 64);
			if (++b->arrived == n) {
				atomic_store(&b->pending, e);
				if (b->complete)
					b->complete(e);
			}
		}
	}
	pthread_mutex_unlock(&b->mu);
	h->status = st;
}

/* The epoch whose checkpoint is to be taken now, or 0. */
static inline uint64_t barrier_pending(struct barrier *b)
{
	return atomic_load_explicit(&b->pending, memory_order_acquire);
}

/* The checkpoint of epoch e (barrier_pending()) is taken: its files are
 * written (or failed to be); its arrivals are answered OK from now on. */
static inline void barrier_done(struct barrier *b, uint64_t e)
{
	pthread_mutex_lock(&b->mu);
	if (e == b->done + 1 && atomic_load(&b->pending) == e) {
		b->done = e;
		b->n = 0;
		b->arrived = 0;
		memset(b->bits, 0, sizeof(b->bits));
		atomic_store(&b->pending, 0);
	}
	pthread_mutex_unlock(&b->mu);
}

static inline uint64_t barrier_rx(struct barrier *b)
{
	return atomic_load_explicit(&b->rx, memory_order_relaxed);
}

#endif
