/* Ethernet/IPv4/UDP framing around dint messages, for the two frontends that
 * see whole frames (the XDP program and the DPDK server): parsed and checked
 * once here, with the bounds checks the BPF verifier wants.
 *
 * Both frontends answer in place only what this file calls a simple frame:
 * an untagged IPv4 datagram without options, not a fragment, to the dint
 * port, at least as long as a request header and no longer than a request
 * may be, whose IPv4 header checksum, lengths and UDP checksum (or none)
 * are right and whose source is an ordinary unicast address and port. The frontend then
 * checks the addresses are its own (destination MAC and IPv4 address of the
 * interface, a source that is not one of its addresses). Everything else
 * goes the way the kernel's stack takes it: the XDP program passes it to the
 * kernel (which drops it, or reassembles it and strips its options and
 * hands it to the slow path's socket); the DPDK server, which has no kernel
 * behind it, applies the kernel's rules itself (userspace/net_rx.h). */
#ifndef DINT_NET_H
#define DINT_NET_H

#include "dint_engine.h"

/* Our own minimal header layouts: the kernel's (linux/ip.h) and glibc's
 * (netinet/ip.h, pulled in by DPDK) clash when both are included. */
#define DINT_ETH_ALEN 6
#define DINT_ETH_P_IP 0x0800
#define DINT_ETH_P_8021Q 0x8100
#define DINT_IPPROTO_UDP 17
#define DINT_IP_MF 0x2000     /* more fragments */
#define DINT_IP_OFFSET 0x1FFF /* fragment offset, in 8-byte units */
#define DINT_IP_DF 0x4000     /* don't fragment */
/* The TTL of every reply: what Linux gives a datagram it sends (its default
 * net.ipv4.ip_default_ttl), whatever the request's was. */
#define DINT_REPLY_TTL 64

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

/* (dint_ld16/32/64, loads at any alignment: dint_compat.h) */

/* ---- The Internet checksum (RFC 1071). Sums are of 16-bit words as they
 * lie in memory, loaded in the CPU's order: a ones' complement sum comes out
 * the same, byte-swapped, in either order, so a sum that folds to 0xFFFF is
 * right in both and no byte is swapped. ---- */

static __always_inline __u16 dint_csum_fold(__u64 s)
{
	s = (s & 0xFFFFFFFF) + (s >> 32);
	s = (s & 0xFFFFFFFF) + (s >> 32);
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	return (__u16)s;
}

/* Whether a sum of fewer than 2^16 32-bit words (an IPv4 header, a
 * datagram dint takes) folds to 0xFFFF: three folds leave at most 0x10000,
 * which a fourth would make 1, so the test needs no fourth. */
static __always_inline int dint_csum_ok(__u64 s)
{
	s = (s >> 32) + (__u32)s;
	s = (s >> 16) + (s & 0xFFFF);
	s = (s >> 16) + (s & 0xFFFF);
	return s == 0xFFFF;
}

/* The unfolded sum of n bytes at p, n at most DINT_SUM_MAX; end bounds the
 * readable memory (the verifier's; p + n never passes it). An odd last byte
 * counts as the first of a word padded with zero. Each round's loads are at
 * constant offsets, checked against end: the form the BPF verifier follows. */
#define DINT_SUM_MAX (sizeof(struct dint_udp) + DINT_HDR_LEN + DINT_MAX_VALUE)
#ifdef __clang__
#define DINT_UNROLL _Pragma("unroll")
#else
#define DINT_UNROLL
#endif

