/* socketpair(AF_UNIX, SOCK_SEQPACKET): the kernel keeps message boundaries,
 * several producers share one end and several consumers the other; EOF when
 * every producer has closed. SO_SNDBUF is raised to the wmem_max cap. Note: the
 * kernel limits a unix datagram/seqpacket receive queue to
 * /proc/sys/net/unix/max_dgram_qlen messages (a system-wide sysctl, left as
 * it is). */
#include "../peer.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct sp {
	int sv[2];
};

static int setup(const struct bench_case *c, void **ctx)
{
	(void)c;
	struct sp *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, x->sv) < 0) {
		int e = errno;
		free(x);
		return -e;
	}
	int big = 4 << 20;
	for (int i = 0; i < 2; i++) {
		setsockopt(x->sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		setsockopt(x->sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	*ctx = x;
	return 0;
}

static void parent(void *ctx)
{
	struct sp *x = ctx;
	close(x->sv[0]);
	close(x->sv[1]);
}

static void teardown(void *ctx) { free(ctx); }

static int producer(void *ctx, struct bench_worker *w)
{
	struct sp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	close(x->sv[1]);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		ssize_t r;
		while ((r = send(x->sv[0], buf, size, 0)) < 0 && errno == EINTR)
			;
		if (r != (ssize_t)size) {
			rc = r < 0 ? -errno : -EIO;
			w->seq--;
			break;
		}
	}
	close(x->sv[0]);
	bench_producer_done(w);
	return rc;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct sp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	ssize_t r;
	close(x->sv[0]);
	bench_ready(w);
	for (;;) {
		r = recv(x->sv[1], buf, size, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		bench_got(w, buf, (size_t)r);
	}
	if (!w->t_end)
		w->t_end = bench_now();
	close(x->sv[1]);
	bench_consumer_done(w);
	return r < 0 ? -errno : 0;
}

/* Ping-pong over the one duplex pair. */
static int round_trip(void *ctx, void *buf, size_t size)
{
	struct sp *x = ctx;
	if (send(x->sv[0], buf, size, 0) != (ssize_t)size ||
	    recv(x->sv[0], buf, size, 0) != (ssize_t)size)
		return -EIO;
	return 0;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct sp *x = ctx;
	close(x->sv[1]);
	int rc = bench_ping_rounds(w, x, round_trip);
	close(x->sv[0]);
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct sp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	close(x->sv[0]);
	bench_ready(w);
	ssize_t r;
	while ((r = recv(x->sv[1], buf, size, 0)) > 0)
		if (send(x->sv[1], buf, (size_t)r, 0) != r)
			break;
	close(x->sv[1]);
	return 0;
}

const struct bench_peer peer_socketpair = {
	.name = "socketpair",
	.label = "socketpair SEQPACKET",
	.flags = 0,
	.setup = setup,
	.parent = parent,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
	.pp_setup = setup,
	.pp_parent = parent,
	.ping = ping,
	.pong = pong,
	.pp_teardown = teardown,
};
