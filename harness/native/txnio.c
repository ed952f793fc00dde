/* TxnIO, the executor as Python sees it (harness/txn.py): made with the
 * sockets and limits of its batches, then configure() once with the
 * workload's transactions, drive() while the run lasts, and the counts as
 * dicts: results(), stats(), histogram(). */
#include "executor.h"

PyDoc_STRVAR(TxnIO_doc, "TxnIO(fds, client_id, timeout_ns, max_retries, max_inflight, max_value=64, gso=True): "
			"the transaction executor, over one connected UDP socket per server (harness/txn.py)");

static void TxnIO_dealloc(TxnIO *self)
{
	if (self->txns) {
		for (uint32_t i = 0; i < self->concurrency; i++) {
			Py_XDECREF(self->txns[i].gen);
			Py_XDECREF(self->txns[i].batch);
			held_free(&self->txns[i].held);
		}
	}
	for (uint32_t i = 0; i < self->nlabels; i++)
		Py_XDECREF(self->labels[i]);
	Py_XDECREF(self->funcs);
	Py_XDECREF(self->params);
	Py_XDECREF(self->abort_cls);
	Py_XDECREF(self->batch_cls);
	PyMem_Free(self->txns);
	PyMem_Free(self->kc);
	PyMem_Free(self->errors);
	for (int k = 0; k < TXN_KINDS; k++)
		PyMem_Free(self->khist[k]);
	batches_free(&self->base.io);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(TxnIO_configure_doc,
	     "configure(funcs, params, concurrency, interval_ns, abort, batch), once: the transactions to drive. "
	     "funcs[k](*args) returns transaction type k's generator; params is a list of (k, args) taken in turn "
	     "(cycled); concurrency transactions run at once (with interval_ns > 0, one is due every interval_ns "
	     "and concurrency caps those in flight); abort is the exception class a transaction raises to abort, "
	     "batch the list subclass with `mask` (statuses tolerated)");
static PyObject *TxnIO_configure(TxnIO *self, PyObject *args)
{
	PyObject *funcs, *params, *abort_cls, *batch_cls;
	unsigned int concurrency;
	unsigned long long interval_ns;

	if (!PyArg_ParseTuple(args, "O!O!IKOO", &PyList_Type, &funcs, &PyList_Type, &params, &concurrency,
			      &interval_ns, &abort_cls, &batch_cls))
		return NULL;
	if (self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "configure() is called once");
		return NULL;
	}
	Py_ssize_t nk = PyList_GET_SIZE(funcs);
	if (nk < 1 || nk > TXN_KINDS) {
		PyErr_Format(PyExc_ValueError, "1 to %d transaction types", TXN_KINDS);
		return NULL;
	}
	if (!PyList_GET_SIZE(params)) {
		PyErr_SetString(PyExc_ValueError, "no transaction parameters");
		return NULL;
	}
	if (concurrency < 1 || concurrency > self->base.io.max_inflight) {
		PyErr_Format(PyExc_ValueError, "concurrency must be in 1..%u", self->base.io.max_inflight);
		return NULL;
	}
	if (!PyType_Check(abort_cls) || !PyType_Check(batch_cls)) {
		PyErr_SetString(PyExc_TypeError, "abort and batch must be classes");
		return NULL;
	}
	self->kc = PyMem_Calloc(nk, sizeof(*self->kc));
	self->errors = PyMem_Calloc(DINT_OP_MAX, sizeof(*self->errors));
	struct ctxn *txns = PyMem_Calloc(concurrency, sizeof(struct ctxn));
	if (!self->kc || !self->errors || !txns) {
		PyMem_Free(txns);
		return PyErr_NoMemory();
	}
	for (int i = 0; i < NCAUSES; i++) {
		PyObject *s = PyUnicode_InternFromString(cause_names[i]);
		if (!s) {
			PyMem_Free(txns);
			return NULL;
		}
		self->labels[self->nlabels++] = s;
	}
	for (uint32_t i = 0; i < concurrency; i++)
		txns[i].next = i + 1;
	self->txns = txns;
	self->concurrency = concurrency;
	self->nkinds = nk;
	self->funcs = Py_NewRef(funcs);
	self->params = Py_NewRef(params);
	self->abort_cls = Py_NewRef(abort_cls);
	self->batch_cls = Py_NewRef(batch_cls);
	self->base.io.rt.interval_ns = interval_ns;
	self->txn_base = (uint64_t)self->base.io.rt.client_id << 32;
	Py_RETURN_NONE;
}

PyDoc_STRVAR(TxnIO_drive_doc, "drive(until_ns, issue_new): run transactions until the clock reaches until_ns "
			      "(without issuing new ones, also until none is in flight)");
