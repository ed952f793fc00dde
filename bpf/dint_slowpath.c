/* dint's user-space slow path: the rare work the XDP program passes up.
 *
 * It holds the full store (userspace/store.h: every key, with the initial
 * data) and, at start, builds the in-kernel cache's image from it: each key
 * goes into its bucket while the bucket has a free slot, the others are
 * remembered in their bucket's bloom filter; the image is written straight
 * into the map through its memory mapping. Then it serves the datagrams the XDP program passes
 * up (XDP_PASS, through the kernel's UDP stack to this socket):
 *
 *   - a request whose key may live here: the record is taken into the cache
 *     (BPF_PROG_TEST_RUN of dint_fill, which evicts a victim if the bucket is
 *     full and hands it back to be written back here), then the request runs
 *     through the XDP program itself (BPF_PROG_TEST_RUN of dint_xdp), so the
 *     engine answers it on the cached record exactly as on a hit, and the
 *     reply goes back through this socket. A key the store does not hold is
 *     not taken in: the frame tells the program so, and the engine answers
 *     it as absent (see serve_request);
 *   - a write-through reply (the ablation): the record appended to it is
 *     stored and the reply sent.
 *
 * Only this process evicts, one request at a time, so a key it has filled
 * stays cached until it fills another key into the same bucket. Records move
 * with their gen (struct dint_rec), and a copy replaces the stored one only
 * if it is newer, so write-backs and write-through copies may arrive in any
 * order. At stop every cached record is written back and --dump written.
 *
 *   dint_slowpath --cache-fd FD --xdp-fd FD --fill-fd FD [--port P] [--cpus CPU]
 *                 [--capacity N] [--load FILE] [--dump FILE]
 *
 * The fds are the cache map and the two programs, inherited from
 * harness/dintd.py, which loaded them. Prints "ready" once the cache is
 * filled, and "stats {json}" (its counters, when, and its CPU time so far:
 * server_common.h) on SIGUSR1, which dintd sends for each of its own stats
 * lines, and at stop. */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "store.h"
#include "udp_server.h"
#include "dint_net.h"
#include "dint_cache.h"

#define USAGE "dint_slowpath --cache-fd FD --xdp-fd FD --fill-fd FD [--port P] [--cpus CPU] " \
	      STORE_USAGE

#define FRAME_HDR (sizeof(struct dint_eth) + sizeof(struct dint_ipv4) + sizeof(struct dint_udp))
/* Room for a frame and what XDP may append to it. */
#define FRAME_MAX (FRAME_HDR + UDP_SLOT_DATA + sizeof(struct dint_wt) + 256)

/* The engine's four counters (enum dint_stat: datagrams received, replies
 * sent, datagrams not answered, replies with a status other than OK), then
 * the slow path's own. */
enum sp_stat {
	SP_FILL = DINT_STAT_MAX, /* records taken into the cache */
	SP_EVICT,                /* ... that evicted one */
	SP_WRITEBACK,            /* evicted or written-through records stored (newer than the store's) */
	SP_WT,                   /* write-through replies relayed */
	SP_REPASS,               /* requests that missed again after their fill (retried) */
	SP_FULL,                 /* requests refused: the store had no room for a victim */
	SP_LOADED,               /* records loaded at start */
	SP_CACHED,               /* ... of which the cache took in (the rest overflowed full buckets) */
	SP_MAX,
};
static const char *const sp_names[SP_MAX] = {
	"rx", "tx", "drop", "err", "stale", "fill", "evict", "writeback", "wt", "repass", "full", "loaded", "cached",
};
static uint64_t stats[SP_MAX];

static int cache_fd = -1, xdp_fd = -1, fill_fd = -1;
static __u32 nbuckets;

static int sys_bpf(int cmd, union bpf_attr *attr)
{
	return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* Runs prog on data once; the program's verdict, or -1 (errno set). */
static int test_run(int prog, void *in, __u32 in_len, void *out, __u32 *out_len)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.test.prog_fd = prog;
	a.test.data_in = (uintptr_t)in;
	a.test.data_size_in = in_len;
	a.test.data_out = (uintptr_t)out;
	a.test.data_size_out = *out_len;
	a.test.repeat = 1;
	if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0)
		return -1;
	*out_len = a.test.data_size_out;
	return (int)a.test.retval;
}

