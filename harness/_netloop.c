/* The client's per-packet hot path: a closed loop keeping N dint requests in
 * flight with sendmmsg/recvmmsg over one connected UDP socket per server
 * (connected sockets skip a route lookup per datagram: about a fifth more
 * requests per second of client CPU), matching replies to requests by
 * sequence number, retransmitting on timeout and recording latencies. Everything above it (request generation, sockets, windows,
 * histograms, reporting) stays in Python; a plain Python loop costs too much
 * per packet to show the difference between the stacks. */
#include "_netloop.h"

struct slot {
	uint32_t seq;
	uint32_t req;
	uint8_t dest;
	uint64_t first_ns;
	uint64_t last_ns;
	uint16_t retries;
	uint8_t busy;
	uint8_t recorded;
};

typedef struct {
	PyObject_HEAD
	uint32_t client_id;
	int stamp_txn; /* give each request the transaction id client_id << 32 | seq */
	/* requests, generated in advance: bytes [off[i], off[i+1]) of reqbuf,
	 * sent on fds[dest_of[i]] */
	Py_buffer reqbuf, offbuf, destbuf;
	const uint32_t *off;
	const uint8_t *dest_of;
	uint32_t nreq, next_req;
	int fds[MAX_DESTS];
	uint32_t ndests;
	uint32_t dest_inflight[MAX_DESTS];
	struct pollfd pfds[MAX_DESTS];
	/* in flight */
	struct slot *slots;
	uint32_t mask, inflight, concurrency, next_seq;
	uint64_t timeout_ns, last_scan_ns;
	uint32_t max_retries;
	struct counts c; /* recorded: requests started inside the window */
	/* open loop (interval_ns > 0): request i is due at start + i * interval,
	 * however late the replies; concurrency caps what is in flight */
	uint64_t interval_ns, next_start_ns, late, skipped;
	/* scratch */
	struct sender sd;
	struct receiver rv;
	char sbuf[BATCH][MAX_DGRAM];
} Loop;

