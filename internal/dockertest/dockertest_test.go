package dockertest

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/container"
)

func TestBusyboxRuns(t *testing.T) {
	c := Client(t)
	ref := Busybox(t, c)
	ctx := context.Background()
	created, err := c.ContainerCreate(ctx, &container.Config{Image: ref, Cmd: []string{"sh", "-c", "echo ok"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	wait, errc := c.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case w := <-wait:
		if w.StatusCode != 0 {
			t.Fatalf("exit %d", w.StatusCode)
		}
	case err := <-errc:
		t.Fatal(err)
	}
}