/* Stores a record that left the cache if it is newer than the store's copy
 * (a record the store never had and nobody changed is not kept). 1 if
 * stored, 0 if not needed, -1 if the store is full. */
static int writeback(__u8 table, __u64 key, const struct dint_rec *r)
{
	struct store_entry *e = store_get(table, key, 0);

	if (e ? r->gen <= e->rec.gen : r->gen == 0)
		return 0;
	if (!e)
		e = store_get(table, key, 1);
	if (!e)
		return -1;
	e->rec = *r;
	stats[SP_WRITEBACK]++;
	return 1;
}

/* Takes (table, key) into the cache with its stored record rec; with rec
 * 0 (the store has none), takes nothing in but leaves the key's bucket a
 * free slot, for the engine to create the key's record in. -1 with errno if
 * the kernel refused. */
static int fill(__u8 table, __u64 key, const struct dint_rec *rec)
{
	struct dint_fill m;
	__u32 len = sizeof(m);
	int v;

	for (int tries = 0;; tries++) {
		memset(&m, 0, sizeof(m));
		m.magic = DINT_FILL_MAGIC;
		m.table = table;
		m.key = key;
		if (rec)
			m.rec = *rec;
		else
			m.room = 1;
		len = sizeof(m);
		v = test_run(fill_fd, &m, sizeof(m), &m, &len);
		if (v < 0)
			return -1;
		if (v != XDP_TX || len != sizeof(m)) {
			errno = EPROTO;
			return -1;
		}
		if (m.result != DINT_FILL_BUSY)
			break;
		if (tries == 1000) {
			errno = EBUSY;
			return -1;
		}
		sched_yield();
	}
	if (m.result == DINT_FILL_PRESENT)
		return 0;
	if (rec)
		stats[SP_FILL]++;
	if (m.result == DINT_FILL_EVICTED) {
		stats[SP_EVICT]++;
		/* the caller made sure the store has room for one more */
		writeback(m.vid.table, m.vid.key, &m.vrec);
	}
	return 0;
}

/* A write-through reply: msg[0, len) is the reply followed by struct
 * dint_wt. Stores the record and returns the reply's length, or 0 if this
 * is not one. */
static __u32 take_write_through(const __u8 *msg, __u32 len)
{
	const struct dint_hdr *h = (const void *)msg;
	const struct dint_wt *wt;
	__u32 n;

	if (len < DINT_HDR_LEN + sizeof(*wt) || h->magic != dint_htons(DINT_MAGIC) ||
	    h->status == DINT_ST_REQUEST)
		return 0;
	n = DINT_HDR_LEN + dint_ntohs(h->val_len);
	if (n + sizeof(*wt) != len)
		return 0;
	wt = (const void *)(msg + n);
	if (wt->magic != DINT_WT_MAGIC || wt->table >= DINT_NTABLES)
		return 0;
	if (wt->found)
		writeback(wt->table, wt->key, &wt->rec);
	stats[SP_WT]++;
	return n;
}

/* Wraps a datagram's payload in the frame the XDP program expects; sport
 * says what the slow path knows of the key (DINT_SLOW_FILLED or
 * DINT_SLOW_ABSENT, dint_cache.h). */
static void make_frame(__u8 *frame, const __u8 *msg, __u32 len, unsigned int port, __u16 sport)
{
	struct dint_eth *eth = (void *)frame;
	struct dint_ipv4 *ip = (void *)(eth + 1);
	struct dint_udp *udp = (void *)(ip + 1);

	const __u8 mac[6] = DINT_SLOW_MAC;

	memset(frame, 0, FRAME_HDR);
	memcpy(eth->src, mac, sizeof(mac));
	eth->proto = dint_htons(DINT_ETH_P_IP);
	ip->ver_ihl = 0x45;
	ip->ttl = 64;
	ip->protocol = DINT_IPPROTO_UDP;
	ip->tot_len = dint_htons(sizeof(*ip) + sizeof(*udp) + len);
	udp->source = dint_htons(sport);
	udp->dest = dint_htons(port);
	udp->len = dint_htons(sizeof(*udp) + len);
	memcpy(frame + FRAME_HDR, msg, len);
}

