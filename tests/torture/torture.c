/* Kill -9 torture: producers and consumers move numbered, checksummed
 * messages through one queue while this supervisor SIGKILLs them at random
 * moments (half of the kills at random times, half at the exact instruction
 * after a claim, through the test hooks) and starts replacements. Then it
 * checks, from what every process recorded in shared memory:
 *
 *   - no message delivered twice, none torn, none that was never sent;
 *   - each producer's messages reach each consumer in the order put;
 *   - a message whose put returned 0 is lost only through a consumer kill:
 *     at most one get's worth (CONS_BATCH_MAX) per killed consumer;
 *   - a message whose put did not return is lost only if its producer was
 *     killed during that put: at most the one in-flight put per killed
 *     producer (one message, or one batch for the batch calls);
 *   - nobody hangs: every call returns within its timeout plus HANG_SLACK
 *     (the supervisor also watches calls in flight);
 *   - afterwards the queue is fully usable: every cell of the ring can be
 *     filled and drained again, and a clean 2x2 run delivers exactly once.
 *
 * Usage: torture [--kills N] [--producers N] [--consumers N] [--seed S]
 *                [--interval-us US]
 * CI runs --kills 100 (meson test 'torture'); tests/torture/README.md has the
 * long run. Exit status 0 when every check holds; the counts are printed. */
#include "../common.h"

#include <getopt.h>
#include <inttypes.h>

#define CAPACITY 256u          /* cells: small, so the ring wraps and fills */
#define MSG_MAX 1024u
#define LEN_LO TMSG_HDR
#define LEN_HI 600u            /* up to 10 cells of 64 bytes */
#define ONE_CELL 56u           /* payload of one 64-byte cell: zero-copy */
#define PROD_BATCH_MAX 8u
#define CONS_BATCH_MAX 8u
#define MAX_KIDS 32u
#define MAX_MSGS (1ull << 30)  /* global sequence numbers (bitmaps 128 MiB, lazily) */
#define HANG_SLACK (3 * T_SEC * T_SCALE)
#define HOOK_GRACE (100 * T_MS) /* a victim told to die at its next claim */

enum api { API_COPY, API_BULK, API_BURST, API_ZEROCOPY, API_N };
static const char *const api_name[API_N] = { "copy", "bulk", "burst", "zero-copy" };

/* One running child, written by it and read by the supervisor. */
struct kid {
	_Atomic uint32_t inc;        /* incarnation: the producer id in messages */
	_Atomic uint32_t die;        /* die at the next claim (test hook) */
	_Atomic int64_t call_start;  /* CLOCK_MONOTONIC ns, 0 between calls */
	_Atomic int64_t call_timeout;
	/* Producers: the put in flight, messages seq .. seq + n - 1. */
	_Atomic uint64_t flight_seq;
	_Atomic uint32_t flight_n;
};

/* A killed producer's in-flight put, kept for the final accounting. */
struct flight {
	uint64_t seq;
	uint32_t n;
};

struct shared {
	_Atomic uint32_t stop;       /* producers: finish the call, close, exit */
	_Atomic uint64_t next_seq;   /* global message numbers */
	_Atomic uint64_t puts, gets, timeouts, eagain;
	_Atomic uint64_t delivered, dup, torn, order, errors;
	_Atomic int64_t last_err;
	_Atomic uint32_t torn_kind;
	_Atomic int64_t max_overrun; /* worst (call duration - timeout), ns */
	_Atomic uint64_t overruns;   /* calls past timeout + HANG_SLACK */
	struct kid kids[MAX_KIDS];
};

static struct shared *sh;
static _Atomic uint64_t *attempted, *acked, *delivered; /* one bit per message */
static uint32_t max_inc;                                /* incarnations allotted */
static uint64_t bitmap_bytes;

/* ------------------------------------------------------------ small bits -- */

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return t_mix(*s);
}

static bool bit_get(_Atomic uint64_t *map, uint64_t i)
{
	return atomic_load_explicit(&map[i / 64], memory_order_relaxed) >> (i % 64) & 1;
}

