/* Promela model of the crash-safety protocol of shmq's Redis bridge
 * (tools/bridge/: the out and in windows, the add and ack scripts, what a
 * restarted bridge does), end to end: N messages of a local queue carried
 * over a Redis stream into another local queue.
 *
 * Processes:
 *   okeeper  the out keeper (keeper_out): appends the messages 1..N, then
 *            the END record (sequence N + 1), to the out window (a ring of
 *            OCAP records), one a step while there is room, publishing
 *            tail; then W_EOD.
 *   obridge  the out bridge (bridge_out): out_resync (HGET the sequence,
 *            out_acked), then rounds (out_round): up to PIPE add-script
 *            calls pipelined, one entry each of up to OBATCH records from
 *            cursor (an END alone), then their replies in order, each into
 *            out_acked (head moves past the records Redis holds, acked_seq
 *            stored before head; a status other than 1 sends cursor back to
 *            head); nothing to send: bell_wait; finished (W_FINISH, the
 *            model's odone) once end_acked and head == tail.
 *   redis    runs each add-script call atomically (add_lua: append the
 *            entry if first == last + 1, skip it if first + n - 1 <= last,
 *            refuse a gap) and replies {status, last} on the connection.
 *            When the out bridge dies its connection closes: a prefix of
 *            its calls not yet run reaches Redis (orphans: run later, at
 *            any point, or never), the rest and all replies are lost.
 *   ibridge  the in bridge (bridge_in) of a group with this one consumer,
 *            --producers 1: in_recover_intent, then loops of: W_EOD read,
 *            in_send_acks (the ack script, XACK, then XTRIM MINID below
 *            the group's oldest pending entry, for the acks in
 *            hand whose position head reached); W_EOD: finish once no ack
 *            is in hand; all ENDs appended: wait; else XREADGROUP COUNT 1,
 *            its own PEL from id 0 first (reading_pending, until a read
 *            finds none), then ">". Each entry through in_entry: skip one
 *            in hand; drop a duplicate (an END of an ended producer; with
 *            --dedup an entry within prod.last) with ack_push(id, tail);
 *            in_wait_room (sending acks); then the records, the intent (the
 *            new table), intent_tail, tail, the table, intent_tail = 0,
 *            ack_push(id, tail).
 *   ikeeper  the in keeper (keeper_in): delivers the record at head to the
 *            local queue (or counts an END) and advances head, one record a
 *            step; W_EOD once head == tail after the END.
 * Each bridge can be killed at any step that reads or writes shared state
 * (an alternative offered beside each, and beside every wait; a kill
 * between two steps that touch only its own variables is the same as one
 * before the next shared step), MAXKO and MAXKI times (default 2 each),
 * and restarts with its local state lost: what the window and Redis hold
 * stays. The in bridge's connection can also be lost (MAXDROP, default 1)
 * in a call, which Redis ran or not: it reconnects and reads its PEL from
 * id 0 again, keeping its acks in hand (in_entry's skip of those).
 *
 * The run is in two phases: the out side (okeeper, obridge, redis) until
 * the out bridge finishes, then the in side (ikeeper, ibridge) with the
 * stream the out side wrote, its entries made visible one at a time at any
 * point of the in side's run (feeder). The out side reads nothing the in
 * side writes (no --maxlen here), and the in side sees the out side only
 * through the stream growing, so running them together would add only
 * interleavings of independent steps (and multiply the states).
 *
 * Checked (assertions, and pan's invalid end states):
 *   - the stream: every append continues it (asserted at each), so it
 *     holds 1..N, then END, in order, each once (asserted at the end of
 *     the out phase, with Redis's last sequence END, every record acked,
 *     and every orphan left a resend); a live call meets a gap (status -1)
 *     only when an orphan appended since the bridge's HGET (ghost `late`);
 *   - out window: head passes a record only once Redis holds it (asserted
 *     at each store of head); at a resync Redis's last is never below
 *     acked_seq (so out_resync's branch for Redis having lost acknowledged
 *     entries never runs: the model has no Redis data loss);
 *   - in window: with --dedup (the default) the local queue receives 1..N
 *     exactly once each, in order; without (-DNODEDUP) duplicates may come
 *     but nothing is skipped and first occurrences come in order (asserted
 *     at each delivery); exactly one END is delivered; the dedup table
 *     grows by contiguous ranges only (prod.extra is never needed here);
 *   - acks: an entry is acked only once its messages (or its END) are in
 *     the local queue (asserted at each ack call);
 *   - the end: when the in bridge finishes every stream entry is acked
 *     (the PEL is empty), and the local queue got 1..N and the END;
 *   - termination: a state where nothing can move any more (the kill
 *     budgets spent, as a kill is offered beside every wait) before both
 *     bridges finished is an invalid end state: a bridge that waits for
 *     good (a bell_wait whose condition never comes).
 *
 * Three defects the model found are fixed in tools/bridge/, and their fixes are
 * the model's default; -DBUG_OUT_END, -DBUG_IN_PENDING, -DBUG_LATE_READ put
 * each back (the search then fails):
 *   OUT_END     a restarted out bridge whose head had passed the END
 *               before it died waited for good: out_resync leaves
 *               end_acked false (no record left to pass), so bridge_out
 *               never finished. Now it finishes also on W_EOD with head ==
 *               tail (the keeper sets W_EOD after the END's tail, and head
 *               passes only what Redis holds).
 *   IN_PENDING  a restarted in bridge whose table says every END is
 *               appended (s.ended) never read its PEL: it finished on
 *               W_EOD, or waited for it (all_ended), leaving the entries
 *               whose acks it held pending and in the stream for good. Now
 *               neither the W_EOD finish nor the all-ended wait happen while
 *               reading_pending, and an entry of a producer whose END is
 *               appended is a duplicate (without --dedup it would be
 *               appended after the END, past W_EOD: never delivered, never
 *               acked).
 *   LATE_READ   see IN_LATE_READ below.
 * IN_LATE_READ (on by default; -DNO_LATE_READ leaves it out) adds what the in bridge's XREADGROUP ">" of a connection it
 * gave up on (a kill, or a lost connection: cmd() timed out) can do when
 * its bytes reach Redis late: run after the next connection has read the
 * PEL, so that the entries it hands to our consumer are pending and never
 * read (the out side's orphans are in the default model; theirs are
 * harmless). Without its fix (BUG_LATE_READ) the search fails: an END so hidden leaves the
 * in side waiting for good; an entry of messages so hidden is skipped (the
 * next one is appended after a gap: prod_add's assertion here; the C table
 * keeps it as an extra range, and those messages are lost). The fix
 * (take_over_connection in tools/bridge/redis.c): a bridge that reconnects or restarts
 * first closes its previous connection in Redis (CLIENT KILL ID, the id
 * kept in the window), then reads its PEL.
 * More -D switches that put a bug in, each making the search fail:
 *   BUG_TAIL_FIRST  in_entry publishes tail before intent_tail: a kill
 *                   between them loses the table's update, the entry comes
 *                   again and is appended twice (a second END)
 *   BUG_INTENT_ANY  in_recover_intent applies the intent whatever tail: a
 *                   kill before the records are published drops the entry
 *                   as a duplicate (acked, never delivered)
 *   BUG_PLAIN_XADD  the add script appends every entry (no sequence
 *                   check): a resend duplicates entries in the stream
 * Bounds: -DN= (messages, default 3), -DOCAP= (2), -DOBATCH= (2), -DPIPE=
 * (2), -DICAP= (2, at least OBATCH), -DMAXKO= (2), -DMAXKI= (2),
 * -DMAXDROP= (1).
 *
 * tools/test.sh runs it like the other models (pan, safety, -DCOLLAPSE).
 * By default: 0.36 million states, 0.5 s
 * (-DNODEDUP: 0.7 million, 1 s); larger runs, each errors: 0: -DN=4
 * -DOCAP=3 -DICAP=3 -DMAXKO=3 -DMAXKI=3 (2.2 million states, 4 s;
 * -DNODEDUP 9 million, 16 s), -DN=4 -DOBATCH=3 -DOCAP=3 -DICAP=3 -DPIPE=3
 * (1.4 million), -DMAXKO=3 -DMAXKI=3 -DMAXDROP=2 (0.9 million; -DNODEDUP
 * 2.6 million), -DMAXKI=3 -DMAXDROP=2 with IN_LATE_READ (0.9
 * million). A counterexample is written to bridge.pml.trail; `spin -t -p
 * -g bridge.pml` (with the same -D switches) replays it.
 *
 * What the model leaves out. Memory ordering (sequentially consistent here;
 * each cursor has one writer, which stores it with release after the
 * records, and acked_seq is stored before head); the byte ring (a record is
 * a slot; WRAP records, sizes, ENTRY_BYTES, -EMSGSIZE); several entries per
 * add-script call (one here; the script is atomic either way); the order
 * of orphans of two dead connections (one queue here: the older first);
 * the in bridge's late calls other than a ">" read (a late read of the
 * PEL, or a late ack, changes nothing) and more than one at a time;
 * the out bridge's connection losses without a kill (it resyncs as after a
 * restart, keeping only end_acked); window creation, adoption, the lock
 * and the heap (window_adopt; a restart after W_FINISH starts afresh); the
 * keepers' deaths and restarts; --maxlen (status 0: a full stream);
 * several out bridges (one producer id: prod_index, nprod), several in
 * bridges in a group, XAUTOCLAIM (in_claim) and out-of-order ranges;
 * deleted entries (a nil reply); joinable queues (STREAM:done), SIGTERM
 * (W_STOP); the local queues (the out keeper's gets never fail, the in
 * keeper's puts always succeed, one record a step where the C keeper puts
 * up to 64: a head that moves in finer steps); livelock (safety search
 * only: a bridge's loop that spins without progress is not reported, and
 * none is expected: every busy path is bounded by the budgets).
 */

