/* CSP channels (include/shmq/chan.h), across real processes.
 *
 * Calls and errors: create, open, end_open, close, name, end_name, roles,
 * buffer; -EINVAL for bad arguments (nothing created), -ENOENT, -EEXIST,
 * names of another kind, -EBADF for an end without the role, -EMSGSIZE (a
 * message larger than the reader's buffer stays for a bigger read; one over
 * SHMQ_CHAN_MSG_MAX is refused), 0-byte and 16 MiB messages, timeouts (0:
 * -EAGAIN, finite: -ETIMEDOUT no earlier than asked) that move nothing.
 * Rendezvous: a write returns only after a reader started the read that
 * took it; a write that timed out is never delivered later; blocked writers
 * are served in the order they offered. Buffered: exactly N writes go in
 * without a reader, FIFO. Any-to-any: 4 writer and 4 reader processes,
 * exactly-once, rendezvous and buffered. Retire: last writer (readers drain,
 * then -EPIPE), last reader (writers, blocked ones too, get -EPIPE), final,
 * one retire for every holder of an end (fork, end_open); an end's last
 * holder closing, exiting, exec()ing or dying (SIGKILL) retires it; ends
 * passed by name to an exec'd process. Poison: blocked readers, writers and
 * alternations return -ECANCELED, later calls too, buffered messages are
 * dropped. Alternation: priority, fairness, skip, timeout, mixed guards,
 * guards that fire with an error, -EINVAL; two processes alternating
 * {write to the other, read from the other} over four channels for 100k
 * rounds each, exactly-once and never deadlocked. SIGKILL: workers doing
 * reads, writes and alternations are killed at random moments: nobody hangs,
 * nothing is received twice or without having been offered by a guard that
 * fired, losses stay within the kills of readers, and the heap is back to
 * its baseline once everything is closed.
 *
 * Only the parent (the Criterion test process) asserts; children report
 * through shared memory (t_shared, outside the heap under test), pipes and
 * exit status. The by-name tests exec this very binary: with SHMQ_CHAN_PEER
 * in its environment it runs chan_peer() (a constructor) instead of
 * Criterion. */
#include <criterion/criterion.h>

#include "common.h"
#include "shmq/chan.h"

#include <inttypes.h>

#define LIVE (2 * T_SEC * T_SCALE)       /* "returns, not a hang" bound */
#define DEATH (1000 * T_MS * T_SCALE)    /* a death is acted on within this */
#define LONG_WAIT (10 * T_SEC * T_SCALE) /* a wait that must be cut short */
#define SHORT (50 * T_MS)                /* a timeout that must expire */
#define MAXK 16
#define NCH 8
#define LO TMSG_HDR /* message lengths: self-describing (common.h) */
#define HI 300
#define NPROD 1024u /* producer ids in messages: below this */
#define ANY_PROD 0xffffffffu
#define SYNC_ROUNDS 20

/* ================================================================ helpers == */

/* What a child runs (kid_job): one call, or a loop, described here. */
enum jop {
	J_READ,       /* one read: the message (prod, seq) or, prod ANY_PROD, any */
	J_READ_ALL,   /* reads until an error; count them, check order per prod */
	J_WRITE,      /* one write of (prod, seq) */
	J_ALT,        /* one alternation over g[] */
	J_HOLD,       /* wait for cmd: 1 close c[ch] and hold on, 2 exit, 3 exec sleep */
	J_RETIRE,     /* retire roles of c[ch] and exit */
	J_POISON,     /* poison c[ch] */
};

struct jguard {
	int ch, op;
	uint32_t prod, seq; /* write: the message; read: prod ANY_PROD, any */
	size_t cap;         /* read: 0 means a full buffer */
};

struct job {
	int op;
	int ch;
	uint32_t prod, seq;
	int64_t timeout;
	int64_t delay; /* nap before the call */
	size_t cap;    /* read: 0 means a full buffer */
	int roles;
	int flags;
	int n;
	struct jguard g[8];
};

struct sh;
struct karg {
	struct sh *s;
	int idx;
};

/* State shared by the parent and its children. Handles are process-local
 * pointers inherited by fork(). */
struct sh {
	shmq_heap *h;
	shmq_chan *c[NCH];
	char heap_name[64];
	char name[NCH][SHMQ_NAME_MAX];
	int pfd[2];
	struct job job[MAXK];
	_Atomic uint32_t ready, go, done;
	_Atomic uint32_t cmd[MAXK];
	_Atomic uint32_t errors;
	_Atomic int32_t last_err, err_where;
	_Atomic int64_t ret[MAXK], res[MAXK];
	_Atomic int64_t t_call[MAXK], t_ret[MAXK];
	_Atomic uint32_t got_prod[MAXK], got_seq[MAXK], nread[MAXK];
	_Atomic int64_t t_read[SYNC_ROUNDS]; /* sync_reader: when each read started */
	struct karg args[MAXK];
	/* Any-to-any and the hard case. */
	_Atomic uint64_t wf[4][4], rf[4][4], alts[4], dups, order;
	_Atomic uint64_t bits[(4 * 20000 + 63) / 64];
};

static struct sh *sh_new(void)
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	s->h = t_mkheap(NULL, 0);
	s->pfd[0] = s->pfd[1] = -1;
	return s;
}

/* A named heap (for processes that open it by name). */
static struct sh *sh_new_named(void)
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	snprintf(s->heap_name, sizeof(s->heap_name), "%.60s", t_name("chan"));
	s->h = t_mkheap(s->heap_name, 0);
	s->pfd[0] = s->pfd[1] = -1;
	return s;
}

static void sh_free(struct sh *s)
{
	for (int i = 0; i < NCH; i++)
		if (s->c[i])
			cr_assert_eq(shmq_chan_close(s->c[i]), 0);
	int r = shmq_heap_close(s->h);
	cr_assert_eq(r, 0, "heap_close: %d", r);
	if (s->heap_name[0])
		shmq_unlink(s->heap_name);
	if (s->pfd[0] >= 0)
		close(s->pfd[0]);
	if (s->pfd[1] >= 0)
		close(s->pfd[1]);
	munmap(s, sizeof(*s));
}

static shmq_chan *mkchan(shmq_heap *h, const char *name, uint32_t buffer)
{
	shmq_chan *c = NULL;
	int r = shmq_chan_create(h, name, buffer, &c);
	cr_assert_eq(r, 0, "chan_create(%s, %u): %d", name ? name : "NULL", buffer, r);
	cr_assert_not_null(c);
	return c;
}

static shmq_chan *chopen(shmq_heap *h, const char *name, int roles)
{
	shmq_chan *c = NULL;
	int r = shmq_chan_open(h, name, roles, &c);
	cr_assert_eq(r, 0, "chan_open(%s, roles %d): %d", name, roles, r);
	cr_assert_not_null(c);
	return c;
}

