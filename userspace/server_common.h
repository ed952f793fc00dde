/* What the user-space servers (the two baselines and dint's slow path)
 * share: the stop flag, the lines the harness reads from stdout (ready,
 * stats, with what the server has cost so far), the way they report bad
 * input, the store's options and its checkpoints (store.h holds the store
 * itself; udp_server.h the UDP serving loop; barrier.h the checkpoint
 * barrier, server_barrier here). */
#ifndef SERVER_COMMON_H
#define SERVER_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "store.h" /* defines the engine's hooks, then includes the engine */
#include "barrier.h"

/* The longest datagram (UDP payload) the user-space servers take: room for
 * any datagram that fits a 1500-byte MTU frame and for any valid request. A
 * longer one is counted received and dropped unanswered: the socket servers
 * read it truncated, and the DPDK server does the same. */
#define DINT_DGRAM_MAX (DINT_HDR_LEN + DINT_MAX_VALUE + 1 > 2048 ? DINT_HDR_LEN + DINT_MAX_VALUE + 1 : 2048)

/* Exit codes, so a caller can tell a wrong invocation from a broken host. */
#define EXIT_SETUP 1
#define EXIT_USAGE 2

/* Set from a signal handler and read by every polling thread, so it has to
 * be a lock-free atomic rather than a plain int. */
static atomic_bool stop_requested;

static inline bool should_stop(void)
{
	return atomic_load_explicit(&stop_requested, memory_order_relaxed);
}

static inline void on_stop_signal(int sig)
{
	(void)sig;
	atomic_store(&stop_requested, true);
}

/* SIGUSR1 asks a running server for its counters so far: it prints one
 * more "stats {json}" line (the control plane's live stats; the line printed
 * at stop is always the last). */
static atomic_bool stats_requested;

static inline void on_stats_signal(int sig)
{
	(void)sig;
	atomic_store(&stats_requested, true);
}

/* Whether live stats were asked for since the last call: a plain load
 * first, so a polling loop pays no locked instruction. */
static inline bool take_stats_request(void)
{
	return atomic_load_explicit(&stats_requested, memory_order_relaxed) &&
	       atomic_exchange(&stats_requested, false);
}

/* SIGUSR2 asks a running server for a checkpoint: with no request in
 * flight (the harness sends it between two measured points served by the
 * same servers), the server prints its stats line, writes --dump and --log
 * as it would at stop, keeps serving, and prints one "checkpoint {json}"
 * line saying whether both were written (print_checkpoint()). The clients'
 * checkpoint barrier takes the same checkpoint of an epoch, its files at
 * <path>.<epoch> (server_barrier, below). */
static atomic_bool checkpoint_requested;

static inline void on_checkpoint_signal(int sig)
{
	(void)sig;
	atomic_store(&checkpoint_requested, true);
}

static inline bool take_checkpoint_request(void)
{
	return atomic_load_explicit(&checkpoint_requested, memory_order_relaxed) &&
	       atomic_exchange(&checkpoint_requested, false);
}

/* No SA_RESTART: a thread blocked in a system call should come back with
 * EINTR and look at the flag instead of sleeping on. The unblock is for
 * parents that hand down a mask with these signals blocked. */
static inline int install_stop_handlers(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = on_stats_signal;
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return -1;
	sa.sa_handler = on_checkpoint_signal;
	if (sigaction(SIGUSR2, &sa, NULL) < 0)
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	return pthread_sigmask(SIG_UNBLOCK, &set, NULL) ? -1 : 0;
}

static inline void __attribute__((noreturn, format(printf, 2, 3)))
usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (usage: %s)\n", usage);
	exit(EXIT_USAGE);
}

/* One line naming what failed; the caller exits (it may have cleanup). */
static inline void __attribute__((format(printf, 1, 2)))
report_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Whole-string decimal only: "12abc", "", "-1" and overflow are rejected,
 * which strtoul alone would let through. */
static inline int parse_uint(const char *s, unsigned long min, unsigned long max,
			     unsigned long *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "0,1,1": CPU ids, repeats allowed. Returns how many, or -1. */
static inline int parse_cpu_list(const char *s, int *cpus, int max_cpus)
{
	char buf[256], *tok, *save;
	unsigned long cpu;
	int n = 0;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if (!buf[0] || buf[0] == ',' || buf[strlen(buf) - 1] == ',' || strstr(buf, ",,"))
		return -1;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == max_cpus || parse_uint(tok, 0, CPU_SETSIZE - 1, &cpu) < 0)
			return -1;
		cpus[n++] = (int)cpu;
	}
	return n;
}

