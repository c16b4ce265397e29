/* shmq's dict and list (include/shmq/dict.h). One anonymous heap per run,
 * created and preloaded by the harness before it forks; the workers inherit
 * the heap and the object's handle and work on it in place. */
#include "../dict.h"

#include <shmq.h>

#include <errno.h>
#include <stdlib.h>

struct sq {
	shmq_heap *h;
	shmq_dict *d;
	shmq_list *l;
};

static void sq_teardown(void *ctx)
{
	struct sq *x = ctx;
	if (x->d)
		shmq_dict_close(x->d);
	if (x->l)
		shmq_list_close(x->l);
	if (x->h)
		shmq_heap_close(x->h);
	free(x);
}

static ssize_t d_get(void *o, const void *k, size_t kl, void *b, size_t cap)
{
	return shmq_dict_get(o, k, kl, b, cap);
}
static int d_set(void *o, const void *k, size_t kl, const void *v, size_t vl)
{
	return shmq_dict_set(o, k, kl, v, vl);
}
static int l_append(void *o, const void *v, size_t vl) { return shmq_list_append(o, v, vl); }
static ssize_t l_pop(void *o, int64_t i, void *b, size_t cap)
{
	return shmq_list_pop(o, i, b, cap);
}

static int sq_setup(const struct dict_case *c, void **ctx)
{
	struct sq *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	/* Room for the preload several times over: replaced values wait for
	 * their readers' epochs before their memory is reused. The heap
	 * reserves this much address space and grows its file on demand. */
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = c->vsize > 64 ? 4ull << 30 : 1ull << 30;
	int rc = shmq_heap_create(NULL, &attr, &x->h);
	if (rc == 0 && c->kind == DICT_OPS) {
		rc = shmq_dict_create(x->h, NULL, &x->d);
		if (rc == 0)
			rc = dict_preload(c, x->d, d_set);
	} else if (rc == 0) {
		rc = shmq_list_create(x->h, NULL, &x->l);
		if (rc == 0)
			rc = list_preload(c, x->l, l_append);
	}
	if (rc < 0) {
		sq_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int sq_worker(void *ctx, struct dict_worker *w)
{
	struct sq *x = ctx;
	if (w->c->kind == DICT_OPS)
		return dict_loop(w, x->d, d_get, d_set);
	return list_loop(w, x->l, l_append, l_pop);
}

static int64_t sq_count(void *ctx)
{
	struct sq *x = ctx;
	return x->d ? shmq_dict_len(x->d) : shmq_list_len(x->l);
}

static const char *sq_models(const struct dict_case *c)
{
	if (c->kind == DICT_OPS)
		return "shmq_dict_get / shmq_dict_set on an anonymous heap inherited by fork (gets "
		       "lock-free, sets lock one of 64 stripes and publish the new entry out of "
		       "place)";
	return "shmq_list_append / shmq_list_pop(0 or -1): a ring of values under a robust "
	       "mutex, on an anonymous heap inherited by fork";
}

const struct dict_peer dict_shmq = {
	.name = "shmq",
	.label = "shmq",
	.flags = DP_SHMQ,
	.kinds = DICT_KIND(DICT_OPS) | DICT_KIND(LIST_OPS),
	.setup = sq_setup,
	.worker = sq_worker,
	.count = sq_count,
	.teardown = sq_teardown,
	.models = sq_models,
};
