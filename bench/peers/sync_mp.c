/* Python's multiprocessing Lock, Semaphore, Barrier and Event, run by
 * bench/mp_sync.py under /usr/bin/python3 (Debian's interpreter) with the
 * case's parameters (fork start method, the same start barrier, stop flag,
 * loops and hand-off / wake-up stamps as bench/sync.h; interpreter start-up
 * outside the measured time). It prints one JSON line. Interleaved with the
 * others like any system. A driver that does not answer within the run's
 * time plus 30 s is killed (its children die with it: PR_SET_PDEATHSIG). */
#include "../sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *case_arg(enum sync_kind k)
{
	static const char *const names[SYNC_NKINDS] = {
		[SYNC_LOCK_1] = "lock1", [SYNC_SEM_1] = "sem1",	      [SYNC_LOCK_N] = "lockn",
		[SYNC_SEM_PP] = "sempp", [SYNC_BARRIER] = "barrier", [SYNC_EVENT] = "event",
	};
	return names[k];
}

static int mp_run(const struct sync_case *c, struct sync_run *res)
{
	char *note = res->note;
	size_t note_len = sizeof(res->note);
	if (!bench_mp_sync_script) {
		snprintf(note, note_len, "mp_sync.py not found (--mp-sync-script)");
		return -ENOENT;
	}
	char np[16], secs[32], gap[32], parent[16];
	snprintf(np, sizeof(np), "%d", c->nproc);
	snprintf(secs, sizeof(secs), "%g", c->secs);
	snprintf(gap, sizeof(gap), "%lld", (long long)c->gap_ns);
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	char *argv[] = { (char *)bench_python(), (char *)bench_mp_sync_script, "--case",
			 (char *)case_arg(c->kind), "-n", np, "-t", secs, "--gap-ns", gap,
			 "--parent", parent, NULL };
	const char *line = bench_driver_json(argv, c->secs + 30, note, note_len);
	if (!line)
		return -EIO;
	double ops = bench_json_num(line, "ops"), w = bench_json_num(line, "wall_s"),
	       e = bench_json_num(line, "errors"), h = bench_json_num(line, "handoffs");
	if (ops < 0 || w <= 0) {
		snprintf(note, note_len, "mp_sync.py: bad output");
		return -EIO;
	}
	res->ops = (uint64_t)ops;
	res->wall_ns = (int64_t)(w * 1e9);
	res->errors = e > 0 ? (uint64_t)e : 0;
	res->handoffs = h > 0 ? (uint64_t)h : 0;
	if (c->kind == SYNC_LOCK_N || c->kind == SYNC_EVENT)
		bench_json_hist(line, &res->hist);
	return 0;
}

static const char *mp_models(const struct sync_case *c)
{
	switch (c->kind) {
	case SYNC_LOCK_1:
		return "Python 3 loop calling Lock().acquire() / release() (bound methods): a SemLock "
		       "over a sem_t, plus the interpreter's cost per call, which a Python binding "
		       "of shmq would pay as well (shmq is measured from C here)";
	case SYNC_LOCK_N:
		return "Lock(); the critical section in Python (counter += 1 in a RawArray, "
		       "monotonic_ns stamps)";
	case SYNC_SEM_1:
	case SYNC_SEM_PP:
		return "Semaphore(): acquire() / release() from Python";
	case SYNC_BARRIER:
		return "Barrier(n).wait() from Python (a Condition and a Semaphore-based lock over "
		       "shared state)";
	case SYNC_EVENT:
		return "Event(): wait() / set() / clear() from Python (a Condition over a Lock and a "
		       "Semaphore flag)";
	default:
		return NULL;
	}
}

#define MP_SYNC_PEER(sym, nm, lbl, k)                                                         \
	const struct sync_peer sym = { .name = nm, .label = lbl, .kinds = k, .run = mp_run,   \
				       .models = mp_models };

MP_SYNC_PEER(sync_mp_lock, "mp-lock", "mp.Lock", SYNC_KIND(SYNC_LOCK_1) | SYNC_KIND(SYNC_LOCK_N))
MP_SYNC_PEER(sync_mp_semaphore, "mp-semaphore", "mp.Semaphore",
	     SYNC_KIND(SYNC_SEM_1) | SYNC_KIND(SYNC_SEM_PP))
MP_SYNC_PEER(sync_mp_barrier, "mp-barrier", "mp.Barrier", SYNC_KIND(SYNC_BARRIER))
MP_SYNC_PEER(sync_mp_event, "mp-event", "mp.Event", SYNC_KIND(SYNC_EVENT))
