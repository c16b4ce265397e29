/* shmq-bench: the CSP channel cases (--cases csp).
 *
 * shmq's channels and alternation (include/shmq/chan.h) between processes
 * (fork), against the two ways a C programmer builds the same thing without
 * shmq: a rendezvous over pipe(2) (the message, then a 1-byte
 * acknowledgement back: bench/peers/csp_pipe.c) and Go's channel design in
 * shared memory, one process-shared mutex per channel and a condvar per
 * waiting process (bench/peers/csp_gochan.c). shmq's own Queue ping-pong
 * runs beside them as a reference row (the target "a rendezvous round trip
 * costs at most 2x a queue round trip"). The cases:
 *
 *   CSP_RTT       rendezvous round trip: process A writes channel X, B reads
 *                 X and writes it back on Y, A reads Y. Every round trip is
 *                 timed; the figure is each repetition's median (p50).
 *   CSP_TPUT      one writer process, one reader process, one channel with
 *                 buffer c->buffer (0: rendezvous), c->size-byte messages:
 *                 msgs/s as the reader takes them.
 *   CSP_ALT_TPUT  one reader process alternates (SHMQ_ALT_FAIR, or the
 *                 peer's fair equivalent) over c->nchan read guards while
 *                 c->nwriters writer processes write, writer j rotating over
 *                 the channels k with k % nwriters == j (so each channel has
 *                 exactly one writer): msgs/s, and the fairness (the least
 *                 served channel's count over the most served one's).
 *   CSP_ALT_RTT   alternation round trip: A alternates over c->nchan input
 *                 channels of which only the last is used; B writes on it and
 *                 reads A's reply on channel nchan (a plain read). Timed and
 *                 reported like CSP_RTT, so that "alternation over 8 channels
 *                 costs at most 3x a plain rendezvous" can be read off.
 *
 * Every message carries (writer << 48 | sequence) in its first 8 bytes and,
 * when it has room, again in its last 8: the reader checks the length, the
 * writer's sequence (exactly one more than the last it saw: nothing lost,
 * duplicated or reordered) and the copy; a round trip checks the echo.
 *
 * End of data is each system's own: shmq retires the writer end
 * (shmq_chan_retire), Go-style closes the channel, the pipe channel writes
 * a close frame; the reader sees -EPIPE. A system gives its operations as
 * small functions and calls csp_worker_run() from its worker(), so every
 * system runs the very same loops, inlined into each peer (as in sync.h).
 */
#ifndef SHMQ_BENCH_CSP_H
#define SHMQ_BENCH_CSP_H

#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum csp_kind { CSP_RTT, CSP_TPUT, CSP_ALT_TPUT, CSP_ALT_RTT, CSP_NKINDS };

#define CSP_MAX_PROCS 9  /* the alternation reader and 8 writers */
#define CSP_MAX_CHANS 16 /* 8 input channels and the reply channel */
#define CSP_ALT_N 8      /* channels of the alternation cases */
#define CSP_BUFFERED 64  /* the buffered case's buffer */

struct csp_case {
	enum csp_kind kind;
	uint32_t buffer; /* CSP_TPUT: 0 rendezvous, or the buffer */
	size_t size;     /* message bytes */
	int nchan;       /* CSP_ALT_*: channels alternated over */
	int nwriters;    /* CSP_ALT_TPUT */
	int nproc;       /* worker processes */
	double secs;
};

/* Channels a case uses: CSP_RTT 0 (A -> B) and 1 (B -> A); CSP_TPUT 0;
 * CSP_ALT_TPUT 0 .. nchan-1; CSP_ALT_RTT 0 .. nchan-1 (B -> A, only nchan-1
 * used) and nchan (A -> B). */
static inline int csp_nchans(const struct csp_case *c)
{
	switch (c->kind) {
	case CSP_RTT:
		return 2;
	case CSP_TPUT:
		return 1;
	case CSP_ALT_TPUT:
		return c->nchan;
	case CSP_ALT_RTT:
		return c->nchan + 1;
	default:
		return 0;
	}
}

/* One worker's counts (in the shared page). */
struct csp_wres {
	uint64_t ops;    /* messages written or taken, round trips */
	uint64_t errors; /* integrity errors */
	int64_t t_start, t_end;
	int rc;
	char note[120];
};