static __always_inline __u64 dint_csum_add(__u64 s, const __u8 *p, __u64 n, const void *end)
{
	__u64 blocks, words; /* 64-bit: a 32-bit compare would bound a copy the verifier cannot link */

	/* The compiler may know n is small and p + n within end, and drop
	 * the checks below that the verifier needs: from here it knows
	 * nothing of n and end. */
	asm volatile("" : "+r"(n), "+r"(end));
	if (n > DINT_SUM_MAX)
		return 0; /* cannot be: the caller checks */
	blocks = n / 32;
	/* 32-bit loads (BPF's zero-extend: no masking), summed in pairs */
	for (int i = 0; i < (int)(DINT_SUM_MAX / 32); i++) {
		const __u8 *q = p + 32 * i;

		if ((__u64)i >= blocks || (const void *)(q + 32) > end)
			break;
		s += ((__u64)dint_ld32(q) + dint_ld32(q + 4)) + ((__u64)dint_ld32(q + 8) + dint_ld32(q + 12)) +
		     ((__u64)dint_ld32(q + 16) + dint_ld32(q + 20)) + ((__u64)dint_ld32(q + 24) + dint_ld32(q + 28));
	}
	p += (n & ~31ull);
	words = (n & 31) / 8;
	DINT_UNROLL
	for (int i = 0; i < 3; i++) {
		if ((__u64)i >= words || (const void *)(p + 8 * i + 8) > end)
			break;
		s += (__u64)dint_ld32(p + 8 * i) + dint_ld32(p + 8 * i + 4);
	}
	p += (n & 31 & ~7ull);
	n &= 7;
	if (n >= 4 && (const void *)(p + 4) <= end) {
		s += dint_ld32(p);
		p += 4;
		n -= 4;
	}
	if (n >= 2 && (const void *)(p + 2) <= end) {
		s += dint_ld16(p);
		p += 2;
		n -= 2;
	}
	if (n >= 1 && (const void *)(p + 1) <= end) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		s += *p;
#else
		s += (__u32)*p << 8;
#endif
	}
	return s;
}

/* Whether the IPv4 header of ihl 32-bit words at ip sums right. */
static __always_inline int dint_ipv4_csum_ok(const struct dint_ipv4 *ip)
{
	const __u8 *w = (const __u8 *)ip;

	return dint_csum_ok((__u64)dint_ld32(w) + dint_ld32(w + 4) + dint_ld32(w + 8) + dint_ld32(w + 12) +
			    dint_ld32(w + 16));
}

/* The sum of the UDP pseudo-header: addresses, protocol, UDP length. */
static __always_inline __u64 dint_udp_pseudo_sum(__u32 saddr, __u32 daddr, __u16 udp_len_be)
{
	return (__u64)saddr + daddr + dint_htons(DINT_IPPROTO_UDP) + udp_len_be;
}

/* ---- Addresses ---- */

/* What Linux takes for a martian source (ip_route_input_slow) whatever the
 * destination: a multicast or limited-broadcast source, 0.0.0.0/8 (but to a
 * broadcast or multicast group, which the simple path never takes anyway)
 * and 127.0.0.0/8 (route_localnet is off). Addresses in network order. */
static __always_inline int dint_ipv4_martian_src(__u32 saddr)
{
	__u8 first = ((const __u8 *)&saddr)[0];

	return first == 0 || first == 127 || first >= 224;
}

/* ---- Frames ---- */

/* Returns 0 for an IPv4 UDP datagram to DINT_PORT whose UDP length fits the
 * frame (frames may be padded, so the UDP length is what counts); -1 for
 * anything else. No checksum or address is checked: for frames the caller
 * made itself (the slow path's) or has already checked. */
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

/* The shortest datagram the simple path takes: a UDP header and a request's. */
#define DINT_UDP_MIN (sizeof(struct dint_udp) + DINT_HDR_LEN)

/* Returns 0 for a simple frame (see the top of this file) and fills f; -1
 * for anything else, which the frontend leaves to the kernel's rules. The
 * addresses are the frontend's to check. The IPv4 total length may be less
 * than the frame (padding), never more; the UDP length must be the rest of
 * the IPv4 datagram (a shorter one Linux trims to, which the slow way
 * does); the datagram at least DINT_UDP_MIN bytes and no longer than a
 * request may be (DINT_SUM_MAX: a longer one is answered BAD_LENGTH, a
 * shorter one dropped, the slow way). */
