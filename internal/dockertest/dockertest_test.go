package dockertest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
)

func TestBusyboxRuns(t *testing.T) {
	c := Client(t)
	ref := Busybox(t, c)
	ctx := context.Background()
	ins, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: labels %v", ref, ins.Config.Labels)
	created, err := c.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: []string{"sh", "-c", "echo ok"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
	wait, errc := c.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-wait:
		if w.StatusCode != 0 {
			t.Fatalf("exit %d", w.StatusCode)
		}
	case err := <-errc:
		t.Fatal(err)
	}
}

// push pushes ref to its registry.
func push(t *testing.T, ref string) {
	t.Helper()
	c := Client(t)
	rc, err := c.ImagePush(context.Background(), ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out, _ := io.ReadAll(rc)
	if strings.Contains(string(out), `"errorDetail"`) {
		t.Fatalf("push of %s: %s", ref, out)
	}
}

func TestRemoveRepository(t *testing.T) {
	c := Client(t)
	Busybox(t, c)
	reg := Registry(t)
	ctx := context.Background()
	repo := fmt.Sprintf("qtest-dockertest/remove-%06x", rand.Uint32()&0xffffff)
	for _, tag := range []string{"t1", "t2"} {
		ref := reg + "/" + repo + ":" + tag
		if err := c.ImageTag(ctx, BusyboxRef, ref); err != nil {
			t.Fatal(err)
		}
		// Untagging leaves BusyboxRef as it is.
		t.Cleanup(func() { c.ImageRemove(ctx, ref, image.RemoveOptions{}) })
		push(t, ref)
	}
	repos, err := Catalog(reg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(repos, repo) {
		t.Fatalf("catalog lacks %s after the pushes", repo)
	}

	RemoveRepository(t, reg, repo)

	repos, err = Catalog(reg)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(repos, repo) {
		t.Errorf("catalog still lists %s", repo)
	}
	for _, tag := range []string{"t1", "t2"} {
		req, _ := http.NewRequest(http.MethodHead, "http://"+reg+"/v2/"+repo+"/manifests/"+tag, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("manifest %s:%s after RemoveRepository: %s", repo, tag, r.Status)
		}
	}
	if _, err := os.Stat(filepath.Join(RegistryRoot(), "docker/registry/v2/repositories", repo)); !os.IsNotExist(err) {
		t.Errorf("repository folder after RemoveRepository: %v", err)
	}
	// Again, and a repository that never was: fine.
	RemoveRepository(t, reg, repo)
	RemoveRepository(t, reg, "qtest-dockertest/never-there")
	// The repository can be pushed again.
	push(t, reg+"/"+repo+":t1")
	RemoveRepository(t, reg, repo)
}
