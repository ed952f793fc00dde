/* Ethernet/IPv4/UDP framing around dint messages, for the two frontends that
 * see whole frames (the XDP program and the DPDK server): parsed once here,
 * with the bounds checks the BPF verifier wants. */
#ifndef DINT_NET_H
#define DINT_NET_H

#include "dint_engine.h"

/* Our own minimal header layouts: the kernel's (linux/ip.h) and glibc's
 * (netinet/ip.h, pulled in by DPDK) clash when both are included. */
#define DINT_ETH_ALEN 6
#define DINT_ETH_P_IP 0x0800
#define DINT_IPPROTO_UDP 17

struct dint_eth {
	__u8 dst[DINT_ETH_ALEN];
	__u8 src[DINT_ETH_ALEN];
	__u16 proto;
} __attribute__((packed));

struct dint_ipv4 {
	__u8 ver_ihl; /* 0x45: version 4, 5 words, no options */
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
} __attribute__((packed));

struct dint_udp {
	__u16 source;
	__u16 dest;
	__u16 len;
	__u16 check;
} __attribute__((packed));

struct dint_frame {
	struct dint_eth *eth;
	struct dint_ipv4 *ip;
	struct dint_udp *udp;
	struct dint_hdr *msg; /* UDP payload */
	__u32 msg_len;        /* UDP payload length, from the UDP header */
};

/* Returns 0 for an IPv4 UDP datagram to DINT_PORT whose UDP length fits the
 * frame (frames may be padded, so the UDP length is what counts); -1 for
 * anything else, which is not ours to answer. */
static __always_inline int dint_parse_frame(void *data, const void *end, struct dint_frame *f)
{
	struct dint_eth *eth = data;
	struct dint_ipv4 *ip = (void *)(eth + 1);
	struct dint_udp *udp = (void *)(ip + 1);

	if ((const void *)(udp + 1) > end)
		return -1;
	if (eth->proto != dint_htons(DINT_ETH_P_IP) || ip->ver_ihl != 0x45 ||
	    ip->protocol != DINT_IPPROTO_UDP || udp->dest != dint_htons(DINT_PORT))
		return -1;
	__u32 udp_len = dint_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || (const char *)udp + udp_len > (const char *)end)
		return -1;
	f->eth = eth;
	f->ip = ip;
	f->udp = udp;
	f->msg = (void *)(udp + 1);
	f->msg_len = udp_len - sizeof(*udp);
	return 0;
}

/* Turns the request frame around: the reply goes back the way it came. The
 * IPv4 checksum is unchanged by swapping addresses; the UDP checksum is
 * optional over IPv4 and left out. */
static __always_inline void dint_reverse_frame(struct dint_frame *f)
{
	__u8 mac[DINT_ETH_ALEN];
	__u32 addr = f->ip->saddr;
	__u16 port = f->udp->source;

	__builtin_memcpy(mac, f->eth->src, DINT_ETH_ALEN);
	__builtin_memcpy(f->eth->src, f->eth->dst, DINT_ETH_ALEN);
	__builtin_memcpy(f->eth->dst, mac, DINT_ETH_ALEN);
	f->ip->saddr = f->ip->daddr;
	f->ip->daddr = addr;
	f->udp->source = f->udp->dest;
	f->udp->dest = port;
	f->udp->check = 0;
}

#endif