/* tools/bridge/ as it is: the fixes on unless a BUG_ switch takes one out. */
#ifndef BUG_OUT_END
#define FIX_OUT_END
#endif
#ifndef BUG_IN_PENDING
#define FIX_IN_PENDING
#endif
#ifndef BUG_LATE_READ
#define FIX_LATE_READ
#endif
#ifndef NO_LATE_READ
#define IN_LATE_READ
#endif

#ifndef N
#define N 3              /* messages */
#endif
#define END (N + 1)      /* the END record's sequence */
#define NENT (N + 1)     /* stream entries, at most */
#ifndef OCAP
#define OCAP 2           /* out window: records */
#endif
#ifndef OBATCH
#define OBATCH 2         /* out --batch: records per entry */
#endif
#ifndef PIPE
#define PIPE 2           /* add-script calls in flight (PIPE_CALLS) */
#endif
#ifndef ICAP
#define ICAP 2           /* in window: records (>= OBATCH) */
#endif
#ifndef MAXKO
#define MAXKO 2          /* kills of the out bridge */
#endif
#ifndef MAXKI
#define MAXKI 2          /* kills of the in bridge */
#endif
#ifndef MAXDROP
#define MAXDROP 1        /* connection losses of the in bridge */
#endif
#define PRODUCERS 1      /* in --producers */

