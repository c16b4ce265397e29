/* Kill -9 torture of CSP channels: worker processes share one anonymous heap
 * (256 MiB) holding K channels (4 by default; buffers 0, 1, 0, 4, 0, 16, ...:
 * rendezvous and buffered) and loop, at high rate, over random calls on them,
 * while this supervisor SIGKILLs them at random moments and forks
 * replacements (which inherit the supervisor's handles):
 *
 *   - write and read (one call), alternations of 1 to 6 guards, reads and
 *     writes mixed at random over random channels (a channel may appear in
 *     several guards), PRI or FAIR;
 *   - with a long timeout (5 s: it must never expire), 0 (SkipGuard: -EAGAIN
 *     allowed) or a short one (0.1 to 20 ms: -ETIMEDOUT allowed);
 *   - one read guard in 32 with a buffer too small for most messages
 *     (-EMSGSIZE, nothing moves);
 *   - through the handles the worker inherited, or ends of its own opened by
 *     name (an incarnation chooses); now and then an end is given up and
 *     another taken: an own end retired and closed and a new one opened, or
 *     a second handle on an inherited end taken (shmq_chan_end_open) and
 *     later dropped.
 *
 * Pumps (2 by default) alternate over a read and a write guard on every
 * channel (FAIR, 100 ms timeout), so that a worker's long-timeout call always
 * finds a partner within milliseconds: such a call that times out means a
 * process was held up (by the dead). Pumps are killed too (one kill in 8).
 *
 * Every message carries a unique id, its length (a function of the id: 16 B
 * to 64 KiB, mostly short) and a checksum. Before each call a worker records
 * in shared memory the ids its write guards offer and whether a read guard
 * may take a message; after it, what the call did: an id acknowledged (a
 * write returned 0, a write guard fired) or received (marked in a bitmap; a
 * second time is a duplicate). Kills come one at a time (half at a random
 * moment, half after waiting up to 20 ms for the victim to be inside a
 * call), in bursts (3 to 8 kills 0-2 ms apart, often of the replacement
 * just forked) and, one round in 16, every worker at once; a killed worker's
 * ids in flight may have moved, and a kill with a read guard in flight may
 * lose the one message it was taking. Workers also kill themselves
 * (raise(SIGKILL)) at the test hook SHMQ_HOOK_CHAN_PROMOTE (a reader fired a
 * waiting writer whose message goes into the buffer, not yet moved: rolled
 * forward), with odds of 1 in 2000; the supervisor counts those as kills.
 *
 * Checked during the run: no call in flight past its timeout + 3 s (times 8
 * under sanitizers); messages keep moving (a stall of 3 s with live workers
 * fails); a worker exits only when told to. At the end, with workers and
 * pumps stopped (they close everything and exit 0) and what is buffered
 * drained: no duplicate, no torn or unknown message; every message received
 * was acknowledged by its writer or was in flight in a killed process's
 * call (a timed-out or skipped write, or a guard that did not fire, never
 * delivers); no offer of a writer killed while it waited on a rendezvous
 * channel is delivered to a read that began after the writer was reaped
 * (the offer is withdrawn); acknowledged messages never received number at
 * most the kills with a read in flight; no long call timed out; heap_check() is 0,
 * shmq_heap_stat works, and once the supervisor's channels are closed the
 * heap has its baseline objects, one handle and bytes in use within
 * --max-leak-kib per kill of its baseline. Before that, each channel must
 * still work: a child reads 200 messages the supervisor writes, in order.
 *
 * Usage: chan_torture [--kills N] [--workers N] [--pumps N] [--channels K]
 *                     [--seed S] [--interval-ms MS] [--max-leak-kib K]
 * The meson test runs the defaults (300 kills, 6 workers, 2 pumps, 4
 * channels, about 10 s); tests/torture/README.md has the long run. Prints one
 * summary line, PASS or FAIL: why; exit status 0 when every check holds. */
#include "../common.h"
#include "heap.h" /* src/: heap_check */
#include "shmq/chan.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>

#define MAX_KIDS 64u
#define MAX_CH 16u
#define MAX_G 6u                     /* guards of a worker's alternation */
#define MAX_FLY (2 * MAX_CH)         /* a pump offers one write per channel */
#define HEAP_MAX (256ull << 20)
#define LONG_TIMEOUT (5 * T_SEC * T_SCALE)
#define PUMP_TIMEOUT (100 * T_MS)
#define HANG_SLACK (3 * T_SEC * T_SCALE)
#define STALL (3 * T_SEC * T_SCALE)
#define TARGET_WAIT (20 * T_MS)
#define MSG_MAX 65536u
#define MAX_IDS (1ull << 30) /* ids the bitmaps hold (128 MiB each, touched as used) */
#define HOOK_ODDS 2000u

/* Exit statuses of a worker that found something wrong. */
enum { X_SETUP = 10, X_CLOSE = 11, X_RESULT = 21 };

enum op { O_WRITE, O_READ, O_ALT, O_SKIP, O_SHORT, O_REOPEN, O_PUMP, O_N };
static const char *const op_name[O_N] = { "write", "read", "alt", "skip", "short", "reopen",
					  "pump" };
