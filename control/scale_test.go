package control_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// built registers name with one successful build; with current it is
// also the current version.
func built(t *testing.T, c *client.Client, name string, current bool) {
	t.Helper()
	_, err := c.Register(context.Background(), name, "2", "")
	require.NoError(t, err)
	newVersion(t, c, name, "./app", current)
}

// newVersion uploads and builds a version of name that runs run.
func newVersion(t *testing.T, c *client.Client, name, run string, current bool) {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	spec := "image: ubuntu\nrun: " + run + "\n"
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "ufop.yaml", Mode: 0o644, Size: int64(len(spec)), Typeflag: tar.TypeReg}))
	_, err := tw.Write([]byte(spec))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	v, err := c.Upload(ctx, name, "", bytes.NewReader(b.Bytes()), int64(b.Len()), "")
	require.NoError(t, err)
	require.NoError(t, c.BuildLog(ctx, name, v, true, io.Discard))
	if current {
		_, err = c.Chver(ctx, name, v)
		require.NoError(t, err)
	}
}

// opDone waits until the last operation of name has ended, and returns
// its error.
func opDone(t *testing.T, c *client.Client, name string) string {
	t.Helper()
	var op *api.Operation
	require.Eventually(t, func() bool {
		st, err := c.State(context.Background(), name)
		if err != nil {
			return false
		}
		op = st.Operation
		return op != nil && op.Done
	}, time.Minute, 10*time.Millisecond)
	return op.Error
}

func policy(min, max int, target float64) api.ScalePolicy {
	return api.ScalePolicy{Min: min, Max: max, Target: target}
}

