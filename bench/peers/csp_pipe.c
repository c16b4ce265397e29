/* A CSP channel built from pipe(2), between processes (one writer and one
 * reader per channel, as this peer's design allows):
 *
 *   data pipe  the messages, framed as a Pipe frames them (a 4-byte length,
 *              then the payload, one writev per message; length 0xffffffff
 *              is the close frame: end of data);
 *   ack pipe   1 byte back from the reader per message taken.
 *
 * Rendezvous (buffer 0): write sends the frame, then blocks reading the ack,
 * which the reader writes as soon as it has taken the message: write returns
 * once a reader took it. Buffered (buffer N): the writer may be N messages
 * ahead of the acks it has read (it blocks reading acks only then); the
 * reader returns its acks in one write (k bytes) just before it would block,
 * so at most N messages are ever in the channel. The reader reads whatever
 * the data pipe holds into a buffer of its own and takes frames from it (one
 * read(2) for many small messages). Alternation: the frames already read,
 * then poll(2) over the channels' data pipes; the preference rotates past
 * the channel that fired last (fair). Every fd is inherited through fork;
 * nothing depends on who closes what. */
#include "../csp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLOSE_FRAME 0xffffffffu

struct pch {
	int data[2], ack[2];
	/* Process-local (each worker has its own copy after fork). */
	char *rbuf;        /* reader: bytes read, not yet taken */
	size_t rpos, rlen; /* rbuf[rpos .. rlen) */
	uint32_t unacked;  /* reader: taken, not yet acknowledged (buffered) */
	bool ended;        /* reader: the close frame was seen */
	uint64_t sent, acked; /* writer (buffered) */
};

struct pc {
	struct pch ch[CSP_MAX_CHANS];
	int nchan;
	uint32_t buffer;
	size_t rcap;     /* rbuf bytes */
	int last_fired;  /* alternation: the channel that fired last */
};

static void pc_teardown(void *ctx)
{
	struct pc *x = ctx;
	for (int i = 0; i < x->nchan; i++) {
		for (int j = 0; j < 2; j++) {
			if (x->ch[i].data[j] >= 0)
				close(x->ch[i].data[j]);
			if (x->ch[i].ack[j] >= 0)
				close(x->ch[i].ack[j]);
		}
		free(x->ch[i].rbuf);
	}
	free(x);
}

