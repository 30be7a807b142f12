package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qufop/qufop/errs"
)

func newProcessBuilder(t *testing.T, mod func(*Config)) (*Builder, Config) {
	t.Helper()
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, NewProcess(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return b, cfg
}

func TestProcessBuild(t *testing.T) {
	b, cfg := newProcessBuilder(t, nil)
	tb := makeTar(t, true,
		file("ufop.yaml", `image: ubuntu
build_script:
  - mv $RESOURCE/* .
  - echo "built in $PWD with $GREETING" > built.txt
  - sudo touch sudo-worked
run: ./app
env:
  GREETING: hello
`),
		tentry{name: "app", body: "#!/bin/sh\necho app\n", mode: 0o755},
	)
	var log bytes.Buffer
	res, err := b.Build(context.Background(), Job{Owner: "alice", Name: "demo", Version: 3, Tarball: bytes.NewReader(tb)}, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	want := filepath.Join(cfg.Dir, "alice", "demo", "v3", "app")
	if res.Dir != want || res.Image != "" || res.Spec.Run != "./app" {
		t.Fatalf("result %+v, want Dir %s", res, want)
	}
	got, err := os.ReadFile(filepath.Join(res.Dir, "built.txt"))
	if err != nil || strings.TrimSpace(string(got)) != "built in "+want+" with hello" {
		t.Errorf("built.txt = %q, %v", got, err)
	}
	for _, f := range []string{"app", "ufop.yaml", "sudo-worked"} {
		if _, err := os.Stat(filepath.Join(res.Dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice", "demo", "v3", "resource")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resource dir not removed: %v", err)
	}
	for _, w := range []string{"qufop: build_script line 2: echo", "isolates nothing", "qufop: build success"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}
	if b.Mode() != "process" {
		t.Errorf("mode %q", b.Mode())
	}
}

func TestProcessBuildFailingLine(t *testing.T) {
	b, cfg := newProcessBuilder(t, nil)
	tb := makeTar(t, false, file("ufop.yaml", "image: ubuntu\nbuild_script:\n  - echo one\n  - exit 3\n  - echo three > three.txt\nrun: ./app\n"))
	var log bytes.Buffer
	_, err := b.Build(context.Background(), Job{Owner: "alice", Name: "bad", Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err == nil || err.Error() != `build_script line 2 ("exit 3") failed: exit code 3` || errs.Status(err) != 400 {
		t.Fatalf("error %v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "qufop: build_script line 2: exit 3") || strings.Contains(log.String(), "line 3:") {
		t.Errorf("log:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice", "bad", "v1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed version dir left: %v", err)
	}
}

func TestProcessBuildTimeout(t *testing.T) {
	b, _ := newProcessBuilder(t, func(c *Config) { c.Timeout = 500 * time.Millisecond })
	tb := makeTar(t, false, file("ufop.yaml", "image: ubuntu\nbuild_script:\n  - sleep 3600; echo late\nrun: ./app\n"))
	start := time.Now()
	_, err := b.Build(context.Background(), Job{Owner: "alice", Name: "slow", Version: 1, Tarball: bytes.NewReader(tb)}, nil)
	if err == nil || !strings.Contains(err.Error(), "build timed out after 500ms") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 10*time.Minute {
		t.Errorf("took %s: the timeout did not stop the build", d)
	}
}

func TestProcessBuildBadTarball(t *testing.T) {
	b, _ := newProcessBuilder(t, nil)
	tb := makeTar(t, false, file("ufop.yaml", goodSpec), file("../evil", "x"))
	_, err := b.Build(context.Background(), Job{Owner: "alice", Name: "evil", Version: 1, Tarball: bytes.NewReader(tb)}, nil)
	if err == nil || !strings.Contains(err.Error(), `tarball entry "../evil": path leaves the archive`) {
		t.Fatalf("error %v", err)
	}
}

func TestProcessBuildFromPath(t *testing.T) {
	b, _ := newProcessBuilder(t, nil)
	p := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(p, makeTar(t, false, file("ufop.yaml", "image: ubuntu\nrun: ./app\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(context.Background(), Job{Owner: "alice", Name: "path", Version: 1, TarballPath: p}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestProcessRemove(t *testing.T) {
	b, cfg := newProcessBuilder(t, nil)
	tb := makeTar(t, false, file("ufop.yaml", "image: ubuntu\nbuild_script:\n  - mv $RESOURCE/* .\nrun: ./app\n"))
	var dirs []string
	for v := 1; v <= 2; v++ {
		res, err := b.Build(context.Background(), Job{Owner: "alice", Name: "gone", Version: v, Tarball: bytes.NewReader(tb)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, res.Dir)
	}
	// Not app folders of this builder: refused, and nothing is removed.
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(outside, "bob", "x", "v1", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/etc",
		outside,
		filepath.Join(outside, "bob", "x", "v1", "app"),
		cfg.Dir,
		filepath.Join(cfg.Dir, "alice"),
		filepath.Join(cfg.Dir, "alice", "gone", "v1"),
		filepath.Join(cfg.Dir, "alice", "gone", "v1", "app", ".."),
		filepath.Join(cfg.Dir, "alice", "gone", "v1", "app", "ufop.yaml"),
		filepath.Join(cfg.Dir, "logs", "alice", "gone", "app"),
		filepath.Join(cfg.Dir, "alice", "..", "..", "alice", "gone", "v1", "app"),
	} {
		if err := b.Remove(context.Background(), p); err == nil || errs.Status(err) != 400 {
			t.Errorf("Remove(%s): %v", p, err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "bob"), filepath.Join(cfg.Dir, "bob")); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(context.Background(), filepath.Join(cfg.Dir, "bob", "x", "v1", "app")); err == nil {
		t.Error("Remove through a symlink out of the folder passed")
	}
	if _, err := os.Stat(filepath.Join(outside, "bob", "x", "v1", "app")); err != nil {
		t.Errorf("a folder outside was removed: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatal(err)
		}
	}

	if err := b.Remove(context.Background(), dirs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dirs[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("v1 folder after Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirs[1], "ufop.yaml")); err != nil {
		t.Errorf("v2 after removing v1: %v", err)
	}
	if err := b.Remove(context.Background(), dirs[0]); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := b.Remove(context.Background(), dirs[1]); err != nil {
		t.Fatal(err)
	}
	// The UFOP's and the owner's folders went with their last version.
	if _, err := os.Stat(filepath.Join(cfg.Dir, "alice")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owner folder after removing every version: %v", err)
	}
}
