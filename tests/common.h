/* Helpers shared by the shmq test suites and tests/peer.c.
 *
 * Everything here is static inline so each suite compiles it once without
 * unused-function warnings. Nothing here calls Criterion's asserts: children
 * report through exit status and shared memory, and only the parent (the
 * Criterion test process) asserts.
 *
 *  - names:     unique POSIX shm names (pid + counter), unlinked at exit
 *  - messages:  producer id + sequence + length + FNV checksum + payload
 *               derived from (producer, seq); checked on receipt
 *  - sync:      shared anonymous mmap, futex post/await, waiting for a child
 *               to exit / sleep / stop with a deadline
 *  - mp_run():  N producers and M consumers in real processes, exactly-once
 *               and per-producer FIFO bookkeeping, optional crash injection
 *  - Criterion: only where the suite included Criterion first (#ifdef
 *               cr_assert_eq), parent-side helpers that assert: named queues,
 *               heaps (t_mkheap, t_hstat, t_live_bytes, t_assert_bounded),
 *               children that must exit 0 (t_reap_ok, T_ASSERT_NO_ERRORS)
 */
#ifndef SHMQ_TESTS_COMMON_H
#define SHMQ_TESTS_COMMON_H

#include <shmq.h>
#include "testhook.h" /* src/: shmq_test_hook (SHMQ_TEST_HOOKS) */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ sanitizers -- */

#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifndef T_TSAN
#define T_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif

#if T_ASAN
/* Criterion's runner leaks a few bytes at exit: not ours to report. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libcriterion.so\n";
}
#endif

#if T_TSAN
/* Criterion cannot start under TSan as it is (Criterion issue #274: "Could
 * not initialize inheritable arena"): BoxFort maps its arena at a random
 * fixed address in 0x2000'0000'0000..0x6000'0000'0000 and gives up after 10
 * tries, and TSan reserves nearly all of that range. BoxFort draws the address
 * with rand_r(); this build supplies rand_r so the draws fall in the part of
 * TSan's application range that PIE load addresses (0x55..-0x56..) leave
 * free: 0x5660'0000'0000..0x5680'0000'0000. Nothing else in the tests (or
 * in tests/peer, which gets it too and does not use it) calls rand_r. */
int rand_r(unsigned int *seed);
int rand_r(unsigned int *seed)
{
	*seed += 1;
	return 0x366000 + (int)(*seed % 4) * 0x800; /* base = 0x2000'0000'0000 + r << 24 */
}
#endif

/* Sanitized builds run 5-15x slower: scale deadlines (never lower bounds). */
#define T_SCALE ((T_TSAN || T_ASAN) ? 8 : 1)
/* Criterion .timeout for a test that could hang, in seconds. */
#define T_TIMEOUT(s) ((double)(s) * T_SCALE)

/* Skip a test under TSan (use in a test body; needs <criterion/criterion.h>). */
#define T_SKIP_UNDER_TSAN(why)                                  \
	do {                                                    \
		if (T_TSAN)                                     \
			cr_skip("not run under TSan: " why);    \
	} while (0)

/* ------------------------------------------------------------------ time -- */

#define T_MS (1000 * 1000LL)
#define T_SEC (1000 * T_MS)

static inline int64_t t_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * T_SEC + ts.tv_nsec;
}

static inline void t_nap(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / T_SEC, .tv_nsec = ns % T_SEC };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ----------------------------------------------------------------- names -- */

#define T_MAX_NAMES 32
static char t_names[T_MAX_NAMES][64];
static int t_nnames;
static pid_t t_names_owner;

static inline void t_unlink_all(void)
{
	if (getpid() != t_names_owner)
		return; /* a child that somehow ran atexit: not its names */
	for (int i = 0; i < t_nnames; i++)
		shm_unlink(t_names[i]); /* may already be gone: fine */
	t_nnames = 0;
}

/* A fresh shm name for this test process ("/shmq-t-PID-TAG-N"); every name
 * handed out is shm_unlink'ed when the test process exits, whatever path it
 * takes (tests also unlink explicitly where the test is about unlinking). */
static inline const char *t_name(const char *tag)
{
	static int counter;
	if (t_names_owner != getpid()) {
		t_names_owner = getpid();
		t_nnames = 0;
		atexit(t_unlink_all);
	}
	if (t_nnames == T_MAX_NAMES)
		abort(); /* a test asked for absurdly many names */
	char *n = t_names[t_nnames++];
	snprintf(n, sizeof(t_names[0]), "/shmq-t-%d-%s-%d", (int)getpid(), tag, counter++);
	shm_unlink(n); /* a stale one from a reused pid */
	return n;
}

/* --------------------------------------------------------------- hashing -- */

static inline uint64_t t_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}
#define T_FNV_INIT 0xcbf29ce484222325ull

static inline uint64_t t_mix(uint64_t x) /* splitmix64 finaliser */
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* -------------------------------------------------------------- messages -- */

/* A test message of len bytes from producer `prod`, number `seq`:
 *   len >= TMSG_HDR: header { prod, seq, len, fnv32(everything else) }, then
 *                    payload bytes derived from (prod, seq)
 *   len <  TMSG_HDR: only the derived bytes (too short to name its sender:
 *                    checked by position, so only single-producer
 *                    single-consumer streams use such lengths)
 * Lengths are derived from (prod, seq) too, so the receiver knows what length
 * to expect. */
