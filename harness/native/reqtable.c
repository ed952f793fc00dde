/* The request table (see reqtable.h). */
#include "reqtable.h"

int rt_init(struct reqtable *rt, PyObject *fds, int gso, uint32_t client_id, uint32_t capacity, uint32_t max_len,
	    uint64_t rto_min_ns, uint64_t rto_max_ns, uint32_t max_retries, uint64_t dead_ns)
{
	if (capacity < 1 || capacity > DINT_WINDOW / 2) {
		PyErr_Format(PyExc_ValueError, "at most %d requests in flight (the servers keep the outcomes of %d "
			     "request ids a client)", DINT_WINDOW / 2, DINT_WINDOW);
		return -1;
	}
	if (!rto_min_ns || rto_min_ns > rto_max_ns) {
		PyErr_SetString(PyExc_ValueError, "the least retransmission timeout must be positive and at most the "
				"timeout");
		return -1;
	}
	if (wire_open(&rt->w, fds, gso) < 0)
		return -1;
	/* twice the capacity: a slow request keeps its slot while the
	 * sequence numbers move on past it; at most the window */
	uint32_t size = 64;
	while (size < 2 * capacity)
		size <<= 1;
	rt->mask = size - 1;
	rt->slot_bytes = (max_len + 7) & ~7u;
	rt->slots = PyMem_Calloc(size, sizeof(struct slot));
	rt->slab = PyMem_Calloc(size, rt->slot_bytes);
	rt->sendq = PyMem_Calloc(size, sizeof(uint32_t));
	if (!rt->slots || !rt->slab || !rt->sendq) {
		PyErr_NoMemory();
		return -1;
	}
	if (!(rt->c.hist = hist_new()))
		return -1;
	rt->client_id = client_id;
	rt->rto_min_ns = rto_min_ns;
	rt->rto_max_ns = rto_max_ns;
	rt->dead_ns = dead_ns;
	rt->max_retries = max_retries;
	for (uint32_t d = 0; d < MAX_DESTS; d++)
		rt->rtt[d].rto = rto_max_ns; /* until a round trip is measured */
	rt->next_seq = rt->ack = 1;
	rt->next_tick_ns = UINT64_MAX;
	return 0;
}

void rt_free(struct reqtable *rt)
{
	PyMem_Free(rt->slots);
	PyMem_Free(rt->slab);
	PyMem_Free(rt->sendq);
	PyMem_Free(rt->c.hist);
}

static inline void release(struct reqtable *rt, struct slot *s)
{
	s->busy = 0;
	rt->inflight--;
	rt->dest_inflight[s->dest]--;
	rt->dest_wire[s->dest] -= s->onwire;
}

void rt_unqueue(struct reqtable *rt, uint32_t mark)
{
	while (rt->nsendq > mark) { /* newest first, so next_seq ends where it was */
		struct slot *s = &rt->slots[rt->sendq[--rt->nsendq]];
		rt->c.rec_started -= s->recorded;
		rt->next_seq = s->seq;
		release(rt, s);
	}
}

int rt_flush(struct reqtable *rt)
{
	struct sender *sd = &rt->w.sd;
	uint32_t q = 0, kept = 0, ack = htonl(rt_ack(rt));
	uint64_t t = now_ns();

	while (q < rt->nsendq) {
		int k = 0;
		for (; q < rt->nsendq && k < BATCH; q++) {
			uint32_t i = rt->sendq[q];
			struct slot *s = &rt->slots[i];
			if (!s->onwire) {
				if (rt->dest_window && rt->dest_wire[s->dest] >= rt->dest_window) {
					rt->sendq[kept++] = i; /* its server's window is full: later */
					continue;
				}
				s->onwire = 1;
				rt->dest_wire[s->dest]++;
				s->sent_ns = s->last_ns = t; /* its timeout runs from now */
				s->due_ns = t + rt->rtt[s->dest].rto;
				if (s->due_ns < rt->next_tick_ns)
					rt->next_tick_ns = s->due_ns;
			}
			struct dint_hdr *h = (void *)rt_datagram(rt, i);
			h->ack = ack; /* what the client waits for now, copies of older ones the servers drop */
			sd->iov[k].iov_base = h;
			sd->iov[k].iov_len = s->len;
			sd->dest[k++] = s->dest;
		}
		if (k && wire_send(&rt->w, k, &rt->c.send_failed) < 0)
			return -1;
		rt->c.sent += k;
	}
	rt->nsendq = kept;
	return 0;
}

