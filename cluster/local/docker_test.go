package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/testutil"
)

// busyboxRun serves /tmp/www (the root is read-only) with busybox httpd on 9100, logs SIGTERM and
// exits 0 on it, and exits 3 when /tmp/crash appears.
const busyboxRun = `rm -f /tmp/crash; mkdir -p /tmp/www && echo ok > /tmp/www/health && echo "$VERSION" > /tmp/www/version && ` +
	`httpd -p 9100 -h /tmp/www && echo listening; trap 'echo got SIGTERM; exit 0' TERM; ` +
	`while [ ! -f /tmp/crash ]; do sleep 0.1; done; echo crashing; exit 3`

// testPlatform returns a platform id of its own for t ("test-" and a
// random suffix), so that test packages running at once on the daemon
// never see each other's containers, and removes everything the platform
// made when t ends, however it ends. Call it before making anything, and
// close the platform's runtimes in later cleanups (they run first).
func testPlatform(t *testing.T, cli *client.Client) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	id := "test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx := context.Background()
		if err := RemovePlatform(ctx, cli, id); err != nil {
			t.Errorf("remove platform %s: %v", id, err)
		}
		own := filters.NewArgs(filters.Arg("label", LabelPlatform+"="+id))
		if list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: own}); err != nil || len(list) > 0 {
			t.Errorf("containers of platform %s left: %d %v", id, len(list), err)
		}
		if nws, err := cli.NetworkList(ctx, network.ListOptions{Filters: own}); err != nil || len(nws) > 0 {
			t.Errorf("networks of platform %s left: %d %v", id, len(nws), err)
		}
	})
	return id
}

// dockerSetup gives a test the daemon, the base image and a platform id of
// its own.
func dockerSetup(t *testing.T) (cli *client.Client, img, platformID string) {
	t.Helper()
	cli = dockertest.Client(t)
	img = dockertest.Busybox(t, cli)
	return cli, img, testPlatform(t, cli)
}

