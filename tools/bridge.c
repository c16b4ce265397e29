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
 *        XACKs an entry (and trims it away) once head has passed it: the entry is in
 *        the local queue. A restarted bridge re-reads its pending entries;
 *        with --dedup the producer table in the window (updated with an
 *        intent record, see in_commit) drops those already appended.
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

static volatile sig_atomic_t stop_requested;
static const char *prog = "shmq-bridge";

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) && errno == EINTR && !stop_requested)
		;
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* ----------------------------------------------------- process liveness -- */

/* A process's start time (field 22 of /proc/PID/stat), 0 if it is gone.
 * With the pid it names one process: a pid reused later has another. */
static uint64_t proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the name may hold spaces and ')' */
	if (!p)
		return 0;
	if (p[1] == ' ' && p[2] == 'Z') /* a zombie is dead */
		return 0;
	unsigned long long start = 0;
	int field = 2;
	for (char *s = p + 1; *s && field < 22; s++)
		if (*s == ' ' && ++field == 22)
			start = strtoull(s + 1, NULL, 10);
	return start;
}

static bool keeper_alive(struct win *w)
{
	pid_t pid = atomic_load(&w->keeper_pid);
	return pid > 0 && proc_start(pid) == atomic_load(&w->keeper_start);
}

/* ------------------------------------------------------------ doorbells -- */

static void bell_ring(shmq_sem *s)
{
	shmq_sem_release(s, 1); /* -EOVERFLOW: rung already */
}

static void bell_wait(shmq_sem *s, int64_t timeout_ns)
{
	shmq_sem_acquire(s, timeout_ns);
}

/* ---------------------------------------------------------- ring access -- */

static uint64_t rec_size(uint64_t len)
{
	return (sizeof(struct rec) + len + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

/* Room for a record of len bytes at tail, counting the WRAP it may need. */
static bool win_fits(struct win *w, uint64_t head, uint64_t tail, uint64_t len)
{
	uint64_t need = rec_size(len), off = tail % w->cap;
	if (off + need > w->cap)
		need += w->cap - off;
	return tail - head + need <= w->cap;
}

/* Write a record at *tail (caller checked win_fits), advancing *tail; the
 * caller publishes it with a release store of w->tail. */
static void win_put(struct win *w, uint64_t *tail, uint16_t kind, uint16_t prod, uint64_t seq,
		    const void *data, uint32_t len)
{
	uint64_t off = *tail % w->cap, need = rec_size(len);
	if (off + need > w->cap) {
		struct rec wrap = { (uint32_t)(w->cap - off - sizeof(struct rec)), REC_WRAP, 0, 0 };
		memcpy(w->ring + off, &wrap, sizeof(wrap));
		*tail += w->cap - off;
		off = 0;
	}
	struct rec r = { len, kind, prod, seq };
	memcpy(w->ring + off, &r, sizeof(r));
	if (len)
		memcpy(w->ring + off + sizeof(r), data, len);
	*tail += need;
}

/* Read the record at *pos (< tail), skipping a WRAP. Returns a pointer to its
 * header in the ring and sets *next; NULL if the bytes are inconsistent (a
 * corrupted window: the caller stops). */
static const struct rec *win_get(struct win *w, uint64_t pos, uint64_t tail, uint64_t *next)
{
	for (int i = 0; i < 2; i++) {
		uint64_t off = pos % w->cap;
		if (tail - pos < sizeof(struct rec) || off + sizeof(struct rec) > w->cap)
			return NULL;
		const struct rec *r = (const struct rec *)(w->ring + off);
		if (r->kind == REC_WRAP) {
			if (off == 0 || r->len != w->cap - off - sizeof(struct rec))
				return NULL;
			pos += w->cap - off;
			continue;
		}
		if ((r->kind != REC_MSG && r->kind != REC_END) || off + rec_size(r->len) > w->cap ||
		    rec_size(r->len) > tail - pos)
			return NULL;
		*next = pos + rec_size(r->len);
		return r;
	}
	return NULL;
}

/* ------------------------------------------------------ window life -- */

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* a separator between fields */
}

static void window_name(const struct opts *o, char *out, size_t cap)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", o->port);
	uint64_t h = 0xcbf29ce484222325ull;
	h = fnv1a(h, o->dir == 'o' ? "out" : "in");
	h = fnv1a(h, o->queue);
	h = fnv1a(h, o->host);
	h = fnv1a(h, port);
	h = fnv1a(h, o->stream);
	h = fnv1a(h, o->dir == 'i' ? o->group : "");
	snprintf(out, cap, "/shmqbr.%016" PRIx64, h);
}

static void window_close(struct window *win)
{
	if (win->to_keeper)
		shmq_sem_close(win->to_keeper);
	if (win->to_bridge)
		shmq_sem_close(win->to_bridge);
	if (win->lock)
		shmq_lock_close(win->lock);
	if (win->arr)
		shmq_array_close(win->arr);
	if (win->heap)
		shmq_heap_close(win->heap);
	memset(win, 0, sizeof(*win));
}

/* Open the objects of an existing heap; the creator may still be making them,
 * so -ENOENT is retried for a second, and so is a header not yet written. */
static int window_attach(struct window *win)
{
	int r = 0;
	for (int tries = 0; tries < 100; tries++) {
		if (!win->arr && (r = shmq_array_open(win->heap, "window", &win->arr)) < 0)
			goto retry;
		if (!win->to_bridge && (r = shmq_sem_open(win->heap, "to_bridge", &win->to_bridge)) < 0)
			goto retry;
		if (!win->to_keeper && (r = shmq_sem_open(win->heap, "to_keeper", &win->to_keeper)) < 0)
			goto retry;
		if (!win->lock && (r = shmq_lock_open(win->heap, "bridge", &win->lock)) < 0)
			goto retry;
		win->w = shmq_array_data(win->arr);
		if (shmq_array_size(win->arr) < sizeof(struct win))
			return -EPROTO;
		for (; tries < 100; tries++) {
			if (atomic_load_explicit((_Atomic uint64_t *)&win->w->magic, memory_order_acquire) ==
			    WIN_MAGIC)
				break;
			sleep_ms(10);
		}
		struct win *w = win->w;
		if (w->magic != WIN_MAGIC || w->version != WIN_VERSION || w->cap % REC_ALIGN ||
		    w->cap == 0 || sizeof(struct win) + w->cap > shmq_array_size(win->arr) ||
		    w->nprod > MAX_PRODUCERS || w->njoin > MAX_JOIN_WITH)
			return -EPROTO;
		return 0;
	retry:
		if (r != -ENOENT)
			return r;
		sleep_ms(10);
	}
	return r;
}

/* ------------------------------------------------------------- Redis -- */

struct redis {
	redisContext *c;
	const struct opts *o;
	char seq_key[300], done_key[300];
	char add_sha[41], ack_sha[41];
};

/* Appends one or more entries of one out bridge, in sequence order, only
 * where they continue the sequence Redis holds for it (KEYS[2], a hash:
 * bridge id -> last sequence). ARGV: id, epoch, maxlen, then per entry
 * first, count, end (0/1), data. An entry wholly at or below the last
 * sequence is a resend: skipped. One that leaves a gap is refused with the
 * rest (a call sent by a dead connection may still land after a restarted
 * bridge's resync; the refused call is resent, cut where Redis now is). With
 * maxlen > 0, an entry is added only while the stream is shorter: the full
 * stream pushes back. Returns {status, last}: 1 all taken, 0 stream full,
 * -1 gap; last is the sequence Redis now holds. Atomic: Lua. */
static const char add_lua[] =
	"local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')\n"
	"local maxlen = tonumber(ARGV[3])\n"
	"local status = 1\n"
	"for i = 4, #ARGV, 4 do\n"
	"  local first = tonumber(ARGV[i])\n"
	"  local n = tonumber(ARGV[i + 1])\n"
	"  if first + n - 1 > last then\n"
	"    if first ~= last + 1 then status = -1 break end\n"
	"    if maxlen > 0 and redis.call('XLEN', KEYS[1]) >= maxlen then status = 0 break end\n"
	"    if ARGV[i + 2] == '1' then\n"
	"      redis.call('XADD', KEYS[1], '*', 'p', ARGV[1], 'e', ARGV[2], 's', ARGV[i], 'n', ARGV[i + 1], 'end', '1')\n"
	"    else\n"
	"      redis.call('XADD', KEYS[1], '*', 'p', ARGV[1], 'e', ARGV[2], 's', ARGV[i], 'n', ARGV[i + 1], 'd', ARGV[i + 3])\n"
	"    end\n"
	"    last = first + n - 1\n"
	"  end\n"
	"end\n"
	"redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', last))\n"
	"return {status, string.format('%d', last)}\n";

/* XACK, then drop from the stream what the group is done with (ARGV: group,
 * ids...): every entry below the group's oldest pending one, or, with none
 * pending, up to its last delivered. Atomic, so an entry is never removed
 * unacknowledged, and one acknowledged never lingers to count against
 * --maxlen. XTRIM MINID removes whole nodes of the stream: several times
 * cheaper per entry than XDEL of each id (measured: 7 us an id). The
 * stream serves one consumer group (the queue's far side). */
static const char ack_lua[] =
	"local ids = {}\n"
	"for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end\n"
	"local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))\n"
	"local p = redis.call('XPENDING', KEYS[1], ARGV[1])\n"
	"local minid = p[2]\n"
	"if not minid then\n"
	"  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do\n"
	"    local f = {}\n"
	"    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
	"    if f['name'] == ARGV[1] then\n"
	"      local ms, seq = string.match(f['last-delivered-id'], '^(%d+)-(%d+)$')\n"
	"      if ms then minid = ms .. '-' .. string.format('%d', tonumber(seq) + 1) end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"if minid then redis.call('XTRIM', KEYS[1], 'MINID', minid) end\n"
	"return n\n";

