/* Participant layer: slots, roles, liveness and reaping of dead processes.
 * Knows nothing of rings or queues: what a segment's layer wants done when
 * membership changes, it says through struct part_hooks. */
#include "part.h"
#include "wait.h"
#include "shmq.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PID_BITS 22u
#define PID_MASK ((1ull << PID_BITS) - 1)
#define ROLES_SHIFT PID_BITS
#define ROLES_MASK (3ull << ROLES_SHIFT)
#define START_SHIFT 24u
#define SLOT_BITS 10u /* SHMQ_MAX_PARTICIPANTS == 1 << SLOT_BITS */
#define GEN_MASK ((1u << (PART_TAG_BITS - SLOT_BITS)) - 1)
#define WIDE_GEN_MASK ((1u << (PART_WIDE_TAG_BITS - SLOT_BITS)) - 1)

_Static_assert(SHMQ_MAX_PARTICIPANTS == 1u << SLOT_BITS, "a tag's slot field");

/* This process's id without roles, recomputed after fork (pid changes). */
static _Atomic uint64_t self_id_cache;

enum proc_state { PROC_GONE, PROC_LIVE, PROC_UNKNOWN };

/* Read a small /proc file into buf (NUL-terminated). A missing or empty one
 * means the process is gone; another failure (permissions) tells nothing. */
static enum proc_state read_proc(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? PROC_GONE : PROC_UNKNOWN;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return n == 0 ? PROC_GONE : PROC_UNKNOWN;
	buf[n] = 0;
	return PROC_LIVE;
}

/* What /proc/PID/stat says of a process: state letter, parent, start time
 * (clock ticks since boot). PROC_LIVE means "read", whatever the state. */
struct proc_info {
	char state;
	pid_t ppid;
	uint64_t start;
};

static enum proc_state proc_info(pid_t pid, struct proc_info *pi)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	enum proc_state st = read_proc(path, buf, sizeof(buf));
	if (st != PROC_LIVE)
		return st;
	/* "pid (comm) S ppid ..." — comm may hold spaces and parens. */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return PROC_UNKNOWN;
	pi->state = p[2];
	p += 2; /* field 3 */
	pi->ppid = 0;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
		if (p && field == 3)
			pi->ppid = (pid_t)strtol(p, NULL, 10);
	}
	if (!p)
		return PROC_UNKNOWN;
	pi->start = strtoull(p, NULL, 10);
	return PROC_LIVE;
}

/* State and start time of a process; a zombie counts as gone. */
static enum proc_state proc_stat(pid_t pid, uint64_t *start)
{
	struct proc_info pi;
	enum proc_state st = proc_info(pid, &pi);
	if (st != PROC_LIVE)
		return st;
	if (pi.state == 'Z' || pi.state == 'X')
		return PROC_GONE;
	*start = pi.start;
	return PROC_LIVE;
}

static uint64_t make_id(pid_t pid, uint64_t start)
{
	return (uint64_t)pid | (start << START_SHIFT);
}

static uint64_t self_id(void)
{
	pid_t pid = getpid();
	uint64_t id = atomic_load_explicit(&self_id_cache, memory_order_relaxed);
	if ((id & PID_MASK) == (uint64_t)pid)
		return id;
	uint64_t start = 0;
	proc_stat(pid, &start); /* /proc missing: start 0, still a valid id */
	id = make_id(pid, start);
	atomic_store_explicit(&self_id_cache, id, memory_order_relaxed);
	return id;
}

static uint32_t monotonic_s(void)
{
	return (uint32_t)(wait_now() / 1000000000);
}

/* File position of fd fdno of process pid, from /proc/PID/fdinfo. */
static enum proc_state fd_pos(pid_t pid, int32_t fdno, uint64_t *pos)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, (int)fdno);
	enum proc_state st = read_proc(path, buf, sizeof(buf));
	if (st != PROC_LIVE)
		return st;
	char *p = strstr(buf, "pos:");
	if (!p)
		return PROC_UNKNOWN;
	*pos = strtoull(p + 4, NULL, 10);
	return PROC_LIVE;
}

