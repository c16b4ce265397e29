/* Promela model of two futex protocols of the sync layer: the robust mutex
 * (src/mutex.c: Lock, RLock, the conditions' and arrays' locks, the heap's
 * directory lock) and the plain semaphore's waiters bit (src/sync.c,
 * shmq_sem_acquire / shmq_sem_release without SHMQ_UNDO).
 *
 * The two run one after the other in one verification: init starts phase 1
 * (the mutex), waits until every one of its processes has ended, resets the
 * shared state and starts phase 2 (the semaphore). The state space is then
 * about the sum of the two, not their product. -DMUTEX_ONLY or -DSEM_ONLY
 * (to spin -a) runs one phase.
 *
 * Phase 1, the mutex. Three processes each take and release the mutex ITER
 * times (default 3). Either nobody is killed, or up to MAXKILL (default 2)
 * are, each at any step: a kill stops the process for good, and the
 * participant table then shows it gone (dead[]). Checked:
 *   - mutual exclusion: a process that takes the word (by any path) finds no
 *     live process in the critical section (asserted); a dead holder may
 *     still "be" in it, which is what the takeover is for;
 *   - takeover only from the dead: an EOWNERDEAD takeover CASes a word whose
 *     recorded holder is dead (asserted), and a release finds the word still
 *     naming its releaser (asserted);
 *   - no garbage word: a nonzero word always has the held bit (asserted);
 *   - no one stuck: every process is killed or finishes its rounds; one
 *     parked in FUTEX_WAIT for good is an invalid end state (pan's
 *     end-state check: parking has no end label).
 * The futex: FUTEX_WAIT parks only if the word still equals the value it is
 * given, checked atomically with parking (else EAGAIN); FUTEX_WAKE of one
 * unparks any one parked process (nondeterministic choice); a killed
 * process leaves the queue. The C waiter also wakes every 50 ms
 * (WAIT_CHECK_NS) to look again; the model splits that wake-up in two:
 *   - after any death it is always enabled (it is what recovers from a
 *     holder that died, a releaser that died between its CAS and its wake,
 *     or a woken waiter that died before acting on the wake);
 *   - while nobody has died, MAXSPUR of them in all (default 2: a spurious
 *     or 50 ms wake-up at any moment, also standing for EINTR); beyond that
 *     a waiter sleeps until woken, so that a wake-up lost between live
 *     processes leaves it parked for good and pan reports it. (In the runs
 *     with kills, a kill is always possible while the budget lasts, which
 *     ends any stuck state: lost wake-ups are checked by the runs without.)
 * The acquirer's own deadline may expire MAXTMO times in all (default 2),
 * on the C code's path (after the waiters bit is set): it passes a wake-up
 * on if the word is 0 and gives up the round (-ETIMEDOUT).
 *
 * Phase 2, the plain semaphore, initial value SEMINIT (default 1). Three
 * processes each do up to SEMOPS (default 3) operations, each one an
 * acquire, a release of 1 or a release of 2 (nondeterministic; at most
 * MAXREL units released in all, default 3, to bound the value), or stop.
 * No kills (a plain semaphore has no crash recovery) and no 50 ms
 * wake-ups: a process parked for good is a valid end (an acquire with no
 * unit left may wait forever), but when nothing can move any more, no
 * process may be parked while the value is above 0 (asserted: that is a
 * lost wake-up, which the C code only recovers from at its next 50 ms
 * re-check). SEMTMO (default 1) acquire deadlines may expire, on the C
 * code's path (after the waiters bit is set). -DSEM_BUG_CHAIN and
 * -DSEM_BUG_TMO put back the two lost wake-ups this model found in the
 * first version of the code (no wake passed on by a waiter that leaves
 * units behind; the deadline checked before the bit was set): with either,
 * the search fails.
 *
 * What the model leaves out. Memory ordering (sequentially consistent here;
 * the word is changed only by seq_cst or acq/rel RMWs and the futex
 * syscalls order themselves); the liveness check's cost split: holder_gone()
 * reads dead[] exactly, while the C code's cheap check may see a death only
 * at the next full check (50 ms): a death seen late is a death that
 * happened later, which the kill-at-any-step already explores; the wide
 * tag's generation (a slot reused by a new participant is a different tag:
 * part.c); the recursive count and thread fields (the RLock path, which
 * does not touch the word); a release by another process than the holder
 * (a plain Lock allows it; here each holder releases its own); timeouts of
 * 0 (-EAGAIN without waiting); the UNDO semaphore (its changes are under a
 * mutex, phase 1), the condition variable and the barrier.
 *
 * tools/test.sh runs it like ring.pml (pan, safety, -DCOLLAPSE);
 * tests/torture/README.md has the command. A counterexample is written to
 * sync.pml.trail; `spin -t -p -g sync.pml` replays it.
 */

