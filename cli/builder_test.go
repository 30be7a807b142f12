package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/cluster/consul/consulfake"
	"github.com/qufop/qufop/cluster/nomad/nomadfake"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/internal/testutil"
)

func busyboxTarball(t *testing.T, version string) ([]byte, string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	spec := "image: local/busybox:1\nbuild_script:\n  - mkdir -p www && echo " + version + " > www/version && echo ok > www/health\nrun: httpd -f -p 9100 -h www\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "ufop.yaml", Mode: 0o644, Size: int64(len(spec)), Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte(spec))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

// `qufop builder` with Nomad and Consul (their fakes) and the real Docker
// daemon and registry: records go to Consul KV, images to the registry,
// instances become a Nomad job, and an upgrade is a canary deployment.
func TestBuilderOnNomadAndConsul(t *testing.T) {
	dc := dockertest.Client(t)
	dockertest.Busybox(t, dc)
	registry := dockertest.Registry(t)
	nf := nomadfake.New()
	defer nf.Close()
	cf := consulfake.New()
	defer cf.Close()

	addr := freeAddr(t)
	root := NewRoot()
	out := &testutil.SyncBuffer{}
	root.SetOut(out)
	root.SetErr(out)
	creds := auth.Credentials{AccessKey: "AK_BUILDER", SecretKey: "SK_BUILDER"}
	t.Setenv(envAccessKey, creds.AccessKey)
	t.Setenv(envSecretKey, creds.SecretKey)
	root.SetArgs([]string{"builder", "--listen", addr, "--data", t.TempDir(), "--quiet",
		"--nomad-addr", nf.URL(), "--consul-addr", cf.Addr(), "--registry", registry})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		assert.NoError(t, <-done)
	}()
	require.Eventually(t, func() bool {
		r, err := http.Get("http://" + addr + "/health")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	}, time.Minute, 20*time.Millisecond, out.String())

	c := client.New(addr, creds)
	bg := context.Background()
	name := fmt.Sprintf("test-nomad-demo-%d", time.Now().UnixNano()%1e6)
	dockertest.CleanupRepository(t, registry, "admin/"+name)
	_, err := c.Register(bg, name, "private", "on nomad")
	require.NoError(t, err)
	// Whatever happens, the UFOP goes (before the builder stops), and unreg
	// takes its images along.
	defer func() {
		if _, err := c.Unregister(bg, name); err != nil && !client.IsStatus(err, http.StatusNotFound) {
			t.Errorf("unreg: %v", err)
		}
	}()

	build := func(version string) int {
		tarball, sum := busyboxTarball(t, version)
		n, err := c.Upload(bg, name, version, bytes.NewReader(tarball), int64(len(tarball)), sum)
		require.NoError(t, err)
		var log bytes.Buffer
		require.NoError(t, c.BuildLog(bg, name, n, true, &log))
		v, err := c.Version(bg, name, n)
		require.NoError(t, err)
		require.Equal(t, api.StateSuccess, v.State, log.String())
		assert.Equal(t, fmt.Sprintf("%s/admin/%s:v%d", registry, name, n), v.Image)
		return n
	}
	waitState := func(version, count int) {
		t.Helper()
		require.Eventually(t, func() bool {
			st, err := c.State(bg, name)
			if err != nil || st.Operation == nil || !st.Operation.Done {
				return false
			}
			require.Empty(t, st.Operation.Error)
			n := 0
			for _, in := range st.Instances {
				if in.Version == version && in.Healthy {
					n++
				}
			}
			return n == count && len(st.Instances) == count
		}, 60*time.Second, 200*time.Millisecond)
	}

	require.Equal(t, 1, build("v1"))
	_, err = c.Chver(bg, name, 1)
	require.NoError(t, err)
	_, err = c.Resize(bg, name, 2)
	require.NoError(t, err)
	waitState(1, 2)

	// The record is in Consul KV under qufop/.
	rec, err := c.Info(bg, name)
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Deployed)

	// Upgrade: v2 as canaries, then promoted.
	require.Equal(t, 2, build("v2"))
	_, err = c.Chver(bg, name, 2)
	require.NoError(t, err)
	_, err = c.Upgrade(bg, name)
	require.NoError(t, err)
	waitState(2, 2)

	_, err = c.Resize(bg, name, 0)
	require.NoError(t, err)
	waitState(2, 0)

	// unreg removes both versions from the daemon and the registry.
	un, err := c.Unregister(bg, name)
	require.NoError(t, err)
	assert.Equal(t, []string{registry + "/admin/" + name + ":v1", registry + "/admin/" + name + ":v2"}, un.Removed)
	assert.Empty(t, un.Warnings)
	imgs, err := dc.ImageList(bg, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", registry+"/admin/"+name))})
	require.NoError(t, err)
	assert.Empty(t, imgs, "no image of the UFOP is left in the daemon")
	tags, err := http.Get("http://" + registry + "/v2/admin/" + name + "/tags/list")
	require.NoError(t, err)
	var tl struct{ Tags []string }
	require.NoError(t, json.NewDecoder(tags.Body).Decode(&tl))
	tags.Body.Close()
	assert.Empty(t, tl.Tags, "no manifest of the UFOP is left in the registry")
}
