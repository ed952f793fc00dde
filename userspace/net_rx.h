/* What Linux's IPv4 and UDP receive path (ip_rcv, ip_rcv_options,
 * ip_route_input, ip_local_deliver, __udp4_lib_rcv) lets through to a UDP
 * socket bound to every address, for a server with no kernel behind it:
 * the DPDK server, which must accept and answer exactly the frames the
 * kernel server would. The frames the XDP program and the DPDK server
 * answer in place (engine/dint_net.h, "simple") pass these rules by
 * construction; this file is for the others: IP options, fragments (before
 * and after reassembly), broadcasts, lengths a shorter UDP length trims.
 *
 * Linux's settings it follows are those of a namespace as made, which the
 * testbed keeps: net.ipv4.conf.*.accept_source_route 0 (a source-routed
 * datagram is dropped), accept_local 0, route_localnet 0,
 * drop_unicast_in_l2_multicast 0, rp_filter 0, no CIPSO domain configured,
 * IP forwarding off (a datagram to another host is dropped). It does not
 * model routing: a datagram from a source with no route back is answered
 * (on the port it came in on), where the kernel server's reply would fail.
 * ICMP errors the kernel would send (port unreachable, parameter problem)
 * are not sent. Addresses are in network order. */
#ifndef NET_RX_H
#define NET_RX_H

#include "dint_net.h"

#define NET_RX_IPOPT_END 0
#define NET_RX_IPOPT_NOOP 1
#define NET_RX_IPOPT_RR 7
#define NET_RX_IPOPT_TIMESTAMP 68
#define NET_RX_IPOPT_LSRR 131
#define NET_RX_IPOPT_CIPSO 134
#define NET_RX_IPOPT_SSRR 137
#define NET_RX_IPOPT_RA 148
#define NET_RX_IPOPT_TS_PRESPEC 3

/* The limited broadcast, and the all-hosts group every IPv4 interface is a
 * member of (Linux delivers datagrams to both to a socket bound to every
 * address; to other groups only once joined, which the servers never do). */
#define NET_RX_LBCAST 0xFFFFFFFFu
#define NET_RX_ALL_HOSTS 0xE0000001u /* 224.0.0.1 */

/* This host's addresses, as routing sees them. */
struct net_rx_host {
	const __u32 *addrs; /* its IPv4 addresses */
	int naddrs;
	const __u32 *bcasts; /* the directed broadcasts of its prefixes (none for /31, /32) */
	int nbcasts;
};

static inline __u32 net_rx_ntohl(__u32 a)
{
	return dint_ntohl(a);
}

static inline bool net_rx_is_local(const struct net_rx_host *h, __u32 a)
{
	for (int i = 0; i < h->naddrs; i++)
		if (h->addrs[i] == a)
			return true;
	return false;
}

/* Whether the IP options of a received datagram (opt, len bytes: the header
 * past its first 20) are ones Linux takes: the checks __ip_options_compile
 * makes of a received datagram's options, then ip_rcv_options' drop of a
 * source-routed one. */
static inline bool net_rx_options_ok(const __u8 *opt, unsigned int len)
{
	bool rr = false, ts = false;
	unsigned int l = len, optlen;

	while (l > 0) {
		if (opt[0] == NET_RX_IPOPT_END)
			return true;
		if (opt[0] == NET_RX_IPOPT_NOOP) {
			opt++;
			l--;
			continue;
		}
		if (l < 2)
			return false;
		optlen = opt[1];
		if (optlen < 2 || optlen > l)
			return false;
		switch (opt[0]) {
		case NET_RX_IPOPT_SSRR:
		case NET_RX_IPOPT_LSRR:
			/* well formed or not, never taken: accept_source_route is 0 */
			return false;
		case NET_RX_IPOPT_RR:
			if (rr || optlen < 3 || opt[2] < 4)
				return false;
			if (opt[2] <= optlen && opt[2] + 3u > optlen)
				return false;
			rr = true;
			break;
		case NET_RX_IPOPT_TIMESTAMP:
			if (ts || optlen < 4 || opt[2] < 5)
				return false;
			if (opt[2] <= optlen) {
				if (opt[2] + 3u > optlen)
					return false;
				if (((opt[3] & 0xF) == 1 || (opt[3] & 0xF) == NET_RX_IPOPT_TS_PRESPEC) &&
				    opt[2] + 7u > optlen)
					return false;
			} else if ((opt[3] & 0xF) != NET_RX_IPOPT_TS_PRESPEC && opt[3] >> 4 == 15) {
				return false; /* the overflow counter would overflow */
			}
			ts = true;
			break;
		case NET_RX_IPOPT_RA:
			if (optlen < 4)
				return false;
			break;
		case NET_RX_IPOPT_CIPSO:
			/* valid only for a configured CIPSO domain, and none is */
			return false;
		default:
			break; /* any other option is carried, unread */
		}
		l -= optlen;
		opt += optlen;
	}
	return true;
}

