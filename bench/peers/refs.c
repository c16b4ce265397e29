/* Reference rows: what the machine itself can do.
 *  memcpy     one core copying messages into a ring-sized buffer (GB/s): a
 *             queue copies every byte twice, on two cores.
 *  cacheline  two processes pinned to two cores bouncing one cache line each
 *             way (spinning): the floor of any cross-core hand-off.
 *  futex      two processes waking each other with bare shared futexes (no
 *             spinning, always FUTEX_WAKE): the floor of a blocking hand-off. */
#include "../peer.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------------- memcpy -- */

static const char *memcpy_skip(const struct bench_case *c)
{
	return c->size < 1024 ? "only for messages of 1 KiB and more" : NULL;
}

static int memcpy_run(const struct bench_case *c, struct bench_run *out)
{
	size_t size = c->size, ring = bench_depth(size) * size;
	char *src = bench_buf(size), *dst = bench_buf(ring);
	if (!src || !dst)
		return -ENOMEM;
	int64_t t0 = bench_now(), end = t0 + (int64_t)(c->secs * 1e9), now = t0;
	uint64_t n = 0;
	size_t off = 0;
	for (;;) {
		for (int i = 0; i < 16; i++) {
			memcpy(dst + off, src, size);
			__asm__ __volatile__("" : : "r"(dst) : "memory");
			off += size;
			if (off + size > ring)
				off = 0;
		}
		n += 16;
		now = bench_now();
		if (now >= end)
			break;
	}
	free(src);
	free(dst);
	out->msgs = n;
	out->wall_ns = now - t0;
	return 0;
}

const struct bench_peer peer_memcpy = {
	.name = "memcpy",
	.label = "ref: memcpy 1 core",
	.flags = PF_MAIN | PF_REF | PF_MAX_1X1 | PF_TPUT_ONLY,
	.skip = memcpy_skip,
	.run = memcpy_run,
};

/* ---------------------------------------------------------- ping-pongs -- */

struct lines {
	_Alignas(128) _Atomic uint32_t a;
	_Alignas(128) _Atomic uint32_t b;
};

#define QUIT UINT32_MAX

static int lines_setup(const struct bench_case *c, void **ctx)
{
	(void)c;
	void *m = mmap(NULL, sizeof(struct lines), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	*ctx = m;
	return 0;
}

static void lines_teardown(void *ctx) { munmap(ctx, sizeof(struct lines)); }

static const char *cacheline_skip(const struct bench_case *c)
{
	(void)c;
	return sysconf(_SC_NPROCESSORS_ONLN) < 2 ? "needs two cores" : NULL;
}

static int cl_ping(void *ctx, struct bench_worker *w)
{
	struct lines *l = ctx;
	bench_pin(0);
	bench_ready(w);
	int64_t t0 = bench_now();
	uint32_t i = 1;
	for (; bench_pp_more(w, i) && i < QUIT - 1; i++) {
		atomic_store_explicit(&l->a, i, memory_order_release);
		while (atomic_load_explicit(&l->b, memory_order_acquire) != i)
			bench_pause();
	}
	bench_pp_record(w, i - 1, bench_now() - t0);
	atomic_store(&l->a, QUIT);
	return 0;
}

static int cl_pong(void *ctx, struct bench_worker *w)
{
	struct lines *l = ctx;
	bench_pin(1);
	bench_ready(w);
	uint32_t last = 0, v;
	for (;;) {
		while ((v = atomic_load_explicit(&l->a, memory_order_acquire)) == last)
			bench_pause();
		if (v == QUIT)
			break;
		atomic_store_explicit(&l->b, v, memory_order_release);
		last = v;
	}
	return 0;
}

const struct bench_peer peer_cacheline = {
	.name = "cacheline",
	.label = "ref: cache line (spin)",
	.flags = PF_MAIN | PF_REF | PF_MAX_1X1 | PF_TPUT_ONLY,
	.skip = cacheline_skip,
	.pp_setup = lines_setup,
	.ping = cl_ping,
	.pong = cl_pong,
	.pp_teardown = lines_teardown,
};

static void fwait(_Atomic uint32_t *f, uint32_t v)
{
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void fwake(_Atomic uint32_t *f)
{
	syscall(SYS_futex, (uint32_t *)f, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int fx_ping(void *ctx, struct bench_worker *w)
{
	struct lines *l = ctx;
	bench_ready(w);
	int64_t t0 = bench_now();
	uint32_t i = 1;
	for (; bench_pp_more(w, i) && i < QUIT - 1; i++) {
		atomic_store(&l->a, i);
		fwake(&l->a);
		uint32_t v;
		while ((v = atomic_load(&l->b)) != i)
			fwait(&l->b, v);
	}
	bench_pp_record(w, i - 1, bench_now() - t0);
	atomic_store(&l->a, QUIT);
	fwake(&l->a);
	return 0;
}

static int fx_pong(void *ctx, struct bench_worker *w)
{
	struct lines *l = ctx;
	bench_ready(w);
	uint32_t last = 0, v;
	for (;;) {
		while ((v = atomic_load(&l->a)) == last)
			fwait(&l->a, last);
		if (v == QUIT)
			break;
		atomic_store(&l->b, v);
		fwake(&l->b);
		last = v;
	}
	return 0;
}

const struct bench_peer peer_futex = {
	.name = "futex",
	.label = "ref: bare futex",
	.flags = PF_MAIN | PF_REF | PF_MAX_1X1 | PF_TPUT_ONLY,
	.pp_setup = lines_setup,
	.ping = fx_ping,
	.pong = fx_pong,
	.pp_teardown = lines_teardown,
};
