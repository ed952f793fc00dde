/* The dint data plane: answers dint requests in the driver with XDP_TX,
 * running the engine of dint_engine.h on records in the in-kernel cache of
 * dint_cache.h. A request whose key may live in user space passes up
 * (XDP_PASS) to the slow path, bpf/dint_slowpath.c, which takes the record
 * into the cache (the dint_fill program) and runs the request through this
 * program again. Loaded with bcc by harness/dintd.py; DINT_* constants come
 * as -D flags:
 *   DINT_CACHE_BUCKETS        buckets of DINT_CACHE_SLOTS slots
 *   DINT_CACHE_BLOOM          1: a miss whose bloom bits are clear is
 *                             answered here; 0 (ablation): every miss passes
 *   DINT_CACHE_WRITE_THROUGH  1 (ablation): every writing operation goes up
 *                             to the slow path with its record; 0: write-back
 *   DINT_CLIENTS              client slots of the exactly-once state
 *   DINT_IFACES               the served interfaces' addresses: a list of
 *                             DINT_IFACE(ifindex, mac16, mac32, addr), one per
 *                             IPv4 address of each, in memory order (the MAC's
 *                             first 2 and last 4 bytes, the address as loaded
 *                             from a packet)
 *   DINT_LOCAL_ADDRS          every IPv4 address of the host: DINT_ADDR(addr) ...
 *
 * A checkpoint barrier request (DINT_OP_CHECKPOINT) is passed up
 * uncounted: the slow path answers it (userspace/barrier.h).
 *
 * A frame is answered here only if it is simple (engine/dint_net.h: IPv4
 * without options, not a fragment, checksums and lengths right) and sent to
 * the MAC and an IPv4 address of the interface it came in on, from a source
 * that is not the host's own. Every other frame passes to the kernel, whose
 * stack drops it or hands it, reassembled and without options, to the slow
 * path's socket, so dint accepts exactly what the kernel server does. */
#include <uapi/linux/bpf.h>

/* For the shared headers: they are compiled into a BPF program. */
#define DINT_BPF 1

struct dint_bucket;
static __always_inline int cache_latch(struct dint_bucket *b);
static __always_inline void cache_unlatch(struct dint_bucket *b);
#define DINT_REF_T struct dint_bucket *
#define dint_latch(b) cache_latch(b)
#define dint_unlatch(b) cache_unlatch(b)

#include "dint_net.h"
#include "dint_cache.h"

#ifndef DINT_CACHE_BUCKETS
#define DINT_CACHE_BUCKETS 1024
#endif
#ifndef DINT_CACHE_BLOOM
#define DINT_CACHE_BLOOM 1
#endif
#ifndef DINT_CACHE_WRITE_THROUGH
#define DINT_CACHE_WRITE_THROUGH 0
#endif
#ifndef DINT_TSO
#define DINT_TSO 0
#endif
/* Log records per CPU; the user-space drain frees them. */
#ifndef DINT_LOG_CAPACITY
#define DINT_LOG_CAPACITY 16384
#endif
/* CPUs the log has a ring for (all possible ones; dintd passes the count). */
#ifndef DINT_NCPUS
#define DINT_NCPUS 2
#endif
#ifndef DINT_CLIENTS
#define DINT_CLIENTS 16
#endif
#ifndef DINT_IFACES
#define DINT_IFACES
#endif
#ifndef DINT_LOCAL_ADDRS
#define DINT_LOCAL_ADDRS
#endif
/* The loopback device's index in every namespace: BPF_PROG_TEST_RUN runs a
 * frame as if it came in there, and XDP is never attached to it. */
#define DINT_LOOPBACK_IFINDEX 1

BPF_PERCPU_ARRAY(dint_stats, u64, DINT_STAT_XDP_MAX);
/* Memory-mappable only so that the kernel puts its values on a page: every
 * bucket then starts a cache line (see dint_cache.h). */
BPF_F_TABLE("array", int, struct dint_bucket, dint_cache, DINT_CACHE_BUCKETS, BPF_F_MMAPABLE);
/* The log: CPU c's ring is entries [c * DINT_LOG_CAPACITY, (c + 1) * ...),
 * memory-mapped by the drain, which reads it without a syscall per record. */
