/* Shared dicts (include/shmq/dict.h), across real processes: every call and
 * every documented error (-ENOENT, -EEXIST, -EMSGSIZE that copies and removes
 * nothing, -EAGAIN and -ENOENT of cas, -EINVAL of add and of NULL pointers);
 * 0-length and binary keys, 0-length and 1 MiB values; create/open by name
 * from another process, names of another kind, anonymous dicts; len, clear
 * and next (every key exactly once, -EMSGSIZE keeps the cursor, NULL iovecs).
 * Concurrency: walks under a writer that replaces, deletes and inserts keys
 * and grows and shrinks the table (a key present for the whole walk is seen
 * exactly once, never a torn value); the seeds' counter (70 processes each
 * add -1 to 100: exactly 30) and 8 x 10000 adds; cas loops; one winner per
 * insert race; readers that never see a torn value. Memory: fill/clear,
 * overwrite and delete loops in bounded memory (heap stat), idle and killed
 * readers do not block reuse; -ENOSPC keeps every old value; a writer killed
 * with SIGKILL while others go on. Threads: readers and writers in one
 * process (what TSan can follow).
 * Only the parent (the Criterion test process) asserts; children report
 * through shared memory and exit status. */
#include <criterion/criterion.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE)      /* "returns, not a hang" bound */
#define LONG (30 * T_SEC * T_SCALE)     /* a whole multi-process run */
#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define MAXK 80
#define BITS_MAX 80000 /* bitmap of results in shared memory: >= every test's count */

/* ================================================================ helpers == */

static shmq_dict *mkdict(shmq_heap *h, const char *name)
{
	shmq_dict *d = NULL;
	int r = shmq_dict_create(h, name, &d);
	cr_assert_eq(r, 0, "dict_create(%s): %d", name ? name : "NULL", r);
	cr_assert_not_null(d);
	return d;
}

static void set_ok(shmq_dict *d, const void *k, size_t kl, const void *v, size_t vl)
{
	int r = shmq_dict_set(d, k, kl, v, vl);
	cr_assert_eq(r, 0, "set(%.*s, %zu bytes): %d", (int)(kl > 40 ? 40 : kl),
		     (const char *)k, vl, r);
}

/* d[k] is exactly v: its length, its bytes, nothing written past it. */
static void expect(shmq_dict *d, const void *k, size_t kl, const void *v, size_t vl)
{
	unsigned char *buf = malloc(vl + 16);
	cr_assert_not_null(buf);
	memset(buf, 0xee, vl + 16);
	ssize_t n = shmq_dict_get(d, k, kl, buf, vl + 16);
	cr_assert_eq(n, (ssize_t)vl, "get(%.*s): %zd, want %zu", (int)(kl > 40 ? 40 : kl),
		     (const char *)k, n, vl);
	cr_assert(memcmp(buf, v, vl) == 0, "get(%.*s): wrong bytes", (int)(kl > 40 ? 40 : kl),
		  (const char *)k);
	for (size_t i = vl; i < vl + 16; i++)
		cr_assert_eq(buf[i], 0xee, "get(%.*s) wrote past the value",
			     (int)(kl > 40 ? 40 : kl), (const char *)k);
	free(buf);
}

static void expect_absent(shmq_dict *d, const void *k, size_t kl)
{
	unsigned char buf[8];
	ssize_t n = shmq_dict_get(d, k, kl, buf, sizeof(buf));
	cr_assert_eq(n, -ENOENT, "get(%.*s) of an absent key: %zd", (int)(kl > 40 ? 40 : kl),
		     (const char *)k, n);
}

#define SET_S(d, k, v) set_ok((d), (k), strlen(k), (v), strlen(v))
#define EXPECT_S(d, k, v) expect((d), (k), strlen(k), (v), strlen(v))
#define ABSENT_S(d, k) expect_absent((d), (k), strlen(k))

static int64_t get_i64(shmq_dict *d, const char *k)
{
	int64_t v = 0;
	ssize_t n = shmq_dict_get(d, k, strlen(k), &v, sizeof(v));
	cr_assert_eq(n, 8, "get(%s) of a counter: %zd", k, n);
	return v;
}

static void set_i64(shmq_dict *d, const char *k, int64_t v)
{
	set_ok(d, k, strlen(k), &v, sizeof(v));
}

/* Deterministic value bytes of any length (common.h's message filler). */
static void fill_val(void *buf, uint32_t id, uint32_t gen, size_t len)
{
	tmsg_fill(buf, id, gen, len);
}

/* Keys "<c><n>" in a static buffer. */
static size_t mkey(char *buf, size_t cap, char c, unsigned n)
{
	int r = snprintf(buf, cap, "%c%05u", c, n);
	return (size_t)r;
}

/* A small xorshift generator for children and the parent alike. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ------------------------------------------- state shared with children -- */

struct sh;
struct karg {
	struct sh *s;
	int idx;
};

struct sh {
	shmq_heap *h;
	shmq_dict *d;
	char heap_name[64];
	char anon_name[SHMQ_NAME_MAX];
	_Atomic uint32_t ready, go, stop, done;
	_Atomic uint32_t errors;
	_Atomic int32_t last_err, err_where;
	_Atomic uint64_t ops[MAXK];
	_Atomic int64_t result[MAXK];
	_Atomic uint64_t torn, reads, walks, cycles, dups, retries;
	_Atomic uint32_t wins[4096];
	_Atomic int32_t winner[4096];
	/* The steady writer's model of its own keys (kill test). */
	_Atomic int32_t model_seq[128];
	_Atomic uint64_t bits[(BITS_MAX + 63) / 64];
	struct karg args[MAXK];
};

static struct sh *sh_new(uint64_t max_size)
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	s->h = t_mkheap(NULL, max_size);
	s->d = mkdict(s->h, NULL);
	return s;
}

static void sh_free(struct sh *s)
{
	cr_assert_eq(shmq_dict_close(s->d), 0);
	cr_assert_eq(shmq_heap_close(s->h), 0);
	munmap(s, sizeof(*s));
}

static pid_t spawn(struct sh *s, int idx, int (*fn)(void *))
{
	s->args[idx] = (struct karg){ .s = s, .idx = idx };
	pid_t pid = t_fork(fn, &s->args[idx]);
	cr_assert_gt(pid, 0, "fork");
	return pid;
}

/* A child records an unexpected result: the parent asserts errors == 0. */
static void fail(struct sh *s, int where, int err)
{
	s->err_where = where;
	s->last_err = err;
	atomic_fetch_add(&s->errors, 1);
}

/* Mark result v (0 <= v < BITS_MAX) as seen; counts duplicates. */
static void mark(struct sh *s, uint64_t v)
{
	if (v >= BITS_MAX) {
		fail(s, 900, (int)v);
		return;
	}
	uint64_t bit = 1ull << (v % 64);
	if (atomic_fetch_or(&s->bits[v / 64], bit) & bit)
		atomic_fetch_add(&s->dups, 1);
}

static bool marked(struct sh *s, uint64_t v)
{
	return atomic_load(&s->bits[v / 64]) >> (v % 64) & 1;
}

/* Start n children running fn, wait until each is ready, let them go. */
static void run_kids(struct sh *s, int n, int (*fn)(void *), pid_t *pids)
{
	for (int i = 0; i < n; i++)
		pids[i] = spawn(s, i, fn);
	int r = t_await(&s->ready, (uint32_t)n, 10 * LIVE);
	if (r < 0)
		for (int i = 0; i < n; i++)
			t_kill_reap(pids[i]);
	cr_assert_eq(r, 0, "children not ready");
	t_set(&s->go, 1);
}

static int kid_start(struct sh *s)
{
	t_post(&s->ready);
	return t_await(&s->go, 1, 60 * T_SEC);
}

/* Self-checking values for concurrent tests: common.h's messages, producer
 * = the key's number, length 16 .. hi from (key, seq). */
#define SC_LO 16

static size_t sc_fill(void *buf, uint32_t key, uint32_t seq, size_t hi)
{
	size_t len = tmsg_len(key, seq, SC_LO, hi);
	tmsg_fill(buf, key, seq, len);
	return len;
}

/* 0 a whole value of key `key`; otherwise the tmsg error (or 99: another
 * key's value). */
static int sc_check(const void *buf, size_t n, uint32_t nkeys, uint32_t key, size_t hi)
{
	uint32_t p = 0, q = 0;
	enum tmsg_err e = tmsg_check(buf, n, nkeys, SC_LO, hi, &p, &q);
	if (e != TMSG_OK)
		return (int)e;
	return p == key ? 0 : 99;
}

/* ============================================================ basic calls == */