/* One MAP_SHARED page set per run. */
struct csp_shared {
	_Alignas(128) _Atomic uint32_t arrived;
	_Atomic uint32_t go;
	int64_t t0;
	_Alignas(128) _Atomic uint32_t stop;
	_Alignas(128) struct csp_wres res[CSP_MAX_PROCS];
	uint64_t per_chan[CSP_MAX_CHANS]; /* CSP_ALT_TPUT: messages taken per channel */
	struct bench_hist hist;           /* round trips (worker 0) */
};

struct csp_worker {
	struct csp_shared *sh;
	const struct csp_case *c;
	int id; /* 0 .. nproc-1 */
};

/* What one run of one system measured. */
struct csp_run {
	uint64_t ops, errors;
	int64_t wall_ns;
	struct bench_hist hist; /* round trips */
	double fairness;        /* CSP_ALT_TPUT: min / max messages per channel */
	char note[120];
};

enum {
	CP_SHMQ = 1, /* the baseline of every ratio */
	CP_REF = 2,  /* a reference row, not a competitor */
};

struct csp_peer {
	const char *name;  /* -S name */
	const char *label; /* table */
	unsigned flags;
	unsigned kinds; /* 1u << CSP_... it runs */
	/* Parent before fork; each worker process; parent after every worker
	 * has exited. */
	int (*setup)(const struct csp_case *c, void **ctx);
	int (*worker)(void *ctx, struct csp_worker *w);
	void (*teardown)(void *ctx);
	/* What it uses in this case (a line under the table), or NULL. */
	const char *(*models)(const struct csp_case *c);
};

#define CSP_KIND(k) (1u << (k))

extern const struct csp_peer *const csp_peers[]; /* bench/csp.c, NULL-terminated */

/* Harness side (bench/csp.c, called by shmq-bench.c). */
void csp_build_cases(bool quick, double secs, int reps, const char *systems);
int csp_ncases(void);
int csp_total_runs(void);
/* Run repetition r of every case, every system once (rotating order). */
void csp_run_rep(int r, bool tty, bool verbose, int *done, int total);
void csp_print(void);
void csp_targets(void);
/* Append the cases to the JSON "cases" array; first: no comma before. */
void csp_json(FILE *f, bool first);

/* ------------------------------------------------------- worker loops ---- */

/* Start barrier: warm up before it, time after it. */
void csp_ready(struct csp_worker *w);

