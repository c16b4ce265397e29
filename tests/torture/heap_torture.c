/* Kill -9 torture of a heap: worker processes share one anonymous heap (64
 * MiB) and loop, at high rate, over everything a process does with it, while
 * this supervisor SIGKILLs them at random moments (half of the kills wait, up
 * to 20 ms, for the victim to be inside a Lock's critical section, an
 * allocation or free, an object's create or close, or a semaphore round;
 * one kill in 16 takes every worker at once) and forks replacements, which
 * inherit the supervisor's handles on the named objects. Each worker loops
 * over:
 *
 *   - heap_alloc/heap_free of random sizes (16 B .. 64 KiB, log-uniform),
 *     each block given a pattern of its own (its first 64 bytes, 8 bytes
 *     every 256, its last 8) that is verified before it is freed (a block
 *     handed out twice, or freed under its owner, shows);
 *   - create/use/close of anonymous objects of every kind (Lock and RLock,
 *     plain and UNDO semaphores, conditions with their own lock and over a
 *     Lock, events, barriers of one party, arrays with and without a lock),
 *     up to four held at once (a killed worker leaves them behind);
 *   - open/use/close of named objects of every kind;
 *   - a shared Lock ("lock") and an RLock ("rlock", taken twice) each
 *     guarding a counter pair in an array: a++, some work, b++. Taken with 0,
 *     a == b must hold; taken with -EOWNERDEAD, the holder recorded must be
 *     dead, and the pair is repaired;
 *   - an UNDO semaphore ("usem", 2 units): a consistent snapshot of the
 *     units held by workers not marked for death never exceeds 2.
 *
 * A killed worker's raw blocks are freed by the supervisor (the worker
 * records each block before it writes it and marks it before it frees it: a
 * kill inside heap_alloc or heap_free leaks at most that one block).
 * At the end, with every worker stopped (they close everything and exit 0):
 *
 *   - heap_check() returns 0, shmq_heap_stat() works, and the heap counts
 *     only the named objects (what dead workers held anonymously was freed
 *     when they were reaped) and one handle (ours);
 *   - Lock and RLock are acquirable within 1 s (0 or -EOWNERDEAD); every
 *     death that held one (seen by its flag) was reported -EOWNERDEAD to the
 *     next holder, and no more of them than kills; each counter moved by at
 *     least the increments workers completed and at most one more per kill;
 *   - the UNDO semaphore is back at 2 units: two acquires with timeout 0
 *     succeed, a third gets -EAGAIN;
 *   - memory was reused: 'used' (bytes ever carved) stays under
 *     --max-used-mib (16) after millions of allocations;
 *   - nobody hung (no call past its timeout + 3 s) or exited badly.
 *
 * Usage: heap_torture [--kills N] [--workers N] [--seed S] [--interval-ms MS]
 *                     [--max-used-mib M]
 * The meson test runs the defaults (200 kills, 4 workers, about 20 s);
 * tests/torture/README.md has the long run. Prints one summary line, PASS or
 * FAIL: why; exit status 0 when every check holds. */
#include "../common.h"
#include "heap.h" /* src/: heap_alloc, heap_free, heap_at, heap_check */

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>

#define MAX_KIDS 64u
#define MAX_RAW 4u             /* raw blocks a worker holds at once */
#define MAX_ANON 4u            /* anonymous objects a worker holds at once */
#define SEM_UNITS 2u           /* "usem" */
#define HEAP_MAX (64ull << 20)
#define HANG_SLACK (3 * T_SEC * T_SCALE)
#define LOCK_TIMEOUT (200 * T_MS)
#define SEM_TIMEOUT (100 * T_MS)
#define TARGET_WAIT (20 * T_MS) /* a targeted kill waits this long for its moment */
#define NAMED 11u               /* objects the supervisor creates by name */

/* What a worker is doing, for targeted kills and hang reports. */
enum phase { PH_IDLE, PH_RAW, PH_OBJ, PH_LOCK, PH_SEM, PH_NAMED, PH_N };
static const char *const phase_name[PH_N] = { "idle", "alloc/free", "create/close",
					      "lock", "semaphore", "open/close" };

/* A raw block of a worker: its state tells the supervisor what to do with
 * it when the worker is killed. */
enum { RAW_EMPTY, RAW_ALLOCATING, RAW_FILLING, RAW_OWNED, RAW_FREEING };
struct raw {
	_Atomic uint32_t state;
	uint32_t size;
	uint64_t off;
	uint64_t key;
};

/* One running worker, written by it and read by the supervisor. */
struct kid {
	_Atomic uint32_t inc;        /* incarnation (the supervisor's count, from 1) */
	_Atomic uint32_t doomed;     /* set by the supervisor before it kills */
	_Atomic uint32_t phase;
	_Atomic uint32_t in_lock[2]; /* holds "lock" / "rlock" (after acquire, before release) */
	_Atomic uint32_t sem_units;  /* units of "usem" it holds */
	_Atomic int64_t call_start;  /* CLOCK_MONOTONIC ns, 0 between calls */
	_Atomic int64_t call_timeout;
	_Atomic uint64_t incs[2];    /* counter increments completed (released) */
	struct raw raw[MAX_RAW];
};

struct shared {
	_Atomic uint32_t stop;
	_Atomic uint64_t sem_version; /* bumped at every change of a kid's sem_units */
	_Atomic uint64_t allocs, frees, alloc_bytes, creates, opens, lock_ops, sem_ops;
	_Atomic uint64_t owner_dead[2]; /* -EOWNERDEAD from "lock" / "rlock" */
	_Atomic uint64_t timeouts, enospc;
	_Atomic uint64_t errors;        /* unexpected results; the first one is described */
	_Atomic uint32_t error_claimed;
	char error_desc[160];
	struct kid kids[MAX_KIDS];
};

