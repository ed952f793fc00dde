/* The transaction executor's native I/O (harness/txn.py): see TxnIO below. */
#include "_netloop.h"

/* ---- TxnIO: the I/O layer of the transaction executor (harness/txn.py) ----
 * Batches of requests, each batch tagged with a Python object (the
 * transaction), are sent over the same connected per-server sockets; replies
 * are matched by request id, overdue requests retransmitted with the same id
 * and given up after max_retries (reported as status TIMEOUT). A batch
 * completes when every request in it has a reply or was given up; run()
 * returns the completed batches, so Python sees one event per transaction
 * round, never one per datagram. */


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
	PyObject *tag;     /* owned */
	PyObject *replies; /* owned list, filled as replies arrive */
	uint32_t remaining;
	int32_t fail;      /* lowest position whose status is not OK; -1: none */
	uint32_t next_free;
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
	PyObject *ready; /* completed batches: [(tag, replies, fail)] */
	struct counts c; /* request level; recorded = first sent inside the window */
	uint64_t batches_done;
	uint64_t ok_by_op[DINT_OP_MAX]; /* OK replies per operation, whole run */
	uint64_t *khist[TXN_KINDS];     /* filled by record() */
	/* scratch */
	struct mmsghdr smsg[BATCH], gmsg[BATCH], rmsg[BATCH];
	uint8_t sdest[BATCH];
	struct iovec siov[BATCH], riov[BATCH];
	char rbuf[BATCH][MAX_DGRAM];
} TxnIO;

