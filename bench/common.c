/* shmq-bench: helpers that peers call from their workers. */
#include "peer.h"

#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <spawn.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>


static void futex_wait_u32(_Atomic uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, NULL, NULL, 0);
}

void bench_arrive(_Atomic uint32_t *arrived, _Atomic uint32_t *go)
{
	atomic_fetch_add(arrived, 1);
	while (!atomic_load(go))
		futex_wait_u32(go, 0);
}

void bench_ready(struct bench_worker *w)
{
	struct bench_shared *sh = w->sh;
	bench_arrive(&sh->arrived, &sh->go);
	if (w->interval)
		w->next_send = sh->t0 + (int64_t)((uint64_t)w->interval * (uint64_t)w->id /
						  (uint64_t)w->c->np);
}

void bench_set_note(struct bench_worker *w, const char *fmt, ...)
{
	struct bench_wres *r = w->producer ? &w->sh->prod[w->id] : &w->sh->cons[w->id];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->note, sizeof(r->note), fmt, ap);
	va_end(ap);
}

void bench_producer_done(struct bench_worker *w)
{
	struct bench_shared *sh = w->sh;
	struct bench_wres *r = &sh->prod[w->id];
	r->msgs = w->seq - 1;
	r->errors = w->errors;
	r->t_end = bench_now();
	atomic_fetch_add(&sh->sent_total, r->msgs);
	if (atomic_fetch_add(&sh->prod_done, 1) + 1 == (uint32_t)w->c->np)
		atomic_store(&sh->stop, 1); /* quota reached everywhere: stop now */
}

void bench_join_done(struct bench_worker *w)
{
	w->sh->prod[w->id].joined = true;
	bench_producer_done(w);
}

void bench_consumer_done(struct bench_worker *w)
{
	struct bench_wres *r = &w->sh->cons[w->id];
	r->msgs = w->msgs;
	r->errors = w->errors;
	r->t_end = w->t_end;
}

bool bench_all_received(struct bench_worker *w)
{
	/* What this consumer (thread) already added to the shared total. */
	static _Thread_local uint64_t flushed;
	uint64_t delta = w->msgs - flushed;
	flushed = w->msgs;
	uint64_t got = delta ? atomic_fetch_add(&w->sh->recv_total, delta) + delta
			     : atomic_load(&w->sh->recv_total);
	if (atomic_load(&w->sh->prod_done) != (uint32_t)w->c->np)
		return false;
	return got >= atomic_load(&w->sh->sent_total) ||
	       atomic_load(&w->sh->recv_total) >= atomic_load(&w->sh->sent_total);
}

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	unsigned idx;
	if (ns < 32) {
		idx = (unsigned)ns;
	} else {
		unsigned lg = 63 - (unsigned)__builtin_clzll(ns); /* >= 5 */
		unsigned sub = (unsigned)(ns >> (lg - 5)) & 31;
		idx = (lg - 4) * 32 + sub;
	}
	if (idx >= BENCH_LAT_BUCKETS)
		idx = BENCH_LAT_BUCKETS - 1;
	h->b[idx]++;
	h->n++;
	if (ns > h->max)
		h->max = ns;
}

