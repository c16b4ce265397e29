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

#endif
