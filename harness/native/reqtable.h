/* The request table: the requests a client has in flight, for every loop
 * (the flat loop in loop.c, the transaction executor through batches.c).
 * It gives each request a slot and a request id (client id, sequence
 * number: the sequence number picks the slot), keeps its datagram for
 * retransmission, matches replies by request id, sends overdue requests
 * again with the same id, makes a RETRY reply (dint: the record's latch
 * stayed busy) overdue at once, and gives up after max_retries on a
 * request that may be given up. It counts all of it (counters.h), and
 * keeps the open-loop schedule: when the next request (or transaction) is
 * due.
 *
 * Exactly once, the client's part (engine/dint_engine.h): every datagram
 * sent carries the ack, the oldest request id still in flight, and the
 * ids in flight stay within DINT_WINDOW of it (rt_room), so a server can
 * drop any copy older than the ack and answer the others from their
 * completion records. A request that may change state is never given up
 * (rt->slots[i].keep): it is sent again until answered, so its outcome is
 * always known, or until its server has not answered for dead_ns, which
 * fails the run.
 *
 * Per server, at most dest_window requests are on the wire at once (sent,
 * not yet answered): the rest wait in the send queue until answers make
 * room. A burst larger than a receive ring or socket buffer on the way
 * would lose requests (the testbed's veth rings hold 256 datagrams).
 *
 * Retransmission timeout, per server: the larger of RFC 6298's estimate
 * (the smoothed round trip plus four mean deviations) and 1.5 times the
 * 99th percentile of its recent round trips (struct rtt; a server's round
 * trips here have a long tail: a batch of requests queues behind itself,
 * and a server shares its core), measured on requests answered at their
 * first sending (Karn's rule); at least rto_min_ns, at most rto_max_ns,
 * which is also the timeout before any round trip is measured. A timeout
 * doubles the server's (once a tick, as TCP's does), and each
 * retransmission of a request doubles its own (up to rto_max_ns).
 *
 *   if (rt_room(rt, n)) ...                  n more requests fit the table and the window
 *   i = rt_add(rt, dest, len, first_ns, t);  take a slot, queued to be sent;
 *   write the datagram at rt_datagram(rt, i)  (its id: rt->client_id, rt->slots[i].seq)
 *   rt_flush(rt);                            send what is queued, each with the ack
 *   rt_tick(rt, t);                          when one is due: retransmit, give up
 *   rt_receive(rt, block, max_wait_ns);      read replies, or wait for them
 *   rt_due(rt, now, &due);                   open loop: is the next one due?
 *
 * An owner that needs each request's end sets rt->done: it is called with
 * the reply, or with ST_TIMEOUT when the request was given up, after the
 * slot was freed (its fields and datagram stay as they were until the next
 * rt_add). */
#ifndef NATIVE_REQTABLE_H
#define NATIVE_REQTABLE_H

#include "common.h"
#include "counters.h"
#include "wire.h"

#define ST_TIMEOUT 255 /* a status no server sends: the request was given up */
/* Defaults of the constructors' rto_min_ns and dead_ns. */
#define RTO_MIN_NS 250000ull
#define DEAD_NS 5000000000ull

/* An open-loop request (or transaction) started this much after it was due
 * counts as late. */
#define LATE_NS 100000

struct slot {
	uint32_t seq;
	uint16_t len;      /* of its datagram */
	uint8_t dest, busy, recorded;
	uint8_t keep;      /* never given up: it may change state (set by the owner) */
	uint8_t onwire;    /* sent (at least once): counted in dest_wire */
	uint8_t bumped;    /* answered RETRY once: its round trip is not a sample */
	uint16_t retries;
	uint64_t first_ns; /* what its latency counts from */
	uint64_t sent_ns;  /* first sent */
	uint64_t last_ns;  /* sent last */
	uint64_t due_ns;   /* sent again then, unless answered */
	/* the owner's (batches.c): the batch the request belongs to, its place
	 * there, and its operation (at hand on a reply, unlike the datagram) */
	uint32_t batch;
	uint16_t pos;
	uint8_t op;
};

struct reqtable;
typedef int (*rt_done_fn)(struct reqtable *rt, struct slot *s, int status, const struct dint_hdr *reply,
			  uint32_t len);

/* A server's round-trip estimate (ns). */
/* The recent round trips of a server, for their 99th percentile: counts
 * in quarter-octave buckets from 1 us (about 19% wide; the last one holds
 * everything from about 2 s up), all halved every RTT_AGE samples, so a
 * sample weighs half as much RTT_AGE samples later, whichever way the
 * round trips move. */
#define RTT_BUCKETS 88
#define RTT_AGE 256
#define RTT_P99_EVERY 16  /* the percentile is read again every this many samples */

struct rtt {
	uint64_t srtt, rttvar, rto;
	uint64_t p99;     /* the recent 99th percentile (a bucket's upper end) */
	uint64_t samples;
	uint32_t recent;  /* the buckets' sum */
	uint16_t hist[RTT_BUCKETS];
};

struct reqtable {
	struct wire w;
	struct counts c;
	uint32_t client_id;
	struct slot *slots;   /* request seq is in slot seq & mask */
	char *slab;           /* slot i's datagram is slab[i * slot_bytes] */
	uint32_t slot_bytes, mask, inflight, next_seq;
	uint32_t ack;         /* the oldest request id in flight (next_seq: none) */
	uint32_t dest_inflight[MAX_DESTS];
	uint32_t dest_wire[MAX_DESTS]; /* sent and unanswered */
	uint32_t dest_window;          /* at most this many on the wire per server; 0: no limit */
	uint32_t *sendq;      /* slots to send (or send again) at the next flush */
	uint32_t nsendq;
	struct rtt rtt[MAX_DESTS];
	uint64_t rto_min_ns, rto_max_ns, dead_ns;
	uint64_t next_tick_ns; /* no request is due before this */
	uint32_t max_retries;
	/* open loop (interval_ns > 0): one is due every interval_ns from the
	 * first, however late the replies */
	uint64_t interval_ns, next_due, late, skipped;
	rt_done_fn done;
};