/* A request's timeout after its n-th sending: its server's, doubled for
 * every retransmission, at most rto_max_ns. */
static inline uint64_t backoff(const struct reqtable *rt, const struct slot *s)
{
	uint64_t rto = rt->rtt[s->dest].rto;
	for (uint16_t i = 0; i < s->retries && rto < rt->rto_max_ns; i++)
		rto <<= 1;
	return rto < rt->rto_max_ns ? rto : rt->rto_max_ns;
}

static int poll_replies(struct reqtable *rt);

/* A tick sends at most this many copies to one server, the oldest first:
 * when a server stalls, every request to it falls due at once, and sending
 * them all again at once would overflow the rings on the way that the
 * server window keeps the first copies within. The rest follow a gap later. */
#define RETX_BURST 16
#define RETX_GAP_NS 100000

int rt_tick(struct reqtable *rt, uint64_t t)
{
	if (t < rt->next_tick_ns)
		return 0;
	if (rt->nsendq && rt_flush(rt) < 0) /* a slot is queued once at a time */
		return -1;
	/* replies that arrived while the client was busy elsewhere are not losses */
	if (poll_replies(rt) < 0)
		return -1;
	t = now_ns();
	uint64_t next = UINT64_MAX, backed_off = 0;
	uint16_t burst[MAX_DESTS] = { 0 };
	for (uint32_t j = 0; j <= rt->mask; j++) {
		uint32_t i = (rt->ack + j) & rt->mask; /* from the oldest */
		struct slot *s = &rt->slots[i];
		if (!s->busy || !s->onwire) /* waiting to be sent: not due */
			continue;
		if (t < s->due_ns) {
			if (s->due_ns < next)
				next = s->due_ns;
			continue;
		}
		if (!s->keep && s->retries >= rt->max_retries) {
			rt->c.lost += s->recorded;
			release(rt, s);
			if (rt->done && rt->done(rt, s, ST_TIMEOUT, NULL, 0) < 0)
				return -1;
			continue;
		}
		if (burst[s->dest] >= RETX_BURST) {
			if (t + RETX_GAP_NS < next)
				next = t + RETX_GAP_NS;
			continue;
		}
		burst[s->dest]++;
		if (s->keep && t - s->sent_ns >= rt->dead_ns) {
			char msg[160]; /* PyErr_Format has no %f */
			snprintf(msg, sizeof(msg), "server %u has not answered a request for %.1f s (sent %u times): "
				 "taken for dead", s->dest, (t - s->sent_ns) / 1e9, s->retries + 1);
			PyErr_SetString(PyExc_TimeoutError, msg);
			return -1;
		}
		/* the server's timeout doubles too (once a tick), as TCP's does: its
		 * round trips are sampled only on requests sent once, which leaves
		 * the slow ones out of the estimate */
		if (!(backed_off >> s->dest & 1)) {
			struct rtt *e = &rt->rtt[s->dest];
			e->rto = e->rto < rt->rto_max_ns / 2 ? 2 * e->rto : rt->rto_max_ns;
			backed_off |= 1ull << s->dest;
		}
		s->retries++;
		s->last_ns = t;
		s->due_ns = t + backoff(rt, s);
		if (s->due_ns < next)
			next = s->due_ns;
		rt->c.retransmits++;
		rt->sendq[rt->nsendq++] = i;
	}
	rt->next_tick_ns = next;
	return rt_flush(rt);
}

