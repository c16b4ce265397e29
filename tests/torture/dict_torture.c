/* Kill -9 torture of shared dicts and lists: worker processes share one
 * anonymous heap (64 MiB) holding a dict "d", a list "l" and a second dict
 * "c" (the counters: see below), and loop, at high rate, over every
 * operation of both kinds, while this supervisor SIGKILLs them at random
 * moments and forks replacements (which inherit the supervisor's handles).
 * Kills come one at a time (half at a random moment, half after waiting up
 * to 20 ms for the victim to be inside a write, an add, a clear or a walk),
 * in bursts (3 to 8 kills 0-2 ms apart, often of a replacement that has just
 * started) and, one round in 16, every worker at once. Workers also kill
 * themselves (raise(SIGKILL)) at the library's test hooks, each firing with
 * small odds (a few dozen times in a default run): a dict writer's intent
 * recorded and nothing published (rolled back by the next locker), its
 * change published and count and retirement not done (rolled forward), a
 * list change recorded and not applied (rolled forward); the dict hooks
 * fire inside a replay of a dead writer's intent by another process too (a
 * replayer killed mid-replay). The supervisor treats such a death like one
 * of its own kills (counted per hook in the summary; the slot reclaimed and
 * replaced at once).
 *
 * Every value is self-checking: a 24-byte header (the key it belongs to, its
 * length, a unique id) and a payload derived from the id, covered by an FNV
 * checksum; the length is a function of the id (24 B .. 64 KiB, mostly
 * short), and never 8. A reader that gets a value of another key, of the
 * wrong length, or with a bad checksum (torn), exits at once with status 20;
 * a call returning a result its contract rules out, status 21; a broken
 * ordering guarantee (below), 22; a walk that breaks its contract, 23. The
 * supervisor reports the first description.
 *
 *   d: 1024 shared keys (the empty key and a 1-byte key among them, a few of
 *      up to 300 bytes) that every worker sets, inserts, gets, pops, deletes
 *      and compare-and-swaps, in bulk too (64 keys in a row: the table grows
 *      and shrinks); 16 keys of 8-byte counters changed by shmq_dict_add only
 *      (and deleted); len, full walks (shmq_dict_next with buffers that are
 *      sometimes too small), rarely a clear; and 16 keys per worker slot that
 *      only that slot writes: it knows what each holds, so every get, pop,
 *      insert, del, cas and add of its own and every walk checks exact
 *      results (a lost or stale write, a key seen by a walk after its del, a
 *      key present for the whole walk not seen exactly once), allowing only
 *      for a clear by another worker (clears are counted, started and
 *      finished, per slot; an own.add on a key that a clear took away
 *      creates the counter 1, which the slot deletes at once: readers
 *      accept it). A killed writer's change is final as readers saw it
 *      when it died (an unpublished one rolled back, a published one
 *      finished), so it can never appear later: a new incarnation reads its
 *      16 keys once at its start, and each must hold what the dead one knew,
 *      or what the write it had in flight (recorded in shared memory before
 *      the call) leaves, or, a clear having started since, nothing; from
 *      then on every result on them is exact. A change that shows up later
 *      (a late write) is a failure with status 22, counted in the summary.
 *   c: 4 counters, only ever changed by shmq_dict_add(+1), among 512 churn
 *      keys (set, deleted, bulk-inserted and bulk-deleted so that the table
 *      resizes under the walks). No clear: that is why the counters live in
 *      a dict of their own. A worker counts its acknowledged adds in shared
 *      memory after each call returns; a killed worker may have done an add
 *      it did not acknowledge, so the supervisor notes each kill of a worker
 *      that was between its "add pending" mark and the acknowledgement (its
 *      own kill at a hook inside the add included): at the end each counter
 *      is within [acknowledged, acknowledged + those kills] (and so within
 *      acknowledged + kills). A worker's own add results rise strictly and
 *      its reads never go back. Every walk of c sees each counter exactly
 *      once.
 *   l: append, insert (clamped indexes), get, set, pop (first, last, any),
 *      del, len, rarely a clear, held between about 50 and 400 values. Every
 *      id that a pop (of the list or of d) returns is marked in a shared
 *      bitmap: an id popped twice, or still present at the end after it was
 *      popped, is a failure.
 *
 * Workers also create, fill, check (exactly) and close anonymous dicts and
 * lists of their own (a killed one leaves them to be freed when its death is
 * noticed), and open and close second handles on d and l by name. Any call
 * in flight for more than 3 s is a hang.
 *
 * At the end, with every worker stopped (they close everything and exit 0):
 * a quiet walk of d returns only valid keys of d, each once, as many as
 * shmq_dict_len, each with a valid value equal to what get returns, and get
 * finds no key the walk missed; each worker slot's own keys hold what it
 * last knew; no popped id is still present; c holds its counters within
 * their bounds and nothing else invalid; the list's values read by index are
 * valid, unique, never popped, as many as shmq_list_len; heap_check() is 0,
 * the heap counts the 3 objects and one handle; no call ever gave -ENOSPC.
 * Then each structure must still be fully usable: cleared, refilled (2064
 * keys, 2000 values), verified, emptied one by one, three times over, with
 * 'used' at most 1 MiB higher after the third round than after the first
 * (memory is reused), and 'used' under --max-used-mib (32, plus 2 per 1000
 * kills: each kill may leak the one block its victim was allocating or
 * freeing). A slot whose last worker died at a hook as the run stopped gets
 * a replacement that reads its keys (checked as at any start) and exits.
 *
 * Usage: dict_torture [--kills N] [--workers N] [--seed S] [--interval-ms MS]
 *                     [--max-used-mib M]
 * The meson test runs the defaults (300 kills, 4 workers, about 20 s);
 * tests/torture/README.md has the long run. Prints one summary line, PASS or
 * FAIL: why; exit status 0 when every check holds. */
#include "../common.h"
#include "heap.h" /* src/: heap_check */

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>

#define MAX_KIDS 64u
#define HEAP_MAX (64ull << 20)
#define HANG_SLACK (3 * T_SEC * T_SCALE)
#define TARGET_WAIT (20 * T_MS)

/* The test hooks a worker may kill itself at (SHMQ_HOOK_DICT_INTENT ..
 * SHMQ_HOOK_LIST_INTENT), each firing with odds of 1 in hook_odds[]: a few
 * dozen self-kills in a default run. */
#define HOOK0 SHMQ_HOOK_DICT_INTENT
#define N_HOOKS 3u
static const uint64_t hook_odds[N_HOOKS] = { 150000, 150000, 40000 };
static const char *const hook_name[N_HOOKS] = { "dict intent", "dict published",
						"list intent" };

/* Exit statuses of a worker that found something wrong. */
enum { X_OPEN = 10, X_CLOSE = 11, X_TORN = 20, X_RESULT = 21, X_ORDER = 22, X_WALK = 23 };

/* ------------------------------------------------------------------ keys -- */

#define N_SHARED 1024u /* d: everybody writes them */
#define N_OWNED 16u    /* d: per worker slot, written by that slot only */
#define N_ADDK 16u     /* d: 8-byte counters (add, get, pop, del) */
#define N_CNT 4u       /* c: the counters */
#define N_CHURN 512u   /* c: set and deleted around the counters */
#define KEY_OWNED0 N_SHARED
#define KEY_ADD0 (KEY_OWNED0 + MAX_KIDS * N_OWNED)
#define KEY_CNT0 (KEY_ADD0 + N_ADDK)
#define KEY_CHURN0 (KEY_CNT0 + N_CNT)
#define N_KEYS (KEY_CHURN0 + N_CHURN)
#define N_MAIN KEY_CNT0 /* keys of d */
#define KEY_LIST 0xffffffffu /* the "key" of list values */
#define KEY_MAX 300u
#define HOT 16u /* shared keys 0..15 are picked often (contention) */

enum kkind { K_SHARED, K_OWNED, K_ADD, K_COUNTER, K_CHURN };

static uint16_t key_len[N_KEYS];
static unsigned char key_bytes[N_KEYS][KEY_MAX];
#define LOOKUP_SLOTS 8192u
static int32_t lookup_tab[LOOKUP_SLOTS]; /* key index + 1, 0: empty */

static enum kkind kind_of(uint32_t k)
{
	return k < KEY_OWNED0 ? K_SHARED : k < KEY_ADD0 ? K_OWNED : k < KEY_CNT0 ? K_ADD
		: k < KEY_CHURN0 ? K_COUNTER : K_CHURN;
}

static uint32_t lookup_hash(const void *p, size_t n)
{
	uint64_t h = t_fnv1a(T_FNV_INIT, p, n) ^ n;
	return (uint32_t)(h ^ h >> 32) % LOOKUP_SLOTS;
}

/* Key 0 is empty, key 1 one byte; the others start with a tag byte and
 * their index, then bytes derived from it (3 to 31 bytes, one in 32 up to
 * KEY_MAX). */
static void make_keys(void)
{
	for (uint32_t i = 0; i < N_KEYS; i++) {
		uint64_t r = t_mix(i ^ 0x6b6579ull);
		size_t n = i == 0 ? 0 : i == 1 ? 1 : r % 32 == 0 ? 64 + (r >> 8) % (KEY_MAX - 63)
							       : 3 + (r >> 8) % 29;
		key_len[i] = (uint16_t)n;
		for (size_t j = 0; j < n; j++)
			key_bytes[i][j] = tmsg_byte(r, j);
		if (n >= 3) {
			key_bytes[i][0] = 0xd7;
			key_bytes[i][1] = (unsigned char)i;
			key_bytes[i][2] = (unsigned char)(i >> 8);
		} else if (n == 1) {
			key_bytes[i][0] = 'k';
		}
		uint32_t s = lookup_hash(key_bytes[i], n);
		while (lookup_tab[s])
			s = (s + 1) % LOOKUP_SLOTS;
		lookup_tab[s] = (int32_t)i + 1;
	}
}

/* The index of a key, or -1 if it is none of ours. */
static int64_t lookup(const void *p, size_t n)
{
	if (n > KEY_MAX)
		return -1;
	for (uint32_t s = lookup_hash(p, n); lookup_tab[s]; s = (s + 1) % LOOKUP_SLOTS) {
		uint32_t i = (uint32_t)lookup_tab[s] - 1;
		if (key_len[i] == n && memcmp(key_bytes[i], p, n) == 0)
			return i;
	}
	return -1;
}

#define KB(i) key_bytes[i], key_len[i]

/* ---------------------------------------------------------------- values -- */

struct vhdr {
	uint32_t key;
	uint32_t len;
	uint64_t id;
	uint64_t sum;
};
#define VHDR ((uint32_t)sizeof(struct vhdr))
#define VMAX 65536u
#define VBUF (VMAX + 64u)

static uint32_t vlen_of(uint64_t id)
{
	uint64_t r = t_mix(id ^ 0x76616c7565ull);
	unsigned p = (unsigned)(r % 1000);
	r >>= 10;
	if (p < 600)
		return VHDR + (uint32_t)(r % 100);
	if (p < 900)
		return VHDR + (uint32_t)(r % 1000);
	if (p < 995)
		return VHDR + (uint32_t)(r % 8000);
	return VHDR + (uint32_t)(r % (VMAX - VHDR + 1));
}

static uint64_t vsum(const unsigned char *v, size_t n)
{
	uint64_t s = t_fnv1a(T_FNV_INIT, v, offsetof(struct vhdr, sum));
	return t_fnv1a(s, v + VHDR, n - VHDR);
}

