/* The bridge cases' baseline: two named shmq queues joined over Redis by two
 * shmq-bridge processes (tools/bridge/), as a user would run them:
 *
 *   shmq-bridge out /src redis://127.0.0.1:PORT/STREAM
 *   shmq-bridge in  redis://127.0.0.1:PORT/STREAM /dst --group g --producers 1
 *
 * with the bridges' defaults (64 messages per stream entry). The queues are
 * created with SHMQ_NOROLES (as `shmq create` does) and the bench's geometry
 * (bench/peers/shmq.c: 64-byte cells below 1 KiB, a ring of 256 KiB; from
 * 1 KiB one message per cell, a ring of 1 MiB). The producer puts into /src
 * and closes it: the out bridge sends the end marker and exits 0, the in
 * bridge drops its producer role once it has it (the consumer of /dst gets
 * -EPIPE) and exits 0. Every run has a fresh stream, deleted afterwards, and
 * fresh queues. */
#include "../bridge.h"
#include "shmq.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define START_NS (5 * 1000000000LL) /* bridges attached to their queues */
#define EXIT_NS (10 * 1000000000LL) /* bridges gone after the end of data */

struct bs {
	char src[64], dst[64], stream[96], url[160];
	char err_out[192], err_in[192];
	shmq_queue *qs, *qd; /* the creator's handles (no roles) */
	shmq_queue *q;       /* a worker's own */
	pid_t out, in;
};

static size_t cells_for(size_t len, size_t cell)
{
	size_t n = (len + cell - 9) / (cell - 8);
	return n ? n : 1;
}

static void geometry(size_t size, struct shmq_queue_attr *a)
{
	shmq_queue_attr_init(a);
	size_t cell = 64;
	if (size >= 1024)
		while (cell < size + 8)
			cell <<= 1;
	a->cell_size = (uint32_t)cell;
	a->msg_max = size < 64 ? 64 : (uint32_t)size;
	size_t cap = (cell > 64 ? (1u << 20) : (256u << 10)) / cell;
	size_t need = 16 * cells_for(size, cell);
	a->capacity = (uint32_t)(cap > need ? cap : need);
	a->flags = SHMQ_NOROLES;
}

static void cleanup(struct bs *x)
{
	if (x->qs)
		shmq_queue_close(x->qs);
	if (x->qd)
		shmq_queue_close(x->qd);
	if (x->src[0])
		shmq_unlink(x->src);
	if (x->dst[0])
		shmq_unlink(x->dst);
	br_redis_del(x->stream);
	free(x);
}

static void stop(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		br_wait(pid, 2000000000LL, "", NULL, (char[2]){ 0 }, 1);
	}
}

/* Create the queue /shmqbench-br-PID-RUN-END into name (left empty when
 * that fails, so that cleanup unlinks only what exists). */
static int create_end(char *name, size_t cap, const char *end, const struct bridge_env *env,
		      const struct shmq_queue_attr *a, shmq_queue **q, char *note, size_t len)
{
	snprintf(name, cap, "/shmqbench-br-%d-%u-%s", (int)getpid(), env->run, end);
	int rc = shmq_queue_create(name, a, q);
	if (rc < 0) {
		snprintf(note, len, "create %s: %s", name, strerror(-rc));
		name[0] = 0;
	}
	return rc;
}

