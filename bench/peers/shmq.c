/* shmq in its four modes: single-op blocking (the baseline of every ratio),
 * single-op non-blocking (the caller spins on -EAGAIN), batch (bursts) and
 * zero-copy (reserve/commit, peek/release). End of data is shmq's own EOF:
 * producers close their handle, consumers get -EPIPE once the queue drains.
 *
 * JoinableQueue case: the blocking mode on a SHMQ_JOINABLE queue, consumers
 * call shmq_task_done after each get, producers shmq_join after their last
 * put; shmq-queue is the same queue without SHMQ_JOINABLE, task_done or join
 * (the cost of joinability). Pipe cases: shmq_pipe with its default geometry,
 * SHMQ_SIMPLEX one way, duplex for ping-pong, shmq_send / shmq_recv. */
#include "../peer.h"
#include "shmq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum mode { M_BLOCK, M_NB, M_BATCH, M_ZC };

struct sq {
	shmq_queue *q, *q2; /* q2: the way back, ping-pong */
	enum mode mode;
	bool joinable;      /* CASE_JOIN: task_done and join */
	shmq_conn *a, *b;   /* Pipe cases: a receives (ping), b sends (pong) */
};

/* shmq.h: a cell carries cell_size - 8 bytes of one message. */
static size_t cells_for(size_t len, size_t cell)
{
	size_t n = (len + cell - 9) / (cell - 8);
	return n ? n : 1;
}

static uint32_t pow2_at_least(size_t v)
{
	uint32_t p = SHMQ_MIN_CELL_SIZE;
	while (p < v)
		p <<= 1;
	return p;
}

/* Geometry, the settings shmq.h documents: 64-byte cells (the default) for
 * small messages; from 1 KiB on, and always for zero-copy, cells that hold one
 * whole message ("big cells suit big messages"; zero-copy needs it). A message
 * larger than the biggest cell (64 KiB - 8) gets half-size cells: 3 x 32 KiB
 * for 64 KiB wastes less than 2 x 64 KiB and measured faster here. The ring
 * holds >= 256 KiB (>= 1 MiB with big cells, like the pipe's buffer) and >= 16
 * messages. SHMQ_BENCH_CELL (bytes or "auto") and SHMQ_BENCH_CAP (cells)
 * override, for experiments. */
static void geometry(const struct bench_case *c, enum mode mode, struct shmq_queue_attr *attr)
{
	struct shmq_queue_attr a;
	shmq_queue_attr_init(&a);
	size_t cell = 64;
	const char *env = getenv("SHMQ_BENCH_CELL");
	if (env && strcmp(env, "auto") != 0 && atoi(env) >= (int)SHMQ_MIN_CELL_SIZE)
		cell = pow2_at_least((size_t)atoi(env));
	else if (mode == M_ZC || c->size >= 1024 || (env && strcmp(env, "auto") == 0))
		cell = pow2_at_least(c->size + 8);
	a.msg_max = c->size < 64 ? 64 : (uint32_t)c->size;
	if (cell > SHMQ_MAX_CELL_SIZE)
		cell = SHMQ_MAX_CELL_SIZE / 2;
	a.cell_size = (uint32_t)cell;
	size_t cap = (cell > 64 ? (1u << 20) : (256u << 10)) / cell;
	size_t need = 16 * cells_for(c->size, cell);
	a.capacity = (uint32_t)(cap > need ? cap : need);
	const char *ecap = getenv("SHMQ_BENCH_CAP");
	if (ecap && atoi(ecap) > 0)
		a.capacity = (uint32_t)atoi(ecap);
	*attr = a;
}

static int make_queue(const struct bench_case *c, enum mode mode, bool joinable, shmq_queue **q)
{
	struct shmq_queue_attr a;
	geometry(c, mode, &a);
	if (joinable)
		a.flags |= SHMQ_JOINABLE;
	return shmq_queue_create(NULL, &a, q);
}

/* Pipe cases: shmq_pipe() with its defaults, as an application calls it;
 * or (sized) shmq_pipe_attr with the geometry above for the messages the
 * queues carry: the whole message up to the chunk size (64 KiB), chunks
 * beyond it. */
static int make_pipe(const struct bench_case *c, struct sq *x, bool sized)
{
	int flags = c->kind == CASE_CONN ? SHMQ_SIMPLEX : 0;
	if (!sized)
		return shmq_pipe(&x->a, &x->b, flags);
	struct bench_case chunked = *c;
	if (chunked.size > SHMQ_DEFAULT_MSG_MAX)
		chunked.size = SHMQ_DEFAULT_MSG_MAX;
	struct shmq_queue_attr a;
	geometry(&chunked, M_BLOCK, &a);
	a.msg_max = 0; /* the default chunk */
	return shmq_pipe_attr(&x->a, &x->b, flags, &a);
}

