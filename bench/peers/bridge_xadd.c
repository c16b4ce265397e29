/* The bridge cases' ceiling: Redis streams from hiredis directly, on the same
 * redis-server as the bridge, one entry per message (field "d").
 *
 * Throughput: one client, redis-benchmark -P 256 style: 256 XADDs written
 * (redisAppendCommand), then their 256 replies read, and again; no reader.
 * The figure: entries / (last reply - first send).
 * Latency: the producer XADDs each message and waits for the reply; a second
 * client reads with XREAD COUNT 512 BLOCK 1000 from the last id it saw. The
 * end of data: an entry with field "end". Each run has a fresh stream,
 * deleted afterwards. */
#include "../bridge.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bx {
	char key[96];
	char host[64];
	int port;
	redisContext *rc;
	unsigned inflight;
	uint64_t bad; /* error replies */
	char last[64]; /* XREAD: the last id seen */
	redisReply *batch; /* XREAD: the entries not yet handed out */
	size_t next;
	bool ended;
};

static int setup(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
		 char *note, size_t len)
{
	(void)c, (void)note, (void)len;
	struct bx *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	snprintf(x->key, sizeof(x->key), "shmqbench:xadd:%d:%u", (int)getpid(), env->run);
	snprintf(x->host, sizeof(x->host), "%s", env->host);
	x->port = env->port;
	snprintf(x->last, sizeof(x->last), "0-0");
	*ctx = x;
	return 0;
}

static int reply_rc(struct bx *x, redisReply *r)
{
	if (!r)
		return -EIO;
	if (r->type == REDIS_REPLY_ERROR)
		x->bad++;
	freeReplyObject(r);
	return 0;
}

/* Throughput: pipelined. */
static int drain(struct bx *x)
{
	for (; x->inflight; x->inflight--) {
		void *r;
		if (redisGetReply(x->rc, &r) != REDIS_OK || reply_rc(x, r) < 0)
			return -EIO;
	}
	return x->bad ? -EPROTO : 0;
}

static int xadd_pipelined(void *ctx, const void *buf, size_t len)
{
	struct bx *x = ctx;
	if (redisAppendCommand(x->rc, "XADD %s * d %b", x->key, buf, len) != REDIS_OK)
		return -EIO;
	return ++x->inflight == BR_PIPELINE ? drain(x) : 0;
}

static int end_pipelined(void *ctx)
{
	return drain(ctx);
}

/* Latency: one XADD at a time, and an end entry. */
static int xadd_one(void *ctx, const void *buf, size_t len)
{
	struct bx *x = ctx;
	if (reply_rc(x, redisCommand(x->rc, "XADD %s * d %b", x->key, buf, len)) < 0)
		return -EIO;
	return x->bad ? -EPROTO : 0;
}

static int end_one(void *ctx)
{
	struct bx *x = ctx;
	if (reply_rc(x, redisCommand(x->rc, "XADD %s * end 1", x->key)) < 0)
		return -EIO;
	return x->bad ? -EPROTO : 0;
}

/* XREAD reply: [[key, [[id, [field, value, ...]], ...]]], or nil on timeout. */
static ssize_t xread(void *ctx, void *buf, size_t cap)
{
	struct bx *x = ctx;
	for (;;) {
		if (x->ended)
			return -EPIPE;
		redisReply *b = x->batch;
		if (b && b->type == REDIS_REPLY_ARRAY && b->elements == 1 &&
		    b->element[0]->type == REDIS_REPLY_ARRAY && b->element[0]->elements == 2) {
			redisReply *es = b->element[0]->element[1];
			if (x->next < es->elements) {
				redisReply *e = es->element[x->next++];
				if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
				    e->element[1]->type != REDIS_REPLY_ARRAY ||
				    e->element[1]->elements < 2)
					return -EPROTO;
				snprintf(x->last, sizeof(x->last), "%s", e->element[0]->str);
				redisReply *f = e->element[1]->element[0], *v = e->element[1]->element[1];
				if (strcmp(f->str, "end") == 0) {
					x->ended = true;
					continue;
				}
				size_t n = v->len < cap ? v->len : cap;
				memcpy(buf, v->str, n);
				return (ssize_t)v->len;
			}
		}
		if (b)
			freeReplyObject(b);
		x->batch = NULL;
		x->next = 0;
		b = redisCommand(x->rc, "XREAD COUNT 512 BLOCK 1000 STREAMS %s %s", x->key, x->last);
		if (!b)
			return -EIO;
		if (b->type == REDIS_REPLY_ERROR) {
			freeReplyObject(b);
			return -EPROTO;
		}
		x->batch = b; /* nil (timed out): read again */
	}
}

static int worker(void *ctx, struct bridge_worker *w)
{
	struct bx *x = ctx;
	bool tput = w->c->kind == BR_TPUT;
	if (tput && w->id == 1) { /* no reader: the writer's own rate */
		bridge_ready(w);
		return 0;
	}
	struct timeval tv = { 5, 0 };
	x->rc = redisConnectWithTimeout(x->host, x->port, tv);
	if (!x->rc || x->rc->err) {
		bridge_abort(w, -ECONNREFUSED, "connect");
		return -ECONNREFUSED;
	}
	int rc;
	if (w->id == 0)
		rc = tput ? br_producer(w, x, xadd_pipelined, end_pipelined)
			  : br_producer(w, x, xadd_one, end_one);
	else
		rc = br_consumer(w, x, xread);
	redisFree(x->rc);
	return rc;
}

static int teardown(void *ctx, char *note, size_t len)
{
	(void)note, (void)len;
	struct bx *x = ctx;
	br_redis_del(x->key);
	free(x);
	return 0;
}

static const char *models(const struct bridge_case *c)
{
	if (c->kind == BR_TPUT)
		return "one hiredis client, XADD key * d <msg>, 256 written then 256 replies read "
		       "(redis-benchmark -P 256); no reader";
	return "XADD (one at a time, reply awaited) -> stream -> a second client's XREAD BLOCK";
}

const struct bridge_peer bridge_xadd = {
	.name = "xadd-pipelined",
	.label = "XADD pipelined (ceiling)",
	.flags = BRP_WRITER_TPUT,
	.setup = setup,
	.worker = worker,
	.teardown = teardown,
	.models = models,
};
