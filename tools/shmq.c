/* shmq: the command-line tool. Creates, inspects and removes named queues, and
 * moves messages between them and shell pipelines (put/get/feed/cat).
 *
 * Only the public API (shmq.h) and libc. Messages are framed on stdin/stdout
 * by a newline (default), a NUL byte (-0) or a 4-byte little-endian length
 * prefix (--len). Exit codes come from sysexits.h (see main_help below).
 */
#include <shmq.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMQ_VERSION
#define SHMQ_VERSION "unknown"
#endif

#define SHM_DIR "/dev/shm"
/* stdin is read, and stdout written, in blocks this large: a block holds
 * thousands of short lines, so a syscall is rare next to ring operations, and
 * stays in the CPU cache between the ring copy and the kernel's (1 MiB was 5%
 * slower for feed & cat). */
#define IO_BLOCK (128u << 10)
/* `shmq create` makes rings of this many cells unless told otherwise (the
 * library's default is 4096): 4 MiB of 64-byte cells. Measured with feed & cat
 * on 10-160 byte lines, 16K cells and more were 5-15% faster than 4096. */
#define CREATE_CAPACITY (64u << 10)
/* stat --watch samples the counters at least this often: they wrap at
 * SHMQ_STAT_COUNT_MOD (16.7 M), which a batched producer can exceed in a
 * second, but not in 100 ms. */
#define WATCH_SAMPLE_NS 100000000LL

enum framing { FRAME_NEWLINE, FRAME_NUL, FRAME_LEN };

/* Everything the command line can say; each subcommand reads what it uses. */
struct args {
	const char *name;        /* the queue as the user wrote it (for messages) */
	char path[NAME_MAX + 2]; /* the same with the leading '/' of shm_open */
	char **rest;             /* positionals after NAME */
	int nrest;
	enum framing framing;
	uint64_t count;     /* get -n */
	int64_t timeout_ns; /* -1: wait forever */
	bool json, watch;
	int64_t interval_ns; /* stat --watch */
	struct shmq_queue_attr attr;
};

/* ------------------------------------------------------------ errors ---- */

static int exit_code(int err)
{
	switch (-err) {
	case ENOENT: return EX_NOINPUT;
	case EEXIST: return EX_CANTCREAT;
	case EACCES:
	case EPERM: return EX_NOPERM;
	case ETIMEDOUT:
	case EAGAIN: return EX_TEMPFAIL;
	case EMSGSIZE:
	case ENODATA: return EX_DATAERR;
	case EPIPE:
	case EUSERS: return EX_UNAVAILABLE;
	case EPROTO: return EX_PROTOCOL;
	case EINVAL:
	case ENAMETOOLONG: return EX_USAGE;
	default: return EX_OSERR;
	}
}

/* strerror, except where its words would mislead in this tool. */
static const char *reason(int err)
{
	switch (-err) {
	case ENOENT: return "no such queue";
	case ETIMEDOUT:
	case EAGAIN: return "timed out";
	case EPROTO: return "not a shmq queue (or another layout version, or corrupted)";
	case EUSERS: return "too many open handles on this queue";
	default: return strerror(-err);
	}
}

/* Report err about what (a queue name, "stdin", ...) and return the exit code. */
static int fail(const char *what, int err)
{
	fprintf(stderr, "shmq: %s: %s\n", what, reason(err));
	return exit_code(err);
}

/* ------------------------------------------------------------- time ----- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t deadline_after(int64_t timeout_ns)
{
	return timeout_ns < 0 ? -1 : now_ns() + timeout_ns;
}

/* What is left of a deadline, as the library's relative timeout. */
static int64_t remaining(int64_t deadline)
{
	if (deadline < 0)
		return -1;
	int64_t left = deadline - now_ns();
	return left > 0 ? left : 0;
}

/* ----------------------------------------------------------- parsing ---- */

/* A byte or cell count, with an optional K, M or G (binary) suffix. */
static bool parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '+')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	int shift = 0;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	}
	if (*end || v > (UINT32_MAX >> shift))
		return false;
	*out = (uint32_t)(v << shift);
	return true;
}

static bool parse_count(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	if (*s == '-' || *s == '+')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v == 0)
		return false;
	*out = v;
	return true;
}

/* Seconds, fractions allowed ("0.5"). */
static bool parse_seconds(const char *s, int64_t *ns)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e9)
		return false;
	*ns = (int64_t)(v * 1e9);
	return true;
}

static bool parse_mode(const char *s, uint32_t *mode)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 8);
	if (errno || end == s || *end || v > 07777)
		return false;
	*mode = (uint32_t)v;
	return true;
}

/* Users write "jobs" or "/jobs"; shm_open wants the slash. */
static bool set_name(struct args *a, const char *name)
{
	a->name = name;
	int n = snprintf(a->path, sizeof(a->path), "%s%s", name[0] == '/' ? "" : "/", name);
	return n > 1 && (size_t)n < sizeof(a->path);
}

/* ------------------------------------------------------- get and cat ---- */

/* stdout through one large buffer. The gets write messages straight into it
 * (see drain), so most messages are copied once: ring to buffer. */