Test(dict, set_get_overwrite_del_len)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	cr_assert_eq(shmq_dict_len(d), 0);
	ABSENT_S(d, "a");
	cr_assert_eq(shmq_dict_del(d, "a", 1), -ENOENT);
	SET_S(d, "a", "hello");
	EXPECT_S(d, "a", "hello");
	cr_assert_eq(shmq_dict_len(d), 1);
	SET_S(d, "a", "hello, a much longer value than before");
	EXPECT_S(d, "a", "hello, a much longer value than before");
	SET_S(d, "a", "x");
	EXPECT_S(d, "a", "x");
	cr_assert_eq(shmq_dict_len(d), 1, "overwrites changed len");
	SET_S(d, "b", "bee");
	SET_S(d, "ab", "a-bee");
	cr_assert_eq(shmq_dict_len(d), 3);
	EXPECT_S(d, "a", "x");
	EXPECT_S(d, "b", "bee");
	EXPECT_S(d, "ab", "a-bee");
	cr_assert_eq(shmq_dict_del(d, "a", 1), 0);
	ABSENT_S(d, "a");
	cr_assert_eq(shmq_dict_del(d, "a", 1), -ENOENT, "deleted twice");
	cr_assert_eq(shmq_dict_del(d, "zzz", 3), -ENOENT);
	cr_assert_eq(shmq_dict_len(d), 2);
	EXPECT_S(d, "ab", "a-bee");
	SET_S(d, "a", "again");
	EXPECT_S(d, "a", "again");
	cr_assert_eq(shmq_dict_len(d), 3);
	/* The value is the caller's copy: changing the buffer after set does
	 * not change the dict. */
	char v[8] = "1234567";
	set_ok(d, "c", 1, v, 7);
	memset(v, 'x', 7);
	expect(d, "c", 1, "1234567", 7);
	cr_assert_eq(shmq_dict_close(d), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(dict, insert_only_when_absent_eexist_changes_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	cr_assert_eq(shmq_dict_insert(d, "k", 1, "first", 5), 0);
	EXPECT_S(d, "k", "first");
	cr_assert_eq(shmq_dict_insert(d, "k", 1, "second", 6), -EEXIST);
	EXPECT_S(d, "k", "first");
	cr_assert_eq(shmq_dict_insert(d, "k", 1, "", 0), -EEXIST);
	EXPECT_S(d, "k", "first");
	cr_assert_eq(shmq_dict_len(d), 1);
	cr_assert_eq(shmq_dict_del(d, "k", 1), 0);
	cr_assert_eq(shmq_dict_insert(d, "k", 1, "third", 5), 0, "insert after del");
	EXPECT_S(d, "k", "third");
	SET_S(d, "k", "set");
	cr_assert_eq(shmq_dict_insert(d, "k", 1, "fourth", 6), -EEXIST);
	EXPECT_S(d, "k", "set");
	cr_assert_eq(shmq_dict_len(d), 1);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, get_and_pop_emsgsize_copy_nothing_remove_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	unsigned char v[100], buf[200];
	fill_val(v, 1, 1, sizeof(v));
	set_ok(d, "k", 1, v, sizeof(v));
	SET_S(d, "other", "o");

	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(shmq_dict_get(d, "k", 1, buf, 99), -EMSGSIZE);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xee, "get -EMSGSIZE wrote byte %zu", i);
	cr_assert_eq(shmq_dict_get(d, "k", 1, buf, 1), -EMSGSIZE);
	cr_assert_eq(shmq_dict_get(d, "k", 1, NULL, 0), -EMSGSIZE);
	cr_assert_eq(shmq_dict_get(d, "k", 1, buf, 0), -EMSGSIZE);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xee, "get -EMSGSIZE wrote byte %zu", i);
	cr_assert_eq(shmq_dict_get(d, "k", 1, buf, 100), 100, "cap exactly the length");
	cr_assert(memcmp(buf, v, 100) == 0);

	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(shmq_dict_pop(d, "k", 1, buf, 99), -EMSGSIZE);
	cr_assert_eq(shmq_dict_pop(d, "k", 1, NULL, 0), -EMSGSIZE);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xee, "pop -EMSGSIZE wrote byte %zu", i);
	cr_assert_eq(shmq_dict_len(d), 2, "pop -EMSGSIZE removed the key");
	expect(d, "k", 1, v, sizeof(v));

	cr_assert_eq(shmq_dict_pop(d, "k", 1, buf, 100), 100);
	cr_assert(memcmp(buf, v, 100) == 0, "pop copied the wrong bytes");
	cr_assert_eq(buf[100], 0xee, "pop wrote past the value");
	expect_absent(d, "k", 1);
	cr_assert_eq(shmq_dict_len(d), 1);
	cr_assert_eq(shmq_dict_pop(d, "k", 1, buf, sizeof(buf)), -ENOENT, "popped twice");
	cr_assert_eq(shmq_dict_pop(d, "nope", 4, buf, sizeof(buf)), -ENOENT);
	cr_assert_eq(shmq_dict_pop(d, "nope", 4, NULL, 0), -ENOENT);
	EXPECT_S(d, "other", "o");
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, cas_replaces_only_an_equal_value)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "one", 3, "two", 3), -ENOENT);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, NULL, 0, "two", 3), -ENOENT);
	ABSENT_S(d, "k");
	cr_assert_eq(shmq_dict_len(d), 0, "cas on a missing key created it");

	SET_S(d, "k", "one");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "two", 3, "three", 5), -EAGAIN);
	EXPECT_S(d, "k", "one");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "on", 2, "three", 5), -EAGAIN, "old a prefix");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "one!", 4, "three", 5), -EAGAIN, "old longer");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, NULL, 0, "three", 5), -EAGAIN, "old empty");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "One", 3, "three", 5), -EAGAIN, "case differs");
	EXPECT_S(d, "k", "one");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "one", 3, "three", 5), 0);
	EXPECT_S(d, "k", "three");
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "one", 3, "four", 4), -EAGAIN, "stale old");
	EXPECT_S(d, "k", "three");
	/* To and from an empty value. */
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "three", 5, NULL, 0), 0);
	expect(d, "k", 1, "", 0);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "x", 1, "y", 1), -EAGAIN);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "", 0, "five", 4), 0);
	EXPECT_S(d, "k", "five");
	/* Long values compared in full: they differ in the last byte only. */
	unsigned char a[3000], b[3000], c[10];
	fill_val(a, 7, 7, sizeof(a));
	memcpy(b, a, sizeof(b));
	b[sizeof(b) - 1] ^= 1;
	fill_val(c, 8, 8, sizeof(c));
	set_ok(d, "long", 4, a, sizeof(a));
	cr_assert_eq(shmq_dict_cas(d, "long", 4, b, sizeof(b), c, sizeof(c)), -EAGAIN);
	expect(d, "long", 4, a, sizeof(a));
	cr_assert_eq(shmq_dict_cas(d, "long", 4, a, sizeof(a), c, sizeof(c)), 0);
	expect(d, "long", 4, c, sizeof(c));
	cr_assert_eq(shmq_dict_len(d), 2);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, add_native_int64_creates_wraps_and_rejects_other_lengths)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	int64_t res = 12345;
	cr_assert_eq(shmq_dict_add(d, "n", 1, 5, &res), 0);
	cr_assert_eq(res, 5, "add to an absent key: %lld", (long long)res);
	cr_assert_eq(get_i64(d, "n"), 5);
	cr_assert_eq(shmq_dict_add(d, "n", 1, -7, &res), 0);
	cr_assert_eq(res, -2);
	cr_assert_eq(shmq_dict_add(d, "n", 1, 0, &res), 0);
	cr_assert_eq(res, -2);
	cr_assert_eq(shmq_dict_add(d, "n", 1, 10, NULL), 0, "result NULL");
	cr_assert_eq(get_i64(d, "n"), 8);
	/* Absent with delta 0: created, with 0. */
	cr_assert_eq(shmq_dict_add(d, "z", 1, 0, &res), 0);
	cr_assert_eq(res, 0);
	cr_assert_eq(get_i64(d, "z"), 0);
	cr_assert_eq(shmq_dict_len(d), 2);
	/* Wraps like unsigned arithmetic. */
	set_i64(d, "w", INT64_MAX);
	cr_assert_eq(shmq_dict_add(d, "w", 1, 1, &res), 0);
	cr_assert_eq(res, INT64_MIN);
	cr_assert_eq(shmq_dict_add(d, "w", 1, -1, &res), 0);
	cr_assert_eq(res, INT64_MAX);
	cr_assert_eq(shmq_dict_add(d, "w", 1, INT64_MIN, &res), 0);
	cr_assert_eq(res, -1);
	/* Any 8 bytes are a native int64. */
	set_ok(d, "raw", 3, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
	int64_t one;
	memcpy(&one, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
	cr_assert_eq(shmq_dict_add(d, "raw", 3, 1, &res), 0);
	cr_assert_eq(res, one + 1);
	/* Not 8 bytes: -EINVAL, nothing changed. */
	SET_S(d, "s", "abc");
	res = 777;
	cr_assert_eq(shmq_dict_add(d, "s", 1, 1, &res), -EINVAL);
	EXPECT_S(d, "s", "abc");
	set_ok(d, "e", 1, NULL, 0);
	cr_assert_eq(shmq_dict_add(d, "e", 1, 1, &res), -EINVAL);
	expect(d, "e", 1, "", 0);
	SET_S(d, "nine", "123456789");
	cr_assert_eq(shmq_dict_add(d, "nine", 4, 1, &res), -EINVAL);
	EXPECT_S(d, "nine", "123456789");
	SET_S(d, "seven", "1234567");
	cr_assert_eq(shmq_dict_add(d, "seven", 5, 1, NULL), -EINVAL);
	EXPECT_S(d, "seven", "1234567");
	cr_assert_eq(shmq_dict_len(d), 8);
	/* Counters and cas agree on the representation. */
	int64_t old = 8, nw = 100;
	cr_assert_eq(shmq_dict_cas(d, "n", 1, &old, 8, &nw, 8), 0);
	cr_assert_eq(shmq_dict_add(d, "n", 1, 1, &res), 0);
	cr_assert_eq(res, 101);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, null_handles_keys_buffers_einval_change_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	shmq_dict *o = NULL;
	unsigned char buf[16];
	int64_t res;
	uint64_t cur = 0;
	struct iovec kv = { buf, sizeof(buf) };
	SET_S(d, "k", "value");

	cr_assert_eq(shmq_dict_create(NULL, "x", &o), -EINVAL);
	cr_assert_eq(shmq_dict_create(h, "x", NULL), -EINVAL);
	cr_assert_eq(shmq_dict_create(h, NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_dict_open(NULL, "x", &o), -EINVAL);
	cr_assert_eq(shmq_dict_open(h, NULL, &o), -EINVAL);
	cr_assert_eq(shmq_dict_open(h, "x", NULL), -EINVAL);
	cr_assert_eq(shmq_dict_close(NULL), -EINVAL);

	cr_assert_eq(shmq_dict_set(NULL, "k", 1, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_set(d, NULL, 1, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_set(d, "k", 1, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_dict_insert(NULL, "n", 1, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_insert(d, NULL, 1, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_insert(d, "n", 1, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_dict_get(NULL, "k", 1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_get(d, NULL, 1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_get(d, "k", 1, NULL, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_pop(NULL, "k", 1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_pop(d, NULL, 1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_pop(d, "k", 1, NULL, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_dict_del(NULL, "k", 1), -EINVAL);
	cr_assert_eq(shmq_dict_del(d, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_dict_cas(NULL, "k", 1, "value", 5, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_cas(d, NULL, 1, "value", 5, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, NULL, 5, "v", 1), -EINVAL);
	cr_assert_eq(shmq_dict_cas(d, "k", 1, "value", 5, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_dict_add(NULL, "c", 1, 1, &res), -EINVAL);
	cr_assert_eq(shmq_dict_add(d, NULL, 1, 1, &res), -EINVAL);
	cr_assert_eq(shmq_dict_len(NULL), -EINVAL);
	cr_assert_eq(shmq_dict_clear(NULL), -EINVAL);
	cr_assert_eq(shmq_dict_next(NULL, &cur, &kv, NULL), -EINVAL);
	cr_assert_eq(shmq_dict_next(d, NULL, &kv, NULL), -EINVAL);

	/* Nothing changed, nothing created. */
	cr_assert_eq(shmq_dict_len(d), 1);
	EXPECT_S(d, "k", "value");
	ABSENT_S(d, "n");
	ABSENT_S(d, "c");
	cr_assert_eq(shmq_dict_open(h, "x", &o), -ENOENT, "a failed create left its name");
	cr_assert_eq(t_hstat(h).objects, 1);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, zero_length_keys_and_values)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	unsigned char buf[32];
	/* The empty key, named by NULL or by any pointer. */
	cr_assert_eq(shmq_dict_set(d, NULL, 0, "empty key", 9), 0);
	expect(d, "", 0, "empty key", 9);
	expect(d, NULL, 0, "empty key", 9);
	expect(d, "ignored", 0, "empty key", 9);
	/* "" and "\0" are different keys. */
	cr_assert_eq(shmq_dict_set(d, "\0", 1, "nul", 3), 0);
	expect(d, "", 0, "empty key", 9);
	expect(d, "\0", 1, "nul", 3);
	cr_assert_eq(shmq_dict_insert(d, "", 0, "x", 1), -EEXIST);
	/* The empty value, read with a NULL buffer of capacity 0 or any buffer. */
	cr_assert_eq(shmq_dict_set(d, "z", 1, NULL, 0), 0);
	cr_assert_eq(shmq_dict_get(d, "z", 1, NULL, 0), 0);
	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(shmq_dict_get(d, "z", 1, buf, sizeof(buf)), 0);
	cr_assert_eq(buf[0], 0xee, "get of an empty value wrote a byte");
	cr_assert_eq(shmq_dict_set(d, "z2", 2, "ignored", 0), 0);
	cr_assert_eq(shmq_dict_get(d, "z2", 2, NULL, 0), 0);
	/* Both empty. */
	cr_assert_eq(shmq_dict_del(d, NULL, 0), 0);
	expect_absent(d, NULL, 0);
	cr_assert_eq(shmq_dict_insert(d, NULL, 0, NULL, 0), 0);
	cr_assert_eq(shmq_dict_get(d, NULL, 0, NULL, 0), 0);
	cr_assert_eq(shmq_dict_len(d), 4);
	/* next reports a 0-length key and value. */
	uint64_t cur = 0;
	int seen_empty = 0, items = 0, r;
	unsigned char kb[16], vb[16];
	for (;;) {
		struct iovec k = { kb, sizeof(kb) }, v = { vb, sizeof(vb) };
		r = shmq_dict_next(d, &cur, &k, &v);
		if (r != 1)
			break;
		items++;
		if (k.iov_len == 0) {
			seen_empty++;
			cr_assert_eq(v.iov_len, 0);
		}
	}
	cr_assert_eq(r, 0, "next: %d", r);
	cr_assert_eq(items, 4);
	cr_assert_eq(seen_empty, 1);
	/* pop and cas of empty values. */
	cr_assert_eq(shmq_dict_pop(d, "z", 1, NULL, 0), 0);
	expect_absent(d, "z", 1);
	cr_assert_eq(shmq_dict_cas(d, NULL, 0, NULL, 0, "full", 4), 0);
	expect(d, NULL, 0, "full", 4);
	cr_assert_eq(shmq_dict_pop(d, NULL, 0, buf, sizeof(buf)), 4);
	cr_assert_eq(shmq_dict_len(d), 2);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, binary_keys_prefixes_and_long_keys_are_distinct, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	static unsigned char big1[100000], big2[100000];
	fill_val(big1, 3, 3, sizeof(big1));
	memcpy(big2, big1, sizeof(big2));
	big2[sizeof(big2) - 1] ^= 0x80;
	struct {
		const void *k;
		size_t kl;
	} keys[] = {
		{ "a", 1 },	      { "a\0", 2 },	    { "ab", 2 },      { "\0a", 2 },
		{ "\xff\xff\xff", 3 }, { "\0\0\0\0\0\0\0", 8 }, { "b", 1 },     { "A", 1 },
		{ big1, sizeof(big1) }, { big2, sizeof(big2) }, { big1, 999 },
	};
	size_t n = sizeof(keys) / sizeof(keys[0]);
	for (size_t i = 0; i < n; i++) {
		char v[16];
		int vl = snprintf(v, sizeof(v), "value %zu", i);
		cr_assert_eq(shmq_dict_insert(d, keys[i].k, keys[i].kl, v, (size_t)vl), 0,
			     "key %zu taken by another", i);
	}
	cr_assert_eq(shmq_dict_len(d), (ssize_t)n);
	for (size_t i = 0; i < n; i++) {
		char v[16];
		int vl = snprintf(v, sizeof(v), "value %zu", i);
		expect(d, keys[i].k, keys[i].kl, v, (size_t)vl);
	}
	/* next gives each key back byte for byte. */
	static unsigned char kb[100001];
	uint64_t cur = 0;
	int seen[16] = { 0 }, r;
	for (;;) {
		struct iovec k = { kb, sizeof(kb) };
		r = shmq_dict_next(d, &cur, &k, NULL);
		if (r != 1)
			break;
		size_t hit = n;
		for (size_t i = 0; i < n; i++)
			if (k.iov_len == keys[i].kl && !memcmp(kb, keys[i].k, k.iov_len))
				hit = i;
		cr_assert_lt(hit, n, "next gave a key that was never set (%zu bytes)", k.iov_len);
		seen[hit]++;
	}
	cr_assert_eq(r, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(seen[i], 1, "key %zu seen %d times", i, seen[i]);
	cr_assert_eq(shmq_dict_del(d, big2, sizeof(big2)), 0);
	expect(d, big1, sizeof(big1), "value 8", 7);
	expect_absent(d, big2, sizeof(big2));
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, one_mebibyte_values, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	size_t big = MiB;
	unsigned char *v = malloc(big + 1), *buf = malloc(big + 1);
	cr_assert(v && buf);
	for (uint32_t i = 0; i < 8; i++) {
		char k[16];
		size_t kl = mkey(k, sizeof(k), 'L', i);
		fill_val(v, i, 1, big);
		set_ok(d, k, kl, v, big);
	}
	cr_assert_eq(shmq_dict_len(d), 8);
	for (uint32_t i = 0; i < 8; i++) {
		char k[16];
		size_t kl = mkey(k, sizeof(k), 'L', i);
		fill_val(v, i, 1, big);
		memset(buf, 0, big);
		cr_assert_eq(shmq_dict_get(d, k, kl, buf, big - 1), -EMSGSIZE);
		cr_assert_eq(shmq_dict_get(d, k, kl, buf, big), (ssize_t)big);
		cr_assert(memcmp(buf, v, big) == 0, "1 MiB value %u came back different", i);
	}
	/* Overwrite with 1 MiB + 1, then pop. */
	fill_val(v, 100, 2, big + 1);
	set_ok(d, "L00003", 6, v, big + 1);
	cr_assert_eq(shmq_dict_pop(d, "L00003", 6, buf, big), -EMSGSIZE);
	cr_assert_eq(shmq_dict_pop(d, "L00003", 6, buf, big + 1), (ssize_t)(big + 1));
	cr_assert(memcmp(buf, v, big + 1) == 0);
	cr_assert_eq(shmq_dict_len(d), 7);
	/* A cas that compares 1 MiB. */
	fill_val(v, 5, 1, big);
	cr_assert_eq(shmq_dict_cas(d, "L00005", 6, v, big, "small", 5), 0);
	EXPECT_S(d, "L00005", "small");
	free(v);
	free(buf);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, len_and_clear, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	cr_assert_eq(shmq_dict_clear(d), 0, "clear of an empty dict");
	cr_assert_eq(shmq_dict_len(d), 0);
	for (unsigned round = 0; round < 3; round++) {
		unsigned n = round == 1 ? 10 : 3000;
		for (unsigned i = 0; i < n; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'k', i);
			set_ok(d, k, kl, k, kl);
			if (i % 97 == 0)
				cr_assert_eq(shmq_dict_len(d), (ssize_t)(i + 1));
		}
		cr_assert_eq(shmq_dict_len(d), (ssize_t)n);
		cr_assert_eq(shmq_dict_clear(d), 0);
		cr_assert_eq(shmq_dict_len(d), 0);
		for (unsigned i = 0; i < n; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'k', i);
			expect_absent(d, k, kl);
		}
		uint64_t cur = 0;
		cr_assert_eq(shmq_dict_next(d, &cur, NULL, NULL), 0, "next after clear");
	}
	cr_assert_eq(shmq_dict_clear(d), 0);
	SET_S(d, "after", "clear");
	EXPECT_S(d, "after", "clear");
	cr_assert_eq(shmq_dict_len(d), 1);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

/* ================================================================== next == */

/* Walk d, every key "k%05u" < n: returns how many items; seen[] counts. */
static unsigned walk_count(shmq_dict *d, unsigned n, unsigned char *seen, bool with_key,
			   bool with_val)
{
	uint64_t cur = 0;
	unsigned items = 0;
	int r;
	memset(seen, 0, n);
	for (;;) {
		char kb[32];
		unsigned char vb[64];
		struct iovec k = { kb, sizeof(kb) - 1 }, v = { vb, sizeof(vb) };
		r = shmq_dict_next(d, &cur, with_key ? &k : NULL, with_val ? &v : NULL);
		if (r != 1)
			break;
		cr_assert_lt(items, 10 * n + 10, "next does not end");
		items++;
		if (!with_key)
			continue;
		kb[k.iov_len] = 0;
		unsigned i;
		cr_assert(k.iov_len == 6 && kb[0] == 'k' && sscanf(kb + 1, "%u", &i) == 1 && i < n,
			  "next gave a key never set: %s", kb);
		cr_assert_lt(seen[i], 255);
		seen[i]++;
		if (with_val) {
			unsigned char want[64];
			size_t wl = i % 50;
			fill_val(want, i, 0, wl);
			cr_assert_eq(v.iov_len, wl, "key %u: value of %zu bytes", i, v.iov_len);
			cr_assert(memcmp(vb, want, wl) == 0, "key %u: wrong value", i);
		}
	}
	cr_assert_eq(r, 0, "next: %d", r);
	return items;
}

Test(dict, next_walks_every_key_exactly_once, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	static unsigned char seen[5000];
	unsigned sizes[] = { 0, 1, 7, 64, 65, 1000, 5000 };
	unsigned have = 0;
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		unsigned n = sizes[s];
		for (; have < n; have++) {
			char k[16];
			unsigned char v[64];
			size_t kl = mkey(k, sizeof(k), 'k', have);
			fill_val(v, have, 0, have % 50);
			set_ok(d, k, kl, v, have % 50);
		}
		for (int mode = 0; mode < 3; mode++) {
			unsigned items = walk_count(d, n, seen, mode != 2, mode != 1);
			cr_assert_eq(items, n, "walk of %u keys gave %u items", n, items);
			if (mode == 2)
				continue;
			for (unsigned i = 0; i < n; i++)
				cr_assert_eq(seen[i], 1, "%u keys: key %u seen %u times", n, i,
					     seen[i]);
		}
	}
	/* Delete every other key (the table shrinks): the rest exactly once. */
	for (unsigned i = 0; i < 5000; i += 2) {
		char k[16];
		size_t kl = mkey(k, sizeof(k), 'k', i);
		cr_assert_eq(shmq_dict_del(d, k, kl), 0);
	}
	cr_assert_eq(walk_count(d, 5000, seen, true, true), 2500);
	for (unsigned i = 0; i < 5000; i++)
		cr_assert_eq(seen[i], i & 1, "after deletes: key %u seen %u times", i, seen[i]);
	/* Two walks at once, interleaved (one goes twice as fast), do not
	 * disturb each other. */
	uint64_t c1 = 0, c2 = 0;
	unsigned n1 = 0, n2 = 0;
	int r1 = 1, r2 = 1;
	while (r1 == 1 || r2 == 1) {
		if (r1 == 1 && (r1 = shmq_dict_next(d, &c1, NULL, NULL)) == 1)
			n1++;
		for (int j = 0; j < 2; j++)
			if (r2 == 1 && (r2 = shmq_dict_next(d, &c2, NULL, NULL)) == 1)
				n2++;
		cr_assert_lt(n1 + n2, 20000u, "next does not end");
	}
	cr_assert_eq(r1, 0);
	cr_assert_eq(r2, 0);
	cr_assert_eq(n1, 2500);
	cr_assert_eq(n2, 2500);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict, next_emsgsize_sets_lengths_keeps_cursor)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	unsigned char v[100], kb[64], vb[200];
	fill_val(v, 9, 9, sizeof(v));
	set_ok(d, "0123456789", 10, v, sizeof(v));
	struct {
		size_t kcap, vcap;
		bool knull, vnull;
	} cases[] = {
		{ 9, 200, false, false },  { 10, 99, false, false }, { 0, 0, false, false },
		{ 9, 0, false, true },	   { 0, 99, true, false },   { 1, 1, false, false },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t cur = 0;
		memset(kb, 0xee, sizeof(kb));
		memset(vb, 0xee, sizeof(vb));
		struct iovec k = { kb, cases[c].kcap }, vv = { vb, cases[c].vcap };
		int r = shmq_dict_next(d, &cur, cases[c].knull ? NULL : &k,
				       cases[c].vnull ? NULL : &vv);
		cr_assert_eq(r, -EMSGSIZE, "case %zu: %d", c, r);
		cr_assert_eq(cur, 0, "case %zu: -EMSGSIZE moved the cursor", c);
		if (!cases[c].knull)
			cr_assert_eq(k.iov_len, 10, "case %zu: key length %zu", c, k.iov_len);
		if (!cases[c].vnull)
			cr_assert_eq(vv.iov_len, 100, "case %zu: value length %zu", c, vv.iov_len);
		for (size_t i = 0; i < sizeof(kb); i++)
			cr_assert_eq(kb[i], 0xee, "case %zu: key byte %zu copied", c, i);
		for (size_t i = 0; i < sizeof(vb); i++)
			cr_assert_eq(vb[i], 0xee, "case %zu: value byte %zu copied", c, i);
		/* The same cursor with exact capacities: the item. */
		k = (struct iovec){ kb, 10 };
		vv = (struct iovec){ vb, 100 };
		cr_assert_eq(shmq_dict_next(d, &cur, &k, &vv), 1);
		cr_assert_eq(k.iov_len, 10);
		cr_assert_eq(vv.iov_len, 100);
		cr_assert(memcmp(kb, "0123456789", 10) == 0);
		cr_assert(memcmp(vb, v, 100) == 0);
		cr_assert_neq(cur, 0, "an item did not advance the cursor");
		cr_assert_eq(shmq_dict_next(d, &cur, &k, &vv), 0);
	}
	/* Many keys of many lengths, buffers grown as -EMSGSIZE asks. */
	enum { N = 1500 };
	static unsigned char seen[N];
	unsigned char *big = malloc(4096);
	cr_assert_not_null(big);
	for (unsigned i = 0; i < N; i++) {
		char k[256];
		size_t kl = 6 + i % 200;
		memset(k, 'p', kl);
		mkey(k, 7, 'x', i);
		k[6] = 'p';
		fill_val(big, i, 1, (i * 37) % 4000);
		set_ok(d, k, kl, big, (i * 37) % 4000);
	}
	cr_assert_eq(shmq_dict_del(d, "0123456789", 10), 0);
	size_t kcap = 4, vcap = 8;
	unsigned char *kbuf = malloc(kcap), *vbuf = malloc(vcap);
	uint64_t cur = 0;
	unsigned items = 0, grows = 0;
	for (;;) {
		struct iovec k = { kbuf, kcap }, vv = { vbuf, vcap };
		int r = shmq_dict_next(d, &cur, &k, &vv);
		if (r == 0)
			break;
		if (r == -EMSGSIZE) {
			uint64_t before = cur;
			cr_assert(k.iov_len > kcap || vv.iov_len > vcap, "-EMSGSIZE but it fits");
			kcap = k.iov_len > kcap ? k.iov_len : kcap;
			vcap = vv.iov_len > vcap ? vv.iov_len : vcap;
			kbuf = realloc(kbuf, kcap);
			vbuf = realloc(vbuf, vcap);
			cr_assert(kbuf && vbuf);
			k = (struct iovec){ kbuf, kcap };
			vv = (struct iovec){ vbuf, vcap };
			r = shmq_dict_next(d, &cur, &k, &vv);
			cr_assert_eq(r, 1, "next after growing the buffers: %d", r);
			cr_assert_neq(cur, before);
			grows++;
		}
		cr_assert_eq(r, 1, "next: %d", r);
		cr_assert_lt(items, N, "next does not end");
		items++;
		unsigned i;
		char tmp[8];
		cr_assert_geq(k.iov_len, 6);
		memcpy(tmp, kbuf, 6);
		tmp[6] = 0;
		cr_assert(tmp[0] == 'x' && sscanf(tmp + 1, "%u", &i) == 1 && i < N, "key %s", tmp);
		cr_assert_eq(k.iov_len, 6 + i % 200, "key %u: length %zu", i, k.iov_len);
		cr_assert_eq(vv.iov_len, (i * 37) % 4000, "key %u: value length", i);
		fill_val(big, i, 1, vv.iov_len);
		cr_assert(memcmp(vbuf, big, vv.iov_len) == 0, "key %u: wrong value", i);
		seen[i]++;
	}
	cr_assert_eq(items, N);
	cr_assert_gt(grows, 5);
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(seen[i], 1, "key %u seen %u times", i, seen[i]);
	free(kbuf);
	free(vbuf);
	free(big);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

/* ===================================================== names and processes == */

Test(dict, named_create_open_names_of_other_kinds)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, "d1"), *d2 = NULL, *o = NULL;
	cr_assert_str_eq(shmq_dict_name(d), "d1");
	cr_assert_eq(shmq_dict_create(h, "d1", &o), -EEXIST);
	cr_assert_eq(shmq_dict_open(h, "d1", &d2), 0);
	cr_assert_neq(d, d2);
	cr_assert_str_eq(shmq_dict_name(d2), "d1");
	SET_S(d, "via", "first handle");
	EXPECT_S(d2, "via", "first handle");
	cr_assert_eq(shmq_dict_del(d2, "via", 3), 0);
	ABSENT_S(d, "via");
	cr_assert_eq(shmq_dict_open(h, "nope", &o), -ENOENT);
	cr_assert_eq(shmq_dict_create(h, "", &o), -EINVAL);
	char over[SHMQ_NAME_MAX + 1];
	memset(over, 'o', SHMQ_NAME_MAX);
	over[SHMQ_NAME_MAX] = 0;
	cr_assert_eq(shmq_dict_create(h, over, &o), -EINVAL);
	over[SHMQ_NAME_MAX - 1] = 0; /* the longest name */
	shmq_dict *lg = mkdict(h, over);
	cr_assert_str_eq(shmq_dict_name(lg), over);
	shmq_dict_close(lg);

	/* Names of other kinds. */
	shmq_lock *l = NULL;
	shmq_list *li = NULL, *li2 = NULL;
	shmq_array *a = NULL;
	cr_assert_eq(shmq_lock_create(h, "lock", 0, &l), 0);
	cr_assert_eq(shmq_list_create(h, "list", &li), 0);
	cr_assert_eq(shmq_array_create(h, "array", 8, 0, &a), 0);
	cr_assert_eq(shmq_dict_open(h, "lock", &o), -EINVAL);
	cr_assert_eq(shmq_dict_open(h, "list", &o), -EINVAL);
	cr_assert_eq(shmq_dict_open(h, "array", &o), -EINVAL);
	cr_assert_eq(shmq_list_open(h, "d1", &li2), -EINVAL);
	cr_assert_eq(shmq_lock_open(h, "d1", &l), -EINVAL);
	cr_assert_eq(shmq_dict_create(h, "lock", &o), -EEXIST);
	cr_assert_eq(shmq_dict_create(h, "list", &o), -EEXIST);
	cr_assert_eq(shmq_list_create(h, "d1", &li2), -EEXIST);
	shmq_lock_close(l);
	shmq_list_close(li);
	shmq_array_close(a);

	/* The heap cannot close under an open dict. */
	cr_assert_eq(shmq_heap_close(h), -EBUSY);
	SET_S(d, "still", "works");

	/* A named dict lives on after its handles close, until removed. */
	cr_assert_eq(shmq_dict_close(d), 0);
	cr_assert_eq(shmq_dict_close(d2), 0);
	d = NULL;
	cr_assert_eq(shmq_dict_open(h, "d1", &d), 0, "named dict gone at its last close");
	EXPECT_S(d, "still", "works");
	cr_assert_eq(shmq_heap_remove(h, "d1"), 0);
	cr_assert_eq(shmq_dict_open(h, "d1", &o), -ENOENT, "removed dict still opens");
	EXPECT_S(d, "still", "works"); /* the old handle keeps working */
	SET_S(d, "after", "remove");
	cr_assert_eq(shmq_dict_close(d), 0);
	cr_assert_eq(shmq_dict_create(h, "d1", &d), 0, "name not free after remove + close");
	cr_assert_eq(shmq_dict_len(d), 0, "a new dict of an old name is not empty");
	cr_assert_eq(shmq_dict_close(d), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(dict, anonymous_dicts_named_uniquely_freed_at_last_close)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	uint32_t objs0 = t_hstat(h).objects;
	shmq_dict *a = mkdict(h, NULL), *b = mkdict(h, NULL), *a2 = NULL, *o = NULL;
	const char *na = shmq_dict_name(a), *nb = shmq_dict_name(b);
	cr_assert_not_null(na);
	cr_assert_not_null(nb);
	size_t la = strnlen(na, SHMQ_NAME_MAX);
	cr_assert(la > 0 && la < SHMQ_NAME_MAX, "anonymous name of %zu bytes", la);
	cr_assert_str_neq(na, nb);
	char name[SHMQ_NAME_MAX];
	memcpy(name, na, la + 1);
	cr_assert_eq(shmq_dict_open(h, name, &a2), 0, "open an anonymous dict by its name");
	SET_S(a, "k", "v");
	EXPECT_S(a2, "k", "v");
	ABSENT_S(b, "k");
	cr_assert_eq(shmq_dict_create(h, name, &o), -EEXIST);
	cr_assert_eq(t_hstat(h).objects, objs0 + 2);
	cr_assert_eq(shmq_dict_close(a), 0);
	cr_assert_eq(t_hstat(h).objects, objs0 + 2, "freed while a handle is open");
	EXPECT_S(a2, "k", "v");
	cr_assert_eq(shmq_dict_close(a2), 0);
	cr_assert_eq(t_hstat(h).objects, objs0 + 1, "anonymous dict not freed at its last close");
	cr_assert_eq(shmq_dict_open(h, name, &o), -ENOENT);
	cr_assert_eq(shmq_dict_close(b), 0);
	cr_assert_eq(t_hstat(h).objects, objs0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* A child opens the heap by name (its own handle, not the inherited one),
 * then the named dict and an anonymous one by the name the parent read. */
static int child_by_name(void *arg)
{
	struct sh *s = arg;
	shmq_heap *h = NULL;
	shmq_dict *d = NULL, *d2 = NULL;
	int r = shmq_heap_open(s->heap_name, 0, &h);
	if (r < 0)
		return fail(s, 1, r), 1;
	if ((r = shmq_dict_open(h, "shared", &d)) < 0)
		return fail(s, 2, r), 2;
	for (unsigned i = 0; i < 100; i++) {
		char k[16], v[16];
		size_t kl = mkey(k, sizeof(k), 'k', i);
		ssize_t n = shmq_dict_get(d, k, kl, v, sizeof(v));
		if (n != (ssize_t)kl || memcmp(v, k, kl))
			return fail(s, 3, (int)n), 3;
	}
	char msg[32];
	int ml = snprintf(msg, sizeof(msg), "hello from %d", (int)getpid());
	if ((r = shmq_dict_set(d, "from-child", 10, msg, (size_t)ml)) < 0)
		return fail(s, 4, r), 4;
	if ((r = shmq_dict_add(d, "counter", 7, 1, NULL)) < 0)
		return fail(s, 5, r), 5;
	if ((r = shmq_dict_del(d, "k00000", 6)) < 0)
		return fail(s, 6, r), 6;
	if ((r = shmq_dict_open(h, s->anon_name, &d2)) < 0)
		return fail(s, 7, r), 7;
	char v[16];
	ssize_t n = shmq_dict_get(d2, "who", 3, v, sizeof(v));
	if (n != 4 || memcmp(v, "anon", 4))
		return fail(s, 8, (int)n), 8;
	if ((r = shmq_dict_set(d2, "child", 5, "was here", 8)) < 0)
		return fail(s, 9, r), 9;
	if (shmq_dict_close(d2) < 0 || shmq_dict_close(d) < 0 || shmq_heap_close(h) < 0)
		return fail(s, 10, -1), 10;
	/* The inherited handles work too. */
	if ((r = shmq_dict_add(s->d, "counter", 7, 10, NULL)) < 0)
		return fail(s, 11, r), 11;
	return 0;
}

Test(dict, another_process_opens_by_name, .timeout = T_TIMEOUT(30))
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	snprintf(s->heap_name, sizeof(s->heap_name), "%.60s", t_name("dict"));
	s->h = t_mkheap(s->heap_name, 0);
	s->d = mkdict(s->h, "shared");
	shmq_dict *anon = mkdict(s->h, NULL);
	snprintf(s->anon_name, sizeof(s->anon_name), "%s", shmq_dict_name(anon));
	SET_S(anon, "who", "anon");
	for (unsigned i = 0; i < 100; i++) {
		char k[16];
		size_t kl = mkey(k, sizeof(k), 'k', i);
		set_ok(s->d, k, kl, k, kl);
	}
	pid_t pid = t_fork(child_by_name, s);
	t_reap_ok(pid, "child", LIVE);
	T_ASSERT_NO_ERRORS(s);
	char msg[32];
	snprintf(msg, sizeof(msg), "hello from %d", (int)pid);
	EXPECT_S(s->d, "from-child", msg);
	cr_assert_eq(get_i64(s->d, "counter"), 11);
	ABSENT_S(s->d, "k00000");
	cr_assert_eq(shmq_dict_len(s->d), 101);
	EXPECT_S(anon, "child", "was here");
	cr_assert_eq(shmq_dict_close(anon), 0);
	cr_assert_eq(shmq_dict_close(s->d), 0);
	cr_assert_eq(shmq_heap_close(s->h), 0);
	cr_assert_eq(shmq_unlink(s->heap_name), 0);
}

/* ========================================================== concurrency == */

/* The seeds' program: d['count'] = 100, 70 processes each d['count'] -= 1
 * (an add of -1, no lock): exactly 30, and the results the processes got
 * are 99 .. 30, each once. */
#define SEEDS_PROCS 70

static int seeds_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	if (kid_start(s) < 0)
		return 1;
	int64_t res = INT64_MIN;
	int r = shmq_dict_add(s->d, "count", 5, -1, &res);
	if (r != 0)
		return fail(s, 1, r), 2;
	s->result[k->idx] = res;
	return 0;
}

Test(dict_mp, seeds_70_processes_add_minus_one_to_100_gives_30, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	for (int round = 0; round < 2; round++) {
		set_i64(s->d, "count", 100);
		SET_S(s->d, "other", "untouched");
		s->ready = s->go = 0;
		pid_t pids[SEEDS_PROCS];
		run_kids(s, SEEDS_PROCS, seeds_worker, pids);
		for (int i = 0; i < SEEDS_PROCS; i++)
			t_reap_ok(pids[i], "seeds worker", LONG);
		T_ASSERT_NO_ERRORS(s);
		cr_assert_eq(get_i64(s->d, "count"), 30, "round %d: count %lld, want 30", round,
			     (long long)get_i64(s->d, "count"));
		bool got[100] = { false };
		for (int i = 0; i < SEEDS_PROCS; i++) {
			int64_t v = s->result[i];
			cr_assert(v >= 30 && v < 100, "a process got %lld", (long long)v);
			cr_assert(!got[v], "two processes got %lld", (long long)v);
			got[v] = true;
		}
		EXPECT_S(s->d, "other", "untouched");
		cr_assert_eq(shmq_dict_len(s->d), 2);
	}
	sh_free(s);
}

/* 8 processes x 10000 adds of 1: exactly 80000, every intermediate result
 * handed out once, each process's results increasing. */
#define ADD_PROCS 8
#define ADD_EACH 10000

static int add_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	char own[16];
	size_t ol = mkey(own, sizeof(own), 'o', (unsigned)k->idx);
	if (kid_start(s) < 0)
		return 1;
	int64_t prev = 0;
	for (int i = 0; i < ADD_EACH; i++) {
		int64_t res = 0;
		int r = shmq_dict_add(s->d, "total", 5, 1, &res);
		if (r != 0)
			return fail(s, 1, r), 2;
		if (res <= prev || res > ADD_PROCS * ADD_EACH)
			return fail(s, 2, (int)res), 3;
		prev = res;
		mark(s, (uint64_t)res - 1);
		/* Keys of its own come and go meanwhile (other stripes). */
		if ((r = shmq_dict_add(s->d, own, ol, 1, NULL)) != 0)
			return fail(s, 3, r), 4;
		if (i % 16 == 0 && (r = shmq_dict_add(s->d, "shared-sub", 10, -2, NULL)) != 0)
			return fail(s, 4, r), 5;
	}
	return 0;
}

Test(dict_mp, add_8_processes_10000_each_exact, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	pid_t pids[ADD_PROCS];
	run_kids(s, ADD_PROCS, add_worker, pids);
	for (int i = 0; i < ADD_PROCS; i++)
		t_reap_ok(pids[i], "adder", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(get_i64(s->d, "total"), ADD_PROCS * ADD_EACH);
	cr_assert_eq(s->dups, 0, "%llu results handed out twice", (unsigned long long)s->dups);
	for (uint64_t v = 0; v < ADD_PROCS * ADD_EACH; v++)
		cr_assert(marked(s, v), "no process got result %llu", (unsigned long long)v + 1);
	for (int i = 0; i < ADD_PROCS; i++) {
		char own[16];
		mkey(own, sizeof(own), 'o', (unsigned)i);
		cr_assert_eq(get_i64(s->d, own), ADD_EACH);
	}
	cr_assert_eq(get_i64(s->d, "shared-sub"), -2 * ADD_PROCS * ((ADD_EACH + 15) / 16));
	cr_assert_eq(shmq_dict_len(s->d), ADD_PROCS + 2);
	sh_free(s);
}

/* cas loops: 4 processes each make 5000 successful increments of a counter
 * kept as decimal text (its length changes): exactly 20000, every new value
 * written by exactly one process. */
#define CAS_PROCS 4
#define CAS_EACH 5000

static int cas_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	if (kid_start(s) < 0)
		return 1;
	int64_t deadline = t_now() + LONG;
	for (int done = 0; done < CAS_EACH;) {
		char cur[32], nxt[32];
		if (t_now() > deadline)
			return fail(s, 1, done), 2;
		ssize_t n = shmq_dict_get(s->d, "ctr", 3, cur, sizeof(cur) - 1);
		if (n <= 0)
			return fail(s, 2, (int)n), 3;
		cur[n] = 0;
		unsigned long long v = strtoull(cur, NULL, 10);
		if ((done + k->idx) % 8 == 0)
			sched_yield(); /* a window for the others */
		int nl = snprintf(nxt, sizeof(nxt), "%llu", v + 1);
		int r = shmq_dict_cas(s->d, "ctr", 3, cur, (size_t)n, nxt, (size_t)nl);
		if (r == 0) {
			mark(s, v);
			done++;
		} else if (r == -EAGAIN) {
			atomic_fetch_add(&s->retries, 1);
		} else {
			return fail(s, 3, r), 4;
		}
	}
	return 0;
}

Test(dict_mp, cas_loops_from_4_processes_count_exactly, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	SET_S(s->d, "ctr", "0");
	pid_t pids[CAS_PROCS];
	run_kids(s, CAS_PROCS, cas_worker, pids);
	for (int i = 0; i < CAS_PROCS; i++)
		t_reap_ok(pids[i], "cas worker", 2 * LONG);
	T_ASSERT_NO_ERRORS(s);
	char want[16];
	snprintf(want, sizeof(want), "%d", CAS_PROCS * CAS_EACH);
	EXPECT_S(s->d, "ctr", want);
	cr_log_info("cas: %llu retries", (unsigned long long)s->retries);
	cr_assert_eq(s->dups, 0, "%llu values written by two processes",
		     (unsigned long long)s->dups);
	for (uint64_t v = 0; v < CAS_PROCS * CAS_EACH; v++)
		cr_assert(marked(s, v), "nobody went from %llu", (unsigned long long)v);
	sh_free(s);
}

/* Every process inserts every key: exactly one wins each, and the value is
 * the winner's. */
#define INS_PROCS 4
#define INS_KEYS 2000

static int insert_racer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	if (kid_start(s) < 0)
		return 1;
	for (unsigned j = 0; j < INS_KEYS; j++) {
		unsigned key = k->idx & 1 ? INS_KEYS - 1 - j : j;
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'r', key);
		int32_t me = k->idx;
		int r = shmq_dict_insert(s->d, kb, kl, &me, sizeof(me));
		if (r == 0) {
			atomic_fetch_add(&s->wins[key], 1);
			s->winner[key] = me;
		} else if (r != -EEXIST) {
			return fail(s, 1, r), 2;
		}
	}
	return 0;
}

Test(dict_mp, insert_races_exactly_one_winner_per_key, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new(0);
	pid_t pids[INS_PROCS];
	run_kids(s, INS_PROCS, insert_racer, pids);
	for (int i = 0; i < INS_PROCS; i++)
		t_reap_ok(pids[i], "inserter", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(shmq_dict_len(s->d), INS_KEYS);
	for (unsigned key = 0; key < INS_KEYS; key++) {
		cr_assert_eq(s->wins[key], 1, "key %u inserted %u times", key, s->wins[key]);
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'r', key);
		int32_t w = s->winner[key];
		expect(s->d, kb, kl, &w, sizeof(w));
	}
	sh_free(s);
}

/* Writers set, insert, delete and pop self-checking values of 16 .. 4096
 * bytes on a few keys; readers get and walk them: never a torn value or a
 * value of another key. */
#define TORN_KEYS 16
#define TORN_HI 4096
#define TORN_WRITERS 2
#define TORN_READERS 2
#define TORN_WRITES 15000

static int torn_writer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char *buf = malloc(TORN_HI);
	uint64_t rs = 0x9e3779b97f4a7c15ull * (uint64_t)(k->idx + 1);
	if (!buf || kid_start(s) < 0)
		return 1;
	int64_t deadline = t_now() + 3 * T_SEC;
	for (uint32_t i = 0; i < TORN_WRITES && t_now() < deadline; i++) {
		uint32_t key = (uint32_t)(rnd(&rs) % TORN_KEYS);
		uint32_t seq = i * TORN_WRITERS + (uint32_t)k->idx;
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 't', key);
		size_t len = sc_fill(buf, key, seq, TORN_HI);
		unsigned op = (unsigned)(rnd(&rs) % 20);
		int r;
		if (op == 0) {
			r = shmq_dict_del(s->d, kb, kl);
			if (r == -ENOENT)
				r = 0;
		} else if (op == 1) {
			r = shmq_dict_insert(s->d, kb, kl, buf, len);
			if (r == -EEXIST)
				r = 0;
		} else if (op == 2) {
			ssize_t n = shmq_dict_pop(s->d, kb, kl, buf, TORN_HI);
			r = n == -ENOENT ? 0 : n < 0 ? (int)n : 0;
			if (n >= 0 && sc_check(buf, (size_t)n, TORN_KEYS, key, TORN_HI) != 0)
				atomic_fetch_add(&s->torn, 1);
		} else {
			r = shmq_dict_set(s->d, kb, kl, buf, len);
		}
		if (r < 0)
			return fail(s, 1, r), 2;
		atomic_fetch_add(&s->ops[k->idx], 1);
	}
	free(buf);
	return 0;
}

static int torn_reader(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char *buf = malloc(TORN_HI);
	if (!buf || kid_start(s) < 0)
		return 1;
	int64_t deadline = t_now() + LONG;
	for (unsigned round = 0; !atomic_load(&s->stop); round++) {
		if (t_now() > deadline)
			return fail(s, 10, 0), 2;
		for (uint32_t key = 0; key < TORN_KEYS; key++) {
			char kb[16];
			size_t kl = mkey(kb, sizeof(kb), 't', key);
			ssize_t n = shmq_dict_get(s->d, kb, kl, buf, TORN_HI);
			if (n == -ENOENT)
				continue;
			if (n < 0)
				return fail(s, 11, (int)n), 3;
			int e = sc_check(buf, (size_t)n, TORN_KEYS, key, TORN_HI);
			if (e != 0) {
				fail(s, 12, e);
				atomic_fetch_add(&s->torn, 1);
			}
			atomic_fetch_add(&s->reads, 1);
		}
		if (round % 8 != 0)
			continue;
		uint64_t cur = 0;
		int r;
		unsigned items = 0;
		for (;;) {
			char kb[16];
			struct iovec kv = { kb, sizeof(kb) - 1 }, vv = { buf, TORN_HI };
			r = shmq_dict_next(s->d, &cur, &kv, &vv);
			if (r != 1)
				break;
			unsigned key;
			kb[kv.iov_len] = 0;
			if (++items > 10 * TORN_KEYS || kb[0] != 't' ||
			    sscanf(kb + 1, "%u", &key) != 1 || key >= TORN_KEYS)
				return fail(s, 13, (int)items), 4;
			int e = sc_check(buf, vv.iov_len, TORN_KEYS, key, TORN_HI);
			if (e != 0) {
				fail(s, 14, e);
				atomic_fetch_add(&s->torn, 1);
			}
			atomic_fetch_add(&s->reads, 1);
		}
		if (r != 0)
			return fail(s, 15, r), 5;
		atomic_fetch_add(&s->walks, 1);
	}
	free(buf);
	return 0;
}

static int torn_kid(void *arg)
{
	struct karg *k = arg;
	return k->idx < TORN_WRITERS ? torn_writer(arg) : torn_reader(arg);
}

Test(dict_mp, readers_never_see_torn_values, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	unsigned char buf[TORN_HI];
	for (uint32_t key = 0; key < TORN_KEYS; key++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 't', key);
		size_t len = sc_fill(buf, key, 0x80000000u + key, TORN_HI);
		set_ok(s->d, kb, kl, buf, len);
	}
	pid_t pids[TORN_WRITERS + TORN_READERS];
	run_kids(s, TORN_WRITERS + TORN_READERS, torn_kid, pids);
	for (int i = 0; i < TORN_WRITERS; i++)
		t_reap_ok(pids[i], "writer", LONG);
	t_set(&s->stop, 1);
	for (int i = TORN_WRITERS; i < TORN_WRITERS + TORN_READERS; i++)
		t_reap_ok(pids[i], "reader", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_log_info("torn: %llu + %llu writes, %llu values read, %llu walks",
		    (unsigned long long)s->ops[0], (unsigned long long)s->ops[1],
		    (unsigned long long)s->reads, (unsigned long long)s->walks);
	cr_assert_eq(s->torn, 0, "%llu torn values", (unsigned long long)s->torn);
	cr_assert_gt(s->reads, 0);
	cr_assert_gt(s->walks, 0);
	/* What is left is whole too, and len agrees with a walk. */
	uint64_t cur = 0;
	ssize_t items = 0;
	while (shmq_dict_next(s->d, &cur, NULL, NULL) == 1)
		items++;
	cr_assert_eq(shmq_dict_len(s->d), items);
	for (uint32_t key = 0; key < TORN_KEYS; key++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 't', key);
		ssize_t n = shmq_dict_get(s->d, kb, kl, buf, sizeof(buf));
		cr_assert(n == -ENOENT || (n > 0 && sc_check(buf, (size_t)n, TORN_KEYS, key,
							       TORN_HI) == 0),
			  "key %u: %zd", key, n);
	}
	sh_free(s);
}

/* Walks while another process replaces the values of the stable keys, sets,
 * deletes, inserts and pops volatile keys, and inserts then deletes
 * thousands of bulk keys (the table grows and shrinks under the walk): every
 * stable key is seen exactly once per walk, every value is whole. */
#define WS_STABLE 300
#define WS_VOLATILE 100
#define WS_BULK 3000
#define WS_HI 256
#define WS_NPROD 20000 /* value "producers": stable i, volatile 1000+i, bulk 10000+i */
#define WS_CYCLES 4

static int ws_key(char *kb, size_t cap, uint32_t prod)
{
	return prod < 1000    ? snprintf(kb, cap, "s%04u", prod)
	       : prod < 10000 ? snprintf(kb, cap, "v%04u", prod - 1000)
			      : snprintf(kb, cap, "b%05u", prod - 10000);
}

static int ws_set(struct sh *s, uint32_t prod, uint32_t seq, int op)
{
	char kb[16];
	unsigned char vb[WS_HI];
	size_t kl = (size_t)ws_key(kb, sizeof(kb), prod);
	size_t len = sc_fill(vb, prod, seq, WS_HI);
	int r;
	switch (op) {
	case 0:
		return shmq_dict_set(s->d, kb, kl, vb, len);
	case 1:
		r = shmq_dict_insert(s->d, kb, kl, vb, len);
		return r == -EEXIST ? 0 : r;
	case 2:
		r = shmq_dict_del(s->d, kb, kl);
		return r == -ENOENT ? 0 : r;
	default: {
		unsigned char old[WS_HI];
		ssize_t n = shmq_dict_pop(s->d, kb, kl, old, sizeof(old));
		if (n >= 0 && sc_check(old, (size_t)n, WS_NPROD, prod, WS_HI) != 0)
			atomic_fetch_add(&s->torn, 1);
		return n == -ENOENT ? 0 : n < 0 ? (int)n : 0;
	}
	}
}

static int ws_churner(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	uint64_t rs = 88172645463325252ull;
	uint32_t seq = 1;
	if (kid_start(s) < 0)
		return 1;
	int64_t deadline = t_now() + 2 * LONG;
	while (!atomic_load(&s->stop)) {
		if (t_now() > deadline)
			return fail(s, 1, 0), 2;
		for (int phase = 0; phase < 2; phase++)
			for (uint32_t j = 0; j < WS_BULK; j++) {
				/* Bulk: inserts, then deletes in another order. */
				uint32_t b = phase ? (j * 7919u) % WS_BULK : j;
				int r = ws_set(s, 10000 + b, seq++, phase ? 2 : 1);
				if (r < 0)
					return fail(s, 2, r), 3;
				if (j % 4)
					continue;
				/* A volatile key, and a stable key's new value. */
				uint32_t v = (uint32_t)(rnd(&rs) % WS_VOLATILE);
				if ((r = ws_set(s, 1000 + v, seq++, (int)(rnd(&rs) % 4))) < 0)
					return fail(s, 4, r), 5;
				uint32_t st = (uint32_t)(rnd(&rs) % WS_STABLE);
				if ((r = ws_set(s, st, seq++, 0)) < 0)
					return fail(s, 6, r), 7;
				atomic_fetch_add(&s->ops[0], 1);
			}
		atomic_fetch_add(&s->cycles, 1);
	}
	return 0;
}

/* One walk; returns 0 or a failure code, stable-key counts in seen[]. */
static int ws_walk(struct sh *s, unsigned char *seen, unsigned *items)
{
	uint64_t cur = 0;
	memset(seen, 0, WS_STABLE);
	*items = 0;
	for (;;) {
		char kb[16];
		unsigned char vb[WS_HI];
		struct iovec kv = { kb, sizeof(kb) - 1 }, vv = { vb, sizeof(vb) };
		int r = shmq_dict_next(s->d, &cur, &kv, &vv);
		if (r == 0)
			return 0;
		if (r != 1)
			return 100 + -r; /* an error */
		if (++*items > 10 * (WS_STABLE + WS_VOLATILE + WS_BULK))
			return 2; /* endless */
		kb[kv.iov_len] = 0;
		unsigned n;
		if (kv.iov_len < 2 || sscanf(kb + 1, "%u", &n) != 1)
			return 3;
		uint32_t prod = kb[0] == 's' && n < WS_STABLE	      ? n
				: kb[0] == 'v' && n < WS_VOLATILE ? 1000 + n
				: kb[0] == 'b' && n < WS_BULK	   ? 10000 + n
								   : UINT32_MAX;
		if (prod == UINT32_MAX)
			return 4; /* a key never set */
		if (sc_check(vb, vv.iov_len, WS_NPROD, prod, WS_HI) != 0) {
			atomic_fetch_add(&s->torn, 1);
			return 5;
		}
		if (prod < WS_STABLE)
			seen[prod]++;
	}
}

Test(dict_mp, walks_under_a_writer_growing_and_shrinking_the_table, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	for (uint32_t i = 0; i < WS_STABLE; i++)
		cr_assert_eq(ws_set(s, i, 0, 0), 0);
	pid_t pid;
	run_kids(s, 1, ws_churner, &pid);
	static unsigned char seen[WS_STABLE];
	unsigned walks = 0, bad = 0, first_bad = 0, bad_code = 0, max_items = 0;
	int64_t deadline = t_now() + 2 * LONG;
	while ((atomic_load(&s->cycles) < WS_CYCLES || walks < 20) && t_now() < deadline &&
	       !s->errors) {
		unsigned items;
		int e = ws_walk(s, seen, &items);
		for (unsigned i = 0; !e && i < WS_STABLE; i++)
			if (seen[i] != 1)
				e = 1000 + seen[i], first_bad = i;
		if (e && !bad++)
			bad_code = (unsigned)e;
		max_items = items > max_items ? items : max_items;
		walks++;
		ssize_t len = shmq_dict_len(s->d);
		if (len < WS_STABLE || len > WS_STABLE + WS_VOLATILE + WS_BULK)
			if (!bad++)
				bad_code = 2000;
	}
	uint32_t cycles = s->cycles;
	t_set(&s->stop, 1);
	cr_log_info("walks: %u walks (up to %u items) during %u grow/shrink cycles", walks,
		    max_items, cycles);
	t_reap_ok(pid, "churner", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_geq(cycles, WS_CYCLES, "the walks did not finish in time (hang?)");
	cr_assert_eq(bad, 0,
		     "%u of %u walks went wrong; first: code %u (1000 + n: stable key %u seen n "
		     "times; 5 torn value; 4 unknown key; 2000 len out of range)",
		     bad, walks, bad_code, first_bad);
	cr_assert_eq(s->torn, 0);
	cr_assert_gt(max_items, WS_STABLE + WS_VOLATILE, "the walks never met the bulk keys");
	/* Quiet now: a walk sees exactly what len says. */
	unsigned items;
	cr_assert_eq(ws_walk(s, seen, &items), 0);
	cr_assert_eq((ssize_t)items, shmq_dict_len(s->d));
	sh_free(s);
}

/* ============================================================ SIGKILL == */

/* A victim writes its keys ("a..."), counts in "acount", until killed. A
 * steady writer keeps its own keys ("b...") and a counter, with a model of
 * what it wrote, until told to stop. */
#define KILL_AKEYS 200
#define KILL_BKEYS 100
#define KILL_HI 512
#define KILL_ROUNDS 3

static int kill_victim(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	uint64_t rs = 0x1234567ull + (uint64_t)k->idx * 77;
	unsigned char vb[KILL_HI];
	for (uint32_t seq = 0;; seq++) {
		uint32_t key = (uint32_t)(rnd(&rs) % KILL_AKEYS);
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'a', key);
		int r;
		switch (rnd(&rs) % 5) {
		case 0:
			r = shmq_dict_del(s->d, kb, kl);
			r = r == -ENOENT ? 0 : r;
			break;
		case 1:
			r = shmq_dict_add(s->d, "acount", 6, 1, NULL);
			break;
		case 2: {
			ssize_t n = shmq_dict_pop(s->d, kb, kl, vb, sizeof(vb));
			r = n == -ENOENT || n >= 0 ? 0 : (int)n;
			break;
		}
		default:
			r = shmq_dict_set(s->d, kb, kl, vb, sc_fill(vb, key, seq, KILL_HI));
		}
		if (r < 0)
			return fail(s, 1, r), 2;
		if (atomic_fetch_add(&s->ops[k->idx], 1) == 300)
			t_post(&s->ready);
	}
}

static int kill_steady(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char vb[KILL_HI];
	int64_t deadline = t_now() + 2 * LONG;
	for (int32_t i = 0; i < KILL_BKEYS; i++)
		s->model_seq[i] = -1;
	t_post(&s->done);
	uint32_t seq = 0;
	int64_t adds = 0;
	while (!atomic_load(&s->stop)) {
		if (t_now() > deadline)
			return fail(s, 20, 0), 2;
		uint32_t key = seq % KILL_BKEYS;
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'b', key);
		int r;
		if (seq / KILL_BKEYS % 3 == 2) {
			r = shmq_dict_del(s->d, kb, kl);
			if (r == 0 && s->model_seq[key] < 0)
				r = -EBADE; /* deleted what was not there */
			if (r == -ENOENT && s->model_seq[key] < 0)
				r = 0;
			s->model_seq[key] = -1;
		} else {
			r = shmq_dict_set(s->d, kb, kl, vb, sc_fill(vb, key, seq, KILL_HI));
			s->model_seq[key] = (int32_t)seq;
		}
		if (r < 0)
			return fail(s, 21, r), 3;
		if ((r = shmq_dict_add(s->d, "bcount", 6, 1, NULL)) < 0)
			return fail(s, 22, r), 4;
		adds++;
		seq++;
	}
	s->result[0] = adds;
	return 0;
}

Test(dict_mp, writer_killed_others_continue_len_right, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	s->args[0] = (struct karg){ .s = s, .idx = 0 };
	pid_t steady = t_fork(kill_steady, &s->args[0]);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	for (int round = 0; round < KILL_ROUNDS; round++) {
		int idx = 1 + round;
		s->args[idx] = (struct karg){ .s = s, .idx = idx };
		pid_t victim = t_fork(kill_victim, &s->args[idx]);
		if (t_await(&s->ready, (uint32_t)round + 1, LONG) < 0)
			t_kill_reap(victim), t_kill_reap(steady);
		cr_assert_eq(s->errors, 0, "victim: %d at %d", s->last_err, s->err_where);
		cr_assert_geq(s->ops[idx], 300, "victim %d made no progress", round);
		/* Somewhere in its stream of calls. */
		t_nap((int64_t)(t_mix((uint64_t)round) % 3000) * 1000);
		t_kill_reap(victim);
	}
	t_set(&s->stop, 1);
	t_reap_ok(steady, "steady writer", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_log_info("kill: victims made %llu, %llu, %llu calls; the steady writer %lld",
		    (unsigned long long)s->ops[1], (unsigned long long)s->ops[2],
		    (unsigned long long)s->ops[3], (long long)s->result[0]);
	/* The steady writer's keys are exactly its model; its counter exact. */
	cr_assert_eq(get_i64(s->d, "bcount"), s->result[0]);
	unsigned char vb[KILL_HI + 16];
	ssize_t want_items = 2; /* the counters */
	for (uint32_t key = 0; key < KILL_BKEYS; key++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'b', key);
		int32_t seq = s->model_seq[key];
		if (seq < 0) {
			expect_absent(s->d, kb, kl);
			continue;
		}
		size_t len = sc_fill(vb, key, (uint32_t)seq, KILL_HI);
		expect(s->d, kb, kl, vb, len);
		want_items++;
	}
	/* The victims' keys: whole values or absent. */
	for (uint32_t key = 0; key < KILL_AKEYS; key++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'a', key);
		ssize_t n = shmq_dict_get(s->d, kb, kl, vb, sizeof(vb));
		cr_assert(n == -ENOENT || n > 0, "key a%u: %zd", key, n);
		if (n > 0) {
			cr_assert_eq(sc_check(vb, (size_t)n, KILL_AKEYS, key, KILL_HI), 0,
				     "key a%u: torn value", key);
			want_items++;
		}
	}
	/* acount is a whole counter (or absent if no victim got that far). */
	int64_t ac = 0;
	ssize_t an = shmq_dict_get(s->d, "acount", 6, &ac, sizeof(ac));
	cr_assert(an == 8 || an == -ENOENT, "acount: %zd", an);
	if (an == -ENOENT)
		want_items--;
	/* len and a walk agree with what is there. */
	uint64_t cur = 0;
	ssize_t items = 0;
	int r;
	while ((r = shmq_dict_next(s->d, &cur, NULL, NULL)) == 1)
		items++;
	cr_assert_eq(r, 0);
	cr_assert_eq(items, want_items, "walk: %zd items, want %zd", items, want_items);
	cr_assert_eq(shmq_dict_len(s->d), want_items, "len %zd, want %zd", shmq_dict_len(s->d),
		     want_items);
	/* Every stripe still takes writes. */
	for (uint32_t key = 0; key < KILL_AKEYS; key++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'a', key);
		set_ok(s->d, kb, kl, "after", 5);
		expect(s->d, kb, kl, "after", 5);
		cr_assert_eq(shmq_dict_del(s->d, kb, kl), 0);
	}
	cr_assert_eq(shmq_dict_add(s->d, "acount", 6, 1, NULL), 0);
	sh_free(s);
}

/* ============================================================= memory == */

/* Memory of removed entries is reused once no process can read it (epochs),
 * and each of the dict's stripes reclaims in batches when it is written: a
 * few thousand more writes, spread over every stripe, let the reclamation
 * catch up before measuring. What is left pending is the same every time. */
#define SETTLE_KEYS 2048

static void settle(shmq_dict *d)
{
	for (int pass = 0; pass < 3; pass++) {
		for (unsigned i = 0; i < SETTLE_KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), '~', i);
			cr_assert_eq(shmq_dict_insert(d, k, kl, "x", 1), 0);
		}
		for (unsigned i = 0; i < SETTLE_KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), '~', i);
			cr_assert_eq(shmq_dict_del(d, k, kl), 0);
		}
	}
}

#define FILL_KEYS 10000
#define FILL_CYCLES (T_SCALE > 1 ? 10 : 20) /* sanitized builds: fewer */

Test(dict_reclaim, fill_clear_cycles_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	uint64_t live[FILL_CYCLES];
	unsigned char v[64];
	for (int c = 0; c < FILL_CYCLES; c++) {
		for (unsigned i = 0; i < FILL_KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'f', i);
			size_t vl = 8 + (i + (unsigned)c) % 56;
			fill_val(v, i, (uint32_t)c, vl);
			set_ok(d, k, kl, v, vl);
		}
		cr_assert_eq(shmq_dict_len(d), FILL_KEYS);
		cr_assert_eq(shmq_dict_clear(d), 0);
		cr_assert_eq(shmq_dict_len(d), 0);
		settle(d);
		live[c] = t_live_bytes(h);
	}
	t_assert_bounded(live, FILL_CYCLES, "fill/clear");
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict_reclaim, overwrite_loops_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	enum { KEYS = 1000, ROUNDS = T_SCALE > 1 ? 15 : 40 };
	uint64_t live[ROUNDS];
	unsigned char v[512];
	for (int c = 0; c < ROUNDS; c++) {
		for (unsigned i = 0; i < KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'w', i);
			size_t vl = 8 + (i * 31 + (unsigned)c * 17) % 500; /* sizes vary */
			fill_val(v, i, (uint32_t)c, vl);
			if (c % 3 == 2) {
				/* Replace through cas too. */
				unsigned char old[512];
				ssize_t n = shmq_dict_get(d, k, kl, old, sizeof(old));
				cr_assert_gt(n, 0);
				cr_assert_eq(shmq_dict_cas(d, k, kl, old, (size_t)n, v, vl), 0);
			} else {
				set_ok(d, k, kl, v, vl);
			}
		}
		settle(d);
		live[c] = t_live_bytes(h);
	}
	t_assert_bounded(live, ROUNDS, "overwrite");
	cr_assert_eq(shmq_dict_len(d), KEYS);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

