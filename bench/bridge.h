/* shmq-bench: the bridge cases (--cases bridge).
 *
 * A local shmq queue carried over Redis by shmq-bridge (tools/bridge/):
 *
 *   producer -> /src -> shmq-bridge out -> Redis stream -> shmq-bridge in -> /dst -> consumer
 *
 * against, in the same run and on the same redis-server (one the bench
 * starts for itself on a free 127.0.0.1 port, --save '' --appendonly no):
 *
 *   xadd-pipelined  one hiredis client XADDing one entry per message (field
 *                   "d"), redis-benchmark style: 256 commands written, then
 *                   their 256 replies read (the engine's own ceiling: the
 *                   target is shmq end to end >= 0.7x of it). Its latency:
 *                   XADD from one client, XREAD BLOCK in a second one.
 *   zmq-forwarder   producer PUSH -> forwarder process (PULL bind, PUSH bind,
 *                   zmq_proxy) -> consumer PULL, over tcp://127.0.0.1.
 *
 * The cases, each at 64 B and 1 KiB:
 *
 *   BR_TPUT  the producer sends flat out for c->secs (at most c->max_msgs),
 *            then ends the data (shmq: closes its queue, so both bridges
 *            finish and exit 0; zmq: an empty message; XREAD: an entry with
 *            field "end"); msgs/s = N / (last receive - first send).
 *            xadd-pipelined has no reader here: N / (last reply - first send).
 *   BR_LAT   the producer sends paced at c->rate msgs/s for c->secs (well
 *            under every system's capacity: the latency of one message, not
 *            of a backlog); the consumer times every message from its send
 *            stamp: one-way p50 and p99.
 *
 * Every message carries its CLOCK_MONOTONIC send time in bytes 0..7 and its
 * sequence number (from 1) in bytes 8..15 and, when it has room, again in
 * its last 8 bytes: the consumer checks the length, the sequence (exactly
 * one more than the last: nothing lost, duplicated or reordered) and the
 * copy. Two worker processes per run (0 producer, 1 consumer) on a shared
 * start barrier; a system's helpers (bridges, forwarder) are started by its
 * setup() and waited for by its teardown().
 */
#ifndef SHMQ_BENCH_BRIDGE_H
#define SHMQ_BENCH_BRIDGE_H

#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum br_kind { BR_TPUT, BR_LAT, BR_NKINDS };

#define BR_PIPELINE 256  /* xadd-pipelined: commands in flight */
#define BR_LAT_RATE 2000 /* BR_LAT: messages/s */

struct bridge_case {
	enum br_kind kind;
	size_t size;       /* message bytes (>= 16) */
	double secs;       /* the producer's time */
	uint64_t max_msgs; /* at most this many messages */
	double rate;       /* BR_LAT: msgs/s */
};

/* Where the systems run (filled by bench/bridge.c before setup). */
struct bridge_env {
	const char *host; /* 127.0.0.1 */
	int port;         /* the bench's redis-server */
	const char *bridge; /* the shmq-bridge program */
	const char *tmpdir; /* the redis-server's directory: logs go there */
	unsigned run;       /* a fresh number per run (stream and queue names) */
};

struct bridge_wres {
	uint64_t ops;    /* messages sent / taken */
	uint64_t errors; /* integrity errors */
	int64_t t_first; /* producer: first send */
	int64_t t_last;  /* producer: after the end of data went out (xadd: last
			    reply); consumer: last message taken */
	int rc;
	char note[120];
};

/* One MAP_SHARED page set per run. */
struct bridge_shared {
	_Alignas(128) _Atomic uint32_t arrived;
	_Atomic uint32_t go;
	int64_t t0;
	_Alignas(128) _Atomic uint32_t stop;
	_Alignas(128) struct bridge_wres res[2];
	struct bench_hist hist; /* BR_LAT: one-way latency, consumer */
};

struct bridge_worker {
	struct bridge_shared *sh;
	const struct bridge_case *c;
	int id; /* 0 producer, 1 consumer */
};

