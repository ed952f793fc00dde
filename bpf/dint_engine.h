/* Request processing, written once: validates a datagram and turns it into
 * its reply in place. Compiled into the XDP program and both baseline
 * servers, so the three systems cannot answer differently. */
#ifndef DINT_ENGINE_H
#define DINT_ENGINE_H

#include "dint_proto.h"

enum dint_verdict {
	DINT_DROP = 0,  /* not a request of ours: send nothing */
	DINT_REPLY = 1, /* the buffer now holds the reply, same length */
};

/* Counters every frontend keeps, indexed the same way everywhere. */
enum dint_stat {
	DINT_STAT_RX = 0,   /* datagrams to the dint port */
	DINT_STAT_TX,       /* replies sent */
	DINT_STAT_DROP,     /* malformed datagrams dropped */
	DINT_STAT_ERR,      /* replies with an error status */
	DINT_STAT_MAX,
};

/* msg points at the UDP payload, len is the UDP payload length and end is
 * the end of readable memory (len bytes are known to fit before it). */
static __always_inline int dint_process(struct dint_hdr *msg, const void *end, __u32 len)
{
	if ((const void *)(msg + 1) > end || len < DINT_HDR_LEN)
		return DINT_DROP;
	if (msg->magic != dint_htons(DINT_MAGIC) || msg->status != DINT_ST_REQUEST)
		return DINT_DROP;
	if (msg->proto != DINT_PROTO_VERSION) {
		msg->status = DINT_ST_BAD_VERSION;
		return DINT_REPLY;
	}
	__u32 val_len = dint_ntohs(msg->val_len);
	if (val_len != len - DINT_HDR_LEN || val_len > DINT_MAX_VALUE) {
		msg->status = DINT_ST_BAD_LENGTH;
		return DINT_REPLY;
	}
	switch (msg->op) {
	case DINT_OP_ECHO:
		msg->status = DINT_ST_OK;
		return DINT_REPLY;
	default:
		msg->status = DINT_ST_UNKNOWN_OP;
		return DINT_REPLY;
	}
}

#endif