static void Loop_dealloc(Loop *self)
{
	if (self->reqbuf.obj)
		PyBuffer_Release(&self->reqbuf);
	if (self->offbuf.obj)
		PyBuffer_Release(&self->offbuf);
	if (self->destbuf.obj)
		PyBuffer_Release(&self->destbuf);
	PyMem_Free(self->slots);
	PyMem_Free(self->c.hist);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One connected socket per server: fills fds and pfds; returns how many, or
 * -1 with an exception set. */
int parse_fds(PyObject *fds, int *out, struct pollfd *pfds)
{
	Py_ssize_t nd = PySequence_Length(fds);
	if (nd < 1 || nd > MAX_DESTS) {
		if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
			PyErr_Clear();
			PyErr_Format(PyExc_ValueError, "fds must hold 1..%d sockets, one per server", MAX_DESTS);
		}
		return -1;
	}
	for (Py_ssize_t i = 0; i < nd; i++) {
		PyObject *item = PySequence_GetItem(fds, i);
		int fd = item ? PyObject_AsFileDescriptor(item) : -1;
		Py_XDECREF(item);
		if (fd < 0)
			return -1;
		out[i] = fd;
		pfds[i].fd = fd;
		pfds[i].events = POLLIN;
		/* a blocked receive wakes up at least every millisecond to retransmit */
		struct timeval tv = { 0, 1000 };
		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
	}
	return (int)nd;
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "fds", "client_id", "requests", "offsets", "dest_of",
				  "concurrency", "timeout_ns", "max_retries", "stamp_txn", "interval_ns", "gso", NULL };
	PyObject *fds;
	unsigned int client_id, concurrency, max_retries;
	unsigned long long timeout_ns, interval_ns = 0;

	self->sd.gso = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIy*y*y*IKI|pKp", kwlist, &fds, &client_id,
					 &self->reqbuf, &self->offbuf, &self->destbuf,
					 &concurrency, &timeout_ns, &max_retries, &self->stamp_txn, &interval_ns,
					 &self->sd.gso))
		return -1;
	self->interval_ns = interval_ns;
	self->client_id = client_id;
	self->concurrency = concurrency;
	self->timeout_ns = timeout_ns;
	self->max_retries = max_retries;
	if (self->offbuf.len % 4 || self->offbuf.len < 8) {
		PyErr_SetString(PyExc_ValueError, "offsets must hold at least 2 uint32 values");
		return -1;
	}
	self->off = self->offbuf.buf;
	self->nreq = self->offbuf.len / 4 - 1;
	self->dest_of = self->destbuf.buf;
	if ((uint64_t)self->destbuf.len != self->nreq) {
		PyErr_SetString(PyExc_ValueError, "dest_of needs one byte per request");
		return -1;
	}
	for (uint32_t i = 0; i < self->nreq; i++) {
		uint32_t len = self->off[i + 1] - self->off[i];
		if (self->off[i + 1] < self->off[i] || self->off[i + 1] > (uint64_t)self->reqbuf.len ||
		    len < DINT_HDR_LEN || len > MAX_DGRAM) {
			PyErr_Format(PyExc_ValueError, "request %u: bad offsets or length", i);
			return -1;
		}
	}
	if (concurrency < 1 || concurrency > 65536) {
		PyErr_SetString(PyExc_ValueError, "concurrency must be in 1..65536");
		return -1;
	}
	int nd = parse_fds(fds, self->fds, self->pfds);
	if (nd < 0)
		return -1;
	self->ndests = nd;
	for (uint32_t i = 0; i < self->nreq; i++) {
		if (self->dest_of[i] >= nd) {
			PyErr_Format(PyExc_ValueError, "request %u names destination %u of %d", i,
				     self->dest_of[i], nd);
			return -1;
		}
	}
	uint32_t size = 64;
	while (size < 2 * concurrency)
		size <<= 1;
	self->mask = size - 1;
	self->slots = PyMem_Calloc(size, sizeof(struct slot));
	self->c.hist = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t));
	if (!self->slots || !self->c.hist)
		return PyErr_NoMemory(), -1;
	self->next_seq = 1;
	for (int i = 0; i < BATCH; i++)
		self->sd.iov[i].iov_base = self->sbuf[i];
	receiver_init(&self->rv);
	return 0;
}

/* Fills message k of the send batch with request r under sequence number seq. */
static inline void stage(Loop *self, int k, uint32_t r, uint32_t seq)
{
	uint32_t len = self->off[r + 1] - self->off[r];
	struct dint_hdr *h = (void *)self->sbuf[k];

	memcpy(self->sbuf[k], (const char *)self->reqbuf.buf + self->off[r], len);
	h->client_id = htonl(self->client_id);
	h->seq = htonl(seq);
	if (self->stamp_txn) /* unique per request, the same for its retransmissions */
		h->txn = htobe64(((uint64_t)self->client_id << 32) | seq);
	self->sd.iov[k].iov_len = len;
	self->sd.dest[k] = self->dest_of[r];
}

/* Whether datagram a goes before datagram b: by server, then length, so
 * that the runs a GSO send takes are adjacent. */
static inline int send_before(const struct sender *sd, int a, int b)
{
	return sd->dest[a] != sd->dest[b] ? sd->dest[a] < sd->dest[b] : sd->iov[a].iov_len < sd->iov[b].iov_len;
}

