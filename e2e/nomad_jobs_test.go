package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
)

// TestNomadPlatformJobs runs the platform's own jobspecs (registry, builder,
// gateway) with `nomad job run` on a dev agent whose client has what
// jobspecs/README.md asks for, waits until each job's allocation runs and
// its Consul service passes, uses each service once, then stops and purges
// the jobs (`make test-nomad`; skipped without nomad and consul on PATH).
//
// The jobs run this tree's binary: the test makes its own qufop image from
// it (.ci/image-local.sh, no pulls) under a tag of its own, rather than
// running whatever qufop/qufop:dev the daemon holds. local/docker-registry:2.8
// is used when present, otherwise made (.ci/image-local.sh registry); the
// test removes the images it made. Ports are free ones passed as -var, the
// machine's registry already holding 5000.
func TestNomadPlatformJobs(t *testing.T) {
	requireNomadConsul(t)
	c := dockertest.Client(t)
	dockertest.Busybox(t, c)
	if _, err := os.Stat("/usr/bin/docker-registry"); err != nil {
		if _, ierr := c.ImageInspect(context.Background(), registryImage); ierr != nil {
			t.Skipf("skipping: no %s and no /usr/bin/docker-registry to make it from (apt-get install docker-registry)", registryImage)
		}
	}
	work := t.TempDir()
	bin := filepath.Join(work, "qufop")
	goBuild(t, bin, "./cmd/qufop", true)
	// Images first: their removal is registered before the agents', so it
	// runs after the containers are gone.
	suffix := time.Now().UnixNano() % 1e6
	qufopImage := fmt.Sprintf("qufop/qufop:e2e-%d", suffix)
	makeImage(t, c, qufopImage, nil, "BIN="+bin)
	regImage := registryImage
	if _, err := c.ImageInspect(context.Background(), regImage); err != nil {
		makeImage(t, c, regImage, []string{"registry"})
	} else {
		t.Logf("using the daemon's %s", regImage)
	}
	e := startNomadEnv(t)

	// The gateway (uid 10001) reads and writes the buckets.
	demo := filepath.Join(e.buckets, "demo")
	require.NoError(t, os.Mkdir(demo, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(demo, "hello.txt"), []byte("hello from the bucket volume"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(demo, "storm.jpg"), mustRead(t, "../testdata/images/storm-1920x1080.jpg"), 0o644))
	for _, p := range []string{demo, filepath.Join(demo, "hello.txt"), filepath.Join(demo, "storm.jpg")} {
		require.NoError(t, os.Chown(p, 10001, 10001))
	}

	regPort, builderPort, gatewayPort := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	registry := "127.0.0.1:" + strconv.Itoa(regPort)
	jobs := []struct {
		file, job, service string
		vars               []string
	}{
		{"registry.nomad.hcl", "qufop-registry", "qufop-registry",
			[]string{"image=" + regImage, "port=" + strconv.Itoa(regPort)}},
		{"builder.nomad.hcl", "qufop-builder", "qufop-builder",
			[]string{"image=" + qufopImage, "port=" + strconv.Itoa(builderPort), "registry=" + registry}},
		{"gateway.nomad.hcl", "qufop-gateway", "qufop-gateway",
			[]string{"image=" + qufopImage, "port=" + strconv.Itoa(gatewayPort), `buckets=["demo"]`}},
		{"scaler.nomad.hcl", "qufop-scaler", "qufop-scaler",
			[]string{"image=" + qufopImage}},
	}
	// The builder's admin keys are a Nomad Variable its template renders
	// into its environment (jobspecs/README.md), never a job variable.
	e.mustCLI(t, "var", "put", "nomad/jobs/qufop-builder", "access_key="+ak, "secret_key="+sk)
	for _, j := range jobs {
		args := []string{"job", "run", "-detach"}
		for _, v := range j.vars {
			args = append(args, "-var", v)
		}
		start := time.Now()
		e.mustCLI(t, append(args, "jobspecs/"+j.file)...)
		e.waitPassing(t, j.job, j.service, 4*time.Minute)
		t.Logf("%s: nomad job run to allocation running and %s passing in Consul: %s",
			j.file, j.service, time.Since(start).Round(100*time.Millisecond))
	}

	// The registry stores in its host volume: push a tag of busybox to it.
	code, _, _ := httpGet(t, "http://"+registry+"/v2/")
	require.Equal(t, 200, code, "GET /v2/ of the registry job")
	pushed := registry + "/e2e/busybox:1"
	require.NoError(t, c.ImageTag(context.Background(), dockertest.BusyboxRef, pushed))
	t.Cleanup(func() {
		// The tag only: BusyboxRef stays.
		if _, err := c.ImageRemove(context.Background(), pushed, image.RemoveOptions{}); err != nil && !client.IsErrNotFound(err) {
			t.Errorf("removing tag %s: %v", pushed, err)
		}
	})
	require.NoError(t, push(c, pushed))
	require.Equal(t, []string{"1"}, registryTags(t, registry, "e2e/busybox"))
	_, err := os.Stat(filepath.Join(e.registry, "docker/registry/v2/repositories/e2e/busybox"))
	require.NoError(t, err, "the pushed repository is not in the host volume qufop-registry")

	// The builder answers the CLI with the keys of the Nomad Variable: it
	// reached Consul KV (and Docker, which it checks at start).
	cli := exec.Command(bin, "list")
	cli.Env = append(os.Environ(), "QUFOP_ADDR=http://127.0.0.1:"+strconv.Itoa(builderPort),
		"QUFOP_ACCESS_KEY="+ak, "QUFOP_SECRET_KEY="+sk, "QUFOP_CONFIG="+filepath.Join(work, "cli.json"))
	out, err := cli.CombinedOutput()
	require.NoError(t, err, "qufop list against the builder job: %s", out)
	// The secret key is in neither the job (args, variables) nor the
	// builder's logs.
	for _, args := range [][]string{
		{"job", "inspect", "qufop-builder"},
		{"alloc", "logs", "-job", "qufop-builder"},
		{"alloc", "logs", "-stderr", "-job", "qufop-builder"},
	} {
		require.NotContains(t, e.mustCLI(t, args...), sk, "nomad %v shows the secret key", args)
	}

	// The gateway serves the bucket folder of the host volume, and libvips
	// works in the image.
	gw := "http://127.0.0.1:" + strconv.Itoa(gatewayPort)
	code, _, body := httpGet(t, gw+"/demo/hello.txt")
	require.Equal(t, 200, code, body)
	require.Equal(t, "hello from the bucket volume", body)
	code, ctype, body := httpGet(t, gw+"/demo/storm.jpg?imageView2/2/w/100/format/webp")
	require.Equal(t, 200, code, body)
	require.Equal(t, "image/webp", ctype)

	checkScalers(t, e)

	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		start := time.Now()
		e.mustCLI(t, "job", "stop", "-purge", "-detach", j.job)
		e.waitGone(t, j.job, j.service, 3*time.Minute)
		t.Logf("%s: stop -purge to gone from Nomad and Consul: %s", j.job, time.Since(start).Round(100*time.Millisecond))
	}
}

