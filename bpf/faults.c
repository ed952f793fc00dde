/* Fault injection on the client ends of the local testbed (harness/faults.py):
 * loss, duplication, late duplication and reordering of requests, and loss
 * of replies, each for a configured share of the datagrams, decided by a
 * seeded pseudo-random stream, and counted.
 *
 * Built with clang into build/faults.o, loaded once per client host with
 * bpftool (programs and maps pinned under /sys/fs/bpf/dint-faults/<netns>/)
 * and attached with ip and tc:
 *
 *   faults_reply    XDP on every client end (in place of xdp_pass, so the
 *                   end keeps NAPI for the servers' XDP_TX replies): drops
 *                   reply-loss of the replies, passes everything else.
 *   faults_request  TC egress (clsact) on every client end: drops
 *                   request-loss of the requests (TC_ACT_SHOT), copies dup
 *                   of them at once (bpf_clone_redirect to the same end),
 *                   sends a copy of late-dup of them into the delay line,
 *                   and moves reorder of them into the delay line.
 *   faults_hold     TC egress on the delay line's first end (hold): puts
 *                   what arrives into a lane, a leaf class of the HTB
 *                   qdisc there, by skb->priority.
 *   faults_release  TC ingress on the delay line's second end (release):
 *                   drops the debt packets, measures how late each held
 *                   packet comes out, and sends it on its way
 *                   (bpf_redirect to the client end it came from).
 *
 * The delay line. The kernel has no netem (and no fq): the only queue that
 * holds packets is a shaper, and a token bucket lets the first packet after
 * a pause through at once. So a lane is put into debt on purpose: before a
 * packet that must leave at time T, a debt packet is queued whose size
 * costs the lane exactly the time until T at the lane's rate. The debt
 * packet leaves at once (or when the lane's earlier debt is paid) and is
 * dropped at the release end; the packet behind it leaves at T. The lanes'
 * rates are the configuration's, so the program knows when every lane is
 * free again (lanes.free_at) and picks, for each packet, the lane free
 * latest before T (packets in one lane keep their order). A packet that no
 * lane can hold until T leaves when the earliest lane is free, later than
 * drawn; each one's real delay is measured at the release end from a
 * trailer (struct trailer) appended at the hold end and removed before
 * the packet goes back to its link.
 *
 * Marks (skb->mark) tell the programs what a packet is: a copy made here
 * re-enters the egress hook of the device it is sent to, and must not be
 * taken for a new request. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MARK_BASE 0x44490000u     /* "DI" */
#define MARK_DUP (MARK_BASE | 1)  /* an immediate copy, re-entering the client end's egress */
#define MARK_HOLD (MARK_BASE | 2) /* entering the hold end: what it is is in struct pending */
#define MARK_RELEASED (MARK_BASE | 3) /* back from the delay line, to go to the server as it is */
#define MARK_DEBT (MARK_BASE | 4) /* a debt packet grown to its size, entering the hold end again */

enum hold_kind { HOLD_DEBT = 1, HOLD_LATE = 2, HOLD_REORDER = 3 };

/* Lanes: each client CPU slot has its own (no lock: on one CPU the egress
 * hook runs with bottom halves off, one packet at a time), LATE_LANES for
 * late copies and then REORDER_LANES for reordered requests. Lane k is HTB
 * class 1:(lane_minor + k), k = slot * SLOT_LANES + i. */
#define LATE_LANES 56
#define REORDER_LANES 8
#define SLOT_LANES (LATE_LANES + REORDER_LANES)
#define MAX_SLOTS 8
#define MAX_LANES (SLOT_LANES * MAX_SLOTS)
#define TRAILER_MAGIC 0xD17EFA17u
#define DEBT_MIN 64               /* bytes: the smallest debt packet */
#define DEBT_MAX 16000            /* bytes: the largest (the lanes' rates are set so that it lasts the longest delay) */