Test(dict_reclaim, insert_delete_and_pop_loops_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	enum { KEYS = 5000, ROUNDS = T_SCALE > 1 ? 10 : 20 };
	uint64_t live[ROUNDS];
	unsigned char v[128];
	for (int c = 0; c < ROUNDS; c++) {
		for (unsigned i = 0; i < KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'i', i);
			fill_val(v, i, (uint32_t)c, 100);
			cr_assert_eq(shmq_dict_insert(d, k, kl, v, 100), 0);
			if (i % 2)
				cr_assert_eq(shmq_dict_add(d, "cnt", 3, 1, NULL), 0);
		}
		for (unsigned i = 0; i < KEYS; i++) {
			char k[16];
			unsigned j = (i * 7919u) % KEYS; /* another order */
			size_t kl = mkey(k, sizeof(k), 'i', j);
			if (i % 2)
				cr_assert_eq(shmq_dict_del(d, k, kl), 0);
			else
				cr_assert_eq(shmq_dict_pop(d, k, kl, v, sizeof(v)), 100);
		}
		cr_assert_eq(shmq_dict_del(d, "cnt", 3), 0);
		cr_assert_eq(shmq_dict_len(d), 0);
		settle(d);
		live[c] = t_live_bytes(h);
	}
	t_assert_bounded(live, ROUNDS, "insert/delete");
	shmq_dict_close(d);
	shmq_heap_close(h);
}