/* The counter pair in "counter" / "rcounter" (NOLOCK arrays). */
struct pair {
	_Atomic uint64_t a, b;
	_Atomic uint32_t holder; /* incarnation of the holder, 0: unknown */
};

static struct shared *sh;
static shmq_heap *heap;
/* The supervisor's handles on the named objects (inherited by workers). */
static shmq_lock *p_lock, *p_rlock, *p_nlock;
static shmq_sem *p_usem, *p_nsem;
static shmq_cond *p_ncond;
static shmq_event *p_nevent;
static shmq_barrier *p_nbarrier;
static shmq_array *p_counter, *p_rcounter;

/* ------------------------------------------------------------ small bits -- */

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return t_mix(*s);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	atomic_fetch_add(&sh->errors, 1);
	uint32_t zero = 0;
	if (!atomic_compare_exchange_strong(&sh->error_claimed, &zero, 1))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sh->error_desc, sizeof(sh->error_desc), fmt, ap);
	va_end(ap);
}

static void call_begin(struct kid *k, int64_t timeout)
{
	atomic_store(&k->call_timeout, timeout);
	atomic_store(&k->call_start, t_now());
}

static void call_end(struct kid *k)
{
	atomic_store(&k->call_start, 0);
}

static void busy(uint64_t *rng, unsigned max_ns)
{
	int64_t end = t_now() + (int64_t)(rng_next(rng) % max_ns);
	while (t_now() < end)
		;
}

/* The pattern of a raw block: the first 64 bytes, one 8-byte word every
 * PAT_STRIDE bytes and the last 8 bytes, from the block's key (the whole of
 * every block would cost most of the run; a block handed out twice or
 * overlapping another still shows at its start or end). */
#define PAT_STRIDE 256u
static uint64_t pat(uint64_t key, size_t i)
{
	return (key + i) * 0x9e3779b97f4a7c15ull ^ key >> 17;
}

static unsigned char pat_byte(uint64_t key, size_t i)
{
	return (unsigned char)(pat(key, i / 8) >> (i % 8 * 8));
}

/* Write (check == false) or check the pattern of a block of n bytes.
 * Returns false if a checked byte differs. */
static bool pattern(unsigned char *p, size_t n, uint64_t key, bool check)
{
	bool ok = true;
#define PAT_BYTE(i)                                            \
	do {                                                   \
		if (check)                                     \
			ok &= p[i] == pat_byte(key, i);        \
		else                                           \
			p[i] = pat_byte(key, i);               \
	} while (0)
	for (size_t i = 0; i < n && i < 64; i++)
		PAT_BYTE(i);
	for (size_t i = PAT_STRIDE; i < n; i += PAT_STRIDE)
		for (size_t j = i; j < i + 8 && j < n; j++)
			PAT_BYTE(j);
	for (size_t i = n > 8 ? n - 8 : 0; i < n; i++)
		PAT_BYTE(i);
#undef PAT_BYTE
	return ok;
}

static void fill(unsigned char *p, size_t n, uint64_t key)
{
	pattern(p, n, key, false);
}

static bool intact(const unsigned char *p, size_t n, uint64_t key)
{
	return pattern((unsigned char *)p, n, key, true);
}

/* ---------------------------------------------------------------- workers -- */

static struct kid *me;
static uint32_t my_inc;

static void raw_alloc(uint64_t *rng)
{
	struct raw *r = NULL;
	for (unsigned i = 0; i < MAX_RAW && !r; i++)
		if (atomic_load(&me->raw[i].state) == RAW_EMPTY)
			r = &me->raw[i];
	if (!r)
		return;
	unsigned shift = (unsigned)(rng_next(rng) % 13); /* 16 B .. 64 KiB */
	size_t size = (16u << shift) + rng_next(rng) % (16u << shift);
	if (size > 65536)
		size = 65536;
	uint64_t off;
	atomic_store(&r->state, RAW_ALLOCATING);
	int e = heap_alloc(heap, size, &off);
	if (e == -ENOSPC) {
		atomic_store(&r->state, RAW_EMPTY);
		atomic_fetch_add(&sh->enospc, 1);
		return;
	}
	if (e < 0) {
		atomic_store(&r->state, RAW_EMPTY);
		fail("heap_alloc(%zu): %d", size, e);
		return;
	}
	r->off = off;
	r->size = (uint32_t)size;
	r->key = rng_next(rng);
	atomic_store(&r->state, RAW_FILLING);
	unsigned char *p = heap_at(heap, off, size);
	if (!p) {
		fail("heap_alloc gave %#" PRIx64 " (+%zu), outside the heap", off, size);
		return;
	}
	fill(p, size, r->key);
	atomic_store(&r->state, RAW_OWNED);
	atomic_fetch_add(&sh->allocs, 1);
	atomic_fetch_add(&sh->alloc_bytes, size);
}

static void raw_free(struct raw *r, bool check_only)
{
	unsigned char *p = heap_at(heap, r->off, r->size);
	if (!p || !intact(p, r->size, r->key)) {
		fail("raw block %#" PRIx64 " (%u bytes) of incarnation %u overwritten", r->off,
		     r->size, my_inc);
		check_only = false; /* free it anyway, so that the run goes on */
	}
	if (check_only)
		return;
	atomic_store(&r->state, RAW_FREEING);
	heap_free(heap, r->off);
	atomic_store(&r->state, RAW_EMPTY);
	atomic_fetch_add(&sh->frees, 1);
}

