package buckets

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
	"github.com/qufop/qufop/storage/local"
)

func dirWith(t *testing.T, content string) string {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "a.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func openLocal(r Record) (storage.Bucket, error) { return local.New(r.Name, r.Dir) }

func read(t *testing.T, set *storage.Set, bucket string) string {
	t.Helper()
	b, err := set.Bucket(bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	rc, _, err := b.Open(context.Background(), "a.txt")
	if err != nil {
		t.Fatalf("%s/a.txt: %v", bucket, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestServedFollowsTheRecords(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	flag, err := local.New("files", dirWith(t, "flag"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := storage.NewSet(flag)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServed(k, set, openLocal, nil)
	dir1, dir2 := dirWith(t, "one"), dirWith(t, "two")
	later := filepath.Join(t.TempDir(), "later")
	photos := Record{Name: "photos", Dir: dir1, Owner: "alice", Private: true}

	type want struct {
		names   []string
		records map[string]Record // of the names served from one
		content map[string]string // a.txt of a bucket
	}
	for _, step := range []struct {
		name   string
		change func()
		want   want
	}{
		{"first records; one clashes with the flag, one has no dir yet", func() {
			must(t, k.Create(ctx, photos))
			must(t, k.Create(ctx, Record{Name: "files", Dir: dir2, Owner: "bob"}))
			must(t, k.Create(ctx, Record{Name: "later", Dir: later, Owner: "bob"}))
		}, want{[]string{"files", "photos"}, map[string]Record{"photos": photos}, map[string]string{"files": "flag", "photos": "one"}}},
		{"the dir appears", func() {
			must(t, os.Mkdir(later, 0o755))
			must(t, os.WriteFile(filepath.Join(later, "a.txt"), []byte("later"), 0o644))
		}, want{[]string{"files", "later", "photos"}, map[string]Record{"photos": photos, "later": {Name: "later", Dir: later, Owner: "bob"}}, map[string]string{"later": "later"}}},
		{"removed", func() { must(t, k.Delete(ctx, "photos")) },
			want{[]string{"files", "later"}, map[string]Record{"later": {Name: "later", Dir: later, Owner: "bob"}}, nil}},
		{"added again elsewhere, public", func() {
			must(t, k.Create(ctx, Record{Name: "photos", Dir: dir2, Owner: "carol"}))
		}, want{[]string{"files", "later", "photos"}, map[string]Record{"photos": {Name: "photos", Dir: dir2, Owner: "carol"}, "later": {Name: "later", Dir: later, Owner: "bob"}}, map[string]string{"photos": "two", "files": "flag"}}},
		{"styles and separator set: the next refresh has them", func() {
			_, err := k.SetStyle(ctx, "photos", "thumb", "imageView2/2/w/200")
			must(t, err)
			_, err = k.SetSeparator(ctx, "photos", "!")
			must(t, err)
		}, want{[]string{"files", "later", "photos"}, map[string]Record{
			"photos": {Name: "photos", Dir: dir2, Owner: "carol", Separator: "!", Styles: map[string]string{"thumb": "imageView2/2/w/200"}},
			"later":  {Name: "later", Dir: later, Owner: "bob"},
		}, map[string]string{"photos": "two"}}},
		{"a style removed", func() {
			_, err := k.RemoveStyle(ctx, "photos", "thumb")
			must(t, err)
		}, want{[]string{"files", "later", "photos"}, map[string]Record{
			"photos": {Name: "photos", Dir: dir2, Owner: "carol", Separator: "!"},
			"later":  {Name: "later", Dir: later, Owner: "bob"},
		}, nil}},
		{"the flag's record removed: the flag stays", func() { must(t, k.Delete(ctx, "files")) },
			want{[]string{"files", "later", "photos"}, nil, map[string]string{"files": "flag"}}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.change()
			if err := s.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if got := set.Names(); !slices.Equal(got, step.want.names) {
				t.Fatalf("served %v, want %v", got, step.want.names)
			}
			for _, n := range set.Names() {
				r, ok := s.Record(n)
				w, want := step.want.records[n]
				if step.want.records == nil {
					continue
				}
				if ok != want || !reflect.DeepEqual(r, w) {
					t.Errorf("Record(%s) = %+v, %v; want %+v, %v", n, r, ok, w, want)
				}
			}
			for b, c := range step.want.content {
				if got := read(t, set, b); got != c {
					t.Errorf("%s/a.txt = %q, want %q", b, got, c)
				}
			}
		})
	}
	if _, err := set.Bucket("nope"); errs.Status(err) != storage.StatusNoSuchBucket {
		t.Fatalf("unknown bucket: %v", err)
	}
	if _, ok := s.Record("files"); ok {
		t.Fatal("the flag bucket has a record")
	}
}

// Run picks a new record up without a call.
func TestServedRuns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := newKeeper(t)
	set := &storage.Set{}
	s := NewServed(k, set, openLocal, nil)
	done := make(chan struct{})
	go func() { s.Run(ctx, 10*time.Millisecond); close(done) }()
	must(t, k.Create(ctx, Record{Name: "photos", Dir: dirWith(t, "one"), Owner: "alice"}))
	deadline := time.Now().Add(30 * time.Second) // a safety net only
	for !slices.Equal(set.Names(), []string{"photos"}) {
		if time.Now().After(deadline) {
			t.Fatal("the record was never served")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
