/* Promela model of the commit protocol of CSP channels and alternation
 * (src/chan.c: shmq_alt, and shmq_chan_read / shmq_chan_write, which are
 * alternations of one guard) between processes, with its crash recovery.
 *
 * Two rendezvous channels X and Y, four processes, one alternation each:
 *   A: alt {READ X, WRITE Y}      B: alt {READ Y, WRITE X, READ X}
 *   W: write X                    R: read Y
 * X has two writers (B, W) and two readers (A, B), Y two readers (B, R);
 * alternations are on both sides; A and B cross (each one's READ meets the
 * other's WRITE, on X and on Y); W and R, each under one lock, can race to
 * commit A from both of its channels at once; two commits can happen in
 * one run (A with R, B with W); B has two guards on one channel.
 * -DNO_B3 leaves out B's READ X (then every commit involves A). Every
 * write carries a message of its own (a ghost id). Each process makes
 * ITER alternations (default 1), A makes AITER (default ITER):
 * -DAITER=2 reuses A's record, far beyond -DMEMLIM=2048.
 *
 * The protocol, as in chan.c (each step below one atomic action, and a kill
 * offered at each):
 *   - a channel's lock (the robust mutex, proved in sync.pml) is a word
 *     naming its holder: taken when free, or taken over (EOWNERDEAD) when
 *     the participant table shows its holder dead;
 *   - shmq_alt: alt_lock (every channel of its guards, in one global
 *     order), then try_guard for each guard in order (SHMQ_ALT_PRI), each
 *     at the head of the other direction's list until it commits or the
 *     list is empty. first_waiting loads the head offer's record state and
 *     the table: not WAITING(|PARKED): the offer is stale, unlinked; the
 *     owner gone: abandon() (CAS to ABANDONED), unlinked; else try_write
 *     stores its message into the reader's offer (one step with the load:
 *     under the lock nobody else writes the offer, and its owner reads it
 *     only once it is unlinked). commit(): the CAS loop WAITING(|PARKED)
 *     -> FIRED | guard (it retries while the state stays waiting: PARKED
 *     may have been set since the load), then FUTEX_WAKE if the value it
 *     replaced had PARKED, under the lock. Then try_read copies the
 *     writer's message; the partner's offer is unlinked; the caller
 *     unlocks and returns that guard. A failed CAS (fired elsewhere, timed
 *     out, abandoned): try_write clears its message out of the offer, the
 *     offer is unlinked (try_read leaves that to first_waiting's next
 *     look: the same), and the scan goes on. The caller is in no list
 *     while it scans;
 *   - nothing ready: alt_enqueue allocates the record, WAITING, and links
 *     one offer per guard at its list's tail, then alt_unlock; alt_wait:
 *     CAS WAITING -> WAITING|PARKED, FUTEX_WAIT on the state (parks only if
 *     it still equals WAITING|PARKED); its deadline: CAS WAITING(|PARKED)
 *     -> CLOSED without any lock (a failed CAS: it fired);
 *   - alt_finish: each offer whose `linked` is still set (read without the
 *     lock) is unlinked under its channel's lock; only then the result is
 *     read (the message of a READ that fired) and the record and the
 *     writer's block are freed (waiter_free);
 *   - list_unlink takes the offer out of the list, then clears `linked`
 *     (two steps: an unlinker killed between them leaves an offer out of
 *     its list with `linked` set, which the owner's idempotent list_unlink
 *     finishes); every store into an offer by another than its owner comes
 *     before that.
 * Kills: either nobody is killed or up to MAXKILL (default 1) processes
 * are, each at any step, also holding locks. A killed process stays as it
 * was (its locks held, its offers linked, its record as it was) and the
 * table shows it dead (dead[]). The model reads dead[] exactly, where
 * first_waiting's liveness look (owner_gone: at most one look at the
 * process per millisecond) may see a death late: a waiter committed
 * after it died unnoticed is one committed just before it died, which the
 * kill at any step explores (a reader so committed loses the message).
 * The futex: only the owner parks on its state word; FUTEX_WAKE unparks
 * it; a killed process leaves the queue. alt_wait's futex waits also end
 * every 50 ms (WAIT_CHECK_NS) to look at the state again; the model splits
 * that wake-up as sync.pml does: after any death it is enabled whenever the
 * state is no longer WAITING|PARKED (a re-check that finds it unchanged
 * parks again on the same value: the same state); while nobody has died,
 * MAXSPUR of them in all (default 1; also standing for EINTR), so that a
 * lost wake-up leaves the waiter parked and is reported. Deadlines expire
 * MAXTMO times in all (default 2), the waiter parked or not; beyond that a
 * waiter whom nobody comes to waits for good (a valid end).
 *
 * Checked:
 *   - exactly once: a message is received (copied by a committing reader,
 *     or read by the owner of the READ offer it was handed to) at most
 *     once, after its writer was committed (or committed it), from a block
 *     its writer has not freed (asserted at each receipt); when everything
 *     has stopped, a write that returned its WRITE guard was received by
 *     exactly one reader, or handed to one that then died; a message
 *     received belongs to a writer that returned that WRITE guard or died
 *     (a writer killed at any point: its message taken whole, or not at
 *     all);
 *   - one guard per alt: every commit pairs two alternations on one
 *     channel in opposite directions, each the other's only partner (never
 *     two partners for one alt or one message: ghost `with`, checked when
 *     everything has stopped); an alt returns the guard that fired, or
 *     times out with nothing fired;
 *   - no access to a freed record by a scanner or committer (asserted);
 *   - nobody stuck: every process ends, is killed, or waits parked with
 *     nothing fired; pan's end-state check reports a process blocked
 *     anywhere else (a lock never released, a deadlock of the crossing
 *     alternations); and when nothing can move any more, no live parked
 *     process has fired (a lost wake-up) and no two live parked processes
 *     have guards that meet (a lost rendezvous, e.g. an offer dropped while
 *     its owner waits) (asserted).
 *
 * -D switches that put a bug back; each makes the search fail:
 *   BUG_NOCAS         the commit is an exchange after first_waiting's load
 *                     (the wake still sent), not a CAS: two partners commit
 *                     one waiter
 *   BUG_PARKED_CAS    the commit is one CAS from the value first_waiting
 *                     loaded, a failure taken for a stale offer (also when
 *                     only the owner's PARKED bit changed): a lost
 *                     rendezvous
 *   BUG_TMO           the deadline stores CLOSED after a load, no CAS: a
 *                     message taken from a writer that returns -ETIMEDOUT
 *   BUG_EARLY_FREE    the writer frees its block as soon as its state left
 *                     WAITING, before its offers are unlinked: a reader
 *                     copies a freed block
 *   BUG_LINKED_FIRST  list_unlink clears `linked` before a failed try_write
 *                     clears its message out of the offer: a store into a
 *                     freed record
 * e.g. `spin -a -DBUG_NOCAS chan.pml && cc -O2 -DSAFETY -DCOLLAPSE
 * -DMEMLIM=2048 -o pan pan.c && ./pan -m100000` reports errors: 1.
 *
 * What the model leaves out. Memory ordering (sequentially consistent
 * here; the state word changes only by seq_cst RMWs, `linked` is cleared
 * with release and read with acquire); the list code's own stores (a link,
 * or taking an offer out of a list, is one step: chan_repair rebuilds the
 * tails after a death); the `result` stored with the message (like it,
 * read only from the guard that fired); the record's count of linked
 * offers, the free of an abandoned record by its last unlinker, the
 * departed hook (chan_departed: under each channel's lock it abandons and
 * unlinks a dead participant's offers, as a scanner does) and chan_destroy
 * (memory: a death may leak a record or a block); buffered channels (the
 * buffer, promote() and its intent), retire and poison (settle, fail_all,
 * end_error, alt_wait's heap_sweep, -EPIPE, -ECANCELED), -EMSGSIZE, -ENOSPC,
 * hostile lists, SHMQ_ALT_FAIR, timeout 0 (-EAGAIN: the scan without the
 * enqueue), wait_spin (it only looks), and threads.
 *
 * tools/test.sh runs it like ring.pml and sync.pml (pan, safety,
 * -DCOLLAPSE): about 17.6 million states, 1 GB, 30 s of CPU. A
 * counterexample is written to chan.pml.trail; `spin -t -p -g chan.pml`
 * replays it. Larger runs, each with errors: 0: -DMAXKILL=2 (33 million
 * states, 1.9 GB, 70 s), -DMAXTMO=3 (23 million), -DMAXSPUR=2 (26
 * million), -DAITER=2 (60 million, 5 GB: -DMEMLIM=8192 and ./pan -w28).
 */

