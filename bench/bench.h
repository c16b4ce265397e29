/* shmq-bench: harness internals (not seen by peers). */
#ifndef SHMQ_BENCH_H
#define SHMQ_BENCH_H

#include "peer.h"

#include <stdio.h>

struct sample {
	bool ok;
	double mps, gbs, wall;  /* throughput and latency cases */
	double rtt_ns;          /* ping-pong */
	double p50, p99, p999;  /* latency cases, ns */
	uint64_t msgs, errors;
	char note[160];
};

void run_one(const struct bench_peer *p, const struct bench_case *c, struct sample *out,
	     struct bench_hist *hist);
void hist_merge(struct bench_hist *into, const struct bench_hist *h);
double hist_pct(const struct bench_hist *h, double q);
double hist_bucket_hi(unsigned idx);

/* Shared with bench/sync.c (defined in shmq-bench.c). */
#define MAX_REPS 31
struct stat3 {
	int n;
	double med, min, max;
};
struct stat3 stats(const double *v, int n); /* median [min..max] */
const char *human(double v, char *buf, size_t len);     /* 1.23M */
const char *human_ns(double ns, char *buf, size_t len); /* 1.2 us */
void json_str(FILE *f, const char *s);
bool name_listed(const char *list, const char *name); /* in a comma list */
/* bench/sync.c: "median [min..max]" of a rate (1.23M) or a time (ns, us);
 * a ratio "1.23 [1.10..1.30]" ("-" without samples). */
void stat_range_str(const struct stat3 *st, bool is_time, char *buf, size_t len);
void stat_ratio_str(const struct stat3 *st, char *buf, size_t len);

struct target {
	char text[120];
	bool have, met;
	char meas[120];
};
/* A new line of the targets summary ("not measured in this run" until set). */
struct target *new_target(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