/* A round trip's bucket: quarter octaves from 1 us (1024 ns). */
static inline uint32_t rtt_bucket(uint64_t r)
{
	uint64_t us = (r >> 10) | 1;
	uint32_t o = 63 - __builtin_clzll(us), b;
	b = o < 2 ? o * 4 : 4 * o + (uint32_t)((us >> (o - 2)) & 3);
	return b < RTT_BUCKETS ? b : RTT_BUCKETS - 1;
}

/* The upper end of bucket b, ns. */
static inline uint64_t rtt_bucket_top(uint32_t b)
{
	uint32_t o = b / 4;
	return o < 2 ? 2048ull << o : ((4ull + b % 4 + 1) << (o - 2)) << 10;
}

/* The bucket's top below which 99% of the recent round trips fall. */
static uint64_t rtt_p99(const struct rtt *e)
{
	uint32_t above = 0, b = RTT_BUCKETS - 1;
	for (; b > 0; b--) {
		above += e->hist[b];
		if (100ull * above > e->recent)
			break;
	}
	return rtt_bucket_top(b);
}

/* A round trip measured on a request answered at its first sending. */
static inline void rtt_sample(struct reqtable *rt, struct rtt *e, uint64_t r)
{
	if (!e->samples++) {
		e->srtt = r;
		e->rttvar = r / 2;
	} else {
		uint64_t dev = e->srtt > r ? e->srtt - r : r - e->srtt;
		e->rttvar = (3 * e->rttvar + dev) / 4;
		e->srtt = (7 * e->srtt + r) / 8;
	}
	e->hist[rtt_bucket(r)]++;
	e->recent++;
	if (e->samples % RTT_AGE == 0) {
		e->recent = 0;
		for (uint32_t b = 0; b < RTT_BUCKETS; b++)
			e->recent += e->hist[b] >>= 1;
	}
	if (e->samples % RTT_P99_EVERY == 1 || e->samples < RTT_P99_EVERY)
		e->p99 = rtt_p99(e);
	uint64_t rto = e->srtt + 4 * e->rttvar, tail = e->p99 + e->p99 / 2;
	if (tail > rto)
		rto = tail;
	e->rto = rto < rt->rto_min_ns ? rt->rto_min_ns : rto > rt->rto_max_ns ? rt->rto_max_ns : rto;
}

PyObject *rt_rtt_stats(const struct reqtable *rt)
{
	PyObject *rto = PyList_New(rt->w.ndests), *srtt = rto ? PyList_New(rt->w.ndests) : NULL,
		 *n = srtt ? PyList_New(rt->w.ndests) : NULL;
	if (!n) {
		Py_XDECREF(rto);
		Py_XDECREF(srtt);
		return NULL;
	}
	for (uint32_t d = 0; d < rt->w.ndests; d++) {
		const struct rtt *e = &rt->rtt[d];
		PyList_SET_ITEM(rto, d, PyFloat_FromDouble(e->rto / 1e3));
		PyList_SET_ITEM(srtt, d, e->samples ? PyFloat_FromDouble(e->srtt / 1e3) : Py_NewRef(Py_None));
		PyList_SET_ITEM(n, d, PyLong_FromUnsignedLongLong(e->samples));
	}
	PyObject *p99 = PyList_New(rt->w.ndests);
	if (!p99) {
		Py_DECREF(rto);
		Py_DECREF(srtt);
		Py_DECREF(n);
		return NULL;
	}
	for (uint32_t d = 0; d < rt->w.ndests; d++)
		PyList_SET_ITEM(p99, d, rt->rtt[d].samples ? PyFloat_FromDouble(rt->rtt[d].p99 / 1e3) : Py_NewRef(Py_None));
	return Py_BuildValue("{sNsNsNsN}", "rto_us", rto, "srtt_us", srtt, "p99_us", p99, "rtt_samples", n);
}

/* The slot that received datagram i answers, freed and its answer counted;
 * NULL for a datagram that answers nothing in flight (counted as stray)
 * and for a RETRY. */
