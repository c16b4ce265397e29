/* shmq-bridge: the in-flight window (a byte ring in a named shmq heap), its
 * doorbells, and the keeper process's start and liveness (bridge.h says how). */
#include "bridge.h"

/* ----------------------------------------------------- process liveness -- */

/* A process's start time (field 22 of /proc/PID/stat), 0 if it is gone.
 * With the pid it names one process: a pid reused later has another. */
uint64_t proc_start(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the name may hold spaces and ')' */
	if (!p)
		return 0;
	if (p[1] == ' ' && p[2] == 'Z') /* a zombie is dead */
		return 0;
	unsigned long long start = 0;
	int field = 2;
	for (char *s = p + 1; *s && field < 22; s++)
		if (*s == ' ' && ++field == 22)
			start = strtoull(s + 1, NULL, 10);
	return start;
}

bool keeper_alive(struct win *w)
{
	pid_t pid = atomic_load(&w->keeper_pid);
	return pid > 0 && proc_start(pid) == atomic_load(&w->keeper_start);
}

/* ------------------------------------------------------------ doorbells -- */

void bell_ring(shmq_sem *s)
{
	shmq_sem_release(s, 1); /* -EOVERFLOW: rung already */
}

void bell_wait(shmq_sem *s, int64_t timeout_ns)
{
	shmq_sem_acquire(s, timeout_ns);
}

/* ---------------------------------------------------------- ring access -- */

uint64_t rec_size(uint64_t len)
{
	return (sizeof(struct rec) + len + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

/* Room for a record of len bytes at tail, counting the WRAP it may need. */
bool win_fits(struct win *w, uint64_t head, uint64_t tail, uint64_t len)
{
	uint64_t need = rec_size(len), off = tail % w->cap;
	if (off + need > w->cap)
		need += w->cap - off;
	return tail - head + need <= w->cap;
}

/* Write a record at *tail (caller checked win_fits), advancing *tail; the
 * caller publishes it with a release store of w->tail. */
void win_put(struct win *w, uint64_t *tail, uint16_t kind, uint16_t prod, uint64_t seq,
		    const void *data, uint32_t len)
{
	uint64_t off = *tail % w->cap, need = rec_size(len);
	if (off + need > w->cap) {
		struct rec wrap = { (uint32_t)(w->cap - off - sizeof(struct rec)), REC_WRAP, 0, 0 };
		memcpy(w->ring + off, &wrap, sizeof(wrap));
		*tail += w->cap - off;
		off = 0;
	}
	struct rec r = { len, kind, prod, seq };
	memcpy(w->ring + off, &r, sizeof(r));
	if (len)
		memcpy(w->ring + off + sizeof(r), data, len);
	*tail += need;
}

/* Read the record at *pos (< tail), skipping a WRAP. Returns a pointer to its
 * header in the ring and sets *next; NULL if the bytes are inconsistent (a
 * corrupted window: the caller stops). */
const struct rec *win_get(struct win *w, uint64_t pos, uint64_t tail, uint64_t *next)
{
	for (int i = 0; i < 2; i++) {
		uint64_t off = pos % w->cap;
		if (tail - pos < sizeof(struct rec) || off + sizeof(struct rec) > w->cap)
			return NULL;
		const struct rec *r = (const struct rec *)(w->ring + off);
		if (r->kind == REC_WRAP) {
			if (off == 0 || r->len != w->cap - off - sizeof(struct rec))
				return NULL;
			pos += w->cap - off;
			continue;
		}
		if ((r->kind != REC_MSG && r->kind != REC_END) || off + rec_size(r->len) > w->cap ||
		    rec_size(r->len) > tail - pos)
			return NULL;
		*next = pos + rec_size(r->len);
		return r;
	}
	return NULL;
}

/* ------------------------------------------------------ window life -- */

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* a separator between fields */
}

static void window_name(const struct opts *o, char *out, size_t cap)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", o->port);
	uint64_t h = 0xcbf29ce484222325ull;
	h = fnv1a(h, o->dir == 'o' ? "out" : "in");
	h = fnv1a(h, o->queue);
	h = fnv1a(h, o->host);
	h = fnv1a(h, port);
	h = fnv1a(h, o->stream);
	h = fnv1a(h, o->dir == 'i' ? o->group : "");
	snprintf(out, cap, "/shmqbr.%016" PRIx64, h);
}

