/* shmq-bridge in: stream -> window -> local queue. */
#include "bridge.h"

/* ----------------------------------------------------------- in bridge -- */

struct pending_ack { /* an entry to acknowledge once head passes pos */
	char id[48];
	uint64_t pos;
};

struct in_state {
	struct pending_ack *acks;
	size_t nacks, acks_cap, acks_head;
	char consumer[32], self_id[17];
	uint64_t sent_gen;
	uint64_t sent_done[MAX_PRODUCERS];
	bool reading_pending; /* re-reading our own pending entries first */
	char pending_from[48]; /* ... after this id */
	int64_t next_claim;
	uint32_t ended;       /* producers whose END is appended */
};

/* Apply a prod[] intent whose records are published; forget one whose are
 * not (the entry stays pending in Redis and comes again). */
static void in_recover_intent(struct win *w)
{
	uint64_t it = atomic_load(&w->intent_tail);
	if (it && atomic_load(&w->tail) >= it && w->intent_idx < MAX_PRODUCERS) {
		w->prod[w->intent_idx] = w->intent;
		if (w->intent_idx >= w->nprod)
			w->nprod = w->intent_idx + 1;
	}
	atomic_store(&w->intent_tail, 0);
}

static int prod_index(struct win *w, uint64_t id)
{
	for (uint32_t i = 0; i < w->nprod; i++)
		if (w->prod[i].id == id)
			return (int)i;
	return w->nprod < MAX_PRODUCERS ? (int)w->nprod : -1;
}

/* Is [first, last] appended already? */
static bool prod_has(const struct prod *p, uint64_t first, uint64_t last)
{
	if (last <= p->last)
		return true;
	for (uint32_t i = 0; i < p->nextra && i < MAX_EXTRA; i++)
		if (first >= p->extra[i][0] && last <= p->extra[i][1])
			return true;
	return false;
}

/* Record [first, last] as appended. The ranges above p->last stay sorted
 * and disjoint, neighbours merged, and fold into p->last once the gap below
 * them fills. Past MAX_EXTRA ranges the lowest is forgotten: a replay of it
 * would then be delivered again (at least once still holds). */
static void prod_add(struct prod *p, uint64_t first, uint64_t last)
{
	uint64_t r[MAX_EXTRA + 1][2];
	uint32_t n = 0, i = 0;
	uint32_t have = p->nextra < MAX_EXTRA ? p->nextra : MAX_EXTRA;
	for (; i < have && p->extra[i][0] < first; i++)
		memcpy(r[n++], p->extra[i], sizeof(r[0]));
	r[n][0] = first, r[n][1] = last, n++;
	for (; i < have; i++)
		memcpy(r[n++], p->extra[i], sizeof(r[0]));
	/* Merge: into last, then neighbours. */
	uint32_t out = 0;
	for (i = 0; i < n; i++) {
		if (r[i][0] <= p->last + 1) {
			if (r[i][1] > p->last)
				p->last = r[i][1];
		} else if (out && r[i][0] <= r[out - 1][1] + 1) {
			if (r[i][1] > r[out - 1][1])
				r[out - 1][1] = r[i][1];
		} else {
			memcpy(r[out++], r[i], sizeof(r[0]));
		}
	}
	/* A range that the new last reaches folds in too (they are sorted). */
	uint32_t skip = 0;
	while (skip < out && r[skip][0] <= p->last + 1) {
		if (r[skip][1] > p->last)
			p->last = r[skip][1];
		skip++;
	}
	if (out - skip > MAX_EXTRA)
		skip = out - MAX_EXTRA;
	p->nextra = out - skip;
	memcpy(p->extra, r + skip, p->nextra * sizeof(r[0]));
}