/* Set bit i; returns its previous value. */
static bool bit_set(_Atomic uint64_t *map, uint64_t i)
{
	uint64_t b = 1ull << (i % 64);
	return atomic_fetch_or(&map[i / 64], b) & b;
}

static void bit_clear(_Atomic uint64_t *map, uint64_t i)
{
	atomic_fetch_and(&map[i / 64], ~(1ull << (i % 64)));
}

static void note_err(int64_t r)
{
	atomic_store(&sh->last_err, r);
	atomic_fetch_add(&sh->errors, 1);
}

/* Timeout for the next call: mostly long enough to wait, sometimes 0 or
 * tiny, so that every path of the wait loop is taken. */
static int64_t pick_timeout(uint64_t *rng)
{
	unsigned r = rng_next(rng) % 10;
	return r == 0 ? 0 : r < 3 ? T_MS : 200 * T_MS;
}

static void call_begin(struct kid *k, int64_t timeout)
{
	atomic_store(&k->call_timeout, timeout);
	atomic_store(&k->call_start, t_now());
}

/* Account for a finished call: its duration against its timeout, and the
 * errors a call may legitimately return. */
static void call_end(struct kid *k, int64_t r)
{
	int64_t took = t_now() - atomic_load(&k->call_start);
	int64_t over = took - atomic_load(&k->call_timeout);
	atomic_store(&k->call_start, 0);
	int64_t m = atomic_load(&sh->max_overrun);
	while (over > m && !atomic_compare_exchange_weak(&sh->max_overrun, &m, over))
		;
	if (over > HANG_SLACK)
		atomic_fetch_add(&sh->overruns, 1);
	if (r == -ETIMEDOUT && atomic_load(&k->call_timeout) > 0)
		atomic_fetch_add(&sh->timeouts, 1);
	else if (r == -EAGAIN && atomic_load(&k->call_timeout) == 0)
		atomic_fetch_add(&sh->eagain, 1);
	else if (r < 0 && r != -EPIPE)
		note_err(r);
}

/* The hook the library calls right after a claim: die there if told to. */
static struct kid *self;
static enum shmq_hook_point self_point;
static void die_at_claim(enum shmq_hook_point where)
{
	if (where == self_point && atomic_load_explicit(&self->die, memory_order_relaxed))
		raise(SIGKILL);
}

/* --------------------------------------------------------------- producer -- */

/* Put messages seq .. seq + n - 1 with api; returns how many went in. */
static int put_some(shmq_queue *q, enum api api, uint32_t inc, uint64_t seq, uint32_t n,
		    int64_t timeout, unsigned char *bufs)
{
	struct iovec iov[PROD_BATCH_MAX];
	for (uint32_t i = 0; i < n; i++) {
		iov[i].iov_base = bufs + (size_t)i * MSG_MAX;
		iov[i].iov_len = tmsg_len(inc, (uint32_t)(seq + i), LEN_LO, LEN_HI);
		tmsg_fill(iov[i].iov_base, inc, (uint32_t)(seq + i), iov[i].iov_len);
	}
	if (api == API_BULK)
		return shmq_put_bulk(q, iov, n, timeout);
	if (api == API_BURST)
		return shmq_put_burst(q, iov, n, timeout);
	int r;
	if (api == API_ZEROCOPY && iov[0].iov_len <= ONE_CELL) {
		shmq_slot slot;
		r = shmq_put_reserve(q, iov[0].iov_len, &slot, timeout);
		if (r < 0)
			return r;
		memcpy(slot.data, iov[0].iov_base, iov[0].iov_len);
		r = shmq_put_commit(q, &slot);
	} else { /* copy, or zero-copy of a message too long for one cell */
		r = shmq_put(q, iov[0].iov_base, iov[0].iov_len, timeout);
	}
	return r < 0 ? r : 1;
}

