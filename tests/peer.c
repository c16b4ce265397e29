/* A second program for the by-name tests: exec'd by test_seg, it opens a
 * queue by name like an unrelated process would and produces or consumes
 * checked messages (see common.h for the encoding).
 *
 *   peer produce NAME PROD N LO HI   put messages (PROD, 0..N-1), close, exit
 *   peer consume NAME PROD N LO HI   get exactly those, then expect -EPIPE
 *   peer echo SOCKFD                  receive a pipe end's two fds over the
 *                                     unix socket SOCKFD (SCM_RIGHTS), open
 *                                     it, send back every message until EOF
 *
 * Exit status: 0 all good; 2 usage; 3 open failed; 4 put failed; 5 get
 * failed; 6 wrong or corrupted message; 7 more messages than expected;
 * 8 no end of data (get timed out waiting for -EPIPE); 9 timed out waiting
 * for a message. */
#include "common.h"

#include <sys/socket.h>

#define WAIT (5 * T_SEC * T_SCALE)
#define EOF_WAIT (2 * T_SEC * T_SCALE)

/* Receive the fds of a pipe end, then echo until end of file. */
static int echo(int sock)
{
	int fds[2];
	char byte;
	struct iovec io = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(fds))];
	} ctl;
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf) };
	if (recvmsg(sock, &m, 0) != 1 || !CMSG_FIRSTHDR(&m))
		return 3;
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(fds));
	shmq_conn *c;
	if (shmq_conn_open_fds(fds[0], fds[1], &c) < 0)
		return 3;
	close(fds[0]);
	close(fds[1]);
	if (write(sock, "k", 1) != 1) /* opened: the sender may close its copy */
		return 3;
	static unsigned char buf[1 << 20];
	ssize_t n;
	while ((n = shmq_recv(c, buf, sizeof(buf), WAIT)) >= 0)
		if (shmq_send(c, buf, (size_t)n, WAIT) < 0)
			return 4;
	shmq_conn_close(c);
	return n == -EPIPE ? 0 : 5;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "echo") == 0)
		return echo(atoi(argv[2]));
	if (argc != 7)
		return 2;
	const char *mode = argv[1], *name = argv[2];
	uint32_t prod = (uint32_t)strtoul(argv[3], NULL, 10);
	uint32_t n = (uint32_t)strtoul(argv[4], NULL, 10);
	size_t lo = strtoul(argv[5], NULL, 10), hi = strtoul(argv[6], NULL, 10);
	bool produce = strcmp(mode, "produce") == 0;
	if (!produce && strcmp(mode, "consume") != 0)
		return 2;

	shmq_queue *q = NULL;
	if (shmq_queue_open(name, produce ? SHMQ_WR : SHMQ_RD, &q) < 0)
		return 3;
	static unsigned char buf[TMSG_MAX];
	if (produce) {
		for (uint32_t seq = 0; seq < n; seq++)
			if (t_put_msg(q, prod, seq, tmsg_len(prod, seq, lo, hi), WAIT) < 0)
				return 4;
		return shmq_queue_close(q) == 0 ? 0 : 4;
	}
	for (uint32_t seq = 0; seq < n; seq++) {
		ssize_t got = shmq_get(q, buf, sizeof(buf), WAIT);
		if (got == -ETIMEDOUT)
			return 9;
		if (got < 0)
			return 5;
		if (tmsg_check_exact(buf, (size_t)got, prod, seq, tmsg_len(prod, seq, lo, hi)))
			return 6;
	}
	ssize_t end = shmq_get(q, buf, sizeof(buf), EOF_WAIT);
	if (end >= 0)
		return 7;
	if (end == -ETIMEDOUT)
		return 8;
	if (end != -EPIPE)
		return 5;
	return shmq_queue_close(q) == 0 ? 0 : 5;
}