static int pc_setup(const struct csp_case *c, void **ctx)
{
	struct pc *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->buffer = c->buffer;
	x->rcap = (64u << 10) + 2 * (c->size + 4);
	x->last_fired = -1;
	int rc = 0;
	for (int i = 0; i < csp_nchans(c); i++) {
		struct pch *p = &x->ch[i];
		p->data[0] = p->data[1] = p->ack[0] = p->ack[1] = -1;
		x->nchan = i + 1;
		if (pipe(p->data) < 0 || pipe(p->ack) < 0) {
			rc = -errno;
			break;
		}
		/* Room for a full buffer of frames where the system allows it
		 * (best effort: a smaller pipe only makes the writer wait). */
		size_t need = (size_t)c->buffer * (c->size + 4) + c->size + 4;
		if (need > (64u << 10))
			(void)fcntl(p->data[1], F_SETPIPE_SZ, (int)(need < (1u << 20) ? need : 1u << 20));
		if (!(p->rbuf = malloc(x->rcap))) {
			rc = -ENOMEM;
			break;
		}
	}
	if (rc < 0) {
		pc_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

/* Writer: read acks (at least one byte; blocks). 0, -EPIPE, -errno. */
static int read_acks(struct pch *p, uint64_t *got)
{
	char tmp[256];
	ssize_t r;
	while ((r = read(p->ack[0], tmp, sizeof(tmp))) < 0 && errno == EINTR)
		;
	if (r < 0)
		return -errno;
	if (r == 0)
		return -EPIPE;
	*got += (uint64_t)r;
	return 0;
}

static int pc_write(void *ctx, int ch, const void *buf, size_t len)
{
	struct pc *x = ctx;
	struct pch *p = &x->ch[ch];
	int rc;
	if (x->buffer == 0) {
		uint64_t got = 0;
		if ((rc = bench_send_framed(p->data[1], buf, len)) < 0)
			return rc;
		return read_acks(p, &got); /* the reader took it */
	}
	while (p->sent - p->acked >= x->buffer)
		if ((rc = read_acks(p, &p->acked)) < 0)
			return rc;
	if ((rc = bench_send_framed(p->data[1], buf, len)) < 0)
		return rc;
	p->sent++;
	return 0;
}

static int pc_end(void *ctx, int ch)
{
	struct pc *x = ctx;
	uint32_t hdr = CLOSE_FRAME;
	ssize_t r = bench_write_full(x->ch[ch].data[1], &hdr, sizeof(hdr));
	return r < 0 ? (int)r : 0;
}

/* Reader: give back the acks of buffered messages taken (before blocking). */
static int flush_acks(struct pch *p)
{
	if (!p->unacked)
		return 0;
	char tmp[CSP_BUFFERED > 256 ? CSP_BUFFERED : 256];
	uint32_t n = p->unacked < sizeof(tmp) ? p->unacked : (uint32_t)sizeof(tmp);
	memset(tmp, 'a', n);
	ssize_t r = bench_write_full(p->ack[1], tmp, n);
	if (r < 0)
		return (int)r;
	p->unacked -= n;
	return 0;
}

/* Take a whole frame from rbuf: its length, -EAGAIN (none whole yet),
 * -EPIPE (close frame), -EMSGSIZE, -errno. */
static ssize_t take(struct pc *x, struct pch *p, void *buf, size_t cap)
{
	if (p->ended)
		return -EPIPE;
	size_t have = p->rlen - p->rpos;
	uint32_t hdr;
	if (have < sizeof(hdr))
		return -EAGAIN;
	memcpy(&hdr, p->rbuf + p->rpos, sizeof(hdr));
	if (hdr == CLOSE_FRAME) {
		p->ended = true;
		return -EPIPE;
	}
	if (hdr > cap)
		return -EMSGSIZE;
	if (have < sizeof(hdr) + hdr)
		return -EAGAIN;
	memcpy(buf, p->rbuf + p->rpos + sizeof(hdr), hdr);
	p->rpos += sizeof(hdr) + hdr;
	if (x->buffer == 0) {
		char a = 'a';
		ssize_t r = bench_write_full(p->ack[1], &a, 1);
		if (r < 0)
			return r;
	} else {
		p->unacked++;
	}
	return hdr;
}

/* One read(2) into rbuf (blocks if the pipe is empty). >0, -EPIPE, -errno. */
static int fill(struct pc *x, struct pch *p)
{
	if (p->rpos == p->rlen) {
		p->rpos = p->rlen = 0;
	} else if (p->rpos > 0 && x->rcap - p->rlen < x->rcap / 2) {
		memmove(p->rbuf, p->rbuf + p->rpos, p->rlen - p->rpos);
		p->rlen -= p->rpos;
		p->rpos = 0;
	}
	ssize_t r;
	while ((r = read(p->data[0], p->rbuf + p->rlen, x->rcap - p->rlen)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return -errno;
	if (r == 0)
		return -EPIPE; /* every write end closed */
	p->rlen += (size_t)r;
	return 1;
}

static ssize_t pc_read(void *ctx, int ch, void *buf, size_t cap)
{
	struct pc *x = ctx;
	struct pch *p = &x->ch[ch];
	for (;;) {
		ssize_t r = take(x, p, buf, cap);
		if (r != -EAGAIN)
			return r;
		int rc = flush_acks(p);
		if (rc < 0 || (rc = fill(x, p)) < 0)
			return rc;
	}
}

static ssize_t pc_alt(void *ctx, const int *chs, int n, void *buf, size_t cap, int *fired)
{
	struct pc *x = ctx;
	*fired = -1;
	if (n < 1 || n > CSP_MAX_CHANS)
		return -EINVAL;
	int start = 0; /* the position after the channel that fired last */
	for (int i = 0; i < n; i++)
		if (chs[i] == x->last_fired)
			start = i + 1 == n ? 0 : i + 1;
	struct pollfd pfd[CSP_MAX_CHANS];
	for (;;) {
		for (int k = 0; k < n; k++) { /* whole frames already read */
			int i = (start + k) % n;
			ssize_t r = take(x, &x->ch[chs[i]], buf, cap);
			if (r != -EAGAIN) {
				*fired = i;
				x->last_fired = chs[i];
				return r;
			}
		}
		for (int i = 0; i < n; i++) {
			int rc = flush_acks(&x->ch[chs[i]]);
			if (rc < 0)
				return rc;
			pfd[i] = (struct pollfd){ .fd = x->ch[chs[i]].data[0], .events = POLLIN };
		}
		int pr;
		while ((pr = poll(pfd, (nfds_t)n, -1)) < 0 && errno == EINTR)
			;
		if (pr < 0)
			return -errno;
		for (int k = 0; k < n; k++) {
			int i = (start + k) % n;
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int rc = fill(x, &x->ch[chs[i]]);
			if (rc == -EPIPE) { /* every write end closed: that guard fires */
				*fired = i;
				x->last_fired = chs[i];
				return rc;
			}
			if (rc < 0)
				return rc;
		}
	}
}

static int pc_worker(void *ctx, struct csp_worker *w)
{
	return csp_worker_run(w, ctx, pc_write, pc_read, pc_end, pc_alt);
}

static const char *pc_models(const struct csp_case *c)
{
	switch (c->kind) {
	case CSP_ALT_TPUT:
	case CSP_ALT_RTT:
		return "poll(2) over the channels' data pipes, rotating preference, then the "
		       "rendezvous read (frame in, 1-byte ack out)";
	default:
		return c->buffer ? "a data pipe (4-byte length + payload, one writev) and an ack "
				   "pipe: the writer runs up to 64 messages ahead of the acks, the "
				   "reader acks in one write before it would block"
				 : "a data pipe (4-byte length + payload, one writev) and an ack pipe: "
				   "write returns once the reader's 1-byte ack arrived";
	}
}

const struct csp_peer csp_pipe = {
	.name = "csp-pipe",
	.label = "pipe(2) rendezvous",
	.kinds = CSP_KIND(CSP_RTT) | CSP_KIND(CSP_TPUT) | CSP_KIND(CSP_ALT_TPUT) |
		 CSP_KIND(CSP_ALT_RTT),
	.setup = pc_setup,
	.worker = pc_worker,
	.teardown = pc_teardown,
	.models = pc_models,
};
