/* What a transaction may hold: the keys an ABORT from it would release.
 * A lock granted (or a row inserted with version 0, which stays locked by
 * its inserter), and a lock whose request was sent more than once, whatever
 * its answer; each until a COMMIT_PRIMARY or an ABORT of that key is
 * answered OK. (The servers answer every copy of a request as its first,
 * or drop it: a copy cannot be granted after the answer taken. The second
 * rule keeps that true of a server that would not, at the price of an
 * ABORT after a retransmission. A lock request is never given up.)
 * harness/txn.py documents the rule; this is its only copy. */
#ifndef NATIVE_HELD_H
#define NATIVE_HELD_H

#include "common.h"

/* A key, with where and how an ABORT would release it. */
struct held_key {
	uint64_t key;
	uint16_t vlen;
	uint8_t table, dest;
};

struct held {
	struct held_key *keys;
	uint32_t n, cap;
};

/* Takes the end of a request into account: operation op, its datagram
 * req (read only for the operations that take or release a lock), to
 * server dest, sent again retries times; status is its answer. -1 with
 * MemoryError set. */
int held_track(struct held *h, uint8_t op, const void *req, uint8_t dest, uint16_t retries, int status);

void held_free(struct held *h);

#endif