/* Write value id of key into buf; returns its length. */
static size_t vmake(unsigned char *buf, uint32_t key, uint64_t id)
{
	uint32_t n = vlen_of(id);
	uint64_t seed = t_mix(id) ^ key;
	for (uint32_t i = VHDR; i < n; i++)
		buf[i] = tmsg_byte(seed, i);
	struct vhdr h = { .key = key, .len = n, .id = id, .sum = 0 };
	memcpy(buf, &h, VHDR);
	h.sum = vsum(buf, n);
	memcpy(buf, &h, VHDR);
	return n;
}

/* Check a value of n bytes that should belong to key; *id gets its id.
 * Returns NULL, or what is wrong with it. */
static const char *vcheck(const unsigned char *v, size_t n, uint32_t key, uint64_t *id)
{
	static char why[128];
	struct vhdr h;
	if (n < VHDR)
		return "shorter than a header";
	memcpy(&h, v, VHDR);
	*id = h.id;
	if (h.key != key) {
		snprintf(why, sizeof(why), "foreign (a value of key %#x)", h.key);
		return why;
	}
	if (h.len != n || vlen_of(h.id) != n) {
		snprintf(why, sizeof(why), "%zu bytes, header says %u, id %" PRIu64 " gives %u", n,
			 h.len, h.id, vlen_of(h.id));
		return why;
	}
	if (vsum(v, n) != h.sum)
		return "torn (bad checksum)";
	return NULL;
}

/* -------------------------------------------------------- shared records -- */

/* What a worker slot knows of one of its own keys. */
enum { OS_UNKNOWN, OS_ABSENT, OS_PRESENT };
struct owned {
	uint32_t state;
	uint32_t strict; /* no clear was in progress when it was established */
	uint64_t id;     /* OS_PRESENT: the value */
	uint64_t s0;     /* clears started (all slots) when it was established */
};

/* What a worker is doing, for targeted kills and hang reports. */
enum phase { PH_IDLE, PH_DREAD, PH_DWRITE, PH_OWN, PH_ADD, PH_CLEAR, PH_WALK, PH_LREAD,
	     PH_LWRITE, PH_ANON, PH_OPEN, PH_N };
static const char *const phase_name[PH_N] = { "idle", "dict read", "dict write", "own key",
					      "add", "clear", "walk", "list read", "list write",
					      "anonymous objects", "open/close" };

enum op { O_DSET, O_DINS, O_DGET, O_DGETS, O_DPOP, O_DDEL, O_DCAS, O_DADD, O_DLEN, O_DWALK,
	  O_DCLEAR, O_DBULK, O_OSET, O_OINS, O_OGET, O_OPOP, O_ODEL, O_OCAS, O_OADD, O_CADD,
	  O_CGET, O_CCHURN, O_CWALK, O_CLEN, O_LAPP, O_LINS, O_LGET, O_LSET, O_LPOP, O_LDEL,
	  O_LLEN, O_LCLEAR, O_ANON, O_REOPEN, O_N };
/* Per 10000 operations. */
static const unsigned weight[O_N] = {
	[O_DSET] = 900, [O_DINS] = 400, [O_DGET] = 1300, [O_DGETS] = 100, [O_DPOP] = 400,
	[O_DDEL] = 400, [O_DCAS] = 400, [O_DADD] = 300, [O_DLEN] = 150, [O_DWALK] = 8,
	[O_DCLEAR] = 1, [O_DBULK] = 20, [O_OSET] = 300, [O_OINS] = 150, [O_OGET] = 400,
	[O_OPOP] = 150, [O_ODEL] = 150, [O_OCAS] = 200, [O_OADD] = 80, [O_CADD] = 500,
	[O_CGET] = 200, [O_CCHURN] = 300, [O_CWALK] = 6, [O_CLEN] = 100, [O_LAPP] = 500,
	[O_LINS] = 250, [O_LGET] = 500, [O_LSET] = 250, [O_LPOP] = 400, [O_LDEL] = 150,
	[O_LLEN] = 100, [O_LCLEAR] = 2, [O_ANON] = 12, [O_REOPEN] = 30,
};
static const char *const op_name[O_N] = {
	"d.set", "d.insert", "d.get", "d.get(small)", "d.pop", "d.del", "d.cas", "d.add", "d.len",
	"d.walk", "d.clear", "d.bulk", "own.set", "own.insert", "own.get", "own.pop", "own.del",
	"own.cas", "own.add", "c.add", "c.get", "c.churn", "c.walk", "c.len", "l.append",
	"l.insert", "l.get", "l.set", "l.pop", "l.del", "l.len", "l.clear", "anon", "reopen",
};

/* One worker slot, written by its worker and read by the supervisor. */
struct kid {
	_Atomic uint32_t inc;    /* incarnation (the supervisor's count, from 1) */
	_Atomic uint32_t doomed; /* set by the supervisor before it kills */
	_Atomic uint32_t phase;
	_Atomic uint32_t add_pending; /* counter index + 1 between mark and ack */
	_Atomic uint32_t self_kill;   /* hook index + 1: killed itself there */
	_Atomic int64_t call_start;   /* CLOCK_MONOTONIC ns, 0 between calls */
	/* Across incarnations: */
	_Atomic uint64_t acked[N_CNT];   /* acknowledged adds to each counter */
	_Atomic uint64_t clears_started; /* this slot's clears of d */
	_Atomic uint64_t clears_finished;
	_Atomic uint64_t ops[O_N];
	_Atomic uint64_t hooks[N_HOOKS]; /* times each test hook fired */
	/* This incarnation's knowledge of the slot's own keys (the next one
	 * reads them at its start, and checks them against this). */
	struct owned own[N_OWNED];
	/* The write to own key pend_j - 1 in flight (0: none): what it leaves
	 * the key holding if it takes effect, pend_a or pend_b (ids; 0:
	 * absent). */
	_Atomic uint32_t pend_j;
	_Atomic uint64_t pend_a, pend_b;
};

#define MAX_IDS (1ull << 26) /* ids tracked in the popped bitmap */
struct shared {
	_Atomic uint32_t stop;
	_Atomic uint64_t next_id;
	_Atomic uint64_t enospc;
	/* A slot's own key found changed after its incarnation had read it,
	 * by nobody alive (a killed incarnation's write taking effect late): a
	 * failure, counted for the summary. */
	_Atomic uint64_t late;
	_Atomic uint32_t error_claimed;
	char error_desc[320];
	struct kid kids[MAX_KIDS];
	_Atomic uint64_t popped[MAX_IDS / 64];
};

static struct shared *sh;
static uint32_t nslots;
static shmq_heap *heap;
static shmq_dict *dd, *dc; /* "d", "c" */
static shmq_list *ll;      /* "l" */

/* ------------------------------------------------------------ small bits -- */

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return t_mix(*s);
}

static struct kid *me;
static uint32_t my_slot, my_inc;

static void describe(const char *fmt, va_list ap)
{
	uint32_t zero = 0;
	if (!atomic_compare_exchange_strong(&sh->error_claimed, &zero, 1))
		return;
	int n = snprintf(sh->error_desc, sizeof(sh->error_desc), "worker %u (inc %u): ", my_slot,
			 my_inc);
	vsnprintf(sh->error_desc + n, sizeof(sh->error_desc) - (size_t)n, fmt, ap);
}

/* A worker found something wrong: describe it (the first description wins)
 * and exit with status code. */
static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	describe(fmt, ap);
	va_end(ap);
	_exit(code);
}

/* A change of an own key that this incarnation did not make and no clear
 * explains: a write of a killed incarnation taking effect late (or a lost
 * or stale write). Counted, and a failure. */
static void late_write(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void late_write(const char *fmt, ...)
{
	atomic_fetch_add(&sh->late, 1);
	va_list ap;
	va_start(ap, fmt);
	describe(fmt, ap);
	va_end(ap);
	_exit(X_ORDER);
}

static void call_begin(void)
{
	atomic_store(&me->call_start, t_now());
}

static void call_end(void)
{
	atomic_store(&me->call_start, 0);
}

/* Wrap a library call: timed for the hang check. */
#define CALL(expr)                      \
	({                              \
		call_begin();           \
		__typeof__(expr) r_ = (expr); \
		call_end();             \
		r_;                     \
	})

static uint64_t new_id(void)
{
	return atomic_fetch_add(&sh->next_id, 1);
}

/* Mark id popped; false if it was already. */
static bool mark_popped(uint64_t id)
{
	if (id >= MAX_IDS)
		return true;
	uint64_t bit = 1ull << (id % 64);
	return !(atomic_fetch_or(&sh->popped[id / 64], bit) & bit);
}

static bool was_popped(uint64_t id)
{
	return id < MAX_IDS && (atomic_load(&sh->popped[id / 64]) & 1ull << (id % 64));
}

/* Clears of d started and finished, all slots. Read finished first: equal
 * sums mean that no clear was in progress at the moment the last finished
 * count was read (each count only grows). */
static uint64_t clears(bool started)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < nslots; i++)
		n += atomic_load(started ? &sh->kids[i].clears_started : &sh->kids[i].clears_finished);
	return n;
}

/* A result that must be one of a few; anything else is X_RESULT. */
static void expect_rc(long r, const char *what, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		if (r == va_arg(ap, int)) {
			va_end(ap);
			return;
		}
	va_end(ap);
	if (r == -ENOSPC) {
		atomic_fetch_add(&sh->enospc, 1); /* counted; a failure at the end */
		return;
	}
	die(X_RESULT, "%s: %ld", what, r);
}

/* -------------------------------------------------------------- workers -- */

static unsigned char *vbuf, *vbuf2; /* VBUF bytes each */
static uint64_t last_cnt[N_CNT];    /* the highest counter value this worker saw */

static uint32_t shared_key(uint64_t *rng)
{
	uint64_t r = rng_next(rng);
	return (uint32_t)(r % 8 == 0 ? (r >> 8) % HOT : (r >> 8) % N_SHARED);
}

/* An own key that a clear took away while its slot added to it (own.add)
 * holds the counter 1 until its slot deletes it (or for good, if the slot
 * was killed in between): its "id". */
#define ADDED_ONE (UINT64_MAX - 1)

static bool added_one(uint32_t k, const unsigned char *v, size_t n)
{
	int64_t x;
	if (kind_of(k) != K_OWNED || n != 8)
		return false;
	memcpy(&x, v, 8);
	return x == 1;
}

/* Check a value read from key k of d or c. */
static void check_value(uint32_t k, const unsigned char *v, ssize_t n, const char *what,
			uint64_t *id)
{
	uint64_t dummy;
	id = id ? id : &dummy;
	*id = 0;
	if (n >= 0 && added_one(k, v, (size_t)n)) {
		*id = ADDED_ONE;
		return;
	}
	if (kind_of(k) == K_ADD || kind_of(k) == K_COUNTER) {
		int64_t x;
		if (n != 8)
			die(X_TORN, "%s: counter key %u holds %zd bytes", what, k, n);
		memcpy(&x, v, 8);
		if (x < 0 || (kind_of(k) == K_ADD && x < 1))
			die(X_TORN, "%s: counter key %u holds %" PRId64, what, k, x);
		*id = (uint64_t)x;
		return;
	}
	const char *bad = vcheck(v, (size_t)n, k, id);
	if (bad)
		die(X_TORN, "%s of key %u: %s", what, k, bad);
}

