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

#endif