static void ack_push(struct in_state *s, const char *id, size_t len, uint64_t pos)
{
	if (s->nacks == s->acks_cap) {
		size_t cap = s->acks_cap ? s->acks_cap * 2 : 256;
		struct pending_ack *a = malloc(cap * sizeof(*a));
		if (!a)
			return; /* not acknowledged now: it comes again, dedup drops it */
		for (size_t i = 0; i < s->nacks; i++)
			a[i] = s->acks[(s->acks_head + i) % s->acks_cap];
		free(s->acks);
		s->acks = a;
		s->acks_cap = cap;
		s->acks_head = 0;
	}
	struct pending_ack *p = &s->acks[(s->acks_head + s->nacks++) % s->acks_cap];
	if (len >= sizeof(p->id))
		len = sizeof(p->id) - 1;
	memcpy(p->id, id, len);
	p->id[len] = 0;
	p->pos = pos;
}

/* Acknowledge (XACK, then trim) the entries the keeper has put. */
static int in_send_acks(struct bridge *b, struct in_state *s)
{
	uint64_t head = atomic_load_explicit(&b->win.w->head, memory_order_acquire);
	while (s->nacks && s->acks[s->acks_head].pos <= head) {
		const char *argv[5 + ACK_MAX];
		int a = 0;
		argv[a++] = "EVALSHA";
		argv[a++] = b->rd.ack_sha;
		argv[a++] = "1";
		argv[a++] = b->o->stream;
		argv[a++] = b->o->group;
		size_t taken = 0;
		while (taken < s->nacks && taken < ACK_MAX &&
		       s->acks[(s->acks_head + taken) % s->acks_cap].pos <= head) {
			argv[a++] = s->acks[(s->acks_head + taken) % s->acks_cap].id;
			taken++;
		}
		redisReply *r = cmd(&b->rd, a, argv, NULL);
		if (!r)
			return -EIO;
		bool ok = r->type != REDIS_REPLY_ERROR;
		if (!ok && !strncmp(r->str, "NOSCRIPT", 8))
			load_script(&b->rd, ack_lua, b->rd.ack_sha);
		else if (!ok)
			say("redis: ack: %s", r->str);
		freeReplyObject(r);
		if (!ok)
			return 0; /* they stay pending: retried, or re-read after a restart */
		s->acks_head = (s->acks_head + taken) % s->acks_cap;
		s->nacks -= taken;
	}
	return 0;
}

/* Send the keeper's done counts to STREAM:done. */
static int in_send_done(struct bridge *b, struct in_state *s)
{
	struct win *w = b->win.w;
	uint64_t gen = atomic_load_explicit(&w->report_gen, memory_order_acquire);
	if (gen == s->sent_gen)
		return 0;
	for (uint32_t i = 0; i < w->nprod; i++) {
		uint64_t n = atomic_load(&w->done[i]);
		if (n == s->sent_done[i])
			continue;
		char p[17], num[24];
		hex64(w->prod[i].id, p);
		snprintf(num, sizeof(num), "%" PRIu64, n);
		const char *argv[] = { "XADD", b->rd.done_key, "*", "in", s->self_id, "p", p, "n", num };
		redisReply *r = cmd(&b->rd, 9, argv, NULL);
		if (!r)
			return -EIO;
		freeReplyObject(r);
		s->sent_done[i] = n;
	}
	s->sent_gen = gen;
	return 0;
}

/* Wait until the window has room for len more record bytes, keeping acks
 * flowing. Returns 0; -EIO; -EMSGSIZE (never fits). */
static int in_wait_room(struct bridge *b, struct in_state *s, uint64_t bytes)
{
	struct win *w = b->win.w;
	/* The records of one entry wrap at most once, wasting less than one
	 * record: room for twice their bytes is room enough. */
	if (2 * bytes > w->cap)
		return -EMSGSIZE;
	for (;;) {
		uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
		uint64_t tail = atomic_load(&w->tail);
		if (tail - head + 2 * bytes <= w->cap)
			return 0;
		int r = in_send_acks(b, s);
		if (r < 0)
			return r;
		if ((r = keeper_check(b)) < 0)
			return r;
		bell_ring(b->win.to_keeper); /* what this read appended so far */
		bell_wait(b->win.to_bridge, POLL_NS);
	}
}

struct entry_fields {
	uint64_t p, e, s, n;
	bool has_p, has_s, has_n, end;
	const char *d;
	size_t dlen;
};

