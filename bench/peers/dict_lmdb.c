/* LMDB (liblmdb): one environment in a temporary directory on /dev/shm, opened
 * with MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP (nothing is flushed to a
 * disk: the usual set-up for a table in shared memory). The harness creates
 * and preloads it (one write transaction) and closes it before it forks;
 * every worker opens the environment itself, as LMDB requires (an
 * environment is never used across fork).
 *
 *   dict  a get is mdb_txn_renew + mdb_get + a copy of the value out +
 *         mdb_txn_reset on one read transaction per process (the fast idiom:
 *         no allocation, a reader slot kept); a set is one write transaction
 *         (mdb_txn_begin + mdb_put + mdb_txn_commit): LMDB has one writer at
 *         a time, under its robust process-shared mutex.
 *   list  a deque over 8-byte big-endian sequence numbers: append puts the
 *         last key + 1 (MDB_APPEND), a pop reads the first or the last key
 *         through a cursor and deletes it; each call one write transaction. */
#include "../dict.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <unistd.h>

struct lm {
	char dir[64];
	size_t map_size;
	/* Per process: the environment it opened; in the harness only while
	 * it preloads or counts. */
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *rtxn; /* the read transaction gets renew and reset */
	MDB_txn *bulk; /* preload: every put in this one write transaction */
};

#define LM_FLAGS (MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP)
#define LM_FIRST_SEQ (1ull << 32) /* the list's first key */

static int lm_err(int e)
{
	if (e == 0)
		return 0;
	return e == MDB_NOTFOUND ? -ENOENT : e == MDB_MAP_FULL ? -ENOSPC : e > 0 ? -e : -EIO;
}

static void lm_close(struct lm *x)
{
	if (x->rtxn)
		mdb_txn_abort(x->rtxn);
	x->rtxn = NULL;
	if (x->env)
		mdb_env_close(x->env);
	x->env = NULL;
}

/* Open the environment in this process, with a read transaction (reset) for
 * the gets; create: the harness's first open. */
static int lm_open(struct lm *x, bool create)
{
	int e = mdb_env_create(&x->env);
	if (e == 0)
		e = mdb_env_set_mapsize(x->env, x->map_size);
	if (e == 0)
		e = mdb_env_open(x->env, x->dir, LM_FLAGS, 0600);
	if (e == 0)
		e = mdb_txn_begin(x->env, NULL, create ? 0 : MDB_RDONLY, &x->rtxn);
	if (e == 0)
		e = mdb_dbi_open(x->rtxn, NULL, create ? MDB_CREATE : 0, &x->dbi);
	if (e == 0 && create) {
		e = mdb_txn_commit(x->rtxn);
		x->rtxn = NULL;
		if (e == 0)
			e = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &x->rtxn);
	}
	if (e == 0)
		mdb_txn_reset(x->rtxn);
	if (e != 0)
		lm_close(x);
	return lm_err(e);
}

