package vips

// #cgo LDFLAGS: -ldl
// #include "threadset.h"
import "C"

// UntimedWaits is how many times libvips' worker threads have waited for
// work through threadset.c's vips_semaphore_down_timeout, without the
// 15-second timeout whose race crashes libvips 8.14 (see threadset.c). It
// stays 0 if the definition did not take the place of libvips' own, or on
// a libvips without the race.
func UntimedWaits() int { return int(C.qf_untimed_waits()) }
