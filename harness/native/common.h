/* What every file of the client's native code (the extension
 * harness._netloop, see module.c) starts from: Python, the wire format, the
 * sizes its buffers are made of and the clock. */
#ifndef NATIVE_COMMON_H
#define NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "dint_proto.h"

#define BATCH 64      /* datagrams a sendmmsg or recvmmsg takes at once */
#define MAX_DESTS 64  /* servers, one connected socket each */
#define MAX_DGRAM 2048

static inline uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

/* A method of type cls: cls_name in C, documented by cls_name_doc. */
#define METHOD(cls, name, flags) { #name, (PyCFunction)cls##_##name, flags, cls##_##name##_doc }

/* Defines clsType, the type harness._netloop.cls documented by cls_doc,
 * made by init and unmade by dealloc, with the METHODs that follow: every
 * type of the module is made the same way, said once here. */
#define NATIVE_TYPE(cls, init, dealloc, ...)                                                 \
	static PyMethodDef cls##_methods[] = { __VA_ARGS__, { NULL } };                     \
	PyTypeObject cls##Type = {                                                           \
		PyVarObject_HEAD_INIT(NULL, 0).tp_name = "harness._netloop." #cls,          \
		.tp_basicsize = sizeof(cls),                                                 \
		.tp_flags = Py_TPFLAGS_DEFAULT,                                              \
		.tp_doc = cls##_doc,                                                         \
		.tp_new = PyType_GenericNew,                                                 \
		.tp_init = (initproc)(init),                                                 \
		.tp_dealloc = (destructor)(dealloc),                                         \
		.tp_methods = cls##_methods,                                                 \
	}

extern PyTypeObject LoopType, TxnIOType, BatchIOType;
/* BatchTooLarge (a ValueError): a transaction's round has more requests
 * than the client may have in flight (executor.c) */
extern PyObject *BatchTooLarge;

#endif
