/* Test hooks: compiled in only with -DSHMQ_TEST_HOOKS (the libshmq_test
 * library the test suites link), so tests can stop or kill a process at the
 * exact instruction that matters. Never part of the installed library. */
#ifndef SHMQ_TESTHOOK_H
#define SHMQ_TESTHOOK_H

enum shmq_hook_point {
	SHMQ_HOOK_PUT_CLAIMED, /* producer owns its cells, nothing published yet */
	SHMQ_HOOK_GET_CLAIMED, /* consumer owns a message, not yet released */
	SHMQ_HOOK_DICT_INTENT, /* a dict writer's intent is recorded, nothing
				  published: a death here is rolled back */
	SHMQ_HOOK_DICT_PUBLISHED, /* its change is visible, count and retire
				     not done: a death here is rolled forward */
	SHMQ_HOOK_LIST_INTENT, /* a list change is recorded, not applied */
	SHMQ_HOOK_CHAN_PROMOTE, /* a reader fired a waiting writer whose message
				   goes into the buffer, not moved yet: a death
				   here is rolled forward */
	SHMQ_HOOK_QUEUE_WOKEN, /* a put or get parked on its queue came back
				  woken (not at the end of its slice) */
};

#ifdef SHMQ_TEST_HOOKS
#include <stdbool.h>
extern void (*shmq_test_hook)(enum shmq_hook_point where);
extern bool shmq_test_no_waitv; /* act as if the kernel lacked futex_waitv */
#define TEST_HOOK(where)                        \
	do {                                    \
		if (shmq_test_hook)             \
			shmq_test_hook(where);  \
	} while (0)
#else
#define TEST_HOOK(where) ((void)0)
#endif

#endif
