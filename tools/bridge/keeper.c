/* shmq-bridge: the keeper, which holds the local role and moves messages
 * between the queue and the window (bridge.h). */
#include "bridge.h"

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

int keeper_main(const char *heap_name)
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
