/* shmq-bridge out: local queue -> window -> stream. */
#include "bridge.h"

/* ---------------------------------------------------------- out bridge -- */

struct sent { /* an entry in flight, oldest first */
	uint64_t last_seq; /* its last message's sequence */
	uint64_t end_pos;  /* window position after it */
};

struct out_state {
	char id[17], epoch[24];
	char *pack[PIPE_CALLS]; /* packed data of the entries of each call */
	size_t pack_cap[PIPE_CALLS];
	char maxlen[24];   /* --maxlen, as the add script takes it */
	struct sent inflight[PIPE_CALLS * PIPE_ENTRIES];
	unsigned ninflight;
	uint64_t cursor;   /* next record to send */
	uint64_t end_seq;  /* the END record's sequence, once sent */
	bool end_acked;
	/* joinable */
	char done_last_id[64];
	uint64_t done_from[MAX_PRODUCERS][2]; /* in bridge id, its count */
	unsigned ndone_from;
	int64_t next_done_poll;
};

/* Redis holds everything up to last: drop it from the window. */
static void out_acked(struct bridge *b, struct out_state *s, uint64_t last)
{
	struct win *w = b->win.w;
	uint64_t head = atomic_load(&w->head), tail = atomic_load(&w->tail), next;
	while (head < tail) {
		const struct rec *r = win_get(w, head, tail, &next);
		if (!r || r->seq > last)
			break;
		if (r->kind == REC_END)
			s->end_acked = true;
		head = next;
	}
	if (last > atomic_load(&w->acked_seq))
		atomic_store(&w->acked_seq, last);
	atomic_store_explicit(&w->head, head, memory_order_release);
	if (s->cursor < head)
		s->cursor = head;
	unsigned k = 0;
	while (k < s->ninflight && s->inflight[k].last_seq <= last)
		k++;
	memmove(s->inflight, s->inflight + k, (s->ninflight - k) * sizeof(s->inflight[0]));
	s->ninflight -= k;
	bell_ring(b->win.to_keeper);
}

/* After a (re)connect: skip what Redis already has. */
static int out_resync(struct bridge *b, struct out_state *s)
{
	const char *argv[] = { "HGET", b->rd.seq_key, s->id };
	redisReply *r = cmd(&b->rd, 3, argv, NULL);
	if (!r)
		return -EIO;
	long long last = 0;
	if (r->type != REDIS_REPLY_NIL && !reply_is_int(r, &last))
		last = 0;
	freeReplyObject(r);
	uint64_t acked = atomic_load(&b->win.w->acked_seq);
	if ((uint64_t)last < acked) {
		/* Redis lost entries it had acknowledged (restarted without an
		 * AOF, or flushed): they are gone. Continue from where we are,
		 * or the add script would refuse every entry as a gap. */
		char num[24];
		snprintf(num, sizeof(num), "%" PRIu64, acked);
		say("redis lost entries %lld..%" PRIu64 " of this bridge that it had acknowledged"
		    " (no AOF?); continuing after them",
		    last + 1, acked);
		const char *set[] = { "HSET", b->rd.seq_key, s->id, num };
		if (!(r = cmd(&b->rd, 4, set, NULL)))
			return -EIO;
		freeReplyObject(r);
		last = (long long)acked;
	}
	s->ninflight = 0;
	s->cursor = atomic_load(&b->win.w->head);
	out_acked(b, s, (uint64_t)last);
	s->cursor = atomic_load(&b->win.w->head);
	return 0;
}

/* Collect the done counts of the far side (STREAM:done) for this bridge. */
static void out_poll_done(struct bridge *b, struct out_state *s)
{
	if (!b->joinable || now_ns() < s->next_done_poll)
		return;
	s->next_done_poll = now_ns() + POLL_NS;
	for (;;) {
		const char *argv[] = { "XREAD", "COUNT", "256", "STREAMS", b->rd.done_key,
				       s->done_last_id };
		redisReply *r = cmd(&b->rd, 6, argv, NULL);
		if (!r)
			return;
		size_t got = 0;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
			redisReply *entries = r->element[0]->element[1];
			for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
				redisReply *e = entries->element[i];
				if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
				    e->element[0]->type != REDIS_REPLY_STRING)
					continue;
				snprintf(s->done_last_id, sizeof(s->done_last_id), "%s", e->element[0]->str);
				got++;
				redisReply *f = e->element[1];
				uint64_t in = 0, p = 0, n = 0;
				bool hi = false, hp = false, hn = false;
				for (size_t j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements; j += 2) {
					redisReply *k = f->element[j], *v = f->element[j + 1];
					if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
						continue;
					if (!strcmp(k->str, "in"))
						hi = parse_hex64(v->str, v->len, &in);
					else if (!strcmp(k->str, "p"))
						hp = parse_hex64(v->str, v->len, &p);
					else if (!strcmp(k->str, "n"))
						hn = parse_u64(v->str, v->len, &n);
				}
				if (!hi || !hp || !hn || p != b->win.w->id)
					continue;
				unsigned j = 0;
				while (j < s->ndone_from && s->done_from[j][0] != in)
					j++;
				if (j == s->ndone_from) {
					if (j == MAX_PRODUCERS)
						continue;
					s->done_from[s->ndone_from++][0] = in;
					s->done_from[j][1] = 0;
				}
				if (n > s->done_from[j][1])
					s->done_from[j][1] = n;
			}
		}
		freeReplyObject(r);
		if (got < 256)
			break;
	}
	uint64_t credit = 0;
	for (unsigned j = 0; j < s->ndone_from; j++)
		credit += s->done_from[j][1];
	if (credit > atomic_load(&b->win.w->done_credit)) {
		atomic_store(&b->win.w->done_credit, credit);
		bell_ring(b->win.to_keeper);
	}
}