// registryImage is the registry job's default image.
const registryImage = "local/docker-registry:2.8"

// makeImage runs .ci/image-local.sh args... with IMAGE=ref and env to make
// ref, and removes ref at the end of t.
func makeImage(t *testing.T, c *client.Client, ref string, args []string, env ...string) {
	cmd := exec.Command("bash", append([]string{".ci/image-local.sh"}, args...)...)
	cmd.Dir = ".."
	cmd.Env = append(append(os.Environ(), "IMAGE="+ref), env...)
	removeImageAtEnd(t, c, ref)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, ".ci/image-local.sh %v: %s", args, out)
	t.Logf("made %s in %s", ref, time.Since(start).Round(100*time.Millisecond))
}

// push pushes ref to its registry (plain HTTP on loopback, no auth).
func push(c *client.Client, ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := c.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString([]byte("{}"))})
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var m struct{ Error string }
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Error != "" {
			return fmt.Errorf("push %s: %s", ref, m.Error)
		}
	}
	return sc.Err()
}

func httpGet(t *testing.T, url string) (int, string, string) {
	t.Helper()
	r, err := http.Get(url)
	require.NoError(t, err)
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	return r.StatusCode, r.Header.Get("Content-Type"), string(b)
}

// checkScalers checks the two scalers of scaler.nomad.hcl: both pass their
// check, exactly one leads (holds the Consul lock), and stopping the
// leader's allocation (SIGTERM: it releases the lock) hands over to another.
func checkScalers(t *testing.T, e *nomadEnv) {
	t.Helper()
	// leader returns the allocation whose scaler leads, once two scalers
	// pass their check and exactly one of them leads.
	leader := func() (string, string) {
		entries, _, err := e.consul.Health().Service("qufop-scaler", "", true, nil)
		if err != nil {
			return "", err.Error()
		}
		if len(entries) != 2 {
			return "", fmt.Sprintf("%d scalers passing", len(entries))
		}
		var leaders []string
		for _, s := range entries {
			r, err := http.Get(fmt.Sprintf("http://%s:%d/health", s.Service.Address, s.Service.Port))
			if err != nil {
				return "", err.Error()
			}
			var h struct {
				Leader bool   `json:"leader"`
				Lock   string `json:"lock"`
			}
			err = json.NewDecoder(r.Body).Decode(&h)
			r.Body.Close()
			if err != nil || r.StatusCode != 200 || h.Lock != "qufop/scaler/lock" {
				return "", fmt.Sprintf("GET /health of %s: %d %+v %v", s.Service.ID, r.StatusCode, h, err)
			}
			if h.Leader {
				// Nomad's service ID: _nomad-task-<alloc ID>-group-scaler-...
				leaders = append(leaders, strings.TrimPrefix(s.Service.ID, "_nomad-task-")[:36])
			}
		}
		if len(leaders) != 1 {
			return "", fmt.Sprintf("%d scalers lead", len(leaders))
		}
		return leaders[0], ""
	}
	var first, why string
	require.Eventually(t, func() bool { first, why = leader(); return first != "" }, 2*time.Minute, 250*time.Millisecond,
		"scalers: %s", &why)
	p, _, err := e.consul.KV().Get("qufop/scaler/lock", nil)
	require.NoError(t, err)
	require.NotNil(t, p)
	require.NotEmpty(t, p.Session, "the lock key has no session")

	start := time.Now()
	e.mustCLI(t, "alloc", "stop", "-detach", first)
	var next string
	require.Eventually(t, func() bool { next, why = leader(); return next != "" && next != first }, 3*time.Minute, 250*time.Millisecond,
		"after stopping the leading scaler %s: %s", first, &why)
	t.Logf("scaler %s stopped: %s leads, %s later", first[:8], next[:8], time.Since(start).Round(100*time.Millisecond))
}