static void redis_drop(struct redis *rd)
{
	if (rd->c)
		redisFree(rd->c);
	rd->c = NULL;
}

static bool redis_ok(struct redis *rd)
{
	return rd->c && !rd->c->err;
}

static redisReply *cmd(struct redis *rd, int argc, const char **argv, const size_t *lens)
{
	if (!redis_ok(rd))
		return NULL;
	redisReply *r = redisCommandArgv(rd->c, argc, argv, lens);
	if (!r && rd->c->err)
		say("redis %s:%d: %s", rd->o->host, rd->o->port, rd->c->errstr);
	return r;
}

static int load_script(struct redis *rd, const char *lua, char sha[41])
{
	const char *argv[] = { "SCRIPT", "LOAD", lua };
	redisReply *r = cmd(rd, 3, argv, NULL);
	if (!r)
		return -EIO;
	int rc = -EPROTO;
	if (r->type == REDIS_REPLY_STRING && r->len == 40) {
		memcpy(sha, r->str, 41);
		rc = 0;
	} else if (r->type == REDIS_REPLY_ERROR) {
		say("redis: SCRIPT LOAD: %s", r->str);
	}
	freeReplyObject(r);
	return rc;
}

/* Connect and prepare (scripts, the group). Returns 0, -EIO (no Redis: a
 * caller at start exits 69), -EPROTO (Redis refused a command). */
static int redis_connect(struct redis *rd)
{
	redis_drop(rd);
	struct timeval tv = { 2, 0 };
	rd->c = redisConnectWithTimeout(rd->o->host, rd->o->port, tv);
	if (!rd->c)
		return -ENOMEM;
	if (rd->c->err) {
		say("cannot reach redis at %s:%d: %s", rd->o->host, rd->o->port, rd->c->errstr);
		redis_drop(rd);
		return -EIO;
	}
	/* Not inherited by a keeper we exec: a connection outliving a killed
	 * bridge would still take the answer to its blocked XREADGROUP, into
	 * our consumer's pending list, after the next bridge has read that. */
	fcntl(rd->c->fd, F_SETFD, FD_CLOEXEC);
	struct timeval io = { 10, 0 }; /* longer than any BLOCK we send */
	redisSetTimeout(rd->c, io);
	int r;
	if ((r = load_script(rd, add_lua, rd->add_sha)) < 0 ||
	    (r = load_script(rd, ack_lua, rd->ack_sha)) < 0) {
		redis_drop(rd);
		return r == -EPROTO ? r : -EIO;
	}
	if (rd->o->dir == 'i') {
		const char *argv[] = { "XGROUP", "CREATE", rd->o->stream, rd->o->group, "0", "MKSTREAM" };
		redisReply *rep = cmd(rd, 6, argv, NULL);
		if (!rep) {
			redis_drop(rd);
			return -EIO;
		}
		bool ok = rep->type != REDIS_REPLY_ERROR || !strncmp(rep->str, "BUSYGROUP", 9);
		if (!ok)
			say("redis: XGROUP CREATE %s %s: %s", rd->o->stream, rd->o->group, rep->str);
		freeReplyObject(rep);
		if (!ok) {
			redis_drop(rd);
			return -EPROTO;
		}
	}
	return 0;
}

/* Reconnect after a lost connection, backing off, until it works or a stop
 * is asked for. Returns 0 connected; -ECANCELED stopping; -EPROTO. */
