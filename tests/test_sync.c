/* Synchronisation primitives and shared arrays (include/shmq/sync.h), across
 * real processes: Lock, RLock, Semaphore (bounded, SHMQ_UNDO), Condition,
 * Event, Barrier, Array. Every call and error of the header; mutual
 * exclusion with non-atomic counters; timeouts (-EAGAIN for 0, -ETIMEDOUT no
 * earlier than asked); and the point of the layer: a process that dies
 * (SIGKILL, exec) never deadlocks the others (-EOWNERDEAD, SHMQ_UNDO, broken
 * barriers, conditions). Only the parent asserts; children report through
 * shared memory, pipes and exit status. */
#include <criterion/criterion.h>

#include "common.h"

#include <sys/time.h>

#define LIVE (2 * T_SEC * T_SCALE)      /* "returns, not a hang" bound */
#define DEATH (500 * T_MS * T_SCALE)     /* a death is acted on within this */
#define LONG_WAIT (10 * T_SEC * T_SCALE) /* a wait that must be cut short */
#define MAXK 80
#define BAR_CYCLES 1000
#define PC_ITEMS 10000 /* per producer */

struct sh;
struct karg {
	struct sh *s;
	int idx;
};

/* State shared by the parent and its children (t_shared: anonymous shared
 * memory, outside the heap under test). Handles are process-local pointers,
 * inherited by fork(). */
struct sh {
	shmq_heap *h;
	shmq_lock *l;
	shmq_sem *s;
	shmq_cond *c, *c2;
	shmq_event *e;
	shmq_barrier *b;
	shmq_array *a;
	int pfd[2];
	int recursive; /* per test: take the lock twice */
	int do_exec;   /* 1: exec /bin/sleep, 2: exec /bin/true */
	int64_t wait_ns[MAXK];
	_Atomic uint32_t ready, go, done, stop, entered, notified, pre;
	_Atomic uint32_t errors;
	_Atomic int32_t last_err, err_where;
	_Atomic int32_t ret[MAXK], ret2[MAXK];
	_Atomic int64_t t_ret[MAXK];
	_Atomic int32_t order[MAXK];
	_Atomic uint64_t progress, violations, ownerdead;
	_Atomic int32_t inside;
	struct karg args[MAXK];
	/* Barrier */
	_Atomic uint32_t actions;
	_Atomic uint32_t seen[BAR_CYCLES];
	_Atomic int32_t action_pid[BAR_CYCLES], last_pid[BAR_CYCLES];
	/* Producer/consumer */
	_Atomic uint64_t bits[(2 * PC_ITEMS + 63) / 64];
	_Atomic uint64_t dups, order_err, lost_wakeups, taken;
};

static struct sh *sh_new(void)
{
	struct sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	int r = shmq_heap_create(NULL, NULL, &s->h);
	cr_assert_eq(r, 0, "heap_create: %d", r);
	s->pfd[0] = s->pfd[1] = -1;
	return s;
}

static pid_t spawn(struct sh *s, int idx, int (*fn)(void *))
{
	s->args[idx] = (struct karg){ .s = s, .idx = idx };
	pid_t pid = t_fork(fn, &s->args[idx]);
	cr_assert_gt(pid, 0, "fork");
	return pid;
}

/* A child records an unexpected result: the parent asserts errors == 0. */
static void fail(struct sh *s, int where, int err)
{
	s->err_where = where;
	s->last_err = err;
	atomic_fetch_add(&s->errors, 1);
}

static void reap_ok(pid_t pid, const char *who)
{
	t_reap_ok(pid, who, 10 * LIVE);
}

static void reap_killed(pid_t pid)
{
	t_reap_killed(pid, LIVE);
}

/* Wait until a killed child is a zombie (dead, not reaped). */
static void await_zombie(pid_t pid)
{
	int64_t deadline = t_now() + LIVE;
	while (t_proc_state(pid) != 'Z' && t_now() < deadline)
		t_nap(200 * 1000);
	cr_assert_eq(t_proc_state(pid), 'Z', "child not dead");
}

/* One byte from a pipe, within timeout: the byte, -ETIMEDOUT, or -EPIPE at
 * EOF. */
static int read_byte(int fd, int64_t timeout_ns)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t deadline = t_now() + timeout_ns;
	for (;;) {
		int64_t left = deadline - t_now();
		if (left < 0)
			return -ETIMEDOUT;
		int r = poll(&p, 1, (int)(left / T_MS) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -ETIMEDOUT;
		unsigned char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		return n == 1 ? c : n == 0 ? -EPIPE : -errno;
	}
}

/* Poll f(arg) until it returns want, within timeout. */
static int await_value(int (*f)(void *), void *arg, int want, int64_t timeout)
{
	int64_t deadline = t_now() + timeout;
	int v;
	while ((v = f(arg)) != want) {
		if (t_now() >= deadline)
			return v;
		t_nap(200 * 1000);
	}
	return v;
}

static shmq_lock *mklock(struct sh *s, int flags)
{
	int r = shmq_lock_create(s->h, NULL, flags, &s->l);
	cr_assert_eq(r, 0, "lock_create(flags %d): %d", flags, r);
	return s->l;
}

static shmq_array *mkarray(struct sh *s, size_t size, int flags)
{
	int r = shmq_array_create(s->h, NULL, size, flags, &s->a);
	cr_assert_eq(r, 0, "array_create(%zu, %d): %d", size, flags, r);
	return s->a;
}

/* A thread of the parent running one call on a lock. */
struct tcall {
	shmq_lock *l;
	int op; /* 0 acquire(0), 1 release, 2 is_mine */
	int ret;
};

static void *tcall_main(void *arg)
{
	struct tcall *t = arg;
	t->ret = t->op == 0 ? shmq_lock_acquire(t->l, 0)
		 : t->op == 1 ? shmq_lock_release(t->l)
			      : shmq_lock_is_mine(t->l);
	return NULL;
}

static int in_thread(shmq_lock *l, int op)
{
	struct tcall t = { .l = l, .op = op };
	pthread_t tid;
	cr_assert_eq(pthread_create(&tid, NULL, tcall_main, &t), 0);
	pthread_join(tid, NULL);
	return t.ret;
}

/* Time a blocking call that must time out: returns its result and checks
 * that it took at least timeout (and returned, at most LIVE later). */
#define TIMED(call, timeout, elapsed)                                                     \
	({                                                                                \
		int64_t t0_ = t_now();                                                    \
		int r_ = (call);                                                          \
		*(elapsed) = t_now() - t0_;                                               \
		r_;                                                                       \
	})

#define ASSERT_TIMES_OUT(call, timeout)                                                   \
	do {                                                                              \
		int64_t el_;                                                              \
		int r_ = TIMED(call, timeout, &el_);                                      \
		cr_assert_eq(r_, -ETIMEDOUT, #call ": %d", r_);                           \
		cr_assert_geq(el_, (timeout), #call " returned after %lld us, before its " \
			      "timeout", (long long)(el_ / 1000));                       \
		cr_assert_lt(el_, (timeout) + LIVE, #call " took %lld ms",               \
			     (long long)(el_ / T_MS));                                   \
	} while (0)

/* ==================================================================== Lock == */

Test(lock, acquire_release_held_is_mine)
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_held(l), 1);
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	cr_assert_eq(shmq_lock_acquire(l, 0), -EAGAIN, "a Lock is not recursive");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM, "release of an unheld Lock");
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, -1), 0, "acquire(-1) of a free lock");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_close(l), 0);
	cr_assert_eq(shmq_heap_close(s->h), 0);
}

Test(lock, bad_arguments_einval)
{
	struct sh *s = sh_new();
	shmq_lock *l = NULL;
	cr_assert_eq(shmq_lock_create(s->h, NULL, 2, &l), -EINVAL, "unknown flag 2");
	cr_assert_eq(shmq_lock_create(s->h, NULL, 0x100, &l), -EINVAL, "unknown flag 0x100");
	cr_assert_eq(shmq_lock_create(s->h, NULL, -1, &l), -EINVAL, "flags -1");
	cr_assert_eq(shmq_lock_acquire(NULL, 0), -EINVAL);
	cr_assert_eq(shmq_lock_release(NULL), -EINVAL);
	cr_assert_eq(shmq_lock_held(NULL), -EINVAL);
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0);
	cr_assert_eq(st.objects, 0, "a failed create left an object");
	shmq_heap_close(s->h);
}