/* Whether an IPv4 datagram from saddr to daddr is for this host, as
 * Linux's input routing decides (ip_route_input_slow, ip_route_input_mc): to
 * one of its addresses, a broadcast, or the all-hosts group, from a source
 * that is not a martian nor one of its own. (A datagram from 0.0.0.0 to
 * 0.0.0.0, which Linux takes for a broadcast, is not taken.) */
static inline bool net_rx_route(const struct net_rx_host *h, __u32 saddr, __u32 daddr)
{
	__u32 s = net_rx_ntohl(saddr), d = net_rx_ntohl(daddr);
	bool s_zeronet = (s >> 24) == 0, s_loopback = (s >> 24) == 127;

	if ((s >> 28) == 0xE || s == NET_RX_LBCAST)
		return false; /* a multicast or limited-broadcast source */
	if ((d >> 28) == 0xE) {
		/* a group: the all-hosts one only (ip_check_mc_rcu) */
		if (d != NET_RX_ALL_HOSTS || s_loopback)
			return false;
		return s_zeronet || !net_rx_is_local(h, saddr); /* zeronet: 224.0.0.0/24 allows it */
	}
	if (d == NET_RX_LBCAST)
		return s == 0 || (!s_loopback && !net_rx_is_local(h, saddr));
	if (s_zeronet || (d >> 24) == 0 || (d >> 24) == 127 || s_loopback)
		return false;
	for (int i = 0; i < h->nbcasts; i++)
		if (h->bcasts[i] == daddr)
			return !net_rx_is_local(h, saddr);
	/* a local address, from a source that is none of ours (accept_local 0) */
	return net_rx_is_local(h, daddr) && !net_rx_is_local(h, saddr);
}

/* The checks ip_rcv_core makes of an IPv4 header at ip with avail bytes of
 * frame from it: version 4, a header of at least 5 words that fits, its
 * checksum, a total length of at least the header and at most the frame.
 * Returns the header's length (*tot: the datagram's), or 0 to drop. */
static inline unsigned int net_rx_ipv4_header(const __u8 *ip, size_t avail, unsigned int *tot)
{
	unsigned int hlen, len;

	if (avail < sizeof(struct dint_ipv4) || (ip[0] >> 4) != 4)
		return 0;
	hlen = (ip[0] & 0xF) * 4u;
	if (hlen < sizeof(struct dint_ipv4) || hlen > avail)
		return 0;
	if (dint_csum_fold(dint_csum_add(0, ip, hlen, ip + hlen)) != 0xFFFF)
		return 0;
	len = (unsigned int)ip[2] << 8 | ip[3];
	if (len < hlen || len > avail)
		return 0;
	*tot = len;
	return hlen;
}

/* The ones' complement sum of n bytes at p, any n (dint_csum_add takes up
 * to DINT_SUM_MAX at a time; pieces of even length keep the words). */
static inline __u64 net_rx_csum_add(__u64 s, const __u8 *p, size_t n)
{
	const size_t piece = 1024;

	while (n > piece) {
		s = dint_csum_add(s, p, piece, p + piece);
		p += piece;
		n -= piece;
	}
	return dint_csum_add(s, p, n, p + n);
}

/* Whether a UDP datagram (udp, len bytes: header and payload, as its length
 * field says) from saddr to daddr has no checksum or a right one. */
static inline bool net_rx_udp_csum_ok(const __u8 *udp, size_t len, __u32 saddr, __u32 daddr)
{
	__u16 len_be = dint_htons((__u16)len);

	if (!udp[6] && !udp[7])
		return true;
	return dint_csum_fold(net_rx_csum_add(dint_udp_pseudo_sum(saddr, daddr, len_be), udp, len)) ==
	       0xFFFF;
}

#endif
