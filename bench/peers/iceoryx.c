/* Eclipse iceoryx publish/subscribe through its C binding (zero-copy: the
 * publisher loans a chunk in shared memory, writes the message in place and
 * publishes it; the subscriber reads it in place and releases it). The bench
 * starts iox-roudi itself (once, with a mempool config sized for the
 * benchmark's messages, process monitoring off) and stops it at exit.
 * Lossless settings: publisher waits for a slow subscriber
 * (ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER), subscriber queue at its maximum
 * capacity with QueueFullPolicy_BLOCK_PRODUCER; the subscriber sleeps in a
 * WaitSet when empty. 1 publisher x 1 subscriber only. End of data: a chunk
 * whose header word is all ones. */
#include "../peer.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iceoryx_binding_c/enums.h"
#include "iceoryx_binding_c/log.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"
#include "iceoryx_binding_c/types.h"
#include "iceoryx_binding_c/wait_set.h"

extern char **environ;

static pid_t roudi = -1, roudi_owner;
static bool roudi_failed;
static char roudi_cfg[64];

static void roudi_stop(void)
{
	if (getpid() != roudi_owner)
		return; /* a worker leaving through exit() */
	if (roudi > 0) {
		kill(roudi, SIGTERM);
		waitpid(roudi, NULL, 0);
		roudi = -1;
	}
	if (roudi_cfg[0])
		unlink(roudi_cfg);
}

static int roudi_start(void)
{
	if (roudi > 0)
		return 0;
	if (roudi_failed)
		return -ENOENT;
	snprintf(roudi_cfg, sizeof(roudi_cfg), "/tmp/shmq-bench-roudi-%d.toml", (int)getpid());
	FILE *f = fopen(roudi_cfg, "w");
	if (!f)
		return -errno;
	/* Chunk = 64-byte-ish header + payload: pools for 8..64 B, 1 KiB, 64 KiB,
	 * plus the default sizes for anything else. */
	static const unsigned pools[][2] = { { 128, 20000 },    { 1152, 10000 },   { 16384, 1000 },
					     { 65664, 600 },    { 131072, 200 },   { 524288, 50 },
					     { 1048576, 30 },   { 4194304, 10 } };
	fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n");
	for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]); i++)
		fprintf(f, "[[segment.mempool]]\nsize = %u\ncount = %u\n\n", pools[i][0], pools[i][1]);
	fclose(f);
	char *argv[] = { "iox-roudi", "-m", "off", "-l", "error", "-c", roudi_cfg, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1 /* O_WRONLY */, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1 /* O_WRONLY */, 0);
	fflush(NULL);
	int rc = posix_spawnp(&roudi, "iox-roudi", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		roudi = -1;
		roudi_failed = true;
		return -rc;
	}
	roudi_owner = getpid();
	atexit(roudi_stop);
	usleep(700000); /* RouDi creates its shared memory before accepting apps */
	int st;
	if (waitpid(roudi, &st, WNOHANG) == roudi) {
		roudi = -1;
		roudi_failed = true;
		return -ECHILD;
	}
	return 0;
}

static const char *skip(const struct bench_case *c)
{
	static char why[80];
	if (c->size > 4194304 - 128)
		return "message larger than the biggest mempool chunk";
	int rc = roudi_start();
	if (rc < 0) {
		snprintf(why, sizeof(why), "iox-roudi would not start: %s", strerror(-rc));
		return why;
	}
	return NULL;
}

struct ix {
	char instance[64];
};

static int setup(const struct bench_case *c, void **ctx)
{
	static unsigned run;
	(void)c;
	int rc = roudi_start();
	if (rc < 0)
		return rc;
	struct ix *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	snprintf(x->instance, sizeof(x->instance), "run%d_%u", (int)getpid(), run++);
	*ctx = x;
	return 0;
}

static void teardown(void *ctx) { free(ctx); }