Test(lock, timeouts_own_thread_eagain_and_etimedout, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_lock_acquire(l, 50 * T_MS), 50 * T_MS);
	ASSERT_TIMES_OUT(shmq_lock_acquire(l, 1 * T_MS), 1 * T_MS);
	cr_assert_eq(shmq_lock_is_mine(l), 1, "a timed-out acquire changed the owner");
	cr_assert_eq(shmq_lock_release(l), 0);
	/* The same from another thread of this process. */
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(in_thread(l, 0), -EAGAIN, "another thread took a held Lock");
	cr_assert_eq(in_thread(l, 2), 0, "is_mine in a thread that does not hold it");
	cr_assert_eq(shmq_lock_release(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

static int lock_holder_until_go(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	int r = shmq_lock_acquire(s->l, LIVE);
	if (r != 0)
		fail(s, 1, r);
	t_post(&s->ready);
	if (t_await(&s->go, 1, 30 * T_SEC) < 0)
		return 2;
	/* Whatever the parent did meanwhile, report what release says now. */
	s->ret[k->idx] = shmq_lock_release(s->l);
	return r == 0 ? 0 : 1;
}

Test(lock, timeouts_other_process_eagain_and_etimedout, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	pid_t pid = spawn(s, 0, lock_holder_until_go);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(shmq_lock_held(l), 1);
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_lock_acquire(l, 50 * T_MS), 50 * T_MS);
	cr_assert_eq(shmq_lock_held(l), 1);
	t_set(&s->go, 1);
	reap_ok(pid, "holder");
	cr_assert_eq(s->ret[0], 0, "the holder's release: %d", s->ret[0]);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

static int lock_blocked_acquirer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	int r = shmq_lock_acquire(s->l, LONG_WAIT);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	t_post(&s->done);
	if (r == 0)
		s->ret2[k->idx] = shmq_lock_release(s->l);
	return 0;
}

Test(lock, blocked_acquire_woken_by_release_in_another_process, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	pid_t pid = spawn(s, 0, lock_blocked_acquirer);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(pid, LIVE), 0, "the acquirer does not sleep");
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT,
		     "acquire of a held lock returned %d", s->ret[0]);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0, "release did not wake the waiter");
	cr_assert_eq(s->ret[0], 0, "woken acquire: %d", s->ret[0]);
	cr_assert_lt(s->t_ret[0] - t0, LIVE);
	reap_ok(pid, "acquirer");
	cr_assert_eq(s->ret2[0], 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

/* A Lock may be released by a process that did not take it (as in Python). */
Test(lock, released_by_another_process, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	pid_t pid = spawn(s, 0, lock_holder_until_go);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(shmq_lock_release(l), 0, "release of a Lock held by another process");
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "not -EOWNERDEAD: the holder lives");
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	cr_assert_eq(shmq_lock_release(l), 0);
	t_set(&s->go, 1);
	reap_ok(pid, "holder");
	cr_assert_eq(s->ret[0], -EPERM, "the former holder released a free lock: %d", s->ret[0]);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

static int lock_releaser(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	s->ret[k->idx] = shmq_lock_release(s->l);
	s->ret2[k->idx] = shmq_lock_release(s->l);
	return 0;
}

Test(lock, held_by_parent_released_by_child, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	pid_t pid = spawn(s, 0, lock_releaser);
	reap_ok(pid, "releaser");
	cr_assert_eq(s->ret[0], 0, "child's release of the parent's Lock: %d", s->ret[0]);
	cr_assert_eq(s->ret2[0], -EPERM, "second release: %d", s->ret2[0]);
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(lock, released_by_another_thread, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(in_thread(l, 1), 0, "release from another thread");
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

/* ---------------------------------------------------- mutual exclusion -- */

#define MX_PROCS 4
#define MX_EACH 20000

static int mx_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	volatile uint64_t *v = shmq_array_data(s->a);
	t_post(&s->ready);
	if (t_await(&s->go, 1, 30 * T_SEC) < 0)
		return 1;
	for (int i = 0; i < MX_EACH; i++) {
		int r = shmq_lock_acquire(s->l, LONG_WAIT);
		if (r != 0) {
			fail(s, 1, r);
			return 2;
		}
		if (s->recursive && (r = shmq_lock_acquire(s->l, 0)) != 0) {
			fail(s, 2, r);
			return 3;
		}
		uint64_t x = *v; /* non-atomic read-modify-write */
		if ((i & 63) == 0)
			sched_yield(); /* now and then, give up the CPU inside */
		*v = x + 1;
		if (s->recursive && (r = shmq_lock_release(s->l)) != 0) {
			fail(s, 3, r);
			return 4;
		}
		if ((r = shmq_lock_release(s->l)) != 0) {
			fail(s, 4, r);
			return 5;
		}
	}
	return 0;
}

static void mutual_exclusion(int flags)
{
	struct sh *s = sh_new();
	mklock(s, flags);
	s->recursive = flags == SHMQ_RECURSIVE;
	mkarray(s, sizeof(uint64_t), SHMQ_NOLOCK);
	pid_t pids[MX_PROCS];
	for (int i = 0; i < MX_PROCS; i++)
		pids[i] = spawn(s, i, mx_worker);
	cr_assert_eq(t_await(&s->ready, MX_PROCS, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < MX_PROCS; i++)
		reap_ok(pids[i], "worker");
	T_ASSERT_NO_ERRORS(s);
	uint64_t v = *(volatile uint64_t *)shmq_array_data(s->a);
	cr_assert_eq(v, (uint64_t)MX_PROCS * MX_EACH, "counter %llu: %lld increments lost",
		     (unsigned long long)v, (long long)MX_PROCS * MX_EACH - (long long)v);
	cr_assert_eq(shmq_lock_held(s->l), 0);
	shmq_array_close(s->a);
	shmq_lock_close(s->l);
	shmq_heap_close(s->h);
}

Test(lock, mutual_exclusion_4_processes_20000_increments, .timeout = T_TIMEOUT(60))
{
	mutual_exclusion(0);
}

Test(rlock, mutual_exclusion_4_processes_20000_increments_taken_twice, .timeout = T_TIMEOUT(60))
{
	mutual_exclusion(SHMQ_RECURSIVE);
}

/* The seeds' program: 70 processes each do `with lock: count -= 1` on a
 * counter that starts at 100. */
#define SEEDS_PROCS 70

static int seeds_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	volatile int64_t *count = shmq_array_data(s->a);
	t_post(&s->ready);
	if (t_await(&s->go, 1, 60 * T_SEC) < 0)
		return 1;
	int r = shmq_lock_acquire(s->l, LONG_WAIT);
	if (r != 0) {
		fail(s, 1, r);
		return 2;
	}
	int64_t v = *count;
	sched_yield();
	v -= 1;
	*count = v;
	if ((r = shmq_lock_release(s->l)) != 0) {
		fail(s, 2, r);
		return 3;
	}
	return 0;
}

static void seeds(bool array_lock)
{
	struct sh *s = sh_new();
	for (int round = 0; round < 3; round++) {
		mkarray(s, sizeof(int64_t), array_lock ? 0 : SHMQ_NOLOCK);
		if (array_lock)
			s->l = shmq_array_lock(s->a);
		else
			mklock(s, 0);
		cr_assert_not_null(s->l);
		*(volatile int64_t *)shmq_array_data(s->a) = 100;
		s->ready = 0;
		s->go = 0;
		pid_t pids[SEEDS_PROCS];
		for (int i = 0; i < SEEDS_PROCS; i++)
			pids[i] = spawn(s, i, seeds_worker);
		cr_assert_eq(t_await(&s->ready, SEEDS_PROCS, 10 * LIVE), 0);
		t_set(&s->go, 1);
		for (int i = 0; i < SEEDS_PROCS; i++)
			reap_ok(pids[i], "seeds worker");
		T_ASSERT_NO_ERRORS(s);
		int64_t v = *(volatile int64_t *)shmq_array_data(s->a);
		cr_assert_eq(v, 30, "round %d: count %lld, want 30", round, (long long)v);
		if (!array_lock)
			shmq_lock_close(s->l);
		shmq_array_close(s->a);
	}
	shmq_heap_close(s->h);
}

Test(lock, seeds_70_processes_decrement_100_to_30_three_times, .timeout = T_TIMEOUT(120))
{
	seeds(false);
}

Test(array, seeds_70_processes_under_the_arrays_lock_three_times, .timeout = T_TIMEOUT(120))
{
	seeds(true);
}

/* ------------------------------------------------ robustness: SIGKILL -- */

/* The holder: takes the lock (twice for an RLock), says so through the
 * pipe, then waits to be killed, or exec()s. */
static int robust_holder(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	int r = shmq_lock_acquire(s->l, LIVE);
	if (r == 0 && s->recursive)
		r = shmq_lock_acquire(s->l, 0);
	unsigned char c = r == 0 ? 'H' : 'E';
	if (write(s->pfd[1], &c, 1) != 1)
		return 1;
	if (r != 0)
		return 2;
	if (s->do_exec == 1)
		execl("/bin/sleep", "sleep", "60", (char *)NULL);
	if (s->do_exec == 2)
		execl("/bin/true", "true", (char *)NULL);
	for (;;)
		pause();
}

/* Start a holder; returns once it holds the lock. The pipe is close-on-exec,
 * so that its EOF also tells the holder exec'd. */
static pid_t start_holder(struct sh *s, int idx)
{
	if (s->pfd[0] < 0)
		cr_assert_eq(pipe2(s->pfd, O_CLOEXEC), 0);
	pid_t pid = spawn(s, idx, robust_holder);
	int c = read_byte(s->pfd[0], LIVE);
	cr_assert_eq(c, 'H', "the holder did not take the lock (%d)", c);
	return pid;
}

enum death { KILL_REAPED, KILL_ZOMBIE, EXEC_ALIVE, EXEC_EXITED };

static void holder_dies(int flags, enum death how)
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, flags);
	s->recursive = flags == SHMQ_RECURSIVE;
	s->do_exec = how == EXEC_ALIVE ? 1 : how == EXEC_EXITED ? 2 : 0;
	pid_t pid = start_holder(s, 0);
	cr_assert_eq(shmq_lock_held(l), 1);
	cr_assert_eq(shmq_lock_acquire(l, 0), -EAGAIN, "the holder lives: not yet dead");
	switch (how) {
	case KILL_REAPED:
		kill(pid, SIGKILL);
		reap_killed(pid);
		break;
	case KILL_ZOMBIE:
		kill(pid, SIGKILL);
		await_zombie(pid);
		break;
	case EXEC_ALIVE:
	case EXEC_EXITED:
		close(s->pfd[1]);
		s->pfd[1] = -1;
		cr_assert_eq(read_byte(s->pfd[0], LIVE), -EPIPE, "the holder did not exec");
		if (how == EXEC_EXITED)
			await_zombie(pid);
		else
			cr_assert_neq(t_proc_state(pid), 'Z', "sleep died");
		break;
	}
	int64_t t0 = t_now();
	int r = shmq_lock_acquire(l, LONG_WAIT);
	int64_t el = t_now() - t0;
	cr_assert_eq(r, -EOWNERDEAD, "acquire after the holder's death: %d", r);
	cr_assert_lt(el, DEATH, "the death was acted on after %lld ms", (long long)(el / T_MS));
	cr_assert_eq(shmq_lock_held(l), 1, "-EOWNERDEAD but the lock is not held");
	cr_assert_eq(shmq_lock_is_mine(l), 1, "-EOWNERDEAD but the lock is not ours");
	if (s->recursive)
		cr_assert_eq(shmq_lock_acquire(l, 0), 0, "our RLock again");
	cr_assert_eq(shmq_lock_release(l), 0);
	if (s->recursive) {
		cr_assert_eq(shmq_lock_is_mine(l), 1);
		cr_assert_eq(shmq_lock_release(l), 0);
	}
	cr_assert_eq(shmq_lock_release(l), -EPERM, "the dead holder's levels were kept");
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "the next acquire after the repair");
	cr_assert_eq(shmq_lock_release(l), 0);
	t_kill_reap(pid);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(robust, lock_holder_sigkilled_reaped_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(0, KILL_REAPED);
}

Test(robust, lock_holder_sigkilled_zombie_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(0, KILL_ZOMBIE);
}

Test(robust, lock_holder_execs_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(0, EXEC_ALIVE);
}

Test(robust, lock_holder_execs_bin_true_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(0, EXEC_EXITED);
}

Test(robust, rlock_holder_sigkilled_reaped_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(SHMQ_RECURSIVE, KILL_REAPED);
}

Test(robust, rlock_holder_sigkilled_zombie_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(SHMQ_RECURSIVE, KILL_ZOMBIE);
}

Test(robust, rlock_holder_execs_eownerdead, .timeout = T_TIMEOUT(30))
{
	holder_dies(SHMQ_RECURSIVE, EXEC_ALIVE);
}

/* Waiters already blocked when the holder dies: exactly one gets
 * -EOWNERDEAD, within DEATH of the death; the other then gets 0. */
static int robust_waiter(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	int r = shmq_lock_acquire(s->l, LONG_WAIT);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	if (r == 0 || r == -EOWNERDEAD) {
		if (shmq_lock_is_mine(s->l) != 1)
			fail(s, 1, -EBADE);
		t_nap(10 * T_MS);
		s->ret2[k->idx] = shmq_lock_release(s->l);
	}
	t_post(&s->done);
	return 0;
}

static void blocked_waiters_see_death(int flags)
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, flags);
	s->recursive = flags == SHMQ_RECURSIVE;
	pid_t holder = start_holder(s, 0);
	pid_t w[2];
	for (int i = 0; i < 2; i++)
		w[i] = spawn(s, 1 + i, robust_waiter);
	cr_assert_eq(t_await(&s->ready, 2, LIVE), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(t_wait_sleeping(w[i], LIVE), 0, "waiter %d does not sleep", i);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT, "a waiter got a held lock");
	int64_t t0 = t_now();
	kill(holder, SIGKILL);
	cr_assert_eq(t_await(&s->done, 2, 10 * LIVE), 0, "waiters still blocked after the death");
	for (int i = 0; i < 2; i++)
		reap_ok(w[i], "waiter");
	reap_killed(holder);
	T_ASSERT_NO_ERRORS(s);
	int a = s->ret[1], b = s->ret[2];
	cr_assert((a == -EOWNERDEAD && b == 0) || (a == 0 && b == -EOWNERDEAD),
		  "waiters got %d and %d: want one -EOWNERDEAD and one 0", a, b);
	int first = a == -EOWNERDEAD ? 1 : 2;
	cr_assert_lt(s->t_ret[first] - t0, DEATH, "-EOWNERDEAD %lld ms after the death",
		     (long long)((s->t_ret[first] - t0) / T_MS));
	cr_assert_eq(s->ret2[1], 0);
	cr_assert_eq(s->ret2[2], 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(robust, lock_blocked_waiters_one_eownerdead_one_zero, .timeout = T_TIMEOUT(30))
{
	blocked_waiters_see_death(0);
}

Test(robust, rlock_blocked_waiters_one_eownerdead_one_zero, .timeout = T_TIMEOUT(30))
{
	blocked_waiters_see_death(SHMQ_RECURSIVE);
}

/* Kill at random points: 4 workers loop acquire / increment two counters /
 * release while the parent SIGKILLs one at random moments, 50 times,
 * replacing each. The counters are plain memory: a holder killed between the
 * two increments leaves them apart, and the next holder (told -EOWNERDEAD)
 * repairs. An acquire that returns 0 must find them equal and nobody
 * inside. */
#define RK_WORKERS 4
#define RK_KILLS 50

static int rk_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	volatile uint64_t *d = shmq_array_data(s->a); /* [0] counter, [1] completions */
	int32_t me = getpid();
	t_post(&s->ready);
	while (!atomic_load(&s->stop)) {
		int r = shmq_lock_acquire(s->l, LONG_WAIT);
		if (r == -EOWNERDEAD) {
			atomic_fetch_add(&s->ownerdead, 1);
			d[0] = d[1]; /* repair: undo a half-done increment */
			atomic_store(&s->inside, 0);
		} else if (r == 0) {
			if (atomic_load(&s->inside) != 0 || d[0] != d[1])
				atomic_fetch_add(&s->violations, 1);
		} else {
			fail(s, 1, r);
			return 1;
		}
		if (s->recursive && (r = shmq_lock_acquire(s->l, 0)) != 0) {
			fail(s, 2, r);
			return 2;
		}
		atomic_store(&s->inside, me);
		uint64_t v = d[0];
		for (volatile int spin = 0; spin < 500; spin++)
			;
		d[0] = v + 1;
		for (volatile int spin = 0; spin < 500; spin++)
			;
		d[1] = d[1] + 1;
		atomic_store(&s->inside, 0);
		if (s->recursive && (r = shmq_lock_release(s->l)) != 0) {
			fail(s, 3, r);
			return 3;
		}
		if ((r = shmq_lock_release(s->l)) != 0) {
			fail(s, 4, r);
			return 4;
		}
		atomic_fetch_add(&s->progress, 1);
	}
	return 0;
}

