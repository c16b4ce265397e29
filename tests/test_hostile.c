/* A hostile peer: a process that maps a live queue and scribbles over it
 * (cell states, payloads, the head and tail index words, the eventcount
 * words) while producers and consumers in other processes use it. They may
 * get errors (-EPROTO), lose messages, receive garbage, or time out; they must
 * never crash and every call must return within its timeout plus a bound.
 * test_seg.c covers a garbage ring in a single process; the fuzzer
 * (tests/fuzz) covers arbitrary segment bytes. */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "common.h"
#include "seg.h" /* struct seg_hdr: where the index and eventcount words are */

#define BOUND (1 * T_SEC * T_SCALE) /* a call returns within timeout + BOUND */
#define SCRIBBLE (1500 * T_MS)
#define AFTER (500 * T_MS) /* the others keep going once the scribbler stops */
#define NPROD 2
#define NCONS 2
#define CELLS 64u
#define MSG_MAX 512u

/* Cell state word, white box (ring.c): kind (2 bits) | skip (1) | cells (20)
 * | owner tag or last-cell bytes (16) | lap (25). Checked below against a
 * real message, like test_seg.c does. */
#define ST(kind, skip, k, tag, lap)                                                       \
	((uint64_t)(kind) | (uint64_t)(skip) << 2 | (uint64_t)(k) << 3 |                  \
	 (uint64_t)(tag) << 23 | (uint64_t)(lap) << 39)

enum { RES_OK, RES_EPROTO, RES_TIMEDOUT, RES_EAGAIN, RES_EMSGSIZE, RES_OTHER, RES_N };

struct kid_stats {
	_Atomic uint64_t res[RES_N];
	_Atomic int64_t other;      /* the last unexpected result */
	_Atomic int64_t max_over;   /* worst duration - timeout, ns */
	_Atomic uint64_t garbage;   /* messages that failed their check */
};

struct hostile_sh {
	shmq_queue *q;
	_Atomic uint32_t ready;
	_Atomic uint32_t stop[2]; /* [0] producers, then [1] consumers */
	_Atomic uint64_t writes;
	struct kid_stats kid[NPROD + NCONS];
};

static int classify(int64_t r)
{
	return r >= 0 ? RES_OK : r == -EPROTO ? RES_EPROTO : r == -ETIMEDOUT ? RES_TIMEDOUT
	       : r == -EAGAIN ? RES_EAGAIN : r == -EMSGSIZE ? RES_EMSGSIZE : RES_OTHER;
}

static void record(struct kid_stats *k, int64_t r, int64_t t0, int64_t timeout)
{
	int c = classify(r);
	atomic_fetch_add(&k->res[c], 1);
	if (c == RES_OTHER)
		k->other = r;
	int64_t over = t_now() - t0 - timeout;
	if (over > k->max_over)
		k->max_over = over;
}

static int64_t timeout_of(uint64_t i)
{
	static const int64_t t[] = { 0, 100 * 1000, T_MS, 20 * T_MS };
	return t[i % 4];
}

static int user(void *arg)
{
	struct hostile_sh *s = ((void **)arg)[0];
	unsigned idx = (unsigned)(uintptr_t)((void **)arg)[1];
	struct kid_stats *k = &s->kid[idx];
	bool prod = idx < NPROD;
	shmq_queue_shutdown(s->q, prod ? SHMQ_RD : SHMQ_WR);
	static unsigned char buf[8 * MSG_MAX];
	t_post(&s->ready);
	for (uint64_t i = 0; !atomic_load(&s->stop[!prod]); i++) {
		int64_t timeout = timeout_of(i + idx), t0 = t_now();
		int64_t r;
		uint32_t seq = (uint32_t)i;
		size_t len = tmsg_len(idx, seq, TMSG_HDR, 300);
		struct iovec iov[4];
		for (int j = 0; j < 4; j++)
			iov[j] = (struct iovec){ .iov_base = buf + j * MSG_MAX,
						 .iov_len = prod ? len : MSG_MAX };
		if (prod)
			for (int j = 0; j < 4; j++)
				tmsg_fill(iov[j].iov_base, idx, seq, len);
		switch (i % 4) {
		case 0:
			r = prod ? shmq_put(s->q, buf, len, timeout)
				 : shmq_get(s->q, buf, MSG_MAX, timeout);
			break;
		case 1:
			r = prod ? shmq_put_burst(s->q, iov, 4, timeout)
				 : shmq_get_burst(s->q, iov, 4, timeout);
			break;
		case 2:
			r = prod ? shmq_put_bulk(s->q, iov, 2, timeout)
				 : shmq_get_bulk(s->q, iov, 2, timeout);
			break;
		default: {
			shmq_slot slot;
			r = prod ? shmq_put_reserve(s->q, 40, &slot, timeout)
				 : shmq_get_peek(s->q, &slot, timeout);
			if (r == 0) {
				if (prod)
					tmsg_fill(slot.data, idx, seq, 40);
				else if (slot.len >= TMSG_HDR && slot.len <= 56)
					memcpy(buf, slot.data, slot.len);
				/* The slot may have been scribbled over: commit
				 * and release must notice (-EINVAL), not crash. */
				int c = prod ? shmq_put_commit(s->q, &slot)
					     : shmq_get_release(s->q, &slot);
				if (c < 0 && c != -EINVAL)
					r = c;
			}
		}
		}
		/* End of data once the producers have stopped is no error. */
		if (r == -EPIPE && !prod && atomic_load(&s->stop[0]))
			break;
		record(k, r, t0, timeout);
		if (!prod && r >= 0 && (i % 4 == 0 || i % 4 == 3)) {
			uint32_t p, q;
			size_t n = i % 4 == 0 ? (size_t)r : 40;
			if (tmsg_check(buf, n, NPROD, TMSG_HDR, 300, &p, &q) != TMSG_OK)
				atomic_fetch_add(&k->garbage, 1);
		}
		(void)shmq_qsize(s->q);
		(void)shmq_full(s->q);
	}
	return shmq_queue_close(s->q) == 0 ? 0 : 1;
}

