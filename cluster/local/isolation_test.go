package local

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// isoRun serves /tmp/www with busybox httpd on 9100 from the image's
// working directory; /tmp/eat makes the shell (PID 1) read 100 MB into a
// variable, more than any memory limit of these tests.
const isoRun = `mkdir -p /tmp/www && echo ok > /tmp/www/health && httpd -p 9100 -h /tmp/www && echo listening; ` +
	`while [ ! -f /tmp/eat ]; do sleep 0.1; done; echo eating; x=$(head -c 100000000 /dev/zero | tr '\000' a); echo "ate ${#x}"; exit 4`

// isoWorkDir is the working directory of the test image, as the builder's
// images have one (/home/ufop/app).
const isoWorkDir = "/home/ufop/app"

// isoImage builds, from the base image and without any pull, an image of
// platform pid (removed with it) whose working directory is isoWorkDir
// and holds a file of the image.
func isoImage(t *testing.T, cli *client.Client, base, pid string) string {
	t.Helper()
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	df := fmt.Sprintf("FROM %s\nRUN mkdir -p %s && echo from-image > %s/shipped\nWORKDIR %s\n", base, isoWorkDir, isoWorkDir, isoWorkDir)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(df))
	tw.Close()
	tag := "qufop-" + pid + "-iso:1"
	resp, err := cli.ImageBuild(context.Background(), &ctxTar, types.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Labels: map[string]string{LabelPlatform: pid},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := cli.ImageInspect(context.Background(), tag); err != nil {
		t.Fatalf("test image %s not built: %v\n%s", tag, err, out)
	}
	return tag
}

// execOut runs cmd in container ctr and returns its output and exit code.
func execOut(t *testing.T, cli *client.Client, ctr string, cmd ...string) (string, int) {
	t.Helper()
	ctx := context.Background()
	ex, err := cli.ContainerExecCreate(ctx, ctr, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	at, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, at.Reader)
	at.Close()
	if err != nil {
		t.Fatal(err)
	}
	for {
		st, err := cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			return out.String(), st.ExitCode
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveText serves body on a listener of its own at ip, until t ends.
func serveText(t *testing.T, ip, body string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// outside makes a network namespace of the test's own, reached from the
// host through a veth pair in a /30 of 198.18.0.0/15 (the benchmarking
// range, used by nothing here), with a TCP listener in it: an address
// "beyond the machine" that never leaves it. It returns host:port of the
// listener, once the host itself connects to it. All goes when t ends.
func outside(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: no ip command (iproute2)")
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(b[:])
	ns, hostIf, nsIf := "qufop-test-"+suffix, "qft"+suffix+"h", "qft"+suffix+"n"
	// 198.18.0.0/15: second octet 18 or 19, a random /30 in it.
	o2, o3, o4 := 18+int(b[0]&1), int(b[1]), int(b[2]&0xfc)
	hostIP, nsIP := fmt.Sprintf("198.%d.%d.%d", o2, o3, o4+1), fmt.Sprintf("198.%d.%d.%d", o2, o3, o4+2)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", nsIf)
	run("ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	// Replies to masqueraded traffic go back through the host.
	run("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", hostIP)
	// A persistent listener that says "outside" to every connection.
	nc := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "nc", "-ll", "-p", "8888", "-e", "/bin/echo", "outside")
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Process.Kill(); nc.Wait() })
	addr := net.JoinHostPort(nsIP, "8888")
	waitFor(t, patience, "the host reaching the namespace's listener", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		return strings.TrimSpace(string(got)) == "outside"
	})
	return addr
}