int send_grouped(const int *fds, struct sender *sd, int k, uint64_t *send_failed)
{
	for (int i = 0; i < k; i++) { /* insertion sort: k is small */
		int j = i;
		for (; j > 0 && send_before(sd, i, sd->order[j - 1]); j--)
			sd->order[j] = sd->order[j - 1];
		sd->order[j] = i;
	}
	int i = 0, m = 0;
	while (i < k) {
		uint8_t d = sd->dest[sd->order[i]];
		int m0 = m;
		while (i < k && sd->dest[sd->order[i]] == d) { /* one message per run */
			size_t len = sd->iov[sd->order[i]].iov_len;
			int n = 1;
			sd->giov[i] = sd->iov[sd->order[i]];
			while (sd->gso && m > m0 /* not the first */ && i + n < k && n < GSO_MAX_SEGS && (size_t)(n + 1) * len <= GSO_MAX_BYTES &&
			       sd->dest[sd->order[i + n]] == d && sd->iov[sd->order[i + n]].iov_len == len) {
				sd->giov[i + n] = sd->iov[sd->order[i + n]];
				n++;
			}
			struct msghdr *h = &sd->msg[m].msg_hdr;
			memset(h, 0, sizeof(*h));
			h->msg_iov = &sd->giov[i];
			h->msg_iovlen = n;
			if (n > 1) {
				h->msg_control = sd->ctl[m].buf;
				h->msg_controllen = sizeof(sd->ctl[m].buf);
				struct cmsghdr *c = CMSG_FIRSTHDR(h);
				c->cmsg_level = SOL_UDP;
				c->cmsg_type = UDP_SEGMENT;
				c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
				uint16_t seg = len;
				memcpy(CMSG_DATA(c), &seg, sizeof(seg));
			}
			sd->nseg[m++] = n;
			i += n;
		}
		int done = m0;
		while (done < m) {
			int n = sendmmsg(fds[d], sd->msg + done, m - done, MSG_DONTWAIT);
			if (n >= 0) {
				done += n;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (sd->gso && (errno == EINVAL || errno == EIO || errno == ENOPROTOOPT || errno == EOPNOTSUPP))
				sd->gso = 0; /* a kernel without UDP GSO here: datagram by datagram from now on */
			else if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) {
				PyErr_SetFromErrno(PyExc_OSError);
				return -1;
			}
			for (; done < m; done++)
				*send_failed += sd->nseg[done];
		}
	}
	return 0;
}

/* Sends the k staged messages. */
static int flush(Loop *self, int k)
{
	if (send_grouped(self->fds, &self->sd, k, &self->c.send_failed) < 0)
		return -1;
	self->c.sent += k;
	return 0;
}

/* Issues new requests until the window is full (closed loop), or those due
 * by t while there is room (open loop). */
static int issue(Loop *self, uint64_t t)
{
	int k = 0;

	if (self->interval_ns) {
		if (!self->next_start_ns)
			self->next_start_ns = t;
		/* What fell behind in the warm-up is not carried into the window. */
		if (self->next_start_ns < self->c.win_from && t >= self->c.win_from) {
			self->skipped += (self->c.win_from - self->next_start_ns) / self->interval_ns;
			self->next_start_ns = self->c.win_from;
		}
	}
	while (self->inflight < self->concurrency && k < BATCH) {
		uint64_t start = t;
		if (self->interval_ns) {
			if (self->next_start_ns > t)
				break;
			start = self->next_start_ns; /* latency counts from when it was due */
			self->next_start_ns += self->interval_ns;
			if (t - start > LATE_NS && start >= self->c.win_from && start < self->c.win_until)
				self->late++;
		}
		uint32_t seq = self->next_seq;
		while (self->slots[seq & self->mask].busy)
			seq++; /* a slow request still holds this slot */
		self->next_seq = seq + 1;
		struct slot *s = &self->slots[seq & self->mask];
		uint32_t r = self->next_req;
		s->seq = seq;
		s->req = r;
		s->dest = self->dest_of[r];
		s->busy = 1;
		s->retries = 0;
		s->first_ns = start;
		s->last_ns = t;
		s->recorded = start >= self->c.win_from && start < self->c.win_until;
		self->c.rec_started += s->recorded;
		self->inflight++;
		self->dest_inflight[s->dest]++;
		stage(self, k++, r, seq);
		if (++self->next_req == self->nreq)
			self->next_req = 0;
	}
	return k ? flush(self, k) : 0;
}

static inline void release(Loop *self, struct slot *s)
{
	s->busy = 0;
	self->inflight--;
	self->dest_inflight[s->dest]--;
}


