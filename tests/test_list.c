/* Shared lists (include/shmq/dict.h), across real processes: Python's list
 * semantics checked against a model (an array of value ids) over random
 * sequences of append, insert (negative, clamped beyond both ends), get, set,
 * pop (-1, 0, the middle, anywhere), del, len and clear, with -ERANGE exactly
 * where Python raises IndexError; -EMSGSIZE that leaves the list unchanged;
 * 0-length and 1 MiB values; bad arguments; names, kinds, another process
 * opening by name; many appends and pops at both ends (the ring wraps, grows
 * and shrinks); appenders in several processes (every value once, each
 * process's values in its order); appenders and poppers at both ends (every
 * value popped exactly once); fill/clear and pop cycles in bounded memory;
 * -ENOSPC that changes nothing; an appender killed with SIGKILL.
 * Only the parent (the Criterion test process) asserts; children report
 * through shared memory and exit status. */
#include <criterion/criterion.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE)  /* "returns, not a hang" bound */
#define LONG (30 * T_SEC * T_SCALE) /* a whole multi-process run */
#define KiB (1024ull)
#define MiB (1024ull * 1024)
#define MAXK 16

/* ================================================================ helpers == */

static shmq_list *mklist(shmq_heap *h, const char *name)
{
	shmq_list *l = NULL;
	int r = shmq_list_create(h, name, &l);
	cr_assert_eq(r, 0, "list_create(%s): %d", name ? name : "NULL", r);
	cr_assert_not_null(l);
	return l;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Value number `id`: its length (0 .. 119, often 0) and bytes. */
#define VAL_MAX 120

static size_t val_len(uint32_t id)
{
	return id % 7 == 0 ? 0 : (size_t)(t_mix(id) % VAL_MAX);
}

static size_t val_fill(void *buf, uint32_t id)
{
	size_t len = val_len(id);
	tmsg_fill(buf, id, 0x1157, len);
	return len;
}

static void append_id(shmq_list *l, uint32_t id)
{
	unsigned char v[VAL_MAX];
	size_t len = val_fill(v, id);
	int r = shmq_list_append(l, v, len);
	cr_assert_eq(r, 0, "append(value %u): %d", id, r);
}

/* l[index] is value id: its length, its bytes, nothing written past it. */
static void expect_at(shmq_list *l, int64_t index, uint32_t id, const char *ctx)
{
	unsigned char want[VAL_MAX], buf[VAL_MAX + 8];
	size_t len = val_fill(want, id);
	memset(buf, 0xee, sizeof(buf));
	ssize_t n = shmq_list_get(l, index, buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)len, "%s: get(%lld): %zd, want value %u of %zu bytes", ctx,
		     (long long)index, n, id, len);
	cr_assert(memcmp(buf, want, len) == 0, "%s: get(%lld): not value %u", ctx,
		  (long long)index, id);
	cr_assert_eq(buf[len], 0xee, "%s: get(%lld) wrote past the value", ctx, (long long)index);
}

/* The list holds exactly ids[0..n). */
static void expect_list(shmq_list *l, const uint32_t *ids, size_t n, const char *ctx)
{
	cr_assert_eq(shmq_list_len(l), (ssize_t)n, "%s: len %zd, want %zu", ctx, shmq_list_len(l),
		     n);
	for (size_t i = 0; i < n; i++) {
		expect_at(l, (int64_t)i, ids[i], ctx);
		if (i % 7 == 0) /* the same by its negative index */
			expect_at(l, (int64_t)i - (int64_t)n, ids[i], ctx);
	}
	unsigned char buf[8];
	cr_assert_eq(shmq_list_get(l, (int64_t)n, buf, sizeof(buf)), -ERANGE, "%s: get(len)", ctx);
	cr_assert_eq(shmq_list_get(l, -(int64_t)n - 1, buf, sizeof(buf)), -ERANGE,
		     "%s: get(-len-1)", ctx);
}

/* Python: a[i] for i in -n .. n-1. */
static bool py_index(int64_t i, size_t n, size_t *out)
{
	if (i < 0) {
		if (i < -(int64_t)n)
			return false;
		*out = (size_t)((int64_t)n + i);
		return true;
	}
	if ((uint64_t)i >= n)
		return false;
	*out = (size_t)i;
	return true;
}

/* Python: where a.insert(i, x) puts x. */
static size_t py_insert_at(int64_t i, size_t n)
{
	if (i < 0) {
		if (i < -(int64_t)n)
			return 0;
		return (size_t)((int64_t)n + i);
	}
	return (uint64_t)i > n ? n : (size_t)i;
}

/* ------------------------------------------- state shared with children -- */

struct sh;
struct karg {
	struct sh *s;
	int idx;
};

#define MP_VALS 40000 /* bitmap of (producer, seq) values */

struct sh {
	shmq_heap *h;
	shmq_list *l;
	char heap_name[64];
	_Atomic uint32_t ready, go, stop, done;
	_Atomic uint32_t errors;
	_Atomic int32_t last_err, err_where;
	_Atomic uint64_t ops[MAXK];
	_Atomic uint64_t popped, dups, torn, order, empty;
	_Atomic uint32_t prods_done;
	_Atomic uint64_t bits[(MP_VALS + 63) / 64];
	struct karg args[MAXK];
};

static struct sh *sh_new(uint64_t max_size)
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	s->h = t_mkheap(NULL, max_size);
	s->l = mklist(s->h, NULL);
	return s;
}

