// Package dockertest gives tests a real Docker daemon, a base image made
// locally and the local registry, or skips the test saying what is missing.
// No image can be pulled on the machines this project runs on: the base image
// is imported from the busybox-static binary (Debian's busybox-static).
//
// Tests of several packages share the daemon and the registry, often at
// the same time: a test removes only what it made (its own tags, without
// pruning parents: another test may be building on them) and takes its
// repositories out of the registry (RemoveRepository), so that runs do not
// pile up images and repositories.
package dockertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/qufop/qufop/builder/baseimage"
)

// BusyboxRef is the base image tests build on.
const BusyboxRef = baseimage.BusyboxRef

// RegistryAddr is where .ci/run starts Debian's docker-registry.
const RegistryAddr = "127.0.0.1:5000"

// TestLabel marks images that tests made: Busybox imports BusyboxRef with
// it (when the image does not exist yet).
const TestLabel = "qufop.test"

// Client returns a client of the local Docker daemon, or skips t.
func Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Skipf("skipping: no Docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		t.Skipf("skipping: no Docker daemon answers (%v); .ci/run starts dockerd", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var busyboxOnce sync.Mutex

// busyboxLock is the file that test processes of all packages lock while
// they import BusyboxRef: two imports at once would each tag an image, and
// the first would be left behind untagged.
var busyboxLock = filepath.Join(os.TempDir(), "qufop-dockertest-busybox.lock")

// Busybox makes sure BusyboxRef exists and returns it, or skips t. A
// missing image is imported from /bin/busybox of busybox-static with the
// label qufop.test=1; an existing one is never replaced, relabelled or
// deleted (other tests and qufop dev build on it).
func Busybox(t testing.TB, c *client.Client) string {
	t.Helper()
	busyboxOnce.Lock()
	defer busyboxOnce.Unlock()
	ctx := context.Background()
	if _, err := c.ImageInspect(ctx, BusyboxRef); err == nil {
		return BusyboxRef
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skipf("skipping: /bin/busybox not found (apt-get install busybox-static): %v", err)
	}
	if f, err := os.OpenFile(busyboxLock, os.O_CREATE|os.O_RDWR, 0o666); err == nil {
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err == nil {
			defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
	}
	if err := baseimage.ImportBusybox(ctx, c, BusyboxRef, "/bin/busybox", baseimage.WithLabels(map[string]string{TestLabel: "1"})); err != nil {
		t.Fatal(err)
	}
	return BusyboxRef
}

// Registry returns RegistryAddr if a registry answers there, or skips t.
func Registry(t testing.TB) string {
	t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second}
	r, err := hc.Get("http://" + RegistryAddr + "/v2/")
	if err != nil {
		t.Skipf("skipping: no registry at %s (%v); .ci/run starts docker-registry", RegistryAddr, err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Skipf("skipping: registry at %s answers %s", RegistryAddr, r.Status)
	}
	return RegistryAddr
}

// DefaultRegistryRoot is the storage of the test registry (.ci/registry.yml).
const DefaultRegistryRoot = "/var/lib/qufop-registry"

// RegistryRoot is the test registry's storage folder: $QUFOP_TEST_REGISTRY_ROOT,
// or DefaultRegistryRoot.
func RegistryRoot() string {
	if r := os.Getenv("QUFOP_TEST_REGISTRY_ROOT"); r != "" {
		return r
	}
	return DefaultRegistryRoot
}

var repoRe = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$`)

// CleanupRepository removes repo from registry when t ends (see
// RemoveRepository).
func CleanupRepository(t testing.TB, registry, repo string) {
	t.Helper()
	t.Cleanup(func() { RemoveRepository(t, registry, repo) })
}

// RemoveRepository takes repo (a repository path without the registry,
// "qtest/my-ufop") out of registry: it deletes every manifest of repo
// through the registry API, then, when registry runs on this machine,
// removes the repository's folder from its storage (RegistryRoot()/
// docker/registry/v2/repositories/<repo>), which the registry API cannot
// do, so that the catalog no longer lists it. A repository that does not
// exist is fine. Failures are reported with t.Errorf: a leftover is a bug
// of the test.
func RemoveRepository(t testing.TB, registry, repo string) {
	t.Helper()
	if !repoRe.MatchString(repo) {
		t.Errorf("dockertest: bad repository name %q", repo)
		return
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + registry + "/v2/" + repo
	tags, err := repoTags(hc, base)
	if err != nil {
		t.Errorf("dockertest: tags of %s: %v", repo, err)
	}
	for _, tag := range tags {
		if err := deleteManifest(hc, base, tag); err != nil {
			t.Errorf("dockertest: deleting %s:%s: %v", repo, tag, err)
		}
	}
	if !isLoopback(registry) {
		return
	}
	root := filepath.Join(RegistryRoot(), "docker", "registry", "v2", "repositories")
	if _, err := os.Stat(root); err != nil {
		return // the registry's storage is not here
	}
	if err := os.RemoveAll(filepath.Join(root, filepath.FromSlash(repo))); err != nil {
		t.Errorf("dockertest: removing %s from the registry's storage: %v", repo, err)
	}
}

// Catalog lists the repositories of registry (all pages).
func Catalog(registry string) ([]string, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	var repos []string
	next := "/v2/_catalog?n=1000"
	for next != "" {
		r, err := hc.Get("http://" + registry + next)
		if err != nil {
			return nil, err
		}
		var v struct{ Repositories []string }
		if err := decodeJSON(r, &v); err != nil {
			return nil, fmt.Errorf("catalog of %s: %w", registry, err)
		}
		repos = append(repos, v.Repositories...)
		next = ""
		// Link: </v2/_catalog?last=x&n=1000>; rel="next"
		if l := r.Header.Get("Link"); strings.Contains(l, `rel="next"`) {
			if i, j := strings.Index(l, "<"), strings.Index(l, ">"); i >= 0 && j > i {
				next = l[i+1 : j]
			}
		}
	}
	return repos, nil
}

func repoTags(hc *http.Client, base string) ([]string, error) {
	r, err := hc.Get(base + "/tags/list")
	if err != nil {
		return nil, err
	}
	if r.StatusCode == http.StatusNotFound {
		r.Body.Close()
		return nil, nil
	}
	var v struct{ Tags []string }
	if err := decodeJSON(r, &v); err != nil {
		return nil, err
	}
	return v.Tags, nil
}

func deleteManifest(hc *http.Client, base, tag string) error {
	req, _ := http.NewRequest(http.MethodHead, base+"/manifests/"+tag, nil)
	req.Header.Add("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	req.Header.Add("Accept", "application/vnd.oci.image.manifest.v1+json")
	r, err := hc.Do(req)
	if err != nil {
		return err
	}
	r.Body.Close()
	if r.StatusCode == http.StatusNotFound {
		return nil
	}
	dg := r.Header.Get("Docker-Content-Digest")
	if r.StatusCode != http.StatusOK || dg == "" {
		return fmt.Errorf("HEAD manifest: %s, digest %q", r.Status, dg)
	}
	req, _ = http.NewRequest(http.MethodDelete, base+"/manifests/"+dg, nil)
	r, err = hc.Do(req)
	if err != nil {
		return err
	}
	r.Body.Close()
	switch r.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNotFound:
		return nil
	case http.StatusMethodNotAllowed:
		// Deletion is off in this registry: removing the folder below
		// still takes the repository away.
		return nil
	}
	return fmt.Errorf("DELETE manifest %s: %s", dg, r.Status)
}

func decodeJSON(r *http.Response, v any) error {
	defer r.Body.Close()
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return err
	}
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", r.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

func isLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
