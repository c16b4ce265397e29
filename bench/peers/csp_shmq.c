/* shmq's CSP channels (include/shmq/chan.h), and shmq's Queue as the
 * reference of the round-trip case.
 *
 * csp-shmq: one anonymous heap per run, created by the harness before it
 * forks; each channel gets a reader end (SHMQ_RD) and a writer end (SHMQ_WR),
 * as PyCSP's channel.reader() / .writer(), and the creating end is closed.
 * The workers inherit every end. Writes and reads wait forever (-1), as the
 * peers' calls do; the alternation is shmq_alt() over read guards with
 * SHMQ_ALT_FAIR; a writer ends with shmq_chan_retire(SHMQ_WR), after which
 * the reader drains and gets -EPIPE.
 *
 * csp-queue (reference, round trips only): the same round trip over two
 * shmq Queues (shmq_put / shmq_get, blocking, 64-byte cells), the design the
 * queue ping-pong case measures. End of data: a 0-byte message. */
#include "../csp.h"

#include <shmq.h>
#include <shmq/chan.h>

#include <errno.h>
#include <stdlib.h>

struct cs {
	shmq_heap *h;
	shmq_chan *rd[CSP_MAX_CHANS], *wr[CSP_MAX_CHANS];
	int nchan;
	shmq_queue *q[2]; /* csp-queue */
};

static void cs_teardown(void *ctx)
{
	struct cs *x = ctx;
	for (int i = 0; i < x->nchan; i++) {
		if (x->rd[i])
			shmq_chan_close(x->rd[i]);
		if (x->wr[i])
			shmq_chan_close(x->wr[i]);
	}
	for (int i = 0; i < 2; i++)
		if (x->q[i])
			shmq_queue_close(x->q[i]);
	if (x->h)
		shmq_heap_close(x->h);
	free(x);
}

static int cs_setup(const struct csp_case *c, void **ctx)
{
	struct cs *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = 64ull << 20; /* address space; it grows on demand */
	int rc = shmq_heap_create(NULL, &attr, &x->h);
	for (int i = 0; rc == 0 && i < csp_nchans(c); i++) {
		shmq_chan *cr;
		rc = shmq_chan_create(x->h, NULL, c->buffer, &cr);
		if (rc < 0)
			break;
		x->nchan = i + 1;
		rc = shmq_chan_open(x->h, shmq_chan_name(cr), SHMQ_RD, &x->rd[i]);
		if (rc == 0)
			rc = shmq_chan_open(x->h, shmq_chan_name(cr), SHMQ_WR, &x->wr[i]);
		shmq_chan_close(cr);
	}
	if (rc < 0) {
		cs_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int cs_write(void *ctx, int ch, const void *buf, size_t len)
{
	struct cs *x = ctx;
	return shmq_chan_write(x->wr[ch], buf, len, -1);
}

static ssize_t cs_read(void *ctx, int ch, void *buf, size_t cap)
{
	struct cs *x = ctx;
	return shmq_chan_read(x->rd[ch], buf, cap, -1);
}

static int cs_end(void *ctx, int ch)
{
	struct cs *x = ctx;
	return shmq_chan_retire(x->wr[ch], SHMQ_WR);
}

static ssize_t cs_alt(void *ctx, const int *chs, int n, void *buf, size_t cap, int *fired)
{
	struct cs *x = ctx;
	struct shmq_guard g[CSP_MAX_CHANS];
	for (int i = 0; i < n; i++)
		g[i] = (struct shmq_guard){ .chan = x->rd[chs[i]], .op = SHMQ_GUARD_READ,
					    .rbuf = buf, .rcap = cap };
	int idx = shmq_alt(g, (unsigned)n, SHMQ_ALT_FAIR, -1);
	*fired = idx;
	return idx < 0 ? idx : g[idx].result;
}

static int cs_worker(void *ctx, struct csp_worker *w)
{
	return csp_worker_run(w, ctx, cs_write, cs_read, cs_end, cs_alt);
}

static const char *cs_models(const struct csp_case *c)
{
	switch (c->kind) {
	case CSP_ALT_TPUT:
	case CSP_ALT_RTT:
		return "shmq_alt(read guards, SHMQ_ALT_FAIR, -1); writers shmq_chan_write(-1), "
		       "end: shmq_chan_retire(SHMQ_WR)";
	default:
		return c->buffer ? "shmq_chan_create(buffer 64): shmq_chan_write / shmq_chan_read "
				   "(-1), end: shmq_chan_retire(SHMQ_WR)"
				 : "shmq_chan_create(buffer 0): shmq_chan_write / shmq_chan_read (-1), "
				   "end: shmq_chan_retire(SHMQ_WR)";
	}
}

const struct csp_peer csp_shmq = {
	.name = "shmq",
	.label = "shmq channel",
	.flags = CP_SHMQ,
	.kinds = CSP_KIND(CSP_RTT) | CSP_KIND(CSP_TPUT) | CSP_KIND(CSP_ALT_TPUT) |
		 CSP_KIND(CSP_ALT_RTT),
	.setup = cs_setup,
	.worker = cs_worker,
	.teardown = cs_teardown,
	.models = cs_models,
};

/* ------------------------------------------------- csp-queue (reference) -- */

static int q_setup(const struct csp_case *c, void **ctx)
{
	struct cs *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	struct shmq_queue_attr a;
	shmq_queue_attr_init(&a);
	a.msg_max = c->size < 64 ? 64 : (uint32_t)c->size;
	int rc = 0;
	for (int i = 0; rc == 0 && i < 2; i++)
		rc = shmq_queue_create(NULL, &a, &x->q[i]);
	if (rc < 0) {
		cs_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int q_write(void *ctx, int ch, const void *buf, size_t len)
{
	struct cs *x = ctx;
	return shmq_put(x->q[ch], buf, len, -1);
}

static ssize_t q_read(void *ctx, int ch, void *buf, size_t cap)
{
	struct cs *x = ctx;
	ssize_t r = shmq_get(x->q[ch], buf, cap, -1);
	return r == 0 ? -EPIPE : r; /* the end marker */
}

static int q_end(void *ctx, int ch)
{
	struct cs *x = ctx;
	return shmq_put(x->q[ch], NULL, 0, -1);
}

static ssize_t q_alt(void *ctx, const int *chs, int n, void *buf, size_t cap, int *fired)
{
	(void)ctx, (void)chs, (void)n, (void)buf, (void)cap;
	*fired = -1;
	return -ENOTSUP;
}

static int q_worker(void *ctx, struct csp_worker *w)
{
	return csp_worker_run(w, ctx, q_write, q_read, q_end, q_alt);
}

static const char *q_models(const struct csp_case *c)
{
	(void)c;
	return "reference: the same round trip over two shmq Queues, shmq_put / shmq_get (-1), "
	       "64-byte cells (buffered, not a rendezvous: the target's yardstick)";
}

const struct csp_peer csp_shmq_queue = {
	.name = "csp-queue",
	.label = "ref: shmq Queue ping-pong",
	.flags = CP_REF,
	.kinds = CSP_KIND(CSP_RTT),
	.setup = q_setup,
	.worker = q_worker,
	.teardown = cs_teardown,
	.models = q_models,
};