#ifndef ITER
#define ITER 1
#endif
#ifndef AITER
#define AITER ITER
#endif
#define ROUNDS(p) ((p) == 0 -> AITER : ITER)
#if AITER > ITER
#define RMAX AITER
#else
#define RMAX ITER
#endif
#ifndef MAXKILL
#define MAXKILL 1
#endif
#ifndef MAXSPUR
#define MAXSPUR 1
#endif
#ifndef MAXTMO
#define MAXTMO 2
#endif

#define NP 4           /* processes: A, B, W, R */
#define NCH 2          /* channels */
#define X 0
#define Y 1
#define RD 0
#define WR 1

/* The guards, as constant tables (macros: not in the state vector). Offer
 * o = p * GPP + g is process p's guard g:
 *   A (0): 0 READ X, 1 WRITE Y      B (1): 3 READ Y, 4 WRITE X, 5 READ X
 *   W (2): 6 WRITE X                R (3): 9 READ Y
 * (B's READ X left out with -DNO_B3.) */
#define GPP 3
#ifndef NO_B3
#define B3 1
#else
#define B3 0
#endif
#define NG(p) ((p) == 0 -> 2 : ((p) == 1 -> 2 + B3 : 1))
#define GCH(o) (((o) == 1 || (o) == 3 || (o) == 9) -> Y : X)
#define GDIR(o) (((o) == 1 || (o) == 4 || (o) == 6) -> WR : RD)
#define USES(p, c) ((p) < 2 || ((p) == 2 && (c) == X) || ((p) == 3 && (c) == Y))

