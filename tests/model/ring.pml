/* Promela model of shmq's enqueue/dequeue protocol (src/ring.c) and of the
 * eventcounts that park and wake its waiters (src/wait.c, src/queue.c).
 *
 * Two producers and two consumers on a ring of CAP cells; producer 0 puts
 * PER0 messages, producer 1 PER1 (default: one cell, 1 + 1 messages, more
 * than the ring holds, so it fills, a producer parks on room, consumers park
 * on data, and it wraps to lap 1; with one wake-up per item, CAP 2 and 2 + 1
 * messages pass 100 million states, tests/torture/README.md has that run).
 * Spin explores every interleaving of the steps below and checks:
 *   - no torn read:  the payload is written only by the producer holding the
 *                    cell BUSY and read only by the consumer holding it READ
 *                    (asserted at each access), and the consumer reads both
 *                    payload words of one message (asserted);
 *   - no duplicate:  every message is delivered at most once (asserted);
 *   - no impossible state: never a lap that claim_put or claim_get would
 *                    report as -EPROTO (asserted);
 *   - no loss and no lost wake-up: whenever no process can move any more,
 *                    every message has been delivered (the monitor, with
 *                    `timeout`); a producer parked for good is also an
 *                    invalid end state (only consumers park at end labels).
 * tools/test.sh runs it (pan, safety, with these assertions and end
 * states); tests/torture/README.md has the command.
 *
 * What the model leaves out. The C code runs on a weakly ordered machine and
 * the model is sequentially consistent: the C code makes the Dekker pairs
 * that matter sequentially consistent (publish and release are seq_cst and
 * followed by ec_notify's seq_cst load; ec_prepare is a seq_cst RMW and
 * fence before the waiter looks again); TSan covers the orderings. Also left
 * out: timeouts (a C waiter also wakes every 50 ms, which would hide a lost
 * wake-up; here it sleeps until woken), the spin before parking (it only
 * repeats attempts), batches and multi-cell messages (k = 1 here), the
 * message counts in the index words, end of data, crash recovery, the
 * sched_yield after a wake-up (no effect on what happens, only when), and
 * a woken waiter's hand-on of its wake-up when it leaves with an error (no
 * call fails here). The producer's eager claim (a CAS expecting FREE(lap)
 * with no load before it) is claim_put's read and CAS with nothing between
 * them, an interleaving the model already has.
 *
 * Cell state, as in ring.c: kind (FREE, BUSY, FULL, READ) and lap in one
 * byte (kind * 16 + lap), so that one compare-and-swap covers both like the
 * C code's 64-bit state word. Position p is cell p % CAP at lap p / CAP; a
 * producer of p needs FREE(lap), a consumer's release makes it FREE(lap + 1).
 *
 * Eventcount, as in wait.c: a futex word of a sequence and a waiters bit.
 * Blocking puts and gets wait with ec_prepare_one (bit 30), so a notifier
 * wakes one waiter per item. Waiters and notifiers only ever compare the
 * word with a value they read from it (a waiter's key, a notifier's moved
 * word), and the sequence never aliases (2^30 moves), so the model keeps
 * the bit (ecd_w: ec_data, ecr_w: ec_room) and, instead of the sequence,
 * whether each held value still has the current sequence: key_cur[w] for
 * waiter w's key, moved_cur[n] for notifier n's moved word. Moving the
 * sequence makes them all stale; clearing the bit and setting it again
 * leaves the sequence alone, so an old key matches again, as in C. A waiter
 * parks iff its key is current and the bit set (its key has the bit).
 * The ec_prepare (wake-all) path of the same word is the old protocol: it
 * only ever wakes more. */

#ifndef CAP
#define CAP 1
#endif
#define NPROD 2
#define NCONS 2
#ifndef PER0
#define PER0 1
#endif
#ifndef PER1
#define PER1 1
#endif
#define TOTAL (PER0 + PER1)

#define FREE 0
#define BUSY 1
#define FULL 2
#define READ 3
#define ST(kind, lap) ((kind) * 16 + (lap))
#define LAP(s) ((s) % 16)

#define OK 0
#define AGAIN 1


byte cell[CAP];          /* state words: all FREE(0) at creation */
byte d1[CAP], d2[CAP];   /* payload: two words per cell */
byte tail, head;         /* positions (the C index words add a count) */
bit ecd_w, ecr_w;        /* the bits of ec_data and ec_room */
/* Producers 0, 1 wait on ec_room and notify ec_data; consumers 2, 3 the
 * other way round. */