/* harness/faults.py writes this (same layout: CONFIG_LAYOUT there). */
struct config {
	__u64 seed;
	__u64 reply_loss;          /* shares as thresholds out of 2^32 */
	__u64 request_loss;
	__u64 dup;
	__u64 late_dup;
	__u64 reorder;
	__u64 late_min_ns, late_max_ns;
	__u64 reorder_min_ns, reorder_max_ns;
	__u64 late_rate, reorder_rate;   /* lanes' rates, bytes per second */
	__u32 port;                /* the servers' UDP port */
	__u32 hold_ifindex;        /* the delay line's hold end */
	__u32 host;                /* this client host's index (its own random streams) */
	__u32 lane_minor;          /* lane k is HTB class 1:(lane_minor + k) */
	__u32 slots;               /* CPU slots (the client host's CPUs, at most MAX_SLOTS) */
	__u32 pad;
};

/* Counters, per CPU (harness/faults.py: COUNTERS, same order). */
enum counter {
	REQ_SEEN, REQ_DROPPED, REQ_DUP, REQ_LATE, REQ_REORDER, REQ_GSO_UNTOUCHED, REQ_COPY_FAILED,
	REL_LATE, REL_REORDER, REL_DEBT, REL_FAILED,
	HOLD_FAILED, HOLD_DEBT_BYTES, LATE_BEYOND_DRAW,
	LATE_SUM_NS, LATE_MAX_NS, LATE_MIN_INV_NS, LATE_ERR_SUM_NS, LATE_ERR_MAX_NS,
	REORDER_SUM_NS, REORDER_MAX_NS, REORDER_MIN_INV_NS, REORDER_ERR_SUM_NS, REORDER_ERR_MAX_NS,
	REP_SEEN, REP_DROPPED, REQ_DUP_LINK_DROPPED,
	NCOUNTERS
};



/* What the client end's egress tells the hold end about the packet it is
 * sending there; written just before bpf_clone_redirect, which runs the
 * hold end's program at once on the same CPU. */
struct pending {
	__u32 kind;
	__u32 lane;
	__u32 size;                /* HOLD_DEBT: the debt packet's length */
	__u32 ifindex;             /* the client end to go back to */
	__u64 created_ns;
	__u64 due_ns;              /* when the lane model says it leaves */
};

struct trailer {
	__u32 magic;
	__u32 ifindex;
	__u64 created_ns;
	__u64 due_ns;
	__u32 kind;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} faults_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} faults_counters SEC(".maps");

/* xorshift64* state per CPU: 0 for requests, 1 for replies */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} faults_rng SEC(".maps");

/* when each lane's debt is paid, ns (CLOCK_MONOTONIC) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_LANES);
	__type(key, __u32);
	__type(value, __u64);
} faults_lanes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending);
} faults_pending SEC(".maps");

static __always_inline struct config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&faults_config, &zero);
}

static __always_inline void count(__u32 c, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&faults_counters, &c);
	if (v)
		*v += n;
}

static __always_inline void count_max(__u32 c, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&faults_counters, &c);
	if (v && n > *v)
		*v = n;
}

static __always_inline __u64 splitmix64(__u64 x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* The next number of this CPU's stream for one direction. A stream starts
 * from the seed, the client host, the direction and the CPU: the n-th
 * datagram a CPU sees in a direction meets the same fate for the same seed. */