/* Answers one datagram the kernel handed this socket (a request the XDP
 * program passed up, or one it left to the kernel: IP options, fragments,
 * broadcasts), in place: returns the reply's length in buf, or 0 to send
 * nothing. A datagram is checked before anything is taken into the cache
 * for it: one the engine drops, refuses or answers without a record (an
 * echo) is dealt with here, as the engine would.
 *
 * A key the store holds is taken into the cache. One it does not hold has
 * no record anywhere unless the cache has one (only this process fills or
 * evicts, and the XDP program passes up every request on a key the bloom
 * filter may say lives here, a creating one too): nothing is taken in for
 * it, the frame says so (DINT_SLOW_ABSENT) and the engine answers the key
 * as absent, exactly as the baselines' store does; for an operation that
 * creates a record, its bucket is first left a free slot to make it in. */
static __u32 serve_request(__u8 *buf, __u32 len, unsigned int port)
{
	static __u8 frame[FRAME_MAX], out[FRAME_MAX];
	struct dint_hdr *h = (void *)buf;
	int check = dint_check(h, buf + len, len);

	if (check == DINT_CHECK_DROP)
		return 0;
	if (check != DINT_ST_REQUEST) {
		h->status = (__u8)check;
		return len;
	}

	for (int attempt = 0; attempt < 2; attempt++) {
		struct store_entry *e = store_get(h->table, dint_ntohll(h->key), 0);
		__u32 out_len = sizeof(out), n;
		const struct dint_udp *udp;
		int v;

		if (e || dint_op_creates(h->op)) {
			/* A victim not in the store yet needs room there. */
			if (store.nrecs >= store.cap) {
				stats[SP_FULL]++;
				h->status = DINT_ST_FULL;
				return len;
			}
			if (fill(h->table, dint_ntohll(h->key), e ? &e->rec : NULL) < 0) {
				report_error("dint_fill failed: %s", strerror(errno));
				return 0;
			}
		}
		make_frame(frame, buf, len, port, e ? DINT_SLOW_FILLED : DINT_SLOW_ABSENT);
		v = test_run(xdp_fd, frame, FRAME_HDR + len, out, &out_len);
		if (v < 0) {
			report_error("running dint_xdp failed: %s", strerror(errno));
			return 0;
		}
		if (v == XDP_DROP) { /* it parsed as a request: a stale copy (dint_process) */
			stats[DINT_STAT_STALE]++;
			return 0;
		}
		if (v == XDP_ABORTED || out_len < FRAME_HDR)
			return 0;
		udp = (const void *)(out + sizeof(struct dint_eth) + sizeof(struct dint_ipv4));
		n = dint_ntohs(udp->len);
		if (n < sizeof(*udp) || FRAME_HDR + n - sizeof(*udp) > out_len)
			return 0;
		n -= sizeof(*udp);
		if (v == XDP_TX) {
			memcpy(buf, out + FRAME_HDR, n);
			return n;
		}
		/* XDP_PASS: write-through, or a miss after all */
		if (take_write_through(out + FRAME_HDR, n)) {
			n -= sizeof(struct dint_wt);
			memcpy(buf, out + FRAME_HDR, n);
			return n;
		}
		stats[SP_REPASS]++;
	}
	return 0;
}

/* ---- the cache image ---- */

static int map_info(int fd, struct bpf_map_info *info)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	memset(info, 0, sizeof(*info));
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(*info);
	a.info.info = (uintptr_t)info;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a);
}

/* The cache map, mapped into this process (it is memory-mappable,
 * bpf/dint_xdp.c), so that the image is written, and read back, in place:
 * no copy of the whole cache in this process's memory. */
static struct dint_bucket *cache_map;

/* Every stored key into its bucket while it has room; the rest into the
 * bucket's bloom filter. Written straight into the map: the program is not
 * attached yet, and the map is zeroed when made. */
