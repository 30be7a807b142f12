#ifndef QF_THREADSET_H
#define QF_THREADSET_H

#include <vips/vips.h>

/* qf_untimed_waits counts the threadset's idle waits made without a
 * timeout (threadset.c): more than 0 once libvips has run a pipeline, on a
 * libvips whose threadset has the exit race. */
int qf_untimed_waits(void);

#endif
