// Package platformtest gives tests the data folder of a `qufop dev` whose
// platform id marks it as a test's ("test-..."), and removes at the end of
// the test everything that platform made on the shared Docker daemon and
// in the test registry: its containers, its network and the registry
// repositories under its namespace. Tests of different packages run at once
// on one daemon; they touch nothing but their own platforms.
package platformtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/qufop/qufop/cluster/local"
	"github.com/qufop/qufop/internal/dockertest"
)

// Data returns a new data folder whose platform.json names a new test
// platform, and that platform's id. The cleanup runs even when the test
// fails; stop the platform (its own cleanups, registered later, run first)
// before it.
func Data(t testing.TB) (dir, id string) {
	t.Helper()
	dir = t.TempDir()
	id = NewID()
	b, _ := json.Marshal(map[string]string{"id": id})
	if err := os.WriteFile(filepath.Join(dir, "platform.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(t, id) })
	return dir, id
}

// NewID is a platform id of its own for a test: "test-" and 8 hex digits.
func NewID() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return "test-" + hex.EncodeToString(r[:])
}

// Remove deletes what platform id made: containers, network, the images
// its builds labelled, and registry repositories under its namespace. Without a
// daemon or registry there is nothing to remove.
func Remove(t testing.TB, id string) {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		return
	}
	// Containers, network and the images its builds labelled.
	if err := local.RemovePlatform(ctx, c, id); err != nil {
		t.Errorf("removing test platform %s: %v", id, err)
	}
	if r, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + dockertest.RegistryAddr + "/v2/"); err != nil {
		return
	} else {
		r.Body.Close()
	}
	repos, err := dockertest.Catalog(dockertest.RegistryAddr)
	if err != nil {
		t.Errorf("removing test platform %s: %v", id, err)
	}
	for _, repo := range repos {
		if strings.HasPrefix(repo, id+"/") {
			dockertest.RemoveRepository(t, dockertest.RegistryAddr, repo)
		}
	}
}