/* An anonymous object of any kind, and what to do with it. */
enum okind { O_LOCK, O_RLOCK, O_SEM, O_USEM, O_COND, O_COND_OVER, O_EVENT, O_BARRIER,
	     O_ARRAY, O_RAWARRAY, O_N };
struct anon {
	enum okind k;
	void *p;
	shmq_lock *over; /* O_COND_OVER: the anonymous Lock it was created over */
};

static int anon_create(struct anon *o, uint64_t *rng)
{
	o->k = (enum okind)(rng_next(rng) % O_N);
	o->over = NULL;
	switch (o->k) {
	case O_LOCK: return shmq_lock_create(heap, NULL, 0, (shmq_lock **)&o->p);
	case O_RLOCK: return shmq_lock_create(heap, NULL, SHMQ_RECURSIVE, (shmq_lock **)&o->p);
	case O_SEM: return shmq_sem_create(heap, NULL, 1, 0, 0, (shmq_sem **)&o->p);
	case O_USEM: return shmq_sem_create(heap, NULL, 2, 2, SHMQ_UNDO, (shmq_sem **)&o->p);
	case O_COND: return shmq_cond_create(heap, NULL, NULL, (shmq_cond **)&o->p);
	case O_COND_OVER: {
		int r = shmq_lock_create(heap, NULL, 0, &o->over);
		if (r < 0)
			return r;
		r = shmq_cond_create(heap, NULL, o->over, (shmq_cond **)&o->p);
		if (r < 0) {
			shmq_lock_close(o->over);
			o->over = NULL;
		}
		return r;
	}
	case O_EVENT: return shmq_event_create(heap, NULL, (shmq_event **)&o->p);
	case O_BARRIER: return shmq_barrier_create(heap, NULL, 1, (shmq_barrier **)&o->p);
	case O_ARRAY:
		return shmq_array_create(heap, NULL, 1 + rng_next(rng) % 4096, 0,
					 (shmq_array **)&o->p);
	default:
		return shmq_array_create(heap, NULL, 1 + rng_next(rng) % 256, SHMQ_NOLOCK,
					 (shmq_array **)&o->p);
	}
}

static void anon_close(struct anon *o)
{
	int r;
	switch (o->k) {
	case O_LOCK:
	case O_RLOCK: r = shmq_lock_close(o->p); break;
	case O_SEM:
	case O_USEM: r = shmq_sem_close(o->p); break;
	case O_COND:
	case O_COND_OVER:
		r = shmq_cond_close(o->p);
		if (o->over && r == 0)
			r = shmq_lock_close(o->over);
		break;
	case O_EVENT: r = shmq_event_close(o->p); break;
	case O_BARRIER: r = shmq_barrier_close(o->p); break;
	default: r = shmq_array_close(o->p); break;
	}
	if (r != 0)
		fail("close of an anonymous object (kind %d): %d", o->k, r);
}

/* Use an object of ours a little; nobody else knows it, so every call must
 * succeed at once. */
static void anon_use(struct anon *o)
{
	int r = 0;
	switch (o->k) {
	case O_LOCK:
	case O_RLOCK:
		if ((r = shmq_lock_acquire(o->p, 0)) == 0)
			r = shmq_lock_release(o->p);
		break;
	case O_SEM:
	case O_USEM:
		if ((r = shmq_sem_acquire(o->p, 0)) == 0)
			r = shmq_sem_release(o->p, 1);
		break;
	case O_COND:
	case O_COND_OVER: {
		shmq_lock *l = shmq_cond_lock(o->p);
		if ((r = shmq_lock_acquire(l, 0)) != 0)
			break;
		r = shmq_cond_wait(o->p, 0); /* nobody notifies: -EAGAIN */
		r = r == -EAGAIN ? shmq_cond_notify_all(o->p) : r == 0 ? -EBADE : r;
		int u = shmq_lock_release(l);
		r = r < 0 ? r : u;
		break;
	}
	case O_EVENT:
		r = shmq_event_set(o->p);
		if (r == 0)
			r = shmq_event_wait(o->p, 0);
		if (r == 0 && shmq_event_is_set(o->p) != 1)
			r = -EBADE;
		break;
	case O_BARRIER:
		r = shmq_barrier_wait(o->p, 0); /* one party: index 0 at once */
		break;
	default: {
		unsigned char *d = shmq_array_data(o->p);
		size_t n = shmq_array_size(o->p);
		shmq_lock *l = shmq_array_lock(o->p);
		if (l && (r = shmq_lock_acquire(l, 0)) != 0)
			break;
		memset(d, 0x5a, n);
		if (l)
			r = shmq_lock_release(l);
		break;
	}
	}
	if (r != 0)
		fail("use of an anonymous object (kind %d) of our own: %d", o->k, r);
}

static void objects(struct anon *held, unsigned *nheld, uint64_t *rng)
{
	atomic_store(&me->phase, PH_OBJ);
	if (*nheld == MAX_ANON || (*nheld && rng_next(rng) % 2)) {
		unsigned i = (unsigned)(rng_next(rng) % *nheld);
		anon_use(&held[i]);
		call_begin(me, 0);
		anon_close(&held[i]);
		call_end(me);
		held[i] = held[--*nheld];
	} else {
		call_begin(me, 0);
		int r = anon_create(&held[*nheld], rng);
		call_end(me);
		if (r == -ENOSPC) {
			atomic_fetch_add(&sh->enospc, 1);
		} else if (r < 0) {
			fail("anonymous create: %d", r);
		} else {
			anon_use(&held[(*nheld)++]);
			atomic_fetch_add(&sh->creates, 1);
		}
	}
	atomic_store(&me->phase, PH_IDLE);
}

