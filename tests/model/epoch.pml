/* Promela model of epoch-based reclamation (src/epoch.c) as the shared dict
 * uses it (src/dict.c): lock-free readers walking a chain, a writer under
 * the stripe lock that publishes, retires, reclaims and reuses entries, and
 * the crash recovery of both sides (a reader killed while pinned; a writer
 * killed under the lock, replayed by the next lock holder).
 *
 * The processes:
 *   - reader(0), reader(1): shmq_dict_get() / shmq_dict_next() in
 *     participant slots 0 and 1, NREAD reads each (default 2). A read is
 *     epoch_enter() (a load of the epoch, then the pin CAS), a walk of the
 *     whole chain from the bucket (find() and next_entry() read at most
 *     that): the bucket's link, then for each entry one step that reads it
 *     and loads its `next`; then epoch_leave(). reader(1) may be killed
 *     while pinned: its pin stays as it was.
 *   - scrubber: the liveness checks. Once reader(1) is dead its slot is
 *     freed (part_reap_dead: id 0) and, a later step, its pin zeroed
 *     (heap_reaped -> scrub). Advancers ignore a pin whose slot is free.
 *   - writer: the holder of one stripe lock. NOPS writes (default 2), each
 *     a set (replace, or insert at the chain's head) or a del of one of two
 *     keys of one bucket (so the chain holds 0 to 2 entries; at the start,
 *     key 1's entry), with a pool of NE entries (default 3): a new entry is
 *     the lowest free one, so freed entries are reused. Each write: build
 *     aside, find, intent_begin, intent_apply (the publication with one
 *     store; retire_entry: the stamp is the epoch loaded after the unlink,
 *     the push on limbo is the commit; the op cleared last), then
 *     stripe_reclaim or not (the C code tries when limbo reaches its batch
 *     size): free the reclaim list, epoch_passed() on the limbo head's
 *     stamp (two advances at most), load the epoch, cut the limbo list
 *     (newest first) at the first entry with stamp + 2 <= epoch (the
 *     reclaim list set first, then the cut), free_entries (pop, then
 *     heap_free). The writer may be killed MAXWDIE times (default 1) at
 *     any point under the lock; it then starts again, and its next lock
 *     returns EOWNERDEAD: stripe_replay() (intent_apply again; the repair
 *     of a cut interrupted between its two stores). After its writes it
 *     takes the lock once more if the last holder died, so every death is
 *     replayed.
 *   - advancer: other processes' epoch_passed() (writers of other
 *     stripes): epoch_advance() attempts at any time.
 * The epoch goes from 0 to MAXE at most (default 2): no wrap-around; the
 * pin's reader count is 0 or 1 (one thread per process).
 *
 * Checked:
 *   - no use after free: at every read in its pinned section (an entry's
 *     fields and `next`), a reader asserts that the entry it holds is
 *     published, unlinked or retired, and was not freed since the reader
 *     loaded the link to it (heap_free marks the readers that hold the
 *     entry: a reuse after a free is caught as the free; an entry popped
 *     off the reclaim list by a writer killed before it freed it counts as
 *     freed);
 *   - no double free: heap_free asserts the entry is retired;
 *   - no double retirement: retire_entry asserts the entry is unlinked and
 *     not yet retired (a replay that retires it again trips it);
 *   - no loss: when the writer and the readers have finished, the intent is
 *     done and every entry is free, on the chain (exactly the published
 *     entries, each key once), on the limbo or reclaim list (exactly the
 *     retired entries, each once), or leaked where the C code leaks on a
 *     death (an entry popped off the reclaim list and not yet freed); none
 *     is left unlinked and not retired, nor built and not published.
 *
 * Memory ordering is sequentially consistent here: each step below is one
 * atomic action, and all processes see the steps in one order. The C code
 * makes the accesses that the argument rests on seq_cst: the pin CAS (a
 * full barrier before the reader's link loads), the fence before
 * epoch_stamp's load (the unlink before the stamp), the advancers' loads
 * of the pins and their epoch CAS. Its relaxed and acquire/release
 * accesses are not modelled as such (TSan covers them).
 *
 * Steps joined, and why that loses nothing:
 *   - a reader's reads of one entry (its fields, its `next`) are one step:
 *     a free between two of them is found by the schedule that frees the
 *     entry before the first (reads commute with each other);
 *   - a reader is killed only in place of epoch_leave(): its other steps
 *     in the pinned section only read, so a kill before any of them leaves
 *     everyone else the same state as a kill at the leave;
 *   - pins_used is left out, every slot is scanned: the C code raises it
 *     (fetch-max) before it loads the epoch for its first pin, so a reader
 *     that an advancer's load of pins_used misses loads the epoch after
 *     that load: its pin is at the epoch that advancer compares with (no
 *     block), or is published after that advancer's CAS;
 *   - epoch_advance() is two steps: the load of the epoch (epoch_passed's,
 *     or the reload after the previous try) with slot 0's pin word and id;
 *     slot 1's, the CAS and the reload. Another process's step between two
 *     of these loads or the CAS writes the epoch or one pin or id, never
 *     both (a reader loads the epoch and publishes its pin in two steps),
 *     so it commutes with what comes before it or with what comes after;
 *     and a slot's id goes from in use to free only while its pin is a
 *     dead reader's, which only changes to 0;
 *   - the writer's writes to state that only it reads (the intent, the
 *     limbo and reclaim lists, stamps) are joined to its neighbouring step
 *     that others can see (the publication, a load of the epoch, a free),
 *     and a kill is offered at each point between them instead: DIE in an
 *     atomic step ends the writer there, with what the step wrote before
 *     it. stripe_replay() keeps the C code's steps.
 *
 * Left out: resizing and clear (tables retired as a unit; resize_replay;
 * tables_reclaim, whose two stores have no repair: see BUG_NO_CUT_REPAIR),
 * the batch thresholds, the keys' counts, hostile bytes, several threads
 * sharing one pin (epoch_enter's join path), a freed slot claimed again by
 * a new process, and liveness (a reader that stays pinned holds
 * reclamation back for good).
 *
 * -D switches that put a bug back; each makes the search fail:
 *   BUG_STAMP_BEFORE_UNLINK  the stamp loaded before the unlink store
 *   BUG_ONE_EPOCH            reclaim at stamp + 1 <= epoch
 *   BUG_IGNORE_LIVE_PIN      an advance passes a live pin at an older epoch
 *                            (the slot check inverted)
 *   BUG_NO_REPLAY_CHECK      intent_apply retires the entry again when it is
 *                            at the limbo head already
 *   BUG_NO_CUT_REPAIR        stripe_replay without the cut repair
 * and DICT_DESTROY: after the writer's last death, the dict is destroyed
 * (dict_destroy(): its last holder is gone) instead of replayed. It fails
 * too: dict_destroy frees the reclaim list, then the limbo list, without
 * the cut repair.
 *
 * tools/test.sh runs it like ring.pml and sync.pml (pan, safety,
 * -DCOLLAPSE). A counterexample is written to epoch.pml.trail;
 * `spin -t -p -g epoch.pml` replays it. Larger runs, which need more than
 * -DMEMLIM=2048: -DMAXE=3, -DNOPS=3, -DMAXWDIE=2.
 */