BPF_F_TABLE("array", int, struct dint_log_rec, dint_log_ring, DINT_NCPUS * DINT_LOG_CAPACITY,
	    BPF_F_MMAPABLE);
/* Each CPU's log ring: records [tail, head) are waiting for the drain. Only
 * the programs (never nested on a CPU: XDP runs with bottom halves off, and
 * so does BPF_PROG_TEST_RUN since Linux 6.11) write head, only user space
 * writes tail. */
BPF_PERCPU_ARRAY(dint_log_head, u64, 1);
BPF_PERCPU_ARRAY(dint_log_tail, u64, 1);
/* Exactly once (dint_engine.h): a session per client slot, and each slot's
 * window of completion records. */
BPF_ARRAY(dint_sessions, struct dint_session, DINT_CLIENTS);
BPF_ARRAY(dint_done_recs, struct dint_done, DINT_CLIENTS * DINT_WINDOW);
/* 1 while this CPU runs a frame of the slow path's that says its key is in
 * no store (DINT_SLOW_ABSENT, dint_cache.h); 0 otherwise, and always for
 * the wire's frames (the programs never nest on a CPU). */
BPF_PERCPU_ARRAY(dint_slow_absent, u32, 1);

static __always_inline void count(int stat)
{
	u64 *v = dint_stats.lookup(&stat);
	if (v)
		*v += 1;
}

/* The bucket latch, as DINT has it: a compare-and-swap try-lock, retried a
 * bounded number of times; still busy, the request is answered RETRY. A
 * holder keeps it for a few dozen instructions with bottom halves off (the
 * slow path's test runs too), so it is rarely seen busy for long. On this
 * path bpf_spin_lock cost about twice as much (it also saves and restores
 * the interrupt flag, and is a helper call each way). */
#ifndef DINT_LATCH_TRIES
#define DINT_LATCH_TRIES 64
#endif

static __always_inline int latch(__u64 *word)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < DINT_LATCH_TRIES; i++)
		if (__sync_val_compare_and_swap(word, 0, 1) == 0)
			return 0;
	count(DINT_STAT_BUSY);
	return -1;
}

/* Freeing the latch needs release order: every access made under it done
 * before it is seen free. x86 keeps stores in order and never moves a store
 * before an earlier load, so there a plain store after a compiler barrier
 * is enough (the JIT emits a plain mov); elsewhere, an atomic exchange (a
 * full barrier). dintd defines DINT_TSO on x86-64. */
static __always_inline void unlatch(__u64 *word)
{
#if DINT_TSO
	asm volatile("" ::: "memory");
	*(volatile __u64 *)word = 0;
#else
	__sync_lock_test_and_set(word, 0);
#endif
}

/* A bucket's latch, and (dint_engine.h) a completion record's. */
static __always_inline int cache_latch(struct dint_bucket *b)
{
	return latch(&b->latch);
}

static __always_inline void cache_unlatch(struct dint_bucket *b)
{
	unlatch(&b->latch);
}

static __always_inline int dint_done_latch(struct dint_done *d)
{
	return latch(&d->latch);
}

static __always_inline void dint_done_unlatch(struct dint_done *d)
{
	unlatch(&d->latch);
}

static __always_inline struct dint_bucket *bucket_of(__u64 h)
{
	int i = dint_cache_bucket(h, DINT_CACHE_BUCKETS);
	return dint_cache.lookup(&i);
}

static __always_inline struct dint_bucket *dint_ref(__u8 table, __u64 key, int create)
{
	return bucket_of(dint_hash(table, key));
}

static __always_inline void set_slow_absent(u32 v)
{
	int zero = 0;
	u32 *a = dint_slow_absent.lookup(&zero);

	if (a)
		*a = v;
}

static __always_inline int slow_absent(void)
{
	int zero = 0;
	u32 *a = dint_slow_absent.lookup(&zero);

	return a && *a;
}

