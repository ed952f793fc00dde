/* The transaction engine, written once: request validation and the lock /
 * versioned store / log semantics of every operation. Compiled into the XDP
 * program, dint's user-space slow path and both baseline servers, so the
 * systems cannot answer differently. What differs per frontend is only where
 * records live and how they are latched, and the engine includes nothing of
 * a frontend's: a frontend defines these macros before it includes this file
 * (or dint_net.h, which includes it),
 *
 *   DINT_REF_T                 what one latch covers: a record (the baselines'
 *                              store) or a bucket of records (dint's cache)
 *   dint_latch(ref)            0 once latched; nonzero if the latch stayed busy
 *                              (the request is answered RETRY)
 *   dint_unlatch(ref)
 *
 * and after it (declared below) the storage hooks:
 *
 *   DINT_REF_T dint_ref(__u8 table, __u64 key, int create)
 *        what holds the key's record; 0 when there is none and, unless
 *        create, none may be made (the key is absent, or the store is full)
 *   struct dint_rec *dint_rec(DINT_REF_T ref, __u8 table, __u64 key, int create, int *where)
 *        with ref latched: the key's record, created absent (live = 0) if
 *        create and new; 0 otherwise, with *where saying why: DINT_ABSENT
 *        (no such key, or no room) or DINT_ELSEWHERE (the record may live
 *        where this frontend cannot reach it: the request passes to dint's
 *        slow path)
 *   int dint_log_room(void)
 *        nonzero if a log append would succeed now (a hint; checked first
 *        so a full log is answered before any record changes)
 *   int dint_log_append(const struct dint_hdr *msg, const __u8 *val, const void *end)
 *        0 when the record is logged, -1 when the log is full
 *   struct dint_session *dint_session(__u32 client)
 *        the session slot a client's requests use (see "Exactly once"
 *        below); 0 if the frontend keeps none
 *   struct dint_done *dint_done(__u32 client, __u32 seq)
 *        the completion record slot of request (client, seq); 0 if none
 *   int dint_done_latch(struct dint_done *d), void dint_done_unlatch(d)
 *        a completion record's latch, as dint_latch for records
 *
 * Exactly once. Every request that can change state (a lock, a log
 * record, a commit, a release, an insert, a delete) and carries a request
 * id (client_id, seq != 0) is applied at most once, and every copy of it,
 * however late, is answered as the first was or dropped with no effect:
 *   - its outcome (status and version) is kept in a completion record, in
 *     a window of DINT_WINDOW records per client indexed by seq, and a copy
 *     finding the record is answered from it (a granted lock's value read
 *     again, unchanged: its holder is still waiting for it, or no longer
 *     cares) without touching anything;
 *   - every request carries the client's ack, its oldest request id still
 *     unanswered: the client will never send, nor wait for, any request
 *     before it, so a copy older than the latest ack a client sent is
 *     dropped unanswered (it may be older than the window). A client keeps
 *     fewer than DINT_WINDOW request ids between its ack and its newest
 *     request, so an answered request's record outlives every copy the
 *     client could still take for an answer.
 * This is RIFL's design (Lee et al., SOSP'15: completion records kept until
 * the client acknowledges them, the acknowledgement carried on requests),
 * with a fixed window instead of allocated records, as XDP allows. A client
 * (client_id) takes over its session slot from an earlier one mapped to the
 * same slot: a new run's client starts afresh. Requests without an id
 * (seq 0) and those that change nothing (ECHO, READ, VALIDATE) skip it.
 *
 * Below that, idempotence also comes from the records' own state: a lock
 * remembers its owners, a commit, insert or delete the transaction that
 * made the current version, a key the transaction it last logged; versions
 * only grow. */
#ifndef DINT_ENGINE_H
#define DINT_ENGINE_H

#if !defined(DINT_REF_T) || !defined(dint_latch) || !defined(dint_unlatch)
#error "define DINT_REF_T, dint_latch and dint_unlatch before including the engine (see the top of dint_engine.h)"
#endif

#include "dint_proto.h"

/* Tables, fixed at build time: how many (up to DINT_MAX_TABLES, as many
 * as dint_copy has cases for), and each one's value size. The control plane
 * passes them as -D flags; the defaults are the tests' and the default
 * schema of harness/schema.py (the tests check that the two agree). */
