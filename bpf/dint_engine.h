/* The transaction engine, written once: request validation and the lock /
 * versioned store / log semantics of every operation. Compiled into the XDP
 * program and both baseline servers, so the three systems cannot answer
 * differently. What differs per frontend is only where records live and how
 * they are latched. A frontend defines, before including this file,
 *
 *   DINT_LATCH_T                      the type of a record's latch
 *   dint_latch(rec), dint_unlatch(rec)
 *
 * and after it (declared below) the storage hooks:
 *
 *   struct dint_rec *dint_store_find(__u8 table, __u64 key)
 *        the record of the key, or NULL if it was never stored
 *   struct dint_rec *dint_store_insert(__u8 table, __u64 key)
 *        the record of the key, created absent (live = 0) if new; NULL if full
 *   int dint_log_append(const struct dint_hdr *msg, const __u8 *val, const void *end)
 *        0 when the record is logged, -1 when the log is full
 *
 * Idempotence comes from the records' own state, so a retransmitted request
 * is answered again and never applied twice: a lock remembers its owners, a
 * commit, insert or delete the transaction that made the current version,
 * a key the transaction it last logged; versions only grow. */
#ifndef DINT_ENGINE_H
#define DINT_ENGINE_H

#include "dint_proto.h"

/* Tables, fixed at build time: how many, and each one's value size. The
 * control plane passes them as -D flags; the defaults are the tests'. */
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

enum dint_verdict {
	DINT_DROP = 0,  /* not a request of ours: send nothing */
	DINT_REPLY = 1, /* the buffer now holds the reply, same length */
};

/* Counters every frontend keeps, indexed the same way everywhere. */
enum dint_stat {
	DINT_STAT_RX = 0, /* datagrams to the dint port */
	DINT_STAT_TX,     /* replies sent */
	DINT_STAT_DROP,   /* malformed datagrams dropped */
	DINT_STAT_ERR,    /* replies with a status other than OK */
	DINT_STAT_MAX,
};

/* What a READ needs comes first: with values of up to 40 bytes it is one
 * 64-byte cache line; the lock holders and history follow. */