enum {
	BRP_SHMQ = 1,        /* the baseline of every ratio */
	BRP_WRITER_TPUT = 2, /* BR_TPUT: no reader, the figure is the writer's */
};

struct bridge_peer {
	const char *name;  /* -S name */
	const char *label; /* table */
	unsigned flags;
	/* Parent before fork (start the helpers); each worker process; parent
	 * after both workers have exited (stop and reap the helpers: < 0 and a
	 * note if one failed, hung or exited non-zero). */
	int (*setup)(const struct bridge_case *c, const struct bridge_env *env, void **ctx,
		     char *note, size_t note_len);
	int (*worker)(void *ctx, struct bridge_worker *w);
	int (*teardown)(void *ctx, char *note, size_t note_len);
	/* What it uses in this case (a line under the table), or NULL. */
	const char *(*models)(const struct bridge_case *c);
};

extern const struct bridge_peer *const bridge_peers[]; /* bench/bridge.c, NULL-terminated */

/* Harness side (bench/bridge.c, called by shmq-bench.c). Without hiredis at
 * build time, or without redis-server or shmq-bridge at run time, the family
 * has no cases and says why in one "skipped:" line. */
void bridge_build_cases(bool quick, double secs, int reps, uint64_t max_msgs,
			const char *systems);
int bridge_ncases(void);
int bridge_total_runs(void);
const char *bridge_skipped(void); /* why the family does not run, or NULL */
/* Run repetition r of every case, every system once (rotating order). */
void bridge_run_rep(int r, bool tty, bool verbose, int *done, int total);
void bridge_print(void);
void bridge_targets(void);
void bridge_json(FILE *f, bool first);
void bridge_list(void); /* --list */

/* Helpers for the systems (bench/bridge.c). br_spawn: fork and exec argv[0]
 * (a path), stdin and stdout /dev/null, stderr into errlog (NULL: kept),
 * death_sig sent to it if the bench dies. Returns its pid or -errno (note).
 * br_exited: 0 while pid runs, else -ECHILD and a note with its status and
 * the first line of errlog. br_wait: wait up to timeout_ns for pid to exit;
 * 0 if it exited 0; else < 0 and a note (its status, or "hung" after it was
 * sent SIGTERM, then SIGKILL 2 s later). br_redis_del: DEL key on the
 * bench's redis-server. */
pid_t br_spawn(char *const argv[], const char *errlog, int death_sig, char *note, size_t len);
int br_exited(pid_t pid, const char *what, const char *errlog, char *note, size_t len);
int br_wait(pid_t pid, int64_t timeout_ns, const char *what, const char *errlog, char *note,
	    size_t len);
void br_redis_del(const char *key);

/* ------------------------------------------------------- worker loops ---- */

void bridge_ready(struct bridge_worker *w); /* start barrier */

