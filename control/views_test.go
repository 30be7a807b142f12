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
		Versions: []ufop.Version{{N: 1, CreatedAt: time.Now(), Spec: &ufop.Spec{BuildScript: []string{"a"}, KillTimeout: time.Second}}}}
	st := api.State{Instances: []api.Instance{instanceView(cluster.Instance{AddrKind: "bridge", Addr: "a", PublishedAddr: "b", Started: time.Now()})},
		Operation: &api.Operation{Finished: time.Now()}}
	for _, v := range []any{ufopView(&rec), st} {
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
