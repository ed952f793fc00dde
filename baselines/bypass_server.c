/* Baseline 2: dint answered by a DPDK poll-mode loop that bypasses the kernel
 * stack, the classic alternative XDP is measured against.
 *
 * With no kernel behind it, it takes exactly the frames the kernel server
 * would get: a simple frame (engine/dint_net.h) to the port's MAC and
 * address is answered in place, as dint's XDP program answers it; any
 * other goes through the kernel's receive rules (userspace/net_rx.h):
 * header, checksums, lengths and addresses checked, IP options checked and
 * left out of the reply, fragments reassembled (librte_ip_frag), and a
 * reply longer than the port's MTU sent in fragments. A frame the kernel
 * would drop is counted only in net_drop, never in rx/tx/drop/err, which
 * count what reaches the server as the kernel server counts what reaches
 * its socket. Each port needs its IPv4 address: --addr, once per port. */
#define _GNU_SOURCE
#define ALLOW_EXPERIMENTAL_API /* rte_ip_frag_table_del_expired_entries */
#include <arpa/inet.h>
#include <getopt.h>
#include <sys/prctl.h>
#include <time.h>

#include "store.h" /* before the engine, which dint_net.h includes */
#include "dint_net.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip_frag.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "server_common.h"
#include "net_rx.h"

#define USAGE "bypass_server [EAL args] -- --addr A.B.C.D[/LEN] (one per port) [--idle-poll-us N] " \
	"[--idle-sleep-max-us M] " SAMPLE_USAGE " " STORE_USAGE

#define MAX_PORTS 32
/* Datagrams being reassembled at once (Linux bounds its queues by memory,
 * 4 MiB); a datagram of more than RTE_LIBRTE_IP_FRAG_MAX_FRAG fragments
 * (8) is dropped, which a request of at most DINT_DGRAM_MAX bytes never
 * needs on a link of at least 576 bytes. Incomplete ones are dropped after
 * Linux's net.ipv4.ipfrag_time. */
#define FRAG_BUCKETS 64
#define FRAG_BUCKET_ENTRIES 4
#define FRAG_ENTRIES (FRAG_BUCKETS * FRAG_BUCKET_ENTRIES)
#define FRAG_TIMEOUT_S 30
/* Fragments of one reply, at most (a port's MTU is at least 68 bytes). */
#define MAX_REPLY_FRAGS 64

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

/* A port as frames are checked against it and replies sent from it. */
struct port {
	uint16_t id;
	__u8 mac[DINT_ETH_ALEN];
	__u32 addr;  /* its IPv4 address (network order) */
	uint16_t mtu;
	uint16_t ip_id; /* of the replies built here */
};

/* What the server counts beyond the engine's. */
struct counters {
	uint64_t engine[DINT_STAT_MAX];
	uint64_t net_drop; /* frames the kernel's stack would have dropped (net_rx.h) */
	uint64_t sleeps;   /* idle sleeps */
};

static struct port ports[MAX_PORTS];
static __u32 host_addrs[MAX_PORTS], host_bcasts[MAX_PORTS];
static struct net_rx_host host = { host_addrs, 0, host_bcasts, 0 };
static struct rte_mempool *pool;
static struct rte_ip_frag_tbl *frag_tbl;
static struct rte_ip_frag_death_row death_row;

static void print_counters(const struct counters *c)
{
	static const char *const keys[] = { "net_drop", "sleeps" };
	const uint64_t vals[] = { c->net_drop, c->sleeps };

	print_stats(c->engine, 2, keys, vals);
}

/* Sends frames[0, n) on the port: true if all went out, else the rest are
 * freed. A full TX ring usually drains within a few kicks; after that
 * frames are dropped rather than stall RX. */
static bool send_frames(const struct port *pt, struct rte_mbuf **frames, uint16_t n)
{
	uint16_t sent = 0;

	for (int tries = 0; sent < n && tries < 8; tries++)
		sent += rte_eth_tx_burst(pt->id, 0, frames + sent, n - sent);
	if (sent < n)
		rte_pktmbuf_free_bulk(frames + sent, n - sent);
	return sent == n;
}