#define DINT_MAX_TABLES 8
#ifndef DINT_NTABLES
#define DINT_NTABLES 3
#endif
#ifndef DINT_VSIZE
#define DINT_VSIZE(t) ((t) == 0 ? 8 : (t) == 1 ? 40 : 0)
#endif
#ifndef DINT_VAL_MAX
#define DINT_VAL_MAX 40
#endif
/* Shared-lock holders remembered per record; one more is rejected (LOCKED). */
#ifndef DINT_SHARED_MAX
#define DINT_SHARED_MAX 4
#endif
_Static_assert((DINT_WINDOW & (DINT_WINDOW - 1)) == 0, "DINT_WINDOW is a power of two");

enum dint_verdict {
	DINT_DROP = 0,  /* not a request of ours: send nothing */
	DINT_REPLY = 1, /* the buffer now holds the reply, same length */
	DINT_PASS = 2,  /* untouched: the record lives elsewhere (dint's slow path answers) */
	DINT_STALE = 3, /* a copy of a request older than its client's ack: send nothing */
};

/* Why dint_rec found no record. */
enum dint_where {
	DINT_ABSENT = 0,    /* no such key (or no room for a new one) */
	DINT_ELSEWHERE = 1, /* maybe somewhere this frontend cannot see */
};

/* Counters every frontend keeps, indexed the same way everywhere. */
enum dint_stat {
	DINT_STAT_RX = 0, /* datagrams to the dint port */
	DINT_STAT_TX,     /* replies sent */
	DINT_STAT_DROP,   /* datagrams not answered: malformed, or stale copies */
	DINT_STAT_ERR,    /* replies with a status other than OK */
	DINT_STAT_STALE,  /* ... of the dropped: copies older than their client's ack */
	DINT_STAT_MAX,
};

/* A record. What a read or a lock needs comes first, in this order: live,
 * version, gen and owner, the shared holders, then the value; the
 * transaction ids that make retransmissions idempotent last. With values of
 * up to 8 bytes, a read or a lock touches the record's first 64 bytes only. */
struct dint_rec {
	__u8 live;     /* 0: never inserted, or deleted (a tombstone) */
	__u8 pad[3];
	__u32 ver;
	__u32 gen;     /* changes so far (every writing operation counts one): of
			* two copies of a record, the one with the higher gen is newer */
	__u32 pad2;
	__u64 owner;   /* transaction holding the exclusive lock; 0: none */
	__u64 shared[DINT_SHARED_MAX]; /* shared holders; 0: free */
	__u8 value[DINT_VAL_MAX] __attribute__((aligned(8)));
	__u64 last_txn __attribute__((aligned(8))); /* the transaction whose commit/insert/delete made ver */
	__u64 last_log_txn; /* the transaction that last logged this key */
};

/* One log record, as appended by DINT_OP_LOG. */
struct dint_log_rec {
	__u64 txn;
	__u64 key;
	__u32 ver;
	__u8 table;
	__u8 pad[3];
	__u8 value[DINT_VAL_MAX];
};

/* A client's session: which client holds the slot, and the newest ack it
 * sent (0: none yet). */
struct dint_session {
	__u32 client;
	__u32 ack;
};

/* The outcome of request (client, seq), kept for its copies. */
struct dint_done {
	__u64 latch;   /* 64 bits: XDP's atomics */
	__u32 client;
	__u32 seq;
	__u32 ver;     /* the reply's version */
	__u8 status;   /* the reply's status; 0: no outcome kept */
	__u8 pad[3];
} __attribute__((aligned(8)));

/* The storage hooks, defined by each frontend (see the top of this file). */
static __always_inline DINT_REF_T dint_ref(__u8 table, __u64 key, int create);
static __always_inline struct dint_rec *dint_rec(DINT_REF_T ref, __u8 table, __u64 key, int create,
						 int *where);
static __always_inline int dint_log_room(void);
static __always_inline int dint_log_append(const struct dint_hdr *msg, const __u8 *val, const void *end);
static __always_inline struct dint_session *dint_session(__u32 client);
static __always_inline struct dint_done *dint_done(__u32 client, __u32 seq);
static __always_inline int dint_done_latch(struct dint_done *d);
static __always_inline void dint_done_unlatch(struct dint_done *d);