func TestScalePolicyBadValues(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()
	built(t, c, "demo-bad", true)
	withD := func(p api.ScalePolicy, f func(*api.ScalePolicy)) api.ScalePolicy { f(&p); return p }
	for _, tc := range []struct {
		name string
		p    api.ScalePolicy
		want string
	}{
		{"min over max", policy(3, 2, 1), "--min 3 is over --max 2"},
		{"negative min", policy(-1, 2, 1), "--min must not be negative, got -1"},
		{"max 0", policy(0, 0, 1), "--max must be at least 1, got 0"},
		{"max over the limit", policy(1, 6, 1), "--max 6 is over the limit of 5 instances for this ufop"},
		{"target 0", policy(1, 2, 0), "--target must be a number more than 0 (steps per instance), got 0"},
		{"negative target", policy(1, 2, -2), "--target must be a number more than 0 (steps per instance), got -2"},
		{"interval too short", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.Interval = "10ms" }), "--interval must be at least 100ms, got 10ms"},
		{"negative interval", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.Interval = "-2s" }), "--interval must be at least 100ms, got -2s"},
		{"negative up cooldown", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.UpCooldown = "-1s" }), "--up-cooldown must not be negative, got -1s"},
		{"negative down cooldown", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.DownCooldown = "-1m" }), "--down-cooldown must not be negative, got -1m0s"},
		{"negative down window", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.DownWindow = "-1s" }), "--down-window must not be negative, got -1s"},
		{"not a duration", withD(policy(1, 2, 1), func(p *api.ScalePolicy) { p.DownWindow = "soon" }), `bad down_window "soon": want a duration such as 2s or 1m30s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SetScalePolicy(ctx, "demo-bad", tc.p)
			assert.True(t, client.IsStatus(err, http.StatusBadRequest), "%v", err)
			assert.EqualError(t, err, tc.want)
		})
	}
	// Nothing was kept, nothing deployed.
	rec, err := c.Info(ctx, "demo-bad")
	require.NoError(t, err)
	assert.Nil(t, rec.ScalePolicy)
	assert.Empty(t, srv.Orch.Calls("demo-bad"))

	// The answer is Qiniu's JSON, one line.
	req, err := http.NewRequest(http.MethodPut, srv.URL+"/v1/ufops/demo-bad/scale-policy", strings.NewReader(`{"min":1,"max":2,"target":"x"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	auth.SignRequest(req, []byte(`{"min":1,"max":2,"target":"x"}`), srv.Creds, time.Now())
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var e api.Error
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Equal(t, 400, e.Code)
	assert.Contains(t, e.Error, "bad JSON body")
	assert.NotContains(t, e.Error, "\n")
}

// A policy on a UFOP never deployed deploys it at min, 0 included, with
// the range; without a built current version it is only kept.
func TestScalePolicyDeploysAtMin(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()

	built(t, c, "demo-zero", true)
	res, err := c.SetScalePolicy(ctx, "demo-zero", policy(0, 3, 2))
	require.NoError(t, err)
	assert.True(t, res.Started)
	assert.Equal(t, api.ScalePolicySet{Name: "demo-zero", From: 0, To: 0, Version: 1,
		Policy:  &api.ScalePolicy{Min: 0, Max: 3, Target: 2, Interval: "2s", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "30s"},
		Message: "deploying version 1 at 0 instance(s), the minimum"}, res.ScalePolicySet)
	assert.Empty(t, opDone(t, c, "demo-zero"))
	calls := srv.Orch.Calls("demo-zero")
	require.Len(t, calls, 1)
	assert.Equal(t, "deploy", calls[0].Op)
	assert.Equal(t, 0, calls[0].Workload.Count)
	assert.Equal(t, &cluster.Scaling{Min: 0, Max: 3}, calls[0].Workload.Scaling)
	rec, err := c.Info(ctx, "demo-zero")
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Deployed)
	assert.Equal(t, 0, rec.Desired)
	assert.Empty(t, rec.ScaleHistory, "0 to 0 is no change")
	st, err := c.State(ctx, "demo-zero")
	require.NoError(t, err)
	assert.Equal(t, opScalePolicy, st.Operation.Kind)

	// At 0 instances it is upgraded all the same, at 0, with the range.
	newVersion(t, c, "demo-zero", "./app --v2", true)
	up, err := c.Upgrade(ctx, "demo-zero")
	require.NoError(t, err)
	require.True(t, up.Started)
	assert.Empty(t, opDone(t, c, "demo-zero"))
	calls = srv.Orch.Calls("demo-zero")
	require.Len(t, calls, 2)
	assert.Equal(t, []any{"deploy", 2, 0}, []any{calls[1].Op, calls[1].Workload.Version, calls[1].Workload.Count})
	assert.Equal(t, &cluster.Scaling{Min: 0, Max: 3}, calls[1].Workload.Scaling)
	// The scaler can scale it: the orchestrator knows it.
	require.NoError(t, srv.Orch.Scale(ctx, "demo-zero", 1, "scaler", nil))

	built(t, c, "demo-one", true)
	res, err = c.SetScalePolicy(ctx, "demo-one", api.ScalePolicy{Min: 2, Max: 4, Target: 1.5, Interval: "500ms", DownWindow: "1m"})
	require.NoError(t, err)
	assert.Equal(t, 2, res.To)
	assert.Equal(t, &api.ScalePolicy{Min: 2, Max: 4, Target: 1.5, Interval: "500ms", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "1m0s"}, res.Policy)
	assert.Empty(t, opDone(t, c, "demo-one"))
	calls = srv.Orch.Calls("demo-one")
	require.Len(t, calls, 1)
	assert.Equal(t, 2, calls[0].Workload.Count)
	assert.Equal(t, &cluster.Scaling{Min: 2, Max: 4}, calls[0].Workload.Scaling)
	rec, err = c.Info(ctx, "demo-one")
	require.NoError(t, err)
	assert.Equal(t, 2, rec.Desired)
	require.Len(t, rec.ScaleHistory, 1)
	e := rec.ScaleHistory[0]
	assert.Equal(t, []any{0, 2, api.ByUser, clienttest.User, false}, []any{e.From, e.To, e.By, e.User, e.Skipped})
	assert.Contains(t, e.Reason, "scale-policy")

	// No current version: the policy is kept, nothing deployed.
	built(t, c, "demo-nover", false)
	res, err = c.SetScalePolicy(ctx, "demo-nover", policy(1, 2, 1))
	require.NoError(t, err)
	assert.False(t, res.Started)
	assert.Equal(t, 0, res.To)
	assert.Contains(t, res.Message, "not deployed: ufop \"demo-nover\" has no current version")
	assert.Empty(t, srv.Orch.Calls("demo-nover"))
	rec, err = c.Info(ctx, "demo-nover")
	require.NoError(t, err)
	require.NotNil(t, rec.ScalePolicy)
	assert.Equal(t, 0, rec.Deployed)
	// resize outside the range is refused; once a version is chosen,
	// resize within it deploys.
	_, err = c.Resize(ctx, "demo-nover", 0)
	assert.ErrorContains(t, err, "outside the scale policy")
	_, err = c.Chver(ctx, "demo-nover", 1)
	require.NoError(t, err)
	rr, err := c.Resize(ctx, "demo-nover", 1)
	require.NoError(t, err)
	assert.True(t, rr.Started)
	assert.Empty(t, opDone(t, c, "demo-nover"))
	calls = srv.Orch.Calls("demo-nover")
	require.Len(t, calls, 1)
	assert.Equal(t, &cluster.Scaling{Min: 1, Max: 2}, calls[0].Workload.Scaling)

	// With a policy of min 0, resize -n 0 deploys at 0: what the scaler
	// scales from.
	built(t, c, "demo-rz0", true)
	_, err = c.SetScalePolicy(ctx, "demo-rz0", policy(0, 2, 1))
	require.NoError(t, err)
	assert.Empty(t, opDone(t, c, "demo-rz0"))
	require.NoError(t, srv.Orch.Stop(ctx, "demo-rz0", true)) // the orchestrator forgot it
	rr, err = c.Resize(ctx, "demo-rz0", 0)
	require.NoError(t, err)
	assert.True(t, rr.Started)
	assert.Empty(t, opDone(t, c, "demo-rz0"))
	calls = srv.Orch.Calls("demo-rz0")
	require.Len(t, calls, 3)
	assert.Equal(t, clienttest.Call{Op: "scale", Count: 0}, calls[1])
	assert.Equal(t, []any{"deploy", 0}, []any{calls[2].Op, calls[2].Workload.Count}, "deployed again at 0")
	// And from never deployed.
	built(t, c, "demo-rz00", false)
	_, err = c.SetScalePolicy(ctx, "demo-rz00", policy(0, 2, 1))
	require.NoError(t, err)
	_, err = c.Chver(ctx, "demo-rz00", 1)
	require.NoError(t, err)
	rr, err = c.Resize(ctx, "demo-rz00", 0)
	require.NoError(t, err)
	assert.Equal(t, []any{true, 1}, []any{rr.Started, rr.Version})
	assert.Empty(t, opDone(t, c, "demo-rz00"))
	calls = srv.Orch.Calls("demo-rz00")
	require.Len(t, calls, 1)
	assert.Equal(t, []any{"deploy", 0}, []any{calls[0].Op, calls[0].Workload.Count})
	rec, err = c.Info(ctx, "demo-rz00")
	require.NoError(t, err)
	assert.Equal(t, 1, rec.Deployed)
}