/* Channel i of s: created with buffer, its name kept for children. */
static shmq_chan *sh_chan(struct sh *s, int i, uint32_t buffer)
{
	s->c[i] = mkchan(s->h, NULL, buffer);
	snprintf(s->name[i], sizeof(s->name[i]), "%s", shmq_chan_name(s->c[i]));
	return s->c[i];
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

static void reap_ok(pid_t pid, const char *who)
{
	t_reap_ok(pid, who, 10 * LIVE);
}

static void reap_killed(pid_t pid)
{
	t_reap_killed(pid, LIVE);
}

/* pid sleeps in the kernel, and still does 20 ms later: blocked in the call
 * it announced (not passing through a short sleep on its way there). */
static struct sh *cur; /* the last struct sh that start() used */
static pid_t cur_pid[MAXK];

static void blocked(pid_t pid)
{
	long ret = 0;
	for (int k = 0; cur && k < MAXK; k++)
		if (cur_pid[k] == pid)
			ret = (long)cur->ret[k];
	for (int i = 0; i < 3; i++) {
		if (i)
			t_nap(20 * T_MS);
		cr_assert_eq(t_wait_sleeping(pid, LIVE), 0, "child %d does not %s (state %c, its call "
			     "returned %ld)", (int)pid, i ? "stay blocked" : "block",
			     t_proc_state(pid), ret);
	}
}

/* One byte from a pipe within timeout: the byte, -ETIMEDOUT, or -EPIPE at
 * EOF. */
static int read_byte(int fd, int64_t timeout_ns)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t deadline = t_now() + timeout_ns;
	for (;;) {
		int64_t left = deadline - t_now();
		if (left < 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, (int)(left / T_MS) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		unsigned char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		return n == 1 ? c : n == 0 ? -EPIPE : -errno;
	}
}

/* ------------------------------------------------------------- messages -- */

static size_t mlen(uint32_t prod, uint32_t seq)
{
	return tmsg_len(prod, seq, LO, HI);
}

static int put(shmq_chan *c, uint32_t prod, uint32_t seq, int64_t timeout)
{
	unsigned char b[HI];
	size_t n = mlen(prod, seq);
	tmsg_fill(b, prod, seq, n);
	return shmq_chan_write(c, b, n, timeout);
}

/* Read one message (cap 0: a full buffer); a message that is not a valid
 * one of ours gives -EBADMSG. */
static ssize_t get(shmq_chan *c, size_t cap, int64_t timeout, uint32_t *prod, uint32_t *seq)
{
	unsigned char b[HI + 64];
	ssize_t n = shmq_chan_read(c, b, cap ? cap : sizeof(b), timeout);
	if (n < 0)
		return n;
	if (tmsg_check(b, (size_t)n, NPROD, LO, HI, prod, seq) != TMSG_OK)
		return -EBADMSG;
	return n;
}

#define PUT_OK(c, p, q, t)                                                                \
	do {                                                                              \
		int r_ = put((c), (p), (q), (t));                                         \
		cr_assert_eq(r_, 0, "write of (%u, %u): %d", (unsigned)(p), (unsigned)(q), r_); \
	} while (0)

/* The next message is exactly (prod, seq). */
static void expect_msg(shmq_chan *c, uint32_t prod, uint32_t seq, int64_t timeout, const char *what)
{
	uint32_t p = 0, q = 0;
	ssize_t n = get(c, 0, timeout, &p, &q);
	cr_assert_eq(n, (ssize_t)mlen(prod, seq), "%s: read gave %zd, want message (%u, %u) of %zu bytes",
		     what, n, prod, seq, mlen(prod, seq));
	cr_assert(p == prod && q == seq, "%s: got message (%u, %u), want (%u, %u)", what, p, q, prod,
		  seq);
}

/* A read that must return err. */
static void expect_read_err(shmq_chan *c, int64_t timeout, ssize_t err, const char *what)
{
	unsigned char b[HI + 64];
	ssize_t n = shmq_chan_read(c, b, sizeof(b), timeout);
	cr_assert_eq(n, err, "%s: read gave %zd, want %zd", what, n, err);
}

#define ASSERT_TIMES_OUT(call, timeout)                                                   \
	do {                                                                              \
		int64_t t0_ = t_now();                                                    \
		long r_ = (long)(call);                                                   \
		int64_t el_ = t_now() - t0_;                                              \
		cr_assert_eq(r_, -ETIMEDOUT, #call ": %ld", r_);                          \
		cr_assert_geq(el_, (timeout), #call " returned after %lld us, before its " \
			      "timeout", (long long)(el_ / 1000));                       \
		cr_assert_lt(el_, (timeout) + LIVE, #call " took %lld ms",               \
			     (long long)(el_ / T_MS));                                   \
	} while (0)

static uint32_t objects(shmq_heap *h)
{
	return t_hstat(h).objects;
}

/* ------------------------------------------------------- generic children -- */

static int64_t job_alt(struct sh *s, int idx, struct job *j)
{
	struct shmq_guard g[8];
	unsigned char wb[8][HI], rb[8][HI + 64];
	for (int i = 0; i < j->n; i++) {
		struct jguard *jg = &j->g[i];
		g[i] = (struct shmq_guard){ .chan = s->c[jg->ch], .op = jg->op, .result = 12345 };
		if (jg->op == SHMQ_GUARD_WRITE) {
			size_t n = mlen(jg->prod, jg->seq);
			tmsg_fill(wb[i], jg->prod, jg->seq, n);
			g[i].wbuf = wb[i];
			g[i].wlen = n;
		} else {
			g[i].rbuf = rb[i];
			g[i].rcap = jg->cap ? jg->cap : sizeof(rb[i]);
		}
	}
	s->t_call[idx] = t_now();
	int r = shmq_alt(g, (unsigned)j->n, j->flags, j->timeout);
	if (r < 0 || r >= j->n)
		return r;
	s->res[idx] = g[r].result;
	if (g[r].op == SHMQ_GUARD_READ && g[r].result >= 0) {
		uint32_t p = 0, q = 0;
		if (tmsg_check(rb[r], (size_t)g[r].result, NPROD, LO, HI, &p, &q) != TMSG_OK)
			fail(s, 2, -EBADMSG);
		s->got_prod[idx] = p;
		s->got_seq[idx] = q;
		if (j->g[r].prod != ANY_PROD && (p != j->g[r].prod || q != j->g[r].seq))
			fail(s, 3, (int)q);
	}
	return r;
}

static int kid_job(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	struct job *j = &s->job[k->idx];
	shmq_chan *c = s->c[j->ch];
	int64_t r = 0;
	uint32_t p = 0, q = 0;
	t_post(&s->ready);
	if (j->delay)
		t_nap(j->delay);
	s->t_call[k->idx] = t_now();
	switch (j->op) {
	case J_READ:
		r = get(c, j->cap, j->timeout, &p, &q);
		if (r >= 0) {
			s->got_prod[k->idx] = p;
			s->got_seq[k->idx] = q;
			if (j->prod != ANY_PROD && (p != j->prod || q != j->seq))
				fail(s, 1, (int)q);
		}
		break;
	case J_READ_ALL: {
		int64_t last[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
		while ((r = get(c, j->cap, j->timeout, &p, &q)) >= 0) {
			s->nread[k->idx]++;
			s->got_prod[k->idx] = p;
			s->got_seq[k->idx] = q;
			if (p < 8 && (int64_t)q <= last[p])
				atomic_fetch_add(&s->order, 1);
			if (p < 8)
				last[p] = q;
		}
		break;
	}
	case J_WRITE:
		r = put(c, j->prod, j->seq, j->timeout);
		break;
	case J_ALT:
		r = job_alt(s, k->idx, j);
		break;
	case J_HOLD: {
		t_await(&s->cmd[k->idx], 1, -1);
		uint32_t cmd = atomic_load(&s->cmd[k->idx]);
		if (cmd == 2)
			return 0;
		if (cmd == 3) {
			execl("/bin/sleep", "sleep", "60", (char *)NULL);
			return 3;
		}
		r = shmq_chan_close(c);
		s->ret[k->idx] = r;
		t_post(&s->done);
		for (;;)
			pause();
	}
	case J_RETIRE:
		r = shmq_chan_retire(c, j->roles);
		break;
	case J_POISON:
		r = shmq_chan_poison(c);
		break;
	}
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	t_post(&s->done);
	return 0;
}

/* Start child idx running job j; returns once it said it is ready. */
static pid_t start(struct sh *s, int idx, struct job j)
{
	uint32_t before = atomic_load(&s->ready);
	s->job[idx] = j;
	s->ret[idx] = 12345;
	s->t_ret[idx] = 0;
	pid_t pid = spawn(s, idx, kid_job);
	cur = s;
	cur_pid[idx] = pid;
	cr_assert_eq(t_await(&s->ready, before + 1, LIVE), 0, "child %d not ready", idx);
	return pid;
}

/* Wait for child idx to finish its job (it then exits 0) and return what
 * its call returned. */
static int64_t finish(struct sh *s, int idx, pid_t pid)
{
	reap_ok(pid, "child");
	return s->ret[idx];
}

/* The child's call returned within `within` of t0 (0: none yet, after a
 * short look). */
static int64_t returned_at(struct sh *s, int idx, int64_t within)
{
	int64_t deadline = t_now() + within;
	while (!s->t_ret[idx] && t_now() < deadline)
		t_nap(T_MS);
	return s->t_ret[idx];
}

/* =========================================================== basic calls == */

Test(chan, create_open_close_names_roles_buffer)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	uint32_t base = objects(h);
	shmq_chan *a = mkchan(h, NULL, 0);
	const char *an = shmq_chan_name(a);
	cr_assert(an && an[0], "an anonymous channel has a name");
	cr_assert_lt(strlen(an), SHMQ_NAME_MAX);
	cr_assert_not_null(shmq_chan_end_name(a));
	cr_assert_eq(shmq_chan_roles(a), SHMQ_RDWR, "create gives SHMQ_RDWR");
	cr_assert_eq(shmq_chan_buffer(a), 0);

	shmq_chan *b = mkchan(h, NULL, 5);
	cr_assert_str_neq(shmq_chan_name(b), an, "two anonymous channels, one name");
	cr_assert_eq(shmq_chan_buffer(b), 5);

	shmq_chan *n = mkchan(h, "ch", 3);
	cr_assert_str_eq(shmq_chan_name(n), "ch");
	cr_assert_eq(shmq_chan_buffer(n), 3);
	shmq_chan *r = chopen(h, "ch", SHMQ_RD);
	shmq_chan *w = chopen(h, "ch", SHMQ_WR);
	shmq_chan *z = chopen(h, "ch", 0);
	shmq_chan *rw = chopen(h, "ch", SHMQ_RDWR);
	cr_assert_eq(shmq_chan_roles(r), SHMQ_RD);
	cr_assert_eq(shmq_chan_roles(w), SHMQ_WR);
	cr_assert_eq(shmq_chan_roles(z), 0);
	cr_assert_eq(shmq_chan_roles(rw), SHMQ_RDWR);
	cr_assert_eq(shmq_chan_buffer(r), 3, "open sees the creation's buffer");
	cr_assert_str_eq(shmq_chan_name(r), "ch");
	cr_assert_str_eq(shmq_chan_name(z), "ch");
	/* Every end has a name of its own. */
	const char *ends[5] = { shmq_chan_end_name(n), shmq_chan_end_name(r), shmq_chan_end_name(w),
				shmq_chan_end_name(z), shmq_chan_end_name(rw) };
	for (int i = 0; i < 5; i++) {
		cr_assert(ends[i] && ends[i][0], "end %d has no name", i);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(ends[i], ends[j], "ends %d and %d share a name", i, j);
	}
	/* end_open: another handle on the same end. */
	shmq_chan *r2 = NULL;
	cr_assert_eq(shmq_chan_end_open(h, ends[1], &r2), 0);
	cr_assert_str_eq(shmq_chan_end_name(r2), ends[1]);
	cr_assert_str_eq(shmq_chan_name(r2), "ch");
	cr_assert_eq(shmq_chan_roles(r2), SHMQ_RD);
	cr_assert_eq(shmq_chan_buffer(r2), 3);
	/* The handles work: a message through w comes out of r2, then of rw. */
	PUT_OK(w, 0, 1, 0);
	PUT_OK(rw, 0, 2, 0);
	expect_msg(r2, 0, 1, 0, "through end_open's handle");
	expect_msg(rw, 0, 2, 0, "through an RDWR end");

	shmq_chan *mx = mkchan(h, NULL, SHMQ_CHAN_BUFFER_MAX);
	cr_assert_eq(shmq_chan_buffer(mx), (int)SHMQ_CHAN_BUFFER_MAX);

	cr_assert_eq(shmq_chan_close(r2), 0);
	cr_assert_eq(shmq_chan_close(mx), 0);
	cr_assert_eq(shmq_chan_close(r), 0);
	cr_assert_eq(shmq_chan_close(w), 0);
	cr_assert_eq(shmq_chan_close(z), 0);
	cr_assert_eq(shmq_chan_close(rw), 0);
	cr_assert_eq(shmq_chan_close(n), 0);
	cr_assert_eq(shmq_chan_close(a), 0);
	cr_assert_eq(shmq_chan_close(b), 0);
	/* The named one stays until removed. */
	shmq_chan *again = chopen(h, "ch", SHMQ_RD);
	cr_assert_eq(shmq_chan_buffer(again), 3);
	cr_assert_eq(shmq_heap_remove(h, "ch"), 0);
	shmq_chan *x = NULL;
	cr_assert_eq(shmq_chan_open(h, "ch", SHMQ_RD, &x), -ENOENT, "open after remove");
	cr_assert_eq(shmq_chan_close(again), 0);
	cr_assert_eq(objects(h), base, "objects left after every channel closed");
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, anonymous_channel_opened_by_name_freed_with_its_last_end)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	uint32_t base = objects(h);
	uint64_t live0 = t_live_bytes(h);
	shmq_chan *a = mkchan(h, NULL, 4);
	char name[SHMQ_NAME_MAX];
	snprintf(name, sizeof(name), "%s", shmq_chan_name(a));
	shmq_chan *r = chopen(h, name, SHMQ_RD);
	PUT_OK(a, 1, 1, 0);
	PUT_OK(a, 1, 2, 0);
	cr_assert_eq(shmq_chan_close(a), 0);
	expect_msg(r, 1, 1, 0, "after the creator closed");
	cr_assert_eq(shmq_chan_close(r), 0);
	shmq_chan *x = NULL;
	int rc = shmq_chan_open(h, name, SHMQ_RD, &x);
	cr_assert_eq(rc, -ENOENT, "open of a freed anonymous channel: %d", rc);
	cr_assert_eq(objects(h), base);
	/* Its memory (and the buffered message's) is reusable: many rounds in
	 * bounded memory. */
	uint64_t live[12];
	for (int i = 0; i < 12; i++) {
		shmq_chan *c = mkchan(h, NULL, 8);
		for (uint32_t m = 0; m < 8; m++)
			PUT_OK(c, 2, m, 0);
		cr_assert_eq(shmq_chan_close(c), 0);
		live[i] = t_live_bytes(h);
	}
	t_assert_bounded(live, 12, "anonymous channels with buffered messages");
	cr_assert_lt(live[11], live0 + T_RECLAIM_SLACK, "memory not given back");
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, bad_arguments_einval_change_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, "c", 2), *o = NULL;
	uint32_t base = objects(h);
	unsigned char buf[64];
	char longname[SHMQ_NAME_MAX + 1];
	memset(longname, 'n', SHMQ_NAME_MAX);
	longname[SHMQ_NAME_MAX] = 0;

	cr_assert_eq(shmq_chan_create(NULL, "x", 0, &o), -EINVAL);
	cr_assert_eq(shmq_chan_create(h, "x", 0, NULL), -EINVAL);
	cr_assert_eq(shmq_chan_create(h, "x", SHMQ_CHAN_BUFFER_MAX + 1, &o), -EINVAL);
	cr_assert_eq(shmq_chan_create(h, NULL, UINT32_MAX, &o), -EINVAL);
	cr_assert_eq(shmq_chan_create(h, "", 0, &o), -EINVAL, "empty name");
	cr_assert_eq(shmq_chan_create(h, longname, 0, &o), -EINVAL, "name of SHMQ_NAME_MAX bytes");
	cr_assert_eq(shmq_chan_open(NULL, "c", SHMQ_RD, &o), -EINVAL);
	cr_assert_eq(shmq_chan_open(h, NULL, SHMQ_RD, &o), -EINVAL);
	cr_assert_eq(shmq_chan_open(h, "c", SHMQ_RD, NULL), -EINVAL);
	cr_assert_eq(shmq_chan_open(h, "c", 4, &o), -EINVAL, "roles 4");
	cr_assert_eq(shmq_chan_open(h, "c", -1, &o), -EINVAL, "roles -1");
	cr_assert_eq(shmq_chan_open(h, "c", 7, &o), -EINVAL, "roles 7");
	cr_assert_eq(shmq_chan_end_open(NULL, shmq_chan_end_name(c), &o), -EINVAL);
	cr_assert_eq(shmq_chan_end_open(h, NULL, &o), -EINVAL);
	cr_assert_eq(shmq_chan_end_open(h, shmq_chan_end_name(c), NULL), -EINVAL);
	cr_assert_eq(shmq_chan_close(NULL), -EINVAL);
	cr_assert_null(shmq_chan_name(NULL));
	cr_assert_null(shmq_chan_end_name(NULL));
	cr_assert_eq(shmq_chan_roles(NULL), -EINVAL);
	cr_assert_eq(shmq_chan_buffer(NULL), -EINVAL);

	PUT_OK(c, 0, 1, 0);
	cr_assert_eq(shmq_chan_write(NULL, buf, 1, 0), -EINVAL);
	cr_assert_eq(shmq_chan_write(c, NULL, 1, 0), -EINVAL, "buf NULL, len 1");
	cr_assert_eq(shmq_chan_read(NULL, buf, sizeof(buf), 0), -EINVAL);
	cr_assert_eq(shmq_chan_read(c, NULL, 16, 0), -EINVAL, "buf NULL, cap 16");
	cr_assert_eq(shmq_chan_retire(NULL, SHMQ_WR), -EINVAL);
	cr_assert_eq(shmq_chan_retire(c, 4), -EINVAL, "retire roles 4");
	cr_assert_eq(shmq_chan_retire(c, -1), -EINVAL, "retire roles -1");
	cr_assert_eq(shmq_chan_poison(NULL), -EINVAL);
	cr_assert_eq(shmq_chan_roles(c), SHMQ_RDWR, "a bad retire retired something");

	/* Nothing created, nothing moved: the one message is still there, and
	 * only it. */
	cr_assert_eq(objects(h), base, "a failed call created an object");
	cr_assert_eq(shmq_chan_open(h, "x", SHMQ_RD, &o), -ENOENT, "a failed create left a name");
	expect_msg(c, 0, 1, 0, "the message written before the bad calls");
	expect_read_err(c, 0, -EAGAIN, "after it");
	cr_assert_eq(shmq_chan_close(c), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, missing_enoent_existing_eexist_other_kinds_einval)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, "ch", 0), *o = NULL;
	shmq_lock *l = NULL, *lo = NULL;
	cr_assert_eq(shmq_lock_create(h, "lk", 0, &l), 0);
	uint32_t base = objects(h);

	cr_assert_eq(shmq_chan_open(h, "nope", SHMQ_RD, &o), -ENOENT);
	cr_assert_eq(shmq_chan_end_open(h, "nope", &o), -ENOENT);
	cr_assert_eq(shmq_chan_create(h, "ch", 0, &o), -EEXIST);
	cr_assert_eq(shmq_chan_create(h, "ch", 4, &o), -EEXIST, "another buffer, same name");
	cr_assert_eq(shmq_chan_create(h, "lk", 0, &o), -EEXIST, "a lock's name");
	cr_assert_eq(shmq_chan_open(h, "lk", SHMQ_RD, &o), -EINVAL, "a lock opened as a channel");
	cr_assert_eq(shmq_lock_open(h, "ch", &lo), -EINVAL, "a channel opened as a lock");
	int r = shmq_chan_end_open(h, "lk", &o);
	cr_assert(r == -EINVAL || r == -ENOENT, "a lock opened as an end: %d", r);
	r = shmq_chan_end_open(h, "ch", &o);
	cr_assert(r == -EINVAL || r == -ENOENT, "a channel opened as an end: %d", r);
	r = shmq_chan_open(h, shmq_chan_end_name(c), SHMQ_RD, &o);
	cr_assert(r == -EINVAL || r == -ENOENT, "an end opened as a channel: %d", r);
	cr_assert_eq(objects(h), base, "a failed call created an object");

	/* An end nobody holds any more cannot be opened. */
	shmq_chan *w = chopen(h, "ch", SHMQ_WR);
	char wname[SHMQ_NAME_MAX];
	snprintf(wname, sizeof(wname), "%s", shmq_chan_end_name(w));
	cr_assert_eq(shmq_chan_close(w), 0);
	r = shmq_chan_end_open(h, wname, &o);
	cr_assert_eq(r, -ENOENT, "end_open of a closed end: %d", r);

	cr_assert_eq(shmq_chan_close(c), 0);
	cr_assert_eq(shmq_lock_close(l), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, ebadf_for_an_end_without_the_role)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, "ch", 4);
	shmq_chan *r = chopen(h, "ch", SHMQ_RD), *w = chopen(h, "ch", SHMQ_WR);
	shmq_chan *z = chopen(h, "ch", 0);
	unsigned char buf[HI + 64];
	PUT_OK(w, 0, 1, 0);
	cr_assert_eq(put(r, 0, 2, 0), -EBADF, "write on a read end");
	cr_assert_eq(put(z, 0, 3, 0), -EBADF, "write on an end with no role");
	cr_assert_eq(put(r, 0, 2, SHORT), -EBADF, "with a timeout too");
	cr_assert_eq(shmq_chan_read(w, buf, sizeof(buf), 0), -EBADF, "read on a write end");
	cr_assert_eq(shmq_chan_read(z, buf, sizeof(buf), 0), -EBADF, "read on an end with no role");
	cr_assert_eq(shmq_chan_read(w, buf, sizeof(buf), SHORT), -EBADF);
	/* Alternation: such a guard fires with -EBADF, nothing moves. */
	struct shmq_guard g[2] = {
		{ .chan = w, .op = SHMQ_GUARD_READ, .rbuf = buf, .rcap = sizeof(buf) },
	};
	int i = shmq_alt(g, 1, SHMQ_ALT_PRI, 0);
	cr_assert_eq(i, 0, "alt with a read guard on a write end: %d", i);
	cr_assert_eq(g[0].result, -EBADF, "its result: %zd", g[0].result);
	unsigned char m[HI];
	g[0] = (struct shmq_guard){ .chan = r, .op = SHMQ_GUARD_WRITE, .wbuf = m, .wlen = 20 };
	i = shmq_alt(g, 1, SHMQ_ALT_PRI, SHORT);
	cr_assert_eq(i, 0, "alt with a write guard on a read end: %d", i);
	cr_assert_eq(g[0].result, -EBADF);
	/* The one message is there, and only it. */
	expect_msg(r, 0, 1, 0, "the first message");
	expect_read_err(r, 0, -EAGAIN, "nothing else moved");
	cr_assert_eq(shmq_chan_poison(z), 0, "an end with no role poisons");
	expect_read_err(r, 0, -ECANCELED, "after the poison");
	shmq_chan_close(r);
	shmq_chan_close(w);
	shmq_chan_close(z);
	shmq_chan_close(c);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, emsgsize_small_buffer_leaves_the_message_for_a_bigger_read)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, NULL, 4);
	unsigned char v[100], buf[200];
	tmsg_fill(v, 3, 3, sizeof(v));
	cr_assert_eq(shmq_chan_write(c, v, sizeof(v), 0), 0);
	PUT_OK(c, 0, 9, 0);
	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(shmq_chan_read(c, buf, 99, 0), -EMSGSIZE);
	cr_assert_eq(shmq_chan_read(c, buf, 1, SHORT), -EMSGSIZE);
	cr_assert_eq(shmq_chan_read(c, NULL, 0, 0), -EMSGSIZE);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xee, "-EMSGSIZE wrote byte %zu", i);
	cr_assert_eq(shmq_chan_read(c, buf, 100, 0), 100, "cap exactly the length");
	cr_assert(memcmp(buf, v, 100) == 0);
	cr_assert_eq(buf[100], 0xee, "read wrote past the message");
	expect_msg(c, 0, 9, 0, "the next one, in order");
	/* A 0-byte message: NULL with 0, read into NULL with cap 0. */
	cr_assert_eq(shmq_chan_write(c, NULL, 0, 0), 0);
	cr_assert_eq(shmq_chan_write(c, "ignored", 0, 0), 0);
	cr_assert_eq(shmq_chan_read(c, NULL, 0, 0), 0);
	memset(buf, 0xee, sizeof(buf));
	cr_assert_eq(shmq_chan_read(c, buf, sizeof(buf), 0), 0);
	cr_assert_eq(buf[0], 0xee, "a 0-byte read wrote a byte");
	expect_read_err(c, 0, -EAGAIN, "empty");
	shmq_chan_close(c);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* Rendezvous: a too-small read in one process leaves the writer (in another)
 * blocked, and the message for a bigger read. */
Test(chan, emsgsize_on_a_rendezvous_keeps_the_writer_waiting, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, 0);
	pid_t w = start(s, 0, (struct job){ .op = J_WRITE, .ch = 0, .prod = 5, .seq = 7,
					     .timeout = LONG_WAIT });
	blocked(w);
	unsigned char buf[HI + 64];
	cr_assert_eq(shmq_chan_read(c, buf, 4, 0), -EMSGSIZE);
	cr_assert_eq(shmq_chan_read(c, buf, 4, SHORT), -EMSGSIZE);
	t_nap(50 * T_MS);
	cr_assert_eq(s->t_ret[0], 0, "the writer returned though nobody took its message");
	expect_msg(c, 5, 7, 0, "the bigger read");
	cr_assert_eq(finish(s, 0, w), 0, "the writer's write");
	sh_free(s);
}

