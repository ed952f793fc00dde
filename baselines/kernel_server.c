/* Baseline 1: dint answered through the ordinary kernel UDP stack, so the
 * benchmark shows what XDP saves over sockets doing the very same work. */
#define _GNU_SOURCE
#include <getopt.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "store.h"
#include "udp_server.h"

#define USAGE "kernel_server [--port P] [--threads N] [--cpus LIST] " SAMPLE_USAGE " " STORE_USAGE

#define MAX_THREADS 256

struct worker {
	int fd;
	int cpu; /* -1: not pinned */
	pthread_t tid;
	bool started;
	bool failed;
	uint64_t stats[DINT_STAT_MAX];
	struct udp_batch batch;
};

/* A datagram through the engine: the reply is the request, changed in
 * place. ctx: the worker's counters. */
static __u32 answer(void *ctx, __u8 *buf, __u32 len)
{
	return dint_reply_len(dint_process((struct dint_hdr *)buf, buf + len, len), len, ctx);
}

/* A checkpoint holds every worker still between two batches while the
 * main thread writes the store's files. A worker waiting in a receive is
 * woken by a signal (SIGURG, which does nothing but end the receive with
 * EINTR), sent again every 10 ms until all are held, in case one arrived
 * just before the worker started to wait. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool held;
	unsigned long parked;
} hold = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0 };
static atomic_bool hold_requested;

static void park(void)
{
	pthread_mutex_lock(&hold.mu);
	hold.parked++;
	pthread_cond_broadcast(&hold.cv);
	while (hold.held)
		pthread_cond_wait(&hold.cv, &hold.mu);
	hold.parked--;
	pthread_mutex_unlock(&hold.mu);
}

static void on_wake_signal(int sig)
{
	(void)sig;
}

/* Until every running worker is parked (false if the server is stopping
 * meanwhile, e.g. a worker failed). */
static bool hold_workers(struct worker **workers, unsigned long running)
{
	bool all;

	pthread_mutex_lock(&hold.mu);
	hold.held = true;
	atomic_store(&hold_requested, true);
	while (hold.parked < running && !should_stop()) {
		struct timespec until;

		for (unsigned long i = 0; i < running; i++)
			pthread_kill(workers[i]->tid, SIGURG);

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 10000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&hold.cv, &hold.mu, &until);
	}
	all = hold.parked >= running;
	pthread_mutex_unlock(&hold.mu);
	return all;
}

static void release_workers(void)
{
	pthread_mutex_lock(&hold.mu);
	hold.held = false;
	atomic_store(&hold_requested, false);
	pthread_cond_broadcast(&hold.cv);
	pthread_mutex_unlock(&hold.mu);
}

/* The checkpoint barrier's arrival that completes an epoch (in a worker)
 * wakes the main thread, which takes the checkpoint as it takes SIGUSR2's. */
static int barrier_wake_fd = -1;

static void barrier_wake(uint64_t e)
{
	(void)e;
	if (eventfd_write(barrier_wake_fd, 1) < 0)
		report_error("waking the main thread for a checkpoint failed: %s", strerror(errno));
}

/* A checkpoint, SIGUSR2's (epoch 0) or the barrier's of epoch e: every
 * worker held still between two batches, the stats line, the files, the
 * workers released, the checkpoint line, and then (the barrier's) the
 * epoch marked taken, so that its requests are answered OK from then on.
 * false if the server is stopping meanwhile. */
static bool take_checkpoint(struct worker **workers, unsigned long nworkers, const struct store_opts *so,
			    uint64_t e)
{
	uint64_t live[DINT_STAT_MAX] = { 0 }, t0;
	int ret;

	if (!hold_workers(workers, nworkers)) {
		release_workers();
		return false;
	}
	for (unsigned long i = 0; i < nworkers; i++)
		for (int s = 0; s < DINT_STAT_MAX; s++)
			live[s] += __atomic_load_n(&workers[i]->stats[s], __ATOMIC_RELAXED);
	print_stats(live, 0, NULL, NULL);
	t0 = clock_ns(CLOCK_MONOTONIC);
	ret = store_write_files_epoch(so, e);
	release_workers();
	print_checkpoint(ret, t0, e);
	if (e)
		barrier_done(&server_barrier, e);
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	udp_batch_init(&w->batch);
	while (!should_stop()) {
		if (atomic_load_explicit(&hold_requested, memory_order_relaxed))
			park();
		if (udp_serve_batch(w->fd, &w->batch, answer, w->stats, w->stats) < 0) {
			w->failed = true;
			atomic_store(&stop_requested, true);
			break;
		}
	}
	return NULL;
}

/* Every worker gets its own socket in one SO_REUSEPORT group, so the
 * kernel spreads flows over them without any locking in user space. Its
 * receive buffer holds a burst of thousands of requests (a TPC-C commit
 * logs hundreds of rows at once; the default buffer dropped some). */
#define RCVBUF (8 << 20)

