package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

// pngMagic is the start of a PNG file: enough for http.DetectContentType.
var pngMagic = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

// fixture lays out, under a fresh temporary directory:
//
//	outside/secret.txt, outside/dir/f.txt     (not in the bucket)
//	bucket/a.txt                               "hello"
//	bucket/nested/deep/x.json                  `{"a":1}`
//	bucket/img                                 PNG bytes, no extension
//	bucket/dir/                                empty folder
//	bucket/link-in      -> nested/deep/x.json  (stays inside)
//	bucket/linkdir-in   -> nested              (stays inside)
//	bucket/link-out     -> ../outside/secret.txt
//	bucket/linkdir-out  -> ../outside/dir
//	bucket/link-abs     -> <abs>/outside/secret.txt
//	bucket/link-loop    -> link-loop
//
// and returns the bucket and the outside directory.
func fixture(t testing.TB) (*Bucket, string) {
	t.Helper()
	base := t.TempDir()
	out := filepath.Join(base, "outside")
	dir := filepath.Join(base, "bucket")
	mustWrite(t, filepath.Join(out, "secret.txt"), []byte("secret"))
	mustWrite(t, filepath.Join(out, "dir", "f.txt"), []byte("outside file"))
	mustWrite(t, filepath.Join(dir, "a.txt"), []byte("hello"))
	mustWrite(t, filepath.Join(dir, "nested", "deep", "x.json"), []byte(`{"a":1}`))
	mustWrite(t, filepath.Join(dir, "img"), pngMagic)
	if err := os.MkdirAll(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-in":     "nested/deep/x.json",
		"linkdir-in":  "nested",
		"link-out":    "../outside/secret.txt",
		"linkdir-out": "../outside/dir",
		"link-abs":    filepath.Join(out, "secret.txt"),
		"link-loop":   "link-loop",
	} {
		if err := os.Symlink(filepath.FromSlash(target), filepath.Join(dir, link)); err != nil {
			t.Skipf("symlinks unsupported: %v", err)
		}
	}
	b, err := New("test", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, out
}

func mustWrite(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	mustWrite(t, file, nil)
	link := filepath.Join(t.TempDir(), "l")
	if err := os.Symlink(dir, link); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name, dir string
		status    int
	}{
		{"ok", dir, 200},
		{"via-link", link, 200},
		{"Bad", dir, 400},
		{"", dir, 400},
		{"-x", dir, 400},
		{"missing", filepath.Join(dir, "nope"), 599},
		{"file", file, 599},
	} {
		b, err := New(tc.name, tc.dir)
		if got := errs.Status(err); got != tc.status {
			t.Errorf("New(%q, %q): %v (status %d, want %d)", tc.name, tc.dir, err, got, tc.status)
		}
		if err == nil {
			if b.Name() != tc.name {
				t.Errorf("Name = %q", b.Name())
			}
			real, _ := filepath.EvalSymlinks(dir)
			if b.Dir() != real {
				t.Errorf("Dir = %q, want %q", b.Dir(), real)
			}
			b.Close()
		}
	}
}

