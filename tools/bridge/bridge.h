/* shmq-bridge: a local shmq queue carried over Redis Streams (DESIGN.md,
 * "Scale-out bridge"; `shmq bridge` runs this program).
 *
 *   shmq-bridge out NAME redis://HOST[:PORT]/STREAM [--batch N] [--maxlen N]
 *   shmq-bridge in  redis://HOST[:PORT]/STREAM NAME --group G [--producers N]
 *                   [--dedup] [--batch N] [--claim-idle MS] [--join-with Q]...
 *
 * Two processes per bridge. The keeper holds the role on the local queue (a
 * consumer for `out`, a producer for `in`) and moves messages between the
 * queue and a window: a byte ring in a named shmq heap, /shmqbr.<hash of the
 * arguments>. The bridge talks to Redis and moves entries between the window
 * and the stream. The keeper does no I/O but shared memory; the bridge does
 * all the network work, so it is the one that may crash, hang or be killed.
 * Killed, it is restarted with the same arguments, finds the heap, takes the
 * lock a dead bridge held, and adopts the window and the live keeper: the
 * local role never ended, nothing in the window was lost.
 *
 * The window is single-producer single-consumer, each cursor written by one
 * side only, so a kill at any instruction leaves it consistent:
 *   out: keeper gets from the queue, appends records, publishes tail;
 *        bridge sends records to Redis and advances head only once Redis
 *        has them. A restarted bridge resends from head; the add script
 *        (below) drops what Redis already holds, by sequence.
 *   in:  bridge reads entries (XREADGROUP), appends records, publishes tail;
 *        keeper puts records into the queue, advances head. The bridge
 *        XACKs an entry (and trims it away) once head has passed it: the
 *        entry is in the local queue. A restarted bridge re-reads its
 *        pending entries; with --dedup the producer table in the window
 *        (updated through an intent record, see in_entry in in.c) drops
 *        those already appended.
 * Files: window.c (the window, doorbells, the keeper's process), redis.c
 * (connection, scripts), keeper.c, out.c, in.c, main.c (arguments, start).
 * tests/model/bridge.pml is the Spin model of this protocol.
 *
 * Stream entries: p (out bridge id, 16 hex), e (epoch: how many bridges have
 * adopted that window), s (sequence of the first message, from 1), n (message
 * count), and d (the messages packed: u32 little-endian length, bytes) or
 * end=1 (the end marker, which takes a sequence of its own). Redis keeps, in
 * the hash STREAM:seq, the last sequence appended per out bridge; the add
 * script appends an entry only if it continues that sequence, atomically
 * with the check, so a resend never duplicates and never reorders.
 *
 * JoinableQueue across machines: an out bridge whose queue is joinable does
 * not mark what it sent done; the in side, whenever its queue (and every
 * --join-with queue) is fully joined, adds to STREAM:done its running count
 * of messages delivered per out bridge, and the out side marks that many
 * done. A coordinator's shmq_join on the origin queue so waits for the far
 * side's task_done. Exact with --dedup (a replayed duplicate would count
 * twice).
 */
#ifndef SHMQ_BRIDGE_H
#define SHMQ_BRIDGE_H

#include <shmq.h>

#include <hiredis/hiredis.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ limits ---- */

#define WIN_MAGIC 0x77696e71686d7373ull /* "sshmqniw" */
#define WIN_VERSION 1u
#define WIN_MIN_CAP (4u << 20)     /* window ring bytes, at least */
#define ENTRY_BYTES (256u << 10)   /* packed bytes per stream entry, at most
				      (one message may exceed it alone) */