static void complete(Loop *self, struct slot *s, const struct dint_hdr *h, uint64_t t)
{
	self->c.replies++;
	count_answer(&self->c, s->recorded, h->status, s->first_ns, t);
	release(self, s);
}

/* Retransmits requests whose reply is overdue, with the same request id;
 * gives up after max_retries. */
static int scan_timeouts(Loop *self, uint64_t t)
{
	int k = 0;

	self->last_scan_ns = t;
	for (uint32_t i = 0; i <= self->mask; i++) {
		struct slot *s = &self->slots[i];
		if (!s->busy || t - s->last_ns < self->timeout_ns)
			continue;
		if (s->retries >= self->max_retries) {
			self->c.lost += s->recorded;
			release(self, s);
			continue;
		}
		s->retries++;
		s->last_ns = t;
		self->c.retransmits++;
		stage(self, k++, s->req, s->seq);
		if (k == BATCH) {
			if (flush(self, k) < 0)
				return -1;
			k = 0;
		}
	}
	return k ? flush(self, k) : 0;
}

/* Waits in ppoll for any of the sockets, up to wait_ns. -1 with an
 * exception set if a signal handler raised. */
int wait_replies(struct counts *c, struct pollfd *pfds, uint32_t n, uint64_t wait_ns)
{
	struct timespec ts = { 0, (long)wait_ns };
	uint64_t t0 = now_ns();
	int r;

	Py_BEGIN_ALLOW_THREADS
	r = ppoll(pfds, n, &ts, NULL);
	Py_END_ALLOW_THREADS
	c->wait_ns += now_ns() - t0;
	if (r < 0 && errno == EINTR)
		return PyErr_CheckSignals() < 0 ? -1 : 0;
	return 0; /* the next round reads what arrived */
}

PyObject *counts_dict(const uint64_t *counts, int n)
{
	PyObject *d = PyDict_New();
	if (!d)
		return NULL;
	for (int i = 0; i < n; i++) {
		if (!counts[i])
			continue;
		PyObject *k = PyLong_FromLong(i), *v = PyLong_FromUnsignedLongLong(counts[i]);
		int bad = !k || !v || PyDict_SetItem(d, k, v) < 0;
		Py_XDECREF(k);
		Py_XDECREF(v);
		if (bad) {
			Py_DECREF(d);
			return NULL;
		}
	}
	return d;
}

/* set_window(from_ns, until_ns) of both loops. */
PyObject *set_window(struct counts *c, PyObject *args)
{
	unsigned long long from, until;
	if (!PyArg_ParseTuple(args, "KK", &from, &until))
		return NULL;
	c->win_from = from;
	c->win_until = until;
	Py_RETURN_NONE;
}

/* The counters as a dict; the caller adds its own. */
PyObject *counts_stats(const struct counts *c, uint32_t inflight, int gso)
{
	PyObject *statuses = counts_dict(c->status_counts, 256);
	if (!statuses)
		return NULL;
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsIsNsO}", "sent", c->sent, "send_failed", c->send_failed,
			     "retransmits", c->retransmits, "busy_retries", c->busy, "replies", c->replies,
			     "ok", c->ok, "err_status", c->err_status, "lost", c->lost, "stray", c->stray,
			     "started_in_window", c->rec_started, "wait_ns", c->wait_ns, "inflight", inflight,
			     "statuses", statuses, "gso", gso ? Py_True : Py_False);
}


/* Matches the n replies received in rv. */
static int match(Loop *self, int n, uint64_t t)
{
	int matched = 0;

	for (int i = 0; i < n; i++) {
		const struct dint_hdr *h = (const void *)self->rv.buf[i];
		uint32_t seq;
		if (!reply_seq(&self->c, &self->rv.msg[i], h, self->client_id, &seq))
			continue;
		struct slot *s = &self->slots[seq & self->mask];
		if (!s->busy || s->seq != seq) {
			self->c.stray++; /* a duplicate, or the answer to a request given up */
			continue;
		}
		if (busy_retry(h, &s->last_ns, t, self->timeout_ns, &self->c.busy)) {
			self->c.replies++;
			continue;
		}
		complete(self, s, h, t);
		matched++;
	}
	return matched;
}