/* An IPv4 header of 5 words for a reply, with its checksum. */
static void reply_ipv4(struct dint_ipv4 *ip, uint16_t id, uint16_t len, uint16_t frag_off, __u32 saddr,
		       __u32 daddr)
{
	ip->ver_ihl = 0x45;
	ip->tos = 0;
	ip->tot_len = dint_htons(len);
	ip->id = dint_htons(id);
	ip->frag_off = dint_htons(frag_off);
	ip->ttl = DINT_REPLY_TTL;
	ip->protocol = DINT_IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = (__u16)~dint_csum_fold(dint_csum_add(0, (const __u8 *)ip, sizeof(*ip), ip + 1));
}

/* Sends the UDP datagram dgram[0, len) (header filled in) to daddr/mac from
 * saddr, built as a Linux UDP socket would send it: in one frame with DF
 * if it fits the port's MTU, else in fragments. True if it all went out. */
static bool send_datagram(struct port *pt, const __u8 *mac, __u32 saddr, __u32 daddr, const __u8 *dgram,
			  uint32_t len)
{
	struct rte_mbuf *frames[MAX_REPLY_FRAGS];
	uint32_t piece = len + sizeof(struct dint_ipv4) <= pt->mtu ? len
			 : (pt->mtu - sizeof(struct dint_ipv4)) & ~7u;
	uint16_t n = 0, id = pt->ip_id++;

	if (!piece || (len + piece - 1) / piece > MAX_REPLY_FRAGS)
		return false;
	for (uint32_t off = 0; off < len; off += piece) {
		uint32_t k = len - off < piece ? len - off : piece;
		bool last = off + k == len;
		struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
		struct dint_eth *eth;
		struct dint_ipv4 *ip;

		if (!m || !(eth = (void *)rte_pktmbuf_append(m, sizeof(*eth) + sizeof(*ip) + k))) {
			rte_pktmbuf_free(m);
			rte_pktmbuf_free_bulk(frames, n);
			return false;
		}
		memcpy(eth->dst, mac, DINT_ETH_ALEN);
		memcpy(eth->src, pt->mac, DINT_ETH_ALEN);
		eth->proto = dint_htons(DINT_ETH_P_IP);
		ip = (void *)(eth + 1);
		reply_ipv4(ip, id, (uint16_t)(sizeof(*ip) + k),
			   off == 0 && last ? DINT_IP_DF : (uint16_t)((last ? 0 : DINT_IP_MF) | off / 8), saddr,
			   daddr);
		memcpy(ip + 1, dgram + off, k);
		frames[n++] = m;
	}
	return send_frames(pt, frames, n);
}

/* A frame that is not simple, through the kernel's receive rules; takes m.
 * dgram holds the datagram being answered. */
