/* Batches of requests (see batches.h). */
#include "batches.h"

/* Request s of a batch ended with status (reply: the answer, len bytes, or
 * NULL when it was given up): its reply takes its place, and the batch
 * joins the completed ones when it was the last. */
static int request_done(struct reqtable *rt, struct slot *s, int status, const struct dint_hdr *reply, uint32_t len)
{
	struct batches *io = (struct batches *)((char *)rt - offsetof(struct batches, rt));
	struct batch *b = &io->b[s->batch];
	PyObject *value;

	if (status == DINT_ST_OK)
		io->ok_by_op[s->op]++;
	if (b->held && held_track(b->held, s->op, rt_datagram(rt, (uint32_t)(s - rt->slots)), s->dest, s->retries,
				  status) < 0)
		return -1;
	if (reply && status == DINT_ST_OK &&
	    (s->op == DINT_OP_READ || s->op == DINT_OP_LOCK_SHARED || s->op == DINT_OP_LOCK_EXCL)) {
		value = PyBytes_FromStringAndSize((const char *)(reply + 1), len - DINT_HDR_LEN);
		if (!value)
			return -1;
	} else {
		value = Py_NewRef(Py_None);
	}
	PyObject *rep = PyTuple_New(3), *st = rep ? PyLong_FromLong(status) : NULL,
		 *v = st ? PyLong_FromUnsignedLong(reply ? ntohl(reply->ver) : 0) : NULL;
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
	io->doneq[io->ndone++] = (struct done){ .tag = b->tag, .replies = b->replies, .fail = b->fail,
						.owner = b->owner };
	b->tag = b->replies = NULL; /* both now owned by the queue */
	b->next_free = io->free_batch;
	io->free_batch = s->batch;
	io->nbusy--;
	io->batches_done++;
	return 0;
}

int BatchesObject_init(BatchesObject *self, PyObject *args, PyObject *kw)
{
	struct batches *io = &self->io;
	static char *kwlist[] = { "fds", "client_id", "timeout_ns", "max_retries", "max_inflight", "max_value",
				  "gso", "rto_min_ns", "dead_ns", "server_window", NULL };
	PyObject *fds;
	unsigned int client_id, max_retries, max_inflight, max_value = 64, server_window = 0;
	unsigned long long timeout_ns, rto_min_ns = RTO_MIN_NS, dead_ns = DEAD_NS;
	int gso = 1;

	if (io->rt.slots) {
		PyErr_SetString(PyExc_RuntimeError, "initialised once");
		return -1;
	}
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OIKII|IpKKI", kwlist, &fds, &client_id, &timeout_ns,
					 &max_retries, &max_inflight, &max_value, &gso, &rto_min_ns, &dead_ns,
					 &server_window))
		return -1;
	if (max_inflight < 1 || max_inflight > DINT_WINDOW / 2) {
		PyErr_Format(PyExc_ValueError, "max_inflight must be in 1..%d requests", DINT_WINDOW / 2);
		return -1;
	}
	/* a longer value every server answers BAD_LENGTH (dint_proto.h) */
	if (max_value > DINT_MAX_VALUE) {
		PyErr_Format(PyExc_ValueError, "max_value must be at most %d bytes (DINT_MAX_VALUE)", DINT_MAX_VALUE);
		return -1;
	}
	if (rt_init(&io->rt, fds, gso, client_id, max_inflight, DINT_HDR_LEN + max_value,
		    rto_min_ns < timeout_ns ? rto_min_ns : timeout_ns, timeout_ns, max_retries, dead_ns) < 0)
		return -1;
	io->rt.done = request_done;
	io->rt.dest_window = server_window;
	io->max_inflight = max_inflight;
	io->max_value = max_value;
	io->b = PyMem_Calloc(max_inflight, sizeof(struct batch));
	io->doneq = PyMem_Calloc(max_inflight, sizeof(struct done));
	if (!io->b || !io->doneq) {
		PyErr_NoMemory();
		return -1;
	}
	for (uint32_t i = 0; i < max_inflight; i++)
		io->b[i].next_free = i + 1;
	io->free_batch = 0;
	return 0;
}

void batches_free(struct batches *io)
{
	if (io->b) {
		for (uint32_t i = 0; i < io->max_inflight; i++) {
			Py_XDECREF(io->b[i].tag);
			Py_XDECREF(io->b[i].replies);
		}
	}
	for (uint32_t i = 0; i < io->ndone; i++) {
		Py_XDECREF(io->doneq[i].tag);
		Py_XDECREF(io->doneq[i].replies);
	}
	PyMem_Free(io->b);
	PyMem_Free(io->doneq);
	rt_free(&io->rt);
}

int batches_open(struct batches *io, PyObject *tag, uint32_t owner, struct held *held, uint32_t n)
{
	PyObject *replies = PyList_New(n);
	if (!replies)
		return -1;
	uint32_t bi = io->free_batch; /* there is one: fewer batches than requests in flight */
	struct batch *b = &io->b[bi];

	io->free_batch = b->next_free;
	io->nbusy++;
	b->tag = tag ? Py_NewRef(tag) : NULL;
	b->replies = replies;
	b->held = held;
	b->owner = owner;
	b->remaining = n;
	b->fail = -1;
	return (int)bi;
}

/* Gives back a batch opened but not sent (a bad request). */
static void abandon(struct batches *io, uint32_t bi)
{
	struct batch *b = &io->b[bi];

	Py_CLEAR(b->tag);
	Py_CLEAR(b->replies);
	b->next_free = io->free_batch;
	io->free_batch = bi;
	io->nbusy--;
}

