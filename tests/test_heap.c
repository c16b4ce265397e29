/* Heaps (include/shmq/heap.h): life cycle of named and anonymous heaps,
 * passing by fd, bad arguments; objects of every kind (names unique per heap,
 * kinds checked, anonymous objects freed at their last close, named ones at
 * remove + last close); handles inherited by fork() and released by a child
 * that dies or exec()s; growth on demand up to max_size, -ENOSPC that changes
 * nothing; reclamation (create/close loops stay in bounded memory); hostile
 * and corrupted segments (-EPROTO at open, never a crash).
 * Only the parent (the Criterion test process) asserts; children report
 * through exit status and shared memory. */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE) /* "returns, not a hang" bound */
#define KiB (1024ull)
#define MiB (1024ull * 1024)

static const char *dev_shm(const char *name, char *buf, size_t n)
{
	snprintf(buf, n, "/dev/shm/%s", name + 1);
	return buf;
}

/* A failed create that is not -ENOSPC may carve a block and free it again;
 * what it must not change is what is live: objects, handles, and the bytes
 * in use (used - free). */
#define ASSERT_LIVE_EQ(a, b, what)                                                        \
	do {                                                                              \
		cr_assert_eq((a).objects, (b).objects, "%s: objects %u -> %u", what,    \
			     (a).objects, (b).objects);                                  \
		cr_assert_eq((a).handles, (b).handles, "%s: handles %u -> %u", what,    \
			     (a).handles, (b).handles);                                  \
		cr_assert_eq((a).used - (a).free, (b).used - (b).free,                   \
			     "%s: bytes in use %llu -> %llu (a block leaked)", what,     \
			     (unsigned long long)((a).used - (a).free),                  \
			     (unsigned long long)((b).used - (b).free));                 \
	} while (0)

#define ASSERT_STAT_EQ(a, b, what)                                                        \
	do {                                                                              \
		cr_assert_eq((a).max_size, (b).max_size, "%s: max_size %llu -> %llu", what, \
			     (unsigned long long)(a).max_size,                           \
			     (unsigned long long)(b).max_size);                          \
		cr_assert_eq((a).size, (b).size, "%s: size %llu -> %llu", what,         \
			     (unsigned long long)(a).size, (unsigned long long)(b).size); \
		cr_assert_eq((a).used, (b).used, "%s: used %llu -> %llu", what,         \
			     (unsigned long long)(a).used, (unsigned long long)(b).used); \
		cr_assert_eq((a).free, (b).free, "%s: free %llu -> %llu", what,         \
			     (unsigned long long)(a).free, (unsigned long long)(b).free); \
		cr_assert_eq((a).objects, (b).objects, "%s: objects %u -> %u", what,    \
			     (a).objects, (b).objects);                                  \
		cr_assert_eq((a).handles, (b).handles, "%s: handles %u -> %u", what,    \
			     (a).handles, (b).handles);                                  \
	} while (0)

/* ------------------------------------------------ objects of every kind -- */

enum { K_LOCK, K_SEM, K_COND, K_EVENT, K_BARRIER, K_ARRAY, K_N };
static const char *const kind_str[K_N] = { "lock", "sem", "cond", "event", "barrier", "array" };

static int obj_create(shmq_heap *h, int k, const char *name, void **out)
{
	int r = -ENOSYS;
	switch (k) {
	case K_LOCK: {
		shmq_lock *o = NULL;
		r = shmq_lock_create(h, name, 0, &o);
		*out = o;
		break;
	}
	case K_SEM: {
		shmq_sem *o = NULL;
		r = shmq_sem_create(h, name, 1, 0, 0, &o);
		*out = o;
		break;
	}
	case K_COND: {
		shmq_cond *o = NULL;
		r = shmq_cond_create(h, name, NULL, &o);
		*out = o;
		break;
	}
	case K_EVENT: {
		shmq_event *o = NULL;
		r = shmq_event_create(h, name, &o);
		*out = o;
		break;
	}
	case K_BARRIER: {
		shmq_barrier *o = NULL;
		r = shmq_barrier_create(h, name, 2, &o);
		*out = o;
		break;
	}
	case K_ARRAY: {
		shmq_array *o = NULL;
		r = shmq_array_create(h, name, 64, 0, &o);
		*out = o;
		break;
	}
	}
	return r;
}

static int obj_open(shmq_heap *h, int k, const char *name, void **out)
{
	int r = -ENOSYS;
	switch (k) {
	case K_LOCK: {
		shmq_lock *o = NULL;
		r = shmq_lock_open(h, name, &o);
		*out = o;
		break;
	}
	case K_SEM: {
		shmq_sem *o = NULL;
		r = shmq_sem_open(h, name, &o);
		*out = o;
		break;
	}
	case K_COND: {
		shmq_cond *o = NULL;
		r = shmq_cond_open(h, name, &o);
		*out = o;
		break;
	}
	case K_EVENT: {
		shmq_event *o = NULL;
		r = shmq_event_open(h, name, &o);
		*out = o;
		break;
	}
	case K_BARRIER: {
		shmq_barrier *o = NULL;
		r = shmq_barrier_open(h, name, &o);
		*out = o;
		break;
	}
	case K_ARRAY: {
		shmq_array *o = NULL;
		r = shmq_array_open(h, name, &o);
		*out = o;
		break;
	}
	}
	return r;
}

static int obj_close(int k, void *o)
{
	switch (k) {
	case K_LOCK: return shmq_lock_close(o);
	case K_SEM: return shmq_sem_close(o);
	case K_COND: return shmq_cond_close(o);
	case K_EVENT: return shmq_event_close(o);
	case K_BARRIER: return shmq_barrier_close(o);
	case K_ARRAY: return shmq_array_close(o);
	}
	return -ENOSYS;
}

static const char *obj_name(int k, void *o)
{
	switch (k) {
	case K_LOCK: return shmq_lock_name(o);
	case K_SEM: return shmq_sem_name(o);
	case K_COND: return shmq_cond_name(o);
	case K_EVENT: return shmq_event_name(o);
	case K_BARRIER: return shmq_barrier_name(o);
	case K_ARRAY: return shmq_array_name(o);
	}
	return NULL;
}

static void *create_ok(shmq_heap *h, int k, const char *name)
{
	void *o = NULL;
	int r = obj_create(h, k, name, &o);
	cr_assert_eq(r, 0, "%s_create(%s): %d", kind_str[k], name ? name : "NULL", r);
	cr_assert_not_null(o);
	return o;
}

static void *open_ok(shmq_heap *h, int k, const char *name)
{
	void *o = NULL;
	int r = obj_open(h, k, name, &o);
	cr_assert_eq(r, 0, "%s_open(%s): %d", kind_str[k], name, r);
	cr_assert_not_null(o);
	return o;
}

static void close_ok(int k, void *o)
{
	int r = obj_close(k, o);
	cr_assert_eq(r, 0, "%s_close: %d", kind_str[k], r);
}

static shmq_array *array_ok(shmq_heap *h, const char *name, size_t size)
{
	shmq_array *a = NULL;
	int r = shmq_array_create(h, name, size, 0, &a);
	cr_assert_eq(r, 0, "array_create(%s, %zu): %d", name ? name : "NULL", size, r);
	return a;
}

/* ======================================================== heap life cycle == */

Test(heap, attr_init_sets_every_field_to_zero)
{
	struct shmq_heap_attr a;
	memset(&a, 0xff, sizeof(a));
	shmq_heap_attr_init(&a);
	cr_assert_eq(a.max_size, 0);
	cr_assert_eq(a.mode, 0);
	cr_assert_eq(a.flags, 0);
}

Test(heap, anonymous_with_default_attr_stat_and_close)
{
	shmq_heap *h = NULL;
	cr_assert_eq(shmq_heap_create(NULL, NULL, &h), 0);
	cr_assert_not_null(h);
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.max_size, SHMQ_HEAP_DEFAULT_MAX, "max_size %llu",
		     (unsigned long long)st.max_size);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.handles, 1, "handles %u", st.handles);
	cr_assert_gt(st.size, 0);
	cr_assert_leq(st.used, st.size, "used %llu > size %llu", (unsigned long long)st.used,
		      (unsigned long long)st.size);
	cr_assert_leq(st.free, st.used);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(heap, max_size_attr_reported_by_stat)
{
	uint64_t sizes[] = { SHMQ_HEAP_MIN_MAX, 4 * MiB, 64 * MiB, SHMQ_HEAP_MAX_MAX };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i] == SHMQ_HEAP_MAX_MAX) {
			/* 1 TiB of address space may not be there to reserve
			 * (TSan's shadow layout, ASLR): then -ENOMEM, as
			 * documented, and nothing else. */
			struct shmq_heap_attr a;
			shmq_heap_attr_init(&a);
			a.max_size = sizes[i];
			shmq_heap *big = NULL;
			int r = shmq_heap_create(NULL, &a, &big);
			cr_assert(r == 0 || r == -ENOMEM, "heap_create(max 1 TiB): %d", r);
			if (r == -ENOMEM)
				continue;
			cr_assert_eq(shmq_heap_close(big), 0);
		}
		shmq_heap *h = t_mkheap(NULL, sizes[i]);
		struct shmq_heap_stat st = t_hstat(h);
		cr_assert_eq(st.max_size, sizes[i], "asked %llu, stat says %llu",
			     (unsigned long long)sizes[i], (unsigned long long)st.max_size);
		cr_assert_leq(st.size, st.max_size);
		cr_assert_eq(shmq_heap_close(h), 0);
	}
}

