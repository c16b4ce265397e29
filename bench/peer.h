/* shmq-bench: the interface between the harness and the systems it measures.
 *
 * A system ("peer") is one file in bench/peers/ that fills a struct bench_peer
 * and lists it in bench/peers.c. The harness forks P producer and C consumer
 * processes (or threads, for PF_THREADS peers), each of which calls the peer's
 * producer()/consumer() with a struct bench_worker. Inside, the peer:
 *
 *   producer: drop the ends it does not use, bench_ready(w), then
 *             while (bench_more(w)) { bench_fill(w, buf); send(buf) }
 *             release its end (that is how consumers see EOF where the system
 *             has one), then bench_producer_done(w).
 *   consumer: drop unused ends, bench_ready(w), then receive until end of data,
 *             calling bench_got(w, msg, len) for each message, then
 *             bench_consumer_done(w).
 *
 * Every message starts with an 8-byte word (producer id << 48 | sequence) and,
 * when it has room, repeats it in its last 8 bytes (a cheap tear check); in
 * latency cases bytes 8..15 carry the CLOCK_MONOTONIC send time. A message
 * shorter than 8 bytes (Pipe cases, one producer) carries the low bytes of the
 * sequence number.
 *
 * JoinableQueue case (CASE_JOIN, peers with PF_JOIN): consumers mark every
 * message done after bench_got; each producer, after its last message, waits
 * for the join and then calls bench_join_done(w) instead of
 * bench_producer_done(w): the time ends when the last join returns. Pipe
 * cases (CASE_CONN one way, CASE_CONN_PP ping-pong, peers with PF_CONN): the
 * same producer/consumer and ping/pong hooks, but messages must be framed by
 * the system as a Pipe frames them (the receiver does not know their size):
 * stream peers use bench_send_framed / bench_recv_framed.
 */
#ifndef SHMQ_BENCH_PEER_H
#define SHMQ_BENCH_PEER_H

#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define BENCH_MAX_WORKERS 32
#define BENCH_LAT_BUCKETS (40 * 32) /* log-linear: 32 steps per power of two */

static inline int64_t bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sleep_ns(int64_t ns);

/* The timed window of a case, run by the parent: wait (up to arrive_ns) for
 * n workers at the start barrier (`arrived`), open the gate (`go`, a futex;
 * t0 = now), let them run secs, then set `stop`. Workers that exit before
 * the barrier fail the run. Returns true if it failed (note says why). */
struct bench_window {
	_Atomic uint32_t *arrived, *go, *stop;
	int64_t *t0;
	uint32_t n;
	int64_t arrive_ns;
	double secs;
};
bool bench_window(struct bench_window *w, pid_t *pids, int npids, bool failed, char *note,
		  size_t note_len);
/* A worker at that barrier: count itself in, sleep until the gate opens. */
void bench_arrive(_Atomic uint32_t *arrived, _Atomic uint32_t *go);
/* Reap every worker (pids[i] > 0), killing them all once watchdog_ns has
 * passed (*hung). Returns true if any failed (exit status, signal, hang). */
bool bench_reap(pid_t *pids, int npids, int64_t watchdog_ns, bool *hung);
/* Start prog (searched in PATH) with argv, its stdout a pipe. Returns the
 * pipe's read end and *pid, or -errno (note says why). */
int bench_spawn_reader(const char *prog, char *const argv[], pid_t *pid, char *note,
		       size_t note_len);
/* Fork n worker processes (at most 2 * BENCH_MAX_WORKERS), each dying with the
 * harness and exiting 1 if fn(arg, i) returned < 0, else 0; run the window w
 * over them, then reap them, killing those still alive watchdog_ns later.
 * Returns true if anything failed (note says why where it knows). */
bool bench_fork_window(int n, int (*fn)(void *arg, int i), void *arg, struct bench_window *w,
		       int64_t watchdog_ns, char *note, size_t note_len);
/* The interpreter of the Python drivers: /usr/bin/python3 (Debian's, where
 * multiprocessing is the packaged one), else python3 from PATH. */