static void kill_at_random_points(int flags)
{
	struct sh *s = sh_new();
	mklock(s, flags);
	s->recursive = flags == SHMQ_RECURSIVE;
	mkarray(s, 2 * sizeof(uint64_t), SHMQ_NOLOCK);
	pid_t pids[RK_WORKERS];
	int next = 0;
	for (int i = 0; i < RK_WORKERS; i++)
		pids[i] = spawn(s, next++, rk_worker);
	cr_assert_eq(t_await(&s->ready, RK_WORKERS, LIVE), 0);
	uint64_t rng = 0x12345678;
	for (int kill_no = 0; kill_no < RK_KILLS; kill_no++) {
		rng = t_mix(rng);
		t_nap((int64_t)(rng % (3 * T_MS)) + 100 * 1000);
		int victim = (int)((rng >> 32) % RK_WORKERS);
		kill(pids[victim], SIGKILL);
		reap_killed(pids[victim]);
		T_ASSERT_NO_ERRORS(s);
		pids[victim] = spawn(s, next++ % MAXK, rk_worker);
		/* Progress after each death: the lock is not stuck. */
		uint64_t p0 = atomic_load(&s->progress);
		int64_t deadline = t_now() + LIVE;
		while (atomic_load(&s->progress) < p0 + 10 && t_now() < deadline && !s->errors)
			t_nap(100 * 1000);
		T_ASSERT_NO_ERRORS(s);
		cr_assert_geq(atomic_load(&s->progress), p0 + 10,
			      "no progress after kill %d: the lock is stuck", kill_no);
	}
	uint64_t p0 = atomic_load(&s->progress);
	int64_t deadline = t_now() + 10 * LIVE;
	while (atomic_load(&s->progress) < p0 + 1000 && t_now() < deadline && !s->errors)
		t_nap(T_MS);
	t_set(&s->stop, 1);
	for (int i = 0; i < RK_WORKERS; i++)
		reap_ok(pids[i], "worker");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_geq(atomic_load(&s->progress), p0 + 1000, "the survivors stalled");
	int r = shmq_lock_acquire(s->l, LIVE);
	cr_assert_eq(r, 0, "final acquire (nobody died holding it): %d", r);
	volatile uint64_t *d = shmq_array_data(s->a);
	cr_log_info("kill_at_random_points: %llu increments, %llu -EOWNERDEAD repairs",
		    (unsigned long long)d[1], (unsigned long long)s->ownerdead);
	cr_assert_eq(s->violations, 0,
		     "%llu acquires returned 0 with the data half-updated or someone inside",
		     (unsigned long long)s->violations);
	cr_assert_eq(d[0], d[1], "counter %llu, completions %llu", (unsigned long long)d[0],
		     (unsigned long long)d[1]);
	cr_assert_eq(shmq_lock_release(s->l), 0);
	shmq_array_close(s->a);
	shmq_lock_close(s->l);
	shmq_heap_close(s->h);
}

Test(robust, lock_kill_at_random_points_50_times, .timeout = T_TIMEOUT(120))
{
	kill_at_random_points(0);
}

Test(robust, rlock_kill_at_random_points_50_times, .timeout = T_TIMEOUT(120))
{
	kill_at_random_points(SHMQ_RECURSIVE);
}

/* A fork()ed child inherits the heap handle, not the parent's ownership:
 * the lock its parent holds is not its own, and the child's exit is not the
 * holder's death. */
static int fork_probe(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	s->ret[0] = shmq_lock_is_mine(s->l);
	s->ret[1] = shmq_lock_acquire(s->l, 0);
	s->ret[2] = s->recursive ? shmq_lock_release(s->l) : 0;
	return 0; /* exits holding handles inherited from the holder */
}

static void held_across_fork(int flags)
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, flags);
	s->recursive = flags == SHMQ_RECURSIVE;
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	pid_t pid = spawn(s, 0, fork_probe);
	reap_ok(pid, "child");
	cr_assert_eq(s->ret[0], 0, "the child thinks it holds its parent's lock");
	cr_assert_eq(s->ret[1], -EAGAIN, "the child's acquire(0) of its parent's lock: %d",
		     s->ret[1]);
	if (s->recursive)
		cr_assert_eq(s->ret[2], -EPERM, "the child released its parent's RLock: %d",
			     s->ret[2]);
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0); /* the child's exit is noticed */
	cr_assert_eq(shmq_lock_is_mine(l), 1, "the child's exit took the parent's lock");
	cr_assert_eq(shmq_lock_held(l), 1);
	/* A second child: the lock is still held by a live process. */
	memset((void *)s->ret, 0, sizeof(s->ret));
	pid = spawn(s, 0, fork_probe);
	reap_ok(pid, "child");
	cr_assert_eq(s->ret[1], -EAGAIN, "after a child exited, the lock looked dead: %d",
		     s->ret[1]);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "not -EOWNERDEAD: nobody died holding it");
	cr_assert_eq(shmq_lock_release(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(lock, held_across_fork_is_not_the_childs, .timeout = T_TIMEOUT(30))
{
	held_across_fork(0);
}

Test(rlock, held_across_fork_is_not_the_childs, .timeout = T_TIMEOUT(30))
{
	held_across_fork(SHMQ_RECURSIVE);
}

/* =================================================================== RLock == */

Test(rlock, counts_levels_release_past_zero_eperm, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, SHMQ_RECURSIVE);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmq_lock_acquire(l, 0), 0, "level %d", i + 1);
	cr_assert_eq(shmq_lock_held(l), 1);
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(shmq_lock_release(l), 0);
		cr_assert_eq(shmq_lock_held(l), 1, "released with levels left");
		cr_assert_eq(shmq_lock_is_mine(l), 1);
		cr_assert_eq(in_thread(l, 0), -EAGAIN, "another thread took an RLock with levels");
	}
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_held(l), 0);
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	cr_assert_eq(in_thread(l, 0), 0, "another thread, once it is free");
	/* That thread is gone: the lock is the dead thread's, not ours. */
	cr_assert_eq(shmq_lock_is_mine(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM, "released an RLock another thread holds");
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(rlock, timeouts_eagain_and_etimedout, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, SHMQ_RECURSIVE);
	s->recursive = 1;
	pid_t pid = spawn(s, 0, lock_holder_until_go);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(shmq_lock_acquire(l, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_lock_acquire(l, 50 * T_MS), 50 * T_MS);
	t_set(&s->go, 1);
	reap_ok(pid, "holder");
	cr_assert_eq(s->ret[0], 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(rlock, release_by_another_thread_eperm, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, SHMQ_RECURSIVE);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(in_thread(l, 1), -EPERM, "another thread released our RLock");
	cr_assert_eq(in_thread(l, 2), 0, "is_mine in another thread");
	cr_assert_eq(shmq_lock_is_mine(l), 1, "the failed release changed the owner");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_held(l), 0);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

Test(rlock, release_by_another_process_eperm, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, SHMQ_RECURSIVE);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	pid_t pid = spawn(s, 0, lock_releaser);
	reap_ok(pid, "releaser");
	cr_assert_eq(s->ret[0], -EPERM, "another process released our RLock: %d", s->ret[0]);
	cr_assert_eq(s->ret2[0], -EPERM);
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

static int rlock_prober(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	/* Stage 1: the parent holds 2 levels; stage 2: 1 level; stage 3: none. */
	for (uint32_t stage = 1; stage <= 3; stage++) {
		if (t_await(&s->go, stage, 30 * T_SEC) < 0)
			return 1;
		int r = shmq_lock_acquire(s->l, stage < 3 ? 0 : LIVE);
		s->order[stage] = r;
		if (r == 0)
			shmq_lock_release(s->l);
		t_post(&s->done);
	}
	return 0;
}

Test(rlock, other_process_waits_until_every_level_is_released, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, SHMQ_RECURSIVE);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	pid_t pid = spawn(s, 0, rlock_prober);
	t_set(&s->go, 1);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	t_set(&s->go, 2);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	t_set(&s->go, 3);
	cr_assert_eq(t_await(&s->done, 3, LIVE), 0);
	reap_ok(pid, "prober");
	cr_assert_eq(s->order[1], -EAGAIN, "two levels held: %d", s->order[1]);
	cr_assert_eq(s->order[2], -EAGAIN, "one level held: %d", s->order[2]);
	cr_assert_eq(s->order[3], 0, "all released: %d", s->order[3]);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

/* =============================================================== Semaphore == */

static shmq_sem *mksem(struct sh *s, uint32_t value, uint32_t max, int flags)
{
	int r = shmq_sem_create(s->h, NULL, value, max, flags, &s->s);
	cr_assert_eq(r, 0, "sem_create(%u, %u, %d): %d", value, max, flags, r);
	return s->s;
}

Test(sem, value_acquire_release_timeouts, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 3, 0, 0);
	cr_assert_eq(shmq_sem_value(m), 3);
	cr_assert_eq(shmq_sem_max(m), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmq_sem_acquire(m, 0), 0);
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_acquire(m, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_sem_acquire(m, 50 * T_MS), 50 * T_MS);
	cr_assert_eq(shmq_sem_value(m), 0, "a timed-out acquire changed the value");
	cr_assert_eq(shmq_sem_release(m, 2), 0);
	cr_assert_eq(shmq_sem_value(m), 2);
	cr_assert_eq(shmq_sem_release(m, 0), -EINVAL, "release(0)");
	cr_assert_eq(shmq_sem_value(m), 2);
	cr_assert_eq(shmq_sem_acquire(m, -1), 0);
	cr_assert_eq(shmq_sem_value(m), 1);
	/* No owner: unbounded release by anyone, any number. */
	cr_assert_eq(shmq_sem_release(m, 1000), 0);
	cr_assert_eq(shmq_sem_value(m), 1001);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, create_bad_arguments_einval)
{
	struct sh *s = sh_new();
	shmq_sem *m = NULL;
	cr_assert_eq(shmq_sem_create(s->h, NULL, 3, 2, 0, &m), -EINVAL, "value > max > 0");
	cr_assert_eq(shmq_sem_create(s->h, NULL, SHMQ_SEM_VALUE_MAX + 1u, 0, 0, &m), -EINVAL,
		     "value past SHMQ_SEM_VALUE_MAX");
	cr_assert_eq(shmq_sem_create(s->h, NULL, 0, SHMQ_SEM_VALUE_MAX + 1u, 0, &m), -EINVAL,
		     "max past SHMQ_SEM_VALUE_MAX");
	cr_assert_eq(shmq_sem_create(s->h, NULL, 1, 0, 2, &m), -EINVAL, "unknown flag");
	cr_assert_eq(shmq_sem_create(s->h, NULL, 1, 0, -1, &m), -EINVAL, "flags -1");
	cr_assert_eq(shmq_sem_acquire(NULL, 0), -EINVAL);
	cr_assert_eq(shmq_sem_release(NULL, 1), -EINVAL);
	cr_assert_eq(shmq_sem_value(NULL), -EINVAL);
	cr_assert_eq(shmq_sem_max(NULL), -EINVAL);
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0);
	cr_assert_eq(st.objects, 0, "a failed create left an object");
	/* The limits themselves are fine. */
	cr_assert_eq(shmq_sem_create(s->h, NULL, SHMQ_SEM_VALUE_MAX, 0, 0, &m), 0);
	cr_assert_eq(shmq_sem_value(m), (int)SHMQ_SEM_VALUE_MAX);
	shmq_sem_close(m);
	cr_assert_eq(shmq_sem_create(s->h, NULL, 0, SHMQ_SEM_VALUE_MAX, SHMQ_UNDO, &m), 0);
	cr_assert_eq(shmq_sem_max(m), (int)SHMQ_SEM_VALUE_MAX);
	shmq_sem_close(m);
	cr_assert_eq(shmq_sem_create(s->h, NULL, 0, 5, 0, &m), 0, "value 0 < max");
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_max(m), 5);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, release_past_value_max_eoverflow_changes_nothing)
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, SHMQ_SEM_VALUE_MAX - 1, 0, 0);
	cr_assert_eq(shmq_sem_release(m, 2), -EOVERFLOW);
	cr_assert_eq(shmq_sem_value(m), (int)SHMQ_SEM_VALUE_MAX - 1);
	cr_assert_eq(shmq_sem_release(m, UINT32_MAX), -EOVERFLOW);
	cr_assert_eq(shmq_sem_value(m), (int)SHMQ_SEM_VALUE_MAX - 1);
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	cr_assert_eq(shmq_sem_value(m), (int)SHMQ_SEM_VALUE_MAX);
	cr_assert_eq(shmq_sem_release(m, 1), -EOVERFLOW);
	cr_assert_eq(shmq_sem_value(m), (int)SHMQ_SEM_VALUE_MAX);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

static void bounded(int flags)
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 2, 2, flags);
	cr_assert_eq(shmq_sem_max(m), 2);
	cr_assert_eq(shmq_sem_release(m, 1), -EOVERFLOW, "release of a full BoundedSemaphore");
	cr_assert_eq(shmq_sem_value(m), 2);
	cr_assert_eq(shmq_sem_acquire(m, 0), 0);
	cr_assert_eq(shmq_sem_release(m, 2), -EOVERFLOW, "release(2) with one unit out");
	cr_assert_eq(shmq_sem_value(m), 1, "a failed release changed the value");
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	cr_assert_eq(shmq_sem_value(m), 2);
	cr_assert_eq(shmq_sem_acquire(m, 0), 0);
	cr_assert_eq(shmq_sem_acquire(m, 0), 0);
	cr_assert_eq(shmq_sem_acquire(m, 0), -EAGAIN);
	cr_assert_eq(shmq_sem_release(m, 3), -EOVERFLOW);
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_release(m, 2), 0);
	cr_assert_eq(shmq_sem_value(m), 2);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, bounded_release_past_max_eoverflow_changes_nothing)
{
	bounded(0);
}