/* Where (table, key) lives in every frontend's hash structure: murmur3's
 * finaliser over the key with the table folded in. */
static __always_inline __u64 dint_hash(__u8 table, __u64 key)
{
	__u64 h = key ^ ((__u64)table * 0x9E3779B97F4A7C15ULL);

	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDULL;
	h ^= h >> 33;
	h *= 0xC4CEB9FE1A85EC53ULL;
	h ^= h >> 33;
	return h;
}

static __always_inline int dint_op_writes(__u8 op)
{
	return DINT_OP_CHANGES(op);
}

/* Whether an operation makes a record for a key that has none (dint_rec's
 * create): an insert, and a log record (dint_log). Every other operation
 * answers an absent key without one (dint_absent_status). */
static __always_inline int dint_op_creates(__u8 op)
{
	return op == DINT_OP_INSERT || op == DINT_OP_LOG;
}

/* n bytes, n a constant: 8 at a time, at any alignment (the packet's side
 * is at an odd offset, where memcpy would move a byte at a time on the BPF
 * target), then the rest. */
static __always_inline void dint_copy_n(void *dst, const void *src, __u32 n)
{
	__u32 i = 0;

	for (; i + 8 <= n; i += 8)
		dint_st64((__u8 *)dst + i, dint_ld64((const __u8 *)src + i));
	for (; i < n; i++)
		((__u8 *)dst)[i] = ((const __u8 *)src)[i];
}

/* Copies a value of table t between packet and memory: pkt is the side in
 * the packet, checked against end first. One constant-size copy per table,
 * so the verifier sees constant bounds (tables are few and fixed). */
#define DINT_COPY_CASE(t)                                                  \
	case t:                                                            \
		if ((const void *)((const __u8 *)pkt + DINT_VSIZE(t)) > end) \
			return;                                            \
		dint_copy_n(dst, src, DINT_VSIZE(t));                      \
		return;

static __always_inline void dint_copy(void *dst, const void *src, const void *pkt, __u8 table,
				      const void *end)
{
	switch (table) {
	DINT_COPY_CASE(0)
#if DINT_NTABLES > 1
	DINT_COPY_CASE(1)
#endif
#if DINT_NTABLES > 2
	DINT_COPY_CASE(2)
#endif
#if DINT_NTABLES > 3
	DINT_COPY_CASE(3)
#endif
#if DINT_NTABLES > 4
	DINT_COPY_CASE(4)
#endif
#if DINT_NTABLES > 5
	DINT_COPY_CASE(5)
#endif
#if DINT_NTABLES > 6
	DINT_COPY_CASE(6)
#endif
#if DINT_NTABLES > 7
	DINT_COPY_CASE(7)
#endif
	}
}
_Static_assert(DINT_NTABLES >= 1 && DINT_NTABLES <= DINT_MAX_TABLES, "1 to 8 tables");

/* A request's fields in host order, loaded once: struct dint_hdr is packed
 * and its fields lie at odd offsets of a frame, where a field the BPF
 * target reads as a packed member costs a load and a shift per byte. */
struct dint_req {
	__u64 txn;
	__u64 key;
	__u32 ver;
	__u32 client;
	__u32 seq;
	__u32 ack;
	__u8 op;
	__u8 table;
};

#define DINT_FIELD(m, f) ((__u8 *)(m) + __builtin_offsetof(struct dint_hdr, f))

static __always_inline void dint_req_load(const struct dint_hdr *m, struct dint_req *q)
{
	const __u8 *b = (const __u8 *)m;

	q->txn = dint_ntohll(dint_ld64(b + __builtin_offsetof(struct dint_hdr, txn)));
	q->key = dint_ntohll(dint_ld64(b + __builtin_offsetof(struct dint_hdr, key)));
	q->ver = dint_ntohl(dint_ld32(b + __builtin_offsetof(struct dint_hdr, ver)));
	q->client = dint_ntohl(dint_ld32(b + __builtin_offsetof(struct dint_hdr, client_id)));
	q->seq = dint_ntohl(dint_ld32(b + __builtin_offsetof(struct dint_hdr, seq)));
	q->ack = dint_ntohl(dint_ld32(b + __builtin_offsetof(struct dint_hdr, ack)));
	q->op = m->op;
	q->table = m->table;
}