/* Open one of the named objects, use it a little, close it. */
static void named(uint64_t *rng)
{
	atomic_store(&me->phase, PH_NAMED);
	call_begin(me, 0);
	int r = 0, k = (int)(rng_next(rng) % 6);
	switch (k) {
	case 0: {
		shmq_lock *l;
		if ((r = shmq_lock_open(heap, "n_lock", &l)) == 0) {
			int a = shmq_lock_acquire(l, 0); /* -EOWNERDEAD: ours too */
			if (a == 0 || a == -EOWNERDEAD)
				shmq_lock_release(l);
			r = shmq_lock_close(l);
		}
		break;
	}
	case 1: {
		shmq_sem *s;
		if ((r = shmq_sem_open(heap, "n_sem", &s)) == 0) {
			if (shmq_sem_acquire(s, 0) == 0)
				r = shmq_sem_release(s, 1);
			int c = shmq_sem_close(s);
			r = r ? r : c;
		}
		break;
	}
	case 2: {
		shmq_cond *c;
		if ((r = shmq_cond_open(heap, "n_cond", &c)) == 0) {
			shmq_lock *l = shmq_cond_lock(c);
			int a = shmq_lock_acquire(l, 0);
			if (a == 0 || a == -EOWNERDEAD) {
				r = shmq_cond_notify(c, 1) < 0 ? -EBADE : 0;
				shmq_lock_release(l);
			}
			int e = shmq_cond_close(c);
			r = r ? r : e;
		}
		break;
	}
	case 3: {
		shmq_event *e;
		if ((r = shmq_event_open(heap, "n_event", &e)) == 0) {
			if (rng_next(rng) & 1)
				shmq_event_set(e);
			else
				shmq_event_clear(e);
			r = shmq_event_is_set(e) < 0 ? -EBADE : shmq_event_close(e);
		}
		break;
	}
	case 4: {
		shmq_barrier *b;
		if ((r = shmq_barrier_open(heap, "n_barrier", &b)) == 0) {
			r = shmq_barrier_parties(b) != 2 || shmq_barrier_n_waiting(b) != 0 ? -EBADE
											     : 0;
			int c = shmq_barrier_close(b);
			r = r ? r : c;
		}
		break;
	}
	default: {
		shmq_array *a;
		if ((r = shmq_array_open(heap, "n_array", &a)) == 0) {
			r = shmq_array_size(a) != 256 ? -EBADE : 0;
			shmq_lock *l = shmq_array_lock(a);
			int k2 = r ? -EBADE : shmq_lock_acquire(l, 0);
			if (k2 == 0 || k2 == -EOWNERDEAD) {
				((unsigned char *)shmq_array_data(a))[rng_next(rng) % 256]++;
				shmq_lock_release(l);
			}
			int c = shmq_array_close(a);
			r = r ? r : c;
		}
		break;
	}
	}
	call_end(me);
	if (r != 0)
		fail("named object %d: open/use/close: %d", k, r);
	atomic_fetch_add(&sh->opens, 1);
	atomic_store(&me->phase, PH_IDLE);
}

/* Is the holder recorded in a pair still running (not marked for death)? */
static bool holder_alive(uint32_t holder)
{
	for (unsigned i = 0; i < MAX_KIDS; i++) {
		struct kid *k = &sh->kids[i];
		if (atomic_load(&k->inc) == holder && !atomic_load(&k->doomed))
			return true;
	}
	return false;
}

/* One round of the counter guarded by lock which (0: "lock", 1: "rlock"). */
static void counter(int which, shmq_lock *l, struct pair *p, uint64_t *rng)
{
	atomic_store(&me->phase, PH_LOCK);
	int64_t timeout = LOCK_TIMEOUT * T_SCALE;
	call_begin(me, timeout);
	int r = shmq_lock_acquire(l, timeout);
	call_end(me);
	if (r == -ETIMEDOUT) {
		atomic_fetch_add(&sh->timeouts, 1);
		atomic_store(&me->phase, PH_IDLE);
		return;
	}
	if (r != 0 && r != -EOWNERDEAD) {
		fail("acquire of %s: %d", which ? "rlock" : "lock", r);
		atomic_store(&me->phase, PH_IDLE);
		return;
	}
	if (r == -EOWNERDEAD)
		atomic_fetch_add(&sh->owner_dead[which], 1);
	atomic_store(&me->in_lock[which], 1);
	uint32_t holder = atomic_load(&p->holder);
	uint64_t a = atomic_load(&p->a), b = atomic_load(&p->b);
	if (r == 0 && (a != b || holder != 0))
		fail("%s acquired with 0 while the pair was half-updated (a %" PRIu64 " b %" PRIu64
		     ", holder %u)", which ? "rlock" : "lock", a, b, holder);
	if (r == -EOWNERDEAD && holder && holder_alive(holder))
		fail("%s taken as -EOWNERDEAD from incarnation %u, which is alive",
		     which ? "rlock" : "lock", holder);
	atomic_store(&p->b, a); /* repair (a no-op after a clean release) */
	atomic_store(&p->holder, my_inc);
	if (which == 1 && (r = shmq_lock_acquire(l, 0)) != 0) /* an RLock, again */
		fail("rlock taken again by its holder: %d", r);
	atomic_store(&p->a, a + 1);
	busy(rng, 20000);
	atomic_store(&p->b, a + 1);
	atomic_store(&p->holder, 0);
	if (which == 1 && (r = shmq_lock_release(l)) != 0)
		fail("rlock inner release: %d", r);
	atomic_store(&me->in_lock[which], 0);
	if ((r = shmq_lock_release(l)) != 0)
		fail("release of %s: %d", which ? "rlock" : "lock", r);
	atomic_fetch_add(&me->incs[which], 1);
	atomic_fetch_add(&sh->lock_ops, 1);
	atomic_store(&me->phase, PH_IDLE);
}

