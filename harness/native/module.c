/* The extension harness._netloop: the client's per-packet hot path, in C
 * because a plain Python loop costs too much per packet to show the
 * difference between the stacks. Its files, by concern:
 *
 *   wire.c      sockets: batched sends (UDP GSO), receives, the wait
 *   counters.c  what is counted, and the latency histogram
 *   reqtable.c  the requests in flight: ids, matching, timeouts, retries,
 *               the open-loop schedule (every loop's one copy)
 *   loop.c      Loop: the flat request loop
 *   batches.c   batches of requests completed as one (a transaction's round)
 *   held.c      what a transaction may hold
 *   executor.c  the transaction state machine; txnio.c: TxnIO around it
 *   batchio.c   BatchIO: the batches alone, for tests
 *   module.c    this: the module, and the constants Python takes from it */
#include "executor.h"

PyObject *BatchTooLarge;

static PyObject *hist_roundtrip(PyObject *Py_UNUSED(mod), PyObject *arg)
{
	unsigned long long v = PyLong_AsUnsignedLongLong(arg);
	if (PyErr_Occurred())
		return NULL;
	return PyLong_FromUnsignedLongLong(hist_value(hist_index(v)));
}

/* cause_of(op, status) -> the abort cause of a rejected request. */
static PyObject *py_cause_of(PyObject *Py_UNUSED(mod), PyObject *args)
{
	int op, status;

	if (!PyArg_ParseTuple(args, "ii", &op, &status))
		return NULL;
	return PyUnicode_FromString(cause_names[cause_of(op, status)]);
}

static PyMethodDef module_methods[] = {
	{ "hist_roundtrip", hist_roundtrip, METH_O, "the value a latency is recorded as (for tests of the bucketing)" },
	{ "cause_of", py_cause_of, METH_VARARGS, "cause_of(op, status): the abort cause of a rejected request" },
	{ NULL },
};

static struct PyModuleDef netloop_module = {
	PyModuleDef_HEAD_INIT, .m_name = "harness._netloop",
	.m_doc = "Native hot path of the dint-bench client: the flat request loop and the transaction executor",
	.m_size = -1, .m_methods = module_methods,
};

/* CAUSES: the abort causes the executor gives, in label order. */
static PyObject *causes(void)
{
	PyObject *t = PyTuple_New(NCAUSES);
	for (int i = 0; t && i < NCAUSES; i++) {
		PyObject *s = PyUnicode_InternFromString(cause_names[i]);
		if (!s)
			Py_CLEAR(t);
		else
			PyTuple_SET_ITEM(t, i, s);
	}
	return t;
}

PyMODINIT_FUNC PyInit__netloop(void)
{
	PyTypeObject *types[] = { &LoopType, &TxnIOType, &BatchIOType };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (PyType_Ready(types[i]) < 0)
			return NULL;
	PyObject *m = PyModule_Create(&netloop_module);
	if (!m)
		return NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (PyModule_AddObjectRef(m, strrchr(types[i]->tp_name, '.') + 1, (PyObject *)types[i]) < 0)
			goto fail;
	BatchTooLarge = PyErr_NewExceptionWithDoc(
		"harness._netloop.BatchTooLarge",
		"A transaction's round has more requests than the client may have in flight.", PyExc_ValueError, NULL);
	if (!BatchTooLarge || PyModule_AddObjectRef(m, "BatchTooLarge", BatchTooLarge) < 0)
		goto fail;
	PyObject *c = causes();
	int bad = !c || PyModule_AddObjectRef(m, "CAUSES", c) < 0;
	Py_XDECREF(c);
	if (bad || PyModule_AddIntConstant(m, "HEADER_LEN", DINT_HDR_LEN) < 0 ||
	    PyModule_AddIntConstant(m, "TIMEOUT", ST_TIMEOUT) < 0 ||
	    PyModule_AddIntConstant(m, "LATE_NS", LATE_NS) < 0 ||
	    PyModule_AddIntConstant(m, "TXN_KINDS", TXN_KINDS) < 0 ||
	    PyModule_AddIntConstant(m, "MAX_STATUS", MAX_STATUS) < 0 ||
	    PyModule_AddIntConstant(m, "WINDOW", DINT_WINDOW) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
