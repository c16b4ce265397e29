/* Pipe: duplex and simplex ends, messages of any size (0 bytes to 64 MiB
 * through a small ring), -EMSGSIZE leaving the message, end of file by close
 * and by death, the Python tutorial cases, and ends passed to an exec'd
 * program over a unix socket. */
#include <criterion/criterion.h>

#include "common.h"

#include <sys/socket.h>

#define LIVE (2 * T_SEC * T_SCALE)
#define LONG_WAIT (60 * T_SEC * T_SCALE)

/* Bytes of message `seq` of length len: a function of both, so a torn,
 * shifted or swapped message shows. */
static void fill(unsigned char *p, size_t len, uint32_t seq)
{
	uint64_t x = t_mix(seq * 0x9e3779b97f4a7c15ull + len);
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0)
			x = t_mix(x + i);
		p[i] = (unsigned char)(x >> (i % 8 * 8));
	}
}

static bool intact(const unsigned char *p, size_t len, uint32_t seq)
{
	unsigned char *want = malloc(len ? len : 1);
	fill(want, len, seq);
	bool ok = memcmp(p, want, len) == 0;
	free(want);
	return ok;
}

/* A small ring: 64-byte cells, 1 KiB chunks, 64 cells (4 KiB). */
static void small_pipe(shmq_conn **a, shmq_conn **b, int flags)
{
	struct shmq_queue_attr at = t_attr(64, 1024);
	int r = shmq_pipe_attr(a, b, flags, &at);
	cr_assert_eq(r, 0, "pipe: %d", r);
	cr_assert_eq(shmq_conn_chunk(*a), 1024);
}

Test(pipe, simplex_ends_have_one_direction)
{
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, SHMQ_SIMPLEX), 0);
	char buf[16];
	cr_expect_eq(shmq_send(a, "x", 1, 0), -EBADF);
	cr_expect_eq(shmq_recv(b, buf, sizeof(buf), 0), -EBADF);
	cr_expect_eq(shmq_poll(b, 0), -EBADF);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 0), -EAGAIN);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 10 * T_MS), -ETIMEDOUT);
	cr_expect_eq(shmq_poll(a, 0), 0);
	cr_expect_eq(shmq_send(b, "hello", 5, 0), 0);
	cr_expect_eq(shmq_send(b, NULL, 0, 0), 0);
	cr_expect_eq(shmq_poll(a, 0), 1);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 0), 5);
	cr_expect_arr_eq(buf, "hello", 5);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 0), 0, "0-byte message");
	cr_expect_eq(shmq_pipe(&a, NULL, 0), -EINVAL);
	cr_expect_eq(shmq_pipe(&a, &b, 8), -EINVAL);
	cr_expect_eq(shmq_send(NULL, "x", 1, 0), -EINVAL);
	cr_expect_eq(shmq_send(b, NULL, 1, 0), -EINVAL);
	shmq_conn_close(a);
	shmq_conn_close(b);
}

Test(pipe, duplex_both_ways)
{
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, 0), 0);
	char buf[8];
	cr_expect_eq(shmq_send(a, "ab", 2, 0), 0);
	cr_expect_eq(shmq_send(b, "ba", 2, 0), 0);
	cr_expect_eq(shmq_recv(b, buf, sizeof(buf), 0), 2);
	cr_expect_arr_eq(buf, "ab", 2);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 0), 2);
	cr_expect_arr_eq(buf, "ba", 2);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 0), -EAGAIN, "not its own message");
	shmq_conn_close(a);
	shmq_conn_close(b);
}

