/* Helpers of the fuzz targets that work on a heap's arena (fuzz_heap,
 * fuzz_dict, fuzz_chan): the block classes as heap.c sizes them, the walk
 * over the blocks carved so far, and the words worth storing in them.
 * Include after "heap.h" (struct heap_block, HEAP_CLASSES) and
 * "fuzz_common.h". static inline, as there. */
#ifndef SHMQ_FUZZ_ARENA_H
#define SHMQ_FUZZ_ARENA_H

#include <stdint.h>

#define M_HELD (1u << 30)     /* mutex.c: the held bit of a lock word */
#define SMALL_CLASSES 15u     /* heap.c */

struct blk {
	uint64_t off; /* payload offset */
	uint64_t size;
};

static inline uint64_t class_size(unsigned c) /* as heap.c */
{
	if (c < SMALL_CLASSES)
		return 32 + 16 * (uint64_t)c;
	unsigned k = c - SMALL_CLASSES;
	uint64_t base = 256ull << (k / 4);
	return base + base / 4 * (k % 4 + 1);
}

/* The blocks of seg carved from off up to brk (clipped to size), at most
 * max of them into out; stops at a block whose class is out of range.
 * Returns how many. */
static inline unsigned arena_blocks(const unsigned char *seg, uint64_t size, uint64_t off,
				    uint64_t brk, struct blk *out, unsigned max)
{
	unsigned n = 0;
	if (brk > size)
		brk = size;
	while (off + sizeof(struct heap_block) <= brk && n < max) {
		const struct heap_block *b = (const struct heap_block *)(seg + off);
		if (b->cls >= HEAP_CLASSES)
			break;
		uint64_t bsize = class_size(b->cls);
		out[n++] = (struct blk){ off + sizeof(*b), bsize - sizeof(*b) };
		off += bsize;
	}
	return n;
}

#define ARENA_WORDS 14u /* kinds of arena_word */

/* A word worth storing in an arena, of kind 0 .. ARENA_WORDS - 1: offsets of
 * blocks (blocks, n), edge values, lock-like words, cur moved a little or a
 * bit flipped, an offset near the end of a file of size bytes. delta is a
 * small signed step taken from the same input byte as the kind. */
static inline uint64_t arena_word(struct input *in, unsigned kind, int64_t delta, uint64_t cur,
				  const struct blk *blocks, unsigned n, uint64_t size)
{
	switch (kind) {
	case 0: return u64(in);
	case 1: return u8(in);
	case 2: return n ? blocks[u16(in) % n].off + (uint64_t)(delta * 8) : 0;
	case 3: return n ? blocks[u16(in) % n].off - 16 : 0;
	case 4: return 0;
	case 5: return ~0ull;
	case 6: return (uint64_t)INT64_MAX;
	case 7: return (uint64_t)INT64_MIN;
	case 8: return M_HELD | (u32(in) & (M_HELD - 1));
	case 9: return cur + (uint64_t)delta;
	case 10: return cur ^ (1ull << (u8(in) % 64));
	case 11: return size - 8 * (1 + u8(in));
	case 12: return 1ull << (u8(in) % 64);
	default: return (uint64_t)(int64_t)(int8_t)u8(in);
	}
}

#endif