const opScalePolicy = "scale-policy"

// On a running UFOP, the count is clamped into the range, the range goes
// to the orchestrator only when it changed, and resize keeps inside it.
func TestScalePolicyRunning(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()
	built(t, c, "demo-run", true)
	_, err := c.Resize(ctx, "demo-run", 2)
	require.NoError(t, err)
	require.Empty(t, opDone(t, c, "demo-run"))
	calls := func(from int) []clienttest.Call { return srv.Orch.Calls("demo-run")[from:] }
	n := len(calls(0))

	// A new range: the same version again, at the same count.
	res, err := c.SetScalePolicy(ctx, "demo-run", policy(1, 4, 2))
	require.NoError(t, err)
	assert.True(t, res.Started)
	assert.Equal(t, []int{2, 2}, []int{res.From, res.To})
	require.Empty(t, opDone(t, c, "demo-run"))
	got := calls(n)
	require.Len(t, got, 1)
	assert.Equal(t, "deploy", got[0].Op)
	assert.Equal(t, 1, got[0].Workload.Version)
	assert.Equal(t, 2, got[0].Workload.Count)
	assert.Equal(t, &cluster.Scaling{Min: 1, Max: 4}, got[0].Workload.Scaling)
	n += len(got)

	// Same range, other target and durations: nothing asked of the
	// orchestrator.
	res, err = c.SetScalePolicy(ctx, "demo-run", api.ScalePolicy{Min: 1, Max: 4, Target: 8, UpCooldown: "1s"})
	require.NoError(t, err)
	assert.False(t, res.Started)
	assert.Empty(t, res.Message)
	assert.Empty(t, calls(n))

	// Resize inside the range works and is recorded; outside it is refused.
	_, err = c.Resize(ctx, "demo-run", 3)
	require.NoError(t, err)
	require.Empty(t, opDone(t, c, "demo-run"))
	_, err = c.Resize(ctx, "demo-run", 5)
	assert.True(t, client.IsStatus(err, http.StatusBadRequest), "%v", err)
	assert.EqualError(t, err, "instance count 5 is outside the scale policy of \"demo-run\", [1, 4]: resize within it, or return to manual counts with `qufop scale-policy demo-run --off`")
	_, err = c.Resize(ctx, "demo-run", 0)
	assert.ErrorContains(t, err, "outside the scale policy")
	got = calls(n)
	require.Len(t, got, 1)
	assert.Equal(t, clienttest.Call{Op: "scale", Count: 3}, got[0])
	n += len(got)

	// A range above the count: scaled up (inside the old range), then the
	// new range deployed.
	res, err = c.SetScalePolicy(ctx, "demo-run", policy(4, 5, 2))
	require.NoError(t, err)
	assert.Equal(t, []int{3, 4}, []int{res.From, res.To})
	require.Empty(t, opDone(t, c, "demo-run"))
	got = calls(n)
	require.Len(t, got, 2)
	assert.Equal(t, clienttest.Call{Op: "scale", Count: 4}, got[0])
	assert.Equal(t, "deploy", got[1].Op)
	assert.Equal(t, 4, got[1].Workload.Count)
	assert.Equal(t, &cluster.Scaling{Min: 4, Max: 5}, got[1].Workload.Scaling)
	n += len(got)

	// A range below the count and apart from the old one: the new range
	// first (the old one would refuse the count), then the count.
	res, err = c.SetScalePolicy(ctx, "demo-run", policy(1, 2, 2))
	require.NoError(t, err)
	assert.Equal(t, []int{4, 2}, []int{res.From, res.To})
	require.Empty(t, opDone(t, c, "demo-run"))
	got = calls(n)
	require.Len(t, got, 2)
	assert.Equal(t, "deploy", got[0].Op)
	assert.Equal(t, &cluster.Scaling{Min: 1, Max: 2}, got[0].Workload.Scaling)
	assert.Equal(t, clienttest.Call{Op: "scale", Count: 2}, got[1])
	n += len(got)
	inst, err := srv.Orch.Instances(ctx, "demo-run")
	require.NoError(t, err)
	assert.Len(t, inst, 2)

	// Every change of count is in the history, by the user.
	rec, err := c.Info(ctx, "demo-run")
	require.NoError(t, err)
	var changes [][2]int
	for _, e := range rec.ScaleHistory {
		assert.Equal(t, api.ByUser, e.By)
		assert.Equal(t, clienttest.User, e.User)
		changes = append(changes, [2]int{e.From, e.To})
	}
	assert.Equal(t, [][2]int{{0, 2}, {2, 3}, {3, 4}, {4, 2}}, changes)

	// An upgrade keeps the count and carries the range.
	newVersion(t, c, "demo-run", "./app --v2", true)
	up, err := c.Upgrade(ctx, "demo-run")
	require.NoError(t, err)
	require.True(t, up.Started)
	require.Empty(t, opDone(t, c, "demo-run"))
	got = calls(n)
	require.Len(t, got, 1)
	assert.Equal(t, 2, got[0].Workload.Version)
	assert.Equal(t, 2, got[0].Workload.Count)
	assert.Equal(t, &cluster.Scaling{Min: 1, Max: 2}, got[0].Workload.Scaling)
	n += len(got)

	// Off: the count stays, the range leaves the orchestrator, and resize
	// takes any count again.
	res, err = c.ScalePolicyOff(ctx, "demo-run")
	require.NoError(t, err)
	assert.Nil(t, res.Policy)
	assert.Equal(t, []int{2, 2}, []int{res.From, res.To})
	assert.Equal(t, "manual counts: the instance count stays 2 (qufop resize changes it); redeploying version 2 without a range", res.Message)
	require.Empty(t, opDone(t, c, "demo-run"))
	got = calls(n)
	require.Len(t, got, 1)
	assert.Equal(t, "deploy", got[0].Op)
	assert.Equal(t, 2, got[0].Workload.Count)
	assert.Nil(t, got[0].Workload.Scaling)
	n += len(got)
	res, err = c.ScalePolicyOff(ctx, "demo-run")
	require.NoError(t, err)
	assert.False(t, res.Started, "already off")
	assert.Empty(t, calls(n))
	_, err = c.Resize(ctx, "demo-run", 5)
	require.NoError(t, err)
	require.Empty(t, opDone(t, c, "demo-run"))
}