/* Parses argv with getopt_long against opts (ending with a zero entry):
 * take(opt, arg, ctx) takes each option, false if it is not one of its. A
 * missing value, an unknown option or an argument left over ends the
 * process with a usage error. */
static inline void parse_args(int argc, char **argv, const struct option *opts, const char *usage,
			      bool (*take)(int opt, const char *arg, void *ctx), void *ctx)
{
	int opt;

	opterr = 0; /* our own one-line message instead of getopt's */
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != '?' && take(opt, optarg, ctx))
			continue;
		for (const struct option *o = opts; o->name; o++)
			if (o->has_arg == required_argument && o->val == optopt)
				usage_error(usage, "missing value for '%s'", argv[optind - 1]);
		usage_error(usage, "unknown option '%s'", argv[optind - 1]);
	}
	if (optind < argc)
		usage_error(usage, "unexpected argument '%s'", argv[optind]);
}

/* Pinning through the attributes means a thread never runs a single
 * iteration on the wrong CPU, and a bad CPU id fails pthread_create. */
static inline int pin_thread_attr(pthread_attr_t *attr, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_attr_setaffinity_np(attr, sizeof(set), &set);
}

static inline void print_ready(void)
{
	fputs("ready\n", stdout);
	fflush(stdout);
}

/* What to send for dint_process's verdict on a datagram of len bytes: len
 * for a reply, 0 for none (the caller counts it dropped); a stale copy is
 * counted as such in stats too. */
static inline __u32 dint_reply_len(int verdict, __u32 len, uint64_t *stats)
{
	if (verdict == DINT_STALE)
		stats[DINT_STAT_STALE]++;
	return verdict == DINT_REPLY ? len : 0;
}

/* ---- What a server costs, measured on its own host ----
 *
 * Every stats line ends with when it was taken and what the server had
 * used by then, so the harness can take the CPU spent per request over any
 * span between two lines (harness/cost.py), on a cluster as on the local
 * testbed:
 *   t_ns         CLOCK_REALTIME (compared with the clients' windows);
 *   mono_ns      CLOCK_MONOTONIC;
 *   cpu_ns       this process's CPU time, user and system, all its threads;
 *   napi_cpu_ns  with --napi-ifaces: the CPU time of the threaded-NAPI
 *                kernel threads of those interfaces (the kernel's receive
 *                and transmit work for them), threads that went away
 *                counted up to when they were last seen.
 * Besides on SIGUSR1 and at stop, a server prints a line every
 * --stats-interval-ms (0: never). */
#define STATS_DEFAULT_INTERVAL_MS 100
#define STATS_MAX_INTERVAL_MS 3600000
#define NAPI_MAX_IFACES 16
#define NAPI_MAX_THREADS 256
/* A kernel thread's name is at most 15 characters: "napi/<ifname>-<id>"
 * cut there. */
#define NAPI_COMM_MAX 15

struct napi_thread {
	int pid;
	uint64_t cpu_ns; /* when last read */
};

static struct {
	unsigned long interval_ms;
	char prefix[NAPI_MAX_IFACES][NAPI_COMM_MAX + 1]; /* "napi/<ifname>-", cut to a name's length */
	int nifaces;
	struct napi_thread threads[NAPI_MAX_THREADS];
	int nthreads;
	uint64_t gone_ns; /* of threads no longer there */
	char kthreads[65536]; /* kthreadd's children when the threads were last looked for */
	bool scanned;
} sample_cfg = { .interval_ms = STATS_DEFAULT_INTERVAL_MS };

static inline uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The whole of a small /proc file into buf (NUL-terminated): its length,
 * or -1. */
static inline ssize_t read_small_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	fclose(f);
	return (ssize_t)n;
}

/* A thread's CPU time: the scheduler's exact figure (schedstat), else
 * user + system clock ticks. 0 if the thread is gone. */