/* Is the process behind slot p alive and still holding the segment through
 * the open file description it registered? A dead process, a reused pid and a
 * process that exec'd (its close-on-exec fd is gone, or the number now holds
 * another description) all count as gone. Where /proc cannot tell, alive.
 * A child forked a moment ago and not yet run holds the fd it inherited, at
 * the same position: alive too, by the same check. */
/* The id of a slot being claimed: no pid, and the CLOCK_MONOTONIC second
 * of the claim (+1) in the start field, so a claimant killed mid-claim frees
 * the slot after the grace period. */
static uint64_t claiming_id(void)
{
	return (uint64_t)(monotonic_s() + 1) << START_SHIFT;
}

static bool part_alive(const struct part_table *t, struct seg_part *p, uint64_t id)
{
	if ((id & PID_MASK) == 0) /* being claimed (claiming_id) */
		return monotonic_s() + 1 - (uint32_t)(id >> START_SHIFT) < PART_FORK_GRACE_S;
	uint32_t forking = atomic_load(&p->forking);
	if (forking) /* the child is still unknown: did the fork fail? */
		return monotonic_s() + 1 - forking < PART_FORK_GRACE_S;
	int32_t fdno = atomic_load(&p->fdno);
	pid_t pid = (pid_t)(id & PID_MASK);
	uint64_t start = id >> START_SHIFT, now_start = 0, pos = 0;

	switch (proc_stat(pid, &now_start)) {
	case PROC_GONE:
		return false;
	case PROC_UNKNOWN:
		return true;
	case PROC_LIVE:
		if (now_start != start)
			return false; /* pid reused by another process */
	}
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, (int)fdno);
	if (stat(path, &st) < 0)
		return errno != ENOENT; /* closed (or exec'd): gone */
	if (st.st_dev != t->dev || st.st_ino != t->ino)
		return false;
	switch (fd_pos(pid, fdno, &pos)) {
	case PROC_GONE:
		return false;
	case PROC_UNKNOWN:
		return true;
	case PROC_LIVE:
		break;
	}
	return pos == atomic_load(&p->token);
}

static struct seg_part *tag_slot(const struct part_table *t, uint32_t tag)
{
	return &t->parts[tag & (t->nparts - 1)]; /* nparts: a power of two */
}

/* Roles changed; `dropped` (id bits) are the ones some handle gave up or lost
 * by death. The epoch bump lets handles cache role counts; the segment's
 * layer wakes whoever may now see the other side gone. */
static void membership_changed(struct part_table *t, uint64_t dropped)
{
	atomic_fetch_add_explicit(t->epoch, 1, memory_order_seq_cst);
	if (t->hooks && t->hooks->changed)
		t->hooks->changed(t, (int)((dropped & ROLES_MASK) >> ROLES_SHIFT));
}

/* The slot's previous owner is gone; what it held it will never mark done. */
static void count_lost(struct part_table *t, struct seg_part *p)
{
	if (!t->lost)
		return;
	uint32_t held = atomic_load(&p->held);
	if (held) {
		atomic_store(&p->held, 0);
		atomic_fetch_add(t->lost, held);
	}
}

/* ------------------------------------------------------------------ fork -- */

/* A slot claimed for a child must name the child as soon as it exists, or a
 * child killed before it ever ran would count as alive until the grace
 * period ends. fork() does not tell its atfork handlers the child's pid, so
 * part.c's parent handler finds it: the pid the kernel handed out last in our
 * pid namespace (ns_last_pid), verified to be our child, created since the
 * fork began, and not a child found before; if another process forked in
 * between, a scan of /proc for such children, taken only if there is exactly
 * one. Forks of a process that holds shmq handles are serialized by the
 * layers' prepare handlers (they hold a lock until their parent handler), and
 * fork_lock serializes part.c's own state across each fork as well.
 *
 * All of this is process-local, written by the forking thread. */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static long clk_tck;                    /* sysconf(_SC_CLK_TCK) */