struct tmsg_hdr {
	uint32_t prod;
	uint32_t seq;
	uint32_t len;
	uint32_t sum;
};
#define TMSG_HDR ((size_t)sizeof(struct tmsg_hdr))
#define TMSG_MAX 65536

enum tmsg_err {
	TMSG_OK = 0,
	TMSG_SHORT,   /* shorter than a header where one was expected */
	TMSG_BADPROD, /* producer id out of range */
	TMSG_BADLEN,  /* header length != received length or != expected length */
	TMSG_BADSUM,  /* checksum mismatch: torn or corrupted */
	TMSG_BADBODY, /* payload differs from what (prod, seq) gives */
};

static inline uint8_t tmsg_byte(uint64_t key, size_t i)
{
	return (uint8_t)(t_mix(key + (i >> 3)) >> ((i & 7) * 8));
}

static inline uint64_t tmsg_key(uint32_t prod, uint32_t seq)
{
	return t_mix((uint64_t)prod << 32 | seq);
}

/* Length of message (prod, seq), between lo and hi inclusive. About half the
 * messages are short (one 64-byte cell), the rest spread up to hi. */
static inline size_t tmsg_len(uint32_t prod, uint32_t seq, size_t lo, size_t hi)
{
	uint64_t r = t_mix(tmsg_key(prod, seq) ^ 0x5eed);
	size_t span_hi = hi;
	if ((r & 1) && lo < 48 && hi > 48)
		span_hi = 48;
	return lo + (size_t)((r >> 1) % (span_hi - lo + 1));
}

static inline uint32_t tmsg_sum(const unsigned char *m, size_t len)
{
	const struct tmsg_hdr *h = (const void *)m;
	uint64_t s = t_fnv1a(T_FNV_INIT, &h->prod, 12);
	s = t_fnv1a(s, m + TMSG_HDR, len - TMSG_HDR);
	return (uint32_t)(s ^ (s >> 32));
}

static inline void tmsg_fill(void *buf, uint32_t prod, uint32_t seq, size_t len)
{
	unsigned char *m = buf;
	uint64_t key = tmsg_key(prod, seq);
	for (size_t i = 0; i < len; i++)
		m[i] = tmsg_byte(key, i);
	if (len >= TMSG_HDR) {
		struct tmsg_hdr h = { .prod = prod, .seq = seq, .len = (uint32_t)len };
		memcpy(m, &h, TMSG_HDR);
		h.sum = tmsg_sum(m, len);
		memcpy(m, &h, TMSG_HDR);
	}
}

/* Check a self-describing message (len >= TMSG_HDR); on success *prod and
 * *seq name it. Lengths must match what tmsg_len(lo, hi) gives. */
static inline enum tmsg_err tmsg_check(const void *buf, size_t len, uint32_t nprod, size_t lo,
				       size_t hi, uint32_t *prod, uint32_t *seq)
{
	const unsigned char *m = buf;
	struct tmsg_hdr h;
	if (len < TMSG_HDR)
		return TMSG_SHORT;
	memcpy(&h, m, TMSG_HDR);
	if (h.len != len)
		return TMSG_BADLEN;
	if (h.sum != tmsg_sum(m, len))
		return TMSG_BADSUM;
	if (h.prod >= nprod)
		return TMSG_BADPROD;
	if (tmsg_len(h.prod, h.seq, lo, hi) != len)
		return TMSG_BADLEN;
	uint64_t key = tmsg_key(h.prod, h.seq);
	for (size_t i = TMSG_HDR; i < len; i++)
		if (m[i] != tmsg_byte(key, i))
			return TMSG_BADBODY;
	*prod = h.prod;
	*seq = h.seq;
	return TMSG_OK;
}

/* Check that buf is exactly message (prod, seq) of length len (any length). */
static inline enum tmsg_err tmsg_check_exact(const void *buf, size_t got, uint32_t prod,
					     uint32_t seq, size_t len)
{
	unsigned char want[TMSG_MAX];
	if (got != len)
		return TMSG_BADLEN;
	tmsg_fill(want, prod, seq, len);
	if (len >= TMSG_HDR && tmsg_sum(buf, len) != ((const struct tmsg_hdr *)want)->sum)
		return TMSG_BADSUM;
	return memcmp(buf, want, len) ? TMSG_BADBODY : TMSG_OK;
}

/* ---------------------------------------------------- shared memory, sync -- */

/* Zeroed memory shared with every child forked afterwards. */
static inline void *t_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static inline void t_futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Add one to *w and wake whoever waits on it (shared futex: across fork). */
static inline void t_post(_Atomic uint32_t *w)
{
	atomic_fetch_add(w, 1);
	t_futex_wake(w);
}

static inline void t_set(_Atomic uint32_t *w, uint32_t v)
{
	atomic_store(w, v);
	t_futex_wake(w);
}

