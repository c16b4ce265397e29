/* Eventfd layer: registrations in the segment, signalled by producers. */
#include "efd.h"
#include "part.h"
#include "wait.h"

#include "shmq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

void efd_init(struct seg *s)
{
	for (unsigned i = 0; i < SEG_EFDS; i++)
		s->efd_cache[i].fd = -1;
	pthread_mutex_init(&s->efd_lock, NULL);
}

void efd_fini(struct seg *s)
{
	for (unsigned i = 0; i < SEG_EFDS; i++)
		if (s->efd_cache[i].fd >= 0)
			close(s->efd_cache[i].fd);
	pthread_mutex_destroy(&s->efd_lock);
}

int efd_register(struct seg *s, int slot, uint32_t tag, int fd)
{
	atomic_store(&s->parts[slot].efd, fd + 1);
	for (unsigned i = 0; i < SEG_EFDS; i++) {
		uint32_t free_reg = 0;
		if (atomic_compare_exchange_strong(&s->hdr->efd_reg[i], &free_reg, tag + 1))
			return 0;
	}
	atomic_store(&s->parts[slot].efd, 0);
	return -EUSERS;
}

void efd_unregister(struct seg *s, int slot, uint32_t tag)
{
	for (unsigned i = 0; i < SEG_EFDS; i++) {
		uint32_t reg = tag + 1;
		atomic_compare_exchange_strong(&s->hdr->efd_reg[i], &reg, 0);
	}
	atomic_store(&s->parts[slot].efd, 0);
}

void efd_kick(int fd)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is at its maximum, readable anyway. */
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Is fd an eventfd? A registration is shared memory, which a hostile peer
 * can forge to name any fd of ours or of the registrant: never write to
 * anything else. */
static bool is_eventfd(int fd)
{
	char path[64], target[32];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* A dup of the fd that registration reg names, or -1. The registrant's
 * liveness is checked after pidfd_open, so the fd taken is the registrant's,
 * not a reused pid's. */
static int efd_dup(struct seg *s, uint32_t reg)
{
	uint32_t tag = reg - 1;
	int slot = (int)(tag & (SHMQ_MAX_PARTICIPANTS - 1));
	int32_t fdno = atomic_load(&s->parts[slot].efd) - 1;
	pid_t pid = part_tag_pid(&s->pt, tag);
	if (fdno < 0 || pid <= 0)
		return -1;
	if (pid == getpid())
		return fcntl(fdno, F_DUPFD_CLOEXEC, 0);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -1;
	int fd = part_tag_gone(&s->pt, tag) ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, fdno, 0);
	close(pidfd);
	return fd;
}

/* Our reference to the eventfd of registration reg, or -1 (gone, no
 * permission, or not an eventfd). */
static int efd_fetch(struct seg *s, uint32_t reg)
{
	int fd = efd_dup(s, reg);
	if (fd >= 0 && !is_eventfd(fd)) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void efd_signal_all(struct seg *s)
{
	pthread_mutex_lock(&s->efd_lock);
	for (unsigned i = 0; i < SEG_EFDS; i++) {
		uint32_t reg = atomic_load(&s->hdr->efd_reg[i]);
		if (reg != s->efd_cache[i].reg) {
			if (s->efd_cache[i].fd >= 0)
				close(s->efd_cache[i].fd);
			s->efd_cache[i].reg = reg;
			s->efd_cache[i].fd = reg ? efd_fetch(s, reg) : -1;
			if (reg && s->efd_cache[i].fd < 0 && part_tag_gone(&s->pt, reg - 1))
				atomic_compare_exchange_strong(&s->hdr->efd_reg[i], &reg, 0);
		}
		if (s->efd_cache[i].fd >= 0)
			efd_kick(s->efd_cache[i].fd);
	}
	pthread_mutex_unlock(&s->efd_lock);
}

void efd_notify_data(struct seg *s, int n)
{
	_Atomic uint32_t *ec = &s->hdr->ec_data;
	bool armed = n == EFD_ALL ? ec_notify(ec) : ec_notify_n(ec, n);
	if (!armed)
		return;
	for (unsigned i = 0; i < SEG_EFDS; i++)
		if (atomic_load_explicit(&s->hdr->efd_reg[i], memory_order_relaxed)) {
			efd_signal_all(s);
			return;
		}
}