/* batch: the out bridge's --batch (messages per stream entry). */
static int setup_batch(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
		       char *note, size_t len, const char *batch)
{
	struct bs *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	int pid = (int)getpid();
	snprintf(x->stream, sizeof(x->stream), "shmqbench:bridge:%d:%u", pid, env->run);
	snprintf(x->url, sizeof(x->url), "redis://%s:%d/%s", env->host, env->port, x->stream);
	snprintf(x->err_out, sizeof(x->err_out), "%s/bridge-out.err", env->tmpdir);
	snprintf(x->err_in, sizeof(x->err_in), "%s/bridge-in.err", env->tmpdir);
	struct shmq_queue_attr a;
	geometry(c->size, &a);
	int rc;
	if ((rc = create_end(x->src, sizeof(x->src), "src", env, &a, &x->qs, note, len)) < 0 ||
	    (rc = create_end(x->dst, sizeof(x->dst), "dst", env, &a, &x->qd, note, len)) < 0) {
		cleanup(x);
		return rc;
	}
	char *argv_in[] = { (char *)env->bridge, "in", x->url, x->dst, "--group", "g",
			    "--producers", "1", NULL };
	char *argv_out[] = { (char *)env->bridge, "out", x->src, x->url, "--batch", (char *)batch,
			     NULL };
	/* SIGTERM if the bench dies: a bridge's clean exit. */
	x->in = br_spawn(argv_in, x->err_in, SIGTERM, note, len);
	x->out = x->in > 0 ? br_spawn(argv_out, x->err_out, SIGTERM, note, len) : -1;
	if (x->in < 0 || x->out < 0) {
		stop(x->in);
		cleanup(x);
		return -ECHILD;
	}
	/* Time the data, not the bridges' start: wait until the out bridge is
	 * a consumer of /src and the in bridge a producer of /dst. */
	int64_t deadline = bench_now() + START_NS;
	for (;;) {
		struct shmq_stat ss, sd;
		if (shmq_queue_stat(x->qs, &ss) == 0 && shmq_queue_stat(x->qd, &sd) == 0 &&
		    ss.consumers >= 1 && sd.producers >= 1)
			break;
		if (br_exited(x->out, "shmq-bridge out", x->err_out, note, len) < 0) {
			x->out = -1; /* reaped */
			rc = -ECHILD;
		}
		if (br_exited(x->in, "shmq-bridge in", x->err_in, note, len) < 0) {
			x->in = -1;
			rc = -ECHILD;
		}
		if (rc == 0 && bench_now() > deadline) {
			snprintf(note, len, "the bridges did not attach to %s and %s within %lld s",
				 x->src, x->dst, START_NS / 1000000000);
			rc = -ETIMEDOUT;
		}
		if (rc < 0) {
			stop(x->out);
			stop(x->in);
			cleanup(x);
			return rc;
		}
		sleep_ns(1000000);
	}
	*ctx = x;
	return 0;
}

static int put(void *ctx, const void *buf, size_t len)
{
	return shmq_put(((struct bs *)ctx)->q, buf, len, -1);
}

static int end(void *ctx)
{
	struct bs *x = ctx;
	int rc = shmq_queue_close(x->q);
	x->q = NULL;
	return rc;
}

static ssize_t get(void *ctx, void *buf, size_t cap)
{
	return shmq_get(((struct bs *)ctx)->q, buf, cap, -1);
}

static int worker(void *ctx, struct bridge_worker *w)
{
	struct bs *x = ctx;
	/* Only the worker's own handle: the creator's go (fork copies them). */
	int rc = shmq_queue_open(w->id == 0 ? x->src : x->dst, w->id == 0 ? SHMQ_WR : SHMQ_RD,
				 &x->q);
	if (rc < 0) {
		bridge_abort(w, rc, "open");
		return rc;
	}
	if (w->id == 0)
		return br_producer(w, x, put, end);
	rc = br_consumer(w, x, get);
	shmq_queue_close(x->q);
	return rc;
}

static int teardown(void *ctx, char *note, size_t len)
{
	struct bs *x = ctx;
	int rc = 0;
	if (x->out > 0 && br_wait(x->out, EXIT_NS, "shmq-bridge out", x->err_out, note, len) < 0)
		rc = -EIO;
	if (x->in > 0 && br_wait(x->in, EXIT_NS, "shmq-bridge in", x->err_in, note, len) < 0)
		rc = -EIO;
	cleanup(x);
	return rc;
}

static int setup(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
		 char *note, size_t len)
{
	return setup_batch(c, env, ctx, note, len, "64");
}

/* One message per stream entry: what the bridge costs where Redis sees
 * every message, as the XADD ceiling's client does. */
static int setup_unpacked(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
			  char *note, size_t len)
{
	return setup_batch(c, env, ctx, note, len, "1");
}

static const char *models(const struct bridge_case *c)
{
	(void)c;
	return "shmq queue -> shmq-bridge out (64 msgs per XADD entry) -> stream -> shmq-bridge in "
	       "(XREADGROUP, XACK, XTRIM MINID) -> shmq queue: producer, 2 bridges, redis-server, consumer";
}

static const char *models_unpacked(const struct bridge_case *c)
{
	(void)c;
	return "the same with shmq-bridge out --batch 1: one stream entry per message";
}

const struct bridge_peer bridge_shmq_unpacked = {
	.name = "shmq-batch1",
	.label = "shmq bridge --batch 1",
	.flags = 0,
	.setup = setup_unpacked,
	.worker = worker,
	.teardown = teardown,
	.models = models_unpacked,
};

const struct bridge_peer bridge_shmq = {
	.name = "shmq",
	.label = "shmq bridge",
	.flags = BRP_SHMQ,
	.setup = setup,
	.worker = worker,
	.teardown = teardown,
	.models = models,
};
