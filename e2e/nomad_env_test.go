package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
)

// The dev agents listen on their default ports: the tests that use them run
// one after the other.
const (
	nomadAddr  = "http://127.0.0.1:4646"
	consulAddr = "127.0.0.1:8500"

	// labelNodeID is the Docker label the agents' docker plugin puts on
	// every container it starts (extra_labels below): the containers of
	// one test's agent, whatever else runs on the daemon.
	labelNodeID = "com.hashicorp.nomad.node_id"
)

// agent is a real `nomad agent -dev` or `consul agent -dev` on loopback.
type agent struct {
	cmd *exec.Cmd
}

// startAgent runs bin with args, waiting until GET ready answers 200.
// Clean-up stops it with SIGINT (a Nomad dev agent then destroys its
// allocations), killing it after 60 s.
func startAgent(t *testing.T, bin string, ready string, args ...string) *agent {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(bin)+".log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Errorf("%s did not stop within 60s of SIGINT: killed", bin)
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", bin, tail(string(b), 40))
		}
	})
	require.Eventually(t, func() bool {
		r, err := http.Get(ready)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	}, 90*time.Second, 250*time.Millisecond, "%s did not come up", bin)
	return &agent{cmd: cmd}
}

// requireNomadConsul skips t without both binaries on PATH.
func requireNomadConsul(t *testing.T) (nomadBin, consulBin string) {
	nomadBin, err1 := exec.LookPath("nomad")
	consulBin, err2 := exec.LookPath("consul")
	if err1 != nil || err2 != nil {
		t.Skip("skipping: needs `nomad` (v1.6.5) and `consul` (v1.16.3) on PATH; they cannot be installed from a package here")
	}
	return nomadBin, consulBin
}

// nomadEnv is a Consul and a Nomad dev agent on loopback, the Nomad client
// configured as the platform's jobs need it (jobspecs/README.md): the
// docker plugin allows host paths (the builder binds the Docker socket),
// host volumes qufop-buckets and qufop-registry in temporary folders.
//
// Clean-up, in this order and also after a failure: every job purged and
// its allocations stopped, the agents stopped (Nomad -dev removes the
// containers of its allocations), then any container of this agent's node
// still on the daemon removed. The docker plugin's image GC is off: images
// are removed by the test that made them (register that clean-up before
// startNomadEnv, so that it runs after the containers are gone).
type nomadEnv struct {
	nomadBin string
	docker   *client.Client
	nomad    *nomadapi.Client
	consul   *consulapi.Client
	nodeID   string
	buckets  string // host volume qufop-buckets
	registry string // host volume qufop-registry
}

func startNomadEnv(t *testing.T) *nomadEnv {
	nomadBin, consulBin := requireNomadConsul(t)
	waitAgentPortsFree(t)
	e := &nomadEnv{nomadBin: nomadBin, docker: dockertest.Client(t)}
	dir := t.TempDir()
	e.buckets, e.registry = filepath.Join(dir, "buckets"), filepath.Join(dir, "registry")
	for _, d := range []string{e.buckets, e.registry} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	config := filepath.Join(dir, "client.hcl")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`
client {
  host_volume "qufop-buckets" {
    path = %q
  }
  host_volume "qufop-registry" {
    path = %q
  }
}

plugin "docker" {
  config {
    volumes {
      enabled = true
    }
    extra_labels = ["job_name", "node_id"]
    gc {
      image = false
    }
  }
}
`, e.buckets, e.registry)), 0o644))

	t.Cleanup(func() { e.removeContainers(t) }) // after the agents stopped
	startAgent(t, consulBin, "http://"+consulAddr+"/v1/status/leader",
		"agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1")
	startAgent(t, nomadBin, nomadAddr+"/v1/status/leader",
		"agent", "-dev", "-bind", "127.0.0.1", "-consul-address", consulAddr,
		"-data-dir", t.TempDir(), "-config", config)

	var err error
	e.nomad, err = nomadapi.NewClient(&nomadapi.Config{Address: nomadAddr})
	require.NoError(t, err)
	ccfg := consulapi.DefaultConfig()
	ccfg.Address = consulAddr
	e.consul, err = consulapi.NewClient(ccfg)
	require.NoError(t, err)

	// The node registers, then fingerprints Docker.
	var why string
	require.Eventually(t, func() bool {
		nodes, _, err := e.nomad.Nodes().List(nil)
		if err != nil || len(nodes) != 1 {
			why = fmt.Sprintf("nodes %v, %v", nodes, err)
			return false
		}
		n := nodes[0]
		d := n.Drivers["docker"]
		if n.Status != "ready" || d == nil || !d.Healthy {
			why = fmt.Sprintf("node %s, docker driver %+v", n.Status, d)
			return false
		}
		e.nodeID = n.ID
		return true
	}, 90*time.Second, 250*time.Millisecond, "the Nomad node is not ready with Docker: %s", &why)
	t.Cleanup(func() { e.purgeAll(t) }) // before the agents stop
	return e
}