/* The list an offer is linked on (channel * 2 + its direction: rq, wq),
 * and the one its guard scans (the other direction's). */
#define OWN(o) (GCH(o) * 2 + GDIR(o))
#define OPP(o) (GCH(o) * 2 + 1 - GDIR(o))

/* Record states (chan.c: ST_WAITING, | ST_PARKED, ST_FIRED | guard << 8,
 * ST_CLOSED, ST_CLOSED | ST_ABANDONED). */
#define NOREC 0        /* no record (not allocated, or freed) */
#define WAITING 1
#define WPARKED 2      /* WAITING | PARKED */
#define FIRED 4        /* FIRED + the guard: 4 .. 6 */
#define CLOSED 8       /* timed out, by its owner */
#define ABANDONED 9    /* its owner died waiting */
#define WAITS(s) ((s) == WAITING || (s) == WPARKED)

#define TMO 7          /* res[]: the alt timed out (else its guard + 1) */

/* ----------------------------------------------------- shared state -- */

byte lk[NCH];          /* channel locks: 0 free, else holder + 1 */
byte lq[NCH * 4];      /* list l = ch * 2 + dir: lq[l * 2], lq[l * 2 + 1],
                        * offer + 1, head first, packed, 0 empty */
byte st[NP];           /* each process's record: its state word */
bit linked[NP * GPP];  /* offer o's `linked` */
byte omsg[NP * GPP];   /* offer o's msg: a WRITE offer's own message, or
                        * the one a writer stored into a READ offer */
bit parked[NP];        /* in FUTEX_WAIT on st[p] */
bit dead[NP];          /* killed (the participant table shows it gone) */
byte ndead, ntmo, nspur;
byte maxkill;          /* 0 or MAXKILL, chosen at the start */

/* Ghosts. Alt a = p * RMAX + round; the message of alt a (if it writes)
 * is a + 1. */
byte rnd[NP];               /* process p's current round */
byte got[NP * RMAX + 1];    /* receipts of message m */
byte handed[NP * RMAX + 1]; /* committed to reader p: p + 1 */
bit mfree[NP * RMAX + 1];   /* its writer freed its block */
byte fg[NP * RMAX];         /* guard + 1 that fired in alt a (by a CAS) */
byte with[NP * RMAX];       /* the partner alt of that commit */
byte res[NP * RMAX];        /* what alt a returned: guard + 1, or TMO */

#define ALT(p) ((p) * RMAX + rnd[p])

/* A kill, offered as an alternative to every step of a process that reads
 * or writes shared state (as in sync.pml; no `else` beside a KILL). */
#define KILL atomic { ndead < maxkill -> dead[me] = 1; parked[me] = 0; ndead++; goto killed }

/* ------------------------------------------------------- chan_lock() -- */

inline lock(c)
{
	if
	:: atomic { lk[c] == 0 -> lk[c] = me + 1 }
	:: atomic { lk[c] != 0 && dead[lk[c] - 1] -> lk[c] = me + 1 }  /* EOWNERDEAD */
	:: KILL
	fi
}

