/* The bridge cases' broker-style peer: ZeroMQ over TCP through a forwarder
 * process, the shape of a message hop through a middle box:
 *
 *   producer PUSH -> tcp://127.0.0.1:A -> forwarder (PULL bind A, PUSH bind B,
 *   zmq_proxy) -> tcp://127.0.0.1:B -> consumer PULL
 *
 * Default high-water marks (1000 messages per pipe) and linger (the producer's
 * close waits until its messages are out). The end of data: an empty
 * message. The forwarder binds ephemeral ports and says which; the bench
 * kills it after the run. */
#include "../bridge.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

struct bz {
	char in[64], out[64]; /* the forwarder's endpoints */
	pid_t fwd;
	void *zc, *s;
};

static void forwarder(int fd)
{
	void *zc = zmq_ctx_new();
	void *pull = zmq_socket(zc, ZMQ_PULL), *push = zmq_socket(zc, ZMQ_PUSH);
	char a[64] = "", b[64] = "", line[160];
	size_t la = sizeof(a), lb = sizeof(b);
	if (zmq_bind(pull, "tcp://127.0.0.1:*") < 0 || zmq_bind(push, "tcp://127.0.0.1:*") < 0 ||
	    zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, a, &la) < 0 ||
	    zmq_getsockopt(push, ZMQ_LAST_ENDPOINT, b, &lb) < 0)
		_exit(1);
	int n = snprintf(line, sizeof(line), "%s %s\n", a, b);
	if (write(fd, line, (size_t)n) != n)
		_exit(1);
	close(fd);
	zmq_proxy(pull, push, NULL); /* until killed */
	_exit(1);
}

static int setup(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
		 char *note, size_t len)
{
	(void)c, (void)env;
	struct bz *x = calloc(1, sizeof(*x));
	int fd[2];
	if (!x || pipe(fd) < 0) {
		free(x);
		return -ENOMEM;
	}
	fflush(NULL);
	pid_t parent = getpid();
	x->fwd = fork();
	if (x->fwd == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		close(fd[0]);
		forwarder(fd[1]);
	}
	close(fd[1]);
	char line[160] = "";
	size_t got = 0;
	struct pollfd p = { .fd = fd[0], .events = POLLIN };
	while (got < sizeof(line) - 1 && !strchr(line, '\n') && poll(&p, 1, 5000) > 0) {
		ssize_t r = read(fd[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = 0;
	}
	close(fd[0]);
	if (x->fwd < 0 || sscanf(line, "%63s %63s", x->in, x->out) != 2) {
		snprintf(note, len, "the forwarder did not start");
		if (x->fwd > 0) {
			kill(x->fwd, SIGKILL);
			waitpid(x->fwd, NULL, 0);
		}
		free(x);
		return -ECHILD;
	}
	*ctx = x;
	return 0;
}

static int zsend(void *ctx, const void *buf, size_t len)
{
	struct bz *x = ctx;
	while (zmq_send(x->s, buf, len, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static int zend(void *ctx)
{
	return zsend(ctx, "", 0);
}

static ssize_t zrecv(void *ctx, void *buf, size_t cap)
{
	struct bz *x = ctx;
	int n;
	while ((n = zmq_recv(x->s, buf, cap, 0)) < 0)
		if (errno != EINTR)
			return -errno;
	return n == 0 ? -EPIPE : n;
}

static int worker(void *ctx, struct bridge_worker *w)
{
	struct bz *x = ctx;
	x->zc = zmq_ctx_new();
	x->s = zmq_socket(x->zc, w->id == 0 ? ZMQ_PUSH : ZMQ_PULL);
	if (!x->s || zmq_connect(x->s, w->id == 0 ? x->in : x->out) < 0) {
		bridge_abort(w, -errno, "connect");
		return -1;
	}
	int rc = w->id == 0 ? br_producer(w, x, zsend, zend) : br_consumer(w, x, zrecv);
	zmq_close(x->s); /* linger: the producer's queued messages go out first */
	zmq_ctx_term(x->zc);
	return rc;
}

static int teardown(void *ctx, char *note, size_t len)
{
	struct bz *x = ctx;
	int st, rc = 0;
	if (waitpid(x->fwd, &st, WNOHANG) == x->fwd) {
		snprintf(note, len, "the forwarder exited early (status %d)", st);
		rc = -EIO;
	} else {
		kill(x->fwd, SIGKILL);
		waitpid(x->fwd, NULL, 0);
	}
	free(x);
	return rc;
}

static const char *models(const struct bridge_case *c)
{
	(void)c;
	return "PUSH -> tcp://127.0.0.1 -> forwarder process (PULL, zmq_proxy, PUSH) -> "
	       "tcp://127.0.0.1 -> PULL; default HWM 1000";
}

const struct bridge_peer bridge_zmq = {
	.name = "zmq-forwarder",
	.label = "ZeroMQ TCP forwarder",
	.flags = 0,
	.setup = setup,
	.worker = worker,
	.teardown = teardown,
	.models = models,
};
