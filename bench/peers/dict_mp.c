/* Python's multiprocessing Manager().dict() and .list(), run by
 * bench/mp_dict.py under /usr/bin/python3 with the case's parameters (fork
 * start method, the same keys, values, mixes, checks, start barrier and stop
 * flag as bench/dict.h; interpreter and manager start-up and the preload
 * outside the measured time). It prints one JSON line. Interleaved with the
 * others like any system. Every call is a round trip to the manager's server
 * process, so it does far fewer operations in the same time: its ops/s are
 * what it managed. A driver that has not answered within the run's time
 * plus 60 s is killed (its children die with it). */
#include "../dict.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static int mp_run(const struct dict_case *c, struct dict_run *res)
{
	if (!bench_mp_dict_script) {
		snprintf(res->note, sizeof(res->note), "mp_dict.py not found (--mp-dict-script)");
		return -ENOENT;
	}
	char np[16], secs[32], pct[16], vsize[32], keys[32], parent[16];
	snprintf(np, sizeof(np), "%d", c->nproc);
	snprintf(secs, sizeof(secs), "%g", c->secs);
	snprintf(pct, sizeof(pct), "%u", c->get_pct);
	snprintf(vsize, sizeof(vsize), "%zu", c->vsize);
	snprintf(keys, sizeof(keys), "%u", c->nkeys);
	snprintf(parent, sizeof(parent), "%d", (int)getpid());
	char *argv[] = { (char *)bench_python(), (char *)bench_mp_dict_script, "--case",
			 c->kind == DICT_OPS ? "dict" : "list", "-n", np, "-t", secs, "--get-pct",
			 pct, "--value-size", vsize, "--keys", keys, "--parent", parent, NULL };
	const char *line = bench_driver_json(argv, c->secs + 60, res->note, sizeof(res->note));
	if (!line)
		return -EIO;
	double ops = bench_json_num(line, "ops"), w = bench_json_num(line, "wall_s"),
	       e = bench_json_num(line, "errors");
	if (ops < 0 || w <= 0) {
		snprintf(res->note, sizeof(res->note), "mp_dict.py: bad output");
		return -EIO;
	}
	res->ops = (uint64_t)ops;
	res->wall_ns = (int64_t)(w * 1e9);
	res->errors = e > 0 ? (uint64_t)e : 0;
	return 0;
}

static const char *mp_models(const struct dict_case *c)
{
	if (c->kind == DICT_OPS)
		return "Python 3: d[k] / d[k] = v on a Manager().dict() proxy (fork context): each "
		       "call pickled to the manager's server process and back over a socket; the "
		       "interpreter's own cost per call, which a Python binding of shmq would pay "
		       "too (shmq is measured from C here)";
	return "Python 3: append(v) / pop(0) and pop() on a Manager().list() proxy";
}

const struct dict_peer dict_mp = {
	.name = "mp-manager",
	.label = "mp.Manager",
	.kinds = DICT_KIND(DICT_OPS) | DICT_KIND(LIST_OPS),
	.run = mp_run,
	.models = mp_models,
};
