/* The client's per-packet hot path: a closed loop keeping N dint requests in
 * flight over one UDP socket with sendmmsg/recvmmsg, matching replies to
 * requests by sequence number, retransmitting on timeout and recording
 * latencies. Everything above it (request generation, sockets, windows,
 * histograms, reporting) stays in Python; a plain Python loop costs too much
 * per packet to show the difference between the stacks. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../bpf/dint_proto.h"

#define BATCH 64
#define MAX_DGRAM 2048
/* Latency histogram: exact below 2^11 ns, then 1024 buckets per power of
 * two (relative error under 1/2048) up to 2^40 ns. */
#define HIST_SUB_BITS 10
#define HIST_EXACT (1u << (HIST_SUB_BITS + 1))
#define HIST_MAX_SHIFT 29
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_SHIFT) * (1u << HIST_SUB_BITS))

struct slot {
	uint32_t seq;
	uint32_t req;
	uint64_t first_ns;
	uint64_t last_ns;
	uint16_t retries;
	uint8_t busy;
	uint8_t recorded;
};

typedef struct {
	PyObject_HEAD
	int fd;
	uint32_t client_id;
	/* requests, generated in advance: bytes [off[i], off[i+1]) of reqbuf,
	 * sent to dests[dest_of[i]] */
	Py_buffer reqbuf, offbuf, destbuf;
	const uint32_t *off;
	const uint8_t *dest_of;
	uint32_t nreq, next_req;
	struct sockaddr_in *dests;
	uint32_t ndests;
	/* in flight */
	struct slot *slots;
	uint32_t mask, inflight, concurrency, next_seq;
	uint64_t timeout_ns, last_scan_ns;
	uint32_t max_retries;
	uint64_t win_from, win_until;
	/* results (recorded: requests started inside the window) */
	uint64_t sent, retransmits, replies, ok, err_status, lost, stray, rec_started;
	uint64_t wait_ns;
	uint64_t status_counts[256];
	uint64_t *hist;
	/* scratch */
	struct mmsghdr smsg[BATCH], rmsg[BATCH];
	struct iovec siov[BATCH], riov[BATCH];
	char sbuf[BATCH][MAX_DGRAM], rbuf[BATCH][MAX_DGRAM];
} Loop;

static inline uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static inline uint32_t hist_index(uint64_t v)
{
	if (v < HIST_EXACT)
		return (uint32_t)v;
	uint32_t shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return (shift << HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

static inline uint64_t hist_value(uint32_t idx)
{
	if (idx < HIST_EXACT)
		return idx;
	uint32_t shift = (idx >> HIST_SUB_BITS) - 1;
	uint64_t base = (uint64_t)(idx - (shift << HIST_SUB_BITS)) << shift;
	return base + (1ull << (shift - 1)); /* bucket midpoint */
}

static void Loop_dealloc(Loop *self)
{
	if (self->reqbuf.obj)
		PyBuffer_Release(&self->reqbuf);
	if (self->offbuf.obj)
		PyBuffer_Release(&self->offbuf);
	if (self->destbuf.obj)
		PyBuffer_Release(&self->destbuf);
	PyMem_Free(self->dests);
	PyMem_Free(self->slots);
	PyMem_Free(self->hist);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "fd", "client_id", "dests", "requests", "offsets", "dest_of",
				  "concurrency", "timeout_ns", "max_retries", NULL };
	PyObject *dests;
	unsigned int client_id, concurrency, max_retries;
	unsigned long long timeout_ns;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "iIOy*y*y*IKI", kwlist, &self->fd, &client_id,
					 &dests, &self->reqbuf, &self->offbuf, &self->destbuf,
					 &concurrency, &timeout_ns, &max_retries))
		return -1;
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
	Py_ssize_t nd = PySequence_Length(dests);
	if (nd < 1 || nd > 256) {
		PyErr_SetString(PyExc_ValueError, "dests must hold 1..256 (ip, port) pairs");
		return -1;
	}
	self->ndests = nd;
	self->dests = PyMem_Calloc(nd, sizeof(*self->dests));
	if (!self->dests)
		return PyErr_NoMemory(), -1;
	for (Py_ssize_t i = 0; i < nd; i++) {
		PyObject *item = PySequence_GetItem(dests, i);
		const char *ip;
		int port;
		if (!item || !PyArg_ParseTuple(item, "si", &ip, &port)) {
			Py_XDECREF(item);
			return -1;
		}
		self->dests[i].sin_family = AF_INET;
		self->dests[i].sin_port = htons(port);
		int ok = inet_pton(AF_INET, ip, &self->dests[i].sin_addr);
		Py_DECREF(item);
		if (ok != 1) {
			PyErr_Format(PyExc_ValueError, "bad IPv4 address: %s", ip);
			return -1;
		}
	}
	for (uint32_t i = 0; i < self->nreq; i++) {
		if (self->dest_of[i] >= nd) {
			PyErr_Format(PyExc_ValueError, "request %u names destination %u of %zd", i,
				     self->dest_of[i], nd);
			return -1;
		}
	}
	/* a blocked receive wakes up at least every millisecond to retransmit */
	struct timeval tv = { 0, 1000 };
	if (setsockopt(self->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return -1;
	}
	uint32_t size = 64;
	while (size < 2 * concurrency)
		size <<= 1;
	self->mask = size - 1;
	self->slots = PyMem_Calloc(size, sizeof(struct slot));
	self->hist = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t));
	if (!self->slots || !self->hist)
		return PyErr_NoMemory(), -1;
	self->next_seq = 1;
	for (int i = 0; i < BATCH; i++) {
		self->siov[i].iov_base = self->sbuf[i];
		self->smsg[i].msg_hdr.msg_iov = &self->siov[i];
		self->smsg[i].msg_hdr.msg_iovlen = 1;
		self->smsg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
		self->riov[i].iov_base = self->rbuf[i];
		self->riov[i].iov_len = MAX_DGRAM;
		self->rmsg[i].msg_hdr.msg_iov = &self->riov[i];
		self->rmsg[i].msg_hdr.msg_iovlen = 1;
	}
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
	self->siov[k].iov_len = len;
	self->smsg[k].msg_hdr.msg_name = &self->dests[self->dest_of[r]];
}

