/* dint's in-kernel cache, as the DINT paper designs it: an array of buckets,
 * each with a few record slots, one latch, a clock hand for eviction and a
 * 64-bit bloom filter of the bucket's keys that live in user space. Shared by
 * the XDP program (bpf/dint_xdp.c), which serves hits and answers misses of
 * keys the filter rules out, and its user-space slow path
 * (bpf/dint_slowpath.c), which holds the full store, builds the initial
 * image and reads the cache back at stop.
 *
 * Invariants the two keep between them:
 *   - a key is in at most one slot, of the bucket dint_hash picks;
 *   - a cached record is the newest copy; the slow path's store copy of it
 *     may be older (gen tells), and only the slow path evicts;
 *   - every key that has a record in the slow path's store has its bloom
 *     bits set (at load, or when evicted), so a clear bit proves a key exists
 *     nowhere and the kernel may answer or create it alone;
 *   - a key has a record in the cache or in the slow path's store, or none
 *     at all: the slow path takes only stored records into the cache, and a
 *     record is made (in the cache) only by an operation that creates one.
 *
 * Include after dint_engine.h (struct dint_rec). */
#ifndef DINT_CACHE_H
#define DINT_CACHE_H

/* Slots per bucket; DINT's 4. A power of two. */
#ifndef DINT_CACHE_SLOTS
#define DINT_CACHE_SLOTS 4
#endif
_Static_assert((DINT_CACHE_SLOTS & (DINT_CACHE_SLOTS - 1)) == 0, "slots: a power of two");

/* A slot's key, as the fill program hands a victim out. */
struct dint_slot_id {
	__u64 key;
	__u8 table;
	__u8 used;
	__u8 pad[6];
};

/* A slot: a record, packed after the previous one (8-byte aligned). */
struct dint_slot {
	struct dint_rec rec;
};

/* A bucket: its first 64 bytes, one cache line, are all a lookup reads
 * before the record it wants; the four records follow, packed. A bucket is
 * a multiple of 64 bytes and the map's values start on a page (it is
 * memory-mappable, bpf/dint_xdp.c), so buckets start cache lines; with the
 * default schema's 112-byte records a bucket is 512 bytes, eight to a page,
 * none across two. A request then touches one page of the cache: the
 * header's line and its record's first 64 bytes (one line for slot 0, two
 * for the others), which hold all a read or a lock needs of a record with
 * values of up to 8 bytes (struct dint_rec). Where a miss costs a page walk
 * (a cache of many pages), the page, not the line, is what counts: 64-byte
 * aligned slots (128 bytes each, 576-byte buckets) put every record's hot
 * fields on one line, but one bucket in seven across two pages. */
struct dint_bucket {
	__u64 latch; /* 0: free; taken with compare-and-swap (bpf/dint_xdp.c;
		      * 64 bits: what every BPF target has atomics for) */
	__u64 bloom; /* keys of this bucket that live in the slow path's store */
	__u8 table[DINT_CACHE_SLOTS];
	__u8 used[DINT_CACHE_SLOTS];
	__u32 hand;  /* the slot the next eviction takes (a clock) */
	__u32 pad;
	__u64 key[DINT_CACHE_SLOTS];
	struct dint_slot slot[DINT_CACHE_SLOTS];
} __attribute__((aligned(64)));
_Static_assert(__builtin_offsetof(struct dint_bucket, slot) == 64, "a bucket's header is one cache line");

/* The XDP program's counters (the map dint_stats): the engine's four (enum
 * dint_stat), then these, in this order, which harness/dintd.py reads by
 * name (STAT_NAMES: DINT_STAT_<NAME>, checked by the tests). All but
 * BLOOM_FP count the wire's datagrams, not the slow path's runs; FILL and
 * EVICT count the slow path's fills. */
enum dint_xdp_stat {
	DINT_STAT_PASS = DINT_STAT_MAX,  /* requests passed up to the slow path */
	DINT_STAT_WRITE_THROUGH,         /* write-through replies passed up */
	DINT_STAT_WRITE_THROUGH_FAILED,  /* ... that could not be (no tailroom): sent here */
	DINT_STAT_FILL,                  /* fills by the slow path */
	DINT_STAT_EVICT,                 /* ... that evicted a record */
	DINT_STAT_BUSY,                  /* latches still busy after DINT_LATCH_TRIES (RETRY) */
	DINT_STAT_KERNEL,                /* frames that may be to the dint port left to the kernel:
					  * not simple, or not valid (see bpf/dint_xdp.c) */
	DINT_STAT_BLOOM_OUT,             /* misses in their bucket whose bloom bits were clear:
					  * answered (or created) here, the key in no store */
	DINT_STAT_BLOOM_FP,              /* the slow path's runs of a key its store does not hold
					  * whose bloom bits were set: the filter's false
					  * positives (each passed up for nothing); the one
					  * counter of the slow path's runs */
	DINT_STAT_XDP_MAX,
};

/* The slow path asks the kernel, through BPF_PROG_TEST_RUN of the dint_fill
 * program, to take a record into the cache: in goes (table, key, rec), out
 * comes what happened and, if a slot had to be freed, the record evicted
 * from it (to be written back). With room set, for a key the slow path's
 * store does not hold, nothing is taken in: the bucket is only left with a
 * free slot, for the engine to create the key's record in if the request
 * it runs next makes one (results as for a fill: PLACED if a slot was free
 * already, EVICTED, PRESENT). */
