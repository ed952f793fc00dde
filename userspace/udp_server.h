/* UDP sockets served in batches, received with recvmmsg, answered in place
 * and sent back with sendmmsg: the loop of the kernel server's workers and
 * of dint's slow path, which differ only in how they answer a datagram. */
#ifndef UDP_SERVER_H
#define UDP_SERVER_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "server_common.h"

#define UDP_BATCH 64

/* Room for the longest datagram a server takes (server_common.h); a longer
 * one arrives truncated and cannot be answered. */
#define UDP_SLOT_DATA DINT_DGRAM_MAX
/* One spare cache line per slot, so the headers of a batch do not all map
 * to the same few cache sets. */
#define UDP_SLOT_STRIDE (UDP_SLOT_DATA + 64)

/* A blocked receive wakes up this often to look at the stop flag (threads
 * that block the stop signals never see EINTR). */
#define UDP_RCV_TIMEOUT_US 100000

/* CPUs a --cpus list may name (repeats counted). */
#define UDP_MAX_CPUS 256

/* What the kernel server and dint's slow path are both told: the port,
 * the CPUs to run on, and the store's options (and how often to print
 * stats lines, and which interfaces' NAPI threads to count: server_common.h,
 * kept there). */
struct udp_server_opts {
	unsigned long port;
	int cpus[UDP_MAX_CPUS];
	int ncpus; /* 0: not pinned */
	struct store_opts store;
};

#define UDP_SERVER_OPTS_DEFAULT { DINT_PORT, { 0 }, 0, STORE_OPTS_DEFAULT }

#define UDP_SERVER_OPTIONS                                          \
	{ "port", required_argument, NULL, 'p' },                   \
	{ "cpus", required_argument, NULL, 'c' },                   \
	SAMPLE_OPTIONS,                                             \
	STORE_OPTIONS

/* Takes --port, --cpus, --stats-interval-ms, --napi-ifaces or one of the
 * store's options; false if opt is none of them. A bad value ends the process with a usage error. */
static inline bool udp_server_parse_opt(int opt, const char *arg, const char *usage,
					struct udp_server_opts *o)
{
	switch (opt) {
	case 'p':
		if (parse_uint(arg, 1, 65535, &o->port) < 0)
			usage_error(usage, "bad --port '%s'", arg);
		return true;
	case 'c':
		o->ncpus = parse_cpu_list(arg, o->cpus, UDP_MAX_CPUS);
		if (o->ncpus < 0)
			usage_error(usage, "bad --cpus '%s'", arg);
		return true;
	}
	return sample_parse_opt(opt, arg, usage) || store_parse_opt(opt, arg, usage, &o->store);
}

/* A UDP socket bound to port on every address, receiving with a timeout
 * (so a blocked receive notices the stop flag); in a SO_REUSEPORT group if
 * asked; rcvbuf > 0 asks for that receive buffer (past net.core.rmem_max
 * as root, SO_RCVBUFFORCE; best effort). -1 after one error line. */
static inline int udp_socket(unsigned int port, bool reuseport, int rcvbuf)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = UDP_RCV_TIMEOUT_US };
	struct sockaddr_in addr;
	int one = 1;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		report_error("socket failed: %s", strerror(errno));
		return -1;
	}
	if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		report_error("setsockopt failed: %s", strerror(errno));
		close(fd);
		return -1;
	}
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	addr.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		report_error("bind to UDP port %u failed: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Sends msgs[0, n), setting failed[i] for each message that did not go
 * out; returns how many did. sendmmsg stops at the first failing message:
 * that one is skipped (e.g. no route back to its sender). */
static inline unsigned int send_all(int fd, struct mmsghdr *msgs, unsigned int n, bool *failed)
{
	unsigned int done = 0, sent = 0;
	int r;

	for (unsigned int i = 0; i < n; i++)
		failed[i] = false;
	while (done < n) {
		r = sendmmsg(fd, msgs + done, n - done, 0);
		if (r < 0) {
			if (errno != EINTR)
				failed[done++] = true;
			continue;
		}
		sent += r;
		done += r;
	}
	return sent;
}

/* One batch's messages and buffers: datagram i is received into buf[i] and
 * its reply sent from there. */
struct udp_batch {
	struct mmsghdr in[UDP_BATCH];
	struct mmsghdr out[UDP_BATCH];
	struct iovec in_iov[UDP_BATCH];
	struct iovec out_iov[UDP_BATCH];
	struct sockaddr_in peer[UDP_BATCH];
	bool failed[UDP_BATCH];
	__u8 buf[UDP_BATCH][UDP_SLOT_STRIDE];
};

static inline void udp_batch_init(struct udp_batch *b)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		b->in_iov[i].iov_base = b->buf[i];
		b->in_iov[i].iov_len = UDP_SLOT_DATA;
		b->in[i].msg_hdr.msg_iov = &b->in_iov[i];
		b->in[i].msg_hdr.msg_iovlen = 1;
		b->in[i].msg_hdr.msg_name = &b->peer[i];
	}
}