static __always_inline int dint_simple_frame(void *data, const void *end, struct dint_frame *f)
{
	/* fields by offset, loaded whole (a packed struct's are loaded byte
	 * by byte in BPF) */
	const __u8 *d = data, *ip = d + sizeof(struct dint_eth), *udp = ip + sizeof(struct dint_ipv4);
	__u32 ip_len, udp_len, saddr;
	__u16 udp_len_be, check;

	/* a datagram shorter than a request header is malformed: left to the
	 * slow way, which drops it as the engine would */
	if ((const void *)(udp + DINT_UDP_MIN) > end)
		return -1;
	if (dint_ld16(d + 12) != dint_htons(DINT_ETH_P_IP) || ip[0] != 0x45 || ip[9] != DINT_IPPROTO_UDP ||
	    dint_ld16(udp + 2) != dint_htons(DINT_PORT))
		return -1;
	if (dint_ld16(ip + 6) & dint_htons(DINT_IP_MF | DINT_IP_OFFSET))
		return -1;
	ip_len = dint_ntohs(dint_ld16(ip + 2));
	udp_len_be = dint_ld16(udp + 4);
	udp_len = dint_ntohs(udp_len_be);
	if (udp_len != ip_len - sizeof(struct dint_ipv4) || udp_len < DINT_UDP_MIN ||
	    udp_len > DINT_SUM_MAX || (const char *)udp + udp_len > (const char *)end)
		return -1;
	saddr = dint_ld32(ip + 12);
	if (!dint_ipv4_csum_ok((const struct dint_ipv4 *)ip) || dint_ipv4_martian_src(saddr) || !dint_ld16(udp))
		return -1;
	check = dint_ld16(udp + 6);
	if (check) {
		/* the headers' 48 bytes, which every such datagram has, then
		 * the value */
		__u64 sum = dint_udp_pseudo_sum(saddr, dint_ld32(ip + 16), udp_len_be);

		/* a load and an add a word: without the barrier clang loads all
		 * twelve first and spills them to the stack */
		DINT_UNROLL
		for (int i = 0; i < (int)DINT_UDP_MIN; i += 4) {
			sum += dint_ld32(udp + i);
			asm volatile("" : "+r"(sum));
		}
		if (!dint_csum_ok(dint_csum_add(sum, udp + DINT_UDP_MIN, udp_len - DINT_UDP_MIN, end)))
			return -1;
	}
	f->eth = data;
	f->ip = (void *)ip;
	f->udp = (void *)udp;
	f->msg = (void *)(udp + sizeof(struct dint_udp));
	f->msg_len = udp_len - sizeof(struct dint_udp);
	return 0;
}

/* The frame's bytes past its IPv4 datagram (Ethernet padding): the reply
 * leaves without them. */
static __always_inline __u32 dint_frame_padding(const struct dint_frame *f, const void *end)
{
	return (__u32)((const char *)end - (const char *)f->ip) - dint_ntohs(f->ip->tot_len);
}

/* Turns the request frame around: the reply goes back the way it came,
 * with the TTL a reply from Linux would have (the IPv4 checksum follows the
 * TTL's change, RFC 1624; swapping addresses leaves it unchanged). The UDP
 * checksum is optional over IPv4 and left out. */
static __always_inline void dint_reverse_frame(struct dint_frame *f)
{
	/* whole words at any alignment (dint_ld*): a packed header's fields
	 * are moved byte by byte on the BPF target */
	__u8 *eth = (__u8 *)f->eth, *ip = (__u8 *)f->ip, *udp = (__u8 *)f->udp;
	__u32 dst4 = dint_ld32(eth), src4 = dint_ld32(eth + 6), addr = dint_ld32(ip + 12);
	__u16 dst2 = dint_ld16(eth + 4), src2 = dint_ld16(eth + 10);
	__u16 old = dint_ld16(ip + 8), new;
	__u32 ports = dint_ld32(udp), s;

	dint_st32(eth, src4);
	dint_st16(eth + 4, src2);
	dint_st32(eth + 6, dst4);
	dint_st16(eth + 10, dst2);
	dint_st32(ip + 12, dint_ld32(ip + 16));
	dint_st32(ip + 16, addr);
	f->ip->ttl = DINT_REPLY_TTL;
	new = dint_ld16(ip + 8);
	s = (__u16)~dint_ld16(ip + 10) + (__u32)(__u16)~old + new;
	s = (s & 0xFFFF) + (s >> 16);
	s = (s & 0xFFFF) + (s >> 16);
	dint_st16(ip + 10, (__u16)~s);
	/* source and destination ports swapped, the checksum left out */
	dint_st32(udp, (ports >> 16) | (ports << 16));
	dint_st16(udp + 6, 0);
}

#endif