#define DINT_FILL_MAGIC 0xD17EF111u
enum dint_fill_result {
	DINT_FILL_BUSY = 0,    /* the bucket's latch stayed busy: nothing changed */
	DINT_FILL_PLACED = 1,  /* into a free slot */
	DINT_FILL_EVICTED = 2, /* into the slot of vid/vrec, evicted for it */
	DINT_FILL_PRESENT = 3, /* the key was cached already: nothing changed */
};

struct dint_fill {
	__u32 magic;
	__u8 table;
	__u8 result;
	__u8 room;   /* 1: make room for the key only (rec is not read) */
	__u8 pad;
	__u64 key;
	struct dint_rec rec;
	struct dint_slot_id vid;
	struct dint_rec vrec;
};

/* With write-through, a reply to a writing operation goes up to the slow
 * path (XDP_PASS) with the record as it is after the operation appended;
 * the slow path stores it and sends the reply. */
#define DINT_WT_MAGIC 0xD17E3771u
struct dint_wt {
	__u32 magic;
	__u8 table;
	__u8 found; /* 0: evicted meanwhile, and written back by that */
	__u8 pad[2];
	__u64 key;
	struct dint_rec rec;
};

/* The source MAC of the frames the slow path runs through the program, so
 * the program's counters count the wire's datagrams only (the slow path
 * counts what it answers itself). Locally administered, never a NIC's. */
#define DINT_SLOW_MAC { 0x02, 0x00, 0x64, 0x69, 0x6e, 0x74 }

/* The UDP source port of those frames says what the slow path knows of the
 * request's key: DINT_SLOW_FILLED, its record is in the cache now (taken in
 * from the store, or cached already); DINT_SLOW_ABSENT, the store holds no
 * record of it, so a key the cache does not hold has none anywhere and the
 * engine answers it as absent (creating its record in a free slot if the
 * operation makes one), as it does a key the bloom filter rules out. */
#define DINT_SLOW_FILLED 1
#define DINT_SLOW_ABSENT 2

static __always_inline int dint_from_slowpath(const __u8 *src)
{
	const __u8 mac[6] = DINT_SLOW_MAC;

	return src[0] == mac[0] && src[1] == mac[1] && src[2] == mac[2] && src[3] == mac[3] &&
	       src[4] == mac[4] && src[5] == mac[5];
}

/* The bucket of hash h: its high 32 bits scaled to the bucket count (a
 * multiply and a shift; BPF has no cheap 64-bit modulo). */
static __always_inline __u64 dint_cache_bucket(__u64 h, __u64 nbuckets)
{
	return ((h >> 32) * nbuckets) >> 32;
}

/* Two bits of the bucket's filter, from the low hash bits, which the bucket
 * index does not use. */
static __always_inline __u64 dint_bloom_bits(__u64 h)
{
	return (1ULL << (h & 63)) | (1ULL << ((h >> 6) & 63));
}

static __always_inline int dint_bloom_may_hold(const struct dint_bucket *b, __u64 h)
{
	__u64 bits = dint_bloom_bits(h);

	return (b->bloom & bits) == bits;
}

/* The slot of (table, key) in b, or -1. */
static __always_inline int dint_cache_find(const struct dint_bucket *b, __u8 table, __u64 key)
{
	for (int i = 0; i < DINT_CACHE_SLOTS; i++)
		if (b->key[i] == key && b->used[i] && b->table[i] == table)
			return i;
	return -1;
}

static __always_inline int dint_cache_free_slot(const struct dint_bucket *b)
{
	for (int i = 0; i < DINT_CACHE_SLOTS; i++)
		if (!b->used[i])
			return i;
	return -1;
}

static __always_inline void dint_cache_set(struct dint_bucket *b, int i, __u8 table, __u64 key)
{
	i &= DINT_CACHE_SLOTS - 1;
	b->key[i] = key;
	b->table[i] = table;
	b->used[i] = 1;
}

/* A free slot of b: one that is, or the clock hand's, whose key and record
 * are first copied to *vid and *vrec, remembered in the filter as living in
 * user space, and freed. Returns the slot and, in *res, DINT_FILL_PLACED
 * (it was free) or DINT_FILL_EVICTED. */
static __always_inline int dint_cache_room(struct dint_bucket *b, struct dint_slot_id *vid,
					   struct dint_rec *vrec, int *res)
{
	int i = dint_cache_free_slot(b);

	*res = DINT_FILL_PLACED;
	if (i >= 0)
		return i;
	i = b->hand & (DINT_CACHE_SLOTS - 1);
	b->hand = i + 1;
	vid->key = b->key[i];
	vid->table = b->table[i];
	vid->used = 1;
	*vrec = b->slot[i].rec;
	b->bloom |= dint_bloom_bits(dint_hash(vid->table, vid->key));
	b->used[i] = 0;
	*res = DINT_FILL_EVICTED;
	return i;
}

/* Takes (table, key) into b, which does not hold it, with the record rec,
 * into a slot dint_cache_room frees. Returns a dint_fill_result. */
static __always_inline int dint_cache_place(struct dint_bucket *b, __u8 table, __u64 key,
					    const struct dint_rec *rec, struct dint_slot_id *vid,
					    struct dint_rec *vrec)
{
	int res, i = dint_cache_room(b, vid, vrec, &res);

	i &= DINT_CACHE_SLOTS - 1;
	dint_cache_set(b, i, table, key);
	b->slot[i].rec = *rec;
	return res;
}

#endif