/* joinable: CASE_JOIN with task_done and join; sized: Pipe cases through
 * shmq_pipe_attr. */
static int setup_mode(const struct bench_case *c, void **ctx, enum mode mode, bool joinable,
		      bool sized)
{
	struct sq *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->mode = mode;
	x->joinable = joinable;
	int rc = bench_is_conn(c) ? make_pipe(c, x, sized) : make_queue(c, mode, joinable, &x->q);
	if (rc == 0 && c->kind == CASE_PINGPONG) {
		rc = make_queue(c, mode, false, &x->q2);
		if (rc < 0)
			shmq_queue_close(x->q);
	}
	if (rc < 0) {
		free(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

/* The baseline: a JoinableQueue in the JoinableQueue case. */
static int setup_block(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_BLOCK, c->kind == CASE_JOIN, false);
}

static int setup_plain(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_BLOCK, false, false);
}

static int setup_sized(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_BLOCK, false, true);
}

static int setup_nb(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_NB, false, false);
}

static int setup_batch(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_BATCH, false, false);
}

static int setup_zc(const struct bench_case *c, void **ctx)
{
	return setup_mode(c, ctx, M_ZC, false, false);
}

static const char *models(const struct bench_case *c)
{
	switch (c->kind) {
	case CASE_JOIN:
		return "JoinableQueue (SHMQ_JOINABLE): get + shmq_task_done per message, each producer "
		       "shmq_join after its last put; time until the last join returns";
	case CASE_CONN:
		return "shmq_pipe(SHMQ_SIMPLEX) defaults (1 MiB ring of 1024 1 KiB cells, 64 KiB chunks), "
		       "shmq_send / shmq_recv";
	case CASE_CONN_PP:
		return "shmq_pipe duplex defaults (two 1 MiB rings of 1024 1 KiB cells, 64 KiB chunks), "
		       "shmq_send / shmq_recv";
	default:
		return NULL;
	}
}

static const char *plain_models(const struct bench_case *c)
{
	(void)c;
	return "the same queue without SHMQ_JOINABLE: no task_done, no join; time to the last get";
}

static const char *sized_models(const struct bench_case *c)
{
	(void)c;
	return "shmq_pipe_attr with the queue cases' geometry for min(message, 64 KiB chunk): "
	       "64 B cells below 1 KiB, else one message or chunk per cell (32 KiB cells for a "
	       "chunk), ring >= 1 MiB";
}

static const char *zc_skip(const struct bench_case *c)
{
	if (c->size > SHMQ_MAX_CELL_SIZE - 8)
		return "zero-copy needs the message in one cell: at most SHMQ_MAX_CELL_SIZE - 8 bytes";
	return NULL;
}

/* The parent holds the creator's handles: drop them so they count as neither side. */
static void parent(void *ctx)
{
	struct sq *x = ctx;
	if (x->q)
		shmq_queue_close(x->q);
	if (x->q2)
		shmq_queue_close(x->q2);
	if (x->a)
		shmq_conn_close(x->a);
	if (x->b)
		shmq_conn_close(x->b);
}

static void teardown(void *ctx) { free(ctx); }

static int conn_producer(struct sq *x, struct bench_worker *w);
static int conn_consumer(struct sq *x, struct bench_worker *w);

