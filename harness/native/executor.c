/* The transaction state machine of the executor (see executor.h). */
#include "executor.h"

#define SLEEP_NS 200000 /* open loop: nothing in flight, the next due later than this: sleep */

const char *const cause_names[NCAUSES] = { "lock", "validation", "timeout", "error" };

int cause_of(int op, int status)
{
	if (status == ST_TIMEOUT)
		return CAUSE_TIMEOUT;
	if (op == DINT_OP_VALIDATE || status == DINT_ST_STALE)
		return CAUSE_VALIDATION;
	if (status == DINT_ST_LOCKED || (status == DINT_ST_FULL && op == DINT_OP_LOCK_SHARED))
		return CAUSE_LOCK;
	return CAUSE_ERROR;
}

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

static inline int reply_status(PyObject *replies, Py_ssize_t i)
{
	return (int)PyLong_AsLong(PyTuple_GET_ITEM(PyList_GET_ITEM(replies, i), 0));
}

static void txn_free(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];

	Py_CLEAR(t->gen);
	Py_CLEAR(t->batch);
	t->held.n = 0;
	t->next = self->free_txn;
	self->free_txn = ti;
	self->active--;
}

static int txn_release(TxnIO *self, uint32_t ti, int ending);

/* The transaction ended: committed (cause < 0, outcome its return value)
 * or aborted with cause. A committed one still holding something (see
 * executor.h) is counted now and releases it before its place is free. */
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
			if (!h && !(h = self->khist[t->kind] = hist_new()))
				rc = -1;
			else
				h[hist_index(now_ns() - t->start)]++;
		}
	} else {
		all->aborts[cause]++;
		if (win)
			win->aborts[cause]++;
	}
	if (cause < 0 && t->held.n)
		return txn_release(self, ti, RELEASING) < 0 ? -1 : rc;
	txn_free(self, ti);
	return rc;
}

/* Sends the transaction's current batch (its ABORTs while ending). */
static int txn_send(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];

	if (t->ending == NOT_ENDING)
		return batches_submit(&self->base.io, NULL, ti, &t->held, t->id, t->batch);
	int bi = batches_open(&self->base.io, NULL, ti, &t->held, t->held.n);
	if (bi < 0)
		return -1;
	uint64_t now = now_ns();
	for (uint32_t i = 0; i < t->held.n; i++) {
		const struct held_key *k = &t->held.keys[i];
		batches_stage(&self->base.io, bi, i, DINT_OP_ABORT, k->table, k->key, self->zeros, k->vlen, 0, k->dest,
			      t->id, now);
	}
	return 0;
}

static inline uint32_t txn_batch_len(const struct ctxn *t)
{
	return t->ending != NOT_ENDING ? t->held.n : (uint32_t)PySequence_Fast_GET_SIZE(t->batch);
}

/* Sends the transaction's batch, or holds it back (in order) while the
 * requests in flight leave no room for it: big batches (a TPC-C commit logs
 * hundreds of rows) wait instead of failing. */
static int txn_submit(TxnIO *self, uint32_t ti)
{
	struct ctxn *t = &self->txns[ti];
	uint32_t n = txn_batch_len(t);

	if (n > self->base.io.max_inflight) {
		PyErr_Format(BatchTooLarge,
			     "a batch of %u requests is more than the %u this client can have in flight; raise the "
			     "concurrency or split the batch", n, self->base.io.max_inflight);
		return -1;
	}
	if (self->nwaiting || !batches_room(&self->base.io, n)) {
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
		if (!batches_room(&self->base.io, txn_batch_len(&self->txns[ti])))
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
	t->tolerate = 0;
	return txn_submit(self, ti);
}

/* Aborts: ABORT to every key it may hold, then finish with cause. */
static int txn_abort(TxnIO *self, uint32_t ti, int cause)
{
	if (!self->txns[ti].held.n)
		return txn_finish(self, ti, cause, NULL);
	return txn_release(self, ti, cause);
}

/* Takes what the generator yielded as its next batch. */
static int txn_take_batch(TxnIO *self, struct ctxn *t, PyObject *yielded)
{
	uint64_t tolerate = 0;

	int is_batch = PyList_CheckExact(yielded) || PyTuple_CheckExact(yielded) ? 0 :
		       PyObject_IsInstance(yielded, self->batch_cls);
	if (is_batch < 0)
		return -1;
	if (is_batch) {
		PyObject *mask = PyObject_GetAttrString(yielded, "mask");
		tolerate = mask ? PyLong_AsUnsignedLongLong(mask) : 0;
		Py_XDECREF(mask);
		if (PyErr_Occurred())
			return -1;
	}
	PyObject *seq = PySequence_Fast(yielded, "a transaction yields a list of requests");
	if (!seq)
		return -1;
	Py_XSETREF(t->batch, seq);
	t->tolerate = tolerate;
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
		if (fail >= 0) /* refused: a lock may be left held */
			for (Py_ssize_t i = 0; i < n; i++)
				self->release_failures += reply_status(replies, i) != DINT_ST_OK;
		if (t->ending == RELEASING) { /* committed and counted already */
			txn_free(self, ti);
			return 0;
		}
		return txn_finish(self, ti, t->ending, NULL);
	}
	if (fail >= 0 && t->tolerate) {
		fail = -1;
		for (Py_ssize_t i = 0; i < n && fail < 0; i++) {
			int st = reply_status(replies, i);
			if (st != DINT_ST_OK && !(st < MAX_STATUS && (t->tolerate >> st & 1)))
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
	t->recorded = in_window(&self->base.io.rt.c, due);
	t->ending = NOT_ENDING;
	t->held.n = 0;
	t->tolerate = 0;
	self->kc[kind][0].started++;
	if (t->recorded)
		self->kc[kind][1].started++;
	return txn_step(self, ti, NULL);
}

/* Hands each completed batch to its transaction. */
static int process_done(TxnIO *self)
{
	struct batches *io = &self->base.io;
	uint32_t n = io->ndone, i;
	int rc = 0;

	io->ndone = 0;
	for (i = 0; i < n && rc == 0; i++) {
		struct done *d = &io->doneq[i];
		rc = txn_advance(self, d->owner, d->replies, d->fail);
		Py_CLEAR(d->replies);
	}
	for (; i < n; i++) /* after an error, what was not handed over is dropped */
		Py_CLEAR(io->doneq[i].replies);
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

int executor_drive(TxnIO *self, uint64_t until, int issue_new)
{
	struct reqtable *rt = &self->base.io.rt;
	int open_loop = issue_new && rt->interval_ns;
	uint32_t iter = 0;

	for (;;) {
		uint64_t now = now_ns(), due;
		if (open_loop) {
			while (self->active < self->concurrency && rt_due(rt, now, &due))
				if (txn_start(self, due) < 0)
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
			if (rt->next_due < wake)
				wake = rt->next_due;
			if (!self->active && wake > now && wake - now > SLEEP_NS) { /* idle until the next is due */
				if (sleep_for(wake - now - SLEEP_NS / 2) < 0)
					return -1;
				continue;
			}
		}
		if (batches_round(&self->base.io, wake) < 0 || process_done(self) < 0 || admit_waiting(self) < 0)
			return -1;
		if ((++iter & 1023) == 0 && PyErr_CheckSignals() < 0)
			return -1;
	}
}
