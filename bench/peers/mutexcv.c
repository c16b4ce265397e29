/* A bounded queue of fixed-size slots in MAP_SHARED memory behind one
 * PTHREAD_PROCESS_SHARED mutex and two condition variables (the textbook
 * design most hand-rolled IPC queues use). Copies happen under the lock;
 * signals are sent only when someone waits. End of data: a producer count.
 *
 * JoinableQueue case: an unfinished counter beside it, as Python's
 * JoinableQueue keeps one: put counts up under the lock it already holds,
 * task_done takes the lock again to count down and broadcasts a third
 * condition variable at zero, join waits on it. */
#include "../peer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

struct mcq {
	pthread_mutex_t m;
	pthread_cond_t not_empty, not_full, all_done;
	uint32_t head, tail, count, cap;
	int producers, wait_cons, wait_prod, wait_join;
	uint64_t unfinished; /* put, not yet task_done */
	size_t size, map_len;
	_Alignas(64) char data[];
};

static int mcq_make(const struct bench_case *c, size_t depth, struct mcq **out)
{
	size_t len = sizeof(struct mcq) + depth * c->size;
	struct mcq *q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (q == MAP_FAILED)
		return -errno;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&q->m, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_cond_init(&q->not_empty, &ca);
	pthread_cond_init(&q->not_full, &ca);
	pthread_cond_init(&q->all_done, &ca);
	pthread_condattr_destroy(&ca);
	q->cap = (uint32_t)depth;
	q->size = c->size;
	q->producers = c->np;
	q->map_len = len;
	*out = q;
	return 0;
}

static void mcq_put(struct mcq *q, const void *buf)
{
	pthread_mutex_lock(&q->m);
	while (q->count == q->cap) {
		q->wait_prod++;
		pthread_cond_wait(&q->not_full, &q->m);
		q->wait_prod--;
	}
	memcpy(q->data + (size_t)q->tail * q->size, buf, q->size);
	q->tail = q->tail + 1 == q->cap ? 0 : q->tail + 1;
	q->count++;
	q->unfinished++;
	if (q->wait_cons)
		pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->m);
}

/* 1 got one, 0 end of data. */
static int mcq_get(struct mcq *q, void *buf)
{
	pthread_mutex_lock(&q->m);
	while (q->count == 0 && q->producers > 0) {
		q->wait_cons++;
		pthread_cond_wait(&q->not_empty, &q->m);
		q->wait_cons--;
	}
	if (q->count == 0) {
		pthread_mutex_unlock(&q->m);
		return 0;
	}
	memcpy(buf, q->data + (size_t)q->head * q->size, q->size);
	q->head = q->head + 1 == q->cap ? 0 : q->head + 1;
	q->count--;
	if (q->wait_prod)
		pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->m);
	return 1;
}

static void mcq_task_done(struct mcq *q)
{
	pthread_mutex_lock(&q->m);
	if (--q->unfinished == 0 && q->wait_join)
		pthread_cond_broadcast(&q->all_done);
	pthread_mutex_unlock(&q->m);
}

static void mcq_join(struct mcq *q)
{
	pthread_mutex_lock(&q->m);
	while (q->unfinished) {
		q->wait_join++;
		pthread_cond_wait(&q->all_done, &q->m);
		q->wait_join--;
	}
	pthread_mutex_unlock(&q->m);
}

static void mcq_producer_gone(struct mcq *q)
{
	pthread_mutex_lock(&q->m);
	if (--q->producers == 0)
		pthread_cond_broadcast(&q->not_empty);
	pthread_mutex_unlock(&q->m);
}

struct mc {
	struct mcq *a, *b;
};

static const char *models(const struct bench_case *c)
{
	return c->kind == CASE_JOIN ? "one mutex, condvars, plus an unfinished counter: task_done "
				      "locks again to count down, join waits on a third condvar "
				      "(Python's JoinableQueue design, in C)"
				    : NULL;
}

static int setup(const struct bench_case *c, void **ctx)
{
	struct mc *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	int rc = mcq_make(c, bench_depth(c->size), &x->a);
	if (rc < 0) {
		free(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static void teardown(void *ctx)
{
	struct mc *x = ctx;
	munmap(x->a, x->a->map_len);
	if (x->b)
		munmap(x->b, x->b->map_len);
	free(x);
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct mc *x = ctx;
	char *buf = bench_buf(w->c->size);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		mcq_put(x->a, buf);
	}
	if (w->c->kind == CASE_JOIN) {
		mcq_join(x->a);
		bench_join_done(w);
		mcq_producer_gone(x->a);
	} else {
		mcq_producer_gone(x->a);
		bench_producer_done(w);
	}
	return 0;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct mc *x = ctx;
	char *buf = bench_buf(w->c->size);
	bench_ready(w);
	bool join = w->c->kind == CASE_JOIN;
	while (mcq_get(x->a, buf)) {
		bench_got(w, buf, w->c->size);
		if (join)
			mcq_task_done(x->a);
	}
	if (!w->t_end)
		w->t_end = bench_now();
	bench_consumer_done(w);
	return 0;
}

static int pp_setup(const struct bench_case *c, void **ctx)
{
	int rc = setup(c, ctx);
	if (rc < 0)
		return rc;
	struct mc *x = *ctx;
	rc = mcq_make(c, bench_depth(c->size), &x->b);
	if (rc < 0) {
		x->b = NULL;
		teardown(x);
	}
	return rc;
}

static int round_trip(void *ctx, void *buf, size_t size)
{
	struct mc *x = ctx;
	(void)size; /* the queue's slots are c->size bytes */
	mcq_put(x->a, buf);
	mcq_get(x->b, buf);
	return 0;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct mc *x = ctx;
	int rc = bench_ping_rounds(w, x, round_trip);
	mcq_producer_gone(x->a);
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct mc *x = ctx;
	char *buf = bench_buf(w->c->size);
	bench_ready(w);
	while (mcq_get(x->a, buf))
		mcq_put(x->b, buf);
	return 0;
}

const struct bench_peer peer_mutexcv = {
	.name = "mutex-cv",
	.label = "mutex+condvar shm",
	.flags = PF_MAIN | PF_JOIN,
	.setup = setup,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
	.pp_setup = pp_setup,
	.ping = ping,
	.pong = pong,
	.pp_teardown = teardown,
	.models = models,
};
