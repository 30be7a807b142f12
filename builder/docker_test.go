package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/testutil"
)

// runID is in the name of everything the tests of this process make on the
// shared daemon and registry; TestMain fails the run when any of it is left.
var runID = fmt.Sprintf("r%05x", rand.Uint32()&0xfffff)

var nameSeq atomic.Int32

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName is a UFOP name of its own for each call.
func uniqueName(t testing.TB) string {
	n := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	n = strings.TrimPrefix(n, "testdocker")
	if len(n) > 30 {
		n = strings.Trim(n[len(n)-30:], "-")
	}
	return fmt.Sprintf("%s-%s-%d", n, runID, nameSeq.Add(1))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if left := leftovers(); left != "" {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left behind (run %s):\n%s", runID, left)
		code = 1
	}
	os.Exit(code)
}

// leftovers lists the containers, images and registry repositories of this
// run that still exist.
func leftovers() string {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return ""
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		return ""
	}
	var b strings.Builder
	cs, err := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", runID))})
	if err != nil {
		fmt.Fprintf(&b, "  cannot list containers: %v\n", err)
	}
	for _, ct := range cs {
		fmt.Fprintf(&b, "  container %s %v\n", ct.ID[:12], ct.Names)
	}
	imgs, err := c.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		fmt.Fprintf(&b, "  cannot list images: %v\n", err)
	}
	for _, img := range imgs {
		if strings.Contains(img.Labels["qufop.ufop"], runID) || slices.ContainsFunc(img.RepoTags, func(s string) bool { return strings.Contains(s, runID) }) {
			fmt.Fprintf(&b, "  image %s %v\n", img.ID, img.RepoTags)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	if r, err := hc.Get("http://" + dockertest.RegistryAddr + "/v2/"); err == nil {
		r.Body.Close()
		repos, err := dockertest.Catalog(dockertest.RegistryAddr)
		if err != nil {
			fmt.Fprintf(&b, "  cannot list the registry's repositories: %v\n", err)
		}
		for _, repo := range repos {
			if strings.Contains(repo, runID) {
				fmt.Fprintf(&b, "  registry repository %s\n", repo)
			}
		}
	}
	return b.String()
}

type dockerEnv struct {
	c   *client.Client
	cfg Config
	b   *Builder
	d   *Docker

	mu    sync.Mutex
	ids   map[string]string // built reference -> image id
	repos map[string]bool   // registry repositories to remove
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
	cfg.Timeout = 5 * time.Minute
	if mod != nil {
		mod(&cfg)
	}
	d := NewDocker(cfg, c)
	b, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	return &dockerEnv{c: c, cfg: cfg, b: b, d: d, ids: map[string]string{}, repos: map[string]bool{}}
}

// track makes sure that what a build of owner/name:v<version> may make is
// gone when t ends, however it ends: the tag, the image (removed by id, so
// also once a test untagged it; images built on it are tracked later and
// so removed first), its build containers and its registry repository.
// Nothing is forced or pruned: only what the test made is removed.
func (e *dockerEnv) track(t *testing.T, owner, name string, version int) string {
	t.Helper()
	ref := e.cfg.Tag(owner, name, version)
	repo := strings.TrimPrefix(e.cfg.Repository(owner, name), e.cfg.Registry+"/")
	e.mu.Lock()
	if e.cfg.Registry != "" && !e.repos[repo] {
		e.repos[repo] = true
		dockertest.CleanupRepository(t, e.cfg.Registry, repo)
	}
	e.mu.Unlock()
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := e.c.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("removing %s: %v", ref, err)
		}
		e.mu.Lock()
		id := e.ids[ref]
		e.mu.Unlock()
		if id != "" {
			if _, err := e.c.ImageRemove(ctx, id, image.RemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("removing %s (%s): %v", id, ref, err)
			}
		}
		e.noBuildContainers(t, owner, name, version)
	})
	return ref
}

