/* The flat request loop (type Loop): N dint requests in flight, closed loop
 * or on an open-loop schedule, cycling through requests generated in
 * advance (harness/loadgen.py), over the request table. Everything above it
 * (request generation, sockets, windows, histograms, reporting) stays in
 * Python; a plain Python loop costs too much per packet to show the
 * difference between the stacks. */
#include "reqtable.h"

PyDoc_STRVAR(Loop_doc, "Loop(fds, client_id, requests, offsets, dest_of, concurrency, timeout_ns, max_retries, "
		       "stamp_txn=False, interval_ns=0, gso=True, rto_min_ns=250000, dead_ns=5e9, server_window=0): the flat "
		       "request loop, closed or (interval_ns > 0) open, over one connected UDP socket per server; "
		       "timeout_ns: the longest retransmission timeout, and the first (reqtable.h)");

typedef struct {
	PyObject_HEAD
	struct reqtable rt;
	int stamp_txn; /* give each request the transaction id client_id << 32 | seq */
	/* requests, generated in advance: bytes [off[i], off[i+1]) of reqbuf,
	 * sent to server dest_of[i] */
	Py_buffer reqbuf, offbuf, destbuf;
	const uint32_t *off;
	const uint8_t *dest_of;
	uint32_t nreq, next_req;
	uint32_t concurrency;
} Loop;

static void Loop_dealloc(Loop *self)
{
	if (self->reqbuf.obj)
		PyBuffer_Release(&self->reqbuf);
	if (self->offbuf.obj)
		PyBuffer_Release(&self->offbuf);
	if (self->destbuf.obj)
		PyBuffer_Release(&self->destbuf);
	rt_free(&self->rt);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Loop_init(Loop *self, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "fds", "client_id", "requests", "offsets", "dest_of",
				  "concurrency", "timeout_ns", "max_retries", "stamp_txn", "interval_ns", "gso",
				  "rto_min_ns", "dead_ns", "server_window", NULL };
	PyObject *fds;
	unsigned int client_id, concurrency, max_retries, server_window = 0;
	unsigned long long timeout_ns, interval_ns = 0, rto_min_ns = RTO_MIN_NS, dead_ns = DEAD_NS;
	int gso = 1;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIy*y*y*IKI|pKpKKI", kwlist, &fds, &client_id,
					 &self->reqbuf, &self->offbuf, &self->destbuf,
					 &concurrency, &timeout_ns, &max_retries, &self->stamp_txn, &interval_ns,
					 &gso, &rto_min_ns, &dead_ns, &server_window))
		return -1;
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
	uint32_t max_len = 0;
	for (uint32_t i = 0; i < self->nreq; i++) {
		uint32_t len = self->off[i + 1] - self->off[i];
		if (self->off[i + 1] < self->off[i] || self->off[i + 1] > (uint64_t)self->reqbuf.len ||
		    len < DINT_HDR_LEN || len > MAX_DGRAM) {
			PyErr_Format(PyExc_ValueError, "request %u: bad offsets or length", i);
			return -1;
		}
		if (len > max_len)
			max_len = len;
	}
	if (concurrency < 1 || concurrency > DINT_WINDOW / 2) {
		PyErr_Format(PyExc_ValueError, "concurrency must be in 1..%d", DINT_WINDOW / 2);
		return -1;
	}
	if (rt_init(&self->rt, fds, gso, client_id, concurrency, max_len, rto_min_ns < timeout_ns ? rto_min_ns :
		    timeout_ns, timeout_ns, max_retries, dead_ns) < 0)
		return -1;
	self->rt.dest_window = server_window;
	for (uint32_t i = 0; i < self->nreq; i++) {
		if (self->dest_of[i] >= self->rt.w.ndests) {
			PyErr_Format(PyExc_ValueError, "request %u names destination %u of %u", i,
				     self->dest_of[i], self->rt.w.ndests);
			return -1;
		}
	}
	self->concurrency = concurrency;
	self->rt.interval_ns = interval_ns;
	return 0;
}

/* Issues new requests until the window is full (closed loop), or those due
 * by t while there is room (open loop), and sends them. */
