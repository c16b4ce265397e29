/* POSIX message queues (mq_open). The queue holds bench_depth() messages when
 * the kernel allows it (beyond /proc/sys/fs/mqueue/msg_max needs
 * CAP_SYS_RESOURCE; otherwise msg_max), and RLIMIT_MSGQUEUE is raised as far as
 * allowed. Sizes above /proc/sys/fs/mqueue/msgsize_max are skipped: that is
 * the limit an ordinary user has. No end of data: the last producer sends one
 * empty message per consumer. */
#include "../peer.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

struct mqx {
	mqd_t a, b;
};

static long proc_long(const char *path, long def)
{
	long v = def;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = def;
		fclose(f);
	}
	return v;
}

static const char *skip(const struct bench_case *c)
{
	static char why[96];
	long max = proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
	if ((long)c->size > max) {
		snprintf(why, sizeof(why), "%zu B above /proc/sys/fs/mqueue/msgsize_max = %ld",
			 c->size, max);
		return why;
	}
	return NULL;
}

static int open_one(size_t size, mqd_t *out)
{
	static unsigned n;
	char name[64];
	snprintf(name, sizeof(name), "/shmq-bench-%d-%u", (int)getpid(), n++);
	struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
	if (setrlimit(RLIMIT_MSGQUEUE, &rl) < 0) {
		getrlimit(RLIMIT_MSGQUEUE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_MSGQUEUE, &rl);
	}
	struct mq_attr a = { .mq_maxmsg = (long)bench_depth(size), .mq_msgsize = (long)size };
	mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	if (q == (mqd_t)-1 && (errno == EINVAL || errno == EMFILE || errno == ENOMEM)) {
		a.mq_maxmsg = proc_long("/proc/sys/fs/mqueue/msg_max", 10);
		q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
	}
	if (q == (mqd_t)-1)
		return -errno;
	mq_unlink(name); /* descriptors survive; nothing left behind */
	*out = q;
	return 0;
}

static int setup(const struct bench_case *c, void **ctx)
{
	struct mqx *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->b = (mqd_t)-1;
	int rc = open_one(c->size, &x->a);
	if (rc < 0) {
		free(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static void parent(void *ctx)
{
	struct mqx *x = ctx;
	mq_close(x->a);
	if (x->b != (mqd_t)-1)
		mq_close(x->b);
}

static void teardown(void *ctx) { free(ctx); }

static int send1(mqd_t q, const void *buf, size_t len)
{
	while (mq_send(q, buf, len, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static ssize_t recv1(mqd_t q, void *buf, size_t cap)
{
	ssize_t r;
	while ((r = mq_receive(q, buf, cap, NULL)) < 0)
		if (errno != EINTR)
			return -errno;
	return r;
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct mqx *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		if ((rc = send1(x->a, buf, size)) < 0) {
			w->seq--;
			break;
		}
	}
	bench_producer_done(w);
	if (atomic_load(&w->sh->prod_done) == (uint32_t)w->c->np &&
	    atomic_fetch_add(&w->sh->aux, 1) == 0) /* the one that saw the last one done */
		for (int i = 0; i < w->c->nc; i++)
			send1(x->a, buf, 0);
	mq_close(x->a);
	return rc;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct mqx *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	ssize_t r;
	bench_ready(w);
	while ((r = recv1(x->a, buf, size)) > 0)
		bench_got(w, buf, (size_t)r);
	if (!w->t_end)
		w->t_end = bench_now();
	mq_close(x->a);
	bench_consumer_done(w);
	return r < 0 ? (int)r : 0;
}

static int pp_setup(const struct bench_case *c, void **ctx)
{
	int rc = setup(c, ctx);
	if (rc < 0)
		return rc;
	struct mqx *x = *ctx;
	rc = open_one(c->size, &x->b);
	if (rc < 0) {
		mq_close(x->a);
		free(x);
	}
	return rc;
}

static int round_trip(void *ctx, void *buf, size_t size)
{
	struct mqx *x = ctx;
	int rc = send1(x->a, buf, size);
	if (rc < 0)
		return rc;
	return recv1(x->b, buf, size) == (ssize_t)size ? 0 : -EIO;
}

static int ping(void *ctx, struct bench_worker *w)
{
	struct mqx *x = ctx;
	int rc = bench_ping_rounds(w, x, round_trip);
	send1(x->a, "", 0); /* the end */
	return rc;
}

static int pong(void *ctx, struct bench_worker *w)
{
	struct mqx *x = ctx;
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	bench_ready(w);
	ssize_t r;
	while ((r = recv1(x->a, buf, size)) > 0)
		if (send1(x->b, buf, (size_t)r) < 0)
			break;
	return 0;
}

const struct bench_peer peer_mq = {
	.name = "posix-mq",
	.label = "POSIX mq",
	.flags = PF_NOEOF,
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
};
