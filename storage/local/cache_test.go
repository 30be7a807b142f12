package local

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

func readAllKey(t *testing.T, b *Bucket, key string) (string, error) {
	t.Helper()
	rc, obj, err := b.Open(context.Background(), key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != obj.Size {
		t.Fatalf("%s: read %d bytes, object says %d", key, len(data), obj.Size)
	}
	return string(data), nil
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "hello")
	write("sub/b.txt", "nested")
	write("big.bin", strings.Repeat("x", 100))
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "out"))
	os.Mkdir(filepath.Join(dir, "d"), 0o755)

	c := NewCache(50, 60, 0) // validated on every read
	b, err := New("cached", dir, WithCache(c))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got, err := readAllKey(t, b, "a.txt"); err != nil || got != "hello" {
			t.Fatalf("a.txt: %q %v", got, err)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("cache holds %d objects, want 1", c.Len())
	}

	// A changed file is read again, even with the same size.
	time.Sleep(5 * time.Millisecond)
	write("a.txt", "HELLO")
	if got, _ := readAllKey(t, b, "a.txt"); got != "HELLO" {
		t.Fatalf("after a change: %q", got)
	}
	// So is one replaced through the bucket.
	if _, err := b.Put(context.Background(), "a.txt", strings.NewReader("put!")); err != nil {
		t.Fatal(err)
	}
	if got, _ := readAllKey(t, b, "a.txt"); got != "put!" {
		t.Fatalf("after Put: %q", got)
	}

	// Objects over the per-object cap are read from disk, not kept.
	if got, _ := readAllKey(t, b, "big.bin"); len(got) != 100 {
		t.Fatalf("big.bin: %d bytes", len(got))
	}
	// The total cap evicts the least recently used.
	readAllKey(t, b, "sub/b.txt")
	write("c.txt", strings.Repeat("c", 50))
	readAllKey(t, b, "c.txt")
	if c.total > 60 {
		t.Fatalf("cache holds %d bytes, over its cap", c.total)
	}

	// The cache changes nothing about what may be read.
	for key, status := range map[string]int{"out": 404, "d": 404, "nope": 404, "../x": 400} {
		if _, err := readAllKey(t, b, key); errs.Status(err) != status {
			t.Errorf("%s: status %d (%v), want %d", key, errs.Status(err), err, status)
		}
	}
	// A deleted file is gone at once.
	if err := b.Delete(context.Background(), "sub/b.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := readAllKey(t, b, "sub/b.txt"); errs.Status(err) != 404 {
		t.Fatalf("deleted object: %v", err)
	}
}

func TestCacheValidity(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	const valid = 200 * time.Millisecond
	b, err := New("cached", dir, WithCache(NewCache(50, 60, valid)))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got, _ := readAllKey(t, b, "a.txt"); got != "one" {
		t.Fatalf("first read: %q", got)
	}
	// Changed behind the bucket's back: served as cached within the
	// validity (the point of it: no stat), read again after it.
	time.Sleep(5 * time.Millisecond)
	write("two")
	if got, _ := readAllKey(t, b, "a.txt"); got != "one" && time.Since(start) < valid {
		t.Fatalf("within the validity: %q, want the cached %q", got, "one")
	}
	time.Sleep(valid)
	if got, _ := readAllKey(t, b, "a.txt"); got != "two" {
		t.Fatalf("after the validity: %q, want %q", got, "two")
	}
	// Writes and deletes through the bucket are seen at once.
	if _, err := b.Put(context.Background(), "a.txt", strings.NewReader("three")); err != nil {
		t.Fatal(err)
	}
	if got, _ := readAllKey(t, b, "a.txt"); got != "three" {
		t.Fatalf("after Put: %q", got)
	}
	if err := b.Delete(context.Background(), "a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := readAllKey(t, b, "a.txt"); errs.Status(err) != 404 {
		t.Fatalf("after Delete: %v", err)
	}
}

func TestCachedReaderBytes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := New("cached", dir, WithCache(NewCache(50, 60, time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a miss, then a hit
		rc, _, err := b.Open(context.Background(), "a.txt")
		if err != nil {
			t.Fatal(err)
		}
		bs, ok := rc.(storage.Byteser)
		if !ok || string(bs.Bytes()) != "shared" {
			t.Fatalf("reader %T: not a Byteser holding the object", rc)
		}
		rc.Close()
	}
}
