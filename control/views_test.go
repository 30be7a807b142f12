package control

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

func TestFlavorOf(t *testing.T) {
	v := func(n int, flavor string) ufop.Version {
		return ufop.Version{N: n, Spec: &ufop.Spec{Flavor: flavor}}
	}
	for _, tc := range []struct {
		name string
		rec  ufop.Record
		want string
	}{
		{"no versions", ufop.Record{}, ""},
		{"newest upload", ufop.Record{Versions: []ufop.Version{v(1, "C1M1"), v(2, "C2M4")}}, "C2M4"},
		{"current before newest", ufop.Record{Current: 1, Versions: []ufop.Version{v(1, "C1M1"), v(2, "C2M4")}}, "C1M1"},
		{"deployed before current", ufop.Record{Deployed: 2, Current: 3, Versions: []ufop.Version{v(2, "C4M8"), v(3, "C1M1")}}, "C4M8"},
		{"failed upload without spec", ufop.Record{Versions: []ufop.Version{v(1, "C2M2"), {N: 2}}}, "C2M2"},
	} {
		t.Run(tc.name, func(t *testing.T) { assert.Equal(t, tc.want, flavorOf(&tc.rec)) })
	}
}

func TestInstanceView(t *testing.T) {
	for _, tc := range []struct {
		in   cluster.Instance
		want api.Instance
	}{
		{cluster.Instance{Index: 0, Addr: "172.18.0.2:9100", AddrKind: "bridge", PublishedAddr: "127.0.0.1:32770"},
			api.Instance{Index: 1, BridgeAddr: "172.18.0.2:9100", HostAddr: "127.0.0.1:32770"}},
		{cluster.Instance{Index: 2, Addr: "127.0.0.1:41000", AddrKind: "host"}, api.Instance{Index: 3, HostAddr: "127.0.0.1:41000"}},
		{cluster.Instance{Index: 1, Addr: "10.0.0.5:25001", AddrKind: "node"}, api.Instance{Index: 2, NodeAddr: "10.0.0.5:25001"}},
	} {
		assert.Equal(t, tc.want, instanceView(tc.in))
	}
}

// The API's JSON has one key style: snake_case.
func TestViewsAreSnakeCase(t *testing.T) {
	rec := ufop.Record{Name: "x", Owner: "o", CreatedAt: time.Now(), MaxInstances: 5, Current: 1,
		Versions:     []ufop.Version{{N: 1, CreatedAt: time.Now(), Spec: &ufop.Spec{BuildScript: []string{"a"}, KillTimeout: time.Second}}},
		Scale:        &ufop.ScalePolicy{Min: 1, Max: 2, Target: 1},
		ScaleHistory: []ufop.ScaleEvent{{Time: time.Now(), From: 1, To: 2, By: ufop.ByUser, User: "o", InFlight: 1, Reason: "r", Skipped: true, Repeats: 1}}}
	st := api.State{Instances: []api.Instance{instanceView(cluster.Instance{AddrKind: "bridge", Addr: "a", PublishedAddr: "b", Started: time.Now()})},
		Operation: &api.Operation{Finished: time.Now()}}
	set := api.ScalePolicySet{Policy: policyView(rec.Scale), Message: "m", Version: 1}
	for _, v := range []any{ufopView(&rec), st, set} {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case map[string]any:
				for k, v := range x {
					assert.Equal(t, strings.ToLower(k), k, "key %q in %s", k, b)
					if k != "env" {
						walk(v)
					}
				}
			case []any:
				for _, v := range x {
					walk(v)
				}
			}
		}
		var m any
		require.NoError(t, json.Unmarshal(b, &m))
		walk(m)
	}
}

func TestPolicyView(t *testing.T) {
	assert.Nil(t, policyView(nil))
	// A record written without durations shows the defaults.
	assert.Equal(t, &api.ScalePolicy{Min: 0, Max: 3, Target: 2.5, Interval: "2s", UpCooldown: "2s", DownCooldown: "15s", DownWindow: "30s"},
		policyView(&ufop.ScalePolicy{Max: 3, Target: 2.5}))
	p, err := parsePolicy(api.ScalePolicy{Min: 1, Max: 2, Target: 1, Interval: "0s", UpCooldown: "500ms", DownCooldown: "1m", DownWindow: ""})
	require.NoError(t, err)
	assert.Equal(t, ufop.ScalePolicy{Min: 1, Max: 2, Target: 1, Interval: ufop.Duration(2 * time.Second), UpCooldown: ufop.Duration(500 * time.Millisecond),
		DownCooldown: ufop.Duration(time.Minute), DownWindow: ufop.Duration(30 * time.Second)}, p, "0s and empty take the default")
	assert.Len(t, scaleEventViews(make([]ufop.ScaleEvent, 25)), 20)
	assert.Nil(t, scaleEventViews(nil))
}
