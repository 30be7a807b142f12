package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/internal/dockertest"
	"github.com/qufop/qufop/jobspecs"
)

// TestRealNomadScalingBlock deploys a UFOP job rendered by jobspecs with a
// scaling block through cluster/nomad on a real Nomad dev agent: Nomad
// refuses scales outside the block (a 400 the orchestrator reports as
// such), accepts one inside with its meta, and a redeployment of the same
// version that changes only the block (the control plane's answer to a
// new scale policy) keeps the allocations: none is replaced; a count the
// new range excludes moves into it.
func TestRealNomadScalingBlock(t *testing.T) {
	requireNomadConsul(t)
	dc := dockertest.Client(t)
	dockertest.Busybox(t, dc)
	ref := fmt.Sprintf("local/qufop-e2e-httpd:%d", time.Now().UnixNano()%1e6)
	buildHTTPD(t, dc, ref)
	removeImageAtEnd(t, dc, ref) // after the agents stopped (registered first)
	e := startNomadEnv(t)

	o := jobspecs.DefaultOptions()
	o.WarmUp, o.HealthyDeadline, o.ProgressDeadline = 2*time.Second, time.Minute, 2*time.Minute
	o.ShutdownDelay, o.CheckInterval, o.CheckTimeout = time.Second, time.Second, time.Second
	o.MemoryMaxFactor = 0
	orch := nomad.New(e.nomad, o)
	name := fmt.Sprintf("scaling-%d", time.Now().UnixNano()%1e6)
	id := jobspecs.JobID(name)
	w := cluster.Workload{
		Name: name, Owner: "e2e", Version: 1, Image: ref, Port: 9100, HealthPath: "/health",
		CPUs: 1, MemoryMB: 32, Count: 1, KillTimeout: 2 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	deploy := func(count int, r *cluster.Scaling) {
		t.Helper()
		w.Count, w.Scaling = count, r
		require.NoError(t, orch.Deploy(ctx, w), "deploy with scaling %+v", r)
	}
	job := func() (int, *nomadapi.ScalingPolicy, uint64) {
		j, _, err := e.nomad.Jobs().Info(id, nil)
		require.NoError(t, err)
		return *j.TaskGroups[0].Count, j.TaskGroups[0].Scaling, *j.Version
	}
	// running returns the allocations that run, once they are all running
	// and as many as the count.
	running := func() []string {
		t.Helper()
		var ids []string
		require.Eventually(t, func() bool {
			n, _, _ := job()
			allocs, _, err := e.nomad.Jobs().Allocations(id, false, nil)
			if err != nil {
				return false
			}
			ids = ids[:0]
			for _, a := range allocs {
				if a.DesiredStatus != nomadapi.AllocDesiredStatusRun {
					continue
				}
				if a.ClientStatus != nomadapi.AllocClientStatusRunning {
					return false
				}
				ids = append(ids, a.ID)
			}
			return len(ids) == n
		}, 2*time.Minute, 250*time.Millisecond, "allocations of %s", id)
		slices.Sort(ids)
		return ids
	}
	// scale retries while the deployment of the last change runs (Nomad
	// refuses to scale then).
	scale := func(count int, meta map[string]string) error {
		t.Helper()
		var err error
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err = orch.Scale(ctx, name, count, "e2e", meta)
			if !errors.Is(err, cluster.ErrSkipped) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	deploy(1, &cluster.Scaling{Min: 1, Max: 2})
	n, sp, _ := job()
	require.Equal(t, 1, n)
	require.NotNil(t, sp)
	require.Equal(t, int64(1), *sp.Min)
	require.Equal(t, int64(2), *sp.Max)
	require.False(t, *sp.Enabled, "the block must stay off for nomad-autoscaler")

	// Outside the block: refused by Nomad itself, though not enabled.
	for count, want := range map[int]string{
		3: "group count was greater than scaling policy maximum: 3 > 2",
		0: "group count was less than scaling policy minimum: 0 < 1",
	} {
		err := scale(count, nil)
		var ee *errs.Error
		require.ErrorAs(t, err, &ee, "scale to %d", count)
		require.Equal(t, http.StatusBadRequest, ee.Status)
		require.Contains(t, ee.Msg, want)
		require.NotErrorIs(t, err, cluster.ErrSkipped)
		t.Logf("scale to %d: %v", count, err)
	}

	// Inside: accepted, the meta recorded with the scaling event.
	require.NoError(t, scale(2, map[string]string{"pending": "5", "by": "e2e"}))
	st, _, err := e.nomad.Jobs().ScaleStatus(id, nil)
	require.NoError(t, err)
	ev := st.TaskGroups[jobspecs.GroupName].Events
	require.NotEmpty(t, ev)
	require.Equal(t, "qufop: e2e", ev[0].Message)
	require.Equal(t, "5", ev[0].Meta["pending"])
	require.Equal(t, name, ev[0].Meta["qufop.ufop"])
	before := running()
	require.Len(t, before, 2)

	// Only the block changes: a new job version, the same allocations.
	_, _, v := job()
	deploy(1, &cluster.Scaling{Min: 1, Max: 3})
	n, sp, v2 := job()
	require.Equal(t, 2, n, "the running count is kept")
	require.Equal(t, int64(3), *sp.Max)
	require.Greater(t, v2, v)
	require.Equal(t, before, running(), "a change of the scaling block alone replaced allocations")

	// A max under the count: the count follows (one allocation stops, the
	// other stays); then a min over it: one is added, the survivor stays.
	deploy(1, &cluster.Scaling{Min: 1, Max: 1})
	n, _, _ = job()
	require.Equal(t, 1, n)
	survivor := running()
	require.Len(t, survivor, 1)
	require.Contains(t, before, survivor[0])
	deploy(1, &cluster.Scaling{Min: 2, Max: 2})
	n, _, _ = job()
	require.Equal(t, 2, n)
	after := running()
	require.Contains(t, after, survivor[0])

	// The policy off: no block, the allocations stay, any count again.
	deploy(1, nil)
	n, sp, _ = job()
	require.Equal(t, 2, n)
	require.Nil(t, sp)
	require.Equal(t, after, running())
	require.NoError(t, scale(0, nil))
}

// buildHTTPD builds ref from dockertest.BusyboxRef: busybox httpd on port
// 9100 answering GET /health, a UFOP instance as far as Nomad and Consul
// can tell.
func buildHTTPD(t *testing.T, c *client.Client, ref string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{
		"Dockerfile": "FROM " + dockertest.BusyboxRef + "\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"9100\", \"-h\", \"/www\"]\n",
		"www/health": "ok\n",
	} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := c.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true,
		Labels: map[string]string{dockertest.TestLabel: "1"},
	})
	require.NoError(t, err)
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		require.Empty(t, msg.Error, "building %s", ref)
	}
}
