/* ZeroMQ PUSH/PULL over ipc:// (unix sockets): every consumer binds a PULL
 * socket, every producer connects one PUSH socket to all of them and zmq
 * load-balances round-robin. Default high-water marks (1000 messages per
 * pipe); zmq batches small messages on the wire by itself. Consumers receive
 * with zmq_msg_recv (no copy into a user buffer). No end of data: consumers
 * stop when every producer is done and the totals match. Ping-pong: a PAIR
 * socket each way over ipc://. */
#include "../peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

struct zx {
	char ep[BENCH_MAX_WORKERS][96];
};

static int setup(const struct bench_case *c, void **ctx)
{
	static unsigned run;
	struct zx *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	run++;
	for (int i = 0; i < c->nc || i < 1; i++)
		snprintf(x->ep[i], sizeof(x->ep[i]), "ipc:///tmp/shmq-bench-zmq-%d-%u-%d", (int)getpid(),
			 run, i);
	*ctx = x;
	return 0;
}

static void teardown(void *ctx)
{
	struct zx *x = ctx;
	for (int i = 0; i < BENCH_MAX_WORKERS && x->ep[i][0]; i++)
		unlink(x->ep[i] + 6);
	free(x);
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct zx *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	while (atomic_load(&w->sh->aux) < (uint32_t)w->c->nc) /* consumers bound */
		usleep(500);
	void *zc = zmq_ctx_new();
	void *s = zmq_socket(zc, ZMQ_PUSH);
	for (int i = 0; i < w->c->nc; i++)
		if (zmq_connect(s, x->ep[i]) < 0)
			return -errno;
	usleep(30000); /* let every connection complete so load-balancing sees them all */
	int rc = 0;
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		while (zmq_send(s, buf, size, 0) < 0) {
			if (errno != EINTR) {
				rc = -errno;
				break;
			}
		}
		if (rc < 0) {
			w->seq--;
			break;
		}
	}
	bench_producer_done(w);
	int64_t until = bench_now() + 5000000000LL;
	while (atomic_load(&w->sh->aux) < 2 * (uint32_t)w->c->nc && bench_now() < until)
		usleep(1000);
	if (atomic_load(&w->sh->aux) < 2 * (uint32_t)w->c->nc && getenv("SHMQ_BENCH_DEBUG")) {
		int ev; size_t l = sizeof(ev);
		zmq_getsockopt(s, ZMQ_EVENTS, &ev, &l);
		fprintf(stderr, "producer %d: consumers not done, events %d\n", w->id, ev);
	}
	zmq_close(s); /* linger: default, delivers what is queued */
	zmq_ctx_term(zc);
	return rc;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct zx *x = ctx;
	void *zc = zmq_ctx_new();
	void *s = zmq_socket(zc, ZMQ_PULL);
	int tmo = 2; /* ms: how often an idle consumer checks the totals */
	zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
	if (zmq_bind(s, x->ep[w->id]) < 0)
		return -errno;
	atomic_fetch_add(&w->sh->aux, 1);
	bench_ready(w);
	zmq_msg_t m;
	zmq_msg_init(&m);
	for (;;) {
		int r = zmq_msg_recv(&m, s, 0);
		if (r >= 0) {
			bench_got(w, zmq_msg_data(&m), (size_t)r);
			continue;
		}
		if (errno == EAGAIN) {
			if (bench_all_received(w))
				break;
			w->sh->cons[w->id].msgs = w->msgs; /* progress, for a hang report */
			continue;
		}
		if (errno != EINTR)
			break;
	}
	zmq_msg_close(&m);
	bench_consumer_done(w);
	atomic_fetch_add(&w->sh->aux, 1);
	int zero = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_close(s);
	zmq_ctx_term(zc);
	return 0;
}

/* ------------------------------------------------------------ ping-pong -- */

static int round_trip(void *sock, void *buf, size_t size)
{
	if (zmq_send(sock, buf, size, 0) < 0 || zmq_recv(sock, buf, size, 0) < 0)
		return -errno;
	return 0;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct zx *x = ctx;
	void *zc = zmq_ctx_new();
	void *s = zmq_socket(zc, ZMQ_PAIR);
	while (atomic_load(&w->sh->aux) < 1)
		usleep(500);
	if (zmq_connect(s, x->ep[0]) < 0)
		return -errno;
	int rc = bench_ping_rounds(w, s, round_trip);
	zmq_send(s, "", 0, 0); /* the end */
	zmq_close(s);
	zmq_ctx_term(zc);
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct zx *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	void *zc = zmq_ctx_new();
	void *s = zmq_socket(zc, ZMQ_PAIR);
	if (zmq_bind(s, x->ep[0]) < 0)
		return -errno;
	atomic_fetch_add(&w->sh->aux, 1);
	bench_ready(w);
	int r;
	while ((r = zmq_recv(s, buf, size, 0)) > 0)
		if (zmq_send(s, buf, (size_t)r, 0) < 0)
			break;
	int zero = 0;
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
	zmq_close(s);
	zmq_ctx_term(zc);
	return 0;
}

const struct bench_peer peer_zmq = {
	.name = "zmq",
	.label = "ZeroMQ PUSH/PULL ipc",
	.flags = PF_MAIN | PF_NOEOF,
	.setup = setup,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
	.pp_setup = setup,
	.ping = ping,
	.pong = pong,
	.pp_teardown = teardown,
};