Test(heap, named_create_then_open_by_name_shares_objects)
{
	const char *name = t_name("heap");
	shmq_heap *h = t_mkheap(name, 0), *h2 = NULL;
	cr_assert_eq(shmq_heap_open(name, 0, &h2), 0);
	cr_assert_not_null(h2);
	cr_assert_neq(h, h2);
	cr_assert_eq(t_hstat(h).handles, 2);

	shmq_array *a = array_ok(h, "shared", 256), *b = NULL;
	cr_assert_eq(shmq_array_open(h2, "shared", &b), 0);
	cr_assert_eq(shmq_array_size(b), 256);
	memcpy(shmq_array_data(a), "through the creator", 20);
	cr_assert_str_eq(shmq_array_data(b), "through the creator");
	memcpy(shmq_array_data(b), "through the opener!", 20);
	cr_assert_str_eq(shmq_array_data(a), "through the opener!");
	cr_assert_eq(t_hstat(h2).objects, 1);

	cr_assert_eq(shmq_array_close(b), 0);
	cr_assert_eq(shmq_heap_close(h2), 0);
	cr_assert_eq(t_hstat(h).handles, 1);
	cr_assert_eq(shmq_array_close(a), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(heap, create_existing_name_eexist_first_untouched)
{
	const char *name = t_name("twice");
	shmq_heap *h = t_mkheap(name, 0), *h2 = NULL;
	shmq_lock *l = NULL;
	cr_assert_eq(shmq_lock_create(h, "x", 0, &l), 0);
	cr_assert_eq(shmq_heap_create(name, NULL, &h2), -EEXIST);
	cr_assert_null(h2);
	/* The first heap still works, and can still be opened by name. */
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_heap_open(name, 0, &h2), 0);
	shmq_lock *l2 = NULL;
	cr_assert_eq(shmq_lock_open(h2, "x", &l2), 0);
	cr_assert_eq(shmq_lock_close(l2), 0);
	cr_assert_eq(shmq_heap_close(h2), 0);
	cr_assert_eq(shmq_lock_close(l), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
	cr_assert_eq(shmq_unlink(name), 0);
}

/* A file planted under the name (by anyone) is never adopted, resized or
 * removed by a create; and it is not a heap. */
Test(heap, create_over_planted_file_eexist_file_untouched)
{
	const char *name = t_name("plant");
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "planted", 7), 7);
	shmq_heap *h = NULL;
	cr_assert_eq(shmq_heap_create(name, NULL, &h), -EEXIST);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 7, "the planted file was resized to %lld", (long long)st.st_size);
	close(fd);
	cr_assert_eq(shmq_heap_open(name, 0, &h), -EPROTO);
	cr_assert_eq(shm_unlink(name), 0, "the planted name was removed");
}

Test(heap, open_missing_name_enoent)
{
	const char *name = t_name("missing");
	shmq_heap *h = NULL;
	cr_assert_eq(shmq_heap_open(name, 0, &h), -ENOENT);
	cr_assert_null(h);
}

Test(heap, bad_heap_names_einval)
{
	char longname[NAME_MAX + 3];
	longname[0] = '/';
	memset(longname + 1, 'a', NAME_MAX + 1);
	longname[NAME_MAX + 2] = 0;
	const char *bad[] = { "", "/", "/a/b", "a/b", longname };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		shmq_heap *h = NULL;
		cr_assert_eq(shmq_heap_create(bad[i], NULL, &h), -EINVAL, "create \"%.20s\"",
			     bad[i]);
		cr_assert_null(h);
		cr_assert_eq(shmq_heap_open(bad[i], 0, &h), -EINVAL, "open \"%.20s\"", bad[i]);
		cr_assert_null(h);
	}
}

Test(heap, bad_attr_einval_creates_nothing)
{
	const char *name = t_name("attr");
	struct {
		uint64_t max_size;
		uint32_t flags;
	} bad[] = {
		{ 1, 0 },
		{ SHMQ_HEAP_MIN_MAX - 1, 0 },
		{ SHMQ_HEAP_MIN_MAX / 2, 0 },
		{ SHMQ_HEAP_MAX_MAX + 1, 0 },
		{ UINT64_MAX, 0 },
		{ 0, 1 },
		{ 0, 0x80000000u },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shmq_heap_attr a;
		shmq_heap_attr_init(&a);
		a.max_size = bad[i].max_size;
		a.flags = bad[i].flags;
		shmq_heap *h = NULL;
		cr_assert_eq(shmq_heap_create(NULL, &a, &h), -EINVAL, "anonymous, case %u", i);
		cr_assert_null(h);
		cr_assert_eq(shmq_heap_create(name, &a, &h), -EINVAL, "named, case %u", i);
		cr_assert_null(h);
		cr_assert_eq(shmq_heap_open(name, 0, &h), -ENOENT,
			     "a failed create left the name behind (case %u)", i);
	}
}