func TestStatAndOpen(t *testing.T) {
	b, _ := fixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		key    string
		status int
		body   string
		mime   string
	}{
		{key: "a.txt", status: 200, body: "hello", mime: "text/plain; charset=utf-8"},
		{key: "nested/deep/x.json", status: 200, body: `{"a":1}`, mime: "application/json"},
		{key: "img", status: 200, body: string(pngMagic), mime: "image/png"},
		{key: "link-in", status: 200, body: `{"a":1}`, mime: "text/plain; charset=utf-8"}, // sniffed: no extension
		{key: "linkdir-in/deep/x.json", status: 200, body: `{"a":1}`, mime: "application/json"},
		// missing
		{key: "missing.txt", status: 404},
		{key: "nested/missing", status: 404},
		{key: "nope/deeper/x", status: 404},
		{key: "a.txt/b", status: 404}, // a file used as a folder
		// folders are not objects
		{key: "dir", status: 404},
		{key: "nested", status: 404},
		{key: "nested/deep", status: 404},
		{key: "linkdir-in", status: 404},
		// lexical escapes and bad keys
		{key: "", status: 400},
		{key: "../outside/secret.txt", status: 400},
		{key: "a/../../x", status: 400},
		{key: "nested/../a.txt", status: 400},
		{key: "/etc/passwd", status: 400},
		{key: "a\\b", status: 400},
		{key: "..\\outside\\secret.txt", status: 400},
		{key: "a.txt\x00", status: 400},
		{key: "nested//deep/x.json", status: 400},
		{key: "nested/", status: 400},
		{key: "./a.txt", status: 400},
		{key: tempPrefix + "abc", status: 400},
		// escapes through symlinks: to a file, to a folder, absolute, loops
		{key: "link-out", status: 404},
		{key: "link-abs", status: 404},
		{key: "linkdir-out", status: 404},
		{key: "linkdir-out/f.txt", status: 404},
		{key: "link-loop", status: 404},
	} {
		t.Run(strings.ReplaceAll(tc.key, "/", "|"), func(t *testing.T) {
			obj, err := b.Stat(ctx, tc.key)
			if got := errs.Status(err); got != tc.status {
				t.Fatalf("Stat: %v (status %d, want %d)", err, got, tc.status)
			}
			rc, obj2, err := b.Open(ctx, tc.key)
			if got := errs.Status(err); got != tc.status {
				t.Fatalf("Open: %v (status %d, want %d)", err, got, tc.status)
			}
			if err != nil {
				if rc != nil {
					t.Error("Open returned a reader with an error")
				}
				if strings.Contains(errs.Public(err), "outside") || strings.Contains(errs.Public(err), "/tmp") {
					t.Errorf("public message leaks a path: %q", errs.Public(err))
				}
				return
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tc.body {
				t.Errorf("body %q, want %q", data, tc.body)
			}
			for _, o := range []storage.Object{obj, obj2} {
				if o.Key != tc.key || o.Size != int64(len(tc.body)) || o.MIME != tc.mime || o.ETag == "" || o.ModTime.IsZero() {
					t.Errorf("object %+v, want key %q size %d mime %q", o, tc.key, len(tc.body), tc.mime)
				}
			}
			if obj != obj2 {
				t.Errorf("Stat %+v != Open %+v", obj, obj2)
			}
		})
	}
}

func TestMIME(t *testing.T) {
	b, _ := fixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		key  string
		data []byte
		mime string
	}{
		{"p.jpg", []byte("not really a jpeg"), "image/jpeg"}, // extension wins
		{"p.png", nil, "image/png"},
		{"p.JSON", []byte("{}"), "application/json"},
		{"p.html", []byte("x"), "text/html; charset=utf-8"},
		{"noext", pngMagic, "image/png"},
		{"noext-gif", []byte("GIF89a......"), "image/gif"},
		{"noext-text", []byte("plain words"), "text/plain; charset=utf-8"},
		{"noext-bin", []byte{0, 1, 2, 3, 0xff}, "application/octet-stream"},
		{"noext-empty", nil, "text/plain; charset=utf-8"},
		{"unknown.qqqz", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "image/jpeg"},
		{"dir.v2/noext", []byte("%PDF-1.4"), "application/pdf"},
	} {
		obj, err := b.Put(ctx, tc.key, bytes.NewReader(tc.data))
		if err != nil {
			t.Fatalf("Put(%q): %v", tc.key, err)
		}
		if obj.MIME != tc.mime {
			t.Errorf("Put(%q).MIME = %q, want %q", tc.key, obj.MIME, tc.mime)
		}
		st, err := b.Stat(ctx, tc.key)
		if err != nil || st.MIME != tc.mime {
			t.Errorf("Stat(%q) = %+v, %v; want MIME %q", tc.key, st, err, tc.mime)
		}
	}
	// Sniffing in Open must not consume the reader.
	rc, _, err := b.Open(ctx, "noext")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if data, _ := io.ReadAll(rc); !bytes.Equal(data, pngMagic) {
		t.Errorf("Open after sniff read %q", data)
	}
}

