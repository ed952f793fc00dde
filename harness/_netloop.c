/* The client's per-packet hot path: a closed loop keeping N dint requests in
 * flight with sendmmsg/recvmmsg over one connected UDP socket per server
 * (connected sockets skip a route lookup per datagram: about a fifth more
 * requests per second of client CPU), matching replies to requests by
 * sequence number, retransmitting on timeout and recording latencies. Everything above it (request generation, sockets, windows,
 * histograms, reporting) stays in Python; a plain Python loop costs too much
 * per packet to show the difference between the stacks. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../bpf/dint_proto.h"

#define BATCH 64
#define MAX_DESTS 64
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
	uint64_t win_from, win_until;
	/* results (recorded: requests started inside the window) */
	uint64_t sent, send_failed, retransmits, replies, ok, err_status, lost, stray, rec_started;
	uint64_t wait_ns;
	uint64_t status_counts[256];
	uint64_t *hist;
	/* scratch */
	struct mmsghdr smsg[BATCH], gmsg[BATCH], rmsg[BATCH];
	uint8_t sdest[BATCH];
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
	PyMem_Free(self->slots);
	PyMem_Free(self->hist);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "fds", "client_id", "requests", "offsets", "dest_of",
				  "concurrency", "timeout_ns", "max_retries", "stamp_txn", NULL };
	PyObject *fds;
	unsigned int client_id, concurrency, max_retries;
	unsigned long long timeout_ns;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIy*y*y*IKI|p", kwlist, &fds, &client_id,
					 &self->reqbuf, &self->offbuf, &self->destbuf,
					 &concurrency, &timeout_ns, &max_retries, &self->stamp_txn))
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
	Py_ssize_t nd = PySequence_Length(fds);
	if (nd < 1 || nd > MAX_DESTS) {
		PyErr_Format(PyExc_ValueError, "fds must hold 1..%d sockets, one per server", MAX_DESTS);
		return -1;
	}
	self->ndests = nd;
	for (Py_ssize_t i = 0; i < nd; i++) {
		PyObject *item = PySequence_GetItem(fds, i);
		int fd = item ? PyObject_AsFileDescriptor(item) : -1;
		Py_XDECREF(item);
		if (fd < 0)
			return -1;
		self->fds[i] = fd;
		self->pfds[i].fd = fd;
		self->pfds[i].events = POLLIN;
		/* a blocked receive wakes up at least every millisecond to retransmit */
		struct timeval tv = { 0, 1000 };
		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
			PyErr_SetFromErrno(PyExc_OSError);
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
	if (self->stamp_txn) /* unique per request, the same for its retransmissions */
		h->txn = htobe64(((uint64_t)self->client_id << 32) | seq);
	self->siov[k].iov_len = len;
	self->sdest[k] = self->dest_of[r];
}

/* Sends the k staged messages, one sendmmsg per server. A message the
 * socket cannot take now (a full buffer) counts as sent and lost: the
 * timeout scan sends it again. */
static int flush(Loop *self, int k)
{
	int start[MAX_DESTS + 1] = { 0 }, pos[MAX_DESTS];

	for (int i = 0; i < k; i++)
		start[self->sdest[i] + 1]++;
	for (uint32_t d = 0; d < self->ndests; d++) {
		start[d + 1] += start[d];
		pos[d] = start[d];
	}
	for (int i = 0; i < k; i++)
		self->gmsg[pos[self->sdest[i]]++] = self->smsg[i];
	for (uint32_t d = 0; d < self->ndests; d++) {
		int done = start[d], end = start[d + 1];
		while (done < end) {
			int n = sendmmsg(self->fds[d], self->gmsg + done, end - done, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) {
					PyErr_SetFromErrno(PyExc_OSError);
					return -1;
				}
				self->send_failed += end - done;
				break;
			}
			done += n;
		}
	}
	self->sent += k;
	return 0;
}

/* Issues new requests until the window is full. */
static int issue(Loop *self, uint64_t t)
{
	int k = 0;

	while (self->inflight < self->concurrency && k < BATCH) {
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
		s->first_ns = s->last_ns = t;
		s->recorded = t >= self->win_from && t < self->win_until;
		self->rec_started += s->recorded;
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
			self->lost += s->recorded;
			release(self, s);
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
	return k ? flush(self, k) : 0;
}

/* Matches the n replies received in rmsg. */
static int match(Loop *self, int n, uint64_t t)
{
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

/* recvmmsg on one server's socket; -1 with an exception set on a hard error. */
static int recv_from(Loop *self, int fd, int flags)
{
	int n;

	if (flags & MSG_WAITFORONE) {
		Py_BEGIN_ALLOW_THREADS
		n = recvmmsg(fd, self->rmsg, BATCH, flags, NULL);
		Py_END_ALLOW_THREADS
	} else {
		n = recvmmsg(fd, self->rmsg, BATCH, flags, NULL);
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

/* Receives what has arrived from servers with requests in flight. When
 * nothing more can be sent it blocks, up to about a millisecond: in
 * recvmmsg itself with one server (as a C client would), in ppoll with
 * several. Returns replies matched. */
static int receive(Loop *self, int block)
{
	int matched = 0;

	if (block && self->ndests == 1) {
		uint64_t t0 = now_ns();
		int n = recv_from(self, self->fds[0], MSG_WAITFORONE);
		uint64_t t = now_ns();
		self->wait_ns += t - t0;
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
	if (matched || !block)
		return matched;
	struct timespec ts = { 0, 1000000 };
	uint64_t t0 = now_ns();
	int r;
	Py_BEGIN_ALLOW_THREADS
	r = ppoll(self->pfds, self->ndests, &ts, NULL);
	Py_END_ALLOW_THREADS
	self->wait_ns += now_ns() - t0;
	if (r < 0 && errno == EINTR)
		return PyErr_CheckSignals() < 0 ? -1 : 0;
	return 0; /* the next round reads what arrived */
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
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsIsN}", "sent", self->sent, "send_failed",
			     self->send_failed, "retransmits",
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
