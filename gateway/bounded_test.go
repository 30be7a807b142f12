package gateway

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// series counts the label sets of each of the named families.
func series(t *testing.T, srv *Server, names ...string) map[string]int {
	t.Helper()
	mfs, err := srv.m.reg.Gather()
	require.NoError(t, err)
	out := map[string]int{}
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				out[n] = len(mf.GetMetric())
			}
		}
	}
	return out
}

// commands reads qufop_gateway_requests_total by command (all statuses).
func commands(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	mfs, err := srv.m.reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "qufop_gateway_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "command" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// Whatever an outsider puts in a URL, the command label takes only the
// names of built-in commands and UFOPs, plus "other": 10,000 distinct
// unknown names add no series.
func TestCommandLabelIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.ufops, f.srv.owner = echoUFOP{}, func(string) string { return "admin" }
	fams := []string{"qufop_gateway_requests_total", "qufop_gateway_request_duration_seconds"}

	for _, target := range []string{
		"/files/hello.txt?upper", "/files/hello.txt?demo/x", "/files/hello.txt",
		"/files/hello.txt?n0", "/files/hello.txt?n0|n1", "/files/hello.txt?upper|n2",
	} {
		f.get(t, target)
	}
	before := series(t, f.srv, fams...)
	require.NotZero(t, before[fams[0]])

	for i := range 10000 {
		w := f.get(t, fmt.Sprintf("/files/hello.txt?n%d/x", i))
		require.Equal(t, 400, w.Code)
	}
	assert.Equal(t, before, series(t, f.srv, fams...), "unknown names made series")

	got := commands(t, f.srv)
	assert.Equal(t, map[string]float64{"upper": 2, "demo": 1, "-": 1, "other": 10002}, got,
		"an unknown first command counts as other; upper|n2 fails as the upper chain it starts")
}
