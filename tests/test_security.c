/* Security of named segments: created 0600 and O_EXCL (a file planted under
 * the name is never adopted), segments owned by another user refused unless
 * SHMQ_FOREIGN is asked for, and a segment truncated by a peer while others
 * have it mapped refused at open (-EPROTO) instead of faulting (SIGBUS). */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE)
#define NOBODY 65534 /* uid and gid of "nobody" on Debian */

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip("needs root (to own a segment as another user)");
}

/* ------------------------------------------------------ mode and O_EXCL -- */

/* An attacker who creates the name first (world-writable, with content of
 * its choice) must not get the creator to use its file. */
Test(excl, create_over_planted_file_eexist_file_untouched)
{
	const char *name = t_name("plant");
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0666);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fchmod(fd, 0666), 0);
	cr_assert_eq(write(fd, "planted", 7), 7);
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(name, NULL, &q), -EEXIST);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 7, "the planted file was resized to %lld",
		     (long long)st.st_size);
	cr_assert_eq(st.st_mode & 07777, 0666, "the planted file's mode changed");
	close(fd);
	/* The failed create must not have removed the attacker's name either
	 * (it is not ours), nor may it be opened as a queue. */
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &q), -EPROTO);
	cr_assert_eq(shm_unlink(name), 0);
}

Test(excl, default_mode_0600_for_a_queue_created_without_roles)
{
	const char *name = t_name("mode");
	struct shmq_queue_attr a = t_attr(0, 0);
	a.flags = SHMQ_NOROLES;
	mode_t old = umask(0);
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(name, &a, &q), 0);
	umask(old);
	char path[128];
	struct stat st;
	snprintf(path, sizeof(path), "/dev/shm/%s", name + 1);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	shmq_queue_close(q);
	shmq_unlink(name);
}

/* --------------------------------------------------- another user's segment -- */

struct foreign_sh {
	char name[64];
	_Atomic uint32_t created, done;
	_Atomic int32_t err;
};

/* A process of user nobody creates a queue (mode 0666, so that only the
 * owner check, not the permission bits, can refuse it) and puts a message. */
static int nobody_creates(void *arg)
{
	struct foreign_sh *s = arg;
	if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return 1;
	/* setuid cleared the parent-death signal that t_fork set. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shmq_queue_attr a = t_attr(0, 0);
	a.mode = 0666;
	shmq_queue *q = NULL;
	int r = shmq_queue_create(s->name, &a, &q);
	if (r == 0)
		r = t_put_msg(q, 0, 7, 123, 0);
	s->err = r;
	t_post(&s->created);
	t_await(&s->done, 1, 30 * T_SEC * T_SCALE); /* keep the producer role meanwhile */
	return r == 0 ? 0 : 2;
}

Test(foreign, other_users_segment_eacces_unless_shmq_foreign, .timeout = T_TIMEOUT(30))
{
	need_root();
	struct foreign_sh *s = t_shared(sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%.60s", t_name("foreign"));
	pid_t pid = t_fork(nobody_creates, s);
	cr_assert_eq(t_await(&s->created, 1, LIVE), 0);
	cr_assert_eq(s->err, 0, "nobody could not create its queue: %d", s->err);

	shmq_queue *q = NULL;
	/* Refused for every role, even by root, even with 0666 bits. */
	for (int roles = 0; roles <= SHMQ_RDWR; roles++)
		cr_assert_eq(shmq_queue_open(s->name, roles, &q), -EACCES, "roles %d", roles);
	cr_assert_eq(shmq_queue_open(s->name, SHMQ_RD | SHMQ_FOREIGN, &q), 0);
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), 123, "the owner's message");
	cr_assert_eq(tmsg_check_exact(buf, 123, 0, 7, 123), TMSG_OK);

	/* The same through an fd: the segment is still nobody's. */
	shmq_queue *q2 = NULL;
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD, &q2), -EACCES);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD | SHMQ_FOREIGN, &q2), 0);
	shmq_queue_close(q2);
	shmq_queue_close(q);

	t_set(&s->done, 1);
	int st;
	cr_assert_eq(t_wait(pid, &st, LIVE), 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	shm_unlink(s->name);
}

/* A segment handed over by fd (here: our own, chowned to nobody) is refused
 * the same way; a refused open leaves no trace (no participant, no role). */