static __always_inline __u64 next_random(struct config *cfg, __u32 dir)
{
	__u64 *s = bpf_map_lookup_elem(&faults_rng, &dir);
	if (!s)
		return 0;
	__u64 x = *s;
	if (!x) {
		x = splitmix64(cfg->seed ^ ((__u64)cfg->host << 48) ^ ((__u64)dir << 40) ^ bpf_get_smp_processor_id());
		if (!x)
			x = 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* true for share (a threshold out of 2^32) of the calls; draws only for a
 * fault that is on, so that a fault left off does not shift the others */
static __always_inline int happens(struct config *cfg, __u32 dir, __u64 share)
{
	if (!share)
		return 0;
	return (next_random(cfg, dir) >> 32) < share;
}

static __always_inline __u64 draw_between(struct config *cfg, __u64 lo, __u64 hi)
{
	if (hi <= lo)
		return lo;
	return lo + (((next_random(cfg, 0) >> 32) * (hi - lo)) >> 32);
}

/* A UDP datagram to (dir 0) or from (dir 1) the servers' port, as seen
 * from the client's end: 1, else 0. */
static __always_inline int ours(void *data, void *end, __u32 port, int dir)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5)
		return 0;
	if (ip->frag_off & bpf_htons(0x1FFF))
		return 0;
	struct udphdr *udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end)
		return 0;
	return bpf_ntohs(dir ? udp->source : udp->dest) == port;
}

SEC("xdp")
int faults_reply(struct xdp_md *ctx)
{
	struct config *cfg = config();
	if (!cfg || !ours((void *)(long)ctx->data, (void *)(long)ctx->data_end, cfg->port, 1))
		return XDP_PASS;
	count(REP_SEEN, 1);
	if (happens(cfg, 1, cfg->reply_loss)) {
		count(REP_DROPPED, 1);
		return XDP_DROP;
	}
	return XDP_PASS;
}

static __always_inline __u64 cost_ns(__u64 bytes, __u64 rate)
{
	return rate ? bytes * 1000000000ull / rate : 0;
}

struct scan {
	__u32 base;
	__u32 best, earliest;
	__u64 now, due, debt_min;
	__u64 best_at, earliest_at;
};

/* one lane of a scan (bpf_loop): the lane free latest before due - debt_min,
 * and the lane free first */
static long scan_lane(__u32 i, void *arg)
{
	struct scan *sc = arg;
	__u32 key = sc->base + i;
	__u64 *free_at = bpf_map_lookup_elem(&faults_lanes, &key);
	if (!free_at)
		return 1;
	__u64 at = *free_at > sc->now ? *free_at : sc->now;
	if (at + sc->debt_min <= sc->due && at > sc->best_at) {
		sc->best = key;
		sc->best_at = at;
	}
	if (at < sc->earliest_at) {
		sc->earliest = key;
		sc->earliest_at = at;
	}
	return 0;
}

/* Picks a lane (of this CPU's late lanes, or reorder lanes) for a packet of
 * len bytes that should leave at due; fills p (lane, debt size, when it
 * leaves). Returns 0, or -1 without a lane. */
static __always_inline int place(struct config *cfg, int reorder, __u64 now, __u64 due, __u32 len,
				 struct pending *p)
{
	__u64 rate = reorder ? cfg->reorder_rate : cfg->late_rate;
	__u32 slots = cfg->slots ? cfg->slots : 1;
	if (!rate || !cfg->hold_ifindex)
		return -1;  /* no delay line */
	struct scan sc = {.base = (bpf_get_smp_processor_id() % slots) * SLOT_LANES + (reorder ? LATE_LANES : 0),
			  .now = now, .due = due, .debt_min = cost_ns(DEBT_MIN, rate), .earliest_at = ~0ull};
	bpf_loop(reorder ? REORDER_LANES : LATE_LANES, scan_lane, &sc, 0);
	__u64 leaves, size = 0;
	__u32 lane;
	if (sc.best_at) {
		size = (due - sc.best_at) * rate / 1000000000ull;
		if (size < DEBT_MIN)
			size = DEBT_MIN;
		if (size > DEBT_MAX)
			size = DEBT_MAX;
		lane = sc.best;
		leaves = sc.best_at + cost_ns(size, rate);
	} else if (sc.earliest_at != ~0ull) {
		/* no lane can hold it until due: it follows the lane free first */
		lane = sc.earliest;
		leaves = sc.earliest_at;
	} else {
		return -1;
	}
	__u64 *free_at = bpf_map_lookup_elem(&faults_lanes, &lane);
	if (!free_at)
		return -1;
	/* the qdisc charges the length a packet had when it was sent to the
	 * hold end: the trailer, added there, costs nothing */
	*free_at = leaves + cost_ns(len, rate);
	p->lane = lane;
	p->size = size;
	p->due_ns = leaves;
	return 0;
}