#ifndef ITER
#define ITER 3
#endif
#ifndef MAXKILL
#define MAXKILL 2
#endif
#ifndef MAXSPUR
#define MAXSPUR 2
#endif
#ifndef MAXTMO
#define MAXTMO 2
#endif
#ifndef SEMINIT
#define SEMINIT 1
#endif
#ifndef SEMOPS
#define SEMOPS 3
#endif
#ifndef MAXREL
#define MAXREL 3
#endif
#ifndef SEMTMO
#define SEMTMO 1
#endif

#define N 3

/* ---------------------------------------------------------- the futex -- */

bit parked[N];    /* in FUTEX_WAIT (phase 1 on mw, phase 2 on sw) */
byte nspur;       /* spurious / 50 ms wake-ups taken while nobody had died */

/* FUTEX_WAKE of one: any one parked process, or none. One step, as the
 * kernel's hash-bucket lock makes it. */
inline wake_one()
{
	atomic {
		if
		:: parked[0] -> parked[0] = 0
		:: parked[1] -> parked[1] = 0
		:: parked[2] -> parked[2] = 0
		:: else -> skip
		fi
	}
}

/* ------------------------------------------------------ phase 1: mutex -- */

/* The word: 0 free; else M_HELD | the holder's tag (its process number),
 * plus M_WAITERS. */
#define M_HELD 4
#define M_WAITERS 8
#define OWN(w) ((w) % 4)

#define TOOK 1         /* mutex_lock returned 0 */
#define OWNERDEAD 2    /* returned -EOWNERDEAD: the caller holds it */
#define TIMEDOUT 3     /* returned -ETIMEDOUT */

byte mw;          /* the mutex word */
bit dead[N];      /* killed (the participant table shows it gone) */
bit incs[N];      /* ghost: in the critical section (holds the mutex) */
byte ndead, ntmo, nfin;
byte maxkill;     /* 0 or MAXKILL, chosen at the start */

/* A kill: offered as an alternative to every step of a process that reads
 * or writes shared state, and to its waiting in FUTEX_WAIT (a kill between
 * two steps that touch only its own variables is the same as a kill before
 * the next shared one). The kernel drops a killed process from the futex
 * queue. Offering the kill in the process itself, rather than from a killer
 * process, keeps the process-local steps local for Spin's partial order
 * reduction. (No `else` may stand beside a KILL: it would be disabled.) */
#define KILL atomic { ndead < maxkill -> dead[me] = 1; parked[me] = 0; ndead++; goto killed }

/* Ghost check as a process takes the word: no live process holds it. */
inline enter()
{
	assert(!(incs[0] && !dead[0]) && !(incs[1] && !dead[1]) && !(incs[2] && !dead[2]));
	incs[me] = 1
}

/* A load of the word, a decision on it and a CAS from the value loaded are
 * one step here: every CAS of mutex_lock() that fails only sends the C code
 * back to a new load, without writing anything, so a failed CAS is the
 * same as a load made later, and a successful one is an atomic
 * read-modify-write of the value loaded. (The liveness check between the
 * load and the CAS reads dead[], which only ever goes from 0 to 1.) */

/* The word's holder is gone: holder_gone(), also true of a nonzero word
 * without the held bit (garbage, which must never occur: asserted). */
#define GONE(w) ((w) != 0 && (!((w) & M_HELD) || dead[OWN(w)]))

/* take_over(): CAS w -> me | M_HELD | M_WAITERS, where GONE(w). */
inline take_over()
{
	assert(mw & M_HELD);           /* no garbage word */
	assert(dead[OWN(mw)]);         /* its holder really is dead */
	mw = me | M_HELD | M_WAITERS;
	res = OWNERDEAD;
	enter()
}

