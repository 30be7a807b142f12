package nomad_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/cluster/nomad"
	"github.com/qufop/qufop/cluster/nomad/nomadfake"
	"github.com/qufop/qufop/jobspecs"
)

func setup(t *testing.T) (*nomadfake.Server, *nomad.Orchestrator) {
	t.Helper()
	srv := nomadfake.New()
	t.Cleanup(srv.Close)
	c, err := api.NewClient(&api.Config{Address: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	o := nomad.New(c, jobspecs.DefaultOptions())
	o.WaitTime = 2 * time.Second
	return srv, o
}

func workload(v, count int) cluster.Workload {
	return cluster.Workload{
		Name: "demo", Owner: "alice", Version: v,
		Image: "127.0.0.1:5000/alice/demo:v" + string(rune('0'+v)),
		Port:  9100, HealthPath: "/health", CPUs: 1, MemoryMB: 128, Count: count,
		KillTimeout: 5 * time.Second,
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// versions returns the UFOP version of each instance, by index order, and
// fails unless all are running and healthy.
func versions(t *testing.T, o *nomad.Orchestrator, name string) []int {
	t.Helper()
	ins, err := o.Instances(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for i, in := range ins {
		if in.State != "running" || !in.Healthy {
			t.Errorf("instance %d: %+v, want running and healthy", i, in)
		}
		out = append(out, in.Version)
	}
	return out
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeployScaleUpgrade(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1}) {
		t.Fatalf("after deploy v1: %v", got)
	}
	if j := srv.Job("ufop-demo"); *j.TaskGroups[0].Update.Canary != 0 {
		t.Errorf("first registration: canary %d, want 0", *j.TaskGroups[0].Update.Canary)
	}
	if err := o.Scale(ctx, "demo", 3, "queue depth 12", nil); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1, 1}) {
		t.Fatalf("after scale 3: %v", got)
	}
	if m := srv.ScaleMessages("ufop-demo"); len(m) != 1 || !strings.Contains(m[0], "queue depth 12") {
		t.Errorf("scale messages %q", m)
	}
	if err := o.Deploy(ctx, workload(2, 2)); err != nil {
		t.Fatal(err)
	}
	// PreserveCounts: the scaled count (3) survives the upgrade.
	if got := versions(t, o, "demo"); !equal(got, []int{2, 2, 2}) {
		t.Fatalf("after upgrade to v2: %v", got)
	}
	j := srv.Job("ufop-demo")
	if *j.TaskGroups[0].Count != 3 || *j.TaskGroups[0].Update.Canary != 1 {
		t.Errorf("v2 job: count %d canary %d, want 3 1", *j.TaskGroups[0].Count, *j.TaskGroups[0].Update.Canary)
	}
	// The canaries ran next to the old allocations before the promotion.
	var v1, v2 int
	for _, a := range srv.Allocations("ufop-demo") {
		if a.DeploymentStatus != nil && a.DeploymentStatus.Canary {
			t.Errorf("alloc %s still a canary after the promotion", a.Name)
		}
		if a.ClientStatus == api.AllocClientStatusRunning {
			v2++
		} else {
			v1++
		}
	}
	if v1 != 3 || v2 != 3 {
		t.Errorf("allocs: %d stopped, %d running; want 3 and 3", v1, v2)
	}
	// Scale down stops the highest index.
	if err := o.Scale(ctx, "demo", 1, "idle", nil); err != nil {
		t.Fatal(err)
	}
	ins, err := o.Instances(ctx, "demo")
	if err != nil || len(ins) != 1 || ins[0].Index != 0 || ins[0].Version != 2 {
		t.Fatalf("after scale 1: %+v %v", ins, err)
	}
}

func TestScaleDuringDeploymentIsSkipped(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	srv.SetHealthDelay(300 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- o.Deploy(ctx, workload(2, 2)) }()

	// Wait until the canary deployment is running.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ins, err := o.Instances(ctx, "demo")
		if err != nil {
			t.Fatal(err)
		}
		if len(ins) > 2 {
			if ins[0].State != "running" && ins[1].State != "starting" {
				t.Logf("instances %+v", ins)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no canary placed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err := o.Scale(ctx, "demo", 4, "busy", nil)
	if !errors.Is(err, cluster.ErrSkipped) {
		t.Fatalf("scale during deployment: %v, want ErrSkipped", err)
	}
	if errors.Is(err, cluster.ErrNotFound) {
		t.Fatal("ErrSkipped and ErrNotFound")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{2, 2}) {
		t.Fatalf("after upgrade: %v", got)
	}
	if err := o.Scale(ctx, "demo", 4, "busy", nil); err != nil {
		t.Fatalf("scale after the deployment: %v", err)
	}
}

func TestFailingCanaryKeepsOldVersion(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	bad := workload(2, 2)
	srv.SetUnhealthy(bad.Image)
	err := o.Deploy(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "version 1 keeps serving") {
		t.Fatalf("deploy of an unhealthy v2: %v", err)
	}
	t.Log(err)
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1}) {
		t.Fatalf("after the failed upgrade: %v", got)
	}
	// The revert is a new job version with v1's meta, and scaling works
	// again.
	if j := srv.Job("ufop-demo"); j.Meta[jobspecs.MetaVersion] != "1" {
		t.Errorf("job meta after revert: %v", j.Meta)
	}
	if err := o.Scale(ctx, "demo", 3, "after revert", nil); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1, 1}) {
		t.Fatalf("after scale: %v", got)
	}
}