static int redis_reconnect(struct redis *rd)
{
	int backoff = BACKOFF_MIN_MS;
	for (;;) {
		if (stop_requested)
			return -ECANCELED;
		int r = redis_connect(rd);
		if (r == 0) {
			say("reconnected to redis at %s:%d", rd->o->host, rd->o->port);
			return 0;
		}
		if (r == -EPROTO)
			return r;
		sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

static bool reply_is_int(const redisReply *r, long long *v)
{
	if (r->type == REDIS_REPLY_INTEGER) {
		*v = r->integer;
		return true;
	}
	if (r->type == REDIS_REPLY_STRING) {
		char *end;
		errno = 0;
		*v = strtoll(r->str, &end, 10);
		return !errno && end != r->str && !*end;
	}
	return false;
}

static void hex64(uint64_t v, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, v);
}

static bool parse_hex64(const char *s, size_t len, uint64_t *out)
{
	if (len != 16)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		int c = tolower((unsigned char)s[i]);
		if (!isxdigit(c))
			return false;
		v = v << 4 | (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
	}
	*out = v;
	return true;
}

static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	if (len == 0 || len > 19)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* ============================================================ keeper ==== */

/* The keeper: `shmq-bridge keeper HEAP`, started (through exec, in a session
 * of its own) by the first bridge of a window. */

struct keeper {
	struct window win;
	shmq_queue *q;
	shmq_queue *join_with[MAX_JOIN_WITH];
	bool joinable;
};

static void keeper_fail(struct win *w, int err)
{
	atomic_store(&w->keeper_err, err);
	atomic_fetch_or(&w->state, W_FAILED);
}

static bool keeper_should_exit(struct keeper *k)
{
	return stop_requested || (atomic_load(&k->win.w->state) & W_FINISH);
}

/* out: mark done what the far side reported done (joinable queues). */
static void keeper_apply_done(struct keeper *k)
{
	struct win *w = k->win.w;
	uint64_t credit = atomic_load(&w->done_credit), applied = atomic_load(&w->done_applied);
	uint64_t got = atomic_load(&w->msgs);
	if (credit > got)
		credit = got; /* duplicates counted twice (no --dedup) */
	for (; applied < credit; applied++)
		if (shmq_task_done(k->q) < 0)
			break;
	atomic_store(&w->done_applied, applied);
}

static int keeper_out(struct keeper *k)
{
	struct win *w = k->win.w;
	size_t msg_max = shmq_msg_max(k->q);
	/* Burst gets into small buffers; a message that does not fit one
	 * (-EMSGSIZE: it stays queued) is got alone into a big one. */
	size_t slot = msg_max < KEEPER_SMALL ? msg_max : KEEPER_SMALL; /* >= 1 */
	if (slot == 0)
		slot = 1;
	char *small = malloc(KEEPER_BURST * slot), *big = malloc(msg_max + 1);
	struct iovec iov[KEEPER_BURST];
	if (!small || !big) {
		free(small);
		free(big);
		return -ENOMEM;
	}
	/* A keeper started after another died resumes the sequence: past every
	 * record in the window and everything Redis holds (the bridge stores
	 * acked_seq before it moves head past those records, so reading head
	 * first sees them one way or the other). */
	int rc = 0;
	uint64_t tail = atomic_load(&w->tail);
	uint64_t pos = atomic_load_explicit(&w->head, memory_order_acquire), next;
	uint64_t seq = atomic_load(&w->acked_seq);
	for (; pos < tail; pos = next) {
		const struct rec *r = win_get(w, pos, tail, &next);
		if (!r)
			break;
		if (r->seq > seq)
			seq = r->seq;
	}
	while (!keeper_should_exit(k)) {
		if (k->joinable)
			keeper_apply_done(k);
		uint32_t st = atomic_load(&w->state);
		if (st & (W_EOD | W_STOP)) {
			bell_wait(k->win.to_keeper, POLL_NS);
			continue;
		}
		uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
		/* Room for the records, one WRAP (less than a record) and the
		 * END; a message that fits no slot comes alone, so room for two
		 * of the largest (it and its WRAP) and the END is always kept. */
		uint64_t room = w->cap - (tail - head), reserve = rec_size(msg_max) + rec_size(0);
		if (room < reserve + rec_size(msg_max)) {
			bell_wait(k->win.to_keeper, POLL_NS);
			continue;
		}
		uint64_t n = (room - reserve) / rec_size(slot); /* >= 1 */
		if (n > KEEPER_BURST)
			n = KEEPER_BURST;
		for (unsigned i = 0; i < n; i++)
			iov[i] = (struct iovec){ small + i * slot, slot };
		int got = shmq_get_burst(k->q, iov, (unsigned)n, POLL_NS);
		if (got == -EMSGSIZE) {
			ssize_t len = shmq_get(k->q, big, msg_max, 0);
			if (len < 0)
				continue;
			iov[0] = (struct iovec){ big, (size_t)len };
			got = 1;
		}
		if (got == -ETIMEDOUT || got == -EAGAIN)
			continue;
		if (got == -EPIPE) {
			if (!win_fits(w, head, tail, 0)) {
				bell_wait(k->win.to_keeper, POLL_NS);
				continue;
			}
			win_put(w, &tail, REC_END, 0, ++seq, NULL, 0);
			atomic_store_explicit(&w->tail, tail, memory_order_release);
			atomic_fetch_or(&w->state, W_EOD);
			bell_ring(k->win.to_bridge);
			continue;
		}
		if (got < 0) {
			say("keeper: get from %s: %s", w->queue, strerror(-got));
			if (got == -EPROTO)
				continue; /* that message was dropped */
			rc = got;
			break;
		}
		for (int i = 0; i < got; i++)
			win_put(w, &tail, REC_MSG, 0, ++seq, iov[i].iov_base, (uint32_t)iov[i].iov_len);
		atomic_fetch_add(&w->msgs, (uint64_t)got);
		atomic_store_explicit(&w->tail, tail, memory_order_release);
		bell_ring(k->win.to_bridge);
	}
	free(small);
	free(big);
	return rc;
}

/* in: everything delivered is done, here and in every --join-with queue. */
static bool keeper_quiescent(struct keeper *k)
{
	int r = shmq_join(k->q, 0);
	if (r != 0 && r != -EOWNERDEAD)
		return false;
	for (uint32_t i = 0; i < k->win.w->njoin; i++) {
		r = shmq_join(k->join_with[i], 0);
		if (r != 0 && r != -EOWNERDEAD && r != -EINVAL)
			return false;
	}
	return true;
}

/* in: publish the done counts (the bridge sends them). */
static void keeper_report(struct keeper *k)
{
	struct win *w = k->win.w;
	for (uint32_t i = 0; i < MAX_PRODUCERS; i++)
		atomic_store(&w->done[i], atomic_load(&w->delivered[i]));
	atomic_fetch_add_explicit(&w->report_gen, 1, memory_order_release);
	bell_ring(k->win.to_bridge);
}

static int keeper_in(struct keeper *k)
{
	struct win *w = k->win.w;
	struct iovec iov[64];
	uint16_t prods[64];
	uint64_t next_pos[64];
	bool unreported = false, warned_pipe = false;
	while (!keeper_should_exit(k)) {
		uint64_t head = atomic_load(&w->head);
		uint64_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
		if (atomic_load(&w->state) & W_EOD) {
			bell_wait(k->win.to_keeper, POLL_NS);
			continue;
		}
		if (head == tail) {
			bool ended = w->want_ends && atomic_load(&w->ends_seen) >= w->want_ends;
			if (k->joinable && (unreported || ended)) {
				if (keeper_quiescent(k)) {
					keeper_report(k);
					unreported = false;
				} else {
					/* Poll: a task_done rings no bell of ours. */
					bell_wait(k->win.to_keeper, POLL_NS / 5);
					continue;
				}
			}
			if (ended) {
				shmq_queue_shutdown(k->q, SHMQ_WR);
				atomic_fetch_or(&w->state, W_EOD);
				bell_ring(k->win.to_bridge);
				continue;
			}
			bell_wait(k->win.to_keeper, POLL_NS);
			continue;
		}
		/* Gather up to 64 messages, stopping after an END. */
		unsigned n = 0;
		uint64_t pos = head, next;
		bool end = false;
		while (n < 64 && pos < tail) {
			const struct rec *r = win_get(w, pos, tail, &next);
			if (!r) {
				say("keeper: the window of %s is corrupted", w->queue);
				return -EPROTO;
			}
			if (r->kind == REC_END) {
				if (n == 0) {
					pos = next;
					end = true;
				}
				break;
			}
			iov[n] = (struct iovec){ (void *)(r + 1), r->len };
			prods[n] = r->prod < MAX_PRODUCERS ? r->prod : 0;
			next_pos[n++] = next;
			pos = next;
		}
		if (end) {
			atomic_fetch_add(&w->ends_seen, 1);
			atomic_store_explicit(&w->head, pos, memory_order_release);
			bell_ring(k->win.to_bridge);
			continue;
		}
		int put = shmq_put_burst(k->q, iov, n, POLL_NS);
		if (put == -ETIMEDOUT || put == -EAGAIN)
			continue;
		if (put == -EPIPE) { /* no consumer (yet, or any more): hold on */
			if (!warned_pipe)
				say("keeper: %s has no consumer; holding %u message(s)", w->queue, n);
			warned_pipe = true;
			bell_wait(k->win.to_keeper, POLL_NS);
			continue;
		}
		if (put < 0) {
			say("keeper: put into %s: %s", w->queue, strerror(-put));
			return put;
		}
		warned_pipe = false;
		for (int i = 0; i < put; i++)
			atomic_fetch_add(&w->delivered[prods[i]], 1);
		unreported = true;
		atomic_store_explicit(&w->head, next_pos[put - 1], memory_order_release);
		bell_ring(k->win.to_bridge);
	}
	return 0;
}

static int keeper_main(const char *heap_name)
{
	prog = "shmq-bridge keeper";
	struct keeper k = { 0 };
	int r = shmq_heap_open(heap_name, 0, &k.win.heap);
	if (r < 0) {
		say("cannot open %s: %s", heap_name, strerror(-r));
		return 1;
	}
	if ((r = window_attach(&k.win)) < 0) {
		say("cannot attach %s: %s", heap_name, strerror(-r));
		return 1;
	}
	struct win *w = k.win.w;
	char qname[QNAME_MAX];
	memcpy(qname, w->queue, QNAME_MAX);
	qname[QNAME_MAX - 1] = 0;
	r = shmq_queue_open(qname, w->dir == 'o' ? SHMQ_RD : SHMQ_WR, &k.q);
	for (uint32_t i = 0; r == 0 && i < w->njoin; i++) {
		char jn[QNAME_MAX];
		memcpy(jn, w->join_with[i], QNAME_MAX);
		jn[QNAME_MAX - 1] = 0;
		r = shmq_queue_open(jn, 0, &k.join_with[i]);
	}
	if (r < 0) {
		keeper_fail(w, r);
		return 1;
	}
	struct shmq_stat st;
	k.joinable = shmq_queue_stat(k.q, &st) == 0 && (st.flags & SHMQ_JOINABLE);
	atomic_store(&w->keeper_start, proc_start(getpid()));
	atomic_store(&w->keeper_pid, (int32_t)getpid());
	atomic_fetch_or(&w->state, W_READY);
	bell_ring(k.win.to_bridge);
	r = w->dir == 'o' ? keeper_out(&k) : keeper_in(&k);
	/* Our roles end with the handle: out, this consumer is gone; in, this
	 * producer (its end of data). */
	shmq_queue_close(k.q);
	for (uint32_t i = 0; i < w->njoin; i++)
		if (k.join_with[i])
			shmq_queue_close(k.join_with[i]);
	if (r < 0)
		keeper_fail(w, r);
	bell_ring(k.win.to_bridge);
	window_close(&k.win);
	return r < 0 ? 1 : 0;
}

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

/* Start a keeper for the window: fork, a session of its own, exec (so it
 * holds nothing of ours: no Redis socket, no heap handle). Waits for it to
 * report. Returns 0; -errno. */
static int keeper_spawn(struct bridge *b)
{
	struct win *w = b->win.w;
	atomic_fetch_and(&w->state, ~(uint32_t)(W_READY | W_FAILED));
	atomic_store(&w->keeper_err, 0);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setsid();
		pid_t k = fork(); /* not our child: nobody has to reap it */
		if (k == 0) {
			/* Nothing of ours but stdio: no Redis socket (see
			 * redis_connect), no heap fd. */
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
			execl(b->self_path, "shmq-bridge", "keeper", b->win.heap_name, (char *)NULL);
			_exit(127);
		}
		_exit(k < 0 ? 1 : 0);
	}
	int status;
	waitpid(pid, &status, 0);
	int64_t deadline = now_ns() + KEEPER_START_NS;
	while (now_ns() < deadline) {
		uint32_t st = atomic_load(&w->state);
		if (st & W_FAILED) {
			int e = atomic_load(&w->keeper_err);
			return e < 0 ? e : -EIO;
		}
		if (st & W_READY)
			return 0;
		bell_wait(b->win.to_bridge, POLL_NS / 5);
	}
	return -ETIMEDOUT;
}

static int keeper_check(struct bridge *b)
{
	struct win *w = b->win.w;
	int64_t now = now_ns();
	if (now < b->next_keeper_check)
		return 0;
	b->next_keeper_check = now + KEEPER_CHECK_NS;
	if (keeper_alive(w))
		return 0;
	if (atomic_load(&w->state) & W_FINISH)
		return 0;
	say("the keeper of %s is gone; starting another", w->queue);
	int r = keeper_spawn(b);
	if (r < 0)
		say("cannot start a keeper for %s: %s", w->queue, strerror(-r));
	return r;
}

