/* The transaction executor's native half (harness/txn.py): TxnIO sends
 * batches of requests and matches their replies, and drives the
 * transactions themselves, Python generators, so that Python runs only the
 * transaction code and the coordinator, never the per-round bookkeeping.
 *
 * I/O. Batches of requests are sent over the connected per-server sockets;
 * replies are matched by request id, overdue requests retransmitted with the
 * same id and given up after max_retries (reported as status TIMEOUT). A
 * batch completes when every request in it has a reply or was given up, so
 * a transaction sees one event per round, never one per datagram. Used
 * directly, submit() queues a batch tagged with any object and run() returns
 * the completed ones.
 *
 * Executor. After configure(), drive() runs transactions closed-loop (or on
 * an open-loop schedule): it starts each from its (kind, args) parameters,
 * sends what the generator yields, resumes it with the replies, and counts
 * how it ends: committed (with the label it returned, if any) or aborted by
 * cause. What a transaction may still hold is tracked as replies arrive, so
 * that it never leaves a lock behind: a lock granted (or a row inserted with
 * version 0, which stays locked by its inserter), a lock whose request
 * timed out, and a lock request sent more than once whatever its answer (a
 * copy that reaches the server after the one answered may find the row free
 * and be granted), each until a COMMIT_PRIMARY or ABORT of that key is
 * answered OK. An abort sends ABORT to all of them; a transaction that
 * commits still holding some (only ever after a retransmission) releases
 * them the same way before it finishes. An ABORT given up after max_retries
 * may leave a lock held: counted as a release failure. harness/txn.py
 * documents the rules; this is their only copy. */
#include "_netloop.h"

#define MAX_LABELS 32 /* abort causes and outcome labels, all types together */
#define SLEEP_NS 200000 /* open loop: nothing in flight, the next due later than this: sleep */
#define NOT_ENDING (-1)  /* ctxn.ending: running */
#define RELEASING (-2)   /* ctxn.ending: committed, releasing what it may still hold */

/* The first labels, the causes the executor itself gives (txn.CAUSES). */
enum { CAUSE_LOCK, CAUSE_VALIDATION, CAUSE_TIMEOUT, CAUSE_ERROR, NCAUSES };
static const char *const cause_names[NCAUSES] = { "lock", "validation", "timeout", "error" };

struct tslot {
	uint32_t seq;
	uint32_t batch; /* index in batches */
	uint16_t pos;   /* position in its batch */
	uint16_t len;
	uint8_t dest, op, busy, recorded;
	uint16_t retries;
	uint64_t first_ns, last_ns;
};

struct tbatch {
	PyObject *tag;     /* owned; NULL for a transaction's batch (txn below) */
	PyObject *replies; /* owned list, filled as replies arrive */
	uint32_t remaining;
	int32_t fail;      /* lowest position whose status is not OK; -1: none */
	uint32_t next_free;
	uint32_t txn;      /* index in txns */
};

/* A completed batch, waiting to be handed over. */
struct done {
	PyObject *tag;     /* owned, or NULL */
	PyObject *replies; /* owned */
	int32_t fail;
	uint32_t txn;
};

/* A key a transaction may hold a lock on: where an ABORT would release it. */
struct held {
	uint64_t key;
	uint16_t vlen;
	uint8_t table, dest;
};

/* One transaction in flight. */
struct ctxn {
	PyObject *gen;     /* owned; NULL: the entry is free */
	PyObject *batch;   /* owned list or tuple: the requests of its current round */
	uint64_t id, start;
	uint64_t tolerate; /* bit s: a reply with status s goes to the transaction */
	struct held *held;
	uint32_t nheld, capheld;
	uint32_t next;     /* the free list, or the queue of batches waiting for room */
	uint16_t kind;
	int16_t ending;    /* NOT_ENDING; RELEASING; or aborting: the cause's label while its ABORTs are out */
	uint8_t recorded, must;
};

/* Outcomes of one transaction type, over the whole run or the window. */
struct kcounts {
	uint64_t started, committed;
	uint64_t aborts[MAX_LABELS], outcomes[MAX_LABELS];
};

typedef struct {
	PyObject_HEAD
	uint32_t client_id;
	int fds[MAX_DESTS];
	uint32_t ndests;
	uint32_t dest_inflight[MAX_DESTS];
	struct pollfd pfds[MAX_DESTS];
	/* requests in flight: slot i's datagram is slab[i * slot_bytes] */
	struct tslot *slots;
	char *slab;
	uint32_t slot_bytes, max_value;
	uint32_t mask, inflight, max_inflight, next_seq;
	struct tbatch *batches;
	uint32_t free_batch, nbatches_busy;
	uint32_t *sendq; /* slots to send (or send again) at the next flush */
	uint32_t nsendq;
	uint64_t timeout_ns, last_scan_ns;
	uint32_t max_retries;
	struct done *doneq; /* completed batches, in completion order */
	uint32_t ndone;
	struct counts c; /* request level; recorded = first sent inside the window */
	uint64_t batches_done;
	uint64_t ok_by_op[DINT_OP_MAX]; /* OK replies per operation, whole run */
	uint64_t *khist[TXN_KINDS];     /* latencies of committed transactions, per type */
	/* the executor (configure, drive) */
	PyObject *funcs, *params, *abort_cls, *batch_cls; /* owned */
	PyObject *labels[MAX_LABELS];                      /* owned str */
	uint32_t nlabels, nkinds, concurrency, active, free_txn;
	struct ctxn *txns;
	struct kcounts (*kc)[2]; /* [kind][0: whole run, 1: started in the window] */
	uint32_t wait_head, wait_tail, nwaiting;
	uint64_t txn_base;
	uint32_t next_txn;
	Py_ssize_t next_param;
	uint64_t params_wrapped, release_failures, resends;
	uint64_t interval_ns, next_due, late, skipped;
	uint64_t (*errors)[256]; /* [op][status] of the replies that aborted as "error" */
	int driving;
	char zeros[MAX_DGRAM];   /* the value of an ABORT */
	/* scratch */
	struct sender sd;
	struct receiver rv;
} TxnIO;