// agentPorts are the dev agents' fixed ports on loopback.
var agentPorts = []int{4646, 4647, 4648, 8300, 8301, 8302, 8500, 8502, 8600}

// waitAgentPortsFree waits (up to 5 minutes) until nothing listens on the
// dev agents' ports: an agent already there would answer the readiness
// checks in place of ours, and the clean-up would purge its jobs.
func waitAgentPortsFree(t *testing.T) {
	t.Helper()
	var busy []int
	logged := false
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(2 * time.Second) {
		busy = busy[:0]
		for _, p := range agentPorts {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
				c.Close()
				busy = append(busy, p)
			}
		}
		if len(busy) == 0 {
			return
		}
		if !logged {
			t.Logf("waiting for ports %v on 127.0.0.1 to be free (another agent is running)", busy)
			logged = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("ports %v on 127.0.0.1 stayed busy for 5 minutes: another Nomad or Consul agent runs there; stop it first", busy)
		}
	}
}

// removeContainers removes what the agent's allocations left on the
// daemon (nothing, when Nomad stopped cleanly).
func (e *nomadEnv) removeContainers(t *testing.T) {
	if e.nodeID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", labelNodeID+"="+e.nodeID))
	left, err := e.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Errorf("listing the containers of Nomad node %s: %v", e.nodeID, err)
		return
	}
	for _, c := range left {
		t.Logf("removing container %s (%s, %s) that Nomad left", c.Names, c.Image, c.State)
		if err := e.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("removing container %s: %v", c.ID, err)
		}
	}
}