static void set_units(uint32_t v)
{
	atomic_fetch_add(&sh->sem_version, 1);
	atomic_store(&me->sem_units, v);
	atomic_fetch_add(&sh->sem_version, 1);
}

/* Units of "usem" held, in a snapshot no change raced with, by workers not
 * marked for death; -1 if no quiet snapshot could be had. */
static int live_units(void)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t v = atomic_load(&sh->sem_version);
		int n = 0;
		for (unsigned i = 0; i < MAX_KIDS; i++)
			if (!atomic_load(&sh->kids[i].doomed))
				n += (int)atomic_load(&sh->kids[i].sem_units);
		if (v % 2 == 0 && atomic_load(&sh->sem_version) == v)
			return n;
	}
	return -1;
}

static void semaphore(shmq_sem *s, uint64_t *rng)
{
	atomic_store(&me->phase, PH_SEM);
	int64_t timeout = SEM_TIMEOUT * T_SCALE;
	call_begin(me, timeout);
	int r = shmq_sem_acquire(s, timeout);
	call_end(me);
	if (r == -ETIMEDOUT) {
		atomic_fetch_add(&sh->timeouts, 1);
	} else if (r != 0) {
		fail("acquire of usem: %d", r);
	} else {
		set_units(1);
		int n = live_units();
		if (n > (int)SEM_UNITS)
			fail("usem: %d units held by live workers at once (it has %u)", n, SEM_UNITS);
		busy(rng, 20000);
		set_units(0);
		if ((r = shmq_sem_release(s, 1)) != 0)
			fail("release of usem: %d", r);
		atomic_fetch_add(&sh->sem_ops, 1);
	}
	atomic_store(&me->phase, PH_IDLE);
}

static int worker(uint64_t rng)
{
	shmq_lock *lock, *rlock;
	shmq_array *ca, *ra;
	shmq_sem *usem;
	int r;
	if ((r = shmq_lock_open(heap, "lock", &lock)) || (r = shmq_lock_open(heap, "rlock", &rlock)) ||
	    (r = shmq_array_open(heap, "counter", &ca)) ||
	    (r = shmq_array_open(heap, "rcounter", &ra)) || (r = shmq_sem_open(heap, "usem", &usem))) {
		fail("worker: open: %d", r);
		return 10;
	}
	struct pair *pairs[2] = { shmq_array_data(ca), shmq_array_data(ra) };
	shmq_lock *locks[2] = { lock, rlock };
	struct anon held[MAX_ANON];
	unsigned nheld = 0;
	while (!atomic_load(&sh->stop)) {
		unsigned what = (unsigned)(rng_next(&rng) % 100);
		if (what < 50) {
			atomic_store(&me->phase, PH_RAW);
			unsigned i = (unsigned)(rng_next(&rng) % MAX_RAW);
			if (atomic_load(&me->raw[i].state) == RAW_OWNED)
				raw_free(&me->raw[i], rng_next(&rng) % 4 == 0);
			else
				raw_alloc(&rng);
			atomic_store(&me->phase, PH_IDLE);
		} else if (what < 68) {
			objects(held, &nheld, &rng);
		} else if (what < 76) {
			named(&rng);
		} else if (what < 90) {
			int which = what < 85 ? 0 : 1;
			counter(which, locks[which], pairs[which], &rng);
		} else {
			semaphore(usem, &rng);
		}
	}
	/* Stop: free and close everything, the inherited handles too; then
	 * the heap handle must close cleanly. */
	for (unsigned i = 0; i < MAX_RAW; i++)
		if (atomic_load(&me->raw[i].state) == RAW_OWNED)
			raw_free(&me->raw[i], false);
	while (nheld)
		anon_close(&held[--nheld]);
	shmq_lock_close(lock);
	shmq_lock_close(rlock);
	shmq_array_close(ca);
	shmq_array_close(ra);
	shmq_sem_close(usem);
	shmq_lock_close(p_lock);
	shmq_lock_close(p_rlock);
	shmq_lock_close(p_nlock);
	shmq_sem_close(p_usem);
	shmq_sem_close(p_nsem);
	shmq_cond_close(p_ncond);
	shmq_event_close(p_nevent);
	shmq_barrier_close(p_nbarrier);
	shmq_array_close(p_counter);
	shmq_array_close(p_rcounter);
	if ((r = shmq_heap_close(heap)) != 0) {
		fail("worker: heap close at the end: %d", r);
		return 11;
	}
	return 0;
}

/* ------------------------------------------------------------- supervisor -- */

struct slot_state {
	pid_t pid;
	uint32_t inc;
};

static struct slot_state slots[MAX_KIDS];
static uint32_t nslots, next_inc = 1;
static uint64_t seed;

struct stats {
	uint64_t kills, kills_random, kills_targeted, kills_group, targeted_missed;
	uint64_t died_holding[2], died_with_units;
	uint64_t raw_reclaimed, raw_leaked;
	uint64_t bad_exits, hangs;
	char bad_desc[160];
};
static struct stats st;