#ifndef NE
#define NE 3
#endif
#ifndef NOPS
#define NOPS 2
#endif
#ifndef NREAD
#define NREAD 2
#endif
#ifndef MAXE
#define MAXE 2
#endif
#ifndef MAXWDIE
#define MAXWDIE 1
#endif

#define NR 2             /* reader slots */

/* Entry states (ghost). */
#define FREE 0           /* in the heap's free lists */
#define BUILT 1          /* allocated and written aside, not reachable */
#define LIVE 2           /* published: on the chain */
#define UNLINKED 3       /* taken off the chain, not yet on limbo */
#define RETIRED 4        /* on the limbo or the reclaim list */
#define LEAK 5           /* leaked by a kill where the C code leaks */

#define READABLE(p) (st[p] == LIVE || st[p] == UNLINKED || st[p] == RETIRED)

#define SET 1
#define DEL 2
#define OP_NONE 0
#define OP_LINK 1

/* ---------------------------------------------------------- the heap -- */

/* Entries 1..NE; 0 is the null offset. key, next: what readers read (the
 * key stands for the order, key and value bytes); stamp, limbo: written
 * once the entry is unlinked, read by the writer only. */
byte st[NE + 1];
byte key[NE + 1];
byte next[NE + 1];
byte stamp[NE + 1];
byte limbo[NE + 1];
byte head;               /* the bucket: the chain's first entry */

