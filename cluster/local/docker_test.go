package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/qufop/qufop/internal/testutil"
	"net"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/internal/dockertest"
)

// busyboxRun serves /www with busybox httpd on 9100, logs SIGTERM and
// exits 0 on it, and exits 3 when /tmp/crash appears.
const busyboxRun = `rm -f /tmp/crash; mkdir -p /www && echo ok > /www/health && echo "$VERSION" > /www/version && ` +
	`httpd -p 9100 -h /www && echo listening; trap 'echo got SIGTERM; exit 0' TERM; ` +
	`while [ ! -f /tmp/crash ]; do sleep 0.1; done; echo crashing; exit 3`

func dockerSetup(t *testing.T) (*client.Client, string, string) {
	t.Helper()
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	name := fmt.Sprintf("t%d", time.Now().UnixNano()%1e10)
	t.Cleanup(func() {
		ctx := context.Background()
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelUFOP+"="+name))})
		for _, c := range list {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
	})
	return cli, img, name
}

func dockerWorkload(img, name string, version, count int) cluster.Workload {
	return cluster.Workload{
		Name: name, Owner: "admin", Version: version, Image: img, Run: busyboxRun,
		Env: map[string]string{"VERSION": fmt.Sprint(version)}, Port: 9100, HealthPath: "/health",
		CPUs: 1, MemoryMB: 64, Count: count, KillTimeout: 3 * time.Second,
	}
}