/* Scribble over the live ring for SCRIBBLE: random and plausible values. */
static int scribbler(void *arg)
{
	struct hostile_sh *s = arg;
	int fd = shmq_queue_fd(s->q);
	struct stat stt;
	if (fstat(fd, &stt) < 0)
		return 1;
	unsigned char *seg = mmap(NULL, (size_t)stt.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				  fd, 0);
	if (seg == MAP_FAILED)
		return 2;
	struct seg_hdr *h = (struct seg_hdr *)seg;
	size_t cell_size = h->geom.cell_size;
	unsigned char *cells = seg + h->geom.cells_off;
	uint64_t rng = (uint64_t)t_now();
	int64_t end = t_now() + SCRIBBLE;
	t_post(&s->ready);
	while (t_now() < end) {
		uint64_t r = t_mix(rng++), v = t_mix(rng++);
		unsigned c = (unsigned)(v % CELLS);
		_Atomic uint64_t *state = (_Atomic uint64_t *)(cells + c * cell_size);
		uint64_t tail_pos = atomic_load(&h->tail) >> 24;
		uint64_t lap = (tail_pos >> 6) + (v >> 8) % 3 - 1; /* 64 cells: lap = pos >> 6 */
		switch (r % 10) {
		case 0:
			atomic_store(state, v);
			break;
		case 1: case 2: /* plausible: a kind at a nearby lap, few cells */
			atomic_store(state, ST(v % 4, (v >> 2) & 1, 1 + (v >> 3) % 5,
					       (v >> 16) % 0x10000, lap & ((1u << 25) - 1)));
			break;
		case 3: /* free at a nearby lap */
			atomic_store(state, ST(0, 0, 0, 0, lap & ((1u << 25) - 1)));
			break;
		case 4: case 5:
			memset(cells + c * cell_size + 8, (int)(v >> 40), cell_size - 8);
			break;
		case 6:
			atomic_store(&h->tail, r % 3 ? atomic_load(&h->tail) + (v % 5 << 24) : v);
			break;
		case 7:
			atomic_store(&h->head, r % 3 ? atomic_load(&h->head) + (v % 5 << 24) : v);
			break;
		case 8:
			atomic_store(r & 16 ? &h->tail_extra : &h->head_extra, (uint32_t)v);
			break;
		default:
			atomic_store(r & 16 ? &h->ec_data : &h->ec_room, (uint32_t)v);
			break;
		}
		atomic_fetch_add(&s->writes, 1);
		/* Now and then make the ring consistent and empty again, so
		 * traffic resumes and later scribbles hit live messages rather
		 * than a ring that only answers -EPROTO. */
		if (r % 64 == 0) {
			uint64_t t = atomic_load(&h->tail) >> 24 & ((1ull << 40) - 1);
			for (uint64_t p = t; p < t + CELLS; p++)
				atomic_store((_Atomic uint64_t *)(cells + p % CELLS * cell_size),
					     ST(0, 0, 0, 0, p >> 6 & ((1u << 25) - 1)));
			atomic_store(&h->head, atomic_load(&h->tail));
		}
		t_nap((int64_t)(v >> 50) % 200 * 1000);
	}
	return 0;
}