#define TAKEN 1          /* add-script status 1 */
#define GAP 2            /* add-script status -1 */

/* ------------------------------------------------------- out window -- */

byte oring[OCAP];        /* record slots: the sequence (END: N + 1) */
byte ohead, otail;       /* positions (slot = position % OCAP) */
byte oacked;             /* acked_seq */
bit oeod;                /* W_EOD: the keeper wrote the END */
bit odone;               /* W_FINISH: the out bridge finished */

/* ------------------------------------------------------------- Redis -- */

byte hlast;              /* STREAM:seq, this out bridge's last sequence */
byte sfirst[NENT], sn[NENT]; /* the stream's entries: s and n (END: s = N + 1) */
byte slen;
byte svis;               /* of them, visible to the in side (see init) */
byte gnext;              /* the group's last-delivered: entries below it were read */
bit pel[NENT];           /* in the PEL (of the one consumer) */
bit sacked[NENT];        /* XACKed and gone from the stream (see ack_call) */
chan oreq = [PIPE] of { byte, byte };   /* add calls of the live connection: first, n */
chan orep = [PIPE] of { byte, byte };   /* their replies: status, last */
chan orphan = [PIPE * MAXKO] of { byte, byte }; /* calls of closed connections */
bit late;                /* ghost: an orphan appended since the last HGET */

