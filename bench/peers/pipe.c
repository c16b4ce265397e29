/* pipe(2): one message per write(2) of exactly the message size (fixed-size
 * framing), so the byte stream keeps message boundaries; writes up to PIPE_BUF
 * are atomic, which is what lets several producers and consumers share one
 * pipe. The pipe buffer is raised to /proc/sys/fs/pipe-max-size (F_SETPIPE_SZ),
 * its documented maximum for an unprivileged process. No batching of several
 * messages per write: that would give up message semantics.
 *
 * Pipe cases: messages of a size the reader does not know, framed as
 * bench_send_framed does (4-byte length + payload in one writev, the reader
 * reads the length, then the payload, each fully); messages longer than the
 * pipe's buffer stream through it, as a long shmq Pipe message does. */
#include "../peer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct pp {
	int a[2], b[2]; /* a: producer -> consumer (ping -> pong), b: back */
	bool framed;    /* Pipe cases */
};

static int max_pipe_size(void)
{
	int v = 1 << 20;
	FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = 1 << 20;
		fclose(f);
	}
	return v;
}

static int make_pipe(int fd[2])
{
	if (pipe(fd) < 0)
		return -errno;
	fcntl(fd[1], F_SETPIPE_SZ, max_pipe_size());
	return 0;
}

/* One message: framed (Pipe cases) or exactly size bytes. 0 or -errno. */
static int send_msg(const struct pp *x, int fd, const void *buf, size_t size)
{
	if (x->framed)
		return bench_send_framed(fd, buf, size);
	ssize_t r = bench_write_full(fd, buf, size);
	return r < 0 ? (int)r : 0;
}

/* The length; 0 at end of data; -errno. Up to PIPE_BUF one read returns
 * exactly one fixed-size message (or EOF). */
static ssize_t recv_msg(const struct pp *x, int fd, void *buf, size_t size)
{
	if (x->framed) {
		ssize_t r = bench_recv_framed(fd, buf, size);
		return r == -EPIPE ? 0 : r;
	}
	ssize_t r = size <= PIPE_BUF ? read(fd, buf, size) : bench_read_full(fd, buf, size);
	return r < 0 ? -errno : r;
}

static const char *models(const struct bench_case *c)
{
	if (c->kind == CASE_CONN_PP)
		return "two pipes, 4-byte length + payload (one writev), reader reads length then "
		       "payload fully; buffer raised to pipe-max-size";
	if (c->kind == CASE_CONN)
		return "4-byte length + payload (one writev), reader reads length then payload fully; "
		       "buffer raised to pipe-max-size";
	return NULL;
}

static const char *skip(const struct bench_case *c)
{
	if (c->size > PIPE_BUF && (c->np > 1 || c->nc > 1))
		return "messages over PIPE_BUF (4096 B) are not atomic with several writers or readers";
	return NULL;
}

static int setup(const struct bench_case *c, void **ctx)
{
	struct pp *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->framed = bench_is_conn(c);
	int rc = make_pipe(x->a);
	if (rc < 0) {
		free(x);
		return rc;
	}
	x->b[0] = x->b[1] = -1;
	*ctx = x;
	return 0;
}

static void parent(void *ctx)
{
	struct pp *x = ctx;
	for (int i = 0; i < 2; i++) {
		if (x->a[i] >= 0)
			close(x->a[i]);
		if (x->b[i] >= 0)
			close(x->b[i]);
	}
}

static void teardown(void *ctx) { free(ctx); }

static int producer(void *ctx, struct bench_worker *w)
{
	struct pp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	close(x->a[0]);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		if ((rc = send_msg(x, x->a[1], buf, size)) < 0) {
			w->seq--;
			break;
		}
	}
	close(x->a[1]);
	bench_producer_done(w);
	return rc;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct pp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	ssize_t r;
	close(x->a[1]);
	bench_ready(w);
	while ((r = recv_msg(x, x->a[0], buf, size)) > 0)
		bench_got(w, buf, (size_t)r);
	if (!w->t_end)
		w->t_end = bench_now();
	close(x->a[0]);
	bench_consumer_done(w);
	return r < 0 ? (int)r : 0;
}

static int pp_setup(const struct bench_case *c, void **ctx)
{
	int rc = setup(c, ctx);
	if (rc < 0)
		return rc;
	struct pp *x = *ctx;
	rc = make_pipe(x->b);
	if (rc < 0) {
		parent(x);
		free(x);
	}
	return rc;
}

static int round_trip(void *ctx, void *buf, size_t size)
{
	struct pp *x = ctx;
	if (send_msg(x, x->a[1], buf, size) < 0 || recv_msg(x, x->b[0], buf, size) != (ssize_t)size)
		return -EIO;
	return 0;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct pp *x = ctx;
	close(x->a[0]);
	close(x->b[1]);
	int rc = bench_ping_rounds(w, x, round_trip);
	close(x->a[1]);
	close(x->b[0]);
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct pp *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	close(x->a[1]);
	close(x->b[0]);
	bench_ready(w);
	ssize_t r;
	while ((r = recv_msg(x, x->a[0], buf, size)) > 0)
		if (send_msg(x, x->b[1], buf, (size_t)r) < 0)
			break;
	close(x->a[0]);
	close(x->b[1]);
	return 0;
}

const struct bench_peer peer_pipe = {
	.name = "pipe",
	.label = "pipe(2)",
	.flags = PF_MAIN | PF_CONN,
	.skip = skip,
	.setup = setup,
	.parent = parent,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
	.pp_setup = pp_setup,
	.pp_parent = parent,
	.ping = ping,
	.pong = pong,
	.pp_teardown = teardown,
	.models = models,
};