static void serve_other(struct port *pt, struct rte_mbuf *m, struct counters *c)
{
	static __u8 dgram[65536];
	__u8 *data, *ip, mac[DINT_ETH_ALEN];
	const __u8 *udp;
	struct dint_eth *eth;
	unsigned int hlen, tot, ulen;
	uint32_t len, msg_len;
	__u32 saddr, daddr, reply_from;
	__u16 sport;
	struct dint_hdr *msg;
	bool control, sent;

	if (rte_pktmbuf_linearize(m) < 0 || rte_pktmbuf_data_len(m) < sizeof(*eth))
		goto quiet;
	data = rte_pktmbuf_mtod(m, __u8 *);
	eth = (void *)data;
	if (eth->proto == dint_htons(DINT_ETH_P_8021Q)) {
		/* Linux takes an 802.1Q priority tag (VLAN 0) for no tag; any
		 * other VLAN has no device here: dropped */
		if (rte_pktmbuf_data_len(m) < sizeof(*eth) + 4 || (dint_ntohs(dint_ld16(data + 14)) & 0xFFF))
			goto dropped;
		memmove(data + 4, data, 2 * DINT_ETH_ALEN);
		data = (__u8 *)rte_pktmbuf_adj(m, 4);
		eth = (void *)data;
	}
	if (eth->proto != dint_htons(DINT_ETH_P_IP))
		goto quiet; /* not IPv4 (ARP, IPv6): not the server's */
	/* to this port's MAC or to a group (broadcast, multicast); another
	 * host's unicast MAC is PACKET_OTHERHOST to Linux, dropped */
	if (!(eth->dst[0] & 1) && memcmp(eth->dst, pt->mac, DINT_ETH_ALEN))
		goto dropped;
	ip = data + sizeof(*eth);
	hlen = net_rx_ipv4_header(ip, rte_pktmbuf_data_len(m) - sizeof(*eth), &tot);
	if (!hlen)
		goto dropped;
	rte_pktmbuf_trim(m, rte_pktmbuf_data_len(m) - sizeof(*eth) - tot); /* padding */
	saddr = ((struct dint_ipv4 *)ip)->saddr;
	daddr = ((struct dint_ipv4 *)ip)->daddr;
	if (!net_rx_route(&host, saddr, daddr) ||
	    (hlen > sizeof(struct dint_ipv4) && !net_rx_options_ok(ip + sizeof(struct dint_ipv4),
								   hlen - sizeof(struct dint_ipv4))))
		goto dropped;
	if (((struct dint_ipv4 *)ip)->frag_off & dint_htons(DINT_IP_MF | DINT_IP_OFFSET)) {
		m->l2_len = sizeof(*eth);
		m->l3_len = hlen;
		m = rte_ipv4_frag_reassemble_packet(frag_tbl, &death_row, m, rte_rdtsc(), (void *)ip);
		if (!m)
			return; /* held until the datagram is whole, or dropped */
		/* the first fragment's headers, the lengths of the whole */
		eth = rte_pktmbuf_mtod(m, struct dint_eth *);
		ip = rte_pktmbuf_mtod_offset(m, __u8 *, sizeof(*eth));
		hlen = (ip[0] & 0xF) * 4u;
		tot = dint_ntohs(((struct dint_ipv4 *)ip)->tot_len);
		if (tot < hlen || rte_pktmbuf_pkt_len(m) < sizeof(*eth) + tot)
			goto dropped;
	}
	if (((struct dint_ipv4 *)ip)->protocol != DINT_IPPROTO_UDP || tot - hlen < sizeof(struct dint_udp))
		goto dropped;
	/* the datagram, out of the (reassembled: chained) mbuf */
	len = tot - hlen;
	udp = rte_pktmbuf_read(m, sizeof(*eth) + hlen, len, dgram);
	if (!udp)
		goto dropped;
	if (udp != dgram)
		memcpy(dgram, udp, len);
	udp = dgram;
	ulen = (unsigned int)udp[4] << 8 | udp[5];
	/* to the dint port (another has no socket: the kernel would answer
	 * ICMP port unreachable); a UDP length longer than the IP payload is
	 * dropped, a shorter one is what counts (the rest is trimmed) */
	if (dint_ld16(udp + 2) != dint_htons(DINT_PORT) || ulen < sizeof(struct dint_udp) || ulen > len ||
	    !net_rx_udp_csum_ok(udp, ulen, saddr, daddr))
		goto dropped;
	/* it reaches the server, as it would a UDP socket */
	memcpy(mac, eth->src, DINT_ETH_ALEN);
	rte_pktmbuf_free(m);
	sport = dint_ld16(udp + 0);
	msg_len = ulen - sizeof(struct dint_udp);
	msg = (void *)(dgram + sizeof(struct dint_udp));
	/* a barrier request: answered, counted nowhere (as udp_server.h) */
	control = sport && msg_len <= DINT_DGRAM_MAX && dint_is_control(msg, msg_len);
	if (control) {
		barrier_answer(&server_barrier, msg, msg_len);
	} else {
		c->engine[DINT_STAT_RX]++;
		if (!sport || msg_len > DINT_DGRAM_MAX) { /* as the socket servers (udp_server.h) */
			c->engine[DINT_STAT_DROP]++;
			return;
		}
		if (!dint_reply_len(dint_process(msg, (__u8 *)msg + msg_len, msg_len), msg_len, c->engine)) {
			c->engine[DINT_STAT_DROP]++;
			return;
		}
	}
	/* the reply, from the address it was sent to if that is one of ours,
	 * else (a broadcast, the all-hosts group) from the port's */
	reply_from = net_rx_is_local(&host, daddr) ? daddr : pt->addr;
	((struct dint_udp *)dgram)->dest = sport;
	((struct dint_udp *)dgram)->source = dint_htons(DINT_PORT);
	((struct dint_udp *)dgram)->check = 0;
	((struct dint_udp *)dgram)->len = dint_htons((__u16)ulen);
	sent = send_datagram(pt, mac, reply_from, saddr, dgram, ulen);
	if (control)
		return;
	if (!sent) {
		c->engine[DINT_STAT_DROP]++;
		return;
	}
	c->engine[DINT_STAT_TX]++;
	if (msg->status != DINT_ST_OK)
		c->engine[DINT_STAT_ERR]++;
	return;
dropped:
	c->net_drop++;
quiet:
	rte_pktmbuf_free(m);
}