static void TxnIO_dealloc(TxnIO *self)
{
	if (self->batches) {
		for (uint32_t i = 0; i < self->max_inflight; i++) {
			Py_XDECREF(self->batches[i].tag);
			Py_XDECREF(self->batches[i].replies);
		}
	}
	for (uint32_t i = 0; i < self->ndone; i++) {
		Py_XDECREF(self->doneq[i].tag);
		Py_XDECREF(self->doneq[i].replies);
	}
	if (self->txns) {
		for (uint32_t i = 0; i < self->concurrency; i++) {
			Py_XDECREF(self->txns[i].gen);
			Py_XDECREF(self->txns[i].batch);
			PyMem_Free(self->txns[i].held);
		}
	}
	for (uint32_t i = 0; i < self->nlabels; i++)
		Py_XDECREF(self->labels[i]);
	Py_XDECREF(self->funcs);
	Py_XDECREF(self->params);
	Py_XDECREF(self->abort_cls);
	Py_XDECREF(self->batch_cls);
	PyMem_Free(self->txns);
	PyMem_Free(self->kc);
	PyMem_Free(self->errors);
	PyMem_Free(self->doneq);
	PyMem_Free(self->slots);
	PyMem_Free(self->slab);
	PyMem_Free(self->batches);
	PyMem_Free(self->sendq);
	PyMem_Free(self->c.hist);
	for (int k = 0; k < TXN_KINDS; k++)
		PyMem_Free(self->khist[k]);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int TxnIO_init(TxnIO *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "fds", "client_id", "timeout_ns", "max_retries", "max_inflight", "max_value",
				  "gso", NULL };
	PyObject *fds;
	unsigned int client_id, max_retries, max_inflight, max_value = 64;
	unsigned long long timeout_ns;

	if (self->slots) {
		PyErr_SetString(PyExc_RuntimeError, "TxnIO is initialised once");
		return -1;
	}
	self->sd.gso = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIKII|Ip", kwlist, &fds, &client_id, &timeout_ns,
					 &max_retries, &max_inflight, &max_value, &self->sd.gso))
		return -1;
	if (max_inflight < 1 || max_inflight > (1u << 20)) {
		PyErr_SetString(PyExc_ValueError, "max_inflight must be in 1..2^20 requests");
		return -1;
	}
	if (max_value > MAX_DGRAM - DINT_HDR_LEN) {
		PyErr_Format(PyExc_ValueError, "max_value must be at most %d bytes", MAX_DGRAM - DINT_HDR_LEN);
		return -1;
	}
	int nd = parse_fds(fds, self->fds, self->pfds);
	if (nd < 0)
		return -1;
	self->ndests = nd;
	self->client_id = client_id;
	self->timeout_ns = timeout_ns;
	self->max_retries = max_retries;
	self->max_inflight = max_inflight;
	self->max_value = max_value;
	self->slot_bytes = (DINT_HDR_LEN + max_value + 7) & ~7u;
	uint32_t size = 64;
	while (size < 2 * max_inflight)
		size <<= 1;
	self->mask = size - 1;
	self->slots = PyMem_Calloc(size, sizeof(struct tslot));
	self->slab = PyMem_Calloc(size, self->slot_bytes);
	self->sendq = PyMem_Calloc(size, sizeof(uint32_t));
	self->batches = PyMem_Calloc(max_inflight, sizeof(struct tbatch));
	self->doneq = PyMem_Calloc(max_inflight, sizeof(struct done));
	self->c.hist = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t));
	if (!self->slots || !self->slab || !self->sendq || !self->batches || !self->doneq || !self->c.hist) {
		PyErr_NoMemory();
		return -1;
	}
	for (uint32_t i = 0; i < max_inflight; i++)
		self->batches[i].next_free = i + 1;
	self->free_batch = 0;
	self->next_seq = 1;
	receiver_init(&self->rv);
	return 0;
}

static inline char *tslot_buf(TxnIO *self, uint32_t idx)
{
	return self->slab + (size_t)idx * self->slot_bytes;
}

/* ---- what a transaction may hold ---- */

static int held_find(const struct ctxn *t, uint8_t table, uint64_t key, uint8_t dest)
{
	for (uint32_t i = 0; i < t->nheld; i++)
		if (t->held[i].key == key && t->held[i].table == table && t->held[i].dest == dest)
			return (int)i;
	return -1;
}

static int held_add(struct ctxn *t, uint8_t table, uint64_t key, uint8_t dest, uint16_t vlen)
{
	if (held_find(t, table, key, dest) >= 0)
		return 0;
	if (t->nheld == t->capheld) {
		uint32_t cap = t->capheld ? 2 * t->capheld : 16;
		struct held *h = PyMem_Realloc(t->held, cap * sizeof(*h));
		if (!h) {
			PyErr_NoMemory();
			return -1;
		}
		t->held = h;
		t->capheld = cap;
	}
	t->held[t->nheld++] = (struct held){ .key = key, .vlen = vlen, .table = table, .dest = dest };
	return 0;
}

static void held_del(struct ctxn *t, uint8_t table, uint64_t key, uint8_t dest)
{
	int i = held_find(t, table, key, dest);
	if (i >= 0)
		t->held[i] = t->held[--t->nheld];
}

/* Slot s of a transaction's batch got status: a lock granted, or whose
 * request was given up (perhaps granted), or sent more than once (a later
 * copy may be granted after this answer) may be held; a commit or an abort
 * answered OK released it. */
static int track_held(TxnIO *self, struct ctxn *t, struct tslot *s, int status)
{
	const struct dint_hdr *h = (const void *)tslot_buf(self, (uint32_t)(s - self->slots));

	/* an INSERT of version 0 leaves its new row locked by the inserter */
	if (s->op == DINT_OP_LOCK_SHARED || s->op == DINT_OP_LOCK_EXCL || (s->op == DINT_OP_INSERT && !h->ver)) {
		if (status == DINT_ST_OK || status == TXN_TIMEOUT || s->retries)
			return held_add(t, h->table, be64toh(h->key), s->dest, s->len - DINT_HDR_LEN);
	} else if ((s->op == DINT_OP_COMMIT_PRIMARY || s->op == DINT_OP_ABORT) && status == DINT_ST_OK) {
		held_del(t, h->table, be64toh(h->key), s->dest);
	}
	return 0;
}

/* ---- batches ---- */

/* The batch's request in slot s is done: reply (status, ver, value) at its
 * position; the batch joins the completed ones when it was the last. */