static uint64_t window_cap(size_t msg_max)
{
	uint64_t cap = 4 * rec_size(msg_max) + 2 * rec_size(ENTRY_BYTES) * 4;
	if (cap < WIN_MIN_CAP)
		cap = WIN_MIN_CAP;
	return (cap + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

/* Create the heap and its window, holding the lock. */
static int window_create(struct bridge *b, size_t msg_max)
{
	struct window *win = &b->win;
	uint64_t cap = window_cap(msg_max);
	struct shmq_heap_attr ha;
	shmq_heap_attr_init(&ha);
	ha.max_size = cap + sizeof(struct win) + (4u << 20);
	int r = shmq_heap_create(win->heap_name, &ha, &win->heap);
	if (r < 0)
		return r;
	/* The lock first, taken at once: a bridge that opens the heap meanwhile
	 * waits for it, then finds a live holder. */
	if ((r = shmq_lock_create(win->heap, "bridge", 0, &win->lock)) < 0 ||
	    (r = shmq_lock_acquire(win->lock, 0)) < 0 ||
	    (r = shmq_array_create(win->heap, "window", sizeof(struct win) + cap, SHMQ_NOLOCK,
				   &win->arr)) < 0 ||
	    (r = shmq_sem_create(win->heap, "to_bridge", 0, 1, 0, &win->to_bridge)) < 0 ||
	    (r = shmq_sem_create(win->heap, "to_keeper", 0, 1, 0, &win->to_keeper)) < 0)
		goto fail;
	struct win *w = win->w = shmq_array_data(win->arr);
	w->version = WIN_VERSION;
	w->dir = (uint32_t)b->o->dir;
	w->cap = cap;
	if (getrandom(&w->id, sizeof(w->id), 0) != sizeof(w->id) || w->id == 0)
		w->id = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	memcpy(w->queue, b->o->queue, QNAME_MAX);
	memcpy(w->join_with, b->o->join_with, sizeof(w->join_with));
	w->njoin = b->o->njoin;
	w->want_ends = b->o->producers;
	atomic_store_explicit((_Atomic uint64_t *)&w->magic, WIN_MAGIC, memory_order_release);
	return 0;
fail:
	window_close(win);
	shmq_unlink(b->win.heap_name);
	return r;
}

/* Find or make the window, and take its lock. Returns 0; 75 (EX_TEMPFAIL)
 * when a live bridge holds it; another exit status on errors. */
static int window_adopt(struct bridge *b, size_t msg_max)
{
	struct window *win = &b->win;
	window_name(b->o, win->heap_name, sizeof(win->heap_name));
	for (int attempt = 0; attempt < 5; attempt++) {
		int r = window_create(b, msg_max);
		if (r == 0)
			return 0;
		if (r != -EEXIST) {
			say("cannot create the window %s: %s", win->heap_name, strerror(-r));
			return EX_OSERR;
		}
		if ((r = shmq_heap_open(win->heap_name, 0, &win->heap)) < 0) {
			if (r == -ENOENT)
				continue; /* removed meanwhile */
			say("cannot open the window %s: %s", win->heap_name, strerror(-r));
			return EX_OSERR;
		}
		if ((r = window_attach(win)) < 0) {
			say("the window %s is unusable (%s); remove it with `shmq rm %s` if no "
			    "bridge or keeper runs",
			    win->heap_name, strerror(-r), win->heap_name);
			window_close(win);
			return EX_SOFTWARE;
		}
		/* A dead holder is noticed within about 0.1 s. */
		r = shmq_lock_acquire(win->lock, 300000000LL);
		if (r == -ETIMEDOUT || r == -EAGAIN) {
			say("another bridge runs with these arguments (window %s)", win->heap_name);
			window_close(win);
			return EX_TEMPFAIL;
		}
		if (r < 0 && r != -EOWNERDEAD) {
			say("cannot lock the window %s: %s", win->heap_name, strerror(-r));
			window_close(win);
			return EX_OSERR;
		}
		struct win *w = win->w;
		if (w->dir != (uint32_t)b->o->dir || strncmp(w->queue, b->o->queue, QNAME_MAX)) {
			say("the window %s belongs to other arguments", win->heap_name);
			window_close(win);
			return EX_SOFTWARE;
		}
		if (atomic_load(&w->state) & W_FINISH) {
			/* A finished transfer whose bridge died before removing the
			 * window: start afresh. */
			shmq_unlink(win->heap_name);
			window_close(win);
			continue;
		}
		return 0;
	}
	say("cannot settle the window %s", win->heap_name);
	return EX_TEMPFAIL;
}

static void window_finish(struct bridge *b)
{
	struct win *w = b->win.w;
	atomic_fetch_or(&w->state, W_FINISH);
	bell_ring(b->win.to_keeper);
	for (int i = 0; i < 200 && keeper_alive(w); i++)
		sleep_ms(10);
	shmq_unlink(b->win.heap_name);
}

/* A connection of a bridge that died (or that we dropped) may still have a
 * command on its way into Redis: an XREADGROUP answered after we re-read our
 * pending list would hide its entries there. Close it in Redis before
 * anything else, and note ours for the next bridge. Returns 0; -EIO. */
static int take_over_connection(struct bridge *b)
{
	struct win *w = b->win.w;
	const char *id_argv[] = { "CLIENT", "ID" };
	redisReply *r = cmd(&b->rd, 2, id_argv, NULL);
	if (!r)
		return -EIO;
	long long self = 0;
	bool ok = reply_is_int(r, &self);
	freeReplyObject(r);
	uint64_t old = atomic_load(&w->redis_client);
	if (old && (!ok || (uint64_t)self != old)) {
		char num[24];
		snprintf(num, sizeof(num), "%" PRIu64, old);
		const char *kill_argv[] = { "CLIENT", "KILL", "ID", num };
		if (!(r = cmd(&b->rd, 4, kill_argv, NULL)))
			return -EIO;
		freeReplyObject(r); /* an error: it is gone already */
	}
	if (ok)
		atomic_store(&w->redis_client, (uint64_t)self);
	return 0;
}

/* ---------------------------------------------------------- out bridge -- */

struct sent { /* an entry in flight, oldest first */
	uint64_t last_seq; /* its last message's sequence */
	uint64_t end_pos;  /* window position after it */
};

struct out_state {
	char id[17], epoch[24];
	char *pack;        /* packed data of the entries of one call */
	size_t pack_cap;
	struct sent inflight[PIPE_CALLS * PIPE_ENTRIES];
	unsigned ninflight;
	uint64_t cursor;   /* next record to send */
	uint64_t end_seq;  /* the END record's sequence, once sent */
	bool end_acked;
	/* joinable */
	char done_last_id[64];
	uint64_t done_from[MAX_PRODUCERS][2]; /* in bridge id, its count */
	unsigned ndone_from;
	int64_t next_done_poll;
};

/* Redis holds everything up to last: drop it from the window. */
static void out_acked(struct bridge *b, struct out_state *s, uint64_t last)
{
	struct win *w = b->win.w;
	uint64_t head = atomic_load(&w->head), tail = atomic_load(&w->tail), next;
	while (head < tail) {
		const struct rec *r = win_get(w, head, tail, &next);
		if (!r || r->seq > last)
			break;
		if (r->kind == REC_END)
			s->end_acked = true;
		head = next;
	}
	if (last > atomic_load(&w->acked_seq))
		atomic_store(&w->acked_seq, last);
	atomic_store_explicit(&w->head, head, memory_order_release);
	if (s->cursor < head)
		s->cursor = head;
	unsigned k = 0;
	while (k < s->ninflight && s->inflight[k].last_seq <= last)
		k++;
	memmove(s->inflight, s->inflight + k, (s->ninflight - k) * sizeof(s->inflight[0]));
	s->ninflight -= k;
	bell_ring(b->win.to_keeper);
}

/* After a (re)connect: skip what Redis already has. */
static int out_resync(struct bridge *b, struct out_state *s)
{
	const char *argv[] = { "HGET", b->rd.seq_key, s->id };
	redisReply *r = cmd(&b->rd, 3, argv, NULL);
	if (!r)
		return -EIO;
	long long last = 0;
	if (r->type != REDIS_REPLY_NIL && !reply_is_int(r, &last))
		last = 0;
	freeReplyObject(r);
	uint64_t acked = atomic_load(&b->win.w->acked_seq);
	if ((uint64_t)last < acked) {
		/* Redis lost entries it had acknowledged (restarted without an
		 * AOF, or flushed): they are gone. Continue from where we are,
		 * or the add script would refuse every entry as a gap. */
		char num[24];
		snprintf(num, sizeof(num), "%" PRIu64, acked);
		say("redis lost entries %lld..%" PRIu64 " of this bridge that it had acknowledged"
		    " (no AOF?); continuing after them",
		    last + 1, acked);
		const char *set[] = { "HSET", b->rd.seq_key, s->id, num };
		if (!(r = cmd(&b->rd, 4, set, NULL)))
			return -EIO;
		freeReplyObject(r);
		last = (long long)acked;
	}
	s->ninflight = 0;
	s->cursor = atomic_load(&b->win.w->head);
	out_acked(b, s, (uint64_t)last);
	s->cursor = atomic_load(&b->win.w->head);
	return 0;
}

/* Collect the done counts of the far side (STREAM:done) for this bridge. */
static void out_poll_done(struct bridge *b, struct out_state *s)
{
	if (!b->joinable || now_ns() < s->next_done_poll)
		return;
	s->next_done_poll = now_ns() + POLL_NS;
	for (;;) {
		const char *argv[] = { "XREAD", "COUNT", "256", "STREAMS", b->rd.done_key,
				       s->done_last_id };
		redisReply *r = cmd(&b->rd, 6, argv, NULL);
		if (!r)
			return;
		size_t got = 0;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
			redisReply *entries = r->element[0]->element[1];
			for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
				redisReply *e = entries->element[i];
				if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
				    e->element[0]->type != REDIS_REPLY_STRING)
					continue;
				snprintf(s->done_last_id, sizeof(s->done_last_id), "%s", e->element[0]->str);
				got++;
				redisReply *f = e->element[1];
				uint64_t in = 0, p = 0, n = 0;
				bool hi = false, hp = false, hn = false;
				for (size_t j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements; j += 2) {
					redisReply *k = f->element[j], *v = f->element[j + 1];
					if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
						continue;
					if (!strcmp(k->str, "in"))
						hi = parse_hex64(v->str, v->len, &in);
					else if (!strcmp(k->str, "p"))
						hp = parse_hex64(v->str, v->len, &p);
					else if (!strcmp(k->str, "n"))
						hn = parse_u64(v->str, v->len, &n);
				}
				if (!hi || !hp || !hn || p != b->win.w->id)
					continue;
				unsigned j = 0;
				while (j < s->ndone_from && s->done_from[j][0] != in)
					j++;
				if (j == s->ndone_from) {
					if (j == MAX_PRODUCERS)
						continue;
					s->done_from[s->ndone_from++][0] = in;
					s->done_from[j][1] = 0;
				}
				if (n > s->done_from[j][1])
					s->done_from[j][1] = n;
			}
		}
		freeReplyObject(r);
		if (got < 256)
			break;
	}
	uint64_t credit = 0;
	for (unsigned j = 0; j < s->ndone_from; j++)
		credit += s->done_from[j][1];
	if (credit > atomic_load(&b->win.w->done_credit)) {
		atomic_store(&b->win.w->done_credit, credit);
		bell_ring(b->win.to_keeper);
	}
}