static int build_cache(void)
{
	__u64 cached = 0;

	for (__u64 i = 0; i < store.nrecs; i++) {
		const struct store_id *id = &store.ids[i];
		__u64 h = dint_hash(id->table, id->key);
		struct dint_bucket *b = &cache_map[dint_cache_bucket(h, nbuckets)];
		int s = dint_cache_free_slot(b);

		if (s < 0) {
			b->bloom |= dint_bloom_bits(h);
			continue;
		}
		dint_cache_set(b, s, id->table, id->key);
		b->slot[s].rec = store.recs[i].rec;
		cached++;
	}
	stats[SP_LOADED] = store.nrecs;
	stats[SP_CACHED] = cached;
	fprintf(stderr, "dint_slowpath: %llu of %llu records cached in %u buckets of %d slots\n",
		(unsigned long long)cached, (unsigned long long)store.nrecs, nbuckets,
		DINT_CACHE_SLOTS);
	return 0;
}

/* Every cached record back into the store: at stop (XDP detached), and at
 * a checkpoint (no request in flight). */
static int drain_cache(void)
{
	for (__u32 i = 0; i < nbuckets; i++) {
		const struct dint_bucket *b = &cache_map[i];

		for (int s = 0; s < DINT_CACHE_SLOTS; s++)
			if (b->used[s] && writeback(b->table[s], b->key[s], &b->slot[s].rec) < 0) {
				report_error("the store is full (--capacity %llu): "
					     "cached records not written back",
					     (unsigned long long)store.cap);
				return -1;
			}
	}
	return 0;
}

/* ---- serving ---- */

static void print_sp_stats(void);

/* A datagram the XDP program passed up: a write-through reply to relay,
 * or a request to answer. */
static __u32 answer(void *port, __u8 *buf, __u32 len)
{
	__u32 n = take_write_through(buf, len);

	return n ? n : serve_request(buf, len, *(unsigned int *)port);
}

/* A checkpoint (SIGUSR2 from dintd, between two measured points): every
 * cached record copied back into the store (it stays cached), then --dump
 * written; this loop is the store's only user, and no request is in
 * flight, so the cache holds still while it is read.
 *
 * The checkpoint barrier's requests come here (the XDP program passes them
 * up uncounted, udp_server.h answers them). The arrival that completes an
 * epoch asks dintd for the checkpoint (SIGUSR2 to it), which reads the XDP
 * program's counters and drains the log rings first, then sends SIGUSR2
 * here: a checkpoint asked for while an epoch is complete is that epoch's
 * (the dump to <dump>.<e>, "epoch": e in the line, from which dintd learns
 * it and writes <log>.<e>); the epoch is marked taken once the dump is
 * written. */
static void barrier_ask_dintd(uint64_t e)
{
	(void)e;
	kill(getppid(), SIGUSR2);
}

static void checkpoint(const struct store_opts *so)
{
	struct store_opts files = *so;
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC), e = barrier_pending(&server_barrier);
	int ret = drain_cache();

	files.log = NULL; /* the log is the kernel's rings: dintd writes it */
	if (!ret)
		ret = store_write_files_epoch(&files, e);
	print_sp_stats();
	print_checkpoint(ret, t0, e);
	if (e)
		barrier_done(&server_barrier, e);
}

static int serve(int fd, unsigned int port, const struct store_opts *so)
{
	static struct udp_batch batch;

	udp_batch_init(&batch);
	while (!should_stop()) {
		if (take_checkpoint_request())
			checkpoint(so);
		if (take_stats_request())
			print_sp_stats();
		if (udp_serve_batch(fd, &batch, answer, &port, stats) < 0)
			return -1;
	}
	return 0;
}

static void print_sp_stats(void)
{
	fputs("stats {", stdout);
	for (int i = 0; i < SP_MAX; i++)
		printf("%s\"%s\": %" PRIu64, i ? ", " : "", sp_names[i], stats[i]);
	print_sample_fields(); /* its CPU time: dintd adds it to its own */
	fputs("}\n", stdout);
	fflush(stdout);
}