/* Readers in other processes: an idle one (holding the dict, in no call),
 * and one killed in the middle of its reads, must not keep memory from
 * being reused. */
static int idle_reader(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char buf[1024];
	if (shmq_dict_get(s->d, "w00000", 6, buf, sizeof(buf)) != 300)
		fail(s, 1, 0);
	t_post(&s->ready);
	t_await(&s->stop, 1, 2 * LONG);
	return 0;
}

static int busy_reader(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	static unsigned char buf[64 * 1024];
	for (uint64_t n = 0;; n++) {
		char kb[16];
		size_t kl = mkey(kb, sizeof(kb), 'w', (unsigned)(n % 1000));
		shmq_dict_get(s->d, kb, kl, buf, sizeof(buf));
		if (n % 64 == 0) {
			uint64_t cur = 0;
			struct iovec vv = { buf, sizeof(buf) };
			for (int i = 0; i < 50 && shmq_dict_next(s->d, &cur, NULL, &vv) == 1; i++)
				vv.iov_len = sizeof(buf);
		}
		if (n == 2000)
			t_post(&s->ready);
		if (n % 1024 == 0 && atomic_load(&s->stop))
			return 0; /* never: it is killed first */
	}
}

static void reclaim_with_reader(int (*reader)(void *))
{
	struct sh *s = sh_new(0);
	enum { KEYS = 1000, ROUNDS = T_SCALE > 1 ? 12 : 30 };
	unsigned char v[600];
	for (unsigned i = 0; i < KEYS; i++) {
		char k[16];
		size_t kl = mkey(k, sizeof(k), 'w', i);
		fill_val(v, i, 0, 300);
		set_ok(s->d, k, kl, v, 300);
	}
	s->args[0] = (struct karg){ .s = s, .idx = 0 };
	pid_t pid = t_fork(reader, &s->args[0]);
	int r = t_await(&s->ready, 1, LONG);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "reader not started");
	bool killed = reader == busy_reader;
	if (killed) {
		t_kill_reap(pid); /* somewhere in a get or a walk */
		pid = 0;
	}
	uint64_t live[ROUNDS];
	for (int c = 0; c < ROUNDS; c++) {
		for (unsigned i = 0; i < KEYS; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'w', i);
			size_t vl = 100 + (i * 13 + (unsigned)c * 101) % 500;
			fill_val(v, i, (uint32_t)c + 1, vl);
			set_ok(s->d, k, kl, v, vl);
		}
		settle(s->d);
		live[c] = t_live_bytes(s->h);
	}
	t_set(&s->stop, 1);
	if (pid)
		t_reap_ok(pid, "idle reader", LONG);
	T_ASSERT_NO_ERRORS(s);
	t_assert_bounded(live, ROUNDS, killed ? "with a killed reader" : "with an idle reader");
	sh_free(s);
}