/* Pack the records from s->cursor into up to PIPE_ENTRIES entries of one
 * add-script call: argv/lens get the call. Returns the number of entries
 * (0: nothing to send). */
static unsigned out_build_call(struct bridge *b, struct out_state *s, unsigned call,
			       const char **argv, size_t *lens, int *argc, char numbuf[][24])
{
	struct win *w = b->win.w;
	uint64_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);
	char **pack = &s->pack[call];
	size_t *pack_cap = &s->pack_cap[call];
	int a = 0;
	argv[a] = "EVALSHA", lens[a++] = 7;
	argv[a] = b->rd.add_sha, lens[a++] = 40;
	argv[a] = "2", lens[a++] = 1;
	argv[a] = b->o->stream, lens[a++] = strlen(b->o->stream);
	argv[a] = b->rd.seq_key, lens[a++] = strlen(b->rd.seq_key);
	argv[a] = s->id, lens[a++] = 16;
	argv[a] = s->epoch, lens[a++] = strlen(s->epoch);
	argv[a] = s->maxlen, lens[a++] = strlen(s->maxlen);
	size_t used = 0;
	unsigned entries = 0;
	uint64_t pos = s->cursor, next;
	/* Offsets into *pack of each entry, to point argv at once the buffer
	 * stops moving. */
	size_t starts[PIPE_ENTRIES], ends[PIPE_ENTRIES];
	int data_arg[PIPE_ENTRIES];
	while (entries < PIPE_ENTRIES && pos < tail && s->ninflight < PIPE_CALLS * PIPE_ENTRIES) {
		const struct rec *r = win_get(w, pos, tail, &next);
		if (!r)
			break;
		uint64_t first = r->seq;
		unsigned n = 0;
		bool end = false;
		starts[entries] = used;
		while (pos < tail && n < b->o->batch) {
			r = win_get(w, pos, tail, &next);
			if (!r)
				break;
			if (r->kind == REC_END) {
				if (n == 0) {
					end = true;
					n = 1;
					pos = next;
				}
				break;
			}
			if (n > 0 && used - starts[entries] + 4 + r->len > ENTRY_BYTES)
				break;
			if (used + 4 + r->len > *pack_cap) {
				size_t cap = (used + 4 + r->len) * 2;
				char *p = realloc(*pack, cap);
				if (!p)
					break;
				*pack = p;
				*pack_cap = cap;
			}
			uint32_t le = r->len; /* little-endian hosts only: see meson */
			memcpy(*pack + used, &le, 4);
			memcpy(*pack + used + 4, r + 1, r->len);
			used += 4 + r->len;
			n++;
			pos = next;
		}
		if (n == 0)
			break;
		ends[entries] = used;
		snprintf(numbuf[2 * entries], 24, "%" PRIu64, first);
		snprintf(numbuf[2 * entries + 1], 24, "%u", n);
		argv[a] = numbuf[2 * entries], lens[a] = strlen(numbuf[2 * entries]), a++;
		argv[a] = numbuf[2 * entries + 1], lens[a] = strlen(numbuf[2 * entries + 1]), a++;
		argv[a] = end ? "1" : "0", lens[a++] = 1;
		data_arg[entries] = a;
		argv[a] = "", lens[a++] = 0;
		s->inflight[s->ninflight++] = (struct sent){ first + n - 1, pos };
		if (end)
			s->end_seq = first;
		entries++;
		if (end)
			break;
	}
	for (unsigned e = 0; e < entries; e++) {
		argv[data_arg[e]] = *pack + starts[e];
		lens[data_arg[e]] = ends[e] - starts[e];
	}
	s->cursor = pos;
	*argc = a;
	return entries;
}

/* The stream is full (--maxlen): wait until the far side has taken
 * something, polling its length (O(1), no payload) every millisecond: the
 * far side frees room in bursts, and the next burst of ours should follow
 * at once. Returns 0; -EIO. */
