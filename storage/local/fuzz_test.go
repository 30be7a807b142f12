package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qufop/qufop/errs"
)

// FuzzKey checks key validation and resolution: any key is either refused
// or resolves inside the bucket's root, lexically and with symlinks
// followed, and an object it opens is never one outside the bucket.
func FuzzKey(f *testing.F) {
	for _, k := range []string{
		"a.txt", "nested/deep/x.json", "link-in", "linkdir-in/deep/x.json",
		"link-out", "link-abs", "linkdir-out/f.txt", "link-loop", "dir",
		"../outside/secret.txt", "a/../../x", "/etc/passwd", "a\\b", "a\x00b",
		"..", ".", "", "a//b", "a/", "./a.txt", "....", "..a/b..", "C:\\x", "C:x",
		"%2e%2e/x", "linkdir-out/../secret.txt", tempPrefix + "x",
	} {
		f.Add(k)
	}
	b, out := fixture(f)
	secret, err := os.Stat(filepath.Join(out, "secret.txt"))
	if err != nil {
		f.Fatal(err)
	}
	outFile, err := os.Stat(filepath.Join(out, "dir", "f.txt"))
	if err != nil {
		f.Fatal(err)
	}
	inside := func(p string) bool {
		return p == b.Dir() || strings.HasPrefix(p, b.Dir()+string(filepath.Separator))
	}
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, key string) {
		if err := b.checkKey(key); err != nil {
			if s := errs.Status(err); s != 400 {
				t.Fatalf("checkKey(%q): status %d", key, s)
			}
			return
		}
		joined := filepath.Join(b.Dir(), filepath.FromSlash(key))
		if !inside(joined) || joined == b.Dir() {
			t.Fatalf("accepted key %q joins to %q, outside %q", key, joined, b.Dir())
		}
		if rel, err := b.resolveStrict(key); err == nil {
			real, err := filepath.EvalSymlinks(filepath.Join(b.Dir(), rel))
			if err != nil {
				t.Fatalf("resolveStrict(%q) ok but EvalSymlinks: %v", key, err)
			}
			if !inside(real) {
				t.Fatalf("key %q resolves to %q, outside %q", key, real, b.Dir())
			}
		} else if s := errs.Status(err); s != 404 && s != 400 {
			t.Fatalf("resolveStrict(%q): status %d: %v", key, s, err)
		}
		rc, _, err := b.Open(ctx, key)
		if err != nil {
			return
		}
		defer rc.Close()
		fi, err := rc.(*os.File).Stat()
		if err != nil {
			t.Fatal(err)
		}
		if os.SameFile(fi, secret) || os.SameFile(fi, outFile) {
			t.Fatalf("key %q opened a file outside the bucket", key)
		}
	})
}
