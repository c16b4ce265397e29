/* The systems shmq-bench knows. Adding one: write bench/peers/<name>.c that
 * defines a struct bench_peer, list its file in bench/meson.build and its
 * symbol here (under the HAVE_ macro of its package, if it needs one). */
#include "peer.h"

#define PEER(sym) extern const struct bench_peer sym;
PEER(peer_shmq)
PEER(peer_shmq_nb)
PEER(peer_shmq_batch)
PEER(peer_shmq_zc)
PEER(peer_shmq_queue)
PEER(peer_shmq_pipe_sized)
PEER(peer_pipe)
PEER(peer_socketpair)
PEER(peer_socketpair_stream)
PEER(peer_mq)
PEER(peer_mutexcv)
PEER(peer_ck_mpmc)
PEER(peer_ck_spsc)
PEER(peer_wfcq)
PEER(peer_zmq)
PEER(peer_iceoryx)
PEER(peer_mp_queue)
PEER(peer_mp_simplequeue)
PEER(peer_mp_joinablequeue)
PEER(peer_mp_pipe)
PEER(peer_memcpy)
PEER(peer_cacheline)
PEER(peer_futex)

const struct bench_peer *const bench_peers[] = {
	&peer_shmq,
	&peer_shmq_nb,
	&peer_shmq_batch,
	&peer_shmq_zc,
	&peer_shmq_queue,
	&peer_shmq_pipe_sized,
	&peer_pipe,
	&peer_socketpair,
	&peer_socketpair_stream,
	&peer_mq,
	&peer_mutexcv,
#ifdef HAVE_CK
	&peer_ck_mpmc,
#endif
#ifdef HAVE_URCU
	&peer_wfcq,
#endif
#ifdef HAVE_ZMQ
	&peer_zmq,
#endif
#ifdef HAVE_ICEORYX
	&peer_iceoryx,
#endif
	&peer_mp_queue,
	&peer_mp_simplequeue,
	&peer_mp_joinablequeue,
	&peer_mp_pipe,
#ifdef HAVE_CK
	&peer_ck_spsc,
#endif
	&peer_memcpy,
	&peer_cacheline,
	&peer_futex,
	NULL,
};

const struct bench_missing bench_missing[] = {
#ifndef HAVE_CK
	{ "ck-mpmc", "libck-dev" },
	{ "ck-spsc", "libck-dev" },
#endif
#ifndef HAVE_URCU
	{ "urcu-wfcq", "liburcu-dev" },
#endif
#ifndef HAVE_ZMQ
	{ "zmq", "libzmq3-dev" },
#endif
#ifndef HAVE_ICEORYX
	{ "iceoryx", "libiceoryx-binding-c-dev and iceoryx" },
#endif
#ifndef HAVE_LMDB
	{ "lmdb", "liblmdb-dev" },
#endif
	{ NULL, NULL },
};