// TestDockerIsolation checks from inside a real instance what it can
// reach and write: another instance, a host port that is not the blob
// endpoint and an address beyond the machine all fail; the blob endpoint
// answers; only the working directory and /tmp are writable; and the
// flavor's limits are applied. Everything it made goes when it ends,
// the firewall's chains too.
func TestDockerIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the firewall needs root (iptables)")
	}
	var bridge string
	t.Cleanup(func() { // after the platform is removed (cleanups run last first)
		if bridge == "" {
			return
		}
		out, _ := exec.Command("iptables", "-S").CombinedOutput()
		if strings.Contains(string(out), bridge) {
			t.Errorf("iptables rules of %s left:\n%s", bridge, out)
		}
	})
	cli, base, pid := dockerSetup(t)
	img := isoImage(t, cli, base, pid)
	far := outside(t)
	ctx := context.Background()
	d := newDocker(t, cli, pid, testOptions())
	if d.Warning() != "" {
		t.Fatalf("warning: %s", d.Warning())
	}
	nw, err := cli.NetworkInspect(ctx, d.Network(), network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bridge = bridgeName(nw.ID, nw.Options)
	if nw.Options["com.docker.network.bridge.enable_icc"] != "false" {
		t.Errorf("network options %v: want enable_icc false", nw.Options)
	}

	blobPort := serveText(t, d.HostIP(), "blob")
	otherPort := serveText(t, d.HostIP(), "secret")
	anyPort := serveText(t, "0.0.0.0", "secret")
	if err := d.AllowHostPort(blobPort); err != nil {
		t.Fatal(err)
	}
	// The host reaches both listeners: failing from inside is the
	// isolation, not a listener that is not there.
	for _, p := range []int{blobPort, otherPort, anyPort} {
		if _, err := httpGet(net.JoinHostPort(d.HostIP(), fmt.Sprint(p)), "/"); err != nil {
			t.Fatalf("host to its own listener: %v", err)
		}
	}

	w := dockerWorkload(img, "iso", 1, 2)
	w.Run = isoRun
	w.MemoryMB = 32
	if err := d.Deploy(ctx, w); err != nil {
		t.Fatal(err)
	}
	ins := instances(t, d, "iso")
	// The platform reaches the workload port on the bridge (Deploy waited
	// for health probes through it), and a person through the published
	// port.
	for _, in := range ins {
		for _, addr := range []string{in.Addr, in.PublishedAddr} {
			if v, err := httpGet(addr, "/health"); err != nil || strings.TrimSpace(v) != "ok" {
				t.Fatalf("GET %s/health from the host: %q %v", addr, v, err)
			}
		}
	}
	me := ContainerName(pid, "iso", 1, 0)

	// nc exits 0 once connected (a "connection" through a firewall that
	// drops would hang until -w, and fail too).
	connect := func(addr string) (string, int) {
		host, port, _ := net.SplitHostPort(addr)
		return execOut(t, cli, me, "/bin/sh", "-c", fmt.Sprintf("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 %s %s", host, port))
	}
	for _, c := range []struct {
		what, addr string
		reach      bool
		want       string
	}{
		{"the blob endpoint", net.JoinHostPort(d.HostIP(), fmt.Sprint(blobPort)), true, "blob"},
		{"another instance", ins[1].Addr, false, ""},
		{"another port of the host's bridge address", net.JoinHostPort(d.HostIP(), fmt.Sprint(otherPort)), false, ""},
		{"an address beyond the machine", far, false, ""},
		{"a port the host listens on at 0.0.0.0", net.JoinHostPort(d.HostIP(), fmt.Sprint(anyPort)), false, ""},
	} {
		out, code := connect(c.addr)
		if c.reach && (code != 0 || !strings.Contains(out, c.want)) {
			t.Errorf("%s (%s) from inside: exit %d %q, want %q", c.what, c.addr, code, out, c.want)
		}
		if !c.reach && (code == 0 || strings.Contains(out, "secret") || strings.Contains(out, "outside")) {
			t.Errorf("%s (%s) reached from inside: exit %d %q", c.what, c.addr, code, out)
		}
	}
	// Every address of the host's own interfaces other than the bridge
	// (its other bridges, its own network card): closed too, as they are
	// the host's as much as the bridge's gateway is.
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range ifs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || ipn.IP.String() == d.HostIP() {
			continue
		}
		addr := net.JoinHostPort(ipn.IP.String(), fmt.Sprint(serveText(t, ipn.IP.String(), "secret")))
		if out, code := connect(addr); code == 0 || strings.Contains(out, "secret") {
			t.Errorf("host address %s reached from inside: exit %d %q", addr, code, out)
		}
	}

	// Writing: the working directory (with the image's files in it) and
	// /tmp, nothing else.
	for _, c := range []struct {
		cmd string
		ok  bool
	}{
		{"pwd", true},
		{"cat shipped && echo x > " + isoWorkDir + "/new && cat new", true},
		{"echo x > /tmp/new && cat /tmp/new", true},
		{"echo x > /new", false},
		{"echo x > /usr/new", false},
		{"echo x > /etc/passwd", false},
		{"mkdir /home/other", false},
	} {
		out, code := execOut(t, cli, me, "/bin/sh", "-c", c.cmd)
		if (code == 0) != c.ok {
			t.Errorf("%s: exit %d %q, want success %v", c.cmd, code, out, c.ok)
		}
		if c.cmd == "pwd" && strings.TrimSpace(out) != isoWorkDir {
			t.Errorf("working directory %q, want %s", out, isoWorkDir)
		}
	}

	info, err := cli.ContainerInspect(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	hc := info.HostConfig
	if !hc.ReadonlyRootfs || hc.NanoCPUs != 1e9 || hc.Memory != 32<<20 || hc.MemorySwap != 32<<20 || hc.PidsLimit == nil || *hc.PidsLimit != 256 {
		t.Errorf("host config: readonly %v cpus %d memory %d swap %d pids %v", hc.ReadonlyRootfs, hc.NanoCPUs, hc.Memory, hc.MemorySwap, hc.PidsLimit)
	}
	// The limits as the kernel sees them from inside (cgroup v1 or v2).
	if out, _ := execOut(t, cli, me, "/bin/sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"); strings.TrimSpace(out) != fmt.Sprint(32<<20) {
		t.Errorf("memory limit inside: %q", out)
	}
	if out, _ := execOut(t, cli, me, "/bin/sh", "-c", "cat /proc/self/status | grep -i '^CapEff'"); !strings.Contains(out, "0000000000000000") {
		t.Errorf("capabilities inside: %q", out)
	}
	if out, _ := execOut(t, cli, me, "/bin/sh", "-c", "grep -i '^NoNewPrivs' /proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("no_new_privs inside: %q", out)
	}

	// Stopping the platform gives the firewall back with the network.
	if err := d.Stop(ctx, "iso", true); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := RemovePlatform(ctx, cli, pid); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
		t.Fatalf("bridge %s still there", bridge)
	}
}