static int producer(void *ctx, struct bench_worker *w)
{
	struct sq *x = ctx;
	if (x->b)
		return conn_producer(x, w);
	shmq_queue *q = x->q;
	size_t size = w->c->size;
	int rc = 0;
	shmq_queue_shutdown(q, SHMQ_RD);
	if (x->mode == M_BATCH) {
		unsigned n = w->c->batch;
		struct iovec *iov = calloc(n, sizeof(*iov));
		char *bufs = bench_buf(size * n);
		if (!iov || !bufs)
			return -ENOMEM;
		bench_ready(w);
		while (rc >= 0 && bench_more(w)) {
			for (unsigned i = 0; i < n; i++) {
				iov[i].iov_base = bufs + i * size;
				iov[i].iov_len = size;
				bench_fill(w, iov[i].iov_base);
			}
			for (unsigned off = 0; off < n;) {
				rc = shmq_put_burst(q, iov + off, n - off, -1);
				if (rc < 0) {
					w->seq -= n - off;
					break;
				}
				off += (unsigned)rc;
			}
		}
	} else if (x->mode == M_ZC) {
		bench_ready(w);
		while (bench_more(w)) {
			shmq_slot s;
			rc = shmq_put_reserve(q, size, &s, -1);
			if (rc < 0)
				break;
			bench_fill(w, s.data);
			rc = shmq_put_commit(q, &s);
			if (rc < 0)
				break;
		}
	} else {
		char *buf = bench_buf(size);
		if (!buf)
			return -ENOMEM;
		int64_t tmo = x->mode == M_NB ? 0 : -1;
		bench_ready(w);
		while (bench_more(w)) {
			bench_fill(w, buf);
			unsigned spins = 0;
			while ((rc = shmq_put(q, buf, size, tmo)) == -EAGAIN)
				bench_backoff(&spins);
			if (rc < 0) {
				w->seq--;
				break;
			}
		}
	}
	if (x->joinable && rc >= 0) {
		rc = shmq_join(q, -1);
		bench_join_done(w);
		shmq_queue_close(q);
	} else {
		shmq_queue_close(q); /* last producer gone: consumers drain, then -EPIPE */
		bench_producer_done(w);
	}
	return rc < 0 ? rc : 0;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct sq *x = ctx;
	if (x->a)
		return conn_consumer(x, w);
	shmq_queue *q = x->q;
	size_t size = w->c->size;
	ssize_t rc = 0;
	shmq_queue_shutdown(q, SHMQ_WR);
	if (x->mode == M_BATCH) {
		unsigned n = w->c->batch;
		struct iovec *iov = calloc(n, sizeof(*iov));
		char *bufs = bench_buf(size * n);
		if (!iov || !bufs)
			return -ENOMEM;
		for (unsigned i = 0; i < n; i++)
			iov[i].iov_base = bufs + i * size;
		bench_ready(w);
		for (;;) {
			for (unsigned i = 0; i < n; i++)
				iov[i].iov_len = size;
			rc = shmq_get_burst(q, iov, n, -1);
			if (rc < 0)
				break;
			for (int i = 0; i < rc; i++)
				bench_got(w, iov[i].iov_base, iov[i].iov_len);
		}
	} else if (x->mode == M_ZC) {
		bench_ready(w);
		for (;;) {
			shmq_slot s;
			rc = shmq_get_peek(q, &s, -1);
			if (rc < 0)
				break;
			bench_got(w, s.data, s.len);
			rc = shmq_get_release(q, &s);
			if (rc < 0)
				break;
		}
	} else {
		char *buf = bench_buf(size);
		if (!buf)
			return -ENOMEM;
		int64_t tmo = x->mode == M_NB ? 0 : -1;
		bench_ready(w);
		for (;;) {
			unsigned spins = 0;
			while ((rc = shmq_get(q, buf, size, tmo)) == -EAGAIN)
				bench_backoff(&spins);
			if (rc < 0)
				break;
			bench_got(w, buf, (size_t)rc);
			if (x->joinable && (rc = shmq_task_done(q)) < 0)
				break;
		}
	}
	if (!w->t_end)
		w->t_end = bench_now();
	shmq_queue_close(q);
	bench_consumer_done(w);
	return rc == -EPIPE ? 0 : (int)rc;
}

/* ------------------------------------------------------------ ping-pong -- */


static int put1(struct sq *x, shmq_queue *q, const void *buf, size_t len)
{
	unsigned spins = 0;
	int rc;
	while ((rc = shmq_put(q, buf, len, x->mode == M_NB ? 0 : -1)) == -EAGAIN)
		bench_backoff(&spins);
	return rc;
}

static ssize_t get1(struct sq *x, shmq_queue *q, void *buf, size_t cap)
{
	unsigned spins = 0;
	ssize_t rc;
	while ((rc = shmq_get(q, buf, cap, x->mode == M_NB ? 0 : -1)) == -EAGAIN)
		bench_backoff(&spins);
	return rc;
}

static int round_trip(void *ctx, void *buf, size_t size)
{
	struct sq *x = ctx;
	int rc = put1(x, x->q, buf, size);
	if (rc < 0)
		return rc;
	ssize_t r = get1(x, x->q2, buf, size);
	return r < 0 ? (int)r : 0;
}

/* ---------------------------------------------------------------- Pipe -- */

static int conn_producer(struct sq *x, struct bench_worker *w)
{
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	shmq_conn_close(x->a);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		if ((rc = shmq_send(x->b, buf, size, -1)) < 0) {
			w->seq--;
			break;
		}
	}
	shmq_conn_close(x->b); /* the receiver drains, then -EPIPE */
	bench_producer_done(w);
	return rc;
}