static void TxnIO_dealloc(TxnIO *self)
{
	if (self->batches) {
		for (uint32_t i = 0; i < self->max_inflight; i++) {
			Py_XDECREF(self->batches[i].tag);
			Py_XDECREF(self->batches[i].replies);
		}
	}
	Py_XDECREF(self->ready);
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
				  NULL };
	PyObject *fds;
	unsigned int client_id, max_retries, max_inflight, max_value = 64;
	unsigned long long timeout_ns;

	if (self->slots) {
		PyErr_SetString(PyExc_RuntimeError, "TxnIO is initialised once");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIKII|I", kwlist, &fds, &client_id, &timeout_ns,
					 &max_retries, &max_inflight, &max_value))
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
	self->c.hist = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t));
	self->ready = PyList_New(0);
	if (!self->slots || !self->slab || !self->sendq || !self->batches || !self->c.hist) {
		PyErr_NoMemory();
		return -1;
	}
	if (!self->ready)
		return -1;
	for (uint32_t i = 0; i < max_inflight; i++)
		self->batches[i].next_free = i + 1;
	self->free_batch = 0;
	self->next_seq = 1;
	for (int i = 0; i < BATCH; i++) {
		self->smsg[i].msg_hdr.msg_iov = &self->siov[i];
		self->smsg[i].msg_hdr.msg_iovlen = 1;
		self->riov[i].iov_base = self->rbuf[i];
		self->riov[i].iov_len = MAX_DGRAM;
		self->rmsg[i].msg_hdr.msg_iov = &self->riov[i];
		self->rmsg[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

static inline char *tslot_buf(TxnIO *self, uint32_t idx)
{
	return self->slab + (size_t)idx * self->slot_bytes;
}

/* The batch's request in slot s is done: reply (status, ver, value) at its
 * position; the batch goes to the ready list when it was the last one. */
static int tbatch_put(TxnIO *self, struct tslot *s, int status, uint32_t ver, const char *val, uint32_t vlen)
{
	struct tbatch *b = &self->batches[s->batch];
	PyObject *value;

	if (val && status == DINT_ST_OK &&
	    (s->op == DINT_OP_READ || s->op == DINT_OP_LOCK_SHARED || s->op == DINT_OP_LOCK_EXCL)) {
		value = PyBytes_FromStringAndSize(val, vlen);
		if (!value)
			return -1;
	} else {
		value = Py_NewRef(Py_None);
	}
	PyObject *rep = Py_BuildValue("(iIN)", status, ver, value);
	if (!rep)
		return -1;
	PyList_SET_ITEM(b->replies, s->pos, rep); /* steals rep; the position was empty */
	if (status != DINT_ST_OK && (b->fail < 0 || s->pos < b->fail))
		b->fail = s->pos;
	if (--b->remaining)
		return 0;
	PyObject *done = Py_BuildValue("(OOi)", b->tag, b->replies, b->fail);
	if (!done || PyList_Append(self->ready, done) < 0) {
		Py_XDECREF(done);
		return -1;
	}
	Py_DECREF(done);
	Py_CLEAR(b->tag);
	Py_CLEAR(b->replies);
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

/* submit(tag, txn, requests): queues one batch for the next run(). Each
 * request is a tuple (op, table, key, value, ver) or (op, table, key, value,
 * ver, dest); value is bytes (the table's size, a placeholder for reads);
 * dest defaults to key % servers. Sent with transaction id txn. */
static PyObject *TxnIO_submit(TxnIO *self, PyObject *args)
{
	PyObject *tag, *reqs;
	unsigned long long txn;

	if (!PyArg_ParseTuple(args, "OKO", &tag, &txn, &reqs))
		return NULL;
	PyObject *seq = PySequence_Fast(reqs, "requests must be a sequence of tuples");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if (n < 1 || n > 65535 || self->inflight + n > self->max_inflight) {
		PyErr_Format(n < 1 ? PyExc_ValueError : PyExc_RuntimeError,
			     n < 1 ? "a batch holds at least one request" :
				     "%zd more requests would exceed max_inflight (%u; %u in flight)",
			     n, self->max_inflight, self->inflight);
		Py_DECREF(seq);
		return NULL;
	}
	PyObject *replies = PyList_New(n);
	if (!replies) {
		Py_DECREF(seq);
		return NULL;
	}
	uint32_t bi = self->free_batch; /* there is one: fewer batches than requests in flight */
	uint32_t q0 = self->nsendq, seq0 = self->next_seq;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	uint64_t t = now_ns();
	Py_ssize_t i;

	for (i = 0; i < n; i++) {
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
		uint32_t sq = self->next_seq;
		while (self->slots[sq & self->mask].busy)
			sq++;
		self->next_seq = sq + 1;
		uint32_t idx = sq & self->mask;
		struct tslot *s = &self->slots[idx];
		struct dint_hdr *h = (void *)tslot_buf(self, idx);
		uint32_t vlen = PyBytes_GET_SIZE(value);
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
		memcpy(h + 1, PyBytes_AS_STRING(value), vlen);
		s->seq = sq;
		s->batch = bi;
		s->pos = i;
		s->len = DINT_HDR_LEN + vlen;
		s->dest = dest;
		s->op = op;
		s->busy = 1;
		s->retries = 0;
		s->first_ns = s->last_ns = t;
		s->recorded = t >= self->c.win_from && t < self->c.win_until;
		self->inflight++;
		self->dest_inflight[dest]++;
		self->sendq[self->nsendq++] = idx;
	}
	Py_DECREF(seq);
	struct tbatch *b = &self->batches[bi];
	self->free_batch = b->next_free;
	self->nbatches_busy++;
	b->tag = Py_NewRef(tag);
	b->replies = replies;
	b->remaining = n;
	b->fail = -1;
	for (i = 0; i < n; i++) {
		struct tslot *s = &self->slots[self->sendq[q0 + i]];
		self->c.rec_started += s->recorded;
	}
	Py_RETURN_NONE;
fail: /* nothing of this batch was sent: give its slots back */
	while (self->nsendq > q0)
		tslot_release(self, &self->slots[self->sendq[--self->nsendq]]);
	self->next_seq = seq0;
	Py_DECREF(replies);
	Py_DECREF(seq);
	return NULL;
}

/* Sends every queued slot, BATCH at a time, grouped per server. */
static int txn_flush(TxnIO *self)
{
	uint32_t q = 0;

	while (q < self->nsendq) {
		int k = 0;
		for (; q < self->nsendq && k < BATCH; q++) {
			struct tslot *s = &self->slots[self->sendq[q]];
			self->siov[k].iov_base = tslot_buf(self, self->sendq[q]);
			self->siov[k].iov_len = s->len;
			self->sdest[k++] = s->dest;
		}
		if (send_grouped(self->fds, self->ndests, self->smsg, self->sdest, k, self->gmsg,
				 &self->c.send_failed) < 0)
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
		const struct dint_hdr *h = (const void *)self->rbuf[i];
		uint32_t seq;
		if (!reply_seq(&self->c, &self->rmsg[i], h, self->client_id, &seq))
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
		uint32_t vlen = self->rmsg[i].msg_len - DINT_HDR_LEN;
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
		int n = recv_batch(self->fds[d], self->rmsg, MSG_DONTWAIT);
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

/* run(until_ns) -> [(tag, replies, fail)]: sends what was submitted, then
 * receives and retransmits until at least one batch is complete, nothing is
 * in flight, or the clock reaches until_ns. replies lists (status, ver,
 * value) in request order (value: bytes for an answered READ or granted
 * lock, else None); fail is the
 * position of the first reply whose status is not OK, or -1. */
static PyObject *TxnIO_run(TxnIO *self, PyObject *args)
{
	unsigned long long until;
	uint32_t iter = 0;

	if (!PyArg_ParseTuple(args, "K", &until))
		return NULL;
	for (;;) {
		if (self->nsendq && txn_flush(self) < 0)
			return NULL;
		uint64_t t = now_ns();
		if (t - self->last_scan_ns > 1000000 && txn_scan_timeouts(self, t) < 0)
			return NULL;
		if (PyList_GET_SIZE(self->ready) || t >= until || !self->inflight)
			break;
		if (txn_receive(self, until) < 0)
			return NULL;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return NULL;
	}
	if (PyErr_CheckSignals() < 0)
		return NULL;
	PyObject *out = self->ready, *fresh = PyList_New(0);
	if (!fresh)
		return NULL;
	self->ready = fresh;
	return out;
}

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
	PyObject *d = counts_stats(&self->c, self->inflight);
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
	{ "set_window", (PyCFunction)TxnIO_set_window, METH_VARARGS,
	  "set_window(from_ns, until_ns): record requests first sent in [from_ns, until_ns)" },
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
	.tp_doc = "Batched request I/O of the transaction executor over one UDP socket per server",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)TxnIO_init,
	.tp_dealloc = (destructor)TxnIO_dealloc,
	.tp_methods = TxnIO_methods,
};