Test(heap, null_arguments_einval)
{
	const char *name = t_name("null");
	shmq_heap *h = NULL;
	struct shmq_heap_stat st;
	cr_assert_eq(shmq_heap_create(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_heap_create(name, NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_heap_open(name, 0, &h), -ENOENT, "create with out NULL left a heap");
	cr_assert_eq(shmq_heap_open(NULL, 0, &h), -EINVAL);
	cr_assert_eq(shmq_heap_fd(NULL), -EINVAL);
	cr_assert_eq(shmq_heap_close(NULL), -EINVAL);
	cr_assert_eq(shmq_heap_stat(NULL, &st), -EINVAL);
	cr_assert_eq(shmq_heap_remove(NULL, "x"), -EINVAL);

	h = t_mkheap(name, 0);
	cr_assert_eq(shmq_heap_open(name, 0, NULL), -EINVAL);
	cr_assert_eq(shmq_heap_open_fd(shmq_heap_fd(h), 0, NULL), -EINVAL);
	cr_assert_eq(shmq_heap_stat(h, NULL), -EINVAL);
	cr_assert_eq(shmq_heap_remove(h, NULL), -EINVAL);
	cr_assert_eq(t_hstat(h).handles, 1, "a failed open left a handle");
	cr_assert_eq(shmq_heap_close(h), 0);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(heap, open_unknown_flags_einval)
{
	const char *name = t_name("flags");
	shmq_heap *h = t_mkheap(name, 0), *h2 = NULL;
	cr_assert_eq(shmq_heap_open(name, 0x1, &h2), -EINVAL);
	cr_assert_eq(shmq_heap_open(name, 0x4000, &h2), -EINVAL);
	cr_assert_eq(shmq_heap_open_fd(shmq_heap_fd(h), 0x1, &h2), -EINVAL);
	cr_assert_null(h2);
	cr_assert_eq(shmq_heap_open(name, SHMQ_FOREIGN, &h2), 0, "SHMQ_FOREIGN is a valid flag");
	cr_assert_eq(shmq_heap_close(h2), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
	shmq_unlink(name);
}

Test(heap, named_mode_default_0600_and_mode_attr_honoured)
{
	const char *n1 = t_name("mode"), *n2 = t_name("mode");
	char path[128];
	struct stat st;
	mode_t old = umask(0);
	shmq_heap *h1 = t_mkheap(n1, 0);
	struct shmq_heap_attr a;
	shmq_heap_attr_init(&a);
	a.mode = 0640;
	shmq_heap *h2 = NULL;
	umask(077);
	cr_assert_eq(shmq_heap_create(n2, &a, &h2), 0);
	umask(old);
	cr_assert_eq(stat(dev_shm(n1, path, sizeof(path)), &st), 0, "%s", path);
	cr_assert_eq(st.st_mode & 07777, 0600, "default mode %o", st.st_mode & 07777);
	cr_assert_eq(stat(dev_shm(n2, path, sizeof(path)), &st), 0, "%s", path);
	cr_assert_eq(st.st_mode & 07777, 0640, "mode attr 0640 gave %o", st.st_mode & 07777);
	shmq_heap_close(h1);
	shmq_heap_close(h2);
	shmq_unlink(n1);
	shmq_unlink(n2);
}

Test(heap, fd_is_cloexec_and_open_fd_shares_objects)
{
	shmq_heap *h = t_mkheap(NULL, 0), *h2 = NULL;
	int fd = shmq_heap_fd(h);
	cr_assert_geq(fd, 0);
	int fl = fcntl(fd, F_GETFD);
	cr_assert_geq(fl, 0);
	cr_assert(fl & FD_CLOEXEC, "the heap fd is not close-on-exec");
	cr_assert_eq(shmq_heap_open_fd(fd, 0, &h2), 0);
	cr_assert_not_null(h2);
	cr_assert_eq(t_hstat(h).handles, 2);

	shmq_array *a = array_ok(h, "v", sizeof(uint64_t)), *b = NULL;
	cr_assert_eq(shmq_array_open(h2, "v", &b), 0);
	*(volatile uint64_t *)shmq_array_data(a) = 0x1234567890abcdefull;
	cr_assert_eq(*(volatile uint64_t *)shmq_array_data(b), 0x1234567890abcdefull);
	cr_assert_eq(shmq_array_close(b), 0);
	cr_assert_eq(shmq_heap_close(h2), 0);
	/* The caller keeps its fd: closing the second handle left it open. */
	cr_assert_geq(fcntl(fd, F_GETFD), 0, "open_fd took the caller's fd");
	cr_assert_eq(shmq_heap_fd(h), fd);
	cr_assert_eq(t_hstat(h).handles, 1);
	cr_assert_eq(*(volatile uint64_t *)shmq_array_data(a), 0x1234567890abcdefull);
	cr_assert_eq(shmq_array_close(a), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(heap, open_fd_bad_fd_ebadf)
{
	shmq_heap *h = NULL;
	cr_assert_eq(shmq_heap_open_fd(-1, 0, &h), -EBADF);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(shmq_heap_open_fd(p[0], 0, &h), -EBADF, "a closed fd");
	cr_assert_null(h);
}

Test(heap, open_fd_of_files_that_are_not_heaps_eproto, .timeout = T_TIMEOUT(10))
{
	shmq_heap *h = NULL;
	int empty = memfd_create("empty", MFD_CLOEXEC);
	cr_assert_geq(empty, 0);
	cr_assert_eq(shmq_heap_open_fd(empty, 0, &h), -EPROTO, "empty file");
	int zeros = memfd_create("zeros", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(zeros, 2 * MiB), 0);
	cr_assert_eq(shmq_heap_open_fd(zeros, 0, &h), -EPROTO, "2 MiB of zeros");
	int rnd = memfd_create("random", MFD_CLOEXEC);
	unsigned char buf[4096];
	for (int i = 0; i < 256; i++) {
		for (size_t j = 0; j < sizeof(buf); j++)
			buf[j] = (unsigned char)t_mix((uint64_t)i << 20 | j);
		cr_assert_eq(write(rnd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	cr_assert_eq(shmq_heap_open_fd(rnd, 0, &h), -EPROTO, "1 MiB of random bytes");
	/* A shmq segment of another kind: a queue. */
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, NULL, &q), 0);
	cr_assert_eq(shmq_heap_open_fd(shmq_queue_fd(q), 0, &h), -EPROTO, "a queue's fd");
	cr_assert_null(h);
	shmq_queue_close(q);
	close(empty);
	close(zeros);
	close(rnd);
}

Test(heap, queue_and_heap_names_not_interchangeable, .timeout = T_TIMEOUT(10))
{
	const char *qn = t_name("q"), *hn = t_name("h");
	shmq_queue *q = NULL, *q2 = NULL;
	cr_assert_eq(shmq_queue_create(qn, NULL, &q), 0);
	shmq_heap *h = t_mkheap(hn, 0), *h2 = NULL;
	cr_assert_eq(shmq_heap_open(qn, 0, &h2), -EPROTO, "a queue opened as a heap");
	cr_assert_null(h2);
	cr_assert_eq(shmq_queue_open(hn, SHMQ_RD, &q2), -EPROTO, "a heap opened as a queue");
	cr_assert_null(q2);
	shmq_queue_close(q);
	shmq_heap_close(h);
	shmq_unlink(qn);
	shmq_unlink(hn);
}

Test(heap, unlink_removes_the_name_handles_keep_working)
{
	const char *name = t_name("unlink");
	shmq_heap *h = t_mkheap(name, 0), *h2 = NULL;
	char path[128];
	cr_assert_eq(shmq_unlink(name), 0);
	cr_assert_eq(access(dev_shm(name, path, sizeof(path)), F_OK), -1, "%s still exists", path);
	cr_assert_eq(shmq_heap_open(name, 0, &h2), -ENOENT);
	cr_assert_eq(shmq_unlink(name), -ENOENT);
	/* The heap itself lives on for its handle. */
	shmq_event *e = NULL;
	cr_assert_eq(shmq_event_create(h, "still", &e), 0);
	cr_assert_eq(shmq_event_set(e), 0);
	cr_assert_eq(shmq_event_is_set(e), 1);
	cr_assert_eq(shmq_event_close(e), 0);
	/* The name is free again for a new heap. */
	cr_assert_eq(shmq_heap_create(name, NULL, &h2), 0);
	cr_assert_eq(shmq_event_open(h2, "still", &e), -ENOENT, "the new heap is a new heap");
	cr_assert_eq(shmq_heap_close(h2), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
	cr_assert_eq(shmq_unlink(name), 0);
}

struct byname_sh {
	char name[64];
	_Atomic uint32_t ready, release;
	_Atomic int32_t err;
};

/* Opens the heap by name (a handle of its own, not the inherited one), then
 * an array in it, and writes it. */
static int child_opens_by_name(void *arg)
{
	struct byname_sh *s = arg;
	shmq_heap *h = NULL;
	shmq_array *a = NULL;
	int r = shmq_heap_open(s->name, 0, &h);
	if (r == 0)
		r = shmq_array_open(h, "cell", &a);
	if (r == 0)
		*(volatile uint64_t *)shmq_array_data(a) = 4242;
	s->err = r;
	t_post(&s->ready);
	if (r < 0)
		return 1;
	t_await(&s->release, 1, 20 * T_SEC);
	if (shmq_array_close(a) < 0 || shmq_heap_close(h) < 0)
		return 2;
	return 0;
}

/* At most SHMQ_MAX_PARTICIPANTS handles on a heap, all processes together:
 * one more is -EUSERS, and closing one makes room. */
Test(heap, participant_table_full_eusers, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, SHMQ_HEAP_MIN_MAX);
	static shmq_heap *hs[SHMQ_MAX_PARTICIPANTS];
	unsigned n = 0;
	int r;
	while (n < SHMQ_MAX_PARTICIPANTS && (r = shmq_heap_open_fd(shmq_heap_fd(h), 0, &hs[n])) == 0)
		n++;
	cr_assert_eq(n, SHMQ_MAX_PARTICIPANTS - 1, "%u more handles opened", n);
	cr_assert_eq(r, -EUSERS, "open with the table full: %d", r);
	cr_assert_eq(t_hstat(h).handles, SHMQ_MAX_PARTICIPANTS);
	cr_assert_eq(shmq_heap_close(hs[n / 2]), 0);
	cr_assert_eq(shmq_heap_open_fd(shmq_heap_fd(h), 0, &hs[n / 2]), 0, "no room after a close");
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(shmq_heap_close(hs[i]), 0);
	cr_assert_eq(t_hstat(h).handles, 1);
	shmq_heap_close(h);
}

Test(heap, forked_child_opens_by_name, .timeout = T_TIMEOUT(30))
{
	struct byname_sh *s = t_shared(sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%.60s", t_name("byname"));
	shmq_heap *h = t_mkheap(s->name, 0);
	shmq_array *a = array_ok(h, "cell", sizeof(uint64_t));
	pid_t pid = t_fork(child_opens_by_name, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(s->err, 0, "child: %d", s->err);
	cr_assert_eq(*(volatile uint64_t *)shmq_array_data(a), 4242);
	/* The parent's, the child's inherited one and the child's own. */
	cr_assert_eq(t_hstat(h).handles, 3, "handles %u", t_hstat(h).handles);
	t_set(&s->release, 1);
	int st;
	cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child exit %d", WEXITSTATUS(st));
	cr_assert_eq(t_hstat(h).handles, 1);
	cr_assert_eq(t_hstat(h).objects, 1);
	shmq_array_close(a);
	shmq_heap_close(h);
	shmq_unlink(s->name);
}

/* ============================================================== objects == */

Test(object, every_kind_create_open_name_close)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		char name[32];
		snprintf(name, sizeof(name), "obj-%s", kind_str[k]);
		void *o = create_ok(h, k, name);
		const char *n = obj_name(k, o);
		cr_assert_not_null(n, "%s_name", kind_str[k]);
		cr_assert_str_eq(n, name, "%s_name", kind_str[k]);
		void *o2 = open_ok(h, k, name);
		cr_assert_neq(o, o2, "open returned the same handle");
		cr_assert_str_eq(obj_name(k, o2), name);
		close_ok(k, o2);
		close_ok(k, o);
	}
	cr_assert_eq(t_hstat(h).objects, K_N, "named objects live on after their last close");
	for (int k = 0; k < K_N; k++) {
		char name[32];
		snprintf(name, sizeof(name), "obj-%s", kind_str[k]);
		cr_assert_eq(shmq_heap_remove(h, name), 0);
	}
	cr_assert_eq(t_hstat(h).objects, 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

Test(object, names_unique_across_kinds_eexist)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		void *o = create_ok(h, k, "same");
		struct shmq_heap_stat before = t_hstat(h), once = before;
		for (int round = 0; round < 100; round++) {
			for (int k2 = 0; k2 < K_N; k2++) {
				void *o2 = NULL;
				int r = obj_create(h, k2, "same", &o2);
				cr_assert_eq(r, -EEXIST, "%s \"same\" exists, %s_create: %d",
					     kind_str[k], kind_str[k2], r);
			}
			if (round == 0)
				once = t_hstat(h);
		}
		struct shmq_heap_stat after = t_hstat(h);
		ASSERT_LIVE_EQ(before, after, "failed creates");
		cr_assert_eq(once.used, after.used, "100 rounds of failed creates: used %llu -> %llu",
			     (unsigned long long)once.used, (unsigned long long)after.used);
		close_ok(k, o);
		cr_assert_eq(shmq_heap_remove(h, "same"), 0);
	}
	/* The same name in another heap is another object. */
	shmq_heap *h2 = t_mkheap(NULL, 0);
	shmq_array *a = array_ok(h, "n", 8), *b = array_ok(h2, "n", 8);
	*(volatile uint64_t *)shmq_array_data(a) = 1;
	*(volatile uint64_t *)shmq_array_data(b) = 2;
	cr_assert_eq(*(volatile uint64_t *)shmq_array_data(a), 1);
	shmq_array_close(a);
	shmq_array_close(b);
	shmq_heap_close(h);
	shmq_heap_close(h2);
}

Test(object, open_missing_name_enoent_every_kind)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		void *o = (void *)1;
		int r = obj_open(h, k, "nope", &o);
		cr_assert_eq(r, -ENOENT, "%s_open(nope): %d", kind_str[k], r);
	}
	cr_assert_eq(shmq_heap_remove(h, "nope"), -ENOENT);
	cr_assert_eq(t_hstat(h).handles, 1);
	shmq_heap_close(h);
}

Test(object, open_name_of_another_kind_einval)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	void *objs[K_N];
	for (int k = 0; k < K_N; k++)
		objs[k] = create_ok(h, k, kind_str[k]);
	for (int k = 0; k < K_N; k++)
		for (int k2 = 0; k2 < K_N; k2++) {
			if (k == k2)
				continue;
			void *o = NULL;
			int r = obj_open(h, k2, kind_str[k], &o);
			cr_assert_eq(r, -EINVAL, "%s_open of a %s: %d", kind_str[k2], kind_str[k], r);
		}
	for (int k = 0; k < K_N; k++)
		close_ok(k, objs[k]);
	shmq_heap_close(h);
}

Test(object, name_length_limits)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	char max[SHMQ_NAME_MAX], over[SHMQ_NAME_MAX + 1], way_over[1000];
	memset(max, 'm', sizeof(max) - 1);
	max[sizeof(max) - 1] = 0; /* SHMQ_NAME_MAX - 1 bytes: the longest */
	memset(over, 'o', sizeof(over) - 1);
	over[sizeof(over) - 1] = 0; /* SHMQ_NAME_MAX bytes */
	memset(way_over, 'w', sizeof(way_over) - 1);
	way_over[sizeof(way_over) - 1] = 0;
	for (int k = 0; k < K_N; k++) {
		void *o = NULL;
		struct shmq_heap_stat before = t_hstat(h);
		cr_assert_eq(obj_create(h, k, "", &o), -EINVAL, "%s: empty name", kind_str[k]);
		cr_assert_eq(obj_create(h, k, over, &o), -EINVAL, "%s: %u bytes", kind_str[k],
			     SHMQ_NAME_MAX);
		cr_assert_eq(obj_create(h, k, way_over, &o), -EINVAL, "%s: 999 bytes", kind_str[k]);
		cr_assert_eq(obj_open(h, k, "", &o), -EINVAL, "%s_open: empty", kind_str[k]);
		cr_assert_eq(obj_open(h, k, over, &o), -EINVAL, "%s_open: too long", kind_str[k]);
		ASSERT_LIVE_EQ(before, t_hstat(h), "failed creates");
		max[0] = (char)('a' + k); /* unique per kind */
		o = create_ok(h, k, max);
		cr_assert_str_eq(obj_name(k, o), max);
		void *o2 = open_ok(h, k, max);
		close_ok(k, o2);
		close_ok(k, o);
		cr_assert_eq(shmq_heap_remove(h, max), 0);
	}
	cr_assert_eq(shmq_heap_remove(h, ""), -EINVAL);
	cr_assert_eq(shmq_heap_remove(h, over), -EINVAL);
	cr_assert_eq(t_hstat(h).objects, 0);
	shmq_heap_close(h);
}

Test(object, null_arguments_einval)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_lock *l = NULL;
	shmq_sem *s = NULL;
	shmq_cond *c = NULL;
	shmq_event *e = NULL;
	shmq_barrier *b = NULL;
	shmq_array *a = NULL;
	cr_assert_eq(shmq_lock_create(NULL, "x", 0, &l), -EINVAL);
	cr_assert_eq(shmq_lock_create(h, "x", 0, NULL), -EINVAL);
	cr_assert_eq(shmq_lock_open(NULL, "x", &l), -EINVAL);
	cr_assert_eq(shmq_lock_open(h, NULL, &l), -EINVAL);
	cr_assert_eq(shmq_sem_create(NULL, "x", 1, 0, 0, &s), -EINVAL);
	cr_assert_eq(shmq_sem_create(h, "x", 1, 0, 0, NULL), -EINVAL);
	cr_assert_eq(shmq_sem_open(h, NULL, &s), -EINVAL);
	cr_assert_eq(shmq_cond_create(NULL, "x", NULL, &c), -EINVAL);
	cr_assert_eq(shmq_cond_create(h, "x", NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_cond_open(h, NULL, &c), -EINVAL);
	cr_assert_eq(shmq_event_create(NULL, "x", &e), -EINVAL);
	cr_assert_eq(shmq_event_create(h, "x", NULL), -EINVAL);
	cr_assert_eq(shmq_event_open(h, NULL, &e), -EINVAL);
	cr_assert_eq(shmq_barrier_create(NULL, "x", 2, &b), -EINVAL);
	cr_assert_eq(shmq_barrier_create(h, "x", 2, NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_open(h, NULL, &b), -EINVAL);
	cr_assert_eq(shmq_array_create(NULL, "x", 8, 0, &a), -EINVAL);
	cr_assert_eq(shmq_array_create(h, "x", 8, 0, NULL), -EINVAL);
	cr_assert_eq(shmq_array_open(h, NULL, &a), -EINVAL);
	cr_assert_eq(shmq_lock_close(NULL), -EINVAL);
	cr_assert_eq(shmq_sem_close(NULL), -EINVAL);
	cr_assert_eq(shmq_cond_close(NULL), -EINVAL);
	cr_assert_eq(shmq_event_close(NULL), -EINVAL);
	cr_assert_eq(shmq_barrier_close(NULL), -EINVAL);
	cr_assert_eq(shmq_array_close(NULL), -EINVAL);
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.objects, 0, "a failed create left %u objects", st.objects);
	/* "x" was never created by any of the failed calls. */
	cr_assert_eq(shmq_lock_open(h, "x", &l), -ENOENT);
	shmq_heap_close(h);
}

/* Anonymous objects of every kind get distinct names, no longer than
 * SHMQ_NAME_MAX - 1 bytes, by which this process and another one that holds
 * the heap open them. */
#define ANON_PER_KIND 50

struct anon_sh {
	char names[K_N * ANON_PER_KIND][SHMQ_NAME_MAX];
	_Atomic uint32_t opened, done;
	_Atomic int32_t err, err_at;
};

static int child_opens_anonymous(void *arg)
{
	struct anon_sh *s = ((void **)arg)[0];
	shmq_heap *h = ((void **)arg)[1];
	for (int i = 0; i < K_N * ANON_PER_KIND; i++) {
		int k = i / ANON_PER_KIND;
		void *o = NULL;
		int r = obj_open(h, k, s->names[i], &o);
		if (r == 0 && strcmp(obj_name(k, o), s->names[i]) != 0)
			r = -EBADMSG;
		if (r == 0 && k == K_ARRAY) /* leave a mark the parent checks */
			((volatile uint32_t *)shmq_array_data(o))[0] = 0xc0de0000u + (uint32_t)i;
		if (r == 0)
			r = obj_close(k, o);
		if (r < 0) {
			s->err = r;
			s->err_at = i;
			return 1;
		}
		t_post(&s->opened);
	}
	return 0;
}

Test(object, anonymous_names_unique_and_openable_by_another_process, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	struct anon_sh *s = t_shared(sizeof(*s));
	void *objs[K_N * ANON_PER_KIND];
	for (int i = 0; i < K_N * ANON_PER_KIND; i++) {
		int k = i / ANON_PER_KIND;
		objs[i] = create_ok(h, k, NULL);
		const char *n = obj_name(k, objs[i]);
		cr_assert_not_null(n, "anonymous %s has no name", kind_str[k]);
		size_t len = strnlen(n, SHMQ_NAME_MAX);
		cr_assert(len > 0 && len < SHMQ_NAME_MAX, "anonymous %s: name of %zu bytes",
			  kind_str[k], len);
		memcpy(s->names[i], n, len + 1);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(s->names[j], n, "objects %d and %d share the name %s", j, i,
					  n);
		/* This process opens it by name too: the same object. */
		void *o2 = open_ok(h, k, n);
		close_ok(k, o2);
	}
	cr_assert_eq(t_hstat(h).objects, K_N * ANON_PER_KIND);
	/* A name given to an anonymous object is taken: a named create fails. */
	void *o = NULL;
	cr_assert_eq(obj_create(h, K_LOCK, s->names[0], &o), -EEXIST);

	void *arg[2] = { s, h };
	pid_t pid = t_fork(child_opens_anonymous, arg);
	int st;
	cr_assert_eq(t_wait(pid, &st, 10 * LIVE), 0);
	cr_assert_eq(s->err, 0, "child: opening object %d (%s, %s) gave %d", s->err_at,
		     kind_str[s->err_at / ANON_PER_KIND], s->names[s->err_at], s->err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = K_ARRAY * ANON_PER_KIND; i < K_N * ANON_PER_KIND; i++)
		cr_assert_eq(((volatile uint32_t *)shmq_array_data(objs[i]))[0],
			     0xc0de0000u + (uint32_t)i, "the child opened another array");
	for (int i = 0; i < K_N * ANON_PER_KIND; i++)
		close_ok(i / ANON_PER_KIND, objs[i]);
	cr_assert_eq(t_hstat(h).objects, 0);
	shmq_heap_close(h);
}

Test(object, anonymous_object_freed_at_last_close)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		cr_assert_eq(t_hstat(h).objects, 0);
		void *o = create_ok(h, k, NULL);
		char name[SHMQ_NAME_MAX];
		snprintf(name, sizeof(name), "%s", obj_name(k, o));
		cr_assert_eq(t_hstat(h).objects, 1);
		void *o2 = open_ok(h, k, name);
		close_ok(k, o);
		cr_assert_eq(t_hstat(h).objects, 1, "%s freed while a handle is open", kind_str[k]);
		close_ok(k, o2);
		cr_assert_eq(t_hstat(h).objects, 0, "anonymous %s not freed at its last close",
			     kind_str[k]);
		void *o3 = NULL;
		cr_assert_eq(obj_open(h, k, name, &o3), -ENOENT, "freed %s still opens",
			     kind_str[k]);
		cr_assert_eq(shmq_heap_remove(h, name), -ENOENT);
	}
	shmq_heap_close(h);
}

Test(object, named_object_lives_until_remove_and_last_close)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		void *o = create_ok(h, k, "named");
		close_ok(k, o);
		cr_assert_eq(t_hstat(h).objects, 1, "named %s freed at close", kind_str[k]);
		o = open_ok(h, k, "named");
		cr_assert_eq(shmq_heap_remove(h, "named"), 0);
		cr_assert_eq(t_hstat(h).objects, 1, "removed %s freed while a handle is open",
			     kind_str[k]);
		void *o2 = NULL;
		cr_assert_eq(obj_open(h, k, "named", &o2), -ENOENT, "removed %s still opens",
			     kind_str[k]);
		cr_assert_eq(shmq_heap_remove(h, "named"), -ENOENT, "removed twice");
		/* The name is free for a new object while the old one lives. */
		void *fresh = create_ok(h, k, "named");
		cr_assert_eq(t_hstat(h).objects, 2);
		close_ok(k, o);
		cr_assert_eq(t_hstat(h).objects, 1, "removed %s not freed at its last close",
			     kind_str[k]);
		close_ok(k, fresh);
		cr_assert_eq(t_hstat(h).objects, 1);
		cr_assert_eq(shmq_heap_remove(h, "named"), 0);
		cr_assert_eq(t_hstat(h).objects, 0, "remove without handles did not free it");
	}
	shmq_heap_close(h);
}