/* Sends a clone of skb to the hold end: first its debt packet if it has
 * one, then the packet. Returns 0 when the packet itself went. */
static __always_inline int hold(struct __sk_buff *skb, struct config *cfg, struct pending *p)
{
	__u32 zero = 0;
	struct pending *slot = bpf_map_lookup_elem(&faults_pending, &zero);
	if (!slot)
		return -1;
	__u32 mark = skb->mark;
	int err = 0;
	skb->mark = MARK_HOLD;
	if (p->size) {
		*slot = *p;
		slot->kind = HOLD_DEBT;
		if (bpf_clone_redirect(skb, cfg->hold_ifindex, 0))
			count(HOLD_FAILED, 1);
		else
			count(HOLD_DEBT_BYTES, p->size);
	}
	*slot = *p;
	err = bpf_clone_redirect(skb, cfg->hold_ifindex, 0);
	skb->mark = mark;
	return err;
}

SEC("tc")
int faults_request(struct __sk_buff *skb)
{
	if (skb->mark == MARK_DUP || skb->mark == MARK_RELEASED) {
		skb->mark = 0;
		skb->priority = 0;
		return TC_ACT_OK;
	}
	struct config *cfg = config();
	if (!cfg || !ours((void *)(long)skb->data, (void *)(long)skb->data_end, cfg->port, 0))
		return TC_ACT_OK;
	if (skb->gso_segs > 1) {
		/* a UDP GSO send is one skb here: cut into datagrams later, so no
		 * fault can take one of them (runs with request faults send without
		 * GSO; see harness/faults.py) */
		count(REQ_SEEN, skb->gso_segs);
		count(REQ_GSO_UNTOUCHED, skb->gso_segs);
		return TC_ACT_OK;
	}
	count(REQ_SEEN, 1);
	if (happens(cfg, 0, cfg->request_loss)) {
		count(REQ_DROPPED, 1);
		return TC_ACT_SHOT;
	}
	if (happens(cfg, 0, cfg->dup)) {
		__u32 mark = skb->mark;
		skb->mark = MARK_DUP;
		/* > 0 (NET_XMIT_DROP): the copy left and the end dropped it, a
		 * full ring that the end counts in its tx_dropped like any
		 * other datagram (the run's link_drops); < 0: no copy left */
		int err = bpf_clone_redirect(skb, skb->ifindex, 0);
		if (err < 0) {
			count(REQ_COPY_FAILED, 1);
		} else {
			count(REQ_DUP, 1);
			if (err > 0)
				count(REQ_DUP_LINK_DROPPED, 1);
		}
		skb->mark = mark;
	}
	__u64 now = bpf_ktime_get_ns();
	if (happens(cfg, 0, cfg->late_dup)) {
		__u64 due = now + draw_between(cfg, cfg->late_min_ns, cfg->late_max_ns);
		struct pending p = {.kind = HOLD_LATE, .ifindex = skb->ifindex, .created_ns = now};
		if (place(cfg, 0, now, due, skb->len, &p) || hold(skb, cfg, &p)) {
			count(REQ_COPY_FAILED, 1);
		} else {
			count(REQ_LATE, 1);
			if (p.due_ns > due)
				count(LATE_BEYOND_DRAW, 1);
		}
	}
	if (happens(cfg, 0, cfg->reorder)) {
		__u64 due = now + draw_between(cfg, cfg->reorder_min_ns, cfg->reorder_max_ns);
		struct pending p = {.kind = HOLD_REORDER, .ifindex = skb->ifindex, .created_ns = now};
		/* the request itself goes through the delay line: a clone of it,
		 * and the original is dropped here */
		if (place(cfg, 1, now, due, skb->len, &p) == 0 &&
		    hold(skb, cfg, &p) == 0) {
			count(REQ_REORDER, 1);
			return TC_ACT_SHOT;
		}
		count(REQ_COPY_FAILED, 1);
	}
	return TC_ACT_OK;
}