/* Per 1000 worker operations (the pump only pumps). */
static const unsigned weight[O_PUMP] = { [O_WRITE] = 250, [O_READ] = 250, [O_ALT] = 330,
					 [O_SKIP] = 80, [O_SHORT] = 80, [O_REOPEN] = 10 };

/* One worker slot, written by its worker, read by the supervisor. */
struct kid {
	_Atomic uint32_t inc;
	_Atomic uint32_t self_kill;  /* killed itself at the hook */
	_Atomic int64_t call_start;  /* CLOCK_MONOTONIC ns, 0 between calls */
	_Atomic int64_t call_timeout;
	_Atomic uint32_t call_op;
	_Atomic uint32_t rd_pending; /* the call may take a message not yet recorded */
	_Atomic uint32_t nfly;       /* ids its call offers */
	_Atomic uint64_t fly[MAX_FLY];
	_Atomic uint32_t fly_ch[MAX_FLY];
	/* Across incarnations: */
	_Atomic uint64_t ops[O_N], moved, eagain, short_timeouts, emsgsize, hooks;
};

struct shared {
	_Atomic uint32_t stop_workers, stop_pumps;
	_Atomic uint64_t next_id, moved;
	_Atomic uint64_t long_timeouts, dups, torn, overflow;
	/* Offers of killed writers on rendezvous channels: a read that began
	 * after the writer was reaped (by more than DEAD_GRACE_NS) must not get
	 * one ("the offer of a writer killed while it waits is withdrawn").
	 * kill_seq counts reaps; dead[] holds (id, kill_seq and time of its
	 * writer's reap). */
	_Atomic uint64_t kill_seq, late_deliveries, first_late;
	_Atomic uint32_t ndead;
	_Atomic uint32_t error_claimed;
	char error_desc[320];
	struct kid kids[MAX_KIDS];
	char name[MAX_CH][SHMQ_NAME_MAX];
	char end[MAX_CH][SHMQ_NAME_MAX];
};

static struct shared *sh;
static _Atomic uint64_t *acked, *recvd, *maybe; /* bitmaps of ids, shared */
struct dead {
	_Atomic uint64_t id, seq;
	_Atomic int64_t at; /* CLOCK_MONOTONIC ns of the reap */
};
#define MAX_DEAD (1u << 22)
static struct dead *dead; /* shared, appended by the supervisor only */
static const uint32_t buffers[8] = { 0, 1, 0, 4, 0, 16, 0, 2 };
static uint32_t nslots, nworkers, npumps, nch;
static shmq_heap *heap;
static shmq_chan *chans[MAX_CH];

/* ---------------------------------------------------------------- messages -- */

struct mhdr {
	uint64_t id;
	uint32_t len;
	uint32_t sum;
};
#define MHDR ((uint32_t)sizeof(struct mhdr))

static uint32_t mlen_of(uint64_t id)
{
	uint64_t r = t_mix(id ^ 0x6368616eull);
	unsigned p = (unsigned)(r % 1024);
	r >>= 10;
	if (p < 900)
		return MHDR + (uint32_t)(r % 200);
	if (p < 1020)
		return MHDR + (uint32_t)(r % 8000);
	return MHDR + (uint32_t)(r % (MSG_MAX - MHDR + 1));
}

static uint32_t msum(const unsigned char *m, size_t n)
{
	uint64_t s = t_fnv1a(T_FNV_INIT, m, 12);
	s = t_fnv1a(s, m + MHDR, n - MHDR);
	return (uint32_t)(s ^ s >> 32);
}

static size_t mfill(unsigned char *m, uint64_t id)
{
	uint32_t n = mlen_of(id);
	uint64_t key = t_mix(id);
	for (uint32_t i = MHDR; i < n; i++)
		m[i] = tmsg_byte(key, i);
	struct mhdr h = { .id = id, .len = n };
	memcpy(m, &h, MHDR);
	h.sum = msum(m, n);
	memcpy(m, &h, MHDR);
	return n;
}

static void bit_set(_Atomic uint64_t *b, uint64_t id)
{
	atomic_fetch_or(&b[id / 64], 1ull << (id % 64));
}

static bool bit_get(_Atomic uint64_t *b, uint64_t id)
{
	return atomic_load(&b[id / 64]) >> (id % 64) & 1;
}

/* A message received: checked and marked (a second time: a duplicate). If
 * it came from a rendezvous channel (rv) through a call that began (at t0)
 * when kill_seq was s0, and its writer had been reaped by then, more than
 * DEAD_GRACE_NS before t0, the dead writer's offer was delivered (chan.h:
 * a process is looked at once per millisecond; within that its message may
 * still be taken). */
#define DEAD_GRACE_NS (2 * T_MS)
static void record_from(const unsigned char *m, size_t n, bool rv, uint64_t s0, int64_t t0);
static void record(const unsigned char *m, size_t n)
{
	record_from(m, n, false, 0, 0);
}

