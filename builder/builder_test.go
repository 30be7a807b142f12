package builder

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeBackend counts the builds running at once. A build reports on
// started (when set) and ends when release is closed or sends to it (or,
// with release nil, at once), or when its context ends.
type fakeBackend struct {
	started   chan string
	release   chan struct{}
	running   atomic.Int32
	maxSeen   atomic.Int32
	completed atomic.Int32
}

func (f *fakeBackend) Mode() string { return "fake" }

func (f *fakeBackend) Remove(ctx context.Context, artifact string) error { return nil }

func (f *fakeBackend) Build(ctx context.Context, job Job, log io.Writer) (Result, error) {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for m := f.maxSeen.Load(); n > m && !f.maxSeen.CompareAndSwap(m, n); m = f.maxSeen.Load() {
	}
	if f.started != nil {
		f.started <- job.Name
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	f.completed.Add(1)
	return Result{Image: job.Name}, nil
}

func fakeJob(name string) Job {
	return Job{Owner: "o", Name: name, Version: 1, Tarball: strings.NewReader("")}
}

func TestBuilderConcurrencyBound(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.MaxConcurrent = 2
	fb := &fakeBackend{started: make(chan string), release: make(chan struct{})}
	b, err := New(cfg, fb)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 7 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Build(context.Background(), fakeJob("u"+string(rune('a'+i))), nil); err != nil {
				t.Error(err)
			}
		}()
	}
	// Two builds hold the slots; each one released lets the next one in.
	<-fb.started
	<-fb.started
	for range 5 {
		fb.release <- struct{}{}
		<-fb.started
	}
	close(fb.release)
	wg.Wait()
	if m := fb.maxSeen.Load(); m != 2 {
		t.Errorf("max concurrent builds %d, want 2", m)
	}
	if c := fb.completed.Load(); c != 7 {
		t.Errorf("completed %d", c)
	}
}

func TestBuilderWaitRespectsContext(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.MaxConcurrent = 1
	fb := &fakeBackend{started: make(chan string, 1), release: make(chan struct{})}
	defer close(fb.release)
	b, _ := New(cfg, fb)
	go b.Build(context.Background(), fakeJob("first"), nil)
	<-fb.started // first holds the only slot
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := b.Build(ctx, fakeJob("second"), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a build slot") {
		t.Fatalf("err = %v", err)
	}
}

func TestBuilderTimeoutAndValidation(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Timeout = 50 * time.Millisecond
	never := make(chan struct{}) // the build ends with its timeout only
	b, _ := New(cfg, &fakeBackend{release: never})
	if _, err := b.Build(context.Background(), fakeJob("slow"), nil); err == nil || !strings.Contains(err.Error(), "build timed out after 50ms") {
		t.Errorf("err = %v", err)
	}
	for _, j := range []Job{
		{Owner: "O", Name: "x", Version: 1, Tarball: strings.NewReader("")},
		{Owner: "o", Name: "../x", Version: 1, Tarball: strings.NewReader("")},
		{Owner: "o", Name: "x", Version: 0, Tarball: strings.NewReader("")},
		{Owner: "o", Name: "x", Version: 1},
	} {
		if _, err := b.Build(context.Background(), j, nil); err == nil {
			t.Errorf("job %+v accepted", j)
		}
	}
	bad := cfg
	bad.User = "0:0"
	if _, err := New(bad, &fakeBackend{}); err == nil {
		t.Error("root user accepted")
	}
	bad = cfg
	bad.MaxConcurrent = 0
	if _, err := New(bad, &fakeBackend{}); err == nil {
		t.Error("MaxConcurrent 0 accepted")
	}
}

func TestDetect(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	be, mode, err := Detect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if be.Mode() != "process" || !strings.Contains(mode, "isolates nothing") {
		t.Errorf("mode %q (%s)", be.Mode(), mode)
	}
}