// build runs a job on the Builder and notes the image it made.
func (e *dockerEnv) build(ctx context.Context, job Job, log io.Writer) (Result, error) {
	res, err := e.b.Build(ctx, job, log)
	if err == nil {
		if ins, ierr := e.c.ImageInspect(context.Background(), res.Image); ierr == nil {
			e.mu.Lock()
			e.ids[res.Image] = ins.ID
			e.mu.Unlock()
		}
	}
	return res, err
}

// noBuildContainers fails t if a build container of owner/name:v<version>
// exists.
func (e *dockerEnv) noBuildContainers(t *testing.T, owner, name string, version int) {
	t.Helper()
	prefix := e.cfg.buildContainerName(owner, name, version)
	cs, err := e.c.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", prefix))})
	if err != nil {
		t.Error(err)
		return
	}
	for _, c := range cs {
		t.Errorf("build container left behind: %s %v (%s)", c.ID[:12], c.Names, c.State)
	}
}

var runSeq atomic.Int32

// runIn runs sh -c script in a container of ref and returns its exit code.
func (e *dockerEnv) runIn(t *testing.T, ref, script string) int64 {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("qtest-run-%s-%d", runID, runSeq.Add(1))
	cr, err := e.c.ContainerCreate(ctx, &container.Config{Image: ref, Entrypoint: []string{}, Cmd: []string{"/bin/sh", "-c", script}}, nil, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	defer e.c.ContainerRemove(ctx, cr.ID, container.RemoveOptions{Force: true})
	okc, errc := e.c.ContainerWait(ctx, cr.ID, container.WaitConditionNextExit)
	if err := e.c.ContainerStart(ctx, cr.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
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

// manifestStatus is the registry's answer to a HEAD of repo:tag's manifest.
func manifestStatus(t *testing.T, reg, repo, tag string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+reg+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// inspect returns the inspection of image ref.
func (e *dockerEnv) inspect(t *testing.T, ref string) image.InspectResponse {
	t.Helper()
	ins, err := e.c.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return ins
}

// oneLayerMore fails t unless img has exactly the layers of base and one more.
func oneLayerMore(t *testing.T, img, base image.InspectResponse) {
	t.Helper()
	il, bl := img.RootFS.Layers, base.RootFS.Layers
	if len(il) != len(bl)+1 || !slices.Equal(il[:len(bl)], bl) {
		t.Errorf("image layers %v, want those of the base %v and one more", il, bl)
	}
}

const owner = "qtest"

func TestDockerBuildPush(t *testing.T) {
	e := newDockerEnv(t, func(c *Config) { c.Labels = map[string]string{"qufop.platform": "test-" + runID} })
	name := uniqueName(t)
	tag := e.track(t, owner, name, 1)
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
  - test "$PORT_HTTP" = 9100 && test "$GREETING" = "hello world" && test "$(id -u)" = 0 && test "$PWD" = /home/ufop/app && test -d "$RESOURCE"
run: httpd -f -p $PORT_HTTP -h /home/ufop/app
env:
  GREETING: hello world
`),
		file("index.html", "<h1>hi</h1>\n"),
		file("big.bin", strings.Repeat("x", 64<<10)),
		file("sub/a.txt", "same bytes\n"),
		tentry{name: "sub/b.txt", typ: tar.TypeLink, link: "sub/a.txt"},
	)
	var log testutil.SyncBuffer
	res, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	t.Logf("log:\n%s", log.String())
	if res.Image != tag || res.Spec == nil || res.Spec.Run == "" {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"qufop: build_script line 1: mv $RESOURCE/* .", "qufop: build_script line 3: sudo touch /tmp/sudo-worked", `qufop: build_script line 4: if [ -f index.html ]; then\n  echo`, "qufop: pushed " + tag, "qufop: build success"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	ins := e.inspect(t, tag)
	oneLayerMore(t, ins, e.inspect(t, dockertest.BusyboxRef))
	if !slices.Contains(ins.RepoTags, tag) {
		t.Errorf("tags %v lack %s", ins.RepoTags, tag)
	}
	if u := ins.Config.User; u != "10001:10001" {
		t.Errorf("image user %q", u)
	}
	if l := ins.Config.Labels; l["qufop.ufop"] != name || l["qufop.owner"] != owner || l["qufop.version"] != "1" || l["qufop.platform"] != "test-"+runID {
		t.Errorf("labels %v", l)
	}
	if c := ins.Config; c.WorkingDir != AppDir || c.StopSignal != "SIGTERM" || !slices.Equal(c.Cmd, []string{"/bin/sh", "-c", res.Spec.Run}) || len(c.Entrypoint) != 0 {
		t.Errorf("config %+v", c)
	}
	if _, ok := ins.Config.ExposedPorts["9100/tcp"]; !ok {
		t.Errorf("exposed ports %v", ins.Config.ExposedPorts)
	}
	if env := ins.Config.Env; !slices.Contains(env, "PORT_HTTP=9100") || !slices.Contains(env, "GREETING=hello world") || !slices.Contains(env, "HOME=/home/ufop") || slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "RESOURCE=") }) {
		t.Errorf("env %q", env)
	}
	if !slices.Contains(registryTags(t, e.cfg.Registry, owner+"/"+name), "v1") {
		t.Errorf("v1 not pushed to %s", e.cfg.Registry)
	}
	// In the image: the app is built, $RESOURCE, the sudo shim and the
	// step file are gone, the program runs as 10001 with its env and owns
	// its files, hard links stay links.
	check := `set -e; test ! -e /tmp/resource; test -z "$RESOURCE"; test ! -e /usr/local/bin/sudo; test ! -e /.qufop-build-step
test -f /tmp/sudo-worked; test "$(cat multi.txt)" = "it's multi"; test "$(cat built.txt)" = built; test -f index.html; test -f ufop.yaml
test "$(id -u)" = 10001; test "$PWD" = /home/ufop/app; test "$HOME" = /home/ufop; test "$PORT_HTTP" = 9100; test "$GREETING" = "hello world"
test "$(stat -c %i sub/a.txt)" = "$(stat -c %i sub/b.txt)"
test -z "$(find /home/ufop ! -user 10001)"
touch writable`
	if code := e.runIn(t, tag, check); code != 0 {
		t.Errorf("checks in the image exited %d", code)
	}

	// A version on top of the previous one, which the daemon no longer
	// holds: it is pulled from the registry.
	tag2 := e.track(t, owner, name, 2)
	if _, err := e.c.ImageRemove(context.Background(), tag, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	tb2 := makeTar(t, false, file("ufop.yaml", fmt.Sprintf("image: %s.v1\nbuild_script:\n  - echo two > two.txt\nrun: httpd -f -p 9100\n", name)))
	log = testutil.SyncBuffer{}
	if _, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 2, Tarball: bytes.NewReader(tb2)}, &log); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "pulling base image "+tag) {
		t.Errorf("log does not show the pull of %s:\n%s", tag, log.String())
	}
	if code := e.runIn(t, tag2, `test "$(cat built.txt)" = built && test "$(cat two.txt)" = two && test "$(id -u)" = 10001`); code != 0 {
		t.Errorf("checks in v2 exited %d", code)
	}
	// v2's layer holds what v2 added, not v1's files again (a chown of
	// them would copy them up).
	ins1, ins2 := e.inspect(t, tag), e.inspect(t, tag2)
	oneLayerMore(t, ins2, ins1)
	if grew := ins2.Size - ins1.Size; grew > 4096 {
		t.Errorf("v2 is %d bytes larger than v1, for one small file", grew)
	}
}

// exampleTar builds the tarball of examples/<name> in dir with the commands
// of its Makefile's tar target, and returns its path and the size of the
// files in it.
func exampleTar(t *testing.T, name, dir string) (string, int64) {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	var script string
	switch name {
	case "ufop-demo":
		if _, err := exec.LookPath("go"); err != nil {
			t.Skipf("skipping: no go command to build %s: %v", name, err)
		}
		script = `set -e
mkdir -p "$B"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$B/ufop-demo" .
cp ufop.yaml "$B/ufop.yaml"
tar -C "$B" -cf "$B/ufop-demo.tar" ufop.yaml ufop-demo`
	case "ufop-sh":
		script = `set -e
rm -rf "$B/pkg"
mkdir -p "$B/pkg"
cp ufop.yaml "$B/pkg/"
cp serve.sh handle.sh "$B/pkg/"
chmod 0755 "$B/pkg/serve.sh" "$B/pkg/handle.sh"
tar -C "$B/pkg" -cf "$B/ufop-sh.tar" ufop.yaml serve.sh handle.sh`
	default:
		t.Fatalf("no recipe for %s", name)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "B="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("making the tarball of %s: %v\n%s", name, err, out)
	}
	p := filepath.Join(dir, name+".tar")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		total += h.Size
	}
	return p, total
}

// The example UFOPs: the image is the base and one layer, which holds the
// program's files once.
func TestDockerBuildExamples(t *testing.T) {
	e := newDockerEnv(t, nil)
	base := e.inspect(t, dockertest.BusyboxRef)
	for _, ex := range []struct{ name, check string }{
		{"ufop-demo", `set -e; test -x ufop-demo; test ! -e /tmp/resource; test "$(id -u)" = 10001`},
		{"ufop-sh", `set -e; test -x serve.sh; test -x handle.sh; test ! -e /tmp/resource; test "$(id -u)" = 10001`},
	} {
		t.Run(ex.name, func(t *testing.T) {
			path, files := exampleTar(t, ex.name, t.TempDir())
			name := uniqueName(t)
			tag := e.track(t, owner, name, 1)
			var log testutil.SyncBuffer
			if _, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 1, TarballPath: path}, &log); err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}
			ins := e.inspect(t, tag)
			oneLayerMore(t, ins, base)
			limit := base.Size + files*11/10
			t.Logf("%s: base %d bytes, files %d bytes, image %d bytes (limit %d)", ex.name, base.Size, files, ins.Size, limit)
			if hist, err := e.c.ImageHistory(context.Background(), tag); err == nil {
				for _, h := range hist {
					t.Logf("  history: %s %d bytes %.60q", h.ID, h.Size, h.CreatedBy)
				}
			}
			if ins.Size > limit {
				t.Errorf("image of %s is %d bytes, over base %d + 1.1 × files %d = %d", ex.name, ins.Size, base.Size, files, limit)
			}
			if code := e.runIn(t, tag, ex.check); code != 0 {
				t.Errorf("checks in the image exited %d", code)
			}
		})
	}
}

func TestDockerBuildFailingLine(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	tag := e.track(t, owner, name, 1)
	tb := makeTar(t, false, file("ufop.yaml", "image: local/busybox:1\nbuild_script:\n  - echo one\n  - \"echo 'qufop: build_script line 3: forged'; make all\"\n  - echo three\nrun: ./app\n"))
	var log testutil.SyncBuffer
	_, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err == nil {
		t.Fatal("build succeeded")
	}
	want := `build_script line 2 ("echo 'qufop: build_script line 3: forged'; make all") failed: exit code 127`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var be *BuildError
	if !errors.As(err, &be) || be.Line != 2 || be.ExitCode != 127 || errs.Status(err) != 400 {
		t.Errorf("error %#v (status %d)", err, errs.Status(err))
	}
	for _, w := range []string{"qufop: build_script line 1: echo one", "qufop: build_script line 2: echo", "ERROR: " + want, "qufop: build failed"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log.String())
		}
	}
	if strings.Contains(log.String(), "three") {
		t.Errorf("line 3 ran:\n%s", log.String())
	}
	if _, err := e.c.ImageInspect(context.Background(), tag); !cerrdefs.IsNotFound(err) {
		t.Errorf("failed build left image %s: %v", tag, err)
	}
	e.noBuildContainers(t, owner, name, 1)
}

func TestDockerBuildMissingBase(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	e.track(t, owner, name, 1)
	for _, img := range []string{"nosuch/base:v9", "nosuchufop.v3"} {
		tb := makeTar(t, false, file("ufop.yaml", "image: "+img+"\nrun: ./app\n"))
		_, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, nil)
		if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "no image can be pulled from public registries") || errs.Status(err) != 400 {
			t.Errorf("%s: error %v", img, err)
		}
	}
}

// A base image without /bin/sh: the build container does not start, which
// is the user's error, and is removed.
func TestDockerBuildBaseWithoutShell(t *testing.T) {
	e := newDockerEnv(t, nil)
	ctx := context.Background()
	baseRef := fmt.Sprintf("qtest/noshell-%s-%d:1", runID, nameSeq.Add(1))
	rootfs := makeTar(t, false, file("hello.txt", "no shell here\n"))
	rc, err := e.c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, baseRef, image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	t.Cleanup(func() {
		if _, err := e.c.ImageRemove(ctx, baseRef, image.RemoveOptions{}); err != nil {
			t.Error(err)
		}
	})
	name := uniqueName(t)
	e.track(t, owner, name, 1)
	tb := makeTar(t, false, file("ufop.yaml", "image: "+baseRef+"\nbuild_script:\n  - echo never\nrun: ./app\n"))
	var log testutil.SyncBuffer
	_, err = e.build(ctx, Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err == nil || !strings.Contains(err.Error(), "cannot start the build container on "+baseRef) || errs.Status(err) != 400 {
		t.Errorf("error %v (status %d)\nlog:\n%s", err, errs.Status(err), log.String())
	}
	e.noBuildContainers(t, owner, name, 1)
}

// markWriter closes seen when the log holds mark.
type markWriter struct {
	testutil.SyncBuffer
	mark string
	seen chan struct{}
	once sync.Once
}

func (w *markWriter) Write(p []byte) (int, error) {
	n, err := w.SyncBuffer.Write(p)
	if strings.Contains(w.String(), w.mark) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func TestDockerBuildTimeout(t *testing.T) {
	e := newDockerEnv(t, func(c *Config) { c.Timeout = 10 * time.Second })
	name := uniqueName(t)
	e.track(t, owner, name, 1)
	tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - sleep 3600\nrun: ./app\n"))
	log := &markWriter{mark: "qufop: build_script line 1: sleep", seen: make(chan struct{})}
	start := time.Now()
	_, err := e.build(context.Background(), Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, log)
	if err == nil || !strings.Contains(err.Error(), "build timed out after 10s") || errs.Status(err) != http.StatusGatewayTimeout {
		t.Fatalf("error %v\nlog:\n%s", err, log.String())
	}
	select {
	case <-log.seen:
	default:
		t.Logf("the timeout came before the build script ran:\n%s", log.String())
	}
	if d := time.Since(start); d > 10*time.Minute {
		t.Errorf("took %s: the timeout did not stop the build", d)
	}
	e.noBuildContainers(t, owner, name, 1)
}

func TestDockerBuildCancel(t *testing.T) {
	e := newDockerEnv(t, nil)
	name := uniqueName(t)
	e.track(t, owner, name, 1)
	tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - echo started; sleep 3600\nrun: ./app\n"))
	log := &markWriter{mark: "started\n", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// While the line runs, its build container is there, named and
	// labelled as such.
	var running []container.Summary
	var listErr error
	go func() {
		<-log.seen
		running, listErr = e.c.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "qufop.ufop="+name))})
		cancel()
	}()
	_, err := e.build(ctx, Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, log)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v\nlog:\n%s", err, log.String())
	}
	if listErr != nil {
		t.Fatal(listErr)
	}
	if len(running) != 1 || len(running[0].Names) != 1 || !strings.HasPrefix(running[0].Names[0], "/"+e.cfg.buildContainerName(owner, name, 1)) {
		t.Errorf("build containers while the build ran: %+v", running)
	}
	e.noBuildContainers(t, owner, name, 1)
}

// spanBackend counts the builds running inside the Builder's slots.
type spanBackend struct {
	Backend
	running, maxSeen atomic.Int32
}

func (s *spanBackend) Build(ctx context.Context, job Job, log io.Writer) (Result, error) {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for m := s.maxSeen.Load(); n > m && !s.maxSeen.CompareAndSwap(m, n); m = s.maxSeen.Load() {
	}
	return s.Backend.Build(ctx, job, log)
}

func TestDockerConcurrencyBound(t *testing.T) {
	e := newDockerEnv(t, nil)
	cfg := e.cfg
	cfg.MaxConcurrent = 1
	sb := &spanBackend{Backend: e.d}
	b, err := New(cfg, sb)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		n := uniqueName(t)
		e.track(t, owner, n, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - sleep 1\nrun: ./app\n"))
			res, err := b.Build(context.Background(), Job{Owner: owner, Name: n, Version: 1, Tarball: bytes.NewReader(tb)}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if ins, err := e.c.ImageInspect(context.Background(), res.Image); err == nil {
				e.mu.Lock()
				e.ids[res.Image] = ins.ID
				e.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if m := sb.maxSeen.Load(); m != 1 {
		t.Errorf("%d builds ran at once with MaxConcurrent 1", m)
	}
}

// A base image with an entrypoint: the build runs without it, the image
// keeps it.
func TestDockerBaseEntrypoint(t *testing.T) {
	e := newDockerEnv(t, nil)
	ctx := context.Background()
	baseRef := fmt.Sprintf("qtest/entry-%s-%d:1", runID, nameSeq.Add(1))
	cr, err := e.c.ContainerCreate(ctx, &container.Config{Image: dockertest.BusyboxRef, Cmd: []string{"true"}}, nil, nil, nil, fmt.Sprintf("qtest-entry-%s-%d", runID, nameSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.ContainerCommit(ctx, cr.ID, container.CommitOptions{Reference: baseRef, Config: &container.Config{Entrypoint: []string{"/bin/false"}}})
	e.c.ContainerRemove(ctx, cr.ID, container.RemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := e.c.ImageRemove(ctx, baseRef, image.RemoveOptions{}); err != nil {
			t.Error(err)
		}
	})
	name := uniqueName(t)
	tag := e.track(t, owner, name, 1)
	tb := makeTar(t, false, file("ufop.yaml", "image: "+baseRef+"\nbuild_script:\n  - echo ok > ok.txt\nrun: ./app\n"))
	var log testutil.SyncBuffer
	if _, err := e.build(ctx, Job{Owner: owner, Name: name, Version: 1, Tarball: bytes.NewReader(tb)}, &log); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if ep := e.inspect(t, tag).Config.Entrypoint; !slices.Equal(ep, []string{"/bin/false"}) {
		t.Errorf("entrypoint %q, want the base's", ep)
	}
}

// Namespaced builds, one on another, and their removal: removing the base
// version leaves the image built on it working; removing is idempotent.
func TestDockerNamespaceAndRemove(t *testing.T) {
	e := newDockerEnv(t, func(c *Config) { c.Namespace = "qtest-ns" })
	ctx := context.Background()
	baseName, childName := uniqueName(t), uniqueName(t)
	baseTag := e.track(t, owner, baseName, 1)
	childTag := e.track(t, owner, childName, 1)
	if want := e.cfg.Registry + "/qtest-ns/" + owner + "/" + baseName + ":v1"; baseTag != want {
		t.Fatalf("tag %s, want %s", baseTag, want)
	}
	var log testutil.SyncBuffer
	tb := makeTar(t, false, file("ufop.yaml", "image: busybox\nbuild_script:\n  - echo base > base.txt\nrun: ./app\n"))
	if _, err := e.build(ctx, Job{Owner: owner, Name: baseName, Version: 1, Tarball: bytes.NewReader(tb)}, &log); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	tb = makeTar(t, false, file("ufop.yaml", "image: "+baseName+".v1\nbuild_script:\n  - echo child > child.txt\nrun: ./app\n"))
	res, err := e.build(ctx, Job{Owner: owner, Name: childName, Version: 1, Tarball: bytes.NewReader(tb)}, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	if res.Image != childTag {
		t.Fatalf("image %s, want %s", res.Image, childTag)
	}
	baseIns, childIns := e.inspect(t, baseTag), e.inspect(t, childTag)
	oneLayerMore(t, childIns, baseIns)
	baseRepo := "qtest-ns/" + owner + "/" + baseName
	childRepo := "qtest-ns/" + owner + "/" + childName
	if s := manifestStatus(t, e.cfg.Registry, baseRepo, "v1"); s != http.StatusOK {
		t.Fatalf("manifest of %s: %d", baseRepo, s)
	}

	// The base version goes; the child still runs on its layers.
	if err := e.b.Remove(ctx, baseTag); err != nil {
		t.Fatal(err)
	}
	if s := manifestStatus(t, e.cfg.Registry, baseRepo, "v1"); s != http.StatusNotFound {
		t.Errorf("manifest of %s after Remove: %d", baseRepo, s)
	}
	if _, err := e.c.ImageInspect(ctx, baseTag); !cerrdefs.IsNotFound(err) {
		t.Errorf("%s after Remove: %v", baseTag, err)
	}
	if _, err := e.c.ImageInspect(ctx, baseIns.ID); err != nil {
		t.Errorf("the base image of %s is gone: %v", childTag, err)
	}
	if code := e.runIn(t, childTag, `test "$(cat base.txt)" = base && test "$(cat child.txt)" = child`); code != 0 {
		t.Errorf("the child image after its base's removal: checks exited %d", code)
	}
	// Again: nothing to do.
	if err := e.b.Remove(ctx, baseTag); err != nil {
		t.Errorf("second Remove: %v", err)
	}

	// The child goes, and with it its base, untagged and used by nothing.
	if err := e.b.Remove(ctx, childTag); err != nil {
		t.Fatal(err)
	}
	if s := manifestStatus(t, e.cfg.Registry, childRepo, "v1"); s != http.StatusNotFound {
		t.Errorf("manifest of %s after Remove: %d", childRepo, s)
	}
	for _, ref := range []string{childTag, childIns.ID, baseIns.ID} {
		if _, err := e.c.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s after Remove: %v", ref, err)
		}
	}
	if _, err := e.c.ImageInspect(ctx, dockertest.BusyboxRef); err != nil {
		t.Errorf("the shared base is gone: %v", err)
	}

	// Not images of this builder.
	for _, ref := range []string{dockertest.BusyboxRef, e.cfg.Registry + "/" + owner + "/" + baseName + ":v1", "qtest-ns/" + owner + "/" + baseName + ":v1"} {
		if err := e.b.Remove(ctx, ref); err == nil || errs.Status(err) != 400 {
			t.Errorf("Remove(%s): %v", ref, err)
		}
	}
}

// A registry that does not delete (405): Remove says so, and removes the
// local image all the same.
func TestDockerRemoveRegistryRefuses(t *testing.T) {
	var sawAccept atomic.Bool
	name := uniqueName(t)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/v2/qtest/"+name+"/manifests/v1":
			sawAccept.Store(slices.Contains(r.Header.Values("Accept"), "application/vnd.docker.distribution.manifest.v2+json"))
			w.Header().Set("Docker-Content-Digest", "sha256:0123")
		case r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/manifests/sha256:0123"):
			w.WriteHeader(http.StatusMethodNotAllowed)
			io.WriteString(w, `{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer reg.Close()
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	cfg := NewDefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Registry = strings.TrimPrefix(reg.URL, "http://")
	d := NewDocker(cfg, c)
	ctx := context.Background()
	ref := cfg.Tag(owner, name, 1)
	if err := c.ImageTag(ctx, dockertest.BusyboxRef, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ImageRemove(ctx, ref, image.RemoveOptions{}) })
	err := d.Remove(ctx, ref)
	if err == nil || !strings.Contains(err.Error(), "405") || !strings.Contains(errs.Public(err), "does not allow deleting") {
		t.Errorf("error %v", err)
	}
	if !sawAccept.Load() {
		t.Error("the manifest was not asked for as schema 2")
	}
	if _, err := c.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		t.Errorf("%s after Remove: %v", ref, err)
	}
	if _, err := c.ImageInspect(ctx, dockertest.BusyboxRef); err != nil {
		t.Errorf("untagging removed the shared base: %v", err)
	}
	// Missing everywhere: fine.
	if err := d.Remove(ctx, cfg.Tag(owner, uniqueName(t), 1)); err != nil {
		t.Errorf("Remove of a missing image: %v", err)
	}
}