#define BATCH_DEFAULT 64u          /* messages per entry */
#define BATCH_MAX 1024u
#define PIPE_ENTRIES 16u           /* entries per add-script call */
#define PIPE_CALLS 4u              /* add-script calls in flight */
#define READ_COUNT 16u             /* entries per XREADGROUP */
#define ACK_MAX 256u               /* ids per ack-script call */
#define MAX_PRODUCERS 256u         /* out bridges an in bridge tells apart */
#define MAX_EXTRA 8u               /* out-of-order ranges kept per producer */
#define MAX_JOIN_WITH 4u
#define QNAME_MAX 256u
#define POLL_NS 50000000LL          /* a wait rechecks state this often */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define KEEPER_START_NS 5000000000LL
#define KEEPER_BURST 64u            /* messages per get of an out keeper */
#define KEEPER_SMALL 4096u          /* bytes of each of its burst buffers */
#define KEEPER_CHECK_NS 50000000LL  /* a bridge looks at its keeper this often */

/* ------------------------------------------------------------- window ---- */

enum { REC_MSG = 1, REC_END = 2, REC_WRAP = 3 };
/* A record in the ring: this header, then len bytes, padded to 16. Records
 * never straddle the ring's end: a WRAP record fills the rest of it. */
struct rec {
	uint32_t len;  /* data bytes */
	uint16_t kind; /* REC_* */
	uint16_t prod; /* in: index in win.prod; out: 0 */
	uint64_t seq;  /* out: the keeper's sequence; in: the message's */
};
#define REC_ALIGN 16u

/* Window state bits (win.state). */
enum {
	W_READY = 1,    /* keeper: has the queue open with its role */
	W_FAILED = 2,   /* keeper: could not (keeper_err says why) */
	W_EOD = 4,      /* keeper: out: got end of data and wrote the END record;
			   in: delivered the last END and dropped its role */
	W_FINISH = 8,   /* bridge: nothing left to do; the keeper exits */
	W_STOP = 16,    /* bridge: SIGTERM; out keeper gets no more */
};

/* What an in bridge knows of one out bridge. Written by the bridge only. */
struct prod {
	uint64_t id;               /* 0: free */
	uint64_t last;             /* every sequence 1..last is appended */
	uint64_t extra[MAX_EXTRA][2]; /* appended ranges above last+1 (claimed
				      entries can come out of order) */
	uint32_t nextra;
	uint32_t ended;            /* its END is appended */
};

/* The in-flight window, in the array "window" of the heap. Who writes each
 * field, and how, is said on it; readers use acquire loads. */
struct win {
	uint64_t magic;    /* creating bridge, release-stored last */
	uint32_t version, dir; /* creator: WIN_VERSION, 'o' or 'i' */
	uint64_t cap;      /* creator: ring bytes, a multiple of REC_ALIGN */
	uint64_t id;       /* creator: random; an out bridge's id in the stream,
			      an in bridge's consumer name */
	char queue[QNAME_MAX]; /* creator: the local queue */
	char join_with[MAX_JOIN_WITH][QNAME_MAX]; /* creator (in) */
	uint32_t njoin;    /* creator */
	uint32_t want_ends; /* creator (in): --producers */
	_Atomic uint64_t epoch;  /* adopting bridge, under the lock */
	_Atomic uint64_t head;   /* out: bridge; in: keeper (release) */
	_Atomic uint64_t tail;   /* out: keeper; in: bridge (release) */
	_Atomic uint32_t state;  /* W_*: set with fetch_or by the side named */
	_Atomic int32_t keeper_err;   /* keeper: -errno of a failed start */
	_Atomic int32_t keeper_pid;   /* keeper: its pid, before W_READY */
	_Atomic uint64_t keeper_start; /* keeper: its start time (/proc) */
	_Atomic uint64_t msgs;        /* out keeper: messages got */
	_Atomic uint64_t acked_seq;   /* out bridge: Redis holds 1..acked_seq;
					 stored before head passes them */
	_Atomic uint64_t done_credit; /* out bridge: done reported from afar */
	_Atomic uint64_t done_applied; /* out keeper: task_done calls made */
	_Atomic uint64_t report_gen;  /* in keeper: bumped after done[] */
	_Atomic uint64_t redis_client; /* bridge: its connection's CLIENT ID */
	_Atomic uint32_t ends_seen;   /* in keeper: END records delivered */
	uint32_t nprod;               /* in bridge: used prod[] entries */
	/* in bridge: a prod[] change in flight. Written before the records it
	 * covers are published (tail); applied after. A restarted bridge applies
	 * it if tail reached intent_tail, else drops it. */
	_Atomic uint64_t intent_tail;
	uint32_t intent_idx;
	struct prod intent;
	struct prod prod[MAX_PRODUCERS];            /* in bridge */
	_Atomic uint64_t delivered[MAX_PRODUCERS];  /* in keeper: messages put */
	_Atomic uint64_t done[MAX_PRODUCERS];       /* in keeper: of those, done */
	unsigned char ring[];
};