/* heap.h: reclaim_epoch and the pins (epoch << 16 | readers); part.c: a
 * slot's id != 0. */
byte epoch;
byte pinE[NR];
byte pinN[NR];
bit live[NR];

/* Readers (ghost): the entry each holds, and whether it was freed since. */
byte rp[NR];
bit freed[NR];
bit rdead;               /* reader(1) was killed */
bit rdone[NR];

/* The stripe: its intent, limbo and reclaim lists, and its lock's holder
 * being dead (the lock itself: only the writer takes it). */
byte iop, ilink, iold, inew, iret;
byte slimbo, sreclaim;
bit lockdead;
byte wdead;
bit wdone, destroyed;

/* A link word: 0 the bucket, e entry e's next. */
#define LINKV(l) ((l) == 0 -> head : next[l])
inline store_link(l, v)
{
	if
	:: l == 0 -> head = v
	:: else -> next[l] = v
	fi
}

/* A limbo list link: 0 the stripe's limbo head, e entry e's limbo. */
inline store_limbo(l, v)
{
	if
	:: l == 0 -> slimbo = v
	:: else -> limbo[l] = v
	fi
}

/* heap_free(): the entry must be retired (no double free, no free of a
 * reachable entry); a reader that holds it is marked. Its fields are
 * zeroed (a reader that read them would be caught anyway). */
inline heap_free(off)
{
	atomic {
		assert(st[off] == RETIRED);
		st[off] = FREE;
		key[off] = 0; next[off] = 0; stamp[off] = 0; limbo[off] = 0;
		if
		:: rp[0] == off -> freed[0] = 1
		:: else -> skip
		fi;
		if
		:: rp[1] == off -> freed[1] = 1
		:: else -> skip
		fi
	}
}

/* ------------------------------------------------------------- epoch.c -- */

/* epoch_advance(e): blocked by a pin with readers at another epoch than e
 * whose slot is in use; else CAS the epoch from e to e + 1 (bounded here:
 * below MAXE only). res: the epoch after. Its first step, slot 0's pin word
 * and id, is `blocked = BLOCKS(0, e)`, joined to the load of e; the second
 * is advance_cas. The heap_sweep() when blocked is the scrubber, which runs
 * at any time. */
#ifndef BUG_IGNORE_LIVE_PIN
#define BLOCKS(slot, e) (pinN[slot] > 0 && pinE[slot] != (e) && live[slot])
#else
#define BLOCKS(slot, e) (pinN[slot] > 0 && pinE[slot] != (e) && !live[slot])
#endif

inline advance_cas(e, res)
{
	if
	:: blocked || BLOCKS(1, e) -> res = e
	:: else ->
		if
		:: epoch == e && e < MAXE -> epoch = e + 1
		:: else -> skip
		fi;
		res = epoch
	fi;
	blocked = 0
}

/* -------------------------------------------------------------- dict.c -- */

#define CANDIE (wdead < MAXWDIE)
#define DIE wdead++; lockdead = locked; goto wkilled

/* The op cleared. The record's other fields are dead then (read only while
 * op is OP_LINK): zeroed, so that states differing only in them are one. */
#define OP_DONE iop = OP_NONE; ilink = 0; iold = 0; inew = 0; iret = 0

/* intent_apply()'s link store, if the word still holds the old value: the
 * publication (the new entry becomes reachable, the old one unreachable). */
