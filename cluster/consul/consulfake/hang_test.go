package consulfake

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// While hanging, KV requests get no answer until the client gives up or
// SetHang(false); the agent's own endpoints still answer.
func TestSetHang(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetHang(true)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v1/kv/qufop/x", nil)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a KV read while hanging: err = %v, want the client's deadline", err)
	}

	resp, err := http.Get(s.URL() + "/v1/agent/checks")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent endpoint while hanging: %v %v", resp, err)
	}
	resp.Body.Close()

	held := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/v1/kv/qufop/x")
		if err != nil {
			held <- -1
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	// The read is held (counted) before it is let go.
	for deadline := time.Now().Add(time.Minute); s.Requests() < 3; {
		if time.Now().After(deadline) {
			t.Fatal("the held read never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case st := <-held:
		t.Fatalf("answered %d while hanging", st)
	default:
	}
	s.SetHang(false)
	if st := <-held; st != http.StatusNotFound {
		t.Fatalf("after SetHang(false): status %d, want 404 (no such key)", st)
	}
}
