package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/qufop/qufop/internal/testutil"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/internal/dockertest"
)

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName is a UFOP name of its own for each test run.
func uniqueName(t testing.TB) string {
	n := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(n) > 40 {
		n = n[len(n)-40:]
		n = strings.Trim(n, "-")
	}
	return fmt.Sprintf("%s-%d", n, time.Now().UnixNano()%1e9)
}

type dockerEnv struct {
	c   *client.Client
	cfg Config
	b   *Builder
}

// newDockerEnv gives a Builder on the real daemon and registry, or skips.
func newDockerEnv(t *testing.T, mod func(*Config)) *dockerEnv {
	t.Helper()
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	reg := dockertest.Registry(t)
	cfg := NewDefaultConfig()
	cfg.Registry = reg
	cfg.Dir = t.TempDir()
	cfg.Timeout = 2 * time.Minute
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, NewDocker(cfg, c))
	if err != nil {
		t.Fatal(err)
	}
	return &dockerEnv{c: c, cfg: cfg, b: b}
}

// removeImage deletes ref at the end of the test.
func (e *dockerEnv) removeImage(t *testing.T, ref string) {
	t.Cleanup(func() {
		_, _ = e.c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// unpush deletes repo:tag from the registry at the end of the test.
func (e *dockerEnv) unpush(t *testing.T, repo, tag string) {
	t.Cleanup(func() {
		base := "http://" + e.cfg.Registry + "/v2/" + repo + "/manifests/"
		req, _ := http.NewRequest(http.MethodHead, base+tag, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		r.Body.Close()
		if dg := r.Header.Get("Docker-Content-Digest"); dg != "" {
			req, _ := http.NewRequest(http.MethodDelete, base+dg, nil)
			if r, err := http.DefaultClient.Do(req); err == nil {
				r.Body.Close()
			}
		}
	})
}

// runIn runs sh -c script in a container of ref and returns its exit code.
func (e *dockerEnv) runIn(t *testing.T, ref, script string) int64 {
	t.Helper()
	ctx := context.Background()
	cr, err := e.c.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: []string{"/bin/sh", "-c", script}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.c.ContainerRemove(ctx, cr.ID, container.RemoveOptions{Force: true})
	if err := e.c.ContainerStart(ctx, cr.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	okc, errc := e.c.ContainerWait(wctx, cr.ID, container.WaitConditionNotRunning)
	select {
	case r := <-okc:
		return r.StatusCode
	case err := <-errc:
		t.Fatal(err)
	}
	return -1
}

func registryTags(t *testing.T, reg, repo string) []string {
	t.Helper()
	r, err := http.Get("http://" + reg + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var v struct{ Tags []string }
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		t.Fatalf("tags of %s: %s: %v", repo, r.Status, err)
	}
	return v.Tags
}

const owner = "qtest"

func TestDockerBuildPush(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	tag := e.cfg.Tag(owner, name, 1)
	e.removeImage(t, tag)
	e.unpush(t, owner+"/"+name, "v1")
	tb := makeTar(t, true,
		file("ufop.yaml", `image: busybox
build_script:
  - mv $RESOURCE/* .
  - echo built > built.txt
  - sudo touch /tmp/sudo-worked
  - |
    if [ -f index.html ]; then
      echo "it's multi" > multi.txt
    fi
run: httpd -f -p $PORT_HTTP -h /home/ufop/app
env:
  GREETING: hello world
`),
		file("index.html", "<h1>hi</h1>\n"),
	)
	var log testutil.SyncBuffer
	res, err := e.b.Build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	t.Logf("log:\n%s", log.String())
	if res.Image != tag || res.Spec == nil || res.Spec.Run == "" {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"qufop: build_script line 1: mv $RESOURCE/* .", "qufop: build_script line 3: sudo touch /tmp/sudo-worked", "qufop: pushed " + tag, "qufop: build success"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	ins, err := e.c.ImageInspect(context.Background(), tag)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ins.RepoTags, tag) {
		t.Errorf("tags %v lack %s", ins.RepoTags, tag)
	}
	if u := ins.Config.User; u == "" || u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("image user %q is root", u)
	}
	if l := ins.Config.Labels; l["qufop.ufop"] != name || l["qufop.owner"] != owner || l["qufop.version"] != "1" {
		t.Errorf("labels %v", l)
	}
	if !slices.Contains(registryTags(t, e.cfg.Registry, owner+"/"+name), "v1") {
		t.Errorf("v1 not pushed to %s", e.cfg.Registry)
	}
	// In the image: the app is built, $RESOURCE and the sudo shim are gone,
	// the program runs as 10001 with its env.
	check := `set -e; test ! -e /tmp/resource; test ! -e "$RESOURCE"; test ! -e /usr/local/bin/sudo
test -f /tmp/sudo-worked; test "$(cat multi.txt)" = "it's multi"; test "$(cat built.txt)" = built; test -f index.html; test ! -e ufop.yaml -o -f ufop.yaml
test "$(id -u)" = 10001; test "$PWD" = /home/ufop/app; test "$PORT_HTTP" = 9100; test "$GREETING" = "hello world"
touch writable`
	if code := e.runIn(t, tag, check); code != 0 {
		t.Errorf("checks in the image exited %d", code)
	}

	// A version on top of the previous one, which the daemon no longer
	// holds: it is pulled from the registry.
	tag2 := e.cfg.Tag(owner, name, 2)
	e.removeImage(t, tag2)
	e.unpush(t, owner+"/"+name, "v2")
	if _, err := e.c.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	tb2 := makeTar(t, false, file("ufop.yaml", fmt.Sprintf("image: %s.v1\nbuild_script:\n  - echo two > two.txt\nrun: httpd -f -p 9100\n", name)))
	log = testutil.SyncBuffer{}
	if _, err := e.b.Build(context.Background(), Job{Owner: owner, Name: name, Version: 2, Tarball: bytes.NewReader(tb2)}, &log); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "pulling base image "+tag) {
		t.Errorf("log does not show the pull of %s:\n%s", tag, log.String())
	}
	if code := e.runIn(t, tag2, `test "$(cat built.txt)" = built && test "$(cat two.txt)" = two && test "$(id -u)" = 10001`); code != 0 {
		t.Errorf("checks in v2 exited %d", code)
	}
}

func TestDockerBuildFailingLine(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	e.removeImage(t, e.cfg.Tag(owner, name, 1))
	tb := makeTar(t, false, file("ufop.yaml", "image: local/busybox:1\nbuild_script:\n  - echo one\n  - make all\n  - echo three\nrun: ./app\n"))
	var log testutil.SyncBuffer
	_, err := e.b.Build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err == nil {
		t.Fatal("build succeeded")
	}
	want := `build_script line 2 ("make all") failed: exit code 127`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var be *BuildError
	if !errors.As(err, &be) || be.Line != 2 || errs.Status(err) != 400 {
		t.Errorf("error %#v (status %d)", err, errs.Status(err))
	}
	for _, w := range []string{"qufop: build_script line 1: echo one", "qufop: build_script line 2: make all", "qufop: build failed"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}
	if strings.Contains(log.String(), "qufop: build_script line 3:") {
		t.Errorf("line 3 ran:\n%s", log.String())
	}
}

func TestDockerBuildMissingBase(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	for _, img := range []string{"nosuch/base:v9", "nosuchufop.v3"} {
		tb := makeTar(t, false, file("ufop.yaml", "image: "+img+"\nrun: ./app\n"))
		_, err := e.b.Build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, nil)
		if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "no image can be pulled from public registries") || errs.Status(err) != 400 {
			t.Errorf("%s: error %v", img, err)
		}
	}
}

func TestDockerBuildTimeout(t *testing.T) {
	e := newDockerEnv(t, func(c *Config) { c.Timeout = 4 * time.Second })
	name := uniqueName(t)
	e.removeImage(t, e.cfg.Tag(owner, name, 1))
	tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - sleep 120\nrun: ./app\n"))
	start := time.Now()
	var log testutil.SyncBuffer
	_, err := e.b.Build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err == nil || !strings.Contains(err.Error(), "build timed out after 4s") || errs.Status(err) != http.StatusGatewayTimeout {
		t.Fatalf("error %v\nlog:\n%s", err, log.String())
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestDockerConcurrencyBound(t *testing.T) {
	e := newDockerEnv(t, func(c *Config) { c.MaxConcurrent = 1 })
	names := []string{uniqueName(t) + "-a", uniqueName(t) + "-b"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	type span struct{ start, end time.Time }
	spans := map[string]span{}
	for _, n := range names {
		e.removeImage(t, e.cfg.Tag(owner, n, 1))
		e.unpush(t, owner+"/"+n, "v1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - sleep 2\nrun: ./app\n"))
			lw := &stampWriter{}
			_, err := e.b.Build(context.Background(), Job{Owner: owner, Name: n, Version: 1, Tarball: bytes.NewReader(tb)}, lw)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			spans[n] = span{lw.first, time.Now()}
			mu.Unlock()
		}()
	}
	wg.Wait()
	a, b := spans[names[0]], spans[names[1]]
	if a.start.Before(b.end) && b.start.Before(a.end) {
		t.Errorf("builds overlapped with MaxConcurrent 1: %v %v", a, b)
	}
}

// stampWriter notes when the first log line was written (the build began).
type stampWriter struct {
	mu    sync.Mutex
	first time.Time
}

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = time.Now()
	}
	s.mu.Unlock()
	return len(p), nil
}