inline unlock(c)
{
	if
	:: atomic { assert(lk[c] == me + 1); lk[c] = 0 }
	:: KILL
	fi
}

/* ------------------------------------------------------------ lists -- */

/* list_append(): at the tail (within an atomic step). */
inline link(l, o)
{
	assert(!linked[o]);
	if
	:: lq[l * 2] == 0 -> lq[l * 2] = o + 1
	:: else -> assert(lq[l * 2 + 1] == 0); lq[l * 2 + 1] = o + 1
	fi;
	linked[o] = 1
}

/* list_unlink(), first step: out of the list if it is in it. */
inline unlist(l, o)
{
	if
	:: lq[l * 2] == o + 1 -> lq[l * 2] = lq[l * 2 + 1]; lq[l * 2 + 1] = 0
	:: lq[l * 2 + 1] == o + 1 -> lq[l * 2 + 1] = 0
	:: else -> skip
	fi
}

/* list_unlink() of the head offer h of list l, by a scanner: both steps,
 * `linked` cleared last. */
inline unlink_head()
{
	if
	:: atomic { assert(lq[l * 2] == h + 1); unlist(l, h) }
	:: KILL
	fi;
	if
	:: atomic { assert(linked[h]); linked[h] = 0 }
	:: KILL
	fi
}

/* -------------------------------------------------------------- alt -- */

/* alt_lock(): every channel of me's guards, in channel order. */
inline lock_all()
{
	c = 0;
	do
	:: c < NCH && USES(me, c) -> lock(c); c++
	:: c < NCH && !USES(me, c) -> c++
	:: c == NCH -> c = 0; break
	od
}

inline unlock_all()
{
	c = 0;
	do
	:: c < NCH && USES(me, c) -> unlock(c); c++
	:: c < NCH && !USES(me, c) -> c++
	:: c == NCH -> c = 0; break
	od
}

/* The offer h at the head of list l, for guard g (offer o) of alt a:
 * first_waiting() and the commit of try_read() / try_write(). ok = 1:
 * committed (the offer unlinked); else the offer was stale or abandoned,
 * has been unlinked, and the scan goes on. */
inline try_commit()
{
	q = h / GPP;
	/* first_waiting(): the record's state and the participant table. A
	 * live waiting owner: try_write stores its message into the reader's
	 * offer (in C a store after the load: the load could as well come
	 * later, since nothing but a commit under this lock, our own, changes
	 * the offer); an owner gone: abandon() */
	if
	:: atomic {
		assert(st[q] != NOREC);   /* no access to a freed record */
		s = st[q];
		if
		:: WAITS(s) && !dead[q] ->
			v = 1;
			if
			:: GDIR(o) == WR -> omsg[h] = a + 1
			:: else -> skip
			fi
		:: WAITS(s) && dead[q] -> st[q] = ABANDONED
		:: else -> skip
		fi
	   }
	:: KILL
	fi;
	/* commit(): the CAS loop WAITING(|PARKED) -> FIRED | guard (it
	 * retries while the state stays waiting: PARKED may have been set
	 * since the load); s: the value it replaced */
	if
	:: v ->
		if
		:: atomic {
			assert(st[q] != NOREC);
			if
#if defined(BUG_PARKED_CAS)
			/* the bug: one CAS from the value loaded */
			:: st[q] == s ->
#elif defined(BUG_NOCAS)
			/* the bug: an exchange (the wake still sent) */
			:: true -> s = st[q];
#else
			:: WAITS(st[q]) -> s = st[q];
#endif
				st[q] = FIRED + h % GPP;
				fg[ALT(q)] = h % GPP + 1; with[ALT(q)] = a;
				fg[a] = g + 1; with[a] = ALT(q);
				if
				:: GDIR(o) == WR -> handed[a + 1] = q + 1
				:: else -> handed[omsg[h]] = me + 1
				fi;
				ok = 1
			:: else -> skip
			fi
		   }
		:: KILL
		fi
	:: else -> skip
	fi;
	if
	:: ok ->
		/* commit(): FUTEX_WAKE if it was parked, under the lock */
		if
		:: s == WPARKED ->
			if
			:: parked[q] = 0
			:: KILL
			fi
		:: else -> skip
		fi;
		/* try_read: copy from the writer's block (it lives until its
		 * owner saw the offer unlinked) */
		if
		:: GDIR(o) == RD ->
			if
			:: atomic {
				v = omsg[h];
				assert(v != 0 && !mfree[v]);
				got[v]++;
				assert(got[v] == 1);      /* at most once */
				v = 0
			   }
			:: KILL
			fi
		:: else -> skip
		fi;
		unlink_head()
	:: else ->
#ifndef BUG_LINKED_FIRST
		/* try_write: clear the message out of the offer, then
		 * unlink */
		if
		:: v && GDIR(o) == WR ->
			if
			:: atomic { assert(st[q] != NOREC); omsg[h] = 0 }
			:: KILL
			fi
		:: else -> skip
		fi;
		unlink_head()
#else
		/* the bug: `linked` cleared before the last store */
		unlink_head();
		if
		:: v && GDIR(o) == WR ->
			if
			:: atomic { assert(st[q] != NOREC); omsg[h] = 0 }
			:: KILL
			fi
		:: else -> skip
		fi
#endif
	fi;
	q = 0; s = 0; v = 0
}