/* The reply's version. */
static __always_inline void dint_reply_ver(struct dint_hdr *m, __u32 ver)
{
	dint_st32(DINT_FIELD(m, ver), dint_htonl(ver));
}

static __always_inline __u32 dint_msg_ver(const struct dint_hdr *m)
{
	return dint_ntohl(dint_ld32((const __u8 *)m + __builtin_offsetof(struct dint_hdr, ver)));
}

static __always_inline int dint_shared_find(const struct dint_rec *r, __u64 txn)
{
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		if (r->shared[i] == txn)
			return i;
	return -1;
}

/* Shared holders of r (the snapshot's nshared). */
static __always_inline int dint_shared_count(const struct dint_rec *r)
{
	int n = 0;
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		n += r->shared[i] != 0;
	return n;
}

/* Whether r has no shared holder: the common case, one test. */
static __always_inline int dint_no_shared(const struct dint_rec *r)
{
	__u64 any = 0;

	for (int i = 0; i < DINT_SHARED_MAX; i++)
		any |= r->shared[i];
	return !any;
}

static __always_inline void dint_release(struct dint_rec *r, __u64 txn)
{
	if (r->owner == txn)
		r->owner = 0;
	if (dint_no_shared(r))
		return;
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		if (r->shared[i] == txn)
			r->shared[i] = 0;
}

static __always_inline void dint_install(struct dint_rec *r, const struct dint_req *q, __u32 ver,
					 const __u8 *val, const void *end)
{
	dint_copy(r->value, val, val, q->table, end);
	r->ver = ver;
	r->last_txn = q->txn;
}

/* The operation on one record, with its latch held; returns the status and
 * fills the reply's version (and value, for READ). A writing operation's
 * txn is never 0 (dint_check). */
static __always_inline int dint_apply(struct dint_rec *r, struct dint_hdr *m, const struct dint_req *q, __u8 *val,
				      const void *end)
{
	__u64 txn = q->txn;
	__u32 ver = q->ver;
	int i;

	switch (q->op) {
	case DINT_OP_READ:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		dint_copy(val, r->value, val, q->table, end);
		dint_reply_ver(m, r->ver);
		return DINT_ST_OK;
	/* A granted lock answers with the value and version, so a 2PL
	 * transaction locks and reads in one round trip. */
	case DINT_OP_LOCK_SHARED:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		dint_reply_ver(m, r->ver);
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		if (!r->owner && dint_no_shared(r)) {
			r->shared[0] = txn;
		} else if (!r->owner && dint_shared_find(r, txn) < 0) {
			i = dint_shared_find(r, 0);
			if (i < 0)
				return DINT_ST_FULL;
			r->shared[i] = txn;
		}
		dint_copy(val, r->value, val, q->table, end);
		return DINT_ST_OK;
	case DINT_OP_LOCK_EXCL:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		dint_reply_ver(m, r->ver);
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		if (!r->owner && dint_no_shared(r)) {
			r->owner = txn;
		} else if (!r->owner) {
			i = dint_shared_count(r);
			/* no-wait: shared holders block it, unless the only one is txn (upgrade) */
			if (i > 1 || (i == 1 && dint_shared_find(r, txn) < 0))
				return DINT_ST_LOCKED;
			dint_release(r, txn);
			r->owner = txn;
		}
		dint_copy(val, r->value, val, q->table, end);
		return DINT_ST_OK;
	case DINT_OP_VALIDATE:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		i = r->ver == ver ? DINT_ST_OK : DINT_ST_STALE;
		dint_reply_ver(m, r->ver);
		return i;
	case DINT_OP_COMMIT_BACKUP:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (ver > r->ver) /* else a duplicate, or older than what is there */
			dint_install(r, q, ver, val, end);
		return DINT_ST_OK;
	case DINT_OP_COMMIT_PRIMARY:
		if (r->last_txn == txn && r->ver == ver && r->owner != txn)
			return DINT_ST_OK; /* a duplicate of the commit that made ver */
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner != txn)
			return DINT_ST_NOT_OWNER;
		if (ver <= r->ver) {
			dint_reply_ver(m, r->ver);
			return DINT_ST_STALE;
		}
		dint_install(r, q, ver, val, end);
		dint_release(r, txn);
		return DINT_ST_OK;
	case DINT_OP_ABORT:
		dint_release(r, txn);
		return DINT_ST_OK;
	/* ver 0: the server chooses the version (the key's primary) and the new
	 * row stays locked by its inserter until released, so that nobody reads
	 * or locks it before its backups have it; a version: install it as is
	 * (a backup). */
	case DINT_OP_INSERT:
		if (r->live) {
			if (r->owner != txn && !(r->last_txn == txn && r->ver == ver))
				return DINT_ST_EXISTS;
			dint_reply_ver(m, r->ver); /* a duplicate */
			return DINT_ST_OK;
		}
		i = !ver;
		if (!ver || ver <= r->ver) /* versions of a key only grow, deletes included */
			ver = r->ver + 1;
		dint_install(r, q, ver, val, end);
		r->live = 1;
		if (i)
			r->owner = txn;
		dint_reply_ver(m, ver);
		return DINT_ST_OK;
	case DINT_OP_DELETE:
		if (!r->live)
			return r->last_txn == txn ? DINT_ST_OK : DINT_ST_NOT_FOUND;
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		r->live = 0;
		r->ver = ver > r->ver ? ver : r->ver + 1;
		r->last_txn = txn;
		r->owner = 0;
		for (i = 0; i < DINT_SHARED_MAX; i++)
			r->shared[i] = 0;
		return DINT_ST_OK;
	}
	return DINT_ST_UNKNOWN_OP;
}