/* -------------------------------------------------------- in window -- */

byte iring[ICAP];        /* record slots: the sequence (END: N + 1) */
byte ihead, itail;
byte plast;              /* prod[0].last */
bit pended;              /* prod[0].ended */
byte int_tail;           /* intent_tail (0: none) */
byte int_last;           /* intent.last */
bit int_ended;           /* intent.ended */
byte ends_seen;          /* in keeper: END records delivered */
bit ieod;                /* W_EOD */
bit idone;               /* W_FINISH: the in bridge finished */
bit late_read;           /* IN_LATE_READ: an XREADGROUP ">" of a closed connection */
byte maxdel;             /* the local queue: the highest message delivered */

/* ------------------------------------------------------------- Redis -- */

/* add_lua for one entry [first, first + n - 1]. */
inline add_script(first, n, st)
{
	st = TAKEN;
#ifdef BUG_PLAIN_XADD
	if
	:: slen < NENT -> sfirst[slen] = first; sn[slen] = n; slen++
	:: else -> skip
	fi;
#endif
	if
	:: first + n - 1 > hlast ->
		if
		:: first != hlast + 1 -> st = GAP
		:: else ->
#ifndef BUG_PLAIN_XADD
			/* the stream goes on from its last entry: 1..N, END */
			assert(slen < NENT && first + n - 1 <= END && (first != END || n == 1));
			assert((slen == 0 && first == 1) ||
			       (slen > 0 && first == sfirst[slen - 1] + sn[slen - 1]));
			sfirst[slen] = first;
			sn[slen] = n;
			slen++;
#endif
			hlast = first + n - 1
		fi
	:: else -> skip               /* a resend: Redis holds it */
	fi
}

proctype redis()
{
	byte first, n, st, b4;
end:
	do
	:: atomic { oreq?first, n -> add_script(first, n, st);
		/* a live call meets a gap only after an orphan appended */
		assert(st != GAP || late);
		orep!st, hlast; first = 0; n = 0; st = 0 }
	:: atomic { orphan?first, n -> b4 = hlast; add_script(first, n, st);
		if
		:: hlast != b4 -> late = 1
		:: else -> skip
		fi;
		first = 0; n = 0; st = 0; b4 = 0 }
	od
}

/* ------------------------------------------------------------ out -- */

proctype okeeper()
{
	byte s = 1;
	do
	:: atomic { s <= END && otail - ohead < OCAP ->
		oring[otail % OCAP] = s; otail++; s++ }
	:: atomic { s > END -> oeod = 1; s = 0 }; break
	od
}

/* The out bridge dies: its connection closes. Of the calls it sent that
 * Redis has not run, a prefix reaches Redis (orphans, run later or never),
 * the rest is lost; its replies are lost. */
#define OKILL atomic { okills < MAXKO -> okills++; oclose(); goto okilled }

