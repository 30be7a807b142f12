package local

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster"
)

// blockedIn reports whether some goroutine's stack has every one of
// frames: how a test knows a call is waiting where it means it to, without
// sleeping.
func blockedIn(frames ...string) bool {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		all := true
		for _, f := range frames {
			all = all && strings.Contains(g, f)
		}
		if all {
			return true
		}
	}
	return false
}

// A Deploy that waited for a purge of its UFOP (Stop with purge, as unreg
// does) to end does not take the purged name back: the purge wins and the
// Deploy fails, so no instance of a deleted UFOP runs. A Deploy that
// starts after the purge deploys as usual.
func TestDeployWaitingForAPurgeDoesNotTakeTheNameBack(t *testing.T) {
	bin := testServer(t)
	ctx := context.Background()
	p := NewProcess(ProcessConfig{Options: testOptions(), LogDir: t.TempDir()})
	defer p.Close()
	load := newFakeLoad()
	p.SetLoad(load)
	const name = "purged"
	w := drainWorkload(t, bin, name, 1, nil)
	if err := p.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		load.clear()
		p.Stop(ctx, name, true)
	})
	// A step in flight holds the purge in its drain, and with it the
	// workload.
	load.set(instances(t, p, name)[0].ID, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(ctx, name, true) }()
	waitFor(t, patience, "the purge draining", func() bool {
		ins := instances(t, p, name)
		return len(ins) == 1 && ins[0].State == StateStopping
	})

	w2 := w
	w2.Version = 2
	deployed := make(chan error, 1)
	go func() { deployed <- p.Deploy(ctx, w2) }()
	waitFor(t, patience, "the deploy waiting for the purge", func() bool {
		return blockedIn("local.(*manager).Deploy", "local.(*workload).lock")
	})
	load.clear()
	if err := <-stopped; err != nil {
		t.Fatalf("purge: %v", err)
	}
	var err error
	select {
	case err = <-deployed:
	case <-time.After(patience):
		t.Fatal("the deploy never returned")
	}
	if err == nil || !strings.Contains(err.Error(), "purged") {
		t.Fatalf("deploy that waited for the purge: %v, want an error saying the ufop was purged", err)
	}
	if ins, err := p.Instances(ctx, name); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("instances after the purge: %+v, %v; want ErrNotFound", ins, err)
	}

	// A new deployment of the name after the purge is a deployment.
	if err := p.Deploy(ctx, w2); err != nil {
		t.Fatalf("deploy after the purge: %v", err)
	}
	if got := len(instances(t, p, name)); got != 1 {
		t.Fatalf("instances after a new deploy: %d, want 1", got)
	}
}
