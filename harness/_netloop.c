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

/* What both loops count, the same way. */
struct counts {
	uint64_t win_from, win_until; /* a request first sent in [from, until) is recorded */
	uint64_t sent, send_failed, retransmits, replies, ok, err_status, lost, stray, rec_started, busy;
	uint64_t wait_ns;
	uint64_t status_counts[256];
	uint64_t *hist; /* round trips of recorded requests answered OK */
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
	struct mmsghdr smsg[BATCH], gmsg[BATCH], rmsg[BATCH];
	uint8_t sdest[BATCH];
	struct iovec siov[BATCH], riov[BATCH];
	char sbuf[BATCH][MAX_DGRAM], rbuf[BATCH][MAX_DGRAM];
} Loop;

/* An open-loop request sent this much after it was due counts as late. */
#define LATE_NS 100000

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
	PyMem_Free(self->c.hist);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One connected socket per server: fills fds and pfds; returns how many, or
 * -1 with an exception set. */
static int parse_fds(PyObject *fds, int *out, struct pollfd *pfds)
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
				  "concurrency", "timeout_ns", "max_retries", "stamp_txn", "interval_ns", NULL };
	PyObject *fds;
	unsigned int client_id, concurrency, max_retries;
	unsigned long long timeout_ns, interval_ns = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIy*y*y*IKI|pK", kwlist, &fds, &client_id,
					 &self->reqbuf, &self->offbuf, &self->destbuf,
					 &concurrency, &timeout_ns, &max_retries, &self->stamp_txn, &interval_ns))
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

/* Sends k messages, one sendmmsg per server (dest[i] names message i's):
 * grouped into out, then sent. A message the socket cannot take now (a full
 * buffer) counts as sent and lost: the timeout scan sends it again. */
static int send_grouped(const int *fds, uint32_t ndests, const struct mmsghdr *msgs, const uint8_t *dest,
			int k, struct mmsghdr *out, uint64_t *send_failed)
{
	int start[MAX_DESTS + 1] = { 0 }, pos[MAX_DESTS];

	for (int i = 0; i < k; i++)
		start[dest[i] + 1]++;
	for (uint32_t d = 0; d < ndests; d++) {
		start[d + 1] += start[d];
		pos[d] = start[d];
	}
	for (int i = 0; i < k; i++)
		out[pos[dest[i]]++] = msgs[i];
	for (uint32_t d = 0; d < ndests; d++) {
		int done = start[d], end = start[d + 1];
		while (done < end) {
			int n = sendmmsg(fds[d], out + done, end - done, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) {
					PyErr_SetFromErrno(PyExc_OSError);
					return -1;
				}
				*send_failed += end - done;
				break;
			}
			done += n;
		}
	}
	return 0;
}