static _Atomic bool fork_pending;       /* a slot was claimed for the next child */
static _Atomic uint64_t fork_parent_id; /* the forking process's id */
static uint64_t fork_tick;              /* CLOCK_BOOTTIME in clock ticks at prepare */
static int fork_errno;                  /* the caller's errno, kept across fork */
static _Atomic uint64_t fork_child_id;  /* the child found, or 0 */
/* Children found at the last forks: a candidate among them is an older child
 * (a fork that failed leaves ns_last_pid where the previous one put it). */
#define KNOWN_CHILDREN 64u
static uint64_t known_children[KNOWN_CHILDREN];
static unsigned known_next;

static uint64_t boottime_ticks(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0 || clk_tck <= 0)
		return 0;
	return (uint64_t)ts.tv_sec * (uint64_t)clk_tck +
	       (uint64_t)ts.tv_nsec * (uint64_t)clk_tck / 1000000000u;
}

static bool known_child(uint64_t id)
{
	for (unsigned i = 0; i < KNOWN_CHILDREN; i++)
		if (known_children[i] == id)
			return true;
	return false;
}

/* Is pid a child of ours created since the fork began, and not one found
 * before? Fills *id. A child that already died (zombie) qualifies: it is
 * then seen dead at once. The process start time is taken at fork, after
 * our prepare handler read the clock, so it is at least fork_tick; one tick
 * of slack covers rounding. */
/* Is pid a process (a thread group's leader)? A thread the child starts at
 * once (a sanitizer's, a runtime's) takes the next pid and names our pid as
 * its parent too, but is not the child. */
static bool group_leader(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_proc(path, buf, sizeof(buf)) != PROC_LIVE)
		return false;
	const char *tgid = strstr(buf, "\nTgid:");
	return tgid && strtol(tgid + 6, NULL, 10) == pid;
}

static bool new_child(pid_t pid, pid_t self, uint64_t *id)
{
	struct proc_info pi;
	if (pid <= 0 || proc_info(pid, &pi) != PROC_LIVE || pi.ppid != self ||
	    pi.start + 1 < fork_tick || !group_leader(pid))
		return false;
	*id = make_id(pid, pi.start);
	return !known_child(*id);
}

static pid_t ns_last_pid(void)
{
	char buf[32];
	if (read_proc("/proc/sys/kernel/ns_last_pid", buf, sizeof(buf)) != PROC_LIVE)
		return 0;
	return (pid_t)strtol(buf, NULL, 10);
}

/* The child just forked, or 0 if it cannot be told for sure. */
static uint64_t find_child(void)
{
	pid_t self = getpid();
	uint64_t id, found = 0;
	if (new_child(ns_last_pid(), self, &id))
		return id;
	/* Another process forked since ours: look at every process. (No
	 * /proc/PID/task/TID/children: kernels without CONFIG_PROC_CHILDREN
	 * lack it.) */
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0 || pid == self || !new_child((pid_t)pid, self, &id))
			continue;
		if (found) { /* two new children: which one is ours? */
			found = 0;
			break;
		}
		found = id;
	}
	closedir(d);
	return found;
}

/* Runs last of all prepare handlers (part_fork_init is called before the
 * layers register theirs), right before the fork itself. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&fork_lock);
	atomic_store(&fork_parent_id, self_id());
	atomic_store(&fork_child_id, 0);
	fork_tick = boottime_ticks();
	/* errno tells the parent handler whether fork() failed (glibc and
	 * musl run the parent handlers on failure too): then ns_last_pid names
	 * an older process. */
	fork_errno = errno;
	errno = 0;
}

/* Runs first of all parent handlers: the layers' handlers, which follow,
 * resolve their slots with what it found. */
static void fork_parent(void)
{
	/* fork(2)'s own errors only: anything else in errno comes from code
	 * that ran between the handlers (a sanitizer's, say), not a failure. */
	bool failed = errno == EAGAIN || errno == ENOMEM || errno == ENOSYS;
	if (atomic_exchange(&fork_pending, false) && !failed) {
		uint64_t id = find_child();
		if (id) {
			atomic_store(&fork_child_id, id);
			known_children[known_next++ % KNOWN_CHILDREN] = id;
		}
	}
	if (!failed)
		errno = fork_errno; /* a failed fork's errno is fork's to return */
	pthread_mutex_unlock(&fork_lock);
}