/* Wait until *w >= v. timeout_ns < 0: forever. Returns 0 or -ETIMEDOUT. */
static inline int t_await(_Atomic uint32_t *w, uint32_t v, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns < 0 ? INT64_MAX : t_now() + timeout_ns;
	for (;;) {
		uint32_t cur = atomic_load(w);
		if (cur >= v)
			return 0;
		int64_t left = deadline - t_now();
		if (left <= 0)
			return -ETIMEDOUT;
		if (left > T_SEC)
			left = T_SEC;
		struct timespec ts = { .tv_sec = left / T_SEC, .tv_nsec = left % T_SEC };
		syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, cur, &ts, NULL, 0);
	}
}

/* --------------------------------------------------------------- children -- */

/* Fork a child that runs fn(arg) and _exit()s with its return value (never
 * returning into Criterion). The child dies with its parent. */
static inline pid_t t_fork(int (*fn)(void *), void *arg)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(99);
	_exit(fn(arg));
}

static inline int t_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Wait up to timeout_ns for child pid to exit; *status gets its wait status.
 * Returns 0, or -ETIMEDOUT (the child is left running). */
static inline int t_wait(pid_t pid, int *status, int64_t timeout_ns)
{
	int64_t deadline = t_now() + timeout_ns;
	int pfd = t_pidfd_open(pid);
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR)) {
			if (pfd >= 0)
				close(pfd);
			return r == pid ? 0 : -errno;
		}
		int64_t left = deadline - t_now();
		if (left <= 0) {
			if (pfd >= 0)
				close(pfd);
			return -ETIMEDOUT;
		}
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };
			poll(&p, 1, (int)(left / T_MS) + 1);
		} else {
			t_nap(left < T_MS ? left : T_MS);
		}
	}
}

/* Kill (SIGKILL) and reap a child; ignores one that is already gone. */
static inline void t_kill_reap(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Describe a wait status for assertion messages. */
static inline const char *t_status_str(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, n, "status 0x%x", st);
	return buf;
}

/* State letter of a process from /proc/PID/stat ('S' sleeping, 'R', 'T'
 * stopped, 'Z'), or 0 if it cannot be read. */
static inline char t_proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Wait until pid is asleep in the kernel (state S), i.e. blocked in the call
 * it announced just before. Returns 0 or -ETIMEDOUT. Polls every 200 us. */
static inline int t_wait_sleeping(pid_t pid, int64_t timeout_ns)
{
	int64_t deadline = t_now() + timeout_ns;
	while (t_proc_state(pid) != 'S') {
		if (t_now() >= deadline)
			return -ETIMEDOUT;
		t_nap(200 * 1000);
	}
	return 0;
}

/* Wait until pid is stopped (SIGSTOP); reports it through waitpid so the
 * caller later only sees its exit. Returns 0 or -ETIMEDOUT. */
static inline int t_wait_stopped(pid_t pid, int64_t timeout_ns)
{
	int64_t deadline = t_now() + timeout_ns;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG | WUNTRACED);
		if (r == pid)
			return WIFSTOPPED(st) ? 0 : -ECHILD;
		if (t_now() >= deadline)
			return -ETIMEDOUT;
		t_nap(200 * 1000);
	}
}

/* ------------------------------------------------------------ queue bits -- */

static inline struct shmq_queue_attr t_attr(uint32_t capacity, uint32_t msg_max)
{
	struct shmq_queue_attr a;
	shmq_queue_attr_init(&a);
	a.capacity = capacity;
	a.msg_max = msg_max;
	return a;
}

/* Put message (prod, seq) of length len; returns shmq_put's result. */
static inline int t_put_msg(shmq_queue *q, uint32_t prod, uint32_t seq, size_t len,
			    int64_t timeout)
{
	unsigned char buf[TMSG_MAX];
	tmsg_fill(buf, prod, seq, len);
	return shmq_put(q, buf, len, timeout);
}

/* ------------------------------------------- named queues (Criterion) -- */
#ifdef cr_assert_eq
static inline shmq_queue *t_create_named(const char *name, const struct shmq_queue_attr *a)
{
	shmq_queue *q = NULL;
	int r = shmq_queue_create(name, a, &q);
	cr_assert_eq(r, 0, "create %s: %d", name, r);
	return q;
}

/* One checked message from w to r. */
static inline void t_roundtrip(shmq_queue *w, shmq_queue *r, uint32_t seq)
{
	unsigned char buf[512];
	cr_assert_eq(t_put_msg(w, 0, seq, 123, 0), 0);
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), 123);
	cr_assert_eq(tmsg_check_exact(buf, 123, 0, seq, 123), TMSG_OK);
}
#endif

/* --------------------------------------- heaps and children (Criterion) -- */
#ifdef cr_assert_eq
/* A new heap (name NULL: anonymous) of at most max_size bytes. */
static inline shmq_heap *t_mkheap(const char *name, uint64_t max_size)
{
	struct shmq_heap_attr a;
	shmq_heap_attr_init(&a);
	a.max_size = max_size;
	shmq_heap *h = NULL;
	int r = shmq_heap_create(name, &a, &h);
	cr_assert_eq(r, 0, "heap_create(%s, max %llu): %d", name ? name : "NULL",
		     (unsigned long long)max_size, r);
	cr_assert_not_null(h);
	return h;
}

