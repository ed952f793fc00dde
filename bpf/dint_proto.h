/* Wire format of the dint protocol (v0): one request or reply per UDP
 * datagram. The only definition of the layout: the XDP program, both baseline
 * servers and, through harness/protocol.py (checked against this file by the
 * tests), the Python client all use it. Multi-byte fields are big-endian. */
#ifndef DINT_PROTO_H
#define DINT_PROTO_H

#include "dint_compat.h"

#define DINT_MAGIC 0xD17E
#define DINT_PROTO_VERSION 0

#ifndef DINT_PORT
#define DINT_PORT 7777
#endif

/* Largest value a datagram may carry (bytes after the header). */
#ifndef DINT_MAX_VALUE
#define DINT_MAX_VALUE 1024
#endif

enum dint_op {
	DINT_OP_ECHO = 1,
};

/* A request carries DINT_ST_REQUEST; every reply carries another status, so a
 * server never answers a reply (no reflection loops). */
enum dint_status {
	DINT_ST_REQUEST = 0,
	DINT_ST_OK = 1,
	DINT_ST_UNKNOWN_OP = 2,
	DINT_ST_BAD_VERSION = 3,
	DINT_ST_BAD_LENGTH = 4,
};

struct dint_hdr {
	__u16 magic;     /* DINT_MAGIC */
	__u8 proto;      /* DINT_PROTO_VERSION */
	__u8 op;         /* enum dint_op */
	__u8 status;     /* enum dint_status */
	__u8 table;
	__u16 val_len;   /* bytes of value following the header */
	__u32 client_id; /* request id, part 1: the sending client */
	__u32 seq;       /* request id, part 2: that client's sequence number */
	__u64 key;
	__u32 ver;       /* version of the value */
} __attribute__((packed));

#define DINT_HDR_LEN 28
_Static_assert(sizeof(struct dint_hdr) == DINT_HDR_LEN, "dint_hdr layout changed");

#endif