static int tbatch_put(TxnIO *self, struct tslot *s, int status, uint32_t ver, const char *val, uint32_t vlen)
{
	struct tbatch *b = &self->batches[s->batch];
	PyObject *value;

	if (!b->tag && track_held(self, &self->txns[b->txn], s, status) < 0)
		return -1;
	if (val && status == DINT_ST_OK &&
	    (s->op == DINT_OP_READ || s->op == DINT_OP_LOCK_SHARED || s->op == DINT_OP_LOCK_EXCL)) {
		value = PyBytes_FromStringAndSize(val, vlen);
		if (!value)
			return -1;
	} else {
		value = Py_NewRef(Py_None);
	}
	PyObject *rep = PyTuple_New(3), *st = rep ? PyLong_FromLong(status) : NULL,
		 *v = st ? PyLong_FromUnsignedLong(ver) : NULL;
	if (!v) {
		Py_XDECREF(rep);
		Py_XDECREF(st);
		Py_DECREF(value);
		return -1;
	}
	PyTuple_SET_ITEM(rep, 0, st);
	PyTuple_SET_ITEM(rep, 1, v);
	PyTuple_SET_ITEM(rep, 2, value);
	PyList_SET_ITEM(b->replies, s->pos, rep); /* steals rep; the position was empty */
	if (status != DINT_ST_OK && (b->fail < 0 || s->pos < b->fail))
		b->fail = s->pos;
	if (--b->remaining)
		return 0;
	self->doneq[self->ndone++] = (struct done){ .tag = b->tag, .replies = b->replies, .fail = b->fail,
						    .txn = b->txn };
	b->tag = b->replies = NULL; /* both now owned by the queue */
	b->next_free = self->free_batch;
	self->free_batch = s->batch;
	self->nbatches_busy--;
	self->batches_done++;
	return 0;
}

static inline void tslot_release(TxnIO *self, struct tslot *s)
{
	s->busy = 0;
	self->inflight--;
	self->dest_inflight[s->dest]--;
}

/* Takes a free batch for n requests (the caller checked there is room). */
static uint32_t tbatch_open(TxnIO *self, PyObject *tag, uint32_t txn, PyObject *replies, uint32_t n)
{
	uint32_t bi = self->free_batch; /* there is one: fewer batches than requests in flight */
	struct tbatch *b = &self->batches[bi];

	self->free_batch = b->next_free;
	self->nbatches_busy++;
	b->tag = tag ? Py_NewRef(tag) : NULL;
	b->txn = txn;
	b->replies = replies;
	b->remaining = n;
	b->fail = -1;
	return bi;
}

/* Gives back a batch opened but not sent (a bad request). */
static void tbatch_abandon(TxnIO *self, uint32_t bi)
{
	struct tbatch *b = &self->batches[bi];

	Py_CLEAR(b->tag);
	Py_CLEAR(b->replies);
	b->next_free = self->free_batch;
	self->free_batch = bi;
	self->nbatches_busy--;
}

/* Writes request pos of batch bi into a free slot and queues it to be sent. */
static void stage_request(TxnIO *self, uint32_t bi, uint32_t pos, uint8_t op, uint8_t table, uint64_t key,
			  const char *val, uint32_t vlen, uint32_t ver, uint8_t dest, uint64_t txn, uint64_t t)
{
	uint32_t sq = self->next_seq;
	while (self->slots[sq & self->mask].busy)
		sq++;
	self->next_seq = sq + 1;
	uint32_t idx = sq & self->mask;
	struct tslot *s = &self->slots[idx];
	struct dint_hdr *h = (void *)tslot_buf(self, idx);

	h->magic = htons(DINT_MAGIC);
	h->proto = DINT_PROTO_VERSION;
	h->op = op;
	h->status = DINT_ST_REQUEST;
	h->table = table;
	h->val_len = htons(vlen);
	h->client_id = htonl(self->client_id);
	h->seq = htonl(sq);
	h->txn = htobe64(txn);
	h->key = htobe64(key);
	h->ver = htonl(ver);
	memcpy(h + 1, val, vlen);
	s->seq = sq;
	s->batch = bi;
	s->pos = pos;
	s->len = DINT_HDR_LEN + vlen;
	s->dest = dest;
	s->op = op;
	s->busy = 1;
	s->retries = 0;
	s->first_ns = s->last_ns = t;
	s->recorded = t >= self->c.win_from && t < self->c.win_until;
	self->c.rec_started += s->recorded;
	self->inflight++;
	self->dest_inflight[dest]++;
	self->sendq[self->nsendq++] = idx;
}

/* Queues the requests of reqs (a list or tuple of (op, table, key, value,
 * ver[, dest]) tuples; dest defaults to key % servers) as one batch, sent
 * with transaction id txn and handed back with tag (or to transaction
 * txn_index when tag is NULL). -1 with an exception set, nothing queued, if
 * a request is malformed. */
static int submit_requests(TxnIO *self, PyObject *tag, uint32_t txn_index, uint64_t txn, PyObject *reqs)
{
	Py_ssize_t n = PySequence_Fast_GET_SIZE(reqs);
	if (n < 1 || n > 65535 || self->inflight + n > self->max_inflight) {
		PyErr_Format(n < 1 ? PyExc_ValueError : PyExc_RuntimeError,
			     n < 1 ? "a batch holds at least one request" :
				     "%zd more requests would exceed max_inflight (%u; %u in flight)",
			     n, self->max_inflight, self->inflight);
		return -1;
	}
	PyObject *replies = PyList_New(n);
	if (!replies)
		return -1;
	uint32_t bi = tbatch_open(self, tag, txn_index, replies, n);
	uint32_t q0 = self->nsendq, seq0 = self->next_seq;
	uint64_t rec0 = self->c.rec_started;
	PyObject **items = PySequence_Fast_ITEMS(reqs);
	uint64_t t = now_ns();

	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *r = items[i];
		Py_ssize_t nf = PyTuple_Check(r) ? PyTuple_GET_SIZE(r) : 0;
		if (nf != 5 && nf != 6) {
			PyErr_Format(PyExc_TypeError, "request %zd: a tuple (op, table, key, value, ver[, dest])", i);
			goto fail;
		}
		unsigned long op = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 0));
		unsigned long table = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 1));
		unsigned long long key = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(r, 2));
		PyObject *value = PyTuple_GET_ITEM(r, 3);
		unsigned long ver = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 4));
		unsigned long dest = nf == 6 ? PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 5)) :
					       (unsigned long)(key % self->ndests);
		if (PyErr_Occurred()) {
			PyErr_Format(PyExc_ValueError, "request %zd: op, table, key, ver and dest are unsigned integers",
				     i);
			goto fail;
		}
		if (op == 0 || op >= DINT_OP_MAX || table > 255 || ver > UINT32_MAX || dest >= self->ndests) {
			PyErr_Format(PyExc_ValueError, "request %zd: op %lu, table %lu, ver %lu or dest %lu out of range",
				     i, op, table, ver, dest);
			goto fail;
		}
		if (!PyBytes_Check(value) || (uint64_t)PyBytes_GET_SIZE(value) > self->max_value) {
			PyErr_Format(PyExc_ValueError, "request %zd: value must be bytes of at most %u", i,
				     self->max_value);
			goto fail;
		}
		stage_request(self, bi, i, op, table, key, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), ver,
			      dest, txn, t);
	}
	return 0;