/* A removed object lives on for its handles, apart from a new object
 * created under the same name. */
Test(object, old_handle_of_removed_object_still_works)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_array *a = array_ok(h, "old", 16);
	((volatile char *)shmq_array_data(a))[0] = 'o';
	cr_assert_eq(shmq_heap_remove(h, "old"), 0);
	shmq_array *b = array_ok(h, "old", 16);
	cr_assert_neq(shmq_array_data(a), shmq_array_data(b), "a new object in the old memory");
	cr_assert_eq(((volatile char *)shmq_array_data(b))[0], 0, "the new array is not zeroed");
	cr_assert_eq(((volatile char *)shmq_array_data(a))[0], 'o');
	shmq_array_close(a);
	shmq_array_close(b);
	shmq_heap_remove(h, "old");
	shmq_heap_close(h);
}

Test(object, heap_close_with_open_objects_ebusy_changes_nothing)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int k = 0; k < K_N; k++) {
		void *o = create_ok(h, k, NULL);
		struct shmq_heap_stat before = t_hstat(h);
		cr_assert_eq(shmq_heap_close(h), -EBUSY, "heap_close with a %s open", kind_str[k]);
		ASSERT_STAT_EQ(before, t_hstat(h), "heap_close -EBUSY");
		/* Still fully usable. */
		void *o2 = open_ok(h, k, obj_name(k, o));
		close_ok(k, o2);
		close_ok(k, o);
	}
	shmq_lock *l = NULL;
	cr_assert_eq(shmq_lock_create(h, "last", 0, &l), 0);
	cr_assert_eq(shmq_heap_close(h), -EBUSY);
	cr_assert_eq(shmq_lock_acquire(l, 0), 0);
	cr_assert_eq(shmq_lock_release(l), 0);
	cr_assert_eq(shmq_lock_close(l), 0);
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* Many named objects: the directory finds each by name, removes some, keeps
 * the others. */
