/* What the shared headers need from their compiler, so the same C builds as
 * an XDP program (bcc's clang) and as user-space servers (gcc). */
#ifndef DINT_COMPAT_H
#define DINT_COMPAT_H

#include <linux/types.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define dint_htons(x) ((__u16)__builtin_bswap16(x))
#define dint_htonl(x) ((__u32)__builtin_bswap32(x))
#define dint_htonll(x) ((__u64)__builtin_bswap64(x))
#else
#define dint_htons(x) ((__u16)(x))
#define dint_htonl(x) ((__u32)(x))
#define dint_htonll(x) ((__u64)(x))
#endif
#define dint_ntohs dint_htons
#define dint_ntohl dint_htonl
#define dint_ntohll dint_htonll

/* Loads and stores at any alignment: a frame's IPv4 header starts 2 bytes
 * past a word, and a request's fields (struct dint_hdr is packed) lie at odd
 * offsets. The BPF target turns an access it does not know to be aligned
 * into byte loads and shifts (a packed __u64 costs 22 instructions), so
 * there the pointer is cast (x86's and arm64's JITs and the verifier take
 * unaligned packet loads); in user space memcpy, which gcc makes one load. */
#ifdef DINT_BPF /* defined by the XDP program (bcc's front end sees the host's target) */
#define dint_ld16(p) (*(const __u16 *)(const void *)(p))
#define dint_ld32(p) (*(const __u32 *)(const void *)(p))
#define dint_ld64(p) (*(const __u64 *)(const void *)(p))
#define dint_st16(p, v) (*(__u16 *)(void *)(p) = (__u16)(v))
#define dint_st32(p, v) (*(__u32 *)(void *)(p) = (__u32)(v))
#define dint_st64(p, v) (*(__u64 *)(void *)(p) = (__u64)(v))
#else
static inline __u16 dint_ld16(const void *p) { __u16 v; __builtin_memcpy(&v, p, 2); return v; }
static inline __u32 dint_ld32(const void *p) { __u32 v; __builtin_memcpy(&v, p, 4); return v; }
static inline __u64 dint_ld64(const void *p) { __u64 v; __builtin_memcpy(&v, p, 8); return v; }
static inline void dint_st16(void *p, __u16 v) { __builtin_memcpy(p, &v, 2); }
static inline void dint_st32(void *p, __u32 v) { __builtin_memcpy(p, &v, 4); }
static inline void dint_st64(void *p, __u64 v) { __builtin_memcpy(p, &v, 8); }
#endif

#endif
