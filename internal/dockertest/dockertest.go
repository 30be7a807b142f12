// Package dockertest gives tests a real Docker daemon, a base image made
// locally and the local registry, or skips the test saying what is missing.
// No image can be pulled on the machines this project runs on: the base image
// is imported from the busybox-static binary (Debian's busybox-static).
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// BusyboxRef is the base image tests build on.
const BusyboxRef = "local/busybox:1"

// RegistryAddr is where .ci/run starts Debian's docker-registry.
const RegistryAddr = "127.0.0.1:5000"

// busyboxApplets are linked in the imported root file system.
var busyboxApplets = []string{
	"sh", "ls", "cat", "echo", "cp", "mv", "rm", "mkdir", "chmod", "chown", "id", "env",
	"sleep", "wget", "nc", "httpd", "tr", "wc", "md5sum", "sha256sum", "head", "tail",
	"grep", "sed", "awk", "printf", "test", "[", "true", "false", "adduser", "addgroup",
	"tar", "gzip", "date", "kill", "ps", "touch", "stat", "dd", "cut", "sort", "uniq",
	"xargs", "find", "rev", "expr", "basename", "dirname", "seq", "base64",
}

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

// Busybox makes sure BusyboxRef exists (imported from /bin/busybox of
// busybox-static, with its applets linked) and returns it, or skips t.
func Busybox(t testing.TB, c *client.Client) string {
	t.Helper()
	busyboxOnce.Lock()
	defer busyboxOnce.Unlock()
	ctx := context.Background()
	if _, err := c.ImageInspect(ctx, BusyboxRef); err == nil {
		return BusyboxRef
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("skipping: /bin/busybox not found (apt-get install busybox-static): %v", err)
	}
	rootfs, err := BusyboxRootFS(bin)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, BusyboxRef, image.ImportOptions{})
	if err != nil {
		t.Fatalf("docker import: %v", err)
	}
	_, _ = io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := c.ImageInspect(ctx, BusyboxRef); err != nil {
		t.Fatalf("docker import did not create %s: %v", BusyboxRef, err)
	}
	return BusyboxRef
}

// BusyboxRootFS returns a tar of a minimal root file system: the busybox
// binary, its applets as symlinks, /tmp and /etc/passwd.
func BusyboxRootFS(busybox []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	dirs := []string{"bin/", "tmp/", "etc/", "home/", "root/", "usr/", "usr/bin/", "usr/local/", "usr/local/bin/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: now}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"bin/busybox", 0o755, busybox},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	for _, a := range busyboxApplets {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", ModTime: now}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