// newDocker starts a Docker runtime of platform id, closed when t ends
// (before testPlatform's cleanup removes the platform).
func newDocker(t *testing.T, cli *client.Client, id string, opts Options) *Docker {
	t.Helper()
	d, err := NewDocker(cli, DockerConfig{Options: opts, PlatformID: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// onBridge says whether addr is port 9100 on the bridge whose gateway is
// hostIP.
func onBridge(addr, hostIP string) bool {
	return strings.HasPrefix(addr, hostIP[:strings.LastIndex(hostIP, ".")+1]) && strings.HasSuffix(addr, ":9100") && addr != net.JoinHostPort(hostIP, "9100")
}

// checkDockerAddrs checks the addresses of every instance of name: on the
// bridge for the platform, and published on 127.0.0.1, where /version
// answers too.
func checkDockerAddrs(t *testing.T, d *Docker, name, version string) {
	t.Helper()
	for _, in := range instances(t, d, name) {
		if in.AddrKind != "bridge" || !onBridge(in.Addr, d.HostIP()) || !strings.HasPrefix(in.PublishedAddr, "127.0.0.1:") {
			t.Fatalf("instance %d: addr %q (%s) published %q, want an address on the bridge of %s and 127.0.0.1", in.Index, in.Addr, in.AddrKind, in.PublishedAddr, d.HostIP())
		}
		if version == "" {
			continue
		}
		for _, addr := range []string{in.Addr, in.PublishedAddr} {
			if v, err := httpGet(addr, "/version"); err != nil || strings.TrimSpace(v) != version {
				t.Fatalf("GET %s/version: %q %v", addr, v, err)
			}
		}
	}
}

func dockerWorkload(img, name string, version, count int) cluster.Workload {
	return cluster.Workload{
		Name: name, Owner: "admin", Version: version, Image: img, Run: busyboxRun, Protocol: "handler",
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
	cli, img, pid := dockerSetup(t)
	const name = "demo"
	ctx := context.Background()
	opts := testOptions()
	d := newDocker(t, cli, pid, opts)
	if ip := net.ParseIP(d.HostIP()); ip == nil || ip.To4() == nil || d.Mode() != "docker" || d.PlatformID() != pid || d.Network() != NetworkName(pid) {
		t.Fatalf("host ip %q mode %q platform %q network %q", d.HostIP(), d.Mode(), d.PlatformID(), d.Network())
	}
	nw, err := cli.NetworkInspect(ctx, NetworkName(pid), network.InspectOptions{})
	if err != nil || nw.Labels[LabelPlatform] != pid || nw.Driver != "bridge" {
		t.Fatalf("network %s: %+v %v", NetworkName(pid), nw.Labels, err)
	}

	if err := d.Deploy(ctx, dockerWorkload(img, name, 1, 2)); err != nil {
		t.Fatal(err)
	}
	eps := d.Healthy(name)
	if len(eps) != 2 || versions(eps)[1] != 2 {
		t.Fatalf("healthy: %+v", eps)
	}
	for _, e := range eps {
		// Reached on the platform's bridge, not through docker-proxy.
		if !onBridge(e.Addr, d.HostIP()) {
			t.Fatalf("addr %s, want an address on the bridge of %s", e.Addr, d.HostIP())
		}
	}
	checkDockerAddrs(t, d, name, "1")

	// Limits, labels, port binding, hardening.
	info, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "/qufop-"+pid+"-demo-v1-0" {
		t.Fatalf("container name %s", info.Name)
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
	if l := info.Config.Labels; l[LabelPlatform] != pid || l[LabelUFOP] != name || l[LabelVersion] != "1" || l[LabelIndex] != "0" || l[LabelOwner] != "admin" {
		t.Fatalf("labels: %v", info.Config.Labels)
	}
	if string(hc.NetworkMode) != NetworkName(pid) || info.Config.StopSignal != "SIGTERM" || info.Config.StopTimeout == nil || *info.Config.StopTimeout != 3 {
		t.Fatalf("network %s stop %s/%v", hc.NetworkMode, info.Config.StopSignal, info.Config.StopTimeout)
	}
	if !strings.Contains(strings.Join(info.Config.Env, " "), "PORT_HTTP=9100") {
		t.Fatalf("env: %v", info.Config.Env)
	}

	// Crash one: restarted, healthy again.
	dockerExec(t, cli, ContainerName(pid, name, 1, 1), "touch", "/tmp/crash")
	waitFor(t, patience, "instance 1 restarted and healthy", func() bool {
		in := instances(t, d, name)[1]
		return in.Restarts == 1 && in.Healthy && len(d.Healthy(name)) == 2
	})
	if in := instances(t, d, name)[1]; !strings.Contains(in.Message, "exited with code 3") {
		t.Fatalf("message after crash: %q", in.Message)
	}

	// A second orchestrator of the platform adopts the containers.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := newDocker(t, cli, pid, opts)
	if ins := instances(t, d2, name); len(ins) != 2 || ins[0].Version != 1 {
		t.Fatalf("adopted: %+v", ins)
	}
	waitFor(t, patience, "adopted instances healthy", func() bool { return len(d2.Healthy(name)) == 2 })
	for _, e := range d2.Healthy(name) {
		// Adopted instances too are reached on the bridge.
		if !onBridge(e.Addr, d2.HostIP()) {
			t.Fatalf("adopted addr %s, want an address on the bridge of %s", e.Addr, d2.HostIP())
		}
	}
	checkDockerAddrs(t, d2, name, "1")

	// Scale to 1: index 1 goes (in the background).
	if err := d2.Scale(ctx, name, 1, "test", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "instance 1 gone", func() bool { return len(instances(t, d2, name)) == 1 })
	if ins := instances(t, d2, name); len(ins) != 1 || ins[0].Index != 0 {
		t.Fatalf("after scale: %+v", ins)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 1, 1)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("scaled-away container: %v", err)
	}

	// Deploy v2 while v1 serves; v1 is stopped gracefully (follow its logs).
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var follow testutil.SyncBuffer
	fdone := make(chan error, 1)
	go func() { fdone <- d2.Logs(fctx, name, 0, true, &follow) }()
	waitFor(t, patience, "v1 logs", func() bool { return strings.Contains(follow.String(), "listening") })
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
	waitFor(t, patience, "SIGTERM in v1's logs", func() bool { return strings.Contains(follow.String(), "got SIGTERM") })
	cancel()
	<-fdone
	if _, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 1, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v1 container: %v", err)
	}

	// An unhealthy version fails to deploy; v2 keeps serving.
	bad := dockerWorkload(img, name, 3, 1)
	bad.HealthPath = "/missing"
	d2.Close()
	d3 := newDocker(t, cli, pid, opts)
	waitFor(t, patience, "v2 adopted and healthy", func() bool { return versions(d3.Healthy(name))[2] == 1 })
	if err := failingDeploy(d3, bad, 3*time.Second); err == nil || !strings.Contains(err.Error(), "v2 keeps serving") {
		t.Fatalf("deploy of an unhealthy version: %v", err)
	}
	if v := versions(d3.Healthy(name)); v[2] != 1 || len(v) != 1 {
		t.Fatalf("catalog after failed deploy: %v", v)
	}
	if ins := instances(t, d3, name); len(ins) != 1 || ins[0].Version != 2 {
		t.Fatalf("instances after failed deploy: %+v", ins)
	}
	if _, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 3, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v3 container: %v", err)
	}

	var logs bytes.Buffer
	if err := d3.Logs(ctx, name, 0, false, &logs); err != nil || !strings.Contains(logs.String(), "listening") {
		t.Fatalf("logs: %q %v", logs.String(), err)
	}

	// A graceful stop: the program logs SIGTERM (the kill would come after
	// 3s, with nothing logged).
	fctx, cancel = context.WithCancel(ctx)
	defer cancel()
	var follow2 testutil.SyncBuffer
	go func() { fdone <- d3.Logs(fctx, name, 0, true, &follow2) }()
	waitFor(t, patience, "v2 logs", func() bool { return strings.Contains(follow2.String(), "listening") })
	if err := d3.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, patience, "SIGTERM in v2's logs", func() bool { return strings.Contains(follow2.String(), "got SIGTERM") })
	cancel()
	<-fdone
	if _, err := cli.ContainerInspect(ctx, ContainerName(pid, name, 2, 0)); !cerrdefs.IsNotFound(err) {
		t.Fatalf("v2 container after stop: %v", err)
	}
	if _, err := d3.Instances(ctx, name); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("instances after purge: %v", err)
	}
}