static int producer(shmq_queue *q, struct kid *k, enum api api, uint64_t rng)
{
	uint32_t inc = atomic_load(&k->inc);
	unsigned char *bufs = malloc(PROD_BATCH_MAX * MSG_MAX);
	if (!bufs || shmq_queue_shutdown(q, SHMQ_RD) < 0)
		return 10;
	while (!atomic_load(&sh->stop)) {
		uint32_t n = api == API_BULK || api == API_BURST
				     ? 1 + (uint32_t)(rng_next(&rng) % PROD_BATCH_MAX)
				     : 1;
		uint64_t seq = atomic_fetch_add(&sh->next_seq, n);
		if (seq + n > MAX_MSGS || seq + n > UINT32_MAX) {
			t_nap(T_MS); /* numbers used up: idle until told to stop */
			continue;
		}
		/* Announce the put before making it: whatever the supervisor
		 * finds attempted but not acknowledged was in flight. */
		atomic_store(&k->flight_n, 0);
		atomic_store(&k->flight_seq, seq);
		atomic_store(&k->flight_n, n);
		for (uint32_t i = 0; i < n; i++)
			bit_set(attempted, seq + i);
		int64_t timeout = pick_timeout(&rng);
		call_begin(k, timeout);
		int r = put_some(q, api, inc, seq, n, timeout, bufs);
		call_end(k, r);
		/* Acknowledged first, then the failed ones forgotten: a failed
		 * put leaves the queue as it was. */
		uint32_t in = r > 0 ? (uint32_t)r : 0;
		if (r > (int)n || (r == 0))
			note_err(-ERANGE);
		for (uint32_t i = 0; i < in && i < n; i++)
			bit_set(acked, seq + i);
		for (uint32_t i = in; i < n; i++)
			bit_clear(attempted, seq + i);
		atomic_store(&k->flight_n, 0);
		atomic_fetch_add(&sh->puts, in);
	}
	free(bufs);
	return shmq_queue_close(q) == 0 ? 0 : 11;
}

/* --------------------------------------------------------------- consumer -- */

/* Check and record one received message. last[inc]: the last sequence this
 * consumer got from that producer incarnation, + 1 (0: none yet). */