Test(sem, bounded_undo_release_past_max_eoverflow_changes_nothing)
{
	bounded(SHMQ_UNDO);
}

static int sem_blocked_acquirer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	int r = shmq_sem_acquire(s->s, s->wait_ns[k->idx] ? s->wait_ns[k->idx] : LONG_WAIT);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	t_post(&s->done);
	return 0;
}

Test(sem, release_n_wakes_n_blocked_processes, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 0, 0, 0);
	pid_t pids[3];
	for (int i = 0; i < 3; i++)
		pids[i] = spawn(s, i, sem_blocked_acquirer);
	cr_assert_eq(t_await(&s->ready, 3, LIVE), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(t_wait_sleeping(pids[i], LIVE), 0);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT, "acquire of an empty sem");
	cr_assert_eq(shmq_sem_release(m, 2), 0);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "release(2) did not wake two waiters");
	cr_assert_eq(t_await(&s->done, 3, 200 * T_MS), -ETIMEDOUT, "release(2) woke three");
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	cr_assert_eq(t_await(&s->done, 3, LIVE), 0);
	for (int i = 0; i < 3; i++) {
		reap_ok(pids[i], "acquirer");
		cr_assert_eq(s->ret[i], 0, "acquirer %d: %d", i, s->ret[i]);
	}
	cr_assert_eq(shmq_sem_value(m), 0);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

/* A semaphore of 2 shared by 4 processes: never more than 2 inside. */
static int sem_user(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	for (int i = 0; i < 5000; i++) {
		int r = shmq_sem_acquire(s->s, LONG_WAIT);
		if (r != 0) {
			fail(s, 1, r);
			return 1;
		}
		int32_t n = atomic_fetch_add(&s->inside, 1) + 1;
		if (n > 2)
			atomic_fetch_add(&s->violations, 1);
		if ((i & 15) == 0)
			sched_yield();
		atomic_fetch_sub(&s->inside, 1);
		if ((r = shmq_sem_release(s->s, 1)) != 0) {
			fail(s, 2, r);
			return 2;
		}
	}
	return 0;
}

static void sem_bound_holds(int flags)
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 2, flags & SHMQ_UNDO ? 2 : 0, flags);
	pid_t pids[4];
	for (int i = 0; i < 4; i++)
		pids[i] = spawn(s, i, sem_user);
	cr_assert_eq(t_await(&s->ready, 4, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < 4; i++)
		reap_ok(pids[i], "user");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->violations, 0, "%llu times more than 2 inside",
		     (unsigned long long)s->violations);
	cr_assert_eq(shmq_sem_value(m), 2);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, at_most_value_processes_inside, .timeout = T_TIMEOUT(60))
{
	sem_bound_holds(0);
}

Test(sem, undo_at_most_value_processes_inside, .timeout = T_TIMEOUT(60))
{
	sem_bound_holds(SHMQ_UNDO);
}

/* The holder: takes `take` units, gives back `give`, says so through the
 * pipe, waits to be killed. */
static int sem_holder(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	int r = 0;
	for (int i = 0; i < s->order[0] && r == 0; i++)
		r = shmq_sem_acquire(s->s, LIVE);
	if (r == 0 && s->order[1])
		r = shmq_sem_release(s->s, (uint32_t)s->order[1]);
	unsigned char c = r == 0 ? 'H' : 'E';
	if (write(s->pfd[1], &c, 1) != 1)
		return 1;
	for (;;)
		pause();
}

static pid_t start_sem_holder(struct sh *s, int take, int give)
{
	if (s->pfd[0] < 0)
		cr_assert_eq(pipe2(s->pfd, O_CLOEXEC), 0);
	s->order[0] = take;
	s->order[1] = give;
	pid_t pid = spawn(s, 0, sem_holder);
	int c = read_byte(s->pfd[0], LIVE);
	cr_assert_eq(c, 'H', "the holder could not take its units (%d)", c);
	return pid;
}

static int sem_value_after_stat(struct sh *s)
{
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0); /* notices deaths */
	return shmq_sem_value(s->s);
}

/* Units this process can take now without waiting (taking them): what the
 * semaphore really holds, whenever it gives back a dead holder's units. */
static int drain_units(struct sh *s)
{
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0);
	int n = 0, r;
	while (n < 1000 && (r = shmq_sem_acquire(s->s, 0)) == 0)
		n++;
	cr_assert_eq(r, -EAGAIN, "acquire(0): %d", r);
	return n;
}

Test(sem, holder_killed_without_undo_unit_stays_taken, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 0, 0);
	pid_t pid = start_sem_holder(s, 1, 0);
	cr_assert_eq(shmq_sem_value(m), 0);
	kill(pid, SIGKILL);
	reap_killed(pid);
	cr_assert_eq(sem_value_after_stat(s), 0, "a plain semaphore gave a dead holder's unit back");
	ASSERT_TIMES_OUT(shmq_sem_acquire(m, 200 * T_MS), 200 * T_MS);
	cr_assert_eq(shmq_sem_value(m), 0);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, holder_killed_with_undo_blocked_waiter_gets_the_unit, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 0, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 1, 0);
	cr_assert_eq(shmq_sem_value(m), 0);
	pid_t w = spawn(s, 1, sem_blocked_acquirer);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(w, LIVE), 0);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT, "got a unit the holder has");
	int64_t t0 = t_now();
	kill(holder, SIGKILL);
	cr_assert_eq(t_await(&s->done, 1, 10 * LIVE), 0,
		     "the waiter is still blocked after the holder's death");
	reap_killed(holder);
	cr_assert_eq(s->ret[1], 0, "the waiter's acquire: %d", s->ret[1]);
	cr_assert_lt(s->t_ret[1] - t0, DEATH, "the unit came back %lld ms after the death",
		     (long long)((s->t_ret[1] - t0) / T_MS));
	/* The waiter exits holding its unit (UNDO too): it comes back. */
	reap_ok(w, "waiter");
	cr_assert_eq(drain_units(s), 1, "the waiter's unit after its exit");
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, holder_killed_with_undo_value_back_when_noticed, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 0, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 1, 0);
	kill(holder, SIGKILL);
	await_zombie(holder);
	cr_assert_eq(sem_value_after_stat(s), 1,
		     "sem_value after heap_stat noticed the death: the unit is not back");
	reap_killed(holder);
	cr_assert_eq(sem_value_after_stat(s), 1, "given back twice");
	cr_assert_eq(drain_units(s), 1);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, holder_killed_with_undo_zombie_unit_available_once, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 0, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 1, 0);
	kill(holder, SIGKILL);
	await_zombie(holder);
	cr_assert_eq(drain_units(s), 1, "a zombie's unit not given back");
	reap_killed(holder);
	cr_assert_eq(drain_units(s), 0, "given back twice");
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

/* Took 2 of 3 and gave one back: only the unit still held comes back. */
Test(sem, undo_gives_back_only_what_the_dead_still_held, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 3, 0, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 2, 1);
	cr_assert_eq(shmq_sem_value(m), 2);
	kill(holder, SIGKILL);
	reap_killed(holder);
	cr_assert_eq(drain_units(s), 3, "units available after the death");
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

/* Producer/consumer: the parent (holding no unit) releases; that does not pay
 * off the dead acquirer's account, which still comes back. */
Test(sem, undo_release_by_non_holder_does_not_pay_the_holders_account, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 0, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 1, 0);
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	cr_assert_eq(shmq_sem_value(m), 1);
	kill(holder, SIGKILL);
	reap_killed(holder);
	cr_assert_eq(drain_units(s), 2, "units available after the death");
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

Test(sem, undo_gives_back_only_up_to_max, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_sem *m = mksem(s, 1, 1, SHMQ_UNDO);
	pid_t holder = start_sem_holder(s, 1, 0);
	cr_assert_eq(shmq_sem_value(m), 0);
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	kill(holder, SIGKILL);
	reap_killed(holder);
	cr_assert_eq(drain_units(s), 1, "undo pushed a bounded semaphore past its max");
	cr_assert_eq(shmq_sem_release(m, 1), 0);
	cr_assert_eq(shmq_sem_release(m, 1), -EOVERFLOW);
	shmq_sem_close(m);
	shmq_heap_close(s->h);
}

/* ================================================================ Condition == */

static shmq_cond *mkcond(struct sh *s, shmq_lock *l)
{
	int r = shmq_cond_create(s->h, NULL, l, &s->c);
	cr_assert_eq(r, 0, "cond_create: %d", r);
	cr_assert_not_null(shmq_cond_lock(s->c));
	return s->c;
}

static int cond_lock_holder(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	int r = shmq_lock_acquire(shmq_cond_lock(s->c), LIVE);
	if (r)
		fail(s, 1, r);
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	shmq_lock_release(shmq_cond_lock(s->c));
	return 0;
}

Test(cond, wait_and_notify_without_the_lock_eperm, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_cond *c = mkcond(s, NULL);
	shmq_lock *l = shmq_cond_lock(c);
	cr_assert_eq(shmq_cond_wait(c, 0), -EPERM);
	cr_assert_eq(shmq_cond_wait(c, 50 * T_MS), -EPERM);
	cr_assert_eq(shmq_cond_notify(c, 1), -EPERM);
	cr_assert_eq(shmq_cond_notify_all(c), -EPERM);
	cr_assert_eq(shmq_lock_held(l), 0, "a failed call took the lock");
	/* Held by another thread of this process: not ours either. */
	pthread_t tid;
	struct tcall t = { .l = l, .op = 0 };
	cr_assert_eq(pthread_create(&tid, NULL, tcall_main, &t), 0);
	pthread_join(tid, NULL);
	cr_assert_eq(t.ret, 0);
	cr_assert_eq(shmq_cond_wait(c, 0), -EPERM, "wait with the lock held by another thread");
	cr_assert_eq(shmq_cond_notify(c, 1), -EPERM);
	/* An RLock held by a dead thread cannot be released by us; use a new
	 * condition for the other-process case. */
	struct sh *s2 = sh_new();
	shmq_cond *c2 = mkcond(s2, NULL);
	pid_t pid = spawn(s2, 0, cond_lock_holder);
	cr_assert_eq(t_await(&s2->ready, 1, LIVE), 0);
	T_ASSERT_NO_ERRORS(s2);
	cr_assert_eq(shmq_cond_wait(c2, 0), -EPERM, "wait with the lock held by another process");
	cr_assert_eq(shmq_cond_notify(c2, 1), -EPERM);
	cr_assert_eq(shmq_cond_notify_all(c2), -EPERM);
	t_set(&s2->go, 1);
	reap_ok(pid, "holder");
	shmq_cond_close(c2);
	shmq_heap_close(s2->h);
}

Test(cond, bad_arguments_einval)
{
	struct sh *s = sh_new();
	shmq_cond *c = NULL;
	cr_assert_eq(shmq_cond_wait(NULL, 0), -EINVAL);
	cr_assert_eq(shmq_cond_notify(NULL, 1), -EINVAL);
	cr_assert_eq(shmq_cond_notify_all(NULL), -EINVAL);
	cr_assert_null(shmq_cond_lock(NULL));
	/* A lock of another heap. */
	struct sh *other = sh_new();
	shmq_lock *foreign = mklock(other, 0);
	cr_assert_eq(shmq_cond_create(s->h, NULL, foreign, &c), -EINVAL,
		     "condition over a lock of another heap");
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0);
	cr_assert_eq(st.objects, 0);
	shmq_lock_close(foreign);
	shmq_heap_close(other->h);
	shmq_heap_close(s->h);
}

Test(cond, own_lock_is_recursive, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_cond *c = mkcond(s, NULL);
	shmq_lock *l = shmq_cond_lock(c);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "the condition's own lock is not recursive");
	cr_assert_eq(shmq_cond_notify(c, 1), 0, "notify with no waiter wakes 0");
	cr_assert_eq(shmq_cond_notify_all(c), 0);
	cr_assert_eq(shmq_cond_wait(c, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_cond_wait(c, 50 * T_MS), 50 * T_MS);
	cr_assert_eq(shmq_lock_is_mine(l), 1, "wait returned without the lock");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_is_mine(l), 1, "wait lost a level of the lock");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	shmq_cond_close(c);
	shmq_heap_close(s->h);
}

