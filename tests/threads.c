/* Threads of one process on one queue: producers and consumers each with a
 * handle of their own, then producers sharing one handle and consumers
 * another (every call on a handle may run concurrently, shmq.h). Checks
 * exactly-once, whole, per-producer-ordered delivery.
 *
 * A plain program rather than a Criterion suite so that race detectors can
 * run it as it is: meson runs it in every build (TSan's included), and
 * tools/test.sh runs it under valgrind's DRD. The harness synchronises only
 * through pthread_create/join, which DRD understands; see the comment at
 * ignore_segments() for what DRD is told to ignore, and tests/drd.supp.
 * Usage: threads [messages per producer]   Exit status 0 when all is well. */
#include "common.h"

#if __has_include(<valgrind/drd.h>)
#include <valgrind/drd.h>
#else
#define ANNOTATE_BENIGN_RACE_SIZED(addr, size, why) ((void)(addr), (void)(size), (void)(why))
#endif

#define NPROD 3
#define NCONS 3
#define BATCH 8

struct worker {
	pthread_t tid;
	shmq_queue *q;
	unsigned id;
	enum mp_api api;
	bool own;      /* closes its handle when done */
	uint32_t n;    /* producer: messages to put */
	size_t hi;     /* message lengths TMSG_HDR .. hi */
	/* Consumer results, read by main after pthread_join. */
	uint32_t *got; /* prod << 24 | seq, in order of receipt */
	size_t ngot, torn, order;
	int64_t err;   /* first unexpected result */
};

static void *producer(void *arg)
{
	struct worker *w = arg;
	static _Thread_local unsigned char buf[BATCH][512];
	for (uint32_t seq = 0; seq < w->n && !w->err;) {
		uint32_t k = w->api == MP_BULK || w->api == MP_BURST ? 1 + seq % BATCH : 1;
		if (k > w->n - seq)
			k = w->n - seq;
		struct iovec iov[BATCH];
		for (uint32_t i = 0; i < k; i++) {
			iov[i] = (struct iovec){ buf[i], tmsg_len(w->id, seq + i, TMSG_HDR, w->hi) };
			tmsg_fill(buf[i], w->id, seq + i, iov[i].iov_len);
		}
		int r;
		if (w->api == MP_BULK) {
			r = shmq_put_bulk(w->q, iov, k, -1);
		} else if (w->api == MP_BURST) {
			r = shmq_put_burst(w->q, iov, k, -1);
		} else if (w->api == MP_ZEROCOPY) {
			shmq_slot s;
			r = shmq_put_reserve(w->q, iov[0].iov_len, &s, -1);
			if (r == 0) {
				memcpy(s.data, buf[0], iov[0].iov_len);
				r = shmq_put_commit(w->q, &s);
			}
			r = r < 0 ? r : 1;
		} else {
			r = shmq_put(w->q, buf[0], iov[0].iov_len, -1);
			r = r < 0 ? r : 1;
		}
		if (r <= 0)
			w->err = r ? r : -ERANGE;
		else
			seq += (uint32_t)r;
	}
	if (w->own)
		shmq_queue_close(w->q); /* also on error: consumers then see EOF */
	return NULL;
}

static void take(struct worker *w, const void *m, size_t len, int64_t *last)
{
	uint32_t prod, seq;
	if (tmsg_check(m, len, NPROD, TMSG_HDR, w->hi, &prod, &seq) != TMSG_OK) {
		w->torn++;
		return;
	}
	if ((int64_t)seq <= last[prod])
		w->order++;
	last[prod] = seq;
	w->got[w->ngot++] = prod << 24 | seq;
}

static void *consumer(void *arg)
{
	struct worker *w = arg;
	static _Thread_local unsigned char buf[BATCH][512];
	int64_t last[NPROD] = { -1, -1, -1 };
	for (;;) {
		int r;
		struct iovec iov[BATCH];
		unsigned k = w->api == MP_BULK ? 2 : BATCH;
		for (unsigned i = 0; i < k; i++)
			iov[i] = (struct iovec){ buf[i], sizeof(buf[i]) };
		if (w->api == MP_BULK || w->api == MP_BURST) {
			r = w->api == MP_BULK ? shmq_get_bulk(w->q, iov, k, -1)
					      : shmq_get_burst(w->q, iov, k, -1);
			if (r == -EPIPE && w->api == MP_BULK) { /* fewer than k left */
				w->api = MP_COPY;
				continue;
			}
			for (int i = 0; i < r; i++)
				take(w, iov[i].iov_base, iov[i].iov_len, last);
		} else if (w->api == MP_ZEROCOPY) {
			shmq_slot s;
			r = shmq_get_peek(w->q, &s, -1);
			if (r == 0) {
				take(w, s.data, s.len, last);
				r = shmq_get_release(w->q, &s);
			}
		} else {
			ssize_t n = shmq_get(w->q, buf[0], sizeof(buf[0]), -1);
			if (n >= 0)
				take(w, buf[0], (size_t)n, last);
			r = n < 0 ? (int)n : 0;
		}
		if (r == -EPIPE)
			break;
		if (r < 0) {
			w->err = r;
			break;
		}
	}
	if (w->own)
		shmq_queue_close(w->q);
	return NULL;
}

