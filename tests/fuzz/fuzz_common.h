/* Helpers shared by the libFuzzer targets (fuzz_segment, fuzz_heap,
 * fuzz_dict): reading the input as a stream of little-endian integers (0
 * once it runs out) and a 64-bit mixer. static inline, so a target that does
 * not use one gets no unused-function warning. */
#ifndef SHMQ_FUZZ_COMMON_H
#define SHMQ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

struct input {
	const uint8_t *p;
	size_t n;
};

static inline unsigned u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* The low part is read first: each read is its own statement, as the order
 * of evaluation of the operands of | is unspecified. */
static inline unsigned u16(struct input *in)
{
	unsigned lo = u8(in);
	return lo | u8(in) << 8;
}

static inline uint32_t u32(struct input *in)
{
	uint32_t lo = u16(in);
	return lo | (uint32_t)u16(in) << 16;
}

static inline uint64_t u64(struct input *in)
{
	uint64_t lo = u32(in);
	return lo | (uint64_t)u32(in) << 32;
}

static inline uint64_t mix(uint64_t x) /* splitmix64 */
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

#endif