struct out {
	char *buf;
	size_t len, cap;
	uint64_t undone; /* JoinableQueue: messages got, not yet task_done */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Write the buffer out. For a JoinableQueue a message is done once it is
 * handed to stdout: join then waits for cat's output, not for the reader of
 * that output. */
static int out_flush(struct out *o, shmq_queue *q)
{
	int err = write_all(STDOUT_FILENO, o->buf, o->len);
	o->len = 0;
	for (; !err && o->undone; o->undone--)
		shmq_task_done(q);
	return err;
}

/* Framing bytes around a message: a 4-byte length before it (--len), or a
 * delimiter after it. */
struct frame {
	size_t head, tail;
	char delim;
};

static struct frame frame_of(enum framing f)
{
	if (f == FRAME_LEN)
		return (struct frame){ 4, 0, 0 };
	return (struct frame){ 0, 1, f == FRAME_NUL ? '\0' : '\n' };
}

/* Frame the message of len bytes that lies at o->buf + at + fr.head: move it
 * down to o->len (if a gap is left) and add its framing. at >= o->len. */
static void frame_message(struct out *o, struct frame fr, size_t at, size_t len)
{
	char *dst = o->buf + o->len;
	if (at != o->len)
		memmove(dst + fr.head, o->buf + at + fr.head, len);
	if (fr.head) {
		uint32_t v = (uint32_t)len;
		unsigned char le[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24 };
		memcpy(dst, le, 4);
	}
	if (fr.tail)
		dst[fr.head + len] = fr.delim;
	o->len += fr.head + len + fr.tail;
}

/* Move up to limit messages (UINT64_MAX: no limit) from q to stdout until the
 * deadline. Returns 0 (limit reached), -EPIPE (end of data: every producer
 * gone and the queue drained), a library error, or a write error as -errno
 * with *write_failed set.
 *
 * Each batch of gets lands in the output buffer itself, buffer i at i *
 * stride, stride being the longest message of the last batch with its
 * framing: a run of equal-length lines is then already in place, and shorter
 * ones are moved down to close the gap. A message longer than its buffer
 * ends the batch and comes alone next time, with a buffer of msg_max. */
static int drain(shmq_queue *q, enum framing f, uint64_t limit, int64_t deadline,
		 bool *write_failed)
{
	static struct iovec iov[SHMQ_BATCH_MAX];
	const struct frame fr = frame_of(f);
	const size_t msg_max = shmq_msg_max(q), whole = fr.head + msg_max + fr.tail;
	struct shmq_stat st;
	const bool joinable = shmq_queue_stat(q, &st) == 0 && (st.flags & SHMQ_JOINABLE);
	struct out o = { .cap = IO_BLOCK + whole };
	size_t stride = 32;
	int err = (o.buf = malloc(o.cap)) ? 0 : -ENOMEM;
	*write_failed = false;

	for (uint64_t got = 0; got < limit && !err;) {
		size_t want = limit - got < SHMQ_BATCH_MAX ? limit - got : SHMQ_BATCH_MAX;
		int r = -EAGAIN;
		for (int wait = 0; wait < 2 && r == -EAGAIN; wait++) {
			/* Flush before the batch would not fit, and before
			 * waiting, so a pipeline never stalls on our buffer. */
			if (o.len && (wait || (o.cap - o.len) / stride < want)) {
				if ((err = out_flush(&o, q)))
					break;
			}
			size_t n = (o.cap - o.len) / stride < want ? (o.cap - o.len) / stride : want;
			for (size_t i = 0; i < n; i++)
				iov[i] = (struct iovec){ o.buf + o.len + i * stride + fr.head,
							 stride - fr.head - fr.tail };
			r = shmq_get_burst(q, iov, (unsigned)n, wait ? remaining(deadline) : 0);
		}
		if (err) {
			*write_failed = true;
			break;
		}
		if (r == -EMSGSIZE) { /* the next message is longer than stride */
			if (o.cap - o.len < whole && (err = out_flush(&o, q))) {
				*write_failed = true;
				break;
			}
			iov[0] = (struct iovec){ o.buf + o.len + fr.head, msg_max };
			r = shmq_get_burst(q, iov, 1, remaining(deadline));
		}
		if (r < 0) {
			err = r;
			break;
		}
		size_t base = o.len, longest = 0;
		for (int i = 0; i < r; i++) {
			frame_message(&o, fr, base + (size_t)i * stride, iov[i].iov_len);
			longest = iov[i].iov_len > longest ? iov[i].iov_len : longest;
		}
		stride = fr.head + longest + fr.tail;
		got += (unsigned)r;
		if (joinable)
			o.undone += (unsigned)r;
	}
	if (!*write_failed && o.buf) {
		int werr = out_flush(&o, q);
		*write_failed = werr != 0;
		err = werr ? werr : err;
	}
	free(o.buf);
	return err;
}

static int open_queue(const struct args *a, int roles, shmq_queue **q)
{
	int err = shmq_queue_open(a->path, roles, q);
	return err < 0 ? fail(a->name, err) : 0;
}

/* get and cat: end of data is success for cat, a shortfall for get. */
static int get_messages(const struct args *a, uint64_t limit, bool eof_ok)
{
	shmq_queue *q;
	int code = open_queue(a, SHMQ_RD, &q);
	if (code)
		return code;
	bool write_failed;
	int err = drain(q, a->framing, limit, deadline_after(a->timeout_ns), &write_failed);
	shmq_queue_close(q);
	if (write_failed)
		return fail("stdout", err);
	if (err == -EPIPE && eof_ok)
		return 0;
	if (err == -EPIPE) {
		fprintf(stderr, "shmq: %s: end of data (every producer is gone)\n", a->name);
		return EX_UNAVAILABLE;
	}
	return err ? fail(a->name, err) : 0;
}

static int cmd_get(struct args *a)
{
	return get_messages(a, a->count, false);
}

static int cmd_cat(struct args *a)
{
	return get_messages(a, UINT64_MAX, true);
}

/* ------------------------------------------------------- put and feed ---- */

/* A put that failed: -EPIPE means the consumers left, not end of data. */
static int put_failed(const struct args *a, int err)
{
	if (err != -EPIPE)
		return fail(a->name, err);
	fprintf(stderr, "shmq: %s: no consumer left (every consumer that attached is gone)\n",
		a->name);
	return EX_UNAVAILABLE;
}

/* Put n messages, waiting for room as needed, until the deadline. */
static int put_all(shmq_queue *q, const struct iovec *iov, unsigned n, int64_t deadline)
{
	for (unsigned done = 0; done < n;) {
		int r = shmq_put_burst(q, iov + done, n - done, remaining(deadline));
		if (r < 0)
			return r;
		done += (unsigned)r;
	}
	return 0;
}

/* stdin being cut into messages and put. */
struct feeder {
	shmq_queue *q;
	enum framing framing;
	size_t msg_max;
	int64_t deadline;
	uint64_t seq;     /* messages cut so far, for error messages */
	bool read_failed; /* the error is stdin's, not the queue's */
	unsigned batch;   /* messages in iov, not yet put */
	struct iovec iov[SHMQ_BATCH_MAX];
};

/* Add a message to the batch; put the batch when it is full. */
static int take(struct feeder *f, char *p, size_t len)
{
	if (len > f->msg_max)
		return -EMSGSIZE;
	f->iov[f->batch++] = (struct iovec){ p, len };
	f->seq++;
	if (f->batch < SHMQ_BATCH_MAX)
		return 0;
	f->batch = 0;
	return put_all(f->q, f->iov, SHMQ_BATCH_MAX, f->deadline);
}

/* Newline- or NUL-framed messages of p[0..len). One pass, 8 bytes at a
 * time, finds every delimiter of a word at once (SWAR: the high bit of each
 * byte equal to the delimiter, exactly, with no carry between bytes): a
 * memchr call per line costs more than a 20-byte line. Returns 0 or an
 * error, and in *used the bytes of the messages taken. */
static int cut_delimited(struct feeder *f, char *p, size_t len, bool eof, size_t *used)
{
	const uint64_t ones = 0x0101010101010101u, low7 = ones * 0x7f;
	const char delim = f->framing == FRAME_NUL ? '\0' : '\n';
	const uint64_t pattern = ones * (unsigned char)delim;
	size_t start = 0, i = 0;
	int err = 0;
	for (; i + 8 <= len && !err; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		w = __builtin_bswap64(w); /* byte 0 in the low bits, as below */
#endif
		w ^= pattern;
		uint64_t hits = ~(((w & low7) + low7) | w | low7);
		for (; hits && !err; hits &= hits - 1) {
			size_t at = i + (size_t)__builtin_ctzll(hits) / 8;
			err = take(f, p + start, at - start);
			start = at + 1;
		}
	}
	for (; i < len && !err; i++)
		if (p[i] == delim) {
			err = take(f, p + start, i - start);
			start = i + 1;
		}
	/* The rest has no delimiter: at the end of input it is a last message
	 * (as in most line tools); otherwise it waits for more input, unless it
	 * is already too long. */
	if (!err && eof && start < len) {
		err = take(f, p + start, len - start);
		start = len;
	}
	if (!err && len - start > f->msg_max)
		err = -EMSGSIZE;
	*used = start;
	return err;
}

/* --len framed messages of p[0..len): a 4-byte little-endian length, then
 * the bytes. -ENODATA: the input ends inside a message. */
static int cut_length_prefixed(struct feeder *f, char *p, size_t len, bool eof, size_t *used)
{
	size_t pos = 0;
	int err = 0;
	while (!err && len - pos >= 4) {
		const unsigned char *u = (const unsigned char *)p + pos;
		size_t n = u[0] | (size_t)u[1] << 8 | (size_t)u[2] << 16 | (size_t)u[3] << 24;
		if (n > f->msg_max)
			err = -EMSGSIZE;
		else if (len - pos - 4 < n)
			break;
		else if (!(err = take(f, p + pos + 4, n)))
			pos += 4 + n;
	}
	if (!err && eof && pos < len)
		err = -ENODATA;
	*used = pos;
	return err;
}

/* Cut the complete messages off p[0..len) (at eof: all of it) and put them
 * in batches that point into p, so the ring copy is the only copy. *used
 * says how much was consumed. Returns 0 or an error; the messages before a
 * bad one are put, since they were fine. */
static int cut_and_put(struct feeder *f, char *p, size_t len, bool eof, size_t *used)
{
	int err = f->framing == FRAME_LEN ? cut_length_prefixed(f, p, len, eof, used)
					  : cut_delimited(f, p, len, eof, used);
	if (f->batch) { /* (a failed put left none) */
		int perr = put_all(f->q, f->iov, f->batch, f->deadline);
		err = perr ? perr : err;
		f->batch = 0;
	}
	return err;
}

/* stdin in large blocks; a partial message waits at the buffer's start for
 * the rest of it. */
static int feed_read(struct feeder *f)
{
	size_t cap = IO_BLOCK + f->msg_max + 4; /* a whole message and more */
	char *buf = malloc(cap);
	size_t end = 0, used;
	bool eof = false;
	int err = buf ? 0 : -ENOMEM;
	while (!eof && !err) {
		ssize_t n = read(STDIN_FILENO, buf + end, cap - end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			f->read_failed = true;
			err = -errno;
			break;
		}
		eof = n == 0;
		end += (size_t)n;
		err = cut_and_put(f, buf, end, eof, &used);
		memmove(buf, buf + used, end - used);
		end -= used;
	}
	free(buf);
	return err;
}

static int feed_stdin(shmq_queue *q, const struct args *a, int64_t deadline)
{
	static struct feeder f;
	f = (struct feeder){ .q = q, .framing = a->framing, .msg_max = shmq_msg_max(q),
			     .deadline = deadline };
	int err = feed_read(&f);
	if (f.read_failed)
		return fail("stdin", err);
	if (err == -EMSGSIZE) {
		fprintf(stderr, "shmq: %s: message %" PRIu64 " is longer than the queue's msg_max (%zu bytes)\n",
			a->name, f.seq + 1, f.msg_max);
		return EX_DATAERR;
	}
	if (err == -ENODATA) {
		fprintf(stderr, "shmq: %s: stdin ends inside message %" PRIu64 " (--len framing)\n",
			a->name, f.seq + 1);
		return EX_DATAERR;
	}
	return err ? put_failed(a, err) : 0;
}

/* The arguments after NAME, each one message. All are checked first, so a
 * bad one puts nothing. */
static int put_args(shmq_queue *q, const struct args *a, int64_t deadline)
{
	size_t msg_max = shmq_msg_max(q);
	for (int i = 0; i < a->nrest; i++)
		if (strlen(a->rest[i]) > msg_max) {
			fprintf(stderr, "shmq: %s: message %d is longer than the queue's msg_max (%zu bytes)\n",
				a->name, i + 1, msg_max);
			return EX_DATAERR;
		}
	for (int i = 0; i < a->nrest;) {
		struct iovec iov[SHMQ_BATCH_MAX];
		unsigned n = 0;
		for (; i < a->nrest && n < SHMQ_BATCH_MAX; i++)
			iov[n++] = (struct iovec){ a->rest[i], strlen(a->rest[i]) };
		int err = put_all(q, iov, n, deadline);
		if (err)
			return put_failed(a, err);
	}
	return 0;
}

static int cmd_put(struct args *a)
{
	shmq_queue *q;
	int code = open_queue(a, SHMQ_WR, &q);
	if (code)
		return code;
	int64_t deadline = deadline_after(a->timeout_ns);
	code = a->nrest ? put_args(q, a, deadline) : feed_stdin(q, a, deadline);
	shmq_queue_close(q); /* the last producer's close is the consumers' EOF */
	return code;
}

static int cmd_feed(struct args *a)
{
	return cmd_put(a); /* put without MSG arguments, under the name users expect */
}

/* ------------------------------------------------- create, rm, ls, stat -- */

static int cmd_create(struct args *a)
{
	shmq_queue *q;
	/* No role: the queue waits for its first producer instead of reading
	 * our exit as the end of data. */
	a->attr.flags |= SHMQ_NOROLES;
	int err = shmq_queue_create(a->path, &a->attr, &q);
	if (err < 0)
		return fail(a->name, err);
	shmq_queue_close(q);
	return 0;
}

/* Remove a queue, only if it is one: /dev/shm holds other programs'
 * segments too, and a typo should not delete one of them. */
static int remove_queue(const struct args *a)
{
	shmq_queue *q;
	int err = shmq_queue_open(a->path, 0, &q);
	if (err == 0) {
		shmq_queue_close(q);
		err = shmq_unlink(a->path);
	}
	return err < 0 ? fail(a->name, err) : 0;
}

static int cmd_rm(struct args *a)
{
	int code = remove_queue(a);
	for (int i = 0; i < a->nrest; i++) {
		struct args one;
		int c = set_name(&one, a->rest[i]) ? remove_queue(&one)
						   : fail(a->rest[i], -ENAMETOOLONG);
		code = c ? c : code;
	}
	return code;
}

struct ls_row {
	char name[NAME_MAX + 1];
	struct shmq_stat st;
};

static int by_name(const void *x, const void *y)
{
	return strcmp(((const struct ls_row *)x)->name, ((const struct ls_row *)y)->name);
}

static int digits(uint64_t v)
{
	int d = 1;
	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

static int max_int(int x, int y)
{
	return x > y ? x : y;
}

static int cmd_ls(struct args *a)
{
	(void)a;
	DIR *dir = opendir(SHM_DIR);
	if (!dir)
		return fail(SHM_DIR, -errno);
	struct ls_row *rows = NULL;
	size_t n = 0, cap = 0;
	int code = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		struct stat sb;
		/* Skip what cannot be a queue without asking the library, which
		 * waits 100 ms on a short file in case a creator is sizing it:
		 * directories, empty files, and glibc's POSIX semaphores. */
		if (e->d_name[0] == '.' || !strncmp(e->d_name, "sem.", 4) ||
		    fstatat(dirfd(dir), e->d_name, &sb, 0) < 0 || !S_ISREG(sb.st_mode) ||
		    sb.st_size == 0)
			continue;
		char path[NAME_MAX + 2];
		snprintf(path, sizeof(path), "/%s", e->d_name);
		shmq_queue *q;
		int err = shmq_queue_open(path, 0, &q);
		if (err == -EPROTO || err == -EACCES || err == -ENOENT)
			continue; /* not a queue, not ours to read, or just removed */
		if (err < 0) {
			code = fail(e->d_name, err);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			struct ls_row *grown = realloc(rows, cap * sizeof(*rows));
			if (!grown) {
				shmq_queue_close(q);
				code = fail("ls", -ENOMEM);
				break;
			}
			rows = grown;
		}
		snprintf(rows[n].name, sizeof(rows[n].name), "%s", e->d_name);
		shmq_queue_stat(q, &rows[n].st);
		shmq_queue_close(q);
		n++;
	}
	closedir(dir);
	if (n)
		qsort(rows, n, sizeof(*rows), by_name);

	static const char *head[] = { "NAME", "CAPACITY", "CELL_SIZE", "MSG_MAX", "DEPTH",
				      "PRODUCERS", "CONSUMERS" };
	int w[7];
	for (int c = 0; c < 7; c++)
		w[c] = (int)strlen(head[c]);
	for (size_t i = 0; i < n; i++) {
		const struct shmq_stat *s = &rows[i].st;
		w[0] = max_int(w[0], (int)strlen(rows[i].name));
		w[1] = max_int(w[1], digits(s->capacity));
		w[2] = max_int(w[2], digits(s->cell_size));
		w[3] = max_int(w[3], digits(s->msg_max));
		w[4] = max_int(w[4], digits(s->depth));
		w[5] = max_int(w[5], digits(s->producers));
		w[6] = max_int(w[6], digits(s->consumers));
	}
	printf("%-*s  %*s  %*s  %*s  %*s  %*s  %*s\n", w[0], head[0], w[1], head[1], w[2],
	       head[2], w[3], head[3], w[4], head[4], w[5], head[5], w[6], head[6]);
	for (size_t i = 0; i < n; i++) {
		const struct shmq_stat *s = &rows[i].st;
		printf("%-*s  %*" PRIu32 "  %*" PRIu32 "  %*" PRIu32 "  %*" PRIu64 "  %*" PRIu32
		       "  %*" PRIu32 "\n",
		       w[0], rows[i].name, w[1], s->capacity, w[2], s->cell_size, w[3], s->msg_max,
		       w[4], s->depth, w[5], s->producers, w[6], s->consumers);
	}
	free(rows);
	return fflush(stdout) ? fail("stdout", -errno) : code;
}

/* A JSON string: names may hold any byte but '/' and NUL. */
static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* rates: put and get rates in msg/s, or NULL when not watching. */
static void print_stat_json(const char *name, const struct shmq_stat *s, const double *rates)
{
	printf("{\"name\":");
	json_string(name);
	printf(",\"size\":%" PRIu64 ",\"capacity\":%" PRIu32 ",\"cell_size\":%" PRIu32
	       ",\"msg_max\":%" PRIu32 ",\"joinable\":%s,\"depth\":%" PRIu64
	       ",\"producers\":%" PRIu32 ",\"consumers\":%" PRIu32 ",\"puts\":%" PRIu32
	       ",\"gets\":%" PRIu32 ",\"count_mod\":%u",
	       s->size, s->capacity, s->cell_size, s->msg_max,
	       s->flags & SHMQ_JOINABLE ? "true" : "false", s->depth, s->producers, s->consumers,
	       s->puts, s->gets, SHMQ_STAT_COUNT_MOD);
	if (s->flags & SHMQ_JOINABLE)
		printf(",\"held\":%" PRIu64 ",\"lost\":%" PRIu64, s->held, s->lost);
	if (rates)
		printf(",\"put_rate\":%.1f,\"get_rate\":%.1f", rates[0], rates[1]);
	printf("}\n");
}

static void print_stat_text(const char *name, const struct shmq_stat *s)
{
	printf("name:       %s\n", name);
	printf("size:       %" PRIu64 " bytes\n", s->size);
	printf("capacity:   %" PRIu32 " cells\n", s->capacity);
	printf("cell_size:  %" PRIu32 " bytes\n", s->cell_size);
	printf("msg_max:    %" PRIu32 " bytes\n", s->msg_max);
	printf("joinable:   %s\n", s->flags & SHMQ_JOINABLE ? "yes" : "no");
	printf("depth:      %" PRIu64 " messages\n", s->depth);
	printf("producers:  %" PRIu32 "\n", s->producers);
	printf("consumers:  %" PRIu32 "\n", s->consumers);
	printf("puts:       %" PRIu32 " (mod %u)\n", s->puts, SHMQ_STAT_COUNT_MOD);
	printf("gets:       %" PRIu32 " (mod %u)\n", s->gets, SHMQ_STAT_COUNT_MOD);
	if (s->flags & SHMQ_JOINABLE) {
		printf("held:       %" PRIu64 "\n", s->held);
		printf("lost:       %" PRIu64 "\n", s->lost);
	}
}

static volatile sig_atomic_t stop_watch;

static void on_stop(int sig)
{
	(void)sig;
	stop_watch = 1;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	nanosleep(&ts, NULL); /* a signal ends it early: the loop checks stop_watch */
}

/* One line per interval: rewritten in place (\r) on a terminal, appended
 * otherwise so a log stays readable. Runs until SIGINT or SIGTERM. */
static int watch_stat(shmq_queue *q, const struct args *a)
{
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	bool tty = isatty(STDOUT_FILENO);
	struct shmq_stat prev, st;
	shmq_queue_stat(q, &prev);
	int64_t start = now_ns();
	uint64_t puts = 0, gets = 0;
	while (!stop_watch) {
		int64_t due = start + a->interval_ns, now = now_ns();
		sleep_ns(due - now < WATCH_SAMPLE_NS ? due - now : WATCH_SAMPLE_NS);
		shmq_queue_stat(q, &st);
		puts += (st.puts - prev.puts) & (SHMQ_STAT_COUNT_MOD - 1);
		gets += (st.gets - prev.gets) & (SHMQ_STAT_COUNT_MOD - 1);
		prev = st;
		now = now_ns();
		if (now < due && !stop_watch)
			continue;
		double secs = (double)(now - start) / 1e9;
		double rates[2] = { (double)puts / secs, (double)gets / secs };
		if (a->json)
			print_stat_json(a->name, &st, rates);
		else
			printf("%sdepth %10" PRIu64 "  put %11.0f msg/s  get %11.0f msg/s  "
			       "producers %4" PRIu32 "  consumers %4" PRIu32 "%s",
			       tty ? "\r" : "", st.depth, rates[0], rates[1], st.producers,
			       st.consumers, tty ? "" : "\n");
		if (fflush(stdout))
			return fail("stdout", -errno);
		start = now;
		puts = gets = 0;
	}
	if (tty && !a->json)
		putchar('\n');
	return 0;
}

static int cmd_stat(struct args *a)
{
	if (a->nrest && (!a->watch || !parse_seconds(a->rest[0], &a->interval_ns) ||
			 a->interval_ns == 0)) {
		fprintf(stderr, "shmq: stat: bad argument '%s' (try shmq stat --help)\n", a->rest[0]);
		return EX_USAGE;
	}
	shmq_queue *q;
	int code = open_queue(a, 0, &q);
	if (code)
		return code;
	struct shmq_stat st;
	int err = shmq_queue_stat(q, &st);
	if (err < 0)
		code = fail(a->name, err);
	else if (a->watch)
		code = watch_stat(q, a);
	else if (a->json)
		print_stat_json(a->name, &st, NULL);
	else
		print_stat_text(a->name, &st);
	shmq_queue_close(q);
	if (!code && fflush(stdout))
		code = fail("stdout", -errno);
	return code;
}

/* ------------------------------------------------------------- help ----- */

#define FRAMING_HELP                                                             \
	"  -0, --null   messages are NUL-terminated (default: newline-terminated;\n" \
	"               the delimiter is not part of the message)\n"                 \
	"  --len        messages are a 4-byte little-endian length, then the bytes\n"

static const char main_help[] =
	"usage: shmq COMMAND [OPTIONS] NAME ...\n"
	"Named shared-memory message queues (libshmq) for shell pipelines.\n"
	"\n"
	"commands:\n"
	"  create NAME    create a queue (waits for its first producer)\n"
	"  rm NAME...     remove queues\n"
	"  ls             list the queues in " SHM_DIR "\n"
	"  stat NAME      show a queue's geometry, depth and counters\n"
	"  put NAME [MSG...]  put each MSG, or stdin's messages\n"
	"  get NAME       get messages (-n COUNT, default 1) to stdout\n"
	"  cat NAME       copy messages to stdout until every producer is gone\n"
	"  feed NAME      copy stdin's messages to the queue until end of input\n"
	"  bridge out|in  carry a queue over a Redis stream (the shmq-bridge program)\n"
	"\n"
	"'shmq COMMAND --help' describes each. NAME is 'jobs' or '/jobs' (" SHM_DIR "/jobs).\n"
	"\n"
	"exit status:\n"
	"   0  success\n"
	"  64  bad usage or argument (EX_USAGE)\n"
	"  65  bad input data: a message longer than msg_max, a truncated --len\n"
	"      message (EX_DATAERR)\n"
	"  66  no such queue (EX_NOINPUT)\n"
	"  69  end of data before get had COUNT messages, or no consumer left\n"
	"      for put/feed (EX_UNAVAILABLE)\n"
	"  71  system error, e.g. out of memory (EX_OSERR)\n"
	"  73  the queue already exists (EX_CANTCREAT)\n"
	"  74  read or write error on stdin/stdout (EX_IOERR)\n"
	"  75  timed out (EX_TEMPFAIL)\n"
	"  76  not a shmq queue, another layout version, or corrupted (EX_PROTOCOL)\n"
	"  77  permission denied (EX_NOPERM)\n";

/* Options, one bit each, so a command says which it takes. */
enum {
	OPT_CAPACITY = 1 << 0,
	OPT_MSG_MAX = 1 << 1,
	OPT_CELL_SIZE = 1 << 2,
	OPT_JOINABLE = 1 << 3,
	OPT_MODE = 1 << 4,
	OPT_JSON = 1 << 5,
	OPT_WATCH = 1 << 6,
	OPT_TIMEOUT = 1 << 7,
	OPT_COUNT = 1 << 8,
	OPT_FRAMING = 1 << 9, /* -0 and --len */
};

struct command {
	const char *name;
	int (*run)(struct args *);
	unsigned opts;
	int max_rest; /* positionals after NAME (NAME itself is required unless no_name) */
	bool no_name;
	const char *help;
};

static const struct command commands[] = {
	{ "create", cmd_create, OPT_CAPACITY | OPT_MSG_MAX | OPT_CELL_SIZE | OPT_JOINABLE | OPT_MODE,
	  0, false,
	  "usage: shmq create NAME [--capacity N] [--msg-max B] [--cell-size B] [--joinable] [--mode MODE]\n"
	  "Create a queue. It holds no role itself: consumers wait for its first producer.\n"
	  "  --capacity N   ring size in cells, rounded up to a power of two (default 64K)\n"
	  "  --msg-max B    largest message in bytes (default 64K, at most 16M)\n"
	  "  --cell-size B  bytes per ring cell, a power of two, 16..64K (default 64); a\n"
	  "                 message takes ceil(len / (B - 8)) cells\n"
	  "  --joinable     a JoinableQueue (task_done/join)\n"
	  "  --mode MODE    permission bits, octal (default 0600)\n"
	  "Sizes take a K, M or G suffix (binary).\n" },
	{ "rm", cmd_rm, 0, INT_MAX, false,
	  "usage: shmq rm NAME...\n"
	  "Remove queues by name (only shmq queues); attached processes keep working.\n" },
	{ "ls", cmd_ls, 0, 0, true,
	  "usage: shmq ls\n"
	  "List the queues in " SHM_DIR " that you can open: geometry, depth (queued\n"
	  "messages) and the live producers and consumers.\n" },
	{ "stat", cmd_stat, OPT_JSON | OPT_WATCH, 1, false,
	  "usage: shmq stat NAME [--json] [--watch [SECONDS]]\n"
	  "Show a queue's geometry, depth, live producers/consumers and the put/get\n"
	  "counters (which wrap at 16777216).\n"
	  "  --json             one JSON object\n"
	  "  --watch [SECONDS]  refresh depth and put/get rates (msg/s) every SECONDS\n"
	  "                     (default 1; after NAME, or --watch=SECONDS) until\n"
	  "                     interrupted: one line rewritten in place on a\n"
	  "                     terminal; with --json, one object per line\n" },
	{ "put", cmd_put, OPT_FRAMING | OPT_TIMEOUT, INT_MAX, false,
	  "usage: shmq put NAME [-0|--len] [--timeout S] [--] [MSG...]\n"
	  "Put each MSG as one message, in order; with no MSG, put stdin's messages\n"
	  "(as feed does). Waits for room in the queue.\n" FRAMING_HELP
	  "  --timeout S  give up (exit 75) after S seconds (fractions allowed)\n" },
	{ "get", cmd_get, OPT_FRAMING | OPT_TIMEOUT | OPT_COUNT, 0, false,
	  "usage: shmq get NAME [-n COUNT] [-0|--len] [--timeout S]\n"
	  "Get COUNT messages (default 1) and write them to stdout, framed. Waits for\n"
	  "them; exits 69 if every producer is gone first, 75 on timeout (the messages\n"
	  "got by then are written).\n" FRAMING_HELP
	  "  -n, --count COUNT  how many messages\n"
	  "  --timeout S        wait at most S seconds in all (fractions allowed)\n" },
	{ "cat", cmd_cat, OPT_FRAMING, 0, false,
	  "usage: shmq cat NAME [-0|--len]\n"
	  "Write messages to stdout, framed, until end of data: every producer that\n"
	  "attached is gone (closed or dead) and the queue is drained. Waits for the\n"
	  "first producer of a new queue.\n" FRAMING_HELP },
	{ "feed", cmd_feed, OPT_FRAMING, 0, false,
	  "usage: shmq feed NAME [-0|--len]\n"
	  "Put stdin's messages until end of input, then detach: once every producer\n"
	  "is gone, consumers (cat) see end of data. A last line without a newline is\n"
	  "still a message. A message longer than msg_max stops it (exit 65); the\n"
	  "messages before it are put.\n" FRAMING_HELP },
};

enum { O_CAPACITY = 256, O_MSG_MAX, O_CELL_SIZE, O_JOINABLE, O_MODE, O_JSON, O_WATCH, O_TIMEOUT,
       O_LEN };

static const struct option long_opts[] = {
	{ "capacity", required_argument, NULL, O_CAPACITY },
	{ "msg-max", required_argument, NULL, O_MSG_MAX },
	{ "cell-size", required_argument, NULL, O_CELL_SIZE },
	{ "joinable", no_argument, NULL, O_JOINABLE },
	{ "mode", required_argument, NULL, O_MODE },
	{ "json", no_argument, NULL, O_JSON },
	{ "watch", optional_argument, NULL, O_WATCH },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "count", required_argument, NULL, 'n' },
	{ "null", no_argument, NULL, '0' },
	{ "len", no_argument, NULL, O_LEN },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int usage_error(const struct command *c, const char *fmt, const char *what)
{
	fprintf(stderr, "shmq: %s: ", c->name);
	fprintf(stderr, fmt, what);
	fprintf(stderr, " (try shmq %s --help)\n", c->name);
	return EX_USAGE;
}

/* Fill *a from argv (getopt permutes: options may follow NAME; "--" ends
 * them). Returns -1 to go on, or the exit code. */
static int parse_args(const struct command *c, int argc, char **argv, struct args *a)
{
	static const struct {
		int val;
		unsigned bit;
	} bits[] = { { O_CAPACITY, OPT_CAPACITY }, { O_MSG_MAX, OPT_MSG_MAX },
		     { O_CELL_SIZE, OPT_CELL_SIZE }, { O_JOINABLE, OPT_JOINABLE },
		     { O_MODE, OPT_MODE }, { O_JSON, OPT_JSON }, { O_WATCH, OPT_WATCH },
		     { O_TIMEOUT, OPT_TIMEOUT }, { 'n', OPT_COUNT }, { '0', OPT_FRAMING },
		     { O_LEN, OPT_FRAMING } };
	*a = (struct args){ .count = 1, .timeout_ns = -1, .interval_ns = 1000000000 };
	shmq_queue_attr_init(&a->attr);
	a->attr.capacity = CREATE_CAPACITY;
	opterr = 0;
	optind = 1;
	int o;
	while ((o = getopt_long(argc, argv, ":0n:h", long_opts, NULL)) != -1) {
		if (o == 'h') {
			fputs(c->help, stdout);
			return fflush(stdout) ? EX_IOERR : 0;
		}
		if (o == '?' || o == ':') {
			/* A short option's letter is in optopt; a long one's name in argv. */
			char letter[3] = { '-', (char)optopt, 0 };
			const char *opt = optopt ? letter : argv[optind - 1];
			return usage_error(c, o == '?' ? "unknown option '%s'" : "option '%s' needs a value",
					   opt);
		}
		unsigned bit = 0;
		for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
			if (bits[i].val == o)
				bit = bits[i].bit;
		if (!(c->opts & bit))
			return usage_error(c, "option '%s' does not apply", argv[optind - 1]);
		bool ok = true;
		switch (o) {
		case O_CAPACITY: ok = parse_u32(optarg, &a->attr.capacity); break;
		case O_MSG_MAX: ok = parse_u32(optarg, &a->attr.msg_max); break;
		case O_CELL_SIZE: ok = parse_u32(optarg, &a->attr.cell_size); break;
		case O_JOINABLE: a->attr.flags |= SHMQ_JOINABLE; break;
		case O_MODE: ok = parse_mode(optarg, &a->attr.mode); break;
		case O_JSON: a->json = true; break;
		case O_WATCH:
			a->watch = true;
			ok = !optarg || (parse_seconds(optarg, &a->interval_ns) && a->interval_ns > 0);
			break;
		case O_TIMEOUT: ok = parse_seconds(optarg, &a->timeout_ns); break;
		case 'n': ok = parse_count(optarg, &a->count); break;
		case '0': a->framing = FRAME_NUL; break;
		case O_LEN: a->framing = FRAME_LEN; break;
		}
		if (!ok)
			return usage_error(c, "bad value '%s'", optarg);
	}
	char **pos = argv + optind;
	int npos = argc - optind;
	if (!c->no_name) {
		if (npos == 0)
			return usage_error(c, "%s", "missing NAME");
		if (!set_name(a, pos[0]))
			return usage_error(c, "bad queue name '%s'", pos[0]);
		pos++;
		npos--;
	}
	if (npos > c->max_rest)
		return usage_error(c, "unexpected argument '%s'", pos[c->max_rest]);
	a->rest = pos;
	a->nrest = npos;
	return -1;
}

/* `shmq bridge ARGS`: run shmq-bridge ARGS, which links hiredis so that this
 * tool does not. Looked for beside this executable first (a build tree, or
 * the same bin directory), then on PATH. Returns only on failure. */
static int run_bridge(char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	argv[0] = "shmq-bridge";
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			snprintf(path, sizeof(path), "%s/shmq-bridge", self);
			execv(path, argv);
		}
	}
	execvp("shmq-bridge", argv);
	fprintf(stderr, "shmq: bridge: cannot run shmq-bridge (%s); it is built where hiredis is"
			" installed (Debian: libhiredis-dev)\n",
		strerror(errno));
	return EX_UNAVAILABLE;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "bridge"))
		return run_bridge(argv + 1);
	if (argc < 2) {
		fputs(main_help, stderr);
		return EX_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
		if (argc > 2 && strcmp(name, "help") == 0)
			for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
				if (!strcmp(argv[2], commands[i].name)) {
					fputs(commands[i].help, stdout);
					return 0;
				}
		fputs(main_help, stdout);
		return fflush(stdout) ? EX_IOERR : 0;
	}
	if (!strcmp(name, "--version")) {
		puts("shmq " SHMQ_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (strcmp(name, c->name))
			continue;
		struct args a;
		int code = parse_args(c, argc - 1, argv + 1, &a);
		return code >= 0 ? code : c->run(&a);
	}
	fprintf(stderr, "shmq: unknown command '%s' (try shmq --help)\n", name);
	return EX_USAGE;
}