static PyObject *TxnIO_drive(TxnIO *self, PyObject *args)
{
	unsigned long long until;
	int issue_new;

	if (!PyArg_ParseTuple(args, "Kp", &until, &issue_new))
		return NULL;
	if (!self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "drive() needs configure() first");
		return NULL;
	}
	if (self->driving) {
		PyErr_SetString(PyExc_RuntimeError, "drive() is already running");
		return NULL;
	}
	self->driving = 1;
	int rc = executor_drive(self, until, issue_new);
	self->driving = 0;
	if (rc < 0 || PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* {label: count} of the nonzero counts. */
static PyObject *label_counts(TxnIO *self, const uint64_t *counts)
{
	PyObject *d = PyDict_New();
	for (uint32_t i = 0; d && i < self->nlabels; i++) {
		if (!counts[i])
			continue;
		PyObject *v = PyLong_FromUnsignedLongLong(counts[i]);
		if (!v || PyDict_SetItem(d, self->labels[i], v) < 0)
			Py_CLEAR(d);
		Py_XDECREF(v);
	}
	return d;
}

PyDoc_STRVAR(TxnIO_results_doc,
	     "results() -> the executor's counts: {\"types\": [(whole run, window)] with each {\"started\", "
	     "\"committed\", \"aborts\": {cause: n}, \"outcomes\": {label: n}}, \"errors\": {(op, status): n}, "
	     "\"active\", \"waiting\", \"release_failures\", \"params_wrapped\", "
	     "\"open_loop_late\", \"open_loop_skipped\"}");
static PyObject *TxnIO_results(TxnIO *self, PyObject *Py_UNUSED(unused))
{
	if (!self->txns) {
		PyErr_SetString(PyExc_RuntimeError, "results() needs configure() first");
		return NULL;
	}
	PyObject *types = PyList_New(self->nkinds), *errors = types ? PyDict_New() : NULL;
	if (!errors) {
		Py_XDECREF(types);
		return NULL;
	}
	for (uint32_t k = 0; k < self->nkinds; k++) {
		PyObject *pair = PyTuple_New(2);
		if (!pair)
			goto fail;
		PyList_SET_ITEM(types, k, pair);
		for (int s = 0; s < 2; s++) {
			const struct kcounts *kc = &self->kc[k][s];
			PyObject *d = Py_BuildValue("{sKsKsNsN}", "started", kc->started, "committed", kc->committed,
						    "aborts", label_counts(self, kc->aborts), "outcomes",
						    label_counts(self, kc->outcomes));
			if (!d)
				goto fail;
			PyTuple_SET_ITEM(pair, s, d);
		}
	}
	for (int op = 0; op < DINT_OP_MAX; op++) {
		for (int st = 0; st < 256; st++) {
			if (!self->errors[op][st])
				continue;
			PyObject *key = Py_BuildValue("(ii)", op, st), *v = PyLong_FromUnsignedLongLong(self->errors[op][st]);
			int bad = !key || !v || PyDict_SetItem(errors, key, v) < 0;
			Py_XDECREF(key);
			Py_XDECREF(v);
			if (bad)
				goto fail;
		}
	}
	return Py_BuildValue("{sNsNsIsIsKsKsKsK}", "types", types, "errors", errors, "active", self->active,
			     "waiting", self->nwaiting, "release_failures", self->release_failures,
			     "params_wrapped", self->params_wrapped, "open_loop_late", self->base.io.rt.late,
			     "open_loop_skipped", self->base.io.rt.skipped);
fail:
	Py_DECREF(types);
	Py_DECREF(errors);
	return NULL;
}

PyDoc_STRVAR(TxnIO_set_window_doc,
	     "set_window(from_ns, until_ns): record requests and transactions started in [from_ns, until_ns)");
static PyObject *TxnIO_set_window(TxnIO *self, PyObject *args)
{
	return counts_set_window(&self->base.io.rt.c, args);
}

PyDoc_STRVAR(TxnIO_histogram_doc, "histogram(kind=-1) -> [(ns, count)] of the committed transactions of type "
				  "kind; -1: of the request round trips (recorded, status OK)");
static PyObject *TxnIO_histogram(TxnIO *self, PyObject *args)
{
	int kind = -1;

	if (!PyArg_ParseTuple(args, "|i", &kind))
		return NULL;
	if (kind < -1 || kind >= TXN_KINDS) {
		PyErr_Format(PyExc_ValueError, "kind must be in -1..%d", TXN_KINDS - 1);
		return NULL;
	}
	return hist_pairs(kind < 0 ? self->base.io.rt.c.hist : self->khist[kind]);
}

NATIVE_TYPE(TxnIO, BatchesObject_init, TxnIO_dealloc, METHOD(TxnIO, configure, METH_VARARGS),
	    METHOD(TxnIO, drive, METH_VARARGS), METHOD(TxnIO, results, METH_NOARGS),
	    METHOD(TxnIO, set_window, METH_VARARGS), METHOD(TxnIO, histogram, METH_VARARGS),
	    METHOD(BatchesObject, stats, METH_NOARGS), METHOD(BatchesObject, linger, METH_VARARGS));
