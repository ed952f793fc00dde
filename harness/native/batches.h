/* Batches of requests over the request table: a transaction's round (the
 * executor, executor.c) or a batch a test submits (BatchIO, batchio.c). A
 * batch completes when every request in it has an answer or was given up
 * (status ST_TIMEOUT), so its owner sees one event per round, never one per
 * datagram: the replies, (status, ver, value) in request order, and the
 * first position whose status is not OK. */
#ifndef NATIVE_BATCHES_H
#define NATIVE_BATCHES_H

#include "held.h"
#include "reqtable.h"

struct batch {
	PyObject *tag;     /* owned, or NULL: whatever the owner gave, handed back with the replies */
	PyObject *replies; /* owned list, filled as replies arrive */
	struct held *held; /* where what its requests may leave held is tracked, or NULL */
	uint32_t owner;    /* the owner's index (the executor's transaction) */
	uint32_t remaining;
	int32_t fail;      /* lowest position whose status is not OK; -1: none */
	uint32_t next_free;
};

/* A completed batch, waiting to be handed over. */
struct done {
	PyObject *tag;     /* owned, or NULL */
	PyObject *replies; /* owned */
	int32_t fail;
	uint32_t owner;
};

struct batches {
	struct reqtable rt; /* its done callback finds the batches from it */
	uint32_t max_inflight, max_value;
	struct batch *b;    /* fewer than requests in flight: each holds one at least */
	uint32_t free_batch, nbusy;
	struct done *doneq; /* completed batches, in completion order */
	uint32_t ndone;
	uint64_t batches_done;
	uint64_t ok_by_op[DINT_OP_MAX]; /* OK answers per operation, whole run */
};

/* The Python objects made of batches, TxnIO and BatchIO, start with
 * this, and share its constructor, (fds, client_id, timeout_ns,
 * max_retries, max_inflight, max_value=64, gso=True, rto_min_ns, dead_ns,
 * server_window=0), and stats(): the
 * request table's counters, and batches (completed), batches_inflight,
 * ok_by_op. */
typedef struct {
	PyObject_HEAD
	struct batches io;
} BatchesObject;

int BatchesObject_init(BatchesObject *self, PyObject *args, PyObject *kw);
PyObject *BatchesObject_stats(BatchesObject *self, PyObject *unused);
extern const char BatchesObject_stats_doc[];
PyObject *BatchesObject_linger(BatchesObject *self, PyObject *args);
extern const char BatchesObject_linger_doc[];
void batches_free(struct batches *io);

/* Whether n more requests fit: under max_inflight, and in the request
 * table's window (rt_room). */
static inline int batches_room(struct batches *io, uint32_t n)
{
	return io->rt.inflight + n <= io->max_inflight && rt_room(&io->rt, n);
}

/* Opens a batch of n requests, which the caller then stages (there must be
 * room for them in flight); returns its index, or -1 with an exception
 * set. */
int batches_open(struct batches *io, PyObject *tag, uint32_t owner, struct held *held, uint32_t n);

/* Writes request pos of batch bi, stamped with transaction id txn, and
 * queues it to be sent. */
void batches_stage(struct batches *io, uint32_t bi, uint32_t pos, uint8_t op, uint8_t table, uint64_t key,
		   const char *val, uint32_t vlen, uint32_t ver, uint8_t dest, uint64_t txn, uint64_t t);

/* Queues reqs (a list or tuple, as PySequence_Fast gives, of (op, table,
 * key, value, ver, dest) tuples) as one batch. -1 with an exception set,
 * nothing queued, if a request is malformed or there is no room. */
int batches_submit(struct batches *io, PyObject *tag, uint32_t owner, struct held *held, uint64_t txn,
		   PyObject *reqs);

/* Sends what was queued, then receives and retransmits until at least one
 * batch is complete, nothing is in flight, or the clock reaches until. */
int batches_round(struct batches *io, uint64_t until);

#endif