/* LOG: appended once per (transaction, key). The key's record, created
 * absent if the key is not stored (the log record of an insert, or a log
 * server's), remembers the transaction that last logged it, so a
 * retransmission is answered without a second append. */
static __always_inline int dint_log(struct dint_hdr *m, const struct dint_req *q, __u8 *val, const void *end)
{
	__u64 key = q->key, txn = q->txn;
	DINT_REF_T ref;
	struct dint_rec *r;
	int where = DINT_ABSENT, dup;

	if (!dint_log_room())
		return DINT_ST_FULL;
	ref = dint_ref(q->table, key, 1);
	if (!ref)
		return DINT_ST_FULL;
	if (dint_latch(ref))
		return DINT_ST_RETRY;
	r = dint_rec(ref, q->table, key, 1, &where);
	if (!r) {
		dint_unlatch(ref);
		return where == DINT_ELSEWHERE ? -1 : DINT_ST_FULL;
	}
	dup = r->last_log_txn == txn;
	if (!dup) {
		r->last_log_txn = txn;
		r->gen++;
	}
	dint_unlatch(ref);
	if (dup || dint_log_append(m, val, end) == 0)
		return DINT_ST_OK;
	/* Filled up since dint_log_room: not logged after all, so a
	 * retransmission must try again. (Only the baselines' shared log can
	 * fill up in between, and their latches do not fail.) */
	if (dint_latch(ref) == 0) {
		r = dint_rec(ref, q->table, key, 0, &where);
		if (r && r->last_log_txn == txn) {
			r->last_log_txn = 0;
			r->gen++;
		}
		dint_unlatch(ref);
	}
	return DINT_ST_FULL;
}

/* The status of an operation on a key that has no record. */
static __always_inline int dint_absent_status(__u8 op)
{
	return op == DINT_OP_INSERT ? DINT_ST_FULL : op == DINT_OP_ABORT ? DINT_ST_OK : DINT_ST_NOT_FOUND;
}

/* Serial-number order of request ids (RFC 1982): a comes before b. */
static __always_inline int dint_seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/* What dint_once_begin found for a request. */
enum dint_once {
	DINT_ONCE_NEW = 0, /* not applied before: apply it (its record, if any, is latched) */
	DINT_ONCE_COPY,    /* a copy of one applied: answer its outcome */
	DINT_ONCE_STALE,   /* older than its client's ack: drop it */
	DINT_ONCE_BUSY,    /* its completion record's latch stayed busy: RETRY */
};

