/* Participant layer: slots, roles, liveness and reaping of dead processes. */
#include "part.h"
#include "efd.h"
#include "wait.h"
#include "shmq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PID_BITS 22u
#define PID_MASK ((1ull << PID_BITS) - 1)
#define ROLES_SHIFT PID_BITS
#define ROLES_MASK (3ull << ROLES_SHIFT)
#define START_SHIFT 24u
#define SLOT_BITS 10u /* SHMQ_MAX_PARTICIPANTS == 1 << SLOT_BITS */
#define GEN_MASK ((1u << (PART_TAG_BITS - SLOT_BITS)) - 1)

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

/* Read state and start time (clock ticks since boot) of a process. */
static enum proc_state proc_stat(pid_t pid, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	enum proc_state st = read_proc(path, buf, sizeof(buf));
	if (st != PROC_LIVE)
		return st;
	/* "pid (comm) S ppid ..." — comm may hold spaces and parens. */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return PROC_UNKNOWN;
	char state = p[2];
	if (state == 'Z' || state == 'X')
		return PROC_GONE;
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p)
		return PROC_UNKNOWN;
	*start = strtoull(p, NULL, 10);
	return PROC_LIVE;
}

static uint64_t self_id(void)
{
	pid_t pid = getpid();
	uint64_t id = atomic_load_explicit(&self_id_cache, memory_order_relaxed);
	if ((id & PID_MASK) == (uint64_t)pid)
		return id;
	uint64_t start = 0;
	proc_stat(pid, &start); /* /proc missing: start 0, still a valid id */
	id = (uint64_t)pid | (start << START_SHIFT);
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
 * another description) all count as gone. Where /proc cannot tell, alive. */