/* Handles on the window's heap. */
struct window {
	shmq_heap *heap;
	shmq_array *arr;
	shmq_lock *lock;      /* held by the live bridge */
	shmq_sem *to_bridge;  /* doorbells (bounded at 1): a wait rechecks */
	shmq_sem *to_keeper;
	struct win *w;
	char heap_name[64];
};

/* --------------------------------------------------------- the command -- */

struct opts {
	char dir; /* 'o' out, 'i' in, 'k' keeper */
	char queue[QNAME_MAX];
	char host[256];
	int port;
	char stream[256];
	char group[256];
	unsigned batch;
	uint64_t maxlen;
	uint32_t producers;
	bool dedup;
	int64_t claim_idle_ms;
	char join_with[MAX_JOIN_WITH][QNAME_MAX];
	uint32_t njoin;
};

/* ------------------------------------------------------------- Redis -- */

struct redis {
	redisContext *c;
	const struct opts *o;
	char seq_key[300], done_key[300];
	char add_sha[41], ack_sha[41];
};

/* ============================================================ bridge ==== */

struct bridge {
	struct opts *o;
	struct window win;
	struct redis rd;
	char self_path[PATH_MAX];
	size_t local_msg_max; /* in: the local queue's */
	bool joinable;
	int64_t next_keeper_check;
};

/* ------------------------------------------------------------ shared -- */

/* main.c: stop_requested is set by SIGTERM and SIGINT; prog names us in
   messages (say: "prog: ...\n" on stderr). */
extern volatile sig_atomic_t stop_requested;
extern const char *prog;
void say(const char *fmt, ...);
int64_t now_ns(void);
void sleep_ms(int ms);

/* window.c: the window, its ring and doorbells, the keeper's process. */
uint64_t proc_start(pid_t pid);
bool keeper_alive(struct win *w);
void bell_ring(shmq_sem *s);
void bell_wait(shmq_sem *s, int64_t timeout_ns);
uint64_t rec_size(uint64_t len);
bool win_fits(struct win *w, uint64_t head, uint64_t tail, uint64_t len);
void win_put(struct win *w, uint64_t *tail, uint16_t kind, uint16_t prod, uint64_t seq,
	     const void *data, uint32_t len);
const struct rec *win_get(struct win *w, uint64_t pos, uint64_t tail, uint64_t *next);
void window_close(struct window *win);
int window_attach(struct window *win);
int window_adopt(struct bridge *b, size_t msg_max);
void window_finish(struct bridge *b);
int keeper_spawn(struct bridge *b);
int keeper_check(struct bridge *b);

/* redis.c: the connection, the scripts, reply parsing. */
extern const char add_lua[], ack_lua[];
void redis_drop(struct redis *rd);
bool redis_ok(struct redis *rd);
redisReply *cmd(struct redis *rd, int argc, const char **argv, const size_t *lens);
int load_script(struct redis *rd, const char *lua, char sha[41]);
int redis_connect(struct redis *rd);
int redis_reconnect(struct redis *rd);
bool reply_is_int(const redisReply *r, long long *v);
void hex64(uint64_t v, char out[17]);
bool parse_hex64(const char *s, size_t len, uint64_t *out);
bool parse_u64(const char *s, size_t len, uint64_t *out);
int take_over_connection(struct bridge *b);
int bridge_reconnect(struct bridge *b);

/* keeper.c, out.c, in.c: the three programs (each returns an exit status). */
int keeper_main(const char *heap_name);
int bridge_out(struct bridge *b);
int bridge_in(struct bridge *b);

#endif