#define MANY 20000

Test(object, twenty_thousand_named_objects_found_by_name, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (uint32_t i = 0; i < MANY; i++) {
		char name[32];
		snprintf(name, sizeof(name), "item-%u", i);
		shmq_array *a = NULL;
		int r = shmq_array_create(h, name, sizeof(uint32_t), SHMQ_NOLOCK, &a);
		if (r != 0)
			cr_assert_fail("create %s: %d", name, r);
		*(uint32_t *)shmq_array_data(a) = i;
		shmq_array_close(a);
	}
	cr_assert_eq(t_hstat(h).objects, MANY);
	for (uint32_t i = 0; i < MANY; i += 2) {
		char name[32];
		snprintf(name, sizeof(name), "item-%u", i);
		if (shmq_heap_remove(h, name) != 0)
			cr_assert_fail("remove %s", name);
	}
	cr_assert_eq(t_hstat(h).objects, MANY / 2);
	for (uint32_t i = 0; i < MANY; i++) {
		char name[32];
		snprintf(name, sizeof(name), "item-%u", i);
		shmq_array *a = NULL;
		int r = shmq_array_open(h, name, &a);
		if (i % 2 == 0) {
			if (r != -ENOENT)
				cr_assert_fail("removed %s opens: %d", name, r);
			continue;
		}
		if (r != 0)
			cr_assert_fail("open %s: %d", name, r);
		if (*(uint32_t *)shmq_array_data(a) != i)
			cr_assert_fail("%s holds %u", name, *(uint32_t *)shmq_array_data(a));
		shmq_array_close(a);
	}
	shmq_heap_close(h);
}

/* Processes race to create the same names: exactly one create of each name
 * succeeds, the others get -EEXIST. */
#define RACE_PROCS 6
#define RACE_NAMES 300

struct race_sh {
	shmq_heap *h;
	_Atomic uint32_t ready, go;
	_Atomic uint32_t wins[RACE_NAMES];
	_Atomic int32_t err;
};

static int name_racer(void *arg)
{
	struct race_sh *s = arg;
	t_post(&s->ready);
	t_await(&s->go, 1, 20 * T_SEC);
	for (int i = 0; i < RACE_NAMES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "race-%d", i);
		shmq_lock *l = NULL;
		int r = shmq_lock_create(s->h, name, 0, &l);
		if (r == 0) {
			atomic_fetch_add(&s->wins[i], 1);
			shmq_lock_close(l);
		} else if (r != -EEXIST) {
			s->err = r;
			return 1;
		}
	}
	return 0;
}

Test(object, racing_creates_of_one_name_exactly_one_wins, .timeout = T_TIMEOUT(60))
{
	struct race_sh *s = t_shared(sizeof(*s));
	s->h = t_mkheap(NULL, 0);
	pid_t p[RACE_PROCS];
	for (int i = 0; i < RACE_PROCS; i++)
		p[i] = t_fork(name_racer, s);
	cr_assert_eq(t_await(&s->ready, RACE_PROCS, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < RACE_PROCS; i++) {
		int st;
		cr_assert_eq(t_wait(p[i], &st, 10 * LIVE), 0);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "racer: err %d", s->err);
	}
	for (int i = 0; i < RACE_NAMES; i++)
		cr_assert_eq(s->wins[i], 1, "race-%d created %u times", i, s->wins[i]);
	cr_assert_eq(t_hstat(s->h).objects, RACE_NAMES);
	shmq_heap_close(s->h);
}

/* A condition keeps its lock alive: the lock's own handles closed and its
 * name removed, the condition still works, and both go at the last close. */
Test(object, condition_keeps_its_lock_alive)
{
	shmq_heap *h = t_mkheap(NULL, 0);
	shmq_lock *l = NULL;
	shmq_cond *c = NULL;
	cr_assert_eq(shmq_lock_create(h, "the-lock", 0, &l), 0);
	cr_assert_eq(shmq_cond_create(h, "the-cond", l, &c), 0);
	cr_assert_eq(shmq_lock_close(l), 0);
	cr_assert_eq(shmq_heap_remove(h, "the-lock"), 0);
	cr_assert_eq(t_hstat(h).objects, 2, "the condition's lock was freed under it");
	shmq_lock *cl = shmq_cond_lock(c);
	cr_assert_eq(shmq_lock_acquire(cl, 0), 0);
	cr_assert_eq(shmq_cond_wait(c, 1 * T_MS), -ETIMEDOUT);
	cr_assert_eq(shmq_lock_release(cl), 0);
	cr_assert_eq(shmq_cond_close(c), 0);
	/* The named condition stays, and with it its lock: opened again, it
	 * comes with a working lock. */
	cr_assert_eq(t_hstat(h).objects, 2);
	cr_assert_eq(shmq_cond_open(h, "the-cond", &c), 0);
	cr_assert_eq(shmq_lock_acquire(shmq_cond_lock(c), 0), 0);
	cr_assert_eq(shmq_cond_notify(c, 1), 0);
	cr_assert_eq(shmq_lock_release(shmq_cond_lock(c)), 0);
	cr_assert_eq(shmq_cond_close(c), 0);
	cr_assert_eq(shmq_heap_remove(h, "the-cond"), 0);
	cr_assert_eq(t_hstat(h).objects, 0, "the condition and its lock not freed");
	cr_assert_eq(shmq_heap_close(h), 0);
}

/* ================================================== fork and dead children == */

struct fork_sh {
	shmq_heap *h;
	shmq_lock *l;
	shmq_sem *s;
	shmq_event *e;
	shmq_array *a;
	_Atomic uint32_t ready, go, done;
	_Atomic int32_t err;
	uint32_t nnames;
	char names[32][SHMQ_NAME_MAX];
};

static int child_uses_inherited(void *arg)
{
	struct fork_sh *s = arg;
	int r;
	if ((r = shmq_lock_acquire(s->l, LIVE)) != 0)
		goto out;
	*(volatile uint64_t *)shmq_array_data(s->a) += 1;
	if ((r = shmq_lock_release(s->l)) != 0)
		goto out;
	if ((r = shmq_sem_release(s->s, 1)) != 0)
		goto out;
	if ((r = shmq_event_set(s->e)) != 0)
		goto out;
out:
	s->err = r;
	return r ? 1 : 0;
}

Test(fork, child_uses_parent_handles_without_reopening, .timeout = T_TIMEOUT(30))
{
	struct fork_sh *s = t_shared(sizeof(*s));
	s->h = t_mkheap(NULL, 0);
	cr_assert_eq(shmq_lock_create(s->h, NULL, 0, &s->l), 0);
	cr_assert_eq(shmq_sem_create(s->h, NULL, 0, 0, 0, &s->s), 0);
	cr_assert_eq(shmq_event_create(s->h, NULL, &s->e), 0);
	cr_assert_eq(shmq_array_create(s->h, NULL, 8, SHMQ_NOLOCK, &s->a), 0);
	*(volatile uint64_t *)shmq_array_data(s->a) = 41;
	pid_t pid = t_fork(child_uses_inherited, s);
	cr_assert_eq(shmq_event_wait(s->e, LIVE), 0, "the child's event_set never arrived");
	cr_assert_eq(shmq_sem_acquire(s->s, LIVE), 0, "the child's sem_release never arrived");
	int st;
	cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	cr_assert_eq(s->err, 0, "child: %d", s->err);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(shmq_lock_acquire(s->l, 0), 0);
	cr_assert_eq(*(volatile uint64_t *)shmq_array_data(s->a), 42);
	shmq_lock_release(s->l);
	struct shmq_heap_stat hs = t_hstat(s->h); /* the child's handles died with it */
	cr_assert_eq(hs.handles, 1, "handles %u after the child exited", hs.handles);
	cr_assert_eq(hs.objects, 4);
	shmq_lock_close(s->l);
	shmq_sem_close(s->s);
	shmq_event_close(s->e);
	shmq_array_close(s->a);
	cr_assert_eq(t_hstat(s->h).objects, 0);
	shmq_heap_close(s->h);
}