static void account(uint64_t *last, const void *buf, size_t len)
{
	uint32_t inc, seq;
	atomic_fetch_add(&sh->delivered, 1);
	enum tmsg_err e = tmsg_check(buf, len, max_inc, LEN_LO, LEN_HI, &inc, &seq);
	if (e != TMSG_OK) {
		atomic_store(&sh->torn_kind, e);
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	if (seq + 1ull <= last[inc])
		atomic_fetch_add(&sh->order, 1);
	last[inc] = seq + 1ull;
	if (seq >= MAX_MSGS) {
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	if (bit_set(delivered, seq))
		atomic_fetch_add(&sh->dup, 1);
}

/* Get some messages with api; returns the count or a negative error. */
static int get_some(shmq_queue *q, enum api api, uint64_t *last, int64_t timeout,
		    unsigned char *bufs, uint64_t *rng)
{
	bool fallback = false;
	if (api == API_ZEROCOPY) {
		int64_t deadline = t_now() + timeout;
		shmq_slot slot;
		int r = shmq_get_peek(q, &slot, timeout);
		if (r == 0) {
			account(last, slot.data, slot.len);
			r = shmq_get_release(q, &slot);
			return r < 0 ? r : 1;
		}
		if (r != -EMSGSIZE) /* the next message is longer than a cell */
			return r;
		/* Copy it out instead, within what is left of the timeout. */
		api = API_COPY;
		fallback = timeout > 0;
		timeout = deadline - t_now() > 0 ? deadline - t_now() : 0;
	}
	if (api == API_COPY) {
		ssize_t n = shmq_get(q, bufs, MSG_MAX, timeout);
		if (n == -EAGAIN && fallback) /* another consumer took it */
			return -ETIMEDOUT;
		if (n < 0)
			return (int)n;
		account(last, bufs, (size_t)n);
		return 1;
	}
	struct iovec iov[CONS_BATCH_MAX];
	unsigned n = 1 + (unsigned)(rng_next(rng) % CONS_BATCH_MAX);
	for (unsigned i = 0; i < n; i++)
		iov[i] = (struct iovec){ .iov_base = bufs + (size_t)i * MSG_MAX, .iov_len = MSG_MAX };
	int r = api == API_BULK ? shmq_get_bulk(q, iov, n, timeout)
				: shmq_get_burst(q, iov, n, timeout);
	if (r == -EPIPE && api == API_BULK && n > 1)
		return 0; /* end of data with fewer than n left: take them singly */
	if (r < 0)
		return r;
	if (r == 0 || r > (int)n || (api == API_BULK && r != (int)n))
		return -ERANGE;
	for (int i = 0; i < r; i++)
		account(last, iov[i].iov_base, iov[i].iov_len);
	return r;
}

static int consumer(shmq_queue *q, struct kid *k, enum api api, uint64_t rng)
{
	uint64_t *last = calloc(max_inc, sizeof(*last));
	unsigned char *bufs = malloc(CONS_BATCH_MAX * MSG_MAX);
	if (!last || !bufs || shmq_queue_shutdown(q, SHMQ_WR) < 0)
		return 20;
	for (;;) {
		int64_t timeout = pick_timeout(&rng);
		call_begin(k, timeout);
		int r = get_some(q, api, last, timeout, bufs, &rng);
		call_end(k, r);
		if (r == 0) /* bulk at end of data: drain one by one */
			api = API_COPY;
		if (r > 0)
			atomic_fetch_add(&sh->gets, (uint64_t)r);
		if (r == -EPIPE)
			break;
	}
	free(last);
	free(bufs);
	return shmq_queue_close(q) == 0 ? 0 : 21;
}

/* ------------------------------------------------------------- supervisor -- */

struct slot_state {
	pid_t pid;
	bool prod;
	uint32_t inc;
	enum api api;
};

static struct slot_state slots[MAX_KIDS];
static uint32_t nslots, next_inc;
static struct flight *flights; /* in-flight puts of killed producers */
static uint32_t nflights;
static uint64_t seed;

struct stats {
	uint64_t kills, kills_prod, kills_cons, kills_hook, kills_random, kills_group;
	uint64_t bad_exits, hangs;
	char bad_desc[160];
};
static struct stats st;

static void spawn(shmq_queue *q, uint32_t i)
{
	struct slot_state *s = &slots[i];
	struct kid *k = &sh->kids[i];
	uint64_t rng = seed ^ t_mix(next_inc);
	s->inc = next_inc++;
	s->api = (enum api)(rng_next(&rng) % API_N);
	atomic_store(&k->inc, s->inc);
	atomic_store(&k->die, 0);
	atomic_store(&k->call_start, 0);
	atomic_store(&k->flight_n, 0);
	pid_t parent = getpid();
	s->pid = fork();
	if (s->pid < 0) {
		perror("torture: fork");
		exit(2);
	}
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		self = k;
		self_point = s->prod ? SHMQ_HOOK_PUT_CLAIMED : SHMQ_HOOK_GET_CLAIMED;
		shmq_test_hook = die_at_claim;
		_exit(s->prod ? producer(q, k, s->api, rng) : consumer(q, k, s->api, rng));
	}
}

static void bad_exit(uint32_t i, int status, const char *why)
{
	char sb[32];
	if (!st.bad_exits++)
		snprintf(st.bad_desc, sizeof(st.bad_desc), "%s %u (%s, inc %u): %s: %s",
			 slots[i].prod ? "producer" : "consumer", i, api_name[slots[i].api],
			 slots[i].inc, why, t_status_str(status, sb, sizeof(sb)));
}

/* Wait for a victim we killed (or told to die); it must die of SIGKILL. */
static void reap_victim(uint32_t i)
{
	int status;
	while (waitpid(slots[i].pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
		bad_exit(i, status, "killed, but");
	if (slots[i].prod) {
		struct kid *k = &sh->kids[i];
		uint32_t n = atomic_load(&k->flight_n);
		if (n)
			flights[nflights++] = (struct flight){ atomic_load(&k->flight_seq), n };
	}
}

/* Kill the child in slot i, now or at its next claim. */
static void kill_one(uint32_t i, bool at_claim)
{
	if (at_claim) {
		atomic_store(&sh->kids[i].die, 1);
		int status;
		if (t_wait(slots[i].pid, &status, HOOK_GRACE) == 0) {
			/* t_wait reaped it: check as reap_victim would. */
			if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
				bad_exit(i, status, "told to die at a claim, but");
			st.kills_hook++;
			goto dead;
		}
		/* No claim within the grace period (it waits): kill it anyway. */
	}
	kill(slots[i].pid, SIGKILL);
	reap_victim(i);
	st.kills_random++;
	goto counted;
dead:
	if (slots[i].prod) {
		struct kid *k = &sh->kids[i];
		uint32_t n = atomic_load(&k->flight_n);
		if (n)
			flights[nflights++] = (struct flight){ atomic_load(&k->flight_seq), n };
	}
counted:
	st.kills++;
	if (slots[i].prod)
		st.kills_prod++;
	else
		st.kills_cons++;
}

/* Children that exit on their own during the run failed; calls in flight
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
		if (start && now - start > atomic_load(&k->call_timeout) + HANG_SLACK &&
		    !st.hangs++)
			fprintf(stderr, "torture: %s %u (%s) in a call for %lld ms\n",
				slots[i].prod ? "producer" : "consumer", i, api_name[slots[i].api],
				(long long)((now - start) / T_MS));
	}
}

/* Wait for every child of one role to exit 0 by itself. */
static void wait_role(bool prod, int64_t limit)
{
	int64_t deadline = t_now() + limit;
	for (uint32_t i = 0; i < nslots; i++) {
		if (slots[i].prod != prod || slots[i].pid < 0)
			continue;
		int status = 0;
		int64_t left = deadline - t_now();
		if (t_wait(slots[i].pid, &status, left > 0 ? left : 0) < 0) {
			st.hangs++;
			fprintf(stderr, "torture: %s %u (%s) did not finish\n",
				prod ? "producer" : "consumer", i, api_name[slots[i].api]);
			t_kill_reap(slots[i].pid);
		} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			bad_exit(i, status, "at the end");
		}
		slots[i].pid = -1;
	}
}

/* The ring after the torture: every cell usable (a dead owner's cells are
 * taken back by waiters), contents intact, then a clean multi-process run. */
static int check_usable(shmq_queue *q, char *why, size_t n)
{
	shmq_queue *h = NULL;
	int r = shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RDWR, &h);
	if (r < 0)
		return snprintf(why, n, "reopen: %d", r), -1;
	shmq_queue_close(q);
	if (shmq_qsize(h) != 0 || shmq_empty(h) != 1)
		return snprintf(why, n, "qsize %zd after the drain", shmq_qsize(h)), -1;
	unsigned char buf[MSG_MAX];
	size_t cap = shmq_capacity(h);
	for (uint32_t i = 0; i < cap; i++)
		if ((r = t_put_msg(h, 0, i, 40, 2 * T_SEC)) < 0)
			return snprintf(why, n, "refill: put %u of %zu: %d", i, cap, r), -1;
	if (shmq_full(h) != 1 || (size_t)shmq_qsize(h) != cap ||
	    (r = t_put_msg(h, 0, 0, 40, 0)) != -EAGAIN)
		return snprintf(why, n, "refilled ring not full (qsize %zd, put %d)", shmq_qsize(h),
				r), -1;
	for (uint32_t i = 0; i < cap; i++) {
		ssize_t got = shmq_get(h, buf, sizeof(buf), 0);
		if (got != 40 || tmsg_check_exact(buf, 40, 0, i, 40) != TMSG_OK)
			return snprintf(why, n, "refill: get %u: %zd", i, got), -1;
	}
	struct mp_cfg cfg = mp_cfg(2, 2, 20000);
	cfg.limit_ns = 60 * T_SEC * T_SCALE;
	struct mp_report rep;
	mp_run(h, &cfg, &rep);
	if (rep.created || rep.timed_out || rep.bad_exit || rep.errors || rep.torn || rep.dup ||
	    rep.order || rep.unexpected || rep.missing || rep.received != 20000)
		return snprintf(why, n,
				"clean 2x2 run: received %" PRIu64 " missing %" PRIu64
				" dup %" PRIu64 " torn %" PRIu64 " errors %" PRIu64
				" (last %" PRId64 ") timed out %d bad exits %d %s",
				rep.received, rep.missing, rep.dup, rep.torn, rep.errors,
				rep.last_err, rep.timed_out, rep.bad_exit, rep.bad_exit_desc),
		       -1;
	shmq_queue_close(h);
	return 0;
}

static void *shared_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		perror("torture: mmap");
		exit(2);
	}
	return p;
}