Test(scribbler, live_ring_scribbled_no_crash_no_hang, .timeout = T_TIMEOUT(60))
{
	struct shmq_queue_attr a = t_attr(CELLS, MSG_MAX);
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);

	/* The state layout this test forges (see ST). */
	cr_assert_eq(t_put_msg(q, 0, 0, 7, 0), 0);
	unsigned char *probe = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, shmq_queue_fd(q), 0);
	cr_assert_neq(probe, MAP_FAILED);
	uint64_t st0 = atomic_load((_Atomic uint64_t *)(probe + ((struct seg_hdr *)probe)->geom.cells_off));
	cr_assert_eq(st0, ST(2, 0, 1, 7, 0), "cell state layout changed (%#llx): update ST",
		     (unsigned long long)st0);
	munmap(probe, 1 << 20);
	unsigned char buf[64];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), 7);

	struct hostile_sh *s = t_shared(sizeof(*s));
	s->q = q;
	void *args[NPROD + NCONS][2];
	pid_t pids[NPROD + NCONS + 1];
	for (unsigned i = 0; i < NPROD + NCONS; i++) {
		args[i][0] = s;
		args[i][1] = (void *)(uintptr_t)i;
		pids[i] = t_fork(user, args[i]);
	}
	cr_assert_eq(t_await(&s->ready, NPROD + NCONS, 10 * BOUND), 0);
	shmq_queue_shutdown(q, SHMQ_RDWR);
	t_nap(100 * T_MS); /* clean traffic first */
	pids[NPROD + NCONS] = t_fork(scribbler, s);
	int st;
	int r = t_wait(pids[NPROD + NCONS], &st, SCRIBBLE + 10 * BOUND);
	cr_assert_eq(r, 0, "the scribbler did not finish");
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "scribbler: status %#x", st);
	t_nap(AFTER);

	uint64_t tot[RES_N] = { 0 }, garbage = 0;
	for (unsigned i = 0; i < NPROD + NCONS; i++) {
		if (i == 0 || i == NPROD) /* producers first: no -EPIPE for them */
			t_set(&s->stop[i == NPROD], 1);
		r = t_wait(pids[i], &st, 20 * T_MS + 2 * BOUND);
		if (r < 0)
			t_kill_reap(pids[i]);
		cr_assert_eq(r, 0, "%s %u did not return from a call (hang)",
			     i < NPROD ? "producer" : "consumer", i);
		char sb[32];
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %u: %s",
			  i < NPROD ? "producer" : "consumer", i, t_status_str(st, sb, sizeof(sb)));
		struct kid_stats *k = &s->kid[i];
		cr_assert_eq(k->res[RES_OTHER], 0, "%s %u: unexpected result %lld",
			     i < NPROD ? "producer" : "consumer", i, (long long)k->other);
		cr_assert_leq(k->max_over, BOUND, "%s %u: a call returned %lld ms past its timeout",
			      i < NPROD ? "producer" : "consumer", i,
			      (long long)(k->max_over / T_MS));
		for (int c = 0; c < RES_N; c++)
			tot[c] += k->res[c];
		garbage += k->garbage;
	}
	cr_log_info("scribbler: %llu writes; calls ok %llu, EPROTO %llu, ETIMEDOUT %llu, "
		    "EAGAIN %llu, EMSGSIZE %llu; garbage messages %llu",
		    (unsigned long long)s->writes, (unsigned long long)tot[RES_OK],
		    (unsigned long long)tot[RES_EPROTO], (unsigned long long)tot[RES_TIMEDOUT],
		    (unsigned long long)tot[RES_EAGAIN], (unsigned long long)tot[RES_EMSGSIZE],
		    (unsigned long long)garbage);
	cr_assert_gt(s->writes, 100, "the scribbler barely wrote");
	cr_assert_gt(tot[RES_OK], 0, "no call ever succeeded: the test tested nothing");
	/* The scribbling was noticed: corrupted messages, or errors. */
	cr_assert_gt(tot[RES_EPROTO] + garbage, 0, "nobody noticed the scribbling");
	shmq_queue_close(q);
}

/* A forged eventfd registration naming another fd of a producer (here a log
 * file it has open) must not make the producer write to that fd: signalling
 * checks that what it got is an eventfd. Found by the reliability work. */
Test(scribbler, forged_eventfd_registration_writes_nothing)
{
	char path[] = "/tmp/shmq-efd-victim-XXXXXX";
	int logfd = mkstemp(path);
	cr_assert_geq(logfd, 0);
	unlink(path);
	cr_assert_eq(write(logfd, "hello\n", 6), 6);
	struct shmq_queue_attr a = t_attr(64, 0);
	shmq_queue *q;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	struct stat st;
	int fd = shmq_queue_fd(q);
	cr_assert_eq(fstat(fd, &st), 0);
	unsigned char *seg = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(seg, MAP_FAILED);
	struct seg_hdr *h = (struct seg_hdr *)seg;
	struct seg_part *parts = (struct seg_part *)(seg + h->geom.parts_off);
	/* Our handle is the only participant: slot 0. Forge its registration. */
	uint32_t tag = 0 | (atomic_load(&parts[0].gen) & 63) << 10;
	atomic_store(&parts[0].efd, logfd + 1);
	atomic_store(&h->efd_reg[0], tag + 1);
	atomic_fetch_or(&h->ec_data, 0x80000000u); /* "armed" */
	cr_expect_eq(shmq_put(q, "x", 1, 0), 0);
	cr_expect_eq(lseek(logfd, 0, SEEK_END), 6, "the producer wrote into a non-eventfd fd");
	munmap(seg, (size_t)st.st_size);
	shmq_queue_close(q);
	close(logfd);
}