bit keyed[NPROD + NCONS];     /* holds a key (ec_prepare_one since its last attempt) */
bit key_cur[NPROD + NCONS];   /* ... whose sequence is the word's */
bit parked[NPROD + NCONS];    /* in FUTEX_WAIT */
bit moved_cur[NPROD + NCONS]; /* a notifier's moved word has the word's sequence */
byte got[TOTAL + 1];     /* deliveries per message value 1..TOTAL */

/* ------------------------------------------------------------ wait.c -- */

/* ec_prepare_one(): a CAS loop setting the bit unless set, the word with it
 * as the key, then a seq_cst fence. A CAS loop of that shape is an atomic
 * fetch-or: one step (a failed CAS only retries with a later value, which
 * the model reaches by scheduling the step later). */
inline ec_prepare_one(w, me)
{
	atomic { w = 1; keyed[me] = 1; key_cur[me] = 1 }
}

/* ec_wait(): FUTEX_WAIT_BITSET(word, key) parks only if the word still
 * equals the key, checked atomically with parking; returns when woken. */
inline ec_wait(w, me)
{
	atomic {
		if
		:: w && key_cur[me] -> parked[me] = 1
		:: else -> skip     /* EAGAIN: the word moved */
		fi;
		keyed[me] = 0; key_cur[me] = 0
	}
}

/* The waiters lo, lo + 1 and notifiers nlo, nlo + 1 of one word. */
inline seq_moved(lo, nlo)
{
	key_cur[lo] = 0; key_cur[lo + 1] = 0; moved_cur[nlo] = 0; moved_cur[nlo + 1] = 0
}

/* FUTEX_WAKE(1): the kernel picks either sleeper; n: how many it woke. */
inline futex_wake_one(lo, n)
{
	atomic {
		if
		:: parked[lo] -> parked[lo] = 0; n = 1
		:: parked[lo + 1] -> parked[lo + 1] = 0; n = 1
		:: else -> n = 0
		fi
	}
}

inline futex_wake_all(lo)
{
	atomic { parked[lo] = 0; parked[lo + 1] = 0 }
}

/* ec_notify_n(w, 1) by notifier me: a seq_cst load of the word, nothing
 * unless the bit is set; then ec_wake_some(): a CAS loop moving the
 * sequence and keeping the bit (one step; it gives up if the bit was
 * cleared meanwhile), FUTEX_WAKE of one, and only when that found nobody
 * asleep, a CAS that clears the bit unless the word moved since, followed
 * by a FUTEX_WAKE of all. */
inline ec_notify_one(w, lo, nlo, me)
{
	if
	:: w ->
		atomic {
			if
			:: w -> seq_moved(lo, nlo); moved_cur[me] = 1
			:: else -> skip     /* cleared meanwhile: done */
			fi
		};
		if
		:: moved_cur[me] ->
			futex_wake_one(lo, n);
			if
			:: n == 0 ->
				atomic {
					if
					:: w && moved_cur[me] -> w = 0; n = 1
					:: else -> skip
					fi
				};
				if
				:: n == 1 -> futex_wake_all(lo)
				:: else -> skip
				fi
			:: else -> skip
			fi
		:: else -> skip
		fi;
		atomic { moved_cur[me] = 0; n = 0 }
	:: else -> skip
	fi
}

/* ------------------------------------------------------------ ring.c -- */

/* idx_help(): one CAS of an index from the value seen to the next. */
inline idx_help(idx, seen)
{
	atomic { if :: idx == seen -> idx = seen + 1 :: else fi }
}

/* claim_put() for a one-cell message: res OK with pos claimed (BUSY), or
 * AGAIN (full). t, s, lap: the C locals. */
inline claim_put(res, pos)
{
	t = tail;
	do
	:: atomic { pos = t; lap = pos / CAP; s = cell[pos % CAP] };
		if
		:: s == ST(FREE, lap) ->
			/* the claim: CAS FREE(lap) -> BUSY(lap) */
			atomic {
				if
				:: cell[pos % CAP] == s -> cell[pos % CAP] = ST(BUSY, lap); res = OK
				:: else -> res = AGAIN
				fi
			};
			if
			:: res == OK ->   /* TEST_HOOK(PUT_CLAIMED) here */
				atomic { idx_help(tail, t); t = 0; s = 0; lap = 0; break }
			:: else -> t = tail                         /* lost the race: reload */
			fi
		:: s != ST(FREE, lap) && LAP(s) == lap ->
			/* claimed at this lap, tail not moved yet: help */
			idx_help(tail, t); t = tail
		:: else ->
			/* "t2 = load tail; if (t2 != t) { t = t2; continue; }" */
			atomic {
				if
				:: tail != t -> t = tail
				:: else ->
					/* tail is current and the cell still holds
					 * the previous lap; anything else is -EPROTO */
					assert(lap > 0 && LAP(s) == lap - 1);
					res = AGAIN; t = 0; s = 0; lap = 0; break
				fi
			}
		fi
	od
}