static void d_get(uint32_t k, bool pop)
{
	atomic_store(&me->phase, pop ? PH_DWRITE : PH_DREAD);
	ssize_t n = pop ? CALL(shmq_dict_pop(dd, KB(k), vbuf, VBUF))
			: CALL(shmq_dict_get(dd, KB(k), vbuf, VBUF));
	if (n == -ENOENT)
		return;
	if (n < 0)
		die(X_RESULT, "d.%s of key %u: %zd", pop ? "pop" : "get", k, n);
	uint64_t id;
	check_value(k, vbuf, n, pop ? "d.pop" : "d.get", &id);
	if (pop && kind_of(k) != K_ADD && !mark_popped(id))
		die(X_ORDER, "d.pop of key %u returned id %" PRIu64 ", popped before", k, id);
}

/* get with a buffer too small for any value of key k: -EMSGSIZE or
 * -ENOENT, and nothing written to the buffer. */
static void d_get_small(uint32_t k, uint64_t *rng)
{
	atomic_store(&me->phase, PH_DREAD);
	size_t cap = kind_of(k) == K_ADD ? rng_next(rng) % 8 : rng_next(rng) % VHDR;
	memset(vbuf, 0xa5, 64);
	ssize_t n = rng_next(rng) & 1 ? CALL(shmq_dict_get(dd, KB(k), vbuf, cap))
				       : CALL(shmq_dict_pop(dd, KB(k), vbuf, cap));
	expect_rc(n, "d.get/pop with a small buffer", 2, -EMSGSIZE, -ENOENT);
	for (int i = 0; i < 64; i++)
		if (vbuf[i] != 0xa5)
			die(X_RESULT, "d.get/pop with a %zu-byte buffer gave %zd and wrote byte %d",
			    cap, n, i);
}

static void d_write(enum op op, uint32_t k, uint64_t *rng)
{
	atomic_store(&me->phase, PH_DWRITE);
	int r;
	switch (op) {
	case O_DSET: {
		size_t n = vmake(vbuf, k, new_id());
		r = CALL(shmq_dict_set(dd, KB(k), vbuf, n));
		expect_rc(r, "d.set", 1, 0);
		break;
	}
	case O_DINS: {
		size_t n = vmake(vbuf, k, new_id());
		r = CALL(shmq_dict_insert(dd, KB(k), vbuf, n));
		expect_rc(r, "d.insert", 2, 0, -EEXIST);
		break;
	}
	case O_DDEL:
		r = CALL(shmq_dict_del(dd, KB(k)));
		expect_rc(r, "d.del", 2, 0, -ENOENT);
		break;
	default: { /* O_DCAS */
		ssize_t n = CALL(shmq_dict_get(dd, KB(k), vbuf2, VBUF));
		size_t m = vmake(vbuf, k, new_id());
		if (n >= 0) {
			check_value(k, vbuf2, n, "d.get before d.cas", NULL);
			unsigned how = (unsigned)(rng_next(rng) % 4);
			if (how == 0) { /* a wrong old value: never swapped */
				vbuf2[rng_next(rng) % (size_t)n] ^= 1;
			} else if (how == 1) {
				n--;
			}
			r = CALL(shmq_dict_cas(dd, KB(k), vbuf2, (size_t)n, vbuf, m));
			if (how <= 1)
				expect_rc(r, "d.cas with a wrong old value", 2, -EAGAIN, -ENOENT);
			else
				expect_rc(r, "d.cas", 3, 0, -EAGAIN, -ENOENT);
		} else {
			if (n != -ENOENT)
				die(X_RESULT, "d.get before d.cas: %zd", n);
			r = CALL(shmq_dict_cas(dd, KB(k), "", 0, vbuf, m));
			expect_rc(r, "d.cas of an empty old value", 2, -EAGAIN, -ENOENT);
		}
		break;
	}
	}
}

static void d_add(uint64_t *rng)
{
	uint32_t k = KEY_ADD0 + (uint32_t)(rng_next(rng) % N_ADDK);
	unsigned how = (unsigned)(rng_next(rng) % 16);
	if (how < 2) {
		d_get(k, how == 1);
		return;
	}
	if (how == 2) {
		atomic_store(&me->phase, PH_DWRITE);
		expect_rc(CALL(shmq_dict_del(dd, KB(k))), "d.del of a counter", 2, 0, -ENOENT);
		return;
	}
	atomic_store(&me->phase, PH_ADD);
	int64_t res = 0;
	int r = CALL(shmq_dict_add(dd, KB(k), 1, &res));
	expect_rc(r, "d.add", 1, 0);
	if (r == 0 && res < 1)
		die(X_ORDER, "d.add(+1) of key %u gave %" PRId64, k, res);
}

static uint64_t d_len_max(void)
{
	return N_SHARED + (uint64_t)nslots * N_OWNED + N_ADDK;
}

static void d_len(void)
{
	atomic_store(&me->phase, PH_DREAD);
	ssize_t n = CALL(shmq_dict_len(dd));
	if (n < 0 || (uint64_t)n > d_len_max())
		die(X_RESULT, "d.len: %zd (at most %" PRIu64 " keys exist)", n, d_len_max());
}

static void d_clear(void)
{
	atomic_store(&me->phase, PH_CLEAR);
	atomic_fetch_add(&me->clears_started, 1);
	int r = CALL(shmq_dict_clear(dd));
	atomic_fetch_add(&me->clears_finished, 1);
	expect_rc(r, "d.clear", 1, 0);
}

/* 64 shared keys in a row inserted, or deleted. */
static void d_bulk(uint64_t *rng)
{
	atomic_store(&me->phase, PH_DWRITE);
	uint32_t base = (uint32_t)(rng_next(rng) % (N_SHARED / 64)) * 64;
	bool ins = rng_next(rng) & 1;
	for (uint32_t k = base; k < base + 64; k++) {
		if (ins) {
			size_t n = vmake(vbuf, k, new_id());
			expect_rc(CALL(shmq_dict_insert(dd, KB(k), vbuf, n)), "d.insert (bulk)", 2, 0,
				  -EEXIST);
		} else {
			expect_rc(CALL(shmq_dict_del(dd, KB(k))), "d.del (bulk)", 2, 0, -ENOENT);
		}
	}
}

/* One step of a walk, with buffers sometimes too small (then -EMSGSIZE is
 * checked and the step retried with full ones) and sometimes no value
 * buffer at all. Returns next's result; *kn, *vn the lengths (*vn SIZE_MAX:
 * no value asked for). */
static int walk_step(shmq_dict *d, uint64_t *cur, size_t *kn, size_t *vn, uint64_t *rng)
{
	uint64_t r = rng_next(rng);
	bool small = r % 16 == 0, noval = r % 16 == 1;
	struct iovec k = { vbuf2, KEY_MAX }, v = { vbuf, VBUF };
	if (small) {
		k.iov_len = (r >> 8) % 4;
		v.iov_len = (r >> 16) % 40;
	}
	size_t kcap = k.iov_len, vcap = v.iov_len;
	uint64_t before = *cur;
	int x = CALL(shmq_dict_next(d, cur, &k, noval ? NULL : &v));
	if (x == -EMSGSIZE) {
		if (!small)
			die(X_WALK, "next with full buffers: -EMSGSIZE (key %zu, value %zu bytes)",
			    k.iov_len, v.iov_len);
		if (*cur != before)
			die(X_WALK, "next: -EMSGSIZE moved the cursor");
		if (k.iov_len <= kcap && v.iov_len <= vcap)
			die(X_WALK, "next: -EMSGSIZE, but key (%zu) and value (%zu) fit (%zu, %zu)",
			    k.iov_len, v.iov_len, kcap, vcap);
		if (k.iov_len > KEY_MAX || v.iov_len > VMAX)
			die(X_TORN, "next: -EMSGSIZE with lengths %zu, %zu: longer than any", k.iov_len,
			    v.iov_len);
		k = (struct iovec){ vbuf2, KEY_MAX };
		v = (struct iovec){ vbuf, VBUF };
		kcap = KEY_MAX;
		vcap = VBUF;
		x = CALL(shmq_dict_next(d, cur, &k, noval ? NULL : &v));
	}
	if (x == 1 && (k.iov_len > kcap || (!noval && v.iov_len > vcap)))
		die(X_WALK, "next: 1 with lengths %zu, %zu past the buffers (%zu, %zu)", k.iov_len,
		    v.iov_len, kcap, vcap);
	if (x != 1 && x != 0)
		die(X_RESULT, "next: %d", x);
	if (x == 1 && *cur == before)
		die(X_WALK, "next: 1 without moving the cursor");
	*kn = k.iov_len;
	*vn = noval ? SIZE_MAX : v.iov_len;
	return x;
}

#define WALK_MAX 1000000u /* items: more means the walk does not end */

/* A walk of d. Keys of d only, valid values; this slot's own keys as it
 * knows them (one known present for the whole walk seen exactly once, with
 * its value; one known absent never seen). */
static void d_walk(uint64_t *rng)
{
	atomic_store(&me->phase, PH_WALK);
	struct owned known[N_OWNED];
	memcpy(known, me->own, sizeof(known));
	unsigned seen[N_OWNED] = { 0 };
	uint64_t seen_id[N_OWNED] = { 0 };
	uint64_t cur = 0, items = 0;
	size_t kn, vn;
	while (walk_step(dd, &cur, &kn, &vn, rng) == 1) {
		if (++items > WALK_MAX)
			die(X_WALK, "d walk: more than %u items", WALK_MAX);
		int64_t k = lookup(vbuf2, kn);
		if (k < 0 || k >= N_MAIN)
			die(X_TORN, "d walk: a key of %zu bytes that d never had (index %" PRId64 ")",
			    kn, k);
		uint64_t id = 0;
		if (vn != SIZE_MAX)
			check_value((uint32_t)k, vbuf, (ssize_t)vn, "d walk", &id);
		uint32_t own0 = KEY_OWNED0 + my_slot * N_OWNED;
		if (k >= own0 && k < own0 + N_OWNED) {
			uint32_t j = (uint32_t)k - own0;
			seen[j]++;
			seen_id[j] = vn == SIZE_MAX ? 0 : id;
		}
	}
	uint64_t s_end = clears(true);
	for (uint32_t j = 0; j < N_OWNED; j++) {
		uint32_t k = KEY_OWNED0 + my_slot * N_OWNED + j;
		if (known[j].state == OS_ABSENT && seen[j])
			late_write("d walk: own key %u seen %u times, deleted before the walk (a late "
				   "write)", k, seen[j]);
		if (known[j].state != OS_PRESENT)
			continue;
		if (seen[j] && seen_id[j] && seen_id[j] != known[j].id)
			late_write("d walk: own key %u with id %" PRIu64 ", set to %" PRIu64 " (a late, "
				   "lost or stale write)", k, seen_id[j], known[j].id);
		if (known[j].strict && s_end == known[j].s0 && seen[j] != 1)
			die(X_WALK, "d walk: own key %u present throughout, seen %u times", k, seen[j]);
	}
}

/* ------------------------------------------------------- a slot's own keys -- */

/* Check a result for own key j (id 0: absent) against what this slot knows:
 * known absent stays absent (only this slot writes it); known present is
 * that value, or absent if a clear started since. s_now: clears started,
 * read after the call returned. */
