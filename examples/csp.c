/* The README's CSP example: two producers on rendezvous channels, one consumer
 * choosing fairly between them with shmq_alt until both retired (their
 * processes exit, which retires the ends only they held). Prints six lines,
 * a and b taking turns. */
#include <errno.h>
#include <shmq.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	shmq_heap *h;
	shmq_chan *in[2], *out;
	const char *names[2] = { "a", "b" };
	if (shmq_heap_create(NULL, NULL, &h) < 0)
		return 1;
	for (int p = 0; p < 2; p++) {
		if (shmq_chan_create(h, names[p], 0, &in[p]) < 0 || /* a rendezvous channel */
		    shmq_chan_open(h, names[p], SHMQ_WR, &out) < 0 ||  /* a writer end */
		    shmq_chan_retire(in[p], SHMQ_WR) < 0)            /* ours only reads */
			return 1;
		if (fork() == 0) {             /* producer p: 3 messages; exit retires its end */
			for (int i = 0; i < 3; i++) {
				int msg = 10 * p + i;  /* returns once a reader took it: */
				shmq_chan_write(out, &msg, sizeof(msg), -1);
			}
			return 0;
		}
		shmq_chan_close(out);          /* as with a pipe: the child holds it */
	}
	int msg[2];
	struct shmq_guard g[2];
	unsigned n = 2;
	for (int p = 0; p < 2; p++)
		g[p] = (struct shmq_guard){ .chan = in[p], .op = SHMQ_GUARD_READ,
					    .rbuf = &msg[p], .rcap = sizeof(int) };
	while (n > 0) {                        /* a fair choice between the ready ones */
		int i = shmq_alt(g, n, SHMQ_ALT_FAIR, -1);
		if (i < 0)
			return 1;
		if (g[i].result == -EPIPE)     /* every writer end retired: drop the guard */
			g[i] = g[--n];
		else
			printf("%s: %d\n", shmq_chan_name(g[i].chan), *(int *)g[i].rbuf);
	}
	while (wait(NULL) > 0)
		;
	shmq_chan_close(in[0]);
	shmq_chan_close(in[1]);
	return shmq_heap_close(h);
}
