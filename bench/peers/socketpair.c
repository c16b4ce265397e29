/* socketpair(AF_UNIX, SOCK_SEQPACKET): the kernel keeps message boundaries,
 * several producers share one end and several consumers the other; EOF when
 * every producer has closed. SO_SNDBUF is raised to the wmem_max cap. Note: the
 * kernel limits a unix datagram/seqpacket receive queue to
 * /proc/sys/net/unix/max_dgram_qlen messages (a system-wide sysctl, left as
 * it is).
 *
 * Pipe cases: SEQPACKET carries each message as one send/recv while it fits
 * the socket's send buffer (net.core.wmem_max caps SO_SNDBUF; larger ones are
 * skipped); socketpair-stream (SOCK_STREAM, Pipe cases only) frames every
 * message like pipe(2) does, so any size streams through. */
#include "../peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

struct sp {
	int sv[2];
	bool framed; /* SOCK_STREAM */
};

/* The largest SO_SNDBUF an unprivileged process can ask for. */
static long wmem_max(void)
{
	long v = 212992;
	FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 212992;
		fclose(f);
	}
	return v;
}

static const char *seq_skip(const struct bench_case *c)
{
	/* The kernel doubles SO_SNDBUF and refuses a message larger than it
	 * (less some overhead) with EMSGSIZE. */
	if (bench_is_conn(c) && (long)c->size > wmem_max())
		return "SEQPACKET messages must fit the send buffer (net.core.wmem_max); see "
		       "socketpair-stream";
	return NULL;
}

static const char *seq_models(const struct bench_case *c)
{
	return bench_is_conn(c) ? "SOCK_SEQPACKET, one send/recv per message (the kernel keeps "
				  "boundaries), SO_SNDBUF/RCVBUF raised"
				: NULL;
}

static const char *stream_models(const struct bench_case *c)
{
	(void)c;
	return "SOCK_STREAM, 4-byte length + payload (one writev), reader reads length then "
	       "payload fully, SO_SNDBUF/RCVBUF raised";
}

static int setup_type(void **ctx, int type)
{
	struct sp *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	if (socketpair(AF_UNIX, type, 0, x->sv) < 0) {
		int e = errno;
		free(x);
		return -e;
	}
	x->framed = type == SOCK_STREAM;
	int big = 4 << 20;
	for (int i = 0; i < 2; i++) {
		setsockopt(x->sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		setsockopt(x->sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	*ctx = x;
	return 0;
}

static int setup_seq(const struct bench_case *c, void **ctx)
{
	(void)c;
	return setup_type(ctx, SOCK_SEQPACKET);
}

static int setup_stream(const struct bench_case *c, void **ctx)
{
	(void)c;
	return setup_type(ctx, SOCK_STREAM);
}

static void parent(void *ctx)
{
	struct sp *x = ctx;
	close(x->sv[0]);
	close(x->sv[1]);
}

static void teardown(void *ctx) { free(ctx); }

/* One message: 0 or -errno. */
static int send_msg(const struct sp *x, int fd, const void *buf, size_t size)
{
	if (x->framed)
		return bench_send_framed(fd, buf, size);
	ssize_t r;
	while ((r = send(fd, buf, size, 0)) < 0 && errno == EINTR)
		;
	return r == (ssize_t)size ? 0 : r < 0 ? -errno : -EIO;
}

/* The length; 0 at end of data; -errno. */
static ssize_t recv_msg(const struct sp *x, int fd, void *buf, size_t size)
{
	if (x->framed) {
		ssize_t r = bench_recv_framed(fd, buf, size);
		return r == -EPIPE ? 0 : r;
	}
	ssize_t r;
	while ((r = recv(fd, buf, size, 0)) < 0 && errno == EINTR)
		;
	return r < 0 ? -errno : r;
}

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
		if ((rc = send_msg(x, x->sv[0], buf, size)) < 0) {
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
	while ((r = recv_msg(x, x->sv[1], buf, size)) > 0)
		bench_got(w, buf, (size_t)r);
	if (!w->t_end)
		w->t_end = bench_now();
	close(x->sv[1]);
	bench_consumer_done(w);
	return r < 0 ? (int)r : 0;
}

/* Ping-pong over the one duplex pair. */
static int round_trip(void *ctx, void *buf, size_t size)
{
	struct sp *x = ctx;
	if (send_msg(x, x->sv[0], buf, size) < 0 || recv_msg(x, x->sv[0], buf, size) != (ssize_t)size)
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
	while ((r = recv_msg(x, x->sv[1], buf, size)) > 0)
		if (send_msg(x, x->sv[1], buf, (size_t)r) < 0)
			break;
	close(x->sv[1]);
	return 0;
}

#define HOOKS(setup_fn)                                                                      \
	.setup = setup_fn, .parent = parent, .producer = producer, .consumer = consumer,     \
	.teardown = teardown, .pp_setup = setup_fn, .pp_parent = parent, .ping = ping,       \
	.pong = pong, .pp_teardown = teardown

const struct bench_peer peer_socketpair = {
	.name = "socketpair",
	.label = "socketpair SEQPACKET",
	.flags = PF_CONN,
	.skip = seq_skip,
	HOOKS(setup_seq),
	.models = seq_models,
};

/* A byte stream has no message boundaries: Pipe cases (one writer, one
 * reader per direction) only. */
const struct bench_peer peer_socketpair_stream = {
	.name = "socketpair-stream",
	.label = "socketpair STREAM",
	.flags = PF_CONN | PF_ONLY,
	HOOKS(setup_stream),
	.models = stream_models,
};