/* Sizes around the chunk (1024 here), and far beyond the 4 KiB ring. */
static const size_t sizes[] = { 0, 1, 55, 56, 57, 1015, 1016, 1017, 1023, 1024, 1025,
				2047, 2048, 4096, 100000, 1 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

struct sender_arg {
	shmq_conn *a, *b;
	const size_t *sizes;
	unsigned n;
};

static int sender(void *arg)
{
	struct sender_arg *s = arg;
	shmq_conn_close(s->a); /* the child only sends */
	size_t max = 0;
	for (unsigned i = 0; i < s->n; i++)
		max = s->sizes[i] > max ? s->sizes[i] : max;
	unsigned char *p = malloc(max + 1);
	for (unsigned i = 0; i < s->n; i++) {
		fill(p, s->sizes[i], i);
		if (shmq_send(s->b, p, s->sizes[i], LONG_WAIT) != 0)
			return 1;
	}
	return 0; /* exits holding its end: end of file by exit */
}

static void receive_all(shmq_conn *a, const size_t *sz, unsigned n)
{
	size_t max = 0;
	for (unsigned i = 0; i < n; i++)
		max = sz[i] > max ? sz[i] : max;
	unsigned char *p = malloc(max + 1);
	for (unsigned i = 0; i < n; i++) {
		ssize_t r = shmq_recv(a, p, max + 1, LONG_WAIT);
		cr_assert_eq(r, (ssize_t)sz[i], "message %u: %zd, want %zu", i, r, sz[i]);
		cr_assert(intact(p, sz[i], i), "message %u of %zu bytes corrupted", i, sz[i]);
	}
	cr_expect_eq(shmq_recv(a, p, max + 1, LIVE), -EPIPE, "end of file after the last");
	free(p);
}

Test(pipe, any_size_whole_and_in_order_across_processes)
{
	shmq_conn *a, *b;
	small_pipe(&a, &b, SHMQ_SIMPLEX);
	struct sender_arg s = { a, b, sizes, NSIZES };
	pid_t kid = t_fork(sender, &s);
	shmq_conn_close(b); /* the parent only receives */
	receive_all(a, sizes, NSIZES);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	shmq_conn_close(a);
}

Test(pipe, sixty_four_mib_through_a_four_kib_ring, .timeout = 120)
{
	static const size_t big[] = { 64u << 20, 0, 3 };
	shmq_conn *a, *b;
	small_pipe(&a, &b, 0);
	struct sender_arg s = { a, b, big, 3 };
	pid_t kid = t_fork(sender, &s);
	shmq_conn_close(b);
	receive_all(a, big, 3);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	shmq_conn_close(a);
}

Test(pipe, too_small_buffer_leaves_the_message)
{
	shmq_conn *a, *b;
	small_pipe(&a, &b, 0);
	unsigned char out[5000], in[5000];
	fill(out, 100, 0);
	fill(out + 100, 3000, 1);
	cr_assert_eq(shmq_send(b, out, 100, 0), 0);
	cr_expect_eq(shmq_recv(a, in, 99, 0), -EMSGSIZE);
	cr_expect_eq(shmq_poll(a, 0), 1, "still readable");
	cr_expect_eq(shmq_recv(a, in, 10, 0), -EMSGSIZE);
	cr_expect_eq(shmq_recv(a, in, 100, 0), 100);
	cr_expect(intact(in, 100, 0));
	/* A long message (3 chunks): too small a buffer, even for one chunk. */
	struct sender_arg s = { a, b, (size_t[]){ 3000 }, 1 };
	pid_t kid = t_fork(sender, &s);
	cr_expect_eq(shmq_poll(a, LIVE), 1);
	cr_expect_eq(shmq_recv(a, in, 10, LIVE), -EMSGSIZE);
	cr_expect_eq(shmq_recv(a, in, 2999, LIVE), -EMSGSIZE);
	cr_expect_eq(shmq_recv(a, in, sizeof(in), LIVE), 3000);
	cr_expect(intact(in, 3000, 0));
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	shmq_conn_close(a);
	shmq_conn_close(b);
}

/* shmq_recv_len: the length of what -EMSGSIZE left waiting, short or long. */
Test(pipe, recv_len_sizes_the_buffer)
{
	shmq_conn *a, *b;
	small_pipe(&a, &b, 0);
	unsigned char out[5000], in[5000];
	cr_expect_eq(shmq_recv_len(a), -ENOENT, "nothing left waiting yet");
	cr_expect_eq(shmq_recv_len(NULL), -EINVAL);
	fill(out, 100, 0);
	fill(out + 100, 3000, 1);
	cr_assert_eq(shmq_send(b, out, 100, 0), 0);
	cr_assert_eq(shmq_recv(a, in, 8, 0), -EMSGSIZE);
	cr_expect_eq(shmq_recv_len(a), 100);
	cr_expect_eq(shmq_recv(a, in, (size_t)shmq_recv_len(a), 0), 100);
	cr_expect_eq(shmq_recv_len(a), -ENOENT, "received: nothing waits");
	struct sender_arg s = { a, b, (size_t[]){ 3000 }, 1 };
	pid_t kid = t_fork(sender, &s);
	cr_expect_eq(shmq_recv(a, in, 10, LIVE), -EMSGSIZE);
	cr_expect_eq(shmq_recv_len(a), 3000, "a long message: its whole length");
	cr_expect_eq(shmq_recv(a, in, 3000, LIVE), 3000);
	cr_expect(intact(in, 3000, 0));
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	shmq_conn_close(a);
	shmq_conn_close(b);
}

/* ---------------------------------------------------- end of file cases -- */

/* Sends to a pipe whose other end is gone: -EPIPE at once if it closed, or,
 * if it died unnoticed, once the ring is full and the send has to wait (a
 * send with room left succeeds, as shmq.h says). */
static void expect_send_epipe(shmq_conn *c)
{
	for (int i = 0; i < 5000; i++) {
		int r = shmq_send(c, "x", 1, LIVE);
		if (r == -EPIPE)
			return;
		cr_assert_eq(r, 0, "send: %d", r);
	}
	cr_assert_fail("no -EPIPE with the ring full");
}

struct eof_arg {
	shmq_conn *a, *b;
	_Atomic uint32_t sent;
	int mode; /* 0: exit holding b; 1: wait to be killed */
};

static int send_then(void *arg)
{
	struct eof_arg *e = arg;
	shmq_conn_close(e->a);
	if (shmq_send(e->b, "last words", 10, LIVE) != 0)
		return 1;
	t_post(&e->sent);
	if (e->mode == 1)
		pause();
	return 0;
}

Test(pipe, parent_forgetting_its_write_end_blocks_recv_until_it_closes)
{
	struct eof_arg *e = t_shared(sizeof(*e));
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, 0), 0);
	e->a = a;
	e->b = b;
	pid_t kid = t_fork(send_then, e);
	/* The parent still holds b: the child's exit is not end of file. */
	char buf[32];
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), LIVE), 10);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 100 * T_MS), -ETIMEDOUT,
		     "our own copy of b keeps the pipe open");
	shmq_conn_close(b);
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), LIVE), -EPIPE);
	cr_expect_eq(shmq_poll(a, 0), 1, "end of file is readable");
	expect_send_epipe(a);
	shmq_conn_close(a);
}

