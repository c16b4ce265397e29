/* Helpers shared by the libFuzzer targets (fuzz_segment, fuzz_heap,
 * fuzz_dict, fuzz_chan): reading the input as a stream of little-endian
 * integers (0 once it runs out), a 64-bit mixer, and writing seed inputs.
 * static inline, so a target that does not use one gets no unused-function
 * warning. */
#ifndef SHMQ_FUZZ_COMMON_H
#define SHMQ_FUZZ_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

/* Seed corpora (FUZZ_*_WRITE_SEEDS=DIR): an input built byte by byte. */
struct seed {
	uint8_t b[1024];
	size_t n;
};

/* Append n bytes (ints, each cut to a byte); what does not fit is dropped. */
static inline void emit(struct seed *s, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n && s->n < sizeof(s->b); i++)
		s->b[s->n++] = (uint8_t)va_arg(ap, int);
	va_end(ap);
}

/* Write s as DIR/name; exits on failure. */
static inline void write_seed(const char *dir, const char *name, const struct seed *s)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	if (!fp || fwrite(s->b, 1, s->n, fp) != s->n || fclose(fp) != 0) {
		perror(path);
		exit(1);
	}
}

#endif