static int open_socket(unsigned int port)
{
	return udp_socket(port, true, RCVBUF);
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

/* The command line: what every UDP server is told, and --threads. */
struct options {
	struct udp_server_opts server;
	unsigned long threads;
};

static bool take_option(int opt, const char *arg, void *ctx)
{
	struct options *o = ctx;

	if (opt != 't')
		return udp_server_parse_opt(opt, arg, USAGE, &o->server);
	if (parse_uint(arg, 1, MAX_THREADS, &o->threads) < 0)
		usage_error(USAGE, "bad --threads '%s' (1..%d)", arg, MAX_THREADS);
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' },
		UDP_SERVER_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { UDP_SERVER_OPTS_DEFAULT, 1 };
	uint64_t total[DINT_STAT_MAX] = { 0 };
	struct worker **workers;
	sigset_t stop_set, old_set;
	int status = 0;
	bool ready = false;
	unsigned long i;
	int s;

	parse_args(argc, argv, opts, USAGE, take_option, &o);

	if (store_start(&o.server.store) < 0)
		return EXIT_SETUP;

	if (install_stop_handlers() < 0 || sigaction(SIGURG, &(struct sigaction){ .sa_handler = on_wake_signal },
						      NULL) < 0) {
		report_error("installing signal handlers failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	/* Workers inherit this mask, so the stop signals always reach the main
	 * thread, which waits for them in ppoll without missing one. */
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGUSR1); /* live stats, printed by the main thread */
	sigaddset(&stop_set, SIGUSR2); /* a checkpoint, written by the main thread */
	pthread_sigmask(SIG_BLOCK, &stop_set, &old_set);

	barrier_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (barrier_wake_fd < 0) {
		report_error("eventfd failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	server_barrier.complete = barrier_wake;

	workers = calloc(o.threads, sizeof(*workers));
	if (!workers) {
		report_error("out of memory");
		return EXIT_SETUP;
	}
	for (i = 0; i < o.threads; i++) {
		workers[i] = calloc(1, sizeof(*workers[i]));
		if (!workers[i]) {
			report_error("out of memory");
			status = EXIT_SETUP;
			break;
		}
		workers[i]->cpu = o.server.ncpus ? o.server.cpus[i % o.server.ncpus] : -1;
		workers[i]->fd = open_socket(o.server.port);
		if (workers[i]->fd < 0) {
			status = EXIT_SETUP;
			break;
		}
	}
	/* All sockets are bound before any thread runs: a failed bind then
	 * never leaves a half-started server behind. */
	for (i = 0; !status && i < o.threads; i++) {
		if (start_worker(workers[i]) < 0)
			status = EXIT_SETUP;
	}

	if (!status) {
		print_ready();
		ready = true;
		/* The main thread sleeps until a signal, the barrier's wake-up
		 * or the next periodic stats line, whichever comes first. */
		uint64_t every = stats_interval_ns(), next = clock_ns(CLOCK_MONOTONIC) + every;
		struct pollfd wake = { .fd = barrier_wake_fd, .events = POLLIN };

		while (!should_stop()) {
			struct timespec wait;
			uint64_t now = clock_ns(CLOCK_MONOTONIC), left = next > now ? next - now : 0, e;
			eventfd_t ignored;
			bool due, printed = false;

			wait.tv_sec = (time_t)(left / 1000000000u);
			wait.tv_nsec = (long)(left % 1000000000u);
			if (ppoll(&wake, 1, every ? &wait : NULL, &old_set) > 0)
				eventfd_read(barrier_wake_fd, &ignored);
			now = clock_ns(CLOCK_MONOTONIC);
			due = every && now >= next;
			if (due)
				next = next + every > now ? next + every : now + every;
			/* a checkpoint prints the stats line of its moment,
			 * which is also the one asked for or due */
			if (take_checkpoint_request()) {
				if (!take_checkpoint(workers, o.threads, &o.server.store, 0))
					break; /* stopping */
				printed = true;
			}
			if ((e = barrier_pending(&server_barrier))) {
				if (!take_checkpoint(workers, o.threads, &o.server.store, e))
					break;
				printed = true;
			}
			if ((take_stats_request() || due) && !printed) {
				uint64_t live[DINT_STAT_MAX] = { 0 };

				for (i = 0; i < o.threads; i++)
					for (s = 0; s < DINT_STAT_MAX; s++)
						live[s] += __atomic_load_n(&workers[i]->stats[s], __ATOMIC_RELAXED);
				print_stats(live, 0, NULL, NULL);
			}
		}
	} else {
		atomic_store(&stop_requested, true);
	}

	for (i = 0; i < o.threads && workers[i]; i++) {
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
	close(barrier_wake_fd);
	/* Every worker has been joined: the store is ours alone. Written
	 * only for a server that ran, so a failed start leaves no file. */
	if (ready && store_stop(&o.server.store) < 0)
		status = EXIT_SETUP;
	else if (!ready)
		store_free();
	/* Also after a worker failed: what was counted until then is real. */
	if (ready)
		print_stats(total, 0, NULL, NULL);
	return status;
}