inline oclose()
{
	do
	:: nempty(oreq) && nfull(orphan) -> oreq?first, n; orphan!first, n
	:: true -> break
	od;
	do
	:: nempty(oreq) -> oreq?first, n
	:: empty(oreq) -> break
	od;
	do
	:: nempty(orep) -> orep?first, n
	:: empty(orep) -> break
	od
}

/* out_acked(last), after the look at the window: h is the new head. Then
 * acked_seq, then head (two stores, a kill between them). */
inline out_look(last)
{
	h = ohead;
	do
	:: h < otail && oring[h % OCAP] <= last ->
		if
		:: oring[h % OCAP] == END -> end_acked = 1
		:: else -> skip
		fi;
		h++
	:: else -> break
	od
}

inline out_store(last)
{
	if
	:: atomic { last > oacked -> oacked = last }
	:: atomic { last <= oacked -> skip }
	:: OKILL
	fi;
	if
	:: atomic {
		/* no record leaves the window before Redis holds it */
		assert(h == ohead || oring[(h - 1) % OCAP] <= hlast);
		ohead = h;
		if
		:: cursor < h -> cursor = h
		:: else -> skip
		fi
	   }
	:: OKILL
	fi
}

/* bridge_out's loop: finished (window_finish follows) */
#ifdef FIX_OUT_END
#define OUT_DONE ((end_acked || oeod) && ohead == otail)
#else
#define OUT_DONE (end_acked && ohead == otail)
#endif

proctype obridge()
{
	byte okills;             /* survives restarts: the budget */
	byte cursor, h, last, first, n, calls, st;
	bit end_acked, resend;
restart:
	/* out_resync: HGET, out_acked; cursor = head */
	if
	:: atomic {
		last = hlast;
		late = 0;
		/* Redis never holds less than acked_seq: no data loss here */
		assert(last >= oacked);
		out_look(last)
	   }
	:: OKILL
	fi;
	out_store(last);
	cursor = ohead;
loop:
	/* bridge_out's loop: finished? */
	if
	:: atomic { OUT_DONE -> odone = 1 }; goto finished
	:: atomic { !OUT_DONE -> skip }
	:: OKILL
	fi;
	/* out_round: build and send up to PIPE calls (out_build_call: from
	 * cursor, up to OBATCH records, an END alone) */
	calls = 0;
	resend = 0;
	do
	:: atomic { calls < PIPE && cursor < otail ->
		first = oring[cursor % OCAP];
		n = 1;
		cursor++;
		if
		:: first != END ->
			do
			:: n < OBATCH && cursor < otail && oring[cursor % OCAP] != END ->
				n++; cursor++
			:: else -> break
			od
		:: else -> skip
		fi;
		oreq!first, n;
		calls++ }
	:: atomic { calls >= PIPE || cursor >= otail -> skip }; break
	:: OKILL
	od;
	if
	:: calls == 0 ->
		/* nothing sent: bell_wait (the keeper rings after it appends
		 * and after W_EOD; the loop looks again) */
		if
		:: otail > cursor || OUT_DONE
		:: OKILL
		fi;
		goto loop
	:: else -> skip
	fi;
	/* the replies, in order */
	do
	:: calls > 0 ->
		if
		:: atomic { orep?st, last -> out_look(last) }
		:: OKILL
		fi;
		out_store(last);
		if
		:: st != TAKEN -> resend = 1
		:: else -> skip
		fi;
		calls--
	:: else -> break
	od;
	if
	:: resend -> cursor = ohead
	:: else -> skip
	fi;
	goto loop;
okilled:
	atomic { cursor = 0; h = 0; last = 0; first = 0; n = 0; calls = 0; st = 0;
		end_acked = 0; resend = 0 };
	goto restart;
finished:
	skip
}

/* ------------------------------------------------------------- in -- */

