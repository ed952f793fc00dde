/* Pass-through XDP program for the client ends of the testbed's veth pairs:
 * a veth drops frames sent to it with XDP_TX unless it runs NAPI, and an
 * attached XDP program is what turns NAPI on. Built with clang into
 * build/xdp_pass.o and attached with iproute2. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