static __always_inline struct dint_rec *dint_rec(struct dint_bucket *b, __u8 table, __u64 key,
						 int create, int *where)
{
	int i = dint_cache_find(b, table, key), may, absent;

	if (i >= 0)
		return &b->slot[i & (DINT_CACHE_SLOTS - 1)].rec;
	*where = DINT_ELSEWHERE;
	may = !DINT_CACHE_BLOOM || dint_bloom_may_hold(b, dint_hash(table, key));
	absent = slow_absent();
	if (may && !absent)
		return 0; /* maybe in the slow path's store */
	/* in no store at all: the filter rules it out (a frame from the wire:
	 * the slow path's frames of a key it holds hit), or the slow path,
	 * which runs this frame, has no record of it although the filter may
	 * have said so (a false positive) */
	if (!absent)
		count(DINT_STAT_BLOOM_OUT);
	else if (DINT_CACHE_BLOOM && may)
		count(DINT_STAT_BLOOM_FP);
	*where = DINT_ABSENT;
	if (!create)
		return 0;
	i = dint_cache_free_slot(b);
	if (i < 0) {
		*where = DINT_ELSEWHERE; /* the slow path makes room */
		return 0;
	}
	i &= DINT_CACHE_SLOTS - 1;
	dint_cache_set(b, i, table, key);
	__builtin_memset(&b->slot[i].rec, 0, sizeof(b->slot[i].rec));
	return &b->slot[i].rec;
}

/* A client's slot: its low 16 bits (the harness numbers its clients 1..N
 * there), so the clients of a run never share one (as userspace/store.h). */
static __always_inline __u32 client_slot(__u32 client)
{
	return (client & 0xFFFF) % DINT_CLIENTS;
}

static __always_inline struct dint_session *dint_session(__u32 client)
{
	int i = client_slot(client);
	return dint_sessions.lookup(&i);
}

static __always_inline struct dint_done *dint_done(__u32 client, __u32 seq)
{
	int i = client_slot(client) * DINT_WINDOW + (seq & (DINT_WINDOW - 1));
	return dint_done_recs.lookup(&i);
}

static __always_inline int dint_log_room(void)
{
	int zero = 0;
	u64 *head = dint_log_head.lookup(&zero), *tail = dint_log_tail.lookup(&zero);
	return head && tail && *head - *tail < DINT_LOG_CAPACITY;
}

static __always_inline int dint_log_append(const struct dint_hdr *m, const __u8 *val, const void *end)
{
	int zero = 0;
	u64 *head = dint_log_head.lookup(&zero), *tail = dint_log_tail.lookup(&zero);
	if (!head || !tail || *head - *tail >= DINT_LOG_CAPACITY)
		return -1;
	__u32 cpu = bpf_get_smp_processor_id();
	if (cpu >= DINT_NCPUS)
		return -1;
	int slot = cpu * DINT_LOG_CAPACITY + *head % DINT_LOG_CAPACITY;
	struct dint_log_rec *lr = dint_log_ring.lookup(&slot);
	if (!lr)
		return -1;
	lr->txn = dint_ntohll(m->txn);
	lr->key = dint_ntohll(m->key);
	lr->ver = dint_ntohl(m->ver);
	lr->table = m->table;
	dint_copy(lr->value, val, val, m->table, end);
	/* per-CPU, and the programs do not nest: no other writer. The drain
	 * reads records below head only. */
	*head += 1;
	return 0;
}