/* Sends the k staged messages. */
static int flush(Loop *self, int k)
{
	if (send_grouped(self->fds, self->ndests, self->smsg, self->sdest, k, self->gmsg, &self->c.send_failed) < 0)
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

/* Counts the answer to a request first sent at first_ns. */
static inline void count_answer(struct counts *c, int recorded, uint8_t status, uint64_t first_ns, uint64_t t)
{
	if (!recorded)
		return;
	c->status_counts[status]++;
	if (status == DINT_ST_OK) {
		c->ok++;
		c->hist[hist_index(t - first_ns)]++;
	} else {
		c->err_status++;
	}
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

/* A RETRY reply (dint: the record's latch stayed busy) is a reply, but not
 * an answer: the request is made overdue, so the next timeout scan (within
 * a millisecond) sends it again with the same request id. */
static inline int busy_retry(const struct dint_hdr *h, uint64_t *last_ns, uint64_t t, uint64_t timeout_ns,
			     uint64_t *busy)
{
	if (h->status != DINT_ST_RETRY)
		return 0;
	*last_ns = t - timeout_ns;
	(*busy)++;
	return 1;
}

/* Whether a received datagram is a dint reply to this client. */
static inline int is_reply_to(const struct mmsghdr *m, const struct dint_hdr *h, uint32_t client_id)
{
	return m->msg_len >= DINT_HDR_LEN && h->magic == htons(DINT_MAGIC) && ntohl(h->client_id) == client_id;
}

/* The request id a received datagram answers, in *seq; 0 (counted as
 * stray) if it is not a dint reply to this client. */
static inline int reply_seq(struct counts *c, const struct mmsghdr *m, const struct dint_hdr *h,
			    uint32_t client_id, uint32_t *seq)
{
	if (!is_reply_to(m, h, client_id)) {
		c->stray++;
		return 0;
	}
	*seq = ntohl(h->seq);
	return 1;
}

/* Waits in ppoll for any of the sockets, up to wait_ns. -1 with an
 * exception set if a signal handler raised. */
static int wait_replies(struct counts *c, struct pollfd *pfds, uint32_t n, uint64_t wait_ns)
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

static PyObject *counts_dict(const uint64_t *counts, int n)
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
static PyObject *set_window(struct counts *c, PyObject *args)
{
	unsigned long long from, until;
	if (!PyArg_ParseTuple(args, "KK", &from, &until))
		return NULL;
	c->win_from = from;
	c->win_until = until;
	Py_RETURN_NONE;
}

/* The counters as a dict; the caller adds its own. */
static PyObject *counts_stats(const struct counts *c, uint32_t inflight)
{
	PyObject *statuses = counts_dict(c->status_counts, 256);
	if (!statuses)
		return NULL;
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsIsN}", "sent", c->sent, "send_failed", c->send_failed,
			     "retransmits", c->retransmits, "busy_retries", c->busy, "replies", c->replies,
			     "ok", c->ok, "err_status", c->err_status, "lost", c->lost, "stray", c->stray,
			     "started_in_window", c->rec_started, "wait_ns", c->wait_ns, "inflight", inflight,
			     "statuses", statuses);
}

/* Matches the n replies received in rmsg. */
static int match(Loop *self, int n, uint64_t t)
{
	int matched = 0;

	for (int i = 0; i < n; i++) {
		const struct dint_hdr *h = (const void *)self->rbuf[i];
		uint32_t seq;
		if (!reply_seq(&self->c, &self->rmsg[i], h, self->client_id, &seq))
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
static int recv_batch(int fd, struct mmsghdr *rmsg, int flags)
{
	int n;

	if (flags & MSG_WAITFORONE) {
		Py_BEGIN_ALLOW_THREADS
		n = recvmmsg(fd, rmsg, BATCH, flags, NULL);
		Py_END_ALLOW_THREADS
	} else {
		n = recvmmsg(fd, rmsg, BATCH, flags, NULL);
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
	return recv_batch(fd, self->rmsg, flags);
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

static PyObject *hist_pairs(const uint64_t *hist)
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
	PyObject *d = counts_stats(&self->c, self->inflight);
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

/* ---- TxnIO: the I/O layer of the transaction executor (harness/txn.py) ----
 * Batches of requests, each batch tagged with a Python object (the
 * transaction), are sent over the same connected per-server sockets; replies
 * are matched by request id, overdue requests retransmitted with the same id
 * and given up after max_retries (reported as status TIMEOUT). A batch
 * completes when every request in it has a reply or was given up; run()
 * returns the completed batches, so Python sees one event per transaction
 * round, never one per datagram. */

#define TXN_TIMEOUT 255 /* a status no server sends: the request was given up */
#define TXN_KINDS 16    /* latency histograms kept for Python (transaction types) */

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

static PyTypeObject TxnIOType = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._netloop.TxnIO",
	.tp_basicsize = sizeof(TxnIO),
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Batched request I/O of the transaction executor over one UDP socket per server",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)TxnIO_init,
	.tp_dealloc = (destructor)TxnIO_dealloc,
	.tp_methods = TxnIO_methods,
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