fail: /* nothing of this batch was sent: give its slots back */
	while (self->nsendq > q0)
		tslot_release(self, &self->slots[self->sendq[--self->nsendq]]);
	self->next_seq = seq0;
	self->c.rec_started = rec0;
	tbatch_abandon(self, bi);
	return -1;
}

/* submit(tag, txn, requests): queues one batch for the next run(). */
static PyObject *TxnIO_submit(TxnIO *self, PyObject *args)
{
	PyObject *tag, *reqs;
	unsigned long long txn;

	if (!PyArg_ParseTuple(args, "OKO", &tag, &txn, &reqs))
		return NULL;
	if (self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "submit() is not for a TxnIO that drives transactions");
		return NULL;
	}
	PyObject *seq = PySequence_Fast(reqs, "requests must be a sequence of tuples");
	if (!seq)
		return NULL;
	int rc = submit_requests(self, tag, 0, txn, seq);
	Py_DECREF(seq);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* ---- the wire ---- */

/* Sends every queued slot, BATCH at a time, grouped per server. */
static int txn_flush(TxnIO *self)
{
	uint32_t q = 0;

	while (q < self->nsendq) {
		int k = 0;
		for (; q < self->nsendq && k < BATCH; q++) {
			struct tslot *s = &self->slots[self->sendq[q]];
			self->sd.iov[k].iov_base = tslot_buf(self, self->sendq[q]);
			self->sd.iov[k].iov_len = s->len;
			self->sd.dest[k++] = s->dest;
		}
		if (send_grouped(self->fds, &self->sd, k, &self->c.send_failed) < 0)
			return -1;
		self->c.sent += k;
	}
	self->nsendq = 0;
	return 0;
}

/* Queues overdue requests again (same request id); gives up after
 * max_retries, which completes them with status TIMEOUT. */
static int txn_scan_timeouts(TxnIO *self, uint64_t t)
{
	self->last_scan_ns = t;
	for (uint32_t i = 0; i <= self->mask; i++) {
		struct tslot *s = &self->slots[i];
		if (!s->busy || t - s->last_ns < self->timeout_ns)
			continue;
		if (s->retries >= self->max_retries) {
			self->c.lost += s->recorded;
			tslot_release(self, s);
			if (tbatch_put(self, s, TXN_TIMEOUT, 0, NULL, 0) < 0)
				return -1;
			continue;
		}
		s->retries++;
		s->last_ns = t;
		self->c.retransmits++;
		self->sendq[self->nsendq++] = i;
	}
	return txn_flush(self);
}

static int txn_match(TxnIO *self, int n, uint64_t t)
{
	int matched = 0;

	for (int i = 0; i < n; i++) {
		const struct dint_hdr *h = (const void *)self->rv.buf[i];
		uint32_t seq;
		if (!reply_seq(&self->c, &self->rv.msg[i], h, self->client_id, &seq))
			continue;
		struct tslot *s = &self->slots[seq & self->mask];
		if (!s->busy || s->seq != seq) {
			self->c.stray++; /* a duplicate, or the answer to a request given up */
			continue;
		}
		self->c.replies++;
		if (busy_retry(h, &s->last_ns, t, self->timeout_ns, &self->c.busy))
			continue;
		if (h->status == DINT_ST_OK && s->op < DINT_OP_MAX)
			self->ok_by_op[s->op]++;
		count_answer(&self->c, s->recorded, h->status, s->first_ns, t);
		uint32_t vlen = self->rv.msg[i].msg_len - DINT_HDR_LEN;
		tslot_release(self, s);
		if (tbatch_put(self, s, h->status, ntohl(h->ver), (const char *)(h + 1), vlen) < 0)
			return -1;
		matched++;
	}
	return matched;
}

/* Reads what has arrived; when nothing has, waits in ppoll up to about a
 * millisecond (less if until_ns is nearer). */
static int txn_receive(TxnIO *self, uint64_t until)
{
	int matched = 0;

	for (uint32_t d = 0; d < self->ndests; d++) {
		if (!self->dest_inflight[d])
			continue;
		int n = recv_batch(self->fds[d], &self->rv, MSG_DONTWAIT);
		if (n < 0)
			return -1;
		if (n && (n = txn_match(self, n, now_ns())) < 0)
			return -1;
		matched += n;
	}
	if (matched)
		return matched;
	uint64_t t0 = now_ns();
	uint64_t wait = until > t0 ? until - t0 : 0;
	return wait_replies(&self->c, self->pfds, self->ndests, wait < 1000000 ? wait : 1000000);
}

/* Sends what was queued, then receives and retransmits until at least one
 * batch is complete, nothing is in flight, or the clock reaches until. */
static int io_round(TxnIO *self, uint64_t until)
{
	uint32_t iter = 0;

	for (;;) {
		if (self->nsendq && txn_flush(self) < 0)
			return -1;
		uint64_t t = now_ns();
		if (t - self->last_scan_ns > 1000000 && txn_scan_timeouts(self, t) < 0)
			return -1;
		if (self->ndone || t >= until || !self->inflight)
			return 0;
		if (txn_receive(self, until) < 0)
			return -1;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return -1;
	}
}

/* run(until_ns) -> [(tag, replies, fail)]: sends what was submitted, then
 * receives and retransmits until at least one batch is complete, nothing is
 * in flight, or the clock reaches until_ns. replies lists (status, ver,
 * value) in request order (value: bytes for an answered READ or granted
 * lock, else None); fail is the position of the first reply whose status is
 * not OK, or -1. */
static PyObject *TxnIO_run(TxnIO *self, PyObject *args)
{
	unsigned long long until;

	if (!PyArg_ParseTuple(args, "K", &until))
		return NULL;
	if (self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "run() is not for a TxnIO that drives transactions: drive()");
		return NULL;
	}
	if (io_round(self, until) < 0 || PyErr_CheckSignals() < 0)
		return NULL;
	PyObject *out = PyList_New(self->ndone);
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < self->ndone; i++) {
		struct done *d = &self->doneq[i];
		PyObject *item = Py_BuildValue("(NNi)", d->tag, d->replies, d->fail); /* takes both references */
		if (!item) {
			Py_DECREF(out);
			return NULL; /* the rest stay queued */
		}
		PyList_SET_ITEM(out, i, item);
		d->tag = d->replies = NULL;
	}
	self->ndone = 0;
	return out;
}

/* ---- the executor ---- */