static void own_expect(uint32_t j, uint64_t got, uint64_t s_now, const char *what)
{
	struct owned *o = &me->own[j];
	uint32_t k = KEY_OWNED0 + my_slot * N_OWNED + j;
	if (o->state == OS_ABSENT && got)
		late_write("%s of own key %u: id %" PRIu64 ", but it was deleted (a late write)",
			   what, k, got);
	if (o->state != OS_PRESENT)
		return;
	if (got && got != o->id)
		late_write("%s of own key %u: id %" PRIu64 ", but it was set to %" PRIu64
			   " (a late, lost or stale write)", what, k, got, o->id);
	if (!got && o->strict && s_now == o->s0)
		late_write("%s of own key %u: absent, but it was set to %" PRIu64
			   " and no clear started since (a late removal or a lost write)", what, k,
			   o->id);
}

/* Establish what own key j holds (id 0: absent), as of a call that began
 * after clears were read as f (finished) and s (started). */
static void own_know(uint32_t j, uint64_t id, uint64_t f, uint64_t s)
{
	struct owned *o = &me->own[j];
	if (!id) {
		*o = (struct owned){ .state = OS_ABSENT };
		return;
	}
	*o = (struct owned){ .state = OS_PRESENT, .strict = f == s, .id = id, .s0 = s };
}

/* A write to own key j is in flight: if it takes effect, the key holds a or
 * b (ids, 0: absent). Recorded for the next incarnation, should this one be
 * killed before it knows the result. */
static void pend(uint32_t j, uint64_t a, uint64_t b)
{
	atomic_store(&me->pend_a, a);
	atomic_store(&me->pend_b, b);
	atomic_store(&me->pend_j, j + 1);
}

static void pend_done(void)
{
	atomic_store(&me->pend_j, 0);
}

/* A new incarnation's start: a killed writer's change is final as readers
 * saw it when it died (rolled back if unpublished, finished if published),
 * so what the slot's own keys hold now is exactly what the dead incarnation
 * left: read once, each must be what it knew, what the write it had in
 * flight leaves, or (a clear started since) absent. From then on every
 * result is exact. */
static void own_init(void)
{
	uint32_t pj = atomic_load(&me->pend_j);
	uint64_t pa = atomic_load(&me->pend_a), pb = atomic_load(&me->pend_b);
	atomic_store(&me->phase, PH_OWN);
	for (uint32_t j = 0; j < N_OWNED; j++) {
		struct owned *o = &me->own[j];
		uint32_t k = KEY_OWNED0 + my_slot * N_OWNED + j;
		uint64_t f = clears(false), s = clears(true), id = 0;
		ssize_t n = CALL(shmq_dict_get(dd, KB(k), vbuf, VBUF));
		uint64_t s_now = clears(true);
		if (n >= 0)
			check_value(k, vbuf, n, "own.get at the start", &id);
		else if (n != -ENOENT)
			die(X_RESULT, "own.get at the start of key %u: %zd", k, n);
		bool in_flight = pj == j + 1 && (id == pa || id == pb);
		bool known = o->state == OS_PRESENT ? id == o->id || (!id && (!o->strict || s_now != o->s0))
						    : !id;
		if (!in_flight && !known)
			late_write("own key %u at the start: id %" PRIu64 ", but the killed incarnation "
				   "knew %s %" PRIu64 " (in flight: %s %" PRIu64 "/%" PRIu64 ")", k, id,
				   o->state == OS_PRESENT ? "id" : "it absent", o->id,
				   pj == j + 1 ? "a write leaving" : "nothing", pa, pb);
		if (id == ADDED_ONE) { /* a killed own.add's counter: away with it */
			expect_rc(CALL(shmq_dict_del(dd, KB(k))), "own.del at the start", 2, 0, -ENOENT);
			id = 0;
		}
		own_know(j, id, f, s);
		if (pj == j + 1)
			pend_done();
	}
}

static void own_op(enum op op, uint64_t *rng)
{
	atomic_store(&me->phase, PH_OWN);
	uint32_t j = (uint32_t)(rng_next(rng) % N_OWNED);
	uint32_t k = KEY_OWNED0 + my_slot * N_OWNED + j;
	struct owned *o = &me->own[j];
	uint64_t f = clears(false), s = clears(true), id = 0;
	ssize_t n;
	int r;
	switch (op) {
	case O_OSET: {
		size_t m = vmake(vbuf, k, id = new_id());
		pend(j, id, id);
		r = CALL(shmq_dict_set(dd, KB(k), vbuf, m));
		expect_rc(r, "own.set", 1, 0);
		if (r == 0)
			own_know(j, id, f, s);
		break;
	}
	case O_OINS: {
		size_t m = vmake(vbuf, k, id = new_id());
		pend(j, id, id);
		r = CALL(shmq_dict_insert(dd, KB(k), vbuf, m));
		expect_rc(r, "own.insert", 2, 0, -EEXIST);
		uint64_t s_now = clears(true);
		if (r == 0 && o->state == OS_PRESENT && o->strict && s_now == o->s0)
			late_write("own.insert of key %u: 0, but it holds %" PRIu64
				   " and no clear started since (a late removal)", k, o->id);
		if (r == -EEXIST && o->state == OS_ABSENT)
			late_write("own.insert of key %u: -EEXIST, but it was deleted (a late write)", k);
		if (r == 0)
			own_know(j, id, f, s);
		break;
	}
	case O_OGET:
	case O_OPOP: {
		bool pop = op == O_OPOP, small = rng_next(rng) % 4 == 0 && o->state == OS_PRESENT;
		size_t cap = small ? rng_next(rng) % VHDR : VBUF;
		if (pop && !small)
			pend(j, 0, 0);
		n = pop ? CALL(shmq_dict_pop(dd, KB(k), vbuf, cap))
			: CALL(shmq_dict_get(dd, KB(k), vbuf, cap));
		uint64_t s_now = clears(true);
		if (small) {
			expect_rc(n, "own.get/pop with a small buffer", 2, -EMSGSIZE, -ENOENT);
			own_expect(j, n == -EMSGSIZE ? o->id : 0, s_now, "own.get/pop (small buffer)");
			if (n == -ENOENT)
				own_know(j, 0, f, s);
			break; /* nothing removed: a later get checks it */
		}
		if (n >= 0) {
			check_value(k, vbuf, n, pop ? "own.pop" : "own.get", &id);
			if (pop && !mark_popped(id))
				die(X_ORDER, "own.pop of key %u returned id %" PRIu64 ", popped before", k,
				    id);
		} else if (n != -ENOENT) {
			die(X_RESULT, "own.%s of key %u: %zd", pop ? "pop" : "get", k, n);
		}
		own_expect(j, n >= 0 ? id : 0, s_now, pop ? "own.pop" : "own.get");
		if (pop || n == -ENOENT)
			own_know(j, 0, f, s);
		break;
	}
	case O_ODEL: {
		pend(j, 0, 0);
		r = CALL(shmq_dict_del(dd, KB(k)));
		uint64_t s_now = clears(true);
		expect_rc(r, "own.del", 2, 0, -ENOENT);
		if (r == 0 && o->state == OS_ABSENT)
			late_write("own.del of key %u: 0, but it was deleted (a late write)", k);
		if (r == -ENOENT)
			own_expect(j, 0, s_now, "own.del");
		own_know(j, 0, f, s);
		break;
	}
	case O_OCAS: {
		/* s: clears started before the get. Present then, the key stays
		 * present until a clear starts (or one in progress then ends):
		 * only this slot writes it; absent, it stays absent. */
		bool quiet = f == s; /* no clear in progress */
		n = CALL(shmq_dict_get(dd, KB(k), vbuf2, VBUF));
		uint64_t s_now = clears(true), cur = 0, s_get = s;
		if (n >= 0)
			check_value(k, vbuf2, n, "own.get before own.cas", &cur);
		else if (n != -ENOENT)
			die(X_RESULT, "own.get before own.cas: %zd", n);
		own_expect(j, cur, s_now, "own.get before own.cas");
		f = clears(false);
		s = clears(true);
		size_t m = vmake(vbuf, k, id = new_id());
		pend(j, id, id);
		r = CALL(shmq_dict_cas(dd, KB(k), vbuf2, n >= 0 ? (size_t)n : 0, vbuf, m));
		s_now = clears(true);
		if (n < 0) { /* nobody else creates it */
			if (r == -EAGAIN)
				late_write("own.cas of key %u: -EAGAIN, but it was absent (a late write)",
					   k);
			expect_rc(r, "own.cas of an absent key", 1, -ENOENT);
		} else {
			if (r == -EAGAIN)
				late_write("own.cas of key %u: -EAGAIN, but it held %" PRIu64
					   " (a late write)", k, cur);
			expect_rc(r, "own.cas", 2, 0, -ENOENT);
			if (r == -ENOENT && quiet && s_now == s_get)
				late_write("own.cas of key %u: -ENOENT, but it held %" PRIu64
					   " and no clear started (a late removal)", k, cur);
		}
		if (r == 0)
			own_know(j, id, f, s);
		else if (r == -ENOENT)
			own_know(j, 0, f, s);
		break;
	}
	default: { /* O_OADD: a value of 24+ bytes is no counter */
		if (o->state != OS_PRESENT)
			break;
		int64_t res = 0;
		pend(j, ADDED_ONE, 0);
		r = CALL(shmq_dict_add(dd, KB(k), 1, &res));
		uint64_t s_now = clears(true);
		if (r == -EINVAL)
			break;
		expect_rc(r, "own.add on a value of 24+ bytes", 1, 0);
		if (r != 0)
			break;
		/* Created: only if a clear took the value away meanwhile. */
		if (res != 1)
			die(X_ORDER, "own.add on key %u holding %" PRIu64 " (not 8 bytes): 0, result %"
			    PRId64, k, o->id, res);
		if (o->strict && s_now == o->s0)
			late_write("own.add on key %u holding %" PRIu64 " (not 8 bytes) created it, "
				   "and no clear started since (a late removal)", k, o->id);
		/* (-ENOENT: yet another clear) */
		expect_rc(CALL(shmq_dict_del(dd, KB(k))), "own.del after own.add", 2, 0, -ENOENT);
		own_know(j, 0, f, s);
		break;
	}
	}
	pend_done();
}

/* --------------------------------------------------------- the counters -- */

static uint32_t cnt_key(uint32_t c)
{
	return KEY_CNT0 + c;
}

static void c_add(uint64_t *rng)
{
	atomic_store(&me->phase, PH_ADD);
	uint32_t c = (uint32_t)(rng_next(rng) % N_CNT);
	int64_t res = 0;
	atomic_store(&me->add_pending, c + 1);
	int r = CALL(shmq_dict_add(dc, KB(cnt_key(c)), 1, &res));
	if (r == 0)
		atomic_fetch_add(&me->acked[c], 1);
	atomic_store(&me->add_pending, 0);
	expect_rc(r, "c.add", 1, 0);
	if (r == 0 && (uint64_t)res <= last_cnt[c])
		die(X_ORDER, "c.add(+1) of counter %u gave %" PRId64 ", after %" PRIu64 " was seen",
		    c, res, last_cnt[c]);
	if (r == 0)
		last_cnt[c] = (uint64_t)res;
}

static void c_saw(uint32_t c, uint64_t v, const char *what)
{
	if (v < last_cnt[c])
		die(X_ORDER, "%s of counter %u: %" PRIu64 ", after %" PRIu64 " was seen", what, c, v,
		    last_cnt[c]);
	last_cnt[c] = v;
}