static void usage(void)
{
	fprintf(stderr, "usage: torture [--kills N] [--producers N] [--consumers N] "
			"[--seed S] [--interval-us US]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t kills = 100;
	uint32_t nprod = 3, ncons = 3;
	int64_t interval_us = 5000; /* between kills: uniform in 0 .. 2 x this */
	seed = (uint64_t)t_now() ^ (uint64_t)getpid() << 32;
	static const struct option opts[] = {
		{ "kills", required_argument, NULL, 'k' },
		{ "producers", required_argument, NULL, 'p' },
		{ "consumers", required_argument, NULL, 'c' },
		{ "seed", required_argument, NULL, 's' },
		{ "interval-us", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 },
	};
	for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (o) {
		case 'k': kills = strtoull(optarg, NULL, 0); break;
		case 'p': nprod = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'c': ncons = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'i': interval_us = strtoll(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc || !nprod || !ncons || nprod + ncons > MAX_KIDS || interval_us < 0)
		usage();
	nslots = nprod + ncons;
	max_inc = (uint32_t)(kills + nslots + 1);
	/* Replacements, and every kill of a group, take one incarnation each. */
	sh = shared_map(sizeof(*sh));
	bitmap_bytes = MAX_MSGS / 8;
	attempted = shared_map(bitmap_bytes);
	acked = shared_map(bitmap_bytes);
	delivered = shared_map(bitmap_bytes);
	flights = calloc(max_inc, sizeof(*flights));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("torture: %" PRIu64 " kills, %u producers, %u consumers, seed %#" PRIx64 "\n",
	       kills, nprod, ncons, seed);

	struct shmq_queue_attr a = t_attr(CAPACITY, MSG_MAX);
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	if (r < 0) {
		fprintf(stderr, "torture: create: %d\n", r);
		return 2;
	}
	/* The supervisor keeps both roles through the run, so that nobody sees
	 * end of data (or -EPIPE on put) while every producer (or consumer)
	 * happens to be dead at once. */
	for (uint32_t i = 0; i < nslots; i++) {
		slots[i].prod = i < nprod;
		spawn(q, i);
	}
	uint64_t rng = seed;
	int64_t start = t_now();
	while (st.kills < kills) {
		t_nap((int64_t)(rng_next(&rng) % (uint64_t)(2 * interval_us + 1)) * 1000);
		watch();
		/* One kill in 16 takes every child of one role at once. */
		bool group = rng_next(&rng) % 16 == 0;
		uint32_t victim = (uint32_t)(rng_next(&rng) % nslots);
		bool at_claim = rng_next(&rng) & 1;
		for (uint32_t i = 0; i < nslots && st.kills < kills; i++) {
			if ((group ? slots[i].prod != slots[victim].prod : i != victim) ||
			    slots[i].pid <= 0) /* exited by itself: a failure, not replaced */
				continue;
			kill_one(i, at_claim);
			spawn(q, i);
		}
		st.kills_group += group;
		if (st.bad_exits || st.hangs)
			break; /* failed: stop early and report */
	}
	int64_t run_ns = t_now() - start;

	/* End: producers finish their call and close; then end of data lets
	 * the consumers drain the queue and exit. */
	atomic_store(&sh->stop, 1);
	watch();
	wait_role(true, 10 * T_SEC * T_SCALE);
	shmq_queue_shutdown(q, SHMQ_WR);
	wait_role(false, 10 * T_SEC * T_SCALE);

	/* Accounting over every message number handed out. */
	uint64_t n = atomic_load(&sh->next_seq), sent = 0, put_ok = 0, got = 0, never_sent = 0;
	uint64_t lost_acked = 0, lost_flight = 0;
	for (uint64_t i = 0; i < n && i < MAX_MSGS; i++) {
		bool at = bit_get(attempted, i), ok = bit_get(acked, i), d = bit_get(delivered, i);
		sent += at;
		put_ok += ok;
		got += d;
		never_sent += d && !at;
		lost_acked += ok && !d;
		lost_flight += at && !ok && !d;
	}
	/* Every unacknowledged loss lies in a killed producer's in-flight put. */
	uint64_t lost_in_flights = 0, flight_msgs = 0;
	for (uint32_t f = 0; f < nflights; f++)
		for (uint64_t i = flights[f].seq; i < flights[f].seq + flights[f].n; i++) {
			flight_msgs++;
			lost_in_flights += bit_get(attempted, i) && !bit_get(acked, i) &&
					   !bit_get(delivered, i);
		}
	char why[512] = "";
	int usable = check_usable(q, why, sizeof(why));

	printf("torture: %" PRIu64 " kills in %.1f s: %" PRIu64 " producers, %" PRIu64
	       " consumers; %" PRIu64 " at a claim, %" PRIu64 " at random moments, %" PRIu64
	       " group kills (every child of a role)\n",
	       st.kills, (double)run_ns / T_SEC, st.kills_prod, st.kills_cons, st.kills_hook,
	       st.kills_random, st.kills_group);
	printf("torture: messages moved %" PRIu64 " (put %" PRIu64 ", attempted %" PRIu64
	       "), duplicates %" PRIu64 ", torn %" PRIu64 ", out of order %" PRIu64
	       ", never sent %" PRIu64 "\n",
	       got, put_ok, sent, (uint64_t)sh->dup, (uint64_t)sh->torn, (uint64_t)sh->order,
	       never_sent);
	printf("torture: lost %" PRIu64 ": %" PRIu64 " acknowledged (consumer kills, bound %" PRIu64
	       "), %" PRIu64 " in flight in killed producers' puts (bound %" PRIu64
	       ", all of them inside those puts: %s)\n",
	       lost_acked + lost_flight, lost_acked, st.kills_cons * CONS_BATCH_MAX, lost_flight,
	       flight_msgs, lost_in_flights == lost_flight ? "yes" : "NO");
	printf("torture: calls: timeouts %" PRIu64 ", would-block %" PRIu64 ", other errors %" PRIu64
	       " (last %" PRId64 "), worst return past the timeout %.1f ms, hangs %" PRIu64 "\n",
	       (uint64_t)sh->timeouts, (uint64_t)sh->eagain, (uint64_t)sh->errors,
	       (int64_t)sh->last_err, (double)sh->max_overrun / T_MS,
	       st.hangs + sh->overruns);
	printf("torture: afterwards: %s\n", usable == 0 ? "ring refilled to capacity and drained, "
							"clean 2x2 run of 20000 delivered exactly once"
						      : why);

	const char *fail = NULL;
	if (st.bad_exits)
		fail = st.bad_desc;
	else if (sh->dup || sh->torn || sh->order || never_sent)
		fail = "duplicate, torn, reordered or never-sent messages";
	else if (lost_acked > st.kills_cons * CONS_BATCH_MAX)
		fail = "more acknowledged messages lost than killed consumers held";
	else if (lost_in_flights != lost_flight)
		fail = "a message lost outside any killed producer's in-flight put";
	else if (st.hangs || sh->overruns)
		fail = "a call did not return within its timeout";
	else if (sh->errors)
		fail = "unexpected errors from the queue";
	else if (usable != 0)
		fail = "the queue is not fully usable afterwards";
	else if (got == 0)
		fail = "no message moved";
	printf("torture: %s%s\n", fail ? "FAIL: " : "PASS", fail ? fail : "");
	return fail ? 1 : 0;
}