Test(dict_reclaim, idle_reader_process_does_not_block_reuse, .timeout = T_TIMEOUT(120))
{
	reclaim_with_reader(idle_reader);
}

Test(dict_reclaim, reader_killed_mid_read_does_not_block_reuse, .timeout = T_TIMEOUT(120))
{
	reclaim_with_reader(busy_reader);
}

Test(dict_reclaim, dict_with_keys_freed_at_last_close, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *keep = mkdict(h, "keep");
	settle(keep);
	uint64_t base = t_live_bytes(h);
	uint32_t objs = t_hstat(h).objects;
	for (int round = 0; round < 5; round++) {
		shmq_dict *d = mkdict(h, NULL);
		unsigned char v[200];
		for (unsigned i = 0; i < 5000; i++) {
			char k[16];
			size_t kl = mkey(k, sizeof(k), 'z', i);
			fill_val(v, i, 0, 200);
			set_ok(d, k, kl, v, 200);
		}
		cr_assert_gt(t_live_bytes(h), base + 5000 * 200);
		cr_assert_eq(shmq_dict_close(d), 0);
		cr_assert_eq(t_hstat(h).objects, objs);
		settle(keep);
	}
	uint64_t after = t_live_bytes(h);
	cr_assert_leq(after, base + T_RECLAIM_SLACK,
		      "5 anonymous dicts of 5000 keys created and closed: %llu bytes in use, "
		      "%llu before",
		      (unsigned long long)after, (unsigned long long)base);
	shmq_dict_close(keep);
	shmq_heap_close(h);
}