static void c_get(uint64_t *rng)
{
	atomic_store(&me->phase, PH_DREAD);
	uint32_t c = (uint32_t)(rng_next(rng) % N_CNT);
	ssize_t n = CALL(shmq_dict_get(dc, KB(cnt_key(c)), vbuf, VBUF));
	if (n != 8)
		die(n < 0 ? X_RESULT : X_TORN, "c.get of counter %u: %zd", c, n);
	int64_t v;
	memcpy(&v, vbuf, 8);
	if (v < 0)
		die(X_TORN, "c.get of counter %u: %" PRId64, c, v);
	c_saw(c, (uint64_t)v, "c.get");
}

static void c_churn(uint64_t *rng)
{
	atomic_store(&me->phase, PH_DWRITE);
	uint64_t r = rng_next(rng);
	if (r % 32 == 0) { /* 128 in a row in or out: the table resizes */
		uint32_t base = KEY_CHURN0 + (uint32_t)((r >> 8) % (N_CHURN / 128)) * 128;
		bool ins = r & 32;
		for (uint32_t k = base; k < base + 128; k++) {
			if (ins) {
				size_t n = vmake(vbuf, k, new_id());
				expect_rc(CALL(shmq_dict_set(dc, KB(k), vbuf, n)), "c.set (bulk)", 1, 0);
			} else {
				expect_rc(CALL(shmq_dict_del(dc, KB(k))), "c.del (bulk)", 2, 0, -ENOENT);
			}
		}
		return;
	}
	uint32_t k = KEY_CHURN0 + (uint32_t)((r >> 8) % N_CHURN);
	switch ((r >> 20) % 4) {
	case 0: {
		size_t n = vmake(vbuf, k, new_id());
		expect_rc(CALL(shmq_dict_set(dc, KB(k), vbuf, n)), "c.set", 1, 0);
		break;
	}
	case 1: expect_rc(CALL(shmq_dict_del(dc, KB(k))), "c.del", 2, 0, -ENOENT); break;
	default: {
		atomic_store(&me->phase, PH_DREAD);
		ssize_t n = CALL(shmq_dict_get(dc, KB(k), vbuf, VBUF));
		if (n >= 0)
			check_value(k, vbuf, n, "c.get", NULL);
		else if (n != -ENOENT)
			die(X_RESULT, "c.get of key %u: %zd", k, n);
		break;
	}
	}
}

/* A walk of c: keys of c only, valid values, every counter exactly once
 * (none is ever removed), never below what this worker saw before. */
static void c_walk(uint64_t *rng)
{
	atomic_store(&me->phase, PH_WALK);
	unsigned seen[N_CNT] = { 0 };
	uint64_t cur = 0, items = 0;
	size_t kn, vn;
	while (walk_step(dc, &cur, &kn, &vn, rng) == 1) {
		if (++items > WALK_MAX)
			die(X_WALK, "c walk: more than %u items", WALK_MAX);
		int64_t k = lookup(vbuf2, kn);
		if (k < KEY_CNT0 || k >= N_KEYS)
			die(X_TORN, "c walk: a key of %zu bytes that c never had (index %" PRId64 ")",
			    kn, k);
		uint64_t v = 0;
		if (vn != SIZE_MAX)
			check_value((uint32_t)k, vbuf, (ssize_t)vn, "c walk", &v);
		if (kind_of((uint32_t)k) == K_COUNTER) {
			seen[k - KEY_CNT0]++;
			if (vn != SIZE_MAX)
				c_saw((uint32_t)k - KEY_CNT0, v, "c walk");
		}
	}
	for (uint32_t c = 0; c < N_CNT; c++)
		if (seen[c] != 1)
			die(X_WALK, "c walk: counter %u (present throughout) seen %u times", c, seen[c]);
}

static void c_len(void)
{
	atomic_store(&me->phase, PH_DREAD);
	ssize_t n = CALL(shmq_dict_len(dc));
	if (n < (ssize_t)N_CNT || n > (ssize_t)(N_CNT + N_CHURN))
		die(X_RESULT, "c.len: %zd (%u counters, %u other keys)", n, N_CNT, N_CHURN);
}

/* ------------------------------------------------------------------ list -- */

#define LIST_LOW 50
#define LIST_HIGH 400
#define LIST_MAX 100000 /* more than the workers could have put there */
static ssize_t list_len_seen = 100;

static int64_t list_index(uint64_t *rng)
{
	int64_t span = list_len_seen + 3;
	return (int64_t)(rng_next(rng) % (uint64_t)(2 * span + 1)) - span;
}

static void l_check(ssize_t n, const char *what, bool popped)
{
	uint64_t id;
	const char *bad = vcheck(vbuf, (size_t)n, KEY_LIST, &id);
	if (bad)
		die(X_TORN, "%s: %s", what, bad);
	if (popped && !mark_popped(id))
		die(X_ORDER, "%s returned id %" PRIu64 ", popped before", what, id);
}

static void list_op(enum op op, uint64_t *rng)
{
	if (list_len_seen > LIST_HIGH && (op == O_LAPP || op == O_LINS))
		op = O_LPOP;
	else if (list_len_seen < LIST_LOW && (op == O_LPOP || op == O_LDEL))
		op = O_LAPP;
	atomic_store(&me->phase, op == O_LGET || op == O_LLEN ? PH_LREAD : PH_LWRITE);
	int r;
	ssize_t n;
	switch (op) {
	case O_LAPP: {
		size_t m = vmake(vbuf, KEY_LIST, new_id());
		expect_rc(CALL(shmq_list_append(ll, vbuf, m)), "l.append", 1, 0);
		break;
	}
	case O_LINS: {
		size_t m = vmake(vbuf, KEY_LIST, new_id());
		int64_t i = list_index(rng);
		r = CALL(shmq_list_insert(ll, i, vbuf, m));
		if (r != 0 && r != -ENOSPC)
			die(X_RESULT, "l.insert at %" PRId64 ": %d (insert clamps)", i, r);
		expect_rc(r, "l.insert", 1, 0);
		break;
	}
	case O_LGET: {
		int64_t i = list_index(rng);
		bool small = rng_next(rng) % 16 == 0;
		size_t cap = small ? rng_next(rng) % VHDR : VBUF;
		memset(vbuf, 0xa5, 64);
		n = CALL(shmq_list_get(ll, i, vbuf, cap));
		if (small) {
			expect_rc(n, "l.get with a small buffer", 2, -EMSGSIZE, -ERANGE);
			for (int b = 0; b < 64; b++)
				if (vbuf[b] != 0xa5)
					die(X_RESULT, "l.get with a %zu-byte buffer gave %zd and wrote "
						      "byte %d", cap, n, b);
		} else if (n >= 0) {
			l_check(n, "l.get", false);
		} else if (n != -ERANGE) {
			die(X_RESULT, "l.get at %" PRId64 ": %zd", i, n);
		}
		break;
	}
	case O_LSET: {
		size_t m = vmake(vbuf, KEY_LIST, new_id());
		int64_t i = list_index(rng);
		expect_rc(CALL(shmq_list_set(ll, i, vbuf, m)), "l.set", 2, 0, -ERANGE);
		break;
	}
	case O_LPOP: {
		uint64_t w = rng_next(rng) % 8;
		int64_t i = w < 3 ? -1 : w < 6 ? 0 : list_index(rng);
		if (w == 7) { /* too small: nothing removed */
			size_t cap = rng_next(rng) % VHDR;
			n = CALL(shmq_list_pop(ll, i, vbuf, cap));
			expect_rc(n, "l.pop with a small buffer", 2, -EMSGSIZE, -ERANGE);
			break;
		}
		n = CALL(shmq_list_pop(ll, i, vbuf, VBUF));
		if (n >= 0)
			l_check(n, "l.pop", true);
		else if (n != -ERANGE)
			die(X_RESULT, "l.pop at %" PRId64 ": %zd", i, n);
		break;
	}
	case O_LDEL:
		expect_rc(CALL(shmq_list_del(ll, list_index(rng))), "l.del", 2, 0, -ERANGE);
		break;
	case O_LLEN:
		n = CALL(shmq_list_len(ll));
		if (n < 0 || n > LIST_MAX)
			die(X_RESULT, "l.len: %zd", n);
		list_len_seen = n;
		break;
	default: /* O_LCLEAR */
		expect_rc(CALL(shmq_list_clear(ll)), "l.clear", 1, 0);
		break;
	}
	if (rng_next(rng) % 8 == 0) {
		n = CALL(shmq_list_len(ll));
		if (n < 0 || n > LIST_MAX)
			die(X_RESULT, "l.len: %zd", n);
		list_len_seen = n;
	}
}

/* ------------------------------------------------- private objects, reopen -- */

/* An anonymous dict and list of our own: nobody else knows them, so every
 * result is exact. A kill leaves them to be freed when the death is
 * noticed. */
static void anon(uint64_t *rng)
{
	atomic_store(&me->phase, PH_ANON);
	shmq_dict *d;
	shmq_list *l;
	int r = CALL(shmq_dict_create(heap, NULL, &d));
	expect_rc(r, "anonymous dict create", 1, 0);
	if (r)
		return;
	r = CALL(shmq_list_create(heap, NULL, &l));
	expect_rc(r, "anonymous list create", 1, 0);
	if (r) {
		expect_rc(CALL(shmq_dict_close(d)), "anonymous dict close", 1, 0);
		return;
	}
	uint32_t n = 1 + (uint32_t)(rng_next(rng) % 40), base = (uint32_t)(rng_next(rng) % 900);
	uint64_t ids[40];
	for (uint32_t i = 0; i < n; i++) {
		size_t m = vmake(vbuf, base + i, ids[i] = new_id());
		expect_rc(CALL(shmq_dict_insert(d, KB(base + i), vbuf, m)), "anon d.insert", 1, 0);
		m = vmake(vbuf, KEY_LIST, ids[i]);
		expect_rc(CALL(shmq_list_append(l, vbuf, m)), "anon l.append", 1, 0);
	}
	ssize_t len = CALL(shmq_dict_len(d)), llen = CALL(shmq_list_len(l));
	if (len != (ssize_t)n || llen != (ssize_t)n)
		die(X_RESULT, "anonymous dict/list of %u items: len %zd / %zd", n, len, llen);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t id;
		ssize_t x = CALL(shmq_dict_get(d, KB(base + i), vbuf, VBUF));
		if (x < 0 || vcheck(vbuf, (size_t)x, base + i, &id) || id != ids[i])
			die(X_RESULT, "anonymous dict: get of key %u: %zd (not id %" PRIu64 ")",
			    base + i, x, ids[i]);
		x = CALL(shmq_list_get(l, (int64_t)i, vbuf, VBUF));
		if (x < 0 || vcheck(vbuf, (size_t)x, KEY_LIST, &id) || id != ids[i])
			die(X_RESULT, "anonymous list: get of %u: %zd (not id %" PRIu64 ")", i, x,
			    ids[i]);
	}
	uint64_t cur = 0, seen = 0;
	uint8_t once[40] = { 0 };
	size_t kn, vn;
	while (walk_step(d, &cur, &kn, &vn, rng) == 1) {
		int64_t k = lookup(vbuf2, kn);
		uint64_t id = 0;
		if (k < base || k >= base + n || once[k - base]++ ||
		    (vn != SIZE_MAX && (vcheck(vbuf, vn, (uint32_t)k, &id) || id != ids[k - base])))
			die(X_WALK, "anonymous dict walk: key %" PRId64 " (keys %u..%u) seen again or "
			    "wrong", k, base, base + n - 1);
		if (++seen > n)
			die(X_WALK, "anonymous dict walk: more than its %u keys", n);
	}
	if (seen != n)
		die(X_WALK, "anonymous dict walk: %" PRIu64 " of its %u keys", seen, n);
	/* Half deleted, the list popped from the front: FIFO. */
	for (uint32_t i = 0; i < n / 2; i++) {
		expect_rc(CALL(shmq_dict_del(d, KB(base + 2 * i))), "anon d.del", 1, 0);
		uint64_t id;
		ssize_t x = CALL(shmq_list_pop(l, 0, vbuf, VBUF));
		if (x < 0 || vcheck(vbuf, (size_t)x, KEY_LIST, &id) || id != ids[i])
			die(X_RESULT, "anonymous list: pop(0) #%u: %zd (not id %" PRIu64 ")", i, x,
			    ids[i]);
	}
	len = CALL(shmq_dict_len(d));
	llen = CALL(shmq_list_len(l));
	if (len != (ssize_t)(n - n / 2) || llen != (ssize_t)(n - n / 2))
		die(X_RESULT, "anonymous dict/list after %u deletions of %u: len %zd / %zd", n / 2, n,
		    len, llen);
	if (rng_next(rng) & 1)
		expect_rc(CALL(shmq_dict_clear(d)), "anon d.clear", 1, 0);
	expect_rc(CALL(shmq_dict_close(d)), "anonymous dict close", 1, 0);
	expect_rc(CALL(shmq_list_close(l)), "anonymous list close", 1, 0);
}

