/* What the two baseline servers share: the stop flag, the lines the harness
 * reads from stdout (ready, stats) and the way they report bad input. */
#ifndef SERVER_COMMON_H
#define SERVER_COMMON_H

#include <errno.h>
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

#include "dint_engine.h"

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
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
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

/* extra_key may be NULL; otherwise one more counter goes after the four. */
static inline void print_stats(const uint64_t *stats, const char *extra_key, uint64_t extra)
{
	printf("stats {\"rx\": %" PRIu64 ", \"tx\": %" PRIu64 ", \"drop\": %" PRIu64
	       ", \"err\": %" PRIu64,
	       stats[DINT_STAT_RX], stats[DINT_STAT_TX], stats[DINT_STAT_DROP],
	       stats[DINT_STAT_ERR]);
	if (extra_key)
		printf(", \"%s\": %" PRIu64, extra_key, extra);
	fputs("}\n", stdout);
	fflush(stdout);
}

#endif
