/* What a transaction may hold (see held.h). */
#include "held.h"
#include "reqtable.h"

static int find(const struct held *h, uint8_t table, uint64_t key, uint8_t dest)
{
	for (uint32_t i = 0; i < h->n; i++)
		if (h->keys[i].key == key && h->keys[i].table == table && h->keys[i].dest == dest)
			return (int)i;
	return -1;
}

static int add(struct held *h, uint8_t table, uint64_t key, uint8_t dest, uint16_t vlen)
{
	if (find(h, table, key, dest) >= 0)
		return 0;
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? 2 * h->cap : 16;
		struct held_key *k = PyMem_Realloc(h->keys, cap * sizeof(*k));
		if (!k) {
			PyErr_NoMemory();
			return -1;
		}
		h->keys = k;
		h->cap = cap;
	}
	h->keys[h->n++] = (struct held_key){ .key = key, .vlen = vlen, .table = table, .dest = dest };
	return 0;
}

int held_track(struct held *h, uint8_t op, const void *req, uint8_t dest, uint16_t retries, int status)
{
	const struct dint_hdr *r = req;

	if (op == DINT_OP_LOCK_SHARED || op == DINT_OP_LOCK_EXCL || (op == DINT_OP_INSERT && !r->ver)) {
		if (status == DINT_ST_OK || retries)
			return add(h, r->table, be64toh(r->key), dest, ntohs(r->val_len));
	} else if ((op == DINT_OP_COMMIT_PRIMARY || op == DINT_OP_ABORT) && status == DINT_ST_OK) {
		int i = find(h, r->table, be64toh(r->key), dest);
		if (i >= 0)
			h->keys[i] = h->keys[--h->n];
	}
	return 0;
}

void held_free(struct held *h)
{
	PyMem_Free(h->keys);
	h->keys = NULL;
	h->n = h->cap = 0;
}