/* Room for capacity requests in flight (at most DINT_WINDOW / 2) of at most
 * max_len bytes each, over the sockets fds (wire_open); timeouts as above.
 * -1 with an exception set. */
int rt_init(struct reqtable *rt, PyObject *fds, int gso, uint32_t client_id, uint32_t capacity, uint32_t max_len,
	    uint64_t rto_min_ns, uint64_t rto_max_ns, uint32_t max_retries, uint64_t dead_ns);
void rt_free(struct reqtable *rt);

static inline char *rt_datagram(const struct reqtable *rt, uint32_t i)
{
	return rt->slab + (size_t)i * rt->slot_bytes;
}

/* The oldest request id in flight, or the next one if none is. */
static inline uint32_t rt_ack(struct reqtable *rt)
{
	while (rt->ack != rt->next_seq) {
		const struct slot *s = &rt->slots[rt->ack & rt->mask];
		if (s->busy && s->seq == rt->ack)
			break;
		rt->ack++; /* answered, given up, or skipped */
	}
	return rt->ack;
}

/* Whether n more requests keep every id in flight within the table's size
 * (at most DINT_WINDOW) of the ack: the next n take ids past next_seq, and
 * may skip over as many as are in flight. The owner checks its own limit
 * (its capacity, or its concurrency) besides. */
static inline int rt_room(struct reqtable *rt, uint32_t n)
{
	return rt->next_seq - rt_ack(rt) + rt->inflight + n <= rt->mask + 1;
}

/* Takes a free slot for a request of len bytes to server dest, sent now (t)
 * and timed from first_ns, and queues it for the next flush; returns the
 * slot's index. The caller checked there is room (rt_room). */
static inline uint32_t rt_add(struct reqtable *rt, uint8_t dest, uint32_t len, uint64_t first_ns,
			      uint64_t t)
{
	uint32_t seq = rt->next_seq;
	while (rt->slots[seq & rt->mask].busy)
		seq++; /* a slow request still holds this slot */
	rt->next_seq = seq + 1;
	uint32_t i = seq & rt->mask;
	struct slot *s = &rt->slots[i];
	s->seq = seq;
	s->len = len;
	s->dest = dest;
	s->busy = 1;
	s->keep = 0;
	s->bumped = 0;
	s->onwire = 0;
	s->retries = 0;
	s->first_ns = first_ns;
	s->sent_ns = s->last_ns = t; /* and again when it leaves (rt_flush) */
	s->recorded = in_window(&rt->c, first_ns);
	rt->c.rec_started += s->recorded;
	rt->inflight++;
	rt->dest_inflight[dest]++;
	rt->sendq[rt->nsendq++] = i;
	return i;
}

/* Gives back the slots queued since the queue held mark requests, as if
 * they had never been taken (a batch found bad before it was sent). */
void rt_unqueue(struct reqtable *rt, uint32_t mark);

/* Sends the queued requests, BATCH at a time, grouped per server; a new
 * one whose server has dest_window on the wire stays queued. */
int rt_flush(struct reqtable *rt);

/* When a request is due: sends overdue requests again, with the same
 * request id, and gives up on those sent max_retries times already that
 * may be given up; -1 with an exception set, also when a request kept
 * has gone unanswered for dead_ns (its server is taken for dead). */
int rt_tick(struct reqtable *rt, uint64_t t);

/* After the last request is answered: reads every server's socket until
 * nothing has come for quiet_ns (at most max_ns), counting what comes as
 * strays (answers to copies sent again), so that every reply the servers
 * sent is seen before the sockets close. -1 with an exception set. */
int rt_linger(struct reqtable *rt, uint64_t quiet_ns, uint64_t max_ns);

/* {"rto_us": [...], "srtt_us": [...], "rtt_samples": [...]}, per server. */
PyObject *rt_rtt_stats(const struct reqtable *rt);

/* Receives what has arrived from servers with requests in flight; returns
 * the replies matched, or -1 with an exception set. When block is set and
 * nothing was matched it waits, up to max_wait_ns and at most about a
 * millisecond: in recvmmsg itself with one server (as a C client would), in
 * ppoll with several; a wait under 2 us is spun instead. */
int rt_receive(struct reqtable *rt, int block, uint64_t max_wait_ns);

/* Open loop: whether one is due by now, and when (*due: latency counts
 * from then); counts it late if it is over LATE_NS behind. What fell behind
 * during the warm-up is not carried into the window: at the window's start
 * it is skipped (and counted). */
static inline int rt_due(struct reqtable *rt, uint64_t now, uint64_t *due)
{
	if (!rt->next_due)
		rt->next_due = now;
	if (rt->next_due < rt->c.win_from && rt->c.win_from <= now) {
		rt->skipped += (rt->c.win_from - rt->next_due) / rt->interval_ns;
		rt->next_due = rt->c.win_from;
	}
	if (rt->next_due > now)
		return 0;
	*due = rt->next_due;
	rt->next_due += rt->interval_ns;
	if (now - *due > LATE_NS && in_window(&rt->c, *due))
		rt->late++;
	return 1;
}

#endif