/* The local queue gets message r. */
inline deliver(r)
{
#ifdef NODEDUP
	assert(r >= 1 && r <= maxdel + 1);   /* nothing skipped */
	if
	:: r == maxdel + 1 -> maxdel++
	:: else -> skip                      /* a duplicate */
	fi
#else
	assert(r == maxdel + 1);             /* exactly once, in order */
	maxdel++
#endif
}

proctype ikeeper()
{
	byte r;
	do
	:: atomic { ihead < itail ->
		r = iring[ihead % ICAP];
		if
		:: r == END -> ends_seen++; assert(ends_seen == 1)
		:: else -> deliver(r)
		fi;
		ihead++;
		r = 0 }
	:: atomic { ihead == itail && ends_seen >= PRODUCERS -> ieod = 1 }; break
	od
}

#define IKILL atomic { ikills < MAXKI -> ikills++; goto ikilled }

/* in_send_acks: one ack-script call (XACK, then XTRIM MINID below the
 * group's oldest pending entry) for the acks in hand whose position head
 * has reached (k of them, the oldest); then they leave the list. The model
 * drops an acked entry from the stream at once; the trim drops it when no
 * older entry is pending, which no read can tell apart: ">" never returns a
 * delivered entry again, and the pending list and XAUTOCLAIM hold only
 * unacked ones. */
inline ack_call()
{
	k = 0;
	do
	:: k < nacks && apos[k] <= ihead ->
		x = aid[k];
		/* the entry's messages (or its END) are in the local queue */
		assert((sfirst[x] == END && ends_seen > 0) ||
		       (sfirst[x] != END && maxdel >= sfirst[x] + sn[x] - 1));
		pel[x] = 0;
		sacked[x] = 1;
		k++
	:: else -> break
	od;
	x = 0
}

inline send_acks()
{
	ack_call();
	j = 0;
	do
	:: j < nacks ->
		if
		:: j + k < nacks -> aid[j] = aid[j + k]; apos[j] = apos[j + k]
		:: else -> aid[j] = 0; apos[j] = 0
		fi;
		j++
	:: else -> break
	od;
	nacks = nacks - k;
	k = 0; j = 0
}

/* The connection to Redis is lost in a call (-EIO), which Redis ran or
 * not: the bridge reconnects and reads its pending entries from id 0 again
 * (bridge_in), keeping everything else, the acks in hand included. An
 * in_entry the call was in (in_wait_room's acks) is abandoned. */
#define IDROP_RECONNECT idrops++; pending = 1; pfrom = 0; goto reconnect

#define ACKABLE (nacks > 0 && apos[0] <= ihead)

/* in_entry for the entry e just read (its fields and the table read with
 * it: the table has no other writer). */
