package baseimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/qufop/qufop/builder/baseimage"
	"github.com/qufop/qufop/internal/dockertest"
)

func TestBusyboxRootFS(t *testing.T) {
	fs, err := baseimage.BusyboxRootFS([]byte("not really busybox"))
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(fs))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
	}
	for _, name := range []string{"bin/busybox", "bin/sh", "bin/find", "etc/passwd", "etc/group", "tmp/", "usr/local/bin/"} {
		if entries[name] == nil {
			t.Errorf("root file system lacks %s", name)
		}
	}
	if h := entries["tmp/"]; h != nil && h.Mode != 0o1777 {
		t.Errorf("tmp mode %o", h.Mode)
	}
}

// ImportBusybox with labels puts them on a new image and leaves an
// existing one alone.
func TestImportBusyboxLabels(t *testing.T) {
	c := dockertest.Client(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skipf("skipping: no /bin/busybox: %v", err)
	}
	ctx := context.Background()
	ref := fmt.Sprintf("qtest/busybox-labels-%06x:1", rand.Uint32()&0xffffff)
	t.Cleanup(func() {
		if _, err := c.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
			t.Errorf("removing %s: %v", ref, err)
		}
	})
	labels := map[string]string{"qufop.test": "1", "note": `say "hi" \o/ $HOME`}
	if err := baseimage.ImportBusybox(ctx, c, ref, "/bin/busybox", baseimage.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	ins, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range labels {
		if got := ins.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	if err := baseimage.ImportBusybox(ctx, c, ref, "/bin/busybox", baseimage.WithLabels(map[string]string{"other": "x"})); err != nil {
		t.Fatal(err)
	}
	again, err := c.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != ins.ID || again.Config.Labels["other"] != "" {
		t.Errorf("the existing image was replaced or relabelled: %s %v", again.ID, again.Config.Labels)
	}
	if err := baseimage.ImportBusybox(ctx, c, ref+"x", "/bin/busybox", baseimage.WithLabels(map[string]string{"a=b": "x"})); err == nil {
		t.Error("bad label key accepted")
	}
}
