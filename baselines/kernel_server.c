/* Baseline 1: dint answered through the ordinary kernel UDP stack, so the
 * benchmark shows what XDP saves over sockets doing the very same work. */
#define _GNU_SOURCE
#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "store.h"
#include "server_common.h"

#define USAGE "kernel_server [--port P] [--threads N] [--cpus LIST] " STORE_USAGE

#define BATCH 64
#define MAX_THREADS 256

/* Room for any datagram that fits a 1500-byte MTU frame and for any valid
 * request; a longer one arrives truncated and cannot be echoed. */
#define SLOT_DATA (DINT_HDR_LEN + DINT_MAX_VALUE + 1 > 2048 ? \
		   DINT_HDR_LEN + DINT_MAX_VALUE + 1 : 2048)
/* One spare cache line per slot, so the headers of a batch do not all map
 * to the same few cache sets. */
#define SLOT_STRIDE (SLOT_DATA + 64)

/* Wake up this often to notice the stop flag: workers block the stop
 * signals and never see EINTR. */
#define RCV_TIMEOUT_US 100000

struct worker {
	int fd;
	int cpu; /* -1: not pinned */
	pthread_t tid;
	bool started;
	bool failed;
	uint64_t stats[DINT_STAT_MAX];
	struct mmsghdr in[BATCH];
	struct mmsghdr out[BATCH];
	struct iovec in_iov[BATCH];
	struct iovec out_iov[BATCH];
	struct sockaddr_in peer[BATCH];
	unsigned char buf[BATCH][SLOT_STRIDE];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int i, n;

	for (i = 0; i < BATCH; i++) {
		w->in_iov[i].iov_base = w->buf[i];
		w->in_iov[i].iov_len = SLOT_DATA;
		w->in[i].msg_hdr.msg_iov = &w->in_iov[i];
		w->in[i].msg_hdr.msg_iovlen = 1;
		w->in[i].msg_hdr.msg_name = &w->peer[i];
		w->out_iov[i].iov_base = w->buf[i];
	}

	while (!should_stop()) {
		unsigned int nout = 0;

		for (i = 0; i < BATCH; i++)
			w->in[i].msg_hdr.msg_namelen = sizeof(w->peer[i]);
		n = recvmmsg(w->fd, w->in, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				continue;
			report_error("recvmmsg failed: %s", strerror(errno));
			w->failed = true;
			atomic_store(&stop_requested, true);
			break;
		}

		for (i = 0; i < n; i++) {
			struct msghdr *req = &w->in[i].msg_hdr;
			struct dint_hdr *msg = (struct dint_hdr *)w->buf[i];
			unsigned int len = w->in[i].msg_len;

			w->stats[DINT_STAT_RX]++;
			if ((req->msg_flags & MSG_TRUNC) ||
			    dint_process(msg, w->buf[i] + len, len) != DINT_REPLY) {
				w->stats[DINT_STAT_DROP]++;
				continue;
			}
			if (msg->status != DINT_ST_OK)
				w->stats[DINT_STAT_ERR]++;

			w->out_iov[i].iov_len = len;
			memset(&w->out[nout], 0, sizeof(w->out[nout]));
			w->out[nout].msg_hdr.msg_name = req->msg_name;
			w->out[nout].msg_hdr.msg_namelen = req->msg_namelen;
			w->out[nout].msg_hdr.msg_iov = &w->out_iov[i];
			w->out[nout].msg_hdr.msg_iovlen = 1;
			nout++;
		}
		w->stats[DINT_STAT_TX] += send_all(w->fd, w->out, nout);
	}
	return NULL;
}

/* Every worker gets its own socket in one SO_REUSEPORT group, so the
 * kernel spreads flows over them without any locking in user space. */
static int open_socket(unsigned int port)
{
	return udp_socket(port, true, RCV_TIMEOUT_US, 0);
}

