package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
)

func TestLogStoreFollow(t *testing.T) {
	s := NewLogStore(t.TempDir())
	var finished atomic.Bool
	var got bytes.Buffer
	errc := make(chan error, 1)
	// Follow before the log exists: it waits for it.
	go func() {
		errc <- s.Follow(context.Background(), "alice", "demo", 1, finished.Load, &got)
	}()
	time.Sleep(200 * time.Millisecond)
	w, err := s.Create("alice", "demo", 1)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 10 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		io.WriteString(w, line)
		time.Sleep(30 * time.Millisecond)
	}
	w.Close()
	finished.Store(true)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Follow did not return")
	}
	if got.String() != want.String() {
		t.Errorf("followed %q, want %q", got.String(), want.String())
	}
	r, err := s.Open("alice", "demo", 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != want.String() {
		t.Errorf("Open read %q", b)
	}
	if _, err := s.Open("alice", "demo", 2); errs.Status(err) != 404 {
		t.Errorf("missing log: %v", err)
	}
	if _, err := s.Create("alice", "../x", 1); errs.Status(err) != 400 {
		t.Errorf("bad name: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Follow(ctx, "alice", "demo", 1, func() bool { return false }, io.Discard); err == nil {
		t.Error("Follow ignored a cancelled context")
	}
}