static void fork_child(void)
{
	atomic_store(&fork_pending, false);
	memset(known_children, 0, sizeof(known_children)); /* our parent's, not ours */
	known_next = 0;
	errno = fork_errno;
	pthread_mutex_unlock(&fork_lock);
}

static void fork_register(void)
{
	clk_tck = sysconf(_SC_CLK_TCK);
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void part_fork_init(void)
{
	pthread_once(&fork_once, fork_register);
}

void part_fork_resolve(struct part_table *t, int slot)
{
	uint64_t child = atomic_load(&fork_child_id), parent = atomic_load(&fork_parent_id);
	if (!child || slot < 0 || (uint32_t)slot >= t->nparts)
		return;
	struct seg_part *p = &t->parts[slot];
	uint32_t stamp = atomic_load(&p->forking);
	uint64_t id = atomic_load(&p->id);
	if (!stamp || (id & ~ROLES_MASK) != parent)
		return; /* the child has adopted it already */
	/* The id first: while the stamp stays, the slot counts as alive. */
	if (atomic_compare_exchange_strong(&p->id, &id, child | (id & ROLES_MASK)))
		atomic_compare_exchange_strong(&p->forking, &stamp, 0);
}

bool part_adopt(struct part_table *t, int slot)
{
	struct seg_part *p = &t->parts[slot];
	uint64_t self = self_id(), parent = atomic_load(&fork_parent_id);
	uint64_t id = atomic_load(&p->id);
	for (;;) {
		/* Ours still: claimed for us by the parent and not resolved yet
		 * (the stamp is on), or resolved to us already. Anything else
		 * means it was reaped, and maybe claimed again. */
		uint64_t who = id & ~ROLES_MASK;
		if (!id || (who != self && (who != parent || !atomic_load(&p->forking))))
			return false;
		if (atomic_compare_exchange_weak(&p->id, &id, self | (id & ROLES_MASK)))
			break;
	}
	atomic_store(&p->forking, 0);
	return true;
}

/* ----------------------------------------------------------------- slots -- */

int part_claim(struct part_table *t, int roles, bool for_child)
{
	uint64_t id = self_id() | ((uint64_t)roles << ROLES_SHIFT);
	for (int attempt = 0; attempt < 2; attempt++) {
		for (uint32_t i = 0; i < t->nparts; i++) {
			struct seg_part *p = &t->parts[i];
			uint64_t free_id = 0;
			/* Take the slot with a placeholder first: until fdno
			 * and token are ours, a liveness check must not judge
			 * our id by the previous owner's fd. */
			if (atomic_load_explicit(&p->id, memory_order_relaxed) ||
			    !atomic_compare_exchange_strong(&p->id, &free_id, claiming_id()))
				continue;
			atomic_fetch_add(&p->gen, 1);
			count_lost(t, p);
			atomic_store(&p->fdno, t->fd);
			atomic_store(&p->token, t->token);
			atomic_store(&p->forking, for_child ? monotonic_s() + 1 : 0);
			atomic_store(&p->id, id);
			if (for_child)
				atomic_store(&fork_pending, true);
			atomic_fetch_or(t->ever, (uint32_t)roles);
			membership_changed(t, 0);
			return (int)i;
		}
		if (part_reap_dead(t, 0) == 0)
			break;
	}
	return -EUSERS;
}

void part_set_roles(struct part_table *t, int slot, int roles)
{
	_Atomic uint64_t *idp = &t->parts[slot].id;
	uint64_t id = atomic_load(idp);
	while (!atomic_compare_exchange_weak(idp, &id, (id & ~ROLES_MASK) |
							   ((uint64_t)roles << ROLES_SHIFT)))
		;
	membership_changed(t, id & ~((uint64_t)roles << ROLES_SHIFT));
}

void part_release(struct part_table *t, int slot)
{
	membership_changed(t, atomic_exchange(&t->parts[slot].id, 0));
}

uint32_t part_tag(struct part_table *t, int slot)
{
	uint32_t gen = atomic_load_explicit(&t->parts[slot].gen, memory_order_relaxed);
	return (uint32_t)slot | (gen & GEN_MASK) << SLOT_BITS;
}

uint32_t part_wide_tag(struct part_table *t, int slot)
{
	return part_wide_tag_at((uint32_t)slot,
				atomic_load_explicit(&t->parts[slot].gen, memory_order_relaxed));
}

struct part_counts part_count(struct part_table *t)
{
	struct part_counts c = { 0, 0 };
	for (uint32_t i = 0; i < t->nparts; i++) {
		uint64_t id = atomic_load_explicit(&t->parts[i].id, memory_order_acquire);
		if (!id)
			continue;
		c.consumers += !!(id & ((uint64_t)SHMQ_RD << ROLES_SHIFT));
		c.producers += !!(id & ((uint64_t)SHMQ_WR << ROLES_SHIFT));
	}
	return c;
}

uint64_t part_held(struct part_table *t, uint64_t *lost)
{
	uint64_t held = 0;
	*lost = t->lost ? atomic_load(t->lost) : 0;
	for (uint32_t i = 0; i < t->nparts; i++) {
		struct seg_part *p = &t->parts[i];
		uint64_t id = atomic_load(&p->id);
		uint32_t h = atomic_load(&p->held);
		if (id)
			held += h;
		else
			*lost += h;
	}
	return held;
}

int part_reap_dead(struct part_table *t, int roles)
{
	uint64_t mask = roles ? (uint64_t)roles << ROLES_SHIFT : ~0ull;
	int reaped = 0;
	uint64_t dropped = 0;
	for (uint32_t i = 0; i < t->nparts; i++) {
		struct seg_part *p = &t->parts[i];
		uint64_t id = atomic_load(&p->id);
		if (!(id & mask))
			continue;
		/* The generation of the owner we judge: read before the id can
		 * go to 0 and a new claimant bump it. */
		uint32_t gen = atomic_load(&p->gen);
		if (part_alive(t, p, id) || !atomic_compare_exchange_strong(&p->id, &id, 0))
			continue;
		reaped++;
		dropped |= id;
		if (t->hooks && t->hooks->reaped)
			t->hooks->reaped(t, i, gen);
	}
	if (reaped)
		membership_changed(t, dropped);
	return reaped;
}

void part_sweep(struct part_table *t, int roles, int64_t period_ns)
{
	int64_t now = wait_now(), last = atomic_load(t->swept);
	/* A stamp from the future is garbage (a hostile peer): sweep anyway.
	 * Compared before subtracting: garbage must not overflow. */
	if (last <= now && (uint64_t)now - (uint64_t)last < (uint64_t)period_ns)
		return;
	if (atomic_compare_exchange_strong(t->swept, &last, now))
		part_reap_dead(t, roles);
}

pid_t part_tag_pid(struct part_table *t, uint32_t tag)
{
	uint64_t id = atomic_load(&tag_slot(t, tag)->id);
	return (pid_t)(id & PID_MASK);
}

bool part_tag_gone(struct part_table *t, uint32_t tag)
{
	struct seg_part *p = tag_slot(t, tag);
	if ((atomic_load(&p->gen) & GEN_MASK) != (tag >> SLOT_BITS & GEN_MASK))
		return true;
	uint64_t id = atomic_load(&p->id);
	return !id || !part_alive(t, p, id);
}

bool part_wide_tag_gone(struct part_table *t, uint32_t tag, bool cheap_only)
{
	struct seg_part *p = tag_slot(t, tag);
	if ((atomic_load(&p->gen) & WIDE_GEN_MASK) != (tag >> SLOT_BITS & WIDE_GEN_MASK))
		return true;
	uint64_t id = atomic_load(&p->id);
	return !id || (!cheap_only && !part_alive(t, p, id));
}

bool part_slot_alive(struct part_table *t, uint32_t slot)
{
	struct seg_part *p = tag_slot(t, slot);
	uint64_t id = atomic_load(&p->id);
	return id && part_alive(t, p, id);
}