static void record_from(const unsigned char *m, size_t n, bool rv, uint64_t s0, int64_t t0)
{
	struct mhdr h;
	if (n < MHDR) {
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	memcpy(&h, m, MHDR);
	if (h.len != n || h.id >= MAX_IDS || h.id >= atomic_load(&sh->next_id) ||
	    mlen_of(h.id) != n || msum(m, n) != h.sum) {
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	uint64_t bit = 1ull << (h.id % 64);
	if (atomic_fetch_or(&recvd[h.id / 64], bit) & bit)
		atomic_fetch_add(&sh->dups, 1);
	if (!rv || !(atomic_load(&maybe[h.id / 64]) & bit))
		return;
	uint32_t nd = atomic_load(&sh->ndead);
	for (uint32_t i = nd; i-- > 0;)
		if (atomic_load(&dead[i].id) == h.id) {
			if (atomic_load(&dead[i].seq) <= s0 &&
			    t0 - atomic_load(&dead[i].at) > DEAD_GRACE_NS &&
			    !atomic_fetch_add(&sh->late_deliveries, 1))
				atomic_store(&sh->first_late, h.id);
			break;
		}
}

/* ------------------------------------------------------------------ workers -- */

static struct kid *me;
static uint32_t my_slot, my_inc;

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return t_mix(*s);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	uint32_t zero = 0;
	if (atomic_compare_exchange_strong(&sh->error_claimed, &zero, 1)) {
		int n = snprintf(sh->error_desc, sizeof(sh->error_desc), "%s %u (inc %u): ",
				 my_slot < nworkers ? "worker" : "pump", my_slot, my_inc);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(sh->error_desc + n, sizeof(sh->error_desc) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	_exit(code);
}

static uint64_t new_id(void)
{
	uint64_t id = atomic_fetch_add(&sh->next_id, 1);
	if (id >= MAX_IDS) {
		atomic_fetch_add(&sh->overflow, 1);
		return UINT64_MAX;
	}
	return id;
}

static unsigned char *wbuf[MAX_FLY], *rbuf[MAX_FLY];

/* The worker's ends: inherited (chans[]) or its own; extra handles on
 * inherited ends (end_open). */
static shmq_chan *use[MAX_CH], *own[MAX_CH], *extra[MAX_CH];
static bool use_own;

/* One call. */
static void one_call(enum op op, uint64_t *rng)
{
	struct shmq_guard g[MAX_FLY];
	uint64_t ids[MAX_FLY];
	uint32_t chi[MAX_FLY];
	unsigned n = 0, nfly = 0;
	bool rd = false, pump = op == O_PUMP;
	uint64_t r = rng_next(rng);
	int64_t timeout = LONG_TIMEOUT;
	if (pump) {
		timeout = PUMP_TIMEOUT;
		for (uint32_t i = 0; i < nch; i++) {
			chi[n] = i;
			g[n++] = (struct shmq_guard){ .chan = use[i], .op = SHMQ_GUARD_READ };
			chi[n] = i;
			g[n++] = (struct shmq_guard){ .chan = use[i], .op = SHMQ_GUARD_WRITE };
		}
	} else {
		if (op == O_SKIP)
			timeout = 0;
		else if (op == O_SHORT)
			timeout = (int64_t)(100 + r % 20000) * 1000;
		bool single = op == O_WRITE || op == O_READ || (op == O_SHORT && (r >> 20) % 2);
		n = single ? 1 : 1 + (unsigned)((r >> 24) % MAX_G);
		for (unsigned i = 0; i < n; i++) {
			uint64_t x = rng_next(rng);
			int gop = op == O_WRITE ? SHMQ_GUARD_WRITE : op == O_READ ? SHMQ_GUARD_READ
				  : (x & 1) ? SHMQ_GUARD_WRITE : SHMQ_GUARD_READ;
			chi[i] = (uint32_t)((x >> 1) % nch);
			g[i] = (struct shmq_guard){ .chan = use[chi[i]], .op = gop };
		}
	}
	for (unsigned i = 0; i < n; i++) {
		ids[i] = UINT64_MAX;
		if (g[i].op == SHMQ_GUARD_WRITE)
			ids[i] = new_id();
		if (g[i].op == SHMQ_GUARD_WRITE && ids[i] != UINT64_MAX) {
			g[i].wbuf = wbuf[i];
			g[i].wlen = mfill(wbuf[i], ids[i]);
			atomic_store(&me->fly_ch[nfly], chi[i]);
			atomic_store(&me->fly[nfly++], ids[i]);
		} else {
			g[i].op = SHMQ_GUARD_READ;
			g[i].rbuf = rbuf[i];
			g[i].rcap = pump || rng_next(rng) % 32 ? MSG_MAX : MHDR + 8;
			rd = true;
		}
	}
	bool single = n == 1 && !pump && op != O_ALT && op != O_SKIP;
	atomic_store(&me->nfly, nfly);
	atomic_store(&me->rd_pending, rd);
	atomic_store(&me->call_timeout, timeout);
	atomic_store(&me->call_op, op);
	uint64_t s0 = atomic_load(&sh->kill_seq);
	int64_t t0 = t_now();
	atomic_store(&me->call_start, t0);
	long ret;
	int f = 0;
	if (single && g[0].op == SHMQ_GUARD_WRITE) {
		ret = shmq_chan_write(g[0].chan, g[0].wbuf, g[0].wlen, timeout);
		g[0].result = ret < 0 ? ret : 0;
		ret = ret == -ETIMEDOUT || ret == -EAGAIN ? ret : 0;
	} else if (single) {
		ret = shmq_chan_read(g[0].chan, g[0].rbuf, g[0].rcap, timeout);
		g[0].result = ret;
		ret = ret == -ETIMEDOUT || ret == -EAGAIN ? ret : 0;
	} else {
		ret = shmq_alt(g, n, pump ? SHMQ_ALT_FAIR : (int)(r >> 40 & 1), timeout);
		f = (int)ret;
		ret = ret >= 0 ? 0 : ret;
	}
	int64_t el = t_now() - t0;
	if (el > timeout + HANG_SLACK)
		die(X_RESULT, "%s returned after %lld ms (timeout %lld ms)", op_name[op],
		    (long long)(el / T_MS), (long long)(timeout / T_MS));
	if (ret == -ETIMEDOUT || ret == -EAGAIN) {
		if (ret == -EAGAIN && timeout != 0)
			die(X_RESULT, "%s: -EAGAIN with a timeout", op_name[op]);
		if (ret == -ETIMEDOUT && timeout == 0)
			die(X_RESULT, "%s: -ETIMEDOUT with timeout 0", op_name[op]);
		if (timeout == LONG_TIMEOUT)
			atomic_fetch_add(&sh->long_timeouts, 1);
		else if (timeout)
			atomic_fetch_add(&me->short_timeouts, 1);
		else
			atomic_fetch_add(&me->eagain, 1);
	} else if (ret < 0) {
		die(X_RESULT, "%s of %u guards: %ld", op_name[op], n, ret);
	} else {
		struct shmq_guard *x = &g[f];
		if (x->op == SHMQ_GUARD_WRITE) {
			if (x->result != 0)
				die(X_RESULT, "%s: a write guard fired with %zd", op_name[op], x->result);
			bit_set(acked, ids[f]);
			atomic_fetch_add(&me->moved, 1);
			atomic_fetch_add(&sh->moved, 1);
		} else if (x->result >= 0) {
			record_from(x->rbuf, (size_t)x->result, buffers[chi[f] % 8] == 0, s0, t0);
			atomic_fetch_add(&me->moved, 1);
			atomic_fetch_add(&sh->moved, 1);
		} else if (x->result == -EMSGSIZE && x->rcap < MSG_MAX) {
			atomic_fetch_add(&me->emsgsize, 1);
		} else {
			die(X_RESULT, "%s: a read guard fired with %zd", op_name[op], x->result);
		}
	}
	atomic_store(&me->call_start, 0);
	atomic_store(&me->rd_pending, 0);
	atomic_store(&me->nfly, 0);
}

/* Give up an end and take another: an own end is retired (sometimes) and
 * closed and a new one opened; an inherited one gets a second handle
 * (end_open) that is used until the next reopen drops it. */
static void reopen(uint64_t *rng)
{
	uint32_t i = (uint32_t)(rng_next(rng) % nch);
	int r;
	atomic_store(&me->call_timeout, LONG_TIMEOUT);
	atomic_store(&me->call_op, O_REOPEN);
	atomic_store(&me->call_start, t_now());
	if (use_own) {
		if (rng_next(rng) % 2 && (r = shmq_chan_retire(own[i], SHMQ_RDWR)) != 0)
			die(X_RESULT, "retire of an own end: %d", r);
		if ((r = shmq_chan_close(own[i])) != 0)
			die(X_RESULT, "close of an own end: %d", r);
		own[i] = NULL;
		if ((r = shmq_chan_open(heap, sh->name[i], SHMQ_RDWR, &own[i])) != 0)
			die(X_RESULT, "open of an own end: %d", r);
		use[i] = own[i];
	} else if (extra[i]) {
		if ((r = shmq_chan_close(extra[i])) != 0)
			die(X_RESULT, "close of a second handle: %d", r);
		extra[i] = NULL;
		use[i] = chans[i];
	} else {
		if ((r = shmq_chan_end_open(heap, sh->end[i], &extra[i])) != 0)
			die(X_RESULT, "end_open of an inherited end: %d", r);
		if (shmq_chan_roles(extra[i]) != SHMQ_RDWR)
			die(X_RESULT, "end_open gave roles %d", shmq_chan_roles(extra[i]));
		use[i] = extra[i];
	}
	atomic_store(&me->call_start, 0);
}

static uint64_t hook_rng;
static void hook(enum shmq_hook_point where)
{
	if (where != SHMQ_HOOK_CHAN_PROMOTE)
		return;
	atomic_fetch_add_explicit(&me->hooks, 1, memory_order_relaxed);
	if (rng_next(&hook_rng) % HOOK_ODDS || atomic_load(&sh->stop_workers))
		return;
	atomic_store(&me->self_kill, 1);
	raise(SIGKILL);
}

static int worker(uint64_t rng, bool pump)
{
	for (unsigned i = 0; i < MAX_FLY; i++) {
		wbuf[i] = malloc(MSG_MAX);
		rbuf[i] = malloc(MSG_MAX);
		if (!wbuf[i] || !rbuf[i])
			return X_SETUP;
	}
	hook_rng = rng_next(&rng);
	shmq_test_hook = hook;
	use_own = !pump && rng_next(&rng) % 2;
	for (uint32_t i = 0; i < nch; i++) {
		use[i] = chans[i];
		if (use_own) {
			int r = shmq_chan_open(heap, sh->name[i], SHMQ_RDWR, &own[i]);
			if (r)
				die(X_SETUP, "open of an own end: %d", r);
			use[i] = own[i];
		}
	}
	unsigned total = 0, cum[O_PUMP];
	for (unsigned i = 0; i < O_PUMP; i++)
		cum[i] = total += weight[i];
	_Atomic uint32_t *stop = pump ? &sh->stop_pumps : &sh->stop_workers;
	while (!atomic_load(stop)) {
		unsigned op = O_PUMP;
		if (!pump) {
			unsigned w = (unsigned)(rng_next(&rng) % total);
			for (op = 0; w >= cum[op]; op++)
				;
		}
		atomic_fetch_add(&me->ops[op], 1);
		if (op == O_REOPEN)
			reopen(&rng);
		else
			one_call((enum op)op, &rng);
	}
	shmq_test_hook = NULL;
	int r;
	for (uint32_t i = 0; i < nch; i++) {
		if (own[i] && (r = shmq_chan_close(own[i])) != 0)
			die(X_CLOSE, "close of an own end at the end: %d", r);
		if (extra[i] && (r = shmq_chan_close(extra[i])) != 0)
			die(X_CLOSE, "close of a second handle at the end: %d", r);
		if ((r = shmq_chan_close(chans[i])) != 0)
			die(X_CLOSE, "close at the end: %d", r);
	}
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
	uint64_t kills_pump, kills_hook, rd_kills, fly_kills;
	uint64_t bad_exits, hangs, stalls;
	char bad_desc[512];
};
static struct stats st;

static void spawn(uint32_t i)
{
	struct kid *k = &sh->kids[i];
	slots[i].inc = next_inc++;
	atomic_store(&k->inc, slots[i].inc);
	atomic_store(&k->call_start, 0);
	atomic_store(&k->rd_pending, 0);
	atomic_store(&k->nfly, 0);
	atomic_store(&k->self_kill, 0);
	uint64_t rng = seed ^ t_mix(slots[i].inc + 1);
	pid_t parent = getpid();
	slots[i].pid = fork();
	if (slots[i].pid < 0) {
		perror("chan_torture: fork");
		exit(2);
	}
	if (slots[i].pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		me = k;
		my_slot = i;
		my_inc = slots[i].inc;
		_exit(worker(rng, i >= nworkers));
	}
}

static const char *exit_meaning(int status)
{
	if (!WIFEXITED(status))
		return "";
	switch (WEXITSTATUS(status)) {
	case X_SETUP: return " (setup failed)";
	case X_CLOSE: return " (close at the end failed)";
	case X_RESULT: return " (a result the contract rules out)";
	default: return "";
	}
}

static void bad_exit(uint32_t i, int status, const char *why)
{
	char sb[32];
	if (!st.bad_exits++)
		snprintf(st.bad_desc, sizeof(st.bad_desc), "%s %u (inc %u) %s: %s%s", i < nworkers ? "worker" : "pump", i, slots[i].inc,
			 why, t_status_str(status, sb, sizeof(sb)), exit_meaning(status));
}

/* A process is gone by a kill (ours or its own at the hook): what its call
 * had in flight may have moved. */
static void reclaim(uint32_t i)
{
	struct kid *k = &sh->kids[i];
	st.rd_kills += atomic_load(&k->rd_pending) != 0;
	uint32_t nf = atomic_load(&k->nfly);
	st.fly_kills += nf != 0;
	uint64_t seq = atomic_fetch_add(&sh->kill_seq, 1) + 1; /* it is reaped */
	int64_t at = t_now();
	for (uint32_t j = 0; j < nf && j < MAX_FLY; j++) {
		uint64_t id = atomic_load(&k->fly[j]);
		if (id >= MAX_IDS)
			continue;
		uint32_t nd = atomic_load(&sh->ndead);
		if (buffers[atomic_load(&k->fly_ch[j]) % 8] == 0 && nd < MAX_DEAD) {
			atomic_store(&dead[nd].id, id);
			atomic_store(&dead[nd].seq, seq);
			atomic_store(&dead[nd].at, at);
			atomic_store(&sh->ndead, nd + 1);
		}
		bit_set(maybe, id);
	}
	atomic_store(&k->call_start, 0);
	atomic_store(&k->rd_pending, 0);
	atomic_store(&k->nfly, 0);
	slots[i].pid = -1;
	st.kills++;
	st.kills_pump += i >= nworkers;
}

static bool self_killed(uint32_t i, int status)
{
	if (!atomic_load(&sh->kids[i].self_kill) || !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		return false;
	st.kills_hook++;
	reclaim(i);
	return true;
}

static void kill_one(uint32_t i, bool targeted)
{
	struct kid *k = &sh->kids[i];
	if (slots[i].pid <= 0)
		return;
	bool hit = false;
	if (targeted) {
		int64_t deadline = t_now() + TARGET_WAIT;
		while (!atomic_load(&k->call_start) && t_now() < deadline)
			t_nap(20 * 1000);
		hit = atomic_load(&k->call_start) != 0;
	}
	kill(slots[i].pid, SIGKILL);
	int status;
	while (waitpid(slots[i].pid, &status, 0) < 0 && errno == EINTR)
		;
	if (self_killed(i, status))
		return;
	if (targeted) {
		st.kills_targeted++;
		st.targeted_missed += !hit;
	} else {
		st.kills_random++;
	}
	if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		bad_exit(i, status, "killed, but it had exited");
	reclaim(i);
}

static int64_t last_progress_t;
static uint64_t last_progress;

/* Processes that killed themselves at the hook are replaced at once; others
 * that exit failed; calls in flight past their timeout + HANG_SLACK are
 * hangs; no message moving for STALL is a stall. */
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
			} else if (!atomic_load(&sh->stop_workers)) {
				spawn(i);
			}
		}
	int64_t now = t_now();
	for (uint32_t i = 0; i < nslots; i++) {
		struct kid *k = &sh->kids[i];
		int64_t start = atomic_load(&k->call_start);
		if (slots[i].pid > 0 && start &&
		    now - start > atomic_load(&k->call_timeout) + HANG_SLACK && !st.hangs++)
			fprintf(stderr, "chan_torture: %s %u in a call (%s) for %lld ms\n",
				i < nworkers ? "worker" : "pump", i,
				op_name[atomic_load(&k->call_op) % O_N], (long long)((now - start) / T_MS));
	}
	uint64_t moved = atomic_load(&sh->moved);
	if (moved != last_progress || !last_progress_t) {
		last_progress = moved;
		last_progress_t = now;
	} else if (now - last_progress_t > STALL && !st.stalls++) {
		fprintf(stderr, "chan_torture: no message moved for %lld ms\n",
			(long long)((now - last_progress_t) / T_MS));
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

/* Each channel still works: a child reads 200 messages the supervisor
 * writes (ids past every worker's), in order. */
static void usable(void)
{
	for (uint32_t i = 0; i < nch && !why[0]; i++) {
		uint64_t first = atomic_fetch_add(&sh->next_id, 200);
		if (first + 200 > MAX_IDS)
			return;
		pid_t pid = fork();
		if (pid < 0) {
			failed("fork: %s", strerror(errno));
			return;
		}
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			unsigned char *b = malloc(MSG_MAX);
			if (!b)
				_exit(2);
			for (uint64_t id = first; id < first + 200; id++) {
				ssize_t n = shmq_chan_read(chans[i], b, MSG_MAX, LONG_TIMEOUT);
				struct mhdr h;
				if (n < (ssize_t)MHDR)
					_exit(3);
				memcpy(&h, b, MHDR);
				if (h.id != id || mlen_of(id) != n || msum(b, (size_t)n) != h.sum)
					_exit(4);
			}
			_exit(0);
		}
		unsigned char *m = malloc(MSG_MAX);
		for (uint64_t id = first; m && id < first + 200 && !why[0]; id++) {
			int r = shmq_chan_write(chans[i], m, mfill(m, id), LONG_TIMEOUT);
			if (r)
				failed("channel %u after the run: write %d", i, r);
		}
		free(m);
		int status = 0;
		if (t_wait(pid, &status, LONG_TIMEOUT) < 0) {
			t_kill_reap(pid);
			failed("channel %u after the run: the reader hangs", i);
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			char sb[32];
			failed("channel %u after the run: the reader %s (3: read failed, 4: wrong "
			       "message)", i, t_status_str(status, sb, sizeof(sb)));
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: chan_torture [--kills N] [--workers N] [--pumps N] [--channels K] "
			"[--seed S] [--interval-ms MS] [--max-leak-kib K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t kills = 300, max_leak_kib = 80;
	int64_t interval_ms = 15; /* between kill rounds: uniform in 0 .. 2 x this */
	nworkers = 6;
	npumps = 2;
	nch = 4;
	seed = (uint64_t)t_now() ^ (uint64_t)getpid() << 32;
	static const struct option opts[] = {
		{ "kills", required_argument, NULL, 'k' },
		{ "workers", required_argument, NULL, 'w' },
		{ "pumps", required_argument, NULL, 'p' },
		{ "channels", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "max-leak-kib", required_argument, NULL, 'l' },
		{ NULL, 0, NULL, 0 },
	};
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 'k': kills = strtoull(optarg, NULL, 0); break;
		case 'w': nworkers = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'p': npumps = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'c': nch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'i': interval_ms = strtoll(optarg, NULL, 0); break;
		case 'l': max_leak_kib = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc || !nworkers || !npumps || nworkers + npumps > MAX_KIDS || !nch ||
	    nch > MAX_CH || interval_ms < 0)
		usage();
	nslots = nworkers + npumps;
	sh = t_shared(sizeof(*sh));
	size_t bsz = MAX_IDS / 8;
	acked = mmap(NULL, bsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	recvd = mmap(NULL, bsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	maybe = mmap(NULL, bsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	dead = mmap(NULL, MAX_DEAD * sizeof(*dead), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!sh || acked == MAP_FAILED || recvd == MAP_FAILED || maybe == MAP_FAILED ||
	    dead == MAP_FAILED) {
		perror("chan_torture: memory");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct shmq_heap_attr a;
	shmq_heap_attr_init(&a);
	a.max_size = HEAP_MAX;
	int r;
	if ((r = shmq_heap_create(NULL, &a, &heap)) != 0) {
		fprintf(stderr, "chan_torture: heap: %d\n", r);
		return 2;
	}
	struct shmq_heap_stat hs0;
	if ((r = shmq_heap_stat(heap, &hs0)) != 0) {
		fprintf(stderr, "chan_torture: heap stat: %d\n", r);
		return 2;
	}
	for (uint32_t i = 0; i < nch; i++) {
		if ((r = shmq_chan_create(heap, NULL, buffers[i % 8], &chans[i])) != 0) {
			fprintf(stderr, "chan_torture: channel: %d\n", r);
			return 2;
		}
		snprintf(sh->name[i], sizeof(sh->name[i]), "%s", shmq_chan_name(chans[i]));
		snprintf(sh->end[i], sizeof(sh->end[i]), "%s", shmq_chan_end_name(chans[i]));
	}

	for (uint32_t i = 0; i < nslots; i++)
		spawn(i);
	uint64_t rng = seed;
	int64_t start = t_now();
	while (st.kills < kills) {
		int64_t wake = t_now() +
			       (int64_t)(rng_next(&rng) % (uint64_t)(2 * interval_ms * 1000 + 1)) * 1000;
		for (int64_t left; (left = wake - t_now()) > 0 && !st.bad_exits && !st.hangs && !st.stalls;) {
			t_nap(left < 5 * T_MS ? left : 5 * T_MS);
			watch();
		}
		watch();
		if (st.bad_exits || st.hangs || st.stalls || st.kills >= kills)
			break;
		uint64_t mode = rng_next(&rng) % 16;
		if (mode == 0) { /* every worker at once */
			for (uint32_t i = 0; i < nworkers && st.kills < kills; i++)
				kill_one(i, false);
			st.kills_group++;
		} else if (mode <= 2) { /* a burst: 3 to 8 kills 0-2 ms apart */
			unsigned n = 3 + (unsigned)(rng_next(&rng) % 6);
			uint32_t victim = (uint32_t)(rng_next(&rng) % nworkers);
			for (unsigned b = 0; b < n && st.kills < kills; b++) {
				if (rng_next(&rng) % 2) /* often the replacement just started */
					victim = (uint32_t)(rng_next(&rng) % nworkers);
				kill_one(victim, false);
				spawn(victim);
				t_nap((int64_t)(rng_next(&rng) % 2000) * 1000);
			}
			st.kills_burst++;
		} else {
			uint32_t victim = rng_next(&rng) % 8 == 0 ? nworkers + (uint32_t)(rng_next(&rng) % npumps)
								   : (uint32_t)(rng_next(&rng) % nworkers);
			kill_one(victim, rng_next(&rng) & 1);
		}
		for (uint32_t i = 0; i < nslots; i++)
			if (slots[i].pid <= 0)
				spawn(i);
	}
	int64_t run_ns = t_now() - start;

	/* End: workers finish their call (the pumps serve it), close
	 * everything and exit 0; then the pumps. */
	for (int phase = 0; phase < 2; phase++) {
		atomic_store(phase ? &sh->stop_pumps : &sh->stop_workers, 1);
		watch();
		int64_t deadline = t_now() + LONG_TIMEOUT + HANG_SLACK;
		for (uint32_t i = phase ? nworkers : 0; i < (phase ? nslots : nworkers); i++) {
			if (slots[i].pid <= 0)
				continue;
			int status = 0;
			int64_t left = deadline - t_now();
			if (t_wait(slots[i].pid, &status, left > 0 ? left : 0) < 0) {
				st.hangs++;
				fprintf(stderr, "chan_torture: %s %u did not finish (%s)\n",
					i < nworkers ? "worker" : "pump", i,
					op_name[atomic_load(&sh->kids[i].call_op) % O_N]);
				t_kill_reap(slots[i].pid);
			} else if (!self_killed(i, status) &&
				   !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
				bad_exit(i, status, "at the end");
			}
			slots[i].pid = -1;
		}
	}
	if (st.bad_exits)
		failed("%s%s%s", st.bad_desc, sh->error_claimed ? ": " : "",
		       sh->error_claimed ? sh->error_desc : "");
	else if (st.hangs)
		failed("a call did not return within its timeout + %lld s", (long long)(HANG_SLACK / T_SEC));
	else if (st.stalls)
		failed("no message moved for %lld s", (long long)(STALL / T_SEC));

	/* What is buffered has not been received yet: drain it. */
	unsigned char *m = malloc(MSG_MAX);
	if (!m)
		return 2;
	for (uint32_t i = 0; i < nch && !why[0]; i++) {
		ssize_t n;
		while ((n = shmq_chan_read(chans[i], m, MSG_MAX, 0)) >= 0)
			record(m, (size_t)n);
		if (n != -EAGAIN)
			failed("draining channel %u: %zd", i, n);
	}
	free(m);

	uint64_t ids = atomic_load(&sh->next_id), lost = 0, phantom = 0, nacked = 0, nrecv = 0;
	uint64_t first_phantom = 0;
	if (ids > MAX_IDS)
		ids = MAX_IDS;
	for (uint64_t id = 0; id < ids; id++) {
		bool ak = bit_get(acked, id), rv = bit_get(recvd, id), mb = bit_get(maybe, id);
		nacked += ak;
		nrecv += rv;
		lost += ak && !rv;
		if (rv && !ak && !mb && !phantom++)
			first_phantom = id;
	}
	if (sh->dups)
		failed("%" PRIu64 " messages received twice", (uint64_t)sh->dups);
	else if (sh->torn)
		failed("%" PRIu64 " torn or unknown messages", (uint64_t)sh->torn);
	else if (phantom)
		failed("%" PRIu64 " messages received that no fired guard or accepted write sent (first "
		       "id %" PRIu64 ")", phantom, first_phantom);
	else if (sh->late_deliveries)
		failed("%" PRIu64 " offers of writers killed while they waited on a rendezvous were "
		       "delivered to reads that began after the writer was reaped (first id %" PRIu64 ")",
		       (uint64_t)sh->late_deliveries, (uint64_t)sh->first_late);
	else if (lost > st.rd_kills)
		failed("%" PRIu64 " acknowledged messages never received, only %" PRIu64
		       " kills with a read in flight", lost, st.rd_kills);
	else if (sh->long_timeouts)
		failed("%" PRIu64 " calls with a 5 s timeout timed out (with pumps there)",
		       (uint64_t)sh->long_timeouts);

	uint64_t ops[O_N] = { 0 }, eagain = 0, short_to = 0, emsgsize = 0, hooks = 0;
	for (uint32_t i = 0; i < MAX_KIDS; i++) {
		for (unsigned o = 0; o < O_N; o++)
			ops[o] += atomic_load(&sh->kids[i].ops[o]);
		eagain += sh->kids[i].eagain;
		short_to += sh->kids[i].short_timeouts;
		emsgsize += sh->kids[i].emsgsize;
		hooks += sh->kids[i].hooks;
	}
	for (unsigned o = 0; o < O_N && !why[0]; o++)
		if (!ops[o])
			failed("%s never ran", op_name[o]);

	usable();
	int check = heap_check(heap);
	struct shmq_heap_stat hs1 = { 0 }, hs2 = { 0 };
	int stat = shmq_heap_stat(heap, &hs1);
	if (check != 0)
		failed("heap_check: %d", check);
	else if (stat != 0)
		failed("shmq_heap_stat: %d", stat);
	for (uint32_t i = 0; i < nch; i++)
		if ((r = shmq_chan_close(chans[i])) != 0)
			failed("close of channel %u: %d", i, r);
	stat = shmq_heap_stat(heap, &hs2);
	uint64_t live0 = hs0.used - hs0.free, live2 = hs2.used - hs2.free;
	uint64_t bound = live0 + (256 << 10) + st.kills * (max_leak_kib << 10);
	if (stat != 0)
		failed("shmq_heap_stat after the close: %d", stat);
	else if (hs2.objects != hs0.objects || hs2.handles != 1)
		failed("%u objects (want %u) and %u handles (want 1) once everything is closed",
		       hs2.objects, hs0.objects, hs2.handles);
	else if (live2 > bound)
		failed("%.1f KiB in use once everything is closed, %.1f KiB before: over %" PRIu64
		       " KiB per kill", (double)live2 / 1024, (double)live0 / 1024, max_leak_kib);
	else if ((check = heap_check(heap)) != 0)
		failed("heap_check after the close: %d", check);

	printf("chan_torture: %s%s: %" PRIu64 " kills (%" PRIu64 " random, %" PRIu64 " targeted, %" PRIu64
	       " missed their moment, %" PRIu64 " groups, %" PRIu64 " bursts, %" PRIu64 " of pumps, %"
	       PRIu64 " at the promote hook of %" PRIu64 " firings; %" PRIu64 " with a read in flight, %"
	       PRIu64 " with writes in flight) of %u workers and %u pumps on %u channels in %.1f s; "
	       "calls: %" PRIu64 " writes, %" PRIu64 " reads, %" PRIu64 " alts, %" PRIu64 " skips, %"
	       PRIu64 " short, %" PRIu64 " reopens, %" PRIu64 " pump alts; %" PRIu64 " messages moved, %"
	       PRIu64 " acknowledged, %" PRIu64 " received, %" PRIu64 " lost, %" PRIu64
	       " delivered from the dead; %" PRIu64 " -EAGAIN, %" PRIu64 " short timeouts, %" PRIu64 " -EMSGSIZE; heap: %.1f KiB in use before, %.1f "
	       "after (size %.1f MiB, %u objects); seed %#" PRIx64 "\n",
	       why[0] ? "FAIL: " : "PASS", why, st.kills, st.kills_random, st.kills_targeted,
	       st.targeted_missed, st.kills_group, st.kills_burst, st.kills_pump, st.kills_hook, hooks,
	       st.rd_kills, st.fly_kills, nworkers, npumps, nch, (double)run_ns / T_SEC, ops[O_WRITE],
	       ops[O_READ], ops[O_ALT], ops[O_SKIP], ops[O_SHORT], ops[O_REOPEN], ops[O_PUMP],
	       (uint64_t)sh->moved, nacked, nrecv, lost, (uint64_t)sh->late_deliveries, eagain,
	       short_to, emsgsize,
	       (double)live0 / 1024, (double)live2 / 1024, (double)hs2.size / (1 << 20), hs2.objects,
	       seed);
	shmq_heap_close(heap);
	return why[0] ? 1 : 0;
}