Test(cond, over_a_given_lock_and_over_an_arrays_lock, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	shmq_cond *c = mkcond(s, l);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_held(shmq_cond_lock(c)), 1, "cond_lock is not the given lock");
	ASSERT_TIMES_OUT(shmq_cond_wait(c, 20 * T_MS), 20 * T_MS);
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_held(shmq_cond_lock(c)), 0);
	shmq_cond_close(c);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "closing the condition broke its lock");
	cr_assert_eq(shmq_lock_release(l), 0);

	shmq_array *a = mkarray(s, 64, 0);
	shmq_cond *c2 = NULL;
	cr_assert_eq(shmq_cond_create(s->h, "over-array", shmq_array_lock(a), &c2), 0);
	cr_assert_eq(shmq_lock_acquire(shmq_array_lock(a), 0), 0);
	cr_assert_eq(shmq_lock_held(shmq_cond_lock(c2)), 1);
	ASSERT_TIMES_OUT(shmq_cond_wait(c2, 20 * T_MS), 20 * T_MS);
	cr_assert_eq(shmq_lock_release(shmq_array_lock(a)), 0);
	/* Opened by name, the condition comes with the same lock. */
	shmq_cond *c3 = NULL;
	cr_assert_eq(shmq_cond_open(s->h, "over-array", &c3), 0);
	cr_assert_eq(shmq_lock_acquire(shmq_array_lock(a), 0), 0);
	cr_assert_eq(shmq_lock_held(shmq_cond_lock(c3)), 1, "the opened condition's lock");
	cr_assert_eq(shmq_lock_is_mine(shmq_cond_lock(c3)), 1);
	cr_assert_eq(shmq_cond_notify(c3, 1), 0);
	cr_assert_eq(shmq_lock_release(shmq_array_lock(a)), 0);
	shmq_cond_close(c3);
	shmq_cond_close(c2);
	shmq_array_close(a);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

/* A waiter: takes the lock (twice if s->recursive), records its arrival
 * order, waits wait_ns[idx], records the result, checks it holds the lock
 * again (every level), releases. */
static int cond_waiter(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	shmq_lock *l = shmq_cond_lock(s->c);
	t_post(&s->pre);
	int r = shmq_lock_acquire(l, LIVE);
	if (r == 0 && s->recursive)
		r = shmq_lock_acquire(l, 0);
	if (r != 0) {
		fail(s, 1, r);
		return 1;
	}
	s->order[k->idx] = (int32_t)atomic_fetch_add(&s->entered, 1);
	t_post(&s->ready);
	r = shmq_cond_wait(s->c, s->wait_ns[k->idx]);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	if (shmq_lock_is_mine(l) != 1)
		fail(s, 2, r); /* wait returned without the lock */
	if (s->recursive) {
		if ((r = shmq_lock_release(l)) != 0)
			fail(s, 3, r);
		if (shmq_lock_is_mine(l) != 1)
			fail(s, 4, -EBADE); /* a level was lost */
	}
	if ((r = shmq_lock_release(l)) != 0)
		fail(s, 5, r);
	if (shmq_lock_is_mine(l) != 0)
		fail(s, 6, -EBADE);
	if (shmq_lock_release(l) != -EPERM)
		fail(s, 7, -EBADE); /* more levels than taken */
	t_post(&s->done);
	return 0;
}

/* Start waiter idx and return once it is inside cond_wait: it posts ready
 * holding the lock, so the parent's acquire succeeds only once wait has
 * released it. */
static pid_t start_cond_waiter(struct sh *s, int idx, int64_t wait_ns)
{
	s->wait_ns[idx] = wait_ns;
	uint32_t before = atomic_load(&s->ready);
	pid_t pid = spawn(s, idx, cond_waiter);
	cr_assert_eq(t_await(&s->ready, before + 1, LIVE), 0);
	shmq_lock *l = shmq_cond_lock(s->c);
	int r = shmq_lock_acquire(l, LIVE);
	cr_assert_eq(r, 0, "waiter %d did not release the lock in wait: %d", idx, r);
	cr_assert_eq(shmq_lock_release(l), 0);
	return pid;
}

static int cond_notify_locked(struct sh *s, int n)
{
	shmq_lock *l = shmq_cond_lock(s->c);
	cr_assert_eq(shmq_lock_acquire(l, LIVE), 0);
	int r = n < 0 ? shmq_cond_notify_all(s->c) : shmq_cond_notify(s->c, (uint32_t)n);
	cr_assert_eq(shmq_lock_release(l), 0);
	return r;
}

Test(cond, wait_releases_the_lock_notify_wakes_it_with_the_lock, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t pid = start_cond_waiter(s, 0, LONG_WAIT);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT, "wait returned unnotified");
	int64_t t0 = t_now();
	cr_assert_eq(cond_notify_locked(s, 1), 1, "notify(1) with one waiter");
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0, "notify did not wake the waiter");
	reap_ok(pid, "waiter");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], 0, "wait: %d", s->ret[0]);
	cr_assert_lt(s->t_ret[0] - t0, LIVE);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

Test(cond, wait_with_rlock_held_twice_releases_and_restores_both_levels, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	s->recursive = 1;
	/* start_cond_waiter's acquire proves both levels were released. */
	pid_t pid = start_cond_waiter(s, 0, LONG_WAIT);
	cr_assert_eq(cond_notify_locked(s, 1), 1);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	reap_ok(pid, "waiter");
	T_ASSERT_NO_ERRORS(s); /* both levels held after wait, exactly */
	cr_assert_eq(s->ret[0], 0);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* n waiters, in a known order; notify(k) (or notify_all, k < 0): the k
 * longest waiting return 0, the others time out. */
static void notify_some(int waiters, int k)
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t pids[8];
	int64_t tmo = 1500 * T_MS * T_SCALE;
	for (int i = 0; i < waiters; i++)
		pids[i] = start_cond_waiter(s, i, tmo);
	int woken = k < 0 ? waiters : k;
	int64_t t0 = t_now();
	int r = cond_notify_locked(s, k);
	cr_assert_eq(r, woken, "notify(%d) of %d waiters returned %d", k, waiters, r);
	cr_assert_eq(t_await(&s->done, (uint32_t)woken, LIVE), 0, "notified waiters not woken");
	int64_t t_woken = t_now();
	cr_assert_lt(t_woken - t0, tmo / 2, "notified waiters woke only after %lld ms",
		     (long long)((t_woken - t0) / T_MS));
	for (int i = 0; i < waiters; i++)
		reap_ok(pids[i], "waiter");
	T_ASSERT_NO_ERRORS(s);
	for (int i = 0; i < waiters; i++) {
		int want = s->order[i] < woken ? 0 : -ETIMEDOUT;
		cr_assert_eq(s->ret[i], want, "waiter %d (arrived %d-th): %d, want %d", i,
			     s->order[i], s->ret[i], want);
	}
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

Test(cond, notify_one_wakes_exactly_the_longest_waiting_of_three, .timeout = T_TIMEOUT(30))
{
	notify_some(3, 1);
}

Test(cond, notify_two_wakes_exactly_two_of_four, .timeout = T_TIMEOUT(30))
{
	notify_some(4, 2);
}

Test(cond, notify_all_wakes_all_three, .timeout = T_TIMEOUT(30))
{
	notify_some(3, -1);
}

Test(cond, notify_more_than_waiting_wakes_those_waiting, .timeout = T_TIMEOUT(30))
{
	notify_some(2, 5 - 3); /* notify(2) of 2 */
}

Test(cond, notify_without_waiters_is_not_remembered, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	cr_assert_eq(cond_notify_locked(s, 1), 0);
	cr_assert_eq(cond_notify_locked(s, -1), 0);
	pid_t pid = start_cond_waiter(s, 0, 200 * T_MS);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	reap_ok(pid, "waiter");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], -ETIMEDOUT, "a later waiter took an old notification: %d",
		     s->ret[0]);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* A waits 100 ms and times out; B waits long. A notification sent after A
 * timed out goes to B, though A arrived first. */
Test(cond, timed_out_waiter_does_not_absorb_a_notification, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t a = start_cond_waiter(s, 0, 100 * T_MS);
	pid_t b = start_cond_waiter(s, 1, LONG_WAIT);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	cr_assert_eq(s->ret[0], -ETIMEDOUT, "A: %d", s->ret[0]);
	reap_ok(a, "A");
	int64_t t0 = t_now();
	cr_assert_eq(cond_notify_locked(s, 1), 1, "notify(1) with B waiting");
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "B was not woken: the notification was lost");
	reap_ok(b, "B");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[1], 0, "B: %d", s->ret[1]);
	cr_assert_lt(s->t_ret[1] - t0, LIVE);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* A waiter that arrives after a notify does not take it from the one that
 * was waiting when it was sent. */
Test(cond, later_waiter_does_not_steal_a_notification, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	shmq_lock *l = shmq_cond_lock(s->c);
	pid_t a = start_cond_waiter(s, 0, LONG_WAIT);
	cr_assert_eq(shmq_lock_acquire(l, LIVE), 0);
	cr_assert_eq(shmq_cond_notify(s->c, 1), 1);
	/* B queues up on the lock while we hold it, so it waits on the
	 * condition right after the notify, possibly before A is back. */
	s->wait_ns[1] = 300 * T_MS;
	uint32_t pre = atomic_load(&s->pre);
	pid_t b = spawn(s, 1, cond_waiter);
	cr_assert_eq(t_await(&s->pre, pre + 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(b, LIVE), 0, "B is not blocked on the lock");
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0);
	reap_ok(a, "A");
	reap_ok(b, "B");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], 0, "A, notified: %d", s->ret[0]);
	cr_assert_eq(s->ret[1], -ETIMEDOUT, "B, arrived after the notify: %d", s->ret[1]);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

Test(cond, killed_waiter_does_not_block_notify_for_the_others, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t pids[3];
	for (int i = 0; i < 3; i++)
		pids[i] = start_cond_waiter(s, i, LONG_WAIT);
	/* Kill the longest-waiting one: the first in line for a notify. */
	kill(pids[0], SIGKILL);
	reap_killed(pids[0]);
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0); /* its death is noticed */
	int64_t t0 = t_now();
	cr_assert_eq(cond_notify_locked(s, 1), 1);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0,
		     "notify(1) after a waiter died woke nobody alive");
	cr_assert_eq(s->ret[1], 0, "second waiter: %d", s->ret[1]);
	cr_assert_lt(s->t_ret[1] - t0, LIVE);
	cr_assert_eq(cond_notify_locked(s, -1), 1, "notify_all with one live waiter left");
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "notify_all did not wake the third");
	cr_assert_eq(s->ret[2], 0);
	for (int i = 1; i < 3; i++)
		reap_ok(pids[i], "waiter");
	T_ASSERT_NO_ERRORS(s);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* Without anything noticing the death first: notify_all still wakes every
 * live waiter. */
Test(cond, killed_waiter_notify_all_wakes_the_live_ones, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t pids[3];
	for (int i = 0; i < 3; i++)
		pids[i] = start_cond_waiter(s, i, LONG_WAIT);
	kill(pids[1], SIGKILL);
	reap_killed(pids[1]);
	cr_assert_geq(cond_notify_locked(s, -1), 2);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "live waiters not woken");
	reap_ok(pids[0], "waiter 0");
	reap_ok(pids[2], "waiter 2");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], 0);
	cr_assert_eq(s->ret[2], 0);
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* The notifier dies holding the lock: the woken waiter gets it with
 * -EOWNERDEAD, soon. */
static int cond_notifier_dies(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	shmq_lock *l = shmq_cond_lock(s->c);
	int r = shmq_lock_acquire(l, LIVE);
	if (r == 0)
		r = shmq_cond_notify(s->c, 1) == 1 ? 0 : -EBADE;
	s->ret[k->idx] = r;
	t_post(&s->notified);
	for (;;)
		pause();
	return 0;
}

Test(cond, wait_returns_eownerdead_when_the_lock_holder_dies, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	mkcond(s, NULL);
	pid_t w = start_cond_waiter(s, 0, LONG_WAIT);
	pid_t n = spawn(s, 1, cond_notifier_dies);
	cr_assert_eq(t_await(&s->notified, 1, LIVE), 0);
	cr_assert_eq(s->ret[1], 0, "notifier: %d", s->ret[1]);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT,
		     "wait returned while the notifier holds the lock");
	int64_t t0 = t_now();
	kill(n, SIGKILL);
	cr_assert_eq(t_await(&s->done, 1, 10 * LIVE), 0, "the waiter never got the lock back");
	reap_killed(n);
	reap_ok(w, "waiter");
	T_ASSERT_NO_ERRORS(s); /* it held the lock after wait, and released it */
	cr_assert_eq(s->ret[0], -EOWNERDEAD, "wait: %d", s->ret[0]);
	cr_assert_lt(s->t_ret[0] - t0, DEATH, "%lld ms after the death",
		     (long long)((s->t_ret[0] - t0) / T_MS));
	shmq_cond_close(s->c);
	shmq_heap_close(s->h);
}