// iptablesS is `iptables -S chain`.
func iptablesS(t *testing.T, chain string) string {
	t.Helper()
	out, err := exec.Command("iptables", "-S", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S %s: %v %s", chain, err, out)
	}
	return string(out)
}

// The rules are set up idempotently: a second runtime of the platform (a
// restart) puts no second jump in, and closes the ports the first opened
// until it opens its own.
func TestDockerFirewallIdempotent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the firewall needs root (iptables)")
	}
	cli, _, pid := dockerSetup(t)
	ctx := context.Background()
	d1 := newDocker(t, cli, pid, testOptions())
	nw, err := cli.NetworkInspect(ctx, d1.Network(), network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bridge := bridgeName(nw.ID, nw.Options)
	for range 2 {
		if err := d1.AllowHostPort(4711); err != nil {
			t.Fatal(err)
		}
	}
	d2 := newDocker(t, cli, pid, testOptions())
	if err := d2.AllowHostPort(4712); err != nil {
		t.Fatal(err)
	}
	in := iptablesS(t, chainInPrefix+bridge)
	if strings.Contains(in, "--dport 4711") || strings.Count(in, "--dport 4712") != 1 || strings.Count(in, "-j DROP") != 1 {
		t.Errorf("chain %s%s:\n%s", chainInPrefix, bridge, in)
	}
	if n := strings.Count(iptablesS(t, "INPUT"), "-i "+bridge+" -j "+chainInPrefix+bridge); n != 1 {
		t.Errorf("%d INPUT jumps to the chain of %s", n, bridge)
	}
	if n := strings.Count(iptablesS(t, "DOCKER-USER"), "-i "+bridge+" -j "+chainFwdPrefix+bridge); n != 1 {
		t.Errorf("%d DOCKER-USER jumps to the chain of %s", n, bridge)
	}
	if err := d2.AllowHostPort(0); err == nil {
		t.Error("port 0 allowed")
	}
}

// Without the firewall (NoFirewall, or no iptables) the runtime says so:
// `qufop dev` prints the warning.
func TestDockerNoFirewallWarns(t *testing.T) {
	cli, _, pid := dockerSetup(t)
	d, err := NewDocker(cli, DockerConfig{Options: testOptions(), PlatformID: pid, NoFirewall: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if w := d.Warning(); !strings.Contains(w, "not firewalled") || !strings.Contains(w, "every port of this machine") {
		t.Fatalf("warning %q", w)
	}
	if err := d.AllowHostPort(4711); err != nil {
		t.Fatalf("AllowHostPort without a firewall: %v", err)
	}
}
