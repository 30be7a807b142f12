package local

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/qufop/qufop/internal/dockertest"
)

func instanceIDs(t *testing.T, d *Docker, name string) []string {
	t.Helper()
	var ids []string
	for _, in := range instances(t, d, name) {
		ids = append(ids, in.ID)
	}
	return ids
}

// startedAt says when the container last started, and that it runs.
func startedAt(t *testing.T, cli *client.Client, ref string) string {
	t.Helper()
	info, err := cli.ContainerInspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if info.State == nil || !info.State.Running {
		t.Fatalf("container %s is not running: %+v", ref, info.State)
	}
	return info.State.StartedAt
}

// Two platforms on one daemon, each with a UFOP of the same name: each has
// its own containers and network, adopts only its own, and removing one
// leaves the other running. A container of no platform (what an older
// qufop left) is left alone by both.
func TestDockerPlatformsKeepApart(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	a, b := testPlatform(t, cli), testPlatform(t, cli)
	ctx := context.Background()
	opts := testOptions()
	const name = "demo"

	legacy := "qufop-" + a + "-legacy"
	t.Cleanup(func() {
		err := cli.ContainerRemove(context.Background(), legacy, container.RemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove %s: %v", legacy, err)
		}
	})
	spec, err := json.Marshal(dockerWorkload(img, name, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.ContainerCreate(ctx, &container.Config{
		Image: img, Cmd: []string{"sleep", "600"},
		Labels: map[string]string{LabelUFOP: name, LabelVersion: "1", LabelIndex: "0", LabelOwner: "admin", LabelWorkload: string(spec)},
	}, &container.HostConfig{}, nil, nil, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerStart(ctx, legacy, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	legacyStarted := startedAt(t, cli, legacy)

	da, db := newDocker(t, cli, a, opts), newDocker(t, cli, b, opts)
	if da.Network() == db.Network() || da.HostIP() == db.HostIP() {
		t.Fatalf("networks %s (%s) and %s (%s)", da.Network(), da.HostIP(), db.Network(), db.HostIP())
	}
	if err := da.Deploy(ctx, dockerWorkload(img, name, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := db.Deploy(ctx, dockerWorkload(img, name, 1, 2)); err != nil {
		t.Fatal(err)
	}
	idsA, idsB := instanceIDs(t, da, name), instanceIDs(t, db, name)
	if len(idsA) != 1 || len(idsB) != 2 || slices.Contains(idsB, idsA[0]) {
		t.Fatalf("instances of A %v, of B %v", idsA, idsB)
	}
	// B's instance 0 did not take the place of A's.
	if info, err := cli.ContainerInspect(ctx, ContainerName(a, name, 1, 0)); err != nil || shortID(info.ID) != idsA[0] || info.Config.Labels[LabelPlatform] != a {
		t.Fatalf("A's container: %v", err)
	}
	if len(da.Healthy(name)) != 1 || len(db.Healthy(name)) != 2 {
		t.Fatalf("catalogs: A %+v, B %+v", da.Healthy(name), db.Healthy(name))
	}
	checkDockerAddrs(t, da, name, "1")
	checkDockerAddrs(t, db, name, "1")

	// New runtimes of each platform adopt their own instances only.
	da.Close()
	db.Close()
	da2, db2 := newDocker(t, cli, a, opts), newDocker(t, cli, b, opts)
	if got := instanceIDs(t, da2, name); !slices.Equal(got, idsA) {
		t.Fatalf("A adopted %v, want %v", got, idsA)
	}
	if got := instanceIDs(t, db2, name); !slices.Equal(got, idsB) {
		t.Fatalf("B adopted %v, want %v", got, idsB)
	}
	waitFor(t, patience, "adopted instances healthy", func() bool {
		return len(da2.Healthy(name)) == 1 && len(db2.Healthy(name)) == 2
	})
	checkDockerAddrs(t, da2, name, "1")
	checkDockerAddrs(t, db2, name, "1")
	startedB := map[string]string{}
	for _, id := range idsB {
		startedB[id] = startedAt(t, cli, id)
	}

	// Images labelled as A's (as its builds are), one built on the other.
	var imgsA []string
	t.Cleanup(func() {
		for _, ref := range imgsA {
			_, _ = cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		}
	})
	base := legacy
	for _, tag := range []string{"parent", "child"} {
		ref := "qufop-test/" + a + ":" + tag
		imgsA = append(imgsA, ref)
		if _, err := cli.ContainerCommit(ctx, base, container.CommitOptions{Reference: ref, Config: &container.Config{
			Cmd: []string{"true"}, Labels: map[string]string{LabelPlatform: a},
		}}); err != nil {
			t.Fatal(err)
		}
		ctr := "qufop-" + a + "-" + tag // labelled as A's too: from the image
		t.Cleanup(func() { _ = cli.ContainerRemove(context.Background(), ctr, container.RemoveOptions{Force: true}) })
		if _, err := cli.ContainerCreate(ctx, &container.Config{Image: ref}, &container.HostConfig{}, nil, nil, ctr); err != nil {
			t.Fatal(err)
		}
		base = ctr
	}

	// Removing A leaves B (and the container of no platform) running.
	da2.Close()
	if err := RemovePlatform(ctx, cli, a); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(a, name, 1, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("A's container after RemovePlatform: %v", err)
	}
	if _, err := cli.NetworkInspect(ctx, NetworkName(a), network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("A's network after RemovePlatform: %v", err)
	}
	own := filters.NewArgs(filters.Arg("label", LabelPlatform+"="+a))
	if list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: own}); err != nil || len(list) != 0 {
		t.Fatalf("containers of A after RemovePlatform: %d %v", len(list), err)
	}
	for _, ref := range imgsA {
		if _, err := cli.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
			t.Fatalf("A's image %s after RemovePlatform: %v", ref, err)
		}
	}
	if err := RemovePlatform(ctx, cli, a); err != nil {
		t.Fatalf("RemovePlatform of a removed platform: %v", err)
	}
	if ins := instances(t, db2, name); len(ins) != 2 || !ins[0].Healthy || !ins[1].Healthy || ins[0].Restarts+ins[1].Restarts != 0 {
		t.Fatalf("B after A was removed: %+v", ins)
	}
	for _, id := range idsB {
		if s := startedAt(t, cli, id); s != startedB[id] {
			t.Fatalf("B's container %s restarted (%s, was %s)", id, s, startedB[id])
		}
	}
	checkDockerAddrs(t, db2, name, "1")
	if s := startedAt(t, cli, legacy); s != legacyStarted {
		t.Fatalf("the container of no platform was restarted (%s, was %s)", s, legacyStarted)
	}
	if err := RemovePlatform(ctx, cli, ""); err == nil {
		t.Fatal("RemovePlatform of no platform id")
	}
}

// RemovePlatform at the same time as another removal of the platform (a
// second cleanup, a leftovers sweep): both succeed, nothing is left.
func TestRemovePlatformConcurrently(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	d := newDocker(t, cli, pid, testOptions())
	if err := d.Deploy(context.Background(), dockerWorkload(img, "demo", 1, 3)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- RemovePlatform(context.Background(), cli, pid) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	own := filters.NewArgs(filters.Arg("label", LabelPlatform+"="+pid))
	if list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: own}); err != nil || len(list) != 0 {
		t.Fatalf("containers left: %d %v", len(list), err)
	}
	if _, err := cli.NetworkInspect(context.Background(), NetworkName(pid), network.InspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("network after RemovePlatform: %v", err)
	}
}

// A platform without containers gives its network back on Close (Docker's
// address pools hold about 30 bridges); one with instances keeps it for
// them.
func TestDockerCloseReleasesAnUnusedNetwork(t *testing.T) {
	cli, img, id := dockerSetup(t)
	ctx := context.Background()
	networks := func() int {
		t.Helper()
		nws, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelPlatform+"="+id))})
		if err != nil {
			t.Fatal(err)
		}
		return len(nws)
	}
	d, err := NewDocker(cli, DockerConfig{Options: testOptions(), PlatformID: id})
	if err != nil {
		t.Fatal(err)
	}
	if networks() != 1 {
		t.Fatal("NewDocker made no network")
	}
	d.Close()
	if n := networks(); n != 0 {
		t.Fatalf("%d networks left by a platform without containers", n)
	}

	d = newDocker(t, cli, id, testOptions())
	if err := d.Deploy(ctx, dockerWorkload(img, "keep", 1, 1)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if networks() != 1 {
		t.Fatal("the network of a running instance was removed")
	}
	// The instance survives, and the next runtime adopts it on that network.
	d = newDocker(t, cli, id, testOptions())
	waitFor(t, patience, "the adopted instance healthy", func() bool { return len(d.Healthy("keep")) == 1 })
}