static inline uint64_t thread_cpu_ns(int pid, bool *gone)
{
	char path[64], buf[512], *p;
	unsigned long long utime, stime;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	if (read_small_file(path, buf, sizeof(buf)) > 0) {
		*gone = false;
		return strtoull(buf, NULL, 10);
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_small_file(path, buf, sizeof(buf)) <= 0 || !(p = strrchr(buf, ')')) ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) {
		*gone = true;
		return 0;
	}
	*gone = false;
	return (utime + stime) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static inline bool napi_comm_matches(int pid)
{
	char path[64], comm[32];

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	if (read_small_file(path, comm, sizeof(comm)) <= 0)
		return false;
	for (int i = 0; i < sample_cfg.nifaces; i++)
		if (!strncmp(comm, sample_cfg.prefix[i], strlen(sample_cfg.prefix[i])))
			return true;
	return false;
}

static inline void napi_add(int pid)
{
	for (int i = 0; i < sample_cfg.nthreads; i++)
		if (sample_cfg.threads[i].pid == pid)
			return;
	if (sample_cfg.nthreads < NAPI_MAX_THREADS)
		sample_cfg.threads[sample_cfg.nthreads++] = (struct napi_thread){ pid, 0 };
}

/* Looks for the interfaces' NAPI threads among the kernel threads (the
 * children of kthreadd, pid 2), again only when that list changed; without
 * the list (no CONFIG_PROC_CHILDREN), among every process. Threads found
 * before are kept: one that went away is retired when it cannot be read. */
static inline void napi_find_threads(void)
{
	static char now[sizeof(sample_cfg.kthreads)];
	char *tok, *save;
	struct dirent *d;
	DIR *dir;

	if (read_small_file("/proc/2/task/2/children", now, sizeof(now)) >= 0) {
		if (sample_cfg.scanned && !strcmp(now, sample_cfg.kthreads))
			return;
		strcpy(sample_cfg.kthreads, now);
		sample_cfg.scanned = true;
		for (tok = strtok_r(now, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
			if (napi_comm_matches(atoi(tok)))
				napi_add(atoi(tok));
		return;
	}
	dir = opendir("/proc");
	if (!dir)
		return;
	while ((d = readdir(dir)))
		if (d->d_name[0] >= '1' && d->d_name[0] <= '9' && napi_comm_matches(atoi(d->d_name)))
			napi_add(atoi(d->d_name));
	closedir(dir);
}

static inline uint64_t napi_cpu_ns(void)
{
	uint64_t sum = sample_cfg.gone_ns;
	bool gone;
	int i = 0;

	napi_find_threads();
	while (i < sample_cfg.nthreads) {
		struct napi_thread *t = &sample_cfg.threads[i];
		uint64_t ns = thread_cpu_ns(t->pid, &gone);

		if (gone) {
			sample_cfg.gone_ns += t->cpu_ns;
			sum += t->cpu_ns;
			*t = sample_cfg.threads[--sample_cfg.nthreads];
			continue;
		}
		t->cpu_ns = ns;
		sum += ns;
		i++;
	}
	return sum;
}

/* The fields above, each line's last (after a comma). */
static inline void print_sample_fields(void)
{
	uint64_t t = clock_ns(CLOCK_REALTIME), mono = clock_ns(CLOCK_MONOTONIC);

	struct rusage ru;

	printf(", \"t_ns\": %" PRIu64 ", \"mono_ns\": %" PRIu64 ", \"cpu_ns\": %" PRIu64, t, mono,
	       clock_ns(CLOCK_PROCESS_CPUTIME_ID));
	/* the same time apart by mode (microseconds, as the kernel keeps them) */
	if (!getrusage(RUSAGE_SELF, &ru))
		printf(", \"cpu_user_ns\": %" PRIu64 ", \"cpu_sys_ns\": %" PRIu64,
		       (uint64_t)ru.ru_utime.tv_sec * 1000000000u + (uint64_t)ru.ru_utime.tv_usec * 1000u,
		       (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u);
	if (sample_cfg.nifaces)
		printf(", \"napi_cpu_ns\": %" PRIu64, napi_cpu_ns());
}

/* The period of the periodic stats lines in ns (0: none). */
static inline uint64_t stats_interval_ns(void)
{
	return (uint64_t)sample_cfg.interval_ms * 1000000u;
}

enum {
	OPT_STATS_INTERVAL = 0x200, /* past every short option character and the store's */
	OPT_NAPI_IFACES,
};

#define SAMPLE_OPTIONS                                                          \
	{ "stats-interval-ms", required_argument, NULL, OPT_STATS_INTERVAL },   \
	{ "napi-ifaces", required_argument, NULL, OPT_NAPI_IFACES }

#define SAMPLE_USAGE "[--stats-interval-ms N] [--napi-ifaces IF[,IF...]]"

/* Takes --stats-interval-ms or --napi-ifaces; false if opt is neither. */
static inline bool sample_parse_opt(int opt, const char *arg, const char *usage)
{
	char buf[256], *tok, *save;

	switch (opt) {
	case OPT_STATS_INTERVAL:
		if (parse_uint(arg, 0, STATS_MAX_INTERVAL_MS, &sample_cfg.interval_ms) < 0)
			usage_error(usage, "bad --stats-interval-ms '%s' (0..%d)", arg, STATS_MAX_INTERVAL_MS);
		return true;
	case OPT_NAPI_IFACES:
		if (strlen(arg) >= sizeof(buf) || !*arg)
			usage_error(usage, "bad --napi-ifaces '%s'", arg);
		strcpy(buf, arg);
		sample_cfg.nifaces = 0;
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (sample_cfg.nifaces == NAPI_MAX_IFACES)
				usage_error(usage, "more than %d --napi-ifaces", NAPI_MAX_IFACES);
			snprintf(sample_cfg.prefix[sample_cfg.nifaces++], NAPI_COMM_MAX + 1, "napi/%s-", tok);
		}
		return true;
	}
	return false;
}

/* The engine's counters, then nextra more (extra_keys[i]: extra[i]), then
 * the sample's fields. */
static inline void print_stats(const uint64_t *stats, int nextra, const char *const *extra_keys,
			       const uint64_t *extra)
{
	printf("stats {\"rx\": %" PRIu64 ", \"tx\": %" PRIu64 ", \"drop\": %" PRIu64
	       ", \"err\": %" PRIu64 ", \"stale\": %" PRIu64,
	       stats[DINT_STAT_RX], stats[DINT_STAT_TX], stats[DINT_STAT_DROP],
	       stats[DINT_STAT_ERR], stats[DINT_STAT_STALE]);
	for (int i = 0; i < nextra; i++)
		printf(", \"%s\": %" PRIu64, extra_keys[i], extra[i]);
	print_sample_fields();
	fputs("}\n", stdout);
	fflush(stdout);
}

/* ---- The store's options, the same in both servers. ---- */

enum {
	OPT_CAPACITY = 0x100, /* past every short option character */
	OPT_LOG_CAPACITY,
	OPT_LOAD,
	OPT_DUMP,
	OPT_LOG,
	OPT_CLIENTS,
};

#define STORE_OPTIONS                                                      \
	{ "capacity", required_argument, NULL, OPT_CAPACITY },             \
	{ "log-capacity", required_argument, NULL, OPT_LOG_CAPACITY },     \
	{ "load", required_argument, NULL, OPT_LOAD },                     \
	{ "dump", required_argument, NULL, OPT_DUMP },                     \
	{ "log", required_argument, NULL, OPT_LOG },                       \
	{ "clients", required_argument, NULL, OPT_CLIENTS }

#define STORE_USAGE "[--capacity N] [--log-capacity N] [--load FILE] [--dump FILE] [--log FILE] [--clients N]"

/* Client slots of the exactly-once state (the engine's sessions), unless
 * --clients says: the harness gives its number of client processes + 1. */
#define STORE_DEFAULT_CLIENTS 16
#define STORE_MAX_CLIENTS 4096

struct store_opts {
	unsigned long capacity;
	unsigned long log_capacity;
	const char *load; /* NULL: start empty */
	const char *dump; /* NULL: no snapshot on stop */
	const char *log;  /* NULL: the log is kept in memory only */
	unsigned long clients;
};

#define STORE_OPTS_DEFAULT \
	{ STORE_DEFAULT_CAPACITY, STORE_DEFAULT_LOG_CAPACITY, NULL, NULL, NULL, STORE_DEFAULT_CLIENTS }

static inline const char *store_opt_file(const char *usage, const char *name, const char *arg)
{
	if (!*arg)
		usage_error(usage, "empty %s", name);
	return arg;
}

/* Takes one of the store's options from getopt_long; false if opt is not
 * one of them. A bad value ends the process with a usage error. */
static inline bool store_parse_opt(int opt, const char *arg, const char *usage,
				   struct store_opts *o)
{
	switch (opt) {
	case OPT_CAPACITY:
		if (parse_uint(arg, 1, STORE_MAX_CAPACITY, &o->capacity) < 0)
			usage_error(usage, "bad --capacity '%s' (1..%lu)", arg,
				    STORE_MAX_CAPACITY);
		return true;
	case OPT_LOG_CAPACITY:
		if (parse_uint(arg, 0, STORE_MAX_LOG_CAPACITY, &o->log_capacity) < 0)
			usage_error(usage, "bad --log-capacity '%s' (0..%lu)", arg,
				    STORE_MAX_LOG_CAPACITY);
		return true;
	case OPT_LOAD:
		o->load = store_opt_file(usage, "--load", arg);
		return true;
	case OPT_DUMP:
		o->dump = store_opt_file(usage, "--dump", arg);
		return true;
	case OPT_LOG:
		o->log = store_opt_file(usage, "--log", arg);
		return true;
	case OPT_CLIENTS:
		if (parse_uint(arg, 1, STORE_MAX_CLIENTS, &o->clients) < 0)
			usage_error(usage, "bad --clients '%s' (1..%d)", arg, STORE_MAX_CLIENTS);
		return true;
	}
	return false;
}

/* Allocates the store and loads --load; before "ready". -1 after one
 * error line. */
static inline int store_start(const struct store_opts *o)
{
	struct timespec t0, t1;
	long long n;

	if (store_init(o->capacity, o->log_capacity, (__u32)o->clients) < 0) {
		report_error("%s", store.err);
		return -1;
	}
	if (!o->load)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = store_load(o->load);
	if (n < 0) {
		report_error("%s", store.err);
		store_free();
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "%s: loaded %lld records from %s in %.0f ms\n",
		program_invocation_short_name, n, o->load,
		(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	return 0;
}

/* The checkpoint barrier of this server (barrier.h): every frontend
 * answers its requests, and sets its complete hook to be told when an
 * epoch's checkpoint is due. */
static struct barrier server_barrier = BARRIER_INIT(NULL);

/* Writes one of a checkpoint's files: writer(path), or for epoch e > 0
 * writer("<path>.<e>"). -1 after one error line. */
static inline int store_write_file(const char *path, uint64_t e, int (*writer)(const char *))
{
	char *p = NULL;
	int ret;

	if (e && asprintf(&p, "%s.%" PRIu64, path, e) < 0) {
		report_error("out of memory");
		return -1;
	}
	ret = writer(p ? p : path);
	if (ret < 0)
		report_error("%s", store.err);
	free(p);
	return ret < 0 ? -1 : 0;
}

/* Writes --dump and --log (those given) while the server runs on: the
 * caller holds every worker still. For a checkpoint of epoch e > 0 (the
 * barrier's) to <path>.<e>, else (SIGUSR2, stop) to the paths given.
 * Returns -1 if either could not be written (each failure has its line). */
static inline int store_write_files_epoch(const struct store_opts *o, uint64_t e)
{
	int ret = 0;

	if (o->dump && store_write_file(o->dump, e, store_dump) < 0)
		ret = -1;
	if (o->log && store_write_file(o->log, e, store_write_log) < 0)
		ret = -1;
	return ret;
}

static inline int store_write_files(const struct store_opts *o)
{
	return store_write_files_epoch(o, 0);
}

/* The line that ends a checkpoint (after the files: the harness reads
 * them once it sees it), with how long writing them took, its epoch (0:
 * SIGUSR2's) and the barrier requests answered so far (counted in no
 * stats line). */
static inline void print_checkpoint(int ret, uint64_t t0_ns, uint64_t epoch)
{
	printf("checkpoint {\"ok\": %s, \"write_ms\": %.1f, \"epoch\": %" PRIu64 ", \"barrier_rx\": %" PRIu64 "}\n",
	       ret < 0 ? "false" : "true", (double)(clock_ns(CLOCK_MONOTONIC) - t0_ns) / 1e6, epoch,
	       barrier_rx(&server_barrier));
	fflush(stdout);
}

/* Writes --dump and --log once no worker runs any more, then frees the
 * store. -1 if either could not be written (each failure has its line). */
static inline int store_stop(const struct store_opts *o)
{
	int ret = store_write_files(o);

	store_free();
	return ret;
}

#endif