Test(chan, emsgsize_write_over_msg_max_and_a_max_size_message_round_trips,
     .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, NULL, 1), *rv = mkchan(h, NULL, 0);
	size_t max = SHMQ_CHAN_MSG_MAX;
	unsigned char *big = malloc(max + 1), *back = malloc(max + 1);
	cr_assert(big && back);
	for (size_t i = 0; i <= max; i++)
		big[i] = (unsigned char)(t_mix(i / 8) >> (i % 8 * 8));
	cr_assert_eq(shmq_chan_write(c, big, max + 1, 0), -EMSGSIZE);
	cr_assert_eq(shmq_chan_write(c, big, max + 1, SHORT), -EMSGSIZE);
	cr_assert_eq(shmq_chan_write(rv, big, max + 1, 0), -EMSGSIZE);
	cr_assert_eq(shmq_chan_write(c, big, SIZE_MAX, 0), -EMSGSIZE);
	expect_read_err(c, 0, -EAGAIN, "nothing went in");
	cr_assert_eq(shmq_chan_write(c, big, max, 0), 0, "a message of SHMQ_CHAN_MSG_MAX bytes");
	cr_assert_eq(shmq_chan_read(c, back, max - 1, 0), -EMSGSIZE);
	memset(back, 0, max + 1);
	cr_assert_eq(shmq_chan_read(c, back, max + 1, 0), (ssize_t)max);
	cr_assert(memcmp(back, big, max) == 0, "the 16 MiB message came back different");
	shmq_chan_close(c);
	shmq_chan_close(rv);
	free(big);
	free(back);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan, timeouts_zero_eagain_finite_etimedout_nothing_moved, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *rv = mkchan(h, NULL, 0), *b1 = mkchan(h, NULL, 1);
	unsigned char buf[HI + 64];
	/* Rendezvous, alone: nobody to meet. */
	cr_assert_eq(shmq_chan_read(rv, buf, sizeof(buf), 0), -EAGAIN);
	cr_assert_eq(put(rv, 0, 1, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_chan_read(rv, buf, sizeof(buf), SHORT), SHORT);
	ASSERT_TIMES_OUT(put(rv, 0, 2, SHORT), SHORT);
	cr_assert_eq(shmq_chan_read(rv, buf, sizeof(buf), 0), -EAGAIN, "a timed-out write was kept");
	/* Buffered 1: one goes in, the next waits. */
	cr_assert_eq(shmq_chan_read(b1, buf, sizeof(buf), 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_chan_read(b1, buf, sizeof(buf), SHORT), SHORT);
	PUT_OK(b1, 0, 3, 0);
	cr_assert_eq(put(b1, 0, 4, 0), -EAGAIN);
	ASSERT_TIMES_OUT(put(b1, 0, 5, SHORT), SHORT);
	expect_msg(b1, 0, 3, 0, "the one that went in");
	cr_assert_eq(shmq_chan_read(b1, buf, sizeof(buf), 0), -EAGAIN,
		     "a write that failed left its message");
	shmq_chan_close(rv);
	shmq_chan_close(b1);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* ============================================================ rendezvous == */

/* The reader naps, notes the time, then reads; the writer's write may only
 * return after that time. 20 rounds with naps of 0 to 40 ms, then the
 * other way round (the reader waits first, the writer comes late). */
static int sync_reader(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	uint64_t rng = 0x5eed;
	t_post(&s->ready);
	for (uint32_t i = 0; i < SYNC_ROUNDS; i++) {
		t_await(&s->go, i + 1, -1);
		t_nap((int64_t)(t_mix(rng++) % 40) * T_MS);
		s->t_read[i] = t_now();
		uint32_t p = 0, q = 0;
		ssize_t n = get(s->c[0], 0, LONG_WAIT, &p, &q);
		if (n < 0 || p != 1 || q != i)
			fail(s, 10, (int)n);
	}
	return 0;
}

Test(chan_rendezvous, write_returns_only_after_a_reader_started_taking_it, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, 0);
	pid_t pid = spawn(s, 0, sync_reader);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	for (uint32_t i = 0; i < SYNC_ROUNDS; i++) {
		t_post(&s->go);
		PUT_OK(c, 1, i, LONG_WAIT);
		int64_t t_w = t_now();
		int64_t t_r = s->t_read[i];
		cr_assert(t_r != 0 && t_w >= t_r,
			  "round %u: the write returned %lld us before the reader started reading", i,
			  (long long)((t_r - t_w) / 1000));
	}
	reap_ok(pid, "reader");
	T_ASSERT_NO_ERRORS(s);

	/* The reader first: it blocks, the writer comes 200 ms later; the
	 * reader returns after the write started, the write returns. */
	pid = start(s, 1, (struct job){ .op = J_READ, .ch = 0, .prod = 2, .seq = 0,
					 .timeout = LONG_WAIT });
	blocked(pid);
	cr_assert_eq(s->t_ret[1], 0, "the reader returned with nobody writing");
	int64_t t0 = t_now();
	PUT_OK(c, 2, 0, 0); /* timeout 0: a reader waits */
	cr_assert_eq(finish(s, 1, pid), (int64_t)mlen(2, 0));
	cr_assert_geq(s->t_ret[1], t0, "the reader returned before the write");

	/* The writer first (in the child): its write returns only after the
	 * parent's read started, 200 ms later. */
	pid = start(s, 2, (struct job){ .op = J_WRITE, .ch = 0, .prod = 3, .seq = 0,
					 .timeout = LONG_WAIT });
	blocked(pid);
	t_nap(200 * T_MS);
	cr_assert_eq(s->t_ret[2], 0, "a rendezvous write returned with no reader");
	int64_t t_read = t_now();
	expect_msg(c, 3, 0, 0, "a waiting writer's message, timeout 0");
	cr_assert_eq(finish(s, 2, pid), 0);
	cr_assert_geq(s->t_ret[2], t_read, "the write returned before the read started");
	T_ASSERT_NO_ERRORS(s);
	sh_free(s);
}

Test(chan_rendezvous, timed_out_write_is_never_delivered_later, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, 0);
	/* In this process: the write times out, a reader that comes after
	 * finds nothing. */
	ASSERT_TIMES_OUT(put(c, 1, 1, 100 * T_MS), 100 * T_MS);
	pid_t pid = start(s, 0, (struct job){ .op = J_READ, .ch = 0, .prod = ANY_PROD,
					       .timeout = 300 * T_MS });
	cr_assert_eq(finish(s, 0, pid), -ETIMEDOUT, "a reader after the timed-out write got %lld",
		     (long long)s->ret[0]);
	/* In a child: its write times out; the parent reads afterwards. */
	pid = start(s, 1, (struct job){ .op = J_WRITE, .ch = 0, .prod = 1, .seq = 2,
					 .timeout = 100 * T_MS });
	cr_assert_eq(finish(s, 1, pid), -ETIMEDOUT);
	expect_read_err(c, 0, -EAGAIN, "after the child's write timed out");
	expect_read_err(c, 200 * T_MS, -ETIMEDOUT, "after the child's write timed out");
	/* Many short writes time out while a reader comes and goes with
	 * short timeouts: every message a reader gets was acknowledged. */
	uint32_t acked = 0;
	pid = start(s, 2, (struct job){ .op = J_READ_ALL, .ch = 0, .timeout = 300 * T_MS });
	for (uint32_t i = 0; i < 200; i++) {
		int r = put(c, 4, i, (int64_t)(i % 5) * 100 * 1000);
		cr_assert(r == 0 || r == -ETIMEDOUT || r == -EAGAIN, "write %u: %d", i, r);
		if (r == 0)
			acked++;
	}
	reap_ok(pid, "reader");
	cr_assert_eq(s->ret[2], -ETIMEDOUT);
	cr_assert_eq(s->nread[2], acked, "the reader got %u messages, %u writes returned 0",
		     s->nread[2], acked);
	cr_assert_eq(s->order, 0);
	sh_free(s);
}

/* Three writers block one after the other; the reader gets their messages
 * in that order. */
Test(chan_rendezvous, blocked_writers_are_served_in_offer_order, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, 0);
	pid_t w[3];
	for (uint32_t i = 0; i < 3; i++) {
		w[i] = start(s, (int)i, (struct job){ .op = J_WRITE, .ch = 0, .prod = 7, .seq = i,
						      .timeout = LONG_WAIT });
		blocked(w[i]);
	}
	for (uint32_t i = 0; i < 3; i++)
		expect_msg(c, 7, i, LIVE, "in offer order");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(finish(s, i, w[i]), 0);
	sh_free(s);
}

/* ============================================================== buffered == */

static int fill_writer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	uint32_t n = (uint32_t)s->job[k->idx].n;
	for (uint32_t i = 0; i < n; i++) {
		int r = put(s->c[0], 8, i, 0);
		if (r != 0)
			return fail(s, 20, r), 1;
	}
	s->ret[k->idx] = put(s->c[0], 8, n, 0);
	s->res[k->idx] = put(s->c[0], 8, n + 1, SHORT);
	return 0;
}

static void exactly_n(uint32_t n)
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, n);
	/* N writes of a child with no reader anywhere: all go in at once. */
	s->job[0].n = (int)n;
	pid_t pid = spawn(s, 0, fill_writer);
	reap_ok(pid, "writer");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], -EAGAIN, "write %u of a buffer of %u: %lld", n + 1, n,
		     (long long)s->ret[0]);
	cr_assert_eq(s->res[0], -ETIMEDOUT, "write %u with a timeout: %lld", n + 2,
		     (long long)s->res[0]);
	ASSERT_TIMES_OUT(put(c, 9, 0, SHORT), SHORT);
	/* Readers (another child, then the parent) get them in order. */
	pid = start(s, 1, (struct job){ .op = J_READ, .ch = 0, .prod = 8, .seq = 0, .timeout = 0 });
	cr_assert_eq(finish(s, 1, pid), (int64_t)mlen(8, 0));
	for (uint32_t i = 1; i < n; i++)
		expect_msg(c, 8, i, 0, "FIFO");
	expect_read_err(c, 0, -EAGAIN, "exactly N were kept");
	/* Room again for exactly N. */
	for (uint32_t i = 0; i < n; i++)
		PUT_OK(c, 9, i, 0);
	cr_assert_eq(put(c, 9, n, 0), -EAGAIN);
	for (uint32_t i = 0; i < n; i++)
		expect_msg(c, 9, i, 0, "FIFO, second round");
	T_ASSERT_NO_ERRORS(s);
	sh_free(s);
}

Test(chan_buffered, exactly_one_write_goes_in_without_a_reader_fifo, .timeout = T_TIMEOUT(30))
{
	exactly_n(1);
}

Test(chan_buffered, exactly_three_writes_go_in_without_a_reader_fifo, .timeout = T_TIMEOUT(30))
{
	exactly_n(3);
}

Test(chan_buffered, exactly_64_writes_go_in_without_a_reader_fifo, .timeout = T_TIMEOUT(30))
{
	exactly_n(64);
}

/* A full channel: writers block, each read makes room for the first of
 * them, order kept (the buffer, then the blocked writers in offer order). */
Test(chan_buffered, full_channel_blocks_writers_until_room_in_order, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_chan *c = sh_chan(s, 0, 2);
	PUT_OK(c, 1, 0, 0);
	PUT_OK(c, 1, 1, 0);
	pid_t w[2];
	for (uint32_t i = 0; i < 2; i++) {
		w[i] = start(s, (int)i, (struct job){ .op = J_WRITE, .ch = 0, .prod = 1, .seq = 2 + i,
						      .timeout = LONG_WAIT });
		blocked(w[i]);
	}
	expect_msg(c, 1, 0, 0, "the first buffered one");
	cr_assert_neq(returned_at(s, 0, LIVE), 0, "the first blocked writer did not get the room");
	t_nap(50 * T_MS);
	cr_assert_eq(s->t_ret[1], 0, "the second writer got in though the channel is full");
	expect_msg(c, 1, 1, 0, "the second buffered one");
	cr_assert_neq(returned_at(s, 1, LIVE), 0, "the second blocked writer did not get the room");
	expect_msg(c, 1, 2, 0, "the first blocked writer's");
	expect_msg(c, 1, 3, 0, "the second blocked writer's");
	expect_read_err(c, 0, -EAGAIN, "nothing else");
	for (int i = 0; i < 2; i++)
		cr_assert_eq(finish(s, i, w[i]), 0);
	sh_free(s);
}

/* =========================================================== any-to-any == */

#define MP_W 4
#define MP_R 4
#define MP_PER (T_SCALE > 1 ? 1500u : 5000u)

/* Writers and readers open their own ends by name (a writer's own end, or
 * the shared one, ch 1), close what they inherited, and write MP_PER
 * messages each / read until -EPIPE. */
static int mp_kid(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	bool writer = k->idx < MP_W;
	bool shared_end = s->job[0].flags; /* writers share the one WR end c[1] */
	/* s->c is shared memory: read here, never written. */
	shmq_chan *keep = writer && shared_end ? s->c[1] : NULL, *c = keep;
	int r;
	if (!c && (r = shmq_chan_open(s->h, s->name[0], writer ? SHMQ_WR : SHMQ_RD, &c)) < 0)
		return fail(s, 30, r), 1;
	for (int i = 0; i < NCH; i++)
		if (s->c[i] && s->c[i] != keep && (r = shmq_chan_close(s->c[i])) < 0)
			return fail(s, 31, r), 1;
	t_post(&s->ready);
	t_await(&s->go, 1, -1);
	if (writer) {
		for (uint32_t q = 0; q < MP_PER; q++)
			if ((r = put(c, (uint32_t)k->idx, q, LONG_WAIT)) < 0)
				return fail(s, 32, r), 1;
		return shmq_chan_close(c) == 0 ? 0 : 2;
	}
	int64_t last[MP_W] = { -1, -1, -1, -1 };
	uint32_t p, q;
	ssize_t n;
	while ((n = get(c, 0, LONG_WAIT, &p, &q)) >= 0) {
		if (p >= MP_W || q >= MP_PER) {
			fail(s, 33, (int)p);
			continue;
		}
		if ((int64_t)q <= last[p])
			atomic_fetch_add(&s->order, 1);
		last[p] = q;
		s->nread[k->idx]++;
		uint64_t bit = 1ull << ((p * MP_PER + q) % 64);
		if (atomic_fetch_or(&s->bits[(p * MP_PER + q) / 64], bit) & bit)
			atomic_fetch_add(&s->dups, 1);
	}
	if (n != -EPIPE)
		fail(s, 34, (int)n);
	return shmq_chan_close(c) == 0 ? 0 : 2;
}

static void any_to_any(uint32_t buffer, bool shared_end)
{
	struct sh *s = sh_new();
	uint32_t base = objects(s->h);
	sh_chan(s, 0, buffer);
	s->job[0].flags = shared_end;
	if (shared_end)
		s->c[1] = chopen(s->h, s->name[0], SHMQ_WR);
	pid_t pids[MP_W + MP_R];
	for (int i = 0; i < MP_W + MP_R; i++)
		pids[i] = spawn(s, i, mp_kid);
	cr_assert_eq(t_await(&s->ready, MP_W + MP_R, 10 * LIVE), 0, "children not ready");
	/* The parent lets go: the writers' ends are the only writer ends. */
	cr_assert_eq(shmq_chan_close(s->c[0]), 0);
	s->c[0] = NULL;
	if (shared_end) {
		cr_assert_eq(shmq_chan_close(s->c[1]), 0);
		s->c[1] = NULL;
	}
	int64_t t0 = t_now();
	t_set(&s->go, 1);
	for (int i = 0; i < MP_W + MP_R; i++)
		t_reap_ok(pids[i], i < MP_W ? "writer" : "reader", 60 * T_SEC * T_SCALE);
	int64_t el = t_now() - t0;
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->dups, 0, "%llu messages received twice", (unsigned long long)s->dups);
	cr_assert_eq(s->order, 0, "%llu per-writer order violations", (unsigned long long)s->order);
	uint64_t total = 0;
	for (int i = MP_W; i < MP_W + MP_R; i++)
		total += s->nread[i];
	cr_assert_eq(total, (uint64_t)MP_W * MP_PER, "received %llu of %u",
		     (unsigned long long)total, MP_W * MP_PER);
	for (uint32_t m = 0; m < MP_W * MP_PER; m++)
		cr_assert(atomic_load(&s->bits[m / 64]) >> (m % 64) & 1, "message (%u, %u) lost",
			  m / MP_PER, m % MP_PER);
	cr_log_info("any-to-any, buffer %u%s: %u messages in %.0f ms", buffer,
		    shared_end ? ", one shared writer end" : "", MP_W * MP_PER, (double)el / T_MS);
	cr_assert_eq(objects(s->h), base, "objects left after every end closed");
	sh_free(s);
}