func TestPut(t *testing.T) {
	b, out := fixture(t)
	ctx := context.Background()

	obj, err := b.Put(ctx, "new/folders/k.txt", strings.NewReader("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if obj.Key != "new/folders/k.txt" || obj.Size != 2 || obj.MIME != "text/plain; charset=utf-8" {
		t.Errorf("Put object %+v", obj)
	}
	if data, _ := os.ReadFile(filepath.Join(b.Dir(), "new", "folders", "k.txt")); string(data) != "v1" {
		t.Errorf("on disk %q", data)
	}
	st, err := b.Stat(ctx, "new/folders/k.txt")
	if err != nil || st != obj {
		t.Errorf("Stat after Put = %+v, %v; want %+v", st, err, obj)
	}

	obj2, err := b.Put(ctx, "new/folders/k.txt", strings.NewReader("version 2"))
	if err != nil {
		t.Fatal(err)
	}
	if obj2.Size != 9 || obj2.ETag == obj.ETag {
		t.Errorf("overwrite: %+v (old ETag %q)", obj2, obj.ETag)
	}

	// A large object goes through intact.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if _, err := b.Put(ctx, "big.bin", bytes.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(b.Dir(), "big.bin")); !bytes.Equal(data, big) {
		t.Error("big object corrupted")
	}

	for _, tc := range []struct {
		key    string
		status int
	}{
		{"", 400},
		{"../escape.txt", 400},
		{"a/../../escape.txt", 400},
		{"/tmp/escape.txt", 400},
		{"a\\b", 400},
		{"x\x00", 400},
		{"trailing/", 400},
		{tempPrefix + "1234", 400},
		{"sub/" + tempPrefix + "1234", 400},
		{"dir", 400},           // a folder
		{"nested", 400},        // a folder
		{"a.txt/child", 400},   // parent is an object
		{"linkdir-out/x", 404}, // through a link to a folder outside
		{"linkdir-out/deeper/x", 404},
	} {
		_, err := b.Put(ctx, tc.key, strings.NewReader("pwned"))
		if got := errs.Status(err); got != tc.status {
			t.Errorf("Put(%q): %v (status %d, want %d)", tc.key, err, got, tc.status)
		}
	}
	// Nothing was written outside.
	filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(out, p); rel != "." && rel != "secret.txt" && rel != "dir" && rel != filepath.Join("dir", "f.txt") {
			t.Errorf("Put created %s outside the bucket", p)
		}
		return nil
	})

	// Put on a key that is a link pointing out replaces the link, not the target.
	if _, err := b.Put(ctx, "link-out", strings.NewReader("replaced")); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(out, "secret.txt")); string(data) != "secret" {
		t.Errorf("target outside was overwritten: %q", data)
	}
	if fi, err := os.Lstat(filepath.Join(b.Dir(), "link-out")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("link-out after Put: %v, %v", fi, err)
	}
	// Through a link to a folder inside: allowed.
	if _, err := b.Put(ctx, "linkdir-in/deep/y.txt", strings.NewReader("y")); err != nil {
		t.Errorf("Put through an inside link: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.Dir(), "nested", "deep", "y.txt")); err != nil {
		t.Error(err)
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct{ n int }

var errBoom = errors.New("boom")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errBoom
	}
	k := min(r.n, len(p))
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

func TestPutAtomic(t *testing.T) {
	b, _ := fixture(t)
	ctx := context.Background()
	listing := func() []string {
		var names []string
		filepath.WalkDir(b.Dir(), func(p string, d os.DirEntry, err error) error {
			if !d.IsDir() {
				names = append(names, p)
			}
			return nil
		})
		return names
	}
	before := listing()

	for _, key := range []string{"a.txt", "fresh.txt", "nested/deep/x.json"} {
		old, oldErr := b.Stat(ctx, key)
		_, err := b.Put(ctx, key, &failingReader{n: 100000})
		if errs.Status(err) != 599 || !errors.Is(err, errBoom) {
			t.Fatalf("Put(%q) with a failing reader: %v", key, err)
		}
		now, nowErr := b.Stat(ctx, key)
		if now != old || errs.Status(nowErr) != errs.Status(oldErr) {
			t.Errorf("%q changed by a failed Put: %+v/%v -> %+v/%v", key, old, oldErr, now, nowErr)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(b.Dir(), "a.txt")); string(data) != "hello" {
		t.Errorf("a.txt = %q", data)
	}

	// A cancelled context aborts the Put the same way.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Put(cctx, "a.txt", strings.NewReader("new")); errs.Status(err) != 599 {
		t.Errorf("Put with a cancelled context: %v", err)
	}
	if after := listing(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("files left behind:\nbefore %v\nafter  %v", before, after)
	}
}

// TestPutConcurrentReaders checks that readers never see a partial object
// while writers replace it.
func TestPutConcurrentReaders(t *testing.T) {
	b, _ := fixture(t)
	ctx := context.Background()
	const size = 256 << 10
	if _, err := b.Put(ctx, "hot.bin", bytes.NewReader(bytes.Repeat([]byte{'A'}, size))); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				c := byte('A' + (w*20+i)%26)
				if _, err := b.Put(ctx, "hot.bin", bytes.NewReader(bytes.Repeat([]byte{c}, size))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for range 4 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, _, err := b.Open(ctx, "hot.bin")
				if err != nil {
					t.Error(err)
					return
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || len(data) != size || bytes.Count(data, data[:1]) != size {
					t.Errorf("partial or mixed object: %d bytes, err %v", len(data), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
}

func TestDelete(t *testing.T) {
	b, out := fixture(t)
	ctx := context.Background()
	if err := b.Delete(ctx, "nested/deep/x.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "nested/deep/x.json"); errs.Status(err) != 404 {
		t.Errorf("Stat after Delete: %v", err)
	}
	// link-in now dangles.
	if _, err := b.Stat(ctx, "link-in"); errs.Status(err) != 404 {
		t.Errorf("Stat of dangling link: %v", err)
	}
	for _, tc := range []struct {
		key    string
		status int
	}{
		{"nested/deep/x.json", 404}, // already gone
		{"missing", 404},
		{"dir", 404},
		{"nested", 404},
		{"link-out", 404},
		{"linkdir-out/f.txt", 404},
		{"../outside/secret.txt", 400},
		{"/etc/passwd", 400},
		{"", 400},
		{"a\\b", 400},
	} {
		if err := b.Delete(ctx, tc.key); errs.Status(err) != tc.status {
			t.Errorf("Delete(%q): %v (status %d, want %d)", tc.key, err, errs.Status(err), tc.status)
		}
	}
	for _, p := range []string{filepath.Join(out, "secret.txt"), filepath.Join(out, "dir", "f.txt"), filepath.Join(b.Dir(), "link-out"), filepath.Join(b.Dir(), "dir")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	if err := b.Delete(ctx, "a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(b.Dir(), "a.txt")); !os.IsNotExist(err) {
		t.Errorf("a.txt still there: %v", err)
	}
}

func TestETag(t *testing.T) {
	b, _ := fixture(t)
	ctx := context.Background()
	o1, _ := b.Stat(ctx, "a.txt")
	o2, _ := b.Stat(ctx, "a.txt")
	if o1.ETag != o2.ETag || len(o1.ETag) != 16 {
		t.Errorf("ETag unstable or malformed: %q %q", o1.ETag, o2.ETag)
	}
	if o3, _ := b.Stat(ctx, "img"); o3.ETag == o1.ETag {
		t.Error("different objects share an ETag")
	}
}

func TestContextCancelled(t *testing.T) {
	b, _ := fixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Stat(ctx, "a.txt"); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat: %v", err)
	}
	if _, _, err := b.Open(ctx, "a.txt"); !errors.Is(err, context.Canceled) {
		t.Errorf("Open: %v", err)
	}
	if err := b.Delete(ctx, "a.txt"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v", err)
	}
}

func TestInSet(t *testing.T) {
	b, _ := fixture(t)
	s, err := storage.NewSet(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Bucket("test")
	if err != nil || got != storage.Bucket(b) {
		t.Fatalf("Bucket(test) = %v, %v", got, err)
	}
}
