/* Eventfd layer: a handle may register an eventfd that producers signal when
 * data arrives, so a queue can sit in an epoll/libuv/asyncio loop without a
 * thread.
 *
 * The eventfd lives in the registrant's process; a producer in another
 * process gets its own reference with pidfd_getfd(2) (Linux 5.6, and the
 * permission to ptrace the registrant: same user, or CAP_SYS_PTRACE) and
 * keeps it in struct seg's cache. Producers signal only when the data
 * eventcount's "waiters" bit is set: the registrant sets it (arms) whenever
 * it finds the queue empty, so a burst of puts costs one signal, not one
 * per message.
 */
#ifndef SHMQ_EFD_H
#define SHMQ_EFD_H

#include "seg.h"

#include <limits.h>
#include <stdint.h>

void efd_init(struct seg *s);
/* Close our dups of other processes' eventfds. */
void efd_fini(struct seg *s);
/* Register eventfd fd for the handle of participant slot/tag.
 * Returns 0; -EUSERS (SEG_EFDS registrations already). */
int efd_register(struct seg *s, int slot, uint32_t tag, int fd);
void efd_unregister(struct seg *s, int slot, uint32_t tag);
/* n messages (EFD_ALL: end of data, or a change every waiter must see) came
 * in: wake n of the consumers parked in a get and every other waiter on
 * ec_data, and signal the registered eventfds if one is armed. One load when
 * nobody waits. */
#define EFD_ALL INT_MAX
void efd_notify_data(struct seg *s, int n);
/* Make eventfd fd readable. */
void efd_kick(int fd);

#endif