static int parse_fd(const char *arg, const char *name)
{
	unsigned long v;

	if (parse_uint(arg, 0, 1 << 20, &v) < 0)
		usage_error(USAGE, "bad %s '%s'", name, arg);
	return (int)v;
}

/* Takes the fds, or what every UDP server is told. */
static bool take_option(int opt, const char *arg, void *ctx)
{
	switch (opt) {
	case 'm':
		cache_fd = parse_fd(arg, "--cache-fd");
		return true;
	case 'x':
		xdp_fd = parse_fd(arg, "--xdp-fd");
		return true;
	case 'f':
		fill_fd = parse_fd(arg, "--fill-fd");
		return true;
	}
	return udp_server_parse_opt(opt, arg, USAGE, ctx);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cache-fd", required_argument, NULL, 'm' },
		{ "xdp-fd", required_argument, NULL, 'x' },
		{ "fill-fd", required_argument, NULL, 'f' },
		UDP_SERVER_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	struct udp_server_opts o = UDP_SERVER_OPTS_DEFAULT;
	struct bpf_map_info info;
	int fd, status = 0;

	o.store.log_capacity = 0; /* the log is the kernel's rings */
	parse_args(argc, argv, opts, USAGE, take_option, &o);
	if (cache_fd < 0 || xdp_fd < 0 || fill_fd < 0)
		usage_error(USAGE, "--cache-fd, --xdp-fd and --fill-fd are required");
	if (map_info(cache_fd, &info) < 0) {
		report_error("--cache-fd %d is not a BPF map: %s", cache_fd, strerror(errno));
		return EXIT_SETUP;
	}
	/* The two compilers must agree on the layout, or every record would
	 * be garbled on its way between kernel and user space. */
	if (info.value_size != sizeof(struct dint_bucket) || info.key_size != 4 ||
	    !info.max_entries) {
		report_error("the cache map (%u-byte buckets) does not match this build "
			     "(%zu-byte buckets)",
			     info.value_size, sizeof(struct dint_bucket));
		return EXIT_SETUP;
	}
	nbuckets = info.max_entries;
	cache_map = mmap(NULL, (size_t)nbuckets * sizeof(struct dint_bucket), PROT_READ | PROT_WRITE, MAP_SHARED,
			 cache_fd, 0);
	if (cache_map == MAP_FAILED) {
		report_error("mapping the cache map failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	if (o.ncpus) {
		cpu_set_t set;

		CPU_ZERO(&set);
		for (int i = 0; i < o.ncpus; i++)
			CPU_SET(o.cpus[i], &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0) {
			report_error("pinning to --cpus failed: %s", strerror(errno));
			return EXIT_SETUP;
		}
	}
	if (store_start(&o.store) < 0)
		return EXIT_SETUP;
	if (install_stop_handlers() < 0) {
		report_error("installing signal handlers failed: %s", strerror(errno));
		return EXIT_SETUP;
	}
	/* dintd starts this process in a process group of its own, so that a
	 * stop signalled to dintd's group reaches dintd alone and dintd stops
	 * this process after detaching XDP. Should dintd die first, this
	 * process is told to stop too. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
		report_error("PR_SET_PDEATHSIG failed: %s", strerror(errno));
		store_free();
		return EXIT_SETUP;
	}
	if (getppid() == 1) {
		report_error("dintd exited before this process started");
		store_free();
		return EXIT_SETUP;
	}
	server_barrier.complete = barrier_ask_dintd;
	fd = udp_socket(o.port, false, 4 << 20);
	if (fd < 0 || build_cache() < 0) {
		store_free();
		return EXIT_SETUP;
	}
	print_ready();
	if (serve(fd, o.port, &o.store) < 0)
		status = EXIT_SETUP;
	close(fd);
	/* dintd detaches XDP before stopping this process: the cache no
	 * longer changes. */
	if (drain_cache() < 0)
		status = EXIT_SETUP;
	o.store.log = NULL;
	if (store_stop(&o.store) < 0)
		status = EXIT_SETUP;
	print_sp_stats();
	return status;
}