static inline struct shmq_heap_stat t_hstat(shmq_heap *h)
{
	struct shmq_heap_stat st;
	memset(&st, 0xa5, sizeof(st));
	int r = shmq_heap_stat(h, &st);
	cr_assert_eq(r, 0, "heap_stat: %d", r);
	return st;
}

/* Bytes in use: carved and not free. */
static inline uint64_t t_live_bytes(shmq_heap *h)
{
	struct shmq_heap_stat st = t_hstat(h);
	return st.used - st.free;
}

/* Child pid must exit 0 within timeout_ns (killed and reaped if it hangs). */
static inline void t_reap_ok(pid_t pid, const char *who, int64_t timeout_ns)
{
	int st;
	int r = t_wait(pid, &st, timeout_ns);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "%s did not exit (hang)", who);
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", who,
		  t_status_str(st, sb, sizeof(sb)));
}

/* Child pid, SIGKILLed, must be reaped within timeout_ns with that signal. */
static inline void t_reap_killed(pid_t pid, int64_t timeout_ns)
{
	int st;
	int r = t_wait(pid, &st, timeout_ns);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

#define T_RECLAIM_WARMUP 3
#define T_RECLAIM_SLACK (64 * 1024ull)

/* Bytes in use per cycle: live[i] for i >= T_RECLAIM_WARMUP must not exceed
 * what the first cycles reached, plus a little. */
static inline void t_assert_bounded(const uint64_t *live, int n, const char *what)
{
	uint64_t base = 0;
	for (int i = 0; i < T_RECLAIM_WARMUP; i++)
		base = live[i] > base ? live[i] : base;
	for (int i = T_RECLAIM_WARMUP; i < n; i++)
		cr_assert_leq(live[i], base + T_RECLAIM_SLACK,
			      "%s: cycle %d: %llu bytes in use, at most %llu in the first %d cycles "
			      "(cycle %d: %llu): a leak?",
			      what, i, (unsigned long long)live[i], (unsigned long long)base,
			      T_RECLAIM_WARMUP, n - 1, (unsigned long long)live[n - 1]);
}

/* For suites whose shared state s counts children's unexpected results in
 * s->errors, with the last one in s->last_err and where it was seen in
 * s->err_where: the parent asserts there were none. */
#define T_ASSERT_NO_ERRORS(s)                                                             \
	cr_assert_eq((s)->errors, 0, "%u errors in children, last: %d at check %d",       \
		     (s)->errors, (s)->last_err, (s)->err_where)
#endif

/* ---------------------------------------------- multi-process exactly-once -- */

/* What consumers record, in memory shared with the parent. One bit per
 * (producer, seq): set on receipt; a bit already set is a duplicate. */
struct mp_shared {
	_Atomic uint32_t ready; /* children attached, roles dropped */
	_Atomic uint32_t go;
	_Atomic uint64_t received, dup, order, torn, errors, timeouts;
	_Atomic int64_t last_err;  /* last unexpected return value */
	_Atomic uint32_t torn_kind; /* enum tmsg_err of the last torn message */
	_Atomic uint32_t prod_done; /* producers that finished all their puts */
	uint32_t words;             /* 64-bit words per producer */
	_Atomic uint64_t bits[];
};

#define MP_MAX_KIDS 64
enum mp_api {
	MP_COPY,     /* shmq_put / shmq_get */
	MP_BULK,     /* shmq_put_bulk / shmq_get_bulk */
	MP_BURST,    /* shmq_put_burst / shmq_get_burst */
	MP_ZEROCOPY, /* reserve + commit / peek + release (lengths fit one cell) */
};

struct mp_cfg {
	uint32_t nprod, ncons;
	uint32_t per_prod;   /* messages per producer */
	size_t lo, hi;       /* message lengths; lo < TMSG_HDR only for 1p1c */
	int64_t limit_ns;    /* the whole run must end within this */
	/* Crash injection (test_crash.c): the producer / consumer with this
	 * index SIGKILLs itself at the hook point of its kill_at-th operation
	 * (counting from 0). -1: none. */
	int kill_prod;
	uint32_t prod_kill_at;
	int kill_cons;
	uint32_t cons_kill_at;
	/* The parent SIGKILLs producers 0 .. sigkill_prods-1 at a random point
	 * of their run, once consumers got sigkill_after messages in all. Their
	 * deliveries must then be a prefix (0 .. k-1) of what they sent. */
	uint32_t sigkill_prods;
	uint64_t sigkill_after;
	/* API each producer / consumer uses (enum mp_api), by index. A killed
	 * producer that batches must deliver a prefix of its messages. */
	uint8_t prod_api[MP_MAX_KIDS], cons_api[MP_MAX_KIDS];
};

static inline struct mp_cfg mp_cfg(uint32_t nprod, uint32_t ncons, uint32_t total)
{
	return (struct mp_cfg){ .nprod = nprod, .ncons = ncons,
				.per_prod = (total + nprod - 1) / nprod,
				.lo = TMSG_HDR, .hi = 400,
				.limit_ns = 60 * T_SEC * T_SCALE,
				.kill_prod = -1, .kill_cons = -1 };
}

struct mp_report {
	int created;           /* 0 or a creation error, in the caller's hands */
	int timed_out;         /* children had to be killed at the deadline */
	int64_t elapsed_ns;    /* from "go" to the last child's exit */
	int bad_exit;          /* children whose status was unexpected */
	char bad_exit_desc[128];
	uint64_t missing;      /* (prod, seq) expected but never received */
	uint64_t missing_first_prod, missing_first_seq;
	uint64_t unexpected;   /* received though it should not exist */
	uint64_t gaps;         /* SIGKILLed producers: holes before a later delivery */
	uint64_t killed_delivered; /* SIGKILLed producers: messages delivered */
	uint64_t received, dup, order, torn, errors, timeouts;
	int64_t last_err;
	uint32_t torn_kind;
};

struct mp_child {
	shmq_queue *q;
	struct mp_shared *sh;
	const struct mp_cfg *cfg;
	uint32_t id;
	bool shared_handle; /* threads sharing q: the runner closes it */
};

/* The crash hook: counts hook calls of one kind and dies at the chosen one. */
static enum shmq_hook_point mp_hook_point;
static uint32_t mp_hook_left;
static inline void mp_hook(enum shmq_hook_point where)
{
	if (where == mp_hook_point && mp_hook_left-- == 0)
		raise(SIGKILL);
}

/* Put messages seq .. seq+n-1 of producer c->id with the child's API.
 * Returns how many went in (>= 1), or a negative error. */
#define MP_BATCH 16
static inline int mp_put_some(struct mp_child *c, uint32_t seq, uint32_t n, unsigned char *bufs)
{
	const struct mp_cfg *cfg = c->cfg;
	enum mp_api api = (enum mp_api)cfg->prod_api[c->id % MP_MAX_KIDS];
	if (api == MP_COPY || api == MP_ZEROCOPY || n == 1) {
		size_t len = tmsg_len(c->id, seq, cfg->lo, cfg->hi);
		if (api != MP_ZEROCOPY) {
			tmsg_fill(bufs, c->id, seq, len);
			int r = shmq_put(c->q, bufs, len, -1);
			return r < 0 ? r : 1;
		}
		shmq_slot slot;
		int r = shmq_put_reserve(c->q, len, &slot, -1);
		if (r < 0)
			return r;
		if (slot.len != len)
			return -ERANGE;
		tmsg_fill(slot.data, c->id, seq, len);
		r = shmq_put_commit(c->q, &slot);
		return r < 0 ? r : 1;
	}
	struct iovec iov[MP_BATCH];
	for (uint32_t i = 0; i < n; i++) {
		iov[i].iov_base = bufs + (size_t)i * (cfg->hi + 1);
		iov[i].iov_len = tmsg_len(c->id, seq + i, cfg->lo, cfg->hi);
		tmsg_fill(iov[i].iov_base, c->id, seq + i, iov[i].iov_len);
	}
	if (api == MP_BULK) {
		int r = shmq_put_bulk(c->q, iov, n, -1);
		return r < 0 ? r : r == (int)n ? r : -ERANGE; /* all or nothing */
	}
	int r = shmq_put_burst(c->q, iov, n, -1);
	return r == 0 || r > (int)n ? -ERANGE : r;
}

static inline int mp_producer(void *arg)
{
	struct mp_child *c = arg;
	const struct mp_cfg *cfg = c->cfg;
	unsigned char *bufs = malloc(MP_BATCH * (cfg->hi + 1));
	if (!bufs || shmq_queue_shutdown(c->q, SHMQ_RD) < 0)
		return 10;
	t_post(&c->sh->ready);
	t_await(&c->sh->go, 1, -1);
	for (uint32_t seq = 0; seq < cfg->per_prod;) {
		/* Batches of 1 .. MP_BATCH messages, varying. */
		uint32_t n = 1 + (uint32_t)(t_mix(seq ^ (uint64_t)c->id << 40) % MP_BATCH);
		if (n > cfg->per_prod - seq)
			n = cfg->per_prod - seq;
		int r = mp_put_some(c, seq, n, bufs);
		if (r < 0) {
			atomic_store(&c->sh->last_err, r);
			atomic_fetch_add(&c->sh->errors, 1);
			free(bufs);
			return 11;
		}
		seq += (uint32_t)r;
	}
	free(bufs);
	t_post(&c->sh->prod_done);
	/* Close explicitly (EOF by close); the crash suite covers EOF by death. */
	if (c->shared_handle)
		return 0;
	return shmq_queue_close(c->q) == 0 ? 0 : 12;
}

/* Check and record one received message. */
static inline void mp_account(struct mp_child *c, int64_t *last, const void *buf, size_t n)
{
	const struct mp_cfg *cfg = c->cfg;
	struct mp_shared *sh = c->sh;
	uint32_t prod = 0, seq = 0;
	enum tmsg_err e;
	if (cfg->nprod == 1 && cfg->ncons == 1) { /* positional: short lengths allowed */
		seq = (uint32_t)(last[0] + 1);
		e = tmsg_check_exact(buf, n, 0, seq, tmsg_len(0, seq, cfg->lo, cfg->hi));
	} else {
		e = tmsg_check(buf, n, cfg->nprod, cfg->lo, cfg->hi, &prod, &seq);
	}
	atomic_fetch_add(&sh->received, 1);
	if (e != TMSG_OK) {
		atomic_store(&sh->torn_kind, e);
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	if ((int64_t)seq <= last[prod])
		atomic_fetch_add(&sh->order, 1);
	last[prod] = seq;
	if (seq >= sh->words * 64u) {
		atomic_fetch_add(&sh->torn, 1);
		return;
	}
	uint64_t bit = 1ull << (seq % 64);
	if (atomic_fetch_or(&sh->bits[prod * sh->words + seq / 64], bit) & bit)
		atomic_fetch_add(&sh->dup, 1);
}

/* Get some messages with the child's API and account for them. Returns how
 * many, or a negative error (-EPIPE: end of data). A bulk get at end of data
 * with fewer than n messages left gives -EPIPE and leaves them queued: the
 * caller drains them one by one (*drain). */
static inline int mp_get_some(struct mp_child *c, int64_t *last, unsigned char *bufs,
			      bool *drain)
{
	const struct mp_cfg *cfg = c->cfg;
	enum mp_api api = (enum mp_api)cfg->cons_api[c->id % MP_MAX_KIDS];
	if (*drain || api == MP_COPY) {
		ssize_t n = shmq_get(c->q, bufs, TMSG_MAX, -1);
		if (n < 0)
			return (int)n;
		mp_account(c, last, bufs, (size_t)n);
		return 1;
	}
	if (api == MP_ZEROCOPY) {
		shmq_slot slot;
		int r = shmq_get_peek(c->q, &slot, -1);
		if (r < 0)
			return r;
		mp_account(c, last, slot.data, slot.len);
		r = shmq_get_release(c->q, &slot);
		return r < 0 ? r : 1;
	}
	struct iovec iov[MP_BATCH];
	unsigned n = api == MP_BULK ? 4 : MP_BATCH;
	for (unsigned i = 0; i < n; i++)
		iov[i] = (struct iovec){ .iov_base = bufs + (size_t)i * (cfg->hi + 1),
					 .iov_len = cfg->hi + 1 };
	int r = api == MP_BULK ? shmq_get_bulk(c->q, iov, n, -1)
			       : shmq_get_burst(c->q, iov, n, -1);
	if (r == -EPIPE && api == MP_BULK) {
		*drain = true;
		return 0;
	}
	if (r < 0)
		return r;
	if (r == 0 || r > (int)n || (api == MP_BULK && r != (int)n))
		return -ERANGE;
	for (int i = 0; i < r; i++)
		mp_account(c, last, iov[i].iov_base, iov[i].iov_len);
	return r;
}

static inline int mp_consumer(void *arg)
{
	struct mp_child *c = arg;
	const struct mp_cfg *cfg = c->cfg;
	struct mp_shared *sh = c->sh;
	int64_t *last = calloc(cfg->nprod, sizeof(*last));
	size_t bsize = MP_BATCH * (cfg->hi + 1);
	unsigned char *bufs = malloc(bsize > TMSG_MAX ? bsize : TMSG_MAX);
	bool drain = false;

	if (!last || !bufs || shmq_queue_shutdown(c->q, SHMQ_WR) < 0)
		return 20;
	for (uint32_t p = 0; p < cfg->nprod; p++)
		last[p] = -1;
	t_post(&sh->ready);
	t_await(&sh->go, 1, -1);
	int r;
	while ((r = mp_get_some(c, last, bufs, &drain)) >= 0)
		;
	free(last);
	free(bufs);
	if (r != -EPIPE) {
		atomic_store(&sh->last_err, r);
		atomic_fetch_add(&sh->errors, 1);
		if (!c->shared_handle) /* threads: let producers see -EPIPE */
			shmq_queue_close(c->q);
		return 21;
	}
	if (c->shared_handle)
		return 0;
	return shmq_queue_close(c->q) == 0 ? 0 : 22;
}

/* Hooked variants: arm the crash hook, then run the normal loop. */
static inline int mp_producer_dies(void *arg)
{
	struct mp_child *c = arg;
	mp_hook_point = SHMQ_HOOK_PUT_CLAIMED;
	mp_hook_left = c->cfg->prod_kill_at;
	shmq_test_hook = mp_hook;
	mp_producer(arg);
	return 13; /* should have died */
}

static inline int mp_consumer_dies(void *arg)
{
	struct mp_child *c = arg;
	mp_hook_point = SHMQ_HOOK_GET_CLAIMED;
	mp_hook_left = c->cfg->cons_kill_at;
	shmq_test_hook = mp_hook;
	mp_consumer(arg);
	return 23; /* should have died */
}

/* Run cfg on queue q (which the caller created, RDWR). The caller's handle is
 * shut down to no role once every child holds its own, and left open (roles
 * 0) so the caller can inspect or reopen the queue afterwards. Expected
 * messages: every (p, seq < per_prod), except that a killed producer only
 * delivers seq < prod_kill_at. */
static inline size_t mp_shared_size(const struct mp_cfg *cfg)
{
	return sizeof(struct mp_shared) + (size_t)cfg->nprod * ((cfg->per_prod + 63) / 64) * 8;
}

static inline struct mp_shared *mp_shared_new(const struct mp_cfg *cfg, struct mp_report *rep)
{
	struct mp_shared *sh = t_shared(mp_shared_size(cfg));
	memset(rep, 0, sizeof(*rep));
	if (!sh || cfg->nprod + cfg->ncons > MP_MAX_KIDS) {
		rep->created = -ENOMEM;
		return NULL;
	}
	sh->words = (cfg->per_prod + 63) / 64;
	return sh;
}

static inline void mp_collect(struct mp_shared *sh, const struct mp_cfg *cfg,
			      struct mp_report *rep);

static inline void mp_run(shmq_queue *q, const struct mp_cfg *cfg, struct mp_report *rep)
{
	struct mp_shared *sh = mp_shared_new(cfg, rep);
	uint32_t n = cfg->nprod + cfg->ncons;
	pid_t pids[MP_MAX_KIDS];
	struct mp_child kids[MP_MAX_KIDS];

	if (!sh)
		return;
	for (uint32_t i = 0; i < n; i++) {
		bool prod = i < cfg->nprod;
		uint32_t id = prod ? i : i - cfg->nprod;
		kids[i] = (struct mp_child){ .q = q, .sh = sh, .cfg = cfg, .id = id };
		int (*fn)(void *) = prod ? mp_producer : mp_consumer;
		if (prod && (int)id == cfg->kill_prod)
			fn = mp_producer_dies;
		if (!prod && (int)id == cfg->kill_cons)
			fn = mp_consumer_dies;
		pids[i] = t_fork(fn, &kids[i]);
	}
	/* Every child holds its handle before the parent drops its roles, or a
	 * consumer could see "no producer left" before producers attach. */
	if (t_await(&sh->ready, n, 20 * T_SEC * T_SCALE) < 0)
		rep->timed_out = 1;
	shmq_queue_shutdown(q, SHMQ_RDWR);
	int64_t start = t_now();
	t_set(&sh->go, 1);
	if (cfg->sigkill_prods) {
		while (atomic_load(&sh->received) < cfg->sigkill_after &&
		       t_now() - start < cfg->limit_ns)
			t_nap(100 * 1000);
		for (uint32_t i = 0; i < cfg->sigkill_prods; i++)
			kill(pids[i], SIGKILL);
	}

	for (uint32_t i = 0; i < n; i++) {
		int st = 0;
		int64_t left = start + cfg->limit_ns - t_now();
		if (rep->timed_out || t_wait(pids[i], &st, left > 0 ? left : 0) < 0) {
			rep->timed_out = 1;
			t_kill_reap(pids[i]);
			continue;
		}
		bool prod = i < cfg->nprod;
		uint32_t id = prod ? i : i - cfg->nprod;
		bool dies = (prod && (int)id == cfg->kill_prod) || (!prod && (int)id == cfg->kill_cons);
		bool ok = dies ? (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			       : (WIFEXITED(st) && WEXITSTATUS(st) == 0);
		if (prod && id < cfg->sigkill_prods) /* killed, unless it was done */
			ok = (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ||
			     (WIFEXITED(st) && WEXITSTATUS(st) == 0);
		if (!ok && !rep->bad_exit++) {
			char sb[32];
			snprintf(rep->bad_exit_desc, sizeof(rep->bad_exit_desc), "%s %u: %s",
				 prod ? "producer" : "consumer", id,
				 t_status_str(st, sb, sizeof(sb)));
		}
	}
	rep->elapsed_ns = t_now() - start;
	mp_collect(sh, cfg, rep);
}

/* Fill *rep from what consumers recorded, and free sh. */
static inline void mp_collect(struct mp_shared *sh, const struct mp_cfg *cfg,
			      struct mp_report *rep)
{
	uint32_t words = sh->words;
	for (uint32_t p = 0; p < cfg->nprod; p++) {
		uint32_t expect = (int)p == cfg->kill_prod ? cfg->prod_kill_at : cfg->per_prod;
		bool batches = cfg->prod_api[p] == MP_BULK || cfg->prod_api[p] == MP_BURST;
		if (p < cfg->sigkill_prods || ((int)p == cfg->kill_prod && batches)) {
			/* A prefix, no holes: a batching producer's hook count is
			 * not a message count, and it loses its whole batch. */
			bool hole = false;
			for (uint32_t s = 0; s < words * 64; s++) {
				bool got = atomic_load(&sh->bits[p * words + s / 64]) >> (s % 64) & 1;
				rep->killed_delivered += got;
				rep->gaps += got && hole;
				rep->unexpected += got && s >= cfg->per_prod;
				hole |= !got;
			}
			continue;
		}
		for (uint32_t s = 0; s < words * 64; s++) {
			bool got = atomic_load(&sh->bits[p * words + s / 64]) >> (s % 64) & 1;
			if (s < expect && !got && !rep->missing++) {
				rep->missing_first_prod = p;
				rep->missing_first_seq = s;
			}
			if (s >= expect && got)
				rep->unexpected++;
		}
	}
	rep->received = sh->received;
	rep->dup = sh->dup;
	rep->order = sh->order;
	rep->torn = sh->torn;
	rep->errors = sh->errors;
	rep->timeouts = sh->timeouts;
	rep->last_err = sh->last_err;
	rep->torn_kind = sh->torn_kind;
	munmap(sh, mp_shared_size(cfg));
}

/* The same with threads of this process instead of processes: each thread
 * opens its own handle (shared == false) or producers share one WR handle
 * and consumers one RD handle (shared == true). Every call on a handle may
 * run concurrently from any thread (shmq.h). q is left open with roles 0. */
struct mp_thread {
	pthread_t tid;
	struct mp_child c;
	bool prod;
	int ret;
};

static inline void *mp_thread_main(void *arg)
{
	struct mp_thread *t = arg;
	t->ret = t->prod ? mp_producer(&t->c) : mp_consumer(&t->c);
	return NULL;
}

static inline void mp_run_threads(shmq_queue *q, const struct mp_cfg *cfg, bool shared,
				  struct mp_report *rep)
{
	struct mp_shared *sh = mp_shared_new(cfg, rep);
	uint32_t n = cfg->nprod + cfg->ncons;
	struct mp_thread *th = calloc(n, sizeof(*th));
	shmq_queue *wq = NULL, *rq = NULL;

	if (!sh || !th) {
		rep->created = -ENOMEM;
		free(th);
		return;
	}
	int fd = shmq_queue_fd(q);
	if (shared && (shmq_queue_open_fd(fd, SHMQ_WR, &wq) < 0 ||
		       shmq_queue_open_fd(fd, SHMQ_RD, &rq) < 0)) {
		rep->created = -EIO;
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		bool prod = i < cfg->nprod;
		shmq_queue *h = prod ? wq : rq;
		if (!shared && shmq_queue_open_fd(fd, prod ? SHMQ_WR : SHMQ_RD, &h) < 0) {
			rep->created = -EIO;
			return;
		}
		th[i].prod = prod;
		th[i].c = (struct mp_child){ .q = h, .sh = sh, .cfg = cfg, .shared_handle = shared,
					     .id = prod ? i : i - cfg->nprod };
	}
	shmq_queue_shutdown(q, SHMQ_RDWR); /* before any thread could see EOF */
	for (uint32_t i = 0; i < n; i++)
		pthread_create(&th[i].tid, NULL, mp_thread_main, &th[i]);
	int64_t start = t_now();
	t_await(&sh->ready, n, -1);
	t_set(&sh->go, 1);
	for (uint32_t i = 0; i < n; i++) {
		if (i == cfg->nprod && shared)
			shmq_queue_close(wq); /* producers done: EOF for consumers */
		pthread_join(th[i].tid, NULL);
		if (th[i].ret != 0 && !rep->bad_exit++)
			snprintf(rep->bad_exit_desc, sizeof(rep->bad_exit_desc),
				 "thread %u returned %d", i, th[i].ret);
	}
	if (shared)
		shmq_queue_close(rq);
	rep->elapsed_ns = t_now() - start;
	free(th);
	mp_collect(sh, cfg, rep);
}

/* Assert the common part of a report (use in the parent; needs Criterion). */
#define MP_ASSERT_CLEAN(rep)                                                              \
	do {                                                                              \
		cr_assert_eq((rep).timed_out, 0, "run did not finish in time (hang?)");   \
		cr_assert_eq((rep).bad_exit, 0, "%d children exited badly, first: %s",    \
			     (rep).bad_exit, (rep).bad_exit_desc);                       \
		cr_assert_eq((rep).errors, 0, "unexpected queue errors, last %lld",      \
			     (long long)(rep).last_err);                                 \
		cr_assert_eq((rep).torn, 0, "%llu torn/corrupt messages (kind %u)",       \
			     (unsigned long long)(rep).torn, (rep).torn_kind);           \
		cr_assert_eq((rep).dup, 0, "%llu duplicates", (unsigned long long)(rep).dup); \
		cr_assert_eq((rep).order, 0, "%llu per-producer FIFO violations",        \
			     (unsigned long long)(rep).order);                           \
		cr_assert_eq((rep).unexpected, 0, "%llu messages that were never sent",  \
			     (unsigned long long)(rep).unexpected);                      \
	} while (0)

/* Run cfg on q and assert exactly-once, whole, per-producer FIFO delivery of
 * every message; closes q (use in the parent; needs Criterion). */
#define MP_RUN_AND_CHECK(q, cfg)                                                          \
	do {                                                                              \
		shmq_queue *q_ = (q); /* evaluated once: it may be a creating call */    \
		struct mp_report rep_;                                                    \
		mp_run(q_, (cfg), &rep_);                                                 \
		cr_assert_eq(rep_.created, 0);                                            \
		MP_ASSERT_CLEAN(rep_);                                                    \
		cr_assert_eq(rep_.missing, 0, "%llu messages lost, first: producer %llu seq %llu", \
			     (unsigned long long)rep_.missing,                            \
			     (unsigned long long)rep_.missing_first_prod,                 \
			     (unsigned long long)rep_.missing_first_seq);                 \
		cr_assert_eq(rep_.received, (uint64_t)(cfg)->nprod * (cfg)->per_prod);    \
		shmq_queue_close(q_);                                                     \
	} while (0)

#endif