static int out_wait_room(struct bridge *b)
{
	const char *argv[] = { "XLEN", b->o->stream };
	for (int64_t next_check = 0; !stop_requested;) {
		sleep_ms(1);
		if (now_ns() >= next_check) { /* and the keeper, now and then */
			if (keeper_check(b) < 0)
				return 0;
			next_check = now_ns() + POLL_NS;
		}
		redisReply *r = cmd(&b->rd, 2, argv, NULL);
		if (!r)
			return -EIO;
		long long len = 0;
		bool room = !reply_is_int(r, &len) || (uint64_t)len < b->o->maxlen;
		freeReplyObject(r);
		if (room)
			return 0;
	}
	return 0;
}

/* One round: up to PIPE_CALLS add-script calls pipelined, then their
 * replies. Returns 0; -EIO (connection lost); -EPROTO (Redis refused). */
static int out_round(struct bridge *b, struct out_state *s, bool *sent_any)
{
	enum { ARGS = 8 + 4 * PIPE_ENTRIES };
	const char *argv[PIPE_CALLS][ARGS];
	size_t lens[PIPE_CALLS][ARGS];
	char nums[PIPE_CALLS][2 * PIPE_ENTRIES][24];
	int argc[PIPE_CALLS];
	unsigned calls = 0;
	/* Each call packs into a buffer of its own, which stays put until its
	 * reply is read. */
	for (; calls < PIPE_CALLS; calls++)
		if (!out_build_call(b, s, calls, argv[calls], lens[calls], &argc[calls], nums[calls]))
			break;
	*sent_any = calls > 0;
	if (!calls)
		return 0;
	for (unsigned c = 0; c < calls; c++)
		redisAppendCommandArgv(b->rd.c, argc[c], argv[c], lens[c]);
	int rc = 0;
	bool resend = false, full = false;
	for (unsigned c = 0; c < calls; c++) {
		redisReply *r = NULL;
		if (rc == 0 && redisGetReply(b->rd.c, (void **)&r) != REDIS_OK) {
			say("redis %s:%d: %s", b->o->host, b->o->port, b->rd.c->errstr);
			rc = -EIO;
		}
		if (r) {
			long long st, last;
			if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			    reply_is_int(r->element[0], &st) && reply_is_int(r->element[1], &last)) {
				out_acked(b, s, (uint64_t)last);
				if (st != 1)
					resend = true; /* full (0) or gap (-1, after a full) */
				if (st == 0)
					full = true;
			} else if (r->type == REDIS_REPLY_ERROR) {
				if (!strncmp(r->str, "NOSCRIPT", 8)) {
					load_script(&b->rd, add_lua, b->rd.add_sha);
				} else {
					say("redis: add: %s", r->str);
					if (!strncmp(r->str, "WRONGTYPE", 9))
						rc = -EPROTO; /* STREAM is not a stream */
				}
				resend = true;
			}
			freeReplyObject(r);
		}
	}
	if (resend && rc == 0) {
		s->ninflight = 0;
		s->cursor = atomic_load(&b->win.w->head);
		if (full && b->o->maxlen)
			rc = out_wait_room(b);
		else
			sleep_ms(10); /* a refused script: do not spin on it */
	}
	return rc;
}

int bridge_out(struct bridge *b)
{
	struct win *w = b->win.w;
	struct out_state s = { 0 };
	hex64(w->id, s.id);
	snprintf(s.epoch, sizeof(s.epoch), "%" PRIu64, atomic_load(&w->epoch));
	snprintf(s.done_last_id, sizeof(s.done_last_id), "0-0");
	snprintf(s.maxlen, sizeof(s.maxlen), "%" PRIu64, b->o->maxlen);
	if (take_over_connection(b) < 0 || out_resync(b, &s) < 0)
		redis_drop(&b->rd); /* reconnects below */
	for (;;) {
		if (!redis_ok(&b->rd)) {
			int r = bridge_reconnect(b);
			if (r == -ECANCELED)
				break;
			if (r == -EPROTO)
				return EX_PROTOCOL;
			if (r == 0 && out_resync(b, &s) < 0)
				redis_drop(&b->rd);
			continue;
		}
		if (keeper_check(b) < 0)
			return EX_SOFTWARE;
		out_poll_done(b, &s);
		uint32_t st = atomic_load(&w->state); /* before head and tail */
		/* Redis has the END: we saw it acknowledged, or a bridge before us
		 * did (W_EOD: the keeper wrote END; head == tail: Redis holds
		 * every record, END the last). */
		if ((s.end_acked || (st & W_EOD)) &&
		    atomic_load(&w->head) == atomic_load(&w->tail)) {
			if (!b->joinable || atomic_load(&w->done_applied) >= atomic_load(&w->msgs))
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		if (stop_requested && !(st & W_STOP)) {
			atomic_fetch_or(&w->state, W_STOP);
			bell_ring(b->win.to_keeper);
		}
		bool sent = false;
		int r = out_round(b, &s, &sent);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		if (r < 0)
			return EX_PROTOCOL;
		if (!sent) {
			if (stop_requested && atomic_load(&w->head) == atomic_load(&w->tail))
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
		}
	}
	for (unsigned c = 0; c < PIPE_CALLS; c++)
		free(s.pack[c]);
	window_finish(b);
	return 0;
}
