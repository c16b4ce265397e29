/* Python's multiprocessing: Queue, SimpleQueue, JoinableQueue and Pipe, run by
 * bench/mp_peers.py with the case's parameters (fork start method, same
 * barrier/stop/count rules as here); it prints one JSON line with its result.
 * Interleaved with the others like any system; interpreter start-up is outside
 * the measured time. Queue objects carry bytes (pickled); Pipe uses
 * send_bytes/recv_bytes, its fastest documented path. JoinableQueue case:
 * put + task_done, each producer join()s. Pipe ping-pong: every round trip is
 * timed into the harness's histogram buckets. */
#include "../peer.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

double bench_json_num(const char *s, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(s, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

/* "hist":[[bucket,count],...] into h. */
void bench_json_hist(const char *s, struct bench_hist *h)
{
	const char *p = strstr(s, "\"hist\":");
	if (!p)
		return;
	p += 7;
	for (;;) {
		char *end;
		while (*p == '[' || *p == ',' || *p == ' ')
			p++;
		long idx = strtol(p, &end, 10);
		if (end == p || *end != ',')
			break;
		long n = strtol(end + 1, &end, 10);
		if (idx >= 0 && idx < BENCH_LAT_BUCKETS && n > 0) {
			h->b[idx] += (uint32_t)n;
			h->n += (uint64_t)n;
		}
		p = end;
		while (*p == ']')
			p++;
		if (*p != ',')
			break;
	}
	double mx = bench_json_num(s, "max_ns");
	h->max = mx > 0 ? (uint64_t)mx : 0;
}

static const char *case_arg(enum bench_kind k)
{
	return k == CASE_JOIN ? "join" : k == CASE_CONN ? "conn" : k == CASE_CONN_PP ? "connpp" : "tput";
}

static int run_py(const char *kind, const struct bench_case *c, struct bench_run *res)
{
	char *note = res->note;
	size_t note_len = sizeof(res->note);
	if (!bench_mp_script || access(bench_mp_script, R_OK) != 0) {
		snprintf(note, note_len, "mp_peers.py not found (--mp-script)");
		return -ENOENT;
	}
	char np[16], nc[16], size[32], secs[32], maxm[32];
	snprintf(np, sizeof(np), "%d", c->np);
	snprintf(nc, sizeof(nc), "%d", c->nc);
	snprintf(size, sizeof(size), "%zu", c->size);
	snprintf(secs, sizeof(secs), "%g", c->secs);
	snprintf(maxm, sizeof(maxm), "%llu", (unsigned long long)c->max_msgs);
	char *argv[] = { "python3", (char *)bench_mp_script, "--kind", (char *)kind,
			 "--case", (char *)case_arg(c->kind), "-p", np, "-c", nc,
			 "-s", size, "-t", secs, "-n", maxm, NULL };
	pid_t pid;
	int out_fd = bench_spawn_reader("python3", argv, &pid, note, note_len);
	if (out_fd < 0)
		return out_fd;
	static char out[1 << 16];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof(out) - 1 && (r = read(out_fd, out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(out_fd);
	int st;
	waitpid(pid, &st, 0);
	char *line = strstr(out, "{\"");
	if (!line || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(note, note_len, "mp_peers.py failed (status %d)", st);
		return -EIO;
	}
	double m = bench_json_num(line, "msgs"), w = bench_json_num(line, "wall_s"),
	       e = bench_json_num(line, "errors");
	if (m < 0 || w <= 0) {
		snprintf(note, note_len, "mp_peers.py: bad output");
		return -EIO;
	}
	res->msgs = (uint64_t)m;
	res->wall_ns = (int64_t)(w * 1e9);
	res->errors = e > 0 ? (uint64_t)e : 0;
	if (c->kind == CASE_CONN_PP)
		bench_json_hist(line, &res->hist);
	if (res->errors)
		snprintf(note, note_len, "%llu integrity errors", (unsigned long long)res->errors);
	return 0;
}

static const char *models(const struct bench_case *c)
{
	switch (c->kind) {
	case CASE_JOIN:
		return "put + get + task_done, each producer join()s (a lock-protected semaphore and "
		       "condition beside the pipe-and-feeder-thread Queue)";
	case CASE_CONN:
		return "Pipe(duplex=False) (an os.pipe, default 64 KiB buffer), send_bytes / "
		       "recv_bytes (4-byte length + payload)";
	case CASE_CONN_PP:
		return "Pipe() (duplex: a socketpair), send_bytes / recv_bytes, each round trip timed "
		       "in Python";
	default:
		return NULL;
	}
}

#define MP_PEER(sym, kind, lbl, fl)                                                              \
	static int run_##sym(const struct bench_case *c, struct bench_run *res)                   \
	{                                                                                         \
		return run_py(kind, c, res);                                                      \
	}                                                                                         \
	const struct bench_peer peer_##sym = {                                                    \
		.name = "mp-" kind, .label = lbl, .flags = (fl) | PF_TPUT_ONLY, .run = run_##sym, \
		.models = models,                                                                 \
	};

MP_PEER(mp_queue, "queue", "mp.Queue", PF_MAIN)
MP_PEER(mp_simplequeue, "simplequeue", "mp.SimpleQueue", 0)
MP_PEER(mp_joinablequeue, "joinablequeue", "mp.JoinableQueue", PF_JOIN)
MP_PEER(mp_pipe, "pipe", "mp.Pipe", PF_MAX_1X1 | PF_CONN)