/* =============================================================== ENOSPC == */

#define NOSPC_VAL 1000

static void nospc_key(char *k, size_t cap, size_t *kl, unsigned i)
{
	*kl = mkey(k, cap, 'n', i);
}

/* Fill a SHMQ_HEAP_MIN_MAX heap with values of vlen bytes until set gives
 * -ENOSPC; returns how many keys were stored. */
static unsigned fill_until_full(shmq_dict *d, size_t vlen, unsigned limit)
{
	unsigned char v[NOSPC_VAL];
	unsigned n = 0;
	int r;
	for (;;) {
		cr_assert_lt(n, limit, "a %llu-byte heap holds more than %u values",
			     (unsigned long long)SHMQ_HEAP_MIN_MAX, limit);
		char k[16];
		size_t kl;
		nospc_key(k, sizeof(k), &kl, n);
		fill_val(v, n, 0, vlen);
		r = shmq_dict_set(d, k, kl, v, vlen);
		if (r != 0)
			break;
		n++;
	}
	cr_assert_eq(r, -ENOSPC, "set in a full heap: %d", r);
	return n;
}

static void expect_filled(shmq_dict *d, unsigned n, size_t vlen)
{
	unsigned char v[NOSPC_VAL];
	for (unsigned i = 0; i < n; i++) {
		char k[16];
		size_t kl;
		nospc_key(k, sizeof(k), &kl, i);
		fill_val(v, i, 0, vlen);
		expect(d, k, kl, v, vlen);
	}
	char k[16];
	size_t kl;
	nospc_key(k, sizeof(k), &kl, n);
	expect_absent(d, k, kl); /* the failed set left nothing */
	cr_assert_eq(shmq_dict_len(d), (ssize_t)n);
	uint64_t cur = 0;
	unsigned items = 0;
	while (shmq_dict_next(d, &cur, NULL, NULL) == 1)
		items++;
	cr_assert_eq(items, n);
}