Test(chan_mp, rendezvous_4_writers_4_readers_exactly_once, .timeout = T_TIMEOUT(120))
{
	any_to_any(0, false);
}

Test(chan_mp, rendezvous_4_writers_sharing_one_end_4_readers_exactly_once,
     .timeout = T_TIMEOUT(120))
{
	any_to_any(0, true);
}

Test(chan_mp, buffered_4_writers_4_readers_exactly_once, .timeout = T_TIMEOUT(120))
{
	any_to_any(8, false);
}

Test(chan_mp, buffered_1_4_writers_sharing_one_end_4_readers_exactly_once,
     .timeout = T_TIMEOUT(120))
{
	any_to_any(1, true);
}

/* ================================================================ retire == */

/* c[0] created by the parent with `buffer`; c[1] a WR end, c[2] an RD end
 * of it; the creator's end retired (roles 0). */
static void wr_rd_ends(struct sh *s, uint32_t buffer)
{
	sh_chan(s, 0, buffer);
	s->c[1] = chopen(s->h, s->name[0], SHMQ_WR);
	s->c[2] = chopen(s->h, s->name[0], SHMQ_RD);
	cr_assert_eq(shmq_chan_retire(s->c[0], SHMQ_RDWR), 0);
	cr_assert_eq(shmq_chan_roles(s->c[0]), 0);
	cr_assert_eq(shmq_chan_roles(s->c[1]), SHMQ_WR, "retiring one end retired another");
	cr_assert_eq(shmq_chan_roles(s->c[2]), SHMQ_RD, "retiring one end retired another");
}

Test(chan_retire, last_writer_retires_readers_drain_then_epipe, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	wr_rd_ends(s, 3);
	shmq_chan *w = s->c[1], *r = s->c[2];
	shmq_chan *w2 = chopen(s->h, s->name[0], SHMQ_WR);
	for (uint32_t i = 0; i < 3; i++)
		PUT_OK(w, 2, i, 0);
	/* One of two writers retires: nothing changes for readers. */
	cr_assert_eq(shmq_chan_retire(w2, SHMQ_WR), 0);
	cr_assert_eq(shmq_chan_roles(w2), 0);
	cr_assert_eq(put(w2, 2, 99, 0), -EPIPE, "write on a retired end");
	expect_msg(r, 2, 0, 0, "buffered, one writer left");
	/* A reader blocked in another process... */
	pid_t pid = start(s, 0, (struct job){ .op = J_READ_ALL, .ch = 2, .timeout = LONG_WAIT });
	/* ...drains what is buffered, then waits; the last writer retires. */
	int64_t deadline = t_now() + LIVE;
	while (s->nread[0] < 2 && t_now() < deadline)
		t_nap(T_MS);
	cr_assert_eq(s->nread[0], 2, "the reader did not drain the buffer");
	blocked(pid);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_chan_retire(w, SHMQ_WR), 0);
	cr_assert_eq(finish(s, 0, pid), -EPIPE, "the blocked reader: %lld", (long long)s->ret[0]);
	cr_assert_lt(s->t_ret[0] - t0, DEATH, "-EPIPE %lld ms after the retire",
		     (long long)((s->t_ret[0] - t0) / T_MS));
	cr_assert_eq(s->order, 0);
	cr_assert_eq(s->got_seq[0], 2);
	expect_read_err(r, 0, -EPIPE, "timeout 0 after the last writer retired");
	expect_read_err(r, LONG_WAIT, -EPIPE, "a long timeout: -EPIPE at once");
	cr_assert_eq(put(w, 2, 3, 0), -EPIPE, "write on the retired end");
	cr_assert_eq(shmq_chan_retire(w, SHMQ_WR), 0, "retiring again");

	/* Buffered messages outlive the writers: written, writers retired,
	 * then read by a reader that comes later. */
	struct sh *t = sh_new();
	wr_rd_ends(t, 4);
	for (uint32_t i = 0; i < 4; i++)
		PUT_OK(t->c[1], 3, i, 0);
	cr_assert_eq(shmq_chan_retire(t->c[1], SHMQ_WR), 0);
	for (uint32_t i = 0; i < 4; i++)
		expect_msg(t->c[2], 3, i, 0, "drained after the writers retired");
	expect_read_err(t->c[2], 0, -EPIPE, "then end of data");
	cr_assert_eq(shmq_chan_close(w2), 0);
	sh_free(t);
	sh_free(s);
}

Test(chan_retire, last_reader_retires_writers_get_epipe_blocked_ones_too, .timeout = T_TIMEOUT(30))
{
	for (uint32_t buffer = 0; buffer <= 2; buffer += 2) {
		struct sh *s = sh_new();
		wr_rd_ends(s, buffer);
		shmq_chan *w = s->c[1], *r = s->c[2];
		shmq_chan *r2 = chopen(s->h, s->name[0], SHMQ_RD);
		for (uint32_t i = 0; i < buffer; i++)
			PUT_OK(w, 4, i, 0);
		/* A writer blocked in another process (rendezvous: no reader
		 * reading; buffered: full). */
		pid_t pid = start(s, 0, (struct job){ .op = J_WRITE, .ch = 1, .prod = 4, .seq = 9,
						       .timeout = LONG_WAIT });
		blocked(pid);
		cr_assert_eq(shmq_chan_retire(r2, SHMQ_RD), 0);
		t_nap(50 * T_MS);
		cr_assert_eq(s->t_ret[0], 0, "buffer %u: the writer returned with a reader left",
			     buffer);
		int64_t t0 = t_now();
		cr_assert_eq(shmq_chan_retire(r, SHMQ_RD), 0);
		cr_assert_eq(finish(s, 0, pid), -EPIPE, "buffer %u: the blocked writer: %lld", buffer,
			     (long long)s->ret[0]);
		cr_assert_lt(s->t_ret[0] - t0, DEATH, "-EPIPE %lld ms after the retire",
			     (long long)((s->t_ret[0] - t0) / T_MS));
		cr_assert_eq(put(w, 4, 10, 0), -EPIPE, "buffer %u: write, timeout 0", buffer);
		cr_assert_eq(put(w, 4, 11, LONG_WAIT), -EPIPE, "buffer %u: write, long timeout",
			     buffer);
		cr_assert_eq(shmq_chan_close(r2), 0);
		sh_free(s);
	}
}

/* Retirement is final: once a reader saw the end of data (-EPIPE), an end
 * opened later with SHMQ_WR finds the channel retired: its write fails and
 * nothing comes out after the end of data. */
Test(chan_retire, retirement_is_final_no_data_after_the_end_of_data_from_a_late_writer_end)
{
	struct sh *s = sh_new();
	wr_rd_ends(s, 2);
	PUT_OK(s->c[1], 5, 0, 0);
	cr_assert_eq(shmq_chan_retire(s->c[1], SHMQ_WR), 0);
	expect_msg(s->c[2], 5, 0, 0, "what was buffered");
	expect_read_err(s->c[2], 0, -EPIPE, "end of data");
	shmq_chan *w2 = chopen(s->h, s->name[0], SHMQ_WR);
	int r = put(w2, 5, 1, 0);
	unsigned char b[HI + 64];
	ssize_t n = shmq_chan_read(s->c[2], b, sizeof(b), 0);
	cr_assert_eq(n, -EPIPE, "a read after the end of data gave %zd (the late writer end's write "
		     "returned %d)", n, r);
	cr_assert_eq(r, -EPIPE, "write on an end opened after every writer retired: %d", r);
	shmq_chan *r2 = chopen(s->h, s->name[0], SHMQ_RD);
	expect_read_err(r2, 0, -EPIPE, "a reader end opened later");
	expect_read_err(r2, LONG_WAIT, -EPIPE, "a reader end opened later, long timeout");
	cr_assert_eq(shmq_chan_close(w2), 0);
	cr_assert_eq(shmq_chan_close(r2), 0);
	sh_free(s);
}

/* And once every reader end retired, a reader end opened later does not
 * bring writes back. */
Test(chan_retire, retirement_is_final_a_late_reader_end_brings_no_writes_back)
{
	struct sh *t = sh_new();
	wr_rd_ends(t, 2);
	cr_assert_eq(shmq_chan_retire(t->c[2], SHMQ_RD), 0);
	cr_assert_eq(put(t->c[1], 5, 2, 0), -EPIPE, "write, every reader retired");
	shmq_chan *r3 = chopen(t->h, t->name[0], SHMQ_RD);
	int r = put(t->c[1], 5, 3, 0);
	cr_assert_eq(r, -EPIPE, "write after every reader retired, a reader end opened since: %d", r);
	cr_assert_eq(shmq_chan_close(r3), 0);
	sh_free(t);
}