Test(foreign, chowned_segment_by_fd_eacces_and_no_trace)
{
	need_root();
	const char *name = t_name("chown");
	shmq_queue *q = t_create_named(name, NULL), *o = NULL;
	int fd = shmq_queue_fd(q);
	cr_assert_eq(fchown(fd, NOBODY, NOBODY), 0);
	struct shmq_stat before, after;
	cr_assert_eq(shmq_queue_stat(q, &before), 0);
	cr_assert_eq(shmq_queue_open_fd(fd, SHMQ_RDWR, &o), -EACCES);
	cr_assert_eq(shmq_queue_open(name, SHMQ_WR, &o), -EACCES);
	cr_assert_eq(shmq_queue_stat(q, &after), 0);
	cr_assert_eq(after.producers, before.producers);
	cr_assert_eq(after.consumers, before.consumers);
	/* Flags other than SHMQ_FOREIGN stay bad arguments. */
	cr_assert_eq(shmq_queue_open_fd(fd, SHMQ_RD | 0x200, &o), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(fd, 4 | SHMQ_FOREIGN, &o), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(fd, SHMQ_RDWR | SHMQ_FOREIGN, &o), 0);
	t_roundtrip(q, o, 1);
	t_roundtrip(o, q, 2);
	shmq_queue_close(o);

	/* Owned by us again: accepted without the flag. */
	cr_assert_eq(fchown(fd, geteuid(), getegid()), 0);
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &o), 0);
	shmq_queue_close(o);
	shmq_queue_close(q);
	shmq_unlink(name);
}

Test(foreign, anonymous_segment_of_another_user_eacces)
{
	need_root();
	shmq_queue *q = NULL, *o = NULL;
	cr_assert_eq(shmq_queue_create(NULL, NULL, &q), 0);
	cr_assert_eq(fchown(shmq_queue_fd(q), NOBODY, NOBODY), 0);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD, &o), -EACCES);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD | SHMQ_FOREIGN, &o), 0);
	t_roundtrip(q, o, 3);
	shmq_queue_close(o);
	shmq_queue_close(q);
}

/* ------------------------------------------------ truncated under attached -- */

struct trunc_sh {
	char name[64];
	_Atomic uint32_t attached, truncated, done;
};

static int attached_consumer(void *arg)
{
	struct trunc_sh *s = arg;
	shmq_queue *q = NULL;
	if (shmq_queue_open(s->name, SHMQ_RD, &q) < 0)
		return 1;
	t_post(&s->attached);
	t_await(&s->done, 1, -1); /* mapped, never touching it again */
	return 0;
}

static int truncating_peer(void *arg)
{
	struct trunc_sh *s = arg;
	int fd = shm_open(s->name, O_RDWR, 0);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || ftruncate(fd, st.st_size / 2) < 0)
		return 1;
	t_post(&s->truncated);
	return 0;
}

/* A peer shrinks a named segment that the test process and a consumer have
 * mapped. New opens, by name and by fd, must see it and give -EPROTO rather
 * than map it and fault (SIGBUS) on the missing pages. Growing it back to
 * size makes it a valid segment again (its cells zeroed: an empty ring). */
Test(truncate, open_after_truncate_under_attached_handles_eproto, .timeout = T_TIMEOUT(30))
{
	struct trunc_sh *s = t_shared(sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%.60s", t_name("trunc"));
	shmq_queue *q = t_create_named(s->name, NULL), *o = NULL;
	struct shmq_stat st0;
	cr_assert_eq(shmq_queue_stat(q, &st0), 0);
	pid_t cons = t_fork(attached_consumer, s);
	cr_assert_eq(t_await(&s->attached, 1, LIVE), 0);
	pid_t peer = t_fork(truncating_peer, s);
	cr_assert_eq(t_await(&s->truncated, 1, LIVE), 0);
	int stp;
	cr_assert_eq(t_wait(peer, &stp, LIVE), 0);
	cr_assert(WIFEXITED(stp) && WEXITSTATUS(stp) == 0);

	cr_assert_eq(shmq_queue_open(s->name, SHMQ_RD, &o), -EPROTO);
	cr_assert_eq(shmq_queue_open(s->name, 0, &o), -EPROTO);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_WR, &o), -EPROTO);

	cr_assert_eq(ftruncate(shmq_queue_fd(q), (off_t)st0.size), 0);
	cr_assert_eq(shmq_queue_open(s->name, SHMQ_RD, &o), 0);
	cr_assert_eq(shmq_qsize(o), 0);
	t_roundtrip(q, o, 4);
	shmq_queue_close(o);

	t_set(&s->done, 1);
	int stc;
	cr_assert_eq(t_wait(cons, &stc, LIVE), 0);
	cr_assert(WIFEXITED(stc) && WEXITSTATUS(stc) == 0);
	shmq_queue_close(q);
	shmq_unlink(s->name);
}