/* The label index of str s (an abort cause or an outcome), added if new. */
static int label_of(TxnIO *self, PyObject *s)
{
	for (uint32_t i = 0; i < self->nlabels; i++)
		if (self->labels[i] == s)
			return (int)i;
	for (uint32_t i = 0; i < self->nlabels; i++) {
		int eq = PyUnicode_Compare(self->labels[i], s);
		if (eq == 0)
			return (int)i;
		if (eq == -1 && PyErr_Occurred())
			return -1;
	}
	if (self->nlabels == MAX_LABELS) {
		PyErr_Format(PyExc_RuntimeError, "more than %d distinct abort causes and outcome labels", MAX_LABELS);
		return -1;
	}
	self->labels[self->nlabels] = Py_NewRef(s);
	return (int)self->nlabels++;
}

/* The abort cause of a rejected request (txn.CAUSES). */
static int cause_of(int op, int status)
{
	if (status == TXN_TIMEOUT)
		return CAUSE_TIMEOUT;
	if (op == DINT_OP_VALIDATE || status == DINT_ST_STALE)
		return CAUSE_VALIDATION;
	if (status == DINT_ST_LOCKED || (status == DINT_ST_FULL && op == DINT_OP_LOCK_SHARED))
		return CAUSE_LOCK;
	return CAUSE_ERROR;
}

static inline int reply_status(PyObject *replies, Py_ssize_t i)
{
	return (int)PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(replies, i), 0));
}

static void txn_free(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];

	Py_CLEAR(t->gen);
	Py_CLEAR(t->batch);
	t->nheld = 0;
	t->next = self->free_txn;
	self->free_txn = ti;
	self->active--;
}

static int txn_release(TxnIO *self, uint32_t ti, int ending);

/* The transaction ended: committed (cause < 0, outcome its return value)
 * or aborted with cause. A committed one still holding something (see the
 * top) is counted now and releases it before its place is free. */
static int txn_finish(TxnIO *self, uint32_t ti, int cause, PyObject *outcome)
{
	struct ctxn *t = &self->txns[ti];
	struct kcounts *all = &self->kc[t->kind][0], *win = t->recorded ? &self->kc[t->kind][1] : NULL;
	int rc = 0;

	if (cause < 0) {
		int label = outcome && PyUnicode_CheckExact(outcome) ? label_of(self, outcome) : -1;
		if (label < 0 && PyErr_Occurred())
			rc = -1;
		all->committed++;
		if (label >= 0)
			all->outcomes[label]++;
		if (win) {
			win->committed++;
			if (label >= 0)
				win->outcomes[label]++;
			uint64_t *h = self->khist[t->kind];
			if (!h && !(h = self->khist[t->kind] = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t)))) {
				PyErr_NoMemory();
				rc = -1;
			} else {
				h[hist_index(now_ns() - t->start)]++;
			}
		}
	} else {
		all->aborts[cause]++;
		if (win)
			win->aborts[cause]++;
	}
	if (cause < 0 && t->nheld)
		return txn_release(self, ti, RELEASING) < 0 ? -1 : rc;
	txn_free(self, ti);
	return rc;
}

/* Sends the transaction's current batch (its ABORTs while ending). */
static int txn_send(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];

	if (t->ending == NOT_ENDING)
		return submit_requests(self, NULL, ti, t->id, t->batch);
	PyObject *replies = PyList_New(t->nheld);
	if (!replies)
		return -1;
	uint32_t bi = tbatch_open(self, NULL, ti, replies, t->nheld);
	uint64_t now = now_ns();
	for (uint32_t i = 0; i < t->nheld; i++) {
		const struct held *h = &t->held[i];
		stage_request(self, bi, i, DINT_OP_ABORT, h->table, h->key, self->zeros, h->vlen, 0, h->dest, t->id,
			      now);
	}
	return 0;
}

static inline uint32_t txn_batch_len(const struct ctxn *t)
{
	return t->ending != NOT_ENDING ? t->nheld : (uint32_t)PySequence_Fast_GET_SIZE(t->batch);
}

/* Sends the transaction's batch, or holds it back (in order) while the
 * requests in flight leave no room for it: big batches (a TPC-C commit logs
 * hundreds of rows) wait instead of failing. */
static int txn_submit(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];
	uint32_t n = txn_batch_len(t);

	if (n > self->max_inflight) {
		PyErr_Format(PyExc_ValueError,
			     "a batch of %u requests is more than the %u this client can have in flight; raise the "
			     "concurrency or split the batch", n, self->max_inflight);
		return -1;
	}
	if (self->nwaiting || self->inflight + n > self->max_inflight) {
		t->next = UINT32_MAX;
		if (self->nwaiting++)
			self->txns[self->wait_tail].next = ti;
		else
			self->wait_head = ti;
		self->wait_tail = ti;
		return 0;
	}
	return txn_send(self, ti);
}

/* Sends held-back batches while there is room, in the order they came. */
static int admit_waiting(TxnIO *self)
{
	while (self->nwaiting) {
		uint32_t ti = self->wait_head;
		if (self->inflight + txn_batch_len(&self->txns[ti]) > self->max_inflight)
			return 0;
		self->wait_head = self->txns[ti].next;
		self->nwaiting--;
		if (txn_send(self, ti) < 0)
			return -1;
	}
	return 0;
}

/* Sends ABORT to every key the transaction may hold; it ends (ending: a
 * cause, or RELEASING) when they are answered. */
static int txn_release(TxnIO *self, uint32_t ti, int ending)
{
	struct ctxn *t = &self->txns[ti];

	t->ending = (int16_t)ending;
	Py_CLEAR(t->batch);
	t->must = 0;
	t->tolerate = 0;
	return txn_submit(self, ti);
}

/* Aborts: ABORT to every key it may hold, then finish with cause. */
static int txn_abort(TxnIO *self, uint32_t ti, int cause)
{
	if (!self->txns[ti].nheld)
		return txn_finish(self, ti, cause, NULL);
	return txn_release(self, ti, cause);
}

/* Takes what the generator yielded as its next batch. */
static int txn_take_batch(TxnIO *self, struct ctxn *t, PyObject *yielded)
{
	uint64_t tolerate = 0;
	int must = 0;

	int is_batch = PyList_CheckExact(yielded) || PyTuple_CheckExact(yielded) ? 0 :
		       PyObject_IsInstance(yielded, self->batch_cls);
	if (is_batch < 0)
		return -1;
	if (is_batch) {
		PyObject *mask = PyObject_GetAttrString(yielded, "mask");
		PyObject *m = mask ? PyObject_GetAttrString(yielded, "must") : NULL;
		tolerate = mask ? PyLong_AsUnsignedLongLong(mask) : 0;
		must = m ? PyObject_IsTrue(m) : -1;
		Py_XDECREF(mask);
		Py_XDECREF(m);
		if (must < 0 || PyErr_Occurred())
			return -1;
	}
	PyObject *seq = PySequence_Fast(yielded, "a transaction yields a list of requests");
	if (!seq)
		return -1;
	Py_XSETREF(t->batch, seq);
	t->tolerate = tolerate;
	t->must = must;
	return 0;
}