Test(chan_retire, named_channel_outlives_its_ends_but_stays_retired)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, "ch", 2);
	PUT_OK(c, 1, 0, 0);
	cr_assert_eq(shmq_chan_close(c), 0); /* its last holder: every role retired */
	shmq_chan *w = chopen(h, "ch", SHMQ_WR), *r = chopen(h, "ch", SHMQ_RD);
	cr_assert_eq(shmq_chan_buffer(w), 2);
	cr_assert_eq(put(w, 1, 1, 0), -EPIPE, "write once every reader end retired");
	unsigned char b[HI + 64];
	ssize_t n = shmq_chan_read(r, b, sizeof(b), 0);
	cr_assert(n == -EPIPE || n == (ssize_t)mlen(1, 0), "read: %zd", n);
	if (n > 0)
		expect_read_err(r, 0, -EPIPE, "after the buffered one");
	cr_assert_eq(shmq_chan_close(w), 0);
	cr_assert_eq(shmq_chan_close(r), 0);
	cr_assert_eq(shmq_heap_remove(h, "ch"), 0);
	cr_assert_eq(objects(h), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* An end shared by fork (parent and child hold the same end): one retire by
 * either retires it for both. Also two handles of one process (end_open). */
Test(chan_retire, one_retire_retires_an_end_for_every_holder, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	wr_rd_ends(s, 4);
	pid_t pid = start(s, 0, (struct job){ .op = J_RETIRE, .ch = 1, .roles = SHMQ_WR });
	cr_assert_eq(finish(s, 0, pid), 0, "retire in the child");
	cr_assert_eq(shmq_chan_roles(s->c[1]), 0, "the parent's handle of the end kept SHMQ_WR");
	cr_assert_eq(put(s->c[1], 6, 0, 0), -EPIPE, "write through the parent's handle");
	expect_read_err(s->c[2], 0, -EPIPE, "the only writer end retired");

	/* Reader side, from the parent: the child's blocked write fails. */
	struct sh *t = sh_new();
	wr_rd_ends(t, 0);
	pid = start(t, 0, (struct job){ .op = J_WRITE, .ch = 1, .prod = 6, .seq = 1,
					 .timeout = LONG_WAIT });
	blocked(pid);
	pid_t rd = start(t, 1, (struct job){ .op = J_HOLD, .ch = 2 }); /* holds the RD end too */
	cr_assert_eq(shmq_chan_retire(t->c[2], SHMQ_RD), 0);
	cr_assert_eq(finish(t, 0, pid), -EPIPE, "a child holds the RD end as well, yet it is retired");
	t_set(&t->cmd[1], 2);
	reap_ok(rd, "holder");

	/* Two handles in one process: end_open, then retire through one. */
	struct sh *u = sh_new();
	wr_rd_ends(u, 4);
	shmq_chan *w2 = NULL;
	cr_assert_eq(shmq_chan_end_open(u->h, shmq_chan_end_name(u->c[1]), &w2), 0);
	cr_assert_eq(shmq_chan_roles(w2), SHMQ_WR);
	cr_assert_eq(shmq_chan_retire(w2, SHMQ_WR), 0);
	cr_assert_eq(shmq_chan_roles(u->c[1]), 0, "the other handle of the end");
	cr_assert_eq(put(u->c[1], 6, 2, 0), -EPIPE);
	expect_read_err(u->c[2], 0, -EPIPE, "the end is retired");
	cr_assert_eq(shmq_chan_close(w2), 0);
	sh_free(u);
	sh_free(t);
	sh_free(s);
}

/* ------------------------------------------------- deaths of an end's holder -- */

enum death { D_KILL_REAPED, D_KILL_ZOMBIE, D_EXIT, D_CLOSE, D_EXEC };

/* The only holder of the writer end (a child) dies, exits, execs or closes
 * it. With a buffer, it wrote two messages first; with a rendezvous, it is
 * blocked in a write when it is killed (the offer is withdrawn). Two reader
 * children are blocked: they drain, then get -EPIPE within DEATH. */
static void writer_holder_goes(uint32_t buffer, enum death how)
{
	struct sh *s = sh_new();
	wr_rd_ends(s, buffer);
	for (uint32_t i = 0; buffer && i < 2; i++)
		PUT_OK(s->c[1], 11, i, 0);
	bool blocked_write = !buffer && (how == D_KILL_REAPED || how == D_KILL_ZOMBIE);
	pid_t holder;
	if (how == D_EXEC) /* close-on-exec: its EOF tells the holder exec'd */
		cr_assert_eq(pipe2(s->pfd, O_CLOEXEC), 0);
	if (blocked_write) {
		holder = start(s, 0, (struct job){ .op = J_WRITE, .ch = 1, .prod = 11, .seq = 99,
						    .timeout = LONG_WAIT });
		blocked(holder);
	} else {
		holder = start(s, 0, (struct job){ .op = J_HOLD, .ch = 1 });
	}
	if (s->pfd[1] >= 0) { /* only the holder has the write end */
		close(s->pfd[1]);
		s->pfd[1] = -1;
	}
	/* The parent lets go: the child is the end's only holder. */
	cr_assert_eq(shmq_chan_close(s->c[1]), 0);
	s->c[1] = NULL;
	/* Readers (forked now: they never held the writer end), blocked
	 * before the holder goes; when the holder is blocked in a write they
	 * would take its message, so they come after its death instead (and
	 * must not find the withdrawn offer). */
	pid_t rd[2];
	struct job jr = { .op = J_READ_ALL, .ch = 2, .timeout = LONG_WAIT };
	if (!blocked_write) {
		for (int i = 0; i < 2; i++)
			rd[i] = start(s, 1 + i, jr);
		int64_t deadline = t_now() + LIVE;
		while (s->nread[1] + s->nread[2] < (buffer ? 2 : 0) && t_now() < deadline)
			t_nap(T_MS);
		for (int i = 0; i < 2; i++)
			blocked(rd[i]);
		cr_assert_eq(s->done, 0, "a reader returned while the writer end is held");
	}
	int64_t t0 = t_now();
	switch (how) {
	case D_KILL_REAPED:
		kill(holder, SIGKILL);
		reap_killed(holder);
		break;
	case D_KILL_ZOMBIE: /* dead once a zombie: SIGKILL lands asynchronously */
		kill(holder, SIGKILL);
		while (t_proc_state(holder) != 'Z' && t_now() - t0 < LIVE)
			t_nap(T_MS);
		break;
	case D_EXIT:
		t_set(&s->cmd[0], 2);
		break;
	case D_CLOSE:
		t_set(&s->cmd[0], 1);
		break;
	case D_EXEC:
		t_set(&s->cmd[0], 3);
		cr_assert_eq(read_byte(s->pfd[0], LIVE), -EPIPE, "the holder did not exec");
		cr_assert_neq(t_proc_state(holder), 'Z', "sleep died");
		break;
	}
	const char *what = how == D_KILL_REAPED ? "killed" : how == D_KILL_ZOMBIE ? "killed (zombie)"
			   : how == D_EXIT ? "exited" : how == D_CLOSE ? "closed it" : "exec'd";
	if (blocked_write)
		for (int i = 0; i < 2; i++)
			rd[i] = start(s, 1 + i, jr);
	for (int i = 0; i < 2; i++) {
		int st;
		int r = t_wait(rd[i], &st, LONG_WAIT);
		if (r < 0)
			t_kill_reap(rd[i]);
		cr_assert_eq(r, 0, "reader %d still blocked after the holder %s", i, what);
		cr_assert_eq(s->ret[1 + i], -EPIPE, "reader %d after the holder %s: %lld", i, what,
			     (long long)s->ret[1 + i]);
		cr_assert_lt(s->t_ret[1 + i] - t0, DEATH, "reader %d: -EPIPE %lld ms after the holder %s",
			     i, (long long)((s->t_ret[1 + i] - t0) / T_MS), what);
	}
	cr_assert_eq(s->nread[1] + s->nread[2], buffer ? 2 : 0,
		     "readers got %u messages (a withdrawn offer delivered?)", s->nread[1] + s->nread[2]);
	cr_assert_eq(s->order, 0);
	expect_read_err(s->c[2], 0, -EPIPE, "the parent's read");
	if (how == D_CLOSE) {
		cr_assert_eq(s->ret[0], 0, "the holder's close");
		t_kill_reap(holder);
	} else if (how == D_EXIT) {
		reap_ok(holder, "holder");
	} else if (how != D_KILL_REAPED) {
		t_kill_reap(holder);
	}
	T_ASSERT_NO_ERRORS(s);
	sh_free(s);
}

Test(chan_retire, only_writer_holder_sigkilled_in_a_rendezvous_write_readers_epipe,
     .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(0, D_KILL_REAPED);
}

Test(chan_retire, only_writer_holder_sigkilled_zombie_readers_epipe, .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(0, D_KILL_ZOMBIE);
}

Test(chan_retire, only_writer_holder_sigkilled_readers_drain_then_epipe, .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(4, D_KILL_REAPED);
}

Test(chan_retire, only_writer_holder_exits_readers_epipe, .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(0, D_EXIT);
}

Test(chan_retire, only_writer_holder_closes_readers_drain_then_epipe, .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(3, D_CLOSE);
}

Test(chan_retire, only_writer_holder_execs_readers_epipe, .timeout = T_TIMEOUT(30))
{
	writer_holder_goes(0, D_EXEC);
}

/* After the last holder of the last reader end died or exited: its roles
 * end when the death is noticed, by a waiter within about 0.1 s; a write
 * that need not wait (a dead reader still registered as waiting, room in
 * the buffer) may not notice (chan.h: "a writer hands a message only to a
 * reader not yet known to be dead"). So at most `slack` writes may still
 * return 0; then -EPIPE, each write returning within DEATH, and -EPIPE
 * stays. Returns how many were accepted (reported as a warning). */
static uint32_t epipe_once_noticed(shmq_chan *w, uint32_t slack, const char *what)
{
	uint32_t accepted = 0;
	for (uint32_t i = 0;; i++) {
		int64_t t0 = t_now();
		int r = put(w, 99, i, LONG_WAIT);
		int64_t el = t_now() - t0;
		cr_assert_lt(el, DEATH, "%s: write %u returned %d after %lld ms", what, i, r,
			     (long long)(el / T_MS));
		if (r == -EPIPE)
			break;
		cr_assert_eq(r, 0, "%s: write %u: %d", what, i, r);
		accepted++;
		cr_assert_leq(accepted, slack, "%s: %u writes returned 0 after the last reader went",
			      what, accepted);
	}
	cr_assert_eq(put(w, 99, 1000, 0), -EPIPE, "%s: -EPIPE did not stay", what);
	if (accepted)
		cr_log_info("%s: %u write(s) returned 0 after the last reader had gone (messages "
			    "lost: handed to a dead reader or buffered for nobody)", what, accepted);
	return accepted;
}

/* The only reader end's holder dies (blocked in a read, or holding): a
 * blocked writer gets -EPIPE within DEATH, later writes too. */
static void reader_holder_killed(uint32_t buffer, bool in_read)
{
	struct sh *s = sh_new();
	wr_rd_ends(s, buffer);
	for (uint32_t i = 0; i < buffer; i++)
		PUT_OK(s->c[1], 12, i, 0);
	pid_t holder;
	if (in_read && !buffer) {
		holder = start(s, 0, (struct job){ .op = J_READ, .ch = 2, .prod = ANY_PROD,
						    .timeout = LONG_WAIT });
		blocked(holder);
	} else {
		holder = start(s, 0, (struct job){ .op = J_HOLD, .ch = 2 });
	}
	cr_assert_eq(shmq_chan_close(s->c[2]), 0);
	s->c[2] = NULL;
	/* A writer child, blocked: rendezvous with the holder not reading,
	 * or a full buffer. For the holder blocked in a read, the writer
	 * comes after its death. */
	pid_t w = -1;
	if (!in_read || buffer) {
		w = start(s, 1, (struct job){ .op = J_WRITE, .ch = 1, .prod = 12, .seq = 50,
					       .timeout = LONG_WAIT });
		blocked(w);
	}
	int64_t t0 = t_now();
	kill(holder, SIGKILL);
	reap_killed(holder);
	if (w > 0) {
		cr_assert_eq(finish(s, 1, w), -EPIPE, "the blocked writer after the reader's death: %lld",
			     (long long)s->ret[1]);
		cr_assert_lt(s->t_ret[1] - t0, DEATH, "-EPIPE %lld ms after the death",
			     (long long)((s->t_ret[1] - t0) / T_MS));
	}
	epipe_once_noticed(s->c[1], in_read && !buffer ? 1 : 0,
			   in_read ? "the only reader killed in a read" : "the only reader killed");
	T_ASSERT_NO_ERRORS(s);
	sh_free(s);
}

Test(chan_retire, only_reader_holder_sigkilled_blocked_writer_epipe, .timeout = T_TIMEOUT(30))
{
	reader_holder_killed(0, false);
}

Test(chan_retire, only_reader_sigkilled_in_a_read_writers_epipe_not_handed_to_the_dead,
     .timeout = T_TIMEOUT(30))
{
	reader_holder_killed(0, true);
}

Test(chan_retire, only_reader_holder_sigkilled_full_buffer_writer_epipe, .timeout = T_TIMEOUT(30))
{
	reader_holder_killed(2, false);
}

/* The parent closes its handle right after the fork: the child holds the end
 * from the fork on. Also: a holder that is not the last one closes (or
 * dies): nothing retires. */
Test(chan_retire, ends_held_from_the_fork_on_and_until_the_last_holder_goes,
     .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	wr_rd_ends(s, 0);
	s->job[0] = (struct job){ .op = J_WRITE, .ch = 1, .prod = 13, .seq = 0, .timeout = LONG_WAIT,
				  .delay = 100 * T_MS };
	pid_t w = spawn(s, 0, kid_job);
	shmq_chan *wr = s->c[1];
	cr_assert_eq(shmq_chan_close(wr), 0); /* at once: the child holds it */
	expect_msg(s->c[2], 13, 0, LONG_WAIT, "the child's write after the parent closed");
	cr_assert_eq(finish(s, 0, w), 0);
	s->c[1] = NULL; /* the child has read it */
	expect_read_err(s->c[2], LONG_WAIT, -EPIPE, "the child exited: end of data");

	/* Parent and two children hold a WR end; one child closes it, the
	 * other is killed: the parent's writes still reach a reader. */
	struct sh *t = sh_new();
	wr_rd_ends(t, 0);
	pid_t a = start(t, 0, (struct job){ .op = J_HOLD, .ch = 1 });
	pid_t b = start(t, 1, (struct job){ .op = J_HOLD, .ch = 1 });
	t_set(&t->cmd[0], 1);
	cr_assert_eq(t_await(&t->done, 1, LIVE), 0);
	cr_assert_eq(t->ret[0], 0, "the child's close");
	kill(b, SIGKILL);
	reap_killed(b);
	pid_t rd = start(t, 2, (struct job){ .op = J_READ, .ch = 2, .prod = 13, .seq = 1,
					      .timeout = LONG_WAIT });
	PUT_OK(t->c[1], 13, 1, LONG_WAIT);
	cr_assert_eq(finish(t, 2, rd), (int64_t)mlen(13, 1));
	cr_assert_eq(shmq_chan_roles(t->c[1]), SHMQ_WR);
	t_kill_reap(a);
	T_ASSERT_NO_ERRORS(t);
	T_ASSERT_NO_ERRORS(s);
	sh_free(t);
	sh_free(s);
}

/* ------------------------------------------------- ends passed by name -- */

/* The exec'd peer: this binary run with SHMQ_CHAN_PEER set and arguments
 *   chan-peer MODE HEAP END N FD
 * It opens heap HEAP by name and the end END by name (shmq_chan_end_open),
 * writes 'o' to fd FD (opened: the parent may let go of its handle), then
 * MODE "write": writes messages (20, 0..N-1); "read": reads N and checks
 * them; and exits without closing anything. Exit status: 0 good, 2 usage,
 * 3 heap open, 4 end open, 5 write failed, 6 read failed or wrong message.
 * glibc passes argc, argv and envp to constructors. */
__attribute__((constructor)) static void chan_peer(int argc, char **argv, char **envp)
{
	(void)envp;
	if (!getenv("SHMQ_CHAN_PEER"))
		return;
	if (argc != 6)
		_exit(2);
	unsigned n = (unsigned)strtoul(argv[4], NULL, 10);
	int fd = atoi(argv[5]);
	shmq_heap *h;
	shmq_chan *c;
	if (shmq_heap_open(argv[2], 0, &h) < 0)
		_exit(3);
	if (shmq_chan_end_open(h, argv[3], &c) < 0)
		_exit(4);
	if (write(fd, "o", 1) != 1)
		_exit(2);
	close(fd);
	for (uint32_t i = 0; i < n; i++) {
		if (!strcmp(argv[1], "write")) {
			if (put(c, 20, i, LONG_WAIT) != 0)
				_exit(5);
		} else {
			uint32_t p = 0, q = 0;
			if (get(c, 0, LONG_WAIT, &p, &q) < 0 || p != 20 || q != i)
				_exit(6);
		}
	}
	_exit(0);
}

static pid_t exec_peer(struct sh *s, const char *mode, const char *end, unsigned n)
{
	char ns[16], fds[16];
	cr_assert_eq(pipe2(s->pfd, O_CLOEXEC), 0);
	snprintf(ns, sizeof(ns), "%u", n);
	int wfd = s->pfd[1]; /* s is shared: the parent resets it while the child runs */
	snprintf(fds, sizeof(fds), "%d", wfd);
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		fcntl(wfd, F_SETFD, 0); /* the peer keeps this one */
		setenv("SHMQ_CHAN_PEER", "1", 1);
		unsetenv("BXFI_MAP"); /* or Criterion's runtime takes it for one of its workers */
		execl("/proc/self/exe", "chan-peer", mode, s->heap_name, end, ns, fds, (char *)NULL);
		_exit(127);
	}
	close(s->pfd[1]);
	s->pfd[1] = -1;
	int b = read_byte(s->pfd[0], 10 * LIVE);
	if (b != 'o') {
		int st = 0;
		t_wait(pid, &st, LIVE);
		char sb[32];
		cr_assert_eq(b, 'o', "the peer did not open the end: %d, %s", b,
			     t_status_str(st, sb, sizeof(sb)));
	}
	return pid;
}

static void peer_ok(pid_t pid)
{
	int st;
	int r = t_wait(pid, &st, 10 * LIVE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "the peer hangs");
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer: %s", t_status_str(st, sb, sizeof(sb)));
}

static void writer_end_by_name(uint32_t buffer)
{
	struct sh *s = sh_new_named();
	wr_rd_ends(s, buffer);
	pid_t pid = exec_peer(s, "write", shmq_chan_end_name(s->c[1]), 50);
	cr_assert_eq(shmq_chan_close(s->c[1]), 0); /* the peer is the end's only holder */
	s->c[1] = NULL;
	for (uint32_t i = 0; i < 50; i++)
		expect_msg(s->c[2], 20, i, LONG_WAIT, "from the exec'd writer");
	peer_ok(pid);
	int64_t t0 = t_now();
	expect_read_err(s->c[2], LONG_WAIT, -EPIPE, "the peer, the end's only holder, exited");
	cr_assert_lt(t_now() - t0, DEATH, "-EPIPE after %lld ms", (long long)((t_now() - t0) / T_MS));
	sh_free(s);
}

static void reader_end_by_name(uint32_t buffer)
{
	struct sh *s = sh_new_named();
	wr_rd_ends(s, buffer);
	pid_t pid = exec_peer(s, "read", shmq_chan_end_name(s->c[2]), 50);
	cr_assert_eq(shmq_chan_close(s->c[2]), 0);
	s->c[2] = NULL;
	for (uint32_t i = 0; i < 50; i++)
		PUT_OK(s->c[1], 20, i, LONG_WAIT);
	peer_ok(pid);
	epipe_once_noticed(s->c[1], buffer, "the exec'd reader, the end's only holder, exited");
	sh_free(s);
}

Test(chan_retire, writer_end_passed_by_name_to_an_exec_d_process, .timeout = T_TIMEOUT(60))
{
	writer_end_by_name(0);
	writer_end_by_name(4);
}

Test(chan_retire, reader_end_passed_by_name_to_an_exec_d_process, .timeout = T_TIMEOUT(60))
{
	reader_end_by_name(0);
	reader_end_by_name(4);
}

/* ================================================================ poison == */

Test(chan_poison, blocked_readers_writers_and_alternations_get_ecanceled_later_calls_too,
     .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	sh_chan(s, 0, 0); /* readers block */
	sh_chan(s, 1, 0); /* writers block */
	sh_chan(s, 2, 2); /* full: a writer blocks */
	sh_chan(s, 3, 0); /* not poisoned, no writer */
	sh_chan(s, 4, 1); /* not poisoned, full */
	PUT_OK(s->c[2], 40, 0, 0);
	PUT_OK(s->c[2], 40, 1, 0);
	PUT_OK(s->c[4], 40, 4, 0);
	pid_t k[7];
	k[0] = start(s, 0, (struct job){ .op = J_READ, .ch = 0, .prod = ANY_PROD, .timeout = LONG_WAIT });
	k[1] = start(s, 1, (struct job){ .op = J_READ, .ch = 0, .prod = ANY_PROD, .timeout = -1 });
	k[2] = start(s, 2, (struct job){ .op = J_WRITE, .ch = 1, .prod = 40, .seq = 2,
					  .timeout = LONG_WAIT });
	k[3] = start(s, 3, (struct job){ .op = J_WRITE, .ch = 2, .prod = 40, .seq = 3, .timeout = -1 });
	k[4] = start(s, 4, (struct job){ .op = J_ALT, .timeout = LONG_WAIT, .n = 2,
					  .g = { { .ch = 3, .op = SHMQ_GUARD_READ, .prod = ANY_PROD },
						 { .ch = 0, .op = SHMQ_GUARD_READ, .prod = ANY_PROD } } });
	k[5] = start(s, 5, (struct job){ .op = J_ALT, .timeout = -1, .flags = SHMQ_ALT_FAIR, .n = 2,
					  .g = { { .ch = 4, .op = SHMQ_GUARD_WRITE, .prod = 40, .seq = 5 },
						 { .ch = 1, .op = SHMQ_GUARD_WRITE, .prod = 40, .seq = 6 } } });
	for (int i = 0; i < 6; i++)
		blocked(k[i]);
	cr_assert_eq(s->done, 0);
	/* Poison c0 from here, c1 through an end with no role, c2 from a
	 * child. */
	int64_t t0 = t_now();
	cr_assert_eq(shmq_chan_poison(s->c[0]), 0);
	shmq_chan *z = chopen(s->h, s->name[1], 0);
	cr_assert_eq(shmq_chan_poison(z), 0);
	k[6] = start(s, 6, (struct job){ .op = J_POISON, .ch = 2 });
	for (int i = 0; i < 7; i++)
		reap_ok(k[i], "child");
	T_ASSERT_NO_ERRORS(s);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(s->ret[i], -ECANCELED, "child %d: %lld", i, (long long)s->ret[i]);
		cr_assert_lt(s->t_ret[i] - t0, DEATH, "child %d woke %lld ms after the poison", i,
			     (long long)((s->t_ret[i] - t0) / T_MS));
	}
	cr_assert_eq(s->ret[4], 1, "the reading alternation returned %lld", (long long)s->ret[4]);
	cr_assert_eq(s->res[4], -ECANCELED, "its guard's result: %lld", (long long)s->res[4]);
	cr_assert_eq(s->ret[5], 1, "the writing alternation returned %lld", (long long)s->ret[5]);
	cr_assert_eq(s->res[5], -ECANCELED, "its guard's result: %lld", (long long)s->res[5]);
	cr_assert_eq(s->ret[6], 0, "poison from the child");
	/* Later calls, by anyone. */
	unsigned char b[HI + 64];
	for (int c = 0; c < 3; c++) {
		expect_read_err(s->c[c], 0, -ECANCELED, "read, timeout 0");
		expect_read_err(s->c[c], LONG_WAIT, -ECANCELED, "read, long timeout");
		cr_assert_eq(put(s->c[c], 40, 9, 0), -ECANCELED);
		cr_assert_eq(put(s->c[c], 40, 9, LONG_WAIT), -ECANCELED);
		cr_assert_eq(shmq_chan_read(s->c[c], b, 1, 0), -ECANCELED, "read with a small buffer");
		cr_assert_eq(shmq_chan_poison(s->c[c]), 0, "poison again");
	}
	struct shmq_guard g[2] = {
		{ .chan = s->c[3], .op = SHMQ_GUARD_READ, .rbuf = b, .rcap = sizeof(b) },
		{ .chan = s->c[2], .op = SHMQ_GUARD_READ, .rbuf = b, .rcap = sizeof(b) },
	};
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), 1, "a poisoned guard fires, timeout 0");
	cr_assert_eq(g[1].result, -ECANCELED);
	pid_t rd = start(s, 7, (struct job){ .op = J_READ, .ch = 2, .prod = ANY_PROD, .timeout = 0 });
	cr_assert_eq(finish(s, 7, rd), -ECANCELED, "a read by another process");
	/* The other channels are not poisoned, and kept what they had. */
	expect_read_err(s->c[3], 0, -EAGAIN, "another channel");
	cr_assert_eq(put(s->c[3], 40, 10, 0), -EAGAIN);
	expect_msg(s->c[4], 40, 4, 0, "the full channel an alternation offered to");
	expect_read_err(s->c[4], 0, -EAGAIN, "nothing else");
	cr_assert_eq(shmq_chan_close(z), 0);
	sh_free(s);
}