void window_close(struct window *win)
{
	if (win->to_keeper)
		shmq_sem_close(win->to_keeper);
	if (win->to_bridge)
		shmq_sem_close(win->to_bridge);
	if (win->lock)
		shmq_lock_close(win->lock);
	if (win->arr)
		shmq_array_close(win->arr);
	if (win->heap)
		shmq_heap_close(win->heap);
	memset(win, 0, sizeof(*win));
}

/* Open the objects of an existing heap; the creator may still be making them,
 * so -ENOENT is retried for a second, and so is a header not yet written. */
int window_attach(struct window *win)
{
	int r = 0;
	for (int tries = 0; tries < 100; tries++) {
		if (!win->arr && (r = shmq_array_open(win->heap, "window", &win->arr)) < 0)
			goto retry;
		if (!win->to_bridge && (r = shmq_sem_open(win->heap, "to_bridge", &win->to_bridge)) < 0)
			goto retry;
		if (!win->to_keeper && (r = shmq_sem_open(win->heap, "to_keeper", &win->to_keeper)) < 0)
			goto retry;
		if (!win->lock && (r = shmq_lock_open(win->heap, "bridge", &win->lock)) < 0)
			goto retry;
		win->w = shmq_array_data(win->arr);
		if (shmq_array_size(win->arr) < sizeof(struct win))
			return -EPROTO;
		for (; tries < 100; tries++) {
			if (atomic_load_explicit((_Atomic uint64_t *)&win->w->magic, memory_order_acquire) ==
			    WIN_MAGIC)
				break;
			sleep_ms(10);
		}
		struct win *w = win->w;
		if (w->magic != WIN_MAGIC || w->version != WIN_VERSION || w->cap % REC_ALIGN ||
		    w->cap == 0 || sizeof(struct win) + w->cap > shmq_array_size(win->arr) ||
		    w->nprod > MAX_PRODUCERS || w->njoin > MAX_JOIN_WITH)
			return -EPROTO;
		return 0;
	retry:
		if (r != -ENOENT)
			return r;
		sleep_ms(10);
	}
	return r;
}

/* Start a keeper for the window: fork, a session of its own, exec (so it
 * holds nothing of ours: no Redis socket, no heap handle). Waits for it to
 * report. Returns 0; -errno. */
int keeper_spawn(struct bridge *b)
{
	struct win *w = b->win.w;
	atomic_fetch_and(&w->state, ~(uint32_t)(W_READY | W_FAILED));
	atomic_store(&w->keeper_err, 0);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setsid();
		pid_t k = fork(); /* not our child: nobody has to reap it */
		if (k == 0) {
			/* Nothing of ours but stdio: no Redis socket (see
			 * redis_connect), no heap fd. */
			close_range(3, ~0u, 0); /* every fd, not the first 1024 */
			execl(b->self_path, "shmq-bridge", "keeper", b->win.heap_name, (char *)NULL);
			_exit(127);
		}
		_exit(k < 0 ? 1 : 0);
	}
	int status;
	waitpid(pid, &status, 0);
	int64_t deadline = now_ns() + KEEPER_START_NS;
	while (now_ns() < deadline) {
		uint32_t st = atomic_load(&w->state);
		if (st & W_FAILED) {
			int e = atomic_load(&w->keeper_err);
			return e < 0 ? e : -EIO;
		}
		if (st & W_READY)
			return 0;
		bell_wait(b->win.to_bridge, POLL_NS / 5);
	}
	return -ETIMEDOUT;
}

int keeper_check(struct bridge *b)
{
	struct win *w = b->win.w;
	int64_t now = now_ns();
	if (now < b->next_keeper_check)
		return 0;
	b->next_keeper_check = now + KEEPER_CHECK_NS;
	if (keeper_alive(w))
		return 0;
	if (atomic_load(&w->state) & W_FINISH)
		return 0;
	say("the keeper of %s is gone; starting another", w->queue);
	int r = keeper_spawn(b);
	if (r < 0)
		say("cannot start a keeper for %s: %s", w->queue, strerror(-r));
	return r;
}

static uint64_t window_cap(size_t msg_max)
{
	uint64_t cap = 4 * rec_size(msg_max) + 2 * rec_size(ENTRY_BYTES) * 4;
	if (cap < WIN_MIN_CAP)
		cap = WIN_MIN_CAP;
	return (cap + REC_ALIGN - 1) & ~(uint64_t)(REC_ALIGN - 1);
}