struct dint_rec {
	DINT_LATCH_T latch;
	__u8 live;     /* 0: never inserted, or deleted (a tombstone) */
	__u8 pad[3];
	__u32 ver;
	__u64 owner;   /* transaction holding the exclusive lock; 0: none */
	__u8 value[DINT_VAL_MAX];
	__u64 shared[DINT_SHARED_MAX] __attribute__((aligned(8))); /* shared holders; 0: free */
	__u64 last_txn;     /* the transaction whose commit/insert/delete made ver */
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

/* The storage hooks, defined by each frontend (see the top of this file). */
static __always_inline struct dint_rec *dint_store_find(__u8 table, __u64 key);
static __always_inline struct dint_rec *dint_store_insert(__u8 table, __u64 key);
static __always_inline int dint_log_append(const struct dint_hdr *msg, const __u8 *val, const void *end);

static __always_inline int dint_op_writes(__u8 op)
{
	return op != DINT_OP_READ && op != DINT_OP_VALIDATE;
}

/* Copies a value of table t between packet and memory: pkt is the side in
 * the packet, checked against end first. One constant-size copy per table,
 * so the verifier sees constant bounds (tables are few and fixed). */
#define DINT_COPY_CASE(t)                                                  \
	case t:                                                            \
		if ((const void *)((const __u8 *)pkt + DINT_VSIZE(t)) > end) \
			return;                                            \
		__builtin_memcpy(dst, src, DINT_VSIZE(t));                 \
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
_Static_assert(DINT_NTABLES >= 1 && DINT_NTABLES <= 8, "1 to 8 tables");

static __always_inline int dint_shared_find(const struct dint_rec *r, __u64 txn)
{
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		if (r->shared[i] == txn)
			return i;
	return -1;
}

static __always_inline int dint_shared_count(const struct dint_rec *r)
{
	int n = 0;
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		n += r->shared[i] != 0;
	return n;
}

static __always_inline void dint_release(struct dint_rec *r, __u64 txn)
{
	if (r->owner == txn)
		r->owner = 0;
	for (int i = 0; i < DINT_SHARED_MAX; i++)
		if (r->shared[i] == txn)
			r->shared[i] = 0;
}

static __always_inline void dint_install(struct dint_rec *r, const struct dint_hdr *m, __u32 ver,
					 const __u8 *val, const void *end)
{
	dint_copy(r->value, val, val, m->table, end);
	r->ver = ver;
	r->last_txn = dint_ntohll(m->txn);
}

/* The operation on one record, with its latch held; returns the status and
 * fills the reply's version (and value, for READ). */
static __always_inline int dint_apply(struct dint_rec *r, struct dint_hdr *m, __u8 *val, const void *end)
{
	__u64 txn = dint_ntohll(m->txn);
	__u32 ver = dint_ntohl(m->ver);
	int i;

	switch (m->op) {
	case DINT_OP_READ:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		dint_copy(val, r->value, val, m->table, end);
		m->ver = dint_htonl(r->ver);
		return DINT_ST_OK;
	case DINT_OP_LOCK_SHARED:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		m->ver = dint_htonl(r->ver);
		if (r->owner)
			return r->owner == txn ? DINT_ST_OK : DINT_ST_LOCKED;
		if (dint_shared_find(r, txn) >= 0)
			return DINT_ST_OK;
		i = dint_shared_find(r, 0);
		if (i < 0)
			return DINT_ST_FULL;
		r->shared[i] = txn;
		return DINT_ST_OK;
	case DINT_OP_LOCK_EXCL:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		m->ver = dint_htonl(r->ver);
		if (r->owner)
			return r->owner == txn ? DINT_ST_OK : DINT_ST_LOCKED;
		i = dint_shared_count(r);
		/* no-wait: shared holders block it, unless the only one is txn (upgrade) */
		if (i > 1 || (i == 1 && dint_shared_find(r, txn) < 0))
			return DINT_ST_LOCKED;
		dint_release(r, txn);
		r->owner = txn;
		return DINT_ST_OK;
	case DINT_OP_VALIDATE:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner && r->owner != txn)
			return DINT_ST_LOCKED;
		i = r->ver == ver ? DINT_ST_OK : DINT_ST_STALE;
		m->ver = dint_htonl(r->ver);
		return i;
	case DINT_OP_COMMIT_BACKUP:
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (ver > r->ver) /* else a duplicate, or older than what is there */
			dint_install(r, m, ver, val, end);
		return DINT_ST_OK;
	case DINT_OP_COMMIT_PRIMARY:
		if (r->last_txn == txn && r->ver == ver && r->owner != txn)
			return DINT_ST_OK; /* a duplicate of the commit that made ver */
		if (!r->live)
			return DINT_ST_NOT_FOUND;
		if (r->owner != txn)
			return DINT_ST_NOT_OWNER;
		if (ver <= r->ver) {
			m->ver = dint_htonl(r->ver);
			return DINT_ST_STALE;
		}
		dint_install(r, m, ver, val, end);
		dint_release(r, txn);
		return DINT_ST_OK;
	case DINT_OP_ABORT:
		dint_release(r, txn);
		return DINT_ST_OK;
	case DINT_OP_INSERT:
		if (r->live)
			return r->last_txn == txn && r->ver == ver ? DINT_ST_OK : DINT_ST_EXISTS;
		if (r->ver && ver <= r->ver) /* versions of a key only grow, deletes included */
			ver = r->ver + 1;
		dint_install(r, m, ver, val, end);
		r->live = 1;
		m->ver = dint_htonl(ver);
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
static __always_inline int dint_log(struct dint_hdr *m, __u8 *val, const void *end)
{
	struct dint_rec *r = dint_store_insert(m->table, dint_ntohll(m->key));
	__u64 txn = dint_ntohll(m->txn);
	int dup;

	if (!r)
		return DINT_ST_FULL;
	dint_latch(r);
	dup = r->last_log_txn == txn;
	r->last_log_txn = txn;
	dint_unlatch(r);
	if (dup)
		return DINT_ST_OK;
	if (dint_log_append(m, val, end) == 0)
		return DINT_ST_OK;
	dint_latch(r); /* not logged after all: a retransmission must try again */
	if (r->last_log_txn == txn)
		r->last_log_txn = 0;
	dint_unlatch(r);
	return DINT_ST_FULL;
}

/* msg points at the UDP payload, len is the UDP payload length and end is
 * the end of readable memory (len bytes are known to fit before it). */
static __always_inline int dint_process(struct dint_hdr *msg, const void *end, __u32 len)
{
	struct dint_rec *r;
	__u32 n;
	int st;

	if ((const void *)(msg + 1) > end || len < DINT_HDR_LEN)
		return DINT_DROP;
	if (msg->magic != dint_htons(DINT_MAGIC) || msg->status != DINT_ST_REQUEST)
		return DINT_DROP;
	if (msg->proto != DINT_PROTO_VERSION) {
		msg->status = DINT_ST_BAD_VERSION;
		return DINT_REPLY;
	}
	n = dint_ntohs(msg->val_len);
	if (n != len - DINT_HDR_LEN || n > DINT_MAX_VALUE) {
		msg->status = DINT_ST_BAD_LENGTH;
		return DINT_REPLY;
	}
	if (msg->op == DINT_OP_ECHO) {
		msg->status = DINT_ST_OK;
		return DINT_REPLY;
	}
	if (msg->op == 0 || msg->op >= DINT_OP_MAX) {
		msg->status = DINT_ST_UNKNOWN_OP;
		return DINT_REPLY;
	}
	if (msg->table >= DINT_NTABLES) {
		msg->status = DINT_ST_UNKNOWN_TABLE;
		return DINT_REPLY;
	}
	if (n != (__u32)DINT_VSIZE(msg->table)) {
		msg->status = DINT_ST_BAD_LENGTH;
		return DINT_REPLY;
	}
	if (dint_op_writes(msg->op) && !msg->txn) { /* 0 means "no transaction" */
		msg->status = DINT_ST_NOT_OWNER;
		return DINT_REPLY;
	}
	if (msg->op == DINT_OP_LOG) {
		msg->status = dint_log(msg, (__u8 *)(msg + 1), end);
		return DINT_REPLY;
	}
	if (msg->op == DINT_OP_INSERT)
		r = dint_store_insert(msg->table, dint_ntohll(msg->key));
	else
		r = dint_store_find(msg->table, dint_ntohll(msg->key));
	if (!r) {
		msg->status = msg->op == DINT_OP_INSERT ? DINT_ST_FULL :
			      msg->op == DINT_OP_ABORT ? DINT_ST_OK : DINT_ST_NOT_FOUND;
		return DINT_REPLY;
	}
	dint_latch(r);
	st = dint_apply(r, msg, (__u8 *)(msg + 1), end);
	dint_unlatch(r);
	msg->status = st;
	return DINT_REPLY;
}

#endif