static void reopen(uint64_t *rng)
{
	atomic_store(&me->phase, PH_OPEN);
	shmq_dict *d;
	shmq_list *l;
	int r = CALL(shmq_dict_open(heap, "d", &d));
	expect_rc(r, "open of d", 1, 0);
	if (r == 0) {
		const char *nm = shmq_dict_name(d);
		if (!nm || strcmp(nm, "d") != 0)
			die(X_RESULT, "shmq_dict_name of d: %s", nm ? nm : "NULL");
		uint32_t k = shared_key(rng);
		ssize_t n = CALL(shmq_dict_get(d, KB(k), vbuf, VBUF));
		if (n >= 0)
			check_value(k, vbuf, n, "get through a second handle", NULL);
		else if (n != -ENOENT)
			die(X_RESULT, "get through a second handle: %zd", n);
		expect_rc(CALL(shmq_dict_close(d)), "close of a second handle on d", 1, 0);
	}
	r = CALL(shmq_list_open(heap, "l", &l));
	expect_rc(r, "open of l", 1, 0);
	if (r == 0) {
		ssize_t n = CALL(shmq_list_len(l));
		if (n < 0 || n > LIST_MAX)
			die(X_RESULT, "l.len through a second handle: %zd", n);
		expect_rc(CALL(shmq_list_close(l)), "close of a second handle on l", 1, 0);
	}
	r = CALL(shmq_list_open(heap, "d", &l)); /* a dict is no list */
	if (r == 0)
		die(X_RESULT, "d opened as a list");
	expect_rc(r, "open of d as a list", 1, -EINVAL);
}

/* The test hooks (a dict writer's intent recorded, its change published; a
 * list change recorded), also inside a replay of a dead writer's intent:
 * once in a while, the worker kills itself there. */
static uint64_t hook_rng;
static void hook(enum shmq_hook_point where)
{
	unsigned h = (unsigned)((int)where - (int)HOOK0);
	if (h >= N_HOOKS)
		return;
	atomic_fetch_add_explicit(&me->hooks[h], 1, memory_order_relaxed);
	if (rng_next(&hook_rng) % hook_odds[h] || atomic_load(&sh->stop))
		return;
	atomic_store(&me->self_kill, h + 1);
	raise(SIGKILL);
}

static int worker(uint64_t rng)
{
	vbuf = malloc(VBUF);
	vbuf2 = malloc(VBUF);
	if (!vbuf || !vbuf2)
		return X_OPEN;
	hook_rng = rng_next(&rng);
	shmq_test_hook = hook;
	own_init();
	unsigned total = 0, cum[O_N];
	for (unsigned i = 0; i < O_N; i++)
		cum[i] = total += weight[i];
	while (!atomic_load(&sh->stop)) {
		unsigned w = (unsigned)(rng_next(&rng) % total), op = 0;
		while (w >= cum[op])
			op++;
		atomic_fetch_add(&me->ops[op], 1);
		switch (op) {
		case O_DSET:
		case O_DINS:
		case O_DDEL:
		case O_DCAS: d_write((enum op)op, shared_key(&rng), &rng); break;
		case O_DGET: d_get(shared_key(&rng), false); break;
		case O_DGETS: d_get_small(rng_next(&rng) % 4 ? shared_key(&rng)
							   : KEY_ADD0 + (uint32_t)(rng_next(&rng) % N_ADDK),
					  &rng);
			break;
		case O_DPOP: d_get(shared_key(&rng), true); break;
		case O_DADD: d_add(&rng); break;
		case O_DLEN: d_len(); break;
		case O_DWALK: d_walk(&rng); break;
		case O_DCLEAR: d_clear(); break;
		case O_DBULK: d_bulk(&rng); break;
		case O_CADD: c_add(&rng); break;
		case O_CGET: c_get(&rng); break;
		case O_CCHURN: c_churn(&rng); break;
		case O_CWALK: c_walk(&rng); break;
		case O_CLEN: c_len(); break;
		case O_ANON: anon(&rng); break;
		case O_REOPEN: reopen(&rng); break;
		default:
			if (op >= O_OSET && op <= O_OADD)
				own_op((enum op)op, &rng);
			else
				list_op((enum op)op, &rng);
			break;
		}
		atomic_store(&me->phase, PH_IDLE);
	}
	shmq_test_hook = NULL;
	int r;
	if ((r = shmq_dict_close(dd)) || (r = shmq_dict_close(dc)) || (r = shmq_list_close(ll)))
		die(X_CLOSE, "close at the end: %d", r);
	if ((r = shmq_heap_close(heap)) != 0)
		die(X_CLOSE, "heap close at the end: %d", r);
	return 0;
}

/* ------------------------------------------------------------- supervisor -- */

struct slot_state {
	pid_t pid;
	uint32_t inc;
};

static struct slot_state slots[MAX_KIDS];
static uint32_t next_inc = 1;
static uint64_t seed;

struct stats {
	uint64_t kills, kills_random, kills_targeted, targeted_missed, kills_group, kills_burst;
	uint64_t in_add[N_CNT]; /* kills of a worker with an add pending */
	uint64_t in_clear;      /* kills of a worker inside a clear */
	uint64_t kills_hook[N_HOOKS]; /* workers that killed themselves at a hook */
	uint64_t hook_in_add, hook_in_clear; /* of those: with an add pending, in a clear */
	uint64_t bad_exits, hangs;
	char bad_desc[512];
};
static struct stats st;

static void spawn(uint32_t i)
{
	struct kid *k = &sh->kids[i];
	slots[i].inc = next_inc++;
	atomic_store(&k->inc, slots[i].inc);
	atomic_store(&k->phase, PH_IDLE);
	atomic_store(&k->call_start, 0);
	atomic_store(&k->add_pending, 0);
	atomic_store(&k->self_kill, 0);
	atomic_store(&k->doomed, 0);
	uint64_t rng = seed ^ t_mix(slots[i].inc + 1);
	pid_t parent = getpid();
	slots[i].pid = fork();
	if (slots[i].pid < 0) {
		perror("dict_torture: fork");
		exit(2);
	}
	if (slots[i].pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		me = k;
		my_slot = i;
		my_inc = slots[i].inc;
		_exit(worker(rng));
	}
}

static const char *exit_meaning(int status)
{
	if (!WIFEXITED(status))
		return "";
	switch (WEXITSTATUS(status)) {
	case X_OPEN: return " (setup failed)";
	case X_CLOSE: return " (close at the end failed)";
	case X_TORN: return " (torn or foreign value)";
	case X_RESULT: return " (a result the contract rules out)";
	case X_ORDER: return " (lost, stale or duplicated value)";
	case X_WALK: return " (walk broke its contract)";
	default: return "";
	}
}

static void bad_exit(uint32_t i, int status, const char *why)
{
	char sb[32];
	if (!st.bad_exits++)
		snprintf(st.bad_desc, sizeof(st.bad_desc), "worker %u (inc %u) %s: %s%s", i,
			 slots[i].inc, why, t_status_str(status, sb, sizeof(sb)),
			 exit_meaning(status));
}

/* After a kill (ours or its own at a hook): an add it had pending may have
 * happened unacknowledged; a clear it had started is over (done entirely or
 * not at all). */
static void reclaim(uint32_t i, bool hook)
{
	struct kid *k = &sh->kids[i];
	uint32_t c = atomic_load(&k->add_pending);
	if (c) {
		st.in_add[(c - 1) % N_CNT]++;
		st.hook_in_add += hook;
		atomic_store(&k->add_pending, 0);
	}
	uint64_t s = atomic_load(&k->clears_started);
	if (atomic_load(&k->clears_finished) != s) {
		st.in_clear++;
		st.hook_in_clear += hook;
		atomic_store(&k->clears_finished, s);
	}
}

/* A worker found dead of the SIGKILL it raised at a test hook: a kill like
 * ours (counted per hook, its slot reclaimed); true. */