/* Resumes the transaction with the replies to its last batch (None to
 * start it) and sends what it yields next; it may finish or abort instead. */
static int txn_step(TxnIO *self, uint32_t ti, PyObject *replies)
{
	struct ctxn *t = &self->txns[ti];
	PyObject *result;
	PySendResult r = PyIter_Send(t->gen, replies ? replies : Py_None, &result);

	if (r == PYGEN_RETURN) {
		int rc = txn_finish(self, ti, -1, result);
		Py_DECREF(result);
		return rc;
	}
	if (r == PYGEN_NEXT) {
		int rc = txn_take_batch(self, t, result);
		Py_DECREF(result);
		return rc < 0 ? -1 : txn_submit(self, ti);
	}
	if (!PyErr_ExceptionMatches(self->abort_cls))
		return -1; /* a bug in the transaction: the run stops with it */
	PyObject *type, *exc, *tb;
	PyErr_Fetch(&type, &exc, &tb);
	PyErr_NormalizeException(&type, &exc, &tb);
	PyObject *cause = exc ? PyObject_GetAttrString(exc, "cause") : NULL;
	int label = -1;
	if (cause && !PyUnicode_Check(cause))
		PyErr_Format(PyExc_TypeError, "Abort's cause must be a str, not %.100s", Py_TYPE(cause)->tp_name);
	else if (cause)
		label = label_of(self, cause);
	Py_XDECREF(cause);
	Py_XDECREF(type);
	Py_XDECREF(exc);
	Py_XDECREF(tb);
	return label < 0 ? -1 : txn_abort(self, ti, label);
}

/* A batch of the transaction completed: replies, fail the first position
 * not OK (or -1). */
static int txn_advance(TxnIO *self, uint32_t ti, PyObject *replies, int fail)
{
	struct ctxn *t = &self->txns[ti];
	Py_ssize_t n = PyList_GET_SIZE(replies);

	if (t->ending != NOT_ENDING) { /* the replies to its ABORTs */
		if (fail >= 0) /* given up (or refused): a lock may be left held */
			for (Py_ssize_t i = 0; i < n; i++)
				self->release_failures += reply_status(replies, i) != DINT_ST_OK;
		if (t->ending == RELEASING) { /* committed and counted already */
			txn_free(self, ti);
			return 0;
		}
		return txn_finish(self, ti, t->ending, NULL);
	}
	if (fail >= 0 && t->must) {
		for (Py_ssize_t i = 0; i < n; i++) {
			if (reply_status(replies, i) == TXN_TIMEOUT) { /* after the commit point: again, until answered */
				self->resends++;
				return txn_submit(self, ti);
			}
		}
	}
	if (fail >= 0 && t->tolerate) {
		fail = -1;
		for (Py_ssize_t i = 0; i < n && fail < 0; i++) {
			int st = reply_status(replies, i);
			if (st != DINT_ST_OK && !(st < 64 && (t->tolerate >> st & 1)))
				fail = (int)i;
		}
	}
	if (fail < 0)
		return txn_step(self, ti, replies);
	PyObject *req = PySequence_Fast_GET_ITEM(t->batch, fail);
	int op = (int)PyLong_AsLong(PyTuple_GET_ITEM(req, 0)), status = reply_status(replies, fail);
	int cause = cause_of(op, status);
	if (cause == CAUSE_ERROR && op > 0 && op < DINT_OP_MAX)
		self->errors[op][status & 255]++;
	PyObject *closed = PyObject_CallMethod(t->gen, "close", NULL);
	if (!closed)
		return -1;
	Py_DECREF(closed);
	return txn_abort(self, ti, cause);
}

/* Starts the next transaction now; its latency counts from due (when it
 * was due, in an open loop), and due decides whether the window records it. */
static int txn_start(TxnIO *self, uint64_t due)
{
	Py_ssize_t pi = self->next_param;
	PyObject *item = PyList_GET_ITEM(self->params, pi);

	if (++self->next_param == PyList_GET_SIZE(self->params)) {
		self->next_param = 0;
		self->params_wrapped++;
	}
	long kind = -1;
	PyObject *args = NULL;
	if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
		kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
		args = PyTuple_GET_ITEM(item, 1);
	}
	if (kind < 0 || kind >= (long)self->nkinds || !PyTuple_Check(args)) {
		PyErr_Clear();
		PyErr_Format(PyExc_ValueError, "parameters %zd: not (type index 0..%u, args tuple)", pi,
			     self->nkinds - 1);
		return -1;
	}
	self->next_txn = (self->next_txn + 1) & 0xFFFFFFFFu;
	if (!self->next_txn)
		self->next_txn = 1; /* 0 means "no transaction" */
	PyObject *gen = PyObject_Call(PyList_GET_ITEM(self->funcs, kind), args, NULL);
	if (!gen)
		return -1;
	if (!PyGen_Check(gen) && !PyCoro_CheckExact(gen) && !PyObject_HasAttrString(gen, "send")) {
		PyErr_Format(PyExc_TypeError, "transaction type %ld returned %.100s, not a generator", kind,
			     Py_TYPE(gen)->tp_name);
		Py_DECREF(gen);
		return -1;
	}
	uint32_t ti = self->free_txn; /* there is one: fewer active than the concurrency */
	struct ctxn *t = &self->txns[ti];
	self->free_txn = t->next;
	self->active++;
	t->gen = gen;
	t->batch = NULL;
	t->id = self->txn_base | self->next_txn;
	t->start = due;
	t->kind = (uint16_t)kind;
	t->recorded = due >= self->c.win_from && due < self->c.win_until;
	t->ending = NOT_ENDING;
	t->nheld = 0;
	t->tolerate = 0;
	t->must = 0;
	self->kc[kind][0].started++;
	if (t->recorded)
		self->kc[kind][1].started++;
	return txn_step(self, ti, NULL);
}

/* Open loop: starts the transactions due by now while there is room. */
static int issue_due(TxnIO *self, uint64_t now)
{
	if (!self->next_due)
		self->next_due = now;
	if (self->next_due < self->c.win_from && self->c.win_from <= now) {
		/* the warm-up's backlog stays out of the window */
		self->skipped += (self->c.win_from - self->next_due) / self->interval_ns;
		self->next_due = self->c.win_from;
	}
	while (self->active < self->concurrency && self->next_due <= now) {
		uint64_t due = self->next_due;
		self->next_due += self->interval_ns;
		if (now - due > LATE_NS && due >= self->c.win_from && due < self->c.win_until)
			self->late++;
		if (txn_start(self, due) < 0)
			return -1;
	}
	return 0;
}