/* Sends k staged messages; returns how many left, or -1 on a hard error. */
static int flush(Loop *self, int k)
{
	int done = 0;
	while (done < k) {
		int n = sendmmsg(self->fd, self->smsg + done, k - done, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == ENOBUFS)
				break;
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		done += n;
	}
	self->sent += done;
	return done;
}

/* Issues new requests until the window is full. */
static int issue(Loop *self, uint64_t t)
{
	uint32_t seqs[BATCH];
	int k = 0;

	while (self->inflight + k < self->concurrency && k < BATCH) {
		uint32_t seq = self->next_seq;
		while (self->slots[seq & self->mask].busy)
			seq++; /* a slow request still holds this slot */
		self->next_seq = seq + 1;
		struct slot *s = &self->slots[seq & self->mask];
		s->seq = seq;
		s->req = self->next_req;
		s->busy = 1; /* reserved; counted once sent */
		s->retries = 0;
		seqs[k] = seq;
		stage(self, k, self->next_req, seq);
		if (++self->next_req == self->nreq)
			self->next_req = 0;
		k++;
	}
	if (!k)
		return 0;
	int sent = flush(self, k);
	if (sent < 0)
		return -1;
	for (int i = 0; i < k; i++) {
		struct slot *s = &self->slots[seqs[i] & self->mask];
		if (i >= sent) { /* not sent: give the request back */
			s->busy = 0;
			continue;
		}
		s->first_ns = s->last_ns = t;
		s->recorded = t >= self->win_from && t < self->win_until;
		self->rec_started += s->recorded;
		self->inflight++;
	}
	if (sent < k) /* requests not sent are reissued in order next time */
		self->next_req = (self->next_req + self->nreq - (k - sent) % self->nreq) % self->nreq;
	return sent;
}

static void complete(Loop *self, struct slot *s, const struct dint_hdr *h, uint64_t t)
{
	self->replies++;
	if (s->recorded) {
		self->status_counts[h->status]++;
		if (h->status == DINT_ST_OK) {
			self->ok++;
			self->hist[hist_index(t - s->first_ns)]++;
		} else {
			self->err_status++;
		}
	}
	s->busy = 0;
	self->inflight--;
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
			self->lost += s->recorded;
			s->busy = 0;
			self->inflight--;
			continue;
		}
		s->retries++;
		s->last_ns = t;
		self->retransmits++;
		stage(self, k++, s->req, s->seq);
		if (k == BATCH) {
			if (flush(self, k) < 0)
				return -1;
			k = 0;
		}
	}
	return k ? (flush(self, k) < 0 ? -1 : 0) : 0;
}

