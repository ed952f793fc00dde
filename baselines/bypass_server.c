/* Baseline 2: dint answered by a DPDK poll-mode loop that bypasses the kernel
 * stack, the classic alternative XDP is measured against. */
#define _GNU_SOURCE
#include <getopt.h>
#include <sys/prctl.h>
#include <time.h>

#include "store.h" /* before the engine, which dint_net.h includes */
#include "dint_net.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "server_common.h"

#define USAGE "bypass_server [EAL args] -- [--idle-poll-us N] [--idle-sleep-max-us M] " \
	STORE_USAGE

#define BURST 32
#define NB_RXD 1024
#define NB_TXD 1024
/* The AF_XDP PMD keeps its fill ring stocked from the same pool. */
#define FILL_RESERVE 2048
#define POOL_CACHE 256
/* A longer sleep would make stopping slower than the ~200 ms callers
 * expect and add that much latency to the first request after a pause. */
#define MAX_SLEEP_US 100000
#define MAX_POLL_US 60000000

/* Idle back-off, so the poller can share a core (three servers and their
 * NAPI threads share one on a small test host): an empty poll yields the
 * CPU, which costs little when no one else wants it and lets the server
 * that has a packet run at once when someone does; after poll_ns without a
 * packet it sleeps ever longer. The first packet brings it back to polling. */
struct backoff {
	uint64_t poll_ns;
	unsigned int sleep_max_us; /* 0: pure busy poll, not even a yield */
	bool idle;
	uint64_t idle_since;
	unsigned int sleep_us;
	uint64_t sleeps;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static void backoff_busy(struct backoff *b)
{
	b->idle = false;
	b->sleep_us = 1;
}

static void backoff_idle(struct backoff *b)
{
	uint64_t now, idle_for;
	struct timespec ts;

	if (!b->sleep_max_us)
		return;
	now = now_ns();
	if (!b->idle) {
		b->idle = true;
		b->idle_since = now;
		return;
	}
	idle_for = now - b->idle_since;
	if (idle_for < b->poll_ns) {
		sched_yield();
		return;
	}
	ts.tv_sec = b->sleep_us / 1000000;
	ts.tv_nsec = (long)(b->sleep_us % 1000000) * 1000;
	nanosleep(&ts, NULL);
	b->sleeps++;
	b->sleep_us = b->sleep_us * 2 > b->sleep_max_us ? b->sleep_max_us : b->sleep_us * 2;
}

/* Answers one burst from one port; replies go out where they came in. */
static void serve_burst(uint16_t port, struct rte_mbuf **pkts, uint16_t n, uint64_t *stats)
{
	struct rte_mbuf *tx[BURST];
	uint16_t i, ntx = 0, sent = 0;
	int tries;

	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		void *data = rte_pktmbuf_mtod(m, void *);
		void *end = (char *)data + rte_pktmbuf_data_len(m);
		struct dint_frame f;

		if (dint_parse_frame(data, end, &f) < 0) {
			rte_pktmbuf_free(m);
			continue;
		}
		stats[DINT_STAT_RX]++;
		if (!dint_reply_len(dint_process(f.msg, end, f.msg_len), f.msg_len, stats)) {
			stats[DINT_STAT_DROP]++;
			rte_pktmbuf_free(m);
			continue;
		}
		if (f.msg->status != DINT_ST_OK)
			stats[DINT_STAT_ERR]++;
		dint_reverse_frame(&f);
		tx[ntx++] = m;
	}

	/* A full TX ring usually drains within a few kicks; after that the
	 * replies are dropped (and not counted as sent) rather than stall RX. */
	for (tries = 0; sent < ntx && tries < 8; tries++)
		sent += rte_eth_tx_burst(port, 0, tx + sent, ntx - sent);
	stats[DINT_STAT_TX] += sent;
	if (sent < ntx)
		rte_pktmbuf_free_bulk(tx + sent, ntx - sent);
}

static void poll_loop(const uint16_t *ports, int nports, struct backoff *b, uint64_t *stats)
{
	struct rte_mbuf *pkts[BURST];
	uint16_t n;
	bool busy;
	int i;

	while (!should_stop()) {
		if (take_stats_request())
			print_stats(stats, "sleeps", b->sleeps);
		busy = false;
		for (i = 0; i < nports; i++) {
			n = rte_eth_rx_burst(ports[i], 0, pkts, BURST);
			if (n) {
				busy = true;
				serve_burst(ports[i], pkts, n, stats);
			}
		}
		if (busy)
			backoff_busy(b);
		else
			backoff_idle(b);
	}
}

static int setup_port(uint16_t port, struct rte_mempool *pool)
{
	char name[RTE_ETH_NAME_MAX_LEN] = "?";
	uint16_t nb_rxd = NB_RXD, nb_txd = NB_TXD;
	struct rte_eth_conf conf;
	const char *step;
	int socket = rte_eth_dev_socket_id(port);
	int ret;

	rte_eth_dev_get_name_by_port(port, name);
	if (socket < 0)
		socket = (int)rte_socket_id();
	memset(&conf, 0, sizeof(conf));

	step = "configure";
	ret = rte_eth_dev_configure(port, 1, 1, &conf);
	if (!ret) {
		step = "adjust descriptors";
		ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
	}
	if (!ret) {
		step = "rx queue setup";
		ret = rte_eth_rx_queue_setup(port, 0, nb_rxd, socket, NULL, pool);
	}
	if (!ret) {
		step = "tx queue setup";
		ret = rte_eth_tx_queue_setup(port, 0, nb_txd, socket, NULL);
	}
	if (!ret) {
		step = "start";
		ret = rte_eth_dev_start(port);
	}
	if (ret) {
		report_error("port %u (%s): %s failed: %s", port, name, step,
			     rte_strerror(ret < 0 ? -ret : ret));
		return -1;
	}
	return 0;
}