/* Hands each completed batch to its transaction. */
static int process_done(TxnIO *self)
{
	uint32_t n = self->ndone, i;
	int rc = 0;

	self->ndone = 0;
	for (i = 0; i < n && rc == 0; i++) {
		struct done *d = &self->doneq[i];
		rc = txn_advance(self, d->txn, d->replies, d->fail);
		Py_CLEAR(d->replies);
	}
	for (; i < n; i++) /* after an error, what was not handed over is dropped */
		Py_CLEAR(self->doneq[i].replies);
	return rc;
}

static int sleep_for(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	Py_BEGIN_ALLOW_THREADS
	nanosleep(&ts, NULL);
	Py_END_ALLOW_THREADS
	return PyErr_CheckSignals();
}

static int drive_loop(TxnIO *self, uint64_t until, int issue_new)
{
	int open_loop = issue_new && self->interval_ns;
	uint32_t iter = 0;

	for (;;) {
		uint64_t now = now_ns();
		if (open_loop) {
			if (issue_due(self, now) < 0)
				return -1;
		} else if (issue_new) {
			/* at most one start per free place a round, so transactions
			 * that end at once cannot keep the loop from the clock */
			for (uint32_t n = self->concurrency - self->active; n && self->active < self->concurrency; n--)
				if (txn_start(self, now) < 0)
					return -1;
		} else if (!self->active) {
			return 0;
		}
		if (now >= until)
			return 0;
		uint64_t wake = until;
		if (open_loop && self->active < self->concurrency) {
			if (self->next_due < wake)
				wake = self->next_due;
			if (!self->active && wake > now && wake - now > SLEEP_NS) { /* idle until the next is due */
				if (sleep_for(wake - now - SLEEP_NS / 2) < 0)
					return -1;
				continue;
			}
		}
		if (io_round(self, wake) < 0 || process_done(self) < 0 || admit_waiting(self) < 0)
			return -1;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return -1;
	}
}

/* configure(funcs, params, concurrency, interval_ns, abort, batch): makes
 * this TxnIO an executor. funcs[k](*args) returns transaction type k's
 * generator; params is a list of (k, args) taken in turn (cycled);
 * concurrency transactions run at once (with interval_ns > 0, one is due
 * every interval_ns and concurrency caps those in flight); abort is the
 * exception class a transaction raises to abort, batch the list subclass
 * with `mask` (statuses tolerated) and `must` (resend after a timeout). */
static PyObject *TxnIO_configure(TxnIO *self, PyObject *args)
{
	PyObject *funcs, *params, *abort_cls, *batch_cls;
	unsigned int concurrency;
	unsigned long long interval_ns;

	if (!PyArg_ParseTuple(args, "O!O!IKOO", &PyList_Type, &funcs, &PyList_Type, &params, &concurrency,
			      &interval_ns, &abort_cls, &batch_cls))
		return NULL;
	if (self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "configure() is called once");
		return NULL;
	}
	Py_ssize_t nk = PyList_GET_SIZE(funcs);
	if (nk < 1 || nk > TXN_KINDS) {
		PyErr_Format(PyExc_ValueError, "1 to %d transaction types", TXN_KINDS);
		return NULL;
	}
	if (!PyList_GET_SIZE(params)) {
		PyErr_SetString(PyExc_ValueError, "no transaction parameters");
		return NULL;
	}
	if (concurrency < 1 || concurrency > self->max_inflight) {
		PyErr_Format(PyExc_ValueError, "concurrency must be in 1..%u", self->max_inflight);
		return NULL;
	}
	if (!PyType_Check(abort_cls) || !PyType_Check(batch_cls)) {
		PyErr_SetString(PyExc_TypeError, "abort and batch must be classes");
		return NULL;
	}
	self->kc = PyMem_Calloc(nk, sizeof(*self->kc));
	self->errors = PyMem_Calloc(DINT_OP_MAX, sizeof(*self->errors));
	struct ctxn *txns = PyMem_Calloc(concurrency, sizeof(struct ctxn));
	if (!self->kc || !self->errors || !txns) {
		PyMem_Free(txns);
		return PyErr_NoMemory();
	}
	for (int i = 0; i < NCAUSES; i++) {
		PyObject *s = PyUnicode_InternFromString(cause_names[i]);
		if (!s) {
			PyMem_Free(txns);
			return NULL;
		}
		self->labels[self->nlabels++] = s;
	}
	for (uint32_t i = 0; i < concurrency; i++)
		txns[i].next = i + 1;
	self->txns = txns;
	self->concurrency = concurrency;
	self->nkinds = nk;
	self->funcs = Py_NewRef(funcs);
	self->params = Py_NewRef(params);
	self->abort_cls = Py_NewRef(abort_cls);
	self->batch_cls = Py_NewRef(batch_cls);
	self->interval_ns = interval_ns;
	self->txn_base = (uint64_t)self->client_id << 32;
	Py_RETURN_NONE;
}

/* drive(until_ns, issue_new): runs transactions until the clock reaches
 * until_ns; without issuing new ones, also stops when none is in flight. */