static int child_keeps_inherited(void *arg)
{
	struct fork_sh *s = arg;
	t_post(&s->ready);
	if (t_await(&s->go, 1, 20 * T_SEC) < 0)
		return 1;
	/* The parent has closed its handles: ours keep the objects alive. */
	volatile uint64_t *v = shmq_array_data(s->a);
	if (*v != 7)
		return 2;
	*v = 8;
	if (shmq_lock_acquire(s->l, 0) != 0 || shmq_lock_release(s->l) != 0)
		return 3;
	if (shmq_array_close(s->a) != 0 || shmq_lock_close(s->l) != 0)
		return 4;
	t_post(&s->done);
	if (t_await(&s->go, 2, 20 * T_SEC) < 0)
		return 5;
	return shmq_heap_close(s->h) == 0 ? 0 : 6;
}

Test(fork, child_holds_inherited_handles_after_parent_closes_its_own, .timeout = T_TIMEOUT(30))
{
	struct fork_sh *s = t_shared(sizeof(*s));
	s->h = t_mkheap(NULL, 0);
	cr_assert_eq(shmq_array_create(s->h, NULL, 8, 0, &s->a), 0);
	cr_assert_eq(shmq_lock_create(s->h, NULL, 0, &s->l), 0);
	*(volatile uint64_t *)shmq_array_data(s->a) = 7;
	pid_t pid = t_fork(child_keeps_inherited, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(t_hstat(s->h).handles, 2, "the child's inherited heap handle");
	cr_assert_eq(shmq_array_close(s->a), 0);
	cr_assert_eq(shmq_lock_close(s->l), 0);
	cr_assert_eq(t_hstat(s->h).objects, 2, "anonymous objects freed while the child holds them");
	t_set(&s->go, 1);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0, "child failed (state %c)", t_proc_state(pid));
	cr_assert_eq(t_hstat(s->h).objects, 0, "not freed at the child's last close");
	t_set(&s->go, 2);
	int st;
	cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child exit %d", WEXITSTATUS(st));
	cr_assert_eq(t_hstat(s->h).handles, 1);
	shmq_heap_close(s->h);
}

/* The child creates anonymous objects of every kind (and opens one of the
 * parent's), reports their names and waits to be killed, or exits without
 * closing anything. */
static int child_creates_and_waits(void *arg)
{
	struct fork_sh *s = arg;
	for (uint32_t i = 0; i < 2 * K_N; i++) {
		void *o = NULL;
		int r = obj_create(s->h, (int)(i % K_N), NULL, &o);
		if (r < 0) {
			s->err = r;
			return 1;
		}
		snprintf(s->names[i], SHMQ_NAME_MAX, "%s", obj_name((int)(i % K_N), o));
	}
	shmq_array *mine = NULL;
	if (shmq_array_open(s->h, "parents", &mine) < 0)
		return 2;
	s->nnames = 2 * K_N;
	t_post(&s->ready);
	t_await(&s->go, 1, 30 * T_SEC);
	return 0; /* exit without closing anything */
}

static void dead_child_releases(bool reap_first, bool exit_normally)
{
	struct fork_sh *s = t_shared(sizeof(*s));
	s->h = t_mkheap(NULL, 0);
	shmq_array *parents = array_ok(s->h, "parents", 8);
	struct shmq_heap_stat before = t_hstat(s->h);
	pid_t pid = t_fork(child_creates_and_waits, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(s->err, 0, "child create: %d", s->err);
	cr_assert_eq(t_hstat(s->h).objects, 1 + 2 * K_N);
	cr_assert_eq(t_hstat(s->h).handles, 2);
	/* They are real objects: the parent opens one (and closes it again). */
	void *o = open_ok(s->h, K_LOCK, s->names[K_LOCK]);
	close_ok(K_LOCK, o);
	if (exit_normally)
		t_set(&s->go, 1);
	else
		kill(pid, SIGKILL);
	int st;
	if (reap_first) {
		cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	} else {
		/* A zombie: dead, not reaped, its pid still taken. */
		int64_t deadline = t_now() + LIVE;
		while (t_proc_state(pid) != 'Z' && t_now() < deadline)
			t_nap(T_MS);
		cr_assert_eq(t_proc_state(pid), 'Z');
	}
	struct shmq_heap_stat after = t_hstat(s->h); /* notices the death */
	cr_assert_eq(after.objects, before.objects,
		     "%u objects after the child's death, %u before it (not released)",
		     after.objects, before.objects);
	cr_assert_eq(after.handles, 1, "the dead child's heap handle is still counted");
	for (uint32_t i = 0; i < s->nnames; i++) {
		void *x = NULL;
		cr_assert_eq(obj_open(s->h, (int)(i % K_N), s->names[i], &x), -ENOENT,
			     "the dead child's %s %s still opens", kind_str[i % K_N], s->names[i]);
	}
	if (!reap_first)
		cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	cr_assert_eq(t_hstat(s->h).objects, 1, "the parent's own object went too");
	shmq_array_close(parents);
	cr_assert_eq(shmq_heap_remove(s->h, "parents"), 0);
	shmq_heap_close(s->h);
}

Test(fork, child_sigkilled_its_anonymous_objects_freed_when_noticed, .timeout = T_TIMEOUT(30))
{
	dead_child_releases(true, false);
}

Test(fork, zombie_child_its_anonymous_objects_freed_when_noticed, .timeout = T_TIMEOUT(30))
{
	dead_child_releases(false, false);
}

Test(fork, child_exiting_without_closing_releases_its_objects, .timeout = T_TIMEOUT(30))
{
	dead_child_releases(true, true);
}

/* A process that exec()s loses its heap fd (close-on-exec): its handles are
 * released though it is still alive. */
Test(fork, child_that_execs_releases_its_handles, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	int p[2];
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		close(p[0]);
		shmq_lock *l = NULL;
		shmq_array *a = NULL;
		char names[2][SHMQ_NAME_MAX] = { { 0 } };
		if (shmq_lock_create(h, NULL, 0, &l) == 0 &&
		    shmq_array_create(h, NULL, 100, 0, &a) == 0) {
			snprintf(names[0], SHMQ_NAME_MAX, "%s", shmq_lock_name(l));
			snprintf(names[1], SHMQ_NAME_MAX, "%s", shmq_array_name(a));
		}
		if (write(p[1], names, sizeof(names)) != (ssize_t)sizeof(names))
			_exit(1);
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(2);
	}
	close(p[1]);
	char names[2][SHMQ_NAME_MAX];
	cr_assert_eq(read(p[0], names, sizeof(names)), (ssize_t)sizeof(names));
	cr_assert_neq(names[0][0], 0, "the child could not create its objects");
	char c;
	/* EOF: the child's exec closed the write end (close-on-exec). */
	cr_assert_eq(read(p[0], &c, 1), 0);
	close(p[0]);
	char state = t_proc_state(pid);
	cr_assert(state != 'Z' && state != 0, "the exec'd child died (state %c)", state);
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.objects, 0, "%u objects of an exec'd child still live", st.objects);
	cr_assert_eq(st.handles, 1, "the exec'd child's handle is still counted");
	shmq_lock *l = NULL;
	cr_assert_eq(shmq_lock_open(h, names[0], &l), -ENOENT);
	t_kill_reap(pid);
	shmq_heap_close(h);
}

/* ================================================================ growth == */

Test(growth, size_small_at_start_grows_on_demand, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	struct shmq_heap_stat st = t_hstat(h);
	/* Small: header, participant table, one growth step (not 1 GiB). */
	cr_assert_leq(st.size, 2 * MiB, "a new heap already has %llu bytes",
		      (unsigned long long)st.size);
	struct stat fst;
	cr_assert_eq(fstat(shmq_heap_fd(h), &fst), 0);
	cr_assert_leq((uint64_t)fst.st_size, 2 * MiB, "the file has %lld bytes",
		      (long long)fst.st_size);
	shmq_array *a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = array_ok(h, NULL, 8 * MiB);
		volatile unsigned char *d = shmq_array_data(a[i]);
		cr_assert_eq(d[0], 0);
		cr_assert_eq(d[8 * MiB - 1], 0);
		memset((void *)d, i + 1, 8 * MiB); /* every page is backed: no SIGBUS */
	}
	st = t_hstat(h);
	cr_assert_geq(st.size, 32 * MiB, "size %llu after 32 MiB of arrays",
		      (unsigned long long)st.size);
	cr_assert_geq(st.used, 32 * MiB);
	cr_assert_leq(st.size, st.max_size);
	cr_assert_eq(fstat(shmq_heap_fd(h), &fst), 0);
	cr_assert_geq((uint64_t)fst.st_size, 32 * MiB, "the file was not grown");
	for (int i = 0; i < 4; i++) {
		volatile unsigned char *d = shmq_array_data(a[i]);
		cr_assert_eq(d[0], i + 1);
		cr_assert_eq(d[8 * MiB - 1], i + 1);
		shmq_array_close(a[i]);
	}
	shmq_heap_close(h);
}

/* Objects never move: a second handle that mapped the heap while it was
 * small sees objects created after it grew. */
Test(growth, handle_opened_when_small_sees_later_big_objects, .timeout = T_TIMEOUT(30))
{
	shmq_heap *h = t_mkheap(NULL, 0), *h2 = NULL;
	cr_assert_eq(shmq_heap_open_fd(shmq_heap_fd(h), 0, &h2), 0);
	shmq_array *a = array_ok(h, "big", 16 * MiB), *b = NULL;
	((volatile unsigned char *)shmq_array_data(a))[16 * MiB - 1] = 0x5a;
	cr_assert_eq(shmq_array_open(h2, "big", &b), 0);
	cr_assert_eq(((volatile unsigned char *)shmq_array_data(b))[16 * MiB - 1], 0x5a);
	shmq_array_close(a);
	shmq_array_close(b);
	shmq_heap_close(h2);
	shmq_heap_close(h);
}

#define FULL_CHUNK (64 * KiB)

