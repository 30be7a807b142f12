package dispatch

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/classq"
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/tenant"
)

// served is a step that got its slot, named.
type served struct {
	name    string
	release func()
}

// classCtx is a request context of class c ("": no tenant at all).
func classCtx(ctx context.Context, c tenant.Class) context.Context {
	if c == "" {
		return ctx
	}
	return tenant.With(ctx, tenant.Tenant{User: "u-" + string(c), Class: c})
}

// Paid steps go before free ones that queued first, 4:1, each class in
// arrival order; a step without a tenant is free.
func TestQueueServesPaidFirst(t *testing.T) {
	ep := cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}
	p, _ := newTestPool(1, ep)
	_, relFirst, err := p.acquire(context.Background(), "q", classq.Uniform(16), false, nil)
	require.NoError(t, err)

	got := make(chan served, 16)
	n := 0
	queue := func(prefix string, c tenant.Class, count int) {
		for i := 1; i <= count; i++ {
			name := fmt.Sprintf("%s%d", prefix, i)
			go func() {
				_, rel, err := p.acquire(classCtx(context.Background(), c), "q", classq.Uniform(16), false, nil)
				assert.NoError(t, err, name)
				got <- served{name, rel}
			}()
			n++
			want := n
			eventually(t, name+" queued", func() bool { return p.stats().Pending == want })
		}
	}
	queue("f", tenant.Free, 2)
	queue("n", "", 1)
	queue("p", tenant.Paid, 6)
	assert.Equal(t, 6, p.stats().PendingPaid)

	var order []string
	rel := relFirst
	for range n {
		rel()
		s := <-got
		order = append(order, s.name)
		assert.Equal(t, 1, p.stats().InFlight)
		rel = s.release
	}
	rel()
	assert.Equal(t, []string{"p1", "p2", "p3", "p4", "f1", "p5", "p6", "f2", "n1"}, order)
	assert.Equal(t, Stats{Healthy: 1, Capacity: 1}, p.stats())
}

// Each class has its own bound: a full free queue refuses free steps with a
// 503 that names the class, while paid steps still queue.
func TestQueueClassBounds(t *testing.T) {
	ep := cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}
	p, _ := newTestPool(1, ep)
	bounds := classq.Bounds{Free: 2, Paid: 1}
	ctx := context.Background()
	_, rel, err := p.acquire(ctx, "q", bounds, false, nil)
	require.NoError(t, err)
	var waiters []chan acquired
	for i := range 2 {
		waiters = append(waiters, acquireWith(p, classCtx(ctx, tenant.Free), bounds))
		eventually(t, "free queued", func() bool { return p.stats().Pending == i+1 })
	}
	for _, c := range []tenant.Class{tenant.Free, ""} {
		_, _, err := p.acquire(classCtx(ctx, c), "q", bounds, false, nil)
		require.Error(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, errs.Status(err))
		assert.Equal(t, `ufop "q" is busy: its free queue is full (2 steps waiting), retry later`, errs.Public(err))
	}
	paid := acquireWith(p, classCtx(ctx, tenant.Paid), bounds)
	eventually(t, "paid queued", func() bool { return p.stats().PendingPaid == 1 })
	_, _, err = p.acquire(classCtx(ctx, tenant.Paid), "q", bounds, false, nil)
	assert.Equal(t, `ufop "q" is busy: its paid queue is full (1 steps waiting), retry later`, errs.Public(err))
	assert.Equal(t, uint64(3), p.stats().RejectedFull)

	// The paid step is served first, then the free ones.
	rel()
	a := <-paid
	require.NoError(t, a.err)
	a.release()
	for _, w := range waiters {
		a := <-w
		require.NoError(t, a.err)
		a.release()
	}
	assert.Equal(t, 0, p.stats().InFlight)
}

func acquireWith(p *pool, ctx context.Context, b classq.Bounds) chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		ep, rel, err := p.acquire(ctx, "q", b, false, nil)
		ch <- acquired{ep, rel, err}
	}()
	return ch
}

