package nomad_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/internal/testutil"
)

// allocOf returns the ID of the running allocation with name index i.
func allocOf(t *testing.T, o *nomad.Orchestrator, i int) string {
	t.Helper()
	ins, err := o.Instances(ctxT(t), "demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.Index == i {
			return in.ID
		}
	}
	t.Fatalf("no instance %d in %+v", i, ins)
	return ""
}

func TestLogsHistory(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	first, second := allocOf(t, o, 0), allocOf(t, o, 1)
	srv.AppendLog(first, "stdout", []byte("instance 0\n"))
	srv.AppendLog(second, "stdout", []byte("listening on :9100\n"))
	srv.AppendLog(second, "stderr", []byte("slow request\n"))
	srv.AppendLog(second, "stdout", []byte("GET /health 200\n"))

	var out strings.Builder
	if err := o.Logs(ctx, "demo", 1, false, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "listening on :9100\nGET /health 200\nslow request\n"; got != want {
		t.Errorf("logs of instance 1: %q, want %q (stdout, then stderr)", got, want)
	}
	if err := o.Logs(ctx, "demo", 2, false, &out); !errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("logs of instance 2 of 2: %v, want ErrNotFound", err)
	}
}

func TestLogsFollow(t *testing.T) {
	srv, o := setup(t)
	if err := o.Deploy(ctxT(t), workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	id := allocOf(t, o, 0)
	srv.AppendLog(id, "stdout", []byte("started\n"))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- o.Logs(ctx, "demo", 0, true, &out) }()
	waitFor(t, "the history", func() bool { return out.String() == "started\n" })

	srv.AppendLog(id, "stderr", []byte("got SIGTERM\n"))
	srv.AppendLog(id, "stdout", []byte("draining\n"))
	waitFor(t, "appended lines", func() bool {
		s := out.String()
		return strings.Contains(s, "got SIGTERM\n") && strings.Contains(s, "draining\n")
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended by ctx: %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("follow did not return after ctx ended")
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