/* Pack the records from s->cursor into up to PIPE_ENTRIES entries of one
 * add-script call: argv/lens get the call. Returns the number of entries
 * (0: nothing to send). */
static unsigned out_build_call(struct bridge *b, struct out_state *s, const char **argv,
			       size_t *lens, int *argc, char numbuf[][24])
{
	struct win *w = b->win.w;
	uint64_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
	static char maxlen[24];
	snprintf(maxlen, sizeof(maxlen), "%" PRIu64, b->o->maxlen);
	int a = 0;
	argv[a] = "EVALSHA", lens[a++] = 7;
	argv[a] = b->rd.add_sha, lens[a++] = 40;
	argv[a] = "2", lens[a++] = 1;
	argv[a] = b->o->stream, lens[a++] = strlen(b->o->stream);
	argv[a] = b->rd.seq_key, lens[a++] = strlen(b->rd.seq_key);
	argv[a] = s->id, lens[a++] = 16;
	argv[a] = s->epoch, lens[a++] = strlen(s->epoch);
	argv[a] = maxlen, lens[a++] = strlen(maxlen);
	size_t used = 0;
	unsigned entries = 0;
	uint64_t pos = s->cursor, next;
	/* Offsets into s->pack of each entry, to point argv at once the buffer
	 * stops moving. */
	size_t starts[PIPE_ENTRIES], ends[PIPE_ENTRIES];
	int data_arg[PIPE_ENTRIES];
	while (entries < PIPE_ENTRIES && pos < tail && s->ninflight < PIPE_CALLS * PIPE_ENTRIES) {
		const struct rec *r = win_get(w, pos, tail, &next);
		if (!r)
			break;
		uint64_t first = r->seq;
		unsigned n = 0;
		bool end = false;
		starts[entries] = used;
		while (pos < tail && n < b->o->batch) {
			r = win_get(w, pos, tail, &next);
			if (!r)
				break;
			if (r->kind == REC_END) {
				if (n == 0) {
					end = true;
					n = 1;
					pos = next;
				}
				break;
			}
			if (n > 0 && used - starts[entries] + 4 + r->len > ENTRY_BYTES)
				break;
			if (used + 4 + r->len > s->pack_cap) {
				size_t cap = (used + 4 + r->len) * 2;
				char *p = realloc(s->pack, cap);
				if (!p)
					break;
				s->pack = p;
				s->pack_cap = cap;
			}
			uint32_t le = r->len; /* little-endian hosts only: see meson */
			memcpy(s->pack + used, &le, 4);
			memcpy(s->pack + used + 4, r + 1, r->len);
			used += 4 + r->len;
			n++;
			pos = next;
		}
		if (n == 0)
			break;
		ends[entries] = used;
		snprintf(numbuf[2 * entries], 24, "%" PRIu64, first);
		snprintf(numbuf[2 * entries + 1], 24, "%u", n);
		argv[a] = numbuf[2 * entries], lens[a] = strlen(numbuf[2 * entries]), a++;
		argv[a] = numbuf[2 * entries + 1], lens[a] = strlen(numbuf[2 * entries + 1]), a++;
		argv[a] = end ? "1" : "0", lens[a++] = 1;
		data_arg[entries] = a;
		argv[a] = "", lens[a++] = 0;
		s->inflight[s->ninflight++] = (struct sent){ first + n - 1, pos };
		if (end)
			s->end_seq = first;
		entries++;
		if (end)
			break;
	}
	for (unsigned e = 0; e < entries; e++) {
		argv[data_arg[e]] = s->pack + starts[e];
		lens[data_arg[e]] = ends[e] - starts[e];
	}
	s->cursor = pos;
	*argc = a;
	return entries;
}

/* The stream is full (--maxlen): wait until the far side has taken
 * something, polling its length (O(1), no payload) every millisecond: the
 * far side frees room in bursts, and the next burst of ours should follow
 * at once. Returns 0; -EIO. */
static int out_wait_room(struct bridge *b)
{
	const char *argv[] = { "XLEN", b->o->stream };
	for (int64_t next_check = 0; !stop_requested;) {
		sleep_ms(1);
		if (now_ns() >= next_check) { /* and the keeper, now and then */
			if (keeper_check(b) < 0)
				return 0;
			next_check = now_ns() + POLL_NS;
		}
		redisReply *r = cmd(&b->rd, 2, argv, NULL);
		if (!r)
			return -EIO;
		long long len = 0;
		bool room = !reply_is_int(r, &len) || (uint64_t)len < b->o->maxlen;
		freeReplyObject(r);
		if (room)
			return 0;
	}
	return 0;
}

/* One round: up to PIPE_CALLS add-script calls pipelined, then their
 * replies. Returns 0; -EIO (connection lost); -EPROTO (Redis refused). */
static int out_round(struct bridge *b, struct out_state *s, bool *sent_any)
{
	enum { ARGS = 8 + 4 * PIPE_ENTRIES };
	const char *argv[PIPE_CALLS][ARGS];
	size_t lens[PIPE_CALLS][ARGS];
	char nums[PIPE_CALLS][2 * PIPE_ENTRIES][24];
	int argc[PIPE_CALLS];
	unsigned calls = 0;
	/* Build every call first: s->pack must not move once argv points in. */
	size_t mark = 0;
	(void)mark;
	for (; calls < PIPE_CALLS; calls++) {
		/* Each call packs into its own region: offset the buffer. */
		if (!out_build_call(b, s, argv[calls], lens[calls], &argc[calls], nums[calls]))
			break;
		/* Freeze this call's data by copying it out of s->pack. */
		int a = argc[calls];
		for (int i = 8; i < a; i += 4) {
			char *copy = malloc(lens[calls][i + 3] + 1);
			if (!copy)
				return -ENOMEM;
			memcpy(copy, argv[calls][i + 3], lens[calls][i + 3]);
			argv[calls][i + 3] = copy;
		}
	}
	*sent_any = calls > 0;
	if (!calls)
		return 0;
	for (unsigned c = 0; c < calls; c++)
		redisAppendCommandArgv(b->rd.c, argc[c], argv[c], lens[c]);
	int rc = 0;
	bool resend = false, full = false;
	for (unsigned c = 0; c < calls; c++) {
		redisReply *r = NULL;
		if (rc == 0 && redisGetReply(b->rd.c, (void **)&r) != REDIS_OK) {
			say("redis %s:%d: %s", b->o->host, b->o->port, b->rd.c->errstr);
			rc = -EIO;
		}
		if (r) {
			long long st, last;
			if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			    reply_is_int(r->element[0], &st) && reply_is_int(r->element[1], &last)) {
				out_acked(b, s, (uint64_t)last);
				if (st != 1)
					resend = true; /* full (0) or gap (-1, after a full) */
				if (st == 0)
					full = true;
			} else if (r->type == REDIS_REPLY_ERROR) {
				if (!strncmp(r->str, "NOSCRIPT", 8)) {
					load_script(&b->rd, add_lua, b->rd.add_sha);
				} else {
					say("redis: add: %s", r->str);
					if (!strncmp(r->str, "WRONGTYPE", 9))
						rc = -EPROTO; /* STREAM is not a stream */
				}
				resend = true;
			}
			freeReplyObject(r);
		}
		for (int i = 8; i < argc[c]; i += 4)
			free((void *)argv[c][i + 3]);
	}
	if (resend && rc == 0) {
		s->ninflight = 0;
		s->cursor = atomic_load(&b->win.w->head);
		if (full && b->o->maxlen)
			rc = out_wait_room(b);
		else
			sleep_ms(10); /* a refused script: do not spin on it */
	}
	return rc;
}