static void spawn(uint32_t i)
{
	struct kid *k = &sh->kids[i];
	slots[i].inc = next_inc++;
	/* The new incarnation first, "not doomed" last: whoever looks at the
	 * record meanwhile never sees the dead one alive. */
	atomic_store(&k->inc, slots[i].inc);
	atomic_store(&k->phase, PH_IDLE);
	atomic_store(&k->sem_units, 0);
	atomic_store(&k->call_start, 0);
	for (int w = 0; w < 2; w++) /* incs[] add up over incarnations */
		atomic_store(&k->in_lock[w], 0);
	atomic_store(&k->doomed, 0);
	uint64_t rng = seed ^ t_mix(slots[i].inc + 1);
	pid_t parent = getpid();
	slots[i].pid = fork();
	if (slots[i].pid < 0) {
		perror("heap_torture: fork");
		exit(2);
	}
	if (slots[i].pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		me = k;
		my_inc = slots[i].inc;
		_exit(worker(rng));
	}
}

static void bad_exit(uint32_t i, int status, const char *why)
{
	char sb[32];
	if (!st.bad_exits++)
		snprintf(st.bad_desc, sizeof(st.bad_desc), "worker %u (inc %u): %s: %s", i,
			 slots[i].inc, why, t_status_str(status, sb, sizeof(sb)));
}

/* After a kill: what the dead worker held. Its raw blocks are freed (those
 * it owned checked first); one it was allocating or freeing is leaked. */
static void reclaim(uint32_t i)
{
	struct kid *k = &sh->kids[i];
	for (int w = 0; w < 2; w++)
		st.died_holding[w] += atomic_load(&k->in_lock[w]) != 0;
	st.died_with_units += atomic_load(&k->sem_units) != 0;
	for (unsigned j = 0; j < MAX_RAW; j++) {
		struct raw *r = &k->raw[j];
		switch (atomic_load(&r->state)) {
		case RAW_OWNED: {
			unsigned char *p = heap_at(heap, r->off, r->size);
			if (!p || !intact(p, r->size, r->key))
				fail("raw block %#" PRIx64 " (%u bytes) of killed incarnation %u "
				     "overwritten", r->off, r->size, slots[i].inc);
		}
			/* fall through */
		case RAW_FILLING:
			heap_free(heap, r->off);
			st.raw_reclaimed++;
			break;
		case RAW_ALLOCATING:
		case RAW_FREEING:
			st.raw_leaked++;
			break;
		default:
			break;
		}
		atomic_store(&r->state, RAW_EMPTY);
	}
}

static void kill_one(uint32_t i, enum phase target)
{
	struct kid *k = &sh->kids[i];
	if (target != PH_IDLE) {
		/* Wait (briefly) for the moment: inside a critical section, an
		 * allocation or a free, a create or a close. */
		int64_t deadline = t_now() + TARGET_WAIT;
		while (atomic_load(&k->phase) != target && t_now() < deadline)
			t_nap(20 * 1000);
		if (atomic_load(&k->phase) != target)
			st.targeted_missed++;
		st.kills_targeted++;
	} else {
		st.kills_random++;
	}
	atomic_store(&k->doomed, 1);
	kill(slots[i].pid, SIGKILL);
	int status;
	while (waitpid(slots[i].pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		bad_exit(i, status, "killed, but");
	reclaim(i);
	st.kills++;
}

/* Workers that exit on their own during the run failed; calls in flight
 * past their timeout + HANG_SLACK are hangs. */
static void watch(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (uint32_t i = 0; i < nslots; i++)
			if (slots[i].pid == pid) {
				bad_exit(i, status, "exited during the run");
				slots[i].pid = -1;
			}
	int64_t now = t_now();
	for (uint32_t i = 0; i < nslots; i++) {
		struct kid *k = &sh->kids[i];
		int64_t start = atomic_load(&k->call_start);
		if (start && now - start > atomic_load(&k->call_timeout) + HANG_SLACK && !st.hangs++)
			fprintf(stderr, "heap_torture: worker %u in a call (%s) for %lld ms\n", i,
				phase_name[atomic_load(&k->phase) % PH_N],
				(long long)((now - start) / T_MS));
	}
}

static void *shared_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("heap_torture: mmap");
		exit(2);
	}
	return p;
}

static void setup(void)
{
	struct shmq_heap_attr a;
	shmq_heap_attr_init(&a);
	a.max_size = HEAP_MAX;
	int r;
	if ((r = shmq_heap_create(NULL, &a, &heap)) ||
	    (r = shmq_lock_create(heap, "lock", 0, &p_lock)) ||
	    (r = shmq_lock_create(heap, "rlock", SHMQ_RECURSIVE, &p_rlock)) ||
	    (r = shmq_array_create(heap, "counter", sizeof(struct pair), SHMQ_NOLOCK, &p_counter)) ||
	    (r = shmq_array_create(heap, "rcounter", sizeof(struct pair), SHMQ_NOLOCK, &p_rcounter)) ||
	    (r = shmq_sem_create(heap, "usem", SEM_UNITS, SEM_UNITS, SHMQ_UNDO, &p_usem)) ||
	    (r = shmq_lock_create(heap, "n_lock", 0, &p_nlock)) ||
	    (r = shmq_sem_create(heap, "n_sem", 3, 0, 0, &p_nsem)) ||
	    (r = shmq_cond_create(heap, "n_cond", NULL, &p_ncond)) ||
	    (r = shmq_event_create(heap, "n_event", &p_nevent)) ||
	    (r = shmq_barrier_create(heap, "n_barrier", 2, &p_nbarrier))) {
		fprintf(stderr, "heap_torture: setup: %d\n", r);
		exit(2);
	}
	/* "n_array" is named and held by nobody but the directory. */
	shmq_array *na;
	if ((r = shmq_array_create(heap, "n_array", 256, 0, &na)) || (r = shmq_array_close(na))) {
		fprintf(stderr, "heap_torture: setup: n_array: %d\n", r);
		exit(2);
	}
}