static bool part_alive(const struct seg *s, struct seg_part *p, uint64_t id)
{
	uint32_t forking = atomic_load(&p->forking);
	if (forking) /* the child has not adopted it yet: did the fork fail? */
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
	if (st.st_dev != s->dev || st.st_ino != s->ino)
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

/* Roles changed; `dropped` are the ones some handle gave up (or lost by
 * death): waiters that may now see the other side gone are woken. */
static void membership_changed(struct seg *s, uint64_t dropped)
{
	atomic_fetch_add_explicit(&s->hdr->epoch, 1, memory_order_seq_cst);
	if (dropped & ((uint64_t)SHMQ_WR << ROLES_SHIFT))
		efd_notify_data(s); /* end of data, for eventfd users too */
	if (dropped & ((uint64_t)SHMQ_RD << ROLES_SHIFT)) {
		ec_notify(&s->hdr->ec_room);
		ec_notify(&s->hdr->ec_done); /* a departed consumer's items are now lost */
	}
}

/* The slot's previous owner is gone; what it held it will never mark done. */
static void count_lost(struct seg *s, struct seg_part *p)
{
	uint32_t held = atomic_load(&p->held);
	if (held) {
		atomic_store(&p->held, 0);
		atomic_fetch_add(&s->hdr->lost, held);
	}
}

int part_claim(struct seg *s, int roles, bool for_child)
{
	uint64_t id = self_id() | ((uint64_t)roles << ROLES_SHIFT);
	for (int attempt = 0; attempt < 2; attempt++) {
		for (uint32_t i = 0; i < s->geom.nparts; i++) {
			struct seg_part *p = &s->parts[i];
			uint64_t free_id = 0;
			if (atomic_load_explicit(&p->id, memory_order_relaxed) ||
			    !atomic_compare_exchange_strong(&p->id, &free_id, id))
				continue;
			atomic_fetch_add(&p->gen, 1);
			count_lost(s, p);
			atomic_store(&p->fdno, s->fd);
			atomic_store(&p->token, s->token);
			atomic_store(&p->forking, for_child ? monotonic_s() + 1 : 0);
			atomic_fetch_or(&s->hdr->ever, (uint32_t)roles);
			membership_changed(s, 0);
			return (int)i;
		}
		if (part_reap_dead(s, 0) == 0)
			break;
	}
	return -EUSERS;
}

void part_adopt(struct seg *s, int slot)
{
	struct seg_part *p = &s->parts[slot];
	uint64_t id = atomic_load(&p->id);
	atomic_store(&p->id, self_id() | (id & ROLES_MASK));
	atomic_store(&p->forking, 0);
}

void part_set_roles(struct seg *s, int slot, int roles)
{
	_Atomic uint64_t *idp = &s->parts[slot].id;
	uint64_t id = atomic_load(idp);
	while (!atomic_compare_exchange_weak(idp, &id, (id & ~ROLES_MASK) |
							   ((uint64_t)roles << ROLES_SHIFT)))
		;
	membership_changed(s, id & ~((uint64_t)roles << ROLES_SHIFT));
}

void part_release(struct seg *s, int slot)
{
	membership_changed(s, atomic_exchange(&s->parts[slot].id, 0));
}

uint32_t part_tag(struct seg *s, int slot)
{
	uint32_t gen = atomic_load_explicit(&s->parts[slot].gen, memory_order_relaxed);
	return (uint32_t)slot | (gen & GEN_MASK) << SLOT_BITS;
}

struct part_counts part_count(struct seg *s)
{
	struct part_counts c = { 0, 0 };
	for (uint32_t i = 0; i < s->geom.nparts; i++) {
		uint64_t id = atomic_load_explicit(&s->parts[i].id, memory_order_acquire);
		if (!id)
			continue;
		c.consumers += !!(id & ((uint64_t)1 << ROLES_SHIFT));
		c.producers += !!(id & ((uint64_t)2 << ROLES_SHIFT));
	}
	return c;
}

uint64_t part_held(struct seg *s, uint64_t *lost)
{
	uint64_t held = 0;
	*lost = atomic_load(&s->hdr->lost);
	for (uint32_t i = 0; i < s->geom.nparts; i++) {
		struct seg_part *p = &s->parts[i];
		uint64_t id = atomic_load(&p->id);
		uint32_t h = atomic_load(&p->held);
		if (id)
			held += h;
		else
			*lost += h;
	}
	return held;
}

int part_reap_dead(struct seg *s, int roles)
{
	uint64_t mask = roles ? (uint64_t)roles << ROLES_SHIFT : ~0ull;
	int reaped = 0;
	uint64_t dropped = 0;
	for (uint32_t i = 0; i < s->geom.nparts; i++) {
		struct seg_part *p = &s->parts[i];
		uint64_t id = atomic_load(&p->id);
		if ((id & mask) && !part_alive(s, p, id) &&
		    atomic_compare_exchange_strong(&p->id, &id, 0)) {
			reaped++;
			dropped |= id;
		}
	}
	if (reaped)
		membership_changed(s, dropped);
	return reaped;
}

void part_sweep(struct seg *s, int roles, int64_t period_ns)
{
	int64_t now = wait_now(), last = atomic_load(&s->hdr->swept);
	/* A stamp from the future is garbage (a hostile peer): sweep anyway. */
	if (now - last < period_ns && last <= now)
		return;
	if (atomic_compare_exchange_strong(&s->hdr->swept, &last, now))
		part_reap_dead(s, roles);
}

pid_t part_tag_pid(struct seg *s, uint32_t tag)
{
	uint64_t id = atomic_load(&s->parts[tag & (SHMQ_MAX_PARTICIPANTS - 1)].id);
	return (pid_t)(id & PID_MASK);
}

bool part_tag_gone(struct seg *s, uint32_t tag)
{
	struct seg_part *p = &s->parts[tag & (SHMQ_MAX_PARTICIPANTS - 1)];
	if ((atomic_load(&p->gen) & GEN_MASK) != (tag >> SLOT_BITS & GEN_MASK))
		return true;
	uint64_t id = atomic_load(&p->id);
	return !id || !part_alive(s, p, id);
}