static int start_worker(struct worker *w)
{
	pthread_attr_t attr;
	int err;

	err = pthread_attr_init(&attr);
	if (!err && w->cpu >= 0)
		err = pin_thread_attr(&attr, w->cpu);
	if (!err)
		err = pthread_create(&w->tid, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (err) {
		if (w->cpu >= 0)
			report_error("starting a thread pinned to CPU %d failed: %s",
				     w->cpu, strerror(err));
		else
			report_error("starting a thread failed: %s", strerror(err));
		return -1;
	}
	w->started = true;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "cpus", required_argument, NULL, 'c' },
		STORE_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct store_opts sopts = STORE_OPTS_DEFAULT;
	uint64_t total[DINT_STAT_MAX] = { 0 };
	unsigned long port = DINT_PORT, nthreads = 1;
	int cpus[MAX_THREADS], ncpus = 0;
	struct worker **workers;
	sigset_t stop_set, old_set;
	int opt, status = 0;
	bool ready = false;
	unsigned long i;
	int s;

	opterr = 0; /* our own one-line message instead of getopt's */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			if (parse_uint(optarg, 1, 65535, &port) < 0)
				usage_error(USAGE, "bad --port '%s'", optarg);
			break;
		case 't':
			if (parse_uint(optarg, 1, MAX_THREADS, &nthreads) < 0)
				usage_error(USAGE, "bad --threads '%s' (1..%d)", optarg,
					    MAX_THREADS);
			break;
		case 'c':
			ncpus = parse_cpu_list(optarg, cpus, MAX_THREADS);
			if (ncpus < 0)
				usage_error(USAGE, "bad --cpus '%s'", optarg);
			break;
		default:
			if (store_parse_opt(opt, optarg, USAGE, &sopts))
				break;
			if (optopt == 'p' || optopt == 't' || optopt == 'c' ||
			    store_opt_is(optopt))
				usage_error(USAGE, "missing value for '%s'", argv[optind - 1]);
			usage_error(USAGE, "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error(USAGE, "unexpected argument '%s'", argv[optind]);

	if (store_start(&sopts) < 0)
		return EXIT_SETUP;

	if (install_stop_handlers() < 0) {
		report_error("installing signal handlers failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	/* Workers inherit this mask, so the stop signals always reach the main
	 * thread, which waits for them in sigsuspend without missing one. */
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGUSR1); /* live stats, printed by the main thread */
	pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);

	workers = calloc(nthreads, sizeof(*workers));
	if (!workers) {
		report_error("out of memory");
		return EXIT_SETUP;
	}
	for (i = 0; i < nthreads; i++) {
		workers[i] = calloc(1, sizeof(*workers[i]));
		if (!workers[i]) {
			report_error("out of memory");
			status = EXIT_SETUP;
			break;
		}
		workers[i]->cpu = ncpus ? cpus[i % ncpus] : -1;
		workers[i]->fd = open_socket(port);
		if (workers[i]->fd < 0) {
			status = EXIT_SETUP;
			break;
		}
	}
	/* All sockets are bound before any thread runs: a failed bind then
	 * never leaves a half-started server behind. */
	for (i = 0; !status && i < nthreads; i++) {
		if (start_worker(workers[i]) < 0)
			status = EXIT_SETUP;
	}

	if (!status) {
		print_ready();
		ready = true;
		while (!should_stop()) {
			sigsuspend(&old_set);
			if (take_stats_request()) {
				uint64_t live[DINT_STAT_MAX] = { 0 };

				for (i = 0; i < nthreads; i++)
					for (s = 0; s < DINT_STAT_MAX; s++)
						live[s] += __atomic_load_n(&workers[i]->stats[s], __ATOMIC_RELAXED);
				print_stats(live, NULL, 0);
			}
		}
	} else {
		atomic_store(&stop_requested, true);
	}

	for (i = 0; i < nthreads && workers[i]; i++) {
		struct worker *w = workers[i];

		if (w->started) {
			pthread_join(w->tid, NULL);
			if (w->failed)
				status = EXIT_SETUP;
		}
		for (s = 0; s < DINT_STAT_MAX; s++)
			total[s] += w->stats[s];
		if (w->fd >= 0)
			close(w->fd);
		free(w);
	}
	free(workers);
	/* Every worker has been joined: the store is ours alone. Written
	 * only for a server that ran, so a failed start leaves no file. */
	if (ready && store_stop(&sopts) < 0)
		status = EXIT_SETUP;
	else if (!ready)
		store_free();
	/* Also after a worker failed: what was counted until then is real. */
	if (ready)
		print_stats(total, NULL, 0);
	return status;
}
