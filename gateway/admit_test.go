package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	qclient "github.com/qiniu/go-sdk/v7/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/ratelimit"
	"github.com/qufop/qufop/tenant"
)

// fixedClock never moves: a bucket emptied stays empty, whatever the
// machine's load.
func fixedClock() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// limiter is a ratelimit.Limiter whose free class has limits l.
func limiter(t *testing.T, l tenant.Limits) *ratelimit.Limiter {
	t.Helper()
	return ratelimit.New(nil, ratelimit.Options{
		Defaults: map[tenant.Class]tenant.Limits{tenant.Free: l},
		Now:      fixedClock,
	})
}

func withLimiter(lim *ratelimit.Limiter) Option {
	return WithAdmission(lim, ratelimit.Reasons...)
}

// rateLimited reads qufop_gateway_rate_limited_total by "class/reason".
func rateLimited(t *testing.T, srv *Server) map[string]float64 {
	t.Helper()
	mfs, err := srv.m.reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "qufop_gateway_rate_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			lv := map[string]string{}
			for _, l := range m.GetLabel() {
				lv[l.GetName()] = l.GetValue()
			}
			out[lv["class"]+"/"+lv["reason"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// servingLimited is serving's gateway with the per-user limits of lim.
func servingLimited(t *testing.T, fastFront bool, lim *ratelimit.Limiter) (string, *Server) {
	t.Helper()
	cfg := NewDefaultConfig()
	cfg.FastFront = fastFront
	srv, err := New(cfg, smallBucket(t), fop.Registry{"upper": upper()}, nil,
		WithUFOPs(echoUFOP{}, func(string) string { return "alice" }), withLimiter(lim))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cancel, done := start(srv, ln)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ln.Addr().String(), srv
}

// A user over its rate gets 573 in Qiniu's form on both fronts, for UFOP
// chains (the fast front's), built-in chains and plain downloads, and the
// refusal is counted. Qiniu's Go SDK reads the answer back: its code and
// message.
func TestRateLimit573OnBothFronts(t *testing.T) {
	for _, fast := range []bool{false, true} {
		for _, target := range []string{"/files/small.txt?demo/md5", "/files/small.txt?upper", "/files/small.txt"} {
			t.Run(fmt.Sprintf("fast=%v%s", fast, target), func(t *testing.T) {
				addr, srv := servingLimited(t, fast, limiter(t, tenant.Limits{RPS: 1, Burst: 1}))
				before := conns(t, srv)
				// One connection: the first request routes it, so on the
				// fast gateway a UFOP URL's 573 comes from the fast front.
				answers := rawExchange(t, addr, get(target), get(target))
				if fast && strings.Contains(target, "demo") {
					assert.Equal(t, before["fast"]+1, conns(t, srv)["fast"], "served by the fast front")
				}
				assert.Equal(t, 200, answers[0].StatusCode, body(t, answers[0]))
				r := answers[1]
				assert.Equal(t, 573, r.StatusCode)
				assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
				assert.Contains(t, r.Header.Get("Content-Type"), "application/json")
				qe, ok := qclient.ResponseError(r).(*qclient.ErrorInfo)
				require.True(t, ok)
				assert.Equal(t, 573, qe.Code)
				assert.Regexp(t, `^user "[a-z]*": over 1 requests per second \(burst 1\), slow down$`, qe.Err)
				assert.Equal(t, 1.0, rateLimited(t, srv)["free/rps"])
				assert.Zero(t, rateLimited(t, srv)["free/command"])
			})
		}
	}
}

// Without an Admission, or with the default limits (none), nothing is
// refused.
func TestNoLimitsNothingRefused(t *testing.T) {
	for _, opts := range [][]Option{nil, {withLimiter(limiter(t, tenant.Limits{}))}} {
		f := newFixture(t, nil)
		srv, err := New(f.srv.cfg, f.srv.buckets, f.srv.cmds, nil, opts...)
		require.NoError(t, err)
		for range 50 {
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/files/hello.txt?upper", nil))
			require.Equal(t, 200, w.Code, w.Body.String())
		}
	}
}

// At most N steps of a command at once per user: the next one is refused
// with 573 while they run, admitted once one ends, and a request that
// fails gives its slot back.
func TestCommandConcurrency573(t *testing.T) {
	f := newFixture(t, nil)
	lim := limiter(t, tenant.Limits{Commands: map[string]int{"block": 1, "upper": 1}})
	srv, err := New(f.srv.cfg, f.srv.buckets, f.srv.cmds, nil, withLimiter(lim))
	require.NoError(t, err)
	get := func(target string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		return w
	}

	first := make(chan *httptest.ResponseRecorder, 1)
	go func() { first <- get("/files/hello.txt?block") }()
	select {
	case <-f.gate.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first block step never started")
	}
	w := get("/files/hello.txt?block")
	assert.Equal(t, 573, w.Code)
	e := decodeError(t, w)
	assert.Regexp(t, `^user "[a-z]*": over 1 block steps at once, slow down$`, e.Error)
	assert.Equal(t, 1.0, rateLimited(t, srv)["free/command"])
	// Another command of the same user is not held up.
	assert.Equal(t, 200, get("/files/hello.txt?upper").Code)

	close(f.gate.release)
	select {
	case w := <-first:
		assert.Equal(t, 200, w.Code, w.Body.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the first block step never ended")
	}
	assert.Equal(t, 200, get("/files/hello.txt?block").Code, "admitted once the first ended")

	// Failed requests (a missing source, a failing step) release theirs.
	assert.Equal(t, 404, get("/files/nope.txt?upper").Code)
	assert.Equal(t, 599, get("/files/hello.txt?upper/fail").Code)
	for _, cmd := range []string{"block", "upper"} {
		for _, u := range []string{"", "alice", "admin"} {
			assert.Zero(t, lim.Running(u, cmd), "%s of %q still held", cmd, u)
		}
	}
	assert.Equal(t, 200, get("/files/hello.txt?upper").Code)
	assert.Equal(t, 1.0, rateLimited(t, srv)["free/command"])
}

// The counter's series exist before any refusal, for every class.
func TestRateLimitedSeries(t *testing.T) {
	f := newFixture(t, nil)
	srv, err := New(f.srv.cfg, f.srv.buckets, f.srv.cmds, nil, withLimiter(limiter(t, tenant.Limits{})))
	require.NoError(t, err)
	got := rateLimited(t, srv)
	for _, c := range tenant.Classes {
		for _, r := range ratelimit.Reasons {
			v, ok := got[string(c)+"/"+r]
			assert.True(t, ok, "%s/%s", c, r)
			assert.Zero(t, v)
		}
	}
}

var _ Admission = (*ratelimit.Limiter)(nil)

// classOf gives every user one class.
type classOf tenant.Class

func (c classOf) Class(string) tenant.Class { return tenant.Class(c) }

// The limits are the tenant's: the bucket's owner, with its own limits
// over its class's, and the refusal is counted under its class.
func TestRateLimitByTenant(t *testing.T) {
	f := newFixture(t, nil)
	lim := ratelimit.New(ratelimit.StaticPolicy{"alice": {RPS: 1, Burst: 2}}, ratelimit.Options{
		Defaults: map[tenant.Class]tenant.Limits{tenant.Paid: {RPS: 1, Burst: 1}},
		Now:      fixedClock,
	})
	srv, err := New(f.srv.cfg, f.srv.buckets, f.srv.cmds, nil,
		WithUFOPs(echoUFOP{}, func(string) string { return "alice" }), WithClasses(classOf(tenant.Paid)), withLimiter(lim))
	require.NoError(t, err)
	codes := make([]int, 3)
	var last *httptest.ResponseRecorder
	for i := range codes {
		last = httptest.NewRecorder()
		srv.Handler().ServeHTTP(last, httptest.NewRequest(http.MethodGet, "/files/hello.txt?upper", nil))
		codes[i] = last.Code
	}
	assert.Equal(t, []int{200, 200, 573}, codes, "alice's own burst of 2 over the paid class's 1")
	assert.Equal(t, `user "alice": over 1 requests per second (burst 2), slow down`, decodeError(t, last).Error)
	got := rateLimited(t, srv)
	assert.Equal(t, 1.0, got["paid/rps"])
	assert.Zero(t, got["free/rps"])
}