Test(dict_enospc, full_heap_keeps_every_old_value, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, SHMQ_HEAP_MIN_MAX);
	shmq_dict *d = mkdict(h, NULL);
	unsigned n = fill_until_full(d, NOSPC_VAL, 2000);
	cr_assert_geq(n, 100, "only %u values of %d bytes in a %llu-byte heap", n, NOSPC_VAL,
		      (unsigned long long)SHMQ_HEAP_MIN_MAX);
	expect_filled(d, n, NOSPC_VAL);

	/* Calls that would need a huge block fail and change nothing. */
	size_t huge = SHMQ_HEAP_MIN_MAX / 2;
	unsigned char *big = calloc(1, SHMQ_HEAP_MIN_MAX);
	cr_assert_not_null(big);
	uint64_t live = t_live_bytes(h);
	unsigned char old[NOSPC_VAL];
	fill_val(old, 0, 0, NOSPC_VAL);
	cr_assert_eq(shmq_dict_set(d, "n00000", 6, big, huge), -ENOSPC);
	cr_assert_eq(shmq_dict_set(d, "n00000", 6, big, SHMQ_HEAP_MIN_MAX), -ENOSPC);
	cr_assert_eq(shmq_dict_cas(d, "n00000", 6, old, NOSPC_VAL, big, huge), -ENOSPC);
	cr_assert_eq(shmq_dict_insert(d, "new", 3, big, huge), -ENOSPC);
	cr_assert_eq(shmq_dict_set(d, "new", 3, big, huge), -ENOSPC);
	cr_assert_eq(shmq_dict_set(d, big, huge, "v", 1), -ENOSPC, "a huge key");
	cr_assert_eq(t_live_bytes(h), live, "failed calls changed the bytes in use");
	expect_absent(d, "new", 3);
	expect_filled(d, n, NOSPC_VAL);
	free(big);

	/* Deleting makes room again (after reclamation catches up). */
	for (unsigned i = 0; i < n; i += 2) {
		char k[16];
		size_t kl;
		nospc_key(k, sizeof(k), &kl, i);
		cr_assert_eq(shmq_dict_del(d, k, kl), 0);
	}
	for (int i = 0; i < 100; i++) {
		shmq_dict_len(d);
		expect_absent(d, "settle", 6);
	}
	unsigned char v[NOSPC_VAL];
	unsigned ok = 0;
	for (unsigned i = 0; i < n / 2; i++) {
		char k[16];
		int kl = snprintf(k, sizeof(k), "m%05u", i);
		fill_val(v, i, 1, NOSPC_VAL);
		int r = shmq_dict_set(d, k, (size_t)kl, v, NOSPC_VAL);
		cr_assert(r == 0 || r == -ENOSPC, "set after deletes: %d", r);
		ok += r == 0;
	}
	cr_assert_geq(ok, n / 4,
		      "after deleting %u of %u values only %u of %u new ones of the same size fit "
		      "(the deleted entries' memory is never reused?)",
		      n / 2 + n % 2, n, ok, n / 2);
	for (unsigned i = 1; i < n; i += 2) {
		char k[16];
		size_t kl;
		nospc_key(k, sizeof(k), &kl, i);
		fill_val(v, i, 0, NOSPC_VAL);
		expect(d, k, kl, v, NOSPC_VAL);
	}
	shmq_dict_close(d);
	shmq_heap_close(h);
}

