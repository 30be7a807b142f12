package consul

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/consul/consulfake"
)

func newClient(t *testing.T, s *consulfake.Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: s.Addr(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKVSemantics(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	kv := NewKV(newClient(t, s), "qufop/")
	ctx := context.Background()
	const key = "qufop/ufops/demo"

	// Missing key.
	if _, _, err := kv.Get(ctx, key); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	// CAS 0 creates.
	if ok, err := kv.CAS(ctx, key, []byte(`{"replicas":2}`), 0); !ok || err != nil {
		t.Fatalf("cas 0 on a new key: %v %v", ok, err)
	}
	val, idx, err := kv.Get(ctx, key)
	if err != nil || string(val) != `{"replicas":2}` || idx == 0 {
		t.Fatalf("get: %q %d %v", val, idx, err)
	}
	// CAS 0 is create-only.
	if ok, err := kv.CAS(ctx, key, []byte("x"), 0); ok || err != nil {
		t.Fatalf("cas 0 on an existing key: %v %v", ok, err)
	}
	// Wrong index loses, right index wins and moves the index.
	if ok, err := kv.CAS(ctx, key, []byte("x"), idx+100); ok || err != nil {
		t.Fatalf("cas wrong index: %v %v", ok, err)
	}
	if ok, err := kv.CAS(ctx, key, []byte(`{"replicas":3}`), idx); !ok || err != nil {
		t.Fatalf("cas right index: %v %v", ok, err)
	}
	val, idx2, _ := kv.Get(ctx, key)
	if string(val) != `{"replicas":3}` || idx2 <= idx {
		t.Fatalf("after cas: %q %d (was %d)", val, idx2, idx)
	}
	// The old index is stale now.
	if ok, _ := kv.CAS(ctx, key, []byte("x"), idx); ok {
		t.Fatal("cas with a stale index won")
	}
	// Empty values read back as empty, not nil.
	kv.CAS(ctx, "qufop/empty", nil, 0)
	if v, _, err := kv.Get(ctx, "qufop/empty"); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, err)
	}

	// List by prefix, sorted, with indexes.
	kv.CAS(ctx, "qufop/ufops/b", []byte("b"), 0)
	kv.CAS(ctx, "qufop/ufops/a", []byte("a"), 0)
	kv.CAS(ctx, "qufop/ufopsx", []byte("not under qufop/ufops/"), 0)
	pairs, err := kv.List(ctx, "qufop/ufops/")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pairs {
		got = append(got, p.Key+"="+string(p.Value))
		if p.Index == 0 {
			t.Errorf("%s: index 0", p.Key)
		}
	}
	if fmt.Sprint(got) != `[qufop/ufops/a=a qufop/ufops/b=b qufop/ufops/demo={"replicas":3}]` {
		t.Fatalf("list: %v", got)
	}
	if pairs[2].Index != idx2 {
		t.Errorf("list index %d, want %d", pairs[2].Index, idx2)
	}
	// Empty list is empty, not an error.
	if pairs, err := kv.List(ctx, "qufop/nothing/"); err != nil || len(pairs) != 0 {
		t.Fatalf("empty list: %v %v", pairs, err)
	}
	// "" lists the whole prefix.
	if pairs, err := kv.List(ctx, ""); err != nil || len(pairs) != 5 {
		t.Fatalf("list \"\": %d %v", len(pairs), err)
	}

	// Delete, and deleting a missing key is fine.
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kv.Get(ctx, key); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	// After a delete, CAS 0 re-creates.
	if ok, _ := kv.CAS(ctx, key, []byte("again"), 0); !ok {
		t.Fatal("cas 0 after delete")
	}

	// Keys outside the prefix are refused before any request.
	before := s.Requests()
	if _, _, err := kv.Get(ctx, "other/x"); err == nil || errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("get outside prefix: %v", err)
	}
	if _, err := kv.CAS(ctx, "qufop/", nil, 0); err == nil {
		t.Error("cas on the bare prefix accepted")
	}
	if _, err := kv.List(ctx, "other/"); err == nil {
		t.Error("list outside prefix accepted")
	}
	if s.Requests() != before {
		t.Error("refused keys reached Consul")
	}

	// Consul away: an error, not ErrNotFound or a lost race.
	s.SetDown(true)
	if _, _, err := kv.Get(ctx, key); err == nil || errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("get while down: %v", err)
	}
	if ok, err := kv.CAS(ctx, key, nil, 0); ok || err == nil {
		t.Errorf("cas while down: %v %v", ok, err)
	}
}

// TestKVConcurrentCAS: 20 goroutines each add 1 with a read-CAS-retry loop;
// the counter ends at 20.
func TestKVConcurrentCAS(t *testing.T) {
	s := consulfake.New()
	defer s.Close()
	kv := NewKV(newClient(t, s), "qufop/")
	ctx := context.Background()
	const key = "qufop/counter"
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				val, idx, err := kv.Get(ctx, key)
				n := 0
				switch {
				case errors.Is(err, cluster.ErrNotFound):
					idx = 0
				case err != nil:
					errs <- err
					return
				default:
					if n, err = strconv.Atoi(string(val)); err != nil {
						errs <- err
						return
					}
				}
				ok, err := kv.CAS(ctx, key, []byte(strconv.Itoa(n+1)), idx)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	val, _, err := kv.Get(ctx, key)
	if err != nil || string(val) != "20" {
		t.Fatalf("counter = %q %v, want 20", val, err)
	}
}