static void eof_by(int mode)
{
	struct eof_arg *e = t_shared(sizeof(*e));
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, 0), 0);
	e->a = a;
	e->b = b;
	e->mode = mode;
	pid_t kid = t_fork(send_then, e);
	shmq_conn_close(b);
	cr_assert_eq(t_await(&e->sent, 1, LIVE), 0);
	if (mode == 1)
		kill(kid, SIGKILL);
	char buf[32];
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), LIVE), 10, "what is left comes first");
	int64_t t0 = t_now();
	cr_expect_eq(shmq_recv(a, buf, sizeof(buf), 10 * T_SEC), -EPIPE);
	cr_expect_lt(t_now() - t0, LIVE);
	expect_send_epipe(a);
	t_kill_reap(kid);
	shmq_conn_close(a);
}

Test(pipe, child_exiting_without_close_is_end_of_file)
{
	eof_by(0);
}

Test(pipe, child_killed_is_end_of_file)
{
	eof_by(1);
}

/* A sender killed in the middle of a long message: the receiver gets -EPIPE,
 * not a torn message. */
static int long_then_die(void *arg)
{
	struct eof_arg *e = arg;
	shmq_conn_close(e->a);
	static unsigned char big[1 << 20];
	t_post(&e->sent);
	shmq_send(e->b, big, sizeof(big), LIVE); /* blocks: the ring holds 4 KiB */
	return 0;
}

Test(pipe, sender_dying_inside_a_long_message)
{
	struct eof_arg *e = t_shared(sizeof(*e));
	shmq_conn *a, *b;
	small_pipe(&a, &b, 0);
	e->a = a;
	e->b = b;
	pid_t kid = t_fork(long_then_die, e);
	shmq_conn_close(b);
	cr_assert_eq(t_await(&e->sent, 1, LIVE), 0);
	while (shmq_poll(a, 0) == 0) /* its header is in */
		sched_yield();
	kill(kid, SIGKILL);
	static unsigned char in[1 << 20];
	cr_expect_eq(shmq_recv(a, in, sizeof(in), 10 * T_SEC), -EPIPE);
	t_kill_reap(kid);
	shmq_conn_close(a);
}

/* ------------------------------------------------ both ends at once -- */

#define CHAT 20000