func dockerExec(t *testing.T, cli *client.Client, ctr string, cmd ...string) {
	t.Helper()
	ctx := context.Background()
	ex, err := cli.ContainerExecCreate(ctx, ctr, container.ExecOptions{Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDockerLifecycle(t *testing.T) {
	cli, img, name := dockerSetup(t)
	ctx := context.Background()
	opts := testOptions()
	opts.DeployTimeout = 20 * time.Second
	d, err := NewDocker(cli, DockerConfig{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ip := net.ParseIP(d.HostIP()); ip == nil || ip.To4() == nil || d.Mode() != "docker" {
		t.Fatalf("host ip %q mode %q", d.HostIP(), d.Mode())
	}

	if err := d.Deploy(ctx, dockerWorkload(img, name, 1, 2)); err != nil {
		t.Fatal(err)
	}
	eps := d.Healthy(name)
	if len(eps) != 2 || versions(eps)[1] != 2 {
		t.Fatalf("healthy: %+v", eps)
	}
	for _, e := range eps {
		// Reached on the project's bridge, not through docker-proxy.
		if !strings.HasPrefix(e.Addr, d.HostIP()[:strings.LastIndex(d.HostIP(), ".")]) || !strings.HasSuffix(e.Addr, ":9100") {
			t.Fatalf("addr %s, want an address on the bridge of %s", e.Addr, d.HostIP())
		}
		if v, err := httpGet(e.Addr, "/version"); err != nil || strings.TrimSpace(v) != "1" {
			t.Fatalf("GET /version: %q %v", v, err)
		}
	}

	// Limits, labels, port binding, hardening.
	info, err := cli.ContainerInspect(ctx, ContainerName(name, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if hc.NanoCPUs != 1e9 || hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 || hc.PidsLimit == nil || *hc.PidsLimit != 256 {
		t.Fatalf("limits: cpus %d mem %d swap %d pids %v", hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.PidsLimit)
	}
	if len(hc.CapDrop) != 1 || hc.CapDrop[0] != "ALL" || len(hc.SecurityOpt) != 1 || hc.SecurityOpt[0] != "no-new-privileges" {
		t.Fatalf("hardening: %v %v", hc.CapDrop, hc.SecurityOpt)
	}
	if b := hc.PortBindings["9100/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Fatalf("port bindings: %+v", hc.PortBindings)
	}
	for _, b := range info.NetworkSettings.Ports["9100/tcp"] {
		if b.HostIP != "127.0.0.1" {
			t.Fatalf("published on %s", b.HostIP)
		}
	}
	if info.Config.Labels[LabelUFOP] != name || info.Config.Labels[LabelVersion] != "1" || info.Config.Labels[LabelIndex] != "0" || info.Config.Labels[LabelOwner] != "admin" {
		t.Fatalf("labels: %v", info.Config.Labels)
	}
	if string(hc.NetworkMode) != DefaultNetwork || info.Config.StopSignal != "SIGTERM" || info.Config.StopTimeout == nil || *info.Config.StopTimeout != 3 {
		t.Fatalf("network %s stop %s/%v", hc.NetworkMode, info.Config.StopSignal, info.Config.StopTimeout)
	}
	if !strings.Contains(strings.Join(info.Config.Env, " "), "PORT_HTTP=9100") {
		t.Fatalf("env: %v", info.Config.Env)
	}

	// Crash one: restarted, healthy again.
	dockerExec(t, cli, ContainerName(name, 1, 1), "touch", "/tmp/crash")
	waitFor(t, 20*time.Second, "instance 1 restarted and healthy", func() bool {
		in := instances(t, d, name)[1]
		return in.Restarts == 1 && in.Healthy && len(d.Healthy(name)) == 2
	})
	if in := instances(t, d, name)[1]; !strings.Contains(in.Message, "exited with code 3") {
		t.Fatalf("message after crash: %q", in.Message)
	}

	// A second orchestrator adopts the containers.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := NewDocker(cli, DockerConfig{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if ins := instances(t, d2, name); len(ins) != 2 || ins[0].Version != 1 {
		t.Fatalf("adopted: %+v", ins)
	}
	waitFor(t, 10*time.Second, "adopted instances healthy", func() bool { return len(d2.Healthy(name)) == 2 })
	for _, e := range d2.Healthy(name) {
		// Adopted instances too are reached on the bridge.
		if !strings.HasPrefix(e.Addr, d2.HostIP()[:strings.LastIndex(d2.HostIP(), ".")]) || !strings.HasSuffix(e.Addr, ":9100") {
			t.Fatalf("adopted addr %s, want an address on the bridge of %s", e.Addr, d2.HostIP())
		}
	}

	// Scale to 1: index 1 goes.
	if err := d2.Scale(ctx, name, 1, "test"); err != nil {
		t.Fatal(err)
	}
	if ins := instances(t, d2, name); len(ins) != 1 || ins[0].Index != 0 {
		t.Fatalf("after scale: %+v", ins)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(name, 1, 1)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("scaled-away container: %v", err)
	}

	// Deploy v2 while v1 serves; v1 is stopped gracefully (follow its logs).
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var follow testutil.SyncBuffer
	fdone := make(chan error, 1)
	go func() { fdone <- d2.Logs(fctx, name, 0, true, &follow) }()
	waitFor(t, 5*time.Second, "v1 logs", func() bool { return strings.Contains(follow.String(), "listening") })
	done := make(chan error, 1)
	go func() { done <- d2.Deploy(ctx, dockerWorkload(img, name, 2, 1)) }()
	for deploying := true; deploying; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			deploying = false
		case <-time.After(20 * time.Millisecond):
			if v := versions(d2.Healthy(name)); v[1] == 0 && v[2] == 0 {
				t.Fatal("no healthy instance while deploying v2")
			}
		}
	}
	if v := versions(d2.Healthy(name)); v[1] != 0 || v[2] != 1 {
		t.Fatalf("after deploy v2: %v", v)
	}
	waitFor(t, 5*time.Second, "SIGTERM in v1's logs", func() bool { return strings.Contains(follow.String(), "got SIGTERM") })
	cancel()
	<-fdone
	if _, err := cli.ContainerInspect(ctx, ContainerName(name, 1, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v1 container: %v", err)
	}

	// An unhealthy version fails to deploy; v2 keeps serving.
	bad := dockerWorkload(img, name, 3, 1)
	bad.HealthPath = "/missing"
	d3opts := opts
	d3opts.DeployTimeout = 3 * time.Second
	d2.Close()
	d3, err := NewDocker(cli, DockerConfig{Options: d3opts})
	if err != nil {
		t.Fatal(err)
	}
	defer d3.Close()
	waitFor(t, 10*time.Second, "v2 adopted and healthy", func() bool { return versions(d3.Healthy(name))[2] == 1 })
	if err := d3.Deploy(ctx, bad); err == nil || !strings.Contains(err.Error(), "v2 keeps serving") {
		t.Fatalf("deploy of an unhealthy version: %v", err)
	}
	if v := versions(d3.Healthy(name)); v[2] != 1 || len(v) != 1 {
		t.Fatalf("catalog after failed deploy: %v", v)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(name, 3, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v3 container: %v", err)
	}

	var logs bytes.Buffer
	if err := d3.Logs(ctx, name, 0, false, &logs); err != nil || !strings.Contains(logs.String(), "listening") {
		t.Fatalf("logs: %q %v", logs.String(), err)
	}

	start := time.Now()
	if err := d3.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	if dur := time.Since(start); dur > 2500*time.Millisecond {
		t.Fatalf("graceful stop took %s", dur)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(name, 2, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v2 container after stop: %v", err)
	}
	if _, err := d3.Instances(ctx, name); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("instances after purge: %v", err)
	}
}

func TestDockerKillTimeout(t *testing.T) {
	cli, img, name := dockerSetup(t)
	ctx := context.Background()
	d, err := NewDocker(cli, DockerConfig{Options: testOptions()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w := dockerWorkload(img, name, 1, 1)
	// sh as PID 1 without a trap ignores SIGTERM.
	w.Run = `mkdir -p /www && echo ok > /www/health && httpd -p 9100 -h /www && while true; do sleep 0.1; done`
	w.KillTimeout = time.Second
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	if dur := time.Since(start); dur < time.Second || dur > 6*time.Second {
		t.Fatalf("stop took %s, want about the kill timeout (1s)", dur)
	}
}

func TestNewPicksRuntime(t *testing.T) {
	ctx := context.Background()
	r, err := New(ctx, Config{Options: testOptions(), NoDocker: true, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode() != "process" || r.Warning() == "" {
		t.Fatalf("mode %q warning %q", r.Mode(), r.Warning())
	}
	r.Close()
	r, err = New(ctx, Config{Options: testOptions(), LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("mode %s, host ip %s", r.Mode(), r.HostIP())
}