// A queued step whose client goes away leaves its class's queue, and the
// slot it would have had goes to the next waiter: none is lost.
func TestQueuedStepLeaves(t *testing.T) {
	for _, c := range []tenant.Class{tenant.Paid, tenant.Free} {
		t.Run(string(c), func(t *testing.T) {
			ep := cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1}
			p, _ := newTestPool(1, ep)
			b := classq.Uniform(4)
			_, rel, err := p.acquire(context.Background(), "q", b, false, nil)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(classCtx(context.Background(), c))
			gone := acquireWith(p, ctx, b)
			eventually(t, "queued", func() bool { return p.stats().Pending == 1 })
			other := acquireWith(p, classCtx(context.Background(), tenant.Free), b)
			eventually(t, "other queued", func() bool { return p.stats().Pending == 2 })
			cancel()
			a := <-gone
			assert.Equal(t, 499, errs.Status(a.err))
			require.Equal(t, 1, p.stats().Pending, "the departed step left the queue")
			require.Equal(t, 0, p.stats().PendingPaid)
			rel()
			o := <-other
			require.NoError(t, o.err)
			o.release()
			assert.Equal(t, Stats{Healthy: 1, Capacity: 1}, p.stats())
		})
	}
}

// The collector splits the queue by class; the total stays what the
// scaler reads.
func TestCollectorByClass(t *testing.T) {
	cat := &catalog{eps: map[string][]cluster.Endpoint{}}
	d := New(NewDefaultConfig(), records{}, cat, nil)
	cat.set("q", cluster.Endpoint{ID: "a", Addr: "a:1", Version: 1})
	p := d.pool("q")
	b := d.cfg.QueueBounds()
	_, rel, err := p.acquire(context.Background(), "q", b, false, nil)
	require.NoError(t, err)
	var ws []chan acquired
	for i, c := range []tenant.Class{tenant.Paid, tenant.Free, tenant.Free, ""} {
		ws = append(ws, acquireWith(p, classCtx(context.Background(), c), b))
		eventually(t, "queued", func() bool { return p.stats().Pending == i+1 })
	}
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(d.Collector()))
	want := `
# HELP qufop_gateway_ufop_queue_length Steps waiting in the UFOP's queue for a free instance.
# TYPE qufop_gateway_ufop_queue_length gauge
qufop_gateway_ufop_queue_length{ufop="q"} 4
# HELP qufop_gateway_ufop_queue_length_by_class Steps waiting in the UFOP's queue for a free instance, by class of service (paid, free).
# TYPE qufop_gateway_ufop_queue_length_by_class gauge
qufop_gateway_ufop_queue_length_by_class{class="free",ufop="q"} 3
qufop_gateway_ufop_queue_length_by_class{class="paid",ufop="q"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want),
		"qufop_gateway_ufop_queue_length", MetricPendingByClass))
	rel()
	for range ws {
		// Whichever got the slot gives it back, serving the next.
		var a acquired
		select {
		case a = <-ws[0]:
		case a = <-ws[1]:
		case a = <-ws[2]:
		case a = <-ws[3]:
		}
		require.NoError(t, a.err)
		a.release()
	}
	assert.Equal(t, Stats{Capacity: 1, Healthy: 1}, d.Stats()["q"])
}

// The configured bounds and weights reach the pools.
func TestConfigQueueBounds(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want classq.Bounds
	}{
		{Config{QueueSize: 64}, classq.Bounds{Paid: 64, Free: 64}},
		{Config{QueueSize: 64, QueueSizePaid: 128}, classq.Bounds{Paid: 128, Free: 64}},
		{Config{QueueSize: 0, QueueSizePaid: 8}, classq.Bounds{Paid: 8, Free: 0}},
		{Config{QueueSize: 64, QueueSizeFree: 4}, classq.Bounds{Paid: 64, Free: 4}},
	} {
		assert.Equal(t, tc.want, tc.cfg.QueueBounds(), "%+v", tc.cfg)
	}
}

func TestConfigQueueWeights(t *testing.T) {
	cfg := NewDefaultConfig()
	cfg.QueueWeights = classq.Weights{Paid: 1, Free: 1}
	d := New(cfg, records{}, &catalog{eps: map[string][]cluster.Endpoint{}}, nil)
	q := d.pool("q").queue
	for range 2 {
		q.Push(tenant.Free, &waiter{}, 8)
		q.Push(tenant.Paid, &waiter{}, 8)
	}
	var order []tenant.Class
	for e, ok := q.Pop(); ok; e, ok = q.Pop() {
		order = append(order, e.Class)
	}
	assert.Equal(t, []tenant.Class{tenant.Paid, tenant.Free, tenant.Paid, tenant.Free}, order)
}