/* recvmmsg on one server's socket; -1 with an exception set on a hard error. */
void receiver_init(struct receiver *rv)
{
	for (int i = 0; i < BATCH; i++) {
		rv->iov[i].iov_base = rv->buf[i];
		rv->iov[i].iov_len = MAX_DGRAM;
		rv->msg[i].msg_hdr.msg_iov = &rv->iov[i];
		rv->msg[i].msg_hdr.msg_iovlen = 1;
	}
}

int recv_batch(int fd, struct receiver *rv, int flags)
{
	int n;

	if (flags & MSG_WAITFORONE) {
		Py_BEGIN_ALLOW_THREADS
		n = recvmmsg(fd, rv->msg, BATCH, flags, NULL);
		Py_END_ALLOW_THREADS
	} else {
		n = recvmmsg(fd, rv->msg, BATCH, flags, NULL);
	}
	if (n >= 0)
		return n;
	if (errno == EINTR)
		return PyErr_CheckSignals() < 0 ? -1 : 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED)
		return 0;
	PyErr_SetFromErrno(PyExc_OSError);
	return -1;
}

static inline int recv_from(Loop *self, int fd, int flags)
{
	return recv_batch(fd, &self->rv, flags);
}

/* Receives what has arrived from servers with requests in flight. When
 * nothing more can be sent it blocks, up to about a millisecond: in
 * recvmmsg itself with one server (as a C client would), in ppoll with
 * several. Returns replies matched. */
static int receive(Loop *self, int block, uint64_t max_wait_ns)
{
	int matched = 0;

	if (block && self->ndests == 1 && max_wait_ns >= 1000000) {
		uint64_t t0 = now_ns();
		int n = recv_from(self, self->fds[0], MSG_WAITFORONE);
		uint64_t t = now_ns();
		self->c.wait_ns += t - t0;
		return n < 0 ? -1 : match(self, n, t);
	}
	for (uint32_t d = 0; d < self->ndests; d++) {
		if (!self->dest_inflight[d])
			continue;
		int n = recv_from(self, self->fds[d], MSG_DONTWAIT);
		if (n < 0)
			return -1;
		matched += match(self, n, now_ns());
	}
	if (matched || !block || max_wait_ns < 2000) /* a short wait: spin */
		return matched;
	return wait_replies(&self->c, self->pfds, self->ndests, max_wait_ns < 1000000 ? max_wait_ns : 1000000);
}

PyObject *hist_pairs(const uint64_t *hist)
{
	PyObject *out = PyList_New(0);
	if (!out || !hist)
		return out;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		if (!hist[i])
			continue;
		PyObject *pair = Py_BuildValue("(KK)", hist_value(i), hist[i]);
		if (!pair || PyList_Append(out, pair) < 0) {
			Py_XDECREF(pair);
			Py_DECREF(out);
			return NULL;
		}
		Py_DECREF(pair);
	}
	return out;
}

static PyObject *Loop_set_window(Loop *self, PyObject *args)
{
	return set_window(&self->c, args);
}

/* run(until_ns, issue_new): runs the closed loop until the monotonic clock
 * reaches until_ns (or, without issuing, until nothing is in flight). */
