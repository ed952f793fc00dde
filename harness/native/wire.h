/* The wire: one connected UDP socket per server (connected sockets skip a
 * route lookup per datagram: about a fifth more requests per second of
 * client CPU), batched sends grouped into UDP GSO sends, batched receives,
 * and the wait for replies. It knows datagrams and servers, not requests. */
#ifndef NATIVE_WIRE_H
#define NATIVE_WIRE_H

#include "common.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

/* Runs of datagrams to one server of the same length go out as one UDP GSO
 * send (UDP_SEGMENT) of at most this many, this many bytes: one pass through
 * the socket layer instead of one per datagram. The kernel still cuts them
 * into datagrams before the wire (on the sender, see harness/testbed.py), so
 * a server receives exactly what it would without. The first datagram to
 * each server goes alone, so that the server starts on it while the client
 * sends the rest. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 60000

/* What wire_send sends: datagram i is iov[i], for server dest[i]. */
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

/* Where wire_recv receives: datagram i lands in buf[i], msg[i].msg_len long. */
struct receiver {
	struct mmsghdr msg[BATCH];
	struct iovec iov[BATCH];
	char buf[BATCH][MAX_DGRAM];
};

struct wire {
	int fds[MAX_DESTS];
	struct pollfd pfds[MAX_DESTS];
	uint32_t ndests;
	struct sender sd;
	struct receiver rv;
};

/* Takes fds, a sequence of 1..MAX_DESTS connected sockets (or their
 * descriptors), one per server; gso: whether to try UDP GSO sends. -1 with
 * an exception set if fds is not that. */
int wire_open(struct wire *w, PyObject *fds, int gso);

/* Sends the k datagrams staged in w->sd (k <= BATCH), one sendmmsg per
 * server. A datagram the socket cannot take now (a full buffer) counts in
 * *send_failed: it is lost, and its timeout sends it again. -1 with an
 * exception set on a hard error. */
int wire_send(struct wire *w, int k, uint64_t *send_failed);

/* recvmmsg on server d's socket into w->rv: how many datagrams, or -1 with
 * an exception set on a hard error. */
int wire_recv(struct wire *w, uint32_t d, int flags);

/* Waits in ppoll for any of the sockets, up to wait_ns, adding the time
 * waited to *waited. -1 with an exception set if a signal handler raised. */
int wire_wait(struct wire *w, uint64_t wait_ns, uint64_t *waited);

#endif
