/* The counters and histograms as Python sees them (see counters.h). */
#include "counters.h"

uint64_t *hist_new(void)
{
	uint64_t *h = PyMem_Calloc(HIST_BUCKETS, sizeof(uint64_t));
	if (!h)
		PyErr_NoMemory();
	return h;
}

PyObject *counts_set_window(struct counts *c, PyObject *args)
{
	unsigned long long from, until;
	if (!PyArg_ParseTuple(args, "KK", &from, &until))
		return NULL;
	c->win_from = from;
	c->win_until = until;
	Py_RETURN_NONE;
}

int dict_put(PyObject *d, const char *key, PyObject *v)
{
	int rc = v ? PyDict_SetItemString(d, key, v) : -1;
	Py_XDECREF(v);
	return rc;
}

PyObject *counts_dict(const uint64_t *counts, int n)
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

PyObject *counts_stats(const struct counts *c, uint32_t inflight, int gso)
{
	PyObject *statuses = counts_dict(c->status_counts, 256);
	if (!statuses)
		return NULL;
	PyObject *ops = counts_dict(c->op_counts, 256);
	if (!ops) {
		Py_DECREF(statuses);
		return NULL;
	}
	return Py_BuildValue("{sKsKsKsKsKsKsKsKsKsKsKsIsNsNsO}", "sent", c->sent, "send_failed", c->send_failed,
			     "retransmits", c->retransmits, "busy_retries", c->busy, "replies", c->replies,
			     "ok", c->ok, "err_status", c->err_status, "lost", c->lost, "stray", c->stray,
			     "started_in_window", c->rec_started, "wait_ns", c->wait_ns, "inflight", inflight,
			     "statuses", statuses, "answered_by_op", ops, "gso", gso ? Py_True : Py_False);
}

PyObject *hist_pairs(const uint64_t *hist)
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
