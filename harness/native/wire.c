/* The wire (see wire.h). */
#include "wire.h"

int wire_open(struct wire *w, PyObject *fds, int gso)
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
		w->fds[i] = fd;
		w->pfds[i].fd = fd;
		w->pfds[i].events = POLLIN;
		/* a blocked receive wakes up at least every millisecond to retransmit */
		struct timeval tv = { 0, 1000 };
		if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
			PyErr_SetFromErrno(PyExc_OSError);
			return -1;
		}
	}
	w->ndests = (uint32_t)nd;
	w->sd.gso = gso;
	struct receiver *rv = &w->rv;
	for (int i = 0; i < BATCH; i++) {
		rv->iov[i].iov_base = rv->buf[i];
		rv->iov[i].iov_len = MAX_DGRAM;
		rv->msg[i].msg_hdr.msg_iov = &rv->iov[i];
		rv->msg[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

/* Whether datagram a goes before datagram b: by server, then length, so
 * that the runs a GSO send takes are adjacent. */
static inline int send_before(const struct sender *sd, int a, int b)
{
	return sd->dest[a] != sd->dest[b] ? sd->dest[a] < sd->dest[b] : sd->iov[a].iov_len < sd->iov[b].iov_len;
}

int wire_send(struct wire *w, int k, uint64_t *send_failed)
{
	struct sender *sd = &w->sd;

	for (int i = 0; i < k; i++) { /* insertion sort: k is small */
		int j = i;
		for (; j > 0 && send_before(sd, i, sd->order[j - 1]); j--)
			sd->order[j] = sd->order[j - 1];
		sd->order[j] = i;
	}
	int i = 0, m = 0;
	while (i < k) {
		uint8_t d = sd->dest[sd->order[i]];
		int m0 = m;
		while (i < k && sd->dest[sd->order[i]] == d) { /* one message per run */
			size_t len = sd->iov[sd->order[i]].iov_len;
			int n = 1;
			sd->giov[i] = sd->iov[sd->order[i]];
			while (sd->gso && m > m0 /* not the first */ && i + n < k && n < GSO_MAX_SEGS && (size_t)(n + 1) * len <= GSO_MAX_BYTES &&
			       sd->dest[sd->order[i + n]] == d && sd->iov[sd->order[i + n]].iov_len == len) {
				sd->giov[i + n] = sd->iov[sd->order[i + n]];
				n++;
			}
			struct msghdr *h = &sd->msg[m].msg_hdr;
			memset(h, 0, sizeof(*h));
			h->msg_iov = &sd->giov[i];
			h->msg_iovlen = n;
			if (n > 1) {
				h->msg_control = sd->ctl[m].buf;
				h->msg_controllen = sizeof(sd->ctl[m].buf);
				struct cmsghdr *c = CMSG_FIRSTHDR(h);
				c->cmsg_level = SOL_UDP;
				c->cmsg_type = UDP_SEGMENT;
				c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
				uint16_t seg = len;
				memcpy(CMSG_DATA(c), &seg, sizeof(seg));
			}
			sd->nseg[m++] = n;
			i += n;
		}
		int done = m0;
		while (done < m) {
			int n = sendmmsg(w->fds[d], sd->msg + done, m - done, MSG_DONTWAIT);
			if (n >= 0) {
				done += n;
				continue;
			}
			if (errno == EINTR)
				continue;
			if (sd->gso && (errno == EINVAL || errno == EIO || errno == ENOPROTOOPT || errno == EOPNOTSUPP))
				sd->gso = 0; /* a kernel without UDP GSO here: datagram by datagram from now on */
			else if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED) {
				PyErr_SetFromErrno(PyExc_OSError);
				return -1;
			}
			for (; done < m; done++)
				*send_failed += sd->nseg[done];
		}
	}
	return 0;
}

int wire_recv(struct wire *w, uint32_t d, int flags)
{
	int n;

	if (flags & MSG_WAITFORONE) {
		Py_BEGIN_ALLOW_THREADS
		n = recvmmsg(w->fds[d], w->rv.msg, BATCH, flags, NULL);
		Py_END_ALLOW_THREADS
	} else {
		n = recvmmsg(w->fds[d], w->rv.msg, BATCH, flags, NULL);
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

int wire_wait(struct wire *w, uint64_t wait_ns, uint64_t *waited)
{
	struct timespec ts = { 0, (long)wait_ns };
	uint64_t t0 = now_ns();
	int r;

	Py_BEGIN_ALLOW_THREADS
	r = ppoll(w->pfds, w->ndests, &ts, NULL);
	Py_END_ALLOW_THREADS
	*waited += now_ns() - t0;
	if (r < 0 && errno == EINTR)
		return PyErr_CheckSignals() < 0 ? -1 : 0;
	return 0; /* the next round reads what arrived */
}
