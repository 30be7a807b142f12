package vips

import (
	"fmt"
	"testing"
)

// TestThreadsetWaitsWithoutTimeout: on a libvips whose threadset has the
// idle-exit race (before 8.15.5, threadset.c), the worker threads' idle
// wait is threadset.c's, without a timeout. It fails if the executable's
// definition stopped taking the place of libvips' own (a link change, or
// a libvips that calls it directly), which would bring the crashes back.
func TestThreadsetWaitsWithoutTimeout(t *testing.T) {
	var major, minor, micro int
	if _, err := fmt.Sscanf(Version(), "%d.%d.%d", &major, &minor, &micro); err != nil {
		t.Fatalf("libvips version %q: %v", Version(), err)
	}
	racy := major < 8 || major == 8 && (minor < 15 || minor == 15 && micro < 5)
	// A pipeline runs on the threadset's threads: each waits for work once
	// it is started and again after its task.
	im, err := Load(read(t, "storm-1920x1080.jpg"), LoadOptions{Sequential: true, JPEGShrink: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if _, err := im.SaveJPEG(JPEGOptions{Quality: 75}); err != nil {
		t.Fatal(err)
	}
	n := UntimedWaits()
	switch {
	case racy && n == 0:
		t.Fatalf("libvips %s: its threadset waited through its own vips_semaphore_down_timeout, with the 15 s timeout whose race crashes it", Version())
	case !racy && n != 0:
		t.Fatalf("libvips %s has no such race, yet %d waits went without a timeout", Version(), n)
	}
	t.Logf("libvips %s: %d untimed waits", Version(), n)
}