void batches_stage(struct batches *io, uint32_t bi, uint32_t pos, uint8_t op, uint8_t table, uint64_t key,
		   const char *val, uint32_t vlen, uint32_t ver, uint8_t dest, uint64_t txn, uint64_t t)
{
	struct reqtable *rt = &io->rt;
	uint32_t i = rt_add(rt, dest, DINT_HDR_LEN + vlen, t, t);
	struct slot *s = &rt->slots[i];
	struct dint_hdr *h = (void *)rt_datagram(rt, i);

	s->batch = bi;
	s->pos = pos;
	s->op = op;
	s->keep = DINT_OP_CHANGES(op); /* its outcome must be known: sent until answered */
	h->magic = htons(DINT_MAGIC);
	h->proto = DINT_PROTO_VERSION;
	h->op = op;
	h->status = DINT_ST_REQUEST;
	h->table = table;
	h->val_len = htons(vlen);
	h->client_id = htonl(rt->client_id);
	h->seq = htonl(s->seq);
	h->txn = htobe64(txn);
	h->key = htobe64(key);
	h->ver = htonl(ver);
	memcpy(h + 1, val, vlen);
}

int batches_submit(struct batches *io, PyObject *tag, uint32_t owner, struct held *held, uint64_t txn,
		   PyObject *reqs)
{
	struct reqtable *rt = &io->rt;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(reqs);

	if (n < 1 || n > 65535 || !batches_room(io, n)) {
		PyErr_Format(n < 1 ? PyExc_ValueError : PyExc_RuntimeError,
			     n < 1 ? "a batch holds at least one request" :
				     "%zd more requests would exceed max_inflight (%u; %u in flight) or the window",
			     n, io->max_inflight, rt->inflight);
		return -1;
	}
	int bi = batches_open(io, tag, owner, held, n);
	if (bi < 0)
		return -1;
	uint32_t mark = rt->nsendq;
	PyObject **items = PySequence_Fast_ITEMS(reqs);
	uint64_t t = now_ns();

	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *r = items[i];
		if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 6) {
			/* where a request goes is the workload's placement, not a rule of this layer */
			PyErr_Format(PyExc_TypeError, "request %zd: a tuple (op, table, key, value, ver, dest), the "
				     "destination (a server index) included", i);
			goto fail;
		}
		unsigned long op = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 0));
		unsigned long table = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 1));
		unsigned long long key = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(r, 2));
		PyObject *value = PyTuple_GET_ITEM(r, 3);
		unsigned long ver = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 4));
		unsigned long dest = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(r, 5));
		if (PyErr_Occurred()) {
			PyErr_Format(PyExc_ValueError, "request %zd: op, table, key, ver and dest are unsigned integers",
				     i);
			goto fail;
		}
		if (op == 0 || op >= DINT_OP_MAX || table > 255 || ver > UINT32_MAX || dest >= rt->w.ndests) {
			PyErr_Format(PyExc_ValueError, "request %zd: op %lu, table %lu, ver %lu or dest %lu out of range",
				     i, op, table, ver, dest);
			goto fail;
		}
		if (!PyBytes_Check(value) || (uint64_t)PyBytes_GET_SIZE(value) > io->max_value) {
			PyErr_Format(PyExc_ValueError, "request %zd: value must be bytes of at most %u", i,
				     io->max_value);
			goto fail;
		}
		batches_stage(io, bi, i, op, table, key, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), ver, dest,
			      txn, t);
	}
	return 0;
fail: /* nothing of this batch was sent: give its slots back */
	rt_unqueue(rt, mark);
	abandon(io, bi);
	return -1;
}

int batches_round(struct batches *io, uint64_t until)
{
	struct reqtable *rt = &io->rt;
	uint32_t iter = 0;

	for (;;) {
		if (rt->nsendq && rt_flush(rt) < 0)
			return -1;
		uint64_t t = now_ns();
		if (rt_tick(rt, t) < 0)
			return -1;
		if (io->ndone || t >= until || !rt->inflight)
			return 0;
		if (rt_receive(rt, 1, until - t) < 0)
			return -1;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return -1;
	}
}

const char BatchesObject_stats_doc[] = "the request-level counters, and: batches (completed), batches_inflight, "
					"ok_by_op (OK answers per operation, whole run), rtt (per server: "
					"retransmission timeout, smoothed round trip, samples)";

PyObject *BatchesObject_stats(BatchesObject *self, PyObject *Py_UNUSED(unused))
{
	const struct batches *io = &self->io;
	PyObject *d = counts_stats(&io->rt.c, io->rt.inflight, io->rt.w.sd.gso);

	if (d && (dict_put(d, "batches", PyLong_FromUnsignedLongLong(io->batches_done)) < 0 ||
		  dict_put(d, "batches_inflight", PyLong_FromUnsignedLong(io->nbusy)) < 0 ||
		  dict_put(d, "ok_by_op", counts_dict(io->ok_by_op, DINT_OP_MAX)) < 0 ||
		  dict_put(d, "rtt", rt_rtt_stats(&io->rt)) < 0))
		Py_CLEAR(d);
	return d;
}

const char BatchesObject_linger_doc[] = "linger(quiet_ns, max_ns): once nothing is in flight, read the replies "
					 "still coming (to copies sent again) until none has come for quiet_ns";

PyObject *BatchesObject_linger(BatchesObject *self, PyObject *args)
{
	unsigned long long quiet, max;

	if (!PyArg_ParseTuple(args, "KK", &quiet, &max))
		return NULL;
	if (rt_linger(&self->io.rt, quiet, max) < 0)
		return NULL;
	Py_RETURN_NONE;
}
