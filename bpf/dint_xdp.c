/* The dint data plane: answers dint requests in the driver with XDP_TX,
 * running the engine of dint_engine.h on records in BPF maps. Loaded with
 * bcc by harness/dintd.py; DINT_* constants come as -D flags. */
#include <uapi/linux/bpf.h>

#define DINT_LATCH_T struct bpf_spin_lock
#define dint_latch(r) bpf_spin_lock(&(r)->latch)
#define dint_unlatch(r) bpf_spin_unlock(&(r)->latch)

#include "dint_net.h"

#ifndef DINT_STORE_CAPACITY
#define DINT_STORE_CAPACITY 1048576
#endif
/* Log records per CPU; the user-space drain frees them. */
#ifndef DINT_LOG_CAPACITY
#define DINT_LOG_CAPACITY 16384
#endif
/* CPUs the log has a ring for (all possible ones; dintd passes the count). */
#ifndef DINT_NCPUS
#define DINT_NCPUS 2
#endif

struct dint_key {
	__u64 key;
	__u32 table;
	__u32 pad;
};

BPF_PERCPU_ARRAY(dint_stats, u64, DINT_STAT_MAX);
BPF_HASH(dint_store, struct dint_key, struct dint_rec, DINT_STORE_CAPACITY);
/* The log: CPU c's ring is entries [c * DINT_LOG_CAPACITY, (c + 1) * ...),
 * memory-mapped by the drain, which reads it without a syscall per record. */
BPF_F_TABLE("array", int, struct dint_log_rec, dint_log_ring, DINT_NCPUS * DINT_LOG_CAPACITY,
	    BPF_F_MMAPABLE);
/* Each CPU's log ring: records [tail, head) are waiting for the drain. Only
 * this program writes head, only user space writes tail. */
BPF_PERCPU_ARRAY(dint_log_head, u64, 1);
BPF_PERCPU_ARRAY(dint_log_tail, u64, 1);

static __always_inline struct dint_rec *dint_store_find(__u8 table, __u64 key)
{
	struct dint_key k = { .key = key, .table = table };
	return dint_store.lookup(&k);
}

static __always_inline struct dint_rec *dint_store_insert(__u8 table, __u64 key)
{
	struct dint_key k = { .key = key, .table = table };
	struct dint_rec *r = dint_store.lookup(&k);
	struct dint_rec zero = {};

	if (r)
		return r;
	/* BPF_NOEXIST: of two CPUs inserting the key, one creates it */
	dint_store.insert(&k, &zero);
	return dint_store.lookup(&k);
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
	/* per-CPU, and XDP does not nest: no other writer. The drain reads
	 * records below head only. */
	*head += 1;
	return 0;
}

static __always_inline void count(int stat)
{
	u64 *v = dint_stats.lookup(&stat);
	if (v)
		*v += 1;
}

int dint_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct dint_frame f;

	if (dint_parse_frame(data, end, &f) < 0)
		return XDP_PASS;
	count(DINT_STAT_RX);
	if (dint_process(f.msg, end, f.msg_len) == DINT_DROP) {
		count(DINT_STAT_DROP);
		return XDP_DROP;
	}
	if (f.msg->status != DINT_ST_OK)
		count(DINT_STAT_ERR);
	dint_reverse_frame(&f);
	count(DINT_STAT_TX);
	return XDP_TX;
}