/* Whether a simple frame came to this port: to its MAC and address, from a
 * source that is none of the host's addresses. */
static inline bool simple_for_port(const struct port *pt, const struct dint_frame *f)
{
	return f->ip->daddr == pt->addr && !memcmp(f->eth->dst, pt->mac, DINT_ETH_ALEN) &&
	       !net_rx_is_local(&host, f->ip->saddr);
}

/* Answers one burst from one port; replies go out where they came in. */
static void serve_burst(struct port *pt, struct rte_mbuf **pkts, uint16_t n, struct counters *c)
{
	struct rte_mbuf *tx[BURST];
	bool err[BURST];
	uint16_t i, ntx = 0, sent = 0;
	int tries;

	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		void *data = rte_pktmbuf_mtod(m, void *);
		void *end = (char *)data + rte_pktmbuf_data_len(m);
		struct dint_frame f;
		__u32 pad;

		if (m->nb_segs != 1 || dint_simple_frame(data, end, &f) < 0 || !simple_for_port(pt, &f)) {
			serve_other(pt, m, c);
			continue;
		}
		if (dint_is_control(f.msg, f.msg_len)) { /* answered on its own, counted nowhere */
			barrier_answer(&server_barrier, f.msg, f.msg_len);
			pad = dint_frame_padding(&f, end);
			dint_reverse_frame(&f);
			if (pad)
				rte_pktmbuf_trim(m, pad);
			send_frames(pt, &m, 1);
			continue;
		}
		c->engine[DINT_STAT_RX]++;
		if (!dint_reply_len(dint_process(f.msg, end, f.msg_len), f.msg_len, c->engine)) {
			c->engine[DINT_STAT_DROP]++;
			rte_pktmbuf_free(m);
			continue;
		}
		err[ntx] = f.msg->status != DINT_ST_OK;
		pad = dint_frame_padding(&f, end);
		dint_reverse_frame(&f);
		if (pad)
			rte_pktmbuf_trim(m, pad);
		tx[ntx++] = m;
	}

	/* A full TX ring usually drains within a few kicks; after that the
	 * replies are dropped (counted so) rather than stall RX. */
	for (tries = 0; sent < ntx && tries < 8; tries++)
		sent += rte_eth_tx_burst(pt->id, 0, tx + sent, ntx - sent);
	c->engine[DINT_STAT_TX] += sent;
	c->engine[DINT_STAT_DROP] += ntx - sent;
	for (i = 0; i < sent; i++)
		c->engine[DINT_STAT_ERR] += err[i];
	if (sent < ntx)
		rte_pktmbuf_free_bulk(tx + sent, ntx - sent);
	rte_ip_frag_free_death_row(&death_row, 0);
}

/* A checkpoint (server_common.h), SIGUSR2's (epoch 0) or the barrier's of
 * epoch e (then marked taken once its files are written). */
static void checkpoint(struct backoff *b, struct counters *c, const struct store_opts *sopts, uint64_t e)
{
	uint64_t t0;

	c->sleeps = b->sleeps;
	print_counters(c);
	t0 = clock_ns(CLOCK_MONOTONIC);
	print_checkpoint(store_write_files_epoch(sopts, e), t0, e);
	if (e)
		barrier_done(&server_barrier, e);
}

/* The poll loop is the only thread: a checkpoint runs between two bursts,
 * so the store holds still while its files are written; the barrier's is
 * taken right after the burst whose request completed it. */