/* alt_wait(), after the offers are linked and the locks released. */
inline wait_fired()
{
	do
	:: atomic { st[me] == WAITING -> st[me] = WPARKED }   /* CAS */
	:: atomic { st[me] == WPARKED -> parked[me] = 1 };    /* FUTEX_WAIT */
end_parked:
		if
		:: !parked[me] -> skip                /* woken, or EAGAIN */
		:: atomic { parked[me] && ndead == 0 && nspur < MAXSPUR -> parked[me] = 0; nspur++ }
		:: atomic { parked[me] && ndead > 0 && st[me] != WPARKED -> parked[me] = 0 }  /* 50 ms */
#ifndef BUG_TMO
		:: atomic { parked[me] && ntmo < MAXTMO && WAITS(st[me]) ->
				parked[me] = 0; ntmo++; st[me] = CLOSED }; break
#endif
		:: KILL
		fi
#ifndef BUG_TMO
	/* the deadline: CAS WAITING(|PARKED) -> CLOSED, no lock; a failed
	 * CAS is the fired case below */
	:: atomic { ntmo < MAXTMO && WAITS(st[me]) -> ntmo++; st[me] = CLOSED }; break
#else
	/* the bug: a load, then a plain store */
	:: atomic { ntmo < MAXTMO && WAITS(st[me]) -> ntmo++ };
		if
		:: st[me] = CLOSED
		:: KILL
		fi;
		break
#endif
	:: !WAITS(st[me]) -> break                /* fired */
	:: KILL
	od
}

/* alt_finish(), first part: every offer still `linked` (read without the
 * lock) is unlinked under its channel's lock. */
inline withdraw()
{
	g = 0;
	do
	:: g < NG(me) ->
		o = me * GPP + g;
		if
		:: linked[o] ->
			lock(GCH(o));
			if
			:: atomic { unlist(OWN(o), o) }
			:: KILL
			fi;
			if
			:: atomic { linked[o] = 0 }
			:: KILL
			fi;
			unlock(GCH(o))
		:: !linked[o] -> skip
		:: KILL
		fi;
		g++
	:: g == NG(me) -> g = 0; o = 0; break
	od
}

inline alt()
{
	lock_all();
	/* try_guard() for each guard in order, each at the head of the
	 * other direction's list until it commits or the list is empty */
	g = 0;
	ok = 0;
	do
	:: atomic { g < NG(me) && lq[OPP(me * GPP + g) * 2] == 0 -> g++ }
	:: atomic { g < NG(me) && lq[OPP(me * GPP + g) * 2] != 0 ->
			o = me * GPP + g; l = OPP(o); h = lq[l * 2] - 1 };
		try_commit();
		if
		:: ok -> break
		:: else -> skip
		fi
	:: g == NG(me) -> break
	od;
	if
	:: ok ->
		/* committed: unlock, return guard g */
		unlock_all();
		atomic {
			res[a] = g + 1;
			ok = 0; o = 0; l = 0; h = 0
		}
	:: else ->
		/* alt_enqueue(): the record, WAITING, and an offer per guard
		 * at its list's tail */
		g = 0;
		do
		:: g < NG(me) ->
			if
			:: atomic {
				o = me * GPP + g;
				if
				:: g == 0 -> assert(st[me] == NOREC); st[me] = WAITING
				:: else -> skip
				fi;
				if
				:: GDIR(o) == WR -> omsg[o] = a + 1
				:: else -> omsg[o] = 0
				fi;
				link(OWN(o), o)
			   }
			:: KILL
			fi;
			g++
		:: g == NG(me) -> g = 0; o = 0; l = 0; h = 0; break
		od;
		unlock_all();
		wait_fired();
#ifdef BUG_EARLY_FREE
		/* the bug: the writer frees its block as soon as its state
		 * left WAITING */
		atomic { mfree[a + 1] = 1 };
#endif
		withdraw();
		/* alt_finish(): the result, then waiter_free() (the record,
		 * and the writer's block) */
		if
		:: atomic {
			s = st[me];
			if
			:: s == CLOSED -> res[a] = TMO
			:: s >= FIRED && s < CLOSED ->
				g = s - FIRED;
				res[a] = g + 1;
				o = me * GPP + g;
				if
				:: GDIR(o) == RD ->
					v = omsg[o];
					assert(v != 0 && handed[v] == me + 1);
					got[v]++;
					assert(got[v] == 1)   /* at most once */
				:: else -> skip
				fi
			fi;
			assert(!linked[me * GPP] && !linked[me * GPP + 1] && !linked[me * GPP + 2]);
			st[me] = NOREC;
			omsg[me * GPP] = 0; omsg[me * GPP + 1] = 0; omsg[me * GPP + 2] = 0;
			mfree[a + 1] = 1;
			s = 0; g = 0; o = 0; v = 0
		   }
		:: KILL
		fi
	fi
}