inline publish()
{
	if
	:: LINKV(ilink) == iold ->
		store_link(ilink, inew);
		if
		:: iret != 0 -> assert(st[iret] == LIVE); st[iret] = UNLINKED
		:: else -> skip
		fi;
		if
		:: inew != 0 && st[inew] == BUILT -> st[inew] = LIVE
		:: else -> skip
		fi
	:: else -> skip
	fi
}

/* retire_entry(off): stamp = the epoch (epoch_stamp: seq_cst fence, then
 * the load), the link to the limbo head, then the push (the commit that
 * intent_apply checks for). One step: a death between the stamp and the
 * push leaves a stamp that the replay writes again. */
inline retire_entry(off)
{
	assert(st[off] == UNLINKED);      /* retired once */
#ifdef BUG_STAMP_BEFORE_UNLINK
	stamp[off] = sb;
#else
	stamp[off] = epoch;
#endif
	limbo[off] = slimbo;
	st[off] = RETIRED;
	slimbo = off
}

/* free_entries()' pop, then heap_free(). */
inline pop_free()
{
	fr = sreclaim;
	sreclaim = limbo[fr];
	heap_free(fr);
	fr = 0
}

/* The writer's place in stripe_reclaim(), in `then`: 1 freeing what a dead
 * holder left on the reclaim list, 2 in epoch_passed(), 3 freeing what it
 * cut off the limbo list, 0 done (unlocked). */

/* epoch_passed(the limbo head's stamp): its load of the epoch and, if it
 * tries to advance, epoch_advance()'s first step; or, with nothing on
 * limbo, the unlock. */
inline passed_head()
{
	if
	:: slimbo == 0 -> locked = 0; then = 0
	:: else ->
		hs = stamp[slimbo];
		e = epoch;
		then = 2;
		if
		:: e < hs + 2 -> tries = 1; blocked = BLOCKS(0, e)
		:: else -> tries = 0
		fi
	fi
}

/* free_entries(&reclaim): pop each entry, then free it; a kill between the
 * two leaks the popped entry (ghost: LEAK). The step that frees the last
 * one goes on with what follows (then 1: epoch_passed; 3: the unlock). */
inline free_entries()
{
	do
	:: atomic {
		sreclaim != 0 ->
		pop_free();
		if
		:: sreclaim == 0 && then == 1 -> passed_head()
		:: sreclaim == 0 && then == 3 -> locked = 0; then = 0
		:: else -> skip
		fi
	   }
	:: atomic { sreclaim != 0 && CANDIE -> DIE }
	:: atomic { sreclaim != 0 && CANDIE -> fr = sreclaim; sreclaim = limbo[fr]; st[fr] = LEAK; DIE }
	:: then != 1 && then != 3 -> break
	od
}

/* stripe_reclaim()'s walk: the epoch loaded again, and the limbo list
 * (newest first) walked to the first entry with stamp + 2 <= epoch: off,
 * and the link to it, lk. */
inline cut_walk()
{
	now = epoch;
	lk = 0;
	off = slimbo;
	do
#ifndef BUG_ONE_EPOCH
	:: off != 0 && stamp[off] + 2 > now -> lk = off; off = limbo[off]
#else
	:: off != 0 && stamp[off] + 1 > now -> lk = off; off = limbo[off]
#endif
	:: else -> break
	od;
	now = 0
}

/* stripe_reclaim(), begun in the step that cleared the intent's op
 * (reclaim_head): the reclaim list a dead holder left; epoch_passed(); the
 * walk; the reclaim list set, then the cut (a kill may come between the
 * two, or after both); free_entries; the unlock. */
inline reclaim_head()
{
	if
	:: sreclaim != 0 -> then = 1
	:: else -> passed_head()
	fi
}

