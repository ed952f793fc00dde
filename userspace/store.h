/* The user-space store behind the engine (engine/dint_engine.h) for both
 * baseline servers: where records live, how they are latched, and the log.
 * No protocol logic here: the engine decides what every operation does.
 *
 * Records sit in one preallocated array and never move; a hash index (open
 * addressing, linear probing, power-of-two slots, at least twice the
 * capacity) maps (table, key) to a record. Nothing is ever removed from the
 * index (a delete leaves a tombstone, live = 0), so a record pointer stays
 * valid for the life of the process and lookups need no lock: a slot is
 * published by a release store of its record reference after its key is
 * written, and read with an acquire load. Inserts are serialised by a mutex.
 *
 * Include this before dint_engine.h / dint_net.h: it defines the latch (one
 * per record: DINT_REF_T is a store entry), includes the engine, and then
 * defines the storage hooks (dint_ref, dint_rec, dint_log_room,
 * dint_log_append).
 *
 * All arrays are sized at start-up (--capacity, --log-capacity) and mapped
 * zeroed; pages become resident only when touched.
 *
 * Files (little-endian, the host order of every machine this runs on):
 *   snapshot: "DINTSNAP", u32 format version (1), u32 ntables,
 *             ntables x u16 value size; then per record: u8 table, u8 live,
 *             u8 nshared, u8 pad, u32 ver, u64 key, u64 owner,
 *             value size(table) bytes of value.
 *   log:      "DINTLOG1", u32 ntables, ntables x u16 value size, u64 count;
 *             then per record: u64 txn, u64 key, u32 ver, u8 table,
 *             3 pad bytes, value size(table) bytes of value.
 * Both are written to FILE.tmp and renamed over FILE. */
#ifndef DINT_STORE_H
#define DINT_STORE_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "dint_proto.h"

/* ---- Latches: a spinlock in a 64-bit word (as the XDP program's, which
 * has 64-bit atomics only). ---- */

static inline void store_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Critical sections are a few dozen instructions, but workers may share a
 * CPU (--cpus 1,1): a holder preempted inside one would leave the other
 * spinning for a whole time slice, so after a while the spinner yields. */
#define STORE_SPINS_BEFORE_YIELD 1024

static inline void store_spin_lock(__u64 *l)
{
	unsigned int spins = 0;

	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
			if (++spins < STORE_SPINS_BEFORE_YIELD) {
				store_cpu_relax();
			} else {
				sched_yield();
				spins = 0;
			}
		}
	}
}