/* Create the heap and its window, holding the lock. */
static int window_create(struct bridge *b, size_t msg_max)
{
	struct window *win = &b->win;
	uint64_t cap = window_cap(msg_max);
	struct shmq_heap_attr ha;
	shmq_heap_attr_init(&ha);
	ha.max_size = cap + sizeof(struct win) + (4u << 20);
	int r = shmq_heap_create(win->heap_name, &ha, &win->heap);
	if (r < 0)
		return r;
	/* The lock first, taken at once: a bridge that opens the heap meanwhile
	 * waits for it, then finds a live holder. */
	if ((r = shmq_lock_create(win->heap, "bridge", 0, &win->lock)) < 0 ||
	    (r = shmq_lock_acquire(win->lock, 0)) < 0 ||
	    (r = shmq_array_create(win->heap, "window", sizeof(struct win) + cap, SHMQ_NOLOCK,
				   &win->arr)) < 0 ||
	    (r = shmq_sem_create(win->heap, "to_bridge", 0, 1, 0, &win->to_bridge)) < 0 ||
	    (r = shmq_sem_create(win->heap, "to_keeper", 0, 1, 0, &win->to_keeper)) < 0)
		goto fail;
	struct win *w = win->w = shmq_array_data(win->arr);
	w->version = WIN_VERSION;
	w->dir = (uint32_t)b->o->dir;
	w->cap = cap;
	if (getrandom(&w->id, sizeof(w->id), 0) != sizeof(w->id) || w->id == 0)
		w->id = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
	memcpy(w->queue, b->o->queue, QNAME_MAX);
	memcpy(w->join_with, b->o->join_with, sizeof(w->join_with));
	w->njoin = b->o->njoin;
	w->want_ends = b->o->producers;
	atomic_store_explicit((_Atomic uint64_t *)&w->magic, WIN_MAGIC, memory_order_release);
	return 0;
fail:
	window_close(win);
	shmq_unlink(b->win.heap_name);
	return r;
}

/* Find or make the window, and take its lock. Returns 0; 75 (EX_TEMPFAIL)
 * when a live bridge holds it; another exit status on errors. */
int window_adopt(struct bridge *b, size_t msg_max)
{
	struct window *win = &b->win;
	window_name(b->o, win->heap_name, sizeof(win->heap_name));
	for (int attempt = 0; attempt < 5; attempt++) {
		int r = window_create(b, msg_max);
		if (r == 0)
			return 0;
		if (r != -EEXIST) {
			say("cannot create the window %s: %s", win->heap_name, strerror(-r));
			return EX_OSERR;
		}
		if ((r = shmq_heap_open(win->heap_name, 0, &win->heap)) < 0) {
			if (r == -ENOENT)
				continue; /* removed meanwhile */
			say("cannot open the window %s: %s", win->heap_name, strerror(-r));
			return EX_OSERR;
		}
		if ((r = window_attach(win)) < 0) {
			say("the window %s is unusable (%s); remove it with `shmq rm %s` if no "
			    "bridge or keeper runs",
			    win->heap_name, strerror(-r), win->heap_name);
			window_close(win);
			return EX_SOFTWARE;
		}
		/* A dead holder is noticed within about 0.1 s. */
		r = shmq_lock_acquire(win->lock, 300000000LL);
		if (r == -ETIMEDOUT || r == -EAGAIN) {
			say("another bridge runs with these arguments (window %s)", win->heap_name);
			window_close(win);
			return EX_TEMPFAIL;
		}
		if (r < 0 && r != -EOWNERDEAD) {
			say("cannot lock the window %s: %s", win->heap_name, strerror(-r));
			window_close(win);
			return EX_OSERR;
		}
		struct win *w = win->w;
		if (w->dir != (uint32_t)b->o->dir || strncmp(w->queue, b->o->queue, QNAME_MAX)) {
			say("the window %s belongs to other arguments", win->heap_name);
			window_close(win);
			return EX_SOFTWARE;
		}
		if (atomic_load(&w->state) & W_FINISH) {
			/* A finished transfer whose bridge died before removing the
			 * window: start afresh. */
			shmq_unlink(win->heap_name);
			window_close(win);
			continue;
		}
		return 0;
	}
	say("cannot settle the window %s", win->heap_name);
	return EX_TEMPFAIL;
}

void window_finish(struct bridge *b)
{
	struct win *w = b->win.w;
	atomic_fetch_or(&w->state, W_FINISH);
	bell_ring(b->win.to_keeper);
	for (int i = 0; i < 200 && keeper_alive(w); i++)
		sleep_ms(10);
	shmq_unlink(b->win.heap_name);
}