static int bridge_out(struct bridge *b)
{
	struct win *w = b->win.w;
	struct out_state s = { 0 };
	hex64(w->id, s.id);
	snprintf(s.epoch, sizeof(s.epoch), "%" PRIu64, atomic_load(&w->epoch));
	snprintf(s.done_last_id, sizeof(s.done_last_id), "0-0");
	if (take_over_connection(b) < 0 || out_resync(b, &s) < 0)
		redis_drop(&b->rd); /* reconnects below */
	for (;;) {
		if (!redis_ok(&b->rd)) {
			int r = redis_reconnect(&b->rd);
			if (r == -ECANCELED)
				break;
			if (r < 0)
				return EX_PROTOCOL;
			if (take_over_connection(b) < 0 || out_resync(b, &s) < 0)
				redis_drop(&b->rd);
			continue;
		}
		if (keeper_check(b) < 0)
			return EX_SOFTWARE;
		out_poll_done(b, &s);
		uint32_t st = atomic_load(&w->state); /* before head and tail */
		/* Redis has the END: we saw it acknowledged, or a bridge before us
		 * did (W_EOD: the keeper wrote END; head == tail: Redis holds
		 * every record, END the last). */
		if ((s.end_acked || (st & W_EOD)) &&
		    atomic_load(&w->head) == atomic_load(&w->tail)) {
			if (!b->joinable || atomic_load(&w->done_applied) >= atomic_load(&w->msgs))
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		if (stop_requested && !(st & W_STOP)) {
			atomic_fetch_or(&w->state, W_STOP);
			bell_ring(b->win.to_keeper);
		}
		bool sent = false;
		int r = out_round(b, &s, &sent);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		if (r < 0)
			return EX_PROTOCOL;
		if (!sent) {
			if (stop_requested && atomic_load(&w->head) == atomic_load(&w->tail))
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
		}
	}
	free(s.pack);
	window_finish(b);
	return 0;
}

/* ----------------------------------------------------------- in bridge -- */

struct pending_ack { /* an entry to acknowledge once head passes pos */
	char id[48];
	uint64_t pos;
};

struct in_state {
	struct pending_ack *acks;
	size_t nacks, acks_cap, acks_head;
	char consumer[32], self_id[17];
	uint64_t sent_gen;
	uint64_t sent_done[MAX_PRODUCERS];
	bool reading_pending; /* re-reading our own pending entries first */
	char pending_from[48]; /* ... after this id */
	int64_t next_claim;
	uint32_t ended;       /* producers whose END is appended */
};

/* Apply a prod[] intent whose records are published; forget one whose are
 * not (the entry stays pending in Redis and comes again). */
static void in_recover_intent(struct win *w)
{
	uint64_t it = atomic_load(&w->intent_tail);
	if (it && atomic_load(&w->tail) >= it && w->intent_idx < MAX_PRODUCERS) {
		w->prod[w->intent_idx] = w->intent;
		if (w->intent_idx >= w->nprod)
			w->nprod = w->intent_idx + 1;
	}
	atomic_store(&w->intent_tail, 0);
}

static int prod_index(struct win *w, uint64_t id)
{
	for (uint32_t i = 0; i < w->nprod; i++)
		if (w->prod[i].id == id)
			return (int)i;
	return w->nprod < MAX_PRODUCERS ? (int)w->nprod : -1;
}

/* Is [first, last] appended already? */
static bool prod_has(const struct prod *p, uint64_t first, uint64_t last)
{
	if (last <= p->last)
		return true;
	for (uint32_t i = 0; i < p->nextra && i < MAX_EXTRA; i++)
		if (first >= p->extra[i][0] && last <= p->extra[i][1])
			return true;
	return false;
}

/* Record [first, last] as appended. The ranges above p->last stay sorted
 * and disjoint, neighbours merged, and fold into p->last once the gap below
 * them fills. Past MAX_EXTRA ranges the lowest is forgotten: a replay of it
 * would then be delivered again (at least once still holds). */
static void prod_add(struct prod *p, uint64_t first, uint64_t last)
{
	uint64_t r[MAX_EXTRA + 1][2];
	uint32_t n = 0, i = 0;
	uint32_t have = p->nextra < MAX_EXTRA ? p->nextra : MAX_EXTRA;
	for (; i < have && p->extra[i][0] < first; i++)
		memcpy(r[n++], p->extra[i], sizeof(r[0]));
	r[n][0] = first, r[n][1] = last, n++;
	for (; i < have; i++)
		memcpy(r[n++], p->extra[i], sizeof(r[0]));
	/* Merge: into last, then neighbours. */
	uint32_t out = 0;
	for (i = 0; i < n; i++) {
		if (r[i][0] <= p->last + 1) {
			if (r[i][1] > p->last)
				p->last = r[i][1];
		} else if (out && r[i][0] <= r[out - 1][1] + 1) {
			if (r[i][1] > r[out - 1][1])
				r[out - 1][1] = r[i][1];
		} else {
			memcpy(r[out++], r[i], sizeof(r[0]));
		}
	}
	/* A range that the new last reaches folds in too (they are sorted). */
	uint32_t skip = 0;
	while (skip < out && r[skip][0] <= p->last + 1) {
		if (r[skip][1] > p->last)
			p->last = r[skip][1];
		skip++;
	}
	if (out - skip > MAX_EXTRA)
		skip = out - MAX_EXTRA;
	p->nextra = out - skip;
	memcpy(p->extra, r + skip, p->nextra * sizeof(r[0]));
}

static void ack_push(struct in_state *s, const char *id, size_t len, uint64_t pos)
{
	if (s->nacks == s->acks_cap) {
		size_t cap = s->acks_cap ? s->acks_cap * 2 : 256;
		struct pending_ack *a = malloc(cap * sizeof(*a));
		if (!a)
			return; /* not acknowledged now: it comes again, dedup drops it */
		for (size_t i = 0; i < s->nacks; i++)
			a[i] = s->acks[(s->acks_head + i) % s->acks_cap];
		free(s->acks);
		s->acks = a;
		s->acks_cap = cap;
		s->acks_head = 0;
	}
	struct pending_ack *p = &s->acks[(s->acks_head + s->nacks++) % s->acks_cap];
	if (len >= sizeof(p->id))
		len = sizeof(p->id) - 1;
	memcpy(p->id, id, len);
	p->id[len] = 0;
	p->pos = pos;
}

/* Acknowledge (XACK, then trim) the entries the keeper has put. */
static int in_send_acks(struct bridge *b, struct in_state *s)
{
	uint64_t head = atomic_load_explicit(&b->win.w->head, memory_order_acquire);
	while (s->nacks && s->acks[s->acks_head].pos <= head) {
		const char *argv[5 + ACK_MAX];
		int a = 0;
		argv[a++] = "EVALSHA";
		argv[a++] = b->rd.ack_sha;
		argv[a++] = "1";
		argv[a++] = b->o->stream;
		argv[a++] = b->o->group;
		size_t taken = 0;
		while (taken < s->nacks && taken < ACK_MAX &&
		       s->acks[(s->acks_head + taken) % s->acks_cap].pos <= head) {
			argv[a++] = s->acks[(s->acks_head + taken) % s->acks_cap].id;
			taken++;
		}
		redisReply *r = cmd(&b->rd, a, argv, NULL);
		if (!r)
			return -EIO;
		bool ok = r->type != REDIS_REPLY_ERROR;
		if (!ok && !strncmp(r->str, "NOSCRIPT", 8))
			load_script(&b->rd, ack_lua, b->rd.ack_sha);
		else if (!ok)
			say("redis: ack: %s", r->str);
		freeReplyObject(r);
		if (!ok)
			return 0; /* they stay pending: retried, or re-read after a restart */
		s->acks_head = (s->acks_head + taken) % s->acks_cap;
		s->nacks -= taken;
	}
	return 0;
}

/* Send the keeper's done counts to STREAM:done. */
static int in_send_done(struct bridge *b, struct in_state *s)
{
	struct win *w = b->win.w;
	uint64_t gen = atomic_load_explicit(&w->report_gen, memory_order_acquire);
	if (gen == s->sent_gen)
		return 0;
	for (uint32_t i = 0; i < w->nprod; i++) {
		uint64_t n = atomic_load(&w->done[i]);
		if (n == s->sent_done[i])
			continue;
		char p[17], num[24];
		hex64(w->prod[i].id, p);
		snprintf(num, sizeof(num), "%" PRIu64, n);
		const char *argv[] = { "XADD", b->rd.done_key, "*", "in", s->self_id, "p", p, "n", num };
		redisReply *r = cmd(&b->rd, 9, argv, NULL);
		if (!r)
			return -EIO;
		freeReplyObject(r);
		s->sent_done[i] = n;
	}
	s->sent_gen = gen;
	return 0;
}

/* Wait until the window has room for len more record bytes, keeping acks
 * flowing. Returns 0; -EIO; -EMSGSIZE (never fits). */
static int in_wait_room(struct bridge *b, struct in_state *s, uint64_t bytes)
{
	struct win *w = b->win.w;
	/* The records of one entry wrap at most once, wasting less than one
	 * record: room for twice their bytes is room enough. */
	if (2 * bytes > w->cap)
		return -EMSGSIZE;
	for (;;) {
		uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
		uint64_t tail = atomic_load(&w->tail);
		if (tail - head + 2 * bytes <= w->cap)
			return 0;
		int r = in_send_acks(b, s);
		if (r < 0)
			return r;
		if ((r = keeper_check(b)) < 0)
			return r;
		bell_ring(b->win.to_keeper); /* what this read appended so far */
		bell_wait(b->win.to_bridge, POLL_NS);
	}
}

struct entry_fields {
	uint64_t p, e, s, n;
	bool has_p, has_s, has_n, end;
	const char *d;
	size_t dlen;
};

static bool parse_entry(const redisReply *f, struct entry_fields *ef)
{
	memset(ef, 0, sizeof(*ef));
	if (f->type != REDIS_REPLY_ARRAY)
		return false;
	for (size_t j = 0; j + 1 < f->elements; j += 2) {
		const redisReply *k = f->element[j], *v = f->element[j + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			return false;
		if (!strcmp(k->str, "p"))
			ef->has_p = parse_hex64(v->str, v->len, &ef->p);
		else if (!strcmp(k->str, "s"))
			ef->has_s = parse_u64(v->str, v->len, &ef->s);
		else if (!strcmp(k->str, "n"))
			ef->has_n = parse_u64(v->str, v->len, &ef->n);
		else if (!strcmp(k->str, "end"))
			ef->end = v->len == 1 && v->str[0] == '1';
		else if (!strcmp(k->str, "d")) {
			ef->d = v->str;
			ef->dlen = v->len;
		}
	}
	if (!ef->has_p || !ef->has_s || !ef->has_n || ef->s == 0 || ef->n == 0 ||
	    ef->n > (1u << 24) || ef->p == 0)
		return false;
	if (ef->end)
		return ef->n == 1;
	/* The packed messages must fill d exactly. */
	size_t off = 0;
	uint64_t count = 0;
	while (off + 4 <= ef->dlen) {
		uint32_t len;
		memcpy(&len, ef->d + off, 4);
		if (len > ef->dlen - off - 4)
			return false;
		off += 4 + len;
		count++;
	}
	return off == ef->dlen && count == ef->n;
}

/* Append one stream entry to the window (or drop it as a duplicate), and
 * queue its acknowledgement. Returns 0; -EIO; EX_DATAERR (fatal). */
static int in_entry(struct bridge *b, struct in_state *s, const redisReply *e)
{
	struct win *w = b->win.w;
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	const char *id = e->element[0]->str;
	size_t idlen = e->element[0]->len;
	struct entry_fields ef;
	if (s->reading_pending) {
		snprintf(s->pending_from, sizeof(s->pending_from), "%s", id);
		/* Read before a lost connection and in hand: not again. */
		for (size_t i = 0; i < s->nacks; i++)
			if (!strcmp(s->acks[(s->acks_head + i) % s->acks_cap].id, id))
				return 0;
	}
	if (e->element[1]->type == REDIS_REPLY_NIL) { /* deleted meanwhile */
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	if (!parse_entry(e->element[1], &ef)) {
		say("dropping stream entry %s: not a shmq bridge entry", id);
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	int idx = prod_index(w, ef.p);
	if (idx < 0) {
		say("more than %u out bridges feed %s: entry %s left pending", MAX_PRODUCERS,
		    b->o->stream, id);
		return 0;
	}
	struct prod p = (uint32_t)idx < w->nprod ? w->prod[idx] : (struct prod){ .id = ef.p };
	uint64_t last = ef.s + ef.n - 1;
	/* Everything of a producer comes before its END: after it, a replay. */
	bool dup = p.ended || (b->o->dedup && prod_has(&p, ef.s, last));
	if (dup || (ef.end && s->ended >= b->o->producers && b->o->producers)) {
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	/* Record bytes this entry needs. */
	uint64_t bytes = rec_size(0);
	for (size_t off = 0; !ef.end && off < ef.dlen;) {
		uint32_t len;
		memcpy(&len, ef.d + off, 4);
		if (len > b->local_msg_max) {
			say("stream entry %s holds a message of %u bytes; %s takes at most %zu: stopping "
			    "(the entry stays pending)",
			    id, len, b->o->queue, b->local_msg_max);
			return EX_DATAERR;
		}
		bytes += rec_size(len);
		off += 4 + len;
	}
	int r = in_wait_room(b, s, bytes);
	if (r == -EMSGSIZE) {
		say("stream entry %s is larger than the window: stopping", id);
		return EX_DATAERR;
	}
	if (r < 0)
		return r;
	/* The intent first, then the records, then the table. */
	prod_add(&p, ef.s, last);
	if (ef.end)
		p.ended = 1;
	uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
	uint64_t tail = atomic_load(&w->tail), t = tail;
	(void)head;
	if (ef.end) {
		win_put(w, &t, REC_END, (uint16_t)idx, ef.s, NULL, 0);
	} else {
		uint64_t seq = ef.s;
		for (size_t off = 0; off < ef.dlen; seq++) {
			uint32_t len;
			memcpy(&len, ef.d + off, 4);
			win_put(w, &t, REC_MSG, (uint16_t)idx, seq, ef.d + off + 4, len);
			off += 4 + len;
		}
	}
	w->intent = p;
	w->intent_idx = (uint32_t)idx;
	atomic_store(&w->intent_tail, t);
	atomic_store_explicit(&w->tail, t, memory_order_release);
	w->prod[idx] = p;
	if ((uint32_t)idx >= w->nprod)
		w->nprod = (uint32_t)idx + 1;
	atomic_store(&w->intent_tail, 0);
	if (ef.end)
		s->ended++;
	ack_push(s, id, idlen, t);
	return 0;
}

/* Entries of an XREADGROUP / XAUTOCLAIM reply. Returns the count seen, or
 * a negative / exit status from in_entry. */
static int in_entries(struct bridge *b, struct in_state *s, const redisReply *entries)
{
	int seen = 0, r = 0;
	for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
		if ((r = in_entry(b, s, entries->element[i])) != 0)
			break;
		seen++;
	}
	bell_ring(b->win.to_keeper); /* once for the lot */
	if (r != 0)
		return r < 0 ? r : -r - 1000; /* exit status, encoded */
	return seen;
}

/* Read entries and append them. Blocks in Redis (up to 100 ms) only when
 * every entry read is acknowledged: while the keeper still delivers some,
 * their acknowledgements must not wait behind a blocked read (with --maxlen
 * the far side may be waiting for exactly those). Returns 0; -EIO; an exit
 * status encoded as by in_entries. */
static int in_read(struct bridge *b, struct in_state *s)
{
	char count[16];
	snprintf(count, sizeof(count), "%u", b->o->batch < READ_COUNT ? b->o->batch : READ_COUNT);
	const char *argv[] = { "XREADGROUP", "GROUP", b->o->group, s->consumer, "COUNT", count,
			       "BLOCK", "100", "STREAMS", b->o->stream,
			       s->reading_pending ? s->pending_from : ">" };
	int argc = 11;
	if (s->reading_pending || s->nacks) { /* no BLOCK */
		argv[6] = "STREAMS";
		argv[7] = b->o->stream;
		argv[8] = argv[10];
		argc = 9;
	}
	redisReply *r = cmd(&b->rd, argc, argv, NULL);
	if (!r)
		return -EIO;
	int seen = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		say("redis: XREADGROUP: %s", r->str);
		if (!strncmp(r->str, "NOGROUP", 7)) { /* the stream was deleted: again */
			freeReplyObject(r);
			redis_drop(&b->rd);
			return -EIO;
		}
		sleep_ms(100);
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		   r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
		seen = in_entries(b, s, r->element[0]->element[1]);
	}
	freeReplyObject(r);
	if (s->reading_pending && seen == 0)
		s->reading_pending = false;
	else if (seen == 0 && s->nacks)
		bell_wait(b->win.to_bridge, POLL_NS / 5); /* the keeper's next put */
	return seen < 0 ? seen : 0;
}

/* Take over entries that a dead in bridge of the group left pending past
 * --claim-idle, and keep ours from looking idle to the others. */
static int in_claim(struct bridge *b, struct in_state *s)
{
	if (now_ns() < s->next_claim)
		return 0;
	s->next_claim = now_ns() + b->o->claim_idle_ms * 1000000LL / 3;
	/* Ours first: XCLAIM ... JUSTID resets their idle time. */
	for (size_t i = 0; i < s->nacks;) {
		const char *argv[6 + 64];
		int a = 0;
		argv[a++] = "XCLAIM";
		argv[a++] = b->o->stream;
		argv[a++] = b->o->group;
		argv[a++] = s->consumer;
		argv[a++] = "0";
		for (; i < s->nacks && a < 5 + 64; i++)
			argv[a++] = s->acks[(s->acks_head + i) % s->acks_cap].id;
		argv[a++] = "JUSTID";
		redisReply *r = cmd(&b->rd, a, argv, NULL);
		if (!r)
			return -EIO;
		freeReplyObject(r);
	}
	char idle[24];
	snprintf(idle, sizeof(idle), "%" PRId64, b->o->claim_idle_ms);
	const char *argv[] = { "XAUTOCLAIM", b->o->stream, b->o->group, s->consumer, idle, "0-0",
			       "COUNT", "16" };
	redisReply *r = cmd(&b->rd, 8, argv, NULL);
	if (!r)
		return -EIO;
	int seen = 0;
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
		seen = in_entries(b, s, r->element[1]);
		if (seen > 0)
			say("claimed %d entr%s left by a dead bridge", seen, seen == 1 ? "y" : "ies");
	}
	freeReplyObject(r);
	return seen < 0 ? seen : 0;
}

static int bridge_in(struct bridge *b)
{
	struct win *w = b->win.w;
	struct in_state s = { 0 };
	in_recover_intent(w);
	hex64(w->id, s.self_id);
	snprintf(s.consumer, sizeof(s.consumer), "shmq-%s", s.self_id);
	s.reading_pending = true;
	strcpy(s.pending_from, "0");
	s.next_claim = now_ns() + b->o->claim_idle_ms * 1000000LL / 3;
	for (uint32_t i = 0; i < w->nprod; i++)
		if (w->prod[i].ended)
			s.ended++;
	if (take_over_connection(b) < 0)
		redis_drop(&b->rd); /* reconnects below */
	int rc = 0;
	for (;;) {
		if (!redis_ok(&b->rd)) {
			int r = redis_reconnect(&b->rd);
			if (r == -ECANCELED)
				break;
			if (r < 0)
				return EX_PROTOCOL;
			/* A reply lost with the connection left entries pending
			 * that we never saw: read them (in_entry skips those we
			 * hold). */
			s.reading_pending = true;
			strcpy(s.pending_from, "0");
			s.sent_gen = 0;
			memset(s.sent_done, 0xff, sizeof(s.sent_done));
			if (take_over_connection(b) < 0)
				redis_drop(&b->rd);
			continue;
		}
		if (keeper_check(b) < 0)
			return EX_SOFTWARE;
		/* The state first: the keeper's last report comes before W_EOD. */
		uint32_t st = atomic_load(&w->state);
		int r = in_send_acks(b, &s);
		if (r == 0 && b->joinable)
			r = in_send_done(b, &s);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		/* Our pending list first, even at the end: a bridge killed after
		 * appending the last END left entries unacknowledged. */
		if ((st & W_EOD) && !s.reading_pending) { /* the last END is delivered */
			if (s.nacks == 0)
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		bool all_ended = b->o->producers && s.ended >= b->o->producers;
		if (stop_requested || (all_ended && !s.reading_pending)) {
			/* Read no more; let the keeper deliver what is here. */
			if (stop_requested && atomic_load(&w->head) == atomic_load(&w->tail) &&
			    s.nacks == 0)
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		r = in_claim(b, &s);
		if (r == 0)
			r = in_read(b, &s);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		if (r <= -1000) {
			rc = -r - 1000;
			break;
		}
	}
	free(s.acks);
	if (rc)
		return rc; /* the keeper keeps the window; fix and restart */
	window_finish(b);
	return 0;
}

/* ------------------------------------------------------------- arguments -- */

static int usage(void)
{
	fprintf(stderr,
		"usage: shmq-bridge out NAME redis://HOST[:PORT]/STREAM [--batch N] [--maxlen N]\n"
		"       shmq-bridge in redis://HOST[:PORT]/STREAM NAME --group G [--producers N]\n"
		"                      [--dedup] [--batch N] [--claim-idle MS] [--join-with QUEUE]...\n"
		"Carries a local shmq queue over a Redis stream (see `man shmq`, BRIDGE).\n");
	return EX_USAGE;
}

static int help(void)
{
	printf("usage: shmq bridge out NAME redis://HOST[:PORT]/STREAM [--batch N] [--maxlen N]\n"
	       "       shmq bridge in redis://HOST[:PORT]/STREAM NAME --group G [--producers N]\n"
	       "                      [--dedup] [--batch N] [--claim-idle MS] [--join-with QUEUE]...\n"
	       "\n"
	       "out: consumes the local queue NAME and appends its messages to the Redis stream,\n"
	       "     --batch N (default %u) per entry; writes an end marker and exits 0 when every\n"
	       "     local producer is gone. --maxlen N: waits while the stream holds N entries.\n"
	       "in:  reads the stream in consumer group G and puts the messages into NAME,\n"
	       "     acknowledging each entry once it is there. --producers N: after the end\n"
	       "     markers of N out bridges, ends the local data and exits 0. --dedup: drops\n"
	       "     entries replayed after a crash. --claim-idle MS (default 60000): takes over\n"
	       "     the entries of a dead bridge of the group. --join-with QUEUE: for a\n"
	       "     JoinableQueue NAME, reports completion to the origin only once QUEUE is\n"
	       "     joined too.\n"
	       "\n"
	       "Each bridge keeps a keeper process holding its local role and the messages in\n"
	       "flight; killed, a bridge restarted with the same arguments loses nothing.\n"
	       "Exit status: 0 done, 64 usage, 65 a message too large for NAME, 69 Redis\n"
	       "unreachable at start, 75 another bridge runs with these arguments, 1 other.\n",
	       BATCH_DEFAULT);
	return 0;
}

static bool parse_url(const char *url, struct opts *o)
{
	const char *p = url;
	if (strncmp(p, "redis://", 8))
		return false;
	p += 8;
	const char *slash = strchr(p, '/');
	if (!slash || !slash[1] || strlen(slash + 1) >= sizeof(o->stream))
		return false;
	size_t hl = (size_t)(slash - p);
	const char *colon = memchr(p, ':', hl);
	o->port = 6379;
	if (colon) {
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if (end != slash || port <= 0 || port > 65535)
			return false;
		o->port = (int)port;
		hl = (size_t)(colon - p);
	}
	if (hl == 0 || hl >= sizeof(o->host))
		return false;
	memcpy(o->host, p, hl);
	o->host[hl] = 0;
	strcpy(o->stream, slash + 1);
	return true;
}

static bool parse_queue(const char *s, char out[QNAME_MAX])
{
	size_t n = strlen(s);
	if (n == 0 || n + 2 > QNAME_MAX || strchr(s + 1, '/'))
		return false;
	snprintf(out, QNAME_MAX, "%s%s", s[0] == '/' ? "" : "/", s);
	return true;
}

static bool parse_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	return parse_u64(s, strlen(s), out) && *out >= lo && *out <= hi;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_BATCH = 1, O_MAXLEN, O_GROUP, O_PRODUCERS, O_DEDUP, O_CLAIM, O_JOIN };
	static const struct option longs[] = {
		{ "batch", required_argument, 0, O_BATCH },
		{ "maxlen", required_argument, 0, O_MAXLEN },
		{ "group", required_argument, 0, O_GROUP },
		{ "producers", required_argument, 0, O_PRODUCERS },
		{ "dedup", no_argument, 0, O_DEDUP },
		{ "claim-idle", required_argument, 0, O_CLAIM },
		{ "join-with", required_argument, 0, O_JOIN },
		{ 0, 0, 0, 0 },
	};
	o->batch = BATCH_DEFAULT;
	o->claim_idle_ms = 60000;
	int c;
	uint64_t v;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case O_BATCH:
			if (!parse_num(optarg, 1, BATCH_MAX, &v))
				goto bad;
			o->batch = (unsigned)v;
			break;
		case O_MAXLEN:
			if (!parse_num(optarg, 1, UINT32_MAX, &o->maxlen))
				goto bad;
			break;
		case O_GROUP:
			if (!*optarg || strlen(optarg) >= sizeof(o->group))
				goto bad;
			strcpy(o->group, optarg);
			break;
		case O_PRODUCERS:
			if (!parse_num(optarg, 1, MAX_PRODUCERS, &v))
				goto bad;
			o->producers = (uint32_t)v;
			break;
		case O_DEDUP:
			o->dedup = true;
			break;
		case O_CLAIM:
			if (!parse_num(optarg, 1, 86400000, &v))
				goto bad;
			o->claim_idle_ms = (int64_t)v;
			break;
		case O_JOIN:
			if (o->njoin == MAX_JOIN_WITH || !parse_queue(optarg, o->join_with[o->njoin]))
				goto bad;
			o->njoin++;
			break;
		default:
			fprintf(stderr, "%s: unknown option or missing value: %s\n", prog,
				argv[optind - 1]);
			return usage();
		}
	}
	if (argc - optind != 2)
		return usage();
	const char *queue = o->dir == 'o' ? argv[optind] : argv[optind + 1];
	const char *url = o->dir == 'o' ? argv[optind + 1] : argv[optind];
	if (!parse_queue(queue, o->queue)) {
		fprintf(stderr, "%s: bad queue name '%s'\n", prog, queue);
		return usage();
	}
	if (!parse_url(url, o)) {
		fprintf(stderr, "%s: bad address '%s' (want redis://HOST[:PORT]/STREAM)\n", prog, url);
		return usage();
	}
	if (o->dir == 'i' && !o->group[0]) {
		fprintf(stderr, "%s: in needs --group G\n", prog);
		return usage();
	}
	if (o->dir == 'o' && (o->group[0] || o->producers || o->dedup || o->njoin)) {
		fprintf(stderr, "%s: --group, --producers, --dedup and --join-with are for `in`\n",
			prog);
		return usage();
	}
	if (o->dir == 'i' && o->maxlen) {
		fprintf(stderr, "%s: --maxlen is for `out`\n", prog);
		return usage();
	}
	return 0;
bad:
	fprintf(stderr, "%s: bad value '%s' for %s\n", prog, optarg, argv[optind - 1]);
	return usage();
}

