package dispatch

// Idle connections to instances that are gone (issue 10): the pool, which
// sees the Catalog's healthy instances on each refresh, tells the
// transport which ones left.

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/ufop"
)

// goneRecorder records the pool's calls of its gone hook.
type goneRecorder struct {
	mu    sync.Mutex
	calls [][]string
}

func (g *goneRecorder) hook(addrs []string) {
	g.mu.Lock()
	g.calls = append(g.calls, append([]string(nil), addrs...))
	g.mu.Unlock()
}

func (g *goneRecorder) take() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.calls
	g.calls = nil
	return c
}

func ep(id string) cluster.Endpoint {
	return cluster.Endpoint{ID: id, Addr: "10.0.0." + id[1:] + ":8080", Version: 1}
}

func oneStep(t *testing.T, p *pool) cluster.Endpoint {
	t.Helper()
	e, release, err := p.acquire(context.Background(), "q", classq.Uniform(10), false, nil)
	require.NoError(t, err)
	release()
	return e
}

func TestPoolForgetsInstancesThatLeave(t *testing.T) {
	a, b, c := ep("i1"), ep("i2"), ep("i3")
	p, f := newTestPool(1, a, b, c)
	g := &goneRecorder{}
	p.gone = g.hook
	for range 3 {
		oneStep(t, p)
	}
	assert.Empty(t, g.take(), "no instance left")

	f.set(a)
	oneStep(t, p)
	assert.Equal(t, [][]string{{b.Addr, c.Addr}}, g.take())
	oneStep(t, p)
	assert.Empty(t, g.take(), "told once")

	// Back, then gone again; the order of the Catalog's answer does not
	// matter.
	f.set(b, a)
	oneStep(t, p)
	f.set(a, b)
	oneStep(t, p)
	assert.Empty(t, g.take())
	f.set(a)
	oneStep(t, p)
	assert.Equal(t, [][]string{{b.Addr}}, g.take())

	// None left at all.
	f.set()
	_, _, err := p.acquire(context.Background(), "q", classq.Uniform(10), false, nil)
	require.Error(t, err)
	assert.Equal(t, [][]string{{a.Addr}}, g.take())
}

// An instance drained while a step runs there: its connection goes back
// to the transport's pool when the step ends, after the instance left the
// Catalog, so the step's release tells again.
func TestPoolForgetsDrainedInstanceAfterItsLastStep(t *testing.T) {
	a, b := ep("i1"), ep("i2")
	p, f := newTestPool(1, a, b)
	g := &goneRecorder{}
	p.gone = g.hook
	e1, rel1, err := p.acquire(context.Background(), "q", classq.Uniform(10), false, nil)
	require.NoError(t, err)
	e2, rel2, err := p.acquire(context.Background(), "q", classq.Uniform(10), false, nil)
	require.NoError(t, err)
	require.ElementsMatch(t, []cluster.Endpoint{a, b}, []cluster.Endpoint{e1, e2})
	relOf := map[string]func(){e1.ID: rel1, e2.ID: rel2}

	f.set(a) // b drains
	relOf[a.ID]()
	assert.Equal(t, [][]string{{b.Addr}}, g.take())
	relOf[b.ID]()
	assert.Equal(t, [][]string{{b.Addr}}, g.take(), "the drained instance's last step")
	oneStep(t, p)
	assert.Empty(t, g.take())
}

// End to end with the Caller's transport: the idle connection to the
// instance that left the Catalog is closed (the instance sees it close),
// the one to the instance that stays is kept.
func TestPoolClosesIdleConnsOfGoneInstances(t *testing.T) {
	type inst struct {
		ep     cluster.Endpoint
		closed chan struct{}
	}
	var insts []*inst
	for _, id := range []string{"i1", "i2"} {
		in := &inst{closed: make(chan struct{}, 8)}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				in.closed <- struct{}{}
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		in.ep = cluster.Endpoint{ID: id, Addr: srv.Listener.Addr().String(), Version: 1}
		insts = append(insts, in)
	}
	p, f := newTestPool(1, insts[0].ep, insts[1].ep)
	var c ufop.Caller
	for range 2 {
		e, release, err := p.acquire(context.Background(), "q", classq.Uniform(10), false, nil)
		require.NoError(t, err)
		_, err = c.Call(context.Background(), e.Addr, ufop.ProtocolHandler, "q/x", ufop.Input{Data: []byte("x")})
		require.NoError(t, err)
		release()
	}

	f.set(insts[0].ep)
	oneStep(t, p)
	select {
	case <-insts[1].closed:
	case <-time.After(20 * time.Second): // a safety net only
		t.Fatal("the idle connection to the gone instance was not closed")
	}
	select {
	case <-insts[0].closed:
		t.Error("the idle connection to the live instance was closed")
	default:
	}
}