// A change of policy that needs the orchestrator waits for no operation
// in progress; one that does not goes through.
func TestScalePolicyDuringOperation(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()
	built(t, c, "demo-busy", true)
	_, err := c.SetScalePolicy(ctx, "demo-busy", policy(1, 3, 2))
	require.NoError(t, err)
	require.Empty(t, opDone(t, c, "demo-busy"))

	release := srv.Orch.Hold()
	defer release()
	_, err = c.Resize(ctx, "demo-busy", 2)
	require.NoError(t, err)
	_, err = c.SetScalePolicy(ctx, "demo-busy", policy(1, 4, 2))
	assert.True(t, client.IsStatus(err, http.StatusConflict), "%v", err)
	assert.EqualError(t, err, `ufop "demo-busy": a resize is in progress; wait for it (qufop state demo-busy)`)
	_, err = c.ScalePolicyOff(ctx, "demo-busy")
	assert.True(t, client.IsStatus(err, http.StatusConflict), "%v", err)
	res, err := c.SetScalePolicy(ctx, "demo-busy", policy(1, 3, 5))
	require.NoError(t, err, "the same range asks nothing of the orchestrator")
	assert.False(t, res.Started)
	release()
	require.Empty(t, opDone(t, c, "demo-busy"))
	rec, err := c.Info(ctx, "demo-busy")
	require.NoError(t, err)
	assert.Equal(t, 5.0, rec.ScalePolicy.Target)
	assert.Equal(t, 2, rec.Desired)
}