static int bridge_main(struct opts *o)
{
	struct bridge b = { .o = o };
	b.rd.o = o;
	snprintf(b.rd.seq_key, sizeof(b.rd.seq_key), "%s:seq", o->stream);
	snprintf(b.rd.done_key, sizeof(b.rd.done_key), "%s:done", o->stream);
	ssize_t n = readlink("/proc/self/exe", b.self_path, sizeof(b.self_path) - 1);
	if (n <= 0) {
		say("cannot find my own executable: %s", strerror(errno));
		return 1;
	}
	b.self_path[n] = 0;

	/* The local queue first (a clear error for a typo), then Redis. */
	shmq_queue *look;
	int r = shmq_queue_open(o->queue, 0, &look);
	if (r < 0) {
		say("cannot open the queue %s: %s", o->queue, strerror(-r));
		return r == -ENOENT ? EX_NOINPUT : 1;
	}
	struct shmq_stat st;
	shmq_queue_stat(look, &st);
	b.local_msg_max = shmq_msg_max(look);
	b.joinable = st.flags & SHMQ_JOINABLE;
	shmq_queue_close(look);

	r = redis_connect(&b.rd);
	if (r < 0)
		return r == -EIO || r == -ENOMEM ? EX_UNAVAILABLE : EX_PROTOCOL;

	if ((r = window_adopt(&b, b.local_msg_max)) != 0) {
		redis_drop(&b.rd);
		return r;
	}
	struct win *w = b.win.w;
	atomic_fetch_add(&w->epoch, 1);
	if (!keeper_alive(w) && (r = keeper_spawn(&b)) < 0) {
		say("cannot start the keeper for %s: %s", o->queue, strerror(-r));
		shmq_lock_release(b.win.lock);
		window_close(&b.win);
		redis_drop(&b.rd);
		return 1;
	}
	r = o->dir == 'o' ? bridge_out(&b) : bridge_in(&b);
	shmq_lock_release(b.win.lock);
	window_close(&b.win);
	redis_drop(&b.rd);
	return r;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return help();
	if (argc == 3 && !strcmp(argv[1], "keeper")) {
		signal(SIGTERM, on_stop);
		signal(SIGINT, SIG_IGN); /* a terminal's ^C is for the bridge */
		signal(SIGHUP, SIG_IGN);
		return keeper_main(argv[2]);
	}
	if (argc < 2)
		return usage();
	struct opts o = { 0 };
	if (!strcmp(argv[1], "out"))
		o.dir = 'o';
	else if (!strcmp(argv[1], "in"))
		o.dir = 'i';
	else
		return usage();
	int r = parse_args(argc - 1, argv + 1, &o);
	if (r)
		return r;
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return bridge_main(&o);
}