static bool parse_entry(const redisReply *f, struct entry_fields *ef)
{
	memset(ef, 0, sizeof(*ef));
	if (f->type != REDIS_REPLY_ARRAY)
		return false;
	for (size_t j = 0; j + 1 < f->elements; j += 2) {
		const redisReply *k = f->element[j], *v = f->element[j + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			return false;
		if (!strcmp(k->str, "p"))
			ef->has_p = parse_hex64(v->str, v->len, &ef->p);
		else if (!strcmp(k->str, "s"))
			ef->has_s = parse_u64(v->str, v->len, &ef->s);
		else if (!strcmp(k->str, "n"))
			ef->has_n = parse_u64(v->str, v->len, &ef->n);
		else if (!strcmp(k->str, "end"))
			ef->end = v->len == 1 && v->str[0] == '1';
		else if (!strcmp(k->str, "d")) {
			ef->d = v->str;
			ef->dlen = v->len;
		}
	}
	if (!ef->has_p || !ef->has_s || !ef->has_n || ef->s == 0 || ef->n == 0 ||
	    ef->n > (1u << 24) || ef->p == 0)
		return false;
	if (ef->end)
		return ef->n == 1;
	/* The packed messages must fill d exactly. */
	size_t off = 0;
	uint64_t count = 0;
	while (off + 4 <= ef->dlen) {
		uint32_t len;
		memcpy(&len, ef->d + off, 4);
		if (len > ef->dlen - off - 4)
			return false;
		off += 4 + len;
		count++;
	}
	return off == ef->dlen && count == ef->n;
}

/* Append one stream entry to the window (or drop it as a duplicate), and
 * queue its acknowledgement. Returns 0; -EIO; EX_DATAERR (fatal). */
static int in_entry(struct bridge *b, struct in_state *s, const redisReply *e)
{
	struct win *w = b->win.w;
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
		return 0;
	const char *id = e->element[0]->str;
	size_t idlen = e->element[0]->len;
	struct entry_fields ef;
	if (s->reading_pending) {
		snprintf(s->pending_from, sizeof(s->pending_from), "%s", id);
		/* Read before a lost connection and in hand: not again. */
		for (size_t i = 0; i < s->nacks; i++)
			if (!strcmp(s->acks[(s->acks_head + i) % s->acks_cap].id, id))
				return 0;
	}
	if (e->element[1]->type == REDIS_REPLY_NIL) { /* deleted meanwhile */
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	if (!parse_entry(e->element[1], &ef)) {
		say("dropping stream entry %s: not a shmq bridge entry", id);
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	int idx = prod_index(w, ef.p);
	if (idx < 0) {
		say("more than %u out bridges feed %s: entry %s left pending", MAX_PRODUCERS,
		    b->o->stream, id);
		return 0;
	}
	struct prod p = (uint32_t)idx < w->nprod ? w->prod[idx] : (struct prod){ .id = ef.p };
	uint64_t last = ef.s + ef.n - 1;
	/* Everything of a producer comes before its END: after it, a replay. */
	bool dup = p.ended || (b->o->dedup && prod_has(&p, ef.s, last));
	if (dup || (ef.end && s->ended >= b->o->producers && b->o->producers)) {
		ack_push(s, id, idlen, atomic_load(&w->tail));
		return 0;
	}
	/* Record bytes this entry needs. */
	uint64_t bytes = rec_size(0);
	for (size_t off = 0; !ef.end && off < ef.dlen;) {
		uint32_t len;
		memcpy(&len, ef.d + off, 4);
		if (len > b->local_msg_max) {
			say("stream entry %s holds a message of %u bytes; %s takes at most %zu: stopping "
			    "(the entry stays pending)",
			    id, len, b->o->queue, b->local_msg_max);
			return EX_DATAERR;
		}
		bytes += rec_size(len);
		off += 4 + len;
	}
	int r = in_wait_room(b, s, bytes);
	if (r == -EMSGSIZE) {
		say("stream entry %s is larger than the window: stopping", id);
		return EX_DATAERR;
	}
	if (r < 0)
		return r;
	/* The intent first, then the records, then the table. */
	prod_add(&p, ef.s, last);
	if (ef.end)
		p.ended = 1;
	uint64_t t = atomic_load(&w->tail);
	if (ef.end) {
		win_put(w, &t, REC_END, (uint16_t)idx, ef.s, NULL, 0);
	} else {
		uint64_t seq = ef.s;
		for (size_t off = 0; off < ef.dlen; seq++) {
			uint32_t len;
			memcpy(&len, ef.d + off, 4);
			win_put(w, &t, REC_MSG, (uint16_t)idx, seq, ef.d + off + 4, len);
			off += 4 + len;
		}
	}
	w->intent = p;
	w->intent_idx = (uint32_t)idx;
	atomic_store(&w->intent_tail, t);
	atomic_store_explicit(&w->tail, t, memory_order_release);
	w->prod[idx] = p;
	if ((uint32_t)idx >= w->nprod)
		w->nprod = (uint32_t)idx + 1;
	atomic_store(&w->intent_tail, 0);
	if (ef.end)
		s->ended++;
	ack_push(s, id, idlen, t);
	return 0;
}

/* Entries of an XREADGROUP / XAUTOCLAIM reply. Returns the count seen, or
 * a negative / exit status from in_entry. */
static int in_entries(struct bridge *b, struct in_state *s, const redisReply *entries)
{
	int seen = 0, r = 0;
	for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
		if ((r = in_entry(b, s, entries->element[i])) != 0)
			break;
		seen++;
	}
	bell_ring(b->win.to_keeper); /* once for the lot */
	if (r != 0)
		return r < 0 ? r : -r - 1000; /* exit status, encoded */
	return seen;
}

/* Read entries and append them. Blocks in Redis (up to 100 ms) only when
 * every entry read is acknowledged: while the keeper still delivers some,
 * their acknowledgements must not wait behind a blocked read (with --maxlen
 * the far side may be waiting for exactly those). Returns 0; -EIO; an exit
 * status encoded as by in_entries. */
static int in_read(struct bridge *b, struct in_state *s)
{
	char count[16];
	snprintf(count, sizeof(count), "%u", b->o->batch < READ_COUNT ? b->o->batch : READ_COUNT);
	const char *argv[] = { "XREADGROUP", "GROUP", b->o->group, s->consumer, "COUNT", count,
			       "BLOCK", "100", "STREAMS", b->o->stream,
			       s->reading_pending ? s->pending_from : ">" };
	int argc = 11;
	if (s->reading_pending || s->nacks) { /* no BLOCK */
		argv[6] = "STREAMS";
		argv[7] = b->o->stream;
		argv[8] = argv[10];
		argc = 9;
	}
	redisReply *r = cmd(&b->rd, argc, argv, NULL);
	if (!r)
		return -EIO;
	int seen = 0;
	if (r->type == REDIS_REPLY_ERROR) {
		say("redis: XREADGROUP: %s", r->str);
		if (!strncmp(r->str, "NOGROUP", 7)) { /* the stream was deleted: again */
			freeReplyObject(r);
			redis_drop(&b->rd);
			return -EIO;
		}
		sleep_ms(100);
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		   r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
		seen = in_entries(b, s, r->element[0]->element[1]);
	}
	freeReplyObject(r);
	if (s->reading_pending && seen == 0)
		s->reading_pending = false;
	else if (seen == 0 && s->nacks)
		bell_wait(b->win.to_bridge, POLL_NS / 5); /* the keeper's next put */
	return seen < 0 ? seen : 0;
}

/* Take over entries that a dead in bridge of the group left pending past
 * --claim-idle, and keep ours from looking idle to the others. */
static int in_claim(struct bridge *b, struct in_state *s)
{
	if (now_ns() < s->next_claim)
		return 0;
	s->next_claim = now_ns() + b->o->claim_idle_ms * 1000000LL / 3;
	/* Ours first: XCLAIM ... JUSTID resets their idle time. */
	for (size_t i = 0; i < s->nacks;) {
		const char *argv[6 + 64];
		int a = 0;
		argv[a++] = "XCLAIM";
		argv[a++] = b->o->stream;
		argv[a++] = b->o->group;
		argv[a++] = s->consumer;
		argv[a++] = "0";
		for (; i < s->nacks && a < 5 + 64; i++)
			argv[a++] = s->acks[(s->acks_head + i) % s->acks_cap].id;
		argv[a++] = "JUSTID";
		redisReply *r = cmd(&b->rd, a, argv, NULL);
		if (!r)
			return -EIO;
		freeReplyObject(r);
	}
	char idle[24];
	snprintf(idle, sizeof(idle), "%" PRId64, b->o->claim_idle_ms);
	const char *argv[] = { "XAUTOCLAIM", b->o->stream, b->o->group, s->consumer, idle, "0-0",
			       "COUNT", "16" };
	redisReply *r = cmd(&b->rd, 8, argv, NULL);
	if (!r)
		return -EIO;
	int seen = 0;
	if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
		/* Claimed entries are not our pending list: they must not move
		 * where its re-reading resumes. */
		bool pending = s->reading_pending;
		s->reading_pending = false;
		seen = in_entries(b, s, r->element[1]);
		s->reading_pending = pending;
		if (seen > 0)
			say("claimed %d entr%s left by a dead bridge", seen, seen == 1 ? "y" : "ies");
	}
	freeReplyObject(r);
	return seen < 0 ? seen : 0;
}

int bridge_in(struct bridge *b)
{
	struct win *w = b->win.w;
	struct in_state s = { 0 };
	in_recover_intent(w);
	hex64(w->id, s.self_id);
	snprintf(s.consumer, sizeof(s.consumer), "shmq-%s", s.self_id);
	s.reading_pending = true;
	strcpy(s.pending_from, "0");
	s.next_claim = now_ns() + b->o->claim_idle_ms * 1000000LL / 3;
	for (uint32_t i = 0; i < w->nprod; i++)
		if (w->prod[i].ended)
			s.ended++;
	if (take_over_connection(b) < 0)
		redis_drop(&b->rd); /* reconnects below */
	int rc = 0;
	for (;;) {
		if (!redis_ok(&b->rd)) {
			int r = bridge_reconnect(b);
			if (r == -ECANCELED)
				break;
			if (r == -EPROTO)
				return EX_PROTOCOL;
			/* A reply lost with the connection left entries pending
			 * that we never saw: read them (in_entry skips those we
			 * hold). */
			s.reading_pending = true;
			strcpy(s.pending_from, "0");
			s.sent_gen = 0;
			memset(s.sent_done, 0xff, sizeof(s.sent_done));
			continue;
		}
		if (keeper_check(b) < 0)
			return EX_SOFTWARE;
		/* The state first: the keeper's last report comes before W_EOD. */
		uint32_t st = atomic_load(&w->state);
		int r = in_send_acks(b, &s);
		if (r == 0 && b->joinable)
			r = in_send_done(b, &s);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		/* Our pending list first, even at the end: a bridge killed after
		 * appending the last END left entries unacknowledged. */
		if ((st & W_EOD) && !s.reading_pending) { /* the last END is delivered */
			if (s.nacks == 0)
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		bool all_ended = b->o->producers && s.ended >= b->o->producers;
		if (stop_requested || (all_ended && !s.reading_pending)) {
			/* Read no more; let the keeper deliver what is here. */
			if (stop_requested && atomic_load(&w->head) == atomic_load(&w->tail) &&
			    s.nacks == 0)
				break;
			bell_wait(b->win.to_bridge, POLL_NS);
			continue;
		}
		r = in_claim(b, &s);
		if (r == 0)
			r = in_read(b, &s);
		if (r == -EIO) {
			redis_drop(&b->rd);
			continue;
		}
		if (r <= -1000) {
			rc = -r - 1000;
			break;
		}
	}
	free(s.acks);
	if (rc)
		return rc; /* the keeper keeps the window; fix and restart */
	window_finish(b);
	return 0;
}
