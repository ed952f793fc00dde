/* BatchIO, for tests only: the executor's batched request I/O (batches.h)
 * without the executor, so that a test can submit batches of requests of
 * its own and see them complete, as a transaction's rounds would. */
#include "batches.h"

typedef BatchesObject BatchIO;

PyDoc_STRVAR(BatchIO_doc, "BatchIO(fds, client_id, timeout_ns, max_retries, max_inflight, max_value=64, gso=True), "
			  "for tests: the executor's batched request I/O alone, with batches submitted by the caller");

static void BatchIO_dealloc(BatchIO *self)
{
	batches_free(&self->io);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(BatchIO_submit_doc, "submit(tag, txn, requests): queue a batch of (op, table, key, value, ver, dest) "
				 "requests, stamped with transaction id txn, for the next run()");
static PyObject *BatchIO_submit(BatchIO *self, PyObject *args)
{
	PyObject *tag, *reqs;
	unsigned long long txn;

	if (!PyArg_ParseTuple(args, "OKO", &tag, &txn, &reqs))
		return NULL;
	PyObject *seq = PySequence_Fast(reqs, "requests must be a sequence of tuples");
	if (!seq)
		return NULL;
	int rc = batches_submit(&self->io, tag, 0, NULL, txn, seq);
	Py_DECREF(seq);
	if (rc < 0)
		return NULL;
	Py_RETURN_NONE;
}

PyDoc_STRVAR(BatchIO_run_doc,
	     "run(until_ns) -> [(tag, replies, fail)]: send what was submitted, then receive and retransmit until "
	     "at least one batch is complete, nothing is in flight, or the clock reaches until_ns. replies lists "
	     "(status, ver, value) in request order (value: bytes for an answered READ or granted lock, else None); "
	     "fail is the position of the first reply whose status is not OK, or -1");
static PyObject *BatchIO_run(BatchIO *self, PyObject *args)
{
	struct batches *io = &self->io;
	unsigned long long until;

	if (!PyArg_ParseTuple(args, "K", &until))
		return NULL;
	if (batches_round(io, until) < 0 || PyErr_CheckSignals() < 0)
		return NULL;
	PyObject *out = PyList_New(io->ndone);
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < io->ndone; i++) {
		struct done *d = &io->doneq[i];
		PyObject *item = Py_BuildValue("(NNi)", d->tag, d->replies, d->fail); /* takes both references */
		if (!item) {
			Py_DECREF(out);
			return NULL; /* the rest stay queued */
		}
		PyList_SET_ITEM(out, i, item);
		d->tag = d->replies = NULL;
	}
	io->ndone = 0;
	return out;
}

NATIVE_TYPE(BatchIO, BatchesObject_init, BatchIO_dealloc, METHOD(BatchIO, submit, METH_VARARGS),
	    METHOD(BatchIO, run, METH_VARARGS), METHOD(BatchesObject, stats, METH_NOARGS));