/* Exactly once, before a state-changing request with an id is applied (see
 * the top of this file): takes its client's ack, and finds its completion
 * record. COPY returns the kept outcome in *status and *ver; NEW returns
 * the record's slot in *dp, latched, for dint_once_end (0 if the frontend
 * keeps none). */
static __always_inline int dint_once_begin(const struct dint_req *q, struct dint_done **dp, __u8 *status,
					   __u32 *ver)
{
	__u32 client = q->client, seq = q->seq, ack = q->ack;
	struct dint_session *s = dint_session(client);
	struct dint_done *d;

	*dp = 0;
	if (!s)
		return DINT_ONCE_NEW;
	if (s->client != client) { /* a new client takes the slot over */
		s->client = client;
		s->ack = ack;
	} else if (ack && (!s->ack || dint_seq_before(s->ack, ack))) {
		s->ack = ack;
	}
	if (s->ack && dint_seq_before(seq, s->ack))
		return DINT_ONCE_STALE;
	d = dint_done(client, seq);
	if (!d)
		return DINT_ONCE_NEW;
	if (dint_done_latch(d))
		return DINT_ONCE_BUSY;
	if (d->status && d->client == client && d->seq == seq) {
		*status = d->status;
		*ver = d->ver;
		dint_done_unlatch(d);
		return DINT_ONCE_COPY;
	}
	*dp = d;
	return DINT_ONCE_NEW;
}

/* Exactly once, after: keeps the outcome of the reply in m unless it was
 * not decided (RETRY: a latch was busy; the client sends the request again,
 * and may not have it answered otherwise), then frees the record. */
static __always_inline void dint_once_end(struct dint_done *d, const struct dint_hdr *m, const struct dint_req *q,
					  int verdict)
{
	if (!d)
		return;
	if (verdict == DINT_REPLY && m->status != DINT_ST_RETRY) {
		d->client = q->client;
		d->seq = q->seq;
		d->ver = dint_msg_ver(m);
		d->status = m->status;
	}
	dint_done_unlatch(d);
}

/* A copy of a granted lock request is answered with the record's value,
 * read and not changed: its holder still holds it (nobody else can change
 * it) if it is still waiting for this answer, and does not care otherwise. */
static __always_inline int dint_reread(struct dint_hdr *msg, const struct dint_req *q, const void *end, __u8 status,
				       __u32 ver)
{
	DINT_REF_T ref = dint_ref(q->table, q->key, 0);
	struct dint_rec *r;
	int where = DINT_ABSENT;

	if (!ref) {
		msg->status = status;
		dint_reply_ver(msg, ver);
		return DINT_REPLY;
	}
	if (dint_latch(ref)) {
		msg->status = DINT_ST_RETRY;
		return DINT_REPLY;
	}
	r = dint_rec(ref, q->table, q->key, 0, &where);
	if (!r && where == DINT_ELSEWHERE) {
		dint_unlatch(ref);
		return DINT_PASS; /* the slow path takes it into the cache and asks again */
	}
	if (r)
		dint_copy((__u8 *)(msg + 1), r->value, (__u8 *)(msg + 1), q->table, end);
	dint_unlatch(ref);
	msg->status = status;
	dint_reply_ver(msg, ver);
	return DINT_REPLY;
}

/* Applies a valid request: a log record, or the operation on its key's
 * record. Returns a dint_verdict; with DINT_PASS the message is unchanged. */
static __always_inline int dint_execute(struct dint_hdr *msg, const struct dint_req *q, const void *end)
{
	DINT_REF_T ref;
	struct dint_rec *r;
	int st, create, where = DINT_ABSENT;

	if (q->op == DINT_OP_LOG) {
		st = dint_log(msg, q, (__u8 *)(msg + 1), end);
		if (st < 0)
			return DINT_PASS;
		msg->status = st;
		return DINT_REPLY;
	}
	create = dint_op_creates(q->op); /* an insert: a log record went above */
	ref = dint_ref(q->table, q->key, create);
	if (!ref) {
		msg->status = dint_absent_status(q->op);
		return DINT_REPLY;
	}
	if (dint_latch(ref)) {
		msg->status = DINT_ST_RETRY;
		return DINT_REPLY;
	}
	r = dint_rec(ref, q->table, q->key, create, &where);
	if (!r) {
		dint_unlatch(ref);
		if (where == DINT_ELSEWHERE)
			return DINT_PASS;
		msg->status = dint_absent_status(q->op);
		return DINT_REPLY;
	}
	st = dint_apply(r, msg, q, (__u8 *)(msg + 1), end);
	if (dint_op_writes(q->op))
		r->gen++;
	dint_unlatch(ref);
	msg->status = st;
	return DINT_REPLY;
}