inline stripe_reclaim()
{
	free_entries();
	if
	:: then == 2 ->
		/* epoch_passed()'s tries: the second step of each advance,
		 * joined to the first step of the next */
		do
		:: tries == 1 ->
			atomic {
				advance_cas(e, res);
				if
				:: res != e && res < hs + 2 -> e = res; tries = 2; blocked = BLOCKS(0, e)
				:: else -> tries = 0
				fi
			}
		:: tries == 2 -> atomic { advance_cas(e, res); tries = 0 }
		:: tries == 0 -> break
		od;
		if
		:: atomic {
			cut_walk();
			if
			:: off != 0 -> sreclaim = off; store_limbo(lk, 0); then = 3
			:: else -> locked = 0; then = 0
			fi;
			e = 0; res = 0; hs = 0; lk = 0; off = 0
		   }
		:: atomic {
			CANDIE -> cut_walk();
			if
			:: off != 0 -> sreclaim = off; DIE                      /* before the cut */
			:: else -> locked = 0; then = 0
			fi;
			e = 0; res = 0; hs = 0; lk = 0; off = 0
		   }
		:: atomic {
			CANDIE -> cut_walk();
			if
			:: off != 0 -> sreclaim = off; store_limbo(lk, 0); DIE  /* after it */
			:: else -> locked = 0; then = 0
			fi;
			e = 0; res = 0; hs = 0; lk = 0; off = 0
		   }
		fi;
		free_entries()
	:: else -> skip
	fi
}

/* stripe_replay(), after EOWNERDEAD: intent_apply() if the op was in
 * flight (the link store if the word still holds the old value; the
 * retirement unless the entry is at the limbo head already; the op
 * cleared), then the repair of a cut interrupted between its two stores:
 * the reclaim list's first entry, if still on the limbo list, is cut off
 * it. A kill is offered before each step. */
inline stripe_replay()
{
	if
	:: iop == OP_LINK ->
#ifdef BUG_STAMP_BEFORE_UNLINK
		sb = epoch;
#endif
		if
		:: atomic { skip; publish() }
		:: atomic { CANDIE -> DIE }
		fi;
		if
#ifndef BUG_NO_REPLAY_CHECK
		:: atomic { iret != 0 && slimbo != iret -> retire_entry(iret) }
		:: atomic { iret != 0 && slimbo != iret && CANDIE -> DIE }
		:: iret == 0 || slimbo == iret
#else
		:: atomic { iret != 0 -> retire_entry(iret) }
		:: atomic { iret != 0 && CANDIE -> DIE }
		:: iret == 0
#endif
		fi;
		if
		:: atomic { OP_DONE; sb = 0 }
		:: atomic { CANDIE -> DIE }
		fi
	:: else -> skip
	fi;
#ifndef BUG_NO_CUT_REPAIR
	if
	:: sreclaim != 0 ->
		atomic {
			lk = 0;
			off = slimbo;
			do
			:: off != 0 && off != sreclaim -> lk = off; off = limbo[off]
			:: else -> break
			od
		};
		if
		:: atomic { off != 0 -> store_limbo(lk, 0) }
		:: atomic { off != 0 && CANDIE -> DIE }
		:: off == 0
		fi;
		lk = 0; off = 0
	:: else -> skip
	fi
#else
	skip
#endif
}

/* stripe_lock(): EOWNERDEAD if the last holder died. */
inline stripe_lock()
{
	locked = 1;
	if
	:: lockdead -> lockdead = 0; stripe_replay()
	:: else -> skip
	fi
}

/* dict_write()'s first part, which only the writer sees: a set or a del of
 * key k; entry_new() (the lowest free block, written aside: the C code
 * builds it before the lock, but only the writer allocates here); find()
 * (the link to k's entry, and the entry or 0); decide(); intent_begin()
 * (op last), with the new entry's next. Nothing to do (-ENOSPC, -ENOENT):
 * the unlock. fe: the entry to retire. */