Test(chan_poison, poison_drops_what_is_buffered_even_after_the_writers_retired)
{
	struct sh *s = sh_new();
	uint64_t live0 = t_live_bytes(s->h);
	uint32_t base = objects(s->h);
	wr_rd_ends(s, 8);
	size_t len = 64 * 1024;
	unsigned char *v = malloc(len), *b = malloc(len);
	cr_assert(v && b);
	for (uint32_t i = 0; i < 8; i++) {
		tmsg_fill(v, 41, i, len);
		cr_assert_eq(shmq_chan_write(s->c[1], v, len, 0), 0);
	}
	cr_assert_eq(shmq_chan_read(s->c[2], b, len, 0), (ssize_t)len);
	cr_assert_eq(shmq_chan_retire(s->c[1], SHMQ_WR), 0);
	cr_assert_geq(t_live_bytes(s->h), live0 + 7 * len, "7 messages of 64 KiB in the heap");
	cr_assert_eq(shmq_chan_poison(s->c[2]), 0);
	cr_assert_eq(shmq_chan_read(s->c[2], b, len, 0), -ECANCELED, "a buffered message after poison");
	cr_assert_eq(shmq_chan_read(s->c[2], b, len, LONG_WAIT), -ECANCELED);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(shmq_chan_close(s->c[i]), 0);
		s->c[i] = NULL;
	}
	cr_assert_eq(objects(s->h), base);
	cr_assert_lt(t_live_bytes(s->h), live0 + T_RECLAIM_SLACK, "the dropped messages stay allocated");
	free(v);
	free(b);
	sh_free(s);
}

/* =========================================================== alternation == */

/* Guards over parent-side buffers. */
static unsigned char gw_buf[SHMQ_ALT_MAX + 1][HI], gr_buf[SHMQ_ALT_MAX + 1][HI + 64];

static struct shmq_guard gw(shmq_chan *c, int i, uint32_t prod, uint32_t seq)
{
	size_t n = mlen(prod, seq);
	tmsg_fill(gw_buf[i], prod, seq, n);
	return (struct shmq_guard){ .chan = c, .op = SHMQ_GUARD_WRITE, .wbuf = gw_buf[i], .wlen = n,
				    .result = 12345 };
}

static struct shmq_guard gr(shmq_chan *c, int i)
{
	memset(gr_buf[i], 0xee, sizeof(gr_buf[i]));
	return (struct shmq_guard){ .chan = c, .op = SHMQ_GUARD_READ, .rbuf = gr_buf[i],
				    .rcap = sizeof(gr_buf[i]), .result = 12345 };
}

/* Read guard i's buffer holds exactly (prod, seq), of length res. */
static void guard_got(struct shmq_guard *g, int i, uint32_t prod, uint32_t seq)
{
	cr_assert_eq(g[i].result, (ssize_t)mlen(prod, seq), "guard %d: result %zd, want %zu", i,
		     g[i].result, mlen(prod, seq));
	cr_assert_eq(tmsg_check_exact(gr_buf[i], (size_t)g[i].result, prod, seq, mlen(prod, seq)),
		     TMSG_OK, "guard %d: not message (%u, %u)", i, prod, seq);
}

/* Read guard i's buffer was not written. */
static void untouched(int i)
{
	for (size_t b = 0; b < sizeof(gr_buf[i]); b++)
		cr_assert_eq(gr_buf[i][b], 0xee, "the buffer of guard %d (not fired) was written", i);
}

Test(chan_alt, pri_picks_the_first_ready_guard)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *e = mkchan(h, NULL, 4), *a = mkchan(h, NULL, 4), *b = mkchan(h, NULL, 4);
	for (uint32_t i = 0; i < 3; i++) {
		PUT_OK(a, 1, i, 0);
		PUT_OK(b, 2, i, 0);
	}
	struct shmq_guard g[4];
	for (uint32_t round = 0; round < 6; round++) {
		g[0] = gr(e, 0), g[1] = gr(a, 1), g[2] = gr(b, 2);
		int i = shmq_alt(g, 3, SHMQ_ALT_PRI, 0);
		int want = round < 3 ? 1 : 2;
		cr_assert_eq(i, want, "round %u: guard %d fired, want %d", round, i, want);
		guard_got(g, i, (uint32_t)want, round % 3);
		untouched(0);
		untouched(3 - want);
	}
	g[0] = gr(e, 0), g[1] = gr(a, 1), g[2] = gr(b, 2);
	cr_assert_eq(shmq_alt(g, 3, SHMQ_ALT_PRI, 0), -EAGAIN, "all drained");
	/* Write guards: a full, b has room for 2, e for 4. */
	for (uint32_t i = 0; i < 4; i++)
		PUT_OK(a, 3, i, 0);
	PUT_OK(b, 4, 0, 0);
	PUT_OK(b, 4, 1, 0);
	for (uint32_t round = 0; round < 4; round++) {
		g[0] = gw(a, 0, 5, round), g[1] = gw(b, 1, 6, round), g[2] = gw(e, 2, 7, round);
		int i = shmq_alt(g, 3, SHMQ_ALT_PRI, 0);
		int want = round < 2 ? 1 : 2;
		cr_assert_eq(i, want, "write round %u: guard %d fired, want %d", round, i, want);
		cr_assert_eq(g[i].result, 0);
	}
	expect_msg(b, 4, 0, 0, "b"), expect_msg(b, 4, 1, 0, "b");
	expect_msg(b, 6, 0, 0, "b"), expect_msg(b, 6, 1, 0, "b");
	expect_msg(e, 7, 2, 0, "e"), expect_msg(e, 7, 3, 0, "e");
	expect_read_err(e, 0, -EAGAIN, "e");
	/* Mixed: [read e (empty), write a (full), read a, write b]: guard 2. */
	g[0] = gr(e, 0), g[1] = gw(a, 1, 8, 0), g[2] = gr(a, 2), g[3] = gw(b, 3, 8, 1);
	cr_assert_eq(shmq_alt(g, 4, SHMQ_ALT_PRI, LONG_WAIT), 2);
	guard_got(g, 2, 3, 0);
	untouched(0);
	shmq_chan_close(e);
	shmq_chan_close(a);
	shmq_chan_close(b);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* Every window of n consecutive alternations with every guard ready fires
 * each guard once. */
static void assert_rotates(const int *fired, int rounds, int n, const char *what)
{
	for (int w = 0; w + n <= rounds; w++) {
		unsigned seen = 0;
		for (int i = w; i < w + n; i++)
			seen |= 1u << fired[i];
		cr_assert_eq(seen, (1u << n) - 1, "%s: rounds %d..%d fired %s guards (0x%x)", what, w,
			     w + n - 1, "not all", seen);
	}
}

Test(chan_alt, fair_serves_every_ready_guard_within_n_rounds)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	enum { N = 5, R = 8 };
	shmq_chan *c[N];
	struct shmq_guard g[N];
	int fired[N * R];
	uint32_t seq[N] = { 0 };
	/* Read guards, every channel holding R messages. */
	for (int i = 0; i < N; i++) {
		c[i] = mkchan(h, NULL, R);
		for (uint32_t m = 0; m < R; m++)
			PUT_OK(c[i], (uint32_t)i, m, 0);
	}
	for (int round = 0; round < N * R; round++) {
		for (int i = 0; i < N; i++)
			g[i] = gr(c[i], i);
		int f = shmq_alt(g, N, SHMQ_ALT_FAIR, 0);
		cr_assert(f >= 0 && f < N, "round %d: %d", round, f);
		guard_got(g, f, (uint32_t)f, seq[f]++);
		fired[round] = f;
	}
	assert_rotates(fired, N * R, N, "read guards");
	/* Write guards, every channel with room for R. */
	memset(seq, 0, sizeof(seq));
	for (int round = 0; round < N * R; round++) {
		for (int i = 0; i < N; i++)
			g[i] = gw(c[i], i, (uint32_t)i, seq[i]);
		int f = shmq_alt(g, N, SHMQ_ALT_FAIR, 0);
		cr_assert(f >= 0 && f < N, "round %d: %d", round, f);
		cr_assert_eq(g[f].result, 0);
		seq[f]++;
		fired[round] = f;
	}
	assert_rotates(fired, N * R, N, "write guards");
	for (int i = 0; i < N; i++)
		cr_assert_eq(seq[i], R, "channel %d got %u writes", i, seq[i]);
	/* Mixed: read guards on 0..2 (full), write guards on 3..4 (emptied
	 * first), each able to fire R times. */
	for (int i = 3; i < N; i++)
		for (uint32_t m = 0; m < R; m++)
			expect_msg(c[i], (uint32_t)i, m, 0, "drain");
	memset(seq, 0, sizeof(seq));
	for (int round = 0; round < N * R; round++) {
		for (int i = 0; i < N; i++)
			g[i] = i < 3 ? gr(c[i], i) : gw(c[i], i, 9, seq[i]);
		int f = shmq_alt(g, N, SHMQ_ALT_FAIR, 0);
		cr_assert(f >= 0 && f < N, "round %d: %d", round, f);
		if (f < 3)
			guard_got(g, f, (uint32_t)f, seq[f]);
		seq[f]++;
		fired[round] = f;
	}
	assert_rotates(fired, N * R, N, "mixed guards");
	/* Some ready, some not: guards 1 and 3 ready (c1 refilled, c3 has
	 * room), the rest not (empty / full): both served within n rounds. */
	for (uint32_t m = 0; m < R; m++)
		PUT_OK(c[1], 1, m, 0);
	for (uint32_t m = 0; m < R; m++)
		expect_msg(c[3], 9, m, 0, "drain");
	int count[N] = { 0 };
	for (int round = 0; round < 2 * R - 2; round++) {
		g[0] = gr(c[0], 0), g[1] = gr(c[1], 1), g[2] = gr(c[2], 2);
		g[3] = gw(c[3], 3, 10, (uint32_t)round), g[4] = gw(c[4], 4, 10, (uint32_t)round);
		int f = shmq_alt(g, N, SHMQ_ALT_FAIR, 0);
		cr_assert(f == 1 || f == 3, "round %d: guard %d fired, only 1 and 3 are ready", round, f);
		count[f]++;
		fired[round] = f;
		if (round > 0)
			cr_assert_neq(fired[round], fired[round - 1], "round %d: guard %d twice in a row "
				      "with another one ready", round, f);
	}
	cr_assert_eq(count[1], R - 1);
	cr_assert_eq(count[3], R - 1);
	for (int i = 0; i < N; i++)
		shmq_chan_close(c[i]);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan_alt, skip_and_timeout_move_nothing_and_leave_the_buffers_untouched,
     .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	sh_chan(s, 0, 1); /* empty: read not ready */
	sh_chan(s, 1, 1); /* full: write not ready */
	sh_chan(s, 2, 0); /* rendezvous, nobody there */
	sh_chan(s, 3, 0);
	PUT_OK(s->c[1], 50, 0, 0);
	struct shmq_guard g[5];
	for (int round = 0; round < 2; round++) {
		g[0] = gr(s->c[0], 0), g[1] = gw(s->c[1], 1, 50, 1), g[2] = gr(s->c[2], 2);
		g[3] = gw(s->c[3], 3, 50, 2), g[4] = gw(s->c[2], 4, 50, 3);
		for (int f = 0; f < 2; f++) {
			if (round == 0) {
				cr_assert_eq(shmq_alt(g, 5, f, 0), -EAGAIN, "skip, flags %d", f);
			} else {
				ASSERT_TIMES_OUT(shmq_alt(g, 5, f, SHORT), SHORT);
			}
		}
		untouched(0);
		untouched(2);
	}
	/* Nothing moved: c1 holds its one message, c0 nothing, and readers
	 * that come later on the rendezvous channels find nothing. */
	expect_msg(s->c[1], 50, 0, 0, "the full channel's message");
	expect_read_err(s->c[1], 0, -EAGAIN, "only it");
	expect_read_err(s->c[0], 0, -EAGAIN, "the empty channel");
	pid_t r2 = start(s, 0, (struct job){ .op = J_READ, .ch = 2, .prod = ANY_PROD,
					      .timeout = 200 * T_MS });
	pid_t r3 = start(s, 1, (struct job){ .op = J_READ, .ch = 3, .prod = ANY_PROD,
					      .timeout = 200 * T_MS });
	cr_assert_eq(finish(s, 0, r2), -ETIMEDOUT, "a write guard's offer outlived its alternation");
	cr_assert_eq(finish(s, 1, r3), -ETIMEDOUT, "a write guard's offer outlived its alternation");
	sh_free(s);
}

/* No alternation meets itself: a read and a write guard on the same
 * rendezvous channel, nobody else there. */
Test(chan_alt, an_alternation_never_meets_itself, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, NULL, 0), *b = mkchan(h, NULL, 1);
	struct shmq_guard g[2];
	for (int f = 0; f < 2; f++) {
		g[0] = gw(c, 0, 51, 0), g[1] = gr(c, 1);
		cr_assert_eq(shmq_alt(g, 2, f, 0), -EAGAIN, "flags %d", f);
		untouched(1);
		g[0] = gr(c, 0), g[1] = gw(c, 1, 51, 0);
		ASSERT_TIMES_OUT(shmq_alt(g, 2, f, SHORT), SHORT);
		untouched(0);
	}
	/* Buffered, empty: the write fires (PRI), the read does not see its
	 * message in the same alternation. */
	g[0] = gw(b, 0, 51, 1), g[1] = gr(b, 1);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), 0);
	untouched(1);
	g[0] = gr(b, 0), g[1] = gw(b, 1, 51, 2); /* full: the read fires */
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), 0);
	guard_got(g, 0, 51, 1);
	expect_read_err(b, 0, -EAGAIN, "one message moved, once");
	shmq_chan_close(c);
	shmq_chan_close(b);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(chan_alt, mixed_read_and_write_guards_meet_processes_and_alternations,
     .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new();
	for (int i = 0; i < 3; i++)
		sh_chan(s, i, 0);
	struct shmq_guard g[3];
	/* A reader blocked on c0: the write guard fires at once. */
	pid_t k = start(s, 0, (struct job){ .op = J_READ, .ch = 0, .prod = 30, .seq = 0,
					     .timeout = LONG_WAIT });
	blocked(k);
	g[0] = gr(s->c[1], 0), g[1] = gw(s->c[0], 1, 30, 0);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), 1);
	cr_assert_eq(g[1].result, 0);
	untouched(0);
	cr_assert_eq(finish(s, 0, k), (int64_t)mlen(30, 0));
	/* A writer blocked on c1: the read guard fires. */
	k = start(s, 1, (struct job){ .op = J_WRITE, .ch = 1, .prod = 31, .seq = 0,
				       .timeout = LONG_WAIT });
	blocked(k);
	g[0] = gw(s->c[0], 0, 30, 1), g[1] = gr(s->c[1], 1);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_FAIR, LONG_WAIT), 1);
	guard_got(g, 1, 31, 0);
	cr_assert_eq(finish(s, 1, k), 0);
	/* The alternation waits; a writer comes 100 ms later on c1: only
	 * that guard fires, the write guard's offer on c2 is withdrawn. */
	k = start(s, 2, (struct job){ .op = J_WRITE, .ch = 1, .prod = 31, .seq = 1,
				       .timeout = LONG_WAIT, .delay = 100 * T_MS });
	g[0] = gr(s->c[0], 0), g[1] = gr(s->c[1], 1), g[2] = gw(s->c[2], 2, 32, 0);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_alt(g, 3, SHMQ_ALT_PRI, LONG_WAIT), 1);
	cr_assert_geq(t_now() - t0, 50 * T_MS, "fired before the writer came");
	guard_got(g, 1, 31, 1);
	untouched(0);
	cr_assert_eq(finish(s, 2, k), 0);
	k = start(s, 3, (struct job){ .op = J_READ, .ch = 2, .prod = ANY_PROD, .timeout = 200 * T_MS });
	cr_assert_eq(finish(s, 3, k), -ETIMEDOUT, "the withdrawn offer was delivered");
	/* A child's alternation {read c0, write c1} waits; the parent reads
	 * c1, then writes c0 to another such alternation. */
	struct job ja = { .op = J_ALT, .timeout = LONG_WAIT, .n = 2,
			  .g = { { .ch = 0, .op = SHMQ_GUARD_READ, .prod = 33, .seq = 0 },
				 { .ch = 1, .op = SHMQ_GUARD_WRITE, .prod = 34, .seq = 0 } } };
	k = start(s, 4, ja);
	blocked(k);
	expect_msg(s->c[1], 34, 0, 0, "the alternation's write guard");
	cr_assert_eq(finish(s, 4, k), 1);
	cr_assert_eq(s->res[4], 0);
	k = start(s, 5, ja);
	blocked(k);
	PUT_OK(s->c[0], 33, 0, 0);
	cr_assert_eq(finish(s, 5, k), 0);
	cr_assert_eq(s->res[5], (int64_t)mlen(33, 0));
	/* Alternation meets alternation: the child's {read c0, write c1}
	 * against the parent's {read c1 (its write), write c2 (nobody)}. */
	k = start(s, 6, ja);
	blocked(k);
	g[0] = gw(s->c[2], 0, 35, 0), g[1] = gr(s->c[1], 1);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, LONG_WAIT), 1);
	guard_got(g, 1, 34, 0);
	cr_assert_eq(finish(s, 6, k), 1);
	T_ASSERT_NO_ERRORS(s);
	sh_free(s);
}