/* Sends CHAT numbered messages and receives CHAT from the other side, both at
 * once, driven by shmq_wait_any on its own end. */
static int chat(shmq_conn *c)
{
	uint32_t sent = 0, got = 0;
	while (sent < CHAT || got < CHAT) {
		struct shmq_pollitem it = { .conn = c,
					    .events = (short)((got < CHAT ? SHMQ_POLLIN : 0) |
							      (sent < CHAT ? SHMQ_POLLOUT : 0)) };
		if (shmq_wait_any(&it, 1, LIVE) != 1)
			return 1;
		if ((it.revents & SHMQ_POLLOUT) && sent < CHAT) {
			int r = shmq_send(c, &sent, sizeof(sent), 0);
			if (r == 0)
				sent++;
			else if (r != -EAGAIN)
				return 2;
		}
		uint32_t v;
		ssize_t n;
		while (got < CHAT && (n = shmq_recv(c, &v, sizeof(v), 0)) >= 0)
			if (n != sizeof(v) || v != got++)
				return 3;
	}
	return 0;
}

static int chat_child(void *arg)
{
	shmq_conn **ends = arg;
	shmq_conn_close(ends[0]);
	return chat(ends[1]);
}

Test(pipe, duplex_both_ends_talking_at_once)
{
	shmq_conn **ends = t_shared(2 * sizeof(shmq_conn *));
	small_pipe(&ends[0], &ends[1], 0);
	pid_t kid = t_fork(chat_child, ends);
	shmq_conn_close(ends[1]);
	cr_expect_eq(chat(ends[0]), 0);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE * 5), 0);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %d", st);
	shmq_conn_close(ends[0]);
}

/* Blocking sends both ways while both sides also receive: no deadlock as
 * long as each side reads, as with a socketpair. */
static int burst_then_read(void *arg)
{
	shmq_conn *c = arg;
	for (uint32_t i = 0; i < 200; i++)
		if (shmq_send(c, &i, sizeof(i), LIVE) != 0)
			return 1;
	uint32_t v;
	for (uint32_t i = 0; i < 200; i++)
		if (shmq_recv(c, &v, sizeof(v), LIVE) != sizeof(v) || v != i)
			return 2;
	return 0;
}

static int burst_child(void *arg)
{
	shmq_conn **ends = arg;
	shmq_conn_close(ends[0]);
	return burst_then_read(ends[1]);
}

Test(pipe, duplex_simultaneous_sends_that_fit)
{
	shmq_conn **ends = t_shared(2 * sizeof(shmq_conn *));
	cr_assert_eq(shmq_pipe(&ends[0], &ends[1], 0), 0);
	pid_t kid = t_fork(burst_child, ends);
	shmq_conn_close(ends[1]);
	cr_expect_eq(burst_then_read(ends[0]), 0);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	shmq_conn_close(ends[0]);
}

/* ------------------------------------------- an end to another program -- */

static void send_fds(int sock, int rfd, int wfd)
{
	int fds[2] = { rfd, wfd };
	char byte = 'f';
	struct iovec io = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(fds))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(h), fds, sizeof(fds));
	cr_assert_eq(sendmsg(sock, &m, 0), 1);
}

Test(pipe, end_passed_over_a_unix_socket_to_an_exec_d_program)
{
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, 0), 0);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid_t kid = fork();
	if (kid == 0) { /* exec drops every inherited handle: unrelated */
		char fd[16];
		snprintf(fd, sizeof(fd), "%d", sv[1]);
		execl(PEER_PATH, "peer", "echo", fd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	int rfd, wfd;
	cr_assert_eq(shmq_conn_fds(b, &rfd, &wfd), 0);
	send_fds(sv[0], rfd, wfd);
	char ack;
	cr_assert_eq(read(sv[0], &ack, 1), 1, "the peer opened the end");
	shmq_conn_close(b); /* the peer holds b now */
	static unsigned char out[300000], in[300000];
	for (uint32_t i = 0; i < 4; i++) {
		size_t len = i == 3 ? sizeof(out) : i * 1000;
		fill(out, len, i);
		cr_assert_eq(shmq_send(a, out, len, LIVE), 0);
		cr_assert_eq(shmq_recv(a, in, sizeof(in), LIVE), (ssize_t)len);
		cr_assert(intact(in, len, i));
	}
	shmq_conn_close(a); /* end of file for the peer, which exits 0 */
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer: %d", st);
	close(sv[0]);
}
