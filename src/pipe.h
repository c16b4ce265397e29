/* Pipe layer, internal side: what the multi-wait layer needs of an end. */
#ifndef SHMQ_PIPE_H
#define SHMQ_PIPE_H

#include "shmq.h"

#include <stdbool.h>

/* The queue behind an end's readiness for SHMQ_POLLIN (receiving direction)
 * or SHMQ_POLLOUT (sending direction); NULL if the end lacks it. */
shmq_queue *conn_queue(shmq_conn *c, int event);
/* A message taken aside for a bigger buffer waits: recv would not block. */
bool conn_stashed(shmq_conn *c);

#endif