func TestDockerKillTimeout(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	const name = "stubborn"
	ctx := context.Background()
	d := newDocker(t, cli, pid, testOptions())
	w := dockerWorkload(img, name, 1, 1)
	// sh as PID 1 without a trap ignores SIGTERM.
	w.Run = `mkdir -p /tmp/www && echo ok > /tmp/www/health && httpd -p 9100 -h /tmp/www && while true; do sleep 0.1; done`
	w.KillTimeout = time.Second
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.Stop(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	// At least the kill timeout; the upper bound only catches a stop that
	// does not kill at all.
	if dur := time.Since(start); dur < time.Second || dur > 30*time.Second {
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
	if _, err := New(ctx, Config{Options: testOptions(), NoDocker: true, PlatformID: "Not_valid"}); err == nil {
		t.Fatal("New took an invalid platform id")
	}
}

func TestNewDocker(t *testing.T) {
	cli := dockertest.Client(t)
	pid := testPlatform(t, cli)
	ctx := context.Background()
	if _, err := New(ctx, Config{Options: testOptions(), LogDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no platform id") {
		t.Fatalf("New with Docker and no platform id: %v", err)
	}
	if _, err := NewDocker(cli, DockerConfig{PlatformID: strings.Repeat("a", 25)}); err == nil {
		t.Fatal("NewDocker took a platform id of 25 characters")
	}
	r, err := New(ctx, Config{Options: testOptions(), PlatformID: pid, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if d, ok := r.(*Docker); !ok || d.Mode() != "docker" || d.PlatformID() != pid || d.Network() != NetworkName(pid) {
		t.Fatalf("runtime %T mode %s", r, r.Mode())
	}
	t.Logf("mode %s, host ip %s", r.Mode(), r.HostIP())
}

func TestCheckPlatformID(t *testing.T) {
	for id, ok := range map[string]bool{
		"": false, "a": true, "dev-0a1b2c3d": true, "test-0123456789ab": true, "-": true,
		strings.Repeat("x", 24): true, strings.Repeat("x", 25): false,
		"Dev": false, "a_b": false, "a.b": false, "a b": false, "a/b": false, "é": false,
	} {
		if err := CheckPlatformID(id); (err == nil) != ok {
			t.Errorf("CheckPlatformID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

// A start the daemon has begun is carried out even when the supervisor's
// context ends meanwhile (a stop, or Close): the daemon would finish a
// create the client gave up on, after the stop had removed the name, and
// leave the container behind.
func TestDockerStartOutlivesCancel(t *testing.T) {
	cli, img, pid := dockerSetup(t)
	d := newDocker(t, cli, pid, testOptions())
	w, err := d.normalize(dockerWorkload(img, "demo", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id, ep, err := d.drv.start(ctx, &instance{w: w})
	if err != nil {
		t.Fatalf("start with an ended context: %v", err)
	}
	info, err := cli.ContainerInspect(context.Background(), ContainerName(pid, "demo", 1, 0))
	if err != nil || shortID(info.ID) != id || info.State == nil || !info.State.Running {
		t.Fatalf("container: %v", err)
	}
	if !onBridge(ep.addr, d.HostIP()) || !strings.HasPrefix(ep.published, "127.0.0.1:") {
		t.Fatalf("endpoint %+v", ep)
	}
}
