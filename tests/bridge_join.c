/* Both ends of a JoinableQueue carried over the Redis bridge, for
 * tests/test_bridge.sh (mode joinable).
 *
 *   bridge_join produce /q N FILE
 *       Put N messages "j 1" .. "j N" into /q (a JoinableQueue), then
 *       shmq_join it. The moment join returns, read FILE (written by the far
 *       side's consumer) and print
 *           joined rc=R far_done=K of N
 *       Exit 0 if join returned 0, 1 otherwise.
 *
 *   bridge_join consume /q FILE [DELAY_US]
 *       Get messages from /q until end of data (-EPIPE). For the k-th one:
 *       check it is "j k", sleep DELAY_US (default 1000), write k to FILE,
 *       then shmq_task_done. So FILE says k only once message k is about to
 *       be marked done, and says N only right before the last task_done:
 *       a join on the far origin that read FILE when it returned, and found
 *       less than N, returned before the far side was done. Print
 *           consumed K
 *       Exit 0 if every message was in order and end of data came.
 *
 * Every wait is bounded (60 s): a hang is an error, not a stuck test. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmq.h>

#define WAIT_NS (60ll * 1000000000ll)

static int usage(void)
{
	fprintf(stderr, "usage: bridge_join produce /q N FILE\n"
			"       bridge_join consume /q FILE [DELAY_US]\n");
	return 64;
}

static void write_count(int fd, long k)
{
	char buf[32];
	int len = snprintf(buf, sizeof buf, "%ld\n", k);
	/* One pwrite of a fixed-width-enough record at offset 0, then cut the
	 * rest: a reader sees an old or the new count, never a mix that parses
	 * as a larger number (counts only grow, so the new one is never shorter). */
	if (pwrite(fd, buf, (size_t)len, 0) != len) {
		perror("bridge_join: write count");
		exit(1);
	}
}

static long read_count(const char *path)
{
	char buf[32] = {0};
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	return strtol(buf, NULL, 10);
}

static int produce(const char *name, long n, const char *file)
{
	shmq_queue *q;
	int r = shmq_queue_open(name, SHMQ_WR, &q);
	if (r) {
		fprintf(stderr, "bridge_join: open %s: %s\n", name, strerror(-r));
		return 1;
	}
	char msg[64];
	for (long i = 1; i <= n; i++) {
		int len = snprintf(msg, sizeof msg, "j %ld", i);
		r = shmq_put(q, msg, (size_t)len, WAIT_NS);
		if (r) {
			fprintf(stderr, "bridge_join: put %ld: %s\n", i, strerror(-r));
			return 1;
		}
	}
	fprintf(stderr, "bridge_join: put %ld, joining\n", n);
	r = shmq_join(q, WAIT_NS);
	long k = read_count(file); /* at once: what the far side had done */
	printf("joined rc=%d far_done=%ld of %ld\n", r, k, n);
	fflush(stdout);
	if (r)
		fprintf(stderr, "bridge_join: join: %s\n", strerror(-r));
	shmq_queue_close(q);
	return r ? 1 : 0;
}

static int consume(const char *name, const char *file, long delay_us)
{
	shmq_queue *q;
	int r = shmq_queue_open(name, SHMQ_RD, &q);
	if (r) {
		fprintf(stderr, "bridge_join: open %s: %s\n", name, strerror(-r));
		return 1;
	}
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(file);
		return 1;
	}
	char buf[256], want[64];
	long k = 0;
	int bad = 0;
	for (;;) {
		ssize_t len = shmq_get(q, buf, sizeof buf - 1, WAIT_NS);
		if (len == -EPIPE)
			break;
		if (len < 0) {
			fprintf(stderr, "bridge_join: get after %ld: %s\n", k, strerror((int)-len));
			return 1;
		}
		buf[len] = 0;
		k++;
		snprintf(want, sizeof want, "j %ld", k);
		if (strcmp(buf, want) != 0 && bad++ < 5)
			fprintf(stderr, "bridge_join: message %ld is '%s', expected '%s'\n", k, buf,
				want);
		if (delay_us > 0)
			usleep((useconds_t)delay_us);
		write_count(fd, k);
		r = shmq_task_done(q);
		if (r) {
			fprintf(stderr, "bridge_join: task_done %ld: %s\n", k, strerror(-r));
			return 1;
		}
	}
	close(fd);
	printf("consumed %ld\n", k);
	shmq_queue_close(q);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && strcmp(argv[1], "produce") == 0)
		return produce(argv[2], strtol(argv[3], NULL, 10), argv[4]);
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "consume") == 0)
		return consume(argv[2], argv[3], argc == 5 ? strtol(argv[4], NULL, 10) : 1000);
	return usage();
}