/* claim_get() for one message: res OK with pos claimed (READ), or AGAIN. */
inline claim_get(res, pos)
{
	t = head;
	do
	:: atomic { pos = t; lap = pos / CAP; s = cell[pos % CAP] };
		if
		:: s == ST(FULL, lap) ->
			/* claim_at_head(): CAS FULL(lap) -> READ(lap), help head */
			atomic {
				if
				:: cell[pos % CAP] == s -> cell[pos % CAP] = ST(READ, lap); res = OK
				:: else -> res = AGAIN
				fi
			};
			if
			:: res == OK ->   /* TEST_HOOK(GET_CLAIMED) here */
				atomic { idx_help(head, t); t = 0; s = 0; lap = 0; break }
			:: else -> t = head
			fi
		:: s == ST(READ, lap) ->
			/* claimed, head not moved yet: help */
			idx_help(head, t); t = head
		:: else ->
			atomic {
				if
				:: head == t ->
					/* empty: this lap not written yet, or the
					 * previous lap's message still being read;
					 * anything else is -EPROTO */
					assert(LAP(s) == lap || (lap > 0 && LAP(s) == lap - 1));
					res = AGAIN; t = 0; s = 0; lap = 0; break
				:: else -> t = head
				fi
			}
		fi
	od
}

/* ----------------------------------------------------------- queue.c -- */

/* A producer: shmq_put() is queue_wait() around attempt(): ring_try_put()
 * claims, copies in, publishes (seq_cst), then ec_notify_n(ec_data, 1). When the
 * ring is full, queue_wait() announces itself (ec_prepare_one), attempts again,
 * and only then parks. */
proctype producer(byte me)
{
	byte i, pos, res, t, s, lap, k, n;
	for (i : 1 .. (me == 0 -> PER0 : PER1)) {
		do
		:: claim_put(res, pos);
			if
			:: res == OK -> atomic { res = 0; keyed[me] = 0; key_cur[me] = 0 }; break
			:: res == AGAIN && !keyed[me] -> ec_prepare_one(ecr_w, me)
			:: res == AGAIN && keyed[me] ->
				ec_wait(ecr_w, me);
				(!parked[me])    /* woken */
			fi
		od;
		/* copy_in() then publish(): only the BUSY owner writes the
		 * payload (asserted), so the copy is one step with the
		 * publishing store. */
		atomic {
			assert(cell[pos % CAP] == ST(BUSY, pos / CAP));
			d1[pos % CAP] = me * PER0 + i;
			d2[pos % CAP] = me * PER0 + i;
			cell[pos % CAP] = ST(FULL, pos / CAP);
			pos = 0
		};
		ec_notify_one(ecd_w, NPROD, 0, me)
	}
}

/* A consumer: shmq_get() forever; it parks at an end label, since a consumer
 * parked after everything was delivered is a valid end. */
proctype consumer(byte me)
{
	byte pos, res, v1, v2, t, s, lap, k, n;
	do
	:: do
		:: claim_get(res, pos);
			if
			:: res == OK -> atomic { res = 0; keyed[me] = 0; key_cur[me] = 0 }; break
			:: res == AGAIN && !keyed[me] -> ec_prepare_one(ecd_w, me)
			:: res == AGAIN && keyed[me] ->
				ec_wait(ecd_w, me);
end_parked:			(!parked[me])
			fi
		od;
		/* copy_out() then release(): CAS READ(lap) -> FREE(lap + 1).
		 * Only the READ owner reads the payload (asserted), so the copy
		 * is one step with the release. The payload is cleared as it
		 * is released: a read of a cell not written since reads 0. */
		atomic {
			assert(cell[pos % CAP] == ST(READ, pos / CAP));
			v1 = d1[pos % CAP];
			v2 = d2[pos % CAP];
			d1[pos % CAP] = 0;
			d2[pos % CAP] = 0;
			cell[pos % CAP] = ST(FREE, pos / CAP + 1);
			assert(v1 == v2 && v1 >= 1 && v1 <= TOTAL);  /* whole */
			got[v1]++;
			assert(got[v1] == 1);                         /* once */
			v1 = 0; v2 = 0; pos = 0
		};
		/* attempt(): a get frees room, so ec_notify_n(ec_room, 1) */
		ec_notify_one(ecr_w, 0, NPROD, me)
	od
}

/* When no process can move any more, every message has been delivered. */
proctype monitor()
{
	byte k;
	timeout ->
	for (k : 1 .. TOTAL) {
		assert(got[k] == 1)
	}
}

init
{
	atomic {
		run producer(0); run producer(1);
		run consumer(2); run consumer(3);
		run monitor()
	}
}