proctype proc(byte me)
{
	byte i, a, c, g, o, l, h, q, s, v;
	bit ok;
	for (i : 0 .. ROUNDS(me) - 1) {
		atomic { a = me * RMAX + i; rnd[me] = i };
		alt()
	};
	atomic { i = 0; a = 0 };
	goto done;
killed:
	i = 0; a = 0; c = 0; g = 0; o = 0; l = 0; h = 0; q = 0; s = 0; v = 0; ok = 0;
done:
	skip
}

/* When nothing can move any more: the checks over every alt. */
proctype monitor()
{
	byte a, b, p, q, ga, gb;
	timeout;
	for (a : 0 .. NP * RMAX - 1) {
		p = a / RMAX;
		/* messages: at most once; a WRITE that returned was taken
		 * by exactly one reader, or handed to one that died; one
		 * received was sent by a WRITE that fired */
		assert(got[a + 1] <= 1);
		if
		:: res[a] != 0 && res[a] != TMO && GDIR(p * GPP + res[a] - 1) == WR ->
			assert(got[a + 1] == 1 || (handed[a + 1] != 0 && dead[handed[a + 1] - 1]))
		:: else -> skip
		fi;
		if
		:: got[a + 1] != 0 ->
			assert(res[a] == 0 || (res[a] != TMO && GDIR(p * GPP + res[a] - 1) == WR))
		:: else -> skip
		fi;
		/* commits: in pairs, on one channel, opposite directions */
		if
		:: fg[a] != 0 ->
			b = with[a];
			q = b / RMAX;
			ga = p * GPP + fg[a] - 1;
			assert(fg[b] != 0 && with[b] == a);
			gb = q * GPP + fg[b] - 1;
			assert(GCH(ga) == GCH(gb) && GDIR(ga) != GDIR(gb))
		:: else -> skip
		fi;
		/* an alt that returned returned the guard that fired, or timed
		 * out with nothing fired */
		assert(res[a] == 0 || res[a] == fg[a] || (res[a] == TMO && fg[a] == 0))
	};
	/* the parked: not fired (a lost wake-up), and no two live ones whose
	 * guards meet (a lost rendezvous) */
	for (p : 0 .. NP - 1) {
		if
		:: !dead[p] && parked[p] ->
			assert(st[p] == WPARKED);
			for (q : 0 .. NP - 1) {
				if
				:: q != p && !dead[q] && parked[q] ->
					for (ga : p * GPP .. p * GPP + NG(p) - 1) {
						for (gb : q * GPP .. q * GPP + NG(q) - 1) {
							assert(GCH(ga) != GCH(gb) || GDIR(ga) == GDIR(gb))
						}
					}
				:: else -> skip
				fi
			}
		:: else -> skip
		fi
	}
}

init
{
	/* Either nobody is killed, or up to MAXKILL are (as in sync.pml: a
	 * kill, always possible while the budget lasts, ends any stuck state,
	 * and after a death the 50 ms re-check is on: the runs without kills
	 * check lost wake-ups). */
	atomic {
		if
		:: maxkill = 0
		:: maxkill = MAXKILL
		fi;
		run proc(0); run proc(1); run proc(2); run proc(3);
		run monitor()
	}
}