static PyObject *Loop_run(Loop *self, PyObject *args)
{
	unsigned long long until;
	int issue_new;
	uint32_t iter = 0;

	if (!PyArg_ParseTuple(args, "Kp", &until, &issue_new))
		return NULL;
	for (;;) {
		uint64_t t = now_ns();
		if (t >= until || (!issue_new && !self->inflight))
			break;
		if (issue_new && issue(self, t) < 0)
			return NULL;
		if (t - self->last_scan_ns > 1000000 && scan_timeouts(self, t) < 0)
			return NULL;
		int full = !issue_new || self->inflight >= self->concurrency;
		uint64_t wait = 1000000;
		if (issue_new && self->interval_ns && !full) { /* wait no later than the next is due */
			uint64_t now = now_ns();
			wait = self->next_start_ns > now ? self->next_start_ns - now : 0;
			full = 1;
		}
		if (receive(self, full, wait) < 0)
			return NULL;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return NULL;
	}
	if (PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Loop_stats(Loop *self, PyObject *Py_UNUSED(unused))
{
	PyObject *d = counts_stats(&self->c, self->inflight, self->sd.gso);
	if (d && self->interval_ns) {
		PyObject *late = PyLong_FromUnsignedLongLong(self->late),
			 *skipped = PyLong_FromUnsignedLongLong(self->skipped);
		int bad = !late || !skipped || PyDict_SetItemString(d, "open_loop_late", late) < 0 ||
			  PyDict_SetItemString(d, "open_loop_skipped", skipped) < 0;
		Py_XDECREF(late);
		Py_XDECREF(skipped);
		if (bad)
			Py_CLEAR(d);
	}
	return d;
}

/* histogram() -> [(latency_ns, count), ...] of the replies recorded OK. */
static PyObject *Loop_histogram(Loop *self, PyObject *Py_UNUSED(unused))
{
	return hist_pairs(self->c.hist);
}

static PyMethodDef Loop_methods[] = {
	{ "set_window", (PyCFunction)Loop_set_window, METH_VARARGS,
	  "set_window(from_ns, until_ns): record requests started in [from_ns, until_ns)" },
	{ "run", (PyCFunction)Loop_run, METH_VARARGS,
	  "run(until_ns, issue_new): run the closed loop until the deadline" },
	{ "stats", (PyCFunction)Loop_stats, METH_NOARGS, "counters of the recorded window" },
	{ "histogram", (PyCFunction)Loop_histogram, METH_NOARGS,
	  "[(latency_ns, count)] of replies recorded with status OK" },
	{ NULL },
};

static PyTypeObject LoopType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._netloop.Loop",
	.tp_basicsize = sizeof(Loop),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Closed-loop dint client over one UDP socket",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)Loop_init,
	.tp_dealloc = (destructor)Loop_dealloc,
	.tp_methods = Loop_methods,
};

static PyObject *netloop_hist_roundtrip(PyObject *mod, PyObject *arg)
{
	unsigned long long v = PyLong_AsUnsignedLongLong(arg);
	if (PyErr_Occurred())
		return NULL;
	return PyLong_FromUnsignedLongLong(hist_value(hist_index(v)));
}

static PyMethodDef module_methods[] = {
	{ "hist_roundtrip", netloop_hist_roundtrip, METH_O,
	  "the value a latency is recorded as (for tests of the bucketing)" },
	{ "cause_of", txnio_cause_of, METH_VARARGS, "cause_of(op, status): the abort cause of a rejected request" },
	{ NULL },
};

static struct PyModuleDef netloop_module = {
	PyModuleDef_HEAD_INIT, .m_name = "harness._netloop",
	.m_doc = "Native closed-loop hot path of the dint-bench client",
	.m_size = -1, .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__netloop(void)
{
	if (PyType_Ready(&LoopType) < 0 || PyType_Ready(&TxnIOType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&netloop_module);
	if (!m)
		return NULL;
	Py_INCREF(&LoopType);
	if (PyModule_AddObject(m, "Loop", (PyObject *)&LoopType) < 0) {
		Py_DECREF(&LoopType);
		Py_DECREF(m);
		return NULL;
	}
	Py_INCREF(&TxnIOType);
	if (PyModule_AddObject(m, "TxnIO", (PyObject *)&TxnIOType) < 0) {
		Py_DECREF(&TxnIOType);
		Py_DECREF(m);
		return NULL;
	}
	PyModule_AddIntConstant(m, "HEADER_LEN", DINT_HDR_LEN);
	PyModule_AddIntConstant(m, "TIMEOUT", TXN_TIMEOUT);
	return m;
}