static void poll_loop(int nports, struct backoff *b, struct counters *c,
		      const struct store_opts *sopts)
{
	struct rte_mbuf *pkts[BURST];
	uint64_t tsc_hz = rte_get_tsc_hz(), next_expiry = 0;
	/* the periodic stats line, timed by the TSC (cheaper than a clock read) */
	uint64_t stats_every = stats_interval_ns() / 1000000u * tsc_hz / 1000u;
	uint64_t next_stats = rte_rdtsc() + stats_every;
	uint16_t n;
	bool busy;
	int i;

	while (!should_stop()) {
		bool due = stats_every && rte_rdtsc() >= next_stats, printed = false;
		uint64_t e;

		/* a checkpoint prints the stats line of its moment, which is
		 * also the one asked for or due */
		if (take_checkpoint_request()) {
			checkpoint(b, c, sopts, 0);
			printed = true;
		}
		if ((e = barrier_pending(&server_barrier))) {
			checkpoint(b, c, sopts, e);
			printed = true;
		}
		if ((take_stats_request() || due) && !printed) {
			c->sleeps = b->sleeps;
			print_counters(c);
		}
		if (due)
			next_stats = rte_rdtsc() + stats_every;
		busy = false;
		for (i = 0; i < nports; i++) {
			n = rte_eth_rx_burst(ports[i].id, 0, pkts, BURST);
			if (n) {
				busy = true;
				serve_burst(&ports[i], pkts, n, c);
			}
		}
		if (busy) {
			backoff_busy(b);
			continue;
		}
		/* incomplete datagrams past their time, when idle */
		if (rte_rdtsc() >= next_expiry) {
			rte_ip_frag_table_del_expired_entries(frag_tbl, &death_row, rte_rdtsc());
			rte_ip_frag_free_death_row(&death_row, 0);
			next_expiry = rte_rdtsc() + tsc_hz;
		}
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
	int naddrs;
	__u32 addrs[MAX_PORTS];  /* --addr, in port order (network order) */
	unsigned int prefix[MAX_PORTS];
};

/* "A.B.C.D" or "A.B.C.D/LEN": the address and its prefix length (32 if none). */
static int parse_addr(const char *arg, __u32 *addr, unsigned int *prefix)
{
	char buf[32], *slash;
	unsigned long len = 32;
	struct in_addr a;

	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = 0;
		if (parse_uint(slash + 1, 0, 32, &len) < 0)
			return -1;
	}
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*addr = a.s_addr;
	*prefix = (unsigned int)len;
	return 0;
}

