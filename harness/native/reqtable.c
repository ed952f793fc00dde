/* The request table (see reqtable.h). */
#include "reqtable.h"

int rt_init(struct reqtable *rt, PyObject *fds, int gso, uint32_t client_id, uint32_t capacity, uint32_t max_len,
	    uint64_t timeout_ns, uint32_t max_retries)
{
	if (wire_open(&rt->w, fds, gso) < 0)
		return -1;
	/* twice the capacity: a slow request keeps its slot while the
	 * sequence numbers move on past it */
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
	rt->timeout_ns = timeout_ns;
	rt->max_retries = max_retries;
	rt->next_seq = 1;
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
	uint32_t q = 0;

	while (q < rt->nsendq) {
		int k = 0;
		for (; q < rt->nsendq && k < BATCH; q++, k++) {
			const struct slot *s = &rt->slots[rt->sendq[q]];
			sd->iov[k].iov_base = rt_datagram(rt, rt->sendq[q]);
			sd->iov[k].iov_len = s->len;
			sd->dest[k] = s->dest;
		}
		if (wire_send(&rt->w, k, &rt->c.send_failed) < 0)
			return -1;
		rt->c.sent += k;
	}
	rt->nsendq = 0;
	return 0;
}

int rt_tick(struct reqtable *rt, uint64_t t)
{
	if (t - rt->last_scan_ns <= 1000000)
		return 0;
	rt->last_scan_ns = t;
	if (rt->nsendq && rt_flush(rt) < 0) /* a slot is queued once at a time */
		return -1;
	for (uint32_t i = 0; i <= rt->mask; i++) {
		struct slot *s = &rt->slots[i];
		if (!s->busy || t - s->last_ns < rt->timeout_ns)
			continue;
		if (s->retries >= rt->max_retries) {
			rt->c.lost += s->recorded;
			release(rt, s);
			if (rt->done && rt->done(rt, s, ST_TIMEOUT, NULL, 0) < 0)
				return -1;
			continue;
		}
		s->retries++;
		s->last_ns = t;
		rt->c.retransmits++;
		rt->sendq[rt->nsendq++] = i;
	}
	return rt_flush(rt);
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
		/* a reply, but not an answer: overdue now, so the next scan
		 * (within a millisecond) sends it again with the same id */
		s->last_ns = t - rt->timeout_ns;
		rt->c.busy++;
		return NULL;
	}
	count_answer(&rt->c, s->recorded, h->status, s->first_ns, t);
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

int rt_receive(struct reqtable *rt, int block, uint64_t max_wait_ns)
{
	int matched = 0;

	if (block && rt->w.ndests == 1 && max_wait_ns >= 1000000) {
		uint64_t t0 = now_ns();
		int n = wire_recv(&rt->w, 0, MSG_WAITFORONE);
		uint64_t t = now_ns();
		rt->c.wait_ns += t - t0;
		return n < 0 ? -1 : match(rt, n, t);
	}
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
	if (matched || !block || max_wait_ns < 2000)
		return matched;
	return wire_wait(&rt->w, max_wait_ns < 1000000 ? max_wait_ns : 1000000, &rt->c.wait_ns);
}