/* Receives what has arrived; blocks (up to about 1 ms, the socket's receive
 * timeout) only when nothing more can be sent. Returns replies matched. */
static int receive(Loop *self, int block)
{
	uint64_t t0 = block ? now_ns() : 0;
	for (int i = 0; i < BATCH; i++)
		self->rmsg[i].msg_hdr.msg_namelen = 0;
	int n;
	if (block) {
		Py_BEGIN_ALLOW_THREADS
		n = recvmmsg(self->fd, self->rmsg, BATCH, MSG_WAITFORONE, NULL);
		Py_END_ALLOW_THREADS
	} else {
		n = recvmmsg(self->fd, self->rmsg, BATCH, MSG_DONTWAIT, NULL);
	}
	uint64_t t = now_ns();
	if (block)
		self->wait_ns += t - t0;
	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return PyErr_CheckSignals() < 0 ? -1 : 0;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
		return 0;
	}
	int matched = 0;
	for (int i = 0; i < n; i++) {
		const struct dint_hdr *h = (const void *)self->rbuf[i];
		if (self->rmsg[i].msg_len < DINT_HDR_LEN || h->magic != htons(DINT_MAGIC) ||
		    ntohl(h->client_id) != self->client_id) {
			self->stray++;
			continue;
		}
		uint32_t seq = ntohl(h->seq);
		struct slot *s = &self->slots[seq & self->mask];
		if (!s->busy || s->seq != seq) {
			self->stray++; /* a duplicate, or the answer to a request given up */
			continue;
		}
		complete(self, s, h, t);
		matched++;
	}
	return matched;
}

static PyObject *Loop_set_window(Loop *self, PyObject *args)
{
	unsigned long long from, until;
	if (!PyArg_ParseTuple(args, "KK", &from, &until))
		return NULL;
	self->win_from = from;
	self->win_until = until;
	Py_RETURN_NONE;
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
		if (receive(self, full) < 0)
			return NULL;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return NULL;
	}
	if (PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Loop_stats(Loop *self, PyObject *unused)
{
	PyObject *statuses = PyDict_New();
	if (!statuses)
		return NULL;
	for (int i = 0; i < 256; i++) {
		if (!self->status_counts[i])
			continue;
		PyObject *k = PyLong_FromLong(i), *v = PyLong_FromUnsignedLongLong(self->status_counts[i]);
		int bad = !k || !v || PyDict_SetItem(statuses, k, v) < 0;
		Py_XDECREF(k);
		Py_XDECREF(v);
		if (bad) {
			Py_DECREF(statuses);
			return NULL;
		}
	}
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsIsN}", "sent", self->sent, "retransmits",
			     self->retransmits, "replies", self->replies, "ok", self->ok, "err_status", self->err_status, "lost",
			     self->lost, "stray", self->stray, "started_in_window", self->rec_started,
			     "wait_ns", self->wait_ns, "inflight", self->inflight, "statuses", statuses);
}

/* histogram() -> [(latency_ns, count), ...] of the replies recorded OK. */
static PyObject *Loop_histogram(Loop *self, PyObject *unused)
{
	PyObject *out = PyList_New(0);
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		if (!self->hist[i])
			continue;
		PyObject *pair = Py_BuildValue("(KK)", hist_value(i), self->hist[i]);
		if (!pair || PyList_Append(out, pair) < 0) {
			Py_XDECREF(pair);
			Py_DECREF(out);
			return NULL;
		}
		Py_DECREF(pair);
	}
	return out;
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
	{ NULL },
};

static struct PyModuleDef netloop_module = {
	PyModuleDef_HEAD_INIT, .m_name = "harness._netloop",
	.m_doc = "Native closed-loop hot path of the dint-bench client",
	.m_size = -1, .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__netloop(void)
{
	if (PyType_Ready(&LoopType) < 0)
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
	PyModule_AddIntConstant(m, "HEADER_LEN", DINT_HDR_LEN);
	return m;
}