func TestCanaryTimeoutFailsDeployment(t *testing.T) {
	srv, o := setup(t)
	if err := o.Deploy(ctxT(t), workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	srv.SetHealthDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := o.Deploy(ctx, workload(2, 1))
	if err == nil || !strings.Contains(err.Error(), "keeps serving") {
		t.Fatalf("deploy: %v", err)
	}
	srv.SetHealthDelay(0)
	if got := versions(t, o, "demo"); !equal(got, []int{1}) {
		t.Fatalf("after timeout: %v", got)
	}
}

func TestStopPurge(t *testing.T) {
	_, o := setup(t)
	ctx := ctxT(t)
	if err := o.Scale(ctx, "demo", 1, "x", nil); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("scale of nothing: %v", err)
	}
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(ctx, "demo", false); err != nil {
		t.Fatal(err)
	}
	ins, err := o.Instances(ctx, "demo")
	if err != nil || len(ins) != 0 {
		t.Fatalf("after stop: %+v %v", ins, err)
	}
	// A stopped job can be deployed again.
	if err := o.Deploy(ctx, workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{1}) {
		t.Fatalf("after redeploy: %v", got)
	}
	if err := o.Stop(ctx, "demo", true); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Instances(ctx, "demo"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("instances after purge: %v", err)
	}
	if err := o.Scale(ctx, "demo", 2, "x", nil); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("scale after purge: %v", err)
	}
	if err := o.Stop(ctx, "demo", false); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("stop after purge: %v", err)
	}
	if err := o.Stop(ctx, "demo", true); err != nil {
		t.Fatalf("purge again: %v", err)
	}
	if err := o.Logs(ctx, "demo", 0, false, nil); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("logs after purge: %v", err)
	}
}

// Stop returns once the allocations have stopped, not when Nomad took the
// request: unreg removes the images next, which a running task holds.
func TestStopWaitsForTheAllocations(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 2)); err != nil {
		t.Fatal(err)
	}
	srv.HoldStops()
	done := make(chan error, 1)
	go func() { done <- o.Stop(ctx, "demo", true) }()
	// Stop blocks on the allocations, which the client has not stopped yet.
	for {
		running := 0
		for _, a := range srv.Allocations("ufop-demo") {
			if a.DesiredStatus == "stop" && a.ClientStatus == "running" {
				running++
			}
		}
		if running == 2 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Stop returned before the allocations stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Stop returned while 2 allocations still run: %v", err)
	default:
	}
	srv.ReleaseStops()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
