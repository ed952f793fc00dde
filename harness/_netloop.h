/* What the client's two native loops share (harness/_netloop.c: the request
 * loop and the module; harness/_txnio.c: the transaction executor's I/O):
 * the datagram and histogram constants, the counters both keep, and the
 * helpers that send, receive and report them. */
#ifndef DINT_NETLOOP_H
#define DINT_NETLOOP_H

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>

#include "../engine/dint_proto.h"

#define BATCH 64
#define MAX_DESTS 64
#define MAX_DGRAM 2048
/* Latency histogram: exact below 2^11 ns, then 1024 buckets per power of
 * two (relative error under 1/2048) up to 2^40 ns. */
#define HIST_SUB_BITS 10
#define HIST_EXACT (1u << (HIST_SUB_BITS + 1))
#define HIST_MAX_SHIFT 29
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_SHIFT) * (1u << HIST_SUB_BITS))

/* What both loops count, the same way. */
struct counts {
	uint64_t win_from, win_until; /* a request first sent in [from, until) is recorded */
	uint64_t sent, send_failed, retransmits, replies, ok, err_status, lost, stray, rec_started, busy;
	uint64_t wait_ns;
	uint64_t status_counts[256];
	uint64_t *hist; /* round trips of recorded requests answered OK */
};

#define TXN_TIMEOUT 255 /* a status no server sends: the request was given up */
#define TXN_KINDS 16    /* latency histograms kept for Python (transaction types) */

/* An open-loop request sent this much after it was due counts as late. */
#define LATE_NS 100000

static inline uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static inline uint32_t hist_index(uint64_t v)
{
	if (v < HIST_EXACT)
		return (uint32_t)v;
	uint32_t shift = 63 - __builtin_clzll(v) - HIST_SUB_BITS;
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return (shift << HIST_SUB_BITS) + (uint32_t)(v >> shift);
}

static inline uint64_t hist_value(uint32_t idx)
{
	if (idx < HIST_EXACT)
		return idx;
	uint32_t shift = (idx >> HIST_SUB_BITS) - 1;
	uint64_t base = (uint64_t)(idx - (shift << HIST_SUB_BITS)) << shift;
	return base + (1ull << (shift - 1)); /* bucket midpoint */
}

/* Counts the answer to a request first sent at first_ns. */
static inline void count_answer(struct counts *c, int recorded, uint8_t status, uint64_t first_ns, uint64_t t)
{
	if (!recorded)
		return;
	c->status_counts[status]++;
	if (status == DINT_ST_OK) {
		c->ok++;
		c->hist[hist_index(t - first_ns)]++;
	} else {
		c->err_status++;
	}
}

/* A RETRY reply (dint: the record's latch stayed busy) is a reply, but not
 * an answer: the request is made overdue, so the next timeout scan (within
 * a millisecond) sends it again with the same request id. */
static inline int busy_retry(const struct dint_hdr *h, uint64_t *last_ns, uint64_t t, uint64_t timeout_ns,
			     uint64_t *busy)
{
	if (h->status != DINT_ST_RETRY)
		return 0;
	*last_ns = t - timeout_ns;
	(*busy)++;
	return 1;
}

/* Whether a received datagram is a dint reply to this client. */
static inline int is_reply_to(const struct mmsghdr *m, const struct dint_hdr *h, uint32_t client_id)
{
	return m->msg_len >= DINT_HDR_LEN && h->magic == htons(DINT_MAGIC) && ntohl(h->client_id) == client_id;
}

/* The request id a received datagram answers, in *seq; 0 (counted as
 * stray) if it is not a dint reply to this client. */
static inline int reply_seq(struct counts *c, const struct mmsghdr *m, const struct dint_hdr *h,
			    uint32_t client_id, uint32_t *seq)
{
	if (!is_reply_to(m, h, client_id)) {
		c->stray++;
		return 0;
	}
	*seq = ntohl(h->seq);
	return 1;
}

/* One connected socket per server: fills fds and pfds; returns how many, or
 * -1 with an exception set. */
int parse_fds(PyObject *fds, int *out, struct pollfd *pfds);

/* Runs of datagrams to one server of the same length go out as one UDP GSO
 * send (UDP_SEGMENT) of at most this many, this many bytes: one pass through
 * the socket layer instead of one per datagram. The kernel still cuts them
 * into datagrams before the wire (on the sender, see harness/testbed.py), so
 * a server receives exactly what it would without. The first datagram to
 * each server goes alone, so that the server starts on it while the client
 * sends the rest. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 60000

/* What a loop stages for send_grouped: datagram i is iov[i], for server
 * dest[i]. */
struct sender {
	int gso; /* group runs as UDP GSO sends; cleared if the kernel refuses one */
	struct iovec iov[BATCH];
	uint8_t dest[BATCH];
	/* scratch */
	uint8_t order[BATCH];
	struct iovec giov[BATCH];
	struct mmsghdr msg[BATCH];
	uint8_t nseg[BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctl[BATCH];
};

/* Sends the k staged datagrams (k <= BATCH), one sendmmsg per server. A
 * datagram the socket cannot take now (a full buffer) counts as sent and
 * lost: the timeout scan sends it again. */
int send_grouped(const int *fds, struct sender *sd, int k, uint64_t *send_failed);

/* Waits in ppoll for any of the sockets, up to wait_ns. -1 with an
 * exception set if a signal handler raised. */
int wait_replies(struct counts *c, struct pollfd *pfds, uint32_t n, uint64_t wait_ns);

PyObject *counts_dict(const uint64_t *counts, int n);

/* set_window(from_ns, until_ns) of both loops. */
PyObject *set_window(struct counts *c, PyObject *args);

/* The counters as a dict; the caller adds its own. */
PyObject *counts_stats(const struct counts *c, uint32_t inflight, int gso);

/* Where a loop receives: datagram i of a recv_batch lands in buf[i]. */
struct receiver {
	struct mmsghdr msg[BATCH];
	struct iovec iov[BATCH];
	char buf[BATCH][MAX_DGRAM];
};

void receiver_init(struct receiver *rv);

/* recvmmsg on one server's socket into rv; -1 with an exception set on a
 * hard error. */
int recv_batch(int fd, struct receiver *rv, int flags);

PyObject *hist_pairs(const uint64_t *hist);

extern PyTypeObject TxnIOType;
PyObject *txnio_cause_of(PyObject *mod, PyObject *args);

#endif