static inline void store_spin_unlock(__u64 *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* A record and its latch; defined once struct dint_rec is. */
struct store_entry;
#define DINT_REF_T struct store_entry *
static inline int store_latch(struct store_entry *e);
static inline void store_unlatch(struct store_entry *e);
#define dint_latch(e) store_latch(e)
#define dint_unlatch(e) store_unlatch(e)

#include "dint_engine.h"

struct store_entry {
	__u64 latch;
	struct dint_rec rec;
};

/* Spins (yielding after a while) until latched: never fails. */
static inline int store_latch(struct store_entry *e)
{
	store_spin_lock(&e->latch);
	return 0;
}

static inline void store_unlatch(struct store_entry *e)
{
	store_spin_unlock(&e->latch);
}

/* ---- The store. ---- */

#define STORE_DEFAULT_CAPACITY 1048576UL
/* Mapped lazily: pages cost memory only once records reach them (16M
 * records hold a 30-second TPC-C run on one server). */
#define STORE_DEFAULT_LOG_CAPACITY (16UL << 20)
/* Record references in the index are u32 (index + 1), and the index has at
 * least twice as many slots as records. */
#define STORE_MAX_CAPACITY (1UL << 30)
#define STORE_MAX_LOG_CAPACITY (1UL << 30)

#define STORE_SNAP_MAGIC "DINTSNAP"
#define STORE_SNAP_VERSION 1
#define STORE_LOG_MAGIC "DINTLOG1"
/* u8 table, u8 live, u8 nshared, u8 pad, u32 ver, u64 key, u64 owner */
#define STORE_SNAP_REC_HDR 24
/* u64 txn, u64 key, u32 ver, u8 table, 3 pad */
#define STORE_LOG_REC_HDR 24

struct store_slot {
	__u64 key;
	__u32 ref;  /* record index + 1; 0: empty. Published last (release). */
	__u8 table;
	__u8 pad[3];
};

/* What a record is the record of; the dump needs it, the engine does not. */
struct store_id {
	__u64 key;
	__u8 table;
};

struct store {
	/* exactly once (the engine's sessions and completion records): one
	 * session and DINT_WINDOW records per client slot */
	struct dint_session *sessions;
	struct dint_done *done;
	__u32 clients;
	struct store_entry *recs;
	struct store_id *ids;   /* ids[i]: the key of recs[i] */
	__u64 cap;
	__u64 nrecs;            /* written under ins_lock; read alone after stop */
	struct store_slot *slots;
	__u64 mask;             /* slots - 1 */
	pthread_mutex_t ins_lock;
	struct dint_log_rec *log;
	__u64 log_cap;
	__u64 log_n;            /* claimed by compare-and-swap */
	char err[1024];         /* why the last load or write failed */
};

static struct store store = { .ins_lock = PTHREAD_MUTEX_INITIALIZER };

#define store_hash dint_hash

/* The record of (table, key), or NULL; h is store_hash(table, key). *hole,
 * if given, gets the first empty slot of the probe sequence (where the key
 * would go), or -1 if the whole index was probed without finding one. */
static inline struct store_entry *store_probe(__u8 table, __u64 key, __u64 h, __s64 *hole)
{
	__u64 i = h & store.mask;
	__u64 n;

	for (n = 0; n <= store.mask; n++, i = (i + 1) & store.mask) {
		struct store_slot *s = &store.slots[i];
		__u32 ref = __atomic_load_n(&s->ref, __ATOMIC_ACQUIRE);

		if (!ref) {
			if (hole)
				*hole = (__s64)i;
			return NULL;
		}
		if (s->key == key && s->table == table)
			return &store.recs[ref - 1];
	}
	if (hole)
		*hole = -1;
	return NULL;
}

/* The record of (table, key), created if new; NULL if full. The caller
 * excludes every other inserter (ins_lock, or no workers running yet). */
static inline struct store_entry *store_insert_excl(__u8 table, __u64 key, __u64 h)
{
	struct store_entry *r;
	struct store_slot *s;
	__s64 hole;

	r = store_probe(table, key, h, &hole);
	if (r || hole < 0 || store.nrecs >= store.cap)
		return r;
	/* The array was mapped zeroed and no record is ever reused, so the
	 * new record is all zero (live = 0) already. */
	r = &store.recs[store.nrecs];
	store.ids[store.nrecs].key = key;
	store.ids[store.nrecs].table = table;
	s = &store.slots[hole];
	s->key = key;
	s->table = table;
	/* Publishes the slot: a reader that sees ref sees key and table. */
	__atomic_store_n(&s->ref, (__u32)(store.nrecs + 1), __ATOMIC_RELEASE);
	store.nrecs++;
	return r;
}

/* The entry of (table, key), created if new and asked to; NULL if absent,
 * or full. */
static inline struct store_entry *store_get(__u8 table, __u64 key, int create)
{
	__u64 h = store_hash(table, key);
	struct store_entry *e = store_probe(table, key, h, NULL);

	if (e || !create)
		return e;
	pthread_mutex_lock(&store.ins_lock);
	/* Another inserter may have created it since the lock-free look. */
	e = store_insert_excl(table, key, h);
	pthread_mutex_unlock(&store.ins_lock);
	return e;
}

static inline struct store_entry *dint_ref(__u8 table, __u64 key, int create)
{
	return store_get(table, key, create);
}

/* Every record of this store is reachable: never DINT_ELSEWHERE. */
static inline struct dint_rec *dint_rec(struct store_entry *e, __u8 table, __u64 key, int create,
					int *where)
{
	(void)table, (void)key, (void)create, (void)where;
	return &e->rec;
}

static inline int dint_log_room(void)
{
	return __atomic_load_n(&store.log_n, __ATOMIC_RELAXED) < store.log_cap;
}

static inline int dint_log_append(const struct dint_hdr *msg, const __u8 *val, const void *end)
{
	__u64 i = __atomic_load_n(&store.log_n, __ATOMIC_RELAXED);
	struct dint_log_rec *l;
	__u32 n = DINT_VSIZE(msg->table);
	__u32 avail;

	do {
		if (i >= store.log_cap)
			return -1;
	} while (!__atomic_compare_exchange_n(&store.log_n, &i, i + 1, 1, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	/* Slot i is ours alone; the log is read only after the workers have
	 * been joined, which orders these writes before that. */
	l = &store.log[i];
	l->txn = dint_ntohll(msg->txn);
	l->key = dint_ntohll(msg->key);
	l->ver = dint_ntohl(msg->ver);
	l->table = msg->table;
	avail = (const __u8 *)end > val ? (__u32)((const __u8 *)end - val) : 0;
	if (n > DINT_VAL_MAX)
		n = DINT_VAL_MAX;
	if (n > avail)
		n = avail;
	memcpy(l->value, val, n);
	return 0;
}

/* A client's slot: its low 16 bits (the harness numbers its clients 1..N
 * there, and puts what tells one run's clients from another's above), so
 * the clients of a run never share one. */
static inline __u32 store_client_slot(__u32 client)
{
	return (client & 0xFFFF) % store.clients;
}

static inline struct dint_session *dint_session(__u32 client)
{
	return &store.sessions[store_client_slot(client)];
}

static inline struct dint_done *dint_done(__u32 client, __u32 seq)
{
	return &store.done[(size_t)store_client_slot(client) * DINT_WINDOW + (seq & (DINT_WINDOW - 1))];
}

/* Spins, as a record's latch: never fails. */
static inline int dint_done_latch(struct dint_done *d)
{
	store_spin_lock(&d->latch);
	return 0;
}

static inline void dint_done_unlatch(struct dint_done *d)
{
	store_spin_unlock(&d->latch);
}

/* Big zeroed arrays straight from mmap, 2 MiB aligned and marked for
 * transparent huge pages: the index is probed at random, and with 4 KiB
 * pages nearly every probe of a large store would also miss the TLB. Pages
 * are only touched (and made resident) when used. */
#define STORE_HUGE (2UL << 20)

struct store_map {
	void *base;
	size_t len;
};

static struct store_map store_maps[6];

static inline void *store_alloc(struct store_map *m, __u64 n, size_t size)
{
	size_t len;
	void *p;

	if (!n)
		n = 1;
	if (n > (SIZE_MAX - 2 * STORE_HUGE) / size)
		return NULL;
	len = (n * size + STORE_HUGE - 1) / STORE_HUGE * STORE_HUGE + STORE_HUGE;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	m->base = p;
	m->len = len;
	p = (void *)(((uintptr_t)p + STORE_HUGE - 1) & ~(uintptr_t)(STORE_HUGE - 1));
	madvise(p, len - STORE_HUGE, MADV_HUGEPAGE); /* a hint: fine if refused */
	return p;
}

static inline void store_free(void)
{
	for (unsigned int i = 0; i < sizeof(store_maps) / sizeof(store_maps[0]); i++) {
		if (store_maps[i].base)
			munmap(store_maps[i].base, store_maps[i].len);
		store_maps[i].base = NULL;
	}
	store.recs = NULL;
	store.ids = NULL;
	store.slots = NULL;
	store.log = NULL;
	store.sessions = NULL;
	store.done = NULL;
}

/* Allocates an empty store, with exactly-once state for this many client
 * slots; -1 (store.err says why) if out of memory. */
static inline int store_init(__u64 capacity, __u64 log_capacity, __u32 clients)
{
	__u64 nslots = 1;

	while (nslots < 2 * capacity)
		nslots <<= 1;
	store.cap = capacity;
	store.nrecs = 0;
	store.mask = nslots - 1;
	store.log_cap = log_capacity;
	store.log_n = 0;
	store.recs = store_alloc(&store_maps[0], capacity, sizeof(*store.recs));
	store.ids = store_alloc(&store_maps[1], capacity, sizeof(*store.ids));
	store.slots = store_alloc(&store_maps[2], nslots, sizeof(*store.slots));
	store.log = store_alloc(&store_maps[3], log_capacity, sizeof(*store.log));
	store.clients = clients;
	store.sessions = store_alloc(&store_maps[4], clients, sizeof(*store.sessions));
	store.done = store_alloc(&store_maps[5], (__u64)clients * DINT_WINDOW, sizeof(*store.done));
	if (!store.recs || !store.ids || !store.slots || !store.log || !store.sessions || !store.done) {
		snprintf(store.err, sizeof(store.err),
			 "out of memory for a store of %llu records, a log of %llu and %u clients"
			 " (%llu MiB)",
			 (unsigned long long)capacity, (unsigned long long)log_capacity, clients,
			 (unsigned long long)((capacity * (sizeof(*store.recs) +
						       sizeof(*store.ids)) +
					       nslots * sizeof(*store.slots) +
					       log_capacity * sizeof(*store.log) +
					       (__u64)clients * DINT_WINDOW * sizeof(*store.done)) >> 20));
		store_free();
		return -1;
	}
	return 0;
}

/* ---- Little-endian fields. ---- */

static inline void store_put16(__u8 *p, __u16 v)
{
	p[0] = (__u8)v;
	p[1] = (__u8)(v >> 8);
}

static inline void store_put32(__u8 *p, __u32 v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (__u8)(v >> (8 * i));
}

static inline void store_put64(__u8 *p, __u64 v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (__u8)(v >> (8 * i));
}

static inline __u16 store_get16(const __u8 *p)
{
	return (__u16)(p[0] | p[1] << 8);
}

static inline __u32 store_get32(const __u8 *p)
{
	__u32 v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline __u64 store_get64(const __u8 *p)
{
	__u64 v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- Snapshot load. ---- */

/* Checks "ntables x u16 value size" against this build. */
static inline int store_check_tables(const __u8 *sizes, __u32 ntables, const char *kind,
				     const char *path)
{
	if (ntables != DINT_NTABLES) {
		snprintf(store.err, sizeof(store.err),
			 "%s %s: %u tables, but this build has %u", kind, path, ntables,
			 (unsigned int)DINT_NTABLES);
		return -1;
	}
	for (__u32 t = 0; t < ntables; t++) {
		__u16 vs = store_get16(sizes + 2 * t);

		if (vs != (__u32)DINT_VSIZE(t)) {
			snprintf(store.err, sizeof(store.err),
				 "%s %s: table %u has %u-byte values, but this build has %u",
				 kind, path, t, vs, (unsigned int)DINT_VSIZE(t));
			return -1;
		}
	}
	return 0;
}

/* Records parsed ahead of the one being inserted, their index slots
 * prefetched: a large index misses the cache on nearly every probe, and
 * this way the misses overlap instead of queueing one after another. */
#define STORE_LOAD_AHEAD 16

/* Puts one parsed snapshot record (p: its 24-byte header and value) into
 * the store; -1 when the store is full. */
static inline int store_load_one(const __u8 *p, __u64 h, const char *path)
{
	__u8 table = p[0];
	struct store_entry *e = store_insert_excl(table, store_get64(p + 8), h);
	struct dint_rec *r = e ? &e->rec : NULL;

	if (!r) {
		snprintf(store.err, sizeof(store.err),
			 "snapshot %s: more than %llu records (--capacity)", path,
			 (unsigned long long)store.cap);
		return -1;
	}
	r->live = p[1];
	r->ver = store_get32(p + 4);
	r->owner = store_get64(p + 16);
	memcpy(r->value, p + STORE_SNAP_REC_HDR, DINT_VSIZE(table));
	return 0;
}

/* Checks the snapshot in buf[0, len) and fills the store from it. */
static inline long long store_load_buf(const __u8 *buf, size_t len, const char *path)
{
	const size_t hdr = 16 + 2 * DINT_NTABLES;
	struct {
		const __u8 *p;
		__u64 h;
	} ahead[STORE_LOAD_AHEAD];
	unsigned int head = 0, n_ahead = 0;
	long long n = 0;
	size_t off;

	if (len < 16) {
		snprintf(store.err, sizeof(store.err),
			 "snapshot %s: truncated in the header (%s)", path,
			 len ? "shorter than 16 bytes" : "empty file");
		return -1;
	}
	if (memcmp(buf, STORE_SNAP_MAGIC, 8)) {
		snprintf(store.err, sizeof(store.err),
			 "snapshot %s: bad magic (not a DINTSNAP file)", path);
		return -1;
	}
	if (store_get32(buf + 8) != STORE_SNAP_VERSION) {
		snprintf(store.err, sizeof(store.err),
			 "snapshot %s: format version %u, but this server reads %u", path,
			 store_get32(buf + 8), STORE_SNAP_VERSION);
		return -1;
	}
	if (store_get32(buf + 12) != DINT_NTABLES)
		return store_check_tables(buf + 16, store_get32(buf + 12), "snapshot", path);
	if (len < hdr) {
		snprintf(store.err, sizeof(store.err),
			 "snapshot %s: truncated in the header's value sizes", path);
		return -1;
	}
	if (store_check_tables(buf + 16, DINT_NTABLES, "snapshot", path) < 0)
		return -1;

	for (off = hdr; off < len || n_ahead; n++) {
		if (off < len) {
			const __u8 *p = buf + off;
			__u32 vs;
			__u64 h;

			if (len - off < STORE_SNAP_REC_HDR) {
				snprintf(store.err, sizeof(store.err),
					 "snapshot %s: truncated in record %lld", path,
					 n + n_ahead);
				return -1;
			}
			if (p[0] >= DINT_NTABLES) {
				snprintf(store.err, sizeof(store.err),
					 "snapshot %s: record %lld has table %u (this build has %u)",
					 path, n + n_ahead, p[0], (unsigned int)DINT_NTABLES);
				return -1;
			}
			if (p[1] > 1 || p[2] > DINT_SHARED_MAX) {
				snprintf(store.err, sizeof(store.err),
					 "snapshot %s: record %lld is corrupt (live %u, nshared %u)",
					 path, n + n_ahead, p[1], p[2]);
				return -1;
			}
			vs = DINT_VSIZE(p[0]);
			if (len - off - STORE_SNAP_REC_HDR < vs) {
				snprintf(store.err, sizeof(store.err),
					 "snapshot %s: truncated in record %lld (its value)",
					 path, n + n_ahead);
				return -1;
			}
			off += STORE_SNAP_REC_HDR + vs;
			h = store_hash(p[0], store_get64(p + 8));
			__builtin_prefetch(&store.slots[h & store.mask]);
			ahead[(head + n_ahead) % STORE_LOAD_AHEAD].p = p;
			ahead[(head + n_ahead) % STORE_LOAD_AHEAD].h = h;
			if (++n_ahead < STORE_LOAD_AHEAD && off < len) {
				n--; /* nothing inserted this round */
				continue;
			}
		}
		if (store_load_one(ahead[head].p, ahead[head].h, path) < 0)
			return -1;
		head = (head + 1) % STORE_LOAD_AHEAD;
		n_ahead--;
	}
	return n;
}

/* Fills the (empty, not yet served) store from a snapshot; every record is
 * kept, tombstones too, so versions keep growing across a reload (a key
 * repeated in the file ends up as its last record). Lock owners are
 * restored; shared holders cannot be (the file has only their number).
 * Returns the records loaded, or -1 (store.err says why). */
static inline long long store_load(const char *path)
{
	struct stat st;
	long long n;
	void *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(store.err, sizeof(store.err), "snapshot %s: cannot open: %s", path,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(store.err, sizeof(store.err), "snapshot %s: not a regular file", path);
		close(fd);
		return -1;
	}
	if (!st.st_size) {
		close(fd);
		return store_load_buf(NULL, 0, path);
	}
	buf = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (buf == MAP_FAILED) {
		snprintf(store.err, sizeof(store.err), "snapshot %s: cannot map: %s", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	n = store_load_buf(buf, st.st_size, path);
	munmap(buf, st.st_size);
	return n;
}

/* ---- Writing files. ---- */

struct store_out {
	FILE *f;
	char tmp[4096];
	const char *path;
	const char *kind;
};

static inline int store_out_open(struct store_out *o, const char *path, const char *kind)
{
	o->path = path;
	o->kind = kind;
	if ((size_t)snprintf(o->tmp, sizeof(o->tmp), "%s.tmp", path) >= sizeof(o->tmp)) {
		snprintf(store.err, sizeof(store.err), "%s %s: path too long", kind, path);
		return -1;
	}
	o->f = fopen(o->tmp, "wb");
	if (!o->f) {
		snprintf(store.err, sizeof(store.err), "%s %s: cannot create %s.tmp: %s", kind,
			 path, path, strerror(errno));
		return -1;
	}
	setvbuf(o->f, NULL, _IOFBF, 1 << 20);
	return 0;
}

/* Closes and renames into place, or removes the temporary file. */
static inline int store_out_close(struct store_out *o)
{
	int bad = ferror(o->f);
	int err = errno;

	if (fclose(o->f) && !bad) {
		bad = 1;
		err = errno;
	}
	if (!bad && rename(o->tmp, o->path) < 0) {
		snprintf(store.err, sizeof(store.err), "%s %s: rename from %s.tmp failed: %s",
			 o->kind, o->path, o->path, strerror(errno));
		unlink(o->tmp);
		return -1;
	}
	if (bad) {
		snprintf(store.err, sizeof(store.err), "%s %s: writing %s.tmp failed: %s", o->kind,
			 o->path, o->path, strerror(err));
		unlink(o->tmp);
		return -1;
	}
	return 0;
}

static inline void store_put_tables(__u8 *p)
{
	for (__u32 t = 0; t < DINT_NTABLES; t++)
		store_put16(p + 2 * t, (__u16)DINT_VSIZE(t));
}

/* Every record ever stored, tombstones included, in creation order. Only
 * once no worker runs any more. */
static inline int store_dump(const char *path)
{
	__u8 hdr[16 + 2 * DINT_NTABLES], rec[STORE_SNAP_REC_HDR + DINT_VAL_MAX];
	struct store_out o;

	if (store_out_open(&o, path, "dump") < 0)
		return -1;
	memcpy(hdr, STORE_SNAP_MAGIC, 8);
	store_put32(hdr + 8, STORE_SNAP_VERSION);
	store_put32(hdr + 12, DINT_NTABLES);
	store_put_tables(hdr + 16);
	fwrite(hdr, 1, sizeof(hdr), o.f);
	for (__u64 i = 0; i < store.nrecs && !ferror(o.f); i++) {
		const struct dint_rec *r = &store.recs[i].rec;
		const struct store_id *id = &store.ids[i];
		__u32 vs = DINT_VSIZE(id->table);

		rec[0] = id->table;
		rec[1] = r->live;
		rec[2] = (__u8)dint_shared_count(r);
		rec[3] = 0;
		store_put32(rec + 4, r->ver);
		store_put64(rec + 8, id->key);
		store_put64(rec + 16, r->owner);
		memcpy(rec + STORE_SNAP_REC_HDR, r->value, vs);
		fwrite(rec, 1, STORE_SNAP_REC_HDR + vs, o.f);
	}
	return store_out_close(&o);
}

/* The log as appended, after the workers have stopped. */
static inline int store_write_log(const char *path)
{
	__u8 hdr[8 + 4 + 2 * DINT_NTABLES + 8], rec[STORE_LOG_REC_HDR + DINT_VAL_MAX];
	__u64 n = store.log_n < store.log_cap ? store.log_n : store.log_cap;
	struct store_out o;

	if (store_out_open(&o, path, "log") < 0)
		return -1;
	memcpy(hdr, STORE_LOG_MAGIC, 8);
	store_put32(hdr + 8, DINT_NTABLES);
	store_put_tables(hdr + 12);
	store_put64(hdr + 12 + 2 * DINT_NTABLES, n);
	fwrite(hdr, 1, sizeof(hdr), o.f);
	for (__u64 i = 0; i < n && !ferror(o.f); i++) {
		const struct dint_log_rec *l = &store.log[i];
		__u32 vs = l->table < DINT_NTABLES ? DINT_VSIZE(l->table) : 0;

		store_put64(rec, l->txn);
		store_put64(rec + 8, l->key);
		store_put32(rec + 16, l->ver);
		rec[20] = l->table;
		rec[21] = rec[22] = rec[23] = 0;
		memcpy(rec + STORE_LOG_REC_HDR, l->value, vs);
		fwrite(rec, 1, STORE_LOG_REC_HDR + vs, o.f);
	}
	return store_out_close(&o);
}

#endif