/* Small entries: the table itself must grow as the heap fills, and its
 * growth fails too; every old key stays. */
Test(dict_enospc, small_entries_until_full_table_growth_fails_cleanly, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, SHMQ_HEAP_MIN_MAX);
	shmq_dict *d = mkdict(h, NULL);
	unsigned n = fill_until_full(d, 8, 200000);
	cr_assert_geq(n, 1000, "only %u small entries in a %llu-byte heap", n,
		      (unsigned long long)SHMQ_HEAP_MIN_MAX);
	expect_filled(d, n, 8);
	/* Overwrites of the same size, adds of existing counters, dels and pops
	 * still work in a full heap, or fail with -ENOSPC changing nothing. */
	unsigned char v[8];
	for (unsigned i = 0; i < n; i += 97) {
		char k[16];
		size_t kl;
		nospc_key(k, sizeof(k), &kl, i);
		fill_val(v, i, 0, 8);
		int r = shmq_dict_set(d, k, kl, v, 8);
		cr_assert(r == 0 || r == -ENOSPC, "overwrite in a full heap: %d", r);
		r = shmq_dict_add(d, k, kl, 0, NULL);
		cr_assert(r == 0 || r == -ENOSPC, "add 0 in a full heap: %d", r);
		expect(d, k, kl, v, 8);
	}
	cr_assert_eq(shmq_dict_len(d), (ssize_t)n);
	cr_assert_eq(shmq_dict_clear(d), 0);
	cr_assert_eq(shmq_dict_len(d), 0);
	/* Cleared (clear gives the memory back at once when nobody reads): it
	 * fills again, with entries of the same size, to about as much. (The
	 * heap's free blocks serve their own size class only: entries of
	 * another size might not fit.) */
	unsigned n2 = fill_until_full(d, 8, 200000);
	cr_assert_geq(n2, n * 3 / 4, "after clear only %u of %u entries fit again", n2, n);
	expect_filled(d, n2, 8);
	shmq_dict_close(d);
	shmq_heap_close(h);
}

/* ------------------------------------------------------------- threads -- */
/* Readers and writers as threads of one process: what ThreadSanitizer can
 * follow (it does not see across fork). Writers set self-checking values
 * of random lengths, delete, add and sometimes clear; readers get and walk
 * and check every value they see. A torn or freed value fails the check;
 * under TSan a missing happens-before between a publish and a read, or
 * between a reader and the reuse of what it read, fails the run. */
struct thr_arg {
	shmq_dict *d;
	unsigned seed;
	long seen;
	bool bad;
};

static void thr_fill(unsigned char *v, uint32_t key, size_t len)
{
	for (size_t i = 0; i < len; i++)
		v[i] = (unsigned char)(key * 7 + len + i);
}

static bool thr_ok(const unsigned char *v, uint32_t key, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (v[i] != (unsigned char)(key * 7 + len + i))
			return false;
	return true;
}

static void *thr_writer(void *p)
{
	struct thr_arg *a = p;
	unsigned char v[300];
	enum { ROUNDS = T_SCALE > 1 ? 30000 : 150000 };
	for (int i = 0; i < ROUNDS; i++) {
		a->seed = a->seed * 1103515245u + 12345u;
		uint32_t key = (a->seed >> 8) % 500, len = 8 + (a->seed >> 20) % 200;
		unsigned op = (a->seed >> 4) % 16;
		thr_fill(v, key, len);
		if (op < 10) {
			a->bad |= shmq_dict_set(a->d, &key, sizeof(key), v, len) != 0;
		} else if (op < 15) {
			int r = shmq_dict_del(a->d, &key, sizeof(key));
			a->bad |= r != 0 && r != -ENOENT;
		} else if ((a->seed >> 12) % 2000 == 0) {
			a->bad |= shmq_dict_clear(a->d) != 0;
		}
	}
	return NULL;
}

static void *thr_reader(void *p)
{
	struct thr_arg *a = p;
	unsigned char v[300];
	enum { ROUNDS = T_SCALE > 1 ? 50000 : 250000 };
	for (int i = 0; i < ROUNDS && !a->bad; i++) {
		a->seed = a->seed * 1103515245u + 12345u;
		uint32_t key = (a->seed >> 8) % 500;
		ssize_t n = shmq_dict_get(a->d, &key, sizeof(key), v, sizeof(v));
		if (n >= 0) {
			a->seen++;
			a->bad |= !thr_ok(v, key, (size_t)n);
		} else {
			a->bad |= n != -ENOENT;
		}
		if (i % 25000 == 0) {
			uint64_t cursor = 0;
			uint32_t k;
			struct iovec ki = { &k, sizeof(k) }, vi = { v, sizeof(v) };
			int r;
			while ((r = shmq_dict_next(a->d, &cursor, &ki, &vi)) == 1) {
				a->bad |= ki.iov_len != sizeof(k) || !thr_ok(v, k, vi.iov_len);
				ki.iov_len = sizeof(k);
				vi.iov_len = sizeof(v);
			}
			a->bad |= r != 0;
		}
	}
	return NULL;
}

Test(dict_threads, readers_and_writers_in_one_process, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h;
	shmq_dict *d;
	cr_assert_eq(shmq_heap_create(NULL, NULL, &h), 0);
	cr_assert_eq(shmq_dict_create(h, NULL, &d), 0);
	struct thr_arg args[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thr_arg){ .d = d, .seed = (unsigned)i + 1 };
		cr_assert_eq(pthread_create(&t[i], NULL, i < 2 ? thr_writer : thr_reader, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_expect(!args[i].bad, "thread %d saw a wrong result or a torn value", i);
	}
	cr_expect_gt(args[2].seen + args[3].seen, 0, "readers found no key at all");
	ssize_t len = shmq_dict_len(d);
	uint64_t cursor = 0;
	ssize_t walked = 0;
	while (shmq_dict_next(d, &cursor, NULL, NULL) == 1)
		walked++;
	cr_expect_eq(len, walked, "len %zd, a walk found %zd", len, walked);
	cr_assert_eq(shmq_dict_close(d), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* shmq_dict_next_seq: keys sorted by their sequence come in insertion order,
 * through a resize; setting a present key keeps its place, deleting and
 * setting it again moves it to the end. */
struct seq_item {
	uint64_t seq;
	int key;
};

static int by_seq(const void *a, const void *b)
{
	uint64_t x = ((const struct seq_item *)a)->seq, y = ((const struct seq_item *)b)->seq;
	return x < y ? -1 : x > y;
}

Test(dict, next_seq_gives_insertion_order)
{
	enum { N = 3000 };
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_dict *d = mkdict(h, NULL);
	for (int i = 0; i < N; i++) /* keys in a scrambled order: 7i mod N */
		cr_assert_eq(shmq_dict_set(d, &(int){ i * 7 % N }, sizeof(int), &i, sizeof(i)), 0);
	int moved = 5 * 7 % N, kept = 9 * 7 % N;
	cr_assert_eq(shmq_dict_set(d, &kept, sizeof(int), "x", 1), 0, "replace: keeps its place");
	cr_assert_eq(shmq_dict_del(d, &moved, sizeof(int)), 0);
	cr_assert_eq(shmq_dict_set(d, &moved, sizeof(int), "y", 1), 0, "re-inserted: the end");
	static struct seq_item items[N];
	uint64_t cursor = 0;
	int n = 0, r;
	int k;
	char v[8];
	for (;;) {
		struct iovec key = { &k, sizeof(k) }, val = { v, sizeof(v) };
		uint64_t seq;
		if ((r = shmq_dict_next_seq(d, &cursor, &key, &val, &seq)) != 1)
			break;
		cr_assert_lt(n, N);
		items[n++] = (struct seq_item){ seq, k };
	}
	cr_assert_eq(r, 0);
	cr_assert_eq(n, N);
	qsort(items, N, sizeof(*items), by_seq);
	int want = 0;
	for (int i = 0; i < N - 1; i++, want++) {
		if (want * 7 % N == moved)
			want++;
		cr_assert_eq(items[i].key, want * 7 % N, "position %d", i);
	}
	cr_expect_eq(items[N - 1].key, moved);
	shmq_dict_close(d);
	shmq_heap_close(h);
}