static inline bool csp_stopping(const struct csp_worker *w)
{
	return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

/* Tell the others to stop (a worker that failed). */
static inline void csp_abort(struct csp_worker *w, int rc, const char *what)
{
	struct csp_wres *r = &w->sh->res[w->id];
	if (!r->note[0])
		snprintf(r->note, sizeof(r->note), "worker %d: %s: %s", w->id, what,
			 strerror(rc < 0 ? -rc : rc));
	atomic_store(&w->sh->stop, 1);
}

/* A system's operations. ch: the case's channel index (see csp_nchans).
 * write: 0 once the channel took the message (rendezvous: once a reader
 * did), or -errno. read: the length, -EPIPE at end of data, or -errno.
 * end: the writer is done with channel ch (readers see -EPIPE once it is
 * drained). alt: wait until one of the n channels chs[] can be read, read
 * exactly that one, preferring fairly (rotating); *fired is its position in
 * chs[]; returns the length, -EPIPE (that channel ended), or -errno with
 * *fired < 0 when nothing fired. */
typedef int (*csp_write_fn)(void *ctx, int ch, const void *buf, size_t len);
typedef ssize_t (*csp_read_fn)(void *ctx, int ch, void *buf, size_t cap);
typedef int (*csp_end_fn)(void *ctx, int ch);
typedef ssize_t (*csp_alt_fn)(void *ctx, const int *chs, int n, void *buf, size_t cap,
			      int *fired);

#define CSP_INLINE static inline __attribute__((always_inline))

/* A message of c->size bytes from writer wid, sequence seq. */
CSP_INLINE void csp_fill(char *buf, size_t size, unsigned wid, uint64_t seq)
{
	uint64_t h = (uint64_t)wid << 48 | seq;
	memcpy(buf, &h, 8);
	if (size >= 16)
		memcpy(buf + size - 8, &h, 8);
}

/* Its header, or UINT64_MAX (and an error) if the copy at the end differs. */
CSP_INLINE uint64_t csp_check(const char *buf, size_t size, uint64_t *errors)
{
	uint64_t h, t;
	memcpy(&h, buf, 8);
	if (size >= 16) {
		memcpy(&t, buf + size - 8, 8);
		if (t != h) {
			++*errors;
			return UINT64_MAX;
		}
	}
	return h;
}

/* CSP_RTT and CSP_ALT_RTT. Worker 0 (A in CSP_RTT, B in CSP_ALT_RTT: the
 * side that starts each round) writes on `out`, reads the echo on `back`,
 * and times the round; worker 1 echoes (CSP_ALT_RTT: alternating over the
 * nchan input channels) until `out` ends. */
CSP_INLINE int csp_rtt_loop(struct csp_worker *w, void *ctx, csp_write_fn wr, csp_read_fn rd,
			    csp_end_fn end, csp_alt_fn alt)
{
	const struct csp_case *c = w->c;
	struct csp_shared *sh = w->sh;
	struct csp_wres *r = &sh->res[w->id];
	bool is_alt = c->kind == CSP_ALT_RTT;
	int out = is_alt ? c->nchan - 1 : 0, back = is_alt ? c->nchan : 1;
	size_t size = c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	uint64_t n = 0, errors = 0;
	if (!buf) {
		csp_abort(w, -ENOMEM, "buffer");
		return -ENOMEM;
	}
	if (w->id == 0) {
		/* One untimed round before the barrier: both sides are in their
		 * loops and every channel has been used once. */
		csp_fill(buf, size, 0, 0);
		if ((rc = wr(ctx, out, buf, size)) < 0 ||
		    (rc = (int)rd(ctx, back, buf, size)) < 0) {
			csp_abort(w, rc, "warm-up");
			return rc;
		}
		csp_ready(w);
		r->t_start = bench_now();
		int64_t t = r->t_start;
		for (; (n & 15) || !csp_stopping(w); n++) {
			csp_fill(buf, size, 0, n + 1);
			if ((rc = wr(ctx, out, buf, size)) < 0)
				break;
			ssize_t got = rd(ctx, back, buf, size);
			if (got < 0) {
				rc = (int)got;
				break;
			}
			int64_t now = bench_now(); /* a round's end is the next one's start */
			bench_hist_add(&sh->hist, (uint64_t)(now - t));
			t = now;
			if ((size_t)got != size || csp_check(buf, size, &errors) != n + 1)
				errors++;
		}
		r->t_end = bench_now();
		int rc2 = end(ctx, out);
		if (rc == 0)
			rc = rc2;
	} else {
		int chs[CSP_MAX_CHANS];
		for (int i = 0; i < c->nchan && i < CSP_MAX_CHANS; i++)
			chs[i] = i;
		bool first = true;
		for (;;) {
			ssize_t got;
			if (is_alt) {
				int fired = -1;
				got = alt(ctx, chs, c->nchan, buf, size, &fired);
				if (got >= 0 && fired != out)
					errors++; /* a guard fired that nobody wrote to */
			} else {
				got = rd(ctx, out, buf, size);
			}
			if (got < 0) {
				rc = got == -EPIPE ? 0 : (int)got;
				break;
			}
			if ((rc = wr(ctx, back, buf, (size_t)got)) < 0)
				break;
			if (first) { /* the warm-up round */
				csp_ready(w);
				first = false;
				r->t_start = bench_now();
				continue;
			}
			n++;
		}
		r->t_end = bench_now();
	}
	r->ops = n;
	r->errors = errors;
	if (rc < 0)
		csp_abort(w, rc, w->id == 0 ? "round trip" : "echo");
	return rc;
}

/* CSP_TPUT: worker 0 writes, worker 1 reads until end of data. */
CSP_INLINE int csp_tput_loop(struct csp_worker *w, void *ctx, csp_write_fn wr, csp_read_fn rd,
			     csp_end_fn end)
{
	struct csp_shared *sh = w->sh;
	struct csp_wres *r = &sh->res[w->id];
	size_t size = w->c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	uint64_t n = 0, errors = 0;
	if (!buf) {
		csp_abort(w, -ENOMEM, "buffer");
		return -ENOMEM;
	}
	csp_ready(w);
	r->t_start = bench_now();
	if (w->id == 0) {
		while (!csp_stopping(w)) {
			csp_fill(buf, size, 0, n + 1);
			if ((rc = wr(ctx, 0, buf, size)) < 0)
				break;
			n++;
		}
		r->t_end = bench_now();
		int rc2 = end(ctx, 0);
		if (rc == 0)
			rc = rc2;
	} else {
		ssize_t got;
		int64_t last = r->t_start;
		while ((got = rd(ctx, 0, buf, size)) >= 0) {
			if ((size_t)got != size || csp_check(buf, size, &errors) != n + 1)
				errors++;
			n++;
			if (__builtin_expect(csp_stopping(w), 0))
				last = bench_now();
		}
		rc = got == -EPIPE ? 0 : (int)got;
		/* The rate counts to the last message taken; once stop was seen,
		 * the writer sends at most one more. */
		r->t_end = last > r->t_start ? last : bench_now();
	}
	r->ops = n;
	r->errors = errors;
	if (rc < 0)
		csp_abort(w, rc, w->id == 0 ? "write" : "read");
	return rc;
}

/* CSP_ALT_TPUT: worker 0 alternates over every channel until each has
 * ended; worker j >= 1 writes its channels (k % nwriters == j - 1) in turn. */
CSP_INLINE int csp_alt_tput_loop(struct csp_worker *w, void *ctx, csp_write_fn wr,
				 csp_end_fn end, csp_alt_fn alt)
{
	const struct csp_case *c = w->c;
	struct csp_shared *sh = w->sh;
	struct csp_wres *r = &sh->res[w->id];
	size_t size = c->size;
	char *buf = bench_buf(size);
	int rc = 0, nw = c->nwriters;
	uint64_t n = 0, errors = 0;
	if (!buf) {
		csp_abort(w, -ENOMEM, "buffer");
		return -ENOMEM;
	}
	csp_ready(w);
	r->t_start = bench_now();
	if (w->id > 0) {
		int mine[CSP_MAX_CHANS], nmine = 0;
		for (int k = 0; k < c->nchan; k++)
			if (k % nw == w->id - 1)
				mine[nmine++] = k;
		for (int i = 0; !csp_stopping(w); i = i + 1 == nmine ? 0 : i + 1) {
			csp_fill(buf, size, (unsigned)w->id, n + 1);
			if ((rc = wr(ctx, mine[i], buf, size)) < 0)
				break;
			n++;
		}
		r->t_end = bench_now();
		for (int i = 0; i < nmine; i++) {
			int rc2 = end(ctx, mine[i]);
			if (rc == 0)
				rc = rc2;
		}
	} else {
		int chs[CSP_MAX_CHANS], nact = c->nchan;
		uint64_t last[CSP_MAX_PROCS] = { 0 };
		for (int i = 0; i < nact; i++)
			chs[i] = i;
		int64_t t_last = r->t_start;
		while (nact > 0) {
			int fired = -1;
			ssize_t got = alt(ctx, chs, nact, buf, size, &fired);
			if (fired < 0 || fired >= nact) {
				rc = got < 0 ? (int)got : -EPROTO;
				break;
			}
			int ch = chs[fired];
			if (got == -EPIPE) { /* that writer is done with it */
				memmove(&chs[fired], &chs[fired + 1],
					sizeof(chs[0]) * (size_t)(nact - fired - 1));
				nact--;
				continue;
			}
			if (got < 0) {
				rc = (int)got;
				break;
			}
			uint64_t h = csp_check(buf, size, &errors);
			unsigned wid = (unsigned)(h >> 48);
			uint64_t seq = h & ((1ull << 48) - 1);
			if ((size_t)got != size || wid < 1 || wid > (unsigned)nw ||
			    ch % nw != (int)wid - 1 || seq != last[wid] + 1)
				errors++;
			else
				last[wid] = seq;
			sh->per_chan[ch]++;
			n++;
			if (__builtin_expect(csp_stopping(w), 0))
				t_last = bench_now(); /* each writer sends at most one more */
		}
		r->t_end = t_last > r->t_start ? t_last : bench_now();
	}
	r->ops = n;
	r->errors = errors;
	if (rc < 0)
		csp_abort(w, rc, w->id == 0 ? "alternation" : "write");
	return rc;
}

/* A worker's whole case. */
CSP_INLINE int csp_worker_run(struct csp_worker *w, void *ctx, csp_write_fn wr, csp_read_fn rd,
			      csp_end_fn end, csp_alt_fn alt)
{
	switch (w->c->kind) {
	case CSP_RTT:
	case CSP_ALT_RTT:
		return csp_rtt_loop(w, ctx, wr, rd, end, alt);
	case CSP_TPUT:
		return csp_tput_loop(w, ctx, wr, rd, end);
	case CSP_ALT_TPUT:
		return csp_alt_tput_loop(w, ctx, wr, end, alt);
	default:
		return -EINVAL;
	}
}

#endif
