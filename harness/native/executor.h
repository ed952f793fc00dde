/* The transaction executor's native half (harness/txn.py): TxnIO drives the
 * transactions, Python generators, so that Python runs only the transaction
 * code and the coordinator, never the per-round bookkeeping. drive() runs
 * them closed-loop (or on an open-loop schedule): it starts each from its
 * (kind, args) parameters, sends the batches its generator yields
 * (batches.h), resumes it with the replies, and counts how it ends:
 * committed (with the label it returned, if any) or aborted by cause.
 *
 * What a transaction may still hold (held.h) is tracked as replies arrive,
 * so that it never leaves a lock behind: an abort sends ABORT to all of it;
 * a transaction that commits still holding some (only ever after a
 * retransmission) releases it the same way before it finishes. A request
 * that may change state (a lock, a log record, a commit, a release) is
 * never given up (reqtable.h), so its outcome is always known; an ABORT
 * refused is counted as a release failure. The statuses a batch tolerates
 * go to the transaction instead of aborting it. harness/txn.py documents
 * the rules; this is their only copy.
 *
 * executor.c is the state machine, txnio.c the Python type around it. */
#ifndef NATIVE_EXECUTOR_H
#define NATIVE_EXECUTOR_H

#include "batches.h"

#define TXN_KINDS 16    /* transaction types (a latency histogram each) */
#define MAX_STATUS 64   /* a batch tolerates statuses below this: the bits of its mask */
#define MAX_LABELS 32   /* abort causes and outcome labels, all types together */

/* The first labels, the causes the executor itself gives. */
enum { CAUSE_LOCK, CAUSE_VALIDATION, CAUSE_TIMEOUT, CAUSE_ERROR, NCAUSES };
extern const char *const cause_names[NCAUSES];

/* The abort cause of a request answered status (not OK). */
int cause_of(int op, int status);

#define NOT_ENDING (-1)  /* ctxn.ending: running */
#define RELEASING (-2)   /* ctxn.ending: committed, releasing what it may still hold */

/* One transaction in flight. */
struct ctxn {
	PyObject *gen;     /* owned; NULL: the entry is free */
	PyObject *batch;   /* owned list or tuple: the requests of its current round */
	uint64_t id, start;
	uint64_t tolerate; /* bit s: a reply with status s goes to the transaction */
	struct held held;
	uint32_t next;     /* the free list, or the queue of batches waiting for room */
	uint16_t kind;
	int16_t ending;    /* NOT_ENDING; RELEASING; or aborting: the cause's label while its ABORTs are out */
	uint8_t recorded;
};

/* Outcomes of one transaction type, over the whole run or the window. */
struct kcounts {
	uint64_t started, committed;
	uint64_t aborts[MAX_LABELS], outcomes[MAX_LABELS];
};

typedef struct {
	BatchesObject base; /* its constructor and stats() are TxnIO's */
	uint64_t *khist[TXN_KINDS]; /* latencies of committed transactions, per type */
	/* set by configure */
	PyObject *funcs, *params, *abort_cls, *batch_cls; /* owned */
	PyObject *labels[MAX_LABELS];                      /* owned str */
	uint32_t nlabels, nkinds, concurrency, active, free_txn;
	struct ctxn *txns;
	struct kcounts (*kc)[2]; /* [kind][0: whole run, 1: started in the window] */
	uint64_t (*errors)[256]; /* [op][status] of the replies that aborted as "error" */
	uint64_t txn_base;
	/* running */
	uint32_t wait_head, wait_tail, nwaiting;
	uint32_t next_txn;
	Py_ssize_t next_param;
	uint64_t params_wrapped, release_failures;
	int driving;
	char zeros[MAX_DGRAM]; /* the value of an ABORT */
} TxnIO;

/* Runs transactions until the clock reaches until; without issuing new
 * ones, also stops when none is in flight. -1 with an exception set. */
int executor_drive(TxnIO *self, uint64_t until, int issue_new);

#endif