static int conn_consumer(struct sq *x, struct bench_worker *w)
{
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	ssize_t r;
	shmq_conn_close(x->b);
	bench_ready(w);
	while ((r = shmq_recv(x->a, buf, size, -1)) >= 0)
		bench_got(w, buf, (size_t)r);
	if (!w->t_end)
		w->t_end = bench_now();
	shmq_conn_close(x->a);
	bench_consumer_done(w);
	return r == -EPIPE ? 0 : (int)r;
}

static int conn_round_trip(void *ctx, void *buf, size_t size)
{
	struct sq *x = ctx;
	int rc = shmq_send(x->a, buf, size, -1);
	ssize_t r = rc < 0 ? rc : shmq_recv(x->a, buf, size, -1);
	return r < 0 ? (int)r : (size_t)r == size ? 0 : -EIO;
}

static int conn_ping(struct sq *x, struct bench_worker *w)
{
	shmq_conn_close(x->b);
	int rc = bench_ping_rounds(w, x, conn_round_trip);
	shmq_conn_close(x->a); /* pong sees -EPIPE */
	return rc;
}

static int conn_pong(struct sq *x, struct bench_worker *w)
{
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	shmq_conn_close(x->a);
	bench_ready(w);
	ssize_t r;
	while ((r = shmq_recv(x->b, buf, size, -1)) >= 0)
		if (shmq_send(x->b, buf, (size_t)r, -1) < 0)
			break;
	shmq_conn_close(x->b);
	return r == -EPIPE || r >= 0 ? 0 : (int)r;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct sq *x = ctx;
	if (x->a)
		return conn_ping(x, w);
	shmq_queue_shutdown(x->q, SHMQ_RD);
	shmq_queue_shutdown(x->q2, SHMQ_WR);
	int rc = bench_ping_rounds(w, x, round_trip);
	shmq_queue_close(x->q); /* pong sees -EPIPE */
	shmq_queue_close(x->q2);
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct sq *x = ctx;
	if (x->b)
		return conn_pong(x, w);
	char *buf = bench_buf(w->c->size);
	shmq_queue_shutdown(x->q, SHMQ_WR);
	shmq_queue_shutdown(x->q2, SHMQ_RD);
	bench_ready(w);
	ssize_t r;
	while ((r = get1(x, x->q, buf, w->c->size)) >= 0)
		if (put1(x, x->q2, buf, (size_t)r) < 0)
			break;
	shmq_queue_close(x->q);
	shmq_queue_close(x->q2);
	return r == -EPIPE || r >= 0 ? 0 : (int)r;
}

/* Every mode shares the workers; they differ in setup (what the queue or pipe
 * is) and in the cases they run. */
#define WORKERS(setup_fn)                                                                    \
	.setup = setup_fn, .parent = parent, .producer = producer, .consumer = consumer,     \
	.teardown = teardown
#define PINGPONG(setup_fn)                                                                   \
	.pp_setup = setup_fn, .pp_parent = parent, .ping = ping, .pong = pong,               \
	.pp_teardown = teardown

const struct bench_peer peer_shmq = {
	.name = "shmq",
	.label = "shmq",
	.flags = PF_MAIN | PF_SHMQ | PF_JOIN | PF_CONN,
	WORKERS(setup_block),
	PINGPONG(setup_block),
	.models = models,
};

/* The JoinableQueue case without joinability: what task_done and join cost. */
const struct bench_peer peer_shmq_queue = {
	.name = "shmq-queue",
	.label = "shmq Queue (no join)",
	.flags = PF_MAIN | PF_SHMQ | PF_JOIN | PF_ONLY,
	WORKERS(setup_plain),
	.models = plain_models,
};

/* The Pipe cases with cells sized for the messages, as the queue cases have. */
const struct bench_peer peer_shmq_pipe_sized = {
	.name = "shmq-pipe-sized",
	.label = "shmq Pipe, sized cells",
	.flags = PF_MAIN | PF_SHMQ | PF_CONN | PF_ONLY,
	WORKERS(setup_sized),
	PINGPONG(setup_sized),
	.models = sized_models,
};

const struct bench_peer peer_shmq_nb = {
	.name = "shmq-nb",
	.label = "shmq non-blocking spin",
	.flags = PF_MAIN | PF_SHMQ,
	WORKERS(setup_nb),
	PINGPONG(setup_nb),
};

const struct bench_peer peer_shmq_batch = {
	.name = "shmq-batch",
	.label = "shmq batch (burst)",
	.flags = PF_MAIN | PF_SHMQ | PF_TPUT_ONLY,
	WORKERS(setup_batch),
};

const struct bench_peer peer_shmq_zc = {
	.name = "shmq-zc",
	.label = "shmq zero-copy",
	.flags = PF_MAIN | PF_SHMQ | PF_ZC,
	.skip = zc_skip,
	WORKERS(setup_zc),
};