// The history keeps the last 20 changes, and shows the scaler's figures.
func TestScaleHistory(t *testing.T) {
	srv := clienttest.Start(t)
	c := client.New(srv.URL, srv.Creds)
	ctx := context.Background()
	built(t, c, "demo-hist", true)
	for i := range ufop.MaxScaleHistory + 3 {
		_, err := c.Resize(ctx, "demo-hist", 1+i%2)
		require.NoError(t, err)
		require.Empty(t, opDone(t, c, "demo-hist"))
	}
	rec, err := c.Info(ctx, "demo-hist")
	require.NoError(t, err)
	require.Len(t, rec.ScaleHistory, 20)
	last := rec.ScaleHistory[19]
	assert.Equal(t, []any{2, 1, "qufop resize -n 1"}, []any{last.From, last.To, last.Reason}, "the newest last")
	assert.Equal(t, []int{1, 2}, []int{rec.ScaleHistory[0].From, rec.ScaleHistory[0].To})
	kept, err := srv.Keeper.Get(ctx, "demo-hist")
	require.NoError(t, err)
	assert.Len(t, kept.ScaleHistory, 20)

	// What the scaler records is shown as it is.
	at := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	_, err = srv.Keeper.Update(ctx, "demo-hist", func(r *ufop.Record) error {
		r.AddScaleEvent(ufop.ScaleEvent{Time: at, From: 1, To: 3, By: ufop.ByScaler, Pending: 5, InFlight: 2.5, Capacity: 2, Reason: "work over target"})
		for range 3 {
			r.AddScaleEvent(ufop.ScaleEvent{Time: at, From: 3, To: 4, By: ufop.ByScaler, Pending: 9, Skipped: true, Reason: "active deployment"})
		}
		return nil
	})
	require.NoError(t, err)
	rec, err = c.Info(ctx, "demo-hist")
	require.NoError(t, err)
	require.Len(t, rec.ScaleHistory, 20)
	assert.Equal(t, api.ScaleEvent{Time: at, From: 1, To: 3, By: api.ByScaler, Pending: 5, InFlight: 2.5, Capacity: 2, Reason: "work over target"}, rec.ScaleHistory[18])
	assert.Equal(t, api.ScaleEvent{Time: at, From: 3, To: 4, By: api.ByScaler, Pending: 9, Skipped: true, Repeats: 2, Reason: "active deployment"}, rec.ScaleHistory[19])
}