/* Answers datagram buf[0, len) in place (buf has room for UDP_SLOT_DATA
 * bytes): the reply's length, or 0 to send nothing. */
typedef __u32 (*udp_answer_fn)(void *ctx, __u8 *buf, __u32 len);

/* Receives one batch on fd (waiting up to the receive timeout for its
 * first datagram), answers each datagram with answer and sends the replies
 * to their senders, counting in stats (indexed by enum dint_stat): every
 * datagram received, every reply sent, every datagram left unanswered
 * (truncated ones, ones from port 0, which cannot be answered, and ones
 * whose reply could not be sent) and every reply sent whose status is not
 * OK. A datagram from port 0 is not even looked at, so that it changes
 * nothing (the DPDK server does the same). A checkpoint barrier request
 * (barrier.h) is answered at once, on its own, and counted nowhere. 0, or
 * -1 after one error line if receiving failed. Always inlined, so answer is
 * a direct call. */
static __always_inline int udp_serve_batch(int fd, struct udp_batch *b, udp_answer_fn answer,
					   void *ctx, uint64_t *stats)
{
	unsigned int nout = 0;
	int i, n;

	for (i = 0; i < UDP_BATCH; i++)
		b->in[i].msg_hdr.msg_namelen = sizeof(b->peer[i]);
	n = recvmmsg(fd, b->in, UDP_BATCH, MSG_WAITFORONE, NULL);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		report_error("recvmmsg failed: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct msghdr *req = &b->in[i].msg_hdr;
		__u32 len = 0;

		if (!(req->msg_flags & MSG_TRUNC) && b->peer[i].sin_port &&
		    dint_is_control((struct dint_hdr *)b->buf[i], b->in[i].msg_len)) {
			barrier_answer(&server_barrier, (struct dint_hdr *)b->buf[i], b->in[i].msg_len);
			sendto(fd, b->buf[i], b->in[i].msg_len, 0, req->msg_name, req->msg_namelen);
			continue;
		}
		stats[DINT_STAT_RX]++;
		if (!(req->msg_flags & MSG_TRUNC) && b->peer[i].sin_port)
			len = answer(ctx, b->buf[i], b->in[i].msg_len);
		if (!len) {
			stats[DINT_STAT_DROP]++;
			continue;
		}
		b->out_iov[nout].iov_base = b->buf[i];
		b->out_iov[nout].iov_len = len;
		memset(&b->out[nout], 0, sizeof(b->out[nout]));
		b->out[nout].msg_hdr.msg_name = req->msg_name;
		b->out[nout].msg_hdr.msg_namelen = req->msg_namelen;
		b->out[nout].msg_hdr.msg_iov = &b->out_iov[nout];
		b->out[nout].msg_hdr.msg_iovlen = 1;
		nout++;
	}
	stats[DINT_STAT_TX] += send_all(fd, b->out, nout, b->failed);
	for (unsigned int j = 0; j < nout; j++) {
		if (b->failed[j])
			stats[DINT_STAT_DROP]++;
		else if (((struct dint_hdr *)b->out_iov[j].iov_base)->status != DINT_ST_OK)
			stats[DINT_STAT_ERR]++;
	}
	return 0;
}

#endif