static int issue(Loop *self, uint64_t t)
{
	struct reqtable *rt = &self->rt;

	for (int k = 0; rt->inflight < self->concurrency && k < BATCH && rt_room(rt, 1); k++) {
		uint64_t start = t;
		if (rt->interval_ns && !rt_due(rt, t, &start))
			break;
		uint32_t r = self->next_req;
		uint32_t len = self->off[r + 1] - self->off[r];
		uint32_t i = rt_add(rt, self->dest_of[r], len, start, t);
		uint32_t seq = rt->slots[i].seq;
		struct dint_hdr *h = (void *)rt_datagram(rt, i);
		memcpy(h, (const char *)self->reqbuf.buf + self->off[r], len);
		h->client_id = htonl(rt->client_id);
		h->seq = htonl(seq);
		if (self->stamp_txn) /* unique per request, the same for its retransmissions */
			h->txn = htobe64(((uint64_t)rt->client_id << 32) | seq);
		if (++self->next_req == self->nreq)
			self->next_req = 0;
	}
	return rt->nsendq ? rt_flush(rt) : 0;
}

PyDoc_STRVAR(Loop_set_window_doc, "set_window(from_ns, until_ns): record requests started in [from_ns, until_ns)");
static PyObject *Loop_set_window(Loop *self, PyObject *args)
{
	return counts_set_window(&self->rt.c, args);
}

PyDoc_STRVAR(Loop_run_doc, "run(until_ns, issue_new): run the loop until the monotonic clock reaches until_ns "
			   "(without issuing, also until nothing is in flight)");
static PyObject *Loop_run(Loop *self, PyObject *args)
{
	struct reqtable *rt = &self->rt;
	unsigned long long until;
	int issue_new;
	uint32_t iter = 0;

	if (!PyArg_ParseTuple(args, "Kp", &until, &issue_new))
		return NULL;
	for (;;) {
		uint64_t t = now_ns();
		if (t >= until || (!issue_new && !rt->inflight))
			break;
		if (issue_new ? issue(self, t) < 0 : rt->nsendq && rt_flush(rt) < 0)
			return NULL;
		if (rt_tick(rt, t) < 0)
			return NULL;
		int full = !issue_new || rt->inflight >= self->concurrency;
		uint64_t wait = 1000000;
		if (issue_new && rt->interval_ns && !full) { /* wait no later than the next is due */
			uint64_t now = now_ns();
			wait = rt->next_due > now ? rt->next_due - now : 0;
			full = 1;
		}
		if (rt_receive(rt, full, wait) < 0)
			return NULL;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return NULL;
	}
	if (PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

PyDoc_STRVAR(Loop_stats_doc, "the counters of the recorded window, and rtt (per server: retransmission timeout, "
			     "smoothed round trip, samples)");
static PyObject *Loop_stats(Loop *self, PyObject *Py_UNUSED(unused))
{
	const struct reqtable *rt = &self->rt;
	PyObject *d = counts_stats(&rt->c, rt->inflight, rt->w.sd.gso);

	if (d && dict_put(d, "rtt", rt_rtt_stats(rt)) < 0)
		Py_CLEAR(d);
	if (d && rt->interval_ns &&
	    (dict_put(d, "open_loop_late", PyLong_FromUnsignedLongLong(rt->late)) < 0 ||
	     dict_put(d, "open_loop_skipped", PyLong_FromUnsignedLongLong(rt->skipped)) < 0))
		Py_CLEAR(d);
	return d;
}

PyDoc_STRVAR(Loop_linger_doc, "linger(quiet_ns, max_ns): once nothing is in flight, read the replies still "
			      "coming (to copies sent again) until none has come for quiet_ns");
static PyObject *Loop_linger(Loop *self, PyObject *args)
{
	unsigned long long quiet, max;

	if (!PyArg_ParseTuple(args, "KK", &quiet, &max))
		return NULL;
	if (rt_linger(&self->rt, quiet, max) < 0)
		return NULL;
	Py_RETURN_NONE;
}

PyDoc_STRVAR(Loop_histogram_doc, "histogram() -> [(latency_ns, count)] of the replies recorded with status OK");
static PyObject *Loop_histogram(Loop *self, PyObject *Py_UNUSED(unused))
{
	return hist_pairs(self->rt.c.hist);
}

NATIVE_TYPE(Loop, Loop_init, Loop_dealloc, METHOD(Loop, set_window, METH_VARARGS), METHOD(Loop, run, METH_VARARGS),
	    METHOD(Loop, stats, METH_NOARGS), METHOD(Loop, histogram, METH_NOARGS), METHOD(Loop, linger, METH_VARARGS));