static PyObject *TxnIO_drive(TxnIO *self, PyObject *args)
{
	unsigned long long until;
	int issue_new;

	if (!PyArg_ParseTuple(args, "Kp", &until, &issue_new))
		return NULL;
	if (!self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "drive() needs configure() first");
		return NULL;
	}
	if (self->driving) {
		PyErr_SetString(PyExc_RuntimeError, "drive() is already running");
		return NULL;
	}
	self->driving = 1;
	int rc = drive_loop(self, until, issue_new);
	self->driving = 0;
	if (rc < 0 || PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* {label: count} of the nonzero counts. */
static PyObject *label_counts(TxnIO *self, const uint64_t *counts)
{
	PyObject *d = PyDict_New();
	for (uint32_t i = 0; d && i < self->nlabels; i++) {
		if (!counts[i])
			continue;
		PyObject *v = PyLong_FromUnsignedLongLong(counts[i]);
		if (!v || PyDict_SetItem(d, self->labels[i], v) < 0)
			Py_CLEAR(d);
		Py_XDECREF(v);
	}
	return d;
}

/* results() -> the executor's counts: {"types": [(whole run, window)] with
 * each {"started", "committed", "aborts": {cause: n}, "outcomes": {label:
 * n}}, "errors": {(op, status): n}, "active", "waiting", "release_failures",
 * "resends", "params_wrapped", "open_loop_late", "open_loop_skipped"}. */
static PyObject *TxnIO_results(TxnIO *self, PyObject *Py_UNUSED(unused))
{
	if (!self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "results() needs configure() first");
		return NULL;
	}
	PyObject *types = PyList_New(self->nkinds), *errors = types ? PyDict_New() : NULL;
	if (!errors) {
		Py_XDECREF(types);
		return NULL;
	}
	for (uint32_t k = 0; k < self->nkinds; k++) {
		PyObject *pair = PyTuple_New(2);
		if (!pair)
			goto fail;
		PyList_SET_ITEM(types, k, pair);
		for (int s = 0; s < 2; s++) {
			const struct kcounts *kc = &self->kc[k][s];
			PyObject *d = Py_BuildValue("{sKsKsNsN}", "started", kc->started, "committed", kc->committed,
						    "aborts", label_counts(self, kc->aborts), "outcomes",
						    label_counts(self, kc->outcomes));
			if (!d)
				goto fail;
			PyTuple_SET_ITEM(pair, s, d);
		}
	}
	for (int op = 0; op < DINT_OP_MAX; op++) {
		for (int st = 0; st < 256; st++) {
			if (!self->errors[op][st])
				continue;
			PyObject *key = Py_BuildValue("(ii)", op, st), *v = PyLong_FromUnsignedLongLong(self->errors[op][st]);
			int bad = !key || !v || PyDict_SetItem(errors, key, v) < 0;
			Py_XDECREF(key);
			Py_XDECREF(v);
			if (bad)
				goto fail;
		}
	}
	return Py_BuildValue("{sNsNsIsIsKsKsKsKsK}", "types", types, "errors", errors, "active", self->active,
			     "waiting", self->nwaiting, "release_failures", self->release_failures, "resends",
			     self->resends, "params_wrapped", self->params_wrapped, "open_loop_late", self->late,
			     "open_loop_skipped", self->skipped);
fail:
	Py_DECREF(types);
	Py_DECREF(errors);
	return NULL;
}

/* ---- counters ---- */

static PyObject *TxnIO_set_window(TxnIO *self, PyObject *args)
{
	return set_window(&self->c, args);
}

/* record(kind, ns): one latency into histogram kind (0..TXN_KINDS-1). */
static PyObject *TxnIO_record(TxnIO *self, PyObject *args)
{
	int kind;
	unsigned long long ns;

	if (!PyArg_ParseTuple(args, "iK", &kind, &ns))
		return NULL;
	if (kind < 0 || kind >= TXN_KINDS) {
		PyErr_Format(PyExc_ValueError, "kind must be in 0..%d", TXN_KINDS - 1);
		return NULL;
	}
	if (!self->khist[kind] && !(self->khist[kind] = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t))))
		return PyErr_NoMemory();
	self->khist[kind][hist_index(ns)]++;
	Py_RETURN_NONE;
}

/* histogram(kind=-1): [(ns, count)]; -1: request round trips (recorded, OK). */
static PyObject *TxnIO_histogram(TxnIO *self, PyObject *args)
{
	int kind = -1;

	if (!PyArg_ParseTuple(args, "|i", &kind))
		return NULL;
	if (kind < -1 || kind >= TXN_KINDS) {
		PyErr_Format(PyExc_ValueError, "kind must be in -1..%d", TXN_KINDS - 1);
		return NULL;
	}
	return hist_pairs(kind < 0 ? self->c.hist : self->khist[kind]);
}

/* Loop's counters, and: batches (completed), batches_inflight, ok_by_op. */
static PyObject *TxnIO_stats(TxnIO *self, PyObject *Py_UNUSED(unused))
{
	PyObject *d = counts_stats(&self->c, self->inflight, self->sd.gso);
	PyObject *done = d ? PyLong_FromUnsignedLongLong(self->batches_done) : NULL;
	PyObject *busy = done ? PyLong_FromUnsignedLong(self->nbatches_busy) : NULL;
	PyObject *by_op = busy ? counts_dict(self->ok_by_op, DINT_OP_MAX) : NULL;
	int bad = !by_op || PyDict_SetItemString(d, "batches", done) < 0 ||
		  PyDict_SetItemString(d, "batches_inflight", busy) < 0 ||
		  PyDict_SetItemString(d, "ok_by_op", by_op) < 0;

	Py_XDECREF(done);
	Py_XDECREF(busy);
	Py_XDECREF(by_op);
	if (bad) {
		Py_XDECREF(d);
		return NULL;
	}
	return d;
}

static PyMethodDef TxnIO_methods[] = {
	{ "submit", (PyCFunction)TxnIO_submit, METH_VARARGS,
	  "submit(tag, txn, requests): queue a batch of (op, table, key, value, ver[, dest]) tuples" },
	{ "run", (PyCFunction)TxnIO_run, METH_VARARGS,
	  "run(until_ns) -> [(tag, replies, fail)]: the batches completed" },
	{ "configure", (PyCFunction)TxnIO_configure, METH_VARARGS,
	  "configure(funcs, params, concurrency, interval_ns, abort, batch): drive transactions" },
	{ "drive", (PyCFunction)TxnIO_drive, METH_VARARGS,
	  "drive(until_ns, issue_new): run transactions until the deadline" },
	{ "results", (PyCFunction)TxnIO_results, METH_NOARGS, "the executor's counts" },
	{ "set_window", (PyCFunction)TxnIO_set_window, METH_VARARGS,
	  "set_window(from_ns, until_ns): record requests and transactions started in [from_ns, until_ns)" },
	{ "record", (PyCFunction)TxnIO_record, METH_VARARGS, "record(kind, ns): a latency into histogram kind" },
	{ "histogram", (PyCFunction)TxnIO_histogram, METH_VARARGS,
	  "histogram(kind=-1) -> [(ns, count)]; -1: request round trips" },
	{ "stats", (PyCFunction)TxnIO_stats, METH_NOARGS, "request-level counters" },
	{ NULL },
};

PyTypeObject TxnIOType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._netloop.TxnIO",
	.tp_basicsize = sizeof(TxnIO),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Batched request I/O and transaction driver of the executor, over one UDP socket per server",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)TxnIO_init,
	.tp_dealloc = (destructor)TxnIO_dealloc,
	.tp_methods = TxnIO_methods,
};

/* cause_of(op, status) -> the abort cause of a rejected request. */
PyObject *txnio_cause_of(PyObject *Py_UNUSED(mod), PyObject *args)
{
	int op, status;

	if (!PyArg_ParseTuple(args, "ii", &op, &status))
		return NULL;
	return PyUnicode_FromString(cause_names[cause_of(op, status)]);
}