void bench_pace(struct bench_worker *w)
{
	int64_t now = bench_now();
	int64_t d = w->next_send - now;
	if (d > 60000) {
		int64_t t = w->next_send - 40000;
		struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	unsigned spins = 0;
	while (bench_now() < w->next_send && !bench_stopping(w))
		bench_backoff(&spins);
	w->next_send += w->interval;
	now = bench_now();
	if (w->next_send < now - 1000000) /* more than 1 ms behind: do not burst */
		w->next_send = now;
}

void *bench_buf(size_t size)
{
	size_t n = (size + 63) & ~(size_t)63;
	void *p = aligned_alloc(64, n ? n : 64);
	if (p)
		memset(p, 0xa5, n);
	return p;
}

ssize_t bench_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = write(fd, (const char *)buf + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t bench_read_full(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = read(fd, (char *)buf + done, len - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int bench_send_framed(int fd, const void *buf, size_t len)
{
	if (len > UINT32_MAX)
		return -EMSGSIZE;
	uint32_t hdr = (uint32_t)len;
	struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { (void *)buf, len } };
	ssize_t r;
	while ((r = writev(fd, iov, 2)) < 0 && errno == EINTR)
		;
	if (r < 0)
		return -errno;
	size_t done = (size_t)r; /* a partial write: the rest, plainly */
	if (done < sizeof(hdr)) {
		r = bench_write_full(fd, (char *)&hdr + done, sizeof(hdr) - done);
		if (r < 0)
			return (int)r;
		done = sizeof(hdr);
	}
	done -= sizeof(hdr);
	r = done < len ? bench_write_full(fd, (const char *)buf + done, len - done) : 0;
	return r < 0 ? (int)r : 0;
}

ssize_t bench_recv_framed(int fd, void *buf, size_t cap)
{
	uint32_t hdr;
	ssize_t r = bench_read_full(fd, &hdr, sizeof(hdr));
	if (r != (ssize_t)sizeof(hdr))
		return r < 0 ? r : r == 0 ? -EPIPE : -EPROTO;
	if (hdr > cap)
		return -EMSGSIZE;
	r = bench_read_full(fd, buf, hdr);
	return r < 0 ? r : r != (ssize_t)hdr ? -EPROTO : r;
}

size_t bench_depth(size_t size)
{
	size_t n = (256u << 10) / (size < 64 ? 64 : size);
	return n < 16 ? 16 : n > 4096 ? 4096 : n;
}

void bench_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

int bench_ping_rounds(struct bench_worker *w, void *ctx,
		      int (*round)(void *ctx, void *buf, size_t size))
{
	size_t size = w->c->size, n = size < 8 ? size : 8;
	char *buf = bench_buf(size), sent[8];
	struct bench_hist *h = w->c->kind == CASE_CONN_PP ? &w->sh->hist[0] : NULL;
	bench_ready(w);
	int64_t t0 = bench_now(), t = t0;
	uint64_t i = 0;
	int rc = 0;
	for (; bench_pp_more(w, i); i++) {
		bench_fill(w, buf);
		memcpy(sent, buf, n);
		if ((rc = round(ctx, buf, size)) < 0)
			break;
		if (h) { /* one clock read per round: its end is the next one's start */
			int64_t now = bench_now();
			bench_hist_add(h, (uint64_t)(now - t));
			t = now;
		}
		if (memcmp(sent, buf, n) != 0)
			w->errors++;
	}
	bench_pp_record(w, i, bench_now() - t0);
	return rc;
}

void sleep_ns(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool bench_window(struct bench_window *w, pid_t *pids, int npids, bool failed, char *note,
		  size_t note_len)
{
	int64_t limit = bench_now() + w->arrive_ns;
	while (!failed && atomic_load(w->arrived) < w->n) {
		for (int i = 0; i < npids; i++) {
			int st;
			if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				pids[i] = -1;
				failed = true;
			}
		}
		if (bench_now() > limit) {
			failed = true;
			snprintf(note, note_len, "workers never reached the barrier");
		}
		sleep_ns(100000);
	}
	int64_t t0 = bench_now();
	*w->t0 = t0;
	atomic_store(w->go, 1);
	syscall(SYS_futex, (uint32_t *)w->go, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	if (failed)
		atomic_store(w->stop, 1);
	int64_t stop_at = t0 + (int64_t)(w->secs * 1e9);
	while (!atomic_load(w->stop)) {
		int64_t now = bench_now();
		if (now >= stop_at)
			break;
		sleep_ns(stop_at - now < 5000000 ? stop_at - now : 5000000);
	}
	atomic_store(w->stop, 1);
	return failed;
}

bool bench_reap(pid_t *pids, int npids, int64_t watchdog_ns, bool *hung)
{
	int64_t deadline = bench_now() + watchdog_ns;
	bool failed = false;
	int alive = 0;
	*hung = false;
	for (int i = 0; i < npids; i++)
		alive += pids[i] > 0;
	while (alive > 0) {
		for (int i = 0; i < npids; i++) {
			int st;
			if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
				if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
					failed = true;
				pids[i] = -1;
				alive--;
			}
		}
		if (alive && bench_now() > deadline) {
			for (int i = 0; i < npids; i++)
				if (pids[i] > 0) {
					kill(pids[i], SIGKILL);
					waitpid(pids[i], NULL, 0);
					pids[i] = -1;
				}
			alive = 0;
			failed = *hung = true;
		}
		if (alive)
			sleep_ns(200000);
	}
	return failed;
}

int bench_spawn_reader(const char *prog, char *const argv[], pid_t *pid, char *note,
		       size_t note_len)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
	posix_spawn_file_actions_addclose(&fa, fd[0]);
	fflush(NULL);
	int rc = posix_spawnp(pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fd[1]);
	if (rc != 0) {
		close(fd[0]);
		snprintf(note, note_len, "%s: %s", prog, strerror(rc));
		return -rc;
	}
	return fd[0];
}

bool bench_fork_window(int n, int (*fn)(void *arg, int i), void *arg, struct bench_window *w,
		       int64_t watchdog_ns, char *note, size_t note_len)
{
	pid_t pids[2 * BENCH_MAX_WORKERS], parent = getpid();
	int npids = 0;
	if (n < 1 || n > 2 * BENCH_MAX_WORKERS) {
		snprintf(note, note_len, "%d workers: 1 to %d", n, 2 * BENCH_MAX_WORKERS);
		return true;
	}
	fflush(NULL);
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* Die with the harness, whatever kills it. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(3);
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
			_exit(fn(arg, i) < 0);
		}
		if (pid < 0)
			break;
		pids[npids++] = pid;
	}
	bool failed = bench_window(w, pids, npids, npids != n, note, note_len);
	/* Reap, with a watchdog: a system that hangs is reported, not waited on. */
	bool hung;
	failed |= bench_reap(pids, npids, watchdog_ns, &hung);
	if (hung)
		snprintf(note, note_len, "hung: killed after %lld s",
			 (long long)(watchdog_ns / 1000000000));
	return failed;
}

const char *bench_python(void)
{
	return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

const char *bench_driver_json(char *const argv[], double timeout_s, char *note,
			      size_t note_len)
{
	const char *name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
	if (access(argv[1], R_OK) != 0) {
		snprintf(note, note_len, "%s not found", argv[1]);
		return NULL;
	}
	pid_t pid;
	int fd = bench_spawn_reader(argv[0], argv, &pid, note, note_len);
	if (fd < 0)
		return NULL;
	static char out[1 << 16];
	size_t len = 0;
	int64_t deadline = bench_now() + (int64_t)(timeout_s * 1e9);
	bool killed = false;
	for (;;) {
		int64_t left = deadline - bench_now();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int pr = left > 0 ? poll(&pfd, 1, (int)(left / 1000000) + 1) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		ssize_t r = read(fd, out + len, sizeof(out) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(out) - 1)
			break;
	}
	out[len] = 0;
	close(fd);
	int st;
	waitpid(pid, &st, 0);
	const char *line = strstr(out, "{\"");
	if (killed || !line || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (killed)
			snprintf(note, note_len, "%s hung: killed", name);
		else
			snprintf(note, note_len, "%s failed (status %d)", name, st);
		return NULL;
	}
	return line;
}