Test(growth, full_heap_enospc_changes_nothing, .timeout = T_TIMEOUT(60))
{
	shmq_heap *h = t_mkheap(NULL, 4 * MiB);
	shmq_array *a[200];
	unsigned n = 0;
	struct shmq_heap_stat before;
	int r;
	for (;;) {
		cr_assert_lt(n, 200, "a 4 MiB heap holds more than 200 arrays of 64 KiB");
		before = t_hstat(h);
		r = shmq_array_create(h, NULL, FULL_CHUNK, 0, &a[n]);
		if (r != 0)
			break;
		memset(shmq_array_data(a[n]), (int)(n + 1), FULL_CHUNK);
		n++;
	}
	cr_assert_eq(r, -ENOSPC, "array_create in a full heap: %d", r);
	cr_assert_geq(n, 16, "only %u arrays of 64 KiB in a 4 MiB heap", n);
	struct shmq_heap_stat after = t_hstat(h);
	ASSERT_STAT_EQ(before, after, "failed array_create");
	cr_assert_leq(after.size, 4 * MiB);
	/* Other kinds and sizes fail alike, and change nothing either. */
	shmq_array *x = NULL;
	cr_assert_eq(shmq_array_create(h, NULL, 1 * MiB, 0, &x), -ENOSPC);
	cr_assert_eq(shmq_array_create(h, "named", 1 * MiB, 0, &x), -ENOSPC);
	ASSERT_STAT_EQ(before, t_hstat(h), "more failed creates");
	cr_assert_eq(shmq_array_open(h, "named", &x), -ENOENT, "a failed create left its name");
	/* The arrays made before are intact. */
	for (unsigned i = 0; i < n; i++) {
		const unsigned char *d = shmq_array_data(a[i]);
		for (size_t j = 0; j < FULL_CHUNK; j++)
			if (d[j] != (unsigned char)(i + 1))
				cr_assert_fail("array %u byte %zu: %u, want %u", i, j, d[j],
					       (unsigned char)(i + 1));
		cr_assert_eq(shmq_array_size(a[i]), FULL_CHUNK);
	}
	/* A freed block is reused (nobody else can reach it): the heap is not
	 * full any more, and the reused memory is zero-filled. */
	cr_assert_eq(shmq_array_close(a[n / 2]), 0);
	r = shmq_array_create(h, NULL, FULL_CHUNK, 0, &a[n / 2]);
	cr_assert_eq(r, 0, "create after a close in a full heap: %d", r);
	const unsigned char *d = shmq_array_data(a[n / 2]);
	for (size_t j = 0; j < FULL_CHUNK; j++)
		if (d[j])
			cr_assert_fail("reused array not zero-filled at byte %zu: %u", j, d[j]);
	for (unsigned i = 0; i < n; i++)
		shmq_array_close(a[i]);
	cr_assert_eq(t_hstat(h).objects, 0);
	shmq_heap_close(h);
}

Test(growth, arrays_larger_than_the_heap_fail_cleanly)
{
	shmq_heap *h = t_mkheap(NULL, 4 * MiB);
	struct shmq_heap_stat before = t_hstat(h);
	shmq_array *a = NULL;
	size_t sizes[] = { 4 * MiB, 4 * MiB + 1, 1ull << 40, SIZE_MAX / 2, SIZE_MAX - 63, SIZE_MAX };
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int r = shmq_array_create(h, "huge", sizes[i], 0, &a);
		cr_assert(r == -ENOSPC || r == -EINVAL || r == -ENOMEM,
			  "array_create(%zu) in a 4 MiB heap: %d", sizes[i], r);
		ASSERT_STAT_EQ(before, t_hstat(h), "failed huge create");
	}
	cr_assert_eq(shmq_array_open(h, "huge", &a), -ENOENT);
	a = array_ok(h, "fits", 1 * MiB);
	shmq_array_close(a);
	shmq_heap_close(h);
}

/* ============================================================ reclamation == */

#define CHURN 1000000

Test(reclaim, million_anonymous_locks_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	uint64_t start_used = t_hstat(h).used;
	for (int i = 0; i < CHURN; i++) {
		shmq_lock *l = NULL;
		int r = shmq_lock_create(h, NULL, 0, &l);
		if (r != 0)
			cr_assert_fail("create %d: %d (used %llu)", i, r,
				       (unsigned long long)t_hstat(h).used);
		r = shmq_lock_close(l);
		if (r != 0)
			cr_assert_fail("close %d: %d", i, r);
	}
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.objects, 0);
	cr_assert_lt(st.used, 1 * MiB, "%d locks created and closed: %llu bytes used (%llu at start)",
		     CHURN, (unsigned long long)st.used, (unsigned long long)start_used);
	shmq_heap_close(h);
}

Test(reclaim, million_small_arrays_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int i = 0; i < CHURN; i++) {
		shmq_array *a = NULL;
		int r = shmq_array_create(h, NULL, 64, i & 1 ? SHMQ_NOLOCK : 0, &a);
		if (r != 0)
			cr_assert_fail("create %d: %d (used %llu)", i, r,
				       (unsigned long long)t_hstat(h).used);
		uint64_t *d = shmq_array_data(a);
		if (d[0] || d[7])
			cr_assert_fail("array %d not zero-filled", i);
		d[0] = d[7] = ~0ull;
		if (shmq_array_close(a) != 0)
			cr_assert_fail("close %d", i);
	}
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.objects, 0);
	cr_assert_lt(st.used, 1 * MiB, "%d arrays created and closed: %llu bytes used", CHURN,
		     (unsigned long long)st.used);
	shmq_heap_close(h);
}

Test(reclaim, named_create_close_remove_cycles_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	for (int i = 0; i < 200000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "n%d", i % 7);
		shmq_sem *s = NULL;
		int r = shmq_sem_create(h, name, 1, 0, 0, &s);
		if (r != 0)
			cr_assert_fail("create %d: %d", i, r);
		if (shmq_sem_close(s) != 0 || shmq_heap_remove(h, name) != 0)
			cr_assert_fail("close/remove %d", i);
	}
	struct shmq_heap_stat st = t_hstat(h);
	cr_assert_eq(st.objects, 0);
	cr_assert_lt(st.used, 1 * MiB, "used %llu", (unsigned long long)st.used);
	shmq_heap_close(h);
}

/* Another live process holds the heap (idle, in no call): it cannot reach
 * freed objects, so it must not keep their memory from being reused. */
struct idle_sh {
	_Atomic uint32_t ready, go;
};

static int idle_holder(void *arg)
{
	struct idle_sh *s = arg;
	t_post(&s->ready);
	t_await(&s->go, 1, 60 * T_SEC);
	return 0;
}

Test(reclaim, idle_process_holding_the_heap_does_not_block_reuse, .timeout = T_TIMEOUT(120))
{
	shmq_heap *h = t_mkheap(NULL, 0);
	struct idle_sh *s = t_shared(sizeof(*s));
	pid_t pid = t_fork(idle_holder, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	for (int i = 0; i < 200000; i++) {
		shmq_array *a = NULL;
		int r = shmq_array_create(h, NULL, 256, 0, &a);
		if (r != 0)
			cr_assert_fail("create %d: %d", i, r);
		if (shmq_array_close(a) != 0)
			cr_assert_fail("close %d", i);
	}
	struct shmq_heap_stat st = t_hstat(h);
	t_set(&s->go, 1);
	int wst;
	cr_assert_eq(t_wait(pid, &wst, LIVE), 0);
	cr_assert_eq(st.handles, 2);
	cr_assert_lt(st.used, 1 * MiB, "with an idle process attached: %llu bytes used",
		     (unsigned long long)st.used);
	shmq_heap_close(h);
}

/* Two processes churn at once (creates and closes interleave across
 * processes): memory stays bounded, nothing is left at the end. */
struct churn_sh {
	shmq_heap *h;
	_Atomic uint32_t ready, go;
	_Atomic int32_t err;
};

static int churner(void *arg)
{
	struct churn_sh *s = arg;
	t_post(&s->ready);
	t_await(&s->go, 1, 20 * T_SEC);
	for (int i = 0; i < 100000; i++) {
		shmq_lock *l = NULL;
		shmq_array *a = NULL;
		int r = shmq_lock_create(s->h, NULL, 0, &l);
		if (r == 0)
			r = shmq_array_create(s->h, NULL, 128, 0, &a);
		if (r == 0 && shmq_lock_acquire(l, 0) != 0)
			r = -EBADE;
		if (r == 0 && ((uint64_t *)shmq_array_data(a))[15] != 0)
			r = -EBADMSG; /* memory still in use by the other process? */
		if (r == 0)
			((uint64_t *)shmq_array_data(a))[15] = (uint64_t)getpid();
		if (r == 0)
			r = shmq_lock_release(l);
		if (r == 0)
			r = shmq_array_close(a);
		if (r == 0)
			r = shmq_lock_close(l);
		if (r < 0) {
			s->err = r;
			return 1;
		}
	}
	return 0;
}

Test(reclaim, two_processes_churning_in_bounded_memory, .timeout = T_TIMEOUT(120))
{
	struct churn_sh *s = t_shared(sizeof(*s));
	s->h = t_mkheap(NULL, 0);
	pid_t p[2];
	for (int i = 0; i < 2; i++)
		p[i] = t_fork(churner, s);
	cr_assert_eq(t_await(&s->ready, 2, LIVE), 0);
	t_set(&s->go, 1);
	for (int i = 0; i < 2; i++) {
		int st;
		cr_assert_eq(t_wait(p[i], &st, 60 * T_SEC * T_SCALE), 0, "churner %d hangs", i);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "churner %d: exit %d, err %d", i,
			  WEXITSTATUS(st), s->err);
	}
	struct shmq_heap_stat st = t_hstat(s->h);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.handles, 1);
	cr_assert_lt(st.used, 1 * MiB, "used %llu", (unsigned long long)st.used);
	shmq_heap_close(s->h);
}

/* ======================================================= hostile segments == */

/* A named heap with an object, closed; returns its file size, and *used
 * the bytes its allocator had carved (NULL: not wanted). */