inline begin_write()
{
	if :: k = 1 :: k = 2 fi;
	if :: op = SET :: op = DEL fi;
	ne = 0;
	if
	:: op == SET ->
		ne = 1;
		do
		:: ne <= NE && st[ne] != FREE -> ne++
		:: else -> break
		od;
		if
		:: ne <= NE -> st[ne] = BUILT; key[ne] = k; next[ne] = 0
		:: else -> ne = 0
		fi
	:: else -> skip
	fi;
	fl = 0;
	fe = head;
	do
	:: fe != 0 && key[fe] != k -> fl = fe; fe = next[fe]
	:: else -> break
	od;
	if
	:: op == SET && ne != 0 && fe != 0 ->  /* replace */
		next[ne] = next[fe];
		ilink = fl; iold = fe; inew = ne; iret = fe; iop = OP_LINK
	:: op == SET && ne != 0 && fe == 0 ->  /* insert at the head */
		next[ne] = head;
		ilink = 0; iold = head; inew = ne; iret = 0; iop = OP_LINK
	:: op == DEL && fe != 0 ->             /* remove */
		ilink = fl; iold = fe; inew = next[fe]; iret = fe; iop = OP_LINK
	:: else -> locked = 0; fe = 0
	fi;
	k = 0; op = 0; ne = 0; fl = 0
}

/* The writer's retire_entry() of the entry it unlinked, if any. */
inline retire_found()
{
	if
	:: fe != 0 -> retire_entry(fe); fe = 0
	:: else -> skip
	fi
}

/* dict_write(): the lock; begin_write() joined to the publication; the
 * retirement joined to the op cleared and to stripe_reclaim()'s head, or to
 * the unlock (no reclaim this time). */
inline dict_write()
{
	stripe_lock();
	if
#ifndef BUG_STAMP_BEFORE_UNLINK
	:: atomic {
		begin_write();
		if
		:: locked -> publish()
		:: else -> skip
		fi
	   }
	:: atomic {
		CANDIE -> begin_write();
		if
		:: locked -> DIE                  /* the intent written */
		:: else -> skip
		fi
	   }
#else
	:: atomic { begin_write(); sb = epoch };  /* the stamp, too early */
		if
		:: atomic { locked -> publish() }
		:: atomic { locked && CANDIE -> DIE }
		:: !locked
		fi
#endif
	:: atomic { CANDIE -> DIE }           /* nothing in flight */
	fi;
	if
	:: locked ->
		if
		:: atomic { skip; retire_found(); OP_DONE; sb = 0; locked = 0 }
		:: atomic { skip; retire_found(); OP_DONE; sb = 0; reclaim_head() };
			stripe_reclaim()
		:: atomic { fe != 0 && CANDIE -> DIE }       /* published, not retired */
		:: atomic { CANDIE -> retire_found(); DIE }  /* op not cleared */
		fi
	:: else -> skip
	fi
}

/* dict_destroy() (DICT_DESTROY): the reclaim list, then the limbo list,
 * each popped and freed, with no replay; once the readers are done (they
 * hold the dict). */
inline dict_destroy()
{
	(rdone[0] && (rdone[1] || rdead));
	atomic {
		do
		:: sreclaim != 0 -> pop_free()
		:: else -> break
		od;
		do
		:: slimbo != 0 -> fr = slimbo; slimbo = limbo[fr]; heap_free(fr); fr = 0
		:: else -> break
		od;
		lockdead = 0;
		destroyed = 1
	}
}

/* The writer. A kill leaves the lock (if held) to a dead holder, and the
 * writer starts again: its next lock replays. After its NOPS writes it
 * takes the lock once more if the last holder died. */
proctype writer()
{
	byte nops, k, op, ne, fl, fe, fr, off, lk, hs, now, e, res, tries, sb, then;
	bit blocked, locked;
restart:
	do
	:: nops < NOPS -> nops++; dict_write()
#ifndef DICT_DESTROY
	:: nops >= NOPS && lockdead -> stripe_lock(); locked = 0
#else
	:: nops >= NOPS && lockdead -> dict_destroy()
#endif
	:: nops >= NOPS && !lockdead -> break
	od;
	wdone = 1;
	goto done;
wkilled:
	atomic {
		k = 0; op = 0; ne = 0; fl = 0; fe = 0; fr = 0; off = 0; lk = 0;
		hs = 0; now = 0; e = 0; res = 0; tries = 0; sb = 0;
		blocked = 0; locked = 0; then = 0
	};
	goto restart;
done:
	skip
}