/* Producer/consumer: 2 producers and 2 consumers through an 8-slot buffer
 * in an array, two conditions over one lock. Every item exactly once, each
 * producer's items in order at each consumer; a wait that times out while
 * the others are busy is a lost wakeup. */
struct pc_buf {
	uint64_t head, tail, consumed;
	uint64_t slot[8];
};

static int pc_wait(struct sh *s, shmq_cond *c)
{
	int r = shmq_cond_wait(c, LIVE);
	if (r == -ETIMEDOUT)
		atomic_fetch_add(&s->lost_wakeups, 1);
	else if (r != 0)
		fail(s, 10, r);
	return r;
}

static int pc_producer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	struct pc_buf *b = shmq_array_data(s->a);
	shmq_lock *l = shmq_cond_lock(s->c);
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	for (uint64_t i = 0; i < PC_ITEMS; i++) {
		int r = shmq_lock_acquire(l, LONG_WAIT);
		if (r != 0) {
			fail(s, 1, r);
			return 1;
		}
		while (b->tail - b->head == 8)
			if (pc_wait(s, s->c) < 0 && s->errors)
				return 2;
		b->slot[b->tail % 8] = (uint64_t)k->idx << 32 | i;
		b->tail++;
		shmq_cond_notify(s->c2, 1);
		shmq_lock_release(l);
	}
	return 0;
}

static int pc_consumer(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	struct pc_buf *b = shmq_array_data(s->a);
	shmq_lock *l = shmq_cond_lock(s->c);
	int64_t last[2] = { -1, -1 };
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	for (;;) {
		int r = shmq_lock_acquire(l, LONG_WAIT);
		if (r != 0) {
			fail(s, 2, r);
			return 1;
		}
		while (b->tail == b->head && b->consumed < 2 * PC_ITEMS)
			if (pc_wait(s, s->c2) < 0 && s->errors)
				return 2;
		if (b->consumed == 2 * PC_ITEMS) {
			shmq_lock_release(l);
			return 0;
		}
		uint64_t v = b->slot[b->head % 8];
		b->head++;
		b->consumed++;
		if (b->consumed == 2 * PC_ITEMS)
			shmq_cond_notify_all(s->c2); /* the other consumer: done */
		shmq_cond_notify(s->c, 1);
		shmq_lock_release(l);
		uint32_t p = (uint32_t)(v >> 32), i = (uint32_t)v;
		if (p > 1 || i >= PC_ITEMS) {
			fail(s, 3, (int)p);
			continue;
		}
		if ((int64_t)i <= last[p])
			atomic_fetch_add(&s->order_err, 1);
		last[p] = i;
		uint64_t bit = (uint64_t)p * PC_ITEMS + i;
		if (atomic_fetch_or(&s->bits[bit / 64], 1ull << (bit % 64)) & (1ull << (bit % 64)))
			atomic_fetch_add(&s->dups, 1);
		atomic_fetch_add(&s->taken, 1);
	}
}

Test(cond, producer_consumer_across_processes, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new();
	shmq_lock *l = mklock(s, 0);
	mkcond(s, l); /* not full */
	cr_assert_eq(shmq_cond_create(s->h, NULL, l, &s->c2), 0); /* not empty */
	mkarray(s, sizeof(struct pc_buf), SHMQ_NOLOCK);
	pid_t pids[4];
	for (int i = 0; i < 2; i++)
		pids[i] = spawn(s, i, pc_producer);
	for (int i = 2; i < 4; i++)
		pids[i] = spawn(s, i, pc_consumer);
	cr_assert_eq(t_await(&s->ready, 4, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < 4; i++)
		reap_ok(pids[i], i < 2 ? "producer" : "consumer");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->lost_wakeups, 0, "%llu waits timed out while the others were busy",
		     (unsigned long long)s->lost_wakeups);
	cr_assert_eq(s->dups, 0, "%llu items taken twice", (unsigned long long)s->dups);
	cr_assert_eq(s->order_err, 0);
	cr_assert_eq(s->taken, 2 * PC_ITEMS, "taken %llu", (unsigned long long)s->taken);
	for (unsigned i = 0; i < 2 * PC_ITEMS; i++)
		cr_assert(atomic_load(&s->bits[i / 64]) >> (i % 64) & 1, "item %u lost", i);
	shmq_cond_close(s->c2);
	shmq_cond_close(s->c);
	shmq_array_close(s->a);
	shmq_lock_close(l);
	shmq_heap_close(s->h);
}

/* ==================================================================== Event == */