/* DRD sees the library's shared segment accessed by every thread with plain
 * loads and stores: C11 atomic loads and stores compile to ordinary moves on
 * x86, and the happens-before edges come from those atomics and from futexes,
 * neither of which DRD models. Every access to the segment would be reported
 * (measured: ~68,000 reports from 133 places). The segment's protocol is
 * checked elsewhere (TSan, which understands atomics; tests/model/ring.pml;
 * the torture), so DRD is told to ignore the segment's mappings and checks
 * everything else: the handles, the library's process-local state, and this
 * program's memory. */
static void ignore_segments(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (strstr(line, "/memfd:shmq") && sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			ANNOTATE_BENIGN_RACE_SIZED((void *)lo, hi - lo, "shmq segment");
	}
	if (f)
		fclose(f);
}

static int run(bool shared, uint32_t per)
{
	/* Small, so that it wraps and fills; big enough for BATCH messages of
	 * up to 400 bytes (7 cells each) in one bulk put. */
	struct shmq_queue_attr a = t_attr(128, 1024);
	shmq_queue *q = NULL, *wq = NULL, *rq = NULL;
	if (shmq_queue_create(NULL, &a, &q) < 0)
		return 1;
	int fd = shmq_queue_fd(q);
	/* Own handles: copy and batches, multi-cell messages. Shared handles:
	 * zero-copy among them, so one-cell messages (56 bytes). */
	static const enum mp_api own_p[NPROD] = { MP_COPY, MP_BULK, MP_BURST },
				 own_c[NCONS] = { MP_BURST, MP_COPY, MP_BULK },
				 sh_p[NPROD] = { MP_ZEROCOPY, MP_COPY, MP_BURST },
				 sh_c[NCONS] = { MP_COPY, MP_ZEROCOPY, MP_BURST };
	if (shared && (shmq_queue_open_fd(fd, SHMQ_WR, &wq) < 0 ||
		       shmq_queue_open_fd(fd, SHMQ_RD, &rq) < 0))
		return 1;
	struct worker w[NPROD + NCONS];
	for (unsigned i = 0; i < NPROD + NCONS; i++) {
		bool prod = i < NPROD;
		w[i] = (struct worker){ .id = prod ? i : i - NPROD, .own = !shared, .n = per,
					.hi = shared ? 56 : 400 };
		w[i].api = shared ? (prod ? sh_p : sh_c)[w[i].id] : (prod ? own_p : own_c)[w[i].id];
		w[i].q = prod ? wq : rq;
		if (!shared && shmq_queue_open_fd(fd, prod ? SHMQ_WR : SHMQ_RD, &w[i].q) < 0)
			return 1;
		if (!prod && !(w[i].got = malloc((size_t)NPROD * per * sizeof(uint32_t))))
			return 1;
	}
	shmq_queue_shutdown(q, SHMQ_RDWR); /* the threads hold every role */
	ignore_segments();
	for (unsigned i = 0; i < NPROD + NCONS; i++)
		pthread_create(&w[i].tid, NULL, i < NPROD ? producer : consumer, &w[i]);
	for (unsigned i = 0; i < NPROD + NCONS; i++) {
		pthread_join(w[i].tid, NULL);
		if (i == NPROD - 1 && shared)
			shmq_queue_close(wq); /* every producer done: end of data */
	}
	if (shared)
		shmq_queue_close(rq);
	shmq_queue_close(q);

	/* Exactly once: count every (producer, seq) over all consumers. */
	uint8_t *seen = calloc((size_t)NPROD * per, 1);
	size_t received = 0, dup = 0, torn = 0, order = 0, missing = 0;
	int64_t err = 0;
	for (unsigned i = 0; i < NPROD + NCONS; i++) {
		if (w[i].err && !err)
			err = w[i].err;
		if (i < NPROD)
			continue;
		for (size_t j = 0; j < w[i].ngot; j++) {
			uint32_t p = w[i].got[j] >> 24, s = w[i].got[j] & 0xffffff;
			if (s < per)
				dup += seen[p * per + s]++ > 0;
		}
		received += w[i].ngot;
		torn += w[i].torn;
		order += w[i].order;
		free(w[i].got);
	}
	for (size_t j = 0; j < (size_t)NPROD * per; j++)
		missing += !seen[j];
	free(seen);
	printf("threads (%s handles): received %zu of %u, missing %zu, dup %zu, torn %zu, "
	       "out of order %zu, first error %lld\n",
	       shared ? "shared" : "own", received, NPROD * per, missing, dup, torn, order,
	       (long long)err);
	return received != (size_t)NPROD * per || missing || dup || torn || order || err;
}

int main(int argc, char **argv)
{
	uint32_t per = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 5000;
	if (per == 0 || per > 0xffffff)
		return 2;
	int bad = run(false, per) | run(true, per);
	printf("threads: %s\n", bad ? "FAIL" : "PASS");
	return bad;
}
