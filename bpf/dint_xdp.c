/* The dint data plane: answers dint requests in the driver with XDP_TX.
 * Loaded with bcc by harness/dintd.py; DINT_* constants come as -D flags. */
#include <uapi/linux/bpf.h>

#include "dint_net.h"

BPF_PERCPU_ARRAY(dint_stats, u64, DINT_STAT_MAX);

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