SEC("tc")
int faults_hold(struct __sk_buff *skb)
{
	__u32 zero = 0;
	if (skb->mark == MARK_DEBT) {
		/* back with its size: skb->priority still names its lane */
		skb->mark = MARK_HOLD;
		return TC_ACT_OK;
	}
	if (skb->mark != MARK_HOLD)
		return TC_ACT_SHOT;  /* nothing else belongs on the delay line */
	struct pending *p = bpf_map_lookup_elem(&faults_pending, &zero);
	struct config *cfg = config();
	if (!p || !cfg || p->lane >= MAX_LANES) {
		count(HOLD_FAILED, 1);
		return TC_ACT_SHOT;
	}
	skb->priority = (1u << 16) | (cfg->lane_minor + p->lane);
	if (p->kind == HOLD_DEBT) {
		/* The qdisc takes a packet's length from before this hook
		 * (qdisc_pkt_len_init in __dev_queue_xmit): grown here, the debt
		 * packet goes through the hold end once more to be charged its size. */
		if (bpf_skb_change_tail(skb, p->size, 0)) {
			count(HOLD_FAILED, 1);
			return TC_ACT_SHOT;
		}
		skb->mark = MARK_DEBT;
		return bpf_redirect(skb->ifindex, 0);
	}
	struct trailer t = {.magic = TRAILER_MAGIC, .ifindex = p->ifindex, .created_ns = p->created_ns,
			    .due_ns = p->due_ns, .kind = p->kind};
	__u32 len = skb->len;
	if (bpf_skb_change_tail(skb, len + sizeof(t), 0) || bpf_skb_store_bytes(skb, len, &t, sizeof(t), 0)) {
		count(HOLD_FAILED, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

SEC("tc")
int faults_release(struct __sk_buff *skb)
{
	struct trailer t;
	if (skb->mark != MARK_HOLD)
		return TC_ACT_SHOT;
	__u32 len = skb->len;
	if (len < sizeof(t) + ETH_HLEN || bpf_skb_load_bytes(skb, len - sizeof(t), &t, sizeof(t)) ||
	    t.magic != TRAILER_MAGIC) {
		count(REL_DEBT, 1);  /* a debt packet: it has done its work */
		return TC_ACT_SHOT;
	}
	if (bpf_skb_change_tail(skb, len - sizeof(t), 0)) {
		count(REL_FAILED, 1);
		return TC_ACT_SHOT;
	}
	__u64 now = bpf_ktime_get_ns();
	__u64 late = now - t.created_ns;
	__u64 err = now > t.due_ns ? now - t.due_ns : t.due_ns - now;
	int reorder = t.kind == HOLD_REORDER;
	count(reorder ? REL_REORDER : REL_LATE, 1);
	count(reorder ? REORDER_SUM_NS : LATE_SUM_NS, late);
	count_max(reorder ? REORDER_MAX_NS : LATE_MAX_NS, late);
	count_max(reorder ? REORDER_MIN_INV_NS : LATE_MIN_INV_NS, ~late);
	count(reorder ? REORDER_ERR_SUM_NS : LATE_ERR_SUM_NS, err);
	count_max(reorder ? REORDER_ERR_MAX_NS : LATE_ERR_MAX_NS, err);
	skb->mark = MARK_RELEASED;
	skb->priority = 0;
	return bpf_redirect(t.ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