static bool self_killed(uint32_t i, int status)
{
	uint32_t h = atomic_load(&sh->kids[i].self_kill);
	if (!h || !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		return false;
	st.kills_hook[(h - 1) % N_HOOKS]++;
	slots[i].pid = -1;
	reclaim(i, true);
	st.kills++;
	return true;
}

static bool in_target(struct kid *k)
{
	uint32_t p = atomic_load(&k->phase);
	return atomic_load(&k->call_start) != 0 && p != PH_IDLE && p != PH_DREAD && p != PH_LREAD;
}

static void kill_one(uint32_t i, bool targeted)
{
	struct kid *k = &sh->kids[i];
	if (slots[i].pid <= 0)
		return;
	bool hit = false;
	if (targeted) {
		/* Wait (briefly) for the victim to be inside a write, an add,
		 * a clear, a walk or a create/close. */
		int64_t deadline = t_now() + TARGET_WAIT;
		while (!in_target(k) && t_now() < deadline)
			t_nap(20 * 1000);
		hit = in_target(k);
	}
	atomic_store(&k->doomed, 1);
	kill(slots[i].pid, SIGKILL);
	int status;
	while (waitpid(slots[i].pid, &status, 0) < 0 && errno == EINTR)
		;
	if (self_killed(i, status))
		return; /* it had killed itself at a hook meanwhile */
	if (targeted) {
		st.kills_targeted++;
		st.targeted_missed += !hit;
	} else {
		st.kills_random++;
	}
	if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		bad_exit(i, status, "killed, but it had exited");
	slots[i].pid = -1;
	reclaim(i, false);
	st.kills++;
}

/* Workers that killed themselves at a hook are replaced at once (during
 * the run); those that exit otherwise failed; calls in flight past
 * HANG_SLACK are hangs. */
static void watch(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (uint32_t i = 0; i < nslots; i++) {
			if (slots[i].pid != pid)
				continue;
			if (!self_killed(i, status)) {
				bad_exit(i, status, "exited during the run");
				slots[i].pid = -1;
			} else if (!atomic_load(&sh->stop)) {
				spawn(i);
			}
		}
	int64_t now = t_now();
	for (uint32_t i = 0; i < nslots; i++) {
		struct kid *k = &sh->kids[i];
		int64_t start = atomic_load(&k->call_start);
		if (slots[i].pid > 0 && start && now - start > HANG_SLACK && !st.hangs++)
			fprintf(stderr, "dict_torture: worker %u in a call (%s) for %lld ms\n", i,
				phase_name[atomic_load(&k->phase) % PH_N],
				(long long)((now - start) / T_MS));
	}
}

static void setup(void)
{
	struct shmq_heap_attr a;
	shmq_heap_attr_init(&a);
	a.max_size = HEAP_MAX;
	int r;
	if ((r = shmq_heap_create(NULL, &a, &heap)) || (r = shmq_dict_create(heap, "d", &dd)) ||
	    (r = shmq_dict_create(heap, "c", &dc)) || (r = shmq_list_create(heap, "l", &ll))) {
		fprintf(stderr, "dict_torture: setup: %d\n", r);
		exit(2);
	}
	unsigned char *buf = malloc(VBUF);
	if (!buf)
		exit(2);
	for (uint32_t c = 0; c < N_CNT && !r; c++)
		r = shmq_dict_add(dc, KB(cnt_key(c)), 0, NULL);
	for (uint32_t k = 0; k < N_SHARED && !r; k += 2)
		r = shmq_dict_set(dd, KB(k), buf, vmake(buf, k, new_id()));
	for (uint32_t i = 0; i < 200 && !r; i++)
		r = shmq_list_append(ll, buf, vmake(buf, KEY_LIST, new_id()));
	free(buf);
	if (r) {
		fprintf(stderr, "dict_torture: setup: fill: %d\n", r);
		exit(2);
	}
}

/* ------------------------------------------------------- the final checks -- */

static char why[768];
static void failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failed(const char *fmt, ...)
{
	if (why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
}

static unsigned char *fbuf, *fbuf2;

/* A quiet walk of dict d: every key once, valid, as many as len, the same
 * as get; get finds nothing the walk missed. ids[k] gets what key k holds:
 * 0 absent, else its value's id (ids start at 1), or for a counter its
 * value + 1. Returns the number of keys. */
static uint64_t final_walk(shmq_dict *d, const char *name, uint32_t lo, uint32_t hi, uint64_t *ids)
{
	uint8_t *seen = calloc(N_KEYS, 1);
	uint64_t cur = 0, items = 0;
	if (!seen)
		exit(2);
	for (;;) {
		struct iovec k = { fbuf2, KEY_MAX }, v = { fbuf, VBUF };
		int r = shmq_dict_next(d, &cur, &k, &v);
		if (r == 0)
			break;
		if (r != 1) {
			failed("final walk of %s: next gave %d", name, r);
			break;
		}
		if (++items > WALK_MAX) {
			failed("final walk of %s: more than %u items", name, WALK_MAX);
			break;
		}
		int64_t key = lookup(fbuf2, k.iov_len);
		if (key < lo || key >= hi) {
			failed("final walk of %s: a key of %zu bytes it never had", name, k.iov_len);
			continue;
		}
		if (seen[key]++) {
			failed("final walk of %s: key %" PRId64 " seen twice", name, key);
			continue;
		}
		uint64_t id = 0;
		enum kkind kk = kind_of((uint32_t)key);
		if (kk == K_ADD || kk == K_COUNTER) {
			int64_t x = -1;
			if (v.iov_len == 8)
				memcpy(&x, fbuf, 8);
			if (x < (kk == K_ADD ? 1 : 0))
				failed("final walk of %s: counter key %" PRId64 ": %zu bytes, %" PRId64,
				       name, key, v.iov_len, x);
			id = (uint64_t)x + 1;
		} else if (added_one((uint32_t)key, fbuf, v.iov_len)) {
			id = ADDED_ONE;
		} else {
			const char *bad = vcheck(fbuf, v.iov_len, (uint32_t)key, &id);
			if (bad)
				failed("final walk of %s: key %" PRId64 ": %s", name, key, bad);
			else if (was_popped(id))
				failed("final walk of %s: key %" PRId64 " holds id %" PRIu64
				       ", which a pop returned", name, key, id);
		}
		ids[key] = id;
	}
	ssize_t len = shmq_dict_len(d);
	if (len != (ssize_t)items)
		failed("%s: len %zd, but a quiet walk returned %" PRIu64 " keys", name, len, items);
	for (uint32_t k = lo; k < hi; k++) {
		ssize_t n = shmq_dict_get(d, KB(k), fbuf, VBUF);
		if (n == -ENOENT && !seen[k])
			continue;
		if (n < 0) {
			failed("%s: get of key %u: %zd, but the walk returned it", name, k, n);
			continue;
		}
		if (!seen[k]) {
			failed("%s: get finds key %u, which a quiet walk missed", name, k);
			continue;
		}
		uint64_t id = 0;
		if (added_one(k, fbuf, (size_t)n)) {
			id = ADDED_ONE;
		} else if (n == 8) {
			memcpy(&id, fbuf, 8);
			id++;
		} else if (vcheck(fbuf, (size_t)n, k, &id)) {
			id = 0;
		}
		if (id != ids[k])
			failed("%s: get of key %u disagrees with the walk", name, k);
	}
	free(seen);
	return items;
}

/* Each slot's own keys as its last incarnation knew them (all exited
 * cleanly). */
static void final_owned(const uint64_t *ids)
{
	uint64_t s_now = clears(true);
	for (uint32_t i = 0; i < nslots; i++)
		for (uint32_t j = 0; j < N_OWNED; j++) {
			struct owned *o = &sh->kids[i].own[j];
			uint32_t k = KEY_OWNED0 + i * N_OWNED + j;
			uint64_t got = ids[k];
			if (o->state == OS_ABSENT && got)
				failed("own key %u of slot %u holds id %" PRIu64 ", deleted last", k, i,
				       got);
			if (o->state == OS_PRESENT && got && got != o->id)
				failed("own key %u of slot %u holds id %" PRIu64 ", set last to %" PRIu64,
				       k, i, got, o->id);
			if (o->state == OS_PRESENT && !got && o->strict && s_now == o->s0)
				failed("own key %u of slot %u is absent, set last to %" PRIu64
				       " and never cleared", k, i, o->id);
		}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The list: every value by index valid, unique, never popped. Returns its
 * length. */
static ssize_t final_list(void)
{
	ssize_t len = shmq_list_len(ll);
	if (len < 0 || len > LIST_MAX) {
		failed("l: len %zd", len);
		return len;
	}
	uint64_t *idv = calloc((size_t)len + 1, sizeof(*idv));
	if (!idv)
		exit(2);
	ssize_t got = 0;
	for (ssize_t i = 0; i < len; i++) {
		ssize_t n = shmq_list_get(ll, i, fbuf, VBUF);
		if (n < 0) {
			failed("l: get(%zd) of %zd values: %zd", i, len, n);
			break;
		}
		uint64_t id;
		const char *bad = vcheck(fbuf, (size_t)n, KEY_LIST, &id);
		if (bad)
			failed("l: value %zd: %s", i, bad);
		else if (was_popped(id))
			failed("l: value %zd is id %" PRIu64 ", which a pop returned", i, id);
		idv[got++] = id;
	}
	qsort(idv, (size_t)got, sizeof(*idv), cmp_u64);
	for (ssize_t i = 1; i < got; i++)
		if (idv[i] == idv[i - 1])
			failed("l: id %" PRIu64 " twice", idv[i]);
	free(idv);
	ssize_t r1 = shmq_list_get(ll, len, fbuf, VBUF), r2 = shmq_list_get(ll, -len - 1, fbuf, VBUF);
	if (r1 != -ERANGE || r2 != -ERANGE)
		failed("l: get(%zd) and get(%zd) of %zd values: %zd, %zd", len, -len - 1, len, r1, r2);
	return len;
}

/* The structures still work: d and l cleared, refilled, verified and
 * emptied one by one, rounds times; c's counters still add. Returns 'used'
 * after each round in used[]. */
static void usable(int rounds, uint64_t *used)
{
	uint64_t *ids = calloc(N_KEYS, sizeof(*ids));
	uint64_t *lids = calloc(2000, sizeof(*lids));
	if (!ids || !lids)
		exit(2);
	for (int round = 0; round < rounds && !why[0]; round++) {
		int r;
		if ((r = shmq_dict_clear(dd)) || (r = shmq_list_clear(ll))) {
			failed("usable: clear: %d", r);
			break;
		}
		if (shmq_dict_len(dd) != 0 || shmq_list_len(ll) != 0) {
			failed("usable: after clear: len %zd, list len %zd", shmq_dict_len(dd),
			       shmq_list_len(ll));
			break;
		}
		uint64_t cur = 0;
		if ((r = shmq_dict_next(dd, &cur, NULL, NULL)) != 0) {
			failed("usable: a walk of a cleared dict: %d", r);
			break;
		}
		for (uint32_t k = 0; k < N_MAIN && !why[0]; k++) {
			if (kind_of(k) == K_ADD) { /* counters: k + 1 */
				int64_t res = 0;
				if ((r = shmq_dict_add(dd, KB(k), k + 1, &res)) != 0 || res != k + 1)
					failed("usable: add of %u to key %u of a cleared dict: %d, %" PRId64,
					       k + 1, k, r, res);
				ids[k] = k + 2;
				continue;
			}
			ids[k] = atomic_fetch_add(&sh->next_id, 1);
			size_t n = vmake(fbuf, k, ids[k]);
			if ((r = shmq_dict_insert(dd, KB(k), fbuf, n)) != 0)
				failed("usable: insert of key %u into a cleared dict: %d", k, r);
		}
		for (uint32_t i = 0; i < 2000 && !why[0]; i++) {
			lids[i] = atomic_fetch_add(&sh->next_id, 1);
			size_t n = vmake(fbuf, KEY_LIST, lids[i]);
			if ((r = i % 2 ? shmq_list_append(ll, fbuf, n)
				       : shmq_list_insert(ll, (int64_t)i, fbuf, n)) != 0)
				failed("usable: list append %u: %d", i, r);
		}
		if (why[0])
			break;
		uint64_t *wids = calloc(N_KEYS, sizeof(*wids));
		if (!wids)
			exit(2);
		uint64_t n = final_walk(dd, "d (refilled)", 0, N_MAIN, wids);
		if (n != N_MAIN)
			failed("usable: %" PRIu64 " keys after %u inserts", n, N_MAIN);
		for (uint32_t k = 0; k < N_MAIN; k++)
			if (wids[k] != ids[k])
				failed("usable: key %u holds id %" PRIu64 ", not %" PRIu64, k, wids[k],
				       ids[k]);
		free(wids);
		if (shmq_list_len(ll) != 2000)
			failed("usable: list len %zd after 2000 appends", shmq_list_len(ll));
		for (uint32_t i = 0; i < 2000 && !why[0]; i++) {
			uint64_t id = 0;
			ssize_t x = i < 1000 ? shmq_list_pop(ll, 0, fbuf, VBUF)
					     : shmq_list_pop(ll, -1, fbuf, VBUF);
			uint64_t want = i < 1000 ? lids[i] : lids[2999 - i];
			if (x < 0 || vcheck(fbuf, (size_t)x, KEY_LIST, &id) || id != want)
				failed("usable: list pop #%u: %zd, id %" PRIu64 " (want %" PRIu64 ")", i, x,
				       id, want);
		}
		if ((r = (int)shmq_list_pop(ll, -1, fbuf, VBUF)) != -ERANGE)
			failed("usable: pop of an empty list: %d", r);
		for (uint32_t k = 0; k < N_MAIN && !why[0]; k++)
			if ((r = k % 2 ? shmq_dict_del(dd, KB(k))
				       : (int)shmq_dict_pop(dd, KB(k), fbuf, VBUF)) < 0)
				failed("usable: del/pop of key %u: %d", k, r);
		if (shmq_dict_len(dd) != 0 || shmq_list_len(ll) != 0)
			failed("usable: emptied one by one: len %zd, list len %zd", shmq_dict_len(dd),
			       shmq_list_len(ll));
		int64_t before = 0, after = 0;
		if ((r = shmq_dict_add(dc, KB(cnt_key(0)), 0, &before)) ||
		    (r = shmq_dict_add(dc, KB(cnt_key(0)), 5, &after)) || after != before + 5 ||
		    (r = shmq_dict_add(dc, KB(cnt_key(0)), -5, &after)) || after != before)
			failed("usable: c.add: %d (%" PRId64 " then %" PRId64 ")", r, before, after);
		struct shmq_heap_stat hs;
		if ((r = shmq_heap_stat(heap, &hs)) != 0)
			failed("usable: shmq_heap_stat: %d", r);
		used[round] = hs.used;
	}
	free(ids);
	free(lids);
}

static void usage(void)
{
	fprintf(stderr, "usage: dict_torture [--kills N] [--workers N] [--seed S] "
			"[--interval-ms MS] [--max-used-mib M]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t kills = 300, max_used_mib = 0;
	uint32_t nworkers = 4;
	int64_t interval_ms = 110; /* between kill rounds: uniform in 0 .. 2 x this */
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
	if (!max_used_mib) /* a kill may leak the block it was allocating or freeing */
		max_used_mib = 32 + kills / 500;
	nslots = nworkers;
	sh = t_shared(sizeof(*sh));
	fbuf = malloc(VBUF);
	fbuf2 = malloc(VBUF);
	if (!sh || !fbuf || !fbuf2) {
		perror("dict_torture: memory");
		return 2;
	}
	atomic_store(&sh->next_id, 1);
	for (uint32_t i = 0; i < MAX_KIDS; i++) /* own keys: none exists yet */
		for (uint32_t j = 0; j < N_OWNED; j++)
			sh->kids[i].own[j].state = OS_ABSENT;
	setvbuf(stdout, NULL, _IOLBF, 0);
	make_keys();
	setup();

	for (uint32_t i = 0; i < nslots; i++)
		spawn(i);
	uint64_t rng = seed;
	int64_t start = t_now();
	while (st.kills < kills) {
		/* The nap, watching every 5 ms (a worker that killed itself
		 * at a hook is replaced at once). */
		int64_t wake = t_now() +
			       (int64_t)(rng_next(&rng) % (uint64_t)(2 * interval_ms * 1000 + 1)) * 1000;
		for (int64_t left; (left = wake - t_now()) > 0 && !st.bad_exits && !st.hangs;) {
			t_nap(left < 5 * T_MS ? left : 5 * T_MS);
			watch();
		}
		watch();
		if (st.bad_exits || st.hangs || st.kills >= kills)
			break; /* failed (stop early and report), or done */
		uint64_t mode = rng_next(&rng) % 16;
		if (mode == 0) { /* every worker at once */
			for (uint32_t i = 0; i < nslots && st.kills < kills; i++)
				kill_one(i, false);
			st.kills_group++;
		} else if (mode <= 2) { /* a burst: 3 to 8 kills 0-2 ms apart */
			unsigned n = 3 + (unsigned)(rng_next(&rng) % 6);
			uint32_t victim = (uint32_t)(rng_next(&rng) % nslots);
			for (unsigned b = 0; b < n && st.kills < kills; b++) {
				if (rng_next(&rng) % 2) /* often the replacement just started */
					victim = (uint32_t)(rng_next(&rng) % nslots);
				kill_one(victim, false);
				spawn(victim);
				t_nap((int64_t)(rng_next(&rng) % 2000) * 1000);
			}
			st.kills_burst++;
		} else {
			kill_one((uint32_t)(rng_next(&rng) % nslots), rng_next(&rng) & 1);
		}
		for (uint32_t i = 0; i < nslots; i++)
			if (slots[i].pid <= 0)
				spawn(i);
	}
	int64_t run_ns = t_now() - start;

	/* End: every worker finishes its call, closes everything and exits 0.
	 * A slot whose worker was killed (by a hook, as the stop came) gets a
	 * replacement that reads the slot's own keys and exits: the final
	 * checks compare them with what it knew. */
	atomic_store(&sh->stop, 1);
	watch();
	int64_t deadline = t_now() + 10 * T_SEC * T_SCALE;
	for (uint32_t i = 0; i < nslots; i++) {
		if (slots[i].pid <= 0 && !st.bad_exits && !st.hangs)
			spawn(i);
		while (slots[i].pid > 0) {
			int status = 0;
			int64_t left = deadline - t_now();
			if (t_wait(slots[i].pid, &status, left > 0 ? left : 0) < 0) {
				st.hangs++;
				fprintf(stderr, "dict_torture: worker %u (%s) did not finish\n", i,
					phase_name[atomic_load(&sh->kids[i].phase) % PH_N]);
				t_kill_reap(slots[i].pid);
			} else if (self_killed(i, status)) {
				spawn(i);
				continue;
			} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
				bad_exit(i, status, "at the end");
			}
			slots[i].pid = -1;
		}
	}
	watch();

	if (st.bad_exits)
		failed("%s%s%s", st.bad_desc, sh->error_claimed ? ": " : "",
		       sh->error_claimed ? sh->error_desc : "");
	else if (st.hangs)
		failed("a call did not return within 3 s");

	/* The checks, all workers gone. */
	uint64_t *ids = calloc(N_KEYS, sizeof(*ids));
	if (!ids)
		return 2;
	uint64_t dkeys = 0, ckeys = 0, acked[N_CNT] = { 0 }, cval[N_CNT] = { 0 };
	ssize_t llen = -1;
	struct shmq_heap_stat hs = { 0 };
	int check = 0, stat = 0;
	if (!why[0]) {
		dkeys = final_walk(dd, "d", 0, N_MAIN, ids);
		final_owned(ids);
		ckeys = final_walk(dc, "c", KEY_CNT0, N_KEYS, ids);
		for (uint32_t c = 0; c < N_CNT; c++) {
			for (uint32_t i = 0; i < MAX_KIDS; i++)
				acked[c] += atomic_load(&sh->kids[i].acked[c]);
			if (!ids[cnt_key(c)]) {
				failed("c: counter %u missing", c);
				continue;
			}
			cval[c] = ids[cnt_key(c)] - 1;
			if (cval[c] < acked[c] || cval[c] > acked[c] + st.in_add[c])
				failed("c: counter %u is %" PRIu64 ": %" PRIu64 " adds acknowledged, "
				       "%" PRIu64 " kills with one pending (%" PRIu64 " kills)",
				       c, cval[c], acked[c], st.in_add[c], st.kills);
		}
		llen = final_list();
		check = heap_check(heap);
		stat = shmq_heap_stat(heap, &hs);
		if (check != 0)
			failed("heap_check: %d", check);
		else if (stat != 0)
			failed("shmq_heap_stat: %d", stat);
		else if (hs.objects != 3 || hs.handles != 1)
			failed("%u objects (want 3: d, c, l) and %u handles (want 1) after the run",
			       hs.objects, hs.handles);
		else if (sh->enospc)
			failed("%" PRIu64 " calls gave -ENOSPC (the heap filled up)",
			       (uint64_t)sh->enospc);
		else if (hs.used > max_used_mib << 20)
			failed("used %.1f MiB, over %" PRIu64 " MiB", (double)hs.used / (1 << 20),
			       max_used_mib);
	}
	uint64_t used[3] = { 0, 0, 0 };
	if (!why[0]) {
		usable(3, used);
		if (!why[0] && used[2] > used[0] + (1u << 20))
			failed("memory not reused: 'used' %.1f MiB after the first refill round, %.1f "
			       "after the third", (double)used[0] / (1 << 20),
			       (double)used[2] / (1 << 20));
		if (!why[0] && used[2] > max_used_mib << 20)
			failed("used %.1f MiB after the refills, over %" PRIu64 " MiB",
			       (double)used[2] / (1 << 20), max_used_mib);
	}
	uint64_t ops[O_N] = { 0 }, nops = 0;
	for (uint32_t i = 0; i < MAX_KIDS; i++)
		for (unsigned o = 0; o < O_N; o++) {
			ops[o] += atomic_load(&sh->kids[i].ops[o]);
			nops += atomic_load(&sh->kids[i].ops[o]);
		}
	if (!why[0])
		for (unsigned o = 0; o < O_N; o++)
			if (!ops[o] && weight[o] > 2)
				failed("%s never ran", op_name[o]);

	printf("dict_torture: %s%s: %" PRIu64 " kills (%" PRIu64 " random, %" PRIu64
	       " targeted, %" PRIu64 " missed their moment, %" PRIu64 " groups, %" PRIu64
	       " bursts; %" PRIu64 " inside a clear) of %u workers in %.1f s; %" PRIu64
	       " operations, %" PRIu64 " walks of d and %" PRIu64 " of c, %" PRIu64
	       " clears of d and %" PRIu64 " of l, %" PRIu64 " anonymous pairs; at the end d %" PRIu64
	       " keys, c %" PRIu64 " keys, l %zd values",
	       why[0] ? "FAIL: " : "PASS", why, st.kills, st.kills_random, st.kills_targeted,
	       st.targeted_missed, st.kills_group, st.kills_burst, st.in_clear, nworkers,
	       (double)run_ns / T_SEC, nops, ops[O_DWALK], ops[O_CWALK], ops[O_DCLEAR],
	       ops[O_LCLEAR], ops[O_ANON], dkeys, ckeys, llen);
	uint64_t hooks[N_HOOKS] = { 0 };
	for (uint32_t i = 0; i < MAX_KIDS; i++)
		for (unsigned h = 0; h < N_HOOKS; h++)
			hooks[h] += atomic_load(&sh->kids[i].hooks[h]);
	printf("; self-kills at hooks:");
	for (unsigned h = 0; h < N_HOOKS; h++)
		printf(" %" PRIu64 " at %s (of %" PRIu64 " firings)%s", st.kills_hook[h], hook_name[h],
		       hooks[h], h + 1 < N_HOOKS ? "," : "");
	printf(" (%" PRIu64 " with an add of c pending, %" PRIu64 " inside a clear); late writes %"
	       PRIu64, st.hook_in_add, st.hook_in_clear, (uint64_t)sh->late);
	printf("; counters");
	for (uint32_t c = 0; c < N_CNT; c++)
		printf(" %" PRIu64 " (acked %" PRIu64 " +%" PRIu64 ")", cval[c], acked[c],
		       cval[c] - acked[c]);
	printf("; used %.1f MiB free %.1f MiB size %.1f MiB, after 3 refills used %.1f/%.1f/%.1f "
	       "MiB; seed %#" PRIx64 "\n",
	       (double)hs.used / (1 << 20), (double)hs.free / (1 << 20), (double)hs.size / (1 << 20),
	       (double)used[0] / (1 << 20), (double)used[1] / (1 << 20),
	       (double)used[2] / (1 << 20), seed);

	free(ids);
	shmq_dict_close(dd);
	shmq_dict_close(dc);
	shmq_list_close(ll);
	shmq_heap_close(heap);
	return why[0] ? 1 : 0;
}
