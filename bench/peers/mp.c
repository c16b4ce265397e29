/* Python's multiprocessing: Queue, SimpleQueue, JoinableQueue and Pipe, run by
 * bench/mp_peers.py with the case's parameters (fork start method, same
 * barrier/stop/count rules as here); it prints one JSON line with its result.
 * Interleaved with the others like any system; interpreter start-up is outside
 * the measured time. Queue objects carry bytes (pickled); Pipe uses
 * send_bytes/recv_bytes, its fastest documented path. */
#include "../peer.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static double json_num(const char *s, const char *key)
{
	char k[64];
	snprintf(k, sizeof(k), "\"%s\":", key);
	const char *p = strstr(s, k);
	return p ? strtod(p + strlen(k), NULL) : -1;
}

static int run_py(const char *kind, const struct bench_case *c, uint64_t *msgs, int64_t *wall_ns,
		  uint64_t *errors, char *note, size_t note_len)
{
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
	char *argv[] = { "python3", (char *)bench_mp_script, "--kind", (char *)kind, "-p", np, "-c", nc,
			 "-s", size, "-t", secs, "-n", maxm, NULL };
	int fd[2];
	if (pipe(fd) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	pid_t pid;
	fflush(NULL);
	int rc = posix_spawnp(&pid, "python3", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	if (rc != 0) {
		close(fd[0]);
		snprintf(note, note_len, "python3: %s", strerror(rc));
		return -rc;
	}
	char out[4096];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof(out) - 1 && (r = read(fd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)r;
	out[len] = 0;
	close(fd[0]);
	int st;
	waitpid(pid, &st, 0);
	char *line = strstr(out, "{\"");
	if (!line || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(note, note_len, "mp_peers.py failed (status %d)", st);
		return -EIO;
	}
	double m = json_num(line, "msgs"), w = json_num(line, "wall_s"), e = json_num(line, "errors");
	if (m < 0 || w <= 0) {
		snprintf(note, note_len, "mp_peers.py: bad output");
		return -EIO;
	}
	*msgs = (uint64_t)m;
	*wall_ns = (int64_t)(w * 1e9);
	*errors = e > 0 ? (uint64_t)e : 0;
	if (*errors)
		snprintf(note, note_len, "%llu integrity errors", (unsigned long long)*errors);
	return 0;
}

#define MP_PEER(sym, kind, lbl, fl)                                                              \
	static int run_##sym(const struct bench_case *c, uint64_t *msgs, int64_t *wall_ns,      \
			     uint64_t *errors, char *note, size_t note_len)                       \
	{                                                                                         \
		return run_py(kind, c, msgs, wall_ns, errors, note, note_len);                    \
	}                                                                                         \
	const struct bench_peer peer_##sym = {                                                    \
		.name = "mp-" kind, .label = lbl, .flags = (fl) | PF_TPUT_ONLY, .run = run_##sym, \
	};

MP_PEER(mp_queue, "queue", "mp.Queue", PF_MAIN)
MP_PEER(mp_simplequeue, "simplequeue", "mp.SimpleQueue", 0)
MP_PEER(mp_joinablequeue, "joinablequeue", "mp.JoinableQueue", 0)
MP_PEER(mp_pipe, "pipe", "mp.Pipe", PF_MAX_1X1)