/* The options after "--". */
struct app_opts {
	unsigned long poll_us, sleep_max_us;
	struct store_opts *store;
};

static bool take_option(int opt, const char *arg, void *ctx)
{
	struct app_opts *o = ctx;

	switch (opt) {
	case 's':
		if (parse_uint(arg, 0, MAX_POLL_US, &o->poll_us) < 0)
			usage_error(USAGE, "bad --idle-poll-us '%s' (0..%d)", arg,
				    MAX_POLL_US);
		return true;
	case 'm':
		if (parse_uint(arg, 0, MAX_SLEEP_US, &o->sleep_max_us) < 0)
			usage_error(USAGE, "bad --idle-sleep-max-us '%s' (0..%d)", arg,
				    MAX_SLEEP_US);
		return true;
	}
	return store_parse_opt(opt, arg, USAGE, o->store);
}

/* Our options come after "--"; the rest is EAL's. Parsed before EAL starts
 * so a typo costs no hugepage or device setup. */
static void parse_app_args(int argc, char **argv, struct backoff *b, struct store_opts *so)
{
	static const struct option opts[] = {
		{ "idle-poll-us", required_argument, NULL, 's' },
		{ "idle-sleep-max-us", required_argument, NULL, 'm' },
		STORE_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct app_opts o = { 200, 200, so };

	optind = 1;
	parse_args(argc, argv, opts, USAGE, take_option, &o);
	b->poll_ns = (uint64_t)o.poll_us * 1000;
	b->sleep_max_us = (unsigned int)o.sleep_max_us;
	b->sleep_us = 1;
}

int main(int argc, char **argv)
{
	uint64_t stats[DINT_STAT_MAX] = { 0 };
	struct backoff backoff = { 0 };
	struct store_opts sopts = STORE_OPTS_DEFAULT;
	struct rte_mempool *pool;
	uint16_t *ports, port;
	int eal_argc, nports = 0, nstarted = 0, i, ret;
	unsigned int nb_mbufs;

	for (eal_argc = 1; eal_argc < argc; eal_argc++) {
		if (!strcmp(argv[eal_argc], "--"))
			break;
	}
	if (eal_argc < argc) {
		/* argv[eal_argc] becomes argv[0] of the app's own parse. */
		argv[eal_argc] = argv[0];
		parse_app_args(argc - eal_argc, argv + eal_argc, &backoff, &sopts);
	} else {
		parse_app_args(1, argv, &backoff, &sopts);
	}

	/* Also before EAL: a bad snapshot costs no hugepage or device setup. */
	if (store_start(&sopts) < 0)
		return EXIT_SETUP;

	if (install_stop_handlers() < 0) {
		report_error("installing signal handlers failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	/* The default 50 us timer slack would swamp the short sleeps at the
	 * start of the back-off. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

	/* Hand EAL a fresh getopt, as if we had never parsed anything. */
	opterr = 1;
	optind = 0;
	ret = rte_eal_init(eal_argc, argv);
	if (ret < 0) {
		report_error("EAL init failed: %s", rte_strerror(rte_errno));
		return EXIT_SETUP;
	}

	nports = rte_eth_dev_count_avail();
	if (!nports) {
		report_error("no DPDK ports: none given or all failed to probe"
			     " (e.g. --vdev net_af_xdp0,iface=IF; --log-level=8 tells why)");
		rte_eal_cleanup();
		return EXIT_SETUP;
	}
	ports = calloc(nports, sizeof(*ports));
	if (!ports) {
		report_error("out of memory");
		rte_eal_cleanup();
		return EXIT_SETUP;
	}
	i = 0;
	RTE_ETH_FOREACH_DEV(port) {
		if (i < nports)
			ports[i++] = port;
	}
	nports = i;

	nb_mbufs = nports * (NB_RXD + NB_TXD + FILL_RESERVE + 2 * BURST) + 2 * POOL_CACHE;
	pool = rte_pktmbuf_pool_create("dint_pool", nb_mbufs, POOL_CACHE, 0,
				       RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	if (!pool) {
		report_error("creating a pool of %u mbufs failed: %s", nb_mbufs,
			     rte_strerror(rte_errno));
		ret = EXIT_SETUP;
		goto out;
	}
	for (i = 0; i < nports; i++) {
		if (setup_port(ports[i], pool) < 0) {
			ret = EXIT_SETUP;
			goto out;
		}
		nstarted++;
	}

	/* A --vdev that fails to probe does not fail EAL init, so say what
	 * is actually served. */
	fprintf(stderr, "%s: serving %d port(s):", program_invocation_short_name, nports);
	for (i = 0; i < nports; i++) {
		char name[RTE_ETH_NAME_MAX_LEN];

		if (rte_eth_dev_get_name_by_port(ports[i], name))
			strcpy(name, "?");
		fprintf(stderr, " %s", name);
	}
	fputc('\n', stderr);

	print_ready();
	poll_loop(ports, nports, &backoff, stats);
	ret = 0;
out:
	for (i = 0; i < nports; i++) {
		if (i < nstarted)
			rte_eth_dev_stop(ports[i]);
		rte_eth_dev_close(ports[i]);
	}
	rte_mempool_free(pool);
	free(ports);
	rte_eal_cleanup();
	/* Only for a server that ran, so a failed start leaves no file. */
	if (!ret) {
		if (store_stop(&sopts) < 0)
			ret = EXIT_SETUP;
		print_stats(stats, "sleeps", backoff.sleeps);
	} else {
		store_free();
	}
	return ret;
}