static inline bool bridge_stopping(const struct bridge_worker *w)
{
	return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

static inline void bridge_abort(struct bridge_worker *w, int rc, const char *what)
{
	struct bridge_wres *r = &w->sh->res[w->id];
	if (!r->note[0])
		snprintf(r->note, sizeof(r->note), "%s: %s: %s", w->id ? "consumer" : "producer",
			 what, strerror(rc < 0 ? -rc : rc));
	atomic_store(&w->sh->stop, 1);
}

/* send: 0 once the system took the message, or -errno. end: the end of data
 * (and, for a pipelining writer, every reply read). recv: the length, -EPIPE
 * at end of data, or -errno. */
typedef int (*br_send_fn)(void *ctx, const void *buf, size_t len);
typedef int (*br_end_fn)(void *ctx);
typedef ssize_t (*br_recv_fn)(void *ctx, void *buf, size_t cap);

#define BR_INLINE static inline __attribute__((always_inline))

BR_INLINE void br_fill(char *buf, size_t size, uint64_t seq, int64_t stamp)
{
	memcpy(buf, &stamp, 8);
	memcpy(buf + 8, &seq, 8);
	if (size >= 24)
		memcpy(buf + size - 8, &seq, 8);
}

/* Its send stamp; *seq its sequence, 0 (and an error) if torn or short. */
BR_INLINE int64_t br_check(const char *buf, size_t len, size_t size, uint64_t *seq,
			   uint64_t *errors)
{
	int64_t stamp;
	uint64_t s, t;
	if (len != size || len < 16) {
		++*errors;
		*seq = 0;
		return 0;
	}
	memcpy(&stamp, buf, 8);
	memcpy(&s, buf + 8, 8);
	if (size >= 24) {
		memcpy(&t, buf + size - 8, 8);
		if (t != s) {
			++*errors;
			s = 0;
		}
	}
	*seq = s;
	return stamp;
}

/* Paced sending (BR_LAT): sleep until the message's slot; never bursts to
 * catch up (a late message is sent at once, the next one an interval on). */
BR_INLINE void br_pace(struct bridge_worker *w, int64_t *next, int64_t interval)
{
	int64_t d = *next - bench_now();
	if (d > 60000)
		sleep_ns(d - 40000);
	while (bench_now() < *next && !bridge_stopping(w))
		bench_pause();
	int64_t now = bench_now();
	*next += interval;
	if (*next < now)
		*next = now + interval;
}

BR_INLINE int br_producer(struct bridge_worker *w, void *ctx, br_send_fn send, br_end_fn end)
{
	const struct bridge_case *c = w->c;
	struct bridge_wres *r = &w->sh->res[0];
	size_t size = c->size;
	char *buf = bench_buf(size);
	int rc = 0;
	uint64_t n = 0;
	if (!buf) {
		bridge_abort(w, -ENOMEM, "buffer");
		return -ENOMEM;
	}
	bool paced = c->kind == BR_LAT;
	int64_t interval = paced ? (int64_t)(1e9 / c->rate) : 0;
	bridge_ready(w);
	int64_t next = bench_now();
	r->t_first = next;
	while (!bridge_stopping(w) && n < c->max_msgs) {
		if (paced)
			br_pace(w, &next, interval);
		int64_t now = bench_now();
		if (n == 0)
			r->t_first = now;
		br_fill(buf, size, n + 1, now);
		if ((rc = send(ctx, buf, size)) < 0)
			break;
		n++;
	}
	int rc2 = end(ctx);
	r->t_last = bench_now();
	r->ops = n;
	if (rc == 0 && rc2 < 0)
		rc = rc2;
	if (rc < 0)
		bridge_abort(w, rc, "send");
	free(buf);
	return rc;
}

BR_INLINE int br_consumer(struct bridge_worker *w, void *ctx, br_recv_fn recv)
{
	const struct bridge_case *c = w->c;
	struct bridge_wres *r = &w->sh->res[1];
	size_t size = c->size, cap = size + 64;
	char *buf = bench_buf(cap);
	uint64_t n = 0, errors = 0, last = 0;
	ssize_t got;
	if (!buf) {
		bridge_abort(w, -ENOMEM, "buffer");
		return -ENOMEM;
	}
	bool lat = c->kind == BR_LAT;
	bridge_ready(w);
	r->t_last = bench_now();
	while ((got = recv(ctx, buf, cap)) >= 0) {
		int64_t now = bench_now();
		uint64_t seq;
		int64_t stamp = br_check(buf, (size_t)got, size, &seq, &errors);
		if (seq && seq != last + 1)
			errors++; /* lost, duplicated or reordered */
		if (seq)
			last = seq;
		if (lat && seq)
			bench_hist_add(&w->sh->hist, now > stamp ? (uint64_t)(now - stamp) : 0);
		n++;
		r->t_last = now;
	}
	int rc = got == -EPIPE ? 0 : (int)got;
	r->ops = n;
	r->errors = errors;
	if (rc < 0)
		bridge_abort(w, rc, "receive");
	free(buf);
	return rc;
}

#endif