// purgeAll purges every job and waits until none of their allocations
// runs, so that the agent stops with nothing to kill.
func (e *nomadEnv) purgeAll(t *testing.T) {
	all := &nomadapi.QueryOptions{Namespace: "*"}
	jobs, _, err := e.nomad.Jobs().List(all)
	if err != nil {
		t.Errorf("listing Nomad jobs: %v", err)
		return
	}
	for _, j := range jobs {
		if _, _, err := e.nomad.Jobs().Deregister(j.ID, true, &nomadapi.WriteOptions{Namespace: j.Namespace}); err != nil {
			t.Errorf("purging job %s: %v", j.ID, err)
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		live := e.liveAllocs("")
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("allocations still running 3m after the purge: %v", live)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// liveAllocs lists the allocations (of job, or of every job) that are
// pending or running on the client, as "job/alloc status".
func (e *nomadEnv) liveAllocs(job string) []string {
	allocs, _, err := e.nomad.Allocations().List(&nomadapi.QueryOptions{Namespace: "*"})
	if err != nil {
		return []string{err.Error()}
	}
	var live []string
	for _, a := range allocs {
		if (job == "" || a.JobID == job) && (a.ClientStatus == "pending" || a.ClientStatus == "running") {
			live = append(live, a.JobID+"/"+a.ID[:8]+" "+a.ClientStatus)
		}
	}
	return live
}

// cli runs the nomad command against the agent from the repository root.
func (e *nomadEnv) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.nomadBin, args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "NOMAD_ADDR="+nomadAddr)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func (e *nomadEnv) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.cli(args...)
	require.NoError(t, err, "nomad %s:\n%s", strings.Join(args, " "), out)
	return out
}

// serviceState says whether job has a running allocation and service is
// in Consul with every check passing; otherwise what is missing.
func (e *nomadEnv) serviceState(job, service string) (bool, string) {
	allocs, _, err := e.nomad.Jobs().Allocations(job, false, nil)
	if err != nil {
		return false, "allocations: " + err.Error()
	}
	var states []string
	running := 0
	for _, a := range allocs {
		states = append(states, a.ClientStatus)
		if a.ClientStatus == "running" && a.DesiredStatus == "run" {
			running++
		}
	}
	if running == 0 {
		return false, fmt.Sprintf("no running allocation (%v)", states)
	}
	entries, _, err := e.consul.Health().Service(service, "", false, nil)
	if err != nil {
		return false, "consul: " + err.Error()
	}
	if len(entries) == 0 {
		return false, "service " + service + " not in Consul"
	}
	for _, s := range entries {
		checks := 0
		for _, c := range s.Checks {
			if c.ServiceName != service {
				continue // the node's serfHealth
			}
			checks++
			if c.Status != consulapi.HealthPassing {
				return false, fmt.Sprintf("check %q %s: %s", c.Name, c.Status, strings.TrimSpace(c.Output))
			}
		}
		if checks == 0 {
			return false, "service " + service + " has no check"
		}
	}
	return true, ""
}

// waitPassing waits until serviceState holds, failing t with Nomad's and
// Consul's view after timeout.
func (e *nomadEnv) waitPassing(t *testing.T, job, service string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := e.serviceState(job, service)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not running and passing in Consul after %s: %s\n%s", job, timeout, why, e.diagnose(job))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// diagnose is what Nomad says about job and its allocations.
func (e *nomadEnv) diagnose(job string) string {
	var b strings.Builder
	out, _ := e.cli("job", "status", job)
	b.WriteString(out)
	allocs, _, _ := e.nomad.Jobs().Allocations(job, true, nil)
	for _, a := range allocs {
		out, _ = e.cli("alloc", "status", a.ID)
		fmt.Fprintf(&b, "\n--- alloc %s\n%s", a.ID[:8], tail(out, 30))
		for _, typ := range []string{"-stderr", "-stdout"} {
			out, _ = e.cli("alloc", "logs", typ, a.ID)
			fmt.Fprintf(&b, "\n--- %s of alloc %s\n%s", typ[1:], a.ID[:8], tail(out, 20))
		}
	}
	return b.String()
}

// waitGone waits until job is purged, none of its allocations runs and
// service is out of Consul.
func (e *nomadEnv) waitGone(t *testing.T, job, service string, timeout time.Duration) {
	t.Helper()
	var why string
	require.Eventually(t, func() bool {
		if _, _, err := e.nomad.Jobs().Info(job, nil); err == nil || !strings.Contains(err.Error(), "404") {
			why = fmt.Sprintf("job still there (%v)", err)
			return false
		}
		if live := e.liveAllocs(job); len(live) > 0 {
			why = fmt.Sprintf("allocations %v", live)
			return false
		}
		entries, _, err := e.consul.Health().Service(service, "", false, nil)
		if err != nil || len(entries) > 0 {
			why = fmt.Sprintf("%d instances of %s in Consul (%v)", len(entries), service, err)
			return false
		}
		return true
	}, timeout, 250*time.Millisecond, "%s after stop -purge: %s", job, &why)
}

// freeTCPPort is a port nothing listens on, on any address.
func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// dockerBridgeIP is the host's address on Docker's default bridge
// (docker0), where containers of Nomad's docker driver reach the host.
func dockerBridgeIP(t *testing.T) string {
	ifc, err := net.InterfaceByName("docker0")
	require.NoError(t, err, "no docker0 interface: the containers could not reach the gateway")
	addrs, err := ifc.Addrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatalf("docker0 has no IPv4 address (%v)", addrs)
	return ""
}

// removeImageAtEnd removes ref from the daemon at the end of t (with its
// untagged parents).
func removeImageAtEnd(t *testing.T, c *client.Client, ref string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("removing image %s: %v", ref, err)
		}
	})
}

// removeUFOPsAtEnd removes, at the end of t, the images the builder made
// for each UFOP of names (label qufop.ufop) and the repositories
// admin/<name> it pushed them to in the registry at registry.
func removeUFOPsAtEnd(t *testing.T, c *client.Client, registry string, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, name := range names {
			imgs, err := c.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "qufop.ufop="+name))})
			if err != nil {
				t.Errorf("listing the images of %s: %v", name, err)
			}
			for _, img := range imgs {
				if _, err := c.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !client.IsErrNotFound(err) {
					t.Errorf("removing image %v of %s: %v", img.RepoTags, name, err)
				}
			}
			dockertest.RemoveRepository(t, registry, adminUser+"/"+name)
		}
	})
}

// adminUser owns what the tests' builders build (the builder's admin user).
const adminUser = "admin"

// registryTags lists the tags of repo at addr (none when it does not
// exist).
func registryTags(t *testing.T, addr, repo string) []string {
	r, err := http.Get("http://" + addr + "/v2/" + repo + "/tags/list")
	require.NoError(t, err)
	defer r.Body.Close()
	if r.StatusCode == http.StatusNotFound {
		return nil
	}
	require.Equal(t, http.StatusOK, r.StatusCode, "tags of %s", repo)
	var tags struct{ Tags []string }
	require.NoError(t, json.NewDecoder(r.Body).Decode(&tags))
	return tags.Tags
}