/* wait_futex(&m->word, w, ...), and the ways it returns. */
inline futex_wait_m()
{
	if
	:: atomic {
		if
		:: mw == w -> parked[me] = 1
		:: else -> skip                   /* EAGAIN */
		fi
	   }
	:: KILL
	fi;
	if
	:: !parked[me] -> skip                    /* woken, or EAGAIN */
	:: atomic { parked[me] && ndead == 0 && nspur < MAXSPUR -> parked[me] = 0; nspur++ }
	:: atomic { parked[me] && ndead > 0 -> parked[me] = 0 }  /* 50 ms re-check */
	:: KILL
	fi
}

/* mutex_lock(m, t, me, timeout): res = TOOK, OWNERDEAD or TIMEDOUT. */
inline mutex_lock()
{
	/* try_take(): CAS 0 -> me | M_HELD */
	if
	:: atomic {
		if
		:: mw == 0 -> mw = me | M_HELD; res = TOOK; enter()
		:: else -> skip
		fi
	   }
	:: KILL
	fi;
	if
	:: res == 0 ->
		/* lock_slow(): the table may already show the holder gone */
		if
		:: atomic {
			if
			:: GONE(mw) -> take_over()
			:: else -> skip
			fi
		   }
		:: KILL
		fi;
		/* spin_for_free(): any number of tries, then give up */
		if
		:: res == 0 ->
			do
			:: atomic { mw == 0 -> mw = me | M_HELD; res = TOOK; enter() }; break
			:: break
			:: KILL
			od
		:: else -> skip
		fi;
		do
		:: res != 0 -> break
		:: else ->
			if
			:: atomic {
				if
				:: mw == 0 ->
					/* keep the waiters bit: others
					 * may be parked */
					mw = me | M_HELD | M_WAITERS; res = TOOK; enter()
				:: GONE(mw) -> take_over()
				:: else ->
					/* held by the living: set the
					 * waiters bit (a CAS if unset) */
					mw = mw | M_WAITERS; w = mw
				fi
			   }
			:: KILL
			fi;
			if
			:: res != 0 -> skip
			:: atomic { res == 0 && ntmo < MAXTMO -> ntmo++ };
				/* deadline expired: pass on a wake-up that
				 * may have come to us */
				if
				:: mw == 0 ->
					if
					:: wake_one()
					:: KILL
					fi
				:: mw != 0 -> skip
				:: KILL
				fi;
				res = TIMEDOUT
			:: res == 0 -> futex_wait_m()
			fi;
			w = 0
		od
	:: else -> skip
	fi
}

/* mutex_unlock(m, me): CAS the word to 0 (the loop of weak CASes retries
 * only while the held bit stays: one atomic exchange), then the wake. */
inline mutex_unlock()
{
	if
	:: atomic {
		assert(incs[me] && (mw & M_HELD));
		assert(OWN(mw) == me);     /* nobody took it from a live holder */
		w = mw;
		mw = 0;
		incs[me] = 0
	   }
	:: KILL
	fi;
	if
	:: w & M_WAITERS ->
		if
		:: wake_one()
		:: KILL
		fi
	:: else -> skip
	fi;
	w = 0
}

proctype mutex_user(byte me)
{
	byte i, w, res;
	for (i : 1 .. ITER) {
		mutex_lock();
		/* the critical section, then the release */
		if
		:: res == TOOK || res == OWNERDEAD -> res = 0; mutex_unlock()
		:: res == TIMEDOUT -> res = 0
		fi
	};
	atomic { nfin++; i = 0 };
	goto done;
killed:
	i = 0; w = 0; res = 0;
done:
	skip
}


/* -------------------------------------------------- phase 2: semaphore -- */

#define S_WAITERS 128
#define VAL(w) ((w) % 128)

byte sw;          /* the semaphore word: value | S_WAITERS */
byte nrel, nstmo;

/* value_take(s, parked): take a unit if there is one; a parked caller sets
 * the waiters bit. The CAS loop reloads and retries only while the value
 * is above 0: one atomic step. */
inline value_take(keep)
{
	atomic {
		if
		:: VAL(sw) > 0 ->
			sw = sw - 1;
			if
			:: keep -> sw = sw | S_WAITERS
			:: else -> skip
			fi;
			got = 1;
			old = VAL(sw)             /* units left (the wake passed on) */
		:: else -> skip
		fi
	}
}