Test(chan_alt, guards_on_poisoned_retired_or_unusable_channels_fire_with_their_error)
{
	struct sh *s = sh_new();
	wr_rd_ends(s, 2);        /* c0 creator (no role), c1 WR, c2 RD */
	sh_chan(s, 3, 0);        /* never ready */
	sh_chan(s, 4, 2);        /* poisoned */
	cr_assert_eq(shmq_chan_poison(s->c[4]), 0);
	struct shmq_guard g[3];
	for (int f = 0; f < 2; f++) {
		g[0] = gr(s->c[3], 0), g[1] = gr(s->c[4], 1);
		cr_assert_eq(shmq_alt(g, 2, f, 0), 1, "a read guard on a poisoned channel");
		cr_assert_eq(g[1].result, -ECANCELED);
		untouched(0);
		untouched(1);
		g[0] = gw(s->c[3], 0, 60, 0), g[1] = gw(s->c[4], 1, 60, 1);
		cr_assert_eq(shmq_alt(g, 2, f, LONG_WAIT), 1, "a write guard on a poisoned channel");
		cr_assert_eq(g[1].result, -ECANCELED);
	}
	/* -EMSGSIZE: the message stays. */
	PUT_OK(s->c[1], 60, 2, 0);
	g[0] = gr(s->c[3], 0), g[1] = gr(s->c[2], 1);
	g[1].rcap = 4;
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), 1);
	cr_assert_eq(g[1].result, -EMSGSIZE);
	untouched(1);
	expect_msg(s->c[2], 60, 2, 0, "the message an -EMSGSIZE guard left");
	/* -EPIPE: writers retired and drained; readers retired. */
	cr_assert_eq(shmq_chan_retire(s->c[1], SHMQ_WR), 0);
	g[0] = gr(s->c[3], 0), g[1] = gr(s->c[2], 1);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, LONG_WAIT), 1);
	cr_assert_eq(g[1].result, -EPIPE, "a read guard, every writer retired: %zd", g[1].result);
	struct sh *t = sh_new();
	wr_rd_ends(t, 0);
	cr_assert_eq(shmq_chan_retire(t->c[2], SHMQ_RD), 0);
	g[0] = gw(t->c[1], 0, 61, 0);
	cr_assert_eq(shmq_alt(g, 1, SHMQ_ALT_FAIR, LONG_WAIT), 0);
	cr_assert_eq(g[0].result, -EPIPE, "a write guard, every reader retired: %zd", g[0].result);
	sh_free(t);
	sh_free(s);
}

Test(chan_alt, bad_arguments_einval_move_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0), *h2 = t_mkheap(NULL, 0);
	shmq_chan *c = mkchan(h, NULL, 2), *other = mkchan(h2, NULL, 2);
	PUT_OK(c, 70, 0, 0);
	PUT_OK(other, 70, 1, 0);
	static struct shmq_guard g[SHMQ_ALT_MAX + 1];
	for (unsigned i = 0; i <= SHMQ_ALT_MAX; i++)
		g[i] = gr(c, (int)i);
	cr_assert_eq(shmq_alt(NULL, 1, SHMQ_ALT_PRI, 0), -EINVAL);
	cr_assert_eq(shmq_alt(g, 0, SHMQ_ALT_PRI, 0), -EINVAL, "n 0");
	cr_assert_eq(shmq_alt(g, SHMQ_ALT_MAX + 1, SHMQ_ALT_PRI, 0), -EINVAL, "n SHMQ_ALT_MAX + 1");
	cr_assert_eq(shmq_alt(g, 1, 2, 0), -EINVAL, "flags 2");
	cr_assert_eq(shmq_alt(g, 1, -1, 0), -EINVAL, "flags -1");
	g[1].chan = NULL;
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), -EINVAL, "a NULL channel");
	g[1] = gr(other, 1);
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), -EINVAL, "channels of two heaps");
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, LONG_WAIT), -EINVAL, "channels of two heaps");
	g[1] = gr(c, 1);
	g[1].op = 0;
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), -EINVAL, "op 0");
	g[1].op = 3;
	cr_assert_eq(shmq_alt(g, 2, SHMQ_ALT_PRI, 0), -EINVAL, "op 3");
	for (unsigned i = 0; i <= SHMQ_ALT_MAX; i++)
		untouched((int)i);
	/* Nothing moved. */
	expect_msg(c, 70, 0, 0, "c");
	expect_msg(other, 70, 1, 0, "the other heap's channel");
	/* SHMQ_ALT_MAX guards, all on one channel: one fires, once. */
	PUT_OK(c, 70, 2, 0);
	for (unsigned i = 0; i < SHMQ_ALT_MAX; i++)
		g[i] = gr(c, (int)i);
	cr_assert_eq(shmq_alt(g, SHMQ_ALT_MAX, SHMQ_ALT_PRI, 0), 0);
	guard_got(g, 0, 70, 2);
	for (unsigned i = 1; i < SHMQ_ALT_MAX; i++)
		untouched((int)i);
	for (unsigned i = 0; i < SHMQ_ALT_MAX; i++)
		g[i] = gr(c, (int)i);
	cr_assert_eq(shmq_alt(g, SHMQ_ALT_MAX, SHMQ_ALT_FAIR, 0), -EAGAIN);
	shmq_chan_close(c);
	shmq_chan_close(other);
	cr_assert_eq(shmq_heap_close(h), 0);
	cr_assert_eq(shmq_heap_close(h2), 0);
}

/* ------------------------------------------- the classic hard case -- */

/* Two processes, A (0) and B (1), each alternating over {write to the
 * other, read from the other} on four channels: c[2 * me + k] (k = 0, 1) go
 * from me to the other. Each writes exactly M messages to each of its two
 * out-channels and reads exactly M from each of its two in-channels, with
 * the guards in a random order and random PRI/FAIR; a side drops the guards
 * of a channel it is done with. Every read must be exactly the next message
 * of its channel (a message moved twice, lost, or taken by a guard that did
 * not fire breaks the sequence at once), and no alternation may time out
 * (deadlock). The parent cross-checks the fired guards of both sides. */
#define HARD_M (T_SCALE > 1 ? 25000u / 8 : 25000u)

static int hard_side(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	int me = k->idx, other = 1 - me;
	uint32_t sent[2] = { 0, 0 }, got[2] = { 0, 0 };
	uint64_t rng = t_mix((uint64_t)me + 77);
	static unsigned char wb[2][HI], rb[2][HI + 64];
	t_post(&s->ready);
	t_await(&s->go, 1, -1);
	for (;;) {
		struct shmq_guard g[4];
		int kind[4], ch[4], n = 0;
		for (int c = 0; c < 2; c++) {
			if (sent[c] < HARD_M) {
				size_t len = mlen((uint32_t)(2 * me + c), sent[c]);
				tmsg_fill(wb[c], (uint32_t)(2 * me + c), sent[c], len);
				g[n] = (struct shmq_guard){ .chan = s->c[2 * me + c], .op = SHMQ_GUARD_WRITE,
							    .wbuf = wb[c], .wlen = len };
				kind[n] = 1, ch[n++] = c;
			}
			if (got[c] < HARD_M) {
				g[n] = (struct shmq_guard){ .chan = s->c[2 * other + c], .op = SHMQ_GUARD_READ,
							    .rbuf = rb[c], .rcap = sizeof(rb[c]) };
				kind[n] = 0, ch[n++] = c;
			}
		}
		if (!n)
			break;
		for (int i = n - 1; i > 0; i--) { /* shuffle */
			int j = (int)(t_mix(rng++) % (uint64_t)(i + 1));
			struct shmq_guard tg = g[i];
			g[i] = g[j], g[j] = tg;
			int t = kind[i];
			kind[i] = kind[j], kind[j] = t;
			t = ch[i];
			ch[i] = ch[j], ch[j] = t;
		}
		int f = shmq_alt(g, (unsigned)n, (int)(t_mix(rng++) & 1), LONG_WAIT);
		if (f < 0 || f >= n)
			return fail(s, 100 + me, f), 1;
		int c = ch[f];
		if (kind[f]) {
			if (g[f].result != 0)
				return fail(s, 110 + me, (int)g[f].result), 1;
			sent[c]++;
			s->wf[me][c]++;
		} else {
			uint32_t p = (uint32_t)(2 * other + c);
			if (g[f].result < 0 ||
			    tmsg_check_exact(rb[c], (size_t)g[f].result, p, got[c], mlen(p, got[c])) != TMSG_OK)
				return fail(s, 120 + me, (int)got[c]), 1;
			got[c]++;
			s->rf[me][c]++;
		}
		s->alts[me]++;
	}
	return 0;
}

static void hard_case(const uint32_t buffer[4], const char *what)
{
	struct sh *s = sh_new();
	for (int i = 0; i < 4; i++)
		sh_chan(s, i, buffer[i]);
	pid_t a = spawn(s, 0, hard_side), b = spawn(s, 1, hard_side);
	cr_assert_eq(t_await(&s->ready, 2, LIVE), 0);
	int64_t t0 = t_now();
	t_set(&s->go, 1);
	int sta, stb;
	int ra = t_wait(a, &sta, 120 * T_SEC * T_SCALE), rb = t_wait(b, &stb, 120 * T_SEC * T_SCALE);
	int64_t el = t_now() - t0;
	if (ra < 0 || rb < 0) {
		t_kill_reap(a);
		t_kill_reap(b);
	}
	cr_assert(ra == 0 && rb == 0, "%s: stuck after %llu and %llu alternations", what,
		  (unsigned long long)s->alts[0], (unsigned long long)s->alts[1]);
	cr_assert_eq(s->errors, 0, "%s: %u errors, last %d at %d (1xx: 100 alt failed, 110 write "
		     "guard result, 120 wrong message; +1 for B) after %llu / %llu alternations",
		     what, s->errors, s->last_err, s->err_where, (unsigned long long)s->alts[0],
		     (unsigned long long)s->alts[1]);
	cr_assert(WIFEXITED(sta) && WEXITSTATUS(sta) == 0 && WIFEXITED(stb) && WEXITSTATUS(stb) == 0);
	for (int me = 0; me < 2; me++)
		for (int c = 0; c < 2; c++) {
			cr_assert_eq(s->wf[me][c], HARD_M, "%s: side %d wrote %llu to its channel %d",
				     what, me, (unsigned long long)s->wf[me][c], c);
			cr_assert_eq(s->wf[me][c], s->rf[1 - me][c],
				     "%s: side %d's write guards fired %llu times, the other's read "
				     "guards %llu times", what, me, (unsigned long long)s->wf[me][c],
				     (unsigned long long)s->rf[1 - me][c]);
		}
	cr_assert_eq(s->alts[0], 4ull * HARD_M);
	cr_assert_eq(s->alts[1], 4ull * HARD_M);
	for (int i = 0; i < 4; i++)
		expect_read_err(s->c[i], 0, -EAGAIN, "a channel after the run");
	cr_log_info("hard case, %s: 2 x %u alternations in %.0f ms", what, 4 * HARD_M,
		    (double)el / T_MS);
	sh_free(s);
}

Test(chan_alt, two_processes_alternating_write_and_read_to_each_other_rendezvous,
     .timeout = T_TIMEOUT(240))
{
	hard_case((const uint32_t[4]){ 0, 0, 0, 0 }, "rendezvous");
}

Test(chan_alt, two_processes_alternating_write_and_read_to_each_other_mixed_buffers,
     .timeout = T_TIMEOUT(240))
{
	hard_case((const uint32_t[4]){ 0, 1, 3, 0 }, "buffers 0, 1, 3, 0");
}

/* =============================================================== SIGKILL == */

/* Workers (KW processes) loop over reads, writes and alternations (1 to 4
 * guards, reads and writes mixed, PRI or FAIR) on three channels (rendezvous,
 * buffered 3, rendezvous), some through the handles they inherited, some
 * through ends of their own; a pump process, never killed, alternates over
 * a read and a write guard on every channel, so that every worker's call
 * finds a partner within milliseconds. The parent SIGKILLs workers at random
 * moments and forks replacements. Every message carries a unique id; a
 * worker records, in shared memory, the ids its call in flight offers (and
 * whether it may take one) before the call, and what the call did after it.
 * Checked: no call of a worker times out (5 s) and none runs past its
 * timeout (the dead never hold anyone up); no message is received twice or
 * torn; every message received was acknowledged by its writer (write 0 or
 * its guard fired) or was in flight in a killed worker's call; acknowledged
 * messages never received number at most the kills of workers that were in
 * a call that could read; afterwards, with everything closed, the heap has
 * its objects, its handles and (within a bound per kill) its bytes back. */
#define KW 6
#define KCH 3
#define K_KILLS (T_SCALE > 1 ? 60 : 300)
#define K_IDS (1u << 23)
#define K_TIMEOUT (5 * T_SEC * T_SCALE)
#define K_PUMP_TIMEOUT (100 * T_MS)
#define K_SLACK (3 * T_SEC * T_SCALE)
#define KMSG_MAX 4096

struct kslot {
	_Atomic int64_t call_start; /* 0 between calls */
	_Atomic int64_t call_timeout;
	_Atomic uint32_t rd_pending; /* the call may take a message not yet recorded */
	_Atomic uint32_t nfly;       /* ids its call offers */
	_Atomic uint64_t fly[2 * KCH];
	_Atomic uint64_t ops, moved;
};

struct kstate {
	shmq_heap *h;
	shmq_chan *c[KCH];
	char name[KCH][SHMQ_NAME_MAX];
	_Atomic uint32_t stop_workers, stop_pump, ready;
	_Atomic uint64_t next_id;
	_Atomic uint32_t errors;
	_Atomic int32_t last_err, err_where;
	_Atomic uint64_t timeouts, hangs, dups, torn, emsgsize, overflow;
	struct kslot slot[KW + 1]; /* the pump is slot KW */
	_Atomic uint64_t acked[K_IDS / 64], recv[K_IDS / 64], maybe[K_IDS / 64];
};

struct kmsg_hdr {
	uint64_t id;
	uint32_t len;
	uint32_t sum;
};
#define KHDR sizeof(struct kmsg_hdr)

static size_t kmsg_len(uint64_t id)
{
	uint64_t r = t_mix(id ^ 0x6b696c6cull);
	return KHDR + (size_t)(r % 16 == 0 ? (r >> 8) % (KMSG_MAX - KHDR + 1) : (r >> 8) % 200);
}