Test(event, starts_clear_wait_timeouts, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_event *e = NULL;
	cr_assert_eq(shmq_event_create(s->h, NULL, &e), 0);
	cr_assert_eq(shmq_event_is_set(e), 0);
	cr_assert_eq(shmq_event_wait(e, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_event_wait(e, 50 * T_MS), 50 * T_MS);
	cr_assert_eq(shmq_event_is_set(e), 0);
	shmq_event_close(e);
	shmq_heap_close(s->h);
}

Test(event, set_is_sticky_wait_returns_at_once_clear_resets, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_event *e = NULL;
	cr_assert_eq(shmq_event_create(s->h, NULL, &e), 0);
	cr_assert_eq(shmq_event_set(e), 0);
	cr_assert_eq(shmq_event_is_set(e), 1);
	cr_assert_eq(shmq_event_set(e), 0, "set twice");
	cr_assert_eq(shmq_event_is_set(e), 1);
	for (int i = 0; i < 3; i++) {
		int64_t t0 = t_now();
		cr_assert_eq(shmq_event_wait(e, 0), 0);
		cr_assert_eq(shmq_event_wait(e, LONG_WAIT), 0);
		cr_assert_eq(shmq_event_wait(e, -1), 0);
		cr_assert_lt(t_now() - t0, 100 * T_MS * T_SCALE, "wait on a set event blocked");
	}
	cr_assert_eq(shmq_event_is_set(e), 1, "wait consumed the event");
	cr_assert_eq(shmq_event_clear(e), 0);
	cr_assert_eq(shmq_event_is_set(e), 0);
	cr_assert_eq(shmq_event_clear(e), 0, "clear twice");
	cr_assert_eq(shmq_event_wait(e, 0), -EAGAIN);
	ASSERT_TIMES_OUT(shmq_event_wait(e, 20 * T_MS), 20 * T_MS);
	/* Seen through a second handle. */
	shmq_event *e2 = NULL;
	cr_assert_eq(shmq_event_open(s->h, shmq_event_name(e), &e2), 0);
	cr_assert_eq(shmq_event_set(e2), 0);
	cr_assert_eq(shmq_event_is_set(e), 1);
	shmq_event_close(e2);
	shmq_event_close(e);
	shmq_heap_close(s->h);
}

Test(event, bad_arguments_einval)
{
	cr_assert_eq(shmq_event_set(NULL), -EINVAL);
	cr_assert_eq(shmq_event_clear(NULL), -EINVAL);
	cr_assert_eq(shmq_event_wait(NULL, 0), -EINVAL);
}

static int event_waiter(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	int r = shmq_event_wait(s->e, LONG_WAIT);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	t_post(&s->done);
	return 0;
}

Test(event, set_wakes_every_waiting_process, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	cr_assert_eq(shmq_event_create(s->h, NULL, &s->e), 0);
	pid_t pids[5];
	for (int i = 0; i < 5; i++)
		pids[i] = spawn(s, i, event_waiter);
	cr_assert_eq(t_await(&s->ready, 5, LIVE), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(t_wait_sleeping(pids[i], LIVE), 0);
	cr_assert_eq(t_await(&s->done, 1, 100 * T_MS), -ETIMEDOUT, "wait returned before set");
	int64_t t0 = t_now();
	cr_assert_eq(shmq_event_set(s->e), 0);
	cr_assert_eq(t_await(&s->done, 5, LIVE), 0, "only %u of 5 waiters woken by set", s->done);
	for (int i = 0; i < 5; i++) {
		reap_ok(pids[i], "waiter");
		cr_assert_eq(s->ret[i], 0, "waiter %d: %d", i, s->ret[i]);
		cr_assert_lt(s->t_ret[i] - t0, DEATH, "waiter %d woke %lld ms after set", i,
			     (long long)((s->t_ret[i] - t0) / T_MS));
	}
	cr_assert_eq(shmq_event_is_set(s->e), 1);
	shmq_event_close(s->e);
	shmq_heap_close(s->h);
}

/* set then clear at once: waiters that were waiting at set still wake (no
 * lost wakeup), and a later wait blocks again. */
Test(event, set_then_clear_still_wakes_the_waiters, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	cr_assert_eq(shmq_event_create(s->h, NULL, &s->e), 0);
	pid_t pids[3];
	for (int i = 0; i < 3; i++)
		pids[i] = spawn(s, i, event_waiter);
	cr_assert_eq(t_await(&s->ready, 3, LIVE), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(t_wait_sleeping(pids[i], LIVE), 0);
	cr_assert_eq(shmq_event_set(s->e), 0);
	cr_assert_eq(shmq_event_clear(s->e), 0);
	cr_assert_eq(t_await(&s->done, 3, LIVE), 0, "only %u of 3 waiters woken by a set+clear",
		     s->done);
	for (int i = 0; i < 3; i++) {
		reap_ok(pids[i], "waiter");
		cr_assert_eq(s->ret[i], 0, "waiter %d: %d", i, s->ret[i]);
	}
	cr_assert_eq(shmq_event_wait(s->e, 0), -EAGAIN);
	shmq_event_close(s->e);
	shmq_heap_close(s->h);
}

static int event_setter_by_name(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	shmq_event *e = NULL;
	int r = shmq_event_open(s->h, "go-signal", &e);
	if (r == 0)
		r = shmq_event_set(e);
	if (r == 0)
		r = shmq_event_close(e);
	return r == 0 ? 0 : 1;
}

Test(event, set_by_another_process_through_its_own_handle, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	cr_assert_eq(shmq_event_create(s->h, "go-signal", &s->e), 0);
	pid_t pid = spawn(s, 0, event_setter_by_name);
	cr_assert_eq(shmq_event_wait(s->e, LIVE), 0, "the child's set never arrived");
	reap_ok(pid, "setter");
	shmq_event_close(s->e);
	shmq_heap_close(s->h);
}

/* ================================================================== Barrier == */

static shmq_barrier *mkbarrier(struct sh *s, uint32_t parties)
{
	int r = shmq_barrier_create(s->h, NULL, parties, &s->b);
	cr_assert_eq(r, 0, "barrier_create(%u): %d", parties, r);
	return s->b;
}

static int n_waiting(void *b)
{
	return shmq_barrier_n_waiting(b);
}

Test(barrier, create_parties_limits_and_accessors)
{
	struct sh *s = sh_new();
	shmq_barrier *b = NULL;
	cr_assert_eq(shmq_barrier_create(s->h, NULL, 0, &b), -EINVAL, "0 parties");
	cr_assert_eq(shmq_barrier_create(s->h, NULL, SHMQ_BARRIER_MAX_PARTIES + 1, &b), -EINVAL);
	cr_assert_eq(shmq_barrier_create(s->h, NULL, UINT32_MAX, &b), -EINVAL);
	cr_assert_eq(shmq_barrier_create(s->h, NULL, SHMQ_BARRIER_MAX_PARTIES, &b), 0);
	cr_assert_eq(shmq_barrier_parties(b), (int)SHMQ_BARRIER_MAX_PARTIES);
	shmq_barrier_close(b);
	b = mkbarrier(s, 3);
	cr_assert_eq(shmq_barrier_parties(b), 3);
	cr_assert_eq(shmq_barrier_n_waiting(b), 0);
	cr_assert_eq(shmq_barrier_broken(b), 0);
	cr_assert_eq(shmq_barrier_wait(NULL, 0), -EINVAL);
	cr_assert_eq(shmq_barrier_wait_action(NULL, NULL, NULL, 0), -EINVAL);
	cr_assert_eq(shmq_barrier_abort(NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_reset(NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_n_waiting(NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_parties(NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_broken(NULL), -EINVAL);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

static void count_action(void *arg)
{
	atomic_fetch_add((_Atomic uint32_t *)arg, 1);
}

Test(barrier, one_party_passes_at_once_and_runs_the_action)
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 1);
	for (uint32_t i = 0; i < 100; i++) {
		cr_assert_eq(shmq_barrier_wait(b, 0), 0);
		cr_assert_eq(shmq_barrier_wait_action(b, count_action, &s->actions, -1), 0);
		cr_assert_eq(s->actions, i + 1);
	}
	cr_assert_eq(shmq_barrier_n_waiting(b), 0);
	cr_assert_eq(shmq_barrier_broken(b), 0);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

/* 4 processes x 1000 cycles. Each cycle: indexes 0..3 each once; the action
 * runs exactly once, in the process that got index 3 (the last to arrive),
 * before anyone is released (every process sees the count of cycle c when
 * its wait of cycle c returns). */
#define BAR_PROCS 4

static void bar_action(void *arg)
{
	struct sh *s = arg;
	uint32_t c = atomic_load(&s->actions);
	if (c < BAR_CYCLES)
		s->action_pid[c] = getpid();
	if (c % 3 == 0)
		t_nap(100 * 1000); /* sometimes slow: the others must wait for it */
	atomic_store(&s->actions, c + 1);
}

static int bar_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	for (uint32_t c = 0; c < BAR_CYCLES; c++) {
		int r = shmq_barrier_wait_action(s->b, bar_action, s, LONG_WAIT);
		if (r < 0 || r >= BAR_PROCS) {
			fail(s, 1, r);
			return 1;
		}
		if (atomic_fetch_or(&s->seen[c], 1u << r) & (1u << r))
			fail(s, 2, r); /* an index twice in one cycle */
		if (r == BAR_PROCS - 1)
			s->last_pid[c] = getpid();
		uint32_t a = atomic_load(&s->actions);
		if (a != c + 1)
			fail(s, 3, (int)a); /* action not run exactly once before release */
		if ((c + (uint32_t)k->idx) % 97 == 0)
			sched_yield();
	}
	return 0;
}

Test(barrier, four_processes_1000_cycles_indexes_and_action, .timeout = T_TIMEOUT(120))
{
	struct sh *s = sh_new();
	mkbarrier(s, BAR_PROCS);
	pid_t pids[BAR_PROCS];
	for (int i = 0; i < BAR_PROCS; i++)
		pids[i] = spawn(s, i, bar_worker);
	cr_assert_eq(t_await(&s->ready, BAR_PROCS, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < BAR_PROCS; i++)
		reap_ok(pids[i], "party");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->actions, BAR_CYCLES, "the action ran %u times in %u cycles", s->actions,
		     BAR_CYCLES);
	for (int c = 0; c < BAR_CYCLES; c++) {
		cr_assert_eq(s->seen[c], (1u << BAR_PROCS) - 1, "cycle %d: indexes 0x%x", c,
			     s->seen[c]);
		cr_assert_eq(s->action_pid[c], s->last_pid[c],
			     "cycle %d: the action ran in %d, index %u went to %d", c,
			     s->action_pid[c], BAR_PROCS - 1, s->last_pid[c]);
	}
	cr_assert_eq(shmq_barrier_broken(s->b), 0);
	cr_assert_eq(shmq_barrier_n_waiting(s->b), 0);
	shmq_barrier_close(s->b);
	shmq_heap_close(s->h);
}

static int bar_waiter(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	t_post(&s->ready);
	int r = shmq_barrier_wait(s->b, s->wait_ns[k->idx] ? s->wait_ns[k->idx] : LONG_WAIT);
	s->t_ret[k->idx] = t_now();
	s->ret[k->idx] = r;
	t_post(&s->done);
	return 0;
}

/* Start n waiters (indexes first..first+n-1) and return once all wait. */
static void start_bar_waiters(struct sh *s, pid_t *pids, int first, int n)
{
	uint32_t before = atomic_load(&s->ready);
	int waiting = shmq_barrier_n_waiting(s->b);
	for (int i = 0; i < n; i++)
		pids[i] = spawn(s, first + i, bar_waiter);
	cr_assert_eq(t_await(&s->ready, before + (uint32_t)n, LIVE), 0);
	int w = await_value(n_waiting, s->b, waiting + n, LIVE);
	cr_assert_eq(w, waiting + n, "n_waiting %d, want %d", w, waiting + n);
}

/* A full cycle with fresh parties: proves the barrier is usable. */
static void full_cycle(struct sh *s, uint32_t parties)
{
	pid_t pids[8];
	uint32_t done0 = atomic_load(&s->done);
	start_bar_waiters(s, pids, 10, (int)parties - 1);
	int r = shmq_barrier_wait(s->b, LIVE);
	cr_assert(r >= 0 && r < (int)parties, "last party's wait: %d", r);
	cr_assert_eq(r, (int)parties - 1, "the last to arrive got index %d", r);
	cr_assert_eq(t_await(&s->done, done0 + parties - 1, LIVE), 0);
	uint32_t seen = 1u << r;
	for (uint32_t i = 0; i < parties - 1; i++) {
		reap_ok(pids[i], "party");
		int x = s->ret[10 + i];
		cr_assert(x >= 0 && x < (int)parties, "party %u: %d", i, x);
		cr_assert_eq(seen & (1u << x), 0, "index %d twice", x);
		seen |= 1u << x;
	}
}

Test(barrier, n_waiting_counts_arrivals, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 4);
	pid_t pids[3];
	for (int i = 0; i < 3; i++) {
		start_bar_waiters(s, &pids[i], i, 1);
		cr_assert_eq(shmq_barrier_n_waiting(b), i + 1);
	}
	cr_assert_eq(t_await(&s->done, 1, 50 * T_MS), -ETIMEDOUT, "released before the last");
	int r = shmq_barrier_wait(b, LIVE);
	cr_assert_eq(r, 3, "the fourth to arrive: %d", r);
	cr_assert_eq(t_await(&s->done, 3, LIVE), 0);
	uint32_t seen = 1u << 3;
	for (int i = 0; i < 3; i++) {
		reap_ok(pids[i], "party");
		cr_assert_eq(s->ret[i], i, "party arriving %d-th got index %d", i, s->ret[i]);
		seen |= 1u << s->ret[i];
	}
	cr_assert_eq(seen, 0xf);
	cr_assert_eq(shmq_barrier_n_waiting(b), 0);
	cr_assert_eq(shmq_barrier_broken(b), 0);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

static void expect_broken_now(shmq_barrier *b)
{
	cr_assert_eq(shmq_barrier_broken(b), 1);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_barrier_wait(b, LONG_WAIT), -ECANCELED, "wait on a broken barrier");
	cr_assert_eq(shmq_barrier_wait(b, 0), -ECANCELED);
	cr_assert_lt(t_now() - t0, 100 * T_MS * T_SCALE, "wait on a broken barrier blocked");
	cr_assert_eq(shmq_barrier_broken(b), 1, "still broken until reset");
}

Test(barrier, abort_breaks_the_waiters_reset_makes_it_usable, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 3);
	pid_t pids[2];
	start_bar_waiters(s, pids, 0, 2);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_barrier_abort(b), 0);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "abort did not wake the waiters");
	for (int i = 0; i < 2; i++) {
		reap_ok(pids[i], "waiter");
		cr_assert_eq(s->ret[i], -ECANCELED, "waiter %d: %d", i, s->ret[i]);
		cr_assert_lt(s->t_ret[i] - t0, LIVE);
	}
	expect_broken_now(b);
	cr_assert_eq(shmq_barrier_abort(b), 0, "abort twice");
	cr_assert_eq(shmq_barrier_reset(b), 0);
	cr_assert_eq(shmq_barrier_broken(b), 0);
	cr_assert_eq(shmq_barrier_n_waiting(b), 0);
	full_cycle(s, 3);
	cr_assert_eq(shmq_barrier_broken(b), 0);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

Test(barrier, reset_while_parties_wait_breaks_them_and_stays_usable, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 3);
	pid_t pids[2];
	start_bar_waiters(s, pids, 0, 2);
	cr_assert_eq(shmq_barrier_reset(b), 0);
	cr_assert_eq(t_await(&s->done, 2, LIVE), 0, "reset did not wake the waiters");
	for (int i = 0; i < 2; i++) {
		reap_ok(pids[i], "waiter");
		cr_assert_eq(s->ret[i], -ECANCELED, "waiter %d: %d", i, s->ret[i]);
	}
	cr_assert_eq(shmq_barrier_broken(b), 0, "reset leaves it usable");
	cr_assert_eq(shmq_barrier_n_waiting(b), 0);
	full_cycle(s, 3);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

Test(barrier, waiter_timing_out_gets_etimedout_and_breaks_it, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 3);
	pid_t pid;
	start_bar_waiters(s, &pid, 0, 1);
	ASSERT_TIMES_OUT(shmq_barrier_wait(b, 50 * T_MS), 50 * T_MS);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0, "the other waiter was not released");
	reap_ok(pid, "waiter");
	cr_assert_eq(s->ret[0], -ECANCELED, "the other waiter: %d", s->ret[0]);
	expect_broken_now(b);
	cr_assert_eq(shmq_barrier_reset(b), 0);
	full_cycle(s, 3);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

Test(barrier, wait_zero_timeout_alone_eagain, .timeout = T_TIMEOUT(10))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 2);
	cr_assert_eq(shmq_barrier_wait(b, 0), -EAGAIN);
	cr_assert_eq(shmq_barrier_n_waiting(b), 0, "a timed-out party still counted");
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

Test(barrier, waiting_party_sigkilled_breaks_it_for_the_others, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 3);
	pid_t pids[2];
	start_bar_waiters(s, pids, 0, 2);
	cr_assert_eq(t_wait_sleeping(pids[1], LIVE), 0);
	int64_t t0 = t_now();
	kill(pids[0], SIGKILL);
	cr_assert_eq(t_await(&s->done, 1, 10 * LIVE), 0,
		     "the survivor is still waiting after a party died");
	reap_killed(pids[0]);
	reap_ok(pids[1], "survivor");
	cr_assert_eq(s->ret[1], -ECANCELED, "survivor: %d", s->ret[1]);
	cr_assert_lt(s->t_ret[1] - t0, DEATH, "broken %lld ms after the death",
		     (long long)((s->t_ret[1] - t0) / T_MS));
	expect_broken_now(b);
	cr_assert_eq(shmq_barrier_reset(b), 0);
	full_cycle(s, 3);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

static void die_in_action(void *arg)
{
	(void)arg;
	raise(SIGKILL);
}

static int bar_dies_in_action(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	shmq_barrier_wait_action(s->b, die_in_action, NULL, LONG_WAIT);
	return 1; /* should have died */
}

Test(barrier, party_killed_in_the_action_breaks_it, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_barrier *b = mkbarrier(s, 3);
	pid_t pids[2];
	start_bar_waiters(s, pids, 0, 2);
	pid_t last = spawn(s, 5, bar_dies_in_action);
	int st;
	cr_assert_eq(t_wait(last, &st, LIVE), 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the action did not run");
	int64_t t0 = t_now();
	cr_assert_eq(t_await(&s->done, 2, 10 * LIVE), 0, "parties still waiting on a dead action");
	for (int i = 0; i < 2; i++) {
		reap_ok(pids[i], "waiter");
		cr_assert_eq(s->ret[i], -ECANCELED, "waiter %d: %d", i, s->ret[i]);
		cr_assert_lt(s->t_ret[i] - t0, DEATH, "%lld ms after the death",
			     (long long)((s->t_ret[i] - t0) / T_MS));
	}
	expect_broken_now(b);
	cr_assert_eq(shmq_barrier_reset(b), 0);
	full_cycle(s, 3);
	shmq_barrier_close(b);
	shmq_heap_close(s->h);
}

/* ==================================================================== Array == */

Test(array, zero_filled_64_byte_aligned_exact_size)
{
	struct sh *s = sh_new();
	size_t sizes[] = { 1, 7, 8, 63, 64, 65, 1000, 4096, 100000, 1 << 20 };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		for (int flags = 0; flags <= SHMQ_NOLOCK; flags += SHMQ_NOLOCK) {
			shmq_array *a = NULL;
			int r = shmq_array_create(s->h, NULL, sizes[i], flags, &a);
			cr_assert_eq(r, 0, "array_create(%zu, %d): %d", sizes[i], flags, r);
			unsigned char *d = shmq_array_data(a);
			cr_assert_not_null(d);
			cr_assert_eq((uintptr_t)d % 64, 0, "size %zu: data at %p", sizes[i], d);
			cr_assert_eq(shmq_array_size(a), sizes[i]);
			for (size_t j = 0; j < sizes[i]; j++)
				if (d[j])
					cr_assert_fail("size %zu: byte %zu is %u", sizes[i], j, d[j]);
			memset(d, 0xee, sizes[i]);
			shmq_array_close(a);
		}
	shmq_heap_close(s->h);
}

Test(array, reused_memory_is_zero_filled)
{
	struct sh *s = sh_new();
	for (int i = 0; i < 1000; i++) {
		shmq_array *a = NULL;
		size_t size = 64 + (size_t)(i % 5) * 1000;
		cr_assert_eq(shmq_array_create(s->h, NULL, size, i & 1 ? SHMQ_NOLOCK : 0, &a), 0);
		unsigned char *d = shmq_array_data(a);
		for (size_t j = 0; j < size; j++)
			if (d[j])
				cr_assert_fail("array %d (%zu bytes): byte %zu is %u", i, size, j, d[j]);
		memset(d, 0xff, size);
		shmq_array_close(a);
	}
	shmq_heap_close(s->h);
}

Test(array, size_zero_and_bad_flags_einval)
{
	struct sh *s = sh_new();
	shmq_array *a = NULL;
	cr_assert_eq(shmq_array_create(s->h, NULL, 0, 0, &a), -EINVAL);
	cr_assert_eq(shmq_array_create(s->h, "zero", 0, SHMQ_NOLOCK, &a), -EINVAL);
	cr_assert_eq(shmq_array_create(s->h, NULL, 8, 2, &a), -EINVAL, "unknown flag");
	cr_assert_eq(shmq_array_create(s->h, NULL, 8, -1, &a), -EINVAL, "flags -1");
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_stat(s->h, &st), 0);
	cr_assert_eq(st.objects, 0, "a failed create left an object");
	cr_assert_eq(shmq_array_open(s->h, "zero", &a), -ENOENT);
	cr_assert_null(shmq_array_data(NULL));
	cr_assert_eq(shmq_array_size(NULL), 0);
	cr_assert_null(shmq_array_lock(NULL));
	shmq_heap_close(s->h);
}

Test(array, nolock_gives_null_lock)
{
	struct sh *s = sh_new();
	shmq_array *a = mkarray(s, 16, SHMQ_NOLOCK), *b = NULL;
	cr_assert_null(shmq_array_lock(a));
	cr_assert_eq(shmq_array_open(s->h, shmq_array_name(a), &b), 0);
	cr_assert_null(shmq_array_lock(b), "opened by name, a RawArray got a lock");
	shmq_array_close(b);
	shmq_array_close(a);
	shmq_heap_close(s->h);
}

static int array_lock_prober(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	shmq_array *mine = NULL;
	s->ret[0] = shmq_lock_acquire(shmq_array_lock(s->a), 0); /* inherited handle */
	int r = shmq_array_open(s->h, shmq_array_name(s->a), &mine);
	if (r != 0) {
		fail(s, 1, r);
		return 1;
	}
	s->ret[1] = shmq_lock_acquire(shmq_array_lock(mine), 0); /* its own handle */
	s->ret[2] = shmq_lock_release(shmq_array_lock(mine));
	shmq_array_close(mine);
	return 0;
}

Test(array, lock_is_recursive_and_the_same_through_every_handle, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_array *a = mkarray(s, 64, 0);
	shmq_lock *l = shmq_array_lock(a);
	cr_assert_not_null(l);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0, "the array's lock is not recursive");
	cr_assert_eq(shmq_lock_is_mine(l), 1);
	pid_t pid = spawn(s, 0, array_lock_prober);
	reap_ok(pid, "prober");
	T_ASSERT_NO_ERRORS(s);
	cr_assert_eq(s->ret[0], -EAGAIN, "another process took the held lock: %d", s->ret[0]);
	cr_assert_eq(s->ret[1], -EAGAIN, "through a handle opened by name: %d", s->ret[1]);
	cr_assert_eq(s->ret[2], -EPERM, "another process released our RLock: %d", s->ret[2]);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_release(l), -EPERM);
	shmq_array_close(a);
	shmq_heap_close(s->h);
}

