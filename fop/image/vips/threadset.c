#define _GNU_SOURCE /* RTLD_NEXT */
#include "threadset.h"

#include <dlfcn.h>

/* libvips 8.14 (Debian 12's libvips42 is 8.14.1) runs pipelines on a set
 * of reusable threads in which an idle thread exits after waiting 15 s for
 * work, in vips_semaphore_down_timeout. When vips_threadset_run hands a
 * task to that thread just as its wait times out, the thread frees itself
 * while the caller writes the task into it: heap corruption ("corrupted
 * double-linked list") or a SIGSEGV in the next libvips call. It shows
 * under bursty traffic with idle gaps (bench/compare.sh and bench/soak.sh
 * crashed qufop dev within minutes, and imgproxy once, which links the same
 * libvips). libvips 8.15.5 rewrote the threadset (libvips#4137).
 *
 * That idle wait is the only caller of vips_semaphore_down_timeout in
 * 8.14, and it calls it through the PLT, so this definition in the
 * executable takes its place: on a libvips older than 8.15.5 the wait has
 * no timeout, idle threads stay (as many as the busiest moment needed) and
 * the race cannot happen. On a newer libvips the call goes to libvips' own
 * function.
 */

static volatile gint untimed_waits;

static gboolean
racy_threadset(void)
{
	int major = vips_version(0), minor = vips_version(1), micro = vips_version(2);

	return major < 8 || (major == 8 && (minor < 15 || (minor == 15 && micro < 5)));
}

int
vips_semaphore_down_timeout(VipsSemaphore *s, gint64 timeout)
{
	static int (*next)(VipsSemaphore *, gint64) = NULL;

	if (racy_threadset()) {
		g_atomic_int_inc(&untimed_waits);
		return vips_semaphore_down(s);
	}
	if (!next)
		next = (int (*)(VipsSemaphore *, gint64)) dlsym(RTLD_NEXT, "vips_semaphore_down_timeout");
	return next ? next(s, timeout) : vips_semaphore_down(s);
}

int
qf_untimed_waits(void)
{
	return g_atomic_int_get(&untimed_waits);
}
