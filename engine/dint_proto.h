/* Wire format of the dint protocol (v2): one request or reply per UDP
 * datagram. The only definition of the layout: the XDP program, both baseline
 * servers and, through harness/protocol.py (checked against this file by the
 * tests), the Python client all use it. Multi-byte fields are big-endian.
 * A request on a table carries a value of exactly that table's value size (a
 * READ's is a placeholder), so every reply has the length of its request. */
#ifndef DINT_PROTO_H
#define DINT_PROTO_H

#include "dint_compat.h"

#define DINT_MAGIC 0xD17E
#define DINT_PROTO_VERSION 2

#ifndef DINT_PORT
#define DINT_PORT 7777
#endif

/* Request ids a client may have between its ack (its oldest request still
 * unanswered) and its newest, a power of two: the servers keep this many
 * completion records per client (dint_engine.h, "Exactly once"). */
#ifndef DINT_WINDOW
#define DINT_WINDOW 65536
#endif

/* Largest value a datagram may carry (bytes after the header). */
#ifndef DINT_MAX_VALUE
#define DINT_MAX_VALUE 1024
#endif

enum dint_op {
	DINT_OP_ECHO = 1,
	DINT_OP_READ = 2,           /* value and version; rejected while write-locked */
	DINT_OP_LOCK_SHARED = 3,    /* 2PL read lock, no-wait; replies value and version */
	DINT_OP_LOCK_EXCL = 4,      /* 2PL write lock and OCC lock; replies value and version */
	DINT_OP_VALIDATE = 5,       /* OCC: still version ver, and not locked by another? */
	DINT_OP_LOG = 6,            /* append (txn, table, key, ver, value) to the log */
	DINT_OP_COMMIT_BACKUP = 7,  /* install value as version ver */
	DINT_OP_COMMIT_PRIMARY = 8, /* install value as version ver and release the lock */
	DINT_OP_ABORT = 9,          /* release txn's lock, shared or exclusive */
	DINT_OP_INSERT = 10,        /* create with value as version ver; ver 0: the server
				     * chooses it, and the row stays locked by the inserter */
	DINT_OP_DELETE = 11,        /* remove, as version ver */
	DINT_OP_MAX,                /* the engine's operations are below this */
	/* A control request, outside the engine's range: answered by every
	 * server's frontend before the engine (which would answer it
	 * UNKNOWN_OP) and counted in none of the engine's counters.
	 * CHECKPOINT is the checkpoint barrier between two measured points:
	 * n participants (clients) each send it once their point is drained;
	 * the server takes a checkpoint of epoch e once all n have arrived.
	 * The request: val_len 0 (a 40-byte datagram), table 0, seq 0, ack 0,
	 * client_id the sender's, key = the epoch e (>= 1), ver = n
	 * (1..DINT_BARRIER_MAX), txn = the sender's index (0..n-1). The reply
	 * is the request with its status: BAD_LENGTH (a value, or not 40
	 * bytes), BAD_REQUEST (e 0, n 0 or over the maximum, the index not
	 * below n, or an n other than the epoch's first arrival gave), OK (the
	 * checkpoint of epoch e is taken: its files written), or RETRY (epoch
	 * e is not complete or its checkpoint is being taken: nothing else to
	 * do but send it again; a later epoch is not even recorded). The
	 * checkpoint of epoch e writes the dump and the log to <path>.<e> and
	 * prints its line with "epoch": e (userspace/barrier.h). */
	DINT_OP_CHECKPOINT = 64,
};

/* Participants a checkpoint barrier may have. */
#define DINT_BARRIER_MAX 1024

/* Whether an operation may change a server's state: a request of one is
 * applied at most once (dint_engine.h, "Exactly once"), and a client never
 * gives it up. */
#define DINT_OP_CHANGES(op) ((op) != DINT_OP_ECHO && (op) != DINT_OP_READ && (op) != DINT_OP_VALIDATE)

/* A request carries DINT_ST_REQUEST; every reply carries another status, so a
 * server never answers a reply (no reflection loops). */
enum dint_status {
	DINT_ST_REQUEST = 0,
	DINT_ST_OK = 1,
	DINT_ST_UNKNOWN_OP = 2,
	DINT_ST_BAD_VERSION = 3,   /* protocol version */
	DINT_ST_BAD_LENGTH = 4,    /* val_len is not the datagram's, or not the table's */
	DINT_ST_NOT_FOUND = 5,
	DINT_ST_LOCKED = 6,        /* conflict: rejected, never queued (no-wait) */
	DINT_ST_STALE = 7,         /* VALIDATE: the version changed */
	DINT_ST_EXISTS = 8,        /* INSERT of a live key */
	DINT_ST_NOT_OWNER = 9,     /* COMMIT_PRIMARY without holding the lock */
	DINT_ST_UNKNOWN_TABLE = 10,
	DINT_ST_FULL = 11,         /* no room: store, lock holders or log */
	DINT_ST_RETRY = 12,        /* the record's latch stayed busy, or the barrier is not
				    * complete (CHECKPOINT): send the request again */
	DINT_ST_BAD_REQUEST = 13,  /* a control request whose fields are out of range */
	DINT_ST_MAX,
};

struct dint_hdr {
	__u16 magic;     /* DINT_MAGIC */
	__u8 proto;      /* DINT_PROTO_VERSION */
	__u8 op;         /* enum dint_op */
	__u8 status;     /* enum dint_status */
	__u8 table;
	__u16 val_len;   /* bytes of value following the header */
	__u32 client_id; /* request id, part 1: the sending client */
	__u32 seq;       /* request id, part 2: that client's sequence number (0: none) */
	__u64 txn;       /* transaction: owner of locks, author of commits */
	__u64 key;
	__u32 ver;       /* version of the value */
	__u32 ack;       /* the client's oldest request id still unanswered: every
			  * one before it is answered and never sent again (0: none) */
} __attribute__((packed));

#define DINT_HDR_LEN 40
_Static_assert(sizeof(struct dint_hdr) == DINT_HDR_LEN, "dint_hdr layout changed");

/* Whether the datagram msg[0, len) is a control request (DINT_OP_CHECKPOINT),
 * which a frontend answers itself, before the engine and before counting it
 * (its length and fields are then checked by userspace/barrier.h). A
 * datagram that is not one (a reply, a wrong magic or version, too short)
 * goes to the engine as any other. msg holds at least DINT_HDR_LEN readable
 * bytes if len says so. */
static __always_inline int dint_is_control(const struct dint_hdr *msg, __u32 len)
{
	return len >= DINT_HDR_LEN && msg->op == DINT_OP_CHECKPOINT && msg->magic == dint_htons(DINT_MAGIC) &&
	       msg->proto == DINT_PROTO_VERSION && msg->status == DINT_ST_REQUEST;
}

#endif
