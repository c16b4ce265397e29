/* liburcu's wait-free concurrent queue (cds_wfcq) with its inlined (_LGPL_SOURCE)
 * fast paths. It holds pointers, so it works between threads of one process
 * only: producers and consumers here are THREADS, not processes (labelled so).
 * Bounded like the others: nodes carrying payload buffers come from a pool and
 * go back to it through a second wfcq (wait-free enqueue, dequeue under the
 * queue's mutex). Empty is retried with pause, then sched_yield. */
#define _LGPL_SOURCE
#include "../peer.h"

#include <errno.h>
#include <stdlib.h>
#include <urcu/wfcqueue.h>

struct wnode {
	struct cds_wfcq_node node;
	char *data;
};

struct wq {
	_Alignas(128) struct cds_wfcq_head dh;
	_Alignas(128) struct cds_wfcq_tail dt;
	_Alignas(128) struct cds_wfcq_head fh;
	_Alignas(128) struct cds_wfcq_tail ft;
	struct wnode *nodes;
	char *bufs;
	size_t size;
};

static int setup(const struct bench_case *c, void **ctx)
{
	struct wq *q = aligned_alloc(128, sizeof(*q));
	if (!q)
		return -ENOMEM;
	size_t n = bench_depth(c->size);
	q->size = c->size;
	q->nodes = calloc(n, sizeof(*q->nodes));
	q->bufs = bench_buf(n * c->size);
	if (!q->nodes || !q->bufs) {
		free(q->nodes);
		free(q->bufs);
		free(q);
		return -ENOMEM;
	}
	cds_wfcq_init(&q->dh, &q->dt);
	cds_wfcq_init(&q->fh, &q->ft);
	for (size_t i = 0; i < n; i++) {
		cds_wfcq_node_init(&q->nodes[i].node);
		q->nodes[i].data = q->bufs + i * c->size;
		cds_wfcq_enqueue(&q->fh, &q->ft, &q->nodes[i].node);
	}
	*ctx = q;
	return 0;
}

static void teardown(void *ctx)
{
	struct wq *q = ctx;
	free(q->nodes);
	free(q->bufs);
	free(q);
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct wq *q = ctx;
	char *buf = bench_buf(q->size);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		struct cds_wfcq_node *n;
		unsigned spins = 0;
		while (!(n = cds_wfcq_dequeue_blocking(&q->fh, &q->ft)))
			bench_backoff(&spins);
		struct wnode *wn = caa_container_of(n, struct wnode, node);
		memcpy(wn->data, buf, q->size);
		cds_wfcq_node_init(n);
		cds_wfcq_enqueue(&q->dh, &q->dt, n);
	}
	bench_producer_done(w);
	free(buf);
	return 0;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct wq *q = ctx;
	char *buf = bench_buf(q->size);
	uint32_t np = (uint32_t)w->c->np;
	bench_ready(w);
	for (;;) {
		struct cds_wfcq_node *n;
		unsigned spins = 0;
		while (!(n = cds_wfcq_dequeue_blocking(&q->dh, &q->dt))) {
			if (atomic_load(&w->sh->prod_done) == np) {
				n = cds_wfcq_dequeue_blocking(&q->dh, &q->dt);
				break;
			}
			bench_backoff(&spins);
		}
		if (!n)
			break;
		struct wnode *wn = caa_container_of(n, struct wnode, node);
		memcpy(buf, wn->data, q->size);
		cds_wfcq_node_init(n);
		cds_wfcq_enqueue(&q->fh, &q->ft, n);
		bench_got(w, buf, q->size);
	}
	if (!w->t_end)
		w->t_end = bench_now();
	bench_consumer_done(w);
	free(buf);
	return 0;
}

const struct bench_peer peer_wfcq = {
	.name = "urcu-wfcq",
	.label = "urcu wfcq (threads)",
	.flags = PF_THREADS | PF_NOEOF,
	.setup = setup,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
};