static void sh_free(struct sh *s)
{
	cr_assert_eq(shmq_list_close(s->l), 0);
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

static void fail(struct sh *s, int where, int err)
{
	s->err_where = where;
	s->last_err = err;
	atomic_fetch_add(&s->errors, 1);
}

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

/* Values of concurrent tests: common.h's messages (producer, seq), 16 .. 64
 * bytes, checked on receipt. */
#define MSG_LO 16
#define MSG_HI 64

static void mark(struct sh *s, uint32_t prod, uint32_t seq, uint32_t per_prod)
{
	uint64_t v = (uint64_t)prod * per_prod + seq;
	if (seq >= per_prod || v >= MP_VALS) {
		atomic_fetch_add(&s->torn, 1);
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

/* ============================================================ basic calls == */

Test(list, python_semantics_by_example)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	char buf[32];
	cr_assert_eq(shmq_list_len(l), 0);
	cr_assert_eq(shmq_list_pop(l, -1, buf, sizeof(buf)), -ERANGE, "pop from an empty list");
	cr_assert_eq(shmq_list_pop(l, 0, buf, sizeof(buf)), -ERANGE);
	cr_assert_eq(shmq_list_get(l, 0, buf, sizeof(buf)), -ERANGE);
	cr_assert_eq(shmq_list_get(l, -1, buf, sizeof(buf)), -ERANGE);
	cr_assert_eq(shmq_list_set(l, 0, "x", 1), -ERANGE);
	cr_assert_eq(shmq_list_del(l, 0), -ERANGE);
	cr_assert_eq(shmq_list_del(l, -1), -ERANGE);
	/* l = ['a', 'b', 'c'] */
	cr_assert_eq(shmq_list_append(l, "a", 1), 0);
	cr_assert_eq(shmq_list_append(l, "b", 1), 0);
	cr_assert_eq(shmq_list_append(l, "c", 1), 0);
	cr_assert_eq(shmq_list_len(l), 3);
	struct {
		int64_t i;
		const char *want; /* NULL: IndexError */
	} gets[] = { { 0, "a" },  { 1, "b" },	{ 2, "c" },	   { 3, NULL },
		     { -1, "c" }, { -3, "a" },	{ -4, NULL },	   { INT64_MAX, NULL },
		     { INT64_MIN, NULL }, { 1ll << 32, NULL }, { -(1ll << 32), NULL } };
	for (size_t k = 0; k < sizeof(gets) / sizeof(gets[0]); k++) {
		ssize_t n = shmq_list_get(l, gets[k].i, buf, sizeof(buf));
		if (!gets[k].want) {
			cr_assert_eq(n, -ERANGE, "get(%lld): %zd", (long long)gets[k].i, n);
			continue;
		}
		cr_assert_eq(n, 1, "get(%lld): %zd", (long long)gets[k].i, n);
		cr_assert_eq(buf[0], gets[k].want[0], "get(%lld)", (long long)gets[k].i);
	}
	/* l.insert(-1, 'x') -> a b x c; insert(100, 'y') -> a b x c y;
	 * insert(-100, 'z') -> z a b x c y; insert(6, 'w') -> ... y w. */
	cr_assert_eq(shmq_list_insert(l, -1, "x", 1), 0);
	cr_assert_eq(shmq_list_insert(l, 100, "y", 1), 0);
	cr_assert_eq(shmq_list_insert(l, -100, "z", 1), 0);
	cr_assert_eq(shmq_list_insert(l, 6, "w", 1), 0);
	cr_assert_eq(shmq_list_insert(l, INT64_MIN, "<", 1), 0);
	cr_assert_eq(shmq_list_insert(l, INT64_MAX, ">", 1), 0);
	const char *want = "<zabxcyw>";
	cr_assert_eq(shmq_list_len(l), 9);
	for (int64_t i = 0; i < 9; i++) {
		cr_assert_eq(shmq_list_get(l, i, buf, sizeof(buf)), 1);
		cr_assert_eq(buf[0], want[i], "after inserts, [%lld] = %c, want %c", (long long)i,
			     buf[0], want[i]);
	}
	/* l[-2] = 'Y' (the 'w'); l[0] = ''; del l[1]; l.pop(); l.pop(0); l.pop(2) */
	cr_assert_eq(shmq_list_set(l, -2, "Y", 1), 0);
	cr_assert_eq(shmq_list_set(l, 0, NULL, 0), 0);
	cr_assert_eq(shmq_list_set(l, 9, "!", 1), -ERANGE);
	cr_assert_eq(shmq_list_set(l, -10, "!", 1), -ERANGE);
	cr_assert_eq(shmq_list_get(l, 0, NULL, 0), 0, "an empty value, NULL buffer");
	cr_assert_eq(shmq_list_del(l, 1), 0); /* z */
	cr_assert_eq(shmq_list_del(l, 8), -ERANGE);
	cr_assert_eq(shmq_list_pop(l, -1, buf, sizeof(buf)), 1);
	cr_assert_eq(buf[0], '>');
	cr_assert_eq(shmq_list_pop(l, 0, buf, sizeof(buf)), 0, "pop of the empty value");
	cr_assert_eq(shmq_list_pop(l, 2, buf, sizeof(buf)), 1);
	cr_assert_eq(buf[0], 'x');
	cr_assert_eq(shmq_list_pop(l, 5, buf, sizeof(buf)), -ERANGE);
	cr_assert_eq(shmq_list_pop(l, -6, buf, sizeof(buf)), -ERANGE);
	want = "abcyY";
	cr_assert_eq(shmq_list_len(l), 5);
	for (int64_t i = 0; i < 5; i++) {
		cr_assert_eq(shmq_list_get(l, i, buf, sizeof(buf)), 1);
		cr_assert_eq(buf[0], want[i], "[%lld] = %c, want %c", (long long)i, buf[0],
			     want[i]);
	}
	cr_assert_eq(shmq_list_clear(l), 0);
	cr_assert_eq(shmq_list_len(l), 0);
	cr_assert_eq(shmq_list_clear(l), 0, "clear of an empty list");
	cr_assert_eq(shmq_list_pop(l, -1, buf, sizeof(buf)), -ERANGE);
	cr_assert_eq(shmq_list_insert(l, 5, "only", 4), 0, "insert into an empty list");
	cr_assert_eq(shmq_list_get(l, -1, buf, sizeof(buf)), 4);
	cr_assert_eq(shmq_list_close(l), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* The model: random sequences of every call, each result compared with
 * what Python's list does. */
#define MODEL_OPS 25000

struct model {
	uint32_t *ids;
	size_t n, cap;
};

static void m_insert(struct model *m, size_t at, uint32_t id)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 64;
		m->ids = realloc(m->ids, m->cap * sizeof(*m->ids));
		cr_assert_not_null(m->ids);
	}
	memmove(m->ids + at + 1, m->ids + at, (m->n - at) * sizeof(*m->ids));
	m->ids[at] = id;
	m->n++;
}

static void m_remove(struct model *m, size_t at)
{
	memmove(m->ids + at, m->ids + at + 1, (m->n - at - 1) * sizeof(*m->ids));
	m->n--;
}

static int64_t pick_index(uint64_t *rs, size_t n)
{
	int64_t sn = (int64_t)n;
	switch (rnd(rs) % 12) {
	case 0:
		return -1;
	case 1:
		return 0;
	case 2:
		return sn / 2;
	case 3:
		return sn; /* one past the end */
	case 4:
		return -sn;
	case 5:
		return -sn - 1; /* one before the start */
	case 6:
		return sn - 1;
	case 7:
		return rnd(rs) & 1 ? INT64_MAX : INT64_MIN;
	case 8:
		return (int64_t)(rnd(rs) % 1000) - 500;
	default:
		return (int64_t)(rnd(rs) % (2 * n + 7)) - sn - 3;
	}
}

static void model_run(uint64_t seed)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	struct model m = { 0 };
	uint64_t rs = seed;
	uint32_t next_id = 1;
	unsigned char buf[VAL_MAX + 8], v[VAL_MAX];
	char ctx[64];
	size_t max_n = 0;
	for (int op = 0; op < MODEL_OPS; op++) {
		snprintf(ctx, sizeof(ctx), "seed %llu op %d", (unsigned long long)seed, op);
		/* Phases of about 1500 calls that grow, then shrink the list. */
		bool grow = (op / 1500) % 2 == 0;
		unsigned what = (unsigned)(rnd(&rs) % 100);
		int64_t idx = pick_index(&rs, m.n);
		size_t at = 0;
		bool in = py_index(idx, m.n, &at);
		if (what < (grow ? 22u : 10u)) { /* append */
			uint32_t id = next_id++;
			size_t len = val_fill(v, id);
			cr_assert_eq(shmq_list_append(l, v, len), 0, "%s: append", ctx);
			m_insert(&m, m.n, id);
		} else if (what < (grow ? 40u : 18u)) { /* insert */
			uint32_t id = next_id++;
			size_t len = val_fill(v, id);
			cr_assert_eq(shmq_list_insert(l, idx, v, len), 0, "%s: insert(%lld)", ctx,
				     (long long)idx);
			m_insert(&m, py_insert_at(idx, m.n), id);
		} else if (what < 55) { /* get */
			ssize_t n = shmq_list_get(l, idx, buf, sizeof(buf));
			if (!in) {
				cr_assert_eq(n, -ERANGE, "%s: get(%lld) of %zu: %zd", ctx,
					     (long long)idx, m.n, n);
			} else {
				size_t len = val_fill(v, m.ids[at]);
				cr_assert_eq(n, (ssize_t)len, "%s: get(%lld) of %zu: %zd", ctx,
					     (long long)idx, m.n, n);
				cr_assert(memcmp(buf, v, len) == 0, "%s: get(%lld): wrong value",
					  ctx, (long long)idx);
			}
		} else if (what < 65) { /* set */
			uint32_t id = next_id++;
			size_t len = val_fill(v, id);
			int r = shmq_list_set(l, idx, v, len);
			cr_assert_eq(r, in ? 0 : -ERANGE, "%s: set(%lld) of %zu: %d", ctx,
				     (long long)idx, m.n, r);
			if (in)
				m.ids[at] = id;
		} else if (what < (grow ? 80u : 88u)) { /* pop */
			/* Mostly the ends, as programs do. */
			unsigned how = (unsigned)(rnd(&rs) % 4);
			if (how == 0)
				idx = -1;
			else if (how == 1)
				idx = 0;
			in = py_index(idx, m.n, &at);
			memset(buf, 0xee, sizeof(buf));
			ssize_t n = shmq_list_pop(l, idx, buf, sizeof(buf));
			if (!in) {
				cr_assert_eq(n, -ERANGE, "%s: pop(%lld) of %zu: %zd", ctx,
					     (long long)idx, m.n, n);
			} else {
				size_t len = val_fill(v, m.ids[at]);
				cr_assert_eq(n, (ssize_t)len, "%s: pop(%lld) of %zu: %zd", ctx,
					     (long long)idx, m.n, n);
				cr_assert(memcmp(buf, v, len) == 0, "%s: pop(%lld): wrong value",
					  ctx, (long long)idx);
				m_remove(&m, at);
			}
		} else if (what < (grow ? 90u : 98u)) { /* del */
			int r = shmq_list_del(l, idx);
			cr_assert_eq(r, in ? 0 : -ERANGE, "%s: del(%lld) of %zu: %d", ctx,
				     (long long)idx, m.n, r);
			if (in)
				m_remove(&m, at);
		} else if (what < 99 || rnd(&rs) % 20) { /* len */
			cr_assert_eq(shmq_list_len(l), (ssize_t)m.n, "%s: len", ctx);
		} else { /* clear, now and then */
			cr_assert_eq(shmq_list_clear(l), 0, "%s: clear", ctx);
			m.n = 0;
		}
		max_n = m.n > max_n ? m.n : max_n;
		if (op % 1000 == 999)
			expect_list(l, m.ids, m.n, ctx);
	}
	snprintf(ctx, sizeof(ctx), "seed %llu, the end", (unsigned long long)seed);
	expect_list(l, m.ids, m.n, ctx);
	cr_assert_gt(max_n, 100, "the list never grew past %zu", max_n);
	free(m.ids);
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list, random_calls_match_pythons_list, .timeout = T_TIMEOUT(60))
{
	for (uint64_t seed = 1; seed <= 3; seed++)
		model_run(seed * 0x9e3779b97f4a7c15ull);
}

Test(list, get_and_pop_emsgsize_leave_the_list_unchanged)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	uint32_t ids[4] = { 1, 7, 2, 3 }; /* value 7 is empty */
	for (int i = 0; i < 4; i++)
		append_id(l, ids[i]);
	unsigned char buf[VAL_MAX + 8];
	for (int i = 0; i < 4; i++) {
		size_t len = val_len(ids[i]);
		if (len == 0) {
			cr_assert_eq(shmq_list_get(l, i, NULL, 0), 0, "NULL, 0 for an empty value");
			continue;
		}
		memset(buf, 0xee, sizeof(buf));
		cr_assert_eq(shmq_list_get(l, i, buf, len - 1), -EMSGSIZE, "get(%d)", i);
		cr_assert_eq(shmq_list_get(l, i, NULL, 0), -EMSGSIZE, "get(%d, NULL, 0)", i);
		cr_assert_eq(shmq_list_pop(l, i, buf, len - 1), -EMSGSIZE, "pop(%d)", i);
		cr_assert_eq(shmq_list_pop(l, i - 4, buf, len - 1), -EMSGSIZE, "pop(%d)", i - 4);
		cr_assert_eq(shmq_list_pop(l, i, NULL, 0), -EMSGSIZE, "pop(%d, NULL, 0)", i);
		for (size_t j = 0; j < sizeof(buf); j++)
			cr_assert_eq(buf[j], 0xee, "-EMSGSIZE copied byte %zu", j);
		expect_list(l, ids, 4, "after -EMSGSIZE");
	}
	/* Out of range wins over a small buffer. */
	cr_assert_eq(shmq_list_get(l, 4, NULL, 0), -ERANGE);
	cr_assert_eq(shmq_list_pop(l, -5, NULL, 0), -ERANGE);
	/* The empty value pops with no buffer. */
	cr_assert_eq(shmq_list_pop(l, 1, NULL, 0), 0);
	uint32_t rest[3] = { 1, 2, 3 };
	expect_list(l, rest, 3, "after popping the empty value");
	cr_assert_eq(shmq_list_clear(l), 0);
	cr_assert_eq(shmq_list_pop(l, -1, NULL, 0), -ERANGE, "pop of an empty list");
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list, null_handles_and_buffers_einval_change_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL), *o = NULL;
	unsigned char buf[16];
	append_id(l, 1);
	cr_assert_eq(shmq_list_create(NULL, "x", &o), -EINVAL);
	cr_assert_eq(shmq_list_create(h, "x", NULL), -EINVAL);
	cr_assert_eq(shmq_list_create(h, NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_list_open(NULL, "x", &o), -EINVAL);
	cr_assert_eq(shmq_list_open(h, NULL, &o), -EINVAL);
	cr_assert_eq(shmq_list_open(h, "x", NULL), -EINVAL);
	cr_assert_eq(shmq_list_close(NULL), -EINVAL);
	cr_assert_eq(shmq_list_append(NULL, "v", 1), -EINVAL);
	cr_assert_eq(shmq_list_append(l, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_list_insert(NULL, 0, "v", 1), -EINVAL);
	cr_assert_eq(shmq_list_insert(l, 0, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_list_get(NULL, 0, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_list_get(l, 0, NULL, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_list_set(NULL, 0, "v", 1), -EINVAL);
	cr_assert_eq(shmq_list_set(l, 0, NULL, 1), -EINVAL);
	cr_assert_eq(shmq_list_pop(NULL, -1, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_list_pop(l, -1, NULL, sizeof(buf)), -EINVAL);
	cr_assert_eq(shmq_list_del(NULL, 0), -EINVAL);
	cr_assert_eq(shmq_list_len(NULL), -EINVAL);
	cr_assert_eq(shmq_list_clear(NULL), -EINVAL);
	uint32_t one = 1;
	expect_list(l, &one, 1, "after bad calls");
	cr_assert_eq(shmq_list_open(h, "x", &o), -ENOENT, "a failed create left its name");
	cr_assert_eq(t_hstat(h).objects, 1);
	/* NULL with length 0 is an empty value. */
	cr_assert_eq(shmq_list_append(l, NULL, 0), 0);
	cr_assert_eq(shmq_list_insert(l, 0, NULL, 0), 0);
	cr_assert_eq(shmq_list_set(l, 1, NULL, 0), 0);
	cr_assert_eq(shmq_list_len(l), 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmq_list_get(l, i, NULL, 0), 0);
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list, one_mebibyte_values, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	size_t big = MiB;
	unsigned char *v = malloc(big + 1), *buf = malloc(big + 1);
	cr_assert(v && buf);
	for (uint32_t i = 0; i < 6; i++) {
		tmsg_fill(v, i, 1, big);
		cr_assert_eq(shmq_list_insert(l, i % 2 ? 0 : INT64_MAX, v, big), 0);
	}
	/* Order: 5 3 1 0 2 4 */
	uint32_t order[6] = { 5, 3, 1, 0, 2, 4 };
	for (int i = 0; i < 6; i++) {
		tmsg_fill(v, order[i], 1, big);
		cr_assert_eq(shmq_list_get(l, i, buf, big - 1), -EMSGSIZE);
		cr_assert_eq(shmq_list_get(l, i, buf, big), (ssize_t)big);
		cr_assert(memcmp(buf, v, big) == 0, "1 MiB value at %d came back different", i);
	}
	tmsg_fill(v, 99, 2, big + 1);
	cr_assert_eq(shmq_list_set(l, 2, v, big + 1), 0);
	cr_assert_eq(shmq_list_pop(l, 2, buf, big), -EMSGSIZE);
	cr_assert_eq(shmq_list_pop(l, 2, buf, big + 1), (ssize_t)(big + 1));
	cr_assert(memcmp(buf, v, big + 1) == 0);
	cr_assert_eq(shmq_list_len(l), 5);
	free(v);
	free(buf);
	shmq_list_close(l);
	shmq_heap_close(h);
}

/* ===================================================== names and processes == */

Test(list, named_create_open_names_of_other_kinds)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, "l1"), *l2 = NULL, *o = NULL;
	cr_assert_str_eq(shmq_list_name(l), "l1");
	cr_assert_eq(shmq_list_create(h, "l1", &o), -EEXIST);
	cr_assert_eq(shmq_list_open(h, "l1", &l2), 0);
	cr_assert_neq(l, l2);
	cr_assert_str_eq(shmq_list_name(l2), "l1");
	append_id(l, 5);
	expect_at(l2, 0, 5, "second handle");
	cr_assert_eq(shmq_list_open(h, "nope", &o), -ENOENT);
	cr_assert_eq(shmq_list_create(h, "", &o), -EINVAL);
	char over[SHMQ_NAME_MAX + 1];
	memset(over, 'o', SHMQ_NAME_MAX);
	over[SHMQ_NAME_MAX] = 0;
	cr_assert_eq(shmq_list_create(h, over, &o), -EINVAL);
	shmq_dict *d = NULL;
	shmq_sem *sem = NULL;
	cr_assert_eq(shmq_dict_create(h, "dict", &d), 0);
	cr_assert_eq(shmq_sem_create(h, "sem", 1, 0, 0, &sem), 0);
	cr_assert_eq(shmq_list_open(h, "dict", &o), -EINVAL);
	cr_assert_eq(shmq_list_open(h, "sem", &o), -EINVAL);
	cr_assert_eq(shmq_dict_open(h, "l1", &d), -EINVAL);
	cr_assert_eq(shmq_list_create(h, "dict", &o), -EEXIST);
	shmq_dict_close(d);
	shmq_sem_close(sem);
	/* Anonymous lists: unique names, openable, freed at their last close. */
	uint32_t objs = t_hstat(h).objects;
	shmq_list *a = mklist(h, NULL), *b = mklist(h, NULL), *a2 = NULL;
	const char *na = shmq_list_name(a);
	cr_assert_not_null(na);
	size_t la = strnlen(na, SHMQ_NAME_MAX);
	cr_assert(la > 0 && la < SHMQ_NAME_MAX);
	cr_assert_str_neq(na, shmq_list_name(b));
	char name[SHMQ_NAME_MAX];
	memcpy(name, na, la + 1);
	cr_assert_eq(shmq_list_open(h, name, &a2), 0);
	append_id(a, 9);
	expect_at(a2, -1, 9, "anonymous, by name");
	cr_assert_eq(shmq_list_len(b), 0);
	cr_assert_eq(shmq_list_close(a), 0);
	cr_assert_eq(shmq_list_close(a2), 0);
	cr_assert_eq(t_hstat(h).objects, objs + 1, "anonymous list not freed at its last close");
	cr_assert_eq(shmq_list_open(h, name, &o), -ENOENT);
	cr_assert_eq(shmq_list_close(b), 0);
	/* A named list outlives its handles until removed. */
	cr_assert_eq(shmq_heap_close(h), -EBUSY);
	cr_assert_eq(shmq_list_close(l), 0);
	cr_assert_eq(shmq_list_close(l2), 0);
	cr_assert_eq(shmq_list_open(h, "l1", &l), 0);
	expect_at(l, 0, 5, "reopened");
	cr_assert_eq(shmq_heap_remove(h, "l1"), 0);
	cr_assert_eq(shmq_list_open(h, "l1", &o), -ENOENT);
	expect_at(l, 0, 5, "removed, old handle");
	cr_assert_eq(shmq_list_close(l), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

static int child_by_name(void *arg)
{
	struct sh *s = arg;
	shmq_heap *h = NULL;
	shmq_list *l = NULL;
	int r = shmq_heap_open(s->heap_name, 0, &h);
	if (r < 0)
		return fail(s, 1, r), 1;
	if ((r = shmq_list_open(h, "shared", &l)) < 0)
		return fail(s, 2, r), 2;
	if (shmq_list_len(l) != 100)
		return fail(s, 3, (int)shmq_list_len(l)), 3;
	for (int64_t i = 0; i < 100; i++) {
		unsigned char want[VAL_MAX], buf[VAL_MAX];
		size_t len = val_fill(want, (uint32_t)i + 1);
		ssize_t n = shmq_list_get(l, i, buf, sizeof(buf));
		if (n != (ssize_t)len || memcmp(buf, want, len))
			return fail(s, 4, (int)i), 4;
	}
	/* Reverse it in place: pop the last, insert at i. */
	for (int64_t i = 0; i < 100; i++) {
		unsigned char buf[VAL_MAX];
		ssize_t n = shmq_list_pop(l, -1, buf, sizeof(buf));
		if (n < 0 || (r = shmq_list_insert(l, i, buf, (size_t)n)) < 0)
			return fail(s, 5, n < 0 ? (int)n : r), 5;
	}
	if ((r = shmq_list_append(l, "child", 5)) < 0)
		return fail(s, 6, r), 6;
	if (shmq_list_close(l) < 0 || shmq_heap_close(h) < 0)
		return fail(s, 7, -1), 7;
	/* The inherited handle works too. */
	if ((r = shmq_list_append(s->l, "inherited", 9)) < 0)
		return fail(s, 8, r), 8;
	return 0;
}

Test(list, another_process_opens_by_name, .timeout = T_TIMEOUT(30))
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	snprintf(s->heap_name, sizeof(s->heap_name), "%.60s", t_name("list"));
	s->h = t_mkheap(s->heap_name, 0);
	s->l = mklist(s->h, "shared");
	for (uint32_t i = 1; i <= 100; i++)
		append_id(s->l, i);
	pid_t pid = t_fork(child_by_name, s);
	t_reap_ok(pid, "child", LIVE);
	T_ASSERT_NO_ERRORS(s);
	uint32_t ids[100];
	for (uint32_t i = 0; i < 100; i++)
		ids[i] = 100 - i;
	cr_assert_eq(shmq_list_len(s->l), 102);
	for (int64_t i = 0; i < 100; i++)
		expect_at(s->l, i, ids[i], "reversed by the child");
	char buf[16];
	cr_assert_eq(shmq_list_get(s->l, 100, buf, sizeof(buf)), 5);
	cr_assert(memcmp(buf, "child", 5) == 0);
	cr_assert_eq(shmq_list_get(s->l, -1, buf, sizeof(buf)), 9);
	cr_assert(memcmp(buf, "inherited", 9) == 0);
	cr_assert_eq(shmq_list_close(s->l), 0);
	cr_assert_eq(shmq_heap_close(s->h), 0);
	cr_assert_eq(shmq_unlink(s->heap_name), 0);
}

/* ================================================ ring, growth, shrinking == */

/* Values are 8-byte counters here: v(n) = n. */
static void push_n(shmq_list *l, int64_t index, uint64_t n)
{
	int r = index == INT64_MAX ? shmq_list_append(l, &n, 8) : shmq_list_insert(l, index, &n, 8);
	cr_assert_eq(r, 0, "push %llu: %d", (unsigned long long)n, r);
}

static uint64_t pop_n(shmq_list *l, int64_t index)
{
	uint64_t v = ~0ull;
	ssize_t r = shmq_list_pop(l, index, &v, sizeof(v));
	cr_assert_eq(r, 8, "pop(%lld): %zd", (long long)index, r);
	return v;
}

Test(list, appends_and_pops_at_both_ends_wrap_grow_and_shrink, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	uint64_t base = t_live_bytes(h);
	/* A queue: append at the end, pop at the front; the ring wraps around
	 * many times at every length up to 1000. */
	uint64_t in = 0, out = 0;
	for (int round = 0; round < 20; round++) {
		uint64_t target = (uint64_t)(round * 53 % 1000) + 1;
		while (in - out < target)
			push_n(l, INT64_MAX, in++);
		for (int i = 0; i < 3000; i++) {
			push_n(l, INT64_MAX, in++);
			uint64_t v = pop_n(l, 0);
			cr_assert_eq(v, out, "queue: popped %llu, want %llu",
				     (unsigned long long)v, (unsigned long long)out);
			out++;
		}
		cr_assert_eq(shmq_list_len(l), (ssize_t)(in - out));
		/* Reading by index across the wrap point. */
		for (uint64_t k = 0; k < in - out; k += 17) {
			uint64_t v = 0;
			cr_assert_eq(shmq_list_get(l, (int64_t)k, &v, 8), 8);
			cr_assert_eq(v, out + k);
		}
	}
	while (out < in) {
		uint64_t v = pop_n(l, 0);
		cr_assert_eq(v, out++);
	}
	cr_assert_eq(shmq_list_len(l), 0);
	/* The other way: insert at the front, pop at the end. */
	in = out = 0;
	for (int i = 0; i < 50000; i++) {
		push_n(l, 0, in++);
		if (i % 3)
			cr_assert_eq(pop_n(l, -1), out++);
	}
	while (out < in)
		cr_assert_eq(pop_n(l, -1), out++);
	/* A deque grown to 60000 at both ends, then drained from both ends:
	 * front holds odd numbers descending, back even ascending. */
	for (uint64_t n = 0; n < 60000; n++)
		push_n(l, n % 2 ? 0 : INT64_MAX, n);
	cr_assert_eq(shmq_list_len(l), 60000);
	uint64_t front = 59999, back = 59998;
	for (int i = 0; i < 30000; i++) {
		cr_assert_eq(pop_n(l, 0), front);
		cr_assert_eq(pop_n(l, -1), back);
		front -= 2;
		back -= 2;
		if (i % 5000 == 0)
			cr_assert_eq(shmq_list_len(l), 60000 - 2 * (i + 1));
	}
	cr_assert_eq(shmq_list_len(l), 0);
	cr_assert_eq(shmq_list_pop(l, 0, NULL, 0), -ERANGE);
	/* Shrunk back: nearly nothing left in use. */
	uint64_t after = t_live_bytes(h);
	cr_assert_leq(after, base + 64 * KiB,
		      "an emptied list keeps %llu bytes (%llu before it grew to 60000)",
		      (unsigned long long)after, (unsigned long long)base);
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list, middle_inserts_and_deletes_after_wrapping, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	struct model m = { 0 };
	uint64_t rs = 77;
	uint32_t id = 1;
	/* Move the ring's head around first. */
	for (int i = 0; i < 200; i++) {
		append_id(l, id);
		m_insert(&m, m.n, id++);
	}
	for (int i = 0; i < 150; i++) {
		cr_assert_eq(shmq_list_del(l, 0), 0);
		m_remove(&m, 0);
		append_id(l, id);
		m_insert(&m, m.n, id++);
	}
	for (int i = 0; i < 3000; i++) {
		int64_t at = (int64_t)(rnd(&rs) % (m.n + 1));
		if (rnd(&rs) % 2 || m.n < 10) {
			unsigned char v[VAL_MAX];
			size_t len = val_fill(v, id);
			cr_assert_eq(shmq_list_insert(l, at, v, len), 0);
			m_insert(&m, (size_t)at, id++);
		} else {
			at %= (int64_t)m.n;
			cr_assert_eq(shmq_list_del(l, at - (int64_t)m.n), 0);
			m_remove(&m, (size_t)at);
		}
		if (i % 500 == 0)
			expect_list(l, m.ids, m.n, "middle");
	}
	expect_list(l, m.ids, m.n, "middle, the end");
	free(m.ids);
	shmq_list_close(l);
	shmq_heap_close(h);
}

/* ========================================================== concurrency == */

/* Appenders in several processes: every value present exactly once, whole,
 * and each process's values in the order it appended them. */
#define APP_PROCS 4
#define APP_EACH 5000

static int appender(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char buf[MSG_HI];
	if (kid_start(s) < 0)
		return 1;
	for (uint32_t seq = 0; seq < APP_EACH; seq++) {
		size_t len = tmsg_len((uint32_t)k->idx, seq, MSG_LO, MSG_HI);
		tmsg_fill(buf, (uint32_t)k->idx, seq, len);
		int r = shmq_list_append(s->l, buf, len);
		if (r != 0)
			return fail(s, 1, r), 2;
		if (seq % 64 == 0 && shmq_list_len(s->l) < (ssize_t)seq)
			return fail(s, 2, (int)seq), 3;
	}
	return 0;
}

Test(list_mp, appenders_in_4_processes_every_value_once_in_order, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new(0);
	pid_t pids[APP_PROCS];
	run_kids(s, APP_PROCS, appender, pids);
	for (int i = 0; i < APP_PROCS; i++)
		t_reap_ok(pids[i], "appender", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(shmq_list_len(s->l), APP_PROCS * APP_EACH);
	int64_t last[APP_PROCS];
	for (int p = 0; p < APP_PROCS; p++)
		last[p] = -1;
	unsigned char buf[MSG_HI];
	for (int64_t i = 0; i < APP_PROCS * APP_EACH; i++) {
		ssize_t n = shmq_list_get(s->l, i, buf, sizeof(buf));
		cr_assert_gt(n, 0, "get(%lld): %zd", (long long)i, n);
		uint32_t p = 0, q = 0;
		enum tmsg_err e = tmsg_check(buf, (size_t)n, APP_PROCS, MSG_LO, MSG_HI, &p, &q);
		cr_assert_eq(e, TMSG_OK, "value %lld torn (kind %d)", (long long)i, e);
		cr_assert_gt((int64_t)q, last[p], "process %u's value %u after its %lld", p, q,
			     (long long)last[p]);
		last[p] = q;
		mark(s, p, q, APP_EACH);
	}
	cr_assert_eq(s->dups, 0);
	for (uint64_t v = 0; v < APP_PROCS * APP_EACH; v++)
		cr_assert(marked(s, v), "value %llu missing", (unsigned long long)v);
	sh_free(s);
}

/* Appenders and poppers at once (pops at the front, at the back, and at
 * index 1): every value popped exactly once in all; the front popper sees
 * each appender's values in order. */
#define PP_PRODS 2
#define PP_EACH 10000
#define PP_CONS 3

static int pp_kid(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char buf[MSG_HI + 8];
	if (kid_start(s) < 0)
		return 1;
	int64_t deadline = t_now() + LONG;
	if (k->idx < PP_PRODS) {
		for (uint32_t seq = 0; seq < PP_EACH; seq++) {
			size_t len = tmsg_len((uint32_t)k->idx, seq, MSG_LO, MSG_HI);
			tmsg_fill(buf, (uint32_t)k->idx, seq, len);
			int r = seq % 3 == 2 ? shmq_list_insert(s->l, 0, buf, len)
					     : shmq_list_append(s->l, buf, len);
			if (r != 0)
				return fail(s, 1, r), 2;
		}
		atomic_fetch_add(&s->prods_done, 1);
		return 0;
	}
	int who = k->idx - PP_PRODS;
	int64_t index = who == 0 ? 0 : who == 1 ? -1 : 1;
	int64_t last[PP_PRODS] = { -1, -1 };
	for (;;) {
		if (t_now() > deadline)
			return fail(s, 10, 0), 3;
		uint32_t done = atomic_load(&s->prods_done);
		ssize_t n = shmq_list_pop(s->l, index, buf, sizeof(buf));
		if (n == -ERANGE) {
			if (done == PP_PRODS && shmq_list_len(s->l) <= (index == 1 ? 1 : 0)) {
				/* Index 1 of a list of one is out of range:
				 * take the last value from the front. */
				if (index == 1 && shmq_list_len(s->l) == 1)
					index = 0;
				else
					return 0;
			}
			atomic_fetch_add(&s->empty, 1);
			continue;
		}
		if (n < 0)
			return fail(s, 11, (int)n), 4;
		uint32_t p = 0, q = 0;
		if (tmsg_check(buf, (size_t)n, PP_PRODS, MSG_LO, MSG_HI, &p, &q) != TMSG_OK) {
			atomic_fetch_add(&s->torn, 1);
			continue;
		}
		mark(s, p, q, PP_EACH);
		atomic_fetch_add(&s->popped, 1);
		atomic_fetch_add(&s->ops[who], 1);
		/* Appended values (seq % 3 != 2) leave the front in order. */
		if (who == 0 && q % 3 != 2) {
			if ((int64_t)q <= last[p])
				atomic_fetch_add(&s->order, 1);
			last[p] = q;
		}
	}
}

Test(list_mp, appenders_and_poppers_every_value_popped_once, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new(0);
	pid_t pids[PP_PRODS + PP_CONS];
	run_kids(s, PP_PRODS + PP_CONS, pp_kid, pids);
	for (int i = 0; i < PP_PRODS + PP_CONS; i++)
		t_reap_ok(pids[i], i < PP_PRODS ? "appender" : "popper", 2 * LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_log_info("poppers: %llu at the front, %llu at the back, %llu at index 1; "
		    "%llu times empty",
		    (unsigned long long)s->ops[0], (unsigned long long)s->ops[1],
		    (unsigned long long)s->ops[2], (unsigned long long)s->empty);
	cr_assert_eq(s->torn, 0, "%llu torn values", (unsigned long long)s->torn);
	cr_assert_eq(s->dups, 0, "%llu values popped twice", (unsigned long long)s->dups);
	cr_assert_eq(s->order, 0, "%llu values out of order at the front",
		     (unsigned long long)s->order);
	cr_assert_eq(shmq_list_len(s->l), 0);
	cr_assert_eq(s->popped, PP_PRODS * PP_EACH);
	for (uint64_t v = 0; v < PP_PRODS * PP_EACH; v++)
		cr_assert(marked(s, v), "value %llu never popped", (unsigned long long)v);
	sh_free(s);
}

/* An appender killed (SIGKILL) mid-stream, while a popper takes from the
 * front: what is left is a run of its values with no hole and nothing torn,
 * and the list keeps working (a robust mutex: nobody waits on the dead). */
static int kill_appender(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char buf[MSG_HI];
	for (uint32_t seq = 0; seq < MP_VALS; seq++) {
		size_t len = tmsg_len(0, seq, MSG_LO, MSG_HI);
		tmsg_fill(buf, 0, seq, len);
		int r = shmq_list_append(s->l, buf, len);
		if (r != 0)
			return fail(s, 1, r), 2;
		atomic_store(&s->ops[0], seq + 1);
		if (seq == 2000)
			t_post(&s->ready);
	}
	return 0;
}

static int front_popper(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	unsigned char buf[MSG_HI];
	int64_t deadline = t_now() + LONG;
	while (!atomic_load(&s->stop)) {
		if (t_now() > deadline)
			return fail(s, 20, 0), 2;
		ssize_t n = shmq_list_pop(s->l, 0, buf, sizeof(buf));
		if (n == -ERANGE)
			continue;
		uint32_t p, q;
		if (n < 0 || tmsg_check(buf, (size_t)n, 1, MSG_LO, MSG_HI, &p, &q) != TMSG_OK)
			return fail(s, 21, (int)n), 3;
		if (q != s->popped) /* the front: exactly in order */
			atomic_fetch_add(&s->order, 1);
		atomic_store(&s->popped, q + 1);
		t_nap(20 * 1000); /* slower than the appender: values pile up */
	}
	return 0;
}

Test(list_mp, appender_killed_list_whole_and_working, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new(0);
	s->args[0] = (struct karg){ .s = s, .idx = 0 };
	s->args[1] = (struct karg){ .s = s, .idx = 1 };
	pid_t victim = t_fork(kill_appender, &s->args[0]);
	pid_t popper = t_fork(front_popper, &s->args[1]);
	int r = t_await(&s->ready, 1, LONG);
	if (r < 0)
		t_kill_reap(victim), t_kill_reap(popper);
	cr_assert_eq(r, 0, "appender made no progress");
	t_nap(2 * T_MS);
	t_kill_reap(victim);
	/* The popper goes on with what is left, then stops. */
	t_nap(5 * T_MS);
	t_set(&s->stop, 1);
	t_reap_ok(popper, "popper", LONG);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->order, 0, "values popped out of order or with holes");
	/* Left: values popped .. popped + len - 1, and the victim counted at
	 * least all but its last append. */
	uint32_t first = (uint32_t)s->popped;
	ssize_t len = shmq_list_len(s->l);
	cr_assert_geq(len, 0);
	uint64_t appended = s->ops[0];
	cr_log_info("killed appender: %llu appends, %u popped, %zd left",
		    (unsigned long long)appended, first, len);
	cr_assert(first + (uint64_t)len == appended || first + (uint64_t)len == appended + 1,
		  "%u popped + %zd left, the victim had done %llu appends", first, len,
		  (unsigned long long)appended);
	unsigned char buf[MSG_HI];
	for (ssize_t i = 0; i < len; i++) {
		ssize_t n = shmq_list_get(s->l, i, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		uint32_t p, q;
		cr_assert_eq(tmsg_check(buf, (size_t)n, 1, MSG_LO, MSG_HI, &p, &q), TMSG_OK,
			     "value %zd torn", i);
		cr_assert_eq(q, first + (uint32_t)i, "a hole at %zd", i);
	}
	/* Still works, at both ends and in the middle. */
	cr_assert_eq(shmq_list_append(s->l, "end", 3), 0);
	cr_assert_eq(shmq_list_insert(s->l, 0, "front", 5), 0);
	cr_assert_eq(shmq_list_insert(s->l, (len + 2) / 2, "mid", 3), 0);
	cr_assert_eq(shmq_list_len(s->l), len + 3);
	cr_assert_eq(shmq_list_pop(s->l, -1, buf, sizeof(buf)), 3);
	cr_assert_eq(shmq_list_pop(s->l, 0, buf, sizeof(buf)), 5);
	cr_assert_eq(shmq_list_clear(s->l), 0);
	cr_assert_eq(shmq_list_len(s->l), 0);
	sh_free(s);
}

/* ============================================================= memory == */

#define FILL_VALS 10000
#define FILL_CYCLES 20

Test(list_reclaim, fill_clear_and_fill_pop_cycles_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	uint64_t live[FILL_CYCLES];
	unsigned char v[VAL_MAX], buf[VAL_MAX];
	for (int c = 0; c < FILL_CYCLES; c++) {
		for (uint32_t i = 0; i < FILL_VALS; i++) {
			size_t len = val_fill(v, i + (uint32_t)c);
			int r = i % 4 == 3 ? shmq_list_insert(l, 0, v, len)
					   : shmq_list_append(l, v, len);
			cr_assert_eq(r, 0);
		}
		cr_assert_eq(shmq_list_len(l), FILL_VALS);
		if (c % 2) {
			cr_assert_eq(shmq_list_clear(l), 0);
		} else {
			for (uint32_t i = 0; i < FILL_VALS; i++)
				cr_assert_geq(shmq_list_pop(l, i % 2 ? 0 : -1, buf, sizeof(buf)), 0);
		}
		cr_assert_eq(shmq_list_len(l), 0);
		live[c] = t_live_bytes(h);
	}
	t_assert_bounded(live, FILL_CYCLES, "fill/clear");
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list_reclaim, set_and_middle_insert_delete_loops_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_list *l = mklist(h, NULL);
	enum { N = 1000, ROUNDS = 30 };
	uint64_t live[ROUNDS];
	unsigned char v[VAL_MAX];
	for (uint32_t i = 0; i < N; i++)
		append_id(l, i);
	for (int c = 0; c < ROUNDS; c++) {
		for (uint32_t i = 0; i < N; i++) {
			size_t len = val_fill(v, i * 7 + (uint32_t)c);
			cr_assert_eq(shmq_list_set(l, i, v, len), 0);
		}
		for (uint32_t i = 0; i < 200; i++) {
			size_t len = val_fill(v, i);
			cr_assert_eq(shmq_list_insert(l, N / 2, v, len), 0);
			cr_assert_eq(shmq_list_del(l, N / 3), 0);
		}
		cr_assert_eq(shmq_list_len(l), N);
		live[c] = t_live_bytes(h);
	}
	t_assert_bounded(live, ROUNDS, "set/insert/del");
	shmq_list_close(l);
	shmq_heap_close(h);
}

Test(list_reclaim, list_with_values_freed_at_last_close)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	uint64_t base = t_live_bytes(h);
	for (int round = 0; round < 5; round++) {
		shmq_list *l = mklist(h, NULL);
		for (uint32_t i = 0; i < 5000; i++)
			append_id(l, i);
		cr_assert_eq(shmq_list_close(l), 0);
	}
	cr_assert_eq(t_hstat(h).objects, 0);
	uint64_t after = t_live_bytes(h);
	cr_assert_leq(after, base + T_RECLAIM_SLACK,
		      "5 lists of 5000 values created and closed: %llu bytes in use, %llu before",
		      (unsigned long long)after, (unsigned long long)base);
	shmq_heap_close(h);
}

/* =============================================================== ENOSPC == */

#define NOSPC_VAL 1000

Test(list_enospc, full_heap_leaves_the_list_unchanged, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, SHMQ_HEAP_MIN_MAX);
	shmq_list *l = mklist(h, NULL);
	unsigned char v[NOSPC_VAL];
	uint32_t n = 0;
	int r;
	for (;;) {
		cr_assert_lt(n, 2000, "a 1 MiB heap holds more than 2000 values of 1000 bytes");
		tmsg_fill(v, n, 0, NOSPC_VAL);
		r = n % 5 == 4 ? shmq_list_insert(l, 0, v, NOSPC_VAL)
			       : shmq_list_append(l, v, NOSPC_VAL);
		if (r != 0)
			break;
		n++;
	}
	cr_assert_eq(r, -ENOSPC, "append to a full heap: %d", r);
	cr_assert_geq(n, 100, "only %u values of 1000 bytes in a 1 MiB heap", n);
	/* The model: inserted at 0 when n % 5 == 4. */
	uint32_t *ids = malloc(n * sizeof(*ids));
	cr_assert_not_null(ids);
	size_t front = 0;
	for (uint32_t i = 0; i < n; i++)
		front += i % 5 == 4;
	size_t fi = front, bi = front;
	for (uint32_t i = 0; i < n; i++) {
		if (i % 5 == 4)
			ids[--fi] = i;
		else
			ids[bi++] = i;
	}
	unsigned char buf[NOSPC_VAL];
#define EXPECT_FULL(what)                                                                 \
	do {                                                                              \
		cr_assert_eq(shmq_list_len(l), (ssize_t)n, "%s: len", what);            \
		for (uint32_t i_ = 0; i_ < n; i_++) {                                     \
			tmsg_fill(v, ids[i_], 0, NOSPC_VAL);                              \
			cr_assert_eq(shmq_list_get(l, i_, buf, sizeof(buf)), NOSPC_VAL); \
			cr_assert(memcmp(buf, v, NOSPC_VAL) == 0, "%s: value %u", what, i_); \
		}                                                                         \
	} while (0)
	EXPECT_FULL("after the failed append");
	size_t huge = SHMQ_HEAP_MIN_MAX / 2;
	unsigned char *big = calloc(1, huge);
	cr_assert_not_null(big);
	uint64_t live = t_live_bytes(h);
	cr_assert_eq(shmq_list_append(l, big, huge), -ENOSPC);
	cr_assert_eq(shmq_list_insert(l, 0, big, huge), -ENOSPC);
	cr_assert_eq(shmq_list_insert(l, n / 2, big, huge), -ENOSPC);
	cr_assert_eq(shmq_list_set(l, 0, big, huge), -ENOSPC);
	cr_assert_eq(shmq_list_set(l, -1, big, huge), -ENOSPC);
	cr_assert_eq(t_live_bytes(h), live, "failed calls changed the bytes in use");
	EXPECT_FULL("after failed huge calls");
	free(big);
	/* Middle inserts and deletes may need a new array: done, or -ENOSPC
	 * with nothing changed. */
	r = shmq_list_del(l, n / 2);
	cr_assert(r == 0 || r == -ENOSPC, "del in the middle of a full heap: %d", r);
	if (r == 0) {
		memmove(ids + n / 2, ids + n / 2 + 1, (n - n / 2 - 1) * sizeof(*ids));
		n--;
	}
	EXPECT_FULL("after a del in the middle");
	/* Pops at the ends always work, and make room. */
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(shmq_list_pop(l, -1, buf, sizeof(buf)), NOSPC_VAL, "pop(-1) #%d", i);
		cr_assert_eq(shmq_list_pop(l, 0, buf, sizeof(buf)), NOSPC_VAL, "pop(0) #%d", i);
	}
	n -= 20;
	memmove(ids, ids + 10, n * sizeof(*ids));
	EXPECT_FULL("after pops");
	for (int i = 0; i < 15; i++) {
		tmsg_fill(v, 5000 + (uint32_t)i, 0, NOSPC_VAL);
		r = shmq_list_append(l, v, NOSPC_VAL);
		cr_assert_eq(r, 0, "append %d after popping 20: %d", i, r);
	}
#undef EXPECT_FULL
	free(ids);
	shmq_list_close(l);
	shmq_heap_close(h);
}
