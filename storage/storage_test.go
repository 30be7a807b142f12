package storage_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

func TestValidBucketName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"my-bucket-01", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"A", false},
		{"a_b", false},
		{"a.b", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
	} {
		if got := storage.ValidBucketName(tc.name); got != tc.ok {
			t.Errorf("ValidBucketName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		err := storage.CheckBucketName(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("CheckBucketName(%q) = %v", tc.name, err)
		}
		if err != nil && errs.Status(err) != 400 {
			t.Errorf("CheckBucketName(%q): status %d, want 400", tc.name, errs.Status(err))
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"a.jpg", true},
		{"a/b/c.png", true},
		{"..a", true},
		{"a..", true},
		{"a/...", true},
		{".hidden", true},
		{"空格 and spaces", true},
		{strings.Repeat("k", storage.MaxKeyLen), true},
		{strings.Repeat("k", storage.MaxKeyLen+1), false},
		{"", false},
		{"..", false},
		{".", false},
		{"../x", false},
		{"a/../../x", false},
		{"a/..", false},
		{"a/./b", false},
		{"/etc/passwd", false},
		{"/", false},
		{"a\\b", false},
		{"..\\x", false},
		{"a\x00b", false},
		{"a//b", false},
		{"a/", false},
	} {
		err := storage.CheckKey(tc.key)
		if tc.ok != (err == nil) {
			t.Errorf("CheckKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && errs.Status(err) != 400 {
			t.Errorf("CheckKey(%q): status %d, want 400", tc.key, errs.Status(err))
		}
	}
}

type fakeBucket struct{ name string }

func (f fakeBucket) Name() string { return f.name }
func (fakeBucket) Stat(context.Context, string) (storage.Object, error) {
	return storage.Object{}, nil
}
func (fakeBucket) Open(context.Context, string) (io.ReadCloser, storage.Object, error) {
	return nil, storage.Object{}, nil
}
func (fakeBucket) Put(context.Context, string, io.Reader) (storage.Object, error) {
	return storage.Object{}, nil
}
func (fakeBucket) Delete(context.Context, string) error { return nil }

func TestSet(t *testing.T) {
	var s storage.Set // zero value usable
	if got := s.Names(); len(got) != 0 {
		t.Fatalf("Names of empty set = %v", got)
	}
	if _, err := s.Bucket("x"); errs.Status(err) != storage.StatusNoSuchBucket {
		t.Fatalf("Bucket on empty set: %v (status %d)", err, errs.Status(err))
	}
	for _, n := range []string{"b", "a", "c-1"} {
		if err := s.Add(fakeBucket{n}); err != nil {
			t.Fatalf("Add(%q): %v", n, err)
		}
	}
	if err := s.Add(fakeBucket{"a"}); errs.Status(err) != 400 {
		t.Errorf("duplicate Add: %v", err)
	}
	if err := s.Add(fakeBucket{"Bad_Name"}); errs.Status(err) != 400 {
		t.Errorf("Add of bad name: %v", err)
	}
	if got, want := s.Names(), []string{"a", "b", "c-1"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	b, err := s.Bucket("b")
	if err != nil || b.Name() != "b" {
		t.Fatalf("Bucket(b) = %v, %v", b, err)
	}
	_, err = s.Bucket("nope")
	if errs.Status(err) != 631 || !errors.Is(err, storage.ErrNoSuchBucket) {
		t.Fatalf("Bucket(nope) = %v (status %d)", err, errs.Status(err))
	}
	if got := errs.Public(err); got != "bucket does not exist" {
		t.Errorf("public message %q", got)
	}
}

func TestNewSet(t *testing.T) {
	s, err := storage.NewSet(fakeBucket{"x"}, fakeBucket{"y"})
	if err != nil || !slices.Equal(s.Names(), []string{"x", "y"}) {
		t.Fatalf("NewSet = %v, %v", s, err)
	}
	if _, err := storage.NewSet(fakeBucket{"x"}, fakeBucket{"x"}); err == nil {
		t.Fatal("NewSet with a duplicate succeeded")
	}
}

func TestSetConcurrent(t *testing.T) {
	var s storage.Set
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(2)
		name := "b" + strings.Repeat("x", i)
		go func() {
			defer wg.Done()
			if err := s.Add(fakeBucket{name}); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			s.Bucket(name)
			s.Names()
		}()
	}
	wg.Wait()
	if n := len(s.Names()); n != 50 {
		t.Fatalf("%d buckets, want 50", n)
	}
}
