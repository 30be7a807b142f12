package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/cluster"
)

func TestKVOperations(t *testing.T) {
	ctx := context.Background()
	kv, err := NewKV(filepath.Join(t.TempDir(), "sub", "kv.json"))
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		name   string
		op     string // get, cas, del
		key    string
		val    string
		index  uint64 // for cas; use ^0 for "the current index"
		wantOK bool
		want   string
		notFnd bool
	}
	const cur = ^uint64(0)
	steps := []step{
		{name: "get missing", op: "get", key: "a", notFnd: true},
		{name: "create", op: "cas", key: "a", val: "1", index: 0, wantOK: true},
		{name: "create again fails", op: "cas", key: "a", val: "2", index: 0, wantOK: false},
		{name: "read", op: "get", key: "a", want: "1"},
		{name: "stale index fails", op: "cas", key: "a", val: "3", index: 99, wantOK: false},
		{name: "update with current index", op: "cas", key: "a", val: "4", index: cur, wantOK: true},
		{name: "read updated", op: "get", key: "a", want: "4"},
		{name: "update missing with index fails", op: "cas", key: "zz", val: "x", index: 1, wantOK: false},
		{name: "delete", op: "del", key: "a"},
		{name: "deleted", op: "get", key: "a", notFnd: true},
		{name: "delete missing", op: "del", key: "a"},
		{name: "recreate after delete", op: "cas", key: "a", val: "5", index: 0, wantOK: true},
	}
	var lastIndex uint64
	for _, s := range steps {
		switch s.op {
		case "get":
			v, idx, err := kv.Get(ctx, s.key)
			if s.notFnd {
				if !errors.Is(err, cluster.ErrNotFound) {
					t.Fatalf("%s: err %v, want ErrNotFound", s.name, err)
				}
				continue
			}
			if err != nil || string(v) != s.want {
				t.Fatalf("%s: got %q, %v; want %q", s.name, v, err, s.want)
			}
			if idx == 0 {
				t.Fatalf("%s: index 0", s.name)
			}
		case "cas":
			index := s.index
			if index == cur {
				_, index, _ = kv.Get(ctx, s.key)
			}
			ok, err := kv.CAS(ctx, s.key, []byte(s.val), index)
			if err != nil || ok != s.wantOK {
				t.Fatalf("%s: ok %v, err %v; want ok %v", s.name, ok, err, s.wantOK)
			}
			if ok {
				_, idx, _ := kv.Get(ctx, s.key)
				if idx <= lastIndex {
					t.Fatalf("%s: index %d not above %d", s.name, idx, lastIndex)
				}
				lastIndex = idx
			}
		case "del":
			if err := kv.Delete(ctx, s.key); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
	}
}

func TestKVListAndPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.json")
	kv, err := NewKV(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"qufop/ufops/b", "qufop/ufops/a", "qufop/other", "x"} {
		if ok, err := kv.CAS(ctx, k, []byte("v-"+k), 0); !ok || err != nil {
			t.Fatal(k, ok, err)
		}
	}
	if err := kv.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	check := func(kv *KV) {
		t.Helper()
		ps, err := kv.List(ctx, "qufop/ufops/")
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 || ps[0].Key != "qufop/ufops/a" || ps[1].Key != "qufop/ufops/b" || string(ps[0].Value) != "v-qufop/ufops/a" {
			t.Fatalf("list: %+v", ps)
		}
		all, _ := kv.List(ctx, "")
		if len(all) != 3 {
			t.Fatalf("list all: %+v", all)
		}
	}
	check(kv)
	_, idxA, _ := kv.Get(ctx, "qufop/ufops/a")

	kv2, err := NewKV(path)
	if err != nil {
		t.Fatal(err)
	}
	check(kv2)
	if _, idx, _ := kv2.Get(ctx, "qufop/ufops/a"); idx != idxA {
		t.Fatalf("index after reload %d, want %d", idx, idxA)
	}
	// The modify index keeps growing after a reload (deletes count too).
	if ok, err := kv2.CAS(ctx, "y", []byte("1"), 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, idx, _ := kv2.Get(ctx, "y"); idx != 6 {
		t.Fatalf("new index %d, want 6", idx)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries", len(ents))
	}
}

func TestKVCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewKV(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err %v, want an error naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "{not json" {
		t.Fatalf("corrupt file was changed: %q", b)
	}
}

func TestKVConcurrentCAS(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.json")
	kv, err := NewKV(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, idx, err := kv.Get(ctx, "counter")
				cnt := 0
				if err == nil {
					cnt, _ = strconv.Atoi(string(v))
				} else if !errors.Is(err, cluster.ErrNotFound) {
					t.Error(err)
					return
				}
				ok, err := kv.CAS(ctx, "counter", []byte(strconv.Itoa(cnt+1)), idx)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					return
				}
			}
		}()
	}
	wg.Wait()
	v, _, err := kv.Get(ctx, "counter")
	if err != nil || string(v) != strconv.Itoa(n) {
		t.Fatalf("counter %q, %v; want %d", v, err, n)
	}
	kv2, err := NewKV(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := kv2.Get(ctx, "counter"); string(v) != strconv.Itoa(n) {
		t.Fatalf("counter on disk %q, want %d", v, n)
	}
}