static inline struct slot *answered(struct reqtable *rt, int i, uint64_t t)
{
	const struct mmsghdr *m = &rt->w.rv.msg[i];
	const struct dint_hdr *h = (const void *)rt->w.rv.buf[i];

	if (m->msg_len < DINT_HDR_LEN || h->magic != htons(DINT_MAGIC) || ntohl(h->client_id) != rt->client_id) {
		rt->c.stray++;
		return NULL;
	}
	uint32_t seq = ntohl(h->seq);
	struct slot *s = &rt->slots[seq & rt->mask];
	if (!s->busy || s->seq != seq) {
		rt->c.stray++; /* a duplicate, or the answer to a request given up */
		return NULL;
	}
	rt->c.replies++;
	if (h->status == DINT_ST_RETRY) {
		/* a reply, but not an answer: overdue now, so the next tick
		 * sends it again with the same id */
		s->due_ns = rt->next_tick_ns = t;
		s->bumped = 1;
		rt->c.busy++;
		return NULL;
	}
	if (!s->retries && !s->bumped)
		rtt_sample(rt, &rt->rtt[s->dest], t - s->last_ns);
	count_answer(&rt->c, s->recorded, h->op, h->status, s->first_ns, t);
	release(rt, s);
	return s;
}

/* Matches the n datagrams received; returns how many answered a request. */
static int match(struct reqtable *rt, int n, uint64_t t)
{
	int matched = 0;

	for (int i = 0; i < n; i++) {
		struct slot *s = answered(rt, i, t);
		if (!s)
			continue;
		const struct dint_hdr *h = (const void *)rt->w.rv.buf[i];
		if (rt->done && rt->done(rt, s, h->status, h, rt->w.rv.msg[i].msg_len) < 0)
			return -1;
		matched++;
	}
	return matched;
}

/* Reads what has arrived from servers with requests in flight, without
 * waiting; returns the replies matched, or -1. */
static int poll_replies(struct reqtable *rt)
{
	int matched = 0;

	for (uint32_t d = 0; d < rt->w.ndests; d++) {
		if (!rt->dest_inflight[d])
			continue;
		int n = wire_recv(&rt->w, d, MSG_DONTWAIT);
		if (n < 0)
			return -1;
		if (n && (n = match(rt, n, now_ns())) < 0)
			return -1;
		matched += n;
	}
	return matched;
}

int rt_receive(struct reqtable *rt, int block, uint64_t max_wait_ns)
{
	if (block && rt->w.ndests == 1 && max_wait_ns >= 1000000) {
		uint64_t t0 = now_ns();
		int n = wire_recv(&rt->w, 0, MSG_WAITFORONE);
		uint64_t t = now_ns();
		rt->c.wait_ns += t - t0;
		return n < 0 ? -1 : match(rt, n, t);
	}
	int matched = poll_replies(rt);
	if (matched < 0)
		return -1;
	if (matched || !block || max_wait_ns < 2000)
		return matched;
	return wire_wait(&rt->w, max_wait_ns < 1000000 ? max_wait_ns : 1000000, &rt->c.wait_ns);
}

int rt_linger(struct reqtable *rt, uint64_t quiet_ns, uint64_t max_ns)
{
	uint64_t t0 = now_ns(), last = t0;

	for (;;) {
		uint64_t t = now_ns();
		if (t - last >= quiet_ns || t - t0 >= max_ns)
			return 0;
		int got = 0;
		for (uint32_t d = 0; d < rt->w.ndests; d++) {
			int n = wire_recv(&rt->w, d, MSG_DONTWAIT);
			if (n < 0)
				return -1;
			if (n && match(rt, n, now_ns()) < 0)
				return -1;
			got += n;
		}
		if (got)
			last = now_ns();
		else if (wire_wait(&rt->w, quiet_ns - (t - last), &rt->c.wait_ns) < 0)
			return -1;
	}
}