static uint32_t kmsg_sum(const unsigned char *m, size_t n)
{
	uint64_t s = t_fnv1a(T_FNV_INIT, m, 12);
	s = t_fnv1a(s, m + KHDR, n - KHDR);
	return (uint32_t)(s ^ s >> 32);
}

static size_t kmsg_fill(unsigned char *m, uint64_t id)
{
	size_t n = kmsg_len(id);
	uint64_t key = t_mix(id);
	for (size_t i = KHDR; i < n; i++)
		m[i] = tmsg_byte(key, i);
	struct kmsg_hdr h = { .id = id, .len = (uint32_t)n };
	memcpy(m, &h, KHDR);
	h.sum = kmsg_sum(m, n);
	memcpy(m, &h, KHDR);
	return n;
}

static void k_set(_Atomic uint64_t *bits, uint64_t id)
{
	atomic_fetch_or(&bits[id / 64], 1ull << (id % 64));
}

static bool k_get(_Atomic uint64_t *bits, uint64_t id)
{
	return atomic_load(&bits[id / 64]) >> (id % 64) & 1;
}

/* A message received: checked, and marked (a second time: a duplicate). */
static void k_record(struct kstate *ks, const unsigned char *m, size_t n)
{
	struct kmsg_hdr h;
	if (n < KHDR) {
		atomic_fetch_add(&ks->torn, 1);
		return;
	}
	memcpy(&h, m, KHDR);
	if (h.len != n || h.id >= K_IDS || h.id >= atomic_load(&ks->next_id) ||
	    kmsg_len(h.id) != n || kmsg_sum(m, n) != h.sum) {
		atomic_fetch_add(&ks->torn, 1);
		return;
	}
	uint64_t bit = 1ull << (h.id % 64);
	if (atomic_fetch_or(&ks->recv[h.id / 64], bit) & bit)
		atomic_fetch_add(&ks->dups, 1);
}

static void k_fail(struct kstate *ks, int where, long err)
{
	ks->err_where = where;
	ks->last_err = (int32_t)err;
	atomic_fetch_add(&ks->errors, 1);
}

static uint64_t k_new_id(struct kstate *ks)
{
	uint64_t id = atomic_fetch_add(&ks->next_id, 1);
	if (id >= K_IDS) {
		atomic_fetch_add(&ks->overflow, 1);
		return UINT64_MAX;
	}
	return id;
}

/* One call of worker (or pump) slot me over channels c. */
static void k_op(struct kstate *ks, int me, shmq_chan **c, uint64_t *rng, bool pump)
{
	static unsigned char wb[2 * KCH][KMSG_MAX], rb[2 * KCH][KMSG_MAX];
	struct kslot *sl = &ks->slot[me];
	struct shmq_guard g[2 * KCH];
	uint64_t ids[2 * KCH];
	unsigned n = 0, kind = 0, nfly = 0;
	bool rd = false;
	int64_t timeout = pump ? K_PUMP_TIMEOUT : K_TIMEOUT;
	uint64_t r = t_mix((*rng)++);
	if (pump) {
		kind = 2;
		for (int i = 0; i < KCH; i++) {
			g[n++] = (struct shmq_guard){ .chan = c[i], .op = SHMQ_GUARD_READ };
			g[n++] = (struct shmq_guard){ .chan = c[i], .op = SHMQ_GUARD_WRITE };
		}
	} else {
		kind = r % 10 < 3 ? 0 : r % 10 < 6 ? 1 : 2; /* write, read, alt */
		n = kind < 2 ? 1 : 1 + (unsigned)(r >> 8) % 4;
		for (unsigned i = 0; i < n; i++) {
			uint64_t x = t_mix((*rng)++);
			int op = kind == 0 ? SHMQ_GUARD_WRITE : kind == 1 ? SHMQ_GUARD_READ
				 : (x & 1) ? SHMQ_GUARD_WRITE : SHMQ_GUARD_READ;
			g[i] = (struct shmq_guard){ .chan = c[(x >> 1) % KCH], .op = op };
		}
	}
	for (unsigned i = 0; i < n; i++) {
		ids[i] = UINT64_MAX;
		if (g[i].op == SHMQ_GUARD_WRITE)
			ids[i] = k_new_id(ks);
		if (g[i].op == SHMQ_GUARD_WRITE && ids[i] != UINT64_MAX) {
			g[i].wbuf = wb[i];
			g[i].wlen = kmsg_fill(wb[i], ids[i]);
			atomic_store(&sl->fly[nfly++], ids[i]);
		} else {
			g[i].op = SHMQ_GUARD_READ;
			g[i].rbuf = rb[i];
			/* One read in 32 with a buffer that is too small. */
			g[i].rcap = t_mix((*rng)++) % 32 ? KMSG_MAX : KHDR + 8;
			rd = true;
		}
	}
	atomic_store(&sl->nfly, nfly);
	atomic_store(&sl->rd_pending, rd);
	atomic_store(&sl->call_timeout, timeout);
	int64_t t0 = t_now();
	atomic_store(&sl->call_start, t0);
	long ret;
	int f = 0;
	if (kind == 0 && g[0].op == SHMQ_GUARD_WRITE) {
		ret = shmq_chan_write(g[0].chan, g[0].wbuf, g[0].wlen, timeout);
		g[0].result = ret;
	} else if (kind <= 1) {
		ret = shmq_chan_read(g[0].chan, g[0].rbuf, g[0].rcap, timeout);
		g[0].result = ret;
		ret = ret >= 0 || ret == -EMSGSIZE ? 0 : ret;
	} else {
		ret = shmq_alt(g, n, pump ? SHMQ_ALT_FAIR : (int)(r >> 20 & 1), timeout);
		f = (int)ret;
		ret = ret >= 0 ? 0 : ret;
	}
	int64_t el = t_now() - t0;
	if (el > timeout + K_SLACK)
		atomic_fetch_add(&ks->hangs, 1);
	if (ret == -ETIMEDOUT) {
		if (!pump)
			atomic_fetch_add(&ks->timeouts, 1);
	} else if (ret < 0) {
		k_fail(ks, 200 + (int)kind, ret);
	} else {
		struct shmq_guard *x = &g[f];
		if (x->op == SHMQ_GUARD_WRITE) {
			if (x->result == 0) {
				k_set(ks->acked, ids[f]);
				atomic_fetch_add(&sl->moved, 1);
			} else {
				k_fail(ks, 210 + (int)kind, x->result);
			}
		} else if (x->result >= 0) {
			k_record(ks, x->rbuf, (size_t)x->result);
			atomic_fetch_add(&sl->moved, 1);
		} else if (x->result == -EMSGSIZE && x->rcap < KMSG_MAX) {
			atomic_fetch_add(&ks->emsgsize, 1);
		} else {
			k_fail(ks, 220 + (int)kind, x->result);
		}
	}
	atomic_store(&sl->call_start, 0);
	atomic_store(&sl->rd_pending, 0);
	atomic_store(&sl->nfly, 0);
	atomic_fetch_add(&sl->ops, 1);
}

static struct kstate *ks_g;
static uint64_t k_seed;

static int k_worker(void *arg)
{
	struct kstate *ks = ks_g;
	int me = (int)(intptr_t)arg;
	bool pump = me == KW;
	uint64_t rng = t_mix(k_seed ^ (uint64_t)getpid() << 20 ^ (uint64_t)me);
	shmq_chan *own[KCH] = { NULL }, *c[KCH];
	bool use_own = !pump && (rng & 1);
	for (int i = 0; i < KCH; i++) {
		c[i] = ks->c[i];
		if (use_own) {
			int r = shmq_chan_open(ks->h, ks->name[i], SHMQ_RDWR, &own[i]);
			if (r < 0)
				return k_fail(ks, 230, r), 1;
			c[i] = own[i];
		}
	}
	t_post(&ks->ready);
	_Atomic uint32_t *stop = pump ? &ks->stop_pump : &ks->stop_workers;
	while (!atomic_load(stop))
		k_op(ks, me, c, &rng, pump);
	for (int i = 0; i < KCH; i++) {
		if (own[i] && shmq_chan_close(own[i]) < 0)
			return k_fail(ks, 231, -1), 1;
		if (shmq_chan_close(ks->c[i]) < 0)
			return k_fail(ks, 232, -1), 1;
	}
	return shmq_heap_close(ks->h) == 0 ? 0 : 2;
}

static pid_t k_spawn(struct kstate *ks, int slot)
{
	struct kslot *sl = &ks->slot[slot];
	atomic_store(&sl->call_start, 0);
	atomic_store(&sl->rd_pending, 0);
	atomic_store(&sl->nfly, 0);
	pid_t pid = t_fork(k_worker, (void *)(intptr_t)slot);
	cr_assert_gt(pid, 0, "fork");
	return pid;
}

Test(chan_kill, sigkill_inside_reads_writes_and_alternations, .timeout = T_TIMEOUT(180))
{
	struct kstate *ks = t_shared(sizeof(*ks));
	cr_assert_not_null(ks);
	ks_g = ks;
	k_seed = (uint64_t)t_now();
	ks->h = t_mkheap(NULL, 256ull << 20);
	struct shmq_heap_stat st0 = t_hstat(ks->h);
	uint64_t live0 = st0.used - st0.free;
	const uint32_t buf[KCH] = { 0, 3, 0 };
	for (int i = 0; i < KCH; i++) {
		ks->c[i] = mkchan(ks->h, NULL, buf[i]);
		snprintf(ks->name[i], sizeof(ks->name[i]), "%s", shmq_chan_name(ks->c[i]));
	}
	pid_t pid[KW + 1];
	for (int i = 0; i <= KW; i++)
		pid[i] = k_spawn(ks, i);
	cr_assert_eq(t_await(&ks->ready, KW + 1, 10 * LIVE), 0, "workers not ready");
	uint64_t rng = k_seed, kills = 0, rd_kills = 0, fly_kills = 0;
	int bad = 0;
	char bad_desc[128] = "";
	int64_t start_t = t_now();
	while (kills < K_KILLS && !bad) {
		t_nap((int64_t)(t_mix(rng++) % 20000) * 1000);
		for (int i = 0; i <= KW && !bad; i++) { /* nobody may exit on its own */
			int stt;
			if (waitpid(pid[i], &stt, WNOHANG) == pid[i]) {
				char sb[32];
				snprintf(bad_desc, sizeof(bad_desc), "%s %d exited: %s",
					 i == KW ? "the pump" : "worker", i, t_status_str(stt, sb, sizeof(sb)));
				bad = 1;
				pid[i] = -1;
			}
		}
		int64_t now = t_now();
		for (int i = 0; i <= KW && !bad; i++) {
			int64_t cs = atomic_load(&ks->slot[i].call_start);
			if (cs && now - cs > atomic_load(&ks->slot[i].call_timeout) + K_SLACK) {
				snprintf(bad_desc, sizeof(bad_desc), "%s %d in a call for %lld ms",
					 i == KW ? "the pump" : "worker", i, (long long)((now - cs) / T_MS));
				bad = 2;
			}
		}
		if (bad)
			break;
		int v = (int)(t_mix(rng++) % KW);
		kill(pid[v], SIGKILL);
		int stt;
		while (waitpid(pid[v], &stt, 0) < 0 && errno == EINTR)
			;
		if (!(WIFSIGNALED(stt) && WTERMSIG(stt) == SIGKILL)) {
			char sb[32];
			snprintf(bad_desc, sizeof(bad_desc), "worker %d, killed, had exited: %s", v,
				 t_status_str(stt, sb, sizeof(sb)));
			bad = 3;
		}
		struct kslot *sl = &ks->slot[v];
		rd_kills += atomic_load(&sl->rd_pending) != 0;
		uint32_t nf = atomic_load(&sl->nfly);
		fly_kills += nf != 0;
		for (uint32_t j = 0; j < nf && j < 2 * KCH; j++)
			k_set(ks->maybe, atomic_load(&sl->fly[j]));
		kills++;
		pid[v] = k_spawn(ks, v);
	}
	int64_t run_ns = t_now() - start_t;
	/* Stop: workers first (the pump serves their last calls), then the
	 * pump. */
	atomic_store(&ks->stop_workers, 1);
	for (int i = 0; i < KW; i++)
		if (pid[i] > 0)
			t_reap_ok(pid[i], "worker at the end", K_TIMEOUT + K_SLACK);
	atomic_store(&ks->stop_pump, 1);
	t_reap_ok(pid[KW], "the pump at the end", K_TIMEOUT + K_SLACK);
	cr_assert_eq(bad, 0, "%s", bad_desc);
	/* What is still buffered was received by nobody yet: drain it. */
	unsigned char *m = malloc(KMSG_MAX);
	cr_assert_not_null(m);
	ssize_t n;
	while ((n = shmq_chan_read(ks->c[1], m, KMSG_MAX, 0)) >= 0)
		k_record(ks, m, (size_t)n);
	cr_assert_eq(n, -EAGAIN, "draining: %zd", n);
	for (int i = 0; i < KCH; i++)
		expect_read_err(ks->c[i], 0, -EAGAIN, "after the drain");
	free(m);

	uint64_t ops = 0, moved = 0;
	for (int i = 0; i <= KW; i++) {
		ops += ks->slot[i].ops;
		moved += ks->slot[i].moved;
	}
	uint64_t ids = atomic_load(&ks->next_id), lost = 0, phantom = 0, acked = 0, recvd = 0;
	uint64_t first_phantom = UINT64_MAX;
	if (ids > K_IDS)
		ids = K_IDS;
	for (uint64_t id = 0; id < ids; id++) {
		bool a = k_get(ks->acked, id), r = k_get(ks->recv, id), mb = k_get(ks->maybe, id);
		acked += a;
		recvd += r;
		lost += a && !r;
		if (r && !a && !mb && !phantom++)
			first_phantom = id;
	}
	cr_log_info("chan_kill: %llu kills (%llu with a read pending, %llu with writes in flight) "
		    "in %.1f s; %llu calls, %llu guards fired; %llu acknowledged, %llu received, "
		    "%llu lost; %llu -EMSGSIZE",
		    (unsigned long long)kills, (unsigned long long)rd_kills,
		    (unsigned long long)fly_kills, (double)run_ns / T_SEC, (unsigned long long)ops,
		    (unsigned long long)moved, (unsigned long long)acked, (unsigned long long)recvd,
		    (unsigned long long)lost, (unsigned long long)ks->emsgsize);
	cr_assert_eq(ks->errors, 0, "%u unexpected results, last %d at %d (20x a call, 21x a write "
		     "guard, 22x a read guard; x: 0 write, 1 read, 2 alt)", ks->errors, ks->last_err,
		     ks->err_where);
	cr_assert_eq(ks->hangs, 0, "%llu calls ran past their timeout", (unsigned long long)ks->hangs);
	cr_assert_eq(ks->timeouts, 0, "%llu worker calls timed out (5 s) with the pump there",
		     (unsigned long long)ks->timeouts);
	cr_assert_eq(ks->overflow, 0, "more ids than the bitmaps hold");
	cr_assert_eq(ks->torn, 0, "%llu torn or unknown messages", (unsigned long long)ks->torn);
	cr_assert_eq(ks->dups, 0, "%llu messages received twice", (unsigned long long)ks->dups);
	cr_assert_eq(phantom, 0, "%llu messages received that no guard that fired wrote (first id "
		     "%llu)", (unsigned long long)phantom, (unsigned long long)first_phantom);
	cr_assert_leq(lost, rd_kills, "%llu acknowledged messages never received, %llu kills of a "
		      "worker that could read", (unsigned long long)lost, (unsigned long long)rd_kills);
	cr_assert_gt(moved, 50 * kills, "little progress: %llu messages moved",
		     (unsigned long long)moved);
	/* Everything closed: objects, handles and bytes back. */
	(void)t_hstat(ks->h); /* reaps the dead */
	for (int i = 0; i < KCH; i++)
		cr_assert_eq(shmq_chan_close(ks->c[i]), 0);
	struct shmq_heap_stat st1 = t_hstat(ks->h);
	cr_assert_eq(st1.objects, st0.objects, "%u objects after every end closed, %u before",
		     st1.objects, st0.objects);
	cr_assert_eq(st1.handles, 1, "%u heap handles left", st1.handles);
	uint64_t live1 = st1.used - st1.free, bound = live0 + T_RECLAIM_SLACK + kills * 16 * 1024;
	cr_assert_leq(live1, bound, "%llu bytes in use after everything closed, %llu before, %llu "
		      "kills", (unsigned long long)live1, (unsigned long long)live0,
		      (unsigned long long)kills);
	cr_assert_eq(shmq_heap_close(ks->h), 0);
	munmap(ks, sizeof(*ks));
}