const char *bench_python(void);
/* Run a Python driver (argv[0] the interpreter, argv[1] the script, named in
 * notes by its base name) and read its one-line JSON answer, killing it if it
 * has not answered within timeout_s. Returns the line (a static buffer that
 * the next call reuses), or NULL (note says why). */
const char *bench_driver_json(char *const argv[], double timeout_s, char *note,
			      size_t note_len);

static inline void bench_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

enum bench_kind {
	CASE_TPUT,     /* throughput, P x C */
	CASE_LATENCY,  /* one-way latency from timestamps, P x C (paced or not) */
	CASE_PINGPONG, /* blocking round trip, 1 x 1 */
	CASE_JOIN,     /* JoinableQueue: put + task_done, producers join; P x C */
	CASE_CONN,     /* Pipe one way: framed messages of any size, 1 x 1 */
	CASE_CONN_PP,  /* Pipe ping-pong: every round trip timed, 1 x 1 */
};

struct bench_case {
	enum bench_kind kind;
	int np, nc;
	size_t size;       /* message bytes */
	double secs;       /* producers stop after this */
	uint64_t max_msgs; /* per producer */
	unsigned batch;    /* burst size for batch modes */
	double rate;       /* latency cases: offered messages/s, all producers; 0 = flat out */
};

static inline bool bench_is_conn(const struct bench_case *c)
{
	return c->kind == CASE_CONN || c->kind == CASE_CONN_PP;
}

struct bench_hist {
	uint64_t n;
	uint64_t max;
	uint32_t b[BENCH_LAT_BUCKETS];
};

struct bench_wres {
	uint64_t msgs;
	uint64_t errors;
	int64_t t_end; /* last message handled after stop was seen, or the end */
	int rc;
	bool joined;   /* CASE_JOIN: t_end is when this producer's join returned */
	char note[120];
};

/* One MAP_SHARED page set per run. */
struct bench_shared {
	_Alignas(128) _Atomic uint32_t arrived;
	_Alignas(128) _Atomic uint32_t go;
	int64_t t0;
	_Alignas(128) _Atomic uint32_t stop;
	_Alignas(128) _Atomic uint32_t prod_done;
	_Atomic uint32_t aux; /* free for peers: e.g. "consumers have bound" */
	_Atomic uint64_t sent_total;
	_Alignas(128) _Atomic uint64_t recv_total;
	_Alignas(128) struct bench_wres prod[BENCH_MAX_WORKERS];
	struct bench_wres cons[BENCH_MAX_WORKERS];
	struct bench_hist hist[BENCH_MAX_WORKERS]; /* per consumer, latency cases;
						      [0]: round trips, CASE_CONN_PP */
	uint64_t pp_rounds;                        /* ping-pong: round trips done */
	int64_t pp_ns;                             /* ping-pong: their time */
};

struct bench_worker {
	struct bench_shared *sh;
	const struct bench_case *c;
	int id;       /* 0..np-1 or 0..nc-1 */
	bool producer;
	bool timed;   /* stamp / measure latency */
	uint64_t seq; /* producer: next sequence number (starts at 1) */
	uint64_t msgs, errors;
	int64_t t_end;
	int64_t next_send; /* paced latency cases */
	int64_t interval;
	uint64_t last[BENCH_MAX_WORKERS]; /* consumer: last sequence seen per producer */
};

/* ------------------------------------------------------------ barrier ---- */

