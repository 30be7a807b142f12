package nomad_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
)

// deployFails runs Deploy, which must fail at once (well before ctx's
// deadline) with a 503 whose public message contains want.
func deployFails(t *testing.T, deploy func(context.Context) error, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := deploy(ctx)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Deploy took %v: it waited instead of reporting the placement failure", took)
	}
	var pub *errs.Error
	if !errors.As(err, &pub) || pub.Status != 503 || !strings.Contains(pub.Msg, want) {
		t.Fatalf("Deploy: %v (public %q, status %d), want a 503 saying %q", err, errs.Public(err), errs.Status(err), want)
	}
	t.Log(err)
}

func TestDeployPlacementFailureCPU(t *testing.T) {
	srv, o := setup(t)
	srv.SetNodeResources(2500, 0) // two instances of 1 CPU (1000 MHz) fit, not three
	srv.SetEvalDelay(50 * time.Millisecond)
	deployFails(t, func(ctx context.Context) error { return o.Deploy(ctx, workload(1, 3)) },
		"no node could place 1 instance of ufop-demo v1: cpu exhausted on 1 node, 1 node evaluated")
	// The deployment was failed, so that scaling is not refused until its
	// progress deadline; the two instances that fit run.
	c, _ := api.NewClient(&api.Config{Address: srv.URL()})
	d, _, err := c.Jobs().LatestDeployment("ufop-demo", nil)
	if err != nil || d.Status != api.DeploymentStatusFailed {
		t.Fatalf("deployment %+v: %v", d, err)
	}
	if err := o.Scale(ctxT(t), "demo", 2, "fits", nil); err != nil {
		t.Fatalf("scale after the failure: %v", err)
	}
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1}) {
		t.Errorf("instances %v", got)
	}
}

func TestScalePlacementFailure(t *testing.T) {
	srv, o := setup(t)
	if err := o.Deploy(ctxT(t), workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	srv.SetNodeResources(2500, 0) // two instances of 1 CPU fit, not four
	deployFails(t, func(ctx context.Context) error { return o.Scale(ctx, "demo", 4, "more", nil) },
		"no node could place 2 instances of ufop-demo scaled to 4: cpu exhausted on 1 node")
	// The two that fit run. The scaling's deployment goes on waiting for
	// capacity (failing it would roll the count back), so scaling again is
	// skipped meanwhile, as Nomad does.
	if got := versions(t, o, "demo"); !equal(got, []int{1, 1}) {
		t.Errorf("instances %v", got)
	}
	if err := o.Scale(ctxT(t), "demo", 2, "fits", nil); !errors.Is(err, cluster.ErrSkipped) {
		t.Fatalf("scale during the scaling's deployment: %v, want skipped", err)
	}
}

func TestDeployPlacementFailureMemoryAndDriver(t *testing.T) {
	srv, o := setup(t)
	srv.SetNodeResources(0, 100) // 128 MB asked
	deployFails(t, func(ctx context.Context) error { return o.Deploy(ctx, workload(1, 2)) },
		"no node could place 2 instances of ufop-demo v1: memory exhausted on 1 node")

	srv, o = setup(t)
	srv.SetNodeDrivers("exec")
	deployFails(t, func(ctx context.Context) error { return o.Deploy(ctx, workload(1, 1)) },
		"no node could place 1 instance of ufop-demo v1: missing drivers: 1 node filtered out")
}

// An upgrade whose canary does not fit fails at once; the old version
// keeps serving and can still be scaled.
func TestUpgradePlacementFailureKeepsOldVersion(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	srv.SetNodeResources(1500, 0)
	if err := o.Deploy(ctx, workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	deployFails(t, func(ctx context.Context) error { return o.Deploy(ctx, workload(2, 1)) },
		"no node could place 1 instance of ufop-demo v2: cpu exhausted on 1 node, 1 node evaluated; version 1 keeps serving")
	if got := versions(t, o, "demo"); !equal(got, []int{1}) {
		t.Fatalf("after the failed upgrade: %v", got)
	}
	srv.SetNodeResources(0, 0)
	if err := o.Scale(ctx, "demo", 2, "after", nil); err != nil {
		t.Fatalf("scale after the failed upgrade: %v", err)
	}
}

// Instance addresses are the allocations' host:port of "http".
func TestInstanceAddr(t *testing.T) {
	srv, o := setup(t)
	ctx := ctxT(t)
	if err := o.Deploy(ctx, workload(1, 3)); err != nil {
		t.Fatal(err)
	}
	ins, err := o.Instances(ctx, "demo")
	if err != nil || len(ins) != 3 {
		t.Fatalf("instances %+v: %v", ins, err)
	}
	seen := map[string]bool{}
	for _, in := range ins {
		host, port, err := net.SplitHostPort(in.Addr)
		p, _ := strconv.Atoi(port)
		if err != nil || host != "127.0.0.1" || p < 20000 || p > 32000 || seen[in.Addr] {
			t.Errorf("instance %d: Addr %q", in.Index, in.Addr)
		}
		seen[in.Addr] = true
	}
	// A starting instance has no address yet.
	srv.SetHealthDelay(time.Hour)
	if err := o.Scale(ctx, "demo", 4, "more", nil); err != nil {
		t.Fatal(err)
	}
	ins, err = o.Instances(ctx, "demo")
	if err != nil || len(ins) != 4 || ins[3].State != "starting" || ins[3].Addr != "" || ins[0].Addr == "" {
		t.Errorf("after scale: %+v: %v", ins, err)
	}
}

// Deploy follows the deployment with blocking queries: it returns as soon
// as the canaries are healthy and the promotion is done, not after a
// query's wait, and at once when ctx ends.
func TestDeployReactsWithoutPolling(t *testing.T) {
	srv, o := setup(t)
	o.WaitTime = time.Minute
	if err := o.Deploy(ctxT(t), workload(1, 1)); err != nil {
		t.Fatal(err)
	}
	srv.SetHealthDelay(200 * time.Millisecond)
	start := time.Now()
	if err := o.Deploy(ctxT(t), workload(2, 1)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("upgrade took %v with queries that wait up to a minute", took)
	}

	srv.SetHealthDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := o.Deploy(ctx, workload(3, 1)); err == nil || !strings.Contains(err.Error(), "version 2 keeps serving") {
		t.Errorf("deploy past ctx: %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("deploy returned %v after ctx ended", took)
	}
}