static off_t make_closed_heap_used(const char *name, uint64_t *used)
{
	shmq_heap *h = t_mkheap(name, 0);
	shmq_array *a = array_ok(h, "payload", 256 * KiB);
	memset(shmq_array_data(a), 0x77, 256 * KiB);
	shmq_array_close(a);
	if (used)
		*used = t_hstat(h).used;
	cr_assert_eq(shmq_heap_close(h), 0);
	/* Sanity: intact, it opens. */
	cr_assert_eq(shmq_heap_open(name, 0, &h), 0, "the intact heap does not open");
	cr_assert_eq(shmq_heap_close(h), 0);
	char path[128];
	struct stat st;
	cr_assert_eq(stat(dev_shm(name, path, sizeof(path)), &st), 0);
	return st.st_size;
}

static off_t make_closed_heap(const char *name)
{
	return make_closed_heap_used(name, NULL);
}

/* Map the named heap's file separately and run fn over its first n bytes. */
static unsigned char *map_file(const char *name, size_t *n)
{
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	*n = (size_t)st.st_size;
	void *p = mmap(NULL, *n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	close(fd);
	return p;
}

static void expect_open_eproto(const char *name, const char *what)
{
	shmq_heap *h = NULL;
	int r = shmq_heap_open(name, 0, &h);
	cr_assert_eq(r, -EPROTO, "%s: heap_open gave %d", what, r);
	cr_assert_null(h);
	/* The same through an fd. */
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	r = shmq_heap_open_fd(fd, 0, &h);
	close(fd);
	cr_assert_eq(r, -EPROTO, "%s: heap_open_fd gave %d", what, r);
}

Test(hostile, zeroed_magic_eproto, .timeout = T_TIMEOUT(10))
{
	const char *name = t_name("magic");
	make_closed_heap(name);
	size_t n;
	unsigned char *p = map_file(name, &n);
	memset(p, 0, 8);
	expect_open_eproto(name, "first 8 bytes zeroed");
	memset(p, 0, 64);
	expect_open_eproto(name, "first 64 bytes zeroed");
	memset(p, 0, n < 65536 ? n : 65536);
	expect_open_eproto(name, "first 64 KiB zeroed");
	munmap(p, n);
	shmq_unlink(name);
}

Test(hostile, random_header_bytes_eproto, .timeout = T_TIMEOUT(30))
{
	const char *name = t_name("random");
	make_closed_heap(name);
	size_t n;
	unsigned char *p = map_file(name, &n);
	size_t span = n < 4096 ? n : 4096;
	unsigned char *orig = malloc(span);
	memcpy(orig, p, span);
	for (uint64_t seed = 1; seed <= 64; seed++) {
		for (size_t i = 0; i < span; i++)
			p[i] = (unsigned char)t_mix(seed << 32 | i);
		char what[64];
		snprintf(what, sizeof(what), "first 4 KiB random (seed %llu)",
			 (unsigned long long)seed);
		expect_open_eproto(name, what);
	}
	/* Random bytes after an intact magic (the first 8 bytes). */
	for (uint64_t seed = 1; seed <= 64; seed++) {
		memcpy(p, orig, span);
		for (size_t i = 8; i < span; i++)
			p[i] = (unsigned char)t_mix(seed << 40 | i);
		char what[64];
		snprintf(what, sizeof(what), "bytes 8..4095 random (seed %llu)",
			 (unsigned long long)seed);
		expect_open_eproto(name, what);
	}
	free(orig);
	munmap(p, n);
	shmq_unlink(name);
}

Test(hostile, truncated_file_eproto, .timeout = T_TIMEOUT(10))
{
	const char *name = t_name("trunc");
	make_closed_heap(name);
	char path[128];
	dev_shm(name, path, sizeof(path));
	cr_assert_eq(truncate(path, 4096), 0);
	expect_open_eproto(name, "truncated to 4096 bytes");
	cr_assert_eq(truncate(path, 100), 0);
	expect_open_eproto(name, "truncated to 100 bytes");
	cr_assert_eq(truncate(path, 0), 0);
	expect_open_eproto(name, "truncated to 0 bytes");
	shmq_unlink(name);
}

/* Truncated below the end of what the allocator carved (the 256 KiB array
 * is most of it): either open refuses the heap, or it opens and refuses the
 * object that now lies past the end of the file; never SIGBUS. */
Test(hostile, truncated_below_allocated_objects_never_sigbus, .timeout = T_TIMEOUT(10))
{
	const char *name = t_name("trunc2");
	uint64_t used;
	off_t size = make_closed_heap_used(name, &used);
	char path[128];
	dev_shm(name, path, sizeof(path));
	cr_assert_geq((uint64_t)size, used);
	off_t cut = (off_t)(used / 2) & ~(off_t)4095;
	cr_assert_eq(truncate(path, cut), 0);
	shmq_heap *h = NULL;
	int r = shmq_heap_open(name, 0, &h);
	cr_assert(r == 0 || r == -EPROTO, "heap_open of a truncated heap: %d", r);
	if (r == 0) {
		shmq_array *a = NULL;
		r = shmq_array_open(h, "payload", &a);
		cr_assert_eq(r, -EPROTO, "an array past the end of the file opened: %d", r);
		struct shmq_heap_stat st;
		shmq_heap_stat(h, &st); /* any result, no crash */
		cr_assert_eq(shmq_heap_close(h), 0);
	}
	shmq_unlink(name);
}

/* Every single-byte change of the first KiB: open gives 0 or -EPROTO, never
 * a crash; an open that succeeds leaves a usable handle. */
Test(hostile, single_byte_flips_of_the_header_never_crash, .timeout = T_TIMEOUT(120))
{
	const char *name = t_name("flip");
	make_closed_heap(name);
	size_t n;
	unsigned char *p = map_file(name, &n);
	size_t span = n < 1024 ? n : 1024;
	unsigned opened = 0, refused = 0;
	for (size_t i = 0; i < span; i++) {
		static const unsigned char flips[] = { 0x01, 0x80, 0xff };
		for (unsigned f = 0; f < sizeof(flips); f++) {
			unsigned char saved = p[i];
			p[i] ^= flips[f];
			shmq_heap *h = NULL;
			int r = shmq_heap_open(name, 0, &h);
			cr_assert(r == 0 || r == -EPROTO, "byte %zu ^ 0x%02x: heap_open gave %d", i,
				  flips[f], r);
			if (r == 0) {
				opened++;
				struct shmq_heap_stat st;
				shmq_heap_stat(h, &st);
				shmq_array *a = NULL;
				if (shmq_array_open(h, "payload", &a) == 0)
					shmq_array_close(a);
				cr_assert_eq(shmq_heap_close(h), 0, "byte %zu ^ 0x%02x", i, flips[f]);
			} else {
				refused++;
			}
			p[i] = saved;
		}
	}
	cr_log_info("byte flips: %u opened, %u refused", opened, refused);
	cr_assert_gt(refused, 0, "no byte flip was ever refused: is the header checked at all?");
	munmap(p, n);
	shmq_unlink(name);
}

/* A peer scribbles over a whole live heap while this process holds it: the
 * calls that follow may fail, but must return (within their timeouts plus a
 * bound) and never crash. Run in a child so that a crash is reported as
 * such. */
static int scribbled_user(void *arg)
{
	const char *name = arg;
	for (uint64_t seed = 1; seed <= 20; seed++) {
		shmq_heap *h = NULL;
		if (shmq_heap_open(name, 0, &h) != 0)
			return 1;
		shmq_lock *l = NULL;
		shmq_array *a = NULL;
		shmq_sem *s = NULL;
		shmq_lock_open(h, "lock", &l);
		shmq_array_open(h, "payload", &a);
		shmq_sem_open(h, "sem", &s);
		size_t n;
		int fd = shm_open(name, O_RDWR, 0);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0)
			return 2;
		n = (size_t)st.st_size;
		unsigned char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (p == MAP_FAILED)
			return 3;
		unsigned char *orig = malloc(n);
		memcpy(orig, p, n);
		for (size_t i = 0; i < n; i++)
			p[i] = (unsigned char)t_mix(seed << 40 | i);
		int64_t t0 = t_now();
		struct shmq_heap_stat hs;
		shmq_heap_stat(h, &hs);
		shmq_lock *l2 = NULL;
		shmq_array *a2 = NULL;
		if (shmq_lock_create(h, NULL, 0, &l2) == 0)
			shmq_lock_close(l2);
		if (shmq_array_create(h, "new", 4096, 0, &a2) == 0)
			shmq_array_close(a2);
		if (l && shmq_lock_acquire(l, 20 * T_MS) == 0)
			shmq_lock_release(l);
		if (s && shmq_sem_acquire(s, 20 * T_MS) == 0)
			shmq_sem_release(s, 1);
		shmq_heap_remove(h, "new");
		if (t_now() - t0 > 5 * T_SEC * T_SCALE)
			return 4; /* hung for a while */
		/* Put the bytes back before closing, so the next round starts
		 * from a valid heap. */
		memcpy(p, orig, n);
		free(orig);
		munmap(p, n);
		if (l)
			shmq_lock_close(l);
		if (a)
			shmq_array_close(a);
		if (s)
			shmq_sem_close(s);
		shmq_heap_close(h);
	}
	return 0;
}

Test(hostile, scribbled_live_heap_calls_return_never_crash, .timeout = T_TIMEOUT(60))
{
	static char name[64];
	snprintf(name, sizeof(name), "%.60s", t_name("scribble"));
	shmq_heap *h = t_mkheap(name, 0);
	shmq_lock *l = NULL;
	shmq_sem *s = NULL;
	shmq_array *a = array_ok(h, "payload", 4096);
	cr_assert_eq(shmq_lock_create(h, "lock", 0, &l), 0);
	cr_assert_eq(shmq_sem_create(h, "sem", 1, 1, SHMQ_UNDO, &s), 0);
	shmq_lock_close(l);
	shmq_sem_close(s);
	shmq_array_close(a);
	cr_assert_eq(shmq_heap_close(h), 0);
	pid_t pid = t_fork(scribbled_user, name);
	int st;
	int r = t_wait(pid, &st, 40 * T_SEC * T_SCALE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "calls on a scribbled heap hang");
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child on a scribbled heap: %s",
		  t_status_str(st, sb, sizeof(sb)));
	shmq_unlink(name);
}