/* Take lock which at the end: within 1 s, 0 or -EOWNERDEAD (then the pair
 * is repaired). Returns the result; *half: taken with 0 from a holder that
 * left the pair half-updated. */
static int final_lock(int which, shmq_lock *l, struct pair *p, bool *half)
{
	int r = shmq_lock_acquire(l, T_SEC * T_SCALE);
	*half = r == 0 && (atomic_load(&p->a) != atomic_load(&p->b) || atomic_load(&p->holder));
	if (r == -EOWNERDEAD) {
		atomic_fetch_add(&sh->owner_dead[which], 1);
		atomic_store(&p->b, atomic_load(&p->a));
		atomic_store(&p->holder, 0);
	}
	if (r == 0 || r == -EOWNERDEAD)
		shmq_lock_release(l);
	return r;
}

static void usage(void)
{
	fprintf(stderr, "usage: heap_torture [--kills N] [--workers N] [--seed S] "
			"[--interval-ms MS] [--max-used-mib M]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t kills = 200, max_used_mib = 16;
	uint32_t nworkers = 4;
	int64_t interval_ms = 100; /* between kills: uniform in 0 .. 2 x this */
	seed = (uint64_t)t_now() ^ (uint64_t)getpid() << 32;
	static const struct option opts[] = {
		{ "kills", required_argument, NULL, 'k' },
		{ "workers", required_argument, NULL, 'w' },
		{ "seed", required_argument, NULL, 's' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "max-used-mib", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 'k': kills = strtoull(optarg, NULL, 0); break;
		case 'w': nworkers = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'i': interval_ms = strtoll(optarg, NULL, 0); break;
		case 'm': max_used_mib = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc || !nworkers || nworkers > MAX_KIDS || interval_ms < 0)
		usage();
	nslots = nworkers;
	sh = shared_map(sizeof(*sh));
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup();

	for (uint32_t i = 0; i < nslots; i++)
		spawn(i);
	uint64_t rng = seed;
	int64_t start = t_now();
	while (st.kills < kills) {
		t_nap((int64_t)(rng_next(&rng) % (uint64_t)(2 * interval_ms * 1000 + 1)) * 1000);
		watch();
		/* One kill in 16 takes every worker at once; half of the others
		 * wait for a chosen moment. */
		bool group = rng_next(&rng) % 16 == 0;
		uint32_t victim = (uint32_t)(rng_next(&rng) % nslots);
		static const enum phase targets[4] = { PH_LOCK, PH_RAW, PH_OBJ, PH_SEM };
		enum phase target = rng_next(&rng) & 1 ? targets[rng_next(&rng) % 4] : PH_IDLE;
		for (uint32_t i = 0; i < nslots && st.kills < kills; i++) {
			if ((!group && i != victim) || slots[i].pid <= 0)
				continue;
			kill_one(i, group ? PH_IDLE : target);
		}
		for (uint32_t i = 0; i < nslots; i++)
			if (slots[i].pid > 0 && atomic_load(&sh->kids[i].doomed))
				spawn(i);
		st.kills_group += group;
		if (st.bad_exits || st.hangs)
			break; /* failed: stop early and report */
	}
	int64_t run_ns = t_now() - start;

	/* End: every worker finishes its call, closes everything and exits 0. */
	atomic_store(&sh->stop, 1);
	int64_t deadline = t_now() + 10 * T_SEC * T_SCALE;
	for (uint32_t i = 0; i < nslots; i++) {
		if (slots[i].pid <= 0)
			continue;
		int status = 0;
		int64_t left = deadline - t_now();
		if (t_wait(slots[i].pid, &status, left > 0 ? left : 0) < 0) {
			st.hangs++;
			fprintf(stderr, "heap_torture: worker %u (%s) did not finish\n", i,
				phase_name[atomic_load(&sh->kids[i].phase) % PH_N]);
			t_kill_reap(slots[i].pid);
		} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			bad_exit(i, status, "at the end");
		}
	}
	watch();

	/* The checks, all workers gone. */
	struct pair *pc = shmq_array_data(p_counter), *pr = shmq_array_data(p_rcounter);
	uint64_t incs[2] = { 0, 0 };
	for (uint32_t i = 0; i < MAX_KIDS; i++)
		for (int w = 0; w < 2; w++)
			incs[w] += atomic_load(&sh->kids[i].incs[w]);
	int check = heap_check(heap);
	struct shmq_heap_stat hs;
	int stat = shmq_heap_stat(heap, &hs); /* reaps what is left */
	bool lhalf, rhalf;
	int lr = final_lock(0, p_lock, pc, &lhalf), rr = final_lock(1, p_rlock, pr, &rhalf);
	int sem[SEM_UNITS + 1];
	for (unsigned u = 0; u <= SEM_UNITS; u++)
		sem[u] = shmq_sem_acquire(p_usem, 0);
	int sem_ok = sem[SEM_UNITS] == -EAGAIN;
	for (unsigned u = 0; u < SEM_UNITS; u++)
		sem_ok &= sem[u] == 0;
	for (unsigned u = 0; u <= SEM_UNITS; u++)
		if (sem[u] == 0)
			shmq_sem_release(p_usem, 1);
	int sem_value = shmq_sem_value(p_usem);
	uint64_t ca = atomic_load(&pc->a), cb = atomic_load(&pc->b);
	uint64_t ra = atomic_load(&pr->a), rb = atomic_load(&pr->b);

	char why[512] = "";
	if (st.bad_exits)
		snprintf(why, sizeof(why), "%s%s%s", st.bad_desc, sh->errors ? "; first error: " : "",
			 sh->errors ? sh->error_desc : "");
	else if (st.hangs)
		snprintf(why, sizeof(why), "a call did not return within its timeout + 3 s");
	else if (sh->errors)
		snprintf(why, sizeof(why), "%" PRIu64 " errors in workers, the first: %s",
			 (uint64_t)sh->errors, sh->error_desc);
	else if (check != 0)
		snprintf(why, sizeof(why), "heap_check: %d", check);
	else if (stat != 0)
		snprintf(why, sizeof(why), "shmq_heap_stat: %d", stat);
	else if (hs.objects != NAMED || hs.handles != 1)
		snprintf(why, sizeof(why), "%u objects (named: %u) and %u handles (want 1) after the run",
			 hs.objects, NAMED, hs.handles);
	else if ((lr != 0 && lr != -EOWNERDEAD) || (rr != 0 && rr != -EOWNERDEAD))
		snprintf(why, sizeof(why), "final acquire within 1 s: lock %d, rlock %d", lr, rr);
	else if (lhalf || rhalf)
		snprintf(why, sizeof(why), "final acquire gave 0 with the pair half-updated");
	else if (sh->owner_dead[0] < st.died_holding[0] || sh->owner_dead[1] < st.died_holding[1] ||
		 sh->owner_dead[0] + sh->owner_dead[1] > st.kills)
		snprintf(why, sizeof(why),
			 "-EOWNERDEAD seen %" PRIu64 "/%" PRIu64 " times, %" PRIu64 "/%" PRIu64
			 " deaths held lock/rlock, %" PRIu64 " kills",
			 (uint64_t)sh->owner_dead[0], (uint64_t)sh->owner_dead[1], st.died_holding[0],
			 st.died_holding[1], st.kills);
	else if (ca != cb || ra != rb || ca < incs[0] || ca > incs[0] + st.kills || ra < incs[1] ||
		 ra > incs[1] + st.kills)
		snprintf(why, sizeof(why),
			 "counters: lock %" PRIu64 "/%" PRIu64 " rlock %" PRIu64 "/%" PRIu64
			 ", completed increments %" PRIu64 " and %" PRIu64 ", %" PRIu64 " kills",
			 ca, cb, ra, rb, incs[0], incs[1], st.kills);
	else if (!sem_ok || sem_value != (int)SEM_UNITS)
		snprintf(why, sizeof(why),
			 "UNDO semaphore not back at %u: acquires with timeout 0 gave %d %d %d, value %d",
			 SEM_UNITS, sem[0], sem[1], sem[2], sem_value);
	else if (hs.used > max_used_mib << 20)
		snprintf(why, sizeof(why), "used %.1f MiB, over %" PRIu64 " MiB",
			 (double)hs.used / (1 << 20), max_used_mib);
	else if (!sh->allocs || !sh->creates || !sh->lock_ops || !sh->sem_ops || !sh->opens)
		snprintf(why, sizeof(why), "some kind of work never happened");

	printf("heap_torture: %s%s: %" PRIu64 " kills (%" PRIu64 " random, %" PRIu64
	       " targeted, %" PRIu64 " missed their moment, %" PRIu64 " group) of %u workers in %.1f s"
	       "; %" PRIu64 " allocs (%.0f MiB) %" PRIu64 " creates %" PRIu64 " opens %" PRIu64
	       " lock rounds %" PRIu64 " sem rounds, %" PRIu64 " timeouts %" PRIu64 " ENOSPC"
	       "; -EOWNERDEAD %" PRIu64 "+%" PRIu64 " (died holding %" PRIu64 "+%" PRIu64
	       ", with units %" PRIu64 ")"
	       "; raw blocks of the dead freed %" PRIu64 " leaked %" PRIu64
	       "; used %.1f MiB free %.1f MiB size %.1f MiB, %u objects, seed %#" PRIx64 "\n",
	       why[0] ? "FAIL: " : "PASS", why, st.kills, st.kills_random, st.kills_targeted,
	       st.targeted_missed, st.kills_group, nworkers, (double)run_ns / T_SEC,
	       (uint64_t)sh->allocs, (double)sh->alloc_bytes / (1 << 20), (uint64_t)sh->creates,
	       (uint64_t)sh->opens, (uint64_t)sh->lock_ops, (uint64_t)sh->sem_ops,
	       (uint64_t)sh->timeouts, (uint64_t)sh->enospc, (uint64_t)sh->owner_dead[0],
	       (uint64_t)sh->owner_dead[1], st.died_holding[0], st.died_holding[1],
	       st.died_with_units, st.raw_reclaimed, st.raw_leaked, (double)hs.used / (1 << 20),
	       (double)hs.free / (1 << 20), (double)hs.size / (1 << 20), hs.objects, seed);

	shmq_lock_close(p_lock);
	shmq_lock_close(p_rlock);
	shmq_lock_close(p_nlock);
	shmq_sem_close(p_usem);
	shmq_sem_close(p_nsem);
	shmq_cond_close(p_ncond);
	shmq_event_close(p_nevent);
	shmq_barrier_close(p_nbarrier);
	shmq_array_close(p_counter);
	shmq_array_close(p_rcounter);
	shmq_heap_close(heap);
	return why[0] ? 1 : 0;
}