inline futex_wait_s()
{
	atomic {
		if
		:: sw == w -> parked[me] = 1
		:: else -> skip                   /* EAGAIN */
		fi
	};
end_parked:
	!parked[me]
}

/* shmq_sem_acquire(sem, timeout), plain semaphore. As in phase 1, a load,
 * a decision on it and the CAS from the value loaded are one step (a failed
 * CAS only sends the C code back to its loop). */
inline sem_acquire()
{
	value_take(0);                    /* try() */
	if
	:: !got ->                        /* spin(): more tries, or give up */
		do
		:: atomic { VAL(sw) > 0 -> sw = sw - 1; got = 1 }; break
		:: break
		od
	:: else -> skip
	fi;
	do
	:: got -> break
	:: else ->
		value_take(1);
#ifndef SEM_BUG_CHAIN
		/* a waiter that took a unit and left some (as its CAS saw)
		 * passes a wake-up on: the release that woke it cleared the
		 * bit */
		if
		:: got && old > 0 -> wake_one()
		:: else -> skip
		fi;
#endif
		if
		:: got -> skip
		:: else ->
#ifdef SEM_BUG_TMO
			if
			:: atomic { nstmo < SEMTMO -> nstmo++ }; break   /* -ETIMEDOUT */
			:: skip
			fi;
#endif
			/* load; units there: take them (loop); else set the
			 * waiters bit (a CAS if it is not set) */
			atomic {
				if
				:: VAL(sw) > 0 -> w = 255
				:: else -> sw = sw | S_WAITERS; w = sw
				fi
			};
#ifndef SEM_BUG_TMO
			/* the deadline checked with the bit set, as in
			 * mutex.c, passing on a wake-up if units are there */
			if
			:: atomic { w != 255 && nstmo < SEMTMO -> nstmo++ };
				if
				:: VAL(sw) > 0 -> wake_one()
				:: else -> skip
				fi;
				break
			:: else -> skip
			fi;
#endif
			if
			:: w == 255 -> skip
			:: else -> futex_wait_s()
			fi;
			w = 0
		fi
	od;
	w = 0;
	old = 0;
	got = 0
}

/* shmq_sem_release(sem, n), plain: value_add() clears the waiters bit, then
 * wake_after_add() wakes n if it was set. */
inline sem_release(n)
{
	atomic { old = sw; sw = VAL(sw) + n };
	if
	:: (old & S_WAITERS) && n == 1 -> wake_one()
	:: (old & S_WAITERS) && n == 2 -> atomic { wake_one(); wake_one() }
	:: else -> skip
	fi;
	old = 0
}

proctype sem_user(byte me)
{
	byte i, w, old;
	bit got;
	for (i : 1 .. SEMOPS) {
		if
		:: sem_acquire()
		:: atomic { nrel + 1 <= MAXREL -> nrel++ }; sem_release(1)
		:: atomic { nrel + 2 <= MAXREL -> nrel = nrel + 2 }; sem_release(2)
		:: break                          /* done early */
		fi
	}
}

init
{
#ifndef SEM_ONLY
	/* Either nobody is killed, or up to MAXKILL are: a kill is always
	 * possible while the budget lasts, and would otherwise hide a waiter
	 * parked for good (it ends the stuck state, and after it the 50 ms
	 * re-check is on): the runs without kills check lost wake-ups. */
	atomic {
		if
		:: maxkill = 0
		:: maxkill = MAXKILL
		fi;
		run mutex_user(0); run mutex_user(1); run mutex_user(2)
	};
	(_nr_pr == 1);
	/* every process finished its rounds or was killed, and the mutex is
	 * free or held by the dead */
	assert(nfin + ndead == N && (mw == 0 || dead[OWN(mw)]));
#endif
#ifndef MUTEX_ONLY
	atomic {
		mw = 0; ndead = 0; ntmo = 0; nspur = 0; maxkill = 0; nfin = 0;
		dead[0] = 0; dead[1] = 0; dead[2] = 0;
		incs[0] = 0; incs[1] = 0; incs[2] = 0;
		parked[0] = 0; parked[1] = 0; parked[2] = 0;
		sw = SEMINIT;
		run sem_user(0); run sem_user(1); run sem_user(2)
	};
	/* When nothing can move any more: nobody parked with units left. */
	timeout;
	assert(VAL(sw) == 0 || !(parked[0] || parked[1] || parked[2]))
#endif
}
