package buckets

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

func newKeeper(t *testing.T) *Keeper {
	t.Helper()
	kv, err := local.NewKV(filepath.Join(t.TempDir(), "kv.json"))
	if err != nil {
		t.Fatal(err)
	}
	return NewKeeper(kv)
}

func TestCreateRefuses(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	if err := k.Create(ctx, Record{Name: "photos", Dir: "/srv/p", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		rec    Record
		status int
	}{
		{"taken name", Record{Name: "photos", Dir: "/srv/q", Owner: "bob"}, StatusExists},
		{"bad name", Record{Name: "Photos", Dir: "/srv/q", Owner: "bob"}, 400},
		{"no dir", Record{Name: "docs", Owner: "bob"}, 400},
		{"no owner", Record{Name: "docs", Dir: "/srv/q"}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := k.Create(ctx, tc.rec)
			if st := errs.Status(err); st != tc.status {
				t.Fatalf("Create(%+v) = %v (status %d), want status %d", tc.rec, err, st, tc.status)
			}
		})
	}
	// The refused clash left the first record alone.
	rec, err := k.Get(ctx, "photos")
	if err != nil || rec.Owner != "alice" || rec.Dir != "/srv/p" {
		t.Fatalf("Get = %+v, %v; want alice's /srv/p", rec, err)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	want := []Record{
		{Name: "a-pub", Dir: "/srv/a", Owner: "admin", CreatedAt: at},
		{Name: "b-priv", Dir: "/srv/b", Owner: "alice", Private: true, CreatedAt: at},
	}
	for _, r := range []Record{want[1], want[0]} {
		if err := k.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := k.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %+v, want %+v", got, want)
	}
	if err := k.Delete(ctx, "b-priv"); err != nil {
		t.Fatal(err)
	}
	_, err = k.Get(ctx, "b-priv")
	if !errors.Is(err, storage.ErrNoSuchBucket) || errs.Status(err) != storage.StatusNoSuchBucket {
		t.Fatalf("Get after Delete = %v, want 631", err)
	}
	if err := k.Delete(ctx, "b-priv"); errs.Status(err) != storage.StatusNoSuchBucket {
		t.Fatalf("second Delete = %v, want 631", err)
	}
	// The name is free again.
	if err := k.Create(ctx, Record{Name: "b-priv", Dir: "/srv/c", Owner: "bob"}); err != nil {
		t.Fatal(err)
	}
}