inline in_entry()
{
	if
	:: atomic {
		first = sfirst[e];
		n = sn[e];
		p_last = plast;
		p_ended = pended;
		/* reading pending: one in hand is not appended again */
		found = 0;
		k = 0;
		do
		:: k < nacks -> if :: aid[k] == e -> found = 1 :: else -> skip fi; k++
		:: else -> break
		od;
		k = 0;
		if
		:: found -> skip
		:: !found &&
#ifdef FIX_IN_PENDING
		   (p_ended ||
#else
		   ((first == END && p_ended) ||
#endif
#ifndef NODEDUP
		    (first != END && first + n - 1 <= p_last) ||
#endif
		    (first == END && ended >= PRODUCERS)) ->
			/* a duplicate: acked once head reaches tail */
			aid[nacks] = e; apos[nacks] = itail; nacks++;
			found = 1
		:: else -> skip
		fi
	   }
	:: IKILL
	fi;
	if
	:: !found ->
		/* in_wait_room (acks keep flowing) */
		do
		:: atomic { itail - ihead + n <= ICAP -> skip }; break
		:: atomic { itail - ihead + n > ICAP && ACKABLE -> send_acks() }
		:: atomic { itail - ihead + n > ICAP && ACKABLE && idrops < MAXDROP ->
			ack_call(); IDROP_RECONNECT }
		:: atomic { itail - ihead + n > ICAP && ACKABLE && idrops < MAXDROP ->
			IDROP_RECONNECT }
		:: IKILL
		od;
		/* prod_add: ranges only ever continue last here */
		assert(first <= p_last + 1);
		if
		:: first + n - 1 > p_last -> p_last = first + n - 1
		:: else -> skip
		fi;
		if
		:: first == END -> p_ended = 1
		:: else -> skip
		fi;
		/* the records (beyond tail: unseen), then the intent */
		if
		:: atomic {
			t = itail;
			k = 0;
			do
			:: k < n -> iring[t % ICAP] = first + k; t++; k++
			:: else -> break
			od;
			k = 0;
			int_last = p_last;
			int_ended = p_ended
		   }
		:: IKILL
		fi;
#ifdef BUG_TAIL_FIRST
		if
		:: itail = t
		:: IKILL
		fi;
		if
		:: int_tail = t
		:: IKILL
		fi;
#else
		if
		:: int_tail = t
		:: IKILL
		fi;
		if
		:: itail = t                      /* published */
		:: IKILL
		fi;
#endif
		if
		:: atomic { plast = p_last; pended = p_ended }
		:: IKILL
		fi;
		if
		:: int_tail = 0
		:: IKILL
		fi;
		if
		:: first == END -> ended++
		:: else -> skip
		fi;
		aid[nacks] = e; apos[nacks] = t; nacks++
	:: else -> skip
	fi;
	found = 0
}

proctype ibridge()
{
	byte ikills, idrops;     /* survive restarts */
	byte nacks, aid[NENT], apos[NENT];
	byte e, j, k, x, t, first, n, p_last, ended, pfrom;
	bit p_ended, found, st, pending;
restart:
#ifdef FIX_LATE_READ
	/* CLIENT KILL ID of the dead bridge's connection (its id kept in the
	 * window): a call of it that Redis has not read yet never runs */
	if
	:: atomic { late_read = 0 }
	:: IKILL
	fi;
#endif
	/* in_recover_intent */
	if
	:: atomic {
		if
#ifdef BUG_INTENT_ANY
		:: int_tail != 0 ->
#else
		:: int_tail != 0 && itail >= int_tail ->
#endif
			plast = int_last; pended = int_ended
		:: else -> skip
		fi
	   }
	:: IKILL
	fi;
	if
	:: atomic { int_tail = 0; ended = pended }
	:: IKILL
	fi;
	pending = 1;
	pfrom = 0;
	goto loop;
reconnect:
#ifdef FIX_LATE_READ
	/* CLIENT KILL ID of the lost connection */
	if
	:: atomic { late_read = 0 }
	:: IKILL
	fi;
#endif
loop:
	/* the state, then in_send_acks */
	if
	:: atomic {
		st = ieod;
		if
		:: ACKABLE -> send_acks()
		:: else -> skip
		fi
	   }
	:: atomic { idrops < MAXDROP && ACKABLE -> ack_call(); IDROP_RECONNECT }
	:: atomic { idrops < MAXDROP && ACKABLE -> IDROP_RECONNECT }
	:: IKILL
	fi;
	if
#ifdef FIX_IN_PENDING
	:: st && !pending ->
#else
	:: st ->
#endif
		if
		:: atomic { nacks == 0 -> idone = 1 }; goto finished
		:: nacks > 0 -> goto loop
		fi
	:: else -> skip
	fi;
#ifdef FIX_IN_PENDING
	if
	:: ended >= PRODUCERS && !pending ->
#else
	if
	:: ended >= PRODUCERS ->
#endif
		/* all ended: read no more; bell_wait */
		if
		:: ieod || ACKABLE
		:: IKILL
		fi;
		goto loop
	:: else -> skip
	fi;
	/* in_read */
	if
	:: pending ->
		/* XREADGROUP ... pending_from: our PEL after pfrom */
		if
		:: atomic {
			e = pfrom;
			do
			:: e < svis && !pel[e] -> e++
			:: else -> break
			od;
			if
			:: e < svis -> pfrom = e + 1
			:: else -> pending = 0; e = 0
			fi
		   }
		:: atomic { idrops < MAXDROP -> IDROP_RECONNECT }
		:: IKILL
		fi;
		if
		:: pending -> in_entry()
		:: else -> skip
		fi
	:: else ->
		/* XREADGROUP ... ">" (BLOCK 100: nothing, loop) */
		if
		:: atomic { gnext < svis -> e = gnext; gnext++; pel[e] = 1 };
			in_entry()
		:: atomic { gnext >= svis -> skip };
			if
			:: gnext < svis || ACKABLE
			:: IKILL
			fi
		:: atomic { idrops < MAXDROP && gnext < svis -> pel[gnext] = 1; gnext++;
			IDROP_RECONNECT }     /* it ran: the entry pending, unseen */
		:: atomic { idrops < MAXDROP -> IDROP_RECONNECT }
#ifdef IN_LATE_READ
		/* it has not reached Redis yet: it runs later, or never */
		:: atomic { idrops < MAXDROP -> late_read = 1; IDROP_RECONNECT }
		:: atomic { ikills < MAXKI -> ikills++; late_read = 1; goto ikilled }
#endif
		:: IKILL
		fi
	fi;
	goto loop;
ikilled:
	atomic {
		nacks = 0;
		j = 0;
		do
		:: j < NENT -> aid[j] = 0; apos[j] = 0; j++
		:: else -> break
		od;
		e = 0; j = 0; k = 0; t = 0; first = 0; n = 0; p_last = 0; ended = 0;
		pfrom = 0; p_ended = 0; found = 0; st = 0; pending = 0
	};
	goto restart;
finished:
	skip
}

/* ------------------------------------------------------------ the run -- */

/* Redis's stream, as the in side sees it: the entries appended by the out
 * side, made visible one at a time, at any point of the in side's run. */
proctype feeder()
{
end:
	do
	:: atomic { svis < slen -> svis++ }
#ifdef IN_LATE_READ
	:: atomic { late_read && gnext < svis -> pel[gnext] = 1; gnext++; late_read = 0 }
	:: atomic { late_read -> late_read = 0 }     /* nothing to read; or lost */
#endif
	od
}

init
{
	byte i, first, n;
	/* the out side */
	atomic { run redis(); run okeeper(); run obridge() };
	odone;
	atomic {
		/* the stream: 1..N, then END, each once, in order */
		assert(hlast == END && slen >= 1 && sfirst[0] == 1 && sfirst[slen - 1] == END);
		for (i : 1 .. slen - 1) {
			assert(sfirst[i] == sfirst[i - 1] + sn[i - 1])
		};
		/* the window empty, every record acked */
		assert(ohead == otail && otail == N + 1 && oacked == END);
		/* calls of dead connections Redis has yet to run: resends */
		do
		:: orphan?first, n -> assert(first + n - 1 <= hlast)
		:: empty(orphan) -> break
		od;
		assert(empty(oreq) && empty(orep));
		/* the out side's state, cleared: only the stream counts now */
		for (i : 0 .. OCAP - 1) {
			oring[i] = 0
		};
		ohead = 0; otail = 0; oacked = 0; oeod = 0; late = 0; i = 0; first = 0; n = 0;
		/* the in side */
		run feeder(); run ikeeper(); run ibridge()
	};
	idone;
	/* every entry acked: the PEL is empty */
	for (i : 0 .. slen - 1) {
		assert(sacked[i] && !pel[i])
	};
	/* everything delivered */
	assert(maxdel == N && ends_seen == 1 && ieod)
}
