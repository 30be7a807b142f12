package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/internal/dockertest"
)

// shSource is examples/ufop-sh as a folder to build.
func shSource(t *testing.T) string {
	files := map[string]string{}
	for _, f := range []string{"ufop.yaml", "serve.sh", "handle.sh"} {
		b, err := os.ReadFile("../examples/ufop-sh/" + f)
		require.NoError(t, err)
		files[f] = string(b)
	}
	return folder(t, files)
}

// containersOf counts the containers of platform id on the daemon.
func containersOf(t *testing.T, id string) int {
	c := dockertest.Client(t)
	list, err := c.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "qufop.platform="+id))})
	require.NoError(t, err)
	return len(list)
}

// Two qufop dev on one Docker daemon (and one registry) keep to
// themselves: each sees, adopts and removes only what it made, even for a
// UFOP of the same name; and a second qufop dev on a data folder in use
// refuses to start.
func TestTwoPlatformsOnOneDaemon(t *testing.T) {
	a := startPlatform(t)
	b := startPlatform(t)
	require.NotEqual(t, a.id, b.id)
	name := fmt.Sprintf("e2e-twin-%d", time.Now().UnixNano()%1e6)
	for _, p := range []*platform{a, b} {
		p.must("reg", name, "-m", "public")
		p.must("build", name, "-f", shSource(t))
		p.must("chver", name, "-c", "1")
	}
	a.must("resize", name, "-n", "2")
	b.must("resize", name, "-n", "1")
	assert.Len(t, a.state(name).Instances, 2)
	assert.Len(t, b.state(name).Instances, 1, "b sees only its own instance")
	assert.Equal(t, 2, containersOf(t, a.id))
	assert.Equal(t, 1, containersOf(t, b.id))
	for _, p := range []*platform{a, b} {
		code, _, body := p.get("/demo/sample.jpg?imageInfo|" + name + "/upper")
		require.Equal(t, 200, code, body)
		assert.Contains(t, body, `"FORMAT":"JPEG"`)
	}

	// A second qufop dev on a's data folder refuses, naming the first.
	out, err := exec.Command(a.bin, "dev", "--data", a.data, "--listen", freePort(t)).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, fmt.Sprintf("qufop: data folder %s is in use by qufop dev (PID %d, on %s): stop it, or give another --data\n",
		a.data, a.cmd.Process.Pid, a.base), string(out))

	// b restarts and adopts its own instance only.
	b.stop()
	assert.Equal(t, 1, containersOf(t, b.id), "instances keep running while qufop dev is stopped")
	b.start()
	require.Eventually(t, func() bool {
		s := b.state(name)
		return len(s.Instances) == 1 && s.Instances[0].Healthy
	}, 2*time.Minute, 200*time.Millisecond, "b adopts its instance again")
	assert.Len(t, a.state(name).Instances, 2, "a is untouched")

	// Unregistering in b removes b's instance and images, nothing of a's.
	out2 := b.must("unreg", name)
	assert.Contains(t, out2, "removed ")
	assert.NotContains(t, out2, a.id, "b removes only its own images")
	assert.Equal(t, 0, containersOf(t, b.id))
	assert.Equal(t, 2, containersOf(t, a.id))
	code, _, body := a.get("/demo/sample.jpg?imageInfo|" + name + "/upper")
	assert.Equal(t, 200, code, body)
	// A new UFOP of that name in b starts with no instances of a's.
	b.must("reg", name)
	st := b.must("state", name)
	assert.True(t, strings.Contains(st, "no instances"), st)
	b.must("unreg", name)
	a.must("unreg", name)
	assert.Equal(t, 0, containersOf(t, a.id))
}