#if DINT_CACHE_WRITE_THROUGH
/* The IPv4 header checksum, over its ten 16-bit words. */
static __always_inline __u16 ip_checksum(const struct dint_ipv4 *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

	for (int i = 0; i < 10; i++)
		sum += i == 5 ? 0 : w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Whether the reply is to an operation that may have changed a record. */
static __always_inline int wrote(const struct dint_hdr *m)
{
	return m->op != DINT_OP_ECHO && m->op < DINT_OP_MAX && dint_op_writes(m->op) &&
	       m->table < DINT_NTABLES && m->status != DINT_ST_BAD_VERSION &&
	       m->status != DINT_ST_BAD_LENGTH && m->status != DINT_ST_UNKNOWN_OP;
}

/* Appends the record of the reply's key (struct dint_wt) to the datagram,
 * for the slow path. -1 if the frame has no room for it. */
static __always_inline int write_through(struct xdp_md *ctx)
{
	struct dint_frame f;
	struct dint_bucket *b;
	struct dint_wt *wt;
	void *data, *end;
	__u32 len;
	int i;

	if (bpf_xdp_adjust_tail(ctx, sizeof(struct dint_wt)))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (dint_parse_frame(data, end, &f) < 0)
		return -1; /* cannot be: it parsed before */
	len = f.msg_len;
	if ((void *)(f.msg + 1) > end || len > DINT_HDR_LEN + DINT_VAL_MAX)
		return -1;
	wt = (void *)((__u8 *)f.msg + len);
	if ((void *)(wt + 1) > end)
		return -1;
	f.udp->len = dint_htons(sizeof(struct dint_udp) + len + sizeof(*wt));
	f.udp->check = 0;
	f.ip->tot_len = dint_htons(sizeof(struct dint_ipv4) + sizeof(struct dint_udp) + len + sizeof(*wt));
	f.ip->check = ip_checksum(f.ip);
	wt->magic = DINT_WT_MAGIC;
	wt->table = f.msg->table;
	wt->key = dint_ntohll(f.msg->key);
	wt->found = 0;
	b = bucket_of(dint_hash(wt->table, wt->key));
	if (!b || cache_latch(b))
		return 0; /* without the record: its eviction will carry it */
	i = dint_cache_find(b, wt->table, wt->key);
	if (i >= 0) {
		wt->rec = b->slot[i & (DINT_CACHE_SLOTS - 1)].rec;
		wt->found = 1;
	}
	cache_unlatch(b);
	return 0;
}
#endif

/* Whether a simple frame came to this host: to the MAC and an IPv4 address
 * of the interface it came in on, from a source that is none of the host's
 * addresses (which Linux takes for a martian). */
static __always_inline int for_us(__u32 ifindex, const struct dint_frame *f)
{
	__u16 mac16 = dint_ld16(f->eth->dst);
	__u32 mac32 = dint_ld32(f->eth->dst + 2);
	__u32 saddr = dint_ld32(&f->ip->saddr), daddr = dint_ld32(&f->ip->daddr);

#define DINT_ADDR(a) if (saddr == (a)) return 0;
	DINT_LOCAL_ADDRS
#undef DINT_ADDR
#define DINT_IFACE(i, m16, m32, a) if (ifindex == (i) && mac16 == (m16) && mac32 == (m32) && daddr == (a)) return 1;
	DINT_IFACES
#undef DINT_IFACE
	return 0;
}

/* A frame the slow path runs through this program (never one from a NIC). */
static __always_inline int from_slowpath(struct xdp_md *ctx, void *data, void *end)
{
	struct dint_eth *eth = data;

	return ctx->ingress_ifindex == DINT_LOOPBACK_IFINDEX && (void *)(eth + 1) <= end &&
	       dint_from_slowpath(eth->src);
}

/* Leaves a frame to the kernel, counting it if it is IPv4 UDP to the dint
 * port (a first fragment too) or a later fragment, which may be. */
static __always_inline int to_kernel(void *data, void *end)
{
	struct dint_eth *eth = data;
	struct dint_ipv4 *ip = (void *)(eth + 1);
	struct dint_udp *udp;

	if ((void *)(ip + 1) > end || eth->proto != dint_htons(DINT_ETH_P_IP))
		return XDP_PASS;
	if (ip->frag_off & dint_htons(DINT_IP_OFFSET)) {
		count(DINT_STAT_KERNEL);
		return XDP_PASS;
	}
	udp = (void *)((__u8 *)ip + (ip->ver_ihl & 0xF) * 4);
	if ((void *)(udp + 1) <= end && ip->protocol == DINT_IPPROTO_UDP &&
	    udp->dest == dint_htons(DINT_PORT))
		count(DINT_STAT_KERNEL);
	return XDP_PASS;
}

int dint_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct dint_frame f;
	int verdict, wire, absent;
	long pad;

	wire = !from_slowpath(ctx, data, end);
	if (wire && (dint_simple_frame(data, end, &f) < 0 || !for_us(ctx->ingress_ifindex, &f)))
		return to_kernel(data, end);
	/* The frame again, with pointers loaded afresh: the checksum's loop
	 * leaves the old ones knowing more or less of the packet on each way
	 * out of it, and the verifier would go through the engine once for
	 * each; the new ones know the same on all. */
	data = (void *)(long)*(volatile __u32 *)&ctx->data;
	end = (void *)(long)*(volatile __u32 *)&ctx->data_end;
	if (wire) {
		/* simple: the headers are where they are, msg_len known */
		if (data + sizeof(struct dint_eth) + sizeof(struct dint_ipv4) + sizeof(struct dint_udp) > end)
			return XDP_PASS;
		f.eth = data;
		f.ip = (void *)(f.eth + 1);
		f.udp = (void *)(f.ip + 1);
		f.msg = (void *)(f.udp + 1);
	} else if (dint_parse_frame(data, end, &f) < 0) {
		return XDP_PASS; /* not a request the slow path would run */
	}
	if (wire) {
		/* a checkpoint barrier request: the slow path's to answer
		 * (userspace/barrier.h), counted nowhere, here or there */
		if ((void *)(f.msg + 1) <= end && dint_is_control(f.msg, f.msg_len))
			return XDP_PASS;
		count(DINT_STAT_RX);
	}
	absent = !wire && f.udp->source == dint_htons(DINT_SLOW_ABSENT);
	if (absent)
		set_slow_absent(1);
	verdict = dint_process(f.msg, end, f.msg_len);
	if (absent)
		set_slow_absent(0);
	if (verdict == DINT_DROP || verdict == DINT_STALE) {
		if (wire) {
			count(DINT_STAT_DROP);
			if (verdict == DINT_STALE)
				count(DINT_STAT_STALE);
		}
		return XDP_DROP;
	}
	if (verdict == DINT_PASS) {
		if (wire)
			count(DINT_STAT_PASS);
		return XDP_PASS;
	}
#if DINT_CACHE_WRITE_THROUGH
	if (wrote(f.msg)) {
		if (write_through(ctx) == 0) {
			if (wire)
				count(DINT_STAT_WRITE_THROUGH);
			return XDP_PASS;
		}
		count(DINT_STAT_WRITE_THROUGH_FAILED);
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (dint_parse_frame(data, end, &f) < 0 || (void *)(f.msg + 1) > end)
			return XDP_DROP;
	}
#endif
	if (wire) {
		if (f.msg->status != DINT_ST_OK)
			count(DINT_STAT_ERR);
		count(DINT_STAT_TX);
	}
	pad = (long)(end - (void *)f.ip) - dint_ntohs(f.ip->tot_len);
	dint_reverse_frame(&f);
	/* the reply leaves without the request's Ethernet padding */
	if (pad > 0 && pad < 4096)
		bpf_xdp_adjust_tail(ctx, (int)-pad);
	return XDP_TX;
}

/* Run by the slow path through BPF_PROG_TEST_RUN, never attached: takes the
 * record in a struct dint_fill into the cache, or with room set only frees a
 * slot of its key's bucket (see dint_cache.h). */
int dint_fill(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct dint_fill *m = data;
	struct dint_bucket *b;

	if ((void *)(m + 1) > end || m->magic != DINT_FILL_MAGIC || m->table >= DINT_NTABLES)
		return XDP_ABORTED;
	b = bucket_of(dint_hash(m->table, m->key));
	if (!b)
		return XDP_ABORTED;
	m->result = 0; /* busy: the slow path tries again */
	if (cache_latch(b))
		return XDP_TX;
	if (dint_cache_find(b, m->table, m->key) >= 0) {
		m->result = DINT_FILL_PRESENT;
	} else if (m->room) {
		int res;

		dint_cache_room(b, &m->vid, &m->vrec, &res);
		m->result = res;
	} else {
		m->result = dint_cache_place(b, m->table, m->key, &m->rec, &m->vid, &m->vrec);
	}
	cache_unlatch(b);
	count(DINT_STAT_FILL);
	if (m->result == DINT_FILL_EVICTED)
		count(DINT_STAT_EVICT);
	return XDP_TX;
}
