package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
)

// role is a qufop role process (builder, gateway, scaler) of a test.
type role struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startRole(t *testing.T, p *platform, logName string, args ...string) *role {
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk) // the admin keys: never on a command line
	logf, err := os.Create(filepath.Join(p.work, logName+".log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	r := &role{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(r.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("qufop %s log:\n%s", logName, tail(string(b), 40))
		}
	})
	return r
}

type scalerHealth struct {
	Leader bool `json:"leader"`
}

func leading(addr string) bool {
	r, err := http.Get("http://" + addr + "/health")
	if err != nil {
		return false
	}
	defer r.Body.Close()
	var h scalerHealth
	return json.NewDecoder(r.Body).Decode(&h) == nil && h.Leader
}

// TestRealNomadScaler runs `qufop scaler` twice (one leads, by a Consul
// lock) beside `qufop builder` and `qufop gateway` on real Nomad and Consul
// dev agents (`make test-nomad`; skipped without the binaries). A slow UFOP
// (200 ms a step, concurrency 2) grows from 1 to 4 under 8 clients and
// shrinks back with no failed request; a scale-up during an upgrade is a
// skip, not an error; killing the leading scaler hands over to the other.
func TestRealNomadScaler(t *testing.T) {
	requireNomadConsul(t)
	p := startPlatformDeps(t)
	name := fmt.Sprintf("nomad-slow-%d", time.Now().UnixNano()%1e6)
	removeUFOPsAtEnd(t, dockertest.Client(t), dockertest.RegistryAddr, name)
	startNomadEnv(t)

	builderAddr := freePort(t)
	gatewayAddr := net.JoinHostPort(dockerBridgeIP(t), strconv.Itoa(freeTCPPort(t)))
	startRole(t, p, "builder", "builder", "--listen", builderAddr, "--data", filepath.Join(p.work, "builder"),
		"--nomad-addr", nomadAddr, "--consul-addr", consulAddr)
	bucket := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bucket, "note.txt"), []byte("hello nomad"), 0o644))
	// Without Prometheus the scalers find the gateways in Consul: the
	// gateway job registers service qufop-gateway on a cluster; here the
	// test does.
	startRole(t, p, "gateway", "gateway", "--listen", gatewayAddr, "--advertise-addr", gatewayAddr,
		"--bucket", "files="+bucket, "--consul-addr", consulAddr)
	registerGateway(t, gatewayAddr)
	lockKey := "qufop/scaler/lock-" + name
	scalerArgs := func(addr string) []string {
		return []string{"scaler", "--listen", addr, "--nomad-addr", nomadAddr, "--consul-addr", consulAddr, "--lock-key", lockKey}
	}
	s1, s2 := freePort(t), freePort(t)
	r1 := startRole(t, p, "scaler-1", scalerArgs(s1)...)
	r2 := startRole(t, p, "scaler-2", scalerArgs(s2)...)
	p.base = "http://" + gatewayAddr
	p.env = append(os.Environ(), "QUFOP_ADDR=http://"+builderAddr, "QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk,
		"QUFOP_CONFIG="+filepath.Join(p.work, "cli.json"))
	require.Eventually(t, func() bool { _, err := p.qufop("list"); return err == nil }, 30*time.Second, 200*time.Millisecond)
	require.Eventually(t, func() bool { return leading(s1) != leading(s2) }, time.Minute, 200*time.Millisecond, "one scaler leads")

	demoBin := filepath.Join(p.work, "ufop-demo")
	goBuild(t, demoBin, "./examples/ufop-demo", false)
	slowSource := func(env string) string {
		src := demoSource(t, demoBin, "handler", env)
		spec := filepath.Join(src, "ufop.yaml")
		writeFile(t, spec, strings.Replace(readFile(t, spec), "concurrency: 8", "concurrency: 2", 1))
		return src
	}
	p.must("reg", name, "-m", "1")
	defer p.qufop("unreg", name)
	p.must("build", name, "-f", slowSource(""))
	p.must("chver", name, "-c", "1")
	p.must("resize", name, "-n", "1", "--timeout", "5m")
	p.must("scale-policy", name, "--min", "1", "--max", "4", "--target", "2",
		"--interval", "1s", "--down-cooldown", "2s", "--down-window", "4s", "--timeout", "5m")
	url := p.base + "/files/note.txt?" + name + "/sleep/200"

	start := time.Now()
	burst := startLoad(url, 8)
	p.waitCount(name, 4)
	t.Logf("burst: 1 to 4 healthy instances on Nomad in %s", time.Since(start).Round(100*time.Millisecond))
	burst.end(t, "burst")
	trickle := startLoad(url, 1)
	p.waitCount(name, 1)
	trickle.end(t, "scale-in")

	// A burst during an upgrade: the scaler's scale-up is skipped while
	// the deployment is active, then done.
	p.must("build", name, "-f", slowSource(`BUILD: "2"`))
	p.must("chver", name, "-c", "2")
	p.must("upgrade", name, "--no-wait")
	during := startLoad(url, 8)
	require.Eventually(t, func() bool {
		for _, e := range p.info(name).ScaleHistory {
			if e.Skipped {
				return true
			}
		}
		return false
	}, 3*time.Minute, 500*time.Millisecond, "a scale-up during the upgrade is recorded as skipped")
	p.waitCount(name, 4)
	during.end(t, "burst during the upgrade")
	leader, other, lr := s1, s2, r1
	if leading(s2) {
		leader, other, lr = s2, s1, r2
	}
	m := metricsText(t, leader)
	assert.Contains(t, m, `qufop_scaler_evaluation_errors_total{stage="target"} 0`, "a skip is not an error")
	assert.Regexp(t, `qufop_scaler_decisions_total\{direction="up",result="skipped",ufop="`+name+`"\} [1-9]`, m)

	// Kill the leader: the other takes over (once Consul frees the lock)
	// and scales from there.
	killed := time.Now()
	require.NoError(t, lr.cmd.Process.Signal(syscall.SIGKILL))
	<-lr.done
	require.Eventually(t, func() bool { return leading(other) }, 2*time.Minute, 200*time.Millisecond, "the second scaler takes over")
	t.Logf("handover after SIGKILL of the leader: %s", time.Since(killed).Round(100*time.Millisecond))
	p.waitCount(name, 1)
	again := startLoad(url, 8)
	p.waitCount(name, 4)
	again.end(t, "burst after the handover")
	p.waitCount(name, 1)
	m = metricsText(t, other)
	assert.Regexp(t, `qufop_scaler_decisions_total\{direction="up",result="done",ufop="`+name+`"\} [1-9]`, m, "the new leader scaled up")
}

// registerGateway registers the gateway in Consul as the gateway job does
// on a cluster (service qufop-gateway, check GET /health).
func registerGateway(t *testing.T, addr string) {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	body := fmt.Sprintf(`{"ID":"qufop-gateway-test","Name":"qufop-gateway","Address":%q,"Port":%s,
		"Check":{"HTTP":"http://%s/health","Interval":"1s","Timeout":"1s"}}`, host, port, addr)
	req, err := http.NewRequest(http.MethodPut, "http://"+consulAddr+"/v1/agent/service/register", strings.NewReader(body))
	require.NoError(t, err)
	r, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, 200, r.StatusCode)
}

func metricsText(t *testing.T, addr string) string {
	code, _, body := httpGet(t, "http://"+addr+"/metrics")
	require.Equal(t, 200, code)
	return body
}