static void lm_teardown(void *ctx)
{
	struct lm *x = ctx;
	char path[96];
	lm_close(x);
	snprintf(path, sizeof(path), "%s/data.mdb", x->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", x->dir);
	unlink(path);
	rmdir(x->dir);
	free(x);
}

/* Run op in the preload's transaction, or in a write transaction of its own. */
static int lm_write(struct lm *x, int (*op)(struct lm *x, MDB_txn *t, void *arg), void *arg)
{
	if (x->bulk)
		return op(x, x->bulk, arg);
	MDB_txn *t;
	int e = mdb_txn_begin(x->env, NULL, 0, &t);
	if (e != 0)
		return lm_err(e);
	int rc = op(x, t, arg);
	if (rc < 0) {
		mdb_txn_abort(t);
		return rc;
	}
	e = mdb_txn_commit(t);
	return e ? lm_err(e) : rc;
}

/* ---------------------------------------------------------------- dict -- */

struct lm_kv {
	MDB_val k, v;
};

static int put_op(struct lm *x, MDB_txn *t, void *arg)
{
	struct lm_kv *kv = arg;
	return lm_err(mdb_put(t, x->dbi, &kv->k, &kv->v, 0));
}

static int lm_set(void *o, const void *k, size_t kl, const void *v, size_t vl)
{
	struct lm_kv kv = { { kl, (void *)k }, { vl, (void *)v } };
	return lm_write(o, put_op, &kv);
}

static ssize_t lm_get(void *o, const void *k, size_t kl, void *buf, size_t cap)
{
	struct lm *x = o;
	MDB_val key = { kl, (void *)k }, v;
	int e = mdb_txn_renew(x->rtxn);
	if (e != 0)
		return lm_err(e);
	e = mdb_get(x->rtxn, x->dbi, &key, &v);
	ssize_t r = e ? lm_err(e) : v.mv_size > cap ? -EMSGSIZE : (ssize_t)v.mv_size;
	if (r > 0)
		memcpy(buf, v.mv_data, v.mv_size);
	mdb_txn_reset(x->rtxn);
	return r;
}

/* ---------------------------------------------------------------- list -- */

struct lm_pop {
	MDB_cursor_op where; /* MDB_FIRST, MDB_LAST */
	void *buf;
	size_t cap;
	ssize_t len;
};

static void to_be64(uint64_t v, unsigned char *p)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static uint64_t from_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int append_op(struct lm *x, MDB_txn *t, void *arg)
{
	MDB_val *v = arg, key, old;
	MDB_cursor *cur;
	int e = mdb_cursor_open(t, x->dbi, &cur);
	if (e != 0)
		return lm_err(e);
	uint64_t seq = LM_FIRST_SEQ;
	e = mdb_cursor_get(cur, &key, &old, MDB_LAST);
	if (e == 0 && key.mv_size == 8)
		seq = from_be64(key.mv_data) + 1;
	if (e == 0 || e == MDB_NOTFOUND) {
		unsigned char kb[8];
		to_be64(seq, kb);
		key = (MDB_val){ 8, kb };
		e = mdb_cursor_put(cur, &key, v, MDB_APPEND);
	}
	mdb_cursor_close(cur);
	return lm_err(e);
}

static int pop_op(struct lm *x, MDB_txn *t, void *arg)
{
	struct lm_pop *p = arg;
	MDB_val key, v;
	MDB_cursor *cur;
	int e = mdb_cursor_open(t, x->dbi, &cur);
	if (e != 0)
		return lm_err(e);
	e = mdb_cursor_get(cur, &key, &v, p->where);
	int rc = e == MDB_NOTFOUND ? -ERANGE : e ? lm_err(e) : v.mv_size > p->cap ? -EMSGSIZE : 0;
	if (rc == 0) {
		memcpy(p->buf, v.mv_data, v.mv_size);
		p->len = (ssize_t)v.mv_size;
		rc = lm_err(mdb_cursor_del(cur, 0));
	}
	mdb_cursor_close(cur);
	return rc;
}

static int lm_append(void *o, const void *v, size_t vl)
{
	MDB_val val = { vl, (void *)v };
	return lm_write(o, append_op, &val);
}

static ssize_t lm_pop(void *o, int64_t index, void *buf, size_t cap)
{
	struct lm_pop p = { index == 0 ? MDB_FIRST : MDB_LAST, buf, cap, 0 };
	int rc = lm_write(o, pop_op, &p);
	return rc < 0 ? rc : p.len;
}

/* ------------------------------------------------------------- the peer -- */

static int lm_setup(const struct dict_case *c, void **ctx)
{
	struct lm *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	snprintf(x->dir, sizeof(x->dir), "/dev/shm/shmq-bench-lmdb.XXXXXX");
	if (!mkdtemp(x->dir)) {
		int rc = -errno;
		free(x);
		return rc;
	}
	/* Sparse on tmpfs: room for the B-tree, its copied-on-write pages and
	 * the free pages that wait for old readers. */
	size_t want = (size_t)c->nkeys * (c->vsize + 64) * 8;
	x->map_size = want > (256u << 20) ? want : 256u << 20;
	int rc = lm_open(x, true);
	if (rc == 0) {
		int e = mdb_txn_begin(x->env, NULL, 0, &x->bulk);
		rc = e ? lm_err(e) : c->kind == DICT_OPS ? dict_preload(c, x, lm_set)
							   : list_preload(c, x, lm_append);
		if (e == 0 && rc == 0)
			rc = lm_err(mdb_txn_commit(x->bulk));
		else if (e == 0)
			mdb_txn_abort(x->bulk);
		x->bulk = NULL;
	}
	lm_close(x); /* never across fork */
	if (rc < 0) {
		lm_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int lm_worker(void *ctx, struct dict_worker *w)
{
	struct lm *x = ctx; /* this process's copy */
	int rc = lm_open(x, false);
	if (rc < 0)
		return dict_done(w, 0, 0, rc, "mdb_env_open");
	if (w->c->kind == DICT_OPS)
		rc = dict_loop(w, x, lm_get, lm_set);
	else
		rc = list_loop(w, x, lm_append, lm_pop);
	lm_close(x);
	return rc;
}

static int64_t lm_count(void *ctx)
{
	struct lm *x = ctx;
	MDB_stat st;
	int rc = lm_open(x, false);
	if (rc < 0)
		return rc;
	int e = mdb_txn_renew(x->rtxn);
	if (e == 0)
		e = mdb_stat(x->rtxn, x->dbi, &st);
	lm_close(x);
	return e ? lm_err(e) : (int64_t)st.ms_entries;
}

static const char *lm_models(const struct dict_case *c)
{
	if (c->kind == DICT_OPS)
		return "LMDB on /dev/shm (NOSYNC | NOMETASYNC | WRITEMAP), an env per process: get = "
		       "mdb_txn_renew + mdb_get + copy + mdb_txn_reset; set = one write txn (one "
		       "writer at a time)";
	return "LMDB deque: 8-byte big-endian sequence keys, append = cursor MDB_LAST + put "
	       "MDB_APPEND, pop = cursor MDB_FIRST / MDB_LAST + mdb_cursor_del, one write txn each";
}

const struct dict_peer dict_lmdb = {
	.name = "lmdb",
	.label = "LMDB",
	.kinds = DICT_KIND(DICT_OPS) | DICT_KIND(LIST_OPS),
	.setup = lm_setup,
	.worker = lm_worker,
	.count = lm_count,
	.teardown = lm_teardown,
	.models = lm_models,
};
