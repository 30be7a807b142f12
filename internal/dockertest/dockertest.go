// Package dockertest gives tests a real Docker daemon, a base image made
// locally and the local registry, or skips the test saying what is missing.
// No image can be pulled on the machines this project runs on: the base image
// is imported from the busybox-static binary (Debian's busybox-static).
package dockertest

import (
	"context"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/qufop/qufop/builder/baseimage"
)

// BusyboxRef is the base image tests build on.
const BusyboxRef = baseimage.BusyboxRef

// RegistryAddr is where .ci/run starts Debian's docker-registry.
const RegistryAddr = "127.0.0.1:5000"

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
// busybox-static) and returns it, or skips t.
func Busybox(t testing.TB, c *client.Client) string {
	t.Helper()
	busyboxOnce.Lock()
	defer busyboxOnce.Unlock()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		if _, ierr := c.ImageInspect(context.Background(), BusyboxRef); ierr != nil {
			t.Skipf("skipping: /bin/busybox not found (apt-get install busybox-static): %v", err)
		}
	}
	if err := baseimage.ImportBusybox(context.Background(), c, BusyboxRef, "/bin/busybox"); err != nil {
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