void bench_ready(struct bench_worker *w);             /* start barrier */
void bench_producer_done(struct bench_worker *w);     /* counts, end time */
void bench_join_done(struct bench_worker *w);         /* the same, after a join */
void bench_consumer_done(struct bench_worker *w);
void bench_set_note(struct bench_worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void bench_pace(struct bench_worker *w); /* paced latency cases */

/* Producers stop on this (set by the harness timer, or by the last producer). */
static inline bool bench_stopping(const struct bench_worker *w)
{
	return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

/* Producer: may it send another message? */
static inline bool bench_more(struct bench_worker *w)
{
	if (bench_stopping(w) || w->seq > w->c->max_msgs)
		return false;
	if (w->interval)
		bench_pace(w);
	return true;
}

/* Producer: write the header (and the timestamp / trailer) of the next message
 * into buf, which holds c->size bytes. */
static inline void bench_fill(struct bench_worker *w, void *buf)
{
	uint64_t h = (uint64_t)w->id << 48 | w->seq++;
	size_t n = w->c->size;
	if (n < 8) { /* one producer: the low bytes of the sequence */
		memcpy(buf, &h, n);
		return;
	}
	memcpy(buf, &h, 8);
	if (w->timed) {
		int64_t t = bench_now();
		memcpy((char *)buf + 8, &t, 8);
	}
	if (n >= 16 + (w->timed ? 8 : 0))
		memcpy((char *)buf + n - 8, &h, 8);
}

void bench_hist_add(struct bench_hist *h, uint64_t ns);

/* Consumer: account for one received message. */
static inline void bench_got(struct bench_worker *w, const void *buf, size_t len)
{
	uint64_t h, t;
	size_t n = w->c->size;
	w->msgs++;
	if (len != n) {
		w->errors++;
		return;
	}
	if (n < 8) {
		h = ++w->last[0];
		if (memcmp(buf, &h, n) != 0)
			w->errors++;
		if (__builtin_expect(bench_stopping(w), 0))
			w->t_end = bench_now();
		return;
	}
	memcpy(&h, buf, 8);
	unsigned p = (unsigned)(h >> 48);
	uint64_t s = h & ((1ull << 48) - 1);
	if (p >= (unsigned)w->c->np || s <= w->last[p]) {
		w->errors++;
		return;
	}
	w->last[p] = s;
	if (n >= 16 + (w->timed ? 8 : 0)) {
		memcpy(&t, (const char *)buf + n - 8, 8);
		if (t != h)
			w->errors++;
	}
	if (w->timed) {
		int64_t now = bench_now(), sent;
		memcpy(&sent, (const char *)buf + 8, 8);
		bench_hist_add(&w->sh->hist[w->id], now > sent ? (uint64_t)(now - sent) : 0);
		if (bench_stopping(w))
			w->t_end = now;
	} else if (__builtin_expect(bench_stopping(w), 0)) {
		w->t_end = bench_now();
	}
}

/* Consumer of a system without end-of-data: add the local count to the shared
 * total and say whether every message that producers sent has arrived (only
 * meaningful once every producer is done). */
bool bench_all_received(struct bench_worker *w);

/* Spin politely: a few pauses, then give the core away (2-core machines). */
static inline void bench_backoff(unsigned *spins)
{
	if (++*spins < 64) {
		bench_pause();
	} else {
		*spins = 0;
		sched_yield();
	}
}

/* ------------------------------------------------------------ the peers -- */

enum {
	PF_MAIN = 1,      /* part of --quick */
	PF_THREADS = 2,   /* producers and consumers are threads of one process */
	PF_MAX_1X1 = 4,   /* one producer, one consumer only */
	PF_REF = 8,       /* a reference row (physical limit), not a competitor */
	PF_SHMQ = 16,     /* a shmq mode */
	PF_NOEOF = 32,    /* no end-of-data: consumers finish on counts (info only) */
	PF_TPUT_ONLY = 64,/* no latency case */
	PF_ZC = 128,      /* zero-copy: touches only the header and trailer in place */
	PF_JOIN = 256,    /* runs the JoinableQueue case (CASE_JOIN) */
	PF_CONN = 512,    /* runs the Pipe cases (CASE_CONN, CASE_CONN_PP) */
	PF_ONLY = 1024,   /* runs only the cases its PF_JOIN / PF_CONN name */
};

/* What a peer's run() hook measured. */
struct bench_run {
	uint64_t msgs, errors; /* ping-pong: msgs = round trips */
	int64_t wall_ns;
	struct bench_hist hist; /* CASE_CONN_PP: every round trip */
	char note[120];
};

struct bench_result; /* harness */

struct bench_peer {
	const char *name;  /* command line (-S name) */
	const char *label; /* table */
	unsigned flags;
	/* Why the peer cannot run this case (a line for the output), or NULL. */
	const char *(*skip)(const struct bench_case *c);
	/* Throughput / latency: parent before fork; parent after fork (drop its
	 * references); in the workers; parent after every worker has exited. */
	int (*setup)(const struct bench_case *c, void **ctx);
	void (*parent)(void *ctx);
	int (*producer)(void *ctx, struct bench_worker *w);
	int (*consumer)(void *ctx, struct bench_worker *w);
	void (*teardown)(void *ctx);
	/* Instead of the above: measure the whole case itself (external program,
	 * single-process reference). Returns 0 or -errno. */
	int (*run)(const struct bench_case *c, struct bench_run *out);
	/* Blocking ping-pong of c->size bytes: ping() does round trips until
	 * bench_stopping() and sends a last message that ends pong(); it stores
	 * the count and time in sh->pp_rounds/pp_ns. */
	int (*pp_setup)(const struct bench_case *c, void **ctx);
	void (*pp_parent)(void *ctx);
	int (*ping)(void *ctx, struct bench_worker *w);
	int (*pong)(void *ctx, struct bench_worker *w);
	void (*pp_teardown)(void *ctx);
	/* What the peer models in this case (a line under the table), or NULL. */
	const char *(*models)(const struct bench_case *c);
};

extern const struct bench_peer *const bench_peers[]; /* bench/peers.c, NULL-terminated */
struct bench_missing {
	const char *peer, *package;
};
extern const struct bench_missing bench_missing[]; /* compiled out: package missing */
extern const char *bench_mp_script;                 /* bench/mp_peers.py */

/* Helpers: a 64-byte aligned buffer of size bytes (never freed: workers exit);
 * full reads and writes on a byte stream (0 at EOF, -errno). */
void *bench_buf(size_t size);
ssize_t bench_write_full(int fd, const void *buf, size_t len);
ssize_t bench_read_full(int fd, void *buf, size_t len);
/* A Pipe's framing on a byte stream: a 4-byte length, then the payload; one
 * writev(2) per message (more only for the rest of a partial write); the
 * receiver reads the length, then the payload, each fully. send: 0 or
 * -errno; recv: the length, -EPIPE at end of stream, -EMSGSIZE, -EPROTO
 * (the stream ended inside a message), -errno. */
int bench_send_framed(int fd, const void *buf, size_t len);
ssize_t bench_recv_framed(int fd, void *buf, size_t cap);
/* Messages a bounded peer buffers at most: about 256 KiB, 16 .. 4096. */
size_t bench_depth(size_t size);
/* The Python drivers' one-line JSON (bench/peers/mp.c): a number by key (-1
 * if absent), and "hist":[[bucket,count],...] plus "max_ns" added into h. */
double bench_json_num(const char *s, const char *key);
void bench_json_hist(const char *s, struct bench_hist *h);
void bench_pin(int cpu); /* best effort */

/* Helpers for ping-pong implementations. */
static inline void bench_pp_record(struct bench_worker *w, uint64_t rounds, int64_t ns)
{
	w->sh->pp_rounds = rounds;
	w->sh->pp_ns = ns;
	w->sh->prod[w->id].errors = w->errors;
}

/* The ping side of every ping-pong: after the start barrier, round trips of
 * c->size bytes until the harness stops it, timed the same way for every
 * system and recorded with bench_pp_record (CASE_CONN_PP: every round trip
 * into sh->hist[0] too). round(ctx, buf, size) sends buf and waits for the
 * echo into buf: 0, or -errno to stop. An echo that differs from what was
 * sent counts as an integrity error. Returns 0 or the first error; the caller
 * then tells the pong side to end. */
int bench_ping_rounds(struct bench_worker *w, void *ctx,
		      int (*round)(void *ctx, void *buf, size_t size));

/* Ping loop helper: true while the initiator should do another round. */
static inline bool bench_pp_more(struct bench_worker *w, uint64_t i)
{
	return (i & 15) || !bench_stopping(w);
}

#endif