/* Other processes' epoch_passed(): advance attempts at any time, until
 * the epoch is MAXE. */
proctype advancer()
{
	byte e, res;
	bit blocked;
end:
	do
	:: atomic { epoch < MAXE -> e = epoch; blocked = BLOCKS(0, e) };
		atomic { advance_cas(e, res); e = 0; res = 0 }
	od
}

/* ------------------------------------------------------------- readers -- */

/* A kill of reader(1) while pinned, in place of epoch_leave(). */
#define RKILL atomic { me == 1 && !rdead -> rdead = 1; rp[me] = 0; freed[me] = 0; goto rkilled }

/* A read of the entry p that the reader holds. */
#define RCHECK(p) assert(READABLE(p) && !freed[me])

proctype reader(byte me)
{
	byte i, p;
	for (i : 1 .. NREAD) {
		/* epoch_enter(): the first thread in loads the epoch, then
		 * the CAS publishes the pin (no other thread of this process:
		 * it succeeds) */
		p = epoch;
		atomic { pinE[me] = p; pinN[me] = 1; p = 0 };
		/* current(), then find() / next_entry(): the bucket's link;
		 * then for each entry, its fields and its next link */
		atomic { p = head; rp[me] = p; freed[me] = 0 };
		do
		:: p == 0 -> break
		:: p != 0 -> atomic { RCHECK(p); p = next[p]; rp[me] = p; freed[me] = 0 }
		od;
		/* epoch_leave() (the epoch bits mean nothing once the count
		 * is 0: zeroed) */
		if
		:: atomic { pinE[me] = 0; pinN[me] = 0; rp[me] = 0 }
		:: RKILL
		fi
	};
	rdone[me] = 1;
	goto done;
rkilled:
	i = 0; p = 0;
done:
	skip
}

/* The liveness checks: a dead reader's slot is freed (part_reap_dead),
 * then its pin zeroed (heap_reaped -> scrub). */
proctype scrubber()
{
end:
	rdead ->
	live[1] = 0;
	atomic { pinE[1] = 0; pinN[1] = 0 }
}

init
{
	byte x, y, n, nlive, nret;
	atomic {
		/* key 1 on the chain; entries 2 .. NE free */
		st[1] = LIVE; key[1] = 1; head = 1;
		live[0] = 1; live[1] = 1;
		run writer(); run advancer();
		run reader(0); run reader(1);
		run scrubber()
	};
	(wdone && rdone[0] && (rdone[1] || rdead));
	/* Nothing lost, nothing left half done. */
	d_step {
		assert((destroyed || iop == OP_NONE) && !lockdead);
		x = 1;
		do
		:: x <= NE && !destroyed ->
			assert(st[x] != BUILT && st[x] != UNLINKED);
			nlive = nlive + (st[x] == LIVE);
			nret = nret + (st[x] == RETIRED);
			x++
		:: else -> break
		od;
		/* the chain: exactly the published entries, each key once */
		n = 0;
		x = head;
		do
		:: x != 0 && !destroyed ->
			assert(st[x] == LIVE && n < NE);
			y = next[x];
			do
			:: y != 0 -> assert(key[y] != key[x]); y = next[y]
			:: else -> break
			od;
			n++;
			x = next[x]
		:: else -> break
		od;
		assert(destroyed || n == nlive);
		/* limbo, then reclaim: exactly the retired ones, once each */
		n = 0;
		x = slimbo;
		do
		:: x != 0 -> assert(st[x] == RETIRED && n < NE); n++; x = limbo[x]
		:: else -> break
		od;
		x = sreclaim;
		do
		:: x != 0 -> assert(st[x] == RETIRED && n < NE); n++; x = limbo[x]
		:: else -> break
		od;
		assert(destroyed || n == nret)
	}
}