static void runtime(const char *role)
{
	char name[64];
	snprintf(name, sizeof(name), "shmqb_%s_%d", role, (int)getpid());
	iox_set_loglevel(Iceoryx_LogLevel_Error);
	iox_runtime_init(name);
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct ix *x = ctx;
	size_t size = w->c->size;
	runtime("pub");
	iox_pub_options_t o;
	iox_pub_options_init(&o);
	o.historyCapacity = 0;
	o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
	iox_pub_storage_t st;
	iox_pub_t pub = iox_pub_init(&st, "shmqbench", x->instance, "data", &o);
	int64_t limit = bench_now() + 10000000000LL;
	while ((atomic_load(&w->sh->aux) < 1 || !iox_pub_has_subscribers(pub)) && bench_now() < limit)
		usleep(1000);
	if (!iox_pub_has_subscribers(pub)) {
		bench_set_note(w, "iceoryx: subscriber never connected");
		bench_ready(w);
		bench_producer_done(w);
		return -ETIMEDOUT;
	}
	int rc = 0;
	bench_ready(w);
	while (bench_more(w)) {
		void *p;
		unsigned spins = 0;
		enum iox_AllocationResult ar;
		while ((ar = iox_pub_loan_chunk(pub, &p, (uint32_t)size)) != AllocationResult_SUCCESS) {
			if (ar != AllocationResult_RUNNING_OUT_OF_CHUNKS) {
				bench_set_note(w, "iceoryx: loan failed (%d)", (int)ar);
				rc = -ENOMEM;
				break;
			}
			bench_backoff(&spins);
		}
		if (rc < 0)
			break;
		bench_fill(w, p);
		iox_pub_publish_chunk(pub, p);
	}
	bench_producer_done(w);
	void *p;
	unsigned spins = 0;
	while (iox_pub_loan_chunk(pub, &p, (uint32_t)size) != AllocationResult_SUCCESS)
		bench_backoff(&spins);
	memset(p, 0xff, 8);
	iox_pub_publish_chunk(pub, p);
	/* Wait until the subscriber is done before tearing the port down. */
	while (atomic_load(&w->sh->aux) < 2)
		usleep(1000);
	iox_pub_deinit(pub);
	iox_runtime_shutdown();
	/* exit(), not the harness's _exit(): the runtime deregisters from RouDi
	 * in its static destructors. */
	if (rc < 0)
		return rc;
	exit(0);
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct ix *x = ctx;
	runtime("sub");
	iox_sub_options_t o;
	iox_sub_options_init(&o);
	o.queueCapacity = 256;
	o.historyRequest = 0;
	o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
	iox_sub_storage_t st;
	iox_sub_t sub = iox_sub_init(&st, "shmqbench", x->instance, "data", &o);
	iox_ws_storage_t wss;
	iox_ws_t ws = iox_ws_init(&wss);
	iox_ws_attach_subscriber_state(ws, sub, SubscriberState_HAS_DATA, 0, NULL);
	int64_t limit = bench_now() + 10000000000LL;
	while (iox_sub_get_subscription_state(sub) != SubscribeState_SUBSCRIBED && bench_now() < limit)
		usleep(1000);
	atomic_fetch_add(&w->sh->aux, 1);
	bench_ready(w);
	for (;;) {
		const void *p;
		enum iox_ChunkReceiveResult r = iox_sub_take_chunk(sub, &p);
		if (r == ChunkReceiveResult_SUCCESS) {
			uint64_t h;
			memcpy(&h, p, 8);
			if (h == UINT64_MAX) {
				iox_sub_release_chunk(sub, p);
				break;
			}
			bench_got(w, p, w->c->size);
			iox_sub_release_chunk(sub, p);
			continue;
		}
		if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE) {
			bench_set_note(w, "iceoryx: take failed (%d)", (int)r);
			break;
		}
		iox_notification_info_t ev[4];
		uint64_t missed;
		struct timespec tmo = { 0, 50000000 };
		iox_ws_timed_wait(ws, tmo, ev, 4, &missed);
		if (atomic_load(&w->sh->prod_done) == 1 && bench_now() > limit + 20000000000LL)
			break;
	}
	if (!w->t_end)
		w->t_end = bench_now();
	bench_consumer_done(w);
	atomic_fetch_add(&w->sh->aux, 1);
	iox_ws_detach_subscriber_state(ws, sub, SubscriberState_HAS_DATA);
	iox_ws_deinit(ws);
	iox_sub_deinit(sub);
	iox_runtime_shutdown();
	exit(0);
}

const struct bench_peer peer_iceoryx = {
	.name = "iceoryx",
	.label = "iceoryx pub/sub (zc)",
	.flags = PF_MAIN | PF_MAX_1X1 | PF_NOEOF | PF_ZC,
	.skip = skip,
	.setup = setup,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
};