/* The array's lock is robust like any RLock. */
static int array_lock_holder(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	volatile uint64_t *d = shmq_array_data(s->a);
	int r = shmq_lock_acquire(shmq_array_lock(s->a), LIVE);
	d[0] = 1; /* half-updated: d[1] not yet */
	unsigned char c = r == 0 ? 'H' : 'E';
	if (write(s->pfd[1], &c, 1) != 1)
		return 1;
	for (;;)
		pause();
	return 0;
}

Test(array, lock_holder_killed_eownerdead, .timeout = T_TIMEOUT(30))
{
	struct sh *s = sh_new();
	shmq_array *a = mkarray(s, 2 * sizeof(uint64_t), 0);
	cr_assert_eq(pipe2(s->pfd, O_CLOEXEC), 0);
	pid_t pid = spawn(s, 0, array_lock_holder);
	cr_assert_eq(read_byte(s->pfd[0], LIVE), 'H');
	kill(pid, SIGKILL);
	reap_killed(pid);
	int64_t t0 = t_now();
	int r = shmq_lock_acquire(shmq_array_lock(a), LONG_WAIT);
	int64_t el = t_now() - t0;
	cr_assert_eq(r, -EOWNERDEAD, "acquire after the holder died: %d", r);
	cr_assert_lt(el, DEATH);
	volatile uint64_t *d = shmq_array_data(a);
	cr_assert_eq(d[0], 1, "the dead holder's write is visible (to be repaired)");
	d[1] = 1; /* repair */
	cr_assert_eq(shmq_lock_release(shmq_array_lock(a)), 0);
	cr_assert_eq(shmq_lock_acquire(shmq_array_lock(a), 0), 0);
	cr_assert_eq(shmq_lock_release(shmq_array_lock(a)), 0);
	shmq_array_close(a);
	shmq_heap_close(s->h);
}

#define AT_PROCS 4
#define AT_EACH 100000

static int atomics_worker(void *arg)
{
	struct karg *k = arg;
	struct sh *s = k->s;
	_Atomic uint64_t *d = shmq_array_data(s->a);
	_Atomic uint32_t *w = (_Atomic uint32_t *)(d + 2);
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	for (int i = 0; i < AT_EACH; i++) {
		atomic_fetch_add(&d[0], 1);
		uint64_t old = atomic_load(&d[1]);
		while (!atomic_compare_exchange_weak(&d[1], &old, old + 3))
			;
		atomic_fetch_add(&w[0], 1);
	}
	return 0;
}

Test(array, c11_atomics_on_the_data_across_processes, .timeout = T_TIMEOUT(60))
{
	struct sh *s = sh_new();
	shmq_array *a = mkarray(s, 3 * sizeof(uint64_t), SHMQ_NOLOCK);
	pid_t pids[AT_PROCS];
	for (int i = 0; i < AT_PROCS; i++)
		pids[i] = spawn(s, i, atomics_worker);
	cr_assert_eq(t_await(&s->ready, AT_PROCS, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < AT_PROCS; i++)
		reap_ok(pids[i], "worker");
	_Atomic uint64_t *d = shmq_array_data(a);
	cr_assert_eq(atomic_load(&d[0]), (uint64_t)AT_PROCS * AT_EACH);
	cr_assert_eq(atomic_load(&d[1]), (uint64_t)AT_PROCS * AT_EACH * 3);
	cr_assert_eq(atomic_load((_Atomic uint32_t *)(d + 2)), (uint32_t)AT_PROCS * AT_EACH);
	shmq_array_close(a);
	shmq_heap_close(s->h);
}

Test(array, open_by_name_sees_the_same_bytes)
{
	struct sh *s = sh_new();
	shmq_array *a = NULL, *b = NULL;
	cr_assert_eq(shmq_array_create(s->h, "bytes", 100, 0, &a), 0);
	cr_assert_eq(shmq_array_open(s->h, "bytes", &b), 0);
	cr_assert_eq(shmq_array_size(b), 100);
	cr_assert_eq((uintptr_t)shmq_array_data(b) % 64, 0);
	memcpy(shmq_array_data(a), "hello", 6);
	cr_assert_str_eq(shmq_array_data(b), "hello");
	cr_assert_not_null(shmq_array_lock(b));
	cr_assert_eq(shmq_lock_acquire(shmq_array_lock(a), 0), 0);
	cr_assert_eq(shmq_lock_held(shmq_array_lock(b)), 1, "two handles, two locks");
	cr_assert_eq(shmq_lock_release(shmq_array_lock(b)), 0, "same thread, same RLock");
	shmq_array_close(b);
	shmq_array_close(a);
	shmq_heap_close(s->h);
}

/* ---------------------------------------------------------- interruption -- */
/* shmq_set_interrupt_check: a runtime's check, asked when a signal cuts a
 * sleep, ends finite waits as at their deadline (with its clean-up: a
 * Barrier breaks, a Condition retakes its lock), marks the thread, and
 * never cuts a wait with timeout -1. */

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static int alarmed(void)
{
	return alarms > 0;
}

/* SIGALRM in ms, with a handler that interrupts syscalls (no SA_RESTART),
 * as Python's are. */
static void alarm_in(int ms)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	sigaction(SIGALRM, &sa, NULL);
	alarms = 0;
	struct itimerval it = { .it_value = { .tv_sec = 0, .tv_usec = ms * 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

#define LONG_NS (60 * T_SEC)

Test(interrupt, cuts_finite_waits_with_their_timeout_clean_up, .timeout = T_TIMEOUT(30))
{
	shmq_set_interrupt_check(alarmed);
	shmq_queue *q;
	cr_assert_eq(shmq_queue_create(NULL, NULL, &q), 0);
	char buf[64];
	alarm_in(50);
	int64_t t0 = t_now();
	cr_expect_eq(shmq_get(q, buf, sizeof(buf), LONG_NS), -ETIMEDOUT);
	cr_expect_lt(t_now() - t0, 10 * T_SEC, "cut, not waited out");
	cr_expect_eq(shmq_interrupted(), 1, "the thread is marked");
	cr_expect_eq(shmq_interrupted(), 0, "and the mark is read once");
	cr_expect_eq(shmq_put(q, "x", 1, 0), 0, "the queue is as it was");
	cr_expect_eq(shmq_get(q, buf, sizeof(buf), 0), 1);

	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_barrier *b;
	cr_assert_eq(shmq_barrier_create(h, NULL, 2, &b), 0);
	alarm_in(50);
	cr_expect_eq(shmq_barrier_wait(b, LONG_NS), -ETIMEDOUT);
	cr_expect_eq(shmq_interrupted(), 1);
	cr_expect_eq(shmq_barrier_broken(b), 1, "a cut wait breaks it, as a timeout does");

	shmq_cond *c;
	cr_assert_eq(shmq_cond_create(h, NULL, NULL, &c), 0);
	cr_assert_eq(shmq_lock_acquire(shmq_cond_lock(c), 0), 0);
	alarm_in(50);
	cr_expect_eq(shmq_cond_wait(c, LONG_NS), -ETIMEDOUT);
	cr_expect_eq(shmq_interrupted(), 1);
	cr_expect_eq(shmq_lock_is_mine(shmq_cond_lock(c)), 1, "the lock is taken again");
	cr_expect_eq(shmq_lock_release(shmq_cond_lock(c)), 0);

	shmq_set_interrupt_check(NULL);
	shmq_cond_close(c);
	shmq_barrier_close(b);
	shmq_heap_close(h);
	shmq_queue_close(q);
}

static void *put_later(void *arg)
{
	t_nap(300 * T_MS);
	shmq_put(arg, "late", 4, -1);
	return NULL;
}

Test(interrupt, never_cuts_a_wait_without_deadline, .timeout = T_TIMEOUT(30))
{
	shmq_set_interrupt_check(alarmed);
	shmq_queue *q;
	cr_assert_eq(shmq_queue_create(NULL, NULL, &q), 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, put_later, q), 0);
	alarm_in(50);
	char buf[64];
	cr_expect_eq(shmq_get(q, buf, sizeof(buf), -1), 4, "got the message after the signal");
	cr_expect(alarms > 0, "the signal came while it waited");
	cr_expect_eq(shmq_interrupted(), 0);
	pthread_join(t, NULL);
	shmq_set_interrupt_check(NULL);
	shmq_queue_close(q);
}

/* Reset wakes the waiters of the cycle broken (-ECANCELED); a waiter that
 * waits again at once joins a fresh cycle, never a broken one (Python's reset
 * makes newcomers wait out the draining). Threads of one process: the window
 * between breaking the waiters and reopening the barrier was what lost. */
#define RESET_PARTIES 5

struct reset_arg {
	shmq_barrier *b;
	_Atomic int second_ok, second_broken;
};

static void *reset_waiter(void *p)
{
	struct reset_arg *a = p;
	if (shmq_barrier_wait(a->b, 10 * T_SEC) != -ECANCELED)
		return NULL; /* counted as neither below */
	int r = shmq_barrier_wait(a->b, 10 * T_SEC);
	atomic_fetch_add(r >= 0 ? &a->second_ok : &a->second_broken, 1);
	return NULL;
}

Test(barrier, reset_reopens_at_once_for_the_woken, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int round = 0; round < 20; round++) {
		struct reset_arg a = { 0 };
		cr_assert_eq(shmq_barrier_create(h, NULL, RESET_PARTIES, &a.b), 0);
		pthread_t t[RESET_PARTIES - 1];
		for (int i = 0; i < RESET_PARTIES - 1; i++)
			pthread_create(&t[i], NULL, reset_waiter, &a);
		while (shmq_barrier_n_waiting(a.b) < RESET_PARTIES - 1)
			t_nap(T_MS);
		cr_assert_eq(shmq_barrier_reset(a.b), 0);
		cr_expect_geq(shmq_barrier_wait(a.b, 10 * T_SEC), 0, "round %d: we complete the cycle",
			      round);
		for (int i = 0; i < RESET_PARTIES - 1; i++)
			pthread_join(t[i], NULL);
		cr_expect_eq(a.second_ok, RESET_PARTIES - 1, "round %d: %d of the woken found it broken",
			     round, a.second_broken);
		shmq_barrier_close(a.b);
	}
	shmq_heap_close(h);
}