static bool take_option(int opt, const char *arg, void *ctx)
{
	struct app_opts *o = ctx;

	switch (opt) {
	case 'a':
		if (o->naddrs == MAX_PORTS)
			usage_error(USAGE, "more than %d --addr", MAX_PORTS);
		if (parse_addr(arg, &o->addrs[o->naddrs], &o->prefix[o->naddrs]) < 0)
			usage_error(USAGE, "bad --addr '%s' (A.B.C.D or A.B.C.D/LEN)", arg);
		o->naddrs++;
		return true;
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
	return sample_parse_opt(opt, arg, USAGE) || store_parse_opt(opt, arg, USAGE, o->store);
}

/* Our options come after "--"; the rest is EAL's. Parsed before EAL starts
 * so a typo costs no hugepage or device setup. */
static void parse_app_args(int argc, char **argv, struct backoff *b, struct app_opts *o)
{
	static const struct option opts[] = {
		{ "addr", required_argument, NULL, 'a' },
		{ "idle-poll-us", required_argument, NULL, 's' },
		{ "idle-sleep-max-us", required_argument, NULL, 'm' },
		SAMPLE_OPTIONS,
		STORE_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};

	o->poll_us = o->sleep_max_us = 200;
	optind = 1;
	parse_args(argc, argv, opts, USAGE, take_option, o);
	if (!o->naddrs)
		usage_error(USAGE, "--addr is required (each port's IPv4 address)");
	b->poll_ns = (uint64_t)o->poll_us * 1000;
	b->sleep_max_us = (unsigned int)o->sleep_max_us;
	b->sleep_us = 1;
}

/* The host's addresses and their directed broadcasts, from --addr. */
static void set_host_addresses(const struct app_opts *o)
{
	for (int i = 0; i < o->naddrs; i++) {
		__u32 a = o->addrs[i], mask;

		if (!net_rx_is_local(&host, a))
			host_addrs[host.naddrs++] = a;
		if (o->prefix[i] >= 31)
			continue;
		mask = o->prefix[i] ? dint_htonl(0xFFFFFFFFu << (32 - o->prefix[i])) : 0;
		host_bcasts[host.nbcasts++] = a | ~mask;
	}
}

int main(int argc, char **argv)
{
	static struct counters counters;
	struct backoff backoff = { 0 };
	struct store_opts sopts = STORE_OPTS_DEFAULT;
	struct app_opts opts = { .store = &sopts };
	uint16_t port;
	int eal_argc, nports = 0, nstarted = 0, i, ret;
	unsigned int nb_mbufs;

	for (eal_argc = 1; eal_argc < argc; eal_argc++) {
		if (!strcmp(argv[eal_argc], "--"))
			break;
	}
	if (eal_argc < argc) {
		/* argv[eal_argc] becomes argv[0] of the app's own parse. */
		argv[eal_argc] = argv[0];
		parse_app_args(argc - eal_argc, argv + eal_argc, &backoff, &opts);
	} else {
		parse_app_args(1, argv, &backoff, &opts);
	}
	set_host_addresses(&opts);

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

	RTE_ETH_FOREACH_DEV(port) {
		if (nports == MAX_PORTS) {
			report_error("more than %d DPDK ports", MAX_PORTS);
			rte_eal_cleanup();
			return EXIT_SETUP;
		}
		ports[nports++].id = port;
	}
	if (!nports) {
		report_error("no DPDK ports: none given or all failed to probe"
			     " (e.g. --vdev net_af_xdp0,iface=IF; --log-level=8 tells why)");
		rte_eal_cleanup();
		return EXIT_SETUP;
	}
	if (opts.naddrs != nports) {
		report_error("%d --addr for %d port(s): give each port its IPv4 address", opts.naddrs, nports);
		rte_eal_cleanup();
		return EXIT_SETUP;
	}

	/* Room for what the rings hold, the fragments being reassembled and a
	 * fragmented reply. */
	nb_mbufs = nports * (NB_RXD + NB_TXD + FILL_RESERVE + 2 * BURST) + 2 * POOL_CACHE +
		   FRAG_ENTRIES * RTE_LIBRTE_IP_FRAG_MAX_FRAG + RTE_IP_FRAG_DEATH_ROW_MBUF_LEN + MAX_REPLY_FRAGS;
	pool = rte_pktmbuf_pool_create("dint_pool", nb_mbufs, POOL_CACHE, 0,
				       RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
	frag_tbl = rte_ip_frag_table_create(FRAG_BUCKETS, FRAG_BUCKET_ENTRIES, FRAG_ENTRIES,
					    rte_get_tsc_hz() * FRAG_TIMEOUT_S, rte_socket_id());
	if (!pool || !frag_tbl) {
		report_error("creating a pool of %u mbufs and a reassembly table failed: %s", nb_mbufs,
			     rte_strerror(rte_errno));
		ret = EXIT_SETUP;
		goto out;
	}
	for (i = 0; i < nports; i++) {
		struct rte_ether_addr mac;

		if (setup_port(ports[i].id, pool) < 0) {
			ret = EXIT_SETUP;
			goto out;
		}
		nstarted++;
		if (rte_eth_macaddr_get(ports[i].id, &mac) || rte_eth_dev_get_mtu(ports[i].id, &ports[i].mtu)) {
			report_error("port %u: cannot read its MAC address and MTU", ports[i].id);
			ret = EXIT_SETUP;
			goto out;
		}
		memcpy(ports[i].mac, mac.addr_bytes, DINT_ETH_ALEN);
		ports[i].addr = opts.addrs[i];
	}

	/* A --vdev that fails to probe does not fail EAL init, so say what
	 * is actually served. */
	fprintf(stderr, "%s: serving %d port(s):", program_invocation_short_name, nports);
	for (i = 0; i < nports; i++) {
		char name[RTE_ETH_NAME_MAX_LEN], addr[INET_ADDRSTRLEN];

		if (rte_eth_dev_get_name_by_port(ports[i].id, name))
			strcpy(name, "?");
		inet_ntop(AF_INET, &ports[i].addr, addr, sizeof(addr));
		fprintf(stderr, " %s (%s, MTU %u)", name, addr, ports[i].mtu);
	}
	fputc('\n', stderr);

	print_ready();
	poll_loop(nports, &backoff, &counters, &sopts);
	ret = 0;
out:
	for (i = 0; i < nports; i++) {
		if (i < nstarted)
			rte_eth_dev_stop(ports[i].id);
		rte_eth_dev_close(ports[i].id);
	}
	if (frag_tbl)
		rte_ip_frag_table_destroy(frag_tbl);
	rte_ip_frag_free_death_row(&death_row, 0);
	rte_mempool_free(pool);
	rte_eal_cleanup();
	/* Only for a server that ran, so a failed start leaves no file. */
	if (!ret) {
		if (store_stop(&sopts) < 0)
			ret = EXIT_SETUP;
		counters.sleeps = backoff.sleeps;
		print_counters(&counters);
	} else {
		store_free();
	}
	return ret;
}