/* What a datagram is before any record is looked at, from its header and
 * length alone: DINT_CHECK_DROP (not a request: too short, wrong magic, a
 * reply), DINT_ST_REQUEST (a valid request for the records, or the log), or
 * the status to answer it with at once (an echo's OK, or why it is
 * refused). msg, len and end as for dint_process. dint's slow path asks
 * this before it takes a record into the cache for a request. */
#define DINT_CHECK_DROP (-1)

static __always_inline int dint_check(const struct dint_hdr *msg, const void *end, __u32 len)
{
	const __u8 *b = (const __u8 *)msg;
	__u32 n;

	if ((const void *)(msg + 1) > end || len < DINT_HDR_LEN)
		return DINT_CHECK_DROP;
	if (dint_ld16(b) != dint_htons(DINT_MAGIC) || msg->status != DINT_ST_REQUEST)
		return DINT_CHECK_DROP;
	if (msg->proto != DINT_PROTO_VERSION)
		return DINT_ST_BAD_VERSION;
	n = dint_ntohs(dint_ld16(b + __builtin_offsetof(struct dint_hdr, val_len)));
	if (n != len - DINT_HDR_LEN || n > DINT_MAX_VALUE)
		return DINT_ST_BAD_LENGTH;
	if (msg->op == DINT_OP_ECHO)
		return DINT_ST_OK;
	if (msg->op == 0 || msg->op >= DINT_OP_MAX)
		return DINT_ST_UNKNOWN_OP;
	if (msg->table >= DINT_NTABLES)
		return DINT_ST_UNKNOWN_TABLE;
	if (n != (__u32)DINT_VSIZE(msg->table))
		return DINT_ST_BAD_LENGTH;
	/* 0 means "no transaction" */
	if (dint_op_writes(msg->op) && !dint_ld64(b + __builtin_offsetof(struct dint_hdr, txn)))
		return DINT_ST_NOT_OWNER;
	return DINT_ST_REQUEST;
}

/* msg points at the UDP payload, len is the UDP payload length and end is
 * the end of readable memory (len bytes are known to fit before it).
 * Returns a dint_verdict; with DINT_PASS the message is unchanged. */
static __always_inline int dint_process(struct dint_hdr *msg, const void *end, __u32 len)
{
	struct dint_done *done;
	struct dint_req q;
	__u32 ver = 0;
	__u8 status = 0;
	int once, verdict, check;

	check = dint_check(msg, end, len);
	if (check == DINT_CHECK_DROP)
		return DINT_DROP;
	if (check != DINT_ST_REQUEST) {
		msg->status = check;
		return DINT_REPLY;
	}
	dint_req_load(msg, &q);
	if (!dint_op_writes(q.op) || !q.seq)
		return dint_execute(msg, &q, end);
	once = dint_once_begin(&q, &done, &status, &ver);
	if (once == DINT_ONCE_STALE)
		return DINT_STALE;
	if (once == DINT_ONCE_BUSY) {
		msg->status = DINT_ST_RETRY;
		return DINT_REPLY;
	}
	if (once == DINT_ONCE_COPY) {
		if (status == DINT_ST_OK && (q.op == DINT_OP_LOCK_SHARED || q.op == DINT_OP_LOCK_EXCL))
			return dint_reread(msg, &q, end, status, ver);
		msg->status = status;
		dint_reply_ver(msg, ver);
		return DINT_REPLY;
	}
	verdict = dint_execute(msg, &q, end);
	dint_once_end(done, msg, &q, verdict);
	return verdict;
}

#endif
